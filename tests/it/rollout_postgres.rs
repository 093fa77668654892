//! The same rollouts on PostgreSQL (needs FLOTILLA_TEST_PG_URL: run scripts/test).

use crate::common::*;

const PLAN: &str = "plans/rio-5.1.yaml";

/// A workspace whose inventory puts every trust of `ids` (all trusts if None) on its own fresh
/// Postgres database.
fn pg_workspace(test: &str, ids: Option<Vec<String>>) -> (Workspace, PgDatabases) {
    let mut ws = Workspace::new();
    let ids = ids.unwrap_or_else(|| ws.trust_ids());
    let dbs = create_databases(test, &ids);
    ws.write_pg_inventory(&dbs);
    assert_eq!(ws.trust_ids().len(), ids.len());
    for id in &ids {
        assert!(
            matches!(ws.db(id), Db::Postgres(_)),
            "{id} is not on Postgres"
        );
    }
    (ws, dbs)
}

/// camden, islington and two more trusts, on Postgres, with the workspace's
/// plans/rio-5.1.yaml replaced by a plan over just those four.
fn small_pg_workspace(test: &str) -> (Workspace, PgDatabases, Vec<String>) {
    let all = Workspace::new().trust_ids();
    let others: Vec<String> = all
        .into_iter()
        .filter(|id| id != "camden" && id != "islington")
        .take(2)
        .collect();
    let mut ids = vec!["camden".to_string(), "islington".to_string()];
    ids.extend(others.iter().cloned());
    let (ws, dbs) = pg_workspace(test, Some(ids.clone()));
    ws.write(
        PLAN,
        format!(
            "name: rio-5.1\nrelease: \"5.1\"\nconcurrency: 2\nwaves:\n  \
             - name: pilot\n    trusts: [camden, islington]\n  \
             - name: rest\n    trusts: [{}]\n",
            others.join(", ")
        ),
    );
    (ws, dbs, ids)
}

fn assert_status_all_at(ws: &Workspace, n: usize, version: i64, release: &str) {
    let status = ws.status();
    assert_eq!(status.len(), n);
    for (id, t) in &status {
        assert_eq!(t["version"], version, "{id}: {t}");
        assert_eq!(t["release"], release, "{id}: {t}");
        assert!(t["error"].is_null(), "{id}: {t}");
    }
}

#[test]
fn the_full_plan_upgrades_56_postgres_trusts_and_a_rerun_applies_nothing() {
    let (ws, dbs) = pg_workspace("full_plan", None);
    assert_eq!(dbs.names.len(), 56);
    // The engine at full scale, not the gate's soak: one short round.
    ws.replace(
        PLAN,
        "soak: { rounds: 2, interval: 1s }",
        "soak: { rounds: 1, interval: 100ms }",
    );

    ws.run(&["demo", "--seed-only", "--patients", "50"])
        .success();
    let to_5_0 = release_version("5.0");
    assert_status_all_at(&ws, 56, to_5_0, "5.0");

    ws.run(&["rollout", PLAN, "--yes"]).success();
    let last = release_version("5.1");
    assert_status_all_at(&ws, 56, last, "5.1");
    for (id, t) in ws.status() {
        assert_eq!(t["pending"], 0, "{id}: {t}");
    }
    for id in dbs.names.keys() {
        let db = dbs.db(id);
        assert_eq!(db.applied_versions(), versions_through(last), "{id}");
        assert!(db.table_exists("staff_smartcard"), "{id}");
        assert_eq!(
            db.query_i64("SELECT count(*) FROM patient WHERE nhs_number !~ '^[0-9]{10}$'"),
            0,
            "{id}: NHS numbers not normalised"
        );
    }

    let before = ws.tracking_snapshot();
    ws.run(&["rollout", PLAN, "--yes"]).success();
    assert_eq!(
        before,
        ws.tracking_snapshot(),
        "the second rollout changed tracking rows"
    );
}

#[test]
fn a_failing_postgres_migration_is_rolled_back_and_stops_the_rollout() {
    let (ws, dbs, ids) = small_pg_workspace("failing_migration");
    ws.run(&["demo", "--patients", "20"]).success();
    let last = release_version("5.1");
    let through_last = versions_through(last);
    assert_status_all_at(&ws, ids.len(), last, "5.1");

    // The new migration fails on camden only: camden already has a `tripwire` table.
    let out = ws.roll_out_a_migration_failing_on_camden();

    let camden = dbs.db("camden");
    assert!(
        !camden.table_exists("flotilla_probe"),
        "the failed transaction was not rolled back\n{}",
        out.describe()
    );
    assert_eq!(
        camden.applied_versions(),
        through_last,
        "camden\n{}",
        out.describe()
    );
    for id in ids.iter().filter(|id| *id != "camden") {
        let db = dbs.db(id);
        assert_eq!(
            db.applied_versions(),
            through_last,
            "{id} was touched\n{}",
            out.describe()
        );
        assert!(
            !db.table_exists("flotilla_probe"),
            "{id} was touched\n{}",
            out.describe()
        );
    }
}

#[test]
fn an_edited_applied_migration_on_postgres_is_drift_and_changes_nothing() {
    let (ws, _dbs, ids) = small_pg_workspace("drift");
    ws.run(&["demo", "--seed-only", "--patients", "10"])
        .success();
    assert_eq!(ws.tracking_snapshot().len(), ids.len());
    ws.roll_out_after_editing_an_applied_migration();
}
