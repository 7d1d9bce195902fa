//! Per-document perplexity of the synthetic corpora under a fixed reference model, as
//! Shumailov et al. (Nature 2024) plot it, and under the model that wrote them.
//!
//! Definitions (one place, as for every other measure):
//! - A document's perplexity under a model is exp of its mean next-token loss over its
//!   targets (its tokens and, when the model ended it, the end token), read in the
//!   windows `lmloop eval` reads.
//! - The reference is M_0, the model trained on R, or with `generations.reference =
//!   "oracle"` the same architecture trained once on the whole real training split
//!   (`reference_model` in `protocol.json`). The real documents it is compared with are
//!   the test split's; the noise floor's documents are scored too
//!   (`scores/noise-floor.csv`).
//! - `reference_perplexity_p10`, `_median`, `_p90`: quantiles over the documents of
//!   S_{k+1} of their perplexity under the reference (linear between order statistics).
//! - `reference_beyond_real_p99`: the share of S_{k+1}'s documents whose reference
//!   perplexity exceeds the 99th percentile of the real test documents'.
//! - `reference_beyond_real_p99_floor`: its null, what real text not in R shows: the
//!   share of the noise floor's documents beyond the same cut, length-matched to S_{k+1}
//!   (the floor's documents in up to [`LENGTH_STRATA`] strata of equal counts by targets,
//!   each S_{k+1} document given its stratum's share), because the cut sits near the
//!   test split's longest-tailed documents and short documents exceed it more often.
//!   NaN without a noise floor. `reference_beyond_real_p99_excess` is the difference:
//!   a share beyond the real tail reads as the loop's only where it exceeds its floor.
//! - `self_perplexity_median`: the median over S_{k+1}'s documents of their perplexity
//!   under M_k, the model that sampled them, read like the reference's column: the
//!   corpus's tokens (the canonical re-encoding of what M_k drew, which differs from the
//!   drawn ids for some documents) in the windows `lmloop eval` reads, one forward pass
//!   of M_k. The two columns compare like with like: on the same model and corpus they
//!   are equal. (The sampler's own record of its draws' likelihood, `self_nll` in the
//!   corpus manifest, conditions on other ids and longer contexts and is not used.)
//!
//! Per-document values are in `analysis/RUN/scores/gen-KK.csv` (and `real-test.csv`).

/// The summary columns of one corpus's scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreSummary {
    pub reference_p10: f64,
    pub reference_median: f64,
    pub reference_p90: f64,
    pub beyond_real_p99: f64,
    pub beyond_real_p99_floor: f64,
    pub self_median: f64,
}

/// The most length strata of the noise floor's documents the null of the share beyond
/// the real tail is matched in; each holds at least [`STRATUM_DOCUMENTS`] documents.
pub const LENGTH_STRATA: usize = 10;
pub const STRATUM_DOCUMENTS: usize = 20;

/// Summarises per-document perplexities: `reference` (targets, perplexity) and `own`
/// of the corpus's documents (under the reference and the sampling model), `real` of
/// the real test documents and `floor` (targets, perplexity) of the noise floor's,
/// both under the reference.
pub fn summarise(reference: &[(u64, f64)], own: &[f64], real: &[f64], floor: &[(u64, f64)]) -> ScoreSummary {
    let lengths: Vec<u64> = reference.iter().map(|d| d.0).collect();
    let reference: Vec<f64> = reference.iter().map(|d| d.1).collect();
    let sorted = |v: &[f64]| {
        let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
        s.sort_by(f64::total_cmp);
        s
    };
    let (r, o, real) = (sorted(&reference), sorted(own), sorted(real));
    let cut = quantile(&real, 0.99);
    let beyond = if r.is_empty() || cut.is_nan() {
        f64::NAN
    } else {
        r.iter().filter(|&&x| x > cut).count() as f64 / r.len() as f64
    };
    ScoreSummary {
        reference_p10: quantile(&r, 0.1),
        reference_median: quantile(&r, 0.5),
        reference_p90: quantile(&r, 0.9),
        beyond_real_p99: beyond,
        beyond_real_p99_floor: if cut.is_nan() { f64::NAN } else { length_matched_share(&lengths, floor, cut) },
        self_median: quantile(&o, 0.5),
    }
}

