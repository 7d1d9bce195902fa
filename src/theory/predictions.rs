//! Closed-form predictions that the simulators are compared against.
//!
//! * Suresh et al. (2024), Poisson model of the discrete replace loop: a
//!   symbol of original probability p appears in the k-th sample set (the
//!   real samples being k = 1) with probability 1 − exp(−n·p·g_k), where
//!   g_1 = 1 and g_{k+1} = 1 − exp(−g_k) (g iterated k times from +∞).
//! * The same loop at temperature 1 is a Wright–Fisher chain, so the mean
//!   squared L2 distance of the k-th estimate to the start obeys an exact
//!   linear recursion for every data policy (derived in
//!   [`expected_squared_distance`]).
//! * Recursive Gaussian fitting: σ_k = σ_{k−1}·√(χ²_{n−1}/d) with d = n − 1
//!   (unbiased variance) or d = n (maximum likelihood), independent factors,
//!   so E[σ_k] = σ₀·c^k and E[ln σ_k] = ln σ₀ + k·E[ln √(χ²_{n−1}/d)].

use super::policy::DataPolicy;
use super::special::{digamma, ln_gamma_ratio};

/// g_k for k ≥ 1: g_1 = 1, g_{k+1} = 1 − e^(−g_k). Returns g_1..=g_max_k.
///
/// Suresh et al. bound it by 1/k ≤ g_k ≤ 3/k; asymptotically g_k ≈ 2/k, which
/// is why a symbol seen c times survives about c generations.
pub fn poisson_survival_factors(max_k: usize) -> Vec<f64> {
    let mut factors = Vec::with_capacity(max_k);
    let mut g = f64::INFINITY;
    for _ in 0..max_k {
        // 1 − e^(−x) computed as −expm1(−x) keeps precision when g_k is small.
        g = -(-g).exp_m1();
        factors.push(g);
    }
    factors
}

/// Probability that a symbol with expected initial count n·p is still present
/// in sample set k, under the Poisson model: 1 − exp(−n·p·g_k).
pub fn poisson_survival(expected_initial_count: f64, g_k: f64) -> f64 {
    -(-expected_initial_count * g_k).exp_m1()
}

/// Gini–Simpson index 1 − Σ p_i², the chance that two draws differ; it sets
/// the scale of the sampling error of a categorical estimate.
pub fn gini_simpson(probabilities: &[f64]) -> f64 {
    1.0 - probabilities.iter().map(|p| p * p).sum::<f64>()
}

/// E‖p̂_k − p₀‖² for k = 0..=generations, exact at temperature 1.
///
/// Write d_k = p̂_k − p₀ and H₀ = 1 − Σ p₀². Every policy keeps E[p̂_k] = p₀
/// (each sample set is unbiased for the distribution it is drawn from), so
/// E[1 − Σ p̂²] = H₀ − E‖d‖², and a multinomial of m draws from q has
/// E‖counts/m − q‖² = (1 − Σ q²)/m. Splitting each step into independent,
/// conditionally mean-zero parts gives, with D_k = E‖d_k‖², D_0 = 0:
///
/// * replace: D_k = D_{k−1} + (H₀ − D_{k−1})/n, i.e. D_k = H₀·(1 − (1 − 1/n)^k);
///   it rises to H₀ (collapse to a single symbol).
/// * accumulate: p̂_k = ((k−1)·p̂_{k−1} + s_k)/k, so D_k = D_{k−1} + (H₀ − D_{k−1})/(n·k²),
///   bounded by (π²/6)·H₀/n.
/// * mix with r real and s = n − r synthetic draws (all n real at k = 1, which
///   the formula reproduces because p̂_0 = p₀):
///   D_k = (r·H₀ + s·(H₀ − D_{k−1}))/n² + (s/n)²·D_{k−1}, a contraction to a fixed point.
pub fn expected_squared_distance(policy: DataPolicy, n: u64, gini_simpson_start: f64, generations: usize) -> Vec<f64> {
    let n_f = n as f64;
    let h0 = gini_simpson_start;
    let mut distances = Vec::with_capacity(generations + 1);
    let mut d = 0.0;
    distances.push(d);
    for k in 1..=generations {
        d = match policy {
            DataPolicy::Replace => d + (h0 - d) / n_f,
            DataPolicy::Accumulate => d + (h0 - d) / (n_f * (k as f64).powi(2)),
            DataPolicy::Fresh { .. } => {
                let real = policy.real_draws(n) as f64;
                let synthetic = n_f - real;
                (real * h0 + synthetic * (h0 - d)) / (n_f * n_f) + (synthetic / n_f).powi(2) * d
            }
        };
        distances.push(d);
    }
    distances
}

/// The limit of [`expected_squared_distance`] under mix with `real_draws` of
/// n real: D* = (H₀/n) / (1 − (s/n)² + s/n²) with s = n − real_draws. It is
/// H₀ (total collapse) only when no real draw enters.
pub fn mix_fixed_point_squared_distance(n: u64, real_draws: u64, gini_simpson_start: f64) -> f64 {
    let n_f = n as f64;
    let synthetic = (n - real_draws.min(n)) as f64;
    (gini_simpson_start / n_f) / (1.0 - (synthetic / n_f).powi(2) + synthetic / (n_f * n_f))
}

/// Which variance normaliser the Gaussian refit uses.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SpreadEstimator {
    /// σ̂² = Σ(x − x̄)²/n.
    Mle,
    /// σ̂² = Σ(x − x̄)²/(n − 1), the unbiased variance.
    Unbiased,
}

impl SpreadEstimator {
    /// The divisor d of the sum of squared deviations for a batch of n points.
    pub fn divisor(self, n: u64) -> f64 {
        match self {
            SpreadEstimator::Mle => n as f64,
            SpreadEstimator::Unbiased => (n - 1) as f64,
        }
    }
}

/// c = E[√(χ²_{n−1}/(n−1))] = √(2/(n−1))·Γ(n/2)/Γ((n−1)/2), exact (n ≥ 2);
/// the MLE multiplies it by √((n−1)/n). E[σ_k] = σ₀·c^k.
pub fn sigma_shrink_factor(n: u64, estimator: SpreadEstimator) -> f64 {
    let degrees = (n - 1) as f64;
    let unbiased = ((2.0 / degrees).ln() / 2.0 + ln_gamma_ratio(n as f64 / 2.0, degrees / 2.0)).exp();
    match estimator {
        SpreadEstimator::Unbiased => unbiased,
        SpreadEstimator::Mle => unbiased * (degrees / n as f64).sqrt(),
    }
}

/// E[ln(σ_k/σ_{k−1})] = ½·(ψ((n−1)/2) + ln 2 − ln d), exact (n ≥ 2); the mean
/// of ln σ_k drifts down linearly, E[ln σ_k] = ln σ₀ + k·(this).
pub fn log_sigma_drift(n: u64, estimator: SpreadEstimator) -> f64 {
    let degrees = (n - 1) as f64;
    0.5 * (digamma(degrees / 2.0) + std::f64::consts::LN_2 - estimator.divisor(n).ln())
}

/// The large-n approximation of c^k quoted in the literature:
/// exp(−k/(4n)) for the unbiased estimator, exp(−3k/(4n)) for the MLE.
pub fn sigma_mean_approximation(n: u64, estimator: SpreadEstimator, k: usize) -> f64 {
    let rate = match estimator {
        SpreadEstimator::Unbiased => 0.25,
        SpreadEstimator::Mle => 0.75,
    };
    (-rate * k as f64 / n as f64).exp()
}
