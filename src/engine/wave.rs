//! The wave loop: for each wave of the plan, approval → baselines → migrate concurrently
//! (earlier waves watched in the background) → post-upgrade checks → the policy over the
//! verdicts (rollbacks, halt, pause) → soak; and what a resumed run skips or only re-checks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use futures::stream::{self, StreamExt};

use super::events::{Event, TrustOutcome};
use super::outcome::{RunOutcome, TrustResult};
use super::policy::{decide, Next, TrustVerdict};
use super::preflight::Preflight;
use super::run::{Engine, Phase, RunState, Watched};
use super::watch::snapshot_errors;
use crate::config::health::WRITE_PROBE_NAME;
use crate::config::plan::Approval;
use crate::config::Wave;
use crate::exit_codes::ExitCode;
use crate::health::gate::{Judgement, LatencyComparison, Verdict, Window};
use crate::health::probes::{Rows, Scope, Snapshot};
use crate::plan::{Action, Step, WavePlan};

/// A trust of a wave that preflight planned to upgrade.
#[derive(Debug, Clone, Copy)]
pub(super) struct Upgrade<'p> {
    /// The trust.
    pub trust: &'p str,
    /// The version preflight found it at.
    pub from: Option<i64>,
    /// The migrations preflight planned for it.
    pub steps: &'p [Step],
    /// A worker that was running this trust's job stopped heartbeating and the job was
    /// claimed again: the trust may be part-way, so it continues from its real state.
    pub reclaimed: bool,
}

