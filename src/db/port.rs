//! [`TrustDb`]: one connection to one trust's database, and everything flotilla does with it.

use std::fs::File;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};

use super::dialect::Dialect;
use super::sql;
use crate::config::inventory::{PasswordSource, UrlSource};
use crate::config::{DatabaseTarget, Trust};
use crate::exit_codes::ExitCode;
use crate::migrations::{Migration, Mode};

/// Whether a connection may change anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `plan`, `status`, preflight: SQLite opened read-only, Postgres sessions read-only.
    ReadOnly,
    /// `rollout`, `demo`.
    ReadWrite,
}

/// A row of the tracking table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AppliedMigration {
    /// Migration version.
    pub version: i64,
    /// Description recorded when applied.
    pub description: String,
    /// Checksum of the up file when applied.
    pub checksum: String,
    /// True while a non-transactional or batch script has not finished.
    pub dirty: bool,
}

/// What went wrong with a trust database. Every variant names the trust.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("trust '{trust}': database file {path} does not exist (flotilla never creates a trust database; check the path in the inventory)")]
    MissingSqliteFile { trust: String, path: PathBuf },
    #[error("trust '{trust}': database path {path} is {what}, not an SQLite database file (check the path in the inventory)")]
    NotAFile {
        trust: String,
        path: PathBuf,
        what: &'static str,
    },
    #[error("trust '{trust}': environment variable {var} ({what}) is not set")]
    MissingEnv {
        trust: String,
        var: String,
        what: &'static str,
    },
    #[error("trust '{trust}': cannot read password file {path}: {source}")]
    PasswordFile {
        trust: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("trust '{trust}': invalid database URL in {var}: {message}")]
    BadUrl {
        trust: String,
        var: String,
        message: String,
    },
    #[error("trust '{trust}': cannot connect to {target}: {message}")]
    Unreachable {
        trust: String,
        target: String,
        message: String,
    },
    #[error("trust '{trust}': database is locked by another flotilla run ({detail})")]
    Locked { trust: String, detail: String },
    #[error("trust '{trust}': {context}: {source}")]
    Query {
        trust: String,
        context: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("trust '{trust}': migration {version} ({path}) failed (a transactional migration rolls back whole; a batch or no-transaction one leaves its tracking row dirty): {source}")]
    MigrationFailed {
        trust: String,
        version: i64,
        path: PathBuf,
        #[source]
        source: sqlx::Error,
    },
    #[error("trust '{trust}': batch migration {version} ({path}) still changed rows after {batches} batches; is its statement idempotent and LIMITed?")]
    BatchDidNotConverge {
        trust: String,
        version: i64,
        path: PathBuf,
        batches: u64,
    },
}

impl DbError {
    /// The documented exit code, whatever the path that met the fault: the inventory names a
    /// database that cannot be used (missing file, unset variable, bad URL: 2), another run or
    /// session holds the trust (6), or the database failed or could not be reached (4).
    pub fn exit_code(&self) -> ExitCode {
        match self {
            DbError::MissingSqliteFile { .. }
            | DbError::NotAFile { .. }
            | DbError::MissingEnv { .. }
            | DbError::PasswordFile { .. }
            | DbError::BadUrl { .. } => ExitCode::Config,
            DbError::Locked { .. } => ExitCode::Locked,
            DbError::Unreachable { .. }
            | DbError::Query { .. }
            | DbError::MigrationFailed { .. }
            | DbError::BatchDidNotConverge { .. } => ExitCode::MigrationFailed,
        }
    }

    /// Whether this is the connection's fault (refused, dropped, the server shutting down)
    /// rather than the SQL's: such an error is worth retrying after a pause.
    pub fn is_connection_fault(&self) -> bool {
        let source = match self {
            DbError::Unreachable { .. } => return true,
            DbError::Query { source, .. } | DbError::MigrationFailed { source, .. } => source,
            _ => return false,
        };
        match source {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(e) => e.code().is_some_and(|c| {
                // 08: connection exception; 57P01..03: admin/crash shutdown, cannot connect now;
                // 57P05: the server ended an idle session (idle_session_timeout).
                c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03" | "57P05")
            }),
            _ => false,
        }
    }

    /// The trust the error is about.
    pub fn trust(&self) -> &str {
        match self {
            DbError::MissingSqliteFile { trust, .. }
            | DbError::NotAFile { trust, .. }
            | DbError::MissingEnv { trust, .. }
            | DbError::PasswordFile { trust, .. }
            | DbError::BadUrl { trust, .. }
            | DbError::Unreachable { trust, .. }
            | DbError::Locked { trust, .. }
            | DbError::Query { trust, .. }
            | DbError::MigrationFailed { trust, .. }
            | DbError::BatchDidNotConverge { trust, .. } => trust,
        }
    }
}

