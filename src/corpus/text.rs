//! Text files in and out: validated reading with a checksum, atomic writing.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// One input of `prepare`, read and checked.
#[derive(Debug, Clone)]
pub struct InputText {
    /// How the input was named: the path as given, or the `hf:` id.
    pub name: String,
    /// The file actually read (inside the Hugging Face cache for `hf:` ids).
    pub path: PathBuf,
    /// The contents, with a leading byte-order mark removed and `\r\n` line
    /// endings turned into `\n`, so that separator lines match exactly.
    pub text: String,
    /// Lowercase hex SHA-256 of the file's bytes as stored (before the
    /// normalisation above), for the prepared corpus's meta.json.
    pub sha256: String,
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Reads the bytes of input file `path`; `name` is how errors call it. A missing file,
/// a folder and an empty file are refused.
pub(crate) fn read_input_bytes(path: &Path, name: &str) -> Result<Vec<u8>> {
    let metadata = match fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == ErrorKind::NotFound => {
            bail!("input file {name} does not exist")
        }
        Err(error) => bail!("cannot read input file {name}: {error}"),
    };
    if metadata.is_dir() {
        bail!("input {name} is a directory, not a text file");
    }
    let bytes = fs::read(path).with_context(|| format!("cannot read input file {name}"))?;
    if bytes.is_empty() {
        bail!("input file {name} is empty");
    }
    Ok(bytes)
}

/// Reads `path` as an input text; `name` is how errors and the result call it.
pub(crate) fn read_text_file(path: &Path, name: &str) -> Result<InputText> {
    let bytes = read_input_bytes(path, name)?;
    let sha256 = sha256_hex(&bytes);
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => bail!(
            "input file {name} is not valid UTF-8 text (first invalid byte at offset {})",
            error.utf8_error().valid_up_to()
        ),
    };
    if text.trim().is_empty() {
        bail!("input file {name} contains only whitespace");
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let text = if text.contains("\r\n") { text.replace("\r\n", "\n") } else { text.to_string() };
    Ok(InputText { name: name.to_string(), path: path.to_path_buf(), text, sha256 })
}
