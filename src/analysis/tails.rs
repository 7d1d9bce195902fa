//! Token survival: `tokens.csv` (counts of every token in the real split and in
//! every S_k), vanish generations, survival by original-count bucket, the fit
//! of vanish generation on original count, and the `inspect tails` text.
use super::fit::LinearFit;
use crate::layout::{gen_name, write_atomic};
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::path::Path;

/// Every token's count in the real split and in S_1..S_K.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenTable {
    /// Display text of each token, escaped by [`escape_token`].
    pub texts: Vec<String>,
    pub real: Vec<u64>,
    /// `synthetic[j]` holds the counts of S_{j+1}.
    pub synthetic: Vec<Vec<u64>>,
}

/// Readable, single-line text of a token: backslash, newline, tab, carriage return
/// and other control characters become escapes (`\\`, `\n`, `\t`, `\r`, `\u{1b}`);
/// spaces stay as they are.
pub fn escape_token(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

const ID: &str = "token_id";
const TEXT: &str = "token_text";
const REAL: &str = "real_count";
const VANISH: &str = "vanish_generation";

/// Column name of S_k's counts.
fn generation_column(k: u32) -> String {
    gen_name(k).replace('-', "_")
}

impl TokenTable {
    /// `raw_texts` are the tokens' decoded texts (escaped here); every count vector
    /// must have one entry per token.
    pub fn new(raw_texts: &[String], real: Vec<u64>, synthetic: Vec<Vec<u64>>) -> Result<Self> {
        let vocab = raw_texts.len();
        if real.len() != vocab {
            bail!("real counts cover {} tokens but the vocabulary has {vocab}", real.len());
        }
        if let Some((j, c)) = synthetic.iter().enumerate().find(|(_, c)| c.len() != vocab) {
            bail!("counts of S_{} cover {} tokens but the vocabulary has {vocab}", j + 1, c.len());
        }
        Ok(Self { texts: raw_texts.iter().map(|t| escape_token(t)).collect(), real, synthetic })
    }

    pub fn vocab_size(&self) -> usize {
        self.real.len()
    }

    /// K, the number of synthetic corpora S_1..S_K.
    pub fn generations(&self) -> u32 {
        self.synthetic.len() as u32
    }

    /// Count of `token` in S_k (k ≥ 1).
    pub fn count_in(&self, k: u32, token: usize) -> u64 {
        self.synthetic[k as usize - 1][token]
    }

    /// Counts of S_k, or of the real split for k = 0.
    pub fn counts(&self, k: u32) -> &[u64] {
        if k == 0 {
            &self.real
        } else {
            &self.synthetic[k as usize - 1]
        }
    }

    /// The first k with a zero count in S_k, for a token seen in the real split.
    pub fn vanish_generation(&self, token: usize) -> Option<u32> {
        if self.real[token] == 0 {
            return None;
        }
        (1..=self.generations()).find(|&k| self.count_in(k, token) == 0)
    }

    pub fn write_csv(&self, path: &Path) -> Result<()> {
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut header = vec![ID.to_string(), TEXT.to_string(), REAL.to_string()];
        header.extend((1..=self.generations()).map(generation_column));
        header.push(VANISH.to_string());
        w.write_record(&header)?;
        for token in 0..self.vocab_size() {
            let mut record = vec![token.to_string(), self.texts[token].clone(), self.real[token].to_string()];
            record.extend(self.synthetic.iter().map(|c| c[token].to_string()));
            record.push(self.vanish_generation(token).map(|k| k.to_string()).unwrap_or_default());
            w.write_record(&record)?;
        }
        let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("cannot format {}: {e}", path.display()))?;
        write_atomic(path, &bytes)
    }

    pub fn read_csv(path: &Path) -> Result<Self> {
        let mut r = csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
        let header = r.headers().with_context(|| format!("{} has no header", path.display()))?.clone();
        let expected_k = |i: usize| generation_column(i as u32 - 2);
        let k_max = header.len().saturating_sub(4) as u32;
        let columns_ok = header.len() >= 4
            && header.get(0) == Some(ID)
            && header.get(1) == Some(TEXT)
            && header.get(2) == Some(REAL)
            && header.get(header.len() - 1) == Some(VANISH)
            && (3..header.len() - 1).all(|i| header.get(i) == Some(expected_k(i).as_str()));
        if !columns_ok {
            bail!(
                "{} does not have the columns {ID},{TEXT},{REAL},gen_01..gen_KK,{VANISH} (found {})",
                path.display(),
                header.iter().collect::<Vec<_>>().join(",")
            );
        }
        let mut table = TokenTable { texts: Vec::new(), real: Vec::new(), synthetic: vec![Vec::new(); k_max as usize] };
        for (line, record) in r.records().enumerate() {
            let record = record.with_context(|| format!("malformed row {} in {}", line + 2, path.display()))?;
            let count = |i: usize| -> Result<u64> {
                record.get(i).unwrap_or("").parse().with_context(|| {
                    format!("{} row {}: column {} is not a count", path.display(), line + 2, &header[i])
                })
            };
            record.get(0).unwrap_or("").parse::<usize>().ok().filter(|&id| id == line).with_context(|| {
                format!("{} row {}: token ids must run 0, 1, 2, … in order", path.display(), line + 2)
            })?;
            table.texts.push(record.get(1).unwrap_or("").to_string());
            table.real.push(count(2)?);
            for (j, counts) in table.synthetic.iter_mut().enumerate() {
                counts.push(count(3 + j)?);
            }
        }
        Ok(table)
    }
}

