//! Loads `migrations/`: `<version>_<description>.up.sql` with a matching `.down.sql` (the naming
//! sqlx-cli uses) or another tool's layout ([`super::layout`]), `releases.yaml`, `flotilla.yaml`
//! (`layout:`, `accepted:`), and first-line `-- flotilla:` directives. Checksums are computed
//! once here, never per trust.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

pub use super::error::CatalogError;
use super::layout::{self, Found, Layout, Part, Settings};

/// How a script is executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// One transaction with its tracking row (the default).
    Transaction,
    /// Outside a transaction (e.g. `CREATE INDEX CONCURRENTLY`): the tracking row is marked
    /// dirty before and clean after, and a dirty trust stops the run.
    NoTransaction,
    /// An idempotent, LIMITed statement executed repeatedly, each execution in its own
    /// transaction, until one affects no rows; then the tracking row is marked clean.
    Batch,
}

/// Whether a migration can be rolled back automatically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reversibility {
    /// Its down script undoes it.
    Reversible,
    /// Marked `irreversible`: automatic rollback across it is refused.
    Irreversible,
}

/// One SQL file.
#[derive(Debug, Clone)]
pub struct Script {
    /// Where it was read from.
    pub path: PathBuf,
    /// The whole file, run as one multi-statement script.
    pub sql: String,
    /// How it runs.
    pub mode: Mode,
}

/// One versioned migration.
#[derive(Debug, Clone)]
pub struct Migration {
    /// Version: the 64-bit key it is ordered and recorded by (the numeric prefix of the file
    /// name; see [`super::version`] for other tools' versions).
    pub version: i64,
    /// The version as the layout writes it (`0010`, `2014-11-27-000000`, `1.2.3`): what
    /// people are shown.
    pub label: String,
    /// Description (the rest of the file name).
    pub description: String,
    /// The up script.
    pub up: Script,
    /// The down script.
    pub down: Script,
    /// Whether automatic rollback may cross it.
    pub reversibility: Reversibility,
    /// Hex SHA-256 of the up file's bytes.
    pub checksum: String,
    /// Columns the up script declares it rewrites (`rewrites:TABLE.COLUMN`), so the health gate
    /// does not count their change as corruption.
    pub rewrites: Vec<(String, String)>,
}

/// All migrations of a directory, in version order, with the releases they form.
#[derive(Debug, Clone)]
pub struct Catalog {
    dir: PathBuf,
    migrations: Vec<Migration>,
    releases: Vec<(String, i64)>,
    layout: Layout,
    /// The last version of accepted history (`accepted:` or `--since`).
    accepted: Option<i64>,
}

/// The shared catalog and, for trusts with local migrations, their own merged catalogs.
#[derive(Debug, Clone)]
pub struct Catalogs {
    base: Arc<Catalog>,
    local: HashMap<String, Arc<Catalog>>,
}

impl Catalogs {
    /// Merge each trust's local migrations (when its directory exists) into the shared catalog.
    pub fn load(
        base: Catalog,
        inventory: &crate::config::Inventory,
    ) -> Result<Catalogs, CatalogError> {
        let mut local = HashMap::new();
        for t in &inventory.trusts {
            let Some(dir) = t.local_migrations.as_ref() else {
                continue;
            };
            // A directory that does not exist means "none"; anything else that is not a
            // directory is a mistake, not "none".
            match std::fs::metadata(dir) {
                Ok(m) if m.is_dir() => {
                    local.insert(t.id.clone(), Arc::new(base.with_local(dir)?));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Ok(_) => {
                    return Err(CatalogError::LocalNotDirectory {
                        inventory: inventory.path.clone(),
                        line: inventory
                            .line_of(&t.id)
                            .map(|l| format!(":{l}"))
                            .unwrap_or_default(),
                        trust: t.id.clone(),
                        path: dir.clone(),
                    })
                }
                Err(source) => {
                    return Err(CatalogError::ReadDir {
                        path: dir.clone(),
                        source,
                    })
                }
            }
        }
        Ok(Catalogs {
            base: Arc::new(base),
            local,
        })
    }

    /// Only the shared catalog.
    pub fn shared(base: Catalog) -> Catalogs {
        Catalogs {
            base: Arc::new(base),
            local: HashMap::new(),
        }
    }

    /// The shared catalog (releases, plan targets).
    pub fn base(&self) -> &Catalog {
        &self.base
    }

    /// The catalog that applies to a trust.
    pub fn for_trust(&self, id: &str) -> &Catalog {
        self.local.get(id).unwrap_or(&self.base)
    }
}

#[derive(Default)]
struct Pair {
    description: String,
    label: String,
    up: Option<(PathBuf, String)>,
    down: Option<(PathBuf, String)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Up,
    Down,
}

impl Catalog {
    /// Load every migration in `dir` (in the layout `dir/flotilla.yaml` names, or the one its
    /// files are in), `dir/releases.yaml` (optional) and `accepted:`.
    pub fn load(dir: &Path) -> Result<Catalog, CatalogError> {
        Catalog::load_since(dir, None)
    }

