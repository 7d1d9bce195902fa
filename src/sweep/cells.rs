//! Cells and runs: the grid expanded into settings with stable ids.
//!
//! A *cell* is one setting of the grid (policy, λ, temperature, …); a *run* is a
//! cell at one seed, an ordinary `lmloop generations` run. Ids depend only on what
//! the cell sets, never on the other cells or on the order of the file, so editing
//! a grid (adding a temperature, a seed) keeps every existing run's name:
//!
//! - cell id: `SLUG-HASH`, e.g. `mix-l0.5-t0.8-3fa2c1`: a readable slug of the
//!   cell's grid values, then the first 6 hex digits of the SHA-256 of all the
//!   keys it overrides (`[set]` and grid, sorted, `key=value` lines);
//! - run name: `SWEEP-CELLID-sSEED`.
use super::spec::set_dotted;
use super::spec::{SweepSpec, GENERATIONS_KEY, POLICY_KEY, REAL_FRACTION_KEY, SEED_KEY};
use crate::choice::Choice;
use crate::config::Config;
use crate::policy::{Policy, PolicyName};
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// One setting of the grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// Stable id `SLUG-HASH`.
    pub id: String,
    /// Readable label for tables and legends, e.g. `mix λ=0.5 T=0.8`.
    pub label: String,
    /// The policy the cell runs (from the grid, `[set]` or the base config).
    pub policy: String,
    /// Its λ when the policy takes one.
    pub real_fraction: Option<f64>,
    /// The grid's values for this cell, in axis order (λ left out for policies without one).
    pub grid_values: Vec<(String, toml::Value)>,
}

/// One cell at one seed.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// Index into `Sweep::cells`.
    pub cell: usize,
    pub seed: u64,
    /// The run name under `analysis/`, `checkpoints/`, `corpora/synthetic/`.
    pub name: String,
}

/// A sweep file expanded into its cells and runs, every cell's config validated.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub spec: SweepSpec,
    pub cells: Vec<Cell>,
    /// Cell by cell, seeds in the file's order: the order of the SLURM array indices.
    pub runs: Vec<Run>,
}

impl Sweep {
    pub fn load(path: &std::path::Path) -> Result<Sweep> {
        let spec = SweepSpec::load(path)?;
        Self::expand(spec).with_context(|| format!("invalid sweep file {}", path.display()))
    }

    pub fn expand(spec: SweepSpec) -> Result<Sweep> {
        let cells = expand_cells(&spec)?;
        let mut runs = Vec::new();
        for (i, cell) in cells.iter().enumerate() {
            for &seed in &spec.seeds {
                runs.push(Run { cell: i, seed, name: format!("{}-{}-s{seed}", spec.name, cell.id) });
            }
        }
        let sweep = Sweep { spec, cells, runs };
        sweep.baseline()?;
        for (i, claim) in sweep.spec.claims.iter().enumerate() {
            sweep.check_claim(i, claim)?;
        }
        for cell in 0..sweep.cells.len() {
            let run = sweep.runs.iter().find(|r| r.cell == cell).expect("every cell has a seed");
            sweep.run_config(run)?;
        }
        Ok(sweep)
    }

    /// The validated config of one run, and its resolved TOML text (every key, defaults included).
    pub fn run_config(&self, run: &Run) -> Result<(Config, String)> {
        let cell = &self.cells[run.cell];
        let mut value = self.spec.base_toml.clone();
        let mut overrides: Vec<(String, toml::Value)> = self.spec.set.clone();
        overrides.extend(cell.grid_values.iter().cloned());
        overrides.push((SEED_KEY.to_string(), toml::Value::Integer(run.seed as i64)));
        overrides.push((GENERATIONS_KEY.to_string(), toml::Value::Integer(self.spec.generations as i64)));
        for (key, v) in &overrides {
            set_dotted(&mut value, key, v.clone()).with_context(|| format!("cell {}", cell.label))?;
        }
        if cell.real_fraction.is_none() {
            // A policy without λ must not inherit one from the base config.
            remove_dotted(&mut value, REAL_FRACTION_KEY);
        }
        let text = toml::to_string(&value).context("a cell's config does not serialise to TOML")?;
        let cfg = Config::from_toml(&text).with_context(|| format!("cell '{}' ({})", cell.label, cell.id))?;
        let resolved = cfg.to_toml();
        Ok((cfg, resolved))
    }

