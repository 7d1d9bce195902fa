//! The one place that knows where things live on disk.
//!
//! ```text
//! corpora/real/NAME/          raw.txt, tokenizer.json, train.bin, val.bin, test.bin, meta.json
//! corpora/synthetic/RUN/      gen-KK.bin, gen-KK.txt, gen-KK.json (sampled by generation KK-1)
//! checkpoints/RUN/gen-KK/     model.safetensors, config.json, state.json, tokenizer.json,
//!                             train_log.csv, heldout.json, DONE
//! checkpoints/RUN/.gen-KK.resume/step-SSSSSSS/   mid-training snapshots (while gen-KK trains)
//! checkpoints/RUN/pretrained/ the same as gen-KK, imported from generations.init_from (when set)
//! analysis/RUN/               run.toml, protocol.json, corpus.json, runtime.json,
//!                             generations.csv, loss_by_frequency.csv, drift.csv, drift/*.toml,
//!                             tokens.csv, reference.json, mixture/gen-KK.json, plots/,
//!                             report.html, .lock
//! analysis/sweeps/NAME/       see [`SweepPaths`]
//! analysis/compare-RUN1-…/    report.html, plots/
//! ```
//! A tokenizer that came from a transformers folder keeps its `tokenizer_config.json`
//! beside every `tokenizer.json`.
//! Generation indices are zero-padded to two digits (`gen-03`) so folders sort.
//! Temporaries (`.NAME.tmp-PID`, `.NAME.partial`) are written beside their final name
//! and renamed into place; [`remove_stale_temporaries`] deletes the ones a killed
//! process left.
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Name of the marker file written last into a finished folder.
pub const DONE: &str = "DONE";

/// Paths of one project tree (the folder holding `corpora/`, `checkpoints/`, `analysis/`).
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn real_corpus(&self, name: &str) -> PathBuf {
        self.root.join("corpora").join("real").join(name)
    }

    pub fn synthetic_dir(&self, run: &str) -> PathBuf {
        self.root.join("corpora").join("synthetic").join(run)
    }

    /// Synthetic corpus `S_k`, sampled from generation k-1's model (without extension).
    pub fn synthetic_corpus(&self, run: &str, generation: u32) -> PathBuf {
        self.synthetic_dir(run).join(gen_name(generation))
    }

    pub fn checkpoint(&self, run: &str, generation: u32) -> PathBuf {
        self.root.join("checkpoints").join(run).join(gen_name(generation))
    }

    /// The model a run imported from `generations.init_from`, as an lmloop checkpoint:
    /// generation 0 starts from it.
    pub fn pretrained_checkpoint(&self, run: &str) -> PathBuf {
        self.root.join("checkpoints").join(run).join("pretrained")
    }

    pub fn analysis(&self, run: &str) -> PathBuf {
        self.root.join("analysis").join(run)
    }

    pub fn mixture_manifest(&self, run: &str, generation: u32) -> PathBuf {
        self.analysis(run).join("mixture").join(format!("{}.json", gen_name(generation)))
    }

    pub fn plots(&self, run: &str) -> PathBuf {
        Self::plots_in(&self.analysis(run))
    }

    /// The plots folder of a report folder (a run's, a comparison's).
    pub fn plots_in(report_dir: &Path) -> PathBuf {
        report_dir.join("plots")
    }

    /// The HTML file of a report folder (a run's, a comparison's).
    pub fn report_in(report_dir: &Path) -> PathBuf {
        report_dir.join("report.html")
    }

    pub fn run_toml(&self, run: &str) -> PathBuf {
        self.analysis(run).join("run.toml")
    }

    pub fn generations_csv(&self, run: &str) -> PathBuf {
        self.analysis(run).join("generations.csv")
    }

    /// Fingerprint of the prepared corpus the run started on (`crate::integrity`).
    pub fn corpus_json(&self, run: &str) -> PathBuf {
        self.analysis(run).join("corpus.json")
    }

    /// Device and threads the run started on (`crate::integrity`).
    pub fn runtime_json(&self, run: &str) -> PathBuf {
        self.analysis(run).join("runtime.json")
    }

    pub fn drift_csv(&self, run: &str) -> PathBuf {
        self.analysis(run).join("drift.csv")
    }

    pub fn tokens_csv(&self, run: &str) -> PathBuf {
        self.analysis(run).join("tokens.csv")
    }

    /// Cached drift row of S_k, or of the real split for `None`.
    pub fn drift_cache(&self, run: &str, synthetic_index: Option<u32>) -> PathBuf {
        let name = synthetic_index.map_or_else(|| "real".to_string(), gen_name);
        self.analysis(run).join("drift").join(format!("{name}.toml"))
    }

    /// Cached drift row of the noise floor (the real sample of D tokens).
    pub fn noise_floor_cache(&self, run: &str) -> PathBuf {
        self.analysis(run).join("drift").join("noise-floor.toml")
    }

    /// Sizes of the real reference: |R|, D and the noise floor's size.
    pub fn reference_json(&self, run: &str) -> PathBuf {
        self.analysis(run).join("reference.json")
    }

    /// Held-out loss per real-count bucket of the target token, written by the generations loop.
    pub fn loss_by_frequency_csv(&self, run: &str) -> PathBuf {
        self.analysis(run).join("loss_by_frequency.csv")
    }

    pub fn report_html(&self, run: &str) -> PathBuf {
        Self::report_in(&self.analysis(run))
    }

    /// Decoded text of S_k.
    pub fn synthetic_text(&self, run: &str, k: u32) -> PathBuf {
        let mut stem = self.synthetic_corpus(run, k).into_os_string();
        stem.push(".txt");
        PathBuf::from(stem)
    }

    /// Default folder of `lmloop compare RUN1 RUN2 …`.
    pub fn comparison(&self, runs: &[String]) -> PathBuf {
        self.root().join("analysis").join(format!("compare-{}", runs.join("-")))
    }

    /// The checkpoints of a run: `checkpoints/RUN/`.
    pub fn checkpoints(&self, run: &str) -> PathBuf {
        self.root.join("checkpoints").join(run)
    }

    /// The folder holding every run's analysis folder: `analysis/`.
    pub fn analysis_root(&self) -> PathBuf {
        self.root.join("analysis")
    }

    /// The lock file a running process holds on its run.
    pub fn run_lock(&self, run: &str) -> PathBuf {
        self.analysis(run).join(".lock")
    }

    /// |R|, D, the budget, the length cap and the noise floor's source of a run.
    pub fn protocol_json(&self, run: &str) -> PathBuf {
        self.analysis(run).join("protocol.json")
    }
}

