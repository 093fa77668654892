//! The pure planner: migration catalog + each trust's applied history + a rollout plan → what
//! would run, per wave and trust; and what rolling a trust back reverts ([`plan_rollback`]).
//! No I/O: `plan`, dry-runs, the rollback preview and the engine all use it, so what is
//! previewed is what runs.

use std::collections::HashMap;

use serde::Serialize;

use crate::config::plan::Approval;
use crate::config::{Plan, Target};
use crate::db::AppliedMigration;
use crate::exit_codes::ExitCode;
use crate::migrations::{Catalog, Catalogs, Migration, Mode, Reversibility};

/// One migration to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Step {
    /// The migration version.
    pub version: i64,
    /// Continue a batch migration whose dirty tracking row is already recorded.
    pub resume_dirty: bool,
}

/// Why a trust cannot be migrated. Nothing is run on a blocked trust.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Blocker {
    /// An applied migration's file was edited since it was applied.
    #[error("checksum drift: migration {version} was applied with checksum {applied} but its file now has {file}; applied history must not be edited")]
    ChecksumDrift {
        version: i64,
        applied: String,
        file: String,
    },
    /// The trust has a version the catalog does not know (file deleted, or a newer catalog).
    #[error("migration {version} is applied on the trust but not in the migrations directory")]
    UnknownApplied { version: i64 },
    /// A catalog version lower than the trust's latest was never applied: history diverged.
    #[error("migration {version} is in the catalog but was never applied, while later migration {later} was; history diverged")]
    Divergent { version: i64, later: i64 },
    /// A non-transactional migration did not finish.
    #[error("migration {version} is marked dirty: a no-transaction migration started and did not finish. Check whether its statements took effect (on Postgres, an index built CONCURRENTLY may be left INVALID), then run `flotilla repair TRUST --applied` if they did or `flotilla repair TRUST --not-applied` if they did not")]
    Dirty { version: i64 },
    /// The trust is past the plan's target: that is a rollback, not a rollout.
    #[error("the trust is at version {current}, past the plan's target {target}; use rollback to go down")]
    AheadOfTarget { current: i64, target: i64 },
    /// The trust's database could not be read.
    #[error("{message}")]
    Unreadable { message: String, exit: ExitCode },
}

impl Blocker {
    /// The exit code a run stopped by this blocker returns.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Blocker::ChecksumDrift { .. }
            | Blocker::UnknownApplied { .. }
            | Blocker::Divergent { .. } => ExitCode::ChecksumDrift,
            Blocker::Dirty { .. } => ExitCode::MigrationFailed,
            Blocker::AheadOfTarget { .. } => ExitCode::Config,
            Blocker::Unreadable { exit, .. } => *exit,
        }
    }
}

/// What happens to one trust.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Already at the target.
    UpToDate,
    /// These migrations, in order.
    Upgrade { steps: Vec<Step> },
    /// Nothing can run.
    Blocked { blocker: Blocker },
}

impl Action {
    /// Whether migrations are to be applied.
    pub fn is_upgrade(&self) -> bool {
        matches!(self, Action::Upgrade { .. })
    }
}

/// Check a trust's applied history against the catalog and compute the steps to `target`, the
/// way refinery's `verify_migrations` does: any edited, unknown or skipped applied migration
/// blocks the trust before anything runs.
pub fn verify(catalog: &Catalog, applied: &[AppliedMigration], target: i64) -> Action {
    let mut resume = None;
    for a in applied {
        let Some(m) = catalog.get(a.version) else {
            return Action::Blocked {
                blocker: Blocker::UnknownApplied { version: a.version },
            };
        };
        if m.checksum != a.checksum {
            return Action::Blocked {
                blocker: Blocker::ChecksumDrift {
                    version: a.version,
                    applied: a.checksum.clone(),
                    file: m.checksum.clone(),
                },
            };
        }
        if a.dirty {
            if m.up.mode == Mode::Batch {
                // Batches are idempotent by contract: continue where the last run stopped.
                resume = Some(a.version);
            } else {
                return Action::Blocked {
                    blocker: Blocker::Dirty { version: a.version },
                };
            }
        }
    }
    let current = applied.iter().map(|a| a.version).max();
    if let Some(current) = current {
        if let Some(skipped) = catalog
            .migrations()
            .iter()
            .take_while(|m| m.version < current)
            .find(|m| !applied.iter().any(|a| a.version == m.version))
        {
            return Action::Blocked {
                blocker: Blocker::Divergent {
                    version: skipped.version,
                    later: current,
                },
            };
        }
        if current > target {
            return Action::Blocked {
                blocker: Blocker::AheadOfTarget { current, target },
            };
        }
    }
    let mut steps: Vec<Step> = Vec::new();
    if let Some(version) = resume {
        steps.push(Step {
            version,
            resume_dirty: true,
        });
    }
    steps.extend(catalog.range(current, target).map(|m: &Migration| Step {
        version: m.version,
        resume_dirty: false,
    }));
    if steps.is_empty() {
        Action::UpToDate
    } else {
        Action::Upgrade { steps }
    }
}

