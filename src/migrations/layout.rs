//! The migration layouts flotilla reads besides its own: how sqlx-cli, golang-migrate, diesel,
//! Flyway and dbmate lay out a migrations directory, detected from the files or set with
//! `layout:` in `DIR/flotilla.yaml`, each read into the same [`Found`] migrations: a 64-bit key
//! ([`super::version`]), the version as the tool writes it (the label), a description, and the
//! up and down scripts.
//!
//! | layout | files |
//! |---|---|
//! | flotilla, sqlx, golang-migrate | `<version>_<name>.up.sql` + `<version>_<name>.down.sql` |
//! | diesel | `<version>_<name>/up.sql` + `down.sql` (+ `metadata.toml`) |
//! | flyway | `V<version>__<desc>.sql`, undo `U<version>__<desc>.sql` |
//! | dbmate | `<version>_<name>.sql` with `-- migrate:up` / `-- migrate:down` sections |

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::error::CatalogError;
use super::version::{diesel_key, digits_key, flyway_key, FlywayKind, VersionError};

/// The file with a migrations directory's own settings.
pub const SETTINGS_FILE: &str = "flotilla.yaml";

/// How a migrations directory is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// `<version>_<name>.up.sql` + `.down.sql`.
    Flotilla,
    /// sqlx-cli's reversible migrations: the same files as flotilla's.
    Sqlx,
    /// golang-migrate: the same files as flotilla's.
    GolangMigrate,
    /// `<version>_<name>/up.sql` + `down.sql`.
    Diesel,
    /// `V<version>__<desc>.sql` + undo `U<version>__<desc>.sql`.
    Flyway,
    /// One `<version>_<name>.sql` with `-- migrate:up` / `-- migrate:down` sections.
    Dbmate,
}

impl Layout {
    /// The name written in `layout:`.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Flotilla => "flotilla",
            Layout::Sqlx => "sqlx",
            Layout::GolangMigrate => "golang-migrate",
            Layout::Diesel => "diesel",
            Layout::Flyway => "flyway",
            Layout::Dbmate => "dbmate",
        }
    }

    /// The key of a version as this layout writes it (`0010`, `2014-11-27-000000`, `1.2`).
    pub fn key(self, version: &str) -> Result<i64, VersionError> {
        match self {
            Layout::Flotilla | Layout::Sqlx | Layout::GolangMigrate | Layout::Dbmate => {
                digits_key(version)
            }
            Layout::Diesel => diesel_key(version),
            Layout::Flyway => flyway_key(version).map(|k| k.key),
        }
    }
}

/// `DIR/flotilla.yaml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsFile {
    #[serde(default)]
    layout: Option<Layout>,
    #[serde(default)]
    accepted: Option<Spanned<String>>,
}

/// What `DIR/flotilla.yaml` says, if it exists.
#[derive(Debug, Default, Clone)]
pub struct Settings {
    /// Where it was read from.
    pub path: PathBuf,
    /// `layout:`.
    pub layout: Option<Layout>,
    /// `accepted:` and its line.
    pub accepted: Option<(String, u64)>,
}

impl Settings {
    /// Read `dir/flotilla.yaml` (none: the defaults).
    pub fn load(dir: &Path) -> Result<Settings, CatalogError> {
        let path = dir.join(SETTINGS_FILE);
        if !path.exists() {
            return Ok(Settings {
                path,
                ..Settings::default()
            });
        }
        let file: SettingsFile = crate::config::yaml::load(&path)?;
        Ok(Settings {
            layout: file.layout,
            accepted: file
                .accepted
                .map(|a| (a.value.trim().to_string(), a.referenced.line())),
            path,
        })
    }
}

/// One script as read.
#[derive(Debug, Clone)]
pub struct Part {
    /// The file it came from.
    pub path: PathBuf,
    /// The script, as run and checksummed.
    pub sql: String,
    /// The text whose first line may hold `-- flotilla:` directives, when not `sql` itself
    /// (a dbmate section, whose script keeps the file's earlier lines blank so that lint
    /// findings name the file's own line numbers).
    pub directives: Option<String>,
    /// The tool's own setting says "outside a transaction" (diesel's `run_in_transaction =
    /// false`, dbmate's `transaction:false`).
    pub no_transaction: bool,
}

impl Part {
    fn plain(path: PathBuf, sql: String, no_transaction: bool) -> Part {
        Part {
            path,
            sql,
            directives: None,
            no_transaction,
        }
    }
}

