//! The sequential rule against the fixed test it stands in for, by simulation: its error
//! rates and the samples it takes (printed with `--nocapture`). Kept apart from the rule
//! because it compares the rule with the gate that composes it.

use super::*;
use crate::health::gate::compare_latency;

/// xorshift64*: a seeded stream, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.next(), self.next());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    /// Log-normal latency with median `median` and log-spread `sigma`.
    fn latency(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }
}

fn regression() -> Regression {
    Regression::default()
}

fn samples(ms: Vec<f64>) -> LatencySamples {
    LatencySamples {
        rows: ms.len(),
        control_ms: vec![0.5; ms.len()],
        ms,
    }
}

/// A post sample: a median `scale`, and a share `tail` of the samples `tail_scale` slower.
#[derive(Clone, Copy)]
struct Scenario {
    name: &'static str,
    scale: f64,
    tail: f64,
    tail_scale: f64,
    median_ms: f64,
}

struct Outcome {
    fixed_fails: usize,
    sequential_fails: usize,
    early_fails: usize,
    early_passes: usize,
    samples: usize,
}

/// `streams` windows of `scenario` against fresh baselines (log-normal, log-spread 0.25,
/// `cap` samples): how often the fixed test and the sequential rule fail them.
fn simulate(seed: u64, streams: usize, s: Scenario, cap: usize) -> Outcome {
    let r = regression();
    let mut rng = Rng(seed);
    let mut o = Outcome {
        fixed_fails: 0,
        sequential_fails: 0,
        early_fails: 0,
        early_passes: 0,
        samples: 0,
    };
    for _ in 0..streams {
        let base: Vec<f64> = (0..cap).map(|_| rng.latency(s.median_ms, 0.25)).collect();
        let post: Vec<f64> = (0..cap)
            .map(|_| {
                let x = rng.latency(s.median_ms * s.scale, 0.25);
                if rng.next() < s.tail {
                    x * s.tail_scale
                } else {
                    x
                }
            })
            .collect();
        let baseline = samples(base);
        let reference = Reference::new(&baseline, &r);
        let fixed = fixed_regressed(&baseline, &post, &r);
        o.fixed_fails += usize::from(fixed);
        let mut n = 0;
        let regressed = loop {
            n = next_look(n, cap, 1);
            let so_far = samples(post[..n].to_vec());
            match reference.look(&so_far).decision {
                Decision::Pass if n < cap => {
                    o.early_passes += 1;
                    break false;
                }
                Decision::Fail if n < cap => {
                    o.early_fails += 1;
                    break true;
                }
                _ if n >= cap => break fixed,
                _ => {}
            }
        };
        o.samples += n;
        o.sequential_fails += usize::from(regressed);
    }
    o
}

/// The fixed test's decision on all the samples ([`compare_latency`]), which needs its
/// ratio condition: the ratios are checked first, to spare the simulation the rank
/// statistics where they cannot change the answer.
fn fixed_regressed(baseline: &LatencySamples, post: &[f64], r: &Regression) -> bool {
    let sorted = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v
    };
    let (b, p) = (sorted(&baseline.ms), sorted(post));
    let above =
        |q: f64, ratio: f64| percentile(&p, q).unwrap() > ratio * percentile(&b, q).unwrap();
    (above(0.5, r.median_ratio) || above(0.95, r.p95_ratio) || above(0.99, r.p99_ratio))
        && compare_latency("p", baseline, &samples(post.to_vec()), r)
            .unwrap()
            .regressed
}

const STREAMS: usize = 2000;
/// Regressions: fewer streams (the fixed test's rank statistics are the simulation's cost).
const REGRESSED_STREAMS: usize = 500;

