//! Diversity of a corpus: documents and their length, distinct-2/3, and the
//! within-document 4-gram repetition rate (definitions in `analysis/mod.rs`).
//!
//! N-grams are packed exactly into integers (⌈log₂ V⌉ bits per token), so
//! uniqueness is exact, never a hash collision away from wrong. Corpus-wide
//! uniqueness is counted with a bitset over the key space when it is small
//! (≤ 26 bits), with buckets of per-bucket bitsets up to 40 bits (trigrams of
//! vocabularies up to 8192), and with a radix sort (u64) or a comparison sort
//! (u128) beyond. Within-document repetition uses a small stamped hash set.

/// `part` of `total` n-grams: the unique ones (distinct-n) or the repeated ones
/// (repetition rate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NgramCount {
    pub part: u64,
    pub total: u64,
}

impl NgramCount {
    /// part / total, NaN when there is no n-gram at all.
    pub fn ratio(&self) -> f64 {
        if self.total == 0 {
            f64::NAN
        } else {
            self.part as f64 / self.total as f64
        }
    }
}

/// The diversity measures of one corpus.
#[derive(Debug, Clone, PartialEq)]
pub struct Diversity {
    pub documents: u64,
    /// Tokens per document, end-of-text excluded (NaN without documents).
    pub mean_document_tokens: f64,
    /// Unique / total 2-grams.
    pub distinct_2: NgramCount,
    /// Unique / total 3-grams.
    pub distinct_3: NgramCount,
    /// Repeated-within-document / total 4-grams.
    pub repetition_4: NgramCount,
}

impl Diversity {
    pub fn measure(tokens: &[u32], eot: u32, vocab_size: usize) -> Self {
        let documents = documents(tokens, eot);
        let document_count = documents.clone().count() as u64;
        let content_tokens: u64 = documents.map(|d| d.len() as u64).sum();
        Diversity {
            documents: document_count,
            mean_document_tokens: if document_count == 0 {
                f64::NAN
            } else {
                content_tokens as f64 / document_count as f64
            },
            distinct_2: distinct_ngrams(tokens, eot, 2, vocab_size),
            distinct_3: distinct_ngrams(tokens, eot, 3, vocab_size),
            repetition_4: repetition_rate(tokens, eot, 4, vocab_size),
        }
    }
}

/// The documents' contents (end-of-text removed): every end-of-text token ends a
/// document, possibly an empty one; a trailing run without one is a document too.
fn documents(tokens: &[u32], eot: u32) -> impl Iterator<Item = &[u32]> + Clone {
    // `split` yields one more piece than there are separators: after a final
    // end-of-text (or in an empty corpus) that last piece is empty and is no document.
    let pieces = tokens.iter().filter(|&&t| t == eot).count() + 1;
    let ends_without_document = tokens.last().is_none_or(|&t| t == eot);
    tokens.split(move |&t| t == eot).take(pieces - usize::from(ends_without_document))
}

/// Bits needed to store any id below `vocab_size`.
fn bits_per_token(vocab_size: usize) -> u32 {
    (usize::BITS - vocab_size.saturating_sub(1).leading_zeros()).max(1)
}

/// An integer an n-gram is packed into: u64 while n·bits ≤ 64, else u128.
trait Key: Copy + Ord + Default {
    /// All ones in the low `bits` bits.
    fn mask(bits: u32) -> Self;
    /// Shifts `token` in at the low end and drops what falls off the `mask`.
    fn push(self, token: u32, bits: u32, mask: Self) -> Self;
    /// A well-mixed 64-bit hash (multiplicative; the high bits are the good ones).
    fn hash(self) -> u64;
}

