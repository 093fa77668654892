//! The worker process (`flotilla worker`): register, then until told to stop claim as many
//! jobs as there are free slots (`--concurrency`), run each with an engine built for its run
//! from this checkout, record its result, and heartbeat every second so that its claims stay
//! its own. The first SIGTERM/SIGINT stops claiming and lets the jobs in flight finish (exit 0,
//! `stopped_at` set); a second abandons them (their claims expire and other workers take them
//! up). One line per job on stderr: `worker w1: migrate camden … done in 1.2 s`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::coordinator::JobFailure;
use super::queue::{Claimed, Queue, RunRef};
use crate::config::{Inventory, Plan, Wave};
use crate::engine::jobs::{Job, JobResult};
use crate::engine::{Approver, Event, EventSink, RunControl, TrustOutcome};
use crate::exit_codes::ExitCode;
use crate::health::workload::Tracker;
use crate::journal::{Journal, StateDb};
use crate::migrations::Catalogs;

/// How often an idle worker looks for jobs.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// What a worker is started with.
#[derive(Debug, Clone)]
pub struct Options {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub concurrency: usize,
    pub ttl: Duration,
    /// Exit once nothing is running and no job waits (after having seen work, or 30 s idle).
    pub once: bool,
}

/// Why a worker stopped with an error.
#[derive(Debug)]
pub struct WorkerError {
    pub code: ExitCode,
    pub message: String,
}

impl WorkerError {
    fn new(code: ExitCode, message: impl Into<String>) -> Self {
        WorkerError {
            code,
            message: message.into(),
        }
    }
}

impl From<crate::journal::StateError> for WorkerError {
    fn from(e: crate::journal::StateError) -> Self {
        WorkerError::new(e.exit_code(), e.to_string())
    }
}

/// A run as this worker runs its jobs: the plan from this checkout (its checksums equal to the
/// run's), the run's journal (shared sequence, events naming this worker), its workload
/// readings, and its stop flag (set only when its journal cannot be written).
struct RunContext {
    plan: Plan,
    journal: Journal,
    control: RunControl,
    workload: Arc<Tracker>,
}

/// Events of a worker's jobs go to the run's journal; nothing is drawn here.
struct Quiet;

impl EventSink for Quiet {
    fn emit(&self, _event: &Event) {}
}

/// Workers never approve a wave: the coordinator does.
struct NoApprovals;

impl Approver for NoApprovals {
    fn approve(&self, _wave: &Wave) -> Option<String> {
        None
    }
}

/// The worker: its options, this checkout, the queue.
pub struct Worker {
    pub options: Options,
    pub inventory: Arc<Inventory>,
    pub catalogs: Arc<Catalogs>,
    pub state: StateDb,
    queue: Queue,
    runs: HashMap<(String, i64), Arc<Result<RunContext, String>>>,
}

impl Worker {
    /// A worker on `state` (refused unless it is PostgreSQL).
    pub fn new(
        options: Options,
        inventory: Arc<Inventory>,
        catalogs: Arc<Catalogs>,
        state: StateDb,
    ) -> Result<Self, WorkerError> {
        let queue = Queue::of(&state).map_err(|m| WorkerError::new(ExitCode::Config, m))?;
        Ok(Worker {
            options,
            inventory,
            catalogs,
            state,
            queue,
            runs: HashMap::new(),
        })
    }

    /// Register, serve until stopped, unregister.
    pub async fn serve(mut self) -> Result<(), WorkerError> {
        let o = self.options.clone();
        if !self
            .queue
            .register(&o.name, &o.labels, o.concurrency, o.ttl)
            .await?
        {
            return Err(WorkerError::new(
                ExitCode::Config,
                format!(
                    "a live worker named '{}' is already registered in {}: give this one another --name",
                    o.name,
                    self.state.location()
                ),
            ));
        }
        eprintln!(
            "worker {}: ready, labels {}, {} job(s) at a time, state {}",
            o.name,
            super::queue::describe_labels(&o.labels),
            o.concurrency,
            self.state.location()
        );
        let stopping = Arc::new(tokio::sync::Notify::new());
        let abandon = Arc::new(tokio::sync::Notify::new());
        {
            let (stopping, abandon) = (stopping.clone(), abandon.clone());
            tokio::spawn(async move {
                let mut term = crate::session::terminate_signal();
                crate::session::stop_signal(&mut term).await;
                stopping.notify_one();
                crate::session::stop_signal(&mut term).await;
                abandon.notify_one();
            });
        }
        let heartbeat = {
            let queue = self.queue.clone();
            let (name, ttl) = (o.name.clone(), o.ttl);
            tokio::spawn(async move {
                let every = (ttl / 3).min(Duration::from_secs(1));
                loop {
                    tokio::time::sleep(every).await;
                    match queue.heartbeat(&name, ttl).await {
                        Ok(true) => {}
                        Ok(false) => eprintln!(
                            "worker {name}: its registration was taken over (it missed its heartbeats for longer than --ttl)"
                        ),
                        Err(e) => tracing::warn!(error = %e, "worker heartbeat failed; retrying"),
                    }
                    if let Err(e) = queue.reclaim_expired().await {
                        tracing::warn!(error = %e, "could not reclaim expired jobs");
                    }
                }
            })
        };
        let result = tokio::select! {
            r = self.work(&stopping) => r,
            () = abandon.notified() => {
                eprintln!("worker {}: interrupted again: abandoning the jobs in flight (other workers take them up after --ttl)", o.name);
                heartbeat.abort();
                return Err(WorkerError::new(ExitCode::Interrupted, format!("worker {} abandoned its jobs in flight", o.name)));
            }
        };
        heartbeat.abort();
        if let Err(e) = self.queue.stopped(&o.name).await {
            eprintln!("worker {}: could not record that it stopped: {e}", o.name);
        }
        result
    }

