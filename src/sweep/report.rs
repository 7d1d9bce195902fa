//! `lmloop sweep report`: `summary.csv`, `changes.csv` and `report.html`, one
//! self-contained page (inline SVG, no script): per cell the mean over seeds with
//! its 95% confidence band, one colour per cell; the change from generation 0 to N
//! with its interval; every missing or failed seed named.
use super::aggregate::{aggregate, write_tables, Aggregate, Slot};
use super::cells::Sweep;
use super::measures::{Kind, CHANGE_MEASURES};
use super::state::{run_status, RunState};
use super::stats::Summary;
use crate::analysis::{publish, Page};
use crate::durable::write_atomic;
use crate::layout::Layout;
use crate::layout::SweepPaths;
use crate::plot::{LineChart, Series, SeriesStyle};
use anyhow::Result;
use std::path::PathBuf;

/// Palette indices for cells: `crate::plot`'s palette without its black, which
/// draws the references (real split, noise floor).
const CELL_COLOURS: [usize; 7] = [0, 1, 2, 3, 4, 5, 7];
const REFERENCE_COLOUR: usize = 6;

/// Corpus measures drawn, with their titles and whether the real split's own value is a reference.
const DRIFT_FIGURES: [(&str, &str, bool); 8] = [
    ("js_divergence", "Jensen-Shannon divergence from the real split (nats)", false),
    ("kl_real_gen_add_half", "KL(real ‖ S) with add-½ smoothing (nats)", false),
    ("total_variation", "total variation distance from the real split", false),
    ("entropy_nats", "unigram entropy (nats)", true),
    ("distinct_tokens", "distinct tokens", true),
    ("tail_mass", "tail mass (share of tokens from the real tail)", true),
    ("distinct_2", "distinct-2", true),
    ("mean_document_tokens", "mean document length (tokens)", true),
];

pub struct ReportOutput {
    pub html: PathBuf,
    pub summary: PathBuf,
    pub changes: PathBuf,
    /// Runs that contributed nothing to some rows, as "RUN: state".
    pub incomplete: Vec<String>,
    /// The verdict on each claim of the sweep file, one line each.
    pub verdicts: Vec<String>,
    /// How many intervals the report reads, in words.
    pub intervals: String,
}

pub fn write_report(layout: &Layout, sweep: &Sweep) -> Result<ReportOutput> {
    let paths = SweepPaths::new(layout, &sweep.spec.name);
    let agg = aggregate(layout, sweep)?;
    if agg.per_run.iter().all(|v| v.is_empty()) {
        anyhow::bail!(
            "no run of sweep {} has produced results yet; start it with `lmloop sweep run {}`",
            sweep.spec.name,
            sweep.spec.file.display()
        );
    }
    // Compute: the tables, rates, contrasts, thresholds and verdicts, each written.
    write_tables(&paths, sweep, &agg)?;
    let base = sweep.baseline()?;
    let contrasts = base.map(|b| super::contrasts::contrasts(sweep, &agg, b)).unwrap_or_default();
    let rates = super::contrasts::rates(sweep, &agg)?;
    let thresholds = super::contrasts::thresholds(sweep, &rates);
    write_atomic(&paths.contrasts_csv(), &super::contrasts::contrasts_csv(sweep, &contrasts)?)?;
    write_atomic(&paths.rates_csv(), &super::contrasts::rates_csv(sweep, &rates)?)?;
    write_atomic(&paths.thresholds_csv(), &super::contrasts::thresholds_csv(&thresholds)?)?;
    let verdicts = super::claims::verdicts(sweep, &agg, &rates)?;
    write_atomic(&paths.verdicts_csv(), &super::claims::verdicts_csv(&verdicts)?)?;
    let intervals = interval_count(&agg, &rates, &contrasts);
    // The page: one section after another.
    let mut page = Page::new(&format!("Sweep {}", sweep.spec.name));
    let plots = paths.plots();
    intro_section(&mut page, sweep);
    claims_section(&mut page, &verdicts, &intervals);
    let incomplete = runs_section(&mut page, layout, &paths, sweep, &agg)?;
    held_out_section(&mut page, sweep, &agg, &plots)?;
    sequence_section(&mut page, sweep, &agg, &plots)?;
    change_section(&mut page, sweep, &agg);
    rates_section(&mut page, sweep, &rates, &thresholds);
    if let Some(b) = base {
        contrast_section(&mut page, sweep, &contrasts, b, &plots)?;
    }
    final_section(&mut page, sweep, &agg);
    drift_section(&mut page, sweep, &agg, &plots)?;
    let tails = super::tails::tails(layout, sweep)?;
    if !tails.is_empty() {
        write_atomic(&paths.tails_csv(), &super::tails::tails_csv(sweep, &tails)?)?;
        write_atomic(&paths.vanish_csv(), &super::tails::vanish_csv(sweep, &tails)?)?;
        tail_section(&mut page, sweep, &tails, &plots)?;
    }
    cells_section(&mut page, sweep);
    write_atomic(&paths.report_html(), page.finish().as_bytes())?;
    Ok(ReportOutput {
        html: paths.report_html(),
        summary: paths.summary_csv(),
        changes: paths.changes_csv(),
        incomplete,
        verdicts: verdicts.iter().map(|v| v.line()).collect(),
        intervals,
    })
}

