//! CI mode: `rollout --dry-run` prints the real SQL and changes nothing; `rollout --rehearse`
//! runs the plan on disposable copies, gives the real run's verdicts and leaves nothing behind.
//! SQLite and Postgres (FLOTILLA_TEST_PG_URL: run scripts/test).

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};

use crate::common::*;
use serde_json::Value;

const SMALL: &str = "plans/small.yaml";
const TRUSTS: [&str; 4] = ["camden", "islington", "barnet", "kent-medway-mh"];

/// Two waves over four trusts, no health checks: the engine's SQL, quickly.
fn write_small_plan(ws: &Workspace) {
    ws.write(
        SMALL,
        "name: small\nrelease: \"5.1\"\nconcurrency: 2\nwaves:\n  \
         - name: pilot\n    trusts: [camden, islington]\n  \
         - name: rest\n    trusts: [barnet, kent-medway-mh]\n",
    );
}

/// The rio-5.1 plan's health section over the four trusts, with a short soak; the second wave
/// needs approval, as in the real plan.
fn write_gated_plan(ws: &Workspace) {
    let rio = ws.read("plans/rio-5.1.yaml");
    let health = &rio[rio.find("\nhealth:").expect("rio-5.1 has a health section")..];
    let health = health.replace(
        "soak: { rounds: 2, interval: 1s }",
        "soak: { rounds: 1, interval: 100ms }",
    );
    ws.write(
        SMALL,
        format!(
            "name: small\nrelease: \"5.1\"\nconcurrency: 2\nwaves:\n  \
             - name: pilot\n    trusts: [camden, islington]\n  \
             - name: rest\n    trusts: [barnet, kent-medway-mh]\n    approval: required\n{health}"
        ),
    );
}

/// The dry-run's statements, per trust, from its `-- ----- trust ID (...) -----` headers up to
/// the next header.
fn sql_by_trust(dry_run: &str) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in dry_run.lines() {
        if let Some(rest) = line.strip_prefix("-- ----- trust ") {
            let id = rest.split_whitespace().next().unwrap().to_string();
            current = Some(id.clone());
            out.insert(id, String::new());
            continue;
        }
        if line.starts_with("-- =====") || line.starts_with("-- trust ") {
            current = None;
        }
        if let Some(id) = &current {
            let section = out.get_mut(id).unwrap();
            section.push_str(line);
            section.push('\n');
        }
    }
    out
}

/// Feed `sql` to a client program's stdin; it must succeed.
fn replay(program: &str, args: &[&str], sql: &str) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(sql.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} failed on the dry-run's SQL:\n{}\n--- sql ---\n{sql}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Tracking rows without the run-time columns (applied_at, duration_ms).
fn tracking(db: &Db) -> Vec<String> {
    db.query_strings(
        "SELECT CAST(version AS TEXT) || '|' || description || '|' || checksum || '|' \
         || CAST(dirty AS TEXT) FROM _flotilla_migrations ORDER BY version",
    )
}

/// The replayed copy and the really migrated trust hold the same schema, data and tracking
/// rows.
fn assert_same_end_state(id: &str, replayed: &Db, real: &Db) {
    let (r, m) = (replayed.crash_check().unwrap(), real.crash_check().unwrap());
    assert_eq!(r.versions, m.versions, "{id}: applied versions");
    assert_eq!(
        r.versions,
        versions_through(release_version("5.1")),
        "{id}: not at 5.1"
    );
    let diff = m.fingerprint.diff(&r.fingerprint);
    assert!(
        diff.is_empty(),
        "{id}: replaying the dry-run's SQL gave a different end state than the real run:\n{diff}"
    );
    assert_eq!(tracking(replayed), tracking(real), "{id}: tracking rows");
}

