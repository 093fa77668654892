//! `trusts.yaml`: the estate. Every trust, its region, tags and database.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::error::ConfigError;
use super::yaml;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InventoryFile {
    #[serde(default)]
    defaults: Option<DefaultsFile>,
    trusts: Vec<TrustFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DefaultsFile {
    database: Option<Spanned<DatabaseFile>>,
    local_migrations: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustFile {
    id: Spanned<String>,
    name: String,
    region: String,
    #[serde(default)]
    tags: Vec<String>,
    database: Option<Spanned<DatabaseFile>>,
    local_migrations: Option<String>,
    maintenance_window: Option<String>,
    runner: Option<Spanned<RunnerFile>>,
}

/// A trust's `runner:` map (label -> value), each key and value with its place in the file so
/// a bad one is reported where it is written.
#[derive(Debug, Default)]
struct RunnerFile(Vec<(Spanned<String>, Spanned<String>)>);

impl<'de> Deserialize<'de> for RunnerFile {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Labels;
        impl<'de> serde::de::Visitor<'de> for Labels {
            type Value = RunnerFile;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of worker labels, e.g. { site: camden-dc }")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RunnerFile, A::Error> {
                let mut labels = Vec::new();
                while let Some(entry) = map.next_entry::<Spanned<String>, Spanned<String>>()? {
                    labels.push(entry);
                }
                Ok(RunnerFile(labels))
            }
        }
        deserializer.deserialize_map(Labels)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct DatabaseFile {
    url: Option<String>,
    url_env: Option<String>,
    password_env: Option<String>,
    password_file: Option<String>,
}

/// The resolved estate, in file order.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// The file it was read from.
    pub path: PathBuf,
    /// Every trust, in the order the file lists them.
    pub trusts: Vec<Trust>,
    index: HashMap<String, usize>,
    lines: HashMap<String, u64>,
}

/// One trust of the estate.
#[derive(Debug, Clone)]
pub struct Trust {
    /// Unique slug, e.g. `camden`.
    pub id: String,
    /// Display name, e.g. `Camden PCT`.
    pub name: String,
    /// Region, e.g. `london`.
    pub region: String,
    /// Free-form tags used by plan selections.
    pub tags: BTreeSet<String>,
    /// Where its database lives.
    pub database: DatabaseTarget,
    /// The trust's own migrations (local customisations), interleaved with the shared ones by
    /// version. A directory that does not exist means none.
    pub local_migrations: Option<PathBuf>,
    /// Optional maintenance window, informational.
    pub maintenance_window: Option<String>,
    /// Labels a worker must carry to run this trust (`runner: { site: camden-dc }`): only a
    /// worker whose labels contain every one of these may claim its jobs. Empty (the default):
    /// any worker may.
    pub runner: BTreeMap<String, String>,
}

/// Where a trust's database lives. Secrets are never held here: only where to find them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    /// An SQLite file. It must exist: flotilla never creates a trust database by accident.
    Sqlite { path: PathBuf },
    /// A PostgreSQL database.
    Postgres {
        url: UrlSource,
        password: PasswordSource,
    },
}

/// Where a Postgres URL comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlSource {
    /// Written in the inventory (never with a password in it).
    Inline(String),
    /// Read from this environment variable at connect time.
    Env(String),
}

/// Where a Postgres password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// No password (trust/peer auth, or one inside a URL taken from the environment).
    None,
    /// Read from this environment variable at connect time.
    Env(String),
    /// Read from this file at connect time (trailing newline removed).
    File(PathBuf),
}

impl DatabaseTarget {
    /// A description safe for logs and reports: never contains a password.
    pub fn redacted(&self) -> String {
        match self {
            DatabaseTarget::Sqlite { path } => format!("sqlite://{}", path.display()),
            DatabaseTarget::Postgres { url, .. } => match url {
                UrlSource::Inline(u) => redact_url(u),
                UrlSource::Env(var) => format!("${var}"),
            },
        }
    }
}

use crate::secrets::redact_url;

