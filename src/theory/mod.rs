//! `lmloop theory`: exact simulators of recursive estimation, the analytic
//! skeleton of model collapse, each printed next to the published prediction
//! it tests.
//!
//! * `discrete`: a categorical distribution re-estimated by maximum
//!   likelihood from its own samples (Suresh et al. 2024's Poisson survival
//!   law; Marchi et al. 2024's temperature effects; bounded drift under
//!   accumulation, Gerstgrasser et al. 2024; stability with real data,
//!   Bertrand et al. 2024).
//! * `gaussian`: a Gaussian refitted to its own samples (E[σ_k] = σ₀·c^k).
//!
//! The simulators are pure functions of a validated config
//! ([`simulate_discrete`], [`simulate_gaussian`]); [`run`] adds the progress
//! bar, the output files and the printed summary.

mod accumulated_sampler;
mod alias_table;
mod discrete;
mod discrete_chain;
mod discrete_config;
mod discrete_report;
mod gaussian;
mod gaussian_report;
mod multinomial;
mod output;
mod policy;
mod predictions;
mod seeding;
mod special;
mod start_distribution;
mod survival;
mod table_format;
mod trial_stats;

use anyhow::Result;
use std::path::PathBuf;

pub use accumulated_sampler::AccumulatedSampler;
pub use alias_table::AliasTable;
pub use discrete::{
    discrete_survival_bins, exact_squared_distance, simulate_discrete, simulate_discrete_at,
    simulate_discrete_with_progress, DiscreteConfig, DiscreteResult,
};
pub use discrete_report::{discrete_summary, write_discrete_report};
pub use gaussian::{simulate_gaussian, simulate_gaussian_with_progress, GaussianConfig, GaussianResult};
pub use gaussian_report::{gaussian_summary, write_gaussian_report};
pub use multinomial::{DrawnCounts, MultinomialSampler};
pub use policy::{DataPolicy, PolicyName};
pub use predictions::{
    expected_squared_distance, gini_simpson, log_sigma_drift, mix_fixed_point_squared_distance, poisson_survival,
    poisson_survival_factors, sigma_mean_approximation, sigma_shrink_factor, SpreadEstimator,
};
pub use special::{digamma, ln_gamma, ln_gamma_ratio};
pub use start_distribution::{StartDistribution, DEFAULT_SUPPORT};
pub use survival::{survival_bins, survival_checkpoints, SurvivalBin};
pub use trial_stats::{TrialStats, QUANTILE_LEVELS};

/// Exact simulators of recursive estimation (the theory behind model collapse).
#[derive(clap::Subcommand, Debug, Clone)]
pub enum TheoryCommand {
    /// Re-estimate a categorical distribution by maximum likelihood from n
    /// samples of the previous estimate, generation after generation; report
    /// surviving support, entropy, distance to the start and per-symbol
    /// survival against Suresh et al.'s Poisson prediction.
    Discrete(DiscreteArgs),
    /// Refit a Gaussian by sample mean and standard deviation to n samples of
    /// the previous fit; report σ_k against E[σ_k] = σ₀·c^k.
    Gaussian(GaussianArgs),
}

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

/// `lmloop theory gaussian`: recursive refitting of a Gaussian.
#[derive(clap::Args, Debug, Clone)]
pub struct GaussianArgs {
    /// Samples per generation; with the default, collapse shows within a few
    /// thousand generations, as E[σ_k] ≈ exp(−k/(4n)).
    #[arg(long, default_value_t = 100)]
    pub n: u64,
    /// Generations to simulate; the default is 20·n for the default n.
    #[arg(long, default_value_t = 2000)]
    pub generations: usize,
    /// Independent trials, over which means and quantiles are taken; the
    /// default pins the mean of σ_k to about 1% while its spread is moderate.
    #[arg(long, default_value_t = 2000)]
    pub trials: usize,
    /// Variance estimator; the default is the usual sample standard deviation,
    /// while mle divides by n and shrinks σ three times as fast.
    #[arg(long, value_enum, default_value_t = SpreadEstimator::Unbiased)]
    pub estimator: SpreadEstimator,
    /// Data each generation is fitted to; the default is the closed loop,
    /// whose E[σ_k] = σ₀·c^k is known exactly.
    #[arg(long, value_enum, default_value_t = PolicyName::Replace)]
    pub policy: PolicyName,
    /// Share λ of real samples per generation, in [0, 1]; required by and only
    /// accepted with --policy fresh.
    #[arg(long, allow_negative_numbers = true)]
    pub real_fraction: Option<f64>,
    /// Random seed; trial t uses its own stream derived from it, so results do
    /// not depend on the number of threads.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output folder for CSV tables, plots and the summary; files of an
    /// earlier run there are replaced.
    #[arg(long, default_value = "analysis/theory/gaussian")]
    pub out: PathBuf,
}

impl GaussianConfig {
    pub fn from_args(args: &GaussianArgs) -> Result<Self> {
        let config = GaussianConfig {
            n: args.n,
            generations: args.generations,
            trials: args.trials,
            estimator: args.estimator,
            policy: DataPolicy::from_flags(args.policy, args.real_fraction)?,
            seed: args.seed,
        };
        config.validate()?;
        Ok(config)
    }
}

/// Runs a theory command: validates, simulates, writes the output folder and
/// prints the summary to stdout.
pub fn run(command: &TheoryCommand) -> Result<()> {
    let summary = match command {
        TheoryCommand::Discrete(args) => {
            let config = DiscreteConfig::from_args(args)?;
            output::prepare_output_folder(&args.out)?;
            let progress = crate::progress::trials(config.trials, "discrete");
            let result = simulate_discrete_with_progress(&config, &progress)?;
            progress.finish_and_clear();
            write_discrete_report(&config, &result, &args.out)?
        }
        TheoryCommand::Gaussian(args) => {
            let config = GaussianConfig::from_args(args)?;
            output::prepare_output_folder(&args.out)?;
            let progress = crate::progress::trials(config.trials, "gaussian");
            let result = simulate_gaussian_with_progress(&config, &progress)?;
            progress.finish_and_clear();
            write_gaussian_report(&config, &result, &args.out)?
        }
    };
    print!("{summary}");
    Ok(())
}
