//! Command-line arguments (clap derive). Structs only: `commands` resolves them.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

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
    #[arg(long, global = true, default_value = "30s", value_parser = parse_lease_ttl, value_name = "DURATION")]
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

/// Output format of reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people.
    Text,
    /// For programs.
    Json,
}

/// A SQL dialect to lint for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LintDialect {
    /// PostgreSQL (adds the lock rules).
    Postgres,
    /// SQLite.
    Sqlite,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the inventory, the migrations (with the same lint as `lint`) and (optionally) a
    /// plan. No trust database is touched.
    Validate {
        /// A plan to validate too.
        plan: Option<PathBuf>,
    },
    /// Lint the migrations: destructive changes, long Postgres locks, downs that do not undo
    /// their up (rehearsed on a scratch SQLite database), SQL that does not parse. Exits 2 on
    /// any error. `validate` runs the same lint.
    Lint {
        /// Lint for this dialect only (default: each dialect of the inventory's trusts).
        #[arg(long, value_enum)]
        dialect: Option<LintDialect>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Show what a rollout would do, per wave and trust. Reads databases read-only.
    Plan {
        /// The plan file.
        plan: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Print the exact statements, including flotilla's lock and tracking-table writes.
        #[arg(long)]
        sql: bool,
    },
    /// Roll a plan out, wave by wave.
    Rollout {
        /// The plan file.
        plan: PathBuf,
        /// Do not ask for confirmation; approve waves marked `approval: required`.
        #[arg(long)]
        yes: bool,
        /// Approve this wave (marked `approval: required`) in advance (repeatable). Without a
        /// terminal, every approval wave needs this or --yes.
        #[arg(long, value_name = "WAVE")]
        approve: Vec<String>,
        /// Print, per wave and trust, every statement the rollout would run (flotilla's own
        /// lock and tracking statements included) and change nothing.
        #[arg(long, conflicts_with_all = ["rehearse", "yes", "approve", "events", "junit", "report_dir"])]
        dry_run: bool,
        /// Run the whole plan (migrations, health gates, policy, rollbacks) on disposable
        /// copies of the plan's trust databases, then drop them. The originals are not
        /// touched; the exit code is the one the real run would give.
        #[arg(long)]
        rehearse: bool,
        /// Also write every event as a JSON line to FILE (`-` for stdout).
        #[arg(long, value_name = "FILE")]
        events: Option<PathBuf>,
        #[command(flatten)]
        reports: ReportArgs,
    },
    /// Continue an interrupted, halted or crashed run from the journal and the databases'
    /// real state. Measures afresh; never reuses a failed window.
    Resume {
        /// The run (default: the latest run that did not complete).
        run: Option<String>,
        /// Do not ask; approve waves marked `approval: required`.
        #[arg(long)]
        yes: bool,
        /// Approve this wave (marked `approval: required`) in advance (repeatable). Without a
        /// terminal, every approval wave still to run needs this or --yes.
        #[arg(long, value_name = "WAVE")]
        approve: Vec<String>,
        /// Try a trust that failed in the run again (repeatable).
        #[arg(long, value_name = "TRUST")]
        retry: Vec<String>,
        /// Leave a trust that failed in the run out of the rest of it (repeatable).
        #[arg(long, value_name = "TRUST")]
        skip: Vec<String>,
        /// Continue even though the plan file or the migrations changed since the run began.
        #[arg(long)]
        allow_changed_plan: bool,
        /// Also write every event as a JSON line to FILE (`-` for stdout).
        #[arg(long, value_name = "FILE")]
        events: Option<PathBuf>,
        #[command(flatten)]
        reports: ReportArgs,
    },
    /// Record that an unfinished run (halted, paused, failed, interrupted, crashed) will not be
    /// continued, and why. It can then no longer be resumed, and no longer blocks a new
    /// rollout; its trusts whose upgrade was never judged to pass are still gated by the next
    /// rollout. Recorded in the journal with your user@host.
    Abandon {
        /// The run (`flotilla status` lists them). Named explicitly: there is no default.
        run: String,
        /// Why it is abandoned (recorded).
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// Roll trusts back with their down migrations, then verify their patient data.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["trust", "wave", "run"])))]
    Rollback {
        /// The plan (its trusts are the only ones that may be touched; its health section
        /// names the integrity tables).
        plan: PathBuf,
        /// A trust to roll back (repeatable).
        #[arg(long, value_name = "TRUST")]
        trust: Vec<String>,
        /// Every trust of a wave of the plan.
        #[arg(long, value_name = "WAVE")]
        wave: Option<String>,
        /// Every trust a run upgraded, each back to the version it had before (unless --to).
        #[arg(long, value_name = "RUN")]
        run: Option<String>,
        /// The release or version to go back to (required with --trust and --wave).
        #[arg(long, value_name = "RELEASE|VERSION")]
        to: Option<String>,
        /// Roll back across migrations marked irreversible.
        #[arg(long)]
        force: bool,
        /// Show what would be reverted; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Clear the dirty mark a failed non-transactional migration left on a trust, after an
    /// operator has checked what it did.
    Repair {
        /// The trust.
        trust: String,
        /// The migration ran to the end: keep its tracking row, clear the mark.
        #[arg(
            long,
            conflicts_with = "not_applied",
            required_unless_present = "not_applied"
        )]
        applied: bool,
        /// It did not: remove its tracking row (and, on Postgres, any invalid index its
        /// failed concurrent build left).
        #[arg(long)]
        not_applied: bool,
    },
    /// Every trust's current version, release and pending migrations.
    Status {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Create the sample estate at release 5.0 with synthetic patients, then roll out
    /// plans/rio-5.1.yaml with the real engine.
    Demo {
        /// Stop after seeding.
        #[arg(long)]
        seed_only: bool,
        /// Synthetic patients per trust.
        #[arg(long, default_value_t = 2000, value_name = "N")]
        patients: usize,
        /// The plan to run after seeding.
        #[arg(long, default_value = "plans/rio-5.1.yaml", value_name = "FILE")]
        plan: PathBuf,
        /// The release the estate is seeded at.
        #[arg(long, default_value = "5.0", value_name = "RELEASE")]
        seed_release: String,
        /// Plant a fault in one trust's upgrade: TRUST:KIND with KIND slow, lost-writes,
        /// data-loss, slow-writes, flaky-writes (one new note in five lost; flaky-writes=5% for
        /// another share) or contention (repeatable).
        #[arg(long, value_name = "TRUST:KIND")]
        inject_regression: Vec<String>,
        /// Run simulated clinicians on every trust of the plan during the rollout (a
        /// `flotilla traffic` child process): RATE actions per second per trust. The report
        /// shows what they experienced and the blast radius of a faulty upgrade.
        #[arg(long, value_name = "RATE", conflicts_with = "seed_only", value_parser = parse_rate)]
        traffic: Option<f64>,
        /// Staff sessions (connections) per trust for --traffic.
        #[arg(long, default_value_t = 4, value_name = "N", requires = "traffic", value_parser = clap::value_parser!(u16).range(1..=64))]
        traffic_sessions: u16,
        #[command(flatten)]
        reports: ReportArgs,
    },
    /// Simulated clinicians: staff sessions open patient records, look at caseloads and save
    /// clinical notes on every trust of a plan (demo databases only), read every saved note
    /// back, and record what they experienced as JSON lines. `demo --traffic` runs it.
    Traffic {
        /// The plan whose trusts to drive.
        #[arg(long, value_name = "FILE")]
        plan: PathBuf,
        /// Only these trusts of the plan (default: all of them).
        trusts: Vec<String>,
        /// Actions per second per trust, over its sessions.
        #[arg(long, default_value = "20", value_name = "RATE", value_parser = parse_rate)]
        rate: f64,
        /// Staff sessions (connections) per trust.
        #[arg(long, default_value_t = 4, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
        sessions: u16,
        /// Where to record (JSON lines; replaced).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Stop after this long (default: run until interrupted).
        #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
        duration: Option<std::time::Duration>,
        /// Also stop when stdin closes (how `demo` stops its child).
        #[arg(long)]
        until_stdin_closes: bool,
        /// How long every trust's sessions run before `ready` is printed.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration, value_name = "DURATION")]
        warm_up: std::time::Duration,
        /// Seed of the random choices.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print flotilla's man page (roff) on stdout, e.g. `flotilla man > flotilla.1`.
    Man,
    /// Run a plan's health checks on trusts now and print the figures.
    ///
    /// Not read-only: the write probe inserts its records into each trust (the plan's
    /// `write_probe.insert`, negative ids), reads them back and removes them again with its
    /// `cleanup`, as a rollout's gate does. Every other probe runs read-only.
    Health {
        /// The plan whose health section to run.
        #[arg(long, value_name = "FILE")]
        plan: PathBuf,
        /// Trusts to check (all trusts of the plan when none are given).
        trusts: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Report on a past run from the journal: a summary, and the JUnit and HTML reports a
    /// rollout writes with --junit and --report-dir.
    Report {
        /// The run id (`flotilla status` lists them), or `latest`.
        run: String,
        #[command(flatten)]
        reports: ReportArgs,
    },
}

/// A positive rate of actions per second, at most 1000.
fn parse_rate(s: &str) -> Result<f64, String> {
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
