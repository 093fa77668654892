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
//! * [`workers`]: [`PgEstate`] and [`Worker`], rollouts on `flotilla worker` processes sharing
//!   a Postgres state database.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

mod catalog;
mod crash;
mod db;
mod outcome;
mod postgres;
mod workers;
mod workspace;
mod yaml;

pub use catalog::*;
pub use crash::*;
pub use db::*;
pub use outcome::*;
pub use postgres::*;
pub use workers::*;
pub use workspace::*;
pub use yaml::*;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_flotilla");

/// The repository root (where trusts.yaml, plans/ and migrations/ live).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One flotilla process at a time in the test binary, whichever module runs it (the modules
/// share one process and run concurrently on the test threads). Rollouts pass a health gate
/// that compares query latencies before and after each wave; two rollouts of parallel tests
/// competing for the CPU make those latencies noisy enough to trip the gate, so concurrent runs
/// would make the suite flaky.
static RUN_LOCK: Mutex<()> = Mutex::new(());

/// Hold [`RUN_LOCK`]: flotilla runs, heavy set-up such as creating 56 Postgres databases, and
/// any load a test puts on its databases during its run (users, writers) do not overlap in the
/// test binary, so one test's load does not disturb another test's latency measurements.
pub fn serial() -> MutexGuard<'static, ()> {
    RUN_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One test at a time among those that measure timing or put load on the server for their
/// whole length (gate_detection, traffic, workload). Each used to be a binary of its own, which
/// cargo ran alone; in one process they would otherwise overlap each other's set-up and load.
static ALONE_LOCK: Mutex<()> = Mutex::new(());

/// Hold [`ALONE_LOCK`] for the whole test. Take it first thing, never while holding
/// [`serial`] (the one order that cannot deadlock: alone, then serial).
pub fn alone() -> MutexGuard<'static, ()> {
    ALONE_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
