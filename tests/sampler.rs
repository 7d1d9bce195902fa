//! The sampler samples exactly what it claims, fast paths agree with slow ones, and
//! bad requests are refused cleanly.
mod common;

use common::*;
use lmloop::config::{Arch, ModelConfig};
use lmloop::model::Model;
use lmloop::sample::{Decoder, Sampling};
use rand::SeedableRng;
use tch::{nn, Device, Kind, Tensor};

/// Cached logits must equal a full recomputation over exactly the context the decoder
/// claims to use, across slot refills (documents ending) and sliding-window re-encodes.
#[test]
fn cached_decoding_matches_full_recomputation() {
    for arch in [Arch::Gpt2, Arch::Llama] {
        tch::manual_seed(7);
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = ModelConfig { arch, block_size: 12, ..ModelConfig::tiny(40) };
        let model = Model::new(&vs.root(), &cfg);
        let eot = 0u32;
        let batch = 3;
        let mut decoder = Decoder::new(&model, batch, eot, 30, Device::Cpu);
        let mut finished = 0;
        tch::no_grad(|| {
            for step in 0..80usize {
                let logits = decoder.logits(); // (B, V)
                for b in 0..batch {
                    let ctx = decoder.context(b);
                    let x = Tensor::from_slice(&ctx).view([1, ctx.len() as i64]);
                    let full = model.forward(&x, false).select(1, ctx.len() as i64 - 1).squeeze();
                    let diff = (logits.get(b as i64) - full).abs().max().double_value(&[]);
                    assert!(diff < 1e-4, "{arch:?} step {step} row {b}: cached and full logits differ by {diff}");
                }
                // Forced tokens: row 0 ends a document every 7 steps (refill), the
                // others run long enough to wrap the 12-token cache several times.
                let chosen: Vec<i64> = (0..batch)
                    .map(|b| if b == 0 && step % 7 == 6 { eot as i64 } else { 1 + ((step * 5 + b * 3) % 39) as i64 })
                    .collect();
                finished += decoder.advance(&chosen).len();
            }
        });
        assert!(finished >= 10, "refills were exercised ({finished} documents)");
        assert!(decoder.reencodes >= 4, "re-encodes were exercised ({})", decoder.reencodes);
    }
}

/// The distribution a correct implementation samples from, computed independently
/// in f64: temperature, then top-k, then top-p, renormalised.
fn intended(logits: &[f64], t: f64, top_k: Option<usize>, top_p: Option<f64>) -> Vec<f64> {
    let z: Vec<f64> = logits.iter().map(|l| l / t).collect();
    let mut order: Vec<usize> = (0..z.len()).collect();
    order.sort_by(|&a, &b| z[b].partial_cmp(&z[a]).unwrap());
    let mut keep = vec![true; z.len()];
    if let Some(k) = top_k {
        for &i in &order[k..] {
            keep[i] = false;
        }
    }
    let softmax = |keep: &[bool]| {
        let m = z.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = z.iter().zip(keep).map(|(v, &k)| if k { (v - m).exp() } else { 0.0 }).collect();
        let s: f64 = e.iter().sum();
        e.into_iter().map(|x| x / s).collect::<Vec<f64>>()
    };
    if let Some(p) = top_p {
        let probs = softmax(&keep);
        let mut mass = 0.0;
        for &i in &order {
            if !keep[i] {
                continue;
            }
            if mass >= p {
                keep[i] = false;
            }
            mass += probs[i];
        }
    }
    softmax(&keep)
}

fn chi_square(counts: &[i64], probs: &[f64], n: i64) -> f64 {
    counts
        .iter()
        .zip(probs)
        .map(|(&c, &p)| {
            let e = p * n as f64;
            if e == 0.0 {
                if c > 0 {
                    f64::INFINITY
                } else {
                    0.0
                }
            } else {
                (c as f64 - e).powi(2) / e
            }
        })
        .sum()
}

#[test]
fn empirical_frequencies_match_the_intended_distribution() {
    let logits = [2.0, 1.0, 0.5, 0.0, -1.0];
    let n = 200_000i64;
    let row = Tensor::from_slice(&logits).to_kind(Kind::Float);
    let batch = row.unsqueeze(0).expand([n, 5], false).contiguous();
    let cases: [(f64, Option<usize>, Option<f64>); 7] = [
        (0.5, None, None),
        (1.0, None, None),
        (2.0, None, None),
        (1.0, Some(2), None),
        (1.0, None, Some(0.7)),
        (2.0, Some(4), Some(0.8)),
        (0.5, None, Some(0.95)),
    ];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    for (t, k, p) in cases {
        let sampling = Sampling::new(t, k.map(|k| k as i64), p).unwrap();
        let mut counts = vec![0i64; 5];
        for token in sampling.choose(&batch, &mut rng).unwrap() {
            counts[token as usize] += 1;
        }
        let want = intended(&logits, t, k, p);
        // 4 degrees of freedom: P(χ² > 18.47) = 0.001.
        let chi = chi_square(&counts, &want, n);
        assert!(chi < 18.47, "T={t} k={k:?} p={p:?}: χ² = {chi:.1}, counts {counts:?}, want {want:?}");
        // A sampler that ignored the temperature or the filters would fail the same test.
        let untempered = intended(&logits, 1.0, None, None);
        if (t, k, p) != (1.0, None, None) {
            let wrong = chi_square(&counts, &untempered, n);
            assert!(wrong > 100.0, "T={t} k={k:?} p={p:?} is indistinguishable from plain softmax (χ² {wrong:.1})");
        }
    }
}