    /// The cells whose grid settings include every one of `want` (numbers compare by
    /// value: 1 and 1.0 alike).
    pub fn cells_matching(&self, want: &[(String, toml::Value)]) -> Vec<usize> {
        let matches = |c: &Cell| {
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
        (0..self.cells.len()).filter(|&i| matches(&self.cells[i])).collect()
    }

    /// The one cell `want` names; `what` says who names it in the error ("baseline",
    /// "claim 2").
    pub fn one_cell(&self, want: &[(String, toml::Value)], what: &str) -> Result<usize> {
        let described = describe_settings(want);
        match self.cells_matching(want).as_slice() {
            [one] => Ok(*one),
            [] => anyhow::bail!(
                "{what} {{ {described} }} matches no cell of the sweep (cells: {})",
                self.cells.iter().map(|c| c.label.as_str()).collect::<Vec<_>>().join("; ")
            ),
            many => anyhow::bail!(
                "{what} {{ {described} }} matches {} cells ({}); name more settings so that it matches one",
                many.len(),
                many.iter().map(|&i| self.cells[i].label.as_str()).collect::<Vec<_>>().join("; ")
            ),
        }
    }

    /// The cell the others are contrasted with: the sweep file's `baseline` (grid values
    /// naming exactly one cell), else the real-data control when the sweep has one cell
    /// of it, else none.
    pub fn baseline(&self) -> Result<Option<usize>> {
        match &self.spec.baseline {
            Some(want) => self.one_cell(want, "baseline").map(Some),
            None => {
                let real: Vec<usize> = (0..self.cells.len()).filter(|&i| self.cells[i].policy == "real").collect();
                Ok((real.len() == 1).then(|| real[0]))
            }
        }
    }

    /// How a claim is named in errors: "claim" alone, or "claim 2" among several.
    pub fn claim_label(&self, i: usize) -> String {
        super::spec::claim_label(i, self.spec.claims.len())
    }

    /// Checks that claim `i`'s cells exist: one cell (and one to contrast with) for a
    /// rate or a contrast, one ladder of at least two values for a threshold.
    fn check_claim(&self, i: usize, claim: &super::spec::Claim) -> Result<()> {
        use super::spec::ClaimTest;
        let label = self.claim_label(i);
        match claim.test {
            ClaimTest::Threshold => {
                self.ladder(claim).with_context(|| label.clone())?;
            }
            t if !t.pairs() => {
                self.one_cell(&claim.cell, &format!("{label}.cell"))?;
            }
            _ => {
                self.claim_pair(claim, &label)?;
            }
        }
        Ok(())
    }

    /// The two cells a pairing claim (above, below, faster, slower) reads: its cell and
    /// `than`, else the baseline; `label` names the claim in errors.
    pub fn claim_pair(&self, claim: &super::spec::Claim, label: &str) -> Result<(usize, usize)> {
        let cell = self.one_cell(&claim.cell, &format!("{label}.cell"))?;
        let than = match &claim.than {
            Some(t) => self.one_cell(t, &format!("{label}.than"))?,
            None => self.baseline()?.ok_or_else(|| {
                anyhow::anyhow!(
                    "{label} is a contrast, but names no cell to contrast with (than) and the sweep has no baseline"
                )
            })?,
        };
        if cell == than {
            bail!("{label} contrasts the cell {} with itself", self.cells[cell].label);
        }
        Ok((cell, than))
    }

    /// A threshold claim's ladder: its cells on the axis with their values, ascending.
    /// They must share every other setting, and there must be two values at least.
    pub fn ladder(&self, claim: &super::spec::Claim) -> Result<Vec<(f64, usize)>> {
        let axis = claim.axis.as_deref().unwrap_or_default();
        let mut ladder: Vec<(f64, usize)> = Vec::new();
        for c in self.cells_matching(&claim.cell) {
            let value = self.cells[c].grid_values.iter().find(|(k, _)| k == axis).map(|(_, v)| v);
            if let Some(x) = value.and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64))) {
                ladder.push((x, c));
            }
        }
        ladder.sort_by(|a, b| a.0.total_cmp(&b.0));
        let others: Vec<String> = ladder.iter().map(|&(_, c)| self.others_text(c, axis)).collect();
        if others.windows(2).any(|w| w[0] != w[1]) {
            bail!(
                "its cells on {axis} differ in other settings ({}); name them in cell so that one ladder remains",
                others.join("; ")
            );
        }
        if ladder.len() < 2 {
            bail!("fewer than two of its cells have a numeric {axis}: a threshold needs a ladder of values");
        }
        Ok(ladder)
    }

    /// A cell's grid settings other than `axis`, "key = value, …" (empty when none).
    pub fn others_text(&self, cell: usize, axis: &str) -> String {
        self.cells[cell]
            .grid_values
            .iter()
            .filter(|(k, _)| *k != axis)
            .map(|(k, v)| format!("{} = {}", super::spec::named_axis(k).unwrap_or(k), short_value(v)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn runs_of(&self, cell: usize) -> impl Iterator<Item = &Run> {
        self.runs.iter().filter(move |r| r.cell == cell)
    }

    pub fn run_by_name(&self, name: &str) -> Option<&Run> {
        self.runs.iter().find(|r| r.name == name)
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

/// Settings as written in a sweep file, "key = value, …".
pub fn describe_settings(want: &[(String, toml::Value)]) -> String {
    want.iter().map(|(k, v)| format!("{k} = {}", short_value(v))).collect::<Vec<_>>().join(", ")
}

/// Every grid's combinations, in file order, duplicates (across grids) once.
fn expand_cells(spec: &SweepSpec) -> Result<Vec<Cell>> {
    let base_value = |key: &str| -> Option<toml::Value> {
        spec.set
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .or_else(|| get_dotted(&spec.base_toml, key).cloned())
    };
    let default_policy = base_value(POLICY_KEY)
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| crate::config::GenerationsConfig::default().policy.name());
    let base_lambda = base_value(REAL_FRACTION_KEY).and_then(|v| v.as_float().or(v.as_integer().map(|i| i as f64)));

    let mut cells: Vec<Cell> = Vec::new();
    let mut by_id: BTreeMap<String, String> = BTreeMap::new();
    for (g, grid) in spec.grids.iter().enumerate() {
        let label = if spec.grids.len() > 1 { format!("grid {}", g + 1) } else { "grid".into() };
        let lambda_axis = grid.axes.iter().any(|a| a.key == REAL_FRACTION_KEY);
        let mut lambda_used = false;
        let sizes: Vec<usize> = grid.axes.iter().map(|a| a.values.len()).collect();
        let mut index = vec![0usize; sizes.len()];
        loop {
            let values: Vec<(String, toml::Value)> =
                grid.axes.iter().zip(&index).map(|(a, &i)| (a.key.clone(), a.values[i].clone())).collect();
            let policy = values
                .iter()
                .find(|(k, _)| k == POLICY_KEY)
                .and_then(|(_, v)| v.as_str().map(str::to_string))
                .unwrap_or_else(|| default_policy.clone());
            let takes_lambda = policy_takes_lambda(&policy)?;
            let mut grid_values = values;
            let real_fraction = if takes_lambda {
                let from_grid =
                    grid_values.iter().find(|(k, _)| k == REAL_FRACTION_KEY).and_then(|(_, v)| v.as_float());
                let l = from_grid.or(base_lambda);
                if l.is_none() {
                    bail!("policy '{policy}' needs a real fraction λ: add real_fraction = [...] to [{label}]");
                }
                lambda_used |= from_grid.is_some();
                l
            } else {
                grid_values.retain(|(k, _)| k != REAL_FRACTION_KEY);
                None
            };
            let cell = make_cell(spec, policy, real_fraction, grid_values);
            match by_id.get(&cell.id) {
                Some(label) if *label == cell.label => {}
                Some(other) => {
                    bail!("cells '{other}' and '{}' have the same id {}; change one setting", cell.label, cell.id)
                }
                None => {
                    by_id.insert(cell.id.clone(), cell.label.clone());
                    cells.push(cell);
                }
            }
            if !advance(&mut index, &sizes) {
                break;
            }
        }
        if lambda_axis && !lambda_used {
            let takers: Vec<String> = <PolicyName as clap::ValueEnum>::value_variants()
                .iter()
                .map(Choice::name)
                .filter(|p| policy_takes_lambda(p).unwrap_or(false))
                .collect();
            bail!("{label}.real_fraction is set but none of its policies takes λ (only {} do)", takers.join(" and "));
        }
    }
    Ok(cells)
}

/// Turns the odometer of grid indices (the last axis fastest); false once every
/// combination was visited.
fn advance(index: &mut [usize], sizes: &[usize]) -> bool {
    for axis in (0..sizes.len()).rev() {
        index[axis] += 1;
        if index[axis] < sizes[axis] {
            return true;
        }
        index[axis] = 0;
    }
    false
}

/// Whether a policy needs λ: it parses without one only if it takes none.
fn policy_takes_lambda(policy: &str) -> Result<bool> {
    if Policy::parse(policy, None).is_ok() {
        return Ok(false);
    }
    Policy::parse(policy, Some(0.5)).with_context(|| format!("grid policy '{policy}'"))?;
    Ok(true)
}

fn make_cell(
    spec: &SweepSpec,
    policy: String,
    real_fraction: Option<f64>,
    grid_values: Vec<(String, toml::Value)>,
) -> Cell {
    let mut slug: Vec<String> = Vec::new();
    let mut label: Vec<String> = Vec::new();
    if !grid_values.iter().any(|(k, _)| k == POLICY_KEY) {
        // The policy always leads the label, even when the grid does not vary it.
        label.push(policy.clone());
    }
    for (key, value) in &grid_values {
        let v = short_value(value);
        let (s, l) = match key.as_str() {
            POLICY_KEY => (v.clone(), v.clone()),
            REAL_FRACTION_KEY => (format!("l{v}"), format!("λ={v}")),
            super::spec::TEMPERATURE_KEY => (format!("t{v}"), format!("T={v}")),
            super::spec::TOP_K_KEY => (format!("k{v}"), format!("top-k={v}")),
            super::spec::TOP_P_KEY => (format!("p{v}"), format!("top-p={v}")),
            other => {
                let last = other.rsplit('.').next().unwrap_or(other);
                (format!("{last}{v}"), format!("{last}={v}"))
            }
        };
        slug.push(s);
        label.push(l);
    }
    if slug.is_empty() {
        slug.push(policy.clone());
    }
    let mut slug: String = slug
        .join("-")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' { c } else { '_' })
        .collect();
    slug.truncate(48);
    let mut canonical: Vec<String> =
        spec.set.iter().chain(grid_values.iter()).map(|(k, v)| format!("{k}={v}")).collect();
    canonical.sort();
    let digest = Sha256::digest(canonical.join("\n").as_bytes());
    let hash: String = digest.iter().take(3).map(|b| format!("{b:02x}")).collect();
    Cell { id: format!("{slug}-{hash}"), label: label.join(" "), policy, real_fraction, grid_values }
}

/// A value as it appears in slugs and labels: `1` rather than `1.0`, strings unquoted.
pub fn short_value(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Float(f) => format!("{f}"),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        other => other.to_string(),
    }
}

fn get_dotted<'a>(value: &'a toml::Value, key: &str) -> Option<&'a toml::Value> {
    key.split('.').try_fold(value, |v, part| v.get(part))
}

