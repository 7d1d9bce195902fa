//! The files a run's scores under its reference model live in, and the records that
//! make every number read from them checked (`analysis/RUN/scores/`):
//!
//! | file | holds | its record |
//! |---|---|---|
//! | `gen-KK.csv` | S_KK's documents: targets, mean loss under the reference, under the model that sampled it | `gen-KK.json` ([`ScoreMarker`], sealed) |
//! | `gen-KK.json` | the marker: documents, seconds, precision/recall/density/coverage, the CSV's record | its seal |
//! | `real-test.csv`, `.emb` | the real test documents under the reference, their passages' embeddings | `reference.json` |
//! | `noise-floor.bin`, `.csv`, `.json` | the noise floor's tokens, its documents under the reference, its draws ([`Floor`]) | `reference.json` |
//! | `reference.json` | [`ReferenceRecord`]: which model, its weights' record, and the record of each file above | its seal |
//!
//! A file that does not match its record is never read as it is: the loop computes it
//! again from the reference (the scores are a function of the model and the corpus),
//! and the readers of finished runs (`report`, `sweep report`, `verify`) refuse it in
//! one sentence that says so.
use crate::analysis::manifold::{Embeddings, Floor, Manifold};
use crate::checkpoint::TrainingState;
use crate::durable::read_json;
use crate::durable::write_csv_atomic;
use crate::eval::DocumentScore;
use crate::integrity::{check_file, read_sealed, FileFingerprint};
use crate::layout::CheckpointPaths;
use crate::layout::Layout;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The version of the score records this lmloop writes. 2: embeddings and the
/// measures from them are of full windows only (`crate::analysis::manifold`); 3: a
/// corpus's marker holds the null of its share beyond the real tail. The loop computes
/// records of an older format again.
pub const FORMAT: u32 = 3;

/// The repair of a damaged score file of a run: the loop computes it again.
pub fn recompute(run: &str) -> String {
    format!(
        "run the same `lmloop generations` command for run '{run}' again: it finds the damage and computes the scores again \
         from the reference model"
    )
}

/// The names, in `scores/`, of the run-level files [`ReferenceRecord`] records.
pub const REAL_TEST_CSV: &str = "real-test.csv";
pub const REAL_TEST_EMB: &str = "real-test.emb";
pub const FLOOR_BIN: &str = "noise-floor.bin";
pub const FLOOR_CSV: &str = "noise-floor.csv";
pub const FLOOR_JSON: &str = "noise-floor.json";

/// `scores/reference.json`: the model a run's scores were computed under and the
/// record of every run-level file computed under it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceRecord {
    pub format: u32,
    /// The reference's checkpoint folder (M_0's, or the oracle's).
    pub model: String,
    /// The record of its weights when the files were computed.
    pub weights: Option<FileFingerprint>,
    /// Each file's record, by its name in `scores/`.
    pub files: BTreeMap<String, FileFingerprint>,
}

impl ReferenceRecord {
    /// The record of a run, checked against its seal; `None` when the run has none.
    pub fn read(layout: &Layout, run: &str) -> Result<Option<Self>> {
        let path = layout.reference_scores_record(run);
        if !path.exists() {
            return Ok(None);
        }
        Ok(Some(read_sealed::<Self>(&path, &recompute(run))?.value))
    }

    /// Checks the file `name` of `scores/` against its record; a file the record does
    /// not list is an error too (the record is written after every file it lists).
    pub fn check(&self, layout: &Layout, run: &str, name: &str, way_out: &str) -> Result<PathBuf> {
        let path = layout.scores_file(run, name);
        match self.files.get(name) {
            Some(record) => check_file(&path, record, way_out)?,
            None => bail!("{} is not in the run's record of its scores; {way_out}", path.display()),
        }
        Ok(path)
    }

    /// Every damaged or missing file it records, one sentence each ending in `way_out`.
    pub fn damaged(&self, layout: &Layout, run: &str, way_out: &str) -> Vec<String> {
        self.files
            .keys()
            .filter_map(|name| self.check(layout, run, name, way_out).err().map(|e| format!("{e:#}")))
            .collect()
    }
}

