//! Setting a run up, once: the lock, the saved configuration, the corpus and its
//! fingerprint, the real training set R, the sizes, the noise floor and the tail null,
//! and the protocol record that says all of it.
use super::{derive_seed, SeedPurpose, DEFAULT_CAP_OVER_LONGEST_REAL, NULL_DRAWS};
use crate::choice::Choice;
use crate::config::Config;
use crate::durable::{is_done, write_atomic, write_json_atomic};
use crate::eval::FrequencyBuckets;
use crate::interop::HfFolder;
use crate::layout::Layout;
use crate::policy::{Corpus, Policy, RealData};
use crate::prepare::PreparedCorpus;
use crate::sample::Sampling;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use tch::Device;

/// Everything a run needs, resolved from the config file and the command line.
pub struct RunSpec {
    pub config: Config,
    pub run: String,
    pub force_new: bool,
    /// Drop generation K and every later one before running (`--rerun-from K`): the way
    /// out when one of their artifacts is damaged.
    pub rerun_from: Option<u32>,
    pub device: Device,
    pub progress: bool,
}

/// An exclusive lock on a run, held for the life of the process (released by the OS
/// even when the process is killed).
pub struct RunLock {
    _lock: crate::durable::Lock,
}

impl RunLock {
    pub fn acquire(layout: &Layout, run: &str) -> Result<Self> {
        let path = layout.run_lock(run);
        match crate::durable::Lock::try_acquire(&path)? {
            Some(lock) => Ok(Self { _lock: lock }),
            None => bail!(
                "run '{run}' is in use by another lmloop process (lock {} is held); wait for it or pick another --run",
                path.display()
            ),
        }
    }
}

/// `analysis/RUN/protocol.json`: the sizes and sources a run's numbers depend on.
#[derive(Debug, Clone, Serialize)]
pub struct Protocol {
    /// |R| and its documents.
    pub real_training_set_tokens: usize,
    pub real_training_set_documents: usize,
    /// Tokens of the whole real training split R is taken from.
    pub real_training_split_tokens: usize,
    /// `generations.real_subset_tokens`, when R is a subset.
    pub real_subset_tokens: Option<usize>,
    /// Share of the split held out of R, when R is the split less a hold-out.
    pub holdout_fraction: Option<f64>,
    /// The pool of real training documents outside R.
    pub outside_r_tokens: usize,
    pub outside_r_documents: usize,
    /// D, and D/|R|.
    pub generation_size_tokens: usize,
    pub generation_size_over_real: f64,
    /// `train.budget` and the passes it makes.
    pub budget: String,
    pub epochs: f64,
    /// The sampler's length cap, and the longest real training document it derives from.
    pub max_doc_tokens: usize,
    pub longest_real_document_tokens: usize,
    /// Real-count ranges of the held-out loss's frequency buckets.
    pub frequency_buckets: Vec<(u64, u64)>,
    /// The real sample of D tokens a perfect model would show, and where it came from.
    pub noise_floor_tokens: usize,
    pub noise_floor_documents: usize,
    pub noise_floor_source: String,
    /// The tail null's D-token draws of unseen real documents.
    pub tail_null_draws: usize,
    pub tail_null_source: String,
    pub tail_null_seconds: f64,
    /// Where the control `real` draws its corpora from (that policy only).
    pub control_draws_from: Option<String>,
    /// The model every synthetic corpus's documents are scored under
    /// (`crate::analysis::scores`).
    pub reference_model: String,
}

