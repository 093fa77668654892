//! `flotilla rollout PLAN`: roll a plan out for real (under the lease, through the session), print
//! its statements (`--dry-run`), or rehearse it on disposable copies (`--rehearse`).

use std::path::PathBuf;

use super::prompt::Prompt;
use super::{Globals, Outcome, ReportArgs};
use crate::engine::preflight;
use crate::report::plan::{blocked, print_plan_sql};

/// Roll a plan out, wave by wave.
#[derive(Debug, clap::Args)]
pub struct RolloutArgs {
    /// The plan file.
    pub plan: PathBuf,
    /// Do not ask for confirmation; approve waves marked `approval: required`.
    #[arg(long)]
    pub yes: bool,
    /// Approve this wave (marked `approval: required`) in advance (repeatable). Without a
    /// terminal, every approval wave needs this or --yes.
    #[arg(long, value_name = "WAVE")]
    pub approve: Vec<String>,
    /// Print, per wave and trust, every statement the rollout would run (flotilla's own
    /// lock and tracking statements included) and change nothing.
    #[arg(long, conflicts_with_all = ["rehearse", "yes", "approve", "events", "junit", "report_dir"])]
    pub dry_run: bool,
    /// Run the whole plan (migrations, health gates, policy, rollbacks) on disposable
    /// copies of the plan's trust databases, then drop them. The originals are not
    /// touched; the exit code is the one the real run would give.
    #[arg(long)]
    pub rehearse: bool,
    /// Also write every event as a JSON line to FILE (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Coordinate `flotilla worker` processes instead of touching the trust databases from
    /// here: every piece of work on a trust (reading it, baselines, migrations, gate windows,
    /// rollbacks) is a job a worker that can reach the trust runs. Needs a shared PostgreSQL
    /// state database (--state postgres://...).
    #[arg(long, conflicts_with_all = ["dry_run", "rehearse"])]
    pub workers: bool,
    #[command(flatten)]
    pub reports: ReportArgs,
}

/// `flotilla rollout PLAN`.
pub async fn run(g: &Globals, args: &RolloutArgs) -> Outcome {
    let (inventory, catalogs, plan) = g.load_plan(&args.plan)?;
    let reports = args.reports.options();
    let events = args.events.as_deref();
    if args.dry_run {
        // The rendered plan, never a flag threaded through execution: the same read-only
        // preflight as `plan --sql`, so nothing is written anywhere.
        let planned = preflight(&inventory, &catalogs, &plan).await.plan;
        print_plan_sql(&planned, &catalogs, &inventory);
        return Ok(blocked(&planned)?);
    }
    if args.rehearse {
        let estate_state = g.state_location()?;
        return Ok(crate::rehearse::rehearse(&crate::rehearse::Rehearsal {
            estate_state: &estate_state,
            progress: g.progress,
            color: g.color,
            lease_ttl: g.lease_ttl,
            inventory: &inventory,
            catalogs: &catalogs,
            plan: &plan,
            events,
            reports: &reports,
        })
        .await?);
    }
    let state = g.state_location()?;
    if args.workers && !matches!(state, crate::journal::StateLocation::Postgres(_)) {
        return Err(super::Failure::config(
            crate::workers::queue::NEEDS_POSTGRES,
        ));
    }
    let prompt = Prompt::new(args.yes, &args.approve, &plan)?;
    Ok(crate::session::execute(crate::session::Request {
        state: &state,
        progress: g.progress,
        color: g.color,
        inventory: &inventory,
        catalogs: &catalogs,
        plan: &plan,
        operator: &prompt,
        events,
        reports: &reports,
        start: crate::session::Start::New,
        lease_ttl: g.lease_ttl,
        rehearsal: false,
        history: None,
        workers: args.workers,
    })
    .await?)
}
