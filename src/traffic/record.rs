//! The traffic's own record: one JSON object per line, written as things happen, so that what
//! the simulated clinicians experienced can be read back (and checked) independently of the
//! run's journal. Times are wall-clock milliseconds since the Unix epoch (the journal's clock).

use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// What a simulated clinician does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionKind {
    /// Open a patient's record: demographics, referral and appointment counts, latest notes.
    OpenRecord,
    /// A clinician's caseload: their upcoming appointments with patient names.
    Caseload,
    /// Save a clinical note (a committed INSERT, verified later by reading it back).
    SaveNote,
}

impl ActionKind {
    /// Every kind, in report order.
    pub const ALL: [ActionKind; 3] = [
        ActionKind::OpenRecord,
        ActionKind::Caseload,
        ActionKind::SaveNote,
    ];

    /// Its name in records and reports.
    pub fn name(self) -> &'static str {
        match self {
            ActionKind::OpenRecord => "open-record",
            ActionKind::Caseload => "caseload",
            ActionKind::SaveNote => "save-note",
        }
    }
}

/// How a saved note was found wanting when read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Loss {
    /// The committed note was not there.
    Missing,
    /// It was there with a different body.
    Changed,
}

/// One line of the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "kebab-case")]
pub enum Record {
    /// The traffic started: its settings and the trusts it drives.
    Started {
        /// Actions per second per trust (the target).
        rate: f64,
        /// Concurrent staff sessions per trust.
        sessions: usize,
        /// The trusts.
        trusts: Vec<String>,
        /// The marker every saved note's body starts with (`[MARKER ...]`).
        marker: String,
        /// Seed of the random choices.
        seed: u64,
        /// When.
        at_ms: f64,
    },
    /// A trust could not be set up (its sessions did not start) or a session could not
    /// reconnect: the reason, as the traffic saw it.
    Problem {
        /// The trust.
        trust: String,
        /// What went wrong.
        error: String,
        /// When.
        at_ms: f64,
    },
    /// Every trust's sessions have run for the warm-up time.
    Ready {
        /// When.
        at_ms: f64,
    },
    /// One action of one simulated clinician.
    Action {
        /// The trust.
        trust: String,
        /// What it was.
        kind: ActionKind,
        /// When it started.
        at_ms: f64,
        /// How long it took, ms (until the answer or the error).
        ms: f64,
        /// Why it failed (absent: it succeeded).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// The note's id (saves).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<i64>,
        /// The gate's control query (no table), timed right after on the same connection, ms:
        /// how slow the machine was at that moment, whatever the release does.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        control_ms: Option<f64>,
    },
    /// A note whose save had committed was read back and was not right.
    Vanished {
        /// The trust.
        trust: String,
        /// The note's id.
        note: i64,
        /// Missing or changed.
        how: Loss,
        /// When its save started.
        saved_at_ms: f64,
        /// When it was found wanting.
        at_ms: f64,
    },
    /// A note found wanting earlier read back right again (e.g. after a rollback restored it).
    Restored {
        /// The trust.
        trust: String,
        /// The note's id.
        note: i64,
        /// When.
        at_ms: f64,
    },
    /// The final read-back of every note a trust saved, when the traffic stopped.
    Verified {
        /// The trust.
        trust: String,
        /// Notes whose save committed.
        saved: u64,
        /// Of those, not there (or changed) at the end.
        missing: u64,
        /// Why the final read-back could not be done, if it could not.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// When.
        at_ms: f64,
    },
    /// The traffic stopped.
    Finished {
        /// When.
        at_ms: f64,
    },
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or_default()
}

/// Write records as JSON lines.
pub fn write_line(out: &mut impl Write, record: &Record) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, record).map_err(std::io::Error::other)?;
    out.write_all(b"\n")
}

/// Why a record file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read the traffic record {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: not a traffic record: {message}")]
    Parse {
        path: String,
        line: usize,
        message: String,
    },
}

impl ReadError {
    /// The documented exit code: flotilla's own record cannot be read back (1).
    pub fn exit_code(&self) -> crate::exit_codes::ExitCode {
        crate::exit_codes::ExitCode::Internal
    }
}

/// Read a record file back.
pub fn read(path: &Path) -> Result<Vec<Record>, ReadError> {
    let shown = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| ReadError::Io {
        path: shown.clone(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| ReadError::Io {
            path: shown.clone(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line).map_err(|e| ReadError::Parse {
            path: shown.clone(),
            line: i + 1,
            message: e.to_string(),
        })?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_as_json_lines() {
        let records = vec![
            Record::Action {
                trust: "camden".into(),
                kind: ActionKind::SaveNote,
                at_ms: 1.5,
                ms: 3.25,
                error: None,
                note: Some(6001),
                control_ms: Some(0.05),
            },
            Record::Action {
                trust: "camden".into(),
                kind: ActionKind::OpenRecord,
                at_ms: 2.0,
                ms: 5000.0,
                error: Some("database is locked".into()),
                note: None,
                control_ms: None,
            },
            Record::Vanished {
                trust: "camden".into(),
                note: 6001,
                how: Loss::Missing,
                saved_at_ms: 1.5,
                at_ms: 9.0,
            },
        ];
        let mut buf = Vec::new();
        for r in &records {
            write_line(&mut buf, r).unwrap();
        }
        let text = String::from_utf8(buf).unwrap();
        assert!(text.starts_with(r#"{"record":"action","trust":"camden","kind":"save-note""#));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        std::fs::write(&path, &text).unwrap();
        assert_eq!(read(&path).unwrap(), records);
        std::fs::write(&path, "{\"record\":\"bogus\"}\n").unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("t.jsonl:1:"), "{e}");
    }
}
