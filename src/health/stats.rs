//! Small, dependency-free statistics used by the latency regression gate.
//!
//! Every function is pure and works on latency samples in milliseconds.
//! Inputs are never required to be finite: sorting uses the IEEE 754 total
//! order (`f64::total_cmp`, with `-0.0` and `+0.0` treated as equal), so NaN
//! never causes a panic. A positive NaN sorts above `+inf` and a negative NaN
//! below `-inf`; callers that do not want that behaviour should filter
//! non-finite samples before calling in.

use std::cmp::Ordering;

/// Largest sample size (of each sample) for which the exact null distribution
/// of the Mann–Whitney U statistic is used when there are no ties.
const EXACT_MAX_N: usize = 20;

/// Total order on `f64`: `f64::total_cmp`, except that `-0.0 == +0.0`.
///
/// Nothing lies strictly between `-0.0` and `+0.0` in the total order, so
/// merging them keeps the order transitive.
fn cmp_f64(a: &f64, b: &f64) -> Ordering {
    if a == b {
        Ordering::Equal
    } else {
        a.total_cmp(b)
    }
}

/// Returns a copy of `samples` sorted ascending in the total order.
fn sorted_copy(samples: &[f64]) -> Vec<f64> {
    let mut v = samples.to_vec();
    v.sort_by(cmp_f64);
    v
}

/// The `p`-quantile (`p` in `[0, 1]`) of an already **ascending-sorted** slice.
///
/// Uses linear interpolation between closest ranks, i.e. Hyndman & Fan's
/// definition 7 ("R-7"), which is also Excel's `PERCENTILE.INC` and the
/// default (`method="linear"`) of `numpy.percentile` / `numpy.quantile`:
/// with `n = sorted.len()` and `h = (n - 1) * p`,
/// `result = x[floor(h)] + (h - floor(h)) * (x[floor(h) + 1] - x[floor(h)])`
/// (0-based indexing). `p = 0` gives the minimum and `p = 1` the maximum.
///
/// The slice is not checked for sortedness; an unsorted slice gives a
/// meaningless (but non-panicking) answer. Sort with `f64::total_cmp`.
///
/// Returns `None` when `sorted` is empty or `p` is outside `[0, 1]` (NaN
/// included).
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() || !(0.0..=1.0).contains(&p) {
        return None;
    }
    let last = sorted.len() - 1;
    let h = last as f64 * p;
    // `h` is in [0, last], so the cast cannot truncate to a wrong index; `min`
    // guards against any rounding surprise anyway.
    let lo = (h.floor() as usize).min(last);
    let hi = (lo + 1).min(last);
    let frac = h - lo as f64;
    let (a, b) = (sorted[lo], sorted[hi]);
    if frac <= 0.0 || a.total_cmp(&b).is_eq() {
        // Exactly on a rank, or equal neighbours: no interpolation, which
        // keeps a NaN/infinite neighbour from leaking in (`0 * inf = NaN`,
        // `inf - inf = NaN`).
        return Some(a);
    }
    Some(a + frac * (b - a))
}

/// The median of unsorted `samples` (sorts a copy), i.e. `percentile(_, 0.5)`:
/// the middle value, or the mean of the two middle values for an even count.
///
/// Returns `None` for an empty slice.
pub fn median(samples: &[f64]) -> Option<f64> {
    // The same two order statistics `percentile` reads from a sorted copy, found by selection
    // (linear time: the Hodges–Lehmann shift takes the median of n1 × n2 differences).
    if samples.len() < 3 {
        return percentile(&sorted_copy(samples), 0.5);
    }
    let mut v = samples.to_vec();
    let last = v.len() - 1;
    let lo = last / 2;
    let (_, &mut a, right) = v.select_nth_unstable_by(lo, cmp_f64);
    let frac = last as f64 * 0.5 - lo as f64;
    if frac <= 0.0 {
        return Some(a);
    }
    let b = right.iter().copied().min_by(cmp_f64).unwrap_or(a);
    if a.total_cmp(&b).is_eq() {
        return Some(a);
    }
    Some(a + frac * (b - a))
}

/// Result of a one-sided Mann–Whitney U test (see [`mann_whitney_greater`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// U statistic of the `post` sample: the number of pairs `(x, y)` with
    /// `x` from `post`, `y` from `baseline` and `x > y`, plus 0.5 per tie.
    /// Ranges from 0 to `post.len() * baseline.len()`.
    pub u: f64,
    /// Standardised statistic `(U - n1*n2/2 - 0.5) / sigma` with tie-corrected
    /// `sigma` and continuity correction. Always reported, even when the
    /// p-value comes from the exact distribution. `-inf` when every
    /// observation is tied (zero variance).
    pub z: f64,
    /// One-sided p-value for H1 "post tends to be larger than baseline".
    pub p_value: f64,
}

