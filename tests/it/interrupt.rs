//! A second Ctrl-C abandons the migration transaction in flight: Postgres rolls it back, the
//! journal records the abort, and `resume` finishes the run.

use std::process::Stdio;
use std::time::Duration;

use crate::common::{create_databases, next_version, serial, Workspace};

fn sigint(pid: u32) {
    let ok = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill -INT {pid}");
}

#[test]
fn a_second_interrupt_rolls_the_transaction_in_flight_back_and_is_recorded() {
    let mut ws = Workspace::new();
    let ids = ["camden", "islington", "barnet", "brent", "kent-community"];
    ws.keep_trusts(&ids);
    let names: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    let dbs = create_databases("interrupt", &names);
    ws.write_pg_inventory(&dbs);
    ws.run(&[
        "demo",
        "--seed-only",
        "--patients",
        "30",
        "--seed-release",
        "5.1",
    ])
    .success();
    let (version, prefix) = next_version();
    ws.write(
        format!("migrations/{prefix}_long_step.up.sql"),
        "CREATE TABLE long_step (id BIGINT PRIMARY KEY);\nSELECT pg_sleep(4);\n",
    );
    ws.write(
        format!("migrations/{prefix}_long_step.down.sql"),
        "DROP TABLE long_step;\n",
    );
    ws.write_target_plan(
        "long.yaml",
        version,
        &[("all", vec!["camden".into(), "islington".into()])],
    );

    let out = {
        let _serial = serial();
        let mut cmd = ws.command(&["rollout", "plans/long.yaml", "--yes"]);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = cmd.spawn().expect("spawn flotilla");
        std::thread::sleep(Duration::from_millis(1500));
        sigint(child.id());
        std::thread::sleep(Duration::from_millis(300));
        sigint(child.id());
        child.wait_with_output().expect("wait")
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "{stderr}");
    assert!(stderr.contains("flotilla resume"), "{stderr}");
    // The transaction in flight was rolled back: no table, no tracking row.
    assert!(!ws.db("camden").table_exists("long_step"));
    assert!(!ws.db("camden").applied_versions().contains(&version));
    let db = recorded_interrupt(&ws);
    assert_eq!(db.0, "interrupted", "run status");
    assert!(db.1 >= 1, "the abort is in the event log");

    ws.run(&["resume", "--yes"]).success();
    for id in ["camden", "islington"] {
        assert!(ws.db(id).applied_versions().contains(&version), "{id}");
        assert!(ws.db(id).table_exists("long_step"), "{id}");
    }
}

/// (status of the run, number of `interrupted` events with abort = true), read through the
/// test harness's own SQLite access.
fn recorded_interrupt(ws: &Workspace) -> (String, i64) {
    let state = crate::common::Db::Sqlite(ws.path(".flotilla/state.db"));
    let status = state.query_strings("SELECT status FROM flotilla_runs");
    let aborts = state.query_i64(
        "SELECT COUNT(*) FROM flotilla_events WHERE event = 'interrupted' AND body LIKE '%\"abort\":true%'",
    );
    (status.join(","), aborts)
}
