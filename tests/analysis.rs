//! Analysis: every drift measure against hand-computed values, tokens.csv and
//! vanish generations on constructed corpora, `inspect tails`, the HTML reports
//! (parsed for well-formedness and one plot per promised figure), and the
//! refusals a user would meet (missing run, different tokenizers).
use lmloop::analysis::{
    compare, distinct_ngrams, entropy_nats, inspect_tails, jensen_shannon, kl_add_half, measure_corpus,
    measure_noise_floor, null_expected_spells, null_presence_probability, null_reappearance_probability,
    read_loss_by_frequency, repetition_rate, report, survival_by_bucket, tail_mass, tail_set, total_variation,
    update_run_analysis, update_run_measures, zipf_slope, Absence, Diversity, RealReference, Reference, ReferenceInfo,
    TokenTable,
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
    write_fake_run(layout, run, synthetic, tokenizer_sha256, policy);
    update_run_analysis(
        layout,
        run,
        &real_reference(real),
        &synthetic_files(layout, run, synthetic.len()),
        &token_texts(),
        EOT,
    )
    .unwrap()
}

/// D of the fake runs: the synthetic corpora hold about 10 tokens.
const GENERATION_SIZE: usize = 10;

/// A real sample of D = 10 tokens, different from R's own counts.
fn noise_floor_tokens() -> Vec<u32> {
    vec![1, 2, 3, 0, 4, 4, 5, 5, 5, 0]
}

fn real_reference(real: &[u32]) -> RealReference {
    RealReference {
        tokens: real.to_vec(),
        noise_floor: noise_floor_tokens(),
        noise_floor_source: "a toy sample".into(),
        null: None,
        generation_size: GENERATION_SIZE,
        name: format!("toy/train (R, {} tokens)", real.len()),
    }
}

fn synthetic_files(layout: &Layout, run: &str, k_max: usize) -> Vec<(u32, PathBuf)> {
    (1..=k_max as u32)
        .map(|k| (k, PathBuf::from(format!("{}.bin", layout.synthetic_corpus(run, k).display()))))
        .collect()
}

/// Everything the loop leaves before the analysis: corpora, run.toml, corpus.json and
/// generations.csv (with the sampler columns).
fn write_fake_run(layout: &Layout, run: &str, synthetic: &[Vec<u32>], tokenizer_sha256: &str, policy: &str) {
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
    let mut csv = String::from("generation,policy,real_fraction,temperature,seed,train_tokens,real_tokens,synthetic_tokens,held_out_loss,held_out_perplexity,synthetic_unigram_entropy,synthetic_distinct_tokens,synthetic_documents,synthetic_truncation_share,synthetic_mean_document_tokens,train_epochs,budget,train_seconds,sample_seconds,eval_seconds\n");
    for k in 0..synthetic.len() {
        let loss = 1.5 + 0.1 * k as f64;
        let truncation = 0.125 * k as f64;
        csv.push_str(&format!(
            "{k},{policy},,0.8,7,100,100,0,{loss},{},1.0,5,{},{truncation},2.5,2,,1.0,1.0,1.0\n",
            loss.exp(),
            3 + k
        ));
    }
    std::fs::write(analysis.join("generations.csv"), csv).unwrap();
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
fn tokens_csv_holds_counts_vanish_generations_absence_spells_and_the_null_model() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    fake_run(&layout, "r", &real_tokens(), &synthetic_tokens(), "abc", "replace");
    let mut reader = csv::Reader::from_path(layout.analysis("r").join("tokens.csv")).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_string).collect();
    assert_eq!(
        header,
        [
            "token_id",
            "token_text",
            "real_count",
            "gen_01",
            "gen_02",
            "gen_03",
            "vanish_generation",
            "absent_corpora",
            "absence_spells",
            "longest_absence",
            "reappeared",
            "null_presence_probability",
            "null_presence_real_documents"
        ]
    );
    let rows: Vec<Vec<String>> = reader.records().map(|r| r.unwrap().iter().map(str::to_string).collect()).collect();
    assert_eq!(rows.len(), VOCAB);
    let row = |t: usize| rows[t].iter().take(11).map(String::as_str).collect::<Vec<_>>();
    assert_eq!(row(0), ["0", "<|endoftext|>", "4", "3", "3", "3", "", "0", "0", "0", "false"]);
    // Token 3 is a newline: escaped onto one line. Never vanishes.
    assert_eq!(row(3), ["3", "\\n", "3", "1", "1", "1", "", "0", "0", "0", "false"]);
    // Token 4 vanishes in S_2 and stays gone: one open spell of 2.
    assert_eq!(row(4), ["4", "a,b", "4", "1", "0", "0", "2", "2", "1", "2", "false"]);
    assert_eq!(row(5), ["5", "\"q\"", "5", "2", "1", "0", "3", "1", "1", "1", "false"]);
    // Token 6 vanishes in S_1 and comes back in S_3: its vanish generation stays 1,
    // and it reappeared after a spell of 2.
    assert_eq!(row(6), ["6", "rare", "1", "0", "0", "1", "1", "2", "1", "2", "true"]);
    // Token 7 is unseen in the real split: it cannot vanish, even when absent.
    assert_eq!(row(7), ["7", "never", "0", "0", "0", "2", "", "", "", "", ""]);
    // The null column is 1 − exp(−c·D/|R|) with D = 10 and |R| = 20, by hand.
    let null = |t: usize| rows[t][11].parse::<f64>().unwrap();
    assert_close!(null(6), 1.0 - (-0.5f64).exp());
    assert_close!(null(5), 1.0 - (-2.5f64).exp());
    assert_eq!(null(7), 0.0);
}

