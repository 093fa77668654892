//! Other tools' migration layouts (sqlx, golang-migrate, diesel, Flyway, dbmate), read as they
//! are from `tests/fixtures/layouts/<layout>/`, detected or named by `layout:` in the
//! directory's `flotilla.yaml`; crates.io's real diesel history; and accepted history
//! (`accepted:` / `--since`), which is neither linted nor has its downs rehearsed, but is
//! still rolled back, stopping cleanly where a down fails.

use std::path::{Path, PathBuf};

use flotilla::migrations::{Catalog, Layout, Mode, Reversibility};
use sha2::{Digest, Sha256};

use crate::common::{copy_tree, create_databases, repo_root, Outcome, Workspace};

fn fixture(layout: &str) -> PathBuf {
    repo_root().join("tests/fixtures/layouts").join(layout)
}

fn crates_io() -> PathBuf {
    repo_root().join("tests/fixtures/crates-io/migrations")
}

const SQLITE_INVENTORY: &str = "defaults:\n  database:\n    url: \"sqlite://estate/{id}.db\"\n\
trusts:\n  - id: camden\n    name: Camden PCT\n    region: london\n    tags: [community]\n  \
- id: kent\n    name: Kent Community Health\n    region: south\n    tags: [community]\n";

/// A workspace whose inventory is two empty SQLite trusts and whose `mig/` is a copy of the
/// `layout` fixture.
fn sqlite_workspace(layout: &str) -> Workspace {
    let ws = Workspace::new();
    copy_tree(&fixture(layout), &ws.path("mig"));
    ws.write("trusts.yaml", SQLITE_INVENTORY);
    ws.write("estate/camden.db", "");
    ws.write("estate/kent.db", "");
    ws
}

/// `flotilla ARGS --migrations mig`: the layout's files as copied into the workspace.
fn in_mig(ws: &Workspace, args: &[&str]) -> Outcome {
    let mut all = args.to_vec();
    all.extend(["--migrations", "mig"]);
    ws.run(&all)
}

/// `flotilla rollback plans/layout.yaml --trust camden --to TO --yes` on the copied files.
fn roll_camden_back(ws: &Workspace, to: &str) -> Outcome {
    in_mig(
        ws,
        &[
            "rollback",
            "plans/layout.yaml",
            "--trust",
            "camden",
            "--to",
            to,
            "--yes",
        ],
    )
}

