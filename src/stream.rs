//! A training stream: an ordered list of documents taken from token files, and the
//! context windows a model reads them in.
//!
//! Training mixtures are lists of whole documents taken from several token files
//! (the real split and synthetic corpora); nothing is copied. Windows are aligned to
//! documents, so every document starts in training as the sampler starts it: from its
//! start token (`<|endoftext|>`, or a tokenizer's BOS) at position 0, with nothing of
//! another document in view. Document d, with n tokens (its end token included when it
//! was ended), is read as the n + 1 tokens `start, t_1, …, t_n`; its window j holds
//! positions j·C … j·C + C as inputs and the next tokens as targets, so every one of
//! its n tokens is a target exactly once, the first one predicted from the start token
//! alone. A document's last window is filled up with ignored targets (`IGNORE`), which
//! the loss skips. A document cut at the length cap has no end token, so no window ever
//! teaches an end where the model wrote none.
use crate::tokenizer::Delimiters;
use crate::tokens::TokenFile;
use anyhow::{bail, Result};
use std::ops::Range;
use std::sync::{Arc, OnceLock};

/// The target of a padded position: cross-entropy's ignored index.
pub const IGNORE: i64 = -100;

#[derive(Clone)]
pub struct TokenStream {
    files: Vec<Arc<TokenFile>>,
    /// Documents in stream order: (file index, token range). A range ends with the end
    /// token exactly when its document was ended.
    docs: Vec<(usize, Range<usize>)>,
    len: usize,
    delimiters: Delimiters,
    /// (context length, index of each document's first window, then the total).
    first_windows: OnceLock<(usize, Vec<usize>)>,
}

impl TokenStream {
    pub fn new(delimiters: impl Into<Delimiters>) -> Self {
        Self {
            files: Vec::new(),
            docs: Vec::new(),
            len: 0,
            delimiters: delimiters.into(),
            first_windows: OnceLock::new(),
        }
    }

    /// A whole file as a stream, one document per run of tokens ending with the end
    /// token (a real split, where every document was ended).
    pub fn from_file(file: Arc<TokenFile>, delimiters: impl Into<Delimiters>) -> Self {
        let delimiters = delimiters.into();
        let mut s = Self::new(delimiters);
        let ranges = crate::tokens::document_ranges(file.iter(), delimiters.end);
        let idx = s.add_file(file);
        for r in ranges {
            s.push(idx, r);
        }
        s
    }

    /// A stream of the documents `ranges` of one file.
    pub fn of_ranges(
        file: Arc<TokenFile>,
        ranges: impl IntoIterator<Item = Range<usize>>,
        delimiters: impl Into<Delimiters>,
    ) -> Self {
        let mut s = Self::new(delimiters);
        let f = s.add_file(file);
        for r in ranges {
            s.push(f, r);
        }
        s
    }

    pub fn add_file(&mut self, file: Arc<TokenFile>) -> usize {
        if let Some(i) = self.files.iter().position(|f| Arc::ptr_eq(f, &file)) {
            return i;
        }
        self.files.push(file);
        self.files.len() - 1
    }

    /// Appends one document: `range` of file `file`.
    pub fn push(&mut self, file: usize, range: Range<usize>) {
        if range.is_empty() {
            return;
        }
        self.len += range.len();
        self.docs.push((file, range));
        self.first_windows = OnceLock::new();
    }

