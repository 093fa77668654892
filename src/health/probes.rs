//! Measuring a trust (I/O): latency samples, the write-then-read-back probe, integrity figures
//! and invariants. Every failure to measure is recorded as data (`Err(reason)`), never dropped:
//! missing data is never a pass.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use super::samples::LatencySamples;
use super::sequential::{next_look, Reference};
use crate::config::health::{Health, LatencyProbe, WriteProbe};
use crate::config::Trust;
use crate::db::{Access, TrustDb};

/// A measurement, or why it could not be taken.
pub type Measured<T> = Result<T, String>;

/// What the write probe measured in one window: each write timed, read back by another
/// session and removed again.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WriteSamples {
    /// Time each write took to commit, in milliseconds.
    pub ms: Vec<f64>,
    /// The write control after each write, in milliseconds: a commit that touches no trust
    /// table (Postgres: a transaction that only takes a transaction id; SQLite: an insert into
    /// a scratch database file beside the trust's), so that its slowdown between two windows
    /// is the machine's (disk, CPU), not the release's.
    pub control_ms: Vec<f64>,
    /// Writes that committed and were read back.
    pub writes: usize,
    /// Of those, the writes lost, changed or unreadable (each checked again on a brand-new
    /// connection before it counts).
    pub lost: usize,
    /// What was wrong with the first few of them.
    pub failures: Vec<String>,
    /// Sessions that wrote at once.
    pub sessions: usize,
    /// The write control was a commit to a scratch SQLite file beside the trust's (SQLite
    /// trusts): the same disk's flush and nothing else, so its ratio between two windows may
    /// credit a faster disk (see [`super::stats::disk_factor`]). `false` for a Postgres
    /// control (a commit on the server, which CPU load moves apart from the writes' own cost)
    /// and in journals written before this field.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disk_control: bool,
}

/// Most failure details kept per window (the count is always exact).
const MAX_FAILURE_DETAILS: usize = 5;

/// Sessions of a Postgres trust's database seen waiting on a lock while a window's probes ran
/// (`pg_stat_activity`, polled every [`LOCK_POLL`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LockWaits {
    /// Times the sessions were read.
    pub polls: usize,
    /// Reads that found at least one session waiting on a lock.
    pub polls_waiting: usize,
    /// Most sessions seen waiting at once.
    pub max_waiting: usize,
    /// Wait events seen (`Lock:transactionid`, `Lock:advisory`, ...), with how many waits.
    pub events: BTreeMap<String, usize>,
}

impl LockWaits {
    /// One line for reasons and reports, e.g. `lock waits in 31 of 40 polls (up to 3
    /// sessions: Lock:transactionid ×52)`.
    pub fn describe(&self) -> String {
        if self.polls_waiting == 0 {
            return format!("no lock waits in {} polls", self.polls);
        }
        let events: Vec<String> = self
            .events
            .iter()
            .map(|(e, n)| format!("{e} ×{n}"))
            .collect();
        format!(
            "lock waits in {} of {} polls (up to {} session{} waiting: {})",
            self.polls_waiting,
            self.polls,
            self.max_waiting,
            if self.max_waiting == 1 { "" } else { "s" },
            events.join(", ")
        )
    }
}

/// How often the lock monitor reads `pg_stat_activity` while a window runs.
pub const LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(20);

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
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => match (canonical_int(a), canonical_int(b)) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => a.as_bytes().cmp(b.as_bytes()),
        },
    }
}

/// `s` as a 64-bit integer when it is one written as Rust writes it (`i.to_string() == s`:
/// no sign but `-`, no leading zero, no `-0`), else `None`. Without allocating: a baseline
/// sorts every key of a table with it, and every later window compares each row's key.
fn canonical_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let canonical = match digits.as_bytes() {
        [] => false,
        [b'0'] => digits.len() == s.len(),
        [b'0', ..] => false,
        d => d.iter().all(u8::is_ascii_digit),
    };
    canonical.then(|| s.parse().ok()).flatten()
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
    /// The write probe, when the plan has one.
    pub write: Option<Measured<WriteSamples>>,
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
    /// The trust's real workload over the window (PostgreSQL with `pg_stat_statements`; see
    /// `health::workload`), taken by the engine around the probes; `None` where it is not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<Measured<super::workload::window::WorkloadWindow>>,
    /// Postgres: sessions waiting on locks while the window's probes ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_waits: Option<LockWaits>,
}

