//! One model of a run, built from its journal: every report (`--junit`, `--report-dir`,
//! `flotilla report`) renders this, so what a trust's result *is* is decided here once.
//!
//! The model reads only the run's record and its events (typed, read back from the same JSON
//! objects `--events` writes, with the time each was recorded), so a past run renders exactly
//! like a live one.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::engine::events::Phases;
use crate::engine::{Event, TrustOutcome};
use crate::health::gate::{LatencyComparison, Window, WriteFigures};
use crate::health::workload::WorkloadComparison;
use crate::journal::{RunRecord, StateDb, StateError, StoredEvent};

/// A run, as its journal tells it.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The run's record (plan, status, exit code, who, when).
    pub run: RunRecord,
    /// The release the plan rolls out, when it names one.
    pub target_release: Option<String>,
    /// Waves in the plan (from `run_started`).
    pub planned_waves: Option<usize>,
    /// Trusts in the plan (from `run_started`).
    pub planned_trusts: Option<usize>,
    /// How the last attempt ended (`run_finished`), when it did.
    pub outcome: Option<String>,
    /// Time spent running, over every attempt, ms.
    pub duration_ms: u64,
    /// Where that time went, phase by phase, summed over the attempts that recorded it
    /// (journals written before flotilla measured it have none).
    pub phases: Option<Phases>,
    /// Why the gate stopped the run, per halt.
    pub halts: Vec<Halt>,
    /// Waves in the order they started.
    pub waves: Vec<WaveReport>,
    /// Trusts in the order they first appeared.
    pub trusts: Vec<TrustReport>,
    /// Events read.
    pub events: usize,
    /// What simulated clinicians experienced during the run (`demo --traffic`).
    pub traffic: Option<crate::traffic::TrafficReport>,
}

/// A halt by the health gate.
#[derive(Debug, Clone, Serialize)]
pub struct Halt {
    /// The wave.
    pub wave: String,
    /// The gate's reason.
    pub reason: String,
}

/// A wave of the run.
#[derive(Debug, Clone, Serialize)]
pub struct WaveReport {
    /// Its name.
    pub name: String,
    /// Position in the plan (from 0).
    pub index: usize,
    /// started, migrated, passed, failed, halted, not-approved or blocked (preflight).
    pub status: String,
    /// Who approved it, for an approval wave.
    pub approved_by: Option<String>,
    /// Soak rounds run, and how many the plan asks for.
    pub soak_rounds: Option<(u32, u32)>,
    /// When it (last) started, RFC 3339.
    pub started_at: Option<String>,
    /// When it last changed status, RFC 3339.
    pub ended_at: Option<String>,
    /// `ended_at - started_at`, ms.
    pub duration_ms: Option<u64>,
    /// Its trusts, in order of appearance.
    pub trusts: Vec<String>,
}

/// One migration step on a trust.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationStep {
    /// Version.
    pub version: i64,
    /// Description (empty for a revert).
    pub description: String,
    /// `migrate` or `revert`.
    pub direction: String,
    /// started (never finished), applied, failed, reverted.
    pub state: String,
    /// How long it took, ms (applied migrations).
    pub duration_ms: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// One verdict of the health gate on a trust.
#[derive(Debug, Clone, Serialize)]
pub struct GateReport {
    /// post-upgrade, soak or after-rollback.
    pub window: String,
    /// The window for people: `post-upgrade`, `soak 1/2`, `after-rollback`.
    pub label: String,
    /// pass, fail, inconclusive or error.
    pub verdict: String,
    /// The gate's reasons (empty on a pass).
    pub reasons: Vec<String>,
    /// Latency figures, baseline against the window, with the samples.
    pub latency: Vec<LatencyComparison>,
    /// The real workload's figures (PostgreSQL with `pg_stat_statements`), when compared.
    pub workload: Option<WorkloadComparison>,
    /// What the window's writes proved (lost of total, the loss bound), when it had writes.
    pub writes: Option<WriteFigures>,
    /// Which attempt of the run judged it.
    pub attempt: i64,
}

impl GateReport {
    /// Whether the gate passed the trust in this window.
    pub fn passed(&self) -> bool {
        self.verdict == "pass"
    }
}

/// A rollback of a trust.
#[derive(Debug, Clone, Serialize)]
pub struct RollbackReport {
    /// Release it was rolled back from.
    pub from: String,
    /// Release it was rolled back to.
    pub to: String,
    /// started (never finished), finished or failed.
    pub state: String,
    /// Why it failed.
    pub error: Option<String>,
    /// The worker that ran it (`rollout --workers`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
}

