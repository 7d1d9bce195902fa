//! The data manager: which documents each generation trains on.
//!
//! Let R be the real training set, D the generation size (`generations.synthetic_tokens`,
//! D = |R| by default, as in the papers) and S_k the corpus of D tokens sampled by
//! generation k-1. Generation 0 trains on R under every policy. For k ≥ 1:
//!
//! | policy | trains on |
//! |---|---|
//! | `replace` | S_k |
//! | `accumulate` | R ∪ S_1 ∪ … ∪ S_k (grows by D every generation) |
//! | `accumulate-subsample` | a uniform sample of D tokens of documents from R ∪ S_1 ∪ … ∪ S_k |
//! | `mix` | λ·D tokens of documents from R and (1-λ)·D from S_k |
//! | `fresh` | λ·D tokens of real documents never used before, and (1-λ)·D from S_k |
//! | `real` (control) | D tokens of real training documents, drawn afresh with the generation's seed |
//!
//! Units are whole documents: a sample "of n tokens" takes shuffled documents until
//! their total reaches n. R is a fixed seeded subset of the real training split's
//! documents (the same for every policy and seed): with
//! `generations.real_subset_tokens`, about that many tokens; without it, all but a
//! held-out share `generations.holdout_fraction` (default 0.5) of the split. The
//! training documents outside R are the pool: `fresh` draws never-used documents from
//! it, each once; the noise floor and the tail null are real documents from it (what a
//! perfect model's corpus would be: real text it was not trained on); and the control
//! `real` draws D tokens from it afresh every generation, never R itself. The control
//! has the size and the passes of `replace` and no synthetic data, so it separates
//! "less or repeated data" from "synthetic data".
use crate::choice::Choice;
use crate::stream::TokenStream;
use crate::tokens::{document_ranges, TokenFile};
use anyhow::{bail, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Policy {
    Replace,
    Accumulate,
    AccumulateSubsample,
    Mix {
        real_fraction: f64,
    },
    Fresh {
        real_fraction: f64,
    },
    /// The real-data control.
    Real,
}

/// The `generations.policy` key and `--policy`: a policy's name, before its λ is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
#[value(rename_all = "kebab-case")]
pub enum PolicyName {
    #[default]
    Replace,
    Accumulate,
    AccumulateSubsample,
    Mix,
    Fresh,
    Real,
}

impl Policy {
    /// A policy from a name given as text (a sweep grid's `policy` and `real_fraction`).
    pub fn parse(name: &str, real_fraction: Option<f64>) -> Result<Self> {
        Self::new(PolicyName::parse_named("policy", name)?, real_fraction, "real_fraction")
    }

    /// The policy `name` with its real share λ, checked: `mix` and `fresh` need λ in
    /// [0, 1], the others refuse one. Messages name λ as `lambda_key` (the flag or the
    /// config key it came from).
    pub fn new(name: PolicyName, real_fraction: Option<f64>, lambda_key: &str) -> Result<Self> {
        if let Some(l) = real_fraction {
            if !(0.0..=1.0).contains(&l) || l.is_nan() {
                bail!("{lambda_key} must be in [0, 1], got {l}");
            }
        }
        let needs = |name: &str| match real_fraction {
            Some(l) => Ok(l),
            None => bail!("policy '{name}' needs {lambda_key} λ (the share of real data, in [0, 1])"),
        };
        let policy = match name {
            PolicyName::Replace => Policy::Replace,
            PolicyName::Accumulate => Policy::Accumulate,
            PolicyName::AccumulateSubsample => Policy::AccumulateSubsample,
            PolicyName::Mix => Policy::Mix { real_fraction: needs(&name.name())? },
            PolicyName::Fresh => Policy::Fresh { real_fraction: needs(&name.name())? },
            PolicyName::Real => Policy::Real,
        };
        if let (Some(l), None) = (real_fraction, policy.real_fraction()) {
            match policy {
                Policy::Real => bail!(
                    "policy 'real' is the real-data control and takes no {lambda_key} (got {l}): it trains on D real tokens every generation"
                ),
                _ => bail!("policy '{}' takes no {lambda_key} (got {l}); only mix and fresh have a real share λ", name.name())
            }
        }
        Ok(policy)
    }

    /// The policy's name, without its λ.
    pub fn kind(&self) -> PolicyName {
        match self {
            Policy::Replace => PolicyName::Replace,
            Policy::Accumulate => PolicyName::Accumulate,
            Policy::AccumulateSubsample => PolicyName::AccumulateSubsample,
            Policy::Mix { .. } => PolicyName::Mix,
            Policy::Fresh { .. } => PolicyName::Fresh,
            Policy::Real => PolicyName::Real,
        }
    }

    /// The name as written in config files, on the command line and in the tables.
    pub fn name(&self) -> String {
        self.kind().name()
    }

    pub fn real_fraction(&self) -> Option<f64> {
        match self {
            Policy::Mix { real_fraction } | Policy::Fresh { real_fraction } => Some(*real_fraction),
            _ => None,
        }
    }
}

/// A token file and its documents.
#[derive(Clone)]
pub struct Corpus {
    pub name: String,
    pub file: Arc<TokenFile>,
    pub documents: Vec<Range<usize>>,
}

impl Corpus {
    pub fn new(name: impl Into<String>, file: Arc<TokenFile>, eot: u32) -> Self {
        let documents = document_ranges(file.iter(), eot);
        Self { name: name.into(), file, documents }
    }

    pub fn tokens(&self) -> usize {
        self.documents.iter().map(|d| d.len()).sum()
    }

    /// The documents' tokens, concatenated in order.
    pub fn to_tokens(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.tokens());
        for d in &self.documents {
            out.extend(d.clone().map(|i| self.file.get(i)));
        }
        out
    }

    fn subset(&self, documents: Vec<Range<usize>>) -> Corpus {
        Corpus { name: self.name.clone(), file: self.file.clone(), documents }
    }
}

