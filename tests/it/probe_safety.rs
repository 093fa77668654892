//! Probes cannot destroy data: a destructive probe statement is refused before anything runs,
//! naming the file, line and statement; a statement the parser cannot judge (a user function
//! that writes) still cannot write, because probes run read-only; and every record the write
//! probe makes is removed again, even after the run is killed in the middle of a window.

use std::path::PathBuf;
use std::time::Duration;

use crate::common::{create_databases, Spawned, Workspace};
use flotilla::config::health::{Health, Invariant, LatencyProbe};
use flotilla::config::Inventory;
use flotilla::health::probes::{measure, Scope};

const PLAN: &str = "plans/rio-5.1.yaml";

/// 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("'{needle}' is not in the plan"))
        + 1
}

/// `validate` refuses the plan with exit 2, and the error names the file and line of the
/// statement, the field, the statement and why.
fn refused(edit: impl FnOnce(&Workspace), at: &str, field: &str, statement: &str, why: &str) {
    let ws = Workspace::new();
    edit(&ws);
    let line = line_of(&ws.read(PLAN), at);
    let out = ws.run(&["validate", PLAN]);
    out.code(2)
        .no_panic()
        .stderr_contains(&format!("{PLAN}:{line}:"))
        .stderr_contains(field)
        .stderr_contains(statement)
        .stderr_contains(why);
    // Refused at load, so every command that reads the plan refuses it: `health` too, before it
    // writes anything.
    ws.run(&["health", "--plan", PLAN, "camden"])
        .code(2)
        .stderr_contains(field);
}

#[test]
fn validate_refuses_a_cleanup_that_deletes_every_note() {
    refused(
        |ws| {
            ws.replace(
                PLAN,
                r#"cleanup: "DELETE FROM clinical_note WHERE id = $1""#,
                r#"cleanup: "DELETE FROM clinical_note""#,
            )
        },
        r#"cleanup: "DELETE FROM clinical_note""#,
        "health.write_probe.cleanup",
        "\"DELETE FROM clinical_note\"",
        "no WHERE, so it deletes every row",
    );
}

#[test]
fn validate_refuses_an_invariant_that_switches_the_read_only_guard_off() {
    let sql = "SELECT COUNT(*) FROM patient WHERE set_config('default_transaction_read_only', 'off', false) = 'x'";
    refused(
        |ws| {
            ws.replace(
                PLAN,
                "  invariants:\n",
                &format!(
                    "  invariants:\n    - name: guard-off\n      sql: \"{sql}\"\n      expect: 0\n"
                ),
            )
        },
        "set_config(",
        "health.invariants 'guard-off'.sql",
        sql,
        "set_config()",
    );
}

#[test]
fn validate_refuses_a_latency_probe_with_a_data_modifying_cte() {
    let sql = "WITH gone AS (DELETE FROM clinical_note RETURNING id) SELECT COUNT(*) FROM gone";
    refused(
        |ws| {
            ws.replace(
                PLAN,
                "    - name: caseload\n",
                &format!("    - name: wipe\n      sql: \"{sql}\"\n    - name: caseload\n"),
            )
        },
        "WITH gone AS",
        "health.latency_probes 'wipe'.sql",
        sql,
        "data-modifying DELETE",
    );
}

#[test]
fn validate_refuses_a_write_probe_that_inserts_more_than_one_row() {
    refused(
        |ws| {
            ws.replace(
                PLAN,
                "CURRENT_TIMESTAMP, 'contact', $2)",
                "CURRENT_TIMESTAMP, 'contact', $2), ($1 - 1, 1, 1, CURRENT_TIMESTAMP, 'contact', $2)",
            )
        },
        // A folded block scalar: its line is the statement's first line.
        "      INSERT INTO clinical_note (id, patient_id, author_id",
        "health.write_probe.insert",
        "INSERT INTO clinical_note (id, patient_id, author_id, written_at, note_type, body)",
        "inserts 2 rows",
    );
}

#[test]
fn validate_refuses_a_soak_too_short_for_the_plan_s_loss_rate_with_the_figures() {
    let ws = Workspace::new();
    ws.replace(PLAN, "max_loss_rate: 5%", "max_loss_rate: 0.5%");
    ws.replace(
        PLAN,
        "soak: { rounds: 2, interval: 1s }",
        "soak: { rounds: 1, interval: 1s }",
    );
    // 0.5% at 99% needs 919 writes; two windows would need 460 each, over the 250 a window
    // may make.
    ws.run(&["validate", PLAN])
        .code(2)
        .no_panic()
        .stderr_contains("wave 'pilot'")
        .stderr_contains("919 writes")
        .stderr_contains("give it at least 3 rounds");
    let ws = Workspace::new();
    let out = ws.run(&["validate", PLAN]);
    out.success()
        .stdout_contains("30 writes per window × 3 windows (post-upgrade + 2 soak rounds) = 90")
        .stdout_contains("90 needed to catch a 5% loss rate at 99% confidence");
    let out = ws.run(&["demo", "--seed-only", "--patients", "50"]);
    out.success();
    ws.run(&["plan", PLAN])
        .success()
        .stdout_contains("write probe (pilot, first-twelve, london, south): 30 writes per window");
}

// ---------------------------------------------------------------------------------------------
// At run time: a statement the parser lets through still cannot write.

fn trust(ws: &Workspace, id: &str) -> flotilla::config::Trust {
    let inventory = Inventory::load(&ws.path("trusts.yaml")).expect("inventory loads");
    inventory.get(id).expect("trust in inventory").clone()
}

