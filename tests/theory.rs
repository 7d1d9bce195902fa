//! Tests of `lmloop theory`: the closed-form predictions, the simulators
//! against them (with wrong recursions that must fail the same check), the
//! command line's handling of bad input, and the files a run leaves behind.

use std::fs;
use std::path::Path;

use clap::Parser;
use lmloop::plot::{render_bar_svg, render_svg, write_svg_and_png, BarChart, LineChart, Series};
use lmloop::theory::{
    digamma, discrete_survival_bins, exact_squared_distance, ln_gamma, ln_gamma_ratio, log_sigma_drift,
    poisson_survival_factors, run, sigma_mean_approximation, sigma_shrink_factor, simulate_discrete, simulate_gaussian,
    AccumulatedSampler, DataPolicy, DiscreteConfig, DiscreteResult, GaussianConfig, MultinomialSampler,
    SpreadEstimator, StartDistribution, TheoryCommand, TrialStats,
};
use rand::SeedableRng;

const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// Parses a command line exactly as `lmloop theory …` will.
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: TheoryCommand,
}

fn discrete_config(
    dist: &str,
    support: usize,
    n: u64,
    generations: usize,
    trials: usize,
    policy: DataPolicy,
    temperature: f64,
) -> DiscreteConfig {
    DiscreteConfig {
        start: StartDistribution::from_spec(dist, Some(support)).expect("valid test distribution"),
        n,
        generations,
        trials,
        policy,
        temperature,
        seed: 7,
    }
}

// ---------------------------------------------------------------- predictions

#[test]
fn poisson_survival_factors_follow_suresh_et_al() {
    let g = poisson_survival_factors(100_000);
    assert_eq!(g[0], 1.0, "g_1 = g(+∞) = 1");
    assert!((g[1] - (1.0 - (-1.0f64).exp())).abs() < 1e-15, "g_2 = 1 − 1/e, got {}", g[1]);
    assert!((g[2] - (1.0 - (-g[1]).exp())).abs() < 1e-15, "g_3 = g(g_2)");
    for (index, &value) in g.iter().enumerate() {
        let k = (index + 1) as f64;
        assert!(1.0 / k <= value && value <= 3.0 / k, "g_{k} = {value} outside [1/k, 3/k]");
    }
    // The iterate behaves like 2/k: a symbol seen c times survives ~c generations.
    let last = g.len() as f64 * g[g.len() - 1];
    assert!((last - 2.0).abs() < 0.01, "k·g_k should approach 2, got {last}");
}

#[test]
fn log_gamma_and_digamma_match_known_values() {
    let pi = std::f64::consts::PI;
    assert!(ln_gamma(1.0).abs() < 1e-14);
    assert!((ln_gamma(0.5) - 0.5 * pi.ln()).abs() < 1e-14);
    assert!((ln_gamma(10.0) - 362_880f64.ln()).abs() < 1e-12);
    assert!((ln_gamma(3.7) - (ln_gamma(2.7) + 2.7f64.ln())).abs() < 1e-13, "Γ(x+1) = x·Γ(x)");
    assert!(ln_gamma(0.0).is_nan() && ln_gamma(-1.0).is_nan());
    // Large, close arguments: the difference must not lose digits to cancellation.
    let x = 1e6;
    let asymptotic = 0.5 * f64::ln(x) - 1.0 / (8.0 * x) + 1.0 / (192.0 * x * x * x);
    assert!((ln_gamma_ratio(x + 0.5, x) - asymptotic).abs() < 1e-13);
    assert!((ln_gamma_ratio(7.5, 3.0) - (ln_gamma(7.5) - ln_gamma(3.0))).abs() < 1e-13);

    assert!((digamma(1.0) + EULER_GAMMA).abs() < 1e-14);
    assert!((digamma(0.5) + EULER_GAMMA + 2.0 * 2f64.ln()).abs() < 1e-14);
    let harmonic_9: f64 = (1..=9).map(|i| 1.0 / i as f64).sum();
    assert!((digamma(10.0) - (harmonic_9 - EULER_GAMMA)).abs() < 1e-14);
}

