//! Simulated clinician traffic for the demo and the tests: staff sessions open patient records,
//! look at caseloads and save clinical notes on every trust while a rollout runs, in a process
//! of their own (`flotilla traffic`, which `demo --traffic RATE` starts and stops), so that the
//! gate's timings are not the traffic's and the traffic's are not the gate's.
//!
//! - [`clinic`]: the sessions and the read-back of saved notes (I/O);
//! - [`record`]: what they experienced, one JSON line per action, loss or read-back;
//! - [`experience`]: per trust and phase of its upgrade, and the blast radius (pure);
//! - [`store`]: the result, kept in the state database under the run's id.
//!
//! The traffic writes synthetic clinical notes, so it only ever runs against databases made by
//! `flotilla demo` (they carry its marker table): never against real patient records.

pub mod clinic;
pub mod experience;
pub mod record;
pub mod store;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;

pub use experience::{experience, timelines, HurtRule, TrafficReport};

/// Every note the traffic saves starts with `[MARKER trust #id]`, so it can be told apart from
/// the trust's own notes (and from the write probe's, whose ids are negative).
pub const MARKER: &str = "flotilla-traffic";

/// The line `flotilla traffic` prints on stdout once every trust's sessions are running.
pub const READY_LINE: &str = "ready";

/// Refuse any trust that is not a demo database: the traffic writes synthetic notes.
pub async fn check_demo_databases(trusts: &[crate::config::Trust]) -> Result<(), String> {
    for t in trusts {
        let mut db = crate::db::TrustDb::connect(t, crate::db::Access::ReadOnly)
            .await
            .map_err(|e| e.to_string())?;
        let tables = db.table_names().await;
        db.close().await;
        let tables = tables.map_err(|e| e.to_string())?;
        if !tables.iter().any(|n| n == crate::demo::MARKER_TABLE) {
            return Err(format!(
                "trust '{}': {} is not a demo database (no {} table); flotilla traffic writes synthetic clinical notes and only runs against databases made by `flotilla demo`",
                t.id,
                t.database.redacted(),
                crate::demo::MARKER_TABLE
            ));
        }
    }
    Ok(())
}

/// A `flotilla traffic` child process, started by `demo --traffic`.
pub struct Child {
    child: tokio::process::Child,
    stdout: Option<tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>>,
    /// Where it records.
    pub out: PathBuf,
}

/// How to start the traffic child.
pub struct Spawn<'a> {
    /// The inventory file (passed on as `--inventory`).
    pub inventory: &'a Path,
    /// The plan whose trusts to drive.
    pub plan: &'a Path,
    /// Actions per second per trust.
    pub rate: f64,
    /// Sessions per trust.
    pub sessions: usize,
    /// The record file.
    pub out: &'a Path,
    /// How long every trust's sessions run before it is ready (the pre-upgrade figures of
    /// the first wave come from this time).
    pub warm_up: Duration,
    /// How long to wait for it to be ready.
    pub ready_within: Duration,
}

impl Child {
    /// Start the traffic (this same binary, `traffic --until-stdin-closes`) and wait until it
    /// says every trust's sessions are running. It stops when its stdin closes: when this
    /// process calls [`Child::stop`], or dies.
    pub async fn spawn(s: &Spawn<'_>) -> Result<Child, String> {
        let exe = std::env::current_exe().map_err(|e| {
            format!("cannot find the flotilla executable to start the traffic: {e}")
        })?;
        let mut child = tokio::process::Command::new(exe)
            .arg("--inventory")
            .arg(s.inventory)
            .arg("--no-progress")
            .arg("traffic")
            .arg("--plan")
            .arg(s.plan)
            .arg("--rate")
            .arg(s.rate.to_string())
            .arg("--sessions")
            .arg(s.sessions.to_string())
            .arg("--out")
            .arg(s.out)
            .arg("--until-stdin-closes")
            .arg("--warm-up")
            .arg(format!("{}ms", s.warm_up.as_millis()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start the traffic: {e}"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or("cannot read the traffic's output")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(s.ready_within, async {
            while let Some(line) = lines.next_line().await.map_err(|e| e.to_string())? {
                if line.trim() == READY_LINE {
                    return Ok(());
                }
            }
            Err("the traffic stopped before it was ready (see its error above)".to_string())
        })
        .await
        .map_err(|_| {
            format!(
                "the traffic was not ready within {}s",
                s.ready_within.as_secs()
            )
        });
        match ready {
            Ok(Ok(())) => Ok(Child {
                child,
                stdout: Some(lines),
                out: s.out.to_path_buf(),
            }),
            Ok(Err(e)) | Err(e) => {
                let _ = child.kill().await;
                Err(e)
            }
        }
    }

    /// Close its stdin (it stops starting actions, reads every saved note back, writes its last
    /// records) and wait for it to exit; kill it after `within`.
    pub async fn stop(mut self, within: Duration) -> Result<(), String> {
        drop(self.child.stdin.take());
        let drain = async {
            if let Some(mut lines) = self.stdout.take() {
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::debug!(line = %line, "traffic");
                }
            }
            self.child.wait().await
        };
        match tokio::time::timeout(within, drain).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(format!("the traffic exited with {status}")),
            Ok(Err(e)) => Err(format!("cannot wait for the traffic: {e}")),
            Err(_) => {
                let _ = self.child.kill().await;
                Err(format!(
                    "the traffic did not stop within {}s and was killed",
                    within.as_secs()
                ))
            }
        }
    }
}

/// Milliseconds since the Unix epoch of an RFC 3339 time.
fn epoch_ms(at: &str) -> Option<f64> {
    let t = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok()?;
    Some(t.unix_timestamp_nanos() as f64 / 1e6)
}

/// Read the traffic's record, place each action in its trust's phase from run `run_id`'s
/// journal, and keep the result under the run.
pub async fn import(
    state: &crate::journal::StateDb,
    run_id: &str,
    records: &Path,
    rule: HurtRule,
) -> Result<TrafficReport, String> {
    let records = record::read(records).map_err(|e| e.to_string())?;
    let events = state.events(run_id).await.map_err(|e| e.to_string())?;
    let stamped: Vec<(f64, &crate::engine::Event)> = events
        .iter()
        .filter_map(|e| epoch_ms(&e.at).map(|t| (t, &e.event)))
        .collect();
    let halted = stamped
        .iter()
        .find(|(_, e)| matches!(e, crate::engine::Event::Halted { .. }))
        .map(|(t, _)| *t);
    let report = experience(&records, &timelines(stamped.iter().copied()), halted, rule);
    store::save(state, run_id, &report)
        .await
        .map_err(|e| e.to_string())?;
    Ok(report)
}
