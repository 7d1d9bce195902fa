//! The batched, KV-cached decoder: rows that each write one document at a time, the
//! context rule for documents longer than the model's context, and the two engines
//! (libtorch operators, or the step written in Rust with its blocks of steps).
use super::sampling::{draw_on_host, HostDraw, Sampling, Scratch};
use super::Document;
use crate::model::native::{NativeModel, RowStep};
use crate::model::{KvCache, Model};
use crate::tokenizer::Delimiters;
use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Tokens a row conditions on for its next token when it holds `n` tokens
/// (`<|endoftext|>` plus `n - 1` generated ones), for a model of context `block`.
/// See the module documentation.
pub fn context_length(block: usize, n: usize) -> usize {
    let keep = rebuild_keep(block);
    if n <= block {
        n
    } else {
        keep + (n - block - 1) % (block - keep + 1)
    }
}

/// Tokens a rebuild keeps for a context of `block`: half of it (see the module
/// documentation); all but the newest are re-encoded.
pub fn rebuild_keep(block: usize) -> usize {
    (block / 2).max(1)
}

/// Seconds a sampler spent, by part. On a GPU the kernels run asynchronously, so the
/// forward passes' time shows up where the draw first waits for their result.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct SampleTimes {
    /// Decoding forward passes (one new token per row).
    pub forward_seconds: f64,
    /// Next-token distributions and draws (temperature, filters, softmax, inverse CDF).
    pub draw_seconds: f64,
    /// Cache rebuilds of rows that filled their context (with the Rust step, the steps
    /// that re-encode a row's kept tokens together with its next one).
    pub rebuild_seconds: f64,
    /// Everything else: row bookkeeping, scheduling, writing documents.
    pub host_seconds: f64,
}

/// One row of the batch: the document it is writing and what the model sees.
struct Row {
    /// Tokens generated so far in this document (without the leading `<|endoftext|>`).
    doc: Vec<u32>,
    /// The token to feed next and the position it goes to (its index in the context
    /// the cache holds).
    pending: i64,
    position: i64,
    /// Tokens to feed before `pending`, at positions from 0: the kept half context of a
    /// rebuild that the Rust step runs with the next token (empty otherwise).
    prefix: Vec<i64>,
    /// Negative log-likelihood of the document's draws so far ([`Document::self_nll`]).
    nll: f64,
}

impl Row {
    fn fresh(d: Delimiters) -> Self {
        Self { doc: Vec::new(), pending: d.start as i64, position: 0, prefix: Vec::new(), nll: 0.0 }
    }

    /// The tokens the row is conditioned on at its next step: the last
    /// [`context_length`] of `<|endoftext|>` + its document.
    fn context(&self, d: Delimiters, block: usize) -> Vec<i64> {
        let n = 1 + self.doc.len();
        let len = context_length(block, n);
        std::iter::once(d.start as i64).chain(self.doc.iter().map(|&t| t as i64)).skip(n - len).collect()
    }

    /// Feeds the chosen token: at `<|endoftext|>` or the length cap the document ends
    /// and is returned, and the row starts a fresh one; otherwise the token is the one
    /// fed next, one position on. `log_prob` is the token's log-probability under the
    /// model at temperature 1.
    fn push(&mut self, tok: u32, log_prob: f64, d: Delimiters, max_doc_tokens: usize) -> Option<Document> {
        self.nll -= log_prob;
        let ended = tok == d.end;
        if !ended {
            self.doc.push(tok);
        }
        if ended || self.doc.len() >= max_doc_tokens {
            let doc = std::mem::take(&mut self.doc);
            let self_nll = self.nll;
            *self = Row::fresh(d);
            return Some(Document { tokens: doc, truncated: !ended, self_nll });
        }
        self.pending = tok as i64;
        self.position += 1;
        None
    }

    /// With the Rust step, a row whose cache is full (position `block`) is rebuilt by
    /// feeding its kept tokens with the next one ([`Row::prefix`]). Returns whether
    /// it was.
    fn fold_rebuild(&mut self, d: Delimiters, block: usize) -> bool {
        if self.position as usize != block {
            return false;
        }
        let keep = rebuild_keep(block);
        let ctx = self.context(d, block);
        debug_assert_eq!(ctx.len(), keep);
        self.prefix = ctx[..keep - 1].to_vec();
        self.position = keep as i64 - 1;
        true
    }
}

