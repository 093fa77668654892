//! `flotilla demo`: create the sample estate at a release with synthetic patients (optionally
//! planting faults), then roll out a plan with the real engine; with `--traffic`, simulated
//! clinicians (a `flotilla traffic` child process) work through the rollout and what they
//! experienced is kept under the run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};

use super::{outln, parse_rate, print_line, Failure, Globals, Outcome, ReportArgs};
use crate::config::Plan;
use crate::exit_codes::ExitCode;
use crate::migrations::Catalogs;
use crate::session::{ApproveAll, Request, Start};
use crate::traffic::{Child, HurtRule};

/// Create the sample estate at release 5.0 with synthetic patients, then roll out
/// plans/rio-5.1.yaml with the real engine.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Stop after seeding.
    #[arg(long)]
    pub seed_only: bool,
    /// Synthetic patients per trust.
    #[arg(long, default_value_t = 2000, value_name = "N")]
    pub patients: usize,
    /// The plan to run after seeding.
    #[arg(long, default_value = "plans/rio-5.1.yaml", value_name = "FILE")]
    pub plan: PathBuf,
    /// The release the estate is seeded at.
    #[arg(long, default_value = "5.0", value_name = "RELEASE")]
    pub seed_release: String,
    /// Plant a fault in one trust's upgrade: TRUST:KIND with KIND slow, lost-writes,
    /// data-loss, slow-writes, flaky-writes (one new note in five lost; flaky-writes=5% for
    /// another share) or contention (repeatable).
    #[arg(long, value_name = "TRUST:KIND")]
    pub inject_regression: Vec<String>,
    /// Run simulated clinicians on every trust of the plan during the rollout (a
    /// `flotilla traffic` child process): RATE actions per second per trust. The report
    /// shows what they experienced and the blast radius of a faulty upgrade.
    #[arg(long, value_name = "RATE", conflicts_with = "seed_only", value_parser = parse_rate)]
    pub traffic: Option<f64>,
    /// Staff sessions (connections) per trust for --traffic.
    #[arg(long, default_value_t = 4, value_name = "N", requires = "traffic", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub traffic_sessions: u16,
    #[command(flatten)]
    pub reports: ReportArgs,
}

/// `flotilla demo`.
pub async fn run(g: &Globals, o: &DemoArgs) -> Outcome {
    let (seed_only, patients, plan_path, seed_release, inject) = (
        o.seed_only,
        o.patients,
        o.plan.as_path(),
        o.seed_release.as_str(),
        &o.inject_regression,
    );
    let reports = o.reports.options();
    let (inventory, catalogs) = g.load()?;
    let mut faults = Vec::new();
    for spec in inject {
        let (trust, kind) = spec.split_once(':').ok_or_else(|| {
            Failure::config(format!("--inject-regression '{spec}': expected TRUST:KIND"))
        })?;
        let fault: crate::demo::Fault = kind.parse().map_err(|e: String| Failure::config(e))?;
        let trust = inventory.get(trust).ok_or_else(|| {
            Failure::config(format!("--inject-regression: unknown trust '{trust}'"))
        })?;
        faults.push((trust, fault));
    }
    crate::demo::clear_faults(&inventory.trusts)
        .map_err(|e| Failure::config(format!("cannot clear earlier injected faults: {e}")))?;
    // Reload: the catalogs read above may hold faults planted by an earlier run.
    let catalogs = Catalogs::load(catalogs.base().clone(), &inventory)?;
    let catalog = catalogs.base();
    let version = catalog.release_version(seed_release).ok_or_else(|| {
        Failure::config(format!(
            "release '{seed_release}' is not in {}",
            catalog.releases_path().display()
        ))
    })?;
    // Resolve the plan before seeding, so a broken plan fails before anything is written.
    let plan = if seed_only {
        None
    } else {
        Some(Plan::load(plan_path, &inventory, catalog)?)
    };
    // Runs left unfinished on the estate being replaced are abandoned, on the record.
    crate::unfinished::abandon_before_reseeding(&g.state_location()?, g.lease_ttl).await?;
    let started = Instant::now();
    let results: Vec<(String, Result<crate::demo::Seeded, crate::demo::DemoError>)> =
        stream::iter(&inventory.trusts)
            .map(|t| {
                let catalog = catalogs.for_trust(&t.id);
                async move {
                    (
                        t.id.clone(),
                        crate::demo::seed_trust(t, catalog, version, patients).await,
                    )
                }
            })
            .buffer_unordered(4)
            .collect()
            .await;
    let failures: Vec<String> = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().err().map(|e| format!("  {e}")))
        .collect();
    if !failures.is_empty() {
        return Err(Failure::config(format!(
            "could not seed {} trust(s):\n{}",
            failures.len(),
            failures.join("\n")
        )));
    }
    let notes: usize = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .map(|s| s.notes)
        .sum();
    outln!(
        "seeded {} trusts at release {seed_release} (version {version}): {patients} patients and {} clinical notes each, in {:.1} s",
        inventory.trusts.len(),
        notes / inventory.trusts.len().max(1),
        started.elapsed().as_secs_f64()
    );
    for (trust, fault) in &faults {
        let path = crate::demo::plant_fault(trust, *fault).map_err(Failure::config)?;
        outln!("planted fault in trust {}: {}", trust.id, path.display());
    }
    let catalogs = if faults.is_empty() {
        catalogs
    } else {
        Catalogs::load(catalogs.base().clone(), &inventory)?
    };
    let Some(plan) = plan else {
        return Ok(());
    };
    let operator = ApproveAll("demo".into());
    let location = g.state_location()?;
    let request = |reports| Request {
        state: &location,
        progress: g.progress,
        color: g.color,
        inventory: &inventory,
        catalogs: &catalogs,
        plan: &plan,
        operator: &operator,
        events: None,
        reports,
        start: Start::New,
        lease_ttl: g.lease_ttl,
        rehearsal: false,
        history: None,
        workers: false,
    };
    let Some(rate) = o.traffic else {
        return Ok(crate::session::execute(request(&reports)).await?);
    };
    let traffic = DemoTraffic {
        rate,
        sessions: usize::from(o.traffic_sessions),
    };
    // The clinicians run through the whole rollout; the reports wait until their record is
    // kept under the run.
    let running = start(g, plan_path, traffic, plan.trusts().count(), &reports).await?;
    let run_id = crate::journal::new_run_id();
    let no_reports = crate::report::ReportOptions::default();
    let result = crate::session::execute_as(request(&no_reports), &run_id)
        .await
        .map_err(Failure::from);
    let result = match (finish(g, running, &run_id).await, result) {
        (Ok(()), result) => result,
        (Err(e), Ok(())) => Err(Failure::new(
            ExitCode::Internal,
            format!("the rollout completed, but the clinicians' traffic failed: {e}"),
        )),
        (Err(e), Err(run)) => {
            eprintln!("error: the clinicians' traffic: {e}");
            Err(run)
        }
    };
    if !reports.any() {
        return result;
    }
    let state = g.open_state().await?;
    // The run's own failure keeps its code and message; a report that cannot be written is
    // said too.
    let (code, message) = match &result {
        Ok(()) => (None, String::new()),
        Err(f) => (Some(f.code), f.message.clone()),
    };
    let written = crate::session::write_run_reports(
        &state,
        &run_id,
        &reports,
        match code {
            None => Ok(()),
            Some(code) => Err(crate::session::SessionError::Stopped { code, message }),
        },
    )
    .await;
    state.close().await;
    Ok(written?)
}

