//! Runs a rollout. Preflight reads every trust of the plan read-only (and draws the health
//! probes' parameters from each trust's own data), so nothing runs when any trust is blocked.
//! Then, wave by wave: approval → baseline on every trust to upgrade → migrate concurrently →
//! post-upgrade checks → verdicts → policy (continue / roll back and halt / pause) → soak rounds.
//! While a wave migrates, trusts of earlier waves keep being checked in the background.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};

use super::events::{Event, EventSink, TrustOutcome};
use super::policy::{decide, Next};
use crate::config::health::DEFAULT_WRITE_SAMPLES;
use crate::config::plan::Approval;
use crate::config::{Inventory, Plan, Trust, Wave};
use crate::db::{Access, DbError, TrustDb};
use crate::exit_codes::ExitCode;
use crate::health::gate::{judge, Judgement, Verdict, Window};
use crate::health::probes::{draw_params, measure, ProbeParams, Rows, Scope, Snapshot, WriteBatch};
use crate::journal::Journal;
use crate::migrations::{Catalog, Catalogs, Reversibility};
use crate::plan::{plan_rollout, verify, Action, Blocker, RolloutPlan, Step, TrustState};

/// Pauses before a window that did not pass is measured again: a latency regression stands
/// only when every one of these measurements confirms it (a real one persists; a burst of
/// load on a shared machine passes within seconds).
const CONFIRM_PAUSES: [Duration; 2] = [Duration::from_millis(500), Duration::from_secs(2)];

/// Pauses between attempts to reach a trust whose connection was refused or dropped; after
/// the last one the trust is marked failed and the wave's policy decides.
const RETRY_BACKOFF: [Duration; 4] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

/// How many trust databases preflight and `status` read at once.
pub const READ_CONCURRENCY: usize = 16;

/// Decides whether an approval wave may start. The engine never prompts by itself.
pub trait Approver: Send + Sync {
    /// `Some(who)` approves (e.g. "--yes", "operator"); `None` declines.
    fn approve(&self, wave: &Wave) -> Option<String>;
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// Every wave completed.
    Completed,
    /// Preflight found blocked trusts: nothing ran.
    Blocked { exit: ExitCode },
    /// A migration failed (or a trust was locked by another run); the run stopped after that
    /// wave's in-flight trusts finished.
    Failed {
        wave: String,
        trusts: Vec<String>,
        exit: ExitCode,
    },
    /// The health gate found a regression and stopped the run (after the policy's rollbacks).
    Halted {
        wave: String,
        trusts: Vec<String>,
        reasons: Vec<String>,
    },
    /// The gate could not decide (inconclusive, probe errors): an operator must look.
    Paused {
        wave: String,
        trusts: Vec<String>,
        reasons: Vec<String>,
    },
    /// A rollback failed or its integrity check did not match: an operator is needed.
    RollbackFailed {
        trusts: Vec<String>,
        reasons: Vec<String>,
    },
    /// An approval wave was declined.
    NotApproved { wave: String },
    /// The operator interrupted the run (Ctrl-C, SIGTERM); `resume` continues it.
    Interrupted,
    /// Another run took this run's lease over (this one had stopped heartbeating).
    LeaseLost { holder: String },
    /// The state database could not be written: nothing more is started unrecorded.
    JournalFailed { error: String, exit: ExitCode },
}

impl RunOutcome {
    /// The documented exit code for this outcome.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            RunOutcome::Completed => ExitCode::Success,
            RunOutcome::Blocked { exit } => *exit,
            RunOutcome::Failed { exit, .. } => *exit,
            RunOutcome::Halted { .. } | RunOutcome::Paused { .. } => ExitCode::HealthGate,
            RunOutcome::RollbackFailed { .. } => ExitCode::RollbackFailed,
            RunOutcome::NotApproved { .. } => ExitCode::Config,
            RunOutcome::Interrupted => ExitCode::Interrupted,
            RunOutcome::LeaseLost { .. } => ExitCode::Locked,
            // Almost always the environment (a full disk, a read-only or failing state
            // database): exit 9; a failure of flotilla's own SQL stays exit 1.
            RunOutcome::JournalFailed { exit, .. } => *exit,
        }
    }

    /// The status recorded for the run.
    pub fn label(&self) -> &'static str {
        match self {
            RunOutcome::Completed => "completed",
            RunOutcome::Blocked { .. } => "blocked",
            RunOutcome::Failed { .. } => "failed",
            RunOutcome::Halted { .. } => "halted",
            RunOutcome::Paused { .. } => "paused",
            RunOutcome::RollbackFailed { .. } => "rollback-failed",
            RunOutcome::NotApproved { .. } => "not-approved",
            RunOutcome::Interrupted => "interrupted",
            RunOutcome::LeaseLost { .. } => "lease-lost",
            RunOutcome::JournalFailed { .. } => "journal-failed",
        }
    }
}

/// The end state of a run.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// How it ended.
    pub outcome: RunOutcome,
    /// Every trust that was considered, with its outcome.
    pub trusts: Vec<(String, TrustOutcome)>,
}

fn blocker_from(err: &DbError) -> Blocker {
    let exit = match err {
        DbError::MissingSqliteFile { .. }
        | DbError::NotAFile { .. }
        | DbError::MissingEnv { .. }
        | DbError::PasswordFile { .. }
        | DbError::BadUrl { .. } => ExitCode::Config,
        DbError::Locked { .. } => ExitCode::Locked,
        _ => ExitCode::MigrationFailed,
    };
    Blocker::Unreadable {
        message: err.to_string(),
        exit,
    }
}

/// Read a trust's applied history without changing anything.
pub async fn read_state(trust: &Trust) -> TrustState {
    read_state_within(trust, crate::config::plan::Timeouts::default().lock).await
}

/// [`read_state`], waiting at most `lock_wait` for a lock another session holds on the trust
/// (a migration in progress, a long write): then the trust is reported as locked, with how
/// long was waited, instead of queueing behind it.
pub async fn read_state_within(trust: &Trust, lock_wait: Duration) -> TrustState {
    let started = Instant::now();
    let waited = |e: &DbError| {
        let b = blocker_from(e);
        if is_lock_wait(e) {
            Blocker::Unreadable {
                message: format!(
                    "{e} (waited {:.1} s for another session's lock; the plan's timeouts.lock is {})",
                    started.elapsed().as_secs_f64(),
                    humantime::format_duration(lock_wait)
                ),
                exit: ExitCode::Locked,
            }
        } else {
            b
        }
    };
    let mut db = TrustDb::connect_within(trust, Access::ReadOnly, Some(lock_wait))
        .await
        .map_err(|e| waited(&e))?;
    let applied = db.applied().await.map_err(|e| waited(&e));
    db.close().await;
    applied
}

/// Whether an error is a lock wait that ran out (SQLite busy/locked, Postgres
/// `lock_not_available`).
fn is_lock_wait(e: &DbError) -> bool {
    let source = match e {
        DbError::Query { source, .. } | DbError::MigrationFailed { source, .. } => source,
        DbError::Unreachable { message, .. } => {
            return message.contains("database is locked") || message.contains("(code: 5)")
        }
        _ => return false,
    };
    match source {
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| matches!(c.as_ref(), "5" | "6" | "517" | "262" | "55P03")),
        _ => false,
    }
}

