//! The job queue and the worker registry: `flotilla_jobs` and `flotilla_workers` in the shared
//! PostgreSQL state database (their DDL is with the rest of the schema, `journal::store`).
//!
//! A job is `queued` when the coordinator inserts it, `claimed` by one worker (one statement:
//! `UPDATE … WHERE job_id IN (SELECT … FOR UPDATE SKIP LOCKED LIMIT n)`, so two workers never
//! claim one job and never wait for each other), then `done` or `failed` with its result, or
//! `cancelled` while still queued. A claim lasts until `claimed_until_ms`, which the worker's
//! heartbeat pushes on; a claim that expired (its worker died) goes back to `queued` with
//! `tries + 1` ([`Queue::reclaim_expired`], run by coordinators and workers alike). A worker
//! claims only jobs whose `needs` (the trust's `runner` labels, a JSON object) its own labels
//! contain (`labels @> needs`).

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::postgres::PgPool;

use crate::engine::jobs::Job;
use crate::journal::store::Pool;
use crate::journal::{now, StateDb, StateError};

/// What workers need: a state database they all share.
pub const NEEDS_POSTGRES: &str =
    "workers need a shared PostgreSQL state database: pass --state postgres://...";

/// The queue in a state database (PostgreSQL only).
#[derive(Clone)]
pub struct Queue {
    db: StateDb,
    pool: PgPool,
}

/// What a worker needs to know of a job's run before it runs the job: its plan file and the
/// checksums its checkout must match (the run may not be recorded yet: preflight's surveys
/// come before).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunRef {
    pub plan_path: String,
    pub plan_sha256: String,
    pub migrations_sha256: String,
}

/// A job's payload: its run and itself.
#[derive(serde::Serialize, serde::Deserialize)]
struct Payload {
    run: RunRef,
    job: Job,
}

/// A job a worker claimed.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub job_id: i64,
    pub run_id: String,
    pub attempt: i64,
    pub trust: String,
    /// The job and its run as the coordinator wrote them (`Err`: the payload does not read).
    pub job: Result<(RunRef, Job), String>,
    /// How many times an earlier claim of it expired.
    pub tries: i64,
}

/// A job that ended (done, failed or cancelled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub job_id: i64,
    pub state: String,
    pub result: Option<String>,
    pub worker: Option<String>,
}

/// A worker as registered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WorkerRow {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub host: String,
    pub pid: i64,
    pub concurrency: i64,
    pub started_at: String,
    pub heartbeat_ms: i64,
    pub expires_ms: i64,
    pub stopped_at: Option<String>,
    /// Jobs it holds claimed now.
    pub jobs_in_flight: i64,
}

impl WorkerRow {
    /// `live` (heartbeating), `stopped` (exited cleanly) or `gone` (stopped heartbeating).
    pub fn state(&self, now_ms: i64) -> &'static str {
        if self.stopped_at.is_some() {
            "stopped"
        } else if self.expires_ms > now_ms {
            "live"
        } else {
            "gone"
        }
    }

    /// `w1 {site=dc1}`.
    pub fn describe(&self) -> String {
        format!("{} {}", self.name, describe_labels(&self.labels))
    }
}

/// `{site=dc1, zone=a}` (`{}` without labels).
pub fn describe_labels(labels: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", inner.join(", "))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn labels_json(labels: &BTreeMap<String, String>) -> String {
    serde_json::to_string(labels).unwrap_or_else(|_| "{}".into())
}

type WorkerTuple = (
    String,
    String,
    String,
    i64,
    i64,
    String,
    i64,
    i64,
    Option<String>,
    i64,
);

impl Queue {
    /// The queue of `db`; refused (with [`NEEDS_POSTGRES`]) on SQLite.
    pub fn of(db: &StateDb) -> Result<Queue, String> {
        match &db.pool {
            Pool::Postgres(pool) => Ok(Queue {
                db: db.clone(),
                pool: pool.clone(),
            }),
            Pool::Sqlite(_) => Err(NEEDS_POSTGRES.to_string()),
        }
    }

    /// The state database.
    pub fn db(&self) -> &StateDb {
        &self.db
    }

    fn err(&self, e: sqlx::Error) -> StateError {
        self.db.err(e)
    }

    /// Register worker `name` (alive for `ttl`). `false` when a live worker already has that
    /// name; a stopped or gone one's row is taken over.
    pub async fn register(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
        concurrency: usize,
        ttl: Duration,
    ) -> Result<bool, StateError> {
        let now_ms = crate::journal::lease::now_ms();
        let done = sqlx::query(
            "INSERT INTO flotilla_workers (name, labels, host, pid, concurrency, started_at, heartbeat_ms, expires_ms, stopped_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL) \
             ON CONFLICT (name) DO UPDATE SET labels = excluded.labels, host = excluded.host, pid = excluded.pid, \
             concurrency = excluded.concurrency, started_at = excluded.started_at, heartbeat_ms = excluded.heartbeat_ms, \
             expires_ms = excluded.expires_ms, stopped_at = NULL \
             WHERE flotilla_workers.stopped_at IS NOT NULL OR flotilla_workers.expires_ms <= $7",
        )
        .bind(name)
        .bind(labels_json(labels))
        .bind(crate::journal::lease::host_name())
        .bind(i64::from(std::process::id()))
        .bind(i64::try_from(concurrency).unwrap_or(i64::MAX))
        .bind(now())
        .bind(now_ms)
        .bind(now_ms + ms(ttl))
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(done.rows_affected() == 1)
    }

