//! Unigram drift of a corpus against the real training split, and the drift row
//! that gathers every measure of one corpus (definitions in `analysis/mod.rs`).
use super::copying::CopyIndex;
use super::diversity::Diversity;
use super::zipf::zipf_slope;
pub use crate::tokens::entropy_nats;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// What every drift row is measured against: the real split's counts and its tail set,
/// and (with [`Reference::with_text`]) its tokens, for the copying measures.
#[derive(Debug, Clone)]
pub struct Reference {
    counts: Vec<u64>,
    in_tail: Vec<bool>,
    text: Option<Vec<u32>>,
    copy_index: std::sync::OnceLock<CopyIndex>,
}

impl Reference {
    /// `real_counts` has one entry per vocabulary token; the split must not be empty.
    pub fn new(real_counts: Vec<u64>) -> Result<Self> {
        if real_counts.iter().sum::<u64>() == 0 {
            bail!("the real training split is empty; drift needs at least one real token");
        }
        let in_tail = tail_set(&real_counts);
        Ok(Self { counts: real_counts, in_tail, text: None, copy_index: Default::default() })
    }

    /// A reference that also measures copying of `text` (R's tokens, whose counts are
    /// `real_counts`); the suffix array is built the first time a corpus needs it.
    pub fn with_text(real_counts: Vec<u64>, text: &[u32]) -> Result<Self> {
        Ok(Self { text: Some(text.to_vec()), ..Self::new(real_counts)? })
    }

    /// The index of R's text for the copying measures, when the reference has its text.
    pub fn copy_index(&self) -> Option<&CopyIndex> {
        let text = self.text.as_ref()?;
        Some(self.copy_index.get_or_init(|| CopyIndex::new(text)))
    }

    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    pub fn vocab_size(&self) -> usize {
        self.counts.len()
    }

    /// Membership of each token in the tail set.
    pub fn in_tail(&self) -> &[bool] {
        &self.in_tail
    }
}

/// One row of `drift.csv`: every measure of one corpus. Field names are the CSV header.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DriftRow {
    /// The generation whose model sampled the corpus, `real` for the real training
    /// split, or `noise-floor` for the real sample of D tokens.
    pub generation: String,
    /// `real-train`, `real-sample` (the noise floor), or `gen-KK` for S_KK (the
    /// file stem under corpora/synthetic/RUN/).
    pub corpus: String,
    pub tokens: u64,
    pub documents: u64,
    pub kl_real_gen_add_half: f64,
    pub kl_gen_real_add_half: f64,
    pub js_divergence: f64,
    pub total_variation: f64,
    pub entropy_nats: f64,
    pub distinct_tokens: u64,
    pub tail_mass: f64,
    pub distinct_2: f64,
    pub distinct_3: f64,
    pub mean_document_tokens: f64,
    pub repetition_rate_4gram: f64,
    pub zipf_slope: f64,
    /// Copying of R (`super::copying`); NaN where R's text was not given, and in tables
    /// written before these columns.
    #[serde(default = "nan")]
    pub copied_ngrams_4: f64,
    #[serde(default = "nan")]
    pub copied_ngrams_8: f64,
    #[serde(default = "nan")]
    pub copied_ngrams_16: f64,
    #[serde(default = "nan")]
    pub copied_ngrams_32: f64,
    #[serde(default = "nan")]
    pub longest_match_median: f64,
    #[serde(default = "nan")]
    pub longest_match_p90: f64,
}

fn nan() -> f64 {
    f64::NAN
}

/// Rows are equal when every value is, a measure not taken (NaN) equal to itself.
impl PartialEq for DriftRow {
    fn eq(&self, other: &Self) -> bool {
        serde_json::to_value(self).ok() == serde_json::to_value(other).ok()
    }
}

/// Label of the real split's row in the `generation` column.
pub const REAL_GENERATION: &str = "real";
/// Label of the real split's row in the `corpus` column.
pub const REAL_CORPUS: &str = "real-train";
/// Label of the noise floor's row (a real sample of D tokens) in the `generation` column.
pub const NOISE_FLOOR_GENERATION: &str = "noise-floor";
/// Label of the noise floor's row in the `corpus` column (sweeps key on this prefix).
pub const NOISE_FLOOR_CORPUS: &str = "real-sample";