/// What a trust's database told us.
pub type TrustState = Result<Vec<AppliedMigration>, Blocker>;

/// One trust in a rendered plan.
#[derive(Debug, Clone, Serialize)]
pub struct TrustPlan {
    /// Trust id.
    pub id: String,
    /// Highest applied version, when readable.
    pub current_version: Option<i64>,
    /// What will happen.
    #[serde(flatten)]
    pub action: Action,
}

/// One wave in a rendered plan.
#[derive(Debug, Clone, Serialize)]
pub struct WavePlan {
    /// Wave name.
    pub name: String,
    /// Trusts migrated at once.
    pub concurrency: usize,
    /// Whether an operator must approve the wave.
    pub approval: bool,
    /// Trusts, in order.
    pub trusts: Vec<TrustPlan>,
}

/// The whole rollout, as it would run now.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutPlan {
    /// Plan name.
    pub plan: String,
    /// Target.
    pub target: Target,
    /// Waves, in order.
    pub waves: Vec<WavePlan>,
}

impl RolloutPlan {
    /// Every blocked trust, with its blocker.
    pub fn blocked(&self) -> impl Iterator<Item = (&str, &Blocker)> {
        self.waves.iter().flat_map(|w| {
            w.trusts.iter().filter_map(|t| match &t.action {
                Action::Blocked { blocker } => Some((t.id.as_str(), blocker)),
                _ => None,
            })
        })
    }

    /// The exit code of the most serious blocker (drift before a held lock before a
    /// configuration problem before an unreachable trust), if any trust is blocked.
    pub fn blocked_exit_code(&self) -> Option<ExitCode> {
        let rank = |c: ExitCode| match c {
            ExitCode::ChecksumDrift => 5,
            ExitCode::Locked => 4,
            ExitCode::Config => 3,
            ExitCode::MigrationFailed => 2,
            _ => 1,
        };
        self.blocked()
            .map(|(_, b)| b.exit_code())
            .max_by_key(|c| rank(*c))
    }

    /// Number of migrations that would run, over all trusts.
    pub fn migration_count(&self) -> usize {
        self.waves
            .iter()
            .flat_map(|w| &w.trusts)
            .map(|t| match &t.action {
                Action::Upgrade { steps } => steps.len(),
                _ => 0,
            })
            .sum()
    }
}

/// Plan the whole rollout from each trust's state. A trust missing from `states` is blocked.
pub fn plan_rollout(
    catalogs: &Catalogs,
    plan: &Plan,
    states: &HashMap<String, TrustState>,
) -> RolloutPlan {
    let waves = plan
        .waves
        .iter()
        .map(|w| WavePlan {
            name: w.name.clone(),
            concurrency: w.concurrency,
            approval: w.approval == Approval::Required,
            trusts: w
                .trusts
                .iter()
                .map(|id| {
                    let (current_version, action) = match states.get(id) {
                        Some(Ok(applied)) => (
                            applied.iter().map(|a| a.version).max(),
                            verify(catalogs.for_trust(id), applied, plan.target.version),
                        ),
                        Some(Err(blocker)) => (
                            None,
                            Action::Blocked {
                                blocker: blocker.clone(),
                            },
                        ),
                        None => (
                            None,
                            Action::Blocked {
                                blocker: Blocker::Unreadable {
                                    message: "not read".into(),
                                    exit: ExitCode::Internal,
                                },
                            },
                        ),
                    };
                    TrustPlan {
                        id: id.clone(),
                        current_version,
                        action,
                    }
                })
                .collect(),
        })
        .collect();
    RolloutPlan {
        plan: plan.name.clone(),
        target: plan.target.clone(),
        waves,
    }
}

