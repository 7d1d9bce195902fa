//! Mitigations as training options: truncated cross-entropy cuts the targets the model
//! already predicts confidently, and at γ = 1 is ordinary cross-entropy bit for bit.
mod common;

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
    assert!(rows.iter().all(|r| r.train_truncated_ce_share > 0.0 && r.train_truncated_ce_share < 1.0), "{rows:?}");
    for bad in ["0.0", "1.5", "-0.2"] {
        with_gamma(root, "bad.toml", bad);
        let r = lmloop(root, &["train", "--config", "bad.toml", "--data", "corpora/real/toy", "--out", "bad"]);
        assert_ne!(r.0, 0);
        assert!(r.2.contains("train.truncated_ce_gamma must be in (0, 1]"), "{}", r.2);
        assert_eq!(r.2.trim().lines().count(), 1, "one sentence: {}", r.2);
    }
}
