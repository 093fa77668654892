//! The `flotilla` binary: parse arguments, install tracing, run the command, map the result to
//! a documented exit code.

use std::io::IsTerminal;
use std::process::ExitCode as StdExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use flotilla::cli::{Cli, Command, LogFormat};
use flotilla::commands::{self, Globals};
use flotilla::ExitCode;

/// `NO_COLOR` set to anything but the empty string turns colour off (no-color.org).
fn color_allowed() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn install_tracing(cli: &Cli) {
    let default = match cli.verbose {
        0 => "warn",
        1 => "warn,flotilla=debug",
        _ => "info,flotilla=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| SafeStderr);
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal() && color_allowed())
            .init(),
    }
}

/// Diagnostics go to stderr scrubbed of secrets (tracing-subscriber already escapes control
/// characters in the values it formats).
struct SafeStderr;

impl std::io::Write for SafeStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let safe = flotilla::secrets::scrub(&text);
        std::io::Write::write_all(&mut std::io::stderr().lock(), safe.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::Write::flush(&mut std::io::stderr())
    }
}

fn main() -> StdExitCode {
    let cli = Cli::parse();
    install_tracing(&cli);
    // `--state` is checked before anything else, and a refusal never repeats the value (a
    // mistyped connection string may hold a password).
    if let Err(message) = flotilla::journal::StateLocation::parse(&cli.state) {
        eprintln!("error: {}", flotilla::printable::for_output(&message));
        return ExitCode::Config.into();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::Internal.into();
        }
    };
    let globals = Globals {
        inventory: cli.inventory.clone(),
        migrations: cli.migrations.clone(),
        state: cli.state.clone(),
        lease_ttl: cli.lease_ttl,
        progress: !cli.no_progress && std::io::stdout().is_terminal(),
        color: color_allowed(),
    };
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Validate { plan } => commands::validate(&globals, plan.as_deref()).await,
            Command::Lint { dialect, format } => {
                let dialect = dialect.map(|d| match d {
                    flotilla::cli::LintDialect::Postgres => flotilla::db::Dialect::Postgres,
                    flotilla::cli::LintDialect::Sqlite => flotilla::db::Dialect::Sqlite,
                });
                flotilla::commands_lint::lint(&globals, dialect, *format).await
            }
            Command::Plan { plan, format, sql } => {
                commands::plan(&globals, plan, *format, *sql).await
            }
            Command::Rollout {
                plan,
                yes,
                approve,
                dry_run,
                rehearse,
                events,
                reports,
            } => {
                let how = if *dry_run {
                    commands::RolloutMode::DryRun
                } else if *rehearse {
                    commands::RolloutMode::Rehearse
                } else {
                    commands::RolloutMode::Real
                };
                commands::rollout(
                    &globals,
                    plan,
                    how,
                    *yes,
                    approve,
                    events.as_deref(),
                    &reports.options(),
                )
                .await
            }
            Command::Resume {
                run,
                yes,
                approve,
                retry,
                skip,
                allow_changed_plan,
                events,
                reports,
            } => {
                flotilla::operate::resume(
                    &globals,
                    &flotilla::operate::ResumeOptions {
                        run: run.clone(),
                        yes: *yes,
                        approve: approve.clone(),
                        retry: retry.clone(),
                        skip: skip.clone(),
                        allow_changed_plan: *allow_changed_plan,
                        events: events.clone(),
                        reports: reports.options(),
                    },
                )
                .await
            }
            Command::Rollback {
                plan,
                trust,
                wave,
                run,
                to,
                force,
                dry_run,
                yes,
            } => {
                flotilla::operate::rollback(
                    &globals,
                    &flotilla::operate::RollbackOptions {
                        plan: plan.clone(),
                        trusts: trust.clone(),
                        wave: wave.clone(),
                        run: run.clone(),
                        to: to.clone(),
                        force: *force,
                        dry_run: *dry_run,
                        yes: *yes,
                    },
                )
                .await
            }
            Command::Abandon { run, reason } => {
                flotilla::unfinished::abandon(&globals, run, reason).await
            }
            Command::Repair {
                trust,
                applied,
                not_applied: _,
            } => flotilla::operate::repair(&globals, trust, *applied).await,
            Command::Status { format } => commands::status(&globals, *format).await,
            Command::Demo {
                seed_only,
                patients,
                plan,
                seed_release,
                inject_regression,
                traffic,
                traffic_sessions,
                reports,
            } => {
                commands::demo(
                    &globals,
                    &commands::DemoOptions {
                        seed_only: *seed_only,
                        patients: *patients,
                        plan,
                        seed_release,
                        inject: inject_regression,
                        traffic: traffic.map(|rate| flotilla::commands_traffic::DemoTraffic {
                            rate,
                            sessions: usize::from(*traffic_sessions),
                        }),
                        reports: reports.options(),
                    },
                )
                .await
            }
            Command::Traffic {
                plan,
                trusts,
                rate,
                sessions,
                out,
                duration,
                until_stdin_closes,
                warm_up,
                seed,
            } => {
                flotilla::commands_traffic::traffic(
                    &globals,
                    &flotilla::commands_traffic::TrafficOptions {
                        plan: plan.clone(),
                        trusts: trusts.clone(),
                        rate: *rate,
                        sessions: usize::from(*sessions),
                        out: out.clone(),
                        duration: *duration,
                        until_stdin_closes: *until_stdin_closes,
                        warm_up: *warm_up,
                        seed: *seed,
                    },
                )
                .await
            }
            Command::Health {
                plan,
                trusts,
                format,
            } => commands::health(&globals, plan, trusts, *format).await,
            Command::Completions { shell } => commands::completions(*shell),
            Command::Man => commands::man_page(),
            Command::Report { run, reports } => {
                commands::report(&globals, run, &reports.options()).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::Success.into(),
        Err(failure) => {
            eprintln!(
                "error: {}",
                flotilla::printable::for_output(&failure.message)
            );
            failure.code.into()
        }
    }
}