/// Survival of the tokens whose real count lies in [low, high].
#[derive(Debug, Clone, PartialEq)]
pub struct BucketSurvival {
    /// `1`, `2-3`, `4-7`, …, and `N+` for the open-ended bucket
    pub label: String,
    pub low: u64,
    /// Inclusive; `u64::MAX` for the open-ended bucket.
    pub high: u64,
    /// Tokens in the bucket.
    pub tokens: usize,
    /// `present[k]`: share of the bucket's tokens with a count above zero in S_k;
    /// `present[0]` is the real split (1 by construction).
    pub present: Vec<f64>,
}

/// Most buckets a survival table has: past it, the common tokens share one
/// open-ended bucket (they rarely vanish, and a plot keeps a colour per bucket).
pub const MAX_BUCKETS: usize = 8;

/// Survival per power-of-two bucket of real count (1, 2-3, 4-7, …), only buckets
/// that hold at least one token; beyond the first `MAX_BUCKETS - 1` such buckets,
/// every remaining token goes into one open-ended bucket (`2048+`).
pub fn survival_by_bucket(table: &TokenTable) -> Vec<BucketSurvival> {
    // Power-of-two bucket b holds counts in [2^b, 2^(b+1) - 1].
    let power = |c: u64| (u64::BITS - 1 - c.leading_zeros()) as usize;
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); u64::BITS as usize];
    for (token, &c) in table.real.iter().enumerate().filter(|(_, &c)| c > 0) {
        members[power(c)].push(token);
    }
    let mut buckets: Vec<(u64, u64, Vec<usize>)> = members
        .into_iter()
        .enumerate()
        .filter(|(_, tokens)| !tokens.is_empty())
        .map(|(b, tokens)| (1u64 << b, if b == 63 { u64::MAX } else { (2u64 << b) - 1 }, tokens))
        .collect();
    if buckets.len() > MAX_BUCKETS {
        let low = buckets[MAX_BUCKETS - 1].0;
        let merged: Vec<usize> = buckets.drain(MAX_BUCKETS - 1..).flat_map(|(_, _, tokens)| tokens).collect();
        buckets.push((low, u64::MAX, merged));
    }
    buckets
        .into_iter()
        .map(|(low, high, tokens)| {
            let present = (0..=table.generations())
                .map(|k| {
                    let alive = tokens.iter().filter(|&&t| table.counts(k)[t] > 0).count();
                    alive as f64 / tokens.len() as f64
                })
                .collect();
            let label = match (low, high) {
                (l, h) if l == h => l.to_string(),
                (l, u64::MAX) => format!("{l}+"),
                (l, h) => format!("{l}-{h}"),
            };
            BucketSurvival { label, low, high, tokens: tokens.len(), present }
        })
        .collect()
}

/// Points (real count, vanish generation) of the vanished tokens with real count ≥ `min_real_count`.
pub fn vanish_points(table: &TokenTable, min_real_count: u64) -> Vec<(f64, f64)> {
    (0..table.vocab_size())
        .filter(|&t| table.real[t] >= min_real_count.max(1))
        .filter_map(|t| table.vanish_generation(t).map(|k| (table.real[t] as f64, k as f64)))
        .collect()
}

