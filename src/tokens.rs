//! Token files: the on-disk form of every corpus (real splits and synthetic ones).
//!
//! Layout: a 16-byte header, then the tokens as little-endian unsigned integers.
//!
//! | bytes | content |
//! |---|---|
//! | 0..8  | magic `LMLTOKv1` |
//! | 8..12 | bytes per token, u32 LE: 2 when the vocabulary fits in u16, else 4 |
//! | 12..16| reserved, zero |
//!
//! With numpy: `np.memmap(path, dtype=np.uint16, mode="r", offset=16)`.
//! Files are read memory-mapped, so a corpus never has to fit in memory, and
//! written to a temporary name then renamed, so a half-written file never looks complete.
use anyhow::{bail, Context, Result};
use memmap2::Mmap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"LMLTOKv1";
const HEADER_LEN: usize = 16;

/// A read-only, memory-mapped token file.
pub struct TokenFile {
    path: PathBuf,
    map: Mmap,
    width: usize,
    len: usize,
}

impl TokenFile {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("cannot open token file {}", path.display()))?;
        let size = file.metadata()?.len() as usize;
        if size < HEADER_LEN {
            bail!("{} is not an lmloop token file (too short for the header)", path.display());
        }
        // SAFETY: token files are written once (temp name + rename) and never modified in place.
        let map = unsafe { Mmap::map(&file) }.with_context(|| format!("cannot map {}", path.display()))?;
        if &map[..8] != MAGIC {
            bail!("{} is not an lmloop token file (bad magic)", path.display());
        }
        let width = u32::from_le_bytes(map[8..12].try_into().unwrap()) as usize;
        if width != 2 && width != 4 {
            bail!("{} has an unsupported token width of {width} bytes", path.display());
        }
        if !(size - HEADER_LEN).is_multiple_of(width) {
            bail!("{} is truncated (payload is not a whole number of tokens)", path.display());
        }
        let len = (size - HEADER_LEN) / width;
        Ok(Self { path: path.to_path_buf(), map, width, len })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn payload(&self) -> &[u8] {
        &self.map[HEADER_LEN..]
    }

    #[inline]
    pub fn get(&self, i: usize) -> u32 {
        let p = self.payload();
        match self.width {
            2 => u16::from_le_bytes([p[2 * i], p[2 * i + 1]]) as u32,
            _ => u32::from_le_bytes(p[4 * i..4 * i + 4].try_into().unwrap()),
        }
    }

    /// Copies `range` into `out` as i64 (the dtype libtorch's embedding wants).
    pub fn extend_i64(&self, range: std::ops::Range<usize>, out: &mut Vec<i64>) {
        let p = self.payload();
        match self.width {
            2 => out.extend(
                p[2 * range.start..2 * range.end].chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as i64),
            ),
            _ => out.extend(
                p[4 * range.start..4 * range.end]
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes(c.try_into().unwrap()) as i64),
            ),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).map(move |i| self.get(i))
    }

    pub fn to_vec(&self) -> Vec<u32> {
        self.iter().collect()
    }

    /// Token counts over a vocabulary of `vocab_size`; out-of-range ids are an error.
    pub fn counts(&self, vocab_size: usize) -> Result<Vec<u64>> {
        let mut counts = vec![0u64; vocab_size];
        for t in self.iter() {
            match counts.get_mut(t as usize) {
                Some(c) => *c += 1,
                None => bail!("{} holds token id {t}, outside the vocabulary of {vocab_size}", self.path.display()),
            }
        }
        Ok(counts)
    }
}

/// Document boundaries: each document is a maximal run of tokens ending with `eot`
/// (a trailing run without `eot` is a document too). Returns half-open ranges that
/// include the terminating `eot`.
pub fn document_ranges(tokens: impl Iterator<Item = u32>, eot: u32) -> Vec<std::ops::Range<usize>> {
    document_ranges_with_cuts(tokens, eot, &[])
}

/// [`document_ranges`], where a document also ends at each offset in `cuts` (sorted):
/// the ends of the documents a synthetic corpus holds without an `eot`, because the
/// sampler cut them at the length cap (its manifest lists them).
pub fn document_ranges_with_cuts(
    tokens: impl Iterator<Item = u32>,
    eot: u32,
    cuts: &[usize],
) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    let mut n = 0;
    let mut cuts = cuts.iter().copied().peekable();
    for (i, t) in tokens.enumerate() {
        while let Some(c) = cuts.next_if(|&c| c <= i) {
            if c == i && start < i {
                ranges.push(start..i);
                start = i;
            }
        }
        n = i + 1;
        if t == eot {
            ranges.push(start..i + 1);
            start = i + 1;
        }
    }
    if start < n {
        ranges.push(start..n);
    }
    ranges
}

