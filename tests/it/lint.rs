//! The migration linter: one fixture per rule under tests/fixtures/lint/<rule>/, a `fire`
//! migration that must trip the rule at a known file and line, and an `allowed` one that
//! carries `-- flotilla-lint: allow <rule> -- reason` and must not. Each fixture is migration
//! 9000, merged into the repository's own catalog (so `patient`, `audit_log`... exist), and is
//! linted for PostgreSQL and SQLite. The down-undoes-up rehearsal runs on scratch SQLite and on
//! a Postgres database of its own. The CLI tests run the real binary on a workspace copy.

use std::path::PathBuf;

use flotilla::config::inventory::{PasswordSource, UrlSource};
use flotilla::config::{DatabaseTarget, Trust};
use flotilla::db::{Access, Dialect, TrustDb};
use flotilla::migrations::lint::{self, rules, Finding, Severity};
use flotilla::migrations::{roundtrip, Catalog, Migration, Mode};
use sqlx::Connection;

use crate::common::*;

const BOTH: &[Dialect] = &[Dialect::Postgres, Dialect::Sqlite];
const PG: &[Dialect] = &[Dialect::Postgres];

fn fixture(rule: &str, kind: &str) -> PathBuf {
    repo_root()
        .join("tests/fixtures/lint")
        .join(rule)
        .join(kind)
}

/// The repository's migrations plus the fixture's migration 9000.
fn catalog_with(rule: &str, kind: &str) -> Catalog {
    let base = Catalog::load(&repo_root().join("migrations")).expect("the repo's migrations load");
    base.with_local(&fixture(rule, kind))
        .unwrap_or_else(|e| panic!("fixture {rule}/{kind} loads: {e}"))
}

fn show(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| format!("  {f}\n"))
        .collect::<String>()
}

/// Findings about the fixture's own files.
fn about_fixture(findings: Vec<Finding>) -> Vec<Finding> {
    findings
        .into_iter()
        .filter(|f| {
            f.file
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("9000_fixture"))
        })
        .collect()
}

fn file_of(f: &Finding) -> String {
    f.file.file_name().unwrap().to_string_lossy().into_owned()
}

/// `rule` fires at exactly `(file, line)` for each of `dialects` on the `fire` fixture, and
/// not at all (nor any invalid-allow) on the `allowed` one.
fn check_static_rule(rule: &str, dialects: &[Dialect], file: &str, line: u64) {
    for &d in dialects {
        let fired = about_fixture(lint::lint(catalog_with(rule, "fire").migrations(), d));
        let hits: Vec<&Finding> = fired.iter().filter(|f| f.rule == rule).collect();
        assert_eq!(
            hits.iter()
                .map(|f| (file_of(f), f.line))
                .collect::<Vec<_>>(),
            vec![(file.to_string(), line)],
            "{rule} on {d:?}: expected one finding at {file}:{line}, got:\n{}",
            show(&fired)
        );
        let severity = lint::find_rule(rule).unwrap().severity;
        assert_eq!(hits[0].severity, severity);

        let allowed = about_fixture(lint::lint(catalog_with(rule, "allowed").migrations(), d));
        assert!(
            allowed
                .iter()
                .all(|f| f.rule != rule && f.rule != rules::INVALID_ALLOW),
            "{rule} on {d:?}: the allowed fixture still has findings:\n{}",
            show(&allowed)
        );
    }
}

/// `rule` does not fire for `dialect` on the fire fixture (a PostgreSQL-only rule on SQLite).
fn check_silent_on(rule: &str, dialect: Dialect) {
    let fired = about_fixture(lint::lint(catalog_with(rule, "fire").migrations(), dialect));
    assert!(
        fired.iter().all(|f| f.rule != rule),
        "{rule} fired for {dialect:?}:\n{}",
        show(&fired)
    );
}

#[test]
fn drop_table_fires_in_an_up_and_can_be_allowed() {
    check_static_rule(rules::DROP_TABLE, BOTH, "9000_fixture.up.sql", 2);
}

#[test]
fn drop_column_fires_and_can_be_allowed() {
    check_static_rule(rules::DROP_COLUMN, BOTH, "9000_fixture.up.sql", 2);
}

#[test]
fn type_narrowing_knows_the_old_type_from_earlier_migrations() {
    check_static_rule(rules::TYPE_NARROWING, BOTH, "9000_fixture.up.sql", 3);
}

