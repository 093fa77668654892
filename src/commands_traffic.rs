//! `flotilla traffic` (simulated clinicians), and `demo --traffic RATE`: start the traffic as a
//! child process before the rollout, stop it after, keep what the clinicians experienced in the
//! state database under the run, print it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::commands::{print_line, Failure, Globals, Outcome};
use crate::exit_codes::ExitCode;
use crate::traffic::clinic::{Settings, Sink};
use crate::traffic::{Child, HurtRule};

/// `flotilla traffic` options.
#[derive(Debug, Clone)]
pub struct TrafficOptions {
    /// The plan whose trusts to drive.
    pub plan: PathBuf,
    /// Only these trusts of the plan (empty: all).
    pub trusts: Vec<String>,
    /// Actions per second per trust.
    pub rate: f64,
    /// Sessions per trust.
    pub sessions: usize,
    /// The record file.
    pub out: PathBuf,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Stop when stdin closes.
    pub until_stdin_closes: bool,
    /// Warm-up before `ready`.
    pub warm_up: Duration,
    /// Seed.
    pub seed: u64,
}

/// `demo --traffic RATE`.
#[derive(Debug, Clone, Copy)]
pub struct DemoTraffic {
    /// Actions per second per trust.
    pub rate: f64,
    /// Sessions per trust.
    pub sessions: usize,
}

/// `flotilla traffic`: run until interrupted (or `--duration`, or stdin closing), then read
/// every saved note back and print what each trust's clinicians experienced.
pub async fn traffic(g: &Globals, o: &TrafficOptions) -> Outcome {
    let (inventory, _catalogs, plan) = g.load_plan(&o.plan)?;
    let in_plan: Vec<&str> = plan.trusts().collect();
    for id in &o.trusts {
        if !in_plan.contains(&id.as_str()) {
            return Err(Failure::new(
                ExitCode::Config,
                format!(
                    "trust '{id}' is not in the plan {}: the traffic only touches the plan's trusts",
                    o.plan.display()
                ),
            ));
        }
    }
    let trusts: Vec<crate::config::Trust> = in_plan
        .iter()
        .filter(|id| o.trusts.is_empty() || o.trusts.iter().any(|t| t == *id))
        .filter_map(|id| inventory.get(id).cloned())
        .collect();
    crate::traffic::check_demo_databases(&trusts)
        .await
        .map_err(|e| Failure::new(ExitCode::Config, e))?;
    let file = std::fs::File::create(&o.out).map_err(|e| {
        Failure::new(
            ExitCode::Config,
            format!("cannot write the traffic record {}: {e}", o.out.display()),
        )
    })?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop_tx = std::sync::Arc::new(stop_tx);
    {
        let tx = stop_tx.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            match term.as_mut() {
                Some(t) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = t.recv() => {}
                    }
                }
                None => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
            let _ = tx.send(true);
        });
    }
    if let Some(d) = o.duration {
        let tx = stop_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            let _ = tx.send(true);
        });
    }
    if o.until_stdin_closes {
        let tx = stop_tx.clone();
        // A blocking read on its own thread: it returns when the parent closes the pipe (or
        // dies), which is the signal to stop.
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 256];
            while matches!(std::io::stdin().read(&mut buf), Ok(n) if n > 0) {}
            let _ = tx.send(true);
        });
    }
    let settings = Settings {
        rate: o.rate,
        sessions: o.sessions,
        warm_up: o.warm_up,
        verify_every: Duration::from_millis(500),
        seed: o.seed,
    };
    let sink = Sink::new(Box::new(std::io::BufWriter::new(file)));
    crate::traffic::clinic::run(trusts, settings, sink, stop_rx, || {
        print_line(crate::traffic::READY_LINE);
        let _ = std::io::stdout().flush();
    })
    .await
    .map_err(|e| Failure::new(ExitCode::Internal, e.to_string()))?;
    let records = crate::traffic::record::read(&o.out)
        .map_err(|e| Failure::new(ExitCode::Internal, e.to_string()))?;
    let report =
        crate::traffic::experience(&records, &Default::default(), None, HurtRule::default());
    print_line(crate::report::traffic::text(&report).trim_end());
    Ok(())
}

/// How long the demo's clinicians work before the rollout starts: the first wave's
/// pre-upgrade figures (at 20 actions/s, about 15 saves per trust).
const DEMO_WARM_UP: Duration = Duration::from_secs(3);

/// The demo's traffic while the rollout runs.
pub(crate) struct Running {
    child: Child,
    /// Holds the record when it is not kept with the report.
    _scratch: Option<tempfile::TempDir>,
}

/// Start the traffic on every trust of `plan` and wait until it is running. Its record goes
/// beside the HTML report (`DIR/traffic.jsonl`) when there is one, else to a temporary file.
pub(crate) async fn start(
    g: &Globals,
    plan: &Path,
    t: DemoTraffic,
    trusts: usize,
    reports: &crate::report::ReportOptions,
) -> Result<Running, Failure> {
    reports
        .prepare()
        .map_err(|e| Failure::new(ExitCode::Config, e.to_string()))?;
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
    .map_err(|e| {
        Failure::new(
            ExitCode::Config,
            format!("--traffic: {e}; nothing was changed"),
        )
    })?;
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
pub(crate) async fn finish(g: &Globals, running: Running, run_id: &str) -> Result<(), String> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let out = running.child.out.clone();
    let stopped = running.child.stop(Duration::from_secs(120)).await;
    let state = crate::operate::open_state(g).await.map_err(|f| f.message)?;
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
