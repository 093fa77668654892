//! `flotilla worker --state postgres://...`: run the jobs of rollouts coordinated by
//! `rollout --workers` (see `crate::workers`), from this checkout, until stopped.

use std::time::Duration;

use super::{Failure, Globals, Outcome};
use crate::journal::StateLocation;
use crate::workers::queue::NEEDS_POSTGRES;
use crate::workers::worker::{parse_labels, Options, Worker};

/// Run the trust jobs of rollouts coordinated through the shared state database.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// This worker's name, unique among the live workers (default: HOST-PID).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// A label of this worker (repeatable): it runs the jobs of a trust whose inventory
    /// `runner:` labels are all among its own.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// How many jobs it runs at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: u32,
    /// How long its claims last without a heartbeat (it heartbeats every second): after this,
    /// the jobs of a worker that died go back to the queue.
    #[arg(long, default_value = "10s", value_parser = parse_ttl, value_name = "DURATION")]
    pub ttl: Duration,
    /// Exit (0) once no run is running and no job is queued or claimed.
    #[arg(long)]
    pub once: bool,
}

/// `--ttl`: at least 2 s (a heartbeat must land well within it).
fn parse_ttl(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d < Duration::from_secs(2) {
        return Err("a TTL shorter than 2s expires between a worker's heartbeats".into());
    }
    Ok(d)
}

/// `flotilla worker`.
pub async fn run(g: &Globals, a: &WorkerArgs) -> Outcome {
    if !matches!(g.state_location()?, StateLocation::Postgres(_)) {
        return Err(Failure::config(NEEDS_POSTGRES));
    }
    let labels = parse_labels(&a.labels).map_err(Failure::config)?;
    let name = a.name.clone().unwrap_or_else(|| {
        format!(
            "{}-{}",
            crate::journal::lease::host_name(),
            std::process::id()
        )
    });
    if name.trim().is_empty() {
        return Err(Failure::config("--name is empty"));
    }
    let (inventory, catalogs) = g.load()?;
    let state = g.open_state().await?;
    let options = Options {
        name,
        labels,
        concurrency: usize::try_from(a.concurrency).unwrap_or(1),
        ttl: a.ttl,
        once: a.once,
    };
    let worker = Worker::new(
        options,
        std::sync::Arc::new(inventory),
        std::sync::Arc::new(catalogs),
        state.clone(),
    )
    .map_err(|e| Failure::new(e.code, e.message))?;
    let result = worker.serve().await;
    state.close().await;
    result.map_err(|e| Failure::new(e.code, e.message))
}
