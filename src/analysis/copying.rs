//! Copying of the real training set R: how much of a corpus is R verbatim.
//!
//! Definitions (one place, as for every other measure):
//! - A corpus's documents are its tokens between end tokens (the end token excluded).
//! - The match at a position of a document is the longest run of the document's tokens
//!   from there that occurs somewhere in R (found with a suffix array over R).
//! - `copied_ngrams_N` (N = 4, 8, 16, 32): the share of the corpus's N-grams (N
//!   consecutive tokens inside one document) that occur verbatim in R, that is whose
//!   position's match is at least N tokens. NaN when no document holds N tokens.
//! - `longest_match_median`, `longest_match_p90`: the median and the 90th percentile,
//!   over documents, of a document's longest match in R, counted up to
//!   [`LONGEST_MATCH_CAP`] tokens (a longer match reads as the cap).
//!
//! R's own documents are copied entirely (1 for every share); a real document R never
//! held, the noise floor, shows how much ordinary text repeats R by chance. Read a
//! corpus against that floor: one that repeats fewer of R's 4-grams than real text
//! does was written by a model that has not learned R's phrases (a weak one), and
//! its near-zero longer shares say that, not that the loop avoids copying.

/// Tokens up to which a document's longest match is counted.
pub const LONGEST_MATCH_CAP: usize = 256;

/// The N of the `copied_ngrams_N` shares.
pub const COPY_NGRAMS: [usize; 4] = [4, 8, 16, 32];

/// R's tokens and their suffix array.
#[derive(Debug, Clone)]
pub struct CopyIndex {
    text: Vec<u32>,
    suffixes: Vec<u32>,
}

impl CopyIndex {
    /// Builds the suffix array of `text` by prefix doubling (O(n log² n), no worse on
    /// repetitive text).
    pub fn new(text: &[u32]) -> Self {
        let n = text.len();
        let mut suffixes: Vec<u32> = (0..n as u32).collect();
        let mut rank: Vec<u64> = text.iter().map(|&t| u64::from(t) + 1).collect();
        let mut next = vec![0u64; n];
        let mut k = 1;
        // Each round sorts by the first 2k tokens, until every suffix has its own rank.
        while n > 1 && k < 2 * n {
            let key = |i: u32| {
                let i = i as usize;
                (rank[i], if i + k < n { rank[i + k] } else { 0 })
            };
            suffixes.sort_unstable_by_key(|&i| key(i));
            next[suffixes[0] as usize] = 1;
            for w in 1..n {
                let same = key(suffixes[w]) == key(suffixes[w - 1]);
                next[suffixes[w] as usize] = next[suffixes[w - 1] as usize] + u64::from(!same);
            }
            std::mem::swap(&mut rank, &mut next);
            if rank[suffixes[n - 1] as usize] as usize == n {
                break;
            }
            k *= 2;
        }
        Self { text: text.to_vec(), suffixes }
    }

    /// Length of the longest prefix of `query` (at most `cap` tokens) that occurs in the text.
    pub fn longest_prefix(&self, query: &[u32], cap: usize) -> usize {
        let q = &query[..query.len().min(cap)];
        if q.is_empty() || self.suffixes.is_empty() {
            return 0;
        }
        let suffix = |w: usize| &self.text[self.suffixes[w] as usize..];
        // The first suffix not below q: the longest match is with it or the one before.
        let at = self.suffixes.partition_point(|&s| &self.text[s as usize..] < q);
        let common = |w: usize| suffix(w).iter().zip(q).take_while(|(a, b)| a == b).count();
        let mut best = 0;
        if at < self.suffixes.len() {
            best = common(at);
        }
        if at > 0 {
            best = best.max(common(at - 1));
        }
        best
    }

    /// Whether `query` occurs in the text.
    pub fn contains(&self, query: &[u32]) -> bool {
        self.longest_prefix(query, query.len()) == query.len()
    }
}

