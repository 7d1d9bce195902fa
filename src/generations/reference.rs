//! The run's fixed models and what is computed once under the reference: the model
//! every synthetic corpus is measured under (M_0, generation 0 of the run, or the
//! oracle: the same architecture trained once on the whole real training split), the
//! real test documents' scores and passages' embeddings, and the noise floor's. Their
//! files and records are `crate::scoring`'s; here they are computed, and computed again
//! whenever a file no longer matches its record.
use super::context::RunContext;
use super::{derive_seed, SeedPurpose};
use crate::analysis::manifold::{Embeddings, Floor};
use crate::checkpoint::Checkpoint;
use crate::checkpoint::TrainingState;
use crate::durable::{is_done, read_json, write_atomic, write_json_atomic};
use crate::integrity::{write_sealed, FileFingerprint};
use crate::layout::CheckpointPaths;
use crate::scoring::{
    self, check_oracle, ReferenceRecord, FLOOR_BIN, FLOOR_CSV, FLOOR_JSON, REAL_TEST_CSV, REAL_TEST_EMB,
};
use crate::stream::TokenStream;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// A generation's weights, loaded from its checkpoint only when a step needs them, so
/// a finished run prints its table from the stored results alone.
pub struct Weights {
    dir: PathBuf,
    device: tch::Device,
    loaded: Option<Checkpoint>,
}

impl Weights {
    pub fn of(dir: PathBuf, device: tch::Device) -> Self {
        Self { dir, device, loaded: None }
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    pub fn get(&mut self, ctx: &RunContext) -> Result<&Checkpoint> {
        if self.loaded.is_none() {
            let ckpt = Checkpoint::load(&self.dir, self.device)?;
            if !ckpt.verified() {
                ctx.note_unverified(format!("the weights of {}", self.dir.display()));
            }
            self.loaded = Some(ckpt);
        }
        Ok(self.loaded.as_ref().expect("loaded above"))
    }
}

/// A model fixed for the whole run: M_0 (trained by the loop at generation 0), or the
/// oracle (trained here, once, the first time it is needed, and shared by every run
/// that would train the same one).
pub struct FixedModel {
    dir: PathBuf,
    oracle: bool,
    weights: Option<Weights>,
}

impl FixedModel {
    /// M_0 of the run.
    pub fn m0(ctx: &RunContext) -> Self {
        Self { dir: ctx.layout.checkpoint(&ctx.run, 0), oracle: false, weights: None }
    }