#[test]
fn the_null_presence_probability_is_one_minus_exp_of_minus_c_d_over_r() {
    // c = 3, D/|R| = 0.1: 1 − e^(−0.3).
    assert_close!(null_presence_probability(3, 0.1), 0.259_181_779_318_282);
    assert_eq!(null_presence_probability(0, 0.5), 0.0);
    // Tiny expected counts keep their precision: 1 − e^(−x) ≈ x − x²/2.
    let x = 1e-12;
    assert!(close(null_presence_probability(1, x), x - x * x / 2.0, 1e-27));
    // A token seen once in R, with D = |R|/8 (a 200k sample of a 1.6M-token R), is
    // missing from a given sample with probability e^(−1/8) ≈ 0.88.
    assert!(close(1.0 - null_presence_probability(1, 0.125), 0.8825, 1e-4));
}

#[test]
fn null_spells_and_reappearance_match_enumeration_of_every_sequence() {
    for a in [0.0f64, 0.1, 0.5, 0.88, 1.0] {
        for corpora in 0..=6u32 {
            // Every presence/absence sequence over S_1..S_K, weighted by its probability.
            let (mut spells, mut reappeared) = (0.0, 0.0);
            for mask in 0..(1u32 << corpora) {
                let counts: Vec<u64> = (0..corpora).map(|k| u64::from(mask >> k & 1 == 0)).collect();
                let absent = counts.iter().filter(|&&c| c == 0).count() as i32;
                let p = a.powi(absent) * (1.0 - a).powi(corpora as i32 - absent);
                let absence = Absence::of(counts);
                spells += p * f64::from(absence.spells);
                reappeared += p * f64::from(u8::from(absence.reappeared));
            }
            assert!(close(null_expected_spells(a, corpora), spells, 1e-12), "spells a={a} K={corpora}");
            assert!(close(null_reappearance_probability(a, corpora), reappeared, 1e-12), "reappear a={a} K={corpora}");
        }
    }
    // By hand: a = ½, K = 3 gives 1 spell on average and a ½ chance of coming back.
    assert_close!(null_expected_spells(0.5, 3), 1.0);
    assert_close!(null_reappearance_probability(0.5, 3), 0.5);
}

