//! `lmloop compare RUN1 RUN2 …`: one report overlaying several runs (replace vs
//! accumulate, a temperature or λ sweep). Runs must share a tokenizer, since every
//! token statistic is indexed by token id.
use super::figures::{self, MEASURES};
use super::html::Page;
use super::reference::format_ratio;
use super::report::DEFINITIONS;
use super::run_data::RunData;
use crate::durable::write_atomic;
use crate::layout::Layout;
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// Tokens with a real count up to this are "rare" in the comparison's survival plot.
const RARE_MAX_COUNT: u64 = 7;

/// Writes `OUT/report.html` (default `analysis/compare-RUN1-RUN2-…`) and its plots.
pub fn write_comparison(layout: &Layout, runs: &[String], out: Option<&Path>) -> Result<PathBuf> {
    if runs.len() < 2 {
        bail!("compare needs at least two runs, got {}", runs.len());
    }
    for (i, run) in runs.iter().enumerate() {
        if runs[..i].contains(run) {
            bail!("run '{run}' is named twice; list each run once");
        }
    }
    let data = runs.iter().map(|r| RunData::load(layout, r)).collect::<Result<Vec<_>>>()?;
    check_same_tokenizer(layout, &data)?;
    let dir = out.map(Path::to_path_buf).unwrap_or_else(|| layout.comparison(runs));
    let plots = Layout::plots_in(&dir);
    let labels: Vec<String> = data.iter().map(|d| format!("{} ({})", d.name, d.settings.describe())).collect();

    let mut page = Page::new(&format!("lmloop comparison: {}", runs.join(", ")));
    runs_table(&mut page, &data);
    for d in &data {
        if let Some(note) = crate::records::cap_dependence_note(&d.generations) {
            page.note(&format!("{}: {note}", d.name));
        }
    }

    page.section("perplexity", "Held-out perplexity");
    let svg = figures::publish(&plots, "perplexity", &figures::perplexity_chart(&data, &labels))?;
    page.figure("perplexity", &svg, "Perplexity of each generation's model on the real test split.");

    let planes: Vec<_> = data
        .iter()
        .zip(&labels)
        .map(|(d, l)| {
            Ok((l.clone(), super::figures::plane_points(&d.generations), crate::scoring::read_floor(layout, &d.name)?))
        })
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .filter(|p| !p.1.is_empty())
        .collect();
    if !planes.is_empty() {
        page.section("precision-recall", "Quality and diversity (precision and recall)");
        let svg = figures::publish(&plots, "precision-recall", &figures::precision_recall_chart(&planes))?;
        page.figure(
            "precision-recall",
            &svg,
            "Precision (quality) against recall (diversity) of each run's S_1, S_2, … against real test passages in its M_0's embedding; boxes: each run's noise floor (mean ± 2 sd).",
        );
    }

    page.section("loss-by-frequency", "Held-out loss by token frequency");
    loss_by_frequency_charts(&mut page, &plots, &data, &labels)?;

    page.section("rank-frequency", "Rank-frequency curves");
    let curves: Vec<(String, &[u64])> = data
        .iter()
        .zip(&labels)
        .filter(|(d, _)| d.tokens.generations() > 0)
        .map(|(d, label)| (format!("{label}: S_{}", d.tokens.generations()), d.tokens.counts(d.tokens.generations())))
        .collect();
    let svg =
        figures::publish(&plots, "rank-frequency", &figures::rank_frequency_chart(&data[0].tokens.real, &curves))?;
    page.figure(
        "rank-frequency",
        &svg,
        "The real split (black) and the last synthetic corpus of each run, log-log axes.",
    );

    page.section("survival", "Token survival");
    let all = figures::presence_comparison_chart(
        &data,
        &labels,
        1,
        u64::MAX,
        "Share of the real split's tokens present in S_k",
    );
    let svg = figures::publish(&plots, "survival-all", &all)?;
    page.figure(
        "survival-all",
        &svg,
        "Share of the tokens seen in the real split that are present (count > 0) in S_k; dashed, same colour: each run's null from real documents (a D-token corpus of real documents not in R, what a perfect model would write), or for runs without one the independence bound 1 − exp(−c·D/|R|) averaged over the tokens.",
    );
    let rare_title = format!("Share of rare tokens (real count 1-{RARE_MAX_COUNT}) present in S_k");
    let rare = figures::presence_comparison_chart(&data, &labels, 1, RARE_MAX_COUNT, &rare_title);
    let svg = figures::publish(&plots, "survival-rare", &rare)?;
    page.figure(
        "survival-rare",
        &svg,
        &format!("The same for tokens seen 1 to {RARE_MAX_COUNT} times in the real split, with each run's null model dashed."),
    );
    let svg = figures::publish(&plots, "vanished", &figures::vanished_comparison_chart(&data, &labels))?;
    page.figure("vanished", &svg, "Tokens whose first zero count is in S_k.");

    page.section("drift", "Drift from the real training split");
    for m in MEASURES {
        let id = format!("drift-{}", m.id);
        let svg = figures::publish(&plots, &id, &figures::measure_comparison_chart(&data, &labels, m))?;
        page.figure(
            &id,
            &svg,
            &format!(
                "{} of each run's S_k; dashed: the real split's value; solid without markers: the noise floor (a real sample of D tokens measured the same way).",
                m.name
            ),
        );
    }

    page.section("definitions", "Definitions");
    page.list(&DEFINITIONS.map(str::to_string));

    let path = Layout::report_in(&dir);
    write_atomic(&path, page.finish().as_bytes())?;
    Ok(path)
}

