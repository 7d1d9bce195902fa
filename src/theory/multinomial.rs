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

/// Above n = this × m, m binomial draws beat n alias draws (a binomial draw
/// costs about as much as ten alias draws on this code).
const BINOMIAL_WHEN_DRAWS_PER_CATEGORY_EXCEED: f64 = 10.0;

/// 2^64 as a float: alias acceptance thresholds are fractions of it.
const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;

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
    /// Built on first use after `load`: per cell, keep the cell when the
    /// 64-bit fraction is below this threshold (acceptance probability × 2^64)…
    alias_threshold: Vec<u64>,
    /// …and otherwise take this category.
    alias_index: Vec<u32>,
    /// Σ_{i≥j} w_i, built on first use for the binomial path.
    suffix_weight: Vec<f64>,
    alias_ready: bool,
    suffix_ready: bool,
    // Scratch of the alias construction, kept to avoid reallocating.
    scaled: Vec<f64>,
    small: Vec<u32>,
    large: Vec<u32>,
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
            if n as f64 > BINOMIAL_WHEN_DRAWS_PER_CATEGORY_EXCEED * m {
                self.draw_by_binomials(n, rng);
            } else if (n as f64) < SPARSE_WHEN_DRAWS_PER_CATEGORY_BELOW * m {
                self.draw_by_alias_sparse(n, rng);
            } else {
                self.draw_by_alias(n, rng);
            }
        }
        DrawnCounts { tallies: &self.tallies, touched: (!self.dense).then_some(&self.touched[..]), position: 0 }
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

    /// One alias draw from 64 random bits: r·m / 2^64 split at the binary
    /// point, the integer part a uniform cell, the fraction an independent
    /// uniform coin (up to m/2^64 of bias), all in integer arithmetic; the
    /// select is branch-free because the coin is a 50/50 guess for the branch
    /// predictor and a mispredict costs more than the draw.
    #[inline(always)]
    fn alias_draw(thresholds: &[u64], aliases: &[u32], random: u64) -> usize {
        let product = random as u128 * thresholds.len() as u128;
        let cell = (product >> 64) as usize;
        let coin = product as u64;
        let alias = aliases[cell] as usize;
        let keep = ((coin < thresholds[cell]) as usize).wrapping_neg();
        alias ^ ((cell ^ alias) & keep)
    }

    fn draw_by_alias_sparse<R: RngCore + ?Sized>(&mut self, n: u64, rng: &mut R) {
        if !self.alias_ready {
            self.build_alias();
        }
        for _ in 0..n {
            let category = Self::alias_draw(&self.alias_threshold, &self.alias_index, rng.next_u64());
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
        let tallies = &mut self.tallies[..];
        let thresholds = &self.alias_threshold[..tallies.len()];
        let aliases = &self.alias_index[..tallies.len()];
        for _ in 0..n {
            tallies[Self::alias_draw(thresholds, aliases, rng.next_u64())] += 1;
        }
    }

    /// Vose's construction: cells whose scaled weight is below 1 are topped
    /// up by a cell above 1, which then counts as below 1 once it drops.
    fn build_alias(&mut self) {
        let m = self.weights.len();
        let total: f64 = self.weights.iter().sum();
        self.scaled.clear();
        self.scaled.extend(self.weights.iter().map(|w| w * m as f64 / total));
        self.alias_index.clear();
        self.alias_index.extend(0..m as u32);
        self.small.clear();
        self.large.clear();
        for (cell, &scaled) in self.scaled.iter().enumerate() {
            if scaled < 1.0 {
                self.small.push(cell as u32);
            } else {
                self.large.push(cell as u32);
            }
        }
        while let (Some(&under), Some(&over)) = (self.small.last(), self.large.last()) {
            self.small.pop();
            self.alias_index[under as usize] = over;
            let remaining = self.scaled[over as usize] + self.scaled[under as usize] - 1.0;
            self.scaled[over as usize] = remaining;
            if remaining < 1.0 {
                self.large.pop();
                self.small.push(over);
            }
        }
        // Whatever is left differs from 1 only by rounding: always accept.
        for &cell in self.small.iter().chain(self.large.iter()) {
            self.scaled[cell as usize] = 1.0;
        }
        self.alias_threshold.clear();
        self.alias_threshold.extend(self.scaled.iter().map(|&p| {
            // A float at or above 2^64 saturates to u64::MAX: "always accept"
            // up to a 2^-64 chance.
            (p * TWO_POW_64) as u64
        }));
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
