//! A transformers `config.json` to and from lmloop's [`ModelConfig`].
//!
//! GPT-2 maps to `GPT2LMHeadModel` (`n_positions`, `n_inner`, `layer_norm_epsilon`, the
//! tanh GELU that transformers calls `gelu_new`), Llama to `LlamaForCausalLM`
//! (`intermediate_size`, `num_key_value_heads`, `rms_norm_eps`, the rotary base both as
//! `rope_theta` and, as transformers 5 writes it, in `rope_parameters`). Reading a
//! folder, a key that is absent takes transformers' default for that model type, and
//! anything lmloop does not implement (another architecture, RoPE scaling, biased
//! Llama projections, another activation) is refused with one sentence naming it.
use crate::config::{Arch, ModelConfig};
use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};

/// What lmloop can import, for messages.
pub const SUPPORTED: &str = "GPT2LMHeadModel (model_type \"gpt2\") and LlamaForCausalLM (model_type \"llama\")";

/// GPT-2's activation names in transformers that are the tanh approximation of GELU
/// lmloop's GPT-2 computes (`gelu_fast` is the same formula, factored differently).
const TANH_GELU: [&str; 3] = ["gelu_new", "gelu_pytorch_tanh", "gelu_fast"];

/// The transformers `config.json` of a model of shape `cfg` whose tokenizer begins
/// documents with token `bos` and ends them with `eos`.
pub fn to_hf(cfg: &ModelConfig, bos: u32, eos: u32) -> Value {
    match cfg.arch {
        Arch::Gpt2 => json!({
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "vocab_size": cfg.vocab_size,
            "n_positions": cfg.block_size,
            "n_embd": cfg.n_embd,
            "n_layer": cfg.n_layer,
            "n_head": cfg.n_head,
            "n_inner": cfg.mlp_hidden(),
            "activation_function": "gelu_new",
            "resid_pdrop": cfg.dropout,
            "embd_pdrop": cfg.dropout,
            "attn_pdrop": cfg.dropout,
            "layer_norm_epsilon": cfg.norm_eps,
            "initializer_range": 0.02,
            "scale_attn_weights": true,
            "scale_attn_by_inverse_layer_idx": false,
            "reorder_and_upcast_attn": false,
            "tie_word_embeddings": cfg.tie_embeddings,
            "bos_token_id": bos,
            "eos_token_id": eos,
            "use_cache": true,
            "dtype": "float32",
        }),
        Arch::Llama => json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": cfg.vocab_size,
            "max_position_embeddings": cfg.block_size,
            "hidden_size": cfg.n_embd,
            "intermediate_size": cfg.mlp_hidden(),
            "num_hidden_layers": cfg.n_layer,
            "num_attention_heads": cfg.n_head,
            "num_key_value_heads": cfg.kv_heads(),
            "head_dim": cfg.head_dim(),
            "hidden_act": "silu",
            "rms_norm_eps": cfg.norm_eps,
            // transformers 5 reads `rope_parameters`, earlier versions `rope_theta`.
            "rope_theta": cfg.rope_theta,
            "rope_parameters": { "rope_type": "default", "rope_theta": cfg.rope_theta },
            "attention_bias": false,
            "attention_dropout": cfg.dropout,
            "mlp_bias": false,
            "tie_word_embeddings": cfg.tie_embeddings,
            "initializer_range": 0.02,
            "bos_token_id": bos,
            "eos_token_id": eos,
            "use_cache": true,
            "dtype": "float32",
        }),
    }
}

/// The lmloop model shape of the transformers `config.json` of `folder` (named in
/// messages); `dropout` is lmloop's training setting, not read from the file.
pub fn from_hf(config: &Value, folder: &str, dropout: f64) -> Result<ModelConfig> {
    let keys = Keys { config, folder };
    let model_type = config.get("model_type").and_then(Value::as_str);
    let cfg = match model_type {
        Some("gpt2") => gpt2(&keys, dropout)?,
        Some("llama") => llama(&keys, dropout)?,
        Some(other) => {
            let architectures = config
                .get("architectures")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
                .filter(|a| !a.is_empty())
                .map(|a| format!(" ({a})"))
                .unwrap_or_default();
            bail!("{folder} holds a '{other}' model{architectures}, which lmloop does not implement; it imports {SUPPORTED}")
        }
        None => bail!("{folder}/config.json names no model_type; lmloop imports {SUPPORTED}"),
    };
    cfg.validate().map_err(|e| anyhow!("{folder}/config.json describes a model lmloop cannot build: {e}"))?;
    Ok(cfg)
}

