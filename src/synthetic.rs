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
use crate::durable::{read_json, write_json_atomic};
use crate::integrity::{check_file, FileFingerprint};
use crate::policy::Corpus;
use crate::sample::{sample_corpus, SampleRequest, SampleStats, Sampling};
use crate::tokenizer::{Canonicalizer, EOT};
use crate::tokens::{TokenFile, TokenWriter};
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
    /// How a curated corpus was chosen from the documents sampled for it
    /// (`crate::curation`); absent from corpora that were not curated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curation: Option<CurationRecord>,
    #[serde(flatten)]
    pub stats: SampleStats,
}

/// Paths of a synthetic corpus with stem `stem` (e.g. `corpora/synthetic/RUN/gen-01`).
pub fn files(stem: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let p = crate::layout::CorpusPaths::new(stem);
    (p.bin(), p.txt(), p.json())
}

/// Reads the manifest of a complete corpus; `None` when the corpus is incomplete.
pub fn manifest(stem: &Path) -> Option<SyntheticManifest> {
    let (_, _, json) = files(stem);
    json.exists().then(|| read_json(&json).ok()).flatten()
}

/// A sampled document as the loop publishes it: its canonical tokens (the tokenizer's
/// encoding of its text, end token excluded), the text, whether the length cap cut it,
/// and the sampler's self-score.
#[derive(Debug, Clone)]
pub struct Published {
    pub ids: Vec<u32>,
    pub text: String,
    pub truncated: bool,
    /// The sampling model's mean negative log-likelihood of its own draws, and those
    /// draws (targets).
    pub self_nll: (f64, usize),
    /// Ids the model drew (end token excluded), and how many of them the canonical
    /// encoding does not reproduce.
    pub sampled: usize,
    pub differing: usize,
}

impl Published {
    /// Tokens it takes in a corpus: its own, plus the end token unless it was cut.
    pub fn corpus_tokens(&self) -> usize {
        self.ids.len() + usize::from(!self.truncated)
    }

    /// Its corpus tokens: the canonical ids, then the end token unless it was cut.
    pub fn corpus_ids(&self, eot: u32) -> Vec<u32> {
        let mut ids = self.ids.clone();
        if !self.truncated {
            ids.push(eot);
        }
        ids
    }
}

/// Writes one document's text as `STEM.txt` holds it: an ended document is followed by
/// an `<|endoftext|>` line, a cut one is not.
pub(crate) fn write_text(out: &mut impl Write, doc: &Published) -> std::io::Result<()> {
    if doc.truncated {
        write!(out, "{}", doc.text)
    } else {
        writeln!(out, "{}\n{EOT}", doc.text.trim_end_matches('\n'))
    }
}

/// A text file written through a temporary name, renamed into place by `finish`; one
/// dropped before removes its temporary.
pub(crate) struct TextWriter {
    out: std::io::BufWriter<std::fs::File>,
    tmp: crate::durable::Pending,
    path: PathBuf,
}

impl TextWriter {
    pub(crate) fn create(path: &Path) -> Result<Self> {
        let tmp = crate::durable::Pending::of(path);
        let file =
            std::fs::File::create(tmp.path()).with_context(|| format!("cannot create {}", tmp.path().display()))?;
        Ok(Self { out: std::io::BufWriter::new(file), tmp, path: path.to_path_buf() })
    }

    pub(crate) fn add(&mut self, doc: &Published) -> Result<()> {
        write_text(&mut self.out, doc).with_context(|| format!("cannot write {}", self.path.display()))
    }

    pub(crate) fn finish(self) -> Result<()> {
        let Self { out, tmp, path } = self;
        out.into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .with_context(|| format!("cannot write {}", path.display()))?;
        tmp.commit(&path)
    }
}

/// The token and text files of a corpus, written document by document.
pub(crate) struct CorpusWriter {
    tokens: TokenWriter,
    text: TextWriter,
    eot: u32,
    written: usize,
    truncated_ends: Vec<usize>,
    self_nll: Vec<(f64, usize)>,
    documents: usize,
    truncated: usize,
    sampled: usize,
    drawn: usize,
    non_canonical: usize,
}

impl CorpusWriter {
    pub(crate) fn create(stem: &Path, vocab_size: usize, eot: u32) -> Result<Self> {
        let (bin, txt, _) = files(stem);
        Ok(Self {
            tokens: TokenWriter::create(&bin, vocab_size)?,
            text: TextWriter::create(&txt)?,
            eot,
            written: 0,
            truncated_ends: Vec::new(),
            self_nll: Vec::new(),
            documents: 0,
            truncated: 0,
            sampled: 0,
            drawn: 0,
            non_canonical: 0,
        })
    }

