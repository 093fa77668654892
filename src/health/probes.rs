//! Measuring a trust (I/O): latency samples, the write-then-read-back probe, integrity figures
//! and invariants. Every failure to measure is recorded as data (`Err(reason)`), never dropped:
//! missing data is never a pass.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::health::{Health, LatencyProbe};
use crate::config::Trust;
use crate::db::{Access, TrustDb};

/// A measurement, or why it could not be taken.
pub type Measured<T> = Result<T, String>;

/// Timed samples of one latency probe, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencySamples {
    /// One duration per execution.
    pub ms: Vec<f64>,
    /// Rows returned over all executions.
    pub rows: usize,
    /// The control query, timed right after each execution on the same connection: it reads
    /// no table, so no migration changes it, and its slowdown between two windows is the
    /// machine's (CPU or I/O contention), not the release's.
    #[serde(default)]
    pub control_ms: Vec<f64>,
}

/// Outcome of the durability probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum WriteOutcome {
    /// The record read back intact on a fresh connection.
    Durable,
    /// The write committed but did not read back (after one confirming re-read).
    Lost { detail: String },
}

/// Row count and order-independent hashes of a table's key columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableFigures {
    /// Row count.
    pub rows: i64,
    /// Hash over every key column.
    pub hash: String,
    /// Hash over the key columns no planned migration declares it rewrites.
    pub undeclared_hash: String,
}

/// Everything measured on a trust in one window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Latency probe → samples.
    pub latency: BTreeMap<String, Measured<LatencySamples>>,
    /// The durability probe, when the plan has one.
    pub write: Option<Measured<WriteOutcome>>,
    /// Table → figures.
    pub integrity: BTreeMap<String, Measured<TableFigures>>,
    /// Invariant → value.
    pub invariants: BTreeMap<String, Measured<i64>>,
    /// The trust's real workload over the window (PostgreSQL with `pg_stat_statements`; see
    /// `health::workload`), taken by the engine around the probes; `None` where it is not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<Measured<super::workload::WorkloadWindow>>,
}

/// Remove a write probe's record left behind by a run that died between its insert and its
/// cleanup (the cleanup statement is idempotent: removing nothing is fine).
pub async fn clean_up_write_probe(trust: &Trust, health: &Health, id: i64) -> Result<(), String> {
    let Some(wp) = &health.write_probe else {
        return Ok(());
    };
    let mut db = TrustDb::connect(trust, Access::ReadWrite)
        .await
        .map_err(|e| e.to_string())?;
    let r = db
        .execute_with_id(&wp.cleanup, id, "write probe cleanup")
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    db.close().await;
    r
}

/// Parameters drawn once from the trust's own data and reused in every window, so that the
/// same records are read before and after.
pub type ProbeParams = BTreeMap<String, Vec<i64>>;

/// Which parts of the health section to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everything (baseline and post-upgrade windows).
    Full,
    /// Latency, durability and invariants: the figures that stay comparable on a live system
    /// (soak rounds).
    Soak,
    /// Integrity only (verifying a rollback).
    Integrity,
}

const WARM_UP: usize = 3;

/// The control query: a little CPU work through the same database connection and no table,
/// portable between SQLite and PostgreSQL.
pub const CONTROL_SQL: &str =
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300) SELECT COUNT(*) FROM c";

/// Every statement of the health section, with what it is (for error messages).
pub fn statements(health: &Health) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in &health.latency_probes {
        out.push((format!("latency probe '{}'", p.name), p.sql.clone()));
        if let Some(params) = &p.params {
            out.push((format!("latency probe '{}' params", p.name), params.clone()));
        }
    }
    if let Some(w) = &health.write_probe {
        out.push(("write probe insert".into(), w.insert.clone()));
        out.push(("write probe read_back".into(), w.read_back.clone()));
        out.push(("write probe cleanup".into(), w.cleanup.clone()));
    }
    for (table, columns) in &health.integrity {
        out.push((
            format!("integrity table '{table}'"),
            integrity_query(table, columns),
        ));
    }
    for i in &health.invariants {
        out.push((format!("invariant '{}'", i.name), i.sql.clone()));
    }
    out
}

fn integrity_query(table: &str, columns: &[String]) -> String {
    let select: Vec<String> = columns
        .iter()
        .map(|c| format!("CAST({c} AS TEXT)"))
        .collect();
    format!("SELECT {} FROM {table}", select.join(", "))
}

/// Check the health section against the schema the plan targets, without any trust database:
/// the shared migrations are applied to a private in-memory SQLite database and every health
/// statement is compiled there (syntax, tables, columns). Probe SQL must therefore be portable
/// between SQLite and PostgreSQL, as the migrations are.
pub async fn check_against_schema(
    health: &Health,
    catalog: &crate::migrations::Catalog,
    target: i64,
) -> Result<(), String> {
    let mut db = TrustDb::scratch().await.map_err(|e| e.to_string())?;
    let result = async {
        db.ensure_tracking_table()
            .await
            .map_err(|e| e.to_string())?;
        for m in catalog.range(None, target) {
            db.apply(m, false)
                .await
                .map_err(|e| format!("cannot build the schema to check probes against: {e}"))?;
        }
        prepare_all(&mut db, health).await
    }
    .await;
    db.close().await;
    result
}