    /// [`Catalog::load`], with accepted history ending at `since` (`--since`) instead of
    /// `accepted:`.
    pub fn load_since(dir: &Path, since: Option<&str>) -> Result<Catalog, CatalogError> {
        let settings = Settings::load(dir)?;
        let layout = match settings.layout {
            Some(l) => l,
            None => layout::detect(dir)?,
        };
        let accepted = match since {
            Some(text) => Some((text.trim().to_string(), "--since".to_string())),
            None => settings
                .accepted
                .as_ref()
                .map(|(text, line)| (text.clone(), format!("{}:{line}", settings.path.display()))),
        };
        let unknown = |text: &str, at: &str, why: String| CatalogError::UnknownAccepted {
            at: at.to_string(),
            version: text.to_string(),
            dir: dir.to_path_buf(),
            why,
        };
        let accepted_key = match &accepted {
            Some((text, at)) => Some(layout.key(text).map_err(|e| {
                unknown(text, at, format!(" ({e} in the {} layout)", layout.name()))
            })?),
            None => None,
        };
        let migrations = load_migrations(dir, layout, accepted_key)?;
        if let (Some((text, at)), Some(key)) = (&accepted, accepted_key) {
            if migrations
                .binary_search_by_key(&key, |m| m.version)
                .is_err()
            {
                return Err(unknown(text, at, String::new()));
            }
        }
        let releases_path = dir.join("releases.yaml");
        let releases = if releases_path.exists() {
            let mut releases: Vec<(String, i64)> = match layout {
                Layout::Flotilla | Layout::Sqlx | Layout::GolangMigrate => {
                    let map: BTreeMap<String, i64> = crate::config::yaml::load(&releases_path)?;
                    map.into_iter().collect()
                }
                // Other tools' versions as they write them: `"5.1": 1.10`, `"5.1":
                // 2014-11-27-000000`.
                other => {
                    let map: BTreeMap<String, String> = crate::config::yaml::load(&releases_path)?;
                    let mut out = Vec::with_capacity(map.len());
                    for (name, text) in map {
                        let key = other.key(text.trim()).map_err(|e| CatalogError::Invalid {
                            path: releases_path.clone(),
                            line: None,
                            message: format!(
                                "release '{name}': {e} in the {} layout",
                                other.name()
                            ),
                        })?;
                        out.push((name, key));
                    }
                    out
                }
            };
            releases.sort_by_key(|(name, v)| (*v, name.clone()));
            releases
        } else {
            Vec::new()
        };
        let catalog = Catalog {
            dir: dir.to_path_buf(),
            migrations,
            releases,
            layout,
            accepted: accepted_key,
        };
        for (release, version) in &catalog.releases {
            if catalog.get(*version).is_none() {
                return Err(CatalogError::ReleaseUnknownVersion {
                    path: releases_path,
                    release: release.clone(),
                    version: *version,
                });
            }
        }
        Ok(catalog)
    }

    /// This catalog plus a trust's local migrations (its own customisations) from `dir`, which
    /// interleave with the shared ones by version. Releases stay those of the shared catalog.
    pub fn with_local(&self, dir: &Path) -> Result<Catalog, CatalogError> {
        let layout = match Settings::load(dir)?.layout {
            Some(l) => l,
            None => layout::detect(dir)?,
        };
        let local = load_migrations(dir, layout, self.accepted)?;
        let mut migrations = self.migrations.clone();
        for m in local {
            if let Some(shared) = self.get(m.version) {
                return Err(CatalogError::DuplicateVersion {
                    version: m.version,
                    label: layout::same_version(&shared.label, &m.label),
                    first: shared.up.path.clone(),
                    second: m.up.path,
                });
            }
            migrations.push(m);
        }
        migrations.sort_by_key(|m| m.version);
        Ok(Catalog {
            dir: self.dir.clone(),
            migrations,
            releases: self.releases.clone(),
            layout: self.layout,
            accepted: self.accepted,
        })
    }

    /// A catalog built in memory (tests, generated estates).
    pub fn from_parts(
        dir: &Path,
        migrations: Vec<Migration>,
        releases: Vec<(String, i64)>,
    ) -> Catalog {
        let mut migrations = migrations;
        migrations.sort_by_key(|m| m.version);
        Catalog {
            dir: dir.to_path_buf(),
            migrations,
            releases,
            layout: Layout::Flotilla,
            accepted: None,
        }
    }

    /// The layout the files were read in.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The last version of accepted history (`accepted:` in `flotilla.yaml`, or `--since`):
    /// migrations at or below it are not linted and their downs not rehearsed.
    pub fn accepted(&self) -> Option<i64> {
        self.accepted
    }

