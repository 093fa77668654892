//! The state database itself: SQLite (a file, the default) or PostgreSQL (a URL, for a team),
//! one schema, the same SQL on both.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::SqliteSynchronous;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::ConnectOptions;

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

/// A problem with the state database.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state database {location}: {message}")]
    Open { location: String, message: String },
    #[error("state database {location}: {source}")]
    Query {
        location: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("state database {location}: {message}")]
    Invalid { location: String, message: String },
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
    /// Parse `--state`.
    pub fn parse(s: &str) -> StateLocation {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            StateLocation::Postgres(s.to_string())
        } else if let Some(rest) = s.strip_prefix("sqlite://") {
            StateLocation::Sqlite(PathBuf::from(rest))
        } else {
            StateLocation::Sqlite(PathBuf::from(s))
        }
    }

    /// How to show it (never with a password).
    pub fn display(&self) -> String {
        match self {
            StateLocation::Sqlite(p) => p.display().to_string(),
            StateLocation::Postgres(u) => match url::Url::parse(u) {
                Ok(mut url) => {
                    let _ = url.set_password(None);
                    url.set_query(None);
                    url.to_string()
                }
                Err(_) => "postgres://(invalid URL)".into(),
            },
        }
    }
}

impl StateDb {
    /// Open (and for SQLite create) the state database and its schema.
    pub async fn open(location: &StateLocation) -> Result<StateDb, StateError> {
        let shown = location.display();
        let open_err = |message: String| StateError::Open {
            location: shown.clone(),
            message,
        };
        let pool = match location {
            StateLocation::Sqlite(path) => Pool::Sqlite(open_sqlite(path).await.map_err(open_err)?),
            StateLocation::Postgres(url) => {
                let parsed = url::Url::parse(url).map_err(|e| open_err(e.to_string()))?;
                if parsed.password().is_some() || parsed.query_pairs().any(|(k, _)| k == "password")
                {
                    return Err(open_err(format!(
                        "the URL holds a password; put it in {STATE_PASSWORD_ENV} instead"
                    )));
                }
                let mut options = PgConnectOptions::from_str(url)
                    .map_err(|e| open_err(e.to_string()))?
                    .disable_statement_logging();
                if let Ok(pw) = std::env::var(STATE_PASSWORD_ENV) {
                    options = options.password(&pw);
                }
                let pool = PgPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(Duration::from_secs(15))
                    .connect_with(options)
                    .await
                    .map_err(|e| open_err(e.to_string()))?;
                Pool::Postgres(pool)
            }
        };
        let db = StateDb {
            pool,
            location: shown,
        };
        for statement in SCHEMA {
            on_pool!(&db.pool, p => sqlx::query(statement).execute(p).await.map(|_| ()))
                .map_err(|e| db.err(e))?;
        }
        Ok(db)
    }

    /// Where it is, for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    pub(crate) fn err(&self, source: sqlx::Error) -> StateError {
        StateError::Query {
            location: self.location.clone(),
            source,
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

async fn open_sqlite(path: &Path) -> Result<SqlitePool, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // FULL: a recorded step survives a power cut, not only a killed process.
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(30))
        .disable_statement_logging();
    SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(60))
        .connect_with(options)
        .await
        .map_err(|e| e.to_string())
}
