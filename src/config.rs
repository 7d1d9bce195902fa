//! Run configuration: the TOML file a user edits, and its validated form.
//!
//! Every field has a documented default, unknown keys are rejected, and
//! impossible values are rejected at load time with the field's name, so a
//! typo never silently falls back to a default.
pub use crate::choice::Choice;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Which decoder architecture to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lowercase")]
pub enum Arch {
    /// Pre-LayerNorm, GELU MLP, learned positions, tied embeddings (GPT-2).
    Gpt2,
    /// RMSNorm, rotary positions, SwiGLU MLP, tied embeddings (Llama).
    Llama,
}

/// Shape of the model. Saved next to every checkpoint as `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Architecture, `gpt2` or `llama`. Default `gpt2`: the shape most collapse papers use.
    pub arch: Arch,
    /// Number of transformer blocks. Default 4.
    pub n_layer: i64,
    /// Attention heads per block; must divide `n_embd`. Default 4.
    pub n_head: i64,
    /// Width of the residual stream. Default 128.
    pub n_embd: i64,
    /// Context length in tokens (training windows, evaluation windows, KV cache). Default 128.
    pub block_size: i64,
    /// Vocabulary size. Filled in from the prepared tokenizer; 0 in a config file means "take it from the data".
    pub vocab_size: i64,
    /// Dropout probability in training. Default 0.0: small models on a few MB of text underfit rather than overfit.
    pub dropout: f64,
    /// Biases in linear layers and LayerNorm (GPT-2 only). Default true, as in GPT-2.
    pub bias: bool,
    /// Hidden width of the MLP as a multiple of `n_embd`. Default 4 (GPT-2); Llama configs often use 8/3.
    pub mlp_ratio: f64,
    /// Hidden width of the MLP in units, when it must be exact (a model imported from
    /// Hugging Face transformers sets it); it then replaces `mlp_ratio`. Default unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intermediate_size: Option<i64>,
    /// Key/value heads of grouped-query attention (Llama only); must divide `n_head`.
    /// Default unset, meaning `n_head` (ordinary multi-head attention).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_kv_head: Option<i64>,
    /// Epsilon of LayerNorm (GPT-2) or RMSNorm (Llama). Default 1e-5, as in GPT-2 and Llama 2.
    #[serde(skip_serializing_if = "is_default_norm_eps")]
    pub norm_eps: f64,
    /// Base frequency of the rotary positions (Llama only). Default 10000, as in Llama 1 and 2.
    #[serde(skip_serializing_if = "is_default_rope_theta")]
    pub rope_theta: f64,
    /// Output projection tied to the token embedding. Default true, as in GPT-2; a
    /// Llama imported with its own `lm_head` sets false.
    #[serde(skip_serializing_if = "is_true")]
    pub tie_embeddings: bool,
}

// The keys added for imported models are left out of files while they hold their
// defaults, so configs, checkpoints and training fingerprints written before the keys
// existed read back, and compare, exactly as they were.
const DEFAULT_NORM_EPS: f64 = 1e-5;
const DEFAULT_ROPE_THETA: f64 = 10_000.0;

fn is_default_norm_eps(v: &f64) -> bool {
    *v == DEFAULT_NORM_EPS
}

fn is_default_rope_theta(v: &f64) -> bool {
    *v == DEFAULT_ROPE_THETA
}

fn is_true(v: &bool) -> bool {
    *v
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            arch: Arch::Gpt2,
            n_layer: 4,
            n_head: 4,
            n_embd: 128,
            block_size: 128,
            vocab_size: 0,
            dropout: 0.0,
            bias: true,
            mlp_ratio: 4.0,
            intermediate_size: None,
            n_kv_head: None,
            norm_eps: DEFAULT_NORM_EPS,
            rope_theta: DEFAULT_ROPE_THETA,
            tie_embeddings: true,
        }
    }
}

impl ModelConfig {
    /// A one-line description, e.g. `gpt2 4l 4h 96e ctx 128 vocab 2048`.
    pub fn describe(&self) -> String {
        format!(
            "{:?} {}L {}H {}E ctx {} vocab {}",
            self.arch, self.n_layer, self.n_head, self.n_embd, self.block_size, self.vocab_size
        )
        .to_lowercase()
    }

    /// A model small enough to train in seconds, for tests.
    pub fn tiny(vocab_size: i64) -> Self {
        Self { n_layer: 2, n_head: 2, n_embd: 32, block_size: 32, vocab_size, ..Self::default() }
    }

    /// Hidden width of the MLP: `intermediate_size` when set, else `n_embd × mlp_ratio`
    /// rounded up to a multiple of 8 for friendlier matmuls.
    pub fn mlp_hidden(&self) -> i64 {
        if let Some(h) = self.intermediate_size {
            return h;
        }
        let raw = (self.n_embd as f64 * self.mlp_ratio).round() as i64;
        ((raw + 7) / 8) * 8
    }

    pub fn head_dim(&self) -> i64 {
        self.n_embd / self.n_head
    }

