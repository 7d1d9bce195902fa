//! Curation of synthetic documents by a verifier (`[curation]` in a run config), a
//! mitigation that composes with every policy that trains on S_k: before S_{k+1}
//! enters a mixture, the documents sampled for it are scored by a verifier and a rule
//! keeps some of them.
//!
//! - **Verifiers.** `reference`: the run's reference model (`generations.reference`:
//!   M_0 or the oracle); `self`: the generating model M_k. Either reads each document's
//!   canonical tokens in the windows training and evaluation read (one forward pass over
//!   the sampled tokens), as it reads the real documents the quantile bounds come from.
//!   The sampler's own record of its draws' log-likelihood (`self_perplexity` in the
//!   listing) is not used to judge: it conditions on more context than a window holds,
//!   so it is lower than the same model's window perplexity of the same text, and
//!   comparing it with real documents' window perplexities would drop documents for
//!   the difference of the two measures.
//! - **Rules.** `keep_fraction = ρ`: rank the sampled documents by verifier perplexity
//!   and keep the lowest until they hold a share ρ of the sampled tokens (ρ = 1 keeps
//!   everything); `quantile_low`, `quantile_high`: keep the documents whose perplexity
//!   lies between those quantiles of the real validation documents' perplexities under
//!   the same verifier.
//! - **D stays |R|.** The sampler writes enough documents that the kept ones hold at
//!   least D tokens: D/ρ under the fraction rule; under the quantile rule it samples in
//!   rounds (round 0 from the corpus seed, each later one from its own seed) until the
//!   accepted documents hold D, and refuses, in one sentence, a corpus that would need
//!   more than `max_oversampling` × D sampled tokens. The kept documents are the
//!   corpus `STEM.{bin,txt,json}`, in the order they were sampled; the manifest's
//!   `curation` record holds the oversampling factor (sampled tokens / D), the kept
//!   share (kept tokens / sampled tokens), the bounds and the verifier's seconds.
//! - **What was removed stays on disk.** `STEM.curation.csv` lists every sampled
//!   document (round, index, tokens, verifier perplexity, kept or why not) and
//!   `STEM.dropped.txt` holds the text of the dropped ones. Under the reference verifier
//!   the same forward pass embeds the kept documents' passages (`STEM.reference.emb`),
//!   which the score step then uses instead of a second pass.
//!
//! Nothing here draws randomness of its own: a curated corpus depends on the models,
//! the seed and the settings only, so a killed run resumes to the same kept documents.
use crate::analysis::manifold::Embeddings;
use crate::checkpoint::Checkpoint;
use crate::config::{Rule, Verifier};
use crate::durable::{temp_path, write_atomic, write_json_atomic};
use crate::eval::DocumentScore;
use crate::integrity::FileFingerprint;
use crate::model::Model;
use crate::sample::{SampleRequest, SampleStats};
use crate::stream::TokenStream;
use crate::synthetic::{
    draw, files, manifest_of, CorpusWriter, CurationRecord, Lengths, Published, SyntheticManifest, TextWriter, Written,
};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tch::Device;

/// Fewer real validation documents than this make the quantile bounds rough: a warning.
pub const FEW_REAL_DOCUMENTS: usize = 20;

/// Why a sampled document is in the corpus or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Kept,
    /// Below the lower bound.
    Below,
    /// Above the upper bound (or no finite perplexity).
    Above,
    /// Outside the best share ρ.
    Ranked,
    /// Accepted, but sampled after the kept documents reached D.
    NotNeeded,
    /// Shorter than `curation.min_document_tokens`.
    Short,
}

impl Decision {
    pub fn name(self) -> &'static str {
        match self {
            Decision::Kept => "kept",
            Decision::Below => "below",
            Decision::Above => "above",
            Decision::Ranked => "ranked-out",
            Decision::NotNeeded => "not-needed",
            Decision::Short => "too-short",
        }
    }
}

