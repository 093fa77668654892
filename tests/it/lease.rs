//! The estate lease (one run at a time, a stopped holder's lease can be taken over) and an
//! orderly Ctrl-C followed by `resume`, on an SQLite estate with the default state database.

use std::time::{Duration, Instant};

use crate::common::*;

const PLAN: &str = "plans/rio-5.1.yaml";
/// One trust for every wave of the plan: pilot (camden, islington), first-twelve (barnet),
/// london (brent), south (kent-community).
const ESTATE: &[&str] = &["camden", "islington", "barnet", "brent", "kent-community"];
const STATE: &str = ".flotilla/state.db";

/// A small seeded estate at 5.0 with its soak set to `soak`, and a copy of it in `seed-estate/`
/// for [`restore`].
fn small_estate(soak: &str) -> Workspace {
    let ws = Workspace::new();
    ws.keep_trusts(ESTATE);
    ws.replace(PLAN, "soak: { rounds: 2, interval: 1s }", soak);
    ws.edit(PLAN, |s| s.replace("samples: 40", "samples: 10"));
    ws.run(&["demo", "--seed-only", "--patients", "50"])
        .success();
    copy_tree(&ws.path("estate"), &ws.path("seed-estate"));
    ws
}

/// The seeded estate again (the state database is kept).
fn restore(ws: &Workspace) {
    std::fs::remove_dir_all(ws.path("estate")).unwrap();
    copy_tree(&ws.path("seed-estate"), &ws.path("estate"));
}

fn state(ws: &Workspace) -> Db {
    Db::Sqlite(ws.path(STATE))
}

/// Every trust's tracking table holds exactly the catalog versions up to `last`.
fn assert_all_at(ws: &Workspace, last: i64, context: &str) {
    for (id, applied) in ws.applied_by_trust() {
        assert_eq!(applied, versions_through(last), "{id}: {context}");
    }
}

/// Rows of `flotilla_runs` as "run_id|status|attempts|exit_code".
fn runs(ws: &Workspace) -> Vec<String> {
    if !ws.exists(STATE) {
        return Vec::new();
    }
    let mut v = state(ws).query_strings(
        "SELECT run_id || '|' || status || '|' || CAST(attempts AS TEXT) || '|' \
         || COALESCE(CAST(exit_code AS TEXT), '') FROM flotilla_runs",
    );
    v.sort();
    v
}

fn lease_rows(ws: &Workspace) -> Vec<String> {
    state(ws).query_strings(
        "SELECT run_id || '|' || holder_user || '|' || host || '|' || CAST(pid AS TEXT) \
         FROM flotilla_lease",
    )
}

fn open_steps(ws: &Workspace) -> Vec<String> {
    state(ws).query_strings(
        "SELECT trust || '|' || kind || '|' || COALESCE(CAST(version AS TEXT), '') \
         FROM flotilla_steps WHERE state = 'started'",
    )
}

#[test]
fn two_rollouts_started_together_one_runs_and_the_other_is_refused_naming_the_holder() {
    let ws = small_estate("soak: { rounds: 1, interval: 500ms }");
    let host = this_host();
    // Round 1 races on creating the state database too; later rounds find it in place.
    for round in 1..=3 {
        restore(&ws);
        let runs_before = runs(&ws);
        let (a, b) = {
            let _serial = serial();
            let a = Spawned::start(&ws, &["rollout", PLAN, "--yes"]);
            let b = Spawned::start(&ws, &["rollout", PLAN, "--yes"]);
            let (pa, pb) = (a.pid(), b.pid());
            (
                (pa, a.wait(Duration::from_secs(300))),
                (pb, b.wait(Duration::from_secs(300))),
            )
        };
        let both = format!("round {round}\n{}\n{}", a.1.describe(), b.1.describe());
        let ((winner_pid, winner), loser) = match (a.1.code, b.1.code) {
            (Some(0), Some(6)) => (a, b.1),
            (Some(6), Some(0)) => (b, a.1),
            _ => panic!("expected one rollout to exit 0 and the other 6\n{both}"),
        };
        winner.no_panic();
        let new_runs: Vec<String> = runs(&ws)
            .into_iter()
            .filter(|r| !runs_before.contains(r))
            .collect();
        assert_eq!(
            new_runs.len(),
            1,
            "exactly one run is recorded (the refused one records none): {new_runs:?}\n{both}"
        );
        let run_id = new_runs[0].split('|').next().unwrap();
        assert!(
            new_runs[0].ends_with("|completed|1|0"),
            "{new_runs:?}\n{both}"
        );
        loser
            .no_panic()
            .stderr_contains(&format!("locked by run {run_id} "))
            .stderr_contains(&format!("@{host}, pid {winner_pid}, since "))
            .stderr_contains("nothing was changed");
        assert_all_at(&ws, release_version("5.1"), &both);
        assert!(
            lease_rows(&ws).is_empty(),
            "the winner released the lease\n{both}"
        );
    }
}