/// One-sided Mann–Whitney U test of H1 "`post` tends to be larger than
/// `baseline`" (a latency regression).
///
/// `U` is computed from mid-ranks of the pooled samples (ties get the mean of
/// the ranks they span), so it equals the pair count described on
/// [`MannWhitney::u`].
///
/// The p-value is `P(U' >= U)` under H0:
/// - **exact** (the permutation distribution of U, counted by dynamic
///   programming) when both samples have at most 20 values and there are no
///   ties, like `scipy.stats.mannwhitneyu(post, baseline,
///   alternative='greater', method='exact')`;
/// - otherwise the **normal approximation** with tie correction and
///   continuity correction, matching `scipy.stats.mannwhitneyu(post,
///   baseline, alternative='greater', method='asymptotic',
///   use_continuity=True)`.
///
/// Equal samples give a p-value of at least 0.5. Returns `None` when either
/// sample is empty.
pub fn mann_whitney_greater(post: &[f64], baseline: &[f64]) -> Option<MannWhitney> {
    if post.is_empty() || baseline.is_empty() {
        return None;
    }
    let (n1, n2) = (post.len(), baseline.len());

    let mut pooled: Vec<(f64, bool)> = post
        .iter()
        .map(|&x| (x, true))
        .chain(baseline.iter().map(|&y| (y, false)))
        .collect();
    pooled.sort_by(|a, b| cmp_f64(&a.0, &b.0));

    // Sum of the (mid-)ranks of `post`, and sum over tie groups of t^3 - t.
    let mut rank_sum_post = 0.0;
    let mut tie_term = 0.0;
    let mut start = 0;
    while start < pooled.len() {
        let value = pooled[start].0;
        let len = pooled[start..]
            .iter()
            .take_while(|(x, _)| cmp_f64(x, &value).is_eq())
            .count();
        let group = &pooled[start..start + len];
        // 1-based ranks start+1 ..= start+len; their mean:
        let mid_rank = (2 * start + len + 1) as f64 / 2.0;
        let in_post = group.iter().filter(|(_, is_post)| *is_post).count();
        rank_sum_post += mid_rank * in_post as f64;
        let t = len as f64;
        tie_term += t * t * t - t;
        start += len;
    }
    let has_ties = tie_term > 0.0;

    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let u = rank_sum_post - n1f * (n1f + 1.0) / 2.0;

    let n = n1f + n2f;
    let mean = n1f * n2f / 2.0;
    let variance = n1f * n2f / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    let (z, asymptotic_p) = if variance > 0.0 {
        let z = (u - mean - 0.5) / variance.sqrt();
        (z, normal_sf(z))
    } else {
        // Every observation is tied, so U equals its mean: the numerator is
        // -0.5 and z = -0.5 / 0 = -inf (what scipy returns too).
        (f64::NEG_INFINITY, 1.0)
    };

    let p_value = if !has_ties && n1 <= EXACT_MAX_N && n2 <= EXACT_MAX_N {
        exact_sf(u, n1, n2)
    } else {
        asymptotic_p
    };
    Some(MannWhitney { u, z, p_value })
}

/// Exact `P(U >= u)` under H0 for tie-free samples of sizes `n1` and `n2`.
///
/// The number of arrangements giving `U = k` is the coefficient of `q^k` in
/// the Gaussian binomial `[n1 + n2 choose n1]_q = prod_{i=1}^{n1}
/// (1 - q^(n2 + i)) / (1 - q^i)`. After the `i`-th factor the polynomial is
/// `[n2 + i choose i]_q`, whose degree `i * n2` fits in the buffer, so
/// multiplying by `1 - q^m` and dividing (as a power series) by `1 - q^i` is
/// exact in integers. Counts are at most `C(40, 20) < 2^38` for `n <= 20`.
fn exact_sf(u: f64, n1: usize, n2: usize) -> f64 {
    let max_u = n1 * n2;
    let mut counts = vec![0_i64; max_u + 1];
    counts[0] = 1;
    for i in 1..=n1 {
        let m = n2 + i;
        for d in (m..=max_u).rev() {
            counts[d] -= counts[d - m];
        }
        for d in i..=max_u {
            counts[d] += counts[d - i];
        }
    }
    let total: i64 = counts.iter().sum();
    // Without ties U is an integer; round away any representation noise.
    let first = (u.max(0.0).round() as usize).min(max_u + 1);
    let tail: i64 = counts[first..].iter().sum();
    tail as f64 / total as f64
}

/// Upper tail `P(Z > z)` of the standard normal distribution.
fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Complementary error function, W. J. Cody's rational Chebyshev
/// approximations ("Rational Chebyshev approximations for the error
/// function", Math. Comp. 23 (1969) 631–637; coefficients from his CALERF
/// routine, SPECFUN/netlib). Relative error is below about 1e-15.
fn erfc(x: f64) -> f64 {
    const A: [f64; 5] = [
        3.161_123_743_870_565_5,
        113.864_154_151_050_16,
        377.485_237_685_302,
        3_209.377_589_138_469_4,
        0.185_777_706_184_603_15,
    ];
    const B: [f64; 4] = [
        23.601_290_952_344_122,
        244.024_637_934_444_17,
        1_282.616_526_077_372_3,
        2_844.236_833_439_171,
    ];
    const C: [f64; 9] = [
        0.564_188_496_988_670_1,
        8.883_149_794_388_377,
        66.119_190_637_141_63,
        298.635_138_197_400_1,
        881.952_221_241_769,
        1_712.047_612_634_070_7,
        2_051.078_377_826_071_6,
        1_230.339_354_797_997_2,
        2.153_115_354_744_038_7e-8,
    ];
    const D: [f64; 8] = [
        15.744_926_110_709_835,
        117.693_950_891_312_5,
        537.181_101_862_009_9,
        1_621.389_574_566_690_3,
        3_290.799_235_733_459_7,
        4_362.619_090_143_247,
        3_439.367_674_143_721_6,
        1_230.339_354_803_749_3,
    ];
    const P: [f64; 6] = [
        0.305_326_634_961_232_36,
        0.360_344_899_949_804_45,
        0.125_781_726_111_229_23,
        0.016_083_785_148_742_28,
        0.000_658_749_161_529_837_8,
        0.016_315_387_137_302_097,
    ];
    const Q: [f64; 5] = [
        2.568_520_192_289_822,
        1.872_952_849_923_467_3,
        0.527_905_102_951_428_5,
        0.060_518_341_312_441_32,
        0.002_335_204_976_268_691_8,
    ];
    /// 1 / sqrt(pi).
    const FRAC_1_SQRT_PI: f64 = 0.564_189_583_547_756_3;
    /// Beyond this, erfc(x) underflows to zero.
    const XBIG: f64 = 26.543;

    if x.is_nan() {
        return x;
    }
    let y = x.abs();
    if y <= 0.468_75 {
        let ysq = y * y;
        let mut num = A[4] * ysq;
        let mut den = ysq;
        for (a, b) in A.iter().zip(B.iter()).take(3) {
            num = (num + a) * ysq;
            den = (den + b) * ysq;
        }
        let erf = x * (num + A[3]) / (den + B[3]);
        return 1.0 - erf;
    }
    let tail = if y >= XBIG {
        0.0
    } else {
        let r = if y <= 4.0 {
            let mut num = C[8] * y;
            let mut den = y;
            for (c, d) in C.iter().zip(D.iter()).take(7) {
                num = (num + c) * y;
                den = (den + d) * y;
            }
            (num + C[7]) / (den + D[7])
        } else {
            let ysq = 1.0 / (y * y);
            let mut num = P[5] * ysq;
            let mut den = ysq;
            for (p, q) in P.iter().zip(Q.iter()).take(4) {
                num = (num + p) * ysq;
                den = (den + q) * ysq;
            }
            let r = ysq * (num + P[4]) / (den + Q[4]);
            (FRAC_1_SQRT_PI - r) / y
        };
        // exp(-y^2) computed as exp(-s^2) * exp(-(y - s)(y + s)) with s = y
        // rounded down to a multiple of 1/16, to limit cancellation error.
        let s = (y * 16.0).trunc() / 16.0;
        let del = (y - s) * (y + s);
        (-s * s).exp() * (-del).exp() * r
    };
    if x < 0.0 {
        2.0 - tail
    } else {
        tail
    }
}