/// What the rule decides for documents of `tokens` corpus tokens each (in the order
/// sampled) with verifier perplexities `perplexity`, for a corpus of `target` tokens;
/// `bounds` are the quantile rule's perplexity bounds; a document of fewer than
/// `min_tokens` tokens is never kept. Under [`Rule::Best`] the eligible documents are
/// split by length into `strata` groups of equal counts (ties by order sampled), and
/// each group keeps its lowest perplexities until they hold the share ρ of its tokens;
/// ties keep the earlier document; a perplexity that is not finite ranks last and is
/// above every bound.
pub fn judge(
    rule: Rule,
    bounds: (f64, f64),
    min_tokens: usize,
    tokens: &[usize],
    perplexity: &[f64],
    target: usize,
) -> Vec<Decision> {
    assert_eq!(tokens.len(), perplexity.len());
    let short = |i: usize| tokens[i] < min_tokens;
    match rule {
        Rule::Best { fraction, strata } => {
            let key = |i: usize| if perplexity[i].is_finite() { perplexity[i] } else { f64::INFINITY };
            let mut by_length: Vec<usize> = (0..tokens.len()).filter(|&i| !short(i)).collect();
            by_length.sort_by_key(|&i| (tokens[i], i));
            let mut out: Vec<Decision> =
                (0..tokens.len()).map(|i| if short(i) { Decision::Short } else { Decision::Ranked }).collect();
            let groups = strata.clamp(1, by_length.len().max(1));
            for g in 0..groups {
                let lo = g * by_length.len() / groups;
                let hi = (g + 1) * by_length.len() / groups;
                let mut order = by_length[lo..hi].to_vec();
                let total: usize = order.iter().map(|&i| tokens[i]).sum();
                order.sort_by(|&a, &b| key(a).total_cmp(&key(b)).then(a.cmp(&b)));
                let mut kept = 0usize;
                for i in order {
                    if kept as f64 >= fraction * total as f64 {
                        break;
                    }
                    out[i] = Decision::Kept;
                    kept += tokens[i];
                }
            }
            out
        }
        Rule::Quantiles { .. } => {
            let mut kept = 0usize;
            (0..tokens.len())
                .map(|i| {
                    let p = perplexity[i];
                    if short(i) {
                        Decision::Short
                    } else if p < bounds.0 {
                        Decision::Below
                    } else if p.is_nan() || p > bounds.1 {
                        Decision::Above
                    } else if kept < target {
                        kept += tokens[i];
                        Decision::Kept
                    } else {
                        Decision::NotNeeded
                    }
                })
                .collect()
        }
    }
}

/// The q-quantile of `values` (linear interpolation between order statistics); NaN
/// for none.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let h = (v.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    v[lo] + (h - lo as f64) * (v[hi] - v[lo])
}

/// How one corpus is curated: the verifier, the rule, and what the rule compares with.
#[derive(Debug, Clone)]
pub struct Plan {
    pub verifier: Verifier,
    pub rule: Rule,
    /// The quantile rule's perplexity bounds (unused by the fraction rule).
    pub bounds: (f64, f64),
    /// Real documents the bounds come from (0 under the fraction rule).
    pub real_documents: usize,
    pub max_oversampling: f64,
    /// The verifier's checkpoint, as recorded.
    pub verifier_checkpoint: String,
    /// The measuring reference's checkpoint, as recorded.
    pub reference_checkpoint: String,
    /// Whether the verifier is the measuring reference: its pass then also embeds the
    /// kept documents' passages for the score step.
    pub embed: bool,
    /// Documents of fewer corpus tokens are never kept.
    pub min_tokens: usize,
}

/// The columns of `STEM.curation.csv`, one row per sampled document.
pub const LISTING_COLUMNS: [&str; 8] =
    ["round", "document", "tokens", "targets", "verifier_nll", "verifier_perplexity", "self_perplexity", "decision"];

/// The listing, dropped text and reference embeddings beside a corpus `stem`.
pub fn curation_files(stem: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let p = crate::layout::CorpusPaths::new(stem);
    (p.listing(), p.dropped(), p.reference_embeddings())
}

/// Perplexity of every document of `stream` under `model`, and with `embed` the
/// passage embeddings of the same pass.
pub fn perplexities(
    model: &Model,
    stream: &TokenStream,
    device: Device,
    embed: bool,
) -> Result<(Vec<DocumentScore>, Option<Embeddings>)> {
    crate::eval::score_documents(model, stream, device, embed)
}

