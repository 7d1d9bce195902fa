//! The entry point the generations loop calls after each generation: rewrites
//! `drift.csv`, `tokens.csv`, `reference.json` and the report from the corpora.
//!
//! Drift rows are cached per corpus in `analysis/RUN/drift/*.toml` (TOML because
//! it keeps NaN, which JSON cannot). A cached row is reused only when its key
//! matches: the measure definitions' version, the vocabulary, the end-of-text id
//! and fingerprints of both the corpus and the real split. So a regenerated
//! corpus or a changed definition is measured again, never served stale.
use super::drift::{count_tokens, measure_corpus, measure_noise_floor, DriftRow, Reference};
use super::reference::ReferenceInfo;
use super::tails::TokenTable;
use crate::durable::{write_atomic, write_json_atomic};
use crate::layout::Layout;
use crate::tokens::TokenFile;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Bump when a measure's definition changes, so cached rows are recomputed.
const DEFINITIONS_VERSION: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CacheKey {
    definitions_version: u32,
    vocab_size: usize,
    eot: u32,
    /// Hex fingerprints (TOML integers cannot hold every u64).
    real_fingerprint: String,
    corpus_fingerprint: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CachedRow {
    key: CacheKey,
    row: DriftRow,
}

/// FNV-1a over the token ids and the length: cheap (a few ms for 10M tokens) and
/// only needs to tell apart corpora of one run.
fn fingerprint(tokens: &[u32]) -> String {
    let mut h = crate::mix::Fnv1a::new();
    for &t in tokens {
        h.add(u64::from(t));
    }
    h.add(tokens.len() as u64);
    h.hex()
}

/// What every corpus is measured against, and the sample that shows what a
/// perfect model would measure.
#[derive(Debug, Clone)]
pub struct RealReference {
    /// R, the real training set generation 0 trained on (whole documents concatenated, each ending with <|endoftext|>).
    pub tokens: Vec<u32>,
    /// A real sample of D tokens: what a perfect model would show (the noise floor);
    /// empty when too little real text lies outside R, `noise_floor_source` says why.
    pub noise_floor: Vec<u32>,
    /// Where the noise floor came from (or why there is none).
    pub noise_floor_source: String,
    /// The tail null from real documents, when there were enough outside R.
    pub null: Option<super::null::RealNull>,
    /// D, the generation size (tokens per synthetic corpus).
    pub generation_size: usize,
    /// A short name for messages, e.g. "real/train (R, 203114 tokens)".
    pub name: String,
}

impl RealReference {
    /// The sizes written to `reference.json`.
    pub fn info(&self) -> ReferenceInfo {
        ReferenceInfo {
            name: self.name.clone(),
            real_tokens: self.tokens.len() as u64,
            generation_size: self.generation_size as u64,
            noise_floor_tokens: self.noise_floor.len() as u64,
            noise_floor_source: self.noise_floor_source.clone(),
            real_null: self.null.clone(),
        }
    }
}

/// Rewrites `analysis/RUN/drift.csv`, `tokens.csv`, `reference.json` and the
/// report (`report.html`, `plots/`) from the real reference and the synthetic
/// corpora S_1..S_K written so far; returns the report's path.
///
/// - `real`: R, the noise-floor sample and D (see [`RealReference`]).
/// - `synthetic`: `(k, token file of S_k)` for k = 1..=K, in order, without gaps.
/// - `token_texts`: decoded text of every vocabulary token (its length is the vocabulary size).
/// - `eot`: the end-of-text id.
///
/// drift.csv holds the real split's row, the noise floor's row, then one row per S_k.
/// Call it after `generations.csv` holds the generation's row (the report reads it,
/// and `loss_by_frequency.csv` when it exists). Each file is written atomically;
/// unchanged corpora are not measured again.
pub fn update_run_analysis(
    layout: &Layout,
    run: &str,
    real: &RealReference,
    synthetic: &[(u32, PathBuf)],
    token_texts: &[String],
    eot: u32,
) -> Result<PathBuf> {
    update_run_measures(layout, run, real, synthetic, token_texts, eot)?;
    super::report::write_report(layout, run)
}

/// The measuring half of [`update_run_analysis`]: `drift.csv`, `tokens.csv` and
/// `reference.json`, without drawing the report.
pub fn update_run_measures(
    layout: &Layout,
    run: &str,
    real: &RealReference,
    synthetic: &[(u32, PathBuf)],
    token_texts: &[String],
    eot: u32,
) -> Result<()> {
    let vocab_size = token_texts.len();
    if vocab_size == 0 {
        bail!("the vocabulary is empty (no token texts were given)");
    }
    if eot as usize >= vocab_size {
        bail!("the end-of-text id {eot} is outside the vocabulary of {vocab_size} tokens");
    }
    if real.tokens.is_empty() {
        bail!("the real reference {} is empty; drift needs at least one real token", real.name);
    }
    if real.generation_size == 0 {
        bail!("the generation size D of {} is 0; every synthetic corpus needs at least one token", real.name);
    }
    for (position, (k, path)) in synthetic.iter().enumerate() {
        if *k != position as u32 + 1 {
            bail!(
                "synthetic corpora must be S_1, S_2, … in order without gaps, but position {} holds S_{k} ({})",
                position + 1,
                path.display()
            );
        }
    }

    let real_tokens = &real.tokens;
    let real_counts = count_tokens(real_tokens, vocab_size).with_context(|| format!("counting {}", real.name))?;
    let reference =
        Reference::with_text(real_counts.clone(), real_tokens).with_context(|| format!("reading {}", real.name))?;
    let real_fingerprint = fingerprint(real_tokens);
    let key_for = |tokens: &[u32]| CacheKey {
        definitions_version: DEFINITIONS_VERSION,
        vocab_size,
        eot,
        real_fingerprint: real_fingerprint.clone(),
        corpus_fingerprint: fingerprint(tokens),
    };

    let mut rows = Vec::with_capacity(synthetic.len() + 2);
    let real_cache = layout.drift_cache(run, None);
    rows.push(
        cached_or_measured(&real_cache, key_for(real_tokens), || measure_corpus(&reference, real_tokens, eot, None))
            .with_context(|| format!("measuring {}", real.name))?,
    );
    // No floor row when too little real text lies outside R: a floor from R's own
    // documents would not be what a perfect model shows.
    if !real.noise_floor.is_empty() {
        let floor_cache = layout.noise_floor_cache(run);
        rows.push(
            cached_or_measured(&floor_cache, key_for(&real.noise_floor), || {
                measure_noise_floor(&reference, &real.noise_floor, eot)
            })
            .with_context(|| format!("measuring the noise-floor sample of {}", real.name))?,
        );
    }

    let mut synthetic_counts = Vec::with_capacity(synthetic.len());
    for (k, path) in synthetic {
        let tokens = TokenFile::open(path)?.to_vec();
        let counts = count_tokens(&tokens, vocab_size).with_context(|| format!("counting {}", path.display()))?;
        let cache = layout.drift_cache(run, Some(*k));
        let row = cached_or_measured(&cache, key_for(&tokens), || measure_corpus(&reference, &tokens, eot, Some(*k)))
            .with_context(|| format!("measuring S_{k} ({})", path.display()))?;
        rows.push(row);
        synthetic_counts.push(counts);
    }

    let info = real.info();
    write_drift_csv(&layout.drift_csv(run), &rows)?;
    TokenTable::new(token_texts, real_counts, synthetic_counts)?.write_csv(
        &layout.tokens_csv(run),
        Some(info.sample_ratio()),
        info.real_null.as_ref().map(|n| n.absence_probabilities(vocab_size)).as_deref(),
    )?;
    write_json_atomic(&layout.reference_json(run), &info)
}

/// The cached row at `path` when its key matches, else `measure()` (then cached).
fn cached_or_measured(path: &Path, key: CacheKey, measure: impl FnOnce() -> Result<DriftRow>) -> Result<DriftRow> {
    let cached = std::fs::read_to_string(path).ok().and_then(|text| toml::from_str::<CachedRow>(&text).ok());
    if let Some(cached) = cached.filter(|c| c.key == key) {
        return Ok(cached.row);
    }
    let row = measure()?;
    let text = toml::to_string(&CachedRow { key, row: row.clone() })
        .with_context(|| format!("cannot format the cache entry {}", path.display()))?;
    write_atomic(path, text.as_bytes())?;
    Ok(row)
}

pub fn write_drift_csv(path: &Path, rows: &[DriftRow]) -> Result<()> {
    crate::durable::write_csv_atomic(path, |w| {
        for row in rows {
            w.serialize(row).with_context(|| format!("cannot format a row of {}", path.display()))?;
        }
        Ok(())
    })
}
