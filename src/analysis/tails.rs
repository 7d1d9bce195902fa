//! Token survival: `tokens.csv` (counts of every token in the real split and in
//! every S_k), vanish generations and absence spells, survival by original-count
//! bucket beside the null model, the fit of vanish generation on original count,
//! and the `inspect tails` text.
use super::fit::LinearFit;
use super::null::{
    null_absence_probability, null_expected_spells, null_presence_probability, null_reappearance_probability, RealNull,
};
use super::reference::{format_ratio, ReferenceInfo};
use crate::layout::gen_name;
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
/// The columns after `vanish_generation` (absent from tables written before them).
const ABSENCE_COLUMNS: [&str; 5] =
    ["absent_corpora", "absence_spells", "longest_absence", "reappeared", "null_presence_probability"];
/// The last column: presence under the null from real documents (absent from older tables).
const REAL_NULL_COLUMN: &str = "null_presence_real_documents";

/// How a token seen in the real split was absent across S_1..S_K (definitions in `analysis/mod.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Absence {
    /// Corpora S_k with a zero count.
    pub absent_corpora: u32,
    /// Maximal runs of consecutive corpora with a zero count (one still open at S_K counts).
    pub spells: u32,
    /// Length of the longest spell, 0 when never absent.
    pub longest: u32,
    /// Absent from some S_j and present in a later S_k.
    pub reappeared: bool,
}

impl Absence {
    /// The absence of a token whose counts in S_1, S_2, … are `counts`.
    pub fn of(counts: impl IntoIterator<Item = u64>) -> Self {
        let mut a = Absence::default();
        let mut current = 0u32;
        for count in counts {
            if count == 0 {
                a.absent_corpora += 1;
                if current == 0 {
                    a.spells += 1;
                }
                current += 1;
                a.longest = a.longest.max(current);
            } else {
                a.reappeared |= a.absent_corpora > 0;
                current = 0;
            }
        }
        a
    }
}

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

    /// Absence counts and spells across S_1..S_K, for a token seen in the real split.
    pub fn absence(&self, token: usize) -> Option<Absence> {
        if self.real[token] == 0 {
            return None;
        }
        Some(Absence::of(self.synthetic.iter().map(|c| c[token])))
    }

    /// Writes `tokens.csv`. `sample_ratio` is D/|R| for the `null_presence_probability`
    /// column (left empty when unknown).
    /// `null_presence_probability` is the independence bound 1 − exp(−c·D/|R|);
    /// `real_null_absence` (per token, from [`super::null::RealNull`]) gives
    /// `null_presence_real_documents`, empty when unknown.
    pub fn write_csv(&self, path: &Path, sample_ratio: Option<f64>, real_null_absence: Option<&[f64]>) -> Result<()> {
        crate::durable::write_csv_atomic(path, |w| {
            let mut header = vec![ID.to_string(), TEXT.to_string(), REAL.to_string()];
            header.extend((1..=self.generations()).map(generation_column));
            header.push(VANISH.to_string());
            header.extend(ABSENCE_COLUMNS.map(str::to_string));
            header.push(REAL_NULL_COLUMN.to_string());
            w.write_record(&header)?;
            for token in 0..self.vocab_size() {
                let mut record = vec![token.to_string(), self.texts[token].clone(), self.real[token].to_string()];
                record.extend(self.synthetic.iter().map(|c| c[token].to_string()));
                record.push(self.vanish_generation(token).map(|k| k.to_string()).unwrap_or_default());
                match self.absence(token) {
                    Some(a) => record.extend([
                        a.absent_corpora.to_string(),
                        a.spells.to_string(),
                        a.longest.to_string(),
                        a.reappeared.to_string(),
                    ]),
                    None => record.extend(std::iter::repeat_n(String::new(), 4)),
                }
                record.push(
                    sample_ratio
                        .map(|r| null_presence_probability(self.real[token], r).to_string())
                        .unwrap_or_default(),
                );
                record.push(match real_null_absence {
                    Some(a) if self.real[token] > 0 => (1.0 - a[token]).to_string(),
                    _ => String::new(),
                });
                w.write_record(&record)?;
            }
            Ok(())
        })
    }

    /// Reads `tokens.csv`, in the current layout or the older one that ended at
    /// `vanish_generation`. Only the counts are read; every derived column is
    /// recomputed from them.
    pub fn read_csv(path: &Path) -> Result<Self> {
        let mut r = csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
        let header = r.headers().with_context(|| format!("{} has no header", path.display()))?.clone();
        let names: Vec<&str> = header.iter().collect();
        // gen_01, gen_02, … run from column 3 up to `vanish_generation`.
        let vanish_at = names.iter().position(|&n| n == VANISH);
        let columns_ok = vanish_at.is_some_and(|v| {
            names.len() >= 4
                && names[..3] == [ID, TEXT, REAL]
                && (3..v).all(|i| names[i] == generation_column(i as u32 - 2))
                && (names[v + 1..].is_empty()
                    || names[v + 1..] == ABSENCE_COLUMNS
                    || (names[v + 1..names.len() - 1] == ABSENCE_COLUMNS && names[names.len() - 1] == REAL_NULL_COLUMN))
        });
        if !columns_ok {
            bail!(
                "{} does not have the columns {ID},{TEXT},{REAL},gen_01..gen_KK,{VANISH}[,{}] (found {})",
                path.display(),
                ABSENCE_COLUMNS.join(","),
                names.join(",")
            );
        }
        let k_max = vanish_at.map_or(0, |v| v - 3) as u32;
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
    /// Share of the (token, S_k) pairs, k = 1..K, with a zero count (NaN for K = 0).
    pub absent_share: f64,
    /// Mean absence spells per token.
    pub spells_per_token: f64,
    /// Share of the bucket's tokens that reappeared after an absence.
    pub reappeared_share: f64,
    /// The independence bound's values for the same tokens, when D/|R| is known.
    pub null: Option<BucketNull>,
    /// The null from real documents for the same tokens, when the run measured it.
    pub real_null: Option<RealBucketNull>,
}

