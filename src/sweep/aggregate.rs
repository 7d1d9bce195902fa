//! Pooling a sweep's runs over seeds: per cell, measure and generation, the mean,
//! standard deviation, n and 95% Student-t interval (`summary.csv`), and the change
//! from generation 0 to N with its interval, from per-seed differences (`changes.csv`).
//!
//! A seed whose run lacks a value (not started, failed, still running, an older
//! table without the column) is left out of that row's n and named in its
//! `missing_seeds` column: nothing is averaged over silently.
use super::cells::Sweep;
use super::measures::Kind;
use super::measures::{range_of, CHANGE_MEASURES, DRIFT_MEASURES, MANIFOLD, MODEL_MEASURES};
use super::stats::Summary;
use super::tables::{number, read_csv};
use crate::durable::write_atomic;
use crate::layout::Layout;
use anyhow::Result;
use std::collections::BTreeMap;

/// Per seed of `runs`, the value `of` finds for it (from the seed and its run's
/// values): the values with their seeds,
/// and the seeds without one (named, never averaged over silently).
pub(super) fn per_seed<T>(
    runs: &[(u64, &RunValues)],
    of: impl Fn(u64, &RunValues) -> Option<T>,
) -> (Vec<T>, Vec<u64>, Vec<u64>) {
    let (mut values, mut seeds, mut missing) = (Vec::new(), Vec::new(), Vec::new());
    for &(seed, v) in runs {
        match of(seed, v) {
            Some(x) => {
                values.push(x);
                seeds.push(seed);
            }
            None => missing.push(seed),
        }
    }
    (values, seeds, missing)
}

/// The seeds of `cell` with their values, in `Sweep::runs` order.
pub(super) fn cell_values<'a>(sweep: &'a Sweep, per_run: &'a [RunValues], cell: usize) -> Vec<(u64, &'a RunValues)> {
    sweep.runs.iter().zip(per_run).filter(|(r, _)| r.cell == cell).map(|(r, v)| (r.seed, v)).collect()
}

/// Where a pooled value sits: a model or sampled corpus of generation k, or a
/// generation-free reference corpus (noise floor `real-sample…`, `real-train`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Slot {
    Generation(Kind, u32),
    Reference(String),
}

/// Every value one run left: (measure, slot) → value.
pub type RunValues = BTreeMap<(String, Slot), f64>;

/// Reads what a run left in `analysis/RUN/` (an empty map when nothing yet).
pub fn run_values(layout: &Layout, run: &str) -> Result<RunValues> {
    let mut values = RunValues::new();
    for row in read_csv(&layout.generations_csv(run))?.unwrap_or_default() {
        let Some(k) = row.get("generation").and_then(|g| g.trim().parse::<u32>().ok()) else { continue };
        // Rows written before the corpora were scored hold 0 there: no value, not 0.
        let scored = number(&row, "reference_perplexity_median").is_some_and(|v| v > 0.0);
        for m in MODEL_MEASURES {
            let score = m.starts_with("reference_") || m.starts_with("self_") || MANIFOLD.contains(&m);
            if let Some(v) = number(&row, m).filter(|v| (scored || !score) && v.is_finite()) {
                values.insert((m.to_string(), Slot::Generation(Kind::Model, k)), v);
            }
        }
    }
    for row in read_csv(&layout.drift_csv(run))?.unwrap_or_default() {
        let Some(corpus) = row.get("corpus").map(|c| c.trim().to_string()) else { continue };
        let slot = if let Some(kk) = corpus.strip_prefix("gen-").and_then(|n| n.parse::<u32>().ok()) {
            if kk == 0 {
                continue;
            }
            Slot::Generation(Kind::Corpus, kk - 1)
        } else if corpus == "real-train" || corpus.starts_with("real-sample") {
            // The noise floor's precision and recall sit beside its drift measures.
            if let Some(floor) = crate::scoring::read_floor(layout, run)?.filter(|_| corpus != "real-train") {
                for (i, m) in MANIFOLD.iter().enumerate() {
                    let v = floor.mean(i);
                    if v.is_finite() {
                        values.insert((m.to_string(), Slot::Reference(corpus.clone())), v);
                    }
                }
            }
            Slot::Reference(corpus)
        } else {
            continue;
        };
        for m in DRIFT_MEASURES {
            // NaN: a measure this run's lmloop did not take (a missing value, not a number).
            if let Some(v) = number(&row, m).filter(|v| v.is_finite()) {
                values.insert((m.to_string(), slot.clone()), v);
            }
        }
    }
    Ok(values)
}

