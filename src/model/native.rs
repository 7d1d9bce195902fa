//! The sampler's decoding step on the CPU, written out in Rust.
//!
//! At the sampler's shapes (a few to a few dozen rows, one new token each, models of
//! a few million parameters) a libtorch forward pass is mostly per-operator overhead:
//! about fifty library calls per step, each costing more than its arithmetic, and a
//! thread pool woken for every one of them. Here the whole step runs as plain loops
//! over weights copied once per corpus, rows split between the threads once per step
//! (rows are independent while decoding, so the threads meet once, not once per
//! operator).
//!
//! The arithmetic is the model's (f32 throughout, the same norms, activations, scaling
//! and softmax); only the order of additions differs, as between libtorch's own
//! kernels. Every row is computed with the same sequence of operations whatever rows
//! share its step and whatever thread runs it, so a row's logits do not depend on the
//! batch or the thread count, bit for bit.
//!
//! A row's step may feed several tokens (positions `start..start + n`): a cache rebuild
//! feeds the kept half context with the row's next token, and only the last token's
//! logits are computed. Tests compare the logits with the model's own forward pass
//! over the same context.
use crate::vecmath::{exp, exp_in_place, max};
use tch::{Device, Kind, Tensor};

/// Output columns per panel of a [`Packed`] weight (two 8-lane vectors).
const NR: usize = 16;

/// A linear layer's weight (`n` outputs × `k` inputs, as `torch.nn.Linear` stores it)
/// repacked for [`linear`]: panels of [`NR`] output columns, each `k × NR`, so that a
/// panel stays in the first-level cache while every row is multiplied with it.
pub struct Packed {
    n: usize,
    k: usize,
    data: Vec<f32>,
    bias: Option<Vec<f32>>,
}

impl Packed {
    /// Packs `weight` (`n × k`, row-major) and the optional `bias` (`n`).
    pub fn new(weight: &[f32], n: usize, k: usize, bias: Option<&[f32]>) -> Self {
        assert_eq!(weight.len(), n * k, "weight of {n} × {k}");
        let panels = n.div_ceil(NR);
        let mut data = vec![0.0; panels * k * NR];
        for col in 0..n {
            let (p, j) = (col / NR, col % NR);
            for kk in 0..k {
                data[(p * k + kk) * NR + j] = weight[col * k + kk];
            }
        }
        Self { n, k, data, bias: bias.map(<[f32]>::to_vec) }
    }

    /// Output features.
    pub fn outputs(&self) -> usize {
        self.n
    }
}

/// `out (m × n) = x (m × k) · Wᵀ + b`, row-major. Each output is one chain of fused
/// multiply-adds over `k` in order, then the bias: the same bits for a row whatever
/// other rows are multiplied with it.
pub fn linear(x: &[f32], m: usize, w: &Packed, out: &mut [f32]) {
    assert!(x.len() >= m * w.k && out.len() >= m * w.n, "linear: buffers too small");
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features; the sizes were checked above.
        unsafe { avx2::linear(x, m, w, out) };
        add_bias(m, w, out);
        return;
    }
    for r in 0..m {
        for col in 0..w.n {
            let (p, j) = (col / NR, col % NR);
            let mut acc = 0.0f32;
            for kk in 0..w.k {
                acc = x[r * w.k + kk].mul_add(w.data[(p * w.k + kk) * NR + j], acc);
            }
            out[r * w.n + col] = acc;
        }
    }
    add_bias(m, w, out);
}