#[test]
fn truncate_fires_and_can_be_allowed() {
    check_static_rule(rules::TRUNCATE, BOTH, "9000_fixture.up.sql", 2);
}

#[test]
fn delete_without_where_fires_and_can_be_allowed() {
    check_static_rule(rules::DELETE_WITHOUT_WHERE, BOTH, "9000_fixture.up.sql", 3);
}

#[test]
fn update_without_where_fires_and_can_be_allowed() {
    check_static_rule(rules::UPDATE_WITHOUT_WHERE, BOTH, "9000_fixture.up.sql", 2);
}

#[test]
fn create_index_without_concurrently_fires_on_postgres_for_existing_tables_only() {
    // Line 3 indexes a table created on line 2 of the same migration: not a finding.
    check_static_rule(
        rules::CREATE_INDEX_NOT_CONCURRENTLY,
        PG,
        "9000_fixture.up.sql",
        4,
    );
    check_silent_on(rules::CREATE_INDEX_NOT_CONCURRENTLY, Dialect::Sqlite);
}

#[test]
fn concurrently_needs_a_no_transaction_migration_on_postgres() {
    check_static_rule(
        rules::CONCURRENTLY_IN_TRANSACTION,
        PG,
        "9000_fixture.up.sql",
        2,
    );
    check_silent_on(rules::CONCURRENTLY_IN_TRANSACTION, Dialect::Sqlite);
    let fixed = about_fixture(lint::lint(
        catalog_with(rules::CONCURRENTLY_IN_TRANSACTION, "no-transaction").migrations(),
        Dialect::Postgres,
    ));
    assert!(
        fixed.is_empty(),
        "CONCURRENTLY in a no-transaction migration is the fix:\n{}",
        show(&fixed)
    );
}

#[test]
fn add_not_null_without_default_is_an_error_on_both_dialects() {
    check_static_rule(
        rules::ADD_NOT_NULL_WITHOUT_DEFAULT,
        BOTH,
        "9000_fixture.up.sql",
        2,
    );
    assert_eq!(
        lint::find_rule(rules::ADD_NOT_NULL_WITHOUT_DEFAULT)
            .unwrap()
            .severity,
        Severity::Error
    );
}

#[test]
fn add_foreign_key_without_not_valid_fires_on_postgres() {
    check_static_rule(
        rules::ADD_FOREIGN_KEY_VALIDATED,
        PG,
        "9000_fixture.up.sql",
        2,
    );
    check_silent_on(rules::ADD_FOREIGN_KEY_VALIDATED, Dialect::Sqlite);
}

#[test]
fn transaction_control_fires_on_both_dialects() {
    check_static_rule(rules::TRANSACTION_CONTROL, BOTH, "9000_fixture.up.sql", 2);
}

#[test]
fn the_postgres_only_rules_fire_on_postgres_and_can_be_allowed() {
    for (rule, line) in [
        (rules::DROP_DATABASE, 2),
        (rules::RENAME_TABLE, 2),
        (rules::RENAME_COLUMN, 2),
        (rules::COLUMN_TYPE_REWRITE, 3),
        (rules::ADD_COLUMN_REWRITES_TABLE, 2),
        (rules::SET_NOT_NULL, 2),
        (rules::ADD_CHECK_VALIDATED, 2),
        (rules::ADD_UNIQUE_WITHOUT_INDEX, 2),
        (rules::DROP_INDEX_NOT_CONCURRENTLY, 2),
        (rules::MAINTENANCE_LOCKS_TABLE, 3),
    ] {
        check_static_rule(rule, PG, "9000_fixture.up.sql", line);
    }
}

#[test]
fn findings_about_one_table_name_it_on_both_dialects() {
    for (rule, table) in [
        (rules::DROP_TABLE, "audit_log"),
        (rules::DROP_COLUMN, "patient"),
        (rules::TYPE_NARROWING, "patient"),
        (rules::ADD_NOT_NULL_WITHOUT_DEFAULT, "patient"),
        (rules::UPDATE_WITHOUT_WHERE, "patient"),
    ] {
        for &d in BOTH {
            let fired = about_fixture(lint::lint(catalog_with(rule, "fire").migrations(), d));
            let hit = fired.iter().find(|f| f.rule == rule).unwrap();
            assert_eq!(
                hit.table.as_deref(),
                Some(table),
                "{rule} on {d:?}: {hit:?}"
            );
        }
    }
    let fired = about_fixture(lint::lint(
        catalog_with(rules::CREATE_INDEX_NOT_CONCURRENTLY, "fire").migrations(),
        Dialect::Postgres,
    ));
    assert_eq!(fired[0].table.as_deref(), Some("patient"), "{fired:?}");
}

