//! Verdicts on the claims a sweep file names before it runs (`[[claim]]`, see
//! [`super::spec`]): one line per claim, computed by the reading rules of
//! [`super::contrasts`], written to `verdicts.csv`, the report and `sweep report`'s
//! output.
//!
//! Each claim has one primary measure; its verdict is one of
//! - **shown**: the interval shows what the claim says (a rate wholly on the collapse
//!   side for "collapses", wholly on the safe side for "does not collapse"; a paired
//!   contrast wholly above or below 0; a ladder value from which every rate is on the
//!   safe side);
//! - **bounded** (for "does not collapse" and thresholds only): not shown to collapse,
//!   with the bound the interval rules out; it never says the measure holds;
//! - **not shown**: the interval contains 0 (with its bounds when informative);
//! - **contradicted**: the interval lies wholly on the other side;
//! - **no evidence**: the seeds tie (sd = 0), or fewer than two have the value.
//!
//! A recipe reads many intervals at 95%, so the verdict is also given
//! Bonferroni-adjusted over the file's m claims: each interval at 1 − 0.05/m, which
//! holds the m primary readings at 95% together. Secondary measures are read the same
//! way, at 95%, and reported beside the verdict; they are never adjusted and never the
//! verdict.
use super::aggregate::Aggregate;
use super::cells::Sweep;
use super::contrasts::{contrast, seed_slopes, thresholds, Direction, RateRow, Reading, Threshold};
use super::measures::kind_of;
use super::spec::{Claim, ClaimTest};
use super::stats::{Summary, CONFIDENCE};
use anyhow::{Context, Result};

/// What an interval says about a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Shown,
    Bounded,
    NotShown,
    Contradicted,
    NoEvidence,
}

impl Outcome {
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Shown => "shown",
            Outcome::Bounded => "bounded",
            Outcome::NotShown => "not shown",
            Outcome::Contradicted => "contradicted",
            Outcome::NoEvidence => "no evidence",
        }
    }
}

/// One measure's reading under a claim's test, at one confidence level.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    pub measure: String,
    pub outcome: Outcome,
    /// The estimate and its interval in words, e.g. "rate +18.5 per generation (9.7 to
    /// 27.3): climbs".
    pub text: String,
    /// The interval (None for a threshold, or without one).
    pub interval: Option<(f64, f64)>,
    pub estimate: Option<f64>,
}

/// The verdict on one claim.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// "claim 2" (or "claim" when the file names one).
    pub label: String,
    pub claim: Claim,
    /// The cells the claim reads, as labels ("replace", or "replace vs real").
    pub cells: String,
    /// At 95%.
    pub primary: Evidence,
    /// Bonferroni over the file's claims (the same as `primary` with one claim).
    pub adjusted: Evidence,
    /// The confidence of the adjusted reading, 1 − 0.05/m.
    pub adjusted_level: f64,
    /// m: the claims the sweep file names.
    pub claims: usize,
    pub secondary: Vec<Evidence>,
}

impl Verdict {
    /// The verdict in one line, as the report prints it and the README quotes it.
    pub fn line(&self) -> String {
        let m = self.claims;
        let adjusted = if m > 1 {
            format!(
                "; Bonferroni over {m} claims ({}%): {}",
                percent(self.adjusted_level),
                self.adjusted.outcome.word()
            )
        } else {
            String::new()
        };
        let secondary = if self.secondary.is_empty() {
            String::new()
        } else {
            let parts: Vec<String> = self.secondary.iter().map(|e| format!("{} {}", e.measure, e.text)).collect();
            format!(" Secondary (95%, unadjusted): {}.", parts.join("; "))
        };
        format!(
            "{} [{}{adjusted}] {} — {} of {}: {}.{secondary}",
            self.label,
            self.primary.outcome.word(),
            self.claim.says.trim_end_matches('.'),
            self.claim.measure,
            self.cells,
            self.primary.text,
        )
    }
}

