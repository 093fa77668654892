//! Lint that knows the estate: what each lint finding of the migrations a plan would apply
//! means on the plan's real trusts, from their own catalogs (`plan`, `rollout --rehearse`).
//!
//! The findings are the lint's ([`crate::migrations::lint::lint`]) for each catalog and dialect
//! of the plan's trusts, on the migrations at or below the plan's target that at least one trust
//! of the plan has not applied yet. For each finding that names its table and whose rule depends
//! on that table's rows, every trust that would run the statement is read once, read-only:
//!
//! - PostgreSQL: `pg_class.reltuples` and `pg_total_relation_size` of the tables, and a count
//!   bounded at 10,001 rows (`SELECT count(*) FROM (SELECT 1 FROM t LIMIT 10001)`), so a small
//!   table is counted exactly, and whether a table has rows never rests on a stale estimate;
//!   a table over 10,000 rows is given its planner estimate (`~` in the text).
//! - SQLite: `SELECT count(*)` (cheap at the sizes SQLite trusts have).
//!
//! Each trust is read within [`READ_BOUND`]; one that cannot be reached or read in time is said
//! as such and never fails the command. The mapping of rules to what rows mean ([`impact`]):
//!
//! | rule | impact | said |
//! |---|---|---|
//! | `add-not-null-without-default` | fails where the table has rows | `fails on 41 of 56 trusts (patient has rows)` |
//! | `create-index-not-concurrently` | blocks writes while every row is read | `blocks writes on camden for a 12 M-row build (largest, 1.4 GB), 3 of 56 trusts over 1 M rows` |
//! | `add-foreign-key-validated` | blocks writes while every row is checked | `blocks writes on camden while 12 M rows are checked (largest) ...` |
//! | `type-narrowing` | rewrites the table under an exclusive lock | `blocks reads and writes on camden while 12 M rows are rewritten (largest) ...` |
//! | `drop-table`, `drop-column`, `truncate`, `delete-without-where` | loses rows | `loses 3.4 M rows on 41 of 56 trusts (largest: camden, 1.2 M)` |
//! | `update-without-where` | rewrites every row in one transaction | `rewrites 3.4 M rows in one transaction on 41 of 56 trusts (largest: camden, 1.2 M)` |
//!
//! Other rules (parse errors, downs, allow comments...) do not depend on rows and are listed
//! without an annotation.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use serde::Serialize;

use crate::config::{Inventory, Plan, Trust};
use crate::db::sql::{quote_ident, quote_literal};
use crate::db::{Access, DbError, Dialect, TrustDb};
use crate::migrations::lint::{lint, rules, Finding};
use crate::migrations::{Catalog, Catalogs};

/// How long reading one trust's figures may take, connection included.
pub const READ_BOUND: Duration = Duration::from_secs(10);
/// Trusts read at once.
const READ_CONCURRENCY: usize = 8;
/// Rows counted exactly on PostgreSQL before the planner's estimate is used.
const COUNTED_UP_TO: u64 = 10_000;
/// "Large" in the blocking rules' summaries.
const LARGE: u64 = 1_000_000;

/// What a rule's statement does that depends on its table's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Impact {
    /// Fails on a trust where the table has rows.
    FailsWithRows,
    /// Blocks writes to the table while an index is built from every row.
    BlocksWritesBuilding,
    /// Blocks writes to the table while every row is checked.
    BlocksWritesChecking,
    /// Rewrites the table under an exclusive lock: reads and writes wait.
    BlocksReadsAndWrites,
    /// Loses rows (or a column's values in every row).
    LosesRows,
    /// Rewrites every row in one transaction.
    RewritesRows,
}

/// What `rule`'s findings mean for the rows of their table; `None` for rules rows do not
/// change.
pub fn impact(rule: &str) -> Option<Impact> {
    Some(match rule {
        rules::ADD_NOT_NULL_WITHOUT_DEFAULT => Impact::FailsWithRows,
        rules::CREATE_INDEX_NOT_CONCURRENTLY => Impact::BlocksWritesBuilding,
        rules::ADD_FOREIGN_KEY_VALIDATED => Impact::BlocksWritesChecking,
        rules::TYPE_NARROWING => Impact::BlocksReadsAndWrites,
        rules::DROP_TABLE | rules::DROP_COLUMN | rules::TRUNCATE | rules::DELETE_WITHOUT_WHERE => {
            Impact::LosesRows
        }
        rules::UPDATE_WITHOUT_WHERE => Impact::RewritesRows,
        _ => return None,
    })
}