/// Hodges–Lehmann estimate of the location shift from `baseline` to `post`:
/// the median of all `post.len() * baseline.len()` pairwise differences
/// `post[i] - baseline[j]` (positive means `post` is slower).
///
/// Uses `O(n1 * n2)` memory. Returns `None` when either sample is empty.
pub fn hodges_lehmann_shift(post: &[f64], baseline: &[f64]) -> Option<f64> {
    let mut diffs = Vec::with_capacity(post.len() * baseline.len());
    for x in post {
        for y in baseline {
            diffs.push(x - y);
        }
    }
    median(&diffs)
}

/// Count, mean and variance of a sample, when only those summary figures are known (e.g.
/// PostgreSQL's `pg_stat_statements` keeps per-statement call counts, total and
/// standard deviation of execution time, not the individual times).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moments {
    /// Number of observations.
    pub n: f64,
    /// Their mean.
    pub mean: f64,
    /// Their (population) variance.
    pub variance: f64,
}

/// One-sided test that the mean of `post` exceeds the mean of `baseline`, from summary
/// figures only: Welch's unequal-variance statistic
/// `z = (mean_post - mean_base) / sqrt(var_post / n_post + var_base / n_base)` with the
/// standard normal upper tail as the p-value (a large-sample z-test: with at least a few
/// dozen observations per side the t distribution Welch's test would use is close to normal).
/// A proportion is a mean too: `k` of `n` events is `mean = k/n`,
/// `variance = mean * (1 - mean)`.
///
/// Returns `None` when either side has no observations, a figure is not finite, or both
/// variances are zero (every observation equal: nothing to test).
pub fn welch_mean_greater(post: Moments, baseline: Moments) -> Option<f64> {
    let figures = [
        post.n,
        post.mean,
        post.variance,
        baseline.n,
        baseline.mean,
        baseline.variance,
    ];
    if post.n < 1.0 || baseline.n < 1.0 || figures.iter().any(|f| !f.is_finite()) {
        return None;
    }
    let se2 = post.variance.max(0.0) / post.n + baseline.variance.max(0.0) / baseline.n;
    if se2 <= 0.0 {
        return None;
    }
    Some(normal_sf((post.mean - baseline.mean) / se2.sqrt()))
}

/// One-sided exact (Clopper–Pearson) upper confidence bound on a proportion: with `lost`
/// failures in `n` independent trials, the largest failure rate `p` for which seeing at most
/// `lost` failures still has probability at least `1 - confidence`. A true rate above the bound
/// would have produced more failures than were seen, except with probability `1 - confidence`.
///
/// With no failures this is `1 - (1 - confidence)^(1/n)` (about `3/n` at 95%: the "rule of
/// three"); otherwise the root of `P(X <= lost; n, p) = 1 - confidence`, found by bisection on
/// the exact binomial distribution (equivalently the `confidence` quantile of
/// `Beta(lost + 1, n - lost)`, as R's `binom.test` computes it).
///
/// Returns `None` when `n` is 0, `lost > n`, or `confidence` is not strictly between 0 and 1.
pub fn clopper_pearson_upper(lost: u64, n: u64, confidence: f64) -> Option<f64> {
    if n == 0 || lost > n || !(confidence > 0.0 && confidence < 1.0) {
        return None;
    }
    if lost == n {
        return Some(1.0);
    }
    let alpha = 1.0 - confidence;
    if lost == 0 {
        return Some(1.0 - alpha.powf(1.0 / n as f64));
    }
    // P(X <= lost) falls as p rises: find where it crosses alpha.
    let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if binomial_cdf(lost, n, mid) > alpha {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-15 {
            break;
        }
    }
    Some(0.5 * (lo + hi))
}

/// `P(X <= k)` for `X ~ Binomial(n, p)`, summed term by term in log space (exact to rounding
/// for the sample sizes a gate uses).
pub fn binomial_cdf(k: u64, n: u64, p: f64) -> f64 {
    if k >= n || p <= 0.0 {
        return 1.0;
    }
    if p >= 1.0 {
        return 0.0;
    }
    let (ln_p, ln_q) = (p.ln(), (-p).ln_1p());
    let nf = n as f64;
    let mut ln_choose = 0.0_f64;
    let mut sum = 0.0_f64;
    for i in 0..=k {
        if i > 0 {
            let f = i as f64;
            ln_choose += (nf - f + 1.0).ln() - f.ln();
        }
        let f = i as f64;
        sum += (ln_choose + f * ln_p + (nf - f) * ln_q).exp();
    }
    sum.min(1.0)
}