/// A run, set up: what every generation's steps read.
pub struct RunContext<'a> {
    pub layout: &'a Layout,
    pub run: String,
    /// The configuration with the shape of `generations.init_from` applied.
    pub cfg: Config,
    pub policy: Policy,
    /// N: generations after generation 0.
    pub generations: u32,
    pub device: Device,
    pub progress: bool,
    pub corpus: PreparedCorpus,
    /// The model shape with the tokenizer's vocabulary.
    pub model: crate::config::ModelConfig,
    /// The imported checkpoint generation 0 (and every `pretrained` generation) starts from.
    pub pretrained: Option<PathBuf>,
    pub real: RealData,
    /// D: tokens per synthetic corpus.
    pub synthetic_size: usize,
    pub max_doc_tokens: usize,
    pub sampling: Sampling,
    pub buckets: FrequencyBuckets,
    pub reference: crate::analysis::RealReference,
    /// Every token's text, for the token tables.
    pub token_texts: Vec<String>,
    /// Generations `generations.csv` already records as finished when the run opened:
    /// their artifacts must all be there.
    pub finished: u32,
    /// Those rows: the loop keeps the ones it has not reached yet in `generations.csv`,
    /// so a resume that stops early never erases the record of a finished generation.
    pub recorded: Vec<crate::records::GenerationRow>,
    /// The record of the real training split's token file, for the mixture records.
    pub train_record: Option<crate::integrity::FileFingerprint>,
    /// The oracle's checkpoint, when the run measures under it (`generations.reference
    /// = "oracle"`) or curates by it (`curation.verifier = "oracle"`).
    pub oracle: Option<PathBuf>,
    /// Whether the measuring reference is the oracle (else M_0).
    pub reference_is_oracle: bool,
    /// Artifacts read without a record of their contents to check them against (written
    /// by an lmloop that kept none), for one note at the end of the run.
    pub unverified: std::cell::RefCell<Vec<String>>,
    _lock: RunLock,
}

impl<'a> RunContext<'a> {
    /// Locks the run, checks it against what it was started with, and sets it up
    /// (writing `run.toml`, `corpus.json`, `runtime.json` and `protocol.json`).
    pub fn open(layout: &'a Layout, spec: &RunSpec) -> Result<Self> {
        spec.config.validate()?;
        let (cfg, imported) = with_imported_shape(layout, &spec.config)?;
        let policy = cfg.generations.policy()?;
        let run = spec.run.as_str();
        crate::layout::check_run_name(run)?;
        let lock = RunLock::acquire(layout, run)?;
        if let Some(k) = spec.rerun_from {
            check_rerun_from(layout, run, k, spec.force_new)?;
        }
        check_saved_config(layout, run, &cfg, spec.force_new)?;
        if let Some(k) = spec.rerun_from {
            drop_generations(layout, run, k, cfg.generations.generations)?;
        }
        let recorded = match layout.generations_csv(run) {
            path if path.exists() => crate::records::read_rows(&path)?,
            _ => Vec::new(),
        };

        let corpus_dir = layout.real_corpus(&cfg.data.corpus);
        let corpus = PreparedCorpus::open(&corpus_dir)
            .with_context(|| format!("the run needs the prepared corpus '{}' (config data.corpus)", cfg.data.corpus))?;
        let eot = corpus.vocab.eot();
        let fingerprint = crate::integrity::CorpusFingerprint::of_checked(
            &cfg.data.corpus,
            &corpus_dir,
            corpus.vocab.vocab_size(),
            &corpus.meta.files,
        )?;
        crate::integrity::check_corpus(&layout.corpus_json(run), run, &fingerprint)?;
        let train_record = fingerprint.files.get(crate::layout::RealCorpus::TRAIN).cloned();
        let runtime = crate::integrity::Runtime { device: crate::device::describe(spec.device) };
        if let Some(warning) = crate::integrity::check_runtime(&layout.runtime_json(run), run, &runtime)? {
            eprintln!("[{run}] warning: {warning}");
        }
        let pretrained = match &imported {
            Some(folder) => Some(import_pretrained(layout, run, &cfg, folder, &corpus)?),
            None => None,
        };
        let mut model = cfg.model.clone();
        model.vocab_size = corpus.vocab.vocab_size() as i64;

        let split = Corpus::new("real/train", corpus.train.clone(), eot);
        let g = &cfg.generations;
        let subset = g.real_subset_tokens as usize;
        let real = RealData::new(split, policy, subset, g.holdout_fraction, g.real_subset_seed).context(
            "choosing the real training set R (generations.real_subset_tokens, generations.holdout_fraction)",
        )?;
        let synthetic_size = match g.synthetic_tokens {
            0 => real.base.tokens(),
            t => t as usize,
        };
        if policy == Policy::Real {
            real.check_control_pool(synthetic_size)?;
        }
        let max_doc_tokens = match cfg.sample.max_doc_tokens {
            Some(cap) => cap as usize,
            None => DEFAULT_CAP_OVER_LONGEST_REAL * corpus.longest_train_document().max(1),
        };
        let reference_is_oracle = cfg.generations.reference == crate::config::ReferenceModel::Oracle;
        let curated_by_oracle = cfg.curation.verifier == Some(crate::config::Verifier::Oracle);
        let oracle = (reference_is_oracle || curated_by_oracle)
            .then(|| oracle_dir(layout, &cfg, train_record.as_ref(), pretrained.as_deref()));
        let (reference, buckets, mut protocol) =
            reference_and_protocol(&cfg, run, &corpus, &real, subset, synthetic_size, max_doc_tokens)?;
        if let Some(dir) = oracle.as_ref().filter(|_| reference_is_oracle) {
            protocol.reference_model = format!(
                "oracle: the same architecture trained once with the run's budget on the whole real training split \
                 ({} tokens, R and the documents outside it, the noise floor's among them), kept in {}",
                real.split.tokens(),
                dir.display()
            );
        }
        write_json_atomic(&layout.protocol_json(run), &protocol)?;
        let sampling = Sampling::new(cfg.sample.temperature, cfg.sample.top_k, cfg.sample.top_p)?;
        // We hold the run's lock, so every temporary in its folders is left over from a
        // process that was interrupted.
        for dir in [layout.checkpoints(run), layout.synthetic_dir(run), layout.analysis(run)] {
            crate::durable::remove_stale_temporaries(&dir);
        }
        let token_texts = (0..corpus.vocab.vocab_size() as u32).map(|id| corpus.vocab.token_text(id)).collect();
        Ok(Self {
            layout,
            run: run.to_string(),
            generations: cfg.generations.generations,
            cfg,
            policy,
            device: spec.device,
            progress: spec.progress,
            corpus,
            model,
            pretrained,
            real,
            synthetic_size,
            max_doc_tokens,
            sampling,
            buckets,
            reference,
            token_texts,
            finished: recorded.len() as u32,
            recorded,
            train_record,
            oracle,
            reference_is_oracle,
            unverified: Default::default(),
            _lock: lock,
        })
    }

