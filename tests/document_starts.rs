//! What enters training is what a real pipeline would see: documents start in
//! training as the sampler starts them, a document cut at the length cap never teaches
//! an end, and sampled ids enter a corpus as the tokenizer encodes their text.
mod common;

use common::*;
use lmloop::checkpoint::Checkpoint;
use lmloop::config::{Arch, Config, ModelConfig};
use lmloop::records::read_rows;
use lmloop::sample::{sample_corpus, SampleRequest, Sampling};
use lmloop::stream::{TokenStream, IGNORE};
use lmloop::tokenizer::Vocab;
use lmloop::tokens::{write_tokens, TokenFile};
use std::path::Path;
use std::sync::Arc;
use tch::{Device, Tensor};

/// Trains the tiny config's training settings on `stream` into `out`.
fn train(model: ModelConfig, stream: &TokenStream, vocab: &Vocab, out: &Path, epochs: f64) {
    train_with(&tiny_config(), model, stream, vocab, out, epochs)
}

/// The same with the training settings of `config`.
fn train_with(config: &Path, model: ModelConfig, stream: &TokenStream, vocab: &Vocab, out: &Path, epochs: f64) {
    let mut cfg = Config::load(config).unwrap();
    cfg.train.epochs = Some(epochs);
    cfg.train.checkpoint_interval = 0;
    lmloop::train::train(lmloop::train::TrainRequest {
        model,
        train: cfg.train,
        data: stream,
        val: None,
        vocab,
        device: device(),
        init_from: None,
        out: out.to_path_buf(),
        progress: false,
    })
    .unwrap();
}

/// A vocabulary of 260 entries (`<|endoftext|>` is id 0, then the 256 bytes and three
/// merges), for corpora written as ids directly.
fn small_vocab() -> Vocab {
    Vocab::train(&vec!["abab abab abab cdcd cdcd".to_string(); 4], 260).unwrap()
}

/// Unigram entropy (nats) of a token file.
fn entropy(path: &Path, vocab: usize) -> f64 {
    lmloop::analysis::entropy_nats(&TokenFile::open(path).unwrap().counts(vocab).unwrap())
}

/// A vocabulary of 512 entries trained on random words (only its size and its
/// end-of-text id matter to the tests that use it).
fn vocab_512() -> Vocab {
    let mut next = lcg(3);
    let words: Vec<String> =
        (0..400).map(|_| (0..3 + next(6)).map(|_| char::from(b'a' + next(26) as u8)).collect()).collect();
    let text: String = (0..6000).map(|_| format!("{} ", words[next(400) as usize])).collect();
    Vocab::train(&[text], 512).unwrap()
}

