//! The readings (I/O): the cumulative counters of `pg_stat_statements` and `pg_stat_database`
//! on a trust, taken when a window opens and when it closes, and the window between them.
//! The reading that opens each trust's current window is kept in memory (never journalled):
//! after a restart the next window simply opens afresh.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnection;
use sqlx::{ConnectOptions, Connection, Row};

use super::window::{
    display_text, housekeeping, own_text, DatabaseWindow, StatementWindow, WorkloadWindow, MAX_KEPT,
};
use crate::config::health::Health;
use crate::config::{DatabaseTarget, Trust};
use crate::db::Access;
use crate::health::probes::{Measured, CONTROL_SQL};

/// Marks every statement flotilla sends for these readings, so they can be told apart.
const MARK: &str = "/* flotilla workload */";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy, PartialEq)]
struct Counters {
    calls: i64,
    total_ms: f64,
    sum_sq: f64,
    rows: i64,
}

#[derive(Debug, Clone, PartialEq)]
struct DbCounters {
    reset: Option<String>,
    figures: DatabaseWindow,
}

/// The cumulative counters at one moment.
#[derive(Debug, Clone)]
struct Reading {
    at: Instant,
    statements: HashMap<i64, Counters>,
    database: Option<DbCounters>,
    /// Queryids of flotilla's own health statements at that moment.
    own: HashSet<i64>,
}

/// Where the extension lives on a trust, and its column names.
#[derive(Debug, Clone)]
struct Source {
    /// Quoted schema name.
    schema: String,
    /// `exec_time` (1.8+, PostgreSQL 13+) or `time`.
    time: &'static str,
    /// Queryids of flotilla's own health statements, asked of the server whenever a window is
    /// opened afresh ([`Tracker::mark`]: before a wave's baselines and after its migrations,
    /// the only moments the trust's schema may have changed).
    own: HashSet<i64>,
}

/// What is known of a queryid's text, so that each text is fetched once per run.
#[derive(Debug, Clone)]
enum Text {
    /// flotilla's own, or a reading of the statistics views: never workload.
    Own,
    /// Workload, with its text as shown.
    Shown(String),
}

enum TrustState {
    Available {
        source: Source,
        /// Texts already fetched, by queryid.
        texts: HashMap<i64, Text>,
        /// The reading that opened the trust's current window (or why it failed).
        open: Option<Result<Box<Reading>, String>>,
    },
    Unavailable,
}

/// Takes the workload readings of every trust of a run and keeps each trust's open reading.
#[derive(Default)]
pub struct Tracker {
    trusts: Mutex<HashMap<String, TrustState>>,
}

/// Whether the tracker can read a trust's workload, found out on first contact.
enum Detected {
    Available(Source),
    /// Said once per trust.
    Unavailable(String),
}

use crate::db::sql::quote_ident;