/// One expected migration: label, up mode, down mode.
type Expected = (&'static str, Mode, Mode);

const T: Mode = Mode::Transaction;
const N: Mode = Mode::NoTransaction;

fn expected(layout: &str) -> (Layout, Vec<Expected>) {
    match layout {
        // sqlx's files are flotilla's own: nothing tells them apart.
        "sqlx" => (
            Layout::Flotilla,
            vec![
                ("20240101120000", T, T),
                ("20240215093000", T, T),
                ("20240301000000", N, T),
            ],
        ),
        "golang-migrate" => (
            Layout::GolangMigrate,
            vec![("000001", T, T), ("000002", T, T), ("000010", N, T)],
        ),
        "diesel" => (
            Layout::Diesel,
            vec![
                ("00000000000000", T, T),
                ("2014-11-27-000000", T, T),
                ("2025-12-29-110242-0000", T, T),
                ("2026-01-20-162913", N, N),
            ],
        ),
        "flyway" => (
            Layout::Flyway,
            vec![("1", T, T), ("1.1", T, T), ("1.10", N, T), ("2", T, T)],
        ),
        "dbmate" => (
            Layout::Dbmate,
            vec![
                ("20240101120000", T, T),
                ("20240215093000", T, T),
                ("20240301000000", N, N),
            ],
        ),
        other => panic!("no fixture {other}"),
    }
}

const LAYOUTS: [&str; 5] = ["sqlx", "golang-migrate", "diesel", "flyway", "dbmate"];

#[test]
fn each_layout_loads_with_its_versions_labels_order_modes_and_downs() {
    for name in LAYOUTS {
        let catalog = Catalog::load(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (layout, want) = expected(name);
        assert_eq!(catalog.layout(), layout, "{name}");
        let got: Vec<Expected> = catalog
            .migrations()
            .iter()
            .map(|m| {
                let label: &'static str = Box::leak(m.label.clone().into_boxed_str());
                (label, m.up.mode, m.down.mode)
            })
            .collect();
        assert_eq!(got, want, "{name}: labels and modes, in order");
        let versions: Vec<i64> = catalog.migrations().iter().map(|m| m.version).collect();
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "{name}: {versions:?}"
        );
        for m in catalog.migrations() {
            assert_eq!(m.reversibility, Reversibility::Reversible, "{name} {m}");
            assert!(!m.down.sql.trim().is_empty(), "{name} {m}: down");
            assert_eq!(
                m.checksum,
                hex::encode(Sha256::digest(m.up.sql.as_bytes())),
                "{name} {m}"
            );
            assert_eq!(m.to_string(), format!("{} {}", m.label, m.description));
            assert_eq!(catalog.resolve(&m.label), Some(m.version), "{name} {m}");
        }
    }
}

#[test]
fn versions_keep_their_tools_meaning() {
    // Flyway: 1 < 1.1 < 1.10 < 2, 1_1 is 1.1, and the undo is the down.
    let flyway = Catalog::load(&fixture("flyway")).unwrap();
    let m = flyway.get(flyway.resolve("1_1").unwrap()).unwrap();
    assert_eq!(m.label, "1.1");
    assert!(m.up.path.ends_with("V1_1__add_ward_beds.sql"));
    assert!(m.down.path.ends_with("U1_1__add_ward_beds.sql"));
    assert_eq!(flyway.resolve("1.0"), flyway.resolve("1"));
    // golang-migrate: 000010 is 10, after 2.
    let golang = Catalog::load(&fixture("golang-migrate")).unwrap();
    assert_eq!(golang.resolve("10"), Some(10));
    assert_eq!(golang.latest(), Some(10));
    // diesel: the -0000 suffixed version from December 2025 comes before January 2026, the
    // loose data script is not a migration, and the initial setup is one.
    let diesel = Catalog::load(&fixture("diesel")).unwrap();
    assert_eq!(diesel.migrations().len(), 4);
    assert_eq!(diesel.migrations()[0].description, "diesel_initial_setup");
    assert!(diesel
        .migrations()
        .iter()
        .all(|m| !m.up.path.ends_with("data_seed.sql")));
    let m = &diesel.migrations()[3];
    assert!(m
        .up
        .path
        .ends_with("2026-01-20-162913_index_ward_name/up.sql"));
    assert!(m
        .down
        .path
        .ends_with("2026-01-20-162913_index_ward_name/down.sql"));
    // dbmate: one file, two scripts, each keeping the file's line numbers; the flotilla
    // directive inside the up section works.
    let dbmate = Catalog::load(&fixture("dbmate")).unwrap();
    let m = &dbmate.migrations()[1];
    assert_eq!(m.up.path, m.down.path);
    assert!(m.up.sql.contains("ADD COLUMN beds") && !m.up.sql.contains("DROP COLUMN"));
    assert!(m.down.sql.contains("DROP COLUMN beds") && !m.down.sql.contains("ADD COLUMN"));
    let file = std::fs::read_to_string(&m.up.path).unwrap();
    let line_of = |text: &str, what: &str| text.lines().position(|l| l.contains(what));
    assert_eq!(
        line_of(&m.down.sql, "DROP COLUMN"),
        line_of(&file, "DROP COLUMN")
    );
    assert_eq!(m.rewrites, vec![("ward".to_string(), "beds".to_string())]);
}

#[test]
fn each_layout_validates_and_rolls_out_on_sqlite_then_rolls_back() {
    for name in LAYOUTS {
        let ws = sqlite_workspace(name);
        let catalog = Catalog::load(&ws.path("mig")).unwrap();
        let versions: Vec<i64> = catalog.migrations().iter().map(|m| m.version).collect();
        let labels: Vec<String> = catalog
            .migrations()
            .iter()
            .map(|m| m.label.clone())
            .collect();
        let out = in_mig(&ws, &["validate"]);
        out.success()
            .stdout_contains(&format!("{} migrations", versions.len()))
            .stdout_contains("downs rehearsed");
        if catalog.layout() != Layout::Flotilla {
            out.stdout_contains(&format!("({} layout)", catalog.layout().name()));
        }
        let last = *versions.last().unwrap();
        ws.write_target_plan(
            "layout.yaml",
            last,
            &[("all", vec!["camden".into(), "kent".into()])],
        );
        in_mig(&ws, &["plan", "plans/layout.yaml"])
            .success()
            .stdout_contains(&format!("apply {}", labels.join(", ")));
        in_mig(&ws, &["rollout", "plans/layout.yaml", "--yes"]).success();
        for id in ["camden", "kent"] {
            assert_eq!(ws.db(id).applied_versions(), versions, "{name} {id}");
        }
        // Status shows the version as the tool writes it.
        in_mig(&ws, &["status"])
            .success()
            .stdout_contains(labels.last().unwrap());
        // A second rollout has nothing to do.
        let tracking = ws.tracking_snapshot();
        in_mig(&ws, &["rollout", "plans/layout.yaml", "--yes"]).success();
        assert_eq!(tracking, ws.tracking_snapshot(), "{name}");
        // And the downs take camden back to the second migration (the first may be 0, which
        // `--to` reads as "everything").
        let second = versions[1].to_string();
        roll_camden_back(&ws, &second).success();
        assert_eq!(ws.db("camden").applied_versions(), versions[..2], "{name}");
        assert!(ws.db("camden").table_exists("ward"), "{name}");
    }
}

#[test]
fn a_diesel_history_rolls_out_on_postgres() {
    let mut ws = sqlite_workspace("diesel");
    let ids = vec!["camden".to_string(), "kent".to_string()];
    let dbs = create_databases("layout_diesel", &ids);
    ws.write_pg_inventory(&dbs);
    let catalog = Catalog::load(&ws.path("mig")).unwrap();
    let versions: Vec<i64> = catalog.migrations().iter().map(|m| m.version).collect();
    ws.write_target_plan("layout.yaml", *versions.last().unwrap(), &[("all", ids)]);
    in_mig(&ws, &["validate", "plans/layout.yaml"])
        .success()
        .stdout_contains("(diesel layout)");
    in_mig(&ws, &["rollout", "plans/layout.yaml", "--yes"]).success();
    for id in ["camden", "kent"] {
        let db = dbs.db(id);
        assert_eq!(db.applied_versions(), versions, "{id}");
        assert!(db.table_exists("ward"));
        // The index was built outside a transaction (diesel's run_in_transaction = false).
        assert_eq!(
            db.query_i64("SELECT count(*) FROM pg_indexes WHERE indexname = 'ward_name'"),
            1
        );
    }
    let tracking = ws.tracking_snapshot();
    in_mig(&ws, &["rollout", "plans/layout.yaml", "--yes"]).success();
    assert_eq!(tracking, ws.tracking_snapshot());
}

// --- detection and `layout:` ------------------------------------------------------------------

#[test]
fn files_of_two_layouts_are_refused_until_layout_says_which() {
    let ws = sqlite_workspace("diesel");
    ws.write(
        "mig/V1__create_ward.sql",
        "CREATE TABLE ward (id INTEGER);\n",
    );
    in_mig(&ws, &["validate"])
        .code(2)
        .stderr_contains("two layouts")
        .stderr_contains("diesel")
        .stderr_contains("V1__create_ward.sql")
        .stderr_contains("layout:")
        .stderr_contains("flotilla.yaml");
    // Named, diesel skips the loose file as it skips every loose file.
    ws.write("mig/flotilla.yaml", "layout: diesel\n");
    in_mig(&ws, &["validate"])
        .success()
        .stdout_contains("4 migrations (diesel layout)");
}

#[test]
fn layout_overrides_detection_and_flotilla_yaml_is_checked_like_every_yaml() {
    let ws = sqlite_workspace("sqlx");
    ws.write("mig/flotilla.yaml", "layout: dbmate\n");
    in_mig(&ws, &["validate"])
        .code(2)
        .stderr_contains("20240101120000_create_ward")
        .stderr_contains("-- migrate:up");
    ws.write("mig/flotilla.yaml", "layout: sqlx\n");
    in_mig(&ws, &["validate"])
        .success()
        .stdout_contains("(sqlx layout)");
    ws.write("mig/flotilla.yaml", "layout: sqlx\nlayuot: diesel\n");
    in_mig(&ws, &["validate"])
        .code(2)
        .stderr_contains("flotilla.yaml:2")
        .stderr_contains("layuot");
    ws.write("mig/flotilla.yaml", "\nlayout: liquibase\n");
    in_mig(&ws, &["validate"])
        .code(2)
        .stderr_contains("flotilla.yaml:2")
        .stderr_contains("liquibase");
}

// --- bad inputs -------------------------------------------------------------------------------

/// `mig/` holding exactly `files`; validate must refuse it (exit 2) naming `path` and `what`.
fn refused(files: &[(&str, &str)], path: &str, what: &str) {
    let ws = Workspace::new();
    ws.write("trusts.yaml", SQLITE_INVENTORY);
    ws.write("estate/camden.db", "");
    ws.write("estate/kent.db", "");
    std::fs::create_dir_all(ws.path("mig")).unwrap();
    for (name, body) in files {
        ws.write(Path::new("mig").join(name), body);
    }
    in_mig(&ws, &["validate"])
        .code(2)
        .no_panic()
        .stderr_contains(path)
        .stderr_contains(what);
}

#[test]
fn bad_inputs_of_each_layout_are_refused_naming_the_file() {
    refused(
        &[
            (
                "20240101120000_a.sql",
                "-- migrate:up\nCREATE TABLE a (id INTEGER);\n-- migrate:down\nDROP TABLE a;\n",
            ),
            ("20240102120000_b.sql", "CREATE TABLE b (id INTEGER);\n"),
        ],
        "20240102120000_b.sql",
        "no `-- migrate:up` line",
    );
    refused(
        &[
            ("V1__a.sql", "CREATE TABLE a (id INTEGER);\n"),
            ("U1__a.sql", "DROP TABLE a;\n"),
            ("V1.0__b.sql", "CREATE TABLE b (id INTEGER);\n"),
            ("U1.0__b.sql", "DROP TABLE b;\n"),
        ],
        "V1__a.sql",
        "two migrations have version 1",
    );
    refused(
        &[
            ("V1__a.sql", "CREATE TABLE a (id INTEGER);\n"),
            ("V20240101120000__b.sql", "CREATE TABLE b (id INTEGER);\n"),
        ],
        "V20240101120000__b.sql",
        "timestamp version among dotted ones",
    );
    refused(
        &[
            ("V1__a.sql", "CREATE TABLE a (id INTEGER);\n"),
            ("U1__a.sql", "DROP TABLE a;\n"),
            ("R__views.sql", "SELECT 1;\n"),
        ],
        "R__views.sql",
        "repeatable",
    );
    // No undo file: a migration without a down, as flotilla refuses one.
    refused(
        &[
            ("V1__a.sql", "CREATE TABLE a (id INTEGER);\n"),
            ("U1__a.sql", "DROP TABLE a;\n"),
            ("V2__b.sql", "CREATE TABLE b (id INTEGER);\n"),
        ],
        "U2__b.sql",
        "missing-down",
    );
    refused(
        &[
            (
                "2014-11-27-000000_a/up.sql",
                "CREATE TABLE a (id INTEGER);\n",
            ),
            ("2014-11-27-000000_a/down.sql", "DROP TABLE a;\n"),
            ("2014-11-28-000000_b/down.sql", "DROP TABLE b;\n"),
        ],
        "2014-11-28-000000_b",
        "has no up.sql",
    );
    refused(
        &[
            (
                "2014-11-27-000000_a/up.sql",
                "CREATE INDEX a_i ON a (id);\n",
            ),
            ("2014-11-27-000000_a/down.sql", "DROP INDEX a_i;\n"),
            (
                "2014-11-27-000000_a/metadata.toml",
                "run_in_transaction = no\n",
            ),
        ],
        "metadata.toml:1",
        "run_in_transaction",
    );
}

// --- crates.io's real history -----------------------------------------------------------------

#[test]
fn crates_ios_diesel_history_loads_as_it_is_in_timestamp_order() {
    let dir = crates_io();
    let catalog = Catalog::load(&dir).unwrap();
    assert_eq!(catalog.layout(), Layout::Diesel);
    // Every directory with an up.sql is a migration (the initial setup too); the loose
    // data_oauth_github.sql is not.
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("up.sql").is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 285);
    assert_eq!(catalog.migrations().len(), names.len());
    // diesel's order: the versions as text, dashes removed.
    names.sort_by_key(|n| n.split('_').next().unwrap().replace('-', ""));
    let loaded: Vec<String> = catalog
        .migrations()
        .iter()
        .map(|m| format!("{}_{}", m.label, m.description))
        .collect();
    assert_eq!(loaded, names);
    assert_eq!(loaded[0], "00000000000000_diesel_initial_setup");
    assert_eq!(
        catalog.migrations().last().unwrap().label,
        "2026-07-30-140000-0000"
    );
    let no_transaction = catalog
        .migrations()
        .iter()
        .filter(|m| m.up.mode == Mode::NoTransaction)
        .count();
    assert_eq!(no_transaction, 7, "the metadata.toml files");
}