enum Conn {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

/// Run the same code against whichever connection this is. The body is compiled once per
/// driver, so it may only use what both offer (which is all flotilla needs).
macro_rules! on_conn {
    ($self:expr, $c:ident => $body:expr) => {
        match &mut $self.conn {
            Conn::Sqlite($c) => $body,
            Conn::Postgres($c) => $body,
        }
    };
}

/// An open connection to one trust database.
pub struct TrustDb {
    trust: String,
    conn: Conn,
    sqlite_path: Option<PathBuf>,
    lock_file: Option<File>,
    pg_locked: bool,
    /// Postgres: the server, database and user of the session (see `db::reuse`).
    endpoint: Option<String>,
    /// Statements the next message must start with: a session preflight opened read-only,
    /// taken for a migration (`db::reuse`), turns read-write with the lock message.
    reset: Option<&'static str>,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest a Postgres migration statement waits for a lock before it fails.
const PG_LOCK_TIMEOUT: &str = "10s";
/// How long taking a trust's lock waits for another session to let it go.
const LOCK_WAIT: Duration = Duration::from_secs(5);
const MAX_BATCHES: u64 = 1_000_000;

impl TrustDb {
    /// Connect to a trust's database. An SQLite file must already exist.
    pub async fn connect(trust: &Trust, access: Access) -> Result<TrustDb, DbError> {
        Self::connect_within(trust, access, None).await
    }

    /// [`connect`](Self::connect), waiting at most `lock_wait` for a lock another session holds
    /// (SQLite `busy_timeout`, Postgres `lock_timeout`): preflight honours the plan's
    /// `timeouts.lock` rather than queueing behind a migration for long.
    pub async fn connect_within(
        trust: &Trust,
        access: Access,
        lock_wait: Option<Duration>,
    ) -> Result<TrustDb, DbError> {
        match &trust.database {
            DatabaseTarget::Sqlite { path } => {
                match std::fs::metadata(path) {
                    Ok(m) if m.is_file() => {}
                    Ok(m) => {
                        return Err(DbError::NotAFile {
                            trust: trust.id.clone(),
                            path: path.clone(),
                            what: if m.is_dir() {
                                "a directory"
                            } else {
                                "not a regular file"
                            },
                        })
                    }
                    Err(_) => {
                        return Err(DbError::MissingSqliteFile {
                            trust: trust.id.clone(),
                            path: path.clone(),
                        })
                    }
                }
                Self::connect_sqlite(&trust.id, path, access, false, lock_wait).await
            }
            DatabaseTarget::Postgres { .. } => {
                let mut options = pg_options(trust, access)?;
                let endpoint = endpoint_of(&options);
                if let Some(wait) = lock_wait {
                    let ms = wait.as_millis().clamp(1, i32::MAX as u128).to_string();
                    options = options.options([("lock_timeout", ms.as_str())]);
                }
                let conn = tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
                    .await
                    .map_err(|_| DbError::Unreachable {
                        trust: trust.id.clone(),
                        target: trust.database.redacted(),
                        message: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
                    })?
                    .map_err(|e| DbError::Unreachable {
                        trust: trust.id.clone(),
                        target: trust.database.redacted(),
                        message: e.to_string(),
                    })?;
                Ok(TrustDb {
                    trust: trust.id.clone(),
                    conn: Conn::Postgres(conn),
                    sqlite_path: None,
                    lock_file: None,
                    pg_locked: false,
                    endpoint: Some(endpoint),
                    reset: None,
                })
            }
        }
    }