/// One table's figures on one trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TableFigures {
    /// Rows: counted, or the planner's estimate when `exact` is false.
    pub rows: u64,
    /// Whether `rows` was counted.
    pub exact: bool,
    /// The table's size on disk with its indexes and TOAST (PostgreSQL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

/// What was read of one trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustReading {
    /// Its applied versions and the figures of the tables asked for that it has (a table it
    /// does not have yet is absent: a pending migration creates it, empty).
    Read {
        applied: BTreeSet<i64>,
        tables: BTreeMap<String, TableFigures>,
    },
    /// Not reached or not read in time: why.
    Unreachable(String),
}

/// One trust's figures for a finding's table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrustFigures {
    pub trust: String,
    #[serde(flatten)]
    pub figures: TableFigures,
}

/// What one finding means on the trusts that would run it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OnEstate {
    pub table: String,
    pub impact: Impact,
    /// Trusts of the plan that would run the statement and were read.
    pub trusts: usize,
    /// Of those, the ones where the table has rows.
    pub with_rows: usize,
    /// Of those, the ones where it has over a million rows.
    pub over_a_million: usize,
    /// Rows on all of them.
    pub total_rows: u64,
    /// The trust where the table has the most rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub largest: Option<TrustFigures>,
    /// Trusts that would run it but could not be read.
    pub unreachable: Vec<String>,
    /// The figures, per trust read (0 rows where the table does not exist yet).
    pub per_trust: Vec<TrustFigures>,
    /// The line said under the finding.
    pub summary: String,
}

/// A lint finding and, when its rule depends on rows, what it means on the estate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EstateFinding {
    #[serde(flatten)]
    pub finding: Finding,
    /// The plan's trusts that would run the migration (read or not).
    pub trusts: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estate: Option<OnEstate>,
}

/// The lint of what a plan would apply, on its estate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EstateLint {
    pub findings: Vec<EstateFinding>,
    /// Trusts of the plan that could not be read, with why.
    pub unreachable: BTreeMap<String, String>,
}

