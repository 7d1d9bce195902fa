//! Writing result files: atomically, so that an interrupted run never leaves
//! a complete-looking but truncated table behind.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

/// A CSV document from a header and rows of already formatted fields.
pub fn csv_document(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> Result<Vec<u8>> {
    crate::durable::csv_bytes(|w| {
        w.write_record(header)?;
        for row in rows {
            w.write_record(&row)?;
        }
        Ok(())
    })
}

/// An empty field where a value does not apply (e.g. a prediction at T ≠ 1).
pub fn optional_field(value: Option<f64>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

/// Creates the output folder up front, so that a long simulation does not
/// fail only at the end because its results cannot be saved.
pub fn prepare_output_folder(folder: &Path) -> Result<()> {
    fs::create_dir_all(folder).with_context(|| format!("cannot create the output folder {}", folder.display()))
}

/// The summary is written last and marks a complete output folder; removing
/// an earlier run's summary first means that a run failing half-way leaves
/// no summary next to a mix of old and new tables.
pub fn remove_completion_marker(folder: &Path) -> Result<()> {
    let marker = folder.join("summary.txt");
    match fs::remove_file(&marker) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("cannot remove the previous {}", marker.display()))
        }
        _ => Ok(()),
    }
}