/// The protocol's mostly-cut corpus outside the loop: 99.5% one token, every document
/// cut at the cap (no end-of-text anywhere), the default model shape at vocabulary
/// 512. Each cut document still starts from the start token in training, so the model
/// samples close to its training corpus's entropy at T = 0.7 and 1, not near ln V.
/// With windows that tiled the stream, the start token never occurred as an input,
/// and this test's GPT-2 sampled 5.88 nats at T = 0.7 (ln 512 = 6.24).
#[test]
fn a_model_trained_on_cut_documents_samples_near_its_corpus_entropy_not_uniform() {
    let vocab = vocab_512();
    let v = vocab.vocab_size();
    let eot = vocab.eot();
    let dir = tempfile::tempdir().unwrap();
    let mut next = lcg(1);
    let tokens: Vec<u32> = (0..60_000).map(|_| if next(1000) < 995 { 300 } else { 257 + next(255) as u32 }).collect();
    assert!(!tokens.contains(&eot));
    let path = dir.path().join("cut.bin");
    write_tokens(&path, &tokens, v).unwrap();
    let file = Arc::new(TokenFile::open(&path).unwrap());
    let corpus_entropy = lmloop::analysis::entropy_nats(&file.counts(v).unwrap());
    let ln_v = (v as f64).ln();
    let default_toml = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/default.toml");
    let defaults = Config::load(&default_toml).unwrap();
    for arch in [Arch::Gpt2, Arch::Llama] {
        // Documents cut every 4,096 tokens, as the sampler's manifest records them.
        let mut stream = TokenStream::new(vocab.delimiters());
        let f = stream.add_file(file.clone());
        for start in (0..tokens.len()).step_by(4096) {
            stream.push(f, start..(start + 4096).min(tokens.len()));
        }
        let out = dir.path().join(format!("{arch:?}"));
        let shape = ModelConfig { arch, vocab_size: v as i64, ..defaults.model.clone() };
        train_with(&default_toml, shape, &stream, &vocab, &out, 4.0);
        let ckpt = Checkpoint::load(&out, device()).unwrap();
        for temperature in [0.7, 1.0] {
            let req = SampleRequest {
                sampling: Sampling::new(temperature, None, None).unwrap(),
                seed: 9,
                n_tokens: 8000,
                batch_size: 8,
                max_doc_tokens: 1024,
                progress: false,
            };
            let mut counts = vec![0u64; v];
            sample_corpus(&ckpt.model, vocab.delimiters(), device(), &req, |d| {
                d.tokens.iter().for_each(|&t| counts[t as usize] += 1);
                Ok(d.corpus_tokens())
            })
            .unwrap();
            let sampled = lmloop::analysis::entropy_nats(&counts);
            println!("{arch:?} T = {temperature}: sampled {sampled:.3} nats, training corpus {corpus_entropy:.3}, ln V {ln_v:.3}");
            assert!(
                sampled < corpus_entropy + 0.25 * (ln_v - corpus_entropy),
                "{arch:?} at T = {temperature} samples {sampled:.3} nats from a corpus of {corpus_entropy:.3} (ln V = {ln_v:.3})"
            );
        }
    }
}

/// Real documents that are nearly all one word: what a loop at low temperature turns a
/// corpus into.
fn one_word_text() -> String {
    let others = ["sea", "moon", "crown", "rose", "bird", "horse", "king", "queen", "night", "day", "sword", "ring"];
    let mut next = lcg(7);
    let mut text = String::new();
    for _ in 0..60 {
        for _ in 0..300 {
            match next(1000) {
                0..=969 => text.push_str("la "),
                _ => text.push_str(&format!("{} ", others[next(others.len() as u64) as usize])),
            }
        }
        text.push_str("\n\n");
    }
    text
}

/// A loop whose corpus is cut at the cap almost everywhere marks the generation that
/// trains on it (`train_cap_dependent`, with a warning), and that generation, whose
/// documents still start from the start token, writes S_2 like S_1, not as noise near
/// ln V, for both architectures at T = 0.7 and 1.
#[test]
fn a_loop_of_cut_documents_is_marked_and_samples_near_its_training_entropy() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let raw = write(&root.join("one-word.txt"), &one_word_text());
    let out = root.join("corpora/real/one-word");
    let r = lmloop(
        root,
        &["prepare", "--input", raw.to_str().unwrap(), "--out", out.to_str().unwrap(), "--vocab-size", "300"],
    );
    assert_eq!(r.0, 0, "{}", r.2);
    let ln_v = (300f64).ln();
    for arch in ["gpt2", "llama"] {
        for temperature in ["0.7", "1.0"] {
            let cfg = std::fs::read_to_string(tiny_config())
                .unwrap()
                .replace("[data]\n", "[data]\ncorpus = \"one-word\"\n")
                .replace("[model]\n", &format!("[model]\narch = \"{arch}\"\n"))
                .replace("[sample]\n", "[sample]\nmax_doc_tokens = 24\n");
            std::fs::write(root.join("cut.toml"), cfg).unwrap();
            let run = format!("cut-{arch}-{temperature}");
            let r = lmloop(
                root,
                &["generations", "--config", "cut.toml", "-n", "1", "--temperature", temperature, "--run", &run],
            );
            assert_eq!(r.0, 0, "{}", r.2);
            let rows = read_rows(&root.join(format!("analysis/{run}/generations.csv"))).unwrap();
            assert!(
                rows[0].synthetic_truncation_share > 0.8,
                "S_1 is cut at the cap: {}",
                rows[0].synthetic_truncation_share
            );
            assert!(rows[1].train_truncated_share > 0.8 && rows[1].train_cap_dependent, "generation 1 is flagged");
            assert!(!rows[0].train_cap_dependent, "generation 0 trained on real documents");
            let s1 = entropy(&root.join(format!("corpora/synthetic/{run}/gen-01.bin")), 300);
            let s2 = entropy(&root.join(format!("corpora/synthetic/{run}/gen-02.bin")), 300);
            println!("{arch} T = {temperature}: S_1 {s1:.3} nats, S_2 {s2:.3} nats, ln V = {ln_v:.3}");
            assert!(s1 < 1.5, "{arch} T = {temperature}: S_1 is nearly one token ({s1:.3} nats)");
            assert!(
                s2 < s1 + 0.25 * (ln_v - s1),
                "{arch} T = {temperature}: S_2 has {s2:.3} nats against S_1's {s1:.3} (ln V = {ln_v:.3})"
            );
            assert!(r.2.contains("train_cap_dependent"), "the loop says why generation 1 is marked: {}", r.2);
        }
    }
}

