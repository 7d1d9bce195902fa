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
//! their total reaches n. R is either the whole real training split or, with
//! `generations.real_subset_tokens`, a fixed seeded subset of its documents (the same
//! for every policy and seed); the other training documents are then the pool that
//! `fresh` draws from, each once. Without a subset, `fresh` cuts the split in two by
//! document: R and a pool of `generations.fresh_pool_fraction` of it. The control
//! `real` draws from the whole training split: it has the size and the passes of
//! `replace` and no synthetic data, so it separates "less or repeated data" from
//! "synthetic data".
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
    Mix { real_fraction: f64 },
    Fresh { real_fraction: f64 },
    /// The real-data control.
    Real,
}

pub const POLICY_NAMES: &str = "replace, accumulate, accumulate-subsample, mix, fresh, real";

/// The `generations.policy` key: a policy's name, before its λ is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyName {
    #[default]
    Replace,
    Accumulate,
    AccumulateSubsample,
    Mix,
    Fresh,
    Real,
}

impl PolicyName {
    /// The name as written in config files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyName::Replace => "replace",
            PolicyName::Accumulate => "accumulate",
            PolicyName::AccumulateSubsample => "accumulate-subsample",
            PolicyName::Mix => "mix",
            PolicyName::Fresh => "fresh",
            PolicyName::Real => "real",
        }
    }
}

impl std::str::FromStr for PolicyName {
    type Err = anyhow::Error;

    fn from_str(name: &str) -> Result<Self> {
        Ok(match name {
            "replace" => PolicyName::Replace,
            "accumulate" => PolicyName::Accumulate,
            "accumulate-subsample" => PolicyName::AccumulateSubsample,
            "mix" => PolicyName::Mix,
            "fresh" => PolicyName::Fresh,
            "real" => PolicyName::Real,
            other => bail!("unknown policy '{other}': expected one of {POLICY_NAMES}"),
        })
    }
}

impl Policy {
    /// A policy from a name given as text (the command line, a sweep grid).
    pub fn parse(name: &str, real_fraction: Option<f64>) -> Result<Self> {
        Self::new(name.parse()?, real_fraction)
    }

    /// The policy `name` with its real share λ, checked: `mix` and `fresh` need λ in
    /// [0, 1], the others refuse one.
    pub fn new(name: PolicyName, real_fraction: Option<f64>) -> Result<Self> {
        if let Some(l) = real_fraction {
            if !(0.0..=1.0).contains(&l) || l.is_nan() {
                bail!("--real-fraction must be in [0, 1], got {l}");
            }
        }
        let needs = |name: &str| match real_fraction {
            Some(l) => Ok(l),
            None => bail!("policy '{name}' needs --real-fraction λ (the share of real data, in [0, 1])"),
        };
        let policy = match name {
            PolicyName::Replace => Policy::Replace,
            PolicyName::Accumulate => Policy::Accumulate,
            PolicyName::AccumulateSubsample => Policy::AccumulateSubsample,
            PolicyName::Mix => Policy::Mix { real_fraction: needs(name.as_str())? },
            PolicyName::Fresh => Policy::Fresh { real_fraction: needs(name.as_str())? },
            PolicyName::Real => Policy::Real,
        };
        if let (Some(l), None) = (real_fraction, policy.real_fraction()) {
            match policy {
                Policy::Real => bail!(
                    "policy 'real' is the real-data control and takes no --real-fraction (got {l}): it trains on D real tokens every generation"
                ),
                _ => bail!("policy '{}' takes no --real-fraction (got {l}); only mix and fresh have a real share λ", name.as_str()),
            }
        }
        Ok(policy)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Policy::Replace => "replace",
            Policy::Accumulate => "accumulate",
            Policy::AccumulateSubsample => "accumulate-subsample",
            Policy::Mix { .. } => "mix",
            Policy::Fresh { .. } => "fresh",
            Policy::Real => "real",
        }
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
    /// Real documents reserved for `fresh`, in the order they will be used.
    pub pool: Vec<Range<usize>>,
    /// The whole real training split (the control `real` draws from it).
    pub split: Corpus,
}

