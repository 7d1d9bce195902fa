//! Held-out loss: the mean next-token loss of a model over a token file, read in the
//! windows training reads (`crate::stream`): aligned to documents, each document's
//! first window starting from the start token at position 0, later ones every context
//! length on. Every token is predicted exactly once (a document's first from the start
//! token alone), so the figure depends neither on the batch size nor on how documents
//! happen to fall against a fixed tiling, and a document in the test split is read the
//! way the sampler writes one.
use crate::analysis::manifold::Embeddings;
use crate::model::Model;
use crate::stream::{TokenStream, IGNORE};
use crate::tokenizer::Delimiters;
use crate::tokens::TokenFile;
use anyhow::{bail, Result};
use serde::Serialize;
use std::sync::Arc;
use tch::{Device, Tensor};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EvalResult {
    pub mean_loss: f64,
    pub perplexity: f64,
    pub tokens: usize,
}

/// Windows per forward pass; only affects speed.
const EVAL_BATCH: usize = 32;

pub fn evaluate(model: &Model, tokens: &Arc<TokenFile>, delimiters: Delimiters, device: Device) -> Result<EvalResult> {
    Ok(evaluate_grouped(model, tokens, delimiters, device, None)?.0)
}

/// Loss summed over the targets of each group: `group_of[t]` is the group of target
/// token t; returns (loss sum, targets) per group.
pub struct Groups<'a> {
    pub group_of: &'a [i64],
    pub groups: usize,
}

/// [`evaluate`], and with `groups` also the summed loss and target count of every
/// group of target tokens (e.g. buckets of real-data frequency).
pub fn evaluate_grouped(
    model: &Model,
    tokens: &Arc<TokenFile>,
    delimiters: Delimiters,
    device: Device,
    groups: Option<Groups>,
) -> Result<(EvalResult, Vec<(f64, u64)>)> {
    let cfg = model.config();
    let n = tokens.len();
    if n < 1 {
        bail!("{} holds no tokens; at least 1 is needed to measure a next-token loss", tokens.path().display());
    }
    if let Some(bad) = tokens.iter().find(|&t| t as i64 >= cfg.vocab_size) {
        bail!(
            "{} holds token id {bad}, outside the model's vocabulary of {}: it was tokenized with another tokenizer",
            tokens.path().display(),
            cfg.vocab_size
        );
    }
    if let Some(g) = &groups {
        if g.group_of.len() as i64 != cfg.vocab_size || g.group_of.iter().any(|&x| x < 0 || x as usize >= g.groups) {
            bail!(
                "the token groups must give every one of the {} vocabulary entries a group below {}",
                cfg.vocab_size,
                g.groups
            );
        }
    }
    let stream = TokenStream::from_file(tokens.clone(), delimiters);
    let group_map = groups.as_ref().map(|g| Tensor::from_slice(g.group_of).to_device(device));
    let n_groups = groups.as_ref().map_or(0, |g| g.groups as i64);
    let mut group_sums = Tensor::zeros([n_groups], (tch::Kind::Double, device));
    let mut group_counts = Tensor::zeros([n_groups], (tch::Kind::Double, device));
    let block = cfg.block_size as usize;
    let windows: Vec<usize> = (0..stream.window_count(block)).collect();
    let mut loss_sum = 0.0f64;
    tch::no_grad(|| -> Result<()> {
        for chunk in windows.chunks(EVAL_BATCH) {
            let (x, y) = stream.windows(chunk, block);
            let (losses, targets) = window_losses(model, x, y, chunk.len(), block, device);
            if let Some(map) = &group_map {
                let g = map.index_select(0, &targets);
                let _ = group_sums.index_add_(0, &g, &losses);
                let _ = group_counts.index_add_(0, &g, &losses.ones_like());
            }
            loss_sum += f64::try_from(losses.sum(tch::Kind::Double))?;
        }
        Ok(())
    })?;
    let mean_loss = loss_sum / n as f64;
    let sums = Vec::<f64>::try_from(group_sums.to_device(Device::Cpu))?;
    let counts = Vec::<f64>::try_from(group_counts.to_device(Device::Cpu))?;
    let per_group = sums.into_iter().zip(counts).map(|(s, c)| (s, c as u64)).collect();
    Ok((EvalResult { mean_loss, perplexity: mean_loss.exp(), tokens: n }, per_group))
}

