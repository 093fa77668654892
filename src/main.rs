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
        cli: <Cli as clap::CommandFactory>::command,
    };
    let g = &globals;
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Validate(a) => commands::validate::run(g, a).await,
            Command::Lint(a) => commands::lint::run(g, a).await,
            Command::Plan(a) => commands::plan::run(g, a).await,
            Command::Rollout(a) => commands::rollout::run(g, a).await,
            Command::Resume(a) => commands::resume::run(g, a).await,
            Command::Abandon(a) => commands::abandon::run(g, a).await,
            Command::Rollback(a) => commands::rollback::run(g, a).await,
            Command::Adopt(a) => commands::adopt::run(g, a).await,
            Command::Repair(a) => commands::repair::run(g, a).await,
            Command::Status(a) => commands::status::run(g, a).await,
            Command::Demo(a) => commands::demo::run(g, a).await,
            Command::Traffic(a) => commands::traffic::run(g, a).await,
            Command::Completions(a) => commands::completions::run(g, a).await,
            Command::Man(a) => commands::completions::man(g, a).await,
            Command::Health(a) => commands::health::run(g, a).await,
            Command::Report(a) => commands::report::run(g, a).await,
            Command::Worker(a) => commands::worker::run(g, a).await,
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
