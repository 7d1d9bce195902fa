//! The sampler: batched, KV-cached generation of a synthetic corpus that is an
//! unbiased sample of the model's documents.
//!
//! **Documents.** Every document starts from the start token ([`Delimiters`]:
//! `<|endoftext|>`, or a tokenizer's BOS) at position 0, as every document starts in
//! training (`crate::stream`), and runs until the model emits the end token. The
//! harness never ends a document itself, except at the length cap `max_doc_tokens`, a
//! guard against degenerate models (the loop sets it to twice the longest real
//! document). A document cut at the cap is counted as truncated and written *without*
//! an end token, because the model did not emit one; the corpus manifest records where
//! it ends, so training never teaches an end there.
//!
//! **Which documents.** Documents are numbered 0, 1, 2, … and document j draws its
//! tokens from its own random stream (the corpus seed, stream j), so its text depends
//! on the model, the seed and j only, never on the batch it shared or the thread count.
//! The corpus is documents 0..M in that order, where M is the first count whose
//! documents hold at least the requested tokens. Documents still being written when
//! the target is reached are finished, never dropped, so long documents are not
//! under-represented (the pooled mean length is unbiased by Wald's identity). Batch
//! size only decides how many documents are decoded at once, and so only the speed.
//!
//! **Longer than the context.** The rule depends only on a row's own history: the
//! token after `n` tokens of a row (`<|endoftext|>` plus the document so far) is
//! conditioned on the last [`context_length`]`(block, n)` of them. That is all `n` up to
//! the context length `block`; after that the row's cache is rebuilt from its last
//! `block / 2` tokens each time it is full, so the context then cycles from `block / 2`
//! up to `block` tokens, and the model always sees a window that starts at position 0,
//! as in training. Both architectures use this rule. (A rolling cache that keeps each
//! key with its rotary rotation would need no rebuild, but it does not condition on
//! the last `block` tokens: from the second layer on, a cached key carries its token's
//! own earlier context, so the model would see more than it was trained on.)
//!
//! Next-token choice: [`Sampling`].
mod decoder;
pub mod sampling;
mod schedule;

pub use decoder::{
    context_length, rebuild_keep, sample_uncached, Decoder, Engine, SampleTimes, BLOCK_GROUP, BLOCK_STEPS_MAX,
};
pub use sampling::{inverse_cdf, Sampling};

use crate::model::Model;
use crate::tokenizer::Delimiters;
use anyhow::{bail, Result};
use decoder::keep_in_order;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use schedule::Ledger;
use std::time::Instant;
use tch::Device;

/// A finished document.
#[derive(Debug, Clone)]
pub struct Document {
    pub tokens: Vec<u32>,
    /// Cut at the length cap: the model did not end it.
    pub truncated: bool,
    /// The negative log-likelihood the model gave its own draws, summed over the
    /// document's tokens and its end token ([`Document::targets`]): each drawn token
    /// under the model's distribution at temperature 1 and before any filter, in the
    /// context it was drawn in. Computed from the logits the draw read, so it costs no
    /// forward pass (self-perplexity, `crate::analysis::scores`).
    pub self_nll: f64,
}

/// Documents are equal when their tokens and ends are: `self_nll` is a float whose
/// last bits depend on the engine and batch that computed the logits.
impl PartialEq for Document {
    fn eq(&self, other: &Self) -> bool {
        self.tokens == other.tokens && self.truncated == other.truncated
    }
}

impl Document {
    /// Tokens the model drew for it: its own, plus the end token unless truncated.
    pub fn targets(&self) -> usize {
        self.tokens.len() + usize::from(!self.truncated)
    }

    /// Tokens it occupies in a corpus: its own, plus `<|endoftext|>` unless truncated
    /// (the same count as [`Document::targets`], read as corpus space).
    pub fn corpus_tokens(&self) -> usize {
        self.targets()
    }
}

