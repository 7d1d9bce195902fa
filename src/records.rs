//! The tables the loop writes and the reports read: one row of `generations.csv` per
//! generation, the held-out evaluation stored beside each checkpoint, and held-out loss
//! by token frequency. The loop (`crate::generations`) and the analysis both import
//! this module, and it imports neither.
use crate::checkpoint::TrainingState;
use crate::durable::write_csv_atomic;
use crate::policy::{MixtureManifest, Policy};
use crate::synthetic::SyntheticManifest;
use crate::tokens::entropy_nats;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Share of a training mixture's tokens in documents cut at the length cap above which
/// a generation is marked as depending on the cap (`train_cap_dependent`).
pub const CAP_DEPENDENT_SHARE: f64 = 0.5;

/// One row of `generations.csv`: what the loop writes and what the reports read.
///
/// Columns added after the first releases are `#[serde(default)]`, so tables written
/// by an older lmloop still load: their missing columns read as 0 or empty, which
/// [`GenerationRow::has_sampler_columns`] tells apart (a real generation samples at
/// least one document).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenerationRow {
    pub generation: u32,
    pub policy: String,
    pub real_fraction: Option<f64>,
    pub temperature: f64,
    #[serde(default)]
    pub seed: u64,
    /// `epochs` (passes over the mixture) or `tokens` (a fixed budget; compute-matched).
    #[serde(default)]
    pub budget: String,
    /// Passes over the training mixture this generation made.
    #[serde(default)]
    pub train_epochs: f64,
    /// Tokens trained on (repeats included).
    #[serde(default)]
    pub trained_tokens: u64,
    /// Size of generation k's training mixture, and its real and synthetic parts (the
    /// latter from S_1..S_k); tables of older runs name the parts `real_tokens` and
    /// `synthetic_tokens`.
    #[serde(default)]
    pub train_tokens: usize,
    #[serde(default, alias = "real_tokens")]
    pub train_real_tokens: usize,
    #[serde(default, alias = "synthetic_tokens")]
    pub train_synthetic_tokens: usize,
    /// Share of the training mixture's tokens in documents the sampler cut at the
    /// length cap, and whether it is above [`CAP_DEPENDENT_SHARE`]: then what this
    /// generation learned, and everything measured from it, depends on the cap.
    #[serde(default)]
    pub train_truncated_share: f64,
    #[serde(default)]
    pub train_cap_dependent: bool,
    pub held_out_loss: f64,
    pub held_out_perplexity: f64,
    /// The corpus S_{k+1} this generation sampled: documents, mean length (end-of-text
    /// excluded) and the share cut at the length cap.
    #[serde(default)]
    pub synthetic_documents: usize,
    #[serde(default)]
    pub synthetic_mean_document_tokens: f64,
    #[serde(default)]
    pub synthetic_truncation_share: f64,
    /// Unigram entropy (nats) of the corpus this generation sampled.
    #[serde(default)]
    pub synthetic_unigram_entropy: f64,
    #[serde(default)]
    pub synthetic_distinct_tokens: usize,
    /// Share of the ids the model sampled for S_{k+1} that the tokenizer's encoding of
    /// their text does not reproduce (the corpus holds the re-encoded tokens).
    #[serde(default)]
    pub synthetic_non_canonical_share: f64,
    /// The mean share of training targets truncated cross-entropy cut (0 without it).
    #[serde(default)]
    pub train_truncated_ce_share: f64,
    #[serde(default)]
    pub train_seconds: f64,
    #[serde(default)]
    pub sample_seconds: f64,
    #[serde(default)]
    pub eval_seconds: f64,
    /// S_{k+1}'s documents scored by the reference model M_0 and by M_k
    /// (`crate::analysis::scores`); 0 in rows written before they were scored.
    #[serde(default)]
    pub reference_perplexity_p10: f64,
    #[serde(default)]
    pub reference_perplexity_median: f64,
    #[serde(default)]
    pub reference_perplexity_p90: f64,
    #[serde(default)]
    pub reference_beyond_real_p99: f64,
    /// Its null from the noise floor's documents, length-matched, and the difference
    /// (`crate::analysis::scores`); NaN without a floor or in rows written before.
    #[serde(default = "nan")]
    pub reference_beyond_real_p99_floor: f64,
    #[serde(default = "nan")]
    pub reference_beyond_real_p99_excess: f64,
    #[serde(default)]
    pub self_perplexity_median: f64,
    #[serde(default)]
    pub score_seconds: f64,
    /// Quality and diversity of S_{k+1}'s passages against the real test passages in
    /// the reference's embedding (`crate::analysis::manifold`); NaN when too few passages
    /// were compared (0 in rows written before they were measured).
    #[serde(default)]
    pub precision: f64,
    #[serde(default)]
    pub recall: f64,
    #[serde(default)]
    pub density: f64,
    #[serde(default)]
    pub coverage: f64,
    /// Curation of S_{k+1} by a verifier (`crate::curation`): tokens sampled over D (the
    /// sampling compute; without curation the corpus's tokens over D), and the share of
    /// them kept (1 without curation).
    #[serde(default = "one")]
    pub curation_oversampling: f64,
    #[serde(default = "one")]
    pub curation_kept_share: f64,
    /// Median length (corpus tokens) of the documents curation kept and of those it
    /// dropped; NaN without curation (and in rows written before lmloop recorded them).
    #[serde(default = "nan")]
    pub curation_kept_median_tokens: f64,
    #[serde(default = "nan")]
    pub curation_dropped_median_tokens: f64,
    /// The model's parameters P, and the compute of the generation as `sweep plan`
    /// estimates it: 6·P per token trained on, 2·P per token sampled (every round of a
    /// curated corpus; not the tokens the batch decoded past the corpus). 0 in rows
    /// written before lmloop recorded them.
    #[serde(default)]
    pub model_parameters: i64,
    #[serde(default)]
    pub train_flops: f64,
    #[serde(default)]
    pub sample_flops: f64,
}

