//! The sampler samples exactly what it claims, fast paths agree with slow ones, and
//! bad requests are refused cleanly.
mod common;

use common::*;
use lmloop::config::{Arch, ModelConfig};
use lmloop::model::Model;
use lmloop::sample::{
    context_length, inverse_cdf, sample_corpus, Decoder, Document, Engine, SampleRequest, SampleStats, Sampling,
};
use rand::SeedableRng;
use tch::{nn, Device, Kind, Tensor};

/// Cached logits must equal a full recomputation over exactly the context the decoder
/// claims to use, across slot refills (documents ending) and half-context rebuilds;
/// also for a Llama with grouped-query attention and its own output head, the shape of
/// imported models. Both engines: the step written in Rust (the CPU's) and libtorch's.
#[test]
fn cached_decoding_matches_full_recomputation() {
    let grouped = ModelConfig { arch: Arch::Llama, n_kv_head: Some(1), tie_embeddings: false, ..ModelConfig::tiny(40) };
    let shapes = [
        ModelConfig { arch: Arch::Gpt2, ..ModelConfig::tiny(40) },
        ModelConfig { arch: Arch::Llama, ..ModelConfig::tiny(40) },
        grouped,
    ];
    for (shape, engine) in shapes.into_iter().flat_map(|s| engines().into_iter().map(move |e| (s.clone(), e))) {
        let arch = shape.arch;
        tch::manual_seed(7);
        let vs = nn::VarStore::new(device());
        let cfg = ModelConfig { block_size: 12, ..shape };
        let model = Model::new(&vs.root(), &cfg);
        let eot = 0u32;
        let batch = 3;
        let mut decoder = Decoder::with_engine(&model, batch, eot, 30, device(), engine);
        let mut finished = 0;
        tch::no_grad(|| {
            for step in 0..80usize {
                let logits = decoder.logits(); // (B, V)
                for b in 0..batch {
                    let ctx = decoder.context(b);
                    let x = Tensor::from_slice(&ctx).view([1, ctx.len() as i64]).to_device(device());
                    let full = model.forward(&x, false).select(1, ctx.len() as i64 - 1).squeeze();
                    let diff = (logits.get(b as i64) - full).abs().max().double_value(&[]);
                    assert!(
                        diff < 1e-4,
                        "{arch:?} {engine:?} step {step} row {b}: cached and full logits differ by {diff}"
                    );
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
        assert!(decoder.reencodes >= 4, "rebuilds were exercised ({})", decoder.reencodes);
    }
}

/// The engines a decoder can use on the test device: libtorch's everywhere, and the
/// Rust step where it runs (the CPU).
fn engines() -> Vec<Engine> {
    let mut e = vec![Engine::for_device(device())];
    if e[0] != Engine::Libtorch {
        e.push(Engine::Libtorch);
    }
    e
}

/// With the Rust step a row's logits are the same bits whatever rows share its steps
/// (so a corpus does not depend on the batch size): a document decoded alone and the
/// same document decoded beside others, which end, refill and rebuild at other steps.
#[test]
fn a_rows_logits_do_not_depend_on_the_other_rows() {
    if Engine::for_device(device()) != Engine::Native {
        return;
    }
    for arch in [Arch::Gpt2, Arch::Llama] {
        tch::manual_seed(9);
        let vs = nn::VarStore::new(device());
        let cfg = ModelConfig { arch, block_size: 12, ..ModelConfig::tiny(40) };
        let model = Model::new(&vs.root(), &cfg);
        let eot = 0u32;
        let mut alone = Decoder::new(&model, 1, eot, 1000, device());
        let mut shared = Decoder::new(&model, 5, eot, 1000, device());
        tch::no_grad(|| {
            for step in 0..60usize {
                let (a, s) = (alone.logits(), shared.logits());
                let (a, s): (Vec<f32>, Vec<f32>) = (Vec::try_from(a.get(0)).unwrap(), Vec::try_from(s.get(2)).unwrap());
                assert_eq!(a, s, "{arch:?} step {step}: the row's logits changed with its neighbours");
                let tok = 1 + ((step * 7) % 39) as i64;
                alone.advance(&[tok]);
                // The neighbours end documents at different steps; row 2 follows `alone`.
                let others: Vec<i64> = (0..5)
                    .map(|b| {
                        if b == 2 {
                            tok
                        } else if (step + b) % (3 + b) == 0 {
                            eot as i64
                        } else {
                            1 + ((step + b) % 39) as i64
                        }
                    })
                    .collect();
                shared.advance(&others);
            }
        });
        assert!(alone.reencodes >= 4, "{arch:?}: the row was rebuilt ({})", alone.reencodes);
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
    let batch = row.unsqueeze(0).expand([n, 5], false).contiguous().to_device(device());
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
    // The last row ties: the first largest wins, as libtorch's argmax.
    let logits = Tensor::from_slice(&[0.1f32, 3.0, -2.0, 2.9, 0.0, 5.0, 1.0, 4.9, 1.0, 7.0, 7.0, -1.0])
        .view([3, 4])
        .to_device(device());
    let greedy = Sampling::new(0.0, Some(3), Some(0.5)).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    assert_eq!(greedy.choose(&logits, &mut rng).unwrap(), vec![1, 1, 1]);
    let dist = Sampling::new(1.3, Some(3), Some(0.9)).unwrap().distribution(&logits);
    for s in Vec::<f64>::try_from(dist.sum_dim_intlist(1, false, Kind::Double)).unwrap() {
        assert!((s - 1.0).abs() < 1e-5);
    }
}

fn sample_args<'a>(ckpt: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a =
        vec!["sample", "--checkpoint", ckpt, "--n-tokens", "600", "--out", out, "--batch-size", "8", "--threads", "1"];
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

    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("k.json")).unwrap()).unwrap();
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
    assert_clear_error(
        &lmloop(d, &["sample", "--checkpoint", "no-such", "--n-tokens", "10", "--out", "bad"]),
        "no-such",
    );
    // A checkpoint whose tokenizer does not belong to its model.
    let other = d.join("other");
    prepared(&other, 330);
    std::fs::copy(other.join("tokenizer.json"), d.join("ckpt/tokenizer.json")).unwrap();
    assert_clear_error(&lmloop(d, &["sample", "--checkpoint", ckpt, "--n-tokens", "10", "--out", "bad"]), "tokenizer");
    for ext in ["bin", "txt", "json"] {
        assert!(!d.join(format!("bad.{ext}")).exists(), "no partial bad.{ext}");
    }
}

/// A model whose every logit is 0: each next token, `<|endoftext|>` included, has
/// probability 1/V, so document lengths are geometric with a known law.
fn uniform_model(vocab: i64, block: i64) -> (nn::VarStore, Model) {
    let vs = nn::VarStore::new(device());
    let cfg = ModelConfig { n_layer: 1, n_head: 1, n_embd: 8, block_size: block, ..ModelConfig::tiny(vocab) };
    let model = Model::new(&vs.root(), &cfg);
    tch::no_grad(|| {
        for (_, mut v) in vs.variables() {
            let _ = v.zero_();
        }
    });
    (vs, model)
}

fn corpus_of(model: &Model, seed: u64, n_tokens: usize, batch: usize, cap: usize) -> (Vec<Document>, SampleStats) {
    let req = SampleRequest {
        sampling: Sampling::new(1.0, None, None).unwrap(),
        seed,
        n_tokens,
        batch_size: batch,
        max_doc_tokens: cap,
        progress: false,
    };
    let mut docs = Vec::new();
    let stats = sample_corpus(model, 0, device(), &req, |d| {
        docs.push(d.clone());
        Ok(d.corpus_tokens())
    })
    .unwrap();
    (docs, stats)
}

/// With P(end) = 1/V at every step, lengths are geometric: P(L = l) = (1-p)^l p,
/// mean (1-p)/p. Many small corpora, each far smaller than the batch could hold in
/// flight: a sampler that kept the documents that finish first (the short ones)
/// would fall far below the law; finishing documents in flight keeps it exact.
#[test]
fn document_lengths_follow_the_models_own_law() {
    let vocab = 20;
    let (_vs, model) = uniform_model(vocab, 8);
    let p = 1.0 / vocab as f64;
    let mut lengths = Vec::new();
    for seed in 0..150u64 {
        let (docs, stats) = corpus_of(&model, seed, 200, 32, 100_000);
        assert!(stats.tokens >= 200 && stats.tokens - (docs.last().unwrap().tokens.len() + 1) < 200);
        assert_eq!(stats.truncated_documents, 0);
        lengths.extend(docs.iter().map(|d| d.tokens.len() as f64));
    }
    let n = lengths.len() as f64;
    let mean = lengths.iter().sum::<f64>() / n;
    let want = (1.0 - p) / p;
    let se = ((1.0 - p).sqrt() / p) / n.sqrt();
    assert!(
        (mean - want).abs() < 4.0 * se,
        "mean length {mean:.2} over {n} documents, geometric mean {want:.2} ± {:.2}",
        4.0 * se
    );
    // The whole histogram, not only the mean: bins of 5 tokens up to 60, then the tail.
    let mut observed = vec![0i64; 13];
    for &l in &lengths {
        observed[((l as usize) / 5).min(12)] += 1;
    }
    let cdf = |l: usize| 1.0 - (1.0 - p).powi(l as i32); // P(L < l)
    let probs: Vec<f64> = (0..13).map(|b| if b == 12 { 1.0 - cdf(60) } else { cdf(5 * b + 5) - cdf(5 * b) }).collect();
    // 12 degrees of freedom: P(χ² > 32.9) = 0.001.
    let chi = chi_square(&observed, &probs, lengths.len() as i64);
    assert!(chi < 32.9, "length histogram {observed:?} departs from the geometric law (χ² = {chi:.1})");
}

/// A document cut at the cap carries no end-of-text token: the corpus holds exactly
/// as many as the model emitted.
#[test]
fn no_end_of_text_is_added_that_the_model_did_not_emit() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, _) = train_tiny(dir.path());
    let d = dir.path();
    let r = lmloop(d, &sample_args(ckpt.to_str().unwrap(), "cut", &["--max-doc-tokens", "6"]));
    assert_eq!(r.0, 0, "{}", r.2);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("cut.json")).unwrap()).unwrap();
    let documents = manifest["documents"].as_u64().unwrap();
    let truncated = manifest["truncated_documents"].as_u64().unwrap();
    assert!(truncated > 0 && truncated < documents, "the cap was exercised: {truncated} of {documents}");
    let share = manifest["truncation_share"].as_f64().unwrap();
    assert!((share - truncated as f64 / documents as f64).abs() < 1e-12);
    let eot = manifest["eot_id"].as_u64().unwrap() as u32;
    let tokens = lmloop::tokens::TokenFile::open(&d.join("cut.bin")).unwrap();
    let eots = tokens.iter().filter(|&t| t == eot).count() as u64;
    assert_eq!(eots, documents - truncated, "one end-of-text per document the model ended, none for cut ones");
    assert_eq!(tokens.len() as u64, manifest["tokens"].as_u64().unwrap());
    let text = std::fs::read_to_string(d.join("cut.txt")).unwrap();
    assert_eq!(text.lines().filter(|l| *l == "<|endoftext|>").count() as u64, documents - truncated);
}