/// Where a sweep keeps its files.
///
/// ```text
/// analysis/sweeps/NAME/
///   configs/RUN.toml          the resolved config of every run
///   logs/RUN.log              what each run printed (appended across attempts)
///   state/RUN.json            which process runs it, or how it failed
///   slurm/array.sbatch        the SLURM array script; slurm/job.json after --submit
///   slurm/logs/task-I.log     SLURM's own output of array task I
///   summary.csv, changes.csv  the aggregate over seeds (`sweep report`)
///   tails.csv                 tail survival over seeds beside the simulator
///   report.html, plots/       the report
/// ```
/// The runs themselves live where every run lives (`analysis/RUN/`, `checkpoints/RUN/`, …).
#[derive(Debug, Clone)]
pub struct SweepPaths {
    dir: PathBuf,
}

impl SweepPaths {
    pub fn new(layout: &Layout, sweep: &str) -> Self {
        Self { dir: layout.analysis_root().join("sweeps").join(sweep) }
    }

    /// Held while `sweep run` runs this sweep on this machine.
    pub fn lock(&self) -> PathBuf {
        self.dir.join(".lock")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self, run: &str) -> PathBuf {
        self.dir.join("configs").join(format!("{run}.toml"))
    }

    pub fn log(&self, run: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{run}.log"))
    }

    pub fn state(&self, run: &str) -> PathBuf {
        self.dir.join("state").join(format!("{run}.json"))
    }

    pub fn slurm_script(&self) -> PathBuf {
        self.dir.join("slurm").join("array.sbatch")
    }

    pub fn slurm_job(&self) -> PathBuf {
        self.dir.join("slurm").join("job.json")
    }

    pub fn slurm_logs(&self) -> PathBuf {
        self.dir.join("slurm").join("logs")
    }

    pub fn summary_csv(&self) -> PathBuf {
        self.dir.join("summary.csv")
    }

    pub fn changes_csv(&self) -> PathBuf {
        self.dir.join("changes.csv")
    }

    pub fn tails_csv(&self) -> PathBuf {
        self.dir.join("tails.csv")
    }

    pub fn report_html(&self) -> PathBuf {
        self.dir.join("report.html")
    }

    pub fn plots(&self) -> PathBuf {
        self.dir.join("plots")
    }
}

/// Files inside a prepared real corpus folder.
pub struct RealCorpus;

impl RealCorpus {
    pub const RAW: &'static str = "raw.txt";
    pub const TOKENIZER: &'static str = "tokenizer.json";
    pub const TRAIN: &'static str = "train.bin";
    pub const VAL: &'static str = "val.bin";
    pub const TEST: &'static str = "test.bin";
    pub const META: &'static str = "meta.json";
}