    /// Key/value heads per layer (`n_kv_head`, else `n_head`).
    pub fn kv_heads(&self) -> i64 {
        self.n_kv_head.unwrap_or(self.n_head)
    }

    pub fn validate(&self) -> Result<()> {
        for (name, value) in [
            ("model.n_layer", self.n_layer),
            ("model.n_head", self.n_head),
            ("model.n_embd", self.n_embd),
            ("model.block_size", self.block_size),
        ] {
            if value <= 0 {
                bail!("{name} must be positive, got {value}");
            }
        }
        if self.n_embd % self.n_head != 0 {
            bail!("model.n_embd ({}) must be divisible by model.n_head ({})", self.n_embd, self.n_head);
        }
        if self.arch == Arch::Llama && self.head_dim() % 2 != 0 {
            bail!("model.n_embd / model.n_head must be even for rotary positions, got {}", self.head_dim());
        }
        if self.vocab_size < 0 {
            bail!("model.vocab_size must be 0 (from the data) or positive, got {}", self.vocab_size);
        }
        if !(0.0..1.0).contains(&self.dropout) {
            bail!("model.dropout must be in [0, 1), got {}", self.dropout);
        }
        if self.mlp_ratio <= 0.0 {
            bail!("model.mlp_ratio must be positive, got {}", self.mlp_ratio);
        }
        if let Some(h) = self.intermediate_size {
            if h <= 0 {
                bail!("model.intermediate_size must be positive, got {h}");
            }
        }
        if let Some(kv) = self.n_kv_head {
            if self.arch != Arch::Llama {
                bail!("model.n_kv_head (grouped-query attention) is implemented for arch = \"llama\" only");
            }
            if kv <= 0 || self.n_head % kv != 0 {
                bail!("model.n_kv_head ({kv}) must be positive and divide model.n_head ({})", self.n_head);
            }
        }
        if !(self.norm_eps > 0.0 && self.norm_eps.is_finite()) {
            bail!("model.norm_eps must be positive, got {}", self.norm_eps);
        }
        if !(self.rope_theta > 0.0 && self.rope_theta.is_finite()) {
            bail!("model.rope_theta must be positive, got {}", self.rope_theta);
        }
        Ok(())
    }

    /// The settings that set an evaluation's memory, for an out-of-memory message.
    pub fn evaluation_memory(&self) -> String {
        format!("model.block_size (now {}) or the model's width (model.n_embd, now {})", self.block_size, self.n_embd)
    }
}

/// What fixes the length of one training run (see `TrainConfig::budget`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lowercase")]
pub enum Budget {
    Epochs,
    Tokens,
}

/// How long and how to train one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Sequences per optimizer step. Default 32.
    pub batch_size: i64,
    /// How long one training run is: `epochs` (default), a number of passes over the
    /// training mixture, each visiting every window once in shuffled order, as in the
    /// papers' protocol (so `accumulate` trains longer as its data grows); or `tokens`,
    /// a fixed budget `max_tokens` per generation (the compute-matched variant).
    pub budget: Budget,
    /// Passes over the training mixture under `budget = "epochs"`. Default 1.
    pub epochs: Option<f64>,
    /// Tokens per generation under `budget = "tokens"` (required there, refused otherwise).
    pub max_tokens: Option<u64>,
    /// Peak learning rate. Default 2e-3: small models tolerate high rates.
    pub learning_rate: f64,
    /// Final learning rate of the cosine decay. Default 2e-4 (a tenth of the peak, as in Chinchilla).
    pub min_learning_rate: f64,
    /// Linear warm-up length in optimizer steps. Default 50.
    pub warmup_steps: i64,
    /// AdamW weight decay, applied to matrices only (not to biases, norms or embeddings' positions). Default 0.1.
    pub weight_decay: f64,
    /// AdamW β1. Default 0.9.
    pub beta1: f64,
    /// AdamW β2. Default 0.95 (nanoGPT, GPT-3): steadier on small batches than 0.999.
    pub beta2: f64,
    /// Clip the global gradient norm to this value; 0 disables. Default 1.0.
    pub grad_clip: f64,
    /// Evaluate on the validation split every this many steps (and at the end); 0 only at the end. Default 100.
    pub eval_interval: i64,
    /// Validation batches per evaluation. Default 8.
    pub eval_batches: i64,
    /// Seed of initialisation and batch order. Default 1337.
    pub seed: u64,
    /// Write a mid-training snapshot (weights, optimizer state, position) every this
    /// many optimizer steps, so a killed or requeued run resumes from the last one and
    /// ends exactly as an uninterrupted run; 0 disables snapshots. Default 500: a
    /// snapshot costs a fraction of a second (docs/measured.md), so every
    /// 500 steps costs next to nothing, while a GPU that runs a few steps per second
    /// loses only minutes of work to a kill.
    pub checkpoint_interval: i64,
    /// Arithmetic of the training forward and backward passes: `fp32` (default) or
    /// `bf16`, mixed precision as autocast does it: matrix products and attention in
    /// bfloat16, while weights, optimizer state, norms, the residual stream, softmax
    /// and the loss stay float32. Evaluation and sampling always run in float32, so
    /// held-out figures are comparable across settings. Checked at the start of
    /// training: a device whose libtorch cannot multiply bfloat16 matrices is refused.
    /// On a CPU without native bfloat16 instructions it runs, but slower than fp32.
    #[serde(skip_serializing_if = "Precision::is_fp32")]
    pub precision: Precision,
    /// Truncated cross-entropy (ForTIFAI, 2025): training targets the model already
    /// predicts with probability above γ contribute no loss (the loss is still divided by
    /// every target, so the others keep their weight). γ in (0, 1]; 1 is ordinary
    /// cross-entropy, bit for bit. The share of targets cut is the train log's sixth
    /// column (`truncated_share`, per step) and `train_truncated_ce_share` in
    /// generations.csv (its mean over steps). Default unset: ordinary cross-entropy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated_ce_gamma: Option<f64>,
    /// The first generation the loop trains with truncated cross-entropy (at least 1,
    /// the default): M_0 and the oracle are trained plainly, so every cell of a sweep
    /// is measured under the same reference.
    #[serde(default = "first_mitigated_generation", skip_serializing_if = "is_first_mitigated_generation")]
    pub truncated_ce_from: u32,
}