/// One trust's part in the run.
#[derive(Debug, Clone, Serialize)]
pub struct TrustReport {
    /// Trust id.
    pub id: String,
    /// Its wave.
    pub wave: String,
    /// Release before the upgrade.
    pub from: Option<String>,
    /// Release the upgrade aims at.
    pub to: Option<String>,
    /// Version when its part ended (after any rollback).
    pub version: Option<i64>,
    /// Release when its part ended (after any rollback).
    pub release: Option<String>,
    /// upgraded, up-to-date, failed, skipped, interrupted, blocked, or started (never
    /// finished).
    pub status: String,
    /// Why it failed or was blocked.
    pub error: Option<String>,
    /// Time spent migrating it, ms.
    pub duration_ms: Option<u64>,
    /// Migrations applied, failed and reverted, in order.
    pub migrations: Vec<MigrationStep>,
    /// Every verdict of the gate on it, in order.
    pub gates: Vec<GateReport>,
    /// Its rollback, if it had one.
    pub rollback: Option<RollbackReport>,
    /// Connection retries (the errors that caused them).
    pub retries: Vec<String>,
    /// Why its real workload was not judged (`pg_stat_statements` missing), if it was not.
    pub workload_unavailable: Option<String>,
    /// The worker that ran its migrations (`rollout --workers`: the one its `trust_finished`
    /// names).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// Index into `gates` of the first verdict of its latest attempt.
    #[serde(skip)]
    latest_gates: usize,
}

/// What a trust's part came to: the single judgement every report shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum TrustResult {
    /// Upgraded (or already up to date) and every verdict passed.
    Passed { summary: String },
    /// Something went wrong: `kind` is blocked, migration-failed, health-gate,
    /// rollback-failed, interrupted or unfinished.
    Failed { kind: String, message: String },
    /// Not started: the wave or the run stopped first.
    Skipped { message: String },
}

impl TrustResult {
    /// `passed`, `failed` or `skipped`.
    pub fn label(&self) -> &'static str {
        match self {
            TrustResult::Passed { .. } => "passed",
            TrustResult::Failed { .. } => "failed",
            TrustResult::Skipped { .. } => "skipped",
        }
    }
}

impl TrustReport {
    fn new(id: &str, wave: &str) -> TrustReport {
        TrustReport {
            id: id.to_string(),
            wave: wave.to_string(),
            from: None,
            to: None,
            version: None,
            release: None,
            status: "started".into(),
            error: None,
            duration_ms: None,
            migrations: Vec::new(),
            gates: Vec::new(),
            rollback: None,
            worker: None,
            retries: Vec::new(),
            workload_unavailable: None,
            latest_gates: 0,
        }
    }

    /// The verdicts of its latest attempt (a resumed run may judge a trust again).
    pub fn latest_gates(&self) -> &[GateReport] {
        &self.gates[self.latest_gates.min(self.gates.len())..]
    }

    /// The latest post-upgrade verdict with latency figures: what the plots show.
    pub fn post_upgrade(&self) -> Option<&GateReport> {
        self.gates
            .iter()
            .rev()
            .find(|g| g.window == "post-upgrade" && !g.latency.is_empty())
    }

