//! `flotilla adopt`: trusts another tool migrated (sqlx-cli, Flyway, golang-migrate, diesel,
//! dbmate) are taken over from that tool's own tracking table, created and filled here as the
//! tool does (checksums computed independently of flotilla), on SQLite and Postgres; the
//! rollout afterwards is a no-op; a history that disagrees with the files is refused with
//! nothing written.

use crate::common::{catalog_versions, create_databases, release_version, Db, Workspace};
use sha2::{Digest, Sha384};

const PLAN: &str = "plans/adopt.yaml";
/// camden and islington are in the plan; barnet is in the inventory only.
const ESTATE: &[&str] = &["camden", "islington", "barnet"];
const IN_PLAN: &[&str] = &["camden", "islington"];
/// flotilla's tracking table, empty (for [`hand_over`] to drop again, as after seeding).
const EMPTY_TRACKING_TABLE: &str = "CREATE TABLE _flotilla_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, checksum TEXT NOT NULL, applied_at TEXT NOT NULL, duration_ms BIGINT NOT NULL, dirty BOOLEAN NOT NULL DEFAULT FALSE)";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tool {
    Sqlx,
    Flyway,
    GolangMigrate,
    Diesel,
    Dbmate,
}

impl Tool {
    fn arg(self) -> &'static str {
        match self {
            Tool::Sqlx => "sqlx",
            Tool::Flyway => "flyway",
            Tool::GolangMigrate => "golang-migrate",
            Tool::Diesel => "diesel",
            Tool::Dbmate => "dbmate",
        }
    }

    fn table(self) -> &'static str {
        match self {
            Tool::Sqlx => "_sqlx_migrations",
            Tool::Flyway => "flyway_schema_history",
            Tool::GolangMigrate | Tool::Dbmate => "schema_migrations",
            Tool::Diesel => "__diesel_schema_migrations",
        }
    }
}

/// A workspace with camden, islington (the plan, targeting release 5.1) and barnet, seeded
/// at `release` with flotilla, on SQLite or (with `pg: Some(test)`) Postgres.
fn workspace(pg: Option<&str>, release: &str) -> Workspace {
    let mut ws = Workspace::new();
    ws.keep_trusts(ESTATE);
    if let Some(test) = pg {
        let ids: Vec<String> = ESTATE.iter().map(|s| s.to_string()).collect();
        ws.write_pg_inventory(&create_databases(test, &ids));
    }
    ws.write(
        PLAN,
        "name: adopt\nrelease: \"5.1\"\nconcurrency: 2\nwaves:\n  - name: all\n    trusts: [camden, islington]\n",
    );
    ws.run(&[
        "demo",
        "--seed-only",
        "--patients",
        "20",
        "--seed-release",
        release,
    ])
    .success();
    ws
}

/// flotilla's rows as `version|description|checksum` (what adopt must reproduce).
fn flotilla_rows(db: &Db) -> Vec<String> {
    if !db.table_exists("_flotilla_migrations") {
        return Vec::new();
    }
    db.query_strings(
        "SELECT CAST(version AS TEXT) || '|' || description || '|' || checksum || '|' || CAST(dirty AS TEXT) FROM _flotilla_migrations ORDER BY version",
    )
}

fn is_pg(db: &Db) -> bool {
    matches!(db, Db::Postgres(_))
}

/// The migration file's prefix as written in the repo ("0010").
fn prefix(version: i64) -> String {
    crate::common::version_prefix(version)
}

/// Flyway's checksum, computed here independently of flotilla: CRC-32 over the lines without
/// their terminators, as java.util.zip.CRC32 gives it (a signed int).
fn flyway_crc(bytes: &[u8]) -> i32 {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_start_matches('\u{feff}');
    let mut h = crc32fast::Hasher::new();
    for line in text.split('\n') {
        h.update(line.trim_end_matches('\r').as_bytes());
    }
    h.finalize() as i32
}

#[test]
fn the_tests_flyway_checksum_gives_flyways_own_value() {
    // `V3__Couple.sql` from Flyway's dry-run tutorial, and the checksum Flyway recorded.
    let couple = "create table COUPLE (\n    ID int not null,\n    PERSON1 int not null references PERSON(ID), \n    PERSON2 int not null references PERSON(ID) \n);\n";
    assert_eq!(flyway_crc(couple.as_bytes()), -722_651_034);
}

