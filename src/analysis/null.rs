//! The null model of token presence: what a perfect model would show.
//!
//! Suppose every synthetic corpus S_k were D tokens drawn independently from the
//! real training set's own unigram distribution (a model that learned R
//! perfectly). A token of real count c is then drawn c·D/|R| times on average,
//! and, in the Poisson approximation of that multinomial sample (accurate when
//! c/|R| is small), it is present in a given S_k with probability
//! 1 − exp(−c·D/|R|), independently for every k. So a finite D alone makes rare
//! tokens absent, and absent tokens come back; absence beyond this null is what
//! the loop adds. The closed forms below are that model's expectations over K
//! corpora; `a` is the absence probability exp(−c·D/|R|) of one token.

/// 1 − exp(−c·D/|R|): the probability that a token of real count `real_count` is
/// present in a D-token sample of real text, where `sample_ratio` = D/|R|.
pub fn null_presence_probability(real_count: u64, sample_ratio: f64) -> f64 {
    // −expm1(−x) keeps full precision when c·D/|R| is tiny.
    -(-(real_count as f64) * sample_ratio).exp_m1()
}

/// exp(−c·D/|R|): the probability that the token is absent from one such sample.
pub fn null_absence_probability(real_count: u64, sample_ratio: f64) -> f64 {
    (-(real_count as f64) * sample_ratio).exp()
}

/// Expected number of absence spells (maximal runs of consecutive absent corpora)
/// among `corpora` independent corpora, each absent with probability `a`: a spell
/// starts at S_1 when it is absent, and at S_k (k ≥ 2) when S_k is absent and
/// S_{k-1} is not, so the expectation is a + (K − 1)·a·(1 − a) (0 for K = 0).
pub fn null_expected_spells(a: f64, corpora: u32) -> f64 {
    if corpora == 0 {
        return 0.0;
    }
    a + f64::from(corpora - 1) * a * (1.0 - a)
}

/// Probability that a token absent from some corpus is present in a later one,
/// among `corpora` independent corpora each absent with probability `a`. It does
/// not reappear exactly when the sequence is m presences followed by K − m
/// absences, so the probability is 1 − Σ_{m=0}^{K} (1 − a)^m · a^(K−m).
pub fn null_reappearance_probability(a: f64, corpora: u32) -> f64 {
    let k = corpora as i32;
    let never: f64 = (0..=k).map(|m| (1.0 - a).powi(m) * a.powi(k - m)).sum();
    (1.0 - never).clamp(0.0, 1.0)
}