/// One-sided Fisher exact test: the p-value of seeing at least `a` failures among `n1`
/// actions when `a + b` failures fell among `n1 + n2` actions with no difference between the
/// two groups (the upper tail of the hypergeometric distribution, as R's
/// `fisher.test(alternative = "greater")` computes it for the 2×2 table). Summed term by
/// term in log space with log-factorials; `1.0` when the counts are impossible.
pub fn fisher_greater(a: u64, n1: u64, b: u64, n2: u64) -> f64 {
    if a > n1 || b > n2 {
        return 1.0;
    }
    let (k, n) = (a + b, n1 + n2);
    let mut ln_fact = Vec::with_capacity(n as usize + 1);
    ln_fact.push(0.0_f64);
    for i in 1..=n {
        ln_fact.push(ln_fact[i as usize - 1] + (i as f64).ln());
    }
    let ln_choose =
        |n: u64, r: u64| ln_fact[n as usize] - ln_fact[r as usize] - ln_fact[(n - r) as usize];
    let total = ln_choose(n, n1);
    let top = k.min(n1);
    let mut p = 0.0;
    for x in a..=top {
        if n1 - x > n - k {
            continue;
        }
        p += (ln_choose(k, x) + ln_choose(n - k, n1 - x) - total).exp();
    }
    p.min(1.0)
}

/// How much slower the machine was in the window than at baseline, from the control query
/// timed alongside the probe: the ratio of the control medians, never below 1 (a faster
/// machine is not credited). 1 when either window has no control samples.
pub fn machine_factor(baseline_control: &[f64], control: &[f64]) -> f64 {
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        percentile(&v, 0.5)
    };
    match (median(baseline_control), median(control)) {
        (Some(b), Some(c)) if b > 0.0 && c.is_finite() => (c / b).max(1.0),
        _ => 1.0,
    }
}