    /// The sentence that says how to repair a damaged artifact of generation `k`.
    pub fn rerun_from(&self, k: u32) -> String {
        crate::verify::rerun(&self.run, k)
    }

    /// Notes an artifact that could not be verified.
    pub fn note_unverified(&self, what: String) {
        self.unverified.borrow_mut().push(what);
    }

    /// The real validation split as a document stream.
    pub fn val_stream(&self) -> crate::stream::TokenStream {
        crate::stream::TokenStream::from_file(self.corpus.val.clone(), self.corpus.vocab.delimiters())
    }

    /// Trains a model of the run's shape with `train` on `data` into `out`, validating
    /// on the real validation split: generation k's and the oracle's training alike.
    pub fn train_model(
        &self,
        what: &str,
        train: crate::config::TrainConfig,
        data: &crate::stream::TokenStream,
        init_from: Option<std::path::PathBuf>,
        out: std::path::PathBuf,
    ) -> anyhow::Result<crate::train::TrainOutcome> {
        let val = self.val_stream();
        crate::torch_error::guard(what, &self.cfg.training_memory(), || {
            crate::train::train(crate::train::TrainRequest {
                model: self.model.clone(),
                train,
                data,
                val: Some(&val),
                vocab: &self.corpus.vocab,
                device: self.device,
                init_from,
                out,
                progress: self.progress,
            })
        })
    }

    /// The run seed every generation's seeds derive from.
    pub fn seed(&self) -> u64 {
        self.cfg.train.seed
    }
}

/// With `force_new`, removes the run's artifacts; otherwise refuses a run that was
/// started with another configuration. Then saves the configuration as `run.toml`.
fn check_saved_config(layout: &Layout, run: &str, cfg: &Config, force_new: bool) -> Result<()> {
    let run_toml = layout.run_toml(run);
    if force_new {
        remove_run(layout, run)?;
    } else if run_toml.exists() {
        let saved = Config::load(&run_toml)?;
        let diff = config_differences(&saved, cfg);
        if !diff.is_empty() {
            bail!(
                "run '{run}' was started with a different configuration ({}); use another --run name, or --force-new to discard the old run",
                diff.join(", ")
            );
        }
    }
    write_atomic(&run_toml, cfg.to_toml().as_bytes())
}

