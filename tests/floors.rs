//! The lines collapse is compared against hold everywhere: the tail null comes from
//! real documents (real text is bursty), the noise floor never resamples R, and the
//! control never trains on R itself.
mod common;

use common::*;
use lmloop::analysis::{count_tokens, measure_corpus, measure_noise_floor, RealNull, Reference, TokenTable};
use lmloop::policy::{mixture, noise_floor, null_draws, Corpus, Policy, RealData};
use lmloop::tokens::{write_tokens, TokenFile};
use std::sync::Arc;

const VOCAB: usize = 3000;
/// The first token of document i is `MARKER + i`, so a document can be told by it.
const MARKER: u32 = 1000;

/// Bursty documents, as real text is: a common vocabulary, plus a few "names" each
/// document repeats (names are shared by few documents, more often the lower their id).
fn bursty_split(dir: &std::path::Path, documents: usize) -> Corpus {
    let mut next = lcg(17);
    let mut tokens = Vec::new();
    for i in 0..documents {
        tokens.push(MARKER + i as u32);
        let names: Vec<u32> = (0..4).map(|_| 100 + (next(800) * next(800) / 800) as u32).collect();
        for _ in 0..160 {
            let t = if next(5) == 0 { names[next(4) as usize] } else { 1 + (next(60) * next(60) / 60) as u32 };
            tokens.push(t);
        }
        tokens.push(0);
    }
    let path = dir.join("split.bin");
    write_tokens(&path, &tokens, VOCAB).unwrap();
    Corpus::new("real/train", Arc::new(TokenFile::open(&path).unwrap()), 0)
}

/// The document markers in a token sequence.
fn markers(tokens: &[u32]) -> std::collections::BTreeSet<u32> {
    tokens.iter().copied().filter(|&t| t >= MARKER).collect()
}

/// Corpora of unseen real documents (what a perfect model writes) lie inside the tail
/// null's band for every real-count bucket, and on the noise floor, while the
/// independence law expects far fewer absences than such corpora show.
#[test]
fn a_perfect_model_lies_inside_the_real_document_null_and_on_the_floor() {
    let dir = tempfile::tempdir().unwrap();
    let split = bursty_split(dir.path(), 500);
    let empty = Corpus { name: "real/val".into(), file: split.file.clone(), documents: Vec::new() };
    let real = RealData::new(split.clone(), Policy::Replace, split.tokens() / 8, None, 1).unwrap();
    let d = real.base.tokens();
    let real_counts = count_tokens(&real.base.to_tokens(), VOCAB).unwrap();
    let draws = null_draws(&real, &empty, d, 20, VOCAB, 2).unwrap();
    let null = RealNull::from_counts(&real_counts, &draws.counts, draws.source.clone(), draws.source_tokens as u64);
    // Five corpora of a perfect model: fresh draws of real documents outside R.
    let k = 5;
    let perfect: Vec<Vec<u32>> = (0..k).map(|i| noise_floor(&real, &empty, d, 100 + i).unwrap().tokens).collect();
    for s in &perfect {
        assert!(markers(s).is_disjoint(&markers(&real.base.to_tokens())), "a perfect model's corpus is not R");
    }
    let counts: Vec<Vec<u64>> = perfect.iter().map(|s| count_tokens(s, VOCAB).unwrap()).collect();
    let texts: Vec<String> = (0..VOCAB).map(|t| t.to_string()).collect();
    let table = TokenTable::new(&texts, real_counts.clone(), counts).unwrap();
    let ratio = d as f64 / real.base.tokens() as f64;
    let mut beyond_bound = 0;
    for b in lmloop::analysis::survival_by_bucket_with(&table, Some(ratio), Some(&null)) {
        let n = b.real_null.expect("the bucket has the real-document null");
        let half = 3.0 * n.absent_share_sd / (k as f64).sqrt() + 1e-9;
        println!(
            "count {:>7}: {:>4} tokens, absent {:.3}, null {:.3} ± {:.3}, independent {:.3}",
            b.label,
            b.tokens,
            b.absent_share,
            n.absent_share,
            half,
            b.null.unwrap().absent_share
        );
        assert!(
            (b.absent_share - n.absent_share).abs() <= half,
            "count {}: a perfect model's absent share {:.3} is outside the null {:.3} ± {half:.3}",
            b.label,
            b.absent_share,
            n.absent_share
        );
        beyond_bound += usize::from(b.absent_share > b.null.unwrap().absent_share + 0.05);
    }
    assert!(beyond_bound >= 2, "bursty text loses more than independent draws would, in several buckets");

    // On the floor: the floor is another such corpus, so its measures lie within the
    // perfect corpora's spread.
    let reference = Reference::new(real_counts).unwrap();
    let floor = measure_noise_floor(&reference, &noise_floor(&real, &empty, d, 99).unwrap().tokens, 0).unwrap();
    let rows: Vec<_> = perfect
        .iter()
        .enumerate()
        .map(|(i, s)| measure_corpus(&reference, s, 0, Some(i as u32 + 1)).unwrap())
        .collect();
    for (name, of) in [
        (
            "KL(R‖S)",
            (|r: &lmloop::analysis::DriftRow| r.kl_real_gen_add_half) as fn(&lmloop::analysis::DriftRow) -> f64,
        ),
        ("distinct-2", |r| r.distinct_2),
        ("distinct tokens", |r| r.distinct_tokens as f64),
    ] {
        let v: Vec<f64> = rows.iter().map(of).collect();
        let m = v.iter().sum::<f64>() / v.len() as f64;
        let sd = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt();
        println!("{name}: perfect {m:.4} ± {sd:.4}, floor {:.4}", of(&floor));
        assert!(
            (of(&floor) - m).abs() <= 3.0 * sd + 1e-9,
            "{name}: floor {} against perfect corpora {m} ± {sd}",
            of(&floor)
        );
    }
}