/// Connection parameters a Postgres URL may carry (those sqlx understands). Any other is
/// refused, naming the key only: the driver would log an unknown parameter's value, and a
/// misspelt `pasword=` must not end up in a log.
const PG_URL_PARAMETERS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "sslca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// Why a Postgres connection string cannot be used, in words that never repeat it (it may
/// hold a password): a libpq key/value string, something that is not a URL, or a URL with a
/// parameter the driver does not know.
pub(crate) fn pg_url_problem(url: &str) -> Option<String> {
    if crate::secrets::is_conninfo(url) {
        return Some(
            "a libpq key/value connection string (host=... dbname=...) is not supported: \
             write it as a URL, postgres://USER@HOST:PORT/DATABASE, with the password in \
             password_env or password_file"
                .into(),
        );
    }
    let parsed = match url::Url::parse(url) {
        Ok(p) => p,
        Err(e) => return Some(format!("not a valid postgres:// URL ({e})")),
    };
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Some("not a postgres:// URL".into());
    }
    let unknown: Vec<String> = parsed
        .query_pairs()
        .map(|(k, _)| k.into_owned())
        .filter(|k| !PG_URL_PARAMETERS.contains(&k.as_str()))
        .collect();
    if !unknown.is_empty() {
        // A key is shown only when it looks like a (misspelt) parameter name: lower-case
        // letters, '_' and '-'. Anything else may be a password typed in the wrong place.
        let shown: Vec<String> = unknown
            .iter()
            .map(|k| {
                if !k.is_empty()
                    && k.len() <= 32
                    && k.bytes()
                        .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'-')
                {
                    format!("'{k}'")
                } else {
                    "(one not shown: it does not look like a parameter name)".to_string()
                }
            })
            .collect();
        return Some(format!(
            "unknown connection parameter(s) {} in the URL (known: {})",
            shown.join(", "),
            PG_URL_PARAMETERS.join(", ")
        ));
    }
    None
}

impl Inventory {
    /// Read and validate an inventory file.
    pub fn load(path: &Path) -> Result<Inventory, ConfigError> {
        let file: InventoryFile = yaml::load(path)?;
        Self::resolve(path, file)
    }

    /// Parse an inventory from text, as if read from `path` (relative SQLite paths resolve
    /// against `path`'s directory).
    pub fn parse(path: &Path, text: &str) -> Result<Inventory, ConfigError> {
        let file: InventoryFile = yaml::parse(path, text)?;
        Self::resolve(path, file)
    }

    fn resolve(path: &Path, file: InventoryFile) -> Result<Inventory, ConfigError> {
        let base = path.parent().unwrap_or(Path::new("")).to_path_buf();
        if file.trusts.is_empty() {
            return Err(ConfigError::invalid(
                path,
                None,
                "the estate lists no trusts",
            ));
        }
        let (default_db, default_local) = match file.defaults {
            Some(d) => (d.database, d.local_migrations),
            None => (None, None),
        };
        let mut trusts = Vec::with_capacity(file.trusts.len());
        let mut index = HashMap::new();
        let mut lines = HashMap::new();
        for t in file.trusts {
            let id = t.id.value.clone();
            let at = Some(t.id.referenced);
            if !is_slug(&id) {
                return Err(ConfigError::invalid(
                    path,
                    at,
                    format!("trust id '{id}' must be a slug: lowercase letters, digits and '-'"),
                ));
            }
            if index.contains_key(&id) {
                return Err(ConfigError::invalid(
                    path,
                    at,
                    format!(
                        "duplicate trust id '{id}' (first defined at line {})",
                        lines[&id]
                    ),
                ));
            }
            let (db, db_at) = match (&t.database, &default_db) {
                (Some(db), _) | (None, Some(db)) => (db.value.clone(), db.referenced),
                (None, None) => {
                    return Err(ConfigError::invalid(
                        path,
                        at,
                        format!("trust '{id}' has no database and there is no defaults.database"),
                    ))
                }
            };
            let database = resolve_database(&base, &id, &db).map_err(|msg| {
                ConfigError::invalid(path, Some(db_at), format!("trust '{id}': {msg}"))
            })?;
            let local_migrations =
                t.local_migrations
                    .as_ref()
                    .or(default_local.as_ref())
                    .map(|dir| {
                        let p = PathBuf::from(expand(dir, &id));
                        if p.is_absolute() {
                            p
                        } else {
                            base.join(p)
                        }
                    });
            let runner = resolve_runner(path, &id, t.runner)?;
            index.insert(id.clone(), trusts.len());
            lines.insert(id.clone(), t.id.referenced.line());
            trusts.push(Trust {
                id,
                name: t.name,
                region: t.region,
                tags: t.tags.into_iter().collect(),
                database,
                local_migrations,
                maintenance_window: t.maintenance_window,
                runner,
            });
        }
        Ok(Inventory {
            path: path.to_path_buf(),
            trusts,
            index,
            lines,
        })
    }

