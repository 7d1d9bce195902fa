//! Sharper statistics over a sweep's seeds: paired contrasts between cells, collapse
//! rates, and stability thresholds along a numeric axis.
//!
//! - **Paired contrast** (`contrasts.csv`). The cells of a sweep share generation 0 at
//!   each seed (the same R and, for cells whose generation 0 is configured alike, the
//!   same M_0), so for a cell c, its baseline b, a measure and a generation k the
//!   per-seed difference d_s = v_c(s) − v_b(s) removes what the seed shares. Its mean
//!   and 95% Student-t interval over the seeds that have both values: much tighter
//!   than two unpaired intervals when the seeds are strongly correlated.
//! - **Collapse rate** (`rates.csv`). Per run, the least-squares slope of a measure
//!   over generations 1..N (per generation), and that slope over the run's value at
//!   generation 0 (relative, per generation); then their mean and 95% interval over
//!   seeds. A run needs at least two of those generations.
//! - **Threshold** (`thresholds.csv`). Along a numeric grid axis (λ, a temperature),
//!   among cells alike in every other axis, two readings, each knowing which way the
//!   measure moves under collapse ([`direction`]: held-out perplexity climbs, precision
//!   falls). *Shown stable*: the smallest axis value whose rate's interval lies wholly
//!   on the safe side of 0 (at or below 0 for a measure that climbs, at or above for one
//!   that falls), bracketed by the largest smaller value whose does not. *Not shown to
//!   collapse*: the smallest value whose interval does not lie wholly on the collapse
//!   side (with few seeds a flat rate's interval straddles 0, so this is the reading
//!   that finds Bertrand et al.'s threshold), bracketed by the largest smaller value
//!   whose does. A measure that moves either way under collapse (entropy, which falls
//!   below T = 1 and climbs above it) has no safe side: both readings ask for an
//!   interval that contains 0.
use super::aggregate::{cell_values, opt, seeds_text, summary_columns, Aggregate, Kind, Slot, MODEL_MEASURES};
use super::cells::{short_value, Sweep};
use super::stats::Summary;
use anyhow::{bail, Result};

/// Measures contrasted, given rates, and searched for thresholds: (measure, kind).
pub fn measures() -> Vec<(&'static str, Kind)> {
    let mut out: Vec<(&str, Kind)> = MODEL_MEASURES.iter().map(|m| (*m, Kind::Model)).collect();
    out.extend(super::aggregate::DRIFT_MEASURES.iter().map(|m| (*m, Kind::Corpus)));
    out
}

/// The cell the others are contrasted with: the sweep file's `baseline` (grid values
/// naming exactly one cell), else the real-data control when the sweep has one cell
/// of it, else none.
pub fn baseline(sweep: &Sweep) -> Result<Option<usize>> {
    let Some(want) = &sweep.spec.baseline else {
        let real: Vec<usize> = (0..sweep.cells.len()).filter(|&i| sweep.cells[i].policy == "real").collect();
        return Ok((real.len() == 1).then(|| real[0]));
    };
    let matches = |i: usize| {
        let c = &sweep.cells[i];
        want.iter().all(|(key, v)| {
            let key = super::spec::config_key_of(key);
            let value = match key.as_str() {
                super::spec::POLICY_KEY => Some(toml::Value::String(c.policy.clone())),
                super::spec::REAL_FRACTION_KEY => c.real_fraction.map(toml::Value::Float),
                _ => c.grid_values.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone()),
            };
            value.is_some_and(|x| same_value(&x, v))
        })
    };
    let found: Vec<usize> = (0..sweep.cells.len()).filter(|&i| matches(i)).collect();
    let described = want.iter().map(|(k, v)| format!("{k} = {}", short_value(v))).collect::<Vec<_>>().join(", ");
    match found.as_slice() {
        [one] => Ok(Some(*one)),
        [] => bail!(
            "baseline {{ {described} }} matches no cell of the sweep (cells: {})",
            sweep.cells.iter().map(|c| c.label.as_str()).collect::<Vec<_>>().join("; ")
        ),
        many => bail!(
            "baseline {{ {described} }} matches {} cells ({}); name more settings so that it matches one",
            many.len(),
            many.iter().map(|&i| sweep.cells[i].label.as_str()).collect::<Vec<_>>().join("; ")
        ),
    }
}

