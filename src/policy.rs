//! The data manager: which documents each generation trains on.
//!
//! Let R be the real training split and S_k the corpus sampled by generation k-1.
//! Generation 0 trains on R. For k ≥ 1:
//!
//! | policy | trains on |
//! |---|---|
//! | `replace` | S_k |
//! | `accumulate` | R ∪ S_1 ∪ … ∪ S_k |
//! | `accumulate-subsample` | a uniform sample of |R| tokens of documents from R ∪ S_1 ∪ … ∪ S_k |
//! | `mix` | λ·|R| tokens of documents from R and (1-λ)·|R| from S_k |
//! | `fresh` | λ·|R| tokens of real documents never used before, and (1-λ)·|R| from S_k |
//!
//! Units are whole documents: a sample "of n tokens" takes shuffled documents until
//! their total reaches n. |R| above is the generation size D: the size of each
//! synthetic corpus, which defaults to |R| (`generations.synthetic_tokens = 0`); a
//! config that samples smaller corpora to save time keeps the policies' proportions. Under `fresh`, R is cut in two by document: generation 0's
//! data (|R| in the table above means its size) and a pool of
//! `generations.fresh_pool_fraction` of the real training split that only later
//! generations draw from, each document once.
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
}

pub const POLICY_NAMES: &str = "replace, accumulate, accumulate-subsample, mix, fresh";

impl Policy {
    pub fn parse(name: &str, real_fraction: Option<f64>) -> Result<Self> {
        if let Some(l) = real_fraction {
            if !(0.0..=1.0).contains(&l) || l.is_nan() {
                bail!("--real-fraction must be in [0, 1], got {l}");
            }
        }
        let needs = |name: &str| match real_fraction {
            Some(l) => Ok(l),
            None => bail!("policy '{name}' needs --real-fraction λ (the share of real data, in [0, 1])"),
        };
        Ok(match name {
            "replace" => Policy::Replace,
            "accumulate" => Policy::Accumulate,
            "accumulate-subsample" => Policy::AccumulateSubsample,
            "mix" => Policy::Mix { real_fraction: needs(name)? },
            "fresh" => Policy::Fresh { real_fraction: needs(name)? },
            other => bail!("unknown policy '{other}': expected one of {POLICY_NAMES}"),
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Policy::Replace => "replace",
            Policy::Accumulate => "accumulate",
            Policy::AccumulateSubsample => "accumulate-subsample",
            Policy::Mix { .. } => "mix",
            Policy::Fresh { .. } => "fresh",
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
}

/// The real data split the way a policy needs it.
pub struct RealData {
    /// What generation 0 trains on, and what |R| measures.
    pub base: Corpus,
    /// Real documents reserved for `fresh`, in the order they will be used.
    pub pool: Vec<Range<usize>>,
}

impl RealData {
    /// `pool_fraction` of R's documents (by shuffled order) become the fresh pool under `fresh`.
    pub fn new(real: Corpus, policy: Policy, pool_fraction: f64, seed: u64) -> Result<Self> {
        if !matches!(policy, Policy::Fresh { .. }) {
            return Ok(Self { base: real, pool: Vec::new() });
        }
        if !(pool_fraction > 0.0 && pool_fraction < 1.0) {
            bail!("generations.fresh_pool_fraction must be in (0, 1), got {pool_fraction}");
        }
        let mut docs = real.documents.clone();
        docs.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let total: usize = docs.iter().map(|d| d.len()).sum();
        let mut pool = Vec::new();
        let mut pooled = 0;
        while (pooled as f64) < pool_fraction * total as f64 && docs.len() > 1 {
            let d = docs.pop().unwrap();
            pooled += d.len();
            pool.push(d);
        }
        docs.sort_by_key(|d| d.start);
        Ok(Self { base: real.subset(docs), pool })
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
        }
    }
    let mut stream = TokenStream::new();
    let mut parts = Vec::new();
    let (mut real_tokens, mut synthetic_tokens) = (0, 0);
    for (corpus, docs) in &chosen {
        if docs.is_empty() {
            continue;
        }
        let f = stream.add_file(corpus.file.clone());
        let tokens: usize = docs.iter().map(|d| d.len()).sum();
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
                     lower --real-fraction or -n, or raise generations.fresh_pool_fraction"
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