/// Put a lease row in the state database (creating the database and table if needed).
fn plant_lease(ws: &Workspace, user: &str, host: &str, pid: u32, expires_ms: i64) {
    if !ws.exists(STATE) {
        ws.write(STATE, "");
    }
    state(ws).exec(&format!(
        "CREATE TABLE IF NOT EXISTS flotilla_lease (estate TEXT PRIMARY KEY, run_id TEXT NOT NULL, \
         token TEXT NOT NULL, holder_user TEXT NOT NULL, host TEXT NOT NULL, pid BIGINT NOT NULL, \
         since TEXT NOT NULL, heartbeat_ms BIGINT NOT NULL, expires_ms BIGINT NOT NULL);\n\
         DELETE FROM flotilla_lease;\n\
         INSERT INTO flotilla_lease VALUES ('estate', 'run-held-elsewhere', 'token-elsewhere', \
         '{user}', '{host}', {pid}, '2026-01-01T00:00:00Z', {}, {expires_ms});",
        expires_ms - 30_000
    ));
}

/// A rollout refused with exit 6 naming `who`, and nothing changed.
fn assert_refused(ws: &Workspace, who: &str) {
    let before = ws.tracking_snapshot();
    let lease = lease_rows(ws);
    let out = ws.run(&["rollout", PLAN, "--yes"]);
    out.code(6)
        .stderr_contains("locked by run run-held-elsewhere ")
        .stderr_contains(who)
        .stderr_contains("nothing was changed");
    assert_eq!(
        ws.tracking_snapshot(),
        before,
        "a refused rollout changed tracking rows\n{}",
        out.describe()
    );
    assert_all_at(ws, release_version("5.0"), &out.describe());
    assert!(
        runs(ws).is_empty(),
        "a refused rollout recorded a run\n{}",
        out.describe()
    );
    assert_eq!(
        lease_rows(ws),
        lease,
        "a refused rollout changed the lease\n{}",
        out.describe()
    );
}

/// The lease is taken over and the rollout completes.
fn assert_taken_over(ws: &Workspace) {
    let out = ws.run(&["rollout", PLAN, "--yes"]);
    out.success();
    assert_all_at(ws, release_version("5.1"), &out.describe());
    let runs = runs(ws);
    assert_eq!(runs.len(), 1, "{runs:?}\n{}", out.describe());
    assert!(
        runs[0].ends_with("|completed|1|0"),
        "{runs:?}\n{}",
        out.describe()
    );
    assert!(
        lease_rows(ws).is_empty(),
        "the lease was not released\n{}",
        out.describe()
    );
}