fn add_bias(m: usize, w: &Packed, out: &mut [f32]) {
    if let Some(b) = &w.bias {
        for row in out[..m * w.n].chunks_exact_mut(w.n) {
            for (o, &bb) in row.iter_mut().zip(b) {
                *o += bb;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Packed, NR};
    use std::arch::x86_64::*;

    /// Panels two at a time: four rows per tile take one panel (8 accumulators), the
    /// one to three rows left over take both (4 to 12), so even a single row keeps the
    /// multiply-add units busy. Every output is the same chain either way.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn linear(x: &[f32], m: usize, w: &Packed, out: &mut [f32]) {
        let panels = w.n.div_ceil(NR);
        let mut p = 0;
        while p < panels {
            let pair = p + 1 < panels;
            let mut r = 0;
            while r + 4 <= m {
                tile::<4, 2>(x, r, w, p, out);
                if pair {
                    tile::<4, 2>(x, r, w, p + 1, out);
                }
                r += 4;
            }
            match (m - r, pair) {
                (0, _) => {}
                (1, true) => tile::<1, 4>(x, r, w, p, out),
                (2, true) => tile::<2, 4>(x, r, w, p, out),
                (3, true) => tile::<3, 4>(x, r, w, p, out),
                (1, false) => tile::<1, 2>(x, r, w, p, out),
                (2, false) => tile::<2, 2>(x, r, w, p, out),
                (_, false) => tile::<3, 2>(x, r, w, p, out),
                _ => unreachable!(),
            }
            p += if pair { 2 } else { 1 };
        }
    }

    /// Scaled scores of the first `out.len()` slots from transposed keys (`keys[d ·
    /// slots + slot]`): 32 slots at a time in four chains, then 8 at a time.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn scores(q: &[f32], keys: &[f32], slots: usize, scale: f32, out: &mut [f32]) {
        let n = out.len();
        let k = keys.as_ptr();
        let sc = _mm256_set1_ps(scale);
        let mut lanes = [0f32; 32];
        let mut b = 0;
        while b < n && b + 32 <= slots {
            let mut acc = [_mm256_setzero_ps(); 4];
            for (d, &qd) in q.iter().enumerate() {
                let qv = _mm256_set1_ps(qd);
                let row = k.add(d * slots + b);
                for (j, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(qv, _mm256_loadu_ps(row.add(8 * j)), *a);
                }
            }
            for (j, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(lanes.as_mut_ptr().add(8 * j), _mm256_mul_ps(*a, sc));
            }
            let take = (n - b).min(32);
            out[b..b + take].copy_from_slice(&lanes[..take]);
            b += 32;
        }
        while b < n && b + 8 <= slots {
            let mut acc = _mm256_setzero_ps();
            for (d, &qd) in q.iter().enumerate() {
                acc = _mm256_fmadd_ps(_mm256_set1_ps(qd), _mm256_loadu_ps(k.add(d * slots + b)), acc);
            }
            _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_mul_ps(acc, sc));
            let take = (n - b).min(8);
            out[b..b + take].copy_from_slice(&lanes[..take]);
            b += 8;
        }
        if b < n {
            for (i, o) in out[b..n].iter_mut().enumerate() {
                let mut acc = 0.0;
                for (d, &qd) in q.iter().enumerate() {
                    acc += qd * keys[d * slots + b + i];
                }
                *o = acc * scale;
            }
        }
    }

    /// `out = Σ_slot w[slot] · values[slot]` (values `slots × hs`): up to 32 dimensions
    /// per pass over the slots, each eight-dimension vector with even and odd slots in
    /// separate chains (so up to eight chains in flight).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn weigh(w: &[f32], values: &[f32], out: &mut [f32]) {
        let hs = out.len();
        let full = hs / 8 * 8;
        let mut c = 0;
        while c < full {
            let vectors = ((full - c) / 8).min(4);
            match vectors {
                4 => weigh_pass::<4>(w, values, hs, c, out),
                3 => weigh_pass::<3>(w, values, hs, c, out),
                2 => weigh_pass::<2>(w, values, hs, c, out),
                _ => weigh_pass::<1>(w, values, hs, c, out),
            }
            c += 8 * vectors;
        }
        for (d, o) in out.iter_mut().enumerate().skip(c) {
            *o = w.iter().enumerate().map(|(j, &wj)| wj * values[j * hs + d]).sum();
        }
    }

    /// Dimensions `c..c + 8·V` of [`weigh`].
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // lane indices over register arrays
    unsafe fn weigh_pass<const V: usize>(w: &[f32], values: &[f32], hs: usize, c: usize, out: &mut [f32]) {
        let n = w.len();
        let v = values.as_ptr().add(c);
        let (mut even, mut odd) = ([_mm256_setzero_ps(); V], [_mm256_setzero_ps(); V]);
        let mut j = 0;
        while j + 1 < n {
            let (w0, w1) = (_mm256_set1_ps(w[j]), _mm256_set1_ps(w[j + 1]));
            for i in 0..V {
                even[i] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(v.add(j * hs + 8 * i)), even[i]);
                odd[i] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(v.add((j + 1) * hs + 8 * i)), odd[i]);
            }
            j += 2;
        }
        if j < n {
            let w0 = _mm256_set1_ps(w[j]);
            for i in 0..V {
                even[i] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(v.add(j * hs + 8 * i)), even[i]);
            }
        }
        for i in 0..V {
            _mm256_storeu_ps(out.as_mut_ptr().add(c + 8 * i), _mm256_add_ps(even[i], odd[i]));
        }
    }

    /// Rows `r0..r0 + MR` times `NV / 2` panels from panel `p`.
    #[inline(always)]
    unsafe fn tile<const MR: usize, const NV: usize>(x: &[f32], r0: usize, w: &Packed, p: usize, out: &mut [f32]) {
        let (k, n) = (w.k, w.n);
        let mut acc = [[_mm256_setzero_ps(); NV]; MR];
        let xs = x.as_ptr().add(r0 * k);
        let base = w.data.as_ptr().add(p * k * NR);
        for kk in 0..k {
            let mut b = [_mm256_setzero_ps(); NV];
            for (j, bj) in b.iter_mut().enumerate() {
                *bj = _mm256_loadu_ps(base.add((j / 2) * k * NR + kk * NR + (j % 2) * 8));
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let a = _mm256_set1_ps(*xs.add(r * k + kk));
                for (aj, &bj) in row.iter_mut().zip(&b) {
                    *aj = _mm256_fmadd_ps(a, bj, *aj);
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            let dst = out.as_mut_ptr().add((r0 + r) * n);
            for (j, &v) in row.iter().enumerate() {
                let col = p * NR + j * 8;
                if col + 8 <= n {
                    _mm256_storeu_ps(dst.add(col), v);
                } else if col < n {
                    let mut lanes = [0f32; 8];
                    _mm256_storeu_ps(lanes.as_mut_ptr(), v);
                    std::ptr::copy_nonoverlapping(lanes.as_ptr(), dst.add(col), n - col);
                }
            }
        }
    }
}

/// LayerNorm (with optional bias) or RMSNorm, over the model width.
enum Norm {
    Layer { weight: Vec<f32>, bias: Option<Vec<f32>> },
    Rms { weight: Vec<f32> },
}

impl Norm {
    /// `out = norm(x)` for each row of width `weight.len()`.
    #[inline(always)]
    fn apply(&self, eps: f32, x: &[f32], out: &mut [f32]) {
        match self {
            Norm::Layer { weight, bias } => {
                let c = weight.len();
                for (xr, or) in x.chunks_exact(c).zip(out.chunks_exact_mut(c)) {
                    let mean = sum(xr) / c as f32;
                    let var = sum_sq(xr, mean) / c as f32;
                    let rstd = 1.0 / (var + eps).sqrt();
                    // The bias (or none) chosen outside the loop, so that it vectorises.
                    match bias {
                        Some(b) => {
                            for (((o, &v), &g), &bb) in or.iter_mut().zip(xr).zip(weight).zip(b) {
                                *o = (v - mean) * rstd * g + bb;
                            }
                        }
                        None => {
                            for ((o, &v), &g) in or.iter_mut().zip(xr).zip(weight) {
                                *o = (v - mean) * rstd * g + 0.0;
                            }
                        }
                    }
                }
            }
            Norm::Rms { weight } => {
                let c = weight.len();
                for (xr, or) in x.chunks_exact(c).zip(out.chunks_exact_mut(c)) {
                    let ms = sum_sq(xr, 0.0) / c as f32;
                    let r = 1.0 / (ms + eps).sqrt();
                    for ((o, &v), &g) in or.iter_mut().zip(xr).zip(weight) {
                        *o = v * r * g;
                    }
                }
            }
        }
    }
}

/// How positions enter: GPT-2's learned table, or Llama's rotary tables.
enum Positions {
    /// `wpe` (block × C), added to the token embedding.
    Learned(Vec<f32>),
    /// cos and sin (block × hs), halves repeated, as the model's own tables.
    Rotary { cos: Vec<f32>, sin: Vec<f32> },
}

/// The MLP: GPT-2's GELU (tanh form) or Llama's SwiGLU (gate and up fused: `up`
/// gives 2·H columns, the gate's first).
#[derive(Clone, Copy, PartialEq)]
enum Activation {
    GeluTanh,
    SwiGlu,
}

struct Layer {
    norm1: Norm,
    /// Queries, keys and values fused: (nh + 2·nkv)·hs outputs.
    qkv: Packed,
    proj: Packed,
    norm2: Norm,
    up: Packed,
    down: Packed,
}

/// A model's weights, copied from libtorch for the CPU decoding step.
pub struct NativeModel {
    width: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    hidden: usize,
    vocab: usize,
    slots: usize,
    eps: f32,
    activation: Activation,
    positions: Positions,
    embed: Vec<f32>,
    layers: Vec<Layer>,
    norm_f: Norm,
    head: Packed,
}

/// One row's part of a step: `tokens` at positions `start..start + tokens.len()`
/// (all below the context length), written into the row's cache; the logits of the
/// last one are computed.
pub struct RowStep<'a> {
    pub tokens: &'a [i64],
    pub start: usize,
    pub cache: &'a mut [f32],
}

