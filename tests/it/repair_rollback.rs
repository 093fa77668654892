//! Operator commands on real databases: `repair` of a dirty no-transaction migration (with the
//! invalid index a failed `CREATE INDEX CONCURRENTLY` leaves on Postgres), and `rollback` of a
//! whole wave or run, verified, on SQLite and Postgres; rollback's check of the patient-data
//! tables in the trust's own dialect.

use crate::common::{
    create_databases, next_version, pg_admin_url, url_with_db, version_prefix, Db, Workspace,
};
use serde_json::json;

const PLAN: &str = "plans/rio-5.1.yaml";
const ESTATE: &[&str] = &["camden", "islington", "barnet", "brent", "kent-community"];

fn sqlite_workspace() -> Workspace {
    let ws = Workspace::new();
    ws.keep_trusts(ESTATE);
    ws.replace(
        PLAN,
        "soak: { rounds: 2, interval: 1s }",
        "soak: { rounds: 1, interval: 100ms }",
    );
    ws
}

fn postgres_workspace(test: &str) -> Workspace {
    let mut ws = sqlite_workspace();
    let ids: Vec<String> = ESTATE.iter().map(|s| s.to_string()).collect();
    let dbs = create_databases(test, &ids);
    ws.write_pg_inventory(&dbs);
    ws
}

fn version_of(ws: &Workspace, id: &str) -> i64 {
    ws.status()[id]["version"].as_i64().unwrap_or(-1)
}

/// Every row of the patient-data tables, ordered, as text.
fn patient_data(ws: &Workspace, id: &str) -> Vec<String> {
    let db = ws.db(id);
    let mut rows = Vec::new();
    for q in [
        "SELECT CAST(id AS TEXT) || '|' || nhs_number || '|' || family_name || '|' || given_name || '|' || CAST(date_of_birth AS TEXT) FROM patient ORDER BY id",
        "SELECT CAST(id AS TEXT) || '|' || CAST(patient_id AS TEXT) || '|' || body FROM clinical_note ORDER BY id",
        "SELECT CAST(id AS TEXT) || '|' || CAST(patient_id AS TEXT) || '|' || CAST(starts_at AS TEXT) FROM appointment ORDER BY id",
        "SELECT CAST(id AS TEXT) || '|' || CAST(patient_id AS TEXT) || '|' || status FROM referral ORDER BY id",
    ] {
        rows.extend(db.query_strings(q));
    }
    rows
}

/// A no-transaction migration after the last one, and a plan that targets it on camden only.
fn add_no_transaction_migration(ws: &Workspace, body: &str) -> (i64, String) {
    let (version, prefix) = next_version();
    let stem = format!("{prefix}_no_transaction_index");
    ws.write(
        format!("migrations/{stem}.up.sql"),
        format!("-- flotilla: no-transaction\n{body}"),
    );
    ws.write(
        format!("migrations/{stem}.down.sql"),
        "-- flotilla: no-transaction\nDROP INDEX nt_idx;\n",
    );
    ws.write_target_plan("nt.yaml", version, &[("pilot", vec!["camden".into()])]);
    (version, stem)
}

fn dirty_rows(ws: &Workspace, id: &str) -> i64 {
    ws.db(id)
        .query_i64("SELECT COUNT(*) FROM _flotilla_migrations WHERE dirty")
}

#[test]
fn sqlite_a_dirty_no_transaction_migration_stops_the_trust_until_repaired() {
    let ws = sqlite_workspace();
    ws.run(&[
        "demo",
        "--seed-only",
        "--patients",
        "60",
        "--seed-release",
        "5.1",
    ])
    .success();
    ws.db("camden")
        .exec("CREATE TABLE tripwire (id INTEGER PRIMARY KEY)");
    let (version, _) = add_no_transaction_migration(
        &ws,
        "CREATE INDEX nt_idx ON patient (family_name);\nCREATE TABLE tripwire (id INTEGER PRIMARY KEY);\n",
    );
    // The first statement commits on its own; the second fails: the row stays dirty.
    ws.run(&["rollout", "plans/nt.yaml", "--yes"])
        .code(4)
        .stderr_contains("camden");
    assert_eq!(dirty_rows(&ws, "camden"), 1);
    // The failed run waits for a decision: a new rollout of the plan refuses, naming it.
    let run = latest_run(&ws);
    ws.run(&["rollout", "plans/nt.yaml", "--yes"])
        .code(2)
        .stderr_contains(&run)
        .stderr_contains("FAILED")
        .stderr_contains("--retry camden");
    // A dirty trust stops every later attempt, saying what to check and how to clear it.
    let again = ws.run(&["resume", &run, "--yes", "--retry", "camden"]);
    again
        .code(4)
        .stderr_contains("dirty")
        .stderr_contains("flotilla repair");
    // The operator undoes the half that ran, then tells flotilla it did not apply.
    ws.db("camden").exec("DROP INDEX nt_idx");
    ws.db("camden").exec("DROP TABLE tripwire");
    ws.run(&["repair", "camden", "--not-applied"])
        .success()
        .stdout_contains("marked not applied");
    assert_eq!(dirty_rows(&ws, "camden"), 0);
    assert!(!ws.db("camden").applied_versions().contains(&version));
    ws.run(&["repair", "camden", "--applied"]).code(2);
    ws.run(&["resume", &run, "--yes", "--retry", "camden"])
        .success();
    assert_eq!(version_of(&ws, "camden"), version);
    assert_eq!(dirty_rows(&ws, "camden"), 0);
    assert!(ws.db("camden").table_exists("tripwire"));
}