#[test]
fn a_lease_held_elsewhere_blocks_the_estate_until_it_expires_or_its_holder_is_gone() {
    let ws = small_estate("soak: { rounds: 1, interval: 100ms }");
    let host = this_host();
    assert_ne!(host, "other-host");
    let in_ten_minutes = unix_ms() + 600_000;

    // A live lease on another host (pid 1 exists here, but it is not this host's process).
    plant_lease(&ws, "alice", "other-host", 1, in_ten_minutes);
    assert_refused(&ws, "(alice@other-host, pid 1, since 2026-01-01T00:00:00Z)");

    // A live lease on this host whose process exists (this test).
    let me = std::process::id();
    plant_lease(&ws, "alice", &host, me, in_ten_minutes);
    assert_refused(&ws, &format!("(alice@{host}, pid {me}, since "));

    // The other host's lease expired: taken over.
    plant_lease(&ws, "alice", "other-host", 1, unix_ms() - 1_000);
    assert_taken_over(&ws);

    // A live lease on this host whose process is gone: taken over without waiting for expiry.
    restore(&ws);
    std::fs::remove_dir_all(ws.path(".flotilla")).unwrap();
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    assert!(
        !std::path::Path::new(&format!("/proc/{gone_pid}")).exists(),
        "pid {gone_pid} still exists"
    );
    plant_lease(&ws, "alice", &host, gone_pid, in_ten_minutes);
    assert_taken_over(&ws);
}

#[test]
fn ctrl_c_stops_the_rollout_in_order_and_resume_completes_it() {
    let ws = small_estate("soak: { rounds: 1, interval: 1s }");
    let seeded = release_version("5.0");
    let target = release_version("5.1");
    let _serial = serial();
    let mut run = Spawned::start(&ws, &["rollout", PLAN, "--yes"]);
    let pid = run.pid();
    let migrating = state(&ws).wait_for_count(
        "SELECT CAST(count(*) AS TEXT) FROM flotilla_steps WHERE kind = 'migrate' AND state = 'done'",
        1,
        Instant::now() + Duration::from_secs(120),
        || run.exited(),
    );
    if !migrating {
        let out = run.wait(Duration::from_secs(10));
        panic!("the rollout never recorded a migration\n{}", out.describe());
    }
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success(), "kill -INT {pid} failed");
    let out = run.wait(Duration::from_secs(120));
    out.code(8)
        .stderr_contains("interrupted")
        .stderr_contains("flotilla resume");

    // Every trust is at a catalog version with its whole history before it, nothing dirty; the
    // pilot had started, and the later waves were never started.
    let catalog = catalog_versions();
    let mut versions = Vec::new();
    for id in ws.trust_ids() {
        let db = ws.db(&id);
        let applied = db.applied_versions();
        let last = *applied.last().unwrap();
        assert!(
            catalog.contains(&last) && (seeded..=target).contains(&last),
            "{id} at {last}\n{}",
            out.describe()
        );
        assert_eq!(
            applied,
            versions_through(last),
            "{id}: history has a gap\n{}",
            out.describe()
        );
        assert_eq!(
            db.query_i64("SELECT count(*) FROM _flotilla_migrations WHERE dirty"),
            0,
            "{id}: dirty tracking row after an orderly stop\n{}",
            out.describe()
        );
        versions.push((id, last));
    }
    assert!(
        versions.iter().any(|(_, v)| *v > seeded),
        "nothing was migrated before the interrupt: {versions:?}\n{}",
        out.describe()
    );
    assert!(
        versions
            .iter()
            .filter(|(id, _)| id != "camden" && id != "islington")
            .all(|(_, v)| *v == seeded),
        "a wave after the pilot started after the interrupt: {versions:?}\n{}",
        out.describe()
    );
    assert!(
        open_steps(&ws).is_empty(),
        "steps left in flight after an orderly stop: {:?}\n{}",
        open_steps(&ws),
        out.describe()
    );
    let recorded = runs(&ws);
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert!(
        recorded[0].ends_with("|interrupted|1|8"),
        "{recorded:?}\n{}",
        out.describe()
    );

    let resumed = run_unlocked(&ws, &["resume", "--yes"]);
    resumed.success();
    assert_all_at(&ws, target, &resumed.describe());
    let run_id = recorded[0].split('|').next().unwrap();
    assert_eq!(
        runs(&ws),
        vec![format!("{run_id}|completed|2|0")],
        "{}",
        resumed.describe()
    );
    assert!(open_steps(&ws).is_empty(), "{}", resumed.describe());
    assert!(lease_rows(&ws).is_empty(), "{}", resumed.describe());
}
