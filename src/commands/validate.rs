//! `flotilla validate [PLAN]`: the inventory, the migrations (with the lint) and a plan,
//! checked without touching a trust database.

use std::path::PathBuf;

use super::{outln, Failure, Globals, Outcome};
use crate::config::Plan;
use crate::db::Dialect;
use crate::migrations::lint::check::{check_migrations, load_linted_since};
use crate::migrations::lint::postgres;
use crate::migrations::Layout;
use crate::report::plan::{approval_note, print_write_sizing};

/// Check the inventory, the migrations (with the same lint as `lint`) and (optionally) a
/// plan. No trust database is touched.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// A plan to validate too.
    pub plan: Option<PathBuf>,
    /// Accepted history ends at this version (as the migrations write it, e.g. 0130,
    /// 2014-11-27-000000, 1.2): only newer migrations are linted and their downs rehearsed.
    /// Overrides `accepted:` in the migrations' flotilla.yaml.
    #[arg(long, value_name = "VERSION")]
    pub since: Option<String>,
}

/// `flotilla validate [PLAN]`.
pub async fn run(g: &Globals, args: &ValidateArgs) -> Outcome {
    let plan = args.plan.as_deref();
    let (inventory, catalogs) =
        load_linted_since(&g.inventory, &g.migrations, args.since.as_deref())?;
    let catalog = catalogs.base();
    let mut regions: Vec<(String, usize)> = Vec::new();
    for t in &inventory.trusts {
        match regions.iter_mut().find(|(r, _)| *r == t.region) {
            Some((_, n)) => *n += 1,
            None => regions.push((t.region.clone(), 1)),
        }
    }
    let regions: Vec<String> = regions.iter().map(|(r, n)| format!("{n} {r}")).collect();
    outln!(
        "{}: {} trusts ({})",
        inventory.path.display(),
        inventory.trusts.len(),
        regions.join(", ")
    );
    let releases: Vec<String> = catalog
        .releases()
        .map(|(n, v)| format!("{n} (to {})", catalog.label(v)))
        .collect();
    outln!(
        "{}: {} migrations{}, releases: {}",
        catalog.dir().display(),
        catalog.migrations().len(),
        match catalog.layout() {
            Layout::Flotilla => String::new(),
            other => format!(" ({} layout)", other.name()),
        },
        if releases.is_empty() {
            "none".into()
        } else {
            releases.join(", ")
        }
    );
    if let Some(accepted) = catalog.accepted() {
        outln!(
            "  accepted history: {} migrations, up to {} ({}): not linted, downs not rehearsed; {} newer",
            catalog.accepted_count(),
            catalog.label(accepted),
            if args.since.is_some() { "--since" } else { "accepted: in flotilla.yaml" },
            catalog.migrations().len() - catalog.accepted_count()
        );
    }
    let lint = check_migrations(&inventory, &catalogs, None).await?;
    lint.print_text();
    lint.errors()?;
    if let Some(path) = plan {
        let plan = Plan::load(path, &inventory, catalog)?;
        outln!(
            "{}: plan {}, {} waves, {} trusts, target {}",
            path.display(),
            plan.name,
            plan.waves.len(),
            plan.trusts().count(),
            // The version as the migrations write it (`1.10`, `2014-11-27-000000`).
            match &plan.target.release {
                Some(r) => format!(
                    "release {r} (version {})",
                    catalog.label(plan.target.version)
                ),
                None => format!("version {}", catalog.label(plan.target.version)),
            }
        );
        for w in &plan.waves {
            outln!(
                "  wave {}: {} trusts, {} at a time{}",
                w.name,
                w.trusts.len(),
                w.concurrency,
                approval_note(w)
            );
        }
        if !plan.health.is_empty() {
            let locate = |e: &str| {
                plan.locate_health(e)
                    .map(|(line, column)| format!(":{line}:{column}"))
                    .unwrap_or_default()
            };
            // The statements are checked in the dialect the plan's trusts run: against the
            // schema built on a private SQLite database when SQLite trusts are in the plan;
            // for a Postgres-only plan (whose migrations need not run on SQLite) by
            // PostgreSQL's own parser here, their tables and columns by each trust's preflight.
            let sqlite = plan.trusts().any(|id| {
                inventory
                    .get(id)
                    .is_some_and(|t| Dialect::of(&t.database) == Dialect::Sqlite)
            });
            let checked = if sqlite {
                crate::health::probes::check_against_schema(
                    &plan.health,
                    catalog,
                    plan.target.version,
                )
                .await
                .map_err(|e| {
                    // The statements are compiled on a scratch database, not a trust: its
                    // name means nothing to the reader.
                    let e = e.strip_prefix("trust 'schema-check': ").unwrap_or(&e);
                    Failure::config(format!("{}{}: health: {e}", path.display(), locate(e)))
                })?;
                format!(
                    "checked against the schema at version {}",
                    catalog.label(plan.target.version)
                )
            } else {
                for (what, sql) in crate::health::probes::statements(&plan.health) {
                    postgres::parse(&sql).map_err(|e| {
                        let at = locate(&what);
                        Failure::config(format!(
                            "{}{at}: health: {what}: does not parse as PostgreSQL: {}",
                            path.display(),
                            e.message
                        ))
                    })?;
                }
                "parsed by PostgreSQL's parser (their tables and columns are checked on each trust before its upgrade)".to_string()
            };
            let h = &plan.health;
            outln!(
                "  health: {} latency probes, {}write probe, {} integrity tables, {} invariants; {}; every probe statement parsed and read-only (the write probe: one-row insert, cleanup by id)",
                h.latency_probes.len(),
                if h.write_probe.is_some() { "a " } else { "no " },
                h.integrity.len(),
                h.invariants.len(),
                checked
            );
            let w = &h.workload;
            if w.enabled {
                outln!(
                    "  real workload: on PostgreSQL trusts with pg_stat_statements, the top {} statements by total time with at least {} calls in the baseline and the window are judged; a window with traffic lasts at least {}",
                    w.statements,
                    w.min_calls,
                    humantime::format_duration(w.min_window)
                );
            } else {
                outln!("  real workload: not judged (workload.enabled: false)");
            }
            print_write_sizing(&plan);
            outln!(
                "  gate windows: at most {} at once per PostgreSQL server (windows_per_server)",
                h.windows_per_server()
            );
        }
    }
    outln!("ok: valid");
    Ok(())
}