    /// Claim and run jobs until asked to stop (then finish the ones in flight).
    async fn work(&mut self, stopping: &tokio::sync::Notify) -> Result<(), WorkerError> {
        let o = self.options.clone();
        let queue = self.queue.clone();
        // Each job is a task of its own: it goes on while this loop claims or waits.
        let mut in_flight = JoinSet::new();
        let mut stop = false;
        let mut seen_work = false;
        let started = Instant::now();
        loop {
            if !stop && in_flight.len() < o.concurrency {
                let free = o.concurrency - in_flight.len();
                let claimed = queue.claim(&o.name, &o.labels, free, o.ttl).await?;
                for c in claimed {
                    seen_work = true;
                    let ctx = self.context(&c).await;
                    let (inventory, catalogs) = (self.inventory.clone(), self.catalogs.clone());
                    let (queue, name) = (queue.clone(), o.name.clone());
                    // On a thread of its own, driven by this runtime: the engine's future is
                    // not `Send` for every lifetime the compiler considers, and a job must go
                    // on while this loop claims or waits.
                    let runtime = tokio::runtime::Handle::current();
                    in_flight.spawn_blocking(move || {
                        runtime.block_on(run_job(inventory, catalogs, queue, name, c, ctx))
                    });
                }
            }
            if stop && in_flight.is_empty() {
                eprintln!("worker {}: stopped", o.name);
                return Ok(());
            }
            if o.once && in_flight.is_empty() && !stop {
                let running = self.state.lease_holder().await?.is_some_and(|h| {
                    !h.expired(crate::journal::lease::now_ms()) && !h.holder_is_gone()
                });
                seen_work |= running;
                let idle = !running && !queue.any_pending().await?;
                if idle && (seen_work || started.elapsed() > Duration::from_secs(30)) {
                    eprintln!("worker {}: nothing left to do (--once)", o.name);
                    stop = true;
                    continue;
                }
            }
            let full = in_flight.len() >= o.concurrency;
            tokio::select! {
                Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                    if let Err(e) = joined {
                        eprintln!("worker {}: a job's task ended abnormally: {e}", o.name);
                    }
                }
                () = tokio::time::sleep(IDLE_POLL), if !full || stop => {}
                () = stopping.notified(), if !stop => {
                    eprintln!("worker {}: stopping: finishing {} job(s) in flight, claiming nothing new (interrupt again to abandon them)", o.name, in_flight.len());
                    stop = true;
                }
            }
        }
    }

    /// The run of a claimed job, loaded once per run and attempt: refused when this
    /// checkout's plan or migrations differ from the run's.
    async fn context(&mut self, c: &Claimed) -> Arc<Result<RunContext, String>> {
        let key = (c.run_id.clone(), c.attempt);
        if let Some(ctx) = self.runs.get(&key) {
            return ctx.clone();
        }
        let ctx = Arc::new(match &c.job {
            Ok((run, _)) => self.load(&c.run_id, c.attempt, run),
            Err(e) => Err(e.clone()),
        });
        // A run's context is kept while it may still send jobs; transient failures (the state
        // database unreachable) are tried again with the next job.
        if ctx.is_ok()
            || ctx
                .as_ref()
                .as_ref()
                .err()
                .is_some_and(|e| e.contains("sha256"))
        {
            self.runs.insert(key, ctx.clone());
        }
        ctx
    }

    fn load(&self, run_id: &str, attempt: i64, record: &RunRef) -> Result<RunContext, String> {
        let name = &self.options.name;
        let plan = Plan::load(
            std::path::Path::new(&record.plan_path),
            &self.inventory,
            self.catalogs.base(),
        )
        .map_err(|e| {
            format!("worker {name}: cannot load the run's plan from this checkout: {e}")
        })?;
        let ours = crate::session::plan_sha256(&plan).map_err(|e| e.to_string())?;
        if ours != record.plan_sha256 {
            return Err(format!(
                "worker {name}: its checkout's {} (plan sha256 {ours}) differs from run {run_id}'s (plan sha256 {}): it runs none of its jobs",
                record.plan_path, record.plan_sha256
            ));
        }
        let ours = crate::session::migrations_sha256(&self.catalogs, &plan);
        if ours != record.migrations_sha256 {
            return Err(format!(
                "worker {name}: its checkout's migrations (migrations sha256 {ours}) differ from run {run_id}'s (migrations sha256 {}): it runs none of its jobs",
                record.migrations_sha256
            ));
        }
        Ok(RunContext {
            plan,
            journal: Journal::for_worker(&self.state, run_id, attempt, name),
            control: RunControl::default(),
            workload: Arc::default(),
        })
    }
}

