//! Recursive fitting of a Gaussian by its sample mean and standard deviation.
//!
//! The start is N(0, 1). Generation k fits (μ̂_k, σ̂_k) to the samples its data
//! policy selects; sample set 1 is n real draws from N(0, 1), later synthetic
//! sets draw from N(μ̂_{k−1}, σ̂²_{k−1}).
//!
//! A batch of m normal draws is summarised exactly by its mean and its sum of
//! squared deviations, which are independent with laws N(μ, σ²/m) and
//! σ²·χ²_{m−1}. The simulator draws those two numbers instead of m points, so
//! a generation costs O(1) whatever n is, with exactly the law of the
//! point-by-point loop. Under replace only the ratio σ̂_k/σ̂_{k−1} =
//! √(χ²_{n−1}/d) matters, and the chain is followed in log space so that
//! σ̂_k can fall below the smallest double without ln σ̂_k becoming −∞.

use anyhow::{bail, Result};
use indicatif::ProgressBar;
use rand::Rng;
use rand_distr::{ChiSquared, Distribution, StandardNormal};
use rayon::prelude::*;

use super::policy::DataPolicy;
use super::predictions::{log_sigma_drift, sigma_shrink_factor, SpreadEstimator};
use super::seeding::trial_rng;
use super::trial_stats::{per_generation, TrialStats};

/// Above this many (trial, generation) pairs the trajectories (8 bytes each)
/// would take more than about a gigabyte.
pub const MAX_TRIAL_GENERATIONS: usize = 125_000_000;

/// A validated Gaussian simulation.
#[derive(Clone, Debug, PartialEq)]
pub struct GaussianConfig {
    pub n: u64,
    pub generations: usize,
    pub trials: usize,
    pub estimator: SpreadEstimator,
    pub policy: DataPolicy,
    pub seed: u64,
}

impl GaussianConfig {
    pub fn validate(&self) -> Result<()> {
        if self.n < 2 {
            bail!(
                "--n must be at least 2 for the Gaussian loop, a standard deviation needs two samples (got {})",
                self.n
            );
        }
        if self.generations == 0 {
            bail!("--generations must be at least 1 (got 0)");
        }
        if self.trials == 0 {
            bail!("--trials must be at least 1 (got 0)");
        }
        self.policy.validate()?;
        let stored = self.trials.saturating_mul(self.generations + 1);
        if stored > MAX_TRIAL_GENERATIONS {
            bail!(
                "--trials × (--generations + 1) = {stored} exceeds {MAX_TRIAL_GENERATIONS}, too many trajectories to keep in memory; lower one of them"
            );
        }
        Ok(())
    }

    /// True when no real data enters after generation 1, i.e. the loop is
    /// the multiplicative chain whose moments are known exactly.
    pub fn closed_loop(&self) -> bool {
        self.policy != DataPolicy::Accumulate && self.policy.real_draws(self.n) == 0
    }

    /// E[σ_k] = c^k and E[ln σ_k] = k·E[ln(σ_k/σ_{k−1})] for k = 0..=generations
    /// (σ₀ = 1), exact for the closed loop; `None` when real data enters.
    pub fn exact_moments(&self) -> Option<(Vec<f64>, Vec<f64>)> {
        self.closed_loop().then(|| {
            let c = sigma_shrink_factor(self.n, self.estimator);
            let drift = log_sigma_drift(self.n, self.estimator);
            let ks = 0..=self.generations;
            (ks.clone().map(|k| c.powi(k as i32)).collect(), ks.map(|k| drift * k as f64).collect())
        })
    }
}

/// Statistics over trials per generation k = 0..=generations.
#[derive(Clone, Debug, PartialEq)]
pub struct GaussianResult {
    /// σ̂_k (σ₀ = 1).
    pub sigma: Vec<TrialStats>,
    /// ln σ̂_k.
    pub log_sigma: Vec<TrialStats>,
}

/// Simulates without a progress bar (tests, benchmarks).
pub fn simulate_gaussian(config: &GaussianConfig) -> Result<GaussianResult> {
    simulate_gaussian_with_progress(config, &ProgressBar::hidden())
}

