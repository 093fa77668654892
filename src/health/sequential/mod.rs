//! Sequential decisions inside a gate window (pure): stop timing a latency probe as soon as the
//! evidence decides, instead of always taking the probe's `samples`.
//!
//! # The rule
//!
//! A latency probe regresses on its median when the window's median `m` exceeds
//! `θ(b) = max(median_ratio × b, b + floor_ms)`, `b` the baseline median: the ratio *and* the
//! floor of the fixed test ([`super::gate::compare_latency`]), on the median. The window's
//! samples arrive in batches (the first [`MIN_EARLY_PASS`], then [`batch_size`]); after each
//! batch the rule looks:
//!
//! - **pass** when the upper bound of a confidence sequence for `m` is below `θ(b_lo)`, where
//!   `b_lo` is a lower confidence bound of the baseline median: the window's median ratio is
//!   confidently within the allowed increase;
//! - **fail** when the lower bound of the confidence sequence is above `θ(b_hi)`, `b_hi` an
//!   upper confidence bound of the baseline median (then the window is confirmed by
//!   re-measurement, as every latency failure is);
//! - otherwise sample on, up to the cap (the probe's `samples`), where the window is judged
//!   by the fixed test on every sample, exactly as before sequential sampling.
//!
//! # The confidence sequence
//!
//! A sequential sign test, made time-uniform with a mixture martingale (Robbins, H. (1970),
//! "Statistical methods related to the law of the iterated logarithm", Ann. Math. Statist.
//! 41(5); Howard, S. R., Ramdas, A., McAuliffe, J. & Sekhon, J. (2021), "Time-uniform,
//! nonparametric, nonasymptotic confidence sequences", Ann. Statist. 49(2); the quantile
//! construction of Howard, S. R. & Ramdas, A. (2022), "Sequential estimation of quantiles with
//! applications to A/B-testing and best-arm identification", Bernoulli 28(3)). For a
//! threshold `θ`, each sample is a coin: does it reach `θ`? If the window's median is at least
//! `θ`, the coin lands "reached" with probability `q ≥ 1/2`; the mixture over alternatives
//! `p_j = 1/2 − d_j` (`d_j` = 0.05, 0.10, ..., 0.45, equal weights) of the likelihood ratios
//! `(p_j / ½)^k ((1 − p_j) / ½)^(n − k)` (`k` coins reached of `n`) is then a nonnegative
//! supermartingale with mean at most 1 (each factor's expectation is
//! `q p_j/½ + (1 − q)(1 − p_j)/½ ≤ 1` for every `q ≥ 1/2`, since `p_j < 1/2`), so by Ville's
//! inequality it ever reaches `1/α` with probability at most `α`, *whenever* one looks and
//! stops. Rejecting every `θ` whose mixture has reached `1/α` leaves the upper bound of the
//! sequence: an order statistic of the samples so far. The lower bound mirrors it (`p_j =
//! 1/2 + d_j` on "exceeded `θ`"). Ties count against the decision being made (a sample equal
//! to `θ` counts as reaching it for a pass, as not exceeding it for a fail).
//!
//! Why this one: it needs no distributional assumption (latency is skewed and heavy-tailed, so
//! a Gaussian or sub-Gaussian mean bound would be wrong or loose), it is valid under optional
//! stopping by construction (a group-sequential design with a Lan–DeMets spending function
//! must fix the look schedule and uses a normal approximation of the rank statistic that is
//! poor at 15 samples), its bound is an exact order statistic, and it costs a few hundred
//! floating-point operations per look. A discrete mixture is used instead of the conjugate
//! beta mixture because the null is composite and one-sided (`q ≥ 1/2`, not `q = 1/2`): a
//! mixture over one side only stays a supermartingale for every `q` in the null.
//!
//! # The baseline's own uncertainty
//!
//! The baseline median is itself estimated from the baseline's samples. `b_lo` and `b_hi`
//! are the distribution-free order-statistic bounds of the median (`P(Bin(n, ½) ≤ k − 1) ≤
//! α_b`), so a pass errs only if the sequence errs or the true baseline median is below
//! `b_lo`, and a fail only if the sequence errs or it is above `b_hi`.
//!
//! # The tail guards and the error bound
//!
//! The fixed test also fails a window on its p95 or p99 ratio. A tail cannot be shown clean
//! with a few dozen samples (ruling out a 5% exceedance rate at 99% takes 90), so the rule
//! never passes a window early that looks tail-suspect: a sample above the baseline's p95
//! times `p95_ratio` (or p99 times `p99_ratio`, both with the floor), or a median already more
//! than half the allowed excess above the baseline (the point estimate). Such a window samples
//! on to the cap and is judged by the fixed test. With `α` the plan's `alpha`, each side of
//! the sequence runs at `α/2` and the baseline bound at `α/2`, so:
//!
//! - a window with no median regression is failed early with probability at most `α` (before
//!   the two confirmations, which must fail too); at the cap the fixed test decides, as it did;
//! - a window the fixed test would fail is passed early only if the sequence errs (at most
//!   `α`) or a tail regression touching a share `f` of the samples showed no sample above the
//!   guard in the first [`MIN_EARLY_PASS`] (at most `(1 − f)^15`: 0.5% at `f` = 30%, the
//!   smallest tail share the fixed test's Mann–Whitney condition detects with 40 samples); so
//!   detection is at least the fixed test's minus `α` plus that term.
//!
//! The tests simulate these rates (`sequential::tests`, printed with `--nocapture`).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use super::samples::LatencySamples;
use super::stats::{binomial_cdf, machine_factor, percentile};
use crate::config::health::{percent, Regression};

