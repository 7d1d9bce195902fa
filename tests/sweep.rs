//! Sweeps end to end through the binary: stable cells and run names, a killed sweep
//! resumes without recomputing, a failed run is named with its log, the summary's
//! intervals are the hand-computed ones, the SLURM script is valid bash naming every
//! run, bad sweep files get one clear sentence.
mod common;

use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// The tiny model on the toy corpus, trained by epochs (2 passes over the mixture).
const BASE: &str = r#"
[data]
corpus = "toy"
vocab_size = 300
[model]
n_layer = 2
n_head = 2
n_embd = 32
block_size = 32
[train]
batch_size = 16
epochs = 2.0
learning_rate = 3e-3
min_learning_rate = 3e-4
warmup_steps = 5
eval_interval = 0
eval_batches = 2
[sample]
batch_size = 16
max_doc_tokens = 96
[runtime]
device = "cpu"
threads = 1
"#;

/// A project folder with the toy corpus prepared, `base.toml` and `sweep.toml`.
fn project(sweep: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    prepared(&dir.path().join("corpora/real/toy"), 300);
    std::fs::write(dir.path().join("base.toml"), BASE).unwrap();
    std::fs::write(dir.path().join("sweep.toml"), sweep).unwrap();
    dir
}

/// A folder with only the two files (for commands that never start a run).
fn files_only(sweep: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("base.toml"), BASE).unwrap();
    std::fs::write(dir.path().join("sweep.toml"), sweep).unwrap();
    dir
}

fn sweep_file(name: &str, generations: u32, seeds: &str, grid: &str) -> String {
    format!("name = \"{name}\"\nbase = \"base.toml\"\ngenerations = {generations}\nseeds = {seeds}\n{grid}")
}

