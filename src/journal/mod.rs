//! The journal: flotilla's own state database (`--state`: an SQLite file, `.flotilla/state.db`
//! by default, or a Postgres URL for a team) holding every run, its waves, each step on each
//! trust with the versions before and after, every measurement and verdict, the event log and
//! the estate lease.
//!
//! It is write-ahead: the engine awaits [`Journal::record`] before it acts (a trust's planned
//! migrations are recorded before the first runs, a write probe before it inserts), so after a
//! crash the journal says what was in flight; the databases say what actually happened (each
//! migration commits with its row in the trust's tracking table), and `resume` reconciles the
//! two. Events read back typed ([`StoredEvent::event`]); [`replay`] turns a
//! run's events (and every run's gate history) into what resume, status and abandon need.

pub mod lease;
pub mod replay;
pub mod store;

use serde::Serialize;

pub use lease::{now, Holder, Lease, LeaseError};
pub use store::{StateDb, StateError, StateLocation, STATE_PASSWORD_ENV};

use crate::engine::{Event, TrustOutcome};
use store::on_pool;

/// Rows per multi-row INSERT of a journal batch: 100 rows bind at most 803 parameters, far
/// below SQLite's (32,766) and Postgres's (65,535) limits.
const ROWS_PER_INSERT: usize = 100;

/// `head` followed by `rows` tuples: `$1, $2, $3` (the columns every row shares) then `per_row`
/// parameters of the row's own, numbered on: `($1, $2, $3, $4, …), ($1, $2, $3, $8, …)`.
fn multi_row_insert(head: &str, rows: usize, per_row: usize) -> String {
    let mut sql = String::from(head);
    for r in 0..rows {
        sql.push_str(if r == 0 {
            "($1, $2, $3"
        } else {
            ", ($1, $2, $3"
        });
        for c in 0..per_row {
            sql.push_str(&format!(", ${}", 4 + r * per_row + c));
        }
        sql.push(')');
    }
    sql
}

/// An event row of a journal batch, written after the batch's other rows.
struct EventRow {
    seq: i64,
    name: String,
    trust: Option<String>,
    body: String,
}

/// A migration's step started in a journal batch; `end` (state, version after, detail) when its
/// end is in the same batch.
struct MigrateStep {
    seq: i64,
    trust: String,
    version: i64,
    before: Option<i64>,
    end: Option<(&'static str, Option<i64>, Option<String>)>,
}

/// Default location of the state database, relative to the working directory.
pub const DEFAULT_STATE: &str = ".flotilla/state.db";

/// A run as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    /// Its id.
    pub run_id: String,
    /// Plan name.
    pub plan: String,
    /// Plan file.
    pub plan_path: String,
    /// SHA-256 of the plan file when the run started.
    pub plan_sha256: String,
    /// SHA-256 over every migration's checksum when the run started.
    pub migrations_sha256: String,
    /// Target version.
    pub target_version: i64,
    /// user@host.
    pub started_by: String,
    /// Start (RFC 3339).
    pub started_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
    /// running, completed, halted, paused, failed, interrupted, rollback-failed,
    /// not-approved, blocked, lease-lost.
    pub status: String,
    /// How many times it was started (1 + resumes).
    pub attempts: i64,
    /// Exit code of the last attempt, when it ended.
    pub exit_code: Option<i64>,
    /// Why it stopped, when it did not complete.
    pub reason: Option<String>,
    /// `rollout` (resumable), or an operator action: `rollback`, `repair`.
    pub kind: String,
}

impl RunRecord {
    /// Whether resume may continue it: a rollout that did not complete, was not abandoned by
    /// an operator, and was not blocked before it began. (A run blocked on a later attempt,
    /// e.g. by a dirty trust found on resume, did things before: it is still unfinished.)
    pub fn resumable(&self) -> bool {
        self.kind == "rollout"
            && !matches!(self.status.as_str(), "completed" | "abandoned")
            && !(self.status == "blocked" && self.attempts <= 1)
    }

    /// The status to show and to act on: a run recorded as `running` whose lease is gone
    /// (expired, taken by another run, or its process dead on this host) is `crashed`, not
    /// running forever.
    pub fn effective_status(&self, lease: Option<&Holder>, now_ms: i64) -> String {
        if self.status != "running" {
            return self.status.clone();
        }
        let live = lease
            .is_some_and(|h| h.run_id == self.run_id && !h.expired(now_ms) && !h.holder_is_gone());
        if live {
            "running".into()
        } else {
            "crashed".into()
        }
    }
}

/// Who is deciding: `user@host` (the user from the process's uid).
pub fn operator() -> String {
    format!("{}@{}", lease::user_name(), lease::host_name())
}

/// An event as stored.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Sequence within the run.
    pub seq: i64,
    /// Which attempt wrote it.
    pub attempt: i64,
    /// When it was recorded (RFC 3339).
    pub at: String,
    /// The event as JSON (the same shape as `--events`).
    pub body: serde_json::Value,
    /// The event, typed (read once from `body`; [`Event::Unknown`] for a kind this version
    /// does not know).
    pub event: Event,
}

impl StoredEvent {
    /// An event as stored, typed from its JSON `body`.
    pub fn new(seq: i64, attempt: i64, at: impl Into<String>, body: serde_json::Value) -> Self {
        StoredEvent {
            seq,
            attempt,
            at: at.into(),
            event: Event::from_json(&body),
            body,
        }
    }
}

