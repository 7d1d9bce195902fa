//! Analysis: every drift measure against hand-computed values, tokens.csv and
//! vanish generations on constructed corpora, `inspect tails`, the HTML reports
//! (parsed for well-formedness and one plot per promised figure), and the
//! refusals a user would meet (missing run, different tokenizers).
use lmloop::analysis::{
    compare, distinct_ngrams, entropy_nats, inspect_tails, jensen_shannon, kl_add_half, measure_corpus,
    repetition_rate, report, survival_by_bucket, tail_mass, tail_set, total_variation, update_run_analysis, zipf_slope,
    CompareArgs, Diversity, Reference, ReportArgs, TailsArgs, TokenTable,
};
use lmloop::layout::Layout;
use lmloop::tokens::write_tokens;
use std::collections::HashSet;
use std::path::PathBuf;

fn close(actual: f64, expected: f64, tolerance: f64) -> bool {
    (actual - expected).abs() <= tolerance
}

macro_rules! assert_close {
    ($actual:expr, $expected:expr) => {{
        let (a, e) = ($actual, $expected);
        assert!(close(a, e, 1e-12), "{} = {a}, expected {e}", stringify!($actual));
    }};
}

// ---------------------------------------------------------------- measures

#[test]
fn kl_with_add_half_smoothing_matches_hand_computation() {
    // p = (3.5, 1.5, 0.5) / 5.5 and q = (1.5, 1.5, 2.5) / 5.5 after adding ½ to each
    // of the 3 entries; the zero count of token 2 in p stays finite.
    let (p, q) = ([3u64, 1, 0], [1u64, 1, 2]);
    assert_close!(kl_add_half(&p, &q), 0.392_877_010_025_120_5);
    assert_close!(kl_add_half(&q, &p), 0.500_481_452_818_99);
    // Both zero in one entry: smoothing still gives a finite, non-zero divergence.
    assert!(kl_add_half(&[4, 0, 0], &[0, 4, 0]).is_finite());
}

#[test]
fn identical_distributions_have_zero_divergence() {
    let counts = [7u64, 0, 3, 1, 0, 9];
    assert_eq!(kl_add_half(&counts, &counts), 0.0);
    assert_eq!(jensen_shannon(&counts, &counts), 0.0);
    assert_eq!(total_variation(&counts, &counts), 0.0);
    // Same proportions, different sizes: the unsmoothed measures see no difference.
    let doubled: Vec<u64> = counts.iter().map(|c| 2 * c).collect();
    assert!(jensen_shannon(&counts, &doubled) < 1e-15);
    assert!(total_variation(&counts, &doubled) < 1e-15);
}

#[test]
fn jensen_shannon_total_variation_and_entropy_match_hand_computation() {
    // P = (.75, .25, 0), Q = (.25, .25, .5), M = (.5, .25, .25):
    // JS = ½(.75 ln 1.5) + ½(.25 ln .5 + .5 ln 2).
    assert_close!(jensen_shannon(&[3, 1, 0], &[1, 1, 2]), 0.238_692_813_110_554_8);
    assert_close!(total_variation(&[3, 1, 0], &[1, 1, 2]), 0.5);
    // Disjoint supports: the maxima.
    assert_close!(jensen_shannon(&[5, 0], &[0, 2]), std::f64::consts::LN_2);
    assert_close!(total_variation(&[5, 0], &[0, 2]), 1.0);
    // (.25, .25, .5): 2·(.25 ln 4) + .5 ln 2; zero counts contribute nothing.
    assert_close!(entropy_nats(&[1, 1, 2, 0]), 1.039_720_770_839_917_9);
    assert_eq!(entropy_nats(&[0, 5, 0]), 0.0);
}

#[test]
fn tail_set_takes_the_rarest_half_of_the_real_mass_with_ties_together() {
    // Total 16: counts 0, 1, 1, 2, 4 hold 8 = exactly 50%, so they are in; 8 is out.
    assert_eq!(tail_set(&[0, 1, 1, 2, 4, 8]), vec![true, true, true, true, true, false]);
    // Total 10: 1 is in (10%); the three 2s together reach 70%, so all three are out,
    // even though one of them alone would still fit under 50%.
    assert_eq!(tail_set(&[2, 2, 2, 1, 3]), vec![false, false, false, true, false]);
    // One group above 50%: only unseen tokens remain in the tail set.
    assert_eq!(tail_set(&[5, 5, 5, 5, 0]), vec![false, false, false, false, true]);
    // Tail mass: share of a corpus's tokens in the tail set.
    let tail = tail_set(&[1, 1, 3, 3]);
    assert_eq!(tail, vec![true, true, false, false]);
    assert_close!(tail_mass(&tail, &[2, 0, 1, 1]), 0.5);
    assert_close!(tail_mass(&tail, &[1, 1, 1, 1]), 0.5);
    assert_close!(tail_mass(&tail, &[0, 0, 3, 9]), 0.0);
}