    /// A worker's heartbeat: it and every job it holds stay alive for `ttl` more. `false`
    /// when its row was taken over (another worker registered the name after it expired).
    pub async fn heartbeat(&self, name: &str, ttl: Duration) -> Result<bool, StateError> {
        let now_ms = crate::journal::lease::now_ms();
        let until = now_ms + ms(ttl);
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        let mine = sqlx::query(
            "UPDATE flotilla_workers SET heartbeat_ms = $2, expires_ms = $3 WHERE name = $1 AND pid = $4 AND host = $5 AND stopped_at IS NULL",
        )
        .bind(name)
        .bind(now_ms)
        .bind(until)
        .bind(i64::from(std::process::id()))
        .bind(crate::journal::lease::host_name())
        .execute(&mut *tx)
        .await
        .map_err(|e| self.err(e))?
        .rows_affected()
            == 1;
        sqlx::query("UPDATE flotilla_jobs SET claimed_until_ms = $2 WHERE worker = $1 AND state = 'claimed'")
            .bind(name)
            .bind(until)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(mine)
    }

    /// A worker exits cleanly.
    pub async fn stopped(&self, name: &str) -> Result<(), StateError> {
        sqlx::query("UPDATE flotilla_workers SET stopped_at = $2 WHERE name = $1 AND pid = $3 AND host = $4")
            .bind(name)
            .bind(now())
            .bind(i64::from(std::process::id()))
            .bind(crate::journal::lease::host_name())
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Queue `job` of attempt `attempt` of run `run_id` for a worker whose labels contain
    /// `needs`. Returns its id.
    pub async fn enqueue(
        &self,
        run_id: &str,
        attempt: i64,
        run: &RunRef,
        job: &Job,
        needs: &BTreeMap<String, String>,
    ) -> Result<i64, StateError> {
        let payload = serde_json::to_string(&Payload {
            run: run.clone(),
            job: job.clone(),
        })
        .map_err(|e| self.db.invalid(format!("a job does not serialise: {e}")))?;
        sqlx::query_scalar(
            "INSERT INTO flotilla_jobs (run_id, attempt, wave, trust, kind, payload, needs, state, tries, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', 0, $8) RETURNING job_id",
        )
        .bind(run_id)
        .bind(attempt)
        .bind(job.wave())
        .bind(job.trust())
        .bind(job.kind())
        .bind(payload)
        .bind(labels_json(needs))
        .bind(now())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.err(e))
    }

    /// Claim up to `n` queued jobs (oldest first) that a worker with `labels` may run, for
    /// `ttl`. Jobs other workers are claiming at this moment are skipped, never waited for.
    pub async fn claim(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
        n: usize,
        ttl: Duration,
    ) -> Result<Vec<Claimed>, StateError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let until = crate::journal::lease::now_ms() + ms(ttl);
        let rows: Vec<(i64, String, i64, String, String, i64)> = sqlx::query_as(
            "UPDATE flotilla_jobs SET state = 'claimed', worker = $1, claimed_until_ms = $2 \
             WHERE job_id IN (SELECT job_id FROM flotilla_jobs WHERE state = 'queued' AND $3::jsonb @> needs::jsonb \
             ORDER BY job_id FOR UPDATE SKIP LOCKED LIMIT $4) \
             RETURNING job_id, run_id, attempt, trust, payload, tries",
        )
        .bind(name)
        .bind(until)
        .bind(labels_json(labels))
        .bind(i64::try_from(n).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        let mut out: Vec<Claimed> = rows
            .into_iter()
            .map(|(job_id, run_id, attempt, trust, payload, tries)| Claimed {
                job_id,
                run_id,
                attempt,
                trust,
                job: serde_json::from_str::<Payload>(&payload)
                    .map(|p| (p.run, p.job))
                    .map_err(|e| e.to_string()),
                tries,
            })
            .collect();
        out.sort_by_key(|c| c.job_id);
        Ok(out)
    }

    /// Record a claimed job's end (`state`: done or failed) with its result. `false` when the
    /// claim was no longer this worker's (it expired and the job went to another).
    pub async fn finish(
        &self,
        job_id: i64,
        name: &str,
        state: &str,
        result: &str,
    ) -> Result<bool, StateError> {
        let done = sqlx::query(
            "UPDATE flotilla_jobs SET state = $3, result = $4, finished_at = $5, claimed_until_ms = NULL \
             WHERE job_id = $1 AND worker = $2 AND state = 'claimed'",
        )
        .bind(job_id)
        .bind(name)
        .bind(state)
        .bind(result)
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(done.rows_affected() == 1)
    }

