//! The state database: a full disk under it is the environment (exit 9), not "internal error,
//! a bug" (exit 1); `status` and `report` read it without writing (an empty file stays empty,
//! a read-only mount is fine); a path that is a directory says so.
//!
//! The full and read-only file systems are real: a tmpfs of a few hundred KiB, and a read-only
//! bind mount, each in a private mount namespace (`unshare`) that disappears with the process.
//! As root (CI) that needs nothing more; otherwise `unshare --map-root-user` (user namespaces).

use std::process::Command;

use super::{latest_run, small_workspace, PLAN};
use crate::common::{run_captured, serial, Outcome, Workspace, BIN};

/// Run `flotilla ARGS` in the workspace inside a private mount namespace, after the shell
/// `setup` (which sees the workspace as `$PWD`).
fn in_private_mounts(ws: &Workspace, setup: &str, args: &[&str]) -> Outcome {
    let root = is_root();
    let mut cmd = Command::new("unshare");
    if !root {
        cmd.arg("--map-root-user");
    }
    cmd.args(["--mount", "sh", "-c"])
        .arg(format!("set -e; {setup}; exec \"$0\" \"$@\""))
        .arg(BIN)
        .arg("--no-progress")
        .args(args);
    // The environment `Workspace::command` gives flotilla (its removals too).
    cmd.current_dir(ws.root());
    for (k, v) in ws.command(&[]).get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.stdin(std::process::Stdio::null());
    let _serial = serial();
    run_captured(
        &mut cmd,
        format!(
            "unshare --mount sh -c '{setup}; flotilla {}'",
            args.join(" ")
        ),
    )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[test]
fn a_full_disk_under_the_state_database_is_exit_9_not_a_bug() {
    let ws = small_workspace();
    ws.run(&["demo", "--seed-only", "--patients", "30"])
        .success();
    std::fs::create_dir_all(ws.path("full")).unwrap();
    let out = in_private_mounts(
        &ws,
        "mount -t tmpfs -o size=256k tmpfs full",
        &["--state", "full/state.db", "rollout", PLAN, "--yes"],
    );
    out.code(9)
        .stderr_contains("state database")
        .stderr_contains_nocase("full");
    assert!(
        !out.stderr.contains("internal error") && !out.stderr.contains("a bug"),
        "a full disk is not a bug\n{}",
        out.describe()
    );
}

#[test]
fn status_and_report_change_nothing_and_read_a_state_database_on_a_read_only_mount() {
    let ws = small_workspace();
    ws.run(&["demo", "--seed-only", "--patients", "20"])
        .success();
    // An empty state file: no runs, and still empty afterwards (no schema written into it).
    std::fs::create_dir_all(ws.path(".flotilla")).unwrap();
    std::fs::write(ws.path(".flotilla/state.db"), b"").unwrap();
    ws.run(&["status"])
        .success()
        .stdout_contains("RUNS: none recorded");
    ws.run(&["report", "latest"])
        .code(2)
        .stderr_contains("no run has been recorded");
    ws.run(&["resume", "--yes"])
        .code(2)
        .stderr_contains("no run to resume");
    assert_eq!(
        std::fs::metadata(ws.path(".flotilla/state.db"))
            .unwrap()
            .len(),
        0,
        "status wrote into an empty state file"
    );
    std::fs::remove_file(ws.path(".flotilla/state.db")).unwrap();

    // Without its health section the rollout is quick; what is read back is the point.
    let plan = ws.read(PLAN);
    let ungated = plan.split("\nhealth:").next().unwrap().to_string();
    ws.write(PLAN, ungated);
    ws.run(&["rollout", PLAN, "--yes"]).success();
    let run = latest_run(&ws);
    let read_only = "mount --bind .flotilla .flotilla; mount -o remount,ro,bind .flotilla";
    in_private_mounts(&ws, read_only, &["status"])
        .success()
        .stdout_contains(&run)
        .stdout_contains("COMPLETED");
    in_private_mounts(&ws, read_only, &["report", &run, "--junit", "out.xml"])
        .success()
        .stdout_contains(&run);
    assert!(ws.exists("out.xml"));
    // Recording a run there is the environment's failure: exit 9, saying read-only.
    in_private_mounts(&ws, read_only, &["rollout", PLAN, "--yes"])
        .code(9)
        .stderr_contains(".flotilla is on a read-only file system");
}

#[test]
fn paths_that_are_directories_say_so() {
    let ws = Workspace::new();
    std::fs::create_dir_all(ws.path("state-dir")).unwrap();
    ws.run(&["--state", "state-dir", "status"])
        .code(2)
        .stderr_contains("is a directory");
    ws.keep_trusts(super::SMALL_ESTATE);
    std::fs::create_dir_all(ws.path("estate/camden.db")).unwrap();
    let out = ws.run(&["plan", PLAN]);
    out.code(2)
        .stderr_contains("trust 'camden'")
        .stderr_contains("is a directory, not an SQLite database file");
    assert!(
        !out.stderr.contains("camden.db does not exist"),
        "{}",
        out.describe()
    );
}
