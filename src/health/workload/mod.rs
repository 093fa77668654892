//! The trust's real workload on PostgreSQL: what clinicians' statements cost before and after
//! the upgrade, from `pg_stat_statements`, and the database's error signals from
//! `pg_stat_database`. Synthetic probes see only what the plan names; the workload sees what
//! the trust's users actually run.
//!
//! Both views hold cumulative counters, so a window is the difference of two readings: one when
//! the window opens, one when it closes. [`Tracker`] takes the readings (I/O) and keeps the open
//! reading of each trust in memory; [`judge`] compares a window with the baseline window (pure).
//!
//! - **Statements.** Per `queryid` (summed over users; only the trust's own database): calls,
//!   total execution time and, from the cumulative mean and standard deviation, the sum of
//!   squares, so each window has its own count, mean and variance. The window's top statements
//!   by total time with `min_calls` calls in both windows are judged like a latency probe:
//!   significance (one-sided z-test on the means, [`welch_mean_greater`]) *and* effect (mean
//!   ratio above the plan's `median_ratio`, shift above `floor_ms`), after discounting the
//!   machine slowdown the probes' control query saw. A statement that only appears after the
//!   upgrade (a migration that changes a query's shape gives it a new `queryid`) is reported,
//!   never failed on alone.
//! - **flotilla's own statements are excluded**: the queryid of every health statement (asked
//!   of the server with `EXPLAIN (VERBOSE)`, bound as the probes bind it), every statement
//!   whose text names flotilla (its tracking table, these readings, marked `/* flotilla */`),
//!   and readings of the server's statistics and lock views (`pg_stat_*`, `pg_locks`).
//! - **Error signals** (`pg_stat_database`, per window): a deadlock where the baseline had
//!   none (or a higher deadlock rate) fails the trust outright; a rollback rate significantly
//!   and substantially above the baseline's fails it like a regression; recovery conflicts and
//!   temporary files are reported only.
//! - Texts are shown as `pg_stat_statements` normalised them (constants are `$n`), with
//!   comments removed, any quoted literal masked and the length capped; a utility statement
//!   (whose constants PostgreSQL keeps) shows only its command word. No parameter value is
//!   ever stored or shown.
//!
//! Availability is detected per trust: the extension created in the trust's database, its
//! library preloaded, `compute_query_id` not off, and flotilla's role allowed to read every
//! user's statements (`pg_read_all_stats`). flotilla never creates the extension. When any of
//! that is missing the tracker says so once per trust (the engine turns it into an event) and
//! the gate goes on with the probes alone. SQLite has no equivalent and is never asked.

mod tracker;
pub mod window;

pub use tracker::Tracker;
pub use window::{
    display_text, DatabaseWindow, StatementWindow, WorkloadWindow, MAX_KEPT, MAX_TEXT,
};

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::probes::Snapshot;
use super::stats::{machine_factor, welch_mean_greater, Moments};
use crate::config::health::Regression;
use crate::config::workload::Workload;

/// New statements listed per window (by total time); the rest are counted.
const NEW_LISTED: usize = 5;
/// Fewest rollbacks in a window for its rollback rate to fail the trust.
pub const MIN_ROLLBACKS: i64 = 10;

// ---------------------------------------------------------------------------------------------
// The comparison (pure)
// ---------------------------------------------------------------------------------------------

/// One statement compared between the baseline and the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatementComparison {
    /// `pg_stat_statements.queryid`.
    pub queryid: i64,
    /// Normalised text as shown.
    pub query: String,
    /// Calls in the baseline window.
    pub baseline_calls: u64,
    /// Calls in the window.
    pub calls: u64,
    /// Mean execution time in the baseline window, ms.
    pub baseline_mean_ms: f64,
    /// Mean in the window, ms, after dividing by the machine factor.
    pub mean_ms: f64,
    /// `mean_ms / baseline_mean_ms`.
    pub ratio: f64,
    /// `mean_ms - baseline_mean_ms`.
    pub shift_ms: f64,
    /// One-sided z-test p-value that the window's mean is higher.
    pub p_value: f64,
    /// Total execution time in the window as measured, ms.
    pub total_ms: f64,
    /// Whether it counts as a regression.
    pub regressed: bool,
}