/// `scores/gen-KK.json`, written after `gen-KK.csv`: when a corpus's scores were
/// computed, under which weights, and its passages' quality and diversity against
/// the real test passages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScoreMarker {
    /// Absent (0) in markers written before lmloop versioned them.
    #[serde(default)]
    pub format: u32,
    pub documents: usize,
    pub seconds: f64,
    /// Absent from markers written before lmloop measured it: those are scored again.
    #[serde(default)]
    pub manifold: Option<Manifold>,
    /// The record of `gen-KK.csv` (absent before format 1).
    #[serde(default)]
    pub csv: Option<FileFingerprint>,
    /// The reference's weights the corpus was scored under (absent before format 1).
    #[serde(default)]
    pub reference: Option<FileFingerprint>,
    /// The share of the noise floor's pieces at the corpus's lengths beyond the real
    /// test documents' 99th percentile (`crate::analysis::scores`); absent without a
    /// noise floor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor_beyond_real_p99: Option<f64>,
}

/// One document's row of a scores CSV: targets, mean loss under the reference, and
/// under the model that sampled it (NaN for real documents).
pub type ScoreRow = (u64, f64, f64);

/// Writes per-document scores: document, targets, mean loss under the reference and,
/// for a synthetic corpus, under the model that sampled it; returns the file's record.
pub fn write_scores(
    path: &Path,
    reference: &[DocumentScore],
    own: Option<&[DocumentScore]>,
) -> Result<FileFingerprint> {
    write_csv_atomic(path, |w| {
        let mut header = vec!["document", "targets", "reference_nll"];
        if own.is_some() {
            header.push("self_nll");
        }
        w.write_record(&header)?;
        for (d, r) in reference.iter().enumerate() {
            let mut rec = vec![d.to_string(), r.targets.to_string(), format!("{:.6}", r.mean())];
            if let Some(o) = own {
                rec.push(format!("{:.6}", o[d].mean()));
            }
            w.write_record(&rec)?;
        }
        Ok(())
    })?;
    FileFingerprint::of(path)
}

/// The rows of a scores CSV, unchecked (the callers check the file's record first).
pub fn read_scores(path: &Path) -> Result<Vec<ScoreRow>> {
    let mut r = csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    r.records()
        .map(|rec| {
            let rec = rec.with_context(|| format!("malformed row in {}", path.display()))?;
            let num = |i: usize| rec.get(i).and_then(|v| v.parse::<f64>().ok());
            let bad = || anyhow::anyhow!("malformed row in {}", path.display());
            Ok((num(1).ok_or_else(bad)? as u64, num(2).ok_or_else(bad)?, num(3).unwrap_or(f64::NAN)))
        })
        .collect()
}

/// S_k's marker and rows when they are intact: the marker's seal, the CSV against the
/// marker's record, and the marker's document count against the rows and `documents`
/// (the corpus's, when known). `Ok(None)` when there is no complete score of S_k;
/// an error names what is damaged, then `way_out`.
pub fn read_corpus_scores(
    layout: &Layout,
    run: &str,
    k: u32,
    documents: Option<usize>,
    way_out: &str,
) -> Result<Option<(ScoreMarker, Vec<ScoreRow>)>> {
    let csv_path = layout.scores_csv(run, Some(k));
    let marker_path = layout.score_marker(run, k);
    if !marker_path.exists() || !csv_path.exists() {
        return Ok(None);
    }
    let marker = read_sealed::<ScoreMarker>(&marker_path, way_out)?.value;
    if let Some(record) = &marker.csv {
        check_file(&csv_path, record, way_out)?;
    }
    let rows = read_scores(&csv_path)?;
    let expected = documents.unwrap_or(marker.documents);
    if rows.len() != marker.documents || rows.len() != expected {
        bail!(
            "{} holds {} rows, but its marker {} records {} documents{}; {}",
            csv_path.display(),
            rows.len(),
            marker_path.display(),
            marker.documents,
            documents.map(|d| format!(" and S_{k} holds {d}")).unwrap_or_default(),
            way_out
        );
    }
    Ok(Some((marker, rows)))
}

/// The real test documents' perplexities under the run's reference, checked against
/// the run's record; `None` for a run without them.
pub fn real_perplexities(layout: &Layout, run: &str) -> Result<Option<Vec<f64>>> {
    let Some(record) = ReferenceRecord::read(layout, run)? else {
        return unrecorded(&layout.scores_file(run, REAL_TEST_CSV));
    };
    let path = record.check(layout, run, REAL_TEST_CSV, &recompute(run))?;
    Ok(Some(read_scores(&path)?.iter().map(|r| r.1.exp()).collect()))
}

