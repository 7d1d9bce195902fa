//! `lmloop sweep plan`: the cells, their run names and the compute they need.
//!
//! Training work is counted the way the protocol defines it. Under an epoch budget
//! generation k trains `epochs` passes over its mixture: |R| for generation 0, then D
//! for every policy except `accumulate`, whose mixture R ∪ S_1 ∪ … ∪ S_k holds
//! |R| + k·D tokens (so with D = |R| it trains (k+1)·epochs passes of |R|). Under a
//! token budget every generation trains `train.max_tokens`. Every generation samples
//! one corpus of D tokens; D/ρ when it is curated keeping a share ρ (`curation.keep_fraction`;
//! the quantile rule samples at least D, counted as D). Amounts are printed in units of |R| (and D) and, when the
//! prepared corpus exists, in tokens, with FLOPs estimated as 6·P per trained token
//! and 2·P per sampled token for a model of P parameters.
use super::cells::Sweep;
use crate::layout::Layout;
use std::fmt::Write as _;

/// An amount of tokens: `r` times |R| plus `tokens` (|R| may be unknown until the corpus is prepared).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Amount {
    pub r: f64,
    pub tokens: f64,
}

impl Amount {
    fn r(r: f64) -> Self {
        Amount { r, tokens: 0.0 }
    }
    fn tokens(t: f64) -> Self {
        Amount { r: 0.0, tokens: t }
    }
    fn add(self, o: Amount) -> Self {
        Amount { r: self.r + o.r, tokens: self.tokens + o.tokens }
    }
    fn scale(self, f: f64) -> Self {
        Amount { r: self.r * f, tokens: self.tokens * f }
    }
    /// In tokens, when |R| is known or not needed.
    pub fn resolve(self, real_tokens: Option<f64>) -> Option<f64> {
        if self.r == 0.0 {
            return Some(self.tokens);
        }
        real_tokens.map(|r| self.r * r + self.tokens)
    }
    fn describe(self) -> String {
        match (self.r != 0.0, self.tokens != 0.0) {
            (true, false) => format!("{} |R|", trim(self.r)),
            (false, _) => format!("{} tok", si(self.tokens)),
            (true, true) => format!("{} |R| + {} tok", trim(self.r), si(self.tokens)),
        }
    }
}

/// The work of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunWork {
    /// Tokens trained on, summed over generations 0..=N.
    pub train: Amount,
    /// Tokens sampled, summed over generations 0..=N.
    pub sample: Amount,
    /// Per generation, what it trains on (for the plan's explanation).
    pub per_generation: Vec<Amount>,
    /// |R| as a share of the training split (at most 1 − `generations.holdout_fraction`
    /// by whole documents; 0 with a subset, whose size is in tokens).
    pub r_of_split: f64,
}

/// Reads a key of a resolved config as a float.
fn num(cfg: &toml::Value, key: &str) -> Option<f64> {
    let v = key.split('.').try_fold(cfg, |v, part| v.get(part))?;
    v.as_float().or_else(|| v.as_integer().map(|i| i as f64))
}

fn text<'a>(cfg: &'a toml::Value, key: &str) -> Option<&'a str> {
    key.split('.').try_fold(cfg, |v, part| v.get(part))?.as_str()
}

/// The work of a run with the given resolved config (a TOML value with every key).
pub fn run_work(cfg: &toml::Value) -> RunWork {
    let n = num(cfg, "generations.generations").unwrap_or(10.0) as u32;
    let policy = text(cfg, "generations.policy").unwrap_or("replace");
    let subset = num(cfg, "generations.real_subset_tokens").unwrap_or(0.0);
    // Without a subset, R is the split less its held-out share, whatever the policy.
    let (r, r_of_split) = if subset > 0.0 {
        (Amount::tokens(subset), 0.0)
    } else {
        let held_out = num(cfg, "generations.holdout_fraction").or_else(|| num(cfg, "generations.fresh_pool_fraction"));
        (Amount::r(1.0), 1.0 - held_out.unwrap_or(crate::policy::DEFAULT_HOLDOUT_FRACTION))
    };
    let d = match num(cfg, "generations.synthetic_tokens").unwrap_or(0.0) {
        t if t > 0.0 => Amount::tokens(t),
        _ => r,
    };
    let epochs = num(cfg, "train.epochs");
    let max_tokens = num(cfg, "train.max_tokens");
    let token_budget = match text(cfg, "train.budget") {
        Some(b) => b == "tokens",
        None => epochs.is_none(),
    };
    let mut per_generation = Vec::new();
    for k in 0..=n {
        let mixture = match (k, policy) {
            (0, _) => r,
            (k, "accumulate") => r.add(d.scale(k as f64)),
            _ => d,
        };
        per_generation.push(if token_budget {
            Amount::tokens(max_tokens.unwrap_or(0.0))
        } else {
            mixture.scale(epochs.unwrap_or(1.0))
        });
    }
    let train = per_generation.iter().fold(Amount::default(), |a, &b| a.add(b));
    // Curation keeping a share ρ samples D/ρ (the quantile rule at least D: counted as D).
    let curated = text(cfg, "curation.verifier").is_some();
    let oversampling = match num(cfg, "curation.keep_fraction") {
        Some(rho) if curated && rho > 0.0 => 1.0 / rho,
        _ => 1.0,
    };
    RunWork { train, sample: d.scale((n + 1) as f64 * oversampling), per_generation, r_of_split }
}