/// How the decoding step is computed. Both compute the model's logits; they differ in
/// speed and in the order of floating-point additions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// libtorch operators (any device); a rebuild is its own batched pass.
    #[default]
    Libtorch,
    /// The step written in Rust ([`crate::model::native`]), CPU only; a rebuild is fed
    /// with the row's next token in the same step.
    Native,
}

impl std::fmt::Display for Engine {
    /// How reports name it: `libtorch` or `rust`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::Libtorch => "libtorch",
            Engine::Native => "rust",
        })
    }
}

impl serde::Serialize for Engine {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Engine {
    /// The faster engine for `device`: Rust on the CPU, libtorch elsewhere.
    pub fn for_device(device: Device) -> Self {
        if device == Device::Cpu {
            Engine::Native
        } else {
            Engine::Libtorch
        }
    }
}

#[allow(clippy::large_enum_variant)] // one per decoder
enum Backend {
    Libtorch(KvCache),
    Native {
        model: NativeModel,
        /// One cache per row, in row order; `spare` keeps retired ones for reuse.
        caches: Vec<Box<[f32]>>,
        spare: Vec<Box<[f32]>>,
        /// The threads a step's rows are split between (none with one thread).
        pool: Option<rayon::ThreadPool>,
    },
}

/// Batched incremental decoder over a KV cache. Each row decodes one document at a
/// time; a row whose document ends starts a new one at the next step.
pub struct Decoder<'m> {
    model: &'m Model,
    backend: Backend,
    /// Context length (cache slots per row).
    capacity: i64,
    rows: Vec<Row>,
    delimiters: Delimiters,
    max_doc_tokens: usize,
    device: Device,
    /// Rows rebuilt so far (for reporting and tests).
    pub reencodes: usize,
    /// Decoding steps taken so far.
    pub steps: usize,
    /// Seconds in forward passes and in rebuilds so far.
    pub forward_seconds: f64,
    pub rebuild_seconds: f64,
    /// Seconds of draws made inside [`Decoder::decode_block`] (the per-step calls'
    /// draws are timed by their caller).
    pub draw_seconds: f64,
}

impl<'m> Decoder<'m> {
    /// A decoder with the faster engine for `device` ([`Engine::for_device`]).
    pub fn new(
        model: &'m Model,
        batch: usize,
        delimiters: impl Into<Delimiters>,
        max_doc_tokens: usize,
        device: Device,
    ) -> Self {
        Self::with_engine(model, batch, delimiters, max_doc_tokens, device, Engine::for_device(device))
    }

    /// A decoder computing its steps with `engine` (`Native` needs the CPU).
    pub fn with_engine(
        model: &'m Model,
        batch: usize,
        delimiters: impl Into<Delimiters>,
        max_doc_tokens: usize,
        device: Device,
        engine: Engine,
    ) -> Self {
        let delimiters = delimiters.into();
        let rows = (0..batch).map(|_| Row::fresh(delimiters)).collect();
        let backend = match engine {
            Engine::Native if device == Device::Cpu => {
                let native = model.native();
                let threads = tch::get_num_threads().max(1) as usize;
                let pool = (threads > 1)
                    .then(|| {
                        rayon::ThreadPoolBuilder::new()
                            .num_threads(threads)
                            .thread_name(|i| format!("lmloop-decode-{i}"))
                            .build()
                            .ok()
                    })
                    .flatten();
                let caches = (0..batch).map(|_| vec![0f32; native.cache_len()].into_boxed_slice()).collect();
                Backend::Native { model: native, caches, spare: Vec::new(), pool }
            }
            _ => Backend::Libtorch(model.new_cache(batch as i64, device)),
        };
        Self {
            model,
            backend,
            capacity: model.config().block_size,
            rows,
            delimiters,
            max_doc_tokens,
            device,
            reencodes: 0,
            steps: 0,
            forward_seconds: 0.0,
            rebuild_seconds: 0.0,
            draw_seconds: 0.0,
        }
    }

    /// Rows in the batch.
    pub fn batch(&self) -> usize {
        self.rows.len()
    }

    /// Tokens generated so far by row `b`'s current document.
    pub fn doc_len(&self, b: usize) -> usize {
        self.rows[b].doc.len()
    }

