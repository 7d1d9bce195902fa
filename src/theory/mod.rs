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

pub use accumulated_sampler::AccumulatedSampler;
pub use alias_table::AliasTable;
pub use discrete::{
    discrete_survival_bins, exact_squared_distance, simulate_discrete, simulate_discrete_with_progress, DiscreteArgs,
    DiscreteConfig, DiscreteResult,
};
pub use discrete_report::{discrete_summary, write_discrete_report};
pub use gaussian::{simulate_gaussian, simulate_gaussian_with_progress, GaussianArgs, GaussianConfig, GaussianResult};
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