#[test]
fn empty_down_fires_and_can_be_allowed() {
    check_static_rule(rules::EMPTY_DOWN, BOTH, "9000_fixture.down.sql", 1);
}

#[test]
fn sql_that_does_not_parse_is_reported_at_its_line() {
    check_static_rule(rules::PARSE_ERROR, BOTH, "9000_fixture.up.sql", 4);
}

#[test]
fn a_missing_down_file_is_a_missing_down_finding() {
    let base = Catalog::load(&repo_root().join("migrations")).unwrap();
    let err = base
        .with_local(&fixture(rules::MISSING_DOWN, "fire"))
        .unwrap_err();
    let f =
        flotilla::migrations::lint::check::catalog_finding(&err).expect("a missing-down finding");
    assert_eq!(f.rule, rules::MISSING_DOWN);
    assert_eq!((file_of(&f).as_str(), f.line), ("9000_fixture.up.sql", 1));
    assert!(f.message.contains("9000_fixture.down.sql"), "{f}");
    assert!(
        !lint::find_rule(rules::MISSING_DOWN).unwrap().allowable,
        "missing-down cannot be allowed: there is no down file to undo the up"
    );
}

#[test]
fn an_allow_without_a_reason_or_of_an_unknown_rule_is_an_error_and_allows_nothing() {
    for &d in BOTH {
        let found = about_fixture(lint::lint(
            catalog_with(rules::INVALID_ALLOW, "fire").migrations(),
            d,
        ));
        let got: Vec<(&str, u64)> = found.iter().map(|f| (f.rule, f.line)).collect();
        assert_eq!(
            got,
            vec![
                (rules::INVALID_ALLOW, 2),
                (rules::INVALID_ALLOW, 3),
                (rules::DROP_TABLE, 4)
            ],
            "{d:?}:\n{}",
            show(&found)
        );
        assert!(found[0].message.contains("reason"), "{}", found[0]);
        assert!(found[1].message.contains("drop-tabel"), "{}", found[1]);

        let found = about_fixture(lint::lint(
            catalog_with(rules::INVALID_ALLOW, "allowed").migrations(),
            d,
        ));
        assert_eq!(
            found.iter().map(|f| (f.rule, f.line)).collect::<Vec<_>>(),
            vec![(rules::INVALID_ALLOW, 2)],
            "invalid-allow cannot be allowed:\n{}",
            show(&found)
        );
    }
}

#[test]
fn every_rule_has_a_fixture() {
    for r in lint::RULES {
        assert!(
            fixture(r.name, "fire").is_dir(),
            "rule {} has no fixture",
            r.name
        );
        if r.allowable {
            assert!(
                fixture(r.name, "allowed").is_dir(),
                "rule {} has no allowed fixture",
                r.name
            );
        }
    }
}

// --- the repository's own migrations ---------------------------------------------------------

#[tokio::test]
async fn the_repositorys_migrations_have_no_lint_errors() {
    let catalog = Catalog::load(&repo_root().join("migrations")).unwrap();
    for &d in BOTH {
        let found = lint::lint(catalog.migrations(), d);
        assert!(
            found.iter().all(|f| f.severity == Severity::Warning),
            "{d:?}:\n{}",
            show(&found)
        );
    }
    let mut db = TrustDb::scratch().await.unwrap();
    let found = roundtrip::round_trip(&mut db, catalog.migrations())
        .await
        .unwrap();
    db.close().await;
    assert!(found.is_empty(), "{}", show(&found));
}

// --- rehearsal: a down must undo its up -------------------------------------------------------

async fn rehearse_sqlite(rule: &str, kind: &str) -> Vec<Finding> {
    let catalog = catalog_with(rule, kind);
    let mut db = TrustDb::scratch().await.unwrap();
    let found = roundtrip::round_trip(&mut db, catalog.migrations())
        .await
        .unwrap();
    db.close().await;
    found
}

