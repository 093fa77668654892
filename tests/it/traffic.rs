//! Simulated clinicians during a rollout (`demo --traffic`), on SQLite and Postgres: a clean
//! rollout under live traffic upgrades every trust without a false halt (integrity tolerates the
//! clinicians' new notes), an injected fault still halts the pilot and the blast radius is
//! reported, and the report's figures are the traffic's own record. Plus the safe defaults:
//! the traffic only runs on demo databases, and a migration whose first statement reads is not
//! failed by a concurrent writer on SQLite.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::{create_databases, Db, Outcome, Spawned, Workspace};
use serde_json::{json, Value};

const PLAN: &str = "plans/rio-5.1.yaml";
const PATIENTS: &str = "300";
/// Two pilot trusts, two of the first twelve, one more London trust, one in the South.
const ESTATE: &[&str] = &[
    "camden",
    "islington",
    "barnet",
    "bexley",
    "brent",
    "kent-community",
];

fn quick_soak(ws: &Workspace) {
    ws.replace(
        PLAN,
        "soak: { rounds: 2, interval: 1s }",
        "soak: { rounds: 1, interval: 300ms }",
    );
}

fn sqlite_workspace() -> Workspace {
    let ws = Workspace::new();
    ws.keep_trusts(ESTATE);
    quick_soak(&ws);
    ws
}

fn postgres_workspace(test: &str) -> Workspace {
    let mut ws = Workspace::new();
    ws.keep_trusts(ESTATE);
    quick_soak(&ws);
    let ids: Vec<String> = ESTATE.iter().map(|s| s.to_string()).collect();
    let dbs = create_databases(test, &ids);
    ws.write_pg_inventory(&dbs);
    ws.edit_inventory(|inv| {
        inv["defaults"] = json!({ "local_migrations": "estate/local/{id}" });
    });
    ws
}

fn demo(ws: &Workspace, rate: &str, extra: &[&str]) -> Outcome {
    let mut args = vec![
        "demo",
        "--patients",
        PATIENTS,
        "--traffic",
        rate,
        "--report-dir",
        "report",
    ];
    args.extend_from_slice(extra);
    ws.run(&args)
}

fn versions(ws: &Workspace) -> BTreeMap<String, i64> {
    ws.status()
        .into_iter()
        .map(|(id, t)| (id, t["version"].as_i64().unwrap_or(-1)))
        .collect()
}

fn state(ws: &Workspace) -> Db {
    Db::Sqlite(ws.path(".flotilla/state.db"))
}

/// The traffic's report as the run keeps it in the state database.
fn stored_traffic(ws: &Workspace) -> Value {
    let bodies = state(ws).query_strings("SELECT body FROM flotilla_traffic");
    assert_eq!(bodies.len(), 1, "one run, one traffic record");
    serde_json::from_str(&bodies[0]).unwrap()
}

fn stored_trust<'a>(traffic: &'a Value, id: &str) -> &'a Value {
    traffic["trusts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["trust"] == id)
        .unwrap_or_else(|| panic!("no traffic figures for {id}: {traffic}"))
}

/// Figures of one trust counted straight from the traffic's own record (report/traffic.jsonl).
#[derive(Debug, Default, PartialEq, Eq)]
struct Counted {
    actions: u64,
    failed: u64,
    saves: u64,
    failed_saves: u64,
    vanished: u64,
}

fn counted_from_record(ws: &Workspace) -> BTreeMap<String, Counted> {
    let text = ws.read("report/traffic.jsonl");
    let mut out: BTreeMap<String, Counted> = BTreeMap::new();
    let mut vanished: BTreeMap<String, std::collections::BTreeSet<i64>> = BTreeMap::new();
    for line in text.lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        let trust = r["trust"].as_str().unwrap_or_default().to_string();
        match r["record"].as_str().unwrap() {
            "action" => {
                let c = out.entry(trust).or_default();
                let failed = r.get("error").is_some();
                c.actions += 1;
                c.failed += u64::from(failed);
                if r["kind"] == "save-note" {
                    c.saves += u64::from(!failed);
                    c.failed_saves += u64::from(failed);
                }
            }
            "vanished" => {
                vanished
                    .entry(trust)
                    .or_default()
                    .insert(r["note"].as_i64().unwrap());
            }
            _ => {}
        }
    }
    for (t, notes) in vanished {
        out.entry(t).or_default().vanished = notes.len() as u64;
    }
    out
}

