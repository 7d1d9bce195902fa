//! The sweep file: a base config, N, a grid of settings and a list of seeds.
//!
//! ```toml
//! name = "gerstgrasser"               # names the sweep's folder and prefixes its runs
//! description = "replace vs accumulate"
//! base = "../configs/default.toml"    # relative to this file
//! generations = 5                     # N: generations after generation 0
//! seeds = [1, 2, 3]                   # train.seed of each replicate
//!
//! [set]                               # config keys set in every cell (dotted)
//! "generations.synthetic_tokens" = 0
//!
//! [grid]                              # every combination of these is a cell
//! policy = ["replace", "accumulate", "mix"]
//! real_fraction = [0.5]               # λ, used by the policies that take one (mix, fresh)
//! temperature = [0.7, 1.0]
//! top_k = [40]
//! top_p = [0.9, 1.0]
//! config = { "train.learning_rate" = [1e-3, 3e-3] }   # any config key
//! ```
//!
//! `[[grid]]` may be repeated: the cells are the union of each grid's combinations.
//!
//! `[[claim]]`, repeated, names what the sweep is run to test, before it runs: each
//! claim's sentence, its primary measure, the cell (or cells) and the test. `sweep
//! report` gives a verdict on each (`verdicts.csv`, the report, its output), also
//! Bonferroni-adjusted over the file's claims (see `super::claims`):
//!
//! ```toml
//! [[claim]]
//! says = "Replacing the data collapses the models"
//! measure = "held_out_perplexity"      # the primary measure, chosen before the run
//! cell = { policy = "replace" }        # grid settings naming one cell, as `baseline`
//! test = "collapses"                   # see ClaimTest: "does not collapse", "rises", "falls",
//!                                      # "above", "below", "faster", "slower", "threshold"
//! secondary = ["coverage"]             # read the same way, reported, never adjusted
//!
//! [[claim]]
//! says = "Accumulating ends above nothing: its perplexity is below replace's"
//! measure = "held_out_perplexity"
//! cell = { policy = "accumulate" }
//! test = "below"                       # the paired contrast at `generation` (default N)
//! than = { policy = "replace" }        # default: the baseline
//!
//! [[claim]]
//! says = "Enough real data stops the collapse"
//! measure = "held_out_perplexity"
//! test = "threshold"                   # along a numeric axis, among the cells `cell` names
//! axis = "real_fraction"
//! ```
//! Unknown keys are rejected, and every cell's config is validated the way
//! `lmloop generations` validates a config, before anything runs.
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The sweep file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepToml {
    /// Name of the sweep: its folder `analysis/sweeps/NAME/` and the prefix of its run
    /// names. Letters, digits, `-` and `_`. Required.
    name: String,
    /// One line shown by `plan` and in the report. Default: none.
    #[serde(default)]
    description: Option<String>,
    /// Base run configuration, relative to the sweep file. Required.
    base: PathBuf,
    /// Generations after generation 0 (N) of every run. Default: the base config's
    /// `generations.generations`.
    #[serde(default)]
    generations: Option<u32>,
    /// Seeds (`train.seed`) every cell runs with; distinct. Required, at least one:
    /// three or more give useful confidence intervals.
    seeds: Vec<u64>,
    /// Config keys (dotted, e.g. `"train.max_tokens"`) set to one value in every cell.
    /// Default: none.
    #[serde(default)]
    set: toml::Table,
    /// The cell every other is contrasted with, by its grid settings, e.g.
    /// `baseline = { policy = "replace" }`; they must name exactly one cell. Default:
    /// the real-data control when the sweep has one cell of it, else no contrasts.
    #[serde(default)]
    baseline: Option<toml::Table>,
    /// One grid (`[grid]`) or several (`[[grid]]`). Required.
    #[serde(default)]
    grid: Option<toml::Value>,
    /// What the sweep is run to test (`[[claim]]`, repeated). Default: none.
    #[serde(default)]
    claim: Vec<ClaimToml>,
}

/// One `[[claim]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimToml {
    /// The claim in one sentence, as the paper or the README states it. Required.
    says: String,
    /// Its primary measure (a column the sweeps pool). Required.
    measure: String,
    /// Grid settings naming the cell (one cell; for a threshold, the cells on the
    /// ladder). Required but for a threshold, where the default is every cell.
    #[serde(default)]
    cell: Option<toml::Table>,
    /// "collapses", "does not collapse", "rises", "falls", "above", "below", "faster",
    /// "slower" or "threshold". Required.
    test: String,
    /// For "above", "below", "faster" and "slower": the cell contrasted with. Default:
    /// the baseline.
    #[serde(default)]
    than: Option<toml::Table>,
    /// For "above" and "below": the generation of the contrast. Default: N.
    #[serde(default)]
    generation: Option<u32>,
    /// For "threshold": the numeric grid axis. Required there.
    #[serde(default)]
    axis: Option<String>,
    /// Measures read the same way as the primary one and reported beside it, without
    /// adjustment. Default: none.
    #[serde(default)]
    secondary: Vec<String>,
}

