//! The lint of an estate's migrations that `flotilla lint`, `validate` and `rollout --rehearse`
//! report: [`check_migrations`] (every catalog, for the dialects of the trusts using it, downs
//! rehearsed on a scratch SQLite database) and the [`LintReport`] it returns.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{rules, sort_findings, Finding, Severity};
use crate::config::{ConfigError, Inventory};
use crate::db::{DbError, Dialect, TrustDb};
use crate::exit_codes::ExitCode;
use crate::migrations::{roundtrip, Catalog, CatalogError, Catalogs};

/// What linting an estate's migrations found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LintReport {
    /// Every finding, sorted by file and line.
    pub findings: Vec<Finding>,
    /// The dialects the migrations were linted for.
    pub dialects: Vec<Dialect>,
    /// Whether downs were rehearsed (on a scratch SQLite database).
    pub rehearsed: bool,
    /// How many migrations are accepted history (`accepted:` or `--since`): not linted, their
    /// downs not rehearsed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted: Option<usize>,
}

/// Why the migrations could not be loaded or linted, or what the lint found.
#[derive(Debug, thiserror::Error)]
pub enum LintError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A catalog error that is a lint finding (a missing down file), shown as one.
    #[error("{0}")]
    Finding(Box<Finding>),
    #[error("cannot open a scratch database to rehearse the migrations: {0}")]
    Scratch(#[source] DbError),
    #[error("rehearsing the migrations on a scratch database: {0}")]
    Rehearsal(#[source] DbError),
    /// The lint found errors.
    #[error("the migrations have {count} lint error{} (all listed on stdout), the first: {first}\nfix them, or allow a rule in the migration with `-- flotilla-lint: allow RULE -- reason`", if *.count == 1 { "" } else { "s" })]
    Errors { count: usize, first: Box<Finding> },
}

impl LintError {
    /// The documented exit code: the user's files (2), or flotilla's scratch database (1).
    pub fn exit_code(&self) -> ExitCode {
        match self {
            LintError::Config(e) => e.exit_code(),
            LintError::Catalog(e) => e.exit_code(),
            LintError::Finding(_) | LintError::Errors { .. } => ExitCode::Config,
            LintError::Scratch(_) | LintError::Rehearsal(_) => ExitCode::Internal,
        }
    }
}

impl LintReport {
    /// How many findings have this severity.
    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    /// One line for humans: `lint: 2 errors, 1 warning (SQLite; downs rehearsed)`.
    pub fn summary(&self) -> String {
        let dialects: Vec<&str> = self.dialects.iter().map(|d| d.name()).collect();
        let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
        format!(
            "lint: {}, {} ({}; {}{})",
            plural(self.count(Severity::Error), "error"),
            plural(self.count(Severity::Warning), "warning"),
            dialects.join(", "),
            if self.rehearsed {
                "downs rehearsed on a scratch SQLite database"
            } else {
                "downs not rehearsed: no SQLite trust; `rollout --rehearse` rehearses on PostgreSQL"
            },
            match self.accepted {
                Some(n) => format!("; accepted history not linted: {}", plural(n, "migration")),
                None => String::new(),
            }
        )
    }

    /// The error for a report with errors (exit 2, naming the first), or none.
    pub fn errors(&self) -> Result<(), LintError> {
        let mut errors = self
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error);
        let Some(first) = errors.next() else {
            return Ok(());
        };
        Err(LintError::Errors {
            count: 1 + errors.count(),
            first: Box::new(first.clone()),
        })
    }

    /// Print each finding as `path:line: severity[rule]: message`, then the summary.
    pub fn print_text(&self) {
        let mut out = std::io::stdout().lock();
        for f in &self.findings {
            let _ = writeln!(out, "{}", crate::printable::printable(&f.to_string()));
        }
        let _ = writeln!(out, "{}", self.summary());
    }
}

/// Load the inventory and the catalogs, reporting a migration without a down file as the
/// `missing-down` finding it is (`path:1: error[missing-down]: ...`).
pub fn load_linted(
    inventory: &Path,
    migrations: &Path,
) -> Result<(Inventory, Catalogs), LintError> {
    load_linted_since(inventory, migrations, None)
}

