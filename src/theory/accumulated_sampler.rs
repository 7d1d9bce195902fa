//! Sampling from a growing pool of samples: the accumulate loop at T = 1,
//! where the estimate p̂_k is exactly the empirical distribution of every
//! sample so far, so drawing from p̂_k means drawing uniformly from the pool.
//!
//! Rebuilding an alias table over p̂_k every generation costs O(support);
//! instead the pool is split into a frozen part, drawn from through an alias
//! table over its counts, and the samples added since, kept as a plain list.
//! A uniform index into the pool picks the part and, for the list, the
//! sample itself. The list is folded into the frozen counts (and the table
//! rebuilt) only once it holds `REFREEZE_FACTOR`·max(n, support) samples, so a
//! generation costs O(n) plus a 1/REFREEZE_FACTOR share of a rebuild.

use rand::RngCore;

use super::alias_table::AliasTable;

/// The list may grow to this many times max(n, support) before a rebuild:
/// rebuilds then cost at most 1/16 of an alias rebuild per generation, and the
/// list (4 bytes per sample) stays within the core's cache for n ≈ 10³.
const REFREEZE_FACTOR: usize = 16;

#[derive(Clone, Debug, Default)]
pub struct AccumulatedSampler {
    /// Per category, all samples so far.
    counts: Vec<u64>,
    total: u64,
    /// Over `counts` as they were at the last rebuild…
    frozen: AliasTable,
    frozen_total: u64,
    /// …and the category of every sample added since, in order.
    recent: Vec<u32>,
    refreeze_at: usize,
    /// Counts of the last draw, per category.
    tallies: Vec<u64>,
    weights: Vec<f64>,
}

impl AccumulatedSampler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a pool from per-category counts (positive total); `n` is the
    /// number of samples each later generation will draw and add.
    pub fn start(&mut self, counts: impl IntoIterator<Item = u64>, n: u64) {
        self.counts.clear();
        self.counts.extend(counts);
        self.total = self.counts.iter().sum();
        self.tallies.clear();
        self.tallies.resize(self.counts.len(), 0);
        self.refreeze_at = REFREEZE_FACTOR * (n as usize).max(self.counts.len());
        self.freeze();
    }

    /// Per-category counts of the whole pool.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Draws n samples uniformly from the pool (i.e. from its empirical
    /// distribution), then adds them to the pool; returns their counts per
    /// category.
    pub fn draw_and_add<R: RngCore + ?Sized>(&mut self, n: u64, rng: &mut R) -> &[u64] {
        self.tallies.fill(0);
        self.recent.reserve(n as usize);
        for _ in 0..n {
            // r·total / 2^64: the integer part is a uniform position in the
            // pool as it was before this call (`total` only grows after the
            // loop, so the samples pushed below are never drawn here); the
            // fraction, uniform and independent of it up to total/2^64, is
            // the random input of the alias draw.
            let product = rng.next_u64() as u128 * self.total as u128;
            let position = (product >> 64) as u64;
            let category = if position < self.frozen_total {
                self.frozen.sample(product as u64)
            } else {
                self.recent[(position - self.frozen_total) as usize] as usize
            };
            self.tallies[category] += 1;
            self.recent.push(category as u32);
        }
        for (count, &drawn) in self.counts.iter_mut().zip(&self.tallies) {
            *count += drawn;
        }
        self.total += n;
        if self.recent.len() >= self.refreeze_at {
            self.freeze();
        }
        &self.tallies
    }

    fn freeze(&mut self) {
        self.weights.clear();
        self.weights.extend(self.counts.iter().map(|&c| c as f64));
        self.frozen.rebuild(&self.weights);
        self.frozen_total = self.total;
        self.recent.clear();
    }
}