fn report(s: Scenario, o: &Outcome, streams: usize) {
    let rate = |k: usize| k as f64 / streams as f64;
    println!(
        "SEQUENTIAL {:<34} {streams} streams: fixed fails {:>6.2}%  sequential fails {:>6.2}% (early {:>6.2}%)  early passes {:>6.2}%  mean samples {:>5.1} of 40",
        s.name,
        100.0 * rate(o.fixed_fails),
        100.0 * rate(o.sequential_fails),
        100.0 * rate(o.early_fails),
        100.0 * rate(o.early_passes),
        o.samples as f64 / streams as f64
    );
}

/// A 10 ms probe: the ratio decides, not the 1 ms floor.
const fn scenario(name: &'static str, scale: f64, tail: f64, tail_scale: f64) -> Scenario {
    Scenario {
        name,
        scale,
        tail,
        tail_scale,
        median_ms: 10.0,
    }
}

#[test]
fn without_a_regression_false_fails_stay_below_alpha_and_most_windows_stop_early() {
    let alpha = regression().alpha;
    let fast = Scenario {
        median_ms: 0.5,
        ..scenario("no change, 0.5 ms probe (floor)", 1.0, 0.0, 1.0)
    };
    for (seed, s, most) in [
        (1, scenario("no change", 1.0, 0.0, 1.0), 30.0),
        (4, fast, 16.0),
        (
            2,
            scenario("median ×1.2 (within ×1.5)", 1.2, 0.0, 1.0),
            40.0,
        ),
    ] {
        let o = simulate(seed, STREAMS, s, 40);
        report(s, &o, STREAMS);
        let rate = o.sequential_fails as f64 / STREAMS as f64;
        assert!(rate <= alpha, "{}: false-fail rate {rate}", s.name);
        assert!(
            (o.early_fails as f64 / STREAMS as f64) <= alpha,
            "{}: early false fails",
            s.name
        );
        let mean = o.samples as f64 / STREAMS as f64;
        assert!(mean <= most, "{}: mean samples {mean}", s.name);
    }
    // At exactly the allowed ratio the sequence's own early fails stay within alpha; the
    // fixed test at the cap fails on its point estimate, as it always did.
    let s = scenario("median ×1.5 (the allowed ratio)", 1.5, 0.0, 1.0);
    let o = simulate(3, STREAMS, s, 40);
    report(s, &o, STREAMS);
    assert!((o.early_fails as f64 / STREAMS as f64) <= alpha);
    assert!(o.sequential_fails <= o.fixed_fails + STREAMS / 100);
}

#[test]
fn regressions_are_detected_at_least_as_often_as_by_the_fixed_test() {
    let alpha = regression().alpha;
    for (seed, s) in [
        (11, scenario("median ×2", 2.0, 0.0, 1.0)),
        (12, scenario("median ×3", 3.0, 0.0, 1.0)),
        (13, scenario("median ×1.7", 1.7, 0.0, 1.0)),
        (14, scenario("tail only: 40% of samples ×4", 1.0, 0.4, 4.0)),
        (15, scenario("tail only: 30% of samples ×5", 1.0, 0.3, 5.0)),
        (16, scenario("median ×1.3 and 10% ×5", 1.3, 0.1, 5.0)),
    ] {
        let o = simulate(seed, REGRESSED_STREAMS, s, 40);
        report(s, &o, REGRESSED_STREAMS);
        let (fixed, seq) = (
            o.fixed_fails as f64 / REGRESSED_STREAMS as f64,
            o.sequential_fails as f64 / REGRESSED_STREAMS as f64,
        );
        assert!(seq >= fixed - alpha, "{}: {seq} < {fixed} - alpha", s.name);
    }
}

#[test]
fn clear_regressions_fail_early() {
    let o = simulate(21, 500, scenario("median ×3", 3.0, 0.0, 1.0), 40);
    assert!(o.early_fails >= 490, "{}", o.early_fails);
    assert!(o.samples <= 500 * 20, "{}", o.samples);
}

