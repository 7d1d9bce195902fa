//! Reading what a run left in `analysis/RUN/`: its settings (run.toml), its
//! generations table, its drift and token tables, and its corpus identity.
use super::drift::DriftRow;
use super::paths::AnalysisPaths;
use super::tails::TokenTable;
use crate::layout::{read_json, Layout};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The columns of `generations.csv` the analysis reads (others are ignored).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GenerationRecord {
    pub generation: u32,
    pub policy: String,
    pub real_fraction: Option<f64>,
    pub temperature: f64,
    pub held_out_loss: f64,
    pub held_out_perplexity: f64,
}

/// `analysis/RUN/corpus.json`, written by the generations loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorpusInfo {
    pub corpus: String,
    pub tokenizer_sha256: String,
    pub vocab_size: usize,
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
    fn resolve(run_toml: Option<&str>, first_row: Option<&GenerationRecord>, path: &Path) -> Result<Self> {
        let from_rows = RunSettings {
            policy: first_row.map_or_else(|| "unknown policy".to_string(), |r| r.policy.clone()),
            real_fraction: first_row.and_then(|r| r.real_fraction),
            temperature: first_row.map(|r| r.temperature),
        };
        let Some(text) = run_toml else { return Ok(from_rows) };
        let value: toml::Value =
            toml::from_str(text).with_context(|| format!("{} is not valid TOML", path.display()))?;
        let get = |table: &str, key: &str| value.get(table).and_then(|t| t.get(key));
        let number = |v: &toml::Value| v.as_float().or_else(|| v.as_integer().map(|i| i as f64));
        Ok(RunSettings {
            policy: get("generations", "policy")
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .unwrap_or(from_rows.policy),
            real_fraction: get("generations", "real_fraction").and_then(number).or(from_rows.real_fraction),
            temperature: get("sample", "temperature").and_then(number).or(from_rows.temperature),
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
    pub generations: Vec<GenerationRecord>,
    /// The real split's row first, then one row per generation.
    pub drift: Vec<DriftRow>,
    pub tokens: TokenTable,
    /// run.toml as written, when present.
    pub run_toml: Option<String>,
    pub corpus: Option<CorpusInfo>,
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
    let mut known: Vec<String> = std::fs::read_dir(layout.root().join("analysis"))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().join("generations.csv").exists() || e.path().join("run.toml").exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
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
        Ok(RunData { name: run.to_string(), settings, generations, drift, tokens, run_toml, corpus })
    }

    /// The real split's drift row (the reference line of every drift plot).
    pub fn real_drift(&self) -> Option<&DriftRow> {
        self.drift.iter().find(|r| r.is_real())
    }

    /// Drift rows of the synthetic corpora, with their index k of S_k.
    pub fn synthetic_drift(&self) -> impl Iterator<Item = (u32, &DriftRow)> {
        self.drift.iter().filter(|r| !r.is_real()).filter_map(|r| r.corpus_index().map(|k| (k, r)))
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
