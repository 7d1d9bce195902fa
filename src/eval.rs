//! Held-out loss: the mean next-token loss of a model over a token file, read in
//! non-overlapping windows of the model's context length. Every token but the first is
//! predicted exactly once (the last window may be shorter), so the figure does not
//! depend on the batch size.
use crate::model::Model;
use crate::tokens::TokenFile;
use anyhow::{bail, Result};
use serde::Serialize;
use tch::{Device, Tensor};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EvalResult {
    pub mean_loss: f64,
    pub perplexity: f64,
    pub tokens: usize,
}

/// Windows per forward pass; only affects speed.
const EVAL_BATCH: usize = 32;

pub fn evaluate(model: &Model, tokens: &TokenFile, device: Device) -> Result<EvalResult> {
    let cfg = model.config();
    let n = tokens.len();
    if n < 2 {
        bail!("{} has {n} token(s); at least 2 are needed to measure a next-token loss", tokens.path().display());
    }
    if let Some(bad) = tokens.iter().find(|&t| t as i64 >= cfg.vocab_size) {
        bail!(
            "{} holds token id {bad}, outside the model's vocabulary of {}: it was tokenized with another tokenizer",
            tokens.path().display(),
            cfg.vocab_size
        );
    }
    let block = cfg.block_size as usize;
    let predicted = n - 1;
    let full_windows = predicted / block;
    let mut loss_sum = 0.0f64;
    let mut buf = Vec::new();
    tch::no_grad(|| -> Result<()> {
        let mut w = 0;
        while w < full_windows {
            let rows = EVAL_BATCH.min(full_windows - w);
            buf.clear();
            tokens.extend_i64(w * block..(w + rows) * block + 1, &mut buf);
            loss_sum += window_loss_sum(model, &buf, rows, block, device)?;
            w += rows;
        }
        let rest = predicted - full_windows * block;
        if rest > 0 {
            buf.clear();
            tokens.extend_i64(full_windows * block..n, &mut buf);
            loss_sum += window_loss_sum(model, &buf, 1, rest, device)?;
        }
        Ok(())
    })?;
    let mean_loss = loss_sum / predicted as f64;
    Ok(EvalResult { mean_loss, perplexity: mean_loss.exp(), tokens: predicted })
}

/// Sum of losses over `rows` consecutive windows of `len` predictions taken from
/// `toks` (which holds `rows * len + 1` tokens).
fn window_loss_sum(model: &Model, toks: &[i64], rows: usize, len: usize, device: Device) -> Result<f64> {
    let all = Tensor::from_slice(toks);
    let (rows, len) = (rows as i64, len as i64);
    let x = all.narrow(0, 0, rows * len).view([rows, len]).to_device(device);
    let y = all.narrow(0, 1, rows * len).view([rows, len]).to_device(device);
    let logits = model.forward(&x, false);
    let v = logits.size()[2];
    let loss = logits.view([-1, v]).cross_entropy_loss::<Tensor>(&y.view([-1]), None, tch::Reduction::Sum, -100, 0.0);
    Ok(f64::try_from(loss.to_kind(tch::Kind::Double))?)
}
