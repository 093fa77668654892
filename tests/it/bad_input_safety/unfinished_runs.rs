//! A halted or unfinished run is a decision waiting for a person. Before issue 10, running the
//! same `rollout` again after a halt went straight past the gate (the damaged trust became its
//! own baseline), and after a SIGKILL before a verdict a fresh rollout took the lease over and
//! never checked the trust at all.

use std::time::{Duration, Instant};

use super::{events_named, latest_run, operator, small_workspace, state, versions, PLAN};
use crate::common::{create_databases, next_version, serial, url_with_db, Db, Spawned, Workspace};

/// Remove the fault `demo --inject-regression` planted in camden's own migrations.
fn remove_planted_fault(ws: &Workspace) {
    let dir = ws.path("estate/local/camden");
    let mut removed = 0;
    for e in std::fs::read_dir(&dir).expect("the planted fault's directory") {
        let p = e.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .contains("injected")
        {
            std::fs::remove_file(&p).unwrap();
            removed += 1;
        }
    }
    assert!(removed > 0, "no planted fault in {}", dir.display());
}

/// A halted pilot: lost writes in camden, which is rolled back; exit 3.
fn halted_pilot(ws: &Workspace) -> String {
    ws.run(&[
        "demo",
        "--patients",
        "100",
        "--inject-regression",
        "camden:lost-writes",
    ])
    .code(3)
    .stderr_contains("camden");
    latest_run(ws)
}

#[test]
fn after_a_halt_rollout_refuses_naming_the_run_and_resume_skip_lets_it_proceed() {
    let ws = small_workspace();
    let run = halted_pilot(&ws);
    let before = versions(&ws);

    let out = ws.run(&["rollout", PLAN, "--yes"]);
    out.code(2)
        .stderr_contains(&run)
        .stderr_contains("HALTED")
        .stderr_contains("camden: write probe: data not reliably saved")
        .stderr_contains(&format!("flotilla resume {run} --retry camden"))
        .stderr_contains(&format!("flotilla resume {run} --skip camden"))
        .stderr_contains(&format!("flotilla abandon {run} --reason"))
        .stderr_contains("nothing was changed");
    assert_eq!(versions(&ws), before, "the refused rollout changed a trust");
    assert_eq!(
        state(&ws).query_i64("SELECT COUNT(*) FROM flotilla_runs"),
        1,
        "the refused rollout was recorded as a run"
    );
    // Another plan is refused too when it shares a trust with the halted run, and not when
    // it does not.
    let target = crate::common::release_version("5.1");
    ws.write_target_plan(
        "other.yaml",
        target,
        &[("w", vec!["islington".into(), "brent".into()])],
    );
    ws.run(&["rollout", "plans/other.yaml", "--yes"])
        .code(2)
        .stderr_contains(&run)
        .stderr_contains("it touched islington, which this plan includes");
    ws.write_target_plan("brent.yaml", target, &[("w", vec!["brent".into()])]);
    ws.run(&["rollout", "plans/brent.yaml", "--yes"]).success();
    assert_eq!(versions(&ws)["brent"], 130);
    // What never touches the estate is not blocked: a dry-run (no journal), and a rehearsal
    // (its own journal, on copies), which gives the exit code the real run would: camden's
    // fault is still there.
    ws.run(&["rollout", PLAN, "--dry-run"]).success();
    ws.run(&["rollout", PLAN, "--rehearse"])
        .code(3)
        .stderr_contains("camden")
        .stderr_contains("rehearsal");
    ws.run(&["status"])
        .success()
        .stdout_contains("HALTED")
        .stdout_contains("waiting for a decision");

    ws.run(&["resume", &run, "--skip", "camden", "--yes"])
        .success()
        .stdout_contains("left out of the rest of the run");
    let decided = events_named(&ws, "trust_decided");
    assert_eq!(decided.len(), 1, "{decided:?}");
    assert_eq!(decided[0]["trust"], "camden");
    assert_eq!(decided[0]["decision"], "skip");
    assert_eq!(decided[0]["by"], operator().as_str());
    assert_eq!(
        events_named(&ws, "run_resumed")[0]["by"],
        operator().as_str()
    );
    let v = versions(&ws);
    assert_eq!(
        v["camden"], 80,
        "camden was skipped: still rolled back to 5.0"
    );
    for id in ["islington", "barnet", "bexley", "brent", "kent-community"] {
        assert_eq!(v[id], 130, "{id} was upgraded by the resumed run");
    }

    // Decided: a new rollout proceeds, and camden, still faulty, is gated again (not waved
    // through because it was skipped once).
    let again = ws.run(&["rollout", PLAN, "--yes"]);
    again
        .code(3)
        .stderr_contains("camden")
        .stderr_contains("data not reliably saved");
    assert_ne!(latest_run(&ws), run, "a new run was started");
    assert_eq!(versions(&ws)["camden"], 80, "camden rolled back again");
}

