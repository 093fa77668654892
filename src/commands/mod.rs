//! The command layer: one file per subcommand, each holding its clap `Args` struct and a
//! `run` that resolves the arguments, calls the library and prints. Shared here: [`Globals`]
//! (the global options), [`Failure`] (an error with its documented exit code, built from the
//! library's errors), [`Outcome`], the argument types several commands share, and the output
//! helpers. No command file imports another.

use std::path::{Path, PathBuf};

use crate::config::{Inventory, Plan};
use crate::exit_codes::ExitCode;
use crate::journal::{StateDb, StateLocation};
use crate::migrations::{Catalog, Catalogs};

pub mod abandon;
pub mod adopt;
pub mod completions;
pub mod demo;
pub mod health;
pub mod lint;
pub mod plan;
pub mod prompt;
pub mod repair;
pub mod report;
pub mod resume;
pub mod rollback;
pub mod rollout;
pub mod status;
pub mod traffic;
pub mod validate;
pub mod worker;

pub(crate) use crate::printable::{jsonln, outln, print_line};

/// A command that could not do its job: the exit code and the message for stderr.
#[derive(Debug)]
pub struct Failure {
    /// Documented exit code.
    pub code: ExitCode,
    /// What went wrong, naming the file, trust or migration.
    pub message: String,
}

impl Failure {
    /// A failure of the command itself (a refusal of its arguments, a problem it found).
    pub(crate) fn new(code: ExitCode, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// A usage or configuration error (exit 2): nothing was changed.
    pub(crate) fn config(message: impl Into<String>) -> Failure {
        Failure::new(ExitCode::Config, message)
    }
}

/// Every library error that reaches a command says its own exit code: one fault, one code,
/// whatever the path that met it.
macro_rules! failure_from {
    ($($error:ty),* $(,)?) => {$(
        impl From<$error> for Failure {
            fn from(e: $error) -> Self {
                Failure::new(e.exit_code(), e.to_string())
            }
        }
    )*};
}

failure_from!(
    crate::config::ConfigError,
    crate::migrations::CatalogError,
    crate::migrations::lint::check::LintError,
    crate::db::DbError,
    crate::journal::StateError,
    crate::journal::LeaseError,
    crate::report::ReportError,
    crate::report::ModelError,
    crate::report::plan::BlockedError,
    crate::unfinished::UnfinishedError,
    crate::session::SessionError,
    crate::rehearse::RehearseError,
    crate::traffic::clinic::TrafficError,
    crate::traffic::record::ReadError,
);

/// The result of a command.
pub type Outcome = Result<(), Failure>;

/// Options shared by every command.
#[derive(Debug, Clone)]
pub struct Globals {
    /// The estate file.
    pub inventory: PathBuf,
    /// The migrations directory.
    pub migrations: PathBuf,
    /// flotilla's state database: a file path or a Postgres URL.
    pub state: String,
    /// How long the estate lease lives without a heartbeat.
    pub lease_ttl: std::time::Duration,
    /// Progress bars allowed (stdout is a terminal and `--no-progress` was not given).
    pub progress: bool,
    /// Colour allowed (`NO_COLOR` is unset or empty, as no-color.org defines it).
    pub color: bool,
    /// The whole command line's definition (`completions`, `man` print it).
    pub cli: fn() -> clap::Command,
}

impl Globals {
    /// The inventory and the catalogs of migrations.
    pub(crate) fn load(&self) -> Result<(Inventory, Catalogs), Failure> {
        let inventory = Inventory::load(&self.inventory)?;
        let catalogs = Catalogs::load(Catalog::load(&self.migrations)?, &inventory)?;
        Ok((inventory, catalogs))
    }

    /// The inventory, the catalogs and the plan at `plan`.
    pub(crate) fn load_plan(&self, plan: &Path) -> Result<(Inventory, Catalogs, Plan), Failure> {
        let (inventory, catalogs) = self.load()?;
        let plan = Plan::load(plan, &inventory, catalogs.base())?;
        Ok((inventory, catalogs, plan))
    }

    /// Where `--state` points; anything but a file path, `sqlite://PATH` or `postgres://...`
    /// is refused without repeating it.
    pub(crate) fn state_location(&self) -> Result<StateLocation, Failure> {
        StateLocation::parse(&self.state).map_err(Failure::config)
    }

    /// Open the state database named by `--state` to record in it (an SQLite file is
    /// created).
    pub(crate) async fn open_state(&self) -> Result<StateDb, Failure> {
        Ok(StateDb::open(&self.state_location()?).await?)
    }

    /// Open the state database named by `--state` to read it, changing nothing; `None` when
    /// nothing has been recorded there.
    pub(crate) async fn open_state_read_only(&self) -> Result<Option<StateDb>, Failure> {
        Ok(StateDb::open_read_only(&self.state_location()?).await?)
    }
}

/// Output format of reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people.
    Text,
    /// For programs.
    Json,
}

/// Written reports of a run, rendered from the journal when it ends (whatever its outcome).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ReportArgs {
    /// Write a JUnit XML report to FILE: a test suite per wave, a test case per trust and per
    /// health-gate verdict, failures carrying the reasons.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write a self-contained HTML report (DIR/index.html): waves, trusts, versions, timings,
    /// every verdict with its reasons, latency plots.
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
}

impl ReportArgs {
    /// As library options.
    pub fn options(&self) -> crate::report::ReportOptions {
        crate::report::ReportOptions {
            junit: self.junit.clone(),
            report_dir: self.report_dir.clone(),
        }
    }
}

/// A positive rate of actions per second, at most 1000.
pub(crate) fn parse_rate(s: &str) -> Result<f64, String> {
    let r: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of actions per second"))?;
    if r.is_finite() && r > 0.0 && r <= 1000.0 {
        Ok(r)
    } else {
        Err(format!(
            "the rate must be more than 0 and at most 1000 actions per second per trust, got {s}"
        ))
    }
}
