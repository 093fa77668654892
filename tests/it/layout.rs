//! The source tree's shape: no import cycle among the files under src/ (checked by
//! scripts/import-cycles.py, which follows `use`, paths and re-exports to the file that
//! defines each item), and every subcommand in a file of its own under src/commands/.

use std::process::Command;

use crate::common::repo_root;

#[test]
fn no_import_cycle_among_the_files_under_src() {
    let out = Command::new("python3")
        .arg("scripts/import-cycles.py")
        .current_dir(repo_root())
        .output()
        .expect("python3 runs scripts/import-cycles.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("no import cycle"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_subcommand_has_its_own_file_and_main_only_dispatches() {
    let help = Command::new(crate::common::BIN)
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).to_string();
    let commands: Vec<&str> = help
        .split("Commands:")
        .nth(1)
        .unwrap()
        .split("Options:")
        .next()
        .unwrap()
        .lines()
        // A command's line is indented by two spaces; its description's wrapped lines, more.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 14, "{help}");
    for c in commands {
        // `man` is rendered with the completions (both print clap's description).
        let file = if c == "man" { "completions" } else { c };
        assert!(
            repo_root()
                .join(format!("src/commands/{file}.rs"))
                .is_file(),
            "subcommand {c} has no src/commands/{file}.rs"
        );
    }
    let main = std::fs::read_to_string(repo_root().join("src/main.rs")).unwrap();
    assert!(
        !main.contains("sqlx") && !main.contains("Engine"),
        "main.rs parses, dispatches and exits; it does no work itself"
    );
}