impl Key for u64 {
    fn mask(bits: u32) -> Self {
        if bits >= 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        }
    }
    #[inline]
    fn push(self, token: u32, bits: u32, mask: Self) -> Self {
        ((self << bits) | u64::from(token)) & mask
    }
    #[inline]
    fn hash(self) -> u64 {
        self.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

impl Key for u128 {
    fn mask(bits: u32) -> Self {
        if bits >= 128 {
            u128::MAX
        } else {
            (1u128 << bits) - 1
        }
    }
    #[inline]
    fn push(self, token: u32, bits: u32, mask: Self) -> Self {
        ((self << bits) | u128::from(token)) & mask
    }
    #[inline]
    fn hash(self) -> u64 {
        ((self as u64) ^ ((self >> 64) as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

/// Calls `emit` with the packed key of every n-gram of one document, left to right.
#[inline]
fn for_each_ngram<K: Key>(document: &[u32], n: usize, bits: u32, mut emit: impl FnMut(K)) {
    let mask = K::mask(bits * n as u32);
    let mut key = K::default();
    for (i, &t) in document.iter().enumerate() {
        key = key.push(t, bits, mask);
        if i + 1 >= n {
            emit(key);
        }
    }
}

/// Bits of an n-gram's key; keys are at most 128 bits (4-grams of any u32 vocabulary).
fn checked_key_bits(n: usize, bits: u32) -> u32 {
    assert!((1..=128).contains(&(n as u64 * bits as u64)), "{n}-grams of {bits}-bit tokens do not fit a 128-bit key");
    n as u32 * bits
}

/// A bitset over the whole key space is used while it stays small (≤ 8 MiB).
const BITSET_MAX_BITS: u32 = 26;

/// Unique / total n-grams over the whole corpus, n-grams never spanning an end-of-text.
pub fn distinct_ngrams(tokens: &[u32], eot: u32, n: usize, vocab_size: usize) -> NgramCount {
    let bits = bits_per_token(vocab_size);
    let key_bits = checked_key_bits(n, bits);
    if key_bits <= BITSET_MAX_BITS {
        let mut seen = vec![0u64; (1usize << key_bits).div_ceil(64)];
        let mut count = NgramCount::default();
        for doc in documents(tokens, eot) {
            for_each_ngram::<u64>(doc, n, bits, |k| {
                let (word, bit) = ((k >> 6) as usize, 1u64 << (k & 63));
                count.part += u64::from(seen[word] & bit == 0);
                count.total += 1;
                seen[word] |= bit;
            });
        }
        count
    } else if key_bits <= BUCKETED_MAX_BITS {
        distinct_bucketed(tokens, eot, n, bits)
    } else if key_bits <= 64 {
        let mut keys: Vec<u64> = Vec::with_capacity(tokens.len());
        for doc in documents(tokens, eot) {
            for_each_ngram::<u64>(doc, n, bits, |k| keys.push(k));
        }
        let total = keys.len() as u64;
        radix_sort(&mut keys, key_bits);
        NgramCount { part: count_runs(&keys), total }
    } else {
        let mut keys: Vec<u128> = Vec::with_capacity(tokens.len());
        for doc in documents(tokens, eot) {
            for_each_ngram::<u128>(doc, n, bits, |k| keys.push(k));
        }
        let total = keys.len() as u64;
        keys.sort_unstable();
        NgramCount { part: count_runs(&keys), total }
    }
}

/// Keys split into a bucket (high bits, at most 2^16 buckets) and a low part that
/// indexes a per-bucket bitset of at most 2^24 bits (2 MiB).
const BUCKET_BITS_MAX: u32 = 16;
const LOW_BITS_MAX: u32 = 24;
const BUCKETED_MAX_BITS: u32 = BUCKET_BITS_MAX + LOW_BITS_MAX;

/// Distinct n-grams for keys of 27..=40 bits (trigrams of vocabularies up to 8192):
/// a counting pass scatters each key's low bits, as u32, into its bucket, then each
/// bucket is deduplicated with one bitset that is cleared word by word after use.
/// Half the memory of sorting u64 keys and two sequential passes instead of three
/// or four radix passes.
fn distinct_bucketed(tokens: &[u32], eot: u32, n: usize, bits: u32) -> NgramCount {
    let key_bits = bits * n as u32;
    let low_bits = key_bits.saturating_sub(BUCKET_BITS_MAX).max(key_bits.min(22));
    debug_assert!(low_bits <= LOW_BITS_MAX && key_bits - low_bits <= BUCKET_BITS_MAX);
    let low_mask = (1u64 << low_bits) - 1;
    let buckets = 1usize << (key_bits - low_bits);
    let mut offsets = vec![0usize; buckets + 1];
    for doc in documents(tokens, eot) {
        for_each_ngram::<u64>(doc, n, bits, |k| offsets[(k >> low_bits) as usize + 1] += 1);
    }
    for b in 0..buckets {
        offsets[b + 1] += offsets[b];
    }
    let total = offsets[buckets];
    let mut low = vec![0u32; total];
    let mut next = offsets.clone();
    for doc in documents(tokens, eot) {
        for_each_ngram::<u64>(doc, n, bits, |k| {
            let b = (k >> low_bits) as usize;
            low[next[b]] = (k & low_mask) as u32;
            next[b] += 1;
        });
    }
    let mut seen = vec![0u64; (1usize << low_bits).div_ceil(64)];
    let mut unique = 0u64;
    for b in 0..buckets {
        let members = &low[offsets[b]..offsets[b + 1]];
        for &v in members {
            let (word, bit) = ((v >> 6) as usize, 1u64 << (v & 63));
            unique += u64::from(seen[word] & bit == 0);
            seen[word] |= bit;
        }
        for &v in members {
            seen[(v >> 6) as usize] = 0;
        }
    }
    NgramCount { part: unique, total: total as u64 }
}

/// Repeated / total n-grams, where an n-gram is repeated when the same n-gram
/// occurred earlier in the same document.
pub fn repetition_rate(tokens: &[u32], eot: u32, n: usize, vocab_size: usize) -> NgramCount {
    let bits = bits_per_token(vocab_size);
    if checked_key_bits(n, bits) <= 64 {
        repetition_with::<u64>(tokens, eot, n, bits)
    } else {
        repetition_with::<u128>(tokens, eot, n, bits)
    }
}

fn repetition_with<K: Key>(tokens: &[u32], eot: u32, n: usize, bits: u32) -> NgramCount {
    let mut table = SeenInDocument::<K>::default();
    let mut count = NgramCount::default();
    for doc in documents(tokens, eot) {
        table.start_document(doc.len());
        for_each_ngram::<K>(doc, n, bits, |k| {
            count.total += 1;
            count.part += u64::from(!table.insert(k));
        });
    }
    count
}

/// An open-addressing set of the n-grams seen in the current document. Slots are
/// stamped with the document's number, so starting a document costs nothing:
/// a slot stamped by an earlier document is empty.
struct SeenInDocument<K> {
    keys: Vec<K>,
    stamps: Vec<u32>,
    stamp: u32,
    /// 64 − log₂(capacity): the hash's high bits pick the slot.
    shift: u32,
}

impl<K: Key> Default for SeenInDocument<K> {
    fn default() -> Self {
        SeenInDocument { keys: Vec::new(), stamps: Vec::new(), stamp: 0, shift: 64 }
    }
}

impl<K: Key> SeenInDocument<K> {
    /// Empties the set, with room for `ngrams` keys at a load of at most ½.
    fn start_document(&mut self, ngrams: usize) {
        let capacity = (2 * ngrams).next_power_of_two().max(16);
        if capacity > self.stamps.len() || self.stamp == u32::MAX {
            let capacity = capacity.max(self.stamps.len());
            self.keys = vec![K::default(); capacity];
            self.stamps = vec![0; capacity];
            self.stamp = 0;
            self.shift = 64 - capacity.trailing_zeros();
        }
        self.stamp += 1;
    }

    /// Adds `key`; false when it was already there.
    #[inline]
    fn insert(&mut self, key: K) -> bool {
        let mask = self.stamps.len() - 1;
        let mut slot = (key.hash() >> self.shift) as usize;
        loop {
            if self.stamps[slot] != self.stamp {
                self.stamps[slot] = self.stamp;
                self.keys[slot] = key;
                return true;
            }
            if self.keys[slot] == key {
                return false;
            }
            slot = (slot + 1) & mask;
        }
    }
}

/// Number of runs of equal values in a sorted slice (its distinct values).
fn count_runs<K: PartialEq>(sorted: &[K]) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    1 + sorted.windows(2).filter(|w| w[0] != w[1]).count() as u64
}

/// Least-significant-digit radix sort on the low `key_bits` bits, 11 bits a pass
/// (a 2048-entry histogram stays in L1 cache). All histograms come from one read
/// of the keys, so each pass is a single scatter.
fn radix_sort(keys: &mut Vec<u64>, key_bits: u32) {
    const DIGIT_BITS: u32 = 11;
    const BUCKETS: usize = 1 << DIGIT_BITS;
    let passes = key_bits.div_ceil(DIGIT_BITS) as usize;
    let digit = |k: u64, pass: usize| ((k >> (pass as u32 * DIGIT_BITS)) as usize) & (BUCKETS - 1);
    let mut histograms = vec![[0usize; BUCKETS]; passes];
    for &k in keys.iter() {
        for (pass, histogram) in histograms.iter_mut().enumerate() {
            histogram[digit(k, pass)] += 1;
        }
    }
    let mut scratch = vec![0u64; keys.len()];
    for (pass, histogram) in histograms.iter().enumerate() {
        // A digit shared by every key leaves the order as it is.
        if histogram.contains(&keys.len()) {
            continue;
        }
        let mut offsets = [0usize; BUCKETS];
        let mut start = 0;
        for (offset, &count) in offsets.iter_mut().zip(histogram.iter()) {
            *offset = start;
            start += count;
        }
        for &k in keys.iter() {
            let d = digit(k, pass);
            scratch[offsets[d]] = k;
            offsets[d] += 1;
        }
        std::mem::swap(keys, &mut scratch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radix_sort_matches_std_sort() {
        let mut keys: Vec<u64> = (0..10_000u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20).collect();
        let mut expected = keys.clone();
        expected.sort_unstable();
        radix_sort(&mut keys, 44);
        assert_eq!(keys, expected);
    }

    #[test]
    fn bits_cover_the_largest_id() {
        assert_eq!(bits_per_token(2), 1);
        assert_eq!(bits_per_token(2048), 11);
        assert_eq!(bits_per_token(2049), 12);
        assert_eq!(bits_per_token(65536), 16);
    }
}
