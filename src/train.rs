//! The trainer: AdamW with decay/no-decay groups, linear warm-up then cosine decay,
//! global gradient-norm clipping, periodic validation, a per-step CSV log, and an
//! atomic checkpoint at the end.
use crate::checkpoint::{self, TrainingState};
use crate::config::{ModelConfig, TrainConfig};
use crate::model::{Model, DECAY_GROUP, NO_DECAY_GROUP};
use crate::stream::TokenStream;
use crate::tokenizer::Vocab;
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

pub struct TrainRequest<'a> {
    pub model: ModelConfig,
    pub train: TrainConfig,
    pub data: &'a TokenStream,
    pub val: Option<&'a TokenStream>,
    pub vocab: &'a Vocab,
    pub device: Device,
    /// Initialise from this checkpoint's weights instead of from scratch.
    pub init_from: Option<PathBuf>,
    /// Checkpoint folder to write.
    pub out: PathBuf,
    pub progress: bool,
}

/// Learning rate at `step` (0-based) of `total`: linear warm-up, then cosine decay to the minimum.
pub fn learning_rate(cfg: &TrainConfig, step: i64, total: i64) -> f64 {
    if step < cfg.warmup_steps {
        return cfg.learning_rate * (step + 1) as f64 / cfg.warmup_steps as f64;
    }
    let decay_steps = (total - cfg.warmup_steps).max(1) as f64;
    let progress = ((step - cfg.warmup_steps) as f64 / decay_steps).min(1.0);
    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
    cfg.min_learning_rate + cosine * (cfg.learning_rate - cfg.min_learning_rate)
}

/// Optimizer steps a run takes over `data_tokens` tokens of training data.
pub fn total_steps(model: &ModelConfig, cfg: &TrainConfig, data_tokens: usize) -> i64 {
    let tokens = match cfg.epochs {
        Some(e) => e * data_tokens as f64,
        None => cfg.max_tokens as f64,
    };
    let per_step = (cfg.batch_size * model.block_size) as f64;
    (tokens / per_step).ceil().max(1.0) as i64
}

/// Next-token cross-entropy of logits (B, T, V) against targets (B, T).
pub fn next_token_loss(logits: &Tensor, targets: &Tensor) -> Tensor {
    let v = logits.size()[2];
    logits.view([-1, v]).cross_entropy_loss::<Tensor>(&targets.view([-1]), None, tch::Reduction::Mean, -100, 0.0)
}

fn batch_tensors(x: Vec<i64>, y: Vec<i64>, batch: i64, block: i64, device: Device) -> (Tensor, Tensor) {
    let x = Tensor::from_slice(&x).view([batch, block]).to_device(device);
    let y = Tensor::from_slice(&y).view([batch, block]).to_device(device);
    (x, y)
}

/// Mean loss over `batches` random validation windows drawn with a fixed seed, so that
/// successive evaluations compare the model on the same text.
pub fn validation_loss(model: &Model, val: &TokenStream, cfg: &TrainConfig, device: Device) -> Result<f64> {
    let block = model.config().block_size;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x5eed_0f_7a1);
    let mut total = 0.0;
    tch::no_grad(|| -> Result<()> {
        for _ in 0..cfg.eval_batches {
            let (x, y) = val.random_batch(cfg.batch_size as usize, block as usize, &mut rng)?;
            let (x, y) = batch_tensors(x, y, cfg.batch_size, block, device);
            total += f64::try_from(next_token_loss(&model.forward(&x, false), &y))?;
        }
        Ok(())
    })?;
    Ok(total / cfg.eval_batches as f64)
}

pub struct TrainOutcome {
    pub state: TrainingState,
}