/// What a claim asserts about its measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimTest {
    /// The cell's rate over generations 1..N lies on the measure's collapse side.
    Collapses,
    /// The cell's rate does not: wholly on the safe side (shown), or containing 0 with
    /// an informative bound (bounded).
    DoesNotCollapse,
    /// The cell's rate lies above 0, whichever way the measure moves under collapse.
    Rises,
    /// It lies below 0.
    Falls,
    /// The paired contrast with `than` at a generation lies above 0.
    Above,
    /// It lies below 0.
    Below,
    /// The per-seed difference of the two cells' rates lies on the collapse side: the
    /// cell collapses faster than `than`.
    Faster,
    /// It lies on the safe side: the cell collapses more slowly.
    Slower,
    /// Along `axis`, a value from which no rate collapses.
    Threshold,
}

impl ClaimTest {
    /// Every test, as a sweep file names it.
    pub const ALL: [ClaimTest; 9] = [
        ClaimTest::Collapses,
        ClaimTest::DoesNotCollapse,
        ClaimTest::Rises,
        ClaimTest::Falls,
        ClaimTest::Above,
        ClaimTest::Below,
        ClaimTest::Faster,
        ClaimTest::Slower,
        ClaimTest::Threshold,
    ];

    /// Whether the test reads a pair of cells (`than`, default the baseline).
    pub fn pairs(self) -> bool {
        matches!(self, ClaimTest::Above | ClaimTest::Below | ClaimTest::Faster | ClaimTest::Slower)
    }

    pub fn name(self) -> &'static str {
        match self {
            ClaimTest::Collapses => "collapses",
            ClaimTest::DoesNotCollapse => "does not collapse",
            ClaimTest::Rises => "rises",
            ClaimTest::Falls => "falls",
            ClaimTest::Above => "above",
            ClaimTest::Below => "below",
            ClaimTest::Faster => "faster",
            ClaimTest::Slower => "slower",
            ClaimTest::Threshold => "threshold",
        }
    }
}

/// A validated claim (its cells are checked against the grid by `Sweep::expand`).
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub says: String,
    pub measure: String,
    /// Grid settings (empty: every cell, for a threshold).
    pub cell: Vec<(String, toml::Value)>,
    pub test: ClaimTest,
    /// For a contrast: the other cell's settings (None: the baseline).
    pub than: Option<Vec<(String, toml::Value)>>,
    /// For a contrast: the generation (N unless given).
    pub generation: u32,
    /// For a threshold: the axis's config key.
    pub axis: Option<String>,
    pub secondary: Vec<String>,
}

/// How claim `i` of `count` is named in errors and verdicts: "claim" alone, or "claim 2"
/// among several.
pub fn claim_label(i: usize, count: usize) -> String {
    if count > 1 {
        format!("claim {}", i + 1)
    } else {
        "claim".to_string()
    }
}

