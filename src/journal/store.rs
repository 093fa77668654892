//! The state database itself: SQLite (a file, the default) or PostgreSQL (a URL, for a team),
//! one schema, the same SQL on both.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::SqliteSynchronous;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::ConnectOptions;

use crate::exit_codes::ExitCode;

/// Environment variable holding the password of a Postgres state database (never in the URL).
pub const STATE_PASSWORD_ENV: &str = "FLOTILLA_STATE_PASSWORD";

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS flotilla_runs (
        run_id TEXT PRIMARY KEY,
        plan TEXT NOT NULL,
        plan_path TEXT NOT NULL,
        plan_sha256 TEXT NOT NULL,
        migrations_sha256 TEXT NOT NULL,
        target_version BIGINT NOT NULL,
        started_by TEXT NOT NULL,
        started_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts BIGINT NOT NULL,
        exit_code BIGINT,
        reason TEXT,
        kind TEXT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS flotilla_events (
        run_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        attempt BIGINT NOT NULL,
        at TEXT NOT NULL,
        event TEXT NOT NULL,
        trust TEXT,
        body TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    )",
    "CREATE INDEX IF NOT EXISTS flotilla_events_trust_idx ON flotilla_events (trust, run_id)",
    // Finding every run's baselines and verdicts (a new run checks what was never judged).
    "CREATE INDEX IF NOT EXISTS flotilla_events_event_idx ON flotilla_events (event)",
    "CREATE TABLE IF NOT EXISTS flotilla_waves (
        run_id TEXT NOT NULL,
        wave TEXT NOT NULL,
        position BIGINT NOT NULL,
        status TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (run_id, wave)
    )",
    "CREATE TABLE IF NOT EXISTS flotilla_steps (
        run_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        trust TEXT NOT NULL,
        kind TEXT NOT NULL,
        version BIGINT,
        before_version BIGINT,
        after_version BIGINT,
        state TEXT NOT NULL,
        detail TEXT,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        PRIMARY KEY (run_id, seq)
    )",
    "CREATE INDEX IF NOT EXISTS flotilla_steps_open_idx ON flotilla_steps (run_id, trust, state)",
    "CREATE TABLE IF NOT EXISTS flotilla_measurements (
        run_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        trust TEXT NOT NULL,
        window_label TEXT NOT NULL,
        kind TEXT NOT NULL,
        verdict TEXT,
        body TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    )",
    // What `demo --traffic` clinicians experienced during a run (src/traffic/store.rs).
    "CREATE TABLE IF NOT EXISTS flotilla_traffic (
        run_id TEXT PRIMARY KEY,
        recorded_at TEXT NOT NULL,
        body TEXT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS flotilla_lease (
        estate TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        token TEXT NOT NULL,
        holder_user TEXT NOT NULL,
        host TEXT NOT NULL,
        pid BIGINT NOT NULL,
        since TEXT NOT NULL,
        heartbeat_ms BIGINT NOT NULL,
        expires_ms BIGINT NOT NULL
    )",
];

/// The tables of workers and their jobs (`flotilla worker`, `rollout --workers`; see
/// `crate::workers`): created with the rest of the schema on PostgreSQL only, since workers
/// need a state database they all share.
const POSTGRES_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS flotilla_workers (
        name TEXT PRIMARY KEY,
        labels TEXT NOT NULL,
        host TEXT NOT NULL,
        pid BIGINT NOT NULL,
        concurrency BIGINT NOT NULL,
        started_at TEXT NOT NULL,
        heartbeat_ms BIGINT NOT NULL,
        expires_ms BIGINT NOT NULL,
        stopped_at TEXT
    )",
    "CREATE TABLE IF NOT EXISTS flotilla_jobs (
        job_id BIGSERIAL PRIMARY KEY,
        run_id TEXT NOT NULL,
        attempt BIGINT NOT NULL,
        wave TEXT NOT NULL,
        trust TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        needs TEXT NOT NULL,
        state TEXT NOT NULL,
        worker TEXT,
        tries BIGINT NOT NULL DEFAULT 0,
        claimed_until_ms BIGINT,
        result TEXT,
        created_at TEXT NOT NULL,
        finished_at TEXT
    )",
    // Claims look for the oldest queued job; waiting and reclaiming by run and state.
    "CREATE INDEX IF NOT EXISTS flotilla_jobs_queued_idx ON flotilla_jobs (job_id) WHERE state = 'queued'",
    "CREATE INDEX IF NOT EXISTS flotilla_jobs_run_idx ON flotilla_jobs (run_id, state)",
    "CREATE INDEX IF NOT EXISTS flotilla_jobs_claimed_idx ON flotilla_jobs (worker) WHERE state = 'claimed'",
];