/// A statement seen in the window (with `min_calls` calls) but not in the baseline window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewStatement {
    /// `pg_stat_statements.queryid`.
    pub queryid: i64,
    /// Normalised text as shown.
    pub query: String,
    /// Calls in the window.
    pub calls: u64,
    /// Mean execution time in the window, ms.
    pub mean_ms: f64,
    /// Total execution time in the window, ms.
    pub total_ms: f64,
}

/// The database's error signals, baseline against the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatabaseComparison {
    /// Baseline window's counters.
    pub baseline: DatabaseWindow,
    /// The window's counters.
    pub window: DatabaseWindow,
    /// Rolled-back share of the baseline's transactions.
    pub baseline_rollback_rate: f64,
    /// Rolled-back share of the window's transactions.
    pub rollback_rate: f64,
    /// One-sided z-test p-value that the window's rollback rate is higher (`None` when either
    /// window had fewer than `min_calls` transactions, or nothing varied).
    pub rollback_p_value: Option<f64>,
    /// Whether the rollback rate counts as a regression.
    pub rollbacks_regressed: bool,
    /// Whether the window's deadlocks count as a regression.
    pub deadlocks_regressed: bool,
}

/// The workload figures of a verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadComparison {
    /// Length of the baseline window, s.
    pub baseline_seconds: f64,
    /// Length of the window, s.
    pub seconds: f64,
    /// Machine slowdown from the probes' control query (≥ 1); window means are divided by it.
    pub machine_factor: f64,
    /// The statements judged (the window's top ones by total time), in that order.
    pub statements: Vec<StatementComparison>,
    /// Comparable statements beyond the `statements` judged.
    pub beyond_top: usize,
    /// Statements with fewer than `min_calls` calls in the baseline or the window.
    pub too_few_calls: usize,
    /// The largest new statements (only in the window).
    pub new_statements: Vec<NewStatement>,
    /// How many new statements there were in all.
    pub new_count: usize,
    /// Baseline statements (with `min_calls`) that did not run in the window.
    pub gone: usize,
    /// The database's error signals, when both windows have them.
    pub database: Option<DatabaseComparison>,
    /// Anything that limits the comparison.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// What the workload adds to a verdict.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkloadJudgement {
    /// The figures, when a comparison was made.
    pub comparison: Option<WorkloadComparison>,
    /// Regressions that a later measurement may confirm or clear (statements, rollbacks).
    pub fail: Vec<String>,
    /// Failures that stand on their own (deadlocks: transactions were aborted).
    pub critical: Vec<String>,
    /// The workload could not be read.
    pub error: Vec<String>,
    /// No baseline to compare with.
    pub inconclusive: Vec<String>,
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

/// The machine slowdown of a window against its baseline: the least of its latency probes'
/// control factors ([`machine_factor`], each at least 1), or 1 without any.
///
/// Why the least and not every probe's own, nor all controls pooled: the control query runs
/// right after each probe execution on the same session, so a release that makes one probe's
/// queries heavy slows that probe's own controls too (measured on Postgres, with the demo's
/// dropped indexes: open-record's controls ×1.37 slower than at the baseline while caseload's,
/// in the same window on the same connection, were ×1.00), and dividing by that factor hid
/// the very regression it followed. A machine-wide slowdown (other windows, other processes,
/// the disk) slows every probe's controls alike, so the least factor still discounts it.
pub fn window_machine_factor(baseline: &Snapshot, window: &Snapshot) -> f64 {
    window
        .latency
        .iter()
        .filter_map(|(name, w)| match (baseline.latency.get(name), w) {
            (Some(Ok(b)), Ok(w)) => Some(machine_factor(&b.control_ms, &w.control_ms)),
            _ => None,
        })
        .min_by(f64::total_cmp)
        .unwrap_or(1.0)
}

