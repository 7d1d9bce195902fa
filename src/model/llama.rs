//! Llama: RMSNorm, rotary positions, SwiGLU MLP, no biases, grouped-query attention
//! when `n_kv_head < n_head`, tied embeddings unless `tie_embeddings = false`.
use super::cache::{write_prefix, CacheStep};
use super::layers::{output_head, Linear, Norm};
use super::native::{LayerTensors, ModelTensors};
use super::{KvCache, DECAY_GROUP};
use crate::config::ModelConfig;
use tch::{nn, Kind, Tensor};

const INIT_STD: f64 = 0.02;

/// Rotary position tables: cos and sin, each (block_size, head_dim), halves repeated
/// so that `x·cos + rotate_half(x)·sin` rotates pairs (i, i + hs/2).
struct Rotary {
    cos: Tensor,
    sin: Tensor,
}

/// Rotations of tokens at given positions, (B, 1, T, hs) each, shared by every layer.
struct Rotation {
    cos: Tensor,
    sin: Tensor,
}

impl Rotary {
    fn new(cfg: &ModelConfig, device: tch::Device) -> Self {
        let hs = cfg.head_dim();
        let opts = (Kind::Float, device);
        let inv_freq = (Tensor::arange_start_step(0, hs, 2, opts) * (-cfg.rope_theta.ln() / hs as f64)).exp(); // (hs/2)
        let t = Tensor::arange(cfg.block_size, opts);
        let freqs = t.outer(&inv_freq); // (T, hs/2)
        let emb = Tensor::cat(&[&freqs, &freqs], 1); // (T, hs)
        Self { cos: emb.cos(), sin: emb.sin() }
    }

    /// The rotation of tokens at `pos` (B, T), built once per decoding step.
    fn at(&self, pos: &Tensor) -> Rotation {
        let (b, t) = pos.size2().unwrap();
        let hs = self.cos.size()[1];
        let flat = pos.view([-1]);
        let table = |x: &Tensor| x.index_select(0, &flat).view([b, 1, t, hs]);
        Rotation { cos: table(&self.cos), sin: table(&self.sin) }
    }

    /// Rotation for a full sequence at positions 0..T (training path).
    fn prefix(&self, t: i64) -> Rotation {
        // (T, hs) broadcasts over (B, nh)
        Rotation { cos: self.cos.narrow(0, 0, t), sin: self.sin.narrow(0, 0, t) }
    }
}

impl Rotation {
    /// Rotates x (B, nh, T, hs).
    fn apply(&self, x: &Tensor) -> Tensor {
        let halves = x.chunk(2, 3);
        let rotated = Tensor::cat(&[&halves[1].neg(), &halves[0]], 3);
        // The tables are float32; under mixed precision x is not.
        let (cos, sin) = (self.cos.to_kind(x.kind()), self.sin.to_kind(x.kind()));
        x * cos + rotated * sin
    }
}

struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    n_head: i64,
    n_kv_head: i64,
    dropout: f64,
}

impl Attention {
    fn new(p: &nn::Path, cfg: &ModelConfig) -> Self {
        let e = cfg.n_embd;
        let kv = cfg.kv_heads() * cfg.head_dim();
        let proj_std = INIT_STD / (2.0 * cfg.n_layer as f64).sqrt();
        Self {
            q_proj: Linear::new(&(p / "q_proj"), e, e, false, INIT_STD),
            k_proj: Linear::new(&(p / "k_proj"), e, kv, false, INIT_STD),
            v_proj: Linear::new(&(p / "v_proj"), e, kv, false, INIT_STD),
            o_proj: Linear::new(&(p / "o_proj"), e, e, false, proj_std),
            n_head: cfg.n_head,
            n_kv_head: cfg.kv_heads(),
            dropout: cfg.dropout,
        }
    }

    /// (B, T, heads·hs) → (B, heads, T, hs).
    fn heads(z: Tensor, heads: i64) -> Tensor {
        let (b, t, c) = z.size3().unwrap();
        z.view([b, t, heads, c / heads]).transpose(1, 2)
    }