#[tokio::test]
async fn rehearsal_on_sqlite_catches_a_down_that_forgets_a_column() {
    let found = rehearse_sqlite(rules::DOWN_DOES_NOT_UNDO_UP, "fire").await;
    assert_eq!(
        found
            .iter()
            .map(|f| (f.rule, file_of(f), f.line))
            .collect::<Vec<_>>(),
        vec![(
            rules::DOWN_DOES_NOT_UNDO_UP,
            "9000_fixture.down.sql".to_string(),
            1
        )],
        "{}",
        show(&found)
    );
    assert!(
        found[0].message.contains("patient.ethnicity"),
        "{}",
        found[0]
    );
    let found = rehearse_sqlite(rules::DOWN_DOES_NOT_UNDO_UP, "allowed").await;
    assert!(found.is_empty(), "{}", show(&found));
}

#[tokio::test]
async fn rehearsal_reports_an_up_that_fails_and_it_can_be_allowed() {
    let found = rehearse_sqlite(rules::REHEARSAL_FAILED, "fire").await;
    assert_eq!(
        found
            .iter()
            .map(|f| (f.rule, file_of(f)))
            .collect::<Vec<_>>(),
        vec![(rules::REHEARSAL_FAILED, "9000_fixture.up.sql".to_string())],
        "{}",
        show(&found)
    );
    assert!(found[0].message.contains("ward"), "{}", found[0]);
    let found = rehearse_sqlite(rules::REHEARSAL_FAILED, "allowed").await;
    assert!(found.is_empty(), "{}", show(&found));
}

/// A fresh Postgres database of this test's own, dropped afterwards.
struct ScratchPg {
    admin: String,
    name: String,
}

impl ScratchPg {
    async fn create(test: &str) -> ScratchPg {
        let admin = pg_admin_url();
        let name = unique_prefix(test);
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.ok();
        ScratchPg { admin, name }
    }

    async fn connect(&self) -> TrustDb {
        let trust = Trust {
            id: "scratch".into(),
            name: "Scratch".into(),
            region: "test".into(),
            tags: Default::default(),
            database: DatabaseTarget::Postgres {
                url: UrlSource::Inline(url_with_db(&self.admin, &self.name)),
                password: PasswordSource::None,
            },
            local_migrations: None,
            maintenance_window: None,
            runner: Default::default(),
        };
        TrustDb::connect(&trust, Access::ReadWrite).await.unwrap()
    }

    async fn drop(self) {
        let mut conn = sqlx::PgConnection::connect(&self.admin).await.unwrap();
        sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{}\"", self.name))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.ok();
    }
}

async fn rehearse_pg(test: &str, catalog: &Catalog) -> Vec<Finding> {
    let scratch = ScratchPg::create(test).await;
    let mut db = scratch.connect().await;
    let found = roundtrip::round_trip(&mut db, catalog.migrations()).await;
    db.close().await;
    scratch.drop().await;
    found.unwrap()
}

#[tokio::test]
async fn rehearsal_on_postgres_passes_the_repository_and_catches_a_forgotten_column() {
    let repo = Catalog::load(&repo_root().join("migrations")).unwrap();
    let found = rehearse_pg("lint_rt_repo", &repo).await;
    assert!(found.is_empty(), "{}", show(&found));

    let found = rehearse_pg(
        "lint_rt_fire",
        &catalog_with(rules::DOWN_DOES_NOT_UNDO_UP, "fire"),
    )
    .await;
    assert_eq!(
        found
            .iter()
            .map(|f| (f.rule, file_of(f)))
            .collect::<Vec<_>>(),
        vec![(
            rules::DOWN_DOES_NOT_UNDO_UP,
            "9000_fixture.down.sql".to_string()
        )],
        "{}",
        show(&found)
    );
    assert!(
        found[0].message.contains("patient.ethnicity"),
        "{}",
        found[0]
    );
}

#[tokio::test]
async fn rehearsal_on_postgres_runs_no_transaction_migrations_one_statement_at_a_time() {
    let found = rehearse_pg(
        "lint_rt_concurrently",
        &catalog_with(rules::CONCURRENTLY_IN_TRANSACTION, "no-transaction"),
    )
    .await;
    assert!(found.is_empty(), "{}", show(&found));
}