/// A problem with the state database.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state database {location}: {message}")]
    Open {
        location: String,
        message: String,
        /// The documented exit code: a location that cannot be used is the user's
        /// configuration (2); storage that fails is the environment (9).
        code: ExitCode,
    },
    #[error("state database {location}: {}", describe_sqlx(.source))]
    Query {
        location: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("state database {location}: {message}")]
    Invalid { location: String, message: String },
    /// A write that failed for every event waiting on it (group commit), classified.
    #[error("state database {location}: {message}")]
    Write {
        location: String,
        message: String,
        code: ExitCode,
    },
}

impl StateError {
    /// Whether SQLite refused because another connection held its lock (SQLITE_BUSY or
    /// SQLITE_LOCKED): worth trying again shortly.
    fn is_busy(&self) -> bool {
        match self {
            StateError::Query {
                source: sqlx::Error::Database(d),
                ..
            } => d
                .code()
                .and_then(|c| c.parse::<i64>().ok())
                .is_some_and(|n| matches!(n & 0xff, 5 | 6)),
            // Opening keeps only the description (see `open_sqlite`).
            StateError::Open { message, .. } => {
                message.contains("database is locked") || message.contains("table is locked")
            }
            _ => false,
        }
    }
}

impl StateError {
    /// The documented exit code for this error: a full disk, a read-only file system, an I/O
    /// error or a state server that went away is the environment (9), never "a bug" (1).
    pub fn exit_code(&self) -> ExitCode {
        match self {
            StateError::Open { code, .. } | StateError::Write { code, .. } => *code,
            StateError::Query { source, .. } if is_environmental(source) => ExitCode::Environment,
            StateError::Query { .. } | StateError::Invalid { .. } => ExitCode::Internal,
        }
    }
}

/// Whether a database error comes from the storage or the server's resources rather than from
/// flotilla's SQL: SQLite FULL, IOERR, READONLY, CANTOPEN, PERM, NOLFS, BUSY/LOCKED (another
/// process holds the file too long); Postgres classes 08 (connection), 53 (insufficient
/// resources: disk full, out of memory), 57P (shutdown), 58 (I/O) and read-only transactions
/// (a standby).
pub(crate) fn is_environmental(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => {
            let Some(code) = d.code() else { return false };
            if let Ok(n) = code.parse::<i64>() {
                // SQLite: the primary result code is the low byte of the extended one.
                matches!(n & 0xff, 3 | 5 | 6 | 8 | 10 | 13 | 14 | 22)
            } else {
                code.starts_with("08")
                    || code.starts_with("53")
                    || code.starts_with("57P")
                    || code.starts_with("58")
                    || code.as_ref() == "25006"
            }
        }
        _ => false,
    }
}

/// sqlx's text, with what SQLite's terse codes mean for an operator.
pub(crate) fn describe_sqlx(e: &sqlx::Error) -> String {
    let text = crate::secrets::scrub(&e.to_string()).into_owned();
    if let sqlx::Error::Database(d) = e {
        if let Some(n) = d.code().and_then(|c| c.parse::<i64>().ok()) {
            let hint = match n & 0xff {
                13 => Some("the disk holding it is full: free space, then `flotilla resume`"),
                8 => Some("it is read-only (a read-only mount or file?)"),
                10 => Some("the storage reported an I/O error"),
                14 => Some("the file or its directory cannot be opened"),
                _ => None,
            };
            if let Some(h) = hint {
                return format!("{text} ({h})");
            }
        }
    }
    text
}

#[derive(Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Run the same code against whichever pool this is.
macro_rules! on_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            $crate::journal::store::Pool::Sqlite($p) => $body,
            $crate::journal::store::Pool::Postgres($p) => $body,
        }
    };
}
pub(crate) use on_pool;

/// An open state database.
#[derive(Clone)]
pub struct StateDb {
    pub(crate) pool: Pool,
    location: String,
    /// The directory of an SQLite state file (to say when it is on a read-only file system).
    sqlite_dir: Option<PathBuf>,
}

