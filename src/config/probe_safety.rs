//! Probes may never change a trust's data beyond the write probe's own record. Every statement
//! of a plan's health section is parsed with a real SQL parser (sqlparser, in each dialect of
//! the plan's trusts) when the plan is loaded, so `validate`, `plan`, `health` and every
//! rollout refuse a destructive probe before anything runs:
//!
//! - latency probes, their `params` queries, invariants and the write probe's `read_back`
//!   must be one `SELECT` (or `WITH ... SELECT`): no data-modifying CTE, no `SELECT ... INTO`,
//!   no `FOR UPDATE`/`FOR SHARE`, and no call of a function known to write, lock, change the
//!   session or run SQL the parser cannot see (`set_config`, `pg_advisory_lock`, `nextval`,
//!   `dblink`, `lo_unlink`, `query_to_xml`, ...);
//! - the write probe's `insert` inserts exactly one row (`INSERT INTO t (cols) VALUES (...)`
//!   with `$1` as a column's value and `$2` somewhere), without `ON CONFLICT`/`OR REPLACE`;
//! - its `cleanup` deletes by `$1` only: `DELETE FROM t WHERE <that column> = $1`, on the
//!   table and column the insert wrote `$1` into.
//!
//! The parse is the first line of defence and the one with clear messages; at run time
//! Postgres probes also run in `BEGIN READ ONLY` transactions a statement cannot leave, and
//! SQLite probes on read-only connections.

use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, FromTable, Insert, ObjectName, Query, Select, SetExpr, Statement, TableFactor,
    TableObject, Value, Visit, Visitor,
};
use sqlparser::dialect::{Dialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;

use super::health::Health;

/// The SQL dialects a plan's probes must be checked in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProbeDialect {
    /// SQLite trusts.
    Sqlite,
    /// PostgreSQL trusts.
    Postgres,
}

impl ProbeDialect {
    fn parser(self) -> Box<dyn Dialect> {
        match self {
            ProbeDialect::Sqlite => Box::new(SQLiteDialect {}),
            ProbeDialect::Postgres => Box::new(PostgreSqlDialect {}),
        }
    }

    fn name(self) -> &'static str {
        match self {
            ProbeDialect::Sqlite => "SQLite",
            ProbeDialect::Postgres => "PostgreSQL",
        }
    }
}

/// A probe statement refused, with the plan field it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Where in the plan, e.g. `health.write_probe.cleanup`.
    pub field: String,
    /// Which statement (for its line: [`super::positions::PlanPositions::statement`]).
    pub at: StatementRef,
    /// The statement, on one line.
    pub statement: String,
    /// Why.
    pub reason: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: refused \"{}\": {}",
            self.field, self.statement, self.reason
        )
    }
}

/// Which statement of the health section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementRef {
    /// `latency_probes[i].sql`.
    LatencySql(usize),
    /// `latency_probes[i].params`.
    LatencyParams(usize),
    /// `invariants[i].sql`.
    Invariant(usize),
    /// `write_probe.insert`.
    WriteInsert,
    /// `write_probe.read_back`.
    WriteReadBack,
    /// `write_probe.cleanup`.
    WriteCleanup,
}

