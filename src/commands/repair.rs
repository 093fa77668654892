//! `flotilla repair TRUST --applied|--not-applied`: clear the dirty mark a failed
//! non-transactional migration left, under the lease, recorded as an operation.

use super::{print_line, Failure, Globals, Outcome};
use crate::engine::Event;
use crate::journal::Journal;
use crate::migrations::Catalogs;
use crate::session::begin_operation;

/// Clear the dirty mark a failed non-transactional migration left on a trust, after an
/// operator has checked what it did.
#[derive(Debug, clap::Args)]
pub struct RepairArgs {
    /// The trust.
    pub trust: String,
    /// The migration ran to the end: keep its tracking row, clear the mark.
    #[arg(
        long,
        conflicts_with = "not_applied",
        required_unless_present = "not_applied"
    )]
    pub applied: bool,
    /// It did not: remove its tracking row (and, on Postgres, any invalid index its
    /// failed concurrent build left).
    #[arg(long)]
    pub not_applied: bool,
}

/// `flotilla repair TRUST --applied|--not-applied`.
pub async fn run(g: &Globals, args: &RepairArgs) -> Outcome {
    let (id, applied) = (args.trust.as_str(), args.applied);
    let (inventory, catalogs) = g.load()?;
    let trust = inventory.get(id).ok_or_else(|| {
        Failure::config(format!("trust '{id}' is not in {}", g.inventory.display()))
    })?;
    let location = g.state_location()?;
    let op = begin_operation(
        &location,
        g.lease_ttl,
        "repair",
        "repair",
        &g.inventory,
        "-",
        0,
    )
    .await?;
    let result = repair_locked(&op.journal, trust, &catalogs, applied).await;
    op.end(result.as_ref().err().map(|f| (f.code, f.message.as_str())))
        .await;
    result
}

async fn repair_locked(
    journal: &Journal,
    trust: &crate::config::Trust,
    catalogs: &Catalogs,
    applied: bool,
) -> Outcome {
    let id = trust.id.as_str();
    let mut db = crate::db::TrustDb::connect(trust, crate::db::Access::ReadWrite).await?;
    let result = async {
        db.lock().await?;
        let rows = db.applied().await?;
        let Some(dirty) = rows.iter().rev().find(|r| r.dirty) else {
            return Err(Failure::config(format!(
                "trust '{id}' has no dirty migration: nothing to repair"
            )));
        };
        let version = dirty.version;
        let mut dropped = Vec::new();
        if applied {
            db.mark_clean(version).await?;
        } else {
            let sql = catalogs
                .for_trust(id)
                .get(version)
                .map(|m| m.up.sql.to_lowercase())
                .unwrap_or_default();
            for index in db.invalid_indexes().await? {
                if sql.contains(&index.to_lowercase()) {
                    db.drop_index(&index).await?;
                    dropped.push(index);
                }
            }
            db.forget(version).await?;
        }
        let event = Event::Repaired {
            trust: id.to_string(),
            version,
            applied,
            dropped_indexes: dropped,
        };
        journal.record(&event).await?;
        if let Some(line) = crate::report::human::describe(&event) {
            print_line(&line);
        }
        Ok(())
    }
    .await;
    db.close().await;
    result
}
