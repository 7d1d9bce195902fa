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
//! Paths only: what is written there, and how durably, is `crate::durable`'s.
use std::path::{Path, PathBuf};

/// Name of the marker file written last into a finished folder.
pub const DONE: &str = "DONE";

/// Refuses a run name that is not a plain folder name (`--run`).
pub fn check_run_name(run: &str) -> anyhow::Result<()> {
    if run.is_empty() || run.contains('/') || run.starts_with('.') {
        anyhow::bail!("--run must be a plain folder name, got '{run}'");
    }
    Ok(())
}

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

    /// Per-document perplexities of S_k (`Some(k)`) or of the real test documents
    /// (`None`) under the reference model (`crate::analysis::scores`).
    pub fn scores_csv(&self, run: &str, synthetic_index: Option<u32>) -> PathBuf {
        let name = synthetic_index.map_or_else(|| "real-test".to_string(), gen_name);
        self.analysis(run).join("scores").join(format!("{name}.csv"))
    }

    /// A file of the run's scores besides the corpora's (`crate::scoring` names them).
    pub fn scores_file(&self, run: &str, name: &str) -> PathBuf {
        self.analysis(run).join("scores").join(name)
    }

    /// The marker written after S_k's scores (`scores/gen-KK.json`).
    pub fn score_marker(&self, run: &str, k: u32) -> PathBuf {
        self.scores_csv(run, Some(k)).with_extension("json")
    }

    /// The record of the model a run's scores were computed under and of its run-level
    /// score files (`scores/reference.json`, `crate::scoring::ReferenceRecord`).
    pub fn reference_scores_record(&self, run: &str) -> PathBuf {
        self.scores_file(run, "reference.json")
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
        CorpusPaths::new(&self.synthetic_corpus(run, k)).txt()
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

    pub fn contrasts_csv(&self) -> PathBuf {
        self.dir.join("contrasts.csv")
    }

    pub fn rates_csv(&self) -> PathBuf {
        self.dir.join("rates.csv")
    }

    pub fn thresholds_csv(&self) -> PathBuf {
        self.dir.join("thresholds.csv")
    }

    pub fn verdicts_csv(&self) -> PathBuf {
        self.dir.join("verdicts.csv")
    }

    pub fn vanish_csv(&self) -> PathBuf {
        self.dir.join("vanish.csv")
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

/// The files of one synthetic corpus, named beside its stem (`corpora/synthetic/RUN/gen-KK`):
/// the corpus (`.bin`, `.txt`, `.json`, the manifest written last) and, when curated,
/// the listing of every sampled document, the dropped documents' text and the kept
/// passages' reference embeddings.
#[derive(Debug, Clone)]
pub struct CorpusPaths {
    stem: PathBuf,
}

impl CorpusPaths {
    pub fn new(stem: &Path) -> Self {
        Self { stem: stem.to_path_buf() }
    }

    fn beside(&self, suffix: &str) -> PathBuf {
        let mut s = self.stem.as_os_str().to_os_string();
        s.push(suffix);
        PathBuf::from(s)
    }

    pub fn bin(&self) -> PathBuf {
        self.beside(".bin")
    }

    pub fn txt(&self) -> PathBuf {
        self.beside(".txt")
    }

    pub fn json(&self) -> PathBuf {
        self.beside(".json")
    }

    pub fn listing(&self) -> PathBuf {
        self.beside(".curation.csv")
    }

    pub fn dropped(&self) -> PathBuf {
        self.beside(".dropped.txt")
    }

    pub fn reference_embeddings(&self) -> PathBuf {
        self.beside(".reference.emb")
    }

    /// The verifier's temporary pool of one sampling round (removed once scored).
    pub fn pool(&self) -> PathBuf {
        self.beside(".pool.bin")
    }

    /// Every file above but the temporary pool, the manifest first: what `--rerun-from`
    /// removes for the corpus (a corpus without its manifest is incomplete, whatever
    /// else is left).
    pub fn all(&self) -> [PathBuf; 6] {
        [self.json(), self.bin(), self.txt(), self.listing(), self.dropped(), self.reference_embeddings()]
    }
}

/// The files of one checkpoint folder.
#[derive(Debug, Clone)]
pub struct CheckpointPaths {
    dir: PathBuf,
}

impl CheckpointPaths {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn weights(&self) -> PathBuf {
        self.dir.join("model.safetensors")
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    pub fn tokenizer(&self) -> PathBuf {
        self.dir.join("tokenizer.json")
    }

    pub fn train_log(&self) -> PathBuf {
        self.dir.join("train_log.csv")
    }

    /// The held-out evaluation of the generations loop.
    pub fn held_out(&self) -> PathBuf {
        self.dir.join("heldout.json")
    }

    /// Mid-training snapshots (see `crate::snapshot`): `.gen-KK.resume/step-SSSSSSS/`,
    /// beside the checkpoint they will become.
    pub fn snapshots(&self) -> PathBuf {
        self.dir.with_file_name(format!(".{}.resume", self.name()))
    }

    /// The running training log, kept beside the checkpoint until it is complete.
    pub fn partial_train_log(&self) -> PathBuf {
        self.dir.with_file_name(format!(".{}.train_log.csv.partial", self.name()))
    }

    fn name(&self) -> String {
        self.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }
}

/// The files of one mid-training snapshot folder.
#[derive(Debug, Clone)]
pub struct SnapshotPaths {
    dir: PathBuf,
}

impl SnapshotPaths {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn weights(&self) -> PathBuf {
        self.dir.join("model.safetensors")
    }

    pub fn optimizer(&self) -> PathBuf {
        self.dir.join("optimizer.safetensors")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.join("snapshot.json")
    }

    pub fn train_log(&self) -> PathBuf {
        self.dir.join("train_log.csv")
    }
}

pub fn gen_name(generation: u32) -> String {
    format!("gen-{generation:02}")
}
