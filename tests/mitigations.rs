//! Mitigations: truncated cross-entropy cuts the targets the model already predicts
//! confidently, and at γ = 1 is ordinary cross-entropy bit for bit; curation by a
//! verifier keeps some sampled documents, keeps D, and at ρ = 1 changes nothing.
mod common;

use lmloop::stream::TokenStream;
use lmloop::tokens::TokenFile;
use std::sync::Arc;

use common::{lmloop, tiny_project};
use lmloop::train::{next_token_loss, truncated_next_token_loss};
use tch::{Kind, Tensor};

#[test]
fn gamma_one_is_ordinary_cross_entropy_and_a_small_gamma_cuts_the_confident_targets() {
    let logits = Tensor::randn([2, 5, 7], (Kind::Float, tch::Device::Cpu)) * 3.0;
    let targets = Tensor::from_slice(&[1i64, 2, 3, -100, 0, 6, 5, 4, 3, -100]).view([2, 5]);
    let plain = next_token_loss(&logits, &targets);
    let (one, share) = truncated_next_token_loss(&logits, &targets, Some(1.0));
    assert_eq!(f64::try_from(&one).unwrap().to_bits(), f64::try_from(&plain).unwrap().to_bits());
    assert!(share.is_none());

    // Row 0 predicts its targets with probability about 0.99; row 1 with about 1/7.
    let mut l = vec![0f32; 2 * 5 * 7];
    let t = [1usize, 2, 3, 0, 4, 6, 5, 4, 3, 2];
    for (i, &target) in t.iter().enumerate() {
        if i < 5 {
            l[i * 7 + target] = 10.0;
        }
    }
    let logits = Tensor::from_slice(&l).view([2, 5, 7]);
    let targets = Tensor::from_slice(&[1i64, 2, -100, 0, 4, 6, 5, 4, 3, 2]).view([2, 5]);
    let (loss, share) = truncated_next_token_loss(&logits, &targets, Some(0.5));
    // 9 real targets: the 4 confident ones (row 0) are cut, the 5 uniform ones keep ln 7.
    let share = f64::try_from(share.unwrap()).unwrap();
    assert!((share - 4.0 / 9.0).abs() < 1e-6, "{share}");
    let want = 5.0 * 7f64.ln() / 9.0;
    assert!((f64::try_from(&loss).unwrap() - want).abs() < 1e-5, "{loss} against {want}");
    // A γ above every probability cuts nothing.
    let (_, none) = truncated_next_token_loss(&logits, &targets, Some(0.9999999));
    assert_eq!(f64::try_from(none.unwrap()).unwrap(), 0.0);
}

fn with_gamma(root: &std::path::Path, name: &str, gamma: &str) {
    let cfg = std::fs::read_to_string(root.join("tiny.toml")).unwrap();
    let cfg = cfg.replace("[train]\n", &format!("[train]\ntruncated_ce_gamma = {gamma}\n"));
    assert!(cfg.contains("truncated_ce_gamma"), "the tiny config has a [train] table");
    std::fs::write(root.join(name), cfg).unwrap();
}

#[test]
fn truncated_training_logs_what_it_cut_and_gamma_one_trains_the_same_model() {
    let dir = tiny_project();
    let root = dir.path();
    with_gamma(root, "one.toml", "1.0");
    with_gamma(root, "cut.toml", "0.3");
    let train = |cfg: &str, out: &str| {
        let r = lmloop(root, &["train", "--config", cfg, "--data", "corpora/real/toy", "--out", out]);
        assert_eq!(r.0, 0, "{}", r.2);
        std::fs::read(root.join(out).join("model.safetensors")).unwrap()
    };
    assert_eq!(train("tiny.toml", "plain"), train("one.toml", "one"), "γ = 1 trains the ordinary model");
    let cut = train("cut.toml", "cut");
    let log = std::fs::read_to_string(root.join("cut/train_log.csv")).unwrap();
    assert!(log.starts_with("step,learning_rate,train_loss,val_loss,tokens_per_second,truncated_share\n"), "{log}");
    let shares: Vec<f64> = log.lines().skip(1).map(|l| l.split(',').nth(5).unwrap().parse().unwrap()).collect();
    assert!(shares.iter().all(|s| (0.0..=1.0).contains(s)));
    assert!(shares.last().unwrap() > &0.0, "a trained tiny model predicts some targets above 0.3");
    assert_ne!(cut, train("tiny.toml", "plain2"));
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("cut/state.json")).unwrap()).unwrap();
    let mean = shares.iter().sum::<f64>() / shares.len() as f64;
    assert!((state["truncated_ce_share"].as_f64().unwrap() - mean).abs() < 1e-9);

    // Every generation's row carries the share (the loop's R is small: its models are
    // less sure of themselves, so γ is lower); out of range is refused in one sentence.
    with_gamma(root, "loop.toml", "0.02");
    let r = lmloop(root, &["generations", "--config", "loop.toml", "-n", "1", "--run", "g"]);
    assert_eq!(r.0, 0, "{}", r.2);
    let rows = lmloop::records::read_rows(&root.join("analysis/g/generations.csv")).unwrap();
    // M_0 is trained plainly (train.truncated_ce_from = 1), every later generation with γ.
    assert_eq!(rows[0].train_truncated_ce_share, 0.0, "{rows:?}");
    assert!(rows[1..].iter().all(|r| r.train_truncated_ce_share > 0.0 && r.train_truncated_ce_share < 1.0), "{rows:?}");
    for bad in ["0.0", "1.5", "-0.2"] {
        with_gamma(root, "bad.toml", bad);
        let r = lmloop(root, &["train", "--config", "bad.toml", "--data", "corpora/real/toy", "--out", "bad"]);
        assert_ne!(r.0, 0);
        assert!(r.2.contains("train.truncated_ce_gamma must be in (0, 1]"), "{}", r.2);
        assert_eq!(r.2.trim().lines().count(), 1, "one sentence: {}", r.2);
    }
}