#[tokio::test]
async fn rehearsal_on_postgres_catches_a_forgotten_index_and_constraint() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("9000_fixture.up.sql"),
        "CREATE INDEX patient_postcode_idx ON patient (postcode);\n\
         ALTER TABLE audit_log ADD CONSTRAINT audit_log_entity_check CHECK (entity_id > 0);\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("9000_fixture.down.sql"),
        "DROP INDEX patient_postcode_idx;\n",
    )
    .unwrap();
    let catalog = Catalog::load(&repo_root().join("migrations"))
        .unwrap()
        .with_local(dir.path())
        .unwrap();
    let found = rehearse_pg("lint_rt_constraint", &catalog).await;
    assert_eq!(found.len(), 1, "{}", show(&found));
    assert!(
        found[0].message.contains("audit_log_entity_check"),
        "{}",
        found[0]
    );
}

// --- the CLI ---------------------------------------------------------------------------------

const NOT_NULL_UP: &str = "-- Release 5.2: record each patient's ethnicity.\n\
                           ALTER TABLE patient ADD COLUMN ethnicity TEXT NOT NULL;\n";
const NOT_NULL_DOWN: &str = "ALTER TABLE patient DROP COLUMN ethnicity;\n";

#[test]
fn validate_fails_on_a_not_null_column_without_default_naming_file_line_and_rule() {
    let ws = Workspace::new();
    ws.write("migrations/0140_add_patient_ethnicity.up.sql", NOT_NULL_UP);
    ws.write(
        "migrations/0140_add_patient_ethnicity.down.sql",
        NOT_NULL_DOWN,
    );
    let out = ws.run(&["validate"]);
    out.code(2)
        .no_panic()
        .stdout_contains(
            "migrations/0140_add_patient_ethnicity.up.sql:2: error[add-not-null-without-default]",
        )
        .stderr_contains("0140_add_patient_ethnicity.up.sql:2")
        .stderr_contains("add-not-null-without-default");
}

#[test]
fn validate_passes_the_same_migration_once_allowed_with_a_reason() {
    let ws = Workspace::new();
    ws.write(
        "migrations/0140_add_patient_ethnicity.up.sql",
        format!(
            "-- flotilla-lint: allow add-not-null-without-default -- no trust has patients yet\n{NOT_NULL_UP}"
        ),
    );
    ws.write(
        "migrations/0140_add_patient_ethnicity.down.sql",
        NOT_NULL_DOWN,
    );
    ws.run(&["validate"])
        .success()
        .stdout_contains("lint: 0 errors")
        .stdout_contains("ok: valid");
}

#[test]
fn validate_names_a_missing_down_file_as_a_finding() {
    let ws = Workspace::new();
    ws.write("migrations/0140_add_patient_ethnicity.up.sql", NOT_NULL_UP);
    ws.run(&["validate"])
        .code(2)
        .stderr_contains("0140_add_patient_ethnicity.up.sql:1: error[missing-down]")
        .stderr_contains("0140_add_patient_ethnicity.down.sql");
}

#[test]
fn lint_passes_the_repository_and_shows_postgres_lock_warnings() {
    let ws = Workspace::new();
    ws.run(&["lint"])
        .success()
        .stdout_contains("lint: 0 errors");
    ws.run(&["lint", "--dialect", "postgres"])
        .success()
        .stdout_contains(
            "migrations/0130_add_caseload_indexes.up.sql:4: warning[create-index-not-concurrently]",
        );
}

#[test]
fn lint_json_lists_findings_and_exits_2_on_an_error() {
    let ws = Workspace::new();
    ws.write("migrations/0140_add_patient_ethnicity.up.sql", NOT_NULL_UP);
    ws.write(
        "migrations/0140_add_patient_ethnicity.down.sql",
        "-- forgets the column\nSELECT 1;\n",
    );
    let out = ws.run(&["lint", "--format", "json"]);
    out.code(2);
    let report = out.json();
    let rules: Vec<(&str, &str, i64)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap(),
                f["file"].as_str().unwrap(),
                f["line"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rules,
        vec![
            (
                "add-not-null-without-default",
                "migrations/0140_add_patient_ethnicity.up.sql",
                2
            ),
            (
                "down-does-not-undo-up",
                "migrations/0140_add_patient_ethnicity.down.sql",
                1
            ),
        ],
        "{}",
        out.describe()
    );
    assert_eq!(report["dialects"], serde_json::json!(["sqlite"]));
}

// --- a real history: crates.io's diesel migrations -------------------------------------------

