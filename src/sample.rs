//! The sampler: batched, KV-cached generation of a synthetic corpus that is an
//! unbiased sample of the model's documents.
//!
//! **Documents.** Every document starts from `<|endoftext|>` at position 0 and runs
//! until the model emits `<|endoftext|>`. The harness never ends a document itself,
//! except at the length cap `max_doc_tokens`, a guard against degenerate models (the
//! loop sets it to at least the longest real document). A document cut at the cap is
//! counted as truncated and written *without* an end-of-text token, because the model
//! did not emit one; it then runs straight into the next document of the file.
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
//! up to `block` tokens.
//!
//! Next-token choice ([`Sampling`]): logits are divided by the temperature, then top-k
//! keeps the k largest, then top-p keeps the smallest set of the remaining tokens whose
//! probability (after temperature and top-k) reaches p; the result is renormalised and
//! sampled. Temperature 0 is greedy (argmax; top-k/top-p then change nothing).
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

    /// Draws one token per row of `logits` (B, V), row b with its own stream `rngs[b]`,
    /// so that what a row draws does not depend on the other rows.
    pub fn choose_rows(&self, logits: &Tensor, rngs: &mut [impl Rng]) -> Result<Vec<i64>> {
        let rows = logits.size()[0] as usize;
        if rows != rngs.len() {
            bail!("{rows} rows of logits but {} random streams", rngs.len());
        }
        self.pick(logits, |b, row| draw(row, &mut rngs[b]))
    }

    /// Draws one token per row of `logits` (B, V).
    ///
    /// The distribution is computed on the model's device; the draw itself is an
    /// inverse-CDF lookup on the host with `rng`, which is several times faster than
    /// libtorch's CPU `multinomial` at these sizes and makes the stream of draws depend
    /// only on the seed, not on the device.
    pub fn choose(&self, logits: &Tensor, rng: &mut impl Rng) -> Result<Vec<i64>> {
        self.pick(logits, |_, row| draw(row, rng))
    }

    /// The argmax of every row, or `draw(row index, probabilities)` of every row.
    fn pick(&self, logits: &Tensor, mut draw: impl FnMut(usize, &[f32]) -> usize) -> Result<Vec<i64>> {
        match self {
            Sampling::Greedy => Ok(Vec::<i64>::try_from(logits.argmax(-1, false).to_device(Device::Cpu))?),
            Sampling::Random { .. } => {
                let probs = self.distribution(logits).to_device(Device::Cpu).contiguous();
                let v = probs.size()[1] as usize;
                let flat = Vec::<f32>::try_from(probs.view([-1]))?;
                Ok(flat.chunks_exact(v).enumerate().map(|(b, row)| draw(b, row) as i64).collect())
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

/// Tokens a row conditions on for its next token when it holds `n` tokens
/// (`<|endoftext|>` plus `n - 1` generated ones), for a model of context `block`.
/// See the module documentation.
pub fn context_length(block: usize, n: usize) -> usize {
    let keep = (block / 2).max(1);
    if n <= block {
        n
    } else {
        keep + (n - block - 1) % (block - keep + 1)
    }
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
    /// Cut at the length cap: the model did not end it.
    pub truncated: bool,
}

impl Document {
    /// Tokens it occupies in a corpus: its own, plus `<|endoftext|>` unless truncated.
    pub fn corpus_tokens(&self) -> usize {
        self.tokens.len() + usize::from(!self.truncated)
    }
}

/// Batched incremental decoder over a KV cache. Each row decodes one document at a
/// time; a row whose document ends starts a new one at the next step.
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

    /// Rows in the batch.
    pub fn batch(&self) -> usize {
        self.rows.len()
    }

    /// Tokens generated so far by row `b`'s current document.
    pub fn doc_len(&self, b: usize) -> usize {
        self.rows[b].doc.len()
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

    /// Feeds each row its chosen token; returns the documents that finished, with the
    /// row each came from (that row starts a new document at the next step).
    pub fn advance(&mut self, chosen: &[i64]) -> Vec<(usize, Document)> {
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
                finished.push((b, Document { tokens: doc, truncated: !ended }));
                *row = Row::fresh(self.eot);
                continue;
            }
            row.pending = tok as i64;
            row.position += 1;
        }
        // Only rows whose own cache is full are rebuilt, so a row's context never
        // depends on the other rows. Full rows share one batched forward pass.
        let full: Vec<usize> = (0..self.rows.len()).filter(|&b| self.rows[b].position == capacity).collect();
        if !full.is_empty() {
            self.reencode(&full);
        }
        finished
    }

    /// Keeps rows `keep` (in that order) and appends `extra` rows that start new
    /// documents; kept rows continue exactly where they were.
    pub fn reshape(&mut self, keep: &[usize], extra: usize) {
        let index: Vec<i64> = keep.iter().map(|&b| b as i64).collect();
        self.cache.reshape_rows(&Tensor::from_slice(&index).to_device(self.device), extra as i64);
        let mut old: Vec<Option<Row>> = std::mem::take(&mut self.rows).into_iter().map(Some).collect();
        self.rows = keep.iter().map(|&b| old[b].take().expect("each row is kept at most once")).collect();
        self.rows.extend((0..extra).map(|_| Row::fresh(self.eot)));
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
    /// Documents in the corpus (documents 0..M).
    pub documents: usize,
    /// Tokens in the corpus, end-of-text tokens included.
    pub tokens: usize,
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
    pub seconds: f64,
    pub tokens_per_second: f64,
}

/// The random stream of document `index` of a corpus sampled with `seed`.
pub fn document_rng(seed: u64, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index);
    rng
}

/// What the scheduler knows about the documents started so far.
struct Ledger {
    target: usize,
    /// Documents 0..written have been handed to the writer, holding `written_tokens`.
    written: u64,
    written_tokens: usize,
    /// Finished documents waiting for their predecessors, by index.
    waiting: std::collections::BTreeMap<u64, Document>,
    waiting_tokens: usize,
    /// Index of the next document to start.
    next: u64,
    /// Finished documents so far and their corpus tokens (for the mean length).
    finished: usize,
    finished_tokens: usize,
}

impl Ledger {
    /// Whether document `self.next` is likely needed: the documents before it are
    /// expected to hold fewer than the target, counting each unfinished one at its
    /// current length or the mean finished length, whichever is larger. Only speed
    /// depends on this guess: a document that turns out unneeded is discarded, and one
    /// that turns out needed is started later.
    fn should_start(&self, in_flight_lengths: impl Iterator<Item = usize> + Clone) -> bool {
        // Mean length by "total time on test": every token decoded so far over the
        // documents finished, which counts the long documents still running (a mean
        // of finished documents alone is biased short early on).
        let decoded: usize = self.finished_tokens + in_flight_lengths.clone().map(|l| l + 1).sum::<usize>();
        let mean = if self.finished > 0 { decoded as f64 / self.finished as f64 } else { 0.0 };
        let in_flight: f64 = in_flight_lengths.map(|l| ((l + 1) as f64).max(mean)).sum();
        (self.written_tokens + self.waiting_tokens) as f64 + in_flight < self.target as f64
    }
}

/// Samples documents 0..M (see the module documentation) and hands them to `write`
/// in order; M is the first count whose documents hold at least `n_tokens` tokens
/// (`<|endoftext|>` included).
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
    let t0 = std::time::Instant::now();
    let bar = crate::train::progress_bar(req.n_tokens as u64, req.progress);
    let mut stats = SampleStats {
        documents: 0,
        tokens: 0,
        truncated_documents: 0,
        truncation_share: 0.0,
        mean_document_tokens: 0.0,
        discarded_tokens: 0,
        reencodes: 0,
        seconds: 0.0,
        tokens_per_second: 0.0,
    };
    let mut ledger = Ledger {
        target: req.n_tokens,
        written: 0,
        written_tokens: 0,
        waiting: Default::default(),
        waiting_tokens: 0,
        next: 0,
        finished: 0,
        finished_tokens: 0,
    };
    // Row b of the decoder writes document `docs[b]` with random stream `rngs[b]`.
    let mut decoder = Decoder::new(model, 0, eot, req.max_doc_tokens, device);
    let mut docs: Vec<u64> = Vec::new();
    let mut rngs: Vec<ChaCha8Rng> = Vec::new();
    tch::no_grad(|| -> Result<()> {
        loop {
            // Open rows for new documents while they are likely needed.
            let mut extra = 0;
            while decoder.batch() + extra < req.batch_size
                && ledger.should_start((0..decoder.batch()).map(|b| decoder.doc_len(b)).chain(std::iter::repeat(0).take(extra)))
            {
                docs.push(ledger.next);
                rngs.push(document_rng(req.seed, ledger.next));
                ledger.next += 1;
                extra += 1;
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
            let chosen = req.sampling.choose_rows(&decoder.logits(), &mut rngs)?;
            let finished = decoder.advance(&chosen);
            if finished.is_empty() {
                continue;
            }
            let mut free = Vec::new();
            for (b, doc) in finished {
                ledger.finished += 1;
                ledger.finished_tokens += doc.corpus_tokens();
                ledger.waiting_tokens += doc.corpus_tokens();
                ledger.waiting.insert(docs[b], doc);
                free.push(b);
            }
            // Hand documents to the writer in index order, up to the target.
            while let Some(doc) = ledger.waiting.remove(&ledger.written) {
                ledger.waiting_tokens -= doc.corpus_tokens();
                write(&doc)?;
                ledger.written += 1;
                ledger.written_tokens += doc.corpus_tokens();
                stats.documents += 1;
                stats.tokens += doc.corpus_tokens();
                stats.truncated_documents += doc.truncated as usize;
                bar.set_position(stats.tokens.min(req.n_tokens) as u64);
                if stats.tokens >= req.n_tokens {
                    // Documents ≥ M, finished or not, are not part of the corpus.
                    stats.discarded_tokens = ledger.waiting.values().map(|d| d.tokens.len()).sum::<usize>()
                        + (0..decoder.batch()).filter(|b| !free.contains(b)).map(|b| decoder.doc_len(b)).sum::<usize>();
                    return Ok(());
                }
            }
            // A freed row takes the next document if it is likely needed, else retires.
            let in_flight: Vec<usize> = (0..decoder.batch()).filter(|b| !free.contains(b)).map(|b| decoder.doc_len(b)).collect();
            let mut retire = Vec::new();
            let mut started = 0;
            for &b in &free {
                if ledger.should_start(in_flight.iter().copied().chain(std::iter::repeat(0).take(started))) {
                    started += 1;
                    docs[b] = ledger.next;
                    rngs[b] = document_rng(req.seed, ledger.next);
                    ledger.next += 1;
                } else {
                    retire.push(b);
                }
            }
            if !retire.is_empty() {
                let keep: Vec<usize> = (0..decoder.batch()).filter(|b| !retire.contains(b)).collect();
                decoder.reshape(&keep, 0);
                docs = keep.iter().map(|&b| docs[b]).collect();
                let mut old: Vec<Option<ChaCha8Rng>> = std::mem::take(&mut rngs).into_iter().map(Some).collect();
                rngs = keep.iter().map(|&b| old[b].take().expect("kept once")).collect();
            }
        }
    })?;
    bar.finish_and_clear();
    stats.reencodes = decoder.reencodes;
    stats.truncation_share = stats.truncated_documents as f64 / stats.documents as f64;
    let eots = stats.documents - stats.truncated_documents;
    stats.mean_document_tokens = (stats.tokens - eots) as f64 / stats.documents as f64;
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
