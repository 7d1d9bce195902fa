//! What each generation of a theory loop is fitted to.
//!
//! Generation 1 is always fitted to n real samples (the original
//! distribution, generation 0), so the simulators' generation k is the loop's
//! model M_{k−1} (see docs/loop.md for the numbering). From generation 2 on:
//!
//! * `replace`: the n samples drawn from the previous estimate only;
//! * `accumulate`: every sample so far, real ones included (k·n in total);
//! * `fresh`: round(λ·n) fresh real samples plus n − round(λ·n) samples drawn
//!   from the previous estimate (the loop's `fresh`; the loop's `mix` reuses one
//!   real set R, which these simulators do not model).

use anyhow::{bail, Result};

/// The `--policy` flag's values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyName {
    /// Fit only the n samples drawn from the previous estimate.
    Replace,
    /// Fit all samples so far, including the original real ones.
    Accumulate,
    /// Fit λ·n fresh real samples plus (1−λ)·n from the previous estimate (needs
    /// --real-fraction): the loop's `fresh`.
    Fresh,
}

/// A validated data policy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DataPolicy {
    Replace,
    Accumulate,
    Fresh { real_fraction: f64 },
}

impl DataPolicy {
    /// Combines `--policy` and `--real-fraction`, rejecting combinations that
    /// would silently mean something else.
    pub fn from_flags(name: PolicyName, real_fraction: Option<f64>) -> Result<Self> {
        let policy = match (name, real_fraction) {
            (PolicyName::Fresh, Some(real_fraction)) => DataPolicy::Fresh { real_fraction },
            (PolicyName::Fresh, None) => {
                bail!("--policy fresh needs --real-fraction λ (the share of real samples per generation, in [0, 1])")
            }
            (PolicyName::Replace | PolicyName::Accumulate, Some(_)) => {
                bail!("--real-fraction only applies to --policy fresh")
            }
            (PolicyName::Replace, None) => DataPolicy::Replace,
            (PolicyName::Accumulate, None) => DataPolicy::Accumulate,
        };
        policy.validate()?;
        Ok(policy)
    }

    pub fn validate(&self) -> Result<()> {
        if let DataPolicy::Fresh { real_fraction } = *self {
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
            DataPolicy::Fresh { real_fraction } => ((real_fraction * n as f64).round() as u64).min(n),
        }
    }

    /// The `--policy` value.
    pub fn name(&self) -> &'static str {
        match self {
            DataPolicy::Replace => "replace",
            DataPolicy::Accumulate => "accumulate",
            DataPolicy::Fresh { .. } => "fresh",
        }
    }

    /// λ for fresh, `None` otherwise.
    pub fn real_fraction(&self) -> Option<f64> {
        match *self {
            DataPolicy::Fresh { real_fraction } => Some(real_fraction),
            _ => None,
        }
    }

    /// For titles and summaries, e.g. "fresh (λ = 0.1)".
    pub fn label(&self) -> String {
        match *self {
            DataPolicy::Replace => "replace".to_string(),
            DataPolicy::Accumulate => "accumulate".to_string(),
            DataPolicy::Fresh { real_fraction } => format!("fresh (λ = {real_fraction})"),
        }
    }
}
