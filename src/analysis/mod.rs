//! Analysis of a run: how far each synthetic corpus drifted from the real
//! training split, against what a perfect model would show (the noise floor and
//! the null model); which tokens vanished, when, and whether they came back; the
//! held-out loss by token frequency; and the HTML reports.
//!
//! Files (all under `analysis/RUN/`, every one written atomically):
//!
//! | file | holds |
//! |---|---|
//! | `drift.csv` | one row for the real training split (`generation` = `real`, `corpus` = `real-train`), one for the noise floor (`generation` = `noise-floor`, `corpus` = `real-sample`), then one row per generation k for the corpus S_{k+1} it sampled |
//! | `tokens.csv` | one row per vocabulary token: id, escaped text, real count, count in S_1, S_2, … (`gen_01`, `gen_02`, …), `vanish_generation`, `absent_corpora`, `absence_spells`, `longest_absence`, `reappeared` (`true`/`false`), `null_presence_probability` (the independence bound), `null_presence_real_documents` (the null); the absence and null columns are empty for tokens unseen in R |
//! | `reference.json` | `name`, `real_tokens` (\|R\|), `generation_size` (D), `noise_floor_tokens`, `noise_floor_source`, `real_null` (the null's draws): what the null model and the report need without the corpora |
//! | `loss_by_frequency.csv` | written by the generations loop, read here: `generation,bucket,min_real_count,max_real_count,target_tokens,mean_loss`, one row per generation k and bucket |
//! | `drift/real.toml`, `drift/noise-floor.toml`, `drift/gen-KK.toml` | cached drift rows, keyed by a fingerprint of the corpora they were computed from |
//! | `scores/gen-KK.csv`, `scores/gen-KK.json` | S_KK's documents: `document,targets,reference_nll,self_nll` (mean losses in nats), and the marker with the seconds it took and the corpus's precision, recall, density and coverage (`scores`, `manifold`) |
//! | `scores/real-test.csv`, `scores/real-test.emb` | the real test documents under the reference, and their passages' embeddings (u32 dimension, then f32 rows) |
//! | `scores/noise-floor.csv`, `.bin`, `.json` | the noise floor's documents under the reference, its tokens, and the quality and diversity of 20 draws of its passages (`manifold::Floor`) |
//! | `report.html`, `plots/*.svg`, `plots/*.png` | the report (`lmloop report`), refreshed after every generation |
//!
//! # Definitions
//!
//! Every measure is over the fixed vocabulary of V tokens, counting every
//! token of a corpus including the end-of-text token (the same counts as
//! `generations.csv`'s `synthetic_unigram_entropy`). Logarithms are natural
//! (nats). `p` is the real training split's unigram distribution, `q` the
//! synthetic corpus's.
//!
//! - `kl_real_gen_add_half` = KL(p‖q), `kl_gen_real_add_half` = KL(q‖p), both
//!   with add-½ smoothing of every vocabulary entry in both corpora
//!   (p_i = (r_i + ½) / (R + V/2)), so that a token missing from one corpus
//!   gives a finite value. Identical counts give 0.
//! - `js_divergence`: Jensen–Shannon divergence of the unsmoothed p and q, in
//!   nats (between 0 and ln 2).
//! - `total_variation`: ½ Σ |p_i − q_i|, unsmoothed (between 0 and 1).
//! - `entropy_nats`: Shannon entropy of the corpus's own unsmoothed unigram distribution.
//! - `distinct_tokens`: vocabulary entries with a count above zero.
//! - `tail_mass`: the tail set is built from the real counts alone: sort the
//!   tokens by real count ascending and take every token whose count c has
//!   "mass of all tokens with real count ≤ c" at most 50% of the real split.
//!   Tokens with equal counts are all in or all out (the set does not depend on
//!   token ids), and tokens absent from the real split are in it. A corpus's
//!   tail mass is the share of its tokens that belong to the tail set (the real
//!   split's own is ≤ 0.5 by construction).
//! - `distinct_2`, `distinct_3`: unique n-grams / total n-grams over the whole
//!   corpus, where an n-gram is n consecutive tokens inside one document: the
//!   end-of-text token ends a document and is part of no n-gram.
//! - `mean_document_tokens`: tokens per document, end-of-text excluded. A
//!   document is what ends at an end-of-text token (an empty document, two
//!   end-of-text tokens in a row, counts with length 0), plus a trailing run
//!   without one.
//! - `repetition_rate_4gram`: the pooled seq-rep-4 of Welleck et al. 2019
//!   ("Neural text generation with unlikelihood training"): the share of the
//!   corpus's within-document 4-grams that already occurred earlier in the same
//!   document, Σ_d (4-grams_d − unique 4-grams_d) / Σ_d 4-grams_d.
//! - `zipf_slope`: least-squares slope of ln(count) against ln(rank) over every
//!   token with a count above zero (rank 1 = most frequent; no rank range is cut
//!   off). About −1 for natural text; steeper means mass concentrating on few tokens.
//! - copying of R (`copied_ngrams_4`, `_8`, `_16`, `_32`, `longest_match_median`,
//!   `longest_match_p90`): defined in [`copying`]: the share of a corpus's
//!   within-document n-grams found verbatim in R, and the distribution over documents
//!   of a document's longest verbatim match in R (counted up to 256 tokens).
//! - per-document perplexity and self-perplexity: defined in [`scores`]; precision,
//!   recall, density and coverage of a corpus's passages in the reference's embedding,
//!   and their noise floor: defined in [`manifold`].
//! - R, |R|, D: R is the real training set generation 0 trained on and every
//!   drift measure is taken against; |R| its size in tokens; D the generation
//!   size, the number of tokens per synthetic corpus (`generation_size`).
//! - noise floor: the drift row of a real sample of about D tokens of documents not
//!   in R (`noise_floor_tokens` and `noise_floor_source` in `reference.json`; the
//!   generations loop draws it from the training documents outside R, else from the
//!   validation split), measured against R exactly like an S_k. It is what a perfect
//!   model would show: other real text already has KL > 0, other names, and so on.
//!   Every drift plot draws it as a solid horizontal line. It is never R's own
//!   documents resampled (that repeats documents and roughly halves the diversity
//!   floors); when too little real text lies outside R there is no floor row.
//! - vanish generation: the first k whose S_k count is 0 while the real count is
//!   above 0 (a token may reappear later; it keeps its first vanish generation).
//! - absence, for a token with real count above 0, over S_1..S_K:
//!   `absent_corpora` is the number of S_k with count 0; an absence spell is a
//!   maximal run of consecutive corpora S_j..S_k with count 0 (a spell reaching
//!   S_K is still open and counts); `absence_spells` is their number and
//!   `longest_absence` the length of the longest (0 when never absent);
//!   `reappeared` is true when the token has count 0 in some S_j and a count
//!   above 0 in a later S_k. Language-model probabilities are never zero, so a
//!   vanished token can come back.
//! - null model (`analysis/null.rs`, `RealNull`, `real_null` in `reference.json`):
//!   20 corpora of about D tokens of real documents not in R (fresh seeded draws
//!   from the noise floor's source), what a perfect model would write; for each, the
//!   tokens of R (count above 0) it lacks. A token's absence probability a is the
//!   share of draws lacking it (`null_presence_real_documents` = 1 − a in
//!   `tokens.csv`); a bucket's spread is the standard deviation over the draws of its
//!   absent share, and K corpora of a perfect model put the bucket's absent share
//!   within ±1.96·sd/√K of the mean about 95% of the time. Over K corpora, which are
//!   independent of one another, a token expects a + (K − 1)·a·(1 − a) absence
//!   spells and reappears with probability 1 − Σ_{m=0}^{K} (1 − a)^m a^(K−m).
//! - independence bound: if every S_k were D tokens drawn independently from R's
//!   own unigram distribution, a token of real count c would be present with
//!   probability `null_presence_probability` = 1 − exp(−c·D/|R|) (the Poisson
//!   approximation of the multinomial sample, with D/|R| = `generation_size /
//!   real_tokens`); 0 for c = 0. Real text is bursty, so even a perfect model's
//!   corpora lack far more rare tokens than this; the same spell and reappearance
//!   forms apply with a = exp(−c·D/|R|).
//! - survival by bucket: tokens with real count above 0 grouped by powers of two
//!   of their real count (1, 2-3, 4-7, …, the commonest merged into one open
//!   bucket `N+` past 8 buckets). Per bucket: the share present (count > 0) in
//!   each S_k; the absent share (of all (token, S_k) pairs, k = 1..K); mean
//!   absence spells per token; the share of tokens that reappeared; and, beside
//!   each, the null model's value (and its band) and the independence bound,
//!   averaged over the bucket's tokens.
//! - loss by frequency bucket (`loss_by_frequency.csv`, computed by the loop):
//!   generation k's mean next-token loss in nats on the real test targets whose
//!   token's count in R lies in [min_real_count, max_real_count] (inclusive);
//!   bucket 0 is the tokens never seen in R, buckets 1.. are log-spaced ranges of
//!   real count. `target_tokens` is how many test targets fall in the bucket;
//!   `mean_loss` is NaN when none do (such points are not drawn).
//! - sampler columns of `generations.csv`, shown in the report when present:
//!   `synthetic_documents`, `synthetic_truncation_share` (share of S_{k+1}'s
//!   documents cut by the length cap rather than ended by the model),
//!   `synthetic_mean_document_tokens`, `synthetic_non_canonical_share` (share of the
//!   sampled ids that re-encoding the text did not reproduce), `train_epochs`,
//!   `budget`, `train_truncated_share` (share of the training mixture's tokens in
//!   documents cut at the cap) and `train_cap_dependent` (that share above 50%); they
//!   are read by name, and runs written before them are shown without them.
//!
//! Undefined values (for example distinct-3 of a corpus without any 3-gram)
//! are written as `NaN`.
mod bench;
mod compare;
pub mod copying;
mod diversity;
mod drift;
mod figures;
mod fit;
mod html;
pub mod manifold;
mod null;
mod reference;
mod report;
mod run_data;
pub mod scores;
mod tails;
mod update;
mod zipf;