#[test]
fn distinct_ngrams_stay_inside_documents() {
    // Documents [5 6 5 6], [5 6], [7]; end-of-text is 0.
    let tokens = [5, 6, 5, 6, 0, 5, 6, 0, 7];
    // 2-grams 56 65 56 | 56: 4 in all, 2 unique. The pairs (6,0) and (0,5) never count.
    let d2 = distinct_ngrams(&tokens, 0, 2, 8);
    assert_eq!((d2.part, d2.total), (2, 4));
    // 3-grams 565 656: both unique.
    let d3 = distinct_ngrams(&tokens, 0, 3, 8);
    assert_eq!((d3.part, d3.total), (2, 2));
    let diversity = Diversity::measure(&tokens, 0, 8);
    assert_eq!(diversity.documents, 3);
    assert_close!(diversity.mean_document_tokens, 7.0 / 3.0);
    assert_close!(diversity.distinct_2.ratio(), 0.5);
    // No 4-gram anywhere but in the first document, which has one: nothing repeats.
    assert_eq!((diversity.repetition_4.part, diversity.repetition_4.total), (0, 1));
    // Too short for any 3-gram: undefined, not 0 or 1.
    assert!(distinct_ngrams(&[1, 2, 0, 3], 0, 3, 8).ratio().is_nan());
}

#[test]
fn documents_count_empty_ones_and_a_trailing_run() {
    // [5 6] [] [7]: an empty document (two end-of-text in a row) has length 0; the
    // trailing [7] without end-of-text is a document too.
    let d = Diversity::measure(&[5, 6, 0, 0, 7], 0, 8);
    assert_eq!(d.documents, 3);
    assert_close!(d.mean_document_tokens, 1.0);
    // Ending with end-of-text adds no empty document.
    assert_eq!(Diversity::measure(&[5, 6, 0, 7, 0], 0, 8).documents, 2);
}

#[test]
fn repetition_rate_counts_repeats_within_a_document_only() {
    // Document 1: 4-grams 1234 2341 3412 4123 1234 2341: 6, two of them repeats.
    // Document 2: 1234 once: it occurred in document 1, but that does not count.
    let tokens = [1, 2, 3, 4, 1, 2, 3, 4, 1, 0, 1, 2, 3, 4, 0];
    let r = repetition_rate(&tokens, 0, 4, 8);
    assert_eq!((r.part, r.total), (2, 7));
    assert_close!(r.ratio(), 2.0 / 7.0);
}

/// The same n-gram statistics by the slowest obvious method.
fn brute_force(tokens: &[u32], eot: u32, n: usize) -> (u64, u64, u64) {
    let mut unique = HashSet::new();
    let (mut total, mut repeats) = (0u64, 0u64);
    for doc in tokens.split(|&t| t == eot) {
        let mut seen_here = HashSet::new();
        for w in doc.windows(n) {
            total += 1;
            unique.insert(w.to_vec());
            if !seen_here.insert(w.to_vec()) {
                repeats += 1;
            }
        }
    }
    (unique.len() as u64, total, repeats)
}

#[test]
fn packed_ngram_counting_agrees_with_brute_force_for_every_key_width() {
    // Vocabularies chosen so that 2/3/4-grams take each path: a bitset (few bits),
    // a radix sort (up to 64 bits) and 128-bit keys (beyond 64 bits).
    for (vocab, seed) in [(12usize, 1u64), (2048, 2), (1 << 22, 3)] {
        let mut state = seed;
        let tokens: Vec<u32> = (0..60_000)
            .map(|_| {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                // Mostly a small alphabet so that n-grams repeat, but ids up to vocab-1 occur.
                let r = (state >> 33) as usize;
                if r.is_multiple_of(50) {
                    0
                } else if r.is_multiple_of(7) {
                    (r % vocab) as u32
                } else {
                    (r % 9) as u32 + 1
                }
            })
            .collect();
        for n in [2, 3, 4] {
            let (unique, total, repeats) = brute_force(&tokens, 0, n);
            let d = distinct_ngrams(&tokens, 0, n, vocab);
            assert_eq!((d.part, d.total), (unique, total), "distinct-{n}, vocab {vocab}");
            let r = repetition_rate(&tokens, 0, n, vocab);
            assert_eq!((r.part, r.total), (repeats, total), "repetition of {n}-grams, vocab {vocab}");
        }
    }
}

