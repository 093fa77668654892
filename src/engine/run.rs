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
use crate::config::plan::Approval;
use crate::config::{Inventory, Plan, Trust, Wave};
use crate::db::{Access, DbError, TrustDb};
use crate::exit_codes::ExitCode;
use crate::health::gate::{judge, Judgement, Verdict, Window};
use crate::health::probes::{draw_params, measure, ProbeParams, Scope, Snapshot};
use crate::migrations::{Catalog, Catalogs, Reversibility};
use crate::plan::{plan_rollout, verify, Action, Blocker, RolloutPlan, Step, TrustState};

/// Pauses before a window that did not pass is measured again: a latency regression stands
/// only when every one of these measurements confirms it (a real one persists; a burst of
/// load on a shared machine passes within seconds).
const CONFIRM_PAUSES: [Duration; 2] = [Duration::from_millis(500), Duration::from_secs(2)];

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
        }
    }

    fn label(&self) -> &'static str {
        match self {
            RunOutcome::Completed => "completed",
            RunOutcome::Blocked { .. } => "blocked",
            RunOutcome::Failed { .. } => "failed",
            RunOutcome::Halted { .. } => "halted",
            RunOutcome::Paused { .. } => "paused",
            RunOutcome::RollbackFailed { .. } => "rollback-failed",
            RunOutcome::NotApproved { .. } => "not-approved",
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
    let mut db = TrustDb::connect(trust, Access::ReadOnly)
        .await
        .map_err(|e| blocker_from(&e))?;
    let applied = db.applied().await.map_err(|e| blocker_from(&e));
    db.close().await;
    applied
}

/// The result of preflight: the planned rollout and each trust's probe parameters.
pub struct Preflight {
    /// What would run.
    pub plan: RolloutPlan,
    /// Probe parameters drawn from each trust to upgrade.
    pub params: HashMap<String, ProbeParams>,
}

/// Read every trust of the plan (read-only, concurrently), plan the rollout, and draw the
/// health probes' parameters from every trust that would be upgraded: a probe that cannot run
/// on a trust blocks the run before anything changes.
pub async fn preflight(inventory: &Inventory, catalogs: &Catalogs, plan: &Plan) -> Preflight {
    let trusts: Vec<&Trust> = plan.trusts().filter_map(|id| inventory.get(id)).collect();
    let states: HashMap<String, TrustState> = stream::iter(trusts)
        .map(|t| async move { (t.id.clone(), read_state(t).await) })
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
}

/// What the gate knows about an upgraded trust.
#[derive(Clone)]
struct Watched {
    wave: String,
    from: Option<i64>,
    baseline: Snapshot,
    params: ProbeParams,
    rewrites: BTreeSet<(String, String)>,
}

#[derive(Default)]
struct RunState {
    results: Vec<(String, TrustOutcome)>,
    /// Upgraded trusts still on the new version, with their baselines (soak and background).
    watched: Vec<(String, Watched)>,
    failed_trusts: usize,
}