/// What a perfect model's corpora (D-token draws of real documents not in R, see
/// [`RealNull`]) show for a bucket's tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RealBucketNull {
    /// Mean share of the bucket's tokens present in one draw.
    pub presence: f64,
    /// Mean share absent, and its standard deviation over the draws (one corpus).
    pub absent_share: f64,
    pub absent_share_sd: f64,
    /// Expected absence spells per token and share reappearing over K corpora, each
    /// token absent from a corpus with its measured probability.
    pub spells_per_token: f64,
    pub reappeared_share: f64,
    /// Draws the values come from.
    pub draws: usize,
    /// Corpora K the run's absent share averages over: its spread under this null is
    /// `absent_share_sd / √K`.
    pub corpora: u32,
}

impl RealBucketNull {
    pub fn of(null: &RealNull, absence: &[f64], tokens: &[usize], corpora: u32) -> Self {
        let n = tokens.len().max(1) as f64;
        let shares = null.absent_shares(tokens);
        let d = shares.len().max(1) as f64;
        let mean = shares.iter().sum::<f64>() / d;
        let sd = if shares.len() > 1 {
            (shares.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (d - 1.0)).sqrt()
        } else {
            f64::NAN
        };
        RealBucketNull {
            presence: 1.0 - mean,
            absent_share: mean,
            absent_share_sd: sd,
            spells_per_token: tokens.iter().map(|&t| null_expected_spells(absence[t], corpora)).sum::<f64>() / n,
            reappeared_share: tokens.iter().map(|&t| null_reappearance_probability(absence[t], corpora)).sum::<f64>()
                / n,
            draws: shares.len(),
            corpora,
        }
    }

    /// The interval in which a run's absent share over K corpora lies about 95% of
    /// the time under this null (mean ± 1.96·sd/√K).
    pub fn absent_band(&self) -> (f64, f64) {
        let half = 1.96 * self.absent_share_sd / f64::from(self.corpora.max(1)).sqrt();
        ((self.absent_share - half).max(0.0), (self.absent_share + half).min(1.0))
    }
}

