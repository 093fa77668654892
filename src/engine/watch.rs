//! Gate watching: what the gate knows about an upgraded trust ([`Watched`]), measuring a
//! window (write-probe records journalled around it, the real workload read with it), judging
//! it against the baseline, confirming a window that did not pass, soak rounds after a wave,
//! and the background checks of earlier waves while a later one migrates.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};

use super::events::Event;
use super::outcome::RunOutcome;
use super::policy::TrustVerdict;
use super::preflight::READ_CONCURRENCY;
use super::run::{Engine, Phase, RunState, Watched};
use crate::config::health::DEFAULT_WRITE_SAMPLES;
use crate::config::{Trust, Wave};
use crate::health::gate::{judge, Judgement, LatencyComparison, Verdict, Window};
use crate::health::probes::{measure, ProbeParams, Rows, Scope, Snapshot, WriteBatch};
use crate::journal::replay::RecordedBaseline;
use crate::plan::Step;

/// Pauses before a window that did not pass is measured again: a latency regression stands
/// only when every one of these measurements confirms it (a real one persists; a burst of
/// load on a shared machine passes within seconds).
const CONFIRM_PAUSES: [Duration; 2] = [Duration::from_millis(500), Duration::from_secs(2)];

/// Trusts of earlier waves re-checked per soak interval while a later wave migrates (one after
/// another, beside the migrations): a fixed rate, whatever the number of waves passed.
pub(super) const BACKGROUND_PER_TICK: usize = 4;

/// The indices of the next `per_tick` of `len` watched trusts, round-robin from `*next`
/// (advanced past them). Never more than `per_tick`, nor than `len` (each at most once).
pub(super) fn background_batch(next: &mut usize, len: usize, per_tick: usize) -> Vec<usize> {
    if len == 0 {
        return Vec::new();
    }
    let start = *next % len;
    let count = per_tick.min(len);
    *next = (start + count) % len;
    (0..count).map(|k| (start + k) % len).collect()
}

