//! Migration and configuration files: regular files of bounded size, named exactly. Before
//! issue 10 a FIFO hung `validate`, a symlink to /dev/zero read until memory ran out,
//! `0135_x.UP.SQL` was silently ignored (while `0135_x.sql` was refused), a version beyond
//! i64 was "not a migration file name", and a `local_migrations` path that is a file meant
//! "no local migrations".

use std::time::Duration;

use crate::common::{serial, Spawned, Workspace};

/// `validate`, which must finish within a minute (a FIFO used to block it forever).
fn validate(ws: &Workspace) -> crate::common::Outcome {
    let _serial = serial();
    Spawned::start(ws, &["validate"]).wait(Duration::from_secs(60))
}

fn mkfifo(path: &std::path::Path) {
    let ok = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo")
        .success();
    assert!(ok, "mkfifo {}", path.display());
}

#[test]
fn migration_file_names_are_exact_and_versions_fit_64_bits() {
    let ws = Workspace::new();
    ws.write("migrations/0135_x.UP.SQL", "SELECT 1;");
    validate(&ws)
        .code(2)
        .stderr_contains("0135_x.UP.SQL")
        .stderr_contains("case-sensitive");
    ws.remove("migrations/0135_x.UP.SQL");

    ws.write("migrations/0135_x.Down.sql", "SELECT 1;");
    validate(&ws).code(2).stderr_contains("0135_x.Down.sql");
    ws.remove("migrations/0135_x.Down.sql");

    ws.write("migrations/99999999999999999999_big.up.sql", "SELECT 1;");
    ws.write("migrations/99999999999999999999_big.down.sql", "SELECT 1;");
    validate(&ws)
        .code(2)
        .stderr_contains("99999999999999999999")
        .stderr_contains("too large");
}

#[test]
fn only_regular_files_of_bounded_size_are_read() {
    let ws = Workspace::new();
    let down = "migrations/0135_odd.down.sql";
    ws.write(down, "SELECT 1;");
    let up = ws.path("migrations/0135_odd.up.sql");

    mkfifo(&up);
    validate(&ws)
        .code(2)
        .stderr_contains("0135_odd.up.sql")
        .stderr_contains("FIFO");
    std::fs::remove_file(&up).unwrap();

    std::os::unix::fs::symlink("/dev/zero", &up).unwrap();
    validate(&ws)
        .code(2)
        .stderr_contains("0135_odd.up.sql")
        .stderr_contains("character device");
    std::fs::remove_file(&up).unwrap();

    std::fs::create_dir(&up).unwrap();
    validate(&ws)
        .code(2)
        .stderr_contains("0135_odd.up.sql")
        .stderr_contains("directory");
    std::fs::remove_dir(&up).unwrap();

    // 65 MiB, sparse: refused from its size, without reading it.
    let f = std::fs::File::create(&up).unwrap();
    f.set_len(65 * 1024 * 1024).unwrap();
    validate(&ws)
        .code(2)
        .stderr_contains("0135_odd.up.sql")
        .stderr_contains("larger than 64 MiB");
    std::fs::remove_file(&up).unwrap();
    ws.remove(down);

    // The YAML files too: an inventory or a plan that is a FIFO, releases.yaml a device.
    let releases = ws.path("migrations/releases.yaml");
    std::fs::remove_file(&releases).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &releases).unwrap();
    validate(&ws)
        .code(2)
        .stderr_contains("releases.yaml")
        .stderr_contains("character device");
    std::fs::remove_file(&releases).unwrap();
    std::fs::copy(
        crate::common::repo_root().join("migrations/releases.yaml"),
        &releases,
    )
    .unwrap();

    ws.remove("plans/rio-5.1.yaml");
    mkfifo(&ws.path("plans/rio-5.1.yaml"));
    let out = {
        let _serial = serial();
        Spawned::start(&ws, &["validate", "plans/rio-5.1.yaml"]).wait(Duration::from_secs(60))
    };
    out.code(2)
        .stderr_contains("rio-5.1.yaml")
        .stderr_contains("FIFO");

    ws.remove("trusts.yaml");
    mkfifo(&ws.path("trusts.yaml"));
    validate(&ws)
        .code(2)
        .stderr_contains("trusts.yaml")
        .stderr_contains("FIFO");
}

#[test]
fn a_local_migrations_path_that_is_a_file_is_an_error_naming_the_trust_and_line() {
    let ws = Workspace::new();
    ws.write("estate/local/camden", "not a directory");
    let line = ws
        .read("trusts.yaml")
        .lines()
        .position(|l| l.trim() == "- id: camden")
        .expect("camden in trusts.yaml")
        + 1;
    validate(&ws)
        .code(2)
        .stderr_contains(&format!("trusts.yaml:{line}"))
        .stderr_contains("trust 'camden'")
        .stderr_contains("estate/local/camden is not a directory");
}
