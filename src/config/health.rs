//! The `health` section of a plan: what to measure on each trust before and after its upgrade,
//! and the thresholds that turn the measurements into a verdict.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A named read query timed `samples` times per window.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyProbe {
    /// Name used in reasons and reports.
    pub name: String,
    /// The query timed. `$1` is bound to a value from `params`, when given.
    pub sql: String,
    /// A query returning one integer column, drawn from the trust's own data (e.g. patient ids);
    /// each sample binds the next value as `$1`. The same values are used before and after.
    #[serde(default)]
    pub params: Option<String>,
    /// Timed executions per window.
    #[serde(default = "default_samples")]
    pub samples: usize,
}

fn default_samples() -> usize {
    30
}

/// A synthetic record written, read back on a fresh connection, and removed.
/// `$1` is a unique negative id, `$2` a unique token the read-back must return.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WriteProbe {
    /// Commits the record.
    pub insert: String,
    /// Returns the token for `$1` (one row, one text column).
    pub read_back: String,
    /// Removes the record.
    pub cleanup: String,
}

/// SQL that must return the expected integer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Invariant {
    /// Name used in reasons.
    pub name: String,
    /// One row, one integer column.
    pub sql: String,
    /// The value it must return.
    pub expect: i64,
}

/// When a latency difference counts as a regression.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Regression {
    /// One-sided Mann–Whitney U significance level.
    pub alpha: f64,
    /// Allowed post/baseline ratio of medians.
    pub median_ratio: f64,
    /// Tail guard: allowed post/baseline ratio of the 95th percentiles.
    pub p95_ratio: f64,
    /// Tail guard: allowed post/baseline ratio of the 99th percentiles.
    pub p99_ratio: f64,
    /// A shift (Hodges–Lehmann) smaller than this, in milliseconds, is never a regression.
    pub floor_ms: f64,
}

impl Default for Regression {
    fn default() -> Self {
        Regression {
            alpha: 0.01,
            median_ratio: 1.5,
            p95_ratio: 2.0,
            p99_ratio: 3.0,
            floor_ms: 1.0,
        }
    }
}

/// Checks repeated after a wave before the next one starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Soak {
    /// Consecutive passing rounds needed.
    pub rounds: u32,
    /// Pause between rounds, e.g. `5s`.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

/// The health section of a plan.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// Timed read queries.
    #[serde(default)]
    pub latency_probes: Vec<LatencyProbe>,
    /// The durability probe.
    #[serde(default)]
    pub write_probe: Option<WriteProbe>,
    /// Tables whose row count and key-column hash must not change (unless a migration declares
    /// `rewrites:TABLE.COLUMN`): table → key columns.
    #[serde(default)]
    pub integrity: BTreeMap<String, Vec<String>>,
    /// SQL that must return an expected value.
    #[serde(default)]
    pub invariants: Vec<Invariant>,
    /// Regression thresholds.
    #[serde(default)]
    pub regression: Regression,
    /// Default soak after each wave (a wave may override it).
    #[serde(default)]
    pub soak: Option<Soak>,
    /// The real workload on PostgreSQL (`pg_stat_statements`), where available.
    #[serde(default)]
    pub workload: super::workload::Workload,
}

impl Health {
    /// True when there is nothing to measure.
    pub fn is_empty(&self) -> bool {
        self.latency_probes.is_empty()
            && self.write_probe.is_none()
            && self.integrity.is_empty()
            && self.invariants.is_empty()
    }

    /// Problems that need no database: thresholds out of range, duplicate names, bad sizes.
    pub fn static_problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let r = &self.regression;
        if !(r.alpha > 0.0 && r.alpha < 0.5) {
            out.push(format!(
                "regression.alpha must be between 0 and 0.5 (exclusive), got {}",
                r.alpha
            ));
        }
        for (name, v) in [
            ("median_ratio", r.median_ratio),
            ("p95_ratio", r.p95_ratio),
            ("p99_ratio", r.p99_ratio),
        ] {
            if !(v.is_finite() && v >= 1.0) {
                out.push(format!(
                    "regression.{name} must be a ratio of at least 1.0, got {v}"
                ));
            }
        }
        if !(r.floor_ms.is_finite() && r.floor_ms >= 0.0) {
            out.push(format!(
                "regression.floor_ms must be 0 or more, got {}",
                r.floor_ms
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for p in &self.latency_probes {
            if !names.insert(p.name.as_str()) {
                out.push(format!("duplicate latency probe name '{}'", p.name));
            }
            if !(5..=1_000).contains(&p.samples) {
                out.push(format!(
                    "latency probe '{}': samples must be between 5 and 1000, got {}",
                    p.name, p.samples
                ));
            }
        }
        for (table, cols) in &self.integrity {
            if cols.is_empty() {
                out.push(format!("integrity table '{table}' names no key columns"));
            }
            for c in std::iter::once(table).chain(cols) {
                if !c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_') || c.is_empty() {
                    out.push(format!(
                        "integrity: '{c}' is not a plain table or column name"
                    ));
                }
            }
        }
        if let Some(s) = &self.soak {
            if s.rounds == 0 {
                out.push("soak.rounds must be at least 1".into());
            }
        }
        out.extend(self.workload.static_problems());
        out
    }
}

/// What to do when a trust fails the gate.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnRegression {
    /// Stop; leave the failed trust as it is for an operator.
    Halt,
    /// Roll the failed trust(s) back, then stop.
    #[default]
    RollbackTrustAndHalt,
    /// Roll every trust the wave upgraded back, then stop.
    RollbackWaveAndHalt,
}
