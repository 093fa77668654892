//! Rolling release 5.1 out over the 56-trust SQLite sample estate.

use crate::common::*;

const PLAN: &str = "plans/rio-5.1.yaml";

/// Every trust in `status --format json` is at `version` / `release` with nothing pending.
fn assert_status_all_at(ws: &Workspace, version: i64, release: &str, pending: i64) {
    let status = ws.status();
    assert_eq!(status.len(), 56, "status lists {} trusts", status.len());
    for (id, t) in &status {
        assert_eq!(t["version"], version, "{id}: {t}");
        assert_eq!(t["release"], release, "{id}: {t}");
        assert_eq!(t["pending"], pending, "{id}: {t}");
        assert!(t["error"].is_null(), "{id}: {t}");
    }
}

/// Every trust's tracking table holds exactly the catalog versions up to `last`.
fn assert_all_applied_through(ws: &Workspace, last: i64) {
    let expected = versions_through(last);
    for (id, applied) in ws.applied_by_trust() {
        assert_eq!(applied, expected, "{id}: applied versions");
    }
}

#[test]
fn demo_upgrades_every_trust_to_the_last_5_1_migration() {
    let ws = Workspace::new();
    ws.run(&["demo", "--patients", "100"]).success();
    let last = release_version("5.1");
    assert_status_all_at(&ws, last, "5.1", 0);
    assert_all_applied_through(&ws, last);
}

#[test]
fn demo_seed_only_leaves_every_trust_at_5_0() {
    let ws = Workspace::new();
    ws.run(&["demo", "--seed-only", "--patients", "50"])
        .success();
    let to_5_0 = release_version("5.0");
    let pending =
        (versions_through(release_version("5.1")).len() - versions_through(to_5_0).len()) as i64;
    assert_status_all_at(&ws, to_5_0, "5.0", pending);
    assert_all_applied_through(&ws, to_5_0);
    let camden = ws.db("camden");
    assert!(
        !camden.table_exists("staff_smartcard"),
        "5.1 table present after --seed-only"
    );
    assert_eq!(camden.count("patient"), 50);
}

/// This file is about the engine, not the gate's soak: one short round.
fn quick_soak(ws: &Workspace) {
    ws.replace(
        PLAN,
        "soak: { rounds: 2, interval: 1s }",
        "soak: { rounds: 1, interval: 100ms }",
    );
}

#[test]
fn a_second_rollout_applies_nothing_and_rewrites_no_tracking_row() {
    let ws = Workspace::new();
    quick_soak(&ws);
    ws.run(&["demo", "--patients", "30"]).success();
    let before = ws.tracking_snapshot();
    assert_eq!(before.len(), 56);

    ws.run(&["rollout", PLAN, "--yes"]).success();

    let after = ws.tracking_snapshot();
    assert_eq!(before, after, "the second rollout changed tracking rows");
    assert_status_all_at(&ws, release_version("5.1"), "5.1", 0);
}

#[test]
fn nhs_numbers_are_normalised_to_ten_digits_by_5_1() {
    let ws = Workspace::new();
    ws.run(&["demo", "--seed-only", "--patients", "100"])
        .success();
    let formatted =
        "SELECT count(*) FROM patient WHERE nhs_number LIKE '% %' OR nhs_number LIKE '%-%'";
    let before: i64 = ws
        .trust_ids()
        .iter()
        .map(|id| ws.db(id).query_i64(formatted))
        .sum();
    assert!(
        before > 0,
        "the seeded estate has no spaced/dashed NHS numbers: the test proves nothing"
    );

    ws.run(&["rollout", PLAN, "--yes"]).success();

    let mut raw_formatted = 0;
    for id in ws.trust_ids() {
        let db = ws.db(&id);
        assert_eq!(
            db.query_i64(formatted),
            0,
            "{id}: NHS numbers still formatted"
        );
        assert_eq!(
            db.query_i64(
                "SELECT count(*) FROM patient \
                 WHERE length(nhs_number) <> 10 OR nhs_number GLOB '*[^0-9]*'"
            ),
            0,
            "{id}: NHS numbers that are not 10 digits"
        );
        assert_eq!(db.count("patient"), 100, "{id}: patients lost or added");
        raw_formatted += db.query_i64(
            "SELECT count(*) FROM patient WHERE nhs_number_raw LIKE '% %' OR nhs_number_raw LIKE '%-%'",
        );
    }
    assert_eq!(
        raw_formatted, before,
        "nhs_number_raw does not keep every captured value"
    );
}

#[test]
fn without_a_terminal_each_approval_wave_must_be_approved_in_advance_or_nothing_changes() {
    let ws = Workspace::new();
    ws.run(&["demo", "--seed-only", "--patients", "10"])
        .success();
    let before = ws.tracking_snapshot();

    // rio-5.1's wave first-twelve needs approval; stdin is /dev/null, so nobody can be asked.
    ws.run(&["rollout", PLAN])
        .code(2)
        .stderr_contains("'first-twelve'")
        .stderr_contains("--approve first-twelve")
        .stderr_contains("--yes");
    ws.run(&["rollout", PLAN, "--approve", "first-twelv"])
        .code(2)
        .stderr_contains("'first-twelv'")
        .stderr_contains("pilot, first-twelve, london, south");

    assert_eq!(
        before,
        ws.tracking_snapshot(),
        "a refused rollout changed tracking rows"
    );
    assert_all_applied_through(&ws, release_version("5.0"));
}

#[test]
fn a_migration_failing_halfway_is_rolled_back_and_stops_the_rollout() {
    let ws = Workspace::new();
    quick_soak(&ws);
    ws.run(&["demo", "--patients", "20"]).success();
    let last = release_version("5.1");
    let through_last = versions_through(last);

    // The new migration fails on camden only: camden already has a `tripwire` table.
    let out = ws.roll_out_a_migration_failing_on_camden();

    let camden = ws.db("camden");
    assert!(
        !camden.table_exists("flotilla_probe"),
        "camden kept the table of the failed migration\n{}",
        out.describe()
    );
    assert!(camden.table_exists("tripwire"));
    assert_eq!(
        camden.applied_versions(),
        through_last,
        "camden tracking rows\n{}",
        out.describe()
    );

    // The wave stopped at its first failure: islington (after camden, concurrency 1) and
    // every trust of the later wave were never touched (the migration succeeds there).
    for id in ws.trust_ids().into_iter().filter(|id| id != "camden") {
        let db = ws.db(&id);
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

    // status still reads everyone at the last 5.1 version.
    let status = ws.status();
    assert_eq!(status.len(), 56);
    for (id, t) in &status {
        assert_eq!(t["version"], last, "{id}: {t}");
    }
}