/// Equal as settings: numbers compare by value (1 and 1.0 alike).
fn same_value(a: &toml::Value, b: &toml::Value) -> bool {
    let num = |v: &toml::Value| v.as_float().or_else(|| v.as_integer().map(|i| i as f64));
    match (num(a), num(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// One row of `contrasts.csv`.
#[derive(Debug, Clone)]
pub struct ContrastRow {
    pub cell: usize,
    pub baseline: usize,
    pub measure: String,
    pub kind: Kind,
    pub generation: u32,
    pub summary: Summary,
    pub seeds: Vec<u64>,
    pub missing: Vec<u64>,
}

/// Per-seed values of one cell: (seed, run values), from the aggregate.
fn cell_runs<'a>(sweep: &'a Sweep, agg: &'a Aggregate, cell: usize) -> Vec<(u64, &'a super::aggregate::RunValues)> {
    cell_values(sweep, &agg.per_run, cell)
}

/// Every cell but the baseline against it, per measure and generation.
pub fn contrasts(sweep: &Sweep, agg: &Aggregate, baseline: usize) -> Vec<ContrastRow> {
    let base = cell_runs(sweep, agg, baseline);
    let mut rows = Vec::new();
    for cell in (0..sweep.cells.len()).filter(|&c| c != baseline) {
        let runs = cell_runs(sweep, agg, cell);
        for (m, kind) in measures() {
            for k in 0..=sweep.spec.generations {
                let key = (m.to_string(), Slot::Generation(kind, k));
                let (mut diffs, mut seeds, mut missing) = (Vec::new(), Vec::new(), Vec::new());
                for (seed, v) in &runs {
                    let b = base.iter().find(|(s, _)| s == seed).and_then(|(_, bv)| bv.get(&key));
                    match (v.get(&key), b) {
                        (Some(x), Some(y)) => {
                            diffs.push(x - y);
                            seeds.push(*seed);
                        }
                        _ => missing.push(*seed),
                    }
                }
                rows.push(ContrastRow {
                    cell,
                    baseline,
                    measure: m.to_string(),
                    kind,
                    generation: k,
                    summary: Summary::of(&diffs),
                    seeds,
                    missing,
                });
            }
        }
    }
    rows
}

/// Least-squares slope of y on x; `None` with fewer than two distinct x.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    Some(points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>() / sxx)
}

/// One row of `rates.csv`.
#[derive(Debug, Clone)]
pub struct RateRow {
    pub cell: usize,
    pub measure: String,
    pub kind: Kind,
    pub from: u32,
    pub to: u32,
    /// Slope per generation.
    pub slope: Summary,
    /// Slope over the run's generation-0 value, per generation.
    pub relative: Summary,
    pub seeds: Vec<u64>,
    pub missing: Vec<u64>,
}

/// The rate of every measure of every cell over generations 1..N.
pub fn rates(sweep: &Sweep, agg: &Aggregate) -> Vec<RateRow> {
    let n = sweep.spec.generations;
    let mut rows = Vec::new();
    for cell in 0..sweep.cells.len() {
        let runs = cell_runs(sweep, agg, cell);
        for (m, kind) in measures() {
            let (mut slopes, mut relative, mut seeds, mut missing) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for (seed, v) in &runs {
                let at = |k: u32| v.get(&(m.to_string(), Slot::Generation(kind, k))).copied();
                let points: Vec<(f64, f64)> = (1..=n).filter_map(|k| Some((k as f64, at(k)?))).collect();
                // Every generation 1..N must be there: a slope over part of a run is
                // another quantity.
                match slope(&points).filter(|_| points.len() == n as usize) {
                    Some(s) => {
                        slopes.push(s);
                        if let Some(v0) = at(0).filter(|v0| *v0 != 0.0) {
                            relative.push(s / v0.abs());
                        }
                        seeds.push(*seed);
                    }
                    None => missing.push(*seed),
                }
            }
            rows.push(RateRow {
                cell,
                measure: m.to_string(),
                kind,
                from: 1,
                to: n,
                slope: Summary::of(&slopes),
                relative: Summary::of(&relative),
                seeds,
                missing,
            });
        }
    }
    rows
}

/// Which way a measure moves as a loop collapses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Perplexities, losses, divergences from the real data, the share beyond the real tail.
    Climbs,
    /// Quality and diversity: precision, recall, density, coverage, distinct tokens and
    /// n-grams, tail mass.
    Falls,
    /// Either way, depending on the loop (entropy, lengths, copying, the Zipf slope).
    Either,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Climbs => "climbs",
            Direction::Falls => "falls",
            Direction::Either => "either",
        }
    }

    /// Whether an interval `(low, high)` of a rate lies wholly on the safe side of 0.
    fn safe(self, low: f64, high: f64) -> bool {
        match self {
            Direction::Climbs => high <= 0.0,
            Direction::Falls => low >= 0.0,
            Direction::Either => low <= 0.0 && high >= 0.0,
        }
    }

    /// Whether it lies wholly on the collapse side of 0.
    fn collapsing(self, low: f64, high: f64) -> bool {
        match self {
            Direction::Climbs => low > 0.0,
            Direction::Falls => high < 0.0,
            Direction::Either => low > 0.0 || high < 0.0,
        }
    }
}

