//! Sharper statistics over a sweep's seeds: paired contrasts between cells, collapse
//! rates, and stability thresholds along a numeric axis.
//!
//! - **Paired contrast** (`contrasts.csv`). The cells of a sweep share generation 0 at
//!   each seed (the same R and, for cells whose generation 0 is configured alike, the
//!   same M_0), so for a cell c, its baseline b, a measure and a generation k the
//!   per-seed difference d_s = v_c(s) − v_b(s) removes what the seed shares. Its mean
//!   and 95% Student-t interval over the seeds that have both values. It is tighter than
//!   an unpaired interval only while the two cells stay positively correlated across
//!   seeds; after generation 0 it can be wider.
//! - **Collapse rate** (`rates.csv`). Per run, the least-squares slope of a measure
//!   over generations 1..N (per generation), and that slope over the run's value at
//!   generation 0 (relative, per generation); then their mean and 95% interval over
//!   seeds. A run needs at least two of those generations. Each rate is read
//!   ([`Reading`]): above or below 0, not shown to change (contains 0 and rules out a
//!   change over the run of a quarter of the generation-0 value), uninformative (contains 0 and
//!   rules out no such change), or no evidence (seeds tie or too few).
//! - **Threshold** (`thresholds.csv`). Along a numeric grid axis (λ, a temperature),
//!   among cells alike in every other axis, two monotone readings, each knowing which
//!   way the measure moves under collapse for each cell's sampler ([`direction_under`]:
//!   held-out perplexity climbs, precision falls, the reference's perplexity can go
//!   either way under a sharpening sampler). *Shown not to collapse* (`stable_from`):
//!   the smallest value from which every value's rate lies wholly on the safe side of 0.
//!   *Not shown to collapse* (`not_collapsing_from`): the smallest value from which every
//!   value's rate is informative and not on the collapse side. A measure that moves
//!   either way has no safe side, and for it the second reading means "not shown to
//!   change".
use super::aggregate::{cell_values, opt, seeds_text, summary_columns, Aggregate, Slot};
use super::cells::Sweep;
pub use super::measures::measures;
use super::measures::Kind;
use super::stats::Summary;
use anyhow::Result;

/// One row of `contrasts.csv`.
#[derive(Debug, Clone)]
pub struct ContrastRow {
    pub cell: usize,
    pub baseline: usize,
    pub measure: String,
    pub kind: Kind,
    pub generation: u32,
    pub summary: Summary,
    /// Welch's unpaired interval over the same seeds, to set beside the paired one.
    pub unpaired: Option<(f64, f64)>,
    pub seeds: Vec<u64>,
    pub missing: Vec<u64>,
}

/// Per-seed values of one cell: (seed, run values), from the aggregate.
fn cell_runs<'a>(sweep: &'a Sweep, agg: &'a Aggregate, cell: usize) -> Vec<(u64, &'a super::aggregate::RunValues)> {
    cell_values(sweep, &agg.per_run, cell)
}

/// Every cell but the baseline against it, per measure and generation.
pub fn contrasts(sweep: &Sweep, agg: &Aggregate, baseline: usize) -> Vec<ContrastRow> {
    let mut rows = Vec::new();
    for cell in (0..sweep.cells.len()).filter(|&c| c != baseline) {
        for (m, kind) in measures() {
            for k in 0..=sweep.spec.generations {
                rows.push(contrast(sweep, agg, cell, baseline, m, kind, k));
            }
        }
    }
    rows
}

