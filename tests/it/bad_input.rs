//! Bad configuration, bad catalogs and bad estates: the right exit code, an error that names
//! the file / trust / migration, no panic, and nothing changed.

use serde_json::json;

use crate::common::*;

const PLAN: &str = "plans/rio-5.1.yaml";

/// A plan file with `waves` (YAML text, indented by 2) and the given header lines.
fn write_plan(ws: &Workspace, file: &str, header: &str, waves: &str) {
    ws.write(
        format!("plans/{file}"),
        format!("name: test\n{header}waves:\n{waves}"),
    );
}

// --- the inventory --------------------------------------------------------------------------

#[test]
fn malformed_inventory_yaml_names_the_file_and_line() {
    let ws = Workspace::new();
    ws.write(
        "trusts.yaml",
        "defaults:\n  database:\n    url: \"sqlite://estate/{id}.db\"\ntrusts:\n  - id: camden\n    \
         name: Camden PCT\n    region: london: south\n    tags: [community]\n",
    );
    let out = ws.run(&["validate"]);
    out.code(2).stderr_contains("trusts.yaml");
    assert!(
        out.stderr.contains("trusts.yaml:7") || out.stderr.contains("line 7"),
        "the error does not give line 7\n{}",
        out.describe()
    );
}

#[test]
fn missing_inventory_file_is_a_config_error_naming_it() {
    let ws = Workspace::new();
    ws.run(&["--inventory", "nowhere.yaml", "validate"])
        .code(2)
        .stderr_contains("nowhere.yaml");
}

#[test]
fn unknown_field_in_the_inventory_is_rejected() {
    let ws = Workspace::new();
    ws.edit_inventory(|inv| {
        let camden = inv["trusts"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|t| t["id"] == "camden")
            .unwrap();
        camden["colour"] = json!("blue");
    });
    ws.run(&["validate"])
        .code(2)
        .stderr_contains("colour")
        .stderr_contains("trusts.yaml");
}

#[test]
fn duplicate_trust_id_is_rejected() {
    let ws = Workspace::new();
    ws.edit_inventory(|inv| {
        let trusts = inv["trusts"].as_array_mut().unwrap();
        let mut twin = trusts.iter().find(|t| t["id"] == "camden").unwrap().clone();
        twin["name"] = json!("Camden Again");
        trusts.push(twin);
    });
    ws.run(&["validate"])
        .code(2)
        .stderr_contains("camden")
        .stderr_contains("trusts.yaml");
}

#[test]
fn inline_password_in_a_postgres_url_is_rejected_without_printing_it() {
    const SECRET: &str = "Sup3rSecretPw";
    let ws = Workspace::new();
    ws.edit_inventory(|inv| {
        let camden = inv["trusts"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|t| t["id"] == "camden")
            .unwrap();
        camden["database"] =
            json!({ "url": format!("postgres://flotilla:{SECRET}@127.0.0.1:5432/camden") });
    });
    ws.run(&["validate"])
        .code(2)
        .stderr_contains("camden")
        .stderr_contains_nocase("password")
        .output_lacks(SECRET);
    ws.run(&["rollout", PLAN, "--yes"])
        .code(2)
        .output_lacks(SECRET);
    ws.run(&["status", "--format", "json"])
        .no_panic()
        .output_lacks(SECRET);
    ws.run(&["-v", "plan", PLAN])
        .no_panic()
        .output_lacks(SECRET);
}

// --- plans ------------------------------------------------------------------------------------

#[test]
fn unknown_field_in_a_plan_is_rejected() {
    let ws = Workspace::new();
    write_plan(
        &ws,
        "wave-field.yaml",
        "release: \"5.1\"\n",
        "  - name: pilot\n    trusts: [camden]\n    colour: blue\n",
    );
    ws.run(&["validate", "plans/wave-field.yaml"])
        .code(2)
        .stderr_contains("colour")
        .stderr_contains("wave-field.yaml");
    write_plan(
        &ws,
        "top-field.yaml",
        "release: \"5.1\"\nowner: ops\n",
        "  - name: pilot\n    trusts: [camden]\n",
    );
    ws.run(&["validate", "plans/top-field.yaml"])
        .code(2)
        .stderr_contains("owner")
        .stderr_contains("top-field.yaml");
}