impl ClaimToml {
    fn validate(self, label: &str, generations: u32) -> Result<Claim> {
        if self.says.trim().is_empty() {
            bail!("{label}.says is empty: state the claim in one sentence");
        }
        let known = || super::measures::measures().iter().map(|(m, _)| *m).collect::<Vec<_>>().join(", ");
        for m in std::iter::once(&self.measure).chain(&self.secondary) {
            if super::measures::kind_of(m).is_none() {
                bail!("{label} names the measure '{m}', which sweeps do not pool (they pool: {})", known());
            }
        }
        for (i, m) in self.secondary.iter().enumerate() {
            if *m == self.measure || self.secondary[..i].contains(m) {
                bail!("{label}.secondary lists {m} twice (or as the primary measure too)");
            }
        }
        let Some(test) = ClaimTest::ALL.into_iter().find(|t| t.name() == self.test) else {
            let names: Vec<String> = ClaimTest::ALL.iter().map(|t| format!("\"{}\"", t.name())).collect();
            bail!("{label}.test is '{}'; it must be one of {}", self.test, names.join(", "));
        };
        if !test.pairs() && self.than.is_some() {
            bail!("{label}: than belongs to the tests that compare two cells (above, below, faster, slower) only");
        }
        if !matches!(test, ClaimTest::Above | ClaimTest::Below) && self.generation.is_some() {
            bail!("{label}: generation belongs to the tests \"above\" and \"below\" only (the others read rates over generations 1..N)");
        }
        if test != ClaimTest::Threshold && self.axis.is_some() {
            bail!("{label}: axis belongs to the test \"threshold\" only");
        }
        let cell = match self.cell {
            Some(t) => flatten_keys(&format!("{label}.cell"), &t)?,
            None if test == ClaimTest::Threshold => Vec::new(),
            None => bail!("{label} names no cell: give its grid settings, e.g. cell = {{ policy = \"replace\" }}"),
        };
        let generation = self.generation.unwrap_or(generations);
        if generation > generations {
            bail!("{label}.generation is {generation}, beyond the sweep's last generation {generations}");
        }
        let axis = match (test, self.axis) {
            (ClaimTest::Threshold, None) => {
                bail!("{label} is a threshold but names no axis, e.g. axis = \"real_fraction\"")
            }
            (_, axis) => axis.map(|a| config_key_of(&a)),
        };
        if let Some(a) = &axis {
            if cell.iter().any(|(k, _)| config_key_of(k) == *a) {
                bail!("{label}.cell sets {a}, the threshold's own axis: name only the other settings");
            }
        }
        Ok(Claim {
            says: self.says,
            measure: self.measure,
            cell,
            test,
            than: self.than.map(|t| flatten_keys(&format!("{label}.than"), &t)).transpose()?,
            generation,
            axis,
            secondary: self.secondary,
        })
    }
}

/// One grid: every combination of its listed values is a cell.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GridToml {
    /// Data policies (`generations.policy`). Default: the base config's policy.
    #[serde(default)]
    policy: Option<Vec<String>>,
    /// Real fractions λ in [0, 1] (`generations.real_fraction`), applied to the
    /// policies that take one (mix, fresh); the others run once. Default: none.
    #[serde(default)]
    real_fraction: Option<Vec<f64>>,
    /// Sampling temperatures (`sample.temperature`). Default: the base config's.
    #[serde(default)]
    temperature: Option<Vec<f64>>,
    /// Top-k filters (`sample.top_k`). Default: the base config's.
    #[serde(default)]
    top_k: Option<Vec<i64>>,
    /// Top-p filters (`sample.top_p`). Default: the base config's.
    #[serde(default)]
    top_p: Option<Vec<f64>>,
    /// Any other config key (dotted) with its list of values. Default: none.
    #[serde(default)]
    config: toml::Table,
}

/// One axis of a grid: a config key and the values it takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    /// Dotted config key, e.g. `sample.temperature`.
    pub key: String,
    pub values: Vec<toml::Value>,
}

/// A validated grid: its axes in expansion order (outermost first).
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    pub axes: Vec<Axis>,
}

/// A parsed and validated sweep file.
#[derive(Debug, Clone)]
pub struct SweepSpec {
    /// The sweep file itself.
    pub file: PathBuf,
    pub name: String,
    pub description: Option<String>,
    /// The base config, resolved against the sweep file's folder.
    pub base: PathBuf,
    /// The base config as written (before any override).
    pub base_toml: toml::Value,
    /// N, generations after generation 0.
    pub generations: u32,
    pub seeds: Vec<u64>,
    /// Keys set in every cell, sorted.
    pub set: Vec<(String, toml::Value)>,
    pub grids: Vec<Grid>,
    /// The baseline's grid settings (`baseline = { … }`), when the file names one.
    pub baseline: Option<Vec<(String, toml::Value)>>,
    /// What the sweep is run to test, in the file's order.
    pub claims: Vec<Claim>,
}

/// Config keys the grid's named axes stand for.
pub const POLICY_KEY: &str = "generations.policy";
pub const REAL_FRACTION_KEY: &str = "generations.real_fraction";
pub const TEMPERATURE_KEY: &str = "sample.temperature";
pub const TOP_K_KEY: &str = "sample.top_k";
pub const TOP_P_KEY: &str = "sample.top_p";
pub const SEED_KEY: &str = "train.seed";
pub const GENERATIONS_KEY: &str = "generations.generations";