/// Refuses a `--rerun-from K` that has nothing to drop: a run that does not exist, or
/// one with no generation K on disk.
fn check_rerun_from(layout: &Layout, run: &str, from: u32, force_new: bool) -> Result<()> {
    if force_new {
        bail!("--rerun-from and --force-new ask for different things: --force-new discards the whole run; give one of them");
    }
    if !layout.run_toml(run).exists() {
        bail!(
            "--rerun-from {from}: there is no run '{run}' (no {}) to drop generations of; check --run, or leave \
             --rerun-from out to start it",
            layout.run_toml(run).display()
        );
    }
    match crate::verify::last_generation_on_disk(layout, run) {
        Some(last) if from <= last => Ok(()),
        Some(last) => bail!(
            "--rerun-from {from}: run '{run}' has generations 0 to {last} on disk, so there is nothing to drop from \
             generation {from}; give a generation from 0 to {last}"
        ),
        None => bail!("--rerun-from {from}: run '{run}' has no generation on disk yet; leave --rerun-from out"),
    }
}

/// Every file of generation `k` of a run: its checkpoint folder (and snapshots and
/// partial log), the corpus S_{k+1} it sampled (the manifest first: a corpus without
/// one is incomplete, whatever else is left) with a curated corpus's side files, its
/// mixture record, its drift row and the scores of S_{k+1}.
pub fn generation_files(layout: &Layout, run: &str, k: u32) -> Vec<PathBuf> {
    let ckpt = crate::layout::CheckpointPaths::new(layout.checkpoint(run, k));
    let corpus = crate::layout::CorpusPaths::new(&layout.synthetic_corpus(run, k + 1));
    let mut files = vec![ckpt.dir().to_path_buf(), ckpt.snapshots(), ckpt.partial_train_log()];
    files.extend(corpus.all());
    files.extend([
        layout.mixture_manifest(run, k),
        layout.drift_cache(run, Some(k + 1)),
        layout.score_marker(run, k + 1),
        layout.scores_csv(run, Some(k + 1)),
    ]);
    files
}

/// The run-level files computed under M_0: the reference's record first, then the
/// files it records (dropped with generation 0; an oracle's are kept with it).
fn reference_files(layout: &Layout, run: &str) -> Vec<PathBuf> {
    use crate::scoring::{FLOOR_BIN, FLOOR_CSV, FLOOR_JSON, REAL_TEST_CSV, REAL_TEST_EMB};
    let mut files = vec![layout.reference_scores_record(run)];
    files.extend([REAL_TEST_CSV, REAL_TEST_EMB, FLOOR_BIN, FLOOR_CSV, FLOOR_JSON].map(|f| layout.scores_file(run, f)));
    files
}

/// Removes generation `from` and every later one of a run ([`generation_files`]; from
/// generation 0 under M_0, also the scores computed under it) and their rows of
/// `generations.csv` (the loop rewrites its other tables whole), saying which of them
/// this command, which runs to generation `runs_to`, computes again.
fn drop_generations(layout: &Layout, run: &str, from: u32, runs_to: u32) -> Result<()> {
    let remove = |p: &std::path::Path| -> Result<()> {
        let gone = if p.is_dir() { std::fs::remove_dir_all(p) } else { std::fs::remove_file(p) };
        match gone {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove {}", p.display()))
            }
            _ => Ok(()),
        }
    };
    let last = crate::verify::last_generation_on_disk(layout, run).unwrap_or(0).max(from);
    let under_m0 = crate::scoring::ReferenceRecord::read(layout, run)
        .ok()
        .flatten()
        .is_none_or(|r| std::path::Path::new(&r.model) == layout.checkpoint(run, 0));
    if from == 0 && under_m0 {
        for p in reference_files(layout, run) {
            remove(&p)?;
        }
    }
    for k in from..=last {
        for p in generation_files(layout, run, k) {
            remove(&p)?;
        }
    }
    let rows = layout.generations_csv(run);
    if rows.exists() {
        let kept: Vec<_> = crate::records::read_rows(&rows)?.into_iter().filter(|r| r.generation < from).collect();
        crate::records::write_rows(&rows, &kept)?;
    }
    let dropped = if last > from { format!("generations {from} to {last}") } else { format!("generation {from}") };
    let again = if runs_to >= last {
        "they are computed again".to_string()
    } else if runs_to >= from {
        format!("this command runs to generation {runs_to}, so generations {from} to {runs_to} are computed again and the later ones are not")
    } else {
        format!("this command stops at generation {runs_to}, so none of them is computed again")
    };
    eprintln!("[{run}] dropped {dropped}; {again}");
    Ok(())
}