    /// The tokens row `b` is conditioned on at the next step: the last
    /// [`context_length`] of `<|endoftext|>` + its document (the uncached reference runs
    /// the model on exactly these).
    pub fn context(&self, b: usize) -> Vec<i64> {
        self.rows[b].context(self.delimiters, self.capacity as usize)
    }

    /// Logits for every row's next token: (B, V).
    pub fn logits(&mut self) -> Tensor {
        let t0 = Instant::now();
        let logits = match &mut self.backend {
            Backend::Libtorch(cache) => {
                let pending: Vec<i64> = self.rows.iter().map(|r| r.pending).collect();
                let start: Vec<i64> = self.rows.iter().map(|r| r.position).collect();
                let idx = Tensor::from_slice(&pending).view([pending.len() as i64, 1]).to_device(self.device);
                self.model.forward_cached(&idx, &start, cache).squeeze_dim(1)
            }
            Backend::Native { model, caches, pool, .. } => {
                let logits = Tensor::empty([self.rows.len() as i64, model.vocab() as i64], (Kind::Float, Device::Cpu));
                let rows = self.rows.iter().zip(caches.iter_mut()).collect();
                // SAFETY: a fresh contiguous f32 CPU tensor, written only here.
                step_rows(model, rows, &mut Vec::new(), unsafe { crate::host::slice_mut(&logits) }, pool.as_ref());
                for r in &mut self.rows {
                    r.prefix.clear();
                }
                logits
            }
        };
        self.steps += 1;
        self.forward_seconds += t0.elapsed().as_secs_f64();
        logits
    }

    /// Draws one token per row of `logits` (from [`Decoder::logits`]), row b with its
    /// own stream `rngs[b]`: [`Sampling::choose_rows`], with the draws it makes in Rust
    /// split between the Rust step's threads. The same tokens either way.
    pub fn choose_rows(&self, logits: &Tensor, sampling: &Sampling, rngs: &mut [impl Rng]) -> Result<Vec<i64>> {
        match (&self.backend, sampling.host_filter(logits)) {
            (Backend::Native { pool: Some(pool), .. }, Some(filter)) if rngs.len() == self.rows.len() => {
                let u: Vec<f64> = rngs.iter_mut().map(|r| r.gen::<f64>()).collect();
                Ok(draw_on_host(filter, logits, &u, Some(pool)))
            }
            _ => sampling.choose_rows(logits, rngs),
        }
    }

    /// Up to `steps` decoding steps of every row with the Rust step, each thread
    /// stepping and drawing its own rows without meeting the others in between. A
    /// thread takes its rows [`BLOCK_GROUP`] at a time through all the steps, so their
    /// caches stay in the processor's caches from one step to the next (a whole batch's
    /// do not: 64 rows of the default shape hold 25 MB); a step that goes through every
    /// row reads them all from memory. Row b reads from `rngs[b]` exactly what
    /// [`Decoder::choose_rows`] reads for it, and a row's logits do not depend on the
    /// other rows, so the tokens are those of `steps` rounds of `logits`, `choose_rows`
    /// and `advance`, whatever the grouping.
    ///
    /// A row whose document ends is fresh and, unless `restart`, waits for the end of
    /// the block (the caller gives it its next document's stream, or retires it); with
    /// `restart` it starts its next document at once with the same stream. Returns the
    /// finished documents with their rows, or `None` with libtorch's step (then use the
    /// per-step calls).
    pub fn decode_block<R: Rng + Send>(
        &mut self,
        sampling: &Sampling,
        rngs: &mut [R],
        steps: usize,
        restart: bool,
    ) -> Result<Option<Vec<(usize, Document)>>> {
        let Backend::Native { model, caches, pool, .. } = &mut self.backend else { return Ok(None) };
        if rngs.len() != self.rows.len() {
            bail!("{} rows but {} random streams", self.rows.len(), rngs.len());
        }
        let t0 = Instant::now();
        let block = Block {
            model,
            how: sampling.host_draw(model.vocab()),
            steps,
            restart,
            delimiters: self.delimiters,
            max_doc_tokens: self.max_doc_tokens,
            capacity: self.capacity as usize,
        };
        let n = self.rows.len();
        let threads = pool.as_ref().map_or(1, |p| p.current_num_threads()).min(n).max(1);
        let per = n.div_ceil(threads).max(1);
        let mut outcomes: Vec<BlockOutcome> = Vec::new();
        match pool {
            Some(pool) if threads > 1 => {
                let parts: Vec<_> =
                    self.rows.chunks_mut(per).zip(caches.chunks_mut(per)).zip(rngs.chunks_mut(per)).collect();
                outcomes.resize_with(parts.len(), BlockOutcome::default);
                let block = &block;
                pool.scope(|s| {
                    for (t, (((rows, caches), rngs), out)) in parts.into_iter().zip(outcomes.iter_mut()).enumerate() {
                        s.spawn(move |_| *out = block.run(rows, caches, rngs, t * per));
                    }
                });
            }
            _ => outcomes.push(block.run(&mut self.rows, caches, rngs, 0)),
        }
        // Wall time split between forward passes, rebuilds and draws as the threads
        // spent theirs.
        let wall = t0.elapsed().as_secs_f64();
        let spent = |f: fn(&BlockOutcome) -> f64| outcomes.iter().map(f).sum::<f64>();
        let (forward, rebuild, draw) =
            (spent(|o| o.forward_seconds), spent(|o| o.rebuild_seconds), spent(|o| o.draw_seconds));
        let total = forward + rebuild + draw;
        if total > 0.0 {
            self.forward_seconds += wall * forward / total;
            self.rebuild_seconds += wall * rebuild / total;
            self.draw_seconds += wall * draw / total;
        }
        self.steps += outcomes.iter().map(|o| o.steps).max().unwrap_or(0);
        self.reencodes += outcomes.iter().map(|o| o.reencodes).sum::<usize>();
        Ok(Some(outcomes.into_iter().flat_map(|o| o.finished).collect()))
    }