/// Least-squares fit of vanish generation on real count over the vanished tokens
/// with real count ≥ `min_real_count`. Tokens that never vanished are left out
/// (their vanish generation is only known to exceed K), which biases the slope low
/// when many common tokens are still alive.
pub fn vanish_fit(table: &TokenTable, min_real_count: u64) -> Option<LinearFit> {
    LinearFit::fit(&vanish_points(table, min_real_count))
}

/// Width of the token text column of the tails table, in characters.
const TEXT_WIDTH: usize = 24;

fn quoted_display(text: &str) -> String {
    let mut shown: String = text.chars().take(TEXT_WIDTH - 2).collect();
    if shown.len() < text.len() {
        shown.pop();
        shown.push('…');
    }
    format!("\"{shown}\"")
}

/// The `inspect tails` report of one run.
pub fn tails_text(run: &str, table: &TokenTable, top: usize, min_real_count: u64) -> String {
    let min_count = min_real_count.max(1);
    let k_max = table.generations();
    let considered: Vec<usize> = (0..table.vocab_size()).filter(|&t| table.real[t] >= min_count).collect();
    let mut out = String::new();
    if k_max == 0 {
        let _ = writeln!(out, "Run {run}: no synthetic corpus yet, so no token can have vanished.");
        return out;
    }
    let corpora = if k_max == 1 {
        "1 synthetic corpus (S_1".to_string()
    } else {
        format!("{k_max} synthetic corpora (S_1..S_{k_max}")
    };
    let _ = writeln!(out, "Run {run}: {corpora}; S_k was sampled by generation k-1).");
    let mut vanished: Vec<(usize, u32)> =
        considered.iter().filter_map(|&t| table.vanish_generation(t).map(|k| (t, k))).collect();
    // Most common first; ties by earlier vanishing, then by id, so the order is stable.
    vanished.sort_by(|a, b| table.real[b.0].cmp(&table.real[a.0]).then(a.1.cmp(&b.1)).then(a.0.cmp(&b.0)));
    let _ = writeln!(
        out,
        "{} of {} tokens with real count ≥ {min_count} vanished (count 0 in some S_k); {} are absent from S_{k_max}.",
        vanished.len(),
        considered.len(),
        considered.iter().filter(|&&t| table.count_in(k_max, t) == 0).count()
    );
    if !vanished.is_empty() {
        let _ = writeln!(
            out,
            "\nVanished tokens, most common in the real split first (top {} of {}):",
            top.min(vanished.len()),
            vanished.len()
        );
        let _ = writeln!(
            out,
            "{:>8}  {:<w$}  {:>10}  {:>11}  {:>10}",
            "token id",
            "text",
            "real count",
            "vanished in",
            format!("in S_{k_max}"),
            w = TEXT_WIDTH
        );
        for &(t, k) in vanished.iter().take(top) {
            let _ = writeln!(
                out,
                "{:>8}  {:<w$}  {:>10}  {:>11}  {:>10}",
                t,
                quoted_display(&table.texts[t]),
                table.real[t],
                format!("S_{k}"),
                table.count_in(k_max, t),
                w = TEXT_WIDTH
            );
        }
    }
    let _ = writeln!(out, "\nPer synthetic corpus (tokens with real count ≥ {min_count}):");
    let _ = writeln!(out, "{:>6}  {:>15}  {:>10}", "corpus", "vanished first", "absent");
    for k in 1..=k_max {
        let first = vanished.iter().filter(|&&(_, v)| v == k).count();
        let absent = considered.iter().filter(|&&t| table.count_in(k, t) == 0).count();
        let _ = writeln!(out, "{:>6}  {:>15}  {:>10}", format!("S_{k}"), first, absent);
    }
    let _ = writeln!(
        out,
        "\nVanish generation against real count (vanished tokens only; tokens still alive are left out):"
    );
    match vanish_fit(table, min_count) {
        Some(f) => {
            let r2 = if f.r_squared.is_finite() {
                format!("{:.3}", f.r_squared)
            } else {
                "n/a (all vanished together)".into()
            };
            let sign = if f.intercept < 0.0 { '−' } else { '+' };
            let _ = writeln!(
                out,
                "  vanish generation ≈ {:.4} × real count {sign} {:.4}   (R² {r2}, {} tokens)",
                f.slope,
                f.intercept.abs(),
                f.n
            );
        }
        None => {
            let _ = writeln!(out, "  no fit: it needs at least two vanished tokens with different real counts.");
        }
    }
    let _ = writeln!(
        out,
        "  Suresh et al. 2024 predict a roughly linear relation: a token seen c times survives about c generations."
    );
    out
}