/// With R the whole split (no subset), documents are held out of R: the floor and the
/// tail null come from them, never from R, and the control draws documents that change
/// from generation to generation, none of them R's.
#[test]
fn without_a_subset_the_floor_and_the_control_use_documents_held_out_of_r() {
    let dir = tempfile::tempdir().unwrap();
    let split = bursty_split(dir.path(), 300);
    let empty = Corpus { name: "real/val".into(), file: split.file.clone(), documents: Vec::new() };
    let real = RealData::new(split.clone(), Policy::Replace, 0, None, 4).unwrap();
    assert_eq!(real.holdout_fraction, Some(0.5));
    assert!(real.base.tokens() <= split.tokens() / 2 && real.pool_tokens() >= real.base.tokens());
    let in_r = markers(&real.base.to_tokens());
    let d = real.base.tokens();
    let floor = noise_floor(&real, &empty, d, 9).unwrap();
    assert!(floor.tokens.len() >= d && floor.source.contains("outside R"), "{}", floor.source);
    assert!(markers(&floor.tokens).is_disjoint(&in_r), "the floor shares documents with R");
    // The control needs twice D outside R: refused at the default share, drawn at 0.7.
    let err = mixture(1, Policy::Real, &real, &[], d, 1).err().expect("too small a pool is refused").to_string();
    assert!(err.contains("generations.holdout_fraction"), "{err}");
    let real = RealData::new(split.clone(), Policy::Real, 0, Some(0.7), 4).unwrap();
    let d = real.base.tokens();
    let in_r = markers(&real.base.to_tokens());
    let drawn: Vec<std::collections::BTreeSet<u32>> = (1..=3)
        .map(|k| {
            let (stream, m) = mixture(k, Policy::Real, &real, &[], d, 50 + k as u64).unwrap();
            assert!(m.real_tokens >= d && m.synthetic_tokens == 0);
            let mut v = Vec::new();
            stream.read(0, stream.len(), &mut v);
            markers(&v.iter().map(|&t| t as u32).collect::<Vec<_>>())
        })
        .collect();
    for (k, docs) in drawn.iter().enumerate() {
        assert!(docs.is_disjoint(&in_r), "generation {}'s control trains on R's documents", k + 1);
    }
    assert!(drawn[0] != drawn[1] && drawn[1] != drawn[2], "the control's documents change between generations");
}

/// The loop records where the floor, the tail null and the control come from, refuses
/// a control with no room for its pool in one sentence, and says plainly when too
/// little real text lies outside R for a noise floor instead of drawing one from R.
#[test]
fn the_loop_records_its_reference_lines_and_refuses_what_it_cannot_draw() {
    let dir = tiny_project();
    let root = dir.path();
    let r = lmloop(root, &["generations", "--config", "tiny.toml", "-n", "1", "--policy", "real", "--run", "control"]);
    assert_clear_error(&r, "generations.holdout_fraction");
    let cfg = std::fs::read_to_string(root.join("tiny.toml"))
        .unwrap()
        .replace("[generations]\n", "[generations]\nholdout_fraction = 0.7\n");
    std::fs::write(root.join("control.toml"), cfg).unwrap();
    let r = lmloop(
        root,
        &["generations", "--config", "control.toml", "-n", "1", "--policy", "real", "--run", "control-held-out"],
    );
    assert_eq!(r.0, 0, "{}", r.2);
    let protocol: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("analysis/control-held-out/protocol.json")).unwrap())
            .unwrap();
    assert_eq!(protocol["holdout_fraction"], 0.7);
    assert!(protocol["noise_floor_source"].as_str().unwrap().contains("outside R"), "{protocol}");
    assert!(protocol["tail_null_source"].as_str().unwrap().contains("outside R"), "{protocol}");
    assert_eq!(protocol["tail_null_draws"], 20);
    assert!(protocol["control_draws_from"].as_str().unwrap().contains("outside R"), "{protocol}");
    let tokens = std::fs::read_to_string(root.join("analysis/control-held-out/tokens.csv")).unwrap();
    assert!(tokens.lines().next().unwrap().ends_with(",null_presence_probability,null_presence_real_documents"));

    // D far beyond the real text outside R: no floor at all, and the report says why.
    let cfg = std::fs::read_to_string(root.join("tiny.toml"))
        .unwrap()
        .replace("synthetic_tokens = 0", "synthetic_tokens = 20000");
    std::fs::write(root.join("huge.toml"), cfg).unwrap();
    let r = lmloop(root, &["generations", "--config", "huge.toml", "-n", "1", "--run", "huge"]);
    assert_eq!(r.0, 0, "{}", r.2);
    assert!(r.2.contains("no noise floor"), "{}", r.2);
    let drift = std::fs::read_to_string(root.join("analysis/huge/drift.csv")).unwrap();
    assert!(!drift.contains("real-sample"), "no floor row from resampled R: {drift}");
    let report = std::fs::read_to_string(root.join("analysis/huge/report.html")).unwrap();
    assert!(report.contains("No noise floor"), "the report says there is none");
}