// ---------------------------------------------------------------------------------
// Curation of the sampled corpora by a verifier.

use lmloop::config::Rule;
use lmloop::curation::{judge, quantile, Decision};
use lmloop::synthetic::SyntheticManifest;
use std::path::Path;

/// `tiny.toml` with a `[curation]` table (`table` holds its lines) written as `name`.
fn with_curation(root: &Path, name: &str, table: &str) {
    let cfg = std::fs::read_to_string(root.join("tiny.toml")).unwrap();
    std::fs::write(root.join(name), format!("{cfg}\n[curation]\n{table}\n")).unwrap();
}

fn run(root: &Path, cfg: &str, name: &str, n: &str) -> (i32, String, String) {
    lmloop(root, &["generations", "--config", cfg, "-n", n, "--run", name])
}

fn corpus_manifest(root: &Path, run: &str, k: u32) -> SyntheticManifest {
    let p = root.join(format!("corpora/synthetic/{run}/gen-{k:02}.json"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn bytes(root: &Path, rel: String) -> Vec<u8> {
    std::fs::read(root.join(&rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The listing of a curated corpus: (tokens, verifier perplexity, decision) per sampled document.
fn listing(root: &Path, run: &str, k: u32) -> Vec<(usize, f64, String)> {
    let p = root.join(format!("corpora/synthetic/{run}/gen-{k:02}.curation.csv"));
    let mut r = csv::Reader::from_path(p).unwrap();
    assert_eq!(
        r.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "round",
            "document",
            "tokens",
            "targets",
            "verifier_nll",
            "verifier_perplexity",
            "self_perplexity",
            "decision"
        ]
    );
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            (rec[2].parse().unwrap(), rec[5].parse().unwrap(), rec[7].to_string())
        })
        .collect()
}

#[test]
fn curation_that_keeps_everything_changes_nothing_and_a_curated_corpus_shows_what_it_dropped() {
    let dir = tiny_project();
    let root = dir.path();
    assert_eq!(run(root, "tiny.toml", "plain", "2").0, 0);
    for verifier in ["self", "reference"] {
        let name = format!("all-{verifier}");
        with_curation(
            root,
            "all.toml",
            &format!("verifier = \"{verifier}\"\nkeep_fraction = 1.0\nmin_document_tokens = 0"),
        );
        let r = run(root, "all.toml", &name, "2");
        assert_eq!(r.0, 0, "{}", r.2);
        for k in 1..=3 {
            let corpus = |run: &str| bytes(root, format!("corpora/synthetic/{run}/gen-{k:02}.bin"));
            assert!(corpus("plain") == corpus(&name), "ρ = 1 by the {verifier}: S_{k} is the uncurated corpus");
            let c = corpus_manifest(root, &name, k).curation.expect("a curation record");
            assert_eq!(
                (c.kept_share, c.sampled_documents, c.kept_documents),
                (1.0, c.kept_documents, c.kept_documents)
            );
        }
        for k in 1..=2 {
            let weights = |run: &str| bytes(root, format!("checkpoints/{run}/gen-{k:02}/model.safetensors"));
            assert!(weights("plain") == weights(&name), "ρ = 1: generation {k} trains the same model");
        }
    }

    // Half the sampled tokens, by the reference: D is still reached, twice D sampled,
    // the kept documents are the lowest perplexities, the dropped ones are on disk.
    with_curation(
        root,
        "half.toml",
        "verifier = \"reference\"\nkeep_fraction = 0.5\nranking = \"overall\"\nmin_document_tokens = 0",
    );
    let r = run(root, "half.toml", "half", "1");
    assert_eq!(r.0, 0, "{}", r.2);
    assert!(r.2.contains("curation by the reference kept"), "{}", r.2);
    let plain = corpus_manifest(root, "plain", 1);
    for k in 1..=2 {
        let m = corpus_manifest(root, "half", k);
        let c = m.curation.clone().unwrap();
        assert!(m.stats.tokens >= plain.requested_tokens, "the kept documents hold D");
        assert!(c.oversampling >= 2.0 && c.oversampling < 2.5, "{c:?}");
        assert!((c.kept_share - 0.5).abs() < 0.2, "{c:?}");
        let rows = listing(root, "half", k);
        assert_eq!(rows.len(), c.sampled_documents);
        let kept: Vec<f64> = rows.iter().filter(|r| r.2 == "kept").map(|r| r.1).collect();
        let dropped: Vec<f64> = rows.iter().filter(|r| r.2 != "kept").map(|r| r.1).collect();
        assert_eq!(kept.len(), m.stats.documents);
        assert!(!dropped.is_empty() && rows.iter().all(|r| r.2 == "kept" || r.2 == "ranked-out"));
        let worst_kept = kept.iter().cloned().fold(f64::MIN, f64::max);
        assert!(dropped.iter().all(|&p| p >= worst_kept), "kept are the lowest perplexities");
        let text =
            std::fs::read_to_string(root.join(format!("corpora/synthetic/half/gen-{k:02}.dropped.txt"))).unwrap();
        assert!(!text.is_empty() && text.matches("<|endoftext|>").count() <= dropped.len());
    }
    let rows = lmloop::records::read_rows(&root.join("analysis/half/generations.csv")).unwrap();
    assert!(rows.iter().all(|r| r.curation_oversampling >= 2.0 && r.curation_kept_share < 1.0), "{rows:?}");
    let plain_rows = lmloop::records::read_rows(&root.join("analysis/plain/generations.csv")).unwrap();
    // Without curation the oversampling is measured as with it: the corpus's tokens over D.
    assert!(plain_rows
        .iter()
        .all(|r| r.curation_oversampling >= 1.0 && r.curation_oversampling < 1.5 && r.curation_kept_share == 1.0));
    assert!(plain_rows
        .iter()
        .all(|r| r.curation_kept_median_tokens.is_nan() && r.curation_dropped_median_tokens.is_nan()));
    // The score step read the verifier's pass: S_1's reference scores are the listing's.
    let scores = std::fs::read_to_string(root.join("analysis/half/scores/gen-01.csv")).unwrap();
    assert_eq!(scores.lines().count() - 1, corpus_manifest(root, "half", 1).stats.documents);

    // Every file curation wrote is recorded: verify passes, then names an altered one.
    assert_eq!(lmloop(root, &["verify", "--run", "half"]).0, 0);
    let dropped = root.join("corpora/synthetic/half/gen-01.dropped.txt");
    std::fs::write(&dropped, "altered").unwrap();
    let v = lmloop(root, &["verify", "--run", "half"]);
    assert_ne!(v.0, 0);
    assert!(format!("{}{}", v.1, v.2).contains("gen-01.dropped.txt"), "{} {}", v.1, v.2);

    // The quantile rule, by the model itself: every kept document lies within the bounds.
    with_curation(
        root,
        "band.toml",
        "verifier = \"self\"\nquantile_low = 0.05\nquantile_high = 0.95\nmin_document_tokens = 0",
    );
    let band = std::fs::read_to_string(root.join("band.toml")).unwrap().replace("epochs = 8", "epochs = 60");
    std::fs::write(root.join("band.toml"), band).unwrap();
    let r = run(root, "band.toml", "band", "1");
    assert_eq!(r.0, 0, "{}", r.2);
    let c = corpus_manifest(root, "band", 1).curation.unwrap();
    let (lo, hi) = c.perplexity_bounds.unwrap();
    assert!(lo < hi && c.real_documents > 0, "{c:?}");
    for (_, p, d) in listing(root, "band", 1) {
        match d.as_str() {
            "kept" | "not-needed" => assert!(p >= lo - 1e-6 && p <= hi + 1e-6, "{p} in [{lo}, {hi}]"),
            "below" => assert!(p < lo + 1e-6),
            "above" => assert!(p > hi - 1e-6),
            other => panic!("{other}"),
        }
    }
}

#[test]
fn a_reference_trained_on_real_text_keeps_the_real_documents_of_a_mixed_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, data) = common::train_tiny(dir.path());
    let device = common::device();
    let reference = lmloop::checkpoint::Checkpoint::load(&ckpt, device).unwrap();
    let vocab = &reference.vocab;
    let eot = vocab.eot();
    let split = |name: &str| Arc::new(TokenFile::open(&data.join(name)).unwrap());
    // Real held-out documents, then as many documents of uniformly random tokens.
    let test = split("test.bin");
    let real: Vec<Vec<u32>> = lmloop::tokens::document_ranges(test.iter(), eot)
        .into_iter()
        .map(|r| (r.start..r.end).map(|i| test.get(i)).collect())
        .collect();
    let mut next = common::lcg(7);
    let noise: Vec<Vec<u32>> = real
        .iter()
        .map(|d| {
            let mut n: Vec<u32> = (1..d.len()).map(|_| 1 + next(vocab.vocab_size() as u64 - 1) as u32).collect();
            n.push(eot);
            n
        })
        .collect();
    let docs: Vec<&Vec<u32>> = real.iter().chain(&noise).collect();
    let all: Vec<u32> = docs.iter().flat_map(|d| d.iter().copied()).collect();
    let path = dir.path().join("mixed.bin");
    lmloop::tokens::write_tokens(&path, &all, vocab.vocab_size()).unwrap();
    let stream = TokenStream::from_file(Arc::new(TokenFile::open(&path).unwrap()), vocab.delimiters());
    let (scores, _) = lmloop::curation::perplexities(&reference.model, &stream, device, false).unwrap();
    let ppl: Vec<f64> = scores.iter().map(|s| s.mean().exp()).collect();
    let tokens: Vec<usize> = docs.iter().map(|d| d.len()).collect();

    // Bounds from the real validation documents' perplexities (their whole range, widened
    // twofold: the few toy test documents need not fall inside the validation range).
    let val = TokenStream::from_file(split("val.bin"), vocab.delimiters());
    let (val_scores, _) = lmloop::curation::perplexities(&reference.model, &val, device, false).unwrap();
    let val_ppl: Vec<f64> = val_scores.iter().map(|s| s.mean().exp()).collect();
    let bounds = (quantile(&val_ppl, 0.0) / 2.0, quantile(&val_ppl, 1.0) * 2.0);
    let band = judge(Rule::Quantiles { low: 0.0, high: 1.0 }, bounds, 0, &tokens, &ppl, usize::MAX);
    let n = real.len();
    assert!(band[n..].iter().all(|d| *d == Decision::Above), "noise is above the real band: {band:?} {ppl:?}");
    assert!(band[..n].iter().all(|d| *d == Decision::Kept), "real documents are in it: {band:?} {ppl:?}");
    let real_share = tokens[..n].iter().sum::<usize>() as f64 / tokens.iter().sum::<usize>() as f64;
    let best = judge(Rule::Best { fraction: real_share, strata: 1 }, (0.0, 0.0), 0, &tokens, &ppl, 0);
    assert!(best[..n].iter().all(|d| *d == Decision::Kept) && best[n..].iter().all(|d| *d == Decision::Ranked));
}

/// The default fraction rule ranks within five length strata through the loop: in
/// each stratum of the sampled documents (by length), the kept ones hold ρ of its
/// tokens (to within one document), whatever the verifier prefers, so the kept corpus
/// keeps the sampled length distribution; generations.csv carries the kept and dropped
/// documents' median lengths.
#[test]
fn curation_by_the_default_rule_keeps_the_share_of_every_length_stratum() {
    let dir = tiny_project();
    let root = dir.path();
    with_curation(root, "strata.toml", "verifier = \"reference\"\nkeep_fraction = 0.5");
    let r = run(root, "strata.toml", "strata", "1");
    assert_eq!(r.0, 0, "{}", r.2);
    assert!(r.2.contains("kept documents median"), "{}", r.2);
    let rows = lmloop::records::read_rows(&root.join("analysis/strata/generations.csv")).unwrap();
    for k in 1..=2u32 {
        let c = corpus_manifest(root, "strata", k).curation.unwrap();
        assert_eq!(c.length_strata, 5, "{c:?}");
        let listing = listing(root, "strata", k);
        let mut ranked: Vec<usize> = (0..listing.len()).filter(|&i| listing[i].2 != "too-short").collect();
        assert!(ranked.len() >= 10, "too few documents to stratify: {}", ranked.len());
        assert!(listing.iter().all(|r| r.2 != "too-short" || r.0 < c.min_document_tokens));
        ranked.sort_by_key(|&i| (listing[i].0, i));
        for g in 0..5 {
            let stratum = &ranked[g * ranked.len() / 5..(g + 1) * ranked.len() / 5];
            let total: usize = stratum.iter().map(|&i| listing[i].0).sum();
            let kept: Vec<usize> = stratum.iter().filter(|&&i| listing[i].2 == "kept").map(|&i| listing[i].0).collect();
            let held: usize = kept.iter().sum();
            let last = kept.iter().copied().max().unwrap_or(0);
            assert!(
                held as f64 >= 0.5 * total as f64 && ((held - last) as f64) < 0.5 * total as f64,
                "generation {k}, stratum {g}: kept {held} of {total} tokens"
            );
        }
        let row = rows.iter().find(|r| r.generation == k - 1).unwrap();
        assert_eq!(row.curation_kept_median_tokens, c.kept_lengths.unwrap().median);
        assert_eq!(row.curation_dropped_median_tokens, c.dropped_lengths.unwrap().median);
    }
}

#[test]
fn bad_curation_settings_are_refused_in_one_sentence() {
    let dir = tiny_project();
    let root = dir.path();
    for (table, needle) in [
        ("verifier = \"self\"\nquantile_low = 0.9\nquantile_high = 0.1", "must be below curation.quantile_high"),
        ("verifier = \"self\"\nkeep_fraction = 0.0", "curation.keep_fraction must be in (0, 1]"),
        ("verifier = \"reference\"\nkeep_fraction = 1.5", "curation.keep_fraction must be in (0, 1]"),
        ("verifier = \"self\"", "needs a rule"),
        ("keep_fraction = 0.5", "no curation.verifier"),
        ("verifier = \"judge\"\nkeep_fraction = 0.5", "unknown variant `judge`"),
        (
            "verifier = \"self\"\nquantile_low = 0.1\nquantile_high = 0.9\nranking = \"overall\"",
            "curation.ranking orders the fraction rule",
        ),
    ] {
        with_curation(root, "bad.toml", table);
        common::assert_clear_error(&run(root, "bad.toml", "bad", "1"), needle);
    }
    with_curation(root, "bad.toml", "verifier = \"reference\"\nkeep_fraction = 0.5");
    let r = lmloop(root, &["generations", "--config", "bad.toml", "-n", "1", "--run", "bad", "--policy", "real"]);
    common::assert_clear_error(&r, "nothing to curate");
    assert!(!root.join("checkpoints/bad").exists(), "nothing ran");
}

#[test]
fn a_killed_curated_run_resumes_to_the_same_kept_documents() {
    // The quantile rule samples in rounds; 60 epochs make the tiny model write text
    // within the real band often enough.
    let table = "verifier = \"self\"\nquantile_low = 0.1\nquantile_high = 0.9";
    let curated = |root: &Path| {
        with_curation(root, "cur.toml", table);
        let cfg = std::fs::read_to_string(root.join("cur.toml")).unwrap().replace("epochs = 8", "epochs = 60");
        std::fs::write(root.join("cur.toml"), cfg).unwrap();
    };
    let straight = tiny_project();
    curated(straight.path());
    assert_eq!(run(straight.path(), "cur.toml", "c", "2").0, 0);

    let dir = tiny_project();
    let root = dir.path();
    curated(root);
    // Killed while generation 1 trains on the curated S_1.
    let partial_log = root.join("checkpoints/c/.gen-01.train_log.csv.partial");
    let args = ["generations", "--config", "cur.toml", "-n", "2", "--run", "c"];
    common::kill_once_exists(root, &args, &partial_log, std::time::Duration::ZERO, "generation 1");
    assert!(!root.join("checkpoints/c/gen-01/DONE").exists());
    let r = run(root, "cur.toml", "c", "2");
    assert_eq!(r.0, 0, "{}", r.2);
    for k in 1..=3 {
        for ext in ["bin", "curation.csv", "dropped.txt"] {
            let rel = format!("corpora/synthetic/c/gen-{k:02}.{ext}");
            assert!(bytes(root, rel.clone()) == bytes(straight.path(), rel.clone()), "{rel} differs after the kill");
        }
    }
}
