//! What the simulated clinicians experienced, per trust and phase of its upgrade, and the
//! **blast radius** of the rollout: how many trusts and clinician actions the new version hurt
//! (pure: from the traffic's [`Record`]s and each trust's phases, read from the run's journal).
//!
//! A trust's phases come from the journal's events: `before` (until its first migration
//! starts), `migrating` (until its part finishes), `upgraded` (on the new version: until its
//! rollback starts, or the end), `rolling-back`, `rolled-back`. An action belongs to the phase
//! in which it started.
//!
//! An action is **hurt** by the upgrade when
//! - it started while its trust was `upgraded` and failed (an error, a lock it waited
//!   [`LOCK_WAIT`](super::clinic::LOCK_WAIT) for, a lost connection), and actions failed
//!   more often on that trust while upgraded than on the old version: one-sided Fisher exact
//!   test below [`HurtRule::alpha`] and a failure rate at least [`HurtRule::median_ratio`]
//!   times the old version's. The old version's rate is that of the other trusts still
//!   `before` their upgrade while this one was upgraded (same moment, same machine load), or,
//!   when they ran fewer than [`HurtRule::min_samples`] actions then (the last wave), this
//!   trust's own `before` actions; with too few of those too, every failure counts. A trust
//!   that fails the occasional action on any version (an embedded database's one write lock,
//!   a machine that cannot keep up) is not hurt by the upgrade for that; or
//! - it started while its trust was `upgraded`, succeeded, is of a kind that *regressed* on
//!   that trust, and took longer than that kind's pre-upgrade p95 on that trust. A kind
//!   regressed when its `upgraded` latencies are slower than its `before` ones with
//!   significance and effect, as the gate judges: one-sided Mann–Whitney U below
//!   [`HurtRule::alpha`], median ratio at least [`HurtRule::median_ratio`] and median shift at
//!   least [`HurtRule::floor_ms`], with at least [`HurtRule::min_samples`] actions on each
//!   side. As in the gate, the upgraded latencies are first divided by the machine factor
//!   (how much slower the control query, timed after every action on the same connection, ran
//!   while upgraded than before; never below 1), so that load on a shared machine is not
//!   taken for the release's doing; or
//! - it saved a note (committed) that was later read back missing or changed, found at any
//!   time after the trust's upgrade began (a save made before the upgrade that the migration
//!   destroys counts too).
//!
//! Actions while a trust is being migrated or rolled back are reported per phase but are not
//! counted as hurt: a migration's locks are the upgrade's expected cost (a failure then is
//! visible in the `migrating` figures). A trust is hurt when at least one of its actions is.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::record::{ActionKind, Record};
use crate::engine::{Event, TrustOutcome};
use crate::health::gate::machine_factor;
use crate::health::stats::{fisher_greater, mann_whitney_greater, percentile};

/// Where a trust stood in the rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Not (yet) touched by the run.
    Before,
    /// Its migrations are running.
    Migrating,
    /// On the new version.
    Upgraded,
    /// Its down migrations are running.
    RollingBack,
    /// Rolled back.
    RolledBack,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 5] = [
        Phase::Before,
        Phase::Migrating,
        Phase::Upgraded,
        Phase::RollingBack,
        Phase::RolledBack,
    ];

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Before => "before",
            Phase::Migrating => "migrating",
            Phase::Upgraded => "upgraded",
            Phase::RollingBack => "rolling-back",
            Phase::RolledBack => "rolled-back",
        }
    }
}

/// A trust's phase changes, in time order (before the first: [`Phase::Before`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timeline(pub Vec<(f64, Phase)>);

impl Timeline {
    /// The phase at `t_ms`.
    pub fn at(&self, t_ms: f64) -> Phase {
        self.0
            .iter()
            .take_while(|(at, _)| *at <= t_ms)
            .last()
            .map_or(Phase::Before, |(_, p)| *p)
    }

    /// When the trust's upgrade first began, if it did.
    pub fn upgrade_began(&self) -> Option<f64> {
        self.0
            .iter()
            .find(|(_, p)| *p != Phase::Before)
            .map(|(t, _)| *t)
    }

    /// Move to `phase` at `t_ms` (a repeat of the current phase is no change).
    pub fn push(&mut self, t_ms: f64, phase: Phase) {
        if self.0.last().map_or(Phase::Before, |(_, p)| *p) != phase {
            self.0.push((t_ms, phase));
        }
    }
}

/// Each trust's phases from a run's journal: `(at_ms, event)` in order.
pub fn timelines<'a>(
    events: impl IntoIterator<Item = (f64, &'a Event)>,
) -> BTreeMap<String, Timeline> {
    let mut out: BTreeMap<String, Timeline> = BTreeMap::new();
    for (at, event) in events {
        let trust = match event {
            Event::MigrationStarted { trust, .. }
            | Event::TrustStarted { trust, .. }
            | Event::TrustFinished { trust, .. }
            | Event::RollbackStarted { trust, .. }
            | Event::RollbackFinished { trust, .. }
            | Event::RollbackFailed { trust, .. } => trust,
            _ => continue,
        };
        let line = out.entry(trust.clone()).or_default();
        let current = line.0.last().map_or(Phase::Before, |(_, p)| *p);
        let next = match event {
            // The journal records a trust's intent (`trust_started`, with the migrations it
            // plans) as its first migration begins; each migration's own events are journalled
            // with the trust's outcome, so they do not tell when it began.
            Event::TrustStarted { migrations, .. }
                if *migrations > 0 && current != Phase::RollingBack =>
            {
                Phase::Migrating
            }
            Event::MigrationStarted { .. } if current != Phase::RollingBack => Phase::Migrating,
            Event::TrustFinished { outcome, .. } => match outcome {
                TrustOutcome::Upgraded { .. } => Phase::Upgraded,
                // Up to date: nothing ran. Failed, skipped, interrupted: each migration
                // commits whole, and the trust is judged as not upgraded.
                _ if current == Phase::Migrating => Phase::Before,
                _ => current,
            },
            Event::RollbackStarted { .. } => Phase::RollingBack,
            Event::RollbackFinished { .. } => Phase::RolledBack,
            Event::RollbackFailed { .. } => Phase::Upgraded,
            _ => current,
        };
        line.push(at, next);
    }
    out.retain(|_, t| !t.0.is_empty());
    out
}

