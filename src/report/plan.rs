//! Rendered plans: what `plan`, `plan --sql`, `rollout --dry-run` and `validate` print of a
//! rollout plan (text, JSON, the exact statements), the write probe's sizing per wave, and the
//! refusal when a trust of the plan is blocked.

use serde_json::json;

use crate::config::{Inventory, Plan, Wave};
use crate::db::{sql, Dialect};
use crate::exit_codes::ExitCode;
use crate::migrations::{Catalog, Catalogs};
use crate::plan::{Action, RolloutPlan};
use crate::printable::{about_trust, outln};

/// Trusts of the plan cannot be migrated (checksum drift, dirty, unreadable...): nothing was
/// changed.
#[derive(Debug, thiserror::Error)]
#[error("nothing was changed: {count} trust(s) cannot be migrated:\n{lines}")]
pub struct BlockedError {
    /// How many trusts are blocked.
    pub count: usize,
    /// One indented line per blocked trust, naming it once.
    pub lines: String,
    /// The exit code of the gravest blocker.
    pub code: ExitCode,
}

impl BlockedError {
    /// The documented exit code of the gravest blocker (e.g. 7 on checksum drift).
    pub fn exit_code(&self) -> ExitCode {
        self.code
    }
}

/// The refusal for a plan with blocked trusts, or none.
pub fn blocked(planned: &RolloutPlan) -> Result<(), BlockedError> {
    let blocked: Vec<_> = planned.blocked().collect();
    match planned.blocked_exit_code() {
        None => Ok(()),
        Some(code) => {
            let lines: Vec<String> = blocked
                .iter()
                .map(|(id, b)| format!("  {}", about_trust(id, &b.to_string())))
                .collect();
            Err(BlockedError {
                count: blocked.len(),
                lines: lines.join("\n"),
                code,
            })
        }
    }
}

/// The write probe's sizing per wave (`validate`, `plan`): how many writes each window makes
/// and the loss rate they catch.
pub fn print_write_sizing(plan: &Plan) {
    let mut lines: Vec<(String, Vec<&str>)> = Vec::new();
    for w in &plan.waves {
        let Some(Ok(sizing)) = plan.health.write_sizing(w.soak) else {
            continue;
        };
        let text = sizing.describe();
        match lines.iter_mut().find(|(t, _)| *t == text) {
            Some((_, waves)) => waves.push(&w.name),
            None => lines.push((text, vec![&w.name])),
        }
    }
    for (text, waves) in lines {
        outln!("  write probe ({}): {text}", waves.join(", "));
    }
}

/// The write probe's sizing per wave, as JSON (`plan --format json`).
pub fn write_sizing_json(plan: &Plan) -> serde_json::Value {
    let waves: serde_json::Map<String, serde_json::Value> = plan
        .waves
        .iter()
        .filter_map(|w| match plan.health.write_sizing(w.soak)? {
            Ok(s) => Some((w.name.clone(), json!(s))),
            Err(_) => None,
        })
        .collect();
    json!(waves)
}

/// `release R (version V)` or `version V`.
pub fn describe_target(plan: &Plan) -> String {
    match &plan.target.release {
        Some(r) => format!("release {r} (version {})", plan.target.version),
        None => format!("version {}", plan.target.version),
    }
}

/// `, needs approval` for a wave marked `approval: required`.
pub fn approval_note(w: &Wave) -> &'static str {
    match w.approval {
        crate::config::plan::Approval::Required => ", needs approval",
        crate::config::plan::Approval::None => "",
    }
}

/// The statements a trust's upgrade runs, in order, including flotilla's own.
fn trust_sql(catalogs: &Catalogs, inventory: &Inventory, id: &str, action: &Action) -> Vec<String> {
    let Action::Upgrade { steps } = action else {
        return Vec::new();
    };
    let catalog = catalogs.for_trust(id);
    let dialect = inventory
        .get(id)
        .map_or(Dialect::Sqlite, |t| Dialect::of(&t.database));
    let mut out = vec![
        sql::lock_statement(dialect),
        format!("{};", sql::CREATE_TRACKING_TABLE),
    ];
    for step in steps {
        if let Some(m) = catalog.get(step.version) {
            out.extend(sql::render_apply(m));
        }
    }
    out.push(sql::unlock_statement(dialect));
    out
}

