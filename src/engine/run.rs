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
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::events::{Event, EventSink, TrustOutcome};
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
    /// The trusts' real workload readings (PostgreSQL with `pg_stat_statements`).
    pub workload: crate::health::workload::Tracker,
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
}

impl Engine<'_> {
    pub(super) fn gated(&self) -> bool {
        !self.plan.health.is_empty()
    }

    /// Report an event and, when journalled, wait until it is durable. A journal that cannot
    /// be written stops the run: nothing may happen that is not recorded.
    pub(super) async fn emit(&self, event: Event) {
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
    pub(super) async fn emit_all(&self, events: Vec<Event>) {
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
        }
    }
}

/// Milliseconds since `started`.
pub(super) fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}
