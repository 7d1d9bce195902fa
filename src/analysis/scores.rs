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
//! - `self_perplexity_median`: the median over S_{k+1}'s documents of their perplexity
//!   under M_k, the model that sampled them, as the sampler recorded it: exp of the mean
//!   negative log-likelihood M_k gave each token it drew (at temperature 1, before any
//!   filter, in the context it drew it in; see `crate::sample`), over the document's drawn
//!   tokens and its end token. It costs no forward pass. It differs from a rescoring of
//!   the corpus's text in two ways, both stated: the corpus holds the canonical
//!   re-encoding of the drawn ids (2.8-6.4% of them differ at `configs/default.toml`),
//!   and past the context length the sampler's context cycles from half to a whole
//!   context where `lmloop eval`'s windows restart. (Corpora sampled before lmloop
//!   recorded it are rescored by M_k in the eval windows.)
//!
//! Per-document values are in `analysis/RUN/scores/gen-KK.csv` (and `real-test.csv`).

/// The summary columns of one corpus's scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreSummary {
    pub reference_p10: f64,
    pub reference_median: f64,
    pub reference_p90: f64,
    pub beyond_real_p99: f64,
    pub self_median: f64,
}

/// Summarises per-document perplexities: `reference` and `own` of the corpus's
/// documents (under the reference and the sampling model), `real` of the real test
/// documents under the reference.
pub fn summarise(reference: &[f64], own: &[f64], real: &[f64]) -> ScoreSummary {
    let sorted = |v: &[f64]| {
        let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
        s.sort_by(f64::total_cmp);
        s
    };
    let (r, o, real) = (sorted(reference), sorted(own), sorted(real));
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
        self_median: quantile(&o, 0.5),
    }
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
        let s = summarise(&[50.0, 150.0, 10.0, 200.0], &[5.0, 7.0, 9.0], &real);
        assert_eq!(s.reference_median, 100.0);
        assert_eq!(s.beyond_real_p99, 0.5);
        assert_eq!(s.self_median, 7.0);
        assert!(summarise(&[], &[], &real).reference_median.is_nan());
    }
}