impl Snapshot {
    /// Take from `earlier`, a window of the same trust measured moments before, every figure a
    /// window of `scope` does not measure: a confirmation or second look re-measures what is
    /// in doubt (latency, or latency and writes), and the rest of the window's evidence stands
    /// as measured once (integrity after the upgrade is the same rows hashed again; soak
    /// windows do not hash them at all).
    pub fn fill_unmeasured(&mut self, earlier: &Snapshot, scope: Scope) {
        if !scope.integrity() {
            self.integrity.clone_from(&earlier.integrity);
            self.coverage.clone_from(&earlier.coverage);
            self.newer_rows.clone_from(&earlier.newer_rows);
        }
        if !scope.writes() {
            self.write.clone_from(&earlier.write);
            self.invariants.clone_from(&earlier.invariants);
            self.workload.clone_from(&earlier.workload);
            self.lock_waits.clone_from(&earlier.lock_waits);
        }
    }
}

/// Remove the write probe's records `first_id` down to `last_id` left behind by a run that
/// died between the window's first insert and its cleanup (the cleanup statement is
/// idempotent: removing nothing is fine). One transaction.
pub async fn clean_up_write_probe(
    trust: &Trust,
    health: &Health,
    first_id: i64,
    last_id: i64,
) -> Result<(), String> {
    let Some(wp) = &health.write_probe else {
        return Ok(());
    };
    let mut db = TrustDb::connect(trust, Access::ReadWrite)
        .await
        .map_err(|e| e.to_string())?;
    let ids: Vec<i64> = (last_id.min(first_id)..=first_id.max(last_id))
        .rev()
        .collect();
    let r = delete_records(&mut db, &wp.cleanup, &ids).await;
    db.close().await;
    r
}

/// Run the cleanup for every id, in one transaction.
async fn delete_records(db: &mut TrustDb, cleanup: &str, ids: &[i64]) -> Result<(), String> {
    if ids.is_empty() {
        return Ok(());
    }
    let context = "write probe cleanup";
    db.execute_script("BEGIN", context)
        .await
        .map_err(|e| e.to_string())?;
    for id in ids {
        if let Err(e) = db.execute_with_id(cleanup, *id, context).await {
            let _ = db.execute_script("ROLLBACK", context).await;
            return Err(e.to_string());
        }
    }
    db.execute_script("COMMIT", context)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
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
    /// The latency probes only: a second look at a window whose other figures stand (see
    /// [`Snapshot::fill_unmeasured`]).
    Latency,
}

impl Scope {
    /// Whether a window of this scope hashes the integrity tables.
    pub fn integrity(self) -> bool {
        matches!(self, Scope::Full | Scope::Integrity)
    }