/// Where the state database is: a file path, `sqlite://PATH`, or `postgres://…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateLocation {
    /// An SQLite file (created with its directory when missing: it is flotilla's own).
    Sqlite(PathBuf),
    /// A Postgres database (must exist; its password comes from `FLOTILLA_STATE_PASSWORD`).
    Postgres(String),
}

impl StateLocation {
    /// Parse `--state`: `sqlite://PATH`, `postgres://...` (or `postgresql://`), or a file path
    /// without `=` and without another `scheme://`. Anything else is refused, and the refusal
    /// never repeats the value: a mistyped connection string may hold a password, and taking
    /// it as a file name would create files named after it and bypass the team's lease.
    pub fn parse(s: &str) -> Result<StateLocation, String> {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            if let Some(problem) = crate::config::inventory::pg_url_problem(s) {
                return Err(format!("--state: {problem} (the value is not shown)"));
            }
            return Ok(StateLocation::Postgres(s.to_string()));
        }
        if let Some(rest) = s.strip_prefix("sqlite://") {
            if rest.is_empty() || rest.contains('?') || rest.contains('=') {
                return Err("--state: sqlite://PATH takes a file path without options (the value is not shown)".into());
            }
            return Ok(StateLocation::Sqlite(PathBuf::from(rest)));
        }
        if s.trim().is_empty() {
            return Err("--state is empty: give a file path, sqlite://PATH or postgres://USER@HOST/DATABASE".into());
        }
        if crate::secrets::is_conninfo(s) || s.contains('=') {
            return Err("--state looks like a key/value connection string (it contains '='), which is not supported and is not taken as a file name; give postgres://USER@HOST:PORT/DATABASE (password in FLOTILLA_STATE_PASSWORD), sqlite://PATH or a file path (the value is not shown: it may hold a password)".into());
        }
        if s.contains("://") {
            return Err("--state: unsupported scheme; give postgres://USER@HOST:PORT/DATABASE, sqlite://PATH or a file path (the value is not shown)".into());
        }
        Ok(StateLocation::Sqlite(PathBuf::from(s)))
    }

    /// How to show it (never with a password).
    pub fn display(&self) -> String {
        match self {
            StateLocation::Sqlite(p) => p.display().to_string(),
            StateLocation::Postgres(u) => crate::secrets::redact_url(u),
        }
    }
}

