//! The health gate (pure): compare a window's measurements with the trust's own baseline and
//! return a verdict with reasons that name the check and the figures.
//!
//! A latency regression needs significance *and* an effect: a one-sided Mann–Whitney U test
//! below `alpha`, a Hodges–Lehmann shift above `floor_ms`, and a post/baseline ratio above the
//! allowed increase on the median or on the tail (p95, p99). Either alone is noise on a shared
//! machine. Durability and integrity are critical and need no statistics.

use serde::Serialize;

use super::probes::{LatencySamples, Snapshot, WriteOutcome};
use super::stats::{hodges_lehmann_shift, mann_whitney_greater, percentile};
use super::workload::WorkloadComparison;
use crate::config::health::{Health, Regression};

/// The verdict on one trust in one window. Missing data is never a pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", content = "reasons", rename_all = "kebab-case")]
pub enum Verdict {
    /// Every check passed.
    Pass,
    /// A check found a regression, lost data or changed data.
    Fail(Vec<String>),
    /// Not enough data to decide: an operator must look.
    Inconclusive(Vec<String>),
    /// A check could not be run.
    Error(Vec<String>),
}

impl Verdict {
    /// The reasons, if any.
    pub fn reasons(&self) -> &[String] {
        match self {
            Verdict::Pass => &[],
            Verdict::Fail(r) | Verdict::Inconclusive(r) | Verdict::Error(r) => r,
        }
    }

    /// A short label.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail(_) => "fail",
            Verdict::Inconclusive(_) => "inconclusive",
            Verdict::Error(_) => "error",
        }
    }
}

/// Which comparison a window makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Window {
    /// Before the upgrade: the baseline could not be measured (an error verdict; nothing was
    /// upgraded).
    Baseline,
    /// Right after the upgrade: everything, integrity on the undeclared hash.
    PostUpgrade,
    /// A soak round: latency, durability and invariants.
    Soak,
    /// After a rollback: integrity must equal the pre-upgrade figures exactly.
    AfterRollback,
}

/// Figures of one latency probe, baseline against the window.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct LatencyComparison {
    /// Probe name.
    pub probe: String,
    /// Baseline median, ms.
    pub baseline_median_ms: f64,
    /// Window median, ms.
    pub median_ms: f64,
    /// Baseline p95, ms.
    pub baseline_p95_ms: f64,
    /// Window p95, ms.
    pub p95_ms: f64,
    /// Baseline p99, ms.
    pub baseline_p99_ms: f64,
    /// Window p99, ms.
    pub p99_ms: f64,
    /// Hodges–Lehmann shift estimate, ms.
    pub shift_ms: f64,
    /// One-sided Mann–Whitney p-value.
    pub p_value: f64,
    /// How much slower the machine was than at baseline (control query, ≥ 1). The window's
    /// median, percentiles, shift and p-value above are computed after dividing by it.
    pub machine_factor: f64,
    /// Whether it counts as a regression.
    pub regressed: bool,
    /// Baseline samples, ms (for plots).
    pub baseline_ms: Vec<f64>,
    /// Window samples as measured, ms (for plots).
    pub samples_ms: Vec<f64>,
}

/// A verdict with the latency figures behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judgement {
    /// The verdict.
    pub verdict: Verdict,
    /// True when something other than latency failed (durability, integrity, an invariant):
    /// such a failure stands on its own and is never measured away.
    pub critical: bool,
    /// One entry per latency probe compared.
    pub latency: Vec<LatencyComparison>,
    /// The real workload's figures (PostgreSQL with `pg_stat_statements`), when compared.
    pub workload: Option<WorkloadComparison>,
}

