//! Runs a rollout: preflight every trust (read-only), then wave by wave, trusts concurrently up
//! to the wave's concurrency. A failed trust stops the wave from starting anything new and stops
//! the run; trusts already in flight finish their own migrations.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures::stream::{self, StreamExt};

use super::events::{Event, EventSink, TrustOutcome};
use crate::config::plan::Approval;
use crate::config::{Inventory, Plan, Trust, Wave};
use crate::db::{Access, DbError, TrustDb};
use crate::exit_codes::ExitCode;
use crate::migrations::Catalog;
use crate::plan::{plan_rollout, verify, Action, Blocker, RolloutPlan, Step, TrustState};

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
    /// A trust failed; the run stopped after that wave's in-flight trusts finished.
    Failed { wave: String, trusts: Vec<String> },
    /// An approval wave was declined.
    NotApproved { wave: String },
}

impl RunOutcome {
    /// The documented exit code for this outcome.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            RunOutcome::Completed => ExitCode::Success,
            RunOutcome::Blocked { exit } => *exit,
            RunOutcome::Failed { .. } => ExitCode::MigrationFailed,
            RunOutcome::NotApproved { .. } => ExitCode::Config,
        }
    }

    fn label(&self) -> &'static str {
        match self {
            RunOutcome::Completed => "completed",
            RunOutcome::Blocked { .. } => "blocked",
            RunOutcome::Failed { .. } => "failed",
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
    Blocker::Unreadable { message: err.to_string(), exit }
}

/// Read a trust's applied history without changing anything.
pub async fn read_state(trust: &Trust) -> TrustState {
    let mut db = TrustDb::connect(trust, Access::ReadOnly).await.map_err(|e| blocker_from(&e))?;
    let applied = db.applied().await.map_err(|e| blocker_from(&e));
    db.close().await;
    applied
}

/// Read every trust of the plan (read-only, concurrently) and plan the rollout.
pub async fn preflight(inventory: &Inventory, catalog: &Catalog, plan: &Plan) -> RolloutPlan {
    let trusts: Vec<&Trust> = plan.trusts().filter_map(|id| inventory.get(id)).collect();
    let states: HashMap<String, TrustState> = stream::iter(trusts)
        .map(|t| async move { (t.id.clone(), read_state(t).await) })
        .buffer_unordered(READ_CONCURRENCY)
        .collect()
        .await;
    plan_rollout(catalog, plan, &states)
}

/// Everything a run needs.
pub struct Engine<'a> {
    /// The estate.
    pub inventory: &'a Inventory,
    /// The migrations.
    pub catalog: &'a Catalog,
    /// The plan being rolled out.
    pub plan: &'a Plan,
    /// Where events go.
    pub events: &'a dyn EventSink,
    /// Who approves approval waves.
    pub approver: &'a dyn Approver,
}