/// The report's figures per trust are the record's, in the stored report, in the HTML page and
/// in `flotilla report latest`.
fn report_agrees_with_the_record(ws: &Workspace) -> Value {
    let traffic = stored_traffic(ws);
    let counted = counted_from_record(ws);
    let html = ws.read("report/index.html");
    let start = html
        .find(r#"<h2 id="clinicians">"#)
        .expect("the report has the clinicians' section");
    let section = &html[start..];
    let section = &section[..section[4..].find("<h2").map_or(section.len(), |e| e + 4)];
    let summary = ws.run(&["report", "latest"]);
    summary.success().stdout_contains("blast radius:");
    for id in ESTATE {
        let c = counted
            .get(*id)
            .unwrap_or_else(|| panic!("the record has no action on {id}"));
        assert!(c.actions > 20, "{id}: {c:?}");
        let s = stored_trust(&traffic, id);
        let stored = Counted {
            actions: s["actions"].as_u64().unwrap(),
            failed: s["failed"].as_u64().unwrap(),
            saves: s["saves"].as_u64().unwrap(),
            failed_saves: s["failed_saves"].as_u64().unwrap(),
            vanished: s["vanished"].as_u64().unwrap(),
        };
        assert_eq!(&stored, c, "{id}: stored figures against the record");
        // The HTML row of the trust: its link, then its action and failure counts.
        // Linked to the trust's section when it took part in the run.
        let linked = format!("<td><a href=\"#trust-{id}\">{id}</a></td><td>");
        let plain = format!("<td>{id}</td><td>");
        let row = section
            .split("<tr>")
            .find(|r| r.starts_with(&linked) || r.starts_with(&plain))
            .unwrap_or_else(|| panic!("no clinicians row for {id} in the HTML"));
        assert!(
            row.contains(&format!(
                "<td class=\"num\">{}</td><td class=\"num\">{}</td>",
                c.actions, c.failed
            )),
            "{id}: the HTML row shows {} actions, {} failed: {row}",
            c.actions,
            c.failed
        );
        let line = summary
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id) && l.contains(" ms"))
            .unwrap_or_else(|| panic!("no clinicians line for {id}\n{}", summary.describe()));
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[1], c.actions.to_string(), "{line}");
        assert_eq!(fields[2], c.failed.to_string(), "{line}");
    }
    assert_eq!(
        traffic["actions"].as_u64().unwrap(),
        counted.values().map(|c| c.actions).sum::<u64>()
    );
    traffic
}

/// The post-upgrade integrity figures of `id`: they cover the range of note ids the baseline
/// held, and count the notes clinicians added since, which they leave out.
fn notes_left_out_after_the_upgrade(ws: &Workspace, id: &str) -> i64 {
    let bodies = state(ws).query_strings(&format!(
        "SELECT body FROM flotilla_measurements WHERE trust = '{id}' AND window_label = 'post-upgrade'"
    ));
    assert!(!bodies.is_empty(), "{id} has a post-upgrade measurement");
    let snap = &serde_json::from_str::<Value>(&bodies[0]).unwrap()["snapshot"];
    assert_eq!(snap["coverage"]["clinical_note"]["rows"], "range", "{snap}");
    snap["newer_rows"]["clinical_note"].as_i64().unwrap_or(0)
}

fn clean_rollout_under_traffic(ws: &Workspace) {
    let out = demo(ws, "20", &[]);
    out.success();
    assert!(
        versions(ws).values().all(|v| *v == 130),
        "every trust reaches 5.1\n{}",
        out.describe()
    );
    assert_eq!(
        out.stdout.matches("healthy after upgrade").count(),
        ESTATE.len(),
        "{}",
        out.describe()
    );
    out.stdout_contains("blast radius: 0 of 6 upgraded trust(s) hurt");
    let traffic = report_agrees_with_the_record(ws);
    for id in ESTATE {
        let t = stored_trust(&traffic, id);
        assert_eq!(t["vanished"], 0, "{id}: {t}");
        assert_eq!(t["missing_at_end"], 0, "{id}: {t}");
        assert_eq!(t["hurt"]["failed"], 0, "{id}: {t}");
        // Every saved note is in the trust's database, marked, above the seeded notes.
        let db = ws.db(id);
        let marked = db
            .query_i64("SELECT COUNT(*) FROM clinical_note WHERE body LIKE '[flotilla-traffic %'");
        assert_eq!(marked, t["saves"].as_i64().unwrap(), "{id}");
        let lowest =
            db.query_i64("SELECT MIN(id) FROM clinical_note WHERE body LIKE '[flotilla-traffic %'");
        assert!(
            lowest > 900,
            "{id}: traffic note ids start above the seeded ones: {lowest}"
        );
    }
    // The gate passed every trust although clinicians saved notes between its baseline and
    // its post-upgrade window (a trust alone in a short wave may have had none in between).
    let left_out: Vec<i64> = ESTATE
        .iter()
        .map(|id| notes_left_out_after_the_upgrade(ws, id))
        .collect();
    assert!(
        left_out.iter().filter(|n| **n > 0).count() >= 2,
        "notes added between baseline and post-upgrade window, per trust: {left_out:?}"
    );
}

