//! Rolling trusts back: the gate's rollback of a trust that failed (to the version it was at
//! before the upgrade, its integrity then equal to the baseline), finishing a rollback an
//! interrupted run started, and the operator's `flotilla rollback` of one trust. What to revert
//! and what refuses comes from the planner's [`plan_rollback`], as for the preview.

use std::collections::BTreeSet;

use super::events::Event;
use super::run::{Engine, Watched};
use super::watch::snapshot_errors;
use crate::db::{Access, TrustDb};
use crate::health::gate::{judge, Verdict, Window};
use crate::health::probes::{ProbeParams, Rows, Scope, Snapshot};
use crate::journal::replay::Resumed;
use crate::migrations::Catalog;
use crate::plan::{plan_rollback, RollbackRefusal};

/// What an operator's rollback of one trust did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolledBack {
    /// The version the trust was at.
    pub from: Option<i64>,
    /// The version it is at now.
    pub to: Option<i64>,
    /// Down migrations run.
    pub migrations: usize,
    /// How integrity was verified.
    pub verified: String,
}

impl Engine<'_> {
    /// Down migrations in reverse to the version the trust was at, then integrity must equal
    /// the pre-upgrade figures.
    pub(super) async fn rollback_trust(&self, w: &Watched) -> Result<(), String> {
        if let Some(r) = self.remote {
            return self.rollback_remote(r, w).await;
        }
        let id = w.trust.as_str();
        let trust = self
            .inventory
            .get(id)
            .ok_or_else(|| format!("trust '{id}' is not in the inventory"))?;
        let catalog = self.catalogs.for_trust(id);
        let mut db = TrustDb::connect(trust, Access::ReadWrite)
            .await
            .map_err(|e| e.to_string())?;
        let result = self.revert_locked(&mut db, catalog, w.from, false).await;
        db.close().await;
        let version = result?;
        let after = self
            .measure(
                id,
                &w.wave,
                trust,
                &w.params,
                &w.rewrites,
                Rows::Of(&w.baseline),
                Scope::Integrity,
                "after-rollback",
            )
            .await;
        let j = judge(
            &self.plan.health,
            &w.baseline,
            &after,
            Window::AfterRollback,
        );
        self.emit_verdict(&w.wave, id, Window::AfterRollback, &j.verdict, Vec::new())
            .await;
        match j.verdict {
            Verdict::Pass => {
                self.emit(Event::RollbackFinished {
                    trust: id.to_string(),
                    version,
                    release: self.catalogs.base().describe(version),
                })
                .await
            }
            other => {
                return Err(format!(
                    "rolled back to {} but the data does not match the pre-upgrade figures: {}",
                    self.catalogs.base().describe(version),
                    other.reasons().join("; ")
                ))
            }
        }
        Ok(())
    }

    /// Lock the trust, plan the rollback to `to` from what it really holds now, refuse what
    /// cannot be reverted (irreversible migrations unless `force`), then run the down
    /// migrations in order, each recorded before and after. Returns the version reached.
    async fn revert_locked(
        &self,
        db: &mut TrustDb,
        catalog: &Catalog,
        to: Option<i64>,
        force: bool,
    ) -> Result<Option<i64>, String> {
        db.lock().await.map_err(|e| e.to_string())?;
        let t = self.plan.timeouts;
        db.set_timeouts(t.lock, t.statement)
            .await
            .map_err(|e| e.to_string())?;
        let applied = db.applied().await.map_err(|e| e.to_string())?;
        let plan = plan_rollback(catalog, &applied, to);
        match plan.refusal(force) {
            None => {}
            Some(RollbackRefusal::Irreversible { versions }) => {
                let first = versions.first().and_then(|v| catalog.get(*v));
                return Err(match first {
                    Some(m) => format!(
                        "migration {m} is marked irreversible: refusing to roll it back automatically"
                    ),
                    None => RollbackRefusal::Irreversible { versions }.to_string(),
                });
            }
            Some(refusal) => return Err(refusal.to_string()),
        }
        let mut current = plan.from;
        self.emit(Event::RollbackStarted {
            trust: db.trust().to_string(),
            from: self.catalogs.base().describe(current),
            to: self.catalogs.base().describe(to),
            migrations: plan.steps.len(),
        })
        .await;
        for step in &plan.steps {
            let Some(m) = catalog.get(step.version) else {
                // Refused above: every step is in the catalog.
                return Err(RollbackRefusal::NotInCatalog {
                    version: step.version,
                }
                .to_string());
            };
            self.emit(Event::MigrationReverting {
                trust: db.trust().to_string(),
                version: m.version,
            })
            .await;
            db.revert(m).await.map_err(|e| e.to_string())?;
            current = applied
                .iter()
                .map(|a| a.version)
                .filter(|v| *v < m.version)
                .max();
            self.emit(Event::MigrationReverted {
                trust: db.trust().to_string(),
                version: m.version,
                now_at: current,
            })
            .await;
        }
        Ok(current)
    }

    /// Finish a rollback an interrupted run started: down migrations to the version recorded
    /// before the upgrade, then the same integrity verification as the gate's rollback.
    pub async fn finish_rollback(&self, id: &str, resumed: &Resumed) -> Result<(), String> {
        let Some(recorded) = resumed.baselines.get(id) else {
            return Err(format!(
                "the journal has no pre-upgrade baseline for trust '{id}': roll it back by hand"
            ));
        };
        let w = self.watched_from_journal(id, &recorded.wave, recorded);
        self.rollback_trust(&w).await
    }

    /// `flotilla rollback` for one trust: down migrations in reverse to `to`, then integrity.
    /// With `recorded` (the baseline a run measured when the trust was at `to`), the figures
    /// must equal it exactly, as after the gate's own rollback; without, row counts and the
    /// hash of every key column the reverted migrations do not declare they rewrite must be
    /// unchanged by the rollback.
    pub async fn roll_back(
        &self,
        id: &str,
        to: Option<i64>,
        recorded: Option<&Snapshot>,
        force: bool,
    ) -> Result<RolledBack, String> {
        let trust = self
            .inventory
            .get(id)
            .ok_or_else(|| format!("trust '{id}' is not in the inventory"))?;
        let catalog = self.catalogs.for_trust(id);
        let integrity_only = crate::config::health::Health {
            integrity: self.plan.health.integrity.clone(),
            ..Default::default()
        };
        let mut db = TrustDb::connect(trust, Access::ReadWrite)
            .await
            .map_err(|e| e.to_string())?;
        let applied = match db.applied().await {
            Ok(a) => a,
            Err(e) => {
                db.close().await;
                return Err(e.to_string());
            }
        };
        // What the rollback reverts, and the columns those migrations declare they rewrite.
        let planned = plan_rollback(catalog, &applied, to);
        let from = planned.from;
        let rewrites: BTreeSet<(String, String)> = planned
            .steps
            .iter()
            .filter_map(|s| catalog.get(s.version))
            .flat_map(|m| m.rewrites.iter().cloned())
            .collect();
        let params = ProbeParams::new();
        let before = self
            .measure(
                id,
                "rollback",
                trust,
                &params,
                &rewrites,
                Rows::Fresh,
                Scope::Integrity,
                "before-rollback",
            )
            .await;
        let problems = snapshot_errors(&before);
        if !problems.is_empty() {
            db.close().await;
            return Err(format!(
                "cannot measure integrity before the rollback: {}",
                problems.join("; ")
            ));
        }
        let result = self.revert_locked(&mut db, catalog, to, force).await;
        db.close().await;
        let now_at = match result {
            Ok(v) => v,
            Err(error) => {
                self.emit(Event::RollbackFailed {
                    trust: id.to_string(),
                    error: error.clone(),
                })
                .await;
                return Err(error);
            }
        };
        let migrations = planned.steps.len();
        let after = self
            .measure(
                id,
                "rollback",
                trust,
                &params,
                &rewrites,
                Rows::Of(recorded.unwrap_or(&before)),
                Scope::Integrity,
                "after-rollback",
            )
            .await;
        let (judgement, verified) = match recorded {
            Some(baseline) => (
                judge(&integrity_only, baseline, &after, Window::AfterRollback),
                "integrity equals the figures recorded before the upgrade".to_string(),
            ),
            None => (
                judge(&integrity_only, &before, &after, Window::PostUpgrade),
                "row counts and undeclared key-column hashes unchanged by the rollback".to_string(),
            ),
        };
        self.emit_verdict(
            "rollback",
            id,
            Window::AfterRollback,
            &judgement.verdict,
            Vec::new(),
        )
        .await;
        if judgement.verdict != Verdict::Pass {
            let error = format!(
                "rolled back to {} but integrity does not match: {}",
                self.catalogs.base().describe(now_at),
                judgement.verdict.reasons().join("; ")
            );
            self.emit(Event::RollbackFailed {
                trust: id.to_string(),
                error: error.clone(),
            })
            .await;
            return Err(error);
        }
        self.emit(Event::RollbackFinished {
            trust: id.to_string(),
            version: now_at,
            release: self.catalogs.base().describe(now_at),
        })
        .await;
        Ok(RolledBack {
            from,
            to: now_at,
            migrations,
            verified,
        })
    }
}
