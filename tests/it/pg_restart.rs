//! Postgres goes away in the middle of a wave. A restart within the retry budget: the trust is
//! retried from its real state and the run completes. An outage longer than that: the trust
//! is marked failed with the reason, the run stops cleanly, and `resume --retry` finishes it.
//!
//! It stops and restarts its server, so it runs on a spare cluster of its own
//! (`FLOTILLA_TEST_PG_RESTART_URL`, controlled by `FLOTILLA_TEST_PG_RESTART_CTL`, both set by
//! scripts/test): the other tests run concurrently in this process on the main cluster.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{
    create_databases_on, next_version, pg_restart_url, serial, version_prefix, Workspace,
};

const ESTATE: &[&str] = &["camden", "islington", "barnet", "brent"];

fn pg_ctl(action: &str) {
    let ctl = std::env::var("FLOTILLA_TEST_PG_RESTART_CTL").expect(
        "FLOTILLA_TEST_PG_RESTART_CTL is set by scripts/test (it controls the spare cluster)",
    );
    let status = std::process::Command::new(&ctl)
        .arg(action)
        .status()
        .expect("run FLOTILLA_TEST_PG_RESTART_CTL");
    assert!(status.success(), "{ctl} {action} failed");
}

/// Start `rollout` in the background, run `during` after `after`, then wait for it.
fn rollout_while(
    ws: &Workspace,
    args: &[&str],
    after: Duration,
    during: impl FnOnce(),
) -> crate::common::Outcome {
    let _serial = serial();
    let mut cmd = ws.command(args);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let started = Instant::now();
    let child = cmd.spawn().expect("spawn flotilla");
    std::thread::sleep(after.saturating_sub(started.elapsed()));
    during();
    let out = child.wait_with_output().expect("wait for flotilla");
    crate::common::Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        command: format!("rollout {args:?}"),
    }
}

fn at(ws: &Workspace, id: &str) -> i64 {
    ws.status()[id]["version"].as_i64().unwrap_or(-1)
}

#[test]
fn a_postgres_restart_mid_wave_is_retried_and_a_long_outage_fails_cleanly_then_resumes() {
    let mut ws = Workspace::new();
    ws.keep_trusts(&[ESTATE, &["kent-community"]].concat());
    let ids: Vec<String> = ESTATE
        .iter()
        .chain(&["kent-community"])
        .map(|s| s.to_string())
        .collect();
    let dbs = create_databases_on(&pg_restart_url(), "pg_restart", &ids);
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
    // A migration that takes a while, so the server goes away while one is in flight.
    let (version, prefix) = next_version();
    ws.write(
        format!("migrations/{prefix}_slow_step.up.sql"),
        "SELECT pg_sleep(1.5);\nCREATE TABLE restart_probe (id BIGINT PRIMARY KEY);\n",
    );
    ws.write(
        format!("migrations/{prefix}_slow_step.down.sql"),
        "DROP TABLE restart_probe;\n",
    );
    let estate: Vec<String> = ESTATE.iter().map(|s| s.to_string()).collect();
    ws.write_target_plan("slow.yaml", version, &[("all", estate.clone())]);

    // 1. A restart of a second or two, while the second trust's migration runs.
    let out = rollout_while(
        &ws,
        &["rollout", "plans/slow.yaml", "--yes"],
        Duration::from_millis(2300),
        || pg_ctl("restart"),
    );
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(
        out.stdout.contains("connection problem, retry"),
        "the restart should have been seen and retried:\n{}",
        out.describe()
    );
    for id in ESTATE {
        assert_eq!(at(&ws, id), version, "{id}");
        assert_eq!(
            ws.db(id)
                .query_i64("SELECT COUNT(*) FROM _flotilla_migrations WHERE dirty"),
            0
        );
        assert!(ws.db(id).table_exists("restart_probe"));
    }

    // 2. An outage longer than the retry budget (7.5 s of backoff): the trust in flight is
    //    marked failed, no later trust is started, exit 4; resume --retry finishes the job.
    let (version2, prefix2) = next_version_after(version);
    ws.write(
        format!("migrations/{prefix2}_slow_again.up.sql"),
        "SELECT pg_sleep(1.5);\nCREATE TABLE outage_probe (id BIGINT PRIMARY KEY);\n",
    );
    ws.write(
        format!("migrations/{prefix2}_slow_again.down.sql"),
        "DROP TABLE outage_probe;\n",
    );
    ws.write_target_plan("slow2.yaml", version2, &[("all", estate)]);
    let out = rollout_while(
        &ws,
        &["rollout", "plans/slow2.yaml", "--yes"],
        Duration::from_millis(800),
        || {
            pg_ctl("stop");
            std::thread::sleep(Duration::from_secs(10));
            pg_ctl("start");
        },
    );
    assert_eq!(out.code, Some(4), "{}", out.describe());
    assert!(out.stderr.contains("camden"), "{}", out.describe());
    let status = ws.status();
    let done: Vec<&str> = ESTATE
        .iter()
        .copied()
        .filter(|id| status[*id]["version"].as_i64() == Some(version2))
        .collect();
    assert!(
        done.is_empty(),
        "no trust should have been upgraded during the outage: {done:?}"
    );
    let resumed = ws.run(&["resume", "--yes", "--retry", "camden"]);
    resumed.success();
    for id in ESTATE {
        assert_eq!(at(&ws, id), version2, "{id}");
        assert!(ws.db(id).table_exists("outage_probe"));
    }
    println!("postgres restart: retried and completed; 10 s outage: failed cleanly, resumed");
}

fn next_version_after(v: i64) -> (i64, String) {
    (v + 1, version_prefix(v + 1))
}