#[test]
fn abandon_is_recorded_with_who_and_why_and_then_a_new_rollout_proceeds() {
    let ws = small_workspace();
    let run = halted_pilot(&ws);
    ws.run(&["rollout", PLAN, "--yes"])
        .code(2)
        .stderr_contains(&run);

    // The decision must be typed: the run named, a reason given.
    ws.run(&["abandon", &run])
        .code(2)
        .stderr_contains("--reason");
    ws.run(&["abandon", &run, "--reason", "  "])
        .code(2)
        .stderr_contains("--reason");
    ws.run(&["abandon", "20200101T000000.000-1", "--reason", "x"])
        .code(2)
        .stderr_contains("no run '20200101T000000.000-1'");

    remove_planted_fault(&ws);
    let reason = "camden's local migration dropped writes; removed it (INC-4711)";
    ws.run(&["abandon", &run, "--reason", reason])
        .success()
        .stdout_contains(&format!("abandoned by {}", operator()));
    let abandoned = events_named(&ws, "run_abandoned");
    assert_eq!(abandoned.len(), 1);
    assert_eq!(abandoned[0]["by"], operator().as_str());
    assert_eq!(abandoned[0]["reason"], reason);
    assert_eq!(abandoned[0]["was"], "halted");
    assert_eq!(
        state(&ws).query_strings("SELECT status FROM flotilla_runs"),
        vec!["abandoned".to_string()]
    );
    ws.run(&["status"])
        .success()
        .stdout_contains("ABANDONED")
        .stdout_contains(reason);
    ws.run(&["resume", &run, "--yes"])
        .code(2)
        .stderr_contains("abandoned");
    ws.run(&["abandon", &run, "--reason", "twice"])
        .code(2)
        .stderr_contains("nothing to abandon");

    ws.run(&["rollout", PLAN, "--yes"]).success();
    assert!(
        versions(&ws).values().all(|v| *v == 130),
        "every trust at 5.1"
    );
}

/// An invariant that takes seconds once the migration under test has created `gate_marker`
/// and none before: the window between camden's upgrade and its verdict, to kill the run in.
const SLOW_AFTER_UPGRADE: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < (SELECT CASE WHEN EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'gate_marker') THEN 4000000 ELSE 1 END)) SELECT COUNT(*) * 0 FROM c";

fn gated_plan(version: i64, health: bool) -> String {
    let mut text = format!(
        "name: crash-gate\ntarget_version: {version}\nwaves:\n  - name: pilot\n    trusts: [camden]\n  - name: rest\n    trusts: [islington]\non_regression: halt\n"
    );
    if health {
        text.push_str(&format!(
            "health:\n  integrity:\n    clinical_note: [id, patient_id, body]\n  invariants:\n    - name: slow-after-upgrade\n      sql: \"{SLOW_AFTER_UPGRADE}\"\n      expect: 0\n"
        ));
    }
    text
}

