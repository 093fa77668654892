//! Where the entries of a plan's `health` section are written. The typed model keeps plain
//! values; this second, lenient read of the same text (unknown keys ignored, any value
//! accepted) keeps their positions, so that a problem the health model finds, or a probe
//! statement refused as unsafe, can cite its line and column.

use std::collections::HashMap;

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use super::probe_safety::StatementRef;

/// The positions of a plan's `health` entries.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct PlanPositions {
    #[serde(default)]
    health: Option<HealthPositions>,
}

#[derive(Debug, Default, Deserialize)]
struct HealthPositions {
    #[serde(default)]
    latency_probes: Vec<Spanned<ProbePositions>>,
    #[serde(default)]
    integrity: HashMap<Spanned<String>, Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    regression: Option<Spanned<HashMap<String, Spanned<serde::de::IgnoredAny>>>>,
    #[serde(default)]
    soak: Option<Spanned<serde::de::IgnoredAny>>,
    #[serde(default)]
    write_probe: Option<WritePositions>,
    #[serde(default)]
    invariants: Vec<InvariantPositions>,
}

#[derive(Debug, Default, Deserialize)]
struct ProbePositions {
    #[serde(default)]
    name: Option<Spanned<String>>,
    #[serde(default)]
    samples: Option<Spanned<serde::de::IgnoredAny>>,
    #[serde(default)]
    sql: Option<Spanned<String>>,
    #[serde(default)]
    params: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
struct WritePositions {
    #[serde(default)]
    insert: Option<Spanned<String>>,
    #[serde(default)]
    read_back: Option<Spanned<String>>,
    #[serde(default)]
    cleanup: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
struct InvariantPositions {
    #[serde(default)]
    sql: Option<Spanned<String>>,
}

impl PlanPositions {
    /// Where a probe statement is written, when known.
    pub(crate) fn statement(&self, at: StatementRef) -> Option<Location> {
        let h = self.health.as_ref()?;
        let spanned = match at {
            StatementRef::LatencySql(i) => h.latency_probes.get(i)?.value.sql.as_ref(),
            StatementRef::LatencyParams(i) => h.latency_probes.get(i)?.value.params.as_ref(),
            StatementRef::Invariant(i) => h.invariants.get(i)?.sql.as_ref(),
            StatementRef::WriteInsert => h.write_probe.as_ref()?.insert.as_ref(),
            StatementRef::WriteReadBack => h.write_probe.as_ref()?.read_back.as_ref(),
            StatementRef::WriteCleanup => h.write_probe.as_ref()?.cleanup.as_ref(),
        }?;
        Some(spanned.referenced)
    }

    /// The position of what `problem` (a message of [`Health::static_problems`]) is about: the
    /// integrity table or column, the latency probe, the regression field it names.
    pub(crate) fn locate(&self, problem: &str) -> Option<Location> {
        let h = self.health.as_ref()?;
        let quoted = |name: &str| problem.contains(&format!("'{name}'"));
        if problem.contains("integrity") {
            let mut tables: Vec<_> = h.integrity.iter().collect();
            tables.sort_by_key(|(k, _)| (k.referenced.line(), k.referenced.column()));
            for (table, columns) in &tables {
                if let Some(c) = columns.value.iter().find(|c| quoted(&c.value)) {
                    if !quoted(&table.value) || problem.contains("key columns") {
                        return Some(c.referenced);
                    }
                }
                if quoted(&table.value) {
                    return Some(table.referenced);
                }
            }
        }
        if problem.contains("latency probe") {
            // A duplicate name is reported at its second use.
            let named: Vec<_> = h
                .latency_probes
                .iter()
                .filter(|p| p.value.name.as_ref().is_some_and(|n| quoted(&n.value)))
                .collect();
            let probe = if problem.starts_with("duplicate") {
                named.get(1).or(named.first())
            } else {
                named.first()
            };
            if let Some(p) = probe {
                return Some(match (&p.value.samples, problem.contains("samples")) {
                    (Some(s), true) => s.referenced,
                    _ => p.referenced,
                });
            }
        }
        if let Some(field) = problem
            .strip_prefix("regression.")
            .and_then(|r| r.split_whitespace().next())
        {
            let r = h.regression.as_ref()?;
            return Some(r.value.get(field).map_or(r.referenced, |f| f.referenced));
        }
        if problem.starts_with("soak") {
            return h.soak.as_ref().map(|s| s.referenced);
        }
        None
    }
}
