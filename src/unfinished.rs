//! Unfinished runs, as a person decides about them: the refusal of a new rollout while one waits,
//! `abandon`, what a run's journal says (failed trusts, rollbacks left open: [`crate::journal::replay`]),
//! settling what a crash left in flight ([`reconcile`]), and trusts never judged (carried
//! baselines). A halted or unfinished run is a decision waiting for a person.
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
use std::path::Path;
use std::time::Duration;

use crate::config::{ConfigError, Inventory, Plan};
use crate::engine::{Event, EventSink};
use crate::exit_codes::ExitCode;
use crate::health::probes::Snapshot;
use crate::journal::lease::now_ms;
use crate::journal::replay::replay;
use crate::journal::replay::Resumed;
use crate::journal::{Journal, LeaseError, RunRecord, StateDb, StateError, StateLocation};
use crate::migrations::{Catalog, CatalogError, Catalogs};
use crate::printable::print_line;

/// Why an unfinished run could not be refused, settled, carried or abandoned; each says its
/// exit code.
#[derive(Debug, thiserror::Error)]
pub enum UnfinishedError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// Another run holds the estate: nothing was changed.
    #[error("{0}; nothing was changed")]
    Lease(Box<LeaseError>),
    /// The operator must decide first, or a request cannot be done: exit 2, nothing changed.
    #[error("{0}")]
    Refused(String),
    /// A trust database could not be read or cleaned while settling what a run left in flight.
    #[error("{message}")]
    Trust { message: String, code: ExitCode },
}

impl UnfinishedError {
    /// The documented exit code.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            UnfinishedError::State(e) => e.exit_code(),
            UnfinishedError::Config(e) => e.exit_code(),
            UnfinishedError::Catalog(e) => e.exit_code(),
            UnfinishedError::Lease(e) => e.exit_code(),
            UnfinishedError::Refused(_) => ExitCode::Config,
            UnfinishedError::Trust { code, .. } => *code,
        }
    }
}

impl From<LeaseError> for UnfinishedError {
    fn from(e: LeaseError) -> Self {
        match e {
            LeaseError::State(e) => UnfinishedError::State(e),
            other => UnfinishedError::Lease(Box::new(other)),
        }
    }
}

type Result<T, E = UnfinishedError> = std::result::Result<T, E>;

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
pub async fn unfinished_runs(state: &StateDb) -> Result<Vec<Unfinished>> {
    let lease = state.lease_holder().await?;
    let now = now_ms();
    let mut out = Vec::new();
    for record in state.runs().await? {
        if !record.resumable() {
            continue;
        }
        let events = state.events(&record.run_id).await?;
        let replay = replay(&events);
        out.push(Unfinished {
            status: record.effective_status(lease.as_ref(), now),
            record,
            wave: replay.last_wave,
            failed: replay.failed,
        });
    }
    Ok(out)
}

/// Refuse a new rollout of `plan` while an unfinished run has the same plan (by name or file)
/// or touched one of its trusts: exit 2, naming each such run, its state and the ways forward.
/// Called under the estate lease, so no run is live: a `running` one has crashed.
pub async fn refuse_if_unfinished(state: &StateDb, plan: &Plan) -> Result<()> {
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
    Err(UnfinishedError::Refused(text))
}

pub use crate::journal::replay::Unjudged;

