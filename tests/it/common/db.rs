//! [`Db`]: direct access to a trust's database (SQLite file or Postgres database), to check
//! what flotilla did (or did not do) independently of flotilla's own reporting.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sqlx::{Connection, Row};

/// Run a future to completion on a private runtime (tests are synchronous).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// One trust's database, for checking state behind flotilla's back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Db {
    Sqlite(PathBuf),
    /// A full connection URL (with password, if any).
    Postgres(String),
}

pub(super) enum Conn {
    Sqlite(sqlx::SqliteConnection),
    Pg(sqlx::PgConnection),
}

impl Db {
    async fn connect(&self, read_only: bool) -> Conn {
        match self {
            Db::Sqlite(path) => {
                assert!(
                    path.exists(),
                    "sqlite database {} does not exist",
                    path.display()
                );
                let opts = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(path)
                    .read_only(read_only)
                    .create_if_missing(false);
                Conn::Sqlite(
                    sqlx::SqliteConnection::connect_with(&opts)
                        .await
                        .unwrap_or_else(|e| panic!("open {}: {e}", path.display())),
                )
            }
            Db::Postgres(url) => Conn::Pg(
                sqlx::PgConnection::connect(url)
                    .await
                    .unwrap_or_else(|e| panic!("connect {url}: {e}")),
            ),
        }
    }

    /// Execute `sql` (one script, may hold several statements) in autocommit mode.
    pub fn exec(&self, sql: &str) {
        block_on(async {
            match self.connect(false).await {
                Conn::Sqlite(mut c) => {
                    sqlx::raw_sql(sql)
                        .execute(&mut c)
                        .await
                        .unwrap_or_else(|e| panic!("{sql}: {e}"));
                    c.close().await.ok();
                }
                Conn::Pg(mut c) => {
                    sqlx::raw_sql(sql)
                        .execute(&mut c)
                        .await
                        .unwrap_or_else(|e| panic!("{sql}: {e}"));
                    c.close().await.ok();
                }
            }
        })
    }

    /// First column of every row of `sql`, which must be a text value (cast it).
    pub fn query_strings(&self, sql: &str) -> Vec<String> {
        block_on(async {
            match self.connect(true).await {
                Conn::Sqlite(mut c) => {
                    let rows = sqlx::query(sql)
                        .fetch_all(&mut c)
                        .await
                        .unwrap_or_else(|e| panic!("{self:?}: {sql}: {e}"));
                    c.close().await.ok();
                    rows.iter().map(|r| r.get::<String, _>(0)).collect()
                }
                Conn::Pg(mut c) => {
                    let rows = sqlx::query(sql)
                        .fetch_all(&mut c)
                        .await
                        .unwrap_or_else(|e| panic!("{self:?}: {sql}: {e}"));
                    c.close().await.ok();
                    rows.iter().map(|r| r.get::<String, _>(0)).collect()
                }
            }
        })
    }

    /// A single integer (e.g. `SELECT count(*) ...`; cast to bigint on Postgres if needed).
    pub fn query_i64(&self, sql: &str) -> i64 {
        block_on(async {
            match self.connect(true).await {
                Conn::Sqlite(mut c) => {
                    let v: i64 = sqlx::query_scalar::<_, i64>(sql)
                        .fetch_one(&mut c)
                        .await
                        .unwrap_or_else(|e| panic!("{self:?}: {sql}: {e}"));
                    c.close().await.ok();
                    v
                }
                Conn::Pg(mut c) => {
                    let v: i64 = sqlx::query_scalar::<_, i64>(sql)
                        .fetch_one(&mut c)
                        .await
                        .unwrap_or_else(|e| panic!("{self:?}: {sql}: {e}"));
                    c.close().await.ok();
                    v
                }
            }
        })
    }

    pub fn table_exists(&self, table: &str) -> bool {
        let sql = match self {
            Db::Sqlite(_) => format!(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '{table}'"
            ),
            Db::Postgres(_) => format!(
                "SELECT count(*)::bigint FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = '{table}'"
            ),
        };
        self.query_i64(&sql) > 0
    }

    /// Number of rows of `table`.
    pub fn count(&self, table: &str) -> i64 {
        self.query_i64(&format!("SELECT count(*) FROM {table}"))
    }

