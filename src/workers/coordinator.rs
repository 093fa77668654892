//! The coordinator's side of the queue: the engine's [`Dispatch`] for `rollout --workers`.
//! Each job is inserted as `queued` with the labels its trust needs; one background task
//! polls every [`POLL`] for the jobs being waited on that ended (one query for all of them),
//! hands each result to its waiter, puts expired claims back in the queue, and, once the run
//! is stopping (an interrupt, a lost lease), cancels the run's queued jobs so that nothing new
//! starts.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::sync::oneshot;

use super::queue::{reaches, unreachable, Ended, Queue, RunRef};
use crate::config::{Inventory, Trust};
use crate::engine::jobs::{Dispatch, Done, Job, JobResult};
use crate::engine::{Event, EventSink, RunControl};
use crate::exit_codes::ExitCode;
use crate::journal::StateError;

/// How often the coordinator looks for ended jobs.
pub const POLL: Duration = Duration::from_millis(50);

/// How often expired claims are put back in the queue.
const RECLAIM_EVERY: Duration = Duration::from_secs(1);

/// What a failed job records as its result.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct JobFailure {
    pub error: String,
    pub exit_code: u8,
}

/// The labels a trust needs of a worker (its inventory `runner:` map; none: any worker).
pub fn needs_of(trust: &Trust) -> BTreeMap<String, String> {
    trust.runner.clone()
}

struct Inner {
    queue: Queue,
    run_id: String,
    attempt: i64,
    run: RunRef,
    needs: HashMap<String, BTreeMap<String, String>>,
    waiting: Mutex<HashMap<i64, oneshot::Sender<Done>>>,
    /// The worker that last ended a job of each trust.
    last_worker: Mutex<HashMap<String, String>>,
    control: Arc<RunControl>,
    /// Where the coordinator's own events go (progress display, `--events`): the events
    /// workers write into the run's journal are shown there too, in journal order.
    events: Arc<dyn EventSink>,
}

/// Hands a run's jobs to workers through the queue and waits for their results.
pub struct Coordinator {
    inner: Arc<Inner>,
    poller: tokio::task::JoinHandle<()>,
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

/// A job's row once it ended, as the engine takes it.
fn done_of(e: &Ended) -> Done {
    let worker = e.worker.clone().unwrap_or_default();
    match e.state.as_str() {
        "done" => match e.result.as_deref().map(serde_json::from_str::<JobResult>) {
            Some(Ok(result)) => Done::Finished {
                result: Box::new(result),
                worker,
            },
            Some(Err(err)) => Done::Failed {
                error: format!(
                    "worker {worker}: its result of job {} does not read: {err}",
                    e.job_id
                ),
                exit: ExitCode::Internal,
            },
            None => Done::Failed {
                error: format!("worker {worker}: job {} ended without a result", e.job_id),
                exit: ExitCode::Internal,
            },
        },
        "failed" => match e
            .result
            .as_deref()
            .and_then(|r| serde_json::from_str::<JobFailure>(r).ok())
        {
            Some(f) => Done::Failed {
                error: f.error,
                exit: ExitCode::of(f.exit_code),
            },
            None => Done::Failed {
                error: format!("worker {worker}: job {} failed", e.job_id),
                exit: ExitCode::Internal,
            },
        },
        _ => Done::Cancelled,
    }
}

impl Coordinator {
    /// Start coordinating attempt `attempt` of run `run_id` (its jobs' labels from
    /// `inventory`); `control` stopping cancels the run's queued jobs.
    pub async fn start(
        queue: Queue,
        (run_id, attempt, run): (&str, i64, RunRef),
        inventory: &Inventory,
        control: Arc<RunControl>,
        events: Arc<dyn EventSink>,
    ) -> Result<Coordinator, StateError> {
        // Workers' events already in the journal (an earlier attempt's) were shown then.
        let shown = queue.last_seq(run_id).await?;
        let inner = Arc::new(Inner {
            queue,
            run_id: run_id.to_string(),
            attempt,
            run,
            needs: inventory
                .trusts
                .iter()
                .map(|t| (t.id.clone(), needs_of(t)))
                .collect(),
            waiting: Mutex::new(HashMap::new()),
            last_worker: Mutex::new(HashMap::new()),
            control,
            events,
        });
        let poller = tokio::spawn(poll(inner.clone(), shown));
        Ok(Coordinator { inner, poller })
    }

