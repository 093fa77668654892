//! Typed events emitted by the engine. Reporters (terminal, JSON lines) consume them; field names
//! are stable because `--events` writes them as they are.

use serde::Serialize;

use crate::health::gate::{LatencyComparison, Verdict, Window};
use crate::health::probes::Snapshot;

/// How one trust's part of a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
}

/// Something that happened during a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    },
    /// A migration begins on a trust.
    MigrationStarted {
        trust: String,
        version: i64,
        description: String,
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
        latency: Vec<LatencyComparison>,
    },
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
    /// The run ended.
    RunFinished {
        outcome: String,
        exit_code: u8,
        duration_ms: u64,
    },
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
