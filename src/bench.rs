//! `lmloop bench`: training and sampling throughput at a model shape, next to
//! references of the same shapes run in the same invocation, reported as ratios (the
//! machines are shared and noisy; only same-run ratios are meaningful).
//!
//! References: a PyTorch eager implementation (`bench/reference.py`: training, and
//! decoding with a key/value cache) and Hugging Face transformers `generate`
//! (`bench/hf_generate.py`: the same shape with random weights, `do_sample=True`,
//! `top_k=0`). Sampling is measured twice: plain decoding (every row decodes from
//! position 0 to the context length, over and over, as the references do) and as the
//! loop samples (a corpus of the loop's size D: documents that end only at the model's
//! end-of-text, far longer than the context, rows refilled as documents end, and the
//! faithful protocol's stopping rule).
//!
//! Training and sampling run on random weights and, for training, random token ids:
//! throughput does not depend on the data. A random model ends a document with
//! probability about 1/V per token, so its documents are about V tokens long (2,048
//! at the default shape, close to the real scenes' mean). Every measurement is taken
//! `rounds` times, lmloop and the references alternating; each figure is the median
//! over rounds with the lowest and highest beside it, and each ratio is the median of
//! the per-round ratios.
use crate::choice::Choice;
use crate::config::Config;
use crate::model::{non_embedding_parameter_count, Model};
use crate::sample::{sample_corpus, sample_uncached, Decoder, Engine, SampleRequest, SampleTimes, Sampling};
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
    /// Shell command of the PyTorch eager reference (`python bench/reference.py`), or none.
    pub reference: Option<String>,
    /// Shell command of the transformers `generate` reference (`python bench/hf_generate.py`), or none.
    pub hf_reference: Option<String>,
    /// Corpus size of the in-loop sampling measurement; 0 skips it.
    pub loop_tokens: usize,
    /// The device's peak dense TFLOP/s in the training precision, if known.
    pub peak_tflops: Option<f64>,
}

/// A figure measured once per round: median, lowest, highest.
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) };
        Some(Spread { median, min: v[0], max: v[n - 1] })
    }

    fn show(&self, digits: usize) -> String {
        format!("{:.d$} [{:.d$}-{:.d$}]", self.median, self.min, self.max, d = digits)
    }
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

/// Plain decoding: every row from position 0 to the context length, over and over.
#[derive(Debug, Clone, Serialize, Default)]
pub struct PlainSampleBench {
    /// The decoding step: `rust` (the CPU's) or `libtorch`.
    pub engine: Engine,
    pub tokens_per_second: f64,
    /// Milliseconds per decoding step, by part.
    pub forward_ms: f64,
    pub draw_ms: f64,
    pub host_ms: f64,
}

