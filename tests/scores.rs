//! Per-document perplexity under the reference model: the documents' scores add up to
//! what `lmloop eval` measures, and the loop scores every corpus once.
mod common;

use common::{device, lmloop, tiny_project, train_tiny};
use lmloop::checkpoint::Checkpoint;
use lmloop::stream::TokenStream;
use lmloop::tokens::TokenFile;
use std::sync::Arc;

#[test]
fn document_scores_add_up_to_the_held_out_loss_eval_reports() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, data) = train_tiny(dir.path());
    let ckpt = Checkpoint::load(&ckpt, device()).unwrap();
    let test = Arc::new(TokenFile::open(&data.join("test.bin")).unwrap());
    let delimiters = ckpt.vocab.delimiters();
    let eval = lmloop::eval::evaluate(&ckpt.model, &test, delimiters, device()).unwrap();
    let stream = TokenStream::from_file(test.clone(), delimiters);
    let scores = lmloop::eval::per_document(&ckpt.model, &stream, device()).unwrap();
    assert_eq!(scores.len(), stream.documents());
    let targets: u64 = scores.iter().map(|s| s.targets).sum();
    assert_eq!(targets as usize, eval.tokens, "every token is one document's target");
    let mean = scores.iter().map(|s| s.nll).sum::<f64>() / targets as f64;
    assert!((mean - eval.mean_loss).abs() < 1e-9 * eval.mean_loss, "{mean} against {}", eval.mean_loss);
    assert!(scores.iter().all(|s| s.targets > 0 && s.mean().is_finite()));
}

#[test]
fn the_loop_scores_every_corpus_under_generation_0_once() {
    let dir = tiny_project();
    let root = dir.path();
    let run = |n: &str| lmloop(root, &["generations", "--config", "tiny.toml", "-n", n, "--run", "s"]);
    let r = run("1");
    assert_eq!(r.0, 0, "{}", r.2);
    let rows = lmloop::records::read_rows(&root.join("analysis/s/generations.csv")).unwrap();
    for row in &rows {
        assert!(row.reference_perplexity_p10 <= row.reference_perplexity_median, "{row:?}");
        assert!(row.reference_perplexity_median <= row.reference_perplexity_p90, "{row:?}");
        assert!(row.reference_perplexity_p10 >= 1.0 && row.self_perplexity_median >= 1.0, "{row:?}");
        assert!((0.0..=1.0).contains(&row.reference_beyond_real_p99), "{row:?}");
        assert!((0.0..=1.0).contains(&row.reference_beyond_real_p99_floor), "the floor's null: {row:?}");
        let excess = row.reference_beyond_real_p99 - row.reference_beyond_real_p99_floor;
        assert!((row.reference_beyond_real_p99_excess - excess).abs() < 1e-12, "{row:?}");
    }
    for row in &rows {
        for v in [row.precision, row.recall, row.density, row.coverage] {
            assert!(v.is_nan() || (0.0..=if v == row.density { 1e9 } else { 1.0 }).contains(&v), "{row:?}");
        }
        assert!(row.precision.is_finite() && row.recall.is_finite(), "{row:?}");
    }
    let floor = lmloop::scoring::read_floor(&lmloop::layout::Layout::new(root), "s").unwrap().expect("noise floor");
    assert_eq!(floor.draws.len(), lmloop::analysis::manifold::FLOOR_DRAWS);
    let scores = std::fs::read_to_string(root.join("analysis/s/scores/gen-02.csv")).unwrap();
    assert!(scores.starts_with("document,targets,reference_nll,self_nll\n"), "{scores}");
    assert!(root.join("analysis/s/scores/real-test.csv").exists());
    // Resumed, nothing is scored again and the rows are the same.
    let before = std::fs::read(root.join("analysis/s/scores/gen-02.csv")).unwrap();
    let csv = std::fs::read(root.join("analysis/s/generations.csv")).unwrap();
    assert_eq!(run("1").0, 0);
    assert_eq!(std::fs::read(root.join("analysis/s/scores/gen-02.csv")).unwrap(), before);
    assert_eq!(std::fs::read(root.join("analysis/s/generations.csv")).unwrap(), csv);
}