impl StateDb {
    /// Open (and for SQLite create) the state database and its schema.
    ///
    /// Two processes creating the same SQLite file at once (two rollouts started together) can
    /// meet SQLite's lock while one switches the new file to WAL, which SQLite reports at once
    /// as "database is locked" instead of waiting: opening is retried then, for up to about
    /// ten seconds, so the second process gets to the lease and its "estate is locked".
    pub async fn open(location: &StateLocation) -> Result<StateDb, StateError> {
        let mut pause = Duration::from_millis(50);
        let mut waited = Duration::ZERO;
        loop {
            match Self::open_once(location).await {
                Err(e) if e.is_busy() && waited < Duration::from_secs(10) => {
                    tracing::debug!(error = %e, "state database busy while opening; retrying");
                    tokio::time::sleep(pause).await;
                    waited += pause;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                other => return other,
            }
        }
    }

    async fn open_once(location: &StateLocation) -> Result<StateDb, StateError> {
        let db = Self::connect(location, Access::ReadWrite).await?;
        if let Pool::Postgres(p) = &db.pool {
            // Several processes may open a shared state database at once (a coordinator and
            // its workers): `CREATE TABLE IF NOT EXISTS` is not safe against itself on
            // PostgreSQL, so the schema is created under an advisory lock, in one transaction.
            let created: Result<(), sqlx::Error> = async {
                let mut tx = p.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(7236011, 0)")
                    .execute(&mut *tx)
                    .await?;
                for statement in SCHEMA.iter().chain(POSTGRES_SCHEMA) {
                    sqlx::query(statement).execute(&mut *tx).await?;
                }
                tx.commit().await
            }
            .await;
            if let Err(e) = created {
                let e = db.err(e);
                db.close().await;
                return Err(e);
            }
            return Ok(db);
        }
        for statement in SCHEMA {
            if let Err(e) =
                on_pool!(&db.pool, p => sqlx::query(statement).execute(p).await.map(|_| ()))
            {
                let e = db.err(e);
                db.close().await;
                return Err(e);
            }
        }
        Ok(db)
    }

    /// Open an existing state database to read it, changing nothing: no file, directory or
    /// schema is created (`status` and `report` never write). `None` when there is nothing
    /// recorded yet: no file, an empty file, or no flotilla tables. An SQLite file on a
    /// read-only mount is read as immutable when it cannot be opened otherwise.
    pub async fn open_read_only(location: &StateLocation) -> Result<Option<StateDb>, StateError> {
        if let StateLocation::Sqlite(path) = location {
            match std::fs::metadata(path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Ok(m) if m.is_file() && m.len() == 0 => return Ok(None),
                _ => {}
            }
        }
        let db = Self::connect(location, Access::ReadOnly).await?;
        let exists: Result<i64, sqlx::Error> = on_pool!(&db.pool, p => {
            let q = match &db.pool {
                Pool::Sqlite(_) => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'flotilla_runs'",
                Pool::Postgres(_) => "SELECT COUNT(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename = 'flotilla_runs'",
            };
            sqlx::query_scalar(q).fetch_one(p).await
        });
        match exists {
            Ok(0) => {
                db.close().await;
                Ok(None)
            }
            Ok(_) => Ok(Some(db)),
            Err(e) => {
                let e = db.err(e);
                db.close().await;
                Err(e)
            }
        }
    }

    async fn connect(location: &StateLocation, access: Access) -> Result<StateDb, StateError> {
        let shown = location.display();
        let open_err = |message: String, code: ExitCode| StateError::Open {
            location: shown.clone(),
            message,
            code,
        };
        let pool = match location {
            StateLocation::Sqlite(path) => Pool::Sqlite(
                open_sqlite(path, access)
                    .await
                    .map_err(|(m, code)| open_err(m, code))?,
            ),
            StateLocation::Postgres(url) => {
                let parsed = url::Url::parse(url)
                    .map_err(|e| open_err(format!("not a valid URL ({e})"), ExitCode::Config))?;
                if parsed.password().is_some()
                    || parsed
                        .query_pairs()
                        .any(|(k, _)| k.eq_ignore_ascii_case("password"))
                {
                    return Err(open_err(
                        format!("the URL holds a password; put it in {STATE_PASSWORD_ENV} instead"),
                        ExitCode::Config,
                    ));
                }
                let mut options = PgConnectOptions::from_str(url)
                    .map_err(|e| {
                        open_err(
                            crate::secrets::scrub(&e.to_string()).into_owned(),
                            ExitCode::Config,
                        )
                    })?
                    .disable_statement_logging();
                if let Ok(pw) = std::env::var(STATE_PASSWORD_ENV) {
                    crate::secrets::register(&pw);
                    options = options.password(&pw);
                }
                if access == Access::ReadOnly {
                    options = options.options([("default_transaction_read_only", "on")]);
                }
                // A coordinator of workers polls the queue, queues jobs and journals at once,
                // its journal writes waiting on the run's advisory lock: room for all three.
                let pool = PgPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(15))
                    .connect_with(options)
                    .await
                    .map_err(|e| {
                        open_err(
                            crate::secrets::scrub(&e.to_string()).into_owned(),
                            ExitCode::Environment,
                        )
                    })?;
                Pool::Postgres(pool)
            }
        };
        let sqlite_dir = match location {
            StateLocation::Sqlite(path) => Some(
                path.parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new("."))
                    .to_path_buf(),
            ),
            StateLocation::Postgres(_) => None,
        };
        Ok(StateDb {
            pool,
            location: shown,
            sqlite_dir,
        })
    }

    /// Where it is, for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    pub(crate) fn err(&self, source: sqlx::Error) -> StateError {
        if let Some(dir) = self
            .sqlite_dir
            .as_ref()
            .filter(|d| is_environmental(&source) && on_read_only_file_system(d))
        {
            return StateError::Write {
                location: self.location.clone(),
                message: format!(
                    "{}; {} is on a read-only file system, so runs cannot be recorded there",
                    describe_sqlx(&source),
                    dir.display()
                ),
                code: ExitCode::Environment,
            };
        }
        StateError::Query {
            location: self.location.clone(),
            source,
        }
    }

    pub(crate) fn failed(&self, message: String, code: ExitCode) -> StateError {
        StateError::Write {
            location: self.location.clone(),
            message,
            code,
        }
    }

    pub(crate) fn invalid(&self, message: impl Into<String>) -> StateError {
        StateError::Invalid {
            location: self.location.clone(),
            message: message.into(),
        }
    }

    /// Close the pool.
    pub async fn close(&self) {
        on_pool!(&self.pool, p => p.close().await);
    }
}

