//! The null model of token presence: what a perfect model would show.
//!
//! Two nulls. The one the reports compare against, [`RealNull`], is measured: D-token
//! corpora of real documents not in R, what a perfect model would write. The closed
//! forms below are the independence bound beside it: suppose every synthetic corpus
//! S_k were D tokens drawn independently from the real training set's own unigram
//! distribution. A token of real count c is then drawn c·D/|R| times on average,
//! and, in the Poisson approximation of that multinomial sample (accurate when
//! c/|R| is small), it is present in a given S_k with probability
//! 1 − exp(−c·D/|R|), independently for every k. So a finite D alone makes rare
//! tokens absent, and absent tokens come back. Real text is burstier than
//! independent draws, so a perfect model misses more than this bound says. The closed
//! forms are that model's expectations over K corpora; `a` is the absence probability
//! of one token, exp(−c·D/|R|) here, or the real-document null's measured share (the
//! corpora are independent of one another in both, so the same forms hold).

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

/// The null model from real documents: what a perfect model's corpora would lack.
///
/// Real text is bursty: a character's name fills one scene and is missing from the
/// next, so a D-token corpus of real documents misses far more of R's rare tokens than
/// D independent draws would (the law above, which is therefore only the independence
/// bound). This null is measured instead of assumed: `draws` corpora of about D tokens,
/// each a fresh seeded draw of whole real documents that are not in R (as the noise
/// floor is), and for each the tokens of R it lacks. A token's absence probability is
/// the share of draws that lack it; a bucket's spread is the spread of its absent
/// share over the draws. When the draws come from a source not much larger than D they
/// share most of their documents, so they vary less than independent corpora would:
/// `source_tokens` says how large the source was.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RealNull {
    /// Where the documents came from.
    pub source: String,
    /// Tokens of that source.
    pub source_tokens: u64,
    /// Tokens of each draw.
    pub draw_tokens: Vec<u64>,
    /// Per draw: the ids seen in R (count above 0) that the draw lacks.
    pub absent: Vec<Vec<u32>>,
}

impl RealNull {
    /// From the token counts of every draw and R's counts.
    pub fn from_counts(real_counts: &[u64], draws: &[Vec<u64>], source: String, source_tokens: u64) -> Self {
        let absent = draws
            .iter()
            .map(|c| {
                (0..real_counts.len())
                    .filter(|&t| real_counts[t] > 0 && c.get(t).copied().unwrap_or(0) == 0)
                    .map(|t| t as u32)
                    .collect()
            })
            .collect();
        let draw_tokens = draws.iter().map(|c| c.iter().sum()).collect();
        Self { source, source_tokens, draw_tokens, absent }
    }

    pub fn draws(&self) -> usize {
        self.absent.len()
    }

    /// Per vocabulary entry (`vocab_size` of them): the share of draws lacking it (0 for
    /// tokens unseen in R, which the null does not describe).
    pub fn absence_probabilities(&self, vocab_size: usize) -> Vec<f64> {
        let mut a = vec![0.0; vocab_size];
        for draw in &self.absent {
            for &t in draw {
                if let Some(x) = a.get_mut(t as usize) {
                    *x += 1.0;
                }
            }
        }
        let n = self.draws().max(1) as f64;
        a.iter_mut().for_each(|x| *x /= n);
        a
    }

    /// Per draw, the share of `tokens` it lacks.
    pub fn absent_shares(&self, tokens: &[usize]) -> Vec<f64> {
        let n = tokens.len().max(1) as f64;
        self.absent
            .iter()
            .map(|draw| tokens.iter().filter(|&&t| draw.binary_search(&(t as u32)).is_ok()).count() as f64 / n)
            .collect()
    }
}
