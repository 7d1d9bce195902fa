//! `lmloop verify`: every artifact of a run checked against the records lmloop keeps
//! of it, without loading a model: the prepared corpus against `corpus.json`, every
//! checkpoint's weights against its `state.json`, every synthetic corpus against its
//! manifest, every mixture record against the corpora it drew from, every score file
//! and held-out record against its record or seal (and the reference model, the oracle
//! included, against the weights the scores were computed under), and every
//! generation `generations.csv` records as finished against the artifacts it needs.
use crate::durable::{is_done, read_json};
use crate::integrity::{check_file, CorpusFingerprint};
use crate::layout::{gen_name, CheckpointPaths, Layout};
use anyhow::{bail, Result};

/// What verifying one run found.
#[derive(Debug, Default, Clone)]
pub struct RunCheck {
    pub run: String,
    /// Files checked against a record, by kind.
    pub checked: Vec<(&'static str, usize)>,
    /// One sentence per damaged or missing artifact.
    pub damaged: Vec<String>,
    /// Artifacts without a record (written by an older lmloop), read unverified.
    pub unverified: Vec<String>,
}

impl RunCheck {
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty()
    }

    /// The report `lmloop verify` prints for this run.
    pub fn describe(&self) -> String {
        let checked: Vec<String> = self.checked.iter().map(|(what, n)| format!("{n} {what}")).collect();
        let mut out = format!(
            "run {}: {} checked; {}\n",
            self.run,
            checked.join(", "),
            match self.damaged.len() {
                0 => "nothing is damaged".to_string(),
                1 => "1 artifact is damaged".to_string(),
                n => format!("{n} artifacts are damaged"),
            }
        );
        for d in &self.damaged {
            out.push_str(&format!("  damaged: {d}\n"));
        }
        if !self.unverified.is_empty() {
            out.push_str(&format!(
                "  note: {} written before lmloop recorded file contents, so {} cannot be verified: {}\n",
                self.unverified.len(),
                if self.unverified.len() == 1 { "it" } else { "they" },
                self.unverified.join(", ")
            ));
        }
        out
    }
}

/// The repair of a damaged artifact of generation `k` of `run`, wherever it is found.
pub fn rerun(run: &str, k: u32) -> String {
    format!(
        "rerun the loop from generation {k} (add --rerun-from {k} to the same `lmloop generations` command: it drops \
         generation {k} and every later one of run '{run}', then computes them again), or restore the file from a copy"
    )
}

/// Checks every artifact of `run` against its records.
pub fn verify_run(layout: &Layout, run: &str) -> Result<RunCheck> {
    crate::layout::check_run_name(run)?;
    if !layout.run_toml(run).exists() {
        bail!("there is no run '{run}' (no {})", layout.run_toml(run).display());
    }
    let mut check = RunCheck { run: run.to_string(), ..Default::default() };
    check_prepared_corpus(&mut check, layout, run)?;
    let finished = match layout.generations_csv(run) {
        p if p.exists() => crate::records::read_rows(&p)?.len() as u32,
        _ => 0,
    };
    let last = last_generation_on_disk(layout, run).unwrap_or(0).max(finished);
    let (mut checkpoints, mut corpora, mut mixtures) = (0, 0, 0);
    for k in 0..=last {
        let recorded = k < finished;
        checkpoints += usize::from(check_checkpoint(&mut check, layout, run, k, recorded));
        corpora += usize::from(check_corpus(&mut check, layout, run, k, recorded));
        mixtures += usize::from(check_mixture(&mut check, layout, run, k));
    }
    let (scores, damaged_scores) = crate::scoring::verify(layout, run, last + 1);
    check.damaged.extend(damaged_scores);
    check.checked.push(("checkpoints", checkpoints));
    check.checked.push(("synthetic corpora", corpora));
    check.checked.push(("mixture records", mixtures));
    check.checked.push(("score files", scores));
    Ok(check)
}

/// Adds `what`'s error, if any, to `into`.
fn damaged(what: Result<()>, into: &mut Vec<String>) {
    if let Err(e) = what {
        into.push(format!("{e:#}"));
    }
}

/// The prepared corpus the run started on, against its fingerprint.
fn check_prepared_corpus(check: &mut RunCheck, layout: &Layout, run: &str) -> Result<()> {
    let corpus_json = layout.corpus_json(run);
    if corpus_json.exists() {
        let was: CorpusFingerprint = read_json(&corpus_json)?;
        let dir = layout.real_corpus(&was.corpus);
        match CorpusFingerprint::of(&was.corpus, &dir, was.vocab_size) {
            Ok(now) => {
                let diff = was.differences(&now);
                if !diff.is_empty() {
                    check.damaged.push(format!(
                        "the prepared corpus {} changed since the run started: {}; restore it",
                        dir.display(),
                        diff.join(", ")
                    ));
                }
            }
            Err(e) => check.damaged.push(format!("{e:#}")),
        }
        check.checked.push(("prepared corpus", 1));
    }

    Ok(())
}