#[test]
fn greedy_takes_the_argmax_and_distribution_sums_to_one() {
    let logits = Tensor::from_slice(&[0.1f32, 3.0, -2.0, 2.9, 0.0, 5.0, 1.0, 4.9]).view([2, 4]);
    let greedy = Sampling::new(0.0, Some(3), Some(0.5)).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    assert_eq!(greedy.choose(&logits, &mut rng).unwrap(), vec![1, 1]);
    let dist = Sampling::new(1.3, Some(3), Some(0.9)).unwrap().distribution(&logits);
    for s in Vec::<f64>::try_from(dist.sum_dim_intlist(1, false, Kind::Double)).unwrap() {
        assert!((s - 1.0).abs() < 1e-5);
    }
}

fn sample_args<'a>(ckpt: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["sample", "--checkpoint", ckpt, "--n-tokens", "600", "--out", out, "--batch-size", "8", "--threads", "1"];
    a.extend_from_slice(extra);
    a
}

#[test]
fn sampled_corpora_are_reproducible_and_well_formed() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, _) = train_tiny(dir.path());
    let ckpt = ckpt.to_str().unwrap();
    let d = dir.path();
    let read = |stem: &str| std::fs::read(d.join(format!("{stem}.bin"))).unwrap();
    for (stem, extra) in [
        ("a", vec!["--seed", "1"]),
        ("b", vec!["--seed", "1"]),
        ("c", vec!["--seed", "2"]),
        ("g1", vec!["--temperature", "0"]),
        ("g2", vec!["--temperature", "0", "--seed", "9"]),
        ("k", vec!["--top-k", "5", "--top-p", "0.9", "--temperature", "0.8"]),
    ] {
        let r = lmloop(d, &sample_args(ckpt, stem, &extra));
        assert_eq!(r.0, 0, "{}", r.2);
    }
    assert_eq!(read("a"), read("b"), "same seed, same corpus");
    assert_ne!(read("a"), read("c"), "different seeds differ");
    assert_eq!(read("g1"), read("g2"), "greedy ignores the seed");

    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.join("k.json")).unwrap()).unwrap();
    assert_eq!(manifest["top_k"], 5);
    assert_eq!(manifest["temperature"], 0.8);
    let tokens = lmloop::tokens::TokenFile::open(&d.join("k.bin")).unwrap();
    assert_eq!(manifest["tokens"].as_u64().unwrap() as usize, tokens.len());
    assert!(tokens.len() >= 600, "at least the requested tokens");
    let eot = manifest["eot_id"].as_u64().unwrap() as u32;
    assert_eq!(tokens.get(tokens.len() - 1), eot, "the corpus ends at a document boundary");
    let docs = lmloop::tokens::document_ranges(tokens.iter(), eot);
    assert_eq!(docs.len() as u64, manifest["documents"].as_u64().unwrap());
    // Stops at the first boundary at or after the request: without the last document it is short.
    assert!(tokens.len() - docs.last().unwrap().len() < 600);
    let text = std::fs::read_to_string(d.join("k.txt")).unwrap();
    assert_eq!(text.lines().filter(|l| *l == "<|endoftext|>").count(), docs.len());
}

#[test]
fn bad_sampling_requests_are_refused_without_leaving_a_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, _) = train_tiny(dir.path());
    let ckpt = ckpt.to_str().unwrap();
    let d = dir.path();
    let cases: [(&[&str], &str); 5] = [
        (&["--temperature", "-1"], "temperature"),
        (&["--top-p", "1.5"], "top-p"),
        (&["--top-p", "0"], "top-p"),
        (&["--top-k", "0"], "top-k"),
        (&["--n-tokens", "0"], "n-tokens"),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["sample", "--checkpoint", ckpt, "--out", "bad", "--threads", "1"];
        if !extra.contains(&"--n-tokens") {
            args.extend(["--n-tokens", "100"]);
        }
        args.extend_from_slice(extra);
        assert_clear_error(&lmloop(d, &args), needle);
    }
    assert_clear_error(&lmloop(d, &["sample", "--checkpoint", "no-such", "--n-tokens", "10", "--out", "bad"]), "no-such");
    // A checkpoint whose tokenizer does not belong to its model.
    let other = d.join("other");
    prepared(&other, 330);
    std::fs::copy(other.join("tokenizer.json"), d.join("ckpt/tokenizer.json")).unwrap();
    assert_clear_error(&lmloop(d, &["sample", "--checkpoint", ckpt, "--n-tokens", "10", "--out", "bad"]), "tokenizer");
    for ext in ["bin", "txt", "json"] {
        assert!(!d.join(format!("bad.{ext}")).exists(), "no partial bad.{ext}");
    }
}