/// The f32 elements of a CPU copy of `t`.
fn host(t: &Tensor) -> Vec<f32> {
    let flat = t.detach().to_device(Device::Cpu).to_kind(Kind::Float).contiguous().view([-1]);
    Vec::<f32>::try_from(&flat).expect("an f32 CPU tensor converts to a vector")
}

/// The parts of a layer as libtorch holds them, for [`NativeModel::new`].
pub(super) struct LayerTensors<'a> {
    pub norm1: (&'a Tensor, Option<&'a Tensor>),
    /// The query, key and value projections' weights (one fused tensor for GPT-2) and biases.
    pub qkv: Vec<(&'a Tensor, Option<&'a Tensor>)>,
    pub proj: (&'a Tensor, Option<&'a Tensor>),
    pub norm2: (&'a Tensor, Option<&'a Tensor>),
    /// GPT-2: `c_fc`; Llama: gate then up.
    pub up: Vec<(&'a Tensor, Option<&'a Tensor>)>,
    pub down: (&'a Tensor, Option<&'a Tensor>),
}

/// The parts of a model as libtorch holds them, for [`NativeModel::new`].
pub(super) struct ModelTensors<'a> {
    pub embed: &'a Tensor,
    /// GPT-2's `wpe`; Llama has none and gives its rotary tables (cos, sin) instead.
    pub learned_positions: Option<&'a Tensor>,
    pub rotary: Option<(&'a Tensor, &'a Tensor)>,
    pub layers: Vec<LayerTensors<'a>>,
    pub norm_f: (&'a Tensor, Option<&'a Tensor>),
    pub head: &'a Tensor,
}

