//! A run under the estate lease: take the lease (exit 6 naming the holder when another run has
//! it), preflight the databases (they are the truth), record the run in the journal, keep the
//! lease alive with a heartbeat, turn Ctrl-C/SIGTERM into an orderly stop (a second signal
//! abandons the in-flight transactions, which roll back), and write the run's reports when it
//! ends. `rollout`, `resume`, `rollout --rehearse` and `demo` run plans through [`execute`];
//! `rollback` and `repair` record their work as an [`Operation`] under the same lease.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::config::{Inventory, Plan, Wave};
use crate::engine::preflight::preflight_with;
use crate::engine::{Approver, Event, EventSink, RunOutcome, TrustOutcome};
use crate::engine::{RunControl, StopReason};
use crate::exit_codes::ExitCode;
use crate::journal::replay::Resumed;
use crate::journal::{Journal, LeaseError, NewRun, RunRecord, StateDb, StateError, StateLocation};
use crate::migrations::Catalogs;
use crate::plan::RolloutPlan;
use crate::printable::about_trust;
use crate::report::plan::BlockedError;
use crate::report::ReportError;
use crate::unfinished::UnfinishedError;

/// Why a run or an operation under the lease did not complete; each says its exit code.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    State(#[from] StateError),
    /// Another run holds the estate.
    #[error("{0}; nothing was changed")]
    Lease(Box<LeaseError>),
    #[error(transparent)]
    Unfinished(#[from] UnfinishedError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Blocked(#[from] BlockedError),
    /// Refused before anything was changed (not confirmed, not approved, unreadable plan).
    #[error("{0}")]
    Refused(String),
    /// The run stopped (halted, failed, interrupted...), with the documented code.
    #[error("{message}")]
    Stopped { code: ExitCode, message: String },
}

impl SessionError {
    /// The documented exit code.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            SessionError::State(e) => e.exit_code(),
            SessionError::Lease(e) => e.exit_code(),
            SessionError::Unfinished(e) => e.exit_code(),
            SessionError::Report(e) => e.exit_code(),
            SessionError::Blocked(e) => e.exit_code(),
            SessionError::Refused(_) => ExitCode::Config,
            SessionError::Stopped { code, .. } => *code,
        }
    }
}

impl From<LeaseError> for SessionError {
    fn from(e: LeaseError) -> Self {
        match e {
            LeaseError::State(e) => SessionError::State(e),
            other => SessionError::Lease(Box::new(other)),
        }
    }
}

/// Who approves approval waves and confirms a start: the operator at a terminal, or flags
/// given in advance. The engine asks through [`Approver`]; the session through the rest.
pub trait Operator: Approver {
    /// Whether the operator may be asked (a terminal, and nothing approved everything).
    fn may_ask(&self) -> bool;
    /// Ask a yes/no question; `false` unless the operator says yes.
    fn confirm(&self, question: &str) -> bool;
    /// Without a terminal, every approval wave among `waves` that will run must have been
    /// approved in advance: the refusal, naming the others, before anything is changed.
    fn require_in_advance(&self, waves: &mut dyn Iterator<Item = &str>) -> Result<(), String>;
}

/// Approves every wave without asking (rehearsals, the demo, an operator's rollback).
pub struct ApproveAll(pub String);

impl Approver for ApproveAll {
    fn approve(&self, _wave: &Wave) -> Option<String> {
        Some(self.0.clone())
    }
}

impl Operator for ApproveAll {
    fn may_ask(&self) -> bool {
        false
    }
    fn confirm(&self, _question: &str) -> bool {
        true
    }
    fn require_in_advance(&self, _waves: &mut dyn Iterator<Item = &str>) -> Result<(), String> {
        Ok(())
    }
}