#[test]
fn zipf_slope_recovers_exact_power_laws() {
    // 720 / r for r = 1..6 is an exact integer power law with exponent 1; the token
    // order and unseen tokens do not matter.
    assert_close!(zipf_slope(&[240, 0, 720, 144, 360, 0, 120, 180]), -1.0);
    // 3600 / r²: slope −2.
    assert!(close(zipf_slope(&[3600, 900, 400, 225, 144, 100]), -2.0, 1e-12));
    assert!(zipf_slope(&[0, 9, 0]).is_nan(), "one seen token has no slope");
}

#[test]
fn drift_row_of_the_real_split_against_itself() {
    let real: Vec<u32> = [3, 1, 2, 3, 0, 3, 3, 1, 0, 2, 3, 3, 0].to_vec();
    let counts = lmloop::analysis::count_tokens(&real, 5).unwrap();
    let reference = Reference::new(counts.clone()).unwrap();
    let row = measure_corpus(&reference, &real, 0, None).unwrap();
    assert_eq!((row.generation.as_str(), row.corpus.as_str()), ("real", "real-train"));
    assert_eq!((row.tokens, row.documents, row.distinct_tokens), (13, 3, 4));
    for value in [row.kl_real_gen_add_half, row.kl_gen_real_add_half, row.js_divergence, row.total_variation] {
        assert_eq!(value, 0.0);
    }
    assert!(row.tail_mass <= 0.5);
    assert_close!(row.entropy_nats, entropy_nats(&counts));
    // A synthetic corpus is labelled by the generation that sampled it.
    let row = measure_corpus(&reference, &[3, 3, 0], 0, Some(2)).unwrap();
    assert_eq!((row.generation.as_str(), row.corpus.as_str()), ("1", "gen-02"));
    assert!(row.kl_real_gen_add_half > 0.0 && row.js_divergence > 0.0);
}

#[test]
fn bad_corpora_get_a_clear_error() {
    let reference = Reference::new(vec![1, 1, 1]).unwrap();
    let err = measure_corpus(&reference, &[1, 7], 0, Some(1)).unwrap_err().to_string();
    assert!(err.contains("token id 7 is outside the vocabulary of 3"), "{err}");
    let err = measure_corpus(&reference, &[], 0, Some(1)).unwrap_err().to_string();
    assert!(err.contains("gen-01 is empty"), "{err}");
    let err = Reference::new(vec![0, 0]).unwrap_err().to_string();
    assert!(err.contains("real training split is empty"), "{err}");
}

// ---------------------------------------------------------------- fake runs

const VOCAB: usize = 8;
const EOT: u32 = 0;

fn token_texts() -> Vec<String> {
    ["<|endoftext|>", "the", " cat", "\n", "a,b", "\"q\"", "rare", "never"].map(str::to_string).to_vec()
}

/// Writes a fake run the way the generations loop leaves it, then runs the analysis.
/// `synthetic[j]` is S_{j+1}. Returns the report path.
fn fake_run(
    layout: &Layout,
    run: &str,
    real: &[u32],
    synthetic: &[Vec<u32>],
    tokenizer_sha256: &str,
    policy: &str,
) -> PathBuf {
    let corpus = layout.real_corpus("toy");
    std::fs::create_dir_all(&corpus).unwrap();
    let real_path = corpus.join("train.bin");
    write_tokens(&real_path, real, VOCAB).unwrap();
    let mut files = Vec::new();
    for (j, tokens) in synthetic.iter().enumerate() {
        let k = j as u32 + 1;
        let stem = layout.synthetic_corpus(run, k);
        let bin = PathBuf::from(format!("{}.bin", stem.display()));
        write_tokens(&bin, tokens, VOCAB).unwrap();
        let text: String = tokens
            .iter()
            .map(|&t| if t == EOT { "\n<|endoftext|>\n".to_string() } else { token_texts()[t as usize].clone() })
            .collect();
        std::fs::write(format!("{}.txt", stem.display()), format!("<b>S_{k} & more</b>{text}")).unwrap();
        files.push((k, bin));
    }
    let analysis = layout.analysis(run);
    std::fs::create_dir_all(&analysis).unwrap();
    std::fs::write(
        analysis.join("run.toml"),
        format!("[data]\ncorpus = \"toy\"\n\n[sample]\ntemperature = 0.8\n\n[generations]\npolicy = \"{policy}\"\nnote = \"<config & stuff>\"\n"),
    )
    .unwrap();
    std::fs::write(
        analysis.join("corpus.json"),
        format!("{{\"corpus\": \"toy\", \"tokenizer_sha256\": \"{tokenizer_sha256}\", \"vocab_size\": {VOCAB}}}"),
    )
    .unwrap();
    let mut csv = String::from("generation,policy,real_fraction,temperature,seed,train_tokens,real_tokens,synthetic_tokens,held_out_loss,held_out_perplexity,synthetic_unigram_entropy,synthetic_distinct_tokens,train_seconds,sample_seconds,eval_seconds\n");
    for k in 0..synthetic.len() {
        let loss = 1.5 + 0.1 * k as f64;
        csv.push_str(&format!("{k},{policy},,0.8,7,100,100,0,{loss},{},1.0,5,1.0,1.0,1.0\n", loss.exp()));
    }
    std::fs::write(analysis.join("generations.csv"), csv).unwrap();
    let real_file = lmloop::tokens::TokenFile::open(&real_path).unwrap();
    update_run_analysis(layout, run, &real_file, &files, &token_texts(), EOT).unwrap()
}

