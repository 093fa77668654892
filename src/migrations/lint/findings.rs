//! What every dialect's lint shares: findings, the rules with their severities and messages,
//! and what the ups so far have built (the schema a type change is checked against).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// How bad a finding is. Errors fail `validate` and `lint` (exit 2); warnings are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a look: often acceptable (e.g. a short lock on a small table).
    Warning,
    /// Loses data, fails, blocks badly or cannot be undone.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// One problem in one migration file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Finding {
    /// The migration file.
    pub file: PathBuf,
    /// Line in the file (1-based).
    pub line: u64,
    /// Column in the line (1-based), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u64>,
    /// The rule (stable, kebab-case: what an allow comment names).
    pub rule: &'static str,
    /// How bad it is.
    pub severity: Severity,
    /// What is wrong and what to do instead.
    pub message: String,
    /// The table the statement acts on (unqualified, lower case), when the rule knows it:
    /// `plan` and the rehearsal look it up on the real trusts to say what the finding means
    /// there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
}

impl Finding {
    /// The same finding, about `table`.
    pub fn on_table(mut self, table: &str) -> Finding {
        self.table = Some(table.to_ascii_lowercase());
        self
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}[{}]: {}",
            self.file.display(),
            self.line,
            self.severity,
            self.rule,
            self.message
        )
    }
}

/// A lint rule.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// Stable kebab-case name.
    pub name: &'static str,
    /// Its severity.
    pub severity: Severity,
    /// Whether an allow comment can silence it.
    pub allowable: bool,
    /// One line for the README and `--help`.
    pub summary: &'static str,
}

const fn rule(
    name: &'static str,
    severity: Severity,
    allowable: bool,
    summary: &'static str,
) -> Rule {
    Rule {
        name,
        severity,
        allowable,
        summary,
    }
}

/// Rule names.
pub mod rules {
    pub const DROP_TABLE: &str = "drop-table";
    pub const DROP_COLUMN: &str = "drop-column";
    pub const TYPE_NARROWING: &str = "type-narrowing";
    pub const TRUNCATE: &str = "truncate";
    pub const DELETE_WITHOUT_WHERE: &str = "delete-without-where";
    pub const UPDATE_WITHOUT_WHERE: &str = "update-without-where";
    pub const CREATE_INDEX_NOT_CONCURRENTLY: &str = "create-index-not-concurrently";
    pub const CONCURRENTLY_IN_TRANSACTION: &str = "concurrently-in-transaction";
    pub const ADD_NOT_NULL_WITHOUT_DEFAULT: &str = "add-not-null-without-default";
    pub const ADD_FOREIGN_KEY_VALIDATED: &str = "add-foreign-key-validated";
    pub const MISSING_DOWN: &str = "missing-down";
    pub const EMPTY_DOWN: &str = "empty-down";
    pub const DOWN_DOES_NOT_UNDO_UP: &str = "down-does-not-undo-up";
    pub const REHEARSAL_FAILED: &str = "rehearsal-failed";
    pub const PARSE_ERROR: &str = "parse-error";
    pub const INVALID_ALLOW: &str = "invalid-allow";
    pub const TRANSACTION_CONTROL: &str = "transaction-control";
    pub const DROP_DATABASE: &str = "drop-database";
    pub const RENAME_TABLE: &str = "rename-table";
    pub const RENAME_COLUMN: &str = "rename-column";
    pub const COLUMN_TYPE_REWRITE: &str = "column-type-rewrite";
    pub const ADD_COLUMN_REWRITES_TABLE: &str = "add-column-rewrites-table";
    pub const SET_NOT_NULL: &str = "set-not-null";
    pub const ADD_CHECK_VALIDATED: &str = "add-check-validated";
    pub const ADD_UNIQUE_WITHOUT_INDEX: &str = "add-unique-without-index";
    pub const DROP_INDEX_NOT_CONCURRENTLY: &str = "drop-index-not-concurrently";
    pub const MAINTENANCE_LOCKS_TABLE: &str = "maintenance-locks-table";
}

use Severity::{Error, Warning};