    /// Feeds each row its chosen token; returns the documents that finished, with the
    /// row each came from (that row starts a new document at the next step). The
    /// documents' [`Document::self_nll`] is NaN: [`Decoder::advance_scored`] keeps it.
    pub fn advance(&mut self, chosen: &[i64]) -> Vec<(usize, Document)> {
        self.feed(chosen, &vec![f64::NAN; chosen.len()])
    }

    /// [`Decoder::advance`], adding each chosen token's log-probability under `logits`
    /// (the step's, from [`Decoder::logits`]) to its document's [`Document::self_nll`].
    pub fn advance_scored(&mut self, chosen: &[i64], logits: &Tensor) -> Result<Vec<(usize, Document)>> {
        let index = Tensor::from_slice(chosen).to_device(logits.device()).unsqueeze(1);
        let picked = logits.to_kind(Kind::Float).log_softmax(-1, Kind::Float).gather(1, &index, false);
        let log_probs = Vec::<f64>::try_from(picked.squeeze_dim(1).to_kind(Kind::Double).to_device(Device::Cpu))?;
        Ok(self.feed(chosen, &log_probs))
    }

    fn feed(&mut self, chosen: &[i64], log_probs: &[f64]) -> Vec<(usize, Document)> {
        let mut finished = Vec::new();
        let capacity = self.capacity;
        for (b, row) in self.rows.iter_mut().enumerate() {
            if let Some(doc) = row.push(chosen[b] as u32, log_probs[b], self.delimiters, self.max_doc_tokens) {
                finished.push((b, doc));
            }
        }
        // Only rows whose own cache is full are rebuilt, so a row's context never
        // depends on the other rows. Full rows share one batched pass.
        let full: Vec<usize> = (0..self.rows.len()).filter(|&b| self.rows[b].position == capacity).collect();
        if !full.is_empty() {
            self.rebuild(&full);
        }
        finished
    }

    /// Keeps rows `keep` (in that order) and appends `extra` rows that start new
    /// documents; kept rows continue exactly where they were.
    pub fn reshape(&mut self, keep: &[usize], extra: usize) {
        match &mut self.backend {
            Backend::Libtorch(cache) => {
                let index: Vec<i64> = keep.iter().map(|&b| b as i64).collect();
                cache.reshape_rows(&Tensor::from_slice(&index).to_device(self.device), extra as i64);
            }
            Backend::Native { model, caches, spare, .. } => {
                let retired;
                (*caches, retired) = keep_in_order(std::mem::take(caches), keep);
                spare.extend(retired);
                for _ in 0..extra {
                    let fresh = spare.pop().unwrap_or_else(|| vec![0f32; model.cache_len()].into_boxed_slice());
                    caches.push(fresh);
                }
            }
        }
        self.rows = keep_in_order(std::mem::take(&mut self.rows), keep).0;
        self.rows.extend((0..extra).map(|_| Row::fresh(self.delimiters)));
    }