/// Where the oracle reference of a run with `cfg` lives: `checkpoints/oracle/KEY`, KEY
/// a digest of what it is trained from (the training split's record, the model and
/// plain training settings, the run seed, the imported start's weights), so runs that
/// would train the same oracle share it.
fn oracle_dir(
    layout: &Layout,
    cfg: &Config,
    train: Option<&crate::integrity::FileFingerprint>,
    pretrained: Option<&std::path::Path>,
) -> PathBuf {
    let mut h = crate::mix::Fnv1a::new();
    // The imported start by its weights' content, not its path.
    let start = pretrained.map(|dir| {
        let weights = crate::layout::CheckpointPaths::new(dir).weights();
        crate::integrity::FileFingerprint::of(&weights).map(|f| f.sha256).unwrap_or_else(|_| dir.display().to_string())
    });
    let text = format!(
        "{}\n{}\n{}\n{:?}\n{:?}",
        cfg.data.corpus,
        toml::to_string(&cfg.model).unwrap_or_default(),
        toml::to_string(&cfg.train.plain()).unwrap_or_default(),
        train.map(|t| (t.bytes, &t.sha256)),
        start
    );
    for b in text.bytes() {
        h.add(b as u64);
    }
    layout.root().join("checkpoints").join("oracle").join(format!("{}-s{}", h.hex(), cfg.train.seed))
}

/// The real reference the analysis measures against (R, the noise floor, the tail
/// null), the frequency buckets of the held-out loss, and the protocol record.
fn reference_and_protocol(
    cfg: &Config,
    run: &str,
    corpus: &PreparedCorpus,
    real: &RealData,
    subset: usize,
    synthetic_size: usize,
    max_doc_tokens: usize,
) -> Result<(crate::analysis::RealReference, FrequencyBuckets, Protocol)> {
    let eot = corpus.vocab.eot();
    let run_seed = cfg.train.seed;
    let real_tokens = real.base.to_tokens();
    let vocab_size = corpus.vocab.vocab_size();
    let real_counts = crate::analysis::count_tokens(&real_tokens, vocab_size)?;
    let buckets = FrequencyBuckets::new(&real_counts);
    let held_out_docs = Corpus::new("real/val", corpus.val.clone(), eot);
    let floor = crate::policy::noise_floor(
        real,
        &held_out_docs,
        synthetic_size,
        derive_seed(run_seed, 0, SeedPurpose::NoiseFloor),
    );
    if let Err(why) = &floor {
        eprintln!("[{run}] warning: no noise floor: {why}; the drift plots show none (raise generations.holdout_fraction or lower generations.real_subset_tokens)");
    }
    let t_null = std::time::Instant::now();
    let tail_null = crate::policy::null_draws(
        real,
        &held_out_docs,
        synthetic_size,
        NULL_DRAWS,
        vocab_size,
        derive_seed(run_seed, 0, SeedPurpose::TailNull),
    );
    let tail_null_seconds = t_null.elapsed().as_secs_f64();
    let (floor_tokens, floor_documents, floor_source) = match &floor {
        Ok(f) => (f.tokens.clone(), f.documents, f.source.clone()),
        Err(why) => (Vec::new(), 0, format!("none: {why}")),
    };
    let reference = crate::analysis::RealReference {
        name: format!("R ({} tokens of {})", real_tokens.len(), real.base.name),
        tokens: real_tokens,
        noise_floor: floor_tokens,
        noise_floor_source: floor_source.clone(),
        null: tail_null.as_ref().ok().map(|n| {
            crate::analysis::RealNull::from_counts(&real_counts, &n.counts, n.source.clone(), n.source_tokens as u64)
        }),
        generation_size: synthetic_size,
    };
    let protocol = Protocol {
        real_training_set_tokens: real.base.tokens(),
        real_training_set_documents: real.base.documents.len(),
        real_training_split_tokens: real.split.tokens(),
        real_subset_tokens: (subset > 0).then_some(subset),
        holdout_fraction: real.holdout_fraction,
        outside_r_tokens: real.pool_tokens(),
        outside_r_documents: real.pool.len(),
        generation_size_tokens: synthetic_size,
        generation_size_over_real: synthetic_size as f64 / real.base.tokens() as f64,
        budget: cfg.train.budget.name(),
        epochs: cfg.train.epochs_or_default(),
        max_doc_tokens,
        longest_real_document_tokens: corpus.longest_train_document(),
        frequency_buckets: buckets.bounds.clone(),
        noise_floor_tokens: reference.noise_floor.len(),
        noise_floor_documents: floor_documents,
        noise_floor_source: floor_source,
        tail_null_draws: tail_null.as_ref().map_or(0, |n| n.counts.len()),
        tail_null_source: match &tail_null {
            Ok(n) => n.source.clone(),
            Err(why) => format!("none: {why}"),
        },
        tail_null_seconds,
        control_draws_from: (cfg.generations.policy == crate::policy::PolicyName::Real).then(|| {
            format!("real training documents outside R ({} tokens, {} documents)", real.pool_tokens(), real.pool.len())
        }),
        reference_model: format!("M_0, generation 0 of the run ({}), trained on R", crate::layout::gen_name(0)),
    };
    Ok((reference, buckets, protocol))
}

