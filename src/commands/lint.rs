//! `flotilla lint [--dialect D] [--format text|json]`: the migration lint alone.

use std::io::Write;

use super::{Failure, Format, Globals, Outcome};
use crate::db::Dialect;
use crate::exit_codes::ExitCode;
use crate::migrations::lint::check::{check_migrations, load_linted_since};

/// Lint the migrations: destructive changes, long Postgres locks, downs that do not undo
/// their up (rehearsed on a scratch SQLite database), SQL that does not parse. Exits 2 on
/// any error. `validate` runs the same lint.
#[derive(Debug, clap::Args)]
pub struct LintArgs {
    /// Lint for this dialect only (default: each dialect of the inventory's trusts).
    #[arg(long, value_enum)]
    pub dialect: Option<LintDialect>,
    /// Accepted history ends at this version (as the migrations write it, e.g. 0130,
    /// 2014-11-27-000000, 1.2): only newer migrations are linted and their downs rehearsed.
    /// Overrides `accepted:` in the migrations' flotilla.yaml.
    #[arg(long, value_name = "VERSION")]
    pub since: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// A SQL dialect to lint for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LintDialect {
    /// PostgreSQL (adds the lock rules).
    Postgres,
    /// SQLite.
    Sqlite,
}

impl From<LintDialect> for Dialect {
    fn from(d: LintDialect) -> Dialect {
        match d {
            LintDialect::Postgres => Dialect::Postgres,
            LintDialect::Sqlite => Dialect::Sqlite,
        }
    }
}

/// `flotilla lint`.
pub async fn run(g: &Globals, args: &LintArgs) -> Outcome {
    let (inventory, catalogs) =
        load_linted_since(&g.inventory, &g.migrations, args.since.as_deref())?;
    let report = check_migrations(&inventory, &catalogs, args.dialect.map(Dialect::from)).await?;
    match args.format {
        Format::Text => report.print_text(),
        Format::Json => {
            let text = serde_json::to_string_pretty(&report)
                .map_err(|e| Failure::new(ExitCode::Internal, e.to_string()))?;
            let _ = writeln!(std::io::stdout().lock(), "{text}");
        }
    }
    Ok(report.errors()?)
}
