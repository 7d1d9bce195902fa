//! Interoperation with the Hugging Face transformers ecosystem.
//!
//! - [`export`]: a checkpoint as a folder `AutoModelForCausalLM.from_pretrained` loads
//!   (`lmloop export`).
//! - [`HfFolder`]: a transformers GPT-2 or Llama folder as the model generation 0
//!   starts from (`generations.init_from`).
//!
//! Both rest on [`hf_config`] (the `config.json` schemas) and [`weights`] (names and
//! layout of the tensors).
pub mod export;
pub mod hf_config;
pub mod import;
pub mod weights;

pub use export::{export, Exported};
pub use import::HfFolder;
