//! The settings of one discrete simulation, validated; read by the simulation
//! (`discrete.rs`) and by each trial's chain (`discrete_chain.rs`).
use anyhow::{bail, Result};

use super::policy::DataPolicy;
use super::start_distribution::StartDistribution;

/// Above this many (trial, generation) pairs the per-trial trajectories
/// (28 bytes each) would take more than about half a gigabyte.
pub const MAX_TRIAL_GENERATIONS: usize = 20_000_000;

/// A validated discrete simulation.
#[derive(Clone, Debug)]
pub struct DiscreteConfig {
    pub start: StartDistribution,
    /// Samples per generation.
    pub n: u64,
    pub generations: usize,
    pub trials: usize,
    pub policy: DataPolicy,
    pub temperature: f64,
    pub seed: u64,
}

impl DiscreteConfig {
    /// The reference run (zipf:1.1 over 1000 symbols, n = 1000,
    /// 2000 generations, 500 trials, T = 1, seed 0): what the benchmark times.
    pub fn reference(policy: DataPolicy) -> Result<Self> {
        let config = DiscreteConfig {
            start: StartDistribution::from_spec("zipf:1.1", Some(1000))?,
            n: 1000,
            generations: 2000,
            trials: 500,
            policy,
            temperature: 1.0,
            seed: 0,
        };
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<()> {
        if self.n == 0 {
            bail!("--n must be at least 1 (got 0)");
        }
        if self.generations == 0 {
            bail!("--generations must be at least 1 (got 0)");
        }
        if self.trials == 0 {
            bail!("--trials must be at least 1 (got 0)");
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            bail!("--temperature must be a finite number > 0 (got {})", self.temperature);
        }
        self.policy.validate()?;
        let support = self.start.probabilities.len();
        if support == 0 || support > u32::MAX as usize {
            bail!("the start distribution must have between 1 and {} symbols (got {support})", u32::MAX);
        }
        let stored = self.trials.saturating_mul(self.generations + 1);
        if stored > MAX_TRIAL_GENERATIONS {
            bail!(
                "--trials × (--generations + 1) = {stored} exceeds {MAX_TRIAL_GENERATIONS}, too many trajectories to keep in memory; lower one of them"
            );
        }
        Ok(())
    }

    /// True when the exact Wright–Fisher and Poisson predictions apply.
    pub fn untempered(&self) -> bool {
        self.temperature == 1.0
    }
}
