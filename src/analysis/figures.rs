//! The charts of the reports, built from run data, shared by the single-run
//! report and the comparison. Each chart is written to `plots/ID.svg` and
//! `plots/ID.png` and its SVG returned for inlining.
use super::drift::DriftRow;
use super::null::null_presence_probability;
use super::null::RealNull;
use super::run_data::{count_range_label, LossByFrequencyRow, RunData};
use super::tails::{survival_by_bucket_with, vanish_fit, vanish_points, TokenTable};
use super::zipf::rank_frequency;
use crate::plot::{render_bar_svg, render_svg, write_svg_and_png, BarChart, LineChart, Series, SeriesStyle};
use anyhow::{Context, Result};
use std::path::Path;

/// Axis label for the S_k axis shared by every corpus plot.
pub const CORPUS_AXIS: &str = "corpus S_k (k = 0: real training split)";
pub const GENERATION_AXIS: &str = "generation k (model trained in generation k)";

/// Palette index of the real split's curves (black in `crate::plot`'s palette).
const REAL_COLOUR: usize = 6;

/// Palette index of the i-th run or series, skipping the real split's black.
pub fn colour(i: usize) -> usize {
    const OTHERS: [usize; 7] = [0, 1, 2, 3, 4, 5, 7];
    OTHERS[i % OTHERS.len()]
}

/// Past the seventh series colours repeat; the repeats are dashed so curves stay apart.
fn style_for(i: usize, base: SeriesStyle) -> SeriesStyle {
    if (i / 7) % 2 == 1 {
        SeriesStyle::Dashed
    } else {
        base
    }
}

/// Densities of the natural log of per-document reference perplexity: one curve per
/// synthetic corpus, the real test documents in black (Shumailov et al.'s figure).
pub fn reference_perplexity_chart(real: &[f64], corpora: &[(String, Vec<f64>)]) -> LineChart {
    let logs = |v: &[f64]| v.iter().filter(|x| **x > 0.0 && x.is_finite()).map(|x| x.ln()).collect::<Vec<f64>>();
    let real_logs = logs(real);
    let all: Vec<f64> = real_logs.iter().copied().chain(corpora.iter().flat_map(|(_, v)| logs(v))).collect();
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    const BINS: usize = 30;
    let mut series: Vec<Series> = corpora
        .iter()
        .enumerate()
        .map(|(i, (name, v))| {
            Series::new(name.clone(), super::scores::density(&logs(v), lo, hi, BINS), style_for(i, SeriesStyle::Line))
                .with_color(colour(i))
        })
        .collect();
    series.push(
        Series::line(
            format!("real test documents ({})", real_logs.len()),
            super::scores::density(&real_logs, lo, hi, BINS),
        )
        .with_color(REAL_COLOUR),
    );
    LineChart {
        title: "Per-document perplexity under the reference model M_0".into(),
        x_label: "ln perplexity of a document under M_0".into(),
        y_label: "density".into(),
        series,
        ..Default::default()
    }
}