/// Config keys whose change does not invalidate a run: how many generations to run,
/// and where (device, threads).
fn ignored_for_mismatch(key: &str) -> bool {
    key == "generations.generations" || key.starts_with("runtime.")
}

/// Keys whose values differ between two configs, as `key (old → new)`.
pub fn config_differences(old: &Config, new: &Config) -> Vec<String> {
    let flat = |c: &Config| crate::config::leaf_values(&toml::Value::try_from(c).expect("config serialises"));
    let (a, b) = (flat(old), flat(new));
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| !ignored_for_mismatch(k) && a.get(*k) != b.get(*k))
        .map(|k| {
            let show = |m: &BTreeMap<String, String>| m.get(k).cloned().unwrap_or_else(|| "unset".into());
            format!("{k} ({} → {})", show(&a), show(&b))
        })
        .collect()
}

/// Removes every artifact of a run (for `--force-new`).
fn remove_run(layout: &Layout, run: &str) -> Result<()> {
    for dir in [layout.checkpoints(run), layout.synthetic_dir(run)] {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        }
    }
    let analysis = layout.analysis(run);
    if analysis.exists() {
        for entry in std::fs::read_dir(&analysis)? {
            let p = entry?.path();
            if p == layout.run_lock(run) {
                continue;
            }
            if p.is_dir() {
                std::fs::remove_dir_all(&p)?;
            } else {
                std::fs::remove_file(&p)?;
            }
        }
    }
    Ok(())
}

/// The run's configuration with the model shape of `generations.init_from` (keeping
/// the config's `block_size` and `dropout`), and that folder, opened; the
/// configuration unchanged when there is none.
fn with_imported_shape(layout: &Layout, cfg: &Config) -> Result<(Config, Option<HfFolder>)> {
    let Some(dir) = &cfg.generations.init_from else { return Ok((cfg.clone(), None)) };
    let folder = HfFolder::open(&layout.root().join(dir), cfg.model.dropout).context("generations.init_from")?;
    let mut resolved = cfg.clone();
    resolved.model = folder.model_config(Some(cfg.model.block_size)).context("generations.init_from")?;
    Ok((resolved, Some(folder)))
}

/// Imports `folder` as the run's pretrained checkpoint (once), after checking that the
/// corpus was tokenized with its tokenizer; returns the checkpoint's folder.
fn import_pretrained(
    layout: &Layout,
    run: &str,
    cfg: &Config,
    folder: &HfFolder,
    corpus: &PreparedCorpus,
) -> Result<PathBuf> {
    if !corpus.vocab.same_vocabulary(&folder.vocab) {
        bail!(
            "the prepared corpus '{}' was tokenized with another tokenizer than {}, which generations.init_from starts from; \
             prepare it with that tokenizer: lmloop prepare --tokenizer {} --input ... --out corpora/real/NAME",
            cfg.data.corpus,
            folder.dir.display(),
            folder.dir.display()
        );
    }
    let dir = layout.pretrained_checkpoint(run);
    if !is_done(&dir) {
        eprintln!("[{run}] importing {} ({}) as {}", folder.dir.display(), cfg.model.describe(), dir.display());
        folder.import(Some(cfg.model.block_size), &dir)?;
    }
    Ok(dir)
}