async fn connect(trust: &Trust) -> Result<PgConnection, String> {
    let options =
        crate::db::port::pg_options(trust, Access::ReadOnly).map_err(|e| e.to_string())?;
    tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
        .await
        .map_err(|_| {
            format!(
                "trust '{}': no answer within {}s",
                trust.id,
                CONNECT_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| {
            format!(
                "trust '{}': cannot connect to {}: {e}",
                trust.id,
                trust.database.redacted()
            )
        })
}

async fn detect(conn: &mut PgConnection) -> Result<Detected, String> {
    let row = sqlx::query(&format!(
        "{MARK} SELECT (SELECT n.nspname::text FROM pg_catalog.pg_extension e \
         JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace \
         WHERE e.extname = 'pg_stat_statements'), \
         pg_catalog.pg_has_role('pg_read_all_stats', 'USAGE'), \
         pg_catalog.current_setting('compute_query_id', true), \
         pg_catalog.current_setting('pg_stat_statements.track', true)"
    ))
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| format!("detecting pg_stat_statements: {e}"))?;
    let schema: Option<String> = row.try_get(0).map_err(|e| e.to_string())?;
    let all_stats: bool = row.try_get(1).map_err(|e| e.to_string())?;
    let query_id: Option<String> = row.try_get(2).map_err(|e| e.to_string())?;
    let track: Option<String> = row.try_get(3).map_err(|e| e.to_string())?;
    let Some(schema) = schema else {
        return Ok(Detected::Unavailable(
            "the pg_stat_statements extension is not created in this database; flotilla never creates it (CREATE EXTENSION pg_stat_statements, with the library in shared_preload_libraries)".into(),
        ));
    };
    if !all_stats {
        return Ok(Detected::Unavailable(
            "flotilla's database role may read only its own statements in pg_stat_statements: grant it pg_read_all_stats (or pg_monitor)".into(),
        ));
    }
    if query_id.as_deref() == Some("off") {
        return Ok(Detected::Unavailable(
            "compute_query_id is off, so pg_stat_statements records no statements".into(),
        ));
    }
    if track.as_deref() == Some("none") {
        return Ok(Detected::Unavailable(
            "pg_stat_statements.track is none, so it records no statements".into(),
        ));
    }
    let schema = quote_ident(&schema);
    let modern: i64 = sqlx::query_scalar(&format!(
        "{MARK} SELECT pg_catalog.count(*) FROM pg_catalog.pg_attribute \
         WHERE attrelid = pg_catalog.to_regclass($1) AND attname = 'total_exec_time' AND NOT attisdropped"
    ))
    .bind(format!("{schema}.pg_stat_statements"))
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| format!("reading pg_stat_statements' columns: {e}"))?;
    let source = Source {
        schema,
        time: if modern > 0 { "exec_time" } else { "time" },
        own: HashSet::new(),
    };
    // The library must be preloaded for the view to answer at all.
    match read_statements(conn, &source).await {
        Ok(_) => Ok(Detected::Available(source)),
        Err(ReadError::NotLoaded) => Ok(Detected::Unavailable(
            "pg_stat_statements is created in this database but its library is not loaded (add it to shared_preload_libraries and restart the server)".into(),
        )),
        Err(ReadError::Other(e)) => Err(e),
    }
}

enum ReadError {
    NotLoaded,
    Other(String),
}

async fn read_statements(
    conn: &mut PgConnection,
    source: &Source,
) -> Result<HashMap<i64, Counters>, ReadError> {
    let t = source.time;
    let sql = format!(
        "{MARK} SELECT s.queryid, pg_catalog.sum(s.calls)::int8, pg_catalog.sum(s.total_{t})::float8, \
         pg_catalog.sum(s.calls * (s.stddev_{t} * s.stddev_{t} + s.mean_{t} * s.mean_{t}))::float8, \
         pg_catalog.sum(s.rows)::int8 \
         FROM {}.pg_stat_statements(false) s \
         WHERE s.dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()) \
         AND s.queryid IS NOT NULL GROUP BY s.queryid",
        source.schema
    );
    let rows = sqlx::query(&sql).fetch_all(&mut *conn).await.map_err(|e| {
        let not_loaded = e
            .as_database_error()
            .is_some_and(|d| d.code().as_deref() == Some("55000"));
        if not_loaded {
            ReadError::NotLoaded
        } else {
            ReadError::Other(format!("reading pg_stat_statements: {e}"))
        }
    })?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        let get = |e: sqlx::Error| ReadError::Other(format!("reading pg_stat_statements: {e}"));
        let id: i64 = row.try_get(0).map_err(get)?;
        out.insert(
            id,
            Counters {
                calls: row.try_get(1).map_err(get)?,
                total_ms: row.try_get(2).map_err(get)?,
                sum_sq: row.try_get(3).map_err(get)?,
                rows: row.try_get(4).map_err(get)?,
            },
        );
    }
    Ok(out)
}

async fn read_database(conn: &mut PgConnection) -> Result<DbCounters, String> {
    let row = sqlx::query(&format!(
        "{MARK} SELECT xact_commit, xact_rollback, deadlocks, conflicts, temp_files, temp_bytes, \
         stats_reset::text FROM pg_catalog.pg_stat_database WHERE datname = pg_catalog.current_database()"
    ))
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| format!("reading pg_stat_database: {e}"))?;
    let get = |e: sqlx::Error| format!("reading pg_stat_database: {e}");
    Ok(DbCounters {
        reset: row.try_get(6).map_err(get)?,
        figures: DatabaseWindow {
            commits: row.try_get(0).map_err(get)?,
            rollbacks: row.try_get(1).map_err(get)?,
            deadlocks: row.try_get(2).map_err(get)?,
            conflicts: row.try_get(3).map_err(get)?,
            temp_files: row.try_get(4).map_err(get)?,
            temp_bytes: row.try_get(5).map_err(get)?,
        },
    })
}