/// The precision–recall plane (Alemohammad et al.'s figure): one path per run through
/// its corpora S_1, S_2, … (recall across, precision up), and each run's noise floor as
/// a box of its mean ± spread in both (same colour, no legend entry) with its mean
/// marked; `runs` holds (label, points from [`plane_points`], floor).
pub fn precision_recall_chart(runs: &[super::manifold::PlanePath]) -> LineChart {
    let mut series = Vec::new();
    for (i, (label, points, floor)) in runs.iter().enumerate() {
        // Runs of one R and seed share their floor: it is drawn once, for the first.
        let floor = floor.as_ref().filter(|f| !runs[..i].iter().any(|r| r.2.as_ref() == Some(*f)));
        let shared = runs[i + 1..].iter().any(|r| r.2.as_ref().is_some_and(|f| Some(f) == floor));
        let path = points.iter().map(|&(_, r, p)| (r, p)).collect();
        let first = points.first().map_or(0, |p| p.0 + 1);
        let last = points.last().map_or(0, |p| p.0 + 1);
        series.push(
            Series::new(format!("{label}: S_{first} … S_{last}"), path, style_for(i, SeriesStyle::LineAndMarkers))
                .with_color(colour(i)),
        );
        if let Some(f) = floor {
            let (p, r) = (f.mean(0), f.mean(1));
            let (dp, dr) = (f.spread(0), f.spread(1));
            if [p, r, dp, dr].iter().all(|v| v.is_finite()) {
                let (r0, r1, p0, p1) = (r - dr, (r + dr).min(1.0), p - dp, (p + dp).min(1.0));
                series.push(
                    Series::new(String::new(), vec![(r0, p1), (r1, p1), (r1, p0), (r0, p0)], SeriesStyle::Band)
                        .with_color(colour(i)),
                );
                series.push(
                    Series::new(
                        if shared {
                            format!("{label} and the runs with its R and seed: noise floor (real vs real, mean ± 2 sd)")
                        } else {
                            format!("{label}: noise floor (real vs real, mean ± 2 sd)")
                        },
                        vec![(r, p)],
                        SeriesStyle::Markers,
                    )
                    .with_color(REAL_COLOUR),
                );
            }
        }
    }
    LineChart {
        title: "Quality and diversity of S_k's passages against real test passages".into(),
        x_label: "recall (diversity: real passages S_k covers)".into(),
        y_label: "precision (quality: S_k passages inside the real manifold)".into(),
        series,
        ..Default::default()
    }
}

/// Precision, recall, density and coverage of S_1, S_2, … against the corpus axis, each
/// beside its noise floor's mean (dashed, same colour).
pub fn manifold_chart(rows: &[crate::records::GenerationRow], floor: Option<&super::manifold::Floor>) -> LineChart {
    let mut series = Vec::new();
    for (i, name) in super::manifold::MEASURES.iter().enumerate() {
        let points: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r.score_seconds > 0.0)
            .filter_map(|r| {
                let v = [r.precision, r.recall, r.density, r.coverage][i];
                v.is_finite().then_some(((r.generation + 1) as f64, v))
            })
            .collect();
        if points.is_empty() {
            continue;
        }
        let (first, last) = (points[0].0, points[points.len() - 1].0);
        series.push(Series::new(name.to_string(), points, SeriesStyle::LineAndMarkers).with_color(colour(i)));
        if let Some(m) = floor.map(|f| f.mean(i)).filter(|m| m.is_finite()) {
            series.push(
                Series::new(format!("{name}: noise floor"), vec![(first, m), (last, m)], SeriesStyle::Dashed)
                    .with_color(colour(i)),
            );
        }
    }
    LineChart {
        title: "Precision, recall, density and coverage of S_k".into(),
        x_label: CORPUS_AXIS.into(),
        y_label: "against real test passages".into(),
        series,
        ..Default::default()
    }
}

/// Renders a chart, writes `plots_dir/ID.svg` and `.png`, returns the SVG.
pub fn publish(plots_dir: &Path, id: &str, chart: &LineChart) -> Result<String> {
    let svg = render_svg(chart).with_context(|| format!("drawing the {id} chart"))?;
    write_plot(plots_dir, id, &svg)?;
    Ok(svg)
}

pub fn publish_bars(plots_dir: &Path, id: &str, chart: &BarChart) -> Result<String> {
    let svg = render_bar_svg(chart).with_context(|| format!("drawing the {id} chart"))?;
    write_plot(plots_dir, id, &svg)?;
    Ok(svg)
}

fn write_plot(plots_dir: &Path, id: &str, svg: &str) -> Result<()> {
    std::fs::create_dir_all(plots_dir).with_context(|| format!("cannot create {}", plots_dir.display()))?;
    write_svg_and_png(svg, &plots_dir.join(id))
}

/// One column of drift.csv that gets a plot.
pub struct Measure {
    pub id: &'static str,
    pub name: &'static str,
    pub value: fn(&DriftRow) -> f64,
    /// Whether the real split's own value is a meaningful reference line
    /// (divergences from real are 0 for real by definition).
    pub has_reference: bool,
}

pub const KL_REAL_GEN: Measure =
    Measure {
        id: "kl-real-gen", name: "KL(real‖gen), add-½", value: |r| r.kl_real_gen_add_half, has_reference: false
    };