/// The paired contrast of `cell` with `baseline` in `measure` at generation `k`, over
/// the seeds that have both values.
pub fn contrast(
    sweep: &Sweep,
    agg: &Aggregate,
    cell: usize,
    baseline: usize,
    measure: &str,
    kind: Kind,
    k: u32,
) -> ContrastRow {
    let base = cell_runs(sweep, agg, baseline);
    let key = (measure.to_string(), Slot::Generation(kind, k));
    // Paired by seed: a seed counts where both the cell's run and the baseline's have it.
    let (pairs, seeds, missing) = super::aggregate::per_seed(&cell_runs(sweep, agg, cell), |seed, v| {
        let b = base.iter().find(|(s, _)| *s == seed).and_then(|(_, bv)| bv.get(&key))?;
        Some((*v.get(&key)?, *b))
    });
    let diffs: Vec<f64> = pairs.iter().map(|(x, y)| x - y).collect();
    let (xs, ys): (Vec<f64>, Vec<f64>) = pairs.into_iter().unzip();
    ContrastRow {
        cell,
        baseline,
        measure: measure.to_string(),
        kind,
        generation: k,
        summary: Summary::of(&diffs),
        unpaired: super::stats::welch_interval(&xs, &ys),
        seeds,
        missing,
    }
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
    /// Mean generation-0 value over the seeds with a slope (the scale an informative
    /// interval is judged against, [`Reading`]).
    pub start: Option<f64>,
    /// Which way the measure moves under collapse for this cell's sampler.
    pub direction: Direction,
    pub seeds: Vec<u64>,
    pub missing: Vec<u64>,
}

impl RateRow {
    /// What the rate's interval supports: informative when it rules out a change over
    /// the run's generations of a quarter of the measure's generation-0 value.
    pub fn reading(&self) -> Reading {
        let scale = self.start.map(|v0| INFORMATIVE_SHARE * v0.abs() / self.to.max(1) as f64);
        Reading::of(&self.slope, scale)
    }
}

/// The rate of every measure of every cell over generations 1..N.
pub fn rates(sweep: &Sweep, agg: &Aggregate) -> Result<Vec<RateRow>> {
    let n = sweep.spec.generations;
    let mut rows = Vec::new();
    for cell in 0..sweep.cells.len() {
        let sampler = Sampler::of_cell(sweep, cell)?;
        for (m, kind) in measures() {
            let per_seed = seed_slopes(sweep, agg, cell, m, kind);
            let seeds: Vec<u64> = per_seed.iter().filter(|p| p.slope.is_some()).map(|p| p.seed).collect();
            let slopes: Vec<f64> = per_seed.iter().filter_map(|p| p.slope).collect();
            let starts: Vec<f64> = per_seed.iter().filter(|p| p.slope.is_some()).filter_map(|p| p.start).collect();
            let relative: Vec<f64> =
                per_seed.iter().filter_map(|p| Some(p.slope? / p.start.filter(|v0| *v0 != 0.0)?.abs())).collect();
            rows.push(RateRow {
                cell,
                measure: m.to_string(),
                kind,
                from: 1,
                to: n,
                slope: Summary::of(&slopes),
                relative: Summary::of(&relative),
                start: (starts.len() == seeds.len() && !starts.is_empty())
                    .then(|| starts.iter().sum::<f64>() / starts.len() as f64),
                direction: direction_under(m, sampler),
                missing: per_seed.iter().filter(|p| p.slope.is_none()).map(|p| p.seed).collect(),
                seeds,
            });
        }
    }
    Ok(rows)
}

/// One seed's rate of one measure.
#[derive(Debug, Clone, Copy)]
pub struct SeedSlope {
    pub seed: u64,
    /// Slope per generation over 1..N; None unless the run has every one of them.
    pub slope: Option<f64>,
    /// The run's generation-0 value.
    pub start: Option<f64>,
}

/// Per seed of `cell`, the least-squares slope of `measure` over generations 1..N.
pub fn seed_slopes(sweep: &Sweep, agg: &Aggregate, cell: usize, measure: &str, kind: Kind) -> Vec<SeedSlope> {
    let n = sweep.spec.generations;
    cell_runs(sweep, agg, cell)
        .into_iter()
        .map(|(seed, v)| {
            let at = |k: u32| v.get(&(measure.to_string(), Slot::Generation(kind, k))).copied();
            let points: Vec<(f64, f64)> = (1..=n).filter_map(|k| Some((k as f64, at(k)?))).collect();
            // Every generation 1..N must be there: a slope over part of a run is
            // another quantity.
            SeedSlope { seed, slope: slope(&points).filter(|_| points.len() == n as usize), start: at(0) }
        })
        .collect()
}