/// The sweep's description and what every value below is.
fn intro_section(page: &mut Page, sweep: &Sweep) {
    let spec = &sweep.spec;
    if let Some(d) = &spec.description {
        page.paragraph(d);
    }
    page.paragraph(&format!(
        "{} cells × {} seeds ({}) = {} runs of {} generations after generation 0, from base config {}. Every value is the mean over seeds with its 95% Student-t confidence interval (mean ± t·sd/√n, t with n−1 degrees of freedom); n counts the seeds that have the value. A measure that cannot leave a range (shares in [0, 1], divergences, counts and lengths from 0, perplexities from 1) has its interval cut to that range, shown as mean [low, high]: the true mean lies in the range, so the cut interval covers it as often as the t-interval does.",
        sweep.cells.len(),
        spec.seeds.len(),
        spec.seeds.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", "),
        sweep.runs.len(),
        spec.generations,
        spec.base.display()
    ));
}

/// Every run's state, what is missing, and the runs' cap-dependence notes; returns the
/// incomplete runs, each in words.
fn runs_section(
    page: &mut Page,
    layout: &Layout,
    paths: &SweepPaths,
    sweep: &Sweep,
    agg: &Aggregate,
) -> Result<Vec<String>> {
    let spec = &sweep.spec;
    page.section("runs", "Runs");
    let mut incomplete = Vec::new();
    let mut run_rows = Vec::new();
    for run in &sweep.runs {
        let st = run_status(layout, paths, sweep, run)?;
        let damage = agg.damaged.iter().find(|(name, _)| name == &run.name);
        let detail = match &st.state {
            _ if damage.is_some() => {
                format!("left out, damaged: {}", damage.map(|d| d.1.as_str()).unwrap_or_default())
            }
            RunState::Finished => String::new(),
            RunState::Failed { exit_code } => format!(
                "failed (exit code {}); log {}",
                exit_code.map(|c| c.to_string()).unwrap_or("?".into()),
                paths.log(&run.name).display()
            ),
            other => format!("{}; log {}", other.word(), paths.log(&run.name).display()),
        };
        if st.state != RunState::Finished || damage.is_some() {
            incomplete.push(format!("{} ({}, seed {}): {}", run.name, sweep.cells[run.cell].label, run.seed, detail));
        }
        run_rows.push(vec![
            sweep.cells[run.cell].label.clone(),
            run.seed.to_string(),
            run.name.clone(),
            format!("{}/{}", st.generations_done, spec.generations + 1),
            if detail.is_empty() { "finished".into() } else { detail },
        ]);
    }
    if incomplete.is_empty() {
        page.paragraph("Every run finished; no seed is missing from any value below.");
    } else {
        page.paragraph(&format!(
            "{} of {} runs are incomplete. Their seeds are left out of every value they lack (n says how many seeds a value has, and summary.csv names the missing ones):",
            incomplete.len(),
            sweep.runs.len()
        ));
        page.list(&incomplete);
    }
    page.table(&["cell", "seed", "run", "generations", "state"].map(String::from), &run_rows, &[0, 2, 4]);
    for run in &sweep.runs {
        let rows = crate::records::read_rows(&layout.generations_csv(&run.name)).unwrap_or_default();
        if let Some(note) = crate::records::cap_dependence_note(&rows) {
            page.note(&format!("{} ({}, seed {}): {note}", run.name, sweep.cells[run.cell].label, run.seed));
        }
    }
    Ok(incomplete)
}

/// Held-out quality of the models.
fn held_out_section(page: &mut Page, sweep: &Sweep, agg: &Aggregate, plots: &std::path::Path) -> Result<()> {
    page.section("held-out", "Held-out quality");
    for (measure, title) in [("held_out_perplexity", "held-out perplexity"), ("held_out_loss", "held-out loss (nats)")]
    {
        let chart = generation_chart(sweep, agg, measure, Kind::Model, title, None);
        chart_figure(
            page,
            plots,
            measure,
            &chart,
            &format!("{title} of model k on the real test split: mean over seeds, band = 95% confidence interval"),
        )?;
    }
    Ok(())
}

