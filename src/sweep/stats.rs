//! Across-seed statistics: mean, sample standard deviation, n and a 95% Student-t
//! confidence interval of the mean.
//!
//! With n seeds the interval is mean ± t_{0.975, n−1} · sd / √n, where sd uses the
//! n − 1 divisor. The t quantile is computed here (inverting the t distribution's
//! CDF, written with the regularized incomplete beta function) rather than taken
//! from a table, so any n works. One seed gives a mean but no interval.
//!
//! A measure that cannot leave a range (a divergence or a count is never below 0, a
//! share never above 1) gets its interval intersected with that range
//! ([`Summary::within`]). The true mean lies in the range, so the intersection covers
//! it exactly as often as the t-interval does (95% under the t model's assumptions),
//! and a band of a non-negative measure no longer dips below 0 at three seeds.
use crate::theory::ln_gamma;

/// Two-sided confidence level of every interval the sweeps report.
pub const CONFIDENCE: f64 = 0.95;

/// Mean, spread and confidence interval of one measure over seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub n: usize,
    /// None when n = 0.
    pub mean: Option<f64>,
    /// Sample standard deviation (n − 1 divisor); None when n < 2.
    pub sd: Option<f64>,
    /// Half-width of the 95% t-interval; None when n < 2.
    pub half_width: Option<f64>,
    /// The range the measure cannot leave; the interval is cut to it.
    pub range: (f64, f64),
}

/// No range: any real value.
pub const UNBOUNDED: (f64, f64) = (f64::NEG_INFINITY, f64::INFINITY);

