//! The SLURM executor: one array task per run, the cluster's own scheduler.
//!
//! `lmloop sweep slurm FILE` writes `slurm/array.sbatch`: `#SBATCH --array=0-(n-1)%K`,
//! task I runs the I-th run of the plan through `lmloop sweep run-task FILE --index I`
//! (the script names every run, and the task refuses to start if the sweep file no
//! longer gives that run at that index), SLURM's output per task in `slurm/logs/`,
//! the run's own output in `logs/RUN.log`. `--requeue` lets SLURM restart a task whose
//! node failed or was preempted; a restarted or resubmitted task resumes its run.
use super::cells::Sweep;
use super::launch::{describe_exit, record_exit, spawn, write_config, write_configs, LaunchOptions};
use super::state::{is_finished, now_unix};
use crate::choice::Choice;
use crate::durable::{write_atomic, write_json_atomic};
use crate::layout::Layout;
use crate::layout::SweepPaths;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

#[derive(Debug, Clone, Default)]
pub struct SlurmOptions {
    pub partition: Option<String>,
    /// Wall-clock limit per task, in SLURM's format (e.g. `02:00:00`).
    pub time: Option<String>,
    pub gpus_per_task: Option<u32>,
    /// CPU cores per task; the run uses as many libtorch threads.
    pub cpus_per_task: u32,
    /// At most this many tasks at once (`%K`).
    pub max_parallel: Option<u32>,
    /// `--device` of every run (e.g. `cuda` with GPUs).
    pub device: Option<crate::config::DeviceChoice>,
}

/// What `--submit` recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubmittedJob {
    pub job_id: String,
    pub script: String,
    pub submitted_unix: u64,
    /// Run names by array index at submission.
    pub runs: Vec<String>,
}