#[test]
fn absence_spells_on_a_hand_made_table() {
    let texts = ["e", "back", "end", "always", "unseen"].map(str::to_string);
    // Counts in S_1..S_5 per token.
    let per_token: [[u64; 5]; 5] = [
        [1, 1, 1, 1, 1],
        // Absent in S_2, present in S_3, absent in S_4..S_5.
        [2, 0, 1, 0, 0],
        // Absent from S_3 on, never back.
        [1, 1, 0, 0, 0],
        [4, 4, 4, 4, 4],
        [0, 1, 0, 0, 0],
    ];
    let synthetic: Vec<Vec<u64>> = (0..5).map(|k| per_token.iter().map(|t| t[k]).collect()).collect();
    let table = TokenTable::new(&texts, vec![5, 3, 2, 9, 0], synthetic).unwrap();
    let back = table.absence(1).unwrap();
    assert_eq!(back, Absence { absent_corpora: 3, spells: 2, longest: 2, reappeared: true });
    assert_eq!(table.vanish_generation(1), Some(2), "the first zero stays the vanish generation");
    assert_eq!(table.absence(2).unwrap(), Absence { absent_corpora: 3, spells: 1, longest: 3, reappeared: false });
    assert_eq!(table.absence(3).unwrap(), Absence::default());
    assert_eq!(table.absence(4), None, "a token unseen in R has no absence");
    // The same numbers survive a round trip through tokens.csv.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.csv");
    table.write_csv(&path, Some(0.5), None).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.lines().nth(2).unwrap().starts_with("1,back,3,2,0,1,0,0,2,3,2,2,true,"), "{text}");
    let read = TokenTable::read_csv(&path).unwrap();
    assert_eq!(read, table);
}

#[test]
fn tokens_csv_of_the_older_layout_is_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.csv");
    std::fs::write(&path, "token_id,token_text,real_count,gen_01,gen_02,vanish_generation\n0,e,3,1,1,\n1,a,2,0,1,1\n")
        .unwrap();
    let table = TokenTable::read_csv(&path).unwrap();
    assert_eq!(table.synthetic, vec![vec![1, 0], vec![1, 1]]);
    assert!(table.absence(1).unwrap().reappeared);
    // A header that is neither layout is refused with the columns it expected.
    std::fs::write(&path, "token_id,token_text,real_count,gen_01,vanish_generation,absent_corpora\n0,e,3,1,,0\n")
        .unwrap();
    let err = TokenTable::read_csv(&path).unwrap_err().to_string();
    assert!(err.contains("does not have the columns") && err.contains("absent_corpora"), "{err}");
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
    assert_eq!(
        labels,
        [("real", "real-train"), ("noise-floor", "real-sample"), ("0", "gen-01"), ("1", "gen-02"), ("2", "gen-03")]
    );
    // Each row is the measure of its own corpus against the real counts.
    // The loop measures copying too, so the reference holds R's text.
    let reference =
        Reference::with_text(lmloop::analysis::count_tokens(&real_tokens(), VOCAB).unwrap(), &real_tokens()).unwrap();
    for (j, tokens) in synthetic_tokens().iter().enumerate() {
        let expected = measure_corpus(&reference, tokens, EOT, Some(j as u32 + 1)).unwrap();
        let row = &rows[j + 2];
        assert_close!(row.kl_real_gen_add_half, expected.kl_real_gen_add_half);
        assert_eq!(row.distinct_tokens, expected.distinct_tokens);
        assert_eq!(row.documents, expected.documents);
    }
    // S_2 holds tokens 0, 1, 2, 3 and 5.
    assert_eq!(rows[3].distinct_tokens, 5);
    // The noise floor is the given real sample measured against R like any S_k: a
    // perfect model's sample of D tokens already diverges from R.
    let floor = &rows[1];
    let expected = measure_noise_floor(&reference, &noise_floor_tokens(), EOT).unwrap();
    assert_eq!(floor, &expected);
    assert_eq!((floor.tokens, floor.documents, floor.distinct_tokens), (10, 2, 6));
    assert_close!(floor.kl_real_gen_add_half, kl_add_half(reference.counts(), &[2, 1, 1, 1, 2, 3, 0, 0]));
    assert!(floor.kl_real_gen_add_half > 0.0 && floor.total_variation > 0.0);
    // reference.json keeps D and |R| for the report and inspect tails.
    let info = ReferenceInfo::read(&layout.analysis("r").join("reference.json")).unwrap();
    assert_eq!((info.real_tokens, info.generation_size, info.noise_floor_tokens), (20, 10, 10));
    assert_close!(info.sample_ratio(), 0.5);
    assert_eq!(info.name, "toy/train (R, 20 tokens)");
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
    assert_eq!(rows[3].distinct_tokens, 2);
    assert_eq!(rows[3].tokens, 4);
    // The noise floor has its own cache entry, reused while its sample is unchanged.
    let floor_cache = layout.analysis("r").join("drift").join("noise-floor.toml");
    assert!(floor_cache.exists());
    let floor = rows[1].clone();
    let mut changed = real_reference(&real_tokens());
    changed.noise_floor = vec![5, 5, 5, 5, 0];
    update_run_analysis(&layout, "r", &changed, &synthetic_files(&layout, "r", 3), &token_texts(), EOT).unwrap();
    let rows = lmloop::analysis::read_drift_csv(&drift_csv).unwrap();
    assert_ne!(rows[1], floor, "a new noise-floor sample is measured again");
    assert_eq!((rows[1].tokens, rows[1].distinct_tokens), (5, 2));
}