    /// What its part came to.
    pub fn result(&self) -> TrustResult {
        let failed = |kind: &str, message: String| TrustResult::Failed {
            kind: kind.into(),
            message,
        };
        let rolled_back = match &self.rollback {
            Some(r) if r.state == "finished" => format!("; rolled back to {}", r.to),
            Some(r) if r.state == "failed" => format!(
                "; its rollback FAILED: {}",
                r.error.as_deref().unwrap_or("unknown error")
            ),
            Some(_) => "; its rollback did not finish".into(),
            None => String::new(),
        };
        if let Some(r) = &self.rollback {
            if r.state == "failed" {
                return failed(
                    "rollback-failed",
                    format!(
                        "rollback to {} failed: {}",
                        r.to,
                        r.error.as_deref().unwrap_or("unknown error")
                    ),
                );
            }
        }
        let error = self.error.clone().unwrap_or_default();
        match self.status.as_str() {
            "blocked" => return failed("blocked", format!("blocked before the run: {error}")),
            "failed" => return failed("migration-failed", format!("{error}{rolled_back}")),
            "interrupted" => {
                return failed(
                    "interrupted",
                    "interrupted by an operator between two migrations".into(),
                )
            }
            "skipped" => {
                return TrustResult::Skipped {
                    message: "not started: the wave or the run stopped first".into(),
                }
            }
            _ => {}
        }
        if let Some(g) = self.latest_gates().iter().find(|g| !g.passed()) {
            return failed(
                "health-gate",
                format!(
                    "health gate {}: {}: {}{rolled_back}",
                    g.label,
                    g.verdict,
                    g.reasons.join("; ")
                ),
            );
        }
        match self.status.as_str() {
            "upgraded" => TrustResult::Passed {
                summary: format!(
                    "upgraded {} → {} ({} migrations), {} verdict(s) passed",
                    self.from.as_deref().unwrap_or("?"),
                    self.release.as_deref().unwrap_or("?"),
                    self.migrations
                        .iter()
                        .filter(|m| m.direction == "migrate" && m.state == "applied")
                        .count(),
                    self.latest_gates().len()
                ),
            },
            "up-to-date" => TrustResult::Passed {
                summary: format!(
                    "already at {}",
                    self.release.as_deref().unwrap_or("the target")
                ),
            },
            _ => failed(
                "unfinished",
                "the run ended before this trust's part finished (resume continues it)".into(),
            ),
        }
    }
}

/// Why a report could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("no run '{run}' in the state database {location}")]
    NoRun { run: String, location: String },
}

/// Milliseconds between two RFC 3339 times, when both parse and the second is later.
fn between(start: &str, end: &str) -> Option<u64> {
    let parse = |s: &str| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
    };
    let ms = (parse(end)? - parse(start)?).whole_milliseconds();
    u64::try_from(ms).ok()
}

impl RunReport {
    /// Read run `run_id` from the state database.
    pub async fn load(state: &StateDb, run_id: &str) -> Result<RunReport, ModelError> {
        let mut run = state.run(run_id).await?.ok_or_else(|| ModelError::NoRun {
            run: run_id.to_string(),
            location: state.location().to_string(),
        })?;
        // A run left `running` whose lease is gone crashed: the report says so.
        let lease = state.lease_holder().await?;
        run.status = run.effective_status(lease.as_ref(), crate::journal::lease::now_ms());
        let events = state.events(run_id).await?;
        let mut report = RunReport::build(run, &events);
        report.traffic = crate::traffic::store::load(state, run_id).await?;
        Ok(report)
    }

    /// The trust `id`, if it took part.
    pub fn trust(&self, id: &str) -> Option<&TrustReport> {
        self.trusts.iter().find(|t| t.id == id)
    }

    /// Build the model from a run's record and its events, in order.
    pub fn build(run: RunRecord, events: &[StoredEvent]) -> RunReport {
        let mut b = Builder {
            report: RunReport {
                run,
                target_release: None,
                planned_waves: None,
                planned_trusts: None,
                outcome: None,
                duration_ms: 0,
                phases: None,
                halts: Vec::new(),
                waves: Vec::new(),
                trusts: Vec::new(),
                events: events.len(),
                traffic: None,
            },
            soak_round: BTreeMap::new(),
        };
        for e in events {
            b.apply(e);
        }
        b.report
    }
}

struct Builder {
    report: RunReport,
    /// Wave → the soak round in progress (round, of).
    soak_round: BTreeMap<String, (u32, u32)>,
}

impl Builder {
    fn wave(&mut self, name: &str) -> &mut WaveReport {
        let waves = &mut self.report.waves;
        let i = match waves.iter().position(|w| w.name == name) {
            Some(i) => i,
            None => {
                waves.push(WaveReport {
                    name: name.to_string(),
                    index: waves.len(),
                    status: "started".into(),
                    approved_by: None,
                    soak_rounds: None,
                    started_at: None,
                    ended_at: None,
                    duration_ms: None,
                    trusts: Vec::new(),
                });
                waves.len() - 1
            }
        };
        &mut waves[i]
    }

    fn wave_status(&mut self, name: &str, status: &str, at: &str) {
        let w = self.wave(name);
        w.status = status.to_string();
        w.ended_at = Some(at.to_string());
        w.duration_ms = w.started_at.as_deref().and_then(|s| between(s, at));
    }

