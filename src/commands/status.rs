//! `flotilla status`: every trust's version, release and pending migrations, the recent runs
//! (with what each unfinished one waits for) and the lease.

use std::collections::HashMap;

use futures::stream::{self, StreamExt};
use serde_json::json;

use super::{jsonln, outln, Failure, Format, Globals, Outcome};
use crate::engine::{read_state, READ_CONCURRENCY};
use crate::journal::replay::replay;
use crate::journal::StateDb;
use crate::unfinished::Unfinished;

/// Every trust's current version, release and pending migrations.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// `flotilla status`.
pub async fn run(g: &Globals, args: &StatusArgs) -> Outcome {
    let format = args.format;
    let (inventory, catalogs) = g.load()?;
    let catalog = catalogs.base();
    let states: HashMap<String, crate::plan::TrustState> = stream::iter(&inventory.trusts)
        .map(|t| async move { (t.id.clone(), read_state(t).await) })
        .buffer_unordered(READ_CONCURRENCY)
        .collect()
        .await;
    let mut first_error = None;
    let rows: Vec<serde_json::Value> = inventory
        .trusts
        .iter()
        .map(|t| {
            let (version, error) = match states.get(&t.id) {
                Some(Ok(applied)) => (applied.iter().map(|a| a.version).max(), None),
                Some(Err(b)) => {
                    first_error.get_or_insert(b.exit_code());
                    (None, Some(b.to_string()))
                }
                None => (None, Some("not read".to_string())),
            };
            let own = catalogs.for_trust(&t.id);
            let pending = match (&error, own.latest()) {
                (None, Some(l)) => Some(own.range(version, l).count()),
                (None, None) => Some(0),
                (Some(_), _) => None,
            };
            json!({
                "id": t.id,
                "name": t.name,
                "region": t.region,
                "version": version,
                "release": if error.is_some() { None } else { Some(catalog.describe(version)) },
                "pending": pending,
                "error": error,
            })
        })
        .collect();
    let runs = overview(g, 10).await?;
    match format {
        Format::Json => {
            let mut v = json!({
                "latest_version": catalog.latest(),
                "trusts": rows,
                "runs": runs["runs"],
                "lease": runs["lease"],
            });
            if let Some(workers) = runs.get("workers") {
                v["workers"] = workers.clone();
            }
            jsonln!(v)
        }
        Format::Text => {
            outln!(
                "{:<24} {:<8} {:>7}  {:<8} {:>7}",
                "TRUST",
                "REGION",
                "VERSION",
                "RELEASE",
                "PENDING"
            );
            for r in &rows {
                let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
                match r["error"].as_str() {
                    Some(e) => outln!("{:<24} {:<8} {e}", s("id"), s("region")),
                    None => outln!(
                        "{:<24} {:<8} {:>7}  {:<8} {:>7}",
                        s("id"),
                        s("region"),
                        // The version as the migrations write it (`0130`,
                        // `2014-11-27-000000`, `1.2`); JSON keeps the number.
                        r["version"]
                            .as_i64()
                            .map_or("-".into(), |v| catalogs.for_trust(&s("id")).label(v)),
                        s("release"),
                        r["pending"]
                    ),
                }
            }
            print_runs(&runs);
            print_workers(&runs);
        }
    }
    match first_error {
        None => Ok(()),
        Some(code) => Err(Failure::new(
            code,
            "some trusts could not be read (see above)",
        )),
    }
}

fn print_runs(overview: &serde_json::Value) {
    let s = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or("-").to_string();
    let runs = overview["runs"].as_array().cloned().unwrap_or_default();
    outln!();
    if runs.is_empty() {
        outln!("RUNS: none recorded");
    } else {
        outln!("RUNS (newest first)");
    }
    for r in &runs {
        let wave = r["current_wave"]
            .as_str()
            .map(|w| format!(", last wave {w}"))
            .unwrap_or_default();
        outln!(
            "  {}  {}  {}  (attempts {}, started {} by {}{wave})",
            s(r, "run_id"),
            s(r, "plan"),
            s(r, "status").to_uppercase(),
            r["attempts"],
            s(r, "started_at"),
            s(r, "started_by"),
        );
        if s(r, "status") == "abandoned" {
            outln!("      {}", s(r, "reason"));
        }
        for f in r["failed_trusts"].as_array().into_iter().flatten() {
            outln!("      ✗ {}: {}", s(f, "trust"), s(f, "reason"));
        }
        let next: Vec<&str> = r["next"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n.as_str())
            .collect();
        if !next.is_empty() {
            outln!("      waiting for a decision: {}", next.join("  |  "));
        }
    }
    match overview["lease"].as_object() {
        None => outln!("LEASE: free"),
        Some(l) => {
            let l = serde_json::Value::Object(l.clone());
            outln!(
                "LEASE: held by run {} ({}@{}, pid {}, since {}){}",
                s(&l, "run_id"),
                s(&l, "user"),
                s(&l, "host"),
                l["pid"],
                s(&l, "since"),
                if l["expired"].as_bool() == Some(true) {
                    " — expired: the next run may take it"
                } else {
                    ""
                }
            );
        }
    }
}