#[test]
fn sqlite_clean_rollout_under_traffic_upgrades_every_trust_and_reports_the_clinicians() {
    let _alone = crate::common::alone();
    clean_rollout_under_traffic(&sqlite_workspace());
}

#[test]
fn postgres_clean_rollout_under_traffic_upgrades_every_trust_and_reports_the_clinicians() {
    let _alone = crate::common::alone();
    clean_rollout_under_traffic(&postgres_workspace("traffic_clean"));
}

/// The pilot halts on camden, which is rolled back; no later wave is touched or exposed; the
/// report agrees with the traffic's record and no trust but camden is hurt.
fn fault_under_traffic_halts_the_pilot(
    ws: &Workspace,
    kind: &str,
    rate: &str,
    reason: &str,
) -> Value {
    let out = demo(
        ws,
        rate,
        &["--inject-regression", &format!("camden:{kind}")],
    );
    out.code(3)
        .stderr_contains("camden")
        .stderr_contains(reason);
    let v = versions(ws);
    assert_eq!(v["camden"], 80, "camden is back on 5.0\n{}", out.describe());
    assert_eq!(v["islington"], 130, "{}", out.describe());
    for later in ["barnet", "bexley", "brent", "kent-community"] {
        assert_eq!(
            v[later],
            80,
            "{later} must not be touched\n{}",
            out.describe()
        );
    }
    out.stdout_contains("blast radius: ");
    let traffic = report_agrees_with_the_record(ws);
    let blast = &traffic["blast"];
    assert_eq!(blast["trusts_upgraded"], 2, "{blast}");
    assert!(
        blast["trusts_hurt"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t == "camden"),
        "only camden ran the faulty upgrade: {blast}"
    );
    for later in ["barnet", "bexley", "brent", "kent-community"] {
        let t = stored_trust(&traffic, later);
        assert_eq!(t["exposed"], 0, "{later} never ran the new version: {t}");
        assert_eq!(t["hurt"]["actions"], 0, "{later}: {t}");
    }
    traffic
}

#[test]
fn sqlite_lost_writes_under_traffic_halt_the_pilot_and_report_the_blast_radius() {
    let _alone = crate::common::alone();
    let ws = sqlite_workspace();
    // A faster rate: camden runs the faulty version for about a second before it is rolled
    // back, and the test needs saves in that second.
    let traffic =
        fault_under_traffic_halts_the_pilot(&ws, "lost-writes", "40", "data not reliably saved");
    // Notes saved while the fault was in place are gone for good: vanished, hurt, missing at
    // the end; the blast radius is camden's.
    let blast = &traffic["blast"];
    assert_eq!(blast["trusts_hurt"], json!(["camden"]), "{blast}");
    let camden = stored_trust(&traffic, "camden");
    let vanished = camden["vanished"].as_u64().unwrap();
    assert!(vanished > 0, "{camden}");
    assert_eq!(
        camden["hurt"]["vanished"].as_u64().unwrap(),
        vanished,
        "{camden}"
    );
    assert_eq!(
        camden["missing_at_end"].as_u64().unwrap(),
        vanished,
        "{camden}"
    );
    assert_eq!(camden["restored"], 0, "{camden}");
    assert_eq!(
        camden["hurt"]["actions"], blast["hurt"]["actions"],
        "{blast}"
    );
    // Of those, the ones noticed before the halt: a vanished note counts from when a clinician
    // found it gone, so a gate that halts within a second of the upgrade may leave none.
    assert!(
        blast["hurt_before_halt"].as_u64().unwrap() <= blast["hurt"]["actions"].as_u64().unwrap(),
        "{blast}"
    );
    assert_eq!(
        ws.db("camden")
            .query_i64("SELECT COUNT(*) FROM clinical_note WHERE body LIKE '[flotilla-traffic %'"),
        camden["saves"].as_i64().unwrap() - vanished as i64
    );
    let out_line = format!(
        "<b>Blast radius:</b> 1 of 2 upgraded trust(s) hurt (camden): {} clinician action(s) hurt",
        blast["hurt"]["actions"]
    );
    assert!(
        ws.read("report/index.html").contains(&out_line),
        "{out_line}"
    );
}

