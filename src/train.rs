//! The trainer: AdamW with decay/no-decay groups (`crate::optim`), linear warm-up then
//! cosine decay, global gradient-norm clipping, periodic validation, a per-step CSV
//! log, mid-training snapshots it resumes from (`crate::snapshot`), and an atomic
//! checkpoint at the end.
//!
//! The data is read in windows aligned to its documents (see `crate::stream`). An
//! epoch is one pass visiting every window once, in a fresh seeded order; a run makes
//! `train.epochs` passes (`budget = "epochs"`) or visits `⌈max_tokens / block⌉`
//! windows in the same pass order (`budget = "tokens"`). Validation uses the same
//! evenly spaced validation windows at every evaluation and in every run, so
//! validation losses of different generations compare the same text.
use crate::checkpoint::{self, TrainingState};
use crate::choice::Choice;
use crate::config::{Budget, ModelConfig, TrainConfig};
use crate::layout::{CheckpointPaths, SnapshotPaths};
use crate::model::Model;
use crate::optim::AdamW;
use crate::snapshot::{self, SnapshotState};
use crate::stream::{EpochSchedule, TokenStream};
use crate::tokenizer::Vocab;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{nn, Device, Tensor};

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

/// The window schedule of a run over `data` (see the module documentation).
pub fn schedule(model: &ModelConfig, cfg: &TrainConfig, data: &TokenStream) -> Result<EpochSchedule> {
    let block = model.block_size as usize;
    let windows = data.window_count(block);
    if windows == 0 {
        bail!("the training data holds no tokens");
    }
    let batch = cfg.batch_size as usize;
    let visits = match cfg.budget {
        Budget::Epochs => ((cfg.epochs_or_default() * windows as f64).round() as usize).max(1),
        // Windows in pass order until their targets reach the budget (a document's last
        // window holds fewer than `block`).
        Budget::Tokens => {
            let budget = cfg.max_tokens.unwrap_or(0).max(1) as usize;
            let mut targets = 0;
            let order = EpochSchedule::new(windows, batch, usize::MAX, cfg.seed)?;
            order
                .batches()
                .flatten()
                .take_while(|&w| {
                    let more = targets < budget;
                    targets += data.window_targets(w, block);
                    more
                })
                .count()
        }
    };
    EpochSchedule::new(windows, batch, visits, cfg.seed)
}

/// Optimizer steps a run takes over `data`.
pub fn total_steps(model: &ModelConfig, cfg: &TrainConfig, data: &TokenStream) -> Result<i64> {
    Ok(schedule(model, cfg, data)?.steps() as i64)
}

/// Next-token cross-entropy of logits (B, T, V) against targets (B, T).
pub fn next_token_loss(logits: &Tensor, targets: &Tensor) -> Tensor {
    let v = logits.size()[2];
    logits.view([-1, v]).cross_entropy_loss::<Tensor>(&targets.view([-1]), None, tch::Reduction::Mean, -100, 0.0)
}

/// [`next_token_loss`] truncated at `gamma` (`train.truncated_ce_gamma`): targets
/// whose predicted probability exceeds γ contribute no loss, and the sum over the
/// others is divided by every target. Returns the loss and the share of targets cut.
/// Without γ, or with γ ≥ 1, it is [`next_token_loss`] itself (share 0).
pub fn truncated_next_token_loss(logits: &Tensor, targets: &Tensor, gamma: Option<f64>) -> (Tensor, Option<Tensor>) {
    let Some(gamma) = gamma.filter(|g| *g < 1.0) else { return (next_token_loss(logits, targets), None) };
    let v = logits.size()[2];
    let targets = targets.view([-1]);
    let per_target = logits.view([-1, v]).cross_entropy_loss::<Tensor>(&targets, None, tch::Reduction::None, -100, 0.0);
    let real = targets.ne(-100);
    let confident = per_target.detach().neg().exp().gt(gamma).logical_and(&real);
    let kept = real.logical_and(&confident.logical_not());
    let count = real.sum(tch::Kind::Float).clamp_min(1.0);
    let loss = (per_target * kept.to_kind(tch::Kind::Float)).sum(tch::Kind::Float) / &count;
    (loss, Some(confident.sum(tch::Kind::Float) / count))
}

fn batch_tensors(x: Vec<i64>, y: Vec<i64>, batch: i64, block: i64, device: Device) -> (Tensor, Tensor) {
    let x = Tensor::from_slice(&x).view([batch, block]).to_device(device);
    let y = Tensor::from_slice(&y).view([batch, block]).to_device(device);
    (x, y)
}

