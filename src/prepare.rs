//! `lmloop prepare`: raw text → documents → train/val/test split → tokenizer → token files.
//!
//! Documents: in a text file containing lines that are exactly `<|endoftext|>`, those
//! lines separate documents (this is how `corpus fetch` writes Shakespeare, one scene per
//! document, and how TinyStories ships). Any other text file is split at blank lines, so
//! a document is a paragraph block. In a parquet or JSON-lines file every row is one
//! document (see `crate::corpus::read_source`). Documents, never lines, are assigned to
//! splits: no document is in two splits.
//!
//! The tokenizer is trained on the training split, or, with `--tokenizer`, an existing
//! `tokenizer.json` (a transformers model's, for one) is used as it is and copied in.
//!
//! Split: documents are shuffled with the seed, then the test split takes documents
//! until it holds `test_fraction` of the characters, the validation split likewise,
//! and the training split the rest.
use crate::durable::write_json_atomic;
use crate::layout::RealCorpus;
use crate::tokenizer::{Vocab, EOT};
use crate::tokens::write_tokens;
use crate::tokens::TokenFile;
use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

/// One input, already read, checked and cut into documents.
pub struct Source {
    pub name: String,
    /// The documents, in file order (none empty).
    pub documents: Vec<String>,
    pub sha256: String,
    /// Size of the input in bytes: of the file as stored, or for a text file of its
    /// text after line endings are normalised (as `meta.json` has always recorded it).
    pub bytes: usize,
}

impl Source {
    /// A raw text, cut into documents by [`split_documents`].
    pub fn from_text(name: impl Into<String>, text: &str, sha256: impl Into<String>) -> Self {
        Self { name: name.into(), documents: split_documents(text), sha256: sha256.into(), bytes: text.len() }
    }
}

