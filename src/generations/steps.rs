//! The steps of one generation: train, evaluate, sample, measure. Each returns its
//! result and whether it computed it now ([`Step::computed`]) or read what an earlier
//! process stored.
use super::context::RunContext;
use super::reference::{FixedModel, Reference, Weights};
use super::{derive_seed, SeedPurpose, TRUNCATION_WARNING};
use crate::analysis::manifold::{self, Manifold};
use crate::analysis::scores::ScoreSummary;
use crate::checkpoint::TrainingState;
use crate::config::Init;
use crate::config::Verifier;
use crate::durable::{is_done, read_json, write_json_atomic};
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
    // Truncated cross-entropy starts at generation `train.truncated_ce_from`: M_0 is
    // trained as the oracle is, plainly.
    let mut train_cfg = if k < cfg.train.truncated_ce_from { cfg.train.plain() } else { cfg.train.clone() };
    train_cfg.seed = derive_seed(ctx.seed(), k, SeedPurpose::Train);
    let init_from = match (k, cfg.generations.init) {
        (0, _) | (_, Init::Pretrained) => ctx.pretrained.clone(),
        (_, Init::Previous) => Some(ctx.layout.checkpoint(&ctx.run, k - 1)),
        (_, Init::Scratch) => None,
    };
    let outcome = ctx.train_model(&format!("training generation {k}"), train_cfg, stream, init_from, dir.clone())?;
    Ok(Step::computed(outcome.state))
}

/// Generation k's held-out loss on the real test split, overall and by frequency
/// bucket (stored as the checkpoint's `heldout.json`), unless stored with the run's
/// buckets.
pub fn evaluate(ctx: &RunContext, k: u32, weights: &mut Weights) -> Result<Step<HeldOut>> {
    let path = CheckpointPaths::new(ctx.layout.checkpoint(&ctx.run, k)).held_out();
    if path.exists() {
        match crate::integrity::read_sealed::<HeldOut>(&path, "it is evaluated again now") {
            Ok(stored) if stored.value.buckets.len() == ctx.buckets.len() => {
                if !stored.sealed {
                    ctx.note_unverified(format!("the held-out loss of {}", gen_name(k)));
                }
                return Ok(Step::stored(stored.value));
            }
            Ok(_) => {}
            Err(e) => eprintln!("[{}] warning: {e:#}", ctx.run),
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
    crate::integrity::write_sealed(&path, &held_out)?;
    Ok(Step::computed(held_out))
}

/// The corpus S_{k+1} generation k samples, unless its manifest marks it complete.
pub fn sample(
    ctx: &RunContext,
    k: u32,
    weights: &mut Weights,
    reference: &mut Reference,
    verifier: Option<&mut FixedModel>,
) -> Result<Step<SyntheticManifest>> {
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
                Some((chosen_by, rule)) => {
                    Step::computed(curated(ctx, k, weights, reference, verifier, &stem, &req, chosen_by, rule)?)
                }
            }
        }
    };
    if let Some(c) = &manifest.value.curation {
        let lengths = match (&c.kept_lengths, &c.dropped_lengths) {
            (Some(kept), Some(dropped)) => {
                format!("; kept documents {}, dropped {}", kept.describe(), dropped.describe())
            }
            _ => String::new(),
        };
        eprintln!(
            "[{run}] generation {k}: curation by the {} kept {} of {} sampled documents ({:.1}% of {} tokens; {:.2} × D sampled){lengths}",
            c.verifier.name(),
            c.kept_documents,
            c.sampled_documents,
            100.0 * c.kept_share,
            c.sampled_tokens,
            c.oversampling
        );
        if c.circular() && k == 0 {
            eprintln!(
                "[{run}] note: the verifier is the measuring reference ({}), so the curated corpora's reference \
                 perplexity, precision, recall and coverage are measured by the model that chose them (partly circular); \
                 curation.verifier = \"oracle\" or \"m0\" chooses by another model than generations.reference",
                c.verifier_checkpoint
            );
        }
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

/// The verifier's weights (`None` for M_k itself) and whether it is the measuring
/// reference: the reference's model, or the fixed verifier set up beside it.
fn verifier_weights<'a>(
    ctx: &RunContext,
    v: Verifier,
    reference: &'a mut Reference,
    fixed: Option<&'a mut FixedModel>,
) -> Result<Option<(&'a mut Weights, bool)>> {
    Ok(match v {
        Verifier::Own => None,
        _ if v.is_the_reference(ctx.reference_is_oracle) => Some((reference.model.weights(ctx)?, true)),
        _ => Some((fixed.context("the verifier model is set up with the run")?.weights(ctx)?, false)),
    })
}