fn pack(parts: &[(&Tensor, Option<&Tensor>)]) -> Packed {
    let k = parts[0].0.size()[1] as usize;
    let (mut weight, mut bias, mut any_bias) = (Vec::new(), Vec::new(), false);
    for (w, b) in parts {
        let n = w.size()[0] as usize;
        weight.extend(host(w));
        match b {
            Some(b) => {
                bias.extend(host(b));
                any_bias = true;
            }
            None => bias.extend(std::iter::repeat_n(0.0, n)),
        }
    }
    let n = weight.len() / k;
    Packed::new(&weight, n, k, any_bias.then_some(bias.as_slice()))
}

impl NativeModel {
    pub(super) fn new(cfg: &crate::config::ModelConfig, t: ModelTensors) -> Self {
        let rms = matches!(cfg.arch, crate::config::Arch::Llama);
        let norm = |(w, b): (&Tensor, Option<&Tensor>)| {
            if rms {
                Norm::Rms { weight: host(w) }
            } else {
                Norm::Layer { weight: host(w), bias: b.map(host) }
            }
        };
        let positions = match (t.learned_positions, t.rotary) {
            (Some(wpe), _) => Positions::Learned(host(wpe)),
            (None, Some((cos, sin))) => Positions::Rotary { cos: host(cos), sin: host(sin) },
            (None, None) => unreachable!("a model has positions"),
        };
        let layers = t
            .layers
            .into_iter()
            .map(|l| Layer {
                norm1: norm(l.norm1),
                qkv: pack(&l.qkv),
                proj: pack(&[l.proj]),
                norm2: norm(l.norm2),
                up: pack(&l.up),
                down: pack(&[l.down]),
            })
            .collect();
        Self {
            width: cfg.n_embd as usize,
            heads: cfg.n_head as usize,
            kv_heads: cfg.kv_heads() as usize,
            head_dim: cfg.head_dim() as usize,
            hidden: cfg.mlp_hidden() as usize,
            vocab: cfg.vocab_size as usize,
            slots: cfg.block_size as usize,
            eps: cfg.norm_eps as f32,
            activation: if rms { Activation::SwiGlu } else { Activation::GeluTanh },
            positions,
            embed: host(t.embed),
            layers,
            norm_f: norm(t.norm_f),
            head: pack(&[(t.head, None)]),
        }
    }

    /// Floats of one row's cache: keys and values of every layer, (layer, k|v, nkv,
    /// slots, hs).
    pub fn cache_len(&self) -> usize {
        self.layers.len() * 2 * self.kv_heads * self.slots * self.head_dim
    }

