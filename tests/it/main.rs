//! flotilla's integration tests, as ONE test binary (in the style of ripgrep's
//! `tests/tests.rs`): every module below was a test binary of its own, each linked against
//! sqlx and the whole library, and linking them was the CI's slowest step.
//!
//! Run one module with `scripts/test --test it -- MODULE::` (e.g. `-- gate_detection::`); one
//! test with its path (`-- cli::validate_`). The harness is [`common`].
//!
//! All modules share one process and run concurrently on the test threads: anything that used
//! to rely on a process of its own is made explicit in [`common`] ([`common::serial`] for
//! flotilla runs, [`common::alone`] for the tests that measure timing or load, unique database
//! names per call across the binary, environment passed to each child `Command`, never set on
//! the process).

mod common;

mod adopt;
mod bad_input;
mod bad_input_safety;
mod cli;
mod crash;
mod estate_lint;
mod gate_detection;
mod health_gate;
mod interrupt;
mod layout;
mod layouts;
mod lease;
mod lint;
mod pg_restart;
mod probe_safety;
mod real_history;
mod rehearse;
mod repair_rollback;
mod reports;
mod rollout_postgres;
mod rollout_sqlite;
mod state_postgres;
mod traffic;
mod workers;
mod workers_core;
mod workload;