/// Passages of `stream` embedded by `ckpt`, checking that the embedding pass scores
/// exactly what the plain one does.
fn embed(ckpt: &Checkpoint, stream: &TokenStream) -> lmloop::analysis::manifold::Embeddings {
    let (scores, emb) = lmloop::eval::score_documents(&ckpt.model, stream, device(), true).unwrap();
    assert_eq!(scores, lmloop::eval::per_document(&ckpt.model, stream, device()).unwrap());
    let emb = emb.unwrap();
    let block = ckpt.model.config().block_size as usize;
    let full = (0..stream.window_count(block)).filter(|&w| stream.window_targets(w, block) == block).count();
    assert_eq!(emb.len(), full, "one embedding per full window (passage)");
    assert_eq!(emb.dim as i64, ckpt.model.config().n_embd);
    emb
}

/// A stream over `docs`, each a document of `file`.
fn stream_of(file: &Arc<TokenFile>, docs: &[std::ops::Range<usize>], ckpt: &Checkpoint) -> TokenStream {
    let mut s = TokenStream::new(ckpt.vocab.delimiters());
    let f = s.add_file(file.clone());
    for d in docs {
        s.push(f, d.clone());
    }
    s
}

/// Toy documents `range` (of the toy corpus's generator, past the 120 the tiny model
/// trained on) encoded by `ckpt`'s tokenizer, each ended, as a token file and its stream.
fn toy_passages(ckpt: &Checkpoint, dir: &std::path::Path, range: std::ops::Range<usize>) -> TokenStream {
    let text = common::toy_corpus(range.end, 6);
    let mut tokens = Vec::new();
    for doc in text.split("\n\n").skip(range.start).take(range.len()) {
        tokens.extend(ckpt.vocab.encode(doc).unwrap());
        tokens.push(ckpt.vocab.eot());
    }
    let path = dir.join(format!("toy-{}-{}.bin", range.start, range.end));
    lmloop::tokens::write_tokens(&path, &tokens, ckpt.vocab.vocab_size()).unwrap();
    TokenStream::from_file(Arc::new(TokenFile::open(&path).unwrap()), ckpt.vocab.delimiters())
}

/// A document's short last window and a document shorter than the context are scored
/// but are no passage: adding short documents to a corpus moves none of its passages'
/// embeddings, so neither its precision nor its recall.
#[test]
fn short_documents_and_last_windows_do_not_move_precision_or_recall() {
    use lmloop::analysis::manifold::compare;
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, _) = train_tiny(dir.path());
    let ckpt = Checkpoint::load(&ckpt, device()).unwrap();
    let block = ckpt.model.config().block_size as usize;
    let real = embed(&ckpt, &toy_passages(&ckpt, dir.path(), 200..400));
    toy_passages(&ckpt, dir.path(), 800..1000);
    let file = Arc::new(TokenFile::open(&dir.path().join("toy-800-1000.bin")).unwrap());
    let docs = lmloop::tokens::document_ranges(file.iter(), ckpt.vocab.eot());
    assert!(docs.iter().any(|d| d.len() >= block), "the toy documents must hold full windows");
    let plain = stream_of(&file, &docs, &ckpt);
    // Every fifth document followed by a 3-token fragment of itself: an outlier passage
    // under a rule that counted every window.
    let mut with_short = docs.clone();
    for (i, d) in docs.iter().enumerate().filter(|(i, _)| i % 5 == 0) {
        with_short.insert(i + 1 + i / 5, d.start..d.start + 3);
    }
    let with_short = stream_of(&file, &with_short, &ckpt);
    assert!(with_short.window_count(block) > plain.window_count(block));
    let (a, b) = (embed(&ckpt, &plain), embed(&ckpt, &with_short));
    assert_eq!(a.len(), b.len());
    assert_eq!(a.to_bytes(), b.to_bytes(), "the same passages, the same embeddings");
    assert_eq!(compare(&real, &a, 8), compare(&real, &b, 8));
}