/// Rows are equal when they write the same CSV line: a column that is NaN in both
/// (not measured) is equal, as `generations.csv` reads it.
impl PartialEq for GenerationRow {
    fn eq(&self, other: &Self) -> bool {
        let line = |r: &GenerationRow| {
            let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
            w.serialize(r).ok().and_then(|_| w.into_inner().ok())
        };
        line(self) == line(other)
    }
}

fn one() -> f64 {
    1.0
}

fn nan() -> f64 {
    f64::NAN
}

/// The median of recorded lengths; NaN when none were recorded or none are in the set.
fn median_of(lengths: Option<&crate::synthetic::Lengths>) -> f64 {
    lengths.filter(|l| l.documents > 0).map_or(f64::NAN, |l| l.median)
}

impl GenerationRow {
    /// The row of generation `k`: its settings, what it trained on (`mixture`, `state`),
    /// its held-out evaluation and the corpus S_{k+1} it sampled (`sampled`, whose token
    /// counts over the vocabulary are `counts`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        generation: u32,
        policy: Policy,
        settings: &RowSettings,
        mixture: &MixtureManifest,
        state: &TrainingState,
        held_out: &HeldOut,
        sampled: &SyntheticManifest,
        counts: &[u64],
    ) -> Self {
        let stats = &sampled.stats;
        Self {
            generation,
            policy: policy.name(),
            real_fraction: policy.real_fraction(),
            temperature: settings.temperature,
            seed: settings.seed,
            budget: settings.budget.clone(),
            train_epochs: state.epochs,
            trained_tokens: state.tokens,
            train_tokens: mixture.total_tokens,
            train_real_tokens: mixture.real_tokens,
            train_synthetic_tokens: mixture.synthetic_tokens,
            train_truncated_share: mixture.truncated_share(),
            train_cap_dependent: mixture.truncated_share() > CAP_DEPENDENT_SHARE,
            held_out_loss: held_out.mean_loss,
            held_out_perplexity: held_out.perplexity,
            synthetic_documents: stats.documents,
            synthetic_mean_document_tokens: stats.mean_document_tokens,
            synthetic_truncation_share: stats.truncation_share,
            synthetic_unigram_entropy: entropy_nats(counts),
            synthetic_distinct_tokens: counts.iter().filter(|&&c| c > 0).count(),
            synthetic_non_canonical_share: sampled.non_canonical_share,
            train_truncated_ce_share: state.truncated_ce_share.unwrap_or(0.0),
            train_seconds: state.seconds,
            sample_seconds: stats.seconds,
            eval_seconds: held_out.seconds,
            reference_perplexity_p10: 0.0,
            reference_perplexity_median: 0.0,
            reference_perplexity_p90: 0.0,
            reference_beyond_real_p99: 0.0,
            reference_beyond_real_p99_floor: f64::NAN,
            reference_beyond_real_p99_excess: f64::NAN,
            self_perplexity_median: 0.0,
            score_seconds: 0.0,
            precision: 0.0,
            recall: 0.0,
            density: 0.0,
            coverage: 0.0,
            // Measured the same way with or without curation: tokens sampled over D (a
            // corpus ends with a whole document, so even an uncurated one exceeds D).
            curation_oversampling: sampled
                .curation
                .as_ref()
                .map_or(sampled.stats.tokens as f64 / sampled.requested_tokens.max(1) as f64, |c| c.oversampling),
            curation_kept_share: sampled.curation.as_ref().map_or(1.0, |c| c.kept_share),
            curation_kept_median_tokens: median_of(sampled.curation.as_ref().and_then(|c| c.kept_lengths.as_ref())),
            curation_dropped_median_tokens: median_of(
                sampled.curation.as_ref().and_then(|c| c.dropped_lengths.as_ref()),
            ),
            model_parameters: settings.parameters,
            train_flops: 6.0 * settings.parameters as f64 * state.tokens as f64,
            sample_flops: 2.0
                * settings.parameters as f64
                * if stats.sampled_tokens > 0 { stats.sampled_tokens } else { stats.tokens } as f64,
        }
    }

    /// Adds the summary of S_{k+1}'s per-document scores and its passages' quality and
    /// diversity, which took `seconds`.
    pub fn with_scores(
        self,
        s: &crate::analysis::scores::ScoreSummary,
        m: &crate::analysis::manifold::Manifold,
        seconds: f64,
    ) -> Self {
        Self {
            precision: m.precision,
            recall: m.recall,
            density: m.density,
            coverage: m.coverage,
            reference_perplexity_p10: s.reference_p10,
            reference_perplexity_median: s.reference_median,
            reference_perplexity_p90: s.reference_p90,
            reference_beyond_real_p99: s.beyond_real_p99,
            reference_beyond_real_p99_floor: s.beyond_real_p99_floor,
            reference_beyond_real_p99_excess: s.beyond_real_p99 - s.beyond_real_p99_floor,
            self_perplexity_median: s.self_median,
            score_seconds: seconds,
            ..self
        }
    }

    /// Whether the row carries the sampler and protocol columns (rows written before
    /// them read as zeros there).
    pub fn has_sampler_columns(&self) -> bool {
        self.synthetic_documents > 0 || self.train_epochs > 0.0 || !self.budget.is_empty()
    }
}