/// Every rule, with its severity.
pub const RULES: &[Rule] = &[
    rule(rules::DROP_TABLE, Error, true, "an up migration drops a table (its rows are lost)"),
    rule(rules::DROP_COLUMN, Error, true, "an up migration drops a column (its values are lost)"),
    rule(rules::TYPE_NARROWING, Error, true, "a column's type is changed to one that holds less (shorter, smaller, another kind): the change can fail or truncate; a warning when the old type is unknown"),
    rule(rules::TRUNCATE, Error, true, "an up migration truncates a table"),
    rule(rules::DELETE_WITHOUT_WHERE, Error, true, "DELETE without WHERE empties a table"),
    rule(rules::UPDATE_WITHOUT_WHERE, Error, true, "UPDATE without WHERE rewrites every row (and locks them all in one transaction)"),
    rule(rules::CREATE_INDEX_NOT_CONCURRENTLY, Warning, true, "PostgreSQL: CREATE INDEX on an existing table without CONCURRENTLY blocks writes to it while the index builds"),
    rule(rules::CONCURRENTLY_IN_TRANSACTION, Error, true, "PostgreSQL: CREATE/DROP INDEX CONCURRENTLY (or REINDEX CONCURRENTLY, VACUUM) in a migration without `-- flotilla: no-transaction` fails"),
    rule(rules::ADD_NOT_NULL_WITHOUT_DEFAULT, Error, true, "adding a NOT NULL column without a DEFAULT to an existing table fails on every trust where it has rows"),
    rule(rules::ADD_FOREIGN_KEY_VALIDATED, Warning, true, "PostgreSQL: adding a foreign key to an existing table without NOT VALID blocks writes to both tables while every row is checked (add it NOT VALID, then VALIDATE CONSTRAINT)"),
    rule(rules::MISSING_DOWN, Error, false, "an up migration has no down file"),
    rule(rules::EMPTY_DOWN, Error, true, "a down migration has no statements (mark the up `irreversible` if it cannot be undone)"),
    rule(rules::DOWN_DOES_NOT_UNDO_UP, Error, true, "rehearsal on a scratch database: after up then down, the schema differs from before up"),
    rule(rules::REHEARSAL_FAILED, Error, true, "rehearsal on a scratch database: the up or down script failed"),
    rule(rules::PARSE_ERROR, Error, true, "the SQL does not parse (the rest of that file is not linted)"),
    rule(rules::INVALID_ALLOW, Error, false, "an allow comment names an unknown rule or gives no reason"),
    rule(rules::TRANSACTION_CONTROL, Error, true, "BEGIN, COMMIT or ROLLBACK in a migration that flotilla already runs in a transaction: a COMMIT ends it early (the tracking row is no longer applied with the change), a BEGIN without COMMIT leaves nothing applied"),
    rule(rules::DROP_DATABASE, Error, true, "PostgreSQL: DROP DATABASE in a migration (up or down)"),
    rule(rules::RENAME_TABLE, Warning, true, "an up renames an existing table: the release still running on trusts not yet upgraded (and during the rollout) queries the old name"),
    rule(rules::RENAME_COLUMN, Warning, true, "an up renames a column of an existing table: the running release queries the old name"),
    rule(rules::COLUMN_TYPE_REWRITE, Warning, true, "PostgreSQL: ALTER COLUMN ... TYPE on an existing table rewrites it (and its indexes) while blocking reads and writes, unless the new type keeps the storage (a longer varchar, varchar to text)"),
    rule(rules::ADD_COLUMN_REWRITES_TABLE, Warning, true, "PostgreSQL: ADD COLUMN with a serial or identity type, a stored generated expression or a volatile DEFAULT (gen_random_uuid(), random()...) on an existing table rewrites it while blocking reads and writes"),
    rule(rules::SET_NOT_NULL, Warning, true, "PostgreSQL: ALTER COLUMN ... SET NOT NULL on an existing table scans every row while blocking reads and writes (add a CHECK (col IS NOT NULL) NOT VALID, VALIDATE it, then SET NOT NULL)"),
    rule(rules::ADD_CHECK_VALIDATED, Warning, true, "PostgreSQL: ADD CONSTRAINT ... CHECK on an existing table without NOT VALID checks every row while blocking reads and writes"),
    rule(rules::ADD_UNIQUE_WITHOUT_INDEX, Warning, true, "PostgreSQL: ADD CONSTRAINT ... UNIQUE / PRIMARY KEY on an existing table builds the index while blocking reads and writes (CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT ... USING INDEX)"),
    rule(rules::DROP_INDEX_NOT_CONCURRENTLY, Warning, true, "PostgreSQL: DROP INDEX without CONCURRENTLY in an up blocks every read and write of its table while it waits for and drops the index"),
    rule(rules::MAINTENANCE_LOCKS_TABLE, Warning, true, "PostgreSQL: VACUUM FULL, CLUSTER, REINDEX or DETACH PARTITION without CONCURRENTLY in an up blocks the table while it runs"),
];