/// A step recorded as started and never finished (the process died, or was aborted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenStep {
    /// Sequence of the step's start event.
    pub seq: i64,
    /// Trust.
    pub trust: String,
    /// upgrade (a trust's planned migrations, from its `trust_started` intent to its
    /// outcome), migrate (one migration: journals before the intent carried them one by one),
    /// revert, write-probe, rollback.
    pub kind: String,
    /// Migration version (an upgrade: its last planned one), or the write probe's first
    /// (highest) record id.
    pub version: Option<i64>,
    /// The version before a migration; for a write probe, its last (lowest) record id.
    pub before: Option<i64>,
}

type RunRow = (
    String,
    String,
    String,
    String,
    String,
    i64,
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<String>,
    String,
);

const RUN_COLUMNS: &str = "run_id, plan, plan_path, plan_sha256, migrations_sha256, target_version, started_by, started_at, updated_at, status, attempts, exit_code, reason, kind";

fn run_from(r: RunRow) -> RunRecord {
    RunRecord {
        run_id: r.0,
        plan: r.1,
        plan_path: r.2,
        plan_sha256: r.3,
        migrations_sha256: r.4,
        target_version: r.5,
        started_by: r.6,
        started_at: r.7,
        updated_at: r.8,
        status: r.9,
        attempts: r.10,
        exit_code: r.11,
        reason: r.12,
        kind: r.13,
    }
}

impl StateDb {
    /// Every run, newest first.
    pub async fn runs(&self) -> Result<Vec<RunRecord>, StateError> {
        let q = format!(
            "SELECT {RUN_COLUMNS} FROM flotilla_runs ORDER BY started_at DESC, run_id DESC"
        );
        let rows: Vec<RunRow> = on_pool!(&self.pool, p => sqlx::query_as(&q).fetch_all(p).await)
            .map_err(|e| self.err(e))?;
        Ok(rows.into_iter().map(run_from).collect())
    }

    /// One run.
    pub async fn run(&self, run_id: &str) -> Result<Option<RunRecord>, StateError> {
        let q = format!("SELECT {RUN_COLUMNS} FROM flotilla_runs WHERE run_id = $1");
        let row: Option<RunRow> =
            on_pool!(&self.pool, p => sqlx::query_as(&q).bind(run_id).fetch_optional(p).await)
                .map_err(|e| self.err(e))?;
        Ok(row.map(run_from))
    }

    /// A run's events in order.
    pub async fn events(&self, run_id: &str) -> Result<Vec<StoredEvent>, StateError> {
        let rows: Vec<(i64, i64, String, String)> = on_pool!(&self.pool, p =>
            sqlx::query_as("SELECT seq, attempt, at, body FROM flotilla_events WHERE run_id = $1 ORDER BY seq")
                .bind(run_id).fetch_all(p).await)
        .map_err(|e| self.err(e))?;
        rows.into_iter()
            .map(|row| self.stored(run_id, row))
            .collect()
    }

    /// An event row (seq, attempt, at, body) of `run_id`, read back typed.
    fn stored(
        &self,
        run_id: &str,
        (seq, attempt, at, body): (i64, i64, String, String),
    ) -> Result<StoredEvent, StateError> {
        serde_json::from_str(&body)
            .map(|body| StoredEvent::new(seq, attempt, at, body))
            .map_err(|e| self.invalid(format!("run {run_id}, event {seq}: {e}")))
    }

    /// The event recorded at sequence `seq` of a run, if any.
    pub async fn event_at(
        &self,
        run_id: &str,
        seq: i64,
    ) -> Result<Option<StoredEvent>, StateError> {
        let row: Option<(i64, i64, String, String)> = on_pool!(&self.pool, p =>
            sqlx::query_as("SELECT seq, attempt, at, body FROM flotilla_events WHERE run_id = $1 AND seq = $2")
                .bind(run_id).bind(seq).fetch_optional(p).await)
        .map_err(|e| self.err(e))?;
        row.map(|row| self.stored(run_id, row)).transpose()
    }

    /// How many migrate steps a run recorded on `trust` after sequence `seq`.
    pub async fn migrate_steps_after(
        &self,
        run_id: &str,
        trust: &str,
        seq: i64,
    ) -> Result<i64, StateError> {
        on_pool!(&self.pool, p =>
            sqlx::query_scalar("SELECT COUNT(*) FROM flotilla_steps WHERE run_id = $1 AND trust = $2 AND kind = 'migrate' AND seq > $3")
                .bind(run_id).bind(trust).bind(seq).fetch_one(p).await)
        .map_err(|e| self.err(e))
    }

    /// Steps of a run recorded as started and never finished.
    pub async fn open_steps(&self, run_id: &str) -> Result<Vec<OpenStep>, StateError> {
        type Row = (i64, String, String, Option<i64>, Option<i64>);
        let rows: Vec<Row> = on_pool!(&self.pool, p =>
            sqlx::query_as("SELECT seq, trust, kind, version, before_version FROM flotilla_steps WHERE run_id = $1 AND state = 'started' ORDER BY seq")
                .bind(run_id).fetch_all(p).await)
        .map_err(|e| self.err(e))?;
        Ok(rows
            .into_iter()
            .map(|(seq, trust, kind, version, before)| OpenStep {
                seq,
                trust,
                kind,
                version,
                before,
            })
            .collect())
    }

    /// Close an open step with what the databases showed (`state`: done, failed,
    /// not-applied, cleaned, interrupted).
    pub async fn settle_step(
        &self,
        run_id: &str,
        seq: i64,
        state: &str,
        detail: &str,
        after_version: Option<i64>,
    ) -> Result<(), StateError> {
        on_pool!(&self.pool, p =>
            sqlx::query("UPDATE flotilla_steps SET state = $3, detail = $4, after_version = $5, finished_at = $6 WHERE run_id = $1 AND seq = $2")
                .bind(run_id).bind(seq).bind(state).bind(detail).bind(after_version).bind(now())
                .execute(p).await.map(|_| ()))
        .map_err(|e| self.err(e))
    }

