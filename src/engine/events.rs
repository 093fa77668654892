//! Typed events emitted by the engine. Reporters (terminal, JSON lines) consume them; field names
//! are stable because `--events` writes them as they are, and the journal stores them in the same
//! shape: they read back ([`Deserialize`]) into the same values, and an event kind this version
//! does not know (from an older or newer flotilla) reads as [`Event::Unknown`].

use serde::{Deserialize, Serialize};

use crate::health::gate::{LatencyComparison, Verdict, Window, WriteFigures};
use crate::health::probes::Snapshot;
use crate::health::workload::WorkloadComparison;

/// How one trust's part of a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum TrustOutcome {
    /// Every planned migration was applied.
    Upgraded { migrations: usize },
    /// Nothing to do.
    UpToDate,
    /// A migration failed or the trust could not be reached or locked; `exit_code` is the
    /// documented code this failure alone would give (4, or 6 for a held lock).
    Failed { error: String, exit_code: u8 },
    /// Not started because the wave or run stopped first.
    Skipped,
    /// Stopped between two migrations by an operator's interrupt (`resume` continues).
    Interrupted { migrations: usize },
}

impl TrustOutcome {
    /// The outcome as events name it (their `status` field: `upgraded`, `up-to-date`, ...).
    pub fn status(&self) -> &'static str {
        match self {
            TrustOutcome::Upgraded { .. } => "upgraded",
            TrustOutcome::UpToDate => "up-to-date",
            TrustOutcome::Failed { .. } => "failed",
            TrustOutcome::Skipped => "skipped",
            TrustOutcome::Interrupted { .. } => "interrupted",
        }
    }
}

/// Where a run's wall time went, in whole milliseconds (journalled in `run_finished`).
///
/// The sequential phases of the wave loop (`preflight_ms` through `rollback_ms` except the two
/// busy times) each count wall-clock time, so together they come to about `wall_ms` (the
/// rest: approvals, wave bookkeeping). `background_ms` (earlier waves re-checked while a wave
/// migrates: inside `migrate_ms`) and `journal_ms` (the engine waiting on journal writes,
/// inside every other phase) are busy times that overlap the others. `confirm_ms` is the
/// re-measurement of windows that did not pass, their pauses included: the time a stage of
/// gate windows went on after every trust's first window was measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Phases {
    pub preflight_ms: u64,
    pub baseline_ms: u64,
    pub migrate_ms: u64,
    pub post_upgrade_ms: u64,
    pub confirm_ms: u64,
    pub soak_wait_ms: u64,
    pub soak_checks_ms: u64,
    pub background_ms: u64,
    pub journal_ms: u64,
    pub rollback_ms: u64,
    pub wall_ms: u64,
}

