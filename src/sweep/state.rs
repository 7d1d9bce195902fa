//! What each run of a sweep is doing, from what is on disk.
//!
//! A run is *finished* when its `generations.csv` has rows for generations 0..=N;
//! that alone decides, whichever executor ran it. Executors also leave a small
//! record per run (`state/RUN.json`): which host and process run it, or the exit
//! code it failed with. A record saying "running" whose process is gone (the sweep
//! was killed, the node rebooted) reads as *interrupted*: a rerun resumes it.
use super::cells::{Run, Sweep};
use super::tables::finished_generations;
use crate::durable::{read_json, write_json_atomic};
use crate::layout::Layout;
use crate::layout::SweepPaths;
use anyhow::Result;
use serde::{Deserialize, Serialize};

/// The record an executor keeps per run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StateRecord {
    /// `running`, `failed` or `finished`.
    pub state: String,
    /// `local` or `slurm`.
    pub executor: String,
    pub host: String,
    /// Process id of the `lmloop generations` process.
    pub pid: u32,
    /// When this record was written (start of the attempt, or its end).
    pub updated_unix: u64,
    pub exit_code: Option<i32>,
    /// `JOB_TASK` of the SLURM array task, under the SLURM executor.
    pub slurm_task: Option<String>,
}

/// Where a run stands.
#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    Finished,
    Running {
        host: String,
        executor: String,
    },
    Failed {
        exit_code: Option<i32>,
    },
    /// Started, not finished, no process on it: a rerun resumes it.
    Interrupted,
    NotStarted,
}

impl RunState {
    pub fn word(&self) -> &'static str {
        match self {
            RunState::Finished => "finished",
            RunState::Running { .. } => "running",
            RunState::Failed { .. } => "failed",
            RunState::Interrupted => "interrupted",
            RunState::NotStarted => "not started",
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunStatus {
    pub state: RunState,
    /// Generations with a row in `generations.csv`.
    pub generations_done: usize,
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into a buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Whether process `pid` on this host is alive and is working on `run`.
fn process_runs(pid: u32, run: &str) -> bool {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => cmdline.split(|&b| b == 0).any(|arg| arg == run.as_bytes()),
        Err(_) => false,
    }
}

pub fn write_record(paths: &SweepPaths, run: &str, record: &StateRecord) -> Result<()> {
    write_json_atomic(&paths.state(run), record)
}

pub fn read_record(paths: &SweepPaths, run: &str) -> Option<StateRecord> {
    read_json(&paths.state(run)).ok()
}

/// Whether generations.csv holds every generation 0..=N.
pub fn is_finished(layout: &Layout, sweep: &Sweep, run: &Run) -> Result<bool> {
    let done = finished_generations(&layout.generations_csv(&run.name))?;
    Ok((0..=sweep.spec.generations).all(|k| done.contains(&k)))
}

pub fn run_status(layout: &Layout, paths: &SweepPaths, sweep: &Sweep, run: &Run) -> Result<RunStatus> {
    let done = finished_generations(&layout.generations_csv(&run.name))?;
    let generations_done = (0..=sweep.spec.generations).filter(|k| done.contains(k)).count();
    let state = if generations_done == sweep.spec.generations as usize + 1 {
        RunState::Finished
    } else {
        match read_record(paths, &run.name) {
            Some(r) if r.state == "failed" => RunState::Failed { exit_code: r.exit_code },
            Some(r) if r.state == "running" => {
                if r.host != hostname() || process_runs(r.pid, &run.name) {
                    RunState::Running { host: r.host, executor: r.executor }
                } else {
                    RunState::Interrupted
                }
            }
            _ if generations_done > 0 || layout.run_toml(&run.name).exists() => RunState::Interrupted,
            _ => RunState::NotStarted,
        }
    };
    Ok(RunStatus { state, generations_done })
}