/// Checkpoint k's weights and held-out loss; whether it is a finished checkpoint.
/// `recorded`: generations.csv records generation k.
fn check_checkpoint(check: &mut RunCheck, layout: &Layout, run: &str, k: u32, recorded: bool) -> bool {
    let dir = layout.checkpoint(run, k);
    let files = CheckpointPaths::new(&dir);
    if is_done(&dir) {
        match read_json::<crate::checkpoint::TrainingState>(&files.state()) {
            Ok(state) => match &state.weights {
                Some(record) => damaged(check_file(&files.weights(), record, &rerun(run, k)), &mut check.damaged),
                None => check.unverified.push(format!("the weights of {}", gen_name(k))),
            },
            Err(e) => check.damaged.push(format!("{e:#}; {}", rerun(run, k))),
        }
        if files.held_out().exists() {
            let again = "run the same `lmloop generations` command again: it evaluates the checkpoint again";
            match crate::integrity::read_sealed::<crate::records::HeldOut>(&files.held_out(), again) {
                Ok(h) if !h.sealed => check.unverified.push(format!("the held-out loss of {}", gen_name(k))),
                Ok(_) => {}
                Err(e) => check.damaged.push(format!("{e:#}")),
            }
        } else if recorded {
            check.damaged.push(format!("{} is missing; {}", files.held_out().display(), rerun(run, k)));
        }
    } else if recorded {
        check.damaged.push(format!(
            "{} is not a finished checkpoint, though generations.csv records generation {k}; {}",
            dir.display(),
            rerun(run, k)
        ));
    }
    is_done(&dir)
}

/// S_{k+1}, which generation k sampled, with a curated corpus's side files; whether
/// its manifest is there.
fn check_corpus(check: &mut RunCheck, layout: &Layout, run: &str, k: u32, recorded: bool) -> bool {
    let stem = layout.synthetic_corpus(run, k + 1);
    let (bin, txt, json) = crate::synthetic::files(&stem);
    if json.exists() {
        match read_json::<crate::synthetic::SyntheticManifest>(&json) {
            Ok(m) => {
                match &m.bin_file {
                    Some(r) => damaged(check_file(&bin, r, &rerun(run, k)), &mut check.damaged),
                    None => check.unverified.push(format!("S_{}", k + 1)),
                }
                if let Some(r) = &m.txt_file {
                    damaged(check_file(&txt, r, &rerun(run, k)), &mut check.damaged);
                }
                // A curated corpus's listing, dropped text and reference embeddings.
                if let Some(c) = &m.curation {
                    let (listing, dropped, emb) = crate::curation::curation_files(&stem);
                    damaged(check_file(&listing, &c.listing, &rerun(run, k)), &mut check.damaged);
                    damaged(check_file(&dropped, &c.dropped_text, &rerun(run, k)), &mut check.damaged);
                    if let Some(r) = &c.reference_embeddings {
                        damaged(check_file(&emb, r, &rerun(run, k)), &mut check.damaged);
                    }
                }
            }
            Err(e) => check.damaged.push(format!("{e:#}; {}", rerun(run, k))),
        }
    } else if recorded {
        check.damaged.push(format!(
            "{} is missing, though generations.csv records generation {k}, which sampled it; {}",
            json.display(),
            rerun(run, k)
        ));
    }
    json.exists()
}

/// The mixture generation k trained on, against the corpora it drew from; whether
/// its record is there.
fn check_mixture(check: &mut RunCheck, layout: &Layout, run: &str, k: u32) -> bool {
    let mixture = layout.mixture_manifest(run, k);
    if mixture.exists() {
        match read_json::<crate::policy::MixtureManifest>(&mixture) {
            Ok(m) => {
                for part in &m.parts {
                    let Some(record) = &part.record else { continue };
                    let Some(j) = part.source.strip_prefix("synthetic/gen-").and_then(|n| n.parse::<u32>().ok()) else {
                        continue;
                    };
                    let (_, _, json) = crate::synthetic::files(&layout.synthetic_corpus(run, j));
                    let now = read_json::<crate::synthetic::SyntheticManifest>(&json).ok().and_then(|m| m.bin_file);
                    if now.as_ref().is_some_and(|n| n != record) {
                        check.damaged.push(format!(
                            "{} says generation {k} trained on {} as {}, but its manifest now records {}; {}",
                            mixture.display(),
                            part.source,
                            record.describe(),
                            now.map(|n| n.describe()).unwrap_or_default(),
                            rerun(run, j.saturating_sub(1))
                        ));
                    }
                }
            }
            Err(e) => check.damaged.push(format!("{e:#}; {}", rerun(run, k))),
        }
    }
    mixture.exists()
}

/// The highest generation index any checkpoint or corpus of the run has on disk.
pub fn last_generation_on_disk(layout: &Layout, run: &str) -> Option<u32> {
    let index = |dir: std::path::PathBuf, offset: u32| -> Vec<u32> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        let digits = name.trim_start_matches('.').strip_prefix("gen-")?.get(..2)?.to_string();
                        digits.parse::<u32>().ok()?.checked_sub(offset)
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut all = index(layout.checkpoints(run), 0);
    all.extend(index(layout.synthetic_dir(run), 1));
    all.into_iter().max()
}