impl DriftRow {
    /// Index of the corpus on the "S_k" axis: 0 for the real split, k for S_k.
    pub fn corpus_index(&self) -> Option<u32> {
        if self.corpus == REAL_CORPUS {
            return Some(0);
        }
        self.corpus.strip_prefix("gen-")?.parse().ok()
    }

    pub fn is_real(&self) -> bool {
        self.generation == REAL_GENERATION
    }

    /// The row of the real sample of D tokens: what a perfect model would show.
    pub fn is_noise_floor(&self) -> bool {
        self.generation == NOISE_FLOOR_GENERATION
    }
}

/// Every drift measure of `tokens` against `reference`. `synthetic_index` is k for
/// S_k, `None` for the real split itself.
pub fn measure_corpus(
    reference: &Reference,
    tokens: &[u32],
    eot: u32,
    synthetic_index: Option<u32>,
) -> Result<DriftRow> {
    let (generation, corpus) = match synthetic_index {
        None => (REAL_GENERATION.to_string(), REAL_CORPUS.to_string()),
        Some(0) => bail!("synthetic corpora are numbered from S_1; S_0 does not exist"),
        Some(k) => ((k - 1).to_string(), crate::layout::gen_name(k)),
    };
    measure_labelled(reference, tokens, eot, generation, corpus)
}

/// Every drift measure of the noise floor: `tokens` is a real sample of D tokens
/// (the size of one synthetic corpus), measured against the real split like any S_k.
pub fn measure_noise_floor(reference: &Reference, tokens: &[u32], eot: u32) -> Result<DriftRow> {
    measure_labelled(reference, tokens, eot, NOISE_FLOOR_GENERATION.to_string(), NOISE_FLOOR_CORPUS.to_string())
}

fn measure_labelled(
    reference: &Reference,
    tokens: &[u32],
    eot: u32,
    generation: String,
    corpus: String,
) -> Result<DriftRow> {
    let vocab_size = reference.vocab_size();
    let counts = count_tokens(tokens, vocab_size)?;
    if tokens.is_empty() {
        bail!("corpus {corpus} is empty; drift measures need at least one token");
    }
    let real = reference.counts();
    let diversity = Diversity::measure(tokens, eot, vocab_size);
    let copying = reference.copy_index().map(|index| super::copying::measure(index, tokens, eot));
    let copy = |f: fn(&super::copying::Copying) -> f64| copying.as_ref().map_or(f64::NAN, f);
    Ok(DriftRow {
        generation,
        corpus,
        tokens: tokens.len() as u64,
        documents: diversity.documents,
        kl_real_gen_add_half: kl_add_half(real, &counts),
        kl_gen_real_add_half: kl_add_half(&counts, real),
        js_divergence: jensen_shannon(real, &counts),
        total_variation: total_variation(real, &counts),
        entropy_nats: entropy_nats(&counts),
        distinct_tokens: counts.iter().filter(|&&c| c > 0).count() as u64,
        tail_mass: tail_mass(reference.in_tail(), &counts),
        distinct_2: diversity.distinct_2.ratio(),
        distinct_3: diversity.distinct_3.ratio(),
        mean_document_tokens: diversity.mean_document_tokens,
        repetition_rate_4gram: diversity.repetition_4.ratio(),
        zipf_slope: zipf_slope(&counts),
        copied_ngrams_4: copy(|c| c.copied_ngrams[0]),
        copied_ngrams_8: copy(|c| c.copied_ngrams[1]),
        copied_ngrams_16: copy(|c| c.copied_ngrams[2]),
        copied_ngrams_32: copy(|c| c.copied_ngrams[3]),
        longest_match_median: copy(|c| c.longest_match_median),
        longest_match_p90: copy(|c| c.longest_match_p90),
    })
}