/// A workspace with a Postgres inventory (validate touches no trust database) and a copy of
/// crates.io's history in `mig/`.
fn crates_io_workspace() -> Workspace {
    let ws = Workspace::new();
    copy_tree(&crates_io(), &ws.path("mig"));
    ws.write(
        "trusts.yaml",
        "trusts:\n  - id: camden\n    name: Camden PCT\n    region: london\n    tags: [community]\n    \
         database:\n      url: \"postgres://flotilla@localhost:1/crates\"\n",
    );
    ws
}

#[test]
fn validate_since_the_last_crates_io_migration_checks_only_what_is_new() {
    let ws = crates_io_workspace();
    let last = "2026-07-30-140000-0000";
    in_mig(&ws, &["validate"]).code(2);
    in_mig(&ws, &["validate", "--since", last])
        .success()
        .stdout_contains("accepted history: 285 migrations, up to 2026-07-30-140000-0000")
        .stdout_contains("accepted history not linted: 285 migrations");
    in_mig(&ws, &["lint", "--dialect", "postgres", "--since", last]).success();
    // The same, kept in the migrations' flotilla.yaml.
    ws.write("mig/flotilla.yaml", format!("accepted: {last}\n"));
    in_mig(&ws, &["validate"])
        .success()
        .stdout_contains("accepted: in flotilla.yaml");
    // A new bad migration after it is still caught.
    ws.write(
        "mig/2026-08-01-090000-0000_drop_crate_description/up.sql",
        "ALTER TABLE crates DROP COLUMN description;\n",
    );
    ws.write(
        "mig/2026-08-01-090000-0000_drop_crate_description/down.sql",
        "ALTER TABLE crates ADD COLUMN description VARCHAR;\n",
    );
    in_mig(&ws, &["validate"])
        .code(2)
        .stdout_contains("2026-08-01-090000-0000_drop_crate_description/up.sql")
        .stdout_contains("drop-column")
        .stdout_contains("286 migrations");
    // A version that is not a migration is refused with the file and line.
    ws.write("mig/flotilla.yaml", "\naccepted: 2026-07-31-000000\n");
    in_mig(&ws, &["validate"])
        .code(2)
        .stderr_contains("flotilla.yaml:2")
        .stderr_contains("2026-07-31-000000");
    in_mig(&ws, &["validate", "--since", "2099"])
        .code(2)
        .stderr_contains("--since")
        .stderr_contains("2099");
}

