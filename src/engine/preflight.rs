//! Preflight: every trust of the plan read read-only (and concurrently) before anything runs,
//! the rollout planned from what they hold, and the health probes' parameters drawn from each
//! trust to upgrade, so that nothing runs when any trust is blocked. Also [`read_state`], the
//! read-only look at one trust that `status`, `resume` and `rollback` use.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};

use crate::config::{Inventory, Plan, Trust};
use crate::db::{Access, DbError, TrustDb};
use crate::exit_codes::ExitCode;
use crate::health::probes::{draw_params, ProbeParams};
use crate::migrations::Catalogs;
use crate::plan::{plan_rollout, Action, Blocker, RolloutPlan, TrustState};

/// How many trust databases preflight and `status` read at once.
pub const READ_CONCURRENCY: usize = 16;

/// A trust that could not be read, with the exit code its error gives.
fn unreadable(err: &DbError) -> Blocker {
    Blocker::Unreadable {
        message: err.to_string(),
        exit: err.exit_code(),
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
            unreadable(e)
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
    preflight_with(inventory, catalogs, plan, None).await
}

/// [`preflight`], its reads of the trusts made by workers when `remote` is set
/// (`rollout --workers`: see [`super::jobs`]).
pub async fn preflight_with(
    inventory: &Inventory,
    catalogs: &Catalogs,
    plan: &Plan,
    remote: Option<&dyn super::jobs::Dispatch>,
) -> Preflight {
    let started = Instant::now();
    let trusts: Vec<&Trust> = plan.trusts().filter_map(|id| inventory.get(id)).collect();
    let lock_wait = plan.timeouts.lock;
    let states: HashMap<String, TrustState> = stream::iter(trusts)
        .map(|t| async move {
            let state = match remote {
                Some(r) => super::jobs::survey_read(r, &t.id).await,
                None => read_state_within(t, lock_wait).await,
            };
            (t.id.clone(), state)
        })
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
            .map(|t| async move {
                let drawn = match remote {
                    Some(r) => super::jobs::survey_draw(r, &t.id).await,
                    None => draw_params(t, &plan.health).await,
                };
                (t.id.clone(), drawn)
            })
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