#[test]
fn chi_mean_constant_is_exact() {
    let pi = std::f64::consts::PI;
    // n = 2: E|Z| = √(2/π); n = 3: E√(χ²₂/2) = √π/2; n = 4: 2·√(2/(3π)).
    let cases = [(2, (2.0 / pi).sqrt()), (3, pi.sqrt() / 2.0), (4, 2.0 * (2.0 / (3.0 * pi)).sqrt())];
    for (n, expected) in cases {
        let c = sigma_shrink_factor(n, SpreadEstimator::Unbiased);
        assert!((c - expected).abs() < 1e-14, "c({n}) = {c}, expected {expected}");
        let mle = sigma_shrink_factor(n, SpreadEstimator::Mle);
        assert!((mle - expected * ((n - 1) as f64 / n as f64).sqrt()).abs() < 1e-14);
    }
    // The literature's approximations exp(−k/(4n)) and exp(−3k/(4n)).
    let (n, k) = (1000, 1000);
    for estimator in [SpreadEstimator::Unbiased, SpreadEstimator::Mle] {
        let exact = sigma_shrink_factor(n, estimator).powi(k as i32);
        let approximate = sigma_mean_approximation(n, estimator, k);
        assert!((exact / approximate - 1.0).abs() < 2e-3, "{estimator:?}: c^k = {exact}, approx {approximate}");
    }
}

// ---------------------------------------------------------------- Gaussian loop

#[test]
fn simulated_mean_sigma_matches_c_to_the_k_and_tells_the_estimators_apart() {
    let checked = [1, 2, 5, 10, 20, 40];
    let mut results = Vec::new();
    for estimator in [SpreadEstimator::Unbiased, SpreadEstimator::Mle] {
        let config =
            GaussianConfig { n: 10, generations: 40, trials: 4000, estimator, policy: DataPolicy::Replace, seed: 3 };
        let result = simulate_gaussian(&config).unwrap();
        let c = sigma_shrink_factor(config.n, estimator);
        let drift = log_sigma_drift(config.n, estimator);
        for &k in &checked {
            let sigma = &result.sigma[k];
            let error = sigma.standard_error(config.trials);
            let predicted = c.powi(k as i32);
            assert!(
                (sigma.mean - predicted).abs() < 4.0 * error,
                "{estimator:?}, k = {k}: mean σ {} vs c^k {predicted} (s.e. {error})",
                sigma.mean
            );
            let log_sigma = &result.log_sigma[k];
            let log_error = log_sigma.standard_error(config.trials);
            assert!(
                (log_sigma.mean - drift * k as f64).abs() < 4.0 * log_error,
                "{estimator:?}, k = {k}: mean ln σ {} vs {}",
                log_sigma.mean,
                drift * k as f64
            );
        }
        results.push((estimator, config, result));
    }
    // The check has teeth: each simulation is far from the other estimator's c^k.
    for (estimator, config, result) in &results {
        let other = match estimator {
            SpreadEstimator::Unbiased => SpreadEstimator::Mle,
            SpreadEstimator::Mle => SpreadEstimator::Unbiased,
        };
        let k = 40;
        let wrong = sigma_shrink_factor(config.n, other).powi(k);
        let sigma = &result.sigma[k as usize];
        assert!((sigma.mean - wrong).abs() > 10.0 * sigma.standard_error(config.trials));
    }
}

#[test]
fn gaussian_with_real_data_every_generation_does_not_collapse() {
    let config = |policy| GaussianConfig {
        n: 10,
        generations: 300,
        trials: 200,
        estimator: SpreadEstimator::Unbiased,
        policy,
        seed: 11,
    };
    let closed = simulate_gaussian(&config(DataPolicy::Replace)).unwrap();
    let accumulated = simulate_gaussian(&config(DataPolicy::Accumulate)).unwrap();
    let mixed = simulate_gaussian(&config(DataPolicy::Fresh { real_fraction: 0.5 })).unwrap();
    // Closed loop: E[ln σ] falls by ~0.058 per generation, about −17 at k = 300.
    assert!(closed.sigma[300].median < 1e-4, "replace median σ {}", closed.sigma[300].median);
    assert!(accumulated.sigma[300].q05 > 0.3, "accumulate 5% quantile {}", accumulated.sigma[300].q05);
    assert!(mixed.sigma[300].q05 > 0.5, "fresh 5% quantile {}", mixed.sigma[300].q05);
    assert!(config(DataPolicy::Accumulate).exact_moments().is_none());
}