/// Quotes a word for bash (single quotes; a single quote becomes '\'').
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c)) {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// The array script for a sweep.
pub fn script(layout: &Layout, sweep: &Sweep, opts: &SlurmOptions) -> Result<String> {
    if opts.cpus_per_task == 0 {
        bail!("--cpus-per-task must be at least 1");
    }
    if opts.max_parallel == Some(0) {
        bail!("--max-parallel must be at least 1");
    }
    let paths = SweepPaths::new(layout, &sweep.spec.name);
    let root = std::path::absolute(layout.root())?;
    let exe = std::env::current_exe().context("cannot locate the lmloop binary for the script")?;
    let file = std::path::absolute(&sweep.spec.file)?;
    let logs = std::path::absolute(paths.slurm_logs())?;
    let n = sweep.runs.len();
    let mut s = String::new();
    let _ = writeln!(s, "#!/bin/bash");
    let _ = writeln!(
        s,
        "# lmloop sweep {}: {} runs ({} cells × {} seeds), one array task per run.",
        sweep.spec.name,
        n,
        sweep.cells.len(),
        sweep.spec.seeds.len()
    );
    let _ = writeln!(
        s,
        "# Written by `lmloop sweep slurm {}`; submit with sbatch. A requeued or",
        sweep.spec.file.display()
    );
    let _ = writeln!(s, "# resubmitted task resumes its run; finished runs return at once.");
    let _ = writeln!(s, "#SBATCH --job-name={}", shell_quote(&format!("lmloop-{}", sweep.spec.name)));
    let throttle = opts.max_parallel.map(|k| format!("%{k}")).unwrap_or_default();
    let _ = writeln!(s, "#SBATCH --array=0-{}{throttle}", n - 1);
    let _ = writeln!(s, "#SBATCH --ntasks=1");
    let _ = writeln!(s, "#SBATCH --cpus-per-task={}", opts.cpus_per_task);
    if let Some(p) = &opts.partition {
        let _ = writeln!(s, "#SBATCH --partition={}", shell_quote(p));
    }
    if let Some(t) = &opts.time {
        let _ = writeln!(s, "#SBATCH --time={}", shell_quote(t));
    }
    if let Some(g) = opts.gpus_per_task {
        let _ = writeln!(s, "#SBATCH --gpus-per-task={g}");
    }
    // sbatch does not expand shell quotes in #SBATCH lines: the path must be plain.
    let logs_text = logs.display().to_string();
    if logs_text.contains(char::is_whitespace) {
        bail!(
            "the sweep folder {} contains whitespace, which #SBATCH --output cannot take; move the project",
            logs_text
        );
    }
    let _ = writeln!(s, "#SBATCH --output={logs_text}/task-%a.log");
    let _ = writeln!(s, "#SBATCH --open-mode=append");
    let _ = writeln!(s, "#SBATCH --requeue");
    let _ = writeln!(s);
    let _ = writeln!(s, "set -euo pipefail");
    let _ = writeln!(s, "# Array index → run (cell, seed):");
    let _ = writeln!(s, "RUNS=(");
    for (i, run) in sweep.runs.iter().enumerate() {
        let _ = writeln!(s, "  {}  # {i}: {}, seed {}", shell_quote(&run.name), sweep.cells[run.cell].label, run.seed);
    }
    let _ = writeln!(s, ")");
    let _ = writeln!(s, ": \"${{SLURM_ARRAY_TASK_ID:?this script is an array job: submit it with sbatch}}\"");
    let _ = writeln!(s, "cd {}", shell_quote(&root.display().to_string()));
    let mut cmd = format!(
        "exec {} sweep run-task {} --index \"$SLURM_ARRAY_TASK_ID\" --expect \"${{RUNS[$SLURM_ARRAY_TASK_ID]}}\" --threads \"${{SLURM_CPUS_PER_TASK:-{}}}\"",
        shell_quote(&exe.display().to_string()),
        shell_quote(&file.display().to_string()),
        opts.cpus_per_task
    );
    if let Some(d) = &opts.device {
        cmd.push_str(&format!(" --device {}", shell_quote(&d.name())));
    }
    let _ = writeln!(s, "{cmd}");
    Ok(s)
}

/// Writes the script (and every run's config); with `submit`, hands it to sbatch
/// and records the job id. Returns what to tell the user.
pub fn write_and_submit(layout: &Layout, sweep: &Sweep, opts: &SlurmOptions, submit: bool) -> Result<String> {
    let paths = SweepPaths::new(layout, &sweep.spec.name);
    let text = script(layout, sweep, opts)?;
    write_configs(sweep, &paths)?;
    std::fs::create_dir_all(paths.slurm_logs())
        .with_context(|| format!("cannot create {}", paths.slurm_logs().display()))?;
    let script_path = paths.slurm_script();
    write_atomic(&script_path, text.as_bytes())?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script_path, std::fs::Permissions::from_mode(0o755))?;
    }
    let mut out = format!("wrote {} ({} array tasks, one per run)", script_path.display(), sweep.runs.len());
    if !submit {
        out.push_str(&format!("\nsubmit it with: sbatch {}", script_path.display()));
        return Ok(out);
    }
    let result =
        std::process::Command::new("sbatch").arg("--parsable").arg(&script_path).current_dir(layout.root()).output();
    let output = match result {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "sbatch was not found on this machine (is it a SLURM login node?); the script is at {}",
                script_path.display()
            )
        }
        Err(e) => bail!("cannot run sbatch: {e}"),
    };
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        bail!("sbatch refused {}: {}", script_path.display(), err.trim().lines().last().unwrap_or("no message"));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    // --parsable prints "JOBID" or "JOBID;CLUSTER".
    let job_id = stdout.trim().split(';').next().unwrap_or("").to_string();
    if job_id.is_empty() || !job_id.chars().all(|c| c.is_ascii_digit()) {
        bail!("sbatch printed no job id (got '{}')", stdout.trim());
    }
    let job = SubmittedJob {
        job_id: job_id.clone(),
        script: script_path.display().to_string(),
        submitted_unix: now_unix(),
        runs: sweep.runs.iter().map(|r| r.name.clone()).collect(),
    };
    write_json_atomic(&paths.slurm_job(), &job)?;
    out.push_str(&format!(
        "\nsubmitted job {job_id}; follow it with `lmloop sweep status {}`",
        sweep.spec.file.display()
    ));
    Ok(out)
}

