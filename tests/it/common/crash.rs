//! The crash harness's helpers: a seedable generator for its kill points, the seed and knobs
//! from the environment, what it compares on a trust after a crash and a resume, and the host
//! and clock facts a planted lease holds.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::db::{conn_close, conn_strings};
use super::{block_on, Db};

/// A small seedable pseudo-random generator (SplitMix64): the crash harness's kill points are
/// reproducible from the seed it prints.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=max`.
    pub fn up_to(&mut self, max: u64) -> u64 {
        match max.checked_add(1) {
            Some(n) => self.next_u64() % n,
            None => self.next_u64(),
        }
    }
}

/// `name` from the test's environment parsed as `T`, or `default` when unset or empty; a value
/// that does not parse fails the test (a typo must not silently change what is tested).
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a valid value")),
        _ => default,
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `FLOTILLA_CRASH_SEED`, or one derived from the time (printed by the harness, so any run can
/// be replayed).
pub fn crash_seed() -> u64 {
    let derived = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ u64::from(std::process::id()).rotate_left(32);
    env_or("FLOTILLA_CRASH_SEED", derived % 1_000_000_000)
}

/// This host's name, as flotilla records it in the lease.
pub fn this_host() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// What the crash harness compares between a crashed-and-resumed trust and the reference: the
/// schema, and every row of every table except the tracking table, all columns as text, sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// SQLite: sqlite_master (type, name, table, sql). Postgres: information_schema.columns of
    /// the current schema and pg_indexes (name and definition).
    pub schema: Vec<String>,
    /// Table name -> its rows, sorted.
    pub data: BTreeMap<String, Vec<String>>,
}

impl Fingerprint {
    /// What differs between `self` (expected) and `actual`, briefly; empty when equal.
    pub fn diff(&self, actual: &Fingerprint) -> String {
        fn lines_diff(what: &str, expected: &[String], actual: &[String], out: &mut String) {
            let e: std::collections::BTreeSet<&String> = expected.iter().collect();
            let a: std::collections::BTreeSet<&String> = actual.iter().collect();
            let missing: Vec<&&String> = e.difference(&a).take(3).collect();
            let extra: Vec<&&String> = a.difference(&e).take(3).collect();
            if expected != actual {
                let _ = writeln!(
                    out,
                    "  {what}: expected {} rows, found {}; missing e.g. {missing:?}; unexpected e.g. {extra:?}",
                    expected.len(),
                    actual.len()
                );
            }
        }
        let mut out = String::new();
        lines_diff("schema", &self.schema, &actual.schema, &mut out);
        let tables: std::collections::BTreeSet<&String> =
            self.data.keys().chain(actual.data.keys()).collect();
        for t in tables {
            let none = Vec::new();
            lines_diff(
                &format!("table {t}"),
                self.data.get(t).unwrap_or(&none),
                actual.data.get(t).unwrap_or(&none),
                &mut out,
            );
        }
        out
    }
}

/// A trust database as the crash harness checks it after a crash and a resume.
#[derive(Debug, Clone)]
pub struct TrustCheck {
    /// `_flotilla_migrations` versions, ascending.
    pub versions: Vec<i64>,
    /// Distinct versions among them.
    pub distinct_versions: usize,
    /// Tracking rows marked dirty.
    pub dirty: i64,
    /// clinical_note rows with a negative id (the write probe's).
    pub negative_notes: i64,
    /// Schema and data.
    pub fingerprint: Fingerprint,
}

impl Db {
    /// Everything the crash harness checks on a trust, read on one read-only connection.
    pub fn crash_check(&self) -> Result<TrustCheck, String> {
        let sqlite = matches!(self, Db::Sqlite(_));
        block_on(async {
            let mut conn = self.try_connect(true).await?;
            let result = async {
                let mut versions: Vec<i64> = conn_strings(
                    &mut conn,
                    "SELECT CAST(version AS TEXT) FROM _flotilla_migrations",
                )
                .await?
                .iter()
                .map(|v| v.parse().unwrap())
                .collect();
                versions.sort();
                let distinct_versions = versions
                    .iter()
                    .collect::<std::collections::BTreeSet<_>>()
                    .len();
                let one = |v: Vec<String>| v.first().map_or(-1, |s| s.parse().unwrap_or(-1));
                let dirty = one(conn_strings(
                    &mut conn,
                    "SELECT CAST(count(*) AS TEXT) FROM _flotilla_migrations WHERE dirty",
                )
                .await?);
                let negative_notes = one(conn_strings(
                    &mut conn,
                    "SELECT CAST(count(*) AS TEXT) FROM clinical_note WHERE id < 0",
                )
                .await?);
                let (schema_sql, tables_sql) = if sqlite {
                    (
                        vec![
                            "SELECT type || '|' || name || '|' || tbl_name || '|' || COALESCE(sql, '') \
                             FROM sqlite_master",
                        ],
                        "SELECT name FROM sqlite_master WHERE type = 'table' \
                         AND name NOT LIKE 'sqlite%' AND name <> '_flotilla_migrations'",
                    )
                } else {
                    (
                        vec![
                            "SELECT 'column|' || table_name || '|' || column_name || '|' \
                             || ordinal_position::text || '|' || data_type || '|' || is_nullable \
                             || '|' || COALESCE(column_default, '') \
                             FROM information_schema.columns WHERE table_schema = current_schema()",
                            "SELECT 'index|' || tablename || '|' || indexname || '|' || indexdef \
                             FROM pg_indexes WHERE schemaname = current_schema()",
                        ],
                        "SELECT table_name::text FROM information_schema.tables \
                         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
                         AND table_name <> '_flotilla_migrations'",
                    )
                };
                let mut schema = Vec::new();
                for q in schema_sql {
                    schema.extend(conn_strings(&mut conn, q).await?);
                }
                schema.sort();
                let mut data = BTreeMap::new();
                for table in conn_strings(&mut conn, tables_sql).await? {
                    let select = if sqlite {
                        let columns = conn_strings(
                            &mut conn,
                            &format!("SELECT name FROM pragma_table_info('{table}') ORDER BY cid"),
                        )
                        .await?;
                        let cols: Vec<String> =
                            columns.iter().map(|c| format!("quote(\"{c}\")")).collect();
                        format!("SELECT {} FROM \"{table}\"", cols.join(" || '|' || "))
                    } else {
                        format!("SELECT t::text FROM \"{table}\" t")
                    };
                    let mut rows = conn_strings(&mut conn, &select).await?;
                    rows.sort();
                    data.insert(table, rows);
                }
                Ok::<_, String>(TrustCheck {
                    versions,
                    distinct_versions,
                    dirty,
                    negative_notes,
                    fingerprint: Fingerprint { schema, data },
                })
            }
            .await;
            conn_close(conn).await;
            result
        })
    }
}
