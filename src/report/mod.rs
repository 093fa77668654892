//! Reporters. Live ones consume the engine's [`Event`](crate::engine::Event) stream (the
//! terminal, `--events` JSON lines); the written reports (`--junit`, `--report-dir`,
//! `flotilla report`) are rendered after a run from its journal, through one model
//! ([`model::RunReport`]).

pub mod estate;
pub mod html;
pub mod human;
pub mod jsonl;
pub mod junit;
pub mod model;
pub mod plan;
pub mod traffic;

use std::path::{Path, PathBuf};

pub use human::Human;
pub use jsonl::JsonLines;
pub use model::{ModelError, RunReport, TrustResult};

use crate::journal::StateDb;

/// Which written reports to produce.
#[derive(Debug, Clone, Default)]
pub struct ReportOptions {
    /// `--junit FILE`.
    pub junit: Option<PathBuf>,
    /// `--report-dir DIR` (the report is `DIR/index.html`).
    pub report_dir: Option<PathBuf>,
}

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("cannot write the report {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the JUnit report {path}: {message}")]
    Junit { path: String, message: String },
    #[error("cannot create events file {path}: {source}")]
    EventsFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The reporters of a run: the terminal (progress bars when `progress`, colour when `color`;
/// on stderr when the events go to stdout) and, with `--events FILE` (`-` for stdout), every
/// event as a JSON line.
pub fn event_sinks(
    progress: bool,
    color: bool,
    events: Option<&Path>,
) -> Result<crate::engine::events::Fanout, ReportError> {
    let events_on_stdout = events.is_some_and(|p| p == Path::new("-"));
    let human = if events_on_stdout {
        Human::on_stderr(progress, color)
    } else {
        Human::new(progress, color)
    };
    let mut sinks: Vec<Box<dyn crate::engine::EventSink>> = vec![Box::new(human)];
    match events {
        None => {}
        Some(_) if events_on_stdout => sinks.push(Box::new(JsonLines::new(std::io::stdout()))),
        Some(p) => {
            let file = std::fs::File::create(p).map_err(|source| ReportError::EventsFile {
                path: p.display().to_string(),
                source,
            })?;
            sinks.push(Box::new(JsonLines::new(std::io::BufWriter::new(file))));
        }
    }
    Ok(crate::engine::events::Fanout(sinks))
}

impl ReportError {
    /// The documented exit code: a report path that cannot be written is the user's (2); a
    /// state database that fails says its own.
    pub fn exit_code(&self) -> crate::exit_codes::ExitCode {
        match self {
            ReportError::Model(e) => e.exit_code(),
            ReportError::Io { .. } | ReportError::Junit { .. } | ReportError::EventsFile { .. } => {
                crate::exit_codes::ExitCode::Config
            }
        }
    }
}

impl ModelError {
    /// The documented exit code: an unknown run is the user's (2); a state database that fails
    /// says its own.
    pub fn exit_code(&self) -> crate::exit_codes::ExitCode {
        match self {
            ModelError::State(e) => e.exit_code(),
            ModelError::NoRun { .. } => crate::exit_codes::ExitCode::Config,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
    move |source| ReportError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl ReportOptions {
    /// Whether any written report was asked for.
    pub fn any(&self) -> bool {
        self.junit.is_some() || self.report_dir.is_some()
    }

    /// Check, before a run starts, that the reports can be written there: the report
    /// directory is created, the JUnit file's directory must exist.
    pub fn prepare(&self) -> Result<(), ReportError> {
        if let Some(dir) = &self.report_dir {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        if let Some(file) = &self.junit {
            if file.is_dir() {
                return Err(ReportError::Io {
                    path: file.display().to_string(),
                    source: std::io::Error::other("is a directory"),
                });
            }
            if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
                if !parent.is_dir() {
                    return Err(ReportError::Io {
                        path: file.display().to_string(),
                        source: std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            format!("directory {} does not exist", parent.display()),
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Write `text` to `path` through a temporary file beside it, so a reader never sees half.
fn write_atomically(path: &Path, text: &str) -> Result<(), ReportError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report".into());
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).map_err(io_err(path))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(path)(e)
    })
}

/// Render run `run_id` from the journal into the reports `opts` asks for; returns the files
/// written.
pub async fn write_reports(
    state: &StateDb,
    run_id: &str,
    opts: &ReportOptions,
) -> Result<Vec<PathBuf>, ReportError> {
    if !opts.any() {
        return Ok(Vec::new());
    }
    write(&RunReport::load(state, run_id).await?, opts)
}

/// Write the reports `opts` asks for of a run already read; returns the files written.
pub fn write(report: &RunReport, opts: &ReportOptions) -> Result<Vec<PathBuf>, ReportError> {
    let mut written = Vec::new();
    if let Some(path) = &opts.junit {
        let xml = junit::render(report).map_err(|e| ReportError::Junit {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        write_atomically(path, &xml)?;
        written.push(path.clone());
    }
    if let Some(dir) = &opts.report_dir {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = dir.join("index.html");
        write_atomically(&path, &html::render(report))?;
        written.push(path);
    }
    Ok(written)
}

/// Collects a run's events as they are emitted, stamped as the journal stamps them, for a run
/// that has no journal: `RunReport::build(record, &recorder.events())`, then [`write`].
#[derive(Default)]
pub struct Recorder {
    events: std::sync::Mutex<Vec<crate::journal::StoredEvent>>,
}

impl Recorder {
    /// The events so far, in order.
    pub fn events(&self) -> Vec<crate::journal::StoredEvent> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

impl crate::engine::EventSink for Recorder {
    fn emit(&self, event: &crate::engine::Event) {
        let Ok(mut events) = self.events.lock() else {
            return;
        };
        let seq = i64::try_from(events.len()).unwrap_or(i64::MAX);
        events.push(crate::journal::StoredEvent {
            seq,
            attempt: 1,
            at: crate::journal::now(),
            body: serde_json::to_value(event).unwrap_or_default(),
            event: event.clone(),
        });
    }
}

/// A short text summary of a run (what `flotilla report RUN` prints).
pub fn summary(r: &RunReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "run {} ({} {}): {}, exit code {}",
        r.run.run_id,
        r.run.kind,
        r.run.plan,
        r.run.status,
        r.run
            .exit_code
            .map_or_else(|| "-".to_string(), |c| c.to_string())
    );
    if let Some(p) = &r.phases {
        let _ = writeln!(s, "{}", phases_line(p));
    }
    for w in &r.waves {
        let _ = writeln!(s, "wave {}: {}", w.name, w.status);
        for id in &w.trusts {
            let Some(t) = r.trust(id) else { continue };
            let line = match t.result() {
                TrustResult::Passed { summary } => summary,
                TrustResult::Failed { kind, message } => format!("{kind}: {message}"),
                TrustResult::Skipped { message } => message,
            };
            let by = t
                .worker
                .as_deref()
                .map(|w| format!(" (worker {w})"))
                .unwrap_or_default();
            let _ = writeln!(s, "  {:<24} {:<8} {line}{by}", t.id, t.result().label());
        }
    }
    if let Some(t) = &r.traffic {
        s.push_str(&traffic::text(t));
    }
    s
}

/// The phase breakdown on one line: `time 62.0 s: preflight 0.4 s (1%), ...`, the phases
/// that took no time left out, the overlapping busy times last.
pub fn phases_line(p: &crate::engine::events::Phases) -> String {
    let secs = |ms: u64| format!("{:.1} s", ms as f64 / 1000.0);
    let pct = |ms: u64| {
        ms.saturating_mul(100)
            .saturating_add(p.wall_ms / 2)
            .checked_div(p.wall_ms)
            .unwrap_or(0)
    };
    let parts: Vec<String> = p
        .sequential()
        .iter()
        .filter(|(_, ms)| *ms > 0)
        .map(|(name, ms)| format!("{name} {} ({}%)", secs(*ms), pct(*ms)))
        .collect();
    let overlapping: Vec<String> = p
        .overlapping()
        .iter()
        .map(|(name, ms)| format!("{name} {}", secs(*ms)))
        .collect();
    format!(
        "time {}: {}; overlapping: {}",
        secs(p.wall_ms),
        if parts.is_empty() {
            "-".to_string()
        } else {
            parts.join(", ")
        },
        overlapping.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Event, EventSink};

    #[test]
    fn the_summary_has_one_line_of_phases_when_the_journal_has_them() {
        use crate::report::model::tests::{halted_run, phased_run, record};
        let r = RunReport::build(record(), &phased_run());
        let line = summary(&r);
        assert!(
            line.contains(
                "time 10.0 s: preflight 0.5 s (5%), baseline 1.5 s (15%), migrate 3.0 s (30%)"
            ),
            "{line}"
        );
        assert!(
            !line.contains("confirmations"),
            "no time, not listed: {line}"
        );
        assert!(
            line.contains("overlapping: background watching 0.7 s, journal waits 0.1 s"),
            "{line}"
        );
        assert!(!summary(&RunReport::build(record(), &halted_run())).contains("time "));
    }

    #[test]
    fn a_recorder_feeds_the_same_model_as_the_journal() {
        let rec = Recorder::default();
        rec.emit(&Event::WaveStarted {
            wave: "pilot".into(),
            index: 0,
            trusts: 1,
            to_upgrade: 1,
            concurrency: 1,
        });
        rec.emit(&Event::WavePassed {
            wave: "pilot".into(),
        });
        let events = rec.events();
        assert_eq!(events[1].seq, 1);
        let r = RunReport::build(model::tests::record(), &events);
        assert_eq!(r.waves[0].status, "passed");
    }
}
