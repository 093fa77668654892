//! A halted or unfinished run is a decision waiting for a person.
//!
//! * A new `rollout` refuses while an unfinished run (halted, paused, failed, rollback-failed,
//!   interrupted, not approved, or crashed: still `running` with its lease gone) shares its plan
//!   or any of its trusts: the ways forward are `resume` (with `--retry`/`--skip` for the trusts
//!   that failed) or `abandon RUN --reason TEXT`, and the journal records who decided.
//! * Whatever was decided, a trust whose last upgrade was never judged to pass is never passed
//!   by again without its gate: a run that finds such a trust already upgraded (or part-way)
//!   judges it against the baseline recorded before that upgrade ([`carried_baselines`]), and a
//!   plan without a health section to judge it is refused.

use std::collections::{BTreeMap, BTreeSet};

use crate::commands::{Failure, Globals, Outcome};
use crate::config::Plan;
use crate::engine::run::Resumed;
use crate::engine::{Event, EventSink};
use crate::exit_codes::ExitCode;
use crate::health::probes::{ProbeParams, Snapshot};
use crate::journal::lease::now_ms;
use crate::journal::{GateFact, Journal, RunRecord, StateDb};

/// An unfinished run, as a person needs to see it to decide.
#[derive(Debug, Clone)]
pub struct Unfinished {
    /// The run.
    pub record: RunRecord,
    /// Its status, `crashed` for a run left `running` whose lease is gone.
    pub status: String,
    /// The last wave it started.
    pub wave: Option<String>,
    /// Trusts that failed in it, with the reason.
    pub failed: BTreeMap<String, String>,
}

impl Unfinished {
    /// One line: the run, its state, where and who.
    pub fn describe(&self) -> String {
        let r = &self.record;
        format!(
            "run {}: {}{} (plan {}, started {} by {}, attempts {})",
            r.run_id,
            self.status.to_uppercase(),
            self.wave
                .as_ref()
                .map(|w| format!(" in wave '{w}'"))
                .unwrap_or_default(),
            r.plan,
            r.started_at,
            r.started_by,
            r.attempts
        )
    }

    /// What can be typed next: (command, what it does).
    pub fn ways_forward(&self) -> Vec<(String, String)> {
        let id = &self.record.run_id;
        let mut out = Vec::new();
        if self.failed.is_empty() {
            out.push((
                format!("flotilla resume {id}"),
                "continue it from where it stopped".to_string(),
            ));
        }
        for t in self.failed.keys() {
            out.push((
                format!("flotilla resume {id} --retry {t}"),
                format!("measure and gate {t} again, then continue"),
            ));
            out.push((
                format!("flotilla resume {id} --skip {t}"),
                format!("leave {t} out, continue with the rest"),
            ));
        }
        out.push((
            format!("flotilla abandon {id} --reason \"...\""),
            "record that it will not be continued (and why)".to_string(),
        ));
        out
    }
}

/// Every unfinished rollout in the state database, newest first, with its effective status.
pub async fn unfinished_runs(state: &StateDb) -> Result<Vec<Unfinished>, Failure> {
    let lease = state.lease_holder().await?;
    let now = now_ms();
    let mut out = Vec::new();
    for record in state.runs().await? {
        if !record.resumable() {
            continue;
        }
        let events = state.events(&record.run_id).await?;
        let reading = crate::operate::read_journal(&events);
        let wave = last_wave(&events);
        out.push(Unfinished {
            status: record.effective_status(lease.as_ref(), now),
            record,
            wave,
            failed: reading.failed,
        });
    }
    Ok(out)
}

/// The last wave a run started, from its events.
pub fn last_wave(events: &[crate::journal::StoredEvent]) -> Option<String> {
    events.iter().rev().find_map(|e| {
        (e.body.get("event").and_then(|v| v.as_str()) == Some("wave_started"))
            .then(|| {
                e.body
                    .get("wave")
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            })
            .flatten()
    })
}

