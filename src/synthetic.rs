//! A synthetic corpus on disk: `STEM.bin` (token file), `STEM.txt` (decoded documents
//! separated by `<|endoftext|>` lines, so the text can be prepared again) and
//! `STEM.json` (the manifest, written last: a corpus without one is incomplete).
//!
//! A document the model ended is followed by `<|endoftext|>` in both files; one cut at
//! the length cap is not (the model never emitted that token), so it runs into the
//! next document. The manifest counts such documents (`truncated_documents`,
//! `truncation_share`).
use crate::checkpoint::Checkpoint;
use crate::layout::{read_json, temp_path, write_json_atomic};
use crate::sample::{sample_corpus, SampleRequest, SampleStats, Sampling};
use crate::tokenizer::EOT;
use crate::tokens::TokenWriter;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::Device;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SyntheticManifest {
    pub checkpoint: String,
    pub temperature: f64,
    pub top_k: Option<i64>,
    pub top_p: Option<f64>,
    pub seed: u64,
    pub requested_tokens: usize,
    pub batch_size: usize,
    pub max_doc_tokens: usize,
    pub vocab_size: usize,
    pub eot_id: u32,
    #[serde(flatten)]
    pub stats: SampleStats,
}

/// Paths of a synthetic corpus with stem `stem` (e.g. `corpora/synthetic/RUN/gen-01`).
pub fn files(stem: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let with = |ext: &str| {
        let mut s = stem.as_os_str().to_os_string();
        s.push(ext);
        PathBuf::from(s)
    };
    (with(".bin"), with(".txt"), with(".json"))
}

/// Reads the manifest of a complete corpus; `None` when the corpus is incomplete.
pub fn manifest(stem: &Path) -> Option<SyntheticManifest> {
    let (_, _, json) = files(stem);
    json.exists().then(|| read_json(&json).ok()).flatten()
}

/// Samples a corpus from `ckpt` and writes its three files.
pub fn write_corpus(ckpt: &Checkpoint, stem: &Path, req: &SampleRequest, device: Device) -> Result<SyntheticManifest> {
    let (bin, txt, json) = files(stem);
    // The manifest is the completion marker: remove a stale one before anything else.
    let _ = std::fs::remove_file(&json);
    let vocab = &ckpt.vocab;
    let eot = vocab.eot();
    let mut tokens = TokenWriter::create(&bin, vocab.vocab_size())?;
    let txt_tmp = temp_path(&txt);
    let mut text = std::io::BufWriter::new(
        std::fs::File::create(&txt_tmp).with_context(|| format!("cannot create {}", txt_tmp.display()))?,
    );
    let stats = sample_corpus(&ckpt.model, eot, device, req, |doc| {
        tokens.extend(&doc.tokens)?;
        let decoded = vocab.decode(&doc.tokens)?;
        if doc.truncated {
            // No end-of-text: the model did not end this document.
            write!(text, "{decoded}")?;
        } else {
            tokens.push(eot)?;
            writeln!(text, "{}\n{EOT}", decoded.trim_end_matches('\n'))?;
        }
        Ok(())
    })?;
    tokens.finish()?;
    text.into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()
        .with_context(|| format!("cannot flush {} to disk", txt_tmp.display()))?;
    crate::layout::rename_durably(&txt_tmp, &txt)?;
    let (temperature, top_k, top_p) = match req.sampling {
        Sampling::Greedy => (0.0, None, None),
        Sampling::Random { temperature, top_k, top_p } => (temperature, top_k, top_p),
    };
    let manifest = SyntheticManifest {
        checkpoint: ckpt.dir.display().to_string(),
        temperature,
        top_k,
        top_p,
        seed: req.seed,
        requested_tokens: req.n_tokens,
        batch_size: req.batch_size,
        max_doc_tokens: req.max_doc_tokens,
        vocab_size: vocab.vocab_size(),
        eot_id: eot,
        stats,
    };
    write_json_atomic(&json, &manifest)?;
    Ok(manifest)
}
