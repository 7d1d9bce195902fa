//! Number and row formatting shared by the printed summaries and CSV tables.

use super::trial_stats::TrialStats;

/// Column suffixes of a [`TrialStats`] in CSV headers, in field order.
const STATS_COLUMNS: [&str; 7] = ["mean", "sd", "q05", "q25", "median", "q75", "q95"];

/// `PREFIX_mean, PREFIX_sd, PREFIX_q05, …` header names.
pub fn stats_header(prefix: &str) -> Vec<String> {
    STATS_COLUMNS.iter().map(|column| format!("{prefix}_{column}")).collect()
}

/// The fields matching [`stats_header`], at full precision.
pub fn stats_fields(stats: &TrialStats) -> Vec<String> {
    [stats.mean, stats.sd, stats.q05, stats.q25, stats.median, stats.q75, stats.q95]
        .iter()
        .map(f64::to_string)
        .collect()
}

/// Four significant digits: enough to compare a simulation with a prediction by eye.
pub fn short(value: f64) -> String {
    if value == 0.0 {
        return "0".to_string(); // also for −0
    }
    if !value.is_finite() {
        return format!("{value}");
    }
    let magnitude = value.abs();
    if (1e-3..1e5).contains(&magnitude) {
        let decimals = (3 - magnitude.log10().floor() as i32).max(0) as usize;
        format!("{value:.decimals$}")
    } else {
        format!("{value:.3e}")
    }
}

/// "mean [5%, 95%]".
pub fn mean_and_band(stats: &TrialStats) -> String {
    format!("{} [{}, {}]", short(stats.mean), short(stats.q05), short(stats.q95))
}

/// Generations shown in printed tables: 0, 1, 2, 5, 10, 20, 50, … and the last.
pub fn report_generations(last: usize) -> Vec<usize> {
    let mut generations = vec![0];
    let mut decade = 1usize;
    while decade <= last {
        generations.extend([1, 2, 5].iter().map(|m| m * decade).filter(|&k| k <= last));
        decade = decade.saturating_mul(10);
    }
    if generations.last() != Some(&last) {
        generations.push(last);
    }
    generations
}
