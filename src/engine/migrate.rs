//! Migrating one trust: connect, lock, re-read its real state, apply each planned migration
//! write-ahead (its start durable before it runs), and retry with backoff when the connection
//! is refused or drops ([`RETRY_BACKOFF`]). A failure is a [`Fault`] that carries its exit code.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::events::{Event, TrustOutcome};
use super::outcome::StopReason;
use super::run::{elapsed_ms, Engine};
use super::wave::Upgrade;
use crate::db::{Access, DbError, TrustDb};
use crate::exit_codes::ExitCode;
use crate::plan::{verify, Action, Step};

/// Pauses between attempts to reach a trust whose connection was refused or dropped; after
/// the last one the trust is marked failed and the wave's policy decides.
const RETRY_BACKOFF: [Duration; 4] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

/// What preflight planned for a trust: the state it expects to find before migrating.
#[derive(Debug, Clone, Copy)]
struct Expected<'p> {
    /// The version preflight read.
    from: Option<i64>,
    /// The migrations it planned.
    steps: &'p [Step],
}

/// How far one attempt at migrating a trust got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Migrated {
    /// The version the trust reached.
    version: Option<i64>,
    /// Migrations applied (committed) in this attempt.
    applied: usize,
    /// A stop request ended it between two migrations.
    interrupted: bool,
}

/// Where a trust ended: its version and outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reached {
    version: Option<i64>,
    outcome: TrustOutcome,
}

/// Why migrating a trust stopped short.
#[derive(Debug)]
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

impl Fault {
    /// A database error at `version`, after `applied` migrations: its exit code and whether
    /// the connection is to blame come from the error itself.
    fn db(version: Option<i64>, applied: usize, e: &DbError) -> Self {
        Fault {
            version,
            applied,
            message: e.to_string(),
            exit: e.exit_code(),
            connection: e.is_connection_fault(),
        }
    }

    /// A refusal that is not the connection's fault (nothing was applied in this attempt).
    fn plain(version: Option<i64>, message: String, exit: ExitCode) -> Self {
        Fault {
            version,
            applied: 0,
            message,
            exit,
            connection: false,
        }
    }

    /// The documented exit code this fault alone gives.
    fn exit_code(&self) -> ExitCode {
        self.exit
    }
}