impl Engine<'_> {
    /// Every wave in order, until one stops the run.
    pub(super) async fn run_waves(
        &self,
        preflight: &Preflight,
        state: &mut RunState,
    ) -> RunOutcome {
        let planned = &preflight.plan;
        if let Some(exit) = planned.blocked_exit_code() {
            for w in &planned.waves {
                for t in &w.trusts {
                    if let Action::Blocked { blocker } = &t.action {
                        self.emit(Event::TrustBlocked {
                            wave: w.name.clone(),
                            trust: t.id.clone(),
                            reason: blocker.to_string(),
                        })
                        .await;
                    }
                }
            }
            return RunOutcome::Blocked { exit };
        }
        self.emit(Event::RunStarted {
            plan: planned.plan.clone(),
            target_version: planned.target.version,
            target_release: planned.target.release.clone(),
            waves: planned.waves.len(),
            trusts: planned.waves.iter().map(|w| w.trusts.len()).sum(),
            migrations: planned.migration_count(),
        })
        .await;
        for (index, (wave, wave_plan)) in self.plan.waves.iter().zip(&planned.waves).enumerate() {
            if let Some(stopped) = self.control.outcome() {
                return stopped;
            }
            if let Some(r) = self.resumed.filter(|r| r.passed_waves.contains(&wave.name)) {
                // Passed before the interruption: its trusts are watched, not re-gated.
                for t in &wave_plan.trusts {
                    if let Some(recorded) = r.baselines.get(&t.id) {
                        let watched = self.watched_from_journal(&t.id, &recorded.wave, recorded);
                        state.watched.push(watched);
                    }
                }
                continue;
            }
            let upgrades: Vec<Upgrade<'_>> = wave_plan
                .trusts
                .iter()
                .filter_map(|t| match &t.action {
                    Action::Upgrade { steps } => Some(Upgrade {
                        trust: t.id.as_str(),
                        from: t.current_version,
                        steps: steps.as_slice(),
                        reclaimed: false,
                    }),
                    _ => None,
                })
                .collect();
            if let Some(r) = self.remote {
                // Every trust this wave touches (and the earlier ones watched meanwhile) needs
                // a live worker that can reach it, before anything starts.
                let mut touched: Vec<String> =
                    wave_plan.trusts.iter().map(|t| t.id.clone()).collect();
                touched.extend(state.watched.iter().map(|w| w.trust.clone()));
                if let Err(message) = r.reach(&format!("wave {}", wave.name), &touched).await {
                    return RunOutcome::Unreachable {
                        wave: wave.name.clone(),
                        message,
                    };
                }
            }
            if wave.approval == Approval::Required && !upgrades.is_empty() {
                match self.approver.approve(wave) {
                    Some(by) => {
                        self.emit(Event::WaveApproved {
                            wave: wave.name.clone(),
                            by,
                        })
                        .await
                    }
                    None => {
                        self.emit(Event::WaveNotApproved {
                            wave: wave.name.clone(),
                        })
                        .await;
                        return RunOutcome::NotApproved {
                            wave: wave.name.clone(),
                        };
                    }
                }
            }
            self.emit(Event::WaveStarted {
                wave: wave.name.clone(),
                index,
                trusts: wave.trusts.len(),
                to_upgrade: upgrades.len(),
                concurrency: wave.concurrency,
            })
            .await;
            if let Some(outcome) = self
                .run_wave(wave, wave_plan, &upgrades, preflight, state)
                .await
            {
                return outcome;
            }
        }
        RunOutcome::Completed
    }

    /// One wave. `Some(outcome)` stops the run.
    async fn run_wave(
        &self,
        wave: &Wave,
        wave_plan: &WavePlan,
        upgrades: &[Upgrade<'_>],
        preflight: &Preflight,
        state: &mut RunState,
    ) -> Option<RunOutcome> {
        let mut wave_results: Vec<TrustResult> = Vec::new();
        let mut up_to_date = Vec::new();
        for t in wave_plan
            .trusts
            .iter()
            .filter(|t| t.action == Action::UpToDate)
        {
            let mut finished = self.finished_event(
                &wave.name,
                &t.id,
                t.current_version,
                TrustOutcome::UpToDate,
                0,
            );
            if let (Event::TrustFinished { worker, .. }, Some(r)) = (&mut finished, self.remote) {
                *worker = r.worker_of(&t.id);
            }
            up_to_date.push(finished);
            wave_results.push(TrustResult::new(t.id.clone(), TrustOutcome::UpToDate));
        }
        // Nothing happens to these trusts: one journal transaction records them all.
        self.emit_all(up_to_date).await;
        // On resume: trusts this run upgraded before it was interrupted, whose post-upgrade
        // check never passed, are checked now against the baseline recorded before.
        let mut verify_only: Vec<String> = Vec::new();

        // Baselines, a few trusts at a time: the wave's concurrency, as the post-upgrade
        // windows are measured, so that both see the same conditions.
        let windows_at = wave.concurrency.max(1);
        let mut baselines: HashMap<String, Watched> = HashMap::new();
        if self.gated() {
            let measured: Vec<(Watched, Option<TrustVerdict>)> = self
                .timed(Phase::Baseline, async {
                    // Every trust's workload baseline window opens now, before the first
                    // baseline.
                    self.workload_mark(upgrades.iter().map(|u| u.trust)).await;
                    stream::iter(upgrades)
                        .map(|u| self.baseline(wave, u, preflight))
                        .buffered(windows_at)
                        .filter_map(|b| async move { b })
                        .collect()
                        .await
                })
                .await;
            let mut broken: Vec<TrustVerdict> = Vec::new();
            for (watched, verdict) in measured {
                broken.extend(verdict);
                baselines.insert(watched.trust.clone(), watched);
            }
            for t in wave_plan
                .trusts
                .iter()
                .filter(|t| t.action == Action::UpToDate)
            {
                let Some(r) = self.resumed else { break };
                if r.checked.contains(&t.id) {
                    // Upgraded and checked before the interruption: soaks with its wave.
                    if let Some(recorded) = r.baselines.get(&t.id) {
                        let watched = self.watched_from_journal(&t.id, &wave.name, recorded);
                        state.watched.push(watched);
                    }
                    continue;
                }
                if let Some(recorded) = r.baselines.get(&t.id) {
                    let watched = self.watched_from_journal(&t.id, &wave.name, recorded);
                    baselines.insert(t.id.clone(), watched);
                    verify_only.push(t.id.clone());
                }
            }
            if !broken.is_empty() {
                state.results.extend(wave_results);
                return Some(RunOutcome::Paused {
                    wave: wave.name.clone(),
                    trusts: broken.iter().map(|b| b.trust.clone()).collect(),
                    reasons: broken.iter().flat_map(TrustVerdict::reasons).collect(),
                });
            }
        }

        // Migrate, while earlier waves' trusts keep being checked in the background.
        let stop = AtomicBool::new(false);
        let done = AtomicBool::new(false);
        let late: Mutex<Vec<TrustVerdict>> = Mutex::new(Vec::new());
        let migrate = async {
            let out: Vec<TrustResult> = stream::iter(upgrades.iter())
                .map(|u| {
                    let stop = &stop;
                    async move {
                        let outcome = match self.remote {
                            Some(r) => self.migrate_remote(r, &wave.name, u, stop).await,
                            None => self.migrate_trust(&wave.name, u, stop).await,
                        };
                        if matches!(outcome, TrustOutcome::Failed { .. }) {
                            stop.store(true, Ordering::SeqCst);
                            // With workers: the wave's migrations not yet claimed never start.
                            if let Some(r) = self.remote {
                                r.cancel_migrations(&wave.name).await;
                            }
                        }
                        TrustResult::new(u.trust, outcome)
                    }
                })
                .buffer_unordered(wave.concurrency)
                .collect()
                .await;
            done.store(true, Ordering::SeqCst);
            out
        };
        let background = self.watch_earlier_waves(
            &wave.name,
            &state.watched,
            &mut state.background_next,
            &done,
            &late,
        );
        let (migrated, ()) = self
            .timed(Phase::Migrate, async {
                futures::join!(migrate, background)
            })
            .await;
        wave_results.extend(migrated);

        let failed_migrations: Vec<String> = wave_results
            .iter()
            .filter(|r| matches!(r.outcome, TrustOutcome::Failed { .. }))
            .map(|r| r.trust.clone())
            .collect();
        let mut upgraded: Vec<String> = wave_results
            .iter()
            .filter(|r| matches!(r.outcome, TrustOutcome::Upgraded { .. }))
            .map(|r| r.trust.clone())
            .collect();
        upgraded.extend(verify_only);
        if let Some(stopped) = self.control.outcome() {
            // Interrupted: what was applied stays (each migration committed with its row);
            // resume checks these trusts against the baselines recorded above.
            self.emit_wave_finished(&wave.name, &wave_results).await;
            state.results.extend(wave_results);
            return Some(stopped);
        }

        // Post-upgrade checks (a few trusts at a time, as the baselines were) and the policy.
        let mut verdicts: Vec<TrustVerdict> = Vec::new();
        if self.gated() {
            verdicts = self
                .windows(Phase::PostUpgrade, async {
                    // The workload windows after the upgrade open once the wave's migrations
                    // are done, so that no migration (nor the locks it held) is counted in them.
                    self.workload_mark(upgraded.iter().map(String::as_str))
                        .await;
                    let judged = upgraded.iter().filter_map(|id| baselines.get(id));
                    let kind = (Window::PostUpgrade, Scope::Full, "post-upgrade");
                    self.judge_windows(&wave.name, judged, windows_at, kind)
                        .await
                })
                .await;
        }
        // Suspects seen in the background, under the load of this wave's migrations, are
        // checked again now that it is quiet: only a confirmed regression counts.
        let suspects = late.into_inner().unwrap_or_default();
        let late_verdicts = if suspects.is_empty() {
            Vec::new()
        } else {
            let suspected = state
                .watched
                .iter()
                .filter(|w| suspects.iter().any(|s| s.trust == w.trust));
            self.windows(
                Phase::SoakChecks,
                self.judge_windows(
                    &wave.name,
                    suspected,
                    windows_at,
                    (Window::Soak, Scope::Soak, "late-check"),
                ),
            )
            .await
        };
        self.emit_wave_finished(&wave.name, &wave_results).await;
        state.results.extend(wave_results);
        for id in &upgraded {
            if let Some(w) = baselines.remove(id) {
                state.watched.push(w);
            }
        }
        // One decision over this wave's verdicts and any confirmed late regression of an
        // earlier wave, so neither is dropped when the other halts.
        verdicts.extend(late_verdicts);
        if let Some(outcome) = self.apply_policy(&wave.name, &verdicts, state).await {
            return Some(outcome);
        }
        if !failed_migrations.is_empty() {
            // A lock held by another run is exit 6, any other failure exit 4.
            let locked = state.results.iter().any(
                |r| matches!(&r.outcome, TrustOutcome::Failed { exit_code, .. } if *exit_code == ExitCode::Locked.code()),
            );
            return Some(RunOutcome::Failed {
                wave: wave.name.clone(),
                trusts: failed_migrations,
                exit: if locked {
                    ExitCode::Locked
                } else {
                    ExitCode::MigrationFailed
                },
            });
        }
        if let Some(outcome) = self.soak(wave, state).await {
            return Some(outcome);
        }
        if let Some(stopped) = self.control.outcome() {
            return Some(stopped);
        }
        self.emit(Event::WavePassed {
            wave: wave.name.clone(),
        })
        .await;
        None
    }

    /// The baseline of a trust to upgrade (`None` when it is not in the inventory), with the
    /// verdict that pauses the run when it could not be measured. A trust part-way through
    /// its upgrade when an earlier attempt stopped keeps the baseline recorded then.
    async fn baseline(
        &self,
        wave: &Wave,
        u: &Upgrade<'_>,
        preflight: &Preflight,
    ) -> Option<(Watched, Option<TrustVerdict>)> {
        let id = u.trust;
        self.inventory.get(id)?;
        if let Some(recorded) = self
            .resumed
            .and_then(|r| r.baselines.get(id))
            .filter(|recorded| recorded.from != u.from)
        {
            // Part-way through its upgrade when the run stopped: its true baseline is the one
            // recorded before the first migration (it cannot be re-measured).
            return Some((self.watched_from_journal(id, &wave.name, recorded), None));
        }
        let params = preflight.params.get(id).cloned().unwrap_or_default();
        if let Some(r) = self.remote {
            return Some(self.baseline_remote(r, &wave.name, u, params).await);
        }
        Some(self.measure_baseline(&wave.name, u, params).await)
    }

    /// Measure the baseline of a trust to upgrade (with `params`, drawn at preflight) and
    /// record it, with the verdict that pauses the run when it could not be measured.
    pub(super) async fn measure_baseline(
        &self,
        wave: &str,
        u: &Upgrade<'_>,
        params: crate::health::probes::ProbeParams,
    ) -> (Watched, Option<TrustVerdict>) {
        let id = u.trust;
        let rewrites = self.rewrites(id, u.steps);
        let baseline = match self.inventory.get(id) {
            Some(trust) => {
                self.measure(
                    id,
                    wave,
                    trust,
                    &params,
                    &rewrites,
                    Rows::Fresh,
                    Scope::Full,
                    "baseline",
                )
                .await
            }
            None => crate::health::probes::Snapshot {
                latency: [(
                    "inventory".to_string(),
                    Err(format!("trust '{id}' is not in the inventory")),
                )]
                .into_iter()
                .collect(),
                ..Default::default()
            },
        };
        self.emit(Event::BaselineRecorded {
            wave: wave.to_string(),
            trust: id.to_string(),
            from: u.from,
            params: params.clone(),
        })
        .await;
        let problems = snapshot_errors(&baseline);
        let broken = if problems.is_empty() {
            None
        } else {
            let verdict =
                Verdict::Error(problems.iter().map(|p| format!("baseline: {p}")).collect());
            // Nothing was upgraded: the verdict is about the baseline, not the upgrade.
            self.emit_verdict(wave, id, Window::Baseline, &verdict, Vec::new())
                .await;
            Some(TrustVerdict::new(id, verdict))
        };
        let watched = Watched {
            trust: id.to_string(),
            wave: wave.to_string(),
            from: u.from,
            baseline,
            params,
            rewrites,
            writes_seen: Default::default(),
        };
        (watched, broken)
    }

    /// Judge these trusts' windows (`label`, of kind `window` over `scope`; confirmed when
    /// they do not pass), `at` a time, each verdict journalled as it is reached; the verdicts
    /// come back sorted by trust, so that what the policy reports does not depend on which
    /// window ended first.
    pub(super) async fn judge_windows<'w>(
        &self,
        wave: &str,
        trusts: impl Iterator<Item = &'w Watched>,
        at: usize,
        (window, scope, label): (Window, Scope, &str),
    ) -> Vec<TrustVerdict> {
        let trusts: Vec<&Watched> = trusts.collect();
        let beside_others = at > 1 && trusts.len() > 1;
        let judged: Vec<(&Watched, Judged)> = stream::iter(trusts)
            .map(|w| async move {
                let (j, snap) = self.confirmed(w, scope, window, label, None).await;
                if beside_others {
                    if let Some(again) = second_look(&j, scope) {
                        // Judged again alone below: its verdict is that window's. On
                        // workers the window's figures stay on the worker: the whole
                        // scope is measured again.
                        let again = if self.remote.is_some() { scope } else { again };
                        return (w, Judged::Again(again, snap));
                    }
                    if matches!(j.verdict, Verdict::Fail(_)) && !j.critical {
                        // The mirror case: a regression every confirmation showed, but
                        // measured beside the other windows, whose load the machine-load
                        // discount may not have taken out (a clean trust's write probe was
                        // seen at ×4 that way). Measured again alone, over its whole scope:
                        // a real regression persists there; lost or changed data never gets
                        // here (critical failures stand).
                        return (w, Judged::Again(scope, snap));
                    }
                }
                self.emit_judgement(wave, &w.trust, window, &j).await;
                (w, Judged::Stands(j))
            })
            .buffer_unordered(at.max(1))
            .collect()
            .await;
        let mut verdicts = Vec::with_capacity(judged.len());
        let mut again: Vec<(&Watched, Scope, Snapshot)> = Vec::new();
        for (w, j) in judged {
            match j {
                Judged::Stands(j) => verdicts.push(TrustVerdict::new(w.trust.clone(), j.verdict)),
                Judged::Again(scope, snap) => again.push((w, scope, snap)),
            }
        }
        // A window measured beside others passed although its latency moved well beyond
        // the baseline's: the discount for the machine's load (the control query), which
        // the other windows and the trust's own regression raise alike, may have hidden a
        // regression that a window alone shows (as every window was measured before they
        // ran concurrently). What moved is measured again, one trust at a time; the rest of
        // the window's figures (integrity; the writes, when their latency did not move) stand.
        // A non-critical failure measured beside others is measured again alone too (above).
        again.sort_by(|a, b| a.0.trust.cmp(&b.0.trust));
        let alone = format!("{label}-confirm-alone");
        for (w, scope, earlier) in again {
            let earlier = self.remote.is_none().then_some(&earlier);
            let (j, _) = self.confirmed(w, scope, window, &alone, earlier).await;
            self.emit_judgement(wave, &w.trust, window, &j).await;
            verdicts.push(TrustVerdict::new(w.trust.clone(), j.verdict));
        }
        verdicts.sort_by(|a, b| a.trust.cmp(&b.trust));
        verdicts
    }

    /// Turn verdicts into rollbacks and the next step.
    pub(super) async fn apply_policy(
        &self,
        wave: &str,
        verdicts: &[TrustVerdict],
        state: &mut RunState,
    ) -> Option<RunOutcome> {
        if verdicts.is_empty() {
            return None;
        }
        let decision = decide(
            verdicts,
            self.plan.on_regression,
            self.plan.max_failed_trusts,
            state.failed_trusts,
        );
        state.failed_trusts += verdicts
            .iter()
            .filter(|v| matches!(v.verdict, Verdict::Fail(_)))
            .count();
        let mut rollback_failures = Vec::new();
        for id in &decision.rollback {
            let Some(pos) = state.watched.iter().position(|w| &w.trust == id) else {
                continue;
            };
            let watched = state.watched.remove(pos);
            let rolled_back = self
                .timed(Phase::Rollback, self.rollback_trust(&watched))
                .await;
            if let Err(e) = rolled_back {
                self.emit(Event::RollbackFailed {
                    trust: id.clone(),
                    error: e.clone(),
                })
                .await;
                rollback_failures.push(format!("{id}: {e}"));
            }
        }
        let not_passed = || verdicts.iter().filter(|v| v.verdict != Verdict::Pass);
        let reasons: Vec<String> = not_passed().flat_map(TrustVerdict::reasons).collect();
        let trusts: Vec<String> = not_passed().map(|v| v.trust.clone()).collect();
        if !rollback_failures.is_empty() {
            return Some(RunOutcome::RollbackFailed {
                trusts: decision.rollback.clone(),
                reasons: rollback_failures,
            });
        }
        match decision.then {
            Next::Continue => None,
            Next::Halt => Some(RunOutcome::Halted {
                wave: wave.to_string(),
                trusts,
                reasons,
            }),
            Next::Pause => Some(RunOutcome::Paused {
                wave: wave.to_string(),
                trusts,
                reasons,
            }),
        }
    }

    /// The `wave_finished` event: how many of the wave's trusts ended each way.
    pub(super) async fn emit_wave_finished(&self, wave: &str, results: &[TrustResult]) {
        let count = |f: fn(&TrustOutcome) -> bool| results.iter().filter(|r| f(&r.outcome)).count();
        self.emit(Event::WaveFinished {
            wave: wave.to_string(),
            upgraded: count(|o| matches!(o, TrustOutcome::Upgraded { .. })),
            up_to_date: count(|o| matches!(o, TrustOutcome::UpToDate)),
            failed: count(|o| matches!(o, TrustOutcome::Failed { .. })),
            skipped: count(|o| matches!(o, TrustOutcome::Skipped)),
        })
        .await;
    }
}