/// The result of preflight: the planned rollout and each trust's probe parameters.
pub struct Preflight {
    /// What would run.
    pub plan: RolloutPlan,
    /// Probe parameters drawn from each trust to upgrade.
    pub params: HashMap<String, ProbeParams>,
    /// How long preflight took (reading every trust, waiting for locks): part of the run's
    /// reported duration.
    pub elapsed: Duration,
}

/// Read every trust of the plan (read-only, concurrently), plan the rollout, and draw the
/// health probes' parameters from every trust that would be upgraded: a probe that cannot run
/// on a trust blocks the run before anything changes.
pub async fn preflight(inventory: &Inventory, catalogs: &Catalogs, plan: &Plan) -> Preflight {
    let started = Instant::now();
    let trusts: Vec<&Trust> = plan.trusts().filter_map(|id| inventory.get(id)).collect();
    let lock_wait = plan.timeouts.lock;
    let states: HashMap<String, TrustState> = stream::iter(trusts)
        .map(|t| async move { (t.id.clone(), read_state_within(t, lock_wait).await) })
        .buffer_unordered(READ_CONCURRENCY)
        .collect()
        .await;
    let mut planned = plan_rollout(catalogs, plan, &states);
    let mut params = HashMap::new();
    if !plan.health.is_empty() {
        let to_upgrade: Vec<&Trust> = planned
            .waves
            .iter()
            .flat_map(|w| &w.trusts)
            .filter(|t| matches!(t.action, Action::Upgrade { .. }))
            .filter_map(|t| inventory.get(&t.id))
            .collect();
        let drawn: Vec<(String, Result<ProbeParams, String>)> = stream::iter(to_upgrade)
            .map(|t| async move { (t.id.clone(), draw_params(t, &plan.health).await) })
            .buffer_unordered(READ_CONCURRENCY)
            .collect()
            .await;
        for (id, result) in drawn {
            match result {
                Ok(p) => {
                    params.insert(id, p);
                }
                Err(message) => {
                    for t in planned
                        .waves
                        .iter_mut()
                        .flat_map(|w| &mut w.trusts)
                        .filter(|t| t.id == id)
                    {
                        t.action = Action::Blocked {
                            blocker: Blocker::Unreadable {
                                message: format!(
                                    "trust '{id}': health probes cannot run: {message}"
                                ),
                                exit: ExitCode::Config,
                            },
                        };
                    }
                }
            }
        }
    }
    Preflight {
        plan: planned,
        params,
        elapsed: started.elapsed(),
    }
}

/// Everything a run needs.
pub struct Engine<'a> {
    /// The estate.
    pub inventory: &'a Inventory,
    /// The migrations (shared, and per trust with local ones).
    pub catalogs: &'a Catalogs,
    /// The plan being rolled out.
    pub plan: &'a Plan,
    /// Where events go.
    pub events: &'a dyn EventSink,
    /// Who approves approval waves.
    pub approver: &'a dyn Approver,
    /// Where every event is recorded before the engine goes on (write-ahead), if anywhere.
    pub journal: Option<&'a Journal>,
    /// Stop requests (signals, a lost lease, a failed journal write).
    pub control: &'a RunControl,
    /// What an interrupted run already did, when this is a resume.
    pub resumed: Option<&'a Resumed>,
    /// The trusts' real workload readings (PostgreSQL with `pg_stat_statements`).
    pub workload: crate::health::workload::Tracker,
}

/// Why a run should stop starting new work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// Another run took the lease.
    LeaseLost(String),
    /// The journal could not be written.
    JournalFailed(String, ExitCode),
}

/// Shared stop flag: once set, nothing new starts; in-flight migrations finish.
#[derive(Debug, Default)]
pub struct RunControl {
    stop: Mutex<Option<StopReason>>,
}

impl RunControl {
    /// Ask the run to stop (the first reason wins).
    pub fn stop(&self, reason: StopReason) {
        if let Ok(mut s) = self.stop.lock() {
            s.get_or_insert(reason);
        }
    }

    /// Whether a stop was asked for.
    pub fn stopping(&self) -> bool {
        self.reason().is_some()
    }

    /// Why, if so.
    pub fn reason(&self) -> Option<StopReason> {
        self.stop.lock().ok().and_then(|s| s.clone())
    }

    fn outcome(&self) -> Option<RunOutcome> {
        self.reason().map(|r| match r {
            StopReason::Interrupted => RunOutcome::Interrupted,
            StopReason::LeaseLost(holder) => RunOutcome::LeaseLost { holder },
            StopReason::JournalFailed(error, exit) => RunOutcome::JournalFailed { error, exit },
        })
    }
}

/// What the journal of an interrupted run says, for `resume`.
#[derive(Debug, Default, Clone)]
pub struct Resumed {
    /// Waves whose trusts passed their checks and soak.
    pub passed_waves: BTreeSet<String>,
    /// Trust → (wave, version before the upgrade, probe params, baseline snapshot).
    pub baselines: HashMap<String, (String, Option<i64>, ProbeParams, Snapshot)>,
    /// Trusts whose post-upgrade check passed.
    pub checked: BTreeSet<String>,
}

/// What the gate knows about an upgraded trust.
#[derive(Clone)]
struct Watched {
    wave: String,
    from: Option<i64>,
    baseline: Snapshot,
    params: ProbeParams,
    rewrites: BTreeSet<(String, String)>,
    /// Writes and losses the write probe has seen since the upgrade (shared by the clones
    /// that soak and background checks hold): the loss bound they prove together.
    writes_seen: std::sync::Arc<Mutex<(usize, usize)>>,
}

#[derive(Default)]
struct RunState {
    results: Vec<(String, TrustOutcome)>,
    /// Upgraded trusts still on the new version, with their baselines (soak and background).
    watched: Vec<(String, Watched)>,
    failed_trusts: usize,
}