fn hex_literal(db: &Db, bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if is_pg(db) {
        format!("decode('{hex}', 'hex')")
    } else {
        format!("X'{hex}'")
    }
}

/// Create `tool`'s tracking table on `db` as the tool does.
fn create_foreign_table(db: &Db, tool: Tool) {
    let pg = is_pg(db);
    let ddl = match (tool, pg) {
        (Tool::Sqlx, false) => "CREATE TABLE IF NOT EXISTS _sqlx_migrations (\n    version BIGINT PRIMARY KEY,\n    description TEXT NOT NULL,\n    installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,\n    success BOOLEAN NOT NULL,\n    checksum BLOB NOT NULL,\n    execution_time BIGINT NOT NULL\n);",
        (Tool::Sqlx, true) => "CREATE TABLE IF NOT EXISTS _sqlx_migrations (\n    version BIGINT PRIMARY KEY,\n    description TEXT NOT NULL,\n    installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),\n    success BOOLEAN NOT NULL,\n    checksum BYTEA NOT NULL,\n    execution_time BIGINT NOT NULL\n);",
        (Tool::Flyway, false) => "CREATE TABLE \"flyway_schema_history\" (\n    \"installed_rank\" INT NOT NULL PRIMARY KEY,\n    \"version\" VARCHAR(50),\n    \"description\" VARCHAR(200) NOT NULL,\n    \"type\" VARCHAR(20) NOT NULL,\n    \"script\" VARCHAR(1000) NOT NULL,\n    \"checksum\" INT,\n    \"installed_by\" VARCHAR(100) NOT NULL,\n    \"installed_on\" TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f','now')),\n    \"execution_time\" INT NOT NULL,\n    \"success\" BOOLEAN NOT NULL\n);\nCREATE INDEX \"main\".\"flyway_schema_history_s_idx\" ON \"flyway_schema_history\" (\"success\");",
        (Tool::Flyway, true) => "CREATE TABLE \"public\".\"flyway_schema_history\" (\n    \"installed_rank\" INT NOT NULL,\n    \"version\" VARCHAR(50),\n    \"description\" VARCHAR(200) NOT NULL,\n    \"type\" VARCHAR(20) NOT NULL,\n    \"script\" VARCHAR(1000) NOT NULL,\n    \"checksum\" INTEGER,\n    \"installed_by\" VARCHAR(100) NOT NULL,\n    \"installed_on\" TIMESTAMP NOT NULL DEFAULT now(),\n    \"execution_time\" INTEGER NOT NULL,\n    \"success\" BOOLEAN NOT NULL\n);\nALTER TABLE \"public\".\"flyway_schema_history\" ADD CONSTRAINT \"flyway_schema_history_pk\" PRIMARY KEY (\"installed_rank\");\nCREATE INDEX \"flyway_schema_history_s_idx\" ON \"public\".\"flyway_schema_history\" (\"success\");",
        (Tool::GolangMigrate, false) => "CREATE TABLE IF NOT EXISTS schema_migrations (version uint64,dirty bool);\nCREATE UNIQUE INDEX IF NOT EXISTS version_unique ON schema_migrations (version);",
        (Tool::GolangMigrate, true) => "CREATE TABLE IF NOT EXISTS schema_migrations (version bigint not null primary key, dirty boolean not null)",
        (Tool::Diesel, _) => "CREATE TABLE IF NOT EXISTS __diesel_schema_migrations (\n       version VARCHAR(50) PRIMARY KEY NOT NULL,\n       run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP\n);",
        (Tool::Dbmate, false) => "create table if not exists schema_migrations (version varchar(128) primary key)",
        (Tool::Dbmate, true) => "create table if not exists schema_migrations (version varchar(128) primary key)",
    };
    db.exec(ddl);
}