/// The training split's size in tokens (|R| is a share of it, `RunWork::r_of_split`)
/// and the vocabulary, when the base corpus is prepared.
fn prepared_train_tokens(layout: &Layout, corpus: &str) -> Option<(f64, i64)> {
    let meta: serde_json::Value =
        crate::durable::read_json(&layout.real_corpus(corpus).join(crate::layout::RealCorpus::META)).ok()?;
    let tokens = meta.get("train")?.get("tokens")?.as_f64()?;
    let vocab = meta.get("vocab_size")?.as_i64()?;
    Some((tokens, vocab))
}

/// Parameters of the model a config builds (built on the CPU and counted).
fn parameter_count(cfg: &crate::config::Config, vocab: i64) -> i64 {
    let mut model = cfg.model.clone();
    if model.vocab_size == 0 {
        model.vocab_size = vocab;
    }
    crate::model::parameters_of(&model)
}

/// The plan as printed by `lmloop sweep plan`.
pub fn format_plan(layout: &Layout, sweep: &Sweep) -> anyhow::Result<String> {
    let spec = &sweep.spec;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "sweep {}: {} cell{} × {} seeds = {} runs, N = {} (generations 0..={}), base {}",
        spec.name,
        sweep.cells.len(),
        if sweep.cells.len() == 1 { "" } else { "s" },
        spec.seeds.len(),
        sweep.runs.len(),
        spec.generations,
        spec.generations,
        spec.base.display()
    );
    if let Some(d) = &spec.description {
        let _ = writeln!(s, "{d}");
    }
    let (first_cfg, _) = sweep.run_config(&sweep.runs[0])?;
    let corpus = first_cfg.data.corpus.clone();
    let prepared = prepared_train_tokens(layout, &corpus);
    let _ = writeln!(
        s,
        "training: tokens trained on per run (passes × mixture, summed over generations); sampling: N+1 corpora of D tokens (D/ρ when curated keeping ρ)\n"
    );
    let mut table: Vec<[String; 6]> = vec![[
        "cell".into(),
        "id".into(),
        "params".into(),
        "train per run".into(),
        "sample per run".into(),
        "FLOP per run".into(),
    ]];
    let mut total_train = 0.0;
    let mut total_sample = 0.0;
    let mut total_flops = 0.0;
    let mut known = true;
    let mut in_r_units = false;
    for (i, cell) in sweep.cells.iter().enumerate() {
        let run = sweep.runs_of(i).next().expect("every cell has runs");
        let (cfg, resolved) = sweep.run_config(run)?;
        let value: toml::Value = toml::from_str(&resolved)?;
        let work = run_work(&value);
        // |R| in tokens, about: the held-out share is cut by whole documents.
        let real = prepared.map(|p| p.0 * work.r_of_split);
        let show = |a: Amount| match a.resolve(real) {
            Some(t) if a.r != 0.0 => format!("{} = {} tok", a.describe(), si(t)),
            _ => a.describe(),
        };
        in_r_units |= work.train.r != 0.0 || work.sample.r != 0.0;
        let seeds = spec.seeds.len() as f64;
        let vocab = prepared.map(|p| p.1).unwrap_or(cfg.data.vocab_size as i64);
        let p = parameter_count(&cfg, vocab) as f64;
        let flops = match (work.train.resolve(real), work.sample.resolve(real)) {
            (Some(t), Some(smp)) => {
                total_train += t * seeds;
                total_sample += smp * seeds;
                total_flops += seeds * (6.0 * p * t + 2.0 * p * smp);
                format!("{}FLOP", si_flops(6.0 * p * t + 2.0 * p * smp))
            }
            _ => {
                known = false;
                "–".to_string()
            }
        };
        table.push([cell.label.clone(), cell.id.clone(), si(p), show(work.train), show(work.sample), flops]);
    }
    // Column widths in characters (labels hold λ), text left, amounts right.
    let width = |c: usize| table.iter().map(|r| r[c].chars().count()).max().unwrap_or(0);
    let widths = [width(0), width(1), width(2), width(3), width(4), width(5)];
    for r in &table {
        let pad = |c: usize| " ".repeat(widths[c] - r[c].chars().count());
        let _ = writeln!(
            s,
            "{}{}  {}{}  {}{}  {}{}  {}{}  {}{}",
            r[0],
            pad(0),
            r[1],
            pad(1),
            pad(2),
            r[2],
            pad(3),
            r[3],
            pad(4),
            r[4],
            pad(5),
            r[5]
        );
    }
    if in_r_units {
        let _ = match prepared {
            Some((t, _)) => writeln!(s, "\n|R| = {} tokens (the training split of corpora/real/{corpus})", group(t)),
            None => {
                writeln!(s, "\ncorpora/real/{corpus} is not prepared yet, so |R| (its training split) is not known")
            }
        };
    }
    if known {
        let _ = writeln!(
            s,
            "\ntotal over {} runs: {} tokens trained, {} tokens sampled, ≈ {}FLOP (6·P per trained token, 2·P per sampled token, P parameters)",
            sweep.runs.len(),
            si(total_train),
            si(total_sample),
            si_flops(total_flops)
        );
    }
    if spec.claims.is_empty() {
        let _ = writeln!(s, "\nclaims: none named ([[claim]]): the report will give no verdict");
    } else {
        let _ = writeln!(
            s,
            "\nclaims (a verdict on each primary measure in the report, Bonferroni over {}):",
            spec.claims.len()
        );
        for (i, c) in spec.claims.iter().enumerate() {
            let _ = writeln!(s, "  {}: {} [{} {}]", sweep.claim_label(i), c.says, c.measure, c.test.name());
        }
    }
    let _ = writeln!(s, "\nruns (index = SLURM array task):");
    for (i, run) in sweep.runs.iter().enumerate() {
        let _ = writeln!(s, "{i:>4}  {}", run.name);
    }
    Ok(s)
}