/// The sampled text, document by document and passage by passage.
fn sequence_section(page: &mut Page, sweep: &Sweep, agg: &Aggregate, plots: &std::path::Path) -> Result<()> {
    page.section("sequence", "Quality and diversity of the sampled text");
    page.paragraph("Measured on the corpus S_(k+1) that model k sampled, against the real test split, under the run's reference model (M_0 unless the config names the oracle): precision and recall of its passages (quality: share of its passages inside the real manifold; diversity: share of real passages it covers), coverage, and the median per-document perplexity. Dashed black: the noise floor, the same for draws of real documents outside R (mean over runs).");
    for (measure, title) in [
        ("precision", "precision of S_(k+1)'s passages"),
        ("recall", "recall of S_(k+1)'s passages"),
        ("coverage", "coverage of S_(k+1)'s passages"),
        ("reference_perplexity_median", "median per-document perplexity of S_(k+1) under the reference"),
    ] {
        if !agg.rows.iter().any(|r| r.measure == measure && r.summary.n > 0) {
            continue;
        }
        let refs = references(agg, measure, false);
        let chart = generation_chart(sweep, agg, measure, Kind::Model, title, Some(refs));
        chart_figure(
            page,
            plots,
            measure,
            &chart,
            &format!("{title}, by the generation k that sampled it: mean over seeds, band = 95% confidence interval"),
        )?;
    }
    Ok(())
}

/// The change of every change measure from generation 0 to N, per cell.
fn change_section(page: &mut Page, sweep: &Sweep, agg: &Aggregate) {
    let spec = &sweep.spec;
    page.section("change", &format!("Change from generation 0 to generation {}", spec.generations));
    page.paragraph(&format!(
        "Per seed, the value at generation {n} minus the value at generation 0, then the mean of those differences with its 95% interval (a paired comparison: seed-to-seed variation of the starting point cancels). Corpus measures compare S_{} with S_1.",
        spec.generations + 1,
        n = spec.generations
    ));
    let mut header = vec!["cell".to_string()];
    header.extend(CHANGE_MEASURES.iter().map(|(m, _)| m.to_string()));
    let mut rows = Vec::new();
    for (i, cell) in sweep.cells.iter().enumerate() {
        let mut row = vec![cell.label.clone()];
        for (m, _) in CHANGE_MEASURES {
            let c =
                agg.changes.iter().find(|c| c.cell == i && c.measure == m).expect("a change row per cell and measure");
            row.push(with_n(&c.summary, m, &c.missing));
        }
        rows.push(row);
    }
    page.table(&header, &rows, &[0]);
}

/// Generation 0 and generation N side by side.
fn final_section(page: &mut Page, sweep: &Sweep, agg: &Aggregate) {
    let spec = &sweep.spec;
    page.section("final", &format!("Generation 0 and generation {}", spec.generations));
    let cols = [
        ("held_out_perplexity", Kind::Model, 0),
        ("held_out_perplexity", Kind::Model, spec.generations),
        ("js_divergence", Kind::Corpus, spec.generations),
        ("entropy_nats", Kind::Corpus, spec.generations),
        ("distinct_tokens", Kind::Corpus, spec.generations),
    ];
    let header: Vec<String> = std::iter::once("cell".to_string())
        .chain(cols.iter().map(|(m, kind, k)| match kind {
            Kind::Model => format!("{m}, model {k}"),
            Kind::Corpus => format!("{m}, S_{}", k + 1),
        }))
        .collect();
    let mut rows = Vec::new();
    for (i, cell) in sweep.cells.iter().enumerate() {
        let mut row = vec![cell.label.clone()];
        for (m, kind, k) in cols {
            match agg.row(i, m, &Slot::Generation(kind, k)) {
                Some(r) => row.push(with_n(&r.summary, m, &r.missing)),
                None => row.push("–".into()),
            }
        }
        rows.push(row);
    }
    page.table(&header, &rows, &[0]);
}

/// The sampled corpora's drift measures, against the noise floor and the real split.
fn drift_section(page: &mut Page, sweep: &Sweep, agg: &Aggregate, plots: &std::path::Path) -> Result<()> {
    page.section("drift", "Sampled corpora");
    page.paragraph("Corpus S_j is sampled by model j−1 (S_1 by the model trained on real data). Dashed black: the noise floor, the same measure for a real subsample of the corpus size (what a perfect model would show), mean over every run that reports it; solid black: the real training split itself.");
    for (measure, title, reference) in DRIFT_FIGURES {
        let refs = references(agg, measure, reference);
        let chart = generation_chart(sweep, agg, measure, Kind::Corpus, title, Some(refs));
        chart_figure(
            page,
            plots,
            measure,
            &chart,
            &format!("{title} of each sampled corpus: mean over seeds, band = 95% confidence interval"),
        )?;
    }
    Ok(())
}

