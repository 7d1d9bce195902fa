//! Recursive maximum-likelihood re-estimation of a categorical distribution:
//! the unigram core of model collapse, simulated exactly.
//!
//! Generation k (k ≥ 1) draws sample set k and fits p̂_k = counts/total to
//! the samples its data policy selects (see [`super::policy`]). Sample set 1
//! is n real samples from the start distribution p₀; later sets draw from the
//! previous estimate, tempered when T ≠ 1 (p_i^(1/T), renormalised). Real
//! samples are never tempered: temperature is a property of sampling a model.
//! Generation 0 is p₀ itself.

use std::path::PathBuf;

use anyhow::Result;
use indicatif::ProgressBar;
use rayon::prelude::*;

use super::discrete_chain::{ChainContext, ChainState, Trajectory};
pub use super::discrete_config::DiscreteConfig;
use super::policy::{DataPolicy, PolicyName};
use super::predictions::{expected_squared_distance, gini_simpson};
use super::start_distribution::StartDistribution;
use super::survival::{survival_bins, survival_checkpoints, SurvivalBin};
use super::trial_stats::{per_generation, TrialStats};

/// `lmloop theory discrete`: recursive re-estimation of a categorical distribution.
#[derive(clap::Args, Debug, Clone)]
pub struct DiscreteArgs {
    /// Starting distribution: `zipf:S` (p_i ∝ i^−S over --support symbols),
    /// `uniform`, or `file:COUNTS.csv` (one symbol per row: either a single
    /// unnamed column of counts, or a header naming a `count` or `real_count`
    /// column; other columns are ignored). The default zipf:1.1 is close to
    /// the rank-frequency law of words in text.
    #[arg(long, default_value = "zipf:1.1")]
    pub dist: String,
    /// Number of symbols for zipf/uniform [default: 1000, a small vocabulary
    /// whose tail still has many rare symbols]. Not accepted with file:.
    #[arg(long)]
    pub support: Option<usize>,
    /// Samples per generation (the corpus size); the default puts most tail
    /// symbols of zipf:1.1 below an expected count of 1.
    #[arg(long, default_value_t = 1000)]
    pub n: u64,
    /// Generations to simulate; the default is long enough for replace to
    /// collapse to a handful of symbols at n = 1000.
    #[arg(long, default_value_t = 2000)]
    pub generations: usize,
    /// Independent trials, over which means and quantiles are taken; the
    /// default gives survival probabilities to about ±0.01.
    #[arg(long, default_value_t = 500)]
    pub trials: usize,
    /// Data each generation is fitted to; the default is the closed loop that
    /// the Poisson prediction describes.
    #[arg(long, value_enum, default_value_t = PolicyName::Replace)]
    pub policy: PolicyName,
    /// Share λ of real samples per generation, in [0, 1]; required by and only
    /// accepted with --policy fresh.
    #[arg(long, allow_negative_numbers = true)]
    pub real_fraction: Option<f64>,
    /// Sampling temperature T > 0 applied to every estimate before sampling
    /// from it (p_i^(1/T), renormalised); the default samples the estimate as is.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub temperature: f64,
    /// Random seed; trial t uses its own stream derived from it, so results do
    /// not depend on the number of threads.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output folder for CSV tables, plots and the summary; files of an
    /// earlier run there are replaced.
    #[arg(long, default_value = "analysis/theory/discrete")]
    pub out: PathBuf,
}

impl DiscreteConfig {
    pub fn from_args(args: &DiscreteArgs) -> Result<Self> {
        let config = DiscreteConfig {
            start: StartDistribution::from_spec(&args.dist, args.support)?,
            n: args.n,
            generations: args.generations,
            trials: args.trials,
            policy: DataPolicy::from_flags(args.policy, args.real_fraction)?,
            temperature: args.temperature,
            seed: args.seed,
        };
        config.validate()?;
        Ok(config)
    }
}

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
    config.validate()?;
    let checkpoints = survival_checkpoints(config.generations);
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
