//! How the next token is chosen from a row of logits ([`Sampling`]), on the device or
//! on the host: the draws alone, a leaf that needs tch and nothing of the model.
//!
//! Logits are divided by the temperature, then top-k keeps the k largest, then top-p
//! keeps the smallest set of the remaining tokens whose probability (after temperature
//! and top-k) reaches p; the result is renormalised and sampled. Temperature 0 is
//! greedy (argmax; top-k/top-p then change nothing).
use anyhow::{bail, Result};
use rand::Rng;
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
pub(super) struct HostFilter {
    temperature: f32,
    top_k: Option<usize>,
    top_p: Option<f64>,
}

impl Sampling {
    /// The settings, when draws from `logits` can run on the host without libtorch:
    /// random sampling from f32 logits (B, V) on the CPU.
    pub(super) fn host_filter(&self, logits: &Tensor) -> Option<HostFilter> {
        match self.host_draw(logits.size().last().copied().unwrap_or(0) as usize) {
            HostDraw::Random(f) if crate::host::viewable(logits) && logits.dim() == 2 => Some(f),
            _ => None,
        }
    }

    /// How a row of `v` f32 logits is drawn from in Rust.
    pub(super) fn host_draw(&self, v: usize) -> HostDraw {
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
pub(super) enum HostDraw {
    /// The first largest logit, as libtorch's argmax; no uniform is read.
    Greedy,
    /// One uniform from the row's stream, then [`draw_row`].
    Random(HostFilter),
}

impl HostDraw {
    /// The token row `row` of logits gives, reading from the row's own stream `rng`
    /// exactly what [`Sampling::choose_rows`] reads for it.
    pub(super) fn choose(self, row: &[f32], rng: &mut impl Rng, scratch: &mut Scratch) -> i64 {
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
pub(super) fn draw_on_host(
    filter: HostFilter,
    logits: &Tensor,
    u: &[f64],
    pool: Option<&rayon::ThreadPool>,
) -> Vec<i64> {
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
pub(super) struct Scratch {
    z: Vec<f32>,
    order: Vec<u32>,
    /// The result: unnormalised weights, 0 for filtered tokens.
    weights: Vec<f32>,
}

impl Scratch {
    pub(super) fn new(v: usize) -> Self {
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
    crate::vecmath::softmax_weights(z, &mut s.weights);
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

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