/// The cells' settings and the sweep file.
fn cells_section(page: &mut Page, sweep: &Sweep) {
    let spec = &sweep.spec;
    page.section("cells", "Cells");
    let rows: Vec<Vec<String>> = sweep
        .cells
        .iter()
        .map(|c| {
            let settings: Vec<String> = c.grid_values.iter().map(|(k, v)| format!("{k} = {v}")).collect();
            vec![c.label.clone(), c.id.clone(), settings.join(", ")]
        })
        .collect();
    page.table(&["cell", "id", "grid settings"].map(String::from), &rows, &[0, 1, 2]);
    let text = std::fs::read_to_string(&spec.file).unwrap_or_default();
    page.preformatted(Some(&format!("sweep file {}", spec.file.display())), &text);
}

/// The intervals a report reads at 95%, in words.
fn interval_count(
    agg: &Aggregate,
    rates: &[super::contrasts::RateRow],
    contrasts: &[super::contrasts::ContrastRow],
) -> String {
    let with = |s: &Summary| s.low().is_some();
    let r = rates.iter().filter(|r| with(&r.slope)).count();
    let c = contrasts.iter().filter(|c| with(&c.summary)).count();
    let m = agg.rows.iter().filter(|row| with(&row.summary)).count();
    format!("{r} rate intervals, {c} paired contrast intervals (and as many unpaired ones) and {m} intervals of means")
}

/// The verdict on each claim the sweep file names, first, before any exploratory table.
fn claims_section(page: &mut Page, verdicts: &[super::claims::Verdict], intervals: &str) {
    page.section("claims", "Claims");
    let reads = format!("This report reads {intervals}, each at 95%: where nothing changes, about one in twenty excludes 0 by chance, so a reading picked among them after the run is no verdict.");
    if verdicts.is_empty() {
        page.paragraph(&format!("{reads} The sweep file names no claim ([[claim]]): no verdict is given, and every table below is exploratory."));
        return;
    }
    let m = verdicts.len();
    page.paragraph(&format!(
        "{reads} The verdicts are on the {m} claim(s) the sweep file names before the run, each on its primary measure: shown (the interval shows what the claim says), bounded (not shown to collapse, with the bound its interval rules out: never \"holds\"), not shown (the interval contains 0), contradicted (it lies on the other side), no evidence (the seeds tie or fewer than two have the value).{} Secondary measures are read the same way at 95%, unadjusted. verdicts.csv holds every number.",
        if m > 1 { format!(" In brackets beside each, the verdict Bonferroni-adjusted over the {m} claims (each interval at {}%), which holds the {m} readings at 95% together.", super::claims::percent(verdicts[0].adjusted_level)) } else { String::new() }
    ));
    page.list(&verdicts.iter().map(|v| v.line()).collect::<Vec<_>>());
}

/// Measures the rate and contrast tables show (all are in rates.csv and contrasts.csv).
const HEADLINE: [(&str, Kind); 8] = [
    ("held_out_perplexity", Kind::Model),
    ("held_out_loss", Kind::Model),
    ("precision", Kind::Model),
    ("recall", Kind::Model),
    ("kl_real_gen_add_half", Kind::Corpus),
    ("js_divergence", Kind::Corpus),
    ("entropy_nats", Kind::Corpus),
    ("distinct_tokens", Kind::Corpus),
];