/// The queryids of flotilla's own health statements, as the server computes them now (a
/// migration that recreates a table changes them): `EXPLAIN (VERBOSE)` prints the query
/// identifier without running the statement. Parameters are bound as the probes bind them
/// (`$1` an integer, `$2` text), because the identifier depends on their types. A statement
/// the server cannot explain is simply not excluded.
async fn own_queryids(conn: &mut PgConnection, health: &Health) -> HashSet<i64> {
    let mut out = HashSet::new();
    let statements = crate::health::probes::statements(health)
        .into_iter()
        .map(|(_, sql)| sql)
        .chain(std::iter::once(CONTROL_SQL.to_string()));
    for sql in statements {
        let explain = format!("{MARK} EXPLAIN (VERBOSE) {sql}");
        let q = sqlx::query_scalar::<_, String>(&explain);
        let q = if sql.contains("$2") {
            q.bind(0_i64).bind("")
        } else if sql.contains("$1") {
            q.bind(0_i64)
        } else {
            q
        };
        let Ok(lines) = q.fetch_all(&mut *conn).await else {
            continue;
        };
        for line in lines {
            if let Some(id) = line
                .trim()
                .strip_prefix("Query Identifier:")
                .and_then(|v| v.trim().parse::<i64>().ok())
            {
                out.insert(id);
            }
        }
    }
    out
}

async fn read(conn: &mut PgConnection, source: &Source) -> Result<Reading, String> {
    let statements = read_statements(conn, source).await.map_err(|e| match e {
        ReadError::NotLoaded => "pg_stat_statements is no longer loaded".to_string(),
        ReadError::Other(e) => e,
    })?;
    let database = read_database(conn).await?;
    Ok(Reading {
        at: Instant::now(),
        statements,
        database: Some(database),
        own: source.own.clone(),
    })
}

/// The texts of the statements with these queryids (raw, as `pg_stat_statements` keeps them).
async fn read_texts(
    conn: &mut PgConnection,
    source: &Source,
    ids: &[i64],
) -> Result<HashMap<i64, String>, String> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query(&format!(
        "{MARK} SELECT s.queryid, pg_catalog.min(pg_catalog.left(s.query, 4000)) \
         FROM {}.pg_stat_statements(true) s \
         WHERE s.dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()) \
         AND s.queryid = ANY($1) GROUP BY s.queryid",
        source.schema
    ))
    .bind(ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| format!("reading statement texts: {e}"))?;
    let mut out = HashMap::new();
    for row in rows {
        let id: i64 = row.try_get(0).map_err(|e| e.to_string())?;
        let text: Option<String> = row.try_get(1).map_err(|e| e.to_string())?;
        if let Some(text) = text {
            out.insert(id, text);
        }
    }
    Ok(out)
}

/// Per-statement deltas between two readings (flotilla's own statements left out by queryid),
/// largest total time first. Statements whose counters went down were evicted or reset in
/// between: they are left out and counted.
fn statement_deltas(start: &Reading, end: &Reading) -> (Vec<(i64, Counters)>, usize) {
    let mut out = Vec::new();
    let mut reset = 0;
    for (id, e) in &end.statements {
        if start.own.contains(id) || end.own.contains(id) {
            continue;
        }
        let s = start.statements.get(id).copied().unwrap_or(Counters {
            calls: 0,
            total_ms: 0.0,
            sum_sq: 0.0,
            rows: 0,
        });
        if e.calls < s.calls {
            reset += 1;
            continue;
        }
        if e.calls == s.calls {
            continue;
        }
        out.push((
            *id,
            Counters {
                calls: e.calls - s.calls,
                total_ms: (e.total_ms - s.total_ms).max(0.0),
                sum_sq: (e.sum_sq - s.sum_sq).max(0.0),
                rows: (e.rows - s.rows).max(0),
            },
        ));
    }
    out.sort_by(|a, b| b.1.total_ms.total_cmp(&a.1.total_ms));
    (out, reset)
}