    /// Rebuilds the caches of `rows` from the last half context of their documents:
    /// the keys and values of all but the newest of those tokens, written straight into
    /// the rows' caches in one pass that computes no logits; the newest is fed at the
    /// next step as usual.
    fn rebuild(&mut self, rows: &[usize]) {
        let t0 = Instant::now();
        let keep = rebuild_keep(self.capacity as usize);
        if let Backend::Native { .. } = self.backend {
            // The Rust step feeds the kept tokens with the next one (see `Row::prefix`).
            for &b in rows {
                self.rows[b].fold_rebuild(self.delimiters, self.capacity as usize);
            }
            self.reencodes += rows.len();
            return;
        }
        let Backend::Libtorch(cache) = &self.backend else { unreachable!() };
        let mut prefixes = Vec::with_capacity(rows.len() * keep);
        for &b in rows {
            let ctx = self.context(b); // `keep` tokens, the last one pending
            debug_assert_eq!(ctx.len(), keep);
            prefixes.extend_from_slice(&ctx[..keep - 1]);
            self.rows[b].position = keep as i64 - 1;
        }
        self.reencodes += rows.len();
        if keep > 1 {
            let n = rows.len() as i64;
            let prefix = Tensor::from_slice(&prefixes).view([n, keep as i64 - 1]).to_device(self.device);
            let index: Vec<i64> = rows.iter().map(|&b| b as i64).collect();
            self.model.prefill(&prefix, &Tensor::from_slice(&index).to_device(self.device), cache);
        }
        self.rebuild_seconds += t0.elapsed().as_secs_f64();
    }
}

/// One Rust step of `rows`, each with its cache: a row being rebuilt feeds its kept
/// tokens ([`Row::prefix`]) before its pending one, the others their pending one; the
/// logits of each row's last token go to `logits` in order. `tokens` is scratch space.
fn step_rows(
    model: &NativeModel,
    rows: Vec<(&Row, &mut Box<[f32]>)>,
    tokens: &mut Vec<i64>,
    logits: &mut [f32],
    pool: Option<&rayon::ThreadPool>,
) {
    tokens.clear();
    for (r, _) in &rows {
        tokens.extend_from_slice(&r.prefix);
        tokens.push(r.pending);
    }
    let mut at = 0;
    let mut steps: Vec<RowStep> = Vec::with_capacity(rows.len());
    for (r, cache) in rows {
        let n = r.prefix.len() + 1;
        steps.push(RowStep { tokens: &tokens[at..at + n], start: r.position as usize - r.prefix.len(), cache });
        at += n;
    }
    model.step(&mut steps, logits, pool);
}

/// Rows a thread takes through a block's steps together in [`Decoder::decode_block`]:
/// few enough that their caches stay in the processor's caches across steps (8 rows of
/// the default shape hold 3 MB), enough that the weights read for a step serve several
/// rows.
pub const BLOCK_GROUP: usize = 8;

/// Most steps in one block of [`Decoder::decode_block`] the sampler and the bench ask
/// for: longer blocks gain little once a group's caches stay hot.
pub const BLOCK_STEPS_MAX: usize = 64;

/// What one block of [`Decoder::decode_block`] runs, for every thread.
struct Block<'a> {
    model: &'a NativeModel,
    how: HostDraw,
    steps: usize,
    restart: bool,
    delimiters: Delimiters,
    max_doc_tokens: usize,
    capacity: usize,
}

/// What one thread's share of a block did.
#[derive(Default)]
struct BlockOutcome {
    finished: Vec<(usize, Document)>,
    /// Most steps any of its groups took.
    steps: usize,
    reencodes: usize,
    forward_seconds: f64,
    rebuild_seconds: f64,
    draw_seconds: f64,
}

