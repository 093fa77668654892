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
    /// Sessions running the samples at once (each its own connection), so that what a
    /// migration serialises shows as latency under concurrent load.
    #[serde(default = "one")]
    pub concurrency: usize,
}

fn default_samples() -> usize {
    30
}

fn one() -> usize {
    1
}

/// Synthetic records written, each timed, read back by another session, and removed.
/// `$1` is a unique negative id, `$2` a unique token the read-back must return.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WriteProbe {
    /// Commits one record (a single-row `INSERT ... VALUES`).
    pub insert: String,
    /// Returns the token for `$1` (one row, one text column).
    pub read_back: String,
    /// Removes the record (`DELETE FROM <table> WHERE <id column> = $1`).
    pub cleanup: String,
    /// Writes per window. Default: sized from `max_loss_rate` (see [`Health::write_sizing`]),
    /// or [`DEFAULT_WRITE_SAMPLES`] without one.
    #[serde(default)]
    pub samples: Option<usize>,
    /// The loss rate that must not slip through: the post-upgrade and soak windows together
    /// make enough writes to see at least one loss at this rate with `confidence`.
    #[serde(default)]
    pub max_loss_rate: Option<Rate>,
    /// Confidence of the loss detection and of the loss bound each verdict states.
    /// Default: `1 - regression.alpha` (99% with the default alpha).
    #[serde(default)]
    pub confidence: Option<Rate>,
    /// Sessions writing at once (Postgres; SQLite admits one writer at a time, so its write
    /// probe writes from one session).
    #[serde(default = "one")]
    pub concurrency: usize,
    /// Thresholds for write latency where they differ from `regression` (see
    /// [`WriteProbe::regression`]).
    #[serde(default)]
    pub regression: WriteRegression,
}

/// Write latency's thresholds: any field left out takes `regression`'s value, except the
/// ratios, whose defaults are looser ([`WRITE_MEDIAN_RATIO`], [`WRITE_P95_RATIO`],
/// [`WRITE_P99_RATIO`]): a commit waits for the disk, and on shared storage the disk's flush
/// time moves by more between two windows than a control commit can discount.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WriteRegression {
    /// One-sided Mann–Whitney U significance level.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// Allowed post/baseline ratio of median write times.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub median_ratio: Option<f64>,
    /// Tail guard on the 95th percentiles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p95_ratio: Option<f64>,
    /// Tail guard on the 99th percentiles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ratio: Option<f64>,
    /// A shift smaller than this, in milliseconds, is never a regression.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor_ms: Option<f64>,
}

/// Default allowed post/baseline ratio of median write times. Measured on this project's
/// shared 2-core VM: between clean windows of SQLite writes the median moved by up to ×1.9
/// after the write control's discount (its disk flips between ~2 ms and ~15-20 ms flushes);
/// the demo's write faults move it by ×4 to ×20.
pub const WRITE_MEDIAN_RATIO: f64 = 3.0;
/// Default tail guard on write times' 95th percentiles.
pub const WRITE_P95_RATIO: f64 = 4.0;
/// Default tail guard on write times' 99th percentiles.
pub const WRITE_P99_RATIO: f64 = 6.0;

/// The name write latency goes by in the gate's figures (a latency probe may not take it).
pub const WRITE_PROBE_NAME: &str = "write-probe";
/// Writes per window when the plan names neither `samples` nor `max_loss_rate`.
pub const DEFAULT_WRITE_SAMPLES: usize = 30;
/// The fewest writes a window makes: fewer cannot give write latency a baseline to compare.
pub const MIN_WRITES_PER_WINDOW: usize = 10;
/// The most writes one window may make: each is a real insert into a live clinical
/// database, so detection that needs more must come from more windows (a longer soak).
pub const MAX_WRITES_PER_WINDOW: usize = 250;
/// Writes the baseline makes at most: enough for the write-latency comparison (loss before
/// the upgrade is not what the gate judges).
pub const MAX_BASELINE_WRITES: usize = 40;
/// Most sessions a probe may run at once.
pub const MAX_PROBE_CONCURRENCY: usize = 16;

