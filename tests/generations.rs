//! The recursive loop end to end: policies build the mixtures DESIGN.md defines, an
//! interrupted run resumes to the same numbers, runs are protected from mix-ups.
mod common;

use common::*;
use lmloop::policy::{mixture, Corpus, MixtureManifest, Policy, RealData};
use lmloop::records::{read_rows, GenerationRow};
use lmloop::tokens::{write_tokens, TokenFile};
use std::path::Path;
use std::sync::Arc;

fn project() -> tempfile::TempDir {
    tiny_project()
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
    let split = file_tokens(&real);
    let eot = 0;
    // The control draws 2·D real tokens' worth of documents outside R, so it holds
    // more of the split out of R than the default half.
    let control = std::fs::read_to_string(root.join("tiny.toml"))
        .unwrap()
        .replace("[generations]\n", "[generations]\nholdout_fraction = 0.7\n");
    std::fs::write(root.join("control.toml"), control).unwrap();
    for (policy, extra) in [
        ("replace", vec![]),
        ("accumulate", vec![]),
        ("accumulate-subsample", vec![]),
        ("mix", vec!["--real-fraction", "0.25"]),
        ("fresh", vec!["--real-fraction", "0.2"]),
        ("real", vec![]),
    ] {
        let config = if policy == "real" { "control.toml" } else { "tiny.toml" };
        let mut args = vec!["generations", "--config", config, "-n", "3", "--policy", policy, "--run", policy];
        args.extend_from_slice(&extra);
        let out = lmloop(root, &args);
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
        // R: the split less its held-out share, the same for every policy but the control.
        let r = m0.total_tokens;
        assert!(r <= split / 2 + 1 || policy == "real", "{policy}: R holds at most half the split ({r} of {split})");
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
                "real" => {
                    assert_eq!(m.synthetic_tokens, 0, "the control trains on real data only");
                    assert!(
                        m.real_tokens >= r && m.real_tokens < r + slack,
                        "D = |R| real tokens: {} vs {r}",
                        m.real_tokens
                    );
                }
                "fresh" => {
                    let base = m0.total_tokens;
                    assert!(base < split, "fresh holds a pool apart from generation 0");
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
    let data = RealData::new(real.clone(), policy, 0, Some(0.5), 7).unwrap();
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
        let data = RealData::new(real.clone(), policy, 0, None, 1).unwrap();
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
            r.score_seconds = 0.0;
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
    // Kill it while generation 1 is training: its log exists but its checkpoint does not.
    let partial_log = root.join("checkpoints/r/.gen-01.train_log.csv.partial");
    let args = ["generations", "--config", "tiny.toml", "-n", "2", "--run", "r"];
    kill_once_exists(root, &args, &partial_log, std::time::Duration::from_millis(300), "generation 1");
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
    assert!(
        std::fs::read_dir(root.join("checkpoints/r")).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with('.')),
        "no temporaries left behind"
    );
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

    let _held = lmloop::generations::RunLock::acquire(&lmloop::layout::Layout::new(root), "x").unwrap();
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
    assert_clear_error(&generations(root, &["--policy", "real", "--real-fraction", "0.5"]), "control");
    assert_clear_error(&generations(root, &["--policy", "replace", "--real-fraction", "0.5"]), "real-fraction");
    let with = |extra: &str| {
        let cfg = std::fs::read_to_string(root.join("tiny.toml")).unwrap();
        std::fs::write(root.join("bad.toml"), cfg.replace("[train]\n", &format!("[train]\n{extra}\n"))).unwrap();
        lmloop(root, &["generations", "--config", "bad.toml"])
    };
    assert_clear_error(&with("max_tokens = 50000"), "train.max_tokens");
    assert_clear_error(&with("budget = \"tokens\""), "train.max_tokens");
    let cap = std::fs::read_to_string(root.join("tiny.toml"))
        .unwrap()
        .replace("[sample]\n", "[sample]\nmax_doc_tokens = 0\n");
    std::fs::write(root.join("cap.toml"), cap).unwrap();
    assert_clear_error(&lmloop(root, &["generations", "--config", "cap.toml"]), "at least 1");
    assert!(!root.join("checkpoints").exists(), "nothing was trained for a bad request");
}

/// A value of the wrong type is named by its key, the file and the line, in one
/// sentence, by every command that reads a config file; a correct file still loads.
#[test]
fn mistyped_config_values_name_their_key_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let tiny = std::fs::read_to_string(tiny_config()).unwrap();
    let after = |header: &str, line: &str| tiny.replace(header, &format!("{header}{line}\n"));
    let curation = |lines: &str| format!("{tiny}\n[curation]\n{lines}\n");
    // (the file, its bad line, the key, toml's message)
    let cases = [
        (
            after("[train]\n", "truncated_ce_gamma = \"abc\""),
            "truncated_ce_gamma",
            "train.truncated_ce_gamma",
            "invalid type: string \"abc\", expected f64",
        ),
        (
            after("[generations]\n", "reference = \"foo\""),
            "reference",
            "generations.reference",
            "unknown variant `foo`, expected `m0` or `oracle`",
        ),
        (
            curation("verifier = \"self\"\nkeep_fraction = \"0.5\""),
            "keep_fraction",
            "curation.keep_fraction",
            "invalid type: string \"0.5\", expected f64",
        ),
        (
            curation("keep_fraction = 0.5\nverifier = \"foo\""),
            "verifier",
            "curation.verifier",
            "unknown variant `foo`, expected one of `reference`, `m0`, `oracle`, `self`",
        ),
        // Nested: an inline table, a dotted key at the top level, an unknown key.
        (
            "# a comment\nsample = { temperature = \"hot\" }\n[data]\nvocab_size = 300\n".to_string(),
            "sample",
            "sample.temperature",
            "invalid type: string \"hot\", expected f64",
        ),
        (
            "# a comment\ntrain.seed = -1\n".to_string(),
            "train.seed",
            "train.seed",
            "invalid value: integer `-1`, expected u64",
        ),
        (after("[model]\n", "n_layers = 3"), "n_layers", "model.n_layers", "unknown field `n_layers`"),
    ];
    for (text, bad, key, message) in cases {
        let number = text.lines().position(|l| l.starts_with(bad)).unwrap() + 1;
        std::fs::write(root.join("bad.toml"), &text).unwrap();
        let want = format!("invalid config file bad.toml, line {number}: {key}: {message}");
        for command in [
            &["generations", "--config", "bad.toml"][..],
            &["train", "--config", "bad.toml", "--data", "d", "--out", "o"],
        ] {
            assert_clear_error(&lmloop(root, command), &want);
        }
        let err = format!("{:#}", lmloop::config::Config::from_toml(&text).unwrap_err());
        assert!(err.starts_with(&format!("line {number}: {key}: {message}")), "no file, the line: {err}");
    }
    std::fs::write(root.join("good.toml"), &tiny).unwrap();
    let cfg = lmloop::config::Config::load(&root.join("good.toml")).unwrap();
    assert_eq!(cfg, lmloop::config::Config::from_toml(&tiny).unwrap());
    assert_eq!(cfg.model.n_layer, 2);
}

