//! Decoder-only transformer language models.
//!
//! Two architectures share one interface: `gpt2` (pre-LayerNorm, GELU MLP, learned
//! positions) and `llama` (RMSNorm, rotary positions, SwiGLU MLP, optionally
//! grouped-query attention). Both tie the output projection to the token embedding
//! unless `tie_embeddings = false` gives them an `lm_head`. Parameter names follow the
//! Hugging Face conventions of each family (`transformer.h.0.attn.c_attn.weight`,
//! `model.layers.0.self_attn.q_proj.weight`); linear weights are stored as
//! `(out_features, in_features)` like `torch.nn.Linear` (GPT-2's original `Conv1D`
//! stores the transpose; `crate::interop` converts on the way out and in).
pub mod attention;
mod cache;
mod gpt2;
mod layers;
mod llama;
pub mod native;
pub mod precision;

pub use cache::{CacheStep, KvCache};
pub use gpt2::Gpt2;
pub use llama::Llama;

use crate::config::{Arch, ModelConfig};
use tch::{nn, Tensor};

/// Optimizer group of parameters that receive weight decay (matrices).
pub const DECAY_GROUP: usize = 1;
/// Optimizer group of parameters that do not (biases, norm gains).
pub const NO_DECAY_GROUP: usize = 0;

/// A language model of either architecture.
pub enum Model {
    Gpt2(Gpt2),
    Llama(Llama),
}

impl Model {
    /// Builds the model's parameters under `p` (freshly initialised).
    pub fn new(p: &nn::Path, cfg: &ModelConfig) -> Self {
        match cfg.arch {
            Arch::Gpt2 => Model::Gpt2(Gpt2::new(p, cfg)),
            Arch::Llama => Model::Llama(Llama::new(p, cfg)),
        }
    }

    pub fn config(&self) -> &ModelConfig {
        match self {
            Model::Gpt2(m) => &m.cfg,
            Model::Llama(m) => &m.cfg,
        }
    }

    /// Full-sequence forward pass: `idx` (B, T) token ids, T ≤ block_size → logits (B, T, V).
    pub fn forward(&self, idx: &Tensor, train: bool) -> Tensor {
        match self {
            Model::Gpt2(m) => m.forward(idx, train),
            Model::Llama(m) => m.forward(idx, train),
        }
    }

    /// [`Model::forward`] without dropout that also returns the last hidden state after
    /// the final norm (B, T, C): the vector the output projection reads, which the
    /// sequence-level measures embed passages with (`crate::analysis::manifold`).
    pub fn forward_with_hidden(&self, idx: &Tensor) -> (Tensor, Tensor) {
        match self {
            Model::Gpt2(m) => m.forward_with_hidden(idx),
            Model::Llama(m) => m.forward_with_hidden(idx),
        }
    }

    /// Incremental forward pass for decoding.
    ///
    /// `idx` (B, T) are new tokens; `start[b]` the position of row b's first new token.
    /// Their keys and values are written into `cache` at positions `start..start+T` of
    /// each row (below `block_size`), and each new token attends to the row's cached
    /// positions `0..=its own`. Returns logits (B, T, V). Rows may be at different
    /// positions.
    pub fn forward_cached(&self, idx: &Tensor, start: &[i64], cache: &KvCache) -> Tensor {
        let step = cache.step(start, idx.size()[1], idx.device());
        match self {
            Model::Gpt2(m) => m.forward_cached(idx, &step, cache),
            Model::Llama(m) => m.forward_cached(idx, &step, cache),
        }
    }

    /// Fills cache rows `rows` (int64, one per row of `idx`) with the keys and values of
    /// `idx` (n, L) at positions 0..L, as a decode of those tokens from position 0
    /// would; computes no logits, so it costs less than that decode.
    pub fn prefill(&self, idx: &Tensor, rows: &Tensor, cache: &KvCache) {
        match self {
            Model::Gpt2(m) => m.prefill(idx, rows, cache),
            Model::Llama(m) => m.prefill(idx, rows, cache),
        }
    }

    /// The weights copied for the CPU decoding step written in Rust
    /// ([`native::NativeModel`]); f32 copies, however the model is stored.
    pub fn native(&self) -> native::NativeModel {
        match self {
            Model::Gpt2(m) => m.native(),
            Model::Llama(m) => m.native(),
        }
    }

    /// An empty cache for `batch` rows of this model on `device`.
    pub fn new_cache(&self, batch: i64, device: tch::Device) -> KvCache {
        let c = self.config();
        KvCache::new(c.n_layer, batch, c.kv_heads(), c.block_size, c.head_dim(), device)
    }
}

/// Parameters of the model `cfg` builds (built once on the CPU and counted; tied
/// embeddings once).
pub fn parameters_of(cfg: &crate::config::ModelConfig) -> i64 {
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let _model = Model::new(&vs.root(), cfg);
    parameter_count(&vs)
}

/// Number of parameters of a model shape, counting tied embeddings once.
pub fn parameter_count(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
}

/// Parameters excluding position embeddings, as in the 6·N FLOPs-per-token estimate.
pub fn non_embedding_parameter_count(vs: &nn::VarStore) -> i64 {
    vs.variables().iter().filter(|(name, _)| !name.ends_with("wpe.weight")).map(|(_, t)| t.numel() as i64).sum()
}