/// SHA-256 of the plan file.
pub fn plan_sha256(plan: &Plan) -> Result<String, SessionError> {
    let bytes = crate::files::read_regular_bytes(&plan.path, crate::files::YAML_CAP)
        .map_err(|e| SessionError::Refused(format!("cannot read {}: {e}", plan.path.display())))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// SHA-256 over every migration (version and checksum) each trust of the plan would run.
pub fn migrations_sha256(catalogs: &Catalogs, plan: &Plan) -> String {
    let mut h = Sha256::new();
    let mut seen = BTreeSet::new();
    for id in plan.trusts() {
        for m in catalogs.for_trust(id).migrations() {
            if seen.insert((m.version, m.checksum.clone())) {
                h.update(m.version.to_le_bytes());
                h.update(m.checksum.as_bytes());
            }
        }
    }
    hex::encode(h.finalize())
}

/// A new run or a resumed one.
pub enum Start<'a> {
    /// `rollout`.
    New,
    /// `resume`: the run, and what its journal says.
    Resume {
        record: &'a RunRecord,
        resumed: Resumed,
        unfinished_rollbacks: BTreeSet<String>,
        /// The operator's decisions about failed trusts: (trust, "retry" | "skip").
        decisions: Vec<(String, &'static str)>,
    },
}

/// Everything [`execute`] needs.
pub struct Request<'a> {
    /// The state database the run is recorded in.
    pub state: &'a StateLocation,
    /// Progress bars allowed.
    pub progress: bool,
    /// Colour allowed.
    pub color: bool,
    pub inventory: &'a Inventory,
    pub catalogs: &'a Catalogs,
    pub plan: &'a Plan,
    /// Who approves approval waves (and whether the operator is asked to start).
    pub operator: &'a dyn Operator,
    pub events: Option<&'a Path>,
    /// `--junit`, `--report-dir`: written from the journal when the run ends.
    pub reports: &'a crate::report::ReportOptions,
    pub start: Start<'a>,
    pub lease_ttl: Duration,
    /// A rehearsal on disposable copies: recorded as kind `rehearsal` in its own journal.
    pub rehearsal: bool,
    /// Where earlier runs are recorded when that is not this run's own journal: a rehearsal
    /// reads the estate's (read-only) to judge, on the copies, the trusts whose upgrade was
    /// never judged, as the real run would.
    pub history: Option<&'a StateDb>,
    /// `--workers`: every piece of work on a trust database is a job for `flotilla worker`
    /// processes (PostgreSQL state only; see `crate::workers`).
    pub workers: bool,
}

/// SIGTERM as a stream, when it can be installed (`None`: only Ctrl-C is listened to).
pub fn terminate_signal() -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok()
}

/// Wait for the next Ctrl-C or SIGTERM (`term`, from [`terminate_signal`]): how an operator
/// or a service manager asks flotilla to stop.
pub async fn stop_signal(term: &mut Option<tokio::signal::unix::Signal>) {
    match term.as_mut() {
        Some(t) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = t.recv() => {}
            }
        }
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Spawn the signal watcher: the first SIGINT/SIGTERM asks the run to stop starting work, the
/// second fires `abort`.
fn watch_signals(control: Arc<RunControl>, abort: Arc<tokio::sync::Notify>) {
    tokio::spawn(async move {
        let mut term = terminate_signal();
        for n in 0..2 {
            stop_signal(&mut term).await;
            if n == 0 {
                eprintln!(
                    "interrupted: finishing the migrations in flight, starting nothing new (interrupt again to abandon them; they roll back)"
                );
                control.stop(StopReason::Interrupted);
            } else {
                eprintln!("interrupted again: abandoning the transactions in flight");
                abort.notify_one();
            }
        }
    });
}

/// Take the estate lease for `run_id`: exit 6 naming the holder when another run has it.
pub async fn take_lease(
    state: &StateDb,
    run_id: &str,
    ttl: Duration,
) -> Result<crate::journal::Lease, SessionError> {
    Ok(state.acquire_lease(run_id, ttl).await?)
}

/// Take the lease, preflight, record, run, release.
pub async fn execute(req: Request<'_>) -> Result<(), SessionError> {
    let run_id = match &req.start {
        Start::New => crate::journal::new_run_id(),
        Start::Resume { record, .. } => record.run_id.clone(),
    };
    execute_as(req, &run_id).await
}

/// [`execute`] under a run id the caller chose (a new run's; `demo --traffic` keeps the
/// clinicians' record under it).
pub async fn execute_as(req: Request<'_>, run_id: &str) -> Result<(), SessionError> {
    let run_id = run_id.to_string();
    req.reports.prepare()?;
    let state = StateDb::open(req.state).await?;
    let lease = take_lease(&state, &run_id, req.lease_ttl).await?;
    // Under the lease no other run is live: an unfinished one is waiting for a decision. (A
    // rehearsal has a journal of its own, with nothing in it.)
    let result = if matches!(req.start, Start::New) && !req.rehearsal {
        crate::unfinished::refuse_if_unfinished(&state, req.plan)
            .await
            .map_err(SessionError::from)
    } else {
        Ok(())
    };
    let result = match result {
        Ok(()) => execute_leased(&req, &state, &run_id, &lease).await,
        Err(f) => Err(f),
    };
    if let Err(e) = state.release_lease(&lease).await {
        tracing::warn!(error = %e, "could not release the lease; it expires by itself");
    }
    let result = write_run_reports(&state, &run_id, req.reports, result).await;
    state.close().await;
    result
}