/// Unigram counts over a vocabulary; an out-of-range id is an error, not a panic.
pub fn count_tokens(tokens: &[u32], vocab_size: usize) -> Result<Vec<u64>> {
    let mut counts = vec![0u64; vocab_size];
    for &t in tokens {
        match counts.get_mut(t as usize) {
            Some(c) => *c += 1,
            None => bail!("token id {t} is outside the vocabulary of {vocab_size} tokens"),
        }
    }
    Ok(counts)
}

/// KL(p‖q) in nats with add-½ smoothing of every entry of both count vectors.
pub fn kl_add_half(p_counts: &[u64], q_counts: &[u64]) -> f64 {
    assert_eq!(p_counts.len(), q_counts.len(), "count vectors over different vocabularies");
    let half_vocab = p_counts.len() as f64 / 2.0;
    let p_total = p_counts.iter().sum::<u64>() as f64 + half_vocab;
    let q_total = q_counts.iter().sum::<u64>() as f64 + half_vocab;
    p_counts
        .iter()
        .zip(q_counts)
        .map(|(&p, &q)| {
            let (p, q) = ((p as f64 + 0.5) / p_total, (q as f64 + 0.5) / q_total);
            p * (p / q).ln()
        })
        .sum::<f64>()
        // Rounding can leave a tiny negative value for identical distributions.
        .max(0.0)
}

fn proportions(counts: &[u64]) -> impl Iterator<Item = f64> + '_ {
    let total = counts.iter().sum::<u64>() as f64;
    counts.iter().map(move |&c| if total > 0.0 { c as f64 / total } else { f64::NAN })
}

/// Jensen–Shannon divergence in nats of the unsmoothed distributions (0 ≤ JS ≤ ln 2).
pub fn jensen_shannon(p_counts: &[u64], q_counts: &[u64]) -> f64 {
    assert_eq!(p_counts.len(), q_counts.len(), "count vectors over different vocabularies");
    // Terms with a zero probability contribute 0 (the limit of x ln x).
    let half_kl_to_mid = |a: f64, m: f64| if a > 0.0 { 0.5 * a * (a / m).ln() } else { 0.0 };
    proportions(p_counts)
        .zip(proportions(q_counts))
        .map(|(p, q)| {
            let m = 0.5 * (p + q);
            half_kl_to_mid(p, m) + half_kl_to_mid(q, m)
        })
        .sum::<f64>()
        .max(0.0)
}

/// Total variation distance ½ Σ |p − q| of the unsmoothed distributions.
pub fn total_variation(p_counts: &[u64], q_counts: &[u64]) -> f64 {
    assert_eq!(p_counts.len(), q_counts.len(), "count vectors over different vocabularies");
    0.5 * proportions(p_counts).zip(proportions(q_counts)).map(|(p, q)| (p - q).abs()).sum::<f64>()
}

/// The tail set of a real count vector (see the module docs of `analysis`): every
/// token whose count c satisfies mass(tokens with count ≤ c) ≤ 50% of the total.
pub fn tail_set(real_counts: &[u64]) -> Vec<bool> {
    let total: u64 = real_counts.iter().sum();
    let mut by_count: Vec<u64> = real_counts.to_vec();
    by_count.sort_unstable();
    // Walk count groups in ascending order; integer arithmetic keeps "exactly 50%" exact.
    let mut cutoff = 0u64;
    let mut cumulative = 0u64;
    let mut i = 0;
    while i < by_count.len() {
        let c = by_count[i];
        let group_end = i + by_count[i..].partition_point(|&x| x == c);
        cumulative += c * (group_end - i) as u64;
        if 2 * cumulative > total {
            break;
        }
        cutoff = c;
        i = group_end;
    }
    // Unseen tokens (count 0) are always in; when even the rarest seen group holds
    // more than half the mass, they are the whole tail set.
    real_counts.iter().map(|&c| c <= cutoff).collect()
}

/// Share of a corpus's tokens that belong to the tail set (NaN for an empty corpus).
pub fn tail_mass(in_tail: &[bool], counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    let tail: u64 = counts.iter().zip(in_tail).filter(|(_, &t)| t).map(|(&c, _)| c).sum();
    if total == 0 {
        f64::NAN
    } else {
        tail as f64 / total as f64
    }
}