#[test]
fn sqlite_dry_run_changes_no_byte_and_its_sql_replayed_gives_the_real_end_state() {
    let ws = Workspace::new();
    ws.run(&["demo", "--seed-only", "--patients", "40"])
        .success();
    write_small_plan(&ws);
    let before = ws.file_bytes("estate");

    let out = ws.run(&["rollout", SMALL, "--dry-run"]);
    out.success()
        .stdout_contains("-- lock: exclusive advisory lock")
        .stdout_contains("INSERT INTO _flotilla_migrations");
    assert!(
        before == ws.file_bytes("estate"),
        "--dry-run changed, added or removed a file under estate/"
    );
    assert!(
        !ws.exists(".flotilla"),
        "--dry-run created a state database"
    );
    let sections = sql_by_trust(&out.stdout);
    assert_eq!(
        sections.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        TRUSTS.into_iter().collect::<BTreeSet<_>>(),
        "{}",
        out.describe()
    );

    // Replay each trust's statements with sqlite3 on a copy of its database.
    for (id, sql) in &sections {
        let Db::Sqlite(path) = ws.db(id) else {
            unreachable!()
        };
        let copy = ws.path(format!("replay/{id}.db"));
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        std::fs::copy(&path, &copy).unwrap();
        replay("sqlite3", &["-bail", copy.to_str().unwrap()], sql);
    }
    ws.run(&["rollout", SMALL, "--yes"]).success();
    for id in sections.keys() {
        assert_same_end_state(
            id,
            &Db::Sqlite(ws.path(format!("replay/{id}.db"))),
            &ws.db(id),
        );
    }
}