fn first_mitigated_generation() -> u32 {
    1
}

fn is_first_mitigated_generation(k: &u32) -> bool {
    *k == 1
}

/// See [`TrainConfig::precision`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Fp32,
    Bf16,
}

impl Precision {
    pub fn is_fp32(&self) -> bool {
        *self == Precision::Fp32
    }

    /// The reduced kind matrix products run in, if any.
    pub fn compute_kind(self) -> Option<tch::Kind> {
        match self {
            Precision::Fp32 => None,
            Precision::Bf16 => Some(tch::Kind::BFloat16),
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            batch_size: 32,
            budget: Budget::Epochs,
            epochs: None,
            max_tokens: None,
            learning_rate: 2e-3,
            min_learning_rate: 2e-4,
            warmup_steps: 50,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.95,
            grad_clip: 1.0,
            eval_interval: 100,
            eval_batches: 8,
            seed: 1337,
            checkpoint_interval: 500,
            precision: Precision::Fp32,
            truncated_ce_gamma: None,
            truncated_ce_from: 1,
        }
    }
}

impl TrainConfig {
    /// The settings without the mitigations the loop applies to later generations:
    /// what M_0 and the oracle are trained with.
    pub fn plain(&self) -> Self {
        Self { truncated_ce_gamma: None, ..self.clone() }
    }

    /// Passes over the data under an epoch budget (1 when unset).
    pub fn epochs_or_default(&self) -> f64 {
        self.epochs.unwrap_or(1.0)
    }

    pub fn validate(&self) -> Result<()> {
        if self.batch_size <= 0 {
            bail!("train.batch_size must be positive, got {}", self.batch_size);
        }
        match (self.budget, self.epochs, self.max_tokens) {
            (Budget::Epochs, _, Some(t)) => bail!(
                "train.max_tokens ({t}) contradicts train.budget = \"epochs\": set train.budget = \"tokens\" for a fixed token budget, or remove train.max_tokens"
            ),
            (Budget::Tokens, Some(e), _) => bail!(
                "train.epochs ({e}) contradicts train.budget = \"tokens\": a token budget is set by train.max_tokens alone"
            ),
            (Budget::Tokens, None, None) => bail!("train.budget = \"tokens\" needs train.max_tokens"),
            (Budget::Tokens, None, Some(0)) => bail!("train.max_tokens must be positive"),
            (Budget::Epochs, Some(e), None) if !(e > 0.0 && e.is_finite()) => {
                bail!("train.epochs must be positive, got {e}")
            }
            _ => {}
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            bail!("train.learning_rate must be positive, got {}", self.learning_rate);
        }
        if self.min_learning_rate < 0.0 || self.min_learning_rate > self.learning_rate {
            bail!("train.min_learning_rate must be in [0, train.learning_rate], got {}", self.min_learning_rate);
        }
        if self.warmup_steps < 0 {
            bail!("train.warmup_steps must be non-negative, got {}", self.warmup_steps);
        }
        if self.weight_decay < 0.0 {
            bail!("train.weight_decay must be non-negative, got {}", self.weight_decay);
        }
        for (name, b) in [("train.beta1", self.beta1), ("train.beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                bail!("{name} must be in [0, 1), got {b}");
            }
        }
        if self.grad_clip < 0.0 {
            bail!("train.grad_clip must be non-negative, got {}", self.grad_clip);
        }
        if let Some(g) = self.truncated_ce_gamma {
            if !(g > 0.0 && g <= 1.0) {
                bail!("train.truncated_ce_gamma must be in (0, 1] (1 is ordinary cross-entropy), got {g}");
            }
        }
        if self.truncated_ce_from == 0 {
            bail!(
                "train.truncated_ce_from must be at least 1: generation 0 (M_0) is trained plainly, so every cell is \
                 measured under the same reference"
            );
        }
        if self.eval_interval < 0 || self.eval_batches <= 0 {
            bail!("train.eval_interval must be >= 0 and train.eval_batches > 0");
        }
        if self.checkpoint_interval < 0 {
            bail!(
                "train.checkpoint_interval must be >= 0 (0 disables mid-training snapshots), got {}",
                self.checkpoint_interval
            );
        }
        Ok(())
    }
}