    /// The trust `id`, registered in `wave` when first seen (`wave` may be empty for events
    /// that do not name it; such a trust is filed under its wave when one names it).
    fn trust(&mut self, id: &str, wave: &str) -> &mut TrustReport {
        let i = match self.report.trusts.iter().position(|t| t.id == id) {
            Some(i) => i,
            None => {
                self.report.trusts.push(TrustReport::new(id, wave));
                self.report.trusts.len() - 1
            }
        };
        if !wave.is_empty() {
            if self.report.trusts[i].wave.is_empty() {
                self.report.trusts[i].wave = wave.to_string();
            }
            let w = self.wave(wave);
            if !w.trusts.iter().any(|t| t == id) {
                w.trusts.push(id.to_string());
            }
        }
        &mut self.report.trusts[i]
    }

    fn apply(&mut self, e: &StoredEvent) {
        match &e.event {
            Event::RunStarted {
                target_release,
                waves,
                trusts,
                ..
            } => {
                self.report.target_release = target_release.clone();
                self.report.planned_waves = Some(*waves);
                self.report.planned_trusts = Some(*trusts);
            }
            Event::RunFinished {
                outcome,
                duration_ms,
                phases,
                ..
            } => {
                self.report.outcome = Some(outcome.clone());
                self.report.duration_ms += duration_ms;
                if let Some(p) = phases {
                    self.report
                        .phases
                        .get_or_insert_with(Phases::default)
                        .add(p);
                }
            }
            Event::WaveStarted { wave, index, .. } => {
                let w = self.wave(wave);
                w.index = *index;
                w.status = "started".into();
                w.started_at = Some(e.at.clone());
                w.ended_at = None;
                w.duration_ms = None;
            }
            Event::WaveApproved { wave, by } => self.wave(wave).approved_by = Some(by.clone()),
            Event::WaveNotApproved { wave } => self.wave_status(wave, "not-approved", &e.at),
            Event::WaveFinished { wave, failed, .. } => {
                let status = if *failed > 0 { "failed" } else { "migrated" };
                self.wave_status(wave, status, &e.at);
            }
            Event::WavePassed { wave } => self.wave_status(wave, "passed", &e.at),
            Event::Halted { wave, reason } => {
                self.wave_status(wave, "halted", &e.at);
                self.report.halts.push(Halt {
                    wave: wave.clone(),
                    reason: reason.clone(),
                });
            }
            Event::SoakRound {
                wave, round, of, ..
            } => {
                self.wave(wave).soak_rounds = Some((*round, *of));
                self.soak_round.insert(wave.clone(), (*round, *of));
            }
            Event::TrustBlocked {
                wave,
                trust,
                reason,
            } => {
                let t = self.trust(trust, wave);
                t.status = "blocked".into();
                t.error = Some(reason.clone());
                let w = self.wave(wave);
                if w.started_at.is_none() {
                    w.status = "blocked".into();
                }
            }
            Event::TrustStarted {
                wave,
                trust,
                from,
                to,
                ..
            } => {
                let t = self.trust(trust, wave);
                t.from = Some(from.clone());
                t.to = Some(to.clone());
                t.status = "started".into();
                t.error = None;
                t.rollback = None;
                t.latest_gates = t.gates.len();
            }
            Event::TrustFinished {
                wave,
                trust,
                version,
                release,
                outcome,
                duration_ms,
                ..
            } => {
                let t = self.trust(trust, wave);
                t.worker = worker_of(e);
                t.status = outcome.status().into();
                t.version = *version;
                t.release = Some(release.clone());
                t.error = match outcome {
                    TrustOutcome::Failed { error, .. } => Some(error.clone()),
                    _ => None,
                };
                t.duration_ms = Some(*duration_ms);
            }
            Event::TrustRetrying { trust, error, .. } => {
                self.trust(trust, "").retries.push(error.clone());
            }
            Event::MigrationStarted {
                trust,
                version,
                description,
                ..
            } => self.migration_started(trust, *version, description, "migrate"),
            Event::MigrationReverting { trust, version } => {
                self.migration_started(trust, *version, "", "revert")
            }
            Event::MigrationApplied {
                trust,
                version,
                duration_ms,
            } => {
                if let Some(m) = self.started_migration(trust, *version, "migrate") {
                    m.state = "applied".into();
                    m.duration_ms = Some(*duration_ms);
                }
            }
            Event::MigrationFailed {
                trust,
                version,
                error,
            } => {
                if let Some(m) = self.started_migration(trust, *version, "migrate") {
                    m.state = "failed".into();
                    m.error = Some(error.clone());
                }
            }
            Event::MigrationReverted { trust, version, .. } => {
                if let Some(m) = self.started_migration(trust, *version, "revert") {
                    m.state = "reverted".into();
                }
            }
            Event::HealthVerdict {
                wave,
                trust,
                window,
                verdict,
                latency,
                workload,
                writes,
            } => {
                let label = match (window, self.soak_round.get(wave)) {
                    (Window::Soak, Some((round, of))) => format!("soak {round}/{of}"),
                    _ => window.label().to_string(),
                };
                let t = self.trust(trust, wave);
                t.gates.push(GateReport {
                    window: window.label().to_string(),
                    label,
                    verdict: verdict.label().to_string(),
                    reasons: verdict.reasons().to_vec(),
                    latency: latency.clone(),
                    workload: workload.clone(),
                    writes: writes.clone(),
                    attempt: e.attempt,
                });
            }
            Event::WorkloadUnavailable { trust, reason } => {
                self.trust(trust, "").workload_unavailable = Some(reason.clone());
            }
            Event::RollbackStarted {
                trust, from, to, ..
            } => {
                self.trust(trust, "").rollback = Some(RollbackReport {
                    from: from.clone(),
                    to: to.clone(),
                    state: "started".into(),
                    error: None,
                    worker: worker_of(e),
                });
            }
            Event::RollbackFinished {
                trust,
                version,
                release,
            } => {
                let t = self.trust(trust, "");
                t.version = *version;
                t.release = Some(release.clone());
                let r = Self::rollback_of(t);
                r.state = "finished".into();
                r.error = None;
                r.worker = worker_of(e).or(r.worker.take());
            }
            Event::RollbackFailed { trust, error } => {
                let r = Self::rollback_of(self.trust(trust, ""));
                r.state = "failed".into();
                r.error = Some(error.clone());
                r.worker = worker_of(e).or(r.worker.take());
            }
            _ => {}
        }
    }

