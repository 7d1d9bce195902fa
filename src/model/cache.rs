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

    /// Copies all rows of `from` into rows `rows` (int64, one per row of `from`).
    pub fn copy_rows(&mut self, rows: &Tensor, from: &KvCache) {
        for (dst, src) in self.keys.iter_mut().zip(&from.keys).chain(self.values.iter_mut().zip(&from.values)) {
            let _ = dst.index_copy_(0, rows, src);
        }
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
}
