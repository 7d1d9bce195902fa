//! One trial of the discrete loop: the chain of count vectors and what is
//! measured on it each generation.
//!
//! The state is a full-length count vector plus the list of symbols with a
//! positive count ("alive"). Sampling and measuring only visit alive symbols,
//! so a generation costs O(alive + n) (alias draws) or O(alive) binomials
//! when n ≫ alive — the support shrinks under replace, and the work with it.
//! At T = 1 the estimate is an empirical distribution, so drawing from it
//! means picking uniform members of the samples it was fitted to: the
//! previous sample set (replace, fresh) or the pool of all samples so far
//! (accumulate, [`AccumulatedSampler`]). That saves rebuilding an alias table
//! every generation.

use rand::RngCore;

use super::accumulated_sampler::AccumulatedSampler;
use super::discrete_config::DiscreteConfig;
use super::multinomial::MultinomialSampler;
use super::policy::DataPolicy;
use super::seeding::trial_rng;

/// Counts up to this have c·ln c and c^(1/T) precomputed (replace and fresh
/// never exceed n; accumulate's larger counts are computed directly).
const TABLE_LIMIT: u64 = 1 << 20;

/// Largest tabulated c^(1/T): keeps any sum of up to 2^32 weights finite.
const MAX_TABULATED_WEIGHT: f64 = 1e290;

/// Read-only facts shared by every trial.
pub struct ChainContext<'a> {
    config: &'a DiscreteConfig,
    /// p₀ as a sampler; each trial clones it (the clone is O(support)).
    start_sampler: MultinomialSampler,
    /// `checkpoint_slot[k]`: where generation k's presence goes, if recorded.
    checkpoint_slot: Vec<Option<usize>>,
    /// c·ln c for c < len, the per-symbol term of the entropy.
    count_log_count: Vec<f64>,
    /// c^(1/T) for c < len (empty at T = 1).
    tempered_count: Vec<f64>,
    real_draws: u64,
    start_mode: usize,
    start_support: u32,
    start_sum_squares: f64,
    pub start_entropy: f64,
}

impl<'a> ChainContext<'a> {
    pub fn new(config: &'a DiscreteConfig, checkpoints: &[usize]) -> Self {
        let probabilities = &config.start.probabilities;
        let mut start_sampler = MultinomialSampler::new();
        start_sampler.load(probabilities.iter().copied());
        let mut checkpoint_slot = vec![None; config.generations + 1];
        for (slot, &k) in checkpoints.iter().enumerate() {
            checkpoint_slot[k] = Some(slot);
        }
        let table_len = config.n.min(TABLE_LIMIT) + 1;
        let count_log_count = (0..table_len).map(count_log_count).collect();
        let inverse_temperature = 1.0 / config.temperature;
        let tempered_count = if config.untempered() {
            Vec::new()
        } else {
            (0..table_len)
                .map(|c| (c as f64).powf(inverse_temperature))
                .take_while(|w| *w <= MAX_TABULATED_WEIGHT)
                .collect()
        };
        let start_mode =
            probabilities.iter().enumerate().fold(0, |best, (i, &p)| if p > probabilities[best] { i } else { best });
        ChainContext {
            config,
            start_sampler,
            checkpoint_slot,
            count_log_count,
            tempered_count,
            real_draws: config.policy.real_draws(config.n),
            start_mode,
            start_support: probabilities.iter().filter(|&&p| p > 0.0).count() as u32,
            start_sum_squares: probabilities.iter().map(|p| p * p).sum(),
            start_entropy: -probabilities.iter().filter(|&&p| p > 0.0).map(|&p| p * p.ln()).sum::<f64>(),
        }
    }

    fn count_log_count(&self, count: u64) -> f64 {
        match self.count_log_count.get(count as usize) {
            Some(&value) => value,
            None => count_log_count(count),
        }
    }
}

fn count_log_count(count: u64) -> f64 {
    if count == 0 {
        0.0
    } else {
        let c = count as f64;
        c * c.ln()
    }
}

/// Per-trial measurements, one entry per generation 0..=generations.
#[derive(Clone, Debug)]
pub struct Trajectory {
    pub support: Vec<u32>,
    pub entropy: Vec<f64>,
    pub total_variation: Vec<f64>,
    pub squared_distance: Vec<f64>,
    /// Whether the final estimate still ranks p₀'s mode first (ties count).
    pub mode_kept: bool,
}