/// The config key a grid field or config key stands for (`policy` →
/// `generations.policy`; a dotted key is itself).
pub fn config_key_of(axis: &str) -> String {
    [POLICY_KEY, REAL_FRACTION_KEY, TEMPERATURE_KEY, TOP_K_KEY, TOP_P_KEY]
        .into_iter()
        .find(|k| named_axis(k) == Some(axis))
        .map_or_else(|| axis.to_string(), str::to_string)
}

/// The grid field that stands for a config key, when it has one.
pub fn named_axis(key: &str) -> Option<&'static str> {
    match key {
        POLICY_KEY => Some("policy"),
        REAL_FRACTION_KEY => Some("real_fraction"),
        TEMPERATURE_KEY => Some("temperature"),
        TOP_K_KEY => Some("top_k"),
        TOP_P_KEY => Some("top_p"),
        _ => None,
    }
}

impl SweepSpec {
    /// Reads and validates a sweep file (not yet its cells: see `cells::expand`).
    pub fn load(path: &Path) -> Result<SweepSpec> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read sweep file {}", path.display()))?;
        Self::parse(path, &text).with_context(|| format!("invalid sweep file {}", path.display()))
    }

    /// Parses sweep-file text; `path` locates the base config.
    pub fn parse(path: &Path, text: &str) -> Result<SweepSpec> {
        let raw: SweepToml = crate::toml_error::from_str(text, None).map_err(anyhow::Error::msg)?;
        check_name(&raw.name)?;
        let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let base = folder.join(&raw.base);
        let base_text = std::fs::read_to_string(&base).with_context(|| {
            format!("cannot read the base config {} (base is relative to the sweep file)", base.display())
        })?;
        let base_config: crate::config::Config =
            crate::toml_error::from_str(&base_text, Some(&base)).map_err(|e| anyhow::anyhow!("the base config {e}"))?;
        base_config.validate().with_context(|| format!("the base config {} is invalid", base.display()))?;
        let base_toml: toml::Value = toml::from_str(&base_text).context("the base config is not valid TOML")?;

        let generations = match raw.generations {
            Some(n) => n,
            None => base_toml
                .get("generations")
                .and_then(|g| g.get("generations"))
                .and_then(|v| v.as_integer())
                .map(|n| n as u32)
                .unwrap_or_else(|| crate::config::GenerationsConfig::default().generations),
        };
        if generations == 0 {
            bail!("generations must be at least 1 (generation 0 trains on real data; N more follow)");
        }

        if raw.seeds.is_empty() {
            bail!("seeds is empty: list at least one seed (three or more give useful confidence intervals)");
        }
        for (i, s) in raw.seeds.iter().enumerate() {
            if raw.seeds[..i].contains(s) {
                bail!("seeds lists {s} twice: every seed must be distinct, or the replicates would be one run");
            }
        }

        let set = flatten_keys("set", &raw.set)?;
        for (key, value) in &set {
            check_free_key("set", key)?;
            if value.is_array() || value.is_table() {
                bail!("set.{key} must be a single value (lists of values belong in [grid])");
            }
            check_type(text, &format!("set.{key}"), key, value)?;
        }

        let grids_raw: Vec<toml::Value> = match raw.grid {
            None => bail!("the sweep has no [grid]: list at least one setting, e.g. policy = [\"replace\"]"),
            Some(toml::Value::Array(items)) => items,
            Some(table @ toml::Value::Table(_)) => vec![table],
            Some(_) => bail!("grid must be a table ([grid]) or an array of tables ([[grid]])"),
        };
        if grids_raw.is_empty() {
            bail!("the sweep has no [grid]: list at least one setting, e.g. policy = [\"replace\"]");
        }
        let many = grids_raw.len() > 1;
        let mut grids = Vec::new();
        for (i, g) in grids_raw.into_iter().enumerate() {
            let label = if many { format!("grid {}", i + 1) } else { "grid".to_string() };
            let parsed: GridToml =
                g.try_into().map_err(|e: toml::de::Error| anyhow::anyhow!("{label}: {}", e.message().trim()))?;
            let at = if many { format!("grid[{}]", i + 1) } else { "grid".to_string() };
            grids
                .push(parsed.validate(&label, &set, |key, v| check_type(text, &format!("{at}.config.{key}"), key, v))?);
        }
        let count = raw.claim.len();
        let claims = raw
            .claim
            .into_iter()
            .enumerate()
            .map(|(i, c)| c.validate(&claim_label(i, count), generations))
            .collect::<Result<Vec<Claim>>>()?;
        Ok(SweepSpec {
            claims,
            file: path.to_path_buf(),
            name: raw.name,
            description: raw.description,
            base,
            base_toml,
            generations,
            seeds: raw.seeds,
            set,
            grids,
            baseline: match raw.baseline {
                Some(t) if t.is_empty() => bail!(
                    "baseline is empty: name the settings of one cell, e.g. baseline = {{ policy = \"replace\" }}"
                ),
                Some(t) => Some(flatten_keys("baseline", &t)?),
                None => None,
            },
        })
    }
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['-', '.'])
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        bail!("name must be 1-64 letters, digits, '-' or '_' (it names a folder and prefixes run names), got '{name}'");
    }
    Ok(())
}

