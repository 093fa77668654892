//! `rollout --rehearse`: the whole plan (migrations, health gates, policy, rollbacks) run by the
//! real engine on disposable copies of the plan's trust databases, which are dropped afterwards.
//!
//! How a copy is made, chosen for what is safe against a live source:
//! - SQLite: `VACUUM INTO` a temporary file, on a read-only connection. It reads one consistent
//!   snapshot inside a read transaction, like the online backup API, and never writes to the
//!   source (clinicians' sessions keep reading and writing while it runs).
//! - PostgreSQL: `pg_dump` (one MVCC snapshot, ACCESS SHARE locks only) piped into
//!   `pg_restore` in a scratch database created on the same server. `CREATE DATABASE ...
//!   TEMPLATE trust` would be faster but needs every other session off the source database for
//!   the whole copy, which a live trust cannot give. The cost: the copy reads every row, and
//!   the server needs room and `CREATEDB` for the scratch database.
//!
//! Scratch databases are named `flotilla_rehearsal_<host>_<pid>_<n>`. They are dropped when the
//! rehearsal ends, whatever the outcome (also on Ctrl-C); a rehearsal that was killed leaves
//! them, and the next rehearsal from the same host drops those whose process is gone.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::{Inventory, Plan};
use crate::exit_codes::ExitCode;
use crate::journal::{StateDb, StateLocation};
use crate::migrations::Catalogs;
use crate::session::{ApproveAll, SessionError};

pub mod copy;
pub mod scratch;

use copy::{copy_estate, CopyError, Scratch};

/// What a rehearsal needs.
pub struct Rehearsal<'a> {
    /// The estate's state database, read (never written) for the trusts never judged.
    pub estate_state: &'a StateLocation,
    /// Progress bars allowed.
    pub progress: bool,
    /// Colour allowed.
    pub color: bool,
    /// `--lease-ttl`.
    pub lease_ttl: Duration,
    pub inventory: &'a Inventory,
    pub catalogs: &'a Catalogs,
    pub plan: &'a Plan,
    /// `--events`.
    pub events: Option<&'a Path>,
    /// `--junit`, `--report-dir`.
    pub reports: &'a crate::report::ReportOptions,
}

/// Why a rehearsal did not pass; the exit code is the one the real run would give.
#[derive(Debug, thiserror::Error)]
pub enum RehearseError {
    #[error("cannot create a temporary directory for the rehearsal: {0}")]
    TempDir(#[source] std::io::Error),
    #[error("rehearsal interrupted while copying the trust databases; nothing was run")]
    Interrupted,
    #[error(transparent)]
    Copy(#[from] CopyError),
    #[error(transparent)]
    Session(#[from] SessionError),
    /// A failed run and scratch databases left behind, both said.
    #[error("{message}")]
    Stopped { code: ExitCode, message: String },
}

impl RehearseError {
    /// The documented exit code.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            RehearseError::TempDir(_) => ExitCode::Config,
            RehearseError::Interrupted => ExitCode::Interrupted,
            RehearseError::Copy(e) => e.exit_code(),
            RehearseError::Session(e) => e.exit_code(),
            RehearseError::Stopped { code, .. } => *code,
        }
    }
}

/// `flotilla rollout PLAN --rehearse`.
pub async fn rehearse(r: &Rehearsal<'_>) -> Result<(), RehearseError> {
    let &Rehearsal {
        estate_state,
        progress,
        color,
        lease_ttl,
        inventory,
        catalogs,
        plan,
        events,
        reports,
    } = r;
    let dir = tempfile::Builder::new()
        .prefix("flotilla-rehearsal-")
        .tempdir()
        .map_err(RehearseError::TempDir)?;
    let mut scratch = Scratch::default();
    let started = Instant::now();
    let copied = tokio::select! {
        r = copy_estate(inventory, catalogs, plan, dir.path(), &mut scratch) => r.map_err(RehearseError::from),
        _ = tokio::signal::ctrl_c() => Err(RehearseError::Interrupted),
    };
    let result = match copied {
        Ok(copy) => {
            say(events, &format!(
                "rehearsal: {} trust database(s) copied to disposable databases in {:.1} s; the originals are not touched",
                copy.trusts.len(),
                started.elapsed().as_secs_f64()
            ));
            // What the lint's findings on the migrations to apply mean on these trusts, read
            // from the copies (the same data; the originals are not read again).
            for line in crate::report::estate::lint_on_estate(&copy, catalogs, plan)
                .await
                .lines()
            {
                say(events, &line);
            }
            let own_state = StateLocation::parse(
                &dir.path().join("state.db").display().to_string(),
            )
            .map_err(|e| RehearseError::Stopped {
                code: ExitCode::Config,
                message: e,
            })?;
            // The estate's journal, read-only: a trust whose upgrade was never judged is
            // judged on its copy against the baseline recorded then, as the real run would.
            let history = match StateDb::open_read_only(estate_state).await {
                Ok(h) => h,
                Err(e) => {
                    say(events, &format!(
                        "rehearsal: the estate's journal cannot be read ({e}); trusts whose upgrade was never judged are not judged in this rehearsal, though the real run would"
                    ));
                    None
                }
            };
            let result = crate::session::execute(crate::session::Request {
                state: &own_state,
                progress,
                color,
                inventory: &copy,
                catalogs,
                plan,
                operator: &ApproveAll("rehearsal".into()),
                events,
                reports,
                start: crate::session::Start::New,
                lease_ttl,
                rehearsal: true,
                history: history.as_ref(),
                workers: false,
            })
            .await
            .map_err(RehearseError::from);
            if let Some(h) = history {
                h.close().await;
            }
            result
        }
        Err(f) => Err(f),
    };
    let cleaned = scratch.drop_all().await;
    drop(dir);
    match (result, cleaned) {
        (Ok(()), Ok(())) => {
            say(
                events,
                &format!(
                    "rehearsal of {} passed: the real rollout would complete (exit 0)",
                    plan.name
                ),
            );
            Ok(())
        }
        (Ok(()), Err(leftovers)) => Err(leftovers.into()),
        (Err(f), Ok(())) => Err(f),
        (Err(f), Err(leftovers)) => Err(RehearseError::Stopped {
            code: f.exit_code(),
            message: format!("{f}\nalso: {leftovers}"),
        }),
    }
}

/// A line for people: on stdout, unless stdout carries `--events -`.
fn say(events: Option<&Path>, line: &str) {
    if events.is_some_and(|p| p == Path::new("-")) {
        eprintln!("{line}");
    } else {
        crate::printable::print_line(line);
    }
}