impl Engine<'_> {
    fn gated(&self) -> bool {
        !self.plan.health.is_empty()
    }

    /// Run a preflighted plan to the end, or to the first failure.
    pub async fn run(&self, preflight: &Preflight) -> RunSummary {
        let started = Instant::now();
        let mut state = RunState::default();
        let outcome = self.run_waves(preflight, &mut state).await;
        if let RunOutcome::Halted { wave, reasons, .. } | RunOutcome::Paused { wave, reasons, .. } =
            &outcome
        {
            self.events.emit(&Event::Halted {
                wave: wave.clone(),
                reason: reasons.join("; "),
            });
        }
        self.events.emit(&Event::RunFinished {
            outcome: outcome.label().into(),
            exit_code: outcome.exit_code().code(),
            duration_ms: elapsed_ms(started),
        });
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
                        self.events.emit(&Event::TrustBlocked {
                            wave: w.name.clone(),
                            trust: t.id.clone(),
                            reason: blocker.to_string(),
                        });
                    }
                }
            }
            return RunOutcome::Blocked { exit };
        }
        self.events.emit(&Event::RunStarted {
            plan: planned.plan.clone(),
            target_version: planned.target.version,
            target_release: planned.target.release.clone(),
            waves: planned.waves.len(),
            trusts: planned.waves.iter().map(|w| w.trusts.len()).sum(),
            migrations: planned.migration_count(),
        });
        for (index, (wave, wave_plan)) in self.plan.waves.iter().zip(&planned.waves).enumerate() {
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
                    Some(by) => self.events.emit(&Event::WaveApproved {
                        wave: wave.name.clone(),
                        by,
                    }),
                    None => {
                        self.events.emit(&Event::WaveNotApproved {
                            wave: wave.name.clone(),
                        });
                        return RunOutcome::NotApproved {
                            wave: wave.name.clone(),
                        };
                    }
                }
            }
            self.events.emit(&Event::WaveStarted {
                wave: wave.name.clone(),
                index,
                trusts: wave.trusts.len(),
                to_upgrade: upgrades.len(),
                concurrency: wave.concurrency,
            });
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
        for t in wave_plan
            .trusts
            .iter()
            .filter(|t| t.action == Action::UpToDate)
        {
            self.emit_finished(
                &wave.name,
                &t.id,
                t.current_version,
                TrustOutcome::UpToDate,
                0,
            );
            wave_results.push((t.id.clone(), TrustOutcome::UpToDate));
        }

        // Baseline, sequentially: the same conditions as the post-upgrade window.
        let mut baselines: HashMap<String, Watched> = HashMap::new();
        if self.gated() {
            let mut broken = Vec::new();
            for (id, from, steps) in upgrades {
                let Some(trust) = self.inventory.get(id) else {
                    continue;
                };
                let params = preflight.params.get(*id).cloned().unwrap_or_default();
                let rewrites = self.rewrites(id, steps);
                let baseline =
                    measure(trust, &self.plan.health, &params, &rewrites, Scope::Full).await;
                self.events.emit(&Event::HealthMeasured {
                    trust: id.to_string(),
                    window: "baseline".into(),
                    snapshot: baseline.clone(),
                });
                let problems = snapshot_errors(&baseline);
                if !problems.is_empty() {
                    let verdict =
                        Verdict::Error(problems.iter().map(|p| format!("baseline: {p}")).collect());
                    self.emit_verdict(&wave.name, id, Window::PostUpgrade, &verdict, Vec::new());
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
                    },
                );
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
        let upgraded: Vec<String> = wave_results
            .iter()
            .filter(|(_, o)| matches!(o, TrustOutcome::Upgraded { .. }))
            .map(|(id, _)| id.clone())
            .collect();

        // Post-upgrade checks and the policy.
        let mut verdicts: Vec<(String, Verdict)> = Vec::new();
        if self.gated() {
            for id in &upgraded {
                let Some(w) = baselines.get(id) else { continue };
                let j = self
                    .confirmed(id, w, Scope::Full, Window::PostUpgrade, "post-upgrade")
                    .await;
                self.emit_verdict(&wave.name, id, Window::PostUpgrade, &j.verdict, j.latency);
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
            self.emit_verdict(&wave.name, &id, Window::Soak, &j.verdict, j.latency);
            late_verdicts.push((id, j.verdict));
        }
        self.emit_wave_finished(&wave.name, &wave_results);
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
        self.soak(wave, state).await
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
                self.events.emit(&Event::RollbackFailed {
                    trust: id.clone(),
                    error: e.clone(),
                });
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
            self.events.emit(&Event::SoakRound {
                wave: wave.name.clone(),
                round,
                of: soak.rounds,
                trusts: this_wave.len(),
            });
            let mut verdicts = Vec::new();
            for (id, w) in &this_wave {
                let j = self
                    .confirmed(id, w, Scope::Soak, Window::Soak, &format!("soak-{round}"))
                    .await;
                self.emit_verdict(&wave.name, id, Window::Soak, &j.verdict, j.latency);
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
            };
        };
        let snap = measure(trust, &self.plan.health, &w.params, &w.rewrites, scope).await;
        self.events.emit(&Event::HealthMeasured {
            trust: id.to_string(),
            window: label.to_string(),
            snapshot: snap.clone(),
        });
        judge(&self.plan.health, &w.baseline, &snap, kind)
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
        let after = measure(
            trust,
            &self.plan.health,
            &w.params,
            &w.rewrites,
            Scope::Integrity,
        )
        .await;
        self.events.emit(&Event::HealthMeasured {
            trust: id.to_string(),
            window: "after-rollback".into(),
            snapshot: after.clone(),
        });
        let j = judge(
            &self.plan.health,
            &w.baseline,
            &after,
            Window::AfterRollback,
        );
        self.emit_verdict(&w.wave, id, Window::AfterRollback, &j.verdict, Vec::new());
        match j.verdict {
            Verdict::Pass => self.events.emit(&Event::RollbackFinished {
                trust: id.to_string(),
                version,
                release: self.catalogs.base().describe(version),
            }),
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
        db.lock().await.map_err(|e| e.to_string())?;
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
            if m.reversibility == Reversibility::Irreversible {
                return Err(format!(
                    "migration {m} is marked irreversible: refusing to roll it back automatically"
                ));
            }
            undo.push(m);
        }
        self.events.emit(&Event::RollbackStarted {
            trust: db.trust().to_string(),
            from: self.catalogs.base().describe(current),
            to: self.catalogs.base().describe(to),
            migrations: undo.len(),
        });
        for m in undo {
            db.revert(m).await.map_err(|e| e.to_string())?;
            current = applied
                .iter()
                .map(|a| a.version)
                .filter(|v| *v < m.version)
                .max();
        }
        Ok(current)
    }

    fn rewrites(&self, id: &str, steps: &[Step]) -> BTreeSet<(String, String)> {
        let catalog = self.catalogs.for_trust(id);
        steps
            .iter()
            .filter_map(|s| catalog.get(s.version))
            .flat_map(|m| m.rewrites.iter().cloned())
            .collect()
    }

    fn emit_verdict(
        &self,
        wave: &str,
        trust: &str,
        window: Window,
        verdict: &Verdict,
        latency: Vec<crate::health::gate::LatencyComparison>,
    ) {
        self.events.emit(&Event::HealthVerdict {
            wave: wave.to_string(),
            trust: trust.to_string(),
            window,
            verdict: verdict.clone(),
            latency,
        });
    }

    fn emit_finished(
        &self,
        wave: &str,
        trust: &str,
        version: Option<i64>,
        outcome: TrustOutcome,
        duration_ms: u64,
    ) {
        self.events.emit(&Event::TrustFinished {
            wave: wave.to_string(),
            trust: trust.to_string(),
            version,
            release: self.catalogs.base().describe(version),
            outcome,
            duration_ms,
        });
    }

    fn emit_wave_finished(&self, wave: &str, results: &[(String, TrustOutcome)]) {
        let count = |f: fn(&TrustOutcome) -> bool| results.iter().filter(|(_, o)| f(o)).count();
        self.events.emit(&Event::WaveFinished {
            wave: wave.to_string(),
            upgraded: count(|o| matches!(o, TrustOutcome::Upgraded { .. })),
            up_to_date: count(|o| matches!(o, TrustOutcome::UpToDate)),
            failed: count(|o| matches!(o, TrustOutcome::Failed { .. })),
            skipped: count(|o| matches!(o, TrustOutcome::Skipped)),
        });
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
        let finish = |version: Option<i64>, outcome: TrustOutcome| {
            self.emit_finished(wave, id, version, outcome.clone(), elapsed_ms(started));
            outcome
        };
        if stop.load(Ordering::SeqCst) {
            return finish(planned_from, TrustOutcome::Skipped);
        }
        let Some(trust) = self.inventory.get(id) else {
            return finish(
                planned_from,
                TrustOutcome::Failed {
                    error: format!("trust '{id}' is not in the inventory"),
                    exit_code: ExitCode::Internal.code(),
                },
            );
        };
        let mut db = match TrustDb::connect(trust, Access::ReadWrite).await {
            Ok(db) => db,
            Err(e) => {
                return finish(
                    planned_from,
                    TrustOutcome::Failed {
                        error: e.to_string(),
                        exit_code: blocker_from(&e).exit_code().code(),
                    },
                )
            }
        };
        let result = self
            .migrate_locked(wave, &mut db, planned_from, planned)
            .await;
        db.close().await;
        match result {
            Ok((version, 0)) => finish(version, TrustOutcome::UpToDate),
            Ok((version, n)) => finish(version, TrustOutcome::Upgraded { migrations: n }),
            Err((version, e, code)) => finish(
                version,
                TrustOutcome::Failed {
                    error: e,
                    exit_code: code.code(),
                },
            ),
        }
    }

    /// Lock, re-read the real state (the database is the truth, not the preflight), apply.
    /// Returns the version reached and the number of migrations applied.
    async fn migrate_locked(
        &self,
        wave: &str,
        db: &mut TrustDb,
        planned_from: Option<i64>,
        planned: &[Step],
    ) -> Result<(Option<i64>, usize), (Option<i64>, String, ExitCode)> {
        let id = db.trust().to_string();
        let catalog = self.catalogs.for_trust(&id);
        db.lock()
            .await
            .map_err(|e| (planned_from, e.to_string(), blocker_from(&e).exit_code()))?;
        db.ensure_tracking_table()
            .await
            .map_err(|e| (planned_from, e.to_string(), ExitCode::MigrationFailed))?;
        let applied = db
            .applied()
            .await
            .map_err(|e| (planned_from, e.to_string(), ExitCode::MigrationFailed))?;
        let mut version = applied.iter().map(|a| a.version).max();
        let steps = match verify(catalog, &applied, self.plan.target.version) {
            Action::UpToDate => return Ok((version, 0)),
            Action::Upgrade { steps } => steps,
            Action::Blocked { blocker } => {
                return Err((version, blocker.to_string(), blocker.exit_code()))
            }
        };
        if steps != planned || version != planned_from {
            // Another hand changed the trust since preflight: the baseline and the rollback
            // target no longer describe it. Stop rather than guess.
            return Err((
                version,
                format!(
                    "the trust changed between preflight and migration (was at {}, now at {}); nothing was applied, run the rollout again",
                    self.catalogs.base().describe(planned_from),
                    self.catalogs.base().describe(version)
                ),
                ExitCode::MigrationFailed,
            ));
        }
        self.events.emit(&Event::TrustStarted {
            wave: wave.to_string(),
            trust: id.clone(),
            from: self.catalogs.base().describe(version),
            to: self
                .catalogs
                .base()
                .describe(Some(self.plan.target.version)),
            migrations: steps.len(),
        });
        for step in &steps {
            let Some(m) = catalog.get(step.version) else {
                return Err((
                    version,
                    format!("migration {} vanished from the catalog", step.version),
                    ExitCode::Internal,
                ));
            };
            self.events.emit(&Event::MigrationStarted {
                trust: id.clone(),
                version: m.version,
                description: m.description.clone(),
            });
            match db.apply(m, step.resume_dirty).await {
                Ok(took) => {
                    version = Some(m.version);
                    self.events.emit(&Event::MigrationApplied {
                        trust: id.clone(),
                        version: m.version,
                        duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
                    });
                }
                Err(e) => {
                    self.events.emit(&Event::MigrationFailed {
                        trust: id.clone(),
                        version: m.version,
                        error: e.to_string(),
                    });
                    return Err((version, e.to_string(), ExitCode::MigrationFailed));
                }
            }
        }
        Ok((version, steps.len()))
    }
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
    if let Some(Ok(crate::health::probes::WriteOutcome::Lost { detail })) = &s.write {
        out.push(format!(
            "write probe: data not reliably saved even before the upgrade: {detail}"
        ));
    }
    out
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}