/// Real split: token t (1..=5) appears t times, token 6 ("rare") once, token 7 never.
fn real_tokens() -> Vec<u32> {
    vec![1, 2, 2, 0, 3, 3, 3, 0, 4, 4, 4, 4, 0, 5, 5, 5, 5, 5, 6, 0]
}

/// S_1: token 6 gone; S_2: tokens 4 and 6 gone; S_3: 6 is back, 4 and 5 gone, 7 appears.
fn synthetic_tokens() -> Vec<Vec<u32>> {
    vec![vec![1, 2, 3, 0, 4, 5, 5, 0, 1, 1, 0], vec![1, 1, 2, 0, 3, 5, 0, 2, 0], vec![1, 2, 3, 0, 6, 7, 7, 0, 1, 0]]
}

#[test]
fn tokens_csv_holds_counts_and_first_vanish_generations() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    fake_run(&layout, "r", &real_tokens(), &synthetic_tokens(), "abc", "replace");
    let mut reader = csv::Reader::from_path(layout.analysis("r").join("tokens.csv")).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_string).collect();
    assert_eq!(header, ["token_id", "token_text", "real_count", "gen_01", "gen_02", "gen_03", "vanish_generation"]);
    let rows: Vec<Vec<String>> = reader.records().map(|r| r.unwrap().iter().map(str::to_string).collect()).collect();
    assert_eq!(rows.len(), VOCAB);
    let row = |t: usize| rows[t].iter().map(String::as_str).collect::<Vec<_>>();
    assert_eq!(row(0), ["0", "<|endoftext|>", "4", "3", "3", "3", ""]);
    // Token 3 is a newline: escaped onto one line. Never vanishes.
    assert_eq!(row(3), ["3", "\\n", "3", "1", "1", "1", ""]);
    // Token 4 vanishes in S_2 and stays gone; token 5 vanishes in S_3.
    assert_eq!(row(4), ["4", "a,b", "4", "1", "0", "0", "2"]);
    assert_eq!(row(5), ["5", "\"q\"", "5", "2", "1", "0", "3"]);
    // Token 6 vanishes in S_1 and comes back in S_3: its vanish generation stays 1.
    assert_eq!(row(6), ["6", "rare", "1", "0", "0", "1", "1"]);
    // Token 7 is unseen in the real split: it cannot vanish, even when absent.
    assert_eq!(row(7), ["7", "never", "0", "0", "0", "2", ""]);
}

#[test]
fn drift_csv_has_the_real_row_then_one_row_per_generation() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    fake_run(&layout, "r", &real_tokens(), &synthetic_tokens(), "abc", "replace");
    let text = std::fs::read_to_string(layout.analysis("r").join("drift.csv")).unwrap();
    let header = text.lines().next().unwrap();
    for column in [
        "kl_real_gen_add_half",
        "kl_gen_real_add_half",
        "js_divergence",
        "total_variation",
        "entropy_nats",
        "distinct_tokens",
        "tail_mass",
        "distinct_2",
        "distinct_3",
        "mean_document_tokens",
        "repetition_rate_4gram",
        "zipf_slope",
    ] {
        assert!(header.split(',').any(|c| c == column), "drift.csv lacks {column}: {header}");
    }
    let rows = lmloop::analysis::read_drift_csv(&layout.analysis("r").join("drift.csv")).unwrap();
    let labels: Vec<(&str, &str)> = rows.iter().map(|r| (r.generation.as_str(), r.corpus.as_str())).collect();
    assert_eq!(labels, [("real", "real-train"), ("0", "gen-01"), ("1", "gen-02"), ("2", "gen-03")]);
    // Each row is the measure of its own corpus against the real counts.
    let reference = Reference::new(lmloop::analysis::count_tokens(&real_tokens(), VOCAB).unwrap()).unwrap();
    for (j, tokens) in synthetic_tokens().iter().enumerate() {
        let expected = measure_corpus(&reference, tokens, EOT, Some(j as u32 + 1)).unwrap();
        let row = &rows[j + 1];
        assert_close!(row.kl_real_gen_add_half, expected.kl_real_gen_add_half);
        assert_eq!(row.distinct_tokens, expected.distinct_tokens);
        assert_eq!(row.documents, expected.documents);
    }
    // S_2 holds tokens 0, 1, 2, 3 and 5.
    assert_eq!(rows[2].distinct_tokens, 5);
}