    /// Vocabulary size (logits per row).
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// Context length (cache slots per row).
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Runs `rows`, writing the logits of each row's last token into `logits`
    /// (rows × V), the rows split between `pool`'s threads in contiguous groups of
    /// about equal work.
    pub fn step(&self, rows: &mut [RowStep], logits: &mut [f32], pool: Option<&rayon::ThreadPool>) {
        assert_eq!(logits.len(), rows.len() * self.vocab, "one row of logits per row");
        for r in rows.iter() {
            assert!(!r.tokens.is_empty() && r.start + r.tokens.len() <= self.slots, "positions within the context");
            assert_eq!(r.cache.len(), self.cache_len(), "a row's cache");
        }
        let threads = pool.map_or(1, |p| p.current_num_threads()).min(rows.len()).max(1);
        let pool = match pool {
            Some(p) if threads > 1 => p,
            _ => return self.run(rows, logits),
        };
        // Work of a row: its tokens through the stack plus its logits (the output head
        // and last layer cost about as much as a token's pass through the stack).
        let work: Vec<usize> = rows.iter().map(|r| r.tokens.len() + 1).collect();
        let total: usize = work.iter().sum();
        let mut groups: Vec<(&mut [RowStep], &mut [f32])> = Vec::with_capacity(threads);
        let (mut rest_rows, mut rest_logits) = (rows, logits);
        let (mut done, mut taken) = (0usize, 0usize);
        for g in 0..threads {
            let left = threads - g;
            let mut n = 0;
            if left == 1 {
                n = rest_rows.len();
            } else {
                let target = (total * (g + 1)).div_ceil(threads);
                while n < rest_rows.len() - (left - 1) && (n == 0 || done + work[taken + n] <= target) {
                    done += work[taken + n];
                    n += 1;
                }
            }
            taken += n;
            let (a, b) = std::mem::take(&mut rest_rows).split_at_mut(n);
            let (la, lb) = std::mem::take(&mut rest_logits).split_at_mut(n * self.vocab);
            groups.push((a, la));
            rest_rows = b;
            rest_logits = lb;
        }
        pool.scope(|s| {
            let mut groups = groups.into_iter();
            let first = groups.next();
            for (rows, logits) in groups {
                s.spawn(move |_| self.run(rows, logits));
            }
            if let Some((rows, logits)) = first {
                self.run(rows, logits);
            }
        });
    }

    /// One thread's rows.
    fn run(&self, rows: &mut [RowStep], logits: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { self.run_avx2(rows, logits) };
        }
        self.run_body(rows, logits)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run_avx2(&self, rows: &mut [RowStep], logits: &mut [f32]) {
        self.run_body(rows, logits)
    }

