//! Files and printed summary of `lmloop theory discrete`.
//!
//! Written to the output folder, each atomically:
//! * `generations.csv` — per generation k: mean, sd and 5/25/50/75/95%
//!   quantiles over trials of support size, entropy (nats), total variation
//!   and squared L2 distance to the start, plus the exact mean squared
//!   distance at T = 1 (empty otherwise);
//! * `survival.csv` — per checkpoint k and octave of expected initial count
//!   n·p: simulated survival and the Poisson prediction 1 − exp(−n·p·g_k);
//! * `symbols.csv` — per symbol: start probability, n·p and survival at each checkpoint;
//! * `support`, `entropy`, `total_variation`, `squared_distance`, `survival`
//!   as `.svg` and `.png`;
//! * `config.json` (the resolved run) and `summary.txt` (also printed),
//!   written last: a folder with a summary holds a complete set of outputs.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use serde_json::json;

use super::discrete::{discrete_survival_bins, exact_squared_distance, DiscreteConfig, DiscreteResult};
use super::output::{csv_document, optional_field, remove_completion_marker};
use super::policy::DataPolicy;
use super::predictions::{expected_squared_distance, mix_fixed_point_squared_distance};
use super::survival::SurvivalBin;
use super::table_format::{mean_and_band, report_generations, short, stats_fields, stats_header};
use super::trial_stats::{TrialStats, QUANTILE_LEVELS};
use crate::plot::{render_svg, write_svg_and_png, LineChart, Series};

/// Writes every output file into `folder` (which must exist) and returns the summary text.
pub fn write_discrete_report(config: &DiscreteConfig, result: &DiscreteResult, folder: &Path) -> Result<String> {
    remove_completion_marker(folder)?;
    let exact = exact_squared_distance(config);
    let bins = discrete_survival_bins(config, result);

    crate::durable::write_atomic(&folder.join("generations.csv"), &generations_csv(result, exact.as_deref())?)?;
    crate::durable::write_atomic(&folder.join("survival.csv"), &survival_csv(result, &bins)?)?;
    crate::durable::write_atomic(&folder.join("symbols.csv"), &symbols_csv(config, result)?)?;
    for (name, chart) in charts(config, result, exact.as_deref(), &bins) {
        write_svg_and_png(&render_svg(&chart)?, &folder.join(name))?;
    }
    let summary = discrete_summary(config, result);
    crate::durable::write_atomic(
        &folder.join("config.json"),
        serde_json::to_string_pretty(&resolved_config(config))?.as_bytes(),
    )?;
    crate::durable::write_atomic(&folder.join("summary.txt"), summary.as_bytes())?;
    Ok(summary)
}

fn resolved_config(config: &DiscreteConfig) -> serde_json::Value {
    json!({
        "command": "theory discrete",
        "dist": config.start.label,
        "support": config.start.probabilities.len(),
        "n": config.n,
        "generations": config.generations,
        "trials": config.trials,
        "policy": config.policy.name(),
        "real_fraction": config.policy.real_fraction(),
        "real_draws_per_generation": config.policy.real_draws(config.n),
        "temperature": config.temperature,
        "seed": config.seed,
        "quantile_levels": QUANTILE_LEVELS,
    })
}

fn generations_csv(result: &DiscreteResult, exact: Option<&[f64]>) -> Result<Vec<u8>> {
    let mut header = vec!["generation".to_string()];
    for prefix in ["support", "entropy_nats", "total_variation", "squared_distance"] {
        header.extend(stats_header(prefix));
    }
    header.push("squared_distance_exact_mean".to_string());
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let rows = (0..result.support.len()).map(|k| {
        let mut row = vec![k.to_string()];
        for metric in [&result.support, &result.entropy, &result.total_variation, &result.squared_distance] {
            row.extend(stats_fields(&metric[k]));
        }
        row.push(optional_field(exact.map(|e| e[k])));
        row
    });
    csv_document(&header, rows)
}

fn survival_csv(result: &DiscreteResult, bins: &[SurvivalBin]) -> Result<Vec<u8>> {
    let header = [
        "generation",
        "expected_count_low",
        "expected_count_high",
        "symbols",
        "mean_expected_count",
        "simulated_survival",
        "poisson_prediction",
    ];
    let rows = result.checkpoints.iter().enumerate().flat_map(|(slot, &k)| {
        bins.iter().map(move |bin| {
            vec![
                k.to_string(),
                bin.expected_count_low.to_string(),
                bin.expected_count_high.to_string(),
                bin.symbols.to_string(),
                bin.mean_expected_count.to_string(),
                bin.simulated[slot].to_string(),
                bin.predicted[slot].to_string(),
            ]
        })
    });
    csv_document(&header, rows)
}

