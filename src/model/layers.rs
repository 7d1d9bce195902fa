//! Small building blocks shared by both architectures.
use super::{KvCache, DECAY_GROUP, NO_DECAY_GROUP};
use tch::{nn, Kind, Tensor};

/// A linear layer whose weight is decayed and whose bias is not.
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    /// `std` is the standard deviation of the normal initialisation (GPT-2 uses 0.02,
    /// and 0.02/√(2·n_layer) on projections that write into the residual stream).
    pub fn new(p: &nn::Path, in_dim: i64, out_dim: i64, bias: bool, std: f64) -> Self {
        let weight = p.set_group(DECAY_GROUP).var("weight", &[out_dim, in_dim], nn::Init::Randn { mean: 0.0, stdev: std });
        let bias = bias.then(|| p.set_group(NO_DECAY_GROUP).var("bias", &[out_dim], nn::Init::Const(0.0)));
        Self { weight, bias }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, self.bias.as_ref())
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

/// Token positions `start[b] + t` for each row b and step t: (B, T) int64.
pub fn positions(start: &Tensor, t: i64) -> Tensor {
    start.unsqueeze(1) + Tensor::arange(t, (Kind::Int64, start.device())).unsqueeze(0)
}

/// Attention of new queries over a cache, after writing the new keys/values into it.
///
/// q: (B, nh, T, hs) and k, v: (B, nkv, T, hs) for the new tokens at positions `pos`
/// (B, T); nkv divides nh (grouped-query attention when smaller). Returns (B, nh, T, hs).
pub fn cached_attention(q: &Tensor, k: &Tensor, v: &Tensor, pos: &Tensor, cache: &KvCache, layer: usize) -> Tensor {
    let (b, nh, t, _) = q.size4().unwrap();
    let (_, nkv, _, hs) = k.size4().unwrap();
    let (cache_k, cache_v) = cache.layer(layer);
    let t_max = cache.capacity();
    // Scatter index: each new token's key goes to its own position on the time axis.
    let index = pos.view([b, 1, t, 1]).expand([b, nkv, t, hs], false);
    let _ = cache_k.shallow_clone().scatter_(2, &index, k);
    let _ = cache_v.shallow_clone().scatter_(2, &index, v);
    // A new token at position p sees cached positions 0..=p of its own row: (B, 1, T, Tmax).
    let slots = Tensor::arange(t_max, (Kind::Int64, q.device())).view([1, 1, 1, t_max]);
    let mask = slots.le_tensor(&pos.view([b, 1, t, 1]));
    Tensor::scaled_dot_product_attention(q, &cache_k, &cache_v, Some(mask), 0.0, false, None, nkv != nh)
}