/// How much slower (above 1) or faster (below 1) the write control committed in a window than
/// at the baseline: the ratio of their medians, both ways (1 when either is missing).
///
/// Unlike [`machine_factor`], a faster disk is credited: a commit waits for the disk's flush,
/// which on a shared machine flips between fast and slow spells, so a baseline whose writes
/// happened to fall in a slow spell makes every later write look fast. Not crediting it hid
/// regressions: a release adding 8 ms to each save is ×7 over a 1.2 ms flush but ×1.5 over a
/// 15 ms one, below the write ratio. Dividing the window's writes by the control's ratio
/// puts them on the baseline's disk; a clean window's writes, which flush as the controls
/// do, stay where the baseline's were.
pub fn disk_factor(baseline_control: &[f64], control: &[f64]) -> f64 {
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        percentile(&v, 0.5)
    };
    match (median(baseline_control), median(control)) {
        (Some(b), Some(c)) if b > 0.0 && c > 0.0 && c.is_finite() => c / b,
        _ => 1.0,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fisher_matches_the_exact_hypergeometric_tail() {
        // Reference values: the exact sums in rational arithmetic (R's fisher.test agrees).
        assert_close(fisher_greater(5, 100, 0, 100), 0.029691605234293292, 1e-12);
        assert_close(fisher_greater(3, 100, 2, 100), 0.5, 1e-12);
        assert_close(
            fisher_greater(30, 1000, 10, 1000),
            0.0010041667809150049,
            1e-12,
        );
        assert_close(fisher_greater(0, 50, 3, 50), 1.0, 1e-12);
        assert_eq!(fisher_greater(3, 2, 0, 5), 1.0);
    }

    use super::*;

    fn assert_close(actual: f64, expected: f64, tol: f64) {
        assert!(
            (actual - expected).abs() <= tol,
            "expected {expected}, got {actual} (tolerance {tol})"
        );
    }

    fn assert_rel_close(actual: f64, expected: f64, rel: f64) {
        assert!(
            (actual - expected).abs() <= rel * expected.abs(),
            "expected {expected}, got {actual} (relative tolerance {rel})"
        );
    }

    // ---------------------------------------------------------------- percentile

    #[test]
    fn percentile_matches_numpy_linear_default() {
        // numpy.percentile([1, 2, 3, 4], q) (method="linear"): h = 3 * p.
        let x = [1.0, 2.0, 3.0, 4.0];
        // p = 0.95: h = 2.85 -> x[2] + 0.85 * (x[3] - x[2]) = 3 + 0.85 = 3.85
        assert_close(percentile(&x, 0.95).unwrap(), 3.85, 1e-12);
        // p = 0.25: h = 0.75 -> 1 + 0.75 * 1 = 1.75
        assert_close(percentile(&x, 0.25).unwrap(), 1.75, 1e-12);
        // p = 0.5: h = 1.5 -> 2 + 0.5 * 1 = 2.5
        assert_close(percentile(&x, 0.5).unwrap(), 2.5, 1e-12);
        // [10, 20, 30, 40, 50], p = 0.9: h = 4 * 0.9 = 3.6 -> 40 + 0.6 * 10 = 46
        let y = [10.0, 20.0, 30.0, 40.0, 50.0];
        assert_close(percentile(&y, 0.9).unwrap(), 46.0, 1e-12);
    }

    #[test]
    fn percentile_matches_wikipedia_c1_example() {
        // Wikipedia "Percentile", second variant (C = 1), list
        // {15, 20, 35, 40, 50}: 40th percentile = 29.
        // h = 4 * 0.4 = 1.6 -> 20 + 0.6 * (35 - 20) = 29.
        let x = [15.0, 20.0, 35.0, 40.0, 50.0];
        assert_close(percentile(&x, 0.4).unwrap(), 29.0, 1e-12);
    }

    #[test]
    fn percentile_endpoints_are_min_and_max() {
        let x = [1.5, 2.0, 9.0];
        assert_eq!(percentile(&x, 0.0), Some(1.5));
        assert_eq!(percentile(&x, 1.0), Some(9.0));
    }

    #[test]
    fn percentile_of_single_value_is_that_value() {
        for p in [0.0, 0.3, 0.5, 0.99, 1.0] {
            assert_eq!(percentile(&[7.0], p), Some(7.0));
        }
    }

    #[test]
    fn percentile_rejects_empty_input_and_out_of_range_p() {
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[1.0], -0.01), None);
        assert_eq!(percentile(&[1.0], 1.01), None);
        assert_eq!(percentile(&[1.0], f64::NAN), None);
    }

    #[test]
    fn percentile_between_equal_infinities_is_infinite_not_nan() {
        let x = [1.0, f64::INFINITY, f64::INFINITY];
        assert_eq!(percentile(&x, 0.75), Some(f64::INFINITY));
    }

    #[test]
    fn percentile_exactly_on_a_rank_ignores_infinite_neighbour() {
        // h = 2 * 0.5 = 1 exactly: the answer is x[1], untouched by x[2].
        let x = [1.0, 2.0, f64::INFINITY];
        assert_eq!(percentile(&x, 0.5), Some(2.0));
    }

    // -------------------------------------------------------------------- median

    #[test]
    fn median_of_unsorted_odd_and_even_samples() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn median_with_nan_does_not_panic_and_sorts_nan_last() {
        // Total order puts +NaN above every number: sorted [1, 2, NaN].
        assert_eq!(median(&[f64::NAN, 2.0, 1.0]), Some(2.0));
    }

    // ---------------------------------------------------------------------- erfc

    #[test]
    fn erfc_matches_reference_values() {
        // Reference: Python's math.erfc (correctly rounded libm), printed
        // with repr().
        let cases = [
            (-3.0, 1.999_977_909_503_001_5),
            (-1.0, 1.842_700_792_949_715),
            (-0.3, 1.328_626_759_459_127_4),
            (0.0, 1.0),
            (0.1, 0.887_537_083_981_715_2),
            (0.468_75, 0.507_386_526_782_062),
            (0.5, 0.479_500_122_186_953_5),
            (1.0, 0.157_299_207_050_285_13),
            (2.0, 0.004_677_734_981_047_265),
            (3.9, 3.479_224_859_723_177e-8),
            (4.0, 1.541_725_790_028_002e-8),
            (4.5, 1.966_160_441_542_887_3e-10),
            (6.0, 2.151_973_671_249_891_6e-17),
            (10.0, 2.088_487_583_762_545e-45),
            (26.0, 5.663_192_408_856_143e-296),
        ];
        for (x, expected) in cases {
            assert_rel_close(erfc(x), expected, 1e-13);
        }
        assert_eq!(erfc(f64::INFINITY), 0.0);
        assert_eq!(erfc(f64::NEG_INFINITY), 2.0);
        assert!(erfc(f64::NAN).is_nan());
    }

    // -------------------------------------------------------------- Mann–Whitney

    #[test]
    fn mann_whitney_scipy_doc_example_exact() {
        // scipy.stats.mannwhitneyu docs: males vs females, U1 = 17 and exact
        // two-sided p = 0.1111. By hand: pairs male > female are 3 (19) +
        // 4 (22) + 2 (16) + 4 (29) + 4 (24) = 17. Under H0, P(U >= 17) =
        // P(U <= 3) by symmetry (max U = 20) = (1 + 1 + 2 + 3) / C(9, 4)
        // = 7 / 126 = 0.0556 (half of the two-sided 14 / 126 = 0.1111).
        let males = [19.0, 22.0, 16.0, 29.0, 24.0];
        let females = [20.0, 11.0, 17.0, 12.0];
        let r = mann_whitney_greater(&males, &females).unwrap();
        assert_eq!(r.u, 17.0);
        assert_close(r.p_value, 7.0 / 126.0, 1e-15);
        // z is the continuity-corrected normal statistic (see next test).
        assert_close(r.z, 1.592_168_332_809_065_7, 1e-12);
    }

    #[test]
    fn mann_whitney_normal_approximation_matches_scipy_doc_example() {
        // Same data; scipy docs: mannwhitneyu(males, females,
        // method="asymptotic").pvalue = 0.11134688653314041 (two-sided,
        // U = max(U1, U2) = 17, so the 'greater' p-value is exactly half).
        // By hand: mu = 20 / 2 = 10, sigma^2 = 20 / 12 * 10 = 16.667,
        // z = (17 - 10 - 0.5) / 4.0825 = 1.59217.
        // Through the public API the exact path is taken (n <= 20, no
        // ties), so test the approximation via normal_sf directly.
        let z = (17.0 - 10.0 - 0.5) / (20.0_f64 / 12.0 * 10.0).sqrt();
        assert_close(normal_sf(z), 0.111_346_886_533_140_41 / 2.0, 1e-12);
    }

    #[test]
    fn mann_whitney_large_sample_with_ties_uses_normal_approximation() {
        // baseline: 10 x 1 ms, 8 x 2 ms, 3 x 3 ms (n2 = 21)
        // post:      4 x 1 ms, 8 x 2 ms, 9 x 3 ms (n1 = 21)
        // Pooled (N = 42): value 1 -> 14 obs, ranks 1..14, mid-rank 7.5;
        //                  value 2 -> 16 obs, ranks 15..30, mid-rank 22.5;
        //                  value 3 -> 12 obs, ranks 31..42, mid-rank 36.5.
        // R1 = 4 * 7.5 + 8 * 22.5 + 9 * 36.5 = 30 + 180 + 328.5 = 538.5
        // U1 = 538.5 - 21 * 22 / 2 = 307.5
        //   (pair count: 4 * 5 + 8 * (10 + 4) + 9 * (18 + 1.5) = 307.5)
        // mu = 21 * 21 / 2 = 220.5
        // tie term = (14^3 - 14) + (16^3 - 16) + (12^3 - 12)
        //          = 2730 + 4080 + 1716 = 8526; N (N - 1) = 1722
        // sigma^2 = 441 / 12 * (43 - 8526 / 1722) = 36.75 * 1560 / 41
        //         = 57330 / 41 = 1398.29268..., sigma = 37.3937519...
        // z = (307.5 - 220.5 - 0.5) / 37.3937519 = 86.5 / 37.3937519
        //   = 2.31322067...
        // p = 1 - Phi(2.31322) = 0.0103553 (table: Phi(2.31) = 0.98956,
        //   Phi(2.32) = 0.98983 -> 1 - 0.98965 = 0.01035); the exact
        //   digits below are 0.5 * math.erfc(z / sqrt(2)) in Python.
        let mut baseline = vec![1.0; 10];
        baseline.extend([2.0; 8]);
        baseline.extend([3.0; 3]);
        let mut post = vec![1.0; 4];
        post.extend([2.0; 8]);
        post.extend([3.0; 9]);
        let r = mann_whitney_greater(&post, &baseline).unwrap();
        assert_eq!(r.u, 307.5);
        assert_close(r.z, 2.313_220_673_246_013_4, 1e-12);
        assert_rel_close(r.p_value, 0.010_355_254_750_886_582, 1e-10);
    }

    #[test]
    fn mann_whitney_small_sample_with_ties_uses_tie_corrected_variance() {
        // post = [2, 3, 3], baseline = [1, 2, 3].
        // Pairs: 2 -> (1 + 0.5 + 0) = 1.5; each 3 -> (1 + 1 + 0.5) = 2.5.
        // U1 = 1.5 + 2 * 2.5 = 6.5; mu = 9 / 2 = 4.5.
        // Tie groups: {2, 2} (t = 2 -> 6), {3, 3, 3} (t = 3 -> 24): 30.
        // sigma^2 = 9 / 12 * (7 - 30 / 30) = 4.5, sigma = 3 / sqrt(2).
        // z = (6.5 - 4.5 - 0.5) / (3 / sqrt(2)) = 1 / sqrt(2) = 0.70711.
        // p = 1 - Phi(1/sqrt 2) = 0.5 * erfc(0.5) = 0.5 * 0.4795001221869535.
        let r = mann_whitney_greater(&[2.0, 3.0, 3.0], &[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(r.u, 6.5);
        assert_close(r.z, std::f64::consts::FRAC_1_SQRT_2, 1e-12);
        assert_close(r.p_value, 0.5 * 0.479_500_122_186_953_5, 1e-12);
    }

    #[test]
    fn mann_whitney_identical_samples_are_not_significant() {
        // Every value appears once in each sample -> ties -> U = mu and
        // z = -0.5 / sigma < 0, so p > 0.5.
        let x: Vec<f64> = (1..=30).map(f64::from).collect();
        let r = mann_whitney_greater(&x, &x).unwrap();
        assert_eq!(r.u, 450.0);
        assert!(r.z < 0.0);
        assert!(r.p_value >= 0.5, "p = {}", r.p_value);

        let small = [5.0, 1.0, 3.0];
        let r = mann_whitney_greater(&small, &small).unwrap();
        assert!(r.p_value >= 0.5, "p = {}", r.p_value);
    }

    #[test]
    fn mann_whitney_all_values_equal_gives_p_one() {
        // Zero variance: z = -0.5 / 0 = -inf, p = 1 (as scipy).
        let r = mann_whitney_greater(&[4.0; 5], &[4.0; 7]).unwrap();
        assert_eq!(r.u, 17.5);
        assert_eq!(r.z, f64::NEG_INFINITY);
        assert_eq!(r.p_value, 1.0);
    }

    #[test]
    fn mann_whitney_interleaved_samples_at_the_mean_exact_p_at_least_half() {
        // post = [1, 4, 5, 8], baseline = [2, 3, 6, 7]: U1 = 0 + 2 + 2 + 4
        // = 8 = mu. Partitions of 8 into at most 4 parts each <= 4 are
        // 44, 431, 422, 4211, 332, 3311, 3221, 2222 -> P(U = 8) = 8 / 70,
        // so P(U >= 8) = ((70 - 8) / 2 + 8) / 70 = 39 / 70.
        let r = mann_whitney_greater(&[1.0, 4.0, 5.0, 8.0], &[2.0, 3.0, 6.0, 7.0]).unwrap();
        assert_eq!(r.u, 8.0);
        assert_close(r.p_value, 39.0 / 70.0, 1e-15);
    }

    #[test]
    fn mann_whitney_single_observation_each() {
        // n1 = n2 = 1, no ties: U in {0, 1}, each with probability 1/2.
        let r = mann_whitney_greater(&[2.0], &[1.0]).unwrap();
        assert_eq!(r.u, 1.0);
        assert_close(r.p_value, 0.5, 1e-15);
        let r = mann_whitney_greater(&[1.0], &[2.0]).unwrap();
        assert_eq!(r.u, 0.0);
        assert_close(r.p_value, 1.0, 1e-15);
        // A tie: U = 0.5, zero variance, p = 1.
        let r = mann_whitney_greater(&[5.0], &[5.0]).unwrap();
        assert_eq!(r.u, 0.5);
        assert_eq!(r.p_value, 1.0);
        // One post value above 3 baselines: U = 3, exact P(U >= 3) = 1 / 4.
        let r = mann_whitney_greater(&[9.0], &[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(r.u, 3.0);
        assert_close(r.p_value, 0.25, 1e-15);
    }

    #[test]
    fn mann_whitney_empty_sample_gives_none() {
        assert_eq!(mann_whitney_greater(&[], &[1.0]), None);
        assert_eq!(mann_whitney_greater(&[1.0], &[]), None);
    }

    #[test]
    fn mann_whitney_clearly_shifted_sample_is_highly_significant() {
        // 30 distinct baseline latencies spread over 20.0..28.7 ms; post is
        // baseline + 10 ms, so every post value beats every baseline value:
        // U = 900. n = 30 > 20 -> normal approximation, no ties:
        // sigma^2 = 900 * 61 / 12 = 4575, z = (900 - 450 - 0.5) / 67.6387
        // = 6.6456, p = 1.51e-11 (0.5 * math.erfc(z / sqrt 2) in Python).
        let baseline: Vec<f64> = (0..30)
            .map(|i| 20.0 + f64::from((i * 7) % 30) * 0.3)
            .collect();
        let post: Vec<f64> = baseline.iter().map(|x| x + 10.0).collect();
        let r = mann_whitney_greater(&post, &baseline).unwrap();
        assert_eq!(r.u, 900.0);
        assert!(r.p_value < 1e-6, "p = {}", r.p_value);
        assert_close(r.z, 6.645_599_225_881_61, 1e-10);
        assert_rel_close(r.p_value, 1.509_929_679_581_075_6e-11, 1e-9);
        // And the reverse direction is not significant at all.
        let r = mann_whitney_greater(&baseline, &post).unwrap();
        assert_eq!(r.u, 0.0);
        assert!(r.p_value > 0.999_999);
    }

    #[test]
    fn mann_whitney_exact_complete_separation_at_n20() {
        // Only 1 of C(40, 20) = 137846528820 arrangements has U = 400.
        let baseline: Vec<f64> = (0..20).map(f64::from).collect();
        let post: Vec<f64> = (100..120).map(f64::from).collect();
        let r = mann_whitney_greater(&post, &baseline).unwrap();
        assert_eq!(r.u, 400.0);
        assert_rel_close(r.p_value, 1.0 / 137_846_528_820.0, 1e-12);
    }

    #[test]
    fn exact_distribution_matches_brute_force_enumeration() {
        // Enumerate every choice of which 4 of the 9 pooled ranks belong to
        // `post` and count U; compare P(U >= u) for every u.
        let (n1, n2) = (4_usize, 5_usize);
        let n = n1 + n2;
        let mut freq = vec![0_u32; n1 * n2 + 1];
        for mask in 0_u32..(1 << n) {
            if mask.count_ones() as usize != n1 {
                continue;
            }
            // U = number of (post, baseline) pairs where post's rank is higher.
            let mut u = 0;
            for i in 0..n {
                for j in 0..n {
                    if mask & (1 << i) != 0 && mask & (1 << j) == 0 && i > j {
                        u += 1;
                    }
                }
            }
            freq[u] += 1;
        }
        let total: u32 = freq.iter().sum();
        assert_eq!(total, 126);
        for u in 0..=n1 * n2 {
            let tail: u32 = freq[u..].iter().sum();
            let expected = f64::from(tail) / f64::from(total);
            assert_close(exact_sf(u as f64, n1, n2), expected, 1e-15);
        }
    }

    #[test]
    fn mann_whitney_u_equals_pairwise_count_with_ties() {
        // Pseudo-random samples on a coarse grid (many ties), checked against
        // the definition of U by brute-force pair counting.
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 33) % 12) as f64 * 0.5
        };
        let post: Vec<f64> = (0..37).map(|_| next()).collect();
        let baseline: Vec<f64> = (0..23).map(|_| next()).collect();
        let mut expected = 0.0;
        for x in &post {
            for y in &baseline {
                if x > y {
                    expected += 1.0;
                } else if x == y {
                    expected += 0.5;
                }
            }
        }
        let r = mann_whitney_greater(&post, &baseline).unwrap();
        assert_eq!(r.u, expected);
        assert!((0.0..=1.0).contains(&r.p_value));
    }

    #[test]
    fn mann_whitney_treats_negative_and_positive_zero_as_tied() {
        let r = mann_whitney_greater(&[0.0], &[-0.0]).unwrap();
        assert_eq!(r.u, 0.5);
    }

    #[test]
    fn mann_whitney_with_nan_does_not_panic() {
        let r = mann_whitney_greater(&[1.0, f64::NAN], &[2.0, 3.0]).unwrap();
        assert!((0.0..=1.0).contains(&r.p_value));
    }

    // ------------------------------------------------------------ Hodges–Lehmann

    #[test]
    fn median_by_selection_equals_the_sorted_percentile() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for n in 0..60 {
            let v: Vec<f64> = (0..n)
                .map(|_| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    ((state >> 33) % 17) as f64 * 0.25
                })
                .collect();
            assert_eq!(median(&v), percentile(&sorted_copy(&v), 0.5), "{v:?}");
        }
    }

    #[test]
    fn hodges_lehmann_even_number_of_differences() {
        // post = [3, 5], baseline = [1, 2]: differences 2, 1, 4, 3
        // -> sorted 1, 2, 3, 4 -> median (2 + 3) / 2 = 2.5.
        assert_eq!(hodges_lehmann_shift(&[3.0, 5.0], &[1.0, 2.0]), Some(2.5));
    }

    #[test]
    fn hodges_lehmann_odd_number_of_differences() {
        // post = [5], baseline = [1, 2, 4]: differences 4, 3, 1 -> median 3.
        assert_eq!(hodges_lehmann_shift(&[5.0], &[1.0, 2.0, 4.0]), Some(3.0));
        // post = [10, 20, 30], baseline = [1, 2, 3]: differences
        // 9 8 7 / 19 18 17 / 29 28 27 -> sorted middle (5th of 9) = 18.
        assert_eq!(
            hodges_lehmann_shift(&[10.0, 20.0, 30.0], &[1.0, 2.0, 3.0]),
            Some(18.0)
        );
    }

    #[test]
    fn hodges_lehmann_recovers_constant_shift() {
        // post_i = b_i + 10: differences are 10 + (b_i - b_j), and the
        // b_i - b_j are symmetric around 0, so the median is 10.
        let baseline = [12.0, 15.5, 11.0, 19.0, 14.0, 13.25];
        let post: Vec<f64> = baseline.iter().map(|b| b + 10.0).collect();
        assert_close(hodges_lehmann_shift(&post, &baseline).unwrap(), 10.0, 1e-12);
        // Negative when post is faster.
        assert_close(
            hodges_lehmann_shift(&baseline, &post).unwrap(),
            -10.0,
            1e-12,
        );
    }

    #[test]
    fn hodges_lehmann_empty_sample_gives_none() {
        assert_eq!(hodges_lehmann_shift(&[], &[1.0]), None);
        assert_eq!(hodges_lehmann_shift(&[1.0], &[]), None);
    }

    // ------------------------------------------------------------ Clopper–Pearson

    #[test]
    fn clopper_pearson_upper_matches_r_binom_test() {
        // R: binom.test(1, 10)$conf.int[2] = 0.4450161 and binom.test(5, 20)$conf.int[2] =
        // 0.4910459 (two-sided 95%, i.e. one-sided 97.5% upper bounds); the digits below are
        // the Beta(k + 1, n - k) quantiles computed with mpmath at 40 digits.
        assert_close(
            clopper_pearson_upper(1, 10, 0.975).unwrap(),
            0.445_016_117_028_195,
            1e-12,
        );
        assert_close(
            clopper_pearson_upper(5, 20, 0.975).unwrap(),
            0.491_045_871_707_957,
            1e-12,
        );
        assert_close(
            clopper_pearson_upper(3, 76, 0.99).unwrap(),
            0.126_178_798_738_2,
            1e-12,
        );
        assert_close(
            clopper_pearson_upper(2, 50, 0.95).unwrap(),
            0.120_614_155_422_044,
            1e-12,
        );
        assert_close(
            clopper_pearson_upper(15, 114, 0.99).unwrap(),
            0.222_533_397_768_881,
            1e-12,
        );
    }

    #[test]
    fn clopper_pearson_with_no_losses_is_the_closed_form_and_the_rule_of_three() {
        // 0 of 120 at 95%: 1 - 0.05^(1/120) = 0.0246554 ("2.5%"), close to 3/120 = 0.025.
        let b = clopper_pearson_upper(0, 120, 0.95).unwrap();
        assert_close(b, 0.024_655_401_055_656_4, 1e-14);
        assert!((b - 3.0 / 120.0).abs() < 0.001);
        // 0 of 228 at 99%: just under 2%, which is why 228 writes detect a 2% loss rate.
        assert_close(
            clopper_pearson_upper(0, 228, 0.99).unwrap(),
            0.019_995_499_372_304_9,
            1e-14,
        );
        // The bisection agrees with the closed form where both apply.
        let p = 1.0 - 0.05_f64.powf(1.0 / 120.0);
        assert_close(binomial_cdf(0, 120, p), 0.05, 1e-12);
    }

    #[test]
    fn clopper_pearson_edge_cases() {
        assert_eq!(clopper_pearson_upper(0, 0, 0.95), None);
        assert_eq!(clopper_pearson_upper(3, 2, 0.95), None);
        assert_eq!(clopper_pearson_upper(0, 10, 1.0), None);
        assert_eq!(clopper_pearson_upper(0, 10, 0.0), None);
        assert_eq!(clopper_pearson_upper(10, 10, 0.95), Some(1.0));
        // More losses, higher bound; more trials, lower bound.
        let a = clopper_pearson_upper(1, 100, 0.95).unwrap();
        let b = clopper_pearson_upper(2, 100, 0.95).unwrap();
        let c = clopper_pearson_upper(2, 200, 0.95).unwrap();
        assert!(a < b && c < b, "{a} {b} {c}");
    }

    #[test]
    fn binomial_cdf_matches_hand_computed_values() {
        // n = 4, p = 0.5: P(X <= 1) = (1 + 4) / 16.
        assert_close(binomial_cdf(1, 4, 0.5), 5.0 / 16.0, 1e-15);
        // n = 10, p = 0.2: P(X = 0) = 0.8^10.
        assert_close(binomial_cdf(0, 10, 0.2), 0.8_f64.powi(10), 1e-15);
        assert_eq!(binomial_cdf(10, 10, 0.3), 1.0);
        assert_eq!(binomial_cdf(2, 10, 0.0), 1.0);
        assert_eq!(binomial_cdf(2, 10, 1.0), 0.0);
    }
}

