//! Migrating one trust: connect, lock, re-read its real state, record the intent (the planned
//! migrations, durable before the first runs), apply them, record the outcome, and retry with
//! backoff when the connection is refused or drops ([`RETRY_BACKOFF`]). A failure is a
//! [`Fault`] that carries its exit code.
//!
//! Two journal commits per trust, whatever its number of migrations: the intent
//! (`trust_started` with the planned versions) and the outcome (`trust_finished`, with every
//! `migration_started` / `migration_applied` / `migration_failed` of the trust riding in the
//! same transaction). What happened in between needs no record of its own: each migration
//! commits together with its row in the trust's tracking table, so after a crash the tracking
//! table says exactly which planned migrations were applied (a no-transaction or batch one that
//! did not finish leaves its row dirty), and `resume` / `abandon` settle the intent from it
//! (`crate::unfinished::reconcile`). The per-migration events still reach the progress display
//! and `--events` as they happen; only their journal write waits for the outcome.

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
    /// It happened while locking and reading the trust, before its intent was recorded: on a
    /// session kept from preflight (`db::reuse`) that the server closed meanwhile, connecting
    /// afresh is what a run without the kept session would have done, so it is no retry.
    before_intent: bool,
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
            before_intent: false,
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
            before_intent: false,
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
        // Events already shown (the progress display, `--events`) whose journal write waits
        // for the trust's next commit: its outcome, or the record of a retry.
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
            self.migrate_with_retries(wave, id, expect, upgrade.reclaimed, &mut pending)
                .await
        };
        let finished = self.finished_event(
            wave,
            id,
            reached.version,
            reached.outcome.clone(),
            elapsed_ms(started),
        );
        self.commit(&mut pending, vec![finished]).await;
        reached.outcome
    }

    /// Show `event` now (progress display, `--events`) and journal it with the trust's next
    /// commit ([`commit`](Self::commit)).
    fn show(&self, event: Event, pending: &mut Vec<Event>) {
        self.events.emit(&event);
        pending.push(event);
    }

    /// One journal transaction: the events already shown (`pending`, emptied) and `new`, then
    /// `new` is shown once durable (write-ahead, as [`emit_all`](Self::emit_all)). A journal
    /// that cannot be written stops the run.
    async fn commit(&self, pending: &mut Vec<Event>, new: Vec<Event>) {
        let mut batch = std::mem::take(pending);
        batch.extend(new.iter().cloned());
        self.journal_durably(&batch).await;
        for event in &new {
            self.events.emit(event);
        }
    }

    /// Connect, lock and migrate; a connection that is refused or drops is retried with
    /// backoff ([`RETRY_BACKOFF`]), each time from the trust's real state.
    async fn migrate_with_retries(
        &self,
        wave: &str,
        id: &str,
        planned: Expected<'_>,
        reclaimed: bool,
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
        // Reclaimed from a worker that stopped: continue from what the database holds.
        let mut expect = (!reclaimed).then_some(planned);
        let mut attempt = 0;
        // The session preflight read the trust with, when it was kept (`db::reuse`).
        let mut kept = crate::db::reuse::take(trust);
        loop {
            let reused = kept.is_some();
            let session = match kept.take() {
                Some(db) => Ok(db),
                None => TrustDb::connect(trust, Access::ReadWrite).await,
            };
            let result = match session {
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
                    } else if n == 0 && reclaimed && m.version != planned.from {
                        // The worker that stopped had applied them: upgraded in this run.
                        let n = planned
                            .steps
                            .iter()
                            .filter(|s| Some(s.version) <= m.version)
                            .count();
                        TrustOutcome::Upgraded { migrations: n }
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
                Err(f) if reused && f.connection && f.before_intent => {
                    // The kept session was gone: connect as usual, at once.
                    tracing::debug!(trust = id, error = %f.message, "the session kept from preflight was closed; connecting afresh");
                }
                Err(f)
                    if f.connection
                        && attempt < RETRY_BACKOFF.len()
                        && !self.control.stopping() =>
                {
                    let pause = RETRY_BACKOFF[attempt];
                    attempt += 1;
                    applied_so_far += f.applied;
                    // Durable before the pause: what this attempt did, and why it stopped.
                    let retrying = Event::TrustRetrying {
                        trust: id.to_string(),
                        attempt,
                        of: RETRY_BACKOFF.len(),
                        after_ms: u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
                        error: f.message.clone(),
                    };
                    self.commit(pending, vec![retrying]).await;
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
        let t = self.plan.timeouts;
        let applied = db
            .prepare_to_migrate(t.lock, t.statement)
            .await
            .map_err(|e| Fault {
                before_intent: true,
                ..Fault::db(known, 0, &e)
            })?;
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
        // The intent, write-ahead: durable (with anything pending) before the first migration
        // runs. From here the trust's tracking table is the record of what was applied.
        let intent = Event::TrustStarted {
            wave: wave.to_string(),
            trust: id.clone(),
            from: self.catalogs.base().describe(version),
            to: self
                .catalogs
                .base()
                .describe(Some(self.plan.target.version)),
            migrations: steps.len(),
            planned: steps.iter().map(|s| s.version).collect(),
        };
        self.commit(pending, vec![intent]).await;
        let stopped = |version, done| Migrated {
            version,
            applied: done,
            interrupted: true,
        };
        if matches!(self.control.reason(), Some(StopReason::JournalFailed(..))) {
            // The intent could not be recorded: nothing may run unrecorded.
            return Ok(stopped(version, 0));
        }
        for (done, step) in steps.iter().enumerate() {
            // A stop request (an interrupt, a lost lease, a journal that failed for another
            // trust) ends the trust between two migrations.
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
            // Not a commit of its own: the intent covers it, and the tracking table records
            // whether it was applied (see the module documentation).
            self.show(
                Event::MigrationStarted {
                    trust: id.clone(),
                    version: m.version,
                    description: m.description.clone(),
                    before: version,
                },
                pending,
            );
            match db.apply(m, step.resume_dirty).await {
                Ok(took) => {
                    version = Some(m.version);
                    self.show(
                        Event::MigrationApplied {
                            trust: id.clone(),
                            version: m.version,
                            duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
                        },
                        pending,
                    );
                }
                Err(e) => {
                    // Journalled with the outcome (or the retry's record), which follows at
                    // once with nothing run in between: no earlier commit is needed. A
                    // transactional migration rolled back (no tracking row); a no-transaction
                    // or batch one that stopped half-way left its tracking row dirty, which is
                    // the durable record a crash before the outcome would be settled from.
                    self.show(
                        Event::MigrationFailed {
                            trust: id.clone(),
                            version: m.version,
                            error: e.to_string(),
                        },
                        pending,
                    );
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