/// The plan as JSON (`plan --format json`), with each trust's statements when `with_sql`.
pub fn plan_json(
    planned: &RolloutPlan,
    catalogs: &Catalogs,
    with_sql: bool,
    inventory: &Inventory,
) -> serde_json::Value {
    let catalog = catalogs.base();
    let waves: Vec<serde_json::Value> = planned
        .waves
        .iter()
        .map(|w| {
            let trusts: Vec<serde_json::Value> = w
                .trusts
                .iter()
                .map(|t| {
                    let (action, migrations, reason) = match &t.action {
                        Action::UpToDate => ("up-to-date", vec![], None),
                        Action::Upgrade { steps } => ("upgrade", steps.iter().map(|s| s.version).collect(), None),
                        Action::Blocked { blocker } => ("blocked", vec![], Some(blocker.to_string())),
                    };
                    let mut v = json!({
                        "id": t.id,
                        "current_version": t.current_version,
                        "current_release": catalog.describe(t.current_version),
                        "action": action,
                        "migrations": migrations,
                        "reason": reason,
                    });
                    if with_sql {
                        v["sql"] = json!(trust_sql(catalogs, inventory, &t.id, &t.action));
                    }
                    v
                })
                .collect();
            json!({ "name": w.name, "concurrency": w.concurrency, "approval": w.approval, "trusts": trusts })
        })
        .collect();
    json!({
        "plan": planned.plan,
        "target_version": planned.target.version,
        "target_release": planned.target.release,
        "migrations": planned.migration_count(),
        "waves": waves,
    })
}

/// The plan for people: per wave, each trust and what it would apply.
pub fn print_plan_text(planned: &RolloutPlan, catalog: &Catalog) {
    outln!(
        "plan {}: target {} (version {}), {} migrations to apply",
        planned.plan,
        planned.target.release.as_deref().unwrap_or("-"),
        catalog.label(planned.target.version),
        planned.migration_count()
    );
    if let Some(accepted) = catalog.accepted() {
        outln!(
            "accepted history: {} migrations, up to {}: not linted, downs not rehearsed",
            catalog.accepted_count(),
            catalog.label(accepted)
        );
    }
    for (i, w) in planned.waves.iter().enumerate() {
        outln!(
            "wave {} {}: {} trusts, {} at a time{}",
            i + 1,
            w.name,
            w.trusts.len(),
            w.concurrency,
            if w.approval { ", needs approval" } else { "" }
        );
        for t in &w.trusts {
            let from = catalog.describe(t.current_version);
            match &t.action {
                Action::UpToDate => outln!("  {:<22} {from}: up to date", t.id),
                Action::Upgrade { steps } => {
                    let versions: Vec<String> =
                        steps.iter().map(|s| catalog.label(s.version)).collect();
                    outln!(
                        "  {:<22} {from} → {}: apply {}",
                        t.id,
                        catalog.describe(Some(planned.target.version)),
                        versions.join(", ")
                    );
                }
                Action::Blocked { blocker } => outln!("  {:<22} BLOCKED: {blocker}", t.id),
            }
        }
    }
}

/// Every statement the rollout would run, per wave and trust (`plan --sql`, `rollout --dry-run`).
pub fn print_plan_sql(planned: &RolloutPlan, catalogs: &Catalogs, inventory: &Inventory) {
    outln!(
        "-- flotilla plan {} → version {}",
        planned.plan,
        planned.target.version
    );
    for w in &planned.waves {
        outln!(
            "\n-- ===== wave {} ({} at a time) =====",
            w.name,
            w.concurrency
        );
        for t in &w.trusts {
            let target = inventory
                .get(&t.id)
                .map(|t| t.database.redacted())
                .unwrap_or_default();
            match &t.action {
                Action::Upgrade { .. } => {
                    outln!("\n-- ----- trust {} ({target}) -----", t.id);
                    for stmt in trust_sql(catalogs, inventory, &t.id, &t.action) {
                        outln!("{stmt}");
                    }
                }
                Action::UpToDate => outln!("\n-- trust {}: up to date, nothing runs", t.id),
                Action::Blocked { blocker } => {
                    outln!("\n-- trust {}: BLOCKED, nothing runs: {blocker}", t.id)
                }
            }
        }
    }
}