#[test]
fn update_refuses_gaps_bad_token_files_and_bad_references() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    let real = real_reference(&real_tokens());
    let s = dir.path().join("s.bin");
    write_tokens(&s, &[1, 2, 0], VOCAB).unwrap();
    let err = update_run_analysis(&layout, "r", &real, &[(2, s.clone())], &token_texts(), EOT).unwrap_err();
    assert!(err.to_string().contains("S_1, S_2, … in order without gaps"), "{err:#}");
    let err = update_run_analysis(&layout, "r", &real, &[(1, s.clone())], &token_texts()[..3], EOT).unwrap_err();
    assert!(format!("{err:#}").contains("outside the vocabulary of 3"), "{err:#}");
    let err = update_run_analysis(&layout, "r", &real, &[(1, dir.path().join("missing.bin"))], &token_texts(), EOT)
        .unwrap_err();
    assert!(format!("{err:#}").contains("missing.bin"), "{err:#}");
    // Without a noise-floor sample (too little real text outside R) the drift table
    // has no floor row, rather than one made up from R.
    let mut empty_floor = real.clone();
    empty_floor.noise_floor.clear();
    update_run_measures(&layout, "r", &empty_floor, &[(1, s.clone())], &token_texts(), EOT).unwrap();
    let drift = std::fs::read_to_string(layout.analysis("r").join("drift.csv")).unwrap();
    assert!(!drift.contains("noise-floor"), "{drift}");
    // A bad real reference gets one sentence naming what is wrong.
    let mut no_size = real.clone();
    no_size.generation_size = 0;
    let err = update_run_analysis(&layout, "r", &no_size, &[(1, s.clone())], &token_texts(), EOT).unwrap_err();
    assert!(err.to_string().contains("generation size D of toy/train (R, 20 tokens) is 0"), "{err:#}");
    let mut empty_real = real.clone();
    empty_real.tokens.clear();
    let err = update_run_analysis(&layout, "r", &empty_real, &[(1, s.clone())], &token_texts(), EOT).unwrap_err();
    assert!(err.to_string().contains("is empty; drift needs at least one real token"), "{err:#}");
    let mut bad_floor = real;
    bad_floor.noise_floor = vec![1, 99];
    let err = update_run_analysis(&layout, "r", &bad_floor, &[(1, s)], &token_texts(), EOT).unwrap_err();
    assert!(format!("{err:#}").contains("noise-floor sample") && format!("{err:#}").contains("token id 99"), "{err:#}");
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
    let text = inspect_tails(&layout, "lin", 30, 1).unwrap();
    // Sorted by real count, most common first: "a,b" (4×), "\n" (3×), " cat" (2×), "the".
    let order: Vec<usize> = ["\"a,b\"", "\"\\n\"", "\" cat\"", "\"the\""]
        .iter()
        .map(|t| text.find(t).unwrap_or_else(|| panic!("{t} missing:\n{text}")))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "not sorted by real count:\n{text}");
    // End-of-text (seen 4 times) is the one token that never vanishes.
    assert!(text.contains("4 of 5 tokens with real count ≥ 1 vanished"), "{text}");
    // One token vanishes first in each of S_1..S_4; k are absent from S_k.
    for k in 1..=4 {
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().take(3).collect::<Vec<_>>() == [&format!("S_{k}"), "1", &k.to_string()]),
            "S_{k} line:\n{text}"
        );
    }
    assert!(text.contains("vanish generation ≈ 1.0000 × real count + 0.0000   (R² 1.000, 4 tokens)"), "{text}");
    // The threshold drops tokens seen fewer times; the top limit cuts the list.
    let text = inspect_tails(&layout, "lin", 1, 3).unwrap();
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
    let buckets = survival_by_bucket(&table, None);
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
    let buckets = survival_by_bucket(&table, None);
    let summary: Vec<(&str, usize, Vec<f64>)> =
        buckets.iter().map(|b| (b.label.as_str(), b.tokens, b.present.clone())).collect();
    assert_eq!(
        summary,
        [("1", 1, vec![1.0, 0.0, 0.0]), ("2-3", 2, vec![1.0, 1.0, 0.5]), ("4-7", 1, vec![1.0, 1.0, 1.0])]
    );
}