fn symbols_csv(config: &DiscreteConfig, result: &DiscreteResult) -> Result<Vec<u8>> {
    let mut header = vec!["symbol".to_string(), "start_probability".to_string(), "expected_count".to_string()];
    header.extend(result.checkpoints.iter().map(|k| format!("survival_k{k}")));
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let rows = config.start.probabilities.iter().enumerate().map(|(symbol, &p)| {
        let mut row = vec![symbol.to_string(), p.to_string(), (config.n as f64 * p).to_string()];
        row.extend((0..result.checkpoints.len()).map(|slot| result.survival(slot, symbol).to_string()));
        row
    });
    csv_document(&header, rows)
}

/// Points (k, value) for k ≥ 1: the generation axes are logarithmic because
/// collapse proceeds on every time scale from 1 to n generations.
fn by_generation(stats: &[TrialStats], value: fn(&TrialStats) -> f64) -> Vec<(f64, f64)> {
    stats.iter().enumerate().skip(1).map(|(k, s)| (k as f64, value(s))).collect()
}

fn spread_series(stats: &[TrialStats]) -> Vec<Series> {
    vec![
        Series::line("mean", by_generation(stats, |s| s.mean)).with_color(0),
        Series::line("median", by_generation(stats, |s| s.median)).with_color(2),
        Series::dashed("5% quantile", by_generation(stats, |s| s.q05)).with_color(5),
        Series::dashed("95% quantile", by_generation(stats, |s| s.q95)).with_color(5),
    ]
}

fn charts(
    config: &DiscreteConfig,
    result: &DiscreteResult,
    exact: Option<&[f64]>,
    bins: &[SurvivalBin],
) -> Vec<(&'static str, LineChart)> {
    let context =
        format!("{}, n = {}, {}, T = {}", config.start.label, config.n, config.policy.label(), config.temperature);
    let chart = |title: &str, y_label: &str, log_y: bool, series: Vec<Series>| LineChart {
        title: format!("{title} ({context})"),
        x_label: "generation k".to_string(),
        y_label: y_label.to_string(),
        log_x: true,
        log_y,
        series,
    };

    let mut entropy_series = spread_series(&result.entropy);
    entropy_series.push(
        Series::dashed("ln(mean support): uniform ceiling", by_generation(&result.support, |s| s.mean.ln()))
            .with_color(1),
    );

    let mut distance_series = vec![Series::line("simulated mean", by_generation(&result.squared_distance, |s| s.mean))];
    if let Some(exact) = exact {
        let points = exact.iter().enumerate().skip(1).map(|(k, &d)| (k as f64, d)).collect();
        distance_series.push(Series::dashed("exact mean (Wright–Fisher)", points).with_color(1));
    }

    // Four checkpoints spread over the run, each with its prediction in the same colour.
    let slots = spread_indices(result.checkpoints.len(), 4);
    let mut survival_series = Vec::new();
    for (colour, &slot) in slots.iter().enumerate() {
        let k = result.checkpoints[slot];
        let simulated = bins.iter().map(|b| (b.mean_expected_count, b.simulated[slot])).collect();
        let predicted = bins.iter().map(|b| (b.mean_expected_count, b.predicted[slot])).collect();
        survival_series.push(Series::markers(format!("k = {k} simulated"), simulated).with_color(colour));
        survival_series.push(Series::dashed(format!("k = {k} Poisson"), predicted).with_color(colour));
    }

    vec![
        ("support", chart("Surviving support", "symbols with p̂ > 0", true, spread_series(&result.support))),
        ("entropy", chart("Entropy of the estimate", "entropy (nats)", false, entropy_series)),
        (
            "total_variation",
            chart("Total variation to the start", "TV(p̂_k, p₀)", false, spread_series(&result.total_variation)),
        ),
        ("squared_distance", chart("Squared distance to the start", "‖p̂_k − p₀‖²", true, distance_series)),
        (
            "survival",
            LineChart {
                title: format!("Symbol survival vs 1 − exp(−n·p·g_k) ({context})"),
                x_label: "expected initial count n·p".to_string(),
                y_label: "P(symbol present at k)".to_string(),
                log_x: true,
                log_y: false,
                series: survival_series,
            },
        ),
    ]
}

