//! Run integrity: training killed at random steps resumes to the bit-identical end
//! state, a run refuses a changed corpus, stale temporaries are cleaned, a report
//! that cannot be drawn does not stop the experiment, libtorch's out-of-memory
//! failures name the setting to lower.
mod common;

use common::*;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tch::Tensor;

/// The tiny config with dropout (so the random stream matters) and a snapshot every 4 steps.
fn resumable_config(root: &Path) -> PathBuf {
    let cfg = std::fs::read_to_string(tiny_config())
        .unwrap()
        .replace("block_size = 32\n", "block_size = 32\ndropout = 0.1\n")
        .replace("checkpoint_interval = 8\n", "checkpoint_interval = 4\n")
        .replace("eval_interval = 50\n", "eval_interval = 10\n");
    write(&root.join("resumable.toml"), &cfg)
}

fn train_args<'a>(cfg: &'a Path, data: &'a Path, out: &'a Path) -> Vec<&'a str> {
    vec!["train", "--config", cfg.to_str().unwrap(), "--data", data.to_str().unwrap(), "--out", out.to_str().unwrap()]
}

fn weights(ckpt: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(ckpt.join("model.safetensors")).unwrap().into_iter().collect()
}

/// The training log without its timing column.
fn log_without_timing(ckpt: &Path) -> Vec<String> {
    std::fs::read_to_string(ckpt.join("train_log.csv"))
        .unwrap()
        .lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string())
        .collect()
}

fn state_without_timing(ckpt: &Path) -> serde_json::Value {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ckpt.join("state.json")).unwrap()).unwrap();
    for key in ["seconds", "tokens_per_second", "snapshot_seconds", "snapshots"] {
        v.as_object_mut().unwrap().remove(key);
    }
    v
}

/// Logged steps so far in a running training's partial log.
fn logged_steps(partial_log: &Path) -> usize {
    std::fs::read_to_string(partial_log).map(|t| t.lines().count().saturating_sub(1)).unwrap_or(0)
}

#[test]
fn training_killed_at_random_steps_ends_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data = root.join("corpus");
    prepared(&data, 300);
    let cfg = resumable_config(root);

    let straight = root.join("straight");
    let r = lmloop(root, &train_args(&cfg, &data, &straight));
    assert_eq!(r.0, 0, "{}", r.2);
    let steps = log_without_timing(&straight).len() - 1;
    assert!(steps >= 30, "enough steps to kill in the middle ({steps})");
    assert!(!root.join(".straight.resume").exists(), "snapshots are removed once the checkpoint is complete");

    let out = root.join("killed");
    let partial = root.join(".killed.train_log.csv.partial");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut resumed_at = Vec::new();
    let mut kills = 0;
    // Kill it at random steps after the first snapshot, each time from a fresh start.
    let mut floor = 5;
    while kills < 3 && floor + 8 < steps {
        let target = rng.gen_range(floor..floor + 8).min(steps - 8);
        let mut child = Command::new(env!("CARGO_BIN_EXE_lmloop"))
            .args(train_args(&cfg, &data, &out))
            .current_dir(root)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while logged_steps(&partial) < target && t0.elapsed() < Duration::from_secs(120) {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = child.kill();
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if let Some(line) = stderr.lines().find(|l| l.starts_with("resuming the training")) {
            resumed_at.push(line.to_string());
        }
        assert!(!out.join("DONE").exists(), "killed before the end (target step {target} of {steps})");
        kills += 1;
        floor = target + 1;
    }
    let last = lmloop(root, &train_args(&cfg, &data, &out));
    assert_eq!(last.0, 0, "{}", last.2);
    if let Some(line) = last.2.lines().find(|l| l.starts_with("resuming the training")) {
        resumed_at.push(line.to_string());
    }
    assert!(resumed_at.len() >= 2, "the runs resumed from snapshots: {resumed_at:?}");
    assert!(resumed_at.iter().all(|l| !l.contains("at step 0 ")), "{resumed_at:?}");

    let (a, b) = (weights(&straight), weights(&out));
    assert_eq!(a.len(), b.len());
    for (name, t) in &a {
        assert!(t.equal(&b[name]), "tensor {name} differs after resuming");
    }
    assert_eq!(log_without_timing(&straight), log_without_timing(&out));
    assert_eq!(state_without_timing(&straight), state_without_timing(&out));
    assert!(!root.join(".killed.resume").exists() && !partial.exists(), "nothing is left beside the checkpoint");
}

