//! Recursive maximum-likelihood re-estimation of a categorical distribution:
//! the unigram core of model collapse, simulated exactly.
//!
//! Generation k (k ≥ 1) draws sample set k and fits p̂_k = counts/total to
//! the samples its data policy selects (see [`super::policy`]). Sample set 1
//! is n real samples from the start distribution p₀; later sets draw from the
//! previous estimate, tempered when T ≠ 1 (p_i^(1/T), renormalised). Real
//! samples are never tempered: temperature is a property of sampling a model.
//! Generation 0 is p₀ itself.

use anyhow::Result;
use indicatif::ProgressBar;
use rayon::prelude::*;

use super::discrete_chain::{ChainContext, ChainState, Trajectory};
pub use super::discrete_config::DiscreteConfig;

use super::predictions::{expected_squared_distance, gini_simpson};
use super::survival::{survival_bins, survival_checkpoints, SurvivalBin};
use super::trial_stats::{per_generation, TrialStats};

/// Statistics over trials of a discrete simulation; vectors indexed by
/// generation k = 0..=generations hold one entry per generation.
#[derive(Clone, Debug, PartialEq)]
pub struct DiscreteResult {
    /// Trials the statistics are over.
    pub trials: usize,
    /// Symbols with positive estimated probability.
    pub support: Vec<TrialStats>,
    /// Entropy of the estimate, in nats.
    pub entropy: Vec<TrialStats>,
    /// Total variation distance ½Σ|p̂_k − p₀| to the start.
    pub total_variation: Vec<TrialStats>,
    /// Squared L2 distance ‖p̂_k − p₀‖² to the start.
    pub squared_distance: Vec<TrialStats>,
    /// Generations at which per-symbol presence was recorded.
    pub checkpoints: Vec<usize>,
    /// `present_trials[c][i]`: trials in which symbol i has positive estimated
    /// probability at generation `checkpoints[c]`.
    pub present_trials: Vec<Vec<u32>>,
    /// Share of trials whose final estimate still ranks p₀'s mode first (ties count).
    pub mode_kept_fraction: f64,
    /// Share of trials whose final estimate has a single symbol left.
    pub single_symbol_fraction: f64,
    /// Entropy of p₀ in nats and its Gini–Simpson index 1 − Σp².
    pub start_entropy: f64,
    pub start_gini_simpson: f64,
}

impl DiscreteResult {
    /// Estimated probability that `symbol` is present at `checkpoints[slot]`.
    pub fn survival(&self, slot: usize, symbol: usize) -> f64 {
        self.present_trials[slot][symbol] as f64 / self.trials as f64
    }
}

/// Simulates without a progress bar (tests, benchmarks).
pub fn simulate_discrete(config: &DiscreteConfig) -> Result<DiscreteResult> {
    simulate_discrete_with_progress(config, &ProgressBar::hidden())
}

/// Runs all trials in parallel, advancing `progress` by one per finished trial.
pub fn simulate_discrete_with_progress(config: &DiscreteConfig, progress: &ProgressBar) -> Result<DiscreteResult> {
    simulate_discrete_recording(config, survival_checkpoints(config.generations), progress)
}

/// [`simulate_discrete`] recording per-symbol presence at the given generations (each in
/// 1..=`config.generations`, ascending) instead of the default checkpoints.
pub fn simulate_discrete_at(config: &DiscreteConfig, checkpoints: &[usize]) -> Result<DiscreteResult> {
    anyhow::ensure!(
        checkpoints.windows(2).all(|w| w[0] < w[1]) && checkpoints.iter().all(|&k| k >= 1 && k <= config.generations),
        "presence can be recorded at ascending generations 1..={} only",
        config.generations
    );
    simulate_discrete_recording(config, checkpoints.to_vec(), &ProgressBar::hidden())
}

fn simulate_discrete_recording(
    config: &DiscreteConfig,
    checkpoints: Vec<usize>,
    progress: &ProgressBar,
) -> Result<DiscreteResult> {
    config.validate()?;
    let context = ChainContext::new(config, &checkpoints);
    let support = config.start.probabilities.len();
    let presence_len = checkpoints.len() * support;

    // Each rayon job folds its trials into one partial (its own chain state,
    // trajectories and presence counts); partials are then summed. Presence
    // sums are integer adds, so the result does not depend on the split.
    let partial = (0..config.trials)
        .into_par_iter()
        .fold(
            || Partial::new(&context, presence_len),
            |mut partial, trial| {
                let trajectory = partial.state.run_trial(&context, trial, &mut partial.presence);
                partial.trajectories.push((trial, trajectory));
                progress.inc(1);
                partial
            },
        )
        .reduce_with(Partial::merge)
        .ok_or_else(|| anyhow::anyhow!("no trial ran (--trials is 0)"))?;
    let mut trajectories = partial.trajectories;
    trajectories.sort_unstable_by_key(|(trial, _)| *trial);
    let trajectories: Vec<Trajectory> = trajectories.into_iter().map(|(_, t)| t).collect();

    let generations_plus_one = config.generations + 1;
    let trials = config.trials;
    let stats = |metric: fn(&Trajectory, usize) -> f64| {
        per_generation(trials, generations_plus_one, |trial, k| metric(&trajectories[trial], k))
    };
    let present_trials = partial.presence.chunks(support.max(1)).map(<[u32]>::to_vec).collect();
    let last = config.generations;
    Ok(DiscreteResult {
        trials,
        support: stats(|t, k| t.support[k] as f64),
        entropy: stats(|t, k| t.entropy[k]),
        total_variation: stats(|t, k| t.total_variation[k]),
        squared_distance: stats(|t, k| t.squared_distance[k]),
        checkpoints,
        present_trials,
        mode_kept_fraction: trajectories.iter().filter(|t| t.mode_kept).count() as f64 / trials as f64,
        single_symbol_fraction: trajectories.iter().filter(|t| t.support[last] == 1).count() as f64 / trials as f64,
        start_entropy: context.start_entropy,
        start_gini_simpson: gini_simpson(&config.start.probabilities),
    })
}

/// What one rayon job accumulates.
struct Partial {
    state: ChainState,
    trajectories: Vec<(usize, Trajectory)>,
    presence: Vec<u32>,
}

impl Partial {
    fn new(context: &ChainContext, presence_len: usize) -> Self {
        Partial { state: ChainState::new(context), trajectories: Vec::new(), presence: vec![0; presence_len] }
    }

    fn merge(mut self, other: Partial) -> Partial {
        self.trajectories.extend(other.trajectories);
        for (mine, theirs) in self.presence.iter_mut().zip(other.presence) {
            *mine += theirs;
        }
        self
    }
}

/// The exact E‖p̂_k − p₀‖² for k = 0..=generations, when T = 1.
pub fn exact_squared_distance(config: &DiscreteConfig) -> Option<Vec<f64>> {
    config.untempered().then(|| {
        expected_squared_distance(
            config.policy,
            config.n,
            gini_simpson(&config.start.probabilities),
            config.generations,
        )
    })
}

/// Survival by expected initial count n·p, with the Poisson prediction.
pub fn discrete_survival_bins(config: &DiscreteConfig, result: &DiscreteResult) -> Vec<SurvivalBin> {
    survival_bins(&config.start.probabilities, config.n, config.trials, &result.checkpoints, &result.present_trials)
}
