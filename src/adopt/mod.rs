//! `flotilla adopt`: take over trusts another tool (sqlx-cli, Flyway, golang-migrate, diesel,
//! dbmate) has migrated until now, without running anything: read the tool's tracking table
//! ([`foreign`]), check it against the migration files (every version it lists is a file,
//! with the checksum the tool kept where it kept one ([`checksum`]), and no file below the
//! newest listed version is missing from it), then write flotilla's own tracking rows for those
//! versions in one transaction per trust. The other tool's table is left as it was.
//!
//! The decisions are pure ([`adopted_versions`], [`baseline_versions`], [`against_flotilla`]),
//! so what `--dry-run` shows is what a real adoption writes.

pub mod checksum;
pub mod foreign;

use std::collections::BTreeSet;

use crate::db::{sql, AppliedMigration, DbError, Dialect, TrustDb};
use crate::exit_codes::ExitCode;
use crate::migrations::Catalog;

pub use foreign::{History, Listed, Read, Recorded, Tool, Unusable};

/// Why a trust is not adopted. Nothing is written on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The documented exit code: 7 when the history disagrees with the files (or with
    /// flotilla's own rows), 4 when a migration failed half-way under the other tool, 2 when
    /// there is no history to take over.
    pub code: ExitCode,
    /// What is wrong, naming the versions and files.
    pub message: String,
}

impl Refusal {
    fn drift(message: impl Into<String>) -> Refusal {
        Refusal {
            code: ExitCode::ChecksumDrift,
            message: message.into(),
        }
    }
}

impl From<Unusable> for Refusal {
    fn from(u: Unusable) -> Refusal {
        match u {
            Unusable::Failed(message) => Refusal {
                code: ExitCode::MigrationFailed,
                message,
            },
            Unusable::Disagrees(message) => Refusal::drift(message),
        }
    }
}

/// Which of a set of refusals' codes a command exits with: drift before a failed migration
/// before anything else.
pub fn gravest(codes: impl IntoIterator<Item = ExitCode>) -> Option<ExitCode> {
    let rank = |c: &ExitCode| match c {
        ExitCode::ChecksumDrift => 0,
        ExitCode::MigrationFailed => 1,
        ExitCode::Locked => 2,
        _ => 3,
    };
    codes.into_iter().min_by_key(rank)
}

fn file_of(catalog: &Catalog, version: i64) -> String {
    catalog
        .get(version)
        .map(|m| m.up.path.display().to_string())
        .unwrap_or_else(|| "?".into())
}