#[test]
fn survival_buckets_carry_the_null_model_and_measured_absence() {
    // Tokens a (count 1) and b (count 3) share no bucket; D/|R| = 0.25.
    let table = TokenTable::new(
        &["e", "a", "b"].map(str::to_string),
        vec![0, 1, 3],
        vec![vec![1, 0, 1], vec![1, 1, 0], vec![1, 0, 0]],
    )
    .unwrap();
    let buckets = survival_by_bucket(&table, Some(0.25));
    let one = &buckets[0];
    assert_eq!((one.label.as_str(), one.present.clone()), ("1", vec![1.0, 0.0, 1.0, 0.0]));
    // a is absent from S_1 and S_3: 2 of 3 pairs, 2 spells, and it came back once.
    assert_close!(one.absent_share, 2.0 / 3.0);
    assert_close!(one.spells_per_token, 2.0);
    assert_close!(one.reappeared_share, 1.0);
    let null = one.null.unwrap();
    assert_close!(null.presence, 1.0 - (-0.25f64).exp());
    assert_close!(null.absent_share, (-0.25f64).exp());
    assert_close!(null.spells_per_token, null_expected_spells((-0.25f64).exp(), 3));
    let two = &buckets[1];
    assert_eq!(two.label, "2-3");
    assert_close!(two.null.unwrap().presence, 1.0 - (-0.75f64).exp());
    assert_close!(two.reappeared_share, 0.0);
    // Without D/|R| there is no null model.
    assert!(survival_by_bucket(&table, None).iter().all(|b| b.null.is_none()));
}

#[test]
fn inspect_tails_states_d_over_r_the_null_model_and_absence_against_it() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    fake_run(&layout, "r", &real_tokens(), &synthetic_tokens(), "abc", "replace");
    let text = inspect_tails(&layout, "r", 30, 1).unwrap();
    assert!(
        text.contains("D = 10 tokens per synthetic corpus, |R| = 20 real training tokens, D/|R| = 0.5000"),
        "{text}"
    );
    assert!(text.contains("1 − exp(−c·D/|R|)"), "{text}");
    // Token 6 ("rare") vanished in S_1 and came back in S_3.
    assert!(text.contains("1 of the 3 came back in a later corpus"), "{text}");
    let rare = text.lines().find(|l| l.contains("\"rare\"")).unwrap();
    assert_eq!(
        rare.split_whitespace().collect::<Vec<_>>(),
        ["6", "\"rare\"", "1", "S_1", "2", "1", "2", "yes", "1", "–", &format!("{:.3}", 1.0 - (-0.5f64).exp())],
        "no real-document null in this toy run, then the independence bound"
    );
    // The bucket of count 1 (tokens 1 and 6): token 6 is absent from 2 of 3 corpora,
    // token 1 from none, so 2 of 6 pairs; independent draws would lose e^(−0.5) of them.
    let bucket = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some("1") && l.split_whitespace().count() == 10)
        .unwrap_or_else(|| panic!("no bucket line for count 1:\n{text}"));
    let cells: Vec<&str> = bucket.split_whitespace().collect();
    assert_eq!(cells[..3], ["1", "2", "0.333"]);
    assert_eq!(cells[3..5], ["–", "–"], "no real-document null, no band");
    assert_eq!(cells[5], format!("{:.3}", (-0.5f64).exp()));
    // The old claim is gone; the statement names the assumption and the factor.
    assert!(!text.contains("survives about c generations"), "{text}");
    assert!(text.contains("recursive maximum-likelihood") && text.contains("c·D/|R|, not c"), "{text}");
    // Without reference.json the null model is declared unknown, not invented.
    std::fs::remove_file(layout.analysis("r").join("reference.json")).unwrap();
    let text = inspect_tails(&layout, "r", 30, 1).unwrap();
    assert!(text.contains("Null model unavailable") && text.contains("reference.json is missing"), "{text}");
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
    let path = report(&layout, "r").unwrap();
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
        "drift-copying",
        "drift-longest-match",
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
    assert_eq!(found.len(), 15);
    assert!(found.iter().all(|(_, svgs)| *svgs == 1), "{found:?}");
    let text = inspect_tails(&layout, "new", 30, 1).unwrap();
    assert!(text.contains("no synthetic corpus yet"), "{text}");
}