/// How synthetic corpora are sampled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SampleConfig {
    /// Softmax temperature; 0 means greedy. Default 1.0: sample the model's own distribution.
    pub temperature: f64,
    /// Keep only the k most likely tokens before sampling. Default: off.
    pub top_k: Option<i64>,
    /// Keep the smallest set of tokens whose probability reaches p. Default: off.
    pub top_p: Option<f64>,
    /// Sequences decoded at once. Default 64 (docs/sampling.md gives the throughput it was
    /// chosen by); raise it on a GPU.
    pub batch_size: i64,
    /// Length cap: a document reaching this many tokens is cut, counted as truncated and
    /// written without an end-of-text token. It only guards against degenerate models;
    /// default (unset): twice the longest document of the real training split, so a
    /// model that writes like the real data is essentially never cut (a constant end
    /// rate at the real mean length is cut with probability e^(-2·longest/mean)), and a
    /// model that never ends a document decodes at most that many tokens serially. The
    /// loop warns when more than 1% of a corpus's documents are cut, and marks a
    /// generation trained mostly on cut documents (`train_cap_dependent`).
    pub max_doc_tokens: Option<i64>,
}

impl Default for SampleConfig {
    fn default() -> Self {
        Self { temperature: 1.0, top_k: None, top_p: None, batch_size: 64, max_doc_tokens: None }
    }
}

impl SampleConfig {
    fn validate(&self, names: &KeyNames) -> Result<()> {
        crate::sample::sampling::Sampling::named(
            self.temperature,
            self.top_k,
            self.top_p,
            [&names.of("sample.temperature"), &names.of("sample.top_k"), &names.of("sample.top_p")],
        )?;
        if self.batch_size <= 0 {
            bail!("sample.batch_size must be positive, got {}", self.batch_size);
        }
        if let Some(cap) = self.max_doc_tokens {
            if cap < 1 {
                bail!("sample.max_doc_tokens must be at least 1 token, got {cap}");
            }
        }
        Ok(())
    }
}

/// The recursive loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerationsConfig {
    /// Data policy: replace, accumulate, accumulate-subsample, mix, fresh, or the
    /// real-data control `real`. Default `replace`.
    pub policy: crate::policy::PolicyName,
    /// Share λ of real data for `mix` and `fresh`. No default: those policies require
    /// it, and the others refuse it.
    pub real_fraction: Option<f64>,
    /// How generation k ≥ 1 is initialised: `scratch` (random weights), `previous`
    /// (generation k-1's weights: the chain fine-tunes itself) or `pretrained` (the
    /// weights of `init_from`, afresh every generation). Default `scratch`.
    pub init: Init,
    /// A Hugging Face transformers GPT-2 or Llama folder (`config.json`, safetensors
    /// weights, `tokenizer.json`) that generation 0 starts from, relative to the project
    /// root. Its shape replaces `[model]` except `block_size` (at most the folder's
    /// context) and `dropout`; the corpus must be prepared with its tokenizer
    /// (`lmloop prepare --tokenizer FOLDER`), which every generation then keeps. Default
    /// unset: generation 0 starts from random weights.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_from: Option<String>,
    /// Tokens sampled per generation, D; 0 means D = |R|, the size of the real
    /// training set R, as in the papers. Default 0.
    pub synthetic_tokens: u64,
    /// Number of generations after generation 0. Default 10. Raising it later extends a finished run.
    pub generations: u32,
    /// R as a fixed, seeded subset of whole documents of the real training split holding
    /// about this many tokens (the same subset for every policy and seed); the other
    /// training documents are the pool: `fresh` draws never-used documents from it, the
    /// noise floor and the tail null are measured on it, the control `real` draws from
    /// it. 0 (the default): R is the split less a held-out share (`holdout_fraction`).
    pub real_subset_tokens: u64,
    /// Seed of R's documents (the subset, or which documents are held out). Default
    /// 1337. It is not the run seed, so runs of every policy and seed share one R and
    /// differ only in what the issue varies.
    pub real_subset_seed: u64,
    /// Only without `real_subset_tokens`: the share of the training split held out of R
    /// (by document) as the pool of real documents outside R. Default 0.5, so the pool
    /// holds at least |R| tokens, the noise floor's size; the control `real` needs
    /// twice D there (0.67 or more when D = |R|). Called `fresh_pool_fraction` before,
    /// when only `fresh` held documents out; that name is still read.
    #[serde(alias = "fresh_pool_fraction", skip_serializing_if = "Option::is_none")]
    pub holdout_fraction: Option<f64>,
    /// The fixed model every corpus is scored and embedded with (per-document
    /// perplexity, precision and recall): `m0` (default), the run's generation 0, trained
    /// on R; or `oracle`, the same architecture trained once with the same budget on the
    /// whole real training split, kept under `checkpoints/oracle/` and shared by every
    /// run with the same corpus, model, training settings and seed.
    pub reference: ReferenceModel,
}