/// Compare the workload of `window` with that of `baseline` (see the module documentation).
pub fn judge(
    settings: &Workload,
    r: &Regression,
    baseline: &Snapshot,
    window: &Snapshot,
) -> WorkloadJudgement {
    let mut out = WorkloadJudgement::default();
    if !settings.enabled {
        return out;
    }
    let (b, w) = match (&baseline.workload, &window.workload) {
        (_, None) | (None, _) => return out,
        (_, Some(Err(e))) => {
            out.error.push(format!(
                "workload (pg_stat_statements) could not be read: {e}"
            ));
            return out;
        }
        (Some(Err(e)), _) => {
            out.inconclusive
                .push(format!("workload: no baseline ({e})"));
            return out;
        }
        (Some(Ok(b)), Some(Ok(w))) => (b, w),
    };
    let factor = window_machine_factor(baseline, window);
    let min = settings.min_calls;
    let base: HashMap<i64, &StatementWindow> =
        b.statements.iter().map(|s| (s.queryid, s)).collect();
    let mut comparable = Vec::new();
    let mut new = Vec::new();
    let mut too_few = 0;
    for s in w.statements.iter().filter(|s| s.calls > 0) {
        match base.get(&s.queryid) {
            None if s.calls >= min => new.push(s),
            Some(bs) if s.calls >= min && bs.calls >= min => comparable.push((*bs, s)),
            _ => too_few += 1,
        }
    }
    let seen: HashSet<i64> = w
        .statements
        .iter()
        .filter(|s| s.calls > 0)
        .map(|s| s.queryid)
        .collect();
    let gone = b
        .statements
        .iter()
        .filter(|s| s.calls >= min && !seen.contains(&s.queryid))
        .count();
    comparable.sort_by(|x, y| y.1.total_ms.total_cmp(&x.1.total_ms));
    let beyond_top = comparable.len().saturating_sub(settings.statements);
    let machine = if factor > 1.05 {
        format!("; figures after discounting a machine slowdown of ×{factor:.1} seen on the control query")
    } else {
        String::new()
    };
    let mut statements = Vec::new();
    for (bs, ws) in comparable.into_iter().take(settings.statements) {
        let c = compare_statement(bs, ws, factor, r);
        if c.regressed {
            out.fail.push(format!(
                "statement regressed (pg_stat_statements queryid {}): mean {:.3} ms → {:.3} ms (×{:.1}) over {} → {} calls, shift +{:.3} ms (floor {} ms), z-test p = {} (alpha {}){machine}: {}",
                c.queryid,
                c.baseline_mean_ms,
                c.mean_ms,
                c.ratio,
                c.baseline_calls,
                c.calls,
                c.shift_ms,
                r.floor_ms,
                p_text(c.p_value),
                r.alpha,
                c.query
            ));
        }
        statements.push(c);
    }
    new.sort_by(|x, y| y.total_ms.total_cmp(&x.total_ms));
    let new_count = new.len();
    let new_statements = new
        .into_iter()
        .take(NEW_LISTED)
        .map(|s| NewStatement {
            queryid: s.queryid,
            query: shown(s),
            calls: s.calls,
            mean_ms: s.mean_ms,
            total_ms: s.total_ms,
        })
        .collect();
    let mut notes: Vec<String> = b
        .notes
        .iter()
        .map(|n| format!("baseline: {n}"))
        .chain(w.notes.iter().cloned())
        .collect();
    let database = match (b.database, w.database) {
        (Some(bd), Some(wd)) => {
            let d = compare_database(bd, b.seconds, wd, w.seconds, settings, r);
            if d.deadlocks_regressed {
                out.critical.push(format!(
                    "deadlocks: {} in the window ({:.1} s) against {} in the baseline ({:.1} s): transactions were aborted (pg_stat_database)",
                    wd.deadlocks, w.seconds, bd.deadlocks, b.seconds
                ));
            }
            if d.rollbacks_regressed {
                out.fail.push(format!(
                    "rollbacks: {} of {} transactions rolled back ({:.1}%) against {} of {} ({:.1}%) in the baseline, z-test p = {} (alpha {}): transactions are failing (pg_stat_database)",
                    wd.rollbacks,
                    wd.commits + wd.rollbacks,
                    d.rollback_rate * 100.0,
                    bd.rollbacks,
                    bd.commits + bd.rollbacks,
                    d.baseline_rollback_rate * 100.0,
                    p_text(d.rollback_p_value.unwrap_or(1.0)),
                    r.alpha
                ));
            }
            Some(d)
        }
        _ => {
            notes.push(
                "pg_stat_database counters were reset during a window: error signals not compared"
                    .into(),
            );
            None
        }
    };
    out.comparison = Some(WorkloadComparison {
        baseline_seconds: b.seconds,
        seconds: w.seconds,
        machine_factor: factor,
        statements,
        beyond_top,
        too_few_calls: too_few,
        new_statements,
        new_count,
        gone,
        database,
        notes,
    });
    out
}