/// Two-sample Kolmogorov–Smirnov statistic.
fn ks_statistic(a: &[f64], b: &[f64]) -> f64 {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by(|x, y| x.partial_cmp(y).unwrap());
    b.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let (mut i, mut j, mut d) = (0, 0, 0.0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    d
}

/// Batch size changes speed only: documents come out the same, and their lengths and
/// tokens are statistically indistinguishable.
#[test]
fn batch_size_does_not_change_what_is_sampled() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, _) = train_tiny(dir.path());
    let ckpt = lmloop::checkpoint::Checkpoint::load(&ckpt, device()).unwrap();
    let eot = ckpt.vocab.eot();
    let vocab = ckpt.vocab.vocab_size();
    let sample = |batch: usize| {
        let mut docs = Vec::new();
        for seed in 0..30u64 {
            let req = SampleRequest {
                sampling: Sampling::new(1.0, None, None).unwrap(),
                seed,
                n_tokens: 200,
                batch_size: batch,
                max_doc_tokens: 10_000,
                progress: false,
            };
            sample_corpus(&ckpt.model, eot, device(), &req, |d| {
                docs.push(d.tokens.clone());
                Ok(d.corpus_tokens())
            })
            .unwrap();
        }
        docs
    };
    let (one, many) = (sample(1), sample(24));
    let same = one.iter().zip(&many).filter(|(a, b)| a == b).count();
    assert!(
        same * 10 >= one.len().min(many.len()) * 9,
        "{same} of {} documents identical across batch sizes",
        one.len()
    );
    let lengths = |d: &[Vec<u32>]| d.iter().map(|x| x.len() as f64).collect::<Vec<_>>();
    let (la, lb) = (lengths(&one), lengths(&many));
    let ks = ks_statistic(&la, &lb);
    let (n, m) = (la.len() as f64, lb.len() as f64);
    // α = 0.001: c(α) = 1.95.
    let critical = 1.95 * ((n + m) / (n * m)).sqrt();
    assert!(ks < critical, "document lengths differ between batch sizes (KS {ks:.3} ≥ {critical:.3})");
    // Unigram counts: χ² homogeneity test over the tokens seen at least 10 times.
    let count = |d: &[Vec<u32>]| {
        let mut c = vec![0f64; vocab];
        for t in d.iter().flatten() {
            c[*t as usize] += 1.0;
        }
        c
    };
    let (ca, cb) = (count(&one), count(&many));
    let (ta, tb): (f64, f64) = (ca.iter().sum(), cb.iter().sum());
    let (mut chi, mut dof) = (0.0f64, -1.0f64);
    for (a, b) in ca.iter().zip(&cb) {
        if a + b < 10.0 {
            continue;
        }
        let ea = (a + b) * ta / (ta + tb);
        let eb = (a + b) * tb / (ta + tb);
        chi += (a - ea).powi(2) / ea + (b - eb).powi(2) / eb;
        dof += 1.0;
    }
    // Wilson–Hilferty: the 0.999 quantile of χ²(dof).
    let z = 3.09;
    let q = dof * (1.0 - 2.0 / (9.0 * dof) + z * (2.0 / (9.0 * dof)).sqrt()).powi(3);
    assert!(chi < q, "unigram counts differ between batch sizes (χ² {chi:.1} ≥ {q:.1} with {dof} dof)");
}