fn gpt2(keys: &Keys, dropout: f64) -> Result<ModelConfig> {
    let folder = keys.folder;
    let activation = keys.string("activation_function", "gelu_new")?;
    if !TANH_GELU.contains(&activation.as_str()) {
        bail!(
            "{folder} is a GPT-2 with activation_function '{activation}'; lmloop's GPT-2 computes the tanh GELU ({}) only",
            TANH_GELU.join(", ")
        );
    }
    for (key, default, wanted) in [
        ("scale_attn_weights", true, true),
        ("scale_attn_by_inverse_layer_idx", false, false),
        ("add_cross_attention", false, false),
    ] {
        if keys.boolean(key, default)? != wanted {
            bail!("{folder} is a GPT-2 with {key} = {}, which lmloop does not implement", !wanted);
        }
    }
    let n_embd = keys.int("n_embd", 768)?;
    let n_inner = match keys.config.get("n_inner") {
        None | Some(Value::Null) => 4 * n_embd,
        Some(_) => keys.int("n_inner", 0)?,
    };
    Ok(ModelConfig {
        arch: Arch::Gpt2,
        n_layer: keys.int("n_layer", 12)?,
        n_head: keys.int("n_head", 12)?,
        n_embd,
        block_size: keys.int("n_positions", 1024)?,
        vocab_size: keys.int("vocab_size", 50257)?,
        dropout,
        bias: true,
        intermediate_size: Some(n_inner),
        norm_eps: keys.float("layer_norm_epsilon", 1e-5)?,
        tie_embeddings: keys.boolean("tie_word_embeddings", true)?,
        ..ModelConfig::default()
    })
}

fn llama(keys: &Keys, dropout: f64) -> Result<ModelConfig> {
    let folder = keys.folder;
    let activation = keys.string("hidden_act", "silu")?;
    if activation != "silu" {
        bail!("{folder} is a Llama with hidden_act '{activation}'; lmloop's Llama computes SwiGLU with silu only");
    }
    for key in ["attention_bias", "mlp_bias"] {
        if keys.boolean(key, false)? {
            bail!("{folder} is a Llama with {key} = true; lmloop's Llama has no biases");
        }
    }
    let n_embd = keys.int("hidden_size", 4096)?;
    let n_head = keys.int("num_attention_heads", 32)?;
    if let Some(head_dim) = keys.config.get("head_dim").filter(|v| !v.is_null()) {
        if head_dim.as_i64() != Some(n_embd / n_head) {
            bail!(
                "{folder} is a Llama with head_dim {head_dim} other than hidden_size / num_attention_heads ({}); lmloop does not implement that",
                n_embd / n_head
            );
        }
    }
    let n_kv_head = match keys.config.get("num_key_value_heads") {
        None | Some(Value::Null) => n_head,
        Some(_) => keys.int("num_key_value_heads", n_head)?,
    };
    Ok(ModelConfig {
        arch: Arch::Llama,
        n_layer: keys.int("num_hidden_layers", 32)?,
        n_head,
        n_embd,
        block_size: keys.int("max_position_embeddings", 2048)?,
        vocab_size: keys.int("vocab_size", 32000)?,
        dropout,
        bias: false,
        intermediate_size: Some(keys.int("intermediate_size", 11008)?),
        n_kv_head: (n_kv_head != n_head).then_some(n_kv_head),
        norm_eps: keys.float("rms_norm_eps", 1e-6)?,
        rope_theta: rope_theta(keys)?,
        tie_embeddings: keys.boolean("tie_word_embeddings", false)?,
        ..ModelConfig::default()
    })
}

/// The rotary base of a Llama config, refusing any RoPE scaling: `rope_parameters`
/// (transformers 5) or `rope_theta` with `rope_scaling` (earlier versions).
fn rope_theta(keys: &Keys) -> Result<f64> {
    let folder = keys.folder;
    let legacy = keys.float("rope_theta", 10_000.0)?;
    let parameters = [keys.config.get("rope_parameters"), keys.config.get("rope_scaling")]
        .into_iter()
        .flatten()
        .find(|v| !v.is_null());
    let Some(parameters) = parameters else { return Ok(legacy) };
    let Some(parameters) = parameters.as_object() else {
        bail!("{folder}/config.json has rope parameters {parameters} that lmloop cannot read");
    };
    let rope_type =
        parameters.get("rope_type").or_else(|| parameters.get("type")).and_then(Value::as_str).unwrap_or("default");
    if rope_type != "default" {
        bail!("{folder} is a Llama with '{rope_type}' RoPE scaling; lmloop implements plain rotary positions (rope_type \"default\") only");
    }
    if parameters.get("partial_rotary_factor").and_then(Value::as_f64).is_some_and(|f| f != 1.0) {
        bail!("{folder} is a Llama with partial rotary positions; lmloop rotates the whole head");
    }
    match parameters.get("rope_theta") {
        Some(v) => v.as_f64().ok_or_else(|| anyhow!("{folder}/config.json has a rope_theta that is not a number: {v}")),
        None => Ok(legacy),
    }
}

/// Typed reads of config keys, with transformers' default when a key is absent or null.
struct Keys<'a> {
    config: &'a Value,
    folder: &'a str,
}

impl Keys<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.config.get(key).filter(|v| !v.is_null())
    }

    fn wrong(&self, key: &str, value: &Value, what: &str) -> anyhow::Error {
        anyhow!("{}/config.json has {key} = {value}, where {what} is expected", self.folder)
    }

    fn int(&self, key: &str, default: i64) -> Result<i64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_i64().ok_or_else(|| self.wrong(key, v, "a whole number")),
        }
    }

    fn float(&self, key: &str, default: f64) -> Result<f64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| self.wrong(key, v, "a number")),
        }
    }

    fn boolean(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.wrong(key, v, "true or false")),
        }
    }

    fn string(&self, key: &str, default: &str) -> Result<String> {
        match self.get(key) {
            None => Ok(default.to_string()),
            Some(v) => v.as_str().map(str::to_string).ok_or_else(|| self.wrong(key, v, "a string")),
        }
    }
}