    /// Rotated queries (B, nh, T, hs), rotated keys and the values (B, nkv, T, hs).
    fn qkv(&self, x: &Tensor, rot: &Rotation) -> (Tensor, Tensor, Tensor) {
        (
            rot.apply(&Self::heads(self.q_proj.forward(x), self.n_head)),
            rot.apply(&Self::heads(self.k_proj.forward(x), self.n_kv_head)),
            Self::heads(self.v_proj.forward(x), self.n_kv_head),
        )
    }

    fn merge(&self, y: Tensor) -> Tensor {
        let (b, nh, t, hs) = y.size4().unwrap();
        self.o_proj.forward(&y.transpose(1, 2).contiguous().view([b, t, nh * hs]))
    }

    fn forward(&self, x: &Tensor, rot: &Rotation, train: bool) -> Tensor {
        let (q, k, v) = self.qkv(x, rot);
        let dropout = if train { self.dropout } else { 0.0 };
        let gqa = self.n_kv_head != self.n_head;
        let y = Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, dropout, true, None, gqa);
        self.merge(y).dropout(dropout, train)
    }

    fn forward_cached(&self, x: &Tensor, rot: &Rotation, step: &CacheStep, cache: &KvCache, layer: usize) -> Tensor {
        let (q, k, v) = self.qkv(x, rot);
        self.o_proj.forward(&step.attend(&q, &k, &v, cache, layer))
    }
}

struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
    dropout: f64,
}

impl Mlp {
    fn new(p: &nn::Path, cfg: &ModelConfig) -> Self {
        let h = cfg.mlp_hidden();
        let proj_std = INIT_STD / (2.0 * cfg.n_layer as f64).sqrt();
        Self {
            gate_proj: Linear::new(&(p / "gate_proj"), cfg.n_embd, h, false, INIT_STD),
            up_proj: Linear::new(&(p / "up_proj"), cfg.n_embd, h, false, INIT_STD),
            down_proj: Linear::new(&(p / "down_proj"), h, cfg.n_embd, false, proj_std),
            dropout: cfg.dropout,
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let gated = self.gate_proj.forward(x).silu() * self.up_proj.forward(x); // SwiGLU
        self.down_proj.forward(&gated).dropout(self.dropout, train)
    }
}

struct Layer {
    input_layernorm: Norm,
    self_attn: Attention,
    post_attention_layernorm: Norm,
    mlp: Mlp,
}

impl Layer {
    /// The layer's residual wiring, the same for training, decoding and prefill:
    /// `x + attend(self_attn, input_layernorm(x))`, then
    /// `+ mlp(post_attention_layernorm(·))`. `attend` returns the attention output
    /// projected back to the width (B, T, C).
    fn apply(&self, x: &Tensor, train: bool, attend: impl FnOnce(&Attention, &Tensor) -> Tensor) -> Tensor {
        let x = x + attend(&self.self_attn, &self.input_layernorm.forward(x));
        &x + self.mlp.forward(&self.post_attention_layernorm.forward(&x), train)
    }
}

pub struct Llama {
    pub cfg: ModelConfig,
    embed_tokens: Tensor,
    layers: Vec<Layer>,
    norm: Norm,
    rope: Rotary,
    /// The output projection (V, C): `embed_tokens` itself unless untied.
    lm_head: Tensor,
}

impl Llama {
    pub fn new(p: &nn::Path, cfg: &ModelConfig) -> Self {
        let m = p / "model";
        let embed = (&m.set_group(DECAY_GROUP) / "embed_tokens").var(
            "weight",
            &[cfg.vocab_size, cfg.n_embd],
            nn::Init::Randn { mean: 0.0, stdev: INIT_STD },
        );
        let layers = (0..cfg.n_layer)
            .map(|i| {
                let l = &m / "layers" / i;
                Layer {
                    input_layernorm: Norm::rms_norm(&(&l / "input_layernorm"), cfg.n_embd, cfg.norm_eps),
                    self_attn: Attention::new(&(&l / "self_attn"), cfg),
                    post_attention_layernorm: Norm::rms_norm(
                        &(&l / "post_attention_layernorm"),
                        cfg.n_embd,
                        cfg.norm_eps,
                    ),
                    mlp: Mlp::new(&(&l / "mlp"), cfg),
                }
            })
            .collect();
        Self {
            cfg: cfg.clone(),
            lm_head: output_head(p, &embed, cfg),
            embed_tokens: embed,
            layers,
            norm: Norm::rms_norm(&(&m / "norm"), cfg.n_embd, cfg.norm_eps),
            rope: Rotary::new(cfg, p.device()),
        }
    }