/// Write the run's reports from its journal, whatever its outcome (a halted run's report
/// matters most). A report that cannot be written fails a run that succeeded (exit 2), and
/// never hides the outcome of one that did not: both are printed.
pub async fn write_run_reports(
    state: &StateDb,
    run_id: &str,
    reports: &crate::report::ReportOptions,
    result: Result<(), SessionError>,
) -> Result<(), SessionError> {
    if !reports.any() {
        return result;
    }
    // A run refused before it was recorded (lease held, not confirmed) has nothing to report.
    match state.run(run_id).await {
        Ok(Some(_)) => {}
        Ok(None) => return result,
        Err(e) => tracing::warn!(error = %e, "cannot read the run back for its reports"),
    }
    match (
        crate::report::write_reports(state, run_id, reports).await,
        result,
    ) {
        (Ok(written), result) => {
            for path in written {
                eprintln!("report written: {}", path.display());
            }
            result
        }
        (Err(e), Ok(())) => Err(SessionError::Stopped {
            code: ExitCode::Config,
            message: format!("run {run_id} completed, but its report could not be written: {e}"),
        }),
        (Err(e), Err(run_failure)) => {
            eprintln!("error: run {run_id}: its report could not be written: {e}");
            Err(run_failure)
        }
    }
}

async fn execute_leased(
    req: &Request<'_>,
    state: &StateDb,
    run_id: &str,
    lease: &crate::journal::Lease,
) -> Result<(), SessionError> {
    let &Request {
        state: _,
        progress,
        color,
        inventory,
        catalogs,
        plan,
        operator,
        events,
        ref start,
        lease_ttl: _,
        rehearsal,
        reports: _,
        history: _,
        workers,
    } = req;
    let control = Arc::new(RunControl::default());
    let sinks = Arc::new(crate::report::event_sinks(progress, color, events)?);
    let coordinator = if workers {
        Some(
            coordinate(
                state,
                run_id,
                start,
                (inventory, catalogs),
                plan,
                (&control, sinks.clone()),
            )
            .await?,
        )
    } else {
        None
    };
    let remote = coordinator
        .as_ref()
        .map(|c| c as &dyn crate::engine::jobs::Dispatch);
    if matches!(start, Start::Resume { .. }) && remote.is_none() {
        // On workers, the worker that first touches each trust in this attempt settles what
        // the stopped one left on it (see `crate::workers`): this machine may not reach it.
        crate::unfinished::reconcile(state, run_id, inventory, plan).await?;
    }
    let mut checked = None;
    let carried = match start {
        Start::New => {
            let first = preflight_with(inventory, catalogs, plan, remote).await;
            let planned = &first.plan;
            let current: BTreeMap<String, (String, Option<i64>)> = planned
                .waves
                .iter()
                .flat_map(|w| {
                    w.trusts
                        .iter()
                        .map(|t| (t.id.clone(), (w.name.clone(), t.current_version)))
                })
                .collect();
            let history = if rehearsal { req.history } else { Some(state) };
            let carried = match history {
                Some(history) => {
                    crate::unfinished::carried_baselines(
                        history,
                        plan,
                        catalogs,
                        &current,
                        &BTreeSet::new(),
                    )
                    .await?
                }
                None => Vec::new(),
            };
            if planned.blocked().next().is_none() {
                // Approval waves that will run must be approved in advance without a terminal.
                operator
                    .require_in_advance(
                        &mut planned
                            .waves
                            .iter()
                            .filter(|w| {
                                w.approval && w.trusts.iter().any(|t| t.action.is_upgrade())
                            })
                            .map(|w| w.name.as_str()),
                    )
                    .map_err(SessionError::Refused)?;
            }
            if planned.blocked().next().is_none() && operator.may_ask() {
                crate::report::plan::print_plan_text(planned, catalogs.base());
                if planned.migration_count() > 0
                    && !operator.confirm(&format!(
                        "Roll out {} ({} migrations)?",
                        plan.name,
                        planned.migration_count()
                    ))
                {
                    return Err(SessionError::Refused(
                        "rollout not confirmed; nothing was changed".into(),
                    ));
                }
            }
            checked = Some(first);
            carried
        }
        Start::Resume { resumed, .. } => {
            // Trusts of the plan this run has no baseline for, whose last upgrade (in another
            // run) was never judged to pass: read their versions now.
            let known: BTreeSet<String> = resumed.baselines.keys().cloned().collect();
            let ledger = crate::unfinished::unjudged(state).await?;
            let mut current = BTreeMap::new();
            for w in &plan.waves {
                for id in w
                    .trusts
                    .iter()
                    .filter(|t| ledger.contains_key(*t) && !known.contains(*t))
                {
                    if let Some(trust) = inventory.get(id) {
                        let read = match remote {
                            Some(r) => crate::engine::jobs::survey_read(r, id).await,
                            None => crate::engine::read_state(trust).await,
                        };
                        if let Ok(applied) = read {
                            let version = applied.iter().map(|a| a.version).max();
                            current.insert(id.clone(), (w.name.clone(), version));
                        }
                    }
                }
            }
            crate::unfinished::carried_baselines(state, plan, catalogs, &current, &known).await?
        }
    };
    let journal = match start {
        Start::New => Journal::start(
            state,
            run_id,
            &NewRun {
                kind: if rehearsal { "rehearsal" } else { "rollout" },
                plan: &plan.name,
                plan_path: &plan.path,
                plan_sha256: &plan_sha256(plan)?,
                migrations_sha256: &migrations_sha256(catalogs, plan),
                target_version: plan.target.version,
            },
        )
        .await?
        .shared(workers),
        Start::Resume {
            record, decisions, ..
        } => {
            let j = Journal::reopen(state, record).await?.shared(workers);
            let by = crate::journal::operator();
            let mut events = vec![Event::RunResumed {
                attempt: j.attempt(),
                by: by.clone(),
            }];
            for (trust, decision) in decisions {
                events.push(Event::TrustDecided {
                    trust: trust.clone(),
                    decision: (*decision).to_string(),
                    by: by.clone(),
                });
            }
            j.record_all(&events).await?;
            for ev in &events {
                sinks.emit(ev);
            }
            j
        }
    };
    // What the engine knows of earlier upgrades: the resumed run's journal, and the baselines
    // carried from runs whose upgrade of a trust was never judged to pass.
    let mut resumed: Option<Resumed> = match start {
        Start::Resume { resumed, .. } => Some(resumed.clone()),
        Start::New => None,
    };
    if !carried.is_empty() {
        let r = resumed.get_or_insert_with(Resumed::default);
        if let Err(e) = crate::unfinished::carry(&carried, r, &journal, &sinks).await {
            let _ = journal
                .finish("failed", e.exit_code().code(), Some(&e.to_string()))
                .await;
            return Err(e.into());
        }
    }
    let abort = Arc::new(tokio::sync::Notify::new());
    watch_signals(control.clone(), abort.clone());
    let heartbeat = {
        let state = state.clone();
        let lease = lease.clone();
        let control = control.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease.heartbeat_interval()).await;
                match state.heartbeat(&lease).await {
                    Ok(()) => {}
                    Err(LeaseError::Lost(holder)) => {
                        let holder = holder.map_or("nobody".into(), |h| h.describe());
                        eprintln!("error: this run's lease was taken over by {holder}: stopping");
                        control.stop(StopReason::LeaseLost(holder));
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "lease heartbeat failed; retrying"),
                }
            }
        })
    };
    let engine = crate::engine::Engine {
        inventory,
        catalogs,
        plan,
        events: &*sinks,
        approver: operator,
        journal: Some(&journal),
        control: &control,
        resumed: resumed.as_ref(),
        workload: Default::default(),
        phases: Default::default(),
        remote,
    };
    if let (
        Start::Resume {
            unfinished_rollbacks,
            ..
        },
        Some(resumed),
    ) = (start, resumed.as_ref())
    {
        for id in unfinished_rollbacks {
            if let Err(e) = engine.finish_rollback(id, resumed).await {
                let _ = journal
                    .finish("rollback-failed", ExitCode::RollbackFailed.code(), Some(&e))
                    .await;
                heartbeat.abort();
                return Err(SessionError::Stopped {
                    code: ExitCode::RollbackFailed,
                    message: about_trust(
                        id,
                        &format!("the interrupted rollback could not be finished: {e}"),
                    ),
                });
            }
        }
    }
    // On resume, preflight after the reconciliation and any finished rollback: the databases
    // as they are now are what the rest of the run starts from.
    let checked = match checked {
        Some(c) => c,
        None => preflight_with(inventory, catalogs, plan, remote).await,
    };
    let planned = &checked.plan;
    let summary = tokio::select! {
        s = engine.run(&checked) => Some(s),
        () = abort.notified() => None,
    };
    heartbeat.abort();
    let Some(summary) = summary else {
        // Abandoned: the dropped connections roll their transactions back. Record it.
        let ev = Event::Interrupted { abort: true };
        sinks.emit(&ev);
        let _ = journal.record(&ev).await;
        let _ = journal
            .finish(
                "interrupted",
                ExitCode::Interrupted.code(),
                Some("interrupted twice: in-flight transactions were abandoned and rolled back"),
            )
            .await;
        return Err(SessionError::Stopped {
            code: ExitCode::Interrupted,
            message: format!(
                "run {run_id} interrupted; in-flight transactions were rolled back. Continue with: flotilla resume {run_id}"
            ),
        });
    };
    let failure = outcome_failure(plan, planned, &summary);
    let reason = failure.as_ref().err().map(ToString::to_string);
    if let Err(e) = journal
        .finish(
            summary.outcome.label(),
            summary.outcome.exit_code().code(),
            reason.as_deref(),
        )
        .await
    {
        eprintln!("error: the run's journal is incomplete: {e}");
        if summary.outcome == RunOutcome::Completed {
            return Err(SessionError::Stopped {
                code: e.exit_code(),
                message: format!("the rollout completed but its journal is incomplete: {e}"),
            });
        }
    }
    tracing::info!(run = run_id, state = %state.location(), "run recorded in the journal");
    failure.map_err(|e| {
        let (code, mut message) = (e.exit_code(), e.to_string());
        if summary.outcome.exit_code() != ExitCode::Config {
            message.push_str(&if rehearsal {
                format!("\n(rehearsal {run_id} on disposable copies; the estate was not touched)")
            } else {
                format!("\n(run {run_id}; `flotilla status` shows it)")
            });
        }
        SessionError::Stopped { code, message }
    })
}