/// One sampled document and what the verifier made of it.
struct Candidate {
    round: usize,
    index: usize,
    doc: Published,
    score: DocumentScore,
    /// Its passages' rows in `embeddings` (reference verifier).
    passages: std::ops::Range<usize>,
}

impl Candidate {
    fn perplexity(&self) -> f64 {
        self.score.mean().exp()
    }
}

/// Scores a round's documents under the verifier in one forward pass through a
/// temporary token file, with `embed` embedding their passages too.
fn score_round(
    verifier: &Model,
    ckpt: &Checkpoint,
    stem: &Path,
    docs: &[Published],
    device: Device,
    embed: bool,
) -> Result<(Vec<DocumentScore>, Option<Embeddings>)> {
    let path = temp_path(&crate::layout::CorpusPaths::new(stem).pool());
    let eot = ckpt.vocab.eot();
    let mut all = Vec::new();
    let mut cuts = Vec::new();
    for d in docs {
        all.extend(d.corpus_ids(eot));
        if d.truncated {
            cuts.push(all.len());
        }
    }
    crate::tokens::write_tokens(&path, &all, ckpt.vocab.vocab_size())?;
    let scored = (|| {
        let file = Arc::new(crate::tokens::TokenFile::open(&path)?);
        let ranges = crate::tokens::document_ranges_with_cuts(file.iter(), eot, &cuts);
        let stream = TokenStream::of_ranges(file, ranges, ckpt.vocab.delimiters());
        anyhow::ensure!(stream.documents() == docs.len(), "the pool of a curated corpus lost its document bounds");
        perplexities(verifier, &stream, device, embed)
    })();
    let _ = std::fs::remove_file(&path);
    scored
}

/// Passages (full windows of `block` targets, `crate::eval::score_documents`) of a
/// document of `tokens` corpus tokens.
fn passages(tokens: usize, block: usize) -> usize {
    tokens / block
}

/// Adds a round's sampler statistics to the corpus's.
fn add_stats(total: &mut Option<SampleStats>, round: SampleStats) {
    let Some(t) = total else {
        *total = Some(round);
        return;
    };
    t.discarded_tokens += round.discarded_tokens;
    t.reencodes += round.reencodes;
    t.steps += round.steps;
    t.seconds += round.seconds;
    t.time.forward_seconds += round.time.forward_seconds;
    t.time.draw_seconds += round.time.draw_seconds;
    t.time.rebuild_seconds += round.time.rebuild_seconds;
    t.time.host_seconds += round.time.host_seconds;
}

/// The seed of sampling round `round` of a corpus sampled with `seed` (round 0: `seed`).
pub fn round_seed(seed: u64, round: usize) -> u64 {
    match round {
        0 => seed,
        r => crate::mix::splitmix64(seed.wrapping_add(crate::mix::GOLDEN_GAMMA.wrapping_mul(r as u64))),
    }
}

/// Samples a corpus of `req.n_tokens` kept tokens from `ckpt`, curated by `plan`
/// (`reference` is the verifier model under [`Verifier::Reference`]), and writes it with
/// its listing, dropped text and manifest (last).
pub fn write_curated_corpus(
    ckpt: &Checkpoint,
    stem: &Path,
    req: &SampleRequest,
    device: Device,
    plan: &Plan,
    judge_model: Option<&Model>,
) -> Result<SyntheticManifest> {
    let (_, _, json) = files(stem);
    let _ = std::fs::remove_file(&json);
    let rounds = sample_rounds(ckpt, stem, req, device, plan, judge_model)?;
    let (written, files) = write_decisions(ckpt, stem, &rounds)?;
    let record = curation_record(plan, req.n_tokens, &rounds, &written, files)?;
    let mut stats = rounds.stats;
    stats.tokens_per_second = record.sampled_tokens as f64 / stats.seconds.max(1e-9);
    let mut manifest = manifest_of(ckpt, stem, req, stats, rounds.canonical_seconds, written)?;
    manifest.curation = Some(record);
    write_json_atomic(&json, &manifest)?;
    Ok(manifest)
}

/// What the sampling rounds of a curated corpus drew and what the rule decided.
struct Rounds {
    candidates: Vec<Candidate>,
    decisions: Vec<Decision>,
    embeddings: Option<Embeddings>,
    stats: SampleStats,
    canonical_seconds: f64,
    verifier_seconds: f64,
}

