//! Preflight: every trust of the plan read read-only (and concurrently) before anything runs,
//! the rollout planned from what they hold, and the health probes' parameters drawn from each
//! trust to upgrade, so that nothing runs when any trust is blocked. Also [`read_state`], the
//! read-only look at one trust that `status`, `resume` and `rollback` use.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};

use crate::config::{Inventory, Plan, Trust};
use crate::db::{reuse, Access, DbError, TrustDb};
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
    let (state, db) = read_state_keeping(trust, lock_wait).await;
    if let Some(db) = db {
        db.close().await;
    }
    state
}

/// [`read_state_within`], handing back the open connection when the read succeeded (the
/// caller closes it or keeps it for the migration, `db::reuse`).
async fn read_state_keeping(trust: &Trust, lock_wait: Duration) -> (TrustState, Option<TrustDb>) {
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
    let mut db = match TrustDb::connect_within(trust, Access::ReadOnly, Some(lock_wait)).await {
        Ok(db) => db,
        Err(e) => return (Err(waited(&e)), None),
    };
    match db.applied().await {
        Ok(applied) => (Ok(applied), Some(db)),
        Err(e) => {
            db.close().await;
            (Err(waited(&e)), None)
        }
    }
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
    // Postgres sessions stay open until the plan says which trusts the first wave upgrades:
    // theirs are kept for their migrations (`db::reuse`), at most `reuse::CAP` at once.
    let mut open: Vec<TrustDb> = Vec::new();
    let mut states: HashMap<String, TrustState> = HashMap::new();
    let mut reads = stream::iter(trusts)
        .map(|t| async move {
            let read = match remote {
                Some(r) => (super::jobs::survey_read(r, &t.id).await, None),
                None => read_state_keeping(t, lock_wait).await,
            };
            (t.id.clone(), read)
        })
        .buffer_unordered(READ_CONCURRENCY);
    while let Some((id, (state, db))) = reads.next().await {
        if let Some(db) = db {
            if db.endpoint().is_some() && open.len() + reuse::parked() < reuse::CAP {
                open.push(db);
            } else {
                db.close().await;
            }
        }
        states.insert(id, state);
    }
    drop(reads);
    let mut planned = plan_rollout(catalogs, plan, &states);
    let first_wave: HashSet<&str> = planned
        .waves
        .iter()
        .map(|w| {
            w.trusts
                .iter()
                .filter(|t| matches!(t.action, Action::Upgrade { .. }))
                .map(|t| t.id.as_str())
                .collect::<HashSet<&str>>()
        })
        .find(|upgrades| !upgrades.is_empty())
        .unwrap_or_default();
    let mut closing = Vec::new();
    for db in open {
        let kept = if first_wave.contains(db.trust()) {
            reuse::park(db)
        } else {
            Some(db)
        };
        closing.extend(kept);
    }
    drop(first_wave);
    futures::future::join_all(closing.into_iter().map(TrustDb::close)).await;
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
