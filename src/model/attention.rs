//! One decoding step's attention on the CPU: one new token per row, over that row's
//! own cached keys and values.
//!
//! libtorch's fused attention runs this shape (one query per row and head) as one
//! matrix-vector product per row and head, each a library call that costs more than
//! its arithmetic; at the sampler's shapes that was a third of a decoding step. Here
//! the products are plain loops over the rows' visible slots only (`0..=position`, so
//! rows early in their documents cost less), the softmax over the scores is one
//! libtorch call, and the new keys and values are written into the cache in the same
//! pass. The arithmetic is the same (f32, scores scaled by 1/√hs, max-subtracted
//! softmax); only the order of the additions differs, as it does between libtorch's
//! own kernels. Other devices, dtypes and multi-token steps use libtorch's kernel.
use crate::host::{slice, slice_mut};
use tch::{Device, Kind, Tensor};

/// Whether [`decode_attention`] can run these tensors: f32 on the CPU, the cache
/// contiguous, one new token per row.
pub fn supported(q: &Tensor, cache_k: &Tensor, cache_v: &Tensor) -> bool {
    q.device() == Device::Cpu
        && q.kind() == Kind::Float
        && crate::host::viewable(cache_k)
        && crate::host::viewable(cache_v)
        && q.size().len() == 4
        && q.size()[2] == 1
}

/// Writes the new keys and values into the cache at each row's position and returns
/// the attention output merged over heads.
///
/// q: (B, nh, 1, hs) and k, v: (B, nkv, 1, hs), any strides, nkv dividing nh (query
/// head h reads key/value head h / (nh / nkv)). `cache_k`, `cache_v`: (B, nkv, Tmax, hs),
/// contiguous. `pos[b]` < Tmax: row b's position; it attends to slots `0..=pos[b]`.
/// Returns (B, 1, nh·hs).
pub fn decode_attention(q: &Tensor, k: &Tensor, v: &Tensor, cache_k: &Tensor, cache_v: &Tensor, pos: &[i64]) -> Tensor {
    let (b, nh, _, hs) = q.size4().unwrap();
    let (nkv, t_max) = (k.size()[1], cache_k.size()[2]);
    assert!(nkv > 0 && nh % nkv == 0, "key/value heads divide query heads");
    assert_eq!(cache_k.size(), [b, nkv, t_max, hs], "cache shape");
    assert_eq!(cache_v.size(), [b, nkv, t_max, hs], "cache shape");
    assert!(pos.len() == b as usize && pos.iter().all(|&p| p >= 0 && p < t_max), "positions within the cache");
    let shape = Shape { heads: nh as usize, kv_heads: nkv as usize, dim: hs as usize, slots: t_max as usize };
    let (q, k, v) = (q.contiguous(), k.contiguous(), v.contiguous());
    // Scores (B·nh, width): slots a row may not see stay at -inf, so softmax gives them 0.
    let width = pos.iter().max().map_or(1, |&p| p + 1);
    let scores = Tensor::full([b * nh, width], f64::NEG_INFINITY, (Kind::Float, Device::Cpu));
    // SAFETY: every tensor here is a contiguous f32 CPU tensor of the size its slice
    // claims (q, k, v and the caches checked above and by `supported`, the others made
    // here), and nothing else reads or writes them while the slices live.
    unsafe {
        let (ck, cv) = (slice_mut(cache_k), slice_mut(cache_v));
        write_and_score(shape, pos, slice(&q), slice(&k), slice(&v), ck, cv, slice_mut(&scores), width as usize);
    }
    let probs = scores.softmax(-1, Kind::Float);
    let out = Tensor::zeros([b, 1, nh * hs], (Kind::Float, Device::Cpu));
    unsafe { weigh_values(shape, pos, slice(&probs), width as usize, slice(cache_v), slice_mut(&out)) };
    out
}

#[derive(Clone, Copy)]
struct Shape {
    heads: usize,
    kv_heads: usize,
    dim: usize,
    slots: usize,
}

/// Cache writes and scaled scores `q·k / √hs` of every row and head, with the widest
/// vector instructions the CPU has (the same arithmetic either way).
#[allow(clippy::too_many_arguments)] // a kernel's operands, passed as they are
fn write_and_score(
    s: Shape,
    pos: &[i64],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    ck: &mut [f32],
    cv: &mut [f32],
    scores: &mut [f32],
    width: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { write_and_score_avx2(s, pos, q, k, v, ck, cv, scores, width) };
    }
    write_and_score_body(s, pos, q, k, v, ck, cv, scores, width)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn write_and_score_avx2(
    s: Shape,
    pos: &[i64],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    ck: &mut [f32],
    cv: &mut [f32],
    scores: &mut [f32],
    width: usize,
) {
    write_and_score_body(s, pos, q, k, v, ck, cv, scores, width)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn write_and_score_body(
    s: Shape,
    pos: &[i64],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    ck: &mut [f32],
    cv: &mut [f32],
    scores: &mut [f32],
    width: usize,
) {
    let Shape { heads, kv_heads, dim, slots } = s;
    let scale = 1.0 / (dim as f32).sqrt();
    for (row, &p) in pos.iter().enumerate() {
        let p = p as usize;
        for g in 0..kv_heads {
            let kv = row * kv_heads + g;
            let base = kv * slots * dim;
            ck[base + p * dim..][..dim].copy_from_slice(&k[kv * dim..][..dim]);
            cv[base + p * dim..][..dim].copy_from_slice(&v[kv * dim..][..dim]);
        }
        for h in 0..heads {
            let head = row * heads + h;
            let base = (row * kv_heads + h / (heads / kv_heads)) * slots * dim;
            let qh = &q[head * dim..][..dim];
            let keys = &ck[base..base + (p + 1) * dim];
            for (out, key) in scores[head * width..][..p + 1].iter_mut().zip(keys.chunks_exact(dim)) {
                *out = dot(qh, key) * scale;
            }
        }
    }
}

/// `out[row, head] = Σ_slot probs[row, head, slot] · value[row, head, slot]`.
fn weigh_values(s: Shape, pos: &[i64], probs: &[f32], width: usize, cv: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { weigh_values_avx2(s, pos, probs, width, cv, out) };
    }
    weigh_values_body(s, pos, probs, width, cv, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn weigh_values_avx2(s: Shape, pos: &[i64], probs: &[f32], width: usize, cv: &[f32], out: &mut [f32]) {
    weigh_values_body(s, pos, probs, width, cv, out)
}

#[inline(always)]
fn weigh_values_body(s: Shape, pos: &[i64], probs: &[f32], width: usize, cv: &[f32], out: &mut [f32]) {
    let Shape { heads, kv_heads, dim, slots } = s;
    for (row, &p) in pos.iter().enumerate() {
        let p = p as usize;
        for h in 0..heads {
            let head = row * heads + h;
            let kv = row * kv_heads + h / (heads / kv_heads);
            let values = &cv[kv * slots * dim..][..(p + 1) * dim];
            let acc = &mut out[head * dim..][..dim];
            for (&w, value) in probs[head * width..][..p + 1].iter().zip(values.chunks_exact(dim)) {
                for (a, &x) in acc.iter_mut().zip(value) {
                    *a += w * x;
                }
            }
        }
    }
}

/// Dot product in eight lanes (the compiler vectorises independent lanes, not one
/// running sum).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}
