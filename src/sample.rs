//! The sampler: batched, KV-cached generation of a synthetic corpus.
//!
//! Every document starts from `<|endoftext|>` at position 0 and runs until the model
//! emits `<|endoftext|>` or reaches `max_doc_tokens` (then it is cut and counted as
//! truncated). `batch_size` documents are decoded at once; when one finishes, its row
//! starts a new document at the next step, so the batch stays full. Finished documents
//! are written in the order they finish, each followed by `<|endoftext|>`, and writing
//! stops at the first document boundary at or after the requested token count.
//!
//! Next-token choice ([`Sampling`]): logits are divided by the temperature, then top-k
//! keeps the k largest, then top-p keeps the smallest set of the remaining tokens whose
//! probability (after temperature and top-k) reaches p; the result is renormalised and
//! sampled. Temperature 0 is greedy (argmax; top-k/top-p then change nothing).
//!
//! Context longer than the model's: when a row's cache is full, it is rebuilt from the
//! last `block_size / 2` tokens of its document (sliding-window re-encode), so the
//! model always conditions on at least half a context of the most recent text. Rows
//! are re-encoded together: when one row's cache is full, every row within a quarter
//! context of full is rebuilt in the same batched forward pass, so re-encodes cost a
//! few large passes rather than one small pass per row. (Which rows share a pass
//! depends only on the token sequence, so sampling stays deterministic.)
use crate::model::{KvCache, Model};
use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

/// How the next token is chosen from the logits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// Always the most likely token.
    Greedy,
    /// Softmax at `temperature`, optionally restricted by top-k then top-p.
    Random { temperature: f64, top_k: Option<i64>, top_p: Option<f64> },
}

impl Sampling {
    /// Validated sampling settings; temperature 0 means greedy.
    pub fn new(temperature: f64, top_k: Option<i64>, top_p: Option<f64>) -> Result<Self> {
        if !(temperature >= 0.0 && temperature.is_finite()) {
            bail!("--temperature must be >= 0 (0 means greedy), got {temperature}");
        }
        if let Some(k) = top_k {
            if k <= 0 {
                bail!("--top-k must be a positive number of tokens, got {k}");
            }
        }
        if let Some(p) = top_p {
            if !(p > 0.0 && p <= 1.0) {
                bail!("--top-p must be in (0, 1], got {p}");
            }
        }
        Ok(if temperature == 0.0 { Sampling::Greedy } else { Sampling::Random { temperature, top_k, top_p } })
    }

    /// The distribution the next token is drawn from: probabilities (B, V), rows sum to 1.
    /// (Greedy puts all mass on the argmax.)
    pub fn distribution(&self, logits: &Tensor) -> Tensor {
        match *self {
            Sampling::Greedy => {
                let idx = logits.argmax(-1, true);
                logits.zeros_like().to_kind(Kind::Float).scatter_value(-1, &idx, 1.0)
            }
            Sampling::Random { temperature, top_k, top_p } => {
                let mut z = logits.to_kind(Kind::Float) / temperature;
                let v = z.size()[1];
                if let Some(k) = top_k.filter(|&k| k < v) {
                    let (top, _) = z.topk(k, -1, true, true);
                    let kth = top.narrow(1, k - 1, 1); // (B, 1): the k-th largest
                    z = z.masked_fill(&z.lt_tensor(&kth), f64::NEG_INFINITY);
                }
                if let Some(p) = top_p.filter(|&p| p < 1.0) {
                    let (sorted, order) = z.sort(-1, true);
                    let probs = sorted.softmax(-1, Kind::Float);
                    // Mass strictly before each token; a token is kept while that is below p,
                    // so the kept set is the smallest prefix whose mass reaches p.
                    let before = probs.cumsum(-1, Kind::Float) - &probs;
                    let drop_sorted = before.ge(p);
                    let drop = drop_sorted.zeros_like().scatter(-1, &order, &drop_sorted);
                    z = z.masked_fill(&drop, f64::NEG_INFINITY);
                }
                z.softmax(-1, Kind::Float)
            }
        }
    }