/// The newest run's id, from `status --format json`.
fn latest_run(ws: &Workspace) -> String {
    let out = ws.run(&["status", "--format", "json"]);
    out.json()["runs"][0]["run_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no run in status\n{}", out.describe()))
        .to_string()
}

#[test]
fn postgres_repair_drops_the_invalid_index_of_a_failed_concurrent_build() {
    let ws = postgres_workspace("repair_concurrent");
    ws.run(&[
        "demo",
        "--seed-only",
        "--patients",
        "60",
        "--seed-release",
        "5.1",
    ])
    .success();
    // Family names repeat in the sample data, so a unique concurrent build fails half-way
    // and leaves an INVALID index behind.
    let (version, stem) = add_no_transaction_migration(
        &ws,
        "CREATE UNIQUE INDEX CONCURRENTLY nt_idx ON patient (family_name);\n",
    );
    ws.run(&["rollout", "plans/nt.yaml", "--yes"])
        .code(4)
        .stderr_contains("camden");
    let invalid = "SELECT COUNT(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'nt_idx' AND NOT i.indisvalid";
    assert_eq!(
        ws.db("camden").query_i64(invalid),
        1,
        "expected an invalid index"
    );
    assert_eq!(dirty_rows(&ws, "camden"), 1);
    let run = latest_run(&ws);
    ws.run(&["resume", &run, "--yes", "--retry", "camden"])
        .code(4)
        .stderr_contains("flotilla repair");
    ws.run(&["repair", "camden", "--not-applied"])
        .success()
        .stdout_contains("dropped invalid index nt_idx");
    assert_eq!(
        ws.db("camden")
            .query_i64("SELECT COUNT(*) FROM pg_class WHERE relname = 'nt_idx'"),
        0
    );
    assert_eq!(dirty_rows(&ws, "camden"), 0);
    // Fixed (it was never applied, so editing it is not drift), with two statements that
    // must each run outside a transaction.
    ws.write(
        format!("migrations/{stem}.up.sql"),
        "-- flotilla: no-transaction\n\
         CREATE INDEX CONCURRENTLY nt_idx ON patient (family_name);\n\
         CREATE INDEX CONCURRENTLY nt_given_idx ON patient (given_name);\n",
    );
    // The failed run was for the old file: it is abandoned (on the record), and the fixed
    // migration rolled out afresh.
    ws.run(&["rollout", "plans/nt.yaml", "--yes"])
        .code(2)
        .stderr_contains(&run);
    ws.run(&[
        "abandon",
        &run,
        "--reason",
        "the concurrent index build was fixed and is rolled out afresh",
    ])
    .success()
    .stdout_contains("abandoned by");
    ws.run(&["rollout", "plans/nt.yaml", "--yes"]).success();
    assert_eq!(version_of(&ws, "camden"), version);
    assert_eq!(
        ws.db("camden").query_i64(
            "SELECT COUNT(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname IN ('nt_idx', 'nt_given_idx') AND i.indisvalid"
        ),
        2
    );
}

