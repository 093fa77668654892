//! [`CatalogError`]: what is wrong with the migration files, in whichever layout they are.

use std::path::PathBuf;

use crate::config::ConfigError;

/// A problem with the migration files. Nothing has been run when one of these is returned.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read migrations directory {path}: {source}")]
    ReadDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: not a migration file name; expected <version>_<description>.up.sql or .down.sql{hint}"
    )]
    BadFileName { path: PathBuf, hint: &'static str },
    #[error("{path}: version {digits} is too large (the largest version is {max}, a 19-digit number)", max = i64::MAX)]
    VersionTooLarge { path: PathBuf, digits: String },
    #[error("{inventory}{line}: trust '{trust}': local_migrations {path} is not a directory")]
    LocalNotDirectory {
        inventory: PathBuf,
        line: String,
        trust: String,
        path: PathBuf,
    },
    #[error("two migrations have version {label}: {first} and {second}")]
    DuplicateVersion {
        version: i64,
        /// The version as written (both ways when they differ).
        label: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("{up}: migration {label} has no down file (expected {expected})")]
    MissingDown {
        version: i64,
        label: String,
        up: PathBuf,
        /// The down file it should have (or, for dbmate, the section).
        expected: PathBuf,
    },
    #[error("{down}: down migration {label} has no up file")]
    MissingUp {
        version: i64,
        label: String,
        down: PathBuf,
    },
    /// A file of another tool's layout that is not what that layout allows.
    #[error("{path}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    #[error("{dir}: migrations of two layouts, {first} and {second}; say which one with `layout: flotilla|sqlx|golang-migrate|diesel|flyway|dbmate` in {settings}")]
    AmbiguousLayout {
        dir: PathBuf,
        first: String,
        second: String,
        settings: PathBuf,
    },
    /// `accepted:` or `--since` names no migration.
    #[error("{at}: accepted history ends at version '{version}', which is not a migration in {dir}{why}")]
    UnknownAccepted {
        /// `flotilla.yaml:LINE` or `--since`.
        at: String,
        version: String,
        dir: PathBuf,
        why: String,
    },
    #[error("{path}:1: unknown directive '{word}' (known: no-transaction, batch, irreversible, rewrites:TABLE.COLUMN)")]
    UnknownDirective { path: PathBuf, word: String },
    #[error("{path}:1: directives no-transaction and batch cannot be combined")]
    ConflictingDirectives { path: PathBuf },
    #[error(transparent)]
    Releases(#[from] ConfigError),
    #[error("{path}: release '{release}' ends at version {version}, which is not a migration")]
    ReleaseUnknownVersion {
        path: PathBuf,
        release: String,
        version: i64,
    },
}

impl CatalogError {
    /// The documented exit code: the user's migration files (2).
    pub fn exit_code(&self) -> crate::exit_codes::ExitCode {
        crate::exit_codes::ExitCode::Config
    }
}