/// `demo --traffic RATE`.
#[derive(Debug, Clone, Copy)]
struct DemoTraffic {
    /// Actions per second per trust.
    rate: f64,
    /// Sessions per trust.
    sessions: usize,
}

/// How long the demo's clinicians work before the rollout starts: the first wave's
/// pre-upgrade figures (at 20 actions/s, about 15 saves per trust).
const DEMO_WARM_UP: Duration = Duration::from_secs(3);

/// The demo's traffic while the rollout runs.
struct Running {
    child: Child,
    /// Holds the record when it is not kept with the report.
    _scratch: Option<tempfile::TempDir>,
}

/// Start the traffic on every trust of `plan` and wait until it is running. Its record goes
/// beside the HTML report (`DIR/traffic.jsonl`) when there is one, else to a temporary file.
async fn start(
    g: &Globals,
    plan: &Path,
    t: DemoTraffic,
    trusts: usize,
    reports: &crate::report::ReportOptions,
) -> Result<Running, Failure> {
    reports
        .prepare()
        .map_err(|e| Failure::config(e.to_string()))?;
    let (out, scratch) = match &reports.report_dir {
        Some(dir) => (dir.join("traffic.jsonl"), None),
        None => {
            let dir = tempfile::tempdir().map_err(|e| {
                Failure::new(
                    ExitCode::Internal,
                    format!("cannot make a directory for the traffic record: {e}"),
                )
            })?;
            (dir.path().join("traffic.jsonl"), Some(dir))
        }
    };
    let child = Child::spawn(&crate::traffic::Spawn {
        inventory: &g.inventory,
        plan,
        rate: t.rate,
        sessions: t.sessions,
        out: &out,
        warm_up: DEMO_WARM_UP,
        ready_within: DEMO_WARM_UP + Duration::from_secs(60 + trusts as u64),
    })
    .await
    .map_err(|e| Failure::config(format!("--traffic: {e}; nothing was changed")))?;
    print_line(&format!(
        "traffic: {} actions per second on each of {trusts} trusts, {} sessions each (record: {})",
        t.rate,
        t.sessions,
        out.display()
    ));
    Ok(Running {
        child,
        _scratch: scratch,
    })
}

/// After the rollout: keep the traffic running a moment (the last wave's trusts upgraded),
/// stop it, and keep and print what the clinicians experienced under run `run_id`.
async fn finish(g: &Globals, running: Running, run_id: &str) -> Result<(), String> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let out = running.child.out.clone();
    let stopped = running.child.stop(Duration::from_secs(120)).await;
    let state = g.open_state().await.map_err(|f| f.message)?;
    let result = async {
        if state
            .run(run_id)
            .await
            .map_err(|e| e.to_string())?
            .is_none()
        {
            // Refused before it was recorded: nothing ran under the traffic.
            return Ok(None);
        }
        crate::traffic::import(&state, run_id, &out, HurtRule::default())
            .await
            .map(Some)
    }
    .await;
    state.close().await;
    drop(running._scratch);
    let report = result?;
    if let Some(report) = &report {
        print_line(crate::report::traffic::text(report).trim_end());
    }
    stopped
}