fn rollback_a_wave_and_a_run(ws: &Workspace) {
    ws.run(&["demo", "--seed-only", "--patients", "80"])
        .success();
    let before: Vec<Vec<String>> = ESTATE.iter().map(|id| patient_data(ws, id)).collect();
    ws.run(&["rollout", PLAN, "--yes"]).success();
    for id in ESTATE {
        assert_eq!(version_of(ws, id), 130, "{id}");
    }
    // A preview changes nothing.
    let tracking = ws.tracking_snapshot();
    ws.run(&[
        "rollback",
        PLAN,
        "--wave",
        "pilot",
        "--to",
        "5.0",
        "--dry-run",
    ])
    .success()
    .stdout_contains("camden: 5.1 → 5.0: revert 0130");
    assert_eq!(tracking, ws.tracking_snapshot());
    // Never below the schema that holds the patient data, unless forced.
    ws.run(&[
        "rollback", PLAN, "--trust", "barnet", "--to", "0030", "--yes",
    ])
    .code(2)
    .stderr_contains("would destroy");
    assert_eq!(tracking, ws.tracking_snapshot());
    // Never a trust outside the plan.
    ws.write_target_plan("pilot-only.yaml", 130, &[("pilot", vec!["camden".into()])]);
    ws.run(&[
        "rollback",
        "plans/pilot-only.yaml",
        "--trust",
        "barnet",
        "--to",
        "5.0",
        "--yes",
    ])
    .code(2)
    .stderr_contains("outside the plan");
    assert_eq!(tracking, ws.tracking_snapshot());

    // The pilot wave, back to 5.0, verified.
    ws.run(&["rollback", PLAN, "--wave", "pilot", "--to", "5.0", "--yes"])
        .success()
        .stdout_contains("camden: 5.1 → 5.0 (5 down migrations)");
    assert_eq!(version_of(ws, "camden"), 80);
    assert_eq!(version_of(ws, "islington"), 80);
    assert_eq!(version_of(ws, "barnet"), 130);
    for (i, id) in ESTATE.iter().enumerate().take(2) {
        assert_eq!(
            patient_data(ws, id),
            before[i],
            "{id}: data changed by rollback"
        );
    }
    // The rest of the run, each trust back to where the run found it, compared exactly with
    // the baseline the run recorded.
    let status = ws.run(&["status", "--format", "json"]);
    let run = status.json()["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["plan"] == "rio-5.1")
        .expect("the rollout is recorded")["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    ws.run(&["rollback", PLAN, "--run", &run, "--yes"])
        .success()
        .stdout_contains("integrity equals the figures recorded before the upgrade")
        .stdout_contains("camden: 5.0 → 5.0: nothing to revert");
    for (i, id) in ESTATE.iter().enumerate() {
        assert_eq!(version_of(ws, id), 80, "{id}");
        assert_eq!(
            patient_data(ws, id),
            before[i],
            "{id}: data changed by rollback"
        );
    }
    // A rollback is an operator action, not a rollout: `resume` never picks it up.
    ws.run(&["resume", "--yes"])
        .code(2)
        .stderr_contains("no run to resume");
}

#[test]
fn sqlite_rollback_of_a_wave_and_of_a_run_is_verified() {
    rollback_a_wave_and_a_run(&sqlite_workspace());
}

#[test]
fn postgres_rollback_of_a_wave_and_of_a_run_is_verified() {
    rollback_a_wave_and_a_run(&postgres_workspace("rollback_wave"));
}

#[test]
fn status_lists_runs_and_the_lease_as_json() {
    let ws = sqlite_workspace();
    let empty = ws.run(&["status", "--format", "json"]);
    assert_eq!(empty.json()["runs"], json!([]));
    assert!(
        !ws.exists(".flotilla/state.db"),
        "status must not create the state database"
    );
    ws.run(&["demo", "--patients", "40"]).success();
    let v = ws.run(&["status", "--format", "json"]).json();
    let run = &v["runs"][0];
    assert_eq!(run["status"], "completed");
    assert_eq!(run["attempts"], 1);
    assert_eq!(run["current_wave"], "south");
    assert_eq!(v["lease"], json!(null), "a finished run releases the lease");
}

#[test]
fn resume_refuses_a_changed_plan_and_needs_a_decision_for_each_failed_trust() {
    let ws = Workspace::new();
    ws.run(&[
        "demo",
        "--seed-only",
        "--patients",
        "20",
        "--seed-release",
        "5.1",
    ])
    .success();
    // camden fails (exit 4) in the pilot; the run stops before everyone else.
    ws.roll_out_a_migration_failing_on_camden();
    // The plan file changed since the run began: refused, nothing changed.
    let tracking = ws.tracking_snapshot();
    ws.edit("plans/break.yaml", |s| format!("{s}# edited\n"));
    ws.run(&["resume", "--yes", "--skip", "camden"])
        .code(2)
        .stderr_contains("changed since run")
        .stderr_contains("--allow-changed-plan");
    // A failed trust needs --retry or --skip.
    ws.run(&["resume", "--yes", "--allow-changed-plan"])
        .code(2)
        .stderr_contains("camden");
    assert_eq!(tracking, ws.tracking_snapshot());
    // Skipping camden finishes the rest and leaves camden where it was.
    let camden_before = ws.db("camden").applied_versions();
    ws.run(&[
        "resume",
        "--yes",
        "--allow-changed-plan",
        "--skip",
        "camden",
    ])
    .success();
    assert_eq!(ws.db("camden").applied_versions(), camden_before);
    let (version, _) = next_version();
    for id in ws.trust_ids().into_iter().filter(|id| id != "camden") {
        assert!(ws.db(&id).applied_versions().contains(&version), "{id}");
    }
}

/// Two migrations after the last one, in syntax only PostgreSQL accepts (an identity column, an
/// array, `CREATE OR REPLACE VIEW`, a `DO` block: SQLite answers "near OR: syntax error"). The
/// first creates `consent`, the second adds a column; returns their versions.
fn add_postgres_only_migrations(ws: &Workspace) -> (i64, i64) {
    let (first, p1) = next_version();
    let second = first + 1;
    let p2 = version_prefix(second);
    ws.write(
        format!("migrations/{p1}_consent.up.sql"),
        "CREATE TABLE consent (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, patient_id bigint NOT NULL, scopes text[] NOT NULL DEFAULT '{}'::text[]);\n\
         CREATE OR REPLACE VIEW consent_scopes AS SELECT id, cardinality(scopes) AS n FROM consent;\n\
         DO $$ BEGIN INSERT INTO consent (patient_id, scopes) VALUES (1, ARRAY['gp']); END $$;\n",
    );
    ws.write(
        format!("migrations/{p1}_consent.down.sql"),
        "DROP VIEW consent_scopes;\nDROP TABLE consent;\n",
    );
    ws.write(
        format!("migrations/{p2}_consent_withdrawn.up.sql"),
        "ALTER TABLE consent ADD COLUMN withdrawn_at timestamptz;\n\
         CREATE OR REPLACE VIEW consent_open AS SELECT id FROM consent WHERE withdrawn_at IS NULL;\n",
    );
    ws.write(
        format!("migrations/{p2}_consent_withdrawn.down.sql"),
        "DROP VIEW consent_open;\nALTER TABLE consent DROP COLUMN withdrawn_at;\n",
    );
    (first, second)
}

/// Scratch databases of rollback's check on the test cluster, once every rollback that may be
/// checking at the moment (another test's, running concurrently) has had time to drop its own:
/// empty unless one was left behind.
fn rollback_scratch_left() -> Vec<String> {
    let admin = Db::Postgres(url_with_db(&pg_admin_url(), "postgres"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let left = admin.query_strings(
            "SELECT datname::text FROM pg_database WHERE datname LIKE 'flotilla\\_rollback\\_check\\_%'",
        );
        if left.is_empty() || std::time::Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn postgres_rollback_checks_the_patient_data_tables_on_postgres_itself() {
    let ws = postgres_workspace("rollback_pg_only");
    ws.run(&["demo", "--seed-only", "--patients", "20"])
        .success();
    let (first, second) = add_postgres_only_migrations(&ws);
    let pilot = vec!["camden".to_string(), "islington".to_string()];
    ws.write_target_plan("consent.yaml", second, &[("pilot", pilot.clone())]);
    ws.write_target_plan("consent-checked.yaml", second, &[("pilot", pilot)]);
    ws.edit("plans/consent-checked.yaml", |s| {
        format!("{s}health:\n  integrity:\n    patient: [id, nhs_number]\n    consent: [id, patient_id]\n")
    });
    ws.run(&["rollout", "plans/consent.yaml", "--yes"])
        .success();
    for id in ["camden", "islington"] {
        assert_eq!(version_of(&ws, id), second, "{id}");
    }
    let first_s = first.to_string();
    // The integrity tables exist at the target: the schema is built on PostgreSQL (where the
    // migrations parse), so the rollback runs without --force, verified.
    ws.run(&[
        "rollback",
        "plans/consent-checked.yaml",
        "--trust",
        "camden",
        "--to",
        &first_s,
        "--yes",
    ])
    .success()
    .stdout_contains("(1 down migrations)");
    assert_eq!(version_of(&ws, "camden"), first);
    assert!(
        rollback_scratch_left().is_empty(),
        "the scratch database is dropped"
    );
    // A down that would drop an integrity table (consent did not exist before `first`) is
    // still refused without --force, nothing changed.
    let tracking = ws.tracking_snapshot();
    let below = (first - 1).to_string();
    ws.run(&[
        "rollback",
        "plans/consent-checked.yaml",
        "--trust",
        "camden",
        "--to",
        &below,
        "--yes",
    ])
    .code(2)
    .stderr_contains("trust 'camden': at ")
    .stderr_contains("would destroy them")
    .stderr_contains("consent")
    .stderr_contains("--force");
    assert_eq!(tracking, ws.tracking_snapshot());
    assert!(
        rollback_scratch_left().is_empty(),
        "the scratch database is dropped"
    );
    // A plan that names no integrity tables has nothing to check: the same rollback runs
    // without --force.
    ws.run(&[
        "rollback",
        "plans/consent.yaml",
        "--trust",
        "islington",
        "--to",
        &below,
        "--yes",
    ])
    .success();
    assert_eq!(version_of(&ws, "islington"), first - 1);
    assert!(rollback_scratch_left().is_empty());
}
