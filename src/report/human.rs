//! The human reporter: indicatif progress bars (one for the wave, one per trust in flight) when
//! stdout is a terminal, plain lines otherwise.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::{Event, EventSink, TrustOutcome};
use crate::health::gate::{Verdict, Window};

/// Prints events for people.
pub struct Human {
    bars: Option<Bars>,
    state: Mutex<State>,
    /// Lines and bars go to stderr (stdout carries `--events -`).
    to_stderr: bool,
}

struct Bars {
    multi: MultiProgress,
    wave_style: ProgressStyle,
    trust_style: ProgressStyle,
}

#[derive(Default)]
struct State {
    wave: Option<ProgressBar>,
    trusts: HashMap<String, ProgressBar>,
}

impl Human {
    /// Bars when `interactive`, plain lines otherwise; bars in colour only when `color`
    /// (`NO_COLOR` unset). The plain lines never carry colour codes.
    pub fn new(interactive: bool, color: bool) -> Human {
        Self::on(interactive, color, false)
    }

    /// The same on stderr, leaving stdout to a machine-readable stream.
    pub fn on_stderr(interactive: bool, color: bool) -> Human {
        Self::on(interactive, color, true)
    }

    fn on(interactive: bool, color: bool, to_stderr: bool) -> Human {
        let wave_template = if color {
            "{prefix:.bold} [{bar:30.cyan/blue}] {pos}/{len} trusts {msg}"
        } else {
            "{prefix} [{bar:30}] {pos}/{len} trusts {msg}"
        };
        let bars = interactive.then(|| Bars {
            multi: MultiProgress::with_draw_target(if to_stderr {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::stdout()
            }),
            wave_style: ProgressStyle::with_template(wave_template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            trust_style: ProgressStyle::with_template("  {prefix:24} [{bar:20}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        });
        Human {
            bars,
            state: Mutex::new(State::default()),
            to_stderr,
        }
    }

    fn line(&self, text: String) {
        // Names and reasons come from the user's files and the databases: scrubbed of secrets
        // and with control characters escaped before they reach a terminal.
        let text = crate::printable::for_output(&text);
        match &self.bars {
            Some(b) => {
                let _ = b.multi.println(text);
            }
            None if self.to_stderr => {
                let _ = writeln!(std::io::stderr().lock(), "{text}");
            }
            None => {
                let _ = writeln!(std::io::stdout().lock(), "{text}");
            }
        }
    }
}

fn secs(ms: u64) -> String {
    format!("{:.1} s", Duration::from_millis(ms).as_secs_f64())
}

/// The plain-text line for an event, if it deserves one.
pub fn describe(event: &Event) -> Option<String> {
    Some(match event {
        Event::RunStarted { plan, target_version, target_release, waves, trusts, migrations } => format!(
            "rollout {plan} to {} (version {target_version}): {waves} waves, {trusts} trusts, {migrations} migrations to apply",
            target_release.as_deref().unwrap_or("target")
        ),
        Event::TrustBlocked { wave, trust, reason } => format!("  ✗ {trust} (wave {wave}) blocked: {reason}"),
        Event::WaveStarted { wave, index, trusts, to_upgrade, concurrency } => format!(
            "wave {} {wave}: {trusts} trusts, {to_upgrade} to upgrade, {concurrency} at a time",
            index + 1
        ),
        Event::WaveApproved { wave, by } => format!("wave {wave} approved ({by})"),
        Event::WaveNotApproved { wave } => format!("wave {wave} not approved: stopping before it"),
        Event::TrustStarted { trust, from, to, migrations, .. } => {
            format!("  {trust}: {from} → {to}, {migrations} migrations")
        }
        Event::MigrationStarted { .. } | Event::MigrationApplied { .. } => return None,
        Event::MigrationFailed { trust, version, error } => {
            format!("  ✗ {trust}: migration {version} failed and was rolled back: {error}")
        }
        Event::TrustFinished { trust, release, outcome, duration_ms, .. } => match outcome {
            TrustOutcome::Upgraded { migrations } => {
                format!("  ✓ {trust} at {release} ({migrations} migrations, {})", secs(*duration_ms))
            }
            TrustOutcome::UpToDate => format!("  = {trust} already at {release}"),
            TrustOutcome::Failed { error, .. } => format!("  ✗ {trust} FAILED at {release}: {error}"),
            TrustOutcome::Skipped => format!("  - {trust} skipped (the wave stopped)"),
            TrustOutcome::Interrupted { migrations } => {
                format!("  ‖ {trust} interrupted at {release} after {migrations} migrations (resume continues)")
            }
        },
        Event::WaveFinished { wave, upgraded, up_to_date, failed, skipped } => format!(
            "wave {wave} done: {upgraded} upgraded, {up_to_date} already up to date, {failed} failed, {skipped} skipped"
        ),
        Event::RunFinished { outcome, duration_ms, .. } => format!("rollout {outcome} in {}", secs(*duration_ms)),
        Event::HealthMeasured { .. } | Event::Unknown => return None,
        Event::HealthVerdict { trust, window, verdict, latency, workload, writes, .. } => {
            let mut figures: Vec<String> = latency
                .iter()
                .map(|c| format!("{} {:.2}→{:.2} ms{}", c.probe, c.baseline_median_ms, c.median_ms, c.sampling_note()))
                .collect();
            if let Some(w) = workload {
                let new = if w.new_count > 0 { format!(", {} new", w.new_count) } else { String::new() };
                let n = w.statements.len();
                figures.push(if n == 0 && w.new_count == 0 {
                    "workload: nothing to compare".to_string()
                } else {
                    format!("workload: {n} statement{} compared{new}", if n == 1 { "" } else { "s" })
                });
            }
            if let Some(w) = writes {
                figures.push(w.describe());
            }
            let figures = if figures.is_empty() { String::new() } else { format!(" ({})", figures.join(", ")) };
            let window = match window {
                Window::Baseline => "before upgrade (baseline; nothing was upgraded)",
                Window::PostUpgrade => "after upgrade",
                Window::Soak => "in soak",
                Window::AfterRollback => "after rollback",
            };
            match verdict {
                Verdict::Pass => format!("  ✓ {trust} healthy {window}{figures}"),
                other => {
                    let mut text = format!("  ✗ {trust} {} {window}:", other.label().to_uppercase());
                    for r in other.reasons() {
                        text.push_str("\n      ");
                        text.push_str(r);
                    }
                    text
                }
            }
        }
        Event::SoakRound { wave, round, of, trusts } => format!("soak after wave {wave}: round {round}/{of} over {trusts} trusts"),
        Event::RollbackStarted { trust, from, to, migrations } => {
            format!("  ↩ {trust}: rolling back {from} → {to} ({migrations} down migrations)")
        }
        Event::RollbackFinished { trust, release, .. } => {
            format!("  ↩ {trust} rolled back to {release}; integrity matches the pre-upgrade figures")
        }
        Event::RollbackFailed { trust, error } => format!("  ✗ {trust} ROLLBACK FAILED: {error}"),
        Event::Halted { wave, .. } => format!("HALTED in wave {wave}: no further trust will be touched"),
        Event::WorkloadUnavailable { trust, reason } => {
            format!("  · {trust}: real workload not judged: {reason}. The probes are its only signal.")
        }
        Event::TrustRetrying { trust, attempt, of, after_ms, error } => format!(
            "  ⟳ {trust}: connection problem, retry {attempt}/{of} in {}: {error}",
            secs(*after_ms)
        ),
        Event::Repaired { trust, version, applied: true, .. } => {
            format!("  ✓ {trust}: migration {version} marked applied (dirty mark cleared)")
        }
        Event::Repaired { trust, version, applied: false, dropped_indexes } => format!(
            "  ✓ {trust}: migration {version} marked not applied (tracking row removed{})",
            if dropped_indexes.is_empty() { String::new() } else { format!("; dropped invalid index {}", dropped_indexes.join(", ")) }
        ),
        Event::Adopted { trust, from, migrations, highest, baseline } => format!(
            "  ✓ {trust}: {migrations} migration(s){} recorded as applied, {}",
            highest.map(|h| format!(" up to {h}")).unwrap_or_default(),
            if *baseline { "baselined".to_string() } else { format!("adopted from {from}") }
        ),
        Event::WavePassed { wave } => format!("wave {wave} passed its checks"),
        Event::RunResumed { attempt, by } => format!("resuming the run (attempt {attempt}, by {by})"),
        Event::TrustDecided { trust, decision, by } => match decision.as_str() {
            "skip" => format!("  {trust}: left out of the rest of the run (--skip, by {by})"),
            _ => format!("  {trust}: tried again, measured and gated afresh (--retry, by {by})"),
        },
        Event::RunAbandoned { was, by, reason } => format!("run abandoned (it was {was}) by {by}: {reason}"),
        Event::BaselineCarried { trust, from_run, .. } => format!(
            "  ! {trust}: already upgraded, but its upgrade in run {from_run} was never judged to pass: it is gated now against the baseline recorded then"
        ),
        Event::Interrupted { abort: false } => "interrupted: nothing new was started".to_string(),
        Event::Interrupted { abort: true } => "interrupted twice: transactions in flight were abandoned (rolled back)".to_string(),
        Event::MigrationReverting { .. }
        | Event::MigrationReverted { .. }
        | Event::WriteProbeStarted { .. }
        | Event::WriteProbeCleaned { .. }
        | Event::BaselineRecorded { .. } => return None,
    })
}

impl EventSink for Human {
    fn emit(&self, event: &Event) {
        let Some(bars) = &self.bars else {
            if let Some(text) = describe(event) {
                self.line(text);
            }
            return;
        };
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        match event {
            Event::WaveStarted { wave, trusts, .. } => {
                let bar = bars.multi.add(ProgressBar::new(*trusts as u64));
                bar.set_style(bars.wave_style.clone());
                bar.set_prefix(format!("wave {wave}"));
                bar.enable_steady_tick(Duration::from_millis(200));
                state.wave = Some(bar);
            }
            Event::TrustStarted {
                trust,
                from,
                to,
                migrations,
                ..
            } => {
                let bar = bars.multi.add(ProgressBar::new(*migrations as u64));
                bar.set_style(bars.trust_style.clone());
                bar.set_prefix(trust.clone());
                bar.set_message(format!("{from} → {to}"));
                state.trusts.insert(trust.clone(), bar);
            }
            Event::MigrationStarted {
                trust,
                version,
                description,
                ..
            } => {
                if let Some(bar) = state.trusts.get(trust) {
                    bar.set_message(format!("{version} {description}"));
                }
            }
            Event::MigrationApplied { trust, .. } => {
                if let Some(bar) = state.trusts.get(trust) {
                    bar.inc(1);
                }
            }
            Event::TrustFinished { trust, .. } => {
                if let Some(bar) = state.trusts.remove(trust) {
                    bar.finish_and_clear();
                    bars.multi.remove(&bar);
                }
                if let Some(wave) = &state.wave {
                    wave.inc(1);
                }
            }
            Event::HealthMeasured { trust, window, .. } => {
                if let Some(wave) = &state.wave {
                    wave.set_message(format!("measured {trust} ({window})"));
                }
            }
            Event::WaveFinished { .. } => {
                if let Some(bar) = state.wave.take() {
                    bar.finish_and_clear();
                    bars.multi.remove(&bar);
                }
            }
            _ => {}
        }
        drop(state);
        if let Some(text) = describe(event) {
            self.line(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_trust_line_names_trust_release_and_error() {
        let line = describe(&Event::TrustFinished {
            wave: "pilot".into(),
            trust: "camden".into(),
            version: Some(8),
            release: "5.0".into(),
            outcome: TrustOutcome::Failed {
                error: "boom".into(),
                exit_code: 4,
            },
            duration_ms: 10,
            worker: None,
        })
        .unwrap();
        assert_eq!(line, "  ✗ camden FAILED at 5.0: boom");
    }

    #[test]
    fn per_migration_progress_is_not_printed_as_lines() {
        assert!(describe(&Event::MigrationApplied {
            trust: "a".into(),
            version: 1,
            duration_ms: 1
        })
        .is_none());
    }
}
