//! The state database on Postgres (`--state postgres://…`), as a team shares it: runs are
//! recorded there, the lease there keeps a second operator's run out, and a password in the
//! URL is refused.

use std::process::Stdio;
use std::time::Duration;

use crate::common::{
    create_databases, pg_admin_url, run_unlocked, serial, split_password, url_with_db, Workspace,
    PG_PASSWORD_ENV,
};

#[test]
fn a_postgres_state_database_records_runs_and_holds_the_lease() {
    let mut ws = Workspace::new();
    ws.keep_trusts(&["camden", "islington", "barnet", "brent", "kent-community"]);
    ws.replace(
        "plans/rio-5.1.yaml",
        "soak: { rounds: 2, interval: 1s }",
        "soak: { rounds: 3, interval: 1s }",
    );
    let state = create_databases("state_pg", &["state".to_string()]);
    let (url, password) = split_password(&url_with_db(&pg_admin_url(), &state.names["state"]));
    if let Some(pw) = &password {
        ws.set_env("FLOTILLA_STATE_PASSWORD", pw);
        ws.set_env(PG_PASSWORD_ENV, pw);
    }
    ws.run(&["demo", "--seed-only", "--patients", "40"])
        .success();

    // Two operators start the same plan against the shared state database. The run lock is
    // held throughout: the second must start while the first still runs, not after waiting
    // for another test's run.
    let run_lock = serial();
    let mut cmd = ws.command(&["--state", &url, "rollout", "plans/rio-5.1.yaml", "--yes"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let first = cmd.spawn().expect("spawn the first rollout");
    std::thread::sleep(Duration::from_millis(1500));
    let second = run_unlocked(
        &ws,
        &["--state", &url, "rollout", "plans/rio-5.1.yaml", "--yes"],
    );
    second
        .code(6)
        .stderr_contains("locked by run")
        .stderr_contains(&format!("pid {}", first.id()));
    let first = first
        .wait_with_output()
        .expect("wait for the first rollout");
    drop(run_lock);
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );

    let v = ws
        .run(&["--state", &url, "status", "--format", "json"])
        .json();
    let runs = v["runs"].as_array().expect("runs");
    assert_eq!(
        runs.len(),
        1,
        "only the run that held the lease is recorded: {runs:?}"
    );
    assert_eq!(runs[0]["status"], "completed");
    assert!(v["lease"].is_null());
    assert!(
        !ws.exists(".flotilla/state.db"),
        "with --state postgres://… no local state file is written"
    );

    // A password in the URL is refused, and not echoed.
    let with_pw = url.replacen("postgres@", "postgres:s3cret-pw@", 1);
    let out = ws.run(&[
        "--state",
        &with_pw,
        "rollout",
        "plans/rio-5.1.yaml",
        "--yes",
    ]);
    out.code(2)
        .stderr_contains("FLOTILLA_STATE_PASSWORD")
        .output_lacks("s3cret-pw");
}
