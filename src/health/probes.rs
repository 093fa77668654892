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

/// Which rows of a table its integrity figures cover.
///
/// A live system keeps being written while it is upgraded (clinicians save notes), so the
/// figures cannot be of the whole table: they are of the rows the table held at the baseline,
/// told apart by the first key column. The baseline records that column's lowest and highest
/// value (`low`, `high`) and its [`RECENT_KEYS`] highest values (`recent`); every later window
/// counts and hashes only the rows whose key lies in `low..=high` and, from the lowest recent
/// key up, is one of the recent keys. A row added since is left out: above `high` or below
/// `low` (a new note, a write probe's negative id), or among the recent keys' gaps (a write
/// that took its key before the baseline and committed after it). A row of the baseline that
/// is missing or changed in a key column shows, and so does a row that appeared below the
/// recent keys.
///
/// Keys are ordered by flotilla, not by the database, so that every window draws the same line
/// on either dialect: NULL first, then values that read as 64-bit integers by value, then any
/// other text by its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rows", rename_all = "kebab-case")]
pub enum Coverage {
    /// The rows whose `column` lies in `low..=high` (`None`: NULL) and, from `recent[0]` up,
    /// is one of `recent`.
    Range {
        /// The first key column.
        column: String,
        /// Its lowest value at the baseline.
        low: Option<String>,
        /// Its highest value at the baseline.
        high: Option<String>,
        /// Its highest distinct values at the baseline, ascending (at most [`RECENT_KEYS`]).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recent: Vec<Option<String>>,
    },
    /// The table was empty at the baseline: no row is covered, every later row is new.
    Empty {
        /// The first key column.
        column: String,
    },
}

/// How many of a table's highest keys a baseline records: a write that took its key among the
/// last this many before the baseline and committed after it is told apart from a row added
/// inside the range (at 50 writes a second, over two seconds' worth).
pub const RECENT_KEYS: usize = 128;

impl Coverage {
    /// Whether a row whose first key column holds `key` is covered.
    pub fn covers(&self, key: &Option<String>) -> bool {
        match self {
            Coverage::Empty { .. } => false,
            Coverage::Range {
                low, high, recent, ..
            } => {
                let in_range = key_order(low, key).is_le() && key_order(key, high).is_le();
                in_range
                    && match recent.first() {
                        Some(first) if key_order(key, first).is_ge() => {
                            recent.binary_search_by(|r| key_order(r, key)).is_ok()
                        }
                        _ => true,
                    }
            }
        }
    }

    /// The coverage of a table whose first key column (`column`) holds `keys`: all of them.
    pub fn of_keys<'a>(
        column: &str,
        keys: impl IntoIterator<Item = &'a Option<String>>,
    ) -> Coverage {
        let mut sorted: Vec<&Option<String>> = keys.into_iter().collect();
        sorted.sort_by(|a, b| key_order(a, b));
        sorted.dedup_by(|a, b| key_order(a, b).is_eq());
        match (sorted.first(), sorted.last()) {
            (Some(low), Some(high)) => Coverage::Range {
                column: column.to_string(),
                low: (*low).clone(),
                high: (*high).clone(),
                recent: sorted[sorted.len().saturating_sub(RECENT_KEYS)..]
                    .iter()
                    .map(|k| (*k).clone())
                    .collect(),
            },
            _ => Coverage::Empty {
                column: column.to_string(),
            },
        }
    }

    /// For people: `id 1..=6000`, `no row (empty at the baseline)`.
    pub fn describe(&self) -> String {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "NULL".into());
        match self {
            Coverage::Range {
                column, low, high, ..
            } => format!("{column} {}..={}", show(low), show(high)),
            Coverage::Empty { .. } => "no row (the table was empty at the baseline)".into(),
        }
    }
}

/// flotilla's order of key values: NULL, then integers by value, then other text by bytes.
pub fn key_order(a: &Option<String>, b: &Option<String>) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    fn int(s: &str) -> Option<i64> {
        s.parse::<i64>().ok().filter(|i| i.to_string() == s)
    }
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => match (int(a), int(b)) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => a.as_bytes().cmp(b.as_bytes()),
        },
    }
}