/// The evolving estimate of one trial, with scratch buffers reused across trials.
pub struct ChainState {
    /// Counts of the samples the current estimate is fitted to, per symbol.
    counts: Vec<u64>,
    /// Total of `counts`: n, or k·n under accumulate.
    total: u64,
    /// Symbols with a positive count, in no particular order.
    alive: Vec<u32>,
    /// The previous generation's alive list, the categories of `estimate_sampler`.
    previous_alive: Vec<u32>,
    start_sampler: MultinomialSampler,
    estimate_sampler: MultinomialSampler,
    /// Accumulate at T = 1 with n not ≫ alive draws from the pool of all
    /// samples instead of rebuilding a sampler over p̂_k every generation.
    pooled: bool,
    pool: AccumulatedSampler,
    /// Replace and fresh at T = 1: the symbols of the current sample set, one
    /// entry per sample, valid when `sample_set_ready`.
    sample_set: Vec<u32>,
    sample_set_ready: bool,
}

impl ChainState {
    pub fn new(context: &ChainContext) -> Self {
        ChainState {
            counts: vec![0; context.config.start.probabilities.len()],
            total: 0,
            alive: Vec::new(),
            previous_alive: Vec::new(),
            start_sampler: context.start_sampler.clone(),
            estimate_sampler: MultinomialSampler::new(),
            pooled: false,
            pool: AccumulatedSampler::new(),
            sample_set: Vec::new(),
            sample_set_ready: false,
        }
    }

    /// Runs trial `trial` from scratch; adds 1 to `presence[slot·support + i]`
    /// for every symbol i alive at a checkpoint.
    pub fn run_trial(&mut self, context: &ChainContext, trial: usize, presence: &mut [u32]) -> Trajectory {
        let config = context.config;
        let mut rng = trial_rng(config.seed, trial);
        self.counts.fill(0);
        self.alive.clear();
        self.total = 0;
        self.pooled = false;
        self.sample_set_ready = false;

        let length = config.generations + 1;
        let mut trajectory = Trajectory {
            support: Vec::with_capacity(length),
            entropy: Vec::with_capacity(length),
            total_variation: Vec::with_capacity(length),
            squared_distance: Vec::with_capacity(length),
            mode_kept: true,
        };
        trajectory.support.push(context.start_support);
        trajectory.entropy.push(context.start_entropy);
        trajectory.total_variation.push(0.0);
        trajectory.squared_distance.push(0.0);

        for generation in 1..=config.generations {
            if generation == 1 {
                self.draw_from_start(config.n, &mut rng);
                self.total = config.n;
                if config.policy != DataPolicy::Accumulate {
                    self.remember_sample_set(context);
                }
            } else if config.policy == DataPolicy::Accumulate {
                self.accumulate_step(context, generation, &mut rng);
            } else {
                self.new_sample_set_step(context, &mut rng);
            }
            self.measure(context, &mut trajectory);
            if let Some(slot) = context.checkpoint_slot[generation] {
                let row = &mut presence[slot * self.counts.len()..(slot + 1) * self.counts.len()];
                for &symbol in &self.alive {
                    row[symbol as usize] += 1;
                }
            }
        }
        let largest = self.alive.iter().map(|&i| self.counts[i as usize]).max().unwrap_or(0);
        trajectory.mode_kept = self.counts[context.start_mode] == largest;
        trajectory
    }

    /// Accumulate: n draws from p̂_{k−1}, added to all samples so far.
    fn accumulate_step(&mut self, context: &ChainContext, generation: usize, rng: &mut impl RngCore) {
        let n = context.config.n;
        if generation == 2 {
            // The alive set is final from here on; see `pooled`.
            self.pooled = context.config.untempered() && !MultinomialSampler::prefers_binomials(n, self.alive.len());
            if self.pooled {
                self.pool.start(self.alive.iter().map(|&i| self.counts[i as usize]), n);
            }
        }
        if self.pooled {
            let drawn = self.pool.draw_and_add(n, rng);
            for (&symbol, &count) in self.alive.iter().zip(drawn) {
                self.counts[symbol as usize] += count;
            }
        } else {
            self.load_tempered_estimate(context);
            self.add_draws_from_estimate(n, rng, false);
        }
        self.total += n;
    }

    /// Replace and fresh: a new sample set of real draws plus draws from p̂_{k−1}.
    fn new_sample_set_step(&mut self, context: &ChainContext, rng: &mut impl RngCore) {
        let synthetic = context.config.n - context.real_draws;
        if self.sample_set_ready {
            // At T = 1, p̂_{k−1} is the empirical distribution of sample set
            // k − 1, so a draw from it is a uniformly chosen member.
            self.start_new_sample_set();
            let members = self.sample_set.len() as u128;
            for _ in 0..synthetic {
                let member = ((rng.next_u64() as u128 * members) >> 64) as usize;
                self.counts[self.sample_set[member] as usize] += 1;
            }
            for &symbol in &self.previous_alive {
                if self.counts[symbol as usize] > 0 {
                    self.alive.push(symbol);
                }
            }
            self.draw_from_start(context.real_draws, rng);
        } else {
            self.load_tempered_estimate(context);
            self.start_new_sample_set();
            self.draw_from_start(context.real_draws, rng);
            self.add_draws_from_estimate(synthetic, rng, true);
        }
        self.total = context.config.n;
        self.remember_sample_set(context);
    }

