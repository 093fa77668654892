//! The engine and a whole run: [`Engine`] (what a run needs, with what an interrupted run's
//! journal tells it: [`Resumed`]), [`Watched`] (an upgraded trust the gate keeps checking), [`Engine::run`] from the first event to `run_finished`, and the
//! write-ahead emission every phase goes through. The phases live beside it: preflight.rs,
//! wave.rs (the wave loop and the policy), watch.rs (gate windows, confirmation, soak,
//! background checks), migrate.rs (a trust's migrations, retries), rollback.rs.
//!
//! Wave by wave: approval → baseline on every trust to upgrade → migrate concurrently →
//! post-upgrade checks → verdicts → policy (continue / roll back and halt / pause) → soak
//! rounds. While a wave migrates, trusts of earlier waves keep being checked in the background.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::events::{Event, EventSink, Phases, TrustOutcome};
use crate::config::{Inventory, Plan, Wave};
use crate::health::probes::{ProbeParams, Snapshot};
use crate::journal::Journal;
use crate::migrations::Catalogs;

use super::outcome::{RunControl, RunOutcome, RunSummary, StopReason, TrustResult};
use super::preflight::Preflight;
use crate::journal::replay::Resumed;

/// Decides whether an approval wave may start. The engine never prompts by itself.
pub trait Approver: Send + Sync {
    /// `Some(who)` approves (e.g. "--yes", "operator"); `None` declines.
    fn approve(&self, wave: &Wave) -> Option<String>;
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
    /// The trusts' real workload readings (PostgreSQL with `pg_stat_statements`); shared by
    /// the engines a worker builds for the jobs of one run.
    pub workload: Arc<crate::health::workload::Tracker>,
    /// Where the run's time goes (journalled in `run_finished`).
    pub phases: PhaseClock,
    /// Workers run every piece of work that touches a trust database (`rollout --workers`):
    /// see [`super::jobs`]. `None`: this process does it all, as always.
    pub remote: Option<&'a dyn super::jobs::Dispatch>,
}

/// A phase of a run that the [`PhaseClock`] times (see [`Phases`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Baseline,
    Migrate,
    PostUpgrade,
    Confirm,
    SoakWait,
    SoakChecks,
    Background,
    Rollback,
}

/// Accumulates where a run's time goes, phase by phase (shared by the run's tasks).
#[derive(Debug, Default)]
pub struct PhaseClock(Mutex<Clock>);

#[derive(Debug, Default)]
struct Clock {
    baseline: Duration,
    migrate: Duration,
    post_upgrade: Duration,
    confirm: Duration,
    soak_wait: Duration,
    soak_checks: Duration,
    background: Duration,
    rollback: Duration,
    journal: Duration,
    /// Emissions waiting on the journal now, and since when one has been (the journal's
    /// time is the union of these waits: concurrent waits count once).
    journal_waiters: usize,
    journal_since: Option<Instant>,
    /// When the latest first measurement of a window (not a confirmation) ended.
    first_window_done: Option<Instant>,
}

impl PhaseClock {
    fn with(&self, f: impl FnOnce(&mut Clock)) {
        if let Ok(mut c) = self.0.lock() {
            f(&mut c);
        }
    }

    /// Count `d` in `phase`.
    pub(super) fn add(&self, phase: Phase, d: Duration) {
        self.with(|c| {
            let slot = match phase {
                Phase::Baseline => &mut c.baseline,
                Phase::Migrate => &mut c.migrate,
                Phase::PostUpgrade => &mut c.post_upgrade,
                Phase::Confirm => &mut c.confirm,
                Phase::SoakWait => &mut c.soak_wait,
                Phase::SoakChecks => &mut c.soak_checks,
                Phase::Background => &mut c.background,
                Phase::Rollback => &mut c.rollback,
            };
            *slot += d;
        });
    }

    /// A wait on the journal begins; it ends when the returned guard is dropped.
    fn journal_wait(&self) -> JournalWait<'_> {
        self.with(|c| {
            if c.journal_waiters == 0 {
                c.journal_since = Some(Instant::now());
            }
            c.journal_waiters += 1;
        });
        JournalWait(self)
    }

    /// A window's first measurement (not a confirmation) ended now.
    fn first_window_measured(&self) {
        self.with(|c| c.first_window_done = Some(Instant::now()));
    }

    fn take_first_window_done(&self) -> Option<Instant> {
        self.0
            .lock()
            .ok()
            .and_then(|mut c| c.first_window_done.take())
    }

    /// The figures so far, with the preflight's time and the run's wall time.
    pub fn phases(&self, preflight: Duration, wall: Duration) -> Phases {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let Ok(c) = self.0.lock() else {
            return Phases {
                preflight_ms: ms(preflight),
                wall_ms: ms(wall),
                ..Phases::default()
            };
        };
        Phases {
            preflight_ms: ms(preflight),
            baseline_ms: ms(c.baseline),
            migrate_ms: ms(c.migrate),
            post_upgrade_ms: ms(c.post_upgrade),
            confirm_ms: ms(c.confirm),
            soak_wait_ms: ms(c.soak_wait),
            soak_checks_ms: ms(c.soak_checks),
            background_ms: ms(c.background),
            journal_ms: ms(c.journal),
            rollback_ms: ms(c.rollback),
            wall_ms: ms(wall),
        }
    }
}