#[test]
fn a_run_killed_before_its_verdict_is_crashed_refuses_a_new_rollout_and_its_trust_is_gated_after_abandon(
) {
    let ws = Workspace::new();
    ws.keep_trusts(&["camden", "islington"]);
    ws.run(&[
        "demo",
        "--seed-only",
        "--patients",
        "40",
        "--seed-release",
        "5.1",
    ])
    .success();
    let (version, prefix) = next_version();
    ws.write(
        format!("migrations/{prefix}_gate_marker.up.sql"),
        "CREATE TABLE gate_marker (id INTEGER PRIMARY KEY);\n",
    );
    ws.write(
        format!("migrations/{prefix}_gate_marker.down.sql"),
        "DROP TABLE gate_marker;\n",
    );
    ws.write("plans/gate.yaml", gated_plan(version, true));
    ws.write("plans/nogate.yaml", gated_plan(version, false));

    // Kill the rollout once camden is upgraded, while its post-upgrade check runs.
    let camden = ws.db("camden");
    let killed = {
        let _serial = serial();
        let run = Spawned::start(&ws, &["rollout", "plans/gate.yaml", "--yes"]);
        let deadline = Instant::now() + Duration::from_secs(120);
        while !camden.applied_versions().contains(&version) {
            assert!(Instant::now() < deadline, "camden was never upgraded");
            std::thread::sleep(Duration::from_millis(20));
        }
        let (out, running) = run.kill();
        assert!(
            running,
            "the rollout ended before it could be killed\n{}",
            out.describe()
        );
        out
    };
    let verdicts = state(&ws).query_i64(
        "SELECT COUNT(*) FROM flotilla_events WHERE event = 'health_verdict' AND trust = 'camden'",
    );
    assert_eq!(
        verdicts,
        0,
        "the kill landed after camden's verdict: make the invariant slower\n{}",
        killed.describe()
    );
    let run = latest_run(&ws);
    ws.run(&["status"])
        .success()
        .stdout_contains(&format!("{run}  crash-gate  CRASHED"));
    assert_eq!(
        ws.status()
            .get("camden")
            .and_then(|t| t["version"].as_i64()),
        Some(version),
        "camden is upgraded but was never judged"
    );

    // A fresh rollout takes the dead run's lease and refuses: the crashed run is named.
    ws.run(&["rollout", "plans/gate.yaml", "--yes"])
        .code(2)
        .stderr_contains(&run)
        .stderr_contains("CRASHED")
        .stderr_contains(&format!("flotilla resume {run}"));
    ws.run(&["status"]).success().stdout_contains("LEASE: free");

    // What the never-judged upgrade did to camden's data.
    camden.exec(
        "DELETE FROM clinical_note WHERE id IN (SELECT id FROM clinical_note ORDER BY id LIMIT 3)",
    );
    ws.run(&[
        "abandon",
        &run,
        "--reason",
        "the run was killed; starting over",
    ])
    .success()
    .stdout_contains("camden has an upgrade in this run that was never judged");
    assert_eq!(events_named(&ws, "run_abandoned")[0]["was"], "crashed");

    // A plan that cannot judge camden may not pass it by.
    ws.run(&["rollout", "plans/nogate.yaml", "--yes"])
        .code(2)
        .stderr_contains("trust 'camden'")
        .stderr_contains("never judged")
        .stderr_contains("no health section");

    // A rehearsal predicts it: camden's copy is judged against the same baseline.
    ws.run(&["rollout", "plans/gate.yaml", "--rehearse"])
        .code(3)
        .stderr_contains("integrity of 'clinical_note'");
    // The gated plan judges camden against the baseline recorded before its upgrade: the lost
    // notes are found, and the wave halts before islington.
    let out = ws.run(&["rollout", "plans/gate.yaml", "--yes"]);
    out.code(3)
        .stderr_contains("camden")
        .stderr_contains("integrity of 'clinical_note'");
    let carried = events_named(&ws, "baseline_carried");
    assert_eq!(carried.len(), 1, "{carried:?}");
    assert_eq!(carried[0]["trust"], "camden");
    assert_eq!(carried[0]["from_run"], run.as_str());
    assert!(
        !ws.db("islington").applied_versions().contains(&version),
        "islington is in the next wave and must not be touched"
    );
}

#[test]
fn postgres_estate_and_state_a_halted_run_blocks_until_abandoned() {
    let mut ws = small_workspace();
    let names: Vec<String> = super::SMALL_ESTATE.iter().map(|s| s.to_string()).collect();
    let mut all = names.clone();
    all.push("state".into());
    let dbs = create_databases("unfinished", &all);
    let mut estate = dbs.clone();
    estate.names.remove("state");
    ws.write_pg_inventory(&estate);
    ws.edit_inventory(|inv| {
        inv["defaults"] = serde_json::json!({ "local_migrations": "estate/local/{id}" });
    });
    let state_url = url_with_db(&dbs.admin_url, &dbs.names["state"]);
    let (state_url, pw) = crate::common::split_password(&state_url);
    if let Some(pw) = pw {
        ws.set_env("FLOTILLA_STATE_PASSWORD", &pw);
    }
    let with_state = |args: &[&str]| -> Vec<String> {
        let mut v = vec!["--state".to_string(), state_url.clone()];
        v.extend(args.iter().map(|s| s.to_string()));
        v
    };
    let run_with = |args: &[&str]| {
        let v = with_state(args);
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        ws.run(&refs)
    };
    run_with(&[
        "demo",
        "--patients",
        "100",
        "--inject-regression",
        "camden:lost-writes",
    ])
    .code(3)
    .stderr_contains("camden");
    let status = run_with(&["status", "--format", "json"]);
    status.success();
    let run = status.json()["runs"][0]["run_id"]
        .as_str()
        .expect("a run in the Postgres state database")
        .to_string();
    run_with(&["rollout", PLAN, "--yes"])
        .code(2)
        .stderr_contains(&run)
        .stderr_contains("HALTED");
    remove_planted_fault(&ws);
    run_with(&["abandon", &run, "--reason", "fault removed"])
        .success()
        .stdout_contains("abandoned by");
    let recorded = Db::Postgres(url_with_db(&dbs.admin_url, &dbs.names["state"]))
        .query_strings("SELECT status || ' ' || reason FROM flotilla_runs");
    assert_eq!(recorded.len(), 1);
    assert!(
        recorded[0].starts_with(&format!(
            "abandoned abandoned by {}: fault removed",
            operator()
        )),
        "{recorded:?}"
    );
    run_with(&["rollout", PLAN, "--yes"]).success();
}
