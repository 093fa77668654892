//! The safety holes issue 10 found by adversarial use, kept closed: one module per area.
//!
//! * `unfinished_runs`: a halted, failed or crashed run waits for a person's decision (resume
//!   with --retry/--skip, or abandon); a new rollout refuses until then, the journal records who
//!   decided, and a trust whose upgrade was never judged is gated by the next run.
//! * `secrets`: no password in any output, from any connection string form.
//! * `durations`: no duration switches a protection off; preflight honours the lock timeout.
//! * `state_db`: a full disk is exit 9, `status`/`report` change nothing and read a read-only
//!   mount, paths that are directories say so.
//! * `files`: migration and configuration files are regular files of bounded size, named
//!   exactly.
//! * `messages`: plain error texts, escaped control characters, right lines, right user.
//! * `fuzz`: property tests of the YAML and migration-file loaders (bounded case counts).

mod durations;
mod files;
mod fuzz;
mod messages;
mod secrets;
mod state_db;
mod unfinished_runs;

use crate::common::{Outcome, Workspace};

/// Two pilot trusts, two of the first twelve, one more London trust, one in the South: every
/// wave of plans/rio-5.1.yaml has a trust.
pub const SMALL_ESTATE: &[&str] = &[
    "camden",
    "islington",
    "barnet",
    "bexley",
    "brent",
    "kent-community",
];

pub const PLAN: &str = "plans/rio-5.1.yaml";

/// A workspace of [`SMALL_ESTATE`] whose soak is quick.
pub fn small_workspace() -> Workspace {
    let ws = Workspace::new();
    ws.keep_trusts(SMALL_ESTATE);
    ws.replace(
        PLAN,
        "soak: { rounds: 2, interval: 1s }",
        "soak: { rounds: 1, interval: 200ms }",
    );
    ws
}

/// The newest run in `status --format json`.
pub fn latest_run(ws: &Workspace) -> String {
    let out = ws.run(&["status", "--format", "json"]);
    out.success();
    out.json()["runs"][0]["run_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no run in status\n{}", out.describe()))
        .to_string()
}

/// The default state database of a workspace, read behind flotilla's back.
pub fn state(ws: &Workspace) -> crate::common::Db {
    crate::common::Db::Sqlite(ws.path(".flotilla/state.db"))
}

/// Bodies of every `event` of the journal, in order.
pub fn events_named(ws: &Workspace, event: &str) -> Vec<serde_json::Value> {
    state(ws)
        .query_strings(&format!(
            "SELECT body FROM flotilla_events WHERE event = '{event}' ORDER BY run_id, seq"
        ))
        .iter()
        .map(|b| serde_json::from_str(b).expect("event body is JSON"))
        .collect()
}

/// `user@host` as flotilla records it: the name of this process's uid, and the host name.
pub fn operator() -> String {
    let user = std::process::Command::new("id")
        .arg("-un")
        .output()
        .expect("run id -un");
    format!(
        "{}@{}",
        String::from_utf8_lossy(&user.stdout).trim(),
        crate::common::this_host()
    )
}

/// Each trust's version from `status`.
pub fn versions(ws: &Workspace) -> std::collections::BTreeMap<String, i64> {
    ws.status()
        .into_iter()
        .map(|(id, t)| (id, t["version"].as_i64().unwrap_or(-1)))
        .collect()
}

/// Neither output holds `secret`, in any case.
#[track_caller]
pub fn never_shows(out: &Outcome, secret: &str) {
    let lower = secret.to_ascii_lowercase();
    assert!(
        !out.stdout.to_ascii_lowercase().contains(&lower)
            && !out.stderr.to_ascii_lowercase().contains(&lower),
        "{secret:?} was shown\n{}",
        out.describe()
    );
}