/// An epoch is a pass: every window once, in a fresh shuffled order each pass.
#[test]
fn epochs_visit_every_window_once_per_pass() {
    use lmloop::stream::EpochSchedule;
    let schedule = EpochSchedule::new(37, 5, 74, 9).unwrap();
    let batches: Vec<Vec<usize>> = schedule.batches().collect();
    assert_eq!(batches.len(), schedule.steps());
    assert_eq!(schedule.steps(), 15);
    assert!(batches[..14].iter().all(|b| b.len() == 5) && batches[14].len() == 4, "full batches, then the rest");
    let visits: Vec<usize> = batches.concat();
    for pass in visits.chunks(37) {
        let mut seen = pass.to_vec();
        seen.sort();
        assert_eq!(seen, (0..37).collect::<Vec<_>>(), "each pass visits every window exactly once");
    }
    assert_ne!(visits[..37], visits[37..], "each pass has its own order");
    assert!((schedule.passes() - 2.0).abs() < 1e-12);
}

/// Windows are aligned to documents: each document's first window starts from the
/// start token at position 0, as the sampler starts a document; its last one is padded
/// with ignored targets; every token is a target exactly once.
#[test]
fn windows_start_every_document_as_the_sampler_does() {
    use lmloop::stream::{TokenStream, IGNORE};
    use lmloop::tokenizer::Delimiters;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.bin");
    // Document A: 1..=25 and the end token 0; document B: 30..=34 and 0.
    let tokens: Vec<u32> = (1..=25).chain([0]).chain(30..=34).chain([0]).collect();
    write_tokens(&path, &tokens, 200).unwrap();
    let stream = TokenStream::from_file(Arc::new(TokenFile::open(&path).unwrap()), Delimiters { start: 199, end: 0 });
    assert_eq!(stream.window_count(10), 4, "⌈26/10⌉ + ⌈6/10⌉");
    let (x, y) = stream.windows(&[0, 1, 2, 3], 10);
    let row = |v: &[i64], i: usize| v[i * 10..(i + 1) * 10].to_vec();
    assert_eq!(row(&x, 0), [199, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert_eq!(row(&y, 0), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert_eq!(row(&x, 1), [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]);
    assert_eq!(row(&x, 2)[..6], [20, 21, 22, 23, 24, 25]);
    assert_eq!(row(&y, 2), [21, 22, 23, 24, 25, 0, IGNORE, IGNORE, IGNORE, IGNORE]);
    assert_eq!(row(&x, 3)[..6], [199, 30, 31, 32, 33, 34], "B starts from the start token, not from A's end");
    assert_eq!(row(&y, 3), [30, 31, 32, 33, 34, 0, IGNORE, IGNORE, IGNORE, IGNORE]);
    let targets: Vec<i64> = y.iter().copied().filter(|&t| t != IGNORE).collect();
    assert_eq!(targets, tokens.iter().map(|&t| t as i64).collect::<Vec<_>>(), "every token a target once");
    assert_eq!((0..4).map(|w| stream.window_targets(w, 10)).sum::<usize>(), tokens.len());
}

/// Validation measures the same text at every evaluation of every generation.
#[test]
fn validation_windows_do_not_depend_on_the_seed() {
    use lmloop::config::TrainConfig;
    use lmloop::stream::TokenStream;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.bin");
    write_tokens(&path, &(0..5000u32).map(|i| i % 97).collect::<Vec<_>>(), 200).unwrap();
    let val = TokenStream::from_file(Arc::new(TokenFile::open(&path).unwrap()), 96);
    let a = TrainConfig { seed: 1, batch_size: 4, eval_batches: 3, ..Default::default() };
    let b = TrainConfig { seed: 99, ..a.clone() };
    let wa = lmloop::train::validation_windows(&val, &a, 32);
    assert_eq!(wa, lmloop::train::validation_windows(&val, &b, 32));
    assert_eq!(wa.len(), 12);
    assert!(wa.windows(2).all(|w| w[0] < w[1]), "distinct windows in order: {wa:?}");
    assert!(*wa.last().unwrap() > val.window_count(32) / 2, "spread over the whole split: {wa:?}");
}

/// Every generation trains the same number of passes over its own mixture, so
/// accumulate's compute grows with its data; the compute-matched budget holds it fixed.
#[test]
fn generations_train_equal_passes_unless_compute_is_matched() {
    let dir = project();
    let root = dir.path();
    let out = generations(root, &["-n", "2", "--policy", "accumulate", "--run", "acc"]);
    assert_eq!(out.0, 0, "{}", out.2);
    let rows = read_rows(&root.join("analysis/acc/generations.csv")).unwrap();
    let block = 32.0;
    for r in &rows {
        assert_eq!(r.budget, "epochs");
        assert!((r.train_epochs - 8.0).abs() < 0.01, "generation {}: {} passes", r.generation, r.train_epochs);
        let want = 8.0 * r.train_tokens as f64;
        assert!((r.trained_tokens as f64 - want).abs() <= 8.0 * block + 1.0, "{} vs {want}", r.trained_tokens);
    }
    assert!(rows[2].trained_tokens as f64 > 2.5 * rows[0].trained_tokens as f64, "accumulate trains on R + S_1 + S_2");

    let cfg = std::fs::read_to_string(root.join("tiny.toml"))
        .unwrap()
        .replace("epochs = 8", "budget = \"tokens\"\nmax_tokens = 40000");
    std::fs::write(root.join("matched.toml"), cfg).unwrap();
    let out = lmloop(
        root,
        &["generations", "--config", "matched.toml", "-n", "2", "--policy", "accumulate", "--run", "matched"],
    );
    assert_eq!(out.0, 0, "{}", out.2);
    let rows = read_rows(&root.join("analysis/matched/generations.csv")).unwrap();
    assert!(
        rows.iter()
            .all(|r| r.budget == "tokens" && r.trained_tokens >= 40000 && r.trained_tokens < 40000 + block as u64),
        "a fixed budget of trained targets, overshot by less than one window"
    );
    assert!(rows[2].train_epochs < rows[0].train_epochs / 2.0, "fewer passes over a larger mixture");
    let run_toml = std::fs::read_to_string(root.join("analysis/matched/run.toml")).unwrap();
    assert!(run_toml.contains("budget = \"tokens\""), "the variant is recorded in run.toml");

    // Held-out loss by frequency bucket: every test target in exactly one bucket.
    let text = std::fs::read_to_string(root.join("analysis/matched/loss_by_frequency.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next().unwrap(), "generation,bucket,min_real_count,max_real_count,target_tokens,mean_loss");
    // Every test token is a target (each document's first one after the start token).
    let test_targets = file_tokens(&root.join("corpora/real/toy/test.bin")) as u64;
    let records: Vec<Vec<String>> = lines.map(|l| l.split(',').map(str::to_string).collect()).collect();
    assert_eq!(records.len(), 3 * 9);
    for (k, row) in rows.iter().enumerate().take(3) {
        let of_k: Vec<&Vec<String>> = records.iter().filter(|r| r[0] == k.to_string()).collect();
        let targets: u64 = of_k.iter().map(|r| r[4].parse::<u64>().unwrap()).sum();
        assert_eq!(targets, test_targets, "generation {k}");
        let weighted: f64 = of_k
            .iter()
            .filter(|r| r[4] != "0")
            .map(|r| r[4].parse::<f64>().unwrap() * r[5].parse::<f64>().unwrap())
            .sum();
        let held_out = row.held_out_loss;
        assert!((weighted / test_targets as f64 - held_out).abs() < 1e-3, "buckets average to the held-out loss");
    }
}

/// R can be a fixed subset of whole documents, the same for every policy; the rest of
/// the training split is the pool fresh data comes from.
#[test]
fn a_real_subset_is_shared_by_policies_and_the_rest_is_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let lens: Vec<usize> = (0..80).map(|i| 5 + (i * 7) % 23).collect();
    let split = toy_corpus_file(dir.path(), "real", &lens, 1);
    let total = split.tokens();
    let subset = total / 3;
    let a = RealData::new(split.clone(), Policy::Replace, subset, None, 5).unwrap();
    let b = RealData::new(split.clone(), Policy::Fresh { real_fraction: 0.5 }, subset, None, 5).unwrap();
    assert_eq!(a.base.documents, b.base.documents, "R does not depend on the policy");
    assert!(a.base.tokens() >= subset && a.base.tokens() < subset + 28);
    let mut all: Vec<usize> = a.base.documents.iter().chain(&a.pool).map(|d| d.start).collect();
    all.sort();
    assert_eq!(all, split.documents.iter().map(|d| d.start).collect::<Vec<_>>(), "R and the pool partition the split");
    let c = RealData::new(split.clone(), Policy::Replace, subset, None, 6).unwrap();
    assert_ne!(a.base.documents, c.base.documents, "another subset seed, another R");
    let err = RealData::new(split, Policy::Replace, total, None, 5).err().unwrap().to_string();
    assert!(err.contains("real_subset_tokens"), "{err}");
}

/// The control trains on D real tokens drawn afresh each generation, same size as replace.
#[test]
fn the_real_control_draws_fresh_real_documents_each_generation() {
    let dir = tempfile::tempdir().unwrap();
    let lens: Vec<usize> = (0..60).map(|i| 5 + (i * 7) % 23).collect();
    let split = toy_corpus_file(dir.path(), "real", &lens, 1);
    let data = RealData::new(split.clone(), Policy::Real, split.tokens() / 4, None, 3).unwrap();
    let d = data.base.tokens();
    let (_, m1) = mixture(1, Policy::Real, &data, &[], d, 11).unwrap();
    let (_, m2) = mixture(2, Policy::Real, &data, &[], d, 12).unwrap();
    for m in [&m1, &m2] {
        assert_eq!(m.synthetic_tokens, 0);
        assert!(m.real_tokens >= d && m.real_tokens < d + 28, "{} vs D = {d}", m.real_tokens);
    }
    let (s1, _) = mixture(1, Policy::Real, &data, &[], d, 11).unwrap();
    let (s2, _) = mixture(2, Policy::Real, &data, &[], d, 12).unwrap();
    let read = |s: &lmloop::stream::TokenStream| {
        let mut v = Vec::new();
        s.read(0, s.len(), &mut v);
        v
    };
    assert_ne!(read(&s1), read(&s2), "each generation draws its own sample");
}

/// A corpus cut at the length cap is counted, shown and warned about.
#[test]
fn truncation_is_counted_and_warned_about() {
    let dir = project();
    let root = dir.path();
    let cfg = std::fs::read_to_string(root.join("tiny.toml"))
        .unwrap()
        .replace("[sample]\n", "[sample]\nmax_doc_tokens = 8\n");
    std::fs::write(root.join("capped.toml"), cfg).unwrap();
    let out = lmloop(root, &["generations", "--config", "capped.toml", "-n", "1", "--run", "capped"]);
    assert_eq!(out.0, 0, "{}", out.2);
    assert!(out.2.contains("warning") && out.2.contains("length cap of 8 tokens"), "{}", out.2);
    let rows = read_rows(&root.join("analysis/capped/generations.csv")).unwrap();
    assert!(rows.iter().all(|r| r.synthetic_truncation_share > 0.01 && r.synthetic_truncation_share <= 1.0));
    // The default cap (four times the longest real document) cuts far fewer, and the
    // loop warns exactly when a corpus has more than 1% cut.
    let out = generations(root, &["-n", "1", "--run", "uncapped"]);
    assert_eq!(out.0, 0, "{}", out.2);
    let default = read_rows(&root.join("analysis/uncapped/generations.csv")).unwrap();
    for (d, c) in default.iter().zip(&rows) {
        assert!(
            d.synthetic_truncation_share < c.synthetic_truncation_share / 4.0,
            "{} vs {}",
            d.synthetic_truncation_share,
            c.synthetic_truncation_share
        );
    }
    let warned = default.iter().any(|r| r.synthetic_truncation_share > 0.01);
    assert_eq!(out.2.contains("warning"), warned, "{}", out.2);
}
