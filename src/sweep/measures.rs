//! The measures a sweep pools, what each describes (a model or a sampled corpus), and
//! the range its values cannot leave. A leaf: it names columns of the runs' tables and
//! depends on no other part of the sweep.

/// Columns of `generations.csv` pooled per generation k (model k: held-out on the real test split).
/// (`generations.csv`'s `synthetic_unigram_entropy` and `synthetic_distinct_tokens` are
/// left out: they are `drift.csv`'s `entropy_nats` and `distinct_tokens` of the same corpus.)
pub const MODEL_MEASURES: [&str; 18] = [
    "held_out_loss",
    "held_out_perplexity",
    "synthetic_non_canonical_share",
    "train_truncated_share",
    "train_truncated_ce_share",
    "reference_perplexity_median",
    "reference_beyond_real_p99",
    "reference_beyond_real_p99_floor",
    "reference_beyond_real_p99_excess",
    "self_perplexity_median",
    "precision",
    "recall",
    "density",
    "coverage",
    "curation_oversampling",
    "curation_kept_share",
    "curation_kept_median_tokens",
    "curation_dropped_median_tokens",
];

/// The quality and diversity columns (`crate::analysis::manifold`), also pooled for the
/// noise floor (its mean over draws).
pub const MANIFOLD: [&str; 4] = crate::analysis::manifold::MEASURES;

/// Columns of `drift.csv` pooled per corpus S_{k+1} (sampled by model k), for the
/// real subsample (noise floor) and for the real training split.
pub const DRIFT_MEASURES: [&str; 18] = [
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
    "copied_ngrams_4",
    "copied_ngrams_8",
    "copied_ngrams_16",
    "copied_ngrams_32",
    "longest_match_median",
    "longest_match_p90",
];

/// Measures whose change from generation 0 to N is tabulated.
pub const CHANGE_MEASURES: [(&str, Kind); 9] = [
    ("held_out_loss", Kind::Model),
    ("held_out_perplexity", Kind::Model),
    ("kl_real_gen_add_half", Kind::Corpus),
    ("js_divergence", Kind::Corpus),
    ("entropy_nats", Kind::Corpus),
    ("distinct_tokens", Kind::Corpus),
    ("tail_mass", Kind::Corpus),
    ("mean_document_tokens", Kind::Corpus),
    ("copied_ngrams_16", Kind::Corpus),
];

/// The values a measure can take, which its intervals are cut to
/// ([`Summary::within`]): shares lie in [0, 1], the Jensen-Shannon divergence in
/// [0, ln 2], perplexities from 1 up, counts, lengths, entropies and the other
/// divergences from 0 up; the Zipf slope anywhere.
pub fn range_of(measure: &str) -> (f64, f64) {
    const SHARES: [&str; 20] = [
        "precision",
        "reference_beyond_real_p99_floor",
        "curation_kept_share",
        "recall",
        "coverage",
        "reference_beyond_real_p99",
        "synthetic_non_canonical_share",
        "train_truncated_share",
        "train_truncated_ce_share",
        "tail_mass",
        "distinct_2",
        "distinct_3",
        "repetition_rate_4gram",
        "copied_ngrams_4",
        "copied_ngrams_8",
        "copied_ngrams_16",
        "copied_ngrams_32",
        "total_variation",
        "survival",
        "absent_share",
    ];
    match measure {
        m if SHARES.contains(&m) => (0.0, 1.0),
        "js_divergence" => (0.0, std::f64::consts::LN_2),
        m if m.contains("perplexity") => (1.0, f64::INFINITY),
        "zipf_slope" => super::stats::UNBOUNDED,
        "reference_beyond_real_p99_excess" => (-1.0, 1.0),
        _ => (0.0, f64::INFINITY),
    }
}

/// What a value describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Model k (a `generations.csv` column).
    Model,
    /// Corpus S_{k+1}, sampled by model k (a `drift.csv` row `gen-KK`).
    Corpus,
}

impl Kind {
    /// The tables' `of` column: what a value describes.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Model => "model k",
            Kind::Corpus => "corpus S_(k+1)",
        }
    }
}

/// Every measure pooled per generation: (measure, kind). Contrasted, given rates, and
/// searched for thresholds.
pub fn measures() -> Vec<(&'static str, Kind)> {
    let mut out: Vec<(&str, Kind)> = MODEL_MEASURES.iter().map(|m| (*m, Kind::Model)).collect();
    out.extend(DRIFT_MEASURES.iter().map(|m| (*m, Kind::Corpus)));
    out
}

/// What `measure` describes, when the sweeps pool it.
pub fn kind_of(measure: &str) -> Option<Kind> {
    measures().into_iter().find(|(m, _)| *m == measure).map(|(_, k)| k)
}