    /// The oracle in `dir`, checked now when it is already trained, so a damaged one is
    /// refused before the run trains or samples anything.
    pub fn oracle(dir: &Path) -> Result<Self> {
        if is_done(dir) {
            check_oracle(dir)?;
        }
        Ok(Self { dir: dir.to_path_buf(), oracle: true, weights: None })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its weights, loaded when first asked for (the oracle trained first when it is
    /// not yet).
    pub fn weights(&mut self, ctx: &RunContext) -> Result<&mut Weights> {
        if self.weights.is_none() {
            if self.oracle {
                train_oracle(ctx, &self.dir)?;
            }
            self.weights = Some(Weights::of(self.dir.clone(), ctx.device));
        }
        Ok(self.weights.as_mut().expect("set above"))
    }

    /// The record of its weights (`None` for a checkpoint an older lmloop wrote).
    pub fn weights_record(&mut self, ctx: &RunContext) -> Result<Option<FileFingerprint>> {
        self.weights(ctx)?;
        let state: TrainingState = read_json(&CheckpointPaths::new(&self.dir).state())?;
        Ok(state.weights)
    }
}

/// Trains the oracle into `dir` unless it is complete: the run's architecture and
/// plain training settings (no truncated cross-entropy: the reference is trained the
/// same in every cell of a sweep) on the whole real training split, from generation
/// 0's start. Runs that share it take turns: one trains while the others wait, saying
/// for whom.
fn train_oracle(ctx: &RunContext, dir: &Path) -> Result<()> {
    let lock_path = dir.with_extension("lock");
    let t0 = std::time::Instant::now();
    let mut said = None;
    let lock = loop {
        if is_done(dir) {
            return check_oracle(dir);
        }
        match crate::durable::Lock::try_acquire(&lock_path)? {
            Some(lock) => break lock,
            None => {
                let waited = t0.elapsed().as_secs();
                if said.is_none_or(|s: u64| waited >= s + 60) {
                    eprintln!("[{}] {}", ctx.run, waiting_for(dir, &lock_path, waited));
                    said = Some(waited);
                }
                std::thread::sleep(std::time::Duration::from_secs(2));
            }
        }
    };
    if is_done(dir) {
        return check_oracle(dir);
    }
    lock.describe_holder(&format!("run '{}' (process {})", ctx.run, std::process::id()))?;
    remove_temporaries_of(dir);
    let split = &ctx.real.split;
    let stream =
        TokenStream::of_ranges(split.file.clone(), split.documents.iter().cloned(), ctx.corpus.vocab.delimiters());
    eprintln!(
        "[{}] training the oracle reference on the whole real training split ({} tokens) into {}",
        ctx.run,
        split.tokens(),
        dir.display()
    );
    let mut train_cfg = ctx.cfg.train.plain();
    train_cfg.seed = derive_seed(ctx.seed(), 0, SeedPurpose::Oracle);
    ctx.train_model("training the oracle reference", train_cfg, &stream, ctx.pretrained.clone(), dir.to_path_buf())?;
    Ok(())
}

/// What a run waiting for another process's oracle says: who trains it, and how far
/// its training log has come.
fn waiting_for(dir: &Path, lock: &Path, waited: u64) -> String {
    let holder = std::fs::read_to_string(lock).ok().filter(|t| !t.trim().is_empty());
    let log = CheckpointPaths::new(dir).partial_train_log();
    let step = std::fs::read_to_string(&log)
        .ok()
        .and_then(|t| t.lines().last().and_then(|l| l.split(',').next()).map(str::to_string))
        .filter(|s| s.chars().all(|c| c.is_ascii_digit()) && !s.is_empty());
    format!(
        "waiting for the oracle reference {} that {} is training ({}{}; lock {})",
        dir.display(),
        holder.as_deref().map_or("another lmloop process", str::trim),
        match waited {
            0 => "just started waiting".to_string(),
            s => format!("waited {} min", s / 60),
        },
        step.map(|s| format!(", its training log is at step {s}")).unwrap_or_default(),
        lock.display()
    )
}

/// Removes what an interrupted training of the oracle in `dir` left beside it (its
/// temporaries, never its snapshots); called while holding its lock.
fn remove_temporaries_of(dir: &Path) {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else { return };
    let prefix = format!(".{}.", name.to_string_lossy());
    for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
        let entry_name = entry.file_name().to_string_lossy().into_owned();
        if entry_name.starts_with(&prefix) && crate::durable::is_temporary(&entry_name) {
            let p = entry.path();
            let _ = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        }
    }
}

/// The run's reference, and the fixed model curation chooses documents by when that is
/// another model than the reference (`curation.verifier = "m0"` under the oracle, or
/// `"oracle"` under M_0).
pub fn fixed_models(ctx: &RunContext) -> Result<(Reference, Option<FixedModel>)> {
    let model = |oracle: bool| match (&ctx.oracle, oracle) {
        (Some(dir), true) => FixedModel::oracle(dir),
        _ => Ok(FixedModel::m0(ctx)),
    };
    let reference = Reference::new(model(ctx.reference_is_oracle)?);
    let verifier = match ctx.cfg.curation.verifier {
        Some(v @ (crate::config::Verifier::M0 | crate::config::Verifier::Oracle))
            if !v.is_the_reference(ctx.reference_is_oracle) =>
        {
            Some(model(v == crate::config::Verifier::Oracle)?)
        }
        _ => None,
    };
    Ok((reference, verifier))
}

/// The real test documents under the reference: perplexities and passages' embeddings.
pub struct RealScores {
    pub perplexities: Vec<f64>,
    pub embeddings: Embeddings,
}

/// The run's reference: its model and the run-level scores under it.
pub struct Reference {
    pub model: FixedModel,
    real: Option<RealScores>,
    weights: Option<FileFingerprint>,
}

impl Reference {
    pub fn new(model: FixedModel) -> Self {
        Self { model, real: None, weights: None }
    }

    /// The real test documents' scores, with the noise floor's: read when their files
    /// match the run's record, computed (again) otherwise; and whether they were
    /// computed now. Once per process.
    pub fn real(&mut self, ctx: &RunContext) -> Result<(&RealScores, bool)> {
        let mut fresh = false;
        if self.real.is_none() {
            let weights = self.model.weights_record(ctx)?;
            if !self.stored_intact(ctx, weights.as_ref())? {
                self.compute(ctx, weights.clone())?;
                fresh = true;
            }
            // Checked against the record just now, or just written.
            let file = |name: &str| ctx.layout.scores_file(&ctx.run, name);
            let perplexities = scoring::read_scores(&file(REAL_TEST_CSV))?.iter().map(|r| r.1.exp()).collect();
            let embeddings = scoring::read_embeddings(&file(REAL_TEST_EMB))?;
            self.real = Some(RealScores { perplexities, embeddings });
            self.weights = weights;
        }
        Ok((self.real.as_ref().expect("set above"), fresh))
    }