#[test]
fn postgres_dry_run_changes_nothing_and_its_sql_replayed_with_psql_gives_the_real_end_state() {
    let mut ws = Workspace::new();
    let ids: Vec<String> = TRUSTS.iter().map(|s| s.to_string()).collect();
    let dbs = create_databases("dry_run", &ids);
    ws.write_pg_inventory(&dbs);
    ws.run(&["demo", "--seed-only", "--patients", "40"])
        .success();
    write_small_plan(&ws);
    let before: Vec<_> = ids
        .iter()
        .map(|id| dbs.db(id).crash_check().unwrap())
        .collect();
    let tracking_before: Vec<_> = ids.iter().map(|id| dbs.db(id).tracking_rows()).collect();

    let out = ws.run(&["rollout", SMALL, "--dry-run"]);
    out.success().stdout_contains("pg_try_advisory_lock");
    for (i, id) in ids.iter().enumerate() {
        let after = dbs.db(id).crash_check().unwrap();
        let diff = before[i].fingerprint.diff(&after.fingerprint);
        assert!(
            diff.is_empty(),
            "{id}: --dry-run changed the database:\n{diff}"
        );
        assert_eq!(
            tracking_before[i],
            dbs.db(id).tracking_rows(),
            "{id}: --dry-run changed the tracking table"
        );
    }

    // Replay with psql on copies (taken while nothing else is connected).
    let sections = sql_by_trust(&out.stdout);
    assert_eq!(sections.len(), ids.len(), "{}", out.describe());
    let copies: BTreeMap<String, String> = ids
        .iter()
        .map(|id| (id.clone(), format!("{}_replay", dbs.names[id])))
        .collect();
    pg_admin_exec(
        &ids.iter()
            .map(|id| {
                format!(
                    "CREATE DATABASE \"{}\" TEMPLATE \"{}\"",
                    copies[id], dbs.names[id]
                )
            })
            .collect::<Vec<_>>(),
    );
    for (id, sql) in &sections {
        let url = url_with_db(&dbs.admin_url, &copies[id]);
        replay(
            "psql",
            &["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &url, "-f", "-"],
            sql,
        );
    }
    ws.run(&["rollout", SMALL, "--yes"]).success();
    for id in &ids {
        let replayed = Db::Postgres(url_with_db(&dbs.admin_url, &copies[id]));
        assert_same_end_state(id, &replayed, &dbs.db(id));
    }
}

/// (trust, window, passed) of every health verdict.
type Verdicts = BTreeSet<(String, String, bool)>;

/// Every verdict, and each trust's final status, from an events file.
fn verdicts(ws: &Workspace, file: &str) -> (Verdicts, BTreeMap<String, String>) {
    let mut verdicts = BTreeSet::new();
    let mut finished = BTreeMap::new();
    for line in ws.read(file).lines() {
        let e: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{file}: {e}: {line}"));
        match e["event"].as_str() {
            Some("health_verdict") => {
                let window = e["window"].to_string();
                let passed = e["verdict"] == "pass";
                verdicts.insert((e["trust"].as_str().unwrap().to_string(), window, passed));
            }
            Some("trust_finished") => {
                finished.insert(
                    e["trust"].as_str().unwrap().to_string(),
                    e["status"].as_str().unwrap().to_string(),
                );
            }
            _ => {}
        }
    }
    (verdicts, finished)
}

/// The sample data at 5.0, a fault planted in camden's upgrade (its writes vanish: the write
/// probe fails, whatever the data volume), and the gated plan.
fn seed_with_lost_writes_on_camden(ws: &Workspace) {
    ws.run(&[
        "demo",
        "--seed-only",
        "--patients",
        "40",
        "--inject-regression",
        "camden:lost-writes",
    ])
    .success();
    write_gated_plan(ws);
}

/// Rehearse, then run for real: same exit code, same verdicts and trust outcomes; the rehearsal
/// left the estate as it was.
fn rehearsal_then_real(ws: &Workspace, snapshot: impl Fn() -> Vec<Fingerprint>) {
    let before = snapshot();
    let rehearsal = ws.run(&[
        "rollout",
        SMALL,
        "--rehearse",
        "--events",
        "rehearsal.jsonl",
        "--junit",
        "rehearsal.xml",
        "--report-dir",
        "report",
    ]);
    rehearsal.code(3).stdout_contains("rehearsal");
    // The reports, written from the rehearsal's own journal before it was thrown away.
    let xml = ws.read("rehearsal.xml");
    let doc = roxmltree::Document::parse(&xml).expect("the rehearsal's JUnit is well-formed XML");
    let camden = doc
        .descendants()
        .find(|n| n.has_tag_name("testcase") && n.attribute("name") == Some("camden"))
        .expect("a test case for camden");
    let failure = camden
        .children()
        .find(|n| n.has_tag_name("failure"))
        .unwrap_or_else(|| panic!("camden's test case does not fail:\n{xml}"));
    assert!(
        failure
            .attribute("message")
            .is_some_and(|m| m.contains("write")),
        "camden's failure does not say why: {:?}",
        failure.attribute("message")
    );
    assert!(ws.read("report/index.html").contains("id=\"trust-camden\""));
    assert!(
        before == snapshot(),
        "the rehearsal changed a trust database\n{}",
        rehearsal.describe()
    );
    assert!(
        !ws.exists(".flotilla"),
        "the rehearsal wrote the estate's state database"
    );
    // Without a terminal the approval wave must be approved in advance.
    let real = ws.run(&[
        "rollout",
        SMALL,
        "--approve",
        "rest",
        "--events",
        "real.jsonl",
    ]);
    real.code(3);

    let (rv, rf) = verdicts(ws, "rehearsal.jsonl");
    let (mv, mf) = verdicts(ws, "real.jsonl");
    assert!(
        rv.iter().any(|(t, _, passed)| t == "camden" && !passed),
        "the rehearsal did not fail camden's gate\n{}",
        rehearsal.describe()
    );
    assert_eq!(rv, mv, "rehearsal and real run gave different verdicts");
    assert_eq!(rf, mf, "rehearsal and real run ended trusts differently");
}

#[test]
fn sqlite_rehearsal_gives_the_real_verdicts_and_leaves_the_estate_untouched() {
    let mut ws = Workspace::new();
    ws.keep_trusts(&TRUSTS);
    seed_with_lost_writes_on_camden(&ws);
    // Temporary copies go under the workspace, to see that none is left.
    let tmp = ws.path("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    ws.set_env("TMPDIR", tmp.to_str().unwrap());

    let estate = || {
        TRUSTS
            .iter()
            .map(|id| ws.db(id).crash_check().unwrap().fingerprint)
            .collect::<Vec<_>>()
    };
    let files = ws.file_bytes("estate");
    rehearsal_then_real(&ws, estate);
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "the rehearsal left temporary files in {}",
        tmp.display()
    );
    // Only the real run touched the files (its lock files and migrations).
    assert!(files != ws.file_bytes("estate"));
}

/// Scratch databases of rehearsals still on the test cluster.
fn scratch_databases() -> Vec<String> {
    Db::Postgres(pg_admin_url()).query_strings(
        "SELECT datname::text FROM pg_database WHERE datname LIKE 'flotilla\\_rehearsal\\_%'",
    )
}

#[test]
fn postgres_rehearsal_gives_the_real_verdicts_and_leaves_no_scratch_database_even_when_it_fails() {
    let mut ws = Workspace::new();
    let ids: Vec<String> = TRUSTS.iter().map(|s| s.to_string()).collect();
    let dbs = create_databases("rehearse", &ids);
    ws.write_pg_inventory(&dbs);
    ws.edit_inventory(|inv| {
        inv["defaults"] = serde_json::json!({ "local_migrations": "estate/local/{id}" });
    });
    seed_with_lost_writes_on_camden(&ws);
    assert!(scratch_databases().is_empty(), "{:?}", scratch_databases());

    // A copy that fails halfway: islington's database is gone, the others were copied.
    let inventory = ws.read("trusts.yaml");
    ws.replace(
        "trusts.yaml",
        &format!("/{}", dbs.names["islington"]),
        "/no_such_database",
    );
    let out = ws.run(&["rollout", SMALL, "--rehearse"]);
    out.no_panic().stderr_contains("islington");
    assert_ne!(out.code, Some(0), "{}", out.describe());
    assert!(
        scratch_databases().is_empty(),
        "a failed rehearsal left scratch databases: {:?}\n{}",
        scratch_databases(),
        out.describe()
    );
    ws.write("trusts.yaml", inventory);

    let estate = || {
        ids.iter()
            .map(|id| dbs.db(id).crash_check().unwrap().fingerprint)
            .collect::<Vec<_>>()
    };
    rehearsal_then_real(&ws, estate);
    assert!(
        scratch_databases().is_empty(),
        "the rehearsal left scratch databases: {:?}",
        scratch_databases()
    );
}

#[test]
fn postgres_rehearsal_finds_a_down_that_does_not_undo_its_up_before_running_anything() {
    let mut ws = Workspace::new();
    let ids: Vec<String> = vec!["camden".into(), "islington".into()];
    let dbs = create_databases("rehearse_down", &ids);
    ws.write_pg_inventory(&dbs);
    ws.run(&["demo", "--seed-only", "--patients", "10"])
        .success();
    let (version, prefix) = next_version();
    let stem = format!("{prefix}_add_pronouns");
    ws.write(
        format!("migrations/{stem}.up.sql"),
        "ALTER TABLE patient ADD COLUMN pronouns TEXT;\n",
    );
    // The down forgets the column.
    ws.write(format!("migrations/{stem}.down.sql"), "SELECT 1;\n");
    ws.write_target_plan("down.yaml", version, &[("pilot", ids.clone())]);
    let before: Vec<_> = ids
        .iter()
        .map(|id| dbs.db(id).crash_check().unwrap().fingerprint)
        .collect();

    let out = ws.run(&["rollout", "plans/down.yaml", "--rehearse"]);
    out.code(2)
        .stdout_contains("down-does-not-undo-up")
        .stdout_contains(&format!("{stem}.down.sql"))
        .stdout_contains("pronouns");
    let after: Vec<_> = ids
        .iter()
        .map(|id| dbs.db(id).crash_check().unwrap().fingerprint)
        .collect();
    assert!(
        before == after,
        "the rehearsal changed a trust\n{}",
        out.describe()
    );
    assert!(
        scratch_databases().is_empty(),
        "scratch databases left: {:?}",
        scratch_databases()
    );
}

#[test]
fn with_events_on_stdout_every_stdout_line_is_an_event_and_people_read_stderr() {
    let ws = Workspace::new();
    ws.keep_trusts(&TRUSTS);
    ws.run(&["demo", "--seed-only", "--patients", "10"])
        .success();
    write_small_plan(&ws);
    let out = ws.run(&["rollout", SMALL, "--rehearse", "--events", "-"]);
    out.success()
        .stderr_contains("rehearsal of small passed")
        .stderr_contains("wave 1 pilot");
    let events: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| {
                panic!("stdout line is not an event ({e}): {l}\n{}", out.describe())
            })
        })
        .collect();
    assert_eq!(
        events.first().map(|e| e["event"].clone()),
        Some("run_started".into())
    );
    assert_eq!(
        events.last().map(|e| e["event"].clone()),
        Some("run_finished".into())
    );
}
