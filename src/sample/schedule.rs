//! Which documents the sampler decodes, and when: the ledger of the documents started,
//! finished and written, and the rules that keep the batch full without decoding much
//! that the corpus will not hold. Only speed depends on these rules; what is written
//! is documents 0..M, whatever they decide.
use super::decoder::{Engine, BLOCK_STEPS_MAX};
use super::Document;

/// What the scheduler knows about the documents started so far.
pub(super) struct Ledger {
    target: usize,
    /// Documents 0..written have been handed to the writer, holding `written_tokens`.
    written: u64,
    written_tokens: usize,
    /// Finished documents waiting for their predecessors, by index.
    waiting: std::collections::BTreeMap<u64, Document>,
    waiting_tokens: usize,
    /// Index of the next document to start.
    next: u64,
    /// Documents abandoned while they looked unneeded ([`Ledger::unneeded`]), started
    /// again first if they turn out needed: a document's text depends only on its own
    /// random stream, so a restart writes it again exactly.
    restart: std::collections::BTreeSet<u64>,
    /// Tokens decoded for abandoned documents.
    abandoned_tokens: usize,
    /// Corpus tokens of every finished document, sorted (for expected lengths).
    finished_lengths: Vec<usize>,
    /// Standard deviations of caution before starting a document ([`Ledger::should_start`]).
    margin: f64,
}

/// A document in flight is abandoned once the documents before it already hold this
/// many times the target (by their current lengths, which only grow; the margin covers
/// re-encoding, which can write a document in fewer tokens than were sampled).
const UNNEEDED_OVER_TARGET: f64 = 1.25;

impl Ledger {
    /// A ledger for a corpus of `target` tokens decoded by `engine`.
    pub(super) fn new(target: usize, engine: Engine) -> Self {
        Self {
            target,
            written: 0,
            written_tokens: 0,
            waiting: Default::default(),
            waiting_tokens: 0,
            next: 0,
            restart: Default::default(),
            abandoned_tokens: 0,
            finished_lengths: Vec::new(),
            margin: match engine {
                // A row costs about its share of a step's arithmetic and a step has little
                // fixed cost: a document started for nothing costs its tokens, one started
                // late costs little.
                Engine::Native => 4.0,
                // A step costs about the same at any batch: keep the batch full.
                Engine::Libtorch => 0.0,
            },
        }
    }

    /// Document `index` finished: it waits until its predecessors are written.
    pub(super) fn finished(&mut self, index: u64, doc: Document) {
        let tokens = doc.corpus_tokens();
        let at = self.finished_lengths.partition_point(|&l| l < tokens);
        self.finished_lengths.insert(at, tokens);
        self.waiting_tokens += tokens;
        self.waiting.insert(index, doc);
    }

    /// The next document in index order, when it has finished; [`Ledger::wrote`] must
    /// follow with the tokens it took in the corpus.
    pub(super) fn next_to_write(&mut self) -> Option<Document> {
        let doc = self.waiting.remove(&self.written)?;
        self.waiting_tokens -= doc.corpus_tokens();
        Some(doc)
    }

    /// The document [`Ledger::next_to_write`] gave took `tokens` in the corpus.
    pub(super) fn wrote(&mut self, tokens: usize) {
        self.written += 1;
        self.written_tokens += tokens;
    }

    /// Document `index` stops decoding after `tokens` tokens; it is started again
    /// first if it turns out needed.
    pub(super) fn abandon(&mut self, index: u64, tokens: usize) {
        self.abandoned_tokens += tokens;
        self.restart.insert(index);
    }

    /// Tokens decoded for documents outside the corpus so far: finished ones still
    /// waiting (beyond M once the target is reached) and abandoned ones.
    pub(super) fn discarded_tokens(&self) -> usize {
        self.waiting.values().map(|d| d.tokens.len()).sum::<usize>() + self.abandoned_tokens
    }

    /// The document to start next: an abandoned one first, else a new one.
    pub(super) fn next_document(&mut self) -> u64 {
        match self.restart.pop_first() {
            Some(j) => j,
            None => {
                self.next += 1;
                self.next - 1
            }
        }
    }