/// Samples rounds (one under the fraction rule) until the kept documents hold
/// `req.n_tokens`, scoring each round by the verifier and judging all documents so far;
/// refuses, in one sentence, a corpus that would need more than the oversampling limit.
fn sample_rounds(
    ckpt: &Checkpoint,
    stem: &Path,
    req: &SampleRequest,
    device: Device,
    plan: &Plan,
    judge_model: Option<&Model>,
) -> Result<Rounds> {
    let target = req.n_tokens;
    let block = judge_model.map(|m| m.config().block_size as usize).unwrap_or(1);
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut embeddings: Option<Embeddings> = None;
    let (mut stats, mut canonical_seconds, mut verifier_seconds) = (None, 0.0, 0.0);
    let mut round_target = match plan.rule {
        Rule::Best { fraction, .. } => (target as f64 / fraction).ceil() as usize,
        Rule::Quantiles { .. } => target,
    };
    let limit = (plan.max_oversampling * target as f64).ceil() as usize;
    let mut round = 0;
    let decisions = loop {
        let round_req = SampleRequest { seed: round_seed(req.seed, round), n_tokens: round_target, ..req.clone() };
        let mut docs = Vec::new();
        let (round_stats, seconds) = draw(ckpt, &round_req, device, |doc| {
            let n = doc.corpus_tokens();
            docs.push(doc);
            Ok(n)
        })?;
        add_stats(&mut stats, round_stats);
        canonical_seconds += seconds;
        let t0 = std::time::Instant::now();
        // The verifier reads each document in the windows training and evaluation read,
        // as it reads the real documents the quantile bounds come from.
        let verifier = match plan.verifier {
            Verifier::Own => &ckpt.model,
            _ => judge_model.context("curation by a fixed model needs that model")?,
        };
        let (scores, e) = score_round(verifier, ckpt, stem, &docs, device, plan.embed)?;
        if let Some(e) = e {
            match embeddings.as_mut() {
                Some(all) => all.data.extend(e.data),
                None => embeddings = Some(e),
            }
        }
        verifier_seconds += t0.elapsed().as_secs_f64();
        for (index, (doc, score)) in docs.into_iter().zip(scores).enumerate() {
            let first = candidates.last().map_or(0, |c| c.passages.end);
            let n = if plan.embed { passages(doc.corpus_tokens(), block) } else { 0 };
            candidates.push(Candidate { round, index, doc, score, passages: first..first + n });
        }
        let tokens: Vec<usize> = candidates.iter().map(|c| c.doc.corpus_tokens()).collect();
        let perplexity: Vec<f64> = candidates.iter().map(|c| c.perplexity()).collect();
        let decisions = judge(plan.rule, plan.bounds, plan.min_tokens, &tokens, &perplexity, target);
        let sampled: usize = tokens.iter().sum();
        let (accepted, kept) = decisions.iter().zip(&tokens).fold((0, 0), |(a, k), (d, &t)| match d {
            Decision::Kept => (a + t, k + t),
            Decision::NotNeeded => (a + t, k),
            _ => (a, k),
        });
        if matches!(plan.rule, Rule::Best { .. }) || kept >= target {
            break decisions;
        }
        if sampled >= limit {
            let share = |which: Decision| {
                let t: usize = decisions.iter().zip(&tokens).filter(|(d, _)| **d == which).map(|(_, t)| t).sum();
                100.0 * t as f64 / sampled as f64
            };
            bail!(
                "curation kept {kept} of the {target} tokens the corpus needs after sampling {sampled} ({:.1} × D, the limit curation.max_oversampling = {}): \
                 of the sampled tokens {:.1}% lie below the real documents' perplexity bounds {:.1}–{:.1} and {:.1}% above; widen the quantiles or raise the limit",
                sampled as f64 / target as f64,
                plan.max_oversampling,
                share(Decision::Below),
                plan.bounds.0,
                plan.bounds.1,
                share(Decision::Above)
            );
        }
        let need = target - kept;
        let estimate = if accepted > 0 { need as f64 * sampled as f64 / accepted as f64 * 1.1 } else { target as f64 };
        round_target = (estimate.ceil() as usize).clamp(1, limit - sampled);
        round += 1;
    };
    Ok(Rounds {
        candidates,
        decisions,
        embeddings,
        stats: stats.expect("at least one round"),
        canonical_seconds,
        verifier_seconds,
    })
}