/// Samples before the first look, and the fewest an early pass may rest on (the tail guard's
/// `(1 − f)^15` term; the sequence itself cannot decide at the plan's alpha before about 12).
pub const MIN_EARLY_PASS: usize = 15;

/// Equal-weight alternatives `1/2 ± d` of the mixture martingale.
const MIXTURE: [f64; 9] = [0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40, 0.45];

/// Samples taken between two looks after the first: an eighth of the cap, at least 5 and at
/// least one per session.
pub fn batch_size(cap: usize, concurrency: usize) -> usize {
    (cap / 8).max(5).max(concurrency).max(1)
}

/// How many samples to have after `taken`, for a probe capped at `cap` (`cap` when done).
pub fn next_look(taken: usize, cap: usize, concurrency: usize) -> usize {
    if taken < MIN_EARLY_PASS {
        MIN_EARLY_PASS.max(concurrency).min(cap)
    } else {
        (taken + batch_size(cap, concurrency)).min(cap)
    }
}

/// What a look at the samples so far decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// The median ratio is confidently within the allowed increase.
    Pass,
    /// The median ratio is confidently above it (confirmed by re-measurement).
    Fail,
    /// Neither yet.
    Undecided,
    /// A sample above the tail guard, or a median already half-way to the allowed increase:
    /// never passed early, judged by the fixed test at the cap.
    Suspect,
}

/// One look: the decision and the bounds behind it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Look {
    /// The decision.
    pub decision: Decision,
    /// Upper bound of the window's median (machine-adjusted), ms.
    pub median_upper_ms: Option<f64>,
    /// Lower bound of the window's median, ms.
    pub median_lower_ms: Option<f64>,
    /// Upper bound of the post/baseline median ratio (`median_upper_ms / b_lo`).
    pub ratio_upper: Option<f64>,
    /// Lower bound of the ratio (`median_lower_ms / b_hi`).
    pub ratio_lower: Option<f64>,
}

/// How a probe's samples were taken in one window, as its verdict states it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// Samples taken.
    pub samples: usize,
    /// The probe's cap (`samples` in the plan).
    pub cap: usize,
    /// The last look's decision.
    pub decision: Decision,
    /// Confidence of the sequence (1 − alpha).
    pub confidence: f64,
    /// Upper bound of the post/baseline median ratio at the last look.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_upper: Option<f64>,
    /// Lower bound of the post/baseline median ratio at the last look.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_lower: Option<f64>,
}

impl Sampling {
    /// Whether the window stopped before the cap.
    pub fn stopped_early(&self) -> bool {
        self.samples < self.cap && matches!(self.decision, Decision::Pass | Decision::Fail)
    }

    /// `pass` or `fail`: the decision as a word.
    pub fn decision_label(&self) -> &'static str {
        match self.decision {
            Decision::Pass => "pass",
            Decision::Fail => "fail",
            Decision::Undecided => "undecided",
            Decision::Suspect => "suspect",
        }
    }

    /// `pass after 15 of 40 samples (median ratio ≤ ×1.21, 99% confidence sequence)`, or how a
    /// window that sampled to the cap was judged.
    pub fn describe(&self) -> String {
        let (n, cap) = (self.samples, self.cap);
        let bound = |sign: &str, r: Option<f64>| match r {
            Some(r) if r.is_finite() => format!(
                " (median ratio {sign} ×{r:.2}, {} confidence sequence)",
                percent(self.confidence)
            ),
            _ => String::new(),
        };
        match self.decision {
            Decision::Pass if self.stopped_early() => {
                format!(
                    "pass after {n} of {cap} samples{}",
                    bound("≤", self.ratio_upper)
                )
            }
            Decision::Fail if self.stopped_early() => {
                format!(
                    "fail after {n} of {cap} samples{}",
                    bound("≥", self.ratio_lower)
                )
            }
            Decision::Suspect => {
                format!("{n} of {cap} samples (tail or median suspect: judged on all of them)")
            }
            _ => format!("{n} of {cap} samples"),
        }
    }
}