    /// Whether a migration is accepted history.
    pub fn is_accepted(&self, version: i64) -> bool {
        self.accepted.is_some_and(|a| version <= a)
    }

    /// How many migrations are accepted history.
    pub fn accepted_count(&self) -> usize {
        match self.accepted {
            Some(a) => self.migrations.partition_point(|m| m.version <= a),
            None => 0,
        }
    }

    /// A version as people read it: the migration's label (`0010`, `2014-11-27-000000`,
    /// `1.2`), or the number when no migration has it.
    pub fn label(&self, version: i64) -> String {
        self.get(version)
            .map_or_else(|| version.to_string(), |m| m.label.clone())
    }

    /// The version a text names in this catalog's layout (`0010` and `10` alike; diesel's
    /// `2014-11-27-000000` or its digits; Flyway's `1.1` or `1_1`), if it is a migration's.
    pub fn resolve(&self, text: &str) -> Option<i64> {
        let key = self.layout.key(text.trim()).ok()?;
        self.get(key).map(|m| m.version)
    }

    /// The directory the migrations came from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where releases are defined.
    pub fn releases_path(&self) -> PathBuf {
        self.dir.join("releases.yaml")
    }

    /// Every migration, in version order.
    pub fn migrations(&self) -> &[Migration] {
        &self.migrations
    }

    /// The migration with this version.
    pub fn get(&self, version: i64) -> Option<&Migration> {
        self.migrations
            .binary_search_by_key(&version, |m| m.version)
            .ok()
            .map(|i| &self.migrations[i])
    }

    /// The highest version in the catalog.
    pub fn latest(&self) -> Option<i64> {
        self.migrations.last().map(|m| m.version)
    }

    /// Releases in version order, as (name, last version).
    pub fn releases(&self) -> impl Iterator<Item = (&str, i64)> {
        self.releases.iter().map(|(n, v)| (n.as_str(), *v))
    }

    /// The last version of a named release.
    pub fn release_version(&self, name: &str) -> Option<i64> {
        self.releases
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }

    /// The release that ends exactly at `version`.
    pub fn release_at(&self, version: i64) -> Option<&str> {
        self.releases
            .iter()
            .find(|(_, v)| *v == version)
            .map(|(n, _)| n.as_str())
    }

    /// Describe a version for humans: `5.1`, `5.0+2` (two migrations past 5.0), or `v12`.
    pub fn describe(&self, version: Option<i64>) -> String {
        let Some(version) = version else {
            return "empty".into();
        };
        if let Some(name) = self.release_at(version) {
            return name.to_string();
        }
        match self.releases.iter().rev().find(|(_, v)| *v < version) {
            Some((name, v)) => {
                let past = self
                    .migrations
                    .iter()
                    .filter(|m| m.version > *v && m.version <= version)
                    .count();
                format!("{name}+{past}")
            }
            None => format!("v{}", self.label(version)),
        }
    }

    /// Migrations with `from < version <= to`, ascending.
    pub fn range(&self, from: Option<i64>, to: i64) -> impl Iterator<Item = &Migration> {
        self.migrations
            .iter()
            .filter(move |m| from.is_none_or(|f| m.version > f) && m.version <= to)
    }
}

impl Migration {
    /// Build a migration from its two files' paths and contents (labelled with its version's
    /// number; see [`Migration::with_label`]).
    pub fn new(
        version: i64,
        description: String,
        (up_path, up_sql): (PathBuf, String),
        (down_path, down_sql): (PathBuf, String),
    ) -> Result<Migration, CatalogError> {
        Migration::build(
            version,
            version.to_string(),
            description,
            Part {
                path: up_path,
                sql: up_sql,
                directives: None,
                no_transaction: false,
            },
            Part {
                path: down_path,
                sql: down_sql,
                directives: None,
                no_transaction: false,
            },
            false,
        )
    }

    /// The same migration, its version written `label`.
    pub fn with_label(mut self, label: impl Into<String>) -> Migration {
        self.label = label.into();
        self
    }

    /// A migration from the scripts a layout read; `no_down` when it has no down (accepted
    /// history): it is irreversible.
    fn build(
        version: i64,
        label: String,
        description: String,
        up: Part,
        down: Part,
        no_down: bool,
    ) -> Result<Migration, CatalogError> {
        let up_d = part_directives(&up)?;
        let down_d = part_directives(&down)?;
        let checksum = hex::encode(Sha256::digest(up.sql.as_bytes()));
        Ok(Migration {
            version,
            label,
            description,
            reversibility: if up_d.irreversible || no_down {
                Reversibility::Irreversible
            } else {
                Reversibility::Reversible
            },
            up: Script {
                path: up.path,
                sql: up.sql,
                mode: up_d.mode,
            },
            down: Script {
                path: down.path,
                sql: down.sql,
                mode: down_d.mode,
            },
            checksum,
            rewrites: up_d.rewrites,
        })
    }
}

/// A script's directives: its first line's, or those of the tool's section it came from; the
/// tool's own "no transaction" setting counts as `no-transaction`.
fn part_directives(part: &Part) -> Result<Directives, CatalogError> {
    let text = match &part.directives {
        Some(body) => body.trim_start_matches(['\r', '\n']),
        None => &part.sql,
    };
    let mut d = directives(&part.path, text)?;
    if part.no_transaction {
        if d.mode == Mode::Batch {
            return Err(CatalogError::ConflictingDirectives {
                path: part.path.clone(),
            });
        }
        d.mode = Mode::NoTransaction;
    }
    Ok(d)
}

impl fmt::Display for Migration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.label, self.description)
    }
}

