//! Where the analysis files of a run live. A trait rather than an inherent
//! `impl Layout` so that it cannot clash with methods added to `layout.rs`;
//! these belong in `layout.rs` once the analysis is merged.
use crate::layout::{gen_name, Layout};
use std::path::PathBuf;

pub trait AnalysisPaths {
    fn run_toml(&self, run: &str) -> PathBuf;
    fn generations_csv(&self, run: &str) -> PathBuf;
    /// Fingerprint of the prepared corpus the run started on (`crate::integrity`).
    fn corpus_json(&self, run: &str) -> PathBuf;
    /// Device and threads the run started on (`crate::integrity`).
    fn runtime_json(&self, run: &str) -> PathBuf;
    fn drift_csv(&self, run: &str) -> PathBuf;
    fn tokens_csv(&self, run: &str) -> PathBuf;
    /// Cached drift row of S_k, or of the real split for `None`.
    fn drift_cache(&self, run: &str, synthetic_index: Option<u32>) -> PathBuf;
    /// Cached drift row of the noise floor (the real sample of D tokens).
    fn noise_floor_cache(&self, run: &str) -> PathBuf;
    /// Sizes of the real reference: |R|, D and the noise floor's size.
    fn reference_json(&self, run: &str) -> PathBuf;
    /// Held-out loss per real-count bucket of the target token, written by the generations loop.
    fn loss_by_frequency_csv(&self, run: &str) -> PathBuf;
    fn report_html(&self, run: &str) -> PathBuf;
    /// Decoded text of S_k.
    fn synthetic_text(&self, run: &str, k: u32) -> PathBuf;
    /// Default folder of `lmloop compare RUN1 RUN2 …`.
    fn comparison(&self, runs: &[String]) -> PathBuf;
}

impl AnalysisPaths for Layout {
    fn run_toml(&self, run: &str) -> PathBuf {
        self.analysis(run).join("run.toml")
    }

    fn generations_csv(&self, run: &str) -> PathBuf {
        self.analysis(run).join("generations.csv")
    }

    fn corpus_json(&self, run: &str) -> PathBuf {
        self.analysis(run).join("corpus.json")
    }

    fn runtime_json(&self, run: &str) -> PathBuf {
        self.analysis(run).join("runtime.json")
    }

    fn drift_csv(&self, run: &str) -> PathBuf {
        self.analysis(run).join("drift.csv")
    }

    fn tokens_csv(&self, run: &str) -> PathBuf {
        self.analysis(run).join("tokens.csv")
    }

    fn drift_cache(&self, run: &str, synthetic_index: Option<u32>) -> PathBuf {
        let name = synthetic_index.map_or_else(|| "real".to_string(), gen_name);
        self.analysis(run).join("drift").join(format!("{name}.toml"))
    }

    fn noise_floor_cache(&self, run: &str) -> PathBuf {
        self.analysis(run).join("drift").join("noise-floor.toml")
    }

    fn reference_json(&self, run: &str) -> PathBuf {
        self.analysis(run).join("reference.json")
    }

    fn loss_by_frequency_csv(&self, run: &str) -> PathBuf {
        self.analysis(run).join("loss_by_frequency.csv")
    }

    fn report_html(&self, run: &str) -> PathBuf {
        self.analysis(run).join("report.html")
    }

    fn synthetic_text(&self, run: &str, k: u32) -> PathBuf {
        let mut stem = self.synthetic_corpus(run, k).into_os_string();
        stem.push(".txt");
        PathBuf::from(stem)
    }

    fn comparison(&self, runs: &[String]) -> PathBuf {
        self.root().join("analysis").join(format!("compare-{}", runs.join("-")))
    }
}
