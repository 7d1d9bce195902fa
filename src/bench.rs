//! `lmloop bench`: training and sampling throughput at a model shape, next to a
//! PyTorch eager reference of the same shapes run in the same invocation, reported as
//! ratios (the machines are shared and noisy; only same-run ratios are meaningful).
//!
//! Training and sampling run on random token ids: throughput does not depend on the
//! data. Each measurement is taken `rounds` times, alternating lmloop and the
//! reference, and the best round of each is kept.
use crate::config::Config;
use crate::model::{parameter_count, Model};
use crate::sample::{sample_uncached, Decoder, Sampling};
use crate::train::next_token_loss;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub train_steps: usize,
    pub warmup_steps: usize,
    pub sample_steps: usize,
    pub rounds: usize,
    /// Shell command of the reference (`python bench/reference.py`), or none.
    pub reference: Option<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct TrainBench {
    pub tokens_per_second: f64,
    pub ms_per_step: f64,
    pub forward_ms: f64,
    pub backward_ms: f64,
    pub optimizer_ms: f64,
    pub model_gflops_per_second: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub device: String,
    pub threads: i32,
    pub model: String,
    pub parameters: i64,
    pub batch_size: i64,
    pub block_size: i64,
    pub train: TrainBench,
    pub sample_batch_size: usize,
    pub sample_tokens_per_second: f64,
    pub sample_uncached_tokens_per_second: f64,
    pub sample_cache_speedup: f64,
    pub reference: Option<serde_json::Value>,
    pub train_ratio_vs_reference: Option<f64>,
    pub sample_ratio_vs_reference: Option<f64>,
    /// Seconds to compute every drift measure of a 10M-token corpus on one thread.
    pub drift_seconds_10m_tokens: f64,
    /// Seconds of `lmloop theory discrete` at 1000 symbols, n = 1000, 2000 generations,
    /// 500 trials, for the replace and accumulate policies.
    pub theory_discrete_replace_seconds: f64,
    pub theory_discrete_accumulate_seconds: f64,
}

/// FLOPs per trained token: 6 per parameter (forward + backward) plus attention
/// (12 · layers · context · width), as in the PaLM appendix.
pub fn train_flops_per_token(cfg: &crate::config::ModelConfig, params: i64) -> f64 {
    6.0 * params as f64 + 12.0 * (cfg.n_layer * cfg.block_size * cfg.n_embd) as f64
}