#[test]
fn cached_drift_rows_are_reused_only_for_unchanged_corpora() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    let mut synthetic = synthetic_tokens();
    fake_run(&layout, "r", &real_tokens(), &synthetic, "abc", "replace");
    let drift_csv = layout.analysis("r").join("drift.csv");
    let first = std::fs::read_to_string(&drift_csv).unwrap();
    // Rerunning on the same corpora gives the same table.
    fake_run(&layout, "r", &real_tokens(), &synthetic, "abc", "replace");
    assert_eq!(std::fs::read_to_string(&drift_csv).unwrap(), first);
    // A regenerated S_2 is measured again, not served from its cache entry.
    let cache = layout.analysis("r").join("drift").join("gen-02.toml");
    assert!(cache.exists());
    synthetic[1] = vec![7, 7, 7, 0];
    fake_run(&layout, "r", &real_tokens(), &synthetic, "abc", "replace");
    let rows = lmloop::analysis::read_drift_csv(&drift_csv).unwrap();
    assert_eq!(rows[2].distinct_tokens, 2);
    assert_eq!(rows[2].tokens, 4);
}

#[test]
fn update_refuses_gaps_and_bad_token_files() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    let real_path = dir.path().join("train.bin");
    write_tokens(&real_path, &real_tokens(), VOCAB).unwrap();
    let real = lmloop::tokens::TokenFile::open(&real_path).unwrap();
    let s = dir.path().join("s.bin");
    write_tokens(&s, &[1, 2, 0], VOCAB).unwrap();
    let err = update_run_analysis(&layout, "r", &real, &[(2, s.clone())], &token_texts(), EOT).unwrap_err();
    assert!(err.to_string().contains("S_1, S_2, … in order without gaps"), "{err:#}");
    let err = update_run_analysis(&layout, "r", &real, &[(1, s)], &token_texts()[..3], EOT).unwrap_err();
    assert!(format!("{err:#}").contains("outside the vocabulary of 3"), "{err:#}");
    let err = update_run_analysis(&layout, "r", &real, &[(1, dir.path().join("missing.bin"))], &token_texts(), EOT)
        .unwrap_err();
    assert!(format!("{err:#}").contains("missing.bin"), "{err:#}");
}

// ---------------------------------------------------------------- tails

/// Token t (1..=4) is seen t times in the real split and present in S_k only while
/// k < t, so it vanishes exactly in S_t: vanish generation = real count.
fn linear_vanishing_run(layout: &Layout) {
    let mut real = Vec::new();
    for t in 1..=4u32 {
        real.extend(std::iter::repeat_n(t, t as usize));
        real.push(EOT);
    }
    let synthetic: Vec<Vec<u32>> = (1..=4u32)
        .map(|k| {
            let mut s: Vec<u32> = (1..=4u32).filter(|&t| k < t).collect();
            s.extend([5, EOT]);
            s
        })
        .collect();
    fake_run(layout, "lin", &real, &synthetic, "abc", "replace");
}

#[test]
fn inspect_tails_lists_vanished_tokens_and_fits_count_against_vanish_generation() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    linear_vanishing_run(&layout);
    let text = inspect_tails(&layout, &TailsArgs { run: "lin".into(), top: 30, min_real_count: 1 }).unwrap();
    // Sorted by real count, most common first: "a,b" (4×), "\n" (3×), " cat" (2×), "the".
    let order: Vec<usize> = ["\"a,b\"", "\"\\n\"", "\" cat\"", "\"the\""]
        .iter()
        .map(|t| text.find(t).unwrap_or_else(|| panic!("{t} missing:\n{text}")))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "not sorted by real count:\n{text}");
    // End-of-text (seen 4 times) is the one token that never vanishes.
    assert!(text.contains("4 of 5 tokens with real count ≥ 1 vanished"), "{text}");
    // One token vanishes first in each of S_1..S_4.
    for k in 1..=4 {
        assert!(
            text.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == [&format!("S_{k}"), "1", &k.to_string()]),
            "S_{k} line:\n{text}"
        );
    }
    assert!(text.contains("vanish generation ≈ 1.0000 × real count + 0.0000   (R² 1.000, 4 tokens)"), "{text}");
    // The threshold drops tokens seen fewer times; the top limit cuts the list.
    let text = inspect_tails(&layout, &TailsArgs { run: "lin".into(), top: 1, min_real_count: 3 }).unwrap();
    assert!(
        text.contains("2 of 3 tokens with real count ≥ 3 vanished") && text.contains("(R² 1.000, 2 tokens)"),
        "{text}"
    );
    assert!(text.contains("\"a,b\"") && !text.contains("\"\\n\""), "top 1 lists one token:\n{text}");
}

