//! The drift benchmark `lmloop bench` reports: every drift measure of one
//! generated corpus, timed on the calling thread.
use super::drift::{count_tokens, measure_corpus, Reference};
use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Vocabulary of the benchmark corpus (a small BPE vocabulary, as in the tests' corpora).
const BENCH_VOCAB: usize = 2048;
/// Mean document length of the benchmark corpus, in tokens.
const BENCH_DOCUMENT_TOKENS: f64 = 200.0;
/// Zipf exponent of the benchmark corpus (natural text is close to 1).
const BENCH_ZIPF_EXPONENT: f64 = 1.1;
/// Size of the reference ("real") corpus, like a small real training split.
const BENCH_REFERENCE_TOKENS: usize = 1_600_000;

/// A Zipf-like corpus: token 0 is end-of-text, inserted with probability
/// 1/`mean_document_tokens` at each position (geometric document lengths);
/// the other tokens are drawn with weight 1/rank^`exponent`.
pub fn zipf_corpus(tokens: usize, vocab_size: usize, exponent: f64, mean_document_tokens: f64, seed: u64) -> Vec<u32> {
    assert!(vocab_size >= 2, "the vocabulary needs end-of-text and at least one other token");
    let mut cumulative = Vec::with_capacity(vocab_size - 1);
    let mut total = 0.0;
    for rank in 1..vocab_size {
        total += (rank as f64).powf(-exponent);
        cumulative.push(total);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let end_probability = 1.0 / mean_document_tokens;
    (0..tokens)
        .map(|_| {
            if rng.gen::<f64>() < end_probability {
                0
            } else {
                let u = rng.gen::<f64>() * total;
                (cumulative.partition_point(|&c| c < u).min(vocab_size - 2) + 1) as u32
            }
        })
        .collect()
}

/// Seconds to compute every drift measure of a `tokens`-token Zipf-like corpus
/// over a 2048-token vocabulary (end-of-text every ~200 tokens) against a 1.6M-token
/// reference. Corpus generation and the reference's counts are not timed.
pub fn bench_drift(tokens: usize) -> Result<f64> {
    if tokens == 0 {
        bail!("the drift benchmark needs at least one token");
    }
    let reference_tokens =
        zipf_corpus(BENCH_REFERENCE_TOKENS, BENCH_VOCAB, BENCH_ZIPF_EXPONENT, BENCH_DOCUMENT_TOKENS, 1);
    let reference = Reference::new(count_tokens(&reference_tokens, BENCH_VOCAB)?)?;
    let corpus = zipf_corpus(tokens, BENCH_VOCAB, BENCH_ZIPF_EXPONENT, BENCH_DOCUMENT_TOKENS, 2);
    let start = std::time::Instant::now();
    let row = measure_corpus(&reference, &corpus, 0, Some(1))?;
    let seconds = start.elapsed().as_secs_f64();
    // Keep the result observable so the measurement cannot be optimised away.
    if !row.entropy_nats.is_finite() {
        bail!("the benchmark corpus gave a non-finite entropy");
    }
    Ok(seconds)
}