/// One document's score: its summed next-token loss (nats) and its targets (its tokens,
/// the end token included when it has one).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DocumentScore {
    pub nll: f64,
    pub targets: u64,
}

impl DocumentScore {
    /// Mean next-token loss per target.
    pub fn mean(&self) -> f64 {
        self.nll / self.targets.max(1) as f64
    }
}

/// The loss of every document of `stream` under `model`, in the windows [`evaluate`]
/// reads (so the documents' sums add up to its total exactly, up to rounding).
pub fn per_document(model: &Model, stream: &TokenStream, device: Device) -> Result<Vec<DocumentScore>> {
    Ok(score_documents(model, stream, device, false)?.0)
}

/// [`per_document`] and every window's embedding ([`score_documents`] with `embed`).
pub fn score_and_embed(
    model: &Model,
    stream: &TokenStream,
    device: Device,
) -> Result<(Vec<DocumentScore>, Embeddings)> {
    let (scores, embeddings) = score_documents(model, stream, device, true)?;
    Ok((scores, embeddings.expect("score_documents embeds when asked to")))
}

/// [`per_document`] and, with `embed`, the embedding of every full window (one with
/// all `block_size` targets) from the same forward pass, in window order: the mean over
/// its positions of the last hidden state after the final norm
/// ([`Model::forward_with_hidden`]). A full window is a passage of
/// `crate::analysis::manifold`; a document's shorter last window (and a document
/// shorter than the context) is scored but not embedded, so passages compare at one
/// length.
pub fn score_documents(
    model: &Model,
    stream: &TokenStream,
    device: Device,
    embed: bool,
) -> Result<(Vec<DocumentScore>, Option<Embeddings>)> {
    let cfg = model.config();
    let block = cfg.block_size as usize;
    let mut scores = vec![DocumentScore { nll: 0.0, targets: 0 }; stream.documents()];
    let mut embeddings = embed.then(|| Embeddings::new(cfg.n_embd as usize));
    let windows: Vec<usize> = (0..stream.window_count(block)).collect();
    tch::no_grad(|| -> Result<()> {
        for chunk in windows.chunks(EVAL_BATCH) {
            let (x, y) = stream.windows(chunk, block);
            let (losses, _, hidden) = scored_windows(model, x, y, chunk.len(), block, device, embed);
            let losses = Vec::<f64>::try_from(losses.to_device(Device::Cpu))?;
            if let (Some(e), Some(h)) = (embeddings.as_mut(), hidden) {
                let h = Vec::<f32>::try_from(h.to_device(Device::Cpu).reshape([-1]))?;
                for (row, &w) in h.chunks_exact(e.dim).zip(chunk) {
                    if stream.window_targets(w, block) == block {
                        e.push(row);
                    }
                }
            }
            let mut at = 0;
            for &w in chunk {
                let n = stream.window_targets(w, block);
                let d = &mut scores[stream.window_document(w, block)];
                d.nll += losses[at..at + n].iter().sum::<f64>();
                d.targets += n as u64;
                at += n;
            }
        }
        Ok(())
    })?;
    Ok((scores, embeddings))
}

/// Per-target losses (f64) and targets of `rows` windows of `len` positions (inputs
/// `x`, targets `y`, row-major), padded positions ([`IGNORE`]) left out.
fn window_losses(model: &Model, x: Vec<i64>, y: Vec<i64>, rows: usize, len: usize, device: Device) -> (Tensor, Tensor) {
    let (loss, y, _) = scored_windows(model, x, y, rows, len, device, false);
    (loss, y)
}