impl Engine<'_> {
    /// A trust to watch in `wave`, from the baseline an earlier attempt recorded.
    fn watched_from_journal(
        &self,
        id: &str,
        wave: &str,
        (from, params, baseline): (&Option<i64>, &ProbeParams, &Snapshot),
    ) -> Watched {
        Watched {
            wave: wave.to_string(),
            from: *from,
            baseline: baseline.clone(),
            params: params.clone(),
            rewrites: self.rewrites_between(id, *from),
            writes_seen: Default::default(),
        }
    }

    fn gated(&self) -> bool {
        !self.plan.health.is_empty()
    }

    /// Report an event and, when journalled, wait until it is durable. A journal that cannot
    /// be written stops the run: nothing may happen that is not recorded.
    async fn emit(&self, event: Event) {
        if let Some(j) = self.journal {
            if let Err(e) = j.record(&event).await {
                tracing::error!(error = %e, "the journal could not be written: stopping the run");
                self.control
                    .stop(StopReason::JournalFailed(e.to_string(), e.exit_code()));
            }
        }
        self.events.emit(&event);
    }

    /// [`emit`](Self::emit) for several events at once: one journal transaction for all of them
    /// (e.g. every trust of a wave already up to date), then each is reported in order.
    async fn emit_all(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        if let Some(j) = self.journal {
            if let Err(e) = j.record_all(&events).await {
                tracing::error!(error = %e, "the journal could not be written: stopping the run");
                self.control
                    .stop(StopReason::JournalFailed(e.to_string(), e.exit_code()));
            }
        }
        for event in &events {
            self.events.emit(event);
        }
    }

    /// Run a preflighted plan to the end, or to the first failure.
    pub async fn run(&self, preflight: &Preflight) -> RunSummary {
        let started = Instant::now();
        let mut state = RunState::default();
        let mut outcome = self.run_waves(preflight, &mut state).await;
        if outcome == RunOutcome::Completed {
            if let Some(stopped) = self.control.outcome() {
                outcome = stopped;
            }
        }
        if outcome == RunOutcome::Interrupted {
            self.emit(Event::Interrupted { abort: false }).await;
        }
        if let RunOutcome::Halted { wave, reasons, .. } | RunOutcome::Paused { wave, reasons, .. } =
            &outcome
        {
            self.emit(Event::Halted {
                wave: wave.clone(),
                reason: reasons.join("; "),
            })
            .await;
        }
        self.emit(Event::RunFinished {
            outcome: outcome.label().into(),
            exit_code: outcome.exit_code().code(),
            duration_ms: elapsed_ms(started)
                .saturating_add(u64::try_from(preflight.elapsed.as_millis()).unwrap_or(0)),
        })
        .await;
        RunSummary {
            outcome,
            trusts: state.results,
        }
    }

    async fn run_waves(&self, preflight: &Preflight, state: &mut RunState) -> RunOutcome {
        let planned = &preflight.plan;
        if let Some(exit) = planned.blocked_exit_code() {
            for w in &planned.waves {
                for t in &w.trusts {
                    if let Action::Blocked { blocker } = &t.action {
                        self.emit(Event::TrustBlocked {
                            wave: w.name.clone(),
                            trust: t.id.clone(),
                            reason: blocker.to_string(),
                        })
                        .await;
                    }
                }
            }
            return RunOutcome::Blocked { exit };
        }
        self.emit(Event::RunStarted {
            plan: planned.plan.clone(),
            target_version: planned.target.version,
            target_release: planned.target.release.clone(),
            waves: planned.waves.len(),
            trusts: planned.waves.iter().map(|w| w.trusts.len()).sum(),
            migrations: planned.migration_count(),
        })
        .await;
        for (index, (wave, wave_plan)) in self.plan.waves.iter().zip(&planned.waves).enumerate() {
            if let Some(stopped) = self.control.outcome() {
                return stopped;
            }
            if let Some(r) = self.resumed.filter(|r| r.passed_waves.contains(&wave.name)) {
                // Passed before the interruption: its trusts are watched, not re-gated.
                for t in &wave_plan.trusts {
                    if let Some((w, from, params, baseline)) = r.baselines.get(&t.id) {
                        let watched = self.watched_from_journal(&t.id, w, (from, params, baseline));
                        state.watched.push((t.id.clone(), watched));
                    }
                }
                continue;
            }
            let upgrades: Vec<(&str, Option<i64>, &[Step])> = wave_plan
                .trusts
                .iter()
                .filter_map(|t| match &t.action {
                    Action::Upgrade { steps } => {
                        Some((t.id.as_str(), t.current_version, steps.as_slice()))
                    }
                    _ => None,
                })
                .collect();
            if wave.approval == Approval::Required && !upgrades.is_empty() {
                match self.approver.approve(wave) {
                    Some(by) => {
                        self.emit(Event::WaveApproved {
                            wave: wave.name.clone(),
                            by,
                        })
                        .await
                    }
                    None => {
                        self.emit(Event::WaveNotApproved {
                            wave: wave.name.clone(),
                        })
                        .await;
                        return RunOutcome::NotApproved {
                            wave: wave.name.clone(),
                        };
                    }
                }
            }
            self.emit(Event::WaveStarted {
                wave: wave.name.clone(),
                index,
                trusts: wave.trusts.len(),
                to_upgrade: upgrades.len(),
                concurrency: wave.concurrency,
            })
            .await;
            if let Some(outcome) = self
                .run_wave(wave, wave_plan, &upgrades, preflight, state)
                .await
            {
                return outcome;
            }
        }
        RunOutcome::Completed
    }

    /// One wave. `Some(outcome)` stops the run.
    async fn run_wave(
        &self,
        wave: &Wave,
        wave_plan: &crate::plan::WavePlan,
        upgrades: &[(&str, Option<i64>, &[Step])],
        preflight: &Preflight,
        state: &mut RunState,
    ) -> Option<RunOutcome> {
        let mut wave_results: Vec<(String, TrustOutcome)> = Vec::new();
        let mut up_to_date = Vec::new();
        for t in wave_plan
            .trusts
            .iter()
            .filter(|t| t.action == Action::UpToDate)
        {
            up_to_date.push(self.finished_event(
                &wave.name,
                &t.id,
                t.current_version,
                TrustOutcome::UpToDate,
                0,
            ));
            wave_results.push((t.id.clone(), TrustOutcome::UpToDate));
        }
        // Nothing happens to these trusts: one journal transaction records them all.
        self.emit_all(up_to_date).await;
        // On resume: trusts this run upgraded before it was interrupted, whose post-upgrade
        // check never passed, are checked now against the baseline recorded before.
        let mut verify_only: Vec<String> = Vec::new();

        // Baseline, sequentially: the same conditions as the post-upgrade window.
        let mut baselines: HashMap<String, Watched> = HashMap::new();
        if self.gated() {
            // Every trust's workload baseline window opens now, before the first baseline.
            self.workload_mark(upgrades.iter().map(|(id, _, _)| *id))
                .await;
            let mut broken = Vec::new();
            for (id, from, steps) in upgrades {
                let Some(trust) = self.inventory.get(id) else {
                    continue;
                };
                if let Some((_, first_from, params, baseline)) = self
                    .resumed
                    .and_then(|r| r.baselines.get(*id))
                    .filter(|(_, first_from, _, _)| first_from != from)
                {
                    // Part-way through its upgrade when the run stopped: its true baseline is
                    // the one recorded before the first migration (it cannot be re-measured).
                    let watched =
                        self.watched_from_journal(id, &wave.name, (first_from, params, baseline));
                    baselines.insert(id.to_string(), watched);
                    continue;
                }
                let params = preflight.params.get(*id).cloned().unwrap_or_default();
                let rewrites = self.rewrites(id, steps);
                let baseline = self
                    .measure(
                        id,
                        &wave.name,
                        trust,
                        &params,
                        &rewrites,
                        Rows::Fresh,
                        Scope::Full,
                        "baseline",
                    )
                    .await;
                self.emit(Event::BaselineRecorded {
                    wave: wave.name.clone(),
                    trust: id.to_string(),
                    from: *from,
                    params: params.clone(),
                })
                .await;
                let problems = snapshot_errors(&baseline);
                if !problems.is_empty() {
                    let verdict =
                        Verdict::Error(problems.iter().map(|p| format!("baseline: {p}")).collect());
                    // Nothing was upgraded: the verdict is about the baseline, not the upgrade.
                    self.emit_verdict(&wave.name, id, Window::Baseline, &verdict, Vec::new())
                        .await;
                    broken.push((id.to_string(), verdict));
                }
                baselines.insert(
                    id.to_string(),
                    Watched {
                        wave: wave.name.clone(),
                        from: *from,
                        baseline,
                        params,
                        rewrites,
                        writes_seen: Default::default(),
                    },
                );
            }
            for t in wave_plan
                .trusts
                .iter()
                .filter(|t| t.action == Action::UpToDate)
            {
                let Some(r) = self.resumed else { break };
                if r.checked.contains(&t.id) {
                    // Upgraded and checked before the interruption: soaks with its wave.
                    if let Some((_, from, params, baseline)) = r.baselines.get(&t.id) {
                        let watched =
                            self.watched_from_journal(&t.id, &wave.name, (from, params, baseline));
                        state.watched.push((t.id.clone(), watched));
                    }
                    continue;
                }
                if let Some((_, from, params, baseline)) = r.baselines.get(&t.id) {
                    let watched =
                        self.watched_from_journal(&t.id, &wave.name, (from, params, baseline));
                    baselines.insert(t.id.clone(), watched);
                    verify_only.push(t.id.clone());
                }
            }
            if !broken.is_empty() {
                state.results.extend(wave_results);
                return Some(RunOutcome::Paused {
                    wave: wave.name.clone(),
                    trusts: broken.iter().map(|(t, _)| t.clone()).collect(),
                    reasons: broken
                        .iter()
                        .flat_map(|(t, v)| v.reasons().iter().map(move |r| format!("{t}: {r}")))
                        .collect(),
                });
            }
        }

        // Migrate, while earlier waves' trusts keep being checked in the background.
        let stop = AtomicBool::new(false);
        let done = AtomicBool::new(false);
        let late: Mutex<Vec<(String, Verdict)>> = Mutex::new(Vec::new());
        let migrate = async {
            let out: Vec<(String, TrustOutcome)> = stream::iter(upgrades.iter())
                .map(|(id, from, steps)| {
                    let stop = &stop;
                    async move {
                        let outcome = self.migrate_trust(&wave.name, id, *from, steps, stop).await;
                        if matches!(outcome, TrustOutcome::Failed { .. }) {
                            stop.store(true, Ordering::SeqCst);
                        }
                        (id.to_string(), outcome)
                    }
                })
                .buffer_unordered(wave.concurrency)
                .collect()
                .await;
            done.store(true, Ordering::SeqCst);
            out
        };
        let background = self.watch_earlier_waves(&wave.name, &state.watched, &done, &late);
        let (migrated, ()) = futures::join!(migrate, background);
        wave_results.extend(migrated);

        let failed_migrations: Vec<String> = wave_results
            .iter()
            .filter(|(_, o)| matches!(o, TrustOutcome::Failed { .. }))
            .map(|(id, _)| id.clone())
            .collect();
        let mut upgraded: Vec<String> = wave_results
            .iter()
            .filter(|(_, o)| matches!(o, TrustOutcome::Upgraded { .. }))
            .map(|(id, _)| id.clone())
            .collect();
        upgraded.extend(verify_only);
        if let Some(stopped) = self.control.outcome() {
            // Interrupted: what was applied stays (each migration committed with its row);
            // resume checks these trusts against the baselines recorded above.
            self.emit_wave_finished(&wave.name, &wave_results).await;
            state.results.extend(wave_results);
            return Some(stopped);
        }

        // Post-upgrade checks and the policy.
        let mut verdicts: Vec<(String, Verdict)> = Vec::new();
        if self.gated() {
            // The workload windows after the upgrade open once the wave's migrations are done,
            // so that no migration (nor the locks it held) is counted in them.
            self.workload_mark(upgraded.iter().map(String::as_str))
                .await;
            for id in &upgraded {
                let Some(w) = baselines.get(id) else { continue };
                let j = self
                    .confirmed(id, w, Scope::Full, Window::PostUpgrade, "post-upgrade")
                    .await;
                self.emit_judgement(&wave.name, id, Window::PostUpgrade, &j)
                    .await;
                verdicts.push((id.clone(), j.verdict));
            }
        }
        // Suspects seen in the background, under the load of this wave's migrations, are
        // checked again now that it is quiet: only a confirmed regression counts.
        let suspects = late.into_inner().unwrap_or_default();
        let mut late_verdicts = Vec::new();
        for (id, _) in suspects {
            let Some((_, w)) = state.watched.iter().find(|(t, _)| *t == id) else {
                continue;
            };
            let j = self
                .confirmed(&id, w, Scope::Soak, Window::Soak, "late-check")
                .await;
            self.emit_judgement(&wave.name, &id, Window::Soak, &j).await;
            late_verdicts.push((id, j.verdict));
        }
        self.emit_wave_finished(&wave.name, &wave_results).await;
        state.results.extend(wave_results);
        for id in &upgraded {
            if let Some(w) = baselines.remove(id) {
                state.watched.push((id.clone(), w));
            }
        }
        // One decision over this wave's verdicts and any confirmed late regression of an
        // earlier wave, so neither is dropped when the other halts.
        verdicts.extend(late_verdicts);
        if let Some(outcome) = self.apply_policy(&wave.name, &verdicts, state).await {
            return Some(outcome);
        }
        if !failed_migrations.is_empty() {
            // A lock held by another run is exit 6, any other failure exit 4.
            let locked = state.results.iter().any(
                |(_, o)| matches!(o, TrustOutcome::Failed { exit_code, .. } if *exit_code == ExitCode::Locked.code()),
            );
            return Some(RunOutcome::Failed {
                wave: wave.name.clone(),
                trusts: failed_migrations,
                exit: if locked {
                    ExitCode::Locked
                } else {
                    ExitCode::MigrationFailed
                },
            });
        }
        if let Some(outcome) = self.soak(wave, state).await {
            return Some(outcome);
        }
        if let Some(stopped) = self.control.outcome() {
            return Some(stopped);
        }
        self.emit(Event::WavePassed {
            wave: wave.name.clone(),
        })
        .await;
        None
    }

    /// Turn verdicts into rollbacks and the next step.
    async fn apply_policy(
        &self,
        wave: &str,
        verdicts: &[(String, Verdict)],
        state: &mut RunState,
    ) -> Option<RunOutcome> {
        if verdicts.is_empty() {
            return None;
        }
        let decision = decide(
            verdicts,
            self.plan.on_regression,
            self.plan.max_failed_trusts,
            state.failed_trusts,
        );
        state.failed_trusts += verdicts
            .iter()
            .filter(|(_, v)| matches!(v, Verdict::Fail(_)))
            .count();
        let mut rollback_failures = Vec::new();
        for id in &decision.rollback {
            let Some(pos) = state.watched.iter().position(|(t, _)| t == id) else {
                continue;
            };
            let (_, watched) = state.watched.remove(pos);
            if let Err(e) = self.rollback_trust(id, &watched).await {
                self.emit(Event::RollbackFailed {
                    trust: id.clone(),
                    error: e.clone(),
                })
                .await;
                rollback_failures.push(format!("{id}: {e}"));
            }
        }
        let reasons: Vec<String> = verdicts
            .iter()
            .filter(|(_, v)| *v != Verdict::Pass)
            .flat_map(|(t, v)| v.reasons().iter().map(move |r| format!("{t}: {r}")))
            .collect();
        let trusts: Vec<String> = verdicts
            .iter()
            .filter(|(_, v)| *v != Verdict::Pass)
            .map(|(t, _)| t.clone())
            .collect();
        if !rollback_failures.is_empty() {
            return Some(RunOutcome::RollbackFailed {
                trusts: decision.rollback.clone(),
                reasons: rollback_failures,
            });
        }
        match decision.then {
            Next::Continue => None,
            Next::Halt => Some(RunOutcome::Halted {
                wave: wave.to_string(),
                trusts,
                reasons,
            }),
            Next::Pause => Some(RunOutcome::Paused {
                wave: wave.to_string(),
                trusts,
                reasons,
            }),
        }
    }

    /// Soak: `rounds` passing rounds over the trusts this wave upgraded before the next wave
    /// starts. (Trusts of earlier waves are watched in the background while later waves run.)
    async fn soak(&self, wave: &Wave, state: &mut RunState) -> Option<RunOutcome> {
        let soak = wave.soak?;
        let this_wave: Vec<(String, Watched)> = state
            .watched
            .iter()
            .filter(|(_, w)| w.wave == wave.name)
            .cloned()
            .collect();
        if !self.gated() || this_wave.is_empty() {
            return None;
        }
        for round in 1..=soak.rounds {
            tokio::time::sleep(soak.interval).await;
            if let Some(stopped) = self.control.outcome() {
                return Some(stopped);
            }
            self.emit(Event::SoakRound {
                wave: wave.name.clone(),
                round,
                of: soak.rounds,
                trusts: this_wave.len(),
            })
            .await;
            let mut verdicts = Vec::new();
            for (id, w) in &this_wave {
                let j = self
                    .confirmed(id, w, Scope::Soak, Window::Soak, &format!("soak-{round}"))
                    .await;
                self.emit_judgement(&wave.name, id, Window::Soak, &j).await;
                verdicts.push((id.clone(), j.verdict));
            }
            if let Some(outcome) = self.apply_policy(&wave.name, &verdicts, state).await {
                return Some(outcome);
            }
        }
        None
    }

    /// Measure a trust and judge the window against its baseline.
    async fn judged(
        &self,
        id: &str,
        w: &Watched,
        scope: Scope,
        kind: Window,
        label: &str,
    ) -> Judgement {
        let Some(trust) = self.inventory.get(id) else {
            return Judgement {
                verdict: Verdict::Error(vec![format!("trust '{id}' is not in the inventory")]),
                critical: false,
                latency: Vec::new(),
                workload: None,
                writes: None,
            };
        };
        let snap = self
            .measure(
                id,
                &w.wave,
                trust,
                &w.params,
                &w.rewrites,
                Rows::Of(&w.baseline),
                scope,
                label,
            )
            .await;
        let mut j = judge(&self.plan.health, &w.baseline, &snap, kind);
        if let (Some(figures), Ok(mut seen)) = (j.writes.as_mut(), w.writes_seen.lock()) {
            *seen = figures.accumulate(*seen);
        }
        j
    }

    /// Like [`judged`](Self::judged), but a window that does not pass only on latency is
    /// measured again after each of [`CONFIRM_PAUSES`], and only a regression every
    /// measurement shows counts: a real regression persists, a burst of load does not.
    /// Lost or changed data (a critical failure) is never measured away.
    async fn confirmed(
        &self,
        id: &str,
        w: &Watched,
        scope: Scope,
        kind: Window,
        label: &str,
    ) -> Judgement {
        let mut judgement = self.judged(id, w, scope, kind, label).await;
        for (attempt, pause) in CONFIRM_PAUSES.iter().enumerate() {
            if judgement.verdict == Verdict::Pass || judgement.critical {
                break;
            }
            tokio::time::sleep(*pause).await;
            let again = self
                .judged(
                    id,
                    w,
                    scope,
                    kind,
                    &format!("{label}-confirm-{}", attempt + 1),
                )
                .await;
            if again.verdict == Verdict::Pass {
                tracing::info!(trust = id, first = ?judgement.verdict, "not confirmed on a later measurement: treated as noise");
            }
            judgement = again;
        }
        judgement
    }

    /// While a wave migrates, keep checking the trusts of earlier waves every soak interval.
    /// Anything that does not pass is a suspect, checked again once the wave's migrations end.
    async fn watch_earlier_waves(
        &self,
        wave: &str,
        watched: &[(String, Watched)],
        done: &AtomicBool,
        late: &Mutex<Vec<(String, Verdict)>>,
    ) {
        let Some(interval) = self
            .plan
            .waves
            .iter()
            .find(|w| w.name == wave)
            .and_then(|w| w.soak)
            .map(|s| s.interval)
        else {
            return;
        };
        if !self.gated() || watched.is_empty() {
            return;
        }
        let tick = interval.max(Duration::from_millis(100));
        let mut round = 0;
        loop {
            let deadline = Instant::now() + tick;
            while Instant::now() < deadline {
                if done.load(Ordering::SeqCst) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            round += 1;
            for (id, w) in watched {
                if done.load(Ordering::SeqCst) {
                    return;
                }
                let j = self
                    .judged(
                        id,
                        w,
                        Scope::Soak,
                        Window::Soak,
                        &format!("background-{round}"),
                    )
                    .await;
                if j.verdict != Verdict::Pass {
                    if let Ok(mut l) = late.lock() {
                        if !l.iter().any(|(t, _)| t == id) {
                            l.push((id.clone(), j.verdict));
                        }
                    }
                }
            }
        }
    }

    /// Down migrations in reverse to the version the trust was at, then integrity must equal
    /// the pre-upgrade figures.
    async fn rollback_trust(&self, id: &str, w: &Watched) -> Result<(), String> {
        let trust = self
            .inventory
            .get(id)
            .ok_or_else(|| format!("trust '{id}' is not in the inventory"))?;
        let catalog = self.catalogs.for_trust(id);
        let mut db = TrustDb::connect(trust, Access::ReadWrite)
            .await
            .map_err(|e| e.to_string())?;
        let result = self.revert_locked(&mut db, catalog, w.from).await;
        db.close().await;
        let version = result?;
        let after = self
            .measure(
                id,
                &w.wave,
                trust,
                &w.params,
                &w.rewrites,
                Rows::Of(&w.baseline),
                Scope::Integrity,
                "after-rollback",
            )
            .await;
        let j = judge(
            &self.plan.health,
            &w.baseline,
            &after,
            Window::AfterRollback,
        );
        self.emit_verdict(&w.wave, id, Window::AfterRollback, &j.verdict, Vec::new())
            .await;
        match j.verdict {
            Verdict::Pass => {
                self.emit(Event::RollbackFinished {
                    trust: id.to_string(),
                    version,
                    release: self.catalogs.base().describe(version),
                })
                .await
            }
            other => {
                return Err(format!(
                    "rolled back to {} but the data does not match the pre-upgrade figures: {}",
                    self.catalogs.base().describe(version),
                    other.reasons().join("; ")
                ))
            }
        }
        Ok(())
    }

    async fn revert_locked(
        &self,
        db: &mut TrustDb,
        catalog: &Catalog,
        to: Option<i64>,
    ) -> Result<Option<i64>, String> {
        self.revert_locked_forced(db, catalog, to, false).await
    }

    async fn revert_locked_forced(
        &self,
        db: &mut TrustDb,
        catalog: &Catalog,
        to: Option<i64>,
        force: bool,
    ) -> Result<Option<i64>, String> {
        db.lock().await.map_err(|e| e.to_string())?;
        let t = self.plan.timeouts;
        db.set_timeouts(t.lock, t.statement)
            .await
            .map_err(|e| e.to_string())?;
        let applied = db.applied().await.map_err(|e| e.to_string())?;
        let mut current = applied.iter().map(|a| a.version).max();
        let mut undo = Vec::new();
        for a in applied
            .iter()
            .rev()
            .filter(|a| to.is_none_or(|t| a.version > t))
        {
            let m = catalog.get(a.version).ok_or_else(|| {
                format!(
                    "migration {} is not in the catalog: cannot roll it back",
                    a.version
                )
            })?;
            if m.reversibility == Reversibility::Irreversible && !force {
                return Err(format!(
                    "migration {m} is marked irreversible: refusing to roll it back automatically"
                ));
            }
            undo.push(m);
        }
        self.emit(Event::RollbackStarted {
            trust: db.trust().to_string(),
            from: self.catalogs.base().describe(current),
            to: self.catalogs.base().describe(to),
            migrations: undo.len(),
        })
        .await;
        for m in undo {
            self.emit(Event::MigrationReverting {
                trust: db.trust().to_string(),
                version: m.version,
            })
            .await;
            db.revert(m).await.map_err(|e| e.to_string())?;
            current = applied
                .iter()
                .map(|a| a.version)
                .filter(|v| *v < m.version)
                .max();
            self.emit(Event::MigrationReverted {
                trust: db.trust().to_string(),
                version: m.version,
                now_at: current,
            })
            .await;
        }
        Ok(current)
    }

    /// The (table, column) pairs the migrations from `from` to the target declare they rewrite.
    fn rewrites_between(&self, id: &str, from: Option<i64>) -> BTreeSet<(String, String)> {
        self.catalogs
            .for_trust(id)
            .range(from, self.plan.target.version)
            .flat_map(|m| m.rewrites.iter().cloned())
            .collect()
    }

    /// Measure a trust. The write probe's records are journalled before the first is
    /// inserted and again once they are all removed, so a crash in between leaves a note of
    /// what to clean up. The writes are sized for `wave` ([`crate::config::health::Health::write_sizing`]): the
    /// baseline makes fewer (enough for write latency), every later window the share of the
    /// writes the plan's `max_loss_rate` needs.
    #[allow(clippy::too_many_arguments)]
    async fn measure(
        &self,
        id: &str,
        wave: &str,
        trust: &Trust,
        params: &ProbeParams,
        rewrites: &BTreeSet<(String, String)>,
        rows: Rows<'_>,
        scope: Scope,
        label: &str,
    ) -> Snapshot {
        let batch = (scope != Scope::Integrity)
            .then(|| self.write_batch(wave, label == "baseline"))
            .flatten();
        if let Some(b) = &batch {
            self.emit(Event::WriteProbeStarted {
                trust: id.to_string(),
                id: b.first_id,
                count: b.count,
            })
            .await;
        }
        let workload = scope != Scope::Integrity;
        if workload {
            let notice = self.workload.open(trust, &self.plan.health).await;
            self.workload_notice(id, notice).await;
        }
        let mut snap = measure(
            trust,
            &self.plan.health,
            params,
            rewrites,
            rows,
            scope,
            batch.clone(),
        )
        .await;
        if workload {
            snap.workload = self.workload.close(trust, &self.plan.health).await;
        }
        if let (Some(b), Some(Ok(_))) = (&batch, &snap.write) {
            self.emit(Event::WriteProbeCleaned {
                trust: id.to_string(),
                id: b.first_id,
            })
            .await;
        }
        self.emit(Event::HealthMeasured {
            trust: id.to_string(),
            window: label.to_string(),
            snapshot: snap.clone(),
        })
        .await;
        snap
    }

    /// The write records of one window of `wave` (`None` without a write probe).
    fn write_batch(&self, wave: &str, baseline: bool) -> Option<WriteBatch> {
        let health = &self.plan.health;
        let soak = self
            .plan
            .waves
            .iter()
            .find(|w| w.name == wave)
            .map_or(health.soak, |w| w.soak);
        // The plan was refused at load when the sizing fails; the default is a fallback only.
        let (per_window, baseline_count, sessions) = match health.write_sizing(soak)? {
            Ok(s) => (s.per_window, s.baseline, s.concurrency),
            Err(_) => (DEFAULT_WRITE_SAMPLES, DEFAULT_WRITE_SAMPLES, 1),
        };
        Some(WriteBatch::new(
            if baseline { baseline_count } else { per_window },
            sessions,
        ))
    }

    fn rewrites(&self, id: &str, steps: &[Step]) -> BTreeSet<(String, String)> {
        let catalog = self.catalogs.for_trust(id);
        steps
            .iter()
            .filter_map(|s| catalog.get(s.version))
            .flat_map(|m| m.rewrites.iter().cloned())
            .collect()
    }

    async fn emit_verdict(
        &self,
        wave: &str,
        trust: &str,
        window: Window,
        verdict: &Verdict,
        latency: Vec<crate::health::gate::LatencyComparison>,
    ) {
        self.emit(Event::HealthVerdict {
            wave: wave.to_string(),
            trust: trust.to_string(),
            window,
            verdict: verdict.clone(),
            latency,
            workload: None,
            writes: None,
        })
        .await;
    }

    /// [`emit_verdict`](Self::emit_verdict) with every figure of a judgement (latency and the
    /// real workload).
    async fn emit_judgement(&self, wave: &str, trust: &str, window: Window, j: &Judgement) {
        self.emit(Event::HealthVerdict {
            wave: wave.to_string(),
            trust: trust.to_string(),
            window,
            verdict: j.verdict.clone(),
            latency: j.latency.clone(),
            workload: j.workload.clone(),
            writes: j.writes.clone(),
        })
        .await;
    }

    /// Open a new workload window on each of these trusts now (a few at a time), and say once
    /// per trust when its workload cannot be read.
    async fn workload_mark(&self, ids: impl Iterator<Item = &str>) {
        let trusts: Vec<&Trust> = ids.filter_map(|id| self.inventory.get(id)).collect();
        let notices: Vec<(String, Option<String>)> = stream::iter(trusts)
            .map(|t| async move { (t.id.clone(), self.workload.mark(t, &self.plan.health).await) })
            .buffer_unordered(READ_CONCURRENCY)
            .collect()
            .await;
        for (id, notice) in notices {
            self.workload_notice(&id, notice).await;
        }
    }

    async fn workload_notice(&self, trust: &str, reason: Option<String>) {
        if let Some(reason) = reason {
            tracing::info!(trust, %reason, "the real workload is not judged on this trust: the probes are its only signal");
            self.emit(Event::WorkloadUnavailable {
                trust: trust.to_string(),
                reason,
            })
            .await;
        }
    }

    fn finished_event(
        &self,
        wave: &str,
        trust: &str,
        version: Option<i64>,
        outcome: TrustOutcome,
        duration_ms: u64,
    ) -> Event {
        Event::TrustFinished {
            wave: wave.to_string(),
            trust: trust.to_string(),
            version,
            release: self.catalogs.base().describe(version),
            outcome,
            duration_ms,
        }
    }

    async fn emit_wave_finished(&self, wave: &str, results: &[(String, TrustOutcome)]) {
        let count = |f: fn(&TrustOutcome) -> bool| results.iter().filter(|(_, o)| f(o)).count();
        self.emit(Event::WaveFinished {
            wave: wave.to_string(),
            upgraded: count(|o| matches!(o, TrustOutcome::Upgraded { .. })),
            up_to_date: count(|o| matches!(o, TrustOutcome::UpToDate)),
            failed: count(|o| matches!(o, TrustOutcome::Failed { .. })),
            skipped: count(|o| matches!(o, TrustOutcome::Skipped)),
        })
        .await;
    }

    async fn migrate_trust(
        &self,
        wave: &str,
        id: &str,
        planned_from: Option<i64>,
        planned: &[Step],
        stop: &AtomicBool,
    ) -> TrustOutcome {
        let started = Instant::now();
        // Events that record what already happened (a migration applied) wait here and go to
        // the journal in one transaction with the next record that must precede an action
        // (the next migration's start, the trust's end): half the commits, and every
        // write-ahead record is still durable before its action.
        let mut pending = Vec::new();
        let (version, outcome) = if stop.load(Ordering::SeqCst) || self.control.stopping() {
            (planned_from, TrustOutcome::Skipped)
        } else {
            self.migrate_with_retries(wave, id, planned_from, planned, &mut pending)
                .await
        };
        pending.push(self.finished_event(wave, id, version, outcome.clone(), elapsed_ms(started)));
        self.emit_all(pending).await;
        outcome
    }

    /// Connect, lock and migrate; a connection that is refused or drops is retried with
    /// backoff ([`RETRY_BACKOFF`]), each time from the trust's real state.
    async fn migrate_with_retries(
        &self,
        wave: &str,
        id: &str,
        planned_from: Option<i64>,
        planned: &[Step],
        pending: &mut Vec<Event>,
    ) -> (Option<i64>, TrustOutcome) {
        let Some(trust) = self.inventory.get(id) else {
            return (
                planned_from,
                TrustOutcome::Failed {
                    error: format!("trust '{id}' is not in the inventory"),
                    exit_code: ExitCode::Internal.code(),
                },
            );
        };
        let mut applied_so_far = 0;
        let mut expect = Some((planned_from, planned));
        let mut attempt = 0;
        loop {
            let result = match TrustDb::connect(trust, Access::ReadWrite).await {
                Ok(mut db) => {
                    let r = self.migrate_locked(wave, &mut db, expect, pending).await;
                    db.close().await;
                    r
                }
                Err(e) => Err(Fault {
                    version: expect.map_or(planned_from, |(v, _)| v),
                    applied: 0,
                    message: e.to_string(),
                    exit: blocker_from(&e).exit_code(),
                    connection: e.is_connection_fault(),
                }),
            };
            match result {
                Ok((version, n, interrupted)) => {
                    let n = n + applied_so_far;
                    let outcome = if interrupted {
                        TrustOutcome::Interrupted { migrations: n }
                    } else if n == 0 {
                        TrustOutcome::UpToDate
                    } else {
                        TrustOutcome::Upgraded { migrations: n }
                    };
                    return (version, outcome);
                }
                Err(f)
                    if f.connection
                        && attempt < RETRY_BACKOFF.len()
                        && !self.control.stopping() =>
                {
                    let pause = RETRY_BACKOFF[attempt];
                    attempt += 1;
                    applied_so_far += f.applied;
                    pending.push(Event::TrustRetrying {
                        trust: id.to_string(),
                        attempt,
                        of: RETRY_BACKOFF.len(),
                        after_ms: u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
                        error: f.message.clone(),
                    });
                    self.emit_all(std::mem::take(pending)).await;
                    tokio::time::sleep(pause).await;
                    // Continue from what the database really holds now.
                    expect = None;
                }
                Err(f) => {
                    return (
                        f.version,
                        TrustOutcome::Failed {
                            error: f.message,
                            exit_code: f.exit.code(),
                        },
                    )
                }
            }
        }
    }

    /// Lock, re-read the real state (the database is the truth, not the preflight), apply.
    /// `expect`: what preflight planned; when the trust no longer matches it, nothing is
    /// applied (`None` on a retry: continue from whatever the database holds). Returns the
    /// version reached, the number of migrations applied, and whether a stop request ended it
    /// early (between two migrations: each one commits whole or not at all).
    async fn migrate_locked(
        &self,
        wave: &str,
        db: &mut TrustDb,
        expect: Option<(Option<i64>, &[Step])>,
        pending: &mut Vec<Event>,
    ) -> Result<(Option<i64>, usize, bool), Fault> {
        let id = db.trust().to_string();
        let catalog = self.catalogs.for_trust(&id);
        let fault = |version: Option<i64>, applied: usize, e: &DbError, exit: ExitCode| Fault {
            version,
            applied,
            message: e.to_string(),
            exit,
            connection: e.is_connection_fault(),
        };
        let known = expect.and_then(|(v, _)| v);
        db.lock()
            .await
            .map_err(|e| fault(known, 0, &e, blocker_from(&e).exit_code()))?;
        let t = self.plan.timeouts;
        db.set_timeouts(t.lock, t.statement)
            .await
            .map_err(|e| fault(known, 0, &e, ExitCode::MigrationFailed))?;
        db.ensure_tracking_table()
            .await
            .map_err(|e| fault(known, 0, &e, ExitCode::MigrationFailed))?;
        let applied = db
            .applied()
            .await
            .map_err(|e| fault(known, 0, &e, ExitCode::MigrationFailed))?;
        let mut version = applied.iter().map(|a| a.version).max();
        let plain = |message: String, exit: ExitCode, version: Option<i64>| Fault {
            version,
            applied: 0,
            message,
            exit,
            connection: false,
        };
        let steps = match verify(catalog, &applied, self.plan.target.version) {
            Action::UpToDate => return Ok((version, 0, false)),
            Action::Upgrade { steps } => steps,
            Action::Blocked { blocker } => {
                return Err(plain(blocker.to_string(), blocker.exit_code(), version))
            }
        };
        if let Some((planned_from, planned)) = expect {
            if steps != planned || version != planned_from {
                // Another hand changed the trust since preflight: the baseline and the
                // rollback target no longer describe it. Stop rather than guess.
                return Err(plain(
                    format!(
                        "the trust changed between preflight and migration (was at {}, now at {}); nothing was applied, run the rollout again",
                        self.catalogs.base().describe(planned_from),
                        self.catalogs.base().describe(version)
                    ),
                    ExitCode::MigrationFailed,
                    version,
                ));
            }
        }
        pending.push(Event::TrustStarted {
            wave: wave.to_string(),
            trust: id.clone(),
            from: self.catalogs.base().describe(version),
            to: self
                .catalogs
                .base()
                .describe(Some(self.plan.target.version)),
            migrations: steps.len(),
        });
        for (done, step) in steps.iter().enumerate() {
            if self.control.stopping() {
                return Ok((version, done, true));
            }
            let Some(m) = catalog.get(step.version) else {
                return Err(plain(
                    format!("migration {} vanished from the catalog", step.version),
                    ExitCode::Internal,
                    version,
                ));
            };
            // Write-ahead: durable (with what was pending) before the migration starts.
            pending.push(Event::MigrationStarted {
                trust: id.clone(),
                version: m.version,
                description: m.description.clone(),
                before: version,
            });
            self.emit_all(std::mem::take(pending)).await;
            if matches!(self.control.reason(), Some(StopReason::JournalFailed(..))) {
                // Its start could not be recorded: it must not run unrecorded.
                return Ok((version, done, true));
            }
            match db.apply(m, step.resume_dirty).await {
                Ok(took) => {
                    version = Some(m.version);
                    pending.push(Event::MigrationApplied {
                        trust: id.clone(),
                        version: m.version,
                        duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
                    });
                }
                Err(e) => {
                    pending.push(Event::MigrationFailed {
                        trust: id.clone(),
                        version: m.version,
                        error: e.to_string(),
                    });
                    self.emit_all(std::mem::take(pending)).await;
                    return Err(fault(version, done, &e, ExitCode::MigrationFailed));
                }
            }
        }
        Ok((version, steps.len(), false))
    }
}