/// One chart per real-count bucket of loss_by_frequency.csv (buckets matched by
/// their bounds), or one note when no run has the file.
fn loss_by_frequency_charts(page: &mut Page, plots: &Path, data: &[RunData], labels: &[String]) -> Result<()> {
    let without: Vec<&str> = data
        .iter()
        .filter(|d| d.loss_by_frequency.as_ref().is_none_or(|r| r.is_empty()))
        .map(|d| d.name.as_str())
        .collect();
    if without.len() == data.len() {
        page.note("No run has a loss_by_frequency.csv, so there is no held-out loss by token frequency to compare.");
        return Ok(());
    }
    if !without.is_empty() {
        page.note(&format!("Runs without loss_by_frequency.csv (left out below): {}.", without.join(", ")));
    }
    let mut ranges: Vec<(u32, u64, u64)> = data
        .iter()
        .filter_map(|d| d.loss_by_frequency.as_ref())
        .flat_map(|rows| rows.iter().map(|r| (r.bucket, r.min_real_count, r.max_real_count)))
        .collect();
    ranges.sort_unstable();
    ranges.dedup();
    for (bucket, min, max) in ranges {
        let id = format!("loss-bucket-{bucket}-{min}-{max}");
        let chart = figures::loss_bucket_comparison_chart(data, labels, min, max);
        let svg = figures::publish(plots, &id, &chart)?;
        page.figure(
            &id,
            &svg,
            &format!("{}: mean held-out loss (nats) of each generation's model on those test targets.", chart.title),
        );
    }
    Ok(())
}

/// Refuses runs whose tokenizers differ (by `corpus.json`'s `tokenizer_sha256`).
fn check_same_tokenizer(layout: &Layout, data: &[RunData]) -> Result<()> {
    let mut first: Option<(&str, &str)> = None;
    for run in data {
        let Some(corpus) = &run.corpus else {
            bail!(
                "run '{}' has no {}, so its tokenizer cannot be checked against the others",
                run.name,
                layout.corpus_json(&run.name).display()
            );
        };
        match first {
            None => first = Some((&run.name, &corpus.tokenizer_sha256)),
            Some((name, sha)) if sha != corpus.tokenizer_sha256 => bail!(
                "runs '{name}' and '{}' used different tokenizers (tokenizer_sha256 {} vs {}), so their token statistics cannot be compared",
                run.name,
                short(sha),
                short(&corpus.tokenizer_sha256)
            ),
            Some(_) => {}
        }
    }
    Ok(())
}

/// The first 12 hex digits of a hash, enough to tell two apart in a message.
fn short(sha: &str) -> String {
    let head: String = sha.chars().take(12).collect();
    if head.len() < sha.len() {
        format!("{head}…")
    } else {
        head
    }
}

fn runs_table(page: &mut Page, data: &[RunData]) {
    let header: Vec<String> = [
        "run",
        "policy",
        "λ",
        "temperature",
        "corpus",
        "generations",
        "last held-out perplexity",
        "synthetic corpora",
        "tokens absent from the last S_k",
        "non-canonical share of the last S_k",
        "D/|R|",
    ]
    .map(str::to_string)
    .to_vec();
    let rows: Vec<Vec<String>> = data
        .iter()
        .map(|d| {
            let k = d.tokens.generations();
            let absent = (0..d.tokens.vocab_size())
                .filter(|&t| d.tokens.real[t] > 0 && k > 0 && d.tokens.count_in(k, t) == 0)
                .count();
            vec![
                d.name.clone(),
                d.settings.policy.clone(),
                d.settings.real_fraction.map(|l| l.to_string()).unwrap_or_else(|| "–".into()),
                d.settings.temperature.map(|t| t.to_string()).unwrap_or_else(|| "–".into()),
                d.corpus.as_ref().map(|c| c.corpus.clone()).unwrap_or_default(),
                d.generations.len().to_string(),
                d.generations.last().map(|g| format!("{:.3}", g.held_out_perplexity)).unwrap_or_else(|| "–".into()),
                k.to_string(),
                absent.to_string(),
                d.generations
                    .last()
                    .filter(|g| g.has_sampler_columns())
                    .map_or_else(|| "–".into(), |g| format!("{:.4}", g.synthetic_non_canonical_share)),
                d.reference.as_ref().map_or_else(|| "–".into(), |r| format_ratio(r.sample_ratio())),
            ]
        })
        .collect();
    page.table(&header, &rows, &[0, 1, 4]);
}
