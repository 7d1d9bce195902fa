//! Damaged artifacts: every kind is refused where it is read, in one sentence naming the
//! file and the way out; `lmloop verify` finds each; `--rerun-from` repairs a run to
//! what an undamaged run holds; untouched and older runs go on as before.
mod common;

use common::{assert_clear_error, lmloop, tiny_project};
use std::path::{Path, PathBuf};

fn generations(root: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["generations", "--config", "tiny.toml", "--run", "r"];
    args.extend_from_slice(extra);
    lmloop(root, &args)
}

fn ok(r: (i32, String, String)) -> (i32, String, String) {
    assert_eq!(r.0, 0, "stdout: {}\nstderr: {}", r.1, r.2);
    r
}

/// A project holding the finished run `r` with generations 0..=2, copied into a fresh
/// folder for every case (one run trained once).
struct Finished {
    source: tempfile::TempDir,
}

impl Finished {
    fn new() -> Self {
        let source = tiny_project();
        ok(generations(source.path(), &["-n", "2"]));
        Self { source }
    }

    fn copy(&self) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        copy_tree(self.source.path(), dir.path());
        dir
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn corpus(root: &Path, k: u32) -> PathBuf {
    root.join(format!("corpora/synthetic/r/gen-{k:02}.bin"))
}

fn weights(root: &Path, k: u32) -> PathBuf {
    root.join(format!("checkpoints/r/gen-{k:02}/model.safetensors"))
}

fn flip_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.len() * 2 / 3;
    bytes[at] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

/// Cuts a token file to half its tokens (16-byte header, 2 bytes per token here): a
/// valid token file, only shorter.
fn halve(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    let tokens = (bytes.len() - 16) / 2;
    std::fs::write(path, &bytes[..16 + 2 * (tokens / 2)]).unwrap();
}

fn verify(root: &Path) -> (i32, String, String) {
    lmloop(root, &["verify", "--run", "r"])
}

#[test]
fn damaged_artifacts_are_refused_where_they_are_read_and_verify_names_them() {
    let finished = Finished::new();

    // Untouched: verify passes, and a resumed finished run recomputes nothing.
    let clean = finished.copy();
    let v = ok(verify(clean.path()));
    assert!(v.1.contains("nothing is damaged") && v.1.contains("3 checkpoints"), "{}", v.1);
    let before = std::fs::read(clean.path().join("analysis/r/generations.csv")).unwrap();
    let again = ok(generations(clean.path(), &["-n", "2"]));
    assert!(!again.2.contains("training") && !again.2.contains("sampling"), "{}", again.2);
    assert_eq!(std::fs::read(clean.path().join("analysis/r/generations.csv")).unwrap(), before);

    // The newest corpus cut to half its tokens: extending the run refuses, naming it,
    // instead of training generation 3 on half of S_3.
    let cut = finished.copy();
    halve(&corpus(cut.path(), 3));
    let r = generations(cut.path(), &["-n", "3"]);
    assert_clear_error(&r, "gen-03.bin is damaged");
    assert!(r.2.contains("--rerun-from 2"), "{}", r.2);
    assert!(!cut.path().join("checkpoints/r/gen-03").exists(), "nothing was trained on the damaged corpus");
    let v = verify(cut.path());
    assert_ne!(v.0, 0);
    assert!(v.1.contains("1 artifact is damaged") && v.1.contains("gen-03.bin"), "{}", v.1);

    // A flipped byte in an older corpus: resuming refuses, naming it.
    let flipped = finished.copy();
    flip_byte(&corpus(flipped.path(), 2));
    let r = generations(flipped.path(), &["-n", "2"]);
    assert_clear_error(&r, "gen-02.bin is damaged");
    assert!(r.2.contains("--rerun-from 1"), "{}", r.2);
    assert!(verify(flipped.path()).1.contains("gen-02.bin"));

    // A flipped byte in the weights: every command that reads them refuses.
    let bad_weights = finished.copy();
    let root = bad_weights.path();
    flip_byte(&weights(root, 1));
    let ckpt = "checkpoints/r/gen-01";
    let test = "corpora/real/toy/test.bin";
    for args in [
        vec!["sample", "--checkpoint", ckpt, "--n-tokens", "200", "--out", "s"],
        vec!["eval", "--checkpoint", ckpt, "--tokens", test],
        vec!["export", "--checkpoint", ckpt, "--out", "hf"],
    ] {
        assert_clear_error(&lmloop(root, &args), "model.safetensors is damaged");
    }
    let v = verify(root);
    assert_ne!(v.0, 0);
    assert!(v.1.contains("gen-01/model.safetensors"), "{}", v.1);

    // A damaged sample text: the report still draws, and says so instead of showing it.
    let bad_text = finished.copy();
    flip_byte(&bad_text.path().join("corpora/synthetic/r/gen-01.txt"));
    ok(lmloop(bad_text.path(), &["report", "--run", "r"]));
    let html = std::fs::read_to_string(bad_text.path().join("analysis/r/report.html")).unwrap();
    assert!(html.contains("gen-01.txt is damaged"), "the report names the damaged text");

    // A deleted manifest of a finished generation is not taken for an interrupted one:
    // the loop refuses instead of sampling the corpus again.
    let no_manifest = finished.copy();
    std::fs::remove_file(no_manifest.path().join("corpora/synthetic/r/gen-02.json")).unwrap();
    let r = generations(no_manifest.path(), &["-n", "2"]);
    assert_clear_error(&r, "gen-02.json is missing");
    let v = verify(no_manifest.path());
    assert!(v.1.contains("gen-02.json is missing"), "{}\n{}", v.1, v.2);
}

#[test]
fn rerun_from_repairs_a_run_to_what_an_undamaged_run_holds() {
    let finished = Finished::new();
    // The reference: the undamaged run extended by one generation.
    let reference = finished.copy();
    ok(generations(reference.path(), &["-n", "3"]));

    let damaged = finished.copy();
    halve(&corpus(damaged.path(), 3));
    assert_ne!(generations(damaged.path(), &["-n", "3"]).0, 0);
    ok(generations(damaged.path(), &["-n", "3", "--rerun-from", "2"]));
    for k in 1..=4 {
        assert_eq!(
            std::fs::read(corpus(damaged.path(), k)).unwrap(),
            std::fs::read(corpus(reference.path(), k)).unwrap(),
            "S_{k} after the repair"
        );
    }
    let rows = |root: &Path| {
        lmloop::records::read_rows(&root.join("analysis/r/generations.csv"))
            .unwrap()
            .into_iter()
            .map(|r| (r.generation, r.held_out_loss, r.synthetic_unigram_entropy, r.train_tokens))
            .collect::<Vec<_>>()
    };
    assert_eq!(rows(damaged.path()), rows(reference.path()));
    ok(verify(damaged.path()));
}

#[test]
fn runs_written_before_the_records_are_read_with_a_note() {
    let finished = Finished::new();
    let old = finished.copy();
    let root = old.path();
    // What an older lmloop wrote: no records in the manifests or the checkpoint states.
    let strip = |path: PathBuf, keys: &[&str]| {
        let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for k in keys {
            v.as_object_mut().unwrap().remove(*k);
        }
        std::fs::write(&path, v.to_string()).unwrap();
    };
    for k in 1..=3 {
        strip(root.join(format!("corpora/synthetic/r/gen-{k:02}.json")), &["bin_file", "txt_file"]);
    }
    for k in 0..=2 {
        strip(root.join(format!("checkpoints/r/gen-{k:02}/state.json")), &["weights"]);
    }
    let v = ok(verify(root));
    assert!(v.1.contains("cannot be verified") && v.1.contains("S_1"), "{}", v.1);
    let r = ok(generations(root, &["-n", "3"]));
    assert!(r.2.contains("read unverified"), "{}", r.2);
    // The corpus the extension sampled has its records.
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("corpora/synthetic/r/gen-04.json")).unwrap()).unwrap();
    assert!(m["bin_file"]["sha256"].as_str().is_some_and(|s| s.len() == 64), "{m}");
}