impl Engine<'_> {
    /// Migrate one trust of `wave` (skipped when the wave or run is stopping), and record how
    /// it ended.
    pub(super) async fn migrate_trust(
        &self,
        wave: &str,
        upgrade: &Upgrade<'_>,
        stop: &AtomicBool,
    ) -> TrustOutcome {
        let started = Instant::now();
        let id = upgrade.trust;
        // Events that record what already happened (a migration applied) wait here and go to
        // the journal in one transaction with the next record that must precede an action
        // (the next migration's start, the trust's end): half the commits, and every
        // write-ahead record is still durable before its action.
        let mut pending = Vec::new();
        let reached = if stop.load(Ordering::SeqCst) || self.control.stopping() {
            Reached {
                version: upgrade.from,
                outcome: TrustOutcome::Skipped,
            }
        } else {
            let expect = Expected {
                from: upgrade.from,
                steps: upgrade.steps,
            };
            self.migrate_with_retries(wave, id, expect, &mut pending)
                .await
        };
        pending.push(self.finished_event(
            wave,
            id,
            reached.version,
            reached.outcome.clone(),
            elapsed_ms(started),
        ));
        self.emit_all(pending).await;
        reached.outcome
    }

    /// Connect, lock and migrate; a connection that is refused or drops is retried with
    /// backoff ([`RETRY_BACKOFF`]), each time from the trust's real state.
    async fn migrate_with_retries(
        &self,
        wave: &str,
        id: &str,
        planned: Expected<'_>,
        pending: &mut Vec<Event>,
    ) -> Reached {
        let Some(trust) = self.inventory.get(id) else {
            return Reached {
                version: planned.from,
                outcome: TrustOutcome::Failed {
                    error: format!("trust '{id}' is not in the inventory"),
                    exit_code: ExitCode::Internal.code(),
                },
            };
        };
        let mut applied_so_far = 0;
        let mut expect = Some(planned);
        let mut attempt = 0;
        loop {
            let result = match TrustDb::connect(trust, Access::ReadWrite).await {
                Ok(mut db) => {
                    let r = self.migrate_locked(wave, &mut db, expect, pending).await;
                    db.close().await;
                    r
                }
                Err(e) => Err(Fault::db(expect.map_or(planned.from, |x| x.from), 0, &e)),
            };
            match result {
                Ok(m) => {
                    let n = m.applied + applied_so_far;
                    let outcome = if m.interrupted {
                        TrustOutcome::Interrupted { migrations: n }
                    } else if n == 0 {
                        TrustOutcome::UpToDate
                    } else {
                        TrustOutcome::Upgraded { migrations: n }
                    };
                    return Reached {
                        version: m.version,
                        outcome,
                    };
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
                    return Reached {
                        version: f.version,
                        outcome: TrustOutcome::Failed {
                            exit_code: f.exit_code().code(),
                            error: f.message,
                        },
                    }
                }
            }
        }
    }

    /// Lock, re-read the real state (the database is the truth, not the preflight), apply.
    /// `expect`: what preflight planned; when the trust no longer matches it, nothing is
    /// applied (`None` on a retry: continue from whatever the database holds).
    async fn migrate_locked(
        &self,
        wave: &str,
        db: &mut TrustDb,
        expect: Option<Expected<'_>>,
        pending: &mut Vec<Event>,
    ) -> Result<Migrated, Fault> {
        let id = db.trust().to_string();
        let catalog = self.catalogs.for_trust(&id);
        let known = expect.and_then(|x| x.from);
        db.lock().await.map_err(|e| Fault::db(known, 0, &e))?;
        let t = self.plan.timeouts;
        db.set_timeouts(t.lock, t.statement)
            .await
            .map_err(|e| Fault::db(known, 0, &e))?;
        db.ensure_tracking_table()
            .await
            .map_err(|e| Fault::db(known, 0, &e))?;
        let applied = db.applied().await.map_err(|e| Fault::db(known, 0, &e))?;
        let mut version = applied.iter().map(|a| a.version).max();
        let steps = match verify(catalog, &applied, self.plan.target.version) {
            Action::UpToDate => {
                return Ok(Migrated {
                    version,
                    applied: 0,
                    interrupted: false,
                })
            }
            Action::Upgrade { steps } => steps,
            Action::Blocked { blocker } => {
                return Err(Fault::plain(
                    version,
                    blocker.to_string(),
                    blocker.exit_code(),
                ))
            }
        };
        if let Some(planned) = expect {
            if steps != planned.steps || version != planned.from {
                // Another hand changed the trust since preflight: the baseline and the
                // rollback target no longer describe it. Stop rather than guess.
                return Err(Fault::plain(
                    version,
                    format!(
                        "the trust changed between preflight and migration (was at {}, now at {}); nothing was applied, run the rollout again",
                        self.catalogs.base().describe(planned.from),
                        self.catalogs.base().describe(version)
                    ),
                    ExitCode::MigrationFailed,
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
        let stopped = |version, done| Migrated {
            version,
            applied: done,
            interrupted: true,
        };
        for (done, step) in steps.iter().enumerate() {
            if self.control.stopping() {
                return Ok(stopped(version, done));
            }
            let Some(m) = catalog.get(step.version) else {
                return Err(Fault::plain(
                    version,
                    format!("migration {} vanished from the catalog", step.version),
                    ExitCode::Internal,
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
                return Ok(stopped(version, done));
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
                    return Err(Fault::db(version, done, &e));
                }
            }
        }
        Ok(Migrated {
            version,
            applied: steps.len(),
            interrupted: false,
        })
    }
}
