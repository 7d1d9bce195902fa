//! A synthetic corpus on disk: `STEM.bin` (token file), `STEM.txt` (decoded documents
//! separated by `<|endoftext|>` lines, so the text can be prepared again) and
//! `STEM.json` (the manifest, written last: a corpus without one is incomplete).
//!
//! `STEM.bin` holds canonical tokens: each document as the tokenizer encodes its text
//! (decode, then encode; see [`Canonicalizer`]), which is what a pipeline that
//! publishes the text and reads it back would train on. The manifest records how many
//! of the sampled ids that encoding did not reproduce (`non_canonical_tokens`,
//! `non_canonical_share`).
//!
//! A document the model ended is followed by its end token in both files; one cut at
//! the length cap is not (the model never emitted that token). The manifest counts
//! such documents (`truncated_documents`, `truncation_share`) and lists where each
//! ends in `STEM.bin` (`truncated_ends`), so [`load`] keeps it apart from the next
//! document and training never teaches an end the model did not write.
//!
//! The manifest also records the size and SHA-256 of `STEM.bin` and `STEM.txt`
//! (`bin_file`, `txt_file`); [`load`] checks `STEM.bin` against it before a single
//! token is used, so a truncated or altered corpus is refused, never trained on.
use crate::checkpoint::Checkpoint;
use crate::durable::{read_json, temp_path, write_json_atomic};
use crate::integrity::{check_file, FileFingerprint};
use crate::policy::Corpus;
use crate::sample::{sample_corpus, SampleRequest, SampleStats, Sampling};
use crate::tokenizer::{Canonicalizer, EOT};
use crate::tokens::TokenFile;
use crate::tokens::TokenWriter;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
    /// The token every document started from (`eot_id`, or a tokenizer's BOS).
    #[serde(default)]
    pub start_id: Option<u32>,
    /// Whether `.bin` holds canonical tokens (false in corpora written before lmloop
    /// re-encoded them: the sampled ids as they were).
    #[serde(default)]
    pub canonical: bool,
    /// Sampled ids (end tokens excluded) that the canonical encoding does not
    /// reproduce, and their share of all sampled ids.
    #[serde(default)]
    pub non_canonical_tokens: usize,
    #[serde(default)]
    pub non_canonical_share: f64,
    /// Seconds spent decoding and re-encoding documents (part of `seconds`).
    #[serde(default)]
    pub canonical_seconds: f64,
    /// Offsets in `.bin` where each document cut at the length cap ends.
    #[serde(default)]
    pub truncated_ends: Vec<usize>,
    /// Per document, in corpus order: the sampling model's mean negative log-likelihood
    /// of its own draws (`crate::sample::Document::self_nll` over its targets) and
    /// those targets (empty in corpora written before lmloop recorded them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub self_nll: Vec<(f64, usize)>,
    /// Size and SHA-256 of `.bin` and `.txt` as written (absent from corpora written
    /// before lmloop recorded them: those are used unverified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bin_file: Option<FileFingerprint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txt_file: Option<FileFingerprint>,
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
    let canonicalizer = Canonicalizer::new(vocab);
    let mut tokens = TokenWriter::create(&bin, vocab.vocab_size())?;
    let (mut written, mut sampled, mut non_canonical, mut truncated_ends) = (0usize, 0usize, 0usize, Vec::new());
    let mut canonical_seconds = 0.0;
    let mut self_nll = Vec::new();
    let txt_tmp = temp_path(&txt);
    let mut text = std::io::BufWriter::new(
        std::fs::File::create(&txt_tmp).with_context(|| format!("cannot create {}", txt_tmp.display()))?,
    );
    let stats = sample_corpus(&ckpt.model, vocab.delimiters(), device, req, |doc| {
        let t0 = std::time::Instant::now();
        let (decoded, ids, differing) = canonicalizer.publish(&doc.tokens)?;
        canonical_seconds += t0.elapsed().as_secs_f64();
        sampled += doc.tokens.len();
        non_canonical += differing;
        self_nll.push((doc.self_nll / doc.targets().max(1) as f64, doc.targets()));
        tokens.extend(&ids)?;
        let mut n = ids.len();
        if doc.truncated {
            // No end-of-text: the model did not end this document.
            write!(text, "{decoded}")?;
            truncated_ends.push(written + n);
        } else {
            tokens.push(eot)?;
            n += 1;
            writeln!(text, "{}\n{EOT}", decoded.trim_end_matches('\n'))?;
        }
        written += n;
        Ok(n)
    })?;
    tokens.finish()?;
    text.into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()
        .with_context(|| format!("cannot flush {} to disk", txt_tmp.display()))?;
    crate::durable::rename_durably(&txt_tmp, &txt)?;
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
        start_id: Some(vocab.delimiters().start),
        canonical: true,
        non_canonical_tokens: non_canonical,
        canonical_seconds,
        non_canonical_share: non_canonical as f64 / sampled.max(1) as f64,
        truncated_ends,
        self_nll,
        bin_file: Some(FileFingerprint::of(&bin)?),
        txt_file: Some(FileFingerprint::of(&txt)?),
        stats,
    };
    write_json_atomic(&json, &manifest)?;
    Ok(manifest)
}

/// What to do about a damaged corpus outside a run.
pub const DAMAGED_CORPUS: &str = "restore it from a copy, or sample it again";

/// A complete synthetic corpus as documents: cut documents kept apart from the next
/// one by the manifest's `truncated_ends`; `STEM.bin` is checked against the
/// manifest's record first (a mismatch is an error ending with `way_out`).
pub fn load(stem: &Path, name: impl Into<String>, way_out: &str) -> Result<(Corpus, SyntheticManifest)> {
    let (bin, _, json) = files(stem);
    let manifest: SyntheticManifest = read_json(&json)?;
    if let Some(record) = &manifest.bin_file {
        check_file(&bin, record, way_out)?;
    }
    let file = Arc::new(TokenFile::open(&bin)?);
    let documents = crate::tokens::document_ranges_with_cuts(file.iter(), manifest.eot_id, &manifest.truncated_ends);
    Ok((Corpus { name: name.into(), file, documents }, manifest))
}