/// One row of `summary.csv`.
#[derive(Debug, Clone)]
pub struct SummaryRow {
    pub cell: usize,
    pub measure: String,
    pub slot: Slot,
    pub summary: Summary,
    pub seeds: Vec<u64>,
    pub missing: Vec<u64>,
}

/// One row of `changes.csv`: value at generation N minus value at generation 0, per seed.
#[derive(Debug, Clone)]
pub struct ChangeRow {
    pub cell: usize,
    pub measure: String,
    pub kind: Kind,
    pub from: u32,
    pub to: u32,
    pub summary: Summary,
    pub seeds: Vec<u64>,
    pub missing: Vec<u64>,
}

/// The pooled sweep.
pub struct Aggregate {
    pub rows: Vec<SummaryRow>,
    pub changes: Vec<ChangeRow>,
    /// Values per run, in `Sweep::runs` order.
    pub per_run: Vec<RunValues>,
    /// Runs left out because an artifact is damaged (`lmloop verify`), with the first
    /// damage found.
    pub damaged: Vec<(String, String)>,
}

impl Aggregate {
    pub fn row(&self, cell: usize, measure: &str, slot: &Slot) -> Option<&SummaryRow> {
        self.rows.iter().find(|r| r.cell == cell && r.measure == measure && &r.slot == slot)
    }
}

pub fn aggregate(layout: &Layout, sweep: &Sweep) -> Result<Aggregate> {
    // A run with a damaged artifact gives no values: its seeds count as missing.
    let mut damaged = Vec::new();
    let mut per_run: Vec<RunValues> = Vec::new();
    for r in &sweep.runs {
        if layout.run_toml(&r.name).exists() {
            let check = crate::verify::verify_run(layout, &r.name)?;
            if let Some(first) = check.damaged.first() {
                damaged.push((r.name.clone(), first.clone()));
                per_run.push(RunValues::new());
                continue;
            }
        }
        per_run.push(run_values(layout, &r.name)?);
    }
    let n = sweep.spec.generations;
    let mut rows = Vec::new();
    let mut changes = Vec::new();
    for cell in 0..sweep.cells.len() {
        let runs = cell_values(sweep, &per_run, cell);
        let pool = |measure: &str, slot: &Slot| -> (Summary, Vec<u64>, Vec<u64>) {
            let key = (measure.to_string(), slot.clone());
            let (vals, seeds, missing) = per_seed(&runs, |_, v| v.get(&key).copied());
            (Summary::of(&vals), seeds, missing)
        };
        let mut push = |measure: &str, slot: Slot| {
            let (summary, seeds, missing) = pool(measure, &slot);
            let summary = summary.within(range_of(measure));
            rows.push(SummaryRow { cell, measure: measure.to_string(), slot, summary, seeds, missing });
        };
        for m in MODEL_MEASURES {
            for k in 0..=n {
                push(m, Slot::Generation(Kind::Model, k));
            }
        }
        for m in DRIFT_MEASURES {
            for k in 0..=n {
                push(m, Slot::Generation(Kind::Corpus, k));
            }
        }
        // Reference corpora any seed of this cell reported.
        let references: std::collections::BTreeSet<String> = runs
            .iter()
            .flat_map(|(_, v)| {
                v.keys().filter_map(|(_, s)| if let Slot::Reference(c) = s { Some(c.clone()) } else { None })
            })
            .collect();
        for corpus in references {
            for m in DRIFT_MEASURES.iter().chain(MANIFOLD.iter()) {
                push(m, Slot::Reference(corpus.clone()));
            }
        }
        for (m, kind) in CHANGE_MEASURES {
            let (diffs, seeds, missing) = per_seed(&runs, |_, v| {
                let at = |k: u32| v.get(&(m.to_string(), Slot::Generation(kind, k))).copied();
                Some(at(n)? - at(0)?)
            });
            changes.push(ChangeRow {
                cell,
                measure: m.to_string(),
                kind,
                from: 0,
                to: n,
                summary: Summary::of(&diffs),
                seeds,
                missing,
            });
        }
    }
    Ok(Aggregate { rows, changes, per_run, damaged })
}