fn database_delta(start: &Reading, end: &Reading) -> Option<DatabaseWindow> {
    let (s, e) = (start.database.as_ref()?, end.database.as_ref()?);
    if s.reset != e.reset {
        return None;
    }
    let (s, e) = (s.figures, e.figures);
    let d = DatabaseWindow {
        commits: e.commits - s.commits,
        rollbacks: e.rollbacks - s.rollbacks,
        deadlocks: e.deadlocks - s.deadlocks,
        conflicts: e.conflicts - s.conflicts,
        temp_files: e.temp_files - s.temp_files,
        temp_bytes: e.temp_bytes - s.temp_bytes,
    };
    let all = [
        d.commits,
        d.rollbacks,
        d.deadlocks,
        d.conflicts,
        d.temp_files,
        d.temp_bytes,
    ];
    all.iter().all(|v| *v >= 0).then_some(d)
}

/// The window between two readings, and whether it saw any traffic (a statement that is
/// neither flotilla's nor session housekeeping).
async fn window_between(
    conn: &mut PgConnection,
    source: &Source,
    texts: &mut HashMap<i64, Text>,
    start: &Reading,
    end: &Reading,
    min_calls: u64,
) -> Result<(WorkloadWindow, bool), String> {
    let (deltas, reset) = statement_deltas(start, end);
    let unknown: Vec<i64> = deltas
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !texts.contains_key(id))
        .collect();
    for (id, raw) in read_texts(conn, source, &unknown).await? {
        let text = if own_text(&raw) {
            Text::Own
        } else {
            Text::Shown(display_text(&raw))
        };
        texts.insert(id, text);
    }
    let mut traffic = false;
    let mut statements = Vec::new();
    let mut omitted = 0;
    for (id, c) in deltas {
        let shown = match texts.get(&id) {
            Some(Text::Own) => continue,
            Some(Text::Shown(s)) => Some(s.clone()),
            None => None,
        };
        traffic |= shown.as_deref().is_none_or(|s| !housekeeping(s));
        if statements.len() == MAX_KEPT {
            omitted += 1;
            continue;
        }
        let calls = u64::try_from(c.calls).unwrap_or(0);
        let n = c.calls as f64;
        let mean = c.total_ms / n;
        let variance = (c.sum_sq / n - mean * mean).max(0.0);
        statements.push(StatementWindow {
            queryid: id,
            query: shown.filter(|_| calls >= min_calls),
            calls,
            total_ms: c.total_ms,
            mean_ms: mean,
            stddev_ms: variance.sqrt(),
            rows: u64::try_from(c.rows).unwrap_or(0),
        });
    }
    let mut notes = Vec::new();
    if reset > 0 {
        notes.push(format!(
            "{reset} statements were evicted or reset in pg_stat_statements during the window and are not counted"
        ));
    }
    let database = database_delta(start, end);
    Ok((
        WorkloadWindow {
            seconds: end.at.duration_since(start.at).as_secs_f64(),
            statements,
            omitted,
            database,
            notes,
        },
        traffic,
    ))
}

impl Tracker {
    fn applies(trust: &Trust, health: &Health) -> bool {
        health.workload.enabled && matches!(trust.database, DatabaseTarget::Postgres { .. })
    }

    /// Find out whether a trust's workload can be read, once. `Ok(None)` when it cannot (the
    /// second element then says why, the first time only).
    async fn source(
        &self,
        trust: &Trust,
        conn: &mut PgConnection,
    ) -> Result<(Option<Source>, Option<String>), String> {
        let known = {
            let map = self.trusts.lock().map_err(|e| e.to_string())?;
            match map.get(&trust.id) {
                Some(TrustState::Available { source, .. }) => Some(Some(source.clone())),
                Some(TrustState::Unavailable) => Some(None),
                None => None,
            }
        };
        if let Some(source) = known {
            return Ok((source, None));
        }
        let detected = detect(conn).await?;
        let mut map = self.trusts.lock().map_err(|e| e.to_string())?;
        Ok(match detected {
            Detected::Available(source) => {
                map.insert(
                    trust.id.clone(),
                    TrustState::Available {
                        source: source.clone(),
                        texts: HashMap::new(),
                        open: None,
                    },
                );
                (Some(source), None)
            }
            Detected::Unavailable(why) => {
                map.insert(trust.id.clone(), TrustState::Unavailable);
                (None, Some(why))
            }
        })
    }