impl RealData {
    /// R and the fresh pool from the real training split: with `subset_tokens > 0`, a
    /// seeded subset of whole documents holding at least that many tokens, and the rest
    /// as the pool; else the whole split, cut by `pool_fraction` (default 0.5) under `fresh`.
    pub fn new(split: Corpus, policy: Policy, subset_tokens: usize, pool_fraction: Option<f64>, seed: u64) -> Result<Self> {
        let total = split.tokens();
        let mut docs = split.documents.clone();
        docs.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let base_target = if subset_tokens > 0 {
            if subset_tokens >= total {
                bail!(
                    "generations.real_subset_tokens ({subset_tokens}) must be smaller than the real training split ({total} tokens); set 0 to use the whole split"
                );
            }
            subset_tokens
        } else if matches!(policy, Policy::Fresh { .. }) {
            let f = pool_fraction.unwrap_or(0.5);
            if !(f > 0.0 && f < 1.0) {
                bail!("generations.fresh_pool_fraction must be in (0, 1), got {f}");
            }
            ((1.0 - f) * total as f64).ceil() as usize
        } else {
            return Ok(Self { base: split.clone(), pool: Vec::new(), split });
        };
        // R takes shuffled documents from the front until it holds base_target tokens;
        // the pool is the rest, in shuffled order.
        let mut taken = 0;
        let mut cut = 0;
        while cut < docs.len() && taken < base_target {
            taken += docs[cut].len();
            cut += 1;
        }
        if cut == docs.len() {
            bail!("the real training split has too few documents to hold R back from a pool of unused real documents");
        }
        let pool = docs.split_off(cut);
        docs.sort_by_key(|d| d.start);
        Ok(Self { base: split.subset(docs), pool, split })
    }
}

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
    let take_into = |sources: Vec<&Corpus>, target: usize, chosen: &mut Vec<(Corpus, Vec<Range<usize>>)>, rng: &mut ChaCha8Rng| {
        let picks = take_tokens(&sources, target, rng);
        for (i, src) in sources.iter().enumerate() {
            let mut docs: Vec<Range<usize>> = picks.iter().filter(|(j, _)| *j == i).map(|(_, d)| d.clone()).collect();
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
                let mut split = real.split.clone();
                split.name = format!("{} (control sample)", real.split.name);
                take_into(vec![&split], r_size, &mut chosen, &mut rng);
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
        });
    }
    if stream.is_empty() {
        bail!("generation {k} would train on no data");
    }
    let manifest = MixtureManifest {
        generation: k,
        policy: policy.name().into(),
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
                     lower --real-fraction or -n, or leave more of the training split to the pool (a smaller generations.real_subset_tokens, or a larger generations.fresh_pool_fraction)"
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

/// Draws the noise-floor sample. Real documents that are not in R are preferred (the
/// fresh pool, else `held_out`, e.g. the validation split), taken without replacement
/// in a seeded order: they are new draws from the population, as a perfect model's
/// samples would be. When they hold fewer than `size` tokens, R's documents are
/// resampled with replacement (a bootstrap), which repeats documents and so
/// understates n-gram diversity; `source` says which was used.
pub fn noise_floor(real: &RealData, held_out: &Corpus, size: usize, seed: u64) -> NoiseFloorSample {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pool_tokens: usize = real.pool.iter().map(|d| d.len()).sum();
    let (file, docs, source): (&Arc<TokenFile>, Vec<Range<usize>>, String) = if pool_tokens >= size {
        let mut docs = real.pool.clone();
        docs.shuffle(&mut rng);
        (&real.base.file, docs, "real training documents outside R".into())
    } else if held_out.tokens() >= size {
        let mut docs = held_out.documents.clone();
        docs.shuffle(&mut rng);
        (&held_out.file, docs, format!("{} documents (never trained on)", held_out.name))
    } else {
        use rand::Rng;
        let n = real.base.documents.len();
        let docs = (0..).map(|_| real.base.documents[rng.gen_range(0..n)].clone());
        let mut taken = 0;
        let docs: Vec<Range<usize>> = docs
            .take_while(|d| {
                let more = taken < size;
                taken += d.len();
                more
            })
            .collect();
        (&real.base.file, docs, "R's documents resampled with replacement (too little unused real text)".into())
    };
    let mut tokens = Vec::with_capacity(size + 1024);
    let mut documents = 0;
    for d in docs {
        if tokens.len() >= size {
            break;
        }
        tokens.extend(d.map(|i| file.get(i)));
        documents += 1;
    }
    NoiseFloorSample { tokens, documents, source }
}