    /// The record of the reference's weights the run's scores are computed under
    /// (known once [`Reference::real`] ran).
    pub fn weights_record(&self) -> Option<&FileFingerprint> {
        self.weights.as_ref()
    }

    /// Whether the run-level files are there and match their record, under these
    /// weights; a damaged file is said and computed again, other weights are refused.
    fn stored_intact(&self, ctx: &RunContext, weights: Option<&FileFingerprint>) -> Result<bool> {
        let run = &ctx.run;
        let record = match ReferenceRecord::read(ctx.layout, run) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(false),
            Err(e) => {
                eprintln!("[{run}] warning: {e:#}; the reference's scores are computed again");
                return Ok(false);
            }
        };
        if record.format < scoring::FORMAT {
            eprintln!(
                "[{run}] the reference's scores are of an older score format ({}; this lmloop writes {}); they are \
                 computed again",
                record.format,
                scoring::FORMAT
            );
            return Ok(false);
        }
        // A checkpoint an older lmloop wrote keeps no record of its weights to compare.
        if record.weights.is_some() && weights.is_some() && record.weights.as_ref() != weights {
            bail!(
                "the scores of run '{run}' were computed under other weights of the reference {} ({}) than it holds now \
                 ({}); rerun the loop from generation 0 (add --rerun-from 0 to the same `lmloop generations` command)",
                record.model,
                record.weights.as_ref().map_or("unrecorded".into(), |w| w.describe()),
                weights.map_or("unrecorded".into(), |w| w.describe())
            );
        }
        let damaged = record.damaged(ctx.layout, run, "it is computed again now");
        for d in &damaged {
            eprintln!("[{run}] warning: {d}");
        }
        Ok(damaged.is_empty() && record.files.contains_key(REAL_TEST_EMB))
    }

    /// Scores the real test documents and the noise floor under the reference, writing
    /// every file and then the record (removed first, so an interrupted computation
    /// leaves no record that looks complete).
    fn compute(&mut self, ctx: &RunContext, weights: Option<FileFingerprint>) -> Result<()> {
        let (layout, run) = (ctx.layout, ctx.run.as_str());
        let record_path = layout.reference_scores_record(run);
        if record_path.exists() {
            std::fs::remove_file(&record_path).with_context(|| format!("cannot remove {}", record_path.display()))?;
        }
        let memory = ctx.cfg.model.evaluation_memory();
        let model = &self.model.weights(ctx)?.get(ctx)?.model;
        let test = TokenStream::from_file(ctx.corpus.test.clone(), ctx.corpus.vocab.delimiters());
        let (scores, real) = crate::torch_error::guard("scoring the real test documents", &memory, || {
            crate::eval::score_and_embed(model, &test, ctx.device)
        })?;
        let mut files = std::collections::BTreeMap::new();
        let file = |name: &str| layout.scores_file(run, name);
        write_atomic(&file(REAL_TEST_EMB), &real.to_bytes())?;
        files.insert(REAL_TEST_EMB.to_string(), FileFingerprint::of(&file(REAL_TEST_EMB))?);
        files.insert(REAL_TEST_CSV.to_string(), scoring::write_scores(&file(REAL_TEST_CSV), &scores, None)?);
        let floor = &ctx.reference.noise_floor;
        if !floor.is_empty() {
            let bin = file(FLOOR_BIN);
            crate::tokens::write_tokens(&bin, floor, ctx.corpus.vocab.vocab_size())
                .with_context(|| format!("cannot write the noise floor's tokens to {}", bin.display()))?;
            files.insert(FLOOR_BIN.to_string(), FileFingerprint::of(&bin)?);
            let stream = TokenStream::from_file(
                std::sync::Arc::new(crate::tokens::TokenFile::open(&bin)?),
                ctx.corpus.vocab.delimiters(),
            );
            let (scores, embeddings) =
                crate::torch_error::guard("scoring the noise floor's documents", &memory, || {
                    crate::eval::score_and_embed(model, &stream, ctx.device)
                })?;
            files.insert(FLOOR_CSV.to_string(), scoring::write_scores(&file(FLOOR_CSV), &scores, None)?);
            let seed = derive_seed(ctx.seed(), 0, SeedPurpose::QualityFloor);
            if let Some(f) = Floor::measure(&real, &embeddings, seed) {
                write_json_atomic(&file(FLOOR_JSON), &f)?;
                files.insert(FLOOR_JSON.to_string(), FileFingerprint::of(&file(FLOOR_JSON))?);
            }
        }
        let record =
            ReferenceRecord { format: scoring::FORMAT, model: self.model.dir().display().to_string(), weights, files };
        write_sealed(&record_path, &record)
    }
}
