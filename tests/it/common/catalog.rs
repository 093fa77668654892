//! Catalog facts, read from the repo's migrations/ (so the tests follow them).

use super::{parse_yaml, repo_root};

/// Last version of `release` per migrations/releases.yaml of the repo.
pub fn release_version(release: &str) -> i64 {
    let text = std::fs::read_to_string(repo_root().join("migrations/releases.yaml")).unwrap();
    parse_yaml(&text, "releases.yaml")[release]
        .as_i64()
        .unwrap_or_else(|| panic!("release {release} not in migrations/releases.yaml"))
}

/// Every migration version of the repo's migrations/, ascending.
pub fn catalog_versions() -> Vec<i64> {
    let mut v: Vec<i64> = std::fs::read_dir(repo_root().join("migrations"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".up.sql")?;
            stem.split('_').next()?.parse().ok()
        })
        .collect();
    v.sort();
    v
}

/// File stem of the repo's migration `version`, e.g. "0010_create_staff".
pub fn migration_name(version: i64) -> String {
    std::fs::read_dir(repo_root().join("migrations"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".up.sql")?.to_string();
            (stem.split('_').next()?.parse::<i64>().ok()? == version).then_some(stem)
        })
        .next()
        .unwrap_or_else(|| panic!("no migration {version} in the repo's migrations/"))
}

/// The version prefix of `version` as the repo's files write it (zero-padded like them).
pub fn version_prefix(version: i64) -> String {
    let width = migration_name(catalog_versions()[0])
        .split('_')
        .next()
        .unwrap()
        .len();
    format!("{version:0width$}")
}

/// A version after every migration of the repo, with its file prefix (e.g. (131, "0131")).
pub fn next_version() -> (i64, String) {
    let v = catalog_versions().last().unwrap() + 1;
    (v, version_prefix(v))
}

/// The catalog versions up to and including `last`.
pub fn versions_through(last: i64) -> Vec<i64> {
    catalog_versions()
        .into_iter()
        .filter(|v| *v <= last)
        .collect()
}