/// A window judged beside others: its judgement stands, or it is measured again alone over a
/// scope, the rest of its figures from its snapshot.
enum Judged {
    Stands(Judgement),
    Again(Scope, Snapshot),
}

/// How far a passing window's latency may move from the baseline's, on its raw medians
/// (before the machine-load discount), before a window measured beside others is measured
/// again alone: by this ratio and by [`ALONE_SHIFT_MS`] (half the default regression floor),
/// so that sub-millisecond noise does not count.
const ALONE_RATIO: f64 = 1.5;
const ALONE_SHIFT_MS: f64 = 0.5;

/// Whether a window passed while one of its latency figures moved by [`ALONE_RATIO`] and
/// [`ALONE_SHIFT_MS`] or more on the raw medians.
fn moved_under_load(j: &Judgement) -> bool {
    j.verdict == Verdict::Pass && j.latency.iter().any(moved)
}

/// Whether one latency comparison moved by [`ALONE_RATIO`] and [`ALONE_SHIFT_MS`] or more on
/// its raw medians.
fn moved(c: &LatencyComparison) -> bool {
    fn median(v: &[f64]) -> Option<f64> {
        let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    }
    match (median(&c.baseline_ms), median(&c.samples_ms)) {
        (Some(b), Some(p)) if b > 0.0 => p / b >= ALONE_RATIO && p - b >= ALONE_SHIFT_MS,
        _ => false,
    }
}