#[test]
fn survival_buckets_merge_the_common_tokens_past_eight_buckets() {
    // Real counts 1, 2, 4, …, 2^10: eleven power-of-two buckets, one token each.
    let real: Vec<u64> = (0..11).map(|b| 1u64 << b).collect();
    let texts: Vec<String> = (0..11).map(|i| format!("t{i}")).collect();
    // S_1 keeps the tokens with even index only.
    let s1: Vec<u64> = (0..11).map(|i| u64::from(i % 2 == 0)).collect();
    let table = TokenTable::new(&texts, real, vec![s1]).unwrap();
    let buckets = survival_by_bucket(&table);
    let labels: Vec<&str> = buckets.iter().map(|b| b.label.as_str()).collect();
    assert_eq!(labels, ["1", "2-3", "4-7", "8-15", "16-31", "32-63", "64-127", "128+"]);
    // 128+ holds counts 128..1024 (indices 7..=10): indices 8 and 10 survive.
    let open = buckets.last().unwrap();
    assert_eq!((open.tokens, open.present.clone()), (4, vec![1.0, 0.5]));
}

#[test]
fn survival_buckets_follow_powers_of_two() {
    let table = TokenTable::new(
        &["e", "a", "b", "c", "d"].map(str::to_string),
        vec![0, 1, 2, 3, 5],
        vec![vec![1, 0, 1, 1, 1], vec![1, 0, 0, 1, 1]],
    )
    .unwrap();
    let buckets = survival_by_bucket(&table);
    let summary: Vec<(&str, usize, Vec<f64>)> =
        buckets.iter().map(|b| (b.label.as_str(), b.tokens, b.present.clone())).collect();
    assert_eq!(
        summary,
        [("1", 1, vec![1.0, 0.0, 0.0]), ("2-3", 2, vec![1.0, 1.0, 0.5]), ("4-7", 1, vec![1.0, 1.0, 1.0])]
    );
}

// ---------------------------------------------------------------- reports

/// Checks that tags are balanced and properly nested (void elements and `/>`
/// aside), that comments and declarations close, and that no raw `<` or bare
/// `&` sits in text. Returns the opening tags in order, with their attributes.
fn parse_html(html: &str) -> Result<Vec<(String, String)>, String> {
    const VOID: [&str; 13] =
        ["area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"];
    let mut stack: Vec<String> = Vec::new();
    let mut opened = Vec::new();
    let mut rest = html;
    let mut offset = 0;
    while let Some(lt) = rest.find('<') {
        check_text(&rest[..lt]).map_err(|e| format!("{e} at byte {}", offset + lt))?;
        let tag_text = &rest[lt..];
        let consumed = if let Some(body) = tag_text.strip_prefix("<!--") {
            body.find("-->").ok_or("unclosed comment")? + 7
        } else if tag_text.starts_with("<!") || tag_text.starts_with("<?") {
            tag_text.find('>').ok_or("unclosed declaration")? + 1
        } else {
            // Find the closing '>' outside quoted attribute values.
            let mut quote = None;
            let end = tag_text
                .char_indices()
                .skip(1)
                .find(|&(_, c)| match quote {
                    Some(q) if c == q => {
                        quote = None;
                        false
                    }
                    Some(_) => false,
                    None if c == '"' || c == '\'' => {
                        quote = Some(c);
                        false
                    }
                    None => c == '>',
                })
                .ok_or_else(|| format!("unclosed tag at byte {}", offset + lt))?
                .0;
            let inner = &tag_text[1..end];
            if let Some(name) = inner.strip_prefix('/') {
                let name = name.trim().to_ascii_lowercase();
                match stack.pop() {
                    Some(open) if open == name => {}
                    other => return Err(format!("</{name}> closes {other:?} at byte {}", offset + lt)),
                }
            } else {
                let name_end = inner.find(|c: char| c.is_whitespace() || c == '/').unwrap_or(inner.len());
                let name = inner[..name_end].to_ascii_lowercase();
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':') {
                    return Err(format!("bad tag name {name:?} at byte {}", offset + lt));
                }
                opened.push((name.clone(), inner[name_end..].to_string()));
                if !inner.ends_with('/') && !VOID.contains(&name.as_str()) {
                    stack.push(name);
                }
            }
            end + 1
        };
        offset += lt + consumed;
        rest = &tag_text[consumed..];
    }
    check_text(rest)?;
    if !stack.is_empty() {
        return Err(format!("unclosed elements {stack:?}"));
    }
    Ok(opened)
}