#[test]
fn a_snapshot_of_other_settings_is_not_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data = root.join("corpus");
    prepared(&data, 300);
    let cfg = resumable_config(root);
    let out = root.join("ckpt");
    let partial = root.join(".ckpt.train_log.csv.partial");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lmloop"))
        .args(train_args(&cfg, &data, &out))
        .current_dir(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while logged_steps(&partial) < 9 && t0.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(root.join(".ckpt.resume").exists(), "a snapshot was written");
    let other = lmloop(
        root,
        &["train", "--config", cfg.to_str().unwrap(), "--data", data.to_str().unwrap(), "--out", "ckpt", "--seed", "5"],
    );
    assert_eq!(other.0, 0, "{}", other.2);
    assert!(other.2.contains("discarding the training snapshot"), "{}", other.2);
    assert!(!other.2.contains("resuming"), "{}", other.2);
}

fn generations(root: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["generations", "--config", "tiny.toml"];
    args.extend_from_slice(extra);
    lmloop(root, &args)
}

#[test]
fn a_run_refuses_a_re_prepared_corpus_and_names_what_changed() {
    let dir = tiny_project();
    let root = dir.path();
    let first = generations(root, &["-n", "1", "--run", "r"]);
    assert_eq!(first.0, 0, "{}", first.2);
    // Prepare the corpus again with another vocabulary under the live run.
    let corpus = root.join("corpora/real/toy");
    std::fs::remove_dir_all(&corpus).unwrap();
    prepared(&corpus, 280);
    let resumed = generations(root, &["-n", "2", "--run", "r"]);
    assert_clear_error(&resumed, "tokenizer.json");
    assert!(resumed.2.contains("train.bin"), "{}", resumed.2);
    assert!(!root.join("checkpoints/r/gen-02").exists(), "nothing was trained on the other corpus");
}

#[test]
fn stale_temporaries_anywhere_in_a_run_are_cleaned_at_the_next_start() {
    let dir = tiny_project();
    let root = dir.path();
    let first = generations(root, &["-n", "1", "--run", "r"]);
    assert_eq!(first.0, 0, "{}", first.2);
    let stale = [
        "analysis/r/.generations.csv.tmp-99999",
        "analysis/r/plots/.perplexity.svg.tmp-99999",
        "analysis/r/drift/.gen-01.toml.tmp-4",
        "analysis/r/mixture/.gen-00.json.tmp-4",
        "corpora/synthetic/r/.gen-02.bin.tmp-123",
        "checkpoints/r/.gen-02.train_log.csv.partial",
        "checkpoints/r/.gen-02.resume/.step-0000004.tmp-77/model.safetensors",
        "checkpoints/r/.gen-02.tmp-77/config.json",
    ];
    for s in stale {
        let p = root.join(s);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "half").unwrap();
    }
    let again = generations(root, &["-n", "1", "--run", "r"]);
    assert_eq!(again.0, 0, "{}", again.2);
    for s in stale {
        assert!(!root.join(s).exists(), "{s} is still there");
    }
    assert!(!root.join("checkpoints/r/.gen-02.tmp-77").exists());
    assert!(root.join("analysis/r/generations.csv").exists() && root.join("checkpoints/r/gen-01/DONE").exists());
}

#[test]
fn a_report_that_cannot_be_drawn_leaves_the_run_complete() {
    let dir = tiny_project();
    let root = dir.path();
    // A file where the plots folder should be: drawing fails (even for root).
    std::fs::create_dir_all(root.join("analysis/r")).unwrap();
    std::fs::write(root.join("analysis/r/plots"), "not a folder").unwrap();
    let out = generations(root, &["-n", "2", "--run", "r"]);
    assert_eq!(out.0, 0, "{}", out.2);
    assert!(out.2.contains("warning: the report could not be drawn"), "{}", out.2);
    assert!(out.2.contains("lmloop report --run r"), "{}", out.2);
    let rows = lmloop::records::read_rows(&root.join("analysis/r/generations.csv")).unwrap();
    assert_eq!(rows.len(), 3, "every generation ran");
    assert!(root.join("analysis/r/drift.csv").exists(), "the measures were written");

    std::fs::remove_file(root.join("analysis/r/plots")).unwrap();
    let report = lmloop(root, &["report", "--run", "r"]);
    assert_eq!(report.0, 0, "{}", report.2);
    assert!(root.join("analysis/r/report.html").exists());
}

#[test]
fn running_out_of_memory_names_the_setting_to_lower() {
    let dir = tiny_project();
    let root = dir.path();
    // A width whose embedding alone (300 × 2^32 floats) no machine can allocate.
    let cfg =
        std::fs::read_to_string(root.join("tiny.toml")).unwrap().replace("n_embd = 32\n", "n_embd = 4294967296\n");
    std::fs::write(root.join("huge.toml"), cfg).unwrap();
    let out = lmloop(root, &["generations", "--config", "huge.toml", "-n", "1", "--run", "huge"]);
    assert_clear_error(&out, "out of memory while training generation 0; lower train.batch_size (now 16)");
    assert!(out.2.contains("model.n_embd, now 4294967296"), "{}", out.2);
    assert!(!out.2.contains("Exception raised"), "libtorch's first line only: {}", out.2);
}