/// Refuse a new rollout of `plan` while an unfinished run has the same plan (by name or file)
/// or touched one of its trusts: exit 2, naming each such run, its state and the ways forward.
/// Called under the estate lease, so no run is live: a `running` one has crashed.
pub async fn refuse_if_unfinished(state: &StateDb, plan: &Plan) -> Outcome {
    let ours: BTreeSet<&str> = plan.trusts().collect();
    let our_file = std::fs::canonicalize(&plan.path).ok();
    let mut blocking = Vec::new();
    for u in unfinished_runs(state).await? {
        let same_plan = u.record.plan == plan.name
            || (our_file.is_some() && std::fs::canonicalize(&u.record.plan_path).ok() == our_file);
        let shared: Vec<String> = state
            .run_trusts(&u.record.run_id)
            .await?
            .into_iter()
            .filter(|t| ours.contains(t.as_str()))
            .collect();
        if same_plan || !shared.is_empty() {
            blocking.push((u, same_plan, shared));
        }
    }
    if blocking.is_empty() {
        return Ok(());
    }
    let mut text = format!(
        "{} cannot start: {} unfinished run{} of this plan or its trusts must be decided first (a halted or unfinished run is a decision waiting for a person; nothing was changed):",
        plan.name,
        blocking.len(),
        if blocking.len() == 1 { "" } else { "s" }
    );
    for (u, same_plan, shared) in &blocking {
        text.push_str("\n  ");
        text.push_str(&u.describe());
        if !same_plan {
            text.push_str(&format!(
                "; it touched {}, which this plan includes",
                shared.join(", ")
            ));
        }
        for (t, why) in &u.failed {
            text.push_str(&format!("\n      ✗ {t}: {why}"));
        }
        text.push_str("\n    Either:");
        let ways = u.ways_forward();
        let width = ways
            .iter()
            .map(|(c, _)| c.chars().count())
            .max()
            .unwrap_or(0);
        for (command, what) in ways {
            text.push_str(&format!("\n      {command:<width$}   {what}"));
        }
    }
    Err(Failure::new(ExitCode::Config, text))
}

/// A trust whose last upgrade (in some run) was never judged to pass, with what is needed to
/// judge it now.
#[derive(Debug, Clone)]
pub struct Unjudged {
    /// The run that upgraded it.
    pub run_id: String,
    /// The wave it was in then.
    pub wave: String,
    /// The version it was at before that upgrade.
    pub from: Option<i64>,
    /// The probes' parameters then.
    pub params: ProbeParams,
    /// The last verdict since (`None`: never judged).
    pub last: Option<String>,
    /// Sequence of the `baseline_recorded` event in `run_id`.
    seq: i64,
}

/// Every trust whose latest recorded upgrade has no passing verdict after it and was not
/// rolled back (verified) to the version it was at: from the journal of every run.
pub async fn unjudged(state: &StateDb) -> Result<BTreeMap<String, Unjudged>, Failure> {
    let mut ledger: BTreeMap<String, Unjudged> = BTreeMap::new();
    for r in state.gate_history().await? {
        match r.fact {
            GateFact::Baseline(body) => {
                let s = |k: &str| {
                    body.get(k)
                        .and_then(|v| v.as_str())
                        .unwrap_or_default()
                        .to_string()
                };
                ledger.insert(
                    r.trust,
                    Unjudged {
                        run_id: r.run_id,
                        wave: s("wave"),
                        from: body.get("from").and_then(serde_json::Value::as_i64),
                        params: body
                            .get("params")
                            .and_then(|v| serde_json::from_value(v.clone()).ok())
                            .unwrap_or_default(),
                        last: None,
                        seq: r.seq,
                    },
                );
            }
            GateFact::Verdict { window, verdict } => {
                // Only a judgement of the upgraded trust counts; a baseline that could not be
                // measured or a rollback's check is not one.
                if window == "post-upgrade" || window == "soak" {
                    if let Some(u) = ledger.get_mut(&r.trust) {
                        u.last = Some(verdict);
                    }
                }
            }
            GateFact::RolledBack { version } => {
                let back_below = ledger
                    .get(&r.trust)
                    .is_some_and(|u| match (version, u.from) {
                        (None, _) => true,
                        (Some(v), Some(f)) => v <= f,
                        (Some(_), None) => false,
                    });
                if back_below {
                    ledger.remove(&r.trust);
                }
            }
        }
    }
    ledger.retain(|_, u| u.last.as_deref() != Some("pass"));
    Ok(ledger)
}

/// A baseline carried into this run from the run whose upgrade of the trust it precedes.
#[derive(Debug, Clone)]
pub struct Carried {
    /// The wave of this run's plan the trust is in.
    pub wave: String,
    /// The trust.
    pub trust: String,
    /// The unjudged upgrade.
    pub upgrade: Unjudged,
    /// The baseline measured before it.
    pub snapshot: Snapshot,
}

