//! Key/value cache for batched decoding.
//!
//! One preallocated buffer per layer, (B, nh, Tmax, hs), with Tmax the model's context
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

    pub fn batch(&self) -> i64 {
        self.keys[0].size()[0]
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
        let last = start.iter().map(|&s| s + t - 1).max().unwrap_or(0);
        // Slots past every row's newest token hold nothing any row may read.
        let width = last + 1;
        // A row at the newest position sees every slot up to it; a step where all rows
        // do (lockstep decoding) attends unmasked.
        let needs_mask = t > 1 || start.iter().any(|&s| s < width - 1);
        let pos = Tensor::from_slice(&positions).view([b, t]).to_device(device);
        let mask = needs_mask.then(|| {
            let slots = Tensor::arange(width, (Kind::Int64, device)).view([1, 1, 1, width]);
            slots.le_tensor(&pos.view([b, 1, t, 1])) // (B, 1, T, width)
        });
        CacheStep { pos, width, mask }
    }
}

/// See [`KvCache::step`].
pub struct CacheStep {
    /// Position of every new token, also its slot in the cache: (B, T) int64.
    pub pos: Tensor,
    /// Leading slots any new token may attend to.
    width: i64,
    /// Which of those slots each token sees, (B, 1, T, width); `None` when all of them.
    mask: Option<Tensor>,
}

impl CacheStep {
    /// Writes the new keys and values of `layer` (each (B, nh, T, hs)) into the cache
    /// and returns the attention of `q` over every row's visible entries: (B, nh, T, hs).
    pub fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor, cache: &KvCache, layer: usize) -> Tensor {
        let (b, nh, t, hs) = q.size4().unwrap();
        let (cache_k, cache_v) = cache.layer(layer);
        let index = self.pos.view([b, 1, t, 1]).expand([b, nh, t, hs], false);
        let _ = cache_k.shallow_clone().scatter_(2, &index, k);
        let _ = cache_v.shallow_clone().scatter_(2, &index, v);
        let keys = cache_k.narrow(2, 0, self.width);
        let values = cache_v.narrow(2, 0, self.width);
        Tensor::scaled_dot_product_attention(q, &keys, &values, self.mask.as_ref(), 0.0, false, None, false)
    }
}

/// Writes keys and values (each (n, nh, L, hs), positions 0..L) into cache rows `rows`
/// (int64, one per row of k and v) of `layer`; the rows' later slots become stale and
/// are masked by position until overwritten.
pub fn write_prefix(cache: &KvCache, layer: usize, rows: &Tensor, k: &Tensor, v: &Tensor) {
    let l = k.size()[2];
    let (cache_k, cache_v) = cache.layer(layer);
    let _ = cache_k.narrow(2, 0, l).index_copy_(0, rows, k);
    let _ = cache_v.narrow(2, 0, l).index_copy_(0, rows, v);
}
