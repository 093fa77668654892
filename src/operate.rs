//! Running a plan for real: the estate lease, the write-ahead journal, signals, and `resume`.
//!
//! `rollout` and `resume` share [`execute`]: take the lease (exit 6 naming the holder when
//! another run has it), preflight the databases (they are the truth), record the run, keep the
//! lease alive, and turn Ctrl-C/SIGTERM into an orderly stop (a second signal abandons the
//! in-flight transactions, which roll back). The journal says what was in flight; `resume`
//! reconciles it with what the databases hold and continues.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::commands::{Failure, Globals, Outcome};
use crate::config::{Inventory, Plan};
use crate::engine::run::{Resumed, RunControl, StopReason};
use crate::engine::{preflight, Event, EventSink, RunOutcome};
use crate::exit_codes::ExitCode;
use crate::health::probes::{ProbeParams, Snapshot};
use crate::journal::{Journal, LeaseError, NewRun, RunRecord, StateDb, StateLocation};
use crate::migrations::Catalogs;

/// How long a lease lives without a heartbeat.
pub const LEASE_TTL: Duration = Duration::from_secs(30);

/// Where `--state` points; anything but a file path, `sqlite://PATH` or `postgres://...` is
/// refused without repeating it.
pub fn state_location(g: &Globals) -> Result<StateLocation, Failure> {
    StateLocation::parse(&g.state).map_err(|e| Failure::new(ExitCode::Config, e))
}

/// Open the state database named by `--state` to record in it (an SQLite file is created).
pub async fn open_state(g: &Globals) -> Result<StateDb, Failure> {
    Ok(StateDb::open(&state_location(g)?).await?)
}

/// Open the state database named by `--state` to read it, changing nothing; `None` when
/// nothing has been recorded there.
pub async fn open_state_read_only(g: &Globals) -> Result<Option<StateDb>, Failure> {
    Ok(StateDb::open_read_only(&state_location(g)?).await?)
}

/// SHA-256 of the plan file.
pub fn plan_sha256(plan: &Plan) -> Result<String, Failure> {
    let bytes =
        crate::files::read_regular_bytes(&plan.path, crate::files::YAML_CAP).map_err(|e| {
            Failure::new(
                ExitCode::Config,
                format!("cannot read {}: {e}", plan.path.display()),
            )
        })?;
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
    pub g: &'a Globals,
    pub inventory: &'a Inventory,
    pub catalogs: &'a Catalogs,
    pub plan: &'a Plan,
    /// Who approves approval waves (and whether the operator is asked to start).
    pub prompt: &'a crate::commands::Prompt,
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
}