/// One migration as read from a layout, before its directives are parsed.
#[derive(Debug)]
pub struct Found {
    pub key: i64,
    pub label: String,
    pub description: String,
    pub up: Part,
    /// `Err(what a down should be)` when the migration has none.
    pub down: Result<Part, String>,
}

/// Read `dir` in `layout`. Sorted by key; two migrations with one key are refused.
pub fn read(dir: &Path, layout: Layout) -> Result<Vec<Found>, CatalogError> {
    let found = match layout {
        Layout::Flotilla | Layout::Sqlx | Layout::GolangMigrate => {
            unreachable!("flotilla's own layout is read by the catalog")
        }
        Layout::Diesel => read_diesel(dir)?,
        Layout::Flyway => read_flyway(dir)?,
        Layout::Dbmate => read_dbmate(dir)?,
    };
    let mut by_key: BTreeMap<i64, Found> = BTreeMap::new();
    for f in found {
        if let Some(first) = by_key.get(&f.key) {
            return Err(CatalogError::DuplicateVersion {
                version: f.key,
                label: same_version(&first.label, &f.label),
                first: first.up.path.clone(),
                second: f.up.path,
            });
        }
        by_key.insert(f.key, f);
    }
    Ok(by_key.into_values().collect())
}

/// `1` or `1 (also written 1.0)`.
pub(crate) fn same_version(first: &str, second: &str) -> String {
    if first == second {
        first.to_string()
    } else {
        format!("{first} (written {second} too)")
    }
}