/// A latency probe that calls `purge()` (a function of the trust's that deletes every note:
/// the parser cannot know what a user function does) after an invariant that switches the
/// session's read-only default off.
fn hostile(purge: &str) -> Health {
    Health {
        invariants: vec![Invariant {
            name: "guard-off".into(),
            sql: "SELECT COUNT(*) FROM staff WHERE set_config('default_transaction_read_only', 'off', false) = 'x'".into(),
            expect: 0,
        }],
        latency_probes: vec![LatencyProbe {
            name: "purge".into(),
            sql: purge.into(),
            params: None,
            samples: 5,
            concurrency: 1,
        }],
        ..Health::default()
    }
}

fn run_hostile(ws: &Workspace, purge: &str) -> flotilla::health::probes::Snapshot {
    let t = trust(ws, "camden");
    crate::common::block_on(measure(
        &t,
        &hostile(purge),
        &Default::default(),
        &Default::default(),
        flotilla::health::probes::Rows::Fresh,
        Scope::Soak,
        None,
    ))
}

#[test]
fn postgres_probes_run_in_read_only_transactions_a_statement_cannot_leave() {
    let mut ws = Workspace::new();
    ws.keep_trusts(&["camden"]);
    let dbs = create_databases("probe_read_only", &["camden".to_string()]);
    ws.write_pg_inventory(&dbs);
    ws.run(&["demo", "--seed-only", "--patients", "50"])
        .success();
    let db = ws.db("camden");
    db.exec(
        "CREATE FUNCTION purge() RETURNS bigint LANGUAGE plpgsql AS $$ \
         BEGIN DELETE FROM clinical_note; RETURN 1; END $$",
    );
    let notes = db.count("clinical_note");
    assert!(notes > 0);
    let snap = run_hostile(&ws, "SELECT purge()");
    // The invariant ran (in its own read-only transaction) ...
    assert!(
        matches!(snap.invariants.get("guard-off"), Some(Ok(_))),
        "{snap:?}"
    );
    // ... and the next probe, in a new read-only transaction, could not write.
    let err = snap.latency["purge"]
        .as_ref()
        .expect_err("the purge must fail");
    assert!(err.contains("read-only transaction"), "{err}");
    assert_eq!(db.count("clinical_note"), notes, "a probe deleted notes");
    // A data-modifying CTE fails the same way.
    let snap = run_hostile(
        &ws,
        "WITH gone AS (DELETE FROM clinical_note RETURNING id) SELECT COUNT(*) FROM gone",
    );
    let err = snap.latency["purge"]
        .as_ref()
        .expect_err("the CTE must fail");
    assert!(err.contains("read-only transaction"), "{err}");
    assert_eq!(db.count("clinical_note"), notes, "a probe deleted notes");
}

#[test]
fn sqlite_probes_run_on_read_only_connections() {
    let ws = Workspace::new();
    ws.keep_trusts(&["camden"]);
    ws.run(&["demo", "--seed-only", "--patients", "50"])
        .success();
    let notes = ws.db("camden").count("clinical_note");
    // SQLite has no data-modifying CTE; a bare DELETE (which the parser would refuse) shows
    // the connection itself cannot write.
    let snap = run_hostile(&ws, "DELETE FROM clinical_note");
    let err = snap.latency["purge"]
        .as_ref()
        .expect_err("the DELETE must fail");
    assert!(err.contains("readonly"), "{err}");
    assert_eq!(ws.db("camden").count("clinical_note"), notes);
}

// ---------------------------------------------------------------------------------------------
// Crash safety of the sampled writes.

/// Probe records (negative ids) in camden's notes, or 0 when the file cannot be read now.
fn probe_records(path: &PathBuf) -> i64 {
    crate::common::block_on(async {
        use sqlx::{ConnectOptions, Connection};
        let Ok(mut c) = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .connect()
            .await
        else {
            return 0;
        };
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM clinical_note WHERE id < 0")
            .fetch_one(&mut c)
            .await
            .unwrap_or(0);
        c.close().await.ok();
        n
    })
}

#[test]
fn resume_removes_every_sampled_write_a_killed_run_left_behind() {
    let ws = Workspace::new();
    // One trust per wave of the plan.
    ws.keep_trusts(&[
        "camden",
        "islington",
        "barnet",
        "bexley",
        "brent",
        "kent-community",
    ]);
    ws.run(&["demo", "--seed-only", "--patients", "200"])
        .success();
    let notes = ws.db("camden").count("clinical_note");
    let camden = ws.path("estate/camden.db");
    let _serial = crate::common::serial();
    let run = Spawned::start(&ws, &["rollout", PLAN, "--yes"]);
    // Kill it while a window's writes are in the table (several at once: they are removed
    // together at the end of the window).
    let mut seen = 0;
    while run.started.elapsed() < Duration::from_secs(120) {
        seen = probe_records(&camden);
        if seen >= 5 {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let (out, running) = run.kill();
    assert!(
        running,
        "the rollout ended before a window was caught\n{}",
        out.describe()
    );
    assert!(
        seen >= 5,
        "no write window was caught in the table\n{}",
        out.describe()
    );
    let left = probe_records(&camden);
    assert!(
        left > 0,
        "the kill left nothing to clean up (the window ended first)"
    );
    drop(_serial);
    let out = ws.run(&["resume", "--yes"]);
    out.success();
    assert_eq!(
        ws.db("camden")
            .query_i64("SELECT COUNT(*) FROM clinical_note WHERE id < 0"),
        0,
        "resume must remove every record of the interrupted window ({left} were left)\n{}",
        out.describe()
    );
    assert_eq!(ws.db("camden").count("clinical_note"), notes);
}