impl Phases {
    /// The sequential phases with their names, in the order a wave runs them (they sum to
    /// about `wall_ms`).
    pub fn sequential(&self) -> [(&'static str, u64); 8] {
        [
            ("preflight", self.preflight_ms),
            ("baseline", self.baseline_ms),
            ("migrate", self.migrate_ms),
            ("post-upgrade", self.post_upgrade_ms),
            ("confirmations", self.confirm_ms),
            ("soak waits", self.soak_wait_ms),
            ("soak checks", self.soak_checks_ms),
            ("rollback", self.rollback_ms),
        ]
    }

    /// The busy times that overlap the sequential phases, with their names.
    pub fn overlapping(&self) -> [(&'static str, u64); 2] {
        [
            ("background watching", self.background_ms),
            ("journal waits", self.journal_ms),
        ]
    }

    /// The sum of the sequential phases.
    pub fn sequential_ms(&self) -> u64 {
        self.sequential().iter().map(|(_, ms)| ms).sum()
    }

    /// Add another attempt's phases (a resumed run's report sums its attempts).
    pub fn add(&mut self, o: &Phases) {
        self.preflight_ms += o.preflight_ms;
        self.baseline_ms += o.baseline_ms;
        self.migrate_ms += o.migrate_ms;
        self.post_upgrade_ms += o.post_upgrade_ms;
        self.confirm_ms += o.confirm_ms;
        self.soak_wait_ms += o.soak_wait_ms;
        self.soak_checks_ms += o.soak_checks_ms;
        self.background_ms += o.background_ms;
        self.journal_ms += o.journal_ms;
        self.rollback_ms += o.rollback_ms;
        self.wall_ms += o.wall_ms;
    }
}

/// Something that happened during a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Preflight passed; the run starts.
    RunStarted {
        plan: String,
        target_version: i64,
        target_release: Option<String>,
        waves: usize,
        trusts: usize,
        migrations: usize,
    },
    /// Preflight found a trust that cannot be migrated; nothing will run.
    TrustBlocked {
        wave: String,
        trust: String,
        reason: String,
    },
    /// A wave begins.
    WaveStarted {
        wave: String,
        index: usize,
        trusts: usize,
        to_upgrade: usize,
        concurrency: usize,
    },
    /// An approval wave was approved (by `--yes` or an operator).
    WaveApproved { wave: String, by: String },
    /// An approval wave was not approved: the run stops before it.
    WaveNotApproved { wave: String },
    /// Work on a trust begins.
    TrustStarted {
        wave: String,
        trust: String,
        from: String,
        to: String,
        migrations: usize,
        /// The versions it will apply, in order: the journal's intent for the trust, durable
        /// before the first of them runs (absent in journals written before it existed).
        #[serde(default)]
        planned: Vec<i64>,
    },
    /// A migration begins on a trust (`before`: the version it is at).
    MigrationStarted {
        trust: String,
        version: i64,
        #[serde(default)]
        description: String,
        before: Option<i64>,
    },
    /// A migration committed on a trust, with its tracking row.
    MigrationApplied {
        trust: String,
        version: i64,
        duration_ms: u64,
    },
    /// A migration failed on a trust; its transaction rolled back.
    MigrationFailed {
        trust: String,
        version: i64,
        error: String,
    },
    /// Work on a trust ended.
    TrustFinished {
        wave: String,
        trust: String,
        version: Option<i64>,
        release: String,
        #[serde(flatten)]
        outcome: TrustOutcome,
        duration_ms: u64,
        /// With workers: the worker that ran the trust (for a trust found up to date, the
        /// one that read it). Absent without workers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        worker: Option<String>,
    },
    /// Figures measured on a trust (`window`: baseline, post-upgrade, soak-N, after-rollback).
    HealthMeasured {
        trust: String,
        window: String,
        snapshot: Snapshot,
    },
    /// The gate's verdict on a trust for a window, with reasons and latency figures.
    HealthVerdict {
        wave: String,
        trust: String,
        window: Window,
        #[serde(flatten)]
        verdict: Verdict,
        #[serde(default)]
        latency: Vec<LatencyComparison>,
        /// The real workload's figures (PostgreSQL with `pg_stat_statements`), when compared.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        workload: Option<WorkloadComparison>,
        /// What the window's writes proved (absent without a write probe, and after a
        /// rollback).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        writes: Option<WriteFigures>,
    },
    /// The real workload cannot be judged on a trust (said once per trust and run): the gate
    /// goes on with the probes alone.
    WorkloadUnavailable { trust: String, reason: String },
    /// A soak round after a wave.
    SoakRound {
        wave: String,
        round: u32,
        of: u32,
        trusts: usize,
    },
    /// A trust is being rolled back to its pre-upgrade version.
    RollbackStarted {
        trust: String,
        from: String,
        to: String,
        migrations: usize,
    },
    /// A down migration begins on a trust.
    MigrationReverting { trust: String, version: i64 },
    /// A down migration committed (its tracking row deleted with it); `now_at` is the
    /// trust's version after it.
    MigrationReverted {
        trust: String,
        version: i64,
        now_at: Option<i64>,
    },
    /// The write probe is about to insert `count` records, ids `id` down to `id - count + 1`
    /// (recorded first, so a crash between the inserts and their cleanup leaves a note of
    /// what to remove).
    WriteProbeStarted {
        trust: String,
        id: i64,
        count: usize,
    },
    /// The write probe's records from `id` down were removed again.
    WriteProbeCleaned { trust: String, id: i64 },
    /// A trust's connection was refused or dropped: trying again after a pause.
    TrustRetrying {
        trust: String,
        attempt: usize,
        of: usize,
        after_ms: u64,
        error: String,
    },
    /// The baseline of a trust was measured (its figures are in the `HealthMeasured` event
    /// before this one): what `resume` needs to judge the trust later.
    BaselineRecorded {
        wave: String,
        trust: String,
        from: Option<i64>,
        #[serde(default)]
        params: crate::health::probes::ProbeParams,
    },
    /// An operator cleared a dirty migration: `applied` kept its row, otherwise the row was
    /// removed along with any invalid index its failed build left.
    Repaired {
        trust: String,
        version: i64,
        applied: bool,
        dropped_indexes: Vec<String>,
    },
    /// `flotilla adopt` recorded, without running them, the migrations another tool (`from`)
    /// had applied on a trust (`baseline`: marked up to a version given by the operator
    /// instead): `migrations` tracking rows, the newest `highest`.
    Adopted {
        trust: String,
        from: String,
        migrations: usize,
        highest: Option<i64>,
        baseline: bool,
    },
    /// A wave's trusts passed their checks and soak: the next wave may start.
    WavePassed { wave: String },
    /// A run was resumed (`attempt` counts from 1 for the first start) by `by` (user@host).
    RunResumed {
        attempt: i64,
        #[serde(default)]
        by: String,
    },
    /// On resume, an operator decided about a trust that failed in the run: `retry` it (it is
    /// measured and gated again) or `skip` it (left out of the rest of the run).
    TrustDecided {
        trust: String,
        decision: String,
        by: String,
    },
    /// An operator abandoned an unfinished run (`was`: its status then): it will not be
    /// resumed, and no longer blocks a new rollout of its plan. Its trusts whose upgrade was
    /// never judged to pass are still gated by the next rollout.
    RunAbandoned {
        was: String,
        by: String,
        reason: String,
    },
    /// A trust found already upgraded (or part-way) whose last upgrade, in run `from_run`,
    /// was never judged to pass: it is gated in this run against the baseline recorded then,
    /// before its upgrade (`from`: the version it was at).
    BaselineCarried {
        wave: String,
        trust: String,
        from: Option<i64>,
        from_run: String,
    },
    /// The operator interrupted the run (Ctrl-C or SIGTERM); `abort` when a second signal
    /// abandoned in-flight transactions.
    Interrupted { abort: bool },
    /// A rollback finished and its integrity figures equal the pre-upgrade ones.
    RollbackFinished {
        trust: String,
        version: Option<i64>,
        release: String,
    },
    /// A rollback failed or could not be verified: an operator is needed.
    RollbackFailed { trust: String, error: String },
    /// The gate stopped the run.
    Halted { wave: String, reason: String },
    /// A wave ended.
    WaveFinished {
        wave: String,
        upgraded: usize,
        up_to_date: usize,
        failed: usize,
        skipped: usize,
    },
    /// The run ended. `phases`: where its wall time went (absent in journals written before
    /// flotilla measured it).
    RunFinished {
        outcome: String,
        exit_code: u8,
        duration_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        phases: Option<Phases>,
    },
    /// An event this version does not know (written by an older or newer flotilla), or one
    /// whose fields no longer read: kept in the journal, skipped by every reader. Never
    /// emitted.
    #[serde(other)]
    Unknown,
}

impl Event {
    /// An event as the journal stores it (the JSON `--events` writes). A kind this version
    /// does not know, or a body that does not read as its kind, is [`Event::Unknown`].
    pub fn from_json(body: &serde_json::Value) -> Event {
        Event::deserialize(body).unwrap_or(Event::Unknown)
    }