// ---------------------------------------------------------------- discrete loop

/// Largest |simulated − Poisson| over bins whose share is estimated from at
/// least 5000 (symbol, trial) pairs (standard error ≤ 0.007) and with
/// expected initial counts in [1/4, 16), at every checkpoint.
fn largest_survival_gap(config: &DiscreteConfig, result: &DiscreteResult) -> f64 {
    discrete_survival_bins(config, result)
        .iter()
        .filter(|bin| bin.symbols * config.trials >= 5000)
        .filter(|bin| bin.expected_count_low >= 0.25 && bin.expected_count_high <= 16.0)
        .flat_map(|bin| bin.simulated.iter().zip(&bin.predicted).map(|(s, p)| (s - p).abs()))
        .fold(0.0, f64::max)
}

#[test]
fn symbol_survival_matches_the_poisson_model_and_wrong_recursions_do_not() {
    // The correct recursion stays within ~0.01 (Monte Carlo error plus the
    // Poisson approximation of multinomial counts); the wrong ones are ~0.7 off.
    const TOLERANCE: f64 = 0.02;
    let config = |policy| discrete_config("zipf:1.1", 1000, 1000, 20, 400, policy, 1.0);

    let right = config(DataPolicy::Replace);
    let result = simulate_discrete(&right).unwrap();
    assert_eq!(result.checkpoints, vec![1, 2, 3, 5, 10, 20]);
    let gap = largest_survival_gap(&right, &result);
    assert!(gap < TOLERANCE, "replace deviates from 1 − exp(−n·p·g_k) by {gap}");

    // Sampling from the original distribution every generation (fresh with
    // λ = 1), or refitting to all data so far, must fail the same check.
    for wrong in [DataPolicy::Fresh { real_fraction: 1.0 }, DataPolicy::Accumulate] {
        let wrong_config = config(wrong);
        let wrong_result = simulate_discrete(&wrong_config).unwrap();
        let wrong_gap = largest_survival_gap(&wrong_config, &wrong_result);
        assert!(wrong_gap > TOLERANCE, "{} passes the Poisson check (gap {wrong_gap})", wrong.label());
    }
}

#[test]
fn squared_distance_follows_the_exact_recursion_for_every_policy() {
    let policies = [DataPolicy::Replace, DataPolicy::Accumulate, DataPolicy::Fresh { real_fraction: 0.3 }];
    for policy in policies {
        let config = discrete_config("zipf:1.1", 50, 100, 60, 3000, policy, 1.0);
        let result = simulate_discrete(&config).unwrap();
        let exact = exact_squared_distance(&config).expect("T = 1 has an exact prediction");
        for k in [1, 2, 5, 20, 60] {
            let simulated = &result.squared_distance[k];
            let error = simulated.standard_error(config.trials);
            assert!(
                (simulated.mean - exact[k]).abs() < 4.0 * error,
                "{}, k = {k}: mean ‖p̂ − p₀‖² {} vs exact {} (s.e. {error})",
                policy.label(),
                simulated.mean,
                exact[k]
            );
        }
        if policy != DataPolicy::Replace {
            // Bounded drift, far below what replace reaches.
            let replace =
                exact_squared_distance(&DiscreteConfig { policy: DataPolicy::Replace, ..config.clone() }).unwrap();
            let simulated = &result.squared_distance[60];
            assert!(replace[60] - simulated.mean > 10.0 * simulated.standard_error(config.trials));
        }
    }
}

#[test]
fn large_n_at_temperature_one_barely_moves_the_distribution() {
    let config = discrete_config("zipf:1.1", 100, 1_000_000, 5, 20, DataPolicy::Replace, 1.0);
    let result = simulate_discrete(&config).unwrap();
    for k in 0..=5 {
        assert_eq!(result.support[k].q05, 100.0, "a symbol vanished by k = {k}");
        assert!(result.total_variation[k].mean < 0.01, "TV at k = {k}: {}", result.total_variation[k].mean);
        // Per trial, ln p̂ moves by about √(Var(ln p)/n) ≈ 10⁻³ a generation.
        let entropy_change = (result.entropy[k].mean - result.start_entropy).abs();
        assert!(entropy_change < 5e-3, "k = {k}: entropy moved by {entropy_change}");
    }
    // The same measurements do register drift when n is small.
    let small = simulate_discrete(&discrete_config("zipf:1.1", 100, 100, 5, 20, DataPolicy::Replace, 1.0)).unwrap();
    assert!(small.total_variation[5].mean > 0.1, "TV {}", small.total_variation[5].mean);
    assert!(small.start_entropy - small.entropy[5].mean > 0.1, "entropy {}", small.entropy[5].mean);
}