/// What a row is conditioned on follows the documented rule from its own history
/// alone, whatever the other rows are doing: each row's logits equal the model run on
/// the last `context_length(block, n)` tokens of that row's own document, tracked here
/// independently of the decoder.
#[test]
fn context_of_a_row_depends_only_on_its_own_history() {
    let block = 10usize;
    for (arch, engine) in [Arch::Gpt2, Arch::Llama].into_iter().flat_map(|a| engines().into_iter().map(move |e| (a, e)))
    {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(device());
        let cfg = ModelConfig { arch, block_size: block as i64, ..ModelConfig::tiny(30) };
        let model = Model::new(&vs.root(), &cfg);
        let eot = 0i64;
        let batch = 4;
        let mut decoder = Decoder::with_engine(&model, batch, eot as u32, 1000, device(), engine);
        let mut history: Vec<Vec<i64>> = vec![vec![eot]; batch];
        let mut checked = 0;
        tch::no_grad(|| {
            for step in 0..90usize {
                let logits = decoder.logits();
                for (b, row) in history.iter().enumerate() {
                    let n = row.len();
                    let context = &row[n - context_length(block, n)..];
                    let x = Tensor::from_slice(context).view([1, context.len() as i64]).to_device(device());
                    let full = model.forward(&x, false).select(1, context.len() as i64 - 1).squeeze();
                    let diff = (logits.get(b as i64) - full).abs().max().double_value(&[]);
                    assert!(
                        diff < 1e-4,
                        "{arch:?} {engine:?} step {step} row {b} holding {n} tokens: logits differ by {diff}"
                    );
                    checked += 1;
                }
                // Rows start staggered and row 3 restarts every 13 steps, so rows fill their
                // caches at different steps.
                let chosen: Vec<i64> =
                    (0..batch)
                        .map(|b| {
                            if (b == 3 && step % 13 == 12) || step == b * 3 {
                                eot
                            } else {
                                1 + ((step + b) % 29) as i64
                            }
                        })
                        .collect();
                decoder.advance(&chosen);
                for (b, &tok) in chosen.iter().enumerate() {
                    if tok == eot {
                        history[b] = vec![eot];
                    } else {
                        history[b].push(tok);
                    }
                }
            }
        });
        assert_eq!(checked, 360);
        assert!(history[0].len() > 3 * block, "{arch:?}: a row ran well past the context");
        assert!(decoder.reencodes >= 8, "{arch:?}: rows were rebuilt ({})", decoder.reencodes);
    }
    // The rule itself: the whole history up to the context, then from half a context up to a full one.
    let lens: Vec<usize> = (1..=25).map(|n| context_length(block, n)).collect();
    assert_eq!(lens, vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 5, 6, 7, 8, 9, 10, 5, 6, 7, 8, 9, 10, 5, 6, 7]);
}