impl Engine<'_> {
    /// A trust to watch in `wave`, from the baseline an earlier attempt recorded.
    pub(super) fn watched_from_journal(
        &self,
        id: &str,
        wave: &str,
        recorded: &RecordedBaseline,
    ) -> Watched {
        Watched {
            trust: id.to_string(),
            wave: wave.to_string(),
            from: recorded.from,
            baseline: recorded.snapshot.clone(),
            params: recorded.params.clone(),
            rewrites: self.rewrites_between(id, recorded.from),
            writes_seen: Default::default(),
        }
    }

    /// The (table, column) pairs the migrations from `from` to the target declare they rewrite.
    fn rewrites_between(&self, id: &str, from: Option<i64>) -> BTreeSet<(String, String)> {
        self.catalogs
            .for_trust(id)
            .range(from, self.plan.target.version)
            .flat_map(|m| m.rewrites.iter().cloned())
            .collect()
    }

    /// The (table, column) pairs these planned steps declare they rewrite.
    pub(super) fn rewrites(&self, id: &str, steps: &[Step]) -> BTreeSet<(String, String)> {
        let catalog = self.catalogs.for_trust(id);
        steps
            .iter()
            .filter_map(|s| catalog.get(s.version))
            .flat_map(|m| m.rewrites.iter().cloned())
            .collect()
    }

    /// Measure a trust over `scope` and judge the window against its baseline. The figures
    /// `scope` leaves out come from `earlier`, a window of the trust measured moments before
    /// (see [`Snapshot::fill_unmeasured`]). Also the figures judged.
    ///
    /// With workers the window is measured on one, over all of `scope` (the figures stay
    /// there: `earlier` is never passed with a narrowed scope then, see `judge_windows`).
    pub(super) async fn judged(
        &self,
        w: &Watched,
        scope: Scope,
        kind: Window,
        label: &str,
        earlier: Option<&Snapshot>,
    ) -> (Judgement, Snapshot) {
        if let Some(r) = self.remote {
            let j = self.window_remote(r, w, (scope, kind, label), false).await;
            return (j, Snapshot::default());
        }
        let id = w.trust.as_str();
        let Some(trust) = self.inventory.get(id) else {
            let j = Judgement {
                verdict: Verdict::Error(vec![format!("trust '{id}' is not in the inventory")]),
                critical: false,
                latency: Vec::new(),
                workload: None,
                writes: None,
            };
            return (j, Snapshot::default());
        };
        let mut snap = self
            .measure(
                id,
                &w.wave,
                trust,
                &w.params,
                &w.rewrites,
                Rows::Of(&w.baseline),
                scope,
                label,
            )
            .await;
        if let Some(earlier) = earlier {
            snap.fill_unmeasured(earlier, scope);
        }
        let mut j = judge(&self.plan.health, &w.baseline, &snap, kind);
        if let (Some(figures), Ok(mut seen)) = (j.writes.as_mut(), w.writes_seen.lock()) {
            if scope.writes() {
                *seen = figures.accumulate(*seen);
            } else {
                // The earlier window's writes, counted when it was judged.
                let prior = (
                    seen.0.saturating_sub(figures.writes),
                    seen.1.saturating_sub(figures.lost),
                );
                figures.accumulate(prior);
            }
        }
        (j, snap)
    }

    /// Like [`judged`](Self::judged), but a window that does not pass only on latency is
    /// measured again after each of [`CONFIRM_PAUSES`], and only a regression every
    /// measurement shows counts: a real regression persists, a burst of load does not.
    /// Lost or changed data (a critical failure) is never measured away. The first window is
    /// measured over `scope`, the rest of its figures from `earlier` (see
    /// [`judged`](Self::judged)); also returns the first window's figures.
    ///
    /// The re-measurements do not hash the integrity tables again when the first window could:
    /// a window confirmed is one that did not fail critically, so its integrity held, and the
    /// rows it covers are the same rows a moment later (soak windows do not hash them at all);
    /// what is in doubt, latency, is measured again, with the writes.
    pub(super) async fn confirmed(
        &self,
        w: &Watched,
        scope: Scope,
        kind: Window,
        label: &str,
        earlier: Option<&Snapshot>,
    ) -> (Judgement, Snapshot) {
        if let Some(r) = self.remote {
            // On a worker, with its confirmations (see `super::remote`).
            let j = self.window_remote(r, w, (scope, kind, label), true).await;
            return (j, Snapshot::default());
        }
        let (mut judgement, first) = self.judged(w, scope, kind, label, earlier).await;
        let again_scope = match scope {
            Scope::Full if first.integrity.values().all(Result::is_ok) => Scope::Soak,
            s => s,
        };
        for (attempt, pause) in CONFIRM_PAUSES.iter().enumerate() {
            if judgement.verdict == Verdict::Pass || judgement.critical {
                break;
            }
            tokio::time::sleep(*pause).await;
            let label = format!("{label}-confirm-{}", attempt + 1);
            let (again, _) = self
                .judged(w, again_scope, kind, &label, Some(&first))
                .await;
            if again.verdict == Verdict::Pass {
                tracing::info!(trust = %w.trust, first = ?judgement.verdict, "not confirmed on a later measurement: treated as noise");
            }
            judgement = again;
        }
        (judgement, first)
    }

    /// While a wave migrates, keep checking the trusts of earlier waves: every soak interval,
    /// the next [`BACKGROUND_PER_TICK`] of them, round-robin over every watched trust from
    /// where the previous wave's watching left off (`next`), so that the rate stays the same
    /// however many waves have passed. Anything that does not pass is a suspect, checked
    /// again once the wave's migrations end.
    pub(super) async fn watch_earlier_waves(
        &self,
        wave: &str,
        watched: &[Watched],
        next: &mut usize,
        done: &AtomicBool,
        late: &Mutex<Vec<TrustVerdict>>,
    ) {
        let Some(interval) = self
            .plan
            .waves
            .iter()
            .find(|w| w.name == wave)
            .and_then(|w| w.soak)
            .map(|s| s.interval)
        else {
            return;
        };
        if !self.gated() || watched.is_empty() {
            return;
        }
        let tick = interval.max(Duration::from_millis(100));
        let mut round = 0;
        loop {
            let deadline = Instant::now() + tick;
            while Instant::now() < deadline {
                if done.load(Ordering::SeqCst) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            round += 1;
            let started = Instant::now();
            for i in background_batch(next, watched.len(), BACKGROUND_PER_TICK) {
                if done.load(Ordering::SeqCst) {
                    break;
                }
                let w = &watched[i];
                let label = format!("background-{round}");
                let (j, _) = self
                    .judged(w, Scope::Soak, Window::Soak, &label, None)
                    .await;
                if j.verdict != Verdict::Pass {
                    if let Ok(mut l) = late.lock() {
                        if !l.iter().any(|s| s.trust == w.trust) {
                            l.push(TrustVerdict::new(w.trust.clone(), j.verdict));
                        }
                    }
                }
            }
            self.phases.add(Phase::Background, started.elapsed());
            if done.load(Ordering::SeqCst) {
                return;
            }
        }
    }

    /// Soak: `rounds` passing rounds over the trusts this wave upgraded before the next wave
    /// starts, their windows measured the wave's concurrency at a time. (Trusts of earlier
    /// waves are watched in the background while later waves run.)
    pub(super) async fn soak(&self, wave: &Wave, state: &mut RunState) -> Option<RunOutcome> {
        let soak = wave.soak?;
        let mut this_wave: Vec<Watched> = state
            .watched
            .iter()
            .filter(|w| w.wave == wave.name)
            .cloned()
            .collect();
        if !self.gated() || this_wave.is_empty() {
            return None;
        }
        this_wave.sort_by(|a, b| a.trust.cmp(&b.trust));
        for round in 1..=soak.rounds {
            self.timed(Phase::SoakWait, tokio::time::sleep(soak.interval))
                .await;
            if let Some(stopped) = self.control.outcome() {
                return Some(stopped);
            }
            self.emit(Event::SoakRound {
                wave: wave.name.clone(),
                round,
                of: soak.rounds,
                trusts: this_wave.len(),
            })
            .await;
            let label = format!("soak-{round}");
            let verdicts = self
                .windows(
                    Phase::SoakChecks,
                    self.judge_windows(
                        &wave.name,
                        this_wave.iter(),
                        wave.concurrency,
                        (Window::Soak, Scope::Soak, &label),
                    ),
                )
                .await;
            if let Some(outcome) = self.apply_policy(&wave.name, &verdicts, state).await {
                return Some(outcome);
            }
        }
        None
    }

    /// Measure a trust. The write probe's records are journalled before the first is
    /// inserted and again once they are all removed, so a crash in between leaves a note of
    /// what to clean up. The writes are sized for `wave` ([`crate::config::health::Health::write_sizing`]): the
    /// baseline makes fewer (enough for write latency), every later window the share of the
    /// writes the plan's `max_loss_rate` needs.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn measure(
        &self,
        id: &str,
        wave: &str,
        trust: &Trust,
        params: &ProbeParams,
        rewrites: &BTreeSet<(String, String)>,
        rows: Rows<'_>,
        scope: Scope,
        label: &str,
    ) -> Snapshot {
        let batch = scope
            .writes()
            .then(|| self.write_batch(wave, label == "baseline"))
            .flatten();
        if let Some(b) = &batch {
            self.emit(Event::WriteProbeStarted {
                trust: id.to_string(),
                id: b.first_id,
                count: b.count,
            })
            .await;
        }
        let workload = scope.writes();
        if workload {
            let notice = self.workload.open(trust, &self.plan.health).await;
            self.workload_notice(id, notice).await;
        }
        let slot =
            crate::health::slots::window_slot(trust, self.plan.health.windows_per_server()).await;
        let mut snap = measure(
            trust,
            &self.plan.health,
            params,
            rewrites,
            rows,
            scope,
            batch.clone(),
        )
        .await;
        drop(slot);
        if workload {
            snap.workload = self.workload.close(trust, &self.plan.health).await;
        }
        if let (Some(b), Some(Ok(_))) = (&batch, &snap.write) {
            self.emit(Event::WriteProbeCleaned {
                trust: id.to_string(),
                id: b.first_id,
            })
            .await;
        }
        self.emit(Event::HealthMeasured {
            trust: id.to_string(),
            window: label.to_string(),
            snapshot: snap.clone(),
        })
        .await;
        snap
    }

    /// The write records of one window of `wave` (`None` without a write probe).
    fn write_batch(&self, wave: &str, baseline: bool) -> Option<WriteBatch> {
        let health = &self.plan.health;
        let soak = self
            .plan
            .waves
            .iter()
            .find(|w| w.name == wave)
            .map_or(health.soak, |w| w.soak);
        // The plan was refused at load when the sizing fails; the default is a fallback only.
        let (per_window, baseline_count, sessions) = match health.write_sizing(soak)? {
            Ok(s) => (s.per_window, s.baseline, s.concurrency),
            Err(_) => (DEFAULT_WRITE_SAMPLES, DEFAULT_WRITE_SAMPLES, 1),
        };
        Some(WriteBatch::new(
            if baseline { baseline_count } else { per_window },
            sessions,
        ))
    }

    /// A verdict with no figures beyond its reasons (a baseline that could not be measured,
    /// a rollback's integrity check).
    pub(super) async fn emit_verdict(
        &self,
        wave: &str,
        trust: &str,
        window: Window,
        verdict: &Verdict,
        latency: Vec<LatencyComparison>,
    ) {
        self.emit(Event::HealthVerdict {
            wave: wave.to_string(),
            trust: trust.to_string(),
            window,
            verdict: verdict.clone(),
            latency,
            workload: None,
            writes: None,
        })
        .await;
    }

    /// [`emit_verdict`](Self::emit_verdict) with every figure of a judgement (latency and the
    /// real workload).
    pub(super) async fn emit_judgement(
        &self,
        wave: &str,
        trust: &str,
        window: Window,
        j: &Judgement,
    ) {
        self.emit(Event::HealthVerdict {
            wave: wave.to_string(),
            trust: trust.to_string(),
            window,
            verdict: j.verdict.clone(),
            latency: j.latency.clone(),
            workload: j.workload.clone(),
            writes: j.writes.clone(),
        })
        .await;
    }

    /// Open a new workload window on each of these trusts now (a few at a time), and say once
    /// per trust when its workload cannot be read.
    pub(super) async fn workload_mark(&self, ids: impl Iterator<Item = &str>) {
        if self.remote.is_some() {
            // Workers open each trust's workload window with its job (`super::remote`).
            return;
        }
        let trusts: Vec<&Trust> = ids.filter_map(|id| self.inventory.get(id)).collect();
        let notices: Vec<(String, Option<String>)> = stream::iter(trusts)
            .map(|t| async move { (t.id.clone(), self.workload.mark(t, &self.plan.health).await) })
            .buffer_unordered(READ_CONCURRENCY)
            .collect()
            .await;
        for (id, notice) in notices {
            self.workload_notice(&id, notice).await;
        }
    }

    async fn workload_notice(&self, trust: &str, reason: Option<String>) {
        if let Some(reason) = reason {
            tracing::info!(trust, %reason, "the real workload is not judged on this trust: the probes are its only signal");
            self.emit(Event::WorkloadUnavailable {
                trust: trust.to_string(),
                reason,
            })
            .await;
        }
    }
}