    /// Every step of a run (for checks and reports): (trust, kind, version, before, after, state).
    #[allow(clippy::type_complexity)]
    pub async fn steps(
        &self,
        run_id: &str,
    ) -> Result<
        Vec<(
            String,
            String,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            String,
        )>,
        StateError,
    > {
        on_pool!(&self.pool, p =>
            sqlx::query_as("SELECT trust, kind, version, before_version, after_version, state FROM flotilla_steps WHERE run_id = $1 ORDER BY seq")
                .bind(run_id).fetch_all(p).await)
        .map_err(|e| self.err(e))
    }
}

/// One fact about a trust's gate, from any run (see [`StateDb::gate_history`]).
#[derive(Debug, Clone, PartialEq)]
pub struct GateRecord {
    /// The run that recorded it.
    pub run_id: String,
    /// Its sequence in that run.
    pub seq: i64,
    /// The trust.
    pub trust: String,
    /// What it says.
    pub fact: GateFact,
}

/// What a [`GateRecord`] says.
#[derive(Debug, Clone, PartialEq)]
pub enum GateFact {
    /// A baseline was measured before an upgrade (`baseline_recorded`, its JSON body).
    Baseline(serde_json::Value),
    /// A verdict (`window`: post-upgrade, soak, after-rollback, baseline; `verdict`: pass,
    /// fail, inconclusive, error).
    Verdict { window: String, verdict: String },
    /// A rollback finished and was verified, leaving the trust at `version`.
    RolledBack { version: Option<i64> },
}

impl StateDb {
    /// Every trust a run touched (any event naming a trust).
    pub async fn run_trusts(
        &self,
        run_id: &str,
    ) -> Result<std::collections::BTreeSet<String>, StateError> {
        let rows: Vec<String> = on_pool!(&self.pool, p =>
            sqlx::query_scalar("SELECT DISTINCT trust FROM flotilla_events WHERE run_id = $1 AND trust IS NOT NULL")
                .bind(run_id).fetch_all(p).await)
        .map_err(|e| self.err(e))?;
        Ok(rows.into_iter().collect())
    }

    /// Every run's baselines, verdicts and verified rollbacks, in the order they happened (by
    /// time, then run and sequence): what a new run needs to know about trusts whose last
    /// upgrade was never judged to pass. Verdicts come from `flotilla_measurements` (their
    /// figures are not read).
    pub async fn gate_history(&self) -> Result<Vec<GateRecord>, StateError> {
        let events: Vec<(String, i64, String, String, Option<String>, String)> = on_pool!(&self.pool, p =>
            sqlx::query_as("SELECT run_id, seq, at, event, trust, body FROM flotilla_events WHERE event IN ('baseline_recorded', 'rollback_finished')")
                .fetch_all(p).await)
        .map_err(|e| self.err(e))?;
        let verdicts: Vec<(String, i64, String, String, String, Option<String>)> = on_pool!(&self.pool, p =>
            sqlx::query_as("SELECT m.run_id, m.seq, e.at, m.trust, m.window_label, m.verdict FROM flotilla_measurements m JOIN flotilla_events e ON e.run_id = m.run_id AND e.seq = m.seq WHERE m.kind = 'verdict'")
                .fetch_all(p).await)
        .map_err(|e| self.err(e))?;
        let mut out: Vec<(i128, GateRecord)> = Vec::with_capacity(events.len() + verdicts.len());
        let when = |at: &str| {
            time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
                .map(|t| t.unix_timestamp_nanos())
                .unwrap_or(0)
        };
        for (run_id, seq, at, event, trust, body) in events {
            let Some(trust) = trust else { continue };
            let body: serde_json::Value = serde_json::from_str(&body)
                .map_err(|e| self.invalid(format!("run {run_id}, event {seq}: {e}")))?;
            let fact = if event == "baseline_recorded" {
                GateFact::Baseline(body)
            } else {
                GateFact::RolledBack {
                    version: match Event::from_json(&body) {
                        Event::RollbackFinished { version, .. } => version,
                        _ => None,
                    },
                }
            };
            out.push((
                when(&at),
                GateRecord {
                    run_id,
                    seq,
                    trust,
                    fact,
                },
            ));
        }
        for (run_id, seq, at, trust, window, verdict) in verdicts {
            out.push((
                when(&at),
                GateRecord {
                    run_id,
                    seq,
                    trust,
                    fact: GateFact::Verdict {
                        window,
                        verdict: verdict.unwrap_or_default(),
                    },
                },
            ));
        }
        out.sort_by(|(ta, a), (tb, b)| (ta, &a.run_id, a.seq).cmp(&(tb, &b.run_id, b.seq)));
        Ok(out.into_iter().map(|(_, r)| r).collect())
    }

    /// The last `event` about `trust` recorded by `run_id` before sequence `before`.
    pub async fn event_before(
        &self,
        run_id: &str,
        trust: &str,
        event: &str,
        before: i64,
    ) -> Result<Option<serde_json::Value>, StateError> {
        let body: Option<String> = on_pool!(&self.pool, p =>
            sqlx::query_scalar("SELECT body FROM flotilla_events WHERE run_id = $1 AND trust = $2 AND event = $3 AND seq < $4 ORDER BY seq DESC LIMIT 1")
                .bind(run_id).bind(trust).bind(event).bind(before).fetch_optional(p).await)
        .map_err(|e| self.err(e))?;
        body.map(|b| serde_json::from_str(&b))
            .transpose()
            .map_err(|e| self.invalid(format!("run {run_id}: {e}")))
    }
}