/// Over a realistic vocabulary the draw walks block sums; every token, including those
/// far in the tail and those next to tokens a filter removed, keeps its probability.
#[test]
fn draws_over_a_large_vocabulary_follow_the_distribution() {
    let v = 300usize;
    // Logits spread over 8 nats, in an order unrelated to the token index.
    let logits: Vec<f64> = (0..v).map(|i| ((i * 37) % v) as f64 / v as f64 * 8.0 - 4.0).collect();
    let n = 300_000i64;
    let row = Tensor::from_slice(&logits).to_kind(Kind::Float);
    let batch = row.unsqueeze(0).expand([n, v as i64], false).contiguous().to_device(device());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    for (t, k) in [(1.0, None), (0.7, Some(200usize))] {
        let sampling = Sampling::new(t, k.map(|k| k as i64), None).unwrap();
        let mut counts = vec![0i64; v];
        for token in sampling.choose(&batch, &mut rng).unwrap() {
            counts[token as usize] += 1;
        }
        let want = intended(&logits, t, k, None);
        // Pool tokens expected fewer than 5 times into one cell (a χ² cell needs about 5).
        let (mut obs, mut exp) = (Vec::new(), Vec::new());
        let (mut pooled_c, mut pooled_p) = (0i64, 0.0f64);
        for (&c, &p) in counts.iter().zip(&want) {
            if p * (n as f64) < 5.0 {
                pooled_c += c;
                pooled_p += p;
            } else {
                obs.push(c);
                exp.push(p);
            }
        }
        obs.push(pooled_c);
        exp.push(pooled_p);
        let dof = (obs.len() - 1) as f64;
        let chi = chi_square(&obs, &exp, n);
        let z = 3.09; // Wilson–Hilferty: the 0.999 quantile of χ²(dof).
        let q = dof * (1.0 - 2.0 / (9.0 * dof) + z * (2.0 / (9.0 * dof)).sqrt()).powi(3);
        assert!(chi < q, "T={t} k={k:?}: χ² = {chi:.1} ≥ {q:.1} with {dof} dof");
        if let Some(k) = k {
            let kept = counts.iter().filter(|&&c| c > 0).count();
            assert!(kept <= k, "top-k {k} drew {kept} distinct tokens");
        }
    }
}