    /// The trust with this id.
    pub fn get(&self, id: &str) -> Option<&Trust> {
        self.index.get(id).map(|&i| &self.trusts[i])
    }

    /// The same estate file holding only `trusts` (e.g. a rehearsal's copies): lookups find
    /// nothing else.
    pub fn with_trusts(&self, trusts: Vec<Trust>) -> Inventory {
        let index = trusts
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.clone(), i))
            .collect();
        let lines = trusts
            .iter()
            .filter_map(|t| Some((t.id.clone(), self.line_of(&t.id)?)))
            .collect();
        Inventory {
            path: self.path.clone(),
            trusts,
            index,
            lines,
        }
    }

    /// The line of the inventory where this trust is defined.
    pub fn line_of(&self, id: &str) -> Option<u64> {
        self.lines.get(id).copied()
    }
}

/// Whether `s` may be a runner label key or value: non-empty, `[A-Za-z0-9_.-]+`.
pub fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A trust's `runner:` labels, each key and value checked where it is written.
fn resolve_runner(
    path: &Path,
    id: &str,
    runner: Option<Spanned<RunnerFile>>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut labels = BTreeMap::new();
    for (key, value) in runner.map(|r| r.value.0).unwrap_or_default() {
        if !is_label(&key.value) {
            return Err(ConfigError::invalid(
                path,
                Some(key.referenced),
                format!(
                    "trust '{id}': runner label '{}' must be non-empty letters, digits, '_', '.' or '-'",
                    key.value
                ),
            ));
        }
        if !is_label(&value.value) {
            return Err(ConfigError::invalid(
                path,
                Some(value.referenced),
                format!(
                    "trust '{id}': runner label {}='{}': the value must be non-empty letters, digits, '_', '.' or '-'",
                    key.value, value.value
                ),
            ));
        }
        labels.insert(key.value, value.value);
    }
    Ok(labels)
}

fn is_slug(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !id.starts_with('-')
}

/// Expand `{id}` (the slug) and `{ID}` (upper case, `-` → `_`, for environment variable names).
fn expand(template: &str, id: &str) -> String {
    template
        .replace("{id}", id)
        .replace("{ID}", &id.to_ascii_uppercase().replace('-', "_"))
}