/// The coordinator of a run on workers (`rollout --workers`, or a resume of one): refused on
/// an SQLite state database; a resumed run's earlier attempts settled first (their queued jobs
/// cancelled, their claimed ones ended); and a live worker that can reach each of the plan's
/// trusts, before preflight touches any.
async fn coordinate(
    state: &StateDb,
    run_id: &str,
    start: &Start<'_>,
    (inventory, catalogs): (&Inventory, &Catalogs),
    plan: &Plan,
    (control, events): (&Arc<RunControl>, Arc<crate::engine::events::Fanout>),
) -> Result<crate::workers::coordinator::Coordinator, SessionError> {
    use crate::engine::jobs::Dispatch;
    use crate::workers::coordinator::Coordinator;
    let queue = crate::workers::queue::Queue::of(state).map_err(SessionError::Refused)?;
    let attempt = match start {
        Start::New => 1,
        Start::Resume { record, .. } => {
            Coordinator::settle_earlier_attempts(&queue, run_id)
                .await
                .map_err(|e| SessionError::Refused(format!("cannot settle the run's jobs: {e}")))?;
            record.attempts + 1
        }
    };
    let run = crate::workers::queue::RunRef {
        plan_path: plan.path.display().to_string(),
        plan_sha256: plan_sha256(plan)?,
        migrations_sha256: migrations_sha256(catalogs, plan),
    };
    let coordinator = Coordinator::start(
        queue,
        (run_id, attempt, run),
        inventory,
        control.clone(),
        events,
    )
    .await
    .map_err(SessionError::State)?;
    let trusts: Vec<String> = plan.trusts().map(str::to_string).collect();
    coordinator
        .reach("preflight", &trusts)
        .await
        .map_err(|m| SessionError::Refused(format!("{m}; nothing was started")))?;
    Ok(coordinator)
}