#[test]
fn the_baseline_median_bounds_are_the_binomial_order_statistics() {
    // n = 40, alpha 0.005: P(Bin(40, ½) ≤ 10) = 0.00111, ≤ 11 = 0.00320, ≤ 12 = 0.00830,
    // so k - 1 = 11: the 12th and the 29th smallest.
    let x: Vec<f64> = (1..=40).map(f64::from).collect();
    assert_eq!(median_bounds(&x, 0.005), Some((12.0, 29.0)));
    // Too few samples to bound the median at all.
    assert_eq!(median_bounds(&[1.0, 2.0, 3.0], 0.005), None);
}

#[test]
fn the_sequence_needs_a_dozen_samples_to_decide_and_ties_count_against_it() {
    // All coins down: the mixture, the mean of (2 (1 - p))^n over p = 0.05, ..., 0.45,
    // is 1391 / 9 = 155 at n = 10 and 2479 / 9 = 275 at n = 11: it passes 1/0.005 = 200
    // at 11 samples.
    assert_eq!(most_reaching(10, 0.005), None);
    assert_eq!(most_reaching(11, 0.005), Some(0));
    assert_eq!(fewest_exceeding(11, 0.005), Some(11));
    for n in 11..60 {
        let k = most_reaching(n, 0.005).unwrap();
        assert!(log_mixture(n, k, false) >= 200_f64.ln());
        assert!(log_mixture(n, k + 1, false) < 200_f64.ln());
        assert!((log_mixture(n, n - k, true) - log_mixture(n, k, false)).abs() < 1e-9);
    }
    let r = regression();
    let reference = Reference::new(&samples(vec![10.0; 40]), &r);
    // Every window sample equal to the pass threshold (×1.5): never a pass.
    let look = reference.look_adjusted(&[15.0; 40]);
    assert_ne!(look.decision, Decision::Pass);
    // A window like the baseline passes at the first look; the bounds say why.
    let look = reference.look_adjusted(&[10.0; 15]);
    assert_eq!(look.decision, Decision::Pass);
    assert_eq!(look.ratio_upper, Some(1.0));
    // A window three times slower fails.
    assert_eq!(
        reference.look_adjusted(&[30.0; 15]).decision,
        Decision::Fail
    );
    // One sample above the tail guard (×2 the p95) makes the window suspect.
    let mut post = vec![10.0; 15];
    post[3] = 25.0;
    assert_eq!(reference.look_adjusted(&post).decision, Decision::Suspect);
}

#[test]
fn a_fast_probe_below_the_floor_passes_and_never_fails_early() {
    // 0.05 ms → 0.2 ms: ×4, but 0.15 ms is far below the 1 ms floor.
    let r = regression();
    let reference = Reference::new(&samples(vec![0.05; 40]), &r);
    assert_eq!(reference.look_adjusted(&[0.2; 15]).decision, Decision::Pass);
}

#[test]
fn the_sampling_says_how_many_samples_and_why() {
    let r = regression();
    let reference = Reference::new(&samples(vec![10.0; 40]), &r);
    let s = reference.sampling(&samples(vec![10.0; 15]), 40);
    assert_eq!(
        s.describe(),
        "pass after 15 of 40 samples (median ratio ≤ ×1.00, 99% confidence sequence)"
    );
    let s = reference.sampling(&samples(vec![30.0; 20]), 40);
    assert_eq!(
        s.describe(),
        "fail after 20 of 40 samples (median ratio ≥ ×3.00, 99% confidence sequence)"
    );
    let s = reference.sampling(&samples(vec![14.0; 40]), 40);
    assert_eq!(
        s.describe(),
        "40 of 40 samples (tail or median suspect: judged on all of them)"
    );
    assert_eq!(next_look(0, 40, 1), 15);
    assert_eq!(next_look(15, 40, 1), 20);
    assert_eq!(next_look(35, 40, 1), 40);
    assert_eq!(next_look(0, 10, 1), 10);
}