/// Replace flotilla's history on every trust of the plan with `tool`'s, as if `tool` had
/// applied the migrations up to `last` (the files as they are in the workspace).
fn hand_over(ws: &Workspace, tool: Tool, last: i64) {
    for id in IN_PLAN {
        let db = ws.db(id);
        db.exec("DROP TABLE _flotilla_migrations");
        create_foreign_table(&db, tool);
        let versions: Vec<i64> = catalog_versions()
            .into_iter()
            .filter(|v| *v <= last)
            .collect();
        let mut inserts = Vec::new();
        for (rank, v) in versions.iter().enumerate() {
            let up = ws.migration_file(*v, ".up.sql");
            let bytes = std::fs::read(ws.path(&up)).unwrap();
            let name = up.file_name().unwrap().to_string_lossy().into_owned();
            let description = name
                .trim_end_matches(".up.sql")
                .split_once('_')
                .unwrap()
                .1
                .replace('_', " ");
            inserts.push(match tool {
                Tool::Sqlx => format!(
                    "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES ({v}, '{description}', TRUE, {}, 1234567)",
                    hex_literal(&db, &Sha384::digest(&bytes))
                ),
                Tool::Flyway => format!(
                    "INSERT INTO flyway_schema_history (installed_rank, version, description, type, script, checksum, installed_by, execution_time, success) VALUES ({}, '{v}', '{description}', 'SQL', 'V{v}__{}.sql', {}, 'flyway', 12, TRUE)",
                    rank + 1,
                    description.replace(' ', "_"),
                    flyway_crc(&bytes)
                ),
                Tool::Diesel => format!(
                    "INSERT INTO __diesel_schema_migrations (version) VALUES ('{}')",
                    prefix(*v)
                ),
                Tool::Dbmate => format!(
                    "INSERT INTO schema_migrations (version) VALUES ('{}')",
                    prefix(*v)
                ),
                Tool::GolangMigrate => continue,
            });
        }
        if tool == Tool::GolangMigrate {
            inserts.push(format!(
                "INSERT INTO schema_migrations (version, dirty) VALUES ({last}, FALSE)"
            ));
        }
        for s in inserts {
            db.exec(&s);
        }
    }
}

fn foreign_rows(db: &Db, tool: Tool) -> i64 {
    db.query_i64(&format!("SELECT COUNT(*) FROM {}", tool.table()))
}

/// Seed at 5.1, hand the trusts over to `tool`, then: a dry run writes nothing; adopt records
/// exactly the rows flotilla itself wrote, leaving the tool's table alone; a second adopt has
/// nothing to do; the rollout is a no-op.
fn adopt_then_rollout_is_a_noop(pg: Option<&str>, tool: Tool) {
    let ws = workspace(pg, "5.1");
    let target = release_version("5.1");
    let before: Vec<Vec<String>> = IN_PLAN.iter().map(|id| flotilla_rows(&ws.db(id))).collect();
    assert_eq!(before[0].len(), catalog_versions().len());
    hand_over(&ws, tool, target);
    let foreign_before: Vec<i64> = IN_PLAN
        .iter()
        .map(|id| foreign_rows(&ws.db(id), tool))
        .collect();

    ws.run(&["adopt", PLAN, "--from", tool.arg(), "--dry-run"])
        .success()
        .stdout_contains("would record 13 migration(s)")
        .stdout_contains("camden")
        .stdout_contains("islington");
    for id in IN_PLAN {
        assert!(
            !ws.db(id).table_exists("_flotilla_migrations"),
            "{id}: --dry-run wrote"
        );
    }

    ws.run(&["adopt", PLAN, "--from", tool.arg()])
        .success()
        .stdout_contains("adopted")
        .stdout_contains(&format!("accepted: {}", prefix(target)));
    for (i, id) in IN_PLAN.iter().enumerate() {
        let db = ws.db(id);
        assert_eq!(
            flotilla_rows(&db),
            before[i],
            "{id}: adopted rows differ from flotilla's own"
        );
        assert_eq!(
            foreign_rows(&db, tool),
            foreign_before[i],
            "{id}: {} changed",
            tool.table()
        );
    }
    // The adoption is on the record: a run of its own.
    let runs = ws.run(&["status", "--format", "json"]).json()["runs"].clone();
    assert_eq!(runs[0]["kind"], "adopt", "{runs}");
    assert_eq!(runs[0]["status"], "completed", "{runs}");
    // barnet is not in the plan: untouched (its flotilla rows from the seeding stay).
    assert_eq!(
        ws.db("barnet").applied_versions().len(),
        catalog_versions().len()
    );

    let out = ws.run(&["adopt", PLAN, "--from", tool.arg(), "--format", "json"]);
    out.success();
    let v = out.json();
    assert_eq!(v["trusts"][0]["status"], "already-adopted", "{v}");
    assert_eq!(v["accepted"], target);

    let rows: Vec<Vec<String>> = IN_PLAN.iter().map(|id| ws.db(id).tracking_rows()).collect();
    ws.run(&["rollout", PLAN, "--yes"]).success();
    let after: Vec<Vec<String>> = IN_PLAN.iter().map(|id| ws.db(id).tracking_rows()).collect();
    assert_eq!(rows, after, "the rollout after adopt was not a no-op");
    ws.run(&["plan", PLAN])
        .success()
        .stdout_contains("0 migrations to apply");
}