    /// Lists the members of the current sample set when the next generation
    /// will draw from it one by one (T = 1 and not n ≫ alive, where
    /// conditional binomials are cheaper): n writes instead of an alias table.
    fn remember_sample_set(&mut self, context: &ChainContext) {
        let synthetic = context.config.n - context.real_draws;
        self.sample_set_ready = context.config.untempered()
            && synthetic > 0
            && !MultinomialSampler::prefers_binomials(synthetic, self.alive.len());
        if self.sample_set_ready {
            self.sample_set.resize(self.total as usize, 0);
            let mut filled = 0;
            for &symbol in &self.alive {
                let count = self.counts[symbol as usize] as usize;
                self.sample_set[filled..filled + count].fill(symbol);
                filled += count;
            }
        }
    }

    /// Loads p̂^(1/T) over the alive symbols into the estimate sampler, whose
    /// category j is then `alive[j]`.
    fn load_tempered_estimate(&mut self, context: &ChainContext) {
        let counts = &self.counts;
        let alive = &self.alive;
        if context.config.untempered() {
            self.estimate_sampler.load(alive.iter().map(|&i| counts[i as usize] as f64));
        } else {
            let largest = alive.iter().map(|&i| counts[i as usize]).max().unwrap_or(0);
            if (largest as usize) < context.tempered_count.len() {
                let table = &context.tempered_count;
                self.estimate_sampler.load(alive.iter().map(|&i| table[counts[i as usize] as usize]));
            } else {
                // Large counts (accumulate) or extreme T: scale by the largest
                // count in log space so that no weight overflows.
                let inverse_temperature = 1.0 / context.config.temperature;
                let log_largest = (largest as f64).ln();
                self.estimate_sampler.load(
                    alive
                        .iter()
                        .map(|&i| (((counts[i as usize] as f64).ln() - log_largest) * inverse_temperature).exp()),
                );
            }
        }
    }

    /// Empties the counts for a fresh sample set, remembering which symbols
    /// the estimate sampler's categories are.
    fn start_new_sample_set(&mut self) {
        for &symbol in &self.alive {
            self.counts[symbol as usize] = 0;
        }
        std::mem::swap(&mut self.alive, &mut self.previous_alive);
        self.alive.clear();
    }

    fn draw_from_start(&mut self, draws: u64, rng: &mut impl RngCore) {
        if draws == 0 {
            return;
        }
        for (symbol, count) in self.start_sampler.draw(draws, rng) {
            if self.counts[symbol] == 0 {
                self.alive.push(symbol as u32);
            }
            self.counts[symbol] += count;
        }
    }

    /// Adds draws from the loaded estimate; its categories are
    /// `previous_alive` after a new sample set, else the current `alive`.
    fn add_draws_from_estimate(&mut self, draws: u64, rng: &mut impl RngCore, new_set: bool) {
        if draws == 0 {
            return;
        }
        let drawn = self.estimate_sampler.draw(draws, rng);
        if new_set {
            for (position, count) in drawn {
                let symbol = self.previous_alive[position];
                if self.counts[symbol as usize] == 0 {
                    self.alive.push(symbol);
                }
                self.counts[symbol as usize] += count;
            }
        } else {
            // Accumulate: every category is alive already and stays so.
            for (position, count) in drawn {
                self.counts[self.alive[position] as usize] += count;
            }
        }
    }

    /// Appends this generation's support, entropy and distances to the start.
    fn measure(&self, context: &ChainContext, trajectory: &mut Trajectory) {
        let start = &context.config.start.probabilities;
        let total = self.total as f64;
        let mut sum_count_log_count = 0.0;
        // Over alive symbols only; dead symbols contribute p₀ to Σ|q − p| and
        // p₀² to Σ(q − p)², folded in through the "− p" and "− p²" terms.
        let mut absolute_excess = 0.0;
        let mut squared_excess = 0.0;
        for &symbol in &self.alive {
            let count = self.counts[symbol as usize];
            sum_count_log_count += context.count_log_count(count);
            let q = count as f64 / total;
            let p = start[symbol as usize];
            absolute_excess += (q - p).abs() - p;
            squared_excess += (q - p) * (q - p) - p * p;
        }
        trajectory.support.push(self.alive.len() as u32);
        // H(q) = −Σ (c/N) ln(c/N) = ln N − Σ c ln c / N.
        trajectory.entropy.push((total.ln() - sum_count_log_count / total).max(0.0));
        trajectory.total_variation.push((0.5 * (1.0 + absolute_excess)).clamp(0.0, 1.0));
        trajectory.squared_distance.push((context.start_sum_squares + squared_excess).max(0.0));
    }
}