pub const KL_GEN_REAL: Measure =
    Measure {
        id: "kl-gen-real", name: "KL(gen‖real), add-½", value: |r| r.kl_gen_real_add_half, has_reference: false
    };
pub const JS: Measure =
    Measure { id: "js", name: "Jensen–Shannon", value: |r| r.js_divergence, has_reference: false };
pub const TV: Measure =
    Measure { id: "tv", name: "total variation", value: |r| r.total_variation, has_reference: false };
pub const ENTROPY: Measure =
    Measure { id: "entropy", name: "unigram entropy (nats)", value: |r| r.entropy_nats, has_reference: true };
pub const DISTINCT_TOKENS: Measure = Measure {
    id: "distinct-tokens",
    name: "distinct tokens",
    value: |r| r.distinct_tokens as f64,
    has_reference: true,
};
pub const TAIL_MASS: Measure =
    Measure { id: "tail-mass", name: "tail mass", value: |r| r.tail_mass, has_reference: true };
pub const DISTINCT_2: Measure =
    Measure { id: "distinct-2", name: "distinct-2", value: |r| r.distinct_2, has_reference: true };
pub const DISTINCT_3: Measure =
    Measure { id: "distinct-3", name: "distinct-3", value: |r| r.distinct_3, has_reference: true };
pub const DOCUMENT_LENGTH: Measure = Measure {
    id: "document-length",
    name: "mean document length (tokens)",
    value: |r| r.mean_document_tokens,
    has_reference: true,
};
pub const REPETITION: Measure = Measure {
    id: "repetition",
    name: "4-gram repetition rate",
    value: |r| r.repetition_rate_4gram,
    has_reference: true,
};
pub const COPIED_4: Measure =
    Measure { id: "copied-4", name: "4-grams found in R", value: |r| r.copied_ngrams_4, has_reference: false };
pub const COPIED_8: Measure =
    Measure { id: "copied-8", name: "8-grams found in R", value: |r| r.copied_ngrams_8, has_reference: false };
pub const COPIED_16: Measure =
    Measure { id: "copied-16", name: "16-grams found in R", value: |r| r.copied_ngrams_16, has_reference: false };
pub const COPIED_32: Measure =
    Measure { id: "copied-32", name: "32-grams found in R", value: |r| r.copied_ngrams_32, has_reference: false };
pub const LONGEST_MATCH: Measure = Measure {
    id: "longest-match",
    name: "median longest match in R (tokens)",
    value: |r| r.longest_match_median,
    has_reference: false,
};
pub const ZIPF: Measure =
    Measure { id: "zipf-slope", name: "Zipf slope", value: |r| r.zipf_slope, has_reference: true };

/// Every plotted measure, in report order.
pub const MEASURES: [&Measure; 17] = [
    &KL_REAL_GEN,
    &KL_GEN_REAL,
    &JS,
    &TV,
    &ENTROPY,
    &DISTINCT_TOKENS,
    &TAIL_MASS,
    &DISTINCT_2,
    &DISTINCT_3,
    &DOCUMENT_LENGTH,
    &REPETITION,
    &ZIPF,
    &COPIED_4,
    &COPIED_8,
    &COPIED_16,
    &COPIED_32,
    &LONGEST_MATCH,
];

/// Measures that share one chart in the single-run report.
pub struct DriftGroup {
    pub id: &'static str,
    pub title: &'static str,
    pub y_label: &'static str,
    pub measures: &'static [&'static Measure],
    /// How to read the chart, where its values alone mislead (empty otherwise).
    pub reading: &'static str,
}

