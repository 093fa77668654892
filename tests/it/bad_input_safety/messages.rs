//! What flotilla says: plain words instead of library internals ("set DuplicateKeyPolicy in
//! Options", "budget breached: Nodes { nodes: 250001 }"), control characters from YAML
//! escaped instead of sent to the terminal, the line of the offending entry, "before upgrade"
//! when the baseline failed and nothing was upgraded, and the real user's name.

use super::{small_workspace, state, PLAN};
use crate::common::Workspace;

#[test]
fn yaml_errors_are_plain_words_not_library_options_or_limits() {
    let ws = Workspace::new();
    let inventory = ws.read("trusts.yaml");
    ws.write(
        "trusts.yaml",
        inventory.replacen(
            "    region: london\n",
            "    region: london\n    region: south\n",
            1,
        ),
    );
    let out = ws.run(&["validate"]);
    out.code(2)
        .stderr_contains("trusts.yaml:")
        .stderr_contains("'region' appears twice");
    assert!(
        !out.stderr.contains("DuplicateKeyPolicy"),
        "{}",
        out.describe()
    );
    ws.write("trusts.yaml", inventory);

    // A file too big for the parser's limits ("budget breached: Nodes { .. }" before) is
    // covered by the unit test in src/config/yaml.rs: the same function words both messages.
}

#[test]
fn control_characters_from_yaml_are_escaped_before_printing() {
    let ws = Workspace::new();
    // YAML escapes in double-quoted strings: ESC (\e) starting a screen clear and a title
    // change, BEL (\a), a right-to-left override (U+202E).
    let esc = r"\e[2J\e]0;owned\a";
    ws.replace(
        PLAN,
        "  - name: pilot\n",
        &format!("  - name: \"pi{esc}lot\"\n"),
    );
    ws.replace(
        "trusts.yaml",
        "    name: Camden PCT\n",
        &format!("    name: \"Camden {esc}PCT\\u202E\"\n"),
    );
    let out = ws.run(&["validate", PLAN]);
    out.success()
        .stdout_contains("pi\\u{1b}[2J\\u{1b}]0;owned\\u{7}lot");
    // An error that quotes the YAML: an unknown trust in a wave.
    ws.replace(
        PLAN,
        "trusts: [camden, islington]",
        &format!("trusts: [camden, \"isl{esc}ington\"]"),
    );
    let bad = ws.run(&["validate", PLAN]);
    bad.code(2).stderr_contains("isl\\u{1b}[2J");
    for out in [&out, &bad] {
        for raw in ['\u{1b}', '\u{7}', '\u{202e}'] {
            assert!(
                !out.stdout.contains(raw) && !out.stderr.contains(raw),
                "raw {raw:?} reached the terminal\n{}",
                out.describe()
            );
        }
    }
}

#[test]
fn health_problems_cite_the_line_of_their_entry() {
    let ws = Workspace::new();
    let line_of = |ws: &Workspace, needle: &str| {
        ws.read(PLAN)
            .lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle} not in the plan"))
            + 1
    };
    ws.replace(
        PLAN,
        "    care_plan: [id, patient_id, summary]",
        "    care_plans: [id, patient_id, summary]",
    );
    let line = line_of(&ws, "care_plans:");
    ws.run(&["validate", PLAN])
        .code(2)
        .stderr_contains(&format!("{PLAN}:{line}:"))
        .stderr_contains("integrity table 'care_plans'");

    let ws = Workspace::new();
    ws.replace(
        PLAN,
        "    care_plan: [id, patient_id, summary]",
        "    care_plan: []",
    );
    let line = line_of(&ws, "care_plan: []");
    ws.run(&["validate", PLAN])
        .code(2)
        .stderr_contains(&format!("{PLAN}:{line}:"))
        .stderr_contains("names no key columns");

    let ws = Workspace::new();
    ws.replace(PLAN, "alpha: 0.01", "alpha: 1.5");
    let line = line_of(&ws, "alpha: 1.5");
    ws.run(&["validate", PLAN])
        .code(2)
        .stderr_contains(&format!("{PLAN}:{line}:"))
        .stderr_contains("regression.alpha");
}

#[test]
fn a_baseline_that_could_not_be_measured_is_not_reported_as_after_the_upgrade() {
    let ws = small_workspace();
    ws.run(&["demo", "--seed-only", "--patients", "20"])
        .success();
    // Compiles, but fails when it runs (integer overflow): the baseline cannot be measured.
    ws.replace(
        PLAN,
        "  invariants:\n",
        "  invariants:\n    - { name: overflows, sql: \"SELECT abs(-9223372036854775807 - 1)\", expect: 0 }\n",
    );
    let out = ws.run(&["rollout", PLAN, "--yes"]);
    out.code(3)
        .stdout_contains("before upgrade (baseline; nothing was upgraded)");
    assert!(
        !out.stdout.contains("after upgrade") && !out.stderr.contains("after upgrade"),
        "nothing was upgraded\n{}",
        out.describe()
    );
    assert!(
        super::versions(&ws).values().all(|v| *v == 80),
        "every trust still at 5.0"
    );
}

#[test]
fn runs_are_recorded_with_the_name_of_the_uid_when_user_is_unset() {
    let ws = small_workspace();
    ws.run(&["demo", "--seed-only", "--patients", "10"])
        .success();
    let ungated = ws.read(PLAN).split("\nhealth:").next().unwrap().to_string();
    ws.write("plans/plain.yaml", ungated);
    // As under cron, systemd or `env -i`: no $USER, no $LOGNAME.
    let mut cmd = ws.command(&["rollout", "plans/plain.yaml", "--yes"]);
    cmd.env_remove("USER").env_remove("LOGNAME");
    let out = {
        let _serial = crate::common::serial();
        crate::common::run_captured(&mut cmd, "rollout plans/plain.yaml (USER unset)".into())
    };
    out.success();
    assert_eq!(
        state(&ws).query_strings("SELECT started_by FROM flotilla_runs"),
        vec![super::operator()]
    );
}