// --- accepted history -------------------------------------------------------------------------

#[test]
fn accepted_history_is_not_rehearsed_but_a_rollback_across_it_stops_cleanly_at_a_failing_down() {
    let ws = sqlite_workspace("sqlx");
    // An old down that no longer works: the table it drops is gone.
    ws.write(
        "mig/20240215093000_add_ward_beds.down.sql",
        "DROP TABLE ward_beds_since_renamed;\n",
    );
    in_mig(&ws, &["validate"])
        .code(2)
        .stdout_contains("rehearsal-failed");
    ws.write("mig/flotilla.yaml", "accepted: 20240215093000\n");
    in_mig(&ws, &["validate"])
        .success()
        .stdout_contains("accepted history: 2 migrations, up to 20240215093000");
    ws.write_target_plan(
        "layout.yaml",
        20240301000000,
        &[("all", vec!["camden".into(), "kent".into()])],
    );
    in_mig(&ws, &["plan", "plans/layout.yaml"])
        .success()
        .stdout_contains("accepted history: 2 migrations");
    in_mig(&ws, &["rollout", "plans/layout.yaml", "--yes"]).success();
    // The rollback runs the newer down, then stops at the failing old one: that migration
    // stays applied and recorded, nothing below it is touched.
    roll_camden_back(&ws, "20240101120000")
        .code(5)
        .stderr_contains("ward_beds_since_renamed");
    let camden = ws.db("camden");
    assert_eq!(
        camden.applied_versions(),
        vec![20240101120000, 20240215093000]
    );
    assert_eq!(
        camden.query_i64("SELECT count(*) FROM sqlite_master WHERE name = 'ward_name'"),
        0,
        "the newer down ran"
    );
    assert_eq!(
        camden.query_i64("SELECT count(*) FROM pragma_table_info('ward') WHERE name = 'beds'"),
        1,
        "the failed down changed nothing"
    );
    assert_eq!(
        ws.db("kent").applied_versions(),
        vec![20240101120000, 20240215093000, 20240301000000]
    );
}

