//! The foundation as a user meets it: prepare a corpus, train, evaluate, reload.
mod common;

use common::*;
use lmloop::checkpoint::Checkpoint;
use lmloop::config::{Arch, Config, ModelConfig};
use lmloop::model::Model;
use lmloop::prepare::{split, split_documents, PrepareOptions};
use lmloop::stream::TokenStream;
use lmloop::tokenizer::Vocab;
use lmloop::tokens::TokenFile;
use std::collections::HashSet;
use std::sync::Arc;
use tch::{nn, Tensor};

#[test]
fn causal_mask_holds_for_both_architectures() {
    for arch in [Arch::Gpt2, Arch::Llama] {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(device());
        let cfg = ModelConfig { arch, ..ModelConfig::tiny(50) };
        let model = Model::new(&vs.root(), &cfg);
        let a = Tensor::from_slice(&[1i64, 2, 3, 4, 5, 6, 7, 8]).view([1, 8]).to_device(device());
        let b = a.copy();
        let _ = b.get(0).get(5).fill_(42);
        let (la, lb) = tch::no_grad(|| (model.forward(&a, false), model.forward(&b, false)));
        let diff_early = (la.narrow(1, 0, 5) - lb.narrow(1, 0, 5)).abs().max().double_value(&[]);
        let diff_late = (la.narrow(1, 5, 3) - lb.narrow(1, 5, 3)).abs().max().double_value(&[]);
        assert!(diff_early < 1e-6, "{arch:?}: earlier logits changed by {diff_early}");
        assert!(diff_late > 1e-4, "{arch:?}: the changed token must matter for its own and later positions");
    }
}

#[test]
fn tokenizer_round_trips_text() {
    let text = toy_corpus(40, 5);
    let docs = split_documents(&text);
    let vocab = Vocab::train(&docs, 300).unwrap();
    assert_eq!(vocab.vocab_size(), 300);
    for sample in [docs[0].as_str(), "Unseen wörds, ünïcode ✓ and\ttabs\n", "  leading spaces"] {
        let ids = vocab.encode(sample).unwrap();
        assert_eq!(vocab.decode(&ids).unwrap(), sample);
    }
    assert_eq!(vocab.token_text(vocab.eot()), "<|endoftext|>");
}

#[test]
fn splits_are_disjoint_and_cover_all_documents() {
    let docs: Vec<String> = (0..200).map(|i| format!("document number {i}\n")).collect();
    let (train, val, test) = split(docs.clone(), &PrepareOptions::default()).unwrap();
    let sets: Vec<HashSet<&String>> = [&train, &val, &test].iter().map(|s| s.iter().collect()).collect();
    assert!(sets[0].is_disjoint(&sets[1]) && sets[0].is_disjoint(&sets[2]) && sets[1].is_disjoint(&sets[2]));
    assert_eq!(train.len() + val.len() + test.len(), docs.len());
    assert!(val.len() >= 5 && test.len() >= 5, "about 5% each: {} {}", val.len(), test.len());
    // Same seed, same split.
    let again = split(docs, &PrepareOptions::default()).unwrap();
    assert_eq!(again.2, test);
}

#[test]
fn documents_split_on_marker_or_blank_lines() {
    assert_eq!(split_documents("a\nb\n\n\nc\n"), vec!["a\nb", "c"]);
    assert_eq!(split_documents("a\n\nb\n<|endoftext|>\nc\n"), vec!["a\n\nb", "c"]);
}

#[test]
fn prepared_token_files_hold_whole_documents() {
    let dir = tempfile::tempdir().unwrap();
    let meta = prepared(dir.path(), 300);
    let train = TokenFile::open(&dir.path().join("train.bin")).unwrap();
    assert_eq!(train.len(), meta.train.tokens);
    let docs = lmloop::tokens::document_ranges(train.iter(), meta.eot_id);
    assert_eq!(docs.len(), meta.train.documents);
    assert_eq!(train.get(train.len() - 1), meta.eot_id, "every document ends with <|endoftext|>");
}