    /// Draws one token per row of `logits` (B, V).
    ///
    /// The distribution is computed on the model's device; the draw itself is an
    /// inverse-CDF lookup on the host with `rng`, which is several times faster than
    /// libtorch's CPU `multinomial` at these sizes and makes the stream of draws depend
    /// only on the seed, not on the device.
    pub fn choose(&self, logits: &Tensor, rng: &mut impl Rng) -> Result<Vec<i64>> {
        match self {
            Sampling::Greedy => Ok(Vec::<i64>::try_from(logits.argmax(-1, false).to_device(Device::Cpu))?),
            Sampling::Random { .. } => {
                let probs = self.distribution(logits).to_device(Device::Cpu).contiguous();
                let v = probs.size()[1] as usize;
                let flat = Vec::<f32>::try_from(probs.view([-1]))?;
                Ok(flat.chunks_exact(v).map(|row| draw(row, rng) as i64).collect())
            }
        }
    }
}

/// Index drawn from unnormalised non-negative weights by inverse CDF.
fn draw(weights: &[f32], rng: &mut impl Rng) -> usize {
    let total: f64 = weights.iter().map(|&w| w as f64).sum();
    let target = rng.gen::<f64>() * total;
    let mut acc = 0.0;
    let mut last_nonzero = 0;
    for (i, &w) in weights.iter().enumerate() {
        if w > 0.0 {
            acc += w as f64;
            last_nonzero = i;
            if acc > target {
                return i;
            }
        }
    }
    // Rounding can leave `target` a hair above the running sum: the last possible token.
    last_nonzero
}

/// One row of the batch: the document it is writing and what the model sees.
struct Row {
    /// Tokens generated so far in this document (without the leading `<|endoftext|>`).
    doc: Vec<u32>,
    /// The token to feed next and the position it goes to.
    pending: i64,
    position: i64,
    /// Tokens the model conditions on at the next step, oldest first, ending with
    /// `pending`: `<|endoftext|>` + doc, or its last part after a re-encode.
    context_start: usize,
}

/// A finished document.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub tokens: Vec<u32>,
    pub truncated: bool,
}

/// Batched incremental decoder over a KV cache.
pub struct Decoder<'m> {
    model: &'m Model,
    cache: KvCache,
    rows: Vec<Row>,
    eot: u32,
    max_doc_tokens: usize,
    device: Device,
    /// Rows re-encoded so far (for reporting and tests).
    pub reencodes: usize,
}

impl<'m> Decoder<'m> {
    pub fn new(model: &'m Model, batch: usize, eot: u32, max_doc_tokens: usize, device: Device) -> Self {
        let rows = (0..batch).map(|_| Row::fresh(eot)).collect();
        Self { model, cache: model.new_cache(batch as i64, device), rows, eot, max_doc_tokens, device, reencodes: 0 }
    }

    /// The tokens row `b` is conditioned on at the next step (the uncached reference
    /// runs the model on exactly these).
    pub fn context(&self, b: usize) -> Vec<i64> {
        let r = &self.rows[b];
        std::iter::once(self.eot as i64)
            .chain(r.doc.iter().map(|&t| t as i64))
            .skip(r.context_start)
            .collect()
    }

    /// Logits for every row's next token: (B, V).
    pub fn logits(&mut self) -> Tensor {
        let pending: Vec<i64> = self.rows.iter().map(|r| r.pending).collect();
        let positions: Vec<i64> = self.rows.iter().map(|r| r.position).collect();
        let b = pending.len() as i64;
        let idx = Tensor::from_slice(&pending).view([b, 1]).to_device(self.device);
        let start = Tensor::from_slice(&positions).to_device(self.device);
        self.model.forward_cached(&idx, &start, &self.cache).squeeze_dim(1)
    }

    /// Feeds each row its chosen token; returns the documents that finished.
    pub fn advance(&mut self, chosen: &[i64]) -> Vec<Document> {
        let mut finished = Vec::new();
        let capacity = self.cache.capacity();
        for b in 0..self.rows.len() {
            let tok = chosen[b] as u32;
            let row = &mut self.rows[b];
            let ended = tok == self.eot;
            if !ended {
                row.doc.push(tok);
            }
            if ended || row.doc.len() >= self.max_doc_tokens {
                let doc = std::mem::take(&mut row.doc);
                finished.push(Document { tokens: doc, truncated: !ended });
                *row = Row::fresh(self.eot);
                continue;
            }
            row.pending = tok as i64;
            row.position += 1;
        }
        if self.rows.iter().any(|r| r.position == capacity) {
            // Batch with every row that would fill up soon.
            let near_full = capacity - (capacity / 4).max(1);
            let rows: Vec<usize> = (0..self.rows.len()).filter(|&b| self.rows[b].position >= near_full).collect();
            self.reencode(&rows);
        }
        finished
    }