#[test]
fn an_accepted_migration_without_a_down_loads_as_irreversible() {
    let ws = Workspace::new();
    ws.write("mig/V1__a.sql", "CREATE TABLE a (id INTEGER);\n");
    ws.write("mig/V2__b.sql", "CREATE TABLE b (id INTEGER);\n");
    ws.write("mig/U2__b.sql", "DROP TABLE b;\n");
    assert!(Catalog::load(&ws.path("mig")).is_err());
    ws.write("mig/flotilla.yaml", "accepted: 1\n");
    let catalog = Catalog::load(&ws.path("mig")).unwrap();
    let v1 = catalog.get(catalog.resolve("1").unwrap()).unwrap();
    assert_eq!(v1.reversibility, Reversibility::Irreversible);
    assert_eq!(catalog.accepted_count(), 1);
    let v2 = catalog.get(catalog.resolve("2").unwrap()).unwrap();
    assert_eq!(v2.reversibility, Reversibility::Reversible);
}

#[test]
fn the_rehearsals_down_check_on_postgres_skips_accepted_history() {
    let mut ws = sqlite_workspace("diesel");
    // A down from 2014 that no longer undoes its up; no one will roll back to 2014.
    ws.write(
        "mig/2014-11-27-000000_create_ward/down.sql",
        "ALTER TABLE ward RENAME TO ward_2014;\n",
    );
    let ids = vec!["camden".to_string(), "kent".to_string()];
    let dbs = create_databases("layout_rehearse", &ids);
    ws.write_pg_inventory(&dbs);
    let catalog = Catalog::load(&ws.path("mig")).unwrap();
    let last = catalog.latest().unwrap();
    ws.write_target_plan("layout.yaml", last, &[("all", ids.clone())]);
    let rehearse = [
        "rollout",
        "plans/layout.yaml",
        "--migrations",
        "mig",
        "--rehearse",
    ];
    ws.run(&rehearse)
        .code(2)
        .stdout_contains("down-does-not-undo-up")
        .stdout_contains("2014-11-27-000000_create_ward/down.sql");
    ws.write("mig/flotilla.yaml", "accepted: 2014-11-27-000000\n");
    ws.run(&rehearse)
        .success()
        .stdout_contains("rehearsal of layout passed");
    for id in &ids {
        assert!(dbs.db(id).applied_versions().is_empty(), "{id}: untouched");
    }
}