/// Records one run's events, write-ahead, with group commit: events recorded while another
/// write is in progress (trusts migrating concurrently) are written together, in one
/// transaction, by the next caller to get the writer's lock. Each caller still returns only once
/// its own event is durable, so write-ahead holds exactly as with one transaction per event;
/// what is saved is one commit (one fsync) per event.
pub struct Journal {
    db: StateDb,
    run_id: String,
    attempt: i64,
    /// The next sequence number; held by whoever is writing (the writer's lock).
    seq: tokio::sync::Mutex<i64>,
    /// Events waiting for the writer, in the order they were recorded.
    queue: std::sync::Mutex<Vec<Queued>>,
    /// Several processes write this run's events (a coordinator and its workers, on a
    /// Postgres state database): each batch takes the next sequence numbers from the table,
    /// under a transaction-scoped advisory lock on the run, so they stay unique and ordered
    /// across processes. `false`: this process alone writes them (the sequence in `seq`).
    shared: bool,
    /// The worker writing these events: every body carries `"worker": NAME`.
    worker: Option<String>,
}

/// An event waiting to be written, and who waits for it.
struct Queued {
    event: Event,
    done: tokio::sync::oneshot::Sender<Result<(), (String, crate::exit_codes::ExitCode)>>,
}

/// What a new run records about itself.
pub struct NewRun<'a> {
    /// `rollout`, `rollback` or `repair`: only a rollout can be resumed.
    pub kind: &'a str,
    /// Plan name.
    pub plan: &'a str,
    /// Plan file.
    pub plan_path: &'a std::path::Path,
    /// SHA-256 of the plan file.
    pub plan_sha256: &'a str,
    /// SHA-256 over the migrations' checksums.
    pub migrations_sha256: &'a str,
    /// Target version.
    pub target_version: i64,
}

/// A fresh run id: UTC time to the millisecond and the process id, sortable and unique.
pub fn new_run_id() -> String {
    let t = time::OffsetDateTime::now_utc();
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]");
    format!(
        "{}.{:03}-{}",
        t.format(&format).unwrap_or_default(),
        t.millisecond(),
        std::process::id()
    )
}

impl Journal {
    /// Record a new run (status `running`).
    pub async fn start(
        db: &StateDb,
        run_id: &str,
        run: &NewRun<'_>,
    ) -> Result<Journal, StateError> {
        let at = now();
        on_pool!(&db.pool, p =>
            sqlx::query(&format!("INSERT INTO flotilla_runs ({RUN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, 'running', 1, NULL, NULL, $9)"))
                .bind(run_id).bind(run.plan).bind(run.plan_path.display().to_string())
                .bind(run.plan_sha256).bind(run.migrations_sha256).bind(run.target_version)
                .bind(format!("{}@{}", lease::user_name(), lease::host_name())).bind(&at).bind(run.kind)
                .execute(p).await.map(|_| ()))
        .map_err(|e| db.err(e))?;
        Ok(Journal {
            db: db.clone(),
            run_id: run_id.to_string(),
            attempt: 1,
            seq: tokio::sync::Mutex::new(0),
            queue: std::sync::Mutex::new(Vec::new()),
            shared: false,
            worker: None,
        })
    }

    /// Continue recording an existing run (a resume): the attempt counter goes up.
    pub async fn reopen(db: &StateDb, run: &RunRecord) -> Result<Journal, StateError> {
        let next: Option<i64> = on_pool!(&db.pool, p =>
            sqlx::query_scalar("SELECT MAX(seq) FROM flotilla_events WHERE run_id = $1")
                .bind(&run.run_id).fetch_one(p).await)
        .map_err(|e| db.err(e))?;
        on_pool!(&db.pool, p =>
            sqlx::query("UPDATE flotilla_runs SET attempts = attempts + 1, status = 'running', exit_code = NULL, reason = NULL, updated_at = $2 WHERE run_id = $1")
                .bind(&run.run_id).bind(now()).execute(p).await.map(|_| ()))
        .map_err(|e| db.err(e))?;
        Ok(Journal {
            db: db.clone(),
            run_id: run.run_id.clone(),
            attempt: run.attempts + 1,
            seq: tokio::sync::Mutex::new(next.map_or(0, |n| n + 1)),
            queue: std::sync::Mutex::new(Vec::new()),
            shared: false,
            worker: None,
        })
    }

    /// Add records to a run that is not being run (an operator's decision about it, such as
    /// abandoning it): the attempt stays, the sequence continues.
    pub async fn append_to(db: &StateDb, run: &RunRecord) -> Result<Journal, StateError> {
        let next: Option<i64> = on_pool!(&db.pool, p =>
            sqlx::query_scalar("SELECT MAX(seq) FROM flotilla_events WHERE run_id = $1")
                .bind(&run.run_id).fetch_one(p).await)
        .map_err(|e| db.err(e))?;
        Ok(Journal {
            db: db.clone(),
            run_id: run.run_id.clone(),
            attempt: run.attempts,
            seq: tokio::sync::Mutex::new(next.map_or(0, |n| n + 1)),
            queue: std::sync::Mutex::new(Vec::new()),
            shared: false,
            worker: None,
        })
    }

    /// Record that an operator abandoned the run (its status was `was`): it can no longer be
    /// resumed, and no longer blocks a new rollout. `false` when its status changed meanwhile.
    pub async fn mark_abandoned(&self, was: &str, reason: &str) -> Result<bool, StateError> {
        let changed = on_pool!(&self.db.pool, p =>
            sqlx::query("UPDATE flotilla_runs SET status = 'abandoned', reason = $3, updated_at = $4 WHERE run_id = $1 AND status = $2")
                .bind(&self.run_id).bind(was).bind(reason).bind(now())
                .execute(p).await.map(|r| r.rows_affected()))
        .map_err(|e| self.db.err(e))?;
        Ok(changed == 1)
    }

