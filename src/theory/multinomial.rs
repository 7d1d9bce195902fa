//! Multinomial count vectors from a categorical distribution given by weights.
//!
//! Two exact algorithms, picked per call by their cost:
//! * n single draws from a Walker/Vose alias table: O(m) to build for m
//!   categories, O(1) per draw — cheapest when n is not much larger than m;
//! * sequential conditional binomials, x_j ~ Bin(n − Σ_{i<j} x_i, w_j / Σ_{i≥j} w_i):
//!   m binomial draws whatever n is — cheapest when n ≫ m.
//!
//! The buffers are kept between calls so that a simulation can reload new
//! weights every generation without allocating.

use rand::RngCore;
use rand_distr::{Binomial, Distribution};

use super::alias_table::AliasTable;

/// Above n = this × m, m binomial draws beat n alias draws (a binomial draw
/// costs about as much as ten alias draws on this code).
const BINOMIAL_WHEN_DRAWS_PER_CATEGORY_EXCEED: f64 = 10.0;

/// With fewer draws than this fraction of the categories, only the touched
/// categories are visited afterwards (a real vocabulary can have 10⁵ symbols
/// while a generation draws a few hundred real samples).
const SPARSE_WHEN_DRAWS_PER_CATEGORY_BELOW: f64 = 0.25;

#[derive(Clone, Debug, Default)]
pub struct MultinomialSampler {
    weights: Vec<f64>,
    /// Counts of the last draw, per category; all zero between draws except
    /// where `touched` (sparse draw) or anywhere (dense draw) says otherwise.
    tallies: Vec<u64>,
    /// Categories with a positive count after a sparse draw, each once.
    touched: Vec<u32>,
    /// Whether the last draw was dense, i.e. any tally may be non-zero.
    dense: bool,
    /// Built on first use after `load`.
    alias: AliasTable,
    /// Σ_{i≥j} w_i, built on first use for the binomial path.
    suffix_weight: Vec<f64>,
    alias_ready: bool,
    suffix_ready: bool,
}

/// The positive counts of one draw, as (category, count) pairs.
pub struct DrawnCounts<'a> {
    tallies: &'a [u64],
    /// `Some` after a sparse draw: the only categories that can be positive.
    touched: Option<&'a [u32]>,
    position: usize,
}

impl Iterator for DrawnCounts<'_> {
    type Item = (usize, u64);

    fn next(&mut self) -> Option<(usize, u64)> {
        if let Some(touched) = self.touched {
            let &category = touched.get(self.position)?;
            self.position += 1;
            return Some((category as usize, self.tallies[category as usize]));
        }
        while self.position < self.tallies.len() {
            let category = self.position;
            self.position += 1;
            if self.tallies[category] > 0 {
                return Some((category, self.tallies[category]));
            }
        }
        None
    }
}

impl MultinomialSampler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the weights (finite, ≥ 0, not all zero: the caller
    /// guarantees it — simulations only load counts or validated probabilities).
    pub fn load(&mut self, weights: impl IntoIterator<Item = f64>) {
        self.weights.clear();
        self.weights.extend(weights);
        self.tallies.clear();
        self.tallies.resize(self.weights.len(), 0);
        self.touched.clear();
        self.dense = false;
        self.alias_ready = false;
        self.suffix_ready = false;
    }

    pub fn len(&self) -> usize {
        self.weights.len()
    }

    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// Draws a multinomial sample of size n; yields its positive counts
    /// (each category at most once, in no particular order).
    pub fn draw<R: RngCore + ?Sized>(&mut self, n: u64, rng: &mut R) -> DrawnCounts<'_> {
        self.clear_tallies();
        let m = self.weights.len() as f64;
        if n > 0 && m > 0.0 {
            if Self::prefers_binomials(n, self.weights.len()) {
                self.draw_by_binomials(n, rng);
            } else if (n as f64) < SPARSE_WHEN_DRAWS_PER_CATEGORY_BELOW * m {
                self.draw_by_alias_sparse(n, rng);
            } else {
                self.draw_by_alias(n, rng);
            }
        }
        DrawnCounts { tallies: &self.tallies, touched: (!self.dense).then_some(&self.touched[..]), position: 0 }
    }

    /// Whether n draws over this many categories go by conditional binomials
    /// (cost O(categories)) rather than single draws (cost O(n)).
    pub fn prefers_binomials(n: u64, categories: usize) -> bool {
        n as f64 > BINOMIAL_WHEN_DRAWS_PER_CATEGORY_EXCEED * categories as f64
    }

    /// Zeroes what the last draw set, in O(touched) after a sparse draw.
    fn clear_tallies(&mut self) {
        if self.dense {
            self.tallies.fill(0);
        } else {
            for &category in &self.touched {
                self.tallies[category as usize] = 0;
            }
        }
        self.touched.clear();
        self.dense = false;
    }

    fn draw_by_alias_sparse<R: RngCore + ?Sized>(&mut self, n: u64, rng: &mut R) {
        if !self.alias_ready {
            self.build_alias();
        }
        for _ in 0..n {
            let category = self.alias.sample(rng.next_u64());
            if self.tallies[category] == 0 {
                self.touched.push(category as u32);
            }
            self.tallies[category] += 1;
        }
    }

    fn draw_by_alias<R: RngCore + ?Sized>(&mut self, n: u64, rng: &mut R) {
        if !self.alias_ready {
            self.build_alias();
        }
        self.dense = true;
        for _ in 0..n {
            self.tallies[self.alias.sample(rng.next_u64())] += 1;
        }
    }

    fn build_alias(&mut self) {
        self.alias.rebuild(&self.weights);
        self.alias_ready = true;
    }

    fn draw_by_binomials<R: RngCore + ?Sized>(&mut self, n: u64, rng: &mut R) {
        if !self.suffix_ready {
            self.suffix_weight.clear();
            self.suffix_weight.resize(self.weights.len(), 0.0);
            let mut tail = 0.0;
            for j in (0..self.weights.len()).rev() {
                tail += self.weights[j];
                self.suffix_weight[j] = tail;
            }
            self.suffix_ready = true;
        }
        self.dense = true;
        let mut remaining = n;
        for (j, (&weight, &tail)) in self.weights.iter().zip(&self.suffix_weight).enumerate() {
            if remaining == 0 || tail <= 0.0 {
                break;
            }
            // The last positive weight gets exactly 1 (its tail is itself),
            // so every draw is placed even after rounding in the suffix sums.
            let share = (weight / tail).clamp(0.0, 1.0);
            let count = Binomial::new(remaining, share)
                .expect("share is clamped to [0, 1] and never NaN (tail > 0)")
                .sample(rng);
            self.tallies[j] = count;
            remaining -= count;
        }
    }
}
