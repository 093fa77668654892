//! How a run ends and why it stops: [`RunOutcome`] (with its exit code and recorded label),
//! [`RunSummary`] and its per-trust [`TrustResult`]s, and the shared stop flag
//! ([`RunControl`], [`StopReason`]) that signals, a lost lease or a failed journal write set.

use std::sync::Mutex;

use super::events::TrustOutcome;
use crate::exit_codes::ExitCode;

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
    /// The operator interrupted the run (Ctrl-C, SIGTERM); `resume` continues it.
    Interrupted,
    /// Another run took this run's lease over (this one had stopped heartbeating).
    LeaseLost { holder: String },
    /// The state database could not be written: nothing more is started unrecorded.
    JournalFailed { error: String, exit: ExitCode },
    /// With workers: no live worker can reach a trust the wave would touch; nothing of the
    /// wave was started (`message` names the trust, the label and the live workers).
    Unreachable { wave: String, message: String },
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
            RunOutcome::Interrupted => ExitCode::Interrupted,
            RunOutcome::LeaseLost { .. } => ExitCode::Locked,
            // Almost always the environment (a full disk, a read-only or failing state
            // database): exit 9; a failure of flotilla's own SQL stays exit 1.
            RunOutcome::JournalFailed { exit, .. } => *exit,
            RunOutcome::Unreachable { .. } => ExitCode::Config,
        }
    }

    /// The status recorded for the run.
    pub fn label(&self) -> &'static str {
        match self {
            RunOutcome::Completed => "completed",
            RunOutcome::Blocked { .. } => "blocked",
            RunOutcome::Failed { .. } => "failed",
            RunOutcome::Halted { .. } => "halted",
            RunOutcome::Paused { .. } => "paused",
            RunOutcome::RollbackFailed { .. } => "rollback-failed",
            RunOutcome::NotApproved { .. } => "not-approved",
            RunOutcome::Interrupted => "interrupted",
            RunOutcome::LeaseLost { .. } => "lease-lost",
            RunOutcome::JournalFailed { .. } => "journal-failed",
            RunOutcome::Unreachable { .. } => "unreachable",
        }
    }
}

/// How one trust's part of a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustResult {
    /// The trust.
    pub trust: String,
    /// How its part ended.
    pub outcome: TrustOutcome,
}

impl TrustResult {
    /// `trust` ended with `outcome`.
    pub fn new(trust: impl Into<String>, outcome: TrustOutcome) -> Self {
        TrustResult {
            trust: trust.into(),
            outcome,
        }
    }
}

/// The end state of a run.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// How it ended.
    pub outcome: RunOutcome,
    /// Every trust that was considered, with its outcome.
    pub trusts: Vec<TrustResult>,
}

/// Why a run should stop starting new work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// Another run took the lease.
    LeaseLost(String),
    /// The journal could not be written.
    JournalFailed(String, ExitCode),
}

/// Shared stop flag: once set, nothing new starts; in-flight migrations finish.
#[derive(Debug, Default)]
pub struct RunControl {
    stop: Mutex<Option<StopReason>>,
}

impl RunControl {
    /// Ask the run to stop (the first reason wins).
    pub fn stop(&self, reason: StopReason) {
        if let Ok(mut s) = self.stop.lock() {
            s.get_or_insert(reason);
        }
    }

    /// Whether a stop was asked for.
    pub fn stopping(&self) -> bool {
        self.reason().is_some()
    }

    /// Why, if so.
    pub fn reason(&self) -> Option<StopReason> {
        self.stop.lock().ok().and_then(|s| s.clone())
    }

    /// How the run ends because of the stop request, if one was made.
    pub(super) fn outcome(&self) -> Option<RunOutcome> {
        self.reason().map(|r| match r {
            StopReason::Interrupted => RunOutcome::Interrupted,
            StopReason::LeaseLost(holder) => RunOutcome::LeaseLost { holder },
            StopReason::JournalFailed(error, exit) => RunOutcome::JournalFailed { error, exit },
        })
    }
}
