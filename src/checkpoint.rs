//! Checkpoint folders: weights (safetensors), model config, training state, the
//! tokenizer the model was trained with, and a `DONE` marker written last.
//!
//! A checkpoint is assembled in a temporary sibling folder, every file flushed to disk,
//! `DONE` written last, and the folder renamed into place (the rename flushed too), so
//! a folder with the final name is always complete, even after a power cut.
use crate::config::ModelConfig;
use crate::durable::{is_done, mark_done, read_json, write_json_atomic};
use crate::integrity::{check_file, FileFingerprint};
use crate::layout::CheckpointPaths;
use crate::model::Model;
use crate::tokenizer::Vocab;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{nn, Device, Tensor};

/// What training produced, saved as `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainingState {
    pub steps: i64,
    /// Tokens trained on (window visits × context), repeats included.
    pub tokens: u64,
    /// Passes over the training data (window visits / windows).
    #[serde(default)]
    pub epochs: f64,
    pub seed: u64,
    /// NaN (`null` in the file) for a model that was imported rather than trained.
    #[serde(deserialize_with = "nan_when_null")]
    pub final_train_loss: f64,
    pub final_val_loss: Option<f64>,
    pub seconds: f64,
    pub tokens_per_second: f64,
    pub device: String,
    /// Checkpoint the weights were initialised from, if any.
    pub init_from: Option<String>,
    /// Seconds spent writing mid-training snapshots (not included in `seconds`).
    #[serde(default)]
    pub snapshot_seconds: f64,
    /// Mid-training snapshots written by the process that finished the run.
    #[serde(default)]
    pub snapshots: u64,
    /// Size and SHA-256 of `model.safetensors` as written (absent from checkpoints
    /// written before lmloop recorded it: those load unverified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<FileFingerprint>,
    /// With truncated cross-entropy (`train.truncated_ce_gamma` below 1): the mean over
    /// steps of the share of each step's targets it cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated_ce_share: Option<f64>,
}

/// JSON has no NaN (serde_json writes `null`); reads `null` back as NaN.
fn nan_when_null<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

impl TrainingState {
    /// The state of a checkpoint no training produced (an imported or a fresh model):
    /// no steps, no losses (NaN), `device` naming where it came from.
    pub fn untrained(device: &str, init_from: Option<String>) -> Self {
        Self {
            steps: 0,
            tokens: 0,
            epochs: 0.0,
            seed: 0,
            final_train_loss: f64::NAN,
            final_val_loss: None,
            seconds: 0.0,
            tokens_per_second: 0.0,
            device: device.to_string(),
            init_from,
            snapshot_seconds: 0.0,
            snapshots: 0,
            weights: None,
            truncated_ce_share: None,
        }
    }
}

/// A model loaded from a checkpoint folder.
pub struct Checkpoint {
    pub dir: PathBuf,
    pub vs: nn::VarStore,
    pub model: Model,
    pub vocab: Vocab,
    pub state: TrainingState,
}

/// What to do about a checkpoint whose weights are damaged, wherever it is read.
pub const DAMAGED_WEIGHTS: &str = "restore the folder from a copy, or train it again (for a generation of a run: \
     `lmloop generations` with `--rerun-from K`, K its generation, drops it and the generations after it)";

impl Checkpoint {
    /// Loads a finished checkpoint, after checking its weights against the record in
    /// `state.json` (a checkpoint without one loads unverified: [`Checkpoint::verified`]).
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        if !dir.is_dir() {
            bail!("checkpoint folder {} does not exist", dir.display());
        }
        if !is_done(dir) {
            bail!("{} is not a finished checkpoint (it has no DONE marker)", dir.display());
        }
        let files = CheckpointPaths::new(dir);
        let state: TrainingState = read_json(&files.state())?;
        if let Some(record) = &state.weights {
            check_file(&files.weights(), record, DAMAGED_WEIGHTS)?;
        }
        let cfg: ModelConfig = read_json(&files.config())?;
        cfg.validate().with_context(|| format!("in {}", files.config().display()))?;
        let vocab = Vocab::load(&files.tokenizer())?;
        if vocab.vocab_size() as i64 != cfg.vocab_size {
            bail!(
                "checkpoint {} is inconsistent: its tokenizer has {} tokens but its model config says {}",
                dir.display(),
                vocab.vocab_size(),
                cfg.vocab_size
            );
        }
        let mut vs = nn::VarStore::new(device);
        let model = Model::new(&vs.root(), &cfg);
        load_weights(&mut vs, &files.weights())?;
        Ok(Self { dir: dir.to_path_buf(), vs, model, vocab, state })
    }

    /// Whether the weights were checked against a record when they were loaded.
    pub fn verified(&self) -> bool {
        self.state.weights.is_some()
    }
}