/// Which rows a window's integrity figures cover.
#[derive(Debug, Clone, Copy)]
pub enum Rows<'a> {
    /// A baseline: every row now, and the coverage that tells them apart later (see
    /// [`Coverage`]).
    Fresh,
    /// The rows `baseline` covered. A table it has no coverage for (figures recorded before
    /// coverage existed) is figured whole, as that baseline was.
    Of(&'a Snapshot),
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
    /// Table → the rows its figures cover (absent: the whole table).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub coverage: BTreeMap<String, Coverage>,
    /// Table → rows outside its coverage (added since the baseline), not compared.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub newer_rows: BTreeMap<String, i64>,
    /// Invariant → value.
    pub invariants: BTreeMap<String, Measured<i64>>,
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

/// Measure a trust. `rewrites` are the (table, column) pairs the planned migrations declare;
/// `rows` says which rows the integrity figures cover.
pub async fn measure(
    trust: &Trust,
    health: &Health,
    params: &ProbeParams,
    rewrites: &BTreeSet<(String, String)>,
    rows: Rows<'_>,
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
            let figures = table_figures(&mut db, table, columns, rewrites, rows)
                .await
                .map(|(figures, coverage, newer)| {
                    if let Some(c) = coverage {
                        snap.coverage.insert(table.clone(), c);
                        snap.newer_rows.insert(table.clone(), newer);
                    }
                    figures
                });
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

/// A table's figures: at a baseline (`Rows::Fresh`) over every row, with the coverage that
/// tells those rows apart later; in a later window over the rows the baseline's coverage of
/// the table covers (every row when it has none). Also how many rows were left out.
async fn table_figures(
    db: &mut TrustDb,
    table: &str,
    columns: &[String],
    rewrites: &BTreeSet<(String, String)>,
    rows: Rows<'_>,
) -> Measured<(TableFigures, Option<Coverage>, i64)> {
    let query = integrity_query(table, columns);
    let found = db
        .text_rows(
            &query,
            columns.len(),
            &format!("integrity of table '{table}'"),
        )
        .await
        .map_err(|e| e.to_string())?;
    let coverage = match rows {
        Rows::Fresh => columns
            .first()
            .map(|c| Coverage::of_keys(c, found.iter().filter_map(|r| r.first()))),
        Rows::Of(baseline) => baseline.coverage.get(table).cloned(),
    };
    let (figures, newer) = figures_of(table, columns, rewrites, coverage.as_ref(), &found);
    Ok((figures, coverage, newer))
}

/// The figures of `rows` (each the key columns of one row, as text), over the rows `coverage`
/// covers; and how many rows it left out.
pub fn figures_of(
    table: &str,
    columns: &[String],
    rewrites: &BTreeSet<(String, String)>,
    coverage: Option<&Coverage>,
    rows: &[Vec<Option<String>>],
) -> (TableFigures, i64) {
    let declared: Vec<bool> = columns
        .iter()
        .map(|c| rewrites.contains(&(table.to_string(), c.clone())))
        .collect();
    let mut all = 0u128;
    let mut undeclared = 0u128;
    let (mut counted, mut newer) = (0i64, 0i64);
    for row in rows {
        if let Some(c) = coverage {
            if !c.covers(row.first().unwrap_or(&None)) {
                newer += 1;
                continue;
            }
        }
        counted += 1;
        all = all.wrapping_add(row_hash(row.iter().map(Some)));
        undeclared = undeclared.wrapping_add(row_hash(row.iter().zip(&declared).map(|(v, d)| {
            if *d {
                None
            } else {
                Some(v)
            }
        })));
    }
    (
        TableFigures {
            rows: counted,
            hash: format!("{all:032x}"),
            undeclared_hash: format!("{undeclared:032x}"),
        },
        newer,
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    fn row(id: &str, body: &str) -> Vec<Option<String>> {
        vec![k(id), k(body)]
    }

    fn columns() -> Vec<String> {
        vec!["id".into(), "body".into()]
    }

    fn figures(coverage: Option<&Coverage>, rows: &[Vec<Option<String>>]) -> (TableFigures, i64) {
        figures_of("note", &columns(), &BTreeSet::new(), coverage, rows)
    }

    #[test]
    fn keys_order_null_then_integers_by_value_then_text_by_bytes() {
        use std::cmp::Ordering::*;
        assert_eq!(key_order(&k("9"), &k("10")), Less, "by value, not as text");
        assert_eq!(key_order(&k("-5"), &k("3")), Less);
        assert_eq!(key_order(&None, &k("-5")), Less);
        assert_eq!(key_order(&k("10"), &k("abc")), Less);
        assert_eq!(key_order(&k("abc"), &k("abd")), Less);
        assert_eq!(
            key_order(&k("007"), &k("7")),
            Greater,
            "'007' is text, not 7"
        );
        assert_eq!(key_order(&k("42"), &k("42")), Equal);
    }

    #[test]
    fn coverage_is_the_key_range_at_the_baseline() {
        let keys = [k("3"), k("12"), k("1"), k("7")];
        let c = Coverage::of_keys("id", keys.iter());
        assert_eq!(
            c,
            Coverage::Range {
                column: "id".into(),
                low: k("1"),
                high: k("12"),
                recent: vec![k("1"), k("3"), k("7"), k("12")],
            }
        );
        assert!(c.covers(&k("1")) && c.covers(&k("12")) && c.covers(&k("7")));
        assert!(
            !c.covers(&k("5")),
            "among the recent keys, a key the baseline did not hold is a late write"
        );
        assert!(!c.covers(&k("13")), "a key above the range is a new row");
        assert!(
            !c.covers(&k("-4")),
            "a write probe's negative id is outside"
        );
        assert!(!c.covers(&None));
        assert_eq!(c.describe(), "id 1..=12");
        let empty = Coverage::of_keys("id", std::iter::empty());
        assert!(!empty.covers(&k("1")));
    }

    #[test]
    fn rows_added_above_the_baseline_range_are_tolerated_and_counted_apart() {
        let before = vec![row("1", "a"), row("2", "b"), row("3", "c")];
        let keys: Vec<Option<String>> = before.iter().map(|r| r[0].clone()).collect();
        let c = Coverage::of_keys("id", keys.iter());
        let (baseline, newer) = figures(Some(&c), &before);
        assert_eq!((baseline.rows, newer), (3, 0));
        let mut live = before.clone();
        live.push(row("4", "a clinician's new note"));
        live.push(row("5", "another"));
        let (after, newer) = figures(Some(&c), &live);
        assert_eq!(after, baseline, "new rows do not change the figures");
        assert_eq!(newer, 2);
        let (whole, _) = figures(None, &live);
        assert_ne!(whole, baseline, "figured whole, the new rows would show");
    }

    #[test]
    fn a_write_that_took_its_key_before_the_baseline_and_committed_after_is_new() {
        // 1..=300 at the baseline, but 290 was still being saved (its key taken, not committed).
        let before: Vec<Vec<Option<String>>> = (1..=300)
            .filter(|i| *i != 290)
            .map(|i| row(&i.to_string(), "note"))
            .collect();
        let keys: Vec<Option<String>> = before.iter().map(|r| r[0].clone()).collect();
        let c = Coverage::of_keys("id", keys.iter());
        let Coverage::Range { recent, .. } = &c else {
            panic!("{c:?}")
        };
        assert_eq!(recent.len(), RECENT_KEYS);
        assert_eq!(recent.last(), Some(&k("300")));
        let (baseline, _) = figures(Some(&c), &before);
        let mut later = before.clone();
        later.push(row("290", "committed after the baseline"));
        later.push(row("301", "new"));
        let (after, newer) = figures(Some(&c), &later);
        assert_eq!(after, baseline);
        assert_eq!(newer, 2);
        // Below the recent keys, a row that appears in a gap still shows.
        let mut old_gap: Vec<Vec<Option<String>>> =
            before.iter().filter(|r| r[0] != k("5")).cloned().collect();
        let c5 = Coverage::of_keys("id", old_gap.iter().map(|r| &r[0]));
        let (b5, _) = figures(Some(&c5), &old_gap);
        old_gap.push(row("5", "appeared in an old gap"));
        assert_eq!(figures(Some(&c5), &old_gap).0.rows, b5.rows + 1);
        // A recent row that goes missing shows.
        let lost: Vec<Vec<Option<String>>> = before
            .iter()
            .filter(|r| r[0] != k("299"))
            .cloned()
            .collect();
        assert_eq!(figures(Some(&c), &lost).0.rows, baseline.rows - 1);
    }

    #[test]
    fn a_lost_or_changed_row_of_the_baseline_still_shows() {
        let before = vec![row("1", "a"), row("2", "b"), row("4", "d")];
        let keys: Vec<Option<String>> = before.iter().map(|r| r[0].clone()).collect();
        let c = Coverage::of_keys("id", keys.iter());
        let (baseline, _) = figures(Some(&c), &before);
        let lost = vec![row("1", "a"), row("4", "d"), row("9", "new")];
        assert_eq!(figures(Some(&c), &lost).0.rows, 2);
        let changed = vec![row("1", "a"), row("2", "B"), row("4", "d"), row("9", "new")];
        let (f, _) = figures(Some(&c), &changed);
        assert_eq!(f.rows, baseline.rows);
        assert_ne!(f.hash, baseline.hash);
        // Among the recent keys (here: every key), a row the baseline did not hold is taken
        // for a write that committed after it.
        let inserted = vec![row("1", "a"), row("2", "b"), row("3", "x"), row("4", "d")];
        assert_eq!(figures(Some(&c), &inserted), (baseline.clone(), 1));
    }
}