use crate::layout::Layout;
use anyhow::Result;
use std::path::PathBuf;

pub use bench::{bench_drift, zipf_corpus};
pub use diversity::{distinct_ngrams, repetition_rate, Diversity, NgramCount};
pub use drift::{
    count_tokens, entropy_nats, jensen_shannon, kl_add_half, measure_corpus, measure_noise_floor, tail_mass, tail_set,
    total_variation, DriftRow, Reference, NOISE_FLOOR_CORPUS, NOISE_FLOOR_GENERATION, REAL_CORPUS, REAL_GENERATION,
};
pub use figures::publish;
pub use fit::LinearFit;
pub use html::Page;
pub use null::{
    null_absence_probability, null_expected_spells, null_presence_probability, null_reappearance_probability, RealNull,
};
pub use reference::ReferenceInfo;
pub use run_data::{
    read_drift_csv, read_loss_by_frequency, CorpusInfo, LossByFrequencyRow, RunData, RunSettings,
    LOSS_BY_FREQUENCY_COLUMNS,
};
pub use tails::{
    escape_token, survival_by_bucket, survival_by_bucket_with, vanish_fit, vanish_points, Absence, BucketNull,
    BucketSurvival, RealBucketNull, TokenTable,
};
pub use update::{update_run_analysis, update_run_measures, RealReference};
pub use zipf::{rank_frequency, zipf_slope};

/// The text `lmloop inspect tails` prints: vanished tokens, counts per generation, and the
/// fitted relation between original count and vanish generation.
/// `top` vanished tokens are listed, among the tokens seen at least `min_real_count`
/// times in the real training split.
pub fn inspect_tails(layout: &Layout, run: &str, top: usize, min_real_count: u64) -> Result<String> {
    let tokens = RunData::load_tokens(layout, run)?;
    let reference = RunData::load_reference(layout, run)?;
    Ok(tails::tails_text(run, &tokens, reference.as_ref(), &layout.reference_json(run), top, min_real_count))
}

/// Writes `analysis/RUN/report.html` (and the plots); returns the report's path.
pub fn report(layout: &Layout, run: &str) -> Result<PathBuf> {
    report::write_report(layout, run)
}

/// Writes the report comparing `runs` into `out` (default `analysis/compare-RUN1-…`);
/// returns its path.
pub fn compare(layout: &Layout, runs: &[String], out: Option<&std::path::Path>) -> Result<PathBuf> {
    compare::write_comparison(layout, runs, out)
}
