//! `analysis/RUN/report.html`: one self-contained page per run, plots inline as SVG
//! (and also written to `analysis/RUN/plots/` as SVG and PNG).
use super::drift::DriftRow;
use super::figures::{self, DRIFT_GROUPS, MEASURES};
use super::html::Page;
use super::run_data::{LossByFrequencyRow, RunData};
use super::tails::{null_model_statement, null_model_unknown, recursive_ml_statement};
use crate::durable::write_atomic;
use crate::layout::Layout;
use crate::records::GenerationRow;
use anyhow::{Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Characters of each synthetic corpus shown in the report.
const SAMPLE_CHARS: usize = 600;

/// Short definitions shown at the end of every report (full ones in `analysis/mod.rs`).
pub const DEFINITIONS: [&str; 15] = [
    "S_k is the synthetic corpus sampled by generation k-1's model; S_0 on the corpus axis is the real training split R. D is the size of one synthetic corpus in tokens, |R| the size of R. All measures count every token, end-of-text included, over the fixed vocabulary; logarithms are natural.",
    "KL(real‖gen) and KL(gen‖real) use add-½ smoothing of every vocabulary entry in both corpora; Jensen–Shannon (nats) and total variation use the unsmoothed distributions.",
    "Noise floor: every drift measure of a real sample of D tokens (not S_k) against R, drawn as a solid line without markers: what a perfect model would show, since a finite sample of R already differs from R.",
    "Tail set: tokens sorted by real count ascending; a token is in it when all tokens with real count ≤ its count hold at most 50% of the real split (ties all in or all out; tokens unseen in the real split are in). Tail mass: share of a corpus's tokens in the tail set.",
    "Distinct-n: unique n-grams / total n-grams over the corpus; n-grams lie inside one document and never include the end-of-text token.",
    "Mean document length: tokens per document, end-of-text excluded.",
    "Repetition rate: pooled seq-rep-4 (Welleck et al. 2019): share of within-document 4-grams that already occurred earlier in the same document.",
    "Zipf slope: least-squares slope of ln(count) on ln(rank) over every token with a count above zero.",
    "Vanish generation: the first k whose S_k count is 0 for a token seen in the real split; survival: share of a real-count bucket's tokens present (count > 0) in S_k.",
    "Null model: D-token corpora of real documents not in R (what a perfect model would write), drawn afresh 20 times; a token's absence probability is the share of draws lacking it. Independence bound: if every S_k were D independent draws from R's unigram distribution, a token of real count c would be present with probability 1 − exp(−c·D/|R|) (Poisson approximation); bursty real text misses more than that.",
    "Absence spell: a maximal run of consecutive corpora S_j..S_k in which a token seen in R has count 0 (a spell reaching the last corpus is still open); a token reappeared when it is absent from some S_j and present in a later S_k.",
    "Held-out perplexity: generation k's model on the fixed real test split.",
    "Loss by frequency bucket: the same held-out loss averaged over the test targets whose token's count in R lies in a bucket (bucket 0: never seen in R; then log-spaced ranges, inclusive bounds).",
    "Truncation share: share of a synthetic corpus's documents cut by the length cap rather than ended by the model's own end-of-text. Training tokens in cut documents: share of a generation's training mixture in such documents; above 50% the generation is marked cap-dependent.",
    "Non-canonical share: share of the ids the model sampled that the tokenizer's encoding of their text does not reproduce; corpora hold the re-encoded (canonical) tokens, as a pipeline that publishes the text and reads it back would.",
];

/// Writes the report of `run` and its plots; returns the report's path.
pub fn write_report(layout: &Layout, run: &str) -> Result<PathBuf> {
    let data = RunData::load(layout, run)?;
    let plots = layout.plots(run);
    let mut page = Page::new(&format!("lmloop run {run}"));
    for section in [summary_section, held_out_section, scores_section, tokens_section, drift_section, samples_section] {
        section(&mut page, layout, run, &data, &plots)?;
    }
    let path = layout.report_html(run);
    write_atomic(&path, page.finish().as_bytes())?;
    Ok(path)
}

/// The run's policy, what was analysed, and the real reference R.
fn summary_section(page: &mut Page, layout: &Layout, run: &str, data: &RunData, _plots: &Path) -> Result<()> {
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
    if let Some(note) = crate::records::cap_dependence_note(&data.generations) {
        page.note(&note);
    }
    match &data.reference {
        Some(r) => page.paragraph(&format!(
            "Real reference R: {}. {}; the noise floor is a real sample of {} tokens.",
            r.name,
            r.describe(),
            r.noise_floor_tokens
        )),
        None => page.note(&null_model_unknown(&layout.reference_json(run))),
    }
    Ok(())
}

/// Held-out perplexity by generation and the held-out loss by token frequency.
fn held_out_section(page: &mut Page, layout: &Layout, run: &str, data: &RunData, plots: &Path) -> Result<()> {
    page.section("perplexity", "Held-out perplexity");
    let svg = figures::publish(
        plots,
        "perplexity",
        &figures::perplexity_chart(std::slice::from_ref(data), &[run.to_string()]),
    )?;
    page.figure("perplexity", &svg, "Perplexity of each generation's model on the real test split (never trained on).");

    page.section("loss-by-frequency", "Held-out loss by token frequency");
    match &data.loss_by_frequency {
        Some(rows) if !rows.is_empty() => {
            let svg = figures::publish(plots, "loss-by-frequency", &figures::loss_by_frequency_chart(rows))?;
            page.figure(
                "loss-by-frequency",
                &svg,
                "Mean held-out loss of generation k's model on the real test targets, split by the target token's count in R (one line per bucket; generations whose bucket holds no target are left out). Rising lines in the rare buckets are the model forgetting the tails.",
            );
            loss_by_frequency_table(page, rows);
        }
        _ => page.note(&format!(
            "No loss by token frequency: {} is missing or empty (the generations loop writes it).",
            layout.loss_by_frequency_csv(run).display()
        )),
    }
    Ok(())
}

/// Per-document perplexity under the reference and the passages' quality and diversity.
fn scores_section(page: &mut Page, layout: &Layout, run: &str, data: &RunData, plots: &Path) -> Result<()> {
    page.section("reference-perplexity", "Per-document perplexity under M_0");
    let real = crate::scoring::real_perplexities(layout, run)?;
    let mut corpora = Vec::new();
    for g in &data.generations {
        let k = g.generation + 1;
        if let Some(v) = crate::scoring::corpus_perplexities(layout, run, k)? {
            corpora.push((format!("S_{k} (sampled by generation {})", g.generation), v));
        }
    }
    match real {
        Some(real) if !corpora.is_empty() => {
            let chart = figures::reference_perplexity_chart(&real, &corpora);
            let svg = figures::publish(plots, "reference-perplexity", &chart)?;
            page.figure(
                "reference-perplexity",
                &svg,
                "Density of the log perplexity of every document of S_k under M_0, the model trained on R, and of the real test documents (black). generations.csv summarises it (reference_perplexity_*, reference_beyond_real_p99).",
            );
            beyond_tail_table(page, &data.generations);
        }
        _ => page.note(&format!(
            "No per-document scores: {} holds none (runs before lmloop scored its corpora).",
            layout.analysis(run).join("scores").display()
        )),
    }

    page.section("precision-recall", "Quality and diversity (precision and recall)");
    let points = super::figures::plane_points(&data.generations);
    if points.is_empty() {
        page.note("No precision or recall: the run's rows carry none (runs before lmloop measured them, or too few passages).");
    } else {
        let floor = crate::scoring::read_floor(layout, run)?;
        let chart = figures::precision_recall_chart(&[(run.to_string(), points, floor.clone())]);
        let svg = figures::publish(plots, "precision-recall", &chart)?;
        page.figure(
            "precision-recall",
            &svg,
            &format!(
                "k-nearest-neighbour precision (quality) and recall (diversity) of S_k's passages against as many real test passages, in M_0's embedding (k = {}, at most {} passages); the box is the noise floor, draws of real passages outside R against the same real passages (mean ± 2 sd). generations.csv also holds density and coverage.",
                super::manifold::K,
                super::manifold::SAMPLE_CAP
            ),
        );
        let chart = figures::manifold_chart(&data.generations, floor.as_ref());
        let svg = figures::publish(plots, "quality-by-generation", &chart)?;
        page.figure(
            "quality-by-generation",
            &svg,
            "The same four measures by corpus: precision and density (quality), recall and coverage (diversity); dashed, same colour: the noise floor's mean. Recall from k-nearest-neighbour balls grows when a corpus spreads out, so read it with coverage, which takes its radii from the real passages.",
        );
        if floor.is_none() {
            page.note("No noise floor for precision and recall: too little real text lies outside R, or the run was scored before lmloop measured it.");
        }
    }
    Ok(())
}

/// The sampled documents, rank-frequency curves and token survival against the null.
fn tokens_section(page: &mut Page, layout: &Layout, run: &str, data: &RunData, plots: &Path) -> Result<()> {
    let k_max = data.tokens.generations();
    let ratio = data.sample_ratio();
    page.section("sampling", "Sampled documents");
    sampling_table(page, data);

    page.section("rank-frequency", "Rank-frequency curves");
    let curves: Vec<(String, &[u64])> =
        (1..=k_max).map(|k| (format!("S_{k} (generation {})", k - 1), data.tokens.counts(k))).collect();
    let svg = figures::publish(plots, "rank-frequency", &figures::rank_frequency_chart(&data.tokens.real, &curves))?;
    page.figure(
        "rank-frequency",
        &svg,
        "Relative frequency of each token against its rank, log-log axes: the real split in black, then every S_k.",
    );

    page.section("survival", "Token survival");
    match &data.reference {
        Some(r) => page.paragraph(&null_model_statement(r)),
        None => page.note(&null_model_unknown(&layout.reference_json(run))),
    }
    let real_null = data.reference.as_ref().and_then(|r| r.real_null.as_ref());
    let svg = figures::publish(plots, "survival", &figures::survival_chart(&data.tokens, ratio, real_null))?;
    page.figure(
        "survival",
        &svg,
        "Share of the tokens in each real-count bucket that are present (count > 0) in S_k; dashed, same colour: what a perfect model would show, the null from real documents (D-token draws of real documents not in R; band: where one such corpus falls 95% of the time), or, when the run has none, the independence bound 1 − exp(−c·D/|R|) averaged over the bucket's tokens.",
    );
    absence_table(page, data);
    let svg = figures::publish_bars(plots, "vanished", &figures::vanished_bar_chart(&data.tokens))?;
    page.figure("vanished", &svg, "Tokens whose first zero count is in S_k (some of them reappear later).");
    let svg = figures::publish(plots, "vanish-vs-count", &figures::vanish_scatter_chart(&data.tokens))?;
    page.figure(
        "vanish-vs-count",
        &svg,
        "Vanish generation (first S_k with count 0) of every vanished token against its real count, with a descriptive least-squares line; tokens never absent are not shown, and later reappearances are ignored.",
    );
    page.paragraph(&recursive_ml_statement(ratio));
    Ok(())
}

/// Drift of every S_k from the real split, against the noise floor.
fn drift_section(page: &mut Page, _layout: &Layout, _run: &str, data: &RunData, plots: &Path) -> Result<()> {
    page.section("drift", "Drift from the real training split");
    if data.noise_floor_drift().is_none() {
        match data.reference.as_ref().map(|r| r.noise_floor_source.as_str()).filter(|s| !s.is_empty()) {
            Some(why) => page.note(&format!(
                "No noise floor ({why}): too little real text lies outside R for a D-token real sample, so these plots show no line for what a perfect model would show."
            )),
            None => page.note("drift.csv has no noise-floor row (real sample of D tokens): the run was analysed by an older lmloop."),
        }
    }
    for group in &DRIFT_GROUPS {
        let id = format!("drift-{}", group.id);
        let svg = figures::publish(plots, &id, &figures::drift_group_chart(data, group))?;
        page.figure(
            &id,
            &svg,
            &format!(
                "{} of each S_k; dashed: the real split's own value; solid without markers: the noise floor (a real sample of D tokens measured the same way).{}{}",
                group.title,
                if group.reading.is_empty() { "" } else { " " },
                group.reading
            ),
        );
    }
    drift_table(page, &data.drift);
    Ok(())
}

/// A sample of every S_k, the run's configuration and the definitions.
fn samples_section(page: &mut Page, layout: &Layout, run: &str, data: &RunData, _plots: &Path) -> Result<()> {
    let k_max = data.tokens.generations();
    page.section("samples", "Samples");
    for k in 1..=k_max {
        let heading = format!("S_{k} (sampled by generation {})", k - 1);
        // A sample is shown only from a text that still holds what its manifest recorded.
        let text_path = layout.synthetic_text(run, k);
        let checked = match crate::synthetic::manifest(&layout.synthetic_corpus(run, k)).and_then(|m| m.txt_file) {
            Some(record) => crate::integrity::check_file(
                &text_path,
                &record,
                "restore it, or rerun the loop with --rerun-from to sample it again",
            ),
            None => Ok(()),
        };
        match checked.and_then(|_| read_prefix(&text_path, SAMPLE_CHARS)) {
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
    Ok(())
}

/// One row per bucket: its range, targets, and the loss of the first and last generation.
fn loss_by_frequency_table(page: &mut Page, rows: &[LossByFrequencyRow]) {
    let buckets = figures::loss_buckets(rows);
    let first_k = rows.iter().map(|r| r.generation).min().unwrap_or(0);
    let last_k = rows.iter().map(|r| r.generation).max().unwrap_or(0);
    let header: Vec<String> = [
        "bucket".to_string(),
        "real count".into(),
        "held-out targets".into(),
        format!("loss, generation {first_k}"),
        format!("loss, generation {last_k}"),
        "change".into(),
    ]
    .to_vec();
    let loss_at = |bucket: &[&LossByFrequencyRow], k: u32| {
        bucket.iter().find(|r| r.generation == k).map_or(f64::NAN, |r| r.mean_loss)
    };
    let cells: Vec<Vec<String>> = buckets
        .iter()
        .map(|b| {
            let (first, last) = (loss_at(b, first_k), loss_at(b, last_k));
            vec![
                b[0].bucket.to_string(),
                b[0].range_label(),
                b[0].target_tokens.to_string(),
                format_loss(first),
                format_loss(last),
                format_signed(last - first),
            ]
        })
        .collect();
    page.table(&header, &cells, &[1]);
}

/// The share of each S_k beyond the real test documents' 99th percentile against its
/// null: the noise floor's documents, length-matched (`crate::analysis::scores`).
fn beyond_tail_table(page: &mut Page, rows: &[GenerationRow]) {
    let scored: Vec<_> = rows.iter().filter(|g| g.reference_perplexity_median > 0.0).collect();
    if scored.is_empty() {
        return;
    }
    let share = |v: f64| if v.is_finite() { format!("{:.1}%", 100.0 * v) } else { "n/a".to_string() };
    let header: Vec<String> =
        ["corpus", "beyond real p99", "floor (length-matched)", "excess"].iter().map(|h| h.to_string()).collect();
    let cells: Vec<Vec<String>> = scored
        .iter()
        .map(|g| {
            vec![
                format!("S_{}", g.generation + 1),
                share(g.reference_beyond_real_p99),
                share(g.reference_beyond_real_p99_floor),
                if g.reference_beyond_real_p99_excess.is_finite() {
                    format!("{:+.1} pt", 100.0 * g.reference_beyond_real_p99_excess)
                } else {
                    "n/a".to_string()
                },
            ]
        })
        .collect();
    page.note(
        "The share of S_k's documents beyond the real test documents' 99th percentile, beside what real text not in R shows beyond the same cut at S_k's document lengths (one piece of the noise floor's documents per document of S_k, with as many tokens, scored alike). With a few dozen test documents the cut sits near their maximum, so real text exceeds it too, and short documents more often: a share reads as the loop's only where it exceeds its floor (across seeds, the sweep's reference_beyond_real_p99_excess).",
    );
    page.table(&header, &cells, &[0]);
}

/// generations.csv's sampler columns per generation, beside the real split's mean document length.
fn sampling_table(page: &mut Page, data: &RunData) {
    let real_length = data.real_drift().map(|r| r.mean_document_tokens);
    page.paragraph(&format!(
        "Real training split: mean document length {} tokens (end-of-text excluded).",
        real_length.map_or("n/a".into(), format_measure)
    ));
    if !data.generations.iter().any(|g| g.has_sampler_columns()) {
        page.note("generations.csv has no sampler columns (synthetic_documents, synthetic_truncation_share, synthetic_mean_document_tokens, train_epochs, budget): the run was written by an older lmloop.");
        return;
    }
    let header: Vec<String> = [
        "generation k",
        "corpus",
        "documents",
        "truncation share",
        "non-canonical share",
        "mean document length (tokens)",
        "÷ real mean length",
        "train epochs",
        "budget",
        "training tokens in cut documents",
    ]
    .map(str::to_string)
    .to_vec();
    let or_dash = |v: Option<f64>| v.map_or("–".into(), format_measure);
    // A row written before the sampler columns reads as zeros there.
    let present = |v: f64, g: &GenerationRow| g.has_sampler_columns().then_some(v);
    let cells: Vec<Vec<String>> = data
        .generations
        .iter()
        .map(|g| {
            let relative = match (present(g.synthetic_mean_document_tokens, g), real_length) {
                (Some(s), Some(r)) if r > 0.0 => Some(s / r),
                _ => None,
            };
            vec![
                g.generation.to_string(),
                format!("S_{}", g.generation + 1),
                if g.synthetic_documents > 0 { g.synthetic_documents.to_string() } else { "–".into() },
                or_dash(present(g.synthetic_truncation_share, g)),
                or_dash(present(g.synthetic_non_canonical_share, g)),
                or_dash(present(g.synthetic_mean_document_tokens, g)),
                or_dash(relative),
                or_dash((g.train_epochs > 0.0).then_some(g.train_epochs)),
                if g.budget.is_empty() { "–".into() } else { g.budget.clone() },
                match (present(g.train_truncated_share, g), g.train_cap_dependent) {
                    (Some(v), true) => format!("{} (cap-dependent)", format_measure(v)),
                    (v, _) => or_dash(v),
                },
            ]
        })
        .collect();
    page.table(&header, &cells, &[1, 8, 9]);
    curation_lengths_table(page, &data.generations);
}

/// The median lengths of the documents curation kept and dropped per generation, for
/// a curated run (nothing otherwise).
fn curation_lengths_table(page: &mut Page, rows: &[GenerationRow]) {
    let curated: Vec<&GenerationRow> = rows.iter().filter(|g| g.curation_kept_median_tokens.is_finite()).collect();
    if curated.is_empty() {
        return;
    }
    page.paragraph("Curation by length: the median length (tokens) of the documents the verifier kept and of those it dropped. Per-token perplexity favours short documents, so a ranking over all documents keeps short ones; the default ranks within length strata and keeps each stratum's share.");
    let header: Vec<String> =
        ["corpus", "kept share", "kept median length", "dropped median length"].map(str::to_string).to_vec();
    let cells: Vec<Vec<String>> = curated
        .iter()
        .map(|g| {
            vec![
                format!("S_{}", g.generation + 1),
                format_measure(g.curation_kept_share),
                format_measure(g.curation_kept_median_tokens),
                if g.curation_dropped_median_tokens.is_finite() {
                    format_measure(g.curation_dropped_median_tokens)
                } else {
                    "none dropped".to_string()
                },
            ]
        })
        .collect();
    page.table(&header, &cells, &[0]);
}

/// Measured absence per real-count bucket beside the null model's expectations.
fn absence_table(page: &mut Page, data: &RunData) {
    let k_max = data.tokens.generations();
    if k_max == 0 {
        page.note("No synthetic corpus yet, so no absence to compare with the null model.");
        return;
    }
    let header: Vec<String> = super::tails::ABSENCE_TABLE_COLUMNS.map(str::to_string).to_vec();
    let real_null = data.reference.as_ref().and_then(|r| r.real_null.as_ref());
    let cells: Vec<Vec<String>> = super::tails::survival_by_bucket_with(&data.tokens, data.sample_ratio(), real_null)
        .iter()
        .map(super::tails::absence_cells)
        .collect();
    page.paragraph(&format!(
        "Absence over S_1..S_{k_max} per real-count bucket: the share of (token, S_k) pairs with count 0, the mean number of absence spells per token, and the share of tokens that came back after an absence. Beside each, what a perfect model's corpora show: the null from real documents (D-token draws of real documents not in R; its band is where K = {k_max} such corpora would put the absent share 95% of the time), and the independence bound 1 − exp(−c·D/|R|), which real, bursty text does not reach."
    ));
    page.table(&header, &cells, &[0]);
}

fn format_share(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.3}")
    } else {
        "n/a".into()
    }
}

/// A loss in nats, three decimals.
fn format_loss(value: f64) -> String {
    format_share(value)
}

/// A difference with its sign, three decimals.
fn format_signed(value: f64) -> String {
    if value.is_finite() {
        format!("{value:+.3}")
    } else {
        "n/a".into()
    }
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