fn check_text(text: &str) -> Result<(), String> {
    for (i, _) in text.match_indices('&') {
        let entity = &text[i + 1..];
        let end = entity.find(';').ok_or("bare &")?;
        let name = &entity[..end];
        let named = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric());
        let numeric = name.starts_with('#') && name.len() > 1 && name[1..].chars().all(|c| c.is_ascii_digit());
        if !(named || numeric) {
            return Err(format!("bad entity &{name};"));
        }
    }
    Ok(())
}

#[test]
fn the_tag_balance_checker_rejects_broken_html() {
    assert!(parse_html("<p><b>x</b></p>").is_ok());
    assert!(parse_html("<p><b>x</p></b>").is_err());
    assert!(parse_html("<p>x").is_err());
    assert!(parse_html("<p>a & b</p>").is_err());
    assert!(parse_html("<p title=\"a>b\">x<br></p>").is_ok());
}

/// The ids of the `<figure>` elements and how many `<svg>` each holds.
fn figures(html: &str) -> Vec<(String, usize)> {
    let tags = parse_html(html).unwrap_or_else(|e| panic!("report is not well-formed: {e}"));
    let mut out: Vec<(String, usize)> = Vec::new();
    for (name, attributes) in tags {
        if name == "figure" {
            let id = attributes.split("id=\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or("").to_string();
            out.push((id, 0));
        } else if name == "svg" {
            out.last_mut().expect("an svg outside any figure").1 += 1;
        }
    }
    out
}

#[test]
fn report_is_well_formed_html_with_one_plot_per_figure() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    fake_run(&layout, "r", &real_tokens(), &synthetic_tokens(), "abc", "replace");
    let path = report(&layout, &ReportArgs { run: "r".into() }).unwrap();
    assert_eq!(path, layout.analysis("r").join("report.html"));
    let html = std::fs::read_to_string(&path).unwrap();
    let promised = [
        "perplexity",
        "rank-frequency",
        "survival",
        "vanished",
        "vanish-vs-count",
        "drift-divergence",
        "drift-entropy",
        "drift-distinct-tokens",
        "drift-tail-mass",
        "drift-distinct-ngrams",
        "drift-document-length",
        "drift-repetition",
        "drift-zipf-slope",
    ];
    let found = figures(&html);
    let expected: Vec<(String, usize)> = promised.iter().map(|id| (format!("fig-{id}"), 1)).collect();
    assert_eq!(found, expected);
    for id in promised {
        for ext in ["svg", "png"] {
            let plot = layout.plots("r").join(format!("{id}.{ext}"));
            assert!(
                std::fs::metadata(&plot).map(|m| m.len() > 100).unwrap_or(false),
                "{} missing or empty",
                plot.display()
            );
        }
    }
    // Samples and config are escaped, not interpreted.
    assert!(html.contains("&lt;b&gt;S_1 &amp; more&lt;/b&gt;"));
    assert!(html.contains("&lt;config &amp; stuff&gt;"));
    assert!(!html.contains("<script"), "no scripts");
    assert!(
        !html.contains("<link") && !html.contains("<img") && !html.contains("src="),
        "nothing fetched from outside the file"
    );
    // Every generation's sample has its heading.
    for k in 1..=3 {
        assert!(html.contains(&format!("S_{k} (sampled by generation {})", k - 1)));
    }
}

#[test]
fn report_of_a_run_without_synthetic_corpora_still_has_every_figure() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    fake_run(&layout, "new", &real_tokens(), &[], "abc", "replace");
    let html = std::fs::read_to_string(layout.analysis("new").join("report.html")).unwrap();
    let found = figures(&html);
    assert_eq!(found.len(), 13);
    assert!(found.iter().all(|(_, svgs)| *svgs == 1), "{found:?}");
    let text = inspect_tails(&layout, &TailsArgs { run: "new".into(), top: 30, min_real_count: 1 }).unwrap();
    assert!(text.contains("no synthetic corpus yet"), "{text}");
}

#[test]
fn token_texts_are_escaped_onto_one_readable_line() {
    assert_eq!(lmloop::analysis::escape_token(" the"), " the");
    assert_eq!(lmloop::analysis::escape_token("a\nb\t\r\\\u{1b}é"), "a\\nb\\t\\r\\\\\\u{1b}é");
}

