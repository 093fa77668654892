//! `flotilla rollback PLAN (--trust T | --wave W | --run RUN) [--to RELEASE|VERSION]`: down
//! migrations in reverse under the lease, then the trusts' patient data verified.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use super::prompt::ask;
use super::{print_line, Failure, Globals, Outcome};
use crate::config::health::Health;
use crate::config::Trust;
use crate::db::{Access, Dialect, TrustDb};
use crate::engine::RunControl;
use crate::exit_codes::ExitCode;
use crate::health::probes::Snapshot;
use crate::journal::replay::replay;
use crate::migrations::{Catalog, Catalogs};
use crate::printable::about_trust;
use crate::rehearse::scratch::{ServerScratch, ROLLBACK_CHECK_PREFIX};
use crate::session::{begin_operation, plan_sha256, ApproveAll};

/// Roll trusts back with their down migrations, then verify their patient data.
#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// The plan (its trusts are the only ones that may be touched; its health section
    /// names the integrity tables).
    pub plan: PathBuf,
    /// A trust to roll back (repeatable).
    #[arg(long, value_name = "TRUST")]
    pub trust: Vec<String>,
    /// Every trust of a wave of the plan.
    #[arg(long, value_name = "WAVE")]
    pub wave: Option<String>,
    /// Every trust a run upgraded, each back to the version it had before (unless --to).
    #[arg(long, value_name = "RUN")]
    pub run: Option<String>,
    /// The release or version to go back to (required with --trust and --wave).
    #[arg(long, value_name = "RELEASE|VERSION")]
    pub to: Option<String>,
    /// Roll back across migrations marked irreversible.
    #[arg(long)]
    pub force: bool,
    /// Show what would be reverted; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
}

