//! The steps of one generation: train, evaluate, sample, measure. Each returns its
//! result and whether it computed it now ([`Step::computed`]) or read what an earlier
//! process stored.
use super::context::RunContext;
use super::{derive_seed, SeedPurpose, TRUNCATION_WARNING};
use crate::analysis::manifold::{self, Embeddings, Manifold};
use crate::analysis::scores::ScoreSummary;
use crate::checkpoint::{Checkpoint, TrainingState};
use crate::config::Init;
use crate::durable::{is_done, read_json, write_atomic, write_json_atomic};
use crate::eval::DocumentScore;
use crate::layout::{gen_name, CheckpointPaths};
use crate::policy::{Corpus, MixtureManifest};
use crate::records::{HeldOut, CAP_DEPENDENT_SHARE};
use crate::sample::SampleRequest;
use crate::stream::TokenStream;
use crate::synthetic::SyntheticManifest;
use anyhow::{Context, Result};
use std::path::PathBuf;

/// A step's result, and whether the step computed it in this process.
pub struct Step<T> {
    pub value: T,
    pub computed: bool,
}

impl<T> Step<T> {
    fn stored(value: T) -> Self {
        Self { value, computed: false }
    }

    fn computed(value: T) -> Self {
        Self { value, computed: true }
    }
}

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

    fn get(&mut self, ctx: &RunContext) -> Result<&Checkpoint> {
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

/// Generation k's training mixture (recorded as `mixture/gen-KK.json`, with the
/// record of every file it drew from), read in windows aligned to its documents. When
/// generation k is already trained, the mixture must be the one its record says it
/// trained on.
pub fn mixture(ctx: &RunContext, k: u32, synthetic: &[Sampled]) -> Result<(TokenStream, MixtureManifest)> {
    let seed = derive_seed(ctx.seed(), k, SeedPurpose::Mixture);
    let corpora: Vec<Corpus> = synthetic.iter().map(|s| s.corpus.clone()).collect();
    let (stream, mut manifest) = crate::policy::mixture(k, ctx.policy, &ctx.real, &corpora, ctx.synthetic_size, seed)?;
    for part in &mut manifest.parts {
        part.record = match synthetic.iter().find(|s| s.corpus.name == part.source) {
            Some(s) => s.record.clone(),
            None => ctx.train_record.clone(),
        };
    }
    let path = ctx.layout.mixture_manifest(&ctx.run, k);
    if is_done(&ctx.layout.checkpoint(&ctx.run, k)) && path.exists() {
        let stored: MixtureManifest = read_json(&path)?;
        // Records an older lmloop wrote hold no file records and are only completed.
        let recorded = stored.parts.iter().any(|p| p.record.is_some());
        if let Some(why) = mixture_difference(&stored, &manifest).filter(|_| recorded) {
            anyhow::bail!(
                "generation {k} was trained on another mixture than its inputs make now ({why}; recorded in {}); {}",
                path.display(),
                ctx.rerun_from(k)
            );
        }
    }
    let stream = stream.with_delimiters(ctx.corpus.vocab.delimiters());
    if manifest.truncated_share() > CAP_DEPENDENT_SHARE {
        eprintln!(
            "[{}] warning: {:.0}% of generation {k}'s training tokens are in documents cut at the length cap \
             (sample.max_doc_tokens = {}); it is marked train_cap_dependent in generations.csv, \
             because what it learns from them depends on the cap",
            ctx.run,
            100.0 * manifest.truncated_share(),
            ctx.max_doc_tokens
        );
    }
    write_json_atomic(&path, &manifest)?;
    Ok((stream, manifest))
}

/// What differs between a stored mixture record and the mixture drawn now, comparing
/// file records only where both have one (older records lack them).
fn mixture_difference(stored: &MixtureManifest, now: &MixtureManifest) -> Option<String> {
    if stored.parts.len() != now.parts.len() {
        return Some(format!("{} parts recorded, {} now", stored.parts.len(), now.parts.len()));
    }
    stored.parts.iter().zip(&now.parts).find_map(|(a, b)| {
        if (&a.source, a.documents, a.tokens) != (&b.source, b.documents, b.tokens) {
            Some(format!(
                "{}: {} documents of {} tokens recorded, {} of {} now",
                a.source, a.documents, a.tokens, b.documents, b.tokens
            ))
        } else {
            match (&a.record, &b.record) {
                (Some(x), Some(y)) if x != y => {
                    Some(format!("{}: recorded as {}, now {}", a.source, x.describe(), y.describe()))
                }
                _ => None,
            }
        }
    })
}

/// A corpus S_j the loop sampled, loaded as training data, with the record of its file.
pub struct Sampled {
    pub corpus: Corpus,
    pub record: Option<crate::integrity::FileFingerprint>,
    /// Each document's self-score as the sampler recorded it (mean loss, targets).
    pub self_nll: Vec<(f64, usize)>,
    /// Its manifest.
    pub manifest: SyntheticManifest,
}

/// Trains generation k on `stream`, unless its checkpoint is complete.
pub fn train(
    ctx: &RunContext,
    k: u32,
    stream: &TokenStream,
    manifest: &MixtureManifest,
) -> Result<Step<TrainingState>> {
    let dir = ctx.layout.checkpoint(&ctx.run, k);
    let files = CheckpointPaths::new(&dir);
    if is_done(&dir) {
        return Ok(Step::stored(read_json(&files.state())?));
    }
    if k < ctx.finished {
        anyhow::bail!(
            "{} is not a finished checkpoint (no DONE marker), though generations.csv records generation {k} as finished; {}",
            dir.display(),
            ctx.rerun_from(k)
        );
    }
    eprintln!(
        "[{}] generation {k}: training on {} tokens ({})",
        ctx.run,
        manifest.total_tokens,
        describe_parts(manifest)
    );
    let cfg = &ctx.cfg;
    let mut train_cfg = cfg.train.clone();
    train_cfg.seed = derive_seed(ctx.seed(), k, SeedPurpose::Train);
    let init_from = match (k, cfg.generations.init) {
        (0, _) | (_, Init::Pretrained) => ctx.pretrained.clone(),
        (_, Init::Previous) => Some(ctx.layout.checkpoint(&ctx.run, k - 1)),
        (_, Init::Scratch) => None,
    };
    let val = TokenStream::from_file(ctx.corpus.val.clone(), ctx.corpus.vocab.delimiters());
    let outcome = crate::torch_error::guard(&format!("training generation {k}"), &cfg.training_memory(), || {
        crate::train::train(crate::train::TrainRequest {
            model: ctx.model.clone(),
            train: train_cfg,
            data: stream,
            val: Some(&val),
            vocab: &ctx.corpus.vocab,
            device: ctx.device,
            init_from,
            out: dir.clone(),
            progress: ctx.progress,
        })
    })?;
    Ok(Step::computed(outcome.state))
}

/// Generation k's held-out loss on the real test split, overall and by frequency
/// bucket (stored as the checkpoint's `heldout.json`), unless stored with the run's
/// buckets.
pub fn evaluate(ctx: &RunContext, k: u32, weights: &mut Weights) -> Result<Step<HeldOut>> {
    let path = CheckpointPaths::new(ctx.layout.checkpoint(&ctx.run, k)).held_out();
    if path.exists() {
        let stored: HeldOut = read_json(&path)?;
        if stored.buckets.len() == ctx.buckets.len() {
            return Ok(Step::stored(stored));
        }
    } else if k < ctx.finished {
        anyhow::bail!(
            "{} is missing, though generations.csv records generation {k} as finished; {}",
            path.display(),
            ctx.rerun_from(k)
        );
    }
    let ckpt = weights.get(ctx)?;
    let what = format!("evaluating generation {k} on the real test split");
    let held_out = crate::torch_error::guard(&what, &ctx.cfg.model.evaluation_memory(), || {
        let t0 = std::time::Instant::now();
        let (r, buckets) = crate::eval::evaluate_by_frequency(
            &ckpt.model,
            &ctx.corpus.test,
            ckpt.vocab.delimiters(),
            ctx.device,
            &ctx.buckets,
        )?;
        Ok(HeldOut {
            mean_loss: r.mean_loss,
            perplexity: r.perplexity,
            tokens: r.tokens,
            seconds: t0.elapsed().as_secs_f64(),
            buckets,
        })
    })?;
    write_json_atomic(&path, &held_out)?;
    Ok(Step::computed(held_out))
}

/// The corpus S_{k+1} generation k samples, unless its manifest marks it complete.
pub fn sample(ctx: &RunContext, k: u32, weights: &mut Weights) -> Result<Step<SyntheticManifest>> {
    let run = &ctx.run;
    let stem = ctx.layout.synthetic_corpus(run, k + 1);
    let manifest = match crate::synthetic::manifest(&stem) {
        Some(m) => Step::stored(m),
        None if k < ctx.finished => anyhow::bail!(
            "{} is missing or unreadable, though generations.csv records generation {k} as finished, so S_{} was complete; {}",
            crate::synthetic::files(&stem).2.display(),
            k + 1,
            ctx.rerun_from(k)
        ),
        None => {
            eprintln!(
                "[{run}] generation {k}: sampling {} tokens at temperature {}",
                ctx.synthetic_size, ctx.cfg.sample.temperature
            );
            let req = SampleRequest {
                sampling: ctx.sampling,
                seed: derive_seed(ctx.seed(), k, SeedPurpose::Sample),
                n_tokens: ctx.synthetic_size,
                batch_size: ctx.cfg.sample.batch_size as usize,
                max_doc_tokens: ctx.max_doc_tokens,
                progress: ctx.progress,
            };
            let memory = ctx.cfg.sampling_memory();
            let what = format!("sampling from generation {k}");
            match ctx.cfg.curation.rule() {
                None => {
                    let ckpt = weights.get(ctx)?;
                    Step::computed(crate::torch_error::guard(&what, &memory, || {
                        crate::synthetic::write_corpus(ckpt, &stem, &req, ctx.device)
                    })?)
                }
                Some((verifier, rule)) => Step::computed(curated(ctx, k, weights, &stem, &req, verifier, rule)?),
            }
        }
    };
    if let Some(c) = &manifest.value.curation {
        eprintln!(
            "[{run}] generation {k}: curation by the {} kept {} of {} sampled documents ({:.1}% of {} tokens; {:.2} × D sampled)",
            c.verifier.name(),
            c.kept_documents,
            c.sampled_documents,
            100.0 * c.kept_share,
            c.sampled_tokens,
            c.oversampling
        );
    }
    let m = &manifest.value;
    let stats = &m.stats;
    if stats.truncation_share > TRUNCATION_WARNING {
        eprintln!(
            "[{run}] warning: {} of the {} documents of S_{} ({:.1}%) reached the length cap of {} tokens and were cut; \
             the model rarely ends its documents (see synthetic_truncation_share in generations.csv)",
            stats.truncated_documents,
            stats.documents,
            k + 1,
            100.0 * stats.truncation_share,
            m.max_doc_tokens
        );
    }
    if !m.canonical {
        eprintln!(
            "[{run}] warning: S_{} was written by an older lmloop that stored the sampled ids without re-encoding their text \
             (and without the ends of documents cut at the length cap); use --force-new to sample it again",
            k + 1
        );
    }
    Ok(manifest)
}

/// The run's reference model (M_0 or the oracle) as weights of its own, or `None` at
/// generation 0 under M_0, where it is the model at hand.
fn reference_weights(ctx: &RunContext, k: u32) -> Result<Option<Weights>> {
    Ok(match &ctx.oracle {
        Some(dir) => Some(Weights::of(oracle(ctx, dir)?, ctx.device)),
        None => (k > 0).then(|| Weights::of(ctx.layout.checkpoint(&ctx.run, 0), ctx.device)),
    })
}

/// Samples S_{k+1} curated by `verifier` and `rule` (`crate::curation`): the quantile
/// rule's bounds from the verifier's perplexities of the real validation documents.
fn curated(
    ctx: &RunContext,
    k: u32,
    weights: &mut Weights,
    stem: &std::path::Path,
    req: &SampleRequest,
    verifier: crate::config::Verifier,
    rule: crate::config::Rule,
) -> Result<SyntheticManifest> {
    use crate::config::{Rule, Verifier};
    use crate::curation::Plan;
    let mut other = match verifier {
        Verifier::Reference => reference_weights(ctx, k)?,
        Verifier::Own => None,
    };
    let verifier_dir = other.as_ref().map_or_else(|| weights.dir.clone(), |w| w.dir.clone());
    let (bounds, real_documents) = match rule {
        Rule::Best { .. } => ((0.0, 0.0), 0),
        Rule::Quantiles { low, high } => {
            let model = &other.as_mut().unwrap_or(weights).get(ctx)?.model;
            let val = TokenStream::from_file(ctx.corpus.val.clone(), ctx.corpus.vocab.delimiters());
            let scores = crate::torch_error::guard(
                "scoring the real validation documents for curation",
                &ctx.cfg.model.evaluation_memory(),
                || crate::eval::per_document(model, &val, ctx.device),
            )?;
            let ppl: Vec<f64> = scores.iter().map(|s| s.mean().exp()).collect();
            if ppl.len() < crate::curation::FEW_REAL_DOCUMENTS {
                eprintln!(
                    "[{}] warning: curation's quantile bounds come from only {} real validation documents",
                    ctx.run,
                    ppl.len()
                );
            }
            ((crate::curation::quantile(&ppl, low), crate::curation::quantile(&ppl, high)), ppl.len())
        }
    };
    let plan = Plan {
        verifier,
        rule,
        bounds,
        real_documents,
        max_oversampling: ctx.cfg.curation.max_oversampling(),
        verifier_checkpoint: verifier_dir.display().to_string(),
    };
    eprintln!("[{}] generation {k}: curating S_{} by the {}: {}", ctx.run, k + 1, verifier.name(), rule.describe());
    let other = match other.as_mut() {
        Some(w) => Some(w.get(ctx)?),
        None => None,
    };
    let ckpt = weights.get(ctx)?;
    let reference = match verifier {
        Verifier::Reference => Some(other.map_or(&ckpt.model, |c| &c.model)),
        Verifier::Own => None,
    };
    crate::torch_error::guard(&format!("sampling from generation {k}"), &ctx.cfg.sampling_memory(), || {
        crate::curation::write_curated_corpus(ckpt, stem, req, ctx.device, &plan, reference)
    })
}

/// S_{k+1} as the next generations' training data (checked against its manifest's
/// record), and its token counts.
pub fn load_sampled(ctx: &RunContext, k: u32) -> Result<(Sampled, Vec<u64>)> {
    let stem = ctx.layout.synthetic_corpus(&ctx.run, k + 1);
    let (corpus, manifest) =
        crate::synthetic::load(&stem, format!("synthetic/{}", gen_name(k + 1)), &ctx.rerun_from(k))?;
    if manifest.bin_file.is_none() {
        ctx.note_unverified(format!("S_{}", k + 1));
    }
    let counts = corpus.file.counts(ctx.corpus.vocab.vocab_size())?;
    Ok((Sampled { corpus, record: manifest.bin_file.clone(), self_nll: manifest.self_nll.clone(), manifest }, counts))
}

/// Refreshes the run's measures (drift, tokens, tails) over S_1..S_{k+1} and redraws
/// its report; a report that cannot be drawn is a warning, since the run outlives it.
pub fn measure(ctx: &RunContext, k: u32) -> Result<()> {
    let run = &ctx.run;
    let synthetic_files: Vec<(u32, PathBuf)> =
        (1..=k + 1).map(|j| (j, crate::synthetic::files(&ctx.layout.synthetic_corpus(run, j)).0)).collect();
    let eot = ctx.corpus.vocab.eot();
    crate::analysis::update_run_measures(ctx.layout, run, &ctx.reference, &synthetic_files, &ctx.token_texts, eot)
        .with_context(|| format!("updating the analysis of run '{run}'"))?;
    if let Err(e) = crate::analysis::report(ctx.layout, run) {
        eprintln!(
            "[{run}] warning: the report could not be drawn ({e:#}); the run goes on, and `lmloop report --run {run}` draws it again"
        );
    }
    Ok(())
}

fn describe_parts(m: &MixtureManifest) -> String {
    m.parts.iter().map(|p| format!("{} {}", p.source, p.tokens)).collect::<Vec<_>>().join(", ")
}

/// When a corpus's scores were computed (`scores/gen-KK.json`, written after the CSV),
/// and its passages' quality and diversity against the real test passages.
#[derive(serde::Serialize, serde::Deserialize)]
struct ScoreRecord {
    documents: usize,
    seconds: f64,
    /// Absent from records written before lmloop measured it: those are scored again.
    #[serde(default)]
    manifold: Option<Manifold>,
}

/// What the score step gives a generation's row.
pub struct Scored {
    pub summary: ScoreSummary,
    pub manifold: Manifold,
    pub seconds: f64,
}

/// Scores S_{k+1}'s documents under the reference model (`scores/gen-KK.csv`) in one
/// forward pass that also embeds its passages, takes their self-perplexity from what
/// the sampler recorded (a forward pass of M_k only for corpora written before it did),
/// and measures quality and diversity against the real test passages; unless stored.
/// The real test documents and the noise floor are scored once, with the first
/// generation that needs them.
pub fn score(ctx: &RunContext, k: u32, weights: &mut Weights, sampled: &Sampled) -> Result<Step<Scored>> {
    let layout = ctx.layout;
    let csv_path = layout.scores_csv(&ctx.run, Some(k + 1));
    let marker = csv_path.with_extension("json");
    let delimiters = ctx.corpus.vocab.delimiters();
    // The reference (M_0, or the oracle): loaded once, whichever step needs it first;
    // at generation 0 M_0 is the model at hand.
    let mut other_reference = reference_weights(ctx, k)?;
    let t0 = std::time::Instant::now();
    let (real, real_fresh) = real_scores(ctx, other_reference.as_mut().unwrap_or(weights))?;
    let floor_fresh = floor_scores(ctx, other_reference.as_mut().unwrap_or(weights), &real.1)?;
    let stored: Option<ScoreRecord> = if marker.exists() && csv_path.exists() { read_json(&marker).ok() } else { None };
    let (rows, seconds, manifold, computed) = match stored {
        Some(ScoreRecord { seconds, manifold: Some(m), .. }) => (read_scores(&csv_path)?, seconds, m, false),
        _ => {
            let mut stream = TokenStream::new(delimiters);
            let file = stream.add_file(sampled.corpus.file.clone());
            for d in &sampled.corpus.documents {
                stream.push(file, d.clone());
            }
            let what = format!("scoring the documents of S_{}", k + 1);
            let memory = ctx.cfg.model.evaluation_memory();
            let reference = other_reference.as_mut().unwrap_or(weights);
            // A corpus curated by this reference was scored and embedded by its verifier.
            let stem = layout.synthetic_corpus(&ctx.run, k + 1);
            let (by_reference, embeddings) = match crate::curation::stored_reference_scores(
                &stem,
                &sampled.manifest,
                &reference.dir,
                &ctx.rerun_from(k),
            )? {
                Some((scores, embeddings)) => (scores, Some(embeddings)),
                None => crate::torch_error::guard(&what, &memory, || {
                    crate::eval::score_documents(&reference.get(ctx)?.model, &stream, ctx.device, true)
                })?,
            };
            let own: Vec<DocumentScore> = match sampler_scores(&sampled.self_nll, stream.documents()) {
                Some(own) => own,
                None => crate::torch_error::guard(&what, &memory, || {
                    crate::eval::per_document(&weights.get(ctx)?.model, &stream, ctx.device)
                })?,
            };
            let seed = derive_seed(ctx.seed(), k, SeedPurpose::Quality);
            let manifold = manifold::compare(&real.1, &embeddings.expect("embedded above"), seed);
            write_scores(&csv_path, &by_reference, Some(&own))?;
            let seconds = t0.elapsed().as_secs_f64();
            write_json_atomic(&marker, &ScoreRecord { documents: own.len(), seconds, manifold: Some(manifold) })?;
            // Read back as stored (6 decimals), so a resumed run summarises the same values.
            (read_scores(&csv_path)?, seconds, manifold, true)
        }
    };
    let by_reference: Vec<f64> = rows.iter().map(|r| r.1.exp()).collect();
    let own: Vec<f64> = rows.iter().map(|r| r.2.exp()).collect();
    let summary = crate::analysis::scores::summarise(&by_reference, &own, &real.0);
    Ok(Step { value: Scored { summary, manifold, seconds }, computed: computed || real_fresh || floor_fresh })
}

/// The oracle reference at `dir`, trained first unless complete: the run's
/// architecture and training settings on the whole real training split, with generation
/// 0's start (random weights, or the imported model). Runs that share it take turns:
/// one trains while the others wait for its `DONE`.
fn oracle(ctx: &RunContext, dir: &std::path::Path) -> Result<PathBuf> {
    let lock_path = dir.with_extension("lock");
    let _lock = loop {
        if is_done(dir) {
            return Ok(dir.to_path_buf());
        }
        match crate::durable::Lock::try_acquire(&lock_path)? {
            Some(lock) => break lock,
            None => std::thread::sleep(std::time::Duration::from_secs(2)),
        }
    };
    if is_done(dir) {
        return Ok(dir.to_path_buf());
    }
    let split = &ctx.real.split;
    let mut stream = TokenStream::new(ctx.corpus.vocab.delimiters());
    let file = stream.add_file(split.file.clone());
    for d in &split.documents {
        stream.push(file, d.clone());
    }
    eprintln!(
        "[{}] training the oracle reference on the whole real training split ({} tokens) into {}",
        ctx.run,
        split.tokens(),
        dir.display()
    );
    let mut train_cfg = ctx.cfg.train.clone();
    train_cfg.seed = derive_seed(ctx.seed(), 0, SeedPurpose::Oracle);
    let val = TokenStream::from_file(ctx.corpus.val.clone(), ctx.corpus.vocab.delimiters());
    crate::torch_error::guard("training the oracle reference", &ctx.cfg.training_memory(), || {
        crate::train::train(crate::train::TrainRequest {
            model: ctx.model.clone(),
            train: train_cfg,
            data: &stream,
            val: Some(&val),
            vocab: &ctx.corpus.vocab,
            device: ctx.device,
            init_from: ctx.pretrained.clone(),
            out: dir.to_path_buf(),
            progress: ctx.progress,
        })
    })?;
    Ok(dir.to_path_buf())
}

/// The self-scores the sampler recorded for a corpus of `documents` documents (mean
/// loss and targets of each), as document scores; `None` when it recorded none (or
/// for another number of documents).
fn sampler_scores(recorded: &[(f64, usize)], documents: usize) -> Option<Vec<DocumentScore>> {
    (recorded.len() == documents && documents > 0).then(|| {
        recorded
            .iter()
            .map(|&(mean, targets)| DocumentScore { nll: mean * targets as f64, targets: targets as u64 })
            .collect()
    })
}

/// The real test documents' perplexities under the reference and their passages'
/// embeddings (`scores/real-test.csv`, `.emb`), computed unless stored; and whether
/// they were computed now.
fn real_scores(ctx: &RunContext, reference: &mut Weights) -> Result<((Vec<f64>, Embeddings), bool)> {
    let path = ctx.layout.scores_csv(&ctx.run, None);
    let emb_path = path.with_extension("emb");
    let stored = || -> Option<Embeddings> { Embeddings::from_bytes(&std::fs::read(&emb_path).ok()?) };
    let fresh = !path.exists() || stored().is_none();
    if fresh {
        let m0 = reference.get(ctx)?;
        let test = TokenStream::from_file(ctx.corpus.test.clone(), ctx.corpus.vocab.delimiters());
        let (scores, embeddings) =
            crate::torch_error::guard("scoring the real test documents", &ctx.cfg.model.evaluation_memory(), || {
                crate::eval::score_documents(&m0.model, &test, ctx.device, true)
            })?;
        write_atomic(&emb_path, &embeddings.expect("embedded above").to_bytes())?;
        write_scores(&path, &scores, None)?;
    }
    let perplexities = read_scores(&path)?.iter().map(|r| r.1.exp()).collect();
    let embeddings = stored().with_context(|| format!("{} is unreadable", emb_path.display()))?;
    Ok(((perplexities, embeddings), fresh))
}

/// Scores the noise floor once: its documents' perplexity under the reference
/// (`scores/noise-floor.csv`) and the quality and diversity of draws of its passages
/// against the real test passages (`scores/noise-floor.json`, written last); nothing
/// without a noise floor. Returns whether it computed them now.
fn floor_scores(ctx: &RunContext, reference: &mut Weights, real: &Embeddings) -> Result<bool> {
    let path = ctx.layout.scores_file(&ctx.run, "noise-floor.json");
    let floor = &ctx.reference.noise_floor;
    if floor.is_empty() || read_json::<manifold::Floor>(&path).is_ok() {
        return Ok(false);
    }
    let bin = path.with_extension("bin");
    crate::tokens::write_tokens(&bin, floor, ctx.corpus.vocab.vocab_size())?;
    let file = std::sync::Arc::new(crate::tokens::TokenFile::open(&bin)?);
    let stream = TokenStream::from_file(file, ctx.corpus.vocab.delimiters());
    let m0 = reference.get(ctx)?;
    let (scores, embeddings) =
        crate::torch_error::guard("scoring the noise floor's documents", &ctx.cfg.model.evaluation_memory(), || {
            crate::eval::score_documents(&m0.model, &stream, ctx.device, true)
        })?;
    write_scores(&path.with_extension("csv"), &scores, None)?;
    let seed = derive_seed(ctx.seed(), 0, SeedPurpose::QualityFloor);
    if let Some(f) = manifold::Floor::measure(real, &embeddings.expect("embedded above"), seed) {
        write_json_atomic(&path, &f)?;
    }
    Ok(true)
}

/// Writes per-document scores: document, targets, mean loss under the reference and,
/// for a synthetic corpus, under the model that sampled it.
fn write_scores(
    path: &std::path::Path,
    reference: &[crate::eval::DocumentScore],
    own: Option<&[crate::eval::DocumentScore]>,
) -> Result<()> {
    crate::durable::write_csv_atomic(path, |w| {
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
    })
}

/// (targets, reference mean loss, self mean loss or NaN) per document.
fn read_scores(path: &std::path::Path) -> Result<Vec<(u64, f64, f64)>> {
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