/// A p-value for people: `1.2e-5`, or `< 1e-300` where it underflows.
fn p_text(p: f64) -> String {
    if p < 1e-300 {
        "< 1e-300".into()
    } else {
        format!("{p:.2e}")
    }
}

fn shown(s: &StatementWindow) -> String {
    s.query
        .clone()
        .unwrap_or_else(|| "(text not available)".into())
}

fn compare_statement(
    b: &StatementWindow,
    w: &StatementWindow,
    factor: f64,
    r: &Regression,
) -> StatementComparison {
    let mean = w.mean_ms / factor;
    let sd = w.stddev_ms / factor;
    let p_value = welch_mean_greater(
        Moments {
            n: w.calls as f64,
            mean,
            variance: sd * sd,
        },
        Moments {
            n: b.calls as f64,
            mean: b.mean_ms,
            variance: b.stddev_ms * b.stddev_ms,
        },
    )
    .unwrap_or(1.0);
    let shift = mean - b.mean_ms;
    let ratio = ratio(mean, b.mean_ms);
    StatementComparison {
        queryid: w.queryid,
        query: shown(w),
        baseline_calls: b.calls,
        calls: w.calls,
        baseline_mean_ms: b.mean_ms,
        mean_ms: mean,
        ratio,
        shift_ms: shift,
        p_value,
        total_ms: w.total_ms,
        regressed: p_value < r.alpha && shift > r.floor_ms && ratio > r.median_ratio,
    }
}

fn compare_database(
    b: DatabaseWindow,
    b_secs: f64,
    w: DatabaseWindow,
    w_secs: f64,
    settings: &Workload,
    r: &Regression,
) -> DatabaseComparison {
    let rate = |count: i64, secs: f64| {
        if count == 0 {
            0.0
        } else if secs > 0.0 {
            count as f64 / secs
        } else {
            f64::INFINITY
        }
    };
    let deadlocks_regressed =
        w.deadlocks > 0 && rate(w.deadlocks, w_secs) > r.median_ratio * rate(b.deadlocks, b_secs);
    let fraction = |d: DatabaseWindow| {
        let n = d.commits + d.rollbacks;
        (
            n,
            if n > 0 {
                d.rollbacks as f64 / n as f64
            } else {
                0.0
            },
        )
    };
    let (bn, bf) = fraction(b);
    let (wn, wf) = fraction(w);
    let min = i64::try_from(settings.min_calls).unwrap_or(i64::MAX);
    let rollback_p_value = (bn >= min && wn >= min)
        .then(|| {
            welch_mean_greater(
                Moments {
                    n: wn as f64,
                    mean: wf,
                    variance: wf * (1.0 - wf),
                },
                Moments {
                    n: bn as f64,
                    mean: bf,
                    variance: bf * (1.0 - bf),
                },
            )
        })
        .flatten();
    let rollbacks_regressed = w.rollbacks >= MIN_ROLLBACKS
        && wf > r.median_ratio * bf
        && rollback_p_value.is_some_and(|p| p < r.alpha);
    DatabaseComparison {
        baseline: b,
        window: w,
        baseline_rollback_rate: bf,
        rollback_rate: wf,
        rollback_p_value,
        rollbacks_regressed,
        deadlocks_regressed,
    }
}