fn run_names(plan: &str) -> Vec<String> {
    plan.lines()
        .skip_while(|l| !l.starts_with("runs"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect()
}

fn generations_done(root: &Path, run: &str) -> usize {
    let path = root.join(format!("analysis/{run}/generations.csv"));
    std::fs::read_to_string(path).map(|t| t.lines().count().saturating_sub(1)).unwrap_or(0)
}

fn mtime(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).modified().unwrap()
}

/// Rows of a CSV as maps from column name to text.
fn csv_rows(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    r.records().map(|rec| header.iter().cloned().zip(rec.unwrap().iter().map(str::to_string)).collect()).collect()
}

#[test]
fn plan_is_stable_and_editing_the_grid_keeps_run_names() {
    let grid = "[grid]\npolicy = [\"replace\", \"mix\"]\nreal_fraction = [0.5]\ntemperature = [1.0]\n";
    let dir = files_only(&sweep_file("st", 2, "[1, 2]", grid));
    let first = lmloop(dir.path(), &["sweep", "plan", "sweep.toml"]);
    assert_eq!(first.0, 0, "{}", first.2);
    let again = lmloop(dir.path(), &["sweep", "plan", "sweep.toml"]);
    assert_eq!(first.1, again.1, "the same file gives the same plan");
    let names = run_names(&first.1);
    assert_eq!(names.len(), 4, "2 cells × 2 seeds: {}", first.1);
    assert!(names[0].starts_with("st-replace-t1-") && names[0].ends_with("-s1"), "{names:?}");
    assert!(names[2].starts_with("st-mix-l0.5-t1-"), "{names:?}");
    // Without the prepared corpus the compute stays in passes over |R|: 2 epochs × 3 generations.
    assert!(first.1.contains("not prepared yet") && first.1.contains("6 |R|"), "{}", first.1);

    // A wider grid and one more seed: every old run keeps its name.
    let wider = "[grid]\npolicy = [\"accumulate\", \"replace\", \"mix\"]\nreal_fraction = [0.5, 0.25]\ntemperature = [0.7, 1.0]\n";
    std::fs::write(dir.path().join("sweep.toml"), sweep_file("st", 2, "[1, 2, 3]", wider)).unwrap();
    let out = lmloop(dir.path(), &["sweep", "plan", "sweep.toml"]);
    assert_eq!(out.0, 0, "{}", out.2);
    let more = run_names(&out.1);
    assert_eq!(more.len(), (2 + 2 + 4) * 3);
    for n in &names {
        assert!(more.contains(n), "{n} kept in {more:?}");
    }
}

#[test]
fn bad_sweep_files_get_one_clear_sentence() {
    let cases = [
        (sweep_file("b", 2, "[1]", "colour = \"red\"\n[grid]\npolicy = [\"replace\"]\n"), "unknown field `colour`"),
        (
            sweep_file("b", 2, "[1]", "[grid]\npolicy = [\"replace\"]\ntemprature = [1.0]\n"),
            "unknown field `temprature`",
        ),
        (sweep_file("b", 2, "[1]", ""), "no [grid]"),
        (sweep_file("b", 2, "[1]", "[grid]\n"), "grid is empty"),
        (sweep_file("b", 2, "[1]", "[grid]\npolicy = []\n"), "grid.policy is empty"),
        (sweep_file("b", 2, "[1]", "[grid]\npolicy = [\"mix\"]\nreal_fraction = [0.5, 1.2]\n"), "outside [0, 1]"),
        (sweep_file("b", 2, "[1, 2, 1]", "[grid]\npolicy = [\"replace\"]\n"), "seeds lists 1 twice"),
        (sweep_file("b", 2, "[1]", "[grid]\npolicy = [\"replace\", \"mix\"]\n"), "policy 'mix' needs a real fraction"),
        (sweep_file("b", 2, "[1]", "[grid]\npolicy = [\"repalce\"]\n"), "unknown policy 'repalce'"),
        (sweep_file("b", 2, "[1]", "[grid]\nconfig = { \"model.n_layerz\" = [2] }\n"), "n_layerz"),
        (sweep_file("b", 0, "[1]", "[grid]\npolicy = [\"replace\"]\n"), "generations must be at least 1"),
        // A value of the wrong type is named by its key and line, in [set] as in a grid.
        (sweep_file("b", 2, "[1, \"2\"]", "[grid]\npolicy = [\"replace\"]\n"), "sweep.toml: line 4: seeds: invalid type: string \"2\", expected u64"),
        (
            sweep_file("b", 2, "[1]", "[set]\n\"train.truncated_ce_gamma\" = \"abc\"\n[grid]\npolicy = [\"replace\"]\n"),
            "sweep.toml: line 6: set.train.truncated_ce_gamma: invalid type: string \"abc\", expected f64",
        ),
        (
            sweep_file("b", 2, "[1]", "[[grid]]\npolicy = [\"replace\"]\n[[grid]]\npolicy = [\"accumulate\"]\nconfig = { \"curation.keep_fraction\" = [\"0.5\"] }\n"),
            "sweep.toml: line 9: grid[2].config.curation.keep_fraction: invalid type: string \"0.5\", expected f64",
        ),
    ];
    let grid = "[grid]\npolicy = [\"mix\"]\nreal_fraction = [0.5, 1.0]\n";
    let claim = |body: &str| sweep_file("b", 2, "[1]", &format!("{grid}[[claim]]\nsays = \"s\"\n{body}"));
    let claims = [
        (claim("measure = \"perplexity\"\ncell = { real_fraction = 0.5 }\ntest = \"collapses\"\n"), "sweeps do not pool"),
        (claim("measure = \"coverage\"\ncell = { real_fraction = 0.5 }\ntest = \"holds\"\n"), "claim.test is 'holds'"),
        (claim("measure = \"coverage\"\ncell = { real_fraction = 0.3 }\ntest = \"collapses\"\n"), "matches no cell"),
        (claim("measure = \"coverage\"\ncell = { policy = \"mix\" }\ntest = \"collapses\"\n"), "matches 2 cells"),
        (claim("measure = \"coverage\"\ntest = \"threshold\"\n"), "names no axis"),
        (claim("measure = \"coverage\"\ncell = { real_fraction = 0.5 }\ntest = \"below\"\n"), "has no baseline"),
        (
            claim("measure = \"coverage\"\ncell = { real_fraction = 0.5 }\nthan = { real_fraction = 1.0 }\ntest = \"collapses\"\n"),
            "than belongs to the tests",
        ),
        (claim("measure = \"coverage\"\ntest = \"collapses\"\n"), "names no cell"),
        (claim("measure = \"coverage\"\ncell = { real_fraction = 0.5 }\ntest = \"collapses\"\ncolour = 1\n"), "unknown field `colour`"),
    ];
    let cases = cases.into_iter().chain(claims);
    for (text, needle) in cases {
        let dir = files_only(&text);
        for command in ["plan", "run", "slurm", "status", "report"] {
            let out = lmloop(dir.path(), &["sweep", command, "sweep.toml"]);
            assert_clear_error(&out, needle);
            assert!(out.2.contains("sweep.toml"), "the file is named: {}", out.2);
        }
    }
    let dir = files_only(&sweep_file("b", 2, "[1]", "[grid]\npolicy = [\"replace\"]\n"));
    std::fs::write(dir.path().join("base.toml"), BASE.replace("[train]\n", "[train]\ntruncated_ce_gamma = \"abc\"\n"))
        .unwrap();
    let line = BASE.lines().position(|l| l == "[train]").unwrap() + 2;
    assert_clear_error(
        &lmloop(dir.path(), &["sweep", "plan", "sweep.toml"]),
        &format!("invalid sweep file sweep.toml: the base config ./base.toml, line {line}: train.truncated_ce_gamma: invalid type: string \"abc\", expected f64"),
    );
    let dir = files_only("");
    assert_clear_error(&lmloop(dir.path(), &["sweep", "plan", "missing.toml"]), "cannot read sweep file missing.toml");
}

#[test]
fn slurm_script_is_valid_bash_and_names_every_run() {
    let dir = files_only(&sweep_file("sl", 2, "[1, 2, 3]", "[grid]\npolicy = [\"replace\", \"accumulate\"]\n"));
    let plan = lmloop(dir.path(), &["sweep", "plan", "sweep.toml"]);
    let names = run_names(&plan.1);
    assert_eq!(names.len(), 6);
    let out = lmloop(
        dir.path(),
        &[
            "sweep",
            "slurm",
            "sweep.toml",
            "--partition",
            "gpu",
            "--time",
            "01:00:00",
            "--gpus-per-task",
            "1",
            "--cpus-per-task",
            "4",
            "--max-parallel",
            "2",
        ],
    );
    assert_eq!(out.0, 0, "{}", out.2);
    let script_path = dir.path().join("analysis/sweeps/sl/slurm/array.sbatch");
    let script = std::fs::read_to_string(&script_path).unwrap();
    for line in [
        "#SBATCH --array=0-5%2",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=01:00:00",
        "#SBATCH --gpus-per-task=1",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --requeue",
    ] {
        assert!(script.lines().any(|l| l == line), "{line} in:\n{script}");
    }
    assert!(script.contains("SLURM_ARRAY_TASK_ID") && script.contains("sweep run-task"), "{script}");
    for (i, name) in names.iter().enumerate() {
        assert!(script.contains(&format!("{name}  # {i}:")), "run {i} {name} is named:\n{script}");
        assert!(dir.path().join(format!("analysis/sweeps/sl/configs/{name}.toml")).exists());
    }
    let bash = std::process::Command::new("bash").arg("-n").arg(&script_path).output().unwrap();
    assert!(bash.status.success(), "bash -n: {}", String::from_utf8_lossy(&bash.stderr));

    // A task whose index no longer holds the run the script named refuses to start.
    let wrong = lmloop(dir.path(), &["sweep", "run-task", "sweep.toml", "--index", "1", "--expect", &names[0]]);
    assert_clear_error(&wrong, "the sweep file changed since the script was written");
    assert_clear_error(
        &lmloop(dir.path(), &["sweep", "run-task", "sweep.toml", "--index", "6"]),
        "array index 6 is out of range",
    );

    // --submit without sbatch says so and leaves the script in place.
    let no_sbatch = std::process::Command::new(env!("CARGO_BIN_EXE_lmloop"))
        .args(["sweep", "slurm", "sweep.toml", "--submit"])
        .current_dir(dir.path())
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let result =
        (no_sbatch.status.code().unwrap_or(-1), String::new(), String::from_utf8_lossy(&no_sbatch.stderr).into_owned());
    assert_clear_error(&result, "sbatch was not found");
}

#[test]
fn killed_sweep_resumes_without_recomputing_finished_work() {
    let dir = project(&sweep_file("kr", 3, "[1]", "[grid]\npolicy = [\"replace\", \"accumulate\"]\n"));
    let root = dir.path();
    let names = run_names(&lmloop(root, &["sweep", "plan", "sweep.toml"]).1);
    let (first, second) = (&names[0], &names[1]);
    let mut sweep = std::process::Command::new(env!("CARGO_BIN_EXE_lmloop"))
        .args(["sweep", "run", "sweep.toml", "--jobs", "1", "--threads", "1"])
        .current_dir(root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill the sweep once the first run finished and the second is part-way.
    let second_gen0 = root.join(format!("checkpoints/{second}/gen-00/DONE"));
    let t0 = Instant::now();
    while !(generations_done(root, first) == 4 && second_gen0.exists()) {
        assert!(t0.elapsed() < Duration::from_secs(240), "the sweep made no progress");
        assert!(sweep.try_wait().unwrap().is_none(), "the sweep ended before it was killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    sweep.kill().unwrap();
    sweep.wait().unwrap();
    assert!(generations_done(root, second) < 4, "the second run was interrupted part-way");
    // Its `generations` process dies with the sweep (it would otherwise hold the run's lock).
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join(format!("analysis/sweeps/kr/state/{second}.json"))).unwrap(),
    )
    .unwrap();
    let pid = state["pid"].as_u64().unwrap();
    let t0 = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(t0.elapsed() < Duration::from_secs(10), "the run's process outlived the sweep");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = lmloop(root, &["sweep", "status", "sweep.toml"]);
    assert!(status.1.contains("1 finished") && status.1.contains("1 interrupted"), "{}", status.1);

    let finished_weights = root.join(format!("checkpoints/{first}/gen-03/model.safetensors"));
    let resumed_weights = root.join(format!("checkpoints/{second}/gen-00/model.safetensors"));
    let (before_first, before_second) = (mtime(&finished_weights), mtime(&resumed_weights));
    let rerun = lmloop(root, &["sweep", "run", "sweep.toml", "--jobs", "1", "--threads", "1"]);
    assert_eq!(rerun.0, 0, "{}", rerun.2);
    assert!(rerun.2.contains("1 already finished, 1 to run"), "{}", rerun.2);
    assert_eq!(generations_done(root, second), 4, "the interrupted run finished");
    assert_eq!(mtime(&finished_weights), before_first, "the finished run was not recomputed");
    assert_eq!(mtime(&resumed_weights), before_second, "the interrupted run resumed after its finished generation 0");
    let status = lmloop(root, &["sweep", "status", "sweep.toml"]);
    assert!(status.1.contains("2 runs: 2 finished"), "{}", status.1);
}

/// Rebuilding lmloop while a sweep runs (its file replaced or removed) does not stop
/// the sweep: every run it starts runs the binary it started with.
#[test]
fn a_sweep_whose_binary_is_replaced_while_it_runs_still_starts_every_run() {
    let dir = project(&sweep_file("rb", 1, "[1, 2]", "[grid]\npolicy = [\"replace\"]\n"));
    let root = dir.path();
    let names = run_names(&lmloop(root, &["sweep", "plan", "sweep.toml"]).1);
    let bin = root.join("bin-copy/lmloop");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_lmloop"), &bin).unwrap();
    let sweep = std::process::Command::new(&bin)
        .args(["sweep", "run", "sweep.toml", "--jobs", "1", "--threads", "1"])
        .current_dir(root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let first = root.join(format!("checkpoints/{}/gen-00/DONE", names[0]));
    let t0 = Instant::now();
    while !first.exists() {
        assert!(t0.elapsed() < Duration::from_secs(240), "the sweep made no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::remove_file(&bin).unwrap();
    let out = sweep.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for name in &names {
        assert_eq!(generations_done(root, name), 2, "{name} ran to the end");
    }
}

#[test]
fn failed_run_is_named_with_its_log_and_missing_seed_is_reported() {
    // The second corpus does not exist: that cell's runs fail, the others still run.
    let grid = "[grid]\nconfig = { \"data.corpus\" = [\"toy\", \"absent\"] }\n";
    let dir = project(&sweep_file("fr", 1, "[1, 2]", grid));
    let root = dir.path();
    let names = run_names(&lmloop(root, &["sweep", "plan", "sweep.toml"]).1);
    assert_eq!(names.len(), 4);
    let out = lmloop(root, &["sweep", "run", "sweep.toml", "--jobs", "2", "--threads", "2"]);
    assert_clear_error(&out, "2 of 4 runs of sweep fr failed");
    let last = out.2.lines().last().unwrap();
    for failed in &names[2..] {
        let log = format!("analysis/sweeps/fr/logs/{failed}.log");
        assert!(last.contains(failed) && last.contains(&log), "{failed} and {log} in: {last}");
        let text = std::fs::read_to_string(root.join(&log)).unwrap();
        assert!(text.contains("absent"), "the log holds the run's own error: {text}");
    }
    for ok in &names[..2] {
        assert_eq!(generations_done(root, ok), 2, "{ok} finished beside the failures");
    }
    let status = lmloop(root, &["sweep", "status", "sweep.toml"]);
    assert!(status.1.contains("2 failed") && status.1.contains(&format!("{}.log", names[2])), "{}", status.1);

    // The report aggregates what exists and names what is missing.
    let report = lmloop(root, &["sweep", "report", "sweep.toml"]);
    assert_eq!(report.0, 0, "{}", report.2);
    assert!(report.1.contains("2 run(s) incomplete"), "{}", report.1);
    let rows = csv_rows(&root.join("analysis/sweeps/fr/summary.csv"));
    let loss: Vec<_> = rows.iter().filter(|r| r["measure"] == "held_out_loss" && r["generation"] == "1").collect();
    assert_eq!(loss.len(), 2, "one row per cell");
    assert_eq!((loss[0]["n"].as_str(), loss[0]["missing_seeds"].as_str()), ("2", ""));
    assert_eq!((loss[1]["n"].as_str(), loss[1]["missing_seeds"].as_str(), loss[1]["mean"].as_str()), ("0", "1 2", ""));
    let html = std::fs::read_to_string(root.join("analysis/sweeps/fr/report.html")).unwrap();
    assert!(html.contains(&names[3]) && html.contains("failed (exit code 1)"), "the report names the failed run");

    // Summary values are the hand-computed mean, sd and t interval of the runs' own values.
    let value = |run: &str| -> f64 {
        let rows = csv_rows(&root.join(format!("analysis/{run}/generations.csv")));
        rows.iter().find(|r| r["generation"] == "1").unwrap()["held_out_loss"].parse().unwrap()
    };
    let (a, b) = (value(&names[0]), value(&names[1]));
    let mean = (a + b) / 2.0;
    let sd = ((a - mean).powi(2) + (b - mean).powi(2)).sqrt(); // n − 1 = 1
    let half = 12.7062 * sd / 2f64.sqrt();
    let got = |c: &str| loss[0][c].parse::<f64>().unwrap();
    assert!((got("mean") - mean).abs() < 1e-12 && (got("sd") - sd).abs() < 1e-12, "{:?}", loss[0]);
    assert!((got("ci95_high") - (mean + half)).abs() < 1e-4 * half.max(1e-9) + 1e-9, "{:?} vs ±{half}", loss[0]);
    assert_eq!(loss[0]["seeds"], "1 2");
    // What re-encoding changed and what depends on the cap are pooled like the rest.
    for measure in ["synthetic_non_canonical_share", "train_truncated_share"] {
        let pooled: Vec<_> = rows.iter().filter(|r| r["measure"] == measure && r["generation"] == "1").collect();
        assert_eq!(pooled.len(), 2, "{measure}: one row per cell");
        assert_eq!(pooled[0]["n"], "2", "{measure}");
    }

    // A finished run whose corpus is damaged is left out of every value, named with the
    // damage; `lmloop verify --sweep` finds it.
    assert_eq!(lmloop(root, &["verify", "--sweep", "sweep.toml"]).0, 0);
    let bin = root.join(format!("corpora/synthetic/{}/gen-01.bin", names[1]));
    let mut bytes = std::fs::read(&bin).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(&bin, bytes).unwrap();
    let v = lmloop(root, &["verify", "--sweep", "sweep.toml"]);
    assert_ne!(v.0, 0);
    assert!(v.1.contains(&format!("{}/gen-01.bin is damaged", names[1])), "{}", v.1);
    let report = lmloop(root, &["sweep", "report", "sweep.toml"]);
    assert_eq!(report.0, 0, "{}", report.2);
    let rows = csv_rows(&root.join("analysis/sweeps/fr/summary.csv"));
    let loss = rows.iter().find(|r| r["measure"] == "held_out_loss" && r["generation"] == "1").unwrap();
    assert_eq!((loss["n"].as_str(), loss["missing_seeds"].as_str()), ("1", "2"), "{loss:?}");
    let html = std::fs::read_to_string(root.join("analysis/sweeps/fr/report.html")).unwrap();
    assert!(html.contains("left out, damaged"), "the report names the damaged run");
}

/// The SLURM executor against a real cluster: `make test-slurm` starts one
/// (scripts/slurm-cluster.sh, needs root) and runs this test inside it.
/// A 2-cell × 2-seed sweep goes through sbatch as an array; one task is requeued
/// while its run is part-way and resumes; the pooled summary is byte for byte the
/// one the local executor gives for the same sweep.
#[test]
#[ignore = "needs a running SLURM cluster: make test-slurm"]
fn slurm_array_gives_the_local_summary() {
    assert!(
        std::env::var("SLURM_CONF").is_ok(),
        "run through `make test-slurm` (scripts/slurm-cluster.sh sets SLURM_CONF)"
    );
    let text =
        sweep_file("slurmcheck", 2, "[1, 2]", "[grid]\npolicy = [\"replace\", \"mix\"]\nreal_fraction = [0.5]\n");
    let local = project(&text);
    let cluster = project(&text);

    let out = lmloop(
        cluster.path(),
        &["sweep", "slurm", "sweep.toml", "--cpus-per-task", "1", "--max-parallel", "2", "--submit"],
    );
    assert_eq!(out.0, 0, "{}", out.2);
    assert!(out.1.contains("submitted job"), "{}", out.1);
    let job: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(cluster.path().join("analysis/sweeps/slurmcheck/slurm/job.json")).unwrap(),
    )
    .unwrap();
    let job_id = job["job_id"].as_str().unwrap().to_string();
    let names: Vec<String> = job["runs"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert_eq!(names.len(), 4);

    // Requeue one task while its run is part-way: it must resume, not restart.
    let root = cluster.path();
    let t0 = Instant::now();
    let mut last_status = Instant::now() - Duration::from_secs(5);
    let mut requeued = None;
    loop {
        if requeued.is_none() {
            let part_way = (0..4).find(|&i| {
                root.join(format!("checkpoints/{}/gen-00/DONE", names[i])).exists()
                    && generations_done(root, &names[i]) < 3
            });
            if let Some(i) = part_way {
                let weights = root.join(format!("checkpoints/{}/gen-00/model.safetensors", names[i]));
                let before = mtime(&weights);
                let rq = std::process::Command::new("scontrol")
                    .args(["requeue", &format!("{job_id}_{i}")])
                    .output()
                    .unwrap();
                assert!(rq.status.success(), "scontrol requeue: {}", String::from_utf8_lossy(&rq.stderr));
                requeued = Some((i, weights, before));
            }
        }
        if last_status.elapsed() > Duration::from_secs(1) {
            last_status = Instant::now();
            let status = lmloop(root, &["sweep", "status", "sweep.toml"]);
            assert!(!status.1.contains(" failed "), "a task failed:\n{}", status.1);
            if status.1.contains("4 runs: 4 finished") {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(600), "the array did not finish:\n{}", status.1);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (i, weights, before) = requeued.expect("a task was requeued while part-way");
    assert_eq!(mtime(&weights), before, "the requeued task resumed its run after generation 0");
    let log = std::fs::read_to_string(root.join(format!("analysis/sweeps/slurmcheck/logs/{}.log", names[i]))).unwrap();
    assert!(log.matches("=== slurm attempt").count() >= 2, "the run's log shows both attempts:\n{log}");
    assert!(root.join(format!("analysis/sweeps/slurmcheck/slurm/logs/task-{i}.log")).exists());

    // The same sweep with the local executor, one thread per run like the array tasks.
    let local_out = lmloop(local.path(), &["sweep", "run", "sweep.toml", "--jobs", "2", "--threads", "2"]);
    assert_eq!(local_out.0, 0, "{}", local_out.2);
    for dir in [local.path(), cluster.path()] {
        let out = lmloop(dir, &["sweep", "report", "sweep.toml"]);
        assert_eq!(out.0, 0, "{}", out.2);
    }
    // Where they differ, name the runs whose own tables differ, then the summary rows.
    let differing_runs: Vec<&String> = names
        .iter()
        .filter(|n| {
            let path = |d: &Path| d.join(format!("analysis/{n}/generations.csv"));
            let loss = |d: &Path| csv_rows(&path(d)).iter().map(|r| r["held_out_loss"].clone()).collect::<Vec<_>>();
            loss(local.path()) != loss(cluster.path())
        })
        .collect();
    for table in ["summary.csv", "changes.csv"] {
        let read = |d: &Path| std::fs::read_to_string(d.join("analysis/sweeps/slurmcheck").join(table)).unwrap();
        let (a, b) = (read(local.path()), read(cluster.path()));
        let diff: Vec<String> = a
            .lines()
            .zip(b.lines())
            .filter(|(x, y)| x != y)
            .take(8)
            .map(|(x, y)| format!("local:   {x}\ncluster: {y}"))
            .collect();
        assert!(
            a == b,
            "{table}: SLURM and local executors disagree (runs with different held-out loss: {differing_runs:?}):\n{}",
            diff.join("\n")
        );
    }
    eprintln!(
        "SLURM job {job_id}: 4 array tasks (task {i} requeued part-way), summary.csv identical to the local executor's"
    );
}

#[test]
fn every_recipe_expands_into_valid_runs() {
    let recipes = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes");
    let dir = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&recipes).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = lmloop(dir.path(), &["sweep", "plan", path.to_str().unwrap()]);
            assert_eq!(out.0, 0, "{}: {}", path.display(), out.2);
            assert!(run_names(&out.1).len() >= 3, "{}: at least 3 seeds\n{}", path.display(), out.1);
            seen.push(path.file_stem().unwrap().to_string_lossy().into_owned());
        }
    }
    seen.sort();
    assert_eq!(seen, ["alemohammad", "bertrand", "curation", "gerstgrasser", "marchi", "suresh"]);
}

/// Rows of generations.csv with the columns the sweep pools that these tests plant:
/// `row(k)` gives generation k's held-out perplexity, precision and median reference
/// perplexity.
fn planted_table(n: u32, row: impl Fn(u32) -> (f64, f64, f64)) -> String {
    let mut text = "generation,held_out_perplexity,precision,score_seconds,reference_perplexity_median\n".to_string();
    for k in 0..=n {
        let (perplexity, precision, median) = row(k);
        text.push_str(&format!("{k},{perplexity},{precision},1,{median}\n"));
    }
    text
}

/// The same with the median reference perplexity held at 100.
fn planted_rows(perplexity: impl Fn(u32) -> f64, precision: impl Fn(u32) -> f64, n: u32) -> String {
    planted_table(n, |k| (perplexity(k), precision(k), 100.0))
}

#[test]
fn contrasts_rates_and_thresholds_recover_what_was_planted() {
    let grid = "baseline = { real_fraction = 0.8 }\n[grid]\npolicy = [\"mix\"]\nreal_fraction = [0.2, 0.4, 0.6, 0.8]\n";
    let dir = files_only(&sweep_file("planted", 4, "[1, 2, 3]", grid));
    let root = dir.path();
    let plan = lmloop(root, &["sweep", "plan", "sweep.toml"]);
    assert_eq!(plan.0, 0, "{}", plan.2);
    // Slope per generation by λ: climbs below 0.5, falls above; each seed adds a large
    // offset that a paired difference cancels, and a little noise.
    let slope_of = |l: f64| 10.0 * (0.5 - l);
    let sweep = plant(root, |sweep, cell, seed| {
        let l = sweep.cells[cell].real_fraction.unwrap();
        let s = seed as f64;
        let noise = move |k: u32| 0.05 * (((seed * 7 + k as u64 * 3) % 5) as f64 - 2.0);
        planted_rows(
            |k| 100.0 + 40.0 * s + slope_of(l) * k as f64 + noise(k),
            // Precision falls below λ = 0.5 and is flat (up to noise) above it.
            |k| match k {
                0 => [0.999, 0.95, 0.998][seed as usize - 1],
                k => 0.9 - 0.005 * slope_of(l).max(0.0) * k as f64 + 0.02 * noise(k),
            },
            4,
        )
    });
    let out = root.join("analysis/sweeps/planted");
    let label = |l: f64| sweep.cells.iter().find(|c| c.real_fraction == Some(l)).unwrap().label.clone();
    let num = |r: &std::collections::HashMap<String, String>, c: &str| r[c].parse::<f64>().unwrap();

    // The paired contrast at generation 4: (slope(0.2) − slope(0.8))·4 = 24, tight,
    // though each cell's own interval spans the seeds' 40-point offsets.
    let contrasts = csv_rows(&out.join("contrasts.csv"));
    let c = contrasts
        .iter()
        .find(|r| r["label"] == label(0.2) && r["measure"] == "held_out_perplexity" && r["generation"] == "4")
        .expect("a contrast row");
    assert_eq!(c["baseline"], label(0.8));
    assert!((num(c, "mean_difference") - 24.0).abs() < 0.2, "{c:?}");
    assert!(num(c, "ci95_high") - num(c, "ci95_low") < 1.0, "{c:?}");
    assert!(contrasts.iter().all(|r| r["label"] != label(0.8)), "the baseline is not contrasted with itself");
    let summary = csv_rows(&out.join("summary.csv"));
    let own = summary
        .iter()
        .find(|r| r["label"] == label(0.2) && r["measure"] == "held_out_perplexity" && r["generation"] == "4")
        .unwrap();
    assert!(num(own, "ci95_high") - num(own, "ci95_low") > 50.0, "{own:?}");

    // Rates: the planted slope, inside its interval.
    let rates = csv_rows(&out.join("rates.csv"));
    for l in [0.2, 0.4, 0.6, 0.8] {
        let r = rates.iter().find(|r| r["label"] == label(l) && r["measure"] == "held_out_perplexity").unwrap();
        let want = slope_of(l);
        assert!((num(r, "mean_slope") - want).abs() < 0.1, "{r:?}");
        assert!(num(r, "ci95_low") <= want && want <= num(r, "ci95_high"), "{r:?}");
        assert_eq!(r["from_generation"], "1");
    }

    // The threshold: λ = 0.6 is the first whose rate's interval lies at or below 0.
    let thresholds = csv_rows(&out.join("thresholds.csv"));
    let t = thresholds.iter().find(|t| t["axis"] == "real_fraction" && t["measure"] == "held_out_perplexity").unwrap();
    assert_eq!((t["stable_from"].as_str(), t["unstable_below"].as_str()), ("0.6", "0.4"), "{t:?}");
    assert_eq!(t["under_collapse"], "climbs");
    // Precision falls under collapse: the rule reads its rates the other way round, and
    // its flat rates above λ = 0.5 are not shown to collapse.
    let p = thresholds.iter().find(|t| t["axis"] == "real_fraction" && t["measure"] == "precision").unwrap();
    assert_eq!(p["under_collapse"], "falls");
    assert_eq!((p["not_collapsing_from"].as_str(), p["collapsing_below"].as_str()), ("0.6", "0.4"), "{p:?}");
    assert_ne!(p["stable_from"], "0.2", "a falling precision is not stable: {p:?}");

    // A share's interval stays inside [0, 1], however few the seeds.
    let p = summary
        .iter()
        .find(|r| r["label"] == label(0.2) && r["measure"] == "precision" && r["generation"] == "0")
        .unwrap();
    assert!(num(p, "ci95_high") <= 1.0 && num(p, "ci95_low") >= 0.0, "{p:?}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains("Paired contrasts") && html.contains("Collapse rates") && html.contains("from 0.6 (not at 0.4)")
    );

    // A baseline that names no cell is refused with one sentence.
    let bad = grid.replace("0.8 }", "0.9 }");
    std::fs::write(root.join("sweep.toml"), sweep_file("planted", 4, "[1, 2, 3]", &bad)).unwrap();
    let refused = lmloop(root, &["sweep", "report", "sweep.toml"]);
    assert_ne!(refused.0, 0);
    assert!(refused.2.contains("baseline") && refused.2.contains("matches no cell"), "{}", refused.2);
}

#[test]
fn vanish_generations_and_their_slope_on_the_expected_count_are_pooled_over_seeds() {
    let grid = "[grid]\npolicy = [\"replace\"]\n";
    let dir = files_only(&sweep_file("vanish", 3, "[1, 2, 3]", grid));
    let root = dir.path();
    let sweep = lmloop::sweep::Sweep::load(&root.join("sweep.toml")).unwrap();
    // Real counts 1000, 2, 3, 1 and D = |R|: the expected count is the real count. The
    // common token never vanishes (V = K + 1 = 5), the count-2 token vanishes at S_2
    // (at S_3 in seed 3), the count-3 token at S_4, the count-1 token is never sampled.
    for run in &sweep.runs {
        let b = if run.seed == 3 { [2, 2, 0, 0] } else { [2, 0, 0, 0] };
        let mut text = "token_id,real_count,gen_01,gen_02,gen_03,gen_04\n".to_string();
        text.push_str("0,1000,1003,1004,1003,1006\n");
        text.push_str(&format!("1,2,{},{},{},{}\n", b[0], b[1], b[2], b[3]));
        text.push_str("2,3,1,2,3,0\n3,1,0,0,0,0\n");
        let dir = root.join("analysis").join(&run.name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tokens.csv"), text).unwrap();
        std::fs::write(dir.join("generations.csv"), planted_rows(|k| 100.0 + k as f64, |_| 0.9, 3)).unwrap();
    }
    let report = lmloop(root, &["sweep", "report", "sweep.toml"]);
    assert_eq!(report.0, 0, "{}", report.2);
    let rows = csv_rows(&root.join("analysis/sweeps/vanish/vanish.csv"));
    let num = |r: &std::collections::HashMap<String, String>, c: &str| r[c].parse::<f64>().unwrap();
    let group = |low: &str| rows.iter().find(|r| r["row"] == "group" && r["expected_count_low"] == low).unwrap();
    assert_eq!(num(group("1"), "mean"), 1.0);
    assert!((num(group("2"), "mean") - (3.0 + 3.0 + 3.5) / 3.0).abs() < 1e-9, "{:?}", group("2"));
    assert_eq!(num(group("512"), "mean"), 5.0, "a token present in every corpus counts as K + 1");
    let slope = rows.iter().find(|r| r["row"] == "slope").unwrap();
    assert_eq!((slope["expected_count_high"].as_str(), slope["tokens"].as_str()), ("2", "2"), "{slope:?}");
    assert!((num(slope, "mean") - 4.0 / 3.0).abs() < 1e-9, "{slope:?}");
    assert!(num(slope, "ci95_low") < 4.0 / 3.0 && num(slope, "ci95_high") > 4.0 / 3.0);
    let simulated = num(slope, "theory_simulated");
    assert!(simulated.is_finite() && simulated > 0.0, "the simulator's slope: {slope:?}");
    let html = std::fs::read_to_string(root.join("analysis/sweeps/vanish/report.html")).unwrap();
    assert!(html.contains("When a token vanishes"));
}

/// Writes planted `generations.csv` tables for every run of `sweep.toml` in `root`:
/// `rows(cell, seed)` gives each run's text.
fn plant(root: &Path, rows: impl Fn(&lmloop::sweep::Sweep, usize, u64) -> String) -> lmloop::sweep::Sweep {
    let sweep = lmloop::sweep::Sweep::load(&root.join("sweep.toml")).unwrap();
    for run in &sweep.runs {
        let dir = root.join("analysis").join(&run.name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("generations.csv"), rows(&sweep, run.cell, run.seed)).unwrap();
    }
    let report = lmloop(root, &["sweep", "report", "sweep.toml"]);
    assert_eq!(report.0, 0, "{}", report.2);
    sweep
}

#[test]
fn a_collapsing_cell_with_a_huge_interval_below_a_collapsing_one_leaves_no_threshold() {
    // Replace along top-p: at 1.0 perplexity climbs steadily (tight interval); at 0.5 it
    // climbs wildly, one seed falling, so the interval straddles 0 by thousands.
    let grid = "[grid]\npolicy = [\"replace\"]\ntop_p = [0.5, 1.0]\n";
    let dir = files_only(&sweep_file("ladder", 3, "[1, 2, 3]", grid));
    let root = dir.path();
    plant(root, |sweep, cell, seed| {
        let wild = sweep.cells[cell].label.contains("0.5");
        let slope = if wild { [1500.0, 900.0, -1300.0][seed as usize - 1] } else { 10.0 + seed as f64 * 0.3 };
        planted_rows(|k| 30.0 + slope * k as f64, |_| 0.9, 3)
    });
    let out = root.join("analysis/sweeps/ladder");
    let t = csv_rows(&out.join("thresholds.csv"));
    let p = t.iter().find(|t| t["axis"] == "top_p" && t["measure"] == "held_out_perplexity").unwrap();
    assert_eq!(p["not_collapsing_from"], "", "a collapse at top-p 1 above it leaves no threshold: {p:?}");
    assert_eq!(p["stable_from"], "", "{p:?}");
    assert!(p["readings"].contains("0.5: uninformative") && p["readings"].contains("1: collapses"), "{p:?}");
    let rates = csv_rows(&out.join("rates.csv"));
    let wild = rates.iter().find(|r| r["label"].contains("0.5") && r["measure"] == "held_out_perplexity").unwrap();
    assert_eq!(wild["reading"], "uninformative", "{wild:?}");
}

#[test]
fn a_measure_that_falls_under_top_p_collapse_is_read_as_collapse_not_stable() {
    // Under top-p = 0.5 the reference's median perplexity of the sampled text falls as
    // the loop collapses onto typical text; at top-p = 1 it stays put.
    let grid = "[grid]\npolicy = [\"replace\"]\ntop_p = [0.5, 1.0]\n";
    let dir = files_only(&sweep_file("typical", 3, "[1, 2, 3]", grid));
    let root = dir.path();
    plant(root, |sweep, cell, seed| {
        let sharp = sweep.cells[cell].label.contains("0.5");
        planted_table(3, |k| {
            let noise = 0.1 * (((seed * 7 + k as u64 * 3) % 5) as f64 - 2.0);
            let median = if sharp { 18.0 - 3.2 * k as f64 + noise } else { 18.0 + noise };
            (100.0 + noise, 0.9, median)
        })
    });
    let out = root.join("analysis/sweeps/typical");
    let t = csv_rows(&out.join("thresholds.csv"));
    let m = t.iter().find(|t| t["axis"] == "top_p" && t["measure"] == "reference_perplexity_median").unwrap();
    assert_ne!(m["stable_from"], "0.5", "a falling median under top-p < 1 is collapse, not stability: {m:?}");
    assert_eq!(m["under_collapse"], "either climbs", "{m:?}");
    assert!(m["readings"].contains("0.5: changes"), "{m:?}");
    assert_eq!(m["not_collapsing_from"], "1", "{m:?}");
}

#[test]
fn seeds_that_tie_exactly_are_no_evidence() {
    // Every seed plants the same series: sd = 0, an interval of width 0.
    let grid = "[grid]\npolicy = [\"mix\"]\nreal_fraction = [0.5, 1.0]\n";
    let dir = files_only(&sweep_file("tied", 3, "[1, 2, 3]", grid));
    let root = dir.path();
    plant(root, |_, _, _| planted_rows(|k| 100.0 - k as f64, |_| 0.9, 3));
    let out = root.join("analysis/sweeps/tied");
    let rates = csv_rows(&out.join("rates.csv"));
    let r = rates.iter().find(|r| r["measure"] == "held_out_perplexity").unwrap();
    assert_eq!((r["spread"].as_str(), r["reading"].as_str()), ("seeds tie", "no evidence"), "{r:?}");
    let t = csv_rows(&out.join("thresholds.csv"));
    let p = t.iter().find(|t| t["measure"] == "held_out_perplexity").unwrap();
    assert_eq!((p["stable_from"].as_str(), p["not_collapsing_from"].as_str()), ("", ""), "{p:?}");
    let summary = csv_rows(&out.join("summary.csv"));
    assert!(summary.iter().any(|r| r["measure"] == "held_out_perplexity" && r["spread"] == "seeds tie"));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("seeds tie: no spread"));
}

#[test]
fn a_near_null_rate_is_not_shown_to_change_never_stable() {
    // Entropy-like measures move either way; a rate whose interval contains 0 is "not
    // shown to change", and a two-sided measure is never shown stable.
    let grid = "baseline = { real_fraction = 1.0 }\n[grid]\npolicy = [\"mix\"]\nreal_fraction = [0.5, 1.0]\n";
    let dir = files_only(&sweep_file("null", 3, "[1, 2, 3]", grid));
    let root = dir.path();
    plant(root, |_, cell, seed| {
        let wobble = move |k: u32| 0.3 * (((seed * 5 + k as u64 * 3 + cell as u64 * 7) % 4) as f64 - 1.5);
        planted_rows(|k| 100.0 + wobble(k), |_| 0.9, 3)
    });
    let out = root.join("analysis/sweeps/null");
    let rates = csv_rows(&out.join("rates.csv"));
    for r in rates.iter().filter(|r| r["measure"] == "held_out_perplexity") {
        assert_eq!(r["reading"], "not shown to change", "{r:?}");
    }
    // The near-null pair: no claim either way, and Welch's interval beside the paired one.
    let contrasts = csv_rows(&out.join("contrasts.csv"));
    let c = contrasts.iter().find(|r| r["measure"] == "held_out_perplexity" && r["generation"] == "3").unwrap();
    assert_eq!(c["reading"], "not shown to differ", "{c:?}");
    assert!(c["unpaired_ci95_low"].parse::<f64>().unwrap() < 0.0, "{c:?}");
    let t = csv_rows(&out.join("thresholds.csv"));
    let p = t.iter().find(|t| t["measure"] == "held_out_perplexity").unwrap();
    assert_eq!(p["stable_from"], "", "an interval containing 0 is not stability: {p:?}");
    assert_eq!(p["not_collapsing_from"], "0.5", "{p:?}");
    assert_eq!(lmloop::sweep::contrasts::direction("entropy_nats"), lmloop::sweep::contrasts::Direction::Either);
    let either = lmloop::sweep::contrasts::Direction::Either;
    assert!(
        !either.safe(lmloop::sweep::contrasts::Reading::Below)
            && !either.safe(lmloop::sweep::contrasts::Reading::NotShown)
    );
}

/// The claims a planted sweep is tested on: λ = 0 collapses, λ = 0.5 and 1 stay put.
const CLAIMS: &str = r#"
[[claim]]
says = "Without real data the loop collapses"
measure = "held_out_perplexity"
cell = { real_fraction = 0.0 }
test = "collapses"
secondary = ["precision"]

[[claim]]
says = "Half real data keeps the models"
measure = "held_out_perplexity"
cell = { real_fraction = 0.5 }
test = "does not collapse"

[[claim]]
says = "Without real data the models end better than with real data alone"
measure = "held_out_perplexity"
cell = { real_fraction = 0.0 }
test = "below"

[[claim]]
says = "Enough real data stops the collapse"
measure = "held_out_perplexity"
test = "threshold"
axis = "real_fraction"

[[claim]]
says = "Without real data the models collapse faster than with real data alone"
measure = "held_out_perplexity"
cell = { real_fraction = 0.0 }
than = { real_fraction = 1.0 }
test = "faster"
"#;

/// A planted ladder λ = 0, 0.5, 1 (baseline λ = 1), N = 3, seeds 1, 2, 3, with `CLAIMS`:
/// per-seed held-out perplexity slopes `slope(cell, seed)` around a wobble.
fn planted_claims(name: &str, slope: impl Fn(f64, u64) -> f64) -> (tempfile::TempDir, String) {
    let grid = "baseline = { real_fraction = 1.0 }\n[grid]\npolicy = [\"mix\"]\nreal_fraction = [0.0, 0.5, 1.0]\n";
    let dir = files_only(&format!("{}{CLAIMS}", sweep_file(name, 3, "[1, 2, 3]", grid)));
    let root = dir.path();
    let sweep = lmloop::sweep::Sweep::load(&root.join("sweep.toml")).unwrap();
    for run in &sweep.runs {
        let lambda = sweep.cells[run.cell].real_fraction.unwrap();
        let (cell, seed) = (run.cell as u64, run.seed);
        let wobble = move |k: u32| 0.3 * (((seed * 5 + k as u64 * 3 + cell * 7) % 4) as f64 - 1.5);
        let b = slope(lambda, seed);
        let dir = root.join("analysis").join(&run.name);
        std::fs::create_dir_all(&dir).unwrap();
        let rows = planted_rows(|k| 100.0 + b * k as f64 + wobble(k), |k| 0.9 - 0.01 * b.signum() * k as f64, 3);
        std::fs::write(dir.join("generations.csv"), rows).unwrap();
    }
    let out = lmloop(root, &["sweep", "report", "sweep.toml"]);
    assert_eq!(out.0, 0, "{}", out.2);
    (dir, out.1)
}

fn verdict_rows(root: &Path, name: &str) -> Vec<std::collections::HashMap<String, String>> {
    csv_rows(&root.join("analysis/sweeps").join(name).join("verdicts.csv"))
}

#[test]
fn claims_get_verdicts_by_the_reading_rules_and_a_bonferroni_reading() {
    // λ = 0 climbs by 10, 12, 16 per generation over the seeds: t = 7.2, past the 95%
    // quantile (4.30 at 2 degrees of freedom) but short of the 99% one (9.92) that a
    // Bonferroni reading over five claims takes.
    let (dir, stdout) =
        planted_claims("claims", |l, seed| if l == 0.0 { [10.0, 12.0, 16.0][seed as usize - 1] } else { 0.0 });
    let v = verdict_rows(dir.path(), "claims");
    let words: Vec<(&str, &str)> = v.iter().map(|r| (r["verdict"].as_str(), r["adjusted_verdict"].as_str())).collect();
    assert_eq!(
        words,
        [
            ("shown", "not shown"),
            ("bounded", "bounded"),
            ("contradicted", "not shown"),
            ("bounded", "bounded"),
            ("shown", "not shown")
        ],
        "{v:#?}"
    );
    assert_eq!(v[0]["adjusted_level"], "0.99");
    assert!(v[0]["line"].contains("climbs") && v[0]["line"].contains("precision"), "{}", v[0]["line"]);
    // An interval containing 0 never says "holds": it says what it rules out.
    assert!(v[1]["line"].contains("not shown to climb; rules out a climb faster than"), "{}", v[1]["line"]);
    assert!(!v.iter().any(|r| r["line"].contains("holds")));
    assert!(
        v[3]["line"].contains("not shown to collapse from real_fraction = 0.5 on, collapses at 0"),
        "{}",
        v[3]["line"]
    );
    assert!(v[4]["line"].contains("collapses faster"), "{}", v[4]["line"]);
    // The report prints the same lines, first, with the number of intervals it reads.
    assert!(stdout.contains("verdicts (verdicts.csv):") && stdout.contains(&v[0]["line"]), "{stdout}");
    assert!(stdout.contains("rate intervals"), "{stdout}");
    let html = std::fs::read_to_string(dir.path().join("analysis/sweeps/claims/report.html")).unwrap();
    assert!(html.contains("Claims") && html.contains("Bonferroni") && html.contains("rate intervals"));
}

#[test]
fn a_sweep_where_nothing_happens_shows_no_claim_and_one_where_all_collapse_contradicts_stability() {
    let (dir, _) = planted_claims("calm", |_, _| 0.0);
    let v = verdict_rows(dir.path(), "calm");
    let words: Vec<&str> = v.iter().map(|r| r["verdict"].as_str()).collect();
    // Nothing is shown: the collapses are "not shown", the calm cell only bounded.
    assert_eq!(words, ["not shown", "bounded", "not shown", "bounded", "not shown"], "{v:#?}");

    let (dir, _) = planted_claims("storm", |_, seed| 20.0 + seed as f64);
    let v = verdict_rows(dir.path(), "storm");
    let words: Vec<&str> = v.iter().map(|r| r["verdict"].as_str()).collect();
    // The claim that half real data keeps the models, and the threshold, are contradicted.
    assert_eq!(words[..4], ["shown", "contradicted", "not shown", "contradicted"], "{v:#?}");

    // Seeds that tie exactly are no evidence for any claim.
    let grid = "baseline = { real_fraction = 1.0 }\n[grid]\npolicy = [\"mix\"]\nreal_fraction = [0.0, 0.5, 1.0]\n";
    let dir = files_only(&format!("{}{CLAIMS}", sweep_file("tied-claims", 3, "[1, 2, 3]", grid)));
    plant(dir.path(), |_, _, _| planted_rows(|k| 100.0 + 5.0 * k as f64, |_| 0.9, 3));
    let v = verdict_rows(dir.path(), "tied-claims");
    assert!(v.iter().all(|r| r["verdict"] == "no evidence" && r["adjusted_verdict"] == "no evidence"), "{v:#?}");
    assert!(v[0]["line"].contains("the seeds tie"), "{}", v[0]["line"]);
}