/// Samples S_{k+1} curated by `verifier` and `rule` (`crate::curation`): the quantile
/// rule's bounds from the verifier's perplexities of the real validation documents,
/// documents shorter than `curation.min_document_tokens` (default: the shortest real
/// training document) never kept.
#[allow(clippy::too_many_arguments)]
fn curated(
    ctx: &RunContext,
    k: u32,
    weights: &mut Weights,
    reference: &mut Reference,
    fixed: Option<&mut FixedModel>,
    stem: &std::path::Path,
    req: &SampleRequest,
    verifier: Verifier,
    rule: crate::config::Rule,
) -> Result<SyntheticManifest> {
    use crate::config::Rule;
    use crate::curation::Plan;
    let reference_dir = reference.model.dir().to_path_buf();
    let mut judge = verifier_weights(ctx, verifier, reference, fixed)?;
    let (verifier_dir, embed) = match &judge {
        Some((w, embed)) => (w.dir().to_path_buf(), *embed),
        None => (weights.dir().to_path_buf(), false),
    };
    let (bounds, real_documents) = match rule {
        Rule::Best { .. } => ((0.0, 0.0), 0),
        Rule::Quantiles { low, high } => {
            let model = match judge.as_mut() {
                Some((w, _)) => &w.get(ctx)?.model,
                None => &weights.get(ctx)?.model,
            };
            let val = ctx.val_stream();
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
    let shortest_real = ctx.real.split.documents.iter().map(|d| d.len()).min().unwrap_or(0);
    let plan = Plan {
        verifier,
        rule,
        bounds,
        real_documents,
        max_oversampling: ctx.cfg.curation.max_oversampling(),
        verifier_checkpoint: verifier_dir.display().to_string(),
        reference_checkpoint: reference_dir.display().to_string(),
        embed,
        min_tokens: ctx.cfg.curation.min_document_tokens.map_or(shortest_real, |m| m as usize),
    };
    eprintln!(
        "[{}] generation {k}: curating S_{} by the {} ({}): {}, none shorter than {} tokens; measured under {}",
        ctx.run,
        k + 1,
        verifier.name(),
        verifier_dir.display(),
        rule.describe(),
        plan.min_tokens,
        reference_dir.display()
    );
    let model = match judge {
        Some((w, _)) => Some(&w.get(ctx)?.model),
        None => None,
    };
    let ckpt = weights.get(ctx)?;
    crate::torch_error::guard(&format!("sampling from generation {k}"), &ctx.cfg.sampling_memory(), || {
        crate::curation::write_curated_corpus(ckpt, stem, req, ctx.device, &plan, model)
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
    Ok((Sampled { corpus, record: manifest.bin_file.clone(), manifest }, counts))
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

/// What the score step gives a generation's row.
pub struct Scored {
    pub summary: ScoreSummary,
    pub manifold: Manifold,
    pub seconds: f64,
}

/// Scores S_{k+1}'s documents under the reference model (`scores/gen-KK.csv`) in one
/// forward pass that also embeds its passages, scores the same tokens under M_k (the
/// model that wrote them: self-perplexity), and measures quality and diversity against the real test passages; unless stored
/// intact (a damaged score file is said and computed again). The real test documents
/// and the noise floor are scored once, by the reference ([`Reference::real`]).
pub fn score(
    ctx: &RunContext,
    k: u32,
    weights: &mut Weights,
    reference: &mut Reference,
    sampled: &Sampled,
) -> Result<Step<Scored>> {
    let (layout, run) = (ctx.layout, ctx.run.as_str());
    let t0 = std::time::Instant::now();
    let real_fresh = reference.real(ctx)?.1;
    let documents = sampled.corpus.documents.len();
    let stored = match crate::scoring::read_corpus_scores(layout, run, k + 1, Some(documents), "it is scored again now")
    {
        Ok(Some((marker, _))) if marker.format < crate::scoring::FORMAT => {
            eprintln!(
                "[{run}] the scores of S_{} are of an older score format ({}; this lmloop writes {}); they are \
                 computed again",
                k + 1,
                marker.format,
                crate::scoring::FORMAT
            );
            None
        }
        Ok(Some((marker, rows)))
            if marker.reference.is_none()
                || reference.weights_record().is_none()
                || marker.reference.as_ref() == reference.weights_record() =>
        {
            if marker.csv.is_none() {
                ctx.note_unverified(format!("the scores of S_{}", k + 1));
            }
            marker.manifold.map(|m| (rows, marker.seconds, m, marker.floor_beyond_real_p99))
        }
        Ok(_) => None,
        Err(e) => {
            eprintln!("[{run}] warning: {e:#}");
            None
        }
    };
    let ((rows, seconds, manifold, floor), computed) = match stored {
        Some(stored) => (stored, false),
        None => (score_corpus(ctx, k, weights, reference, sampled, t0)?, true),
    };
    let by_reference: Vec<f64> = rows.iter().map(|r| r.1.exp()).collect();
    let own: Vec<f64> = rows.iter().map(|r| r.2.exp()).collect();
    let real = &reference.real(ctx)?.0.perplexities;
    let summary = crate::analysis::scores::summarise(&by_reference, &own, real, floor.unwrap_or(f64::NAN));
    Ok(Step { value: Scored { summary, manifold, seconds }, computed: computed || real_fresh })
}

/// Computes and writes S_{k+1}'s scores and their marker (sealed, with the CSV's
/// record and the reference's weights); returns the rows as stored (6 decimals, so a
/// resumed run summarises the same values), the seconds, the manifold measures and the
/// floor's share beyond the real tail at S_{k+1}'s lengths.
fn score_corpus(
    ctx: &RunContext,
    k: u32,
    weights: &mut Weights,
    reference: &mut Reference,
    sampled: &Sampled,
    t0: std::time::Instant,
) -> Result<(Vec<crate::scoring::ScoreRow>, f64, Manifold, Option<f64>)> {
    let (layout, run) = (ctx.layout, ctx.run.as_str());
    let csv_path = layout.scores_csv(run, Some(k + 1));
    let marker = layout.score_marker(run, k + 1);
    let corpus = &sampled.corpus;
    let stream =
        TokenStream::of_ranges(corpus.file.clone(), corpus.documents.iter().cloned(), ctx.corpus.vocab.delimiters());
    let what = format!("scoring the documents of S_{}", k + 1);
    let memory = ctx.cfg.model.evaluation_memory();
    // A corpus curated by this reference was scored and embedded by its verifier.
    let stem = layout.synthetic_corpus(run, k + 1);
    let stored = crate::curation::stored_reference_scores(
        &stem,
        &sampled.manifest,
        reference.model.dir(),
        ctx.model.block_size as usize,
        &ctx.rerun_from(k),
    )?;
    let (by_reference, embeddings) = match stored {
        Some(scored) => scored,
        None => {
            let model = &reference.model.weights(ctx)?.get(ctx)?.model;
            crate::torch_error::guard(&what, &memory, || crate::eval::score_and_embed(model, &stream, ctx.device))?
        }
    };
    // The tokens that entered the corpus (the canonical re-encoding of what was drawn,
    // which differs from the drawn ids for some documents), under the model that wrote
    // them: the sampler's record of its draws' likelihood would not compare like with
    // like against the reference's column.
    let own = crate::torch_error::guard(&what, &memory, || {
        crate::eval::per_document(&weights.get(ctx)?.model, &stream, ctx.device)
    })?;
    let seed = derive_seed(ctx.seed(), k, SeedPurpose::Quality);
    let manifold = manifold::compare(&reference.real(ctx)?.0.embeddings, &embeddings, seed);
    let lengths: Vec<u64> = by_reference.iter().map(|s| s.targets).collect();
    let floor = floor_beyond(ctx, reference, &lengths)?;
    let csv = crate::scoring::write_scores(&csv_path, &by_reference, Some(&own))?;
    let seconds = t0.elapsed().as_secs_f64();
    let record = crate::scoring::ScoreMarker {
        format: crate::scoring::FORMAT,
        documents: own.len(),
        seconds,
        manifold: Some(manifold),
        csv: Some(csv),
        reference: reference.weights_record().cloned(),
        floor_beyond_real_p99: floor,
    };
    crate::integrity::write_sealed(&marker, &record)?;
    Ok((crate::scoring::read_scores(&csv_path)?, seconds, manifold, floor))
}

/// The null of a corpus's share beyond the real tail: one piece of the noise floor's
/// documents per document of the corpus, with its `lengths` (targets), scored by the
/// reference (`crate::analysis::scores::floor_pieces`), and the share of the pieces
/// beyond the real test documents' 99th percentile; `None` without a noise floor.
fn floor_beyond(ctx: &RunContext, reference: &mut Reference, lengths: &[u64]) -> Result<Option<f64>> {
    let bin = ctx.layout.scores_file(&ctx.run, crate::scoring::FLOOR_BIN);
    if !bin.exists() {
        return Ok(None);
    }
    // The floor's tokens were checked against the run's record when the reference's
    // run-level files were read (`Reference::real`).
    let file = std::sync::Arc::new(crate::tokens::TokenFile::open(&bin)?);
    let docs = crate::tokens::document_ranges(file.iter(), ctx.corpus.vocab.eot());
    let pieces = crate::analysis::scores::floor_pieces(lengths, &docs);
    if pieces.is_empty() {
        return Ok(None);
    }
    let stream = TokenStream::of_ranges(file, pieces, ctx.corpus.vocab.delimiters());
    let cut = crate::analysis::scores::real_cut(&reference.real(ctx)?.0.perplexities);
    let model = &reference.model.weights(ctx)?.get(ctx)?.model;
    let scores = crate::torch_error::guard(
        "scoring the noise floor's pieces at the corpus's lengths",
        &ctx.cfg.model.evaluation_memory(),
        || crate::eval::per_document(model, &stream, ctx.device),
    )?;
    let perplexities: Vec<f64> = scores.iter().map(|s| s.mean().exp()).collect();
    Ok(Some(crate::analysis::scores::share_above(&perplexities, cut)))
}