#[test]
fn temperature_below_one_lowers_entropy_every_generation_towards_the_mode() {
    let config = discrete_config("zipf:1.1", 200, 1000, 30, 200, DataPolicy::Replace, 0.5);
    let result = simulate_discrete(&config).unwrap();
    for k in 1..=30 {
        let (before, after) = (result.entropy[k - 1].mean, result.entropy[k].mean);
        assert!(after <= before + 1e-9, "mean entropy rose from {before} to {after} at k = {k}");
    }
    assert!(result.entropy[30].mean < 0.1 * result.start_entropy);
    assert!(result.single_symbol_fraction > 0.9, "single-symbol share {}", result.single_symbol_fraction);
    assert!(result.mode_kept_fraction > 0.5, "mode kept in {}", result.mode_kept_fraction);
}

#[test]
fn temperature_above_one_raises_entropy_towards_log_support() {
    let config = discrete_config("zipf:1.1", 100, 10_000, 30, 50, DataPolicy::Replace, 2.0);
    let result = simulate_discrete(&config).unwrap();
    for k in 2..=30 {
        let (before, after) = (result.entropy[k - 1].mean, result.entropy[k].mean);
        assert!(after >= before - 1e-3, "mean entropy fell from {before} to {after} at k = {k}");
    }
    let last = &result.entropy[30];
    let ceiling = result.support[30].mean.ln();
    assert!(last.mean > result.start_entropy + 0.5, "entropy {} from {}", last.mean, result.start_entropy);
    assert!(last.mean > ceiling - 0.02 && last.mean <= ceiling + 1e-9, "entropy {} vs ln support {ceiling}", last.mean);
}

#[test]
fn results_do_not_depend_on_the_thread_count_but_on_the_seed() {
    let config = discrete_config("zipf:1.1", 300, 500, 40, 24, DataPolicy::Fresh { real_fraction: 0.2 }, 0.8);
    let on = |threads| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| simulate_discrete(&config).unwrap())
    };
    let one = on(1);
    assert_eq!(one, on(3));
    let reseeded = simulate_discrete(&DiscreteConfig { seed: 8, ..config.clone() }).unwrap();
    assert_ne!(one, reseeded);
}

#[test]
fn multinomial_sampler_has_the_right_moments_on_every_algorithm() {
    let few = vec![1.0, 2.0, 3.0, 4.0, 0.0];
    // 200 categories with weights 0, 1, …, 199: category 0 can never be drawn.
    let many: Vec<f64> = (0..200).map(|i| i as f64).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    // Dense alias draws (n ≈ m), conditional binomials (n ≫ m), sparse alias draws (n ≪ m).
    for (weights, n, repetitions) in [(&few, 20u64, 20_000), (&few, 1_000_000, 400), (&many, 10, 40_000)] {
        let total: f64 = weights.iter().sum();
        let mut sampler = MultinomialSampler::new();
        sampler.load(weights.iter().copied());
        let mut sums = vec![0f64; weights.len()];
        let mut squares = vec![0f64; weights.len()];
        for _ in 0..repetitions {
            let mut seen = vec![false; weights.len()];
            let mut drawn = 0;
            for (category, count) in sampler.draw(n, &mut rng) {
                assert!(count > 0 && !seen[category], "category {category} reported twice or empty");
                assert!(weights[category] > 0.0, "zero-weight category {category} was drawn");
                seen[category] = true;
                drawn += count;
                sums[category] += count as f64;
                squares[category] += (count as f64).powi(2);
            }
            assert_eq!(drawn, n);
        }
        // Categories expected at least 1000 times overall, so that the sample
        // variance is itself accurate to a few percent.
        let checked: Vec<usize> = (0..weights.len())
            .filter(|&c| n as f64 * weights[c] / total * repetitions as f64 >= 1000.0)
            .step_by(weights.len() / 4)
            .collect();
        assert!(checked.len() >= 2);
        for category in checked {
            let p = weights[category] / total;
            let mean = sums[category] / repetitions as f64;
            let variance = squares[category] / repetitions as f64 - mean * mean;
            let expected_variance = n as f64 * p * (1.0 - p);
            let error = (expected_variance / repetitions as f64).sqrt();
            assert!(
                (mean - n as f64 * p).abs() < 4.0 * error,
                "n = {n}, category {category}: mean {mean} vs {}",
                n as f64 * p
            );
            assert!(
                (variance / expected_variance - 1.0).abs() < 0.15,
                "n = {n}, category {category}: variance {variance}"
            );
        }
    }
}