/// Every trust whose latest recorded upgrade has no passing verdict after it and was not
/// rolled back (verified) to the version it was at: from the journal of every run.
pub async fn unjudged(state: &StateDb) -> Result<BTreeMap<String, Unjudged>> {
    Ok(crate::journal::replay::unjudged(
        &state.gate_history().await?,
    ))
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
) -> Result<Vec<Carried>> {
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
        let snapshot = state.baseline_before(&u.run_id, id, u.seq).await?;
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
        return Err(UnfinishedError::Refused(format!(
            "{} cannot start; nothing was changed: a trust whose upgrade was never judged to pass is not passed by without its gate:\n  {}",
            plan.name,
            refused.join("\n  ")
        )));
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
) -> Result<()> {
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

/// `flotilla demo` re-creates the sample estate: the runs left unfinished on the old one are
/// abandoned first, recorded with who and why (their databases are about to be replaced, so
/// nothing is settled from them). A live run is not abandoned: exit 6 naming it.
pub async fn abandon_before_reseeding(location: &StateLocation, lease_ttl: Duration) -> Result<()> {
    let Some(state) = StateDb::open_read_only(location).await? else {
        return Ok(());
    };
    let runs = unfinished_runs(&state).await;
    state.close().await;
    let runs = runs?;
    if runs.is_empty() {
        return Ok(());
    }
    let state = StateDb::open(location).await?;
    let mut result = Ok(());
    for u in runs {
        result = abandon_in(
            &state,
            lease_ttl,
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

/// Whether abandoning settles what the run left in flight from the trust databases (read with
/// this inventory and these migrations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle<'a> {
    FromDatabases {
        inventory: &'a Path,
        migrations: &'a Path,
    },
    No,
}

/// An operator's recorded decision that unfinished run `run` will not be continued (`flotilla
/// abandon`). Under the estate lease (a live run cannot be abandoned), it settles what the run
/// left in flight (open steps from the databases' real state, write-probe records removed),
/// records `run_abandoned` with who and why, and marks the run `abandoned`.
pub async fn abandon_in(
    state: &StateDb,
    lease_ttl: Duration,
    run: &str,
    reason: &str,
    settle: Settle<'_>,
) -> Result<()> {
    let record = state.run(run).await?.ok_or_else(|| {
        UnfinishedError::Refused(format!(
            "no run '{run}' in the state database {} (`flotilla status` lists them)",
            state.location()
        ))
    })?;
    if !record.resumable() {
        return Err(UnfinishedError::Refused(format!(
            "run {} is {}{}: there is nothing to abandon",
            record.run_id,
            record.status,
            if record.kind == "rollout" {
                String::new()
            } else {
                format!(" (a {})", record.kind)
            }
        )));
    }
    // Its state as it was before this command took the lease (for the run's own id).
    let was = record.effective_status(state.lease_holder().await?.as_ref(), now_ms());
    let lease = state.acquire_lease(&record.run_id, lease_ttl).await?;
    let result = async {
        // What it left in flight is settled from the databases, as resume would: nothing is
        // left half-done and unrecorded.
        let open = state.open_steps(&record.run_id).await?;
        if let (false, Settle::FromDatabases { inventory, migrations }) = (open.is_empty(), settle) {
            let inventory = Inventory::load(inventory)?;
            let catalogs = Catalogs::load(Catalog::load(migrations)?, &inventory)?;
            let plan = Plan::load(Path::new(&record.plan_path), &inventory, catalogs.base())
                .map_err(|e| {
                    UnfinishedError::Refused(format!(
                        "run {} left {} step(s) in flight, and its plan cannot be read to settle them ({e}); restore the plan file, or resume the run",
                        record.run_id,
                        open.len()
                    ))
                })?;
            reconcile(state, &record.run_id, &inventory, &plan).await?;
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
            return Err(UnfinishedError::Refused(format!(
                "run {} changed while it was being abandoned; look at `flotilla status` and try again",
                record.run_id
            )));
        }
        print_line(&format!(
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
            print_line(&format!(
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

/// Close the steps a crash left open, from what each trust database really holds; remove
/// write-probe records a crash left behind.
///
/// A trust's intent (an open `upgrade` step: its planned migrations were recorded, its outcome
/// was not) is settled first, from its tracking table ([`settle_intent`]): the migrations it
/// shows applied are recorded as they would have been with the outcome, and one left dirty is
/// then settled with the open migrate steps.
pub async fn reconcile(
    state: &StateDb,
    run_id: &str,
    inventory: &Inventory,
    plan: &Plan,
) -> Result<()> {
    reconcile_only(state, run_id, inventory, plan, None).await
}

/// [`reconcile`] for one trust only: a worker taking over a job whose worker died settles
/// what that worker left open on the trust (its intent, a write probe's records) first.
pub async fn reconcile_trust(
    state: &StateDb,
    run_id: &str,
    inventory: &Inventory,
    plan: &Plan,
    trust: &str,
) -> Result<()> {
    reconcile_only(state, run_id, inventory, plan, Some(trust)).await
}

async fn reconcile_only(
    state: &StateDb,
    run_id: &str,
    inventory: &Inventory,
    plan: &Plan,
    only: Option<&str>,
) -> Result<()> {
    let ours = |trust: &str| only.is_none_or(|t| t == trust);
    for step in state.open_steps(run_id).await? {
        if step.kind != "upgrade" || !ours(&step.trust) {
            continue;
        }
        if let Some(trust) = inventory.get(&step.trust) {
            settle_intent(state, run_id, trust, &step).await?;
        }
    }
    for step in state.open_steps(run_id).await? {
        let Some(trust) = inventory.get(&step.trust).filter(|t| ours(&t.id)) else {
            continue;
        };
        let (status, detail, after) = match step.kind.as_str() {
            "migrate" | "revert" => {
                let applied =
                    crate::engine::read_state(trust)
                        .await
                        .map_err(|b| UnfinishedError::Trust {
                            message: format!(
                                "{} (reading it to settle the interrupted run)",
                                crate::printable::about_trust(&trust.id, &b.to_string())
                            ),
                            code: b.exit_code(),
                        })?;
                let row = step
                    .version
                    .and_then(|v| applied.iter().find(|a| a.version == v));
                let current = applied.iter().map(|a| a.version).max();
                let settled = match (step.kind.as_str(), row) {
                    // A dirty row: a batch or no-transaction script that did not finish.
                    (_, Some(r)) if r.dirty => "interrupted",
                    ("migrate", Some(_)) | ("revert", None) => "done",
                    _ => "not-applied",
                };
                (
                    settled,
                    "settled on resume from the trust's tracking table".to_string(),
                    current,
                )
            }
            "write-probe" => {
                let id = step.version.unwrap_or_default();
                // Records `id` down to `before` (a journal from before sampled writes: one).
                let last = step.before.unwrap_or(id);
                crate::health::probes::clean_up_write_probe(trust, &plan.health, id, last)
                    .await
                    .map_err(|e| UnfinishedError::Trust {
                        message: crate::printable::about_trust(
                            &trust.id,
                            &format!(
                                "cannot remove write-probe records {id} to {last} left by the interrupted run: {e}"
                            ),
                        ),
                        code: ExitCode::MigrationFailed,
                    })?;
                ("cleaned", "removed on resume".to_string(), None)
            }
            _ => ("interrupted", "finished again on resume".to_string(), None),
        };
        state
            .settle_step(run_id, step.seq, status, &detail, after)
            .await?;
    }
    Ok(())
}

/// What a trust's tracking table says, read to settle a run it was part of.
async fn tracking_rows(
    trust: &crate::config::Trust,
) -> Result<(Vec<crate::db::AppliedMigration>, BTreeMap<i64, u64>)> {
    let unreadable = |e: &dyn std::fmt::Display, code: ExitCode| UnfinishedError::Trust {
        message: format!(
            "{} (reading it to settle the interrupted run)",
            crate::printable::about_trust(&trust.id, &e.to_string())
        ),
        code,
    };
    let applied = crate::engine::read_state(trust)
        .await
        .map_err(|b| unreadable(&b, b.exit_code()))?;
    if applied.is_empty() {
        return Ok((applied, BTreeMap::new()));
    }
    let mut db = crate::db::TrustDb::connect(trust, crate::db::Access::ReadOnly)
        .await
        .map_err(|e| unreadable(&e, e.exit_code()))?;
    let durations = db.durations().await;
    db.close().await;
    let durations = durations.map_err(|e| unreadable(&e, e.exit_code()))?;
    Ok((applied, durations))
}

/// Settle a trust's intent that has no outcome (the run stopped between its `trust_started`
/// and its `trust_finished`): record, in one journal transaction, the `migration_started` and
/// `migration_applied` events of the planned migrations its tracking table shows applied (with
/// the durations the table recorded), and a `migration_started` for one it shows dirty (a
/// no-transaction or batch migration that did not finish: settled `interrupted` with the
/// migrate steps). A planned migration without a row was not applied (a transaction rolls back
/// whole): nothing is recorded for it, and resume applies it. Then the intent's step is closed.
/// Settling again after a crash part-way records nothing twice.
async fn settle_intent(
    state: &StateDb,
    run_id: &str,
    trust: &crate::config::Trust,
    step: &crate::journal::OpenStep,
) -> Result<()> {
    let planned = match state.event_at(run_id, step.seq).await?.map(|e| e.event) {
        Some(Event::TrustStarted { planned, .. }) => planned,
        _ => Vec::new(),
    };
    let (applied, durations) = tracking_rows(trust).await?;
    let current = applied.iter().map(|a| a.version).max();
    let mut events = Vec::new();
    let (mut done, mut dirty) = (0, 0);
    for &version in &planned {
        let Some(row) = applied.iter().find(|a| a.version == version) else {
            continue;
        };
        events.push(Event::MigrationStarted {
            trust: trust.id.clone(),
            version,
            description: row.description.clone(),
            before: applied
                .iter()
                .map(|a| a.version)
                .filter(|v| *v < version)
                .max(),
        });
        if row.dirty {
            dirty += 1;
        } else {
            done += 1;
            events.push(Event::MigrationApplied {
                trust: trust.id.clone(),
                version,
                duration_ms: durations.get(&version).copied().unwrap_or(0),
            });
        }
    }
    let recorded = state
        .migrate_steps_after(run_id, &trust.id, step.seq)
        .await?
        > 0;
    if !events.is_empty() && !recorded {
        let record = state.run(run_id).await?.ok_or_else(|| {
            UnfinishedError::Refused(format!("no run '{run_id}' in the state database"))
        })?;
        // Workers may be writing this run's events too: the sequence is shared (on Postgres).
        Journal::append_to(state, &record)
            .await?
            .shared(true)
            .record_all(&events)
            .await?;
    }
    let status = if done == planned.len() {
        "done"
    } else {
        "interrupted"
    };
    let detail = format!(
        "settled from the trust's tracking table: {done} of {} planned migration(s) applied{}",
        planned.len(),
        if dirty > 0 {
            format!(", {dirty} left dirty")
        } else {
            String::new()
        }
    );
    state
        .settle_step(run_id, step.seq, status, &detail, current)
        .await?;
    Ok(())
}