/// The null of the share beyond the real tail: a corpus of unseen real documents sits
/// at its floor (pieces of other real documents at its lengths), and short text has a
/// higher floor than long text, because a short document's perplexity varies more.
#[test]
fn unseen_real_text_sits_at_the_floor_of_the_share_beyond_the_real_tail() {
    use lmloop::analysis::scores::{floor_pieces, real_cut, share_above};
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, _) = train_tiny(dir.path());
    let ckpt = Checkpoint::load(&ckpt, device()).unwrap();
    let perplexities = |stream: &TokenStream| -> Vec<f64> {
        lmloop::eval::per_document(&ckpt.model, stream, device()).unwrap().iter().map(|s| s.mean().exp()).collect()
    };
    let cut = real_cut(&perplexities(&toy_passages(&ckpt, dir.path(), 200..245)));
    let corpus = toy_passages(&ckpt, dir.path(), 800..1000);
    let corpus_share = share_above(&perplexities(&corpus), cut);
    let lengths: Vec<u64> =
        lmloop::eval::per_document(&ckpt.model, &corpus, device()).unwrap().iter().map(|s| s.targets).collect();
    toy_passages(&ckpt, dir.path(), 400..800);
    let floor = Arc::new(TokenFile::open(&dir.path().join("toy-400-800.bin")).unwrap());
    let docs = lmloop::tokens::document_ranges(floor.iter(), ckpt.vocab.eot());
    let floor_share = |lengths: &[u64]| {
        let pieces = floor_pieces(lengths, &docs);
        assert_eq!(pieces.len(), lengths.len());
        share_above(&perplexities(&stream_of(&floor, &pieces, &ckpt)), cut)
    };
    let at_lengths = floor_share(&lengths);
    assert!((corpus_share - at_lengths).abs() <= 0.1, "unseen real text {corpus_share} against its floor {at_lengths}");
    let short = floor_share(&vec![4; lengths.len()]);
    assert!(short > at_lengths, "4-token pieces {short} against full-length ones {at_lengths}");
}

