//! Tail survival across seeds, beside the exact simulator of recursive estimation
//! (Suresh et al. 2024).
//!
//! Tokens are grouped, as `lmloop theory discrete` groups symbols, by their expected
//! count in one corpus, c·D/|R| (c: count in the real training set R, D: corpus
//! size), in octaves [2^b, 2^(b+1)). Per run, the survival of a group in S_k is the
//! share of its tokens with a count above zero in S_k (from the run's `tokens.csv`);
//! per cell, its mean over seeds with a 95% interval. Beside it: the simulator started
//! from the same real counts (re-estimation by maximum likelihood from D samples per
//! generation, same policy and temperature, 200 trials) and the Poisson prediction
//! 1 − exp(−c·D/|R|·g_k) it tests, and what a perfect model's corpus keeps (the null
//! from real documents each run measured, `real_documents_null`). The simulator covers replace, accumulate and fresh;
//! other policies (mix among them) get the language model's measurement alone.
use super::aggregate::{opt, seeds_text, summary_columns};
use super::cells::Sweep;
use super::stats::Summary;
use super::tables::{number, read_csv, Row};
use crate::layout::Layout;
use crate::theory::{discrete_survival_bins, simulate_discrete, DataPolicy, DiscreteConfig, StartDistribution};
use anyhow::Result;

/// Trials of the simulator per cell: survival shares to about ±0.02 for small groups.
const THEORY_TRIALS: usize = 200;

