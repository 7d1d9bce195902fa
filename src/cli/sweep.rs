//! `lmloop sweep …`: the sweep subcommands' arguments, handed to `crate::sweep` as
//! plain options.
use crate::layout::Layout;
use crate::sweep::{local, plan, report, slurm, status, Sweep};
use anyhow::Result;
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// Grids of runs with seeds: plan, run here or on SLURM, report means with 95% confidence intervals.
#[derive(Subcommand, Debug, Clone)]
pub enum SweepCommand {
    /// Print the cells, their run names and the compute they need.
    Plan {
        /// Sweep file (TOML).
        file: PathBuf,
    },
    /// Run every cell at every seed on this machine; a rerun skips finished runs and resumes the others.
    Run(RunArgs),
    /// Write a SLURM array script (one task per run) and, with --submit, hand it to sbatch.
    Slurm(SlurmArgs),
    /// Where every run stands: finished, running, failed (with its log), interrupted, not started.
    Status {
        /// Sweep file (TOML).
        file: PathBuf,
    },
    /// Pool runs over seeds: summary.csv, changes.csv, contrasts.csv, rates.csv, thresholds.csv and report.html in analysis/sweeps/NAME/.
    Report {
        /// Sweep file (TOML).
        file: PathBuf,
    },
    /// Run one run of the sweep by index (what a SLURM array task calls).
    #[command(hide = true)]
    RunTask(RunTaskArgs),
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Sweep file (TOML).
    pub file: PathBuf,
    /// Runs at a time.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// CPU threads shared between the runs (each gets threads / jobs, at least 1). Default: one per core.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Device of every run: auto, cpu or cuda. Default: each config's.
    #[arg(long, value_enum)]
    pub device: Option<crate::config::DeviceChoice>,
}

#[derive(Args, Debug, Clone)]
pub struct SlurmArgs {
    /// Sweep file (TOML).
    pub file: PathBuf,
    /// SLURM partition (--partition). Default: the cluster's default.
    #[arg(long)]
    pub partition: Option<String>,
    /// Wall-clock limit per task (--time), e.g. 02:00:00. Default: the partition's.
    #[arg(long)]
    pub time: Option<String>,
    /// GPUs per task (--gpus-per-task). Default: none.
    #[arg(long)]
    pub gpus_per_task: Option<u32>,
    /// CPU cores per task; the run uses as many threads.
    #[arg(long, default_value_t = 2)]
    pub cpus_per_task: u32,
    /// At most this many tasks at once (the array's %K). Default: no limit.
    #[arg(long)]
    pub max_parallel: Option<u32>,
    /// Device of every run: auto, cpu or cuda. Default: each config's.
    #[arg(long, value_enum)]
    pub device: Option<crate::config::DeviceChoice>,
    /// Submit with `sbatch --parsable` and record the job id.
    #[arg(long)]
    pub submit: bool,
}

#[derive(Args, Debug, Clone)]
pub struct RunTaskArgs {
    /// Sweep file (TOML).
    pub file: PathBuf,
    /// Index of the run (the SLURM array task id).
    #[arg(long)]
    pub index: usize,
    /// Run name the script expects at this index; refuses to run if the file changed.
    #[arg(long)]
    pub expect: Option<String>,
    /// CPU threads of the run.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Device of the run: auto, cpu or cuda. Default: the config's.
    #[arg(long, value_enum)]
    pub device: Option<crate::config::DeviceChoice>,
}

pub fn run(layout: &Layout, command: &SweepCommand) -> Result<()> {
    match command {
        SweepCommand::Plan { file } => {
            let sweep = Sweep::load(file)?;
            print!("{}", plan::format_plan(layout, &sweep)?);
        }
        SweepCommand::Run(a) => {
            let sweep = Sweep::load(&a.file)?;
            let threads =
                a.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
            local::run_local(layout, &sweep, &local::LocalOptions { jobs: a.jobs, threads, device: a.device })?;
        }
        SweepCommand::Slurm(a) => {
            let sweep = Sweep::load(&a.file)?;
            let opts = slurm::SlurmOptions {
                partition: a.partition.clone(),
                time: a.time.clone(),
                gpus_per_task: a.gpus_per_task,
                cpus_per_task: a.cpus_per_task,
                max_parallel: a.max_parallel,
                device: a.device,
            };
            println!("{}", slurm::write_and_submit(layout, &sweep, &opts, a.submit)?);
        }
        SweepCommand::Status { file } => {
            let sweep = Sweep::load(file)?;
            print!("{}", status::format_status(layout, &sweep)?);
        }
        SweepCommand::Report { file } => {
            let sweep = Sweep::load(file)?;
            let out = report::write_report(layout, &sweep)?;
            println!(
                "wrote {}, {} and {} (contrasts.csv, rates.csv and thresholds.csv beside them)",
                out.summary.display(),
                out.changes.display(),
                out.html.display()
            );
            println!("the report reads {}", out.intervals);
            if out.verdicts.is_empty() {
                println!("the sweep file names no claim ([[claim]]): no verdict, every table is exploratory");
            } else {
                println!("verdicts (verdicts.csv):");
                for line in &out.verdicts {
                    println!("  {line}");
                }
            }
            if !out.incomplete.is_empty() {
                println!(
                    "{} run(s) incomplete; their seeds are named as missing where they lack values:",
                    out.incomplete.len()
                );
                for line in &out.incomplete {
                    println!("  {line}");
                }
            }
        }
        SweepCommand::RunTask(a) => {
            let sweep = Sweep::load(&a.file)?;
            slurm::run_task(layout, &sweep, a.index, a.expect.as_deref(), a.threads, a.device)?;
        }
    }
    Ok(())
}