/// A proportion, written as a percentage (`2%`, `0.5%`) or a fraction (`0.02`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Rate(pub f64);

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Rate;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a percentage like 2% or a fraction like 0.02")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Rate, E> {
                if v.is_finite() && v > 0.0 && v < 1.0 {
                    Ok(Rate(v))
                } else {
                    Err(E::custom(format!(
                        "{v} is not a fraction between 0 and 1: write a percentage like 2% or a fraction like 0.02"
                    )))
                }
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Rate, E> {
                self.visit_f64(v as f64)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Rate, E> {
                self.visit_f64(v as f64)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Rate, E> {
                let t = v.trim();
                match t.strip_suffix('%') {
                    Some(num) => match num.trim().parse::<f64>() {
                        Ok(p) if p.is_finite() && p > 0.0 && p < 100.0 => Ok(Rate(p / 100.0)),
                        _ => Err(E::custom(format!(
                            "'{v}' is not a percentage between 0% and 100%"
                        ))),
                    },
                    None => match t.parse::<f64>() {
                        Ok(p) => self.visit_f64(p),
                        Err(_) => Err(E::custom(format!(
                            "'{v}' is not a rate: write a percentage like 2% or a fraction like 0.02"
                        ))),
                    },
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&percent(self.0))
    }
}

/// A proportion as a short percentage: `2%`, `0.5%`, `12.6%`, `0.04%`.
pub fn percent(p: f64) -> String {
    let v = p * 100.0;
    let text = if v >= 10.0 {
        format!("{v:.1}")
    } else if v >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    };
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    format!("{text}%")
}

/// How many independent writes it takes to see at least one loss, with probability
/// `confidence`, when each write is lost with probability `rate`: the smallest `n` with
/// `(1 - rate)^n <= 1 - confidence`, i.e. `n >= ln(1 - confidence) / ln(1 - rate)`
/// (2% at 99% → 228; 5% at 95% → 59). `None` when either is not strictly between 0 and 1.
pub fn writes_to_detect(rate: f64, confidence: f64) -> Option<u64> {
    if !(rate > 0.0 && rate < 1.0 && confidence > 0.0 && confidence < 1.0) {
        return None;
    }
    let beta = 1.0 - confidence;
    let estimate = (beta.ln() / (-rate).ln_1p()).ceil().max(1.0);
    if !estimate.is_finite() || estimate > 1e12 {
        return None;
    }
    // Correct any rounding of the logarithms at the boundary.
    let miss = |n: u64| (n as f64) * (-rate).ln_1p() <= beta.ln();
    let mut n = estimate as u64;
    while n > 1 && miss(n - 1) {
        n -= 1;
    }
    while !miss(n) {
        n += 1;
    }
    Some(n)
}

/// How a wave's write probe is sized: writes per window and the detection it buys.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WriteSizing {
    /// Writes in each post-upgrade and soak window.
    pub per_window: usize,
    /// Writes in the baseline (for the write-latency comparison).
    pub baseline: usize,
    /// Windows that count: the post-upgrade check and each soak round.
    pub windows: u32,
    /// Sessions writing at once.
    pub concurrency: usize,
    /// The plan's `max_loss_rate`, when given.
    pub max_loss_rate: Option<f64>,
    /// Confidence of the detection and of the loss bounds.
    pub confidence: f64,
    /// Writes needed to detect `max_loss_rate` at `confidence`.
    pub required: Option<u64>,
}

impl WriteSizing {
    /// All the writes the windows make together.
    pub fn total(&self) -> u64 {
        self.per_window as u64 * u64::from(self.windows)
    }

    /// One line for `plan` and `validate`.
    pub fn describe(&self) -> String {
        let windows = match self.windows {
            1 => "the post-upgrade window".to_string(),
            n => format!(
                "{n} windows (post-upgrade + {} soak round{})",
                n - 1,
                if n == 2 { "" } else { "s" }
            ),
        };
        let sessions = match self.concurrency {
            1 => "1 session".to_string(),
            n => format!("{n} sessions at once (one on SQLite, which admits one writer at a time)"),
        };
        match (self.max_loss_rate, self.required) {
            (Some(rate), Some(required)) => format!(
                "{} writes per window × {windows} = {} (≥ {required} needed to catch a {} loss rate at {} confidence), {sessions}; baseline {}",
                self.per_window,
                self.total(),
                percent(rate),
                percent(self.confidence),
                self.baseline
            ),
            _ => format!(
                "{} writes per window × {windows} = {} ({sessions}); no max_loss_rate: 0 losses in {} writes would bound the loss rate at {} ({} confidence)",
                self.per_window,
                self.total(),
                self.total(),
                zero_loss_bound(self.total(), self.confidence)
                    .map(percent)
                    .unwrap_or_else(|| "-".into()),
                percent(self.confidence)
            ),
        }
    }
}