/// A sentence naming the generations of `rows` that trained mostly on documents cut at
/// the length cap (`train_cap_dependent`), for every report that shows their numbers;
/// `None` when there are none.
pub fn cap_dependence_note(rows: &[GenerationRow]) -> Option<String> {
    let marked: Vec<String> = rows
        .iter()
        .filter(|r| r.train_cap_dependent)
        .map(|r| format!("{} ({:.0}%)", r.generation, 100.0 * r.train_truncated_share))
        .collect();
    (!marked.is_empty()).then(|| {
        format!(
            "Depends on the length cap: generation{} {} trained on mixtures whose tokens are mostly (above {:.0}%) in documents cut at sample.max_doc_tokens, so what {} learned, and every number measured from {} on, depends on the cap.",
            if marked.len() > 1 { "s" } else { "" },
            marked.join(", "),
            100.0 * CAP_DEPENDENT_SHARE,
            if marked.len() > 1 { "they" } else { "it" },
            if marked.len() > 1 { "them" } else { "it" },
        )
    })
}

/// Held-out evaluation of one generation, stored next to its checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HeldOut {
    pub mean_loss: f64,
    pub perplexity: f64,
    pub tokens: usize,
    pub seconds: f64,
    /// Loss by real-frequency bucket of the target token (empty in older runs, which
    /// are then evaluated again).
    #[serde(default)]
    pub buckets: Vec<crate::eval::BucketLoss>,
}