    #[inline(always)]
    fn run_body(&self, rows: &mut [RowStep], logits: &mut [f32]) {
        let (c, hs, nh, nkv) = (self.width, self.head_dim, self.heads, self.kv_heads);
        let qkv_width = (nh + 2 * nkv) * hs;
        // Every token of the step: its row and its position.
        let mut owner: Vec<usize> = Vec::new();
        let mut pos: Vec<usize> = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            owner.extend(std::iter::repeat_n(i, r.tokens.len()));
            pos.extend(r.start..r.start + r.tokens.len());
        }
        let mut m = owner.len();
        let mut x = self.embed_step(rows, m);
        let mut h = vec![0f32; m * c];
        let mut qkv = vec![0f32; m * qkv_width];
        let mut att = vec![0f32; m * nh * hs];
        let up_width = self.layers.first().map_or(0, |l| l.up.outputs());
        let mut up = vec![0f32; m * up_width];
        let mut act = vec![0f32; m * self.hidden];
        let mut scores = vec![0f32; self.slots];
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            layer.norm1.apply(self.eps, &x[..m * c], &mut h[..m * c]);
            linear(&h, m, &layer.qkv, &mut qkv);
            if let Positions::Rotary { cos, sin } = &self.positions {
                for (t, &p) in pos.iter().enumerate() {
                    let (cos, sin) = (&cos[p * hs..][..hs], &sin[p * hs..][..hs]);
                    for head in qkv[t * qkv_width..][..(nh + nkv) * hs].chunks_exact_mut(hs) {
                        rotate(head, cos, sin);
                    }
                }
            }
            // Keys and values into the rows' caches, all before any token attends.
            self.store_kv(rows, l, &owner, &pos, &qkv);
            if l == last {
                // Only each row's last token goes on to the logits.
                let mut keep = Vec::with_capacity(rows.len());
                let mut end = 0;
                for r in rows.iter() {
                    end += r.tokens.len();
                    keep.push(end - 1);
                }
                for (i, &t) in keep.iter().enumerate() {
                    x.copy_within(t * c..(t + 1) * c, i * c);
                    qkv.copy_within(t * qkv_width..(t + 1) * qkv_width, i * qkv_width);
                }
                owner = keep.iter().map(|&t| owner[t]).collect();
                pos = keep.iter().map(|&t| pos[t]).collect();
                m = keep.len();
            }
            self.attend(rows, l, &owner[..m], &pos[..m], &qkv, &mut scores, &mut att);
            linear(&att, m, &layer.proj, &mut h);
            add_into(&mut x[..m * c], &h[..m * c]);
            layer.norm2.apply(self.eps, &x[..m * c], &mut h[..m * c]);
            linear(&h, m, &layer.up, &mut up);
            let hidden = self.hidden;
            match self.activation {
                Activation::GeluTanh => {
                    gelu_tanh(&up[..m * hidden], &mut act[..m * hidden]);
                }
                Activation::SwiGlu => {
                    for t in 0..m {
                        let (gate, upv) = up[t * 2 * hidden..][..2 * hidden].split_at(hidden);
                        let dst = &mut act[t * hidden..][..hidden];
                        silu(gate, dst);
                        for (d, &u) in dst.iter_mut().zip(upv) {
                            *d *= u;
                        }
                    }
                }
            }
            linear(&act, m, &layer.down, &mut h);
            add_into(&mut x[..m * c], &h[..m * c]);
        }
        self.norm_f.apply(self.eps, &x[..m * c], &mut h[..m * c]);
        linear(&h, m, &self.head, logits);
    }

    /// The step's tokens' embeddings (with learned positions added), one row of width
    /// C per token, rows in order.
    #[inline(always)]
    fn embed_step(&self, rows: &[RowStep], m: usize) -> Vec<f32> {
        let c = self.width;
        let mut x = vec![0f32; m * c];
        let mut at = 0;
        for r in rows.iter() {
            for (i, &tok) in r.tokens.iter().enumerate() {
                let tok = tok as usize;
                assert!(tok < self.vocab, "token id {tok} outside the vocabulary");
                let dst = &mut x[at * c..][..c];
                dst.copy_from_slice(&self.embed[tok * c..][..c]);
                if let Positions::Learned(wpe) = &self.positions {
                    for (d, &p) in dst.iter_mut().zip(&wpe[(r.start + i) * c..][..c]) {
                        *d += p;
                    }
                }
                at += 1;
            }
        }
        x
    }

    /// Layer `l`'s keys and values of every token of the step into its row's cache.
    /// A row's tokens are consecutive, at consecutive positions: each run is stored at
    /// once, a key dimension's positions side by side.
    #[inline(always)]
    fn store_kv(&self, rows: &mut [RowStep], l: usize, owner: &[usize], pos: &[usize], qkv: &[f32]) {
        let (hs, nh, nkv) = (self.head_dim, self.heads, self.kv_heads);
        let qkv_width = (nh + 2 * nkv) * hs;
        let layer_size = 2 * nkv * self.slots * hs;
        let m = owner.len();
        let mut t = 0;
        while t < m {
            let (row, p) = (owner[t], pos[t]);
            let run = owner[t..].iter().take_while(|&&o| o == row).count();
            let cache = &mut rows[row].cache[l * layer_size..][..layer_size];
            let (keys, values) = cache.split_at_mut(nkv * hs * self.slots);
            let src = &qkv[t * qkv_width..][..run * qkv_width];
            for g in 0..nkv {
                // Keys transposed (hs × slots), so scores vectorise over slots.
                for d in 0..hs {
                    let dst = &mut keys[(g * hs + d) * self.slots + p..][..run];
                    for (i, k) in dst.iter_mut().enumerate() {
                        *k = src[i * qkv_width + (nh + g) * hs + d];
                    }
                }
                for i in 0..run {
                    values[(g * self.slots + p + i) * hs..][..hs]
                        .copy_from_slice(&src[i * qkv_width + (nh + nkv + g) * hs..][..hs]);
                }
            }
            t += run;
        }
    }

    /// Layer `l`'s attention of each token (`owner`, `pos`: its row and position) over
    /// its row's cache, into `att` (heads side by side).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn attend(
        &self,
        rows: &[RowStep],
        l: usize,
        owner: &[usize],
        pos: &[usize],
        qkv: &[f32],
        scores: &mut [f32],
        att: &mut [f32],
    ) {
        let (hs, nh, nkv) = (self.head_dim, self.heads, self.kv_heads);
        let qkv_width = (nh + 2 * nkv) * hs;
        let layer_size = 2 * nkv * self.slots * hs;
        let m = owner.len();
        let scale = 1.0 / (hs as f32).sqrt();
        for t in 0..m {
            let (p, cache) = (pos[t], &rows[owner[t]].cache[l * layer_size..][..layer_size]);
            for head in 0..nh {
                let g = head / (nh / nkv);
                let q = &qkv[t * qkv_width + head * hs..][..hs];
                let keys = &cache[g * hs * self.slots..][..hs * self.slots];
                let values = &cache[(nkv * hs + g * hs) * self.slots..][..(p + 1) * hs];
                let s = &mut scores[..p + 1];
                scores_into(q, keys, self.slots, scale, s);
                let max = max(s);
                for v in s.iter_mut() {
                    *v -= max;
                }
                exp_in_place(s);
                let inv = 1.0 / sum(s);
                let out = &mut att[t * nh * hs + head * hs..][..hs];
                weigh(s, values, out);
                for o in out.iter_mut() {
                    *o *= inv;
                }
            }
        }
    }
}

