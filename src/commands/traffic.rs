//! `flotilla traffic`: simulated clinicians on the trusts of a plan (demo databases only),
//! recorded as JSON lines, then every saved note read back and what they experienced printed.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use super::{parse_rate, print_line, Failure, Globals, Outcome};
use crate::traffic::clinic::{Settings, Sink};
use crate::traffic::HurtRule;

/// Simulated clinicians: staff sessions open patient records, look at caseloads and save
/// clinical notes on every trust of a plan (demo databases only), read every saved note
/// back, and record what they experienced as JSON lines. `demo --traffic` runs it.
#[derive(Debug, clap::Args)]
pub struct TrafficArgs {
    /// The plan whose trusts to drive.
    #[arg(long, value_name = "FILE")]
    pub plan: PathBuf,
    /// Only these trusts of the plan (default: all of them).
    pub trusts: Vec<String>,
    /// Actions per second per trust, over its sessions.
    #[arg(long, default_value = "20", value_name = "RATE", value_parser = parse_rate)]
    pub rate: f64,
    /// Staff sessions (connections) per trust.
    #[arg(long, default_value_t = 4, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub sessions: u16,
    /// Where to record (JSON lines; replaced).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Stop after this long (default: run until interrupted).
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub duration: Option<Duration>,
    /// Also stop when stdin closes (how `demo` stops its child).
    #[arg(long)]
    pub until_stdin_closes: bool,
    /// How long every trust's sessions run before `ready` is printed.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub warm_up: Duration,
    /// Seed of the random choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// `flotilla traffic`: run until interrupted (or `--duration`, or stdin closing), then read
/// every saved note back and print what each trust's clinicians experienced.
pub async fn run(g: &Globals, o: &TrafficArgs) -> Outcome {
    let (inventory, _catalogs, plan) = g.load_plan(&o.plan)?;
    let in_plan: Vec<&str> = plan.trusts().collect();
    for id in &o.trusts {
        if !in_plan.contains(&id.as_str()) {
            return Err(Failure::config(format!(
                "trust '{id}' is not in the plan {}: the traffic only touches the plan's trusts",
                o.plan.display()
            )));
        }
    }
    let trusts: Vec<crate::config::Trust> = in_plan
        .iter()
        .filter(|id| o.trusts.is_empty() || o.trusts.iter().any(|t| t == *id))
        .filter_map(|id| inventory.get(id).cloned())
        .collect();
    crate::traffic::check_demo_databases(&trusts)
        .await
        .map_err(Failure::config)?;
    let file = std::fs::File::create(&o.out).map_err(|e| {
        Failure::config(format!(
            "cannot write the traffic record {}: {e}",
            o.out.display()
        ))
    })?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop_tx = std::sync::Arc::new(stop_tx);
    {
        let tx = stop_tx.clone();
        tokio::spawn(async move {
            crate::session::stop_signal(&mut crate::session::terminate_signal()).await;
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
        sessions: usize::from(o.sessions),
        warm_up: o.warm_up,
        verify_every: Duration::from_millis(500),
        seed: o.seed,
    };
    let sink = Sink::new(Box::new(std::io::BufWriter::new(file)));
    crate::traffic::clinic::run(trusts, settings, sink, stop_rx, || {
        print_line(crate::traffic::READY_LINE);
        let _ = std::io::stdout().flush();
    })
    .await?;
    let records = crate::traffic::record::read(&o.out)?;
    let report =
        crate::traffic::experience(&records, &Default::default(), None, HurtRule::default());
    print_line(crate::report::traffic::text(&report).trim_end());
    Ok(())
}