    /// Which of the documents in flight (`(row, document, tokens so far)`) are very
    /// likely beyond the corpus: the documents before them (written, finished or in
    /// flight, at their current lengths) already hold [`UNNEEDED_OVER_TARGET`] times
    /// the target. Without this a model that never ends its documents keeps a whole
    /// batch decoding to the length cap for the two or three documents the corpus
    /// needs; with it, rows are abandoned as the documents before them grow. Only speed
    /// depends on it: an abandoned document that turns out needed starts again.
    pub(super) fn unneeded(&self, in_flight: &[(usize, u64, usize)]) -> Vec<usize> {
        let mut before: Vec<(u64, usize)> = self.waiting.iter().map(|(&j, d)| (j, d.corpus_tokens())).collect();
        before.extend(in_flight.iter().map(|&(_, j, l)| (j, l)));
        before.sort_unstable();
        let limit = UNNEEDED_OVER_TARGET * self.target as f64;
        let (mut sum, mut at) = (self.written_tokens, 0);
        let mut out = Vec::new();
        let mut rows: Vec<&(usize, u64, usize)> = in_flight.iter().collect();
        rows.sort_unstable_by_key(|r| r.1);
        for &&(row, j, _) in &rows {
            while at < before.len() && before[at].0 < j {
                sum += before[at].1;
                at += 1;
            }
            if sum as f64 >= limit {
                out.push(row);
            }
        }
        out
    }

    /// Steps per [`Decoder::decode_block`]. A row whose document ends waits, idle, for
    /// the end of the block before its next document starts: with documents ending at a
    /// rate h per decoded token, a block of k steps idles about k·h/2 of its row-steps.
    /// k = 1/(32h) keeps that near 1.6%, at most 64 steps. h is estimated as documents
    /// finished over every token decoded so far (`in_flight` holds the tokens of the
    /// documents still running), the estimate of a geometric rate that counts the long
    /// documents still running (finished ones alone are the short ones early on); before
    /// any has finished, as if one just had. Only speed depends on it.
    pub(super) fn block_steps(&self, in_flight: usize) -> usize {
        let decoded = self.finished_lengths.iter().sum::<usize>() + in_flight;
        (decoded / (32 * self.finished_lengths.len().max(1))).clamp(1, BLOCK_STEPS_MAX)
    }

    /// Whether document `self.next` is likely needed: the documents before it are
    /// expected to hold fewer than the target. Each unfinished one (`in_flight` holds
    /// their current corpus tokens) counts at its expected final length given its
    /// current one. Only speed depends on this guess: a document that turns out
    /// unneeded is discarded (decoded for nothing), and one that turns out needed is
    /// started later (the corpus waits for it).
    ///
    /// With a `margin` of z, the documents before it must be expected to fall short by
    /// more than z standard deviations of their remaining lengths, each unfinished
    /// document's remaining length counted with a standard deviation equal to its
    /// expected value (as for lengths that end at random).
    pub(super) fn should_start(&self, in_flight: &[usize]) -> bool {
        let (mut expected, mut variance) = (0.0, 0.0);
        for &l in in_flight {
            let e = self.expected_length(l, in_flight);
            expected += e;
            variance += (e - l as f64).powi(2);
        }
        (self.written_tokens + self.waiting_tokens) as f64 + expected + self.margin * variance.sqrt()
            < self.target as f64
    }

    /// Expected final length of a document that has `l` tokens so far: `l` plus the
    /// mean excess over `l` of the documents seen to grow past `l`, that is their tokens
    /// beyond `l` (finished ones and those still running) over the finished ones among
    /// them. Lengths ending as if at random (geometric) then give `l` plus the overall
    /// mean, lengths bunched around a typical value give about that value. Before any
    /// document that long has finished: `l` plus the mean over all documents.
    fn expected_length(&self, l: usize, in_flight: &[usize]) -> f64 {
        let running_beyond = |from: usize| in_flight.iter().map(|&x| x.saturating_sub(from)).sum::<usize>();
        let at = self.finished_lengths.partition_point(|&x| x <= l);
        let longer = &self.finished_lengths[at..];
        if !longer.is_empty() {
            let beyond = longer.iter().map(|&x| x - l).sum::<usize>() + running_beyond(l);
            return l as f64 + beyond as f64 / longer.len() as f64;
        }
        // Mean length by "total time on test": every token decoded so far over the
        // documents finished, which counts the long documents still running (a mean of
        // finished documents alone is biased short early on).
        let finished = self.finished_lengths.len();
        let decoded = self.finished_lengths.iter().sum::<usize>() + in_flight.iter().sum::<usize>();
        l as f64 + if finished > 0 { decoded as f64 / finished as f64 } else { 0.0 }
    }
}