    /// Before a new attempt of run `run_id` goes on (a resumed coordinator): cancel the
    /// earlier attempts' queued jobs and wait until none is claimed any more (each either
    /// ends, or its claim expires and it is reclaimed, then cancelled).
    pub async fn settle_earlier_attempts(queue: &Queue, run_id: &str) -> Result<(), String> {
        let mut said = false;
        loop {
            queue.reclaim_expired().await.map_err(|e| e.to_string())?;
            queue
                .cancel_queued(run_id, None)
                .await
                .map_err(|e| e.to_string())?;
            let claimed = queue
                .count(run_id, "claimed")
                .await
                .map_err(|e| e.to_string())?;
            if claimed == 0 {
                return Ok(());
            }
            if !said {
                eprintln!(
                    "waiting for {claimed} job(s) of the earlier attempt that workers still hold"
                );
                said = true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn needs(&self, trust: &str) -> BTreeMap<String, String> {
        self.inner.needs.get(trust).cloned().unwrap_or_default()
    }
}

/// The background task: results, reclaims, cancellation when stopping.
async fn poll(inner: Arc<Inner>, mut shown: i64) {
    let mut last_reclaim = Instant::now();
    loop {
        tokio::time::sleep(POLL).await;
        match inner.queue.worker_events_after(&inner.run_id, shown).await {
            Ok(events) => {
                for (seq, body) in events {
                    shown = shown.max(seq);
                    if let Ok(body) = serde_json::from_str::<serde_json::Value>(&body) {
                        inner.events.emit(&Event::from_json(&body));
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "could not read the workers' events"),
        }
        if inner.control.stopping() {
            if let Err(e) = inner.queue.cancel_queued(&inner.run_id, None).await {
                tracing::warn!(error = %e, "could not cancel the run's queued jobs");
            }
        }
        if last_reclaim.elapsed() >= RECLAIM_EVERY {
            last_reclaim = Instant::now();
            match inner.queue.reclaim_expired().await {
                Ok(0) => {}
                Ok(n) => eprintln!(
                    "{n} job(s) went back to the queue: the worker holding them stopped heartbeating"
                ),
                Err(e) => tracing::warn!(error = %e, "could not reclaim expired jobs"),
            }
        }
        let ids: Vec<i64> = match inner.waiting.lock() {
            Ok(w) => w.keys().copied().collect(),
            Err(_) => return,
        };
        if ids.is_empty() {
            continue;
        }
        let ended = match inner.queue.ended(&ids).await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the jobs' results; retrying");
                continue;
            }
        };
        if let Ok(mut w) = inner.waiting.lock() {
            for e in &ended {
                if let Some(tx) = w.remove(&e.job_id) {
                    let _ = tx.send(done_of(e));
                }
            }
        }
    }
}

impl Dispatch for Coordinator {
    fn run(&self, job: Job) -> BoxFuture<'_, Done> {
        Box::pin(async move {
            let needs = self.needs(job.trust());
            let id = match self
                .inner
                .queue
                .enqueue(
                    &self.inner.run_id,
                    self.inner.attempt,
                    &self.inner.run,
                    &job,
                    &needs,
                )
                .await
            {
                Ok(id) => id,
                Err(e) => {
                    return Done::Failed {
                        error: format!(
                            "the {} job of trust '{}' could not be queued: {e}",
                            job.kind(),
                            job.trust()
                        ),
                        exit: e.exit_code(),
                    }
                }
            };
            let (tx, rx) = oneshot::channel();
            if let Ok(mut w) = self.inner.waiting.lock() {
                w.insert(id, tx);
            }
            let done = rx.await.unwrap_or(Done::Failed {
                error: "the coordinator stopped waiting for its workers".into(),
                exit: ExitCode::Internal,
            });
            if let (Done::Finished { worker, .. }, Ok(mut last)) =
                (&done, self.inner.last_worker.lock())
            {
                last.insert(job.trust().to_string(), worker.clone());
            }
            done
        })
    }

    fn cancel_migrations<'a>(&'a self, wave: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Err(e) = self
                .inner
                .queue
                .cancel_queued(&self.inner.run_id, Some((wave, "migrate")))
                .await
            {
                tracing::warn!(error = %e, "could not cancel the wave's queued migrations");
            }
        })
    }

    fn worker_of(&self, trust: &str) -> Option<String> {
        self.inner
            .last_worker
            .lock()
            .ok()
            .and_then(|l| l.get(trust).cloned())
    }

    fn reach<'a>(
        &'a self,
        stage: &'a str,
        trusts: &'a [String],
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let live = self
                .inner
                .queue
                .live_workers()
                .await
                .map_err(|e| e.to_string())?;
            for trust in trusts {
                let needs = self.needs(trust);
                if !live.iter().any(|w| reaches(&w.labels, &needs)) {
                    return Err(unreachable(stage, trust, &needs, &live));
                }
            }
            Ok(())
        })
    }
}