/// The rule named `name`.
pub fn find_rule(name: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.name == name)
}

pub(super) fn severity_of(name: &str) -> Severity {
    find_rule(name).map_or(Error, |r| r.severity)
}

pub(super) fn finding(
    file: &Path,
    line: u64,
    column: Option<u64>,
    rule: &'static str,
    message: String,
) -> Finding {
    Finding {
        file: file.to_path_buf(),
        line: line.max(1),
        column: column.filter(|c| *c > 0),
        rule,
        severity: severity_of(rule),
        message,
        table: None,
    }
}

/// What the ups so far have built: table -> column -> declared type (lowercase SQL text).
#[derive(Default)]
pub(super) struct Schema {
    pub(super) tables: BTreeMap<String, BTreeMap<String, String>>,
}

/// Kinds of column type, for deciding whether a change narrows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Integer,
    Decimal,
    Float,
    Text,
    Boolean,
    Date,
    Timestamp,
    Time,
    Bytes,
    Json,
    Uuid,
    Other,
}

/// A type's kind, size rank and numeric arguments: `varchar(20)` is (Text, 0, [20]).
pub(super) fn classify(ty: &str) -> (Kind, u32, Vec<u64>) {
    let ty = ty.trim().to_lowercase();
    let (base, args) = match ty.split_once('(') {
        Some((b, rest)) => {
            let args = rest
                .trim_end_matches(|c: char| c != ')')
                .trim_end_matches(')')
                .split(',')
                .filter_map(|a| a.trim().parse().ok())
                .collect();
            (b.trim().to_string(), args)
        }
        None => (ty.clone(), Vec::new()),
    };
    let base = base.trim_end_matches(" unsigned").trim().to_string();
    let (kind, rank) = match base.as_str() {
        "tinyint" => (Kind::Integer, 0),
        "smallint" | "int2" | "smallserial" | "serial2" => (Kind::Integer, 1),
        "int" | "integer" | "int4" | "mediumint" | "serial" | "serial4" => (Kind::Integer, 2),
        "bigint" | "int8" | "bigserial" | "serial8" => (Kind::Integer, 3),
        "numeric" | "decimal" | "dec" => (Kind::Decimal, 0),
        "real" | "float4" => (Kind::Float, 1),
        "double" | "double precision" | "float8" | "float" => (Kind::Float, 2),
        "char" | "character" | "varchar" | "character varying" | "char varying" | "nvarchar"
        | "nchar" => (Kind::Text, 0),
        "text" | "string" | "clob" | "tinytext" | "mediumtext" | "longtext" | "citext" => {
            (Kind::Text, 1)
        }
        "bool" | "boolean" => (Kind::Boolean, 0),
        "date" => (Kind::Date, 0),
        "bytea" | "blob" | "binary" | "varbinary" => (Kind::Bytes, 0),
        "json" | "jsonb" => (Kind::Json, 0),
        "uuid" => (Kind::Uuid, 0),
        b if b.starts_with("timestamp") || b.starts_with("datetime") => (Kind::Timestamp, 0),
        b if b.starts_with("time") => (Kind::Time, 0),
        _ => (Kind::Other, 0),
    };
    (kind, rank, args)
}

