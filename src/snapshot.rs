//! Mid-training snapshots, so a killed or requeued training run continues where it
//! stopped instead of starting over.
//!
//! Every `train.checkpoint_interval` optimizer steps the trainer writes, beside the
//! checkpoint folder it is building, `.gen-KK.resume/step-SSSSSSS/` holding the weights,
//! the AdamW moments and step counts, the training log so far and `snapshot.json`
//! (steps done, the loss and validation figures the log continues from, a fingerprint
//! of the settings and data, the device). Everything else the run needs is a function
//! of the step: the learning rate (the schedule), the data position (the seeded window
//! order), and the random stream (libtorch's generator is re-seeded from the run seed
//! and the step at step 0 and at every snapshot step, so dropout draws the same masks
//! whether or not the run was interrupted).
//!
//! A snapshot is written under a temporary name, flushed, marked `DONE` and renamed,
//! and only then are older snapshots deleted, so at every moment one complete snapshot
//! exists. The folder is removed when the checkpoint is complete.
use crate::durable::{is_done, mark_done, read_json, rename_durably, sync_file};
use crate::layout::{CheckpointPaths, SnapshotPaths};
use crate::optim::{AdamW, BTreeSteps};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{nn, Tensor};

/// `snapshot.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SnapshotState {
    /// Optimizer steps completed.
    pub step: i64,
    /// Settings and data the snapshot belongs to (see `train::fingerprint`).
    pub fingerprint: String,
    /// Device and threads it was taken on (`device::describe`).
    pub device: String,
    pub optimizer_steps: BTreeSteps,
    pub train_seconds: f64,
    pub last_train_loss: f64,
    pub last_val_loss: Option<f64>,
}

/// A snapshot read back from disk (its weights stay in `dir`, for `checkpoint::load_weights`).
pub struct Snapshot {
    pub dir: PathBuf,
    pub state: SnapshotState,
    pub optimizer: HashMap<String, Tensor>,
    /// The training log up to `state.step`.
    pub log: String,
}

fn step_name(step: i64) -> String {
    format!("step-{step:07}")
}

/// Complete snapshots of `checkpoint`, oldest first.
fn complete(checkpoint: &Path) -> Vec<(i64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(CheckpointPaths::new(checkpoint).snapshots()) else { return Vec::new() };
    let mut found: Vec<(i64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix("step-")?.parse().ok()?;
            is_done(&e.path()).then(|| (step, e.path()))
        })
        .collect();
    found.sort();
    found
}

/// Writes the snapshot of `checkpoint` at `state.step`, then deletes older ones.
pub fn write(checkpoint: &Path, vs: &nn::VarStore, opt: &AdamW, state: &SnapshotState, log: &Path) -> Result<()> {
    let root = CheckpointPaths::new(checkpoint).snapshots();
    let dir = root.join(step_name(state.step));
    let tmp = crate::durable::temp_path(&dir);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).ok();
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let files = SnapshotPaths::new(&tmp);
    let weights = files.weights();
    vs.save(&weights).with_context(|| format!("cannot write {}", weights.display()))?;
    sync_file(&weights)?;
    let (moments, _) = opt.state();
    let optimizer = files.optimizer();
    Tensor::write_safetensors(&moments, &optimizer).with_context(|| format!("cannot write {}", optimizer.display()))?;
    sync_file(&optimizer)?;
    let log_copy = files.train_log();
    std::fs::copy(log, &log_copy).with_context(|| format!("cannot copy {}", log.display()))?;
    sync_file(&log_copy)?;
    crate::durable::write_json_atomic(&files.state(), state)?;
    mark_done(&tmp)?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot replace {}", dir.display()))?;
    }
    rename_durably(&tmp, &dir)?;
    for (step, old) in complete(checkpoint) {
        if step < state.step {
            std::fs::remove_dir_all(&old).ok();
        }
    }
    Ok(())
}

/// The newest complete snapshot of `checkpoint`, if any.
pub fn latest(checkpoint: &Path) -> Result<Option<Snapshot>> {
    let Some((_, dir)) = complete(checkpoint).pop() else { return Ok(None) };
    let optimizer = SnapshotPaths::new(&dir).optimizer();
    let optimizer: HashMap<String, Tensor> = Tensor::read_safetensors(&optimizer)
        .with_context(|| format!("cannot read {}", optimizer.display()))?
        .into_iter()
        .collect();
    let log_path = SnapshotPaths::new(&dir).train_log();
    Ok(Some(Snapshot {
        state: read_json(&SnapshotPaths::new(&dir).state())?,
        optimizer,
        log: std::fs::read_to_string(&log_path).with_context(|| format!("cannot read {}", log_path.display()))?,
        dir,
    }))
}

/// Deletes every snapshot of `checkpoint` (once it is complete, or when they belong to other settings).
pub fn remove(checkpoint: &Path) -> Result<()> {
    let root = CheckpointPaths::new(checkpoint).snapshots();
    if root.exists() {
        std::fs::remove_dir_all(&root).with_context(|| format!("cannot remove {}", root.display()))?;
    }
    Ok(())
}