/// Trains one model and writes its checkpoint.
pub fn train(req: TrainRequest) -> Result<TrainOutcome> {
    let TrainRequest { model: mcfg, train: cfg, data, val, vocab, device, init_from, out, progress } = req;
    mcfg.validate()?;
    cfg.validate()?;
    if mcfg.vocab_size as usize != vocab.vocab_size() {
        bail!("model.vocab_size is {} but the tokenizer has {} tokens", mcfg.vocab_size, vocab.vocab_size());
    }
    let block = mcfg.block_size;
    if data.len() < block as usize + 1 {
        bail!("the training data has {} tokens, fewer than one context window of {}", data.len(), block + 1);
    }
    crate::device::seed_everything(cfg.seed);
    let mut vs = nn::VarStore::new(device);
    let model = Model::new(&vs.root(), &mcfg);
    if let Some(init) = &init_from {
        checkpoint::load_weights(&mut vs, &init.join(crate::layout::CheckpointFiles::WEIGHTS))
            .with_context(|| format!("cannot initialise from {}", init.display()))?;
    }
    let mut opt = nn::AdamW { beta1: cfg.beta1, beta2: cfg.beta2, wd: cfg.weight_decay, eps: 1e-8, amsgrad: false }
        .build(&vs, cfg.learning_rate)?;
    opt.set_weight_decay_group(DECAY_GROUP, cfg.weight_decay);
    opt.set_weight_decay_group(NO_DECAY_GROUP, 0.0);

    let steps = total_steps(&mcfg, &cfg, data.len());
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let log_path = partial_log_path(&out);
    if let Some(dir) = log_path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut log = std::io::BufWriter::new(
        std::fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?,
    );
    writeln!(log, "step,learning_rate,train_loss,val_loss,tokens_per_second")?;

    let bar = progress_bar(steps as u64, progress);
    let trainable = vs.trainable_variables();
    let tokens_per_step = (cfg.batch_size * block) as u64;
    let mut train_seconds = 0.0;
    let mut last_loss = f64::NAN;
    let mut last_val = None;
    for step in 0..steps {
        let t0 = Instant::now();
        let lr = learning_rate(&cfg, step, steps);
        opt.set_lr(lr);
        let (x, y) = data.random_batch(cfg.batch_size as usize, block as usize, &mut rng)?;
        let (x, y) = batch_tensors(x, y, cfg.batch_size, block, device);
        let loss = next_token_loss(&model.forward(&x, true), &y);
        opt.zero_grad();
        loss.backward();
        if cfg.grad_clip > 0.0 {
            clip_grad_norm(&trainable, cfg.grad_clip);
        }
        opt.step();
        last_loss = f64::try_from(&loss)?;
        let dt = t0.elapsed().as_secs_f64();
        train_seconds += dt;
        if !last_loss.is_finite() {
            bar.abandon();
            drop(log);
            let _ = std::fs::remove_file(&log_path);
            bail!(
                "training diverged at step {step}: the loss became {last_loss}; lower train.learning_rate (now {}) or raise train.warmup_steps",
                cfg.learning_rate
            );
        }
        let is_last = step + 1 == steps;
        let val_loss = match val {
            Some(v) if is_last || (cfg.eval_interval > 0 && (step + 1) % cfg.eval_interval == 0) => {
                let l = validation_loss(&model, v, &cfg, device)?;
                last_val = Some(l);
                Some(l)
            }
            _ => None,
        };
        writeln!(
            log,
            "{},{:.6e},{:.6},{},{:.1}",
            step + 1,
            lr,
            last_loss,
            val_loss.map(|v| format!("{v:.6}")).unwrap_or_default(),
            tokens_per_step as f64 / dt
        )?;
        log.flush()?;
        bar.set_message(match last_val {
            Some(v) => format!("loss {last_loss:.3} val {v:.3}"),
            None => format!("loss {last_loss:.3}"),
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    drop(log);
    let tokens = steps as u64 * tokens_per_step;
    let state = TrainingState {
        steps,
        tokens,
        seed: cfg.seed,
        final_train_loss: last_loss,
        final_val_loss: last_val,
        seconds: train_seconds,
        tokens_per_second: tokens as f64 / train_seconds,
        device: crate::device::describe(device),
        init_from: init_from.map(|p| p.display().to_string()),
    };
    checkpoint::save(&out, &vs, &mcfg, vocab, &state, Some(&log_path))?;
    std::fs::remove_file(&log_path).ok();
    Ok(TrainOutcome { state })
}

/// Scales all gradients so their global L2 norm is at most `max` (as torch's
/// `clip_grad_norm_`), without a host round trip.
pub fn clip_grad_norm(params: &[Tensor], max: f64) {
    tch::no_grad(|| {
        let grads: Vec<Tensor> = params.iter().map(|p| p.grad()).filter(|g| g.defined()).collect();
        let norms: Vec<Tensor> = grads.iter().map(|g| g.norm()).collect();
        let total = Tensor::stack(&norms, 0).norm();
        let coef = (total + 1e-6).reciprocal() * max;
        let coef = coef.clamp_max(1.0).to_kind(Kind::Float);
        for g in grads {
            let mut g = g;
            let _ = g.g_mul_(&coef);
        }
    });
}

/// The running log lives next to the checkpoint folder until the checkpoint is complete.
fn partial_log_path(out: &Path) -> PathBuf {
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    out.with_file_name(format!(".{name}.train_log.csv.partial"))
}

pub fn progress_bar(len: u64, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{prefix}{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}")
            .expect("a valid progress template"),
    );
    bar
}