/// The run's settings every row repeats.
#[derive(Debug, Clone)]
pub struct RowSettings {
    pub temperature: f64,
    pub seed: u64,
    /// `epochs` or `tokens` (`train.budget`).
    pub budget: String,
    /// Parameters of the run's model shape (`crate::model::parameters_of`).
    pub parameters: i64,
}

/// Rewrites `loss_by_frequency.csv` (generation, bucket, count range, targets, mean loss).
pub fn write_loss_by_frequency(path: &Path, rows: &[(u32, crate::eval::BucketLoss)]) -> Result<()> {
    write_csv_atomic(path, |w| {
        w.write_record(["generation", "bucket", "min_real_count", "max_real_count", "target_tokens", "mean_loss"])?;
        for (k, b) in rows {
            w.write_record([
                k.to_string(),
                b.bucket.to_string(),
                b.min_real_count.to_string(),
                b.max_real_count.to_string(),
                b.target_tokens.to_string(),
                format!("{:.6}", b.mean_loss),
            ])?;
        }
        Ok(())
    })
}

/// Rewrites `generations.csv` with all rows so far (atomically).
pub fn write_rows(path: &Path, rows: &[GenerationRow]) -> Result<()> {
    write_csv_atomic(path, |w| {
        for r in rows {
            w.serialize(r)?;
        }
        Ok(())
    })
}

/// Reads `generations.csv`.
pub fn read_rows(path: &Path) -> Result<Vec<GenerationRow>> {
    let mut r = csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    r.deserialize().map(|row| row.with_context(|| format!("malformed row in {}", path.display()))).collect()
}

/// The per-generation table printed at the end of a run.
pub fn format_table(rows: &[GenerationRow]) -> String {
    let mut s = format!(
        "{:>4}  {:<20} {:>12} {:>10} {:>9} {:>9} {:>8}\n",
        "gen", "policy", "train tok", "held-out", "entropy", "distinct", "minutes"
    );
    s.push_str(&format!("{:>4}  {:<20} {:>12} {:>10} {:>9} {:>9} {:>8}\n", "", "", "", "ppl", "nats", "tokens", ""));
    for r in rows {
        let policy = match r.real_fraction {
            Some(l) => format!("{} λ={l}", r.policy),
            None => r.policy.clone(),
        };
        s.push_str(&format!(
            "{:>4}  {:<20} {:>12} {:>10.2} {:>9.3} {:>9} {:>8.2}\n",
            r.generation,
            policy,
            r.train_tokens,
            r.held_out_perplexity,
            r.synthetic_unigram_entropy,
            r.synthetic_distinct_tokens,
            (r.train_seconds + r.sample_seconds + r.eval_seconds) / 60.0
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::{read_rows, write_rows};

    /// generations.csv names the training mixture's parts `train_*`, so no column of a
    /// row reads as describing the corpus its `synthetic_*` columns describe; tables
    /// written with the old names still load into the same fields.
    #[test]
    fn training_columns_are_named_as_training_data_and_old_names_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("generations.csv");
        let old = "generation,policy,real_fraction,temperature,real_tokens,synthetic_tokens,held_out_loss,held_out_perplexity\n\
                   1,replace,,1.0,0,5000,4.5,90.0\n";
        std::fs::write(&path, old).unwrap();
        let rows = read_rows(&path).unwrap();
        assert_eq!((rows[0].train_real_tokens, rows[0].train_synthetic_tokens), (0, 5000));
        write_rows(&path, &rows).unwrap();
        let header = std::fs::read_to_string(&path).unwrap().lines().next().unwrap().to_string();
        assert!(header.contains(",train_real_tokens,train_synthetic_tokens,"), "{header}");
        assert!(!header.split(',').any(|c| c == "real_tokens" || c == "synthetic_tokens"), "{header}");
        assert_eq!(read_rows(&path).unwrap(), rows);
    }
}