/// What the null model (every S_k a D-token sample of R's unigram distribution)
/// expects for a bucket's tokens, each quantity averaged over them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketNull {
    /// Mean of 1 − exp(−c·D/|R|): the expected share present in any one S_k.
    pub presence: f64,
    /// Mean of exp(−c·D/|R|): the expected share of (token, S_k) pairs absent.
    pub absent_share: f64,
    /// Expected absence spells per token over K corpora.
    pub spells_per_token: f64,
    /// Expected share of tokens that reappear after an absence within K corpora.
    pub reappeared_share: f64,
}

impl BucketNull {
    /// The null model's expectations for `tokens` (with real counts `real`) over `corpora` corpora.
    pub fn of(real: &[u64], tokens: &[usize], sample_ratio: f64, corpora: u32) -> Self {
        let n = tokens.len().max(1) as f64;
        let mean = |f: &dyn Fn(u64) -> f64| tokens.iter().map(|&t| f(real[t])).sum::<f64>() / n;
        BucketNull {
            presence: mean(&|c| null_presence_probability(c, sample_ratio)),
            absent_share: mean(&|c| null_absence_probability(c, sample_ratio)),
            spells_per_token: mean(&|c| null_expected_spells(null_absence_probability(c, sample_ratio), corpora)),
            reappeared_share: mean(&|c| {
                null_reappearance_probability(null_absence_probability(c, sample_ratio), corpora)
            }),
        }
    }
}

/// Most buckets a survival table has: past it, the common tokens share one
/// open-ended bucket (they rarely vanish, and a plot keeps a colour per bucket).
pub const MAX_BUCKETS: usize = 8;

/// Survival per power-of-two bucket of real count (1, 2-3, 4-7, …), only buckets
/// that hold at least one token; beyond the first `MAX_BUCKETS - 1` such buckets,
/// every remaining token goes into one open-ended bucket (`2048+`). With
/// `sample_ratio` = D/|R|, each bucket also carries the null model's expectations.
pub fn survival_by_bucket(table: &TokenTable, sample_ratio: Option<f64>) -> Vec<BucketSurvival> {
    survival_by_bucket_with(table, sample_ratio, None)
}