/// One octave of expected count, for one cell.
#[derive(Debug, Clone)]
pub struct TailBin {
    pub expected_low: f64,
    pub expected_high: f64,
    pub tokens: usize,
    pub mean_expected: f64,
    /// Per checkpoint k (corpus S_k): survival over seeds, and which seeds lacked S_k.
    pub measured: Vec<(Summary, Vec<u64>)>,
    /// Per checkpoint: the simulator's survival (None for policies it does not cover).
    pub simulated: Option<Vec<f64>>,
    /// Per checkpoint: 1 − exp(−c·D/|R|·g_k), averaged over the group.
    pub predicted: Option<Vec<f64>>,
    /// What a perfect model's corpus keeps: the group's share present under each run's
    /// null from real documents (`null_presence_real_documents` in `tokens.csv`), mean
    /// over the seeds that have it; the same for every S_k.
    pub real_null: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct CellTails {
    pub cell: usize,
    /// Corpus indices k of S_k compared (1, 2, 3, 5, 10, … and N+1).
    pub checkpoints: Vec<usize>,
    /// D / |R| of the first seed's run.
    pub d_over_r: f64,
    pub bins: Vec<TailBin>,
    /// When tokens vanish, against their expected count (see [`Vanish`]).
    pub vanish: Vanish,
}

/// When a real token first vanishes, V: the first k in 1..=K (K = N+1 corpora) whose
/// S_k lacks it, and K+1 for a token still present in S_K (so min(V, K+1), the same
/// censoring for the language model and the simulator). Per octave of expected count
/// its mean over the group (over seeds with a 95% interval), and per run the
/// least-squares slope of min(V, K+1) on the expected count c·D/|R| over the tokens
/// with 0 < c·D/|R| ≤ K/2 (Suresh et al.: a symbol seen c times survives about c
/// generations, a slope near 1 before censoring flattens it). Beside them the exact
/// simulator's expectation of the same quantities, 1 + Σ_k P(present in S_k), for
/// `replace` (where a vanished symbol never returns).
#[derive(Debug, Clone)]
pub struct Vanish {
    /// K: corpora S_1..S_K.
    pub corpora: usize,
    /// Per octave (same order as the cell's bins): measured mean min(V, K+1), simulated.
    pub groups: Vec<(Summary, Option<f64>)>,
    /// The fit's range of expected count (0, `fit_up_to`] and the tokens in it.
    pub fit_up_to: f64,
    pub fit_tokens: usize,
    /// Slope per seed, pooled; and the simulator's slope.
    pub slope: Summary,
    pub simulated_slope: Option<f64>,
    /// Upper bounds on the Monte Carlo standard error of the simulator's values (its
    /// `THEORY_TRIALS` trials), per group and for the slope; see [`mc_sd_of_vanish`].
    pub simulated_group_se: Vec<Option<f64>>,
    pub simulated_slope_se: Option<f64>,
    /// Seeds whose runs lack a corpus S_1..S_K.
    pub missing: Vec<u64>,
}

/// min(V, K+1) of every token of a run's `tokens.csv` rows, `None` when a corpus
/// S_1..S_K is missing.
fn vanish_generations(rows: &[Row], corpora: usize) -> Option<Vec<f64>> {
    let columns: Vec<String> = (1..=corpora).map(|k| crate::layout::gen_name(k as u32).replace('-', "_")).collect();
    rows.iter()
        .map(|r| {
            let mut v = corpora + 1;
            for (k, c) in columns.iter().enumerate() {
                if number(r, c)? <= 0.0 {
                    v = k + 1;
                    break;
                }
            }
            Some(v as f64)
        })
        .collect()
}

fn slope_of(points: &[(f64, f64)]) -> Option<f64> {
    crate::analysis::LinearFit::fit(points).map(|f| f.slope)
}

fn octave(expected: f64) -> i32 {
    expected.log2().floor() as i32
}

/// The simulator's data policy for a cell's policy, when it has one.
fn theory_policy(policy: &str, real_fraction: Option<f64>) -> Option<DataPolicy> {
    match policy {
        "replace" => Some(DataPolicy::Replace),
        "accumulate" => Some(DataPolicy::Accumulate),
        // The simulator's `fresh` draws λ·n new real samples each generation, as the
        // loop's `fresh` trains on never-used real documents; the loop's `mix` reuses
        // one real set R, which no simulator models.
        "fresh" => real_fraction.map(|real_fraction| DataPolicy::Fresh { real_fraction }),
        _ => None,
    }
}

/// Tail tables of every cell whose runs left `tokens.csv` (cells without any are skipped).
pub fn tails(layout: &Layout, sweep: &Sweep) -> Result<Vec<CellTails>> {
    let n_corpora = sweep.spec.generations as usize + 1;
    let checkpoints = crate::theory::survival_checkpoints(n_corpora);
    let mut out = Vec::new();
    for (i, cell) in sweep.cells.iter().enumerate() {
        let mut tables: Vec<(u64, Vec<Row>)> = Vec::new();
        let mut missing_table = Vec::new();
        for run in sweep.runs_of(i) {
            match read_csv(&layout.tokens_csv(&run.name))? {
                Some(rows) if !rows.is_empty() => tables.push((run.seed, rows)),
                _ => missing_table.push(run.seed),
            }
        }
        let Some((_, first)) = tables.first() else { continue };
        let real: Vec<f64> = first.iter().map(|r| number(r, "real_count").unwrap_or(0.0)).collect();
        let r_total: f64 = real.iter().sum();
        let d: f64 = first.iter().map(|r| number(r, "gen_01").unwrap_or(0.0)).sum();
        if r_total <= 0.0 || d <= 0.0 {
            continue;
        }
        // Groups of token ids by octave of expected count c·D/|R|.
        let mut groups: std::collections::BTreeMap<i32, Vec<usize>> = Default::default();
        for (id, &c) in real.iter().enumerate() {
            if c > 0.0 {
                groups.entry(octave(c * d / r_total)).or_default().push(id);
            }
        }
        let (cfg, _) = sweep.run_config(sweep.runs_of(i).next().expect("a cell has runs"))?;
        let theory = match theory_policy(&cell.policy, cell.real_fraction) {
            Some(policy) if cfg.sample.temperature > 0.0 => {
                let config = DiscreteConfig {
                    start: StartDistribution::from_weights("real counts".into(), real.clone())?,
                    n: d.round() as u64,
                    generations: n_corpora,
                    trials: THEORY_TRIALS,
                    policy,
                    temperature: cfg.sample.temperature,
                    seed: 0,
                };
                config.validate()?;
                let result = simulate_discrete(&config)?;
                Some((result.checkpoints.clone(), discrete_survival_bins(&config, &result)))
            }
            _ => None,
        };
        let groups_ids: Vec<Vec<usize>> = groups.values().cloned().collect();
        let mut bins = Vec::new();
        for (oct, ids) in groups {
            let low = 2f64.powi(oct);
            let measured = checkpoints
                .iter()
                .map(|&k| {
                    let column = crate::layout::gen_name(k as u32).replace('-', "_");
                    let (mut shares, mut missing) = (Vec::new(), missing_table.clone());
                    for (seed, rows) in &tables {
                        let present: Option<Vec<bool>> = ids
                            .iter()
                            .map(|&id| rows.get(id).and_then(|r| number(r, &column)).map(|c| c > 0.0))
                            .collect();
                        match present {
                            Some(p) => shares.push(p.iter().filter(|&&x| x).count() as f64 / ids.len() as f64),
                            None => missing.push(*seed),
                        }
                    }
                    missing.sort();
                    (Summary::of(&shares).within((0.0, 1.0)), missing)
                })
                .collect();
            let matching = theory.as_ref().and_then(|(cps, tb)| {
                let bin = tb.iter().find(|b| octave(b.expected_count_low) == oct)?;
                // The simulator records the same checkpoints (both start from N+1 generations).
                (cps == &checkpoints).then(|| (bin.simulated.clone(), bin.predicted.clone()))
            });
            let per_seed: Vec<f64> = tables
                .iter()
                .filter_map(|(_, rows)| {
                    let p: Option<Vec<f64>> = ids
                        .iter()
                        .map(|&id| rows.get(id).and_then(|r| number(r, "null_presence_real_documents")))
                        .collect();
                    p.map(|p| p.iter().sum::<f64>() / p.len().max(1) as f64)
                })
                .collect();
            bins.push(TailBin {
                real_null: (!per_seed.is_empty()).then(|| per_seed.iter().sum::<f64>() / per_seed.len() as f64),
                expected_low: low,
                expected_high: 2.0 * low,
                tokens: ids.len(),
                mean_expected: ids.iter().map(|&id| real[id] * d / r_total).sum::<f64>() / ids.len() as f64,
                measured,
                simulated: matching.as_ref().map(|m| m.0.clone()),
                predicted: matching.map(|m| m.1),
            });
        }
        let vanish = vanish(
            &tables,
            &missing_table,
            &real,
            d / r_total,
            n_corpora,
            &groups_ids,
            (cell.policy == "replace" && cfg.sample.temperature > 0.0).then(|| DiscreteConfig {
                start: StartDistribution::from_weights("real counts".into(), real.clone()).expect("checked above"),
                n: d.round() as u64,
                generations: n_corpora,
                trials: THEORY_TRIALS,
                policy: DataPolicy::Replace,
                temperature: cfg.sample.temperature,
                seed: 0,
            }),
        )?;
        out.push(CellTails { cell: i, checkpoints: checkpoints.clone(), d_over_r: d / r_total, bins, vanish });
    }
    Ok(out)
}

/// The [`Vanish`] statistics of a cell's runs (`tables`: seed and `tokens.csv` rows),
/// with the simulator run by `theory` when it covers the cell.
fn vanish(
    tables: &[(u64, Vec<Row>)],
    missing_table: &[u64],
    real: &[f64],
    d_over_r: f64,
    corpora: usize,
    groups: &[Vec<usize>],
    theory: Option<DiscreteConfig>,
) -> Result<Vanish> {
    let fit_up_to = corpora as f64 / 2.0;
    let fitted: Vec<usize> = (0..real.len()).filter(|&t| real[t] > 0.0 && real[t] * d_over_r <= fit_up_to).collect();
    let mut missing = missing_table.to_vec();
    let mut per_seed = Vec::new();
    for (seed, rows) in tables {
        match vanish_generations(rows, corpora) {
            Some(v) if v.len() == real.len() => per_seed.push(v),
            _ => missing.push(*seed),
        }
    }
    missing.sort();
    let trials = theory.as_ref().map(|c| c.trials as f64);
    let (simulated, simulated_sd): (Option<Vec<f64>>, Option<Vec<f64>>) = match theory {
        Some(config) => {
            let all: Vec<usize> = (1..=corpora).collect();
            let result = crate::theory::simulate_discrete_at(&config, &all)?;
            let (mean, sd): (Vec<f64>, Vec<f64>) = (0..real.len())
                .map(|t| {
                    let present: Vec<f64> = (0..all.len()).map(|slot| result.survival(slot, t)).collect();
                    (1.0 + present.iter().sum::<f64>(), mc_sd_of_vanish(&present))
                })
                .unzip();
            (Some(mean), Some(sd))
        }
        None => (None, None),
    };
    // A mean of per-token values has a standard deviation at most the mean of theirs
    // (whatever their correlation), and a slope, a weighted sum, at most Σ|w|·sd.
    let se_of = |weights: &[(usize, f64)]| -> Option<f64> {
        let sd = simulated_sd.as_ref()?;
        Some(weights.iter().map(|&(t, w)| w.abs() * sd[t]).sum::<f64>() / trials?.sqrt())
    };
    let mean_over = |v: &[f64], ids: &[usize]| ids.iter().map(|&t| v[t]).sum::<f64>() / ids.len().max(1) as f64;
    let simulated_group_se = groups
        .iter()
        .map(|ids| se_of(&ids.iter().map(|&t| (t, 1.0 / ids.len().max(1) as f64)).collect::<Vec<_>>()))
        .collect();
    let xs: Vec<f64> = fitted.iter().map(|&t| real[t] * d_over_r).collect();
    let mx = xs.iter().sum::<f64>() / xs.len().max(1) as f64;
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let simulated_slope_se = (sxx > 0.0)
        .then(|| se_of(&fitted.iter().zip(&xs).map(|(&t, x)| (t, (x - mx) / sxx)).collect::<Vec<_>>()))
        .flatten();
    let groups = groups
        .iter()
        .map(|ids| {
            let measured: Vec<f64> = per_seed.iter().map(|v| mean_over(v, ids)).collect();
            let measured = Summary::of(&measured).within((1.0, (corpora + 1) as f64));
            (measured, simulated.as_ref().map(|s| mean_over(s, ids)))
        })
        .collect();
    let points = |v: &[f64]| -> Vec<(f64, f64)> { fitted.iter().map(|&t| (real[t] * d_over_r, v[t])).collect() };
    let slopes: Vec<f64> = per_seed.iter().filter_map(|v| slope_of(&points(v))).collect();
    Ok(Vanish {
        corpora,
        groups,
        fit_up_to,
        fit_tokens: fitted.len(),
        slope: Summary::of(&slopes),
        simulated_slope: simulated.as_ref().and_then(|s| slope_of(&points(s))),
        simulated_group_se,
        simulated_slope_se,
        missing,
    })
}

/// The standard deviation over trials of one token's min(V, K+1) in the simulator, from
/// its presence shares p_k at S_1..S_K. Under `replace` a vanished token never returns,
/// so V − 1 = #{k : present in S_k}, P(V − 1 ≥ k) = p_k, E[V − 1] = Σ p_k and
/// E[(V − 1)²] = Σ (2k − 1)·p_k.
pub fn mc_sd_of_vanish(present: &[f64]) -> f64 {
    let m: f64 = present.iter().sum();
    let m2: f64 = present.iter().enumerate().map(|(i, p)| (2 * i + 1) as f64 * p).sum();
    (m2 - m * m).max(0.0).sqrt()
}

/// `vanish.csv`: per cell, one row per octave of expected count (the mean of
/// min(V, K+1)) and one `slope` row (its slope on the expected count up to K/2).
pub fn vanish_csv(sweep: &Sweep, tails: &[CellTails]) -> Result<Vec<u8>> {
    crate::durable::csv_bytes(|w| {
        w.write_record([
            "cell",
            "label",
            "row",
            "expected_count_low",
            "expected_count_high",
            "tokens",
            "corpora",
            "n",
            "mean",
            "sd",
            "ci95_low",
            "ci95_high",
            "spread",
            "missing_seeds",
            "theory_simulated",
            "theory_mc_se_max",
        ])?;
        for t in tails {
            let cell = &sweep.cells[t.cell];
            let v = &t.vanish;
            let mut row =
                |kind: &str, low: f64, high: f64, tokens: usize, s: &Summary, sim: (Option<f64>, Option<f64>)| {
                    let cells = [
                        cell.id.clone(),
                        cell.label.clone(),
                        kind.to_string(),
                        format!("{low}"),
                        format!("{high}"),
                        tokens.to_string(),
                        v.corpora.to_string(),
                    ];
                    let rest = [seeds_text(&v.missing), opt(sim.0), opt(sim.1)];
                    w.write_record(cells.into_iter().chain(summary_columns(s)).chain(rest))
                };
            for ((b, (s, sim)), se) in t.bins.iter().zip(&v.groups).zip(&v.simulated_group_se) {
                row("group", b.expected_low, b.expected_high, b.tokens, s, (*sim, *se))?;
            }
            row("slope", 0.0, v.fit_up_to, v.fit_tokens, &v.slope, (v.simulated_slope, v.simulated_slope_se))?;
        }
        Ok(())
    })
}

/// `tails.csv`: one row per cell, group and corpus S_k.
pub fn tails_csv(sweep: &Sweep, tails: &[CellTails]) -> Result<Vec<u8>> {
    crate::durable::csv_bytes(|w| {
        w.write_record([
            "cell",
            "label",
            "expected_count_low",
            "expected_count_high",
            "tokens",
            "corpus",
            "n",
            "mean_survival",
            "sd",
            "ci95_low",
            "ci95_high",
            "spread",
            "missing_seeds",
            "theory_simulated",
            "poisson_predicted",
            "real_documents_null",
        ])?;
        for t in tails {
            let cell = &sweep.cells[t.cell];
            for b in &t.bins {
                for (c, &k) in t.checkpoints.iter().enumerate() {
                    let (s, missing) = &b.measured[c];
                    let cells = [
                        cell.id.clone(),
                        cell.label.clone(),
                        format!("{}", b.expected_low),
                        format!("{}", b.expected_high),
                        b.tokens.to_string(),
                        crate::layout::gen_name(k as u32),
                    ];
                    let rest = [
                        seeds_text(missing),
                        opt(b.simulated.as_ref().map(|v| v[c])),
                        opt(b.predicted.as_ref().map(|v| v[c])),
                        opt(b.real_null),
                    ];
                    w.write_record(cells.into_iter().chain(summary_columns(s)).chain(rest))?;
                }
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::mc_sd_of_vanish;

    #[test]
    fn monte_carlo_spread_of_the_vanish_generation_by_hand() {
        // Always in S_1, never later: V − 1 = 1 in every trial.
        assert_eq!(mc_sd_of_vanish(&[1.0, 0.0]), 0.0);
        // In S_1 half the time: V − 1 is Bernoulli(½), sd ½.
        assert!((mc_sd_of_vanish(&[0.5, 0.0]) - 0.5).abs() < 1e-12);
        // Always in S_1, in S_2 half the time: V − 1 ∈ {1, 2} alike, sd ½.
        assert!((mc_sd_of_vanish(&[1.0, 0.5]) - 0.5).abs() < 1e-12);
    }
}