/// The validation windows: `eval_batches × batch_size` windows spread evenly over the
/// validation data (all of them when it has fewer). They depend on the data, the
/// context and those two settings only, never on a seed, so every evaluation of every
/// generation measures the same text.
pub fn validation_windows(val: &TokenStream, cfg: &TrainConfig, block: usize) -> Vec<usize> {
    let available = val.window_count(block);
    let wanted = (cfg.eval_batches * cfg.batch_size) as usize;
    if available <= wanted {
        return (0..available).collect();
    }
    (0..wanted).map(|j| j * available / wanted).collect()
}

/// Mean next-token loss over the targets of the validation windows (see [`validation_windows`]).
pub fn validation_loss(model: &Model, val: &TokenStream, cfg: &TrainConfig, device: Device) -> Result<f64> {
    let block = model.config().block_size as usize;
    let windows = validation_windows(val, cfg, block);
    if windows.is_empty() {
        bail!("the validation data holds no tokens");
    }
    let (mut total, mut targets) = (0.0, 0usize);
    tch::no_grad(|| -> Result<()> {
        for chunk in windows.chunks(cfg.batch_size as usize) {
            let (x, y) = val.windows(chunk, block);
            let n = y.iter().filter(|&&t| t != crate::stream::IGNORE).count();
            let (x, y) = batch_tensors(x, y, chunk.len() as i64, block as i64, device);
            let mean = f64::try_from(next_token_loss(&model.forward(&x, false), &y))?;
            total += mean * n as f64;
            targets += n;
        }
        Ok(())
    })?;
    Ok(total / targets as f64)
}

pub struct TrainOutcome {
    pub state: TrainingState,
}

/// What a mid-training snapshot must match to be resumed: the model and training
/// settings, the initial weights and every token of the training data (SHA-256 of
/// their description; the data enters as an FNV-1a hash of its tokens).
pub fn fingerprint(model: &ModelConfig, cfg: &TrainConfig, data: &TokenStream, init_from: Option<&Path>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = crate::mix::Fnv1a::new();
    data.hash_into(&mut h);
    let delimiters = data.delimiters();
    let description = serde_json::json!({
        "model": model,
        "train": cfg,
        "data_tokens": data.len(),
        "data_documents": data.documents(),
        "data_fnv1a": h.hex(),
        "document_start": delimiters.start,
        "document_end": delimiters.end,
        "init_from": init_from.map(|p| p.display().to_string()),
    });
    format!("{:x}", Sha256::digest(description.to_string().as_bytes()))
}

/// Seed of libtorch's generator from step `step` on (see `crate::snapshot`).
fn step_seed(seed: u64, step: i64) -> u64 {
    crate::mix::splitmix64(seed ^ (step as u64).wrapping_mul(crate::mix::GOLDEN_GAMMA))
}

/// Where a training run starts: step 0, or the newest snapshot of the same settings
/// and data (whose weights and optimizer state are then loaded).
struct Start {
    step: i64,
    train_seconds: f64,
    last_loss: f64,
    last_val: Option<f64>,
}

/// Resumes from the newest snapshot of `out` that matches `fingerprint` (discarding one
/// that does not), or starts at step 0; either way leaves the running log at `log_path`.
#[allow(clippy::too_many_arguments)]
/// The mean of the train log's `truncated_share` column: read from the log, which a
/// resumed run restores whole, so a kill does not change it.
fn mean_truncated_share(log_path: &Path) -> Result<f64> {
    let text = std::fs::read_to_string(log_path).with_context(|| format!("cannot read {}", log_path.display()))?;
    let shares: Vec<f64> = text.lines().skip(1).filter_map(|l| l.split(',').nth(5)?.parse().ok()).collect();
    Ok(shares.iter().sum::<f64>() / shares.len().max(1) as f64)
}

/// The train log's header: a sixth column with truncated cross-entropy.
fn log_header(cfg: &TrainConfig) -> &'static str {
    match cfg.truncated_ce_gamma.filter(|g| *g < 1.0) {
        Some(_) => "step,learning_rate,train_loss,val_loss,tokens_per_second,truncated_share\n",
        None => "step,learning_rate,train_loss,val_loss,tokens_per_second\n",
    }
}

