//! `flotilla report RUN`: a past run from the journal, summarised, and the JUnit and HTML
//! reports a rollout writes. Never creates or changes a state database.

use super::{outln, Failure, Globals, Outcome, ReportArgs};

/// Report on a past run from the journal: a summary, and the JUnit and HTML reports a
/// rollout writes with --junit and --report-dir.
#[derive(Debug, clap::Args)]
pub struct ReportRunArgs {
    /// The run id (`flotilla status` lists them), or `latest`.
    pub run: String,
    #[command(flatten)]
    pub reports: ReportArgs,
}

/// `flotilla report RUN`: a past run from the journal. Never creates a state database.
pub async fn run(g: &Globals, args: &ReportRunArgs) -> Outcome {
    let (run, reports) = (args.run.as_str(), &args.reports.options());
    // Read-only: nothing is created or written (an empty file, a read-only mount).
    let Some(state) = g.open_state_read_only().await? else {
        return Err(Failure::config(format!(
            "no state database at {}: no run has been recorded there (see --state)",
            g.state_location()?.display()
        )));
    };
    let result = match reports.prepare() {
        Ok(()) => report_from(&state, run, reports).await,
        Err(e) => Err(Failure::from(e)),
    };
    state.close().await;
    result
}

async fn report_from(
    state: &crate::journal::StateDb,
    run: &str,
    reports: &crate::report::ReportOptions,
) -> Outcome {
    let run_id = if run == "latest" {
        match state.runs().await?.first() {
            Some(r) => r.run_id.clone(),
            None => {
                return Err(Failure::config(format!(
                    "no run recorded in the state database {}",
                    state.location()
                )))
            }
        }
    } else {
        run.to_string()
    };
    let model = crate::report::RunReport::load(state, &run_id)
        .await
        .map_err(|e| match e {
            crate::report::ModelError::NoRun { .. } => {
                Failure::config(format!("{e} (`flotilla status` lists the recent runs)"))
            }
            other => Failure::config(other.to_string()),
        })?;
    outln!("{}", crate::report::summary(&model).trim_end());
    let written = crate::report::write(&model, reports)?;
    for path in written {
        outln!("wrote {}", path.display());
    }
    Ok(())
}