    /// Tokens of all documents (end tokens included, start tokens not).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn documents(&self) -> usize {
        self.docs.len()
    }

    pub fn delimiters(&self) -> Delimiters {
        self.delimiters
    }

    /// The same documents, started and ended by `delimiters`.
    pub fn with_delimiters(mut self, delimiters: Delimiters) -> Self {
        self.delimiters = delimiters;
        self
    }

    /// Appends positions `offset..offset+n` of the documents' tokens, concatenated in
    /// order, to `out`.
    pub fn read(&self, offset: usize, n: usize, out: &mut Vec<i64>) {
        let (mut skip, mut left) = (offset, n);
        for (f, r) in &self.docs {
            if left == 0 {
                break;
            }
            if skip >= r.len() {
                skip -= r.len();
                continue;
            }
            let take = (r.len() - skip).min(left);
            self.files[*f].extend_i64(r.start + skip..r.start + skip + take, out);
            left -= take;
            skip = 0;
        }
    }

    /// Feeds every document's length and tokens to `h`, so two streams with the same
    /// tokens cut into other documents hash apart.
    pub fn hash_into(&self, h: &mut crate::mix::Fnv1a) {
        let mut buf = Vec::new();
        for (f, r) in &self.docs {
            h.add(r.len() as u64);
            for chunk in r.clone().step_by(1 << 20) {
                buf.clear();
                self.files[*f].extend_i64(chunk..(chunk + (1 << 20)).min(r.end), &mut buf);
                for &t in &buf {
                    h.add(t as u64);
                }
            }
        }
    }

    fn first_windows(&self, block: usize) -> std::borrow::Cow<'_, [usize]> {
        let build = || {
            let mut at = Vec::with_capacity(self.docs.len() + 1);
            let mut total = 0;
            for (_, r) in &self.docs {
                at.push(total);
                total += r.len().div_ceil(block);
            }
            at.push(total);
            at
        };
        let (cached, windows) = self.first_windows.get_or_init(|| (block, build()));
        if *cached == block {
            std::borrow::Cow::Borrowed(windows)
        } else {
            std::borrow::Cow::Owned(build())
        }
    }

    /// Context windows of `block` tokens, aligned to documents (see the module
    /// documentation): ⌈n / block⌉ for a document of n tokens.
    pub fn window_count(&self, block: usize) -> usize {
        *self.first_windows(block).last().unwrap_or(&0)
    }

    /// Window `w`'s document and its first position in `start, t_1, …, t_n`.
    fn locate(first: &[usize], w: usize, block: usize) -> (usize, usize) {
        let d = first.partition_point(|&f| f <= w) - 1;
        (d, (w - first[d]) * block)
    }

    /// The document (in the order documents were pushed) window `w` reads.
    pub fn window_document(&self, w: usize, block: usize) -> usize {
        Self::locate(&self.first_windows(block), w, block).0
    }

    /// Targets (tokens predicted, padding excluded) of window `w`.
    pub fn window_targets(&self, w: usize, block: usize) -> usize {
        let (d, from) = Self::locate(&self.first_windows(block), w, block);
        (self.docs[d].1.len() - from).min(block)
    }

    /// Inputs and targets (each `windows.len() × block`, row-major) of the given
    /// windows; positions after a document's last token hold the start token as input
    /// and [`IGNORE`] as target.
    pub fn windows(&self, windows: &[usize], block: usize) -> (Vec<i64>, Vec<i64>) {
        let first = self.first_windows(block);
        let start = self.delimiters.start as i64;
        let mut x = Vec::with_capacity(windows.len() * block);
        let mut y = Vec::with_capacity(windows.len() * block);
        let mut seq = Vec::with_capacity(block + 1);
        for &w in windows {
            // Window j of the document reads positions j·block ..= j·block + block of
            // `start, t_1, …, t_n`, as far as they exist.
            let (d, from) = Self::locate(&first, w, block);
            let (f, r) = &self.docs[d];
            let to = (from + block + 1).min(r.len() + 1);
            seq.clear();
            if from == 0 {
                seq.push(start);
                self.files[*f].extend_i64(r.start..r.start + to - 1, &mut seq);
            } else {
                self.files[*f].extend_i64(r.start + from - 1..r.start + to - 1, &mut seq);
            }
            let targets = seq.len() - 1;
            x.extend_from_slice(&seq[..targets]);
            x.extend(std::iter::repeat_n(start, block - targets));
            y.extend_from_slice(&seq[1..]);
            y.extend(std::iter::repeat_n(IGNORE, block - targets));
        }
        (x, y)
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
