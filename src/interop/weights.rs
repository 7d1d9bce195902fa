//! Parameter names and layout between lmloop and transformers checkpoints.
//!
//! lmloop names its parameters as transformers does, so names carry over; three things
//! differ. transformers' GPT-2 is built from `Conv1D`, which stores the weights of
//! `c_attn`, `attn.c_proj`, `c_fc` and `mlp.c_proj` as (in, out), the transpose of
//! lmloop's (out, in) linear weights (the square `attn.c_proj` would even load silently
//! transposed). Files written by transformers may also hold buffers (GPT-2's causal mask
//! `attn.bias`, an older Llama's `rotary_emb.inv_freq`), a copy of a tied
//! `lm_head.weight`, and GPT-2 keys without the `transformer.` prefix. And a bias-free
//! lmloop GPT-2 is written with zero biases, since `GPT2LMHeadModel` always has them.
use crate::config::{Arch, ModelConfig};
use crate::model::Model;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

/// The single weights file of a folder, as transformers names it.
pub const WEIGHTS: &str = "model.safetensors";
/// The index of a folder whose weights are split into shards.
pub const WEIGHTS_INDEX: &str = "model.safetensors.index.json";

/// True for the GPT-2 weights transformers' `Conv1D` stores as (in, out).
fn is_conv1d(arch: Arch, name: &str) -> bool {
    arch == Arch::Gpt2
        && [".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight"]
            .iter()
            .any(|suffix| name.ends_with(suffix))
}

/// The parameters of `vs` (a model of shape `cfg`) as transformers names and lays
/// them out: float32, on the CPU, contiguous, sorted by name.
pub fn to_hf(vs: &nn::VarStore, cfg: &ModelConfig) -> Vec<(String, Tensor)> {
    let mut tensors: HashMap<String, Tensor> = vs
        .variables()
        .into_iter()
        .map(|(name, t)| {
            let t = t.detach().to_device(Device::Cpu).to_kind(Kind::Float);
            let t = if is_conv1d(cfg.arch, &name) { t.tr() } else { t };
            (name, t.contiguous())
        })
        .collect();
    if cfg.arch == Arch::Gpt2 && !cfg.bias {
        // The same shape with biases lists every bias GPT2LMHeadModel expects.
        let with_bias = nn::VarStore::new(Device::Cpu);
        let _ = Model::new(&with_bias.root(), &ModelConfig { bias: true, ..cfg.clone() });
        for (name, t) in with_bias.variables() {
            tensors.entry(name).or_insert_with(|| Tensor::zeros(t.size(), (Kind::Float, Device::Cpu)));
        }
    }
    let mut tensors: Vec<(String, Tensor)> = tensors.into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    tensors
}

/// The tensors of a transformers checkpoint renamed and laid out for an lmloop model of
/// shape `cfg`. GPT-2's position table is cut to `cfg.block_size` rows when the model
/// is imported with a shorter context than the folder's.
pub fn from_hf(tensors: Vec<(String, Tensor)>, cfg: &ModelConfig) -> HashMap<String, Tensor> {
    let mut out = HashMap::new();
    for (name, t) in tensors {
        let name = match cfg.arch {
            Arch::Gpt2 if name != "lm_head.weight" && !name.starts_with("transformer.") => {
                format!("transformer.{name}")
            }
            _ => name,
        };
        let buffer = name.ends_with(".attn.bias")
            || name.ends_with(".attn.masked_bias")
            || name.ends_with("rotary_emb.inv_freq");
        let tied_copy = cfg.tie_embeddings && name == "lm_head.weight";
        if buffer || tied_copy {
            continue;
        }
        let t = if is_conv1d(cfg.arch, &name) { t.tr().contiguous() } else { t };
        let t = match name.as_str() {
            "transformer.wpe.weight" if t.size()[0] > cfg.block_size => t.narrow(0, 0, cfg.block_size).contiguous(),
            _ => t,
        };
        out.insert(name, t);
    }
    out
}

/// Writes `tensors` as a safetensors file carrying the `format: pt` metadata that
/// transformers looks for.
pub fn write_safetensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, t)| {
            let values = Vec::<f32>::try_from(t.to_kind(Kind::Float).contiguous().view([-1]))?;
            let shape = t.size().iter().map(|&d| d as usize).collect();
            Ok((name.clone(), shape, values.iter().flat_map(|v| v.to_le_bytes()).collect()))
        })
        .collect::<Result<_>>()?;
    let views = bytes
        .iter()
        .map(|(name, shape, data)| {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                .map_err(|e| anyhow!("cannot lay out tensor '{name}': {e:?}"))?;
            Ok((name.as_str(), view))
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    safetensors::tensor::serialize_to_file(views, &metadata, path)
        .map_err(|e| anyhow!("cannot write weights {}: {e:?}", path.display()))
}

/// The tensors of a transformers model folder: `model.safetensors`, or every shard
/// `model.safetensors.index.json` lists.
pub fn read_folder(dir: &Path) -> Result<Vec<(String, Tensor)>> {
    let single = dir.join(WEIGHTS);
    let index = dir.join(WEIGHTS_INDEX);
    let files: Vec<std::path::PathBuf> = if single.is_file() {
        vec![single]
    } else if index.is_file() {
        let index: serde_json::Value = crate::durable::read_json(&index)?;
        let map = index
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| anyhow!("{} has no weight_map", dir.join(WEIGHTS_INDEX).display()))?;
        let mut shards: Vec<&str> = map.values().filter_map(|v| v.as_str()).collect();
        shards.sort_unstable();
        shards.dedup();
        shards.into_iter().map(|s| dir.join(s)).collect()
    } else if dir.join("pytorch_model.bin").exists() {
        bail!(
            "{} holds its weights as pytorch_model.bin only; lmloop reads safetensors (save the model again with save_pretrained, which writes model.safetensors)",
            dir.display()
        );
    } else {
        bail!("{} has no {WEIGHTS} (nor {WEIGHTS_INDEX})", dir.display());
    };
    let mut tensors = Vec::new();
    for file in files {
        tensors.extend(
            Tensor::read_safetensors(&file).with_context(|| format!("cannot read weights {}", file.display()))?,
        );
    }
    Ok(tensors)
}
