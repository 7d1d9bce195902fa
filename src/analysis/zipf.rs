//! Rank-frequency curves and the fitted Zipf slope.
use super::fit::LinearFit;

/// Counts above zero, most frequent first: entry r-1 is the count at rank r.
pub fn rank_frequency(counts: &[u64]) -> Vec<u64> {
    let mut ranked: Vec<u64> = counts.iter().copied().filter(|&c| c > 0).collect();
    ranked.sort_unstable_by(|a, b| b.cmp(a));
    ranked
}

/// Least-squares slope of ln(count) against ln(rank) over every token with a count
/// above zero (the whole curve, no range cut off). NaN with fewer than two such tokens.
pub fn zipf_slope(counts: &[u64]) -> f64 {
    let points: Vec<(f64, f64)> =
        rank_frequency(counts).iter().enumerate().map(|(i, &c)| (((i + 1) as f64).ln(), (c as f64).ln())).collect();
    LinearFit::fit(&points).map_or(f64::NAN, |f| f.slope)
}