pub const DRIFT_GROUPS: [DriftGroup; 10] = [
    DriftGroup {
        id: "divergence",
        title: "Divergence from the real split",
        y_label: "nats (TV: share)",
        measures: &[&KL_REAL_GEN, &KL_GEN_REAL, &JS, &TV],
        reading: "",
    },
    DriftGroup { id: "entropy", title: "Unigram entropy", y_label: "nats", measures: &[&ENTROPY], reading: "" },
    DriftGroup {
        id: "distinct-tokens",
        title: "Distinct tokens used",
        y_label: "tokens",
        measures: &[&DISTINCT_TOKENS],
        reading: "",
    },
    DriftGroup {
        id: "tail-mass",
        title: "Tail mass (share of tokens in the real tail set)",
        y_label: "share",
        measures: &[&TAIL_MASS],
        reading: "",
    },
    DriftGroup {
        id: "distinct-ngrams",
        title: "Distinct n-grams",
        y_label: "unique / total",
        measures: &[&DISTINCT_2, &DISTINCT_3],
        reading: "",
    },
    DriftGroup {
        id: "document-length",
        title: "Mean document length",
        y_label: "tokens",
        measures: &[&DOCUMENT_LENGTH],
        reading: "",
    },
    DriftGroup {
        id: "repetition",
        title: "Within-document 4-gram repetition",
        y_label: "share of 4-grams",
        measures: &[&REPETITION],
        reading: "",
    },
    DriftGroup { id: "zipf-slope", title: "Zipf slope (ln count on ln rank)", y_label: "slope", measures: &[&ZIPF], reading: "" },
    DriftGroup {
        id: "copying",
        title: "Copying of R: n-grams found verbatim in R",
        y_label: "share of n-grams",
        measures: &[&COPIED_4, &COPIED_8, &COPIED_16, &COPIED_32],
        reading: "Read against the noise floor: real text R never held repeats some of R's 4-grams by chance. A corpus below the floor at 4-grams comes from a model that has not learned R's phrases (a weak model), so its near-zero 8- to 32-gram shares say that, not that the loop avoids copying.",
    },
    DriftGroup {
        id: "longest-match",
        title: "Longest verbatim match in R (median over documents)",
        y_label: "tokens",
        measures: &[&LONGEST_MATCH],
        reading: "",
    },
];

/// A horizontal dashed line at the real split's value across x = 0..=k_max.
fn reference_line(name: String, value: f64, k_max: u32, colour: usize) -> Series {
    Series::dashed(name, vec![(0.0, value), (k_max.max(1) as f64, value)]).with_color(colour)
}

/// A horizontal solid line (no markers) at the noise floor's value across x = 0..=k_max.
fn noise_floor_line(name: String, value: f64, k_max: u32, colour: usize) -> Series {
    Series::line(name, vec![(0.0, value), (k_max.max(1) as f64, value)]).with_color(colour)
}

/// Legend name of the noise floor: "real sample of 200000 tokens (noise floor)".
pub fn noise_floor_name(row: &DriftRow) -> String {
    format!("real sample of {} tokens (noise floor)", row.tokens)
}

/// Whether every run has a value and all the values agree.
fn shared_value(values: &[Option<f64>]) -> Option<f64> {
    let first = values.first().copied().flatten()?;
    let same = values.iter().all(|v| match v {
        Some(v) => (v - first).abs() <= 1e-12 * first.abs().max(1.0) || (v.is_nan() && first.is_nan()),
        None => false,
    });
    same.then_some(first)
}

fn measure_points(run: &RunData, m: &Measure) -> Vec<(f64, f64)> {
    run.synthetic_drift().map(|(k, row)| (k as f64, (m.value)(row))).collect()
}

fn last_corpus(run: &RunData) -> u32 {
    run.synthetic_drift().map(|(k, _)| k).max().unwrap_or(0)
}

/// One run's measures of a group against S_k, with the real split's values dashed.
pub fn drift_group_chart(run: &RunData, group: &DriftGroup) -> LineChart {
    let k_max = last_corpus(run);
    let mut series = Vec::new();
    for (i, m) in group.measures.iter().enumerate() {
        series.push(Series::new(m.name, measure_points(run, m), SeriesStyle::LineAndMarkers).with_color(colour(i)));
        if let (true, Some(real)) = (m.has_reference, run.real_drift()) {
            series.push(reference_line(format!("{} of the real split", m.name), (m.value)(real), k_max, colour(i)));
        }
        if let Some(floor) = run.noise_floor_drift() {
            let name = if group.measures.len() > 1 {
                format!("{}: {}", m.name, noise_floor_name(floor))
            } else {
                noise_floor_name(floor)
            };
            series.push(noise_floor_line(name, (m.value)(floor), k_max, colour(i)));
        }
    }
    LineChart {
        title: group.title.to_string(),
        x_label: CORPUS_AXIS.to_string(),
        y_label: group.y_label.to_string(),
        series,
        ..Default::default()
    }
}

