//! No duration switches a protection off: `timeouts: { lock: 0s }` used to turn the lock
//! timeout off (a migration then waits behind a table lock forever), `--lease-ttl 0s` let a
//! second run take over a live one at once, and preflight ignored the plan's lock timeout
//! (it waited about 30 s, then reported "blocked in 0.0 s").

use std::time::{Duration, Instant};

use sqlx::Connection;

use super::{versions, PLAN};
use crate::common::{block_on, create_databases, serial, Spawned, Workspace};

#[test]
fn timeouts_that_switch_a_protection_off_are_refused_with_the_reason() {
    let ws = Workspace::new();
    let plan = ws.read(PLAN);
    for (timeouts, expect) in [
        (
            "timeouts: { lock: 0s }",
            "lock: 0s would turn the lock timeout off",
        ),
        (
            "timeouts: { lock: 500us }",
            "would turn the lock timeout off",
        ),
        (
            "timeouts: { lock: 10s, statement: 0s }",
            "statement: 0s would mean no limit",
        ),
    ] {
        ws.write(PLAN, format!("{plan}{timeouts}\n"));
        let line = plan.lines().count() + 1;
        ws.run(&["validate", PLAN])
            .code(2)
            .stderr_contains(&format!("{PLAN}:{line}:"))
            .stderr_contains(expect);
        ws.run(&["rollout", PLAN, "--yes"])
            .code(2)
            .stderr_contains(expect);
        assert!(!ws.exists(".flotilla"), "a refused plan recorded a run");
    }
    ws.write(
        PLAN,
        format!("{plan}timeouts: {{ lock: 1ms, statement: 30m }}\n"),
    );
    ws.run(&["validate", PLAN]).success();
}

#[test]
fn a_lease_shorter_than_its_heartbeat_is_refused() {
    let ws = Workspace::new();
    for ttl in ["0s", "500ms", "999ms"] {
        ws.run(&["--lease-ttl", ttl, "status"])
            .code(2)
            .stderr_contains("--lease-ttl")
            .stderr_contains("take over a live one");
    }
    ws.run(&["--lease-ttl", "1s", "validate"]).success();
}

/// The "blocked in X s" of the run's last line.
fn blocked_after(stdout: &str) -> f64 {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("rollout blocked in "))
        .and_then(|rest| rest.strip_suffix(" s"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no 'rollout blocked in X s' line:\n{stdout}"))
}

#[test]
fn preflight_waits_the_plans_lock_timeout_for_a_locked_sqlite_trust_then_says_so() {
    let ws = super::small_workspace();
    ws.run(&["demo", "--seed-only", "--patients", "20"])
        .success();
    let plan = ws.read(PLAN);
    ws.write(PLAN, format!("{plan}timeouts: {{ lock: 1500ms }}\n"));
    let before = versions(&ws);
    let path = ws.path("estate/camden.db");
    // Another program holds camden's database with an exclusive lock while the rollout starts.
    let out = block_on(async {
        let mut holder = sqlx::SqliteConnection::connect_with(
            &sqlx::sqlite::SqliteConnectOptions::new().filename(&path),
        )
        .await
        .unwrap();
        sqlx::raw_sql("BEGIN EXCLUSIVE; UPDATE patient SET given_name = given_name WHERE id = 1")
            .execute(&mut holder)
            .await
            .unwrap();
        let started = Instant::now();
        let out = {
            let _serial = serial();
            Spawned::start(&ws, &["rollout", PLAN, "--yes"]).wait(Duration::from_secs(120))
        };
        let took = started.elapsed();
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut holder)
            .await
            .unwrap();
        (out, took)
    });
    let (out, took) = out;
    out.code(6)
        .stderr_contains("trust 'camden'")
        .stderr_contains("waited")
        .stderr_contains("timeouts.lock is 1s 500ms")
        .stderr_contains("nothing was changed");
    assert!(
        took < Duration::from_secs(20),
        "preflight waited {took:?}, not the plan's 1.5 s\n{}",
        out.describe()
    );
    let reported = blocked_after(&out.stdout);
    assert!(
        reported >= 1.4,
        "the reported duration ({reported} s) leaves out the preflight's wait\n{}",
        out.describe()
    );
    assert_eq!(versions(&ws), before, "a blocked rollout changed a trust");
}

#[test]
fn postgres_preflight_gives_up_on_a_locked_tracking_table_after_the_lock_timeout() {
    let mut ws = super::small_workspace();
    let ids: Vec<String> = super::SMALL_ESTATE.iter().map(|s| s.to_string()).collect();
    let dbs = create_databases("lock_timeout", &ids);
    ws.write_pg_inventory(&dbs);
    ws.run(&["demo", "--seed-only", "--patients", "20"])
        .success();
    let plan = ws.read(PLAN);
    ws.write(PLAN, format!("{plan}timeouts: {{ lock: 1s }}\n"));
    let url = dbs.url("camden");
    let out = block_on(async {
        let mut holder = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::raw_sql("BEGIN; LOCK TABLE _flotilla_migrations IN ACCESS EXCLUSIVE MODE")
            .execute(&mut holder)
            .await
            .unwrap();
        let out = {
            let _serial = serial();
            // Without the plan's lock timeout, the read-only preflight session waits for the
            // lock for as long as it is held: the wait below would time out.
            Spawned::start(&ws, &["rollout", PLAN, "--yes"]).wait(Duration::from_secs(60))
        };
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut holder)
            .await
            .unwrap();
        out
    });
    out.code(6)
        .stderr_contains("trust 'camden'")
        .stderr_contains("lock")
        .stderr_contains("timeouts.lock is 1s");
}
