//! Reading the CSV tables runs leave behind, by column name.
//!
//! Columns are looked up by their header, and unknown columns are ignored, so that
//! tables gaining columns in a later version still aggregate.
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// One CSV row: column name → text.
pub type Row = BTreeMap<String, String>;

/// The rows of a CSV file with a header row, or None when the file does not exist.
pub fn read_csv(path: &Path) -> Result<Option<Vec<Row>>> {
    if !path.exists() {
        return Ok(None);
    }
    let mut reader = csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    let header: Vec<String> = reader
        .headers()
        .with_context(|| format!("{} has no header row", path.display()))?
        .iter()
        .map(str::to_string)
        .collect();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.with_context(|| format!("malformed row in {}", path.display()))?;
        rows.push(header.iter().cloned().zip(record.iter().map(str::to_string)).collect());
    }
    Ok(Some(rows))
}

/// A numeric cell, when present and finite-or-not but parseable.
pub fn number(row: &Row, column: &str) -> Option<f64> {
    row.get(column)?.trim().parse::<f64>().ok()
}

/// Generations with a row in `generations.csv` of a run (empty when there is none).
pub fn finished_generations(generations_csv: &Path) -> Result<std::collections::BTreeSet<u32>> {
    Ok(read_csv(generations_csv)?
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r.get("generation")?.trim().parse::<u32>().ok())
        .collect())
}