/// One array task: runs (or resumes) run `index`, blocking until it ends.
pub fn run_task(
    layout: &Layout,
    sweep: &Sweep,
    index: usize,
    expect: Option<&str>,
    threads: usize,
    device: Option<crate::config::DeviceChoice>,
) -> Result<()> {
    let Some(run) = sweep.runs.get(index) else {
        bail!(
            "array index {index} is out of range: sweep {} has {} runs (0..={})",
            sweep.spec.name,
            sweep.runs.len(),
            sweep.runs.len().saturating_sub(1)
        );
    };
    if let Some(expected) = expect {
        if expected != run.name {
            bail!(
                "the sweep file changed since the script was written: index {index} is now run {} but the script expected {expected}; rewrite the script with `lmloop sweep slurm`",
                run.name
            );
        }
    }
    let paths = SweepPaths::new(layout, &sweep.spec.name);
    write_config(sweep, &paths, run)?;
    let task = std::env::var("SLURM_ARRAY_JOB_ID").ok().map(|job| format!("{job}_{index}"));
    let opts = LaunchOptions { threads: threads.max(1), device, executor: "slurm", slurm_task: task };
    if is_finished(layout, sweep, run)? {
        println!("run {} is already finished", run.name);
        return Ok(());
    }
    println!(
        "task {index}: run {} ({}), log {}",
        run.name,
        sweep.cells[run.cell].label,
        paths.log(&run.name).display()
    );
    let mut child = spawn(layout, &paths, run, &opts)?;
    let pid = child.id();
    let status = child.wait().context("cannot wait for the run's process")?;
    if record_exit(layout, &paths, sweep, run, status, &opts, pid)? {
        println!("run {} finished", run.name);
        Ok(())
    } else {
        bail!("run {} failed ({}); see {}", run.name, describe_exit(status), paths.log(&run.name).display())
    }
}

/// The job recorded by `--submit`, if any.
pub fn submitted_job(paths: &SweepPaths) -> Option<SubmittedJob> {
    crate::durable::read_json(&paths.slurm_job()).ok()
}

/// SLURM's view of a submitted array: state per array index (tasks SLURM no longer
/// lists have ended). Err when squeue cannot be asked.
pub fn queue_states(job_id: &str) -> Result<BTreeMap<usize, String>> {
    let output = std::process::Command::new("squeue")
        .args(["--noheader", "--array", "--jobs", job_id, "--format=%K %T"])
        .output()
        .context("squeue is not available")?;
    if !output.status.success() {
        // squeue fails for a job id it no longer knows: nothing is queued.
        let err = String::from_utf8_lossy(&output.stderr);
        if err.contains("Invalid job id") {
            return Ok(BTreeMap::new());
        }
        bail!("squeue failed: {}", err.trim());
    }
    Ok(parse_queue(&String::from_utf8_lossy(&output.stdout)))
}

/// Parses `squeue --array --format="%K %T"` output: array index → state.
pub fn parse_queue(text: &str) -> BTreeMap<usize, String> {
    let mut states = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(index), Some(state)) = (words.next(), words.next()) else { continue };
        // Pending tasks that have not split off yet show as index sets, e.g. "[2-5,7%2]".
        let set = index.trim_start_matches('[').trim_end_matches(']');
        let set = set.split('%').next().unwrap_or(set);
        for part in set.split(',') {
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a.parse::<usize>(), b.parse::<usize>()),
                None => (part.parse::<usize>(), part.parse::<usize>()),
            };
            if let (Ok(lo), Ok(hi)) = (lo, hi) {
                for i in lo..=hi {
                    states.insert(i, state.to_string());
                }
            }
        }
    }
    states
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_lists_split_and_pending_tasks() {
        let q = parse_queue("0 RUNNING\n1 RUNNING\n[2-4,7%2] PENDING\n");
        let want: Vec<(usize, &str)> =
            vec![(0, "RUNNING"), (1, "RUNNING"), (2, "PENDING"), (3, "PENDING"), (4, "PENDING"), (7, "PENDING")];
        assert_eq!(q.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>(), want);
    }

    #[test]
    fn words_are_quoted_for_bash() {
        assert_eq!(shell_quote("/work/a-b_c.toml"), "/work/a-b_c.toml");
        assert_eq!(shell_quote("my dir/it's"), "'my dir/it'\\''s'");
    }
}