    /// The event's kind as stored (`migration_started`, ...): the `event` key of its JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::RunStarted { .. } => "run_started",
            Event::TrustBlocked { .. } => "trust_blocked",
            Event::WaveStarted { .. } => "wave_started",
            Event::WaveApproved { .. } => "wave_approved",
            Event::WaveNotApproved { .. } => "wave_not_approved",
            Event::TrustStarted { .. } => "trust_started",
            Event::MigrationStarted { .. } => "migration_started",
            Event::MigrationApplied { .. } => "migration_applied",
            Event::MigrationFailed { .. } => "migration_failed",
            Event::TrustFinished { .. } => "trust_finished",
            Event::HealthMeasured { .. } => "health_measured",
            Event::HealthVerdict { .. } => "health_verdict",
            Event::WorkloadUnavailable { .. } => "workload_unavailable",
            Event::SoakRound { .. } => "soak_round",
            Event::RollbackStarted { .. } => "rollback_started",
            Event::MigrationReverting { .. } => "migration_reverting",
            Event::MigrationReverted { .. } => "migration_reverted",
            Event::WriteProbeStarted { .. } => "write_probe_started",
            Event::WriteProbeCleaned { .. } => "write_probe_cleaned",
            Event::TrustRetrying { .. } => "trust_retrying",
            Event::BaselineRecorded { .. } => "baseline_recorded",
            Event::Repaired { .. } => "repaired",
            Event::Adopted { .. } => "adopted",
            Event::WavePassed { .. } => "wave_passed",
            Event::RunResumed { .. } => "run_resumed",
            Event::TrustDecided { .. } => "trust_decided",
            Event::RunAbandoned { .. } => "run_abandoned",
            Event::BaselineCarried { .. } => "baseline_carried",
            Event::Interrupted { .. } => "interrupted",
            Event::RollbackFinished { .. } => "rollback_finished",
            Event::RollbackFailed { .. } => "rollback_failed",
            Event::Halted { .. } => "halted",
            Event::WaveFinished { .. } => "wave_finished",
            Event::RunFinished { .. } => "run_finished",
            Event::Unknown => "unknown",
        }
    }
}