/// Every migration of the vendored crates.io history (diesel layout: `<timestamp>_<name>/`
/// with `up.sql` and `down.sql`), read from the files directly, in version order.
fn crates_io_history() -> Vec<Migration> {
    let dir = repo_root().join("tests/fixtures/crates-io/migrations");
    let dirs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("up.sql").is_file())
        .collect();
    let mut history: Vec<Migration> = dirs
        .iter()
        .map(|d| {
            let name = d.file_name().unwrap().to_string_lossy().into_owned();
            // Diesel's versions: `20140924113530`, `2017-08-31-230457`,
            // `2025-11-19-091444-0000`, ordered without their dashes (so `20170804...` comes
            // before `2017-09-23...`); the timestamp to the second keeps that order.
            let (version, description) = name.split_once('_').unwrap();
            let version: String = version
                .chars()
                .filter(char::is_ascii_digit)
                .take(14)
                .collect();
            let read = |f: &str| {
                let p = d.join(f);
                let sql = std::fs::read_to_string(&p).unwrap_or_default();
                (p, sql)
            };
            let mut m = Migration::new(
                version.parse().unwrap(),
                description.to_string(),
                read("up.sql"),
                read("down.sql"),
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
            // Diesel's `metadata.toml` with `run_in_transaction = false` is flotilla's
            // `no-transaction`.
            let metadata = std::fs::read_to_string(d.join("metadata.toml")).unwrap_or_default();
            if metadata.contains("run_in_transaction = false") {
                m.up.mode = Mode::NoTransaction;
                m.down.mode = Mode::NoTransaction;
            }
            m
        })
        .collect();
    history.sort_by_key(|m| m.version);
    history
}

#[test]
fn the_crates_io_history_parses_on_postgres_and_a_new_bad_migration_is_still_caught() {
    let mut history = crates_io_history();
    assert!(history.len() > 250, "{} migrations", history.len());
    let found = lint::lint(&history, Dialect::Postgres);
    // One file of the history is not valid SQL: its first line lacks its `;`, and PostgreSQL
    // refuses it the same way (`syntax error at or near "ALTER"`). Every other file parses.
    let errors: Vec<(String, u64, &str)> = found
        .iter()
        .filter(|f| f.rule == rules::PARSE_ERROR)
        .map(|f| {
            let dir = f.file.parent().unwrap().file_name().unwrap();
            let file = f.file.file_name().unwrap();
            let at = format!("{}/{}", dir.to_string_lossy(), file.to_string_lossy());
            (at, f.line, f.message.as_str())
        })
        .collect();
    assert_eq!(
        errors,
        vec![(
            "20170318181441_downloads_need_no_id/down.sql".to_string(),
            2,
            "does not parse as PostgreSQL: syntax error at or near \"ALTER\""
        )],
        "parse errors:\n{}",
        show(&found)
    );
    let mut counts = std::collections::BTreeMap::new();
    for f in &found {
        *counts.entry((f.rule, f.severity)).or_insert(0) += 1;
    }
    eprintln!(
        "crates.io history, {} migrations: {counts:?}",
        history.len()
    );
    // Rules about ups only never fire on a down file.
    for f in &found {
        if f.file.ends_with("down.sql") {
            assert!(
                matches!(
                    f.rule,
                    rules::CONCURRENTLY_IN_TRANSACTION
                        | rules::PARSE_ERROR
                        | rules::EMPTY_DOWN
                        | rules::TRANSACTION_CONTROL
                        | rules::DROP_DATABASE
                ),
                "{f}"
            );
        }
    }

    let dir = repo_root().join("tests/fixtures/crates-io/migrations/99999999999999_bad");
    history.push(
        Migration::new(
            99999999999999,
            "bad".into(),
            (
                dir.join("up.sql"),
                "ALTER TABLE crates ADD COLUMN x int NOT NULL;\nCREATE INDEX crates_x ON crates (x);\n"
                    .into(),
            ),
            (dir.join("down.sql"), "ALTER TABLE crates DROP COLUMN x;\n".into()),
        )
        .unwrap(),
    );
    let found = lint::lint(&history, Dialect::Postgres);
    let bad: Vec<(&str, u64, Option<&str>)> = found
        .iter()
        .filter(|f| f.file.starts_with(&dir))
        .map(|f| (f.rule, f.line, f.table.as_deref()))
        .collect();
    assert_eq!(
        bad,
        vec![
            (rules::ADD_NOT_NULL_WITHOUT_DEFAULT, 1, Some("crates")),
            (rules::CREATE_INDEX_NOT_CONCURRENTLY, 2, Some("crates")),
        ],
        "{}",
        show(&found)
    );
}
