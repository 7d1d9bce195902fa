//! `lmloop sweep status`: where every run stands, for either executor.
//!
//! Read from disk (what the runs and executors left behind), plus SLURM's own view
//! of the array when a job was submitted and `squeue` is available.
use super::cells::Sweep;
use super::slurm::{queue_states, submitted_job};
use super::state::{run_status, RunState};
use crate::layout::Layout;
use crate::layout::SweepPaths;
use anyhow::Result;
use std::fmt::Write as _;

pub fn format_status(layout: &Layout, sweep: &Sweep) -> Result<String> {
    let paths = SweepPaths::new(layout, &sweep.spec.name);
    let n_gen = sweep.spec.generations + 1;
    let job = submitted_job(&paths);
    let mut s = String::new();
    let queue = match &job {
        Some(j) => match queue_states(&j.job_id) {
            Ok(q) => {
                let _ = writeln!(s, "SLURM job {}: {} task(s) still queued or running", j.job_id, q.len());
                Some((j, q))
            }
            Err(e) => {
                let _ = writeln!(
                    s,
                    "SLURM job {} (squeue unavailable: {e:#}); showing what the runs left on disk",
                    j.job_id
                );
                None
            }
        },
        None => None,
    };
    let _ = writeln!(s, "{:<4} {:<48} {:>6} {:>6}  {:<12} detail", "idx", "run", "seed", "gens", "state");
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for (i, run) in sweep.runs.iter().enumerate() {
        let st = run_status(layout, &paths, sweep, run)?;
        *counts.entry(st.state.word()).or_default() += 1;
        let mut detail = match &st.state {
            RunState::Running { host, executor } => format!("{executor} on {host}"),
            RunState::Failed { exit_code } => {
                format!(
                    "exit code {}; log {}",
                    exit_code.map(|c| c.to_string()).unwrap_or("?".into()),
                    paths.log(&run.name).display()
                )
            }
            RunState::Interrupted => "resumes on the next `sweep run` or task".to_string(),
            _ => String::new(),
        };
        if let Some((j, q)) = &queue {
            // The index in the submitted array, which may differ if the file changed since.
            if let Some(task) = j.runs.iter().position(|r| r == &run.name) {
                if let Some(state) = q.get(&task) {
                    detail = format!(
                        "SLURM task {}_{task} {state}{}{detail}",
                        j.job_id,
                        if detail.is_empty() { "" } else { "; " }
                    );
                }
            }
        }
        let _ = writeln!(
            s,
            "{i:<4} {:<48} {:>6} {:>6}  {:<12} {detail}",
            run.name,
            run.seed,
            format!("{}/{n_gen}", st.generations_done),
            st.state.word()
        );
    }
    let summary: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    let _ = writeln!(s, "{} runs: {}", sweep.runs.len(), summary.join(", "));
    Ok(s)
}