impl Engine<'_> {
    /// Run a preflighted plan to the end, or to the first failure.
    pub async fn run(&self, planned: &RolloutPlan) -> RunSummary {
        let started = Instant::now();
        let mut results = Vec::new();
        let outcome = self.run_waves(planned, &mut results).await;
        self.events.emit(&Event::RunFinished {
            outcome: outcome.label().into(),
            exit_code: outcome.exit_code().code(),
            duration_ms: elapsed_ms(started),
        });
        RunSummary { outcome, trusts: results }
    }

    async fn run_waves(&self, planned: &RolloutPlan, results: &mut Vec<(String, TrustOutcome)>) -> RunOutcome {
        let blocked: Vec<_> = planned.blocked().collect();
        if let Some((_, first)) = blocked.first() {
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
            return RunOutcome::Blocked { exit: first.exit_code() };
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
            let to_upgrade: Vec<&str> = wave_plan
                .trusts
                .iter()
                .filter(|t| matches!(t.action, Action::Upgrade { .. }))
                .map(|t| t.id.as_str())
                .collect();
            if wave.approval == Approval::Required && !to_upgrade.is_empty() {
                match self.approver.approve(wave) {
                    Some(by) => self.events.emit(&Event::WaveApproved { wave: wave.name.clone(), by }),
                    None => {
                        self.events.emit(&Event::WaveNotApproved { wave: wave.name.clone() });
                        return RunOutcome::NotApproved { wave: wave.name.clone() };
                    }
                }
            }
            self.events.emit(&Event::WaveStarted {
                wave: wave.name.clone(),
                index,
                trusts: wave.trusts.len(),
                to_upgrade: to_upgrade.len(),
                concurrency: wave.concurrency,
            });
            let stop = AtomicBool::new(false);
            let mut wave_results: Vec<(String, TrustOutcome)> = wave_plan
                .trusts
                .iter()
                .filter(|t| t.action == Action::UpToDate)
                .map(|t| {
                    self.events.emit(&Event::TrustFinished {
                        wave: wave.name.clone(),
                        trust: t.id.clone(),
                        version: t.current_version,
                        release: self.catalog.describe(t.current_version),
                        outcome: TrustOutcome::UpToDate,
                        duration_ms: 0,
                    });
                    (t.id.clone(), TrustOutcome::UpToDate)
                })
                .collect();
            let migrated: Vec<(String, TrustOutcome)> = stream::iter(wave_plan.trusts.iter().filter_map(|t| match &t.action {
                Action::Upgrade { steps } => Some((t, steps)),
                _ => None,
            }))
            .map(|(t, steps)| {
                let stop = &stop;
                async move {
                    let outcome = self.migrate_trust(&wave.name, &t.id, t.current_version, steps, stop).await;
                    if matches!(outcome, TrustOutcome::Failed { .. }) {
                        stop.store(true, Ordering::SeqCst);
                    }
                    (t.id.clone(), outcome)
                }
            })
            .buffer_unordered(wave.concurrency)
            .collect()
            .await;
            wave_results.extend(migrated);
            let count = |f: fn(&TrustOutcome) -> bool| wave_results.iter().filter(|(_, o)| f(o)).count();
            let failed: Vec<String> = wave_results
                .iter()
                .filter(|(_, o)| matches!(o, TrustOutcome::Failed { .. }))
                .map(|(id, _)| id.clone())
                .collect();
            self.events.emit(&Event::WaveFinished {
                wave: wave.name.clone(),
                upgraded: count(|o| matches!(o, TrustOutcome::Upgraded { .. })),
                up_to_date: count(|o| matches!(o, TrustOutcome::UpToDate)),
                failed: failed.len(),
                skipped: count(|o| matches!(o, TrustOutcome::Skipped)),
            });
            results.extend(wave_results);
            if !failed.is_empty() {
                return RunOutcome::Failed { wave: wave.name.clone(), trusts: failed };
            }
        }
        RunOutcome::Completed
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
            self.events.emit(&Event::TrustFinished {
                wave: wave.to_string(),
                trust: id.to_string(),
                version,
                release: self.catalog.describe(version),
                outcome: outcome.clone(),
                duration_ms: elapsed_ms(started),
            });
            outcome
        };
        if stop.load(Ordering::SeqCst) {
            return finish(planned_from, TrustOutcome::Skipped);
        }
        let Some(trust) = self.inventory.get(id) else {
            return finish(planned_from, TrustOutcome::Failed { error: format!("trust '{id}' is not in the inventory") });
        };
        let mut db = match TrustDb::connect(trust, Access::ReadWrite).await {
            Ok(db) => db,
            Err(e) => return finish(planned_from, TrustOutcome::Failed { error: e.to_string() }),
        };
        let result = self.migrate_locked(wave, &mut db, planned_from, planned).await;
        db.close().await;
        match result {
            Ok((version, n)) if n == 0 => finish(version, TrustOutcome::UpToDate),
            Ok((version, n)) => finish(version, TrustOutcome::Upgraded { migrations: n }),
            Err((version, e)) => finish(version, TrustOutcome::Failed { error: e }),
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
    ) -> Result<(Option<i64>, usize), (Option<i64>, String)> {
        let id = db.trust().to_string();
        db.lock().await.map_err(|e| (planned_from, e.to_string()))?;
        db.ensure_tracking_table().await.map_err(|e| (planned_from, e.to_string()))?;
        let applied = db.applied().await.map_err(|e| (planned_from, e.to_string()))?;
        let mut version = applied.iter().map(|a| a.version).max();
        let steps = match verify(self.catalog, &applied, self.plan.target.version) {
            Action::UpToDate => return Ok((version, 0)),
            Action::Upgrade { steps } => steps,
            Action::Blocked { blocker } => return Err((version, blocker.to_string())),
        };
        if steps != planned {
            tracing::info!(trust = %id, "state changed since preflight; following the database");
        }
        self.events.emit(&Event::TrustStarted {
            wave: wave.to_string(),
            trust: id.clone(),
            from: self.catalog.describe(version),
            to: self.catalog.describe(Some(self.plan.target.version)),
            migrations: steps.len(),
        });
        for step in &steps {
            let Some(m) = self.catalog.get(step.version) else {
                return Err((version, format!("migration {} vanished from the catalog", step.version)));
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
                    return Err((version, e.to_string()));
                }
            }
        }
        Ok((version, steps.len()))
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}
