//! Timed samples of a latency probe: what the probes measure and the gate's rules read.

use serde::{Deserialize, Serialize};

/// Timed samples of one latency probe, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencySamples {
    /// One duration per execution.
    pub ms: Vec<f64>,
    /// Rows returned over all executions.
    pub rows: usize,
    /// The control query, timed right after each execution on the same connection: it reads
    /// no table, so no migration changes it, and its slowdown between two windows is the
    /// machine's (CPU or I/O contention), not the release's.
    #[serde(default)]
    pub control_ms: Vec<f64>,
}