/// `1 - (1 - confidence)^(1/n)`: the exact upper bound on the loss rate after `n` writes
/// without a loss (kept here so that the plan's description needs nothing from the gate).
fn zero_loss_bound(n: u64, confidence: f64) -> Option<f64> {
    (n > 0 && confidence > 0.0 && confidence < 1.0)
        .then(|| 1.0 - (1.0 - confidence).powf(1.0 / n as f64))
}

impl WriteProbe {
    /// The thresholds write latency is judged by: `write_probe.regression` where given, else
    /// `regression`'s alpha and floor and the write defaults for the ratios.
    pub fn regression(&self, base: &Regression) -> Regression {
        let w = &self.regression;
        Regression {
            alpha: w.alpha.unwrap_or(base.alpha),
            median_ratio: w.median_ratio.unwrap_or(WRITE_MEDIAN_RATIO),
            p95_ratio: w.p95_ratio.unwrap_or(WRITE_P95_RATIO),
            p99_ratio: w.p99_ratio.unwrap_or(WRITE_P99_RATIO),
            floor_ms: w.floor_ms.unwrap_or(base.floor_ms),
        }
    }

    /// Confidence of the loss detection and bounds.
    pub fn confidence(&self, regression: &Regression) -> f64 {
        self.confidence.map_or(1.0 - regression.alpha, |c| c.0)
    }
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
    /// Gate windows measured at once on one PostgreSQL server (default
    /// [`DEFAULT_WINDOWS_PER_SERVER`]; see `health::slots`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows_per_server: Option<usize>,
}

/// Gate windows measured at once on one PostgreSQL server when the plan does not say.
pub const DEFAULT_WINDOWS_PER_SERVER: usize = 2;

/// The most `windows_per_server` a plan may ask for.
pub const MAX_WINDOWS_PER_SERVER: usize = 64;

impl Health {
    /// Gate windows measured at once on one PostgreSQL server.
    pub fn windows_per_server(&self) -> usize {
        self.windows_per_server
            .unwrap_or(DEFAULT_WINDOWS_PER_SERVER)
            .clamp(1, MAX_WINDOWS_PER_SERVER)
    }

    /// How the write probe is sized for a wave with `soak` (`None` without a write probe):
    /// the writes the post-upgrade and soak windows need together to detect `max_loss_rate`
    /// at the plan's confidence, spread over those windows. An error names the figures when
    /// the windows cannot reach it (a soak too short, or `samples` too small).
    pub fn write_sizing(&self, soak: Option<Soak>) -> Option<Result<WriteSizing, String>> {
        let wp = self.write_probe.as_ref()?;
        let rounds = soak.map_or(0, |s| s.rounds);
        let windows = 1 + rounds;
        let confidence = wp.confidence(&self.regression);
        let rate = wp.max_loss_rate.map(|r| r.0);
        let required = rate.and_then(|r| writes_to_detect(r, confidence));
        let soak_text = match rounds {
            0 => "no soak".to_string(),
            1 => "1 soak round".to_string(),
            n => format!("{n} soak rounds"),
        };
        let per_window = match (wp.samples, required) {
            (Some(s), Some(req)) if (s as u64) * u64::from(windows) < req => {
                let rounds_needed = req.div_ceil(s as u64).saturating_sub(1);
                let samples_needed = req.div_ceil(u64::from(windows));
                let raise = if samples_needed <= MAX_WRITES_PER_WINDOW as u64 {
                    format!("raise samples to {samples_needed} or ")
                } else {
                    String::new()
                };
                return Some(Err(format!(
                    "write_probe: max_loss_rate {} at {} confidence needs {req} writes after the upgrade, but samples: {s} × {windows} window{} (post-upgrade, {soak_text}) make {}: {raise}lengthen the soak to {rounds_needed} rounds",
                    percent(rate.unwrap_or_default()),
                    percent(confidence),
                    if windows == 1 { "" } else { "s" },
                    s as u64 * u64::from(windows),
                )));
            }
            (Some(s), _) => s,
            (None, Some(req)) => {
                let spread = req.div_ceil(u64::from(windows));
                if spread > MAX_WRITES_PER_WINDOW as u64 {
                    let rounds_needed = req.div_ceil(MAX_WRITES_PER_WINDOW as u64) - 1;
                    return Some(Err(format!(
                        "write_probe: max_loss_rate {} at {} confidence needs {req} writes after the upgrade; {windows} window{} (post-upgrade, {soak_text}) would need {spread} writes each, more than the {MAX_WRITES_PER_WINDOW} a window may make on a live database: the soak is too short, give it at least {rounds_needed} rounds",
                        percent(rate.unwrap_or_default()),
                        percent(confidence),
                        if windows == 1 { "" } else { "s" },
                    )));
                }
                (spread as usize).max(MIN_WRITES_PER_WINDOW)
            }
            (None, None) => DEFAULT_WRITE_SAMPLES,
        };
        Some(Ok(WriteSizing {
            per_window,
            baseline: per_window.min(MAX_BASELINE_WRITES),
            windows,
            concurrency: wp.concurrency,
            max_loss_rate: rate,
            confidence,
            required,
        }))
    }