#[test]
fn postgres_data_loss_under_traffic_is_caught_while_new_notes_are_tolerated() {
    let _alone = crate::common::alone();
    let ws = postgres_workspace("traffic_loss");
    let traffic =
        fault_under_traffic_halts_the_pilot(&ws, "data-loss", "20", "integrity of 'clinical_note'");
    // The figures that failed camden left the notes clinicians saved since its baseline out.
    assert!(notes_left_out_after_the_upgrade(&ws, "camden") > 0);
    // The migration took every even note, clinicians' too, and the rollback put them back
    // (the traffic may or may not have looked in the second they were gone): none missing at
    // the end, the seeded notes all there, every saved note kept.
    let camden = stored_trust(&traffic, "camden");
    assert_eq!(camden["missing_at_end"], 0, "{camden}");
    assert_eq!(camden["restored"], camden["vanished"], "{camden}");
    let db = ws.db("camden");
    assert_eq!(
        db.query_i64(
            "SELECT COUNT(*)::bigint FROM clinical_note WHERE body NOT LIKE '[flotilla-traffic %'"
        ),
        900
    );
    assert_eq!(
        db.query_i64(
            "SELECT COUNT(*)::bigint FROM clinical_note WHERE body LIKE '[flotilla-traffic %'"
        ),
        camden["saves"].as_i64().unwrap()
    );
}

#[test]
fn the_traffic_refuses_a_database_that_is_not_a_demo_database() {
    let _alone = crate::common::alone();
    let ws = sqlite_workspace();
    ws.run(&["demo", "--seed-only", "--patients", "50"])
        .success();
    ws.db("brent").exec("DROP TABLE _flotilla_demo");
    let before = ws.db("brent").count("clinical_note");
    let out = ws.run(&[
        "traffic",
        "--plan",
        PLAN,
        "--out",
        "traffic.jsonl",
        "--duration",
        "1s",
    ]);
    out.code(2)
        .stderr_contains("trust 'brent'")
        .stderr_contains("not a demo database");
    assert_eq!(ws.db("brent").count("clinical_note"), before);
    assert!(!ws.exists("traffic.jsonl"), "nothing ran, nothing recorded");
    // A trust outside the plan is refused too.
    ws.write_target_plan("one.yaml", 130, &[("only", vec!["camden".into()])]);
    ws.run(&[
        "traffic",
        "--plan",
        "plans/one.yaml",
        "--out",
        "t.jsonl",
        "--duration",
        "1s",
        "islington",
    ])
    .code(2)
    .stderr_contains("trust 'islington' is not in the plan");
}

/// On SQLite a migration whose first statement only reads must wait for a clinician's write
/// transaction, not fail with "database is locked" (a deferred transaction cannot wait to
/// upgrade its read lock).
#[test]
fn sqlite_a_migration_that_reads_first_waits_for_a_concurrent_writer() {
    let _alone = crate::common::alone();
    let ws = sqlite_workspace();
    ws.keep_trusts(&["camden"]);
    ws.run(&[
        "demo",
        "--seed-only",
        "--patients",
        "50",
        "--seed-release",
        "5.1",
    ])
    .success();
    let (version, prefix) = crate::common::next_version();
    ws.write(
        format!("migrations/{prefix}_reads_first.up.sql"),
        "SELECT COUNT(*) FROM patient;\nCREATE TABLE reads_first (id INTEGER PRIMARY KEY);\n",
    );
    ws.write(
        format!("migrations/{prefix}_reads_first.down.sql"),
        "DROP TABLE reads_first;\n",
    );
    ws.write_target_plan("reads.yaml", version, &[("only", vec!["camden".into()])]);
    let Db::Sqlite(path) = ws.db("camden") else {
        unreachable!()
    };
    // A clinician's write transaction, held for 2 s while the rollout starts (the run lock is
    // taken first, so that the 2 s are not spent waiting for another test's run).
    let _serial = crate::common::serial();
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let writer = std::thread::spawn(move || {
        crate::common::block_on(async move {
            use sqlx::Connection;
            let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(&path);
            let mut c = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
            sqlx::raw_sql(
                "BEGIN IMMEDIATE; INSERT INTO audit_log (id, at, staff_id, action, entity, entity_id) VALUES (999999, '2024-01-01', 1, 'view', 'patient', 1);",
            )
            .execute(&mut c)
            .await
            .unwrap();
            held_tx.send(()).unwrap();
            tokio::time::sleep(Duration::from_secs(2)).await;
            sqlx::raw_sql("COMMIT").execute(&mut c).await.unwrap();
            c.close().await.ok();
        })
    });
    held_rx.recv().unwrap();
    let out = Spawned::start(&ws, &["rollout", "plans/reads.yaml", "--yes"])
        .wait(Duration::from_secs(60));
    writer.join().unwrap();
    out.success();
    assert!(ws.db("camden").table_exists("reads_first"));
    assert_eq!(ws.db("camden").applied_versions().last(), Some(&version));
}
