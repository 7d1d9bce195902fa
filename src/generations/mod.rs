//! The recursive loop: for k = 0..=N, build the training mixture, train generation k,
//! measure its held-out perplexity on the real test split, and sample the corpus
//! S_{k+1} that the next generation trains on.
//!
//! [`run`] sets the run up once ([`RunContext::open`]) and then takes every generation
//! through the same named steps (`steps`): mixture, train, evaluate, sample, measure.
//!
//! Resumable: every step leaves a completed artifact (checkpoint with `DONE`, corpus
//! with its manifest, `heldout.json`), and a rerun skips whatever is complete. All
//! randomness comes from seeds derived from the run seed and the generation index,
//! so an interrupted and resumed run gives the same numbers as an uninterrupted one.
mod context;
mod reference;
mod steps;

pub use context::{config_differences, Protocol, RunContext, RunLock, RunSpec};

use crate::choice::Choice;
use crate::config::Config;
use crate::layout::Layout;
use crate::records::{write_loss_by_frequency, write_rows, GenerationRow, RowSettings};
use anyhow::Result;
use reference::Weights;

/// Runs (or resumes) the loop; returns one row per generation.
pub fn run(layout: &Layout, spec: &RunSpec) -> Result<Vec<GenerationRow>> {
    let ctx = RunContext::open(layout, spec)?;
    let run = ctx.run.as_str();
    // Parameters are counted once generation 0 has trained: a shape too large to build
    // fails there, with the message that names the setting to lower.
    let mut settings = RowSettings {
        temperature: ctx.cfg.sample.temperature,
        seed: ctx.seed(),
        budget: ctx.cfg.train.budget.name(),
        parameters: 0,
    };
    let mut synthetic = Vec::new();
    let mut rows = Vec::new();
    let mut bucket_rows = Vec::new();
    let t_run = std::time::Instant::now();
    let (mut reference, mut verifier) = reference::fixed_models(&ctx)?;
    for k in 0..=ctx.generations {
        let (stream, mixture) = steps::mixture(&ctx, k, &synthetic)?;
        let trained = steps::train(&ctx, k, &stream, &mixture)?;
        if settings.parameters == 0 {
            settings.parameters = crate::model::parameters_of(&ctx.model);
        }
        let mut weights = Weights::of(layout.checkpoint(run, k), ctx.device);
        let held_out = steps::evaluate(&ctx, k, &mut weights)?;
        let sampled = steps::sample(&ctx, k, &mut weights, &mut reference, verifier.as_mut())?;
        let (sampled_corpus, counts) = steps::load_sampled(&ctx, k)?;
        let scored = steps::score(&ctx, k, &mut weights, &mut reference, &sampled_corpus)?;
        synthetic.push(sampled_corpus);

        let row = GenerationRow::new(
            k,
            ctx.policy,
            &settings,
            &mixture,
            &trained.value,
            &held_out.value,
            &sampled.value,
            &counts,
        )
        .with_scores(&scored.value.summary, &scored.value.manifold, scored.value.seconds);
        eprintln!(
            "[{run}] generation {k}: held-out perplexity {:.2}, synthetic entropy {:.3} nats, {} distinct tokens ({:.1} min so far)",
            row.held_out_perplexity,
            row.synthetic_unigram_entropy,
            row.synthetic_distinct_tokens,
            t_run.elapsed().as_secs_f64() / 60.0
        );
        rows.push(row);
        bucket_rows.extend(held_out.value.buckets.iter().map(|b| (k, b.clone())));
        let not_reached = ctx.recorded.iter().filter(|r| r.generation > k).cloned();
        write_rows(&layout.generations_csv(run), &rows.iter().cloned().chain(not_reached).collect::<Vec<_>>())?;
        write_loss_by_frequency(&layout.loss_by_frequency_csv(run), &bucket_rows)?;
        // The measures are refreshed after every generation that did work, and once at
        // the end, so a resumed finished run does not redraw every generation.
        if trained.computed || held_out.computed || sampled.computed || scored.computed || k == ctx.generations {
            steps::measure(&ctx, k)?;
        }
    }
    let unverified = ctx.unverified.borrow();
    if !unverified.is_empty() {
        eprintln!(
            "[{run}] note: {} {} written before lmloop recorded file contents, so {} read unverified: {}",
            unverified.len(),
            if unverified.len() == 1 { "artifact was" } else { "artifacts were" },
            if unverified.len() == 1 { "it was" } else { "they were" },
            unverified.join(", ")
        );
    }
    Ok(rows)
}

/// Purposes a generation needs randomness for; each gets its own derived seed.
#[derive(Clone, Copy)]
pub enum SeedPurpose {
    Train = 1,
    Mixture = 2,
    Sample = 3,
    NoiseFloor = 5,
    TailNull = 6,
    Quality = 7,
    QualityFloor = 8,
    Oracle = 9,
}

/// A seed for `purpose` in generation `k`, derived from the run seed (SplitMix64 finaliser).
pub fn derive_seed(run_seed: u64, generation: u32, purpose: SeedPurpose) -> u64 {
    crate::mix::splitmix64(
        run_seed
            .wrapping_add(crate::mix::GOLDEN_GAMMA.wrapping_mul(generation as u64 + 1))
            .wrapping_add((purpose as u64) << 56),
    )
}

/// The default length cap is this many times the longest real training document. A
/// model that writes like the real data is then essentially never cut: one ending its
/// documents at a constant rate matching the real mean length is cut with probability
/// e^(-2·longest/mean), 8·10⁻⁶ for Shakespeare's scenes (longest 15,820 tokens, mean
/// 2,686). A degenerate model that never ends its documents decodes them one token per
/// step; the cap bounds that serial work to twice the longest real document, the
/// length a healthy corpus may already wait for.
pub const DEFAULT_CAP_OVER_LONGEST_REAL: usize = 2;

/// D-token corpora of unseen real documents the tail null is estimated from.
pub const NULL_DRAWS: usize = 20;

/// Share of truncated documents above which the loop warns.
pub const TRUNCATION_WARNING: f64 = 0.01;

/// Default run name for a configuration: policy, temperature, λ and seed, numbers
/// with at least one decimal (`replace-t1.0-s1337`, `mix-t0.7-l0.5-s1`), the names
/// `make generations` gives too.
pub fn default_run_name(cfg: &Config) -> String {
    let mut name = format!("{}-t{:?}", cfg.generations.policy.name(), cfg.sample.temperature);
    if let Some(l) = cfg.generations.real_fraction {
        name.push_str(&format!("-l{l:?}"));
    }
    name.push_str(&format!("-s{}", cfg.train.seed));
    name
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_run_names_match_the_makefiles() {
        let mut cfg = crate::config::Config::default();
        assert_eq!(super::default_run_name(&cfg), "replace-t1.0-s1337");
        cfg.generations.policy = crate::policy::PolicyName::Mix;
        cfg.generations.real_fraction = Some(0.5);
        cfg.sample.temperature = 0.7;
        cfg.train.seed = 1;
        assert_eq!(super::default_run_name(&cfg), "mix-t0.7-l0.5-s1");
    }
}