/// The share of `floor`'s documents (targets, perplexity) above `cut`, length-matched
/// to documents of `lengths` targets: the floor's documents sorted by targets form up
/// to [`LENGTH_STRATA`] strata of about equal counts (at least [`STRATUM_DOCUMENTS`]
/// each; documents of one length share a stratum), and each document of `lengths` counts its stratum's share (the first stratum whose
/// longest document is at least as long, else the last). NaN when either is empty.
pub fn length_matched_share(lengths: &[u64], floor: &[(u64, f64)], cut: f64) -> f64 {
    let mut floor: Vec<(u64, f64)> = floor.iter().copied().filter(|d| !d.1.is_nan()).collect();
    if floor.is_empty() || lengths.is_empty() {
        return f64::NAN;
    }
    floor.sort_by_key(|d| d.0);
    // Cuts at equal counts, each moved past its run of equal lengths, so one length
    // never falls in two strata.
    let n = floor.len();
    let strata = (n / STRATUM_DOCUMENTS).clamp(1, LENGTH_STRATA);
    let mut cuts = vec![0];
    for i in 1..=strata {
        let mut at = i * n / strata;
        while at < n && floor[at].0 == floor[at - 1].0 {
            at += 1;
        }
        if at > *cuts.last().expect("starts at 0") {
            cuts.push(at);
        }
    }
    let bounds: Vec<(u64, f64)> = cuts
        .windows(2)
        .map(|w| {
            let part = &floor[w[0]..w[1]];
            let beyond = part.iter().filter(|d| d.1 > cut).count() as f64 / part.len() as f64;
            (part.last().expect("strata hold documents").0, beyond)
        })
        .collect();
    let share = |len: u64| bounds.iter().find(|b| b.0 >= len).unwrap_or(bounds.last().expect("one stratum")).1;
    lengths.iter().map(|&l| share(l)).sum::<f64>() / lengths.len() as f64
}

/// The density of `values` over `bins` equal bins of [lo, hi], as (bin centre, density)
/// points whose integral is the share of values inside the range.
pub fn density(values: &[f64], lo: f64, hi: f64, bins: usize) -> Vec<(f64, f64)> {
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0usize; bins];
    for &v in values {
        if v >= lo && v <= hi && width > 0.0 {
            counts[(((v - lo) / width) as usize).min(bins - 1)] += 1;
        }
    }
    let n = values.len().max(1) as f64;
    counts.iter().enumerate().map(|(i, &c)| (lo + (i as f64 + 0.5) * width, c as f64 / (n * width))).collect()
}

/// The q-quantile of sorted values, linear between order statistics; NaN when empty.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n => {
            let at = q * (n - 1) as f64;
            let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
            sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo as f64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_the_share_beyond_the_real_tail() {
        let real: Vec<f64> = (1..=100).map(f64::from).collect();
        let corpus = [(10, 50.0), (10, 150.0), (10, 10.0), (10, 200.0)];
        let s = summarise(&corpus, &[5.0, 7.0, 9.0], &real, &[]);
        assert_eq!(s.reference_median, 100.0);
        assert_eq!(s.beyond_real_p99, 0.5);
        assert_eq!(s.self_median, 7.0);
        assert!(s.beyond_real_p99_floor.is_nan(), "no floor, no null");
        assert!(summarise(&[], &[], &real, &[]).reference_median.is_nan());
    }

    /// Short floor documents exceed the cut more often than long ones: the null of a
    /// corpus of short documents is the short floor documents' share, not the floor's.
    #[test]
    fn the_null_of_the_share_beyond_the_tail_is_matched_in_length() {
        // 100 floor documents: 50 of 5 targets (20% beyond the cut of 100), 50 of 200
        // targets (none beyond).
        let mut floor: Vec<(u64, f64)> = (0..50).map(|i| (5, if i % 5 == 0 { 500.0 } else { 50.0 })).collect();
        floor.extend((0..50).map(|i| (200, 20.0 + i as f64)));
        let cut = 100.0;
        assert!((length_matched_share(&[5; 7], &floor, cut) - 0.2).abs() < 1e-12);
        assert_eq!(length_matched_share(&[150, 300], &floor, cut), 0.0);
        assert!((length_matched_share(&[5, 200], &floor, cut) - 0.1).abs() < 1e-12);
        // A floor of real text scored as a corpus is its own null, up to stratum edges.
        let lengths: Vec<u64> = floor.iter().map(|d| d.0).collect();
        assert!((length_matched_share(&lengths, &floor, cut) - 0.1).abs() < 1e-12);
        // Fewer documents than a stratum needs: one stratum, the floor's plain share.
        let few = &floor[..10];
        assert!((length_matched_share(&[200], few, cut) - 0.2).abs() < 1e-12);
        assert!(length_matched_share(&[], &floor, cut).is_nan());
        assert!(length_matched_share(&[5], &[], cut).is_nan());
    }
}
