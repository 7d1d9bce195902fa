//! Reading what a run left in `analysis/RUN/`: its settings (run.toml), its
//! generations table, its drift and token tables, its corpus identity, the sizes
//! of its real reference, and its held-out loss by token frequency.
use super::drift::DriftRow;
use super::tails::TokenTable;
use crate::durable::read_json;
use crate::layout::Layout;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

use super::reference::ReferenceInfo;
use crate::records::GenerationRow;

/// One row of `analysis/RUN/loss_by_frequency.csv` (written by the generations
/// loop): generation k's mean held-out loss on the test targets whose real count
/// lies in one bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct LossByFrequencyRow {
    pub generation: u32,
    /// 0: tokens never seen in R; 1..: log-spaced ranges of real count.
    pub bucket: u32,
    /// Inclusive bounds of the bucket's real counts.
    pub min_real_count: u64,
    pub max_real_count: u64,
    /// Held-out target positions whose token falls in the bucket.
    pub target_tokens: u64,
    /// Mean next-token loss (nats) over those targets; NaN when there are none.
    pub mean_loss: f64,
}

impl LossByFrequencyRow {
    /// "0 (never in R)", "1", "2-3", … for legends and tables.
    pub fn range_label(&self) -> String {
        count_range_label(self.min_real_count, self.max_real_count)
    }
}

/// "0 (never in R)", "1", "2-3", …: an inclusive range of real counts.
pub fn count_range_label(low: u64, high: u64) -> String {
    match (low, high) {
        (0, 0) => "0 (never in R)".to_string(),
        (low, high) if low == high => low.to_string(),
        (low, high) => format!("{low}-{high}"),
    }
}

/// The columns of `loss_by_frequency.csv`, in order.
pub const LOSS_BY_FREQUENCY_COLUMNS: [&str; 6] =
    ["generation", "bucket", "min_real_count", "max_real_count", "target_tokens", "mean_loss"];

#[derive(Deserialize)]
struct RawLossRow {
    generation: u32,
    bucket: u32,
    min_real_count: u64,
    max_real_count: u64,
    target_tokens: u64,
    /// `NaN` or empty for a bucket without targets.
    mean_loss: Option<f64>,
}

/// Reads `loss_by_frequency.csv`: `Ok(None)` when the file does not exist, an
/// error naming the file and row when it is malformed (a missing column, a bucket
/// whose bounds are reversed or change between generations, a generation listing
/// a bucket twice).
pub fn read_loss_by_frequency(path: &Path) -> Result<Option<Vec<LossByFrequencyRow>>> {
    if !path.exists() {
        return Ok(None);
    }
    let mut r = csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    let header = r.headers().with_context(|| format!("{} has no header", path.display()))?.clone();
    if let Some(missing) = LOSS_BY_FREQUENCY_COLUMNS.iter().find(|c| !header.iter().any(|h| h == **c)) {
        bail!(
            "{} lacks the column {missing} (expected {}; found {})",
            path.display(),
            LOSS_BY_FREQUENCY_COLUMNS.join(","),
            header.iter().collect::<Vec<_>>().join(",")
        );
    }
    let mut rows: Vec<LossByFrequencyRow> = Vec::new();
    for (i, raw) in r.deserialize::<RawLossRow>().enumerate() {
        let line = i + 2;
        let raw = raw.with_context(|| format!("malformed row {line} in {}", path.display()))?;
        if raw.min_real_count > raw.max_real_count {
            bail!(
                "{} row {line}: bucket {} has min_real_count {} above max_real_count {}",
                path.display(),
                raw.bucket,
                raw.min_real_count,
                raw.max_real_count
            );
        }
        for earlier in rows.iter().filter(|e| e.bucket == raw.bucket) {
            if earlier.generation == raw.generation {
                bail!("{} row {line}: generation {} lists bucket {} twice", path.display(), raw.generation, raw.bucket);
            }
            if (earlier.min_real_count, earlier.max_real_count) != (raw.min_real_count, raw.max_real_count) {
                bail!(
                    "{} row {line}: bucket {} covers real counts {}-{} here but {}-{} in generation {}",
                    path.display(),
                    raw.bucket,
                    raw.min_real_count,
                    raw.max_real_count,
                    earlier.min_real_count,
                    earlier.max_real_count,
                    earlier.generation
                );
            }
        }
        rows.push(LossByFrequencyRow {
            generation: raw.generation,
            bucket: raw.bucket,
            min_real_count: raw.min_real_count,
            max_real_count: raw.max_real_count,
            target_tokens: raw.target_tokens,
            mean_loss: raw.mean_loss.unwrap_or(f64::NAN),
        });
    }
    Ok(Some(rows))
}