#[test]
fn unknown_trust_in_a_plan_is_rejected() {
    let ws = Workspace::new();
    write_plan(
        &ws,
        "atlantis.yaml",
        "release: \"5.1\"\n",
        "  - name: pilot\n    trusts: [camden, atlantis]\n",
    );
    ws.run(&["validate", "plans/atlantis.yaml"])
        .code(2)
        .stderr_contains("atlantis");
}

#[test]
fn a_trust_named_in_two_waves_is_rejected() {
    let ws = Workspace::new();
    write_plan(
        &ws,
        "twice.yaml",
        "release: \"5.1\"\n",
        "  - name: pilot\n    trusts: [camden]\n  - name: second\n    trusts: [islington, camden]\n",
    );
    ws.run(&["validate", "plans/twice.yaml"])
        .code(2)
        .stderr_contains("camden");
    write_plan(
        &ws,
        "same-wave.yaml",
        "release: \"5.1\"\n",
        "  - name: pilot\n    trusts: [camden, camden]\n",
    );
    ws.run(&["validate", "plans/same-wave.yaml"])
        .code(2)
        .stderr_contains("camden");
}

#[test]
fn an_empty_wave_is_rejected() {
    let ws = Workspace::new();
    write_plan(
        &ws,
        "empty.yaml",
        "release: \"5.1\"\n",
        "  - name: pilot\n    trusts: [camden]\n  - name: hollow\n    trusts: []\n",
    );
    ws.run(&["validate", "plans/empty.yaml"])
        .code(2)
        .stderr_contains("hollow");
    write_plan(
        &ws,
        "nobody.yaml",
        "release: \"5.1\"\n",
        "  - name: pilot\n    trusts: [camden]\n  - name: atlantis-wave\n    select: { region: atlantis }\n",
    );
    ws.run(&["validate", "plans/nobody.yaml"])
        .code(2)
        .stderr_contains("atlantis-wave");
}

#[test]
fn a_plan_for_an_unknown_release_is_rejected() {
    let ws = Workspace::new();
    write_plan(
        &ws,
        "future.yaml",
        "release: \"9.9\"\n",
        "  - name: pilot\n    trusts: [camden]\n",
    );
    ws.run(&["validate", "plans/future.yaml"])
        .code(2)
        .stderr_contains("9.9");
}

#[test]
fn a_plan_needs_exactly_one_of_release_and_target_version() {
    let ws = Workspace::new();
    write_plan(
        &ws,
        "both.yaml",
        "release: \"5.1\"\ntarget_version: 1\n",
        "  - name: pilot\n    trusts: [camden]\n",
    );
    ws.run(&["validate", "plans/both.yaml"])
        .code(2)
        .stderr_contains("both.yaml");
    write_plan(
        &ws,
        "neither.yaml",
        "",
        "  - name: pilot\n    trusts: [camden]\n",
    );
    ws.run(&["validate", "plans/neither.yaml"])
        .code(2)
        .stderr_contains("neither.yaml");
}

// --- the migration catalog --------------------------------------------------------------------

#[test]
fn a_migration_without_its_down_file_is_rejected() {
    let ws = Workspace::new();
    let last = *catalog_versions().last().unwrap();
    let down = ws.migration_file(last, ".down.sql");
    ws.remove(&down);
    ws.run(&["validate", PLAN])
        .code(2)
        .stderr_names_migration(last);
}