#[allow(clippy::too_many_arguments)]
fn start_or_resume(
    out: &Path,
    fingerprint: &str,
    steps: i64,
    vs: &mut nn::VarStore,
    opt: &mut AdamW,
    log_path: &Path,
    here: &str,
    log_header: &str,
) -> Result<Start> {
    if let Some(dir) = log_path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let resumed = match snapshot::latest(out)? {
        Some(s) if s.state.fingerprint == fingerprint && s.state.step < steps => Some(s),
        Some(s) => {
            eprintln!(
                "warning: discarding the training snapshot {} (step {}): it belongs to other settings or data",
                s.dir.display(),
                s.state.step
            );
            snapshot::remove(out)?;
            None
        }
        None => None,
    };
    let Some(s) = resumed else {
        std::fs::write(log_path, log_header).with_context(|| format!("cannot create {}", log_path.display()))?;
        return Ok(Start { step: 0, train_seconds: 0.0, last_loss: f64::NAN, last_val: None });
    };
    checkpoint::load_weights(vs, &SnapshotPaths::new(&s.dir).weights())
        .with_context(|| format!("cannot resume from {}", s.dir.display()))?;
    opt.load_state(&s.optimizer, &s.state.optimizer_steps)
        .with_context(|| format!("cannot resume from {}", s.dir.display()))?;
    std::fs::write(log_path, &s.log).with_context(|| format!("cannot write {}", log_path.display()))?;
    eprintln!("resuming the training of {} at step {} of {steps}", out.display(), s.state.step);
    if s.state.device != here {
        eprintln!(
            "warning: the snapshot was taken on {} and training continues on {here}, so the final weights may \
             differ from an uninterrupted run in the last digits",
            s.state.device
        );
    }
    Ok(Start {
        step: s.state.step,
        train_seconds: s.state.train_seconds,
        last_loss: s.state.last_train_loss,
        last_val: s.state.last_val_loss,
    })
}

/// Mid-training snapshots every `interval` steps, and what they cost.
struct Snapshots<'a> {
    out: &'a Path,
    interval: i64,
    fingerprint: String,
    device: String,
    seconds: f64,
    written: u64,
}

impl Snapshots<'_> {
    /// Writes the snapshot after step `done` when one is due (never after the last step,
    /// which writes the checkpoint instead).
    #[allow(clippy::too_many_arguments)]
    fn after_step(
        &mut self,
        done: i64,
        is_last: bool,
        vs: &nn::VarStore,
        opt: &AdamW,
        train_seconds: f64,
        last_loss: f64,
        last_val: Option<f64>,
        log_path: &Path,
    ) -> Result<()> {
        if self.interval == 0 || done % self.interval != 0 || is_last {
            return Ok(());
        }
        let state = SnapshotState {
            step: done,
            fingerprint: self.fingerprint.clone(),
            device: self.device.clone(),
            optimizer_steps: opt.state().1,
            train_seconds,
            last_train_loss: last_loss,
            last_val_loss: last_val,
        };
        let t = Instant::now();
        snapshot::write(self.out, vs, opt, &state, log_path)
            .with_context(|| format!("writing the snapshot at step {done}"))?;
        self.seconds += t.elapsed().as_secs_f64();
        self.written += 1;
        Ok(())
    }
}

/// Checks a training request's settings before anything is built: the model and
/// training settings, the vocabulary against the model's, and the precision on this
/// device; returns the precision's compute kind (`None`: fp32).
fn check_request(mcfg: &ModelConfig, cfg: &TrainConfig, vocab: &Vocab, device: Device) -> Result<Option<tch::Kind>> {
    mcfg.validate()?;
    cfg.validate()?;
    if mcfg.vocab_size as usize != vocab.vocab_size() {
        bail!("model.vocab_size is {} but the tokenizer has {} tokens", mcfg.vocab_size, vocab.vocab_size());
    }
    let compute = cfg.precision.compute_kind();
    if let Some(kind) = compute {
        if let Err(why) = crate::model::precision::check(kind, device) {
            bail!(
                "train.precision = \"{}\" is not supported on {} ({why}); use \"fp32\"",
                cfg.precision.name(),
                crate::device::describe(device)
            );
        }
    }
    Ok(compute)
}

/// One line of the training log: step, learning rate, loss, validation loss (when
/// measured), tokens per second and, under truncated cross-entropy, the share cut.
fn log_step(
    log: &mut impl Write,
    done: i64,
    lr: f64,
    loss: f64,
    val_loss: Option<f64>,
    tokens_per_second: f64,
    cut: Option<f64>,
) -> Result<()> {
    write!(
        log,
        "{},{:.6e},{:.6},{},{:.1}",
        done,
        lr,
        loss,
        val_loss.map(|v| format!("{v:.6}")).unwrap_or_default(),
        tokens_per_second
    )?;
    match cut {
        Some(c) => writeln!(log, ",{c:.6}")?,
        None => writeln!(log)?,
    }
    log.flush()?;
    Ok(())
}

