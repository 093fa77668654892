//! No password in any output: not from a libpq key/value string in trusts.yaml or in an
//! environment variable, not from `--state`, not from a URL the environment holds, not from a
//! password the server never got to check. Before issue 10, `url: "host=... password=..."` was
//! refused with an error that printed it whole, and `--state 'host=... password=...'` created
//! SQLite files named after it.

use super::never_shows;
use crate::common::{
    closed_port, create_databases, pg_admin_exec, pg_admin_url, split_password, url_with_db,
    Workspace,
};

const SECRET: &str = "Sup3r-S3cret-pw";

fn camden_database(ws: &Workspace, database: serde_json::Value) {
    if ws.inventory()["trusts"].as_array().unwrap().len() > super::SMALL_ESTATE.len() {
        ws.keep_trusts(super::SMALL_ESTATE);
    }
    ws.edit_inventory(|inv| {
        for t in inv["trusts"].as_array_mut().unwrap() {
            if t["id"] == "camden" {
                t["database"] = database.clone();
            }
        }
    });
}

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_key_value_connection_string_in_trusts_yaml_is_refused_without_echo() {
    let ws = Workspace::new();
    camden_database(
        &ws,
        serde_json::json!({
            "url": format!("host=db.camden.example port=5432 user=rio password={SECRET} dbname=rio")
        }),
    );
    let out = ws.run(&["validate"]);
    out.code(2)
        .stderr_contains("trusts.yaml:")
        .stderr_contains("camden")
        .stderr_contains("key/value");
    never_shows(&out, SECRET);
    never_shows(&out, "db.camden.example");
    // The same with the password quoted, and with a URL parameter nobody knows.
    camden_database(
        &ws,
        serde_json::json!({ "url": format!("dbname=rio password='{SECRET} x'") }),
    );
    let out = ws.run(&["validate"]);
    out.code(2);
    never_shows(&out, SECRET);
    camden_database(
        &ws,
        serde_json::json!({ "url": format!("postgres://rio@db.example/rio?pasword={SECRET}") }),
    );
    let out = ws.run(&["validate"]);
    out.code(2).stderr_contains("'pasword'");
    never_shows(&out, SECRET);
    camden_database(
        &ws,
        serde_json::json!({ "url": format!("mysql://rio:{SECRET}@db.example/rio") }),
    );
    let out = ws.run(&["validate"]);
    out.code(2).stderr_contains("'mysql'");
    never_shows(&out, SECRET);
}

#[test]
fn a_connection_string_from_the_environment_is_never_shown() {
    let mut ws = Workspace::new();
    camden_database(&ws, serde_json::json!({ "url_env": "CAMDEN_DB_URL" }));
    // A key/value string: refused, naming the variable, not its value.
    ws.set_env(
        "CAMDEN_DB_URL",
        &format!("host=127.0.0.1 user=rio password={SECRET} dbname=rio"),
    );
    // Every other trust is seeded; camden cannot be, and says why without the value.
    let out = ws.run(&["demo", "--seed-only", "--patients", "10"]);
    out.code(2).stderr_contains("CAMDEN_DB_URL");
    never_shows(&out, SECRET);
    let out = ws.run(&["plan", "plans/rio-5.1.yaml"]);
    out.code(2)
        .stderr_contains("CAMDEN_DB_URL")
        .stderr_contains("key/value");
    never_shows(&out, SECRET);
    // A URL with a password to a server that is not there: unreachable, no password.
    ws.set_env(
        "CAMDEN_DB_URL",
        &format!("postgres://rio:{SECRET}@127.0.0.1:{}/rio", closed_port()),
    );
    for args in [
        &["plan", "plans/rio-5.1.yaml"][..],
        &["status"][..],
        &["--log-format", "json", "-vv", "status"][..],
    ] {
        let out = ws.run(args);
        out.no_panic();
        assert_ne!(out.code, Some(0), "{}", out.describe());
        assert!(
            (out.stdout.clone() + &out.stderr).contains("$CAMDEN_DB_URL"),
            "camden's failure names where its URL came from\n{}",
            out.describe()
        );
        never_shows(&out, SECRET);
    }
}

