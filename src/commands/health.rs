//! `flotilla health --plan PLAN [TRUST...]`: run a plan's health checks on trusts now and print
//! the figures.

use serde_json::json;

use super::{jsonln, outln, Failure, Format, Globals, Outcome};
use crate::exit_codes::ExitCode;
use crate::printable::about_trust;

/// Run a plan's health checks on trusts now and print the figures.
///
/// Not read-only: the write probe inserts its records into each trust (the plan's
/// `write_probe.insert`, negative ids), reads them back and removes them again with its
/// `cleanup`, as a rollout's gate does. Every other probe runs read-only.
#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// The plan whose health section to run.
    #[arg(long, value_name = "FILE")]
    pub plan: std::path::PathBuf,
    /// Trusts to check (all trusts of the plan when none are given).
    pub trusts: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// `flotilla health --plan PLAN [TRUST...]`: measure now and print the figures.
pub async fn run(g: &Globals, args: &HealthArgs) -> Outcome {
    let (plan_path, trusts, format) = (args.plan.as_path(), &args.trusts, args.format);
    use crate::health::gate::loss_statement;
    use crate::health::probes::{draw_params, measure, Rows, Scope};
    use crate::health::stats::percentile;
    let (inventory, _catalogs, plan) = g.load_plan(plan_path)?;
    if plan.health.is_empty() {
        return Err(Failure::config(format!(
            "{} has no health section",
            plan_path.display()
        )));
    }
    let ids: Vec<String> = if trusts.is_empty() {
        plan.trusts().map(str::to_string).collect()
    } else {
        trusts.to_vec()
    };
    let mut selected = Vec::new();
    for id in &ids {
        selected.push(inventory.get(id).ok_or_else(|| {
            Failure::config(format!(
                "unknown trust '{id}' (not in {})",
                inventory.path.display()
            ))
        })?);
    }
    let mut problems = Vec::new();
    let mut reports = Vec::new();
    for trust in selected {
        let params = match draw_params(trust, &plan.health).await {
            Ok(p) => p,
            Err(e) => {
                problems.push(about_trust(&trust.id, &e.to_string()));
                Default::default()
            }
        };
        let snap = measure(
            trust,
            &plan.health,
            &params,
            &Default::default(),
            Rows::Fresh,
            Scope::Full,
            None,
        )
        .await;
        for (name, r) in &snap.latency {
            if let Err(e) = r {
                problems.push(format!("trust '{}': latency probe '{name}': {e}", trust.id));
            }
        }
        let confidence = plan
            .health
            .write_probe
            .as_ref()
            .map_or(0.99, |w| w.confidence(&plan.health.regression));
        match &snap.write {
            Some(Ok(w)) if w.lost > 0 => problems.push(format!(
                "trust '{}': write probe: data not reliably saved: {}: {}",
                trust.id,
                loss_statement(w.writes, w.lost, confidence),
                w.failures.join("; ")
            )),
            Some(Err(e)) => problems.push(format!("trust '{}': write probe: {e}", trust.id)),
            _ => {}
        }
        for (name, r) in &snap.integrity {
            if let Err(e) = r {
                problems.push(format!("trust '{}': integrity of '{name}': {e}", trust.id));
            }
        }
        for inv in &plan.health.invariants {
            match snap.invariants.get(&inv.name) {
                Some(Ok(v)) if *v == inv.expect => {}
                Some(Ok(v)) => problems.push(format!(
                    "trust '{}': invariant '{}' returned {v}, expected {}",
                    trust.id, inv.name, inv.expect
                )),
                Some(Err(e)) => problems.push(format!(
                    "trust '{}': invariant '{}': {e}",
                    trust.id, inv.name
                )),
                None => {}
            }
        }
        if format == Format::Text {
            outln!("{} ({})", trust.id, trust.database.redacted());
            for (name, r) in &snap.latency {
                match r {
                    Ok(s) => {
                        let mut sorted = s.ms.clone();
                        sorted.sort_by(f64::total_cmp);
                        let p = |q| percentile(&sorted, q).unwrap_or(f64::NAN);
                        outln!(
                            "  latency {name}: median {:.3} ms, p95 {:.3} ms, p99 {:.3} ms over {} samples ({} rows)",
                            p(0.5),
                            p(0.95),
                            p(0.99),
                            s.ms.len(),
                            s.rows
                        );
                    }
                    Err(e) => outln!("  latency {name}: ERROR {e}"),
                }
            }
            match &snap.write {
                Some(Ok(w)) => {
                    let mut sorted = w.ms.clone();
                    sorted.sort_by(f64::total_cmp);
                    let p = |q| percentile(&sorted, q).unwrap_or(f64::NAN);
                    outln!(
                        "  write probe: {} writes from {} session{}, median {:.3} ms, p95 {:.3} ms; {}{}; every record removed",
                        w.writes,
                        w.sessions,
                        if w.sessions == 1 { "" } else { "s" },
                        p(0.5),
                        p(0.95),
                        loss_statement(w.writes, w.lost, confidence),
                        if w.lost == 0 { ", read back by another session" } else { "" }
                    );
                    for f in &w.failures {
                        outln!("    LOST: {f}");
                    }
                }
                Some(Err(e)) => outln!("  write probe: ERROR {e}"),
                None => {}
            }
            if let Some(l) = &snap.lock_waits {
                outln!("  {}", l.describe());
            }
            for (name, r) in &snap.integrity {
                match r {
                    Ok(f) => outln!(
                        "  integrity {name}: {} rows ({}), key hash {}",
                        f.rows,
                        snap.coverage
                            .get(name)
                            .map_or_else(|| "every row".to_string(), |c| c.describe()),
                        &f.hash[..16]
                    ),
                    Err(e) => outln!("  integrity {name}: ERROR {e}"),
                }
            }
            for (name, r) in &snap.invariants {
                match r {
                    Ok(v) => outln!("  invariant {name}: {v}"),
                    Err(e) => outln!("  invariant {name}: ERROR {e}"),
                }
            }
        }
        reports.push(json!({ "trust": trust.id, "snapshot": snap }));
    }
    if format == Format::Json {
        jsonln!(json!({ "plan": plan.name, "trusts": reports }));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(
            ExitCode::HealthGate,
            format!("health checks found problems:\n  {}", problems.join("\n  ")),
        ))
    }
}