#[test]
fn compare_overlays_runs_and_names_their_settings() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    fake_run(&layout, "a", &real_tokens(), &synthetic_tokens(), "abc", "replace");
    fake_run(&layout, "b", &real_tokens(), &synthetic_tokens()[..2], "abc", "accumulate");
    let path = compare(&layout, &CompareArgs { runs: vec!["a".into(), "b".into()], out: None }).unwrap();
    assert_eq!(path, dir.path().join("analysis").join("compare-a-b").join("report.html"));
    let html = std::fs::read_to_string(&path).unwrap();
    let found = figures(&html);
    assert!(found.len() >= 16 && found.iter().all(|(_, svgs)| *svgs == 1), "{found:?}");
    assert!(html.contains("a (replace, T=0.8)") && html.contains("b (accumulate, T=0.8)"), "legend names policies");
    let out = dir.path().join("elsewhere");
    let path = compare(&layout, &CompareArgs { runs: vec!["a".into(), "b".into()], out: Some(out.clone()) }).unwrap();
    assert_eq!(path, out.join("report.html"));
    assert!(out.join("plots").join("perplexity.svg").exists());
}

#[test]
fn compare_refuses_runs_with_different_tokenizers() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    fake_run(&layout, "a", &real_tokens(), &synthetic_tokens(), "aaaa1111", "replace");
    fake_run(&layout, "b", &real_tokens(), &synthetic_tokens(), "bbbb2222", "replace");
    let err = compare(&layout, &CompareArgs { runs: vec!["a".into(), "b".into()], out: None }).unwrap_err().to_string();
    assert_eq!(
        err,
        "runs 'a' and 'b' used different tokenizers (tokenizer_sha256 aaaa1111 vs bbbb2222), so their token statistics cannot be compared"
    );
    assert!(!dir.path().join("analysis").join("compare-a-b").exists(), "nothing written");
    std::fs::remove_file(layout.analysis("b").join("corpus.json")).unwrap();
    let err = compare(&layout, &CompareArgs { runs: vec!["a".into(), "b".into()], out: None }).unwrap_err().to_string();
    assert!(err.contains("run 'b' has no") && err.contains("corpus.json"), "{err}");
    let err = compare(&layout, &CompareArgs { runs: vec!["a".into(), "a".into()], out: None }).unwrap_err().to_string();
    assert!(err.contains("named twice"), "{err}");
}

#[test]
fn missing_runs_and_files_get_one_clear_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    fake_run(&layout, "done", &real_tokens(), &synthetic_tokens(), "abc", "replace");
    let err = report(&layout, &ReportArgs { run: "nope".into() }).unwrap_err().to_string();
    assert!(err.starts_with("no run named 'nope'") && err.contains("known runs: done"), "{err}");
    let err =
        inspect_tails(&layout, &TailsArgs { run: "nope".into(), top: 30, min_real_count: 1 }).unwrap_err().to_string();
    assert!(err.starts_with("no run named 'nope'"), "{err}");
    let err =
        compare(&layout, &CompareArgs { runs: vec!["done".into(), "nope".into()], out: None }).unwrap_err().to_string();
    assert!(err.starts_with("no run named 'nope'"), "{err}");
    // A run folder without analysed generations yet.
    std::fs::create_dir_all(layout.analysis("fresh")).unwrap();
    let err = report(&layout, &ReportArgs { run: "fresh".into() }).unwrap_err().to_string();
    assert!(err.contains("tokens.csv is missing"), "{err}");
    let err =
        inspect_tails(&layout, &TailsArgs { run: "fresh".into(), top: 30, min_real_count: 1 }).unwrap_err().to_string();
    assert!(err.contains("tokens.csv is missing"), "{err}");
    // A malformed table names its file and row.
    let tokens_csv = layout.analysis("done").join("tokens.csv");
    let mut text = std::fs::read_to_string(&tokens_csv).unwrap();
    text = text.replacen("\n2,", "\n2,x,y,", 1);
    std::fs::write(&tokens_csv, text).unwrap();
    let err = format!(
        "{:#}",
        inspect_tails(&layout, &TailsArgs { run: "done".into(), top: 30, min_real_count: 1 }).unwrap_err()
    );
    assert!(err.contains("tokens.csv") && err.contains("row 4"), "{err}");
}

#[test]
fn drift_benchmark_runs_on_a_small_corpus() {
    let seconds = lmloop::analysis::bench_drift(50_000).unwrap();
    assert!(seconds.is_finite() && seconds > 0.0);
    let corpus = lmloop::analysis::zipf_corpus(20_000, 2048, 1.1, 200.0, 9);
    // End-of-text about every 200 tokens, and the most common token is rank 1.
    let eots = corpus.iter().filter(|&&t| t == 0).count();
    assert!((50..=150).contains(&eots), "{eots} documents");
    let counts = lmloop::analysis::count_tokens(&corpus, 2048).unwrap();
    assert!(counts[1] > counts[2] && counts[2] > counts[10]);
}