/// Lint the migrations `plan` would apply and say what each finding means on its trusts,
/// reading each of them once (read-only, within [`READ_BOUND`]).
pub async fn lint_on_estate(inventory: &Inventory, catalogs: &Catalogs, plan: &Plan) -> EstateLint {
    let mut ids: Vec<&str> = Vec::new();
    for id in plan.trusts() {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    // The trusts of each (catalog, dialect), in plan order.
    let mut groups: Vec<(&Catalog, Dialect, Vec<&Trust>)> = Vec::new();
    for id in &ids {
        let Some(trust) = inventory.get(id) else {
            continue;
        };
        let catalog = catalogs.for_trust(id);
        let dialect = Dialect::of(&trust.database);
        match groups
            .iter_mut()
            .find(|(c, d, _)| std::ptr::eq(*c, catalog) && *d == dialect)
        {
            Some((_, _, ts)) => ts.push(trust),
            None => groups.push((catalog, dialect, vec![trust])),
        }
    }
    // Each group's findings on migrations at or below the target, with their version.
    let mut linted: Vec<(usize, i64, Finding)> = Vec::new();
    for (g, (catalog, dialect, _)) in groups.iter().enumerate() {
        let versions: BTreeMap<&PathBuf, i64> = catalog
            .migrations()
            .iter()
            .flat_map(|m| [(&m.up.path, m.version), (&m.down.path, m.version)])
            .collect();
        for f in lint(catalog.migrations(), *dialect) {
            if let Some(&v) = versions.get(&f.file) {
                if v <= plan.target.version {
                    linted.push((g, v, f));
                }
            }
        }
    }
    if linted.is_empty() {
        return EstateLint::default();
    }
    let tables: BTreeSet<String> = linted
        .iter()
        .filter(|(_, _, f)| impact(f.rule).is_some())
        .filter_map(|(_, _, f)| f.table.clone())
        .collect();
    let all: Vec<&Trust> = groups.iter().flat_map(|(_, _, ts)| ts.clone()).collect();
    let readings = read_estate(&all, &tables).await;
    let mut out = EstateLint {
        findings: Vec::new(),
        unreachable: readings
            .iter()
            .filter_map(|(id, r)| match r {
                TrustReading::Unreachable(why) => Some((id.clone(), why.clone())),
                TrustReading::Read { .. } => None,
            })
            .collect(),
    };
    // The trusts that would run each finding's migration; the same finding in two groups
    // (two dialects of one catalog) is one finding.
    let mut merged: Vec<(Finding, Vec<String>)> = Vec::new();
    for (g, version, f) in linted {
        let concerned: Vec<String> = groups[g]
            .2
            .iter()
            .filter(|t| match readings.get(&t.id) {
                Some(TrustReading::Read { applied, .. }) => !applied.contains(&version),
                _ => true,
            })
            .map(|t| t.id.clone())
            .collect();
        if concerned.is_empty() {
            continue;
        }
        match merged.iter_mut().find(|(m, _)| {
            m.file == f.file && m.line == f.line && m.rule == f.rule && m.message == f.message
        }) {
            Some((_, ts)) => ts.extend(concerned),
            None => merged.push((f, concerned)),
        }
    }
    for (finding, trusts) in merged {
        let estate = match (&finding.table, impact(finding.rule)) {
            (Some(table), Some(i)) => Some(on_estate(finding.rule, table, i, &trusts, &readings)),
            _ => None,
        };
        out.findings.push(EstateFinding {
            finding,
            trusts,
            estate,
        });
    }
    out
}

/// Read every trust once (at most [`READ_CONCURRENCY`] at a time, each within
/// [`READ_BOUND`]): its applied versions and the figures of `tables`.
pub async fn read_estate(
    trusts: &[&Trust],
    tables: &BTreeSet<String>,
) -> BTreeMap<String, TrustReading> {
    stream::iter(trusts.iter().map(|t| async move {
        let reading = match tokio::time::timeout(READ_BOUND, read_trust(t, tables)).await {
            Ok(Ok((applied, tables))) => TrustReading::Read { applied, tables },
            Ok(Err(e)) => TrustReading::Unreachable(e.to_string()),
            Err(_) => {
                TrustReading::Unreachable(format!("not read within {} s", READ_BOUND.as_secs()))
            }
        };
        (t.id.clone(), reading)
    }))
    .buffer_unordered(READ_CONCURRENCY)
    .collect()
    .await
}

type Figures = (BTreeSet<i64>, BTreeMap<String, TableFigures>);

async fn read_trust(trust: &Trust, tables: &BTreeSet<String>) -> Result<Figures, DbError> {
    let mut db =
        TrustDb::connect_within(trust, Access::ReadOnly, Some(Duration::from_secs(2))).await?;
    let read = async {
        let applied = db.applied().await?.into_iter().map(|a| a.version).collect();
        let figures = match db.dialect() {
            Dialect::Sqlite => sqlite_figures(&mut db, tables).await?,
            Dialect::Postgres => pg_figures(&mut db, tables).await?,
        };
        Ok((applied, figures))
    }
    .await;
    db.close().await;
    read
}

fn in_list(tables: &BTreeSet<String>) -> String {
    tables
        .iter()
        .map(|t| quote_literal(t))
        .collect::<Vec<_>>()
        .join(", ")
}

fn number(cell: Option<&Option<String>>) -> Option<i64> {
    cell?.as_deref()?.parse().ok()
}

async fn sqlite_figures(
    db: &mut TrustDb,
    tables: &BTreeSet<String>,
) -> Result<BTreeMap<String, TableFigures>, DbError> {
    let mut out = BTreeMap::new();
    if tables.is_empty() {
        return Ok(out);
    }
    let present = db
        .text_rows(
            &format!(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND lower(name) IN ({})",
                in_list(tables)
            ),
            1,
            "reading the tables the lint's findings name",
        )
        .await?;
    for row in present {
        let Some(Some(name)) = row.into_iter().next() else {
            continue;
        };
        let n = db
            .query_i64(
                &format!("SELECT count(*) FROM {}", quote_ident(&name)),
                "counting the rows of a table a lint finding names",
            )
            .await?;
        out.insert(
            name.to_ascii_lowercase(),
            TableFigures {
                rows: n.max(0) as u64,
                exact: true,
                bytes: None,
            },
        );
    }
    Ok(out)
}

async fn pg_figures(
    db: &mut TrustDb,
    tables: &BTreeSet<String>,
) -> Result<BTreeMap<String, TableFigures>, DbError> {
    let mut out = BTreeMap::new();
    if tables.is_empty() {
        return Ok(out);
    }
    db.set_timeouts(Duration::from_secs(2), Some(Duration::from_secs(5)))
        .await?;
    let catalog = db
        .text_rows(
            &format!(
                "SELECT c.relname::text, c.reltuples::bigint::text, pg_total_relation_size(c.oid)::text \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND c.relname IN ({})",
                in_list(tables)
            ),
            3,
            "reading the catalog figures of the tables the lint's findings name",
        )
        .await?;
    for row in catalog {
        let Some(Some(name)) = row.first().cloned() else {
            continue;
        };
        let estimate = number(row.get(1)).unwrap_or(-1);
        let bytes = number(row.get(2)).map(|b| b.max(0) as u64);
        let counted = db
            .query_i64(
                &format!(
                    "SELECT count(*) FROM (SELECT 1 FROM {} LIMIT {}) s",
                    quote_ident(&name),
                    COUNTED_UP_TO + 1
                ),
                "counting the rows of a table a lint finding names (at most 10,001)",
            )
            .await?
            .max(0) as u64;
        let figures = if counted <= COUNTED_UP_TO {
            TableFigures {
                rows: counted,
                exact: true,
                bytes,
            }
        } else {
            TableFigures {
                rows: (estimate.max(0) as u64).max(counted),
                exact: false,
                bytes,
            }
        };
        out.insert(name, figures);
    }
    Ok(out)
}

/// What a finding on `table` means on `trusts` (the plan's trusts that would run it).
fn on_estate(
    rule: &str,
    table: &str,
    impact: Impact,
    trusts: &[String],
    readings: &BTreeMap<String, TrustReading>,
) -> OnEstate {
    let mut per_trust = Vec::new();
    let mut unreachable = Vec::new();
    for id in trusts {
        match readings.get(id) {
            Some(TrustReading::Read { tables, .. }) => per_trust.push(TrustFigures {
                trust: id.clone(),
                figures: tables.get(table).copied().unwrap_or(TableFigures {
                    rows: 0,
                    exact: true,
                    bytes: None,
                }),
            }),
            _ => unreachable.push(id.clone()),
        }
    }
    let with_rows = per_trust.iter().filter(|t| t.figures.rows > 0).count();
    let over_a_million = per_trust.iter().filter(|t| t.figures.rows > LARGE).count();
    let total_rows = per_trust.iter().map(|t| t.figures.rows).sum();
    let largest = per_trust
        .iter()
        .filter(|t| t.figures.rows > 0)
        .max_by_key(|t| (t.figures.rows, t.figures.bytes))
        .cloned();
    let mut e = OnEstate {
        table: table.to_string(),
        impact,
        trusts: per_trust.len(),
        with_rows,
        over_a_million,
        total_rows,
        largest,
        unreachable,
        per_trust,
        summary: String::new(),
    };
    e.summary = summary(rule, &e);
    e
}

/// The line said under a finding, e.g. `add-not-null-without-default on patient: fails on 41
/// of 56 trusts (patient has rows)`.
pub fn summary(rule: &str, e: &OnEstate) -> String {
    let table = &e.table;
    let n = e.trusts;
    let of_n = |k: usize| format!("{k} of {n} trust{}", if n == 1 { "" } else { "s" });
    let mut text = format!("{rule} on {table}: ");
    if n == 0 {
        text.push_str("no trust that would run it could be read");
    } else {
        match (e.impact, &e.largest) {
            (Impact::FailsWithRows, _) if e.with_rows > 0 => text.push_str(&format!(
                "fails on {} ({table} has rows)",
                of_n(e.with_rows)
            )),
            (Impact::FailsWithRows, _) => text.push_str(&format!(
                "fails on {} ({table} is empty on every one today; it fails on any that has rows when it runs)",
                of_n(0)
            )),
            (_, None) => text.push_str(&format!(
                "{table} is empty on {}: {}",
                if n == 1 { "the 1 trust".to_string() } else { format!("all {n} trusts") },
                match e.impact {
                    Impact::LosesRows | Impact::RewritesRows => "no rows at stake today",
                    _ => "the lock is brief",
                }
            )),
            (Impact::LosesRows | Impact::RewritesRows, Some(l)) => {
                let verb = if e.impact == Impact::LosesRows {
                    "loses"
                } else {
                    "rewrites"
                };
                let how = if e.impact == Impact::RewritesRows {
                    " in one transaction"
                } else {
                    ""
                };
                text.push_str(&format!(
                    "{verb} {} rows{how} on {} (largest: {}, {})",
                    rows(e.total_rows, e.per_trust.iter().all(|t| t.figures.exact)),
                    of_n(e.with_rows),
                    l.trust,
                    rows(l.figures.rows, l.figures.exact)
                ));
            }
            (_, Some(l)) => {
                let size = l
                    .figures
                    .bytes
                    .map(|b| format!(", {}", bytes(b)))
                    .unwrap_or_default();
                let r = rows(l.figures.rows, l.figures.exact);
                let what = match e.impact {
                    Impact::BlocksWritesBuilding => {
                        format!("blocks writes on {} for a {r}-row build", l.trust)
                    }
                    Impact::BlocksWritesChecking => {
                        format!("blocks writes on {} while {r} rows are checked", l.trust)
                    }
                    _ => format!(
                        "blocks reads and writes on {} while {r} rows are rewritten",
                        l.trust
                    ),
                };
                text.push_str(&format!("{what} (largest{size})"));
                if e.over_a_million > 0 {
                    text.push_str(&format!(", {} over 1 M rows", of_n(e.over_a_million)));
                } else if n > 1 {
                    text.push_str(&format!(", {} with rows", of_n(e.with_rows)));
                }
            }
        }
    }
    if !e.unreachable.is_empty() {
        text.push_str(&format!(
            "; not read: {} ({})",
            e.unreachable.len(),
            e.unreachable.join(", ")
        ));
    }
    text
}

/// `812`, `41 k`, `1.4 M`, `12 M`; `~` before an estimate.
pub fn rows(n: u64, exact: bool) -> String {
    let approx = if exact { "" } else { "~" };
    let text = if n < 10_000 {
        n.to_string()
    } else if n < 1_000_000 {
        format!("{} k", n / 1000)
    } else if n < 10_000_000 {
        format!("{:.1} M", n as f64 / 1e6)
    } else {
        format!("{} M", n / 1_000_000)
    };
    format!("{approx}{text}")
}

/// `512 kB`, `1.4 GB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 || v >= 10.0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

impl EstateLint {
    /// The lines for people: a heading, each finding (`path:line: severity[rule]: message`)
    /// with its annotation under it, then the trusts that could not be read. None when there
    /// is no finding.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.findings.is_empty() {
            return out;
        }
        out.push(format!(
            "lint of the migrations this plan would apply ({} finding{}), on its trusts:",
            self.findings.len(),
            if self.findings.len() == 1 { "" } else { "s" }
        ));
        for f in &self.findings {
            out.push(format!("  {}", f.finding));
            if let Some(e) = &f.estate {
                out.push(format!("    ↳ {}", e.summary));
            }
        }
        for (id, why) in &self.unreachable {
            out.push(format!(
                "  trust '{id}' could not be read for the lint: {why}"
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrations::lint::Severity;

    fn finding(rule: &'static str, table: &str) -> Finding {
        Finding {
            file: PathBuf::from("migrations/0131_x.up.sql"),
            line: 1,
            column: None,
            rule,
            severity: Severity::Error,
            message: "m".into(),
            table: None,
        }
        .on_table(table)
    }

    fn read(tables: &[(&str, u64, bool, Option<u64>)]) -> TrustReading {
        TrustReading::Read {
            applied: BTreeSet::new(),
            tables: tables
                .iter()
                .map(|(t, rows, exact, bytes)| {
                    (
                        t.to_string(),
                        TableFigures {
                            rows: *rows,
                            exact: *exact,
                            bytes: *bytes,
                        },
                    )
                })
                .collect(),
        }
    }

    fn estate(entries: Vec<(&str, TrustReading)>) -> (Vec<String>, BTreeMap<String, TrustReading>) {
        let ids = entries.iter().map(|(id, _)| id.to_string()).collect();
        (
            ids,
            entries
                .into_iter()
                .map(|(id, r)| (id.to_string(), r))
                .collect(),
        )
    }

    #[test]
    fn not_null_without_default_fails_where_the_table_has_rows() {
        let f = finding(rules::ADD_NOT_NULL_WITHOUT_DEFAULT, "Patient");
        assert_eq!(f.table.as_deref(), Some("patient"));
        let (ids, readings) = estate(vec![
            ("camden", read(&[("patient", 40, true, None)])),
            ("islington", read(&[("patient", 0, true, None)])),
            ("barnet", read(&[])),
            ("brent", read(&[("patient", 3, true, None)])),
            ("kent", TrustReading::Unreachable("cannot connect".into())),
        ]);
        let e = on_estate(
            f.rule,
            f.table.as_deref().unwrap(),
            impact(f.rule).unwrap(),
            &ids,
            &readings,
        );
        assert_eq!((e.trusts, e.with_rows, e.total_rows), (4, 2, 43));
        assert_eq!(e.unreachable, vec!["kent".to_string()]);
        assert_eq!(
            e.summary,
            "add-not-null-without-default on patient: fails on 2 of 4 trusts (patient has rows); not read: 1 (kent)"
        );
        let (ids, readings) = estate(vec![("camden", read(&[("patient", 0, true, None)]))]);
        let e = on_estate(f.rule, "patient", Impact::FailsWithRows, &ids, &readings);
        assert!(e.summary.starts_with(
            "add-not-null-without-default on patient: fails on 0 of 1 trust (patient is empty"
        ));
    }

    #[test]
    fn an_index_build_names_the_largest_trust_and_the_large_ones() {
        let (ids, readings) = estate(vec![
            (
                "camden",
                read(&[("appointment", 12_400_000, false, Some(1_500_000_000))]),
            ),
            (
                "islington",
                read(&[("appointment", 2_000_000, false, Some(200_000_000))]),
            ),
            ("barnet", read(&[("appointment", 1_200_000, false, None)])),
            ("brent", read(&[("appointment", 900, true, None)])),
        ]);
        let e = on_estate(
            rules::CREATE_INDEX_NOT_CONCURRENTLY,
            "appointment",
            impact(rules::CREATE_INDEX_NOT_CONCURRENTLY).unwrap(),
            &ids,
            &readings,
        );
        assert_eq!(e.largest.as_ref().map(|l| l.trust.as_str()), Some("camden"));
        assert_eq!(
            e.summary,
            "create-index-not-concurrently on appointment: blocks writes on camden for a ~12 M-row build (largest, 1.4 GB), 3 of 4 trusts over 1 M rows"
        );
        let (ids, readings) = estate(vec![
            ("camden", read(&[("appointment", 0, true, None)])),
            ("brent", read(&[])),
        ]);
        let e = on_estate(
            rules::ADD_FOREIGN_KEY_VALIDATED,
            "appointment",
            Impact::BlocksWritesChecking,
            &ids,
            &readings,
        );
        assert_eq!(
            e.summary,
            "add-foreign-key-validated on appointment: appointment is empty on all 2 trusts: the lock is brief"
        );
    }

    #[test]
    fn destructive_rules_count_the_rows_at_stake() {
        let (ids, readings) = estate(vec![
            ("camden", read(&[("referral", 1_200_000, false, None)])),
            ("islington", read(&[("referral", 30_000, false, None)])),
            ("brent", read(&[])),
        ]);
        let e = on_estate(
            rules::DROP_TABLE,
            "referral",
            impact(rules::DROP_TABLE).unwrap(),
            &ids,
            &readings,
        );
        assert_eq!(
            e.summary,
            "drop-table on referral: loses ~1.2 M rows on 2 of 3 trusts (largest: camden, ~1.2 M)"
        );
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["total_rows"], 1_230_000);
        assert_eq!(json["per_trust"][0]["trust"], "camden");
        assert_eq!(json["per_trust"][0]["rows"], 1_200_000);
        assert_eq!(json["impact"], "loses-rows");
    }

    #[test]
    fn rules_rows_do_not_change_have_no_impact() {
        assert_eq!(impact(rules::PARSE_ERROR), None);
        assert_eq!(impact(rules::MISSING_DOWN), None);
        assert_eq!(rows(812, true), "812");
        assert_eq!(rows(41_200, true), "41 k");
        assert_eq!(rows(1_400_000, false), "~1.4 M");
        assert_eq!(bytes(1_500_000_000), "1.4 GB");
        assert_eq!(bytes(512), "512 B");
    }
}
