//! The engine's side of workers (see [`super::jobs`] for how the work is split): what a
//! worker runs for each job it claims ([`Engine::execute_job`]: the very functions a run
//! without workers calls), and what the coordinating engine does instead of that work when it
//! has workers: queue a job, wait for its result, and turn a job that could not run into what
//! the local call gives on such a failure (a failed or skipped trust, an error verdict, a
//! failed rollback; missing data is never a pass).

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use super::events::{Event, TrustOutcome};
use super::jobs::{
    wire_state, Dispatch, Done, Job, JobResult, WireStep, WireUnreadable, WireWatched,
};
use super::policy::TrustVerdict;
use super::run::{elapsed_ms, Engine, Watched};
use super::wave::Upgrade;
use crate::exit_codes::ExitCode;
use crate::health::gate::{Judgement, Verdict, Window};
use crate::health::probes::{ProbeParams, Scope, Snapshot};
use crate::plan::Step;

impl Engine<'_> {
    /// Run `job` here, as a worker does with a job it claimed (`reclaimed`: a worker that
    /// claimed it before stopped heartbeating: continue from the trust's real state).
    pub async fn execute_job(&self, job: &Job, reclaimed: bool) -> JobResult {
        match job {
            Job::Survey { trust, read, draw } => {
                let Some(t) = self.inventory.get(trust) else {
                    let missing = format!("trust '{trust}' is not in this worker's inventory");
                    return JobResult::Survey {
                        state: read.then(|| {
                            Err(WireUnreadable {
                                message: missing.clone(),
                                exit_code: ExitCode::Config.code(),
                            })
                        }),
                        params: draw.then(|| Err(missing.clone())),
                    };
                };
                let state = if *read {
                    Some(wire_state(
                        super::preflight::read_state_within(t, self.plan.timeouts.lock).await,
                    ))
                } else {
                    None
                };
                let params = if *draw {
                    Some(crate::health::probes::draw_params(t, &self.plan.health).await)
                } else {
                    None
                };
                JobResult::Survey { state, params }
            }
            Job::Baseline {
                wave,
                trust,
                from,
                steps,
                params,
            } => {
                self.workload_mark(std::iter::once(trust.as_str())).await;
                let steps: Vec<Step> = steps.iter().map(Step::from).collect();
                let u = Upgrade {
                    trust,
                    from: *from,
                    steps: &steps,
                    reclaimed,
                };
                let (watched, broken) = self.measure_baseline(wave, &u, params.clone()).await;
                JobResult::Baseline {
                    snapshot: watched.baseline,
                    broken: broken.map(|b| b.verdict),
                }
            }
            Job::Migrate {
                wave,
                trust,
                from,
                steps,
            } => {
                let steps: Vec<Step> = steps.iter().map(Step::from).collect();
                let u = Upgrade {
                    trust,
                    from: *from,
                    steps: &steps,
                    reclaimed,
                };
                if reclaimed {
                    // Closes the intent the stopped worker may have recorded: this attempt
                    // records its own, from the trust's real state.
                    self.emit(Event::TrustRetrying {
                        trust: trust.clone(),
                        attempt: 1,
                        of: 1,
                        after_ms: 0,
                        error: "the worker running it stopped heartbeating; continuing from the trust's real state".into(),
                    })
                    .await;
                }
                let outcome = self.migrate_trust(wave, &u, &AtomicBool::new(false)).await;
                JobResult::Migrate { outcome }
            }
            Job::Window {
                watched,
                scope,
                window,
                label,
                confirm,
                mark_workload,
                ..
            } => {
                let w = watched.watched();
                if *mark_workload {
                    self.workload_mark(std::iter::once(w.trust.as_str())).await;
                }
                let scope = Scope::from(*scope);
                let (j, _) = if *confirm {
                    self.confirmed(&w, scope, *window, label, None).await
                } else {
                    self.judged(&w, scope, *window, label, None).await
                };
                let writes_seen = w.writes_seen.lock().map(|s| *s).unwrap_or_default();
                JobResult::Window {
                    judgement: j.into(),
                    writes_seen,
                }
            }
            Job::Rollback { watched } => JobResult::Rollback {
                result: self.rollback_trust(&watched.watched()).await,
            },
        }
    }

    /// `job` on a worker; `Err` (why) when it did not finish there or its result is of
    /// another kind.
    async fn on_worker(&self, r: &dyn Dispatch, job: Job) -> Result<JobResult, (String, ExitCode)> {
        let kind = job.kind();
        let trust = job.trust().to_string();
        match r.run(job).await {
            Done::Finished { result, .. } => Ok(*result),
            Done::Failed { error, exit } => Err((error, exit)),
            Done::Cancelled => Err((
                format!("the {kind} job of trust '{trust}' was cancelled before a worker ran it"),
                ExitCode::Interrupted,
            )),
        }
    }

    /// A trust's migrations on a worker (the coordinator's side of `migrate_trust`): the
    /// worker journals the trust's events, `trust_finished` included; a job that was
    /// cancelled or could not run is finished here.
    pub(super) async fn migrate_remote(
        &self,
        r: &dyn Dispatch,
        wave: &str,
        u: &Upgrade<'_>,
        stop: &AtomicBool,
    ) -> TrustOutcome {
        let started = Instant::now();
        let outcome = if stop.load(std::sync::atomic::Ordering::SeqCst) || self.control.stopping() {
            TrustOutcome::Skipped
        } else {
            let job = Job::Migrate {
                wave: wave.to_string(),
                trust: u.trust.to_string(),
                from: u.from,
                steps: u.steps.iter().map(WireStep::from).collect(),
            };
            match r.run(job).await {
                Done::Finished { result, .. } => match *result {
                    JobResult::Migrate { outcome } => return outcome,
                    _ => TrustOutcome::Failed {
                        error: "a worker answered the migrate job with another kind of result"
                            .into(),
                        exit_code: ExitCode::Internal.code(),
                    },
                },
                Done::Cancelled => TrustOutcome::Skipped,
                Done::Failed { error, exit } => TrustOutcome::Failed {
                    error,
                    exit_code: exit.code(),
                },
            }
        };
        let finished =
            self.finished_event(wave, u.trust, u.from, outcome.clone(), elapsed_ms(started));
        self.emit(finished).await;
        outcome
    }

    /// A baseline on a worker; a job that could not run is a baseline that could not be
    /// measured (the run pauses).
    pub(super) async fn baseline_remote(
        &self,
        r: &dyn Dispatch,
        wave: &str,
        u: &Upgrade<'_>,
        params: ProbeParams,
    ) -> (Watched, Option<TrustVerdict>) {
        let id = u.trust;
        let job = Job::Baseline {
            wave: wave.to_string(),
            trust: id.to_string(),
            from: u.from,
            steps: u.steps.iter().map(WireStep::from).collect(),
            params: params.clone(),
        };
        let (snapshot, broken) = match self.on_worker(r, job).await {
            Ok(JobResult::Baseline { snapshot, broken }) => (snapshot, broken),
            other => {
                let why = match other {
                    Err((e, _)) => e,
                    Ok(_) => "a worker answered with another kind of result".into(),
                };
                let verdict = Verdict::Error(vec![format!("baseline: {why}")]);
                self.emit_verdict(wave, id, Window::Baseline, &verdict, Vec::new())
                    .await;
                (Snapshot::default(), Some(verdict))
            }
        };
        let watched = Watched {
            trust: id.to_string(),
            wave: wave.to_string(),
            from: u.from,
            baseline: snapshot,
            params,
            rewrites: self.rewrites(id, u.steps),
            writes_seen: Default::default(),
        };
        (watched, broken.map(|v| TrustVerdict::new(id, v)))
    }

    /// A gate window on a worker (`confirm`: with its confirmations); a job that could not
    /// run is an error verdict, never a pass.
    pub(super) async fn window_remote(
        &self,
        r: &dyn Dispatch,
        w: &Watched,
        (scope, kind, label): (Scope, Window, &str),
        confirm: bool,
    ) -> Judgement {
        let job = Job::Window {
            wave: w.wave.clone(),
            watched: WireWatched::of(w),
            scope: scope.into(),
            window: kind,
            label: label.to_string(),
            confirm,
            mark_workload: kind == Window::PostUpgrade && label == "post-upgrade",
        };
        match self.on_worker(r, job).await {
            Ok(JobResult::Window {
                judgement,
                writes_seen,
            }) => {
                if let Ok(mut seen) = w.writes_seen.lock() {
                    *seen = writes_seen;
                }
                judgement.into()
            }
            other => {
                let why = match other {
                    Err((e, _)) => e,
                    Ok(_) => "a worker answered with another kind of result".into(),
                };
                Judgement {
                    verdict: Verdict::Error(vec![format!(
                        "{label}: the window could not be measured: {why}"
                    )]),
                    critical: false,
                    latency: Vec::new(),
                    workload: None,
                    writes: None,
                }
            }
        }
    }

    /// The gate's rollback of a trust on a worker.
    pub(super) async fn rollback_remote(
        &self,
        r: &dyn Dispatch,
        w: &Watched,
    ) -> Result<(), String> {
        let job = Job::Rollback {
            watched: WireWatched::of(w),
        };
        match self.on_worker(r, job).await {
            Ok(JobResult::Rollback { result }) => result,
            Ok(_) => Err("a worker answered the rollback job with another kind of result".into()),
            Err((e, _)) => Err(e),
        }
    }
}

/// [`Watched`] to and from the wire.
trait Wire {
    fn of(w: &Watched) -> Self;
    fn watched(&self) -> Watched;
}

impl Wire for WireWatched {
    fn of(w: &Watched) -> Self {
        WireWatched {
            trust: w.trust.clone(),
            wave: w.wave.clone(),
            from: w.from,
            baseline: w.baseline.clone(),
            params: w.params.clone(),
            rewrites: w.rewrites.iter().cloned().collect(),
            writes_seen: w.writes_seen.lock().map(|s| *s).unwrap_or_default(),
        }
    }

    fn watched(&self) -> Watched {
        Watched {
            trust: self.trust.clone(),
            wave: self.wave.clone(),
            from: self.from,
            baseline: self.baseline.clone(),
            params: self.params.clone(),
            rewrites: self
                .rewrites
                .iter()
                .cloned()
                .collect::<std::collections::BTreeSet<_>>(),
            writes_seen: std::sync::Arc::new(std::sync::Mutex::new(self.writes_seen)),
        }
    }
}
