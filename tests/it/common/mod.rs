//! Test harness for flotilla's integration tests (in the style of ripgrep's `tests/util.rs`),
//! one module per concern, everything re-exported here (`use crate::common::{...}`):
//!
//! * [`workspace`]: [`Workspace`], a temporary directory holding copies of the repository's
//!   `trusts.yaml`, `plans/` and `migrations/`; tests edit files in it and run the real
//!   `flotilla` binary there with [`Workspace::run`] (or [`Spawned`] in the background).
//! * [`outcome`]: [`Outcome`], what a run did, with assertion helpers that print the whole
//!   command, exit code, stdout and stderr when they fail.
//! * [`yaml`]: the repo's YAML files read as JSON values and written back.
//! * [`catalog`]: facts of the repo's migrations/ (versions, names, prefixes).
//! * [`db`]: [`Db`], direct access to a trust's database (SQLite file or Postgres database), to
//!   check what flotilla did (or did not do) independently of flotilla's own reporting.
//! * [`postgres`]: [`pg_admin_url`] (from `FLOTILLA_TEST_PG_URL`, set by `scripts/test`),
//!   [`create_databases`] and [`Workspace::write_pg_inventory`].
//! * [`crash`]: the crash harness's generator, seed and checks.

use std::path::PathBuf;

mod catalog;
mod crash;
mod db;
mod outcome;
mod postgres;
mod workspace;
mod yaml;

pub use catalog::*;
pub use crash::*;
pub use db::*;
pub use outcome::*;
pub use postgres::*;
pub use workspace::*;
pub use yaml::*;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_flotilla");

/// The repository root (where trusts.yaml, plans/ and migrations/ live).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One flotilla process at a time per test binary (cargo runs the binaries one after the
/// other). Rollouts pass a health gate that compares query latencies before and after each
/// wave; two rollouts of parallel tests competing for the CPU make those latencies noisy enough
/// to trip the gate, so concurrent runs would make the suite flaky.
static RUN_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Hold [`RUN_LOCK`]: flotilla runs, and heavy set-up such as creating 56 Postgres databases,
/// do not overlap within a test binary, so one test's load does not disturb another test's
/// latency measurements.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    RUN_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