/// The catalog versions a tool's history says are applied, checked against the files.
/// `Ok(empty)` when the history lists nothing.
pub fn adopted_versions(
    tool: Tool,
    catalog: &Catalog,
    history: &History,
) -> Result<Vec<i64>, Refusal> {
    let table = tool.table();
    match history {
        History::Missing => Err(Refusal {
            code: ExitCode::Config,
            message: format!(
                "there is no {table} table: nothing migrated by {} to take over (for a database with no usable history, mark the migrations up to its version with --baseline VERSION)",
                tool.name()
            ),
        }),
        History::Current(None) => Ok(Vec::new()),
        History::Current(Some((text, key))) => {
            if catalog.get(*key).is_none() {
                return Err(Refusal::drift(format!(
                    "{table} says the database is at version {text}, which is not a migration in {}",
                    catalog.dir().display()
                )));
            }
            // golang-migrate has no row per version: being at a version means every one up
            // to it ran.
            Ok(catalog
                .migrations()
                .iter()
                .map(|m| m.version)
                .take_while(|v| v <= key)
                .collect())
        }
        History::Rows { listed, baseline } => {
            let mut problems = Vec::new();
            let mut set = BTreeSet::new();
            if let Some((text, key)) = baseline {
                set.extend(
                    catalog
                        .migrations()
                        .iter()
                        .map(|m| m.version)
                        .take_while(|v| v <= key),
                );
                if set.is_empty() {
                    problems.push(format!(
                        "{table}'s baseline {text} is below every migration in {}",
                        catalog.dir().display()
                    ));
                }
            }
            for l in listed {
                let named = match &l.label {
                    Some(label) => format!("version {} ({label})", l.text),
                    None => format!("version {}", l.text),
                };
                let Some(m) = catalog.get(l.key) else {
                    // A Flyway history against files named with plain numbers: say how the
                    // two kinds of versions meet.
                    let hint = match crate::migrations::version::digits_key(&l.text) {
                        Ok(digits) if tool == Tool::Flyway && catalog.get(digits).is_some() => {
                            format!(
                                " (Flyway's version {} is flotilla's version {}, not {digits}: name the file {}_..., as Flyway's own V{}__ files are read)",
                                l.text, l.key, l.key, l.text
                            )
                        }
                        _ => String::new(),
                    };
                    problems.push(format!(
                        "{table} lists {named}, which is not a migration in {}{hint}",
                        catalog.dir().display()
                    ));
                    continue;
                };
                let path = m.up.path.display();
                if let Some(recorded) = &l.checksum {
                    let bytes = match std::fs::read(&m.up.path) {
                        Ok(b) => b,
                        Err(e) => {
                            problems.push(format!("cannot read {path}: {e}"));
                            continue;
                        }
                    };
                    match recorded {
                        Recorded::Sha384(kept) => {
                            let now = checksum::sqlx(&bytes);
                            if !kept.eq_ignore_ascii_case(&now) {
                                problems.push(format!(
                                    "{named}: {path} has SHA-384 {now}, but sqlx recorded {kept} when it ran: the file was edited after it was applied"
                                ));
                            }
                        }
                        Recorded::Crc32(kept) => {
                            let now = checksum::flyway(&bytes);
                            match kept {
                                Some(kept) if *kept == now => {}
                                Some(kept) => problems.push(format!(
                                    "{named}: {path} has Flyway checksum {now}, but Flyway recorded {kept} when it ran: the file was edited after it was applied"
                                )),
                                None => problems.push(format!(
                                    "{named}: {table} recorded no checksum, so {path} cannot be shown to be the script that ran"
                                )),
                            }
                        }
                    }
                }
                set.insert(l.key);
            }
            if let Some(&highest) = set.iter().next_back() {
                let gaps: Vec<String> = catalog
                    .migrations()
                    .iter()
                    .take_while(|m| m.version < highest)
                    .filter(|m| !set.contains(&m.version))
                    .map(|m| format!("{} ({})", m.version, m.up.path.display()))
                    .collect();
                if !gaps.is_empty() {
                    problems.push(format!(
                        "{table} does not list {}, below version {highest} which it does list: those migrations never ran here, or ran under another name; history diverged",
                        gaps.join(", ")
                    ));
                }
            }
            if problems.is_empty() {
                Ok(set.into_iter().collect())
            } else {
                Err(Refusal::drift(problems.join("; ")))
            }
        }
    }
}

/// `--baseline VERSION`: every catalog migration up to `version`, which must be one of them.
pub fn baseline_versions(catalog: &Catalog, version: i64) -> Result<Vec<i64>, Refusal> {
    if catalog.get(version).is_none() {
        return Err(Refusal {
            code: ExitCode::Config,
            message: format!(
                "--baseline {version} is not a migration in {}: the baseline is the last migration the database already has",
                catalog.dir().display()
            ),
        });
    }
    Ok(catalog
        .migrations()
        .iter()
        .map(|m| m.version)
        .take_while(|v| *v <= version)
        .collect())
}

/// Check flotilla's own rows on the trust against the versions to record: `Ok(true)` when
/// they already record exactly those (adopted before; flotilla may have applied newer ones
/// since), `Ok(false)` when there are none, a refusal when they disagree. `baseline`: a
/// baseline refuses any flotilla row past it.
pub fn against_flotilla(
    catalog: &Catalog,
    versions: &[i64],
    flotilla: &[AppliedMigration],
    baseline: bool,
) -> Result<bool, Refusal> {
    if flotilla.is_empty() {
        return Ok(false);
    }
    let table = sql::TRACKING_TABLE;
    for row in flotilla {
        let Some(m) = catalog.get(row.version) else {
            return Err(Refusal::drift(format!(
                "{table} already lists migration {}, which is not in {}",
                row.version,
                catalog.dir().display()
            )));
        };
        if m.checksum != row.checksum {
            return Err(Refusal::drift(format!(
                "{table} already lists migration {} with checksum {}, but {} now has {}",
                row.version,
                row.checksum,
                m.up.path.display(),
                m.checksum
            )));
        }
        if row.dirty {
            return Err(Refusal {
                code: ExitCode::MigrationFailed,
                message: format!(
                    "{table} marks migration {} dirty: settle it with `flotilla repair` first",
                    row.version
                ),
            });
        }
    }
    let highest = versions.last().copied();
    if baseline {
        if let Some(past) = flotilla.iter().find(|r| Some(r.version) > highest) {
            return Err(Refusal::drift(format!(
                "{table} already lists migration {} ({}), past the baseline {}: the trust has flotilla history, so there is nothing to baseline",
                past.version,
                file_of(catalog, past.version),
                highest.map_or_else(|| "-".into(), |h| h.to_string())
            )));
        }
    }
    let have: BTreeSet<i64> = flotilla
        .iter()
        .map(|r| r.version)
        .filter(|v| Some(*v) <= highest)
        .collect();
    let want: BTreeSet<i64> = versions.iter().copied().collect();
    if have == want {
        return Ok(true);
    }
    let missing: Vec<String> = want.difference(&have).map(|v| v.to_string()).collect();
    let extra: Vec<String> = have.difference(&want).map(|v| v.to_string()).collect();
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("lacks {}", missing.join(", ")));
    }
    if !extra.is_empty() {
        parts.push(format!("has {} besides", extra.join(", ")));
    }
    Err(Refusal::drift(format!(
        "{table} already has rows that disagree with the history to record: it {}; settle which is right before adopting",
        parts.join(" and ")
    )))
}

