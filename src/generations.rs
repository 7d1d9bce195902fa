//! The recursive loop: for k = 0..=N, build the training mixture, train generation k,
//! measure its held-out perplexity on the real test split, and sample the corpus
//! S_{k+1} that the next generation trains on.
//!
//! Resumable: every step leaves a completed artifact (checkpoint with `DONE`, corpus
//! with its manifest, `heldout.json`), and a rerun skips whatever is complete. All
//! randomness comes from seeds derived from the run seed and the generation index,
//! so an interrupted and resumed run gives the same numbers as an uninterrupted one.
use crate::checkpoint::Checkpoint;
use crate::config::Config;
use crate::config::Init;
use crate::layout::{gen_name, is_done, read_json, write_atomic, write_json_atomic, CheckpointFiles, Layout};
use crate::policy::{mixture, Corpus, RealData};
use crate::prepare::PreparedCorpus;
use crate::sample::{SampleRequest, Sampling};
use crate::tokens::TokenFile;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use tch::Device;

/// Purposes a generation needs randomness for; each gets its own derived seed.
#[derive(Clone, Copy)]
pub enum SeedPurpose {
    Train = 1,
    Mixture = 2,
    Sample = 3,
    NoiseFloor = 5,
    TailNull = 6,
}

/// A seed for `purpose` in generation `k`, derived from the run seed (SplitMix64 finaliser).
pub fn derive_seed(run_seed: u64, generation: u32, purpose: SeedPurpose) -> u64 {
    crate::mix::splitmix64(
        run_seed
            .wrapping_add(crate::mix::GOLDEN_GAMMA.wrapping_mul(generation as u64 + 1))
            .wrapping_add((purpose as u64) << 56),
    )
}

/// One row of `generations.csv`: what the loop writes and what the reports read.
///
/// Columns added after the first releases are `#[serde(default)]`, so tables written
/// by an older lmloop still load: their missing columns read as 0 or empty, which
/// [`GenerationRow::has_sampler_columns`] tells apart (a real generation samples at
/// least one document).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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
    /// latter from S_1..S_k). Written before as `real_tokens` and `synthetic_tokens`,
    /// names that read as if they described the corpus the row's `synthetic_*` columns
    /// describe; both spellings are read.
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
    #[serde(default)]
    pub train_seconds: f64,
    #[serde(default)]
    pub sample_seconds: f64,
    #[serde(default)]
    pub eval_seconds: f64,
}