    /// Create (or open) an SQLite file. Only `demo` does this, for the sample estate.
    pub async fn create_sqlite(trust: &str, path: &std::path::Path) -> Result<TrustDb, DbError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| DbError::Unreachable {
                trust: trust.to_string(),
                target: path.display().to_string(),
                message: format!("cannot create directory {}: {e}", dir.display()),
            })?;
        }
        Self::connect_sqlite(trust, path, Access::ReadWrite, true, None).await
    }

    async fn connect_sqlite(
        trust: &str,
        path: &std::path::Path,
        access: Access,
        create: bool,
        lock_wait: Option<Duration>,
    ) -> Result<TrustDb, DbError> {
        let busy = lock_wait.unwrap_or(Duration::from_secs(30));
        if access == Access::ReadOnly {
            recover_hot_journal(trust, path, busy).await?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(create)
            .read_only(access == Access::ReadOnly)
            .foreign_keys(true)
            .busy_timeout(busy)
            .disable_statement_logging();
        let conn = options.connect().await.map_err(|e| DbError::Unreachable {
            trust: trust.to_string(),
            target: format!("sqlite://{}", path.display()),
            message: e.to_string(),
        })?;
        Ok(TrustDb {
            trust: trust.to_string(),
            conn: Conn::Sqlite(conn),
            sqlite_path: Some(path.to_path_buf()),
            lock_file: None,
            pg_locked: false,
            endpoint: None,
            reset: None,
        })
    }

    /// How a migration's transaction begins. On SQLite `BEGIN IMMEDIATE` takes the write lock
    /// at once, waiting for it (`busy_timeout`) while clinicians' writes commit: a deferred
    /// transaction whose first statement reads cannot wait to upgrade its read lock later
    /// (SQLite answers "database is locked" at once rather than risk a deadlock), so a live
    /// application's writes could fail the migration half-way through.
    fn begin_sql(&self) -> &'static str {
        match self.conn {
            Conn::Sqlite(_) => "BEGIN IMMEDIATE",
            Conn::Postgres(_) => "BEGIN",
        }
    }

    /// The trust this connection belongs to.
    pub fn trust(&self) -> &str {
        &self.trust
    }

    /// Postgres: the server, port, database and user of this session (`db::reuse`'s key).
    pub(crate) fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// A read-only session kept from preflight (`db::reuse`) is about to migrate: its first
    /// message ([`prepare_to_migrate`](Self::prepare_to_migrate)) turns it read-write. The
    /// other settings a read-write session starts with are set by that message too (lock
    /// and statement timeouts).
    pub(crate) fn reuse_for_migration(&mut self) {
        if matches!(self.conn, Conn::Postgres(_)) {
            self.reset = Some("SET default_transaction_read_only = off; ");
        }
    }

    /// The SQL dialect.
    pub fn dialect(&self) -> Dialect {
        match self.conn {
            Conn::Sqlite(_) => Dialect::Sqlite,
            Conn::Postgres(_) => Dialect::Postgres,
        }
    }

    fn query_err(&self, context: &str) -> impl FnOnce(sqlx::Error) -> DbError {
        let trust = self.trust.clone();
        let context = context.to_string();
        move |source| DbError::Query {
            trust,
            context,
            source,
        }
    }

    /// Take the per-trust migration lock: a session advisory lock on Postgres, an exclusive
    /// `flock` on `<file>.flotilla-lock` for SQLite. Both are released if the process dies.
    pub async fn lock(&mut self) -> Result<(), DbError> {
        self.lock_with(None).await
    }

    /// [`lock`](Self::lock); on Postgres `first_message` (settings ending with the lock's
    /// `SELECT pg_try_advisory_lock`) is sent as the first attempt, in one round trip.
    async fn lock_with(&mut self, mut first_message: Option<String>) -> Result<(), DbError> {
        let trust = self.trust.clone();
        match &mut self.conn {
            Conn::Postgres(c) => {
                // A session of a run that was just killed keeps its lock until the server
                // notices the client is gone (about a second, see `set_timeouts`): wait a
                // little before concluding that another run holds it.
                let deadline = Instant::now() + LOCK_WAIT;
                let mut first = first_message.take();
                let got = loop {
                    let query_err = |source| DbError::Query {
                        trust: trust.clone(),
                        context: "taking the advisory lock".into(),
                        source,
                    };
                    let got: bool = match first.take() {
                        // Settings sent in the same message, before the lock's SELECT: its
                        // only row is the lock's answer.
                        Some(script) => {
                            use sqlx::Row;
                            let rows = sqlx::raw_sql(&script)
                                .fetch_all(&mut *c)
                                .await
                                .map_err(query_err)?;
                            match rows.last() {
                                Some(row) => row.try_get(0).map_err(query_err)?,
                                None => false,
                            }
                        }
                        None => sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                            .bind(sql::PG_LOCK_KEY)
                            .fetch_one(&mut *c)
                            .await
                            .map_err(query_err)?,
                    };
                    if got || Instant::now() >= deadline {
                        break got;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                };
                if !got {
                    return Err(DbError::Locked {
                        trust,
                        detail: format!(
                            "pg advisory lock {} is held by another session",
                            sql::PG_LOCK_KEY
                        ),
                    });
                }
                self.pg_locked = true;
                Ok(())
            }
            Conn::Sqlite(_) => {
                let path = self.sqlite_path.clone().unwrap_or_default();
                let lock_path = lock_path(&path);
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&lock_path)
                    .map_err(|e| DbError::Locked {
                        trust: trust.clone(),
                        detail: format!("cannot open {}: {e}", lock_path.display()),
                    })?;
                match file.try_lock() {
                    Ok(()) => {
                        self.lock_file = Some(file);
                        Ok(())
                    }
                    Err(std::fs::TryLockError::WouldBlock) => Err(DbError::Locked {
                        trust,
                        detail: format!("{} is held by another process", lock_path.display()),
                    }),
                    Err(std::fs::TryLockError::Error(e)) => Err(DbError::Locked {
                        trust,
                        detail: format!("cannot lock {}: {e}", lock_path.display()),
                    }),
                }
            }
        }
    }

    /// Release the lock and close the connection.
    pub async fn close(mut self) {
        if self.pg_locked {
            if let Conn::Postgres(c) = &mut self.conn {
                // A simple query: one round trip, where a prepared statement takes two.
                let _ = sqlx::raw_sql(&format!("SELECT pg_advisory_unlock({})", sql::PG_LOCK_KEY))
                    .execute(&mut *c)
                    .await;
            }
        }
        let _ = match self.conn {
            Conn::Sqlite(c) => c.close().await,
            Conn::Postgres(c) => c.close().await,
        };
        // The lock file is released after the connection is closed.
        drop(self.lock_file.take());
    }

    /// Apply the plan's timeouts to this session: how long a statement may wait for a lock
    /// (Postgres `lock_timeout`, SQLite `busy_timeout`) and how long one may run (Postgres
    /// `statement_timeout`; SQLite has none).
    pub async fn set_timeouts(
        &mut self,
        lock: Duration,
        statement: Option<Duration>,
    ) -> Result<(), DbError> {
        let err = self.query_err("setting the plan's timeouts");
        let script = self.timeouts_script(lock, statement);
        on_conn!(self, c => sqlx::raw_sql(&script).execute(&mut *c).await.map(|_| ()).map_err(err))
    }

    /// The statements that set the plan's timeouts on this session (see
    /// [`set_timeouts`](Self::set_timeouts)).
    fn timeouts_script(&self, lock: Duration, statement: Option<Duration>) -> String {
        let ms = |d: Duration| d.as_millis().min(i32::MAX as u128);
        match &self.conn {
            Conn::Postgres(c) => {
                // From PostgreSQL 14 the server checks every second that the client is still
                // there while a statement runs, so a killed or aborted run's migration stops
                // (and rolls back, releasing its locks) within a second, not when it ends.
                // The server reported its version when the session started: no round trip.
                let check = if c.server_version_num().unwrap_or(0) >= 140_000 {
                    "; SET client_connection_check_interval = 1000"
                } else {
                    ""
                };
                format!(
                    "SET lock_timeout = {}; SET statement_timeout = {}{check}",
                    ms(lock),
                    statement.map_or(0, ms)
                )
            }
            Conn::Sqlite(_) => format!("PRAGMA busy_timeout = {}", ms(lock)),
        }
    }

    /// Everything before a trust's migrations, in as few round trips as is safe: take the
    /// per-trust lock with the plan's timeouts set in the same message (Postgres; SQLite takes
    /// its lock file, then sets `busy_timeout` with the reads below), then, holding it, create
    /// the tracking table when missing and read the applied history in one message. Two round
    /// trips on Postgres instead of five; the history is read only once the lock is held.
    pub async fn prepare_to_migrate(
        &mut self,
        lock: Duration,
        statement: Option<Duration>,
    ) -> Result<Vec<AppliedMigration>, DbError> {
        let timeouts = self.timeouts_script(lock, statement);
        let read = match self.conn {
            Conn::Postgres(_) => {
                let reset = self.reset.take().unwrap_or("");
                self.lock_with(Some(format!(
                    "{reset}{timeouts}; SELECT pg_try_advisory_lock({})",
                    sql::PG_LOCK_KEY
                )))
                .await?;
                format!("{}; {}", sql::CREATE_TRACKING_TABLE, sql::SELECT_APPLIED)
            }
            Conn::Sqlite(_) => {
                self.lock().await?;
                format!(
                    "{timeouts}; {}; {}",
                    sql::CREATE_TRACKING_TABLE,
                    sql::SELECT_APPLIED
                )
            }
        };
        let err = self.query_err("reading the tracking table");
        let rows = on_conn!(self, c => {
            use sqlx::Row;
            sqlx::raw_sql(&read).fetch_all(&mut *c).await.and_then(|rows| {
                // Only the history's rows: SQLite's `PRAGMA busy_timeout` answers with one too.
                rows.iter()
                    .filter(|r| r.len() == 4)
                    .map(|r| {
                        Ok(AppliedMigration {
                            version: r.try_get(0)?,
                            description: r.try_get(1)?,
                            checksum: r.try_get(2)?,
                            dirty: r.try_get(3)?,
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()
            })
        })
        .map_err(err)?;
        Ok(rows)
    }

    /// Clear the dirty mark of `version` (an operator checked the migration completed).
    pub async fn mark_clean(&mut self, version: i64) -> Result<(), DbError> {
        let err = self.query_err("clearing the dirty mark");
        on_conn!(self, c => sqlx::query(concat!("UPDATE ", sql::tracking_table!(), " SET dirty = FALSE WHERE version = $1 AND dirty"))
            .bind(version).execute(&mut *c).await.map(|_| ()).map_err(err))
    }

    /// Forget `version` (an operator checked it did not take effect).
    pub async fn forget(&mut self, version: i64) -> Result<(), DbError> {
        let err = self.query_err("removing the tracking row");
        on_conn!(self, c => sqlx::query(sql::DELETE_APPLIED)
            .bind(version).execute(&mut *c).await.map(|_| ()).map_err(err))
    }

    /// Postgres: indexes of the current schema left invalid (a failed `CREATE INDEX
    /// CONCURRENTLY`). SQLite has none.
    pub async fn invalid_indexes(&mut self) -> Result<Vec<String>, DbError> {
        let err = self.query_err("listing invalid indexes");
        match &mut self.conn {
            Conn::Sqlite(_) => Ok(Vec::new()),
            Conn::Postgres(c) => sqlx::query_scalar(
                "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE NOT i.indisvalid AND n.nspname = current_schema()",
            )
            .fetch_all(&mut *c)
            .await
            .map_err(err),
        }
    }

    /// Drop an index (Postgres, concurrently, outside a transaction).
    pub async fn drop_index(&mut self, name: &str) -> Result<(), DbError> {
        let err = self.query_err("dropping an invalid index");
        let statement = format!(
            "DROP INDEX CONCURRENTLY IF EXISTS {}",
            sql::quote_ident(name)
        );
        on_conn!(self, c => sqlx::raw_sql(&statement).execute(&mut *c).await.map(|_| ()).map_err(err))
    }

    /// Run a no-transaction script one statement at a time (each commits by itself).
    async fn each_statement(&mut self, script: &str) -> Result<(), sqlx::Error> {
        let statements =
            crate::migrations::split::statements(script, self.dialect()).map_err(|e| {
                sqlx::Error::Configuration(
                    format!("cannot split the script into statements: {e}").into(),
                )
            })?;
        for statement in statements {
            on_conn!(self, c => sqlx::raw_sql(&statement).execute(&mut *c).await.map(|_| ()))?;
        }
        Ok(())
    }

    /// Create the tracking table if it is missing.
    pub async fn ensure_tracking_table(&mut self) -> Result<(), DbError> {
        let err = self.query_err("creating the tracking table");
        on_conn!(self, c => sqlx::raw_sql(sql::CREATE_TRACKING_TABLE).execute(&mut *c).await.map(|_| ()).map_err(err))
    }

    /// Whether the tracking table exists. Both reads here are sent as simple queries: one
    /// round trip each, where a prepared statement takes two (and the server plans it for a
    /// session that runs it once).
    async fn has_tracking_table(&mut self) -> Result<bool, DbError> {
        use sqlx::Row;
        let exists_sql = sql::tracking_table_exists(self.dialect());
        let err = self.query_err("reading the tracking table");
        let exists: i64 = on_conn!(self, c => sqlx::raw_sql(&exists_sql)
            .fetch_one(&mut *c)
            .await
            .and_then(|row| row.try_get(0)))
        .map_err(err)?;
        Ok(exists != 0)
    }

    /// The applied history, ascending. Empty when the tracking table does not exist.
    pub async fn applied(&mut self) -> Result<Vec<AppliedMigration>, DbError> {
        use sqlx::Row;
        // SQLite: read the table straight away, and take "no such table" for an empty
        // history: one statement instead of two for each of (say) 10,000 files, and SQLite
        // logs nothing. (On Postgres a missing table would be an ERROR in the server's log.)
        let sqlite = self.dialect() == Dialect::Sqlite;
        if !sqlite && !self.has_tracking_table().await? {
            return Ok(Vec::new());
        }
        let err = self.query_err("reading the tracking table");
        let read = on_conn!(self, c => sqlx::raw_sql(sql::SELECT_APPLIED)
        .fetch_all(&mut *c)
        .await
        .and_then(|rows| {
            rows.iter()
                .map(|r| {
                    Ok(AppliedMigration {
                        version: r.try_get(0)?,
                        description: r.try_get(1)?,
                        checksum: r.try_get(2)?,
                        dirty: r.try_get(3)?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
        }));
        match read {
            Err(sqlx::Error::Database(e))
                if sqlite
                    && e.message()
                        .starts_with(concat!("no such table: ", sql::tracking_table!())) =>
            {
                Ok(Vec::new())
            }
            read => read.map_err(err),
        }
    }

    /// Each applied migration's duration as its tracking row recorded it (ms), by version.
    /// Empty when the tracking table does not exist.
    pub async fn durations(&mut self) -> Result<std::collections::BTreeMap<i64, u64>, DbError> {
        if !self.has_tracking_table().await? {
            return Ok(Default::default());
        }
        let err = self.query_err("reading the tracking table");
        let rows: Vec<(i64, i64)> =
            on_conn!(self, c => sqlx::query_as(sql::SELECT_DURATIONS).fetch_all(&mut *c).await)
                .map_err(err)?;
        Ok(rows
            .into_iter()
            .map(|(v, ms)| (v, u64::try_from(ms).unwrap_or(0)))
            .collect())
    }

    /// Apply `m`'s up script with its tracking row. `resume_dirty` continues a batch migration
    /// whose dirty row is already recorded.
    pub async fn apply(&mut self, m: &Migration, resume_dirty: bool) -> Result<Duration, DbError> {
        let started = Instant::now();
        let failed = |trust: &str, source| DbError::MigrationFailed {
            trust: trust.to_string(),
            version: m.version,
            path: m.up.path.clone(),
            source,
        };
        let trust = self.trust.clone();
        let begin = self.begin_sql();
        match m.up.mode {
            Mode::Transaction if matches!(self.conn, Conn::Postgres(_)) => {
                self.apply_in_one_message(m)
                    .await
                    .map_err(|e| failed(&trust, e))?;
            }
            Mode::Transaction => {
                on_conn!(self, c => {
                    let mut tx = c.begin_with(begin).await.map_err(|e| failed(&trust, e))?;
                    sqlx::raw_sql(&m.up.sql).execute(&mut *tx).await.map_err(|e| failed(&trust, e))?;
                    sqlx::query(sql::INSERT_APPLIED)
                        .bind(m.version)
                        .bind(&m.description)
                        .bind(&m.checksum)
                        .bind(millis(started.elapsed()))
                        .bind(false)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| failed(&trust, e))?;
                    tx.commit().await.map_err(|e| failed(&trust, e))?;
                });
            }
            Mode::Batch => self.apply_batches(m, resume_dirty, started).await?,
            Mode::NoTransaction => {
                if !resume_dirty {
                    on_conn!(self, c => sqlx::query(sql::INSERT_APPLIED)
                        .bind(m.version)
                        .bind(&m.description)
                        .bind(&m.checksum)
                        .bind(0_i64)
                        .bind(true)
                        .execute(&mut *c)
                        .await
                        .map(|_| ()))
                    .map_err(|e| failed(&trust, e))?;
                }
                self.each_statement(&m.up.sql)
                    .await
                    .map_err(|e| failed(&trust, e))?;
                on_conn!(self, c => sqlx::query(sql::MARK_CLEAN)
                    .bind(m.version)
                    .bind(millis(started.elapsed()))
                    .execute(&mut *c)
                    .await
                    .map(|_| ()))
                .map_err(|e| failed(&trust, e))?;
            }
        }
        Ok(started.elapsed())
    }

    /// Postgres: a transactional migration and its tracking row in one round trip, one
    /// simple-query message `BEGIN; <up script>; INSERT <tracking row>; COMMIT;` (the protocol
    /// allows no fewer). The row's values are literals (quoted with [`sql::quote_e_literal`],
    /// whatever `standard_conforming_strings` says); its duration is the server's time from
    /// receiving the message to the INSERT (`statement_timestamp()` is the message's arrival
    /// for every statement in it). The script keeps its own line (a final `--` comment cannot
    /// swallow what follows). If a statement fails, the server skips the rest of the message
    /// and leaves the transaction open in the failed state: it is rolled back here, so the
    /// session is usable and nothing of the migration stays. `statement_timeout` applies to
    /// each statement (PostgreSQL 13 and later; before, to the whole message), as when the
    /// script was sent alone.
    async fn apply_in_one_message(&mut self, m: &Migration) -> Result<(), sqlx::Error> {
        let Conn::Postgres(c) = &mut self.conn else {
            unreachable!("apply_in_one_message is only called on Postgres")
        };
        let message = sql::one_message_apply(m);
        let result = sqlx::raw_sql(&message).execute(&mut *c).await;
        if result.is_err() {
            // Nothing to do if the connection is gone: the server rolls back by itself.
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *c).await;
        }
        result.map(|_| ())
    }

    /// Run `m`'s down script and forget its tracking row.
    pub async fn revert(&mut self, m: &Migration) -> Result<Duration, DbError> {
        let started = Instant::now();
        let trust = self.trust.clone();
        let failed = |trust: &str, source| DbError::MigrationFailed {
            trust: trust.to_string(),
            version: m.version,
            path: m.down.path.clone(),
            source,
        };
        let begin = self.begin_sql();
        match m.down.mode {
            Mode::Transaction => {
                on_conn!(self, c => {
                    let mut tx = c.begin_with(begin).await.map_err(|e| failed(&trust, e))?;
                    sqlx::raw_sql(&m.down.sql).execute(&mut *tx).await.map_err(|e| failed(&trust, e))?;
                    sqlx::query(sql::DELETE_APPLIED).bind(m.version).execute(&mut *tx).await.map_err(|e| failed(&trust, e))?;
                    tx.commit().await.map_err(|e| failed(&trust, e))?;
                });
            }
            Mode::NoTransaction | Mode::Batch => {
                on_conn!(self, c => sqlx::query(sql::MARK_DIRTY).bind(m.version).execute(&mut *c).await.map(|_| ()))
                    .map_err(|e| failed(&trust, e))?;
                if m.down.mode == Mode::Batch {
                    self.run_batches(m, &m.down).await?;
                } else {
                    self.each_statement(&m.down.sql)
                        .await
                        .map_err(|e| failed(&trust, e))?;
                }
                on_conn!(self, c => sqlx::query(sql::DELETE_APPLIED).bind(m.version).execute(&mut *c).await.map(|_| ()))
                    .map_err(|e| failed(&trust, e))?;
            }
        }
        Ok(started.elapsed())
    }

    /// A batch migration: its statement repeated, one transaction per pass, until a pass
    /// changes no rows. The dirty tracking row is written in the first pass's transaction (a
    /// crash before that commit leaves nothing: the migration is simply still pending, and an
    /// interrupted one is continued from its dirty row), and marked clean in the transaction of
    /// the pass that changed nothing: as many commits as passes, not two more.
    async fn apply_batches(
        &mut self,
        m: &Migration,
        resume_dirty: bool,
        started: Instant,
    ) -> Result<(), DbError> {
        let trust = self.trust.clone();
        let failed = |source| DbError::MigrationFailed {
            trust: trust.clone(),
            version: m.version,
            path: m.up.path.clone(),
            source,
        };
        let mut record = !resume_dirty;
        let begin = self.begin_sql();
        for _ in 0..MAX_BATCHES {
            let finished = on_conn!(self, c => {
                let mut tx = c.begin_with(begin).await.map_err(failed)?;
                if record {
                    sqlx::query(sql::INSERT_APPLIED)
                        .bind(m.version)
                        .bind(&m.description)
                        .bind(&m.checksum)
                        .bind(0_i64)
                        .bind(true)
                        .execute(&mut *tx)
                        .await
                        .map_err(failed)?;
                }
                let done = sqlx::raw_sql(&m.up.sql).execute(&mut *tx).await.map_err(failed)?;
                let finished = done.rows_affected() == 0;
                if finished {
                    sqlx::query(sql::MARK_CLEAN)
                        .bind(m.version)
                        .bind(millis(started.elapsed()))
                        .execute(&mut *tx)
                        .await
                        .map_err(failed)?;
                }
                tx.commit().await.map_err(failed)?;
                finished
            });
            record = false;
            if finished {
                return Ok(());
            }
        }
        Err(DbError::BatchDidNotConverge {
            trust: self.trust.clone(),
            version: m.version,
            path: m.up.path.clone(),
            batches: MAX_BATCHES,
        })
    }

    async fn run_batches(
        &mut self,
        m: &Migration,
        script: &crate::migrations::Script,
    ) -> Result<(), DbError> {
        let trust = self.trust.clone();
        let failed = |source| DbError::MigrationFailed {
            trust: trust.clone(),
            version: m.version,
            path: script.path.clone(),
            source,
        };
        let begin = self.begin_sql();
        for _ in 0..MAX_BATCHES {
            let changed = on_conn!(self, c => {
                let mut tx = c.begin_with(begin).await.map_err(failed)?;
                let done = sqlx::raw_sql(&script.sql).execute(&mut *tx).await.map_err(failed)?;
                tx.commit().await.map_err(failed)?;
                done.rows_affected()
            });
            if changed == 0 {
                return Ok(());
            }
        }
        Err(DbError::BatchDidNotConverge {
            trust: self.trust.clone(),
            version: m.version,
            path: script.path.clone(),
            batches: MAX_BATCHES,
        })
    }

    /// Run a script as-is (used to seed the demo estate).
    pub async fn execute_script(&mut self, script: &str, context: &str) -> Result<u64, DbError> {
        let err = self.query_err(context);
        on_conn!(self, c => sqlx::raw_sql(script).execute(&mut *c).await.map(|r| r.rows_affected()).map_err(err))
    }

    /// A single integer from a query (e.g. a row count).
    pub async fn query_i64(&mut self, query: &str, context: &str) -> Result<i64, DbError> {
        let err = self.query_err(context);
        on_conn!(self, c => sqlx::query_scalar::<_, i64>(query).fetch_one(&mut *c).await.map_err(err))
    }

    /// Run `query` (binding `param` as `$1` when given), fetch every row, and report how long
    /// that took and how many rows came back.
    pub async fn timed_query(
        &mut self,
        query: &str,
        param: Option<i64>,
        context: &str,
    ) -> Result<(Duration, usize), DbError> {
        let err = self.query_err(context);
        let started = Instant::now();
        let rows = on_conn!(self, c => {
            let q = sqlx::query(query);
            let q = match param { Some(p) => q.bind(p), None => q };
            q.fetch_all(&mut *c).await.map(|rows| rows.len())
        })
        .map_err(err)?;
        Ok((started.elapsed(), rows))
    }

    /// The first column of every row, as integers (probe parameters).
    pub async fn query_i64_column(
        &mut self,
        query: &str,
        context: &str,
    ) -> Result<Vec<i64>, DbError> {
        let err = self.query_err(context);
        on_conn!(self, c => sqlx::query_scalar::<_, i64>(query).fetch_all(&mut *c).await.map_err(err))
    }

    /// Every row of `query` as text columns (NULL as None): the input of integrity hashes.
    pub async fn text_rows(
        &mut self,
        query: &str,
        columns: usize,
        context: &str,
    ) -> Result<Vec<Vec<Option<String>>>, DbError> {
        use sqlx::Row;
        let err = self.query_err(context);
        on_conn!(self, c => {
            let rows = sqlx::query(query).fetch_all(&mut *c).await.map_err(err)?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let mut values = Vec::with_capacity(columns);
                for i in 0..columns {
                    let v: Option<String> = row.try_get(i).map_err(|source| DbError::Query {
                        trust: self.trust.clone(),
                        context: format!("{context}: column {i} is not text"),
                        source,
                    })?;
                    values.push(v);
                }
                out.push(values);
            }
            Ok(out)
        })
    }

    /// Execute a statement binding `$1` (integer) and `$2` (text); rows affected.
    pub async fn execute_with(
        &mut self,
        query: &str,
        id: i64,
        token: &str,
        context: &str,
    ) -> Result<u64, DbError> {
        let err = self.query_err(context);
        on_conn!(self, c => sqlx::query(query).bind(id).bind(token).execute(&mut *c).await.map(|r| r.rows_affected()).map_err(err))
    }

    /// Execute a statement binding `$1` (integer); rows affected.
    pub async fn execute_with_id(
        &mut self,
        query: &str,
        id: i64,
        context: &str,
    ) -> Result<u64, DbError> {
        let err = self.query_err(context);
        on_conn!(self, c => sqlx::query(query).bind(id).execute(&mut *c).await.map(|r| r.rows_affected()).map_err(err))
    }

    /// The single text value a query returns for `$1`, if any row comes back.
    pub async fn text_for(
        &mut self,
        query: &str,
        id: i64,
        context: &str,
    ) -> Result<Option<String>, DbError> {
        let err = self.query_err(context);
        on_conn!(self, c => sqlx::query_scalar::<_, Option<String>>(query).bind(id).fetch_optional(&mut *c).await.map(Option::flatten).map_err(err))
    }

    /// Compile a statement without running it: catches syntax errors and unknown tables or
    /// columns before anything runs.
    pub async fn prepare(&mut self, query: &str, context: &str) -> Result<(), DbError> {
        use sqlx::Executor;
        let err = self.query_err(context);
        on_conn!(self, c => (&mut *c).prepare(query).await.map(|_| ()).map_err(err))
    }

    /// A private in-memory SQLite database (schema checks at `validate`).
    pub async fn scratch() -> Result<TrustDb, DbError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(|e| DbError::Unreachable {
                trust: "schema-check".into(),
                target: "sqlite::memory:".into(),
                message: e.to_string(),
            })?
            .foreign_keys(true)
            .disable_statement_logging();
        let conn = options.connect().await.map_err(|e| DbError::Unreachable {
            trust: "schema-check".into(),
            target: "sqlite::memory:".into(),
            message: e.to_string(),
        })?;
        Ok(TrustDb {
            trust: "schema-check".into(),
            conn: Conn::Sqlite(conn),
            sqlite_path: None,
            lock_file: None,
            pg_locked: false,
            endpoint: None,
            reset: None,
        })
    }

    /// Names of the user tables in the database (excluding SQLite internals).
    pub async fn table_names(&mut self) -> Result<Vec<String>, DbError> {
        let query = match self.dialect() {
            Dialect::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
            Dialect::Postgres => "SELECT tablename::text FROM pg_catalog.pg_tables WHERE schemaname = current_schema() ORDER BY tablename",
        };
        let err = self.query_err("listing tables");
        on_conn!(self, c => sqlx::query_scalar::<_, String>(query).fetch_all(&mut *c).await.map_err(err))
    }
}

fn lock_path(db: &std::path::Path) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".flotilla-lock");
    db.with_file_name(name)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A process killed in the middle of an SQLite write transaction leaves a "hot" rollback
/// journal beside the file, and only a read-write connection may roll it back: a read-only one
/// fails ("attempt to write a readonly database"). When a journal is there, open the file
/// read-write once and read from it, which makes SQLite complete its own crash recovery (it
/// restores the last committed state; a journal of a live transaction in another process is
/// not hot and is left alone), then go on read-only.
async fn recover_hot_journal(
    trust: &str,
    path: &std::path::Path,
    busy: Duration,
) -> Result<(), DbError> {
    let mut journal = path.as_os_str().to_owned();
    journal.push("-journal");
    let hot = std::fs::metadata(&journal).is_ok_and(|m| m.len() > 0);
    if !hot {
        return Ok(());
    }
    let unreachable = |e: sqlx::Error| DbError::Unreachable {
        trust: trust.to_string(),
        target: format!("sqlite://{}", path.display()),
        message: format!("recovering after an interrupted write: {e}"),
    };
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .busy_timeout(busy)
        .disable_statement_logging()
        .connect()
        .await
        .map_err(unreachable)?;
    let read = sqlx::query("SELECT COUNT(*) FROM sqlite_master")
        .execute(&mut conn)
        .await
        .map_err(unreachable);
    let _ = conn.close().await;
    read.map(|_| ())
}

/// A Postgres trust's connection details, resolved from the inventory and the environment:
/// the URL text (it may hold a password only when it came from the environment) and the
/// password from `password_env`/`password_file`, if any.
pub(crate) struct PgTarget {
    pub(crate) url: String,
    pub(crate) password: Option<String>,
    /// Where the URL came from, for error messages (never the URL itself).
    pub(crate) url_from: String,
}

pub(crate) fn pg_target(trust: &Trust) -> Result<PgTarget, DbError> {
    let DatabaseTarget::Postgres { url, password } = &trust.database else {
        unreachable!("pg_target is only called for Postgres targets")
    };
    let (url_text, url_from) = match url {
        UrlSource::Inline(u) => (u.clone(), "trusts.yaml".to_string()),
        UrlSource::Env(var) => {
            let value = std::env::var(var).map_err(|_| DbError::MissingEnv {
                trust: trust.id.clone(),
                var: var.clone(),
                what: "url_env",
            })?;
            // A URL from the environment may carry a password: never shown, scrubbed from
            // anything printed, and refused without echo when it is not a usable URL.
            crate::secrets::register_url(&value);
            if let Some(problem) = crate::config::inventory::pg_url_problem(&value) {
                return Err(DbError::BadUrl {
                    trust: trust.id.clone(),
                    var: var.clone(),
                    message: format!("{problem} (the value is not shown)"),
                });
            }
            (value, var.clone())
        }
    };
    let password = match password {
        PasswordSource::None => None,
        PasswordSource::Env(var) => Some(std::env::var(var).map_err(|_| DbError::MissingEnv {
            trust: trust.id.clone(),
            var: var.clone(),
            what: "password_env",
        })?),
        PasswordSource::File(path) => Some(
            crate::files::read_regular(path, crate::files::PASSWORD_CAP)
                .map_err(|source| DbError::PasswordFile {
                    trust: trust.id.clone(),
                    path: path.clone(),
                    source,
                })?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
        ),
    };
    if let Some(pw) = &password {
        crate::secrets::register(pw);
    }
    Ok(PgTarget {
        url: url_text,
        password,
        url_from,
    })
}

/// A Postgres session's server, port, database and user (`db::reuse`'s key).
pub(crate) fn endpoint_of(o: &PgConnectOptions) -> String {
    format!(
        "{}:{}/{}@{}",
        o.get_host(),
        o.get_port(),
        o.get_database().unwrap_or(""),
        o.get_username()
    )
}

pub(crate) fn pg_options(trust: &Trust, access: Access) -> Result<PgConnectOptions, DbError> {
    let target = pg_target(trust)?;
    let mut options = PgConnectOptions::from_str(&target.url).map_err(|e| DbError::BadUrl {
        trust: trust.id.clone(),
        var: target.url_from.clone(),
        // sqlx's parse errors do not echo the URL, so no secret can leak through here.
        message: e.to_string(),
    })?;
    if let Some(pw) = &target.password {
        options = options.password(pw);
    }
    options = options
        .application_name("flotilla")
        .disable_statement_logging();
    options = match access {
        Access::ReadOnly => options.options([("default_transaction_read_only", "on")]),
        // A migration waiting for a table lock queues every clinician's query on that table
        // behind it: give up (the transaction rolls back) rather than wait.
        Access::ReadWrite => options.options([("lock_timeout", PG_LOCK_TIMEOUT)]),
    };
    Ok(options)
}