#[cfg(test)]
mod welch_tests {
    use super::*;

    fn m(n: f64, mean: f64, variance: f64) -> Moments {
        Moments { n, mean, variance }
    }

    #[test]
    fn welch_z_matches_hand_computed_reference_values() {
        // z = 0.5 / sqrt(4/100 + 9/50) = 1.066003581778; P(Z > z) = 0.143211011389.
        let p = welch_mean_greater(m(100.0, 10.0, 4.0), m(50.0, 9.5, 9.0)).unwrap();
        assert!((p - 0.143_211_011_388_929_4).abs() < 1e-12, "{p}");
        // z = 1 / sqrt(0.25/30 + 0.25/40) = 8.280786712108; P = 6.1182e-17.
        let p = welch_mean_greater(m(30.0, 2.0, 0.25), m(40.0, 1.0, 0.25)).unwrap();
        assert!((p / 6.118_209_027_702_831e-17 - 1.0).abs() < 1e-9, "{p}");
        // The textbook quantiles: z = 1.6449 -> 0.05, z = 2.3263 -> 0.01.
        let p = welch_mean_greater(m(1.0, 1.644_853_626_951_472_2, 1.0), m(1.0, 0.0, 0.0)).unwrap();
        assert!((p - 0.05).abs() < 1e-12, "{p}");
        let p = welch_mean_greater(m(1.0, 2.326_347_874_040_840_8, 1.0), m(1.0, 0.0, 0.0)).unwrap();
        assert!((p - 0.01).abs() < 1e-12, "{p}");
    }

