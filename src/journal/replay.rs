//! Typed replay of the journal: a run's stored events read back as [`Event`]s into what
//! `resume` needs ([`Replay::resumed`], the failed trusts, unfinished rollbacks), what `status`
//! and the refusal of a new rollout show (the last wave started, the waves passed), and, over
//! every run's gate history, which trusts' upgrades were never judged to pass ([`unjudged`])
//! with the baseline measured before each ([`baseline_snapshot`]). No field is read by name
//! from JSON: renaming an event field breaks the build, not resume.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{GateFact, GateRecord, StateDb, StateError, StoredEvent};
use crate::engine::{Event, TrustOutcome};
use crate::health::gate::{Verdict, Window};
use crate::health::probes::{ProbeParams, Snapshot};

/// The baseline a run measured on a trust before upgrading it, as its journal recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedBaseline {
    /// The wave the trust was upgraded in.
    pub wave: String,
    /// The version it was at before the upgrade.
    pub from: Option<i64>,
    /// The probes' parameters drawn for it.
    pub params: ProbeParams,
    /// The figures measured.
    pub snapshot: Snapshot,
}

/// What the journal of an interrupted run says, for `resume`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Resumed {
    /// Waves whose trusts passed their checks and soak.
    pub passed_waves: BTreeSet<String>,
    /// Each trust's baseline measured before its upgrade.
    pub baselines: HashMap<String, RecordedBaseline>,
    /// Trusts whose post-upgrade check passed.
    pub checked: BTreeSet<String>,
}

impl StateDb {
    /// The baseline figures `run_id` measured on `trust` just before its `baseline_recorded`
    /// event at sequence `before` (see [`replay::Unjudged::seq`]), if the journal holds them.
    pub async fn baseline_before(
        &self,
        run_id: &str,
        trust: &str,
        before: i64,
    ) -> Result<Option<crate::health::probes::Snapshot>, StateError> {
        let body = self
            .event_before(run_id, trust, "health_measured", before)
            .await?;
        Ok(body.and_then(|b| baseline_snapshot(&Event::from_json(&b)).cloned()))
    }
}

/// The label of the window whose figures are a trust's pre-upgrade baseline.
const BASELINE_WINDOW: &str = "baseline";

/// What a run's journal says about its trusts and waves.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Replay {
    /// For resume: the waves passed, each trust's recorded baseline (while it is on the new
    /// version), the trusts whose post-upgrade check passed.
    pub resumed: Resumed,
    /// Trusts that failed in the run (migration failed, the gate failed them, their rollback
    /// failed), with the reason.
    pub failed: BTreeMap<String, String>,
    /// Trusts whose rollback started and never finished.
    pub unfinished_rollbacks: BTreeSet<String>,
    /// The last wave the run started.
    pub last_wave: Option<String>,
}

/// Read a run's events, in order.
pub fn replay(events: &[StoredEvent]) -> Replay {
    let mut r = Replay::default();
    // The latest baseline figures per trust, until its `baseline_recorded` claims them.
    let mut snapshots: HashMap<&str, &Snapshot> = HashMap::new();
    for e in events {
        match &e.event {
            Event::WaveStarted { wave, .. } => r.last_wave = Some(wave.clone()),
            Event::HealthMeasured {
                trust,
                window,
                snapshot,
            } if window == BASELINE_WINDOW => {
                snapshots.insert(trust, snapshot);
            }
            Event::BaselineRecorded {
                wave,
                trust,
                from,
                params,
            } => {
                if let Some(snapshot) = snapshots.remove(trust.as_str()) {
                    r.resumed.baselines.insert(
                        trust.clone(),
                        RecordedBaseline {
                            wave: wave.clone(),
                            from: *from,
                            params: params.clone(),
                            snapshot: snapshot.clone(),
                        },
                    );
                }
            }
            Event::HealthVerdict {
                trust,
                window,
                verdict,
                ..
            } => {
                if *window == Window::PostUpgrade && *verdict == Verdict::Pass {
                    r.resumed.checked.insert(trust.clone());
                }
                if let Verdict::Fail(reasons) = verdict {
                    r.failed.insert(trust.clone(), reasons.join("; "));
                }
            }
            Event::TrustFinished {
                trust,
                outcome: TrustOutcome::Failed { error, .. },
                ..
            } => {
                r.failed.insert(trust.clone(), error.clone());
            }
            Event::RollbackStarted { trust, .. } => {
                r.unfinished_rollbacks.insert(trust.clone());
            }
            Event::RollbackFinished { trust, .. } => {
                r.unfinished_rollbacks.remove(trust);
                r.resumed.checked.remove(trust);
                r.resumed.baselines.remove(trust);
            }
            Event::RollbackFailed { trust, error } => {
                r.unfinished_rollbacks.remove(trust);
                r.failed.insert(trust.clone(), error.clone());
            }
            Event::WavePassed { wave } => {
                r.resumed.passed_waves.insert(wave.clone());
            }
            _ => {}
        }
    }
    r
}

