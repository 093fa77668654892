//! The rollout engine: runs a planned rollout wave by wave against real trust databases and
//! reports every step as a typed [`Event`]. It never draws to the terminal itself: reporters
//! consume the events.
//!
//! By phase: `preflight` (read every trust, plan, draw probe parameters), `run` (the engine
//! and a whole run), `wave` (the wave loop and the policy's rollbacks), `watch` (gate windows,
//! confirmation, soak, background checks), `migrate` (a trust's migrations and retries),
//! `rollback` (the gate's and the operator's), `outcome` (how a run ends); `policy` (pure) and
//! `events` (the typed events); `jobs` and `remote` (the seam through which workers run the
//! per-trust work of `rollout --workers`).

pub mod events;
pub mod jobs;
mod migrate;
pub mod outcome;
pub mod policy;
pub mod preflight;
mod remote;
pub mod rollback;
pub mod run;
mod watch;
mod wave;

pub use crate::journal::replay::{RecordedBaseline, Resumed};
pub use events::{Event, EventSink, TrustOutcome};
pub use outcome::{RunControl, RunOutcome, RunSummary, StopReason, TrustResult};
pub use preflight::{preflight, read_state, read_state_within, Preflight, READ_CONCURRENCY};
pub use rollback::RolledBack;
pub use run::{Approver, Engine};
