//! Documents from a parquet file: one document per row, taken from one string column.
//!
//! Hugging Face datasets ship most of their data as parquet (the hub converts every
//! dataset to it). Only the chosen column is decoded; rows whose value is null or
//! blank hold no document and are skipped, as blank paragraphs of a text file are.
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use parquet::basic::{ConvertedType, LogicalType, Type as PhysicalType};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use parquet::schema::types::Type;

/// The values of column `column` of the parquet file `bytes` (called `name` in
/// messages), one per row that holds text, in file order.
pub fn read_column(bytes: Vec<u8>, name: &str, column: &str) -> Result<Vec<String>> {
    let reader = SerializedFileReader::new(bytes::Bytes::from(bytes))
        .map_err(|e| anyhow!("input file {name} is not a readable parquet file ({e})"))?;
    let schema = reader.metadata().file_metadata().schema();
    let fields = schema.get_fields();
    let field = fields.iter().find(|f| f.name() == column).ok_or_else(|| {
        let names: Vec<&str> = fields.iter().map(|f| f.name()).collect();
        anyhow!(
            "input file {name} has no column '{column}' (its columns: {}); choose one with --text-column",
            names.join(", ")
        )
    })?;
    if !is_string(field) {
        let strings: Vec<&str> = fields.iter().filter(|f| is_string(f)).map(|f| f.name()).collect();
        let choice = match strings.is_empty() {
            true => "it has no string column".to_string(),
            false => format!("its string columns: {}", strings.join(", ")),
        };
        bail!(
            "column '{column}' of input file {name} holds {}, not text ({choice}); choose a string column with --text-column",
            describe(field)
        );
    }
    let projection = Type::group_type_builder(schema.name()).with_fields(vec![Arc::clone(field)]).build()?;
    let rows = reader
        .get_row_iter(Some(projection))
        .map_err(|e| anyhow!("cannot read column '{column}' of input file {name}: {e}"))?;
    let mut documents = Vec::new();
    for (i, row) in rows.enumerate() {
        let row = row.map_err(|e| anyhow!("cannot read row {} of input file {name}: {e}", i + 1))?;
        match row.get_column_iter().next().map(|(_, value)| value) {
            Some(Field::Str(text)) if !text.trim().is_empty() => documents.push(text.clone()),
            Some(Field::Str(_)) | Some(Field::Null) | None => {}
            Some(other) => bail!("row {} of column '{column}' of input file {name} is not text: {other}", i + 1),
        }
    }
    Ok(documents)
}

/// A top-level column of UTF-8 strings.
fn is_string(field: &Type) -> bool {
    field.is_primitive()
        && field.get_physical_type() == PhysicalType::BYTE_ARRAY
        && (matches!(field.get_basic_info().logical_type_ref(), Some(LogicalType::String))
            || field.get_basic_info().converted_type() == ConvertedType::UTF8)
}

/// What a column holds, in words, for a message.
fn describe(field: &Type) -> String {
    if !field.is_primitive() {
        return "nested values (a list or a struct)".into();
    }
    let info = field.get_basic_info();
    match (field.get_physical_type(), info.logical_type_ref()) {
        (PhysicalType::BYTE_ARRAY, None) if info.converted_type() == ConvertedType::NONE => "binary values".into(),
        (_, Some(logical)) => format!("{logical:?} values"),
        (physical, None) => format!("{physical} values"),
    }
}
