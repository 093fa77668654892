//! `flotilla plan PLAN [--format text|json] [--sql]`: what a rollout would do now, read-only,
//! and what the lint's findings on the migrations it would apply mean on its trusts.

use std::path::PathBuf;

use super::{jsonln, Format, Globals, Outcome};
use crate::engine::preflight;
use crate::printable::outln;
use crate::report::estate::lint_on_estate;
use crate::report::plan::{
    blocked, plan_json, print_plan_sql, print_plan_text, print_write_sizing, write_sizing_json,
};

/// Show what a rollout would do, per wave and trust. Reads databases read-only.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// The plan file.
    pub plan: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Print the exact statements, including flotilla's lock and tracking-table writes.
    #[arg(long)]
    pub sql: bool,
}

/// `flotilla plan PLAN`.
pub async fn run(g: &Globals, args: &PlanArgs) -> Outcome {
    let with_sql = args.sql;
    let (inventory, catalogs, plan) = g.load_plan(&args.plan)?;
    let planned = preflight(&inventory, &catalogs, &plan).await.plan;
    match (args.format, with_sql) {
        (Format::Json, _) => {
            let mut v = plan_json(&planned, &catalogs, with_sql, &inventory);
            if plan.health.write_probe.is_some() {
                v["write_probe"] = write_sizing_json(&plan);
            }
            // The lint of what the plan would apply, with its figures on the real trusts.
            let lint = lint_on_estate(&inventory, &catalogs, &plan).await;
            v["lint"] = serde_json::json!(lint);
            jsonln!(v)
        }
        (Format::Text, false) => {
            print_plan_text(&planned, catalogs.base());
            print_write_sizing(&plan);
            for line in lint_on_estate(&inventory, &catalogs, &plan).await.lines() {
                outln!("{line}");
            }
        }
        (Format::Text, true) => print_plan_sql(&planned, &catalogs, &inventory),
    }
    Ok(blocked(&planned)?)
}
