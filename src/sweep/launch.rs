//! Starting one run of a sweep: an ordinary `lmloop generations` process of this
//! same binary, its output appended to the run's log. Both executors start runs
//! this way, so a run is the same whether it ran here or on a cluster node.
use super::cells::{Run, Sweep};
use super::state::{hostname, now_unix, write_record, StateRecord};
use crate::choice::Choice;
use crate::durable::write_atomic;
use crate::layout::Layout;
use crate::layout::SweepPaths;
use anyhow::{Context, Result};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// How a run's process is started.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// libtorch threads of the run.
    pub threads: usize,
    /// `--device` for the run; None keeps the config's.
    pub device: Option<crate::config::DeviceChoice>,
    /// `local` or `slurm`, recorded in the run's state record.
    pub executor: &'static str,
    /// `JOB_TASK` under SLURM.
    pub slurm_task: Option<String>,
}

/// Writes the resolved config of every run (atomically; unchanged files are left alone).
pub fn write_configs(sweep: &Sweep, paths: &SweepPaths) -> Result<()> {
    for run in &sweep.runs {
        write_config(sweep, paths, run)?;
    }
    Ok(())
}

pub fn write_config(sweep: &Sweep, paths: &SweepPaths, run: &Run) -> Result<()> {
    let (_, text) = sweep.run_config(run)?;
    let path = paths.config(&run.name);
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
        write_atomic(&path, text.as_bytes())?;
    }
    Ok(())
}

/// The binary a sweep starts its runs with, and the path to name it by: this process's
/// own. On Linux it is run through `/proc/self/exe`, which still runs it when its file
/// was replaced or removed after the sweep started (a rebuild during a long sweep), so
/// every run one sweep process starts runs the same binary.
pub fn own_binary() -> Result<(PathBuf, PathBuf)> {
    let named = std::env::current_exe().context("cannot locate the lmloop binary to start a run")?;
    let own = Path::new("/proc/self/exe");
    Ok((if own.exists() { own.to_path_buf() } else { named.clone() }, named))
}

/// Starts `lmloop generations` for one run, in the project root, its output appended
/// to the run's log; the child is killed if this process dies first, so that an
/// interrupted sweep leaves no run behind holding its lock.
pub fn spawn(layout: &Layout, paths: &SweepPaths, run: &Run, opts: &LaunchOptions) -> Result<Child> {
    let (exe, named) = own_binary()?;
    let config = std::path::absolute(paths.config(&run.name))?;
    let log_path = paths.log(&run.name);
    std::fs::create_dir_all(log_path.parent().expect("logs have a folder"))?;
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open the run log {}", log_path.display()))?;
    let mut cmd = Command::new(&exe);
    // The run sees the binary's name, not /proc/self/exe, in its messages.
    std::os::unix::process::CommandExt::arg0(&mut cmd, &named);
    cmd.arg("generations")
        .arg("--config")
        .arg(&config)
        .arg("--run")
        .arg(&run.name)
        .arg("--threads")
        .arg(opts.threads.to_string());
    if let Some(d) = &opts.device {
        cmd.arg("--device").arg(d.name());
    }
    writeln!(
        log,
        "=== {} attempt on {} at unix time {}: {} {}",
        opts.executor,
        hostname(),
        now_unix(),
        named.display(),
        cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
    )?;
    cmd.current_dir(layout.root()).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
    // SAFETY: prctl is async-signal-safe; the closure allocates nothing.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().with_context(|| format!("cannot start run {}", run.name))?;
    write_record(
        paths,
        &run.name,
        &StateRecord {
            state: "running".into(),
            executor: opts.executor.into(),
            host: hostname(),
            pid: child.id(),
            updated_unix: now_unix(),
            exit_code: None,
            slurm_task: opts.slurm_task.clone(),
        },
    )?;
    Ok(child)
}

/// Records how a run's process ended; returns whether the run is now finished.
pub fn record_exit(
    layout: &Layout,
    paths: &SweepPaths,
    sweep: &Sweep,
    run: &Run,
    status: std::process::ExitStatus,
    opts: &LaunchOptions,
    pid: u32,
) -> Result<bool> {
    let finished = status.success() && super::state::is_finished(layout, sweep, run)?;
    let code = status.code().or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        status.signal().map(|s| 128 + s)
    });
    write_record(
        paths,
        &run.name,
        &StateRecord {
            state: if finished { "finished" } else { "failed" }.into(),
            executor: opts.executor.into(),
            host: hostname(),
            pid,
            updated_unix: now_unix(),
            exit_code: code,
            slurm_task: opts.slurm_task.clone(),
        },
    )?;
    Ok(finished)
}

/// Describes a failed run's exit for messages: "exit code 1" or "killed by signal 9".
pub fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => "exited without finishing every generation".into(),
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "unknown exit".into(),
    }
}