/// Files inside a checkpoint folder.
pub struct CheckpointFiles;

impl CheckpointFiles {
    pub const WEIGHTS: &'static str = "model.safetensors";
    pub const CONFIG: &'static str = "config.json";
    pub const STATE: &'static str = "state.json";
    pub const TOKENIZER: &'static str = "tokenizer.json";
    pub const LOG: &'static str = "train_log.csv";
    /// The held-out evaluation of the generations loop.
    pub const HELD_OUT: &'static str = "heldout.json";
}

/// Mid-training snapshots of the checkpoint folder `checkpoint` (see `crate::snapshot`):
/// `.gen-KK.resume/step-SSSSSSS/`, beside the checkpoint it will become.
pub fn training_snapshots(checkpoint: &Path) -> PathBuf {
    let name = checkpoint.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    checkpoint.with_file_name(format!(".{name}.resume"))
}

/// The running training log of `checkpoint`, kept beside it until the checkpoint is complete.
pub fn partial_train_log(checkpoint: &Path) -> PathBuf {
    let name = checkpoint.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    checkpoint.with_file_name(format!(".{name}.train_log.csv.partial"))
}

/// Files inside one mid-training snapshot folder.
pub struct SnapshotFiles;

impl SnapshotFiles {
    pub const WEIGHTS: &'static str = "model.safetensors";
    pub const OPTIMIZER: &'static str = "optimizer.safetensors";
    pub const STATE: &'static str = "snapshot.json";
    pub const LOG: &'static str = "train_log.csv";
}

pub fn gen_name(generation: u32) -> String {
    format!("gen-{generation:02}")
}

/// The temporary sibling a file is written to before being renamed into place.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// True for the names of files and folders that only an unfinished write leaves:
/// [`temp_path`]'s `.NAME.tmp-PID` and the trainer's `.NAME.partial` log.
pub fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && (name.contains(".tmp-") || name.ends_with(".partial"))
}

/// Deletes every temporary ([`is_temporary`]) anywhere under `dir`, which an
/// interrupted process left behind; returns how many it removed. Call it only while
/// holding the lock of whatever owns `dir` (a run's folders are owned by its lock).
pub fn remove_stale_temporaries(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_temporary(&entry.file_name().to_string_lossy()) {
            let gone = if is_dir { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            removed += usize::from(gone.is_ok());
        } else if is_dir {
            removed += remove_stale_temporaries(&path);
        }
    }
    removed
}

/// An exclusive advisory lock on a file (`flock`), held until dropped; the OS releases
/// it when the process ends, even by a kill.
pub struct Lock {
    _file: std::fs::File,
}

impl Lock {
    /// Takes the lock at `path` (creating the file and its folder), or `None` when
    /// another process holds it.
    pub fn try_acquire(path: &Path) -> Result<Option<Lock>> {
        use std::os::unix::io::AsRawFd;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        // SAFETY: flock on a file descriptor we own.
        let held = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0;
        Ok((!held).then_some(Lock { _file: file }))
    }
}

/// Flushes a folder's entries (a rename or a new file in it) to disk. A filesystem
/// that cannot flush folders at all (EINVAL, as some network filesystems answer) is
/// accepted; any other failure is an error.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    match std::fs::File::open(dir).and_then(|f| f.sync_all()) {
        Err(e) if e.raw_os_error() != Some(libc::EINVAL) => {
            Err(e).with_context(|| format!("cannot flush the folder {} to disk", dir.display()))
        }
        _ => Ok(()),
    }
}

/// Flushes a file's contents to disk.
pub fn sync_file(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot flush {} to disk", path.display()))
}

/// Renames `from` to `to` and flushes the folder holding `to`, so the rename survives
/// a power cut.
pub fn rename_durably(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).with_context(|| format!("cannot move {} into place", to.display()))?;
    sync_dir(to.parent().unwrap_or(Path::new(".")))
}

/// Writes `bytes` to `path` atomically and durably: a reader sees the old file or the
/// whole new one (a rename within one folder is atomic on POSIX filesystems), and once
/// it returns, the data and the rename are on disk (the file and then its folder are
/// flushed). The temporary file is removed again if anything fails.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    if path.file_name().is_none() {
        anyhow::bail!("cannot write to {}: it names no file", path.display());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = temp_path(path);
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
        .with_context(|| format!("cannot write {}", tmp.display()));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("cannot move {} into place: {e}", path.display())
    })?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid", path.display()))
}

/// True when a folder was completed (its `DONE` marker exists).
pub fn is_done(dir: &Path) -> bool {
    dir.join(DONE).exists()
}

pub fn mark_done(dir: &Path) -> Result<()> {
    write_atomic(&dir.join(DONE), b"")
}
