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
    }
    // Generation 0 is the reference: its own corpus scores the same under both.
    assert_eq!(rows[0].reference_perplexity_median, rows[0].self_perplexity_median);
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