/// Trains one model and writes its checkpoint. Every `train.checkpoint_interval` steps
/// it writes a snapshot, and it continues from the newest snapshot of `out` that
/// belongs to the same settings and data (see `crate::snapshot`).
pub fn train(req: TrainRequest) -> Result<TrainOutcome> {
    let TrainRequest { model: mcfg, train: cfg, data, val, vocab, device, init_from, out, progress } = req;
    // Setup: the settings checked, the model built (or started from `init_from`), the
    // optimiser, the batch plan, and the step to start from (0, or a snapshot's).
    let compute = check_request(&mcfg, &cfg, vocab, device)?;
    let block = mcfg.block_size;
    crate::device::seed_everything(cfg.seed);
    let mut vs = nn::VarStore::new(device);
    let model = Model::new(&vs.root(), &mcfg);
    if let Some(init) = &init_from {
        checkpoint::load_weights(&mut vs, &checkpoint::checked_weights(init)?)
            .with_context(|| format!("cannot initialise from {}", init.display()))?;
    }
    let mut opt = AdamW::new(&vs, &cfg);

    let plan = schedule(&mcfg, &cfg, data)?;
    let steps = plan.steps() as i64;
    let fingerprint = fingerprint(&mcfg, &cfg, data, init_from.as_deref());
    let here = crate::device::describe(device);
    let log_path = CheckpointPaths::new(&out).partial_train_log();
    let Start { step: start, mut train_seconds, mut last_loss, mut last_val } =
        start_or_resume(&out, &fingerprint, steps, &mut vs, &mut opt, &log_path, &here, log_header(&cfg))?;
    let mut log = std::io::BufWriter::new(
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?,
    );
    let mut snapshots = Snapshots {
        out: &out,
        interval: cfg.checkpoint_interval,
        fingerprint,
        device: here.clone(),
        seconds: 0.0,
        written: 0,
    };

    // The steps: forward, backward, update; then the log line, a validation loss every
    // eval_interval steps and a snapshot every checkpoint_interval.
    let bar = crate::progress::work(steps as u64, progress);
    bar.set_position(start as u64);
    for (step, windows) in (0..steps).zip(plan.batches()).skip(start as usize) {
        if step == 0 || (snapshots.interval > 0 && step % snapshots.interval == 0) {
            crate::device::seed_everything(step_seed(cfg.seed, step));
        }
        let t0 = Instant::now();
        let lr = learning_rate(&cfg, step, steps);
        opt.set_lr(lr);
        let rows = windows.len() as i64;
        let (x, y) = data.windows(&windows, block as usize);
        let tokens_per_step = y.iter().filter(|&&t| t != crate::stream::IGNORE).count();
        let (x, y) = batch_tensors(x, y, rows, block, device);
        let (loss, cut) = crate::model::precision::autocast(compute, || {
            truncated_next_token_loss(&model.forward(&x, true), &y, cfg.truncated_ce_gamma)
        });
        opt.zero_grad();
        loss.backward();
        opt.step(cfg.grad_clip);
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
        let done = step + 1;
        let is_last = done == steps;
        let val_loss = match val {
            Some(v) if is_last || (cfg.eval_interval > 0 && done % cfg.eval_interval == 0) => {
                let l = validation_loss(&model, v, &cfg, device)?;
                last_val = Some(l);
                Some(l)
            }
            _ => None,
        };
        let cut = cut.map(f64::try_from).transpose()?;
        log_step(&mut log, done, lr, last_loss, val_loss, tokens_per_step as f64 / dt, cut)?;
        snapshots.after_step(done, is_last, &vs, &opt, train_seconds, last_loss, last_val, &log_path)?;
        bar.set_message(match last_val {
            Some(v) => format!("loss {last_loss:.3} val {v:.3}"),
            None => format!("loss {last_loss:.3}"),
        });
        bar.inc(1);
    }
    // The checkpoint: the training state, the weights and the log, then the snapshots
    // are removed.
    bar.finish_and_clear();
    drop(log);
    // Targets trained on: padding after a document's end does not count.
    let tokens: u64 = plan.batches().flatten().map(|w| data.window_targets(w, block as usize) as u64).sum();
    let state = TrainingState {
        steps,
        tokens,
        epochs: plan.passes(),
        seed: cfg.seed,
        final_train_loss: last_loss,
        final_val_loss: last_val,
        seconds: train_seconds,
        tokens_per_second: tokens as f64 / train_seconds,
        device: here,
        init_from: init_from.map(|p| p.display().to_string()),
        snapshot_seconds: snapshots.seconds,
        snapshots: snapshots.written,
        weights: None,
        truncated_ce_share: match log_header(&cfg).ends_with("truncated_share\n") {
            true => Some(mean_truncated_share(&log_path)?),
            false => None,
        },
    };
    let state = checkpoint::save(&out, &vs, &mcfg, vocab, &state, Some(&log_path))?;
    std::fs::remove_file(&log_path).ok();
    snapshot::remove(&out)?;
    Ok(TrainOutcome { state })
}