#[derive(Debug, Clone)]
pub struct PrepareOptions {
    pub vocab_size: usize,
    pub val_fraction: f64,
    pub test_fraction: f64,
    pub seed: u64,
    /// Use this `tokenizer.json` (a file, or a folder holding one) instead of training a
    /// tokenizer; `vocab_size` is then the tokenizer's.
    pub tokenizer: Option<std::path::PathBuf>,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        Self { vocab_size: 2048, val_fraction: 0.05, test_fraction: 0.05, seed: 1337, tokenizer: None }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceMeta {
    pub name: String,
    pub sha256: String,
    pub bytes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SplitMeta {
    pub documents: usize,
    pub tokens: usize,
    pub characters: usize,
    /// Tokens of the longest document, end-of-text excluded (the default sampling length
    /// cap). 0 in corpora prepared before it was recorded.
    #[serde(default)]
    pub longest_document_tokens: usize,
}

/// `meta.json` of a prepared corpus; written last, so its presence means "complete".
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CorpusMeta {
    pub sources: Vec<SourceMeta>,
    /// The existing tokenizer the corpus was tokenized with (`prepare --tokenizer`);
    /// absent when the tokenizer was trained on the training split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer_from: Option<String>,
    pub vocab_size: usize,
    pub eot_id: u32,
    pub seed: u64,
    pub val_fraction: f64,
    pub test_fraction: f64,
    pub train: SplitMeta,
    pub val: SplitMeta,
    pub test: SplitMeta,
    /// Size and SHA-256 of the tokenizer and the split files as written, checked when the
    /// corpus is opened (absent from corpora prepared before lmloop recorded them).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub files: std::collections::BTreeMap<String, crate::integrity::FileFingerprint>,
}

impl CorpusMeta {
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(RealCorpus::META);
        if !path.exists() {
            bail!("{} is not a prepared corpus (no {}); run `lmloop prepare` first", dir.display(), RealCorpus::META);
        }
        crate::durable::read_json(&path)
    }
}

/// Splits a text into documents (see the module documentation).
pub fn split_documents(text: &str) -> Vec<String> {
    let has_marker = text.lines().any(|l| l.trim_end() == EOT);
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut flush = |current: &mut String| {
        let doc = current.trim_matches('\n');
        if !doc.trim().is_empty() {
            docs.push(doc.to_string());
        }
        current.clear();
    };
    for line in text.lines() {
        let boundary = if has_marker { line.trim_end() == EOT } else { line.trim().is_empty() };
        if boundary {
            flush(&mut current);
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    flush(&mut current);
    docs
}

/// Assigns documents to (train, val, test).
pub fn split(mut docs: Vec<String>, opts: &PrepareOptions) -> Result<(Vec<String>, Vec<String>, Vec<String>)> {
    for (name, f) in [("--val-fraction", opts.val_fraction), ("--test-fraction", opts.test_fraction)] {
        if !(f > 0.0 && f < 1.0) {
            bail!("{name} must be in (0, 1), got {f}");
        }
    }
    if opts.val_fraction + opts.test_fraction >= 1.0 {
        bail!("--val-fraction plus --test-fraction must leave data for training");
    }
    if docs.len() < 3 {
        bail!("the input has {} document(s); at least 3 are needed for train/val/test splits", docs.len());
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed);
    docs.shuffle(&mut rng);
    let total: usize = docs.iter().map(|d| d.len()).sum();
    let take = |docs: &mut Vec<String>, fraction: f64| {
        let target = (fraction * total as f64).ceil() as usize;
        let mut out = Vec::new();
        let mut chars = 0;
        // Always leave one document for training.
        while chars < target && docs.len() > 1 {
            let d = docs.pop().unwrap();
            chars += d.len();
            out.push(d);
        }
        out
    };
    let test = take(&mut docs, opts.test_fraction);
    let val = take(&mut docs, opts.val_fraction);
    if val.is_empty() || test.is_empty() {
        bail!("the input is too small to give every split a document");
    }
    Ok((docs, val, test))
}

/// Runs the whole preparation into `out`.
pub fn prepare(sources: &[Source], out: &Path, opts: &PrepareOptions) -> Result<CorpusMeta> {
    if sources.is_empty() {
        bail!("no input given");
    }
    let mut docs = Vec::new();
    for s in sources {
        if s.documents.iter().all(|d| d.trim().is_empty()) {
            bail!("input {} contains no text", s.name);
        }
        docs.extend(s.documents.iter().filter(|d| !d.trim().is_empty()).cloned());
    }
    // An existing tokenizer is checked before the split, so a wrong path fails fast.
    let existing = match &opts.tokenizer {
        Some(path) => Some(Vocab::load_file_or_folder(path)?),
        None => None,
    };
    let (train, val, test) = split(docs, opts)?;
    let vocab = match existing {
        Some(v) => v,
        None => Vocab::train(&train, opts.vocab_size)?,
    };
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    // Remove a stale completion marker first: the folder is incomplete until meta.json is rewritten.
    let _ = std::fs::remove_file(out.join(RealCorpus::META));
    vocab.save(&out.join(RealCorpus::TOKENIZER))?;
    let write_split = |docs: &[String], file: &str| -> Result<SplitMeta> {
        let mut ids = Vec::new();
        let mut longest = 0;
        for doc in vocab.encode_all(docs)? {
            longest = longest.max(doc.len());
            ids.extend_from_slice(&doc);
            ids.push(vocab.eot());
        }
        write_tokens(&out.join(file), &ids, vocab.vocab_size())?;
        Ok(SplitMeta {
            documents: docs.len(),
            tokens: ids.len(),
            characters: docs.iter().map(|d| d.chars().count()).sum(),
            longest_document_tokens: longest,
        })
    };
    let meta = CorpusMeta {
        sources: sources
            .iter()
            .map(|s| SourceMeta { name: s.name.clone(), sha256: s.sha256.clone(), bytes: s.bytes })
            .collect(),
        tokenizer_from: opts.tokenizer.as_ref().map(|p| p.display().to_string()),
        vocab_size: vocab.vocab_size(),
        eot_id: vocab.eot(),
        seed: opts.seed,
        val_fraction: opts.val_fraction,
        test_fraction: opts.test_fraction,
        train: write_split(&train, RealCorpus::TRAIN)?,
        val: write_split(&val, RealCorpus::VAL)?,
        test: write_split(&test, RealCorpus::TEST)?,
        files: Default::default(),
    };
    let files = crate::integrity::FINGERPRINTED
        .iter()
        .map(|f| Ok((f.to_string(), crate::integrity::FileFingerprint::of(&out.join(f))?)))
        .collect::<Result<_>>()?;
    let meta = CorpusMeta { files, ..meta };
    write_json_atomic(&out.join(RealCorpus::META), &meta)?;
    Ok(meta)
}

/// The prepared corpus at `dir`: its meta, tokenizer and split files, all checked.
pub struct PreparedCorpus {
    pub meta: CorpusMeta,
    pub vocab: Vocab,
    pub train: Arc<TokenFile>,
    pub val: Arc<TokenFile>,
    pub test: Arc<TokenFile>,
}

impl PreparedCorpus {
    /// Tokens of the longest training document (from meta.json, or counted for corpora
    /// prepared before it was recorded).
    pub fn longest_train_document(&self) -> usize {
        if self.meta.train.longest_document_tokens > 0 {
            return self.meta.train.longest_document_tokens;
        }
        crate::tokens::document_ranges(self.train.iter(), self.vocab.eot())
            .iter()
            .map(|d| d.len().saturating_sub(1))
            .max()
            .unwrap_or(0)
    }

    /// Opens the prepared corpus at `dir`, after checking its files against the records
    /// in `meta.json` (when it has them).
    pub fn open(dir: &Path) -> Result<Self> {
        let meta = CorpusMeta::load(dir)?;
        for (name, record) in &meta.files {
            crate::integrity::check_file(
                &dir.join(name),
                record,
                "restore the corpus folder from a copy, or prepare it again with `lmloop prepare` \
                 (runs started on it then refuse to resume, since their corpus changed)",
            )?;
        }
        let vocab = Vocab::load(&dir.join(RealCorpus::TOKENIZER))?;
        let open = |f: &str| TokenFile::open(&dir.join(f)).map(Arc::new);
        Ok(Self {
            meta,
            vocab,
            train: open(RealCorpus::TRAIN)?,
            val: open(RealCorpus::VAL)?,
            test: open(RealCorpus::TEST)?,
        })
    }
}