/// A corpus sampled as the loop samples it.
#[derive(Debug, Clone, Serialize, Default)]
pub struct LoopSampleBench {
    /// The decoding step: `rust` (rebuilds run inside it, so their time is part of
    /// `time.forward_seconds`) or `libtorch` (rebuilds timed on their own).
    pub engine: Engine,
    pub tokens_per_second: f64,
    pub tokens: usize,
    pub documents: usize,
    pub mean_document_tokens: f64,
    pub steps: usize,
    /// Tokens decoded per step on average (rows in flight).
    pub mean_rows: f64,
    pub rebuilds: usize,
    /// Tokens re-encoded by those rebuilds (half a context each, less the token fed anyway).
    pub rebuild_tokens: usize,
    pub discarded_tokens: usize,
    pub seconds: f64,
    pub time: SampleTimes,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub device: String,
    /// The GPU's name as nvidia-smi reports it, on CUDA.
    pub gpu: Option<String>,
    /// Training precision (`fp32` or `bf16`).
    pub precision: String,
    /// Peak dense TFLOP/s the utilisation is taken against, and where it came from.
    pub peak_tflops: Option<f64>,
    pub peak_source: Option<String>,
    /// Model FLOP utilisation of training: model FLOP/s (6N + attention per token) over the peak.
    pub model_flop_utilisation: Option<f64>,
    pub threads: i32,
    pub model: String,
    pub parameters: i64,
    pub batch_size: i64,
    pub block_size: i64,
    pub rounds: usize,
    /// The round with the median training throughput, and the spread over rounds.
    pub train: TrainBench,
    pub train_tokens_per_second: Spread,
    pub sample_batch_size: usize,
    /// The round with the median plain-decoding throughput, and the spread over rounds.
    pub sample: PlainSampleBench,
    pub sample_tokens_per_second: Spread,
    /// The round with the median in-loop throughput, and the spread over rounds.
    pub sample_loop: Option<LoopSampleBench>,
    pub sample_loop_tokens_per_second: Option<Spread>,
    /// Plain over in-loop throughput, per round (the goal: at most 1.5).
    pub sample_loop_slowdown: Option<Spread>,
    pub sample_uncached_tokens_per_second: f64,
    pub sample_cache_speedup: f64,
    /// On the CPU: the same plain decoding with lmloop's libtorch step, and the Rust
    /// step's throughput over it, per round.
    pub sample_libtorch_step_tokens_per_second: Option<Spread>,
    pub sample_ratio_vs_libtorch_step: Option<Spread>,
    /// The eager reference's rounds (its last JSON line each) and the spreads over them.
    pub reference: Vec<serde_json::Value>,
    pub reference_train_tokens_per_second: Option<Spread>,
    pub reference_sample_tokens_per_second: Option<Spread>,
    pub train_ratio_vs_reference: Option<Spread>,
    pub sample_ratio_vs_reference: Option<Spread>,
    /// The transformers `generate` reference's rounds and the spreads over them.
    pub hf_generate: Vec<serde_json::Value>,
    pub hf_generate_tokens_per_second: Option<Spread>,
    pub sample_ratio_vs_hf_generate: Option<Spread>,
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

/// The first GPU's name, from nvidia-smi (libtorch does not report it through tch).
fn gpu_name() -> Option<String> {
    let out =
        std::process::Command::new("nvidia-smi").args(["--query-gpu=name", "--format=csv,noheader"]).output().ok()?;
    let name = String::from_utf8_lossy(&out.stdout).lines().next()?.trim().to_string();
    (out.status.success() && !name.is_empty()).then_some(name)
}

/// Peak dense TFLOP/s from NVIDIA's datasheets for the GPUs lmloop has figures for, in
/// the arithmetic training uses: bf16 on tensor cores, or fp32 without them (libtorch's
/// default keeps TF32 off for float32 matrix products). SXM parts; the H200 has the
/// H100's compute.
fn known_peak_tflops(name: &str, precision: crate::config::Precision) -> Option<(f64, &'static str)> {
    use crate::config::Precision::*;
    let n = name.to_uppercase();
    let sxm = !n.contains("PCIE") && !n.contains("NVL");
    match precision {
        Bf16 if (n.contains("H100") || n.contains("H200")) && sxm => {
            Some((989.4, "NVIDIA H100/H200 SXM datasheet, dense BF16"))
        }
        Fp32 if (n.contains("H100") || n.contains("H200")) && sxm => {
            Some((66.9, "NVIDIA H100/H200 SXM datasheet, FP32"))
        }
        Bf16 if n.contains("A100") => Some((312.0, "NVIDIA A100 datasheet, dense BF16")),
        Fp32 if n.contains("A100") => Some((19.5, "NVIDIA A100 datasheet, FP32")),
        _ => None,
    }
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
    let params = non_embedding_parameter_count(&vs);
    let mut opt = crate::optim::AdamW::new(&vs, t);
    let x = random_tokens([t.batch_size, m.block_size], m.vocab_size, device);
    let y = random_tokens([t.batch_size, m.block_size], m.vocab_size, device);
    let (mut fwd, mut bwd, mut step) = (0.0, 0.0, 0.0);
    for i in 0..opts.warmup_steps + opts.train_steps {
        let t0 = Instant::now();
        let compute = t.precision.compute_kind();
        let loss = crate::model::precision::autocast(compute, || next_token_loss(&model.forward(&x, true), &y));
        sync(device);
        let t1 = Instant::now();
        opt.zero_grad();
        loss.backward();
        sync(device);
        let t2 = Instant::now();
        opt.step(t.grad_clip);
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

/// Plain cached decoding: `batch` rows in lockstep, each cut at the context length
/// and restarted at position 0, like the references (no rebuild happens).
fn bench_sample(cfg: &Config, device: Device, steps: usize, engine: Engine) -> Result<PlainSampleBench> {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let model = Model::new(&vs.root(), &cfg.model);
    let batch = cfg.sample.batch_size as usize;
    let sampling = Sampling::new(1.0, None, None)?;
    let mut decoder = Decoder::with_engine(&model, batch, 0, cfg.model.block_size as usize - 1, device, engine);
    let mut rngs: Vec<_> = (0..batch as u64).map(|b| crate::sample::document_rng(0, b)).collect();
    let mut draw = 0.0;
    let t0 = Instant::now();
    tch::no_grad(|| -> Result<()> {
        let mut done = 0;
        while done < steps {
            // The Rust step decodes in blocks of steps, as the loop does; libtorch's
            // step one step at a time.
            let k = (steps - done).min(crate::sample::BLOCK_STEPS_MAX);
            if decoder.decode_block(&sampling, &mut rngs, k, true)?.is_some() {
                done += k;
                continue;
            }
            let logits = decoder.logits();
            let t = Instant::now();
            let chosen = decoder.choose_rows(&logits, &sampling, &mut rngs)?;
            draw += t.elapsed().as_secs_f64();
            decoder.advance(&chosen);
            done += 1;
        }
        Ok(())
    })?;
    let total = t0.elapsed().as_secs_f64();
    draw += decoder.draw_seconds;
    let ms = |s: f64| 1000.0 * s / steps as f64;
    Ok(PlainSampleBench {
        engine,
        tokens_per_second: (batch * steps) as f64 / total,
        forward_ms: ms(decoder.forward_seconds),
        draw_ms: ms(draw),
        host_ms: ms(total - decoder.forward_seconds - draw),
    })
}

/// A corpus of `tokens` sampled by `sample_corpus`, exactly as the loop calls it, from
/// a random model (documents about V tokens long).
fn bench_sample_loop(cfg: &Config, device: Device, tokens: usize) -> Result<LoopSampleBench> {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let model = Model::new(&vs.root(), &cfg.model);
    let req = SampleRequest {
        sampling: Sampling::new(cfg.sample.temperature, cfg.sample.top_k, cfg.sample.top_p)?,
        seed: 0,
        n_tokens: tokens,
        batch_size: cfg.sample.batch_size as usize,
        max_doc_tokens: cfg.sample.max_doc_tokens.map(|c| c as usize).unwrap_or(LOOP_LENGTH_CAP),
        progress: false,
    };
    let stats = sample_corpus(&model, 0, device, &req, |d| Ok(d.corpus_tokens()))?;
    Ok(LoopSampleBench {
        engine: Engine::for_device(device),
        rebuild_tokens: stats.reencodes * (crate::sample::rebuild_keep(cfg.model.block_size as usize) - 1),
        tokens_per_second: stats.tokens_per_second,
        tokens: stats.tokens,
        documents: stats.documents,
        mean_document_tokens: stats.mean_document_tokens,
        steps: stats.steps,
        mean_rows: (stats.tokens + stats.discarded_tokens) as f64 / stats.steps.max(1) as f64,
        rebuilds: stats.reencodes,
        discarded_tokens: stats.discarded_tokens,
        seconds: stats.seconds,
        time: stats.time,
    })
}

/// Length cap of the in-loop measurement when the config sets none (the loop takes four
/// times the longest real document; a random model's documents never get near either).
const LOOP_LENGTH_CAP: usize = 65_536;

/// The in-loop measurement's corpus size when `--loop-tokens` is not given: the loop's
/// D as far as the config fixes it (synthetic_tokens, else real_subset_tokens, since
/// D = |R|), else this.
pub const DEFAULT_LOOP_TOKENS: usize = 200_000;

pub fn loop_tokens(cfg: &Config) -> usize {
    let g = &cfg.generations;
    [g.synthetic_tokens, g.real_subset_tokens]
        .into_iter()
        .find(|&t| t > 0)
        .map(|t| t as usize)
        .unwrap_or(DEFAULT_LOOP_TOKENS)
}

fn bench_uncached(cfg: &Config, device: Device) -> Result<f64> {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let model = Model::new(&vs.root(), &cfg.model);
    let sampling = Sampling::new(1.0, None, None)?;
    let t0 = Instant::now();
    // Two contexts' worth of steps: the prefix grows to block_size tokens, then is cut
    // to the sampler's context rule, as it is for documents longer than the context.
    let tokens = sample_uncached(
        &model,
        0,
        device,
        sampling,
        cfg.sample.batch_size as usize,
        2 * cfg.model.block_size as usize,
    )?;
    Ok(tokens as f64 / t0.elapsed().as_secs_f64())
}

/// Runs a reference script with the model shape appended as arguments and returns the
/// JSON object it prints last.
fn run_script(command: &str, args: &str) -> Result<serde_json::Value> {
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
    serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .with_context(|| format!("the reference `{command}` printed no JSON result"))
}

/// Arguments every reference takes: the model shape, threads and sampling batch.
fn shape_args(cfg: &Config, device: Device, threads: i32, opts: &BenchOptions) -> String {
    let m = &cfg.model;
    format!(
        " --arch {} --n-layer {} --n-head {} --n-embd {} --block-size {} --vocab-size {} --mlp-hidden {} \
         --threads {} --sample-batch {} --sample-steps {} --device {}",
        if m.arch == crate::config::Arch::Gpt2 { "gpt2" } else { "llama" },
        m.n_layer,
        m.n_head,
        m.n_embd,
        m.block_size,
        m.vocab_size,
        m.mlp_hidden(),
        threads,
        cfg.sample.batch_size,
        opts.sample_steps,
        if device.is_cuda() { "cuda" } else { "cpu" },
    )
}

fn run_reference(
    command: &str,
    cfg: &Config,
    device: Device,
    threads: i32,
    opts: &BenchOptions,
) -> Result<serde_json::Value> {
    let args = format!(
        "{} --batch-size {} --steps {} --warmup {} --weight-decay {} --precision {}",
        shape_args(cfg, device, threads, opts),
        cfg.train.batch_size,
        opts.train_steps,
        opts.warmup_steps,
        cfg.train.weight_decay,
        cfg.train.precision.name()
    );
    run_script(command, &args)
}

pub fn run(cfg: &Config, device: Device, opts: &BenchOptions) -> Result<BenchReport> {
    if cfg.model.vocab_size <= 0 {
        bail!("the benchmark needs a vocabulary size (model.vocab_size or data.vocab_size)");
    }
    let threads = tch::get_num_threads();
    let rounds = opts.rounds.max(1);
    let (mut trains, mut plains, mut loops, mut torch_steps) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let engine = Engine::for_device(device);
    let mut params = 0;
    let (mut reference, mut hf) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (train, p) = bench_train(cfg, device, opts)?;
        trains.push(train);
        params = p;
        plains.push(bench_sample(cfg, device, opts.sample_steps, engine)?);
        if engine != Engine::Libtorch {
            torch_steps.push(bench_sample(cfg, device, opts.sample_steps, Engine::Libtorch)?.tokens_per_second);
        }
        if opts.loop_tokens > 0 {
            loops.push(bench_sample_loop(cfg, device, opts.loop_tokens)?);
        }
        if let Some(cmd) = &opts.reference {
            reference.push(run_reference(cmd, cfg, device, threads, opts)?);
        }
        if let Some(cmd) = &opts.hf_reference {
            hf.push(run_script(cmd, &shape_args(cfg, device, threads, opts))?);
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

    let field = |runs: &[serde_json::Value], key: &str| -> Vec<f64> {
        runs.iter().map(|r| r[key].as_f64().unwrap_or(f64::NAN)).collect()
    };
    let train_tps: Vec<f64> = trains.iter().map(|t| t.tokens_per_second).collect();
    let plain_tps: Vec<f64> = plains.iter().map(|p| p.tokens_per_second).collect();
    let loop_tps: Vec<f64> = loops.iter().map(|l| l.tokens_per_second).collect();
    let ratios =
        |ours: &[f64], theirs: &[f64]| Spread::of(&ours.iter().zip(theirs).map(|(a, b)| a / b).collect::<Vec<_>>());
    let median_round = |values: &[f64]| -> usize {
        let m = Spread::of(values).map(|s| s.median).unwrap_or(0.0);
        (0..values.len()).min_by(|&a, &b| (values[a] - m).abs().total_cmp(&(values[b] - m).abs())).unwrap_or(0)
    };
    let ref_train = field(&reference, "train_tokens_per_second");
    let ref_sample = field(&reference, "sample_tokens_per_second");
    let hf_sample = field(&hf, "sample_tokens_per_second");
    let sample_tokens_per_second = Spread::of(&plain_tps).unwrap_or_default();
    let gpu = device.is_cuda().then(gpu_name).flatten();
    let (peak_tflops, peak_source) = match (opts.peak_tflops, &gpu) {
        (Some(p), _) => (Some(p), Some("--peak-tflops".to_string())),
        (None, Some(name)) => match known_peak_tflops(name, cfg.train.precision) {
            Some((p, what)) => (Some(p), Some(what.to_string())),
            None => (None, None),
        },
        (None, None) => (None, None),
    };
    let train = trains[median_round(&train_tps)].clone();
    Ok(BenchReport {
        device: crate::device::describe(device),
        gpu,
        precision: cfg.train.precision.name().to_string(),
        peak_tflops,
        peak_source,
        model_flop_utilisation: peak_tflops.map(|p| train.model_gflops_per_second / (1e3 * p)),
        threads,
        model: cfg.model.describe(),
        parameters: params,
        batch_size: cfg.train.batch_size,
        block_size: cfg.model.block_size,
        rounds,
        train,
        train_tokens_per_second: Spread::of(&train_tps).unwrap_or_default(),
        sample_batch_size: cfg.sample.batch_size as usize,
        sample: plains[median_round(&plain_tps)].clone(),
        sample_tokens_per_second,
        sample_loop: (!loops.is_empty()).then(|| loops[median_round(&loop_tps)].clone()),
        sample_loop_tokens_per_second: Spread::of(&loop_tps),
        sample_loop_slowdown: ratios(&plain_tps, &loop_tps),
        sample_uncached_tokens_per_second: uncached,
        sample_cache_speedup: sample_tokens_per_second.median / uncached,
        sample_libtorch_step_tokens_per_second: Spread::of(&torch_steps),
        sample_ratio_vs_libtorch_step: ratios(&plain_tps, &torch_steps),
        reference_train_tokens_per_second: Spread::of(&ref_train),
        reference_sample_tokens_per_second: Spread::of(&ref_sample),
        train_ratio_vs_reference: ratios(&train_tps, &ref_train),
        sample_ratio_vs_reference: ratios(&plain_tps, &ref_sample),
        reference,
        hf_generate_tokens_per_second: Spread::of(&hf_sample),
        sample_ratio_vs_hf_generate: ratios(&plain_tps, &hf_sample),
        hf_generate: hf,
        drift_seconds_10m_tokens,
        theory_discrete_replace_seconds,
        theory_discrete_accumulate_seconds,
    })
}

pub fn format_report(r: &BenchReport) -> String {
    let spread = |s: &Option<Spread>, digits: usize| s.map(|s| s.show(digits)).unwrap_or_else(|| "-".into());
    let ratio = |s: &Option<Spread>| s.map(|s| format!("{}×", s.show(2))).unwrap_or_else(|| "-".into());
    let mut out = format!(
        "lmloop bench: {} ({} parameters) on {}; median [lowest-highest] of {} rounds\n\
         training   batch {}×{}, {}: {} tokens/s, {:.1} ms/step (forward {:.1}, backward {:.1}, optimizer {:.1}), {:.2} GFLOP/s{}\n\
         \x20          PyTorch eager reference: {} tokens/s → ratio {}\n\
         sampling   batch {}, plain decoding (every row from position 0 to the context length):\n\
         \x20          lmloop with KV cache ({} step): {} tokens/s; per step {:.2} ms forward, {:.2} ms draw, {:.2} ms host\n\
         {}\
         \x20          PyTorch eager reference (KV cache): {} tokens/s → ratio {}\n\
         \x20          transformers generate (KV cache, do_sample, top_k=0): {} tokens/s → ratio {}\n\
         \x20          without a cache (whole context every step): {:.0} tokens/s → cache speedup {:.1}×\n",
        r.model,
        r.parameters,
        match &r.gpu {
            Some(g) => format!("{} ({g})", r.device),
            None => r.device.clone(),
        },
        r.rounds,
        r.batch_size,
        r.block_size,
        r.precision,
        r.train_tokens_per_second.show(0),
        r.train.ms_per_step,
        r.train.forward_ms,
        r.train.backward_ms,
        r.train.optimizer_ms,
        r.train.model_gflops_per_second,
        match (r.model_flop_utilisation, r.peak_tflops) {
            (Some(u), Some(p)) => format!(" = {:.1}% of a {p} TFLOP/s peak (MFU)", 100.0 * u),
            _ => String::new(),
        },
        spread(&r.reference_train_tokens_per_second, 0),
        ratio(&r.train_ratio_vs_reference),
        r.sample_batch_size,
        r.sample.engine,
        r.sample_tokens_per_second.show(0),
        r.sample.forward_ms,
        r.sample.draw_ms,
        r.sample.host_ms,
        match &r.sample_libtorch_step_tokens_per_second {
            Some(t) => format!(
                "           the same decoder with libtorch's step: {} tokens/s → the Rust step is {}\n",
                t.show(0),
                ratio(&r.sample_ratio_vs_libtorch_step)
            ),
            None => String::new(),
        },
        spread(&r.reference_sample_tokens_per_second, 0),
        ratio(&r.sample_ratio_vs_reference),
        spread(&r.hf_generate_tokens_per_second, 0),
        ratio(&r.sample_ratio_vs_hf_generate),
        r.sample_uncached_tokens_per_second,
        r.sample_cache_speedup,
    );
    if let Some(l) = &r.sample_loop {
        let t = &l.time;
        let share = |x: f64| 100.0 * x / l.seconds;
        let rebuilds = format!("{:.1} s ({:.0}%)", t.rebuild_seconds, share(t.rebuild_seconds));
        out += &format!(
            "sampling   as the loop does (a {}-token corpus: {} documents of {:.0} tokens on average, rows refilled, stopping rule):\n\
             \x20          {} tokens/s → plain decoding is {} as fast (goal: at most 1.5×)\n\
             \x20          {} steps, {:.1} rows per step on average, {} rebuilds ({} tokens re-encoded), {} tokens decoded and discarded\n\
             \x20          time: forward {:.1} s ({:.0}%), draw {:.1} s ({:.0}%), rebuilds {}, host {:.1} s ({:.0}%)\n",
            l.tokens,
            l.documents,
            l.mean_document_tokens,
            spread(&r.sample_loop_tokens_per_second, 0),
            ratio(&r.sample_loop_slowdown),
            l.steps,
            l.mean_rows,
            l.rebuilds,
            l.rebuild_tokens,
            l.discarded_tokens,
            t.forward_seconds,
            share(t.forward_seconds),
            t.draw_seconds,
            share(t.draw_seconds),
            rebuilds,
            t.host_seconds,
            share(t.host_seconds),
        );
    }
    out += &format!(
        "analysis   all drift measures of a 10M-token corpus: {:.2} s (one thread; target < 2 s)\n\
         theory     discrete 1000 symbols, n 1000, 2000 generations, 500 trials: replace {:.1} s, accumulate {:.1} s (target < 30 s)\n",
        r.drift_seconds_10m_tokens, r.theory_discrete_replace_seconds, r.theory_discrete_accumulate_seconds,
    );
    out
}