#[test]
fn accumulated_pool_draws_from_all_samples_so_far() {
    // Drawing from the pool's empirical distribution and adding the draws is
    // a Pólya urn: shares are martingales, so their mean stays put, while a
    // category absent from the start can never appear. 40 generations of 10
    // cross several rebuilds of the frozen part (every 160 samples here).
    let start = [5u64, 0, 3, 2];
    let (n, generations, repetitions) = (10u64, 40, 20_000);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let mut pool = AccumulatedSampler::new();
    let mut first_draw_sums = [0f64; 4];
    let mut final_shares: Vec<Vec<f64>> = (0..4).map(|_| Vec::with_capacity(repetitions)).collect();
    for _ in 0..repetitions {
        pool.start(start, n);
        for generation in 0..generations {
            let drawn = pool.draw_and_add(n, &mut rng);
            assert_eq!(drawn.iter().sum::<u64>(), n);
            assert_eq!(drawn[1], 0, "a category with no samples was drawn");
            if generation == 0 {
                first_draw_sums.iter_mut().zip(drawn).for_each(|(sum, &c)| *sum += c as f64);
            }
        }
        let total = 10 + n * generations;
        assert_eq!(pool.counts().iter().sum::<u64>(), total);
        for (shares, &count) in final_shares.iter_mut().zip(pool.counts()) {
            shares.push(count as f64 / total as f64);
        }
    }
    // Their spread follows from d_{k+1} = d_k + (n/N_{k+1})·(s/n − p̂_k), with
    // N_k the pool size: E‖d_{k+1}‖² = E‖d_k‖² + (n/N_{k+1})²·(H₀ − E‖d_k‖²)/n.
    let h0 = 1.0 - start.iter().map(|&c| (c as f64 / 10.0).powi(2)).sum::<f64>();
    let mut expected_spread = 0.0;
    for k in 1..=generations {
        let grown = 10.0 + (n * k) as f64;
        expected_spread += (n as f64 / grown).powi(2) * (h0 - expected_spread) / n as f64;
    }
    let mut spread = 0.0;
    for category in [0, 2, 3] {
        let p = start[category] as f64 / 10.0;
        spread += final_shares[category].iter().map(|share| (share - p).powi(2)).sum::<f64>() / repetitions as f64;
        let first_mean = first_draw_sums[category] / repetitions as f64;
        let first_error = (n as f64 * p * (1.0 - p) / repetitions as f64).sqrt();
        assert!((first_mean - n as f64 * p).abs() < 4.0 * first_error, "first draw, category {category}: {first_mean}");
        let shares = TrialStats::of(&mut final_shares[category]);
        assert!(
            (shares.mean - p).abs() < 4.0 * shares.standard_error(repetitions),
            "category {category}: mean final share {} vs {p}",
            shares.mean
        );
    }
    assert!((spread / expected_spread - 1.0).abs() < 0.05, "E‖p̂ − p₀‖² {spread} vs {expected_spread}");
}

// ---------------------------------------------------------------- inputs

