//! Lint that knows the estate: `plan` (text and JSON) and `rollout --rehearse` say what a
//! finding on a migration the plan would apply means on the plan's real trusts, from their own
//! figures, on SQLite and PostgreSQL.

use crate::common::{create_databases, next_version, version_prefix, Workspace};

const ESTATE: &[&str] = &["camden", "islington", "barnet", "brent", "kent-community"];
/// The trusts whose `allergy` table has rows.
const WITH_ROWS: &[&str] = &["camden", "barnet"];

fn sqlite_workspace() -> Workspace {
    let ws = Workspace::new();
    ws.keep_trusts(ESTATE);
    ws
}

fn postgres_workspace(test: &str) -> Workspace {
    let mut ws = sqlite_workspace();
    let ids: Vec<String> = ESTATE.iter().map(|s| s.to_string()).collect();
    let dbs = create_databases(test, &ids);
    ws.write_pg_inventory(&dbs);
    ws
}

/// Every trust at a new migration creating `allergy`, with rows on [`WITH_ROWS`] only; then a
/// migration adding a NOT NULL column without a default to it, and `plans/allergy.yaml`
/// targeting it on every trust.
fn estate_with_a_not_null_column_to_add(ws: &Workspace) {
    ws.run(&["demo", "--seed-only", "--patients", "10"])
        .success();
    let (first, p1) = next_version();
    let p2 = version_prefix(first + 1);
    ws.write(
        format!("migrations/{p1}_allergy.up.sql"),
        "CREATE TABLE allergy (id INTEGER PRIMARY KEY, patient_id INTEGER NOT NULL, substance TEXT NOT NULL);\n",
    );
    ws.write(
        format!("migrations/{p1}_allergy.down.sql"),
        "DROP TABLE allergy;\n",
    );
    let all: Vec<String> = ESTATE.iter().map(|s| s.to_string()).collect();
    ws.write_target_plan("allergy-table.yaml", first, &[("all", all.clone())]);
    ws.run(&["rollout", "plans/allergy-table.yaml", "--yes"])
        .success();
    for id in WITH_ROWS {
        ws.db(id).exec(
            "INSERT INTO allergy (id, patient_id, substance) VALUES (1, 1, 'penicillin'), (2, 2, 'latex'), (3, 2, 'nuts')",
        );
    }
    ws.write(
        format!("migrations/{p2}_allergy_severity.up.sql"),
        "ALTER TABLE allergy ADD COLUMN severity TEXT NOT NULL;\n",
    );
    ws.write(
        format!("migrations/{p2}_allergy_severity.down.sql"),
        "ALTER TABLE allergy DROP COLUMN severity;\n",
    );
    ws.write_target_plan("allergy.yaml", first + 1, &[("all", all)]);
}

fn plan_says_where_the_column_fails(ws: &Workspace) {
    estate_with_a_not_null_column_to_add(ws);
    ws.run(&["plan", "plans/allergy.yaml"])
        .success()
        .stdout_contains("error[add-not-null-without-default]")
        .stdout_contains(
            "↳ add-not-null-without-default on allergy: fails on 2 of 5 trusts (allergy has rows)",
        );
    let v = ws
        .run(&["plan", "plans/allergy.yaml", "--format", "json"])
        .json();
    let findings = v["lint"]["findings"].as_array().expect("lint findings");
    assert_eq!(findings.len(), 1, "{v:#}");
    let f = &findings[0];
    assert_eq!(f["rule"], "add-not-null-without-default");
    assert_eq!(f["table"], "allergy");
    assert_eq!(f["trusts"].as_array().unwrap().len(), 5);
    let e = &f["estate"];
    assert_eq!(e["impact"], "fails-with-rows");
    assert_eq!(e["trusts"], 5);
    assert_eq!(e["with_rows"], 2);
    assert_eq!(e["total_rows"], 6);
    assert_eq!(e["unreachable"].as_array().unwrap().len(), 0);
    for t in e["per_trust"].as_array().unwrap() {
        let id = t["trust"].as_str().unwrap();
        let expected = if WITH_ROWS.contains(&id) { 3 } else { 0 };
        assert_eq!(t["rows"], expected, "{id}: {t}");
        assert_eq!(t["exact"], true, "{id}: {t}");
    }
}

#[test]
fn sqlite_plan_counts_the_trusts_where_a_not_null_column_fails() {
    plan_says_where_the_column_fails(&sqlite_workspace());
}

#[test]
fn postgres_plan_counts_the_trusts_where_a_not_null_column_fails() {
    let ws = postgres_workspace("estate_lint_plan");
    plan_says_where_the_column_fails(&ws);
    // PostgreSQL also gives each table's size.
    let v = ws
        .run(&["plan", "plans/allergy.yaml", "--format", "json"])
        .json();
    for t in v["lint"]["findings"][0]["estate"]["per_trust"]
        .as_array()
        .unwrap()
    {
        assert!(t["bytes"].as_u64().is_some_and(|b| b > 0), "{t}");
    }
}

#[test]
fn sqlite_rehearsal_says_where_a_not_null_column_fails_before_running_it() {
    let ws = sqlite_workspace();
    estate_with_a_not_null_column_to_add(&ws);
    let out = ws.run(&["rollout", "plans/allergy.yaml", "--rehearse"]);
    out.no_panic().stdout_contains(
        "↳ add-not-null-without-default on allergy: fails on 2 of 5 trusts (allergy has rows)",
    );
    assert_ne!(out.code, Some(0), "{}", out.describe());
}

#[test]
fn postgres_rehearsal_says_where_a_not_null_column_fails_before_running_it() {
    let ws = postgres_workspace("estate_lint_rehearse");
    estate_with_a_not_null_column_to_add(&ws);
    let out = ws.run(&["rollout", "plans/allergy.yaml", "--rehearse"]);
    out.no_panic().stdout_contains(
        "↳ add-not-null-without-default on allergy: fails on 2 of 5 trusts (allergy has rows)",
    );
    assert_ne!(out.code, Some(0), "{}", out.describe());
    // The real trusts are untouched: the column was never added anywhere.
    for id in ESTATE {
        assert_eq!(
            ws.db(id).query_i64(
                "SELECT COUNT(*) FROM information_schema.columns WHERE table_name = 'allergy' AND column_name = 'severity'"
            ),
            0,
            "{id}"
        );
    }
}
