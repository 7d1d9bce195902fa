//! Key/value cache for batched decoding.
//!
//! One preallocated buffer per layer, (B, nkv, Tmax, hs) with nkv the key/value heads, with Tmax the model's context
//! length. Every row decodes its own document at its own position; a row is reused for
//! a new document simply by starting again at position 0 (stale entries beyond the
//! current position are masked out, never read).
use tch::{Device, Kind, Tensor};

pub struct KvCache {
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
    capacity: i64,
}

impl KvCache {
    pub fn new(n_layer: i64, batch: i64, n_head: i64, capacity: i64, head_dim: i64, device: Device) -> Self {
        let shape = [batch, n_head, capacity, head_dim];
        let zeros = || Tensor::zeros(shape, (Kind::Float, device));
        Self {
            keys: (0..n_layer).map(|_| zeros()).collect(),
            values: (0..n_layer).map(|_| zeros()).collect(),
            capacity,
        }
    }

    /// Maximum positions per row (the model's context length).
    pub fn capacity(&self) -> i64 {
        self.capacity
    }

    pub fn layer(&self, layer: usize) -> (Tensor, Tensor) {
        (self.keys[layer].shallow_clone(), self.values[layer].shallow_clone())
    }

    /// Keeps rows `keep` (int64 indices, in that order) and appends `extra` empty rows.
    /// Used when the sampler retires finished rows or opens new ones; a kept row's
    /// entries are unchanged.
    pub fn reshape_rows(&mut self, keep: &Tensor, extra: i64) {
        for t in self.keys.iter_mut().chain(self.values.iter_mut()) {
            let kept = t.index_select(0, keep);
            *t = if extra > 0 {
                let mut shape = kept.size();
                shape[0] = extra;
                Tensor::cat(&[kept.shallow_clone(), Tensor::zeros(shape.as_slice(), (kept.kind(), kept.device()))], 0)
            } else {
                kept
            };
        }
    }

    /// Where one decoding step's new tokens go and what they may attend to; built once
    /// per step and shared by every layer.
    ///
    /// `start[b]` is the position of row b's first new token, `t` the new tokens per
    /// row; every position must be below the capacity.
    pub fn step(&self, start: &[i64], t: i64, device: Device) -> CacheStep {
        let b = start.len() as i64;
        assert!(start.iter().all(|&s| s >= 0 && s + t <= self.capacity), "positions past the cache's capacity");
        let positions: Vec<i64> = start.iter().flat_map(|&s| s..s + t).collect();
        let pos = Tensor::from_slice(&positions).view([b, t]).to_device(device);
        CacheStep { pos, start: start.to_vec(), t, mask: std::cell::OnceCell::new() }
    }
}

/// See [`KvCache::step`].
pub struct CacheStep {
    /// Position of every new token, also its slot in the cache: (B, T) int64.
    pub pos: Tensor,
    start: Vec<i64>,
    t: i64,
    /// Which slots each token sees, for libtorch's kernel (built on first use).
    mask: std::cell::OnceCell<Option<Tensor>>,
}

impl CacheStep {
    /// Leading slots any new token may attend to: none past every row's newest token.
    fn width(&self) -> i64 {
        self.start.iter().max().map_or(1, |&s| s + self.t)
    }

    /// Which of those slots each token sees, (B, 1, T, width); `None` when every token
    /// sees all of them (lockstep decoding).
    fn mask(&self) -> Option<&Tensor> {
        self.mask
            .get_or_init(|| {
                let (b, t, width) = (self.start.len() as i64, self.t, self.width());
                let needs = t > 1 || self.start.iter().any(|&s| s < width - 1);
                needs.then(|| {
                    let slots = Tensor::arange(width, (Kind::Int64, self.pos.device())).view([1, 1, 1, width]);
                    slots.le_tensor(&self.pos.view([b, 1, t, 1])) // (B, 1, T, width)
                })
            })
            .as_ref()
    }

    /// Writes the new keys and values of `layer` (each (B, nkv, T, hs)) into the cache
    /// and returns the attention of `q` (B, nh, T, hs) over every row's visible
    /// entries, heads merged: (B, T, nh·hs). `nkv` divides `nh`; query head h reads
    /// key/value head `h / (nh / nkv)` (grouped-query attention when `nkv < nh`).
    pub fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor, cache: &KvCache, layer: usize) -> Tensor {
        let (b, nh, t, hs) = q.size4().unwrap();
        let nkv = k.size()[1];
        let (cache_k, cache_v) = cache.layer(layer);
        if super::attention::supported(q, &cache_k, &cache_v) {
            return super::attention::decode_attention(q, k, v, &cache_k, &cache_v, &self.start);
        }
        let index = self.pos.view([b, 1, t, 1]).expand([b, nkv, t, hs], false);
        let _ = cache_k.shallow_clone().scatter_(2, &index, k);
        let _ = cache_v.shallow_clone().scatter_(2, &index, v);
        let keys = cache_k.narrow(2, 0, self.width());
        let values = cache_v.narrow(2, 0, self.width());
        let y = Tensor::scaled_dot_product_attention(q, &keys, &values, self.mask(), 0.0, false, None, nkv != nh);
        y.transpose(1, 2).contiguous().view([b, t, nh * hs])
    }
}
/// Writes keys and values (each (n, nkv, L, hs), positions 0..L) into cache rows `rows`
/// (int64, one per row of k and v) of `layer`; the rows' later slots become stale and
/// are masked by position until overwritten.
pub fn write_prefix(cache: &KvCache, layer: usize, rows: &Tensor, k: &Tensor, v: &Tensor) {
    let l = k.size()[2];
    let (cache_k, cache_v) = cache.layer(layer);
    let _ = cache_k.narrow(2, 0, l).index_copy_(0, rows, k);
    let _ = cache_v.narrow(2, 0, l).index_copy_(0, rows, v);
}
