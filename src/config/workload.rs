//! The `health.workload` section of a plan: how the trust's real workload is compared between
//! the baseline and each window on PostgreSQL (`pg_stat_statements` and `pg_stat_database`).
//! Every field has a default, so a plan without the section judges the workload wherever the
//! extension is available. SQLite has no equivalent: there the probes are the only signal.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Settings for judging the real workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Workload {
    /// Judge the workload on trusts where `pg_stat_statements` is available (default true).
    pub enabled: bool,
    /// How many statements are judged per window: the window's top statements by total
    /// execution time among those with `min_calls` in both the baseline and the window.
    pub statements: usize,
    /// Calls a statement needs in the baseline window and in the window to be compared; also
    /// the transactions each window needs before its rollback rate is judged.
    pub min_calls: u64,
    /// Shortest workload window when the trust has traffic: a window that closes sooner is
    /// held open (the gate waits) until it lasts this long, so that it sees enough calls. A
    /// trust without traffic is never waited for.
    #[serde(with = "humantime_serde")]
    pub min_window: Duration,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            enabled: true,
            statements: 20,
            min_calls: 20,
            min_window: Duration::from_secs(2),
        }
    }
}

impl Workload {
    /// Problems that need no database.
    pub fn static_problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !(1..=200).contains(&self.statements) {
            out.push(format!(
                "workload.statements must be between 1 and 200, got {}",
                self.statements
            ));
        }
        if !(5..=1_000_000).contains(&self.min_calls) {
            out.push(format!(
                "workload.min_calls must be between 5 and 1000000 (the comparison of means needs a few calls), got {}",
                self.min_calls
            ));
        }
        if self.min_window > Duration::from_secs(600) {
            out.push(format!(
                "workload.min_window must be at most 10m, got {}",
                humantime::format_duration(self.min_window)
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        assert!(Workload::default().static_problems().is_empty());
        let bad = Workload {
            enabled: true,
            statements: 0,
            min_calls: 1,
            min_window: Duration::from_secs(3600),
        };
        let problems = bad.static_problems();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("workload.statements"));
        assert!(problems[1].contains("workload.min_calls"));
        assert!(problems[2].contains("workload.min_window"));
    }
}