/// Why a migration on the way down cannot be reverted by a plain rollback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Down {
    /// Its down script undoes it.
    Reversible,
    /// Marked `irreversible`: reverted only when forced.
    Irreversible,
    /// Applied on the trust but not in the catalog: there is no down script to run.
    Missing,
}

/// One migration a rollback reverts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Revert {
    /// The migration version.
    pub version: i64,
    /// Whether its down script can run.
    pub down: Down,
}

/// Why a rollback is refused before anything is reverted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RollbackRefusal {
    /// Migrations marked irreversible would be reverted, and the rollback is not forced.
    #[error("migration(s) {versions:?} are marked irreversible (pass --force to run their down scripts anyway)")]
    Irreversible {
        /// Every irreversible migration on the way down, in revert order.
        versions: Vec<i64>,
    },
    /// An applied migration is not in the catalog: it has no down script (forcing cannot help).
    #[error("migration {version} is not in the catalog: cannot roll it back")]
    NotInCatalog {
        /// The first such migration in revert order.
        version: i64,
    },
}

/// What rolling a trust back to `to` reverts: computed once, from the catalog and the trust's
/// applied history, for both the preview (`rollback --dry-run`, the confirmation) and the
/// execution (the operator's rollback and the gate's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RollbackPlan {
    /// The trust's version now (its highest applied migration).
    pub from: Option<i64>,
    /// The version it is rolled back to (`None`: before the first migration).
    pub to: Option<i64>,
    /// The migrations to revert, in order (highest first).
    pub steps: Vec<Revert>,
}

impl RollbackPlan {
    /// Whether nothing is to be reverted.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The versions to revert, in order.
    pub fn versions(&self) -> Vec<i64> {
        self.steps.iter().map(|s| s.version).collect()
    }

    /// The versions to revert that are marked irreversible, in revert order.
    pub fn irreversible(&self) -> Vec<i64> {
        self.with_down(Down::Irreversible)
    }

    /// The versions to revert that are not in the catalog (no down script), in revert order.
    pub fn missing(&self) -> Vec<i64> {
        self.with_down(Down::Missing)
    }

    fn with_down(&self, down: Down) -> Vec<i64> {
        self.steps
            .iter()
            .filter(|s| s.down == down)
            .map(|s| s.version)
            .collect()
    }

    /// Why the rollback must not run (`force`: irreversible migrations may be reverted), if
    /// so. Irreversible migrations are named first: forcing is the way past them; a missing
    /// migration refuses even when forced.
    pub fn refusal(&self, force: bool) -> Option<RollbackRefusal> {
        let irreversible = self.irreversible();
        if !force && !irreversible.is_empty() {
            return Some(RollbackRefusal::Irreversible {
                versions: irreversible,
            });
        }
        self.missing()
            .first()
            .map(|&version| RollbackRefusal::NotInCatalog { version })
    }
}