/// [`load_linted`], with `since` (`--since`) ending accepted history instead of `accepted:` in
/// the migrations' `flotilla.yaml`.
pub fn load_linted_since(
    inventory: &Path,
    migrations: &Path,
    since: Option<&str>,
) -> Result<(Inventory, Catalogs), LintError> {
    let inventory = Inventory::load(inventory)?;
    let catalogs = Catalog::load_since(migrations, since)
        .and_then(|base| Catalogs::load(base, &inventory))
        .map_err(|e| match catalog_finding(&e) {
            Some(f) => LintError::Finding(Box::new(f)),
            None => LintError::Catalog(e),
        })?;
    Ok((inventory, catalogs))
}

/// The lint finding a catalog error is, if it is one.
pub fn catalog_finding(e: &CatalogError) -> Option<Finding> {
    match e {
        CatalogError::MissingDown { up, expected, .. } => Some(Finding {
            file: up.clone(),
            line: 1,
            column: None,
            rule: rules::MISSING_DOWN,
            severity: Severity::Error,
            message: format!(
                "this up migration has no down file; write {} (or an empty one and mark the up `-- flotilla: irreversible`)",
                expected.display()
            ),
            table: None,
        }),
        _ => None,
    }
}

/// Lint every catalog of the estate (the shared one and each trust's merged local one) for the
/// dialects of the trusts using it (or `only`), and rehearse each catalog's downs on a scratch
/// SQLite database when SQLite is among them. Accepted history (`accepted:`, `--since`) is
/// linted as context for what follows, but its findings are left out and its downs are not
/// rehearsed. Fails only when the scratch database cannot be used.
pub async fn check_migrations(
    inventory: &Inventory,
    catalogs: &Catalogs,
    only: Option<Dialect>,
) -> Result<LintReport, LintError> {
    // Each distinct catalog with the dialects it is run on.
    let mut targets: Vec<(&Catalog, Vec<Dialect>)> = vec![(catalogs.base(), Vec::new())];
    for t in &inventory.trusts {
        let catalog = catalogs.for_trust(&t.id);
        let dialect = only.unwrap_or_else(|| Dialect::of(&t.database));
        let i = match targets.iter().position(|(c, _)| std::ptr::eq(*c, catalog)) {
            Some(i) => i,
            None => {
                targets.push((catalog, Vec::new()));
                targets.len() - 1
            }
        };
        if !targets[i].1.contains(&dialect) {
            targets[i].1.push(dialect);
        }
    }
    if targets[0].1.is_empty() {
        targets[0].1.push(only.unwrap_or(Dialect::Sqlite));
    }
    let mut findings = Vec::new();
    let mut dialects: Vec<Dialect> = Vec::new();
    let mut rehearsed = false;
    for (catalog, ds) in &targets {
        let history = accepted_files(catalog);
        for d in ds {
            findings.extend(
                super::lint(catalog.migrations(), *d)
                    .into_iter()
                    .filter(|f| !history.contains(&f.file)),
            );
            if !dialects.contains(d) {
                dialects.push(*d);
            }
        }
        if ds.contains(&Dialect::Sqlite) {
            let mut db = TrustDb::scratch().await.map_err(LintError::Scratch)?;
            let result =
                roundtrip::round_trip_since(&mut db, catalog.migrations(), catalog.accepted())
                    .await;
            db.close().await;
            findings.extend(result.map_err(LintError::Rehearsal)?);
            rehearsed = true;
        }
    }
    sort_findings(&mut findings);
    let base = catalogs.base();
    Ok(LintReport {
        findings,
        dialects,
        rehearsed,
        accepted: base.accepted().map(|_| base.accepted_count()),
    })
}

/// The files of a catalog's accepted history, whose findings are not reported.
fn accepted_files(catalog: &Catalog) -> BTreeSet<PathBuf> {
    catalog
        .migrations()
        .iter()
        .filter(|m| catalog.is_accepted(m.version))
        .flat_map(|m| [m.up.path.clone(), m.down.path.clone()])
        .collect()
}