/// The trusts of the plan (`current`: each one's wave and version now) that are above the
/// version their unjudged upgrade started from (already upgraded, or part-way), each with the
/// baseline recorded before that upgrade: what the engine judges them against. A plan with no
/// health section cannot judge them: refused (exit 2) naming each and what to do. `known`
/// trusts (the resumed run's own baselines) are left as they are.
pub async fn carried_baselines(
    state: &StateDb,
    plan: &Plan,
    catalogs: &crate::migrations::Catalogs,
    current: &BTreeMap<String, (String, Option<i64>)>,
    known: &BTreeSet<String>,
) -> Result<Vec<Carried>, Failure> {
    let ledger = unjudged(state).await?;
    if ledger.is_empty() {
        return Ok(Vec::new());
    }
    let mut carried = Vec::new();
    let mut refused = Vec::new();
    for id in plan.trusts() {
        let (Some(u), Some((wave, version))) = (ledger.get(id), current.get(id)) else {
            continue;
        };
        if known.contains(id) {
            continue;
        }
        let above = match (*version, u.from) {
            (Some(now), Some(from)) => now > from,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if !above {
            // Back where that upgrade started: this run measures a fresh baseline.
            continue;
        }
        let why = format!(
            "trust '{id}' is at {} (above {}) but its upgrade in run {} was {}",
            catalogs.base().describe(*version),
            catalogs.base().describe(u.from),
            u.run_id,
            match u.last.as_deref() {
                None => "never judged".to_string(),
                Some(v) => format!("last judged '{v}'"),
            }
        );
        if plan.health.is_empty() {
            refused.push(format!(
                "{why}, and plan {} has no health section to judge it: use a plan with a health section, or roll it back first (flotilla rollback PLAN --trust {id} --to {})",
                plan.name,
                catalogs.base().describe(u.from)
            ));
            continue;
        }
        let snapshot = state
            .event_before(&u.run_id, id, "health_measured", u.seq)
            .await?
            .filter(|b| b.get("window").and_then(|v| v.as_str()) == Some("baseline"))
            .and_then(|b| b.get("snapshot").cloned())
            .and_then(|v| serde_json::from_value::<Snapshot>(v).ok());
        match snapshot {
            Some(snapshot) => carried.push(Carried {
                wave: wave.clone(),
                trust: id.to_string(),
                upgrade: u.clone(),
                snapshot,
            }),
            None => refused.push(format!(
                "{why}, and the baseline measured before it cannot be read from the journal: roll it back first (flotilla rollback PLAN --trust {id} --to {})",
                catalogs.base().describe(u.from)
            )),
        }
    }
    if !refused.is_empty() {
        return Err(Failure::new(
            ExitCode::Config,
            format!(
                "{} cannot start; nothing was changed: a trust whose upgrade was never judged to pass is not passed by without its gate:\n  {}",
                plan.name,
                refused.join("\n  ")
            ),
        ));
    }
    Ok(carried)
}

/// Add carried baselines to what the engine is told, record each (`baseline_carried`) and say
/// so.
pub async fn carry(
    carried: &[Carried],
    resumed: &mut Resumed,
    journal: &Journal,
    sinks: &dyn EventSink,
) -> Result<(), Failure> {
    let events: Vec<Event> = carried
        .iter()
        .map(|c| Event::BaselineCarried {
            wave: c.wave.clone(),
            trust: c.trust.clone(),
            from: c.upgrade.from,
            from_run: c.upgrade.run_id.clone(),
        })
        .collect();
    journal.record_all(&events).await?;
    for ev in &events {
        sinks.emit(ev);
    }
    for c in carried {
        resumed.checked.remove(&c.trust);
        resumed.baselines.insert(
            c.trust.clone(),
            crate::engine::RecordedBaseline {
                wave: c.wave.clone(),
                from: c.upgrade.from,
                params: c.upgrade.params.clone(),
                snapshot: c.snapshot.clone(),
            },
        );
    }
    Ok(())
}

/// `flotilla abandon RUN --reason TEXT`: an operator's recorded decision that an unfinished
/// run will not be continued. Under the estate lease (a live run cannot be abandoned), it
/// settles what the run left in flight (open steps from the databases' real state, write-probe
/// records removed), records `run_abandoned` with who and why, and marks the run `abandoned`.
pub async fn abandon(g: &Globals, run: &str, reason: &str) -> Outcome {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(Failure::new(
            ExitCode::Config,
            "--reason must say why the run is abandoned (it is recorded with your name)",
        ));
    }
    let location = crate::operate::state_location(g)?;
    let Some(state) = StateDb::open_read_only(&location).await? else {
        return Err(Failure::new(
            ExitCode::Config,
            format!(
                "no run recorded at {}: nothing to abandon",
                location.display()
            ),
        ));
    };
    state.close().await;
    let state = StateDb::open(&location).await?;
    let result = abandon_in(g, &state, run, reason, Settle::FromDatabases).await;
    state.close().await;
    result
}