/// Thread count and batch size change speed only: the same seed gives the same
/// documents (exactly with the CPU's Rust step; with libtorch's, up to rare
/// floating-point ties between batched and unbatched arithmetic).
#[test]
fn threads_and_batch_size_leave_the_corpus_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, _) = train_tiny(dir.path());
    let d = dir.path();
    let ckpt = ckpt.to_str().unwrap();
    for (stem, threads, batch) in [("t1", "1", "3"), ("t2", "2", "16")] {
        let r = lmloop(
            d,
            &[
                "sample",
                "--checkpoint",
                ckpt,
                "--n-tokens",
                "1500",
                "--out",
                stem,
                "--threads",
                threads,
                "--batch-size",
                batch,
                "--seed",
                "4",
            ],
        );
        assert_eq!(r.0, 0, "{}", r.2);
    }
    let docs = |stem: &str| {
        let f = lmloop::tokens::TokenFile::open(&d.join(format!("{stem}.bin"))).unwrap();
        let all = f.to_vec();
        lmloop::tokens::document_ranges(f.iter(), 0).into_iter().map(|r| all[r].to_vec()).collect::<Vec<_>>()
    };
    let (a, b) = (docs("t1"), docs("t2"));
    if Engine::for_device(device()) == Engine::Native {
        // The Rust step computes each row alone: the same corpus, bit for bit.
        assert!(a == b, "the corpus changed with the thread count and batch size");
    }
    let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
    assert!(
        same * 10 >= a.len() * 9 && a.len().abs_diff(b.len()) <= 2,
        "{same} of {} / {} documents identical",
        a.len(),
        b.len()
    );
}