    /// Put every job whose claim expired (its worker stopped heartbeating) back in the queue.
    /// Returns how many.
    pub async fn reclaim_expired(&self) -> Result<u64, StateError> {
        let done = sqlx::query(
            "UPDATE flotilla_jobs SET state = 'queued', worker = NULL, claimed_until_ms = NULL, tries = tries + 1 \
             WHERE state = 'claimed' AND claimed_until_ms < $1",
        )
        .bind(crate::journal::lease::now_ms())
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(done.rows_affected())
    }

    /// Cancel the still-queued jobs of run `run_id` (only those of `wave` and `kind` when
    /// given). Returns their ids.
    pub async fn cancel_queued(
        &self,
        run_id: &str,
        only: Option<(&str, &str)>,
    ) -> Result<Vec<i64>, StateError> {
        let (wave, kind) = only.unzip();
        sqlx::query_scalar(
            "UPDATE flotilla_jobs SET state = 'cancelled', finished_at = $2 \
             WHERE run_id = $1 AND state = 'queued' AND ($3::text IS NULL OR wave = $3) AND ($4::text IS NULL OR kind = $4) \
             RETURNING job_id",
        )
        .bind(run_id)
        .bind(now())
        .bind(wave)
        .bind(kind)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))
    }

    /// Those of `ids` that ended.
    pub async fn ended(&self, ids: &[i64]) -> Result<Vec<Ended>, StateError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<(i64, String, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT job_id, state, result, worker FROM flotilla_jobs WHERE job_id = ANY($1) AND state IN ('done', 'failed', 'cancelled')",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(rows
            .into_iter()
            .map(|(job_id, state, result, worker)| Ended {
                job_id,
                state,
                result,
                worker,
            })
            .collect())
    }

    /// How many jobs of run `run_id` are in `state`.
    pub async fn count(&self, run_id: &str, state: &str) -> Result<i64, StateError> {
        sqlx::query_scalar("SELECT COUNT(*) FROM flotilla_jobs WHERE run_id = $1 AND state = $2")
            .bind(run_id)
            .bind(state)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.err(e))
    }

    /// Whether run `run_id` queued any job (it was rolled out on workers).
    pub async fn has_jobs(&self, run_id: &str) -> Result<bool, StateError> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM flotilla_jobs WHERE run_id = $1)")
            .bind(run_id)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.err(e))
    }

    /// Whether any job is queued or claimed, of any run.
    pub async fn any_pending(&self) -> Result<bool, StateError> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM flotilla_jobs WHERE state IN ('queued', 'claimed'))",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.err(e))
    }

    /// Every registered worker (by name), with the jobs each holds now.
    pub async fn workers(&self) -> Result<Vec<WorkerRow>, StateError> {
        let rows: Vec<WorkerTuple> = sqlx::query_as(
            "SELECT w.name, w.labels, w.host, w.pid, w.concurrency, w.started_at, w.heartbeat_ms, w.expires_ms, w.stopped_at, \
             (SELECT COUNT(*) FROM flotilla_jobs j WHERE j.worker = w.name AND j.state = 'claimed') \
             FROM flotilla_workers w ORDER BY w.name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(rows
            .into_iter()
            .map(|r| WorkerRow {
                name: r.0,
                labels: serde_json::from_str(&r.1).unwrap_or_default(),
                host: r.2,
                pid: r.3,
                concurrency: r.4,
                started_at: r.5,
                heartbeat_ms: r.6,
                expires_ms: r.7,
                stopped_at: r.8,
                jobs_in_flight: r.9,
            })
            .collect())
    }

    /// Every registered worker, or `None` when the state database has no worker table (it
    /// was never opened to record since flotilla had workers).
    pub async fn workers_if_any(&self) -> Result<Option<Vec<WorkerRow>>, StateError> {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('flotilla_workers') IS NOT NULL")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        if exists {
            self.workers().await.map(Some)
        } else {
            Ok(None)
        }
    }

    /// The live workers.
    pub async fn live_workers(&self) -> Result<Vec<WorkerRow>, StateError> {
        let now_ms = crate::journal::lease::now_ms();
        Ok(self
            .workers()
            .await?
            .into_iter()
            .filter(|w| w.state(now_ms) == "live")
            .collect())
    }
}

/// Whether a worker with `labels` may run a trust that `needs` these.
pub fn reaches(labels: &BTreeMap<String, String>, needs: &BTreeMap<String, String>) -> bool {
    needs.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The refusal when no live worker can run a trust that `needs` these labels (`stage`: where
/// the run is, `wave london-2` or `preflight`).
pub fn unreachable(
    stage: &str,
    trust: &str,
    needs: &BTreeMap<String, String>,
    live: &[WorkerRow],
) -> String {
    let needed = if needs.is_empty() {
        "a live worker".to_string()
    } else {
        let labels: Vec<String> = needs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("a worker with {}", labels.join(", "))
    };
    let workers = if live.is_empty() {
        "none".to_string()
    } else {
        live.iter()
            .map(WorkerRow::describe)
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("{stage}: trust {trust} needs {needed}; live workers: {workers}")
}