#[test]
fn sqlite_adopt_from_sqlx() {
    adopt_then_rollout_is_a_noop(None, Tool::Sqlx);
}
/// Flyway's integer versions against files named with flotilla's plain numbers: `V10` is not
/// `10_...` (Flyway's versions are dotted; 10 is 10.0.0), and the refusal says so.
fn flyway_against_plain_numbers(pg: Option<&str>) {
    let ws = workspace(pg, "5.1");
    hand_over(&ws, Tool::Flyway, release_version("5.1"));
    ws.run(&["adopt", PLAN, "--from", "flyway"])
        .code(7)
        .stderr_contains("version 10 (V10__create_staff.sql)")
        .stderr_contains("name the file 10000000000000_");
    nothing_written(&ws);
}

#[test]
fn sqlite_adopt_from_flyway() {
    flyway_against_plain_numbers(None);
}
#[test]
fn sqlite_adopt_from_golang_migrate() {
    adopt_then_rollout_is_a_noop(None, Tool::GolangMigrate);
}
#[test]
fn sqlite_adopt_from_diesel() {
    adopt_then_rollout_is_a_noop(None, Tool::Diesel);
}
#[test]
fn sqlite_adopt_from_dbmate() {
    adopt_then_rollout_is_a_noop(None, Tool::Dbmate);
}
#[test]
fn postgres_adopt_from_sqlx() {
    adopt_then_rollout_is_a_noop(Some("adopt_sqlx"), Tool::Sqlx);
}
#[test]
fn postgres_adopt_from_flyway() {
    flyway_against_plain_numbers(Some("adopt_flyway"));
}
#[test]
fn postgres_adopt_from_golang_migrate() {
    adopt_then_rollout_is_a_noop(Some("adopt_golang"), Tool::GolangMigrate);
}
#[test]
fn postgres_adopt_from_diesel() {
    adopt_then_rollout_is_a_noop(Some("adopt_diesel"), Tool::Diesel);
}
#[test]
fn postgres_adopt_from_dbmate() {
    adopt_then_rollout_is_a_noop(Some("adopt_dbmate"), Tool::Dbmate);
}

/// Nothing of flotilla's on any trust of the estate's plan.
fn nothing_written(ws: &Workspace) {
    for id in IN_PLAN {
        assert!(
            !ws.db(id).table_exists("_flotilla_migrations"),
            "{id}: a refused adoption wrote"
        );
    }
}

