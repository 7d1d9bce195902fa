//! What each generation of a theory loop is fitted to.
//!
//! Generation 1 is always fitted to n real samples (the original
//! distribution). From generation 2 on:
//!
//! * `replace`: the n samples drawn from the previous estimate only;
//! * `accumulate`: every sample so far, real ones included (k·n in total);
//! * `mix`: round(λ·n) fresh real samples plus n − round(λ·n) samples drawn
//!   from the previous estimate.

use anyhow::{bail, Result};

/// The `--policy` flag's values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyName {
    /// Fit only the n samples drawn from the previous estimate.
    Replace,
    /// Fit all samples so far, including the original real ones.
    Accumulate,
    /// Fit λ·n real samples plus (1−λ)·n from the previous estimate (needs --real-fraction).
    Mix,
}

/// A validated data policy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DataPolicy {
    Replace,
    Accumulate,
    Mix { real_fraction: f64 },
}

impl DataPolicy {
    /// Combines `--policy` and `--real-fraction`, rejecting combinations that
    /// would silently mean something else.
    pub fn from_flags(name: PolicyName, real_fraction: Option<f64>) -> Result<Self> {
        let policy = match (name, real_fraction) {
            (PolicyName::Mix, Some(real_fraction)) => DataPolicy::Mix { real_fraction },
            (PolicyName::Mix, None) => {
                bail!("--policy mix needs --real-fraction λ (the share of real samples per generation, in [0, 1])")
            }
            (PolicyName::Replace | PolicyName::Accumulate, Some(_)) => {
                bail!("--real-fraction only applies to --policy mix")
            }
            (PolicyName::Replace, None) => DataPolicy::Replace,
            (PolicyName::Accumulate, None) => DataPolicy::Accumulate,
        };
        policy.validate()?;
        Ok(policy)
    }

    pub fn validate(&self) -> Result<()> {
        if let DataPolicy::Mix { real_fraction } = *self {
            if !(0.0..=1.0).contains(&real_fraction) {
                bail!("--real-fraction must be between 0 and 1 inclusive (got {real_fraction})");
            }
        }
        Ok(())
    }

    /// Real samples in each generation after the first (of n in total).
    pub fn real_draws(&self, n: u64) -> u64 {
        match *self {
            DataPolicy::Replace | DataPolicy::Accumulate => 0,
            // Rounded so that λ·n need not be an integer; clamped against
            // rounding above n when λ = 1.
            DataPolicy::Mix { real_fraction } => ((real_fraction * n as f64).round() as u64).min(n),
        }
    }

    /// The `--policy` value.
    pub fn name(&self) -> &'static str {
        match self {
            DataPolicy::Replace => "replace",
            DataPolicy::Accumulate => "accumulate",
            DataPolicy::Mix { .. } => "mix",
        }
    }

    /// λ for mix, `None` otherwise.
    pub fn real_fraction(&self) -> Option<f64> {
        match *self {
            DataPolicy::Mix { real_fraction } => Some(real_fraction),
            _ => None,
        }
    }

    /// For titles and summaries, e.g. "mix (λ = 0.1)".
    pub fn label(&self) -> String {
        match *self {
            DataPolicy::Replace => "replace".to_string(),
            DataPolicy::Accumulate => "accumulate".to_string(),
            DataPolicy::Mix { real_fraction } => format!("mix (λ = {real_fraction})"),
        }
    }
}