/// The way `measure` moves under collapse.
pub fn direction(measure: &str) -> Direction {
    const FALLS: [&str; 8] =
        ["precision", "recall", "density", "coverage", "distinct_tokens", "distinct_2", "distinct_3", "tail_mass"];
    const CLIMBS: [&str; 9] = [
        "held_out_loss",
        "held_out_perplexity",
        "reference_perplexity_median",
        "reference_beyond_real_p99",
        "kl_real_gen_add_half",
        "kl_gen_real_add_half",
        "js_divergence",
        "total_variation",
        "synthetic_non_canonical_share",
    ];
    if FALLS.contains(&measure) || measure == "synthetic_distinct_tokens" {
        Direction::Falls
    } else if CLIMBS.contains(&measure) {
        Direction::Climbs
    } else {
        Direction::Either
    }
}

/// One row of `thresholds.csv`: along `axis`, among cells alike in `others`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub axis: String,
    /// The other grid settings the cells share, "key = value, …" (empty when none).
    pub others: String,
    pub measure: String,
    pub kind: Kind,
    /// Which way the measure moves under collapse.
    pub direction: Direction,
    /// The smallest value whose rate's interval lies wholly on the safe side of 0 (None:
    /// no value's does).
    pub stable_from: Option<f64>,
    /// The largest smaller value whose interval does not (None: the smallest value is
    /// already stable, so the threshold lies at or below it).
    pub unstable_below: Option<f64>,
    /// The smallest value whose rate's interval does not lie wholly on the collapse side
    /// (None: every value's does).
    pub not_collapsing_from: Option<f64>,
    /// The largest smaller value whose interval does.
    pub collapsing_below: Option<f64>,
    /// Values on the ladder, ascending.
    pub ladder: Vec<f64>,
}

/// Numeric grid axes with at least two values, the ladders over them, and their
/// thresholds for every measure with rates.
pub fn thresholds(sweep: &Sweep, rates: &[RateRow]) -> Vec<Threshold> {
    let mut axes: Vec<String> = Vec::new();
    for c in &sweep.cells {
        for (k, v) in &c.grid_values {
            if (v.is_float() || v.is_integer()) && !axes.contains(k) {
                axes.push(k.clone());
            }
        }
    }
    let numeric = |v: &toml::Value| v.as_float().or_else(|| v.as_integer().map(|i| i as f64));
    let mut out = Vec::new();
    for axis in axes {
        // Cells on the axis, grouped by every other setting.
        let mut groups: Vec<(String, Vec<(f64, usize)>)> = Vec::new();
        for (i, c) in sweep.cells.iter().enumerate() {
            let Some(x) = c.grid_values.iter().find(|(k, _)| *k == axis).and_then(|(_, v)| numeric(v)) else {
                continue;
            };
            let others = c
                .grid_values
                .iter()
                .filter(|(k, _)| *k != axis)
                .map(|(k, v)| format!("{} = {}", super::spec::named_axis(k).unwrap_or(k), short_value(v)))
                .collect::<Vec<_>>()
                .join(", ");
            match groups.iter_mut().find(|g| g.0 == others) {
                Some(g) => g.1.push((x, i)),
                None => groups.push((others, vec![(x, i)])),
            }
        }
        for (others, mut ladder) in groups {
            if ladder.len() < 2 {
                continue;
            }
            ladder.sort_by(|a, b| a.0.total_cmp(&b.0));
            for (m, kind) in measures() {
                let dir = direction(m);
                let interval = |cell: usize| {
                    let r = rates.iter().find(|r| r.cell == cell && r.measure == m && r.kind == kind)?;
                    Some((r.slope.low()?, r.slope.high()?))
                };
                let intervals: Vec<Option<(f64, f64)>> = ladder.iter().map(|&(_, c)| interval(c)).collect();
                if intervals.iter().any(Option::is_none) {
                    continue;
                }
                let intervals: Vec<(f64, f64)> = intervals.into_iter().flatten().collect();
                let first = intervals.iter().position(|&(lo, hi)| dir.safe(lo, hi));
                let calm = intervals.iter().position(|&(lo, hi)| !dir.collapsing(lo, hi));
                let below = |i: Option<usize>| i.and_then(|i| i.checked_sub(1)).map(|i| ladder[i].0);
                out.push(Threshold {
                    axis: super::spec::named_axis(&axis).unwrap_or(&axis).to_string(),
                    others: others.clone(),
                    measure: m.to_string(),
                    kind,
                    direction: dir,
                    stable_from: first.map(|i| ladder[i].0),
                    unstable_below: below(first),
                    not_collapsing_from: calm.map(|i| ladder[i].0),
                    collapsing_below: below(calm),
                    ladder: ladder.iter().map(|l| l.0).collect(),
                });
            }
        }
    }
    out
}