/// Bytes per token needed for a vocabulary.
pub fn width_for_vocab(vocab_size: usize) -> usize {
    if vocab_size <= u16::MAX as usize + 1 {
        2
    } else {
        4
    }
}

/// Streams tokens into `path` through a temporary file; `finish` renames it into place.
pub struct TokenWriter {
    out: BufWriter<File>,
    tmp: crate::durable::Pending,
    path: PathBuf,
    width: usize,
    written: usize,
}

impl TokenWriter {
    pub fn create(path: &Path, vocab_size: usize) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let tmp = crate::durable::Pending::of(path);
        let file = File::create(tmp.path()).with_context(|| format!("cannot create {}", tmp.path().display()))?;
        let mut w = Self {
            out: BufWriter::new(file),
            tmp,
            path: path.to_path_buf(),
            width: width_for_vocab(vocab_size),
            written: 0,
        };
        let header = [MAGIC.as_slice(), &(w.width as u32).to_le_bytes(), &0u32.to_le_bytes()].concat();
        w.out.write_all(&header).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(w)
    }

    pub fn push(&mut self, token: u32) -> Result<()> {
        let written = match self.width {
            2 => self.out.write_all(&(token as u16).to_le_bytes()),
            _ => self.out.write_all(&token.to_le_bytes()),
        };
        written.with_context(|| format!("cannot write {}", self.path.display()))?;
        self.written += 1;
        Ok(())
    }

    pub fn extend(&mut self, tokens: &[u32]) -> Result<()> {
        tokens.iter().try_for_each(|&t| self.push(t))
    }

    /// Flushes the file and moves it into place; a writer dropped before this removes
    /// its temporary.
    pub fn finish(self) -> Result<usize> {
        let Self { out, tmp, path, written, .. } = self;
        let file =
            out.into_inner().map_err(|e| e.into_error()).with_context(|| format!("cannot write {}", path.display()))?;
        file.sync_all().with_context(|| format!("cannot flush {} to disk", path.display()))?;
        drop(file);
        tmp.commit(&path)?;
        Ok(written)
    }
}

/// Writes a whole token file atomically.
pub fn write_tokens(path: &Path, tokens: &[u32], vocab_size: usize) -> Result<()> {
    let mut w = TokenWriter::create(path, vocab_size)?;
    w.extend(tokens)?;
    w.finish()?;
    Ok(())
}

/// Shannon entropy in nats of a count vector (0 for an empty one).
pub fn entropy_nats(counts: &[u64]) -> f64 {
    let total = counts.iter().sum::<u64>() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / total;
            -p * p.ln()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_both_widths() {
        let dir = tempfile::tempdir().unwrap();
        for vocab in [300usize, 70_000] {
            let p = dir.path().join(format!("t{vocab}.bin"));
            let toks: Vec<u32> = (0..1000).map(|i| (i * 37 % vocab) as u32).collect();
            write_tokens(&p, &toks, vocab).unwrap();
            let f = TokenFile::open(&p).unwrap();
            assert_eq!(f.to_vec(), toks);
            let mut v = Vec::new();
            f.extend_i64(10..20, &mut v);
            assert_eq!(v, toks[10..20].iter().map(|&t| t as i64).collect::<Vec<_>>());
        }
    }

    #[test]
    fn documents_end_with_eot() {
        let r = document_ranges([5, 6, 0, 7, 0, 8].into_iter(), 0);
        assert_eq!(r, vec![0..3, 3..5, 5..6]);
    }

    /// A document cut at the length cap has no end-of-text; the manifest's cut offsets
    /// keep it apart from the document after it.
    #[test]
    fn cut_documents_stay_apart_from_the_next() {
        let r = document_ranges_with_cuts([5, 6, 7, 8, 0, 9, 9].into_iter(), 0, &[2, 5, 7]);
        assert_eq!(r, vec![0..2, 2..5, 5..7]);
        let r = document_ranges_with_cuts([5, 0, 7].into_iter(), 0, &[0, 2]);
        assert_eq!(r, vec![0..2, 2..3]);
    }
}