impl Block<'_> {
    /// Rows `first..first + rows.len()` of the batch, [`BLOCK_GROUP`] at a time.
    fn run<R: Rng>(&self, rows: &mut [Row], caches: &mut [Box<[f32]>], rngs: &mut [R], first: usize) -> BlockOutcome {
        let v = self.model.vocab();
        let mut out = BlockOutcome::default();
        let mut scratch = Scratch::new(v);
        let mut logits = vec![0f32; BLOCK_GROUP.min(rows.len()) * v];
        let mut tokens: Vec<i64> = Vec::new();
        let groups = rows.chunks_mut(BLOCK_GROUP).zip(caches.chunks_mut(BLOCK_GROUP)).zip(rngs.chunks_mut(BLOCK_GROUP));
        for (g, ((rows, caches), rngs)) in groups.enumerate() {
            let mut active = vec![true; rows.len()];
            for step in 0..self.steps {
                let live: Vec<usize> = (0..rows.len()).filter(|&i| active[i]).collect();
                if live.is_empty() {
                    break;
                }
                out.steps = out.steps.max(step + 1);
                // Rows being rebuilt run in a step of their own, so that their time is
                // known (a row's logits do not depend on the rows beside it).
                let (plain, rebuilt): (Vec<usize>, Vec<usize>) = live.iter().partition(|&&i| rows[i].prefix.is_empty());
                let mut at = 0;
                for (part, seconds) in [(&plain, &mut out.forward_seconds), (&rebuilt, &mut out.rebuild_seconds)] {
                    if part.is_empty() {
                        continue;
                    }
                    let t = Instant::now();
                    let these = rows
                        .iter()
                        .zip(caches.iter_mut())
                        .enumerate()
                        .filter(|(i, _)| part.contains(i))
                        .map(|(_, rc)| rc)
                        .collect();
                    step_rows(self.model, these, &mut tokens, &mut logits[at * v..][..part.len() * v], None);
                    at += part.len();
                    *seconds += t.elapsed().as_secs_f64();
                }
                let t = Instant::now();
                for (j, &i) in plain.iter().chain(&rebuilt).enumerate() {
                    let row = &mut rows[i];
                    row.prefix.clear();
                    let row_logits = &logits[j * v..][..v];
                    let tok = self.how.choose(row_logits, &mut rngs[i], &mut scratch);
                    let log_prob = crate::vecmath::log_softmax_at(row_logits, tok as usize);
                    match row.push(tok as u32, log_prob, self.delimiters, self.max_doc_tokens) {
                        Some(doc) => {
                            out.finished.push((first + g * BLOCK_GROUP + i, doc));
                            active[i] = self.restart;
                        }
                        None => out.reencodes += usize::from(row.fold_rebuild(self.delimiters, self.capacity)),
                    }
                }
                out.draw_seconds += t.elapsed().as_secs_f64();
            }
        }
        out
    }
}

/// `items[keep[0]], items[keep[1]], …` (each index at most once), and the items not
/// kept.
pub(super) fn keep_in_order<T>(items: Vec<T>, keep: &[usize]) -> (Vec<T>, Vec<T>) {
    let mut old: Vec<Option<T>> = items.into_iter().map(Some).collect();
    let kept = keep.iter().map(|&b| old[b].take().expect("each row is kept at most once")).collect();
    (kept, old.into_iter().flatten().collect())
}

/// The reference the KV cache is measured against: `batch` sequences decoded in
/// lockstep, each step re-running the model over the whole context [`context_length`]
/// prescribes (so it computes the same distributions as the cached decoder). Returns
/// the number of tokens generated.
pub fn sample_uncached(
    model: &Model,
    start: u32,
    device: Device,
    sampling: Sampling,
    batch: usize,
    steps: usize,
) -> Result<usize> {
    let block = model.config().block_size as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    tch::no_grad(|| -> Result<()> {
        let mut seq = Tensor::full([batch as i64, 1], start as i64, (Kind::Int64, device));
        for _ in 0..steps {
            let n = seq.size()[1] as usize;
            let len = context_length(block, n) as i64;
            let window = seq.narrow(1, n as i64 - len, len);
            let logits = model.forward(&window, false);
            let last = logits.select(1, len - 1);
            let next = Tensor::from_slice(&sampling.choose(&last, &mut rng)?).to_device(device).unsqueeze(1);
            seq = Tensor::cat(&[&seq, &next], 1);
        }
        Ok(())
    })?;
    Ok(batch * steps)
}