/// `log` of the mixture martingale after `n` coins of which `k` came up (alternatives `1/2 +
/// d` when `up`, `1/2 - d` otherwise).
fn log_mixture(n: usize, k: usize, up: bool) -> f64 {
    let (n, k) = (n as f64, k as f64);
    let term = |d: f64| {
        let p = if up { 0.5 + d } else { 0.5 - d };
        k * (2.0 * p).ln() + (n - k) * (2.0 * (1.0 - p)).ln()
    };
    let max = MIXTURE
        .iter()
        .map(|&d| term(d))
        .fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = MIXTURE.iter().map(|&d| (term(d) - max).exp()).sum();
    max + (sum / MIXTURE.len() as f64).ln()
}

/// The most samples reaching `θ` of `n` that still rule out "median ≥ θ" at level `alpha`
/// (`None`: none). The mixture falls as `k` grows, so a binary search finds it.
fn most_reaching(n: usize, alpha: f64) -> Option<usize> {
    static CACHE: Cache = OnceLock::new();
    cached(&CACHE, n, alpha, || search_most_reaching(n, alpha))
}

/// Order-statistic ranks by `(alpha, n)`: they depend on nothing else, and a window looks
/// up the same few again and again.
type Cache = OnceLock<Mutex<HashMap<(u64, usize), Option<usize>>>>;

fn cached(cache: &Cache, n: usize, alpha: f64, f: impl FnOnce() -> Option<usize>) -> Option<usize> {
    let cache = cache.get_or_init(Default::default);
    let key = (alpha.to_bits(), n);
    if let Some(k) = cache.lock().ok().and_then(|c| c.get(&key).copied()) {
        return k;
    }
    let k = f();
    if let Ok(mut c) = cache.lock() {
        c.insert(key, k);
    }
    k
}