/// A number's CSV text, empty for none.
pub(super) fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x}")).unwrap_or_default()
}

/// The `n`, `mean`, `sd`, `ci95_low` and `ci95_high` columns of a summary, as every
/// sweep table writes them.
/// The `spread` column after them says whether the interval means anything:
/// `estimated`, `seeds tie` (sd = 0: an interval of width 0 is no evidence), `one seed`
/// or `none`.
pub(super) fn summary_columns(s: &Summary) -> [String; 6] {
    [s.n.to_string(), opt(s.mean), opt(s.sd), opt(s.low()), opt(s.high()), spread(s).to_string()]
}

/// The `spread` column of a summary.
pub(super) fn spread(s: &Summary) -> &'static str {
    match s.n {
        0 => "none",
        1 => "one seed",
        _ if s.tied() => "seeds tie",
        _ => "estimated",
    }
}

/// Seeds as the tables list them: space-separated.
pub(super) fn seeds_text(seeds: &[u64]) -> String {
    seeds.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(" ")
}

/// `generation` and `corpus` columns of a slot.
fn slot_columns(slot: &Slot) -> (String, String) {
    match slot {
        Slot::Generation(Kind::Model, k) => (k.to_string(), String::new()),
        Slot::Generation(Kind::Corpus, k) => (k.to_string(), crate::layout::gen_name(k + 1)),
        Slot::Reference(c) => (String::new(), c.clone()),
    }
}

/// `summary.csv`: one row per cell, measure and generation (or reference corpus).
///
/// `generation` is k; for corpus measures `corpus` is `gen-KK`, S_KK sampled by
/// model k = KK−1; reference rows (`real-sample…` noise floor, `real-train`) have
/// no generation.
pub fn summary_csv(sweep: &Sweep, agg: &Aggregate) -> Result<Vec<u8>> {
    crate::durable::csv_bytes(|w| {
        w.write_record([
            "cell",
            "label",
            "policy",
            "real_fraction",
            "measure",
            "generation",
            "corpus",
            "n",
            "mean",
            "sd",
            "ci95_low",
            "ci95_high",
            "spread",
            "seeds",
            "missing_seeds",
        ])?;
        for r in &agg.rows {
            let cell = &sweep.cells[r.cell];
            let (generation, corpus) = slot_columns(&r.slot);
            let cells = [
                cell.id.clone(),
                cell.label.clone(),
                cell.policy.clone(),
                opt(cell.real_fraction),
                r.measure.clone(),
                generation,
                corpus,
            ];
            let seeds = [seeds_text(&r.seeds), seeds_text(&r.missing)];
            w.write_record(cells.into_iter().chain(summary_columns(&r.summary)).chain(seeds))?;
        }
        Ok(())
    })
}

/// `changes.csv`: per cell and measure, the mean over seeds of (value at N − value at 0).
pub fn changes_csv(sweep: &Sweep, agg: &Aggregate) -> Result<Vec<u8>> {
    crate::durable::csv_bytes(|w| {
        w.write_record([
            "cell",
            "label",
            "measure",
            "of",
            "from_generation",
            "to_generation",
            "n",
            "mean_change",
            "sd",
            "ci95_low",
            "ci95_high",
            "spread",
            "seeds",
            "missing_seeds",
        ])?;
        for c in &agg.changes {
            let cell = &sweep.cells[c.cell];
            let of = c.kind.describe();
            let cells = [
                cell.id.clone(),
                cell.label.clone(),
                c.measure.clone(),
                of.to_string(),
                c.from.to_string(),
                c.to.to_string(),
            ];
            let seeds = [seeds_text(&c.seeds), seeds_text(&c.missing)];
            w.write_record(cells.into_iter().chain(summary_columns(&c.summary)).chain(seeds))?;
        }
        Ok(())
    })
}

/// Writes `summary.csv` and `changes.csv` into the sweep's folder.
pub fn write_tables(paths: &crate::layout::SweepPaths, sweep: &Sweep, agg: &Aggregate) -> Result<()> {
    write_atomic(&paths.summary_csv(), &summary_csv(sweep, agg)?)?;
    write_atomic(&paths.changes_csv(), &changes_csv(sweep, agg)?)
}
