//! Property tests ("fuzzing" without a nightly toolchain: `cargo fuzz` needs one) of the
//! loaders of everything a user writes: the inventory, plans, releases.yaml and the migration
//! files. Generated inputs mix plausible structure (the real keys, URLs, templates, directives)
//! with hostile content (control characters, key/value strings holding a password, huge
//! numbers, anchors, broken syntax, bytes that are not UTF-8). Whatever the input, the loader
//! returns (never panics, never hangs), an error names the file, and no password reaches it.
//!
//! The suite runs a bounded number of cases (a few seconds); `FLOTILLA_FUZZ_CASES=N` runs N
//! per property instead, e.g. `FLOTILLA_FUZZ_CASES=20000 scripts/test --test it --
//! bad_input_safety::fuzz::`.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};

use flotilla::config::{Inventory, Plan};
use flotilla::migrations::{Catalog, Migration};

/// Never allowed in an error text.
const SECRET: &str = "Fuzz-S3cret-Pw";

fn cases(default: u32) -> u32 {
    std::env::var("FLOTILLA_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn runner(default_cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases: cases(default_cases),
        failure_persistence: None,
        ..Config::default()
    })
}

/// Strings a user (or an attacker) might put anywhere.
fn scalar() -> impl Strategy<Value = Value> {
    let words = prop::sample::select(vec![
        "camden".to_string(),
        "islington".to_string(),
        "london".to_string(),
        "5.1".to_string(),
        "sqlite://estate/{id}.db".to_string(),
        "sqlite:".to_string(),
        "sqlite://a.db?mode=rwc".to_string(),
        format!("postgres://rio:{SECRET}@db.example/rio"),
        format!("postgres://rio@db.example/rio?password={SECRET}"),
        format!("postgres://rio@db.example/rio?pasword={SECRET}"),
        format!("host=db.example user=rio password={SECRET} dbname=rio"),
        format!("dbname=rio password='{SECRET} x'"),
        "mysql://x".to_string(),
        "RIO_{ID}_URL".to_string(),
        "/run/secrets/{id}".to_string(),
        "estate/local/{id}".to_string(),
        "10s".to_string(),
        "0s".to_string(),
        "-1s".to_string(),
        "rollback_wave_and_halt".to_string(),
        "required".to_string(),
        "SELECT 1".to_string(),
        "\u{1b}[2J\u{7}".to_string(),
        "\u{202e}evil".to_string(),
        "\0".to_string(),
        String::new(),
        "99999999999999999999".to_string(),
    ]);
    prop_oneof![
        4 => words.prop_map(Value::String),
        1 => any::<i64>().prop_map(|n| json!(n)),
        1 => any::<bool>().prop_map(|b| json!(b)),
        1 => Just(Value::Null),
        1 => "\\PC{0,12}".prop_map(Value::String),
    ]
}

