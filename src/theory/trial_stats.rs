//! Mean, spread and quantiles of one quantity across independent trials.

use rayon::prelude::*;
use serde::Serialize;

/// Quantile levels reported everywhere (5%, 25%, 50%, 75%, 95%): the middle
/// half and the middle 90% of trials.
pub const QUANTILE_LEVELS: [f64; 5] = [0.05, 0.25, 0.5, 0.75, 0.95];

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrialStats {
    pub mean: f64,
    /// Sample standard deviation across trials (0 for a single trial); the
    /// standard error of `mean` is sd/√trials.
    pub sd: f64,
    pub q05: f64,
    pub q25: f64,
    pub median: f64,
    pub q75: f64,
    pub q95: f64,
}

impl TrialStats {
    /// Summarises the values (sorting them in place). Empty input gives NaNs.
    pub fn of(values: &mut [f64]) -> Self {
        let count = values.len() as f64;
        let mean = values.iter().sum::<f64>() / count;
        let sd = if values.len() > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (count - 1.0)).sqrt()
        } else {
            0.0
        };
        values.sort_unstable_by(f64::total_cmp);
        let [q05, q25, median, q75, q95] = QUANTILE_LEVELS.map(|level| quantile_of_sorted(values, level));
        TrialStats { mean, sd, q05, q25, median, q75, q95 }
    }

    pub fn standard_error(&self, trials: usize) -> f64 {
        self.sd / (trials as f64).sqrt()
    }
}

/// Linear interpolation between order statistics (the common "type 7" rule).
pub fn quantile_of_sorted(sorted: &[f64], level: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let position = level * (sorted.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = (below + 1).min(sorted.len() - 1);
    let fraction = position - below as f64;
    sorted[below] + fraction * (sorted[above] - sorted[below])
}

/// Per-generation statistics of `value(trial, generation)` for generations
/// 0..generations_plus_one, computed in parallel over generations.
pub fn per_generation(
    trials: usize,
    generations_plus_one: usize,
    value: impl Fn(usize, usize) -> f64 + Sync,
) -> Vec<TrialStats> {
    (0..generations_plus_one)
        .into_par_iter()
        .map(|generation| {
            let mut values: Vec<f64> = (0..trials).map(|trial| value(trial, generation)).collect();
            TrialStats::of(&mut values)
        })
        .collect()
}