    /// A migration (`migrate`) or down migration (`revert`) starts on a trust.
    fn migration_started(&mut self, trust: &str, version: i64, description: &str, direction: &str) {
        self.trust(trust, "").migrations.push(MigrationStep {
            version,
            description: description.to_string(),
            direction: direction.into(),
            state: "started".into(),
            duration_ms: None,
            error: None,
        });
    }

    /// The latest step of `version` in `direction` on a trust still started, if any.
    fn started_migration(
        &mut self,
        trust: &str,
        version: i64,
        direction: &str,
    ) -> Option<&mut MigrationStep> {
        self.trust(trust, "")
            .migrations
            .iter_mut()
            .rev()
            .find(|m| m.version == version && m.direction == direction && m.state == "started")
    }

    /// A trust's rollback, started now when its start was not recorded.
    fn rollback_of(t: &mut TrustReport) -> &mut RollbackReport {
        t.rollback.get_or_insert_with(|| RollbackReport {
            from: String::new(),
            to: String::new(),
            state: String::new(),
            error: None,
            worker: None,
        })
    }
}

/// The worker an event names (`"worker": NAME`: written by `flotilla worker`).
fn worker_of(e: &StoredEvent) -> Option<String> {
    e.body
        .get("worker")
        .and_then(|w| w.as_str())
        .map(str::to_string)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn record() -> RunRecord {
        RunRecord {
            run_id: "r1".into(),
            plan: "rio-5.1".into(),
            plan_path: "plans/rio-5.1.yaml".into(),
            plan_sha256: String::new(),
            migrations_sha256: String::new(),
            target_version: 130,
            started_by: "ops@host".into(),
            started_at: "2026-01-01T10:00:00Z".into(),
            updated_at: "2026-01-01T10:00:09Z".into(),
            status: "halted".into(),
            attempts: 1,
            exit_code: Some(3),
            reason: None,
            kind: "rollout".into(),
        }
    }

    /// [`halted_run`] whose `run_finished` carries a phase breakdown (10 s of wall time).
    pub(crate) fn phased_run() -> Vec<StoredEvent> {
        let mut events = halted_run();
        let last = events.last_mut().expect("the halted run has events");
        last.body["phases"] = serde_json::json!({"preflight_ms":500,"baseline_ms":1500,
            "migrate_ms":3000,"post_upgrade_ms":2000,"confirm_ms":0,"soak_wait_ms":2000,
            "soak_checks_ms":500,"background_ms":700,"journal_ms":100,"rollback_ms":400,"wall_ms":10000});
        last.event = crate::engine::Event::from_json(&last.body);
        events
    }

    pub(crate) fn halted_run() -> Vec<StoredEvent> {
        let bodies = vec![
            json!({"event":"run_started","plan":"rio-5.1","target_version":130,"target_release":"5.1","waves":2,"trusts":3,"migrations":10}),
            json!({"event":"wave_started","wave":"pilot","index":0,"trusts":2,"to_upgrade":2,"concurrency":2}),
            json!({"event":"trust_started","wave":"pilot","trust":"camden","from":"5.0","to":"5.1","migrations":1}),
            json!({"event":"migration_started","trust":"camden","version":90,"description":"add <smartcard> & co","before":80}),
            json!({"event":"migration_applied","trust":"camden","version":90,"duration_ms":6}),
            json!({"event":"trust_finished","wave":"pilot","trust":"camden","version":90,"release":"5.1","status":"upgraded","migrations":1,"duration_ms":40}),
            json!({"event":"trust_started","wave":"pilot","trust":"islington","from":"5.0","to":"5.1","migrations":1}),
            json!({"event":"migration_started","trust":"islington","version":90,"description":"add_smartcard","before":80}),
            json!({"event":"migration_applied","trust":"islington","version":90,"duration_ms":5}),
            json!({"event":"trust_finished","wave":"pilot","trust":"islington","version":90,"release":"5.1","status":"upgraded","migrations":1,"duration_ms":30}),
            json!({"event":"health_verdict","wave":"pilot","trust":"islington","window":"post-upgrade","verdict":"pass","latency":[]}),
            json!({"event":"health_verdict","wave":"pilot","trust":"camden","window":"post-upgrade","verdict":"fail","reasons":["latency probe 'open-record' regressed"],"latency":[{"probe":"open-record","baseline_median_ms":0.2,"median_ms":4.0,"baseline_p95_ms":0.3,"p95_ms":6.0,"baseline_p99_ms":0.3,"p99_ms":6.5,"shift_ms":3.8,"p_value":1e-9,"machine_factor":1.0,"regressed":true,"baseline_ms":[0.2,0.3],"samples_ms":[4.0,6.0]}]}),
            json!({"event":"wave_finished","wave":"pilot","upgraded":2,"up_to_date":0,"failed":0,"skipped":0}),
            json!({"event":"rollback_started","trust":"camden","from":"5.1","to":"5.0","migrations":1}),
            json!({"event":"migration_reverting","trust":"camden","version":90}),
            json!({"event":"migration_reverted","trust":"camden","version":90,"now_at":80}),
            json!({"event":"health_verdict","wave":"pilot","trust":"camden","window":"after-rollback","verdict":"pass","latency":[]}),
            json!({"event":"rollback_finished","trust":"camden","version":80,"release":"5.0"}),
            json!({"event":"halted","wave":"pilot","reason":"camden: latency probe 'open-record' regressed"}),
            json!({"event":"run_finished","outcome":"halted","exit_code":3,"duration_ms":9000}),
        ];
        bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| {
                StoredEvent::new(i as i64, 1, format!("2026-01-01T10:00:{:02}Z", i / 3), body)
            })
            .collect()
    }

    /// The halted run, with camden failed by its real workload (a statement the probes never
    /// run) and islington's workload not judged (no pg_stat_statements).
    pub(crate) fn workload_run() -> Vec<StoredEvent> {
        let mut events = halted_run();
        for e in &mut events {
            if e.body["event"] == "health_verdict"
                && e.body["trust"] == "camden"
                && e.body["window"] == "post-upgrade"
            {
                e.body = json!({"event":"health_verdict","wave":"pilot","trust":"camden","window":"post-upgrade","verdict":"fail",
                    "reasons":["statement regressed (pg_stat_statements queryid 42): mean 0.120 ms → 5.000 ms (×41.7) over 140 → 90 calls: SELECT at FROM audit_log WHERE entity_id < $1"],
                    "latency":[],
                    "workload":{"baseline_seconds":2.5,"seconds":2.1,"machine_factor":1.0,
                        "statements":[{"queryid":42,"query":"SELECT at FROM audit_log WHERE entity_id < $1","baseline_calls":140,"calls":90,"baseline_mean_ms":0.12,"mean_ms":5.0,"ratio":41.7,"shift_ms":4.88,"p_value":1e-30,"total_ms":450.0,"regressed":true}],
                        "beyond_top":0,"too_few_calls":3,
                        "new_statements":[{"queryid":7,"query":"SELECT 1 FROM audit_archive","calls":30,"mean_ms":0.5,"total_ms":15.0}],
                        "new_count":1,"gone":0,
                        "database":{"baseline":{"commits":300,"rollbacks":0,"deadlocks":0,"conflicts":0,"temp_files":0,"temp_bytes":0},
                                    "window":{"commits":280,"rollbacks":1,"deadlocks":0,"conflicts":0,"temp_files":2,"temp_bytes":8192},
                                    "baseline_rollback_rate":0.0,"rollback_rate":0.0036,"rollback_p_value":0.16,"rollbacks_regressed":false,"deadlocks_regressed":false}}});
                e.event = Event::from_json(&e.body);
                assert_ne!(e.event, Event::Unknown, "the workload verdict reads");
            }
        }
        events.insert(
            1,
            StoredEvent::new(
                1000,
                1,
                "2026-01-01T10:00:00Z",
                json!({"event":"workload_unavailable","trust":"islington","reason":"the pg_stat_statements extension is not created in this database"}),
            ),
        );
        events
    }

    #[test]
    fn workload_figures_and_an_unjudged_workload_reach_the_report() {
        let r = RunReport::build(record(), &workload_run());
        let camden = r.trust("camden").unwrap();
        let gate = camden
            .gates
            .iter()
            .find(|g| g.window == "post-upgrade")
            .unwrap();
        let w = gate.workload.as_ref().expect("workload figures");
        assert!(w.statements[0].regressed && w.new_count == 1);
        assert_eq!(camden.workload_unavailable, None);
        let islington = r.trust("islington").unwrap();
        assert_eq!(islington.wave, "pilot");
        assert!(islington
            .workload_unavailable
            .as_deref()
            .is_some_and(|w| w.contains("not created")));
    }

    #[test]
    fn a_halted_run_fails_the_regressed_trust_with_the_gate_reason() {
        let r = RunReport::build(record(), &halted_run());
        assert_eq!(r.waves.len(), 1);
        assert_eq!(r.waves[0].status, "halted");
        assert_eq!(r.waves[0].trusts, vec!["camden", "islington"]);
        assert_eq!(r.waves[0].duration_ms, Some(6000), "wave_started to halted");
        assert_eq!(r.duration_ms, 9000);
        let camden = r.trust("camden").unwrap();
        assert_eq!(camden.release.as_deref(), Some("5.0"), "after the rollback");
        assert_eq!(camden.migrations.len(), 2);
        assert_eq!(camden.migrations[1].state, "reverted");
        match camden.result() {
            TrustResult::Failed { kind, message } => {
                assert_eq!(kind, "health-gate");
                assert!(message.contains("open-record' regressed"), "{message}");
                assert!(message.contains("rolled back to 5.0"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            camden.post_upgrade().unwrap().latency[0].samples_ms.len(),
            2
        );
        assert_eq!(r.trust("islington").unwrap().result().label(), "passed");
    }

    #[test]
    fn a_retried_trust_is_judged_on_its_latest_attempt() {
        let mut events = halted_run();
        let extra = [
            json!({"event":"run_resumed","attempt":2}),
            json!({"event":"trust_started","wave":"pilot","trust":"camden","from":"5.0","to":"5.1","migrations":1}),
            json!({"event":"trust_finished","wave":"pilot","trust":"camden","version":90,"release":"5.1","status":"upgraded","migrations":1,"duration_ms":40}),
            json!({"event":"health_verdict","wave":"pilot","trust":"camden","window":"post-upgrade","verdict":"pass","latency":[]}),
            json!({"event":"wave_passed","wave":"pilot"}),
        ];
        for body in extra {
            events.push(StoredEvent::new(
                events.len() as i64,
                2,
                "2026-01-01T11:00:00Z",
                body,
            ));
        }
        let r = RunReport::build(record(), &events);
        assert_eq!(r.trust("camden").unwrap().result().label(), "passed");
        assert_eq!(r.trust("camden").unwrap().gates.len(), 3, "history is kept");
        assert_eq!(r.waves[0].status, "passed");
    }
}
