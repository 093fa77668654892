//! `flotilla lint`, and the migration lint `flotilla validate` runs: one function,
//! [`check_migrations`], for both.

use std::io::Write;

use crate::cli::Format;
use crate::commands::{Failure, Globals, Outcome};
use crate::config::{DatabaseTarget, Inventory};
use crate::db::{Dialect, TrustDb};
use crate::exit_codes::ExitCode;
use crate::migrations::lint::{self, rules, Finding, Severity};
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
        let dialects: Vec<&str> = self
            .dialects
            .iter()
            .map(|d| match d {
                Dialect::Sqlite => "SQLite",
                Dialect::Postgres => "PostgreSQL",
            })
            .collect();
        let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
        format!(
            "lint: {}, {} ({}; {})",
            plural(self.count(Severity::Error), "error"),
            plural(self.count(Severity::Warning), "warning"),
            dialects.join(", "),
            if self.rehearsed {
                "downs rehearsed on a scratch SQLite database"
            } else {
                "downs not rehearsed: no SQLite trust; `rollout --rehearse` rehearses on PostgreSQL"
            }
        )
    }
}

/// Load the inventory and the catalogs, reporting a migration without a down file as the
/// `missing-down` finding it is (`path:1: error[missing-down]: ...`).
pub(crate) fn load_linted(g: &Globals) -> Result<(Inventory, Catalogs), Failure> {
    let inventory = Inventory::load(&g.inventory)?;
    let catalogs = Catalog::load(&g.migrations)
        .and_then(|base| Catalogs::load(base, &inventory))
        .map_err(|e| match catalog_finding(&e) {
            Some(f) => Failure::new(ExitCode::Config, f.to_string()),
            None => Failure::from(e),
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
        }),
        _ => None,
    }
}

fn dialect_of(database: &DatabaseTarget) -> Dialect {
    match database {
        DatabaseTarget::Postgres { .. } => Dialect::Postgres,
        DatabaseTarget::Sqlite { .. } => Dialect::Sqlite,
    }
}

/// Lint every catalog of the estate (the shared one and each trust's merged local one) for the
/// dialects of the trusts using it (or `only`), and rehearse each catalog's downs on a scratch
/// SQLite database when SQLite is among them. Fails only when the scratch database cannot be
/// used.
pub async fn check_migrations(
    inventory: &Inventory,
    catalogs: &Catalogs,
    only: Option<Dialect>,
) -> Result<LintReport, Failure> {
    // Each distinct catalog with the dialects it is run on.
    let mut targets: Vec<(&Catalog, Vec<Dialect>)> = vec![(catalogs.base(), Vec::new())];
    for t in &inventory.trusts {
        let catalog = catalogs.for_trust(&t.id);
        let dialect = only.unwrap_or_else(|| dialect_of(&t.database));
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
        for d in ds {
            findings.extend(lint::lint(catalog.migrations(), *d));
            if !dialects.contains(d) {
                dialects.push(*d);
            }
        }
        if ds.contains(&Dialect::Sqlite) {
            let mut db = TrustDb::scratch().await.map_err(|e| {
                Failure::new(
                    ExitCode::Internal,
                    format!("cannot open a scratch database to rehearse the migrations: {e}"),
                )
            })?;
            let result = roundtrip::round_trip(&mut db, catalog.migrations()).await;
            db.close().await;
            findings.extend(result.map_err(|e| {
                Failure::new(
                    ExitCode::Internal,
                    format!("rehearsing the migrations on a scratch database: {e}"),
                )
            })?);
            rehearsed = true;
        }
    }
    lint::sort_findings(&mut findings);
    Ok(LintReport {
        findings,
        dialects,
        rehearsed,
    })
}

/// The failure for a report with errors (exit 2, naming the first), or none.
pub fn failure_of(report: &LintReport) -> Outcome {
    let mut errors = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error);
    let Some(first) = errors.next() else {
        return Ok(());
    };
    let n = 1 + errors.count();
    Err(Failure::new(
        ExitCode::Config,
        format!(
            "the migrations have {n} lint error{} (all listed on stdout), the first: {first}\n\
             fix them, or allow a rule in the migration with `-- flotilla-lint: allow RULE -- reason`",
            if n == 1 { "" } else { "s" }
        ),
    ))
}

/// Print each finding as `path:line: severity[rule]: message`, then the summary.
pub fn print_text(report: &LintReport) {
    let mut out = std::io::stdout().lock();
    for f in &report.findings {
        let _ = writeln!(out, "{}", crate::printable::printable(&f.to_string()));
    }
    let _ = writeln!(out, "{}", report.summary());
}

/// `flotilla lint [--dialect D] [--format text|json]`.
pub async fn lint(g: &Globals, dialect: Option<Dialect>, format: Format) -> Outcome {
    let (inventory, catalogs) = load_linted(g)?;
    let report = check_migrations(&inventory, &catalogs, dialect).await?;
    match format {
        Format::Text => print_text(&report),
        Format::Json => {
            let text = serde_json::to_string_pretty(&report)
                .map_err(|e| Failure::new(ExitCode::Internal, e.to_string()))?;
            let _ = writeln!(std::io::stdout().lock(), "{text}");
        }
    }
    failure_of(&report)
}