#[test]
fn unseen_real_passages_score_like_the_noise_floor_and_degenerate_corpora_do_not() {
    use lmloop::analysis::manifold::{compare, Floor};
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, _) = train_tiny(dir.path());
    let ckpt = Checkpoint::load(&ckpt, device()).unwrap();
    let eot = ckpt.vocab.eot();
    // Real passages, the floor's pool of unseen real ones, and a "synthetic" corpus of
    // other unseen real documents: one source, three disjoint sets of documents.
    let real = embed(&ckpt, &toy_passages(&ckpt, dir.path(), 200..400));
    let floor = Floor::measure(&real, &embed(&ckpt, &toy_passages(&ckpt, dir.path(), 400..800)), 7).unwrap();
    let like_real = compare(&real, &embed(&ckpt, &toy_passages(&ckpt, dir.path(), 800..1000)), 8);
    assert!(like_real.passages >= 100, "{like_real:?}");
    for i in 0..2 {
        let v = like_real.values()[i];
        assert!(floor.spread(i) < 0.3, "the floor is too loose to test against: {floor:?}");
        assert!(
            (v - floor.mean(i)).abs() <= floor.spread(i),
            "measure {i}: {v} against the floor's {} ± {}",
            floor.mean(i),
            floor.spread(i)
        );
    }
    // One document repeated: its few distinct passages stay real (most lie inside the
    // real manifold; a document's short last passage may not), but cover nothing.
    let mut repeated = TokenStream::new(ckpt.vocab.delimiters());
    let text = common::toy_corpus(1001, 6);
    let doc = text.split("\n\n").nth(1000).unwrap();
    let mut tokens = Vec::new();
    for _ in 0..200 {
        tokens.extend(ckpt.vocab.encode(doc).unwrap());
        tokens.push(eot);
    }
    let path = dir.path().join("repeated.bin");
    lmloop::tokens::write_tokens(&path, &tokens, ckpt.vocab.vocab_size()).unwrap();
    let file = Arc::new(TokenFile::open(&path).unwrap());
    let f = repeated.add_file(file.clone());
    for r in lmloop::tokens::document_ranges(file.iter(), eot) {
        repeated.push(f, r);
    }
    let repeated = compare(&real, &embed(&ckpt, &repeated), 9);
    assert!(repeated.recall < 0.05, "{repeated:?}");
    assert!(repeated.precision >= 0.5, "{repeated:?}");
    // Uniformly random tokens (no end token inside a document) lie off the real manifold.
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let v = ckpt.vocab.vocab_size() as u32;
    let mut noise = Vec::new();
    // Documents of two full windows (and a short last one), so every one holds passages.
    for _ in 0..200 {
        noise.extend((0..70).map(|_| loop {
            let t = rng.gen_range(0..v);
            if t != eot {
                break t;
            }
        }));
        noise.push(eot);
    }
    let path = dir.path().join("noise.bin");
    lmloop::tokens::write_tokens(&path, &noise, v as usize).unwrap();
    let noise_file = Arc::new(TokenFile::open(&path).unwrap());
    let random = compare(&real, &embed(&ckpt, &TokenStream::from_file(noise_file, ckpt.vocab.delimiters())), 10);
    assert!(random.precision < 0.1, "{random:?}");
}

#[test]
fn the_sampler_records_the_loss_eval_gives_its_documents() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, _) = train_tiny(dir.path());
    let ckpt = Checkpoint::load(&ckpt, device()).unwrap();
    let d = ckpt.vocab.delimiters();
    let block = ckpt.model.config().block_size as usize;
    let req = lmloop::sample::SampleRequest {
        sampling: lmloop::sample::Sampling::new(1.0, None, None).unwrap(),
        seed: 5,
        n_tokens: 3000,
        batch_size: 8,
        max_doc_tokens: 4 * block,
        progress: false,
    };
    let mut docs = Vec::new();
    lmloop::sample::sample_corpus(&ckpt.model, d, device(), &req, |doc| {
        docs.push(doc.clone());
        Ok(doc.corpus_tokens())
    })
    .unwrap();
    let mut checked = 0;
    for (i, doc) in docs.iter().enumerate() {
        assert!(doc.self_nll.is_finite() && doc.self_nll > 0.0, "{doc:?}");
        // Within the context the sampler's contexts are the windows eval reads.
        if doc.targets() > block {
            continue;
        }
        let mut tokens = doc.tokens.clone();
        if !doc.truncated {
            tokens.push(d.end);
        }
        let path = dir.path().join(format!("doc-{i}.bin"));
        lmloop::tokens::write_tokens(&path, &tokens, ckpt.vocab.vocab_size()).unwrap();
        let file = Arc::new(TokenFile::open(&path).unwrap());
        let whole = std::iter::once(0..tokens.len()).collect::<Vec<_>>();
        let stream = stream_of(&file, &whole, &ckpt);
        let eval = lmloop::eval::per_document(&ckpt.model, &stream, device()).unwrap();
        assert_eq!(eval[0].targets as usize, doc.targets());
        assert!(
            (eval[0].nll - doc.self_nll).abs() <= 1e-3 * eval[0].nll.max(1.0),
            "{} against {}",
            doc.self_nll,
            eval[0].nll
        );
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} of {} documents fit in the context", docs.len());
}