/// Short documents whose first token is nearly always the same: the first tokens of
/// the sampled documents follow the model's own prediction after a document start as
/// training shows it, within sampling error (the sampler starts documents from the
/// start token at position 0, and so do the training windows).
#[test]
fn first_tokens_of_sampled_documents_follow_the_prediction_after_a_start_in_training() {
    let vocab = small_vocab();
    let eot = vocab.eot();
    let dir = tempfile::tempdir().unwrap();
    let mut next = lcg(11);
    let mut tokens = Vec::new();
    for _ in 0..2500 {
        tokens.push(if next(10) < 9 { 1 } else { 2 + next(8) as u32 });
        let mut t = 10 + next(20) as u32;
        for _ in 0..3 + next(6) {
            tokens.push(t);
            t = 10 + (t * 7 + next(3) as u32) % 20;
        }
        tokens.push(eot);
    }
    let path = dir.path().join("short.bin");
    write_tokens(&path, &tokens, vocab.vocab_size()).unwrap();
    let stream = TokenStream::from_file(Arc::new(TokenFile::open(&path).unwrap()), vocab.delimiters());
    for arch in [Arch::Gpt2, Arch::Llama] {
        let out = dir.path().join(format!("{arch:?}"));
        let shape = ModelConfig { arch, ..ModelConfig::tiny(vocab.vocab_size() as i64) };
        train(shape.clone(), &stream, &vocab, &out, 4.0);
        let ckpt = Checkpoint::load(&out, device()).unwrap();
        // The model's probability of token 1 wherever a training window shows a
        // document's first token as the target.
        let block = shape.block_size as usize;
        let windows: Vec<usize> = (0..stream.window_count(block)).collect();
        let (mut sum, mut starts) = (0.0, 0usize);
        for chunk in windows.chunks(64) {
            let (x, y) = stream.windows(chunk, block);
            let input = Tensor::from_slice(&x).view([chunk.len() as i64, block as i64]).to_device(device());
            let probs =
                tch::no_grad(|| ckpt.model.forward(&input, false).softmax(-1, tch::Kind::Float)).to_device(Device::Cpu);
            for (i, (&xi, &yi)) in x.iter().zip(&y).enumerate() {
                if xi == vocab.delimiters().start as i64 && yi != IGNORE {
                    let (row, pos) = ((i / block) as i64, (i % block) as i64);
                    sum += probs.get(row).get(pos).double_value(&[1]);
                    starts += 1;
                }
            }
        }
        assert_eq!(starts, 2500, "every document starts once in the training windows");
        let predicted = sum / starts as f64;
        let req = SampleRequest {
            sampling: Sampling::new(1.0, None, None).unwrap(),
            seed: 5,
            n_tokens: 20_000,
            batch_size: 32,
            max_doc_tokens: 200,
            progress: false,
        };
        let (mut first_is_one, mut documents) = (0usize, 0usize);
        sample_corpus(&ckpt.model, vocab.delimiters(), device(), &req, |d| {
            documents += 1;
            first_is_one += usize::from(d.tokens.first() == Some(&1));
            Ok(d.corpus_tokens())
        })
        .unwrap();
        let sampled = first_is_one as f64 / documents as f64;
        let sd = (predicted * (1.0 - predicted) / documents as f64).sqrt();
        println!("{arch:?}: P(first = 1) predicted at training starts {predicted:.4}, sampled {sampled:.4} over {documents} documents");
        assert!(predicted > 0.7, "{arch:?} learned the first-token law ({predicted:.3})");
        assert!(
            (sampled - predicted).abs() < 4.0 * sd,
            "{arch:?}: sampled {sampled:.4}, predicted {predicted:.4} ± {sd:.4}"
        );
    }
}

