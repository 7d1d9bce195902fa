//! Survival of a symbol as a function of its expected initial count n·p and
//! of the generation k, next to the Poisson prediction 1 − exp(−n·p·g_k).

use super::predictions::{poisson_survival, poisson_survival_factors};

/// Generations at which per-symbol presence is recorded: 1, 2, 3, 5 times
/// powers of ten up to `generations`, and `generations` itself. Log-spaced
/// because a symbol with expected count c survives about c generations.
pub fn survival_checkpoints(generations: usize) -> Vec<usize> {
    let mut checkpoints = Vec::new();
    let mut decade = 1usize;
    while decade <= generations {
        checkpoints.extend([1, 2, 3, 5].iter().map(|m| m * decade).filter(|&k| k <= generations));
        decade = decade.saturating_mul(10);
    }
    if checkpoints.last() != Some(&generations) {
        checkpoints.push(generations);
    }
    checkpoints
}

/// Symbols grouped by expected initial count in octaves [2^b, 2^(b+1)).
#[derive(Clone, Debug, PartialEq)]
pub struct SurvivalBin {
    pub expected_count_low: f64,
    pub expected_count_high: f64,
    pub symbols: usize,
    pub mean_expected_count: f64,
    /// Per checkpoint: share of (symbol, trial) pairs with the symbol present.
    pub simulated: Vec<f64>,
    /// Per checkpoint: mean over the bin's symbols of 1 − exp(−n·p·g_k).
    pub predicted: Vec<f64>,
}

/// Bins symbols of positive start probability by n·p and averages survival
/// over each bin (`present_trials[c][i]` as in [`super::discrete::DiscreteResult`]).
pub fn survival_bins(
    start: &[f64],
    n: u64,
    trials: usize,
    checkpoints: &[usize],
    present_trials: &[Vec<u32>],
) -> Vec<SurvivalBin> {
    let factors = poisson_survival_factors(checkpoints.last().copied().unwrap_or(0));
    let mut by_octave: std::collections::BTreeMap<i32, Vec<usize>> = Default::default();
    for (symbol, &p) in start.iter().enumerate() {
        if p > 0.0 {
            let expected = n as f64 * p;
            by_octave.entry(expected.log2().floor() as i32).or_default().push(symbol);
        }
    }
    by_octave
        .into_iter()
        .map(|(octave, symbols)| {
            let expected: Vec<f64> = symbols.iter().map(|&i| n as f64 * start[i]).collect();
            let pairs = (symbols.len() * trials) as f64;
            let simulated =
                present_trials.iter().map(|row| symbols.iter().map(|&i| row[i] as f64).sum::<f64>() / pairs).collect();
            let predicted = checkpoints
                .iter()
                .map(|&k| {
                    expected.iter().map(|&c| poisson_survival(c, factors[k - 1])).sum::<f64>() / symbols.len() as f64
                })
                .collect();
            SurvivalBin {
                expected_count_low: 2f64.powi(octave),
                expected_count_high: 2f64.powi(octave + 1),
                symbols: symbols.len(),
                mean_expected_count: expected.iter().sum::<f64>() / symbols.len() as f64,
                simulated,
                predicted,
            }
        })
        .collect()
}