#[test]
fn an_oracle_reference_is_trained_once_and_shared_by_runs_of_the_same_corpus_and_seed() {
    let dir = tiny_project();
    let root = dir.path();
    let cfg = std::fs::read_to_string(root.join("tiny.toml")).unwrap();
    let cfg = cfg.replace("[generations]\n", "[generations]\nreference = \"oracle\"\n");
    assert!(cfg.contains("reference = \"oracle\""), "the tiny config has a [generations] table");
    std::fs::write(root.join("oracle.toml"), cfg).unwrap();
    let first = lmloop(root, &["generations", "--config", "oracle.toml", "-n", "1", "--run", "a"]);
    assert_eq!(first.0, 0, "{}", first.2);
    assert!(first.2.contains("training the oracle reference"), "{}", first.2);
    let oracles: Vec<_> =
        std::fs::read_dir(root.join("checkpoints/oracle")).unwrap().flatten().filter(|e| e.path().is_dir()).collect();
    assert_eq!(oracles.len(), 1);
    assert!(oracles[0].path().join("DONE").exists());
    let protocol = std::fs::read_to_string(root.join("analysis/a/protocol.json")).unwrap();
    assert!(protocol.contains("\"reference_model\": \"oracle"), "{protocol}");
    // Another policy, same corpus and seed: the oracle is reused, not trained again.
    let second =
        lmloop(root, &["generations", "--config", "oracle.toml", "-n", "1", "--run", "b", "--policy", "accumulate"]);
    assert_eq!(second.0, 0, "{}", second.2);
    assert!(!second.2.contains("training the oracle reference"), "{}", second.2);
    // Generation 0's own corpus is scored by the oracle, not by M_0 itself.
    let a = lmloop::records::read_rows(&root.join("analysis/a/generations.csv")).unwrap();
    let b = lmloop::records::read_rows(&root.join("analysis/b/generations.csv")).unwrap();
    assert_eq!(a[0].reference_perplexity_median, b[0].reference_perplexity_median, "same M_0, same S_1, same oracle");
    let plain = lmloop(root, &["generations", "--config", "tiny.toml", "-n", "1", "--run", "c"]);
    assert_eq!(plain.0, 0, "{}", plain.2);
    let c = lmloop::records::read_rows(&root.join("analysis/c/generations.csv")).unwrap();
    assert_ne!(c[0].reference_perplexity_median, a[0].reference_perplexity_median, "M_0 and the oracle differ");
}