/// Why changing a column from `old` to `new` can lose or refuse values, if it can.
pub(super) fn narrowing(old: &str, new: &str) -> Option<String> {
    if old == new {
        return None;
    }
    let (ok, orank, oargs) = classify(old);
    let (nk, nrank, nargs) = classify(new);
    if ok == nk {
        return match ok {
            Kind::Integer | Kind::Float if nrank < orank => Some("a smaller number type".into()),
            Kind::Text => {
                let old_len = if orank == 1 {
                    None
                } else {
                    oargs.first().copied()
                };
                let new_len = if nrank == 1 {
                    None
                } else {
                    nargs.first().copied()
                };
                match (old_len, new_len) {
                    (_, None) => None,
                    (None, Some(n)) => {
                        Some(format!("unbounded text becomes at most {n} characters"))
                    }
                    (Some(o), Some(n)) if n < o => Some(format!("{o} characters become {n}")),
                    _ => None,
                }
            }
            Kind::Decimal => match (oargs.as_slice(), nargs.as_slice()) {
                (_, []) => None,
                ([], _) => Some("an unbounded number becomes a bounded one".into()),
                (o, n) => {
                    let (op, os) = (o[0], o.get(1).copied().unwrap_or(0));
                    let (np, ns) = (n[0], n.get(1).copied().unwrap_or(0));
                    if ns < os || np.saturating_sub(ns) < op.saturating_sub(os) {
                        Some("fewer digits".into())
                    } else {
                        None
                    }
                }
            },
            Kind::Timestamp | Kind::Time => match (oargs.first(), nargs.first()) {
                (None, Some(_)) => Some("less precision".into()),
                (Some(o), Some(n)) if n < o => Some("less precision".into()),
                _ => None,
            },
            _ => None,
        };
    }
    let widening = matches!(
        (ok, nk),
        (Kind::Integer, Kind::Decimal | Kind::Float | Kind::Text)
            | (
                Kind::Decimal
                    | Kind::Float
                    | Kind::Boolean
                    | Kind::Uuid
                    | Kind::Date
                    | Kind::Timestamp
                    | Kind::Time
                    | Kind::Json,
                Kind::Text
            )
            | (Kind::Date, Kind::Timestamp)
    ) && (nk != Kind::Text || classify(new).1 == 1);
    if widening {
        None
    } else {
        Some("a different kind of value".into())
    }
}

/// Whether changing a column from `old` to `new` keeps its storage, so PostgreSQL changes the
/// type without rewriting the table: the same type, a longer (or unbounded) varchar, varchar to
/// text, a numeric with more precision and the same scale (or unbounded).
pub(super) fn keeps_storage(old: Option<&str>, new: &str) -> bool {
    let Some(old) = old else { return false };
    if old == new {
        return true;
    }
    let (ok, orank, oargs) = classify(old);
    let (nk, nrank, nargs) = classify(new);
    match (ok, nk) {
        (Kind::Text, Kind::Text) => {
            let varchar = |t: &str| t.starts_with("varchar") || t.starts_with("character varying");
            let text = |t: &str| t == "text";
            let unbounded = nrank == 1 || nargs.is_empty();
            (varchar(old) || text(old))
                && (text(new)
                    || (varchar(new)
                        && (unbounded
                            || (orank == 0
                                && !oargs.is_empty()
                                && nargs.first() >= oargs.first()))))
        }
        (Kind::Decimal, Kind::Decimal) => match (oargs.as_slice(), nargs.as_slice()) {
            (_, []) => true,
            ([op, os @ ..], [np, ns @ ..]) => np >= op && os.first() == ns.first(),
            _ => false,
        },
        _ => false,
    }
}

/// The messages of the rules both dialects' lints report, so they say the same.
pub(super) mod msg {
    use crate::migrations::Migration;

    pub fn drop_table(table: &str) -> String {
        format!("DROP TABLE {table} deletes every row of it; keep the table until no release reads it, and drop it in a later, reviewed migration")
    }

    pub fn drop_column(table: &str, col: &str) -> String {
        format!("DROP COLUMN {table}.{col} deletes its values; stop reading it in one release, drop it in a later one")
    }