/// Why migrating a trust stopped short.
struct Fault {
    /// The version the trust is known to be at.
    version: Option<i64>,
    /// Migrations applied (committed) before the fault.
    applied: usize,
    message: String,
    exit: ExitCode,
    /// The connection was refused or dropped: worth retrying.
    connection: bool,
}

/// Every measurement of a snapshot that could not be taken.
fn snapshot_errors(s: &Snapshot) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    out.extend(s.latency.iter().filter_map(|(n, r)| {
        r.as_ref()
            .err()
            .map(|e| format!("latency probe '{n}': {e}"))
    }));
    out.extend(
        s.integrity
            .iter()
            .filter_map(|(n, r)| r.as_ref().err().map(|e| format!("integrity of '{n}': {e}"))),
    );
    out.extend(
        s.invariants
            .iter()
            .filter_map(|(n, r)| r.as_ref().err().map(|e| format!("invariant '{n}': {e}"))),
    );
    if let Some(Err(e)) = &s.write {
        out.push(format!("write probe: {e}"));
    }
    if let Some(Err(e)) = &s.workload {
        out.push(format!("workload (pg_stat_statements): {e}"));
    }
    if let Some(Ok(w)) = &s.write {
        if w.lost > 0 {
            out.push(format!(
                "write probe: data not reliably saved even before the upgrade: {} of {} writes lost: {}",
                w.lost,
                w.writes,
                w.failures.join("; ")
            ));
        }
    }
    out
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Engine<'_> {
    /// Finish a rollback an interrupted run started: down migrations to the version recorded
    /// before the upgrade, then the same integrity verification as the gate's rollback.
    pub async fn finish_rollback(&self, id: &str, resumed: &Resumed) -> Result<(), String> {
        let Some((wave, from, params, baseline)) = resumed.baselines.get(id) else {
            return Err(format!(
                "the journal has no pre-upgrade baseline for trust '{id}': roll it back by hand"
            ));
        };
        let w = self.watched_from_journal(id, wave, (from, params, baseline));
        self.rollback_trust(id, &w).await
    }
}