/// The files a curation writes beside the corpus, recorded.
struct CurationFiles {
    listing: FileFingerprint,
    dropped_text: FileFingerprint,
    reference_embeddings: Option<FileFingerprint>,
}

/// Writes the kept documents (the corpus, in the order sampled), the dropped ones'
/// text, the listing of every decision and the kept passages' embeddings.
fn write_decisions(ckpt: &Checkpoint, stem: &Path, rounds: &Rounds) -> Result<(Written, CurationFiles)> {
    let (candidates, decisions, embeddings) = (&rounds.candidates, &rounds.decisions, &rounds.embeddings);
    let eot = ckpt.vocab.eot();
    // The kept documents in the order they were sampled, the dropped ones beside them.
    let mut writer = CorpusWriter::create(stem, ckpt.vocab.vocab_size(), eot)?;
    let (listing, dropped_path, emb_path) = curation_files(stem);
    let mut dropped = TextWriter::create(&dropped_path)?;
    let mut kept_rows = Vec::new();
    for (c, d) in candidates.iter().zip(decisions) {
        if *d == Decision::Kept {
            writer.add(&c.doc)?;
            kept_rows.extend(c.passages.clone());
        } else {
            dropped.add(&c.doc)?;
        }
    }
    dropped.finish()?;
    crate::durable::write_csv_atomic(&listing, |w| {
        w.write_record(LISTING_COLUMNS)?;
        for (c, d) in candidates.iter().zip(decisions) {
            w.write_record([
                c.round.to_string(),
                c.index.to_string(),
                c.doc.corpus_tokens().to_string(),
                c.score.targets.to_string(),
                format!("{:.9}", c.score.mean()),
                format!("{:.6}", c.perplexity()),
                format!("{:.6}", c.doc.self_nll.0.exp()),
                d.name().to_string(),
            ])?;
        }
        Ok(())
    })?;
    let reference_embeddings = match embeddings {
        Some(e) => {
            write_atomic(&emb_path, &e.select(&kept_rows).to_bytes())?;
            Some(FileFingerprint::of(&emb_path)?)
        }
        None => None,
    };
    let written = writer.finish()?;
    let files = CurationFiles {
        listing: FileFingerprint::of(&listing)?,
        dropped_text: FileFingerprint::of(&dropped_path)?,
        reference_embeddings,
    };
    Ok((written, files))
}

/// The manifest's record of a curation of `target` tokens.
fn curation_record(
    plan: &Plan,
    target: usize,
    rounds: &Rounds,
    written: &Written,
    files: CurationFiles,
) -> Result<CurationRecord> {
    let (candidates, decisions) = (&rounds.candidates, &rounds.decisions);
    let sampled_tokens: usize = candidates.iter().map(|c| c.doc.corpus_tokens()).sum();
    let kept = |which: bool| {
        candidates.iter().zip(decisions).filter(move |(_, d)| (**d == Decision::Kept) == which).map(|(c, _)| c)
    };
    Ok(CurationRecord {
        verifier: plan.verifier,
        verifier_checkpoint: plan.verifier_checkpoint.clone(),
        keep_fraction: match plan.rule {
            Rule::Best { fraction, .. } => Some(fraction),
            _ => None,
        },
        quantiles: match plan.rule {
            Rule::Quantiles { low, high } => Some((low, high)),
            _ => None,
        },
        perplexity_bounds: matches!(plan.rule, Rule::Quantiles { .. }).then_some(plan.bounds),
        real_documents: plan.real_documents,
        rounds: candidates.last().map_or(0, |c| c.round + 1),
        sampled_documents: candidates.len(),
        sampled_tokens,
        kept_documents: written.documents,
        kept_tokens: written.tokens,
        oversampling: sampled_tokens as f64 / target.max(1) as f64,
        kept_share: written.tokens as f64 / sampled_tokens.max(1) as f64,
        verifier_seconds: rounds.verifier_seconds,
        listing: files.listing,
        dropped_text: files.dropped_text,
        reference_embeddings: files.reference_embeddings,
        reference_checkpoint: plan.reference_checkpoint.clone(),
        length_strata: match plan.rule {
            Rule::Best { strata, .. } => strata,
            Rule::Quantiles { .. } => 1,
        },
        min_document_tokens: plan.min_tokens,
        kept_lengths: Some(Lengths::of(kept(true).map(|c| c.doc.corpus_tokens()))),
        dropped_lengths: Some(Lengths::of(kept(false).map(|c| c.doc.corpus_tokens()))),
    })
}