#[test]
fn loss_falls_well_below_unigram_entropy_and_checkpoint_reloads_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt_dir, data) = train_tiny(dir.path());

    // Unigram entropy of the training tokens: what a model without context would reach.
    let train = TokenFile::open(&data.join("train.bin")).unwrap();
    let counts = train.counts(300).unwrap();
    let n: u64 = counts.iter().sum();
    let unigram_entropy: f64 =
        counts.iter().filter(|&&c| c > 0).map(|&c| c as f64 / n as f64).map(|p| -p * p.ln()).sum();

    let (code, stdout, stderr) = lmloop(
        dir.path(),
        &[
            "eval",
            "--checkpoint",
            ckpt_dir.to_str().unwrap(),
            "--tokens",
            data.join("test.bin").to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let loss = v["mean_loss"].as_f64().unwrap();
    assert!((v["perplexity"].as_f64().unwrap() - loss.exp()).abs() < 1e-6);
    assert!(
        loss < 0.6 * unigram_entropy,
        "held-out loss {loss:.3} should be well below the unigram entropy {unigram_entropy:.3}"
    );

    // Reload twice: identical logits, and identical to the evaluation's figure.
    let a = Checkpoint::load(&ckpt_dir, device()).unwrap();
    let b = Checkpoint::load(&ckpt_dir, device()).unwrap();
    let x = Tensor::from_slice(&[3i64, 10, 200, 7, 0, 5]).view([1, 6]).to_device(device());
    let (la, lb) = tch::no_grad(|| (a.model.forward(&x, false), b.model.forward(&x, false)));
    assert!(la.equal(&lb));
    let test = Arc::new(TokenFile::open(&data.join("test.bin")).unwrap());
    let again = lmloop::eval::evaluate(&a.model, &test, a.vocab.delimiters(), device()).unwrap();
    assert!((again.mean_loss - loss).abs() < 1e-9);

    // The per-step log is there and the loss fell.
    let log = std::fs::read_to_string(ckpt_dir.join("train_log.csv")).unwrap();
    let losses: Vec<f64> = log.lines().skip(1).map(|l| l.split(',').nth(2).unwrap().parse().unwrap()).collect();
    assert!(losses.last().unwrap() < &(losses[0] * 0.5), "first {} last {}", losses[0], losses.last().unwrap());
}

#[test]
fn same_seed_gives_same_losses() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("corpus");
    prepared(&data, 300);
    let mut cfg = Config::load(&tiny_config()).unwrap();
    cfg.train.budget = lmloop::config::Budget::Tokens;
    cfg.train.epochs = None;
    cfg.train.max_tokens = Some(8000);
    cfg.model.vocab_size = 300;
    tch::set_num_threads(1);
    let vocab = Vocab::load(&data.join("tokenizer.json")).unwrap();
    let stream =
        TokenStream::from_file(Arc::new(TokenFile::open(&data.join("train.bin")).unwrap()), vocab.delimiters());
    let run = |out: &str| {
        lmloop::train::train(lmloop::train::TrainRequest {
            model: cfg.model.clone(),
            train: cfg.train.clone(),
            data: &stream,
            val: None,
            vocab: &vocab,
            device: device(),
            init_from: None,
            out: dir.path().join(out),
            progress: false,
        })
        .unwrap()
        .state
        .final_train_loss
    };
    assert_eq!(run("a"), run("b"));
}

#[test]
fn bad_inputs_get_one_clear_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("out");
    let out = out.to_str().unwrap();
    assert_clear_error(&lmloop(d, &["prepare", "--input", "missing.txt", "--out", out]), "missing.txt");
    write(&d.join("empty.txt"), "");
    assert_clear_error(&lmloop(d, &["prepare", "--input", "empty.txt", "--out", out]), "empty");
    std::fs::write(d.join("latin1.txt"), b"caf\xe9 au lait\n\nmore text\n").unwrap();
    assert_clear_error(&lmloop(d, &["prepare", "--input", "latin1.txt", "--out", out]), "UTF-8");
    write(&d.join("small.txt"), &toy_corpus(30, 3));
    assert_clear_error(
        &lmloop(d, &["prepare", "--input", "small.txt", "--out", out, "--vocab-size", "5000"]),
        "larger than the data supports",
    );
    assert!(!d.join("out").join("meta.json").exists(), "a failed prepare must not look complete");

    write(&d.join("bad.toml"), "[train]\nlearning_rat = 0.1\n");
    prepared(&d.join("corpus"), 300);
    assert_clear_error(
        &lmloop(d, &["train", "--config", "bad.toml", "--data", "corpus", "--out", "ck"]),
        "learning_rat",
    );
    assert_clear_error(&lmloop(d, &["eval", "--checkpoint", "nowhere", "--tokens", "corpus/test.bin"]), "nowhere");
}

#[test]
fn checkpoint_of_another_shape_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, data) = train_tiny(dir.path());
    // Pretend the checkpoint was a wider model: its config no longer matches its weights.
    let cfg_path = ckpt.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["n_embd"] = 64.into();
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let r = lmloop(
        dir.path(),
        &["eval", "--checkpoint", ckpt.to_str().unwrap(), "--tokens", data.join("test.bin").to_str().unwrap()],
    );
    assert_clear_error(&r, "different model shape");
}

#[test]
fn every_shipped_config_loads() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            Config::load(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            seen += 1;
        }
    }
    assert!(seen >= 3, "default, tiny and at least one preset");
}

#[test]
fn a_diverging_run_stops_with_a_clear_error_and_no_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    prepared(&d.join("corpus"), 300);
    let cfg = std::fs::read_to_string(tiny_config())
        .unwrap()
        .replace("learning_rate = 3e-3", "learning_rate = 1e12")
        .replace("min_learning_rate = 3e-4", "min_learning_rate = 1e11")
        .replace("warmup_steps = 10", "warmup_steps = 0");
    write(&d.join("hot.toml"), &cfg);
    let r = lmloop(d, &["train", "--config", "hot.toml", "--data", "corpus", "--out", "ck"]);
    assert_clear_error(&r, "diverged");
    assert!(!d.join("ck").exists(), "no checkpoint is left looking complete");
}

/// `--version` names the libtorch the process loaded; with the libtorch lmloop was
/// built against it says nothing more.
#[test]
fn version_names_the_loaded_libtorch() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = lmloop(dir.path(), &["--version"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("libtorch 2.") && stdout.contains("CUDA"), "{stdout}");
    assert!(!stdout.contains("built against"), "the test binary runs on the libtorch it was built with: {stdout}");
}
