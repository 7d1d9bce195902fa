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
//! Next-token choice ([`Sampling`]): logits are divided by the temperature, then top-k
//! keeps the k largest, then top-p keeps the smallest set of the remaining tokens whose
//! probability (after temperature and top-k) reaches p; the result is renormalised and
//! sampled. Temperature 0 is greedy (argmax; top-k/top-p then change nothing).
use crate::model::native::{NativeModel, RowStep};
use crate::model::{KvCache, Model};
use crate::tokenizer::Delimiters;
use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;
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
    /// Validated sampling settings from the command line; temperature 0 means greedy.
    pub fn new(temperature: f64, top_k: Option<i64>, top_p: Option<f64>) -> Result<Self> {
        Self::named(temperature, top_k, top_p, ["--temperature", "--top-k", "--top-p"])
    }

    /// Validated sampling settings, errors naming them as `names` (temperature, top-k,
    /// top-p) do where they came from: the one place these ranges are checked, for the
    /// command line, run configs and sweep files alike.
    pub fn named(temperature: f64, top_k: Option<i64>, top_p: Option<f64>, names: [&str; 3]) -> Result<Self> {
        if !(temperature >= 0.0 && temperature.is_finite()) {
            bail!("{} must be >= 0 (0 means greedy), got {temperature}", names[0]);
        }
        if let Some(k) = top_k {
            if k <= 0 {
                bail!("{} must be a positive number of tokens, got {k}", names[1]);
            }
        }
        if let Some(p) = top_p {
            if !(p > 0.0 && p <= 1.0) {
                bail!("{} must be in (0, 1], got {p}", names[2]);
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
                // Dividing by 1 changes nothing: skip the pass over (B, V).
                let mut z = if temperature == 1.0 {
                    logits.to_kind(Kind::Float)
                } else {
                    logits.to_kind(Kind::Float) / temperature
                };
                let v = z.size()[1];
                if let Some(k) = top_k.filter(|&k| k < v) {
                    let (top, _) = z.topk(k, -1, true, true);
                    let kth = top.narrow(1, k - 1, 1); // (B, 1): the k-th largest
                    z = z.masked_fill(&z.lt_tensor(&kth), f64::NEG_INFINITY);
                }
                if let Some(p) = top_p.filter(|&p| p < 1.0) {
                    let (sorted, order) = z.sort(-1, true);
                    // In double precision, as the host draw sums it: a float32 running sum
                    // over a large vocabulary drifts by more than the mass of a tail token.
                    let probs = sorted.softmax(-1, Kind::Double);
                    // Mass strictly before each token; a token is kept while that is below p,
                    // so the kept set is the smallest prefix whose mass reaches p.
                    let before = probs.cumsum(-1, Kind::Double) - &probs;
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
        self.pick(logits, |b| rngs[b].gen::<f64>())
    }

    /// Draws one token per row of `logits` (B, V), reading one uniform per row from
    /// `rng`, in row order.
    pub fn choose(&self, logits: &Tensor, rng: &mut impl Rng) -> Result<Vec<i64>> {
        self.pick(logits, |_| rng.gen::<f64>())
    }

    /// The argmax of every row, or every row's inverse-CDF draw at `uniform(row)`.
    ///
    /// The distribution is computed on the model's device and each draw is the lookup
    /// of one uniform in [0, 1), so the stream of draws depends only on the seeds. On
    /// the CPU the lookup runs on the host ([`draw`]), several times faster than
    /// libtorch's `multinomial` at these sizes; elsewhere it runs on the device
    /// ([`inverse_cdf`]) and only the chosen indices come back, never the (B, V)
    /// probabilities.
    fn pick(&self, logits: &Tensor, mut uniform: impl FnMut(usize) -> f64) -> Result<Vec<i64>> {
        if let Some(filter) = self.host_filter(logits) {
            let u: Vec<f64> = (0..logits.size()[0] as usize).map(&mut uniform).collect();
            return Ok(draw_on_host(filter, logits, &u, None));
        }
        match self {
            Sampling::Greedy if crate::host::viewable(logits) && logits.dim() == 2 => {
                // SAFETY: `logits` is viewable and only read here.
                let flat = unsafe { crate::host::slice(logits) };
                let v = logits.size()[1] as usize;
                Ok(flat.chunks_exact(v).map(|row| argmax(row) as i64).collect())
            }
            Sampling::Greedy => Ok(Vec::<i64>::try_from(logits.argmax(-1, false).to_device(Device::Cpu))?),
            Sampling::Random { .. } if logits.device() != Device::Cpu => {
                let rows = logits.size()[0] as usize;
                let u: Vec<f64> = (0..rows).map(&mut uniform).collect();
                inverse_cdf(&self.distribution(logits), &u)
            }
            Sampling::Random { .. } => {
                let probs = self.distribution(logits).contiguous();
                let v = probs.size()[1] as usize;
                let mut pick_all = |flat: &[f32]| {
                    flat.chunks_exact(v).enumerate().map(|(b, row)| draw(row, uniform(b)) as i64).collect()
                };
                if crate::host::viewable(&probs) {
                    // SAFETY: `probs` is viewable and only read until the draws are made.
                    Ok(pick_all(unsafe { crate::host::slice(&probs) }))
                } else {
                    Ok(pick_all(&Vec::<f32>::try_from(probs.view([-1]))?))
                }
            }
        }
    }
}

/// Random sampling's settings as the host draw uses them: temperature, and the top-k
/// and top-p filters where they remove anything.
#[derive(Clone, Copy)]
struct HostFilter {
    temperature: f32,
    top_k: Option<usize>,
    top_p: Option<f64>,
}

impl Sampling {
    /// The settings, when draws from `logits` can run on the host without libtorch:
    /// random sampling from f32 logits (B, V) on the CPU.
    fn host_filter(&self, logits: &Tensor) -> Option<HostFilter> {
        match self.host_draw(logits.size().last().copied().unwrap_or(0) as usize) {
            HostDraw::Random(f) if crate::host::viewable(logits) && logits.dim() == 2 => Some(f),
            _ => None,
        }
    }

    /// How a row of `v` f32 logits is drawn from in Rust.
    fn host_draw(&self, v: usize) -> HostDraw {
        match *self {
            Sampling::Greedy => HostDraw::Greedy,
            Sampling::Random { temperature, top_k, top_p } => HostDraw::Random(HostFilter {
                temperature: temperature as f32,
                top_k: top_k.filter(|&k| (k as usize) < v).map(|k| k as usize),
                top_p: top_p.filter(|&p| p < 1.0),
            }),
        }
    }
}

/// A draw computed in Rust from one row of logits.
#[derive(Clone, Copy)]
enum HostDraw {
    /// The first largest logit, as libtorch's argmax; no uniform is read.
    Greedy,
    /// One uniform from the row's stream, then [`draw_row`].
    Random(HostFilter),
}

impl HostDraw {
    /// The token row `row` of logits gives, reading from the row's own stream `rng`
    /// exactly what [`Sampling::choose_rows`] reads for it.
    fn choose(self, row: &[f32], rng: &mut impl Rng, scratch: &mut Scratch) -> i64 {
        match self {
            HostDraw::Greedy => argmax(row) as i64,
            HostDraw::Random(f) => draw_row(row, f, rng.gen::<f64>(), scratch),
        }
    }
}

/// The token one row of logits gives at uniform `u`: [`filtered_weights`], then
/// [`draw`].
fn draw_row(row: &[f32], filter: HostFilter, u: f64, scratch: &mut Scratch) -> i64 {
    filtered_weights(row, filter, scratch);
    draw(&scratch.weights, u) as i64
}

/// Index of the first largest value, as libtorch's argmax.
fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold(0, |best, (i, &x)| if x > row[best] { i } else { best })
}

/// Draws computed in Rust ([`filtered_weights`], then [`draw`]) from `logits`, which
/// [`Sampling::host_filter`] accepted, row b at uniform `u[b]`; rows split between
/// `pool`'s threads when given. No libtorch call: its thread pool would wake for every
/// step's softmax and sort. Each row's draw depends only on its own logits and uniform.
fn draw_on_host(filter: HostFilter, logits: &Tensor, u: &[f64], pool: Option<&rayon::ThreadPool>) -> Vec<i64> {
    let v = logits.size()[1] as usize;
    // SAFETY: `host_filter` accepted `logits`, so it is viewable; it is only read here.
    let flat = unsafe { crate::host::slice(logits) };
    let rows = |flat: &[f32], u: &[f64], out: &mut [i64]| {
        let mut scratch = Scratch::new(v);
        for ((row, &ub), o) in flat.chunks_exact(v).zip(u).zip(out.iter_mut()) {
            *o = draw_row(row, filter, ub, &mut scratch);
        }
    };
    let mut out = vec![0i64; u.len()];
    match pool {
        Some(pool) if u.len() > 1 => {
            let per = u.len().div_ceil(pool.current_num_threads());
            pool.scope(|s| {
                for ((f, uu), o) in flat.chunks(per * v).zip(u.chunks(per)).zip(out.chunks_mut(per)) {
                    s.spawn(move |_| rows(f, uu, o));
                }
            });
        }
        _ => rows(flat, u, &mut out),
    }
    out
}

/// Working memory of [`filtered_weights`], reused across rows.
struct Scratch {
    z: Vec<f32>,
    order: Vec<u32>,
    /// The result: unnormalised weights, 0 for filtered tokens.
    weights: Vec<f32>,
}

impl Scratch {
    fn new(v: usize) -> Self {
        Scratch { z: vec![0f32; v], order: Vec::with_capacity(v), weights: vec![0f32; v] }
    }
}

/// One row's next-token weights, as [`Sampling::distribution`] defines them but
/// unnormalised: `z = logits / temperature`; top-k keeps the tokens whose z is at
/// least the k-th largest (ties kept); top-p keeps, in order of decreasing z (ties by
/// token id), each token while the probability mass strictly before it (after top-k,
/// summed in double precision) is below p; the weights are `e^(z − max z)` of the
/// kept tokens. Top-p sorts only the tokens near the cut (see the code), not the row.
fn filtered_weights(row: &[f32], f: HostFilter, s: &mut Scratch) {
    let z = &mut s.z;
    for (zi, &l) in z.iter_mut().zip(row) {
        *zi = if f.temperature == 1.0 { l } else { l / f.temperature };
    }
    if let Some(k) = f.top_k {
        s.weights.copy_from_slice(z);
        let (_, kth, _) = s.weights.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
        let kth = *kth;
        for zi in z.iter_mut() {
            if *zi < kth {
                *zi = f32::NEG_INFINITY;
            }
        }
    }
    crate::model::native::softmax_weights(z, &mut s.weights);
    let Some(p) = f.top_p else { return };
    let w = &mut s.weights;
    let total: f64 = w.iter().map(|&x| x as f64).sum();
    // Tokens in buckets of z, highest bucket first: whole buckets whose mass keeps the
    // running mass below p are kept, buckets after the one where it reaches p are
    // dropped, and only that bucket is sorted (by decreasing z, ties by token id).
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    for (&zi, &wi) in z.iter().zip(w.iter()) {
        if wi > 0.0 {
            lo = lo.min(zi);
            hi = hi.max(zi);
        }
    }
    const BUCKETS: usize = 256;
    let scale = if hi > lo { (BUCKETS as f32 - 1.0) / (hi - lo) } else { 0.0 };
    let bucket = |zi: f32| (((zi - lo) * scale) as usize).min(BUCKETS - 1);
    let mut mass = [0f64; BUCKETS];
    for (&zi, &wi) in z.iter().zip(w.iter()) {
        if wi > 0.0 {
            mass[bucket(zi)] += wi as f64 / total;
        }
    }
    let mut before = 0.0;
    let mut cut_bucket = 0;
    for b in (0..BUCKETS).rev() {
        if before + mass[b] >= p || b == 0 {
            cut_bucket = b;
            break;
        }
        before += mass[b];
    }
    s.order.clear();
    for (i, (&zi, wi)) in z.iter().zip(w.iter_mut()).enumerate() {
        if *wi > 0.0 {
            match bucket(zi).cmp(&cut_bucket) {
                std::cmp::Ordering::Less => *wi = 0.0,
                std::cmp::Ordering::Equal => s.order.push(i as u32),
                std::cmp::Ordering::Greater => {}
            }
        }
    }
    s.order.sort_unstable_by(|&a, &b| z[b as usize].total_cmp(&z[a as usize]).then(a.cmp(&b)));
    for &t in &s.order {
        if before >= p {
            w[t as usize] = 0.0;
        } else {
            before += w[t as usize] as f64 / total;
        }
    }
}

/// Inverse-CDF draws where `probs` (B, V) lives: row b's token is the first index whose
/// cumulative weight exceeds `u[b]` times the row's total, the rule of [`draw`], with
/// the cumulative sums in double precision. Only the B uniforms go to the device and
/// only the B indices come back. Deterministic: the same probabilities and uniforms
/// give the same tokens (a row-wise scan has a fixed order of additions).
pub fn inverse_cdf(probs: &Tensor, u: &[f64]) -> Result<Vec<i64>> {
    let (b, v) = probs.size2()?;
    if u.len() as i64 != b {
        bail!("{b} rows of probabilities but {} uniforms", u.len());
    }
    let device = probs.device();
    let cdf = probs.to_kind(Kind::Double).cumsum(-1, Kind::Double); // (B, V)
    let total = cdf.narrow(1, v - 1, 1); // (B, 1)
    let target = Tensor::from_slice(u).to_device(device).view([b, 1]) * &total;
    // First index with cdf > target (`right`): a weight-0 token never raises the sum past it.
    let chosen = target.searchsorted(&cdf, false, true, "right", None::<Tensor>).view([b]);
    // Rounding can leave the target at the total: the last token of positive weight.
    let positive = probs.gt(0.0).to_kind(Kind::Int64) * Tensor::arange(v, (Kind::Int64, device)).view([1, v]);
    let last = positive.amax([1].as_slice(), false);
    Ok(Vec::<i64>::try_from(chosen.minimum(&last).to_device(Device::Cpu))?)
}

/// Weights summed per block by [`draw`]: the search walks block sums, then one block.
const DRAW_BLOCK: usize = 64;

/// Index drawn from unnormalised non-negative weights by inverse CDF at `uniform` in
/// [0, 1), with probability `weights[i] / Σ weights` up to double-precision rounding (every f32
/// weight counts at full precision, however small: the tails are what collapse
/// studies measure).
///
/// Two passes in double precision: block sums (eight independent accumulators, which
/// the compiler vectorises), then a walk over the block sums and a scan inside the one
/// block that holds the target.
fn draw(weights: &[f32], uniform: f64) -> usize {
    let blocks: Vec<f64> = weights.chunks(DRAW_BLOCK).map(sum_f64).collect();
    let total: f64 = blocks.iter().sum();
    let target = uniform * total;
    let mut acc = 0.0;
    for (k, &block) in blocks.iter().enumerate() {
        if acc + block > target {
            let start = k * DRAW_BLOCK;
            for (i, &w) in weights[start..(start + DRAW_BLOCK).min(weights.len())].iter().enumerate() {
                acc += w as f64;
                if w > 0.0 && acc > target {
                    return start + i;
                }
            }
            // The block's own sum and the running one differ by rounding: go on.
            continue;
        }
        acc += block;
    }
    // Rounding can leave `target` a hair above the running sum: the last possible token.
    weights.iter().rposition(|&w| w > 0.0).unwrap_or(0)
}

/// Sum of f32 values in double precision, in eight lanes.
fn sum_f64(values: &[f32]) -> f64 {
    let mut lanes = [0.0f64; 8];
    let mut chunks = values.chunks_exact(8);
    for c in &mut chunks {
        for (lane, &v) in lanes.iter_mut().zip(c) {
            *lane += v as f64;
        }
    }
    lanes.iter().sum::<f64>() + chunks.remainder().iter().map(|&v| v as f64).sum::<f64>()
}

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
}