impl Summary {
    pub fn of(values: &[f64]) -> Summary {
        let n = values.len();
        if n == 0 {
            return Summary { n, mean: None, sd: None, half_width: None, range: UNBOUNDED };
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        if n < 2 {
            return Summary { n, mean: Some(mean), sd: None, half_width: None, range: UNBOUNDED };
        }
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let sd = var.sqrt();
        let half = t_quantile(0.5 + CONFIDENCE / 2.0, (n - 1) as f64) * sd / (n as f64).sqrt();
        Summary { n, mean: Some(mean), sd: Some(sd), half_width: Some(half), range: UNBOUNDED }
    }

    /// The same summary with its interval at two-sided `confidence` instead of 95%
    /// (a Bonferroni-adjusted reading takes 1 − 0.05/m).
    pub fn at(self, confidence: f64) -> Summary {
        let half_width = match (self.sd, self.n) {
            (Some(sd), n) if n >= 2 => {
                Some(t_quantile(0.5 + confidence / 2.0, (n - 1) as f64) * sd / (n as f64).sqrt())
            }
            _ => None,
        };
        Summary { half_width, ..self }
    }

    /// The same summary for a measure that cannot leave `range`.
    pub fn within(self, range: (f64, f64)) -> Summary {
        Summary { range, ..self }
    }

    /// Lower end of the 95% interval (cut to the range).
    pub fn low(&self) -> Option<f64> {
        Some((self.mean? - self.half_width?).max(self.range.0))
    }

    /// Upper end of the 95% interval (cut to the range).
    pub fn high(&self) -> Option<f64> {
        Some((self.mean? + self.half_width?).min(self.range.1))
    }

    /// Whether the seeds tie (n ≥ 2 and sd = 0, up to rounding): the interval then has
    /// width 0, which says nothing about the spread of another seed. Such a summary is
    /// no evidence: the readings of [`super::contrasts`] keep it out of every verdict.
    pub fn tied(&self) -> bool {
        self.n >= 2 && self.sd.is_some_and(|sd| sd <= 1e-12 * self.mean.unwrap_or(0.0).abs())
    }

    /// Whether the range cut the t-interval.
    pub fn cut(&self) -> bool {
        match (self.mean, self.half_width) {
            (Some(m), Some(h)) => m - h < self.range.0 || m + h > self.range.1,
            _ => false,
        }
    }

    /// "m ± h" with `digits` decimals ("m [lo, hi]" when the range cut the interval,
    /// "m (seeds tie: no spread)" when the seeds tie), "m" for one seed, "–" for none.
    pub fn display(&self, digits: usize) -> String {
        match (self.mean, self.half_width, self.low(), self.high()) {
            (Some(m), Some(_), _, _) if self.tied() => format!("{m:.digits$} (seeds tie: no spread)"),
            (Some(m), Some(_), Some(lo), Some(hi)) if self.cut() => {
                format!("{m:.digits$} [{lo:.digits$}, {hi:.digits$}]")
            }
            (Some(m), Some(h), _, _) => format!("{m:.digits$} ± {h:.digits$}"),
            (Some(m), None, _, _) => format!("{m:.digits$}"),
            _ => "–".to_string(),
        }
    }
}

/// Welch's unpaired 95% interval of mean(a) − mean(b): (low, high), with the
/// Welch–Satterthwaite degrees of freedom; None when either side has fewer than two
/// values or both have no spread.
pub fn welch_interval(a: &[f64], b: &[f64]) -> Option<(f64, f64)> {
    let (sa, sb) = (Summary::of(a), Summary::of(b));
    let (va, vb) = (sa.sd?.powi(2) / a.len() as f64, sb.sd?.powi(2) / b.len() as f64);
    let se2 = va + vb;
    if se2 <= 0.0 {
        return None;
    }
    let df = se2 * se2 / (va * va / (a.len() - 1) as f64 + vb * vb / (b.len() - 1) as f64);
    let half = t_quantile(0.5 + CONFIDENCE / 2.0, df) * se2.sqrt();
    let d = sa.mean? - sb.mean?;
    Some((d - half, d + half))
}

/// The p-quantile of Student's t distribution with `df` degrees of freedom
/// (p in (0, 1), df > 0), to about 1e-12 relative accuracy.
pub fn t_quantile(p: f64, df: f64) -> f64 {
    // Written so that NaN fails it.
    let valid = p > 0.0 && p < 1.0 && df > 0.0;
    if !valid {
        return f64::NAN;
    }
    if p < 0.5 {
        return -t_quantile(1.0 - p, df);
    }
    if p == 0.5 {
        return 0.0;
    }
    // Bracket, then bisect: the CDF is monotone, and 200 halvings of a bracket
    // below 1e16 reach the last bit of a double.
    let mut hi = 1.0;
    while t_cdf(hi, df) < p {
        hi *= 2.0;
        if hi > 1e16 {
            return f64::INFINITY;
        }
    }
    let mut lo = 0.0;
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if t_cdf(mid, df) < p {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo <= 1e-14 * hi {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// P(T ≤ t) for Student's t with `df` degrees of freedom:
/// for t ≥ 0 it is 1 − ½·I_x(df/2, ½) with x = df / (df + t²).
pub fn t_cdf(t: f64, df: f64) -> f64 {
    let valid = !t.is_nan() && df > 0.0;
    if !valid {
        return f64::NAN;
    }
    let x = df / (df + t * t);
    let tail = 0.5 * regularized_incomplete_beta(x, df / 2.0, 0.5);
    if t >= 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// I_x(a, b), the regularized incomplete beta function, for a, b > 0 and x in [0, 1].
///
/// Evaluated with its continued fraction (modified Lentz iteration) on the side
/// of the symmetry I_x(a, b) = 1 − I_{1−x}(b, a) where the fraction converges fast.
pub fn regularized_incomplete_beta(x: f64, a: f64, b: f64) -> f64 {
    let valid = (0.0..=1.0).contains(&x) && a > 0.0 && b > 0.0;
    if !valid {
        return f64::NAN;
    }
    if x == 0.0 || x == 1.0 {
        return x;
    }
    let log_front = a * x.ln() + b * (1.0 - x).ln() - (ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b));
    if x < (a + 1.0) / (a + b + 2.0) {
        log_front.exp() * beta_fraction(x, a, b) / a
    } else {
        1.0 - log_front.exp() * beta_fraction(1.0 - x, b, a) / b
    }
}

/// The continued fraction 1 / (1 + d₁ / (1 + d₂ / (1 + …))) of the incomplete beta
/// function, with d_{2m} = m(b−m)x / ((a+2m−1)(a+2m)) and
/// d_{2m+1} = −(a+m)(a+b+m)x / ((a+2m)(a+2m+1)).
fn beta_fraction(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let guard = |v: f64| if v.abs() < TINY { TINY } else { v };
    // Lentz: f = C·D products; start from the leading "1 +" of the first denominator.
    let mut c = 1.0;
    let mut d = 1.0 / guard(1.0 - (a + b) * x / (a + 1.0));
    let mut f = d;
    for m in 1..10_000 {
        let m = m as f64;
        let even = m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m));
        d = 1.0 / guard(1.0 + even * d);
        c = guard(1.0 + even / c);
        f *= c * d;
        let odd = -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0));
        d = 1.0 / guard(1.0 + odd * d);
        c = guard(1.0 + odd / c);
        let step = c * d;
        f *= step;
        if (step - 1.0).abs() < 1e-15 {
            break;
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_match_the_tables() {
        for (df, want) in [(1.0, 12.7062), (2.0, 4.3027), (3.0, 3.1824), (4.0, 2.7764), (9.0, 2.2622), (29.0, 2.0452)] {
            let got = t_quantile(0.975, df);
            assert!((got - want).abs() < 5e-5, "t_0.975,{df}: {got} vs {want}");
        }
        // Large df tends to the normal quantile.
        assert!((t_quantile(0.975, 1e6) - 1.959966).abs() < 1e-4);
        assert!((t_quantile(0.025, 4.0) + 2.7764).abs() < 5e-5);
    }

    #[test]
    fn welch_by_hand() {
        // Equal sizes and spreads: df = 2(n − 1) = 4, se = √(2·4/3), t = 2.7764.
        let (lo, hi) = welch_interval(&[2.0, 4.0, 6.0], &[1.0, 3.0, 5.0]).unwrap();
        let half = 2.776445 * (8.0f64 / 3.0).sqrt();
        assert!((lo - (1.0 - half)).abs() < 1e-4 && (hi - (1.0 + half)).abs() < 1e-4, "{lo} {hi}");
        assert_eq!(welch_interval(&[1.0], &[2.0, 3.0]), None);
    }

    #[test]
    fn cdf_of_one_degree_is_cauchy() {
        for t in [-3.0f64, -0.5, 0.0, 0.7, 10.0] {
            let want = 0.5 + t.atan() / std::f64::consts::PI;
            assert!((t_cdf(t, 1.0) - want).abs() < 1e-12, "{t}");
        }
    }

    #[test]
    fn summary_by_hand() {
        // 2, 4, 6: mean 4, sd 2, half-width 4.302653 · 2 / √3 = 4.968275.
        let s = Summary::of(&[2.0, 4.0, 6.0]);
        assert_eq!(s.n, 3);
        assert_eq!(s.mean, Some(4.0));
        assert!((s.sd.unwrap() - 2.0).abs() < 1e-12);
        assert!((s.half_width.unwrap() - 4.968275).abs() < 1e-5, "{:?}", s.half_width);
        assert!((s.low().unwrap() + 0.968275).abs() < 1e-5);
        let one = Summary::of(&[5.0]);
        assert_eq!((one.n, one.mean, one.sd, one.half_width), (1, Some(5.0), None, None));
        assert_eq!(Summary::of(&[]).display(2), "–");
    }
}