/// The weights file of the finished checkpoint `dir`, checked against its record
/// (unchecked when the checkpoint has none).
pub fn checked_weights(dir: &Path) -> Result<PathBuf> {
    check_weights(dir, DAMAGED_WEIGHTS)
}

/// [`checked_weights`], with `way_out` the repair a missing `state.json` or damaged
/// weights name.
pub fn check_weights(dir: &Path, way_out: &str) -> Result<PathBuf> {
    let files = CheckpointPaths::new(dir);
    if !files.state().exists() {
        bail!("{} has no state.json; {way_out}", dir.display());
    }
    let state: TrainingState = read_json(&files.state()).with_context(|| way_out.to_string())?;
    if let Some(record) = &state.weights {
        check_file(&files.weights(), record, way_out)?;
    }
    Ok(files.weights())
}

/// Copies weights from a safetensors file into `vs`, checking every name and shape
/// first so that a checkpoint of another shape gets a message, not a crash.
pub fn load_weights(vs: &mut nn::VarStore, path: &Path) -> Result<()> {
    let loaded = Tensor::read_safetensors(path).with_context(|| format!("cannot read weights {}", path.display()))?;
    copy_weights(vs, loaded.into_iter().collect(), &format!("weights {}", path.display()))
}

/// Copies `loaded` into the variables of `vs` (converting to their dtype), after
/// checking that every variable has a tensor of its shape and that no tensor is left
/// over; `source` names where the tensors came from in messages.
pub fn copy_weights(vs: &mut nn::VarStore, loaded: HashMap<String, Tensor>, source: &str) -> Result<()> {
    let vars = vs.variables();
    for (name, var) in &vars {
        match loaded.get(name) {
            None => bail!("{source} do not fit this model: tensor '{name}' is missing"),
            Some(t) if t.size() != var.size() => bail!(
                "{source} come from a different model shape: '{name}' is {:?} there, but this model needs {:?}",
                t.size(),
                var.size()
            ),
            Some(_) => {}
        }
    }
    let mut extra: Vec<&String> = loaded.keys().filter(|k| !vars.contains_key(*k)).collect();
    extra.sort();
    if let Some(extra) = extra.first() {
        bail!("{source} do not fit this model: it has an unexpected tensor '{extra}'");
    }
    tch::no_grad(|| {
        for (name, var) in vars {
            let mut var = var;
            var.copy_(&loaded[&name]);
        }
    });
    Ok(())
}

/// Writes a complete checkpoint into `dir` (replacing an unfinished one), atomically;
/// returns the state as written (with the record of its weights). A save that fails
/// (a full disk) removes its temporary folder.
pub fn save(
    dir: &Path,
    vs: &nn::VarStore,
    cfg: &ModelConfig,
    vocab: &Vocab,
    state: &TrainingState,
    log: Option<&Path>,
) -> Result<TrainingState> {
    let tmp = crate::durable::temp_path(dir);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).ok();
    }
    let saved = save_into(&tmp, vs, cfg, vocab, state, log)
        .with_context(|| format!("cannot save the checkpoint {}", dir.display()))
        .and_then(|state| {
            if dir.exists() {
                std::fs::remove_dir_all(dir).with_context(|| format!("cannot replace {}", dir.display()))?;
            }
            crate::durable::rename_durably(&tmp, dir)?;
            Ok(state)
        });
    if saved.is_err() {
        std::fs::remove_dir_all(&tmp).ok();
    }
    saved
}

/// Writes every file of a checkpoint into the folder `tmp`, `DONE` last.
fn save_into(
    tmp: &Path,
    vs: &nn::VarStore,
    cfg: &ModelConfig,
    vocab: &Vocab,
    state: &TrainingState,
    log: Option<&Path>,
) -> Result<TrainingState> {
    std::fs::create_dir_all(tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let files = CheckpointPaths::new(tmp);
    vs.save(files.weights()).with_context(|| format!("cannot write weights into {}", tmp.display()))?;
    crate::durable::sync_file(&files.weights())?;
    let state = TrainingState { weights: Some(FileFingerprint::of(&files.weights())?), ..state.clone() };
    write_json_atomic(&files.config(), cfg)?;
    write_json_atomic(&files.state(), &state)?;
    vocab.save(&files.tokenizer())?;
    if let Some(log) = log {
        std::fs::copy(log, files.train_log()).with_context(|| format!("cannot copy {}", log.display()))?;
        crate::durable::sync_file(&files.train_log())?;
    }
    // The tokenizer and JSON files were flushed as they were written (`write_atomic`);
    // DONE is written, and flushed with the folder, only after all of them.
    mark_done(tmp)?;
    Ok(state)
}