/// Collapse rates per cell, and thresholds along numeric axes.
fn rates_section(
    page: &mut Page,
    sweep: &Sweep,
    rates: &[super::contrasts::RateRow],
    thresholds: &[super::contrasts::Threshold],
) {
    let n = sweep.spec.generations;
    page.section("rates", "Collapse rates");
    if n < 2 {
        page.paragraph(
            "Rates need at least two generations after generation 0 (generations 1..N); this sweep has one.",
        );
        return;
    }
    page.paragraph(&format!(
        "Per run, the least-squares slope of a measure over generations 1..{n} (per generation; precision and recall are of the corpus S_(k+1) model k sampled); then its mean over seeds with its 95% interval. A rate whose interval lies above 0 climbs; one whose interval contains 0 is not shown to move (which is not evidence that it holds still: its bounds say how fast a change it rules out); seeds that tie give no spread, and no evidence. rates.csv's reading column reads each rate in its measure's direction under collapse. rates.csv holds every measure, and each slope relative to the run's generation-0 value."
    ));
    let mut header = vec!["cell".to_string()];
    header.extend(HEADLINE.iter().map(|(m, _)| format!("{m} per generation")));
    let rows: Vec<Vec<String>> = (0..sweep.cells.len())
        .map(|i| {
            let mut row = vec![sweep.cells[i].label.clone()];
            for (m, kind) in HEADLINE {
                match rates.iter().find(|r| r.cell == i && r.measure == m && r.kind == kind) {
                    Some(r) if r.slope.n > 0 => row.push(with_n(&r.slope, m, &r.missing)),
                    _ => row.push("–".into()),
                }
            }
            row
        })
        .collect();
    page.table(&header, &rows, &[0]);
    let shown: Vec<&super::contrasts::Threshold> =
        thresholds.iter().filter(|t| HEADLINE.iter().any(|(m, k)| *m == t.measure && *k == t.kind)).collect();
    if shown.is_empty() {
        return;
    }
    page.paragraph("Thresholds along each numeric grid axis (cells alike in every other setting), read in the direction each measure moves under collapse for each cell's sampler: held-out perplexity and the divergences climb; precision, recall, coverage and distinct tokens fall; entropy, tail mass, lengths and copying can move either way, and so can the reference's perplexity under T < 1 or top-p < 1 (the loop collapses onto typical text) and recall and distinct tokens under T > 1 (noise covers the real passages). A measure that can move either way has no safe side: a change is evidence of collapse and stability is never shown, only \"not shown to change\". Each value's rate is read as: collapses (interval wholly on the collapse side), shown not to collapse (wholly on the safe side), not shown to change (contains 0, and rules out a change over the run of a quarter of the measure's generation-0 value), uninformative (contains 0 but rules out no such change), or no evidence (seeds tie, sd = 0, or fewer than two seeds). Both thresholds are monotone: a value counts only when every larger value on the ladder passes too. Shown not to collapse: from the smallest value from which every rate lies on the safe side. Not shown to collapse: from the smallest value from which every rate is informative and off the collapse side; that is absence of evidence with bounds, not a proof of stability. thresholds.csv holds every measure.");
    let reading = |from: Option<f64>, below: Option<f64>| match (from, below) {
        (Some(s), Some(u)) => format!("from {s} (not at {u})"),
        (Some(s), None) => format!("at every value (from {s}, the smallest on the ladder)"),
        (None, _) => "no threshold on the ladder".to_string(),
    };
    let rows: Vec<Vec<String>> = shown
        .iter()
        .map(|t| {
            let calm = match (t.not_collapsing_from, t.collapsing_below) {
                (Some(from), Some(c)) => format!("from {from}; collapses at {c}"),
                (Some(from), None) if t.ladder.first() != Some(&from) => {
                    format!("from {from}; the value below is not shown either way")
                }
                (from, _) => reading(from, None),
            };
            vec![
                t.axis.clone(),
                if t.others.is_empty() { "–".into() } else { t.others.clone() },
                t.measure.clone(),
                t.direction_text(),
                calm,
                reading(t.stable_from, t.unstable_below),
                t.readings_text(),
            ]
        })
        .collect();
    page.table(
        &[
            "axis",
            "other settings",
            "measure",
            "under collapse",
            "not shown to collapse",
            "shown not to collapse",
            "each value's rate",
        ]
        .map(String::from),
        &rows,
        &[0, 1, 2, 3, 4, 5, 6],
    );
}

/// Paired differences from the baseline cell, per generation.
fn contrast_section(
    page: &mut Page,
    sweep: &Sweep,
    contrasts: &[super::contrasts::ContrastRow],
    base: usize,
    plots: &std::path::Path,
) -> Result<()> {
    let n = sweep.spec.generations;
    page.section("contrasts", &format!("Paired contrasts against {}", sweep.cells[base].label));
    page.paragraph(&format!(
        "Per seed, a cell's value minus the baseline's ({}) at the same seed and generation, then the mean of those differences with its 95% interval. The cells share generation 0 at each seed, so pairing cancels what the seed shares; the paired interval is tighter than an unpaired (Welch) one only when the two cells' values stay positively correlated across seeds, which later generations need not keep (it can be wider). An interval that contains 0 says the cells are not shown to differ, with the bounds it rules out; one from seeds that tie (shown as \"seeds tie\") is no evidence. contrasts.csv holds every measure and generation.",
        sweep.cells[base].label
    ));
    let mut header = vec!["cell".to_string()];
    header.extend(HEADLINE.iter().map(|(m, kind)| match kind {
        Kind::Model => format!("{m}, generation {n}"),
        Kind::Corpus => format!("{m}, S_{}", n + 1),
    }));
    let mut rows = Vec::new();
    for i in (0..sweep.cells.len()).filter(|&i| i != base) {
        let mut row = vec![sweep.cells[i].label.clone()];
        for (m, kind) in HEADLINE {
            match contrasts.iter().find(|c| c.cell == i && c.measure == m && c.kind == kind && c.generation == n) {
                Some(c) if c.summary.n > 0 => row.push(with_n(&c.summary, m, &c.missing)),
                _ => row.push("–".into()),
            }
        }
        rows.push(row);
    }
    page.table(&header, &rows, &[0]);
    for (m, kind) in [("held_out_perplexity", Kind::Model), ("js_divergence", Kind::Corpus), ("recall", Kind::Model)] {
        let chart = contrast_chart(sweep, contrasts, base, m, kind);
        if chart.series.iter().all(|s| s.points.is_empty()) {
            continue;
        }
        let id = format!("contrast-{m}");
        chart_figure(
            page,
            plots,
            &id,
            &chart,
            &format!(
                "{m}: each cell minus {} at the same seed, mean over seeds, band = 95% interval; 0 is no difference",
                sweep.cells[base].label
            ),
        )?;
    }
    Ok(())
}