#[test]
fn crates_ios_history_rolls_out_on_postgres_in_diesels_order() {
    let mut ws = Workspace::new();
    copy_tree(&crates_io(), &ws.path("mig"));
    ws.write("trusts.yaml", SQLITE_INVENTORY);
    let ids = vec!["camden".to_string()];
    let dbs = create_databases("layout_crates_io", &ids);
    ws.write_pg_inventory(&dbs);
    let catalog = Catalog::load(&ws.path("mig")).unwrap();
    let versions: Vec<i64> = catalog.migrations().iter().map(|m| m.version).collect();
    ws.write_target_plan("crates.yaml", *versions.last().unwrap(), &[("all", ids)]);
    in_mig(&ws, &["rollout", "plans/crates.yaml", "--yes"]).success();
    assert_eq!(dbs.db("camden").applied_versions(), versions);
    in_mig(&ws, &["status"])
        .success()
        .stdout_contains("2026-07-30-140000-0000");
}

/// A plan's `target_version` and `rollback --to` take a version as the tool writes it: Flyway's
/// `1.10` (a YAML float if read as a number: it must stay `1.10`, not become `1.1`) and `1_1`,
/// diesel's `2025-12-29-110242-0000`; the 64-bit key still works.
#[test]
fn plans_and_rollback_take_versions_as_the_tool_writes_them() {
    let ws = sqlite_workspace("flyway");
    let plan = |target: &str| {
        ws.write(
            "plans/layout.yaml",
            format!(
                "name: layout\ntarget_version: {target}\nconcurrency: 1\nwaves:\n  - name: all\n    trusts: [camden, kent]\n"
            ),
        );
    };
    plan("1.10");
    in_mig(&ws, &["plan", "plans/layout.yaml"])
        .success()
        .stdout_contains("1.10");
    in_mig(&ws, &["rollout", "plans/layout.yaml", "--yes"]).success();
    let flyway = Catalog::load(&ws.path("mig")).unwrap();
    let key = |v: &str| flyway.resolve(v).unwrap();
    assert_eq!(
        ws.db("camden").applied_versions(),
        vec![key("1"), key("1.1"), key("1.10")],
        "target_version 1.10 is not 1.1"
    );
    roll_camden_back(&ws, "1_1").success();
    assert_eq!(
        ws.db("camden").applied_versions(),
        vec![key("1"), key("1.1")]
    );
    let key_text = key("1").to_string();
    roll_camden_back(&ws, &key_text).success();
    assert_eq!(ws.db("camden").applied_versions(), vec![key("1")]);
    roll_camden_back(&ws, "1.7")
        .code(2)
        .stderr_contains("--to 1.7");
    plan("3");
    in_mig(&ws, &["plan", "plans/layout.yaml"])
        .code(2)
        .stderr_contains("layout.yaml:2")
        .stderr_contains("target_version 3 is not a migration");

    let ws = sqlite_workspace("diesel");
    ws.write(
        "plans/layout.yaml",
        "name: layout\ntarget_version: 2025-12-29-110242-0000\nconcurrency: 1\nwaves:\n  - name: all\n    trusts: [camden]\n",
    );
    in_mig(&ws, &["rollout", "plans/layout.yaml", "--yes"]).success();
    let diesel = Catalog::load(&ws.path("mig")).unwrap();
    assert_eq!(
        ws.db("camden").applied_versions().last().copied(),
        diesel.resolve("2025-12-29-110242-0000")
    );
}