fn invalid(path: &Path, line: Option<usize>, message: impl Into<String>) -> CatalogError {
    CatalogError::Invalid {
        path: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

fn read_text(path: &Path) -> Result<String, CatalogError> {
    crate::files::read_regular(path, crate::files::MIGRATION_CAP).map_err(|source| {
        CatalogError::ReadFile {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Every entry of `dir`, sorted, without hidden ones (`.git`, editors' files).
fn entries(dir: &Path) -> Result<Vec<PathBuf>, CatalogError> {
    let read_dir = |source| CatalogError::ReadDir {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_dir)? {
        let path = entry.map_err(read_dir)?.path();
        if !file_name(&path).starts_with('.') {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Every file under `dir`, in its subdirectories too (Flyway reads its locations
/// recursively), without hidden ones; symlinked directories are not followed.
fn files_below(dir: &Path) -> Result<Vec<PathBuf>, CatalogError> {
    let mut out = Vec::new();
    for path in entries(dir)? {
        let is_dir = std::fs::symlink_metadata(&path)
            .map(|m| m.is_dir())
            .unwrap_or(false);
        if is_dir {
            out.extend(files_below(&path)?);
        } else {
            out.push(path);
        }
    }
    Ok(out)
}

fn file_name(path: &Path) -> &str {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
}

fn is_sql(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("sql"))
}

fn version_error(path: &Path, e: VersionError) -> CatalogError {
    invalid(path, None, e.to_string())
}

/// `<version>_<name>`: the version must be digits (and `-`), the name not empty.
fn split_versioned(stem: &str) -> Option<(&str, &str)> {
    let (version, name) = stem.split_once('_')?;
    let digits = version.bytes().filter(|b| *b != b'-').count();
    (digits > 0
        && version.bytes().all(|b| b.is_ascii_digit() || b == b'-')
        && !version.starts_with('-')
        && !name.is_empty())
    .then_some((version, name))
}

// ---------------------------------------------------------------------------------------------
// Detection

/// Which layout the files of `dir` are in, when `flotilla.yaml` does not say: flotilla's own
/// when nothing else is there (an empty directory, or files no layout claims, which flotilla's
/// loader then refuses by name). Files of two layouts are refused: `layout:` must say.
pub fn detect(dir: &Path) -> Result<Layout, CatalogError> {
    let mut seen: Vec<(Layout, PathBuf)> = Vec::new();
    let mut note = |layout: Layout, path: &Path| {
        if !seen.iter().any(|(l, _)| *l == layout) {
            seen.push((layout, path.to_path_buf()));
        }
    };
    for path in entries(dir)? {
        let name = file_name(&path);
        if path.is_dir() {
            if path.join("up.sql").exists() || path.join("down.sql").exists() {
                note(Layout::Diesel, &path);
            } else if let Some(v) = files_below(&path)?
                .into_iter()
                .find(|p| is_sql(p) && flyway_name(file_name(p)).is_some())
            {
                // Flyway reads subdirectories too (`V1__init.sql` in `release-1/`).
                note(Layout::Flyway, &v);
            }
            continue;
        }
        if !is_sql(&path) {
            continue;
        }
        if name.ends_with(".up.sql") || name.ends_with(".down.sql") {
            note(Layout::Flotilla, &path);
        } else if flyway_name(name).is_some() {
            note(Layout::Flyway, &path);
        } else if name
            .strip_suffix(".sql")
            .and_then(split_versioned)
            .is_some()
            && read_text(&path).is_ok_and(|text| text.lines().any(|l| dbmate_marker(l).is_some()))
        {
            // Without a marker it may as well be a sqlx migration without a down: flotilla's
            // loader refuses it by name, saying both.
            note(Layout::Dbmate, &path);
        }
    }
    // A `<version>_<name>.sql` beside `.up.sql` files is a misnamed flotilla migration (refused
    // by name), not a second layout; beside diesel's directories, a loose script diesel skips.
    if seen
        .iter()
        .any(|(l, _)| matches!(l, Layout::Flotilla | Layout::Diesel))
    {
        seen.retain(|(l, _)| *l != Layout::Dbmate);
    }
    match seen.as_slice() {
        [] => Ok(Layout::Flotilla),
        [(layout, _)] => Ok(*layout),
        [(a, pa), (b, pb), ..] => Err(CatalogError::AmbiguousLayout {
            dir: dir.to_path_buf(),
            first: format!("{} ({})", a.name(), pa.display()),
            second: format!("{} ({})", b.name(), pb.display()),
            settings: dir.join(SETTINGS_FILE),
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// diesel

fn read_diesel(dir: &Path) -> Result<Vec<Found>, CatalogError> {
    let mut found = Vec::new();
    for path in entries(dir)? {
        let name = file_name(&path).to_string();
        if !path.is_dir() {
            // diesel runs only directories: a loose script (crates.io's `data_oauth_github.sql`)
            // is not a migration, and neither are flotilla's own files.
            if name != SETTINGS_FILE && name != "releases.yaml" {
                tracing::info!(
                    path = %path.display(),
                    "not a diesel migration (diesel runs only <version>_<name>/ directories): skipped"
                );
            }
            continue;
        }
        let Some((version, description)) = split_versioned(&name) else {
            return Err(invalid(
                &path,
                None,
                "not a diesel migration directory name; expected <version>_<name>/ (e.g. 2014-11-27-000000_create_users/) holding up.sql and down.sql",
            ));
        };
        let key = diesel_key(version).map_err(|e| version_error(&path, e))?;
        let up_path = path.join("up.sql");
        if !up_path.exists() {
            return Err(invalid(
                &path,
                None,
                format!(
                    "diesel migration {version} has no up.sql (expected {})",
                    up_path.display()
                ),
            ));
        }
        let no_transaction = diesel_no_transaction(&path.join("metadata.toml"))?;
        let down_path = path.join("down.sql");
        let down = if down_path.exists() {
            Ok(Part::plain(
                down_path.clone(),
                read_text(&down_path)?,
                no_transaction,
            ))
        } else {
            Err(down_path.display().to_string())
        };
        found.push(Found {
            key,
            label: version.to_string(),
            description: description.to_string(),
            up: Part::plain(up_path.clone(), read_text(&up_path)?, no_transaction),
            down,
        });
    }
    // diesel runs its migrations in the order of their versions as text; the keys must agree,
    // or flotilla would run them in another order than diesel did.
    let mut by_text: Vec<&Found> = found.iter().collect();
    by_text.sort_by(|a, b| {
        let digits = |f: &Found| f.label.replace('-', "");
        digits(a).cmp(&digits(b))
    });
    let mut by_key: Vec<&Found> = found.iter().collect();
    by_key.sort_by_key(|f| f.key);
    if let Some((a, b)) = by_text.iter().zip(&by_key).find(|(a, b)| a.key != b.key) {
        return Err(invalid(
            &a.up.path,
            None,
            format!(
                "diesel runs version {} before {}, but their 64-bit keys order them the other way ({} and {}); give the versions one width (diesel's timestamps, YYYY-MM-DD-HHMMSS)",
                a.label, b.label, a.key, b.key
            ),
        ));
    }
    Ok(found)
}

/// diesel's `metadata.toml`: `run_in_transaction = false` runs the migration outside a
/// transaction. Other keys diesel does not know either: refused, never ignored.
fn diesel_no_transaction(path: &Path) -> Result<bool, CatalogError> {
    if !path.exists() {
        return Ok(false);
    }
    let text = crate::files::read_regular(path, crate::files::YAML_CAP).map_err(|source| {
        CatalogError::ReadFile {
            path: path.to_path_buf(),
            source,
        }
    })?;
    let mut no_transaction = false;
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        match line.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
            Some(("run_in_transaction", "false")) => no_transaction = true,
            Some(("run_in_transaction", "true")) => no_transaction = false,
            _ => {
                return Err(invalid(
                    path,
                    Some(i + 1),
                    format!("'{line}' is not understood; diesel's metadata.toml holds `run_in_transaction = true|false`"),
                ))
            }
        }
    }
    Ok(no_transaction)
}

// ---------------------------------------------------------------------------------------------
// Flyway

/// `V1.2__desc.sql` → ('V', "1.2", "desc"); `R__desc.sql` → ('R', "", "desc").
fn flyway_name(name: &str) -> Option<(char, &str, &str)> {
    let stem = name.strip_suffix(".sql")?;
    let prefix = stem.chars().next()?;
    if !matches!(prefix, 'V' | 'U' | 'R') {
        return None;
    }
    let (version, description) = stem[1..].split_once("__")?;
    let version_ok = if prefix == 'R' {
        version.is_empty()
    } else {
        !version.is_empty()
            && version.starts_with(|c: char| c.is_ascii_digit())
            && version
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'.' || b == b'_')
    };
    version_ok.then_some((prefix, version, description))
}

fn read_flyway(dir: &Path) -> Result<Vec<Found>, CatalogError> {
    let mut ups: Vec<Found> = Vec::new();
    let mut undos: BTreeMap<i64, (String, Part)> = BTreeMap::new();
    let mut kinds: Vec<(FlywayKind, PathBuf)> = Vec::new();
    // Versioned migrations first: two of one version are named as such, not their undos.
    let mut paths = files_below(dir)?;
    paths.sort_by_key(|p| !file_name(p).starts_with('V'));
    for path in paths {
        let name = file_name(&path).to_string();
        if path.is_dir() || !is_sql(&path) {
            continue;
        }
        let Some((prefix, version, description)) = flyway_name(&name) else {
            return Err(invalid(
                &path,
                None,
                "not a Flyway migration file name; expected V<version>__<description>.sql or its undo U<version>__<description>.sql",
            ));
        };
        if prefix == 'R' {
            return Err(invalid(
                &path,
                None,
                "a Flyway repeatable migration (R__): flotilla runs each migration once, in version order, and does not rerun a file when it changes; make it a versioned migration (V<version>__<description>.sql) or keep it out of this directory",
            ));
        }
        let key = flyway_key(version).map_err(|e| version_error(&path, e))?;
        if !kinds.iter().any(|(k, _)| *k == key.kind) {
            kinds.push((key.kind, path.clone()));
        }
        let label = version.replace('_', ".");
        let sql = read_text(&path)?;
        if prefix == 'U' {
            if let Some((first, part)) = undos.get(&key.key) {
                return Err(CatalogError::DuplicateVersion {
                    version: key.key,
                    label: same_version(first, &label),
                    first: part.path.clone(),
                    second: path,
                });
            }
            undos.insert(key.key, (label, Part::plain(path, sql, false)));
        } else {
            if let Some(first) = ups.iter().find(|f| f.key == key.key) {
                return Err(CatalogError::DuplicateVersion {
                    version: key.key,
                    label: same_version(&first.label, &label),
                    first: first.up.path.clone(),
                    second: path,
                });
            }
            ups.push(Found {
                key: key.key,
                label,
                description: description.to_string(),
                up: Part::plain(path.clone(), sql, false),
                down: Err(path
                    .with_file_name(format!("U{version}__{description}.sql"))
                    .display()
                    .to_string()),
            });
        }
    }
    if let [(_, a), (_, b), ..] = kinds.as_slice() {
        let (dotted, timestamp) = if kinds[0].0 == FlywayKind::Dotted {
            (a, b)
        } else {
            (b, a)
        };
        return Err(invalid(
            timestamp,
            None,
            format!(
                "a timestamp version among dotted ones ({}): flotilla cannot order the two kinds by one key; use one kind of Flyway version",
                dotted.display()
            ),
        ));
    }
    for up in &mut ups {
        if let Some((_, part)) = undos.remove(&up.key) {
            up.down = Ok(part);
        }
    }
    if let Some((_, (label, part))) = undos.into_iter().next() {
        return Err(invalid(
            &part.path,
            None,
            format!(
                "undo migration {label} has no versioned migration V{label}__<description>.sql"
            ),
        ));
    }
    Ok(ups)
}

// ---------------------------------------------------------------------------------------------
// dbmate

fn read_dbmate(dir: &Path) -> Result<Vec<Found>, CatalogError> {
    let mut found = Vec::new();
    for path in entries(dir)? {
        let name = file_name(&path).to_string();
        if path.is_dir() || !is_sql(&path) {
            continue;
        }
        let Some((version, description)) = name.strip_suffix(".sql").and_then(split_versioned)
        else {
            return Err(invalid(
                &path,
                None,
                "not a dbmate migration file name; expected <version>_<name>.sql (e.g. 20240312090000_create_patient.sql)",
            ));
        };
        let key = digits_key(version).map_err(|e| version_error(&path, e))?;
        let text = read_text(&path)?;
        let (up, down) = dbmate_sections(&path, &text)?;
        found.push(Found {
            key,
            label: version.to_string(),
            description: description.to_string(),
            up,
            down,
        });
    }
    Ok(found)
}

/// A `-- migrate:up` / `-- migrate:down` marker line and its options.
fn dbmate_marker(line: &str) -> Option<(&'static str, &str)> {
    let rest = line.trim().strip_prefix("--")?.trim_start();
    if let Some(options) = rest.strip_prefix("migrate:up") {
        return Some(("up", options));
    }
    rest.strip_prefix("migrate:down")
        .map(|options| ("down", options))
}

/// Split a dbmate file into its up and down scripts. Each keeps the file's line numbers (the
/// lines outside its section blank, the marker line kept as the comment it is), so lint
/// findings point into the file.
fn dbmate_sections(path: &Path, text: &str) -> Result<(Part, Result<Part, String>), CatalogError> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut up: Option<(usize, bool)> = None;
    let mut down: Option<(usize, bool)> = None;
    for (i, line) in lines.iter().enumerate() {
        let Some((which, options)) = dbmate_marker(line) else {
            continue;
        };
        let mut no_transaction = false;
        for option in options.split_whitespace() {
            match option {
                "transaction:false" => no_transaction = true,
                "transaction:true" => no_transaction = false,
                other => {
                    return Err(invalid(
                        path,
                        Some(i + 1),
                        format!("unknown dbmate option '{other}' (known: transaction:false)"),
                    ))
                }
            }
        }
        let slot = if which == "up" { &mut up } else { &mut down };
        if slot.is_some() {
            return Err(invalid(
                path,
                Some(i + 1),
                format!(
                    "a second `-- migrate:{which}` section; a dbmate migration has one of each"
                ),
            ));
        }
        *slot = Some((i, no_transaction));
    }
    let Some((up_at, up_no_tx)) = up else {
        return Err(invalid(
            path,
            None,
            "no `-- migrate:up` line: a dbmate migration starts its up script with `-- migrate:up` (and its down with `-- migrate:down`)",
        ));
    };
    if let Some((down_at, _)) = down {
        if down_at < up_at {
            return Err(invalid(
                path,
                Some(down_at + 1),
                "`-- migrate:down` comes before `-- migrate:up`; write the up section first",
            ));
        }
    }
    let up_end = down.map_or(lines.len(), |(d, _)| d);
    let section = |from: usize, to: usize| -> (String, String) {
        // The script: blank lines before the marker, the marker, the section.
        let mut sql = String::new();
        for (i, line) in lines.iter().enumerate().take(to) {
            if i < from {
                sql.push_str(if line.ends_with("\r\n") { "\r\n" } else { "\n" });
            } else {
                sql.push_str(line);
            }
        }
        let body: String = lines[(from + 1).min(to)..to].concat();
        (sql, body)
    };
    let (up_sql, up_body) = section(up_at, up_end);
    let up = Part {
        path: path.to_path_buf(),
        sql: up_sql,
        directives: Some(up_body),
        no_transaction: up_no_tx,
    };
    let down = match down {
        Some((down_at, no_tx)) => {
            let (sql, body) = section(down_at, lines.len());
            Ok(Part {
                path: path.to_path_buf(),
                sql,
                directives: Some(body),
                no_transaction: no_tx,
            })
        }
        None => Err(format!("a `-- migrate:down` section in {}", path.display())),
    };
    Ok((up, down))
}
