//! The seam between the engine and workers (`flotilla worker`, `rollout --workers`).
//!
//! Every piece of a run that touches a trust database is one call of the engine: preflight's
//! read of a trust and its draw of probe parameters (`survey`), a trust's `baseline`, its
//! migrations (`migrate`), a gate window with its confirmations (`window`, also the soak,
//! background and late checks) and a gate's rollback (`rollback`). Without workers the engine
//! makes these calls itself, as it always has. With workers (`Engine::remote` set) the
//! coordinating engine turns each into a [`Job`] (serde JSON) and hands it to a [`Dispatch`]
//! (the Postgres job queue of `crate::workers`); a worker builds an engine for the run from its
//! own checkout and runs the very same function (`Engine::execute_job`, in remote.rs),
//! writing the events of the job to the run's shared journal itself, and answers with a
//! [`JobResult`]. The coordinator keeps everything else: the plan, approvals, the policy over
//! the verdicts, soak timing, and the run's own events.
//!
//! A job that cannot run (a worker whose checkout differs, a cancelled job) comes back as
//! [`Done::Failed`] or [`Done::Cancelled`].

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::events::TrustOutcome;
use crate::exit_codes::ExitCode;
use crate::health::gate::{Judgement, LatencyComparison, Verdict, Window, WriteFigures};
use crate::health::probes::{ProbeParams, Scope, Snapshot};
use crate::health::workload::WorkloadComparison;
use crate::plan::{Blocker, Step, TrustState};

/// One migration of a job (a [`Step`] on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireStep {
    pub version: i64,
    #[serde(default)]
    pub resume_dirty: bool,
}

impl From<&Step> for WireStep {
    fn from(s: &Step) -> Self {
        WireStep {
            version: s.version,
            resume_dirty: s.resume_dirty,
        }
    }
}

impl From<&WireStep> for Step {
    fn from(s: &WireStep) -> Self {
        Step {
            version: s.version,
            resume_dirty: s.resume_dirty,
        }
    }
}

/// What the gate knows about an upgraded trust (the engine's `Watched` on the wire).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireWatched {
    pub trust: String,
    pub wave: String,
    pub from: Option<i64>,
    pub baseline: Snapshot,
    #[serde(default)]
    pub params: ProbeParams,
    #[serde(default)]
    pub rewrites: Vec<(String, String)>,
    /// Writes and losses seen since the upgrade.
    #[serde(default)]
    pub writes_seen: (usize, usize),
}

/// Which parts of the health section a window measures ([`Scope`] on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WireScope {
    Full,
    Soak,
    Integrity,
    Latency,
}

impl From<Scope> for WireScope {
    fn from(s: Scope) -> Self {
        match s {
            Scope::Full => WireScope::Full,
            Scope::Soak => WireScope::Soak,
            Scope::Integrity => WireScope::Integrity,
            Scope::Latency => WireScope::Latency,
        }
    }
}

impl From<WireScope> for Scope {
    fn from(s: WireScope) -> Self {
        match s {
            WireScope::Full => Scope::Full,
            WireScope::Soak => Scope::Soak,
            WireScope::Integrity => Scope::Integrity,
            WireScope::Latency => Scope::Latency,
        }
    }
}

/// A [`Judgement`] on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireJudgement {
    pub verdict: Verdict,
    pub critical: bool,
    #[serde(default)]
    pub latency: Vec<LatencyComparison>,
    #[serde(default)]
    pub workload: Option<WorkloadComparison>,
    #[serde(default)]
    pub writes: Option<WriteFigures>,
}

impl From<Judgement> for WireJudgement {
    fn from(j: Judgement) -> Self {
        WireJudgement {
            verdict: j.verdict,
            critical: j.critical,
            latency: j.latency,
            workload: j.workload,
            writes: j.writes,
        }
    }
}

impl From<WireJudgement> for Judgement {
    fn from(j: WireJudgement) -> Self {
        Judgement {
            verdict: j.verdict,
            critical: j.critical,
            latency: j.latency,
            workload: j.workload,
            writes: j.writes,
        }
    }
}

