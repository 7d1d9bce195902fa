//! Where a sweep keeps its files (the one place that spells these paths).
//!
//! ```text
//! analysis/sweeps/NAME/
//!   configs/RUN.toml          the resolved config of every run
//!   logs/RUN.log              what each run printed (appended across attempts)
//!   state/RUN.json            which process runs it, or how it failed
//!   slurm/array.sbatch        the SLURM array script; slurm/job.json after --submit
//!   slurm/logs/task-I.log     SLURM's own output of array task I
//!   summary.csv, changes.csv  the aggregate over seeds (`sweep report`)
//!   tails.csv                 tail survival over seeds beside the simulator
//!   report.html, plots/       the report
//! ```
//! The runs themselves live where every run lives (`analysis/RUN/`, `checkpoints/RUN/`, …).
use crate::layout::Layout;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct SweepPaths {
    dir: PathBuf,
}

impl SweepPaths {
    pub fn new(layout: &Layout, sweep: &str) -> Self {
        Self { dir: layout.root().join("analysis").join("sweeps").join(sweep) }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self, run: &str) -> PathBuf {
        self.dir.join("configs").join(format!("{run}.toml"))
    }

    pub fn log(&self, run: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{run}.log"))
    }

    pub fn state(&self, run: &str) -> PathBuf {
        self.dir.join("state").join(format!("{run}.json"))
    }

    pub fn slurm_script(&self) -> PathBuf {
        self.dir.join("slurm").join("array.sbatch")
    }

    pub fn slurm_job(&self) -> PathBuf {
        self.dir.join("slurm").join("job.json")
    }

    pub fn slurm_logs(&self) -> PathBuf {
        self.dir.join("slurm").join("logs")
    }

    pub fn summary_csv(&self) -> PathBuf {
        self.dir.join("summary.csv")
    }

    pub fn changes_csv(&self) -> PathBuf {
        self.dir.join("changes.csv")
    }

    pub fn tails_csv(&self) -> PathBuf {
        self.dir.join("tails.csv")
    }

    pub fn report_html(&self) -> PathBuf {
        self.dir.join("report.html")
    }

    pub fn plots(&self) -> PathBuf {
        self.dir.join("plots")
    }
}