/// The documented failure (exit code and message) for how a run ended.
fn outcome_failure(
    plan: &Plan,
    planned: &RolloutPlan,
    summary: &crate::engine::RunSummary,
) -> Result<(), SessionError> {
    match summary.outcome.clone() {
        RunOutcome::Completed => Ok(()),
        RunOutcome::Blocked { .. } => Ok(crate::report::plan::blocked(planned)?),
        RunOutcome::Halted { wave, trusts, reasons } => Err(SessionError::Stopped {
            code: ExitCode::HealthGate,
            message:             format!(
                "rollout {} halted by the health gate in wave '{wave}' (trusts: {}); no later wave was started:\n  {}",
                plan.name,
                trusts.join(", "),
                reasons.join("\n  ")
            ),
        }),
        RunOutcome::Paused { wave, trusts, reasons } => Err(SessionError::Stopped {
            code: ExitCode::HealthGate,
            message:             format!(
                "rollout {} paused in wave '{wave}': the health gate could not decide for {}; an operator must look:\n  {}",
                plan.name,
                trusts.join(", "),
                reasons.join("\n  ")
            ),
        }),
        RunOutcome::RollbackFailed { trusts, reasons } => Err(SessionError::Stopped {
            code: ExitCode::RollbackFailed,
            message:             format!(
                "rollback failed for {}: operator needed:\n  {}",
                trusts.join(", "),
                reasons.join("\n  ")
            ),
        }),
        RunOutcome::Failed { wave, trusts, exit } => {
            let reasons: Vec<String> = summary
                .trusts
                .iter()
                .filter(|r| trusts.contains(&r.trust))
                .map(|r| (&r.trust, &r.outcome))
                .map(|(id, o)| match o {
                    TrustOutcome::Failed { error, .. } => format!("  {}", about_trust(id, error)),
                    _ => format!("  trust '{id}'"),
                })
                .collect();
            Err(SessionError::Stopped {
                code: exit,
                message:                 format!(
                    "rollout {} stopped in wave '{wave}': {} trust(s) failed and were left at their last committed version; later waves were not started:\n{}",
                    plan.name,
                    trusts.len(),
                    reasons.join("\n")
                ),
            })
        }
        RunOutcome::NotApproved { wave } => Err(SessionError::Stopped {
            code: ExitCode::Config,
            message:             format!("wave '{wave}' was not approved; the rollout stopped before it (resume to continue)"),
        }),
        RunOutcome::Interrupted => Err(SessionError::Stopped {
            code: ExitCode::Interrupted,
            message:             format!("rollout {} interrupted: the migrations in flight finished, nothing new was started; continue with `flotilla resume`", plan.name),
        }),
        RunOutcome::LeaseLost { holder } => Err(SessionError::Stopped {
            code: ExitCode::Locked,
            message:             format!("rollout {} stopped: its lease was taken over by {holder}", plan.name),
        }),
        RunOutcome::Unreachable { message, .. } => Err(SessionError::Stopped {
            code: ExitCode::Config,
            message: format!("rollout {} stopped before the wave started: {message}; start a worker that can reach it, then `flotilla resume`", plan.name),
        }),
        RunOutcome::JournalFailed { error, exit } => Err(SessionError::Stopped {
            code: exit,
            message:             format!("rollout {} stopped: the state database could not be written ({error}); nothing further was started", plan.name),
        }),
    }
}

