//! A transformers GPT-2 or Llama folder as an lmloop checkpoint: the model generation 0
//! starts from (`generations.init_from`).
//!
//! The folder must hold `config.json`, safetensors weights (one file or shards) and the
//! tokenizers-library `tokenizer.json` that transformers writes; its
//! `tokenizer_config.json`, when present, names the end-of-text token (`eos_token`).
//! Weights are converted to float32 and to lmloop's layout ([`super::weights`]), and
//! checked name by name and shape by shape before anything is written.
use super::{hf_config, weights};
use crate::checkpoint::{self, TrainingState};
use crate::config::ModelConfig;
use crate::model::Model;
use crate::tokenizer::Vocab;
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use tch::{nn, Device};

/// A transformers model folder, opened and checked.
pub struct HfFolder {
    pub dir: PathBuf,
    /// The model's shape at the folder's full context length.
    pub model: ModelConfig,
    pub vocab: Vocab,
}

impl HfFolder {
    /// Reads the folder's config and tokenizer; `dropout` is lmloop's training setting.
    pub fn open(dir: &Path, dropout: f64) -> Result<Self> {
        if !dir.is_dir() {
            bail!("the transformers model folder {} does not exist", dir.display());
        }
        let config_path = dir.join("config.json");
        if !config_path.is_file() {
            bail!("{} is not a transformers model folder: it has no config.json", dir.display());
        }
        let config: serde_json::Value = crate::durable::read_json(&config_path)?;
        let model = hf_config::from_hf(&config, &dir.display().to_string(), dropout)?;
        let vocab = Vocab::load_file_or_folder(dir)?;
        if vocab.vocab_size() as i64 != model.vocab_size {
            bail!(
                "{}: its tokenizer has {} tokens but config.json says vocab_size {}; lmloop needs one entry of the embedding per token",
                dir.display(),
                vocab.vocab_size(),
                model.vocab_size
            );
        }
        Ok(Self { dir: dir.to_path_buf(), model, vocab })
    }

    /// The shape lmloop builds for a context of `block_size` tokens (the folder's own
    /// context when `None`); a longer context than the folder's is refused.
    pub fn model_config(&self, block_size: Option<i64>) -> Result<ModelConfig> {
        let mut cfg = self.model.clone();
        if let Some(block) = block_size {
            if block > cfg.block_size {
                bail!(
                    "model.block_size {block} is longer than the {} positions of {}; use {} or less",
                    cfg.block_size,
                    self.dir.display(),
                    cfg.block_size
                );
            }
            cfg.block_size = block;
        }
        Ok(cfg)
    }

    /// The folder's model built by lmloop (weights loaded) with a context of
    /// `block_size` tokens, on `device`.
    pub fn load(&self, block_size: Option<i64>, device: Device) -> Result<(nn::VarStore, Model)> {
        let cfg = self.model_config(block_size)?;
        let mut vs = nn::VarStore::new(device);
        let model = Model::new(&vs.root(), &cfg);
        let tensors = weights::from_hf(weights::read_folder(&self.dir)?, &cfg);
        checkpoint::copy_weights(&mut vs, tensors, &format!("the weights of {}", self.dir.display()))?;
        Ok((vs, model))
    }

    /// Writes the folder's model as the lmloop checkpoint `out` (atomically, `DONE` last),
    /// with a context of `block_size` tokens; returns its shape.
    pub fn import(&self, block_size: Option<i64>, out: &Path) -> Result<ModelConfig> {
        let (vs, model) = self.load(block_size, Device::Cpu)?;
        let cfg = model.config().clone();
        let state = TrainingState::untrained("imported", Some(self.dir.display().to_string()));
        checkpoint::save(out, &vs, &cfg, &self.vocab, &state, None)?;
        Ok(cfg)
    }
}