#[test]
fn two_migrations_with_one_version_are_rejected() {
    let ws = Workspace::new();
    let last = *catalog_versions().last().unwrap();
    let prefix = version_prefix(last);
    ws.write(
        format!("migrations/{prefix}_duplicate.up.sql"),
        "CREATE TABLE dup (id INTEGER PRIMARY KEY);\n",
    );
    ws.write(
        format!("migrations/{prefix}_duplicate.down.sql"),
        "DROP TABLE dup;\n",
    );
    let out = ws.run(&["validate", PLAN]);
    out.code(2).stderr_names_migration(last);
}

#[test]
fn an_edited_applied_migration_is_checksum_drift_and_changes_nothing() {
    let ws = Workspace::new();
    ws.run(&["demo", "--seed-only", "--patients", "10"])
        .success();
    ws.roll_out_after_editing_an_applied_migration();
}

#[test]
fn an_applied_version_missing_from_the_catalog_is_drift() {
    let ws = Workspace::new();
    ws.run(&["demo", "--seed-only", "--patients", "10"])
        .success();
    let before = ws.tracking_snapshot();
    // A migration in the middle of 5.0 disappears from the catalog.
    let applied = versions_through(release_version("5.0"));
    let gone = applied[applied.len() / 2];
    let (up, down) = (
        ws.migration_file(gone, ".up.sql"),
        ws.migration_file(gone, ".down.sql"),
    );
    ws.remove(&up);
    ws.remove(&down);

    let out = ws.run(&["rollout", PLAN, "--yes"]);
    out.code(7).stderr_names_migration(gone);

    assert_eq!(
        before,
        ws.tracking_snapshot(),
        "rollout changed tracking rows despite drift"
    );
}

// --- the estate --------------------------------------------------------------------------------

#[test]
fn a_missing_sqlite_file_is_a_config_error_and_is_never_created() {
    let ws = Workspace::new();
    ws.run(&["demo", "--seed-only", "--patients", "10"])
        .success();
    let victim = ws.trust_ids().pop().unwrap();
    let Db::Sqlite(path) = ws.db(&victim) else {
        panic!("{victim} is not on SQLite")
    };
    std::fs::remove_file(&path).unwrap();
    let others: Vec<String> = ws
        .trust_ids()
        .into_iter()
        .filter(|id| *id != victim)
        .collect();
    let before: Vec<Vec<String>> = others.iter().map(|id| ws.db(id).tracking_rows()).collect();

    let out = ws.run(&["rollout", PLAN, "--yes"]);
    out.code(2).stderr_contains(&victim);
    assert!(
        !path.exists(),
        "rollout created {}\n{}",
        path.display(),
        out.describe()
    );
    let after: Vec<Vec<String>> = others.iter().map(|id| ws.db(id).tracking_rows()).collect();
    assert!(
        before == after,
        "rollout touched other trusts before reporting the config error\n{}",
        out.describe()
    );

    let out = ws.run(&["status", "--format", "json"]);
    out.no_panic();
    assert!(
        !path.exists(),
        "status created {}\n{}",
        path.display(),
        out.describe()
    );
}

#[test]
fn an_unreachable_postgres_trust_fails_the_rollout_naming_it() {
    let ws = Workspace::new();
    ws.run(&["demo", "--seed-only", "--patients", "10"])
        .success();
    let port = closed_port();
    ws.edit_inventory(|inv| {
        let camden = inv["trusts"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|t| t["id"] == "camden")
            .unwrap();
        camden["database"] =
            json!({ "url": format!("postgres://flotilla@127.0.0.1:{port}/camden") });
    });

    let out = ws.run(&["rollout", PLAN, "--yes"]);
    out.code(4).stderr_contains("camden");

    // The rollout stopped in (or before) the pilot: no trust outside the pilot was upgraded.
    let to_5_0 = versions_through(release_version("5.0"));
    for id in ws
        .trust_ids()
        .into_iter()
        .filter(|id| id != "camden" && id != "islington")
    {
        assert_eq!(
            ws.db(&id).applied_versions(),
            to_5_0,
            "{id} was upgraded\n{}",
            out.describe()
        );
    }
}