    /// Whether it runs the invariants and the write probe (and reads the real workload).
    pub fn writes(self) -> bool {
        matches!(self, Scope::Full | Scope::Soak)
    }
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

/// Run a query so that it cannot change the trust's data: `read_only!(db, context,
/// db.query(...))`. On Postgres the query runs inside `BEGIN READ ONLY ... COMMIT`: a
/// statement cannot leave that transaction (`SET transaction_read_only` fails once it has
/// read), and a `set_config('default_transaction_read_only', 'off', false)` slipped into one
/// probe cannot open the door for the next, which starts its own read-only transaction. SQLite
/// connections for probes are opened read-only. Evaluates to `Result<T, String>`.
///
/// The transaction ends with `COMMIT`, not `ROLLBACK`: a read-only transaction has nothing to
/// keep, and every `ROLLBACK` is counted by `pg_stat_database` as a failed transaction of the
/// trust, which would make the probes themselves move the rollback rate the real-workload
/// signal judges (more probe windows, or fewer users' transactions, would read as failures).
macro_rules! read_only {
    ($db:expr, $context:expr, $call:expr) => {
        match begin_read_only($db, $context).await {
            Err(e) => Err(e),
            Ok(tx) => {
                let result = $call.await.map_err(|e| e.to_string());
                end_read_only($db, $context, tx, result).await
            }
        }
    };
}

/// Opens a read-only transaction on Postgres; `true` when one was opened.
async fn begin_read_only(db: &mut TrustDb, context: &str) -> Result<bool, String> {
    if db.dialect() != crate::db::Dialect::Postgres {
        return Ok(false);
    }
    db.execute_script("BEGIN READ ONLY", context)
        .await
        .map(|_| true)
        .map_err(|e| e.to_string())
}

/// Ends what [`begin_read_only`] opened (committing a read-only transaction keeps nothing; a
/// failed statement has already aborted it, and the `COMMIT` then rolls it back).
async fn end_read_only<T>(
    db: &mut TrustDb,
    context: &str,
    opened: bool,
    result: Result<T, String>,
) -> Result<T, String> {
    if !opened {
        return result;
    }
    let end = db.execute_script("COMMIT", context).await;
    match (result, end) {
        (Ok(_), Err(e)) => Err(e.to_string()),
        (result, _) => result,
    }
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
        let context = format!("latency probe '{}' params", p.name);
        let drawn = read_only!(&mut db, &context, db.query_i64_column(sql, &context));
        match drawn {
            Ok(values) if values.is_empty() => {
                result = Err(format!("latency probe '{}': its params query returned no rows, so it would measure nothing", p.name));
                break;
            }
            Ok(values) => {
                out.insert(p.name.clone(), values);
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    db.close().await;
    result.map(|()| out)
}

/// A window's write records: `count` consecutive negative ids from `first_id` downwards and a
/// token for each, written by `sessions` sessions at once. Journalled before the first insert
/// so a crash leaves a note of what to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteBatch {
    /// The first (highest) id.
    pub first_id: i64,
    /// How many records.
    pub count: usize,
    /// Sessions writing at once.
    pub sessions: usize,
    token: String,
}

impl WriteBatch {
    /// Fresh ids and tokens for `count` writes.
    pub fn new(count: usize, sessions: usize) -> WriteBatch {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let n = i64::try_from(nanos % 1_000_000_000_000_000).unwrap_or(1);
        WriteBatch {
            first_id: -(n.max(1)),
            count: count.max(1),
            sessions: sessions.clamp(1, count.max(1)),
            token: format!("flotilla-write-probe-{nanos:x}-{}", std::process::id()),
        }
    }

    /// The last (lowest) id.
    pub fn last_id(&self) -> i64 {
        self.first_id - (self.count as i64 - 1)
    }

    fn id(&self, i: usize) -> i64 {
        self.first_id - i as i64
    }

    fn token(&self, i: usize) -> String {
        format!("{}-{i}", self.token)
    }
}

/// The write batch a window makes when the caller does not choose one (`flotilla health`): the
/// plan's default sizing.
pub fn default_batch(health: &Health) -> Option<WriteBatch> {
    let sizing = health.write_sizing(health.soak)?;
    let (count, sessions) = match sizing {
        Ok(s) => (s.per_window, s.concurrency),
        Err(_) => (
            crate::config::health::DEFAULT_WRITE_SAMPLES,
            health.write_probe.as_ref().map_or(1, |w| w.concurrency),
        ),
    };
    Some(WriteBatch::new(count, sessions))
}

/// Measure a trust. `rewrites` are the (table, column) pairs the planned migrations declare;
/// `rows` says which rows the integrity figures cover; `writes` the write probe's records for
/// this window (default: [`default_batch`]).
pub async fn measure(
    trust: &Trust,
    health: &Health,
    params: &ProbeParams,
    rewrites: &BTreeSet<(String, String)>,
    rows: Rows<'_>,
    scope: Scope,
    writes: Option<WriteBatch>,
) -> Snapshot {
    let mut snap = Snapshot::default();
    let started = std::time::Instant::now();
    let mut db = match TrustDb::connect(trust, Access::ReadOnly).await {
        Ok(db) => db,
        Err(e) => {
            let reason = e.to_string();
            fail_all(&mut snap, health, scope, &reason);
            return snap;
        }
    };
    let connected = started.elapsed();
    if scope.integrity() {
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
    let integrity = started.elapsed() - connected;
    if scope == Scope::Integrity {
        db.close().await;
        return snap;
    }
    let mut times = [std::time::Duration::ZERO; 3];
    let t = std::time::Instant::now();
    for inv in health.invariants.iter().filter(|_| scope.writes()) {
        let context = format!("invariant '{}'", inv.name);
        let sql = &inv.sql;
        let v = read_only!(&mut db, &context, db.query_i64(sql, &context));
        snap.invariants.insert(inv.name.clone(), v);
    }
    times[0] = t.elapsed();
    let t = std::time::Instant::now();
    for probe in &health.latency_probes {
        // A window judged against a baseline samples sequentially (see `time_probe`).
        let reference = match rows {
            Rows::Of(b) => match b.latency.get(&probe.name) {
                Some(Ok(base)) => Some(Reference::new(base, &health.regression)),
                _ => None,
            },
            Rows::Fresh => None,
        };
        let samples = time_probe(
            trust,
            &mut db,
            probe,
            params.get(&probe.name),
            reference.as_ref(),
        )
        .await;
        snap.latency.insert(probe.name.clone(), samples);
    }
    times[1] = t.elapsed();
    let t = std::time::Instant::now();
    if scope.writes() {
        // Lock waits are evidence about the writes: read while they are made.
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let write = async {
            if let Some(wp) = health.write_probe.as_ref() {
                let batch = writes
                    .clone()
                    .or_else(|| default_batch(health))
                    .unwrap_or_else(|| WriteBatch::new(1, 1));
                snap.write = Some(write_probe(trust, wp, &batch, &mut db).await);
            }
            let _ = stop.send(());
        };
        let ((), waits) = futures::join!(write, watch_lock_waits(trust, stopped));
        snap.lock_waits = waits;
    }
    times[2] = t.elapsed();
    db.close().await;
    tracing::debug!(
        trust = %trust.id,
        connect_ms = connected.as_millis() as u64,
        integrity_ms = integrity.as_millis() as u64,
        invariants_ms = times[0].as_millis() as u64,
        latency_ms = times[1].as_millis() as u64,
        writes_ms = times[2].as_millis() as u64,
        total_ms = started.elapsed().as_millis() as u64,
        "window measured"
    );
    snap
}

/// On Postgres, read how many sessions of the trust's database wait on a lock, every
/// [`LOCK_POLL`] until `stop` fires (SQLite: `None`, it has no lock table to read; its
/// writers queue on the database's one write lock, which shows as write latency).
async fn watch_lock_waits(
    trust: &Trust,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> Option<LockWaits> {
    if !matches!(
        trust.database,
        crate::config::DatabaseTarget::Postgres { .. }
    ) {
        return None;
    }
    let mut db = TrustDb::connect(trust, Access::ReadOnly).await.ok()?;
    const QUERY: &str =
        "SELECT CAST(COUNT(*) AS TEXT), string_agg(wait_event_type || ':' || wait_event, ',') \
        FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() \
        AND wait_event_type = 'Lock'";
    let mut waits = LockWaits::default();
    let mut ok = false;
    loop {
        match db.text_rows(QUERY, 2, "reading lock waits").await {
            Ok(rows) => {
                ok = true;
                waits.polls += 1;
                let row = rows.into_iter().next().unwrap_or_default();
                let waiting: usize = row
                    .first()
                    .cloned()
                    .flatten()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                if waiting > 0 {
                    waits.polls_waiting += 1;
                    waits.max_waiting = waits.max_waiting.max(waiting);
                    for event in row.get(1).cloned().flatten().unwrap_or_default().split(',') {
                        if !event.is_empty() {
                            *waits.events.entry(event.to_string()).or_default() += 1;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::debug!(trust = %trust.id, error = %e, "cannot read lock waits");
                break;
            }
        }
        tokio::select! {
            _ = &mut stop => break,
            () = tokio::time::sleep(LOCK_POLL) => {}
        }
    }
    db.close().await;
    ok.then_some(waits)
}

fn fail_all(snap: &mut Snapshot, health: &Health, scope: Scope, reason: &str) {
    if scope.integrity() {
        for table in health.integrity.keys() {
            snap.integrity
                .insert(table.clone(), Err(reason.to_string()));
        }
    }
    if scope != Scope::Integrity {
        for p in &health.latency_probes {
            snap.latency.insert(p.name.clone(), Err(reason.to_string()));
        }
    }
    if scope.writes() {
        for i in &health.invariants {
            snap.invariants
                .insert(i.name.clone(), Err(reason.to_string()));
        }
        if health.write_probe.is_some() {
            snap.write = Some(Err(reason.to_string()));
        }
    }
}

/// Time a latency probe: up to `samples` executions, each followed by the control query, from
/// `concurrency` sessions at once (the first is `db`, the others opened for the window). With a
/// `reference` (a window judged against a baseline) the samples are taken in batches and the
/// sequential rule ([`super::sequential`]) is consulted between batches: the probe stops as
/// soon as it decides. Without one (a baseline), every sample is taken.
async fn time_probe(
    trust: &Trust,
    db: &mut TrustDb,
    probe: &LatencyProbe,
    params: Option<&Vec<i64>>,
    reference: Option<&Reference>,
) -> Measured<LatencySamples> {
    let context = format!("latency probe '{}'", probe.name);
    if probe.params.is_some() && params.is_none_or(|p| p.is_empty()) {
        return Err(format!("{context}: no parameters were drawn"));
    }
    let sessions = probe.concurrency.clamp(1, probe.samples.max(1));
    let mut extra = Vec::with_capacity(sessions - 1);
    for _ in 1..sessions {
        match TrustDb::connect(trust, Access::ReadOnly).await {
            Ok(c) => extra.push(c),
            Err(e) => {
                for c in extra {
                    c.close().await;
                }
                return Err(format!("{context}: cannot open session: {e}"));
            }
        }
    }
    let mut out = LatencySamples {
        ms: Vec::with_capacity(probe.samples),
        rows: 0,
        control_ms: Vec::with_capacity(probe.samples),
    };
    let mut taken = 0;
    let result = loop {
        let upto = match reference {
            Some(_) => next_look(taken, probe.samples, sessions),
            None => probe.samples,
        };
        let batch = taken..upto;
        let results = {
            let mut all: Vec<&mut TrustDb> = Vec::with_capacity(sessions);
            all.push(&mut *db);
            all.extend(extra.iter_mut());
            let context = &context;
            let batch = &batch;
            futures::future::join_all(all.into_iter().enumerate().map(|(k, db)| async move {
                time_session(db, probe, params, context, k, sessions, batch.clone()).await
            }))
            .await
        };
        if let Some(e) = results.iter().find_map(|r| r.as_ref().err()) {
            break Err(e.clone());
        }
        for s in results.into_iter().flatten() {
            out.ms.extend(s.ms);
            out.control_ms.extend(s.control_ms);
            out.rows += s.rows;
        }
        taken = upto;
        if taken >= probe.samples || reference.is_some_and(|r| r.stops(&out)) {
            break Ok(());
        }
    };
    for c in extra {
        c.close().await;
    }
    result?;
    if out.rows == 0 {
        return Err(format!(
            "{context} returned no rows in {} executions, so it measures nothing",
            out.ms.len()
        ));
    }
    Ok(out)
}

/// One session's share of a batch of a latency probe: samples `k`, `k + sessions`, ... within
/// `batch`, after a warm-up when the batch is the first.
async fn time_session(
    db: &mut TrustDb,
    probe: &LatencyProbe,
    params: Option<&Vec<i64>>,
    context: &str,
    k: usize,
    sessions: usize,
    batch: std::ops::Range<usize>,
) -> Measured<LatencySamples> {
    let param = |i: usize| params.map(|p| p[i % p.len()]);
    let control = "the control query";
    let sql = &probe.sql;
    let first = batch.start == 0;
    let indices: Vec<usize> = batch.filter(|i| i % sessions == k).collect();
    // One read-only transaction for the session's share of the batch (on Postgres), not one
    // per sample: each sample is then two round trips (probe, control) instead of four, and
    // every statement still runs read-only whatever the probe's SQL does to the session's
    // settings. Under READ COMMITTED each statement takes its own snapshot, as it did in its
    // own transaction; the table locks a reader takes are held for the batch (a few ms).
    let opened = begin_read_only(db, context).await?;
    let taken = async {
        if first {
            for i in 0..WARM_UP {
                let p = param(k + i * sessions);
                db.timed_query(sql, p, context)
                    .await
                    .map_err(|e| e.to_string())?;
                db.timed_query(CONTROL_SQL, None, control)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        let mut ms = Vec::with_capacity(indices.len());
        let mut control_ms = Vec::with_capacity(indices.len());
        let mut rows = 0;
        for i in indices {
            let p = param(i);
            let (took, n) = db
                .timed_query(sql, p, context)
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
        Ok(LatencySamples {
            ms,
            rows,
            control_ms,
        })
    }
    .await;
    end_read_only(db, context, opened, taken).await
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
    let context = format!("integrity of table '{table}'");
    let n = columns.len();
    let found = read_only!(db, &context, db.text_rows(&query, n, &context))?;
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
    let any_declared = declared.contains(&true);
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
        let whole = row_hash(row.iter().map(Some));
        all = all.wrapping_add(whole);
        // With no column declared rewritten, both hashes read the same bytes: hash once.
        let undeclared_row = if any_declared {
            row_hash(
                row.iter()
                    .zip(&declared)
                    .map(|(v, d)| if *d { None } else { Some(v) }),
            )
        } else {
            whole
        };
        undeclared = undeclared.wrapping_add(undeclared_row);
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

/// The write control for a window: a commit that touches no table of the trust, timed after
/// each write so that the window's write latency can be discounted by the machine's own
/// slowdown (above all the disk's: a commit waits for it).
enum WriteControl {
    /// Postgres: `BEGIN; SELECT txid_current(); COMMIT` on the writer's session — a commit
    /// record through the server's WAL like every insert's, with no data.
    Postgres,
    /// SQLite: an insert into a scratch database beside the trust's file (same filesystem,
    /// same journal and sync settings), removed when the window ends.
    Sqlite(tempfile::NamedTempFile),
    /// Not available (e.g. the directory cannot take the scratch file): no adjustment.
    None,
}

impl WriteControl {
    fn open(trust: &Trust) -> WriteControl {
        match &trust.database {
            crate::config::DatabaseTarget::Postgres { .. } => WriteControl::Postgres,
            crate::config::DatabaseTarget::Sqlite { path } => {
                let dir = path
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(std::path::Path::new("."));
                match tempfile::Builder::new()
                    .prefix(".flotilla-write-control-")
                    .suffix(".db")
                    .tempfile_in(dir)
                {
                    Ok(f) => WriteControl::Sqlite(f),
                    Err(e) => {
                        tracing::debug!(trust = %trust.id, error = %e, "no write control");
                        WriteControl::None
                    }
                }
            }
        }
    }

    /// A connection for one session's control writes (SQLite), ready to use.
    async fn session(&self, trust: &Trust) -> Option<TrustDb> {
        let WriteControl::Sqlite(file) = self else {
            return None;
        };
        let mut db = TrustDb::create_sqlite(&trust.id, file.path()).await.ok()?;
        db.execute_script(
            "CREATE TABLE IF NOT EXISTS control (x INTEGER)",
            "write control",
        )
        .await
        .ok()?;
        Some(db)
    }
}

const CONTROL_WRITE_PG: &str = "BEGIN; SELECT txid_current(); COMMIT";
const CONTROL_WRITE_SQLITE: &str = "INSERT INTO control (x) VALUES ($1)";

/// About how many write controls a window takes: the control follows every `n`-th write, so
/// that the controls add a fraction of the window's commits, not as many again (a median over
/// 10 to 20 describes the disk well enough; on SQLite each commit is ~3 flushes).
const CONTROL_SAMPLES: usize = 15;

fn control_every(writes: usize) -> usize {
    writes.div_ceil(CONTROL_SAMPLES).max(1)
}

/// Sessions a window writes from: the batch's, except on SQLite, which admits one writer at a
/// time. Concurrent sessions there only queue through SQLite's busy handler, whose sleeping
/// back-off (1, 2, 5, 10 ms ...) moved the median write time of clean windows by up to ×1.7
/// against the write control on a shared machine (measured on 12 clean windows of one trust,
/// compared pairwise: 7 of 132 pairs judged a regression with 4 sessions, 1 with one); a
/// release that holds SQLite's write lock longer shows as each save taking longer.
fn write_sessions(trust: &Trust, batch: &WriteBatch) -> usize {
    match trust.database {
        crate::config::DatabaseTarget::Sqlite { .. } => 1,
        crate::config::DatabaseTarget::Postgres { .. } => batch.sessions.clamp(1, batch.count),
    }
}

/// One session's share of a window's writes.
#[derive(Default)]
struct SessionWrites {
    ms: Vec<f64>,
    control_ms: Vec<f64>,
    /// (index, token read back, or why not) of writes that did not read back at once.
    misses: Vec<(usize, String)>,
    writes: usize,
}

/// The write probe: the batch's records written from `batch.sessions` sessions at once, each
/// write timed, then the write control timed, then the record read back by another session
/// (`reader`: the window's read-only session, never a writer; the writers take turns on it,
/// so a window opens one session per writer and no more). A write that does not read back is
/// checked again after 200 ms on a brand-new connection before it counts as lost, changed or
/// unreadable. Every record is then removed (one transaction, on a writer's session when one
/// is still good, else on a new one), whatever happened.
async fn write_probe(
    trust: &Trust,
    wp: &WriteProbe,
    batch: &WriteBatch,
    reader: &mut TrustDb,
) -> Measured<WriteSamples> {
    let sessions = write_sessions(trust, batch);
    let control = WriteControl::open(trust);
    let control = &control;
    let reader = tokio::sync::Mutex::new(Reader {
        db: reader,
        open: false,
    });
    let results = futures::future::join_all(
        (0..sessions).map(|k| write_session(trust, wp, batch, control, &reader, k, sessions)),
    )
    .await;
    reader.into_inner().finish().await;
    let mut out = WriteSamples {
        sessions,
        disk_control: matches!(control, WriteControl::Sqlite(_)),
        ..WriteSamples::default()
    };
    let mut misses = Vec::new();
    let mut error = None;
    let mut writers = Vec::new();
    for (r, writer) in results {
        writers.extend(writer);
        match r {
            Ok(s) => {
                out.ms.extend(s.ms);
                out.control_ms.extend(s.control_ms);
                out.writes += s.writes;
                misses.extend(s.misses);
            }
            Err(e) => {
                error.get_or_insert(e);
            }
        }
    }
    // Confirm each miss on a brand-new connection, then remove every record.
    let confirmed = if misses.is_empty() {
        Ok(Vec::new())
    } else {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        confirm_misses(trust, wp, batch, &misses).await
    };
    let cleanup = remove_batch(trust, wp, batch, writers).await;
    if let Some(e) = error {
        return Err(e);
    }
    let lost = confirmed?;
    cleanup.map_err(|e| format!("write probe cleanup failed: {e}"))?;
    out.lost = lost.len();
    out.failures = lost.into_iter().take(MAX_FAILURE_DETAILS).collect();
    if out.writes == 0 {
        return Err("the write probe made no write".into());
    }
    Ok(out)
}

/// One writer's share of the batch; its session is handed back for the clean-up unless a
/// write failed on it.
async fn write_session(
    trust: &Trust,
    wp: &WriteProbe,
    batch: &WriteBatch,
    control: &WriteControl,
    reader: &tokio::sync::Mutex<Reader<'_>>,
    k: usize,
    sessions: usize,
) -> (Result<SessionWrites, String>, Option<TrustDb>) {
    let mut writer = match TrustDb::connect(trust, Access::ReadWrite).await {
        Ok(w) => w,
        Err(e) => return (Err(e.to_string()), None),
    };
    let mut control_db = control.session(trust).await;
    let mut out = SessionWrites::default();
    let mut result = Ok(());
    for i in (k..batch.count).step_by(sessions) {
        let (id, token) = (batch.id(i), batch.token(i));
        let started = std::time::Instant::now();
        let inserted = writer
            .execute_with(&wp.insert, id, &token, "write probe insert")
            .await;
        if let Err(e) = inserted {
            result = Err(e.to_string());
            break;
        }
        out.ms.push(started.elapsed().as_secs_f64() * 1000.0);
        out.writes += 1;
        let started = std::time::Instant::now();
        let timed = i % control_every(batch.count) == 0
            && match (control, control_db.as_mut()) {
                (WriteControl::Postgres, _) => writer
                    .execute_script(CONTROL_WRITE_PG, "write control")
                    .await
                    .is_ok(),
                (WriteControl::Sqlite(_), Some(c)) => c
                    .execute_with_id(CONTROL_WRITE_SQLITE, id, "write control")
                    .await
                    .is_ok(),
                _ => false,
            };
        if timed {
            out.control_ms
                .push(started.elapsed().as_secs_f64() * 1000.0);
        }
        let read = reader.lock().await.read_back(wp, id).await;
        match read {
            Ok(Some(v)) if v == token => {}
            Ok(Some(v)) => out.misses.push((i, format!("read back '{v}'"))),
            Ok(None) => out.misses.push((i, "not there".into())),
            Err(e) => out.misses.push((i, format!("unreadable: {e}"))),
        }
    }
    if let Some(c) = control_db {
        c.close().await;
    }
    match result {
        Ok(()) => (Ok(out), Some(writer)),
        Err(e) => {
            writer.close().await;
            (Err(e), None)
        }
    }
}

/// The window's reader during the write probe. On Postgres its reads share one read-only
/// transaction at READ COMMITTED (each statement sees every write committed before it, as a
/// transaction of its own would), so a read-back is one round trip rather than three; a read
/// that fails ends the transaction and the next read opens another.
struct Reader<'a> {
    db: &'a mut TrustDb,
    open: bool,
}

impl Reader<'_> {
    async fn read_back(&mut self, wp: &WriteProbe, id: i64) -> Result<Option<String>, String> {
        if self.db.dialect() != crate::db::Dialect::Postgres {
            return read_back(self.db, wp, id).await;
        }
        let context = "write probe read-back";
        if !self.open {
            self.db
                .execute_script("BEGIN ISOLATION LEVEL READ COMMITTED, READ ONLY", context)
                .await
                .map_err(|e| e.to_string())?;
            self.open = true;
        }
        let read = self.db.text_for(&wp.read_back, id, context).await;
        if read.is_err() {
            self.open = false;
            let _ = self.db.execute_script("ROLLBACK", context).await;
        }
        read.map_err(|e| e.to_string())
    }

    /// Ends the reads' transaction.
    async fn finish(self) {
        if self.open {
            let _ = self
                .db
                .execute_script("COMMIT", "write probe read-back")
                .await;
        }
    }
}

/// The record's token, read in a read-only transaction.
async fn read_back(db: &mut TrustDb, wp: &WriteProbe, id: i64) -> Result<Option<String>, String> {
    let context = "write probe read-back";
    let sql = &wp.read_back;
    read_only!(db, context, db.text_for(sql, id, context))
}

/// Check each write that did not read back again, on one brand-new connection: what is still
/// missing, different or unreadable is lost.
async fn confirm_misses(
    trust: &Trust,
    wp: &WriteProbe,
    batch: &WriteBatch,
    misses: &[(usize, String)],
) -> Result<Vec<String>, String> {
    let mut db = TrustDb::connect(trust, Access::ReadOnly)
        .await
        .map_err(|e| e.to_string())?;
    let mut lost = Vec::new();
    for (i, first) in misses {
        let (id, token) = (batch.id(*i), batch.token(*i));
        let detail = match read_back(&mut db, wp, id).await {
            Ok(Some(v)) if v == token => continue,
            Ok(Some(v)) => format!("record {id} read back '{v}' instead of the token written"),
            Ok(None) if first.starts_with("unreadable") => {
                format!("record {id} committed, then {first}; not there on a fresh connection")
            }
            Ok(None) => format!(
                "record {id} committed, then was not there (checked twice, the second time on a fresh connection)"
            ),
            Err(e) => format!("record {id} committed but could not be read back: {e}"),
        };
        lost.push(detail);
    }
    db.close().await;
    Ok(lost)
}

/// Remove every record of the batch (idempotent: ids never inserted delete nothing), on the
/// first of `writers` (sessions that wrote without a failure), or on a new session when there
/// is none or the removal fails on it (the server may have closed it).
async fn remove_batch(
    trust: &Trust,
    wp: &WriteProbe,
    batch: &WriteBatch,
    writers: Vec<TrustDb>,
) -> Result<(), String> {
    let ids: Vec<i64> = (0..batch.count).map(|i| batch.id(i)).collect();
    let mut writers = writers.into_iter();
    let kept = writers.next();
    for w in writers {
        w.close().await;
    }
    if let Some(mut db) = kept {
        let r = delete_records(&mut db, &wp.cleanup, &ids).await;
        db.close().await;
        if r.is_ok() {
            return r;
        }
    }
    let mut db = TrustDb::connect(trust, Access::ReadWrite)
        .await
        .map_err(|e| e.to_string())?;
    let r = delete_records(&mut db, &wp.cleanup, &ids).await;
    db.close().await;
    r
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
    fn an_integer_key_is_one_written_as_rust_writes_it() {
        let reference = |s: &str| s.parse::<i64>().ok().filter(|i| i.to_string() == s);
        for s in [
            "0",
            "-0",
            "7",
            "-7",
            "007",
            "+7",
            "",
            "-",
            "1e3",
            " 1",
            "1 ",
            "12a",
            "٣",
            "9223372036854775807",
            "-9223372036854775808",
            "9223372036854775808",
            "-9223372036854775809",
            "00",
            "-01",
            "10",
            "-10",
            "abc",
        ] {
            assert_eq!(canonical_int(s), reference(s), "{s:?}");
        }
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

    #[test]
    fn a_second_look_keeps_the_figures_its_scope_does_not_measure() {
        let mut earlier = Snapshot::default();
        earlier.latency.insert(
            "open-record".into(),
            Ok(LatencySamples {
                ms: vec![0.5],
                rows: 1,
                control_ms: vec![0.1],
            }),
        );
        earlier.integrity.insert(
            "patient".into(),
            Ok(TableFigures {
                rows: 3,
                hash: "a".into(),
                undeclared_hash: "a".into(),
            }),
        );
        earlier
            .coverage
            .insert("patient".into(), Coverage::of_keys("id", [k("1")].iter()));
        earlier.newer_rows.insert("patient".into(), 2);
        earlier.invariants.insert("no-orphans".into(), Ok(0));
        earlier.write = Some(Ok(WriteSamples {
            writes: 30,
            ..WriteSamples::default()
        }));
        earlier.lock_waits = Some(LockWaits::default());
        let measured = |ms: f64| {
            let mut s = Snapshot::default();
            s.latency.insert(
                "open-record".into(),
                Ok(LatencySamples {
                    ms: vec![ms],
                    rows: 1,
                    control_ms: vec![0.1],
                }),
            );
            s
        };
        // Latency alone: everything else stands as measured before.
        let mut s = measured(0.7);
        s.fill_unmeasured(&earlier, Scope::Latency);
        assert_eq!(s.integrity, earlier.integrity);
        assert_eq!(s.coverage, earlier.coverage);
        assert_eq!(s.newer_rows, earlier.newer_rows);
        assert_eq!(s.invariants, earlier.invariants);
        assert_eq!(s.write, earlier.write);
        assert_eq!(s.lock_waits, earlier.lock_waits);
        assert_ne!(s.latency, earlier.latency, "the new latency is kept");
        // A soak-scoped re-measurement keeps its own writes and invariants, takes integrity.
        let mut s = measured(0.7);
        s.write = Some(Ok(WriteSamples {
            writes: 45,
            ..WriteSamples::default()
        }));
        s.fill_unmeasured(&earlier, Scope::Soak);
        assert_eq!(s.integrity, earlier.integrity);
        assert_eq!(
            s.write.as_ref().map(|w| w.as_ref().map(|w| w.writes)),
            Some(Ok(45))
        );
        assert!(s.invariants.is_empty());
        // A full window measures everything itself.
        let mut s = measured(0.7);
        s.fill_unmeasured(&earlier, Scope::Full);
        assert!(s.integrity.is_empty() && s.write.is_none());
        assert!(Scope::Full.integrity() && Scope::Integrity.integrity());
        assert!(!Scope::Soak.integrity() && !Scope::Latency.integrity());
        assert!(Scope::Full.writes() && Scope::Soak.writes());
        assert!(!Scope::Integrity.writes() && !Scope::Latency.writes());
    }
}