/// S_k's documents' perplexities under the reference, checked; `None` when unscored.
pub fn corpus_perplexities(layout: &Layout, run: &str, k: u32) -> Result<Option<Vec<f64>>> {
    Ok(read_corpus_scores(layout, run, k, None, &recompute(run))?
        .map(|(_, rows)| rows.iter().map(|r| r.1.exp()).collect()))
}

/// A run's noise floor (`scores/noise-floor.json`), checked against the run's record;
/// `None` for runs without a noise floor. A damaged one is an error, never a floor.
pub fn read_floor(layout: &Layout, run: &str) -> Result<Option<Floor>> {
    let path = layout.scores_file(run, FLOOR_JSON);
    match ReferenceRecord::read(layout, run)? {
        Some(record) if record.files.contains_key(FLOOR_JSON) => {
            record.check(layout, run, FLOOR_JSON, &recompute(run))?;
            Ok(Some(crate::durable::read_json(&path)?))
        }
        Some(_) => Ok(None),
        // Runs scored before lmloop kept the record: read as they are.
        None if path.exists() => Ok(crate::durable::read_json(&path).ok()),
        None => Ok(None),
    }
}

/// The real test scores of a run scored before lmloop kept a record, read as they are.
fn unrecorded(path: &Path) -> Result<Option<Vec<f64>>> {
    if !path.exists() {
        return Ok(None);
    }
    Ok(Some(read_scores(path)?.iter().map(|r| r.1.exp()).collect()))
}

/// Reads an embeddings file (`.emb`).
pub fn read_embeddings(path: &Path) -> Result<Embeddings> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Embeddings::from_bytes(&bytes).with_context(|| format!("{} is unreadable", path.display()))
}

/// The repair of a damaged oracle: it is trained again by the next run that needs it.
fn oracle_repair(dir: &Path) -> String {
    format!(
        "remove the oracle's folder {} (or its DONE file): the next run that needs it trains it again, from the same data \
         and seed, to the same weights on the same machine",
        dir.display()
    )
}

/// Checks a trained oracle's weights against its `state.json`.
pub fn check_oracle(dir: &Path) -> Result<()> {
    crate::checkpoint::check_weights(dir, &oracle_repair(dir))
        .map(|_| ())
        .with_context(|| format!("the oracle reference {}", dir.display()))
}

/// Checks the reference model of a run for `lmloop verify`: an oracle's weights
/// against its record, and the reference's record against the weights the run's
/// scores were computed under.
pub fn verify_reference_model(layout: &Layout, run: &str, record: &ReferenceRecord) -> Result<()> {
    let dir = Path::new(&record.model);
    let oracle = dir != layout.checkpoint(run, 0);
    if oracle {
        check_oracle(dir)?;
    } else if !crate::durable::is_done(dir) {
        return Ok(());
    }
    let state: TrainingState = read_json(&CheckpointPaths::new(dir).state())?;
    match (&record.weights, &state.weights) {
        (Some(r), Some(now)) if r != now => bail!(
            "the reference {} holds other weights ({}) than the run's scores were computed under ({}); {}",
            dir.display(),
            now.describe(),
            r.describe(),
            "rerun the loop from generation 0 (add --rerun-from 0 to the same `lmloop generations` command)"
        ),
        _ => Ok(()),
    }
}

/// Everything `verify` finds damaged among a run's scores: the reference's record and
/// the files it lists, and every corpus's marker and CSV.
pub fn verify(layout: &Layout, run: &str, last_corpus: u32) -> (usize, Vec<String>) {
    let mut damaged = Vec::new();
    let mut checked = 0;
    match ReferenceRecord::read(layout, run) {
        Ok(Some(record)) => {
            checked += record.files.len() + 1;
            damaged.extend(record.damaged(layout, run, &recompute(run)));
            if let Err(e) = verify_reference_model(layout, run, &record) {
                damaged.push(format!("{e:#}"));
            }
        }
        Ok(None) => {}
        Err(e) => damaged.push(format!("{e:#}")),
    }
    for k in 1..=last_corpus {
        match read_corpus_scores(layout, run, k, None, &recompute(run)) {
            Ok(Some(_)) => checked += 1,
            Ok(None) => {}
            Err(e) => damaged.push(format!("{e:#}")),
        }
    }
    (checked, damaged)
}
