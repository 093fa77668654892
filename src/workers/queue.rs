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

    /// The highest sequence number of run `run_id`'s events (-1: none yet).
    pub async fn last_seq(&self, run_id: &str) -> Result<i64, StateError> {
        let max: Option<i64> =
            sqlx::query_scalar("SELECT MAX(seq) FROM flotilla_events WHERE run_id = $1")
                .bind(run_id)
                .fetch_one(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
        Ok(max.unwrap_or(-1))
    }

    /// The events workers wrote into run `run_id`'s journal after sequence `seq`, in order:
    /// (seq, body).
    pub async fn worker_events_after(
        &self,
        run_id: &str,
        seq: i64,
    ) -> Result<Vec<(i64, String)>, StateError> {
        sqlx::query_as(
            "SELECT seq, body FROM flotilla_events WHERE run_id = $1 AND seq > $2 \
             AND body::jsonb ? 'worker' ORDER BY seq",
        )
        .bind(run_id)
        .bind(seq)
        .fetch_all(&self.pool)
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

/// The queue against the real PostgreSQL that `scripts/test` starts (`FLOTILLA_TEST_PG_URL`):
/// each test on a fresh state database of its own.
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::Connection;

    use super::*;
    use crate::engine::jobs::WireStep;
    use crate::journal::StateLocation;

    /// A fresh state database on the test cluster, opened (schema created).
    async fn fresh_state(test: &str) -> StateDb {
        let admin = std::env::var("FLOTILLA_TEST_PG_URL")
            .expect("the queue's tests need PostgreSQL: run them with scripts/test");
        let name = format!(
            "q_{test}_{}_{}",
            std::process::id(),
            crate::journal::lease::now_ms() % 1_000_000
        );
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let mut url = url::Url::parse(&admin).unwrap();
        let _ = url.set_password(None);
        url.set_path(&format!("/{name}"));
        StateDb::open(&StateLocation::Postgres(url.to_string()))
            .await
            .unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn migrate(wave: &str, trust: &str) -> Job {
        Job::Migrate {
            wave: wave.into(),
            trust: trust.into(),
            from: Some(1),
            steps: vec![WireStep {
                version: 2,
                resume_dirty: false,
            }],
        }
    }

    fn run_ref() -> RunRef {
        RunRef {
            plan_path: "plans/p.yaml".into(),
            plan_sha256: "a".into(),
            migrations_sha256: "b".into(),
        }
    }

    const TTL: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn a_worker_claims_only_the_jobs_whose_labels_it_has() {
        let q = Queue::of(&fresh_state("labels").await).unwrap();
        let site = labels(&[("site", "camden-dc")]);
        let camden = q
            .enqueue("r1", 1, &run_ref(), &migrate("w", "camden"), &site)
            .await
            .unwrap();
        let any = q
            .enqueue(
                "r1",
                1,
                &run_ref(),
                &migrate("w", "barnet"),
                &BTreeMap::new(),
            )
            .await
            .unwrap();
        // No labels: only the job that needs none.
        let got = q.claim("plain", &BTreeMap::new(), 10, TTL).await.unwrap();
        assert_eq!(got.iter().map(|c| c.job_id).collect::<Vec<_>>(), [any]);
        // Another site's worker: nothing.
        let other = labels(&[("site", "dc1")]);
        assert!(q.claim("dc1", &other, 10, TTL).await.unwrap().is_empty());
        // A worker with the label (and more): the camden job, as written.
        let more = labels(&[("site", "camden-dc"), ("zone", "a")]);
        let got = q.claim("camden-w", &more, 10, TTL).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].job_id, camden);
        assert_eq!(got[0].trust, "camden");
        let (run, job) = got[0].job.clone().unwrap();
        assert_eq!((run, job), (run_ref(), migrate("w", "camden")));
        assert_eq!(got[0].tries, 0);
    }

    #[tokio::test]
    async fn two_claimers_never_get_the_same_job_and_never_wait_for_each_other() {
        let state = fresh_state("skip_locked").await;
        let q = Queue::of(&state).unwrap();
        let mut ids = Vec::new();
        for i in 0..20 {
            ids.push(
                q.enqueue(
                    "r1",
                    1,
                    &run_ref(),
                    &migrate("w", &format!("t{i}")),
                    &BTreeMap::new(),
                )
                .await
                .unwrap(),
            );
        }
        // A second process's pool.
        let other = StateDb::open(&StateLocation::Postgres(match &state.pool {
            Pool::Postgres(p) => {
                let o = p.connect_options();
                format!(
                    "postgres://{}@{}:{}/{}",
                    o.get_username(),
                    o.get_host(),
                    o.get_port(),
                    o.get_database().unwrap_or_default()
                )
            }
            Pool::Sqlite(_) => unreachable!(),
        }))
        .await
        .unwrap();
        let q2 = Queue::of(&other).unwrap();
        let none = BTreeMap::new();
        let (a, b) = tokio::join!(
            async {
                let mut got = Vec::new();
                for _ in 0..10 {
                    got.extend(q.claim("a", &none, 1, TTL).await.unwrap());
                }
                got
            },
            async {
                let mut got = Vec::new();
                for _ in 0..10 {
                    got.extend(q2.claim("b", &none, 1, TTL).await.unwrap());
                }
                got
            }
        );
        let mut all: Vec<i64> = a.iter().chain(&b).map(|c| c.job_id).collect();
        all.sort_unstable();
        assert_eq!(all, ids, "every job claimed exactly once");
        // A job locked by another transaction is skipped at once, not waited for.
        let next = q
            .enqueue("r1", 1, &run_ref(), &migrate("w", "locked"), &none)
            .await
            .unwrap();
        let last = q
            .enqueue("r1", 1, &run_ref(), &migrate("w", "free"), &none)
            .await
            .unwrap();
        let Pool::Postgres(p2) = &other.pool else {
            unreachable!()
        };
        let mut tx = p2.begin().await.unwrap();
        sqlx::query("SELECT job_id FROM flotilla_jobs WHERE job_id = $1 FOR UPDATE")
            .bind(next)
            .execute(&mut *tx)
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), q.claim("a", &none, 10, TTL))
            .await
            .expect("a claim waited for a locked job")
            .unwrap();
        assert_eq!(got.iter().map(|c| c.job_id).collect::<Vec<_>>(), [last]);
        tx.rollback().await.unwrap();
        other.close().await;
    }

    #[tokio::test]
    async fn an_expired_claim_goes_back_to_the_queue_and_a_heartbeat_keeps_it() {
        let q = Queue::of(&fresh_state("ttl").await).unwrap();
        let none = BTreeMap::new();
        assert!(q.register("dead", &none, 1, TTL).await.unwrap());
        assert!(q.register("alive", &none, 1, TTL).await.unwrap());
        let first = q
            .enqueue("r1", 1, &run_ref(), &migrate("w", "camden"), &none)
            .await
            .unwrap();
        let second = q
            .enqueue("r1", 1, &run_ref(), &migrate("w", "barnet"), &none)
            .await
            .unwrap();
        let short = Duration::from_millis(300);
        assert_eq!(
            q.claim("dead", &none, 1, short).await.unwrap()[0].job_id,
            first
        );
        assert_eq!(
            q.claim("alive", &none, 1, short).await.unwrap()[0].job_id,
            second
        );
        // Only `alive` heartbeats.
        assert!(q.heartbeat("alive", TTL).await.unwrap());
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(q.reclaim_expired().await.unwrap(), 1);
        assert_eq!(q.count("r1", "claimed").await.unwrap(), 1);
        let again = q.claim("other", &none, 10, TTL).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].job_id, again[0].tries), (first, 1));
        // The dead worker's late result is refused; the live one's is recorded.
        assert!(!q.finish(first, "dead", "done", "{}").await.unwrap());
        assert!(q.finish(first, "other", "done", "{}").await.unwrap());
        assert!(q.finish(second, "alive", "done", "{}").await.unwrap());
        let ended = q.ended(&[first, second]).await.unwrap();
        assert_eq!(ended.len(), 2);
        assert!(ended.iter().all(|e| e.state == "done"));
        // The registry: one live worker per name; a stopped one's name can be taken.
        assert!(!q.register("alive", &none, 1, TTL).await.unwrap());
        q.stopped("alive").await.unwrap();
        assert!(q.register("alive", &none, 1, TTL).await.unwrap());
        let workers = q.workers().await.unwrap();
        let now = crate::journal::lease::now_ms();
        assert_eq!(
            workers
                .iter()
                .map(|w| (w.name.as_str(), w.state(now)))
                .collect::<Vec<_>>(),
            [("alive", "live"), ("dead", "live")]
        );
    }

    #[tokio::test]
    async fn cancelling_a_waves_migrations_leaves_other_jobs_and_claimed_ones() {
        let q = Queue::of(&fresh_state("cancel").await).unwrap();
        let none = BTreeMap::new();
        let claimed = q
            .enqueue("r1", 1, &run_ref(), &migrate("pilot", "camden"), &none)
            .await
            .unwrap();
        assert_eq!(
            q.claim("w", &none, 1, TTL).await.unwrap()[0].job_id,
            claimed
        );
        let queued = q
            .enqueue("r1", 1, &run_ref(), &migrate("pilot", "islington"), &none)
            .await
            .unwrap();
        let other_wave = q
            .enqueue("r1", 1, &run_ref(), &migrate("rest", "barnet"), &none)
            .await
            .unwrap();
        let other_run = q
            .enqueue("r2", 1, &run_ref(), &migrate("pilot", "brent"), &none)
            .await
            .unwrap();
        assert_eq!(
            q.cancel_queued("r1", Some(("pilot", "migrate")))
                .await
                .unwrap(),
            [queued]
        );
        let ended = q
            .ended(&[claimed, queued, other_wave, other_run])
            .await
            .unwrap();
        assert_eq!(
            ended
                .iter()
                .map(|e| (e.job_id, e.state.as_str()))
                .collect::<Vec<_>>(),
            [(queued, "cancelled")]
        );
        // Everything still queued of the run (a coordinator stopping).
        assert_eq!(q.cancel_queued("r1", None).await.unwrap(), [other_wave]);
        assert!(q.has_jobs("r2").await.unwrap());
        assert!(!q.has_jobs("r3").await.unwrap());
    }
}
