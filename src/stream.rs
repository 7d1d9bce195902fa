//! A training stream: an ordered list of token runs, read as one concatenated sequence.
//!
//! Training mixtures are lists of whole documents taken from several token files
//! (the real split and synthetic corpora); nothing is copied. Every document ends with
//! `<|endoftext|>`, so the concatenation is a valid stream of documents and a training
//! window may cross from one document into the next, as in GPT-2 pretraining.
use crate::tokens::TokenFile;
use anyhow::{bail, Result};
use rand::Rng;
use std::ops::Range;
use std::sync::Arc;

#[derive(Clone)]
pub struct TokenStream {
    files: Vec<Arc<TokenFile>>,
    /// (file index, token range) in stream order.
    runs: Vec<(usize, Range<usize>)>,
    /// Start of each run in stream coordinates; `starts.last()` + its length = total.
    starts: Vec<usize>,
    len: usize,
}

impl TokenStream {
    pub fn new() -> Self {
        Self { files: Vec::new(), runs: Vec::new(), starts: Vec::new(), len: 0 }
    }

    /// A whole file as a stream.
    pub fn from_file(file: Arc<TokenFile>) -> Self {
        let mut s = Self::new();
        let n = file.len();
        let idx = s.add_file(file);
        s.push(idx, 0..n);
        s
    }

    pub fn add_file(&mut self, file: Arc<TokenFile>) -> usize {
        if let Some(i) = self.files.iter().position(|f| Arc::ptr_eq(f, &file)) {
            return i;
        }
        self.files.push(file);
        self.files.len() - 1
    }

    /// Appends `range` of file `file`; adjacent ranges of one file are merged.
    pub fn push(&mut self, file: usize, range: Range<usize>) {
        if range.is_empty() {
            return;
        }
        if let Some((f, last)) = self.runs.last_mut() {
            if *f == file && last.end == range.start {
                self.len += range.len();
                last.end = range.end;
                return;
            }
        }
        self.starts.push(self.len);
        self.len += range.len();
        self.runs.push((file, range));
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends stream positions `offset..offset+n` to `out`.
    pub fn read(&self, offset: usize, n: usize, out: &mut Vec<i64>) {
        let mut pos = offset;
        let end = offset + n;
        let mut run = self.starts.partition_point(|&s| s <= pos) - 1;
        while pos < end {
            let (f, r) = &self.runs[run];
            let within = pos - self.starts[run];
            let take = (r.len() - within).min(end - pos);
            self.files[*f].extend_i64(r.start + within..r.start + within + take, out);
            pos += take;
            run += 1;
        }
    }

    /// Training windows of a context of `block` tokens: window i is the `block + 1`
    /// tokens starting at `i * block` (inputs and their next-token targets), so the
    /// windows tile the stream and every token but the first is a target exactly once.
    pub fn window_count(&self, block: usize) -> usize {
        if self.len < block + 1 {
            0
        } else {
            (self.len - 1) / block
        }
    }

    /// Inputs and targets (each `windows.len() × block`, row-major) of the given windows.
    pub fn windows(&self, windows: &[usize], block: usize) -> (Vec<i64>, Vec<i64>) {
        let mut x = Vec::with_capacity(windows.len() * block);
        let mut y = Vec::with_capacity(windows.len() * block);
        let mut window = Vec::with_capacity(block + 1);
        for &w in windows {
            window.clear();
            self.read(w * block, block + 1, &mut window);
            x.extend_from_slice(&window[..block]);
            y.extend_from_slice(&window[1..]);
        }
        (x, y)
    }

    /// A batch of `batch` random windows of `block + 1` tokens, as inputs and targets
    /// (each `batch × block`, flattened row-major).
    pub fn random_batch(&self, batch: usize, block: usize, rng: &mut impl Rng) -> Result<(Vec<i64>, Vec<i64>)> {
        if self.len < block + 1 {
            bail!("the training data has {} tokens, fewer than one context window of {}", self.len, block + 1);
        }
        let mut x = Vec::with_capacity(batch * block);
        let mut y = Vec::with_capacity(batch * block);
        let mut window = Vec::with_capacity(block + 1);
        for _ in 0..batch {
            window.clear();
            let start = rng.gen_range(0..=self.len - block - 1);
            self.read(start, block + 1, &mut window);
            x.extend_from_slice(&window[..block]);
            y.extend_from_slice(&window[1..]);
        }
        Ok((x, y))
    }
}

impl Default for TokenStream {
    fn default() -> Self {
        Self::new()
    }
}

/// The order in which training visits windows: passes over all `windows` windows, each
/// a fresh seeded permutation (every window once per pass), cut after `total` visits
/// and read in batches of `batch` (the last batch may be smaller).
#[derive(Debug, Clone)]
pub struct EpochSchedule {
    windows: usize,
    batch: usize,
    total: usize,
    seed: u64,
}

impl EpochSchedule {
    pub fn new(windows: usize, batch: usize, total: usize, seed: u64) -> Result<Self> {
        if windows == 0 || batch == 0 || total == 0 {
            bail!("a training schedule needs at least one window, one row per batch and one visit");
        }
        Ok(Self { windows, batch, total, seed })
    }

    /// Optimizer steps: ⌈total / batch⌉.
    pub fn steps(&self) -> usize {
        self.total.div_ceil(self.batch)
    }

    /// Window visits in all (`passes × windows`, rounded).
    pub fn visits(&self) -> usize {
        self.total
    }

    /// Passes over the data this schedule makes.
    pub fn passes(&self) -> f64 {
        self.total as f64 / self.windows as f64
    }

    /// The windows of every batch, in order.
    pub fn batches(&self) -> impl Iterator<Item = Vec<usize>> + '_ {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let mut epoch = 0u64;
        let mut order: Vec<usize> = Vec::new();
        let mut at = 0;
        let mut left = self.total;
        std::iter::from_fn(move || {
            if left == 0 {
                return None;
            }
            let mut batch = Vec::with_capacity(self.batch.min(left));
            while batch.len() < self.batch && left > 0 {
                if at == order.len() {
                    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed);
                    rng.set_stream(epoch);
                    order = (0..self.windows).collect();
                    order.shuffle(&mut rng);
                    epoch += 1;
                    at = 0;
                }
                batch.push(order[at]);
                at += 1;
                left -= 1;
            }
            Some(batch)
        })
    }
}