    /// Share this run's event sequence with other processes when `with_workers` (a
    /// coordinator and its workers; Postgres only: an SQLite journal is never shared).
    pub fn shared(mut self, with_workers: bool) -> Journal {
        self.shared = with_workers && matches!(self.db.pool, store::Pool::Postgres(_));
        self
    }

    /// Record the events of worker `name` into attempt `attempt` of `run` (which a coordinator
    /// is running): the sequence is shared, and each body names the worker.
    pub fn for_worker(db: &StateDb, run_id: &str, attempt: i64, name: &str) -> Journal {
        Journal {
            db: db.clone(),
            run_id: run_id.to_string(),
            attempt,
            seq: tokio::sync::Mutex::new(0),
            queue: std::sync::Mutex::new(Vec::new()),
            shared: false,
            worker: Some(name.to_string()),
        }
        .shared(true)
    }

    /// This run's id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// This attempt (1 for the first start).
    pub fn attempt(&self) -> i64 {
        self.attempt
    }

    /// The state database.
    pub fn db(&self) -> &StateDb {
        &self.db
    }

    /// Record the run's end.
    pub async fn finish(
        &self,
        status: &str,
        exit_code: u8,
        reason: Option<&str>,
    ) -> Result<(), StateError> {
        on_pool!(&self.db.pool, p =>
            sqlx::query("UPDATE flotilla_runs SET status = $2, exit_code = $3, reason = $4, updated_at = $5 WHERE run_id = $1")
                .bind(&self.run_id).bind(status).bind(i64::from(exit_code)).bind(reason).bind(now())
                .execute(p).await.map(|_| ()))
        .map_err(|e| self.db.err(e))
    }

    /// Write one event, and the rows it implies (steps, waves, measurements); returns when it is
    /// durable.
    pub async fn record(&self, event: &Event) -> Result<(), StateError> {
        self.record_all(std::slice::from_ref(event)).await
    }