#[cfg(test)]
mod tests {
    use super::window::{housekeeping, own_text};
    use super::*;
    use crate::health::probes::LatencySamples;

    fn stmt(id: i64, calls: u64, mean: f64, sd: f64) -> StatementWindow {
        StatementWindow {
            queryid: id,
            query: Some(format!("SELECT * FROM t{id} WHERE id = $1")),
            calls,
            total_ms: calls as f64 * mean,
            mean_ms: mean,
            stddev_ms: sd,
            rows: calls,
        }
    }

    fn db(commits: i64, rollbacks: i64, deadlocks: i64) -> DatabaseWindow {
        DatabaseWindow {
            commits,
            rollbacks,
            deadlocks,
            ..DatabaseWindow::default()
        }
    }

    fn snap(statements: Vec<StatementWindow>, database: Option<DatabaseWindow>) -> Snapshot {
        Snapshot {
            workload: Some(Ok(WorkloadWindow {
                seconds: 2.0,
                statements,
                omitted: 0,
                database,
                notes: Vec::new(),
            })),
            ..Snapshot::default()
        }
    }

    fn with_control(mut s: Snapshot, control: f64) -> Snapshot {
        s.latency.insert(
            "p".into(),
            Ok(LatencySamples {
                ms: vec![1.0; 10],
                rows: 10,
                control_ms: vec![control; 10],
            }),
        );
        s
    }

    fn run(b: &Snapshot, w: &Snapshot) -> WorkloadJudgement {
        judge(&Workload::default(), &Regression::default(), b, w)
    }

    #[test]
    fn an_unchanged_workload_passes_with_its_figures() {
        let b = snap(
            vec![stmt(1, 400, 0.08, 0.02), stmt(2, 50, 2.0, 0.5)],
            Some(db(500, 0, 0)),
        );
        let j = run(&b, &b.clone());
        assert!(j.fail.is_empty() && j.critical.is_empty(), "{j:?}");
        let c = j.comparison.unwrap();
        assert_eq!(c.statements.len(), 2);
        assert!(c.statements.iter().all(|s| !s.regressed));
        assert_eq!(c.new_count, 0);
    }

    #[test]
    fn a_statement_the_probes_never_run_that_regressed_fails_with_its_text_and_figures() {
        let b = snap(
            vec![stmt(7, 400, 0.08, 0.03), stmt(2, 50, 2.0, 0.5)],
            Some(db(500, 0, 0)),
        );
        let w = snap(
            vec![stmt(7, 90, 6.5, 1.0), stmt(2, 50, 2.0, 0.5)],
            Some(db(300, 0, 0)),
        );
        let j = run(&b, &w);
        assert_eq!(j.fail.len(), 1, "{j:?}");
        let reason = &j.fail[0];
        for needle in [
            "queryid 7",
            "SELECT * FROM t7 WHERE id = $1",
            "0.080 ms → 6.500 ms",
            "400 → 90 calls",
            "z-test p",
        ] {
            assert!(reason.contains(needle), "{needle}: {reason}");
        }
        assert!(
            j.critical.is_empty(),
            "a statement regression may be re-measured"
        );
        let c = j.comparison.unwrap();
        assert_eq!(
            c.statements[0].queryid, 7,
            "the window's top statement by total time first"
        );
        assert!(c.statements[0].regressed && !c.statements[1].regressed);
    }

    #[test]
    fn a_shift_below_the_floor_or_a_small_ratio_is_not_a_regression() {
        // ×4 and certain, but +0.3 ms: below the 1 ms floor.
        let b = snap(vec![stmt(1, 400, 0.1, 0.01)], None);
        let w = snap(vec![stmt(1, 400, 0.4, 0.01)], None);
        assert!(run(&b, &w).fail.is_empty());
        // +2 ms and certain, but only ×1.2.
        let b = snap(vec![stmt(1, 400, 10.0, 0.5)], None);
        let w = snap(vec![stmt(1, 400, 12.0, 0.5)], None);
        assert!(run(&b, &w).fail.is_empty());
        // ×3 and +4 ms on average, but so noisy that it is not significant.
        let b = snap(vec![stmt(1, 20, 2.0, 30.0)], None);
        let w = snap(vec![stmt(1, 20, 6.0, 30.0)], None);
        let j = run(&b, &w);
        assert!(j.fail.is_empty(), "{j:?}");
        assert!(j.comparison.unwrap().statements[0].p_value > 0.01);
    }

