//! `lmloop export`: a checkpoint as a folder that transformers loads with
//! `AutoModelForCausalLM.from_pretrained` and `AutoTokenizer.from_pretrained`.
//!
//! The folder holds `config.json` in transformers' schema ([`super::hf_config`]),
//! `model.safetensors` in transformers' names and layout with `format: pt` metadata
//! ([`super::weights`]), and the checkpoint's `tokenizer.json` with a
//! `tokenizer_config.json` and `special_tokens_map.json` naming its special tokens
//! (`<|endoftext|>` as bos, eos and unk, as GPT-2 has it; an imported tokenizer keeps
//! the settings file it came with). It is assembled in a temporary sibling folder and
//! renamed into place, so a folder with the final name is always complete.
use super::{hf_config, weights};
use crate::checkpoint::Checkpoint;
use crate::config::Arch;
use crate::durable::{rename_durably, sync_file, temp_path, write_json_atomic};
use crate::tokenizer::TOKENIZER_CONFIG;
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::path::Path;
use tch::Device;

/// What `export` wrote.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The transformers class the folder loads as.
    pub class: &'static str,
    pub parameters: i64,
}

/// Writes the transformers folder `out` for the checkpoint folder `checkpoint`. An
/// existing non-empty `out` is refused unless `force` replaces it.
pub fn export(checkpoint: &Path, out: &Path, force: bool) -> Result<Exported> {
    let ckpt = Checkpoint::load(checkpoint, Device::Cpu)?;
    if out.is_file() {
        bail!("--out {} is a file; give a folder to write the model into", out.display());
    }
    let occupied = out.is_dir() && std::fs::read_dir(out).map(|mut d| d.next().is_some()).unwrap_or(true);
    if occupied && !force {
        bail!("{} already exists and is not empty; choose another --out, or pass --force to replace it", out.display());
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let tmp = temp_path(out);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("cannot remove {}", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let written = write_folder(&ckpt, &tmp);
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("cannot replace {}", out.display()))?;
    }
    rename_durably(&tmp, out)?;
    let cfg = ckpt.model.config();
    Ok(Exported {
        class: match cfg.arch {
            Arch::Gpt2 => "GPT2LMHeadModel",
            Arch::Llama => "LlamaForCausalLM",
        },
        parameters: crate::model::parameter_count(&ckpt.vs),
    })
}

fn write_folder(ckpt: &Checkpoint, dir: &Path) -> Result<()> {
    let cfg = ckpt.model.config();
    let vocab = &ckpt.vocab;
    let eos = vocab.eot();
    let bos = vocab.bos().map_or(eos, |(_, id)| id);
    write_json_atomic(&dir.join("config.json"), &hf_config::to_hf(cfg, bos, eos))?;
    let weights_path = dir.join(weights::WEIGHTS);
    weights::write_safetensors(&weights_path, &weights::to_hf(&ckpt.vs, cfg))?;
    sync_file(&weights_path)?;
    // Writes tokenizer.json, and the tokenizer_config.json an imported tokenizer came with.
    vocab.save(&dir.join("tokenizer.json"))?;
    if vocab.hf_config().is_none() {
        let eot = vocab.eot_text();
        write_json_atomic(
            &dir.join(TOKENIZER_CONFIG),
            &json!({
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": eot,
                "eos_token": eot,
                "unk_token": eot,
                "model_max_length": cfg.block_size,
                // Byte-level decoding inverts encoding exactly; transformers' clean-up
                // would remove spaces before punctuation.
                "clean_up_tokenization_spaces": false,
            }),
        )?;
        write_json_atomic(
            &dir.join("special_tokens_map.json"),
            &json!({ "bos_token": eot, "eos_token": eot, "unk_token": eot }),
        )?;
    }
    Ok(())
}