/// The text inside the `<text>` elements of an SVG: its legend, title and tick labels.
fn svg_text(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn report_draws_the_noise_floor_and_the_null_model() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    fake_run(&layout, "r", &real_tokens(), &synthetic_tokens(), "abc", "replace");
    let plots = layout.plots("r");
    // Every drift chart has the noise-floor line, named with the sample's size.
    for id in [
        "divergence",
        "entropy",
        "distinct-tokens",
        "tail-mass",
        "distinct-ngrams",
        "document-length",
        "repetition",
        "zipf-slope",
    ] {
        let svg = svg_text(&plots.join(format!("drift-{id}.svg")));
        assert!(svg.contains("real sample of 10 tokens (noise floor)"), "drift-{id} lacks the noise floor");
    }
    // The survival chart has a null series per bucket beside the measured one.
    let svg = svg_text(&plots.join("survival.svg"));
    for label in ["1", "2-3", "4-7"] {
        assert!(svg.contains(&format!("real count {label} (")), "measured {label}");
        assert!(svg.contains(&format!("independence bound for count {label}")), "null {label}");
    }
    let html = std::fs::read_to_string(layout.analysis("r").join("report.html")).unwrap();
    figures(&html);
    // The drift table shows the noise-floor row; the report states D/|R| and the null model.
    assert!(html.contains("<td class=\"text\">real-sample</td><td class=\"text\">noise-floor</td>"), "drift table");
    assert!(html.contains("D/|R| = 0.5000"));
    assert!(html.contains("absence spells per token"));
    assert!(!html.contains("survives about c generations"));
    // Truncation share and document length per generation, beside the real split's.
    assert!(html.contains("truncation share") && html.contains("0.2500"), "sampling table");
    assert!(html.contains("Real training split: mean document length 4"), "real length");
    // No loss_by_frequency.csv: one line says so, and the report is still complete.
    assert!(html.contains("No loss by token frequency") && html.contains("loss_by_frequency.csv is missing"));
}

#[test]
fn report_without_reference_json_or_sampler_columns_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    fake_run(&layout, "r", &real_tokens(), &synthetic_tokens(), "abc", "replace");
    // A run analysed by an older lmloop: no reference.json, no noise floor, old generations.csv.
    let analysis = layout.analysis("r");
    std::fs::remove_file(analysis.join("reference.json")).unwrap();
    let drift = std::fs::read_to_string(analysis.join("drift.csv")).unwrap();
    let old: Vec<&str> = drift.lines().filter(|l| !l.starts_with("noise-floor,")).collect();
    std::fs::write(analysis.join("drift.csv"), old.join("\n") + "\n").unwrap();
    let mut csv = String::from("generation,policy,real_fraction,temperature,held_out_loss,held_out_perplexity\n");
    for k in 0..3 {
        csv.push_str(&format!("{k},replace,,0.8,1.5,4.48\n"));
    }
    std::fs::write(analysis.join("generations.csv"), csv).unwrap();
    let html = std::fs::read_to_string(report(&layout, "r").unwrap()).unwrap();
    assert_eq!(figures(&html).len(), 15);
    assert!(html.contains("Null model unavailable"));
    assert!(html.contains("drift.csv has no noise-floor row"));
    assert!(html.contains("generations.csv has no sampler columns"));
    assert!(!svg_text(&layout.plots("r").join("survival.svg")).contains("null for count"));
}

/// loss_by_frequency.csv as the loop writes it: generations 0..=2, bucket 0 without
/// targets (NaN), buckets 1 and 2 with rising loss, bucket 2 without targets in generation 1.
fn write_loss_by_frequency(layout: &Layout, run: &str) {
    let mut csv = String::from("generation,bucket,min_real_count,max_real_count,target_tokens,mean_loss\n");
    for k in 0..3 {
        csv.push_str(&format!("{k},0,0,0,0,NaN\n"));
        csv.push_str(&format!("{k},1,1,3,40,{}\n", 6.0 + k as f64));
        let loss = if k == 1 { "NaN".to_string() } else { format!("{}", 2.0 + 0.5 * k as f64) };
        csv.push_str(&format!("{k},2,4,5,60,{loss}\n"));
    }
    std::fs::write(layout.analysis(run).join("loss_by_frequency.csv"), csv).unwrap();
}