    /// True when there is nothing to measure.
    pub fn is_empty(&self) -> bool {
        self.latency_probes.is_empty()
            && self.write_probe.is_none()
            && self.integrity.is_empty()
            && self.invariants.is_empty()
    }

    /// Problems that need no database: thresholds out of range, duplicate names, bad sizes.
    pub fn static_problems(&self) -> Vec<String> {
        let mut out = regression_problems("regression", &self.regression);
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
            if p.name == WRITE_PROBE_NAME {
                out.push(format!(
                    "latency probe name '{WRITE_PROBE_NAME}' is taken by the write probe's figures"
                ));
            }
            if !(1..=MAX_PROBE_CONCURRENCY).contains(&p.concurrency) || p.concurrency > p.samples {
                out.push(format!(
                    "latency probe '{}': concurrency must be between 1 and {MAX_PROBE_CONCURRENCY} and at most its samples, got {}",
                    p.name, p.concurrency
                ));
            }
        }
        if let Some(w) = &self.write_probe {
            out.extend(w.static_problems(&self.regression));
        }
        if let Some(n) = self.windows_per_server {
            if !(1..=MAX_WINDOWS_PER_SERVER).contains(&n) {
                out.push(format!(
                    "windows_per_server must be between 1 and {MAX_WINDOWS_PER_SERVER}, got {n}"
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

/// Thresholds out of range, named `{what}.{field}`.
fn regression_problems(what: &str, r: &Regression) -> Vec<String> {
    let mut out = Vec::new();
    if !(r.alpha > 0.0 && r.alpha < 0.5) {
        out.push(format!(
            "{what}.alpha must be between 0 and 0.5 (exclusive), got {}",
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
                "{what}.{name} must be a ratio of at least 1.0, got {v}"
            ));
        }
    }
    if !(r.floor_ms.is_finite() && r.floor_ms >= 0.0) {
        out.push(format!(
            "{what}.floor_ms must be 0 or more, got {}",
            r.floor_ms
        ));
    }
    out
}

impl WriteProbe {
    fn static_problems(&self, regression: &Regression) -> Vec<String> {
        let mut out = regression_problems("write_probe.regression", &self.regression(regression));
        if let Some(s) = self.samples {
            if !(MIN_WRITES_PER_WINDOW..=MAX_WRITES_PER_WINDOW).contains(&s) {
                out.push(format!(
                    "write_probe: samples must be between {MIN_WRITES_PER_WINDOW} and {MAX_WRITES_PER_WINDOW} writes per window, got {s}"
                ));
            }
        }
        if !(1..=MAX_PROBE_CONCURRENCY).contains(&self.concurrency) {
            out.push(format!(
                "write_probe: concurrency must be between 1 and {MAX_PROBE_CONCURRENCY}, got {}",
                self.concurrency
            ));
        }
        if let Some(r) = self.max_loss_rate {
            if r.0 > 0.5 {
                out.push(format!(
                    "write_probe: max_loss_rate {r} is not a limit worth having (at most 50%)"
                ));
            }
            if r.0 < 0.0001 {
                out.push(format!(
                    "write_probe: max_loss_rate {r} would need more writes than a rollout can make (at least 0.01%)"
                ));
            }
        }
        let c = self.confidence(regression);
        if !(0.5..=0.9999).contains(&c) {
            out.push(format!(
                "write_probe: confidence must be between 50% and 99.99%, got {}",
                percent(c)
            ));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_to_detect_matches_reference_values() {
        // n = ceil(ln(1 - confidence) / ln(1 - rate)); the logarithm ratios, from mpmath:
        // 2% at 99%: 227.948 -> 228 (DESIGN.md's figure); 5% at 95%: 58.404 -> 59;
        // 5% at 99%: 89.781 -> 90; 1% at 95%: 298.073 -> 299; 1% at 99%: 458.211 -> 459;
        // 0.1% at 99%: 4602.87 -> 4603.
        assert_eq!(writes_to_detect(0.02, 0.99), Some(228));
        assert_eq!(writes_to_detect(0.05, 0.95), Some(59));
        assert_eq!(writes_to_detect(0.05, 0.99), Some(90));
        assert_eq!(writes_to_detect(0.01, 0.95), Some(299));
        assert_eq!(writes_to_detect(0.01, 0.99), Some(459));
        assert_eq!(writes_to_detect(0.001, 0.99), Some(4603));
        // An exact power: 0.5^2 = 0.25, so 2 writes detect a 50% loss at 75%, not 3.
        assert_eq!(writes_to_detect(0.5, 0.75), Some(2));
        assert_eq!(writes_to_detect(0.0, 0.99), None);
        assert_eq!(writes_to_detect(0.02, 1.0), None);
        // The defining property, checked directly around the answer.
        for (p, c) in [(0.02, 0.99), (0.05, 0.95), (0.013, 0.9)] {
            let n = writes_to_detect(p, c).unwrap();
            assert!((1.0_f64 - p).powi(n as i32) <= 1.0 - c);
            assert!((1.0_f64 - p).powi(n as i32 - 1) > 1.0 - c);
        }
    }

    fn health(yaml: &str) -> Health {
        serde_saphyr::from_str(yaml).unwrap()
    }

    const PROBE: &str = "write_probe: { insert: i, read_back: r, cleanup: c";

    fn soak(rounds: u32) -> Option<Soak> {
        Some(Soak {
            rounds,
            interval: Duration::from_secs(1),
        })
    }

    #[test]
    fn writes_are_spread_over_the_post_upgrade_and_soak_windows() {
        let h = health(&format!("{PROBE}, max_loss_rate: 2%, concurrency: 4 }}"));
        // Confidence defaults to 1 - alpha = 99%: 228 writes over 3 windows = 76 each.
        let s = h.write_sizing(soak(2)).unwrap().unwrap();
        assert_eq!(s.required, Some(228));
        assert_eq!((s.per_window, s.windows, s.total()), (76, 3, 228));
        assert_eq!(s.baseline, MAX_BASELINE_WRITES);
        assert_eq!(s.concurrency, 4);
        assert!(
            s.describe().contains("76 writes per window × 3 windows"),
            "{}",
            s.describe()
        );
        assert!(
            s.describe().contains("2% loss rate at 99% confidence"),
            "{}",
            s.describe()
        );
        // One soak round: 2 windows of 114.
        let s = h.write_sizing(soak(1)).unwrap().unwrap();
        assert_eq!((s.per_window, s.windows), (114, 2));
        // No soak: the post-upgrade window makes all 228 (under the per-window cap).
        let s = h.write_sizing(None).unwrap().unwrap();
        assert_eq!((s.per_window, s.windows), (228, 1));
        // A long soak never goes below the minimum a window needs.
        let s = h.write_sizing(soak(40)).unwrap().unwrap();
        assert_eq!(s.per_window, MIN_WRITES_PER_WINDOW);
    }

    #[test]
    fn a_soak_too_short_for_the_loss_rate_is_refused_with_the_figures() {
        // 1% at 99% needs 459 writes: more than one window may make.
        let h = health(&format!("{PROBE}, max_loss_rate: 1% }}"));
        let e = h.write_sizing(None).unwrap().unwrap_err();
        assert!(e.contains("459 writes"), "{e}");
        assert!(e.contains("soak is too short"), "{e}");
        assert!(e.contains("at least 1 rounds"), "{e}");
        assert!(h.write_sizing(soak(1)).unwrap().is_ok());
        // Fixed samples that the windows cannot reach.
        let h = health(&format!("{PROBE}, max_loss_rate: 2%, samples: 40 }}"));
        let e = h.write_sizing(soak(2)).unwrap().unwrap_err();
        assert!(e.contains("228 writes"), "{e}");
        assert!(e.contains("40 × 3 windows"), "{e}");
        assert!(e.contains("make 120"), "{e}");
        assert!(e.contains("raise samples to 76"), "{e}");
        assert!(e.contains("lengthen the soak to 5 rounds"), "{e}");
        assert!(h.write_sizing(soak(5)).unwrap().is_ok());
        // An explicit confidence changes the figure: 2% at 95% needs 149.
        let h = health(&format!("{PROBE}, max_loss_rate: 2%, confidence: 95% }}"));
        assert_eq!(h.write_sizing(None).unwrap().unwrap().required, Some(149));
    }

    #[test]
    fn without_a_loss_rate_the_default_sample_is_used_and_its_bound_stated() {
        let h = health(&format!("{PROBE} }}"));
        let s = h.write_sizing(soak(2)).unwrap().unwrap();
        assert_eq!((s.per_window, s.required), (DEFAULT_WRITE_SAMPLES, None));
        assert!(
            s.describe().contains("no max_loss_rate"),
            "{}",
            s.describe()
        );
        assert!(Health::default().write_sizing(soak(2)).is_none());
    }

    #[test]
    fn rates_read_as_percentages_or_fractions_and_nonsense_is_refused() {
        let h = health(&format!("{PROBE}, max_loss_rate: 0.5% }}"));
        assert_eq!(h.write_probe.unwrap().max_loss_rate, Some(Rate(0.005)));
        let h = health(&format!("{PROBE}, max_loss_rate: 0.02 }}"));
        assert_eq!(h.write_probe.unwrap().max_loss_rate, Some(Rate(0.02)));
        for bad in ["2", "150%", "-1%", "two percent", "0%"] {
            let r: Result<Health, _> =
                serde_saphyr::from_str(&format!("{PROBE}, max_loss_rate: {bad} }}"));
            assert!(r.is_err(), "{bad} was accepted");
        }
        let r: Result<Health, _> = serde_saphyr::from_str(&format!("{PROBE}, max_loss: 2% }}"));
        assert!(r.is_err(), "unknown field accepted");
        assert_eq!(percent(0.02), "2%");
        assert_eq!(percent(0.0246), "2.46%");
        assert_eq!(percent(0.126), "12.6%");
        assert_eq!(percent(0.0004), "0.04%");
    }

    #[test]
    fn windows_per_server_defaults_to_two_and_is_refused_out_of_range() {
        assert_eq!(
            health("{}").windows_per_server(),
            DEFAULT_WINDOWS_PER_SERVER
        );
        let h = health("windows_per_server: 6");
        assert_eq!(h.windows_per_server(), 6);
        assert!(h.static_problems().is_empty(), "{:?}", h.static_problems());
        for bad in [0, MAX_WINDOWS_PER_SERVER + 1] {
            let p = health(&format!("windows_per_server: {bad}")).static_problems();
            assert!(
                p.iter()
                    .any(|m| m.contains("windows_per_server must be between 1 and 64")),
                "{bad}: {p:?}"
            );
        }
    }

    #[test]
    fn probe_sizes_and_concurrency_out_of_range_are_problems() {
        let h = health(&format!("{PROBE}, samples: 5, concurrency: 0 }}"));
        let p = h.static_problems();
        assert!(
            p.iter()
                .any(|m| m.contains("samples must be between 10 and 250")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|m| m.contains("concurrency must be between 1 and 16")),
            "{p:?}"
        );
        let h = health(&format!("{PROBE}, max_loss_rate: 60% }}"));
        assert!(!h.static_problems().is_empty());
        let h = health("latency_probes: [{ name: write-probe, sql: x }]");
        assert!(h.static_problems().iter().any(|m| m.contains("taken")));
    }
}