/// Rotates pairs (i, i + hs/2) of one head: `x·cos + rotate_half(x)·sin`.
#[inline(always)]
fn rotate(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = x.len() / 2;
    let mut out = [0f32; 512];
    let n = x.len();
    assert!(n <= out.len(), "head width up to 512");
    for i in 0..n {
        let rotated = if i < half { -x[i + half] } else { x[i - half] };
        out[i] = x[i] * cos[i] + rotated * sin[i];
    }
    x.copy_from_slice(&out[..n]);
}

#[inline(always)]
fn add_into(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// Sum in eight lanes (the compiler vectorises independent lanes, not one running sum).
#[inline(always)]
fn sum(v: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let mut chunks = v.chunks_exact(8);
    for ch in &mut chunks {
        for i in 0..8 {
            lanes[i] += ch[i];
        }
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// `Σ (v − center)²` in eight lanes.
#[inline(always)]
fn sum_sq(v: &[f32], center: f32) -> f32 {
    let mut lanes = [0f32; 8];
    let mut chunks = v.chunks_exact(8);
    for ch in &mut chunks {
        for i in 0..8 {
            lanes[i] += (ch[i] - center) * (ch[i] - center);
        }
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().map(|&x| (x - center) * (x - center)).sum::<f32>()
}

/// Scaled scores `q·k / √hs` of the first `out.len()` slots, from keys stored
/// transposed (`keys[d · slots + slot]`): eight slots at a time, each score one chain
/// over the head's dimensions in order.
#[inline(always)]
fn scores_into(q: &[f32], keys: &[f32], slots: usize, scale: f32, out: &mut [f32]) {
    assert!(keys.len() >= q.len() * slots && out.len() <= slots);
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features; the sizes were checked above.
        return unsafe { avx2::scores(q, keys, slots, scale, out) };
    }
    scores_plain(q, keys, slots, scale, out)
}

#[inline(always)]
fn scores_plain(q: &[f32], keys: &[f32], slots: usize, scale: f32, out: &mut [f32]) {
    let n = out.len();
    let mut b = 0;
    // Four blocks of eight slots at once: four independent chains.
    while b < n && b + 32 <= slots {
        let mut acc = [[0f32; 8]; 4];
        for (d, &qd) in q.iter().enumerate() {
            let k = &keys[d * slots + b..][..32];
            for (j, a) in acc.iter_mut().enumerate() {
                for i in 0..8 {
                    a[i] += qd * k[8 * j + i];
                }
            }
        }
        for (o, &a) in out[b..].iter_mut().zip(acc.iter().flatten()) {
            *o = a * scale;
        }
        b += 32;
    }
    while b < n {
        let mut acc = [0f32; 8];
        if b + 8 <= slots {
            for (d, &qd) in q.iter().enumerate() {
                let k = &keys[d * slots + b..][..8];
                for i in 0..8 {
                    acc[i] += qd * k[i];
                }
            }
        } else {
            for (d, &qd) in q.iter().enumerate() {
                for (a, &k) in acc.iter_mut().zip(&keys[d * slots + b..(d + 1) * slots]) {
                    *a += qd * k;
                }
            }
        }
        for (o, &a) in out[b..].iter_mut().zip(&acc) {
            *o = a * scale;
        }
        b += 8;
    }
}

/// `out = Σ_slot w[slot] · values[slot]` (values `slots × hs`, row-major): eight
/// dimensions at a time, even and odd slots in separate chains.
#[inline(always)]
fn weigh(w: &[f32], values: &[f32], out: &mut [f32]) {
    assert!(values.len() >= w.len() * out.len());
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features; the sizes were checked above.
        return unsafe { avx2::weigh(w, values, out) };
    }
    weigh_plain(w, values, out)
}

#[inline(always)]
fn weigh_plain(w: &[f32], values: &[f32], out: &mut [f32]) {
    let hs = out.len();
    let mut c = 0;
    while c < hs {
        let width = (hs - c).min(8);
        let (mut even, mut odd) = ([0f32; 8], [0f32; 8]);
        let mut pairs = w.chunks_exact(2);
        for (j, pair) in (&mut pairs).enumerate() {
            let (v0, v1) = (&values[2 * j * hs + c..], &values[(2 * j + 1) * hs + c..]);
            if width == 8 {
                for i in 0..8 {
                    even[i] += pair[0] * v0[i];
                    odd[i] += pair[1] * v1[i];
                }
            } else {
                for i in 0..width {
                    even[i] += pair[0] * v0[i];
                    odd[i] += pair[1] * v1[i];
                }
            }
        }
        if let [last] = pairs.remainder() {
            let v = &values[(w.len() - 1) * hs + c..];
            for i in 0..width {
                even[i] += last * v[i];
            }
        }
        for i in 0..width {
            out[c + i] = even[i] + odd[i];
        }
        c += 8;
    }
}

/// GPT-2's GELU, tanh form: `x/2 · (1 + tanh(√(2/π)·(x + 0.044715·x³)))`, with
/// `1 + tanh(u) = 2 / (1 + e^{−2u})`.
/// Written from `x` into `out` (a copy first would cost more than the arithmetic).
#[inline(always)]
fn gelu_tanh(x: &[f32], out: &mut [f32]) {
    const K: f32 = 0.797_884_6; // √(2/π)
    for (o, &x) in out.iter_mut().zip(x) {
        let u = K * (x + 0.044_715 * x * x * x);
        *o = x / (1.0 + exp(-2.0 * u));
    }
}

/// SiLU: `x · σ(x) = x / (1 + e^{−x})`.
#[inline(always)]
fn silu(x: &[f32], out: &mut [f32]) {
    for (o, &x) in out.iter_mut().zip(x) {
        *o = x / (1.0 + exp(-x));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(x: &[f32], m: usize, w: &[f32], n: usize, k: usize, b: Option<&[f32]>) -> Vec<f64> {
        let mut out = vec![0.0; m * n];
        for r in 0..m {
            for c in 0..n {
                let mut acc = b.map_or(0.0, |b| b[c] as f64);
                for kk in 0..k {
                    acc += x[r * k + kk] as f64 * w[c * k + kk] as f64;
                }
                out[r * n + c] = acc;
            }
        }
        out
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n).map(|i| (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 2001) as f32 / 1000.0 - 1.0).collect()
    }

    /// Every row count from 1 to 9 (all tile shapes) and widths that fill no panel,
    /// one, or leave a partial one, against an f64 product; and a row's outputs are the
    /// same bits whatever rows it is multiplied with.
    #[test]
    fn linear_matches_a_plain_product_and_rows_do_not_depend_on_each_other() {
        for &(n, k) in &[(5usize, 7usize), (16, 24), (45, 32), (96, 96), (33, 1)] {
            let w = values(n * k, 11);
            let b = values(n, 5);
            for bias in [None, Some(b.as_slice())] {
                let packed = Packed::new(&w, n, k, bias);
                for m in 1..=9 {
                    let x = values(m * k, 3 + m as u32);
                    let mut out = vec![f32::NAN; m * n];
                    linear(&x, m, &packed, &mut out);
                    let want = naive(&x, m, &w, n, k, bias);
                    for (o, e) in out.iter().zip(&want) {
                        assert!((*o as f64 - e).abs() < 1e-4 * (1.0 + e.abs()), "n {n} k {k} m {m}: {o} against {e}");
                    }
                    for r in 0..m {
                        let mut alone = vec![0.0; n];
                        linear(&x[r * k..(r + 1) * k], 1, &packed, &mut alone);
                        assert_eq!(alone, out[r * n..(r + 1) * n], "row {r} of {m} alone");
                    }
                }
            }
        }
    }

    #[test]
    fn exp_is_accurate_over_the_softmax_range() {
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let x = -87.0 + 175.0 * i as f64 / 200_000.0;
            let got = exp(x as f32) as f64;
            let want = (x as f32 as f64).exp();
            worst = worst.max((got - want).abs() / want);
        }
        assert!(worst < 5e-7, "relative error {worst}");
        // Subnormal results, as libtorch's exp gives them, then 0.
        for x in [-88.0f32, -95.0, -100.0, -103.0] {
            let want = (x as f64).exp();
            assert!((exp(x) as f64 - want).abs() <= 2e-45 + 1e-6 * want, "exp({x}) = {} against {want}", exp(x));
        }
        assert_eq!(exp(-105.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn activations_match_their_definitions() {
        for i in -400..=400 {
            let x = i as f32 / 40.0;
            let mut g = [0.0];
            gelu_tanh(&[x], &mut g);
            let xd = x as f64;
            let want = 0.5 * xd * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (xd + 0.044715 * xd.powi(3))).tanh());
            assert!((g[0] as f64 - want).abs() < 1e-6 * (1.0 + want.abs()), "gelu({x}) = {} against {want}", g[0]);
            let mut s = [0.0];
            silu(&[x], &mut s);
            let want = xd / (1.0 + (-xd).exp());
            assert!((s[0] as f64 - want).abs() < 1e-6 * (1.0 + want.abs()), "silu({x}) = {} against {want}", s[0]);
        }
    }
}