/// An interval containing 0 is informative when it rules out a change over the run of
/// this share of the measure's generation-0 value ([`RateRow::reading`]). A quarter:
/// the collapses the recipes show move held-out perplexity by about a fifth of its
/// generation-0 value over their runs (`replace`: +18.5 per generation over 4 on
/// 343.9), so an interval that cannot rule out a quarter cannot rule out the very
/// collapse being measured.
pub const INFORMATIVE_SHARE: f64 = 0.25;

/// What one interval supports, before any direction is given to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// No spread estimate: one seed, none, or seeds that tie exactly (sd = 0). An
    /// interval of width 0 from tied seeds is no evidence either way.
    NoEvidence,
    /// The interval lies wholly above 0.
    Above,
    /// The interval lies wholly below 0.
    Below,
    /// The interval contains 0 and rules out changes beyond its bounds: not shown to
    /// change (never "holds").
    NotShown,
    /// The interval contains 0 but is too wide to rule out a change as large as the
    /// measure's own scale: it says nothing.
    Uninformative,
}

impl Reading {
    /// The reading of `s`; `scale`, when given, is the size of change an interval
    /// containing 0 must rule out on both sides to be informative.
    pub fn of(s: &Summary, scale: Option<f64>) -> Reading {
        let (Some(lo), Some(hi)) = (s.low(), s.high()) else { return Reading::NoEvidence };
        if s.tied() {
            Reading::NoEvidence
        } else if lo > 0.0 {
            Reading::Above
        } else if hi < 0.0 {
            Reading::Below
        } else if scale.is_some_and(|c| lo < -c || hi > c) {
            Reading::Uninformative
        } else {
            Reading::NotShown
        }
    }
}

/// Which way a measure moves as a loop collapses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Perplexities, losses, divergences from the real data.
    Climbs,
    /// Quality and diversity: precision, recall, density, coverage, distinct tokens and
    /// n-grams.
    Falls,
    /// Either way, depending on the loop or the sampler (entropy, lengths, copying, the
    /// Zipf slope, tail mass; the reference's perplexity under a sharpening sampler).
    /// Read two-sided: a change either way is evidence of collapse, and stability is
    /// never shown, only "not shown to change".
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

    /// Whether a rate read `r` lies wholly on the safe side of 0 (never for `Either`).
    pub fn safe(self, r: Reading) -> bool {
        matches!((self, r), (Direction::Climbs, Reading::Below) | (Direction::Falls, Reading::Above))
    }

    /// Whether it lies wholly on the collapse side of 0.
    pub fn collapsing(self, r: Reading) -> bool {
        matches!(
            (self, r),
            (Direction::Climbs, Reading::Above)
                | (Direction::Falls, Reading::Below)
                | (Direction::Either, Reading::Above | Reading::Below)
        )
    }

    /// Whether a rate read `r` is informative evidence against collapse: on the safe
    /// side, or an informative interval containing 0.
    pub fn calm(self, r: Reading) -> bool {
        self.safe(r) || r == Reading::NotShown
    }

    /// A rate's reading in words, for this direction.
    pub fn word(self, r: Reading) -> &'static str {
        match r {
            Reading::NoEvidence => "no evidence",
            Reading::Uninformative => "uninformative",
            Reading::NotShown => "not shown to change",
            _ if self.collapsing(r) && self == Direction::Either => "changes",
            _ if self.collapsing(r) => "collapses",
            _ => "shown not to collapse",
        }
    }
}

