//! `flotilla resume [RUN]`: continue an unfinished run from its journal and the databases'
//! real state, with the operator's decision (`--retry`/`--skip`) for each trust that failed.

use std::path::{Path, PathBuf};

use super::prompt::Prompt;
use super::{Failure, Globals, Outcome, ReportArgs};
use crate::config::Plan;
use crate::journal::replay::replay;
use crate::session::{execute, migrations_sha256, plan_sha256, Operator, Request, Start};

/// Continue an interrupted, halted or crashed run from the journal and the databases'
/// real state. Measures afresh; never reuses a failed window.
#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    /// The run (default: the latest run that did not complete).
    pub run: Option<String>,
    /// Do not ask; approve waves marked `approval: required`.
    #[arg(long)]
    pub yes: bool,
    /// Approve this wave (marked `approval: required`) in advance (repeatable). Without a
    /// terminal, every approval wave still to run needs this or --yes.
    #[arg(long, value_name = "WAVE")]
    pub approve: Vec<String>,
    /// Try a trust that failed in the run again (repeatable).
    #[arg(long, value_name = "TRUST")]
    pub retry: Vec<String>,
    /// Leave a trust that failed in the run out of the rest of it (repeatable).
    #[arg(long, value_name = "TRUST")]
    pub skip: Vec<String>,
    /// Continue even though the plan file or the migrations changed since the run began.
    #[arg(long)]
    pub allow_changed_plan: bool,
    /// Also write every event as a JSON line to FILE (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Coordinate `flotilla worker` processes (as `rollout --workers`). A run that was
    /// rolled out on workers is resumed on workers without it.
    #[arg(long)]
    pub workers: bool,
    #[command(flatten)]
    pub reports: ReportArgs,
}

/// `flotilla resume [RUN]`.
pub async fn run(g: &Globals, o: &ResumeArgs) -> Outcome {
    let Some(state) = g.open_state_read_only().await? else {
        return Err(Failure::config(format!(
            "no run to resume: nothing is recorded at {} (see --state)",
            g.state_location()?.display()
        )));
    };
    state.close().await;
    let state = g.open_state().await?;
    let runs = state.runs().await?;
    let record = match &o.run {
        Some(id) => runs.iter().find(|r| &r.run_id == id).ok_or_else(|| {
            Failure::config(format!(
                "no run '{id}' in the state database {}",
                state.location()
            ))
        })?,
        None => runs.iter().find(|r| r.resumable()).ok_or_else(|| {
            Failure::config(format!(
                "no run to resume in the state database {}",
                state.location()
            ))
        })?,
    };
    if !record.resumable() {
        return Err(Failure::config(format!(
            "run {} is {}: there is nothing to resume",
            record.run_id, record.status
        )));
    }
    let (inventory, catalogs) = g.load()?;
    let mut plan = Plan::load(Path::new(&record.plan_path), &inventory, catalogs.base())?;
    if !o.allow_changed_plan {
        let now = plan_sha256(&plan)?;
        if now != record.plan_sha256 {
            return Err(Failure::config(format!(
                    "{} changed since run {} began (sha256 {} → {}); review it, then pass --allow-changed-plan",
                    record.plan_path,
                    record.run_id,
                    &record.plan_sha256[..12],
                    &now[..12]
                ),
            ));
        }
        let now = migrations_sha256(&catalogs, &plan);
        if now != record.migrations_sha256 {
            return Err(Failure::config(format!(
                    "the migrations changed since run {} began; review them, then pass --allow-changed-plan",
                    record.run_id
                ),
            ));
        }
    }
    let events = state.events(&record.run_id).await?;
    let mut reading = replay(&events);
    for id in o.retry.iter().chain(&o.skip) {
        if !reading.failed.contains_key(id) {
            return Err(Failure::config(format!(
                "trust '{id}' did not fail in run {} (failed: {})",
                record.run_id,
                if reading.failed.is_empty() {
                    "none".to_string()
                } else {
                    reading
                        .failed
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )));
        }
    }
    let undecided: Vec<String> = reading
        .failed
        .iter()
        .filter(|(t, _)| !o.retry.contains(t) && !o.skip.contains(t))
        .map(|(t, why)| format!("  {t}: {why}"))
        .collect();
    if !undecided.is_empty() {
        return Err(Failure::config(format!(
            "run {} has failed trusts; say for each whether to --retry it or --skip it:\n{}",
            record.run_id,
            undecided.join("\n")
        )));
    }
    for id in &o.skip {
        for w in &mut plan.waves {
            w.trusts.retain(|t| t != id);
        }
    }
    for id in &o.retry {
        reading.resumed.checked.remove(id);
    }
    // Recorded with who decided, when the run is reopened.
    let decisions: Vec<(String, &'static str)> = o
        .retry
        .iter()
        .map(|t| (t.clone(), "retry"))
        .chain(o.skip.iter().map(|t| (t.clone(), "skip")))
        .collect();
    let prompt = Prompt::new(o.yes, &o.approve, &plan)?;
    prompt
        .require_in_advance(
            &mut plan
                .waves
                .iter()
                .filter(|w| {
                    w.approval == crate::config::plan::Approval::Required
                        && !reading.resumed.passed_waves.contains(&w.name)
                })
                .map(|w| w.name.as_str()),
        )
        .map_err(Failure::config)?;
    // A run rolled out on workers goes on on workers (the queue knows its jobs).
    let workers = o.workers
        || match crate::workers::queue::Queue::of(&state) {
            Ok(q) => q.has_jobs(&record.run_id).await?,
            Err(_) => false,
        };
    if workers
        && !matches!(
            g.state_location()?,
            crate::journal::StateLocation::Postgres(_)
        )
    {
        return Err(Failure::config(crate::workers::queue::NEEDS_POSTGRES));
    }
    state.close().await;
    let unfinished = reading.unfinished_rollbacks.clone();
    let location = g.state_location()?;
    let reports = o.reports.options();
    Ok(execute(Request {
        state: &location,
        progress: g.progress,
        color: g.color,
        inventory: &inventory,
        catalogs: &catalogs,
        plan: &plan,
        operator: &prompt,
        events: o.events.as_deref(),
        reports: &reports,
        start: Start::Resume {
            record,
            resumed: reading.resumed,
            unfinished_rollbacks: unfinished,
            decisions,
        },
        lease_ttl: g.lease_ttl,
        rehearsal: false,
        history: None,
        workers,
    })
    .await?)
}
