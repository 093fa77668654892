//! The rollout engine: runs a planned rollout wave by wave against real trust databases and
//! reports every step as a typed [`Event`]. It never draws to the terminal itself: reporters
//! consume the events.

pub mod events;
pub mod policy;
pub mod run;

pub use events::{Event, EventSink, TrustOutcome};
pub use run::{preflight, Approver, Engine, Preflight, RunOutcome, RunSummary};