/// One measure of several runs against S_k; the real split's value is one black
/// dashed line when the runs share it, else one dashed line per run.
pub fn measure_comparison_chart(runs: &[RunData], labels: &[String], m: &Measure) -> LineChart {
    let k_max = runs.iter().map(last_corpus).max().unwrap_or(0);
    let mut series: Vec<Series> = runs
        .iter()
        .zip(labels)
        .enumerate()
        .map(|(i, (run, label))| {
            Series::new(label.clone(), measure_points(run, m), style_for(i, SeriesStyle::LineAndMarkers))
                .with_color(colour(i))
        })
        .collect();
    if m.has_reference {
        let reals: Vec<Option<f64>> = runs.iter().map(|r| r.real_drift().map(|row| (m.value)(row))).collect();
        match shared_value(&reals) {
            Some(value) => series.push(reference_line("real training split".into(), value, k_max, REAL_COLOUR)),
            None => {
                for (i, (value, label)) in reals.iter().zip(labels).enumerate() {
                    if let Some(value) = value {
                        series.push(reference_line(format!("real split of {label}"), *value, k_max, colour(i)));
                    }
                }
            }
        }
    }
    // The noise floor: one black line when every run measured the same sample, else one per run.
    let floors: Vec<Option<&DriftRow>> = runs.iter().map(RunData::noise_floor_drift).collect();
    let floor_values: Vec<Option<f64>> = floors.iter().map(|row| row.map(|r| (m.value)(r))).collect();
    let same_size = floors.windows(2).all(|w| w[0].map(|r| r.tokens) == w[1].map(|r| r.tokens));
    match (shared_value(&floor_values), floors.first().copied().flatten()) {
        (Some(value), Some(row)) if same_size => {
            series.push(noise_floor_line(noise_floor_name(row), value, k_max, REAL_COLOUR))
        }
        _ => {
            for (i, (row, label)) in floors.iter().zip(labels).enumerate() {
                if let Some(row) = row {
                    let name = format!("{label}: {}", noise_floor_name(row));
                    series.push(noise_floor_line(name, (m.value)(row), k_max, colour(i)));
                }
            }
        }
    }
    LineChart {
        title: m.name.to_string(),
        x_label: CORPUS_AXIS.to_string(),
        y_label: m.name.to_string(),
        series,
        ..Default::default()
    }
}

/// Held-out perplexity on the real test split against the generation, one curve per run.
pub fn perplexity_chart(runs: &[RunData], labels: &[String]) -> LineChart {
    let series = runs
        .iter()
        .zip(labels)
        .enumerate()
        .map(|(i, (run, label))| {
            let points = run.generations.iter().map(|g| (g.generation as f64, g.held_out_perplexity)).collect();
            Series::new(label.clone(), points, style_for(i, SeriesStyle::LineAndMarkers)).with_color(colour(i))
        })
        .collect();
    LineChart {
        title: "Held-out perplexity on the real test split".into(),
        x_label: GENERATION_AXIS.into(),
        y_label: "perplexity".into(),
        series,
        ..Default::default()
    }
}

/// Ranks at which a rank-frequency curve is drawn: every rank up to 50, then
/// about 100 per decade, and the last rank. A 50k-token curve stays a few hundred points.
fn drawn_ranks(len: usize) -> Vec<usize> {
    let mut ranks: Vec<usize> = (1..=len.min(50)).collect();
    let mut r = 50.0f64;
    loop {
        r *= 1.023;
        let rank = r.round() as usize;
        if rank >= len {
            break;
        }
        if ranks.last() != Some(&rank) {
            ranks.push(rank);
        }
    }
    if len > 50 {
        ranks.push(len);
    }
    ranks
}

/// The rank-frequency curve of a count vector, as (rank, relative frequency).
fn rank_frequency_points(counts: &[u64]) -> Vec<(f64, f64)> {
    let ranked = rank_frequency(counts);
    let total: u64 = ranked.iter().sum();
    drawn_ranks(ranked.len()).into_iter().map(|r| (r as f64, ranked[r - 1] as f64 / total as f64)).collect()
}

