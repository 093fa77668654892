//! The journal: flotilla's own state database (SQLite, `.flotilla/state.db` by default) holding
//! every run and every event of it — each measurement, verdict, migration and rollback — so a
//! halt can be explained and a gate replayed later. It is written from the event stream, like
//! any other reporter.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::mpsc;

use crate::engine::{Event, EventSink};

/// Default location of the state database, relative to the working directory.
pub const DEFAULT_STATE: &str = ".flotilla/state.db";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    plan TEXT NOT NULL,
    plan_path TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    outcome TEXT,
    exit_code INTEGER
);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL REFERENCES runs (run_id),
    seq INTEGER NOT NULL,
    at TEXT NOT NULL,
    event TEXT NOT NULL,
    trust TEXT,
    body TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE INDEX IF NOT EXISTS events_trust_idx ON events (trust, run_id);
";

/// A problem with the state database.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("state database {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("state database {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: sqlx::Error,
    },
}

/// Writes a run's events to the state database as they happen.
pub struct Journal {
    run_id: String,
    seq: AtomicU64,
    tx: Mutex<Option<mpsc::UnboundedSender<(u64, Event)>>>,
    writer: Mutex<Option<tokio::task::JoinHandle<Result<(), JournalError>>>>,
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn trust_of(event: &Event) -> Option<&str> {
    match event {
        Event::TrustBlocked { trust, .. }
        | Event::TrustStarted { trust, .. }
        | Event::MigrationStarted { trust, .. }
        | Event::MigrationApplied { trust, .. }
        | Event::MigrationFailed { trust, .. }
        | Event::TrustFinished { trust, .. }
        | Event::HealthMeasured { trust, .. }
        | Event::HealthVerdict { trust, .. }
        | Event::RollbackStarted { trust, .. }
        | Event::RollbackFinished { trust, .. }
        | Event::RollbackFailed { trust, .. } => Some(trust),
        _ => None,
    }
}

fn event_name(body: &serde_json::Value) -> String {
    body.get("event")
        .and_then(|v| v.as_str())
        .unwrap_or("unknown")
        .to_string()
}

impl Journal {
    /// Open (creating if needed: it is flotilla's own database, never a trust's) the state
    /// database at `path` and record the start of a run.
    pub async fn start(path: &Path, plan: &str, plan_path: &Path) -> Result<Journal, JournalError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| JournalError::Open {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        }
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| JournalError::Open {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(30))
            .disable_statement_logging();
        let write_err = |source| JournalError::Write {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = options.connect().await.map_err(write_err)?;
        sqlx::raw_sql(SCHEMA)
            .execute(&mut conn)
            .await
            .map_err(write_err)?;
        let run_id = format!(
            "{}-{}",
            time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000,
            std::process::id()
        );
        sqlx::query(
            "INSERT INTO runs (run_id, plan, plan_path, started_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&run_id)
        .bind(plan)
        .bind(plan_path.display().to_string())
        .bind(now())
        .execute(&mut conn)
        .await
        .map_err(write_err)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write_events(conn, path.to_path_buf(), run_id.clone(), rx));
        Ok(Journal {
            run_id,
            seq: AtomicU64::new(0),
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
        })
    }

    /// This run's id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Wait until every event emitted so far is written.
    pub async fn finish(&self) -> Result<(), JournalError> {
        drop(self.tx.lock().ok().and_then(|mut t| t.take()));
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        match writer {
            Some(handle) => handle.await.unwrap_or_else(|e| {
                Err(JournalError::Open {
                    path: PathBuf::from("state database"),
                    message: format!("the journal writer stopped: {e}"),
                })
            }),
            None => Ok(()),
        }
    }
}

async fn write_events(
    mut conn: SqliteConnection,
    path: PathBuf,
    run_id: String,
    mut rx: mpsc::UnboundedReceiver<(u64, Event)>,
) -> Result<(), JournalError> {
    let write_err = |source| JournalError::Write {
        path: path.clone(),
        source,
    };
    while let Some(first) = rx.recv().await {
        // Batch whatever else is already queued into one transaction.
        let mut batch = vec![first];
        while let Ok(next) = rx.try_recv() {
            batch.push(next);
        }
        let mut tx = conn.begin().await.map_err(write_err)?;
        for (seq, event) in &batch {
            let body = serde_json::to_value(event).unwrap_or_default();
            sqlx::query("INSERT INTO events (run_id, seq, at, event, trust, body) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(&run_id)
                .bind(i64::try_from(*seq).unwrap_or(i64::MAX))
                .bind(now())
                .bind(event_name(&body))
                .bind(trust_of(event))
                .bind(body.to_string())
                .execute(&mut *tx)
                .await
                .map_err(write_err)?;
            if let Event::RunFinished {
                outcome, exit_code, ..
            } = event
            {
                sqlx::query("UPDATE runs SET finished_at = $2, outcome = $3, exit_code = $4 WHERE run_id = $1")
                    .bind(&run_id)
                    .bind(now())
                    .bind(outcome)
                    .bind(i64::from(*exit_code))
                    .execute(&mut *tx)
                    .await
                    .map_err(write_err)?;
            }
        }
        tx.commit().await.map_err(write_err)?;
    }
    conn.close().await.map_err(write_err)?;
    Ok(())
}

impl EventSink for Journal {
    fn emit(&self, event: &Event) {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst);
        if let Ok(tx) = self.tx.lock() {
            if let Some(tx) = tx.as_ref() {
                if tx.send((seq, event.clone())).is_err() {
                    tracing::warn!("the journal writer stopped; event {seq} was not recorded");
                }
            }
        }
    }
}
