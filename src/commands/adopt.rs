//! `flotilla adopt PLAN --from TOOL`: take over the plan's trusts from the tool that migrated
//! them until now, recording its history in flotilla's tracking table without running
//! anything; or `--baseline VERSION` for trusts with no usable history.
//!
//! Every trust is checked first (read-only); if any is refused nothing is written anywhere.
//! Then, under the lease and each trust's lock, each trust is read and checked again and its
//! rows written in one transaction, recorded in the journal.

use std::path::PathBuf;

use futures::stream::{self, StreamExt};
use serde_json::json;

use super::{jsonln, print_line, Failure, Format, Globals, Outcome};
use crate::adopt::{self, Refusal, Tool};
use crate::config::Trust;
use crate::db::{Access, TrustDb};
use crate::engine::Event;
use crate::exit_codes::ExitCode;
use crate::migrations::Catalog;

/// Take over trusts another tool migrated: record the migrations its tracking table lists as
/// applied in flotilla's, without running them.
#[derive(Debug, clap::Args)]
pub struct AdoptArgs {
    /// The plan whose trusts to adopt.
    pub plan: PathBuf,
    /// The tool that migrated the trusts until now; its tracking table is read and left as
    /// it is.
    #[arg(long, value_enum, required_unless_present = "baseline")]
    pub from: Option<Tool>,
    /// Only this trust of the plan (repeatable).
    #[arg(long = "trust", value_name = "TRUST")]
    pub trusts: Vec<String>,
    /// Instead of reading a history, mark every migration up to VERSION as applied (for
    /// trusts with no usable history; Flyway's baseline). VERSION is as the tool writes it
    /// (with --from flyway, dotted).
    #[arg(long, value_name = "VERSION")]
    pub baseline: Option<String>,
    /// Show, per trust, what would be recorded; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// What adopting one trust comes to.
enum Finding {
    /// These versions are to be recorded.
    Record(Vec<i64>),
    /// flotilla's tracking table already records them.
    Already(Vec<i64>),
    /// The other tool lists nothing applied.
    Nothing,
    /// Not adopted.
    Refused(Refusal),
}

struct Assessed {
    finding: Finding,
    notes: Vec<String>,
}

/// `--from`/`--baseline` resolved.
#[derive(Clone, Copy)]
enum Source {
    Tool(Tool),
    Baseline(Option<Tool>, i64),
}

impl Source {
    fn describe(self) -> String {
        match self {
            Source::Tool(t) => t.table().to_string(),
            Source::Baseline(_, v) => format!("--baseline {v}"),
        }
    }
}

async fn assess(db: &mut TrustDb, catalog: &Catalog, source: Source) -> Result<Assessed, Failure> {
    let flotilla = db.applied().await?;
    let (versions, notes, baseline) = match source {
        Source::Baseline(_, v) => match adopt::baseline_versions(catalog, v) {
            Ok(vs) => (vs, Vec::new(), true),
            Err(r) => return Ok(refused(r, Vec::new())),
        },
        Source::Tool(tool) => {
            let read = match adopt::foreign::read(db, tool).await? {
                Ok(read) => read,
                Err(u) => return Ok(refused(u.into(), Vec::new())),
            };
            match adopt::adopted_versions(tool, catalog, &read.history) {
                Ok(vs) => (vs, read.notes, false),
                Err(r) => return Ok(refused(r, read.notes)),
            }
        }
    };
    if versions.is_empty() {
        return Ok(Assessed {
            finding: Finding::Nothing,
            notes,
        });
    }
    let finding = match adopt::against_flotilla(catalog, &versions, &flotilla, baseline) {
        Ok(true) => Finding::Already(versions),
        Ok(false) => Finding::Record(versions),
        Err(r) => Finding::Refused(r),
    };
    Ok(Assessed { finding, notes })
}

fn refused(r: Refusal, notes: Vec<String>) -> Assessed {
    Assessed {
        finding: Finding::Refused(r),
        notes,
    }
}

/// Read-only: what adopting `trust` would do.
async fn check(trust: &Trust, catalog: &Catalog, source: Source) -> Assessed {
    let outcome = async {
        let mut db = TrustDb::connect(trust, Access::ReadOnly).await?;
        let a = assess(&mut db, catalog, source).await;
        db.close().await;
        a
    }
    .await;
    outcome.unwrap_or_else(|f| {
        refused(
            Refusal {
                code: f.code,
                message: f.message,
            },
            Vec::new(),
        )
    })
}

/// Under the trust's lock: check again and write.
async fn adopt_one(trust: &Trust, catalog: &Catalog, source: Source) -> Result<Assessed, Failure> {
    let mut db = TrustDb::connect(trust, Access::ReadWrite).await?;
    let result = async {
        db.lock().await?;
        let a = assess(&mut db, catalog, source).await?;
        if let Finding::Record(versions) = &a.finding {
            adopt::record(&mut db, catalog, versions).await?;
        }
        Ok(a)
    }
    .await;
    db.close().await;
    result
}

fn range(versions: &[i64]) -> String {
    match (versions.first(), versions.last()) {
        (Some(a), Some(b)) if a != b => format!("{a} .. {b}"),
        (Some(a), _) => a.to_string(),
        _ => "-".into(),
    }
}

/// `flotilla adopt PLAN`.
pub async fn run(g: &Globals, args: &AdoptArgs) -> Outcome {
    let (inventory, catalogs, plan) = g.load_plan(&args.plan)?;
    let in_plan: Vec<&str> = plan.trusts().collect();
    for t in &args.trusts {
        if !in_plan.contains(&t.as_str()) {
            return Err(Failure::config(format!(
                "trust '{t}' is not in plan {} ({}): adopt only touches the plan's trusts",
                plan.name,
                args.plan.display()
            )));
        }
    }
    let ids: Vec<&str> = in_plan
        .iter()
        .copied()
        .filter(|id| args.trusts.is_empty() || args.trusts.iter().any(|t| t == id))
        .collect();
    let source = match (&args.baseline, args.from) {
        (Some(text), from) => {
            // As the migrations write it (`0130`, `2014-11-27-000000`, `1.10`), else as the
            // tool does.
            let key = match catalogs.base().resolve(text) {
                Some(key) => key,
                None => from
                    .unwrap_or(Tool::Sqlx)
                    .key(text)
                    .map_err(|e| Failure::config(format!("--baseline {text}: {e}")))?,
            };
            Source::Baseline(from, key)
        }
        (None, Some(tool)) => Source::Tool(tool),
        (None, None) => {
            return Err(Failure::config(
                "adopt needs --from TOOL or --baseline VERSION",
            ))
        }
    };
    let trusts: Vec<&Trust> = ids
        .iter()
        .map(|id| {
            inventory.get(id).ok_or_else(|| {
                Failure::config(format!(
                    "trust '{id}' of the plan is not in {}",
                    g.inventory.display()
                ))
            })
        })
        .collect::<Result<_, _>>()?;

    // 1. Check every trust, read-only (several at once, reported in the plan's order).
    let checked: Vec<Assessed> = stream::iter(&trusts)
        .map(|t| check(t, catalogs.for_trust(&t.id), source))
        .buffered(crate::engine::READ_CONCURRENCY)
        .collect()
        .await;
    let refusals: Vec<(String, Refusal)> = trusts
        .iter()
        .zip(&checked)
        .filter_map(|(t, a)| match &a.finding {
            Finding::Refused(r) => Some((t.id.clone(), r.clone())),
            _ => None,
        })
        .collect();
    let to_write = checked
        .iter()
        .any(|a| matches!(a.finding, Finding::Record(_)));
    let mut results: Vec<(String, Assessed)> = Vec::new();
    let mut failure = None;
    if args.dry_run || !refusals.is_empty() || !to_write {
        for (t, a) in trusts.iter().zip(checked) {
            results.push((t.id.clone(), a));
        }
        if !refusals.is_empty() {
            let code = adopt::gravest(refusals.iter().map(|(_, r)| r.code))
                .unwrap_or(ExitCode::ChecksumDrift);
            let lines: Vec<String> = refusals
                .iter()
                .map(|(id, r)| crate::printable::about_trust(id, &r.message))
                .collect();
            failure = Some(Failure::new(
                code,
                format!(
                    "adopt refused on {} trust(s); nothing was written on any trust:\n{}",
                    refusals.len(),
                    lines.join("\n")
                ),
            ));
        }
    } else {
        // 2. Under the lease: each trust checked again under its lock, and written.
        let op = crate::session::begin_operation(
            &g.state_location()?,
            g.lease_ttl,
            "adopt",
            &format!("adopt ({})", plan.name),
            &args.plan,
            "-",
            plan.target.version,
        )
        .await?;
        for (t, first) in trusts.iter().zip(checked) {
            if !matches!(first.finding, Finding::Record(_)) {
                results.push((t.id.clone(), first));
                continue;
            }
            let catalog = catalogs.for_trust(&t.id);
            match adopt_one(t, catalog, source).await {
                Ok(a) => {
                    if let Finding::Record(versions) = &a.finding {
                        let event = Event::Adopted {
                            trust: t.id.clone(),
                            from: match source {
                                Source::Tool(tool) => tool.name().to_string(),
                                Source::Baseline(..) => "baseline".to_string(),
                            },
                            migrations: versions.len(),
                            highest: versions.last().copied(),
                            baseline: matches!(source, Source::Baseline(..)),
                        };
                        if let Err(e) = op.journal.record(&event).await {
                            failure.get_or_insert(Failure::from(e));
                        }
                    }
                    if let Finding::Refused(r) = &a.finding {
                        failure.get_or_insert(Failure::new(
                            r.code,
                            format!(
                                "{} (it changed since it was checked; the trusts reported as adopted were written)",
                                crate::printable::about_trust(&t.id, &r.message)
                            ),
                        ));
                    }
                    results.push((t.id.clone(), a));
                }
                Err(f) => {
                    let message = crate::printable::about_trust(&t.id, &f.message);
                    failure.get_or_insert(Failure::new(f.code, message.clone()));
                    results.push((
                        t.id.clone(),
                        refused(
                            Refusal {
                                code: f.code,
                                message,
                            },
                            Vec::new(),
                        ),
                    ));
                }
            }
        }
        op.end(failure.as_ref().map(|f| (f.code, f.message.as_str())))
            .await;
    }

    // What every adopted trust has run: the version to propose as accepted history.
    let accepted = if failure.is_none() {
        results
            .iter()
            .filter_map(|(_, a)| match &a.finding {
                Finding::Record(v) | Finding::Already(v) => v.last().copied(),
                _ => None,
            })
            .min()
    } else {
        None
    };
    let config = g.migrations.join("flotilla.yaml");
    let accepted = accepted.map(|v| (v, catalogs.base().label(v)));
    print_report(args, source, &results, accepted, &config);
    match failure {
        Some(f) => Err(f),
        None => Ok(()),
    }
}

fn print_report(
    args: &AdoptArgs,
    source: Source,
    results: &[(String, Assessed)],
    accepted: Option<(i64, String)>,
    config: &std::path::Path,
) {
    let dry = args.dry_run;
    match args.format {
        Format::Json => {
            let trusts: Vec<serde_json::Value> = results
                .iter()
                .map(|(id, a)| {
                    let (status, versions, error, code) = match &a.finding {
                        Finding::Record(v) if dry => ("would-adopt", v.clone(), None, None),
                        Finding::Record(v) => ("adopted", v.clone(), None, None),
                        Finding::Already(v) => ("already-adopted", v.clone(), None, None),
                        Finding::Nothing => ("nothing-to-adopt", Vec::new(), None, None),
                        Finding::Refused(r) => (
                            "refused",
                            Vec::new(),
                            Some(r.message.clone()),
                            Some(r.code.code()),
                        ),
                    };
                    json!({
                        "id": id,
                        "status": status,
                        "migrations": versions.len(),
                        "versions": versions,
                        "highest": versions.last(),
                        "notes": a.notes,
                        "error": error,
                        "exit_code": code,
                    })
                })
                .collect();
            let (from, baseline) = match source {
                Source::Tool(t) => (Some(t.name()), None),
                Source::Baseline(t, v) => (t.map(Tool::name), Some(v)),
            };
            jsonln!(json!({
                "plan": args.plan,
                "from": from,
                "baseline": baseline,
                "dry_run": dry,
                "trusts": trusts,
                "accepted": accepted.as_ref().map(|(v, _)| v),
                "accepted_label": accepted.as_ref().map(|(_, label)| label),
                "accepted_in": config,
            }));
        }
        Format::Text => {
            let what = source.describe();
            for (id, a) in results {
                let line = match &a.finding {
                    Finding::Record(v) if dry => format!(
                        "{id}: would record {} migration(s) as applied ({}) from {what}; nothing written (--dry-run)",
                        v.len(),
                        range(v)
                    ),
                    Finding::Record(v) => format!(
                        "{id}: adopted: recorded {} migration(s) as applied ({}) from {what}, in one transaction; nothing was run, {} left as it was",
                        v.len(),
                        range(v),
                        match source {
                            Source::Tool(t) => t.table(),
                            Source::Baseline(..) => "every other table",
                        }
                    ),
                    Finding::Already(v) => format!(
                        "{id}: already adopted: flotilla's tracking table records the same {} migration(s) ({}); nothing to do",
                        v.len(),
                        range(v)
                    ),
                    Finding::Nothing => format!("{id}: {what} lists no applied migration; nothing to adopt"),
                    Finding::Refused(r) => format!("{id}: REFUSED: {}", r.message),
                };
                print_line(&line);
                for n in &a.notes {
                    print_line(&format!("  note: {n}"));
                }
            }
            if let Some((_, v)) = &accepted {
                print_line(&format!(
                    "Every trust {} the migrations up to {v}. To treat them as accepted history (lint and the down checks then cover only newer migrations), add to {}:\naccepted: {v}",
                    if dry { "would be adopted with" } else { "adopted has run" },
                    config.display()
                ));
            }
        }
    }
}