/// A YAML document built from the loaders' own keys (and a few they do not know).
fn document(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let key = prop::sample::select(keys.to_vec());
    scalar().prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..7).prop_map(|pairs| {
                Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

/// The document as YAML text, then perhaps damaged: a span deleted, hostile text inserted.
fn yaml_text(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
    let inserts = prop::sample::select(vec![
        ":",
        "- ",
        "\n",
        "  ",
        "[",
        "{",
        "}",
        "'",
        "\"",
        "&a ",
        "*a",
        "<<: *a\n",
        "!!binary ",
        "\t",
        "\u{0}",
        "\u{1b}",
        "---\n",
        "? ",
        "%YAML 1.2\n",
        "#",
        ",",
    ]);
    (
        document(keys),
        prop::collection::vec((any::<prop::sample::Index>(), inserts), 0..4),
        prop::option::of((any::<prop::sample::Index>(), 0usize..20)),
    )
        .prop_map(|(doc, inserts, cut)| {
            let mut text = serde_saphyr::to_string(&doc).unwrap_or_default();
            for (at, s) in inserts {
                let pos = floor_char_boundary(&text, at.index(text.len() + 1));
                text.insert_str(pos, s);
            }
            if let Some((at, len)) = cut {
                let start = floor_char_boundary(&text, at.index(text.len() + 1));
                let end = floor_char_boundary(&text, (start + len).min(text.len()));
                text.replace_range(start..end, "");
            }
            text
        })
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// An inventory shaped like a real one, with values from [`scalar`].
fn structured_inventory() -> impl Strategy<Value = String> {
    let trust = (
        scalar(),
        scalar(),
        scalar(),
        scalar(),
        prop::option::of(scalar()),
        prop::option::of(scalar()),
    )
        .prop_map(|(id, name, region, url, password_env, local)| {
            json!({
                "id": id, "name": name, "region": region,
                "database": { "url": url, "password_env": password_env },
                "local_migrations": local,
            })
        });
    (prop::collection::vec(trust, 0..4), scalar()).prop_map(|(trusts, url)| {
        serde_saphyr::to_string(&json!({
            "defaults": { "database": { "url": url } },
            "trusts": trusts,
        }))
        .unwrap_or_default()
    })
}

/// A plan shaped like a real one, with values from [`scalar`].
fn structured_plan() -> impl Strategy<Value = String> {
    let wave = (scalar(), prop::collection::vec(scalar(), 0..3), scalar(), scalar())
        .prop_map(|(name, trusts, approval, concurrency)| {
            json!({ "name": name, "trusts": trusts, "approval": approval, "concurrency": concurrency })
        });
    (
        scalar(),
        scalar(),
        prop::collection::vec(wave, 0..3),
        scalar(),
        scalar(),
        scalar(),
    )
        .prop_map(|(name, release, waves, lock, table, samples)| {
            serde_saphyr::to_string(&json!({
                "name": name,
                "release": release,
                "waves": waves,
                "timeouts": { "lock": lock },
                "health": {
                    "integrity": { table.as_str().unwrap_or("patient"): ["id", table] },
                    "latency_probes": [{ "name": "p", "sql": "SELECT 1", "samples": samples }],
                },
            }))
            .unwrap_or_default()
        })
}

const INVENTORY_KEYS: &[&str] = &[
    "defaults",
    "trusts",
    "id",
    "name",
    "region",
    "tags",
    "database",
    "url",
    "url_env",
    "password_env",
    "password_file",
    "password",
    "local_migrations",
    "maintenance_window",
    "colour",
];

const PLAN_KEYS: &[&str] = &[
    "name",
    "release",
    "target_version",
    "concurrency",
    "waves",
    "trusts",
    "select",
    "region",
    "tags",
    "approval",
    "soak",
    "rounds",
    "interval",
    "health",
    "latency_probes",
    "sql",
    "params",
    "samples",
    "write_probe",
    "insert",
    "read_back",
    "cleanup",
    "integrity",
    "invariants",
    "expect",
    "regression",
    "alpha",
    "timeouts",
    "lock",
    "statement",
    "on_regression",
    "max_failed_trusts",
    "patient",
];

/// An error must name its file and hold no secret.
fn check_error(error: &str, file: &str) -> Result<(), TestCaseError> {
    prop_assert!(error.contains(file), "error does not name {file}: {error}");
    prop_assert!(!error.contains(SECRET), "error shows the password: {error}");
    prop_assert!(!error.trim().is_empty());
    Ok(())
}

#[test]
fn the_inventory_loader_never_panics_and_names_the_file() {
    let path = Path::new("fuzz/trusts.yaml");
    runner(384)
        .run(
            &prop_oneof![yaml_text(INVENTORY_KEYS), structured_inventory()],
            |text| {
                match Inventory::parse(path, &text) {
                    Ok(inv) => {
                        for t in &inv.trusts {
                            prop_assert!(!t.database.redacted().contains(SECRET));
                        }
                    }
                    Err(e) => check_error(&e.to_string(), "fuzz/trusts.yaml")?,
                }
                Ok(())
            },
        )
        .unwrap();
}

fn small_inventory() -> Inventory {
    Inventory::parse(
        Path::new("fuzz/trusts.yaml"),
        "defaults: {database: {url: 'sqlite://estate/{id}.db'}}\ntrusts:\n  - {id: camden, name: C, region: london, tags: [pilot]}\n  - {id: islington, name: I, region: london}\n  - {id: kent, name: K, region: south}\n",
    )
    .expect("the fixed inventory parses")
}

fn small_catalog() -> Catalog {
    let m = |v: i64| {
        Migration::new(
            v,
            format!("m{v}"),
            (PathBuf::from(format!("m/{v}_m.up.sql")), "SELECT 1;".into()),
            (
                PathBuf::from(format!("m/{v}_m.down.sql")),
                "SELECT 1;".into(),
            ),
        )
        .unwrap()
    };
    Catalog::from_parts(
        Path::new("m"),
        vec![m(1), m(2), m(3)],
        vec![("5.0".into(), 1), ("5.1".into(), 3)],
    )
}

#[test]
fn the_plan_loader_never_panics_and_names_the_file() {
    let inventory = small_inventory();
    let catalog = small_catalog();
    let path = Path::new("fuzz/plan.yaml");
    runner(384)
        .run(
            &prop_oneof![yaml_text(PLAN_KEYS), structured_plan()],
            |text| {
                if let Err(e) = Plan::parse(path, &text, &inventory, &catalog) {
                    check_error(&e.to_string(), "fuzz/plan.yaml")?;
                }
                Ok(())
            },
        )
        .unwrap();
}

/// A migration file: a name from the forms people write (and mistype), and contents that may
/// carry a directive, control characters, or bytes that are not UTF-8.
fn migration_file() -> impl Strategy<Value = (String, Vec<u8>)> {
    let version = prop_oneof![
        Just(String::new()),
        "[0-9]{1,4}",
        "[0-9]{14}",
        "[0-9]{19,24}",
        Just("v1".to_string()),
    ];
    let description = prop_oneof![Just(String::new()), "[a-z_]{1,8}", "[a-zA-Z0-9 ._-]{1,8}",];
    let suffix = prop::sample::select(vec![
        ".up.sql",
        ".down.sql",
        ".UP.SQL",
        ".Down.Sql",
        ".sql",
        ".up.sql.bak",
        ".txt",
        "",
    ]);
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        prop::sample::select(vec![
            "-- flotilla: batch\nUPDATE t SET x = 1 WHERE id IN (SELECT id FROM t LIMIT 10);",
            "-- flotilla: no-transaction, irreversible\nSELECT 1;",
            "-- flotilla: rewrites:patient.nhs_number\nSELECT 1;",
            "-- flotilla: rewrites:broken\nSELECT 1;",
            "-- flotilla: no-transaction, batch\n",
            "-- flotilla: bogus\n",
            "SELECT 1;",
            "",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
    ];
    (version, any::<bool>(), description, suffix, body).prop_map(
        |(version, underscore, description, suffix, body)| {
            let sep = if underscore { "_" } else { "" };
            (format!("{version}{sep}{description}{suffix}"), body)
        },
    )
}

#[test]
fn the_migration_loader_never_panics_and_names_the_file() {
    let strategy = (
        prop::collection::vec(migration_file(), 0..6),
        prop::option::of(yaml_text(&["\"5.0\"", "\"5.1\"", "5.2", "release"])),
    );
    runner(160)
        .run(&strategy, |(files, releases)| {
            let dir = tempfile::tempdir().unwrap();
            for (name, body) in &files {
                if name.is_empty() || name.contains('/') {
                    continue;
                }
                std::fs::write(dir.path().join(name), body).unwrap();
            }
            if let Some(text) = &releases {
                std::fs::write(dir.path().join("releases.yaml"), text).unwrap();
            }
            match Catalog::load(dir.path()) {
                Ok(catalog) => {
                    let mut last = None;
                    for m in catalog.migrations() {
                        prop_assert!(last < Some(m.version), "versions in order");
                        last = Some(m.version);
                        prop_assert!(m.up.path.starts_with(dir.path()));
                        prop_assert!(m.down.path.starts_with(dir.path()));
                    }
                    for (_, v) in catalog.releases() {
                        prop_assert!(catalog.get(v).is_some(), "a release ends at a migration");
                    }
                }
                Err(e) => {
                    let text = e.to_string();
                    prop_assert!(
                        text.contains(&dir.path().display().to_string()),
                        "error does not name the file: {text}"
                    );
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn state_locations_never_echo_what_they_refuse() {
    let strategy = (
        prop::sample::select(vec![
            "",
            "host=",
            "sqlite://",
            "postgres://",
            "postgresql://",
            "mysql://",
            "file:",
            "./",
        ]),
        "\\PC{0,16}",
        prop::sample::select(vec!["", " password=", "?password=", ":", "@", "="]),
    )
        .prop_map(|(prefix, middle, secret)| {
            if secret.is_empty() {
                format!("{prefix}{middle}")
            } else {
                format!("{prefix}{middle}{secret}{SECRET}")
            }
        });
    runner(512)
        .run(&strategy, |s| {
            if let Err(e) = flotilla::journal::StateLocation::parse(&s) {
                prop_assert!(!e.contains(SECRET), "{e}");
                prop_assert!(e.contains("--state"), "{e}");
            }
            Ok(())
        })
        .unwrap();
}