/// Every migration in `dir` (no releases), read in `layout`. A migration without a down is
/// refused, unless it is accepted history (at or below `accepted`): then it is irreversible.
fn load_migrations(
    dir: &Path,
    layout: Layout,
    accepted: Option<i64>,
) -> Result<Vec<Migration>, CatalogError> {
    let found = match layout {
        Layout::Flotilla | Layout::Sqlx | Layout::GolangMigrate => read_own_layout(dir)?,
        other => layout::read(dir, other)?,
    };
    let mut migrations = Vec::with_capacity(found.len());
    for f in found {
        let (down, no_down) = match f.down {
            Ok(down) => (down, false),
            Err(_) if accepted.is_some_and(|a| f.key <= a) => (
                Part {
                    path: f.up.path.clone(),
                    sql: String::new(),
                    directives: None,
                    no_transaction: false,
                },
                true,
            ),
            Err(expected) => {
                return Err(CatalogError::MissingDown {
                    version: f.key,
                    label: f.label,
                    up: f.up.path,
                    expected: PathBuf::from(expected),
                })
            }
        };
        migrations.push(Migration::build(
            f.key,
            f.label,
            f.description,
            f.up,
            down,
            no_down,
        )?);
    }
    Ok(migrations)
}

/// `<version>_<description>.up.sql` + `.down.sql`: flotilla's, sqlx-cli's and golang-migrate's
/// files. Any other `.sql` file is refused by name, never skipped.
fn read_own_layout(dir: &Path) -> Result<Vec<Found>, CatalogError> {
    let entries = std::fs::read_dir(dir).map_err(|source| CatalogError::ReadDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut pairs: BTreeMap<i64, Pair> = BTreeMap::new();
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| CatalogError::ReadDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        // `.sql` in any case: `0135_x.UP.SQL` is refused with a clear message, never skipped.
        if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("sql"))
        {
            files.push(path);
        }
    }
    files.sort();
    for path in files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let (version, label, description, direction) = match parse_file_name(name) {
            Ok(parsed) => parsed,
            Err(NameProblem::Digits(digits)) => {
                return Err(CatalogError::VersionTooLarge {
                    path: path.clone(),
                    digits,
                })
            }
            Err(NameProblem::Shape) => {
                let lower = name.to_ascii_lowercase();
                let hint = if lower != name
                    && (lower.ends_with(".up.sql") || lower.ends_with(".down.sql"))
                {
                    " (file names are case-sensitive: write the suffix in lower case)"
                } else if name
                    .strip_suffix(".sql")
                    .and_then(|stem| stem.split_once('_'))
                    .is_some_and(|(v, d)| {
                        !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) && !d.is_empty()
                    })
                {
                    " (a sqlx migration without a down: name it .up.sql and write its .down.sql; \
                     a dbmate migration: start it with `-- migrate:up`)"
                } else {
                    ""
                };
                return Err(CatalogError::BadFileName {
                    path: path.clone(),
                    hint,
                });
            }
        };
        let label = label.to_string();
        let description = description.to_string();
        let sql =
            crate::files::read_regular(&path, crate::files::MIGRATION_CAP).map_err(|source| {
                CatalogError::ReadFile {
                    path: path.clone(),
                    source,
                }
            })?;
        let pair = pairs.entry(version).or_default();
        let slot = match direction {
            Direction::Up => &mut pair.up,
            Direction::Down => &mut pair.down,
        };
        if let Some((first, _)) = slot {
            return Err(CatalogError::DuplicateVersion {
                version,
                label: layout::same_version(&pair.label, &label),
                first: first.clone(),
                second: path,
            });
        }
        if !pair.description.is_empty() && pair.description != description {
            let first = pair
                .up
                .as_ref()
                .or(pair.down.as_ref())
                .map(|(p, _)| p.clone())
                .unwrap_or_default();
            return Err(CatalogError::DuplicateVersion {
                version,
                label: layout::same_version(&pair.label, &label),
                first,
                second: path,
            });
        }
        pair.description = description;
        // The up file's spelling of the version is the label.
        if direction == Direction::Up || pair.label.is_empty() {
            pair.label = label;
        }
        *slot = Some((path, sql));
    }
    let mut found = Vec::with_capacity(pairs.len());
    for (version, pair) in pairs {
        let (up_path, up_sql) = match pair.up {
            Some(up) => up,
            None => {
                let down = pair.down.map(|(p, _)| p).unwrap_or_default();
                return Err(CatalogError::MissingUp {
                    version,
                    label: pair.label,
                    down,
                });
            }
        };
        let down = match pair.down {
            Some((path, sql)) => Ok(Part {
                path,
                sql,
                directives: None,
                no_transaction: false,
            }),
            None => Err(up_path
                .with_file_name(format!(
                    "{}.down.sql",
                    up_path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .and_then(|n| n.strip_suffix(".up.sql"))
                        .unwrap_or_default()
                ))
                .display()
                .to_string()),
        };
        found.push(Found {
            key: version,
            label: pair.label,
            description: pair.description,
            up: Part {
                path: up_path,
                sql: up_sql,
                directives: None,
                no_transaction: false,
            },
            down,
        });
    }
    Ok(found)
}