/// The reference model of the sequence-level measures (`generations.reference`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lowercase")]
pub enum ReferenceModel {
    /// Generation 0 of the run, trained on R.
    #[default]
    M0,
    /// Trained once on the whole real training split.
    Oracle,
}

impl GenerationsConfig {
    /// The data policy with its real share, checked (also at load: [`Config::validate`]).
    pub fn policy(&self) -> Result<crate::policy::Policy> {
        crate::policy::Policy::new(self.policy, self.real_fraction, "generations.real_fraction")
    }
}

/// How generation k ≥ 1 is initialised (`generations.init`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lowercase")]
pub enum Init {
    /// Random weights.
    #[default]
    Scratch,
    /// Generation k-1's weights.
    Previous,
    /// The weights of `generations.init_from`, afresh every generation.
    Pretrained,
}

/// Where a model runs (`runtime.device`, `--device`, `LMLOOP_DEVICE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// CUDA when libtorch sees a GPU, else the CPU.
    #[default]
    Auto,
    Cpu,
    Cuda,
}

impl Default for GenerationsConfig {
    fn default() -> Self {
        Self {
            policy: crate::policy::PolicyName::Replace,
            real_fraction: None,
            init: Init::Scratch,
            init_from: None,
            synthetic_tokens: 0,
            generations: 10,
            real_subset_tokens: 0,
            real_subset_seed: 1337,
            holdout_fraction: None,
            reference: ReferenceModel::M0,
        }
    }
}

/// Where the real data comes from and how it is tokenized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Name of the prepared corpus under `corpora/real/`. Default `shakespeare`.
    pub corpus: String,
    /// The vocabulary size this configuration expects, for the commands that build a
    /// model without a prepared corpus: `lmloop bench` (when `model.vocab_size` is 0)
    /// and the compute estimate of `lmloop sweep plan` before the corpus is prepared.
    /// Training always takes the prepared tokenizer's size, and `lmloop prepare` takes
    /// `--vocab-size` (the Makefile passes 2048). Default 2048: enough merges for whole
    /// common words on a 5 MB corpus, small enough that rare tokens stay measurable.
    pub vocab_size: usize,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self { corpus: "shakespeare".into(), vocab_size: 2048 }
    }
}

/// Execution settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// `auto` (CUDA when available), `cpu` or `cuda`. Default `auto`.
    pub device: DeviceChoice,
    /// Intra-op CPU threads; 0 means libtorch's default (all cores). Default 0.
    pub threads: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self { device: DeviceChoice::Auto, threads: 0 }
    }
}

/// How the user wrote each setting, for messages: the flag of a command that offers
/// one, unless the value came from the config file (then its key).
#[derive(Debug, Clone, Default)]
pub struct KeyNames {
    /// Keys the config file sets.
    in_file: BTreeSet<String>,
    /// Keys a flag of this command can set, with the flag and whether it was given.
    flags: BTreeMap<&'static str, (&'static str, bool)>,
}

impl KeyNames {
    /// The keys of a config file's text (unparsable text sets none).
    pub fn from_toml(text: &str) -> Self {
        let in_file = match toml::from_str::<toml::Value>(text) {
            Ok(v) => leaf_values(&v).into_keys().collect(),
            Err(_) => BTreeSet::new(),
        };
        Self { in_file, flags: BTreeMap::new() }
    }

    /// The command offers `flag` for `key`; `given` says whether this invocation used it.
    pub fn offer(&mut self, key: &'static str, flag: &'static str, given: bool) {
        self.flags.insert(key, (flag, given));
    }

    /// How to name `key`: the flag when it was given, the key when the file sets it or
    /// the command has no flag for it, and both (`key (flag)`) for a setting neither
    /// gave, so a message about a missing value says both ways to give it.
    pub fn of(&self, key: &str) -> String {
        match self.flags.get(key) {
            Some(&(flag, true)) => flag.to_string(),
            Some(&(flag, false)) if !self.in_file.contains(key) => format!("{key} ({flag})"),
            _ => key.to_string(),
        }
    }
}

/// Every value of a TOML document that is not a table, by its dotted key
/// (`train.seed` → `1337`).
pub fn leaf_values(v: &toml::Value) -> BTreeMap<String, String> {
    fn walk(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&key, v, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", v, &mut out);
    out
}

/// A whole run configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub data: DataConfig,
    pub model: ModelConfig,
    pub train: TrainConfig,
    pub sample: SampleConfig,
    pub generations: GenerationsConfig,
    pub runtime: RuntimeConfig,
    /// Curation of the sampled corpora by a verifier (`crate::curation`). Default: none;
    /// left out of files while it is none, so configs written before it read back alike.
    #[serde(skip_serializing_if = "CurationConfig::is_off")]
    pub curation: CurationConfig,
}