    #[test]
    fn statements_with_too_few_calls_are_counted_not_compared() {
        let b = snap(vec![stmt(1, 10, 0.1, 0.01), stmt(2, 400, 0.1, 0.01)], None);
        let w = snap(vec![stmt(1, 300, 9.0, 0.5), stmt(2, 5, 9.0, 0.5)], None);
        let j = run(&b, &w);
        assert!(j.fail.is_empty(), "{j:?}");
        let c = j.comparison.unwrap();
        assert_eq!((c.statements.len(), c.too_few_calls), (0, 2));
    }

    #[test]
    fn a_new_statement_is_reported_never_failed_on_alone_and_a_gone_one_is_counted() {
        let b = snap(vec![stmt(1, 400, 0.1, 0.01), stmt(3, 100, 0.1, 0.01)], None);
        let w = snap(vec![stmt(1, 400, 0.1, 0.01), stmt(2, 300, 50.0, 5.0)], None);
        let j = run(&b, &w);
        assert!(j.fail.is_empty(), "{j:?}");
        let c = j.comparison.unwrap();
        assert_eq!(c.new_count, 1);
        assert_eq!(c.new_statements[0].queryid, 2);
        assert_eq!(c.gone, 1);
    }

    #[test]
    fn only_the_top_statements_by_total_time_are_judged() {
        let settings = Workload {
            statements: 1,
            ..Workload::default()
        };
        let b = snap(vec![stmt(1, 400, 5.0, 0.1), stmt(2, 400, 0.1, 0.01)], None);
        let w = snap(vec![stmt(1, 400, 5.0, 0.1), stmt(2, 400, 3.0, 0.1)], None);
        let j = judge(&settings, &Regression::default(), &b, &w);
        let c = j.comparison.unwrap();
        assert_eq!(c.statements.len(), 1);
        assert_eq!(c.statements[0].queryid, 1);
        assert_eq!(c.beyond_top, 1);
        assert!(
            j.fail.is_empty(),
            "statement 2 is not among the top 1 by total time"
        );
    }

    #[test]
    fn a_machine_slowdown_seen_on_the_control_query_is_discounted() {
        // Every statement ×5 while the control query is ×5 too: the machine, not the release.
        let b = with_control(snap(vec![stmt(1, 400, 1.0, 0.1)], None), 0.5);
        let w = with_control(snap(vec![stmt(1, 400, 5.0, 0.5)], None), 2.5);
        let j = run(&b, &w);
        assert!(j.fail.is_empty(), "{j:?}");
        assert!((j.comparison.unwrap().machine_factor - 5.0).abs() < 1e-9);
        // With an unchanged control it is a regression.
        let w = with_control(snap(vec![stmt(1, 400, 5.0, 0.5)], None), 0.5);
        assert_eq!(run(&b, &w).fail.len(), 1);
    }

    #[test]
    fn a_deadlock_where_the_baseline_had_none_fails_outright() {
        let b = snap(vec![], Some(db(500, 0, 0)));
        let w = snap(vec![], Some(db(500, 2, 2)));
        let j = run(&b, &w);
        assert_eq!(j.critical.len(), 1, "{j:?}");
        assert!(
            j.critical[0].contains("deadlocks: 2 in the window"),
            "{:?}",
            j.critical
        );
        // The same rate as in the baseline is not a regression.
        let b = snap(vec![], Some(db(500, 2, 2)));
        assert!(run(&b, &w).critical.is_empty());
    }