/// An id of the toy tokenizer that its training split never contains (an intermediate
/// merge, the start of a word that is always merged further), the word it starts and
/// the ids that complete it: `odd + rest` spells the word, which encodes as `whole`.
fn unproduced_piece(vocab: &Vocab, train: &TokenFile) -> (u32, Vec<u32>, u32) {
    let counts = train.counts(vocab.vocab_size()).unwrap();
    for word in
        [" cat", " calls", " crown", " king", " queen", " friend", " follows", " fears", " answers", " horse", " rose"]
    {
        let whole = vocab.encode(word).unwrap();
        if whole.len() != 1 {
            continue;
        }
        for k in 2..word.len() {
            let piece = vocab.encode(&word[..k]).unwrap();
            if piece.len() == 1 && counts[piece[0] as usize] == 0 {
                return (piece[0], vocab.encode(&word[k..]).unwrap(), whole[0]);
            }
        }
    }
    panic!("the toy BPE keeps no intermediate merge of its words");
}

/// A model trained to spell words through an id the encoder never produces (so it
/// favours that id) still yields a corpus of canonical tokens: the id all but vanishes
/// from the file, every document equals the encoding of its text, and the manifest says
/// how many sampled ids were replaced. A document cut at the cap is recorded, so
/// loading the corpus keeps it apart and no training window teaches an end after it.
#[test]
fn sampled_ids_enter_the_corpus_as_the_tokenizer_encodes_their_text() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("corpus");
    prepared(&data, 300);
    let vocab = Vocab::load(&data.join("tokenizer.json")).unwrap();
    let eot = vocab.eot();
    let real = TokenFile::open(&data.join("train.bin")).unwrap();
    let (odd, rest, whole) = unproduced_piece(&vocab, &real);
    // The real training split with every `whole` spelled `odd + rest`.
    let mut tokens = Vec::new();
    for t in real.iter() {
        if t == whole {
            tokens.push(odd);
            tokens.extend(&rest);
        } else {
            tokens.push(t);
        }
    }
    let trained_share = tokens.iter().filter(|&&t| t == odd).count() as f64 / tokens.len() as f64;
    assert!(trained_share > 0.01, "the model is taught to favour the odd id ({trained_share:.4})");
    let path = dir.path().join("odd.bin");
    write_tokens(&path, &tokens, vocab.vocab_size()).unwrap();
    let stream = TokenStream::from_file(Arc::new(TokenFile::open(&path).unwrap()), vocab.delimiters());
    let out = dir.path().join("ckpt");
    train(ModelConfig::tiny(vocab.vocab_size() as i64), &stream, &vocab, &out, 6.0);
    let ckpt = Checkpoint::load(&out, device()).unwrap();
    for (cap, stem) in [(400, "whole"), (6, "cut")] {
        let req = SampleRequest {
            sampling: Sampling::new(1.0, None, None).unwrap(),
            seed: 3,
            n_tokens: 4000,
            batch_size: 16,
            max_doc_tokens: cap,
            progress: false,
        };
        // The ids the model samples (the same documents the writer gets, same seed).
        let (mut sampled_odd, mut sampled) = (0usize, 0usize);
        sample_corpus(&ckpt.model, vocab.delimiters(), device(), &req, |d| {
            sampled_odd += d.tokens.iter().filter(|&&t| t == odd).count();
            sampled += d.tokens.len();
            Ok(d.corpus_tokens())
        })
        .unwrap();
        let sampled_share = sampled_odd as f64 / sampled as f64;
        assert!(sampled_share > 0.3 * trained_share, "the model favours the odd id ({sampled_share:.4})");
        let stem = dir.path().join(stem);
        let m = lmloop::synthetic::write_corpus(&ckpt, &stem, &req, device()).unwrap();
        assert!(m.canonical);
        assert!(m.non_canonical_share > 0.01, "sampled ids were replaced: {}", m.non_canonical_share);
        let (corpus, _) = lmloop::synthetic::load(&stem, "S", lmloop::synthetic::DAMAGED_CORPUS).unwrap();
        assert_eq!(corpus.documents.len(), m.stats.documents, "cut documents are kept apart");
        assert_eq!(corpus.tokens(), m.stats.tokens, "D is counted in canonical tokens");
        assert!(corpus.tokens() >= 4000);
        let odd_share = corpus.to_tokens().iter().filter(|&&t| t == odd).count() as f64 / corpus.tokens() as f64;
        // What remains of it is where the model's text really encodes to it (" c" before
        // a letter that completes no word).
        assert!(
            odd_share < 0.8 * sampled_share,
            "the odd id is {odd_share:.4} of the corpus, {sampled_share:.4} of the sampled ids"
        );
        let mut ended = 0;
        for d in &corpus.documents {
            let ids: Vec<u32> = d.clone().map(|i| corpus.file.get(i)).collect();
            let body = if ids.last() == Some(&eot) { &ids[..ids.len() - 1] } else { &ids[..] };
            ended += usize::from(body.len() < ids.len());
            assert_eq!(vocab.encode(&vocab.decode(body).unwrap()).unwrap(), body, "a document is its text's encoding");
        }
        assert_eq!(ended, m.stats.documents - m.stats.truncated_documents);
        // Cut documents teach no end: the end token is a target once per ended document.
        let mut s = TokenStream::new(vocab.delimiters());
        let f = s.add_file(corpus.file.clone());
        for d in &corpus.documents {
            s.push(f, d.clone());
        }
        let (_, y) = s.windows(&(0..s.window_count(32)).collect::<Vec<_>>(), 32);
        assert_eq!(y.iter().filter(|&&t| t == eot as i64).count(), ended);
        if cap == 6 {
            assert!(m.stats.truncated_documents > 0 && m.truncated_ends.len() == m.stats.truncated_documents);
        }
    }
}