    /// Rebuilds the caches of `rows` from the last half context of their documents,
    /// in one forward pass.
    fn reencode(&mut self, rows: &[usize]) {
        let keep = (self.cache.capacity() / 2).max(1) as usize;
        let mut prefixes = Vec::with_capacity(rows.len() * keep);
        for &b in rows {
            let full_len = 1 + self.rows[b].doc.len(); // <|endoftext|> + doc
            self.rows[b].context_start = full_len - keep;
            let ctx = self.context(b); // `keep` tokens, the last one pending
            prefixes.extend_from_slice(&ctx[..keep - 1]);
            self.rows[b].position = keep as i64 - 1;
        }
        self.reencodes += rows.len();
        if keep > 1 {
            let n = rows.len() as i64;
            let prefix = Tensor::from_slice(&prefixes).view([n, keep as i64 - 1]).to_device(self.device);
            let start = Tensor::zeros([n], (Kind::Int64, self.device));
            let scratch = self.model.new_cache(n, self.device);
            let _ = self.model.forward_cached(&prefix, &start, &scratch);
            let index: Vec<i64> = rows.iter().map(|&b| b as i64).collect();
            self.cache.copy_rows(&Tensor::from_slice(&index).to_device(self.device), &scratch);
        }
    }
}

impl Row {
    fn fresh(eot: u32) -> Self {
        Self { doc: Vec::new(), pending: eot as i64, position: 0, context_start: 0 }
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

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct SampleStats {
    pub documents: usize,
    pub tokens: usize,
    pub truncated_documents: usize,
    pub reencodes: usize,
    pub seconds: f64,
    pub tokens_per_second: f64,
}

/// Samples whole documents until at least `n_tokens` tokens (`<|endoftext|>` included)
/// have been handed to `write`.
pub fn sample_corpus(
    model: &Model,
    eot: u32,
    device: Device,
    req: &SampleRequest,
    mut write: impl FnMut(&Document) -> Result<()>,
) -> Result<SampleStats> {
    if req.n_tokens == 0 {
        bail!("--n-tokens must be positive");
    }
    if req.batch_size == 0 || req.max_doc_tokens == 0 {
        bail!("batch size and maximum document length must be positive");
    }
    let mut rng = ChaCha8Rng::seed_from_u64(req.seed);
    let t0 = std::time::Instant::now();
    let bar = crate::train::progress_bar(req.n_tokens as u64, req.progress);
    let mut stats = SampleStats { documents: 0, tokens: 0, truncated_documents: 0, reencodes: 0, seconds: 0.0, tokens_per_second: 0.0 };
    let mut decoder = Decoder::new(model, req.batch_size, eot, req.max_doc_tokens, device);
    tch::no_grad(|| -> Result<()> {
        while stats.tokens < req.n_tokens {
            let chosen = req.sampling.choose(&decoder.logits(), &mut rng)?;
            for doc in decoder.advance(&chosen) {
                if stats.tokens >= req.n_tokens {
                    break;
                }
                write(&doc)?;
                stats.documents += 1;
                stats.tokens += doc.tokens.len() + 1;
                stats.truncated_documents += doc.truncated as usize;
                bar.set_position(stats.tokens.min(req.n_tokens) as u64);
            }
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    stats.reencodes = decoder.reencodes;
    stats.seconds = t0.elapsed().as_secs_f64();
    stats.tokens_per_second = stats.tokens as f64 / stats.seconds;
    Ok(stats)
}

/// The reference the KV cache is measured against: `batch` sequences decoded in
/// lockstep, each step re-running the model over the whole prefix (cropped to the
/// context length). Returns the number of tokens generated.
pub fn sample_uncached(model: &Model, eot: u32, device: Device, sampling: Sampling, batch: usize, steps: usize) -> Result<usize> {
    let block = model.config().block_size;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    tch::no_grad(|| -> Result<()> {
        let mut seq = Tensor::full([batch as i64, 1], eot as i64, (Kind::Int64, device));
        for _ in 0..steps {
            let t = seq.size()[1];
            let window = if t > block { seq.narrow(1, t - block, block) } else { seq.shallow_clone() };
            let logits = model.forward(&window, false);
            let last = logits.select(1, window.size()[1] - 1);
            let next = Tensor::from_slice(&sampling.choose(&last, &mut rng)?).to_device(device).unsqueeze(1);
            seq = Tensor::cat(&[&seq, &next], 1);
        }
        Ok(())
    })?;
    Ok(batch * steps)
}