pub fn contrasts_csv(sweep: &Sweep, rows: &[ContrastRow]) -> Result<Vec<u8>> {
    crate::durable::csv_bytes(|w| {
        w.write_record([
            "cell",
            "label",
            "baseline",
            "measure",
            "of",
            "generation",
            "n",
            "mean_difference",
            "sd",
            "ci95_low",
            "ci95_high",
            "seeds",
            "missing_seeds",
        ])?;
        for r in rows {
            let cells = [
                sweep.cells[r.cell].id.clone(),
                sweep.cells[r.cell].label.clone(),
                sweep.cells[r.baseline].label.clone(),
                r.measure.clone(),
                r.kind.describe().to_string(),
                r.generation.to_string(),
            ];
            let seeds = [seeds_text(&r.seeds), seeds_text(&r.missing)];
            w.write_record(cells.into_iter().chain(summary_columns(&r.summary)).chain(seeds))?;
        }
        Ok(())
    })
}

pub fn rates_csv(sweep: &Sweep, rows: &[RateRow]) -> Result<Vec<u8>> {
    crate::durable::csv_bytes(|w| {
        w.write_record([
            "cell",
            "label",
            "measure",
            "of",
            "from_generation",
            "to_generation",
            "n",
            "mean_slope",
            "sd",
            "ci95_low",
            "ci95_high",
            "mean_relative_slope",
            "relative_ci95_low",
            "relative_ci95_high",
            "seeds",
            "missing_seeds",
        ])?;
        for r in rows {
            let cells = [
                sweep.cells[r.cell].id.clone(),
                sweep.cells[r.cell].label.clone(),
                r.measure.clone(),
                r.kind.describe().to_string(),
                r.from.to_string(),
                r.to.to_string(),
            ];
            let rest = [
                opt(r.relative.mean),
                opt(r.relative.low()),
                opt(r.relative.high()),
                seeds_text(&r.seeds),
                seeds_text(&r.missing),
            ];
            w.write_record(cells.into_iter().chain(summary_columns(&r.slope)).chain(rest))?;
        }
        Ok(())
    })
}

pub fn thresholds_csv(rows: &[Threshold]) -> Result<Vec<u8>> {
    crate::durable::csv_bytes(|w| {
        w.write_record([
            "axis",
            "other_settings",
            "measure",
            "of",
            "under_collapse",
            "stable_from",
            "unstable_below",
            "not_collapsing_from",
            "collapsing_below",
            "ladder",
        ])?;
        for t in rows {
            w.write_record([
                t.axis.clone(),
                t.others.clone(),
                t.measure.clone(),
                t.kind.describe().to_string(),
                t.direction.name().to_string(),
                opt(t.stable_from),
                opt(t.unstable_below),
                opt(t.not_collapsing_from),
                opt(t.collapsing_below),
                t.ladder.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(" "),
            ])?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slopes_by_hand() {
        assert_eq!(slope(&[(1.0, 3.0), (2.0, 5.0), (3.0, 7.0)]), Some(2.0));
        assert_eq!(slope(&[(1.0, 3.0)]), None);
        assert_eq!(slope(&[(2.0, 3.0), (2.0, 4.0)]), None);
        let s = slope(&[(1.0, 1.0), (2.0, 0.0), (3.0, 1.0), (4.0, 0.0)]).unwrap();
        assert!((s + 0.2).abs() < 1e-12, "{s}");
    }
}