/// Write flotilla's tracking rows for `versions` (the same statement, columns and checksums
/// as a migration flotilla applies itself, taking no time), in one transaction, creating the
/// tracking table if needed. Nothing is written if any row fails.
pub async fn record(db: &mut TrustDb, catalog: &Catalog, versions: &[i64]) -> Result<(), DbError> {
    let begin = match db.dialect() {
        Dialect::Sqlite => "BEGIN IMMEDIATE",
        Dialect::Postgres => "BEGIN",
    };
    let mut script = format!("{begin};\n{};\n", sql::CREATE_TRACKING_TABLE);
    for v in versions {
        let Some(m) = catalog.get(*v) else { continue };
        // Replace from the highest placeholder down so $1 does not clobber $10.
        let values = [
            m.version.to_string(),
            sql::quote_literal(&m.description),
            sql::quote_literal(&m.checksum),
            "0".to_string(),
            "FALSE".to_string(),
        ];
        let mut insert = sql::INSERT_APPLIED.to_string();
        for (i, value) in values.iter().enumerate().rev() {
            insert = insert.replace(&format!("${}", i + 1), value);
        }
        script.push_str(&insert);
        script.push_str(";\n");
    }
    script.push_str("COMMIT;\n");
    let result = db
        .execute_script(&script, "recording the adopted migrations")
        .await;
    if result.is_err() {
        // The transaction is still open (SQLite) or aborted (Postgres): end it, so nothing
        // of it is kept whatever the connection does next.
        let _ = db
            .execute_script("ROLLBACK", "rolling back the adoption")
            .await;
    }
    result.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrations::{Migration, Mode, Reversibility, Script};
    use std::path::{Path, PathBuf};

    fn catalog(dir: &Path, versions: &[i64]) -> Catalog {
        let migrations = versions
            .iter()
            .map(|&v| {
                let up = dir.join(format!("{v}_m.up.sql"));
                std::fs::write(&up, format!("CREATE TABLE t{v} (id INTEGER);\n")).unwrap();
                let script = |path: PathBuf| Script {
                    path,
                    sql: String::new(),
                    mode: Mode::Transaction,
                };
                Migration {
                    version: v,
                    label: v.to_string(),
                    description: "m".into(),
                    up: script(up),
                    down: script(dir.join(format!("{v}_m.down.sql"))),
                    reversibility: Reversibility::Reversible,
                    checksum: format!("sum{v}"),
                    rewrites: Vec::new(),
                }
            })
            .collect();
        Catalog::from_parts(dir, migrations, Vec::new())
    }

    fn listed(v: i64, checksum: Option<Recorded>) -> Listed {
        Listed {
            text: v.to_string(),
            key: v,
            checksum,
            label: None,
        }
    }

    fn rows(listed: Vec<Listed>) -> History {
        History::Rows {
            listed,
            baseline: None,
        }
    }

    fn sha(dir: &Path, v: i64) -> Recorded {
        Recorded::Sha384(checksum::sqlx(
            &std::fs::read(dir.join(format!("{v}_m.up.sql"))).unwrap(),
        ))
    }

    #[test]
    fn rows_matching_the_files_are_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let c = catalog(dir.path(), &[1, 2, 3]);
        let h = rows(vec![
            listed(1, Some(sha(dir.path(), 1))),
            listed(2, Some(sha(dir.path(), 2))),
        ]);
        assert_eq!(adopted_versions(Tool::Sqlx, &c, &h), Ok(vec![1, 2]));
    }

    #[test]
    fn a_wrong_checksum_an_unknown_version_or_a_gap_is_drift() {
        let dir = tempfile::tempdir().unwrap();
        let c = catalog(dir.path(), &[1, 2, 3]);
        let bad = rows(vec![listed(1, Some(Recorded::Sha384("00".into())))]);
        let r = adopted_versions(Tool::Sqlx, &c, &bad).unwrap_err();
        assert_eq!(r.code, ExitCode::ChecksumDrift);
        assert!(r.message.contains("1_m.up.sql"), "{}", r.message);
        let unknown = rows(vec![listed(1, None), listed(9, None)]);
        let r = adopted_versions(Tool::Diesel, &c, &unknown).unwrap_err();
        assert!(r.message.contains("version 9"), "{}", r.message);
        let gap = rows(vec![listed(1, None), listed(3, None)]);
        let r = adopted_versions(Tool::Dbmate, &c, &gap).unwrap_err();
        assert!(r.message.contains("2 ("), "{}", r.message);
        let crc = rows(vec![listed(1, Some(Recorded::Crc32(Some(5))))]);
        assert!(adopted_versions(Tool::Flyway, &c, &crc).is_err());
        let null = rows(vec![listed(1, Some(Recorded::Crc32(None)))]);
        assert!(adopted_versions(Tool::Flyway, &c, &null).is_err());
    }

    #[test]
    fn a_flyway_baseline_covers_every_version_up_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let c = catalog(dir.path(), &[1, 2, 3, 4]);
        let crc = checksum::flyway(&std::fs::read(dir.path().join("3_m.up.sql")).unwrap());
        let h = History::Rows {
            listed: vec![listed(3, Some(Recorded::Crc32(Some(crc))))],
            baseline: Some(("2".into(), 2)),
        };
        assert_eq!(adopted_versions(Tool::Flyway, &c, &h), Ok(vec![1, 2, 3]));
    }

    #[test]
    fn golang_migrate_is_everything_up_to_its_version() {
        let dir = tempfile::tempdir().unwrap();
        let c = catalog(dir.path(), &[1, 2, 3]);
        let h = History::Current(Some(("2".into(), 2)));
        assert_eq!(
            adopted_versions(Tool::GolangMigrate, &c, &h),
            Ok(vec![1, 2])
        );
        let h = History::Current(Some(("5".into(), 5)));
        assert_eq!(
            adopted_versions(Tool::GolangMigrate, &c, &h)
                .unwrap_err()
                .code,
            ExitCode::ChecksumDrift
        );
        assert_eq!(
            adopted_versions(Tool::GolangMigrate, &c, &History::Missing)
                .unwrap_err()
                .code,
            ExitCode::Config
        );
    }

    fn applied(v: i64, checksum: &str) -> AppliedMigration {
        AppliedMigration {
            version: v,
            description: "m".into(),
            checksum: checksum.into(),
            dirty: false,
        }
    }

    #[test]
    fn flotilla_rows_already_there_are_consistent_or_refused() {
        let dir = tempfile::tempdir().unwrap();
        let c = catalog(dir.path(), &[1, 2, 3]);
        assert_eq!(against_flotilla(&c, &[1, 2], &[], false), Ok(false));
        let same = [applied(1, "sum1"), applied(2, "sum2")];
        assert_eq!(against_flotilla(&c, &[1, 2], &same, false), Ok(true));
        // flotilla has moved on since: still consistent.
        let later = [applied(1, "sum1"), applied(2, "sum2"), applied(3, "sum3")];
        assert_eq!(against_flotilla(&c, &[1, 2], &later, false), Ok(true));
        // ...but not for a baseline.
        assert!(against_flotilla(&c, &[1, 2], &later, true).is_err());
        let fewer = [applied(1, "sum1")];
        assert!(against_flotilla(&c, &[1, 2], &fewer, false).is_err());
        let edited = [applied(1, "other"), applied(2, "sum2")];
        assert!(against_flotilla(&c, &[1, 2], &edited, false).is_err());
    }

    #[test]
    fn a_baseline_is_a_migration_of_the_catalog() {
        let dir = tempfile::tempdir().unwrap();
        let c = catalog(dir.path(), &[10, 20, 30]);
        assert_eq!(baseline_versions(&c, 20), Ok(vec![10, 20]));
        assert_eq!(
            baseline_versions(&c, 25).unwrap_err().code,
            ExitCode::Config
        );
    }

    #[test]
    fn gravest_prefers_drift() {
        assert_eq!(
            gravest([
                ExitCode::Config,
                ExitCode::ChecksumDrift,
                ExitCode::MigrationFailed
            ]),
            Some(ExitCode::ChecksumDrift)
        );
        assert_eq!(gravest([]), None);
    }
}