/// `flotilla demo` re-creates the sample estate: the runs left unfinished on the old one are
/// abandoned first, recorded with who and why (their databases are about to be replaced, so
/// nothing is settled from them). A live run is not abandoned: exit 6 naming it.
pub async fn abandon_before_reseeding(g: &Globals) -> Outcome {
    let location = crate::operate::state_location(g)?;
    let Some(state) = StateDb::open_read_only(&location).await? else {
        return Ok(());
    };
    let runs = unfinished_runs(&state).await;
    state.close().await;
    let runs = runs?;
    if runs.is_empty() {
        return Ok(());
    }
    let state = StateDb::open(&location).await?;
    let mut result = Ok(());
    for u in runs {
        result = abandon_in(
            g,
            &state,
            &u.record.run_id,
            "flotilla demo re-seeded the sample estate",
            Settle::No,
        )
        .await;
        if result.is_err() {
            break;
        }
    }
    state.close().await;
    result
}

/// Whether abandoning settles what the run left in flight from the trust databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settle {
    FromDatabases,
    No,
}

async fn abandon_in(
    g: &Globals,
    state: &StateDb,
    run: &str,
    reason: &str,
    settle: Settle,
) -> Outcome {
    let record = state.run(run).await?.ok_or_else(|| {
        Failure::new(
            ExitCode::Config,
            format!(
                "no run '{run}' in the state database {} (`flotilla status` lists them)",
                state.location()
            ),
        )
    })?;
    if !record.resumable() {
        return Err(Failure::new(
            ExitCode::Config,
            format!(
                "run {} is {}{}: there is nothing to abandon",
                record.run_id,
                record.status,
                if record.kind == "rollout" {
                    String::new()
                } else {
                    format!(" (a {})", record.kind)
                }
            ),
        ));
    }
    // Its state as it was before this command took the lease (for the run's own id).
    let was = record.effective_status(state.lease_holder().await?.as_ref(), now_ms());
    let lease = crate::operate::take_lease(state, &record.run_id, g.lease_ttl).await?;
    let result = async {
        // What it left in flight is settled from the databases, as resume would: nothing is
        // left half-done and unrecorded.
        let open = state.open_steps(&record.run_id).await?;
        if !open.is_empty() && settle == Settle::FromDatabases {
            let (inventory, catalogs) = g.load()?;
            let plan = Plan::load(
                std::path::Path::new(&record.plan_path),
                &inventory,
                catalogs.base(),
            )
            .map_err(|e| {
                Failure::new(
                    ExitCode::Config,
                    format!(
                        "run {} left {} step(s) in flight, and its plan cannot be read to settle them ({e}); restore the plan file, or resume the run",
                        record.run_id,
                        open.len()
                    ),
                )
            })?;
            crate::operate::reconcile(state, &record.run_id, &inventory, &plan).await?;
        }
        let by = crate::journal::operator();
        let journal = Journal::append_to(state, &record).await?;
        let ev = Event::RunAbandoned {
            was: was.clone(),
            by: by.clone(),
            reason: reason.to_string(),
        };
        journal.record(&ev).await?;
        let recorded = format!("abandoned by {by}: {reason} (it was {was})");
        if !journal.mark_abandoned(&record.status, &recorded).await? {
            return Err(Failure::new(
                ExitCode::Config,
                format!(
                    "run {} changed while it was being abandoned; look at `flotilla status` and try again",
                    record.run_id
                ),
            ));
        }
        crate::commands::print_line(&format!(
            "run {} ({}) abandoned by {by}: {reason}",
            record.run_id, record.plan
        ));
        let ledger = unjudged(state).await?;
        let touched = state.run_trusts(&record.run_id).await?;
        let still: Vec<&String> = ledger
            .iter()
            .filter(|(t, u)| u.run_id == record.run_id && touched.contains(*t))
            .map(|(t, _)| t)
            .collect();
        if !still.is_empty() {
            crate::commands::print_line(&format!(
                "note: {} {} an upgrade in this run that was never judged to pass; the next rollout checks {} against the baseline recorded before it",
                still.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                if still.len() == 1 { "has" } else { "have" },
                if still.len() == 1 { "it" } else { "them" }
            ));
        }
        Ok(())
    }
    .await;
    if let Err(e) = state.release_lease(&lease).await {
        tracing::warn!(error = %e, "could not release the lease; it expires by itself");
    }
    result
}