/// Why a file name is not a migration's.
enum NameProblem {
    /// Not `<version>_<description>.up.sql` / `.down.sql`.
    Shape,
    /// The version's digits do not fit a 64-bit version.
    Digits(String),
}

fn parse_file_name(name: &str) -> Result<(i64, &str, &str, Direction), NameProblem> {
    let (stem, direction) = if let Some(s) = name.strip_suffix(".up.sql") {
        (s, Direction::Up)
    } else if let Some(s) = name.strip_suffix(".down.sql") {
        (s, Direction::Down)
    } else {
        return Err(NameProblem::Shape);
    };
    let (version, description) = stem.split_once('_').ok_or(NameProblem::Shape)?;
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) || description.is_empty()
    {
        return Err(NameProblem::Shape);
    }
    let key = version
        .parse()
        .map_err(|_| NameProblem::Digits(version.to_string()))?;
    Ok((key, version, description, direction))
}

struct Directives {
    mode: Mode,
    irreversible: bool,
    rewrites: Vec<(String, String)>,
}

/// Parse the first-line directive: `-- flotilla: no-transaction, irreversible`.
fn directives(path: &Path, sql: &str) -> Result<Directives, CatalogError> {
    let first = sql.lines().next().unwrap_or_default().trim();
    let Some(rest) = first
        .strip_prefix("--")
        .map(str::trim_start)
        .and_then(|r| r.strip_prefix("flotilla:"))
    else {
        return Ok(Directives {
            mode: Mode::Transaction,
            irreversible: false,
            rewrites: Vec::new(),
        });
    };
    let mut mode = Mode::Transaction;
    let mut irreversible = false;
    let mut rewrites = Vec::new();
    for word in rest
        .split([',', ' '])
        .map(str::trim)
        .filter(|w| !w.is_empty())
    {
        if let Some(target) = word.strip_prefix("rewrites:") {
            match target.split_once('.') {
                Some((t, c)) if !t.is_empty() && !c.is_empty() => {
                    rewrites.push((t.to_string(), c.to_string()));
                    continue;
                }
                _ => {
                    return Err(CatalogError::UnknownDirective {
                        path: path.to_path_buf(),
                        word: format!("{word} (expected rewrites:TABLE.COLUMN)"),
                    })
                }
            }
        }
        let wanted = match word {
            "no-transaction" => Mode::NoTransaction,
            "batch" => Mode::Batch,
            "irreversible" => {
                irreversible = true;
                continue;
            }
            other => {
                return Err(CatalogError::UnknownDirective {
                    path: path.to_path_buf(),
                    word: other.to_string(),
                })
            }
        };
        if mode != Mode::Transaction && mode != wanted {
            return Err(CatalogError::ConflictingDirectives {
                path: path.to_path_buf(),
            });
        }
        mode = wanted;
    }
    Ok(Directives {
        mode,
        irreversible,
        rewrites,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, body) in files {
            std::fs::write(dir.path().join(name), body).unwrap();
        }
        dir
    }

    #[test]
    fn pairs_up_and_down_files_in_version_order() {
        let dir = dir_with(&[
            ("0002_b.up.sql", "CREATE TABLE b (id INT);"),
            ("0002_b.down.sql", "DROP TABLE b;"),
            ("0001_a.up.sql", "CREATE TABLE a (id INT);"),
            ("0001_a.down.sql", "DROP TABLE a;"),
        ]);
        let cat = Catalog::load(dir.path()).unwrap();
        let versions: Vec<i64> = cat.migrations().iter().map(|m| m.version).collect();
        assert_eq!(versions, vec![1, 2]);
        assert_eq!(cat.get(2).unwrap().description, "b");
    }

    #[test]
    fn accepts_version_zero_and_timestamp_versions() {
        let dir = dir_with(&[
            ("0_init.up.sql", "SELECT 1;"),
            ("0_init.down.sql", "SELECT 1;"),
            ("20240312090000_later.up.sql", "SELECT 1;"),
            ("20240312090000_later.down.sql", "SELECT 1;"),
        ]);
        let cat = Catalog::load(dir.path()).unwrap();
        assert_eq!(cat.latest(), Some(20240312090000));
        assert!(cat.get(0).is_some());
    }

    #[test]
    fn refuses_a_migration_without_its_down_file() {
        let dir = dir_with(&[("0001_a.up.sql", "SELECT 1;")]);
        let err = Catalog::load(dir.path()).unwrap_err();
        assert!(
            matches!(err, CatalogError::MissingDown { version: 1, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("0001_a.down.sql"), "{err}");
    }

    #[test]
    fn refuses_two_migrations_with_one_version() {
        let dir = dir_with(&[
            ("0001_a.up.sql", "SELECT 1;"),
            ("0001_a.down.sql", "SELECT 1;"),
            ("1_b.up.sql", "SELECT 1;"),
            ("1_b.down.sql", "SELECT 1;"),
        ]);
        let err = Catalog::load(dir.path()).unwrap_err();
        assert!(
            matches!(err, CatalogError::DuplicateVersion { version: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn refuses_upper_case_suffixes_and_versions_too_large_for_64_bits() {
        let dir = dir_with(&[("0135_x.UP.SQL", "SELECT 1;")]);
        let err = Catalog::load(dir.path()).unwrap_err();
        assert!(matches!(err, CatalogError::BadFileName { .. }), "{err}");
        assert!(err.to_string().contains("case-sensitive"), "{err}");
        let dir = dir_with(&[
            ("99999999999999999999_x.up.sql", "SELECT 1;"),
            ("99999999999999999999_x.down.sql", "SELECT 1;"),
        ]);
        let err = Catalog::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("too large"), "{err}");
    }

    #[test]
    fn refuses_a_file_that_is_not_named_like_a_migration() {
        let dir = dir_with(&[("setup.sql", "SELECT 1;")]);
        assert!(matches!(
            Catalog::load(dir.path()).unwrap_err(),
            CatalogError::BadFileName { .. }
        ));
    }

    #[test]
    fn reads_first_line_directives_and_refuses_unknown_ones() {
        let dir = dir_with(&[
            (
                "0001_a.up.sql",
                "-- flotilla: batch\nUPDATE t SET x = 1 WHERE id IN (SELECT id FROM t LIMIT 10);",
            ),
            ("0001_a.down.sql", "SELECT 1;"),
            (
                "0002_b.up.sql",
                "-- flotilla: no-transaction, irreversible, rewrites:patient.nhs_number\nSELECT 1;",
            ),
            ("0002_b.down.sql", "SELECT 1;"),
        ]);
        let cat = Catalog::load(dir.path()).unwrap();
        assert_eq!(cat.get(1).unwrap().up.mode, Mode::Batch);
        assert_eq!(cat.get(2).unwrap().up.mode, Mode::NoTransaction);
        assert_eq!(
            cat.get(2).unwrap().reversibility,
            Reversibility::Irreversible
        );
        assert_eq!(
            cat.get(2).unwrap().rewrites,
            vec![("patient".to_string(), "nhs_number".to_string())]
        );

        let bad = dir_with(&[
            ("0001_a.up.sql", "-- flotilla: no-transacton\nSELECT 1;"),
            ("0001_a.down.sql", ""),
        ]);
        assert!(matches!(
            Catalog::load(bad.path()).unwrap_err(),
            CatalogError::UnknownDirective { .. }
        ));
    }

    #[test]
    fn checksum_changes_when_the_up_file_is_edited() {
        let a = dir_with(&[("0001_a.up.sql", "SELECT 1;"), ("0001_a.down.sql", "")]);
        let b = dir_with(&[("0001_a.up.sql", "SELECT 2;"), ("0001_a.down.sql", "")]);
        let ca = Catalog::load(a.path()).unwrap();
        let cb = Catalog::load(b.path()).unwrap();
        assert_ne!(ca.get(1).unwrap().checksum, cb.get(1).unwrap().checksum);
        assert_eq!(ca.get(1).unwrap().checksum.len(), 64);
    }

    #[test]
    fn releases_must_end_at_a_real_version_and_describe_versions_between_them() {
        let dir = dir_with(&[
            ("1_a.up.sql", ""),
            ("1_a.down.sql", ""),
            ("2_b.up.sql", ""),
            ("2_b.down.sql", ""),
            ("3_c.up.sql", ""),
            ("3_c.down.sql", ""),
            ("releases.yaml", "\"5.0\": 1\n\"5.1\": 3\n"),
        ]);
        let cat = Catalog::load(dir.path()).unwrap();
        assert_eq!(cat.release_version("5.1"), Some(3));
        assert_eq!(cat.describe(Some(1)), "5.0");
        assert_eq!(cat.describe(Some(2)), "5.0+1");
        assert_eq!(cat.describe(None), "empty");

        std::fs::write(dir.path().join("releases.yaml"), "\"5.2\": 9\n").unwrap();
        assert!(matches!(
            Catalog::load(dir.path()).unwrap_err(),
            CatalogError::ReleaseUnknownVersion { version: 9, .. }
        ));
    }
    fn labels(cat: &Catalog) -> Vec<&str> {
        cat.migrations().iter().map(|m| m.label.as_str()).collect()
    }

    #[test]
    fn keeps_the_version_as_written_and_shows_it() {
        let dir = dir_with(&[
            ("0010_a.up.sql", ""),
            ("0010_a.down.sql", ""),
            ("0020_b.up.sql", ""),
            ("20_b.down.sql", ""),
        ]);
        let cat = Catalog::load(dir.path()).unwrap();
        assert_eq!(cat.layout(), Layout::Flotilla);
        assert_eq!(labels(&cat), vec!["0010", "0020"]);
        assert_eq!(cat.get(10).unwrap().to_string(), "0010 a");
        assert_eq!(cat.describe(Some(20)), "v0020");
        assert_eq!(cat.resolve("10"), Some(10));
        assert_eq!(cat.resolve("0020"), Some(20));
        assert_eq!(cat.resolve("30"), None);
    }

    #[test]
    fn detects_flyway_and_orders_dotted_versions_as_flyway_does() {
        let dir = dir_with(&[
            ("V2__d.sql", ""),
            ("U2__d.sql", ""),
            ("V1.10__c.sql", ""),
            ("U1.10__c.sql", ""),
            ("V1_1__b.sql", ""),
            ("U1_1__b.sql", ""),
            ("V1__a.sql", ""),
            ("U1__a.sql", ""),
        ]);
        let cat = Catalog::load(dir.path()).unwrap();
        assert_eq!(cat.layout(), Layout::Flyway);
        assert_eq!(labels(&cat), vec!["1", "1.1", "1.10", "2"]);
        assert!(cat.migrations()[2].down.path.ends_with("U1.10__c.sql"));
        // Flyway reads subdirectories too, and so does flotilla, for Flyway.
        std::fs::create_dir(dir.path().join("release-3")).unwrap();
        std::fs::write(dir.path().join("release-3/V3__e.sql"), "").unwrap();
        std::fs::write(dir.path().join("release-3/U3__e.sql"), "").unwrap();
        let cat = Catalog::load(dir.path()).unwrap();
        assert_eq!(labels(&cat), vec!["1", "1.1", "1.10", "2", "3"]);
        let only_below = dir_with(&[]);
        std::fs::create_dir(only_below.path().join("v1")).unwrap();
        std::fs::write(only_below.path().join("v1/V1__a.sql"), "").unwrap();
        std::fs::write(only_below.path().join("v1/U1__a.sql"), "").unwrap();
        assert_eq!(
            Catalog::load(only_below.path()).unwrap().layout(),
            Layout::Flyway
        );
        // releases.yaml names Flyway's versions as Flyway writes them.
        std::fs::write(
            dir.path().join("releases.yaml"),
            "\"5.0\": 1.10\n\"5.1\": 2\n",
        )
        .unwrap();
        let cat = Catalog::load(dir.path()).unwrap();
        assert_eq!(cat.release_version("5.0"), cat.resolve("1.10"));
        assert_eq!(cat.describe(cat.resolve("2")), "5.1");
        assert_eq!(cat.describe(cat.resolve("1.1")), "v1.1");
    }

    #[test]
    fn splits_a_dbmate_file_keeping_its_line_numbers_and_options() {
        let dir = dir_with(&[(
            "20240101120000_a.sql",
            "-- migrate:up transaction:false\n-- flotilla: irreversible\nCREATE INDEX i ON t (x);\n\n-- migrate:down\nDROP INDEX i;\n",
        )]);
        let cat = Catalog::load(dir.path()).unwrap();
        assert_eq!(cat.layout(), Layout::Dbmate);
        let m = &cat.migrations()[0];
        assert_eq!(m.label, "20240101120000");
        assert_eq!(m.up.mode, Mode::NoTransaction);
        assert_eq!(m.down.mode, Mode::Transaction);
        assert_eq!(m.reversibility, Reversibility::Irreversible);
        assert_eq!(m.up.sql.lines().nth(2), Some("CREATE INDEX i ON t (x);"));
        assert!(!m.up.sql.contains("DROP INDEX"));
        assert_eq!(m.down.sql.lines().nth(5), Some("DROP INDEX i;"));
        assert_eq!(m.down.sql.lines().take(4).collect::<String>(), "");

        let bad = dir_with(&[(
            "20240101120000_a.sql",
            "-- migrate:up transaction:maybe\nSELECT 1;\n",
        )]);
        let err = Catalog::load(bad.path()).unwrap_err().to_string();
        assert!(
            err.contains("20240101120000_a.sql:1") && err.contains("transaction:maybe"),
            "{err}"
        );
        let no_down = dir_with(&[("20240101120000_a.sql", "-- migrate:up\nSELECT 1;\n")]);
        assert!(matches!(
            Catalog::load(no_down.path()).unwrap_err(),
            CatalogError::MissingDown { .. }
        ));
    }

    #[test]
    fn diesel_reads_directories_skips_loose_files_and_reads_metadata() {
        let dir = dir_with(&[("data.sql", "INSERT INTO t VALUES (1);")]);
        for (name, up, down) in [
            (
                "2026-05-27-120000-0000_c",
                "CREATE INDEX i ON t (x);",
                "DROP INDEX i;",
            ),
            ("2026-05-27-120000_b", "SELECT 1;", "SELECT 1;"),
            (
                "00000000000000_diesel_initial_setup",
                "SELECT 1;",
                "SELECT 1;",
            ),
        ] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
            std::fs::write(dir.path().join(name).join("up.sql"), up).unwrap();
            std::fs::write(dir.path().join(name).join("down.sql"), down).unwrap();
        }
        std::fs::write(
            dir.path().join("2026-05-27-120000-0000_c/metadata.toml"),
            "# diesel\nrun_in_transaction = false\n",
        )
        .unwrap();
        let cat = Catalog::load(dir.path()).unwrap();
        assert_eq!(cat.layout(), Layout::Diesel);
        assert_eq!(
            labels(&cat),
            vec![
                "00000000000000",
                "2026-05-27-120000",
                "2026-05-27-120000-0000"
            ]
        );
        assert_eq!(cat.migrations()[2].up.mode, Mode::NoTransaction);
        assert_eq!(cat.migrations()[2].down.mode, Mode::NoTransaction);
        assert_eq!(
            cat.resolve("202605271200000000"),
            Some(cat.migrations()[2].version)
        );
    }

    #[test]
    fn flotilla_yaml_names_the_layout_and_accepted_history_with_its_line() {
        let dir = dir_with(&[
            ("V1__a.sql", ""),
            ("V1.10__b.sql", ""),
            ("U1.10__b.sql", ""),
            ("flotilla.yaml", "layout: flyway\naccepted: 1.10\n"),
        ]);
        let cat = Catalog::load(dir.path()).unwrap();
        assert_eq!(cat.accepted(), cat.resolve("1.10"));
        assert_eq!(cat.accepted_count(), 2);
        // V1 has no undo, but it is accepted history: irreversible, not refused.
        assert_eq!(
            cat.migrations()[0].reversibility,
            Reversibility::Irreversible
        );
        let since = Catalog::load_since(dir.path(), Some("1")).unwrap();
        assert_eq!(since.accepted_count(), 1);

        std::fs::write(
            dir.path().join("flotilla.yaml"),
            "layout: flyway\naccepted: 1.2\n",
        )
        .unwrap();
        let err = Catalog::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("flotilla.yaml:2") && err.contains("'1.2'"),
            "{err}"
        );
        std::fs::write(
            dir.path().join("flotilla.yaml"),
            "layout: flyway\naccepted: x\n",
        )
        .unwrap();
        let err = Catalog::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("flotilla.yaml:2") && err.contains("not a version"),
            "{err}"
        );
        std::fs::write(
            dir.path().join("flotilla.yaml"),
            "layout: flyway\nlayuot: x\n",
        )
        .unwrap();
        let err = Catalog::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("flotilla.yaml:2") && err.contains("layuot"),
            "{err}"
        );
    }

    #[test]
    fn files_of_two_layouts_are_ambiguous() {
        let dir = dir_with(&[
            ("0001_a.up.sql", ""),
            ("0001_a.down.sql", ""),
            ("V1__a.sql", ""),
        ]);
        let err = Catalog::load(dir.path()).unwrap_err();
        assert!(matches!(err, CatalogError::AmbiguousLayout { .. }), "{err}");
        assert!(err.to_string().contains("layout:"), "{err}");
        // A sqlx migration without a down (or a dbmate one without its marker) is refused
        // by name, saying both.
        let dir = dir_with(&[("20240101120000_a.sql", "CREATE TABLE a (id INT);")]);
        let err = Catalog::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("sqlx") && err.contains("-- migrate:up"),
            "{err}"
        );
        // A misnamed file beside flotilla's is still refused by name, as before.
        let dir = dir_with(&[
            ("0001_a.up.sql", ""),
            ("0001_a.down.sql", ""),
            ("0002_b.sql", ""),
        ]);
        assert!(matches!(
            Catalog::load(dir.path()).unwrap_err(),
            CatalogError::BadFileName { .. }
        ));
    }
}
