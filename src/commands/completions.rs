//! `flotilla completions SHELL` and `flotilla man`: the shell completion script and the man
//! page, generated from the command line's own definition.

use super::{Failure, Globals, Outcome};
use crate::exit_codes::ExitCode;

/// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Print flotilla's man page (roff) on stdout, e.g. `flotilla man > flotilla.1`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {}

/// `flotilla completions SHELL`.
pub async fn run(g: &Globals, args: &CompletionsArgs) -> Outcome {
    let mut cmd = (g.cli)();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut cmd, "flotilla", &mut out);
    Ok(())
}

/// `flotilla man`.
pub async fn man(g: &Globals, _args: &ManArgs) -> Outcome {
    let cmd = (g.cli)();
    let mut out = std::io::stdout().lock();
    clap_mangen::Man::new(cmd)
        .render(&mut out)
        .or_else(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => Ok(()),
            _ => Err(Failure::new(
                ExitCode::Internal,
                format!("cannot write the man page: {e}"),
            )),
        })
}