/// Rank-frequency curves on log-log axes: the real split (black) then `curves`.
pub fn rank_frequency_chart(real: &[u64], curves: &[(String, &[u64])]) -> LineChart {
    let mut series = vec![Series::line("real training split", rank_frequency_points(real)).with_color(REAL_COLOUR)];
    for (i, (name, counts)) in curves.iter().enumerate() {
        series.push(
            Series::new(name.clone(), rank_frequency_points(counts), style_for(i, SeriesStyle::Line))
                .with_color(colour(i)),
        );
    }
    LineChart {
        title: "Rank-frequency curves".into(),
        x_label: "rank (1 = most frequent token)".into(),
        y_label: "relative frequency".into(),
        log_x: true,
        log_y: true,
        series,
    }
}

/// Share of each real-count bucket's tokens present in S_k (markers), beside what a
/// perfect model's corpora show (same colour): with `real_null`, the null from real
/// documents (dashed: its mean share; band: ±1.96 standard deviations of one corpus);
/// else, with D/|R| known, the independence bound 1 − exp(−c·D/|R|) averaged over the
/// bucket (dashed). Both are the same for every S_k, so they are horizontal.
pub fn survival_chart(tokens: &TokenTable, sample_ratio: Option<f64>, real_null: Option<&RealNull>) -> LineChart {
    let k_max = tokens.generations();
    let mut series = Vec::new();
    for (i, b) in survival_by_bucket_with(tokens, sample_ratio, real_null).into_iter().enumerate() {
        let points = b.present.iter().enumerate().map(|(k, &p)| (k as f64, p)).collect();
        let name = format!("real count {} ({} tokens)", b.label, b.tokens);
        series.push(Series::new(name, points, SeriesStyle::LineAndMarkers).with_color(colour(i)));
        match (b.real_null, b.null) {
            (Some(n), _) => {
                let name = format!("null for count {}: real documents", b.label);
                series.push(Series::dashed(name, null_line(n.presence, k_max)).with_color(colour(i)));
                if n.absent_share_sd.is_finite() {
                    let (lo, hi) = (
                        (n.presence - 1.96 * n.absent_share_sd).max(0.0),
                        (n.presence + 1.96 * n.absent_share_sd).min(1.0),
                    );
                    let x = k_max.max(1) as f64;
                    let band = vec![(0.0, hi), (x, hi), (x, lo), (0.0, lo)];
                    series.push(Series::new(String::new(), band, SeriesStyle::Band).with_color(colour(i)));
                }
            }
            (None, Some(bound)) => {
                let name = format!("independence bound for count {}: 1 − exp(−c·D/|R|)", b.label);
                series.push(Series::dashed(name, null_line(bound.presence, k_max)).with_color(colour(i)));
            }
            (None, None) => {}
        }
    }
    LineChart {
        title: "Token survival by real count, against the null model".into(),
        x_label: CORPUS_AXIS.into(),
        y_label: "share of the bucket's tokens present in S_k".into(),
        series,
        ..Default::default()
    }
}

/// A constant null expectation drawn across the whole corpus axis, like the other
/// reference lines (it is the same for every S_k).
fn null_line(value: f64, k_max: u32) -> Vec<(f64, f64)> {
    vec![(0.0, value), (k_max.max(1) as f64, value)]
}

/// The tokens with real count in [low, high].
fn members(tokens: &TokenTable, low: u64, high: u64) -> Vec<usize> {
    (0..tokens.vocab_size()).filter(|&t| (low..=high).contains(&tokens.real[t])).collect()
}

/// Share of the tokens with real count in [low, high] that are present in S_k.
pub fn presence(tokens: &TokenTable, low: u64, high: u64) -> Vec<(f64, f64)> {
    let members = members(tokens, low, high);
    if members.is_empty() {
        return Vec::new();
    }
    (0..=tokens.generations())
        .map(|k| {
            let alive = members.iter().filter(|&&t| tokens.counts(k)[t] > 0).count();
            (k as f64, alive as f64 / members.len() as f64)
        })
        .collect()
}

