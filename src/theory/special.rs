//! Log-Gamma and digamma for positive arguments.
//!
//! The standard library's `ln_gamma` is still unstable, and the predictions
//! only need these two functions, so they are computed here: shift the
//! argument above `ASYMPTOTIC_FROM` with the recurrences Γ(x+1) = x·Γ(x) and
//! ψ(x+1) = ψ(x) + 1/x, then sum the Stirling / de Moivre asymptotic series,
//! whose first omitted term is below 1e-16 relative there.

/// Below this the asymptotic series is not accurate to double precision.
const ASYMPTOTIC_FROM: f64 = 15.0;

/// ln Γ(x) for x > 0; NaN outside that domain.
pub fn ln_gamma(x: f64) -> f64 {
    if x.is_nan() || x <= 0.0 {
        return f64::NAN;
    }
    if x.is_infinite() {
        return f64::INFINITY;
    }
    let (shifted, log_product) = shift_up(x);
    stirling_leading(shifted) + stirling_correction(shifted) - log_product
}

/// ln Γ(a) − ln Γ(b) for a, b > 0, accurate even when a and b are large and
/// close (the case of the chi-mean constant, where both log-Gammas are ~n·ln n
/// but their difference is ~ln n).
pub fn ln_gamma_ratio(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() || a <= 0.0 || b <= 0.0 || a.is_infinite() || b.is_infinite() {
        return f64::NAN;
    }
    let (za, log_product_a) = shift_up(a);
    let (zb, log_product_b) = shift_up(b);
    // (za−½)ln za − (zb−½)ln zb − (za−zb), rewritten so that nothing of size
    // za·ln za is ever subtracted: (za−½)·ln(1 + (za−zb)/zb) + (za−zb)·(ln zb − 1).
    let difference = za - zb;
    let leading = (za - 0.5) * (difference / zb).ln_1p() + difference * (zb.ln() - 1.0);
    leading + stirling_correction(za) - stirling_correction(zb) - log_product_a + log_product_b
}

/// ψ(x) = d/dx ln Γ(x) for x > 0; NaN outside that domain.
pub fn digamma(x: f64) -> f64 {
    if x.is_nan() || x <= 0.0 {
        return f64::NAN;
    }
    if x.is_infinite() {
        return f64::INFINITY;
    }
    let mut z = x;
    let mut shift = 0.0;
    while z < ASYMPTOTIC_FROM {
        shift += 1.0 / z;
        z += 1.0;
    }
    let inverse_square = 1.0 / (z * z);
    // ψ(z) ~ ln z − 1/(2z) − Σ B_2k / (2k z^2k)
    let series = inverse_square
        * (1.0 / 12.0
            - inverse_square
                * (1.0 / 120.0
                    - inverse_square
                        * (1.0 / 252.0 - inverse_square * (1.0 / 240.0 - inverse_square * (1.0 / 132.0)))));
    z.ln() - 0.5 / z - series - shift
}

/// Raises x to at least `ASYMPTOTIC_FROM` by unit steps; returns the shifted
/// argument and ln(x·(x+1)·…·(shifted−1)), the log of what Γ gained.
fn shift_up(x: f64) -> (f64, f64) {
    let mut z = x;
    let mut product = 1.0;
    while z < ASYMPTOTIC_FROM {
        product *= z;
        z += 1.0;
    }
    (z, product.ln())
}

/// (z − ½)·ln z − z + ½·ln 2π.
fn stirling_leading(z: f64) -> f64 {
    (z - 0.5) * z.ln() - z + 0.5 * (2.0 * std::f64::consts::PI).ln()
}

/// Σ B_2k / (2k(2k−1) z^(2k−1)), the series part of Stirling's formula.
fn stirling_correction(z: f64) -> f64 {
    let inverse_square = 1.0 / (z * z);
    (1.0 / z)
        * (1.0 / 12.0
            - inverse_square
                * (1.0 / 360.0
                    - inverse_square
                        * (1.0 / 1260.0 - inverse_square * (1.0 / 1680.0 - inverse_square * (1.0 / 1188.0)))))
}
