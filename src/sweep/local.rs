//! The local executor: `lmloop sweep run FILE --jobs J` runs the sweep's runs on
//! this machine, J at a time, each with its share of the cores.
//!
//! Finished runs are skipped, started ones resume (each run is an ordinary
//! resumable `lmloop generations` run), a failed run does not stop the others, and
//! the sweep ends with an error naming every failed run and its log.
use super::cells::Sweep;
use super::launch::{describe_exit, record_exit, spawn, write_configs, LaunchOptions};
use super::state::is_finished;
use super::tables::finished_generations;
use crate::layout::Layout;
use crate::layout::SweepPaths;
use anyhow::{bail, Context, Result};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Runs at a time.
    pub jobs: usize,
    /// Cores shared between the runs; each gets max(1, threads / jobs).
    pub threads: usize,
    pub device: Option<crate::config::DeviceChoice>,
}

/// Held while a sweep runs here, so that two `sweep run` of one sweep do not race.
fn lock_sweep(paths: &SweepPaths, name: &str) -> Result<crate::durable::Lock> {
    let path = paths.lock();
    match crate::durable::Lock::try_acquire(&path)? {
        Some(lock) => Ok(lock),
        None => bail!("sweep '{name}' is already running on this machine (lock {} is held)", path.display()),
    }
}

/// Prints progress: a live line on a terminal, plain event lines otherwise (logs, CI).
struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(total: u64, done: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| crate::progress::runs(total, done));
        Progress { bar }
    }

    fn event(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn update(&self, finished: u64, message: String) {
        if let Some(bar) = &self.bar {
            bar.set_position(finished);
            bar.set_message(message);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

struct Active {
    run: usize,
    child: std::process::Child,
    started: Instant,
}

pub fn run_local(layout: &Layout, sweep: &Sweep, opts: &LocalOptions) -> Result<()> {
    if opts.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    let paths = SweepPaths::new(layout, &sweep.spec.name);
    let _lock = lock_sweep(&paths, &sweep.spec.name)?;
    write_configs(sweep, &paths)?;
    let n_gen = sweep.spec.generations + 1;
    let total = sweep.runs.len();
    let mut pending = Vec::new();
    let mut finished = 0usize;
    for (i, run) in sweep.runs.iter().enumerate() {
        if is_finished(layout, sweep, run)? {
            finished += 1;
        } else {
            pending.push(i);
        }
    }
    let threads = (opts.threads / opts.jobs).max(1);
    eprintln!(
        "sweep {}: {total} runs, {finished} already finished, {} to run, {} at a time with {threads} thread(s) each; logs in {}",
        sweep.spec.name,
        pending.len(),
        opts.jobs.min(pending.len().max(1)),
        paths.dir().join("logs").display()
    );
    let launch = LaunchOptions { threads, device: opts.device, executor: "local", slurm_task: None };
    let progress = Progress::new(total as u64, finished as u64);
    pending.reverse(); // pop() takes runs in file order
    let mut active: Vec<Active> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    let mut last_refresh = Instant::now() - Duration::from_secs(10);
    while !pending.is_empty() || !active.is_empty() {
        while active.len() < opts.jobs {
            let Some(i) = pending.pop() else { break };
            let run = &sweep.runs[i];
            let child = spawn(layout, &paths, run, &launch)?;
            progress.event(&format!("started  {} ({})", run.name, sweep.cells[run.cell].label));
            active.push(Active { run: i, child, started: Instant::now() });
        }
        let mut still = Vec::new();
        for mut a in active.drain(..) {
            match a.child.try_wait().context("cannot wait for a run's process")? {
                None => still.push(a),
                Some(status) => {
                    let run = &sweep.runs[a.run];
                    let ok = record_exit(layout, &paths, sweep, run, status, &launch, a.child.id())?;
                    let minutes = a.started.elapsed().as_secs_f64() / 60.0;
                    if ok {
                        finished += 1;
                        progress.event(&format!("finished {} in {minutes:.1} min", run.name));
                    } else {
                        let log = paths.log(&run.name);
                        progress.event(&format!(
                            "FAILED   {} ({}); log: {}",
                            run.name,
                            describe_exit(status),
                            log.display()
                        ));
                        failed.push(format!("{} ({}, log {})", run.name, describe_exit(status), log.display()));
                    }
                }
            }
        }
        active = still;
        if last_refresh.elapsed() >= Duration::from_secs(2) {
            last_refresh = Instant::now();
            let running: Vec<String> = active
                .iter()
                .map(|a| {
                    let run = &sweep.runs[a.run];
                    let done = finished_generations(&layout.generations_csv(&run.name)).map(|s| s.len()).unwrap_or(0);
                    format!("{} gen {done}/{n_gen}", sweep.cells[run.cell].label)
                })
                .collect();
            progress.update(
                finished as u64,
                format!(
                    "{} running, {} failed, {} waiting · {}",
                    active.len(),
                    failed.len(),
                    pending.len(),
                    running.join(", ")
                ),
            );
        }
        if !active.is_empty() {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    progress.finish();
    if !failed.is_empty() {
        bail!(
            "{} of {total} runs of sweep {} failed: {}; fix the cause and rerun `lmloop sweep run` to resume them",
            failed.len(),
            sweep.spec.name,
            failed.join("; ")
        );
    }
    eprintln!(
        "sweep {}: all {total} runs finished; `lmloop sweep report {}` aggregates them",
        sweep.spec.name,
        sweep.spec.file.display()
    );
    Ok(())
}