/// The history disagrees with the files in every way a tool can show it: exit 7, naming the
/// trust, the version and the file, and nothing written on any trust (the other trust's
/// history is fine).
fn drift_is_refused(pg: Option<&str>) {
    let ws = workspace(pg, "5.1");
    let target = release_version("5.1");
    let first = catalog_versions()[0];
    let up = ws.migration_file(first, ".up.sql");
    let file = up.file_name().unwrap().to_string_lossy().into_owned();

    // sqlx: a file edited after it ran (Flyway's checksums: see flyway_dotted).
    for tool in [Tool::Sqlx] {
        hand_over(&ws, tool, target);
        let original = ws.read(&up);
        ws.write(&up, format!("{original}-- edited after it ran\n"));
        ws.run(&["adopt", PLAN, "--from", tool.arg()])
            .code(7)
            .stderr_contains("camden")
            .stderr_contains("islington")
            .stderr_contains(&file)
            .stderr_contains("nothing was written");
        nothing_written(&ws);
        // sqlx's checksum is of the bytes: line endings count.
        ws.write(&up, original.replace('\n', "\r\n"));
        ws.run(&["adopt", PLAN, "--from", tool.arg(), "--dry-run"])
            .code(7);
        ws.write(&up, original);
        for id in IN_PLAN {
            ws.db(id).exec(&format!("DROP TABLE {}", tool.table()));
            ws.db(id).exec(EMPTY_TRACKING_TABLE);
        }
    }

    // diesel: a version that is not a file, on one trust only.
    hand_over(&ws, Tool::Diesel, target);
    ws.db("islington")
        .exec("INSERT INTO __diesel_schema_migrations (version) VALUES ('0999')");
    ws.run(&["adopt", PLAN, "--from", "diesel"])
        .code(7)
        .stderr_contains("islington")
        .stderr_contains("0999")
        .stderr_contains("nothing was written");
    nothing_written(&ws);

    // dbmate: a file below the newest listed version that never ran (a gap).
    for id in IN_PLAN {
        ws.db(id).exec("DROP TABLE __diesel_schema_migrations");
    }
    let mut it = catalog_versions().into_iter();
    let gap = it.nth(3).unwrap();
    for id in IN_PLAN {
        create_foreign_table(&ws.db(id), Tool::Dbmate);
        for v in catalog_versions()
            .into_iter()
            .filter(|v| *v != gap || *id == "islington")
        {
            ws.db(id).exec(&format!(
                "INSERT INTO schema_migrations (version) VALUES ('{}')",
                prefix(v)
            ));
        }
    }
    let gap_file = ws.migration_file(gap, ".up.sql");
    ws.run(&["adopt", PLAN, "--from", "dbmate"])
        .code(7)
        .stderr_contains("camden")
        .stderr_contains(&gap_file.file_name().unwrap().to_string_lossy())
        .stderr_contains("nothing was written");
    nothing_written(&ws);
    // Only islington's history is whole: adopting it alone works.
    ws.run(&["adopt", PLAN, "--from", "dbmate", "--trust", "islington"])
        .success();
    assert_eq!(ws.db("islington").applied_versions(), catalog_versions());
    assert!(!ws.db("camden").table_exists("_flotilla_migrations"));
}

#[test]
fn sqlite_a_history_that_disagrees_with_the_files_is_refused() {
    drift_is_refused(None);
}

#[test]
fn postgres_a_history_that_disagrees_with_the_files_is_refused() {
    drift_is_refused(Some("adopt_drift"));
}

/// Half-migrated databases are refused: golang-migrate dirty, sqlx `success = false`, Flyway
/// `success = false`; golang-migrate's table read as dbmate's is refused too.
fn half_migrated_is_refused(pg: Option<&str>) {
    let ws = workspace(pg, "5.1");
    let target = release_version("5.1");
    hand_over(&ws, Tool::GolangMigrate, target);
    ws.db("camden")
        .exec("UPDATE schema_migrations SET dirty = TRUE");
    ws.run(&["adopt", PLAN, "--from", "golang-migrate"])
        .code(4)
        .stderr_contains("camden")
        .stderr_contains("dirty");
    nothing_written(&ws);
    ws.run(&["adopt", PLAN, "--from", "dbmate"])
        .code(7)
        .stderr_contains("golang-migrate");
    nothing_written(&ws);
    for id in IN_PLAN {
        ws.db(id).exec("DROP TABLE schema_migrations");
    }
    hand_over_again(&ws, Tool::Sqlx, target);
    ws.db("islington").exec(&format!(
        "UPDATE _sqlx_migrations SET success = FALSE WHERE version = {target}"
    ));
    ws.run(&["adopt", PLAN, "--from", "sqlx"])
        .code(4)
        .stderr_contains("islington")
        .stderr_contains("failed");
    nothing_written(&ws);
    hand_over_again(&ws, Tool::Flyway, target);
    ws.db("camden").exec(&format!(
        "UPDATE flyway_schema_history SET success = FALSE WHERE version = '{target}'"
    ));
    // (camden only: the repo's plain version numbers are not Flyway's, see above.)
    ws.run(&["adopt", PLAN, "--from", "flyway", "--trust", "camden"])
        .code(4)
        .stderr_contains("camden")
        .stderr_contains("failed");
    nothing_written(&ws);
}

/// [`hand_over`] on trusts whose flotilla table is already gone.
fn hand_over_again(ws: &Workspace, tool: Tool, last: i64) {
    for id in IN_PLAN {
        ws.db(id).exec(EMPTY_TRACKING_TABLE);
    }
    hand_over(ws, tool, last);
}

