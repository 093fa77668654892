//! The command line's root (clap derive): the global options and the [`Command`] enum, whose
//! variants hold each subcommand's `Args` struct from its file under `commands/`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::commands;

/// Roll a database upgrade out across many trust databases in waves, check each one, and stop
/// before a bad upgrade spreads.
#[derive(Debug, Parser)]
#[command(name = "flotilla", version, about, long_about = None)]
pub struct Cli {
    /// The estate file.
    #[arg(
        long,
        global = true,
        default_value = "trusts.yaml",
        value_name = "FILE"
    )]
    pub inventory: PathBuf,

    /// The migrations directory.
    #[arg(long, global = true, default_value = "migrations", value_name = "DIR")]
    pub migrations: PathBuf,

    /// flotilla's own state database (runs, steps, measurements, verdicts, events, the lease):
    /// an SQLite file, or a postgres:// URL shared by a team (password in
    /// FLOTILLA_STATE_PASSWORD).
    #[arg(long, global = true, default_value = crate::journal::DEFAULT_STATE, value_name = "FILE|URL")]
    pub state: String,

    /// How long the estate lease lives without a heartbeat (a crashed run's lease can be taken
    /// after this; at once when its process is gone from this host).
    #[arg(long, global = true, default_value = crate::journal::lease::DEFAULT_TTL_TEXT, value_parser = parse_lease_ttl, value_name = "DURATION")]
    pub lease_ttl: std::time::Duration,

    /// Plain lines instead of progress bars, even on a terminal.
    #[arg(long, global = true)]
    pub no_progress: bool,

    /// Format of diagnostic logs on stderr (RUST_LOG filters them).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// More diagnostics (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

/// The shortest `--lease-ttl`: the holder renews its lease every third of it, and a renewal
/// must land before the lease expires, or another run takes over a live one.
pub const MIN_LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// `--lease-ttl`: a duration of at least [`MIN_LEASE_TTL`].
pub fn parse_lease_ttl(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d < MIN_LEASE_TTL {
        return Err(format!(
            "a lease shorter than {} expires between its holder's heartbeats, and would let another run take over a live one at once",
            humantime::format_duration(MIN_LEASE_TTL)
        ));
    }
    Ok(d)
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands: each one's arguments and `run` are in its file under `commands/`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the inventory, the migrations (with the same lint as `lint`) and (optionally) a
    /// plan. No trust database is touched.
    Validate(commands::validate::ValidateArgs),
    /// Lint the migrations: destructive changes, long Postgres locks, downs that do not undo
    /// their up (rehearsed on a scratch SQLite database), SQL that does not parse. Exits 2 on
    /// any error. `validate` runs the same lint.
    Lint(commands::lint::LintArgs),
    /// Show what a rollout would do, per wave and trust. Reads databases read-only.
    Plan(commands::plan::PlanArgs),
    /// Roll a plan out, wave by wave.
    Rollout(commands::rollout::RolloutArgs),
    /// Continue an interrupted, halted or crashed run from the journal and the databases'
    /// real state. Measures afresh; never reuses a failed window.
    Resume(commands::resume::ResumeArgs),
    /// Record that an unfinished run (halted, paused, failed, interrupted, crashed) will not be
    /// continued, and why. It can then no longer be resumed, and no longer blocks a new
    /// rollout; its trusts whose upgrade was never judged to pass are still gated by the next
    /// rollout. Recorded in the journal with your user@host.
    Abandon(commands::abandon::AbandonArgs),
    /// Roll trusts back with their down migrations, then verify their patient data.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["trust", "wave", "run"])))]
    Rollback(commands::rollback::RollbackArgs),
    /// Take over trusts another tool (sqlx, Flyway, golang-migrate, diesel, dbmate) migrated:
    /// record the migrations its tracking table lists as applied, without running them.
    Adopt(commands::adopt::AdoptArgs),
    /// Clear the dirty mark a failed non-transactional migration left on a trust, after an
    /// operator has checked what it did.
    Repair(commands::repair::RepairArgs),
    /// Every trust's current version, release and pending migrations.
    Status(commands::status::StatusArgs),
    /// Create the sample estate at release 5.0 with synthetic patients, then roll out
    /// plans/rio-5.1.yaml with the real engine.
    Demo(commands::demo::DemoArgs),
    /// Simulated clinicians: staff sessions open patient records, look at caseloads and save
    /// clinical notes on every trust of a plan (demo databases only), read every saved note
    /// back, and record what they experienced as JSON lines. `demo --traffic` runs it.
    Traffic(commands::traffic::TrafficArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions(commands::completions::CompletionsArgs),
    /// Print flotilla's man page (roff) on stdout, e.g. `flotilla man > flotilla.1`.
    Man(commands::completions::ManArgs),
    /// Run a plan's health checks on trusts now and print the figures.
    ///
    /// Not read-only: the write probe inserts its records into each trust (the plan's
    /// `write_probe.insert`, negative ids), reads them back and removes them again with its
    /// `cleanup`, as a rollout's gate does. Every other probe runs read-only.
    Health(commands::health::HealthArgs),
    /// Report on a past run from the journal: a summary, and the JUnit and HTML reports a
    /// rollout writes with --junit and --report-dir.
    Report(commands::report::ReportRunArgs),
    /// Run the trust jobs of rollouts coordinated by `rollout --workers` through the shared
    /// PostgreSQL state database (--state postgres://...), from this checkout, until stopped
    /// (SIGTERM: finish the jobs in flight, then exit 0).
    Worker(commands::worker::WorkerArgs),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_lease_ttl_is_the_lease_modules_constant() {
        assert_eq!(
            parse_lease_ttl(crate::journal::lease::DEFAULT_TTL_TEXT),
            Ok(crate::journal::lease::DEFAULT_TTL)
        );
    }

    #[test]
    fn the_command_line_is_consistent() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }
}