/// The baseline figures an event holds: those of a `health_measured` event of the baseline
/// window (what [`super::StateDb::event_before`] finds before a `baseline_recorded`).
pub fn baseline_snapshot(event: &Event) -> Option<&Snapshot> {
    match event {
        Event::HealthMeasured {
            window, snapshot, ..
        } if window == BASELINE_WINDOW => Some(snapshot),
        _ => None,
    }
}

/// A trust whose last upgrade (in some run) was never judged to pass, with what is needed to
/// judge it now.
#[derive(Debug, Clone, PartialEq)]
pub struct Unjudged {
    /// The run that upgraded it.
    pub run_id: String,
    /// The wave it was in then.
    pub wave: String,
    /// The version it was at before that upgrade.
    pub from: Option<i64>,
    /// The probes' parameters then.
    pub params: ProbeParams,
    /// The last verdict since (`None`: never judged).
    pub last: Option<String>,
    /// Sequence of the `baseline_recorded` event in `run_id` (its baseline figures are in the
    /// `health_measured` event before it).
    pub seq: i64,
}

/// Every trust whose latest recorded upgrade has no passing verdict after it and was not
/// rolled back (verified) to the version it was at, from every run's gate history
/// ([`super::StateDb::gate_history`], in the order it happened).
pub fn unjudged(history: &[GateRecord]) -> BTreeMap<String, Unjudged> {
    let mut ledger: BTreeMap<String, Unjudged> = BTreeMap::new();
    for r in history {
        match &r.fact {
            GateFact::Baseline(body) => {
                // Unreadable (an unknown shape): no upgrade is known to start here.
                let Event::BaselineRecorded {
                    wave, from, params, ..
                } = Event::from_json(body)
                else {
                    continue;
                };
                ledger.insert(
                    r.trust.clone(),
                    Unjudged {
                        run_id: r.run_id.clone(),
                        wave,
                        from,
                        params,
                        last: None,
                        seq: r.seq,
                    },
                );
            }
            GateFact::Verdict { window, verdict } => {
                // Only a judgement of the upgraded trust counts; a baseline that could not be
                // measured or a rollback's check is not one.
                if window == "post-upgrade" || window == "soak" {
                    if let Some(u) = ledger.get_mut(&r.trust) {
                        u.last = Some(verdict.clone());
                    }
                }
            }
            GateFact::RolledBack { version } => {
                let back_below = ledger
                    .get(&r.trust)
                    .is_some_and(|u| match (*version, u.from) {
                        (None, _) => true,
                        (Some(v), Some(f)) => v <= f,
                        (Some(_), None) => false,
                    });
                if back_below {
                    ledger.remove(&r.trust);
                }
            }
        }
    }
    ledger.retain(|_, u| u.last.as_deref() != Some("pass"));
    ledger
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::gate::WriteFigures;
    use serde_json::json;

    /// An event as the journal stores it: serialised exactly as `Journal::record` does.
    fn stored(seq: usize, event: &Event) -> StoredEvent {
        let mut body = serde_json::to_value(event).unwrap();
        crate::secrets::scrub_json(&mut body);
        StoredEvent::new(seq as i64, 1, "2026-01-01T10:00:00Z", body)
    }

    fn journal(events: &[Event]) -> Vec<StoredEvent> {
        events
            .iter()
            .enumerate()
            .map(|(i, e)| stored(i, e))
            .collect()
    }

    fn snapshot(marker: &str) -> Snapshot {
        let mut s = Snapshot::default();
        s.invariants.insert(marker.to_string(), Ok(1));
        s
    }

    fn params(n: i64) -> ProbeParams {
        let mut p = ProbeParams::new();
        p.insert("open-record".into(), vec![n, n + 1]);
        p
    }

    fn measured(trust: &str, window: &str, marker: &str) -> Event {
        Event::HealthMeasured {
            trust: trust.into(),
            window: window.into(),
            snapshot: snapshot(marker),
        }
    }

    fn baseline(wave: &str, trust: &str, from: Option<i64>, n: i64) -> Event {
        Event::BaselineRecorded {
            wave: wave.into(),
            trust: trust.into(),
            from,
            params: params(n),
        }
    }

    fn verdict(trust: &str, window: Window, verdict: Verdict) -> Event {
        Event::HealthVerdict {
            wave: "pilot".into(),
            trust: trust.into(),
            window,
            verdict,
            latency: Vec::new(),
            workload: None,
            writes: Some(WriteFigures {
                writes: 10,
                lost: 0,
                confidence: 0.95,
                loss_upper_bound: 0.26,
                since_upgrade: None,
                lock_waits: None,
            }),
        }
    }

    fn finished(trust: &str, outcome: TrustOutcome) -> Event {
        Event::TrustFinished {
            wave: "pilot".into(),
            trust: trust.into(),
            version: Some(90),
            release: "5.1".into(),
            outcome,
            duration_ms: 12,
            worker: None,
        }
    }

    fn wave_started(wave: &str, index: usize) -> Event {
        Event::WaveStarted {
            wave: wave.into(),
            index,
            trusts: 2,
            to_upgrade: 2,
            concurrency: 1,
        }
    }

    #[test]
    fn stored_events_read_back_into_the_same_values() {
        let events = [
            wave_started("pilot", 0),
            measured("camden", "baseline", "m"),
            baseline("pilot", "camden", Some(80), 3),
            verdict(
                "camden",
                Window::PostUpgrade,
                Verdict::Fail(vec!["slow".into()]),
            ),
            finished(
                "camden",
                TrustOutcome::Failed {
                    error: "boom".into(),
                    exit_code: 4,
                },
            ),
            Event::MigrationStarted {
                trust: "camden".into(),
                version: 90,
                description: "add index".into(),
                before: None,
            },
            Event::RunFinished {
                outcome: "halted".into(),
                exit_code: 3,
                duration_ms: 9,
                phases: None,
            },
        ];
        for (e, s) in events.iter().zip(journal(&events)) {
            assert_eq!(&s.event, e, "{}", s.body);
            assert_eq!(s.body["event"], e.kind());
        }
    }

    #[test]
    fn a_resumed_run_gets_every_baseline_check_failure_and_wave_the_journal_holds() {
        let events = journal(&[
            Event::RunStarted {
                plan: "rio-5.1".into(),
                target_version: 130,
                target_release: Some("5.1".into()),
                waves: 2,
                trusts: 3,
                migrations: 4,
            },
            wave_started("pilot", 0),
            // Measured before the upgrade of each trust; a later window's figures are not a
            // baseline.
            measured("camden", "baseline", "camden-before"),
            baseline("pilot", "camden", Some(80), 1),
            measured("islington", "baseline", "islington-before"),
            baseline("pilot", "islington", None, 2),
            measured("camden", "post-upgrade", "camden-after"),
            verdict("camden", Window::PostUpgrade, Verdict::Pass),
            verdict(
                "islington",
                Window::PostUpgrade,
                Verdict::Fail(vec!["slow".into(), "lost a write".into()]),
            ),
            verdict("camden", Window::Soak, Verdict::Pass),
            Event::WavePassed {
                wave: "pilot".into(),
            },
            wave_started("london", 1),
            finished(
                "hackney",
                TrustOutcome::Failed {
                    error: "migration 90 failed".into(),
                    exit_code: 4,
                },
            ),
            finished("newham", TrustOutcome::Upgraded { migrations: 2 }),
        ]);
        let r = replay(&events);
        assert_eq!(r.last_wave.as_deref(), Some("london"));
        assert_eq!(
            r.resumed.passed_waves,
            BTreeSet::from(["pilot".to_string()])
        );
        assert_eq!(r.resumed.checked, BTreeSet::from(["camden".to_string()]));
        assert_eq!(r.resumed.baselines.len(), 2);
        assert_eq!(
            r.resumed.baselines["camden"],
            RecordedBaseline {
                wave: "pilot".into(),
                from: Some(80),
                params: params(1),
                snapshot: snapshot("camden-before"),
            }
        );
        assert_eq!(
            r.resumed.baselines["islington"],
            RecordedBaseline {
                wave: "pilot".into(),
                from: None,
                params: params(2),
                snapshot: snapshot("islington-before"),
            }
        );
        assert_eq!(
            r.failed,
            BTreeMap::from([
                ("hackney".to_string(), "migration 90 failed".to_string()),
                ("islington".to_string(), "slow; lost a write".to_string()),
            ])
        );
        assert!(r.unfinished_rollbacks.is_empty());
    }

    #[test]
    fn rollbacks_clear_what_they_undo_and_an_unfinished_one_is_kept() {
        let rollback_started = |trust: &str| Event::RollbackStarted {
            trust: trust.into(),
            from: "5.1".into(),
            to: "5.0".into(),
            migrations: 1,
        };
        let events = journal(&[
            wave_started("pilot", 0),
            measured("camden", "baseline", "a"),
            baseline("pilot", "camden", Some(80), 1),
            measured("islington", "baseline", "b"),
            baseline("pilot", "islington", Some(80), 1),
            measured("hackney", "baseline", "c"),
            baseline("pilot", "hackney", Some(80), 1),
            verdict("camden", Window::PostUpgrade, Verdict::Pass),
            rollback_started("camden"),
            Event::RollbackFinished {
                trust: "camden".into(),
                version: Some(80),
                release: "5.0".into(),
            },
            rollback_started("islington"),
            Event::RollbackFailed {
                trust: "islington".into(),
                error: "integrity differs".into(),
            },
            rollback_started("hackney"),
        ]);
        let r = replay(&events);
        assert!(!r.resumed.baselines.contains_key("camden"));
        assert!(!r.resumed.checked.contains("camden"));
        assert!(r.resumed.baselines.contains_key("islington"));
        assert!(r.resumed.baselines.contains_key("hackney"));
        assert_eq!(
            r.unfinished_rollbacks,
            BTreeSet::from(["hackney".to_string()])
        );
        assert_eq!(r.failed["islington"], "integrity differs");
        assert!(!r.failed.contains_key("camden"));
    }

    #[test]
    fn a_baseline_without_its_figures_is_not_a_baseline() {
        let r = replay(&journal(&[
            measured("camden", "soak-1", "not-a-baseline"),
            baseline("pilot", "camden", Some(80), 1),
        ]));
        assert!(r.resumed.baselines.is_empty());
    }

    #[test]
    fn old_journal_lines_read_unknown_kinds_and_missing_optional_fields() {
        let lines = [
            // A kind this version does not know (an older or newer flotilla wrote it).
            json!({"event":"lease_renewed","trust":"camden","until":"later"}),
            // An event missing its optional fields: no `before`, no `writes`, no `workload`,
            // no `latency`, no `by`.
            json!({"event":"migration_started","trust":"camden","version":90,"description":"x"}),
            // A trust's start without the planned versions its intent now carries.
            json!({"event":"trust_started","wave":"pilot","trust":"camden","from":"5.0","to":"5.1","migrations":1}),
            json!({"event":"health_verdict","wave":"pilot","trust":"camden","window":"post-upgrade","verdict":"fail","reasons":["slow"]}),
            json!({"event":"run_resumed","attempt":2}),
            json!({"event":"wave_started","wave":"pilot","index":0,"trusts":1,"to_upgrade":1,"concurrency":1}),
            // A known kind whose fields do not read is skipped, not fatal.
            json!({"event":"wave_passed"}),
        ];
        let mut events: Vec<StoredEvent> = lines
            .into_iter()
            .enumerate()
            .map(|(i, b)| StoredEvent::new(i as i64, 1, "2026-01-01T10:00:00Z", b))
            .collect();
        assert_eq!(events[0].event, Event::Unknown);
        assert_eq!(events[0].body["until"], "later", "the stored JSON is kept");
        assert_eq!(
            events[1].event,
            Event::MigrationStarted {
                trust: "camden".into(),
                version: 90,
                description: "x".into(),
                before: None,
            }
        );
        assert_eq!(
            events.remove(2).event,
            Event::TrustStarted {
                wave: "pilot".into(),
                trust: "camden".into(),
                from: "5.0".into(),
                to: "5.1".into(),
                migrations: 1,
                planned: Vec::new(),
            }
        );
        assert_eq!(
            events[2].event,
            Event::HealthVerdict {
                wave: "pilot".into(),
                trust: "camden".into(),
                window: Window::PostUpgrade,
                verdict: Verdict::Fail(vec!["slow".into()]),
                latency: Vec::new(),
                workload: None,
                writes: None,
            }
        );
        assert_eq!(
            events[3].event,
            Event::RunResumed {
                attempt: 2,
                by: String::new(),
            }
        );
        assert_eq!(events[5].event, Event::Unknown);
        let r = replay(&events);
        assert_eq!(r.failed["camden"], "slow");
        assert_eq!(r.last_wave.as_deref(), Some("pilot"));
        assert!(r.resumed.passed_waves.is_empty());
    }

    #[test]
    fn the_baseline_snapshot_is_only_that_of_the_baseline_window() {
        let e = stored(0, &measured("camden", "baseline", "x"));
        assert_eq!(baseline_snapshot(&e.event), Some(&snapshot("x")));
        let e = stored(0, &measured("camden", "post-upgrade", "x"));
        assert_eq!(baseline_snapshot(&e.event), None);
        assert_eq!(baseline_snapshot(&Event::Unknown), None);
    }

    fn gate(run: &str, seq: i64, trust: &str, fact: GateFact) -> GateRecord {
        GateRecord {
            run_id: run.into(),
            seq,
            trust: trust.into(),
            fact,
        }
    }

    fn baseline_fact(wave: &str, trust: &str, from: Option<i64>) -> GateFact {
        GateFact::Baseline(stored(0, &baseline(wave, trust, from, 7)).body)
    }

    fn judged(window: &str, verdict: &str) -> GateFact {
        GateFact::Verdict {
            window: window.into(),
            verdict: verdict.into(),
        }
    }

    #[test]
    fn unjudged_upgrades_are_those_without_a_later_pass_or_verified_rollback() {
        let history = [
            // camden: upgraded in r1, failed, never passed since.
            gate(
                "r1",
                3,
                "camden",
                baseline_fact("pilot", "camden", Some(80)),
            ),
            gate("r1", 5, "camden", judged("post-upgrade", "fail")),
            // islington: upgraded, then passed: judged.
            gate(
                "r1",
                4,
                "islington",
                baseline_fact("pilot", "islington", Some(80)),
            ),
            gate("r1", 6, "islington", judged("post-upgrade", "pass")),
            // hackney: upgraded, rolled back to where it started: nothing to judge.
            gate(
                "r1",
                7,
                "hackney",
                baseline_fact("pilot", "hackney", Some(80)),
            ),
            gate(
                "r1",
                8,
                "hackney",
                GateFact::RolledBack { version: Some(80) },
            ),
            // newham: rolled back only part of the way: still unjudged; an after-rollback
            // verdict is not a judgement of the upgrade.
            gate(
                "r1",
                9,
                "newham",
                baseline_fact("pilot", "newham", Some(80)),
            ),
            gate(
                "r1",
                10,
                "newham",
                GateFact::RolledBack { version: Some(85) },
            ),
            gate("r1", 11, "newham", judged("after-rollback", "pass")),
            // tower: a baseline from an unreadable body is skipped.
            gate(
                "r1",
                12,
                "tower",
                GateFact::Baseline(json!({"event":"baseline_recorded"})),
            ),
            // camden again in r2: its latest upgrade, judged inconclusive in a soak.
            gate(
                "r2",
                2,
                "camden",
                baseline_fact("london", "camden", Some(85)),
            ),
            gate("r2", 4, "camden", judged("soak", "inconclusive")),
        ];
        let ledger = unjudged(&history);
        assert_eq!(
            ledger.keys().cloned().collect::<Vec<_>>(),
            vec!["camden".to_string(), "newham".to_string()]
        );
        assert_eq!(
            ledger["camden"],
            Unjudged {
                run_id: "r2".into(),
                wave: "london".into(),
                from: Some(85),
                params: params(7),
                last: Some("inconclusive".into()),
                seq: 2,
            }
        );
        assert_eq!(ledger["newham"].last, None);
        assert_eq!(ledger["newham"].from, Some(80));
    }
}