#[test]
fn report_draws_loss_by_frequency_skipping_empty_buckets() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    fake_run(&layout, "r", &real_tokens(), &synthetic_tokens(), "abc", "replace");
    write_loss_by_frequency(&layout, "r");
    let rows = read_loss_by_frequency(&layout.analysis("r").join("loss_by_frequency.csv")).unwrap().unwrap();
    assert_eq!(rows.len(), 9);
    assert!(rows[0].mean_loss.is_nan() && rows[0].range_label() == "0 (never in R)");
    assert_eq!((rows[1].range_label(), rows[1].mean_loss), ("1-3".to_string(), 6.0));
    let html = std::fs::read_to_string(report(&layout, "r").unwrap()).unwrap();
    let found = figures(&html);
    assert!(found.contains(&("fig-loss-by-frequency".to_string(), 1)), "{found:?}");
    assert_eq!(found.len(), 16);
    let svg = svg_text(&layout.plots("r").join("loss-by-frequency.svg"));
    for legend in
        ["real count 0 (never in R) (0 targets)", "real count 1-3 (40 targets)", "real count 4-5 (60 targets)"]
    {
        assert!(svg.contains(legend), "legend {legend}");
    }
    assert!(!svg.contains("NaN"), "NaN points are left out");
    // The table gives first and last generation and the change.
    assert!(html.contains("<td>6.000</td><td>8.000</td><td>+2.000</td>"), "loss table");
    assert!(!html.contains("No loss by token frequency"));
}

#[test]
fn malformed_loss_by_frequency_gets_one_clear_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    fake_run(&layout, "r", &real_tokens(), &synthetic_tokens(), "abc", "replace");
    let path = layout.analysis("r").join("loss_by_frequency.csv");
    let cases = [
        ("generation,bucket,min_real_count,max_real_count,mean_loss\n0,1,1,3,2.0\n", "lacks the column target_tokens"),
        (
            "generation,bucket,min_real_count,max_real_count,target_tokens,mean_loss\n0,1,5,3,9,2.0\n",
            "row 2: bucket 1 has min_real_count 5 above max_real_count 3",
        ),
        (
            "generation,bucket,min_real_count,max_real_count,target_tokens,mean_loss\n0,1,1,3,9,2.0\n1,1,1,4,9,2.0\n",
            "row 3: bucket 1 covers real counts 1-4 here but 1-3 in generation 0",
        ),
        ("generation,bucket,min_real_count,max_real_count,target_tokens,mean_loss\n0,1,1,3,9,abc\n", "malformed row 2"),
    ];
    for (text, expected) in cases {
        std::fs::write(&path, text).unwrap();
        let err = format!("{:#}", report(&layout, "r").unwrap_err());
        assert!(err.contains("loss_by_frequency.csv") && err.contains(expected), "{err}");
    }
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
    let path = compare(&layout, &["a".into(), "b".into()], None).unwrap();
    assert_eq!(path, dir.path().join("analysis").join("compare-a-b").join("report.html"));
    let html = std::fs::read_to_string(&path).unwrap();
    let found = figures(&html);
    assert!(found.len() >= 16 && found.iter().all(|(_, svgs)| *svgs == 1), "{found:?}");
    assert!(html.contains("a (replace, T=0.8)") && html.contains("b (accumulate, T=0.8)"), "legend names policies");
    let out = dir.path().join("elsewhere");
    let path = compare(&layout, &["a".into(), "b".into()], Some(&out)).unwrap();
    assert_eq!(path, out.join("report.html"));
    assert!(out.join("plots").join("perplexity.svg").exists());
}