    /// Appends a document; returns the tokens it took.
    pub(crate) fn add(&mut self, doc: &Published) -> Result<usize> {
        self.tokens.extend(&doc.ids)?;
        let mut n = doc.ids.len();
        if doc.truncated {
            // No end-of-text: the model did not end this document.
            self.truncated_ends.push(self.written + n);
            self.truncated += 1;
        } else {
            self.tokens.push(self.eot)?;
            n += 1;
        }
        self.text.add(doc)?;
        self.self_nll.push(doc.self_nll);
        self.written += n;
        self.documents += 1;
        self.sampled += doc.sampled;
        self.drawn += doc.sampled + usize::from(!doc.truncated);
        self.non_canonical += doc.differing;
        Ok(n)
    }

    /// Renames both files into place; returns what the manifest records of them.
    pub(crate) fn finish(self) -> Result<Written> {
        self.tokens.finish()?;
        self.text.finish()?;
        Ok(Written {
            tokens: self.written,
            documents: self.documents,
            truncated_documents: self.truncated,
            truncated_ends: self.truncated_ends,
            self_nll: self.self_nll,
            sampled_ids: self.sampled,
            drawn_tokens: self.drawn,
            non_canonical: self.non_canonical,
        })
    }
}

/// What a [`CorpusWriter`] wrote.
pub(crate) struct Written {
    pub tokens: usize,
    pub documents: usize,
    pub truncated_documents: usize,
    pub truncated_ends: Vec<usize>,
    pub self_nll: Vec<(f64, usize)>,
    /// Ids the model drew for the written documents, end tokens excluded, and with them.
    pub sampled_ids: usize,
    pub drawn_tokens: usize,
    pub non_canonical: usize,
}

/// Samples documents from `ckpt` (see [`sample_corpus`]) and hands each to `each`
/// published (decoded, then re-encoded: [`Canonicalizer`]); `each` returns the tokens
/// it counts towards `req.n_tokens`. Returns the sampler's statistics and the seconds
/// spent publishing.
pub(crate) fn draw(
    ckpt: &Checkpoint,
    req: &SampleRequest,
    device: Device,
    mut each: impl FnMut(Published) -> Result<usize>,
) -> Result<(SampleStats, f64)> {
    let canonicalizer = Canonicalizer::new(&ckpt.vocab);
    let mut canonical_seconds = 0.0;
    let stats = sample_corpus(&ckpt.model, ckpt.vocab.delimiters(), device, req, |doc| {
        let t0 = std::time::Instant::now();
        let (text, ids, differing) = canonicalizer.publish(&doc.tokens)?;
        canonical_seconds += t0.elapsed().as_secs_f64();
        let self_nll = (doc.self_nll / doc.targets().max(1) as f64, doc.targets());
        each(Published { ids, text, truncated: doc.truncated, self_nll, sampled: doc.tokens.len(), differing })
    })?;
    Ok((stats, canonical_seconds))
}

/// The manifest of a corpus `written` by sampling `ckpt` with `req`, whose sampler
/// statistics were `stats` (their corpus counts replaced by what was written).
pub(crate) fn manifest_of(
    ckpt: &Checkpoint,
    stem: &Path,
    req: &SampleRequest,
    mut stats: SampleStats,
    canonical_seconds: f64,
    written: Written,
) -> Result<SyntheticManifest> {
    let (bin, txt, _) = files(stem);
    let vocab = &ckpt.vocab;
    let (temperature, top_k, top_p) = match req.sampling {
        Sampling::Greedy => (0.0, None, None),
        Sampling::Random { temperature, top_k, top_p } => (temperature, top_k, top_p),
    };
    stats.documents = written.documents;
    stats.tokens = written.tokens;
    stats.sampled_tokens = written.drawn_tokens;
    stats.truncated_documents = written.truncated_documents;
    stats.truncation_share = written.truncated_documents as f64 / written.documents.max(1) as f64;
    let ends = written.documents - written.truncated_documents;
    stats.mean_document_tokens = (written.tokens - ends) as f64 / written.documents.max(1) as f64;
    Ok(SyntheticManifest {
        checkpoint: ckpt.dir.display().to_string(),
        temperature,
        top_k,
        top_p,
        seed: req.seed,
        requested_tokens: req.n_tokens,
        batch_size: req.batch_size,
        max_doc_tokens: req.max_doc_tokens,
        vocab_size: vocab.vocab_size(),
        eot_id: vocab.eot(),
        start_id: Some(vocab.delimiters().start),
        canonical: true,
        non_canonical_tokens: written.non_canonical,
        canonical_seconds,
        non_canonical_share: written.non_canonical as f64 / written.sampled_ids.max(1) as f64,
        truncated_ends: written.truncated_ends,
        self_nll: written.self_nll,
        bin_file: Some(FileFingerprint::of(&bin)?),
        txt_file: Some(FileFingerprint::of(&txt)?),
        curation: None,
        stats,
    })
}