impl Config {
    /// The settings that set a training step's memory, for an out-of-memory message.
    pub fn training_memory(&self) -> String {
        format!(
            "train.batch_size (now {}), model.block_size (now {}) or the model's width (model.n_embd, now {})",
            self.train.batch_size, self.model.block_size, self.model.n_embd
        )
    }

    /// The settings that set the sampler's memory, for an out-of-memory message.
    pub fn sampling_memory(&self) -> String {
        format!(
            "sample.batch_size (now {}) or model.block_size (now {})",
            self.sample.batch_size, self.model.block_size
        )
    }

    /// Reads and validates a TOML configuration file.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
        let cfg = Self::parse_file(&text, path)?;
        cfg.validate().with_context(|| format!("invalid config file {}", path.display()))?;
        Ok(cfg)
    }

    /// [`Config::parse_toml`] of the text of the config file `path`: an error names the
    /// file, the line and the key (`invalid config file x.toml, line 7: train.seed: …`).
    pub fn parse_file(text: &str, path: &Path) -> Result<Self> {
        crate::toml_error::from_str(text, Some(path)).map_err(|e| anyhow::anyhow!("invalid config file {e}"))
    }

    /// Parses and validates a configuration's TOML text.
    pub fn from_toml(text: &str) -> Result<Self> {
        let cfg = Self::parse_toml(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses a configuration's TOML text (unknown keys and wrong types are refused)
    /// without checking its values, for a command that overrides some of them first
    /// and then calls [`Config::validate_named`]. An error names the line and the key.
    pub fn parse_toml(text: &str) -> Result<Self> {
        crate::toml_error::from_str(text, None).map_err(anyhow::Error::msg)
    }

    /// Checks every value; messages name the keys as in a config file.
    pub fn validate(&self) -> Result<()> {
        self.validate_named(&KeyNames::default())
    }

    /// Checks every value, the one place they are checked; messages name each key the
    /// way the user wrote it (`names`: a flag, or the config key).
    pub fn validate_named(&self, names: &KeyNames) -> Result<()> {
        // Each part is checked whatever the others hold, so a config with several
        // problems names them all at once (the first of each part).
        let problems: Vec<String> = [
            self.model.validate(),
            self.train.validate(),
            self.sample.validate(names),
            self.validate_generations(names),
            if self.data.vocab_size < 1 { Err(anyhow::anyhow!("data.vocab_size must be positive")) } else { Ok(()) },
        ]
        .into_iter()
        .filter_map(|r| r.err().map(|e| format!("{e:#}")))
        .collect();
        match problems.len() {
            0 => Ok(()),
            1 => bail!("{}", problems[0]),
            n => bail!("{n} problems: {}", problems.join("; ")),
        }
    }

    /// The `[generations]` keys and the `[curation]` table, which depends on the policy.
    fn validate_generations(&self, names: &KeyNames) -> Result<()> {
        let g = &self.generations;
        if g.generations == 0 {
            bail!(
                "{} must be at least 1 (generation 0 trains on real data; N more follow)",
                names.of("generations.generations")
            );
        }
        let policy = crate::policy::Policy::new(g.policy, g.real_fraction, &names.of("generations.real_fraction"))
            .map_err(|e| anyhow::anyhow!("{}: {e}", names.of("generations.policy")))?;
        self.curation.validate(policy)?;
        if g.init == Init::Pretrained && g.init_from.is_none() {
            bail!(
                "{} = 'pretrained' needs {} (the transformers folder whose weights every generation starts from)",
                names.of("generations.init"),
                names.of("generations.init_from")
            );
        }
        if g.init_from.as_deref().is_some_and(|d| d.trim().is_empty()) {
            bail!(
                "{} is empty; name a transformers model folder, or remove the key",
                names.of("generations.init_from")
            );
        }
        if let Some(f) = self.generations.holdout_fraction {
            if !(f > 0.0 && f < 1.0) {
                bail!("generations.holdout_fraction must be in (0, 1), got {f}");
            }
            if self.generations.real_subset_tokens > 0 {
                bail!(
                    "generations.holdout_fraction contradicts generations.real_subset_tokens: with a real subset, the documents outside R are the rest of the training split"
                );
            }
        }
        Ok(())
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a Config always serialises to TOML")
    }
}

// The [curation] table: a verifier and a rule (what they do: `crate::curation`).

/// Who scores the sampled documents (`curation.verifier`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verifier {
    /// The run's measuring reference (`generations.reference`): the model that chooses
    /// the documents then measures them, so their reference measures are partly circular.
    #[serde(rename = "reference")]
    Reference,
    /// M_0, generation 0 of the run, whatever the measuring reference is.
    #[serde(rename = "m0")]
    M0,
    /// The oracle (the architecture trained once on the whole real training split),
    /// whatever the measuring reference is.
    #[serde(rename = "oracle")]
    Oracle,
    /// The model that sampled them (self-perplexity).
    #[serde(rename = "self")]
    Own,
}