/// The CPU decoding-step attention equals libtorch's attention over the same cache:
/// rows at different positions see only their own slots up to their own position,
/// the new key and value land in the right slot, for head sizes that do and do not
/// fill the kernel's vector lanes, and with fewer key/value heads than query heads.
#[test]
fn decode_attention_matches_libtorch() {
    use lmloop::model::attention::{decode_attention, supported};
    tch::manual_seed(5);
    for (b, nh, nkv, hs, t_max) in [(5i64, 3i64, 3i64, 24i64, 16i64), (4, 2, 2, 5, 9), (5, 6, 2, 16, 12)] {
        let cache_k = Tensor::randn([b, nkv, t_max, hs], (Kind::Float, Device::Cpu));
        let cache_v = Tensor::randn([b, nkv, t_max, hs], (Kind::Float, Device::Cpu));
        let (ref_k, ref_v) = (cache_k.copy(), cache_v.copy());
        let q = Tensor::randn([b, nh, 1, hs], (Kind::Float, Device::Cpu));
        let k = Tensor::randn([b, nkv, 1, hs], (Kind::Float, Device::Cpu));
        let v = Tensor::randn([b, nkv, 1, hs], (Kind::Float, Device::Cpu));
        let pos: Vec<i64> = (0..b).map(|r| [0, t_max - 1, 3, 1, 7][r as usize] % t_max).collect();
        assert!(supported(&q, &cache_k, &cache_v));
        let ours = decode_attention(&q, &k, &v, &cache_k, &cache_v, &pos); // (B, 1, nh·hs)
        for (r, &p) in pos.iter().enumerate() {
            let r = r as i64;
            let (kr, vr) = (ref_k.get(r).narrow(1, 0, p + 1).copy(), ref_v.get(r).narrow(1, 0, p + 1).copy());
            kr.narrow(1, p, 1).copy_(&k.get(r));
            vr.narrow(1, p, 1).copy_(&v.get(r));
            // Query head h reads key/value head h / (nh / nkv).
            let (kr, vr) =
                (kr.repeat_interleave_self_int(nh / nkv, 0, None), vr.repeat_interleave_self_int(nh / nkv, 0, None));
            let want =
                Tensor::scaled_dot_product_attention(&q.get(r), &kr, &vr, None::<Tensor>, 0.0, false, None, false); // (nh, 1, hs)
            let got = ours.get(r).view([1, nh, hs]).transpose(0, 1);
            let diff = (got - want).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "row {r} at position {p}: outputs differ by {diff}");
            // The cache now holds the new key and value at the row's position, the rest unchanged.
            assert!(cache_k.get(r).narrow(1, p, 1).equal(&k.get(r)) && cache_v.get(r).narrow(1, p, 1).equal(&v.get(r)));
            let others = |c: &Tensor, old: &Tensor| {
                let mask = Tensor::ones([t_max], (Kind::Bool, Device::Cpu)).index_fill(0, &Tensor::from_slice(&[p]), 0);
                c.get(r)
                    .index_select(1, &mask.nonzero().squeeze_dim(1))
                    .equal(&old.get(r).index_select(1, &mask.nonzero().squeeze_dim(1)))
            };
            assert!(others(&cache_k, &ref_k) && others(&cache_v, &ref_v), "row {r}: other slots untouched");
        }
    }
}