/// Samples a corpus from `ckpt` and writes its three files.
pub fn write_corpus(ckpt: &Checkpoint, stem: &Path, req: &SampleRequest, device: Device) -> Result<SyntheticManifest> {
    let (_, _, json) = files(stem);
    // The manifest is the completion marker: remove a stale one before anything else.
    let _ = std::fs::remove_file(&json);
    let mut writer = CorpusWriter::create(stem, ckpt.vocab.vocab_size(), ckpt.vocab.eot())?;
    let (stats, canonical_seconds) = draw(ckpt, req, device, |doc| writer.add(&doc))?;
    let manifest = manifest_of(ckpt, stem, req, stats, canonical_seconds, writer.finish()?)?;
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
/// The `curation` record of a curated corpus's manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurationRecord {
    pub verifier: crate::config::Verifier,
    pub verifier_checkpoint: String,
    /// ρ, or the quantiles and the perplexity bounds they gave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_fraction: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantiles: Option<(f64, f64)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perplexity_bounds: Option<(f64, f64)>,
    #[serde(default)]
    pub real_documents: usize,
    /// Sampling rounds (1 under the fraction rule).
    pub rounds: usize,
    pub sampled_documents: usize,
    pub sampled_tokens: usize,
    pub kept_documents: usize,
    pub kept_tokens: usize,
    /// Sampled tokens over D (the corpus size asked for): the sampling compute.
    pub oversampling: f64,
    /// Kept tokens over sampled tokens.
    pub kept_share: f64,
    /// Seconds the verifier took (its forward passes; 0 for `self`).
    pub verifier_seconds: f64,
    /// `STEM.curation.csv` and `STEM.dropped.txt` as written.
    pub listing: FileFingerprint,
    pub dropped_text: FileFingerprint,
    /// `STEM.reference.emb`: the kept documents' passage embeddings under the reference,
    /// from the verifier's pass (reference verifier only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_embeddings: Option<FileFingerprint>,
    /// The measuring reference's checkpoint (empty in records written before lmloop
    /// let the verifier and the reference be chosen apart).
    #[serde(default)]
    pub reference_checkpoint: String,
    /// The fraction rule's length strata (1: one ranking) and the shortest length kept.
    #[serde(default = "one_stratum")]
    pub length_strata: usize,
    #[serde(default)]
    pub min_document_tokens: usize,
    /// The lengths of the kept and of the dropped documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_lengths: Option<Lengths>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped_lengths: Option<Lengths>,
}

/// The lengths of a set of documents: their count, mean, 10th, 50th and 90th
/// percentiles, in corpus tokens (as the curation listing counts them).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Lengths {
    pub documents: usize,
    pub mean: f64,
    pub p10: f64,
    pub median: f64,
    pub p90: f64,
}

impl Lengths {
    pub fn of(tokens: impl Iterator<Item = usize>) -> Self {
        let mut v: Vec<f64> = tokens.map(|t| t as f64).collect();
        v.sort_by(f64::total_cmp);
        // 0 for none, so the record stays valid JSON.
        let q = |q: f64| if v.is_empty() { 0.0 } else { crate::analysis::scores::quantile(&v, q) };
        Self {
            documents: v.len(),
            mean: v.iter().sum::<f64>() / v.len().max(1) as f64,
            p10: q(0.1),
            median: q(0.5),
            p90: q(0.9),
        }
    }

    /// "median 71 tokens (10–90%: 12–160)".
    pub fn describe(&self) -> String {
        match self.documents {
            0 => "none".to_string(),
            _ => format!("median {:.0} tokens (10–90%: {:.0}–{:.0})", self.median, self.p10, self.p90),
        }
    }
}

fn one_stratum() -> usize {
    1
}

impl CurationRecord {
    /// Whether the documents were chosen by the model that measures them.
    pub fn circular(&self) -> bool {
        self.verifier_checkpoint == self.reference_checkpoint
    }
}