    /// Swap the trust's known texts with `texts`, returning what was there.
    fn texts(&self, trust: &str, texts: HashMap<i64, Text>) -> HashMap<i64, Text> {
        match self.trusts.lock() {
            Ok(mut map) => match map.get_mut(trust) {
                Some(TrustState::Available { texts: known, .. }) => std::mem::replace(known, texts),
                _ => HashMap::new(),
            },
            Err(_) => HashMap::new(),
        }
    }

    fn set_own(&self, trust: &str, own: &HashSet<i64>) {
        if let Ok(mut map) = self.trusts.lock() {
            if let Some(TrustState::Available { source, .. }) = map.get_mut(trust) {
                source.own.clone_from(own);
            }
        }
    }

    fn set_open(&self, trust: &str, reading: Result<Reading, String>) {
        if let Ok(mut map) = self.trusts.lock() {
            if let Some(TrustState::Available { open, .. }) = map.get_mut(trust) {
                *open = Some(reading.map(Box::new));
            }
        }
    }

    fn take_open(&self, trust: &str) -> Option<Result<Reading, String>> {
        let mut map = self.trusts.lock().ok()?;
        match map.get_mut(trust) {
            Some(TrustState::Available { open, .. }) => open.take().map(|r| r.map(|b| *b)),
            _ => None,
        }
    }

    fn has_open(&self, trust: &str) -> bool {
        self.trusts.lock().is_ok_and(|map| {
            matches!(
                map.get(trust),
                Some(TrustState::Available { open: Some(_), .. })
            )
        })
    }

    /// Open a new window on a trust now, whatever was open (a wave's baselines begin, or its
    /// migrations ended). Returns why the workload cannot be read, the first time that is found.
    pub async fn mark(&self, trust: &Trust, health: &Health) -> Option<String> {
        if !Self::applies(trust, health) {
            return None;
        }
        let started = Instant::now();
        let mut conn = match connect(trust).await {
            Ok(c) => c,
            Err(e) => {
                self.set_open(&trust.id, Err(e));
                return None;
            }
        };
        let (source, notice) = match self.source(trust, &mut conn).await {
            Ok(found) => found,
            Err(e) => {
                let _ = conn.close().await;
                tracing::warn!(trust = %trust.id, error = %e, "could not find out whether pg_stat_statements is available");
                return None;
            }
        };
        if let Some(mut source) = source {
            source.own = own_queryids(&mut conn, health).await;
            self.set_own(&trust.id, &source.own);
            let reading = read(&mut conn, &source).await;
            self.set_open(&trust.id, reading);
        }
        let _ = conn.close().await;
        tracing::debug!(trust = %trust.id, ms = started.elapsed().as_secs_f64() * 1000.0, "workload window opened");
        notice
    }

    /// Open a window on a trust unless one is open already (a window right after the last).
    pub async fn open(&self, trust: &Trust, health: &Health) -> Option<String> {
        if !Self::applies(trust, health) || self.has_open(&trust.id) {
            return None;
        }
        self.mark(trust, health).await
    }

    /// Close the trust's open window: read the counters again and return the window between
    /// (held open up to `min_window` while the trust has traffic). The next window starts
    /// here. `None` when the workload is not read on this trust.
    pub async fn close(&self, trust: &Trust, health: &Health) -> Option<Measured<WorkloadWindow>> {
        if !Self::applies(trust, health) {
            return None;
        }
        let source = {
            let map = self.trusts.lock().ok()?;
            match map.get(&trust.id) {
                Some(TrustState::Available { source, .. }) => source.clone(),
                _ => return None,
            }
        };
        let started = Instant::now();
        let start = self.take_open(&trust.id);
        let mut conn = match connect(trust).await {
            Ok(c) => c,
            Err(e) => return Some(Err(e)),
        };
        let mut texts = self.texts(&trust.id, HashMap::new());
        let result = self
            .close_on(&mut conn, trust, &source, &mut texts, health, start)
            .await;
        self.texts(&trust.id, texts);
        let _ = conn.close().await;
        let seconds = result.as_ref().map_or(0.0, |w| w.seconds);
        tracing::debug!(trust = %trust.id, ms = started.elapsed().as_secs_f64() * 1000.0, window_s = seconds, "workload window closed");
        Some(result)
    }

