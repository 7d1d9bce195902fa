//! Sweeps: a grid of ordinary runs over policies, λ, temperatures, any config key
//! and seeds, from one file; run on this machine or as a SLURM array; pooled over
//! seeds with 95% confidence intervals.
//!
//! | command | does |
//! |---|---|
//! | `lmloop sweep plan FILE` | cells, run names, compute |
//! | `lmloop sweep run FILE [--jobs J]` | runs them here, J at a time; a rerun resumes |
//! | `lmloop sweep slurm FILE [...] [--submit]` | writes (and submits) a SLURM array script, one task per run |
//! | `lmloop sweep status FILE` | where every run stands (either executor) |
//! | `lmloop sweep report FILE` | `summary.csv`, `changes.csv`, `contrasts.csv`, `rates.csv`, `thresholds.csv`, `report.html` |
//!
//! The file format is documented in [`spec`]; cells and ids in [`cells`].
pub mod aggregate;
pub mod cells;
pub mod claims;
pub mod contrasts;
pub mod launch;
pub mod local;
pub mod measures;
pub mod plan;
pub mod report;
pub mod slurm;
pub mod spec;
pub mod state;
pub mod stats;
pub mod status;
pub mod tables;
pub mod tails;

pub use cells::{Cell, Run, Sweep};
pub use spec::SweepSpec;
pub use stats::{t_quantile, Summary};