#[test]
fn sqlite_half_migrated_databases_are_refused() {
    half_migrated_is_refused(None);
}

#[test]
fn postgres_half_migrated_databases_are_refused() {
    half_migrated_is_refused(Some("adopt_dirty"));
}

/// No history at all: adopt says which table is missing and suggests --baseline; --baseline
/// marks the migrations up to a version, and the rollout then runs the rest; a baseline
/// below flotilla's own history is refused; --trust outside the plan is refused.
fn baseline(pg: Option<&str>) {
    let ws = workspace(pg, "5.0");
    let v50 = release_version("5.0");
    for id in IN_PLAN {
        ws.db(id).exec("DROP TABLE _flotilla_migrations");
    }
    ws.run(&["adopt", PLAN, "--from", "sqlx"])
        .code(2)
        .stderr_contains("camden")
        .stderr_contains("_sqlx_migrations")
        .stderr_contains("--baseline");
    nothing_written(&ws);
    ws.run(&[
        "adopt",
        PLAN,
        "--baseline",
        &v50.to_string(),
        "--trust",
        "barnet",
    ])
    .code(2)
    .stderr_contains("barnet")
    .stderr_contains("not in plan");
    nothing_written(&ws);
    ws.run(&["adopt", PLAN, "--baseline", "85"])
        .code(2)
        .stderr_contains("85");
    ws.run(&["adopt", PLAN, "--baseline", &v50.to_string(), "--dry-run"])
        .success()
        .stdout_contains("would record");
    nothing_written(&ws);
    ws.run(&[
        "adopt",
        PLAN,
        "--baseline",
        &v50.to_string(),
        "--trust",
        "camden",
    ])
    .success()
    .stdout_contains(&format!("accepted: {}", prefix(v50)));
    let through: Vec<i64> = catalog_versions()
        .into_iter()
        .filter(|v| *v <= v50)
        .collect();
    assert_eq!(ws.db("camden").applied_versions(), through);
    assert!(!ws.db("islington").table_exists("_flotilla_migrations"));
    ws.run(&["adopt", PLAN, "--baseline", &v50.to_string()])
        .success()
        .stdout_contains("already adopted");
    assert_eq!(ws.db("islington").applied_versions(), through);
    // The rollout runs the migrations after the baseline.
    ws.run(&["rollout", PLAN, "--yes"]).success();
    assert_eq!(ws.db("camden").applied_versions(), catalog_versions());
    assert!(ws.db("camden").table_exists("staff_smartcard"));
    // flotilla's own history is past the baseline now.
    ws.run(&["adopt", PLAN, "--baseline", &v50.to_string()])
        .code(7)
        .stderr_contains("past the baseline");
}

#[test]
fn sqlite_baseline_marks_the_migrations_up_to_a_version() {
    baseline(None);
}

#[test]
fn postgres_baseline_marks_the_migrations_up_to_a_version() {
    baseline(Some("adopt_baseline"));
}