    async fn close_on(
        &self,
        conn: &mut PgConnection,
        trust: &Trust,
        source: &Source,
        texts: &mut HashMap<i64, Text>,
        health: &Health,
        start: Option<Result<Reading, String>>,
    ) -> Measured<WorkloadWindow> {
        let end = read(conn, source).await;
        let Ok(end) = end else {
            let e = end.err().unwrap_or_default();
            self.set_open(&trust.id, Err(e.clone()));
            return Err(e);
        };
        let start = match start {
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                self.set_open(&trust.id, Ok(end));
                return Err(format!("the window's opening reading failed: {e}"));
            }
            None => {
                // Nothing was open (it should have been): the window starts now and is empty.
                self.set_open(&trust.id, Ok(end));
                return Err("no opening reading for this window".into());
            }
        };
        let min_calls = health.workload.min_calls;
        let (mut window, traffic) =
            match window_between(conn, source, texts, &start, &end, min_calls).await {
                Ok(w) => w,
                Err(e) => {
                    self.set_open(&trust.id, Ok(end));
                    return Err(e);
                }
            };
        let mut end = end;
        let elapsed = end.at.duration_since(start.at);
        let min_window = health.workload.min_window;
        if traffic && elapsed < min_window {
            tokio::time::sleep(min_window - elapsed).await;
            match read(conn, source).await {
                Ok(later) => {
                    end = later;
                    match window_between(conn, source, texts, &start, &end, min_calls).await {
                        Ok((w, _)) => window = w,
                        Err(e) => {
                            self.set_open(&trust.id, Ok(end));
                            return Err(e);
                        }
                    }
                }
                Err(e) => {
                    self.set_open(&trust.id, Err(e.clone()));
                    return Err(e);
                }
            }
        }
        self.set_open(&trust.id, Ok(end));
        Ok(window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(commits: i64, rollbacks: i64, deadlocks: i64) -> DatabaseWindow {
        DatabaseWindow {
            commits,
            rollbacks,
            deadlocks,
            ..DatabaseWindow::default()
        }
    }

    fn reading(statements: &[(i64, i64, f64)], own: &[i64], db: Option<DbCounters>) -> Reading {
        Reading {
            at: Instant::now(),
            statements: statements
                .iter()
                .map(|&(id, calls, total)| {
                    (
                        id,
                        Counters {
                            calls,
                            total_ms: total,
                            sum_sq: total * total,
                            rows: calls,
                        },
                    )
                })
                .collect(),
            database: db,
            own: own.iter().copied().collect(),
        }
    }

    #[test]
    fn deltas_leave_out_flotillas_own_statements_idle_ones_and_reset_counters() {
        let start = reading(
            &[(1, 10, 1.0), (2, 10, 1.0), (3, 50, 5.0), (4, 5, 1.0)],
            &[2],
            None,
        );
        let end = reading(
            &[
                (1, 30, 4.0),
                (2, 90, 9.0),
                (3, 20, 2.0),
                (4, 5, 1.0),
                (5, 3, 9.0),
            ],
            &[],
            None,
        );
        let (deltas, reset) = statement_deltas(&start, &end);
        let ids: Vec<i64> = deltas.iter().map(|(id, _)| *id).collect();
        assert_eq!(
            ids,
            vec![5, 1],
            "by total time; 2 is own, 3 was reset, 4 idle"
        );
        assert_eq!(deltas[1].1.calls, 20);
        assert_eq!(reset, 1);
    }

    #[test]
    fn database_deltas_are_dropped_when_the_counters_were_reset() {
        let c = |reset: &str, commits| DbCounters {
            reset: Some(reset.into()),
            figures: db(commits, 0, 0),
        };
        let a = reading(&[], &[], Some(c("t0", 100)));
        let b = reading(&[], &[], Some(c("t0", 150)));
        assert_eq!(database_delta(&a, &b).unwrap().commits, 50);
        let b = reading(&[], &[], Some(c("t1", 150)));
        assert_eq!(database_delta(&a, &b), None);
        let b = reading(&[], &[], Some(c("t0", 50)));
        assert_eq!(database_delta(&a, &b), None);
    }
}