/// The on-device draw (what a GPU runs) and the host draw (what the CPU runs) pick the
/// same token from the same probabilities and the same uniform, over a GPT-2-sized
/// vocabulary with temperature, top-k and top-p, so a corpus depends on the seed and
/// not on where it was drawn; rows of zero weight are never chosen.
#[test]
fn device_draws_equal_host_draws_for_the_same_uniforms() {
    use rand::Rng;
    tch::manual_seed(9);
    let (rows, v) = (512i64, 50_257i64);
    let logits = (Tensor::randn([rows, v], (Kind::Float, Device::Cpu)) * 3.0).to_device(device());
    for (t, k, p) in [(1.0, None, None), (0.7, Some(40), None), (1.3, None, Some(0.9)), (1.0, Some(1000), Some(0.5))] {
        let sampling = Sampling::new(t, k, p).unwrap();
        let host =
            sampling.choose(&logits.to_device(Device::Cpu), &mut rand_chacha::ChaCha8Rng::seed_from_u64(5)).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let u: Vec<f64> = (0..rows).map(|_| rng.gen::<f64>()).collect();
        let probs = sampling.distribution(&logits);
        let on_device = inverse_cdf(&probs, &u).unwrap();
        let same = host.iter().zip(&on_device).filter(|(a, b)| a == b).count();
        assert_eq!(same, rows as usize, "T={t} k={k:?} p={p:?}: {same} of {rows} draws agree");
        let weights = probs.to_device(Device::Cpu);
        for (b, &tok) in on_device.iter().enumerate() {
            assert!(weights.double_value(&[b as i64, tok]) > 0.0, "row {b} drew token {tok} of zero probability");
        }
        // And through the public entry point on the test device.
        let again = sampling.choose(&logits, &mut rand_chacha::ChaCha8Rng::seed_from_u64(5)).unwrap();
        assert_eq!(again, host, "T={t} k={k:?} p={p:?}: choose() differs between devices");
    }
}

/// The Rust step's blocks (each thread taking its rows a few at a time through many
/// steps) decode exactly what one step at a time decodes: the same documents from the
/// same rows, the same contexts and the same random streams afterwards, for block
/// lengths that do and do not divide the run, partial groups of rows, documents cut at
/// the length cap, rebuilds, every kind of draw, one thread and two. A row whose
/// document ends inside a block without `restart` waits, fresh, for the block's end.
#[test]
fn blocks_of_steps_decode_what_single_steps_decode() {
    if Engine::for_device(device()) != Engine::Native {
        return;
    }
    let threads_before = tch::get_num_threads();
    tch::manual_seed(5);
    let vs = nn::VarStore::new(device());
    let cfg = ModelConfig { block_size: 12, ..ModelConfig::tiny(40) };
    let model = Model::new(&vs.root(), &cfg);
    let (eot, batch, cap, total) = (0u32, 11usize, 30usize, 90usize);
    let streams = || (0..batch as u64).map(|b| lmloop::sample::document_rng(21, b)).collect::<Vec<_>>();
    let samplings = [
        Sampling::new(1.0, None, None).unwrap(),
        Sampling::new(0.8, Some(7), Some(0.9)).unwrap(),
        Sampling::new(0.0, None, None).unwrap(),
    ];
    tch::no_grad(|| {
        for sampling in &samplings {
            // One step at a time.
            let mut single = Decoder::new(&model, batch, eot, cap, device());
            let mut rngs = streams();
            let mut want: Vec<(usize, Document)> = Vec::new();
            for _ in 0..total {
                let logits = single.logits();
                let chosen = single.choose_rows(&logits, sampling, &mut rngs).unwrap();
                want.extend(single.advance(&chosen));
            }
            let ends = want.len();
            assert!(ends >= batch, "{sampling:?}: documents ended ({ends})");
            for threads in [1, 2] {
                tch::set_num_threads(threads);
                let mut blocked = Decoder::new(&model, batch, eot, cap, device());
                let mut block_rngs = streams();
                let mut got: Vec<(usize, Document)> = Vec::new();
                let mut done = 0;
                for k in [1usize, 7, 30, 2, 64].into_iter().cycle() {
                    let k = k.min(total - done);
                    got.extend(
                        blocked
                            .decode_block(sampling, &mut block_rngs, k, true)
                            .unwrap()
                            .expect("the Rust step decodes blocks"),
                    );
                    done += k;
                    if done == total {
                        break;
                    }
                }
                // Rows finish in another order inside a block; each row's own order is kept.
                let by_row = |docs: &[(usize, Document)]| {
                    (0..batch)
                        .map(|b| docs.iter().filter(|d| d.0 == b).map(|d| d.1.tokens.clone()).collect::<Vec<_>>())
                        .collect::<Vec<_>>()
                };
                assert_eq!(
                    by_row(&got),
                    by_row(&want),
                    "{sampling:?}, {threads} threads: blocks decoded other documents"
                );
                for b in 0..batch {
                    assert_eq!(
                        blocked.context(b),
                        single.context(b),
                        "{sampling:?}, {threads} threads: row {b} ends in another context"
                    );
                    assert_eq!(
                        block_rngs[b], rngs[b],
                        "{sampling:?}, {threads} threads: row {b}'s stream advanced differently"
                    );
                }
                assert_eq!(blocked.reencodes, single.reencodes, "{sampling:?}: rebuilds");
                // Without restart a row ends at most one document per block, its first,
                // and is fresh at the block's end.
                let mut waiting = Decoder::new(&model, batch, eot, cap, device());
                let mut wait_rngs = streams();
                let first = waiting.decode_block(sampling, &mut wait_rngs, total, false).unwrap().unwrap();
                let firsts: Vec<Vec<u32>> = by_row(&want).into_iter().map(|docs| docs[0].clone()).collect();
                assert_eq!(first.len(), batch, "{sampling:?}: every row ended one document");
                for (b, doc) in &first {
                    assert_eq!(doc.tokens, firsts[*b], "{sampling:?}: row {b}'s first document");
                    assert_eq!(waiting.context(*b), vec![eot as i64], "{sampling:?}: row {b} waits fresh");
                }
            }
        }
    });
    tch::set_num_threads(threads_before);
}