/// When an action counts as hurt by slowness (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HurtRule {
    /// One-sided Mann–Whitney U significance level.
    pub alpha: f64,
    /// The `upgraded` median must be at least this many times the `before` median.
    pub median_ratio: f64,
    /// …and at least this much more, ms.
    pub floor_ms: f64,
    /// Actions of the kind needed in each of `before` and `upgraded` to judge it.
    pub min_samples: usize,
}

impl Default for HurtRule {
    fn default() -> Self {
        HurtRule {
            alpha: 0.01,
            median_ratio: 2.0,
            floor_ms: 2.0,
            min_samples: 20,
        }
    }
}

/// Latency figures of one kind of action (successful ones), ms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindFigures {
    /// The kind.
    pub kind: ActionKind,
    /// Actions started.
    pub actions: u64,
    /// Of those, failed.
    pub failed: u64,
    /// Median of the successful ones.
    pub p50_ms: Option<f64>,
    /// 95th percentile.
    pub p95_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// Slowest.
    pub max_ms: Option<f64>,
}

/// What a trust's clinicians experienced in one phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseFigures {
    /// The phase.
    pub phase: Phase,
    /// Time the trust spent in it while the traffic ran, ms.
    pub duration_ms: f64,
    /// Actions started in it.
    pub actions: u64,
    /// Of those, failed.
    pub failed: u64,
    /// Per kind.
    pub kinds: Vec<KindFigures>,
}

/// One kind of action, before the upgrade against upgraded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindComparison {
    /// The kind.
    pub kind: ActionKind,
    /// Successful actions before / upgraded.
    pub before: usize,
    /// See `before`.
    pub upgraded: usize,
    /// Medians, ms.
    pub before_median_ms: f64,
    /// See `before_median_ms`.
    pub upgraded_median_ms: f64,
    /// The pre-upgrade p95, ms: the line a hurt slow action is above.
    pub before_p95_ms: f64,
    /// The upgraded p95, ms.
    pub upgraded_p95_ms: f64,
    /// How much slower the machine was while upgraded (control query medians, at least 1):
    /// the upgraded figures here and the slow rule use latencies divided by it.
    pub machine_factor: f64,
    /// One-sided Mann–Whitney p-value (upgraded slower).
    pub p_value: f64,
    /// Whether it regressed by the [`HurtRule`].
    pub regressed: bool,
}

/// Hurt actions, by why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hurt {
    /// Failed while upgraded.
    pub failed: u64,
    /// Slow while upgraded (of a regressed kind, above its pre-upgrade p95).
    pub slow: u64,
    /// Saves whose note vanished (found after the upgrade began).
    pub vanished: u64,
    /// Distinct hurt actions (a slow save whose note vanished counts once).
    pub actions: u64,
}

impl Hurt {
    fn add(&mut self, o: &Hurt) {
        self.failed += o.failed;
        self.slow += o.slow;
        self.vanished += o.vanished;
        self.actions += o.actions;
    }
}

/// A trust's failure rate before against while upgraded (see the module documentation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureComparison {
    /// What the failures were compared with.
    pub against: FailureControl,
    /// Actions started on the old version (see `against`).
    pub before: u64,
    /// Of those, failed.
    pub before_failed: u64,
    /// Actions started while upgraded.
    pub upgraded: u64,
    /// Of those, failed.
    pub upgraded_failed: u64,
    /// One-sided Fisher exact p-value (`None`: too few actions before to compare).
    pub p_value: Option<f64>,
    /// Whether the upgraded trust failed actions more often than before, so that its failures
    /// count as hurt.
    pub regressed: bool,
}

/// The actions on the old version a trust's failures while upgraded are compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureControl {
    /// Other trusts' actions while they were still `before` their upgrade and this trust was
    /// upgraded: the same moment and machine load.
    OtherTrustsMeanwhile,
    /// This trust's own actions before its upgrade.
    OwnBefore,
}

impl FailureComparison {
    /// `meanwhile`: (actions, failed) of the other trusts still on the old version while this
    /// one was upgraded.
    fn new(acts: &[Act<'_>], meanwhile: (u64, u64), rule: &HurtRule) -> Self {
        let count = |phase: Phase| {
            let of = acts.iter().filter(|a| a.phase == phase);
            (
                of.clone().count() as u64,
                of.filter(|a| a.error.is_some()).count() as u64,
            )
        };
        let (upgraded, upgraded_failed) = count(Phase::Upgraded);
        let (against, (before, before_failed)) = if meanwhile.0 >= rule.min_samples as u64 {
            (FailureControl::OtherTrustsMeanwhile, meanwhile)
        } else {
            (FailureControl::OwnBefore, count(Phase::Before))
        };
        let (p_value, regressed) = if upgraded_failed == 0 {
            (None, false)
        } else if before < rule.min_samples as u64 {
            (None, true)
        } else {
            let p = fisher_greater(upgraded_failed, upgraded, before_failed, before);
            let rate = |f: u64, n: u64| f as f64 / n.max(1) as f64;
            let more =
                rate(upgraded_failed, upgraded) >= rule.median_ratio * rate(before_failed, before);
            (Some(p), p < rule.alpha && more)
        };
        FailureComparison {
            against,
            before,
            before_failed,
            upgraded,
            upgraded_failed,
            p_value,
            regressed,
        }
    }
}

/// A time slice of a trust's traffic, for the plot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bin {
    /// Start, ms since the traffic started.
    pub t_ms: f64,
    /// Actions started in it.
    pub actions: u64,
    /// Of those, failed.
    pub failed: u64,
    /// p95 of the successful ones, ms.
    pub p95_ms: Option<f64>,
    /// Notes found vanished in it.
    pub vanished: u64,
}

/// An error message and how often it was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCount {
    /// The phase it was seen in.
    pub phase: Phase,
    /// The message.
    pub message: String,
    /// How many actions failed with it.
    pub count: u64,
}