#[test]
fn compare_draws_noise_floors_null_models_and_loss_buckets() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    fake_run(&layout, "a", &real_tokens(), &synthetic_tokens(), "abc", "replace");
    fake_run(&layout, "b", &real_tokens(), &synthetic_tokens()[..2], "abc", "accumulate");
    // Without any loss_by_frequency.csv: one note, no chart.
    let path = compare(&layout, &["a".into(), "b".into()], None).unwrap();
    let html = std::fs::read_to_string(&path).unwrap();
    assert!(html.contains("No run has a loss_by_frequency.csv"));
    let plots = path.parent().unwrap().join("plots");
    // Both runs measured the same noise floor: one shared line on every drift chart.
    for id in ["kl-real-gen", "entropy", "tail-mass"] {
        let svg = svg_text(&plots.join(format!("drift-{id}.svg")));
        assert_eq!(svg.matches("real sample of 10 tokens (noise floor)").count(), 1, "drift-{id}");
    }
    let svg = svg_text(&plots.join("survival-rare.svg"));
    // These toy runs have no real-document null, so the independence bound is drawn, named as such.
    assert!(
        svg.contains("independence bound for a (replace, T=0.8)")
            && svg.contains("independence bound for b (accumulate, T=0.8)")
    );
    assert!(html.contains("<th>D/|R|</th>") && html.contains("<td>0.5000</td>"));
    assert!(html.contains("<th>non-canonical share of the last S_k</th>"), "compare shows what re-encoding changed");
    // With the file in one run: a chart per bucket, the other run named as missing it.
    write_loss_by_frequency(&layout, "a");
    let html = std::fs::read_to_string(compare(&layout, &["a".into(), "b".into()], None).unwrap()).unwrap();
    let found = figures(&html);
    for id in ["fig-loss-bucket-0-0-0", "fig-loss-bucket-1-1-3", "fig-loss-bucket-2-4-5"] {
        assert!(found.iter().any(|(f, n)| f == id && *n == 1), "{id} in {found:?}");
    }
    assert!(html.contains("Runs without loss_by_frequency.csv (left out below): b."));
}

#[test]
fn compare_refuses_runs_with_different_tokenizers() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    fake_run(&layout, "a", &real_tokens(), &synthetic_tokens(), "aaaa1111", "replace");
    fake_run(&layout, "b", &real_tokens(), &synthetic_tokens(), "bbbb2222", "replace");
    let err = compare(&layout, &["a".into(), "b".into()], None).unwrap_err().to_string();
    assert_eq!(
        err,
        "runs 'a' and 'b' used different tokenizers (tokenizer_sha256 aaaa1111 vs bbbb2222), so their token statistics cannot be compared"
    );
    assert!(!dir.path().join("analysis").join("compare-a-b").exists(), "nothing written");
    std::fs::remove_file(layout.analysis("b").join("corpus.json")).unwrap();
    let err = compare(&layout, &["a".into(), "b".into()], None).unwrap_err().to_string();
    assert!(err.contains("run 'b' has no") && err.contains("corpus.json"), "{err}");
    let err = compare(&layout, &["a".into(), "a".into()], None).unwrap_err().to_string();
    assert!(err.contains("named twice"), "{err}");
}

#[test]
fn missing_runs_and_files_get_one_clear_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    fake_run(&layout, "done", &real_tokens(), &synthetic_tokens(), "abc", "replace");
    let err = report(&layout, "nope").unwrap_err().to_string();
    assert!(err.starts_with("no run named 'nope'") && err.contains("known runs: done"), "{err}");
    let err = inspect_tails(&layout, "nope", 30, 1).unwrap_err().to_string();
    assert!(err.starts_with("no run named 'nope'"), "{err}");
    let err = compare(&layout, &["done".into(), "nope".into()], None).unwrap_err().to_string();
    assert!(err.starts_with("no run named 'nope'"), "{err}");
    // A run folder without analysed generations yet.
    std::fs::create_dir_all(layout.analysis("fresh")).unwrap();
    let err = report(&layout, "fresh").unwrap_err().to_string();
    assert!(err.contains("tokens.csv is missing"), "{err}");
    let err = inspect_tails(&layout, "fresh", 30, 1).unwrap_err().to_string();
    assert!(err.contains("tokens.csv is missing"), "{err}");
    // A malformed table names its file and row.
    let tokens_csv = layout.analysis("done").join("tokens.csv");
    let mut text = std::fs::read_to_string(&tokens_csv).unwrap();
    text = text.replacen("\n2,", "\n2,x,y,", 1);
    std::fs::write(&tokens_csv, text).unwrap();
    let err = format!("{:#}", inspect_tails(&layout, "done", 30, 1).unwrap_err());
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
