//! GPT-2: pre-LayerNorm blocks, GELU MLP, learned positions, tied embeddings (unless
//! `tie_embeddings = false`).
use super::cache::{write_prefix, CacheStep};
use super::layers::{output_head, Linear, Norm};
use super::native::{LayerTensors, ModelTensors};
use super::{KvCache, DECAY_GROUP};
use crate::config::ModelConfig;
use tch::{nn, Kind, Tensor};

/// GPT-2's initialisation scale.
const INIT_STD: f64 = 0.02;

struct CausalSelfAttention {
    c_attn: Linear,
    c_proj: Linear,
    n_head: i64,
    dropout: f64,
}

impl CausalSelfAttention {
    fn new(p: &nn::Path, cfg: &ModelConfig) -> Self {
        let e = cfg.n_embd;
        // Residual projections start smaller so the stream's variance does not grow with depth.
        let proj_std = INIT_STD / (2.0 * cfg.n_layer as f64).sqrt();
        Self {
            c_attn: Linear::new(&(p / "c_attn"), e, 3 * e, cfg.bias, INIT_STD),
            c_proj: Linear::new(&(p / "c_proj"), e, e, cfg.bias, proj_std),
            n_head: cfg.n_head,
            dropout: cfg.dropout,
        }
    }

    /// Splits the fused projection into per-head q, k, v: each (B, nh, T, hs).
    fn qkv(&self, x: &Tensor) -> (Tensor, Tensor, Tensor) {
        let (b, t, c) = x.size3().unwrap();
        let heads = |z: &Tensor| z.view([b, t, self.n_head, c / self.n_head]).transpose(1, 2);
        let qkv = self.c_attn.forward(x).split(c, 2); // 3 × (B, T, C)
        (heads(&qkv[0]), heads(&qkv[1]), heads(&qkv[2]))
    }

    fn merge(&self, y: Tensor, x: &Tensor) -> Tensor {
        let (b, t, c) = x.size3().unwrap();
        y.transpose(1, 2).contiguous().view([b, t, c]) // (B, T, C)
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let (q, k, v) = self.qkv(x);
        let dropout = if train { self.dropout } else { 0.0 };
        let y = Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, dropout, true, None, false);
        self.c_proj.forward(&self.merge(y, x)).dropout(dropout, train)
    }

    fn forward_cached(&self, x: &Tensor, step: &CacheStep, cache: &KvCache, layer: usize) -> Tensor {
        let (q, k, v) = self.qkv(x);
        self.c_proj.forward(&step.attend(&q, &k, &v, cache, layer))
    }
}

struct Mlp {
    c_fc: Linear,
    c_proj: Linear,
    dropout: f64,
}

impl Mlp {
    fn new(p: &nn::Path, cfg: &ModelConfig) -> Self {
        let proj_std = INIT_STD / (2.0 * cfg.n_layer as f64).sqrt();
        let h = cfg.mlp_hidden();
        Self {
            c_fc: Linear::new(&(p / "c_fc"), cfg.n_embd, h, cfg.bias, INIT_STD),
            c_proj: Linear::new(&(p / "c_proj"), h, cfg.n_embd, cfg.bias, proj_std),
            dropout: cfg.dropout,
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        // GPT-2 uses the tanh approximation of GELU.
        self.c_proj.forward(&self.c_fc.forward(x).gelu("tanh")).dropout(self.dropout, train)
    }
}

struct Block {
    ln_1: Norm,
    attn: CausalSelfAttention,
    ln_2: Norm,
    mlp: Mlp,
}

impl Block {
    fn new(p: &nn::Path, cfg: &ModelConfig) -> Self {
        Self {
            ln_1: Norm::layer_norm(&(p / "ln_1"), cfg.n_embd, cfg.bias, cfg.norm_eps),
            attn: CausalSelfAttention::new(&(p / "attn"), cfg),
            ln_2: Norm::layer_norm(&(p / "ln_2"), cfg.n_embd, cfg.bias, cfg.norm_eps),
            mlp: Mlp::new(&(p / "mlp"), cfg),
        }
    }