/// One trust's clinicians.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrustExperience {
    /// The trust.
    pub trust: String,
    /// Actions started.
    pub actions: u64,
    /// Of those, failed.
    pub failed: u64,
    /// Actions per second achieved, from the first to the last.
    pub rate: f64,
    /// Notes saved (committed).
    pub saves: u64,
    /// Saves that failed.
    pub failed_saves: u64,
    /// Committed notes found missing or changed at some point.
    pub vanished: u64,
    /// Of those, read back intact again later (e.g. after a rollback).
    pub restored: u64,
    /// Notes not there at the final read-back (`None`: it could not be done).
    pub missing_at_end: Option<u64>,
    /// Why the final read-back could not be done.
    pub verify_error: Option<String>,
    /// Per phase.
    pub phases: Vec<PhaseFigures>,
    /// Per kind, before against upgraded (when both have actions).
    pub comparisons: Vec<KindComparison>,
    /// Actions started while upgraded.
    pub exposed: u64,
    /// Hurt actions.
    pub hurt: Hurt,
    /// Failures before against while upgraded: whether the upgrade made actions fail.
    #[serde(default)]
    pub failures: Option<FailureComparison>,
    /// The most frequent errors.
    pub errors: Vec<ErrorCount>,
    /// Phase changes, ms since the traffic started.
    pub phase_changes: Vec<(f64, Phase)>,
    /// The traffic over time.
    pub bins: Vec<Bin>,
}

/// How far the upgrade's harm reached.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BlastRadius {
    /// Trusts that were on the new version while the traffic ran.
    pub trusts_upgraded: usize,
    /// Trusts with at least one hurt action.
    pub trusts_hurt: Vec<String>,
    /// Actions started on upgraded trusts.
    pub exposed: u64,
    /// Hurt actions, over every trust.
    pub hurt: Hurt,
    /// When the gate halted the run, ms since the traffic started.
    pub halted_at_ms: Option<f64>,
    /// Hurt actions that started before the halt.
    pub hurt_before_halt: Option<u64>,
}

/// The traffic of a run, as the report shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficReport {
    /// Target actions per second per trust.
    pub rate: f64,
    /// Sessions per trust.
    pub sessions: usize,
    /// The marker in saved notes' bodies.
    pub marker: String,
    /// When the traffic started, ms since the Unix epoch.
    pub started_at_ms: f64,
    /// How long it ran, ms.
    pub duration_ms: f64,
    /// Actions over every trust.
    pub actions: u64,
    /// The rule for slowness.
    pub rule: HurtRule,
    /// Per trust.
    pub trusts: Vec<TrustExperience>,
    /// The blast radius.
    pub blast: BlastRadius,
    /// Trusts the traffic could not set up or reach, with why.
    pub problems: Vec<String>,
}

struct Act<'a> {
    kind: ActionKind,
    at: f64,
    ms: f64,
    control: Option<f64>,
    error: Option<&'a str>,
    note: Option<i64>,
    phase: Phase,
}