/// Up to `wanted` indices spread evenly over 0..len, always including the last.
fn spread_indices(len: usize, wanted: usize) -> Vec<usize> {
    if len <= wanted {
        return (0..len).collect();
    }
    let mut indices: Vec<usize> = (0..wanted).map(|i| i * (len - 1) / (wanted - 1)).collect();
    indices.dedup();
    indices
}

/// The side-by-side comparison of simulation and published prediction.
pub fn discrete_summary(config: &DiscreteConfig, result: &DiscreteResult) -> String {
    let mut text = String::new();
    let support = config.start.probabilities.len();
    let last = config.generations;
    let exact = exact_squared_distance(config);
    let _ = writeln!(
        text,
        "lmloop theory discrete: recursive maximum-likelihood re-estimation of a categorical distribution"
    );
    let _ = writeln!(
        text,
        "start {} over {support} symbols (entropy {} nats, ln support {}); n = {} samples per generation; {last} generations; {} trials; policy {}; temperature {}; seed {}",
        config.start.label,
        short(result.start_entropy),
        short((support as f64).ln()),
        config.n,
        config.trials,
        config.policy.label(),
        config.temperature,
        config.seed,
    );
    let _ = writeln!(
        text,
        "Generation k is the estimate fitted to sample set k (k = 1: the n real samples); cells are mean [5%, 95%] over trials.\n"
    );
    let _ = writeln!(
        text,
        "{:>6}  {:<26}  {:<26}  {:<26}  {:>12}  {:>12}",
        "k", "support", "entropy (nats)", "TV to start", "‖p̂−p₀‖²", "exact (T=1)"
    );
    for k in report_generations(last) {
        let _ = writeln!(
            text,
            "{k:>6}  {:<26}  {:<26}  {:<26}  {:>12}  {:>12}",
            mean_and_band(&result.support[k]),
            mean_and_band(&result.entropy[k]),
            mean_and_band(&result.total_variation[k]),
            short(result.squared_distance[k].mean),
            exact.as_ref().map(|e| short(e[k])).unwrap_or_else(|| "n/a".to_string()),
        );
    }

    let bins = discrete_survival_bins(config, result);
    // Columns kept to a terminal's width: k = 1, 2, powers of ten, and the last.
    let shown: Vec<usize> =
        report_generations(last).into_iter().filter(|&k| k == 2 || k == last || is_power_of_ten(k)).collect();
    let slots: Vec<(usize, usize)> =
        result.checkpoints.iter().enumerate().filter(|(_, k)| shown.contains(k)).map(|(slot, &k)| (slot, k)).collect();
    let applies = config.untempered() && config.policy == DataPolicy::Replace;
    let _ = writeln!(
        text,
        "\nSurvival of a symbol at generation k, simulated | predicted by Suresh et al. (2024)'s Poisson model 1 − exp(−n·p·g_k){}:",
        if applies { "" } else { " [the prediction is for replace at T = 1; shown for contrast]" }
    );
    let mut header = format!("{:<16} {:>7}", "n·p", "symbols");
    for &(_, k) in &slots {
        let _ = write!(header, " {:>13}", format!("k = {k}"));
    }
    let _ = writeln!(text, "{header}");
    // The largest gap, and the Monte Carlo standard error of the cell where it occurs.
    let mut largest_gap: (f64, f64) = (0.0, 0.0);
    for bin in &bins {
        let mut line = format!(
            "{:<16} {:>7}",
            // Octave edges are powers of two, which print exactly and briefly.
            format!("[{}, {})", bin.expected_count_low, bin.expected_count_high),
            bin.symbols
        );
        for &(slot, _) in &slots {
            let _ = write!(line, " {:>13}", format!("{:.3}|{:.3}", bin.simulated[slot], bin.predicted[slot]));
        }
        let _ = writeln!(text, "{line}");
        for slot in 0..result.checkpoints.len() {
            let (simulated, predicted) = (bin.simulated[slot], bin.predicted[slot]);
            if (simulated - predicted).abs() > largest_gap.0 {
                // Binomial error of a share estimated from symbols × trials pairs.
                let pairs = (bin.symbols * config.trials) as f64;
                largest_gap = ((simulated - predicted).abs(), (simulated * (1.0 - simulated) / pairs).sqrt());
            }
        }
    }
    let _ = writeln!(
        text,
        "largest |simulated − predicted| over all bins and checkpoints: {:.4} (that cell's Monte Carlo standard error: {:.4})",
        largest_gap.0, largest_gap.1
    );

    let _ = writeln!(text, "\nPrediction tested:");
    let _ = writeln!(text, "{}", verdict(config, result, exact.as_deref()));
    text
}