fn random_tokens(shape: [i64; 2], vocab: i64, device: Device) -> Tensor {
    Tensor::randint(vocab, shape, (Kind::Int64, device))
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

fn bench_train(cfg: &Config, device: Device, opts: &BenchOptions) -> Result<(TrainBench, i64)> {
    let m = &cfg.model;
    let t = &cfg.train;
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let model = Model::new(&vs.root(), m);
    let params = parameter_count(&vs) - if m.arch == crate::config::Arch::Gpt2 { m.block_size * m.n_embd } else { 0 };
    let mut opt = crate::optim::AdamW::new(&vs, t);
    let trainable = vs.trainable_variables();
    let x = random_tokens([t.batch_size, m.block_size], m.vocab_size, device);
    let y = random_tokens([t.batch_size, m.block_size], m.vocab_size, device);
    let (mut fwd, mut bwd, mut step) = (0.0, 0.0, 0.0);
    for i in 0..opts.warmup_steps + opts.train_steps {
        let t0 = Instant::now();
        let loss = next_token_loss(&model.forward(&x, true), &y);
        sync(device);
        let t1 = Instant::now();
        opt.zero_grad();
        loss.backward();
        sync(device);
        let t2 = Instant::now();
        if t.grad_clip > 0.0 {
            crate::train::clip_grad_norm(&trainable, t.grad_clip);
        }
        opt.step();
        let _ = f64::try_from(&loss)?; // the trainer reads the loss every step too
        let t3 = Instant::now();
        if i >= opts.warmup_steps {
            fwd += (t1 - t0).as_secs_f64();
            bwd += (t2 - t1).as_secs_f64();
            step += (t3 - t2).as_secs_f64();
        }
    }
    let n = opts.train_steps as f64;
    let total = fwd + bwd + step;
    let tokens = (t.batch_size * m.block_size) as f64 * n;
    let tps = tokens / total;
    Ok((
        TrainBench {
            tokens_per_second: tps,
            ms_per_step: 1000.0 * total / n,
            forward_ms: 1000.0 * fwd / n,
            backward_ms: 1000.0 * bwd / n,
            optimizer_ms: 1000.0 * step / n,
            model_gflops_per_second: tps * train_flops_per_token(m, params) / 1e9,
        },
        params,
    ))
}

/// Cached batched decoding as the sampler does it; documents are cut at the context
/// length so that, like the reference, no re-encode happens.
fn bench_sample(cfg: &Config, device: Device, steps: usize) -> Result<f64> {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let model = Model::new(&vs.root(), &cfg.model);
    let batch = cfg.sample.batch_size as usize;
    let sampling = Sampling::new(1.0, None, None)?;
    let mut decoder = Decoder::new(&model, batch, 0, cfg.model.block_size as usize - 1, device);
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    let t0 = Instant::now();
    tch::no_grad(|| -> Result<()> {
        for _ in 0..steps {
            let chosen = sampling.choose(&decoder.logits(), &mut rng)?;
            decoder.advance(&chosen);
        }
        Ok(())
    })?;
    Ok((batch * steps) as f64 / t0.elapsed().as_secs_f64())
}

fn bench_uncached(cfg: &Config, device: Device) -> Result<f64> {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let model = Model::new(&vs.root(), &cfg.model);
    let sampling = Sampling::new(1.0, None, None)?;
    let t0 = Instant::now();
    // Two contexts' worth of steps: the prefix grows to block_size tokens, then slides,
    // as it does for documents longer than the context (most sampled documents).
    let tokens = sample_uncached(&model, 0, device, sampling, cfg.sample.batch_size as usize, 2 * cfg.model.block_size as usize)?;
    Ok(tokens as f64 / t0.elapsed().as_secs_f64())
}

fn run_reference(command: &str, cfg: &Config, threads: i32, opts: &BenchOptions) -> Result<serde_json::Value> {
    let m = &cfg.model;
    let args = format!(
        " --arch {} --n-layer {} --n-head {} --n-embd {} --block-size {} --vocab-size {} --mlp-hidden {} \
         --batch-size {} --steps {} --warmup {} --threads {} --sample-batch {} --sample-steps {} --weight-decay {}",
        if m.arch == crate::config::Arch::Gpt2 { "gpt2" } else { "llama" },
        m.n_layer,
        m.n_head,
        m.n_embd,
        m.block_size,
        m.vocab_size,
        m.mlp_hidden(),
        cfg.train.batch_size,
        opts.train_steps,
        opts.warmup_steps,
        threads,
        cfg.sample.batch_size,
        opts.sample_steps,
        cfg.train.weight_decay
    );
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{command}{args}"))
        .output()
        .with_context(|| format!("cannot run the reference `{command}`"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!("the reference `{command}` failed: {}", err.lines().last().unwrap_or("no output"));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or("")).context("the reference printed no JSON result")
}

pub fn run(cfg: &Config, device: Device, opts: &BenchOptions) -> Result<BenchReport> {
    if cfg.model.vocab_size <= 0 {
        bail!("the benchmark needs a vocabulary size (model.vocab_size or data.vocab_size)");
    }
    let threads = tch::get_num_threads();
    let mut best_train: Option<TrainBench> = None;
    let mut params = 0;
    let (mut best_sample, mut best_reference): (f64, Option<serde_json::Value>) = (0.0, None);
    for _ in 0..opts.rounds.max(1) {
        let (t, p) = bench_train(cfg, device, opts)?;
        params = p;
        if best_train.as_ref().is_none_or(|b| t.tokens_per_second > b.tokens_per_second) {
            best_train = Some(t);
        }
        best_sample = best_sample.max(bench_sample(cfg, device, opts.sample_steps)?);
        if let Some(cmd) = &opts.reference {
            let r = run_reference(cmd, cfg, threads, opts)?;
            let better = |a: &serde_json::Value, b: &serde_json::Value, key: &str| a[key].as_f64() > b[key].as_f64();
            best_reference = Some(match best_reference {
                None => r,
                Some(mut b) => {
                    for key in ["train_tokens_per_second", "sample_tokens_per_second"] {
                        if better(&r, &b, key) {
                            b[key] = r[key].clone();
                            if key == "train_tokens_per_second" {
                                b["train_ms_per_step"] = r["train_ms_per_step"].clone();
                            }
                        }
                    }
                    b
                }
            });
        }
    }
    let uncached = bench_uncached(cfg, device)?;
    let drift_seconds_10m_tokens = crate::analysis::bench_drift(10_000_000)?;
    let theory = |policy| -> Result<f64> {
        let cfg = crate::theory::DiscreteConfig::reference(policy)?;
        let t0 = Instant::now();
        crate::theory::simulate_discrete(&cfg)?;
        Ok(t0.elapsed().as_secs_f64())
    };
    let theory_discrete_replace_seconds = theory(crate::theory::DataPolicy::Replace)?;
    let theory_discrete_accumulate_seconds = theory(crate::theory::DataPolicy::Accumulate)?;
    let train = best_train.unwrap_or_default();
    let ratio = |ours: f64, key: &str| best_reference.as_ref().and_then(|r| r[key].as_f64()).map(|theirs| ours / theirs);
    Ok(BenchReport {
        device: crate::device::describe(device),
        threads,
        model: crate::cli::describe_model(cfg),
        parameters: params,
        batch_size: cfg.train.batch_size,
        block_size: cfg.model.block_size,
        train_ratio_vs_reference: ratio(train.tokens_per_second, "train_tokens_per_second"),
        sample_ratio_vs_reference: ratio(best_sample, "sample_tokens_per_second"),
        train,
        sample_batch_size: cfg.sample.batch_size as usize,
        sample_tokens_per_second: best_sample,
        sample_uncached_tokens_per_second: uncached,
        sample_cache_speedup: best_sample / uncached,
        reference: best_reference,
        drift_seconds_10m_tokens,
        theory_discrete_replace_seconds,
        theory_discrete_accumulate_seconds,
    })
}

pub fn format_report(r: &BenchReport) -> String {
    let reference = |key: &str| r.reference.as_ref().and_then(|v| v[key].as_f64());
    let ratio = |x: Option<f64>| x.map(|v| format!("{v:.2}×")).unwrap_or_else(|| "-".into());
    let or_dash = |x: Option<f64>| x.map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".into());
    format!(
        "lmloop bench: {} ({} parameters) on {}\n\
         training   batch {}×{}: {:.0} tokens/s, {:.1} ms/step (forward {:.1}, backward {:.1}, optimizer {:.1}), {:.2} GFLOP/s\n\
         \x20          PyTorch eager reference: {} tokens/s → ratio {}\n\
         sampling   batch {}: {:.0} tokens/s with KV cache, {:.0} tokens/s without → cache speedup {:.1}×\n\
         \x20          PyTorch eager reference (KV cache): {} tokens/s → ratio {}\n\
         analysis   all drift measures of a 10M-token corpus: {:.2} s (one thread; target < 2 s)\n\
         theory     discrete 1000 symbols, n 1000, 2000 generations, 500 trials: replace {:.1} s, accumulate {:.1} s (target < 30 s)\n",
        r.model,
        r.parameters,
        r.device,
        r.batch_size,
        r.block_size,
        r.train.tokens_per_second,
        r.train.ms_per_step,
        r.train.forward_ms,
        r.train.backward_ms,
        r.train.optimizer_ms,
        r.train.model_gflops_per_second,
        or_dash(reference("train_tokens_per_second")),
        ratio(r.train_ratio_vs_reference),
        r.sample_batch_size,
        r.sample_tokens_per_second,
        r.sample_uncached_tokens_per_second,
        r.sample_cache_speedup,
        or_dash(reference("sample_tokens_per_second")),
        ratio(r.sample_ratio_vs_reference),
        r.drift_seconds_10m_tokens,
        r.theory_discrete_replace_seconds,
        r.theory_discrete_accumulate_seconds,
    )
}