/// The kept documents' reference scores and passage embeddings recorded by a curation
/// by the reference `checkpoint`, checked against the record; `None` when the corpus
/// was not curated so (or by another reference), or when its embeddings are not one per
/// full window of `block` targets (a corpus curated before passages were full windows),
/// so the score step computes them.
pub fn stored_reference_scores(
    stem: &Path,
    manifest: &SyntheticManifest,
    checkpoint: &Path,
    block: usize,
    way_out: &str,
) -> Result<Option<(Vec<DocumentScore>, Embeddings)>> {
    let Some(c) = &manifest.curation else { return Ok(None) };
    let Some(emb_record) = &c.reference_embeddings else { return Ok(None) };
    if Path::new(&c.verifier_checkpoint) != checkpoint {
        return Ok(None);
    }
    let (listing, _, emb_path) = curation_files(stem);
    crate::integrity::check_file(&listing, &c.listing, way_out)?;
    crate::integrity::check_file(&emb_path, emb_record, way_out)?;
    let mut r = csv::Reader::from_path(&listing).with_context(|| format!("cannot read {}", listing.display()))?;
    let bad = || anyhow::anyhow!("malformed row in {}", listing.display());
    let headers = r.headers().with_context(|| format!("cannot read {}", listing.display()))?.clone();
    let column = |name: &str| {
        headers.iter().position(|h| h == name).with_context(|| format!("{} has no column {name}", listing.display()))
    };
    let (targets, nll, decision) = (column("targets")?, column("verifier_nll")?, column("decision")?);
    let mut scores = Vec::new();
    for rec in r.records() {
        let rec = rec.with_context(|| format!("malformed row in {}", listing.display()))?;
        if rec.get(decision) != Some(Decision::Kept.name()) {
            continue;
        }
        let targets: u64 = rec.get(targets).and_then(|v| v.parse().ok()).ok_or_else(bad)?;
        let mean: f64 = rec.get(nll).and_then(|v| v.parse().ok()).ok_or_else(bad)?;
        scores.push(DocumentScore { nll: mean * targets as f64, targets });
    }
    let bytes = std::fs::read(&emb_path).with_context(|| format!("cannot read {}", emb_path.display()))?;
    let embeddings = Embeddings::from_bytes(&bytes).with_context(|| format!("{} is unreadable", emb_path.display()))?;
    let passages: usize = scores.iter().map(|s| passages(s.targets as usize, block)).sum();
    if embeddings.len() != passages {
        eprintln!(
            "note: {} holds {} passage embeddings where the kept documents have {passages} full windows (an older \
             passage rule); the corpus is embedded again",
            emb_path.display(),
            embeddings.len()
        );
        return Ok(None);
    }
    if scores.len() != manifest.stats.documents {
        bail!(
            "{} lists {} kept documents, but the corpus holds {}; {way_out}",
            listing.display(),
            scores.len(),
            manifest.stats.documents
        );
    }
    Ok(Some((scores, embeddings)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranking_within_length_keeps_the_length_distribution_of_a_verifier_that_favours_short_documents() {
        // Lengths 1..=400, per-token perplexity rising with length and blind to content:
        // one ranking keeps the short documents, the strata keep every length.
        let tokens: Vec<usize> = (0..400).map(|i| 1 + (i * 7919) % 400).collect();
        let ppl: Vec<f64> = tokens.iter().enumerate().map(|(i, &t)| 10.0 + t as f64 + (i % 3) as f64 * 0.1).collect();
        let kept_lengths = |d: &[Decision]| {
            crate::synthetic::Lengths::of(tokens.iter().zip(d).filter(|(_, d)| **d == Decision::Kept).map(|(t, _)| *t))
        };
        let all = crate::synthetic::Lengths::of(tokens.iter().copied());
        let overall = kept_lengths(&judge(Rule::Best { fraction: 0.5, strata: 1 }, (0.0, 0.0), 0, &tokens, &ppl, 0));
        let strata = kept_lengths(&judge(Rule::Best { fraction: 0.5, strata: 5 }, (0.0, 0.0), 0, &tokens, &ppl, 0));
        assert!(overall.median < 0.8 * all.median, "one ranking favours short documents: {overall:?} of {all:?}");
        assert!((strata.median - all.median).abs() < 0.15 * all.median, "{strata:?} of {all:?}");
        assert!((strata.p90 - all.p90).abs() < 0.15 * all.p90, "{strata:?} of {all:?}");
        // Never a document shorter than the minimum.
        let d = judge(Rule::Best { fraction: 1.0, strata: 5 }, (0.0, 0.0), 6, &tokens, &ppl, 0);
        assert!(tokens.iter().zip(&d).all(|(&t, d)| (t < 6) == (*d == Decision::Short)));
    }
    use crate::config::CurationConfig;
    use crate::policy::Policy;

    #[test]
    fn the_fraction_rule_keeps_the_lowest_perplexities_up_to_its_share_of_the_tokens() {
        let tokens = [10, 10, 10, 10];
        let ppl = [5.0, 1.0, f64::NAN, 3.0];
        let d = judge(Rule::Best { fraction: 0.5, strata: 1 }, (0.0, 0.0), 0, &tokens, &ppl, 20);
        assert_eq!(d, [Decision::Ranked, Decision::Kept, Decision::Ranked, Decision::Kept]);
        let all = judge(Rule::Best { fraction: 1.0, strata: 1 }, (0.0, 0.0), 0, &tokens, &ppl, 20);
        assert!(all.iter().all(|d| *d == Decision::Kept), "ρ = 1 keeps everything: {all:?}");
    }

    #[test]
    fn the_quantile_rule_keeps_what_lies_between_the_bounds_until_the_target() {
        let tokens = [5, 5, 5, 5, 5];
        let ppl = [1.0, 50.0, 10.0, 20.0, 30.0];
        let d = judge(Rule::Quantiles { low: 0.1, high: 0.9 }, (2.0, 40.0), 0, &tokens, &ppl, 10);
        assert_eq!(d, [Decision::Below, Decision::Above, Decision::Kept, Decision::Kept, Decision::NotNeeded]);
        assert_eq!(quantile(&[4.0, 1.0, 3.0, 2.0], 0.5), 2.5);
        assert_eq!(quantile(&[4.0, 1.0, 3.0, 2.0], 0.0), 1.0);
        assert_eq!(quantile(&[4.0, 1.0, 3.0, 2.0], 1.0), 4.0);
    }

    #[test]
    fn bad_tables_are_refused_with_the_setting_named() {
        let on = |f: fn(&mut CurationConfig)| {
            let mut c =
                CurationConfig { verifier: Some(Verifier::Own), keep_fraction: Some(0.5), ..Default::default() };
            f(&mut c);
            c.validate(Policy::Replace).map_err(|e| e.to_string())
        };
        assert!(on(|_| {}).is_ok());
        assert!(on(|c| c.keep_fraction = Some(0.0)).unwrap_err().contains("curation.keep_fraction must be in (0, 1]"));
        assert!(on(|c| c.keep_fraction = Some(1.5)).unwrap_err().contains("(0, 1]"));
        let q = |c: &mut CurationConfig| {
            c.keep_fraction = None;
            c.quantile_low = Some(0.9);
            c.quantile_high = Some(0.1);
        };
        assert!(on(q).unwrap_err().contains("must be below curation.quantile_high"));
        assert!(on(|c| c.verifier = None).unwrap_err().contains("no curation.verifier"));
        let c = CurationConfig { verifier: Some(Verifier::Reference), keep_fraction: Some(0.5), ..Default::default() };
        let e = c.validate(Policy::Real).unwrap_err().to_string();
        assert!(e.contains("policy 'real'") && e.contains("nothing to curate"), "{e}");
        assert!(c.validate(Policy::Mix { real_fraction: 1.0 }).is_err());
        assert!(c.validate(Policy::Mix { real_fraction: 0.5 }).is_ok());
    }
}