/// [`window_losses`], and with `embed` each window's mean final hidden state over its
/// positions with a target (rows, C), float32.
fn scored_windows(
    model: &Model,
    x: Vec<i64>,
    y: Vec<i64>,
    rows: usize,
    len: usize,
    device: Device,
    embed: bool,
) -> (Tensor, Tensor, Option<Tensor>) {
    let real: Vec<i64> = (0..y.len() as i64).filter(|&i| y[i as usize] != IGNORE).collect();
    let x = Tensor::from_slice(&x).view([rows as i64, len as i64]).to_device(device);
    let keep = Tensor::from_slice(&real).to_device(device);
    let y_all = Tensor::from_slice(&y).to_device(device);
    let (logits, hidden) = if embed {
        let (logits, h) = model.forward_with_hidden(&x);
        let mask = y_all.ne(IGNORE).to_kind(tch::Kind::Float).view([rows as i64, len as i64, 1]);
        let h = h.to_kind(tch::Kind::Float);
        let sums = (h * &mask).sum_dim_intlist(1, false, tch::Kind::Float);
        (logits, Some(sums / mask.sum_dim_intlist(1, false, tch::Kind::Float).clamp_min(1.0)))
    } else {
        (model.forward(&x, false), None)
    };
    let y = y_all.index_select(0, &keep);
    let v = logits.size()[2];
    let logits = logits.view([-1, v]).index_select(0, &keep);
    let loss = logits.cross_entropy_loss::<Tensor>(&y, None, tch::Reduction::None, IGNORE, 0.0);
    (loss.to_kind(tch::Kind::Double), y, hidden)
}

/// Buckets of real-data frequency for the held-out loss by frequency: bucket 0 holds
/// the tokens never seen in the real training set R; buckets 1..=8 split the counts
/// 1..=max log-evenly: bucket i holds counts in [⌊M^((i-1)/8)⌋, ⌊M^(i/8)⌋) with
/// M = max + 1 (a range can be empty when the counts are small).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FrequencyBuckets {
    /// Inclusive (min, max) real count of every bucket.
    pub bounds: Vec<(u64, u64)>,
    /// Bucket of every vocabulary token.
    pub bucket_of: Vec<i64>,
}

/// Log-spaced frequency buckets after the unseen bucket.
pub const FREQUENCY_BUCKETS: usize = 8;

impl FrequencyBuckets {
    pub fn new(real_counts: &[u64]) -> Self {
        let m = real_counts.iter().copied().max().unwrap_or(0) as f64 + 1.0;
        let edge = |i: usize| if i == 0 { 1 } else { m.powf(i as f64 / FREQUENCY_BUCKETS as f64).floor() as u64 };
        let mut bounds = vec![(0, 0)];
        for i in 0..FREQUENCY_BUCKETS {
            let (lo, hi) = (edge(i), if i + 1 == FREQUENCY_BUCKETS { m as u64 } else { edge(i + 1) });
            bounds.push((lo, hi.saturating_sub(1).max(lo.saturating_sub(1))));
        }
        let bucket_of = real_counts
            .iter()
            .map(|&c| {
                if c == 0 {
                    0
                } else {
                    (1..bounds.len()).find(|&b| c >= bounds[b].0 && c <= bounds[b].1).unwrap_or(bounds.len() - 1) as i64
                }
            })
            .collect();
        Self { bounds, bucket_of }
    }

    pub fn len(&self) -> usize {
        self.bounds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bounds.is_empty()
    }
}

/// Held-out loss over the targets of one frequency bucket.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BucketLoss {
    pub bucket: usize,
    pub min_real_count: u64,
    pub max_real_count: u64,
    /// Test-split targets whose token falls in the bucket.
    pub target_tokens: u64,
    /// Their mean next-token loss in nats (NaN without targets; `null` in JSON).
    #[serde(deserialize_with = "null_as_nan")]
    pub mean_loss: f64,
}

/// JSON has no NaN: serde_json writes it as `null`, which reads back as NaN here.
fn null_as_nan<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(<Option<f64> as serde::Deserialize>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// [`evaluate`] plus the loss of each frequency bucket.
pub fn evaluate_by_frequency(
    model: &Model,
    tokens: &Arc<TokenFile>,
    delimiters: Delimiters,
    device: Device,
    buckets: &FrequencyBuckets,
) -> Result<(EvalResult, Vec<BucketLoss>)> {
    let groups = Groups { group_of: &buckets.bucket_of, groups: buckets.len() };
    let (result, sums) = evaluate_grouped(model, tokens, delimiters, device, Some(groups))?;
    let per_bucket = sums
        .into_iter()
        .enumerate()
        .map(|(b, (sum, n))| BucketLoss {
            bucket: b,
            min_real_count: buckets.bounds[b].0,
            max_real_count: buckets.bounds[b].1,
            target_tokens: n,
            mean_loss: if n > 0 { sum / n as f64 } else { f64::NAN },
        })
        .collect();
    Ok((result, per_bucket))
}