/// `analysis/RUN/corpus.json`, written by the generations loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorpusInfo {
    pub corpus: String,
    pub tokenizer_sha256: String,
    pub vocab_size: usize,
}

/// The keys of a run's `run.toml` that tell runs apart. Read leniently (unknown keys
/// ignored, each key optional), because run.toml files of older versions must still
/// load for their reports.
#[derive(Debug, Default, Deserialize)]
struct RunToml {
    #[serde(default)]
    generations: RunTomlGenerations,
    #[serde(default)]
    sample: RunTomlSample,
}

#[derive(Debug, Default, Deserialize)]
struct RunTomlGenerations {
    policy: Option<String>,
    real_fraction: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
struct RunTomlSample {
    temperature: Option<f64>,
}

/// What distinguishes runs in a comparison: data policy, real fraction λ, temperature.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSettings {
    pub policy: String,
    pub real_fraction: Option<f64>,
    pub temperature: Option<f64>,
}

impl RunSettings {
    /// From run.toml (`generations.policy`, `generations.real_fraction`,
    /// `sample.temperature`), falling back to the first generations.csv row.
    fn resolve(run_toml: Option<&str>, first_row: Option<&GenerationRow>, path: &Path) -> Result<Self> {
        let from_rows = RunSettings {
            policy: first_row.map_or_else(|| "unknown policy".to_string(), |r| r.policy.clone()),
            real_fraction: first_row.and_then(|r| r.real_fraction),
            temperature: first_row.map(|r| r.temperature),
        };
        let Some(text) = run_toml else { return Ok(from_rows) };
        let settings: RunToml =
            toml::from_str(text).with_context(|| format!("{} is not valid TOML", path.display()))?;
        Ok(RunSettings {
            policy: settings.generations.policy.unwrap_or(from_rows.policy),
            real_fraction: settings.generations.real_fraction.or(from_rows.real_fraction),
            temperature: settings.sample.temperature.or(from_rows.temperature),
        })
    }

    /// `replace, T=1` or `mix λ=0.5, T=0.8`.
    pub fn describe(&self) -> String {
        let mut text = self.policy.clone();
        if let Some(l) = self.real_fraction {
            text.push_str(&format!(" λ={l}"));
        }
        if let Some(t) = self.temperature {
            text.push_str(&format!(", T={t}"));
        }
        text
    }
}

/// Everything the reports show about one run.
#[derive(Debug, Clone)]
pub struct RunData {
    pub name: String,
    pub settings: RunSettings,
    pub generations: Vec<GenerationRow>,
    /// The real split's row first, then one row per generation.
    pub drift: Vec<DriftRow>,
    pub tokens: TokenTable,
    /// run.toml as written, when present.
    pub run_toml: Option<String>,
    pub corpus: Option<CorpusInfo>,
    /// reference.json (|R|, D, the noise floor's size); absent for runs analysed before it existed.
    pub reference: Option<ReferenceInfo>,
    /// loss_by_frequency.csv, when the loop wrote it.
    pub loss_by_frequency: Option<Vec<LossByFrequencyRow>>,
}