/// One source's share of a training mixture.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MixturePart {
    pub source: String,
    pub file: String,
    pub documents: usize,
    pub tokens: usize,
    /// Size and SHA-256 of `file` when the mixture was drawn (absent from older records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<crate::integrity::FileFingerprint>,
}

/// What one generation trains on: written as `analysis/RUN/mixture/gen-KK.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MixtureManifest {
    pub generation: u32,
    pub policy: String,
    pub real_fraction: Option<f64>,
    pub seed: u64,
    pub parts: Vec<MixturePart>,
    pub total_tokens: usize,
    pub real_tokens: usize,
    pub synthetic_tokens: usize,
    /// Tokens in documents the sampler cut at the length cap (no end token): the part
    /// of the mixture whose text depends on the cap (absent from older manifests).
    #[serde(default)]
    pub truncated_tokens: usize,
}

impl MixtureManifest {
    /// Share of the mixture's tokens in documents cut at the length cap.
    pub fn truncated_share(&self) -> f64 {
        self.truncated_tokens as f64 / self.total_tokens.max(1) as f64
    }
}

/// The real data split the way a policy needs it.
pub struct RealData {
    /// R: what generation 0 trains on, and what |R| measures.
    pub base: Corpus,
    /// The training documents outside R, in a seeded order (`fresh` uses them in it).
    pub pool: Vec<Range<usize>>,
    /// The whole real training split.
    pub split: Corpus,
    /// The share of the split held out of R when no subset was asked for.
    pub holdout_fraction: Option<f64>,
}

/// Share of the training split held out of R when R is not a subset
/// (`generations.holdout_fraction`): half, so that the pool holds at least |R| tokens,
/// the size of the noise floor's sample.
pub const DEFAULT_HOLDOUT_FRACTION: f64 = 0.5;

impl RealData {
    /// R and the pool from the real training split, by whole shuffled documents: with
    /// `subset_tokens > 0`, R holds at least that many tokens; else R holds at most
    /// (1 − h)·|split| tokens, h = `holdout_fraction` (default
    /// [`DEFAULT_HOLDOUT_FRACTION`]). The pool is the rest. `policy` does not change R,
    /// so every policy of a sweep starts from the same generation 0.
    pub fn new(
        split: Corpus,
        _policy: Policy,
        subset_tokens: usize,
        holdout_fraction: Option<f64>,
        seed: u64,
    ) -> Result<Self> {
        let total = split.tokens();
        let mut docs = split.documents.clone();
        docs.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let (mut taken, mut cut) = (0, 0);
        let held_out = if subset_tokens > 0 {
            if subset_tokens >= total {
                bail!(
                    "generations.real_subset_tokens ({subset_tokens}) must be smaller than the real training split ({total} tokens); set 0 for R to be the split less its held-out share (generations.holdout_fraction)"
                );
            }
            while cut < docs.len() && taken < subset_tokens {
                taken += docs[cut].len();
                cut += 1;
            }
            None
        } else {
            let h = holdout_fraction.unwrap_or(DEFAULT_HOLDOUT_FRACTION);
            if !(h > 0.0 && h < 1.0) {
                bail!("generations.holdout_fraction must be in (0, 1), got {h}");
            }
            let keep = ((1.0 - h) * total as f64).floor() as usize;
            while cut < docs.len() && (cut == 0 || taken + docs[cut].len() <= keep) {
                taken += docs[cut].len();
                cut += 1;
            }
            Some(h)
        };
        if cut == docs.len() {
            bail!(
                "the real training split has {} documents, too few to hold any out of R: real documents outside R are needed for the noise floor, the tail null and the control; prepare more text, or lower generations.real_subset_tokens",
                docs.len()
            );
        }
        let pool = docs.split_off(cut);
        docs.sort_by_key(|d| d.start);
        Ok(Self { base: split.subset(docs), pool, split, holdout_fraction: held_out })
    }