#[test]
fn counts_files_in_each_accepted_layout_give_the_same_distribution() {
    let folder = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = folder.path().join(name);
        fs::write(&path, text).unwrap();
        format!("file:{}", path.display())
    };
    let layouts = [
        write("bare.csv", "5\n3\n0\n2\n"),
        write("count.csv", "count\n5\n3\n0\n2\n"),
        write("tokens.csv", "token_id,token,real_count,gen_01\n0,a,5,4\n1,b,3,3\n2,c,0,0\n3,d,2,0\n"),
    ];
    for spec in &layouts {
        let start = StartDistribution::from_spec(spec, None).unwrap();
        assert_eq!(start.probabilities, vec![0.5, 0.3, 0.0, 0.2], "{spec}");
    }
    let rejected = [
        (write("negative.csv", "count\n5\n-1\n"), "row 3"),
        (write("text.csv", "count\n5\nmany\n"), "row 3"),
        (write("unnamed.csv", "a,b\n1,2\n"), "`count` or `real_count`"),
        (write("both.csv", "count,real_count\n1,2\n"), "both"),
        (write("empty.csv", ""), "empty"),
        (write("zero.csv", "0\n0\n"), "positive"),
    ];
    for (spec, expected) in rejected {
        let message = format!("{:#}", StartDistribution::from_spec(&spec, None).unwrap_err());
        assert!(message.contains(expected), "{spec}: {message}");
    }
    assert!(StartDistribution::from_spec(&layouts[0], Some(10)).is_err(), "--support with file: must be refused");
}

#[test]
fn bad_input_gets_one_clear_sentence_naming_the_flag() {
    let out = tempfile::tempdir().unwrap();
    let never_created = out.path().join("never");
    let out_flag = never_created.display().to_string();
    let cases: &[(&[&str], &str)] = &[
        (&["discrete", "--n", "0"], "--n"),
        (&["discrete", "--temperature", "0"], "--temperature"),
        (&["discrete", "--temperature", "-1"], "--temperature"),
        (&["discrete", "--dist", "zipf:abc"], "--dist"),
        (&["discrete", "--dist", "zipf:"], "--dist"),
        (&["discrete", "--dist", "pareto:2"], "--dist"),
        (&["discrete", "--dist", "file:/nonexistent/counts.csv"], "--dist"),
        (&["discrete", "--support", "0"], "--support"),
        (&["discrete", "--policy", "fresh"], "--real-fraction"),
        (&["discrete", "--policy", "fresh", "--real-fraction", "1.5"], "--real-fraction"),
        (&["discrete", "--policy", "fresh", "--real-fraction", "-0.1"], "--real-fraction"),
        (&["discrete", "--policy", "replace", "--real-fraction", "0.5"], "--real-fraction"),
        (&["discrete", "--trials", "0"], "--trials"),
        (&["gaussian", "--n", "1"], "--n"),
        (&["gaussian", "--generations", "0"], "--generations"),
        (&["gaussian", "--policy", "fresh"], "--real-fraction"),
    ];
    for (arguments, flag) in cases {
        let command_line = ["lmloop-theory"].iter().chain(arguments.iter()).copied().chain(["--out", &out_flag]);
        let cli = Cli::try_parse_from(command_line).unwrap_or_else(|e| panic!("{arguments:?} should parse: {e}"));
        let message = format!("{:#}", run(&cli.command).expect_err(&format!("{arguments:?} should be refused")));
        assert!(message.contains(flag), "{arguments:?}: {message:?} does not name {flag}");
        assert!(!message.contains('\n') && message.len() < 200, "{arguments:?}: not one sentence: {message:?}");
        assert!(!never_created.exists(), "{arguments:?} created the output folder before validating");
    }
}

// ---------------------------------------------------------------- outputs

fn assert_no_temporary_files(folder: &Path) {
    for entry in fs::read_dir(folder).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        assert!(!name.contains(".tmp-"), "temporary file {name} left behind");
    }
}

fn assert_png(path: &Path) {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG", path.display());
}