fn is_power_of_ten(k: usize) -> bool {
    let mut power = 1;
    while power < k {
        power = power.saturating_mul(10);
    }
    power == k
}

fn verdict(config: &DiscreteConfig, result: &DiscreteResult, exact: Option<&[f64]>) -> String {
    let last = config.generations;
    let final_stats = |stats: &[TrialStats]| mean_and_band(&stats[last]);
    let simulated_vs_exact = |k: usize| match exact {
        Some(exact) => format!(
            "simulated {} ± {} vs exact {}",
            short(result.squared_distance[k].mean),
            short(result.squared_distance[k].standard_error(config.trials)),
            short(exact[k])
        ),
        None => String::new(),
    };
    let h0 = result.start_gini_simpson;
    if config.temperature < 1.0 {
        return format!(
            "Marchi et al. (2024), T = {} < 1: the closed loop collapses onto the mode unless enough external data enters each generation. \
Entropy {} nats at k = 0 → {} at k = {last}; support at k = {last}: {}; trials down to a single symbol: {:.1}%; trials whose final estimate still ranks the start's mode first: {:.1}%.",
            config.temperature,
            short(result.start_entropy),
            final_stats(&result.entropy),
            final_stats(&result.support),
            100.0 * result.single_symbol_fraction,
            100.0 * result.mode_kept_fraction,
        );
    }
    if config.temperature > 1.0 {
        let ceiling = result.support[last].mean.ln();
        return format!(
            "Marchi et al. (2024), T = {} > 1: the loop spreads towards the uniform distribution over the symbols still present. \
Entropy {} nats at k = 0 → {} at k = {last}, against ln(mean support) = {} at k = {last} (ratio {:.3}; ln of the start's support: {}).",
            config.temperature,
            short(result.start_entropy),
            final_stats(&result.entropy),
            short(ceiling),
            result.entropy[last].mean / ceiling,
            short((config.start.probabilities.len() as f64).ln()),
        );
    }
    let replace_at_last = expected_squared_distance(DataPolicy::Replace, config.n, h0, last)[last];
    match config.policy {
        DataPolicy::Replace => format!(
            "Suresh et al. (2024), replace at T = 1: a symbol of probability p is present in sample set k with probability 1 − exp(−n·p·g_k), \
1/k ≤ g_k ≤ 3/k, so a symbol with expected count c survives about c generations (table above). The Poisson model treats symbols \
as independent; with n draws every generation some symbol always survives, so once only a few are left the most common ones survive \
more often than predicted. As a Wright–Fisher chain the estimate also obeys \
E‖p̂_k − p₀‖² = H₀·(1 − (1 − 1/n)^k) exactly, H₀ = 1 − Σp₀² = {}: at k = {last} {}. Support at k = {last}: {}.",
            short(h0),
            simulated_vs_exact(last),
            final_stats(&result.support),
        ),
        DataPolicy::Accumulate => format!(
            "Bounded drift (Gerstgrasser et al. 2024): keeping all data, real included, the k-th sample set only moves the estimate by 1/k of its error, so \
E‖p̂_k − p₀‖² stays below (π²/6)·H₀/n = {}: at k = {last} {}, where replace would reach {}. The support never drops below the real samples': \
{} at k = 1, {} at k = {last}.",
            short(std::f64::consts::PI.powi(2) / 6.0 * h0 / config.n as f64),
            simulated_vs_exact(last),
            short(replace_at_last),
            mean_and_band(&result.support[1]),
            final_stats(&result.support),
        ),
        DataPolicy::Fresh { real_fraction } => {
            let fixed_point = mix_fixed_point_squared_distance(config.n, config.policy.real_draws(config.n), h0);
            format!(
                "Stability with real data (Bertrand et al. 2024): with a share λ = {real_fraction} of real samples per generation the error contracts \
to a fixed point, E‖p̂_k − p₀‖² → {} (limit of the exact recursion): at k = {last} {}, where replace would reach {}. Support at k = {last}: {}.",
                short(fixed_point),
                simulated_vs_exact(last),
                short(replace_at_last),
                final_stats(&result.support),
            )
        }
    }
}