/// Run one claimed job and record its end.
async fn run_job(
    inventory: Arc<Inventory>,
    catalogs: Arc<Catalogs>,
    queue: Queue,
    name: String,
    c: Claimed,
    ctx: Arc<Result<RunContext, String>>,
) {
    let started = Instant::now();
    let described = match &c.job {
        Ok((_, job)) => job.describe(),
        Err(_) => format!("job {} of trust {}", c.job_id, c.trust),
    };
    let ended: Result<JobResult, JobFailure> = match (&c.job, ctx.as_ref()) {
        (Err(e), _) => Err(JobFailure {
            error: format!(
                "worker {name}: job {} does not read: {e} (a newer or older flotilla queued it?)",
                c.job_id
            ),
            exit_code: ExitCode::Internal.code(),
        }),
        (_, Err(e)) => Err(JobFailure {
            error: e.clone(),
            exit_code: if e.contains("sha256") {
                ExitCode::ChecksumDrift.code()
            } else {
                ExitCode::Internal.code()
            },
        }),
        (Ok((_, job)), Ok(run)) => {
            let engine = crate::engine::Engine {
                inventory: &inventory,
                catalogs: &catalogs,
                plan: &run.plan,
                events: &Quiet,
                approver: &NoApprovals,
                journal: Some(&run.journal),
                control: &run.control,
                resumed: None,
                workload: run.workload.clone(),
                phases: Default::default(),
                remote: None,
            };
            let reclaimed = c.tries > 0;
            // A resumed attempt's first job on a trust (its survey, or a rollback the dead
            // attempt left unfinished, which comes before it) settles what that attempt left
            // open, as `resume` does on its own machine without workers: the coordinator may
            // not reach the trust.
            let resumed_first =
                c.attempt > 1 && matches!(job, Job::Survey { .. } | Job::Rollback { .. });
            if reclaimed || resumed_first {
                // What the worker that died, or the attempt that stopped, left open on the
                // trust (its intent, a write probe's records) is settled from the trust's
                // real state first.
                if let Err(e) = crate::unfinished::reconcile_trust(
                    queue.db(),
                    &c.run_id,
                    &inventory,
                    &run.plan,
                    &c.trust,
                )
                .await
                {
                    eprintln!("worker {name}: {described}: could not settle what the stopped worker left: {e}");
                }
            }
            // A bug must not leave the job claimed (and heartbeated) forever: it fails.
            let ran = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
                engine.execute_job(job, reclaimed),
            ))
            .await;
            ran.map_err(|_| JobFailure {
                error: format!("worker {name}: the job stopped on an internal error (a bug in flotilla; see above)"),
                exit_code: ExitCode::Internal.code(),
            })
        }
    };
    let took = started.elapsed().as_secs_f64();
    let (state, body, said) = match &ended {
        Ok(result) => (
            "done",
            serde_json::to_string(result).unwrap_or_default(),
            summary(result),
        ),
        Err(f) => (
            "failed",
            serde_json::to_string(f).unwrap_or_default(),
            format!("failed: {}", f.error),
        ),
    };
    let again = if c.tries > 0 {
        format!(" (claimed again, try {})", c.tries + 1)
    } else {
        String::new()
    };
    eprintln!("worker {name}: {described}{again} … {said} in {took:.1} s");
    match queue.finish(c.job_id, &name, state, &body).await {
        Ok(true) => {}
        Ok(false) => eprintln!(
            "worker {name}: {described}: its claim expired meanwhile (another worker took it up); this result was dropped"
        ),
        Err(e) => eprintln!("worker {name}: {described}: its result could not be recorded: {e}"),
    }
}

/// How a job ended, in a word or two.
fn summary(result: &JobResult) -> String {
    match result {
        JobResult::Migrate { outcome } => match outcome {
            TrustOutcome::Failed { error, .. } => format!("failed: {error}"),
            other => other.status().to_string(),
        },
        JobResult::Window { judgement, .. } => judgement.verdict.label().to_string(),
        JobResult::Baseline {
            broken: Some(v), ..
        } => format!("baseline {}", v.label()),
        JobResult::Rollback { result: Err(e) } => format!("rollback failed: {e}"),
        _ => "done".to_string(),
    }
}

/// Read `--label KEY=VALUE` arguments (keys and values as the inventory's `runner:` takes).
pub fn parse_labels(args: &[String]) -> Result<BTreeMap<String, String>, String> {
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    };
    let mut out = BTreeMap::new();
    for a in args {
        let Some((k, v)) = a.split_once('=') else {
            return Err(format!("--label {a}: give KEY=VALUE"));
        };
        if !ok(k) || !ok(v) {
            return Err(format!(
                "--label {a}: keys and values are letters, digits, '_', '.' and '-'"
            ));
        }
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("--label {k} is given twice"));
        }
    }
    Ok(out)
}