/// Spawn the signal watcher: the first SIGINT/SIGTERM asks the run to stop starting work, the
/// second fires `abort`.
fn watch_signals(control: Arc<RunControl>, abort: Arc<tokio::sync::Notify>) {
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        for n in 0..2 {
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
pub(crate) async fn take_lease(
    state: &StateDb,
    run_id: &str,
    ttl: Duration,
) -> Result<crate::journal::Lease, Failure> {
    state.acquire_lease(run_id, ttl).await.map_err(|e| match e {
        LeaseError::Held(_) => Failure::new(ExitCode::Locked, format!("{e}; nothing was changed")),
        LeaseError::State(e) => Failure::from(e),
        other => Failure::new(ExitCode::Config, other.to_string()),
    })
}

/// Take the lease, preflight, record, run, release.
pub async fn execute(req: Request<'_>) -> Outcome {
    let run_id = match &req.start {
        Start::New => crate::journal::new_run_id(),
        Start::Resume { record, .. } => record.run_id.clone(),
    };
    execute_as(req, &run_id).await
}

/// [`execute`] under a run id the caller chose (a new run's; `demo --traffic` keeps the
/// clinicians' record under it).
pub async fn execute_as(req: Request<'_>, run_id: &str) -> Outcome {
    let run_id = run_id.to_string();
    req.reports
        .prepare()
        .map_err(|e| Failure::new(ExitCode::Config, e.to_string()))?;
    let state = open_state(req.g).await?;
    let lease = take_lease(&state, &run_id, req.lease_ttl).await?;
    // Under the lease no other run is live: an unfinished one is waiting for a decision. (A
    // rehearsal has a journal of its own, with nothing in it.)
    let result = if matches!(req.start, Start::New) && !req.rehearsal {
        crate::unfinished::refuse_if_unfinished(&state, req.plan).await
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
pub(crate) async fn write_run_reports(
    state: &StateDb,
    run_id: &str,
    reports: &crate::report::ReportOptions,
    result: Outcome,
) -> Outcome {
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
        (Err(e), Ok(())) => Err(Failure::new(
            ExitCode::Config,
            format!("run {run_id} completed, but its report could not be written: {e}"),
        )),
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
) -> Outcome {
    let &Request {
        g,
        inventory,
        catalogs,
        plan,
        prompt,
        events,
        ref start,
        lease_ttl: _,
        rehearsal,
        reports: _,
        history: _,
    } = req;
    if matches!(start, Start::Resume { .. }) {
        reconcile(state, run_id, inventory, plan).await?;
    }
    let sinks = crate::commands::event_sinks(g, events)?;
    let mut checked = None;
    let carried = match start {
        Start::New => {
            let first = preflight(inventory, catalogs, plan).await;
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
                prompt.require_in_advance(
                    planned
                        .waves
                        .iter()
                        .filter(|w| w.approval && w.trusts.iter().any(|t| t.action.is_upgrade()))
                        .map(|w| w.name.as_str()),
                )?;
            }
            if planned.blocked().next().is_none() && prompt.may_ask() {
                crate::commands::print_plan_text(planned, catalogs.base());
                if planned.migration_count() > 0
                    && !crate::commands::ask(&format!(
                        "Roll out {} ({} migrations)?",
                        plan.name,
                        planned.migration_count()
                    ))
                {
                    return Err(Failure::new(
                        ExitCode::Config,
                        "rollout not confirmed; nothing was changed",
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
                        if let Ok(applied) = crate::engine::run::read_state(trust).await {
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
        Start::New => {
            Journal::start(
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
        }
        Start::Resume {
            record, decisions, ..
        } => {
            let j = Journal::reopen(state, record).await?;
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
        if let Err(f) = crate::unfinished::carry(&carried, r, &journal, &sinks).await {
            let _ = journal
                .finish("failed", f.code.code(), Some(&f.message))
                .await;
            return Err(f);
        }
    }
    let control = Arc::new(RunControl::default());
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
        events: &sinks,
        approver: prompt,
        journal: Some(&journal),
        control: &control,
        resumed: resumed.as_ref(),
        workload: Default::default(),
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
                return Err(Failure::new(
                    ExitCode::RollbackFailed,
                    format!("trust '{id}': the interrupted rollback could not be finished: {e}"),
                ));
            }
        }
    }
    // On resume, preflight after the reconciliation and any finished rollback: the databases
    // as they are now are what the rest of the run starts from.
    let checked = match checked {
        Some(c) => c,
        None => preflight(inventory, catalogs, plan).await,
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
        return Err(Failure::new(
            ExitCode::Interrupted,
            format!(
                "run {run_id} interrupted; in-flight transactions were rolled back. Continue with: flotilla resume {run_id}"
            ),
        ));
    };
    let failure = crate::commands::outcome_failure(plan, planned, &summary);
    let reason = failure.as_ref().err().map(|f| f.message.clone());
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
            return Err(Failure::new(
                e.exit_code(),
                format!("the rollout completed but its journal is incomplete: {e}"),
            ));
        }
    }
    tracing::info!(run = run_id, state = %state.location(), "run recorded in the journal");
    failure.map_err(|mut f| {
        if summary.outcome.exit_code() != ExitCode::Config {
            f.message.push_str(&if rehearsal {
                format!("\n(rehearsal {run_id} on disposable copies; the estate was not touched)")
            } else {
                format!("\n(run {run_id}; `flotilla status` shows it)")
            });
        }
        f
    })
}

/// What a run's journal says about its trusts.
#[derive(Debug, Default)]
pub struct Reading {
    /// For resume.
    pub resumed: Resumed,
    /// Trusts that failed in the run (migration failed, or the gate failed them and they were
    /// rolled back), with the reason.
    pub failed: BTreeMap<String, String>,
    /// Trusts whose rollback started and never finished.
    pub unfinished_rollbacks: BTreeSet<String>,
}

/// Read a run's events.
pub fn read_journal(events: &[crate::journal::StoredEvent]) -> Reading {
    let mut r = Reading::default();
    let mut snapshots: HashMap<String, Snapshot> = HashMap::new();
    for e in events {
        let b = &e.body;
        let s = |k: &str| {
            b.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let trust = s("trust");
        match b.get("event").and_then(|v| v.as_str()).unwrap_or_default() {
            "health_measured" if s("window") == "baseline" => {
                if let Some(snap) = b
                    .get("snapshot")
                    .and_then(|v| serde_json::from_value::<Snapshot>(v.clone()).ok())
                {
                    snapshots.insert(trust, snap);
                }
            }
            "baseline_recorded" => {
                let from = b.get("from").and_then(serde_json::Value::as_i64);
                let params: ProbeParams = b
                    .get("params")
                    .and_then(|v| serde_json::from_value(v.clone()).ok())
                    .unwrap_or_default();
                if let Some(snap) = snapshots.remove(&trust) {
                    r.resumed.baselines.insert(
                        trust,
                        crate::engine::RecordedBaseline {
                            wave: s("wave"),
                            from,
                            params,
                            snapshot: snap,
                        },
                    );
                }
            }
            "health_verdict" => {
                let verdict = s("verdict");
                if s("window") == "post-upgrade" && verdict == "pass" {
                    r.resumed.checked.insert(trust.clone());
                }
                if verdict == "fail" {
                    let reasons = b
                        .get("reasons")
                        .and_then(|v| v.as_array())
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_str())
                                .collect::<Vec<_>>()
                                .join("; ")
                        })
                        .unwrap_or_default();
                    r.failed.insert(trust, reasons);
                }
            }
            "trust_finished" if s("status") == "failed" => {
                r.failed.insert(trust, s("error"));
            }
            "rollback_started" => {
                r.unfinished_rollbacks.insert(trust);
            }
            "rollback_finished" => {
                r.unfinished_rollbacks.remove(&trust);
                r.resumed.checked.remove(&trust);
                r.resumed.baselines.remove(&trust);
            }
            "rollback_failed" => {
                r.unfinished_rollbacks.remove(&trust);
                r.failed.insert(trust.clone(), s("error"));
            }
            "wave_passed" => {
                r.resumed.passed_waves.insert(s("wave"));
            }
            _ => {}
        }
    }
    r
}

/// `flotilla resume` options.
pub struct ResumeOptions {
    /// The run (default: the latest that did not complete).
    pub run: Option<String>,
    /// Approve without asking.
    pub yes: bool,
    /// Approval waves approved in advance.
    pub approve: Vec<String>,
    /// Failed trusts to try again.
    pub retry: Vec<String>,
    /// Failed trusts to leave out.
    pub skip: Vec<String>,
    /// Accept a changed plan or migrations.
    pub allow_changed_plan: bool,
    /// `--events` file.
    pub events: Option<std::path::PathBuf>,
    /// `--junit`, `--report-dir`.
    pub reports: crate::report::ReportOptions,
}

/// `flotilla resume [RUN]`.
pub async fn resume(g: &Globals, o: &ResumeOptions) -> Outcome {
    let Some(state) = open_state_read_only(g).await? else {
        return Err(Failure::new(
            ExitCode::Config,
            format!(
                "no run to resume: nothing is recorded at {} (see --state)",
                state_location(g)?.display()
            ),
        ));
    };
    state.close().await;
    let state = open_state(g).await?;
    let runs = state.runs().await?;
    let record = match &o.run {
        Some(id) => runs.iter().find(|r| &r.run_id == id).ok_or_else(|| {
            Failure::new(
                ExitCode::Config,
                format!("no run '{id}' in the state database {}", state.location()),
            )
        })?,
        None => runs.iter().find(|r| r.resumable()).ok_or_else(|| {
            Failure::new(
                ExitCode::Config,
                format!(
                    "no run to resume in the state database {}",
                    state.location()
                ),
            )
        })?,
    };
    if !record.resumable() {
        return Err(Failure::new(
            ExitCode::Config,
            format!(
                "run {} is {}: there is nothing to resume",
                record.run_id, record.status
            ),
        ));
    }
    let (inventory, catalogs) = g.load()?;
    let mut plan = Plan::load(Path::new(&record.plan_path), &inventory, catalogs.base())?;
    if !o.allow_changed_plan {
        let now = plan_sha256(&plan)?;
        if now != record.plan_sha256 {
            return Err(Failure::new(
                ExitCode::Config,
                format!(
                    "{} changed since run {} began (sha256 {} → {}); review it, then pass --allow-changed-plan",
                    record.plan_path,
                    record.run_id,
                    &record.plan_sha256[..12],
                    &now[..12]
                ),
            ));
        }
        let now = migrations_sha256(&catalogs, &plan);
        if now != record.migrations_sha256 {
            return Err(Failure::new(
                ExitCode::Config,
                format!(
                    "the migrations changed since run {} began; review them, then pass --allow-changed-plan",
                    record.run_id
                ),
            ));
        }
    }
    let events = state.events(&record.run_id).await?;
    let mut reading = read_journal(&events);
    for id in o.retry.iter().chain(&o.skip) {
        if !reading.failed.contains_key(id) {
            return Err(Failure::new(
                ExitCode::Config,
                format!(
                    "trust '{id}' did not fail in run {} (failed: {})",
                    record.run_id,
                    if reading.failed.is_empty() {
                        "none".to_string()
                    } else {
                        reading
                            .failed
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
            ));
        }
    }
    let undecided: Vec<String> = reading
        .failed
        .iter()
        .filter(|(t, _)| !o.retry.contains(t) && !o.skip.contains(t))
        .map(|(t, why)| format!("  {t}: {why}"))
        .collect();
    if !undecided.is_empty() {
        return Err(Failure::new(
            ExitCode::Config,
            format!(
                "run {} has failed trusts; say for each whether to --retry it or --skip it:\n{}",
                record.run_id,
                undecided.join("\n")
            ),
        ));
    }
    for id in &o.skip {
        for w in &mut plan.waves {
            w.trusts.retain(|t| t != id);
        }
    }
    for id in &o.retry {
        reading.resumed.checked.remove(id);
    }
    // Recorded with who decided, when the run is reopened.
    let decisions: Vec<(String, &'static str)> = o
        .retry
        .iter()
        .map(|t| (t.clone(), "retry"))
        .chain(o.skip.iter().map(|t| (t.clone(), "skip")))
        .collect();
    let prompt = crate::commands::Prompt::new(o.yes, &o.approve, &plan)?;
    prompt.require_in_advance(
        plan.waves
            .iter()
            .filter(|w| {
                w.approval == crate::config::plan::Approval::Required
                    && !reading.resumed.passed_waves.contains(&w.name)
            })
            .map(|w| w.name.as_str()),
    )?;
    state.close().await;
    let unfinished = reading.unfinished_rollbacks.clone();
    execute(Request {
        g,
        inventory: &inventory,
        catalogs: &catalogs,
        plan: &plan,
        prompt: &prompt,
        events: o.events.as_deref(),
        reports: &o.reports,
        start: Start::Resume {
            record,
            resumed: reading.resumed,
            unfinished_rollbacks: unfinished,
            decisions,
        },
        lease_ttl: g.lease_ttl,
        rehearsal: false,
        history: None,
    })
    .await
}

/// Close the steps a crash left open, from what each trust database really holds; remove
/// write-probe records a crash left behind.
pub(crate) async fn reconcile(
    state: &StateDb,
    run_id: &str,
    inventory: &Inventory,
    plan: &Plan,
) -> Outcome {
    for step in state.open_steps(run_id).await? {
        let Some(trust) = inventory.get(&step.trust) else {
            continue;
        };
        let (status, detail, after) = match step.kind.as_str() {
            "migrate" | "revert" => {
                let applied = crate::engine::run::read_state(trust).await.map_err(|b| {
                    Failure::new(
                        b.exit_code(),
                        format!("cannot read trust '{}' to resume: {b}", trust.id),
                    )
                })?;
                let row = step
                    .version
                    .and_then(|v| applied.iter().find(|a| a.version == v));
                let current = applied.iter().map(|a| a.version).max();
                let settled = match (step.kind.as_str(), row) {
                    // A dirty row: a batch or no-transaction script that did not finish.
                    (_, Some(r)) if r.dirty => "interrupted",
                    ("migrate", Some(_)) | ("revert", None) => "done",
                    _ => "not-applied",
                };
                (
                    settled,
                    "settled on resume from the trust's tracking table".to_string(),
                    current,
                )
            }
            "write-probe" => {
                let id = step.version.unwrap_or_default();
                // Records `id` down to `before` (a journal from before sampled writes: one).
                let last = step.before.unwrap_or(id);
                crate::health::probes::clean_up_write_probe(trust, &plan.health, id, last)
                    .await
                    .map_err(|e| {
                        Failure::new(
                            ExitCode::MigrationFailed,
                            format!(
                                "trust '{}': cannot remove write-probe records {id} to {last} left by the interrupted run: {e}",
                                trust.id
                            ),
                        )
                    })?;
                ("cleaned", "removed on resume".to_string(), None)
            }
            _ => ("interrupted", "finished again on resume".to_string(), None),
        };
        state
            .settle_step(run_id, step.seq, status, &detail, after)
            .await?;
    }
    Ok(())
}

/// Runs (newest first, at most `limit`) and the lease, for `status`. A missing SQLite state
/// file is not created: there are simply no runs yet.
pub async fn overview(g: &Globals, limit: usize) -> Result<serde_json::Value, Failure> {
    // Read-only: `status` never creates or changes a state database (an empty file stays
    // empty; a read-only mount is fine).
    let Some(state) = open_state_read_only(g).await? else {
        return Ok(serde_json::json!({ "runs": [], "lease": null }));
    };
    let result = overview_of(&state, limit).await;
    state.close().await;
    result
}

async fn overview_of(state: &StateDb, limit: usize) -> Result<serde_json::Value, Failure> {
    let holder = state.lease_holder().await?;
    let now = crate::journal::lease::now_ms();
    let mut runs = Vec::new();
    for r in state.runs().await?.into_iter().take(limit) {
        let events = state.events(&r.run_id).await?;
        let reading = read_journal(&events);
        let current_wave = crate::unfinished::last_wave(&events);
        let failed: Vec<serde_json::Value> = reading
            .failed
            .iter()
            .map(|(t, why)| serde_json::json!({ "trust": t, "reason": why }))
            .collect();
        let effective = r.effective_status(holder.as_ref(), now);
        let next: Vec<String> = if r.resumable() {
            crate::unfinished::Unfinished {
                record: r.clone(),
                status: effective.clone(),
                wave: current_wave.clone(),
                failed: reading.failed.clone(),
            }
            .ways_forward()
            .into_iter()
            .map(|(command, _)| command)
            .collect()
        } else {
            Vec::new()
        };
        let mut v = serde_json::to_value(&r).unwrap_or_default();
        // A run left `running` whose lease is gone crashed: say so, keep what was recorded.
        v["recorded_status"] = serde_json::json!(r.status);
        v["status"] = serde_json::json!(effective);
        v["current_wave"] = serde_json::json!(current_wave);
        v["failed_trusts"] = serde_json::json!(failed);
        v["waves_passed"] = serde_json::json!(reading.resumed.passed_waves);
        v["next"] = serde_json::json!(next);
        runs.push(v);
    }
    let lease = holder.map(|h| {
        let mut v = serde_json::to_value(&h).unwrap_or_default();
        v["expired"] = serde_json::json!(h.expired(now));
        v
    });
    Ok(serde_json::json!({ "runs": runs, "lease": lease }))
}

/// An operator action (rollback, repair) under the lease, recorded as a run of its own.
struct Operation {
    state: StateDb,
    lease: crate::journal::Lease,
    journal: Journal,
}

async fn begin_operation(
    g: &Globals,
    kind: &str,
    label: &str,
    path: &Path,
    digest: &str,
    target: i64,
) -> Result<Operation, Failure> {
    let state = open_state(g).await?;
    let run_id = crate::journal::new_run_id();
    let lease = take_lease(&state, &run_id, g.lease_ttl).await?;
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
    .map_err(Failure::from);
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
    async fn end(self, result: &Outcome) {
        let (status, code, reason) = match result {
            Ok(()) => ("completed", 0, None),
            Err(f) => ("failed", f.code.code(), Some(f.message.as_str())),
        };
        if let Err(e) = self.journal.finish(status, code, reason).await {
            eprintln!("error: could not record the end of the operation: {e}");
        }
        let _ = self.state.release_lease(&self.lease).await;
        self.state.close().await;
    }
}

/// `flotilla rollback` options.
pub struct RollbackOptions {
    /// The plan.
    pub plan: std::path::PathBuf,
    /// Trusts.
    pub trusts: Vec<String>,
    /// A wave of the plan.
    pub wave: Option<String>,
    /// A run whose upgrades to undo.
    pub run: Option<String>,
    /// Target release or version.
    pub to: Option<String>,
    /// Cross irreversible migrations.
    pub force: bool,
    /// Preview only.
    pub dry_run: bool,
    /// No confirmation.
    pub yes: bool,
}

fn parse_target(catalogs: &Catalogs, to: &str) -> Result<Option<i64>, Failure> {
    let catalog = catalogs.base();
    if let Ok(v) = to.parse::<i64>() {
        if v == 0 {
            return Ok(None);
        }
        if catalog.get(v).is_none() {
            return Err(Failure::new(
                ExitCode::Config,
                format!("--to {v}: no migration has that version"),
            ));
        }
        return Ok(Some(v));
    }
    catalog.release_version(to).map(Some).ok_or_else(|| {
        let known: Vec<&str> = catalog.releases().map(|(n, _)| n).collect();
        Failure::new(
            ExitCode::Config,
            format!(
                "--to {to}: not a version or a known release (known: {})",
                known.join(", ")
            ),
        )
    })
}

/// `flotilla rollback PLAN (--trust T | --wave W | --run R) [--to RELEASE|VERSION]`.
pub async fn rollback(g: &Globals, o: &RollbackOptions) -> Outcome {
    let (inventory, catalogs, plan) = g.load_plan(&o.plan)?;
    let in_plan: BTreeSet<&str> = plan.trusts().collect();
    let mut recorded: HashMap<String, (Option<i64>, Snapshot)> = HashMap::new();
    let selected: Vec<String> = if let Some(run) = &o.run {
        let state = open_state(g).await?;
        if state.run(run).await?.is_none() {
            return Err(Failure::new(
                ExitCode::Config,
                format!("no run '{run}' in the state database {}", state.location()),
            ));
        }
        let reading = read_journal(&state.events(run).await?);
        state.close().await;
        for (t, b) in reading.resumed.baselines {
            recorded.insert(t, (b.from, b.snapshot));
        }
        let mut ids: Vec<String> = recorded.keys().cloned().collect();
        ids.sort();
        ids
    } else if let Some(w) = &o.wave {
        plan.waves
            .iter()
            .find(|x| &x.name == w)
            .map(|x| x.trusts.clone())
            .ok_or_else(|| {
                Failure::new(
                    ExitCode::Config,
                    format!(
                        "plan {} has no wave '{w}' (waves: {})",
                        plan.path.display(),
                        plan.waves
                            .iter()
                            .map(|x| x.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?
    } else {
        o.trusts.clone()
    };
    for id in &selected {
        if inventory.get(id).is_none() {
            return Err(Failure::new(
                ExitCode::Config,
                format!("trust '{id}' is not in {}", g.inventory.display()),
            ));
        }
        if !in_plan.contains(id.as_str()) {
            return Err(Failure::new(
                ExitCode::Config,
                format!(
                    "trust '{id}' is not in plan {}: flotilla never touches a trust outside the plan",
                    plan.path.display()
                ),
            ));
        }
    }
    if selected.is_empty() {
        return Err(Failure::new(ExitCode::Config, "no trust to roll back"));
    }
    let explicit =
        o.to.as_deref()
            .map(|t| parse_target(&catalogs, t))
            .transpose()?;
    // The patient-data tables the plan checks must still exist at the target: a rollback
    // whose down migrations drop them destroys the data, and is refused unless forced.
    let integrity_only = crate::config::health::Health {
        integrity: plan.health.integrity.clone(),
        ..Default::default()
    };
    // Preview, read-only: what each trust would revert.
    let mut work: Vec<(String, Option<i64>, Option<Snapshot>)> = Vec::new();
    let mut refused = Vec::new();
    for id in &selected {
        let to = match (explicit, recorded.get(id)) {
            (Some(t), _) => t,
            (None, Some((from, _))) => *from,
            (None, None) => {
                return Err(Failure::new(
                    ExitCode::Config,
                    "--to RELEASE|VERSION is required with --trust and --wave",
                ))
            }
        };
        let trust = inventory
            .get(id)
            .ok_or_else(|| Failure::new(ExitCode::Config, id.clone()))?;
        let applied = crate::engine::run::read_state(trust)
            .await
            .map_err(|b| Failure::new(b.exit_code(), format!("trust '{id}': {b}")))?;
        let catalog = catalogs.for_trust(id);
        let undo: Vec<i64> = applied
            .iter()
            .rev()
            .map(|a| a.version)
            .filter(|v| to.is_none_or(|t| *v > t))
            .collect();
        let current = applied.iter().map(|a| a.version).max();
        let irreversible: Vec<i64> = undo
            .iter()
            .copied()
            .filter(|v| {
                catalog.get(*v).is_some_and(|m| {
                    m.reversibility == crate::migrations::Reversibility::Irreversible
                })
            })
            .collect();
        if !undo.is_empty() && !o.force {
            let target = to.unwrap_or(0);
            if let Err(e) =
                crate::health::probes::check_against_schema(&integrity_only, catalog, target).await
            {
                refused.push(format!(
                    "trust '{id}': at {} the plan's patient-data tables would not exist, so the rollback would destroy them ({e}); pass --force to do it anyway",
                    catalogs.base().describe(to)
                ));
            }
        }
        if !irreversible.is_empty() && !o.force {
            refused.push(format!(
                "trust '{id}': migration(s) {irreversible:?} are marked irreversible (pass --force to run their down scripts anyway)"
            ));
        }
        crate::commands::print_line(&format!(
            "{id}: {} → {}: {}",
            catalogs.base().describe(current),
            catalogs.base().describe(to),
            if undo.is_empty() {
                "nothing to revert".to_string()
            } else {
                format!(
                    "revert {}",
                    undo.iter()
                        .map(|v| format!("{v:04}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ));
        if !undo.is_empty() {
            let snap = recorded
                .get(id)
                .filter(|(from, _)| *from == to)
                .map(|(_, s)| s.clone());
            work.push((id.clone(), to, snap));
        }
    }
    if !refused.is_empty() {
        return Err(Failure::new(ExitCode::Config, refused.join("\n")));
    }
    if o.dry_run || work.is_empty() {
        return Ok(());
    }
    if !o.yes {
        if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            return Err(Failure::new(
                ExitCode::Config,
                "refusing to roll back without confirmation: stdin is not a terminal; pass --yes",
            ));
        }
        if !crate::commands::ask(&format!("Roll back {} trust(s)?", work.len())) {
            return Err(Failure::new(
                ExitCode::Config,
                "rollback not confirmed; nothing was changed",
            ));
        }
    }
    let op = begin_operation(
        g,
        "rollback",
        &format!("rollback ({})", plan.name),
        &plan.path,
        &plan_sha256(&plan)?,
        explicit.flatten().unwrap_or(0),
    )
    .await?;
    let sinks = crate::commands::event_sinks(g, None)?;
    let control = RunControl::default();
    let engine = crate::engine::Engine {
        inventory: &inventory,
        catalogs: &catalogs,
        plan: &plan,
        events: &sinks,
        approver: &crate::commands::Prompt::all("rollback"),
        journal: Some(&op.journal),
        control: &control,
        resumed: None,
        workload: Default::default(),
    };
    let mut failures = Vec::new();
    for (id, to, snap) in &work {
        match engine.roll_back(id, *to, snap.as_ref(), o.force).await {
            Ok(r) => crate::commands::print_line(&format!(
                "  ✓ {id}: {} → {} ({} down migrations); {}",
                catalogs.base().describe(r.from),
                catalogs.base().describe(r.to),
                r.migrations,
                r.verified
            )),
            Err(e) => failures.push(format!("trust '{id}': {e}")),
        }
    }
    let result = if failures.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(
            ExitCode::RollbackFailed,
            format!(
                "rollback failed; an operator is needed:\n  {}",
                failures.join("\n  ")
            ),
        ))
    };
    op.end(&result).await;
    result
}

/// `flotilla repair TRUST --applied|--not-applied`.
pub async fn repair(g: &Globals, id: &str, applied: bool) -> Outcome {
    let (inventory, catalogs) = g.load()?;
    let trust = inventory.get(id).ok_or_else(|| {
        Failure::new(
            ExitCode::Config,
            format!("trust '{id}' is not in {}", g.inventory.display()),
        )
    })?;
    let op = begin_operation(g, "repair", "repair", &g.inventory, "-", 0).await?;
    let result = repair_locked(&op.journal, trust, &catalogs, applied).await;
    op.end(&result).await;
    result
}

async fn repair_locked(
    journal: &Journal,
    trust: &crate::config::Trust,
    catalogs: &Catalogs,
    applied: bool,
) -> Outcome {
    let id = trust.id.as_str();
    let fail = |e: crate::db::DbError| Failure::new(ExitCode::MigrationFailed, e.to_string());
    let mut db = crate::db::TrustDb::connect(trust, crate::db::Access::ReadWrite)
        .await
        .map_err(fail)?;
    let result = async {
        db.lock()
            .await
            .map_err(|e| Failure::new(ExitCode::Locked, e.to_string()))?;
        let rows = db.applied().await.map_err(fail)?;
        let Some(dirty) = rows.iter().rev().find(|r| r.dirty) else {
            return Err(Failure::new(
                ExitCode::Config,
                format!("trust '{id}' has no dirty migration: nothing to repair"),
            ));
        };
        let version = dirty.version;
        let mut dropped = Vec::new();
        if applied {
            db.mark_clean(version).await.map_err(fail)?;
        } else {
            let sql = catalogs
                .for_trust(id)
                .get(version)
                .map(|m| m.up.sql.to_lowercase())
                .unwrap_or_default();
            for index in db.invalid_indexes().await.map_err(fail)? {
                if sql.contains(&index.to_lowercase()) {
                    db.drop_index(&index).await.map_err(fail)?;
                    dropped.push(index);
                }
            }
            db.forget(version).await.map_err(fail)?;
        }
        let event = Event::Repaired {
            trust: id.to_string(),
            version,
            applied,
            dropped_indexes: dropped,
        };
        journal.record(&event).await?;
        if let Some(line) = crate::report::human::describe(&event) {
            crate::commands::print_line(&line);
        }
        Ok(())
    }
    .await;
    db.close().await;
    result
}