/// What a window of `scope` measured beside others is measured over again alone, when it
/// [moved under load](moved_under_load): the latency probes alone when only they moved (its
/// integrity, invariants and writes stand as measured), latency and writes when the write
/// probe's latency moved (integrity stands). `None`: it stands as judged.
fn second_look(j: &Judgement, scope: Scope) -> Option<Scope> {
    if !moved_under_load(j) {
        return None;
    }
    let writes_moved = j
        .latency
        .iter()
        .any(|c| c.probe == WRITE_PROBE_NAME && moved(c));
    Some(match (writes_moved, scope) {
        (false, _) => Scope::Latency,
        (true, Scope::Full | Scope::Soak) => Scope::Soak,
        (true, other) => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judgement(verdict: Verdict, baseline_ms: Vec<f64>, samples_ms: Vec<f64>) -> Judgement {
        Judgement {
            verdict,
            critical: false,
            latency: vec![LatencyComparison {
                probe: "open-record".into(),
                baseline_median_ms: 0.0,
                median_ms: 0.0,
                baseline_p95_ms: 0.0,
                p95_ms: 0.0,
                baseline_p99_ms: 0.0,
                p99_ms: 0.0,
                shift_ms: 0.0,
                p_value: 1.0,
                machine_factor: 3.0,
                regressed: false,
                baseline_ms,
                samples_ms,
                sampling: None,
                disk_shift_ms: None,
            }],
            workload: None,
            writes: None,
        }
    }

    #[test]
    fn a_pass_whose_raw_latency_moved_far_is_measured_again_alone() {
        let moved = judgement(Verdict::Pass, vec![0.12, 0.11, 0.13], vec![0.9, 0.96, 1.0]);
        assert!(moved_under_load(&moved));
        let steady = judgement(
            Verdict::Pass,
            vec![0.12, 0.11, 0.13],
            vec![0.14, 0.12, 0.15],
        );
        assert!(!moved_under_load(&steady));
        // A window that did not pass stands as judged (and was confirmed already).
        let failed = judgement(
            Verdict::Fail(vec!["slow".into()]),
            vec![0.12, 0.11, 0.13],
            vec![0.9, 0.96, 1.0],
        );
        assert!(!moved_under_load(&failed));
        assert!(!moved_under_load(&judgement(
            Verdict::Pass,
            vec![],
            vec![1.0]
        )));
    }

    #[test]
    fn a_second_look_measures_again_only_what_moved() {
        let moved_reads = judgement(Verdict::Pass, vec![0.12, 0.11, 0.13], vec![0.9, 0.96, 1.0]);
        // Only a read probe moved: its latency alone, whatever the window's scope.
        assert_eq!(second_look(&moved_reads, Scope::Full), Some(Scope::Latency));
        assert_eq!(second_look(&moved_reads, Scope::Soak), Some(Scope::Latency));
        // The write probe moved too: latency and writes (a post-upgrade window's integrity
        // stands as measured).
        let mut moved_writes = moved_reads.clone();
        let mut w = moved_writes.latency[0].clone();
        w.probe = WRITE_PROBE_NAME.into();
        w.baseline_ms = vec![2.0, 2.1, 1.9];
        w.samples_ms = vec![6.0, 6.5, 7.0];
        moved_writes.latency.push(w.clone());
        assert_eq!(second_look(&moved_writes, Scope::Full), Some(Scope::Soak));
        assert_eq!(second_look(&moved_writes, Scope::Soak), Some(Scope::Soak));
        // Only the writes moved.
        let mut only_writes = judgement(Verdict::Pass, vec![0.12], vec![0.13]);
        only_writes.latency.push(w);
        assert_eq!(second_look(&only_writes, Scope::Full), Some(Scope::Soak));
        // Nothing moved, or the window did not pass: it stands.
        let steady = judgement(Verdict::Pass, vec![0.12], vec![0.14]);
        assert_eq!(second_look(&steady, Scope::Full), None);
        let failed = judgement(Verdict::Fail(vec!["slow".into()]), vec![0.12], vec![0.9]);
        assert_eq!(second_look(&failed, Scope::Full), None);
    }
}