/// The copying measures of one corpus (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Copying {
    /// `copied_ngrams_N` for N in [`COPY_NGRAMS`].
    pub copied_ngrams: [f64; 4],
    pub longest_match_median: f64,
    pub longest_match_p90: f64,
}

/// Measures the copying of `tokens` (documents ended by `eot`) from the indexed R.
pub fn measure(index: &CopyIndex, tokens: &[u32], eot: u32) -> Copying {
    let short = *COPY_NGRAMS.iter().max().expect("four lengths");
    let (mut copied, mut total) = ([0u64; 4], [0u64; 4]);
    let mut longest = Vec::new();
    for doc in tokens.split(|&t| t == eot).filter(|d| !d.is_empty()) {
        // Matches up to the longest N-gram length, at every position.
        for i in 0..doc.len() {
            let m = index.longest_prefix(&doc[i..], short);
            for (j, &n) in COPY_NGRAMS.iter().enumerate() {
                if i + n <= doc.len() {
                    total[j] += 1;
                    copied[j] += u64::from(m >= n);
                }
            }
        }
        longest.push(longest_match(index, doc) as f64);
    }
    let share = |j: usize| if total[j] == 0 { f64::NAN } else { copied[j] as f64 / total[j] as f64 };
    longest.sort_by(f64::total_cmp);
    Copying {
        copied_ngrams: [share(0), share(1), share(2), share(3)],
        longest_match_median: quantile(&longest, 0.5),
        longest_match_p90: quantile(&longest, 0.9),
    }
}

/// A document's longest match in R, up to [`LONGEST_MATCH_CAP`]: the best so far only
/// grows, so each position asks whether the match one token longer occurs.
fn longest_match(index: &CopyIndex, doc: &[u32]) -> usize {
    let mut best = 0;
    for i in 0..doc.len() {
        if doc.len() - i <= best || best >= LONGEST_MATCH_CAP {
            break;
        }
        while best < LONGEST_MATCH_CAP && i + best < doc.len() && index.contains(&doc[i..i + best + 1]) {
            best += 1;
        }
    }
    best
}

use super::scores::quantile;

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: u64) -> impl FnMut() -> u64 {
        let mut s = seed;
        move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            s >> 33
        }
    }

    #[test]
    fn the_suffix_array_finds_what_a_scan_finds() {
        let mut r = lcg(3);
        // Few symbols: long repeats, the hard case for a suffix sort.
        let text: Vec<u32> = (0..3000).map(|_| (r() % 3) as u32).collect();
        let index = CopyIndex::new(&text);
        for s in index.suffixes.windows(2) {
            assert!(text[s[0] as usize..] < text[s[1] as usize..]);
        }
        for _ in 0..200 {
            let len = 1 + (r() % 20) as usize;
            let q: Vec<u32> = (0..len).map(|_| (r() % 3) as u32).collect();
            let scan = (0..=len).rev().find(|&l| text.windows(l.max(1)).any(|w| l == 0 || w == &q[..l])).unwrap();
            assert_eq!(index.longest_prefix(&q, len), scan, "{q:?}");
        }
    }

    #[test]
    fn r_copies_itself_and_shuffled_tokens_copy_nothing() {
        let mut r = lcg(5);
        let eot = 0;
        let mut real = Vec::new();
        for _ in 0..40 {
            real.extend((0..60).map(|_| 1 + (r() % 500) as u32));
            real.push(eot);
        }
        let index = CopyIndex::new(&real);
        let own = measure(&index, &real, eot);
        assert_eq!(own.copied_ngrams, [1.0; 4]);
        assert_eq!(own.longest_match_median, 60.0);
        let mut shuffled: Vec<u32> = real.iter().copied().filter(|&t| t != eot).collect();
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, (r() % (i as u64 + 1)) as usize);
        }
        let noise = measure(&index, &shuffled, eot);
        assert!(noise.copied_ngrams[1] < 0.01, "{noise:?}");
        assert!(noise.longest_match_median < 8.0, "{noise:?}");
    }
}