impl Verifier {
    pub fn name(self) -> &'static str {
        match self {
            Verifier::Reference => "reference",
            Verifier::M0 => "m0",
            Verifier::Oracle => "oracle",
            Verifier::Own => "self",
        }
    }

    /// Whether it is the run's measuring reference, which is the oracle or M_0.
    pub fn is_the_reference(self, reference_is_oracle: bool) -> bool {
        match self {
            Verifier::Reference => true,
            Verifier::M0 => !reference_is_oracle,
            Verifier::Oracle => reference_is_oracle,
            Verifier::Own => false,
        }
    }
}

/// How the fraction rule ranks the sampled documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ranking {
    /// Within [`LENGTH_STRATA`] strata of equal counts of the sampled documents by
    /// length, keeping ρ of each stratum's tokens: the kept corpus keeps the sampled
    /// length distribution.
    #[serde(rename = "within-length")]
    WithinLength,
    /// One ranking of every document; per-token perplexity favours short documents.
    #[serde(rename = "overall")]
    Overall,
}

/// The length strata of [`Ranking::WithinLength`].
pub const LENGTH_STRATA: usize = 5;

/// The `[curation]` table of a run config. Default: no curation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct CurationConfig {
    /// `reference` or `self`; unset (the default): the sampled corpus is used whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verifier: Option<Verifier>,
    /// ρ in (0, 1]: keep the lowest-perplexity documents holding this share of the
    /// sampled tokens (the sampler writes D/ρ tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_fraction: Option<f64>,
    /// q_low < q_high in [0, 1]: keep documents whose verifier perplexity lies between
    /// these quantiles of the real validation documents' perplexities.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantile_low: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantile_high: Option<f64>,
    /// Under the quantile rule, the most tokens sampled for one corpus, in units of D,
    /// before the generation is refused. Default 10.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_oversampling: Option<f64>,
    /// How the fraction rule ranks: `within-length` (the default) or `overall`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ranking: Option<Ranking>,
    /// Documents of fewer corpus tokens (their end token included) are never kept.
    /// Default: the shortest document of the real training split; 0 keeps every length.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_document_tokens: Option<u64>,
}

/// The default of `curation.max_oversampling`.
pub const DEFAULT_MAX_OVERSAMPLING: f64 = 10.0;

/// Which documents a verifier's perplexities keep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// The lowest perplexities, holding this share of the sampled tokens, ranked
    /// within `strata` length strata (1: one ranking).
    Best { fraction: f64, strata: usize },
    /// Perplexities between these quantiles of the real documents'.
    Quantiles { low: f64, high: f64 },
}

impl Rule {
    pub fn describe(&self) -> String {
        match self {
            Rule::Best { fraction, strata: 1 } => {
                format!("the lowest-perplexity {:.0}% of the sampled tokens", 100.0 * fraction)
            }
            Rule::Best { fraction, strata } => format!(
                "the lowest-perplexity {:.0}% of the sampled tokens within each of {strata} length strata",
                100.0 * fraction
            ),
            Rule::Quantiles { low, high } => {
                format!("perplexity between the real documents' {low} and {high} quantiles")
            }
        }
    }
}

impl CurationConfig {
    /// No curation configured.
    pub fn is_off(&self) -> bool {
        *self == Self::default()
    }

    /// The verifier and rule, when curation is on (the table validated first).
    pub fn rule(&self) -> Option<(Verifier, Rule)> {
        let verifier = self.verifier?;
        let rule = match (self.keep_fraction, self.quantile_low, self.quantile_high) {
            (Some(fraction), _, _) => Rule::Best {
                fraction,
                strata: match self.ranking.unwrap_or(Ranking::WithinLength) {
                    Ranking::WithinLength => LENGTH_STRATA,
                    Ranking::Overall => 1,
                },
            },
            (None, Some(low), Some(high)) => Rule::Quantiles { low, high },
            _ => return None,
        };
        Some((verifier, rule))
    }

    pub fn max_oversampling(&self) -> f64 {
        self.max_oversampling.unwrap_or(DEFAULT_MAX_OVERSAMPLING)
    }