/// Every corpus of a run holds canonical tokens, and generations.csv records the share
/// of sampled ids that were not.
#[test]
fn every_corpus_of_a_loop_is_canonical() {
    let dir = tiny_project();
    let root = dir.path();
    let r = lmloop(root, &["generations", "--config", "tiny.toml", "-n", "2", "--run", "canon"]);
    assert_eq!(r.0, 0, "{}", r.2);
    let vocab = Vocab::load(&root.join("corpora/real/toy/tokenizer.json")).unwrap();
    let rows = read_rows(&root.join("analysis/canon/generations.csv")).unwrap();
    for k in 1..=3u32 {
        let (corpus, m) = lmloop::synthetic::load(
            &root.join(format!("corpora/synthetic/canon/gen-{k:02}")),
            "S",
            lmloop::synthetic::DAMAGED_CORPUS,
        )
        .unwrap();
        assert!(m.canonical);
        assert_eq!(rows[k as usize - 1].synthetic_non_canonical_share, m.non_canonical_share);
        for d in &corpus.documents {
            let ids: Vec<u32> = d.clone().map(|i| corpus.file.get(i)).filter(|&t| t != vocab.eot()).collect();
            assert_eq!(
                vocab.encode(&vocab.decode(&ids).unwrap()).unwrap(),
                ids,
                "S_{k} holds a non-canonical document"
            );
        }
    }
    let csv = std::fs::read_to_string(root.join("analysis/canon/generations.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    for column in ["train_truncated_share", "train_cap_dependent", "synthetic_non_canonical_share"] {
        assert!(header.split(',').any(|c| c == column), "{column} in {header}");
    }
}