    /// Versions recorded in `_flotilla_migrations`, ascending (empty if there is no table).
    pub fn applied_versions(&self) -> Vec<i64> {
        if !self.table_exists("_flotilla_migrations") {
            return Vec::new();
        }
        let sql = match self {
            Db::Sqlite(_) => {
                "SELECT CAST(version AS TEXT) FROM _flotilla_migrations ORDER BY version"
            }
            Db::Postgres(_) => {
                "SELECT t.version::text FROM _flotilla_migrations t ORDER BY t.version"
            }
        };
        let mut v: Vec<i64> = self
            .query_strings(sql)
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        v.sort();
        v
    }

    /// Every tracking row rendered as one string (all columns), ordered by version: two
    /// snapshots are equal iff no tracking row was added, removed or changed.
    pub fn tracking_rows(&self) -> Vec<String> {
        if !self.table_exists("_flotilla_migrations") {
            return Vec::new();
        }
        let sql = match self {
            Db::Sqlite(_) => {
                "SELECT quote(version) || '|' || quote(description) || '|' || quote(checksum) \
                 || '|' || quote(applied_at) || '|' || quote(duration_ms) \
                 FROM _flotilla_migrations ORDER BY version"
            }
            Db::Postgres(_) => {
                "SELECT row_to_json(t)::text FROM _flotilla_migrations t ORDER BY t.version"
            }
        };
        self.query_strings(sql)
    }
}

pub(super) async fn conn_strings(conn: &mut Conn, sql: &str) -> Result<Vec<String>, String> {
    let rows = match conn {
        Conn::Sqlite(c) => sqlx::query(sql)
            .fetch_all(&mut *c)
            .await
            .map(|rows| rows.iter().map(|r| r.try_get::<String, _>(0)).collect()),
        Conn::Pg(c) => sqlx::query(sql)
            .fetch_all(&mut *c)
            .await
            .map(|rows| rows.iter().map(|r| r.try_get::<String, _>(0)).collect()),
    };
    match rows {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) | Err(e) => Err(format!("{sql}: {e}")),
    }
}

pub(super) async fn conn_close(conn: Conn) {
    match conn {
        Conn::Sqlite(c) => {
            c.close().await.ok();
        }
        Conn::Pg(c) => {
            c.close().await.ok();
        }
    }
}

impl Db {
    pub(super) async fn try_connect(&self, read_only: bool) -> Result<Conn, String> {
        match self {
            Db::Sqlite(path) => {
                let opts = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(path)
                    .read_only(read_only)
                    .busy_timeout(Duration::from_secs(10))
                    .create_if_missing(false);
                sqlx::SqliteConnection::connect_with(&opts)
                    .await
                    .map(Conn::Sqlite)
                    .map_err(|e| format!("open {}: {e}", path.display()))
            }
            Db::Postgres(url) => sqlx::PgConnection::connect(url)
                .await
                .map(Conn::Pg)
                .map_err(|e| format!("connect {url}: {e}")),
        }
    }

    /// First column (text) of every row of each query, on one read-write connection (SQLite:
    /// opening it rolls a hot journal back, like any writer would); an error instead of a
    /// panic.
    pub fn try_query_rw(&self, sqls: &[&str]) -> Result<Vec<Vec<String>>, String> {
        block_on(async {
            let mut conn = self.try_connect(false).await?;
            let mut out = Vec::new();
            for sql in sqls {
                match conn_strings(&mut conn, sql).await {
                    Ok(v) => out.push(v),
                    Err(e) => {
                        conn_close(conn).await;
                        return Err(e);
                    }
                }
            }
            conn_close(conn).await;
            Ok(out)
        })
    }
}

impl Db {
    /// Run `sql` (one integer, as text) over and over on one connection, opened read-write as
    /// soon as the database exists, until it returns at least `at_least` (true), or `stop`
    /// says to give up or `deadline` passes (false). For watching a running flotilla's state
    /// database.
    pub fn wait_for_count(
        &self,
        sql: &str,
        at_least: i64,
        deadline: Instant,
        mut stop: impl FnMut() -> bool,
    ) -> bool {
        block_on(async {
            let mut conn = None;
            let mut reached = false;
            while !stop() && Instant::now() < deadline {
                if conn.is_none() {
                    conn = self.try_connect(false).await.ok();
                }
                if let Some(c) = conn.as_mut() {
                    if let Ok(v) = conn_strings(c, sql).await {
                        if v.first().and_then(|s| s.parse::<i64>().ok()) >= Some(at_least) {
                            reached = true;
                            break;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            if let Some(c) = conn {
                conn_close(c).await;
            }
            reached
        })
    }
}