/// How a cell samples: what can flip a measure's direction under collapse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sampler {
    /// T < 1, top-p < 1 or a top-k filter: the loop collapses onto few, typical outputs.
    pub sharpens: bool,
    /// T > 1: the loop spreads towards noise.
    pub flattens: bool,
}

impl Sampler {
    pub fn of(sample: &crate::config::SampleConfig) -> Sampler {
        Sampler {
            sharpens: sample.temperature < 1.0 || sample.top_p.is_some_and(|p| p < 1.0) || sample.top_k.is_some(),
            flattens: sample.temperature > 1.0,
        }
    }

    /// The sampler of a sweep's cell, from its config.
    pub fn of_cell(sweep: &Sweep, cell: usize) -> Result<Sampler> {
        let run = sweep.runs_of(cell).next().ok_or_else(|| anyhow::anyhow!("cell {cell} has no run"))?;
        Ok(Sampler::of(&sweep.run_config(run)?.0.sample))
    }
}

/// The way `measure` moves under collapse with an unbiased sampler (T = 1, no filter).
pub fn direction(measure: &str) -> Direction {
    direction_under(measure, Sampler::default())
}

/// The way `measure` moves under collapse for a cell sampled by `sampler`. A sharpening
/// sampler collapses onto text the reference finds typical, so the reference's
/// perplexity and the share beyond the real tail fall as the loop collapses; a
/// flattening one spreads onto noise, whose wide neighbourhoods cover the real passages
/// (recall) and which uses more distinct tokens and n-grams. Those become `Either`.
pub fn direction_under(measure: &str, sampler: Sampler) -> Direction {
    const FALLS: [&str; 4] = ["precision", "density", "coverage", "recall"];
    const DIVERSITY: [&str; 4] = ["distinct_tokens", "distinct_2", "distinct_3", "recall"];
    const CLIMBS: [&str; 7] = [
        "held_out_loss",
        "held_out_perplexity",
        "kl_real_gen_add_half",
        "kl_gen_real_add_half",
        "js_divergence",
        "total_variation",
        "synthetic_non_canonical_share",
    ];
    const TYPICALITY: [&str; 3] =
        ["reference_perplexity_median", "reference_beyond_real_p99", "reference_beyond_real_p99_excess"];
    if CLIMBS.contains(&measure) {
        Direction::Climbs
    } else if TYPICALITY.contains(&measure) {
        if sampler.sharpens {
            Direction::Either
        } else {
            Direction::Climbs
        }
    } else if FALLS.contains(&measure) || DIVERSITY.contains(&measure) {
        if sampler.flattens && DIVERSITY.contains(&measure) {
            Direction::Either
        } else {
            Direction::Falls
        }
    } else {
        Direction::Either
    }
}

/// One row of `thresholds.csv`: along `axis`, among cells alike in `others`.
///
/// Both readings are monotone: a value is a threshold only when every value at or
/// above it on the ladder passes, so a collapsing cell above it, or one whose interval
/// is uninformative or whose seeds tie, leaves no threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub axis: String,
    /// The other grid settings the cells share, "key = value, …" (empty when none).
    pub others: String,
    pub measure: String,
    pub kind: Kind,
    /// Which way the measure moves under collapse, per ladder value (it follows each
    /// cell's sampler).
    pub directions: Vec<Direction>,
    /// What each value's rate interval supports, per ladder value.
    pub readings: Vec<Reading>,
    /// The smallest value from which every value's rate lies wholly on the safe side
    /// of 0 (None: the largest does not, or the measure has no safe side).
    pub stable_from: Option<f64>,
    /// The value just below it (None: the smallest value is already stable).
    pub unstable_below: Option<f64>,
    /// The smallest value from which every value's rate is informative and not on the
    /// collapse side (None: the largest value's is not).
    pub not_collapsing_from: Option<f64>,
    /// The value just below it, when its rate is shown to collapse (None otherwise:
    /// then what lies below the threshold is not shown either way).
    pub collapsing_below: Option<f64>,
    /// Values on the ladder, ascending.
    pub ladder: Vec<f64>,
}