/// Keys a sweep controls itself and that therefore cannot be set or gridded directly.
fn check_free_key(section: &str, key: &str) -> Result<()> {
    match key {
        SEED_KEY => bail!("{section} sets {SEED_KEY}: list the seeds in the top-level `seeds` instead"),
        GENERATIONS_KEY => bail!("{section} sets {GENERATIONS_KEY}: use the top-level `generations` instead"),
        _ => Ok(()),
    }
}

/// Refuses a value of the wrong type for config key `key` (a `[set]` value, or one of a
/// grid's `config` values) as a config file would; the message names `at`, its key in
/// the sweep file (`set.train.seed`), and its line. Values are checked with each cell.
fn check_type(text: &str, at: &str, key: &str, value: &toml::Value) -> Result<()> {
    let mut doc = toml::Value::Table(toml::Table::new());
    set_dotted(&mut doc, key, value.clone())?;
    match doc.try_into::<crate::config::Config>() {
        Ok(_) => Ok(()),
        Err(e) => bail!("{}", crate::toml_error::at_key(text, None, at, e.message().trim())),
    }
}

/// Flattens nested tables into dotted keys (`train = { seed = 1 }` and
/// `"train.seed" = 1` both give `train.seed`); arrays and scalars are leaves.
fn flatten_keys(section: &str, table: &toml::Table) -> Result<Vec<(String, toml::Value)>> {
    fn walk(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, toml::Value>, section: &str) -> Result<()> {
        for (k, v) in table {
            let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            if key.split('.').any(|part| part.is_empty()) {
                bail!("{section} has a malformed key '{key}'");
            }
            match v {
                toml::Value::Table(t) => walk(&key, t, out, section)?,
                other => {
                    if out.insert(key.clone(), other.clone()).is_some() {
                        bail!("{section} names {key} twice");
                    }
                }
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk("", table, &mut out, section)?;
    Ok(out.into_iter().collect())
}

impl GridToml {
    /// `check_type` refuses a `config` value of the wrong type for its key.
    fn validate(
        self,
        label: &str,
        set: &[(String, toml::Value)],
        check_type: impl Fn(&str, &toml::Value) -> Result<()>,
    ) -> Result<Grid> {
        let mut axes = Vec::new();
        let mut push = |field: &str, key: &str, values: Vec<toml::Value>| -> Result<()> {
            if values.is_empty() {
                bail!("{label}.{field} is empty: list at least one value, or leave the key out");
            }
            for (i, v) in values.iter().enumerate() {
                if values[..i].contains(v) {
                    bail!("{label}.{field} lists {v} twice");
                }
            }
            if set.iter().any(|(k, _)| k == key) {
                bail!("{key} is both in [set] and in {label}: keep one");
            }
            axes.push(Axis { key: key.to_string(), values });
            Ok(())
        };
        if let Some(policies) = self.policy {
            push("policy", POLICY_KEY, policies.into_iter().map(toml::Value::String).collect())?;
        }
        if let Some(lambdas) = self.real_fraction {
            for &l in &lambdas {
                if !(0.0..=1.0).contains(&l) {
                    bail!("{label}.real_fraction value {l} is outside [0, 1] (λ is the share of real data)");
                }
            }
            push("real_fraction", REAL_FRACTION_KEY, lambdas.into_iter().map(toml::Value::Float).collect())?;
        }
        if let Some(ts) = self.temperature {
            let name = format!("{label}.temperature");
            for &t in &ts {
                crate::sample::Sampling::named(t, None, None, [&name, "", ""])?;
            }
            push("temperature", TEMPERATURE_KEY, ts.into_iter().map(toml::Value::Float).collect())?;
        }
        if let Some(ks) = self.top_k {
            let name = format!("{label}.top_k");
            for &k in &ks {
                crate::sample::Sampling::named(1.0, Some(k), None, ["", &name, ""])?;
            }
            push("top_k", TOP_K_KEY, ks.into_iter().map(toml::Value::Integer).collect())?;
        }
        if let Some(ps) = self.top_p {
            let name = format!("{label}.top_p");
            for &p in &ps {
                crate::sample::Sampling::named(1.0, None, Some(p), ["", "", &name])?;
            }
            push("top_p", TOP_P_KEY, ps.into_iter().map(toml::Value::Float).collect())?;
        }
        let config_section = format!("{label}.config");
        for (key, value) in flatten_keys(&config_section, &self.config)? {
            check_free_key(&config_section, &key)?;
            if let Some(field) = named_axis(&key) {
                bail!("{config_section} names {key}: use {label}.{field} instead");
            }
            let values = match value {
                toml::Value::Array(items) => items,
                other => bail!("{config_section}.{key} must be a list of values, got {other}"),
            };
            values.iter().try_for_each(|v| check_type(&key, v))?;
            push(&format!("config.{key}"), &key, values)?;
        }
        if axes.is_empty() {
            bail!("{label} is empty: list at least one setting, e.g. policy = [\"replace\"]");
        }
        Ok(Grid { axes })
    }
}

/// Sets `a.b.c = v`, creating tables on the way; fails where a non-table is in the way.
pub fn set_dotted(value: &mut toml::Value, key: &str, v: toml::Value) -> Result<()> {
    let parts: Vec<&str> = key.split('.').collect();
    let mut here = value;
    for (depth, part) in parts.iter().enumerate() {
        let toml::Value::Table(table) = here else {
            bail!("cannot set {key}: {} is not a table", parts[..depth].join("."));
        };
        if depth + 1 == parts.len() {
            table.insert(part.to_string(), v);
            return Ok(());
        }
        here = table.entry(part.to_string()).or_insert_with(|| toml::Value::Table(Default::default()));
    }
    unreachable!("a key has at least one part")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SweepSpec> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("base.toml"), "[generations]\ngenerations = 4\n").unwrap();
        let file = dir.path().join("s.toml");
        SweepSpec::parse(&file, text)
    }

    fn err(text: &str) -> String {
        format!("{:#}", parse(text).unwrap_err())
    }

    const HEAD: &str = "name = \"s\"\nbase = \"base.toml\"\nseeds = [1, 2]\n";

    #[test]
    fn defaults_and_dotted_keys() {
        let s = parse(&format!("{HEAD}[set]\ntrain.max_tokens = 5000\n[grid]\npolicy = [\"replace\"]\nconfig = {{ \"train.learning_rate\" = [1e-3, 2e-3] }}\n")).unwrap();
        assert_eq!(s.generations, 4, "N defaults to the base config's");
        assert_eq!(s.set, vec![("train.max_tokens".to_string(), toml::Value::Integer(5000))]);
        let keys: Vec<&str> = s.grids[0].axes.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(keys, ["generations.policy", "train.learning_rate"]);
    }

    #[test]
    fn bad_files_get_one_sentence() {
        assert!(err(&format!("{HEAD}colour = 1\n[grid]\npolicy = [\"replace\"]\n")).contains("unknown field `colour`"));
        assert!(err(&format!("{HEAD}[grid]\npolcy = [\"replace\"]\n")).contains("unknown field `polcy`"));
        assert!(err(HEAD).contains("no [grid]"));
        assert!(err(&format!("{HEAD}[grid]\n")).contains("grid is empty"));
        assert!(err(&format!("{HEAD}[grid]\ntemperature = []\n")).contains("grid.temperature is empty"));
        assert!(err(&format!("{HEAD}[grid]\nreal_fraction = [0.5, 1.5]\n")).contains("outside [0, 1]"));
        assert!(err("name = \"s\"\nbase = \"base.toml\"\nseeds = [1, 1]\n[grid]\npolicy = [\"replace\"]\n")
            .contains("seeds lists 1 twice"));
        assert!(err(&format!("{HEAD}[grid]\nconfig = {{ \"train.seed\" = [1, 2] }}\n")).contains("top-level `seeds`"));
        assert!(err(&format!("{HEAD}[grid]\nconfig = {{ \"sample.temperature\" = [1.0] }}\n"))
            .contains("use grid.temperature"));
        assert!(err("name = \"a b\"\nbase = \"base.toml\"\nseeds = [1]\n[grid]\npolicy = [\"replace\"]\n")
            .contains("name must be"));
        assert!(err("name = \"s\"\nbase = \"missing.toml\"\nseeds = [1]\n[grid]\npolicy = [\"replace\"]\n")
            .contains("cannot read the base config"));
    }
}
