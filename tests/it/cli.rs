//! The command line: help, validate, plan (text, json, --sql), usage errors.

use std::collections::BTreeSet;

use crate::common::*;

const PLAN: &str = "plans/rio-5.1.yaml";

#[test]
fn help_lists_every_command() {
    let ws = Workspace::new();
    let out = ws.run(&["--help"]);
    out.success();
    for cmd in ["validate", "plan", "rollout", "status", "demo"] {
        out.stdout_contains(cmd);
    }
}

#[test]
fn validate_accepts_the_repository_files_without_touching_a_database() {
    let ws = Workspace::new();
    ws.run(&["validate", PLAN]).success();
    ws.run(&["validate"]).success();
    assert!(
        !ws.exists("estate"),
        "validate created the estate directory"
    );
}

#[test]
fn plan_json_after_seeding_shows_four_waves_of_upgrades_to_5_1() {
    let ws = Workspace::new();
    ws.run(&["demo", "--seed-only", "--patients", "50"])
        .success();

    let out = ws.run(&["plan", PLAN, "--format", "json"]);
    out.success();
    let plan = out.json();
    let to_5_0 = release_version("5.0");
    let to_5_1 = release_version("5.1");
    let expected_migrations: Vec<i64> = catalog_versions()
        .into_iter()
        .filter(|v| *v > to_5_0 && *v <= to_5_1)
        .collect();
    assert!(!expected_migrations.is_empty());

    assert_eq!(plan["plan"], "rio-5.1", "{}", out.describe());
    assert_eq!(plan["target_version"], to_5_1, "{}", out.describe());
    assert_eq!(plan["target_release"], "5.1", "{}", out.describe());
    let waves = plan["waves"]
        .as_array()
        .unwrap_or_else(|| panic!("no waves\n{}", out.describe()));
    assert_eq!(waves.len(), 4, "{}", out.describe());
    assert_eq!(waves[0]["name"], "pilot");
    let pilot: Vec<&str> = waves[0]["trusts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(pilot, ["camden", "islington"], "{}", out.describe());

    let mut seen = BTreeSet::new();
    for wave in waves {
        let trusts = wave["trusts"].as_array().unwrap();
        assert!(
            !trusts.is_empty(),
            "wave {} is empty\n{}",
            wave["name"],
            out.describe()
        );
        for t in trusts {
            let id = t["id"].as_str().unwrap().to_string();
            assert!(
                seen.insert(id.clone()),
                "{id} is in two waves\n{}",
                out.describe()
            );
            assert_eq!(t["action"], "upgrade", "{id}: {t}");
            assert_eq!(t["current_version"], to_5_0, "{id}: {t}");
            let migrations: Vec<i64> = t["migrations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_i64().unwrap())
                .collect();
            assert_eq!(migrations, expected_migrations, "{id}: {t}");
        }
    }
    assert_eq!(seen.len(), 56, "{}", out.describe());
    let inventory: BTreeSet<String> = ws.trust_ids().into_iter().collect();
    assert_eq!(
        seen, inventory,
        "the plan's trusts are not exactly the inventory's"
    );
}

#[test]
fn plan_with_sql_shows_the_statements_and_the_tracking_table() {
    let ws = Workspace::new();
    ws.run(&["demo", "--seed-only", "--patients", "20"])
        .success();
    let out = ws.run(&["plan", PLAN, "--sql"]);
    out.success().stdout_contains("_flotilla_migrations");

    // The first CREATE statement line of every pending migration is shown as written.
    let (from, to) = (release_version("5.0"), release_version("5.1"));
    let mut creates = 0;
    for v in catalog_versions()
        .into_iter()
        .filter(|v| *v > from && *v <= to)
    {
        let up = std::fs::read_to_string(
            repo_root().join(format!("migrations/{}.up.sql", migration_name(v))),
        )
        .unwrap();
        if let Some(line) = up.lines().map(str::trim).find(|l| l.starts_with("CREATE ")) {
            out.stdout_contains(line);
            creates += 1;
        }
    }
    assert!(
        creates > 0,
        "no pending migration has a CREATE statement: the test proves nothing"
    );
}

#[test]
fn plan_changes_no_byte_of_any_database() {
    let ws = Workspace::new();
    ws.run(&["demo", "--seed-only", "--patients", "20"])
        .success();
    let before = ws.file_bytes("estate");
    assert_eq!(
        before
            .keys()
            .filter(|p| p.extension().is_some_and(|e| e == "db"))
            .count(),
        56
    );

    ws.run(&["plan", PLAN]).success();
    ws.run(&["plan", PLAN, "--format", "json", "--sql"])
        .success();

    let after = ws.file_bytes("estate");
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "plan added or removed files in the estate"
    );
    for (path, bytes) in &before {
        assert!(after[path] == *bytes, "plan changed {}", path.display());
    }
}

#[test]
fn status_on_an_empty_estate_directory_does_not_create_databases() {
    // status reads; it must never create a missing SQLite file.
    let ws = Workspace::new();
    let out = ws.run(&["status", "--format", "json"]);
    out.no_panic();
    assert!(
        !ws.path("estate/camden.db").exists(),
        "status created estate/camden.db\n{}",
        out.describe()
    );
}

#[test]
fn missing_plan_argument_is_a_usage_error() {
    let ws = Workspace::new();
    ws.run(&["plan"]).code(2).stderr_contains_nocase("required");
    ws.run(&["rollout"])
        .code(2)
        .stderr_contains_nocase("required");
}

#[test]
fn unknown_subcommand_and_bad_format_are_usage_errors() {
    let ws = Workspace::new();
    ws.run(&["deploy"]).code(2);
    ws.run(&["status", "--format", "xml"])
        .code(2)
        .stderr_contains("xml");
}

#[test]
fn completions_and_man_page_are_generated_from_the_command_line_definition() {
    let ws = Workspace::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = ws.run(&["completions", shell]);
        out.success()
            .stdout_contains("rollout")
            .stdout_contains("rehearse")
            .stdout_contains("approve");
    }
    // The bash script is valid bash.
    let script = ws.run(&["completions", "bash"]).stdout.clone();
    ws.write("flotilla.bash", &script);
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(ws.path("flotilla.bash"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "bash -n rejects the completion script: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    ws.run(&["completions", "tcsh"]).code(2);

    let man = ws.run(&["man"]);
    man.success()
        .stdout_contains(".TH flotilla")
        .stdout_contains("rollout")
        .stdout_contains("validate");
}

/// Run `flotilla ARGS` on a pseudo-terminal (util-linux `script`), so that progress bars are
/// drawn; everything it printed.
fn on_a_terminal(ws: &Workspace, args: &str, no_color: bool) -> String {
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", &format!("{BIN} {args}"), "/dev/null"])
        .current_dir(ws.root())
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR")
        .stdin(std::process::Stdio::null());
    if no_color {
        cmd.env("NO_COLOR", "1");
    }
    let out = {
        let _serial = crate::common::serial();
        cmd.output().expect("util-linux `script` runs")
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "flotilla {args} failed:\n{text}");
    text
}

/// An SGR (colour or bold) escape sequence: ESC [ digits/semicolons m.
fn has_sgr(text: &str) -> bool {
    let b = text.as_bytes();
    (0..b.len()).any(|i| {
        b[i] == 0x1b && b.get(i + 1) == Some(&b'[') && {
            let rest = &b[i + 2..];
            let n = rest
                .iter()
                .take_while(|c| c.is_ascii_digit() || **c == b';')
                .count();
            rest.get(n) == Some(&b'm')
        }
    })
}

#[test]
fn no_color_turns_the_progress_bars_colours_off() {
    let ws = Workspace::new();
    ws.run(&["demo", "--seed-only", "--patients", "10"])
        .success();
    ws.write(
        "plans/small.yaml",
        "name: small\nrelease: \"5.1\"\nwaves:\n  - name: pilot\n    trusts: [camden]\n  \
         - name: rest\n    trusts: [islington]\n",
    );
    let plain = on_a_terminal(&ws, "rollout plans/small.yaml --yes", true);
    assert!(
        plain.contains("wave") && !has_sgr(&plain),
        "NO_COLOR=1 on a terminal still printed colour codes:\n{plain:?}"
    );
    ws.run(&[
        "rollback",
        "plans/small.yaml",
        "--wave",
        "pilot",
        "--to",
        "5.0",
        "--yes",
    ])
    .success();
    ws.run(&[
        "rollback",
        "plans/small.yaml",
        "--wave",
        "rest",
        "--to",
        "5.0",
        "--yes",
    ])
    .success();
    // The same run in colour: the check above can fail.
    let coloured = on_a_terminal(&ws, "rollout plans/small.yaml --yes", false);
    assert!(
        has_sgr(&coloured),
        "without NO_COLOR no colour was printed on a terminal, so the NO_COLOR check proves nothing:\n{coloured:?}"
    );
}