    /// Tokens of the pool.
    pub fn pool_tokens(&self) -> usize {
        self.pool.iter().map(|d| d.len()).sum()
    }

    /// The pool as a corpus (documents in file order).
    pub fn pool_corpus(&self) -> Corpus {
        let mut documents = self.pool.clone();
        documents.sort_by_key(|d| d.start);
        Corpus { name: format!("{} (outside R)", self.split.name), file: self.split.file.clone(), documents }
    }

    /// Checks that the control can draw D = `size` tokens from the pool afresh every
    /// generation: the pool must hold at least [`CONTROL_POOL_OVER_D`]·D tokens, so two
    /// generations' draws share about half their documents at most.
    pub fn check_control_pool(&self, size: usize) -> Result<()> {
        let pool = self.pool_tokens();
        if pool < CONTROL_POOL_OVER_D * size {
            let fix = match self.holdout_fraction {
                Some(h) => format!(
                    "raise generations.holdout_fraction (now {h}) to {:.2} or more, or take R as a smaller subset (generations.real_subset_tokens)",
                    CONTROL_POOL_OVER_D as f64 / (CONTROL_POOL_OVER_D as f64 + 1.0)
                ),
                None => "lower generations.real_subset_tokens, or generations.synthetic_tokens".to_string(),
            };
            bail!(
                "the control 'real' draws D = {size} real tokens outside R afresh every generation, and needs at least {} of them, but only {pool} are held out; {fix}",
                CONTROL_POOL_OVER_D * size
            );
        }
        Ok(())
    }
}

/// How many times D the control's pool must hold (see [`RealData::check_control_pool`]).
pub const CONTROL_POOL_OVER_D: usize = 2;

/// Shuffled documents of `corpora` (all of them pooled) until `target` tokens are reached.
fn take_tokens(corpora: &[&Corpus], target: usize, rng: &mut ChaCha8Rng) -> Vec<(usize, Range<usize>)> {
    let mut all: Vec<(usize, Range<usize>)> =
        corpora.iter().enumerate().flat_map(|(i, c)| c.documents.iter().map(move |d| (i, d.clone()))).collect();
    all.shuffle(rng);
    let mut taken = 0;
    let mut out = Vec::new();
    for (i, d) in all {
        if taken >= target {
            break;
        }
        taken += d.len();
        out.push((i, d));
    }
    out
}