impl Threshold {
    /// `under_collapse` in words: one direction, or one per ladder value when they differ.
    pub fn direction_text(&self) -> String {
        if self.directions.windows(2).all(|w| w[0] == w[1]) {
            self.directions.first().map_or("", |d| d.name()).to_string()
        } else {
            self.directions.iter().map(|d| d.name()).collect::<Vec<_>>().join(" ")
        }
    }

    /// The reading of every ladder value, "value: word; …".
    pub fn readings_text(&self) -> String {
        self.ladder
            .iter()
            .zip(self.directions.iter().zip(&self.readings))
            .map(|(x, (d, r))| format!("{x}: {}", d.word(*r)))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The smallest index from which every index passes `ok` (None: the last does not).
fn monotone_from(len: usize, ok: impl Fn(usize) -> bool) -> Option<usize> {
    let mut i = len;
    while i > 0 && ok(i - 1) {
        i -= 1;
    }
    (i < len).then_some(i)
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
            let others = sweep.others_text(i, &axis);
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
                let rows: Option<Vec<&RateRow>> = ladder
                    .iter()
                    .map(|&(_, c)| rates.iter().find(|r| r.cell == c && r.measure == m && r.kind == kind))
                    .collect();
                let Some(rows) = rows.filter(|rows| rows.iter().all(|r| r.slope.n > 0)) else { continue };
                let directions: Vec<Direction> = rows.iter().map(|r| r.direction).collect();
                let readings: Vec<Reading> = rows.iter().map(|r| r.reading()).collect();
                let stable = monotone_from(ladder.len(), |i| directions[i].safe(readings[i]));
                let calm = monotone_from(ladder.len(), |i| directions[i].calm(readings[i]));
                let below = |i: Option<usize>| i.and_then(|i| i.checked_sub(1));
                out.push(Threshold {
                    axis: super::spec::named_axis(&axis).unwrap_or(&axis).to_string(),
                    others: others.clone(),
                    measure: m.to_string(),
                    kind,
                    stable_from: stable.map(|i| ladder[i].0),
                    unstable_below: below(stable).map(|i| ladder[i].0),
                    not_collapsing_from: calm.map(|i| ladder[i].0),
                    collapsing_below: below(calm)
                        .filter(|&i| directions[i].collapsing(readings[i]))
                        .map(|i| ladder[i].0),
                    directions,
                    readings,
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
            "spread",
            "seeds",
            "missing_seeds",
            "unpaired_ci95_low",
            "unpaired_ci95_high",
            "reading",
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
            let reading = match Reading::of(&r.summary, None) {
                Reading::NoEvidence => "no evidence",
                Reading::Above => "above the baseline",
                Reading::Below => "below the baseline",
                _ => "not shown to differ",
            };
            let rest = [
                seeds_text(&r.seeds),
                seeds_text(&r.missing),
                opt(r.unpaired.map(|u| u.0)),
                opt(r.unpaired.map(|u| u.1)),
                reading.to_string(),
            ];
            w.write_record(cells.into_iter().chain(summary_columns(&r.summary)).chain(rest))?;
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
            "spread",
            "mean_relative_slope",
            "relative_ci95_low",
            "relative_ci95_high",
            "seeds",
            "missing_seeds",
            "under_collapse",
            "reading",
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
                r.direction.name().to_string(),
                r.direction.word(r.reading()).to_string(),
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
            "readings",
        ])?;
        for t in rows {
            w.write_record([
                t.axis.clone(),
                t.others.clone(),
                t.measure.clone(),
                t.kind.describe().to_string(),
                t.direction_text(),
                opt(t.stable_from),
                opt(t.unstable_below),
                opt(t.not_collapsing_from),
                opt(t.collapsing_below),
                t.ladder.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(" "),
                t.readings_text(),
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