fn remove_dotted(value: &mut toml::Value, key: &str) {
    let (parent, last) = match key.rsplit_once('.') {
        Some((p, l)) => (Some(p), l),
        None => (None, key),
    };
    let table = match parent {
        Some(p) => p.split('.').try_fold(&mut *value, |v, part| v.get_mut(part)),
        None => Some(value),
    };
    if let Some(toml::Value::Table(t)) = table {
        t.remove(last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sweep(grid: &str) -> Result<Sweep> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("base.toml"), "[generations]\ngenerations = 2\n").unwrap();
        let text = format!("name = \"t\"\nbase = \"base.toml\"\nseeds = [7, 8]\n{grid}");
        Sweep::expand(SweepSpec::parse(&dir.path().join("s.toml"), &text)?)
    }

    #[test]
    fn lambda_applies_only_to_policies_that_take_it() {
        let s = sweep("[grid]\npolicy = [\"replace\", \"mix\"]\nreal_fraction = [0.25, 0.5]\ntemperature = [1.0]\n")
            .unwrap();
        let labels: Vec<&str> = s.cells.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(labels, ["replace T=1", "mix λ=0.25 T=1", "mix λ=0.5 T=1"]);
        assert_eq!(s.runs.len(), 6);
        assert!(s.runs[0].name.starts_with("t-replace-t1-") && s.runs[0].name.ends_with("-s7"), "{}", s.runs[0].name);
    }

    #[test]
    fn ids_do_not_depend_on_the_other_cells() {
        let a = sweep("[grid]\npolicy = [\"replace\"]\ntemperature = [1.0]\n").unwrap();
        let b = sweep("[grid]\npolicy = [\"accumulate\", \"replace\"]\ntemperature = [0.5, 1.0]\n").unwrap();
        let id = &a.cells[0].id;
        assert!(b.cells.iter().any(|c| &c.id == id), "{id} in {:?}", b.cells);
        // And the same file always gives the same ids.
        assert_eq!(sweep("[grid]\npolicy = [\"replace\"]\ntemperature = [1.0]\n").unwrap().cells, a.cells);
    }

    #[test]
    fn policy_needing_lambda_without_one_is_refused() {
        let e = format!("{:#}", sweep("[grid]\npolicy = [\"mix\"]\n").unwrap_err());
        assert!(e.contains("policy 'mix' needs a real fraction"), "{e}");
        let e = format!("{:#}", sweep("[grid]\npolicy = [\"replace\"]\nreal_fraction = [0.5]\n").unwrap_err());
        assert!(e.contains("none of its policies takes λ"), "{e}");
        let e = format!("{:#}", sweep("[grid]\npolicy = [\"replase\"]\n").unwrap_err());
        assert!(e.contains("unknown policy 'replase'"), "{e}");
        let e = format!("{:#}", sweep("[grid]\nconfig = { \"train.learning_rat\" = [0.1] }\n").unwrap_err());
        assert!(e.contains("learning_rat"), "{e}");
    }

    #[test]
    fn cell_configs_carry_overrides_seed_and_n() {
        let s = sweep(
            "[grid]\npolicy = [\"mix\"]\nreal_fraction = [0.5]\nconfig = { \"train.learning_rate\" = [0.001] }\n",
        )
        .unwrap();
        let (cfg, text) = s.run_config(&s.runs[1]).unwrap();
        assert_eq!(cfg.train.seed, 8);
        assert_eq!(cfg.generations.generations, 2);
        assert_eq!(cfg.generations.real_fraction, Some(0.5));
        assert_eq!(cfg.train.learning_rate, 0.001);
        assert_eq!(Config::from_toml(&text).unwrap(), cfg);
    }
}