/// Settings of one corpus.
#[derive(Debug, Clone)]
pub struct SampleRequest {
    pub sampling: Sampling,
    pub seed: u64,
    pub n_tokens: usize,
    pub batch_size: usize,
    pub max_doc_tokens: usize,
    pub progress: bool,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct SampleStats {
    /// Documents in the corpus (documents 0..M).
    pub documents: usize,
    /// Tokens in the corpus, end-of-text tokens included (as written: re-encoded by the
    /// loop's writer, see `crate::synthetic`).
    pub tokens: usize,
    /// Tokens the model drew for documents 0..M, end-of-text tokens included (older
    /// manifests: 0).
    #[serde(default)]
    pub sampled_tokens: usize,
    /// Documents cut at the length cap (written without an end-of-text token).
    pub truncated_documents: usize,
    /// `truncated_documents / documents`.
    #[serde(default)]
    pub truncation_share: f64,
    /// Mean tokens per document, end-of-text excluded.
    #[serde(default)]
    pub mean_document_tokens: f64,
    /// Tokens decoded for documents beyond M that were started and then not needed
    /// (the price of keeping the batch full; they never enter the corpus).
    #[serde(default)]
    pub discarded_tokens: usize,
    pub reencodes: usize,
    /// Decoding steps (one token for every row in flight); tokens decoded over steps is
    /// the mean number of rows in flight.
    #[serde(default)]
    pub steps: usize,
    pub seconds: f64,
    pub tokens_per_second: f64,
    /// Where the seconds went.
    #[serde(default)]
    pub time: SampleTimes,
}

/// The random stream of document `index` of a corpus sampled with `seed`.
pub fn document_rng(seed: u64, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index);
    rng
}

/// Samples documents 0..M (see the module documentation) and hands them to `write`
/// in order. `write` returns the tokens the document occupies in the corpus (the
/// loop's writer re-encodes its text, so they can differ from
/// [`Document::corpus_tokens`]); M is the first count whose documents hold at least
/// `n_tokens` of those tokens (end tokens included).
pub fn sample_corpus(
    model: &Model,
    delimiters: impl Into<Delimiters>,
    device: Device,
    req: &SampleRequest,
    mut write: impl FnMut(&Document) -> Result<usize>,
) -> Result<SampleStats> {
    let delimiters = delimiters.into();
    if req.n_tokens == 0 || req.batch_size == 0 || req.max_doc_tokens == 0 {
        bail!(
            "a corpus needs a positive number of tokens, batch size and length cap (got {}, {} and {})",
            req.n_tokens,
            req.batch_size,
            req.max_doc_tokens
        );
    }
    let t0 = Instant::now();
    let bar = crate::progress::work(req.n_tokens as u64, req.progress);
    let mut stats = SampleStats::default();
    let mut ledger = Ledger::new(req.n_tokens, Engine::for_device(device));
    // Row b of the decoder writes document `docs[b]` with random stream `rngs[b]`.
    let mut decoder = Decoder::new(model, 0, delimiters, req.max_doc_tokens, device);
    let mut docs: Vec<u64> = Vec::new();
    let mut rngs: Vec<ChaCha8Rng> = Vec::new();
    let mut draw_seconds = 0.0;
    tch::no_grad(|| -> Result<()> {
        loop {
            // Open rows for new documents while they are likely needed.
            let mut extra = 0;
            let mut lengths = in_flight(&decoder, &[]);
            while decoder.batch() + extra < req.batch_size && ledger.should_start(&lengths) {
                let j = ledger.next_document();
                docs.push(j);
                rngs.push(document_rng(req.seed, j));
                extra += 1;
                lengths.push(1);
            }
            if extra > 0 {
                let keep: Vec<usize> = (0..decoder.batch()).collect();
                decoder.reshape(&keep, extra);
            }
            if decoder.batch() == 0 {
                // Every started document is finished and written, yet the target is not
                // reached: impossible, since should_start is then true.
                bail!("the sampler stopped before reaching {} tokens (internal scheduling error)", req.n_tokens);
            }
            let steps = ledger.block_steps(in_flight(&decoder, &[]).iter().sum());
            let finished = match decoder.decode_block(&req.sampling, &mut rngs, steps, false)? {
                Some(finished) => finished,
                None => {
                    let logits = decoder.logits();
                    let t_draw = Instant::now();
                    let chosen = decoder.choose_rows(&logits, &req.sampling, &mut rngs)?;
                    draw_seconds += t_draw.elapsed().as_secs_f64();
                    decoder.advance_scored(&chosen, &logits)?
                }
            };
            // With no document finished, the steps below only look for rows to abandon.
            let mut free = Vec::new();
            for (b, doc) in finished {
                ledger.finished(docs[b], doc);
                free.push(b);
            }
            // Hand documents to the writer in index order, up to the target.
            while let Some(doc) = ledger.next_to_write() {
                let written = write(&doc)?;
                ledger.wrote(written);
                stats.documents += 1;
                stats.tokens += written;
                stats.sampled_tokens += doc.corpus_tokens();
                stats.truncated_documents += doc.truncated as usize;
                bar.set_position(stats.tokens.min(req.n_tokens) as u64);
                if stats.tokens >= req.n_tokens {
                    // Documents ≥ M, finished or not, are not part of the corpus.
                    stats.discarded_tokens = ledger.discarded_tokens()
                        + (0..decoder.batch()).filter(|b| !free.contains(b)).map(|b| decoder.doc_len(b)).sum::<usize>();
                    return Ok(());
                }
            }
            refill_or_retire(&mut decoder, &mut ledger, &mut docs, &mut rngs, &free, req.seed);
        }
    })?;
    bar.finish_and_clear();
    finish_stats(&mut stats, &decoder, draw_seconds, t0);
    Ok(stats)
}

