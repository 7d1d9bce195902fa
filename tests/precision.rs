//! `train.precision = "bf16"`: mixed-precision training reaches the held-out loss of
//! float32 training, really runs in reduced precision, and bad values are refused.
mod common;

use common::*;

fn train_with(root: &std::path::Path, data: &std::path::Path, precision: &str) -> (f64, String) {
    let cfg = std::fs::read_to_string(tiny_config())
        .unwrap()
        .replace("[train]\n", &format!("[train]\nprecision = \"{precision}\"\n"));
    let config = write(&root.join(format!("{precision}.toml")), &cfg);
    let out = root.join(format!("ckpt-{precision}"));
    let r = lmloop(
        root,
        &[
            "train",
            "--config",
            config.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(r.0, 0, "{precision} training failed: {}", r.2);
    let (code, stdout, stderr) = lmloop(
        root,
        &["eval", "--checkpoint", out.to_str().unwrap(), "--tokens", data.join("test.bin").to_str().unwrap(), "--json"],
    );
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    (v["mean_loss"].as_f64().unwrap(), std::fs::read_to_string(out.join("train_log.csv")).unwrap())
}

#[test]
fn bf16_training_matches_fp32_held_out_loss() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("corpus");
    prepared(&data, 300);
    let (fp32, log32) = train_with(dir.path(), &data, "fp32");
    let (bf16, log16) = train_with(dir.path(), &data, "bf16");
    let rel = (bf16 - fp32).abs() / fp32;
    assert!(rel < 0.02, "held-out loss fp32 {fp32:.4}, bf16 {bf16:.4}: {:.2}% apart", 100.0 * rel);
    // Reduced precision really was used: the training losses are not bit-identical.
    let losses = |log: &str| log.lines().skip(1).map(|l| l.split(',').nth(2).unwrap().to_string()).collect::<Vec<_>>();
    assert_ne!(losses(&log32), losses(&log16), "bf16 training produced exactly the fp32 losses");
}

#[test]
fn an_unknown_precision_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("corpus");
    prepared(&data, 300);
    let cfg = std::fs::read_to_string(tiny_config()).unwrap().replace("[train]\n", "[train]\nprecision = \"fp8\"\n");
    let config = write(&dir.path().join("bad.toml"), &cfg);
    let out = dir.path().join("ckpt");
    let r = lmloop(
        dir.path(),
        &[
            "train",
            "--config",
            config.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_clear_error(&r, "fp8");
    assert!(!out.join("DONE").exists());
}