/// Builds generation `k`'s training stream and its manifest.
///
/// `synthetic[j]` is S_{j+1}; only S_1..S_k are used. `generation_size` is D (see
/// the module documentation). Which pool documents `fresh`
/// gives generation k is recomputed from k, λ and the pool (not stored), so resuming
/// needs no extra state.
pub fn mixture(
    k: u32,
    policy: Policy,
    real: &RealData,
    synthetic: &[Corpus],
    generation_size: usize,
    seed: u64,
) -> Result<(TokenStream, MixtureManifest)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let r_size = generation_size;
    let syn = |j: u32| -> Result<&Corpus> {
        synthetic.get(j as usize - 1).ok_or_else(|| anyhow::anyhow!("synthetic corpus S_{j} is missing"))
    };
    // (corpus, chosen documents) pairs; corpus 0 is the real base.
    let mut chosen: Vec<(Corpus, Vec<Range<usize>>)> = Vec::new();
    let take_into =
        |sources: Vec<&Corpus>, target: usize, chosen: &mut Vec<(Corpus, Vec<Range<usize>>)>, rng: &mut ChaCha8Rng| {
            let picks = take_tokens(&sources, target, rng);
            for (i, src) in sources.iter().enumerate() {
                let mut docs: Vec<Range<usize>> =
                    picks.iter().filter(|(j, _)| *j == i).map(|(_, d)| d.clone()).collect();
                docs.sort_by_key(|d| d.start);
                chosen.push(((*src).clone(), docs));
            }
        };
    if k == 0 {
        chosen.push((real.base.clone(), real.base.documents.clone()));
    } else {
        match policy {
            Policy::Replace => {
                let s = syn(k)?;
                chosen.push((s.clone(), s.documents.clone()));
            }
            Policy::Accumulate => {
                chosen.push((real.base.clone(), real.base.documents.clone()));
                for j in 1..=k {
                    let s = syn(j)?;
                    chosen.push((s.clone(), s.documents.clone()));
                }
            }
            Policy::AccumulateSubsample => {
                let mut sources = vec![&real.base];
                for j in 1..=k {
                    sources.push(syn(j)?);
                }
                take_into(sources, r_size, &mut chosen, &mut rng);
            }
            Policy::Mix { real_fraction } => {
                let real_target = (real_fraction * r_size as f64).round() as usize;
                take_into(vec![&real.base], real_target, &mut chosen, &mut rng);
                take_into(vec![syn(k)?], r_size - real_target, &mut chosen, &mut rng);
            }
            Policy::Fresh { real_fraction } => {
                let real_target = (real_fraction * r_size as f64).round() as usize;
                let fresh = fresh_documents(&real.pool, real_target, k)?;
                let name = format!("{} (fresh pool)", real.base.name);
                chosen.push((Corpus { name, file: real.base.file.clone(), documents: fresh.clone() }, fresh));
                take_into(vec![syn(k)?], r_size - real_target, &mut chosen, &mut rng);
            }
            Policy::Real => {
                real.check_control_pool(r_size)?;
                let mut pool = real.pool_corpus();
                pool.name = format!("{} (control sample)", real.split.name);
                take_into(vec![&pool], r_size, &mut chosen, &mut rng);
            }
        }
    }
    // Real documents all end with the end token, so the split's last token is it; a
    // tokenizer with a separate start token sets it with `TokenStream::with_delimiters`.
    let end = real.split.file.len().checked_sub(1).map_or(0, |i| real.split.file.get(i));
    let mut stream = TokenStream::new(end);
    let mut parts = Vec::new();
    let (mut real_tokens, mut synthetic_tokens, mut truncated_tokens) = (0, 0, 0);
    for (corpus, docs) in &chosen {
        if docs.is_empty() {
            continue;
        }
        let f = stream.add_file(corpus.file.clone());
        let tokens: usize = docs.iter().map(|d| d.len()).sum();
        truncated_tokens += docs.iter().filter(|d| corpus.file.get(d.end - 1) != end).map(|d| d.len()).sum::<usize>();
        for d in docs {
            stream.push(f, d.clone());
        }
        if Arc::ptr_eq(&corpus.file, &real.base.file) {
            real_tokens += tokens;
        } else {
            synthetic_tokens += tokens;
        }
        parts.push(MixturePart {
            source: corpus.name.clone(),
            file: corpus.file.path().display().to_string(),
            documents: docs.len(),
            tokens,
            record: None,
        });
    }
    if stream.is_empty() {
        bail!("generation {k} would train on no data");
    }
    let manifest = MixtureManifest {
        generation: k,
        policy: policy.name(),
        real_fraction: policy.real_fraction(),
        seed,
        parts,
        total_tokens: stream.len(),
        real_tokens,
        synthetic_tokens,
        truncated_tokens,
    };
    Ok((stream, manifest))
}

/// The fresh real documents of generation k: the pool is consumed in order, each
/// generation taking documents until it holds `target` tokens.
fn fresh_documents(pool: &[Range<usize>], target: usize, k: u32) -> Result<Vec<Range<usize>>> {
    let mut next = 0;
    for generation in 1..=k {
        let start = next;
        let mut got = 0;
        while got < target {
            let Some(d) = pool.get(next) else {
                let left: usize = pool[start..].iter().map(|d| d.len()).sum();
                bail!(
                    "policy 'fresh' ran out of unused real data at generation {generation}: it needs {target} tokens but only {left} are left in the pool; \
                     lower --real-fraction or -n, or leave more of the training split to the pool (a smaller generations.real_subset_tokens, or a larger generations.holdout_fraction)"
                );
            };
            got += d.len();
            next += 1;
        }
        if generation == k {
            return Ok(pool[start..next].to_vec());
        }
    }
    Ok(Vec::new())
}