    fn head(&self, x: &Tensor) -> Tensor {
        super::precision::logits(&self.norm.forward(x), &self.lm_head) // (B, T, V), float32
    }

    pub fn forward(&self, idx: &Tensor, train: bool) -> Tensor {
        self.head(&self.trunk(idx, train))
    }

    /// The layers' output before the final norm (B, T, C).
    fn trunk(&self, idx: &Tensor, train: bool) -> Tensor {
        let rot = self.rope.prefix(idx.size()[1]);
        let mut x = Tensor::embedding(&self.embed_tokens, idx, -1, false, false).dropout(self.cfg.dropout, train);
        for l in &self.layers {
            x = l.apply(&x, train, |attn, h| attn.forward(h, &rot, train));
        }
        x
    }

    pub fn forward_with_hidden(&self, idx: &Tensor) -> (Tensor, Tensor) {
        let h = self.norm.forward(&self.trunk(idx, false));
        (super::precision::logits(&h, &self.lm_head), h)
    }

    pub fn forward_cached(&self, idx: &Tensor, step: &CacheStep, cache: &KvCache) -> Tensor {
        let rot = self.rope.at(&step.pos);
        let mut x = Tensor::embedding(&self.embed_tokens, idx, -1, false, false);
        for (i, l) in self.layers.iter().enumerate() {
            x = l.apply(&x, false, |attn, h| attn.forward_cached(h, &rot, step, cache, i));
        }
        self.head(&x)
    }

    pub(super) fn native(&self) -> super::native::NativeModel {
        let layers = self
            .layers
            .iter()
            .map(|l| {
                let a = &l.self_attn;
                LayerTensors {
                    norm1: l.input_layernorm.parts(),
                    qkv: vec![a.q_proj.parts(), a.k_proj.parts(), a.v_proj.parts()],
                    proj: a.o_proj.parts(),
                    norm2: l.post_attention_layernorm.parts(),
                    up: vec![l.mlp.gate_proj.parts(), l.mlp.up_proj.parts()],
                    down: l.mlp.down_proj.parts(),
                }
            })
            .collect();
        let t = ModelTensors {
            embed: &self.embed_tokens,
            learned_positions: None,
            rotary: Some((&self.rope.cos, &self.rope.sin)),
            layers,
            norm_f: self.norm.parts(),
            head: &self.lm_head,
        };
        super::native::NativeModel::new(&self.cfg, t)
    }

    pub fn prefill(&self, idx: &Tensor, rows: &Tensor, cache: &KvCache) {
        let rot = self.rope.prefix(idx.size()[1]);
        let mut x = Tensor::embedding(&self.embed_tokens, idx, -1, false, false); // (n, L, C)
        let last = self.layers.len() - 1;
        for (i, l) in self.layers.iter().enumerate() {
            if i == last {
                // The last layer's output feeds only logits, which a prefill does not need.
                let (_, k, v) = l.self_attn.qkv(&l.input_layernorm.forward(&x), &rot);
                write_prefix(cache, i, rows, &k, &v);
                break;
            }
            x = l.apply(&x, false, |attn, h| {
                let (q, k, v) = attn.qkv(h, &rot);
                write_prefix(cache, i, rows, &k, &v);
                let gqa = attn.n_kv_head != attn.n_head;
                attn.merge(Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, true, None, gqa))
            });
        }
    }
}