fn contrast_chart(
    sweep: &Sweep,
    contrasts: &[super::contrasts::ContrastRow],
    base: usize,
    measure: &str,
    kind: Kind,
) -> LineChart {
    let x_of = |k: u32| generation_x(kind, k);
    let mut bands = Vec::new();
    let mut lines = Vec::new();
    for i in (0..sweep.cells.len()).filter(|&i| i != base) {
        let colour = CELL_COLOURS[i % CELL_COLOURS.len()];
        let rows: Vec<&super::contrasts::ContrastRow> =
            contrasts.iter().filter(|c| c.cell == i && c.measure == measure && c.kind == kind).collect();
        let mean: Vec<(f64, f64)> = rows.iter().filter_map(|c| Some((x_of(c.generation), c.summary.mean?))).collect();
        let mut upper: Vec<(f64, f64)> =
            rows.iter().filter_map(|c| Some((x_of(c.generation), c.summary.high()?))).collect();
        let mut lower: Vec<(f64, f64)> =
            rows.iter().filter_map(|c| Some((x_of(c.generation), c.summary.low()?))).collect();
        if upper.len() >= 2 {
            lower.reverse();
            upper.extend(lower);
            bands.push(Series::new(String::new(), upper, SeriesStyle::Band).with_color(colour));
        }
        if !mean.is_empty() {
            lines.push(Series::new(sweep.cells[i].label.clone(), mean, SeriesStyle::LineAndMarkers).with_color(colour));
        }
    }
    let mut series = bands;
    series.extend(lines);
    let (first, last) = (x_of(0), x_of(sweep.spec.generations));
    series.push(
        Series::new("no difference".to_string(), vec![(first, 0.0), (last, 0.0)], SeriesStyle::Dashed)
            .with_color(REFERENCE_COLOUR),
    );
    LineChart {
        title: format!("{measure} minus {}", sweep.cells[base].label),
        x_label: generation_axis(kind),
        y_label: format!("paired difference in {measure}"),
        series,
        ..Default::default()
    }
}