/// Fails with one sentence when `analysis/RUN` does not exist, naming the runs that do.
pub fn require_run(layout: &Layout, run: &str) -> Result<()> {
    if run.is_empty() || run.contains('/') || run.starts_with('.') {
        bail!("'{run}' is not a run name (a plain folder name under analysis/)");
    }
    let dir = layout.analysis(run);
    if dir.is_dir() {
        return Ok(());
    }
    let mut known: Vec<String> = std::fs::read_dir(layout.analysis_root())
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| layout.generations_csv(name).exists() || layout.run_toml(name).exists())
                .collect()
        })
        .unwrap_or_default();
    known.sort();
    let known =
        if known.is_empty() { "there are none yet".to_string() } else { format!("known runs: {}", known.join(", ")) };
    bail!("no run named '{run}': {} does not exist ({known})", dir.display())
}

fn require_file(path: &Path, what: &str) -> Result<()> {
    if !path.exists() {
        bail!("{} is missing: {what}", path.display());
    }
    Ok(())
}

impl RunData {
    /// The token table alone (what `inspect tails` needs).
    pub fn load_tokens(layout: &Layout, run: &str) -> Result<TokenTable> {
        require_run(layout, run)?;
        let path = layout.tokens_csv(run);
        require_file(&path, "the run has no analysed generation yet (the generations loop writes it after each one)")?;
        TokenTable::read_csv(&path)
    }

    pub fn load(layout: &Layout, run: &str) -> Result<Self> {
        require_run(layout, run)?;
        let tokens = Self::load_tokens(layout, run)?;
        let drift_path = layout.drift_csv(run);
        require_file(
            &drift_path,
            "the run has no analysed generation yet (the generations loop writes it after each one)",
        )?;
        let drift = read_csv_rows(&drift_path)?;
        let generations_path = layout.generations_csv(run);
        require_file(&generations_path, "the run has not finished a generation yet")?;
        let generations = read_csv_rows(&generations_path)?;
        let toml_path = layout.run_toml(run);
        let run_toml = match std::fs::read_to_string(&toml_path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", toml_path.display())),
        };
        let settings = RunSettings::resolve(run_toml.as_deref(), generations.first(), &toml_path)?;
        let corpus_path = layout.corpus_json(run);
        let corpus = if corpus_path.exists() { Some(read_json(&corpus_path)?) } else { None };
        let reference = Self::load_reference(layout, run)?;
        let loss_by_frequency = read_loss_by_frequency(&layout.loss_by_frequency_csv(run))?;
        Ok(RunData {
            name: run.to_string(),
            settings,
            generations,
            drift,
            tokens,
            run_toml,
            corpus,
            reference,
            loss_by_frequency,
        })
    }

    /// reference.json, or `None` when the run was analysed before it existed.
    pub fn load_reference(layout: &Layout, run: &str) -> Result<Option<ReferenceInfo>> {
        let path = layout.reference_json(run);
        if path.exists() {
            ReferenceInfo::read(&path).map(Some)
        } else {
            Ok(None)
        }
    }

    /// D/|R|, when reference.json was written.
    pub fn sample_ratio(&self) -> Option<f64> {
        self.reference.as_ref().map(ReferenceInfo::sample_ratio)
    }

    /// The real split's drift row (the reference line of every drift plot).
    pub fn real_drift(&self) -> Option<&DriftRow> {
        self.drift.iter().find(|r| r.is_real())
    }

    /// The noise floor's drift row: a real sample of D tokens measured like any S_k.
    pub fn noise_floor_drift(&self) -> Option<&DriftRow> {
        self.drift.iter().find(|r| r.is_noise_floor())
    }

    /// Drift rows of the synthetic corpora, with their index k of S_k.
    pub fn synthetic_drift(&self) -> impl Iterator<Item = (u32, &DriftRow)> {
        self.drift
            .iter()
            .filter(|r| !r.is_real() && !r.is_noise_floor())
            .filter_map(|r| r.corpus_index().map(|k| (k, r)))
    }
}

/// The rows of a `drift.csv`.
pub fn read_drift_csv(path: &Path) -> Result<Vec<DriftRow>> {
    read_csv_rows(path)
}

/// Every row of a CSV file with a header, as `T`.
pub fn read_csv_rows<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let mut r = csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    r.deserialize()
        .enumerate()
        .map(|(i, row)| row.with_context(|| format!("malformed row {} in {}", i + 2, path.display())))
        .collect()
}