/// The values a generation's row computes from score files and records, as text.
fn scored_rows(root: &Path) -> Vec<String> {
    lmloop::records::read_rows(&root.join("analysis/r/generations.csv"))
        .unwrap()
        .into_iter()
        .map(|r| {
            format!(
                "{} {} {} {} {} {} {} {} {}",
                r.generation,
                r.held_out_loss,
                r.reference_perplexity_median,
                r.reference_beyond_real_p99,
                r.self_perplexity_median,
                r.precision,
                r.recall,
                r.density,
                r.coverage
            )
        })
        .collect()
}

fn scores(root: &Path, name: &str) -> PathBuf {
    root.join("analysis/r/scores").join(name)
}

/// Keeps the first `rows` data rows of a CSV.
fn cut_rows(path: &Path, rows: usize) {
    let text = std::fs::read_to_string(path).unwrap();
    let kept: Vec<&str> = text.lines().take(rows + 1).collect();
    std::fs::write(path, kept.join("\n") + "\n").unwrap();
}

#[test]
fn damaged_score_files_are_found_by_verify_and_computed_again_never_used() {
    let finished = Finished::new();
    let clean = finished.copy();
    ok(generations(clean.path(), &["-n", "3"]));
    let want = scored_rows(clean.path());
    // (The markers hold the seconds scoring took, so they are compared by their values.)
    let files = ["real-test.emb", "real-test.csv", "noise-floor.json", "gen-02.csv", "gen-01.csv"];
    let clean_bytes: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(scores(clean.path(), f)).unwrap()).collect();
    type Damage = fn(&Path);
    let damages: [(&str, &str, Damage); 6] = [
        // One flipped bit in the real passages' embeddings.
        ("real-test.emb", "real-test.emb is damaged", |p| flip_byte(p)),
        // The real test scores cut to half their rows.
        ("real-test.csv", "real-test.csv is damaged", |p| cut_rows(p, 4)),
        // One draw's precision of the noise floor edited.
        ("noise-floor.json", "noise-floor.json is damaged", |p| {
            let text = std::fs::read_to_string(p).unwrap();
            let at = text.find("\"precision\": ").unwrap() + "\"precision\": ".len();
            let edited = format!(
                "{}0.118{}",
                &text[..at],
                &text[at..].trim_start_matches(|c: char| c == '.' || c.is_ascii_digit())
            );
            std::fs::write(p, edited).unwrap();
        }),
        // A corpus's scores cut short.
        ("gen-02.csv", "gen-02.csv is damaged", |p| cut_rows(p, 2)),
        // A marker edited by hand: its numbers are copied into generations.csv.
        ("gen-01.json", "gen-01.json is damaged", |p| {
            let text = std::fs::read_to_string(p).unwrap().replacen("\"precision\": 0", "\"precision\": 1", 1);
            std::fs::write(p, text).unwrap();
        }),
        // A held-out record edited.
        ("../../../checkpoints/r/gen-01/heldout.json", "heldout.json is damaged", |p| {
            let text = std::fs::read_to_string(p).unwrap().replacen("\"mean_loss\": ", "\"mean_loss\": 1", 1);
            std::fs::write(p, text).unwrap();
        }),
    ];
    for (file, says, damage) in damages {
        let copy = finished.copy();
        let root = copy.path();
        damage(&scores(root, file));
        let v = verify(root);
        assert_ne!(v.0, 0, "{file}: {}", v.1);
        assert!(v.1.contains(says), "{file}: {}", v.1);
        assert!(v.1.contains("run the same `lmloop generations` command"), "{file}: the repair: {}", v.1);
        // The repair verify names works: the run finds the damage, computes the file
        // again and ends with the numbers of an undamaged run.
        let r = ok(generations(root, &["-n", "3"]));
        assert!(r.2.contains(says), "{file}: the run says what it found: {}", r.2);
        assert_eq!(scored_rows(root), want, "{file}: the rows after the repair");
        for (f, bytes) in files.iter().zip(&clean_bytes) {
            assert_eq!(&std::fs::read(scores(root, f)).unwrap(), bytes, "{file}: {f} as an undamaged run wrote it");
        }
        ok(verify(root));
    }

    // A damaged noise floor is never drawn or pooled: the report refuses it.
    let copy = finished.copy();
    let text = std::fs::read_to_string(scores(copy.path(), "noise-floor.json")).unwrap();
    std::fs::write(scores(copy.path(), "noise-floor.json"), text.replacen("\"pool\": ", "\"pool\": 1", 1)).unwrap();
    assert_clear_error(&lmloop(copy.path(), &["report", "--run", "r"]), "noise-floor.json is damaged");
}

