//! `--events FILE`: one JSON object per event, one per line, flushed as it happens.

use std::io::Write;
use std::sync::Mutex;

use crate::engine::{Event, EventSink};

/// Writes events as JSON lines.
pub struct JsonLines<W: Write + Send> {
    out: Mutex<W>,
}

impl<W: Write + Send> JsonLines<W> {
    /// Write to `out`.
    pub fn new(out: W) -> Self {
        JsonLines {
            out: Mutex::new(out),
        }
    }
}

impl<W: Write + Send> EventSink for JsonLines<W> {
    fn emit(&self, event: &Event) {
        let Ok(mut out) = self.out.lock() else { return };
        let mut line = serde_json::to_string(event)
            .unwrap_or_else(|e| format!("{{\"event\":\"unserialisable\",\"error\":\"{e}\"}}"));
        // Nothing to mask (the rule): the line as serialised, fields in their order. Else each
        // string is scrubbed in the parsed value, so the line stays valid JSON.
        if matches!(crate::secrets::scrub(&line), std::borrow::Cow::Owned(_)) {
            if let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&line) {
                crate::secrets::scrub_json(&mut v);
                line = v.to_string();
            }
        }
        if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
            tracing::warn!("could not write an event to the events file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_is_one_parseable_line_with_its_name() {
        let sink = JsonLines::new(Vec::new());
        sink.emit(&Event::WaveStarted {
            wave: "pilot".into(),
            index: 0,
            trusts: 2,
            to_upgrade: 2,
            concurrency: 2,
        });
        sink.emit(&Event::MigrationApplied {
            trust: "camden".into(),
            version: 9,
            duration_ms: 3,
        });
        let text = String::from_utf8(sink.out.into_inner().unwrap()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "wave_started");
        assert_eq!(lines[1]["trust"], "camden");
        assert_eq!(lines[1]["version"], 9);
    }
}