/// Every measurement of a snapshot that could not be taken.
pub(super) fn snapshot_errors(s: &Snapshot) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    out.extend(s.latency.iter().filter_map(|(n, r)| {
        r.as_ref()
            .err()
            .map(|e| format!("latency probe '{n}': {e}"))
    }));
    out.extend(
        s.integrity
            .iter()
            .filter_map(|(n, r)| r.as_ref().err().map(|e| format!("integrity of '{n}': {e}"))),
    );
    out.extend(
        s.invariants
            .iter()
            .filter_map(|(n, r)| r.as_ref().err().map(|e| format!("invariant '{n}': {e}"))),
    );
    if let Some(Err(e)) = &s.write {
        out.push(format!("write probe: {e}"));
    }
    if let Some(Err(e)) = &s.workload {
        out.push(format!("workload (pg_stat_statements): {e}"));
    }
    if let Some(Ok(w)) = &s.write {
        if w.lost > 0 {
            out.push(format!(
                "write probe: data not reliably saved even before the upgrade: {} of {} writes lost: {}",
                w.lost,
                w.writes,
                w.failures.join("; ")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::background_batch;

    /// However many trusts earlier waves left to watch, a tick re-checks at most the fixed
    /// number, and every trust comes round within ceil(len / per_tick) ticks.
    #[test]
    fn background_watching_checks_a_fixed_number_per_tick_round_robin() {
        for len in [1, 3, 4, 5, 16, 56, 168] {
            let mut next = 0;
            let mut seen = vec![0usize; len];
            let ticks = len.div_ceil(4);
            for _ in 0..ticks {
                let batch = background_batch(&mut next, len, 4);
                assert_eq!(batch.len(), 4.min(len), "len {len}");
                let mut distinct = batch.clone();
                distinct.dedup();
                assert_eq!(distinct.len(), batch.len(), "len {len}: {batch:?}");
                for i in batch {
                    seen[i] += 1;
                }
            }
            assert!(seen.iter().all(|&n| n >= 1), "len {len}: {seen:?}");
            assert!(seen.iter().all(|&n| n <= 2), "len {len}: {seen:?}");
        }
    }

    #[test]
    fn background_watching_goes_on_where_it_left_off_when_the_list_changes() {
        let mut next = 0;
        assert_eq!(background_batch(&mut next, 6, 4), [0, 1, 2, 3]);
        assert_eq!(background_batch(&mut next, 6, 4), [4, 5, 0, 1]);
        // A trust rolled back: the list shrank, the cursor stays in range.
        assert_eq!(background_batch(&mut next, 2, 4), [0, 1]);
        let mut next = 9;
        assert_eq!(background_batch(&mut next, 5, 2), [4, 0]);
        assert!(background_batch(&mut next, 0, 4).is_empty());
    }
}
