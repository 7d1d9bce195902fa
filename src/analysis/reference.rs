//! `analysis/RUN/reference.json`: the sizes of a run's real reference that the null
//! models and the noise floor depend on.
use crate::durable::read_json;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// `analysis/RUN/reference.json`, written by `update_run_analysis`: the sizes the
/// null model and the noise floor depend on, readable without the corpora.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceInfo {
    /// What R is, e.g. "real/train (R, 203114 tokens)".
    pub name: String,
    /// |R|: tokens of the real training set generation 0 trained on.
    pub real_tokens: u64,
    /// D: tokens per synthetic corpus.
    pub generation_size: u64,
    /// Tokens of the real sample measured as the noise floor (about D; 0 when there is none).
    pub noise_floor_tokens: u64,
    /// Where the noise floor came from, or why there is none (empty in older runs).
    #[serde(default)]
    pub noise_floor_source: String,
    /// The tail null from real documents (absent from older runs, whose reports show
    /// the independence bound alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub real_null: Option<super::null::RealNull>,
}

impl ReferenceInfo {
    /// D/|R|: the expected count, in one D-token sample of real text, of a token seen once in R.
    pub fn sample_ratio(&self) -> f64 {
        self.generation_size as f64 / self.real_tokens as f64
    }

    /// Reads and checks `reference.json`.
    pub fn read(path: &Path) -> Result<Self> {
        let info: ReferenceInfo = read_json(path)?;
        if info.real_tokens == 0 || info.generation_size == 0 {
            bail!(
                "{} is not valid: real_tokens ({}) and generation_size ({}) must both be above 0",
                path.display(),
                info.real_tokens,
                info.generation_size
            );
        }
        Ok(info)
    }

    /// "D = 200000 tokens per corpus, |R| = 1560000, D/|R| = 0.1282".
    pub fn describe(&self) -> String {
        format!(
            "D = {} tokens per synthetic corpus, |R| = {} real training tokens, D/|R| = {}",
            self.generation_size,
            self.real_tokens,
            format_ratio(self.sample_ratio())
        )
    }
}

/// Four significant digits.
pub fn format_ratio(value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return format!("{value}");
    }
    let digits = (3 - value.abs().log10().floor() as i32).clamp(0, 12) as usize;
    format!("{value:.digits$}")
}