fn resolve_database(base: &Path, id: &str, db: &DatabaseFile) -> Result<DatabaseTarget, String> {
    let url = match (&db.url, &db.url_env) {
        (Some(_), Some(_)) => return Err("database has both url and url_env; give one".into()),
        (None, None) => return Err("database needs url or url_env".into()),
        (Some(url), None) => Some(expand(url, id)),
        (None, Some(_)) => None,
    };
    let password = match (&db.password_env, &db.password_file) {
        (Some(_), Some(_)) => {
            return Err("database has both password_env and password_file; give one".into())
        }
        (Some(var), None) => PasswordSource::Env(expand(var, id)),
        (None, Some(file)) => {
            let p = PathBuf::from(expand(file, id));
            PasswordSource::File(if p.is_absolute() { p } else { base.join(p) })
        }
        (None, None) => PasswordSource::None,
    };
    match url {
        Some(url) if url.starts_with("sqlite:") => {
            if password != PasswordSource::None {
                return Err("an SQLite database takes no password".into());
            }
            let rest = url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))
                .unwrap_or_default();
            if rest.is_empty() || rest.contains('?') || rest == ":memory:" {
                return Err(format!(
                    "'{url}' is not a usable SQLite URL: give a file path (sqlite://estate/{id}.db) without options"
                ));
            }
            let p = PathBuf::from(rest);
            let path = if p.is_absolute() { p } else { base.join(p) };
            Ok(DatabaseTarget::Sqlite { path })
        }
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            if let Some(problem) = pg_url_problem(&url) {
                return Err(problem);
            }
            let parsed = url::Url::parse(&url).map_err(|e| format!("invalid Postgres URL: {e}"))?;
            let password_param = parsed.query_pairs().any(|(k, _)| {
                k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("sslpassword")
            });
            if parsed.password().is_some() || password_param {
                return Err(
                    "the Postgres URL holds a password; passwords never go in trusts.yaml: \
                     use password_env or password_file (or url_env)"
                        .into(),
                );
            }
            Ok(DatabaseTarget::Postgres {
                url: UrlSource::Inline(url),
                password,
            })
        }
        Some(url) if crate::secrets::is_conninfo(&url) => Err(format!(
            "database url is a libpq key/value connection string, which is not supported (it is not shown: it may hold a password{}); write it as postgres://USER@HOST:PORT/DATABASE with password_env or password_file",
            if url.to_ascii_lowercase().contains("password") {
                ", and it does: passwords never go in trusts.yaml"
            } else {
                ""
            }
        )),
        Some(url) => Err(match url.split_once("://") {
            Some((scheme, _))
                if !scheme.is_empty()
                    && scheme
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')) =>
            {
                format!("unsupported database URL scheme '{scheme}': use sqlite:// or postgres://")
            }
            _ => "database url is neither sqlite://PATH nor postgres://USER@HOST/DATABASE (it is not shown: it may hold a password)".into(),
        }),
        None => Ok(DatabaseTarget::Postgres {
            url: UrlSource::Env(expand(db.url_env.as_deref().unwrap_or_default(), id)),
            password,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Inventory, ConfigError> {
        Inventory::parse(Path::new("/estate/trusts.yaml"), text)
    }

    #[test]
    fn default_database_template_expands_per_trust_relative_to_the_file() {
        let inv = parse(
            "defaults:\n  database:\n    url: sqlite://estate/{id}.db\ntrusts:\n  - id: camden\n    name: Camden PCT\n    region: london\n",
        )
        .unwrap();
        assert_eq!(
            inv.get("camden").unwrap().database,
            DatabaseTarget::Sqlite {
                path: PathBuf::from("/estate/estate/camden.db")
            }
        );
    }

    #[test]
    fn duplicate_trust_id_is_refused_with_its_line() {
        let err = parse(
            "defaults: {database: {url: 'sqlite://x/{id}.db'}}\ntrusts:\n  - {id: a, name: A, region: r}\n  - {id: a, name: B, region: r}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("duplicate trust id 'a'"), "{err}");
        assert!(err.contains("trusts.yaml:4:"), "{err}");
    }

    #[test]
    fn inline_password_is_refused_without_echoing_it() {
        let err = parse(
            "trusts:\n  - id: a\n    name: A\n    region: r\n    database: {url: 'postgres://u:hunter2@h/db'}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("password"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn password_in_url_parameters_is_refused_too() {
        let err = parse(
            "trusts:\n  - id: a\n    name: A\n    region: r\n    database: {url: 'postgres://u@h/db?password=hunter2'}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("password"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn redacted_postgres_target_keeps_only_user_host_port_and_database() {
        assert_eq!(
            redact_url("postgres://rio@db.example:5433/camden?sslmode=require"),
            "postgres://rio@db.example:5433/camden"
        );
    }

    #[test]
    fn unknown_field_is_refused_with_location() {
        let err = parse("trusts:\n  - {id: a, name: A, region: r, colour: blue}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour"), "{err}");
        assert!(err.contains("trusts.yaml:2:"), "{err}");
    }

    #[test]
    fn env_templates_use_upper_snake_ids() {
        let inv = parse(
            "defaults: {database: {url_env: 'DB_{ID}_URL', password_env: 'DB_{ID}_PASSWORD'}}\ntrusts:\n  - {id: west-london, name: W, region: london}\n",
        )
        .unwrap();
        assert_eq!(
            inv.get("west-london").unwrap().database,
            DatabaseTarget::Postgres {
                url: UrlSource::Env("DB_WEST_LONDON_URL".into()),
                password: PasswordSource::Env("DB_WEST_LONDON_PASSWORD".into()),
            }
        );
    }

    #[test]
    fn sqlite_url_with_options_is_refused_so_nothing_is_created_by_mode_rwc() {
        let err = parse(
            "trusts:\n  - {id: a, name: A, region: r, database: {url: 'sqlite://a.db?mode=rwc'}}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not a usable SQLite URL"), "{err}");
    }

    #[test]
    fn a_key_value_connection_string_is_refused_without_echoing_it() {
        let err = parse(
            "trusts:\n  - id: a\n    name: A\n    region: r\n    database: {url: 'host=db.example user=rio password=hunter2 dbname=camden'}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("key/value"), "{err}");
        assert!(err.contains("trusts.yaml:5"), "{err}");
        for secret in ["hunter2", "db.example", "password=", "rio"] {
            assert!(!err.contains(secret), "{secret} in {err}");
        }
        let err = parse(
            "trusts:\n  - id: a\n    name: A\n    region: r\n    database: {url: 'mysql://u:hunter2@h/db'}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("'mysql'"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn unknown_url_parameters_are_refused_naming_the_key_only() {
        let err = parse(
            "trusts:\n  - id: a\n    name: A\n    region: r\n    database: {url: 'postgres://u@h/db?pasword=hunter2'}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("'pasword'"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn runner_labels_are_read_and_absent_means_none() {
        let inv = parse(
            "defaults: {database: {url: 'sqlite://x/{id}.db'}}\ntrusts:\n  - id: camden\n    name: C\n    region: london\n    runner: { site: camden-dc, zone: eu-west_2.a }\n  - {id: oxleas, name: O, region: london}\n",
        )
        .unwrap();
        let camden = &inv.get("camden").unwrap().runner;
        assert_eq!(camden.len(), 2);
        assert_eq!(camden["site"], "camden-dc");
        assert_eq!(camden["zone"], "eu-west_2.a");
        assert!(inv.get("oxleas").unwrap().runner.is_empty());
        let with = inv.with_trusts(vec![inv.get("camden").unwrap().clone()]);
        assert_eq!(with.trusts[0].runner["site"], "camden-dc");
    }

    #[test]
    fn a_bad_runner_label_key_is_refused_with_its_line_and_trust() {
        let err = parse(
            "defaults: {database: {url: 'sqlite://x/{id}.db'}}\ntrusts:\n  - id: camden\n    name: C\n    region: london\n    runner:\n      site: dc1\n      'data centre': dc2\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("trusts.yaml:8:"), "{err}");
        assert!(err.contains("trust 'camden'"), "{err}");
        assert!(err.contains("'data centre'"), "{err}");
    }

    #[test]
    fn a_bad_or_empty_runner_label_value_is_refused_with_its_line_and_trust() {
        for (value, line) in [("'camden dc'", 7), ("''", 7), ("a/b", 7)] {
            let err = parse(&format!(
                "defaults: {{database: {{url: 'sqlite://x/{{id}}.db'}}}}\ntrusts:\n  - id: camden\n    name: C\n    region: london\n    runner:\n      site: {value}\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(
                err.contains(&format!("trusts.yaml:{line}:")),
                "{value}: {err}"
            );
            assert!(err.contains("trust 'camden'"), "{value}: {err}");
            assert!(err.contains("site="), "{value}: {err}");
        }
        let err = parse(
            "defaults: {database: {url: 'sqlite://x/{id}.db'}}\ntrusts:\n  - id: camden\n    name: C\n    region: london\n    runner: { '': dc1 }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("trusts.yaml:6:"), "{err}");
        assert!(err.contains("trust 'camden'"), "{err}");
    }

    #[test]
    fn a_runner_that_is_not_a_map_is_refused_with_its_line() {
        for runner in ["camden-dc", "[site, dc1]", "{ site: { nested: x } }"] {
            let err = parse(&format!(
                "defaults: {{database: {{url: 'sqlite://x/{{id}}.db'}}}}\ntrusts:\n  - id: camden\n    name: C\n    region: london\n    runner: {runner}\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(err.contains("trusts.yaml:6:"), "{runner}: {err}");
        }
    }

    #[test]
    fn label_characters() {
        for ok in ["site", "camden-dc", "a_b.c-D9"] {
            assert!(is_label(ok), "{ok}");
        }
        for bad in ["", "a b", "a=b", "a/b", "é", "a,b"] {
            assert!(!is_label(bad), "{bad}");
        }
    }

    #[test]
    fn plain_scalar_label_values_read_as_their_text() {
        let inv = parse(
            "defaults: {database: {url: 'sqlite://x/{id}.db'}}\ntrusts:\n  - {id: camden, name: C, region: london, runner: {rack: 12, on: true}}\n",
        )
        .unwrap();
        let runner = &inv.get("camden").unwrap().runner;
        assert_eq!(runner["rack"], "12");
        assert_eq!(runner["on"], "true");
    }
}