#[test]
fn a_damaged_oracle_is_refused_before_anything_runs_and_the_named_repair_trains_it_again_to_the_same_weights() {
    let dir = tiny_project();
    let root = dir.path();
    let cfg = std::fs::read_to_string(root.join("tiny.toml")).unwrap();
    let oracle_cfg = cfg.replace("[generations]\n", "[generations]\nreference = \"oracle\"\n");
    std::fs::write(root.join("oracle.toml"), &oracle_cfg).unwrap();
    let run = |name: &str, n: &str| lmloop(root, &["generations", "--config", "oracle.toml", "-n", n, "--run", name]);
    let first = run("a", "1");
    assert_eq!(first.0, 0, "{}", first.2);
    let oracle = std::fs::read_dir(root.join("checkpoints/oracle"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .unwrap();
    let weights = oracle.join("model.safetensors");
    let good = std::fs::read(&weights).unwrap();
    let mut bytes = good.clone();
    let at = bytes.len() * 2 / 3;
    bytes[at] ^= 0x40;
    std::fs::write(&weights, bytes).unwrap();
    let v = lmloop(root, &["verify", "--run", "a"]);
    assert_ne!(v.0, 0);
    assert!(v.1.contains("model.safetensors is damaged") && v.1.contains("remove the oracle's folder"), "{}", v.1);
    // Refused at the start, before generation 2 is trained or anything sampled.
    let r = run("a", "2");
    common::assert_clear_error(&r, "remove the oracle's folder");
    assert!(!root.join("checkpoints/a/gen-02").exists() && !r.2.contains("sampling"), "{}", r.2);
    // The repair it names: remove the DONE file; the oracle trains again, to the same weights.
    std::fs::remove_file(oracle.join("DONE")).unwrap();
    let r = run("a", "2");
    assert_eq!(r.0, 0, "{}", r.2);
    assert!(r.2.contains("training the oracle reference"), "{}", r.2);
    assert_eq!(std::fs::read(&weights).unwrap(), good, "the oracle retrained to the same weights");
    assert_eq!(lmloop(root, &["verify", "--run", "a"]).0, 0);
    // A missing state.json says the same repair.
    std::fs::remove_file(oracle.join("state.json")).unwrap();
    common::assert_clear_error(&run("a", "2"), "remove the oracle's folder");

    // Truncated cross-entropy trains neither the oracle nor M_0: a γ run shares the
    // oracle and trains generation 0 plainly, from generation 1 with γ.
    std::fs::remove_dir_all(&oracle).unwrap();
    assert_eq!(run("a", "1").0, 0);
    let gamma = oracle_cfg.replace("[train]\n", "[train]\ntruncated_ce_gamma = 0.5\n");
    assert!(gamma.contains("truncated_ce_gamma"), "the tiny config has a [train] table");
    std::fs::write(root.join("gamma.toml"), gamma).unwrap();
    let g = lmloop(root, &["generations", "--config", "gamma.toml", "-n", "1", "--run", "g"]);
    assert_eq!(g.0, 0, "{}", g.2);
    assert!(!g.2.contains("training the oracle reference"), "the γ run shares the plain oracle: {}", g.2);
    let state = |run: &str, k: u32| -> serde_json::Value {
        serde_json::from_str(
            &std::fs::read_to_string(root.join(format!("checkpoints/{run}/gen-{k:02}/state.json"))).unwrap(),
        )
        .unwrap()
    };
    assert!(state("g", 0)["truncated_ce_share"].is_null(), "M_0 trained plainly: {}", state("g", 0));
    assert!(state("g", 1)["truncated_ce_share"].is_number(), "generation 1 with γ: {}", state("g", 1));
    assert_eq!(state("g", 0)["weights"], state("a", 0)["weights"], "the same M_0 as the plain run");
}

#[test]
fn measurements_cut_short_are_taken_again_to_the_same_tables() {
    let dir = tiny_project();
    let root = dir.path();
    let run = || lmloop(root, &["generations", "--config", "tiny.toml", "-n", "1", "--run", "k"]);
    let r = run();
    assert_eq!(r.0, 0, "{}", r.2);
    let scores = root.join("analysis/k/scores");
    let without_seconds = || {
        let text = std::fs::read_to_string(root.join("analysis/k/generations.csv")).unwrap();
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let header = reader.headers().unwrap().clone();
        reader
            .records()
            .map(|r| {
                let r = r.unwrap();
                header
                    .iter()
                    .zip(r.iter())
                    .filter(|(h, _)| !h.ends_with("_seconds"))
                    .map(|(_, v)| v.to_string())
                    .collect()
            })
            .collect::<Vec<Vec<String>>>()
    };
    let (rows, corpus, floor) = (
        without_seconds(),
        std::fs::read(scores.join("gen-02.csv")).unwrap(),
        std::fs::read(scores.join("noise-floor.json")).unwrap(),
    );
    // As a kill between a corpus's scores and their marker, in the floor's measurement
    // and before the real passages' embeddings were written would leave them.
    for f in ["gen-02.json", "noise-floor.json", "real-test.emb"] {
        std::fs::remove_file(scores.join(f)).unwrap();
    }
    std::fs::write(scores.join("gen-01.json"), "{\"documents\": 3").unwrap();
    let again = run();
    assert_eq!(again.0, 0, "{}", again.2);
    assert_eq!(without_seconds(), rows);
    assert_eq!(std::fs::read(scores.join("gen-02.csv")).unwrap(), corpus);
    assert_eq!(std::fs::read(scores.join("noise-floor.json")).unwrap(), floor);
}