impl Row {
    fn fresh(d: Delimiters) -> Self {
        Self { doc: Vec::new(), pending: d.start as i64, position: 0, prefix: Vec::new() }
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
    /// fed next, one position on.
    fn push(&mut self, tok: u32, d: Delimiters, max_doc_tokens: usize) -> Option<Document> {
        let ended = tok == d.end;
        if !ended {
            self.doc.push(tok);
        }
        if ended || self.doc.len() >= max_doc_tokens {
            let doc = std::mem::take(&mut self.doc);
            *self = Row::fresh(d);
            return Some(Document { tokens: doc, truncated: !ended });
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
    /// row each came from (that row starts a new document at the next step).
    pub fn advance(&mut self, chosen: &[i64]) -> Vec<(usize, Document)> {
        let mut finished = Vec::new();
        let capacity = self.capacity;
        for (b, row) in self.rows.iter_mut().enumerate() {
            if let Some(doc) = row.push(chosen[b] as u32, self.delimiters, self.max_doc_tokens) {
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
                    let tok = self.how.choose(&logits[j * v..][..v], &mut rngs[i], &mut scratch);
                    match row.push(tok as u32, self.delimiters, self.max_doc_tokens) {
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
fn keep_in_order<T>(items: Vec<T>, keep: &[usize]) -> (Vec<T>, Vec<T>) {
    let mut old: Vec<Option<T>> = items.into_iter().map(Some).collect();
    let kept = keep.iter().map(|&b| old[b].take().expect("each row is kept at most once")).collect();
    (kept, old.into_iter().flatten().collect())
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
    /// Documents abandoned while they looked unneeded ([`Ledger::unneeded`]), started
    /// again first if they turn out needed: a document's text depends only on its own
    /// random stream, so a restart writes it again exactly.
    restart: std::collections::BTreeSet<u64>,
    /// Tokens decoded for abandoned documents.
    abandoned_tokens: usize,
    /// Corpus tokens of every finished document, sorted (for expected lengths).
    finished_lengths: Vec<usize>,
    /// Standard deviations of caution before starting a document ([`Ledger::should_start`]).
    margin: f64,
}

/// A document in flight is abandoned once the documents before it already hold this
/// many times the target (by their current lengths, which only grow; the margin covers
/// re-encoding, which can write a document in fewer tokens than were sampled).
const UNNEEDED_OVER_TARGET: f64 = 1.25;

impl Ledger {
    /// The document to start next: an abandoned one first, else a new one.
    fn next_document(&mut self) -> u64 {
        match self.restart.pop_first() {
            Some(j) => j,
            None => {
                self.next += 1;
                self.next - 1
            }
        }
    }

    /// Which of the documents in flight (`(row, document, tokens so far)`) are very
    /// likely beyond the corpus: the documents before them (written, finished or in
    /// flight, at their current lengths) already hold [`UNNEEDED_OVER_TARGET`] times
    /// the target. Without this a model that never ends its documents keeps a whole
    /// batch decoding to the length cap for the two or three documents the corpus
    /// needs (61 documents of 31,640 tokens decoded for nothing per corpus, measured);
    /// with it, rows are abandoned as the documents before them grow. Only speed
    /// depends on it: an abandoned document that turns out needed starts again.
    fn unneeded(&self, in_flight: &[(usize, u64, usize)]) -> Vec<usize> {
        let mut before: Vec<(u64, usize)> = self.waiting.iter().map(|(&j, d)| (j, d.corpus_tokens())).collect();
        before.extend(in_flight.iter().map(|&(_, j, l)| (j, l)));
        before.sort_unstable();
        let limit = UNNEEDED_OVER_TARGET * self.target as f64;
        let (mut sum, mut at) = (self.written_tokens, 0);
        let mut out = Vec::new();
        let mut rows: Vec<&(usize, u64, usize)> = in_flight.iter().collect();
        rows.sort_unstable_by_key(|r| r.1);
        for &&(row, j, _) in &rows {
            while at < before.len() && before[at].0 < j {
                sum += before[at].1;
                at += 1;
            }
            if sum as f64 >= limit {
                out.push(row);
            }
        }
        out
    }

    fn finish(&mut self, tokens: usize) {
        let at = self.finished_lengths.partition_point(|&l| l < tokens);
        self.finished_lengths.insert(at, tokens);
    }

    /// Steps per [`Decoder::decode_block`]. A row whose document ends waits, idle, for
    /// the end of the block before its next document starts: with documents ending at a
    /// rate h per decoded token, a block of k steps idles about k·h/2 of its row-steps.
    /// k = 1/(32h) keeps that near 1.6%, at most 64 steps. h is estimated as documents
    /// finished over every token decoded so far (`in_flight` holds the tokens of the
    /// documents still running), the estimate of a geometric rate that counts the long
    /// documents still running (finished ones alone are the short ones early on); before
    /// any has finished, as if one just had. Only speed depends on it.
    fn block_steps(&self, in_flight: usize) -> usize {
        let decoded = self.finished_lengths.iter().sum::<usize>() + in_flight;
        (decoded / (32 * self.finished_lengths.len().max(1))).clamp(1, BLOCK_STEPS_MAX)
    }

    /// Whether document `self.next` is likely needed: the documents before it are
    /// expected to hold fewer than the target. Each unfinished one (`in_flight` holds
    /// their current corpus tokens) counts at its expected final length given its
    /// current one. Only speed depends on this guess: a document that turns out
    /// unneeded is discarded (decoded for nothing), and one that turns out needed is
    /// started later (the corpus waits for it).
    ///
    /// With a `margin` of z, the documents before it must be expected to fall short by
    /// more than z standard deviations of their remaining lengths, each unfinished
    /// document's remaining length counted with a standard deviation equal to its
    /// expected value (as for lengths that end at random).
    fn should_start(&self, in_flight: &[usize]) -> bool {
        let (mut expected, mut variance) = (0.0, 0.0);
        for &l in in_flight {
            let e = self.expected_length(l, in_flight);
            expected += e;
            variance += (e - l as f64).powi(2);
        }
        (self.written_tokens + self.waiting_tokens) as f64 + expected + self.margin * variance.sqrt()
            < self.target as f64
    }

    /// Expected final length of a document that has `l` tokens so far: `l` plus the
    /// mean excess over `l` of the documents seen to grow past `l`, that is their tokens
    /// beyond `l` (finished ones and those still running) over the finished ones among
    /// them. Lengths ending as if at random (geometric) then give `l` plus the overall
    /// mean, lengths bunched around a typical value give about that value. Before any
    /// document that long has finished: `l` plus the mean over all documents.
    fn expected_length(&self, l: usize, in_flight: &[usize]) -> f64 {
        let running_beyond = |from: usize| in_flight.iter().map(|&x| x.saturating_sub(from)).sum::<usize>();
        let at = self.finished_lengths.partition_point(|&x| x <= l);
        let longer = &self.finished_lengths[at..];
        if !longer.is_empty() {
            let beyond = longer.iter().map(|&x| x - l).sum::<usize>() + running_beyond(l);
            return l as f64 + beyond as f64 / longer.len() as f64;
        }
        // Mean length by "total time on test": every token decoded so far over the
        // documents finished, which counts the long documents still running (a mean of
        // finished documents alone is biased short early on).
        let finished = self.finished_lengths.len();
        let decoded = self.finished_lengths.iter().sum::<usize>() + in_flight.iter().sum::<usize>();
        l as f64 + if finished > 0 { decoded as f64 / finished as f64 } else { 0.0 }
    }
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
    if req.n_tokens == 0 {
        bail!("--n-tokens must be positive");
    }
    if req.batch_size == 0 || req.max_doc_tokens == 0 {
        bail!("batch size and maximum document length must be positive");
    }
    let t0 = Instant::now();
    let bar = crate::progress::work(req.n_tokens as u64, req.progress);
    let mut stats = SampleStats {
        documents: 0,
        tokens: 0,
        sampled_tokens: 0,
        truncated_documents: 0,
        truncation_share: 0.0,
        mean_document_tokens: 0.0,
        discarded_tokens: 0,
        reencodes: 0,
        steps: 0,
        seconds: 0.0,
        tokens_per_second: 0.0,
        time: SampleTimes::default(),
    };
    let mut ledger = Ledger {
        target: req.n_tokens,
        written: 0,
        written_tokens: 0,
        waiting: Default::default(),
        waiting_tokens: 0,
        next: 0,
        restart: Default::default(),
        abandoned_tokens: 0,
        finished_lengths: Vec::new(),
        margin: match Engine::for_device(device) {
            // A row costs about its share of a step's arithmetic and a step has little
            // fixed cost: a document started for nothing costs its tokens, one started
            // late costs little. Measured at the default shape: 4 leaves about 2% of D
            // decoded for nothing (0 left 24%) without lengthening the run in steps.
            Engine::Native => 4.0,
            // A step costs about the same at any batch: keep the batch full.
            Engine::Libtorch => 0.0,
        },
    };
    // Row b of the decoder writes document `docs[b]` with random stream `rngs[b]`.
    let mut decoder = Decoder::new(model, 0, delimiters, req.max_doc_tokens, device);
    let mut docs: Vec<u64> = Vec::new();
    let mut rngs: Vec<ChaCha8Rng> = Vec::new();
    // Corpus tokens of each row's document so far (its tokens plus the end-of-text it
    // would end with), the scheduler's view of the documents in flight.
    let in_flight = |decoder: &Decoder, skip: &[usize]| -> Vec<usize> {
        (0..decoder.batch()).filter(|b| !skip.contains(b)).map(|b| decoder.doc_len(b) + 1).collect()
    };
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
                    decoder.advance(&chosen)
                }
            };
            // With no document finished, the steps below only look for rows to abandon.
            let mut free = Vec::new();
            for (b, doc) in finished {
                ledger.finish(doc.corpus_tokens());
                ledger.waiting_tokens += doc.corpus_tokens();
                ledger.waiting.insert(docs[b], doc);
                free.push(b);
            }
            // Hand documents to the writer in index order, up to the target.
            while let Some(doc) = ledger.waiting.remove(&ledger.written) {
                ledger.waiting_tokens -= doc.corpus_tokens();
                let written = write(&doc)?;
                ledger.written += 1;
                ledger.written_tokens += written;
                stats.documents += 1;
                stats.tokens += written;
                stats.sampled_tokens += doc.corpus_tokens();
                stats.truncated_documents += doc.truncated as usize;
                bar.set_position(stats.tokens.min(req.n_tokens) as u64);
                if stats.tokens >= req.n_tokens {
                    // Documents ≥ M, finished or not, are not part of the corpus.
                    stats.discarded_tokens = ledger.waiting.values().map(|d| d.tokens.len()).sum::<usize>()
                        + (0..decoder.batch()).filter(|b| !free.contains(b)).map(|b| decoder.doc_len(b)).sum::<usize>()
                        + ledger.abandoned_tokens;
                    return Ok(());
                }
            }
            // A freed row takes the next document if it is likely needed, else retires.
            let mut lengths = in_flight(&decoder, &free);
            let mut retire = Vec::new();
            for &b in &free {
                if ledger.should_start(&lengths) {
                    lengths.push(1);
                    let j = ledger.next_document();
                    docs[b] = j;
                    rngs[b] = document_rng(req.seed, j);
                } else {
                    retire.push(b);
                }
            }
            // Rows whose documents are very likely beyond the corpus stop decoding.
            let rows: Vec<(usize, u64, usize)> = (0..decoder.batch())
                .filter(|b| !free.contains(b))
                .map(|b| (b, docs[b], decoder.doc_len(b) + 1))
                .collect();
            for b in ledger.unneeded(&rows) {
                ledger.abandoned_tokens += decoder.doc_len(b);
                ledger.restart.insert(docs[b]);
                retire.push(b);
            }
            if !retire.is_empty() {
                let keep: Vec<usize> = (0..decoder.batch()).filter(|b| !retire.contains(b)).collect();
                decoder.reshape(&keep, 0);
                docs = keep.iter().map(|&b| docs[b]).collect();
                rngs = keep_in_order(std::mem::take(&mut rngs), &keep).0;
            }
        }
    })?;
    bar.finish_and_clear();
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
    Ok(stats)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The kept set of top-k then top-p, by a full sort in double precision.
    fn kept_by_sorting(row: &[f32], t: f32, top_k: Option<usize>, top_p: Option<f64>) -> Vec<bool> {
        let z: Vec<f64> = row.iter().map(|&l| (l / t) as f64).collect();
        let mut order: Vec<usize> = (0..z.len()).collect();
        order.sort_by(|&a, &b| z[b].total_cmp(&z[a]).then(a.cmp(&b)));
        let mut keep = vec![true; z.len()];
        if let Some(k) = top_k {
            let kth = z[order[k - 1]];
            for (i, &zi) in z.iter().enumerate() {
                keep[i] = zi >= kth;
            }
        }
        if let Some(p) = top_p {
            let m = z.iter().cloned().fold(f64::MIN, f64::max);
            let w: Vec<f64> = z.iter().zip(&keep).map(|(&zi, &k)| if k { (zi - m).exp() } else { 0.0 }).collect();
            let total: f64 = w.iter().sum();
            let mut before = 0.0;
            for &i in &order {
                if keep[i] && before >= p {
                    keep[i] = false;
                } else if keep[i] {
                    before += w[i] / total;
                }
            }
        }
        keep
    }

    /// The host filters keep exactly the tokens a full sort keeps: peaked and flat rows,
    /// rows with many tied logits (one bucket holds them all) and every filter setting.
    #[test]
    fn host_filters_keep_what_a_full_sort_keeps() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let v = 3000;
        let mut rows: Vec<Vec<f32>> = Vec::new();
        for spread in [0.01f32, 1.0, 4.0, 12.0] {
            rows.push((0..v).map(|_| spread * rng.gen::<f32>()).collect());
        }
        rows.push((0..v).map(|i| (i % 7) as f32).collect()); // ties everywhere
        rows.push((0..v).map(|i| if i == 17 { 30.0 } else { 0.0 }).collect()); // one token holds nearly all mass
        for row in &rows {
            for (t, k, p) in [
                (1.0, None, Some(0.9)),
                (0.7, Some(500), Some(0.5)),
                (1.5, Some(40), None),
                (1.0, None, Some(0.999)),
                (1.0, Some(1), Some(0.3)),
            ] {
                let f = HostFilter { temperature: t, top_k: k, top_p: p };
                let mut s = Scratch { z: vec![0.0; v], order: Vec::new(), weights: vec![0.0; v] };
                filtered_weights(row, f, &mut s);
                let want = kept_by_sorting(row, t, k, p);
                let got: Vec<bool> = s.weights.iter().map(|&w| w > 0.0).collect();
                let differ = got.iter().zip(&want).filter(|(a, b)| a != b).count();
                assert_eq!(differ, 0, "T={t} k={k:?} p={p:?}: {differ} tokens kept differently");
            }
        }
    }
}