/// Compile every health statement on `db` without running it.
pub async fn prepare_all(db: &mut TrustDb, health: &Health) -> Result<(), String> {
    for (what, sql) in statements(health) {
        db.prepare(&sql, &what).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Check the trust can run every probe (each statement compiles against its real schema) and
/// draw each probe's parameters from its data. A probe whose parameter query returns no rows is
/// an error: it would measure nothing.
pub async fn draw_params(trust: &Trust, health: &Health) -> Result<ProbeParams, String> {
    let mut out = ProbeParams::new();
    let mut db = TrustDb::connect(trust, Access::ReadOnly)
        .await
        .map_err(|e| e.to_string())?;
    let mut result = prepare_all(&mut db, health).await;
    for p in health.latency_probes.iter().filter(|_| result.is_ok()) {
        let Some(sql) = &p.params else { continue };
        match db
            .query_i64_column(sql, &format!("latency probe '{}' params", p.name))
            .await
        {
            Ok(values) if values.is_empty() => {
                result = Err(format!("latency probe '{}': its params query returned no rows, so it would measure nothing", p.name));
                break;
            }
            Ok(values) => {
                out.insert(p.name.clone(), values);
            }
            Err(e) => {
                result = Err(e.to_string());
                break;
            }
        }
    }
    db.close().await;
    result.map(|()| out)
}

/// Measure a trust. `rewrites` are the (table, column) pairs the planned migrations declare.
pub async fn measure(
    trust: &Trust,
    health: &Health,
    params: &ProbeParams,
    rewrites: &BTreeSet<(String, String)>,
    scope: Scope,
    write_probe_id: Option<(i64, String)>,
) -> Snapshot {
    let mut snap = Snapshot::default();
    let mut db = match TrustDb::connect(trust, Access::ReadOnly).await {
        Ok(db) => db,
        Err(e) => {
            let reason = e.to_string();
            fail_all(&mut snap, health, scope, &reason);
            return snap;
        }
    };
    if scope != Scope::Soak {
        for (table, columns) in &health.integrity {
            let figures = table_figures(&mut db, table, columns, rewrites).await;
            snap.integrity.insert(table.clone(), figures);
        }
    }
    if scope != Scope::Integrity {
        for inv in &health.invariants {
            let v = db
                .query_i64(&inv.sql, &format!("invariant '{}'", inv.name))
                .await
                .map_err(|e| e.to_string());
            snap.invariants.insert(inv.name.clone(), v);
        }
        for probe in &health.latency_probes {
            let samples = time_probe(&mut db, probe, params.get(&probe.name)).await;
            snap.latency.insert(probe.name.clone(), samples);
        }
    }
    db.close().await;
    if scope != Scope::Integrity {
        if let Some(wp) = &health.write_probe {
            let identity = write_probe_id.unwrap_or_else(probe_identity);
            snap.write = Some(write_probe(trust, wp, identity).await);
        }
    }
    snap
}

fn fail_all(snap: &mut Snapshot, health: &Health, scope: Scope, reason: &str) {
    if scope != Scope::Soak {
        for table in health.integrity.keys() {
            snap.integrity
                .insert(table.clone(), Err(reason.to_string()));
        }
    }
    if scope != Scope::Integrity {
        for p in &health.latency_probes {
            snap.latency.insert(p.name.clone(), Err(reason.to_string()));
        }
        for i in &health.invariants {
            snap.invariants
                .insert(i.name.clone(), Err(reason.to_string()));
        }
        if health.write_probe.is_some() {
            snap.write = Some(Err(reason.to_string()));
        }
    }
}

async fn time_probe(
    db: &mut TrustDb,
    probe: &LatencyProbe,
    params: Option<&Vec<i64>>,
) -> Measured<LatencySamples> {
    let context = format!("latency probe '{}'", probe.name);
    if probe.params.is_some() && params.is_none_or(|p| p.is_empty()) {
        return Err(format!("{context}: no parameters were drawn"));
    }
    let param = |i: usize| params.map(|p| p[i % p.len()]);
    let control = "the control query";
    for i in 0..WARM_UP {
        db.timed_query(&probe.sql, param(i), &context)
            .await
            .map_err(|e| e.to_string())?;
        db.timed_query(CONTROL_SQL, None, control)
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut ms = Vec::with_capacity(probe.samples);
    let mut control_ms = Vec::with_capacity(probe.samples);
    let mut rows = 0;
    for i in 0..probe.samples {
        let (took, n) = db
            .timed_query(&probe.sql, param(i), &context)
            .await
            .map_err(|e| e.to_string())?;
        ms.push(took.as_secs_f64() * 1000.0);
        rows += n;
        let (took, _) = db
            .timed_query(CONTROL_SQL, None, control)
            .await
            .map_err(|e| e.to_string())?;
        control_ms.push(took.as_secs_f64() * 1000.0);
    }
    if rows == 0 {
        return Err(format!(
            "{context} returned no rows in {} executions, so it measures nothing",
            probe.samples
        ));
    }
    Ok(LatencySamples {
        ms,
        rows,
        control_ms,
    })
}

async fn table_figures(
    db: &mut TrustDb,
    table: &str,
    columns: &[String],
    rewrites: &BTreeSet<(String, String)>,
) -> Measured<TableFigures> {
    let query = integrity_query(table, columns);
    let rows = db
        .text_rows(
            &query,
            columns.len(),
            &format!("integrity of table '{table}'"),
        )
        .await
        .map_err(|e| e.to_string())?;
    let declared: Vec<bool> = columns
        .iter()
        .map(|c| rewrites.contains(&(table.to_string(), c.clone())))
        .collect();
    let mut all = 0u128;
    let mut undeclared = 0u128;
    for row in &rows {
        all = all.wrapping_add(row_hash(row.iter().map(Some)));
        undeclared = undeclared.wrapping_add(row_hash(row.iter().zip(&declared).map(|(v, d)| {
            if *d {
                None
            } else {
                Some(v)
            }
        })));
    }
    Ok(TableFigures {
        rows: i64::try_from(rows.len()).unwrap_or(i64::MAX),
        hash: format!("{all:032x}"),
        undeclared_hash: format!("{undeclared:032x}"),
    })
}

/// Hash of one row; summing row hashes makes the table hash independent of row order while
/// still counting duplicates. Skipped columns (`None`) contribute nothing.
fn row_hash<'a>(values: impl Iterator<Item = Option<&'a Option<String>>>) -> u128 {
    let mut h = Sha256::new();
    for v in values {
        match v {
            None => h.update(b"\x02"),
            Some(None) => h.update(b"\x00"),
            Some(Some(s)) => {
                h.update(b"\x01");
                h.update((s.len() as u64).to_le_bytes());
                h.update(s.as_bytes());
            }
        }
    }
    let digest = h.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    u128::from_le_bytes(first)
}

/// A fresh (negative id, unique token) for one write probe.
pub fn probe_identity() -> (i64, String) {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = i64::try_from(nanos % 1_000_000_000_000_000).unwrap_or(1);
    (
        -(n.max(1)),
        format!("flotilla-write-probe-{nanos:x}-{}", std::process::id()),
    )
}

async fn write_probe(
    trust: &Trust,
    wp: &crate::config::health::WriteProbe,
    (id, token): (i64, String),
) -> Measured<WriteOutcome> {
    let mut writer = TrustDb::connect(trust, Access::ReadWrite)
        .await
        .map_err(|e| e.to_string())?;
    let inserted = writer
        .execute_with(&wp.insert, id, &token, "write probe insert")
        .await;
    let result = match inserted {
        Err(e) => Err(e.to_string()),
        Ok(_) => read_back(trust, wp, id, &token).await,
    };
    // Clean up whatever happened; a failed cleanup is reported, never hidden.
    let cleanup = writer
        .execute_with_id(&wp.cleanup, id, "write probe cleanup")
        .await;
    writer.close().await;
    match (result, cleanup) {
        (Ok(outcome), Ok(_)) => Ok(outcome),
        (Ok(_), Err(e)) => Err(format!("write probe cleanup failed: {e}")),
        (Err(e), _) => Err(e),
    }
}

async fn read_back(
    trust: &Trust,
    wp: &crate::config::health::WriteProbe,
    id: i64,
    token: &str,
) -> Measured<WriteOutcome> {
    for attempt in 0..2 {
        if attempt == 1 {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        // A fresh connection: what another session (a clinician's) would see.
        let mut reader = TrustDb::connect(trust, Access::ReadOnly)
            .await
            .map_err(|e| e.to_string())?;
        let got = reader
            .text_for(&wp.read_back, id, "write probe read-back")
            .await;
        reader.close().await;
        match got {
            Ok(Some(v)) if v == token => return Ok(WriteOutcome::Durable),
            Ok(Some(v)) if attempt == 1 => {
                return Ok(WriteOutcome::Lost {
                    detail: format!("read back '{v}' instead of the token written"),
                })
            }
            Ok(None) if attempt == 1 => {
                return Ok(WriteOutcome::Lost {
                    detail:
                        "the committed record was not there on a fresh connection (checked twice)"
                            .into(),
                })
            }
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Err("write probe read-back did not settle".into())
}
