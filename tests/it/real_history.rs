//! A real public history, end to end on Postgres: crates.io's 285 diesel migrations
//! (tests/fixtures/crates-io, MIT/Apache-2.0). One trust is migrated the way diesel does it
//! (each `up.sql` run, its version recorded in `__diesel_schema_migrations`), then adopted; the
//! other is migrated by flotilla from empty. Both end with the same schema, the adopted trust's
//! rollout is a no-op, and the history parses on the Postgres parser (but for its one invalid file).

use crate::common::{copy_tree, create_databases, repo_root, Workspace};
use std::path::{Path, PathBuf};

const PLAN: &str = "plans/crates.yaml";

fn history() -> PathBuf {
    repo_root().join("tests/fixtures/crates-io/migrations")
}

/// The migration directories in diesel's order: by version (the name before `_`) with its
/// dashes removed, compared as text, as diesel compares them. Computed here, independently of
/// flotilla's loader.
fn diesel_order(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut dirs: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("up.sql").is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let version = name.split_once('_').unwrap().0.replace('-', "");
            (version, p)
        })
        .collect();
    dirs.sort();
    dirs
}

/// The schema as `table.column type` lines, for comparing two databases.
fn schema(ws: &Workspace, id: &str) -> Vec<String> {
    ws.db(id).query_strings(
        "SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable \
         FROM information_schema.columns WHERE table_schema = 'public' \
         AND table_name NOT IN ('_flotilla_migrations', '__diesel_schema_migrations') \
         ORDER BY table_name, column_name",
    )
}

#[test]
fn crates_io_history_migrated_by_diesel_is_adopted_and_the_same_history_applies_with_flotilla() {
    let migrations = diesel_order(&history());
    assert_eq!(migrations.len(), 285);
    let (last, last_dir) = migrations.last().unwrap().clone();
    let target = flotilla::migrations::version::diesel_key(&last).unwrap();
    // The version as diesel writes it in the directory's name: 2026-07-30-140000-0000.
    let last_name = last_dir.file_name().unwrap().to_string_lossy().into_owned();
    let last_label = last_name.split_once('_').unwrap().0;

    let mut ws = Workspace::new();
    ws.keep_trusts(&["camden", "islington"]);
    let ids = vec!["camden".to_string(), "islington".to_string()];
    ws.write_pg_inventory(&create_databases("real_history", &ids));
    copy_tree(&history(), &ws.path("mig"));
    ws.write_target_plan(
        "crates.yaml",
        target,
        &[("all", vec!["camden".into(), "islington".into()])],
    );

    // camden: migrated by diesel, as diesel does it.
    let camden = ws.db("camden");
    camden.exec(
        "CREATE TABLE __diesel_schema_migrations (version VARCHAR(50) PRIMARY KEY NOT NULL, \
         run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)",
    );
    for (version, dir) in &migrations {
        let up = std::fs::read_to_string(dir.join("up.sql")).unwrap();
        let in_transaction = !std::fs::read_to_string(dir.join("metadata.toml"))
            .unwrap_or_default()
            .contains("run_in_transaction = false");
        if in_transaction {
            camden.exec(&format!(
                "BEGIN;\n{up}\n;\nINSERT INTO __diesel_schema_migrations (version) VALUES ('{version}');\nCOMMIT;"
            ));
        } else {
            camden.exec(&up);
            camden.exec(&format!(
                "INSERT INTO __diesel_schema_migrations (version) VALUES ('{version}')"
            ));
        }
    }

    // Adopt it: every diesel version is a file of the history, so flotilla records them all.
    ws.run(&[
        "adopt",
        PLAN,
        "--migrations",
        "mig",
        "--from",
        "diesel",
        "--trust",
        "camden",
    ])
    .success()
    .stdout_contains("adopted")
    .stdout_contains(&format!("accepted: {last_label}"));
    assert_eq!(camden.applied_versions().len(), 285);
    let adopted = camden.tracking_rows();

    // The rollout: camden has nothing to do; islington gets the whole history from flotilla.
    ws.run(&["rollout", PLAN, "--migrations", "mig", "--yes"])
        .success();
    assert_eq!(camden.tracking_rows(), adopted, "camden was migrated again");
    let islington = ws.db("islington");
    assert_eq!(islington.applied_versions(), camden.applied_versions());
    let (a, b) = (schema(&ws, "camden"), schema(&ws, "islington"));
    assert!(a.len() > 100, "crates.io's schema has {} columns", a.len());
    assert_eq!(a, b, "flotilla and diesel built different schemas");
    ws.run(&["plan", PLAN, "--migrations", "mig"])
        .success()
        .stdout_contains("0 migrations to apply");

    // The whole history on the Postgres parser.
    let lint = ws.run(&[
        "lint",
        "--migrations",
        "mig",
        "--dialect",
        "postgres",
        "--format",
        "json",
    ]);
    assert!(
        matches!(lint.code, Some(0 | 2)),
        "lint failed to run: {}",
        lint.describe()
    );
    let findings = lint.json()["findings"].as_array().unwrap().clone();
    assert!(!findings.is_empty());
    // One down file of the history is not valid SQL (its first line lacks its `;`: PostgreSQL
    // refuses it the same way); every other file parses.
    let parse_errors: Vec<String> = findings
        .iter()
        .filter(|f| f["rule"] == "parse-error")
        .map(|f| format!("{}:{}", f["file"].as_str().unwrap(), f["line"]))
        .collect();
    assert_eq!(
        parse_errors,
        vec!["mig/20170318181441_downloads_need_no_id/down.sql:2".to_string()]
    );
}

/// `validate` on a Postgres estate whose migrations are Postgres-only checks the plan's health
/// section with PostgreSQL's parser (building the schema on SQLite would fail at the first
/// migration), and still refuses a probe that is not SQL.
#[test]
fn validate_checks_a_postgres_plans_probes_with_postgres_not_sqlite() {
    let migrations = diesel_order(&history());
    let (last, _) = migrations.last().unwrap().clone();
    let target = flotilla::migrations::version::diesel_key(&last).unwrap();
    let ws = Workspace::new();
    copy_tree(&history(), &ws.path("mig"));
    ws.write(
        "trusts.yaml",
        "trusts:\n  - id: camden\n    name: Camden\n    region: london\n    tags: [community]\n    \
         database:\n      url: \"postgres://flotilla@localhost:1/crates\"\n",
    );
    ws.write_target_plan("crates.yaml", target, &[("all", vec!["camden".into()])]);
    let probe = "health:\n  latency_probes:\n    - name: crate-page\n      params: \"SELECT id FROM crates ORDER BY id LIMIT 10\"\n      sql: \"SELECT c.name, count(v.id) FROM crates c LEFT JOIN versions v ON v.crate_id = c.id WHERE c.id = $1 GROUP BY c.name\"\n";
    ws.edit(PLAN, |p| format!("{p}{probe}"));
    ws.run(&["validate", PLAN, "--migrations", "mig", "--since", &last])
        .success()
        .stdout_contains("parsed by PostgreSQL's parser");
    ws.replace(PLAN, "GROUP BY c.name", "GROUP BY BY c.name");
    ws.run(&["validate", PLAN, "--migrations", "mig", "--since", &last])
        .code(2)
        .stderr_contains("crates.yaml")
        .stderr_contains("crate-page")
        .stderr_contains("does not parse as PostgreSQL");
}
