//! The recursive loop end to end: policies build the mixtures DESIGN.md defines, an
//! interrupted run resumes to the same numbers, runs are protected from mix-ups.
mod common;

use common::*;
use lmloop::generations::{read_rows, GenerationRow};
use lmloop::policy::{mixture, Corpus, MixtureManifest, Policy, RealData};
use lmloop::tokens::{write_tokens, TokenFile};
use std::path::Path;
use std::sync::Arc;

/// A project root with the toy corpus prepared as `corpora/real/toy` and a config
/// (configs/tiny.toml pointed at it) written as `tiny.toml`.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    prepared(&dir.path().join("corpora/real/toy"), 300);
    let cfg = std::fs::read_to_string(tiny_config()).unwrap().replace("[data]\n", "[data]\ncorpus = \"toy\"\n");
    std::fs::write(dir.path().join("tiny.toml"), cfg).unwrap();
    dir
}

fn generations(root: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["generations", "--config", "tiny.toml"];
    args.extend_from_slice(extra);
    lmloop(root, &args)
}

fn manifest(root: &Path, run: &str, k: u32) -> MixtureManifest {
    let p = root.join(format!("analysis/{run}/mixture/gen-{k:02}.json"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn file_tokens(path: &Path) -> usize {
    TokenFile::open(path).unwrap().len()
}

/// Longest document of a token file, to bound "take documents until n tokens".
fn longest_doc(path: &Path, eot: u32) -> usize {
    let f = TokenFile::open(path).unwrap();
    lmloop::tokens::document_ranges(f.iter(), eot).iter().map(|r| r.len()).max().unwrap()
}

#[test]
fn every_policy_builds_the_mixture_it_defines() {
    let dir = project();
    let root = dir.path();
    let real = root.join("corpora/real/toy/train.bin");
    let r = file_tokens(&real);
    let eot = 0;
    for (policy, extra) in [
        ("replace", vec![]),
        ("accumulate", vec![]),
        ("accumulate-subsample", vec![]),
        ("mix", vec!["--real-fraction", "0.25"]),
        ("fresh", vec!["--real-fraction", "0.2"]),
    ] {
        let mut args = vec!["-n", "3", "--policy", policy, "--run", policy];
        args.extend_from_slice(&extra);
        let out = generations(root, &args);
        assert_eq!(out.0, 0, "{policy}: {}", out.2);
        assert!(out.1.contains("held-out"), "the table is printed: {}", out.1);
        let rows = read_rows(&root.join(format!("analysis/{policy}/generations.csv"))).unwrap();
        assert_eq!(rows.len(), 4, "{policy}: generations 0..=3");
        for row in &rows {
            assert!(row.held_out_perplexity > 1.0 && row.held_out_perplexity.is_finite());
            assert!(row.synthetic_distinct_tokens > 10);
        }
        let syn = |k: u32| root.join(format!("corpora/synthetic/{policy}/gen-{k:02}.bin"));
        let m0 = manifest(root, policy, 0);
        for k in 1..=3u32 {
            let m = manifest(root, policy, k);
            let sk = file_tokens(&syn(k));
            let slack = longest_doc(&syn(k), eot).max(longest_doc(&real, eot));
            match policy {
                "replace" => {
                    assert_eq!(m.real_tokens, 0, "replace: no real data after generation 0");
                    assert_eq!(m.synthetic_tokens, sk);
                    assert_eq!(m.parts.len(), 1);
                }
                "accumulate" => {
                    let all: usize = (1..=k).map(|j| file_tokens(&syn(j))).sum();
                    assert_eq!(m.real_tokens, r, "accumulate keeps all real data");
                    assert_eq!(m.synthetic_tokens, all, "accumulate keeps every earlier corpus");
                    let sources: Vec<&str> = m.parts.iter().map(|p| p.source.as_str()).collect();
                    for j in 1..=k {
                        assert!(sources.contains(&format!("synthetic/gen-{j:02}").as_str()), "{sources:?}");
                    }
                }
                "accumulate-subsample" => {
                    assert!(m.total_tokens >= r && m.total_tokens < r + slack, "|R| = {r}, got {}", m.total_tokens);
                }
                "mix" => {
                    let want = (0.25 * r as f64).round() as usize;
                    assert!(m.real_tokens >= want && m.real_tokens < want + slack, "{} vs {want}", m.real_tokens);
                    let want_syn = r - want;
                    assert!(m.synthetic_tokens >= want_syn && m.synthetic_tokens < want_syn + slack);
                }
                "fresh" => {
                    let base = m0.total_tokens;
                    assert!(base < r, "fresh holds a pool apart from generation 0");
                    let want = (0.2 * base as f64).round() as usize;
                    assert!(m.real_tokens >= want && m.real_tokens < want + slack, "{} vs {want}", m.real_tokens);
                }
                _ => unreachable!(),
            }
        }
    }
}

fn toy_corpus_file(dir: &Path, name: &str, docs: &[usize], first: u32) -> Corpus {
    let mut toks = Vec::new();
    for (i, &len) in docs.iter().enumerate() {
        toks.extend((0..len - 1).map(|j| first + ((i + j) % 50) as u32));
        toks.push(0);
    }
    let path = dir.join(format!("{name}.bin"));
    write_tokens(&path, &toks, 100).unwrap();
    Corpus::new(name, Arc::new(TokenFile::open(&path).unwrap()), 0)
}

#[test]
fn fresh_draws_each_real_document_once_and_fails_clearly_when_the_pool_runs_out() {
    let dir = tempfile::tempdir().unwrap();
    let real = toy_corpus_file(dir.path(), "real", &[10; 100], 1);
    let policy = Policy::Fresh { real_fraction: 0.5 };
    let data = RealData::new(real.clone(), policy, 0.5, 7).unwrap();
    assert_eq!(data.base.tokens(), 500);
    let syn: Vec<Corpus> = (1..=6).map(|k| toy_corpus_file(dir.path(), &format!("s{k}"), &[10; 60], 51)).collect();
    let mut seen: std::collections::HashSet<usize> = data.base.documents.iter().map(|d| d.start).collect();
    for k in 1..=2 {
        let (stream, m) = mixture(k, policy, &data, &syn, data.base.tokens(), 11).unwrap();
        assert_eq!(m.real_tokens, 250);
        assert_eq!(stream.len(), 500);
        let fresh = m.parts.iter().find(|p| p.source.contains("fresh")).unwrap();
        assert_eq!(fresh.documents, 25);
        // The pool is consumed in order, 25 ten-token documents per generation.
        for d in &data.pool[(k as usize - 1) * 25..k as usize * 25] {
            assert!(seen.insert(d.start), "document at {} used twice", d.start);
        }
    }
    // The pool (500 tokens) holds two generations of 250: the third must fail clearly.
    let err = match mixture(3, policy, &data, &syn, data.base.tokens(), 11) {
        Ok(_) => panic!("generation 3 must not find fresh data"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("ran out of unused real data at generation 3"), "{err}");
}

#[test]
fn mixtures_are_by_whole_documents() {
    let dir = tempfile::tempdir().unwrap();
    let real = toy_corpus_file(dir.path(), "real", &[7, 13, 29, 5, 11, 17, 23, 3, 31, 19], 1);
    let syn = vec![toy_corpus_file(dir.path(), "s1", &[9, 14, 21, 6, 12, 18, 27, 4], 51)];
    for policy in [Policy::Mix { real_fraction: 0.4 }, Policy::AccumulateSubsample] {
        let data = RealData::new(real.clone(), policy, 0.5, 1).unwrap();
        let (stream, _) = mixture(1, policy, &data, &syn, data.base.tokens(), 5).unwrap();
        let mut all = Vec::new();
        stream.read(0, stream.len(), &mut all);
        assert_eq!(*all.last().unwrap(), 0, "{policy:?}: the stream ends at a document boundary");
        // Every document in the stream is one of the source documents, intact.
        let mut doc = Vec::new();
        let source_docs: std::collections::HashSet<Vec<i64>> = [&real, &syn[0]]
            .iter()
            .flat_map(|c| {
                c.documents.iter().map(|r| {
                    let mut v = Vec::new();
                    c.file.extend_i64(r.clone(), &mut v);
                    v
                })
            })
            .collect();
        for t in all {
            doc.push(t);
            if t == 0 {
                assert!(source_docs.contains(&doc), "{policy:?}: a document was cut: {doc:?}");
                doc.clear();
            }
        }
    }
}

fn rows_without_timing(path: &Path) -> Vec<GenerationRow> {
    read_rows(path)
        .unwrap()
        .into_iter()
        .map(|mut r| {
            r.train_seconds = 0.0;
            r.sample_seconds = 0.0;
            r.eval_seconds = 0.0;
            r
        })
        .collect()
}

#[test]
fn a_killed_run_resumes_to_the_same_results() {
    let straight = project();
    let out = generations(straight.path(), &["-n", "2", "--run", "r"]);
    assert_eq!(out.0, 0, "{}", out.2);

    let dir = project();
    let root = dir.path();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lmloop"))
        .args(["generations", "--config", "tiny.toml", "-n", "2", "--run", "r"])
        .current_dir(root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it while generation 1 is training: its log exists but its checkpoint does not.
    let partial_log = root.join("checkpoints/r/.gen-01.train_log.csv.partial");
    let t0 = std::time::Instant::now();
    while !partial_log.exists() {
        assert!(t0.elapsed().as_secs() < 120, "generation 1 never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!root.join("checkpoints/r/gen-01/DONE").exists(), "killed before generation 1 finished");
    assert!(root.join("checkpoints/r/gen-00/DONE").exists());

    let resumed = generations(root, &["-n", "2", "--run", "r"]);
    assert_eq!(resumed.0, 0, "{}", resumed.2);
    let csv = |d: &Path| d.join("analysis/r/generations.csv");
    assert_eq!(rows_without_timing(&csv(root)), rows_without_timing(&csv(straight.path())));

    // A finished run prints its table without recomputing anything.
    let before = std::fs::metadata(root.join("checkpoints/r/gen-02/model.safetensors")).unwrap().modified().unwrap();
    let again = generations(root, &["-n", "2", "--run", "r"]);
    assert_eq!(again.0, 0);
    assert!(again.1.contains("held-out"));
    let after = std::fs::metadata(root.join("checkpoints/r/gen-02/model.safetensors")).unwrap().modified().unwrap();
    assert_eq!(before, after);
    assert!(std::fs::read_dir(root.join("checkpoints/r")).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().starts_with('.')),
        "no temporaries left behind");
}

#[test]
fn a_run_refuses_another_config_and_a_second_process() {
    let dir = project();
    let root = dir.path();
    let out = generations(root, &["-n", "1", "--run", "x", "--temperature", "0.9"]);
    assert_eq!(out.0, 0, "{}", out.2);
    let clash = generations(root, &["-n", "1", "--run", "x", "--temperature", "0.7"]);
    assert_clear_error(&clash, "sample.temperature");
    // --force-new discards the old run and starts again.
    let forced = generations(root, &["-n", "1", "--run", "x", "--temperature", "0.7", "--force-new"]);
    assert_eq!(forced.0, 0, "{}", forced.2);
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("corpora/synthetic/x/gen-01.json")).unwrap()).unwrap();
    assert_eq!(m["temperature"], 0.7);

    let _held = lmloop::generations::RunLock::acquire(&root.join("analysis/x"), "x").unwrap();
    assert_clear_error(&generations(root, &["-n", "1", "--run", "x", "--temperature", "0.7"]), "in use");
}

#[test]
fn bad_loop_requests_get_one_clear_sentence() {
    let dir = project();
    let root = dir.path();
    assert_clear_error(&generations(root, &["-n", "0"]), "-n");
    assert_clear_error(&generations(root, &["--policy", "mix", "--real-fraction", "1.5"]), "real-fraction");
    assert_clear_error(&generations(root, &["--policy", "mix", "--real-fraction", "-0.1"]), "real-fraction");
    assert_clear_error(&generations(root, &["--policy", "mix"]), "real-fraction");
    assert_clear_error(&generations(root, &["--policy", "fresh"]), "real-fraction");
    assert_clear_error(&generations(root, &["--policy", "shuffle"]), "unknown policy");
    assert_clear_error(&generations(root, &["--init", "warm"]), "init");
    assert!(!root.join("checkpoints").exists(), "nothing was trained for a bad request");
}