/// The workers of a shared (PostgreSQL) state database: name, labels, last heartbeat, live,
/// stopped or gone, jobs in flight.
fn print_workers(overview: &serde_json::Value) {
    let Some(workers) = overview["workers"].as_array() else {
        return;
    };
    if workers.is_empty() {
        return;
    }
    outln!();
    outln!("WORKERS");
    for w in workers {
        let labels: Vec<String> = w["labels"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect();
        let age = w["heartbeat_age_ms"].as_i64().unwrap_or(0) as f64 / 1000.0;
        outln!(
            "  {:<16} {:<7} {{{}}}  {} (pid {}), heartbeat {age:.1} s ago, {} job(s) in flight",
            w["name"].as_str().unwrap_or("-"),
            w["state"].as_str().unwrap_or("-").to_uppercase(),
            labels.join(", "),
            w["host"].as_str().unwrap_or("-"),
            w["pid"],
            w["jobs_in_flight"]
        );
    }
}

/// The workers registered in a PostgreSQL state database (`None` on SQLite, or when none
/// ever registered there), as `status --format json` lists them.
async fn workers_of(state: &StateDb) -> Result<Option<serde_json::Value>, Failure> {
    let Ok(queue) = crate::workers::queue::Queue::of(state) else {
        return Ok(None);
    };
    let now = crate::journal::lease::now_ms();
    Ok(queue.workers_if_any().await?.map(|rows| {
        rows.iter()
            .map(|w| {
                json!({
                    "name": w.name,
                    "labels": w.labels,
                    "host": w.host,
                    "pid": w.pid,
                    "heartbeat_age_ms": (now - w.heartbeat_ms).max(0),
                    "state": w.state(now),
                    "jobs_in_flight": w.jobs_in_flight,
                })
            })
            .collect()
    }))
}

/// Runs (newest first, at most `limit`) and the lease, for `status`. A missing SQLite state
/// file is not created: there are simply no runs yet.
async fn overview(g: &Globals, limit: usize) -> Result<serde_json::Value, Failure> {
    // Read-only: `status` never creates or changes a state database (an empty file stays
    // empty; a read-only mount is fine).
    let Some(state) = g.open_state_read_only().await? else {
        return Ok(serde_json::json!({ "runs": [], "lease": null }));
    };
    let result = overview_of(&state, limit).await;
    state.close().await;
    result
}

async fn overview_of(state: &StateDb, limit: usize) -> Result<serde_json::Value, Failure> {
    let holder = state.lease_holder().await?;
    let now = crate::journal::lease::now_ms();
    let mut runs = Vec::new();
    for r in state.runs().await?.into_iter().take(limit) {
        let events = state.events(&r.run_id).await?;
        let reading = replay(&events);
        let current_wave = reading.last_wave.clone();
        let failed: Vec<serde_json::Value> = reading
            .failed
            .iter()
            .map(|(t, why)| serde_json::json!({ "trust": t, "reason": why }))
            .collect();
        let effective = r.effective_status(holder.as_ref(), now);
        let next: Vec<String> = if r.resumable() {
            Unfinished {
                record: r.clone(),
                status: effective.clone(),
                wave: current_wave.clone(),
                failed: reading.failed.clone(),
            }
            .ways_forward()
            .into_iter()
            .map(|(command, _)| command)
            .collect()
        } else {
            Vec::new()
        };
        let mut v = serde_json::to_value(&r).unwrap_or_default();
        // A run left `running` whose lease is gone crashed: say so, keep what was recorded.
        v["recorded_status"] = serde_json::json!(r.status);
        v["status"] = serde_json::json!(effective);
        v["current_wave"] = serde_json::json!(current_wave);
        v["failed_trusts"] = serde_json::json!(failed);
        v["waves_passed"] = serde_json::json!(reading.resumed.passed_waves);
        v["next"] = serde_json::json!(next);
        runs.push(v);
    }
    let lease = holder.map(|h| {
        let mut v = serde_json::to_value(&h).unwrap_or_default();
        v["expired"] = serde_json::json!(h.expired(now));
        v
    });
    let mut out = serde_json::json!({ "runs": runs, "lease": lease });
    if let Some(workers) = workers_of(state).await? {
        out["workers"] = workers;
    }
    Ok(out)
}