/// What an operator's rollback of one trust did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolledBack {
    /// The version the trust was at.
    pub from: Option<i64>,
    /// The version it is at now.
    pub to: Option<i64>,
    /// Down migrations run.
    pub migrations: usize,
    /// How integrity was verified.
    pub verified: String,
}

impl Engine<'_> {
    /// `flotilla rollback` for one trust: down migrations in reverse to `to`, then integrity.
    /// With `recorded` (the baseline a run measured when the trust was at `to`), the figures
    /// must equal it exactly, as after the gate's own rollback; without, row counts and the
    /// hash of every key column the reverted migrations do not declare they rewrite must be
    /// unchanged by the rollback.
    pub async fn roll_back(
        &self,
        id: &str,
        to: Option<i64>,
        recorded: Option<&Snapshot>,
        force: bool,
    ) -> Result<RolledBack, String> {
        let trust = self
            .inventory
            .get(id)
            .ok_or_else(|| format!("trust '{id}' is not in the inventory"))?;
        let catalog = self.catalogs.for_trust(id);
        let integrity_only = crate::config::health::Health {
            integrity: self.plan.health.integrity.clone(),
            ..Default::default()
        };
        let mut db = TrustDb::connect(trust, Access::ReadWrite)
            .await
            .map_err(|e| e.to_string())?;
        let from = match db.applied().await {
            Ok(a) => a.iter().map(|a| a.version).max(),
            Err(e) => {
                db.close().await;
                return Err(e.to_string());
            }
        };
        // The migrations above `to` up to the trust's version: what the rollback reverts.
        let reverting: Vec<&crate::migrations::Migration> = from
            .map(|f| catalog.range(to, f).collect())
            .unwrap_or_default();
        let rewrites: BTreeSet<(String, String)> = reverting
            .iter()
            .flat_map(|m| m.rewrites.iter().cloned())
            .collect();
        let params = ProbeParams::new();
        let before = self
            .measure(
                id,
                "rollback",
                trust,
                &params,
                &rewrites,
                Rows::Fresh,
                Scope::Integrity,
                "before-rollback",
            )
            .await;
        let problems = snapshot_errors(&before);
        if !problems.is_empty() {
            db.close().await;
            return Err(format!(
                "cannot measure integrity before the rollback: {}",
                problems.join("; ")
            ));
        }
        let result = self.revert_locked_forced(&mut db, catalog, to, force).await;
        db.close().await;
        let now_at = match result {
            Ok(v) => v,
            Err(error) => {
                self.emit(Event::RollbackFailed {
                    trust: id.to_string(),
                    error: error.clone(),
                })
                .await;
                return Err(error);
            }
        };
        let migrations = reverting.len();
        let after = self
            .measure(
                id,
                "rollback",
                trust,
                &params,
                &rewrites,
                Rows::Of(recorded.unwrap_or(&before)),
                Scope::Integrity,
                "after-rollback",
            )
            .await;
        let (judgement, verified) = match recorded {
            Some(baseline) => (
                judge(&integrity_only, baseline, &after, Window::AfterRollback),
                "integrity equals the figures recorded before the upgrade".to_string(),
            ),
            None => (
                judge(&integrity_only, &before, &after, Window::PostUpgrade),
                "row counts and undeclared key-column hashes unchanged by the rollback".to_string(),
            ),
        };
        self.emit_verdict(
            "rollback",
            id,
            Window::AfterRollback,
            &judgement.verdict,
            Vec::new(),
        )
        .await;
        if judgement.verdict != Verdict::Pass {
            let error = format!(
                "rolled back to {} but integrity does not match: {}",
                self.catalogs.base().describe(now_at),
                judgement.verdict.reasons().join("; ")
            );
            self.emit(Event::RollbackFailed {
                trust: id.to_string(),
                error: error.clone(),
            })
            .await;
            return Err(error);
        }
        self.emit(Event::RollbackFinished {
            trust: id.to_string(),
            version: now_at,
            release: self.catalogs.base().describe(now_at),
        })
        .await;
        Ok(RolledBack {
            from,
            to: now_at,
            migrations,
            verified,
        })
    }
}