/// Whether the state database is opened to record or only to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    ReadWrite,
    ReadOnly,
}

async fn open_sqlite(path: &Path, access: Access) -> Result<SqlitePool, (String, ExitCode)> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => {
            return Err((
                "is a directory, not a state database file".into(),
                ExitCode::Config,
            ))
        }
        Ok(m) if !m.is_file() => {
            return Err((
                "is not a regular file (a state database is an SQLite file)".into(),
                ExitCode::Config,
            ))
        }
        _ => {}
    }
    if access == Access::ReadWrite {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                (
                    format!("cannot create its directory {}: {e}", dir.display()),
                    ExitCode::Environment,
                )
            })?;
        }
    }
    let options = |immutable: bool| {
        let o = SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(Duration::from_secs(30))
            .disable_statement_logging();
        match access {
            Access::ReadWrite => o
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: a recorded step survives a power cut, not only a killed process.
                .synchronous(SqliteSynchronous::Full),
            // Reading changes nothing: no journal-mode switch, no file created.
            Access::ReadOnly => o.read_only(true).immutable(immutable),
        }
    };
    let connect = |immutable: bool| {
        SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(options(immutable))
    };
    let failed = |e: sqlx::Error| {
        let code = if is_environmental(&e) {
            ExitCode::Environment
        } else {
            ExitCode::Internal
        };
        let mut message = describe_sqlx(&e);
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if access == Access::ReadWrite && on_read_only_file_system(dir) {
            message.push_str(&format!(
                "; {} is on a read-only file system, so runs cannot be recorded there",
                dir.display()
            ));
        }
        (message, code)
    };
    match connect(false).await {
        Ok(pool) if access == Access::ReadWrite => Ok(pool),
        Ok(pool) => {
            // A WAL database needs its -shm file, which a read-only mount cannot hold: read
            // the file as immutable then (nothing can be writing to it there anyway).
            match sqlx::query("SELECT COUNT(*) FROM sqlite_master")
                .execute(&pool)
                .await
            {
                Ok(_) => Ok(pool),
                Err(e) if is_environmental(&e) => {
                    pool.close().await;
                    connect(true).await.map_err(failed)
                }
                Err(e) => Err(failed(e)),
            }
        }
        Err(e) if access == Access::ReadOnly && is_environmental(&e) => {
            connect(true).await.map_err(failed)
        }
        Err(e) => Err(failed(e)),
    }
}

/// Whether `dir` is on a file system mounted read-only.
fn on_read_only_file_system(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a NUL-terminated path and `stat` a plain struct statvfs fills in.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut stat) };
    rc == 0 && (stat.f_flag & libc::ST_RDONLY) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_locations_are_files_sqlite_or_postgres_urls_and_nothing_else() {
        assert_eq!(
            StateLocation::parse("x/state.db").unwrap(),
            StateLocation::Sqlite("x/state.db".into())
        );
        assert_eq!(
            StateLocation::parse("sqlite://x/state.db").unwrap(),
            StateLocation::Sqlite("x/state.db".into())
        );
        assert!(matches!(
            StateLocation::parse("postgres://u@h/db").unwrap(),
            StateLocation::Postgres(_)
        ));
        for bad in [
            "host=db user=rio password=hunter2 dbname=state",
            "dbname=state password=hunter2",
            "mysql://u:hunter2@h/db",
            "sqlite://x.db?mode=rwc&password=hunter2",
            "postgres://u@h/db?pasword=hunter2",
            "",
        ] {
            let err = StateLocation::parse(bad).unwrap_err();
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[tokio::test]
    async fn reading_an_empty_state_file_writes_nothing_into_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        std::fs::write(&path, b"").unwrap();
        let db = StateDb::open_read_only(&StateLocation::Sqlite(path.clone()))
            .await
            .unwrap();
        assert!(db.is_none());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        let none = StateDb::open_read_only(&StateLocation::Sqlite(dir.path().join("no.db")))
            .await
            .unwrap();
        assert!(none.is_none());
        assert!(!dir.path().join("no.db").exists());
    }
}