/// A wait on the journal in progress (see [`PhaseClock::journal_wait`]).
struct JournalWait<'c>(&'c PhaseClock);

impl Drop for JournalWait<'_> {
    fn drop(&mut self) {
        self.0.with(|c| {
            c.journal_waiters = c.journal_waiters.saturating_sub(1);
            if c.journal_waiters == 0 {
                if let Some(since) = c.journal_since.take() {
                    c.journal += since.elapsed();
                }
            }
        });
    }
}

/// What the gate knows about an upgraded trust.
#[derive(Clone)]
pub(super) struct Watched {
    /// The trust.
    pub trust: String,
    /// The wave it was upgraded in.
    pub wave: String,
    /// The version it was at before the upgrade (what a rollback returns it to).
    pub from: Option<i64>,
    /// The figures measured before the upgrade.
    pub baseline: Snapshot,
    /// The probes' parameters drawn for it.
    pub params: ProbeParams,
    /// The (table, column) pairs the upgrade declares it rewrites.
    pub rewrites: BTreeSet<(String, String)>,
    /// Writes and losses the write probe has seen since the upgrade (shared by the clones
    /// that soak and background checks hold): the loss bound they prove together.
    pub writes_seen: Arc<Mutex<(usize, usize)>>,
}

/// What a run carries from wave to wave.
#[derive(Default)]
pub(super) struct RunState {
    /// Every trust considered so far, with its outcome.
    pub results: Vec<TrustResult>,
    /// Upgraded trusts still on the new version, with their baselines (soak and background).
    pub watched: Vec<Watched>,
    /// Trusts the gate failed so far (against the plan's `max_failed_trusts`).
    pub failed_trusts: usize,
    /// Where background watching goes on in `watched` (round-robin from wave to wave).
    pub background_next: usize,
}

impl Engine<'_> {
    pub(super) fn gated(&self) -> bool {
        !self.plan.health.is_empty()
    }

    /// Journal `events` in one transaction and wait until they are durable (the wait counts
    /// as journal time in the phase breakdown). A journal that cannot be written stops the
    /// run: nothing may happen that is not recorded.
    pub(super) async fn journal_durably(&self, events: &[Event]) {
        let Some(j) = self.journal.filter(|_| !events.is_empty()) else {
            return;
        };
        let wait = self.phases.journal_wait();
        let recorded = j.record_all(events).await;
        drop(wait);
        if let Err(e) = recorded {
            tracing::error!(error = %e, "the journal could not be written: stopping the run");
            self.control
                .stop(StopReason::JournalFailed(e.to_string(), e.exit_code()));
        }
    }

    /// Report an event and, when journalled, wait until it is durable. A journal that cannot
    /// be written stops the run: nothing may happen that is not recorded.
    pub(super) async fn emit(&self, event: Event) {
        self.journal_durably(std::slice::from_ref(&event)).await;
        if let Event::HealthMeasured { window, .. } = &event {
            // A window's confirmations are labelled `<window>-confirm-<n>` (watch.rs).
            if !window.contains("-confirm-") {
                self.phases.first_window_measured();
            }
        }
        self.events.emit(&event);
    }

    /// Await `f`, counting its time in `phase`.
    pub(super) async fn timed<T>(&self, phase: Phase, f: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let out = f.await;
        self.phases.add(phase, started.elapsed());
        out
    }

    /// Await a stage of gate windows (several trusts' windows, with their confirmations): its
    /// time counts in `phase` until the last first measurement of a window ends, and after
    /// that, when only confirmations of windows that did not pass remain, in confirmations.
    pub(super) async fn windows<T>(&self, phase: Phase, f: impl Future<Output = T>) -> T {
        self.phases.take_first_window_done();
        let started = Instant::now();
        let out = f.await;
        let ended = Instant::now();
        let split = self
            .phases
            .take_first_window_done()
            .map_or(ended, |t| t.clamp(started, ended));
        self.phases.add(phase, split - started);
        self.phases.add(Phase::Confirm, ended - split);
        out
    }

    /// [`emit`](Self::emit) for several events at once: one journal transaction for all of them
    /// (e.g. every trust of a wave already up to date), then each is reported in order.
    pub(super) async fn emit_all(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        self.journal_durably(&events).await;
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
        if let RunOutcome::Unreachable { wave, message } = &outcome {
            self.emit(Event::Halted {
                wave: wave.clone(),
                reason: message.clone(),
            })
            .await;
        }
        let wall = started.elapsed() + preflight.elapsed;
        let phases = self.phases.phases(preflight.elapsed, wall);
        self.emit(Event::RunFinished {
            outcome: outcome.label().into(),
            exit_code: outcome.exit_code().code(),
            duration_ms: phases.wall_ms,
            phases: Some(phases),
        })
        .await;
        RunSummary {
            outcome,
            trusts: state.results,
        }
    }

    /// The `trust_finished` event of a trust left at `version`.
    pub(super) fn finished_event(
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
            worker: None,
        }
    }
}

/// Milliseconds since `started`.
pub(super) fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}