/// Where the sampler's time went adds up to its wall time, and rebuilds are counted
/// apart from the decoding steps whenever rows outgrow the context.
#[test]
fn sampling_time_is_accounted_for() {
    // Documents of 200 tokens on average against a 16-token context: many rebuilds.
    let (_vs, model) = uniform_model(200, 16);
    let (_, stats) = corpus_of(&model, 3, 20_000, 16, 5_000);
    let t = &stats.time;
    assert!(stats.reencodes > 100, "rows were rebuilt ({})", stats.reencodes);
    assert!(t.rebuild_seconds > 0.0 && t.forward_seconds > 0.0 && t.draw_seconds > 0.0, "every part was timed: {t:?}");
    let parts = t.forward_seconds + t.rebuild_seconds + t.draw_seconds + t.host_seconds;
    assert!(
        (parts - stats.seconds).abs() <= 0.02 * stats.seconds + 1e-3,
        "parts {parts:.4} s against {:.4} s in all: {t:?}",
        stats.seconds
    );
}

/// A model that never ends its documents (its end token is one it cannot emit) keeps
/// no batch decoding to the cap for documents the corpus does not need: rows are
/// abandoned as the documents before them grow past the target, and the corpus is the
/// one a single row writes.
#[test]
fn documents_that_cannot_be_needed_stop_decoding() {
    let (_vs, model) = uniform_model(40, 16);
    let never_ends = lmloop::tokenizer::Delimiters { start: 0, end: 1000 };
    // `shrink` divides what each document occupies in the corpus, as re-encoding can.
    let run = |batch: usize, shrink: usize| {
        let req = SampleRequest {
            sampling: Sampling::new(1.0, None, None).unwrap(),
            seed: 4,
            n_tokens: 3000,
            batch_size: batch,
            max_doc_tokens: 2000,
            progress: false,
        };
        let mut docs = Vec::new();
        let stats = sample_corpus(&model, never_ends, device(), &req, |d| {
            docs.push(d.clone());
            Ok(d.corpus_tokens() / shrink)
        })
        .unwrap();
        (docs, stats)
    };
    // Written at half their sampled length, a third document is needed after all: it
    // was abandoned, and is decoded again from its own stream.
    let (alone, _) = run(1, 2);
    let (batched, _) = run(32, 2);
    assert_eq!(alone.len(), 3);
    assert_eq!(batched, alone, "a document abandoned and then needed is written as it would have been");
    let (alone, _) = run(1, 1);
    let (batched, stats) = run(32, 1);
    assert_eq!(alone.len(), 2, "two documents cut at 2,000 tokens hold the 3,000 asked for");
    assert!(alone.iter().all(|d| d.truncated && d.tokens.len() == 2000));
    assert_eq!(batched, alone, "abandoning rows changes nothing in the corpus");
    println!("discarded {} tokens with 32 rows", stats.discarded_tokens);
    assert!(
        stats.discarded_tokens < 24_000,
        "{} tokens decoded for nothing; 30 rows running to the cap would be 60,000",
        stats.discarded_tokens
    );
}