fn trim(x: f64) -> String {
    let t = format!("{x:.2}");
    t.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// 1234567 → "1.23M".
fn si(x: f64) -> String {
    let (v, unit) = if x >= 1e9 {
        (x / 1e9, "G")
    } else if x >= 1e6 {
        (x / 1e6, "M")
    } else if x >= 1e3 {
        (x / 1e3, "k")
    } else {
        (x, "")
    };
    format!("{}{unit}", trim(v))
}

/// FLOPs with an SI prefix: 3.2e15 → "3.2 P".
fn si_flops(x: f64) -> String {
    let prefixes = [(1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M")];
    for (scale, p) in prefixes {
        if x >= scale {
            return format!("{} {p}", trim(x / scale));
        }
    }
    format!("{} ", trim(x))
}

/// 1556562 → "1,556,562".
fn group(x: f64) -> String {
    let digits = format!("{}", x.round() as u64);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work(text: &str) -> RunWork {
        run_work(&toml::from_str(text).unwrap())
    }

    #[test]
    fn accumulate_grows_by_one_pass_per_generation() {
        let w = work("[train]\nbudget = \"epochs\"\nepochs = 1.0\n[generations]\ngenerations = 3\npolicy = \"accumulate\"\nsynthetic_tokens = 0\n");
        let passes: Vec<f64> = w.per_generation.iter().map(|a| a.r).collect();
        assert_eq!(passes, [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(w.train, Amount::r(10.0));
        assert_eq!(w.sample, Amount::r(4.0));
    }

    #[test]
    fn replace_and_token_budgets_stay_flat() {
        let w = work("[train]\nbudget = \"epochs\"\nepochs = 2.0\n[generations]\ngenerations = 2\npolicy = \"replace\"\nsynthetic_tokens = 1000\n");
        assert_eq!(w.train, Amount { r: 2.0, tokens: 4000.0 });
        assert_eq!(w.sample, Amount::tokens(3000.0));
        let w = work(
            "[train]\nbudget = \"tokens\"\nmax_tokens = 500\n[generations]\ngenerations = 2\npolicy = \"accumulate\"\n",
        );
        assert_eq!(w.train, Amount::tokens(1500.0));
        assert_eq!(w.train.resolve(None), Some(1500.0));
    }
}