/// [`survival_by_bucket`], each bucket also with the null from real documents.
pub fn survival_by_bucket_with(
    table: &TokenTable,
    sample_ratio: Option<f64>,
    real_null: Option<&RealNull>,
) -> Vec<BucketSurvival> {
    let absence = real_null.map(|n| n.absence_probabilities(table.vocab_size()));
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
    let k_max = table.generations();
    buckets
        .into_iter()
        .map(|(low, high, tokens)| {
            let n = tokens.len() as f64;
            let present: Vec<f64> =
                (0..=k_max).map(|k| tokens.iter().filter(|&&t| table.counts(k)[t] > 0).count() as f64 / n).collect();
            let absences: Vec<Absence> = tokens.iter().filter_map(|&t| table.absence(t)).collect();
            let absent_pairs: u64 = absences.iter().map(|a| u64::from(a.absent_corpora)).sum();
            let label = match (low, high) {
                (l, h) if l == h => l.to_string(),
                (l, u64::MAX) => format!("{l}+"),
                (l, h) => format!("{l}-{h}"),
            };
            BucketSurvival {
                label,
                low,
                high,
                tokens: tokens.len(),
                absent_share: if k_max == 0 { f64::NAN } else { absent_pairs as f64 / (n * f64::from(k_max)) },
                spells_per_token: absences.iter().map(|a| f64::from(a.spells)).sum::<f64>() / n,
                reappeared_share: absences.iter().filter(|a| a.reappeared).count() as f64 / n,
                null: sample_ratio.map(|r| BucketNull::of(&table.real, &tokens, r, k_max)),
                real_null: real_null.zip(absence.as_deref()).map(|(n, a)| RealBucketNull::of(n, a, &tokens, k_max)),
                present,
            }
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

/// The null models in a few sentences, with this run's D and |R|.
pub fn null_model_statement(reference: &ReferenceInfo) -> String {
    let real = match &reference.real_null {
        Some(n) => format!(
            "Null model (what a perfect model's corpora would lack): {} D-token corpora of real documents not in R ({}), each a fresh draw; a token's absence probability is the share of them lacking it. Real text is bursty (names, topics), so this null loses more rare tokens than independent draws would, and only absence beyond it is the loop's doing.",
            n.draws(),
            n.source
        ),
        None => "No null from real documents: too little real text lies outside R (or the run was analysed by an older lmloop), so only the independence bound is shown and absence beyond it is not evidence of collapse: real text is burstier than independent draws.".to_string(),
    };
    format!(
        "{}. {real} Independence bound: if every S_k were D independent draws from R's unigram distribution, a token of real count c would be present in any one S_k with probability about 1 − exp(−c·D/|R|); it understates what even a perfect model loses.",
        reference.describe()
    )
}

/// What the run says when D/|R| is unknown (reference.json missing).
pub fn null_model_unknown(path: &Path) -> String {
    format!(
        "Null model unavailable: D/|R| is unknown because {} is missing (the run was analysed by an older lmloop; rerunning `lmloop generations` on it refreshes the analysis).",
        path.display()
    )
}

/// What Suresh et al. predict, with the D/|R| factor and the assumption it rests on.
pub fn recursive_ml_statement(sample_ratio: Option<f64>) -> String {
    let factor = sample_ratio.map(|r| format!(" = c × {}", format_ratio(r))).unwrap_or_default();
    format!(
        "Suresh et al. 2024 analyse recursive maximum-likelihood estimation: each generation is the empirical distribution of n samples drawn from the previous generation's. There, a word seen c times in the first n-sample is lost after a number of generations that grows roughly linearly with c. In this loop n = D, and a token of real count c is expected c·D/|R|{factor} times in one D-token sample, so the relation to compare with is in c·D/|R|, not c. A language model is not that estimator: it smooths and never gives a token probability zero, so a lost token can reappear, which the recursive estimator rules out."
    )
}

/// Column names of [`absence_cells`].
pub const ABSENCE_TABLE_COLUMNS: [&str; 10] = [
    "real count",
    "tokens",
    "absent share",
    "null (real documents)",
    "95% band",
    "independence bound",
    "absence spells per token",
    "null",
    "reappeared share",
    "null",
];

/// One bucket's row of the absence table (text and report): label, tokens, measured
/// absent share beside the null from real documents (with the band a perfect model's
/// K corpora would fall in) and the independence bound, then spells per token and
/// reappeared share, each beside the real-document null (the bound where that is
/// unknown).
pub fn absence_cells(b: &BucketSurvival) -> Vec<String> {
    let bound = |f: fn(&BucketNull) -> f64| b.null.as_ref().map_or("–".into(), |n| format_share(f(n)));
    let real = |f: fn(&RealBucketNull) -> f64| b.real_null.as_ref().map(|n| format_share(f(n)));
    let band = b.real_null.as_ref().map_or("–".into(), |n| {
        let (lo, hi) = n.absent_band();
        format!("{}-{}", format_share(lo), format_share(hi))
    });
    vec![
        b.label.clone(),
        b.tokens.to_string(),
        format_share(b.absent_share),
        real(|n| n.absent_share).unwrap_or_else(|| "–".into()),
        band,
        bound(|n| n.absent_share),
        format_share(b.spells_per_token),
        real(|n| n.spells_per_token).unwrap_or_else(|| bound(|n| n.spells_per_token)),
        format_share(b.reappeared_share),
        real(|n| n.reappeared_share).unwrap_or_else(|| bound(|n| n.reappeared_share)),
    ]
}

fn format_share(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.3}")
    } else {
        "–".into()
    }
}

/// The `inspect tails` report of one run. `reference` (reference.json) gives D/|R|
/// for the null model; `reference_path` is named when it is missing.
pub fn tails_text(
    run: &str,
    table: &TokenTable,
    reference: Option<&ReferenceInfo>,
    reference_path: &Path,
    top: usize,
    min_real_count: u64,
) -> String {
    let min_count = min_real_count.max(1);
    let k_max = table.generations();
    let ratio = reference.map(ReferenceInfo::sample_ratio);
    let real_null = reference.and_then(|r| r.real_null.as_ref());
    let real_absence = real_null.map(|n| n.absence_probabilities(table.vocab_size()));
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
    let _ = writeln!(out, "{}", reference.map_or_else(|| null_model_unknown(reference_path), null_model_statement));
    let mut vanished: Vec<(usize, u32)> =
        considered.iter().filter_map(|&t| table.vanish_generation(t).map(|k| (t, k))).collect();
    // Most common first; ties by earlier vanishing, then by id, so the order is stable.
    vanished.sort_by(|a, b| table.real[b.0].cmp(&table.real[a.0]).then(a.1.cmp(&b.1)).then(a.0.cmp(&b.0)));
    let reappeared = vanished.iter().filter(|&&(t, _)| table.absence(t).is_some_and(|a| a.reappeared)).count();
    let _ = writeln!(
        out,
        "\n{} of {} tokens with real count ≥ {min_count} vanished (count 0 in some S_k); {} are absent from S_{k_max}; {reappeared} of the {} came back in a later corpus (language-model probabilities are never zero, so a vanished token can reappear).",
        vanished.len(),
        considered.len(),
        considered.iter().filter(|&&t| table.count_in(k_max, t) == 0).count(),
        vanished.len(),
    );
    vanished_text(&mut out, table, &vanished, top, real_absence.as_deref(), ratio);
    per_corpus_text(&mut out, table, &vanished, &considered, real_null, ratio, min_count);
    buckets_text(&mut out, table, real_null, ratio, min_count);
    vanish_fit_text(&mut out, table, ratio, min_count);
    let _ = writeln!(out, "{}", recursive_ml_statement(ratio));
    out
}

/// The vanished tokens, most common in R first (the first `top`), with their spells
/// and what the null and the independence bound give them.
fn vanished_text(
    out: &mut String,
    table: &TokenTable,
    vanished: &[(usize, u32)],
    top: usize,
    real_absence: Option<&[f64]>,
    ratio: Option<f64>,
) {
    let k_max = table.generations();
    let null_presence = |t: usize| match real_absence {
        Some(a) => format!("{:.3}", 1.0 - a[t]),
        None => "–".into(),
    };
    let bound_presence =
        |t: usize| ratio.map_or("–".into(), |r| format!("{:.3}", null_presence_probability(table.real[t], r)));
    if !vanished.is_empty() {
        let _ = writeln!(
            out,
            "\nVanished tokens, most common in the real split first (top {} of {}); spells are maximal runs of consecutive corpora with count 0:",
            top.min(vanished.len()),
            vanished.len()
        );
        let _ = writeln!(
            out,
            "{:>8}  {:<w$}  {:>10}  {:>11}  {:>6}  {:>6}  {:>7}  {:>10}  {:>8}  {:>13}  {:>11}",
            "token id",
            "text",
            "real count",
            "vanished in",
            "absent",
            "spells",
            "longest",
            "reappeared",
            format!("in S_{k_max}"),
            "null presence",
            "independent",
            w = TEXT_WIDTH
        );
        for &(t, k) in vanished.iter().take(top) {
            let a = table.absence(t).unwrap_or_default();
            let _ = writeln!(
                out,
                "{:>8}  {:<w$}  {:>10}  {:>11}  {:>6}  {:>6}  {:>7}  {:>10}  {:>8}  {:>13}  {:>11}",
                t,
                quoted_display(&table.texts[t]),
                table.real[t],
                format!("S_{k}"),
                a.absent_corpora,
                a.spells,
                a.longest,
                if a.reappeared { "yes" } else { "no" },
                table.count_in(k_max, t),
                null_presence(t),
                bound_presence(t),
                w = TEXT_WIDTH
            );
        }
    }
}

/// Per synthetic corpus: tokens vanished first there and absent there, beside the null.
fn per_corpus_text(
    out: &mut String,
    table: &TokenTable,
    vanished: &[(usize, u32)],
    considered: &[usize],
    real_null: Option<&RealNull>,
    ratio: Option<f64>,
    min_count: u64,
) {
    let k_max = table.generations();
    let _ = writeln!(
        out,
        "\nPer synthetic corpus (tokens with real count ≥ {min_count}); null: tokens a perfect model's corpus lacks (mean over the real-document draws, ± their standard deviation); independent: Σ exp(−c·D/|R|):"
    );
    let _ = writeln!(
        out,
        "{:>6}  {:>15}  {:>10}  {:>14}  {:>11}",
        "corpus", "vanished first", "absent", "null", "independent"
    );
    let null_absent = real_null.map_or("–".into(), |n| {
        let per_draw: Vec<f64> = n.absent_shares(considered).iter().map(|s| s * considered.len() as f64).collect();
        let m = per_draw.iter().sum::<f64>() / per_draw.len().max(1) as f64;
        let sd = (per_draw.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (per_draw.len().max(2) - 1) as f64).sqrt();
        format!("{m:.1} ± {sd:.1}")
    });
    let bound_absent = ratio.map_or("–".into(), |r| {
        format!("{:.1}", considered.iter().map(|&t| null_absence_probability(table.real[t], r)).sum::<f64>())
    });
    for k in 1..=k_max {
        let first = vanished.iter().filter(|&&(_, v)| v == k).count();
        let absent = considered.iter().filter(|&&t| table.count_in(k, t) == 0).count();
        let _ = writeln!(
            out,
            "{:>6}  {:>15}  {:>10}  {:>14}  {:>11}",
            format!("S_{k}"),
            first,
            absent,
            null_absent,
            bound_absent
        );
    }
}

/// Absence by real-count bucket over every corpus, beside the null and the bound.
fn buckets_text(
    out: &mut String,
    table: &TokenTable,
    real_null: Option<&RealNull>,
    ratio: Option<f64>,
    min_count: u64,
) {
    let k_max = table.generations();
    let buckets: Vec<BucketSurvival> =
        survival_by_bucket_with(table, ratio, real_null).into_iter().filter(|b| b.high >= min_count).collect();
    let _ = writeln!(
        out,
        "\nAbsence by real-count bucket over S_1..S_{k_max} (all tokens of each bucket), beside the null from real documents (its 95% band for K = {k_max} corpora) and the independence bound:"
    );
    let widths = [10, 7, 12, 21, 11, 18, 24, 6, 16, 6];
    let row =
        |cells: &[String]| cells.iter().zip(widths).map(|(c, w)| format!("{c:>w$}")).collect::<Vec<_>>().join("  ");
    let _ = writeln!(out, "{}", row(&ABSENCE_TABLE_COLUMNS.map(str::to_string)));
    for b in &buckets {
        let _ = writeln!(out, "{}", row(&absence_cells(b)));
    }
}

/// The descriptive fit of vanish generation against real count.
fn vanish_fit_text(out: &mut String, table: &TokenTable, ratio: Option<f64>, min_count: u64) {
    let _ = writeln!(
        out,
        "\nVanish generation (first S_k with count 0) against real count: a descriptive least-squares fit over the vanished tokens only (tokens never absent are left out, which biases the slope low; later reappearances are ignored):"
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
            if let Some(r) = ratio {
                let _ = writeln!(
                    out,
                    "  that is {:.4} generations per expected occurrence in one D-token real sample (slope ÷ D/|R|)",
                    f.slope / r
                );
            }
        }
        None => {
            let _ = writeln!(out, "  no fit: it needs at least two vanished tokens with different real counts.");
        }
    }
}