    #[test]
    fn a_rollback_rate_well_above_the_baseline_fails_and_a_few_rollbacks_do_not() {
        let b = snap(vec![], Some(db(600, 0, 0)));
        let w = snap(vec![], Some(db(500, 120, 0)));
        let j = run(&b, &w);
        assert_eq!(j.fail.len(), 1, "{j:?}");
        assert!(
            j.fail[0].starts_with("rollbacks: 120 of 620 transactions"),
            "{:?}",
            j.fail
        );
        // A handful of rollbacks is below MIN_ROLLBACKS.
        let w = snap(vec![], Some(db(500, 4, 0)));
        assert!(run(&b, &w).fail.is_empty());
        // An application that always rolls back half its transactions, unchanged.
        let b = snap(vec![], Some(db(300, 300, 0)));
        let w = snap(vec![], Some(db(310, 290, 0)));
        assert!(run(&b, &w).fail.is_empty());
        // Too few transactions to judge a rate.
        let b = snap(vec![], Some(db(5, 0, 0)));
        let w = snap(vec![], Some(db(5, 12, 0)));
        let j = run(&b, &w);
        assert!(j.fail.is_empty(), "{j:?}");
        assert_eq!(
            j.comparison.unwrap().database.unwrap().rollback_p_value,
            None
        );
    }

    #[test]
    fn missing_figures_are_said_and_an_unreadable_window_is_an_error() {
        let b = snap(vec![stmt(1, 400, 0.1, 0.01)], Some(db(1, 0, 0)));
        // No workload at all (SQLite, extension missing): nothing to add.
        let none = Snapshot::default();
        assert_eq!(run(&none, &none), WorkloadJudgement::default());
        assert_eq!(run(&b, &none), WorkloadJudgement::default());
        let w = Snapshot {
            workload: Some(Err("connection refused".into())),
            ..Snapshot::default()
        };
        assert_eq!(run(&b, &w).error.len(), 1);
        assert_eq!(run(&w, &b).inconclusive.len(), 1);
        // Counters reset during a window: said, not compared.
        let w = snap(vec![], None);
        let c = run(&b, &w).comparison.unwrap();
        assert!(c.database.is_none() && !c.notes.is_empty());
        // Disabled in the plan: nothing.
        let off = Workload {
            enabled: false,
            ..Workload::default()
        };
        assert_eq!(
            judge(&off, &Regression::default(), &b, &w),
            WorkloadJudgement::default()
        );
    }

    #[test]
    fn texts_lose_comments_and_literals_and_utility_statements_keep_only_their_command() {
        assert_eq!(
            display_text(
                "/* app: ward 7, user jsmith */ SELECT  a,\n  b FROM t -- trace 42\n WHERE id = $1"
            ),
            "SELECT a, b FROM t WHERE id = $1"
        );
        assert_eq!(
            display_text("SELECT * FROM t WHERE x = 'O''Brien' AND y = $1"),
            "SELECT * FROM t WHERE x = '?' AND y = $1"
        );
        let call = display_text("CALL save_note(943, 'Patient reports low mood')");
        assert!(
            call.starts_with("CALL …") && !call.contains("943") && !call.contains("mood"),
            "{call}"
        );
        let long = format!("SELECT {} FROM t", vec!["column_name"; 60].join(", "));
        let shown = display_text(&long);
        assert_eq!(shown.chars().count(), MAX_TEXT + 1, "{shown}");
        assert!(shown.ends_with('…'));
        assert!(housekeeping(&display_text("BEGIN")) && housekeeping("SELECT $1"));
        assert!(!housekeeping("SELECT * FROM patient WHERE id = $1"));
        assert!(
            own_text("/* flotilla workload */ SELECT 1")
                && own_text(concat!("SELECT * FROM ", crate::db::sql::tracking_table!()))
        );
        assert!(own_text("SELECT count(*) FROM pg_locks WHERE NOT granted"));
        assert!(own_text(
            "SELECT wait_event FROM pg_stat_activity WHERE datname = $1"
        ));
        assert!(!own_text("SELECT * FROM patient WHERE id = $1"));
    }
}