#[test]
fn discrete_run_writes_tables_plots_and_a_side_by_side_summary() {
    let out = tempfile::tempdir().unwrap();
    let folder = out.path().join("discrete");
    let cli = Cli::try_parse_from([
        "lmloop-theory",
        "discrete",
        "--support",
        "200",
        "--n",
        "300",
        "--generations",
        "25",
        "--trials",
        "30",
        "--out",
        folder.to_str().unwrap(),
    ])
    .unwrap();
    run(&cli.command).unwrap();

    let generations = fs::read_to_string(folder.join("generations.csv")).unwrap();
    assert_eq!(generations.lines().count(), 1 + 26, "header plus generations 0..=25");
    assert!(generations.starts_with("generation,support_mean,"));
    let survival = fs::read_to_string(folder.join("survival.csv")).unwrap();
    assert!(survival.starts_with("generation,expected_count_low,expected_count_high,symbols,mean_expected_count,simulated_survival,poisson_prediction"));
    let symbols = fs::read_to_string(folder.join("symbols.csv")).unwrap();
    assert_eq!(symbols.lines().count(), 1 + 200);
    for chart in ["support", "entropy", "total_variation", "squared_distance", "survival"] {
        let svg = fs::read_to_string(folder.join(format!("{chart}.svg"))).unwrap();
        assert!(svg.starts_with("<svg"), "{chart}.svg");
        assert_png(&folder.join(format!("{chart}.png")));
    }
    let summary = fs::read_to_string(folder.join("summary.txt")).unwrap();
    assert!(summary.contains("Suresh et al.") && summary.contains("simulated | predicted"), "{summary}");
    let config: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(folder.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["policy"], "replace");
    assert_eq!(config["support"], 200);
    assert_no_temporary_files(&folder);
}

#[test]
fn gaussian_run_writes_sigma_table_plots_and_summary() {
    let out = tempfile::tempdir().unwrap();
    let folder = out.path().join("gaussian");
    let cli = Cli::try_parse_from([
        "lmloop-theory",
        "gaussian",
        "--n",
        "20",
        "--generations",
        "50",
        "--trials",
        "100",
        "--estimator",
        "mle",
        "--out",
        folder.to_str().unwrap(),
    ])
    .unwrap();
    run(&cli.command).unwrap();
    let table = fs::read_to_string(folder.join("sigma.csv")).unwrap();
    assert_eq!(table.lines().count(), 1 + 51);
    let header = table.lines().next().unwrap();
    assert!(header.contains("sigma_mean_exact") && header.contains("log_sigma_mean"));
    for chart in ["sigma", "log_sigma"] {
        assert_png(&folder.join(format!("{chart}.png")));
    }
    let summary = fs::read_to_string(folder.join("summary.txt")).unwrap();
    assert!(summary.contains("c^k") && summary.contains("MLE"), "{summary}");
    assert_no_temporary_files(&folder);
}

#[test]
fn line_chart_has_a_legend_skips_points_a_log_axis_cannot_show_and_rasterises() {
    let chart = LineChart {
        title: "test chart".to_string(),
        x_label: "x".to_string(),
        y_label: "y".to_string(),
        log_x: true,
        log_y: true,
        series: vec![
            Series::line("rising", vec![(0.0, 1.0), (1.0, 2.0), (10.0, 20.0), (100.0, -1.0)]),
            Series::dashed("flat", vec![(1.0, 5.0), (100.0, 5.0)]),
            Series::markers("points", vec![(2.0, 3.0), (f64::NAN, 1.0)]),
        ],
    };
    let svg = render_svg(&chart).unwrap();
    for name in ["test chart", "rising", "flat", "points"] {
        assert!(svg.contains(name), "{name} missing from the SVG");
    }
    assert!(!svg.contains("NaN") && !svg.contains("inf"), "a non-drawable point reached the SVG");
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("chart.v1");
    write_svg_and_png(&svg, &path).unwrap();
    assert_eq!(fs::read_to_string(out.path().join("chart.v1.svg")).unwrap(), svg);
    assert_png(&out.path().join("chart.v1.png"));
    assert_no_temporary_files(out.path());
}

#[test]
fn bar_chart_names_its_categories_and_rasterises() {
    let bars = vec![("rare".to_string(), 120.0), ("common".to_string(), 30.0), ("none".to_string(), 0.0)];
    for log_y in [false, true] {
        let chart = BarChart {
            title: "vanished".into(),
            x_label: "bucket".into(),
            y_label: "tokens".into(),
            log_y,
            bars: bars.clone(),
        };
        let svg = render_bar_svg(&chart).unwrap();
        for name in ["vanished", "rare", "common"] {
            assert!(svg.contains(name), "{name} missing (log_y = {log_y})");
        }
        let out = tempfile::tempdir().unwrap();
        write_svg_and_png(&svg, &out.path().join("bars")).unwrap();
        assert_png(&out.path().join("bars.png"));
    }
}