/// A row of a trust's tracking table on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireApplied {
    pub version: i64,
    pub description: String,
    pub checksum: String,
    pub dirty: bool,
}

/// Why a trust could not be read, on the wire (its message and exit code).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireUnreadable {
    pub message: String,
    pub exit_code: u8,
}

pub fn wire_state(state: TrustState) -> Result<Vec<WireApplied>, WireUnreadable> {
    match state {
        Ok(applied) => Ok(applied
            .into_iter()
            .map(|a| WireApplied {
                version: a.version,
                description: a.description,
                checksum: a.checksum,
                dirty: a.dirty,
            })
            .collect()),
        Err(blocker) => Err(WireUnreadable {
            message: blocker.to_string(),
            exit_code: blocker.exit_code().code(),
        }),
    }
}

/// A survey's read of a trust, back as the [`TrustState`] preflight plans from.
pub fn trust_state(wire: Result<Vec<WireApplied>, WireUnreadable>) -> TrustState {
    match wire {
        Ok(applied) => Ok(applied
            .into_iter()
            .map(|a| crate::db::AppliedMigration {
                version: a.version,
                description: a.description,
                checksum: a.checksum,
                dirty: a.dirty,
            })
            .collect()),
        Err(u) => Err(Blocker::Unreadable {
            message: u.message,
            exit: ExitCode::of(u.exit_code),
        }),
    }
}

/// A piece of work on one trust, as a worker receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// Preflight: read the trust's applied history (`read`), draw its probe parameters
    /// (`draw`).
    Survey {
        trust: String,
        read: bool,
        draw: bool,
    },
    /// The baseline of a trust about to be upgraded from `from` by `steps`.
    Baseline {
        wave: String,
        trust: String,
        from: Option<i64>,
        steps: Vec<WireStep>,
        params: ProbeParams,
    },
    /// Migrate a trust (preflight found it at `from` and planned `steps`).
    Migrate {
        wave: String,
        trust: String,
        from: Option<i64>,
        steps: Vec<WireStep>,
    },
    /// A gate window on an upgraded trust (`confirm`: confirmed when it does not pass;
    /// `mark_workload`: open a fresh workload window first, as after a wave's migrations).
    Window {
        wave: String,
        watched: WireWatched,
        scope: WireScope,
        window: Window,
        label: String,
        confirm: bool,
        mark_workload: bool,
    },
    /// The gate's rollback of a trust to the version it was at before the upgrade.
    Rollback { watched: WireWatched },
}

impl Job {
    /// Its kind as the queue records it.
    pub fn kind(&self) -> &'static str {
        match self {
            Job::Survey { .. } => "survey",
            Job::Baseline { .. } => "baseline",
            Job::Migrate { .. } => "migrate",
            Job::Window { .. } => "window",
            Job::Rollback { .. } => "rollback",
        }
    }

    /// The trust it touches.
    pub fn trust(&self) -> &str {
        match self {
            Job::Survey { trust, .. }
            | Job::Baseline { trust, .. }
            | Job::Migrate { trust, .. } => trust,
            Job::Window { watched, .. } | Job::Rollback { watched } => &watched.trust,
        }
    }

    /// The wave it belongs to (`preflight` for a survey).
    pub fn wave(&self) -> &str {
        match self {
            Job::Survey { .. } => "preflight",
            Job::Baseline { wave, .. } | Job::Migrate { wave, .. } | Job::Window { wave, .. } => {
                wave
            }
            Job::Rollback { watched } => &watched.wave,
        }
    }

    /// A short description for a worker's log line (`migrate camden`, `window soak-2 camden`).
    pub fn describe(&self) -> String {
        match self {
            Job::Window { label, watched, .. } => format!("window {label} {}", watched.trust),
            other => format!("{} {}", other.kind(), other.trust()),
        }
    }
}

/// What a job found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobResult {
    Survey {
        state: Option<Result<Vec<WireApplied>, WireUnreadable>>,
        params: Option<Result<ProbeParams, String>>,
    },
    Baseline {
        snapshot: Snapshot,
        /// Set when the baseline could not be measured (the run pauses).
        broken: Option<Verdict>,
    },
    Migrate {
        outcome: TrustOutcome,
    },
    Window {
        judgement: WireJudgement,
        writes_seen: (usize, usize),
    },
    Rollback {
        result: Result<(), String>,
    },
}