/// Every statement of a health section that is not allowed, in every dialect given.
pub fn check(health: &Health, dialects: &[ProbeDialect]) -> Vec<Refusal> {
    let mut out = Vec::new();
    let mut refuse = |field: String, at: StatementRef, sql: &str, reason: String| {
        out.push(Refusal {
            field,
            at,
            statement: one_line(sql),
            reason,
        })
    };
    for &dialect in dialects {
        for (i, p) in health.latency_probes.iter().enumerate() {
            if let Err(reason) = read_only_select(&p.sql, dialect) {
                refuse(
                    format!("health.latency_probes '{}'.sql", p.name),
                    StatementRef::LatencySql(i),
                    &p.sql,
                    reason,
                );
            }
            if let Some(params) = &p.params {
                if let Err(reason) = read_only_select(params, dialect) {
                    refuse(
                        format!("health.latency_probes '{}'.params", p.name),
                        StatementRef::LatencyParams(i),
                        params,
                        reason,
                    );
                }
            }
        }
        for (i, inv) in health.invariants.iter().enumerate() {
            if let Err(reason) = read_only_select(&inv.sql, dialect) {
                refuse(
                    format!("health.invariants '{}'.sql", inv.name),
                    StatementRef::Invariant(i),
                    &inv.sql,
                    reason,
                );
            }
        }
        if let Some(w) = &health.write_probe {
            let target = match single_row_insert(&w.insert, dialect) {
                Ok(t) => Some(t),
                Err(reason) => {
                    refuse(
                        "health.write_probe.insert".into(),
                        StatementRef::WriteInsert,
                        &w.insert,
                        reason,
                    );
                    None
                }
            };
            if let Err(reason) = read_only_select(&w.read_back, dialect).and_then(|()| {
                uses_placeholder(&w.read_back, dialect, "$1")
                    .then_some(())
                    .ok_or_else(|| "it must select the record whose id is $1".to_string())
            }) {
                refuse(
                    "health.write_probe.read_back".into(),
                    StatementRef::WriteReadBack,
                    &w.read_back,
                    reason,
                );
            }
            if let Err(reason) = delete_by_id(&w.cleanup, dialect, target.as_ref()) {
                refuse(
                    "health.write_probe.cleanup".into(),
                    StatementRef::WriteCleanup,
                    &w.cleanup,
                    reason,
                );
            }
        }
    }
    // The same statement refused in two dialects for the same reason is one refusal.
    let mut seen = Vec::new();
    out.retain(|r| {
        let key = (r.at, r.reason.clone());
        if seen.contains(&key) {
            false
        } else {
            seen.push(key);
            true
        }
    });
    out
}

/// The statement on one line (whitespace collapsed), shortened for messages.
fn one_line(sql: &str) -> String {
    let text = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() > 160 {
        let cut: String = text.chars().take(157).collect();
        format!("{cut}...")
    } else {
        text
    }
}

fn parse_one(sql: &str, dialect: ProbeDialect) -> Result<Statement, String> {
    let d = dialect.parser();
    let mut statements = Parser::parse_sql(d.as_ref(), sql)
        .map_err(|e| format!("it does not parse as {} SQL: {e}", dialect.name()))?;
    match statements.len() {
        1 => Ok(statements.remove(0)),
        0 => Err("it is empty".into()),
        n => Err(format!("it holds {n} statements; a probe is one statement")),
    }
}

/// Functions a probe may not call: they write, take locks, change the session (and with it
/// the read-only guard), reach other connections or run SQL text the parser cannot see.
const FORBIDDEN_FUNCTIONS: &[&str] = &[
    "set_config",
    "nextval",
    "setval",
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
    "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared",
    "pg_advisory_unlock",
    "pg_advisory_unlock_shared",
    "pg_advisory_unlock_all",
    "lo_import",
    "lo_export",
    "lo_unlink",
    "lo_create",
    "lo_creat",
    "lo_from_bytea",
    "lo_put",
    "lo_truncate",
    "lowrite",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_promote",
    "pg_logical_emit_message",
    "pg_create_physical_replication_slot",
    "pg_create_logical_replication_slot",
    "pg_drop_replication_slot",
    "pg_replication_slot_advance",
    "pg_replication_origin_create",
    "pg_replication_origin_drop",
    "pg_stat_reset",
    "pg_stat_reset_shared",
    "pg_stat_reset_single_table_counters",
    "pg_stat_reset_single_function_counters",
    "pg_stat_reset_slru",
    "pg_stat_statements_reset",
    "pg_notify",
    "pg_file_write",
    "pg_file_rename",
    "pg_file_unlink",
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
    "query_to_xml",
    "query_to_xml_and_xmlschema",
    "query_to_xmlschema",
    "cursor_to_xml",
    "load_extension",
];

fn forbidden_function(name: &ObjectName) -> Option<String> {
    let last = name.0.last()?.as_ident()?.value.to_ascii_lowercase();
    (FORBIDDEN_FUNCTIONS.contains(&last.as_str()) || last.starts_with("dblink")).then_some(last)
}