/// "98.75" for 0.9875: as many decimals as the level needs, at most 4.
pub(super) fn percent(level: f64) -> String {
    let p = format!("{:.4}", level * 100.0);
    p.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Three significant digits of the largest magnitude among `xs`, the same decimals for
/// all; `signed` puts a + before positive values.
fn numbers(xs: &[f64], signed: bool) -> Vec<String> {
    let big = xs.iter().fold(0.0_f64, |a, x| a.max(x.abs()));
    let digits = if big > 0.0 { (2 - big.log10().floor() as i32).clamp(0, 5) as usize } else { 1 };
    xs.iter().map(|x| if signed && *x > 0.0 { format!("+{x:.digits$}") } else { format!("{x:.digits$}") }).collect()
}

/// "n = 3: no evidence (…)" for a summary without a spread estimate.
fn no_evidence(s: &Summary) -> String {
    let why = if s.tied() { "the seeds tie, sd = 0" } else { "fewer than two seeds" };
    format!("n = {}: no evidence ({why})", s.n)
}

/// The verdict on every claim of the sweep file, in its order.
pub fn verdicts(sweep: &Sweep, agg: &Aggregate, rates: &[RateRow]) -> Result<Vec<Verdict>> {
    let m = sweep.spec.claims.len().max(1);
    let adjusted_level = 1.0 - (1.0 - CONFIDENCE) / m as f64;
    let mut out = Vec::new();
    for (i, claim) in sweep.spec.claims.iter().enumerate() {
        let label = sweep.claim_label(i);
        let read = |measure: &str, level: f64| evidence(sweep, agg, rates, claim, measure, level);
        out.push(Verdict {
            cells: cells_text(sweep, claim)?,
            primary: read(&claim.measure, CONFIDENCE).with_context(|| label.clone())?,
            adjusted: read(&claim.measure, adjusted_level).with_context(|| label.clone())?,
            adjusted_level,
            claims: m,
            secondary: claim
                .secondary
                .iter()
                .map(|s| read(s, CONFIDENCE))
                .collect::<Result<Vec<_>>>()
                .with_context(|| label.clone())?,
            label,
            claim: claim.clone(),
        });
    }
    Ok(out)
}

/// The cells a claim reads, by label.
fn cells_text(sweep: &Sweep, claim: &Claim) -> Result<String> {
    let label = |c: usize| sweep.cells[c].label.clone();
    Ok(match claim.test {
        ClaimTest::Threshold => {
            let ladder = sweep.ladder(claim)?;
            let axis = claim.axis.as_deref().unwrap_or_default();
            let name = super::spec::named_axis(axis).unwrap_or(axis);
            let others = sweep.others_text(ladder[0].1, axis);
            let values: Vec<String> = ladder.iter().map(|l| l.0.to_string()).collect();
            if others.is_empty() {
                format!("{name} = {}", values.join(", "))
            } else {
                format!("{name} = {} ({others})", values.join(", "))
            }
        }
        t if t.pairs() => {
            let (cell, than) = sweep.claim_pair(claim, "claim")?;
            format!("{} against {}", label(cell), label(than))
        }
        _ => label(sweep.one_cell(&claim.cell, "claim")?),
    })
}

/// `measure` read under `claim`'s test at two-sided `level`.
fn evidence(
    sweep: &Sweep,
    agg: &Aggregate,
    rates: &[RateRow],
    claim: &Claim,
    measure: &str,
    level: f64,
) -> Result<Evidence> {
    let kind = kind_of(measure).with_context(|| format!("sweeps do not pool {measure}"))?;
    let rate_of = |cell: usize| -> Result<RateRow> {
        let row = rates
            .iter()
            .find(|r| r.cell == cell && r.measure == measure && r.kind == kind)
            .with_context(|| format!("no rate of {measure} for cell {}", sweep.cells[cell].label))?;
        Ok(RateRow { slope: row.slope.clone().at(level), ..row.clone() })
    };
    Ok(match claim.test {
        ClaimTest::Above | ClaimTest::Below => {
            let (cell, than) = sweep.claim_pair(claim, "claim")?;
            let row = contrast(sweep, agg, cell, than, measure, kind, claim.generation);
            contrast_evidence(measure, &row.summary.at(level), claim.test == ClaimTest::Above, claim.generation)
        }
        ClaimTest::Faster | ClaimTest::Slower => {
            let (cell, than) = sweep.claim_pair(claim, "claim")?;
            let (a, b) = (rate_of(cell)?, rate_of(than)?);
            let slopes = |c: usize| seed_slopes(sweep, agg, c, measure, kind);
            let theirs = slopes(than);
            let diffs: Vec<f64> = slopes(cell)
                .iter()
                .filter_map(|p| Some(p.slope? - theirs.iter().find(|q| q.seed == p.seed)?.slope?))
                .collect();
            let side = (a.direction == b.direction).then_some(a.direction);
            rate_difference_evidence(measure, &Summary::of(&diffs).at(level), side, claim.test == ClaimTest::Faster)
        }
        ClaimTest::Threshold => {
            let ladder = sweep.ladder(claim)?;
            let rows = ladder.iter().map(|&(_, c)| rate_of(c)).collect::<Result<Vec<_>>>()?;
            let axis = claim.axis.as_deref().unwrap_or_default();
            let others = sweep.others_text(ladder[0].1, axis);
            let name = super::spec::named_axis(axis).unwrap_or(axis);
            let found = thresholds(sweep, &rows).into_iter().find(|t| t.axis == name && t.others == others);
            let t = found.with_context(|| format!("no ladder of {measure} along {name} has a rate in every cell"))?;
            threshold_evidence(&t)
        }
        test => rate_evidence(&rate_of(sweep.one_cell(&claim.cell, "claim")?)?, test),
    })
}

/// A rate under "collapses", "does not collapse", "rises" or "falls".
fn rate_evidence(row: &RateRow, test: ClaimTest) -> Evidence {
    let reading = row.reading();
    let d = row.direction;
    let s = &row.slope;
    let interval = s.low().zip(s.high());
    // (what the claim says, its opposite) for a reading on one side.
    let (says, opposite) = match test {
        ClaimTest::Collapses => (d.collapsing(reading), d.safe(reading)),
        ClaimTest::DoesNotCollapse => (d.safe(reading), d.collapsing(reading)),
        ClaimTest::Rises => (reading == Reading::Above, reading == Reading::Below),
        _ => (reading == Reading::Below, reading == Reading::Above),
    };
    let outcome = match reading {
        Reading::NoEvidence => Outcome::NoEvidence,
        _ if says => Outcome::Shown,
        _ if opposite => Outcome::Contradicted,
        Reading::NotShown if test == ClaimTest::DoesNotCollapse => Outcome::Bounded,
        _ => Outcome::NotShown,
    };
    let sided = matches!(test, ClaimTest::Rises | ClaimTest::Falls);
    let text = match (s.mean, interval) {
        (Some(m), Some((lo, hi))) if reading != Reading::NoEvidence => {
            let n = numbers(&[m, lo, hi], true);
            format!(
                "rate {} per generation over generations {}..{} ({} to {}, n = {}): {}",
                n[0],
                row.from,
                row.to,
                n[1],
                n[2],
                s.n,
                rate_words(if sided { None } else { Some(d) }, reading, &n[1], &n[2])
            )
        }
        (Some(m), _) => format!("rate {} per generation, {}", numbers(&[m], true)[0], no_evidence(s)),
        _ => "no rate: no seed has every generation 1..N".to_string(),
    };
    Evidence { measure: row.measure.clone(), outcome, text, interval, estimate: s.mean }
}

/// What a rate's reading says, with the bound an informative interval rules out; in
/// the measure's direction under collapse, or by sign alone (`None`).
fn rate_words(d: Option<Direction>, r: Reading, lo: &str, hi: &str) -> String {
    match (r, d) {
        (Reading::NotShown, Some(Direction::Climbs)) => {
            format!("not shown to climb; rules out a climb faster than {hi}")
        }
        (Reading::NotShown, Some(Direction::Falls)) => format!("not shown to fall; rules out a fall faster than {lo}"),
        (Reading::NotShown, _) => format!("not shown to change; rules out a change outside {lo} to {hi}"),
        (Reading::Uninformative, _) => format!(
            "uninformative (it admits a change over the run of more than {}% of generation 0's value)",
            (super::contrasts::INFORMATIVE_SHARE * 100.0).round()
        ),
        (Reading::Above, None) => "rises".into(),
        (Reading::Below, None) => "falls".into(),
        (_, Some(Direction::Either)) => "changes (the measure can move either way under collapse)".into(),
        (r, Some(d)) if d.collapsing(r) => (if d == Direction::Climbs { "climbs" } else { "falls" }).into(),
        _ => "shown not to collapse".into(),
    }
}

/// The per-seed difference of two cells' rates under "faster" (`claims_faster`) or
/// "slower"; `side` is the measure's direction under collapse in both cells (None when
/// they differ).
fn rate_difference_evidence(measure: &str, s: &Summary, side: Option<Direction>, claims_faster: bool) -> Evidence {
    let reading = Reading::of(s, None);
    let interval = s.low().zip(s.high());
    let collapse_side = match side {
        Some(Direction::Climbs) => Some(Reading::Above),
        Some(Direction::Falls) => Some(Reading::Below),
        _ => None,
    };
    let outcome = match (reading, collapse_side) {
        (Reading::NoEvidence, _) => Outcome::NoEvidence,
        (_, None) => Outcome::NotShown,
        (r @ (Reading::Above | Reading::Below), Some(c)) if (r == c) == claims_faster => Outcome::Shown,
        (Reading::Above | Reading::Below, _) => Outcome::Contradicted,
        _ => Outcome::NotShown,
    };
    let text = match (s.mean, interval) {
        (Some(m), Some((lo, hi))) if reading != Reading::NoEvidence => {
            let n = numbers(&[m, lo, hi], true);
            let word = match (reading, collapse_side) {
                (_, None) => {
                    "the measure can move either way under collapse here, so neither rate is the faster collapse"
                        .to_string()
                }
                (r @ (Reading::Above | Reading::Below), Some(c)) => {
                    (if r == c { "collapses faster" } else { "collapses more slowly" }).to_string()
                }
                _ => format!("not shown to differ; rules out a difference outside {} to {}", n[1], n[2]),
            };
            format!(
                "difference of the rates, paired by seed, {} per generation ({} to {}, n = {}): {word}",
                n[0], n[1], n[2], s.n
            )
        }
        (Some(m), _) => {
            format!("difference of the rates {} per generation, {}", numbers(&[m], true)[0], no_evidence(s))
        }
        _ => "no difference of rates: no seed has both rates".to_string(),
    };
    Evidence { measure: measure.to_string(), outcome, text, interval, estimate: s.mean }
}

/// A paired contrast under "above" (`claims_above`) or "below".
fn contrast_evidence(measure: &str, s: &Summary, claims_above: bool, generation: u32) -> Evidence {
    let reading = Reading::of(s, None);
    let interval = s.low().zip(s.high());
    let outcome = match reading {
        Reading::NoEvidence => Outcome::NoEvidence,
        Reading::Above if claims_above => Outcome::Shown,
        Reading::Below if !claims_above => Outcome::Shown,
        Reading::Above | Reading::Below => Outcome::Contradicted,
        _ => Outcome::NotShown,
    };
    let text = match (s.mean, interval) {
        (Some(m), Some((lo, hi))) if reading != Reading::NoEvidence => {
            let n = numbers(&[m, lo, hi], true);
            let word = match reading {
                Reading::Above => "above".to_string(),
                Reading::Below => "below".to_string(),
                _ => format!("not shown to differ; rules out a difference outside {} to {}", n[1], n[2]),
            };
            format!("paired contrast at generation {generation} {} ({} to {}, n = {}): {word}", n[0], n[1], n[2], s.n)
        }
        (Some(m), _) => {
            format!("paired contrast at generation {generation} {}, {}", numbers(&[m], true)[0], no_evidence(s))
        }
        _ => format!("no paired contrast: no seed has both values at generation {generation}"),
    };
    Evidence { measure: measure.to_string(), outcome, text, interval, estimate: s.mean }
}

/// A threshold claim: shown when some value is shown not to collapse from there up,
/// bounded when some value is only not shown to collapse, contradicted when every value
/// on the ladder collapses.
fn threshold_evidence(t: &Threshold) -> Evidence {
    let collapsing = |i: usize| t.directions[i].collapsing(t.readings[i]);
    let outcome = if t.readings.iter().all(|r| *r == Reading::NoEvidence) {
        Outcome::NoEvidence
    } else if t.stable_from.is_some() {
        Outcome::Shown
    } else if t.not_collapsing_from.is_some() {
        Outcome::Bounded
    } else if (0..t.ladder.len()).all(collapsing) {
        Outcome::Contradicted
    } else {
        Outcome::NotShown
    };
    let head = match (t.stable_from, t.not_collapsing_from) {
        (Some(x), _) => format!("shown not to collapse from {} = {x} on", t.axis),
        (None, Some(x)) => format!("not shown to collapse from {} = {x} on", t.axis),
        _ => "no threshold".to_string(),
    };
    let below = t.collapsing_below.map(|x| format!(", collapses at {x}")).unwrap_or_default();
    Evidence {
        measure: t.measure.clone(),
        outcome,
        text: format!("{head}{below} ({})", t.readings_text()),
        interval: None,
        estimate: t.stable_from.or(t.not_collapsing_from),
    }
}

/// `verdicts.csv`: one row per claim.
pub fn verdicts_csv(rows: &[Verdict]) -> Result<Vec<u8>> {
    let opt = super::aggregate::opt;
    crate::durable::csv_bytes(|w| {
        w.write_record([
            "claim",
            "says",
            "test",
            "measure",
            "cells",
            "estimate",
            "ci95_low",
            "ci95_high",
            "verdict",
            "adjusted_level",
            "adjusted_low",
            "adjusted_high",
            "adjusted_verdict",
            "reading",
            "secondary",
            "line",
        ])?;
        for v in rows {
            let secondary: Vec<String> =
                v.secondary.iter().map(|e| format!("{}: {} ({})", e.measure, e.outcome.word(), e.text)).collect();
            w.write_record([
                v.label.clone(),
                v.claim.says.clone(),
                v.claim.test.name().to_string(),
                v.claim.measure.clone(),
                v.cells.clone(),
                opt(v.primary.estimate),
                opt(v.primary.interval.map(|i| i.0)),
                opt(v.primary.interval.map(|i| i.1)),
                v.primary.outcome.word().to_string(),
                format!("{:.6}", v.adjusted_level).trim_end_matches('0').to_string(),
                opt(v.adjusted.interval.map(|i| i.0)),
                opt(v.adjusted.interval.map(|i| i.1)),
                v.adjusted.outcome.word().to_string(),
                v.primary.text.clone(),
                secondary.join("; "),
                v.line(),
            ])?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_three_significant_digits_alike() {
        assert_eq!(numbers(&[18.5, 9.71, 27.33], true), ["+18.5", "+9.7", "+27.3"]);
        assert_eq!(numbers(&[-0.0826, -0.138, -0.0271], true), ["-0.083", "-0.138", "-0.027"]);
        assert_eq!(numbers(&[2478.0, 548.2, 4408.0], false), ["2478", "548", "4408"]);
        assert_eq!(percent(0.9875), "98.75");
        assert_eq!(percent(0.95), "95");
    }
}