/// Receives events. Implementations must be cheap: the engine calls them inline.
pub trait EventSink: Send + Sync {
    /// Handle one event.
    fn emit(&self, event: &Event);
}

/// Sends every event to several sinks, in order.
pub struct Fanout(pub Vec<Box<dyn EventSink>>);

impl EventSink for Fanout {
    fn emit(&self, event: &Event) {
        for sink in &self.0 {
            sink.emit(event);
        }
    }
}

impl<T: EventSink + ?Sized> EventSink for std::sync::Arc<T> {
    fn emit(&self, event: &Event) {
        (**self).emit(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_finished_carries_its_phases_and_an_older_one_reads_without_them() {
        let phases = Phases {
            preflight_ms: 1,
            baseline_ms: 2,
            migrate_ms: 3,
            post_upgrade_ms: 4,
            confirm_ms: 5,
            soak_wait_ms: 6,
            soak_checks_ms: 7,
            background_ms: 8,
            journal_ms: 9,
            rollback_ms: 10,
            wall_ms: 40,
        };
        let e = Event::RunFinished {
            outcome: "completed".into(),
            exit_code: 0,
            duration_ms: 40,
            phases: Some(phases),
        };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["phases"]["migrate_ms"], 3);
        assert_eq!(json["phases"]["wall_ms"], 40);
        assert_eq!(Event::from_json(&json), e);
        assert_eq!(phases.sequential_ms(), 1 + 2 + 3 + 4 + 5 + 6 + 7 + 10);

        let old = serde_json::json!({"event":"run_finished","outcome":"halted","exit_code":3,"duration_ms":9});
        assert_eq!(
            Event::from_json(&old),
            Event::RunFinished {
                outcome: "halted".into(),
                exit_code: 3,
                duration_ms: 9,
                phases: None,
            }
        );
    }
}