/// Corpus tokens of each row's document so far (its tokens plus the end-of-text it
/// would end with), rows `skip` left out: the scheduler's view of the documents in flight.
fn in_flight(decoder: &Decoder, skip: &[usize]) -> Vec<usize> {
    (0..decoder.batch()).filter(|b| !skip.contains(b)).map(|b| decoder.doc_len(b) + 1).collect()
}

/// After a block: each freed row takes the next document if it is likely needed, else
/// retires, and rows whose documents are very likely beyond the corpus stop decoding.
fn refill_or_retire(
    decoder: &mut Decoder,
    ledger: &mut Ledger,
    docs: &mut Vec<u64>,
    rngs: &mut Vec<ChaCha8Rng>,
    free: &[usize],
    seed: u64,
) {
    let mut lengths = in_flight(decoder, free);
    let mut retire = Vec::new();
    for &b in free {
        if ledger.should_start(&lengths) {
            lengths.push(1);
            let j = ledger.next_document();
            docs[b] = j;
            rngs[b] = document_rng(seed, j);
        } else {
            retire.push(b);
        }
    }
    let rows: Vec<(usize, u64, usize)> =
        (0..decoder.batch()).filter(|b| !free.contains(b)).map(|b| (b, docs[b], decoder.doc_len(b) + 1)).collect();
    for b in ledger.unneeded(&rows) {
        ledger.abandon(docs[b], decoder.doc_len(b));
        retire.push(b);
    }
    if !retire.is_empty() {
        let keep: Vec<usize> = (0..decoder.batch()).filter(|b| !retire.contains(b)).collect();
        decoder.reshape(&keep, 0);
        *docs = keep.iter().map(|&b| docs[b]).collect();
        *rngs = keep_in_order(std::mem::take(rngs), &keep).0;
    }
}

/// The corpus-level statistics and where the seconds went, once sampling ended.
fn finish_stats(stats: &mut SampleStats, decoder: &Decoder, draw_seconds: f64, t0: Instant) {
    stats.reencodes = decoder.reencodes;
    stats.steps = decoder.steps;
    stats.truncation_share = stats.truncated_documents as f64 / stats.documents as f64;
    let eots = stats.documents - stats.truncated_documents;
    stats.mean_document_tokens = (stats.tokens - eots) as f64 / stats.documents as f64;
    stats.seconds = t0.elapsed().as_secs_f64();
    stats.tokens_per_second = stats.tokens as f64 / stats.seconds;
    stats.time = SampleTimes {
        forward_seconds: decoder.forward_seconds,
        draw_seconds: draw_seconds + decoder.draw_seconds,
        rebuild_seconds: decoder.rebuild_seconds,
        host_seconds: (stats.seconds
            - decoder.forward_seconds
            - draw_seconds
            - decoder.draw_seconds
            - decoder.rebuild_seconds)
            .max(0.0),
    };
}