    pub fn type_narrowing(table: &str, col: &str, old: &str, new: &str, why: &str) -> String {
        format!("{table}.{col} changes from {old} to {new}: {why}; values that do not fit make it fail or are cut")
    }

    pub fn type_unknown(table: &str, col: &str, new: &str) -> String {
        format!("{table}.{col} changes to {new} and its current type is unknown to the migrations; check it does not narrow")
    }

    pub fn truncate(table: &str) -> String {
        format!("TRUNCATE {table} deletes every row of it")
    }

    pub fn delete_without_where(table: &str) -> String {
        format!("DELETE FROM {table} without WHERE deletes every row")
    }

    pub fn update_without_where(table: &str) -> String {
        format!("UPDATE {table} without WHERE rewrites every row in one transaction; update in LIMITed batches (`-- flotilla: batch`) with a WHERE")
    }

    pub fn create_index_not_concurrently(name: &str, table: &str) -> String {
        format!("CREATE INDEX {name} on existing table {table} blocks writes to it while it builds; use CREATE INDEX CONCURRENTLY in a `-- flotilla: no-transaction` migration")
    }

    pub fn create_index_concurrently_in_transaction(name: &str) -> String {
        format!("CREATE INDEX CONCURRENTLY {name} cannot run inside a transaction; put `-- flotilla: no-transaction` on line 1")
    }

    pub fn drop_index_concurrently_in_transaction(names: &[String]) -> String {
        format!("DROP INDEX CONCURRENTLY {} cannot run inside a transaction; put `-- flotilla: no-transaction` on line 1", names.join(", "))
    }

    pub fn add_not_null_without_default(table: &str, col: &str) -> String {
        format!("ADD COLUMN {table}.{col} NOT NULL without a DEFAULT fails on every trust whose {table} has rows; give it a DEFAULT, or add it nullable, backfill it in batches and make it NOT NULL in a later migration")
    }

    pub fn add_foreign_key_validated(table: &str, to: &str) -> String {
        format!("adding a foreign key from {table} to {to} checks every row while blocking writes to both tables; add it NOT VALID, then VALIDATE CONSTRAINT in a later statement")
    }

    pub fn empty_down(m: &Migration) -> String {
        format!(
            "the down migration of {m} has no statements; write one that undoes {}, or mark the up `-- flotilla: irreversible`",
            m.up.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
        )
    }

    pub fn transaction_control(word: &str) -> String {
        format!("{word} in a migration that flotilla runs in a transaction: flotilla commits the change with its tracking row; remove it, or put `-- flotilla: no-transaction` on line 1 if the script manages its own transactions")
    }

    pub fn rename_table(table: &str, new: &str) -> String {
        format!("renaming table {table} to {new} breaks every query of the running release that names {table}; add the new table (or a view) first, move readers, drop the old one in a later release")
    }

    pub fn rename_column(table: &str, old: &str, new: &str) -> String {
        format!("renaming {table}.{old} to {new} breaks every query of the running release that names {old}; add {new}, write both, move readers, then drop {old} in a later release")
    }

    pub fn column_type_rewrite(table: &str, col: &str, new: &str) -> String {
        format!("changing {table}.{col} to {new} rewrites {table} and its indexes while blocking reads and writes; add a new column, backfill it in batches and switch to it")
    }

    pub fn add_column_rewrites_table(table: &str, col: &str, why: &str) -> String {
        format!("ADD COLUMN {table}.{col} rewrites {table} while blocking reads and writes: {why}; add it nullable without that default, backfill it in batches, then set the default")
    }

    pub fn set_not_null(table: &str, col: &str) -> String {
        format!("SET NOT NULL on {table}.{col} scans every row while blocking reads and writes; add CHECK ({col} IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT it in a later statement, then SET NOT NULL (PostgreSQL 12+ uses the check)")
    }
}

/// Serial types fill every row from a sequence: a default.
pub(super) fn is_serial(type_text: &str) -> bool {
    matches!(
        type_text,
        "serial" | "serial2" | "serial4" | "serial8" | "smallserial" | "bigserial"
    )
}