/// Walks a parsed statement and stops at the first thing a probe may not do. The top-level
/// statement itself is checked by the caller; any statement nested in it (a data-modifying
/// CTE) is refused here.
struct Guard {
    statements: usize,
}

impl Visitor for Guard {
    type Break = String;

    fn pre_visit_statement(&mut self, s: &Statement) -> ControlFlow<String> {
        self.statements += 1;
        if self.statements > 1 {
            return ControlFlow::Break(format!(
                "it contains a data-modifying statement ({}) in a subquery or CTE",
                statement_kind(s)
            ));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<String> {
        if !q.locks.is_empty() {
            return ControlFlow::Break(
                "FOR UPDATE/FOR SHARE takes row locks that block clinicians' writes".into(),
            );
        }
        if let Some(with) = &q.with {
            for cte in &with.cte_tables {
                if let Some(kind) = modifying_body(&cte.query.body) {
                    return ControlFlow::Break(format!(
                        "its CTE '{}' is a data-modifying {kind}",
                        cte.alias.name.value
                    ));
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, s: &Select) -> ControlFlow<String> {
        if s.into.is_some() {
            return ControlFlow::Break("SELECT ... INTO creates a table".into());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<String> {
        let name = match t {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => name,
            _ => return ControlFlow::Continue(()),
        };
        match forbidden_function(name) {
            Some(f) => ControlFlow::Break(function_reason(&f)),
            None => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<String> {
        if let Expr::Function(f) = e {
            if let Some(name) = forbidden_function(&f.name) {
                return ControlFlow::Break(function_reason(&name));
            }
        }
        ControlFlow::Continue(())
    }
}

fn function_reason(name: &str) -> String {
    format!("it calls {name}(), which a probe may not (it writes, locks, changes the session or runs SQL the check cannot see)")
}

fn modifying_body(body: &SetExpr) -> Option<&'static str> {
    match body {
        SetExpr::Insert(_) => Some("INSERT"),
        SetExpr::Update(_) => Some("UPDATE"),
        SetExpr::Delete(_) => Some("DELETE"),
        SetExpr::Merge(_) => Some("MERGE"),
        SetExpr::SetOperation { left, right, .. } => {
            modifying_body(left).or_else(|| modifying_body(right))
        }
        _ => None,
    }
}

fn statement_kind(s: &Statement) -> String {
    let text = s.to_string();
    text.split_whitespace()
        .next()
        .unwrap_or("statement")
        .to_ascii_uppercase()
}

fn guard(s: &Statement) -> Result<(), String> {
    match s.visit(&mut Guard { statements: 0 }) {
        ControlFlow::Break(reason) => Err(reason),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// One `SELECT` or `WITH ... SELECT` that reads only.
fn read_only_select(sql: &str, dialect: ProbeDialect) -> Result<(), String> {
    let s = parse_one(sql, dialect)?;
    match &s {
        Statement::Query(q) => {
            if let Some(kind) = modifying_body(&q.body) {
                return Err(format!("it is a {kind}, not a SELECT"));
            }
            guard(&s)
        }
        other => Err(format!(
            "it is {}, not a SELECT: a probe may only read",
            article(&statement_kind(other))
        )),
    }
}

fn article(kind: &str) -> String {
    if kind.starts_with(['A', 'E', 'I', 'O', 'U']) {
        format!("an {kind}")
    } else {
        format!("a {kind}")
    }
}

fn placeholder(e: &Expr, name: &str) -> bool {
    matches!(e, Expr::Value(v) if matches!(&v.value, Value::Placeholder(p) if p == name))
}

fn uses_placeholder(sql: &str, dialect: ProbeDialect, name: &str) -> bool {
    struct Find<'a>(&'a str);
    impl Visitor for Find<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            if placeholder(e, self.0) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
    }
    parse_one(sql, dialect).is_ok_and(|s| s.visit(&mut Find(name)).is_break())
}

/// The table and id column the insert writes `$1` into.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    table: String,
    column: String,
}

fn name_text(n: &ObjectName) -> String {
    n.0.iter()
        .map(|p| match p.as_ident() {
            Some(i) => i.value.to_ascii_lowercase(),
            None => p.to_string().to_ascii_lowercase(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// `INSERT INTO t (cols) VALUES (one row)`, `$1` the value of one column, `$2` in the row.
fn single_row_insert(sql: &str, dialect: ProbeDialect) -> Result<Target, String> {
    let s = parse_one(sql, dialect)?;
    let Statement::Insert(ins) = &s else {
        return Err(format!(
            "it is {}, not an INSERT of one record",
            article(&statement_kind(&s))
        ));
    };
    let Insert {
        or,
        ignore,
        table,
        columns,
        source,
        on,
        replace_into,
        overwrite,
        ..
    } = ins;
    if or.is_some() || *replace_into || *ignore || *overwrite {
        return Err("INSERT OR REPLACE/IGNORE can replace an existing row or hide a failed write: insert one new record".into());
    }
    if on.is_some() {
        return Err("ON CONFLICT / ON DUPLICATE KEY can change an existing row or hide a failed write: insert one new record".into());
    }
    let TableObject::TableName(table) = table else {
        return Err("it must insert into a named table".into());
    };
    let Some(query) = source else {
        return Err("it must insert one row with VALUES (...)".into());
    };
    if query.with.is_some() {
        return Err(
            "a WITH clause in the insert is not allowed: insert one row with VALUES (...)".into(),
        );
    }
    let SetExpr::Values(values) = query.body.as_ref() else {
        return Err(
            "INSERT ... SELECT can insert any number of rows: insert one row with VALUES (...)"
                .into(),
        );
    };
    if values.rows.len() != 1 {
        return Err(format!(
            "it inserts {} rows; the write probe inserts exactly one",
            values.rows.len()
        ));
    }
    if columns.is_empty() {
        return Err(
            "name the columns (INSERT INTO t (id, ...) VALUES ($1, ...)) so the cleanup can be checked against the id column"
                .into(),
        );
    }
    let row = &values.rows[0];
    if row.len() != columns.len() {
        return Err(format!(
            "it names {} columns but gives {} values",
            columns.len(),
            row.len()
        ));
    }
    let Some(pos) = row.iter().position(|e| placeholder(e, "$1")) else {
        return Err("$1 (the probe record's unique id) must be the value of one column".into());
    };
    if !uses_placeholder(sql, dialect, "$2") {
        return Err("$2 (the token the read-back must return) is not written".into());
    }
    guard(&s)?;
    Ok(Target {
        table: name_text(table),
        column: name_text(&columns[pos]),
    })
}

/// `DELETE FROM t WHERE col = $1` on the insert's table and id column.
fn delete_by_id(sql: &str, dialect: ProbeDialect, target: Option<&Target>) -> Result<(), String> {
    let shape = "the cleanup must delete only the probe's record: DELETE FROM <table> WHERE <id column> = $1";
    let s = parse_one(sql, dialect)?;
    let Statement::Delete(d) = &s else {
        return Err(format!("it is {}; {shape}", article(&statement_kind(&s))));
    };
    let from = match &d.from {
        FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
    };
    if !d.tables.is_empty() || d.using.is_some() || from.len() != 1 || !from[0].joins.is_empty() {
        return Err(format!("it deletes from more than one table; {shape}"));
    }
    if d.limit.is_some() || !d.order_by.is_empty() {
        return Err(format!("ORDER BY/LIMIT has no place in it; {shape}"));
    }
    let TableFactor::Table {
        name, args: None, ..
    } = &from[0].relation
    else {
        return Err(format!("it does not delete from a plain table; {shape}"));
    };
    let column = match &d.selection {
        None => return Err(format!("it has no WHERE, so it deletes every row; {shape}")),
        Some(Expr::BinaryOp { left, op, right }) if *op == sqlparser::ast::BinaryOperator::Eq => {
            match (left.as_ref(), right.as_ref()) {
                (c, v) | (v, c) if placeholder(v, "$1") && column_name(c).is_some() => {
                    column_name(c).unwrap_or_default()
                }
                _ => return Err(format!("its WHERE is not <id column> = $1; {shape}")),
            }
        }
        Some(_) => return Err(format!("its WHERE is not <id column> = $1; {shape}")),
    };
    if let Some(t) = target {
        let table = name_text(name);
        if table != t.table || column != t.column {
            return Err(format!(
                "it deletes from {table} by {column}, but the insert writes $1 into {}.{}; {shape}",
                t.table, t.column
            ));
        }
    }
    guard(&s)
}

fn column_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(i) => Some(i.value.to_ascii_lowercase()),
        Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.to_ascii_lowercase()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::health::{Invariant, LatencyProbe, WriteProbe};

    const BOTH: &[ProbeDialect] = &[ProbeDialect::Sqlite, ProbeDialect::Postgres];

    fn write_probe(insert: &str, read_back: &str, cleanup: &str) -> Health {
        Health {
            write_probe: Some(WriteProbe {
                insert: insert.into(),
                read_back: read_back.into(),
                cleanup: cleanup.into(),
                samples: None,
                max_loss_rate: None,
                confidence: None,
                concurrency: 1,
                regression: Default::default(),
            }),
            ..Health::default()
        }
    }

    const INSERT: &str = "INSERT INTO clinical_note (id, patient_id, author_id, written_at, note_type, body) VALUES ($1, (SELECT MIN(id) FROM patient), (SELECT MIN(id) FROM staff), CURRENT_TIMESTAMP, 'contact', $2)";
    const READ_BACK: &str = "SELECT body FROM clinical_note WHERE id = $1";
    const CLEANUP: &str = "DELETE FROM clinical_note WHERE id = $1";

    fn latency(sql: &str) -> Health {
        Health {
            latency_probes: vec![LatencyProbe {
                name: "p".into(),
                sql: sql.into(),
                params: None,
                samples: 10,
                concurrency: 1,
            }],
            ..Health::default()
        }
    }

    fn invariant(sql: &str) -> Health {
        Health {
            invariants: vec![Invariant {
                name: "i".into(),
                sql: sql.into(),
                expect: 0,
            }],
            ..Health::default()
        }
    }

    fn refused(h: &Health) -> Vec<String> {
        check(h, BOTH).iter().map(|r| r.to_string()).collect()
    }

    #[test]
    fn the_sample_plan_shapes_are_accepted_in_both_dialects() {
        assert_eq!(
            refused(&write_probe(INSERT, READ_BACK, CLEANUP)),
            Vec::<String>::new()
        );
        assert!(refused(&latency(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300) SELECT COUNT(*) FROM c"
        ))
        .is_empty());
        assert!(refused(&invariant(
            "SELECT COUNT(*) FROM clinical_note n LEFT JOIN patient p ON p.id = n.patient_id WHERE p.id IS NULL"
        ))
        .is_empty());
    }

    #[test]
    fn a_cleanup_that_deletes_every_note_is_refused() {
        let r = refused(&write_probe(INSERT, READ_BACK, "DELETE FROM clinical_note"));
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(r[0].contains("health.write_probe.cleanup"), "{r:?}");
        assert!(r[0].contains("DELETE FROM clinical_note"), "{r:?}");
        assert!(r[0].contains("no WHERE"), "{r:?}");
    }

    #[test]
    fn a_cleanup_by_anything_but_the_id_is_refused() {
        for cleanup in [
            "DELETE FROM clinical_note WHERE id < $1",
            "DELETE FROM clinical_note WHERE id = $1 OR 1 = 1",
            "DELETE FROM clinical_note WHERE patient_id = $1",
            "DELETE FROM patient WHERE id = $1",
            "DELETE FROM clinical_note WHERE id IN (SELECT id FROM clinical_note)",
            "UPDATE clinical_note SET body = '' WHERE id = $1",
            "DELETE FROM clinical_note WHERE id = $1; DELETE FROM patient",
        ] {
            let r = refused(&write_probe(INSERT, READ_BACK, cleanup));
            assert_eq!(r.len(), 1, "{cleanup}: {r:?}");
            assert!(r[0].contains("cleanup"), "{r:?}");
        }
        // `$1 = id` is the same shape.
        assert!(refused(&write_probe(
            INSERT,
            READ_BACK,
            "DELETE FROM clinical_note WHERE $1 = clinical_note.id"
        ))
        .is_empty());
    }

    #[test]
    fn an_insert_of_more_than_one_row_or_that_can_overwrite_is_refused() {
        for (insert, why) in [
            ("INSERT INTO clinical_note (id, body) VALUES ($1, $2), ($1 - 1, $2)", "2 rows"),
            ("INSERT INTO clinical_note (id, body) SELECT $1, body || $2 FROM clinical_note", "INSERT ... SELECT"),
            ("INSERT OR REPLACE INTO clinical_note (id, body) VALUES ($1, $2)", "OR REPLACE"),
            ("INSERT INTO clinical_note (id, body) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET body = 'x'", "ON CONFLICT"),
            ("INSERT INTO clinical_note (id, body) VALUES (-1, $2)", "$1"),
            ("INSERT INTO clinical_note (id, body) VALUES ($1, 'x')", "$2"),
            ("INSERT INTO clinical_note VALUES ($1, $2)", "name the columns"),
            ("INSERT INTO clinical_note (id, body) VALUES ($1, (SELECT set_config('a', 'b', false)) || $2)", "set_config"),
        ] {
            let r = refused(&write_probe(insert, READ_BACK, CLEANUP));
            assert!(
                r.iter().any(|m| m.contains("health.write_probe.insert") && m.contains(why)),
                "{insert}: {r:?}"
            );
        }
    }

    #[test]
    fn a_latency_probe_that_writes_is_refused() {
        for (sql, why) in [
            (
                "WITH gone AS (DELETE FROM patient RETURNING id) SELECT COUNT(*) FROM gone",
                "data-modifying DELETE",
            ),
            ("DELETE FROM patient WHERE id = $1", "a DELETE"),
            ("SELECT * INTO patient_copy FROM patient", "INTO"),
            (
                "SELECT * FROM patient WHERE id = $1 FOR UPDATE",
                "FOR UPDATE",
            ),
            ("SELECT pg_advisory_lock(1)", "pg_advisory_lock"),
            ("SELECT nextval('patient_id_seq')", "nextval"),
            (
                "SELECT * FROM dblink('host=x', 'DELETE FROM patient') AS t(x int)",
                "dblink",
            ),
            ("SELECT 1; DELETE FROM patient", "2 statements"),
            (
                "SELECT (SELECT COUNT(*) FROM patient FOR UPDATE)",
                "FOR UPDATE",
            ),
        ] {
            let r = refused(&latency(sql));
            assert!(
                r.iter()
                    .any(|m| m.contains("latency_probes 'p'.sql") && m.contains(why)),
                "{sql}: {r:?}"
            );
        }
    }

    #[test]
    fn an_invariant_that_turns_the_read_only_guard_off_is_refused() {
        let r = refused(&invariant(
            "SELECT COUNT(*) FROM patient WHERE set_config('default_transaction_read_only', 'off', false) IS NOT NULL AND 1 = 0",
        ));
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(r[0].contains("health.invariants 'i'.sql") && r[0].contains("set_config"));
    }

    #[test]
    fn a_statement_that_does_not_parse_is_refused_not_waved_through() {
        let r = refused(&latency("SELEC id FROM patient"));
        assert!(r.iter().any(|m| m.contains("does not parse")), "{r:?}");
    }

    #[test]
    fn the_read_back_must_read_the_record_by_its_id() {
        let r = refused(&write_probe(
            INSERT,
            "SELECT body FROM clinical_note LIMIT 1",
            CLEANUP,
        ));
        assert!(
            r.iter()
                .any(|m| m.contains("read_back") && m.contains("$1")),
            "{r:?}"
        );
        let r = refused(&write_probe(
            INSERT,
            "DELETE FROM clinical_note WHERE id = $1",
            CLEANUP,
        ));
        assert!(
            r.iter()
                .any(|m| m.contains("read_back") && m.contains("not a SELECT")),
            "{r:?}"
        );
    }
}