/// Survival of real tokens by expected count, beside the simulator and the Poisson law.
fn tail_section(
    page: &mut Page,
    sweep: &Sweep,
    tails: &[super::tails::CellTails],
    plots: &std::path::Path,
) -> Result<()> {
    page.section("tails", "Tail survival");
    page.paragraph(&format!(
        "Real tokens grouped by their expected count c·D/|R| in one corpus (octaves; D/|R| = {:.3}). Survival in S_k: share of a group's tokens that occur in S_k at least once; mean over seeds ± 95% interval. Beside it, `lmloop theory discrete` started from the same real counts (maximum-likelihood re-estimation from D samples per generation, same policy and temperature, 200 trials) and the Poisson prediction 1 − exp(−c·D/|R|·g_k) of Suresh et al. A token seen c times survives about c generations of pure re-estimation; how far the language model is from that is what the table shows. Also in tails.csv.",
        tails[0].d_over_r
    ));
    // The latest corpus any run has reached (all of them once the sweep is finished).
    let at = (0..tails[0].checkpoints.len())
        .rev()
        .find(|&c| tails.iter().any(|t| t.bins.iter().any(|b| b.measured[c].0.mean.is_some())))
        .unwrap_or(tails[0].checkpoints.len() - 1);
    let last = tails[0].checkpoints[at];
    let mut series = Vec::new();
    let mut lines = Vec::new();
    let mut poisson = None;
    for t in tails {
        let colour = CELL_COLOURS[t.cell % CELL_COLOURS.len()];
        let label = &sweep.cells[t.cell].label;
        let measured: Vec<(f64, f64)> =
            t.bins.iter().filter_map(|b| Some((b.mean_expected, b.measured[at].0.mean?))).collect();
        let (mut upper, mut lower): (Vec<_>, Vec<_>) = t
            .bins
            .iter()
            .filter_map(|b| {
                Some(((b.mean_expected, b.measured[at].0.high()?), (b.mean_expected, b.measured[at].0.low()?)))
            })
            .unzip();
        if upper.len() >= 2 {
            lower.reverse();
            upper.extend(lower);
            series.push(Series::new(format!("{label} 95% CI"), upper, SeriesStyle::Band).with_color(colour));
        }
        lines.push(
            Series::new(format!("{label}: language model"), measured, SeriesStyle::LineAndMarkers).with_color(colour),
        );
        let simulated: Vec<(f64, f64)> =
            t.bins.iter().filter_map(|b| Some((b.mean_expected, b.simulated.as_ref()?[at]))).collect();
        if !simulated.is_empty() {
            lines.push(Series::new(format!("{label}: simulator"), simulated, SeriesStyle::Dashed).with_color(colour));
        }
        let perfect: Vec<(f64, f64)> = t.bins.iter().filter_map(|b| Some((b.mean_expected, b.real_null?))).collect();
        if !perfect.is_empty() {
            lines.push(
                Series::new(format!("{label}: real documents (null)"), perfect, SeriesStyle::Line).with_color(colour),
            );
        }
        if poisson.is_none() {
            let p: Vec<(f64, f64)> =
                t.bins.iter().filter_map(|b| Some((b.mean_expected, b.predicted.as_ref()?[at]))).collect();
            if !p.is_empty() {
                poisson = Some(p);
            }
        }
    }
    series.extend(lines);
    if let Some(p) = poisson {
        series.push(
            Series::new("Poisson prediction (independent draws)", p, SeriesStyle::Dashed).with_color(REFERENCE_COLOUR),
        );
    }
    let chart = LineChart {
        title: format!("survival in S_{last} by expected count"),
        x_label: "expected count c·D/|R| in one corpus".into(),
        y_label: format!("share of tokens present in S_{last}"),
        log_x: true,
        log_y: false,
        series,
    };
    chart_figure(page, plots, "tail_survival", &chart, &format!("tokens of the real training set present in S_{last}, by expected count: language model (mean over seeds, band = 95% interval), simulator (dashed, cell colour), what a perfect model's corpus keeps (thin line, cell colour: D-token corpora of real documents not in R, the null each run measured), and the Poisson prediction for independent draws (dashed black), which bursty real text does not reach"))?;
    for t in tails {
        let mut header = vec!["expected count".to_string(), "tokens".to_string()];
        header.extend(t.checkpoints.iter().map(|k| format!("S_{k}: LM / sim / Poisson")));
        header.push("null (real documents)".to_string());
        let rows: Vec<Vec<String>> = t
            .bins
            .iter()
            .map(|b| {
                let mut row = vec![format!("[{}, {})", b.expected_low, b.expected_high), b.tokens.to_string()];
                for c in 0..t.checkpoints.len() {
                    let (s, missing) = &b.measured[c];
                    let sim = b.simulated.as_ref().map(|v| format!("{:.3}", v[c])).unwrap_or("–".into());
                    let pred = b.predicted.as_ref().map(|v| format!("{:.3}", v[c])).unwrap_or("–".into());
                    let miss = if missing.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (missing seed {})",
                            missing.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(", ")
                        )
                    };
                    row.push(format!("{}{miss} / {sim} / {pred}", s.display(3)));
                }
                row.push(b.real_null.map_or("–".into(), |p| format!("{p:.3}")));
                row
            })
            .collect();
        page.paragraph(&format!("cell {}:", sweep.cells[t.cell].label));
        page.table(&header, &rows, &[0]);
    }
    vanish_table(page, sweep, tails);
    Ok(())
}

/// When tokens vanish against their expected count, beside the simulator.
fn vanish_table(page: &mut Page, sweep: &Sweep, tails: &[super::tails::CellTails]) {
    let k = tails[0].vanish.corpora;
    page.paragraph(&format!(
        "When a token vanishes: V is the first S_k (k = 1..{k}) that lacks it, counted as {} for a token still present in S_{k}, the same censoring for the language model and the simulator (whose value is its expectation 1 + Σ_k P(present in S_k), for replace only, where a vanished symbol never returns). Per group, the mean of that generation; then, per run, the least-squares slope of it on the expected count c·D/|R| over the tokens expected at most {} times in one corpus (Suresh et al.: a symbol seen c times survives about c generations, a slope near 1 until censoring flattens it), its mean over seeds with a 95% interval. Also in vanish.csv.",
        k + 1,
        k as f64 / 2.0
    ));
    let mut header = vec!["cell".to_string()];
    let groups: Vec<String> =
        tails[0].bins.iter().map(|b| format!("[{}, {})", b.expected_low, b.expected_high)).collect();
    header.extend(groups.iter().map(|g| format!("{g}: LM / sim")));
    header.push(format!("slope up to {}: LM / sim (tokens)", k as f64 / 2.0));
    let rows: Vec<Vec<String>> = tails
        .iter()
        .map(|t| {
            let mut row = vec![sweep.cells[t.cell].label.clone()];
            for g in &groups {
                let found = t.bins.iter().position(|b| format!("[{}, {})", b.expected_low, b.expected_high) == *g);
                row.push(match found.map(|i| &t.vanish.groups[i]) {
                    Some((s, sim)) => format!("{} / {}", s.display(2), sim.map_or("–".into(), |x| format!("{x:.2}"))),
                    None => "–".into(),
                });
            }
            let v = &t.vanish;
            row.push(format!(
                "{} / {} ({})",
                v.slope.display(3),
                match (v.simulated_slope, v.simulated_slope_se) {
                    (Some(x), Some(se)) => format!("{x:.3} (Monte Carlo error at most ±{se:.3})"),
                    (Some(x), None) => format!("{x:.3}"),
                    _ => "–".into(),
                },
                v.fit_tokens
            ));
            row
        })
        .collect();
    page.table(&header, &rows, &[0]);
}