/// Plan rolling a trust back to `to`: every applied migration above `to`, highest first, each
/// with whether its down script can run. Pure: no database is read.
pub fn plan_rollback(
    catalog: &Catalog,
    applied: &[AppliedMigration],
    to: Option<i64>,
) -> RollbackPlan {
    let steps = applied
        .iter()
        .rev()
        .filter(|a| to.is_none_or(|t| a.version > t))
        .map(|a| Revert {
            version: a.version,
            down: match catalog.get(a.version) {
                None => Down::Missing,
                Some(m) if m.reversibility == Reversibility::Irreversible => Down::Irreversible,
                Some(_) => Down::Reversible,
            },
        })
        .collect();
    RollbackPlan {
        from: applied.iter().map(|a| a.version).max(),
        to,
        steps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    /// A catalog of `versions`, each migration's up script starting with `header(version)`.
    fn catalog_of(versions: &[i64], header: impl Fn(i64) -> &'static str) -> Catalog {
        let migrations = versions
            .iter()
            .map(|&v| {
                Migration::new(
                    v,
                    format!("m{v}"),
                    (
                        PathBuf::from(format!("{v}_m{v}.up.sql")),
                        format!("{}SELECT {v};", header(v)),
                    ),
                    (
                        PathBuf::from(format!("{v}_m{v}.down.sql")),
                        "SELECT 0;".into(),
                    ),
                )
                .unwrap()
            })
            .collect();
        Catalog::from_parts(Path::new("migrations"), migrations, vec![])
    }

    fn catalog(versions: &[(i64, Mode)]) -> Catalog {
        let modes: std::collections::BTreeMap<i64, Mode> = versions.iter().copied().collect();
        let list: Vec<i64> = versions.iter().map(|(v, _)| *v).collect();
        catalog_of(&list, |v| match modes[&v] {
            Mode::Transaction => "",
            Mode::NoTransaction => "-- flotilla: no-transaction\n",
            Mode::Batch => "-- flotilla: batch\n",
        })
    }

    fn simple(versions: &[i64]) -> Catalog {
        catalog(
            &versions
                .iter()
                .map(|&v| (v, Mode::Transaction))
                .collect::<Vec<_>>(),
        )
    }

    fn applied(cat: &Catalog, versions: &[i64]) -> Vec<AppliedMigration> {
        versions
            .iter()
            .map(|&v| AppliedMigration {
                version: v,
                description: format!("m{v}"),
                checksum: cat.get(v).map(|m| m.checksum.clone()).unwrap_or_default(),
                dirty: false,
            })
            .collect()
    }

    fn versions(action: &Action) -> Vec<i64> {
        match action {
            Action::Upgrade { steps } => steps.iter().map(|s| s.version).collect(),
            other => panic!("expected an upgrade, got {other:?}"),
        }
    }

    #[test]
    fn fresh_trust_gets_every_migration_up_to_the_target() {
        let cat = simple(&[1, 2, 3, 4]);
        assert_eq!(versions(&verify(&cat, &[], 3)), vec![1, 2, 3]);
    }

    #[test]
    fn partially_upgraded_trust_gets_only_the_missing_tail() {
        let cat = simple(&[1, 2, 3, 4]);
        assert_eq!(
            versions(&verify(&cat, &applied(&cat, &[1, 2]), 4)),
            vec![3, 4]
        );
    }

    #[test]
    fn trust_at_target_is_up_to_date() {
        let cat = simple(&[1, 2]);
        assert_eq!(verify(&cat, &applied(&cat, &[1, 2]), 2), Action::UpToDate);
    }

    #[test]
    fn verify_fails_on_edited_applied_migration() {
        let cat = simple(&[1, 2]);
        let mut history = applied(&cat, &[1]);
        history[0].checksum = "0000".into();
        assert!(matches!(
            verify(&cat, &history, 2),
            Action::Blocked {
                blocker: Blocker::ChecksumDrift { version: 1, .. }
            }
        ));
    }

    #[test]
    fn verify_fails_on_applied_version_missing_from_catalog() {
        let cat = simple(&[1, 2]);
        let mut history = applied(&cat, &[1]);
        history.push(AppliedMigration {
            version: 7,
            description: "x".into(),
            checksum: "c".into(),
            dirty: false,
        });
        assert!(matches!(
            verify(&cat, &history, 2),
            Action::Blocked {
                blocker: Blocker::UnknownApplied { version: 7 }
            }
        ));
    }

    #[test]
    fn verify_fails_on_divergent_history_with_a_skipped_version() {
        let cat = simple(&[1, 2, 3]);
        let history = applied(&cat, &[1, 3]);
        assert!(matches!(
            verify(&cat, &history, 3),
            Action::Blocked {
                blocker: Blocker::Divergent {
                    version: 2,
                    later: 3
                }
            }
        ));
    }

    #[test]
    fn dirty_no_transaction_migration_blocks_the_trust() {
        let cat = catalog(&[
            (1, Mode::Transaction),
            (2, Mode::NoTransaction),
            (3, Mode::Transaction),
        ]);
        let mut history = applied(&cat, &[1, 2]);
        history[1].dirty = true;
        let action = verify(&cat, &history, 3);
        assert!(matches!(
            action,
            Action::Blocked {
                blocker: Blocker::Dirty { version: 2 }
            }
        ));
        if let Action::Blocked { blocker } = action {
            assert_eq!(blocker.exit_code(), ExitCode::MigrationFailed);
        }
    }

    #[test]
    fn dirty_batch_migration_resumes_before_the_rest() {
        let cat = catalog(&[
            (1, Mode::Transaction),
            (2, Mode::Batch),
            (3, Mode::Transaction),
        ]);
        let mut history = applied(&cat, &[1, 2]);
        history[1].dirty = true;
        match verify(&cat, &history, 3) {
            Action::Upgrade { steps } => assert_eq!(
                steps,
                vec![
                    Step {
                        version: 2,
                        resume_dirty: true
                    },
                    Step {
                        version: 3,
                        resume_dirty: false
                    }
                ]
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn trust_past_the_target_is_not_rolled_back_by_a_rollout() {
        let cat = simple(&[1, 2, 3]);
        let action = verify(&cat, &applied(&cat, &[1, 2, 3]), 2);
        assert!(matches!(
            action,
            Action::Blocked {
                blocker: Blocker::AheadOfTarget {
                    current: 3,
                    target: 2
                }
            }
        ));
    }

    #[test]
    fn drift_blockers_exit_with_the_checksum_code() {
        let b = Blocker::ChecksumDrift {
            version: 1,
            applied: "a".into(),
            file: "b".into(),
        };
        assert_eq!(b.exit_code(), ExitCode::ChecksumDrift);
        assert_eq!(
            Blocker::UnknownApplied { version: 1 }.exit_code(),
            ExitCode::ChecksumDrift
        );
    }

    #[test]
    fn rollout_plan_keeps_wave_order_and_marks_unread_trusts_blocked() {
        let cat = simple(&[1, 2]);
        let plan = Plan {
            name: "p".into(),
            path: PathBuf::from("p.yaml"),
            target: Target {
                version: 2,
                release: None,
            },
            waves: vec![
                crate::config::Wave {
                    name: "a".into(),
                    trusts: vec!["x".into()],
                    concurrency: 1,
                    approval: Approval::None,
                    soak: None,
                },
                crate::config::Wave {
                    name: "b".into(),
                    trusts: vec!["y".into(), "z".into()],
                    concurrency: 2,
                    approval: Approval::Required,
                    soak: None,
                },
            ],
            health: Default::default(),
            on_regression: Default::default(),
            max_failed_trusts: 0,
            timeouts: Default::default(),
        };
        let mut states = HashMap::new();
        states.insert("x".to_string(), Ok(applied(&cat, &[1])));
        states.insert("y".to_string(), Ok(applied(&cat, &[1, 2])));
        let rendered = plan_rollout(&Catalogs::shared(cat.clone()), &plan, &states);
        assert_eq!(rendered.waves.len(), 2);
        assert_eq!(versions(&rendered.waves[0].trusts[0].action), vec![2]);
        assert_eq!(rendered.waves[1].trusts[0].action, Action::UpToDate);
        assert!(rendered.waves[1].approval);
        let blocked: Vec<&str> = rendered.blocked().map(|(id, _)| id).collect();
        assert_eq!(blocked, vec!["z"]);
        assert_eq!(rendered.migration_count(), 1);
    }

    fn with_irreversible(versions: &[i64], irreversible: &[i64]) -> Catalog {
        catalog_of(versions, |v| {
            if irreversible.contains(&v) {
                "-- flotilla: irreversible\n"
            } else {
                ""
            }
        })
    }

    #[test]
    fn rollback_reverts_every_applied_migration_above_the_target_highest_first() {
        let cat = simple(&[1, 2, 3, 4]);
        let plan = plan_rollback(&cat, &applied(&cat, &[1, 2, 3, 4]), Some(2));
        assert_eq!(plan.from, Some(4));
        assert_eq!(plan.to, Some(2));
        assert_eq!(plan.versions(), vec![4, 3]);
        assert!(plan.steps.iter().all(|s| s.down == Down::Reversible));
        assert!(plan.irreversible().is_empty());
        assert!(plan.missing().is_empty());
        assert_eq!(plan.refusal(false), None);
    }

    #[test]
    fn rollback_to_nothing_reverts_the_whole_history() {
        let cat = simple(&[1, 2]);
        let plan = plan_rollback(&cat, &applied(&cat, &[1, 2]), None);
        assert_eq!(plan.versions(), vec![2, 1]);
        assert_eq!(plan.from, Some(2));
        assert_eq!(plan.to, None);
    }

    #[test]
    fn rollback_at_or_below_the_target_has_nothing_to_revert() {
        let cat = simple(&[1, 2, 3]);
        let plan = plan_rollback(&cat, &applied(&cat, &[1, 2]), Some(3));
        assert!(plan.is_empty());
        assert_eq!(plan.from, Some(2));
        assert_eq!(plan.refusal(false), None);
        let fresh = plan_rollback(&cat, &[], None);
        assert!(fresh.is_empty());
        assert_eq!(fresh.from, None);
    }

    #[test]
    fn rollback_refuses_irreversible_migrations_unless_forced() {
        let cat = with_irreversible(&[1, 2, 3, 4], &[2, 4]);
        let plan = plan_rollback(&cat, &applied(&cat, &[1, 2, 3, 4]), Some(1));
        assert_eq!(plan.versions(), vec![4, 3, 2]);
        assert_eq!(plan.irreversible(), vec![4, 2]);
        let refusal = plan.refusal(false).expect("refused");
        assert_eq!(
            refusal,
            RollbackRefusal::Irreversible {
                versions: vec![4, 2]
            }
        );
        assert_eq!(
            refusal.to_string(),
            "migration(s) [4, 2] are marked irreversible (pass --force to run their down scripts anyway)"
        );
        assert_eq!(plan.refusal(true), None);
    }

    #[test]
    fn rollback_below_the_irreversible_ones_is_not_refused() {
        let cat = with_irreversible(&[1, 2, 3], &[1]);
        let plan = plan_rollback(&cat, &applied(&cat, &[1, 2, 3]), Some(1));
        assert_eq!(plan.versions(), vec![3, 2]);
        assert_eq!(plan.refusal(false), None);
    }

    #[test]
    fn rollback_of_a_migration_missing_from_the_catalog_is_refused_even_when_forced() {
        let cat = simple(&[1, 2]);
        let mut history = applied(&cat, &[1, 2]);
        history.push(AppliedMigration {
            version: 3,
            description: "gone".into(),
            checksum: "c".into(),
            dirty: false,
        });
        let plan = plan_rollback(&cat, &history, Some(1));
        assert_eq!(plan.versions(), vec![3, 2]);
        assert_eq!(plan.missing(), vec![3]);
        assert_eq!(plan.steps[0].down, Down::Missing);
        let refusal = plan.refusal(true).expect("refused");
        assert_eq!(refusal, RollbackRefusal::NotInCatalog { version: 3 });
        assert_eq!(
            refusal.to_string(),
            "migration 3 is not in the catalog: cannot roll it back"
        );
    }

    #[test]
    fn rollback_names_irreversible_migrations_before_missing_ones() {
        let cat = with_irreversible(&[1, 2], &[2]);
        let mut history = applied(&cat, &[1, 2]);
        history.push(AppliedMigration {
            version: 3,
            description: "gone".into(),
            checksum: "c".into(),
            dirty: false,
        });
        let plan = plan_rollback(&cat, &history, None);
        assert_eq!(
            plan.refusal(false),
            Some(RollbackRefusal::Irreversible { versions: vec![2] })
        );
        assert_eq!(
            plan.refusal(true),
            Some(RollbackRefusal::NotInCatalog { version: 3 })
        );
    }
}