fn ratio(post: f64, base: f64) -> f64 {
    if base > 0.0 {
        post / base
    } else if post > 0.0 {
        f64::INFINITY
    } else {
        1.0
    }
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

/// Compare a probe's window with its baseline under the thresholds. The window's samples are
/// first divided by the [`machine_factor`], so that load on a shared machine, which slows the
/// control query as much as the probe, is not taken for a regression of the release; a
/// release that slows the probe still stands out against the unchanged control.
pub fn compare_latency(
    probe: &str,
    baseline: &LatencySamples,
    window: &LatencySamples,
    r: &Regression,
) -> Option<LatencyComparison> {
    let factor = machine_factor(&baseline.control_ms, &window.control_ms);
    let mut b = baseline.ms.clone();
    let mut p: Vec<f64> = window.ms.iter().map(|ms| ms / factor).collect();
    b.sort_by(f64::total_cmp);
    p.sort_by(f64::total_cmp);
    let mw = mann_whitney_greater(&p, &b)?;
    let shift = hodges_lehmann_shift(&p, &b)?;
    let (bm, pm) = (percentile(&b, 0.5)?, percentile(&p, 0.5)?);
    let (b95, p95) = (percentile(&b, 0.95)?, percentile(&p, 0.95)?);
    let (b99, p99) = (percentile(&b, 0.99)?, percentile(&p, 0.99)?);
    let effect = ratio(pm, bm) > r.median_ratio
        || ratio(p95, b95) > r.p95_ratio
        || ratio(p99, b99) > r.p99_ratio;
    let regressed = mw.p_value < r.alpha && shift > r.floor_ms && effect;
    Some(LatencyComparison {
        probe: probe.to_string(),
        baseline_median_ms: bm,
        median_ms: pm,
        baseline_p95_ms: b95,
        p95_ms: p95,
        baseline_p99_ms: b99,
        p99_ms: p99,
        shift_ms: shift,
        p_value: mw.p_value,
        machine_factor: factor,
        regressed,
        baseline_ms: baseline.ms.clone(),
        samples_ms: window.ms.clone(),
    })
}

/// Judge a window against the baseline.
pub fn judge(health: &Health, baseline: &Snapshot, window: &Snapshot, kind: Window) -> Judgement {
    let mut fail = Vec::new();
    let mut latency_fails = 0;
    let mut error = Vec::new();
    let mut inconclusive = Vec::new();
    let mut latency = Vec::new();
    let mut workload = None;

    if kind != Window::AfterRollback {
        for probe in &health.latency_probes {
            let name = &probe.name;
            match (baseline.latency.get(name), window.latency.get(name)) {
                (Some(Ok(b)), Some(Ok(w))) => {
                    match compare_latency(name, b, w, &health.regression) {
                        Some(c) => {
                            if c.regressed {
                                latency_fails += 1;
                                let machine = if c.machine_factor > 1.05 {
                                    format!(
                                        "; figures after discounting a machine slowdown of ×{:.1} seen on the control query",
                                        c.machine_factor
                                    )
                                } else {
                                    String::new()
                                };
                                fail.push(format!(
                                "latency probe '{name}' regressed: median {:.2} ms → {:.2} ms (×{:.1}), p95 {:.2} → {:.2} ms, shift +{:.2} ms (floor {} ms), Mann–Whitney p = {:.2e} (alpha {}){machine}",
                                c.baseline_median_ms,
                                c.median_ms,
                                ratio(c.median_ms, c.baseline_median_ms),
                                c.baseline_p95_ms,
                                c.p95_ms,
                                c.shift_ms,
                                health.regression.floor_ms,
                                c.p_value,
                                health.regression.alpha
                            ));
                            }
                            latency.push(c);
                        }
                        None => inconclusive
                            .push(format!("latency probe '{name}': no samples to compare")),
                    }
                }
                (Some(Err(e)), _) => {
                    inconclusive.push(format!("latency probe '{name}': no baseline ({e})"))
                }
                (None, _) => {
                    inconclusive.push(format!("latency probe '{name}': no baseline was measured"))
                }
                (_, Some(Err(e))) => error.push(format!("latency probe '{name}' failed: {e}")),
                (_, None) => inconclusive.push(format!("latency probe '{name}' was not measured")),
            }
        }
        if health.write_probe.is_some() {
            match &window.write {
                Some(Ok(WriteOutcome::Durable)) => {}
                Some(Ok(WriteOutcome::Lost { detail })) => {
                    fail.push(format!("write probe: data not reliably saved: {detail}"))
                }
                Some(Err(e)) => error.push(format!("write probe failed: {e}")),
                None => inconclusive.push("write probe was not run".into()),
            }
        }
        for inv in &health.invariants {
            match window.invariants.get(&inv.name) {
                Some(Ok(v)) if *v == inv.expect => {}
                Some(Ok(v)) => fail.push(format!(
                    "invariant '{}' returned {v}, expected {}",
                    inv.name, inv.expect
                )),
                Some(Err(e)) => error.push(format!("invariant '{}' failed: {e}", inv.name)),
                None => inconclusive.push(format!("invariant '{}' was not checked", inv.name)),
            }
        }
        // The real workload (PostgreSQL, pg_stat_statements): see `health::workload`.
        // Statement and rollback-rate regressions may be re-measured like latency; deadlocks
        // stand on their own.
        let w = super::workload::judge(&health.workload, &health.regression, baseline, window);
        latency_fails += w.fail.len();
        fail.extend(w.fail);
        fail.extend(w.critical);
        error.extend(w.error);
        inconclusive.extend(w.inconclusive);
        workload = w.comparison;
    }
    if kind != Window::Soak {
        for table in health.integrity.keys() {
            match (baseline.integrity.get(table), window.integrity.get(table)) {
                (Some(Ok(b)), Some(Ok(w))) => {
                    if b.rows != w.rows {
                        fail.push(format!(
                            "integrity of '{table}': {} rows before, {} after ({:+})",
                            b.rows,
                            w.rows,
                            w.rows - b.rows
                        ));
                    } else {
                        let (before, after, what) = match kind {
                            Window::AfterRollback => (&b.hash, &w.hash, "key columns"),
                            _ => (
                                &b.undeclared_hash,
                                &w.undeclared_hash,
                                "key columns no migration declares it rewrites",
                            ),
                        };
                        if before != after {
                            fail.push(format!(
                                "integrity of '{table}': {} rows, but the hash of the {what} changed ({} → {})",
                                w.rows,
                                &before[..12],
                                &after[..12]
                            ));
                        }
                    }
                }
                (Some(Err(e)), _) | (None, Some(Err(e))) => {
                    inconclusive.push(format!("integrity of '{table}': no baseline ({e})"))
                }
                (_, Some(Err(e))) => {
                    error.push(format!("integrity of '{table}' could not be measured: {e}"))
                }
                _ => inconclusive.push(format!("integrity of '{table}' was not measured")),
            }
        }
    }
    let critical = fail.len() > latency_fails;
    let verdict = if !fail.is_empty() {
        fail.extend(error);
        fail.extend(inconclusive);
        Verdict::Fail(fail)
    } else if !error.is_empty() {
        error.extend(inconclusive);
        Verdict::Error(error)
    } else if !inconclusive.is_empty() {
        Verdict::Inconclusive(inconclusive)
    } else {
        Verdict::Pass
    };
    Judgement {
        verdict,
        critical,
        latency,
        workload,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::health::{Invariant, LatencyProbe, WriteProbe};
    use crate::health::probes::TableFigures;

    fn health() -> Health {
        Health {
            latency_probes: vec![LatencyProbe {
                name: "open-record".into(),
                sql: "SELECT 1".into(),
                params: None,
                samples: 30,
            }],
            write_probe: Some(WriteProbe {
                insert: "i".into(),
                read_back: "r".into(),
                cleanup: "c".into(),
            }),
            integrity: [("patient".to_string(), vec!["id".to_string()])]
                .into_iter()
                .collect(),
            invariants: vec![Invariant {
                name: "no-orphans".into(),
                sql: "SELECT 0".into(),
                expect: 0,
            }],
            ..Health::default()
        }
    }

    /// A deterministic spread around `centre` (no randomness: the test must not be flaky).
    fn samples(centre: f64, spread: f64) -> Vec<f64> {
        (0..30)
            .map(|i| centre + spread * (((i * 7) % 30) as f64 / 30.0 - 0.5))
            .collect()
    }

    fn snapshot(latency: Vec<f64>, rows: i64, hash: &str) -> Snapshot {
        snapshot_with_control(latency, samples(0.5, 0.1), rows, hash)
    }

    fn snapshot_with_control(
        latency: Vec<f64>,
        control: Vec<f64>,
        rows: i64,
        hash: &str,
    ) -> Snapshot {
        let mut s = Snapshot::default();
        s.latency.insert(
            "open-record".into(),
            Ok(LatencySamples {
                ms: latency,
                rows: 30,
                control_ms: control,
            }),
        );
        s.write = Some(Ok(WriteOutcome::Durable));
        s.integrity.insert(
            "patient".into(),
            Ok(TableFigures {
                rows,
                hash: hash.repeat(12),
                undeclared_hash: hash.repeat(12),
            }),
        );
        s.invariants.insert("no-orphans".into(), Ok(0));
        s
    }

    #[test]
    fn identical_windows_pass() {
        let b = snapshot(samples(2.0, 0.4), 100, "a");
        assert_eq!(
            judge(&health(), &b, &b.clone(), Window::PostUpgrade).verdict,
            Verdict::Pass
        );
    }

    #[test]
    fn a_large_significant_slowdown_fails_and_names_the_probe_and_figures() {
        let b = snapshot(samples(2.0, 0.4), 100, "a");
        let p = snapshot(samples(9.0, 0.4), 100, "a");
        let j = judge(&health(), &b, &p, Window::PostUpgrade);
        let Verdict::Fail(reasons) = &j.verdict else {
            panic!("{:?}", j.verdict)
        };
        assert!(
            reasons[0].contains("open-record") && reasons[0].contains("median"),
            "{reasons:?}"
        );
        assert!(j.latency[0].regressed);
        assert!(!j.critical, "a latency regression alone may be re-measured");
        assert!(j.latency[0].p_value < 1e-6);
    }

    #[test]
    fn a_significant_shift_below_the_floor_is_not_a_regression() {
        // 0.05 ms → 0.2 ms is ×4 and certain, but far below a 1 ms floor: noise, not harm.
        let b = snapshot(samples(0.05, 0.01), 100, "a");
        let p = snapshot(samples(0.2, 0.01), 100, "a");
        assert_eq!(
            judge(&health(), &b, &p, Window::PostUpgrade).verdict,
            Verdict::Pass
        );
    }

    #[test]
    fn a_small_ratio_above_the_floor_is_not_a_regression() {
        // +1.5 ms on a 10 ms query: significant and above the floor, but only ×1.15.
        let b = snapshot(samples(10.0, 0.4), 100, "a");
        let p = snapshot(samples(11.5, 0.4), 100, "a");
        assert_eq!(
            judge(&health(), &b, &p, Window::PostUpgrade).verdict,
            Verdict::Pass
        );
    }

    #[test]
    fn a_slowdown_the_control_query_shares_is_the_machine_not_the_release() {
        // Probe and control both ×5 (a busy shared machine): not a regression.
        let b = snapshot_with_control(samples(2.0, 0.4), samples(0.5, 0.1), 100, "a");
        let p = snapshot_with_control(samples(10.0, 2.0), samples(2.5, 0.5), 100, "a");
        let j = judge(&health(), &b, &p, Window::PostUpgrade);
        assert_eq!(j.verdict, Verdict::Pass, "{:?}", j.latency);
        assert!((j.latency[0].machine_factor - 5.0).abs() < 0.01);
        // The same probe slowdown with an unchanged control is the release: a regression.
        let p = snapshot_with_control(samples(10.0, 2.0), samples(0.5, 0.1), 100, "a");
        assert!(matches!(
            judge(&health(), &b, &p, Window::PostUpgrade).verdict,
            Verdict::Fail(_)
        ));
        // Probe ×20 while the machine is ×2 slower: still a regression, and the reason says
        // the figures were adjusted.
        let p = snapshot_with_control(samples(40.0, 4.0), samples(1.0, 0.2), 100, "a");
        let Verdict::Fail(reasons) = judge(&health(), &b, &p, Window::PostUpgrade).verdict else {
            panic!()
        };
        assert!(
            reasons[0].contains("machine slowdown of ×2.0"),
            "{reasons:?}"
        );
    }

    #[test]
    fn a_faster_machine_is_not_credited() {
        assert_eq!(machine_factor(&[1.0, 1.0, 1.0], &[0.2, 0.2, 0.2]), 1.0);
        assert_eq!(machine_factor(&[], &[0.2]), 1.0);
        assert!((machine_factor(&[1.0, 2.0, 3.0], &[4.0, 6.0, 8.0]) - 3.0).abs() < 1e-9);
    }

    #[test]
    fn a_lost_write_fails_without_statistics() {
        let b = snapshot(samples(2.0, 0.4), 100, "a");
        let mut p = b.clone();
        p.write = Some(Ok(WriteOutcome::Lost {
            detail: "gone".into(),
        }));
        assert!(judge(&health(), &b, &p, Window::PostUpgrade).critical);
        let Verdict::Fail(reasons) = judge(&health(), &b, &p, Window::PostUpgrade).verdict else {
            panic!()
        };
        assert!(
            reasons[0].contains("data not reliably saved"),
            "{reasons:?}"
        );
    }

    #[test]
    fn a_changed_row_count_fails_integrity() {
        let b = snapshot(samples(2.0, 0.4), 100, "a");
        let p = snapshot(samples(2.0, 0.4), 90, "a");
        let Verdict::Fail(reasons) = judge(&health(), &b, &p, Window::PostUpgrade).verdict else {
            panic!()
        };
        assert!(
            reasons[0].contains("100 rows before, 90 after"),
            "{reasons:?}"
        );
    }

    #[test]
    fn a_declared_rewrite_passes_after_upgrade_but_not_after_rollback() {
        let b = snapshot(samples(2.0, 0.4), 100, "a");
        let mut p = b.clone();
        if let Some(Ok(f)) = p.integrity.get_mut("patient") {
            f.hash = "b".repeat(12); // the declared column changed, the undeclared hash did not
        }
        assert_eq!(
            judge(&health(), &b, &p, Window::PostUpgrade).verdict,
            Verdict::Pass
        );
        assert!(matches!(
            judge(&health(), &b, &p, Window::AfterRollback).verdict,
            Verdict::Fail(_)
        ));
    }

    #[test]
    fn a_broken_invariant_fails() {
        let b = snapshot(samples(2.0, 0.4), 100, "a");
        let mut p = b.clone();
        p.invariants.insert("no-orphans".into(), Ok(3));
        assert!(matches!(
            judge(&health(), &b, &p, Window::PostUpgrade).verdict,
            Verdict::Fail(_)
        ));
    }

    #[test]
    fn missing_data_is_never_a_pass() {
        let b = snapshot(samples(2.0, 0.4), 100, "a");
        let empty = Snapshot::default();
        assert!(matches!(
            judge(&health(), &b, &empty, Window::PostUpgrade).verdict,
            Verdict::Inconclusive(_)
        ));
        assert!(matches!(
            judge(&health(), &empty, &b, Window::PostUpgrade).verdict,
            Verdict::Inconclusive(_)
        ));
    }

    #[test]
    fn a_probe_that_errors_gives_an_error_verdict() {
        let b = snapshot(samples(2.0, 0.4), 100, "a");
        let mut p = b.clone();
        p.latency
            .insert("open-record".into(), Err("no such table".into()));
        assert!(matches!(
            judge(&health(), &b, &p, Window::PostUpgrade).verdict,
            Verdict::Error(_)
        ));
    }

    #[test]
    fn soak_windows_ignore_integrity_so_live_writes_do_not_fail_them() {
        let b = snapshot(samples(2.0, 0.4), 100, "a");
        let p = snapshot(samples(2.0, 0.4), 140, "z");
        assert_eq!(
            judge(&health(), &b, &p, Window::Soak).verdict,
            Verdict::Pass
        );
    }
}