pub fn simulate_gaussian_with_progress(config: &GaussianConfig, progress: &ProgressBar) -> Result<GaussianResult> {
    config.validate()?;
    // One ln σ̂ trajectory per trial, collected in trial order.
    let log_sigmas: Vec<Vec<f64>> = (0..config.trials)
        .into_par_iter()
        .map(|trial| {
            let trajectory = log_sigma_trajectory(config, trial);
            progress.inc(1);
            trajectory
        })
        .collect();
    let length = config.generations + 1;
    Ok(GaussianResult {
        sigma: per_generation(config.trials, length, |trial, k| log_sigmas[trial][k].exp()),
        log_sigma: per_generation(config.trials, length, |trial, k| log_sigmas[trial][k]),
    })
}

fn log_sigma_trajectory(config: &GaussianConfig, trial: usize) -> Vec<f64> {
    let mut rng = trial_rng(config.seed, trial);
    let mut log_sigmas = Vec::with_capacity(config.generations + 1);
    log_sigmas.push(0.0);
    if config.closed_loop() {
        // σ̂_k = σ̂_{k−1}·√(χ²_{n−1}/d): sample set 1 (real, σ₀ = 1) included.
        let chi_squared = ChiSquared::new((config.n - 1) as f64).expect("n ≥ 2 was validated");
        let log_divisor = config.estimator.divisor(config.n).ln();
        let mut log_sigma = 0.0;
        for _ in 0..config.generations {
            log_sigma += 0.5 * (chi_squared.sample(&mut rng).ln() - log_divisor);
            log_sigmas.push(log_sigma);
        }
        return log_sigmas;
    }

    // Real data enters every generation: follow (count, mean, squared
    // deviations) of the fitted samples in linear space; σ̂ stays of order σ₀.
    let real_draws = config.policy.real_draws(config.n);
    let mut fitted = Moments::draw(config.n, 0.0, 1.0, &mut rng);
    log_sigmas.push(fitted.sigma(config.estimator).ln());
    for _ in 1..config.generations {
        let (mean, sigma) = (fitted.mean, fitted.sigma(config.estimator));
        fitted = match config.policy {
            DataPolicy::Accumulate => fitted.merge(Moments::draw(config.n, mean, sigma, &mut rng)),
            _ => Moments::draw(real_draws, 0.0, 1.0, &mut rng).merge(Moments::draw(
                config.n - real_draws,
                mean,
                sigma,
                &mut rng,
            )),
        };
        log_sigmas.push(fitted.sigma(config.estimator).ln());
    }
    log_sigmas
}

/// Sufficient statistics of a batch of points.
#[derive(Clone, Copy, Debug)]
struct Moments {
    count: u64,
    mean: f64,
    /// Σ (x − mean)².
    squared_deviations: f64,
}

impl Moments {
    /// The statistics of `count` draws from N(mean, sigma²), drawn directly.
    fn draw(count: u64, mean: f64, sigma: f64, rng: &mut impl Rng) -> Moments {
        if count == 0 {
            return Moments { count, mean: 0.0, squared_deviations: 0.0 };
        }
        let noise: f64 = rng.sample(StandardNormal);
        let squared_deviations = if count >= 2 {
            let chi_squared = ChiSquared::new((count - 1) as f64).expect("count ≥ 2 gives a positive df");
            sigma * sigma * chi_squared.sample(rng)
        } else {
            0.0
        };
        Moments { count, mean: mean + sigma * noise / (count as f64).sqrt(), squared_deviations }
    }

    /// Statistics of the union of two batches (Chan et al.'s pairwise update).
    fn merge(self, other: Moments) -> Moments {
        if self.count == 0 {
            return other;
        }
        if other.count == 0 {
            return self;
        }
        let count = self.count + other.count;
        let delta = other.mean - self.mean;
        let (a, b, total) = (self.count as f64, other.count as f64, count as f64);
        Moments {
            count,
            mean: self.mean + delta * b / total,
            squared_deviations: self.squared_deviations + other.squared_deviations + delta * delta * a * b / total,
        }
    }

    fn sigma(&self, estimator: SpreadEstimator) -> f64 {
        (self.squared_deviations / estimator.divisor(self.count)).sqrt()
    }
}