/// The null model's expected share present in any S_k of the tokens with real count
/// in [low, high]: 1 − exp(−c·D/|R|) averaged over them.
pub fn null_presence(tokens: &TokenTable, low: u64, high: u64, sample_ratio: f64) -> Option<f64> {
    let members = members(tokens, low, high);
    if members.is_empty() {
        return None;
    }
    let sum: f64 = members.iter().map(|&t| null_presence_probability(tokens.real[t], sample_ratio)).sum();
    Some(sum / members.len() as f64)
}

/// The null from real documents' share present in one corpus of the tokens with real
/// count in [low, high].
pub fn real_null_presence(tokens: &TokenTable, low: u64, high: u64, null: &RealNull) -> Option<f64> {
    let members = members(tokens, low, high);
    if members.is_empty() {
        return None;
    }
    let shares = null.absent_shares(&members);
    Some(1.0 - shares.iter().sum::<f64>() / shares.len().max(1) as f64)
}

/// Presence of tokens with real count in [low, high] per S_k, one curve per run,
/// each with its null expectation dashed in the same colour when D/|R| is known.
pub fn presence_comparison_chart(runs: &[RunData], labels: &[String], low: u64, high: u64, title: &str) -> LineChart {
    let mut series = Vec::new();
    for (i, (run, label)) in runs.iter().zip(labels).enumerate() {
        series.push(
            Series::new(label.clone(), presence(&run.tokens, low, high), style_for(i, SeriesStyle::LineAndMarkers))
                .with_color(colour(i)),
        );
        let real_null = run.reference.as_ref().and_then(|r| r.real_null.as_ref());
        let null = match real_null {
            Some(n) => real_null_presence(&run.tokens, low, high, n),
            None => run.sample_ratio().and_then(|r| null_presence(&run.tokens, low, high, r)),
        };
        if let Some(null) = null {
            let points = null_line(null, run.tokens.generations());
            let which = if real_null.is_some() { "null (real documents)" } else { "independence bound" };
            series.push(Series::dashed(format!("{which} for {label}"), points).with_color(colour(i)));
        }
    }
    LineChart {
        title: title.to_string(),
        x_label: CORPUS_AXIS.into(),
        y_label: "share of those tokens present in S_k".into(),
        series,
        ..Default::default()
    }
}

/// The buckets of a loss_by_frequency table in bucket order, each with its rows
/// in generation order.
pub fn loss_buckets(rows: &[LossByFrequencyRow]) -> Vec<Vec<&LossByFrequencyRow>> {
    let mut ids: Vec<u32> = rows.iter().map(|r| r.bucket).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter()
        .map(|id| {
            let mut bucket: Vec<&LossByFrequencyRow> = rows.iter().filter(|r| r.bucket == id).collect();
            bucket.sort_by_key(|r| r.generation);
            bucket
        })
        .collect()
}

/// (generation, mean loss) of a bucket's rows, NaN losses (no targets) left out.
fn loss_points(bucket: &[&LossByFrequencyRow]) -> Vec<(f64, f64)> {
    bucket.iter().filter(|r| r.mean_loss.is_finite()).map(|r| (r.generation as f64, r.mean_loss)).collect()
}

/// Held-out loss per real-count bucket of the target token, one line per bucket.
pub fn loss_by_frequency_chart(rows: &[LossByFrequencyRow]) -> LineChart {
    let series = loss_buckets(rows)
        .iter()
        .enumerate()
        .map(|(i, bucket)| {
            let first = bucket[0];
            let name = format!("real count {} ({} targets)", first.range_label(), first.target_tokens);
            Series::new(name, loss_points(bucket), style_for(i, SeriesStyle::LineAndMarkers)).with_color(colour(i))
        })
        .collect();
    LineChart {
        title: "Held-out loss by real count of the target token".into(),
        x_label: GENERATION_AXIS.into(),
        y_label: "mean held-out loss (nats)".into(),
        series,
        ..Default::default()
    }
}