impl GenerationRow {
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

/// An exclusive lock on a run, held for the life of the process (released by the OS
/// even when the process is killed).
pub struct RunLock {
    _lock: crate::layout::Lock,
}

impl RunLock {
    pub fn acquire(layout: &Layout, run: &str) -> Result<Self> {
        let path = layout.run_lock(run);
        match crate::layout::Lock::try_acquire(&path)? {
            Some(lock) => Ok(Self { _lock: lock }),
            None => bail!(
                "run '{run}' is in use by another lmloop process (lock {} is held); wait for it or pick another --run",
                path.display()
            ),
        }
    }
}

/// Everything a run needs, resolved from the config file and the command line.
pub struct RunSpec {
    pub config: Config,
    pub run: String,
    pub force_new: bool,
    pub device: Device,
    pub progress: bool,
}

/// Config keys whose change does not invalidate a run: how many generations to run,
/// and where (device, threads).
fn ignored_for_mismatch(key: &str) -> bool {
    key == "generations.generations" || key.starts_with("runtime.")
}

/// Keys whose values differ between two configs, as `key (old → new)`.
pub fn config_differences(old: &Config, new: &Config) -> Vec<String> {
    fn flatten(prefix: &str, v: &toml::Value, out: &mut std::collections::BTreeMap<String, String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    flatten(&key, v, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other.to_string());
            }
        }
    }
    let (mut a, mut b) = (Default::default(), Default::default());
    flatten("", &toml::Value::try_from(old).expect("config serialises"), &mut a);
    flatten("", &toml::Value::try_from(new).expect("config serialises"), &mut b);
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| !ignored_for_mismatch(k) && a.get(*k) != b.get(*k))
        .map(|k| {
            let show =
                |m: &std::collections::BTreeMap<String, String>| m.get(k).cloned().unwrap_or_else(|| "unset".into());
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

/// Runs (or resumes) the loop; returns one row per generation.
pub fn run(layout: &Layout, spec: &RunSpec) -> Result<Vec<GenerationRow>> {
    spec.config.validate()?;
    let (resolved, imported) = with_imported_shape(layout, &spec.config)?;
    let cfg = &resolved;
    let policy = cfg.generations.policy()?;
    let n = cfg.generations.generations;
    if n == 0 {
        bail!("-n must be at least 1 (generation 0 trains on real data; N more follow)");
    }
    let run = spec.run.as_str();
    if run.is_empty() || run.contains('/') || run.starts_with('.') {
        bail!("--run must be a plain folder name, got '{run}'");
    }
    let analysis = layout.analysis(run);
    let _lock = RunLock::acquire(layout, run)?;
    let run_toml = layout.run_toml(run);
    if spec.force_new {
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
    write_atomic(&run_toml, cfg.to_toml().as_bytes())?;

    let corpus_dir = layout.real_corpus(&cfg.data.corpus);
    let corpus = PreparedCorpus::open(&corpus_dir)
        .with_context(|| format!("the run needs the prepared corpus '{}' (config data.corpus)", cfg.data.corpus))?;
    let eot = corpus.vocab.eot();
    let fingerprint =
        crate::integrity::CorpusFingerprint::of(&cfg.data.corpus, &corpus_dir, corpus.vocab.vocab_size())?;
    crate::integrity::check_corpus(&layout.corpus_json(run), run, &fingerprint)?;
    let runtime = crate::integrity::Runtime { device: crate::device::describe(spec.device) };
    if let Some(warning) = crate::integrity::check_runtime(&layout.runtime_json(run), run, &runtime)? {
        eprintln!("[{run}] warning: {warning}");
    }
    let pretrained = match &imported {
        Some(folder) => Some(import_pretrained(layout, run, cfg, folder, &corpus)?),
        None => None,
    };
    let mut model_cfg = cfg.model.clone();
    model_cfg.vocab_size = corpus.vocab.vocab_size() as i64;
    let run_seed = cfg.train.seed;
    let split = Corpus::new("real/train", corpus.train.clone(), eot);
    let g = &cfg.generations;
    let subset = g.real_subset_tokens as usize;
    let real = RealData::new(split, policy, subset, g.holdout_fraction, g.real_subset_seed)
        .context("choosing the real training set R (generations.real_subset_tokens, generations.holdout_fraction)")?;
    let synthetic_size = match cfg.generations.synthetic_tokens {
        0 => real.base.tokens(),
        t => t as usize,
    };
    if policy == crate::policy::Policy::Real {
        real.check_control_pool(synthetic_size)?;
    }
    let max_doc_tokens = match cfg.sample.max_doc_tokens {
        Some(cap) => cap as usize,
        None => DEFAULT_CAP_OVER_LONGEST_REAL * corpus.longest_train_document().max(1),
    };
    let real_tokens = real.base.to_tokens();
    let vocab_size = corpus.vocab.vocab_size();
    let real_counts = crate::analysis::count_tokens(&real_tokens, vocab_size)?;
    let buckets = crate::eval::FrequencyBuckets::new(&real_counts);
    let held_out_docs = Corpus::new("real/val", corpus.val.clone(), eot);
    let floor = crate::policy::noise_floor(
        &real,
        &held_out_docs,
        synthetic_size,
        derive_seed(run_seed, 0, SeedPurpose::NoiseFloor),
    );
    if let Err(why) = &floor {
        eprintln!("[{run}] warning: no noise floor: {why}; the drift plots show none (raise generations.holdout_fraction or lower generations.real_subset_tokens)");
    }
    let t_null = std::time::Instant::now();
    let tail_null = crate::policy::null_draws(
        &real,
        &held_out_docs,
        synthetic_size,
        NULL_DRAWS,
        vocab_size,
        derive_seed(run_seed, 0, SeedPurpose::TailNull),
    );
    let null_seconds = t_null.elapsed().as_secs_f64();
    let (floor_tokens, floor_documents, floor_source) = match &floor {
        Ok(f) => (f.tokens.clone(), f.documents, f.source.clone()),
        Err(why) => (Vec::new(), 0, format!("none: {why}")),
    };
    let control_pool = match policy {
        crate::policy::Policy::Real => Some(real.pool_tokens()),
        _ => None,
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
    write_json_atomic(
        &layout.protocol_json(run),
        &serde_json::json!({
            "real_training_set_tokens": real.base.tokens(),
            "real_training_set_documents": real.base.documents.len(),
            "real_training_split_tokens": real.split.tokens(),
            "real_subset_tokens": (subset > 0).then_some(subset),
            "holdout_fraction": real.holdout_fraction,
            "outside_r_tokens": real.pool_tokens(),
            "outside_r_documents": real.pool.len(),
            "generation_size_tokens": synthetic_size,
            "generation_size_over_real": synthetic_size as f64 / real.base.tokens() as f64,
            "budget": cfg.train.budget.name(),
            "epochs": cfg.train.epochs_or_default(),
            "max_doc_tokens": max_doc_tokens,
            "longest_real_document_tokens": corpus.longest_train_document(),
            "frequency_buckets": buckets.bounds,
            "noise_floor_tokens": reference.noise_floor.len(),
            "noise_floor_documents": floor_documents,
            "noise_floor_source": floor_source,
            "tail_null_draws": tail_null.as_ref().map_or(0, |n| n.counts.len()),
            "tail_null_source": match &tail_null { Ok(n) => n.source.clone(), Err(why) => format!("none: {why}") },
            "tail_null_seconds": null_seconds,
            "control_draws_from": control_pool.map(|t| format!("real training documents outside R ({t} tokens, {} documents)", real.pool.len())),
        }),
    )?;
    let sampling = Sampling::new(cfg.sample.temperature, cfg.sample.top_k, cfg.sample.top_p)?;
    // We hold the run's lock, so every temporary in its folders is left over from a
    // process that was interrupted.
    for dir in [layout.checkpoints(run), layout.synthetic_dir(run), analysis.clone()] {
        crate::layout::remove_stale_temporaries(&dir);
    }

    let token_texts: Vec<String> =
        (0..corpus.vocab.vocab_size() as u32).map(|id| corpus.vocab.token_text(id)).collect();
    let mut synthetic: Vec<Corpus> = Vec::new();
    let mut rows = Vec::new();
    let mut bucket_rows = Vec::new();
    let t_run = std::time::Instant::now();
    for k in 0..=n {
        let (stream, manifest) =
            mixture(k, policy, &real, &synthetic, synthetic_size, derive_seed(run_seed, k, SeedPurpose::Mixture))?;
        let stream = stream.with_delimiters(corpus.vocab.delimiters());
        if manifest.truncated_share() > CAP_DEPENDENT_SHARE {
            eprintln!(
                "[{run}] warning: {:.0}% of generation {k}'s training tokens are in documents cut at the length cap \
                 (sample.max_doc_tokens = {max_doc_tokens}); it is marked train_cap_dependent in generations.csv, \
                 because what it learns from them depends on the cap",
                100.0 * manifest.truncated_share()
            );
        }
        write_json_atomic(&layout.mixture_manifest(run, k), &manifest)?;

        let ckpt_dir = layout.checkpoint(run, k);
        // Whether this generation computed anything now (rather than reading stored results).
        let computed = !is_done(&ckpt_dir)
            || !ckpt_dir.join(CheckpointFiles::HELD_OUT).exists()
            || crate::synthetic::manifest(&layout.synthetic_corpus(run, k + 1)).is_none();
        if !is_done(&ckpt_dir) {
            eprintln!(
                "[{run}] generation {k}: training on {} tokens ({})",
                manifest.total_tokens,
                describe_parts(&manifest)
            );
            let mut train_cfg = cfg.train.clone();
            train_cfg.seed = derive_seed(run_seed, k, SeedPurpose::Train);
            let init_from = match (k, cfg.generations.init) {
                (0, _) | (_, Init::Pretrained) => pretrained.clone(),
                (_, Init::Previous) => Some(layout.checkpoint(run, k - 1)),
                (_, Init::Scratch) => None,
            };
            let val = crate::stream::TokenStream::from_file(corpus.val.clone(), corpus.vocab.delimiters());
            crate::torch_error::guard(&format!("training generation {k}"), &cfg.training_memory(), || {
                crate::train::train(crate::train::TrainRequest {
                    model: model_cfg.clone(),
                    train: train_cfg,
                    data: &stream,
                    val: Some(&val),
                    vocab: &corpus.vocab,
                    device: spec.device,
                    init_from,
                    out: ckpt_dir.clone(),
                    progress: spec.progress,
                })
            })?;
        }
        // Weights are loaded only when something still needs the model, so a finished
        // run prints its table from the stored results alone.
        let mut model: Option<Checkpoint> = None;
        let load = || -> Result<Checkpoint> { Checkpoint::load(&ckpt_dir, spec.device) };
        let state: crate::checkpoint::TrainingState = read_json(&ckpt_dir.join(crate::layout::CheckpointFiles::STATE))?;
        let held_out_path = ckpt_dir.join(CheckpointFiles::HELD_OUT);
        let stored: Option<HeldOut> = if held_out_path.exists() { Some(read_json(&held_out_path)?) } else { None };
        let held_out = match stored {
            Some(h) if h.buckets.len() == buckets.len() => h,
            _ => {
                let ckpt = model.insert(load()?);
                crate::torch_error::guard(
                    &format!("evaluating generation {k} on the real test split"),
                    &cfg.model.evaluation_memory(),
                    || held_out(ckpt, &corpus.test, spec.device, &buckets),
                )?
            }
        };

        let stem = layout.synthetic_corpus(run, k + 1);
        let sample_manifest = match crate::synthetic::manifest(&stem) {
            Some(m) => m,
            None => {
                eprintln!(
                    "[{run}] generation {k}: sampling {synthetic_size} tokens at temperature {}",
                    cfg.sample.temperature
                );
                let req = SampleRequest {
                    sampling,
                    seed: derive_seed(run_seed, k, SeedPurpose::Sample),
                    n_tokens: synthetic_size,
                    batch_size: cfg.sample.batch_size as usize,
                    max_doc_tokens,
                    progress: spec.progress,
                };
                let ckpt = match model.take() {
                    Some(c) => c,
                    None => load()?,
                };
                crate::torch_error::guard(&format!("sampling from generation {k}"), &cfg.sampling_memory(), || {
                    crate::synthetic::write_corpus(&ckpt, &stem, &req, spec.device)
                })?
            }
        };
        let stats = &sample_manifest.stats;
        if stats.truncation_share > TRUNCATION_WARNING {
            eprintln!(
                "[{run}] warning: {} of the {} documents of S_{} ({:.1}%) reached the length cap of {} tokens and were cut; \
                 the model rarely ends its documents (see synthetic_truncation_share in generations.csv)",
                stats.truncated_documents,
                stats.documents,
                k + 1,
                100.0 * stats.truncation_share,
                sample_manifest.max_doc_tokens
            );
        }
        if !sample_manifest.canonical {
            eprintln!(
                "[{run}] warning: S_{} was written by an older lmloop that stored the sampled ids without re-encoding their text \
                 (and without the ends of documents cut at the length cap); use --force-new to sample it again",
                k + 1
            );
        }
        let (corpus_k, _) = crate::synthetic::load(&stem, format!("synthetic/{}", gen_name(k + 1)))?;
        let counts = corpus_k.file.counts(corpus.vocab.vocab_size())?;
        synthetic.push(corpus_k);

        let row = GenerationRow {
            generation: k,
            policy: policy.name().into(),
            real_fraction: policy.real_fraction(),
            temperature: cfg.sample.temperature,
            seed: run_seed,
            budget: cfg.train.budget.name().into(),
            train_epochs: state.epochs,
            trained_tokens: state.tokens,
            train_tokens: manifest.total_tokens,
            train_real_tokens: manifest.real_tokens,
            train_synthetic_tokens: manifest.synthetic_tokens,
            train_truncated_share: manifest.truncated_share(),
            train_cap_dependent: manifest.truncated_share() > CAP_DEPENDENT_SHARE,
            held_out_loss: held_out.mean_loss,
            held_out_perplexity: held_out.perplexity,
            synthetic_documents: stats.documents,
            synthetic_mean_document_tokens: stats.mean_document_tokens,
            synthetic_truncation_share: stats.truncation_share,
            synthetic_unigram_entropy: crate::analysis::entropy_nats(&counts),
            synthetic_distinct_tokens: counts.iter().filter(|&&c| c > 0).count(),
            synthetic_non_canonical_share: sample_manifest.non_canonical_share,
            train_seconds: state.seconds,
            sample_seconds: sample_manifest.stats.seconds,
            eval_seconds: held_out.seconds,
        };
        eprintln!(
            "[{run}] generation {k}: held-out perplexity {:.2}, synthetic entropy {:.3} nats, {} distinct tokens ({:.1} min so far)",
            row.held_out_perplexity,
            row.synthetic_unigram_entropy,
            row.synthetic_distinct_tokens,
            t_run.elapsed().as_secs_f64() / 60.0
        );
        rows.push(row);
        bucket_rows.extend(held_out.buckets.iter().map(|b| (k, b.clone())));
        write_rows(&layout.generations_csv(run), &rows)?;
        write_bucket_rows(&layout.loss_by_frequency_csv(run), &bucket_rows)?;
        // The analysis and report are refreshed after every generation that did work, and
        // once at the end, so a resumed finished run does not redraw every generation.
        if computed || k == n {
            let synthetic_files: Vec<(u32, std::path::PathBuf)> =
                (1..=k + 1).map(|j| (j, crate::synthetic::files(&layout.synthetic_corpus(run, j)).0)).collect();
            crate::analysis::update_run_measures(layout, run, &reference, &synthetic_files, &token_texts, eot)
                .with_context(|| format!("updating the analysis of run '{run}'"))?;
            // The experiment outlives its report: a failure to draw is a warning.
            if let Err(e) = crate::analysis::report(layout, &crate::analysis::ReportArgs { run: run.to_string() }) {
                eprintln!(
                    "[{run}] warning: the report could not be drawn ({e:#}); the run goes on, and `lmloop report --run {run}` draws it again"
                );
            }
        }
    }
    Ok(rows)
}

/// The run's configuration with the model shape of `generations.init_from` (keeping
/// the config's `block_size` and `dropout`), and that folder, opened; the
/// configuration unchanged when there is none.
fn with_imported_shape(layout: &Layout, cfg: &Config) -> Result<(Config, Option<crate::interop::HfFolder>)> {
    let Some(dir) = &cfg.generations.init_from else { return Ok((cfg.clone(), None)) };
    let folder =
        crate::interop::HfFolder::open(&layout.root().join(dir), cfg.model.dropout).context("generations.init_from")?;
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
    folder: &crate::interop::HfFolder,
    corpus: &PreparedCorpus,
) -> Result<std::path::PathBuf> {
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

fn describe_parts(m: &crate::policy::MixtureManifest) -> String {
    m.parts.iter().map(|p| format!("{} {}", p.source, p.tokens)).collect::<Vec<_>>().join(", ")
}

/// The default length cap is this many times the longest real training document. A
/// model that writes like the real data is then essentially never cut: one ending its
/// documents at a constant rate matching the real mean length is cut with probability
/// e^(-2·longest/mean), 8·10⁻⁶ for Shakespeare's scenes (longest 15,820 tokens, mean
/// 2,686). A degenerate model that never ends its documents decodes them one token per
/// step; the cap bounds that serial work to twice the longest real document, the
/// length a healthy corpus may already wait for.
pub const DEFAULT_CAP_OVER_LONGEST_REAL: usize = 2;

/// D-token corpora of unseen real documents the tail null is estimated from.
pub const NULL_DRAWS: usize = 20;

/// Share of truncated documents above which the loop warns.
pub const TRUNCATION_WARNING: f64 = 0.01;

/// Share of a training mixture's tokens in documents cut at the length cap above which
/// a generation is marked as depending on the cap (`train_cap_dependent`).
pub const CAP_DEPENDENT_SHARE: f64 = 0.5;

/// Evaluates a generation on the real test split (overall and by frequency bucket)
/// and stores the result next to its checkpoint.
fn held_out(
    ckpt: &Checkpoint,
    test: &Arc<TokenFile>,
    device: Device,
    buckets: &crate::eval::FrequencyBuckets,
) -> Result<HeldOut> {
    let path = ckpt.dir.join(CheckpointFiles::HELD_OUT);
    let t0 = std::time::Instant::now();
    let (r, per_bucket) =
        crate::eval::evaluate_by_frequency(&ckpt.model, test, ckpt.vocab.delimiters(), device, buckets)?;
    let h = HeldOut {
        mean_loss: r.mean_loss,
        perplexity: r.perplexity,
        tokens: r.tokens,
        seconds: t0.elapsed().as_secs_f64(),
        buckets: per_bucket,
    };
    write_json_atomic(&path, &h)?;
    Ok(h)
}

/// Rewrites `loss_by_frequency.csv` (generation, bucket, count range, targets, mean loss).
fn write_bucket_rows(path: &Path, rows: &[(u32, crate::eval::BucketLoss)]) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
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
    write_atomic(path, &w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)
}

/// Rewrites `generations.csv` with all rows so far (atomically).
pub fn write_rows(path: &Path, rows: &[GenerationRow]) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r)?;
    }
    write_atomic(path, &w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)
}

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

/// Default run name for a configuration: policy, temperature, λ and seed, numbers
/// with at least one decimal (`replace-t1.0-s1337`, `mix-t0.7-l0.5-s1`), the names
/// `make generations` gives too.
pub fn default_run_name(cfg: &Config) -> String {
    let mut name = format!("{}-t{:?}", cfg.generations.policy.as_str(), cfg.sample.temperature);
    if let Some(l) = cfg.generations.real_fraction {
        name.push_str(&format!("-l{l:?}"));
    }
    name.push_str(&format!("-s{}", cfg.train.seed));
    name
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

    #[test]
    fn default_run_names_match_the_makefiles() {
        let mut cfg = crate::config::Config::default();
        assert_eq!(super::default_run_name(&cfg), "replace-t1.0-s1337");
        cfg.generations.policy = crate::policy::PolicyName::Mix;
        cfg.generations.real_fraction = Some(0.5);
        cfg.sample.temperature = 0.7;
        cfg.train.seed = 1;
        assert_eq!(super::default_run_name(&cfg), "mix-t0.7-l0.5-s1");
    }
}