fn search_most_reaching(n: usize, alpha: f64) -> Option<usize> {
    let level = (1.0 / alpha).ln();
    let rules_out = |k: usize| log_mixture(n, k, false) >= level;
    if !rules_out(0) {
        return None;
    }
    // rules_out(lo) holds, rules_out(hi) does not (or hi = n + 1).
    let (mut lo, mut hi) = (0, n + 1);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if rules_out(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(lo)
}

/// The fewest samples exceeding `θ` of `n` that rule out "median ≤ θ" at level `alpha`. By
/// symmetry of the mixture, `n` minus [`most_reaching`].
fn fewest_exceeding(n: usize, alpha: f64) -> Option<usize> {
    most_reaching(n, alpha).map(|k| n - k)
}

/// Distribution-free one-sided bounds `(lo, hi)` of the median of `sorted`, each at level
/// `alpha` (order statistics `k` and `n + 1 − k`, `k` the largest with `P(Bin(n, ½) ≤ k − 1)
/// ≤ alpha`). `None` when there are too few samples.
pub fn median_bounds(sorted: &[f64], alpha: f64) -> Option<(f64, f64)> {
    static CACHE: Cache = OnceLock::new();
    let n = sorted.len();
    let k = cached(&CACHE, n, alpha, || {
        (1..=n / 2)
            .take_while(|&k| binomial_cdf(k as u64 - 1, n as u64, 0.5) <= alpha)
            .last()
    })?;
    Some((sorted[k - 1], sorted[n - k]))
}

/// The median threshold of a regression over baseline median `b`.
fn threshold(b: f64, ratio: f64, floor_ms: f64) -> f64 {
    (ratio * b).max(b + floor_ms)
}

/// The baseline figures a look compares with, computed once per window.
#[derive(Debug, Clone)]
pub struct Reference {
    median: Option<f64>,
    bounds: Option<(f64, f64)>,
    tail_ms: Option<f64>,
    regression: Regression,
    control_ms: Vec<f64>,
}

impl Reference {
    /// The reference for `baseline` under the thresholds `r`.
    pub fn new(baseline: &LatencySamples, r: &Regression) -> Reference {
        let mut b = baseline.ms.clone();
        b.sort_by(f64::total_cmp);
        let tail = |p: f64, ratio: f64| percentile(&b, p).map(|x| threshold(x, ratio, r.floor_ms));
        let tail_ms = match (tail(0.95, r.p95_ratio), tail(0.99, r.p99_ratio)) {
            (Some(a), Some(c)) => Some(a.min(c)),
            (a, c) => a.or(c),
        };
        Reference {
            median: percentile(&b, 0.5),
            bounds: median_bounds(&b, r.alpha / 2.0),
            tail_ms,
            regression: *r,
            control_ms: baseline.control_ms.clone(),
        }
    }

    /// Look at a window's samples so far (as measured: the machine factor of their control
    /// query is discounted here, as the fixed test does).
    pub fn look(&self, window: &LatencySamples) -> Look {
        self.look_at(window, self.machine_factor(window))
    }

    /// The machine factor of this probe's own control query in `window`.
    pub fn machine_factor(&self, window: &LatencySamples) -> f64 {
        machine_factor(&self.control_ms, &window.control_ms)
    }

    /// Look at a window's samples with the machine factor `factor` discounted.
    pub fn look_at(&self, window: &LatencySamples, factor: f64) -> Look {
        let post: Vec<f64> = window.ms.iter().map(|ms| ms / factor).collect();
        self.look_adjusted(&post)
    }

    /// Look at machine-adjusted samples.
    pub fn look_adjusted(&self, post: &[f64]) -> Look {
        let r = &self.regression;
        let undecided = Look {
            decision: Decision::Undecided,
            median_upper_ms: None,
            median_lower_ms: None,
            ratio_upper: None,
            ratio_lower: None,
        };
        let (Some((b_lo, b_hi)), Some(b_med)) = (self.bounds, self.median) else {
            return undecided;
        };
        let n = post.len();
        if n == 0 || post.iter().any(|x| !x.is_finite()) {
            return undecided;
        }
        let mut sorted = post.to_vec();
        sorted.sort_by(f64::total_cmp);
        let alpha = r.alpha / 2.0;
        let upper = most_reaching(n, alpha).map(|k| sorted[n - 1 - k]);
        let lower = fewest_exceeding(n, alpha).map(|k| sorted[n - k]);
        let ratio = |x: Option<f64>, b: f64| x.filter(|_| b > 0.0).map(|x| x / b);
        let mut look = Look {
            median_upper_ms: upper,
            median_lower_ms: lower,
            ratio_upper: ratio(upper, b_lo),
            ratio_lower: ratio(lower, b_hi),
            ..undecided
        };
        let (pass_at, fail_at) = (
            threshold(b_lo, r.median_ratio, r.floor_ms),
            threshold(b_hi, r.median_ratio, r.floor_ms),
        );
        if lower.is_some_and(|l| l > fail_at) {
            look.decision = Decision::Fail;
            return look;
        }
        let half = 1.0 + (r.median_ratio - 1.0) / 2.0;
        let point = percentile(&sorted, 0.5).unwrap_or(f64::INFINITY);
        let suspect = self
            .tail_ms
            .is_some_and(|t| sorted.last().is_some_and(|&max| max > t))
            || point > (half * b_med).max(b_med + r.floor_ms / 2.0);
        look.decision = if suspect {
            Decision::Suspect
        } else if n >= MIN_EARLY_PASS && upper.is_some_and(|u| u < pass_at) {
            Decision::Pass
        } else {
            Decision::Undecided
        };
        look
    }

    /// Whether a window with these samples so far may stop sampling.
    pub fn stops(&self, window: &LatencySamples) -> bool {
        matches!(self.look(window).decision, Decision::Pass | Decision::Fail)
    }

    /// How a window with these samples was taken, against the probe's `cap`.
    pub fn sampling(&self, window: &LatencySamples, cap: usize) -> Sampling {
        self.sampling_at(window, cap, self.machine_factor(window))
    }

    /// [`sampling`](Self::sampling) with the machine factor `factor` discounted.
    pub fn sampling_at(&self, window: &LatencySamples, cap: usize, factor: f64) -> Sampling {
        let look = self.look_at(window, factor);
        Sampling {
            samples: window.ms.len(),
            cap,
            decision: look.decision,
            confidence: 1.0 - self.regression.alpha,
            ratio_upper: look.ratio_upper,
            ratio_lower: look.ratio_lower,
        }
    }
}

#[cfg(test)]
mod tests;