/// Flyway's dotted versions, with its other rows: a baseline, an undone and re-applied
/// version, a repeatable migration. The workspace's files are renamed to the keys flotilla
/// gives Flyway's versions.
fn flyway_dotted(pg: Option<&str>) {
    let dotted = [
        "1", "1.1", "1.2", "1.10", "2", "2.0.1", "3", "4", "5", "5.1", "6", "7", "8",
    ];
    let versions = catalog_versions();
    assert_eq!(versions.len(), dotted.len());
    let key = |text: &str| flotilla::migrations::version::flyway_key(text).unwrap().key;
    let ws = Workspace::new();
    ws.keep_trusts(ESTATE);
    let mut ws = ws;
    if let Some(test) = pg {
        let ids: Vec<String> = ESTATE.iter().map(|s| s.to_string()).collect();
        ws.write_pg_inventory(&create_databases(test, &ids));
    }
    let mut files = Vec::new();
    for (v, d) in versions.iter().zip(dotted) {
        for suffix in [".up.sql", ".down.sql"] {
            let from = ws.migration_file(*v, suffix);
            let name = from.file_name().unwrap().to_string_lossy().into_owned();
            let rest = name.split_once('_').unwrap().1.to_string();
            let to = format!("migrations/{}_{rest}", key(d));
            let text = ws.read(&from);
            ws.remove(&from);
            ws.write(&to, text);
            if suffix == ".up.sql" {
                files.push((d, to));
            }
        }
    }
    ws.write(
        "migrations/releases.yaml",
        format!("\"5.0\": {}\n\"5.1\": {}\n", key("4"), key("8")),
    );
    ws.write(
        PLAN,
        "name: adopt\nrelease: \"5.1\"\nconcurrency: 2\nwaves:\n  - name: all\n    trusts: [camden, islington]\n",
    );
    ws.run(&[
        "demo",
        "--seed-only",
        "--patients",
        "20",
        "--seed-release",
        "5.1",
    ])
    .success();
    let before = flotilla_rows(&ws.db("camden"));
    for id in IN_PLAN {
        let db = ws.db(id);
        db.exec("DROP TABLE _flotilla_migrations");
        create_foreign_table(&db, Tool::Flyway);
        let mut rank = 0;
        let mut row = |version: Option<&str>, kind: &str, script: &str, checksum: Option<i32>| {
            rank += 1;
            db.exec(&format!(
                "INSERT INTO flyway_schema_history (installed_rank, version, description, type, script, checksum, installed_by, execution_time, success) VALUES ({rank}, {}, 'x', '{kind}', '{script}', {}, 'flyway', 3, TRUE)",
                version.map_or("NULL".to_string(), |v| format!("'{v}'")),
                checksum.map_or("NULL".to_string(), |c| c.to_string()),
            ));
        };
        // The database was baselined at 1.2 (its first three migrations predate Flyway).
        row(Some("1.2"), "BASELINE", "<< Flyway Baseline >>", None);
        for (d, file) in files.iter().skip(3) {
            let crc = flyway_crc(&std::fs::read(ws.path(file)).unwrap());
            row(Some(d), "SQL", &format!("V{d}__x.sql"), Some(crc));
            if *d == "2" {
                // Undone, then applied again.
                row(Some(d), "UNDO_SQL", &format!("U{d}__x.sql"), Some(1));
                row(Some(d), "SQL", &format!("V{d}__x.sql"), Some(crc));
            }
        }
        row(None, "SQL", "R__views.sql", Some(7));
    }
    ws.run(&["adopt", PLAN, "--from", "flyway"])
        .success()
        .stdout_contains("R__views.sql")
        .stdout_contains(&format!("accepted: {}", key("8")));
    for id in IN_PLAN {
        assert_eq!(flotilla_rows(&ws.db(id)), before, "{id}");
    }
    let rows = ws.tracking_snapshot();
    ws.run(&["rollout", PLAN, "--yes"]).success();
    assert_eq!(rows, ws.tracking_snapshot());

    // A dotted version with no file, and an edited file: refused, naming them.
    for id in IN_PLAN {
        ws.db(id).exec("DROP TABLE _flotilla_migrations");
    }
    ws.db("camden").exec(
        "INSERT INTO flyway_schema_history (installed_rank, version, description, type, script, checksum, installed_by, execution_time, success) VALUES (100, '8.0.1', 'x', 'SQL', 'V8.0.1__x.sql', 5, 'flyway', 3, TRUE)",
    );
    let (d, file) = &files[5];
    let text = ws.read(file);
    ws.write(file, format!("{text}\n-- edited\n"));
    ws.run(&["adopt", PLAN, "--from", "flyway"])
        .code(7)
        .stderr_contains("8.0.1")
        .stderr_contains(&format!("version {d}"))
        .stderr_contains(file.trim_start_matches("migrations/"));
    nothing_written(&ws);
    // Line endings alone do not change Flyway's checksum.
    ws.write(file, text.replace('\n', "\r\n"));
    // (flotilla records its own checksum of the file as it is now.)
    ws.run(&["adopt", PLAN, "--from", "flyway", "--trust", "islington"])
        .success();
    let keys: Vec<i64> = dotted.iter().map(|d| key(d)).collect();
    assert_eq!(ws.db("islington").applied_versions(), keys);
}

#[test]
fn sqlite_flyway_dotted_versions_baseline_and_undo() {
    flyway_dotted(None);
}

#[test]
fn postgres_flyway_dotted_versions_baseline_and_undo() {
    flyway_dotted(Some("adopt_flyway_dotted"));
}