fn figures(kind: ActionKind, acts: &[&Act<'_>]) -> KindFigures {
    let mut ok: Vec<f64> = acts
        .iter()
        .filter(|a| a.error.is_none())
        .map(|a| a.ms)
        .collect();
    ok.sort_by(f64::total_cmp);
    KindFigures {
        kind,
        actions: acts.len() as u64,
        failed: acts.iter().filter(|a| a.error.is_some()).count() as u64,
        p50_ms: percentile(&ok, 0.5),
        p95_ms: percentile(&ok, 0.95),
        p99_ms: percentile(&ok, 0.99),
        max_ms: ok.last().copied(),
    }
}

/// Before against upgraded for one kind: `upgraded` already divided by `factor`.
fn compare(
    kind: ActionKind,
    before: &[f64],
    upgraded: &[f64],
    factor: f64,
    rule: &HurtRule,
) -> Option<KindComparison> {
    if before.is_empty() || upgraded.is_empty() {
        return None;
    }
    let mut b = before.to_vec();
    b.sort_by(f64::total_cmp);
    let mut u = upgraded.to_vec();
    u.sort_by(f64::total_cmp);
    let bm = percentile(&b, 0.5)?;
    let um = percentile(&u, 0.5)?;
    let p_value = mann_whitney_greater(&u, &b).map_or(1.0, |m| m.p_value);
    let enough = b.len() >= rule.min_samples && u.len() >= rule.min_samples;
    let ratio_ok = if bm > 0.0 {
        um / bm >= rule.median_ratio
    } else {
        um > 0.0
    };
    Some(KindComparison {
        kind,
        before: b.len(),
        upgraded: u.len(),
        before_median_ms: bm,
        upgraded_median_ms: um,
        before_p95_ms: percentile(&b, 0.95)?,
        upgraded_p95_ms: percentile(&u, 0.95)?,
        machine_factor: factor,
        p_value,
        regressed: enough && p_value < rule.alpha && ratio_ok && um - bm >= rule.floor_ms,
    })
}

/// What is known of one trust.
struct TrustInput<'a, 'r> {
    trust: &'a str,
    /// Its actions, in any order.
    acts: &'a [Act<'r>],
    /// (note, when it was found vanished).
    vanished: &'a [(i64, f64)],
    /// Notes read back intact after having vanished.
    restored: &'a BTreeSet<i64>,
    /// The final read-back: (missing, why it failed).
    verified: Option<(u64, Option<&'a str>)>,
    timeline: &'a Timeline,
    /// (actions, failed) of the other trusts still `before` while this one was upgraded.
    meanwhile: (u64, u64),
}

/// One trust's experience over the traffic's `span` (ms since the Unix epoch).
fn trust_experience(
    input: &TrustInput<'_, '_>,
    span: (f64, f64),
    rule: &HurtRule,
) -> TrustExperience {
    let &TrustInput {
        trust,
        acts,
        vanished,
        restored,
        verified,
        timeline,
        ..
    } = input;
    let (start, end) = span;
    let mut phases = Vec::new();
    for phase in Phase::ALL {
        let in_phase: Vec<&Act<'_>> = acts.iter().filter(|a| a.phase == phase).collect();
        let duration_ms = phase_duration(timeline, phase, start, end);
        if in_phase.is_empty() && duration_ms <= 0.0 {
            continue;
        }
        phases.push(PhaseFigures {
            phase,
            duration_ms,
            actions: in_phase.len() as u64,
            failed: in_phase.iter().filter(|a| a.error.is_some()).count() as u64,
            kinds: ActionKind::ALL
                .iter()
                .map(|k| {
                    let of: Vec<&Act<'_>> =
                        in_phase.iter().copied().filter(|a| a.kind == *k).collect();
                    figures(*k, &of)
                })
                .filter(|f| f.actions > 0)
                .collect(),
        });
    }
    let ok_ms = |phase: Phase, kind: ActionKind| -> Vec<f64> {
        acts.iter()
            .filter(|a| a.phase == phase && a.kind == kind && a.error.is_none())
            .map(|a| a.ms)
            .collect()
    };
    let controls = |phase: Phase| -> Vec<f64> {
        acts.iter()
            .filter(|a| a.phase == phase)
            .filter_map(|a| a.control)
            .collect()
    };
    let factor = machine_factor(&controls(Phase::Before), &controls(Phase::Upgraded));
    let comparisons: Vec<KindComparison> = ActionKind::ALL
        .iter()
        .filter_map(|k| {
            let upgraded: Vec<f64> = ok_ms(Phase::Upgraded, *k)
                .into_iter()
                .map(|ms| ms / factor)
                .collect();
            compare(*k, &ok_ms(Phase::Before, *k), &upgraded, factor, rule)
        })
        .collect();
    let failures = FailureComparison::new(acts, input.meanwhile, rule);
    let mut hurt = Hurt::default();
    let mut hurt_notes: BTreeSet<i64> = BTreeSet::new();
    let mut slow_notes: BTreeSet<i64> = BTreeSet::new();
    for a in acts.iter().filter(|a| a.phase == Phase::Upgraded) {
        if a.error.is_some() {
            if failures.regressed {
                hurt.failed += 1;
                hurt.actions += 1;
            }
        } else if let Some(c) = comparisons.iter().find(|c| c.kind == a.kind && c.regressed) {
            if a.ms / c.machine_factor > c.before_p95_ms {
                hurt.slow += 1;
                hurt.actions += 1;
                if let Some(n) = a.note {
                    slow_notes.insert(n);
                }
            }
        }
    }
    let began = timeline.upgrade_began();
    for (note, at) in vanished {
        if began.is_some_and(|b| *at >= b) && hurt_notes.insert(*note) {
            hurt.vanished += 1;
            if !slow_notes.contains(note) {
                hurt.actions += 1;
            }
        }
    }
    let saves = acts.iter().filter(|a| a.kind == ActionKind::SaveNote);
    let bins = bins(acts, vanished, start, end);
    let mut errors: BTreeMap<(Phase, &str), u64> = BTreeMap::new();
    for a in acts {
        if let Some(e) = a.error {
            *errors.entry((a.phase, e)).or_default() += 1;
        }
    }
    let mut errors: Vec<ErrorCount> = errors
        .into_iter()
        .map(|((phase, message), count)| ErrorCount {
            phase,
            message: message.to_string(),
            count,
        })
        .collect();
    errors.sort_by(|a, b| b.count.cmp(&a.count).then(a.phase.cmp(&b.phase)));
    errors.truncate(8);
    let first = acts.iter().map(|a| a.at).fold(f64::INFINITY, f64::min);
    let last = acts.iter().map(|a| a.at).fold(f64::NEG_INFINITY, f64::max);
    let distinct_vanished: BTreeSet<i64> = vanished.iter().map(|(n, _)| *n).collect();
    TrustExperience {
        trust: trust.to_string(),
        actions: acts.len() as u64,
        failed: acts.iter().filter(|a| a.error.is_some()).count() as u64,
        rate: if last > first {
            (acts.len().saturating_sub(1)) as f64 / ((last - first) / 1000.0)
        } else {
            0.0
        },
        saves: saves.clone().filter(|a| a.error.is_none()).count() as u64,
        failed_saves: saves.filter(|a| a.error.is_some()).count() as u64,
        vanished: distinct_vanished.len() as u64,
        restored: distinct_vanished.intersection(restored).count() as u64,
        missing_at_end: verified.and_then(|(m, e)| e.is_none().then_some(m)),
        verify_error: verified.and_then(|(_, e)| e.map(str::to_string)),
        phases,
        comparisons,
        exposed: acts.iter().filter(|a| a.phase == Phase::Upgraded).count() as u64,
        hurt,
        failures: (failures.upgraded_failed > 0).then_some(failures),
        errors,
        phase_changes: timeline.0.iter().map(|(t, p)| (t - start, *p)).collect(),
        bins,
    }
}

/// Time spent in `phase` within `start..end`.
fn phase_duration(timeline: &Timeline, phase: Phase, start: f64, end: f64) -> f64 {
    let mut edges: Vec<(f64, Phase)> = vec![(f64::NEG_INFINITY, Phase::Before)];
    edges.extend(timeline.0.iter().copied());
    let mut total = 0.0;
    for (i, (from, p)) in edges.iter().enumerate() {
        if *p != phase {
            continue;
        }
        let to = edges.get(i + 1).map_or(f64::INFINITY, |(t, _)| *t);
        let (a, b) = (from.max(start), to.min(end));
        if b > a {
            total += b - a;
        }
    }
    total
}

fn bins(acts: &[Act<'_>], vanished: &[(i64, f64)], start: f64, end: f64) -> Vec<Bin> {
    let span = (end - start).max(1.0);
    let width = (span / 120.0).max(1000.0);
    let n = (span / width).ceil() as usize;
    let mut lat: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut out: Vec<Bin> = (0..n)
        .map(|i| Bin {
            t_ms: i as f64 * width,
            actions: 0,
            failed: 0,
            p95_ms: None,
            vanished: 0,
        })
        .collect();
    let slot = |t: f64| (((t - start) / width).floor().max(0.0) as usize).min(n.saturating_sub(1));
    for a in acts {
        let i = slot(a.at);
        out[i].actions += 1;
        match a.error {
            Some(_) => out[i].failed += 1,
            None => lat[i].push(a.ms),
        }
    }
    for (_, at) in vanished {
        out[slot(*at)].vanished += 1;
    }
    for (b, mut l) in out.iter_mut().zip(lat) {
        l.sort_by(f64::total_cmp);
        b.p95_ms = percentile(&l, 0.95);
    }
    out
}

/// Build the report from the traffic's records, the trusts' phases and the time of the
/// gate's halt (ms since the Unix epoch), if it halted.
pub fn experience(
    records: &[Record],
    timelines: &BTreeMap<String, Timeline>,
    halted_at_ms: Option<f64>,
    rule: HurtRule,
) -> TrafficReport {
    let mut rate = 0.0;
    let mut sessions = 0;
    let mut marker = String::new();
    let mut trusts: Vec<String> = Vec::new();
    let mut start = f64::INFINITY;
    let mut end = f64::NEG_INFINITY;
    let mut acts: BTreeMap<&str, Vec<Act<'_>>> = BTreeMap::new();
    let mut vanished: BTreeMap<&str, Vec<(i64, f64)>> = BTreeMap::new();
    let mut restored: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
    let mut verified: BTreeMap<&str, (u64, Option<&str>)> = BTreeMap::new();
    let mut problems = Vec::new();
    let empty = Timeline::default();
    for r in records {
        match r {
            Record::Started {
                rate: r,
                sessions: s,
                trusts: t,
                marker: m,
                at_ms,
                ..
            } => {
                rate = *r;
                sessions = *s;
                trusts.clone_from(t);
                marker.clone_from(m);
                start = start.min(*at_ms);
            }
            Record::Problem { trust, error, .. } => {
                let p = format!("{trust}: {error}");
                if !problems.contains(&p) {
                    problems.push(p);
                }
            }
            Record::Ready { .. } => {}
            Record::Action {
                trust,
                kind,
                at_ms,
                ms,
                error,
                note,
                control_ms,
            } => {
                let timeline = timelines.get(trust).unwrap_or(&empty);
                acts.entry(trust.as_str()).or_default().push(Act {
                    kind: *kind,
                    at: *at_ms,
                    ms: *ms,
                    control: *control_ms,
                    error: error.as_deref(),
                    note: *note,
                    phase: timeline.at(*at_ms),
                });
                start = start.min(*at_ms);
                end = end.max(*at_ms + *ms);
            }
            Record::Vanished {
                trust, note, at_ms, ..
            } => vanished
                .entry(trust.as_str())
                .or_default()
                .push((*note, *at_ms)),
            Record::Restored { trust, note, .. } => {
                restored.entry(trust.as_str()).or_default().insert(*note);
            }
            Record::Verified {
                trust,
                missing,
                error,
                at_ms,
                ..
            } => {
                verified.insert(trust.as_str(), (*missing, error.as_deref()));
                end = end.max(*at_ms);
            }
            Record::Finished { at_ms } => end = end.max(*at_ms),
        }
    }
    if !start.is_finite() {
        start = 0.0;
    }
    if end < start {
        end = start;
    }
    let none = BTreeSet::new();
    let mut out: Vec<TrustExperience> = Vec::new();
    // Every action on the old version, by start time, for the failure comparison.
    let mut old_version: Vec<(f64, &str, bool)> = acts
        .iter()
        .flat_map(|(t, a)| {
            a.iter()
                .filter(|a| a.phase == Phase::Before)
                .map(move |a| (a.at, *t, a.error.is_some()))
        })
        .collect();
    old_version.sort_by(|a, b| a.0.total_cmp(&b.0));
    for t in &trusts {
        let a = acts.get(t.as_str()).map_or(&[][..], Vec::as_slice);
        let upgraded = a
            .iter()
            .filter(|a| a.phase == Phase::Upgraded)
            .map(|a| a.at);
        let span = (
            upgraded.clone().fold(f64::INFINITY, f64::min),
            upgraded.fold(f64::NEG_INFINITY, f64::max),
        );
        let lo = old_version.partition_point(|o| o.0 < span.0);
        let meanwhile = old_version[lo..]
            .iter()
            .take_while(|o| o.0 <= span.1)
            .filter(|o| o.1 != t.as_str())
            .fold((0, 0), |(n, f), o| (n + 1, f + u64::from(o.2)));
        out.push(trust_experience(
            &TrustInput {
                trust: t,
                acts: a,
                vanished: vanished.get(t.as_str()).map_or(&[][..], Vec::as_slice),
                restored: restored.get(t.as_str()).unwrap_or(&none),
                verified: verified.get(t.as_str()).copied(),
                timeline: timelines.get(t).unwrap_or(&empty),
                meanwhile,
            },
            (start, end),
            &rule,
        ));
    }
    let mut blast = BlastRadius {
        halted_at_ms: halted_at_ms.map(|h| h - start),
        ..BlastRadius::default()
    };
    for (t, e) in trusts.iter().zip(&out) {
        let timeline = timelines.get(t).unwrap_or(&empty);
        if phase_duration(timeline, Phase::Upgraded, start, end) > 0.0 {
            blast.trusts_upgraded += 1;
        }
        blast.exposed += e.exposed;
        blast.hurt.add(&e.hurt);
        if e.hurt.actions > 0 {
            blast.trusts_hurt.push(t.clone());
        }
    }
    if let Some(h) = halted_at_ms {
        blast.hurt_before_halt = Some(
            trusts
                .iter()
                .zip(&out)
                .map(|(t, e)| {
                    let a = acts.get(t.as_str()).map_or(&[][..], Vec::as_slice);
                    hurt_before(
                        a,
                        e,
                        vanished.get(t.as_str()).map_or(&[][..], Vec::as_slice),
                        timelines.get(t).unwrap_or(&empty),
                        h,
                    )
                })
                .sum(),
        );
    }
    TrafficReport {
        rate,
        sessions,
        marker,
        started_at_ms: start,
        duration_ms: end - start,
        actions: out.iter().map(|e| e.actions).sum(),
        rule,
        trusts: out,
        blast,
        problems,
    }
}

/// Hurt actions of one trust that started (or, for a vanished note, were found) before `halt`.
fn hurt_before(
    acts: &[Act<'_>],
    e: &TrustExperience,
    vanished: &[(i64, f64)],
    timeline: &Timeline,
    halt: f64,
) -> u64 {
    let mut n = 0;
    let mut counted: BTreeSet<i64> = BTreeSet::new();
    for a in acts
        .iter()
        .filter(|a| a.phase == Phase::Upgraded && a.at < halt)
    {
        let slow = a.error.is_none()
            && e.comparisons.iter().any(|c| {
                c.kind == a.kind && c.regressed && a.ms / c.machine_factor > c.before_p95_ms
            });
        let failed = a.error.is_some() && e.failures.as_ref().is_some_and(|f| f.regressed);
        if failed || slow {
            n += 1;
            if let Some(id) = a.note {
                counted.insert(id);
            }
        }
    }
    let began = timeline.upgrade_began();
    for (note, at) in vanished {
        if began.is_some_and(|b| *at >= b) && *at < halt && counted.insert(*note) {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::record::Loss;
    use serde_json::json;

    fn act(trust: &str, kind: ActionKind, at: f64, ms: f64) -> Record {
        Record::Action {
            trust: trust.into(),
            kind,
            at_ms: at,
            ms,
            error: None,
            note: None,
            control_ms: Some(0.1),
        }
    }

    fn failed(trust: &str, at: f64) -> Record {
        Record::Action {
            trust: trust.into(),
            kind: ActionKind::SaveNote,
            at_ms: at,
            ms: 5000.0,
            error: Some("database is locked".into()),
            note: Some(999),
            control_ms: None,
        }
    }

    fn save(trust: &str, at: f64, ms: f64, note: i64) -> Record {
        Record::Action {
            trust: trust.into(),
            kind: ActionKind::SaveNote,
            at_ms: at,
            ms,
            error: None,
            note: Some(note),
            control_ms: Some(0.1),
        }
    }

    fn vanished(trust: &str, note: i64, at: f64) -> Record {
        Record::Vanished {
            trust: trust.into(),
            note,
            how: Loss::Missing,
            saved_at_ms: 0.0,
            at_ms: at,
        }
    }

    /// An event from the fields a test cares about, the others filled in, read as the
    /// journal reads it.
    fn event(fields: &serde_json::Value) -> Event {
        let mut body = json!({
            "wave": "pilot", "release": "5.1", "duration_ms": 0, "migrations": 0,
            "from": "5.1", "to": "5.0", "error": "", "reason": "", "version": 0, "exit_code": 4
        });
        for (k, v) in fields.as_object().unwrap() {
            body[k] = v.clone();
        }
        let e = Event::from_json(&body);
        let phase_change = [
            "migration_started",
            "trust_finished",
            "rollback_started",
            "rollback_finished",
            "rollback_failed",
        ];
        assert!(
            !matches!(e, Event::Unknown)
                || !phase_change.contains(&body["event"].as_str().unwrap()),
            "not an event: {body}"
        );
        e
    }

    fn typed_timelines(events: &[(f64, serde_json::Value)]) -> BTreeMap<String, Timeline> {
        let typed: Vec<(f64, Event)> = events.iter().map(|(t, b)| (*t, event(b))).collect();
        timelines(typed.iter().map(|(t, e)| (*t, e)))
    }

    fn started(trusts: &[&str]) -> Record {
        Record::Started {
            rate: 20.0,
            sessions: 4,
            trusts: trusts.iter().map(|t| t.to_string()).collect(),
            marker: "flotilla-traffic".into(),
            seed: 1,
            at_ms: 0.0,
        }
    }

    /// camden: migrating 1000..1100, upgraded 1100..3000, rolling back 3000..3200, then rolled
    /// back; islington: migrating 1000..1100, upgraded from 1100 on.
    fn journal() -> BTreeMap<String, Timeline> {
        let events = [
            (
                1000.0,
                json!({"event": "migration_started", "trust": "camden", "version": 90}),
            ),
            (
                1000.0,
                json!({"event": "migration_started", "trust": "islington", "version": 90}),
            ),
            (
                1050.0,
                json!({"event": "migration_started", "trust": "camden", "version": 100}),
            ),
            (
                1100.0,
                json!({"event": "trust_finished", "trust": "camden", "status": "upgraded"}),
            ),
            (
                1100.0,
                json!({"event": "trust_finished", "trust": "islington", "status": "upgraded"}),
            ),
            (
                1200.0,
                json!({"event": "health_verdict", "trust": "camden", "verdict": "fail"}),
            ),
            (
                3000.0,
                json!({"event": "rollback_started", "trust": "camden"}),
            ),
            (
                3100.0,
                json!({"event": "migration_reverting", "trust": "camden", "version": 100}),
            ),
            (
                3200.0,
                json!({"event": "rollback_finished", "trust": "camden"}),
            ),
            (3300.0, json!({"event": "halted", "wave": "pilot"})),
        ];
        typed_timelines(&events)
    }

    #[test]
    fn phases_come_from_the_journal_events() {
        let t = journal();
        let camden = &t["camden"];
        assert_eq!(
            camden.0,
            vec![
                (1000.0, Phase::Migrating),
                (1100.0, Phase::Upgraded),
                (3000.0, Phase::RollingBack),
                (3200.0, Phase::RolledBack)
            ]
        );
        assert_eq!(camden.at(999.0), Phase::Before);
        assert_eq!(camden.at(1000.0), Phase::Migrating);
        assert_eq!(camden.at(2999.9), Phase::Upgraded);
        assert_eq!(camden.at(5000.0), Phase::RolledBack);
        assert_eq!(camden.upgrade_began(), Some(1000.0));
        assert_eq!(
            phase_duration(camden, Phase::Upgraded, 0.0, 10_000.0),
            1900.0
        );
        assert_eq!(
            phase_duration(camden, Phase::Before, 500.0, 10_000.0),
            500.0
        );
        // A failed migration leaves the trust as it was: not upgraded.
        let failed = [
            (
                10.0,
                json!({"event": "migration_started", "trust": "barnet"}),
            ),
            (
                20.0,
                json!({"event": "trust_finished", "trust": "barnet", "status": "failed"}),
            ),
        ];
        let t = typed_timelines(&failed);
        assert_eq!(t["barnet"].at(30.0), Phase::Before);
        assert_eq!(t["barnet"].upgrade_began(), Some(10.0));
    }

    #[test]
    fn failures_count_as_hurt_only_when_the_upgraded_trust_fails_more_often_than_before() {
        // camden fails 5 of 100 actions before its upgrade (its database's one write lock,
        // busy while the gate's probes write); upgraded it fails `failing` of 100.
        let run = |failing: usize| {
            let mut records = vec![started(&["camden"])];
            for i in 0..100 {
                let at = 10.0 + 9.0 * f64::from(i);
                records.push(if i % 20 == 0 {
                    failed("camden", at)
                } else {
                    act("camden", ActionKind::OpenRecord, at, 2.0)
                });
                let at = 1110.0 + 18.0 * f64::from(i);
                records.push(if (i as usize) < failing {
                    failed("camden", at)
                } else {
                    act("camden", ActionKind::OpenRecord, at, 2.0)
                });
            }
            records.push(Record::Finished { at_ms: 5000.0 });
            let r = experience(&records, &journal(), Some(2990.0), HurtRule::default());
            (r.trusts[0].clone(), r.blast)
        };
        let (same, blast) = run(5);
        let f = same.failures.as_ref().unwrap();
        assert_eq!(
            (f.before, f.before_failed, f.upgraded, f.upgraded_failed),
            (100, 5, 100, 5)
        );
        assert!(!f.regressed && f.p_value.unwrap() > 0.4, "{f:?}");
        assert_eq!(same.hurt, Hurt::default());
        assert!(blast.trusts_hurt.is_empty());
        assert_eq!(blast.hurt_before_halt, Some(0));
        let (worse, blast) = run(30);
        let f = worse.failures.as_ref().unwrap();
        assert_eq!(f.against, FailureControl::OwnBefore);
        assert!(f.regressed && f.p_value.unwrap() < 0.001, "{f:?}");
        assert_eq!(worse.hurt.failed, 30);
        assert_eq!(blast.trusts_hurt, vec!["camden".to_string()]);
        assert_eq!(blast.hurt_before_halt, Some(30));
    }

    #[test]
    fn failures_are_compared_with_trusts_still_on_the_old_version_at_the_same_moment() {
        // The machine got busier as the rollout went on: camden (upgraded at 1100) fails 30 of
        // 100 actions while barnet, never upgraded, fails as often at the same moment; both
        // failed none earlier. The release is not to blame.
        let run = |barnet_failing: usize| {
            let mut records = vec![started(&["camden", "barnet"])];
            for i in 0..100 {
                let early = 10.0 + 9.0 * f64::from(i);
                records.push(act("camden", ActionKind::OpenRecord, early, 2.0));
                records.push(act("barnet", ActionKind::OpenRecord, early, 2.0));
                let at = 1110.0 + 18.0 * f64::from(i);
                records.push(if i % 10 < 3 {
                    failed("camden", at)
                } else {
                    act("camden", ActionKind::OpenRecord, at, 2.0)
                });
                records.push(if (i as usize) < barnet_failing {
                    failed("barnet", at)
                } else {
                    act("barnet", ActionKind::OpenRecord, at, 2.0)
                });
            }
            records.push(Record::Finished { at_ms: 5000.0 });
            experience(&records, &journal(), None, HurtRule::default())
        };
        let r = run(30);
        let camden = &r.trusts[0];
        let f = camden.failures.as_ref().unwrap();
        assert_eq!(f.against, FailureControl::OtherTrustsMeanwhile);
        assert_eq!((f.before, f.before_failed), (100, 30), "{f:?}");
        assert!(!f.regressed, "{f:?}");
        assert!(r.blast.trusts_hurt.is_empty());
        // The old version kept up meanwhile: camden's failures are the release's.
        let r = run(0);
        let f = r.trusts[0].failures.as_ref().unwrap();
        assert_eq!(f.against, FailureControl::OtherTrustsMeanwhile);
        assert!(f.regressed, "{f:?}");
        assert_eq!(r.blast.trusts_hurt, vec!["camden".to_string()]);
    }

    #[test]
    fn the_blast_radius_counts_failed_actions_and_vanished_saves_on_the_new_version_only() {
        let mut records = vec![started(&["camden", "islington", "barnet"])];
        // Before: fine, and one failure that is not the upgrade's doing.
        for i in 0..10 {
            records.push(act(
                "camden",
                ActionKind::OpenRecord,
                100.0 + f64::from(i),
                2.0,
            ));
        }
        records.push(failed("camden", 500.0));
        // While migrating: a lock timeout, the upgrade's expected cost, not hurt.
        records.push(failed("camden", 1050.0));
        // Upgraded: two failures (hurt), one fine action.
        records.push(failed("camden", 1500.0));
        records.push(failed("camden", 2500.0));
        records.push(act("camden", ActionKind::Caseload, 2600.0, 3.0));
        // A note saved before the upgrade, destroyed by it, found at 1300: hurt.
        records.push(save("camden", 200.0, 4.0, 7001));
        records.push(vanished("camden", 7001, 1300.0));
        // A note found missing before the upgrade began: not the upgrade's doing.
        records.push(save("camden", 210.0, 4.0, 7002));
        records.push(vanished("camden", 7002, 400.0));
        // The same note seen missing twice counts once.
        records.push(vanished("camden", 7001, 3500.0));
        // After the rollback: not on the new version.
        records.push(failed("camden", 4000.0));
        // islington upgraded and fine; barnet never upgraded, with a failure.
        records.push(act("islington", ActionKind::OpenRecord, 2000.0, 2.0));
        records.push(failed("barnet", 2000.0));
        records.push(Record::Finished { at_ms: 5000.0 });
        let r = experience(&records, &journal(), Some(3300.0), HurtRule::default());
        let camden = &r.trusts[0];
        assert_eq!(camden.trust, "camden");
        assert_eq!(
            camden.hurt,
            Hurt {
                failed: 2,
                slow: 0,
                vanished: 1,
                actions: 3
            }
        );
        assert_eq!(camden.exposed, 3);
        assert_eq!(camden.failed, 5);
        assert_eq!(camden.vanished, 2);
        assert_eq!(r.trusts[1].hurt, Hurt::default());
        assert_eq!(
            r.trusts[2].hurt,
            Hurt::default(),
            "barnet was never upgraded"
        );
        assert_eq!(r.blast.trusts_upgraded, 2);
        assert_eq!(r.blast.trusts_hurt, vec!["camden".to_string()]);
        assert_eq!(r.blast.exposed, 4);
        assert_eq!(r.blast.hurt.actions, 3);
        assert_eq!(r.blast.hurt_before_halt, Some(3));
        assert_eq!(r.blast.halted_at_ms, Some(3300.0));
        let before = camden.phase(Phase::Before).unwrap();
        assert_eq!((before.actions, before.failed), (13, 1));
        let migrating = camden.phase(Phase::Migrating).unwrap();
        assert_eq!((migrating.actions, migrating.failed), (1, 1));
        assert!(r.actions == 20, "{}", r.actions);
    }

    /// `n` latencies around `centre`, spread evenly over ±10%.
    fn spread(centre: f64, n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| centre * (0.9 + 0.2 * i as f64 / (n - 1) as f64))
            .collect()
    }

    fn slow_case(upgraded_ms: f64, upgraded_control: f64) -> TrafficReport {
        let mut records = vec![started(&["camden"])];
        for (i, ms) in spread(2.0, 40).into_iter().enumerate() {
            records.push(act("camden", ActionKind::OpenRecord, 100.0 + i as f64, ms));
        }
        for (i, ms) in spread(upgraded_ms, 40).into_iter().enumerate() {
            records.push(Record::Action {
                trust: "camden".into(),
                kind: ActionKind::OpenRecord,
                at_ms: 1200.0 + i as f64,
                ms,
                error: None,
                note: None,
                control_ms: Some(upgraded_control),
            });
        }
        let events = [
            (
                1000.0,
                json!({"event": "migration_started", "trust": "camden"}),
            ),
            (
                1100.0,
                json!({"event": "trust_finished", "trust": "camden", "status": "upgraded"}),
            ),
        ];
        experience(
            &records,
            &typed_timelines(&events),
            None,
            HurtRule::default(),
        )
    }

    #[test]
    fn actions_of_a_regressed_kind_above_the_pre_upgrade_p95_are_hurt() {
        let r = slow_case(10.0, 0.1);
        let c = &r.trusts[0].comparisons[0];
        assert!(c.regressed, "{c:?}");
        assert_eq!(c.machine_factor, 1.0);
        assert_eq!(
            r.trusts[0].hurt.slow, 40,
            "every upgraded action is above 2.2 ms"
        );
        assert_eq!(r.blast.trusts_hurt, vec!["camden".to_string()]);
        // 2.5 ms against 2.0: significant, but not twice as slow.
        let r = slow_case(2.5, 0.1);
        assert!(!r.trusts[0].comparisons[0].regressed);
        assert_eq!(r.trusts[0].hurt.slow, 0);
    }

    #[test]
    fn a_machine_five_times_slower_is_not_taken_for_the_release() {
        // Everything, the control query too, five times slower: load, not the release.
        let r = slow_case(10.0, 0.5);
        let c = &r.trusts[0].comparisons[0];
        assert!((c.machine_factor - 5.0).abs() < 1e-9, "{c:?}");
        assert!(!c.regressed, "{c:?}");
        assert_eq!(r.trusts[0].hurt.slow, 0);
    }

    #[test]
    fn too_few_actions_are_never_judged_slow() {
        let mut records = vec![started(&["camden"])];
        for i in 0..5 {
            records.push(act(
                "camden",
                ActionKind::SaveNote,
                100.0 + f64::from(i),
                2.0,
            ));
            records.push(act(
                "camden",
                ActionKind::SaveNote,
                1200.0 + f64::from(i),
                50.0,
            ));
        }
        let events = [
            (
                1000.0,
                json!({"event": "migration_started", "trust": "camden"}),
            ),
            (
                1100.0,
                json!({"event": "trust_finished", "trust": "camden", "status": "upgraded"}),
            ),
        ];
        let r = experience(
            &records,
            &typed_timelines(&events),
            None,
            HurtRule::default(),
        );
        assert!(!r.trusts[0].comparisons[0].regressed);
        assert_eq!(r.trusts[0].hurt, Hurt::default());
    }

    #[test]
    fn a_slow_save_whose_note_vanished_is_one_hurt_action() {
        let mut records = vec![started(&["camden"])];
        for (i, ms) in spread(2.0, 30).into_iter().enumerate() {
            records.push(save("camden", 100.0 + i as f64, ms, 100 + i as i64));
        }
        for (i, ms) in spread(20.0, 30).into_iter().enumerate() {
            records.push(save("camden", 1200.0 + i as f64, ms, 500 + i as i64));
        }
        records.push(vanished("camden", 500, 1500.0));
        let events = [
            (
                1000.0,
                json!({"event": "migration_started", "trust": "camden"}),
            ),
            (
                1100.0,
                json!({"event": "trust_finished", "trust": "camden", "status": "upgraded"}),
            ),
        ];
        let r = experience(
            &records,
            &typed_timelines(&events),
            None,
            HurtRule::default(),
        );
        let h = r.trusts[0].hurt;
        assert_eq!((h.slow, h.vanished, h.actions), (30, 1, 30));
    }

    #[test]
    fn phase_figures_use_the_r7_percentiles_of_successful_actions() {
        let mut records = vec![started(&["camden"])];
        for i in 1..=100 {
            records.push(act(
                "camden",
                ActionKind::Caseload,
                f64::from(i),
                f64::from(i),
            ));
        }
        records.push(Record::Action {
            trust: "camden".into(),
            kind: ActionKind::Caseload,
            at_ms: 101.0,
            ms: 9000.0,
            error: Some("timeout".into()),
            note: None,
            control_ms: None,
        });
        let r = experience(&records, &BTreeMap::new(), None, HurtRule::default());
        let k = &r.trusts[0].phase(Phase::Before).unwrap().kinds[0];
        assert_eq!((k.actions, k.failed), (101, 1));
        assert_eq!(k.p50_ms, Some(50.5));
        assert!((k.p95_ms.unwrap() - 95.05).abs() < 1e-9);
        assert!((k.p99_ms.unwrap() - 99.01).abs() < 1e-9);
        assert_eq!(k.max_ms, Some(100.0));
        assert_eq!(r.trusts[0].errors[0].message, "timeout");
        assert_eq!(r.blast, BlastRadius::default());
    }
}