/// `flotilla rollback PLAN (--trust T | --wave W | --run R) [--to RELEASE|VERSION]`.
pub async fn run(g: &Globals, o: &RollbackArgs) -> Outcome {
    let (inventory, catalogs, plan) = g.load_plan(&o.plan)?;
    let in_plan: BTreeSet<&str> = plan.trusts().collect();
    let mut recorded: HashMap<String, (Option<i64>, Snapshot)> = HashMap::new();
    let selected: Vec<String> = if let Some(run) = &o.run {
        let state = g.open_state().await?;
        if state.run(run).await?.is_none() {
            return Err(Failure::config(format!(
                "no run '{run}' in the state database {}",
                state.location()
            )));
        }
        let reading = replay(&state.events(run).await?);
        state.close().await;
        for (t, b) in reading.resumed.baselines {
            recorded.insert(t, (b.from, b.snapshot));
        }
        let mut ids: Vec<String> = recorded.keys().cloned().collect();
        ids.sort();
        ids
    } else if let Some(w) = &o.wave {
        plan.waves
            .iter()
            .find(|x| &x.name == w)
            .map(|x| x.trusts.clone())
            .ok_or_else(|| {
                Failure::config(format!(
                    "plan {} has no wave '{w}' (waves: {})",
                    plan.path.display(),
                    plan.waves
                        .iter()
                        .map(|x| x.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?
    } else {
        o.trust.clone()
    };
    for id in &selected {
        if inventory.get(id).is_none() {
            return Err(Failure::config(format!(
                "trust '{id}' is not in {}",
                g.inventory.display()
            )));
        }
        if !in_plan.contains(id.as_str()) {
            return Err(Failure::config(format!(
                "trust '{id}' is not in plan {}: flotilla never touches a trust outside the plan",
                plan.path.display()
            )));
        }
    }
    if selected.is_empty() {
        return Err(Failure::config("no trust to roll back"));
    }
    let explicit =
        o.to.as_deref()
            .map(|t| parse_target(&catalogs, t))
            .transpose()?;
    // The patient-data tables the plan checks must still exist at the target: a rollback
    // whose down migrations drop them destroys the data, and is refused unless forced. Checked
    // in each trust's own dialect, once per server, catalog and target; a plan that names no
    // integrity tables has nothing to check.
    let integrity_only = crate::config::health::Health {
        integrity: plan.health.integrity.clone(),
        ..Default::default()
    };
    let mut checked: HashMap<(String, usize, i64), Result<(), AtTarget>> = HashMap::new();
    // Preview, read-only: what each trust would revert.
    let mut work: Vec<(String, Option<i64>, Option<Snapshot>)> = Vec::new();
    let mut refused = Vec::new();
    for id in &selected {
        let to = match (explicit, recorded.get(id)) {
            (Some(t), _) => t,
            (None, Some((from, _))) => *from,
            (None, None) => {
                return Err(Failure::config(
                    "--to RELEASE|VERSION is required with --trust and --wave",
                ))
            }
        };
        let trust = inventory
            .get(id)
            .ok_or_else(|| Failure::config(id.clone()))?;
        let applied = crate::engine::read_state(trust)
            .await
            .map_err(|b| Failure::new(b.exit_code(), about_trust(id, &b.to_string())))?;
        let catalog = catalogs.for_trust(id);
        let planned = crate::plan::plan_rollback(catalog, &applied, to);
        let undo = planned.versions();
        let current = planned.from;
        if !undo.is_empty() && !o.force && !integrity_only.integrity.is_empty() {
            let target = to.unwrap_or(0);
            let key = (
                server_key(trust),
                std::ptr::from_ref(catalog) as usize,
                target,
            );
            if !checked.contains_key(&key) {
                let found = integrity_at(trust, catalog, target, &integrity_only).await;
                checked.insert(key.clone(), found);
            }
            match &checked[&key] {
                Ok(()) => {}
                Err(AtTarget::Missing(e)) => refused.push(format!(
                    "trust '{id}': at {} the plan's patient-data tables would not exist, so the rollback would destroy them ({e}); pass --force to do it anyway",
                    catalogs.base().describe(to)
                )),
                Err(AtTarget::CannotCheck(e)) => refused.push(format!(
                    "trust '{id}': cannot check that the plan's patient-data tables still exist at {}: {e}; pass --force to roll back without this check",
                    catalogs.base().describe(to)
                )),
            }
        }
        // A migration missing from the catalog is the execution's to report (exit 5, at the
        // step that cannot run): the preview refuses only what forcing would allow.
        if let Some(r @ crate::plan::RollbackRefusal::Irreversible { .. }) =
            planned.refusal(o.force)
        {
            refused.push(format!("trust '{id}': {r}"));
        }
        print_line(&format!(
            "{id}: {} → {}: {}",
            catalogs.base().describe(current),
            catalogs.base().describe(to),
            if undo.is_empty() {
                "nothing to revert".to_string()
            } else {
                format!(
                    "revert {}",
                    undo.iter()
                        .map(|v| format!("{v:04}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ));
        if !undo.is_empty() {
            let snap = recorded
                .get(id)
                .filter(|(from, _)| *from == to)
                .map(|(_, s)| s.clone());
            work.push((id.clone(), to, snap));
        }
    }
    if !refused.is_empty() {
        return Err(Failure::config(refused.join("\n")));
    }
    if o.dry_run || work.is_empty() {
        return Ok(());
    }
    if !o.yes {
        if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            return Err(Failure::config(
                "refusing to roll back without confirmation: stdin is not a terminal; pass --yes",
            ));
        }
        if !ask(&format!("Roll back {} trust(s)?", work.len())) {
            return Err(Failure::config(
                "rollback not confirmed; nothing was changed",
            ));
        }
    }
    let location = g.state_location()?;
    let op = begin_operation(
        &location,
        g.lease_ttl,
        "rollback",
        &format!("rollback ({})", plan.name),
        &plan.path,
        &plan_sha256(&plan)?,
        explicit.flatten().unwrap_or(0),
    )
    .await?;
    let sinks = crate::report::event_sinks(g.progress, g.color, None)?;
    let control = RunControl::default();
    let engine = crate::engine::Engine {
        inventory: &inventory,
        catalogs: &catalogs,
        plan: &plan,
        events: &sinks,
        approver: &ApproveAll("rollback".into()),
        journal: Some(&op.journal),
        control: &control,
        resumed: None,
        workload: Default::default(),
        phases: Default::default(),
        remote: None,
    };
    let mut failures = Vec::new();
    for (id, to, snap) in &work {
        match engine.roll_back(id, *to, snap.as_ref(), o.force).await {
            Ok(r) => print_line(&format!(
                "  ✓ {id}: {} → {} ({} down migrations); {}",
                catalogs.base().describe(r.from),
                catalogs.base().describe(r.to),
                r.migrations,
                r.verified
            )),
            Err(e) => failures.push(about_trust(id, &e.to_string())),
        }
    }
    let result = if failures.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(
            ExitCode::RollbackFailed,
            format!(
                "rollback failed; an operator is needed:\n  {}",
                failures.join("\n  ")
            ),
        ))
    };
    op.end(result.as_ref().err().map(|f| (f.code, f.message.as_str())))
        .await;
    result
}

/// Why the plan's integrity tables could not be shown to exist at a rollback's target.
#[derive(Debug, Clone)]
enum AtTarget {
    /// The schema at the target lacks a table or key column the plan checks.
    Missing(String),
    /// The schema at the target could not be built or read.
    CannotCheck(String),
}

/// What a schema check depends on besides the catalog and the target: the dialect and, on
/// PostgreSQL, the server (its version decides what the migrations can do).
fn server_key(trust: &Trust) -> String {
    match Dialect::of(&trust.database) {
        Dialect::Sqlite => "sqlite".to_string(),
        Dialect::Postgres => crate::db::port::pg_target(trust)
            .ok()
            .and_then(|t| url::Url::parse(&t.url).ok())
            .map(|u| {
                format!(
                    "postgres://{}:{}",
                    u.host_str().unwrap_or(""),
                    u.port().unwrap_or(5432)
                )
            })
            .unwrap_or_else(|| format!("postgres trust {}", trust.id)),
    }
}

/// Whether every integrity table of `health` (with its key columns) exists in the schema the
/// catalog's migrations build up to `target`, built in `trust`'s own dialect: a private
/// in-memory database for an SQLite trust, an empty scratch database on the trust's own server
/// for a PostgreSQL one (named `flotilla_rollback_check_...`, dropped at once). The trust
/// itself is not touched.
async fn integrity_at(
    trust: &Trust,
    catalog: &Catalog,
    target: i64,
    health: &Health,
) -> Result<(), AtTarget> {
    match Dialect::of(&trust.database) {
        Dialect::Sqlite => {
            let mut db = TrustDb::scratch()
                .await
                .map_err(|e| AtTarget::CannotCheck(e.to_string()))?;
            let found = build_and_prepare(&mut db, catalog, target, health, "SQLite").await;
            db.close().await;
            found
        }
        Dialect::Postgres => {
            let (scratch, on_scratch) = ServerScratch::create(
                trust,
                ROLLBACK_CHECK_PREFIX,
                "rollback check",
            )
            .await
            .map_err(|e| {
                AtTarget::CannotCheck(format!(
                    "cannot create a scratch database on the trust's server to build the schema on: {e}"
                ))
            })?;
            let check = async {
                let mut db = TrustDb::connect(&on_scratch, Access::ReadWrite)
                    .await
                    .map_err(|e| AtTarget::CannotCheck(e.to_string()))?;
                let found = build_and_prepare(&mut db, catalog, target, health, "PostgreSQL").await;
                db.close().await;
                found
            };
            // No Ctrl-C handler here: one would stay installed for the rest of the rollback,
            // which relies on the default (the process ends). A scratch database a killed
            // check leaves is dropped by the next check from this host.
            let found = check.await;
            let name = scratch.name().to_string();
            if let Err(e) = scratch.drop().await {
                eprintln!("warning: {e}");
            } else {
                tracing::debug!(database = name, "rollback check's scratch database dropped");
            }
            found
        }
    }
}

/// Apply the catalog's ups up to `target` on the empty `db`, then compile every integrity
/// statement there.
async fn build_and_prepare(
    db: &mut TrustDb,
    catalog: &Catalog,
    target: i64,
    health: &Health,
    on: &str,
) -> Result<(), AtTarget> {
    let prefix = format!("trust '{}': ", db.trust());
    let unwrap = |e: String| e.strip_prefix(&prefix).map(str::to_string).unwrap_or(e);
    db.ensure_tracking_table()
        .await
        .map_err(|e| AtTarget::CannotCheck(unwrap(e.to_string())))?;
    for m in catalog.range(None, target) {
        db.apply(m, false).await.map_err(|e| {
            AtTarget::CannotCheck(format!(
                "cannot build the schema on a scratch {on} database: {}",
                unwrap(e.to_string())
            ))
        })?;
    }
    crate::health::probes::prepare_all(db, health)
        .await
        .map_err(|e| AtTarget::Missing(unwrap(e)))
}

fn parse_target(catalogs: &Catalogs, to: &str) -> Result<Option<i64>, Failure> {
    let catalog = catalogs.base();
    if to.trim() == "0" {
        return Ok(None);
    }
    // A release, then a version as the migrations write it (`0130`, `2014-11-27-000000`,
    // `1.10`), then a 64-bit key as the journal and JSON reports show it.
    if let Some(v) = catalog.release_version(to) {
        return Ok(Some(v));
    }
    if let Some(v) = catalog.resolve(to).or_else(|| {
        to.trim()
            .parse::<i64>()
            .ok()
            .filter(|k| catalog.get(*k).is_some())
    }) {
        return Ok(Some(v));
    }
    let known: Vec<&str> = catalog.releases().map(|(n, _)| n).collect();
    Err(Failure::config(format!(
        "--to {to}: not a migration's version or a known release (known releases: {})",
        if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        }
    )))
}
