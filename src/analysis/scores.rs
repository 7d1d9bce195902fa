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
//! - `reference_beyond_real_p99_floor`: its null, what real text not in R shows at
//!   S_{k+1}'s document lengths: one piece of the noise floor's documents per document
//!   of S_{k+1}, with as many targets ([`floor_pieces`]), scored by the reference like
//!   any document, and the share of the pieces beyond the same cut. The cut sits near
//!   the test split's most surprising documents, and a short document's perplexity
//!   varies more than a long one's, so real text exceeds it too, short text more often.
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

/// Summarises per-document perplexities: `reference` and `own` of the corpus's
/// documents (under the reference and the sampling model), `real` of the real test
/// documents under the reference; `floor_beyond` is the null of the share beyond the
/// real tail ([`share_above`] of the floor's pieces at the corpus's lengths; NaN for none).
pub fn summarise(reference: &[f64], own: &[f64], real: &[f64], floor_beyond: f64) -> ScoreSummary {
    let sorted = |v: &[f64]| {
        let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
        s.sort_by(f64::total_cmp);
        s
    };
    let (r, o) = (sorted(reference), sorted(own));
    ScoreSummary {
        reference_p10: quantile(&r, 0.1),
        reference_median: quantile(&r, 0.5),
        reference_p90: quantile(&r, 0.9),
        beyond_real_p99: share_above(&r, real_cut(real)),
        beyond_real_p99_floor: floor_beyond,
        self_median: quantile(&o, 0.5),
    }
}

/// The cut of the share beyond the real tail: the 99th percentile of the real test
/// documents' perplexities (NaN for none).
pub fn real_cut(real: &[f64]) -> f64 {
    let mut s: Vec<f64> = real.iter().copied().filter(|x| !x.is_nan()).collect();
    s.sort_by(f64::total_cmp);
    quantile(&s, 0.99)
}

/// The share of `values` (NaN ones left out) above `cut`; NaN for none or a NaN cut.
pub fn share_above(values: &[f64], cut: f64) -> f64 {
    let v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() || cut.is_nan() {
        return f64::NAN;
    }
    v.iter().filter(|&&x| x > cut).count() as f64 / v.len() as f64
}

/// Pieces of the noise floor's documents `docs` (token ranges, each ending with its end
/// token) matched to documents of `lengths` targets: in order, each piece is the next
/// `length` tokens of the current floor document (its end token left out), a piece that
/// does not fit in what is left starts at the next document, one longer than a whole
/// document is that document, and after the last document the pieces start again at
/// the first (so a corpus longer than the floor reuses its text). Scored as documents,
/// a piece has as many targets as its length. Empty when the floor holds no tokens.
pub fn floor_pieces(lengths: &[u64], docs: &[std::ops::Range<usize>]) -> Vec<std::ops::Range<usize>> {
    let bodies: Vec<std::ops::Range<usize>> = docs.iter().filter(|d| d.len() > 1).map(|d| d.start..d.end - 1).collect();
    let mut pieces = Vec::with_capacity(lengths.len());
    if bodies.is_empty() {
        return pieces;
    }
    let (mut d, mut at) = (0, bodies[0].start);
    for &length in lengths.iter().filter(|&&l| l > 0) {
        let length = length as usize;
        loop {
            let body = &bodies[d];
            if at + length <= body.end {
                pieces.push(at..at + length);
                at += length;
                break;
            }
            if at == body.start {
                // Longer than this whole document: the document.
                pieces.push(body.clone());
                at = body.end;
                break;
            }
            d = (d + 1) % bodies.len();
            at = bodies[d].start;
        }
    }
    pieces
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
        let s = summarise(&[50.0, 150.0, 10.0, 200.0], &[5.0, 7.0, 9.0], &real, f64::NAN);
        assert_eq!(s.reference_median, 100.0);
        assert_eq!(s.beyond_real_p99, 0.5);
        assert_eq!(s.self_median, 7.0);
        assert!(s.beyond_real_p99_floor.is_nan(), "no floor, no null");
        assert!(summarise(&[], &[], &real, f64::NAN).reference_median.is_nan());
    }

    /// Pieces follow the corpus's lengths inside the floor's documents, never across one.
    #[test]
    fn floor_pieces_match_the_lengths_inside_the_documents() {
        // Two documents of 10 and 4 tokens, each with its end token: bodies 0..10, 11..15.
        let docs = [0..11, 11..16];
        assert_eq!(floor_pieces(&[3, 3, 3, 3], &docs), [0..3, 3..6, 6..9, 11..14]);
        // Longer than a document: the document; past the last, the first again.
        assert_eq!(floor_pieces(&[20, 2, 5], &docs), [0..10, 11..13, 0..5]);
        assert!(floor_pieces(&[5], &[0..1, 1..2]).is_empty(), "a floor of end tokens has no text");
        for (lengths, pieces) in [(vec![4u64, 7, 1], floor_pieces(&[4, 7, 1], &docs))] {
            for (l, p) in lengths.iter().zip(&pieces) {
                assert!(p.len() as u64 <= *l && docs.iter().any(|d| d.start <= p.start && p.end < d.end));
            }
        }
    }

    #[test]
    fn the_share_above_the_cut_leaves_nan_out() {
        assert_eq!(share_above(&[1.0, 5.0, f64::NAN, 9.0], 4.0), 2.0 / 3.0);
        assert!(share_above(&[], 4.0).is_nan() && share_above(&[1.0], f64::NAN).is_nan());
        let real: Vec<f64> = (1..=100).map(f64::from).collect();
        assert!((real_cut(&real) - 99.01).abs() < 1e-9);
    }
}
