//! Small building blocks shared by both architectures.
use super::{DECAY_GROUP, NO_DECAY_GROUP};
use tch::{nn, Tensor};

/// A linear layer whose weight is decayed and whose bias is not.
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    /// `std` is the standard deviation of the normal initialisation (GPT-2 uses 0.02,
    /// and 0.02/√(2·n_layer) on projections that write into the residual stream).
    pub fn new(p: &nn::Path, in_dim: i64, out_dim: i64, bias: bool, std: f64) -> Self {
        let weight =
            p.set_group(DECAY_GROUP).var("weight", &[out_dim, in_dim], nn::Init::Randn { mean: 0.0, stdev: std });
        let bias = bias.then(|| p.set_group(NO_DECAY_GROUP).var("bias", &[out_dim], nn::Init::Const(0.0)));
        Self { weight, bias }
    }

    /// Weight and bias, for [`super::native`].
    pub fn parts(&self) -> (&Tensor, Option<&Tensor>) {
        (&self.weight, self.bias.as_ref())
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        super::precision::linear(x, &self.weight, self.bias.as_ref())
    }
}

/// LayerNorm (GPT-2) or RMSNorm (Llama) over the last dimension.
pub struct Norm {
    weight: Tensor,
    bias: Option<Tensor>,
    rms: bool,
    dim: i64,
    eps: f64,
}

impl Norm {
    pub fn layer_norm(p: &nn::Path, dim: i64, bias: bool, eps: f64) -> Self {
        let q = p.set_group(NO_DECAY_GROUP);
        let weight = q.var("weight", &[dim], nn::Init::Const(1.0));
        let bias = bias.then(|| q.var("bias", &[dim], nn::Init::Const(0.0)));
        Self { weight, bias, rms: false, dim, eps }
    }

    pub fn rms_norm(p: &nn::Path, dim: i64, eps: f64) -> Self {
        let weight = p.set_group(NO_DECAY_GROUP).var("weight", &[dim], nn::Init::Const(1.0));
        Self { weight, bias: None, rms: true, dim, eps }
    }

    /// Gain and bias, for [`super::native`].
    pub fn parts(&self) -> (&Tensor, Option<&Tensor>) {
        (&self.weight, self.bias.as_ref())
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        if self.rms {
            x.rms_norm([self.dim], Some(&self.weight), self.eps)
        } else {
            x.layer_norm([self.dim], Some(&self.weight), self.bias.as_ref(), self.eps, true)
        }
    }
}

/// The output projection: the token embedding itself when tied, else its own
/// `lm_head.weight` (V, C) at the root, as Hugging Face names it.
pub fn output_head(root: &nn::Path, embedding: &Tensor, cfg: &crate::config::ModelConfig) -> Tensor {
    if cfg.tie_embeddings {
        return embedding.shallow_clone();
    }
    (&root.set_group(DECAY_GROUP) / "lm_head").var(
        "weight",
        &[cfg.vocab_size, cfg.n_embd],
        nn::Init::Randn { mean: 0.0, stdev: 0.02 },
    )
}
