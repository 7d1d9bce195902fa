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