    /// Checks the table against itself and the run's policy, one sentence per problem.
    pub fn validate(&self, policy: crate::policy::Policy) -> Result<()> {
        if self.is_off() {
            return Ok(());
        }
        let Some(verifier) = self.verifier else {
            bail!(
                "the [curation] table sets a rule but no curation.verifier; set verifier = \"m0\", \"oracle\", \"reference\" or \"self\", or remove the table"
            );
        };
        let quantiles = self.quantile_low.is_some() || self.quantile_high.is_some();
        match (self.keep_fraction, quantiles) {
            (Some(_), true) => bail!(
                "curation.keep_fraction and curation.quantile_low/quantile_high are two rules; set one of them"
            ),
            (None, false) => bail!(
                "curation.verifier = \"{}\" needs a rule: curation.keep_fraction = ρ in (0, 1], or curation.quantile_low and curation.quantile_high",
                verifier.name()
            ),
            (Some(f), false) if !(f > 0.0 && f <= 1.0) => {
                bail!("curation.keep_fraction must be in (0, 1] (1 keeps everything), got {f}")
            }
            (None, true) => {
                let (Some(low), Some(high)) = (self.quantile_low, self.quantile_high) else {
                    bail!("curation.quantile_low and curation.quantile_high must be set together");
                };
                if !((0.0..=1.0).contains(&low) && (0.0..=1.0).contains(&high)) {
                    bail!("curation.quantile_low and curation.quantile_high must lie in [0, 1], got {low} and {high}");
                }
                if low >= high {
                    bail!("curation.quantile_low ({low}) must be below curation.quantile_high ({high})");
                }
            }
            _ => {}
        }
        if let Some(m) = self.max_oversampling {
            if self.keep_fraction.is_some() {
                bail!("curation.max_oversampling bounds the quantile rule only (keep_fraction ρ samples D/ρ tokens); remove it");
            }
            if !(m >= 1.0 && m.is_finite()) {
                bail!("curation.max_oversampling must be at least 1 (units of D), got {m}");
            }
        }
        if self.ranking.is_some() && self.keep_fraction.is_none() {
            bail!("curation.ranking orders the fraction rule (keep_fraction) only; remove it");
        }
        let synthetic_share = match policy {
            crate::policy::Policy::Real => 0.0,
            crate::policy::Policy::Mix { real_fraction } | crate::policy::Policy::Fresh { real_fraction } => {
                1.0 - real_fraction
            }
            _ => 1.0,
        };
        if synthetic_share == 0.0 {
            bail!(
                "curation is set, but policy '{}'{} trains on no synthetic data, so there is nothing to curate; remove the [curation] table",
                policy.name(),
                policy.real_fraction().map(|l| format!(" with λ = {l}")).unwrap_or_default()
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml("[model]\nn_layers = 3\n").unwrap_err();
        assert!(format!("{err:#}").contains("n_layers"), "{err:#}");
    }

    #[test]
    fn every_part_with_a_problem_is_named_at_once() {
        let err = Config::from_toml(
            "[model]\nn_embd = 100\nn_head = 3\n[train]\nbatch_size = 0\n[generations]\ngenerations = 0\n",
        )
        .unwrap_err();
        let text = format!("{err:#}");
        for key in ["model.n_embd", "train.batch_size", "generations.generations", "3 problems"] {
            assert!(text.contains(key), "{key} missing from: {text}");
        }
        // One problem reads as before: one sentence, no count.
        let one = format!("{:#}", Config::from_toml("[train]\nbatch_size = 0\n").unwrap_err());
        assert!(!one.contains("problems") && one.contains("train.batch_size"), "{one}");
    }

    #[test]
    fn heads_must_divide_width() {
        let err = Config::from_toml("[model]\nn_embd = 100\nn_head = 3\n").unwrap_err();
        assert!(format!("{err:#}").contains("model.n_embd"), "{err:#}");
    }

    #[test]
    fn round_trips() {
        let cfg = Config::default();
        assert_eq!(Config::from_toml(&cfg.to_toml()).unwrap(), cfg);
    }

    /// Every choice is spelled the same in config files (serde) and on the command line
    /// (clap), so a value written either way means the same.
    #[test]
    fn choices_are_spelled_alike_in_files_and_flags() {
        fn check<T: Choice + Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>() {
            for v in T::value_variants() {
                let serde_name = toml::Value::try_from(v).unwrap().as_str().unwrap().to_string();
                assert_eq!(serde_name, v.name());
                assert_eq!(&T::parse_named("key", &serde_name).unwrap(), v);
                let back: T = toml::Value::String(v.name()).try_into().unwrap();
                assert_eq!(&back, v);
            }
            assert!(T::parse_named("key", "no-such").unwrap_err().to_string().contains(&T::names()));
        }
        check::<Arch>();
        check::<Budget>();
        check::<Precision>();
        check::<Init>();
        check::<DeviceChoice>();
        check::<ReferenceModel>();
        check::<crate::policy::PolicyName>();
    }

    /// A value from the file is named by its key, one from a flag by the flag; a key
    /// neither sets is named both ways.
    #[test]
    fn messages_name_keys_as_the_user_wrote_them() {
        let text = "[generations]\ngenerations = 0\n";
        let cfg = Config::parse_toml(text).unwrap();
        let mut names = KeyNames::from_toml(text);
        names.offer("generations.generations", "-n", false);
        let e = cfg.validate_named(&names).unwrap_err().to_string();
        assert!(e.starts_with("generations.generations must be at least 1"), "{e}");
        names.offer("generations.generations", "-n", true);
        let e = cfg.validate_named(&names).unwrap_err().to_string();
        assert!(e.starts_with("-n must be at least 1"), "{e}");
        let mut cfg = Config::default();
        cfg.generations.policy = crate::policy::PolicyName::Mix;
        let e = format!("{:#}", cfg.validate().unwrap_err());
        assert!(e.contains("needs generations.real_fraction"), "{e}");
        let mut names = KeyNames::from_toml("");
        names.offer("generations.real_fraction", "--real-fraction", false);
        let e = format!("{:#}", cfg.validate_named(&names).unwrap_err());
        assert!(e.contains("needs generations.real_fraction (--real-fraction)"), "{e}");
    }
}