#[test]
fn rerun_from_says_what_it_drops_and_refuses_what_it_cannot() {
    let finished = Finished::new();
    let copy = finished.copy();
    let root = copy.path();
    let r = lmloop(root, &["generations", "--config", "tiny.toml", "--run", "nosuch", "--rerun-from", "1"]);
    assert_clear_error(&r, "there is no run 'nosuch'");
    assert!(!root.join("analysis/nosuch/generations.csv").exists(), "no run was started");
    assert_clear_error(&generations(root, &["-n", "2", "--rerun-from", "5"]), "has generations 0 to 2 on disk");
    let before = std::fs::read(root.join("analysis/r/generations.csv")).unwrap();
    assert_eq!(std::fs::read(root.join("analysis/r/generations.csv")).unwrap(), before, "nothing was dropped");
    // Dropping generations this command does not run to says so.
    let r = ok(generations(root, &["-n", "1", "--rerun-from", "2"]));
    assert!(
        r.2.contains("dropped generation 2; this command stops at generation 1, so none of them is computed again"),
        "{}",
        r.2
    );
    assert!(!root.join("checkpoints/r/gen-02").exists());
    // verify checks the run name as `generations` does.
    assert_clear_error(&lmloop(root, &["verify", "--run", "../analysis/r"]), "plain folder name");
}