    /// Write several events, in order; returns when every one of them is durable. Events
    /// recorded by concurrent callers are batched into one transaction (group commit).
    pub async fn record_all(&self, events: &[Event]) -> Result<(), StateError> {
        let mut waiting = Vec::with_capacity(events.len());
        {
            let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            for event in events {
                let (done, rx) = tokio::sync::oneshot::channel();
                queue.push(Queued {
                    event: event.clone(),
                    done,
                });
                waiting.push(rx);
            }
        }
        let mut seq = self.seq.lock().await;
        // Whoever held the writer's lock before may have written these events already (it
        // answers before it lets go); otherwise they are still queued and this caller writes
        // them, with everything queued behind them.
        let batch: Vec<Queued> =
            std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()));
        if !batch.is_empty() {
            let written = self.write_batch(*seq, &batch).await;
            // Every waiting caller gets the error, classified (a full disk is the
            // environment's failure, not flotilla's).
            let answer = written.as_ref().map(|_| ()).map_err(|e| {
                (
                    store::describe_sqlx(e),
                    if store::is_environmental(e) {
                        crate::exit_codes::ExitCode::Environment
                    } else {
                        crate::exit_codes::ExitCode::Internal
                    },
                )
            });
            if written.is_ok() {
                *seq += i64::try_from(batch.len()).unwrap_or(i64::MAX);
            }
            for q in batch {
                let _ = q.done.send(answer.clone());
            }
        }
        drop(seq);
        for rx in waiting {
            match rx.await {
                Ok(Ok(())) => {}
                Ok(Err((message, code))) => return Err(self.db.failed(message, code)),
                Err(_) => return Err(self.db.invalid("the journal writer stopped")),
            }
        }
        Ok(())
    }

    /// One transaction: every event of the batch with the rows it implies, sequence numbers from
    /// `first`, and the run's `updated_at`.
    ///
    /// A trust's outcome carries all of its migrations' events (two per migration, each with a
    /// step row), so a batch can hold thousands of rows: the event rows, and the steps of
    /// migrations that started and ended within the batch, are written with multi-row
    /// INSERTs after the loop ([`ROWS_PER_INSERT`] at a time), not one statement per row;
    /// the rows are the same. Per-statement cost (a round trip to SQLite's connection thread)
    /// had made a 285-migration trust's outcome commit take tens of milliseconds, holding the
    /// trust's slot and delaying every other trust's intent behind it.
    async fn write_batch(&self, first: i64, batch: &[Queued]) -> Result<(), sqlx::Error> {
        let at = now();
        let run = &self.run_id;
        on_pool!(&self.db.pool, p => async {
            let mut tx = p.begin().await?;
            let first = if self.shared {
                // Held until this transaction commits: the next writer of the run, in any
                // process, numbers its events after these.
                sqlx::query("SELECT pg_advisory_xact_lock(7236011, hashtext($1))")
                    .bind(run).execute(&mut *tx).await?;
                let max: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM flotilla_events WHERE run_id = $1")
                    .bind(run).fetch_one(&mut *tx).await?;
                max.map_or(0, |m| m + 1)
            } else {
                first
            };
            let mut events: Vec<EventRow> = Vec::with_capacity(batch.len());
            let mut migrations: Vec<MigrateStep> = Vec::new();
            // Per trust, the versions whose migrate step an earlier batch left open: a step
            // end closes those too (as the UPDATE always did), read once when first needed.
            let mut open_before: std::collections::HashMap<String, Vec<i64>> = Default::default();
            for (n, q) in batch.iter().enumerate() {
                let seq = first + i64::try_from(n).unwrap_or(i64::MAX);
                let event = &q.event;
                let mut body = serde_json::to_value(event).unwrap_or_default();
                if let (Some(name), Some(fields)) = (&self.worker, body.as_object_mut()) {
                    fields.insert("worker".into(), serde_json::Value::String(name.clone()));
                }
                // No secret is recorded, even one a library put into an error text.
                crate::secrets::scrub_json(&mut body);
                let name = body
                    .get("event")
                    .and_then(|v| v.as_str())
                    .unwrap_or("unknown")
                    .to_string();
                let trust = body
                    .get("trust")
                    .and_then(|v| v.as_str())
                    .map(str::to_string);
                events.push(EventRow { seq, name, trust, body: body.to_string() });
                let step_start = |trust: &str, kind: &str, version: Option<i64>, before: Option<i64>, detail: Option<String>| {
                    sqlx::query("INSERT INTO flotilla_steps (run_id, seq, trust, kind, version, before_version, after_version, state, detail, started_at) VALUES ($1, $2, $3, $4, $5, $6, NULL, 'started', $7, $8)")
                        .bind(run.clone()).bind(seq).bind(trust.to_string()).bind(kind.to_string()).bind(version).bind(before).bind(detail).bind(at.clone())
                };
                let step_end = |trust: &str, kind: &str, version: Option<i64>, state: &str, after: Option<i64>, detail: Option<String>| {
                    sqlx::query("UPDATE flotilla_steps SET state = $5, after_version = $6, detail = COALESCE($7, detail), finished_at = $8 WHERE run_id = $1 AND trust = $2 AND kind = $3 AND state = 'started' AND (version = $4 OR $4 IS NULL)")
                        .bind(run.clone()).bind(trust.to_string()).bind(kind.to_string()).bind(version).bind(state.to_string()).bind(after).bind(detail).bind(at.clone())
                };
                let wave = |wave: &str, position: i64, status: &str| {
                    sqlx::query("INSERT INTO flotilla_waves (run_id, wave, position, status, updated_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (run_id, wave) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at")
                        .bind(run.clone()).bind(wave.to_string()).bind(position).bind(status.to_string()).bind(at.clone())
                };
                match event {
                    // A trust's intent: one step for its planned migrations, closed by its
                    // outcome (or by settling it from the tracking table after a crash).
                    Event::TrustStarted { trust, planned, .. } if !planned.is_empty() => {
                        step_start(trust, "upgrade", planned.last().copied(), None, None).execute(&mut *tx).await?;
                    }
                    Event::TrustRetrying { trust, error, .. } => {
                        step_end(trust, "upgrade", None, "interrupted", None, Some(format!("the connection failed, retried: {error}"))).execute(&mut *tx).await?;
                    }
                    Event::TrustFinished { trust, version, outcome, .. } => {
                        let (state, detail) = match outcome {
                            TrustOutcome::Upgraded { .. } | TrustOutcome::UpToDate => ("done", None),
                            TrustOutcome::Failed { error, .. } => ("failed", Some(error.clone())),
                            TrustOutcome::Interrupted { .. } => ("interrupted", None),
                            TrustOutcome::Skipped => ("not-applied", None),
                        };
                        step_end(trust, "upgrade", None, state, *version, detail).execute(&mut *tx).await?;
                    }
                    Event::MigrationStarted { trust, version, before, .. } => {
                        migrations.push(MigrateStep { seq, trust: trust.clone(), version: *version, before: *before, end: None });
                    }
                    Event::MigrationApplied { trust, version, .. } | Event::MigrationFailed { trust, version, .. } => {
                        let (state, after, detail) = match event {
                            Event::MigrationFailed { error, .. } => ("failed", None, Some(error.clone())),
                            _ => ("done", Some(*version), None),
                        };
                        let mut closed = false;
                        for m in migrations.iter_mut().filter(|m| m.end.is_none() && m.trust == *trust && m.version == *version) {
                            m.end = Some((state, after, detail.clone()));
                            closed = true;
                        }
                        let open = if closed {
                            if !open_before.contains_key(trust.as_str()) {
                                let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM flotilla_steps WHERE run_id = $1 AND trust = $2 AND state = 'started' AND kind = 'migrate' AND version IS NOT NULL")
                                    .bind(run).bind(trust).fetch_all(&mut *tx).await?;
                                open_before.insert(trust.clone(), versions);
                            }
                            let open = open_before.get_mut(trust.as_str()).expect("read above");
                            let was = open.len();
                            open.retain(|v| v != version);
                            open.len() != was
                        } else {
                            true
                        };
                        if open {
                            step_end(trust, "migrate", Some(*version), state, after, detail).execute(&mut *tx).await?;
                        }
                    }
                    Event::MigrationReverting { trust, version } => {
                        step_start(trust, "revert", Some(*version), Some(*version), None).execute(&mut *tx).await?;
                    }
                    Event::MigrationReverted { trust, version, now_at } => {
                        step_end(trust, "revert", Some(*version), "done", *now_at, None).execute(&mut *tx).await?;
                    }
                    Event::WriteProbeStarted { trust, id, count } => {
                        // The record ids run from `version` down to `before_version`.
                        let last = id.saturating_sub(i64::try_from(*count).unwrap_or(1).max(1) - 1);
                        step_start(trust, "write-probe", Some(*id), Some(last), None).execute(&mut *tx).await?;
                    }
                    Event::WriteProbeCleaned { trust, id } => {
                        step_end(trust, "write-probe", Some(*id), "done", None, None).execute(&mut *tx).await?;
                    }
                    Event::RollbackStarted { trust, to, .. } => {
                        step_start(trust, "rollback", None, None, Some(format!("to {to}"))).execute(&mut *tx).await?;
                    }
                    Event::RollbackFinished { trust, version, .. } => {
                        step_end(trust, "rollback", None, "done", *version, None).execute(&mut *tx).await?;
                    }
                    Event::RollbackFailed { trust, error } => {
                        step_end(trust, "rollback", None, "failed", None, Some(error.clone())).execute(&mut *tx).await?;
                    }
                    Event::WaveStarted { wave: w, index, .. } => {
                        wave(w, i64::try_from(*index).unwrap_or(0), "migrating").execute(&mut *tx).await?;
                    }
                    Event::WaveFinished { wave: w, .. } => {
                        wave(w, 0, "migrated").execute(&mut *tx).await?;
                    }
                    Event::WavePassed { wave: w } => {
                        wave(w, 0, "passed").execute(&mut *tx).await?;
                    }
                    Event::HealthMeasured { trust, window, .. } => {
                        sqlx::query("INSERT INTO flotilla_measurements (run_id, seq, trust, window_label, kind, verdict, body) VALUES ($1, $2, $3, $4, 'measurement', NULL, $5)")
                            .bind(run).bind(seq).bind(trust).bind(window).bind(body.to_string())
                            .execute(&mut *tx).await?;
                    }
                    Event::HealthVerdict { trust, window, verdict, .. } => {
                        let window = serde_json::to_value(window).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
                        sqlx::query("INSERT INTO flotilla_measurements (run_id, seq, trust, window_label, kind, verdict, body) VALUES ($1, $2, $3, $4, 'verdict', $5, $6)")
                            .bind(run).bind(seq).bind(trust).bind(window).bind(verdict.label()).bind(body.to_string())
                            .execute(&mut *tx).await?;
                    }
                    _ => {}
                }
            }
            for chunk in events.chunks(ROWS_PER_INSERT) {
                let sql = multi_row_insert("INSERT INTO flotilla_events (run_id, attempt, at, seq, event, trust, body) VALUES ", chunk.len(), 4);
                let mut q = sqlx::query(&sql).bind(run).bind(self.attempt).bind(&at);
                for e in chunk {
                    q = q.bind(e.seq).bind(&e.name).bind(&e.trust).bind(&e.body);
                }
                q.execute(&mut *tx).await?;
            }
            for chunk in migrations.chunks(ROWS_PER_INSERT) {
                let sql = multi_row_insert("INSERT INTO flotilla_steps (run_id, kind, started_at, seq, trust, version, before_version, after_version, state, detail, finished_at) VALUES ", chunk.len(), 8);
                let mut q = sqlx::query(&sql).bind(run).bind("migrate").bind(&at);
                for m in chunk {
                    let (state, after, detail, finished) = match &m.end {
                        Some((state, after, detail)) => (*state, *after, detail.clone(), Some(at.clone())),
                        None => ("started", None, None, None),
                    };
                    q = q.bind(m.seq).bind(&m.trust).bind(m.version).bind(m.before).bind(after).bind(state).bind(detail).bind(finished);
                }
                q.execute(&mut *tx).await?;
            }
            sqlx::query("UPDATE flotilla_runs SET updated_at = $2 WHERE run_id = $1")
                .bind(run).bind(&at).execute(&mut *tx).await?;
            tx.commit().await
        }.await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: &str, attempts: i64, kind: &str) -> RunRecord {
        RunRecord {
            run_id: "r1".into(),
            plan: "p".into(),
            plan_path: "p.yaml".into(),
            plan_sha256: String::new(),
            migrations_sha256: String::new(),
            target_version: 1,
            started_by: "u@h".into(),
            started_at: now(),
            updated_at: now(),
            status: status.into(),
            attempts,
            exit_code: None,
            reason: None,
            kind: kind.into(),
        }
    }

    #[test]
    fn unfinished_runs_are_resumable_until_completed_abandoned_or_blocked_before_they_began() {
        for status in [
            "halted",
            "paused",
            "failed",
            "rollback-failed",
            "interrupted",
            "running",
        ] {
            assert!(record(status, 1, "rollout").resumable(), "{status}");
        }
        assert!(!record("completed", 2, "rollout").resumable());
        assert!(!record("abandoned", 1, "rollout").resumable());
        assert!(!record("blocked", 1, "rollout").resumable(), "nothing ran");
        assert!(
            record("blocked", 2, "rollout").resumable(),
            "blocked on resume: the first attempt did things"
        );
        assert!(!record("failed", 1, "rollback").resumable());
    }

    #[test]
    fn a_running_run_without_its_live_lease_is_crashed() {
        let r = record("running", 1, "rollout");
        let t = lease::now_ms();
        let holder = |run: &str, expires_ms: i64| Holder {
            run_id: run.into(),
            user: "u".into(),
            host: lease::host_name(),
            pid: i64::from(std::process::id()),
            since: now(),
            heartbeat_ms: t,
            expires_ms,
        };
        assert_eq!(
            r.effective_status(Some(&holder("r1", t + 10_000)), t),
            "running"
        );
        assert_eq!(r.effective_status(None, t), "crashed");
        assert_eq!(r.effective_status(Some(&holder("r1", t - 1)), t), "crashed");
        assert_eq!(
            r.effective_status(Some(&holder("r2", t + 10_000)), t),
            "crashed"
        );
        let gone = Holder {
            pid: i64::from(u32::MAX),
            ..holder("r1", t + 10_000)
        };
        assert_eq!(r.effective_status(Some(&gone), t), "crashed");
        assert_eq!(
            record("halted", 1, "rollout").effective_status(None, t),
            "halted"
        );
    }

    /// A new SQLite state database in `dir`, and a rollout run towards `target_version`.
    async fn fresh_state(
        dir: &tempfile::TempDir,
        target_version: i64,
    ) -> (StateDb, NewRun<'static>) {
        let db = StateDb::open(&StateLocation::Sqlite(dir.path().join("state.db")))
            .await
            .unwrap();
        let run = NewRun {
            kind: "rollout",
            plan: "p",
            plan_path: std::path::Path::new("p.yaml"),
            plan_sha256: "x",
            migrations_sha256: "y",
            target_version,
        };
        (db, run)
    }

    fn applied(trust: &str, version: i64) -> Event {
        Event::MigrationApplied {
            trust: trust.into(),
            version,
            duration_ms: 1,
        }
    }

    #[tokio::test]
    async fn a_trusts_intent_is_one_open_step_until_its_outcome_or_a_retry_closes_it() {
        let dir = tempfile::tempdir().unwrap();
        let (db, run) = fresh_state(&dir, 20).await;
        let journal = Journal::start(&db, "run-1", &run).await.unwrap();
        let started = |trust: &str, planned: Vec<i64>| Event::TrustStarted {
            wave: "w".into(),
            trust: trust.into(),
            from: "1.0".into(),
            to: "2.0".into(),
            migrations: planned.len(),
            planned,
        };
        let migration = |trust: &str, version: i64| {
            [
                Event::MigrationStarted {
                    trust: trust.into(),
                    version,
                    description: String::new(),
                    before: None,
                },
                applied(trust, version),
            ]
        };
        let finished = |trust: &str, outcome: TrustOutcome| Event::TrustFinished {
            wave: "w".into(),
            trust: trust.into(),
            version: Some(20),
            release: "2.0".into(),
            outcome,
            duration_ms: 1,
            worker: None,
        };
        journal.record(&started("a", vec![10, 20])).await.unwrap();
        journal.record(&started("b", vec![10])).await.unwrap();
        // Nothing planned (an old journal's shape): no step.
        journal.record(&started("c", vec![])).await.unwrap();
        let open: Vec<(String, String, Option<i64>)> = db
            .open_steps("run-1")
            .await
            .unwrap()
            .into_iter()
            .map(|s| (s.trust, s.kind, s.version))
            .collect();
        assert_eq!(
            open,
            vec![
                ("a".into(), "upgrade".into(), Some(20)),
                ("b".into(), "upgrade".into(), Some(10)),
            ]
        );
        // The outcome closes the intent, with the migrations' events in the same commit.
        let mut outcome: Vec<Event> = migration("a", 10).into_iter().collect();
        outcome.extend(migration("a", 20));
        outcome.push(finished("a", TrustOutcome::Upgraded { migrations: 2 }));
        journal.record_all(&outcome).await.unwrap();
        // A retry closes the attempt's intent; the next attempt records its own.
        journal
            .record(&Event::TrustRetrying {
                trust: "b".into(),
                attempt: 1,
                of: 4,
                after_ms: 500,
                error: "connection reset".into(),
            })
            .await
            .unwrap();
        journal.record(&started("b", vec![10])).await.unwrap();
        let open = db.open_steps("run-1").await.unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(
            (open[0].trust.as_str(), open[0].kind.as_str()),
            ("b", "upgrade")
        );
        let steps: Vec<(String, String, Option<i64>, String)> = db
            .steps("run-1")
            .await
            .unwrap()
            .into_iter()
            .map(|(t, k, v, _, _, s)| (t, k, v, s))
            .collect();
        let s = |t: &str, k: &str, v: i64, state: &str| (t.into(), k.into(), Some(v), state.into());
        assert_eq!(
            steps,
            vec![
                s("a", "upgrade", 20, "done"),
                s("b", "upgrade", 10, "interrupted"),
                s("a", "migrate", 10, "done"),
                s("a", "migrate", 20, "done"),
                s("b", "upgrade", 10, "started"),
            ]
        );
        assert_eq!(db.migrate_steps_after("run-1", "a", 0).await.unwrap(), 2);
        assert_eq!(db.migrate_steps_after("run-1", "b", 0).await.unwrap(), 0);
        let intent = db.event_at("run-1", 0).await.unwrap().unwrap();
        assert_eq!(intent.event, started("a", vec![10, 20]));
        assert!(db.event_at("run-1", 99).await.unwrap().is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_records_are_all_durable_in_order_with_consecutive_sequence_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let (db, run) = fresh_state(&dir, 1).await;
        let journal = std::sync::Arc::new(Journal::start(&db, "run-1", &run).await.unwrap());
        let mut tasks = Vec::new();
        for t in 0..16 {
            let journal = journal.clone();
            tasks.push(tokio::spawn(async move {
                let trust = format!("t{t}");
                for v in 0..5 {
                    journal.record(&applied(&trust, v)).await.unwrap();
                }
                // Several at once: one transaction, kept in order.
                journal
                    .record_all(&[applied(&trust, 100), applied(&trust, 101)])
                    .await
                    .unwrap();
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let events = db.events("run-1").await.unwrap();
        assert_eq!(events.len(), 16 * 7);
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (0..16 * 7).collect::<Vec<i64>>());
        for t in 0..16 {
            let trust = format!("t{t}");
            let versions: Vec<i64> = events
                .iter()
                .filter(|e| e.body["trust"] == trust.as_str())
                .map(|e| e.body["version"].as_i64().unwrap())
                .collect();
            // Each caller's events appear in the order it recorded them.
            assert_eq!(versions, vec![0, 1, 2, 3, 4, 100, 101], "trust {trust}");
        }
        // The next record continues the sequence.
        journal.record(&applied("t0", 200)).await.unwrap();
        let last = db.events("run-1").await.unwrap().pop().unwrap();
        assert_eq!(last.seq, 16 * 7);
    }
}