#[test]
fn state_must_be_a_path_sqlite_or_postgres_and_is_refused_without_echo() {
    let mut ws = Workspace::new();
    let before = entries(ws.root());
    for state in [
        format!("host=db.example user=rio password={SECRET} dbname=flotilla"),
        format!("dbname=flotilla password={SECRET}"),
        format!("mysql://rio:{SECRET}@db.example/flotilla"),
        format!("sqlite://state.db?mode=rwc&password={SECRET}"),
        format!("postgres://rio@db.example/flotilla?pasword={SECRET}"),
        String::new(),
    ] {
        for command in [
            &["status"][..],
            &["rollout", "plans/rio-5.1.yaml", "--yes"][..],
        ] {
            let mut args = vec!["--state", state.as_str()];
            args.extend_from_slice(command);
            let out = ws.run(&args);
            out.code(2).stderr_contains("--state");
            never_shows(&out, SECRET);
        }
    }
    assert_eq!(
        entries(ws.root()),
        before,
        "a refused --state created files in the working directory"
    );
    // A password in a Postgres state URL is refused too (it belongs in the environment).
    let out = ws.run(&[
        "--state",
        &format!(
            "postgres://rio:{SECRET}@127.0.0.1:{}/flotilla",
            closed_port()
        ),
        "status",
    ]);
    out.code(2).stderr_contains("FLOTILLA_STATE_PASSWORD");
    never_shows(&out, SECRET);
    // The state password from the environment, to a server that is not there: exit 9 (the
    // environment), and no password.
    ws.set_env("FLOTILLA_STATE_PASSWORD", SECRET);
    let out = ws.run(&[
        "--state",
        &format!("postgres://rio@127.0.0.1:{}/flotilla", closed_port()),
        "status",
    ]);
    out.code(9).stderr_contains("state database");
    never_shows(&out, SECRET);
}

/// On the test cluster: a role with a password, its URL in an environment variable. Whatever
/// fails (a database that does not exist, a trust that is fine), neither the output, nor the
/// events, nor the journal hold the password.
#[test]
fn postgres_passwords_from_the_environment_reach_no_output_event_or_journal() {
    let mut ws = Workspace::new();
    ws.keep_trusts(super::SMALL_ESTATE);
    let ids: Vec<String> = super::SMALL_ESTATE.iter().map(|s| s.to_string()).collect();
    let dbs = create_databases("secrets", &ids);
    ws.write_pg_inventory(&dbs);
    let role = format!("flotilla_pw_{}", std::process::id());
    let password = format!("Pw-{}-{SECRET}", std::process::id());
    pg_admin_exec(&[format!(
        "CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{password}'"
    )]);
    let (admin, _) = split_password(&pg_admin_url());
    let role_url = |db: &str| {
        let base = url_with_db(&admin, db);
        let (scheme, rest) = base.split_once("://").unwrap();
        let rest = rest.split_once('@').map_or(rest, |(_, r)| r);
        format!("{scheme}://{role}:{password}@{rest}")
    };
    // camden through the role's URL (password inside, from the environment); the others as
    // the harness wrote them. islington's password comes from password_env.
    ws.edit_inventory(|inv| {
        for t in inv["trusts"].as_array_mut().unwrap() {
            if t["id"] == "camden" {
                t["database"] = serde_json::json!({ "url_env": "CAMDEN_URL" });
            }
            if t["id"] == "islington" {
                let url = t["database"]["url"].as_str().unwrap().to_string();
                let (scheme, rest) = url.split_once("://").unwrap();
                let rest = rest.split_once('@').map_or(rest, |(_, r)| r);
                t["database"] = serde_json::json!({
                    "url": format!("{scheme}://{role}@{rest}"),
                    "password_env": "ISLINGTON_PASSWORD",
                });
            }
        }
    });
    ws.set_env("ISLINGTON_PASSWORD", &password);
    ws.set_env("CAMDEN_URL", &role_url("no_such_database_here"));
    let out = ws.run(&["plan", "plans/rio-5.1.yaml"]);
    out.code(2)
        .stderr_contains("trust 'camden': cannot connect to $CAMDEN_URL")
        .stderr_contains("no_such_database_here");
    never_shows(&out, &password);

    ws.set_env("CAMDEN_URL", &role_url(&dbs.names["camden"]));
    ws.run(&["demo", "--seed-only", "--patients", "20"])
        .success();
    ws.run(&["status"]).success();
    ws.replace(
        "plans/rio-5.1.yaml",
        "soak: { rounds: 2, interval: 1s }",
        "soak: { rounds: 1, interval: 100ms }",
    );
    let out = ws.run(&[
        "-vv",
        "rollout",
        "plans/rio-5.1.yaml",
        "--yes",
        "--events",
        "events.jsonl",
        "--report-dir",
        "report",
    ]);
    out.success();
    never_shows(&out, &password);
    for file in ["events.jsonl", "report/index.html", ".flotilla/state.db"] {
        let bytes = std::fs::read(ws.path(file)).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&password),
            "{file} holds the password"
        );
    }
    // The role stays: it owns the tables it seeded, and the cluster is thrown away anyway.
}