/// A real sample of about `size` tokens of whole documents: what a perfect model
/// would show through the drift measures (the noise floor).
#[derive(Debug, Clone)]
pub struct NoiseFloorSample {
    pub tokens: Vec<u32>,
    pub documents: usize,
    /// Where it came from, for the manifest and the report.
    pub source: String,
}

/// A token file, the ranges of its unseen documents, and a sentence naming them.
type Unseen<'a> = (&'a Arc<TokenFile>, Vec<Range<usize>>, String);

/// Real documents that are not in R, where a perfect model's corpus comes from: the
/// pool (training documents outside R) when it holds `size` tokens, else `held_out`
/// (the validation split, never trained on). Never R's own documents: resampling R
/// repeats its documents, which roughly halves every diversity measure's floor.
/// `Err` names what is missing when neither holds `size` tokens.
fn unseen_documents<'a>(real: &'a RealData, held_out: &'a Corpus, size: usize) -> Result<Unseen<'a>, String> {
    let pool = real.pool_tokens();
    if pool >= size {
        Ok((&real.base.file, real.pool.clone(), format!("real training documents outside R ({pool} tokens)")))
    } else if held_out.tokens() >= size {
        Ok((
            &held_out.file,
            held_out.documents.clone(),
            format!("{} documents, never trained on ({} tokens)", held_out.name, held_out.tokens()),
        ))
    } else {
        Err(format!(
            "too little real text outside R: {pool} tokens of training documents outside R and {} of {}, fewer than D = {size}",
            held_out.tokens(),
            held_out.name
        ))
    }
}

/// Shuffled `docs` until they hold `size` tokens, as one token sequence.
fn draw_documents(file: &TokenFile, docs: &[Range<usize>], size: usize, rng: &mut ChaCha8Rng) -> (Vec<u32>, usize) {
    let mut docs = docs.to_vec();
    docs.shuffle(rng);
    let mut tokens = Vec::with_capacity(size + 1024);
    let mut documents = 0;
    for d in docs {
        if tokens.len() >= size {
            break;
        }
        tokens.extend(d.map(|i| file.get(i)));
        documents += 1;
    }
    (tokens, documents)
}

/// Draws the noise-floor sample: `size` tokens of real documents that are not in R
/// (see [`unseen_documents`]), in a seeded order. `Err` says why there is none.
pub fn noise_floor(
    real: &RealData,
    held_out: &Corpus,
    size: usize,
    seed: u64,
) -> std::result::Result<NoiseFloorSample, String> {
    let (file, docs, source) = unseen_documents(real, held_out, size)?;
    let (tokens, documents) = draw_documents(file, &docs, size, &mut ChaCha8Rng::seed_from_u64(seed));
    Ok(NoiseFloorSample { tokens, documents, source })
}

/// What a perfect model's corpora would hold, token by token: `draws` corpora of
/// `size` tokens of real documents not in R, each a fresh seeded draw.
#[derive(Debug, Clone)]
pub struct NullDraws {
    /// Token counts of every draw (each about `size` tokens: whole documents).
    pub counts: Vec<Vec<u64>>,
    /// Where they came from, and how many tokens it holds (draws of most of a small
    /// source share most of their documents, so they vary less than corpora would).
    pub source: String,
    pub source_tokens: usize,
}

/// Draws for the tail null (see [`NullDraws`]) from the noise floor's source.
pub fn null_draws(
    real: &RealData,
    held_out: &Corpus,
    size: usize,
    draws: usize,
    vocab_size: usize,
    seed: u64,
) -> std::result::Result<NullDraws, String> {
    let (file, docs, source) = unseen_documents(real, held_out, size)?;
    let source_tokens = docs.iter().map(|d| d.len()).sum();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut counts = Vec::with_capacity(draws);
    for _ in 0..draws {
        let (sample, _) = draw_documents(file, &docs, size, &mut rng);
        let mut c = vec![0u64; vocab_size];
        for t in &sample {
            if let Some(x) = c.get_mut(*t as usize) {
                *x += 1;
            }
        }
        counts.push(c);
    }
    Ok(NullDraws { counts, source, source_tokens })
}