/// Draws `chart` into `plots` as `id` and adds it to the page with `caption`.
fn chart_figure(page: &mut Page, plots: &std::path::Path, id: &str, chart: &LineChart, caption: &str) -> Result<()> {
    let svg = publish(plots, id, chart)?;
    page.figure(id, &svg, caption);
    Ok(())
}

/// "m ± h (n=3; missing 2)" with digits fitted to the measure.
fn with_n(s: &Summary, measure: &str, missing: &[u64]) -> String {
    let digits = if measure.contains("perplexity") || measure.contains("tokens") { 2 } else { 4 };
    let mut t = format!("{} (n={})", s.display(digits), s.n);
    if !missing.is_empty() {
        t.push_str(&format!(" missing seed {}", missing.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(", ")));
    }
    t
}

/// Noise floor and real-split lines of a corpus measure: (name, value).
fn references(agg: &Aggregate, measure: &str, real_split: bool) -> Vec<(String, f64)> {
    let mut floor = Vec::new();
    let mut real = Vec::new();
    for values in &agg.per_run {
        for ((m, slot), v) in values {
            if m != measure {
                continue;
            }
            if let Slot::Reference(corpus) = slot {
                if corpus.starts_with("real-sample") {
                    floor.push(*v);
                } else if corpus == "real-train" {
                    real.push(*v);
                }
            }
        }
    }
    let mut out = Vec::new();
    if let Some(m) = Summary::of(&floor).mean {
        out.push(("noise floor (real subsample)".to_string(), m));
    }
    if real_split {
        if let Some(m) = Summary::of(&real).mean {
            out.push(("real training split".to_string(), m));
        }
    }
    out
}

/// Where generation k's value sits on a generation axis: k for models, j = k+1 for
/// corpora S_j.
fn generation_x(kind: Kind, k: u32) -> f64 {
    match kind {
        Kind::Model => k as f64,
        Kind::Corpus => (k + 1) as f64,
    }
}

fn generation_axis(kind: Kind) -> String {
    match kind {
        Kind::Model => "generation k (model trained in generation k)".into(),
        Kind::Corpus => "corpus S_j (sampled by model j−1)".into(),
    }
}

/// Mean per cell against the generation (x = k for models, j = k+1 for corpora
/// S_j), with a translucent 95% band where n ≥ 2, plus horizontal reference lines.
fn generation_chart(
    sweep: &Sweep,
    agg: &Aggregate,
    measure: &str,
    kind: Kind,
    title: &str,
    refs: Option<Vec<(String, f64)>>,
) -> LineChart {
    let x_of = |k: u32| generation_x(kind, k);
    let mut bands = Vec::new();
    let mut lines = Vec::new();
    for (i, cell) in sweep.cells.iter().enumerate() {
        let colour = CELL_COLOURS[i % CELL_COLOURS.len()];
        let mut mean = Vec::new();
        let mut upper = Vec::new();
        let mut lower = Vec::new();
        for k in 0..=sweep.spec.generations {
            let Some(r) = agg.row(i, measure, &Slot::Generation(kind, k)) else { continue };
            if let Some(m) = r.summary.mean {
                mean.push((x_of(k), m));
            }
            if let (Some(lo), Some(hi)) = (r.summary.low(), r.summary.high()) {
                upper.push((x_of(k), hi));
                lower.push((x_of(k), lo));
            }
        }
        if upper.len() >= 2 {
            lower.reverse();
            upper.extend(lower);
            bands.push(Series::new(format!("{} 95% CI", cell.label), upper, SeriesStyle::Band).with_color(colour));
        }
        // Past the palette's length colours repeat; the repeats are dashed.
        let style = if (i / CELL_COLOURS.len()) % 2 == 1 { SeriesStyle::Dashed } else { SeriesStyle::LineAndMarkers };
        lines.push(Series::new(cell.label.clone(), mean, style).with_color(colour));
    }
    let mut series = bands;
    series.extend(lines);
    let last = x_of(sweep.spec.generations);
    let first = x_of(0);
    for (j, (name, value)) in refs.unwrap_or_default().into_iter().enumerate() {
        let style = if j == 0 && name.starts_with("noise") { SeriesStyle::Dashed } else { SeriesStyle::Line };
        series.push(Series::new(name, vec![(first, value), (last, value)], style).with_color(REFERENCE_COLOUR));
    }
    LineChart {
        title: title.to_string(),
        x_label: generation_axis(kind),
        y_label: title.to_string(),
        log_x: false,
        log_y: false,
        series,
    }
}