    #[test]
    fn welch_z_is_one_sided_and_refuses_degenerate_input() {
        // Equal means: p = 0.5; post faster: p > 0.5.
        assert_eq!(
            welch_mean_greater(m(10.0, 1.0, 1.0), m(10.0, 1.0, 1.0)),
            Some(0.5)
        );
        assert!(welch_mean_greater(m(10.0, 0.5, 1.0), m(10.0, 1.0, 1.0)).unwrap() > 0.5);
        assert_eq!(
            welch_mean_greater(m(0.0, 1.0, 1.0), m(10.0, 1.0, 1.0)),
            None
        );
        assert_eq!(
            welch_mean_greater(m(10.0, 2.0, 0.0), m(10.0, 1.0, 0.0)),
            None
        );
        assert_eq!(
            welch_mean_greater(m(10.0, f64::NAN, 1.0), m(10.0, 1.0, 1.0)),
            None
        );
        // A proportion: 30 of 200 against 2 of 200: z = 5.341333156016, p = 4.6132755495e-8.
        let (a, b) = (30.0 / 200.0, 2.0 / 200.0);
        let p = welch_mean_greater(m(200.0, a, a * (1.0 - a)), m(200.0, b, b * (1.0 - b))).unwrap();
        assert!((p / 4.613_275_549_525_206e-8 - 1.0).abs() < 1e-9, "{p}");
    }
}