/// How a dispatched job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Done {
    /// A worker ran it.
    Finished {
        result: Box<JobResult>,
        worker: String,
    },
    /// It could not run (the worker's checkout differs, its result did not read): why, and
    /// the exit code that failure alone gives.
    Failed { error: String, exit: ExitCode },
    /// Cancelled before a worker claimed it (the wave or the run stopped).
    Cancelled,
}

/// Hands jobs to workers and waits for them (the coordinator's side of the queue).
pub trait Dispatch: Send + Sync {
    /// Queue `job` and wait until it ends.
    fn run(&self, job: Job) -> BoxFuture<'_, Done>;
    /// Cancel the still-queued migrate jobs of `wave` (one of its trusts failed).
    fn cancel_migrations<'a>(&'a self, wave: &'a str) -> BoxFuture<'a, ()>;
    /// The worker that last ended a job of `trust` (a trust found up to date is attributed
    /// to the worker that read it).
    fn worker_of(&self, trust: &str) -> Option<String>;
    /// Whether some live worker can reach each of `trusts`; the refusal names the first that
    /// none can, the label it needs and the live workers (`stage`: where the run is).
    fn reach<'a>(
        &'a self,
        stage: &'a str,
        trusts: &'a [String],
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// Preflight's reads through workers: each trust's applied history, read by a worker that can
/// reach it (a job that could not run makes the trust unreadable: the run is blocked).
pub async fn survey_read(r: &dyn Dispatch, trust: &str) -> TrustState {
    let job = Job::Survey {
        trust: trust.to_string(),
        read: true,
        draw: false,
    };
    match r.run(job).await {
        Done::Finished { result, .. } => match *result {
            JobResult::Survey {
                state: Some(state), ..
            } => trust_state(state),
            _ => Err(Blocker::Unreadable {
                message: format!("trust '{trust}': a worker answered the survey without a reading"),
                exit: ExitCode::Internal,
            }),
        },
        Done::Failed { error, exit } => Err(Blocker::Unreadable {
            message: error,
            exit,
        }),
        Done::Cancelled => Err(Blocker::Unreadable {
            message: format!("trust '{trust}': its survey was cancelled"),
            exit: ExitCode::Interrupted,
        }),
    }
}

/// Preflight's draw of a trust's probe parameters through a worker.
pub async fn survey_draw(r: &dyn Dispatch, trust: &str) -> Result<ProbeParams, String> {
    let job = Job::Survey {
        trust: trust.to_string(),
        read: false,
        draw: true,
    };
    match r.run(job).await {
        Done::Finished { result, .. } => match *result {
            JobResult::Survey {
                params: Some(params),
                ..
            } => params,
            _ => Err("a worker answered the survey without parameters".into()),
        },
        Done::Failed { error, .. } => Err(error),
        Done::Cancelled => Err("the survey was cancelled".into()),
    }
}

/// The labels each trust needs of a worker, from the inventory (none: any worker).
pub type Needs = BTreeMap<String, BTreeMap<String, String>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_and_results_read_back_as_they_were_written() {
        let job = Job::Migrate {
            wave: "pilot".into(),
            trust: "camden".into(),
            from: Some(3),
            steps: vec![WireStep {
                version: 4,
                resume_dirty: false,
            }],
        };
        let json = serde_json::to_string(&job).unwrap();
        assert!(json.contains("\"kind\":\"migrate\""), "{json}");
        assert_eq!(serde_json::from_str::<Job>(&json).unwrap(), job);
        let result = JobResult::Migrate {
            outcome: TrustOutcome::Upgraded { migrations: 1 },
        };
        let json = serde_json::to_string(&result).unwrap();
        assert_eq!(serde_json::from_str::<JobResult>(&json).unwrap(), result);
        for code in 0..=9 {
            assert_eq!(ExitCode::of(code).code(), code);
        }
        assert_eq!(ExitCode::of(42), ExitCode::Internal);
    }
}