/// An operator action (rollback, repair) under the lease, recorded as a run of its own.
pub struct Operation {
    /// The run recording the operation.
    pub journal: Journal,
    state: StateDb,
    lease: crate::journal::Lease,
}

/// Take the lease and record operation `kind` as a run of its own.
pub async fn begin_operation(
    location: &StateLocation,
    lease_ttl: Duration,
    kind: &str,
    label: &str,
    path: &Path,
    digest: &str,
    target: i64,
) -> Result<Operation, SessionError> {
    let state = StateDb::open(location).await?;
    let run_id = crate::journal::new_run_id();
    let lease = take_lease(&state, &run_id, lease_ttl).await?;
    let journal = Journal::start(
        &state,
        &run_id,
        &NewRun {
            kind,
            plan: label,
            plan_path: path,
            plan_sha256: digest,
            migrations_sha256: digest,
            target_version: target,
        },
    )
    .await
    .map_err(SessionError::from);
    match journal {
        Ok(journal) => Ok(Operation {
            state,
            lease,
            journal,
        }),
        Err(f) => {
            let _ = state.release_lease(&lease).await;
            Err(f)
        }
    }
}

impl Operation {
    /// Record how it ended (`None`: completed; else the exit code and why), release the
    /// lease.
    pub async fn end(self, failed: Option<(ExitCode, &str)>) {
        let (status, code, reason) = match failed {
            None => ("completed", 0, None),
            Some((code, message)) => ("failed", code.code(), Some(message)),
        };
        if let Err(e) = self.journal.finish(status, code, reason).await {
            eprintln!("error: could not record the end of the operation: {e}");
        }
        let _ = self.state.release_lease(&self.lease).await;
        self.state.close().await;
    }
}