    /// The block's residual wiring, the same for training, decoding and prefill:
    /// `x + attend(attn, ln_1(x))`, then `+ mlp(ln_2(·))`. `attend` returns the
    /// attention output projected back to the width (B, T, C).
    fn apply(&self, x: &Tensor, train: bool, attend: impl FnOnce(&CausalSelfAttention, &Tensor) -> Tensor) -> Tensor {
        let x = x + attend(&self.attn, &self.ln_1.forward(x));
        &x + self.mlp.forward(&self.ln_2.forward(&x), train)
    }
}

pub struct Gpt2 {
    pub cfg: ModelConfig,
    wte: Tensor,
    wpe: Tensor,
    h: Vec<Block>,
    ln_f: Norm,
    /// The output projection (V, C): `wte` itself unless untied.
    lm_head: Tensor,
}

impl Gpt2 {
    pub fn new(p: &nn::Path, cfg: &ModelConfig) -> Self {
        let t = p / "transformer";
        let init = nn::Init::Randn { mean: 0.0, stdev: INIT_STD };
        let emb = t.set_group(DECAY_GROUP);
        let wte = (&emb / "wte").var("weight", &[cfg.vocab_size, cfg.n_embd], init);
        Self {
            cfg: cfg.clone(),
            wpe: (&emb / "wpe").var("weight", &[cfg.block_size, cfg.n_embd], init),
            h: (0..cfg.n_layer).map(|i| Block::new(&(&t / "h" / i), cfg)).collect(),
            ln_f: Norm::layer_norm(&(&t / "ln_f"), cfg.n_embd, cfg.bias, cfg.norm_eps),
            lm_head: output_head(p, &wte, cfg),
            wte,
        }
    }

    fn embed(&self, idx: &Tensor, pos: &Tensor) -> Tensor {
        Tensor::embedding(&self.wte, idx, -1, false, false) + Tensor::embedding(&self.wpe, pos, -1, false, false)
    }

    fn head(&self, x: &Tensor) -> Tensor {
        super::precision::logits(&self.ln_f.forward(x), &self.lm_head) // (B, T, V), float32
    }

    pub fn forward(&self, idx: &Tensor, train: bool) -> Tensor {
        self.head(&self.trunk(idx, train))
    }

    /// The blocks' output before the final norm (B, T, C).
    fn trunk(&self, idx: &Tensor, train: bool) -> Tensor {
        let t = idx.size()[1];
        let pos = Tensor::arange(t, (Kind::Int64, idx.device()));
        let mut x = self.embed(idx, &pos).dropout(self.cfg.dropout, train); // (B, T, C)
        for block in &self.h {
            x = block.apply(&x, train, |attn, h| attn.forward(h, train));
        }
        x
    }

    pub fn forward_with_hidden(&self, idx: &Tensor) -> (Tensor, Tensor) {
        let h = self.ln_f.forward(&self.trunk(idx, false));
        (super::precision::logits(&h, &self.lm_head), h)
    }

    pub fn forward_cached(&self, idx: &Tensor, step: &CacheStep, cache: &KvCache) -> Tensor {
        let mut x = self.embed(idx, &step.pos); // (B, T, C)
        for (i, block) in self.h.iter().enumerate() {
            x = block.apply(&x, false, |attn, h| attn.forward_cached(h, step, cache, i));
        }
        self.head(&x)
    }

    pub(super) fn native(&self) -> super::native::NativeModel {
        let layers = self
            .h
            .iter()
            .map(|b| LayerTensors {
                norm1: b.ln_1.parts(),
                qkv: vec![b.attn.c_attn.parts()],
                proj: b.attn.c_proj.parts(),
                norm2: b.ln_2.parts(),
                up: vec![b.mlp.c_fc.parts()],
                down: b.mlp.c_proj.parts(),
            })
            .collect();
        let t = ModelTensors {
            embed: &self.wte,
            learned_positions: Some(&self.wpe),
            rotary: None,
            layers,
            norm_f: self.ln_f.parts(),
            head: &self.lm_head,
        };
        super::native::NativeModel::new(&self.cfg, t)
    }

    pub fn prefill(&self, idx: &Tensor, rows: &Tensor, cache: &KvCache) {
        let t = idx.size()[1];
        let mut x = self.embed(idx, &Tensor::arange(t, (Kind::Int64, idx.device()))); // (n, L, C)
        let last = self.h.len() - 1;
        for (i, block) in self.h.iter().enumerate() {
            if i == last {
                // The last layer's output feeds only logits, which a prefill does not need.
                let (_, k, v) = block.attn.qkv(&block.ln_1.forward(&x));
                write_prefix(cache, i, rows, &k, &v);
                break;
            }
            x = block.apply(&x, false, |attn, h| {
                let (q, k, v) = attn.qkv(h);
                write_prefix(cache, i, rows, &k, &v);
                let y = Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, true, None, false);
                attn.c_proj.forward(&attn.merge(y, h))
            });
        }
    }
}
