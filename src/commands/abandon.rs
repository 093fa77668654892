//! `flotilla abandon RUN --reason TEXT`: an operator's recorded decision that an unfinished run
//! will not be continued.

use super::{Failure, Globals, Outcome};
use crate::journal::StateDb;
use crate::unfinished::{abandon_in, Settle};

/// Record that an unfinished run (halted, paused, failed, interrupted, crashed) will not be
/// continued, and why. It can then no longer be resumed, and no longer blocks a new
/// rollout; its trusts whose upgrade was never judged to pass are still gated by the next
/// rollout. Recorded in the journal with your user@host.
#[derive(Debug, clap::Args)]
pub struct AbandonArgs {
    /// The run (`flotilla status` lists them). Named explicitly: there is no default.
    pub run: String,
    /// Why it is abandoned (recorded).
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
}

/// `flotilla abandon RUN --reason TEXT`: under the estate lease (a live run cannot be
/// abandoned), settle what the run left in flight (open steps from the databases' real state,
/// write-probe records removed), record `run_abandoned` with who and why, and mark the run
/// `abandoned`.
pub async fn run(g: &Globals, args: &AbandonArgs) -> Outcome {
    let reason = args.reason.trim();
    if reason.is_empty() {
        return Err(Failure::config(
            "--reason must say why the run is abandoned (it is recorded with your name)",
        ));
    }
    let location = g.state_location()?;
    let Some(state) = StateDb::open_read_only(&location).await? else {
        return Err(Failure::config(format!(
            "no run recorded at {}: nothing to abandon",
            location.display()
        )));
    };
    state.close().await;
    let state = StateDb::open(&location).await?;
    let result = abandon_in(
        &state,
        g.lease_ttl,
        &args.run,
        reason,
        Settle::FromDatabases {
            inventory: &g.inventory,
            migrations: &g.migrations,
        },
    )
    .await;
    state.close().await;
    Ok(result?)
}