/// Held-out loss on the targets with real count in [min, max], one curve per run
/// that has the bucket.
pub fn loss_bucket_comparison_chart(runs: &[RunData], labels: &[String], min: u64, max: u64) -> LineChart {
    let series = runs
        .iter()
        .zip(labels)
        .enumerate()
        .filter_map(|(i, (run, label))| {
            let rows = run.loss_by_frequency.as_ref()?;
            let bucket =
                loss_buckets(rows).into_iter().find(|b| (b[0].min_real_count, b[0].max_real_count) == (min, max))?;
            Some(
                Series::new(label.clone(), loss_points(&bucket), style_for(i, SeriesStyle::LineAndMarkers))
                    .with_color(colour(i)),
            )
        })
        .collect();
    LineChart {
        title: format!("Held-out loss on targets with real count {}", count_range_label(min, max)),
        x_label: GENERATION_AXIS.into(),
        y_label: "mean held-out loss (nats)".into(),
        series,
        ..Default::default()
    }
}

/// Tokens whose first zero count is in S_k, per k.
pub fn first_vanished_per_corpus(tokens: &TokenTable) -> Vec<u64> {
    let mut per = vec![0u64; tokens.generations() as usize];
    for t in 0..tokens.vocab_size() {
        if let Some(k) = tokens.vanish_generation(t) {
            per[k as usize - 1] += 1;
        }
    }
    per
}

pub fn vanished_bar_chart(tokens: &TokenTable) -> BarChart {
    BarChart {
        title: "Tokens vanishing for the first time".into(),
        x_label: "corpus S_k".into(),
        y_label: "tokens".into(),
        log_y: false,
        bars: first_vanished_per_corpus(tokens)
            .iter()
            .enumerate()
            .map(|(j, &n)| (format!("S_{}", j + 1), n as f64))
            .collect(),
    }
}

pub fn vanished_comparison_chart(runs: &[RunData], labels: &[String]) -> LineChart {
    let series = runs
        .iter()
        .zip(labels)
        .enumerate()
        .map(|(i, (run, label))| {
            let points = first_vanished_per_corpus(&run.tokens)
                .iter()
                .enumerate()
                .map(|(j, &n)| ((j + 1) as f64, n as f64))
                .collect();
            Series::new(label.clone(), points, style_for(i, SeriesStyle::LineAndMarkers)).with_color(colour(i))
        })
        .collect();
    LineChart {
        title: "Tokens vanishing for the first time".into(),
        x_label: CORPUS_AXIS.into(),
        y_label: "tokens".into(),
        series,
        ..Default::default()
    }
}

/// Vanish generation against real count for every vanished token, with the fitted line.
pub fn vanish_scatter_chart(tokens: &TokenTable) -> LineChart {
    let points = vanish_points(tokens, 1);
    // Many tokens share a (count, generation) pair; one marker each is enough.
    let mut distinct = points.clone();
    distinct.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    distinct.dedup();
    let mut series = vec![Series::markers("vanished tokens", distinct).with_color(colour(0))];
    if let Some(fit) = vanish_fit(tokens, 1) {
        let x_max = points.iter().map(|p| p.0).fold(1.0, f64::max);
        let line = vec![(1.0, fit.slope + fit.intercept), (x_max, fit.slope * x_max + fit.intercept)];
        let sign = if fit.intercept < 0.0 { '−' } else { '+' };
        let name = format!(
            "least squares: {:.3} × count {sign} {:.3} (R² {:.2})",
            fit.slope,
            fit.intercept.abs(),
            fit.r_squared
        );
        series.push(Series::dashed(name, line).with_color(colour(1)));
    }
    LineChart {
        title: "Vanish generation against count in the real split".into(),
        x_label: "count in the real training split".into(),
        y_label: "vanish generation k (first S_k without the token)".into(),
        series,
        ..Default::default()
    }
}
/// (recall, precision) of every generation row that carries them, with its generation.
pub fn plane_points(rows: &[crate::records::GenerationRow]) -> Vec<(u32, f64, f64)> {
    rows.iter()
        .filter(|r| r.score_seconds > 0.0 && r.precision.is_finite() && r.recall.is_finite())
        .map(|r| (r.generation, r.recall, r.precision))
        .collect()
}
