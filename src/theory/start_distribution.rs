//! The distribution a discrete loop starts from (`--dist`).
//!
//! Accepted specs:
//! * `zipf:S` — p_i ∝ i^(−S) for i = 1..=support, S a finite number ≥ 0;
//! * `uniform` — p_i = 1/support;
//! * `file:PATH` — one symbol per CSV row, p_i ∝ its count. The count column
//!   is found as follows: if the first row is a single number, the file is
//!   one unnamed column of counts with no header; otherwise the first row is
//!   a header and the column named `count` or `real_count` (case-insensitive,
//!   exactly one of them) holds the counts, other columns being ignored (so
//!   the token tables of `lmloop inspect` can be read directly). Counts must
//!   be finite and non-negative (usually integers; fractional weights are
//!   accepted), with a positive total. Zero-count rows are symbols that are
//!   dead from the start.

use std::path::Path;

use anyhow::{bail, Context, Result};

/// Support size for `zipf:` and `uniform` when `--support` is not given.
pub const DEFAULT_SUPPORT: usize = 1000;

#[derive(Clone, Debug)]
pub struct StartDistribution {
    /// The spec as given, for reports.
    pub label: String,
    /// Probabilities summing to 1 (up to rounding), one per symbol.
    pub probabilities: Vec<f64>,
}

impl StartDistribution {
    /// Parses `--dist` (and `--support`, which only zipf and uniform take).
    pub fn from_spec(spec: &str, support: Option<usize>) -> Result<Self> {
        let spec = spec.trim();
        if let Some(path) = spec.strip_prefix("file:") {
            if support.is_some() {
                bail!("--support does not apply to --dist file: (the file's rows are the support)");
            }
            return Self::from_counts_file(Path::new(path));
        }
        let support = support.unwrap_or(DEFAULT_SUPPORT);
        if support == 0 {
            bail!("--support must be at least 1 (got 0)");
        }
        if spec == "uniform" {
            return Self::from_weights("uniform".to_string(), vec![1.0; support]);
        }
        if let Some(exponent_text) = spec.strip_prefix("zipf:") {
            let exponent: f64 = match exponent_text.trim().parse() {
                Ok(value) if f64::is_finite(value) && value >= 0.0 => value,
                _ => bail!("--dist zipf:S needs a finite exponent S ≥ 0 (got {exponent_text:?})"),
            };
            let weights = (1..=support).map(|rank| (rank as f64).powf(-exponent)).collect();
            return Self::from_weights(format!("zipf:{exponent}"), weights);
        }
        bail!("--dist must be zipf:S, uniform or file:COUNTS.csv (got {spec:?})")
    }

    /// Normalises non-negative finite weights with a positive total.
    pub fn from_weights(label: String, weights: Vec<f64>) -> Result<Self> {
        if let Some((index, bad)) = weights.iter().enumerate().find(|(_, w)| !(w.is_finite() && **w >= 0.0)) {
            bail!("distribution {label}: weight {index} is {bad}, expected a finite number ≥ 0");
        }
        let total: f64 = weights.iter().sum();
        if !(total > 0.0 && total.is_finite()) {
            bail!("distribution {label}: the weights must have a positive finite total (got {total})");
        }
        let probabilities = weights.into_iter().map(|w| w / total).collect();
        Ok(StartDistribution { label, probabilities })
    }

    fn from_counts_file(path: &Path) -> Result<Self> {
        let label = format!("file:{}", path.display());
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_path(path)
            .with_context(|| format!("--dist {label}: cannot open the counts file"))?;
        let mut records = reader.records();
        let first = match records.next() {
            None => bail!("--dist {label}: the counts file is empty"),
            Some(record) => record.with_context(|| format!("--dist {label}: cannot read row 1"))?,
        };

        // A lone number on the first row means a headerless single column.
        let headerless = first.len() == 1 && first[0].parse::<f64>().is_ok();
        let (column, mut counts) = if headerless {
            (0, vec![parse_count(&first[0], 1, &label)?])
        } else {
            let named: Vec<usize> = (0..first.len())
                .filter(|&i| matches!(first[i].to_ascii_lowercase().as_str(), "count" | "real_count"))
                .collect();
            match named.as_slice() {
                [column] => (*column, Vec::new()),
                [] => bail!(
                    "--dist {label}: expected a header with a `count` or `real_count` column, or a single unnamed column of counts (got header {:?})",
                    first.iter().collect::<Vec<_>>()
                ),
                _ => bail!("--dist {label}: the header has both `count` and `real_count`; keep only one"),
            }
        };

        for (offset, record) in records.enumerate() {
            let row = offset + 2;
            let record = record.with_context(|| format!("--dist {label}: cannot read row {row}"))?;
            let Some(field) = record.get(column) else {
                bail!("--dist {label}: row {row} has no column {} (it has {} fields)", column + 1, record.len());
            };
            counts.push(parse_count(field, row, &label)?);
        }
        if counts.is_empty() {
            bail!("--dist {label}: the counts file has a header but no rows");
        }
        Self::from_weights(label, counts)
    }
}

fn parse_count(field: &str, row: usize, label: &str) -> Result<f64> {
    match field.parse::<f64>() {
        Ok(count) if count.is_finite() && count >= 0.0 => Ok(count),
        _ => bail!("--dist {label}: row {row} has count {field:?}, expected a finite number ≥ 0"),
    }
}
