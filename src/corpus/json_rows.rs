//! Documents from a JSON file: one document per record, taken from one string field.
//!
//! Two layouts are read: JSON lines (one object per line, `.jsonl`, and the `.json`
//! files many datasets ship), and a single JSON array of objects. Records whose field
//! is null or blank hold no document and are skipped, as blank paragraphs of a text
//! file are.
use anyhow::{anyhow, bail, Result};
use serde_json::Value;

/// The values of field `column` of every record in `text` (the contents of the JSON
/// input `name`), in file order.
pub fn read_field(text: &str, name: &str, column: &str) -> Result<Vec<String>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut documents = Vec::new();
    if text.trim_start().starts_with('[') {
        let records: Vec<Value> = serde_json::from_str(text).map_err(|e| {
            anyhow!(
                "input file {name} is not a valid JSON array ({e}); lmloop reads JSON lines or one array of objects"
            )
        })?;
        for (i, record) in records.iter().enumerate() {
            take(record, &format!("element {} of input file {name}", i + 1), column, &mut documents)?;
        }
    } else {
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let place = format!("line {} of input file {name}", i + 1);
            let record: Value = serde_json::from_str(line).map_err(|e| {
                anyhow!("{place} is not valid JSON ({e}); lmloop reads JSON lines (one object per line) or one array of objects")
            })?;
            take(&record, &place, column, &mut documents)?;
        }
    }
    Ok(documents)
}

/// Appends the text of `record[column]` unless it is null or blank.
fn take(record: &Value, place: &str, column: &str, documents: &mut Vec<String>) -> Result<()> {
    let Value::Object(fields) = record else {
        bail!("{place} is {}, not an object with a '{column}' field", kind(record));
    };
    match fields.get(column) {
        None => {
            let names: Vec<&str> = fields.keys().map(String::as_str).collect();
            bail!("{place} has no field '{column}' (its fields: {}); choose one with --text-column", names.join(", "))
        }
        Some(Value::String(text)) if !text.trim().is_empty() => documents.push(text.clone()),
        Some(Value::String(_)) | Some(Value::Null) => {}
        Some(other) => bail!(
            "field '{column}' on {place} is {}, not a string; choose a text field with --text-column",
            kind(other)
        ),
    }
    Ok(())
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
