//! `analysis/RUN/report.html`: one self-contained page per run, plots inline as SVG
//! (and also written to `analysis/RUN/plots/` as SVG and PNG).
use super::drift::DriftRow;
use super::figures::{self, DRIFT_GROUPS, MEASURES};
use super::html::Page;
use super::paths::AnalysisPaths;
use super::run_data::RunData;
use crate::layout::{write_atomic, Layout};
use anyhow::{Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Characters of each synthetic corpus shown in the report.
const SAMPLE_CHARS: usize = 600;

/// Short definitions shown at the end of every report (full ones in `analysis/mod.rs`).
pub const DEFINITIONS: [&str; 9] = [
    "S_k is the synthetic corpus sampled by generation k-1's model; S_0 on the corpus axis is the real training split. All measures count every token, end-of-text included, over the fixed vocabulary; logarithms are natural.",
    "KL(real‖gen) and KL(gen‖real) use add-½ smoothing of every vocabulary entry in both corpora; Jensen–Shannon (nats) and total variation use the unsmoothed distributions.",
    "Tail set: tokens sorted by real count ascending; a token is in it when all tokens with real count ≤ its count hold at most 50% of the real split (ties all in or all out; tokens unseen in the real split are in). Tail mass: share of a corpus's tokens in the tail set.",
    "Distinct-n: unique n-grams / total n-grams over the corpus; n-grams lie inside one document and never include the end-of-text token.",
    "Mean document length: tokens per document, end-of-text excluded.",
    "Repetition rate: pooled seq-rep-4 (Welleck et al. 2019): share of within-document 4-grams that already occurred earlier in the same document.",
    "Zipf slope: least-squares slope of ln(count) on ln(rank) over every token with a count above zero.",
    "Vanish generation: the first k whose S_k count is 0 for a token seen in the real split; survival: share of a real-count bucket's tokens present (count > 0) in S_k.",
    "Held-out perplexity: generation k's model on the fixed real test split.",
];

/// Writes the report of `run` and its plots; returns the report's path.
pub fn write_report(layout: &Layout, run: &str) -> Result<PathBuf> {
    let data = RunData::load(layout, run)?;
    let plots = layout.plots(run);
    let mut page = Page::new(&format!("lmloop run {run}"));
    let k_max = data.tokens.generations();
    page.paragraph(&format!(
        "Policy {}; {} generation(s) evaluated, {} synthetic corpora analysed (S_1..S_{k_max}){}.",
        data.settings.describe(),
        data.generations.len(),
        k_max,
        data.corpus
            .as_ref()
            .map(|c| format!("; real corpus {}, vocabulary of {} tokens", c.corpus, c.vocab_size))
            .unwrap_or_default()
    ));

    page.section("perplexity", "Held-out perplexity");
    let svg = figures::publish(
        &plots,
        "perplexity",
        &figures::perplexity_chart(std::slice::from_ref(&data), &[run.to_string()]),
    )?;
    page.figure("perplexity", &svg, "Perplexity of each generation's model on the real test split (never trained on).");

    page.section("rank-frequency", "Rank-frequency curves");
    let curves: Vec<(String, &[u64])> =
        (1..=k_max).map(|k| (format!("S_{k} (generation {})", k - 1), data.tokens.counts(k))).collect();
    let svg = figures::publish(&plots, "rank-frequency", &figures::rank_frequency_chart(&data.tokens.real, &curves))?;
    page.figure(
        "rank-frequency",
        &svg,
        "Relative frequency of each token against its rank, log-log axes: the real split in black, then every S_k.",
    );

    page.section("survival", "Token survival");
    let svg = figures::publish(&plots, "survival", &figures::survival_chart(&data.tokens))?;
    page.figure("survival", &svg, "Share of the tokens in each real-count bucket that are present (count > 0) in S_k.");
    let svg = figures::publish_bars(&plots, "vanished", &figures::vanished_bar_chart(&data.tokens))?;
    page.figure("vanished", &svg, "Tokens whose first zero count is in S_k.");
    let svg = figures::publish(&plots, "vanish-vs-count", &figures::vanish_scatter_chart(&data.tokens))?;
    page.figure(
        "vanish-vs-count",
        &svg,
        "Vanish generation of every vanished token against its real count, with the least-squares line; Suresh et al. 2024 predict a roughly linear relation (a token seen c times survives about c generations). Tokens still alive are not shown.",
    );

    page.section("drift", "Drift from the real training split");
    for group in &DRIFT_GROUPS {
        let id = format!("drift-{}", group.id);
        let svg = figures::publish(&plots, &id, &figures::drift_group_chart(&data, group))?;
        page.figure(&id, &svg, &format!("{} of each S_k; dashed: the real split's own value.", group.title));
    }
    drift_table(&mut page, &data.drift);

    page.section("samples", "Samples");
    for k in 1..=k_max {
        let heading = format!("S_{k} (sampled by generation {})", k - 1);
        match read_prefix(&layout.synthetic_text(run, k), SAMPLE_CHARS) {
            Ok(text) => page.preformatted(Some(&heading), &text),
            Err(e) => {
                page.preformatted(Some(&heading), "");
                page.note(&format!("{e:#}"));
            }
        }
    }

    page.section("config", "Configuration");
    match &data.run_toml {
        Some(text) => page.preformatted(Some("run.toml"), text),
        None => page.note(&format!("{} is missing.", layout.run_toml(run).display())),
    }

    page.section("definitions", "Definitions");
    page.list(&DEFINITIONS.map(str::to_string));

    let path = layout.report_html(run);
    write_atomic(&path, page.finish().as_bytes())?;
    Ok(path)
}

/// drift.csv as a table, one row per corpus.
pub fn drift_table(page: &mut Page, rows: &[DriftRow]) {
    let mut header = vec!["corpus".to_string(), "generation".into(), "tokens".into(), "documents".into()];
    header.extend(MEASURES.iter().map(|m| m.name.to_string()));
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut cells = vec![r.corpus.clone(), r.generation.clone(), r.tokens.to_string(), r.documents.to_string()];
            cells.extend(MEASURES.iter().map(|m| format_measure((m.value)(r))));
            cells
        })
        .collect();
    page.table(&header, &cells, &[0, 1]);
}

/// Four significant digits, integers as integers, NaN as "n/a".
fn format_measure(value: f64) -> String {
    if !value.is_finite() {
        "n/a".into()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        let digits = (3 - value.abs().log10().floor() as i32).clamp(0, 8) as usize;
        format!("{value:.digits$}")
    }
}

/// The first `chars` characters of a text file, read without loading the whole file.
fn read_prefix(path: &Path, chars: usize) -> Result<String> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open the sample text {}", path.display()))?;
    // A UTF-8 character is at most 4 bytes, so 4·chars bytes hold `chars` whole
    // characters: a character cut at the end of the read lies beyond them.
    let mut bytes = Vec::new();
    file.take(4 * chars as u64).read_to_end(&mut bytes).with_context(|| format!("cannot read {}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(text.chars().take(chars).collect())
}
