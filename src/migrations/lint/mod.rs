//! The migration linter: parses every migration with a real SQL parser (sqlparser) and reports,
//! with file and line, what would lose data, take long locks on PostgreSQL, fail to undo, or not
//! parse. Pure: it reads the catalog's scripts and never touches a database (the rehearsal that
//! checks a down undoes its up is in [`super::roundtrip`]).
//!
//! A migration may allow a rule with a comment in either of its files:
//! `-- flotilla-lint: allow add-not-null-without-default -- the table is empty on every trust`.
//! An allow without a reason, or naming an unknown rule, is itself an error.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use sqlparser::ast::{
    AlterColumnOperation, AlterTableOperation, ColumnOption, ObjectName, ObjectType, Statement,
    TableConstraint, TableFactor, TableWithJoins,
};
use sqlparser::dialect::{Dialect as SqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

use super::{Migration, Mode, Reversibility};
use crate::db::Dialect;

pub mod check;

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
    rule(rules::CONCURRENTLY_IN_TRANSACTION, Error, true, "PostgreSQL: CREATE/DROP INDEX CONCURRENTLY in a migration without `-- flotilla: no-transaction` fails"),
    rule(rules::ADD_NOT_NULL_WITHOUT_DEFAULT, Error, true, "adding a NOT NULL column without a DEFAULT to an existing table fails on every trust where it has rows"),
    rule(rules::ADD_FOREIGN_KEY_VALIDATED, Warning, true, "PostgreSQL: adding a foreign key to an existing table without NOT VALID blocks writes to both tables while every row is checked (add it NOT VALID, then VALIDATE CONSTRAINT)"),
    rule(rules::MISSING_DOWN, Error, false, "an up migration has no down file"),
    rule(rules::EMPTY_DOWN, Error, true, "a down migration has no statements (mark the up `irreversible` if it cannot be undone)"),
    rule(rules::DOWN_DOES_NOT_UNDO_UP, Error, true, "rehearsal on a scratch database: after up then down, the schema differs from before up"),
    rule(rules::REHEARSAL_FAILED, Error, true, "rehearsal on a scratch database: the up or down script failed"),
    rule(rules::PARSE_ERROR, Error, true, "the SQL does not parse (the rest of that file is not linted)"),
    rule(rules::INVALID_ALLOW, Error, false, "an allow comment names an unknown rule or gives no reason"),
];

/// The rule named `name`.
pub fn find_rule(name: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.name == name)
}

fn severity_of(name: &str) -> Severity {
    find_rule(name).map_or(Error, |r| r.severity)
}

fn finding(
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

/// Lint `migrations` (in version order, as a catalog holds them) for `dialect`. Findings come
/// sorted by file and line; those a migration allows are left out.
pub fn lint(migrations: &[Migration], dialect: Dialect) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut schema = Schema::default();
    for m in migrations {
        let mut found = Vec::new();
        lint_script(m, false, dialect, &mut schema, &mut found);
        lint_script(m, true, dialect, &mut schema, &mut found);
        out.extend(found);
    }
    let mut out = apply_allows(out, migrations);
    out.extend(invalid_allows(migrations));
    sort_findings(&mut out);
    out
}

/// Sort by file (a migration's up before its down), line, rule; drop exact duplicates (the
/// same finding for two dialects).
pub fn sort_findings(findings: &mut Vec<Finding>) {
    fn key(f: &Finding) -> (PathBuf, String, u8) {
        let name = f
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (stem, direction) = match (name.strip_suffix(".up.sql"), name.strip_suffix(".down.sql"))
        {
            (Some(s), _) => (s.to_string(), 0),
            (None, Some(s)) => (s.to_string(), 1),
            _ => (name, 2),
        };
        (
            f.file.parent().map(Path::to_path_buf).unwrap_or_default(),
            stem,
            direction,
        )
    }
    findings.sort_by(|a, b| {
        (key(a), a.line, a.column, a.rule, &a.message).cmp(&(
            key(b),
            b.line,
            b.column,
            b.rule,
            &b.message,
        ))
    });
    findings.dedup();
}

/// `findings` without those their migration allows (by a comment in its up or down file).
pub fn apply_allows(findings: Vec<Finding>, migrations: &[Migration]) -> Vec<Finding> {
    let allowed: Vec<(&Migration, BTreeSet<String>)> = migrations
        .iter()
        .map(|m| {
            let mut names = allow_comments(&m.up.path, &m.up.sql).0;
            names.extend(allow_comments(&m.down.path, &m.down.sql).0);
            (m, names)
        })
        .collect();
    findings
        .into_iter()
        .filter(|f| {
            let allows = allowed
                .iter()
                .find(|(m, _)| m.up.path == f.file || m.down.path == f.file)
                .is_some_and(|(_, names)| names.contains(f.rule));
            let allowable = find_rule(f.rule).is_none_or(|r| r.allowable);
            !(allows && allowable)
        })
        .collect()
}

/// Every malformed allow comment of `migrations`, as `invalid-allow` errors.
pub fn invalid_allows(migrations: &[Migration]) -> Vec<Finding> {
    migrations
        .iter()
        .flat_map(|m| [&m.up, &m.down])
        .flat_map(|s| allow_comments(&s.path, &s.sql).1)
        .collect()
}

/// The rules a script allows, and findings for malformed allow comments.
fn allow_comments(path: &Path, sql: &str) -> (BTreeSet<String>, Vec<Finding>) {
    let mut allows = BTreeSet::new();
    let mut invalid = Vec::new();
    for (line, comment) in line_comments(sql) {
        let Some(rest) = comment.trim().strip_prefix("flotilla-lint:") else {
            continue;
        };
        let (head, reason) = match rest.split_once("--") {
            Some((h, r)) => (h.trim(), r.trim()),
            None => (rest.trim(), ""),
        };
        let Some(names) = head.strip_prefix("allow") else {
            invalid.push(finding(
                path,
                line,
                None,
                rules::INVALID_ALLOW,
                format!("expected `-- flotilla-lint: allow RULE -- reason`, found `--{comment}`"),
            ));
            continue;
        };
        let names: Vec<&str> = names
            .split([',', ' '])
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect();
        if names.is_empty() {
            invalid.push(finding(
                path,
                line,
                None,
                rules::INVALID_ALLOW,
                "allow names no rule; expected `-- flotilla-lint: allow RULE -- reason`".into(),
            ));
            continue;
        }
        let mut ok = true;
        for n in &names {
            match find_rule(n) {
                Some(r) if r.allowable => {}
                Some(r) => {
                    ok = false;
                    invalid.push(finding(
                        path,
                        line,
                        None,
                        rules::INVALID_ALLOW,
                        format!("rule '{}' cannot be allowed", r.name),
                    ));
                }
                None => {
                    ok = false;
                    let known: Vec<&str> = RULES
                        .iter()
                        .filter(|r| r.allowable)
                        .map(|r| r.name)
                        .collect();
                    invalid.push(finding(
                        path,
                        line,
                        None,
                        rules::INVALID_ALLOW,
                        format!("unknown rule '{n}' (known: {})", known.join(", ")),
                    ));
                }
            }
        }
        if reason.is_empty() {
            ok = false;
            invalid.push(finding(path, line, None, rules::INVALID_ALLOW, format!("allow {} gives no reason; write `-- flotilla-lint: allow {} -- why it is safe here`", names.join(", "), names.join(", "))));
        }
        if ok {
            allows.extend(names.iter().map(|n| n.to_string()));
        }
    }
    (allows, invalid)
}

/// Every `--` comment of `sql` with its line, found by the tokenizer (so `--` inside a string
/// is not a comment). A script that does not tokenize is scanned line by line instead.
fn line_comments(sql: &str) -> Vec<(u64, String)> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .with_unescape(false)
        .tokenize_with_location();
    match tokens {
        Ok(tokens) => tokens
            .into_iter()
            .filter_map(|t| match t.token {
                Token::Whitespace(Whitespace::SingleLineComment { comment, prefix })
                    if prefix == "--" =>
                {
                    Some((t.span.start.line, comment.trim_end().to_string()))
                }
                _ => None,
            })
            .collect(),
        Err(_) => sql
            .lines()
            .enumerate()
            .filter_map(|(i, l)| {
                l.trim_start()
                    .strip_prefix("--")
                    .map(|c| (i as u64 + 1, c.to_string()))
            })
            .collect(),
    }
}

fn parser_dialect(dialect: Dialect) -> &'static dyn SqlDialect {
    match dialect {
        Dialect::Postgres => &PostgreSqlDialect {},
        Dialect::Sqlite => &SQLiteDialect {},
    }
}

/// Parse a whole script into its statements, each with the line and column where it starts
/// (sqlparser's spans are empty for some statements, e.g. DROP). On error: the message and its
/// line and column.
#[allow(clippy::type_complexity)]
pub fn parse(
    sql: &str,
    dialect: Dialect,
) -> Result<Vec<(Statement, u64, u64)>, (String, u64, u64)> {
    let located = |e: sqlparser::parser::ParserError| {
        let text = e.to_string();
        let (line, column) = error_location(&text).unwrap_or((1, 0));
        (text, line, column)
    };
    let mut parser = Parser::new(parser_dialect(dialect))
        .try_with_sql(sql)
        .map_err(located)?;
    let mut out = Vec::new();
    let mut expecting_delimiter = false;
    loop {
        while parser.consume_token(&Token::SemiColon) {
            expecting_delimiter = false;
        }
        let next = parser.peek_token();
        match &next.token {
            Token::EOF => break,
            Token::Word(w)
                if expecting_delimiter && w.keyword == sqlparser::keywords::Keyword::END =>
            {
                break
            }
            _ => {}
        }
        let (line, column) = (next.span.start.line, next.span.start.column);
        if expecting_delimiter {
            return Err((
                format!(
                    "sql parser error: Expected: end of statement, found: {}",
                    next.token
                ),
                line,
                column,
            ));
        }
        let statement = if starts_drop_index_concurrently(&parser) {
            drop_index_concurrently(&mut parser, dialect).map_err(located)?
        } else {
            parser.parse_statement().map_err(located)?
        };
        out.push((statement, line, column));
        expecting_delimiter = true;
    }
    Ok(out)
}

fn starts_drop_index_concurrently(parser: &Parser) -> bool {
    use sqlparser::keywords::Keyword;
    let [a, b, c] = parser.peek_tokens::<3>();
    matches!((a, b, c), (Token::Word(a), Token::Word(b), Token::Word(c))
        if a.keyword == Keyword::DROP && b.keyword == Keyword::INDEX && c.keyword == Keyword::CONCURRENTLY)
}

/// sqlparser 0.64 does not know PostgreSQL's `DROP INDEX CONCURRENTLY`: parse the statement
/// without that word (it changes how the index is dropped, not what is dropped).
fn drop_index_concurrently(
    parser: &mut Parser,
    dialect: Dialect,
) -> Result<Statement, sqlparser::parser::ParserError> {
    let mut text = String::new();
    let mut skipped = false;
    loop {
        match parser.peek_token().token {
            Token::SemiColon | Token::EOF => break,
            _ => {}
        }
        let t = parser.next_token().token;
        if !skipped {
            if let Token::Word(w) = &t {
                if w.keyword == sqlparser::keywords::Keyword::CONCURRENTLY {
                    skipped = true;
                    continue;
                }
            }
        }
        text.push_str(&t.to_string());
        text.push(' ');
    }
    Parser::new(parser_dialect(dialect))
        .try_with_sql(&text)?
        .parse_statement()
}

/// `... at Line: 3, Column: 7` in a sqlparser error.
fn error_location(text: &str) -> Option<(u64, u64)> {
    let at = text.rfind("Line: ")?;
    let rest = &text[at + "Line: ".len()..];
    let (line, rest) = rest.split_once(',')?;
    let column = rest.trim().strip_prefix("Column: ")?;
    let column: String = column.chars().take_while(char::is_ascii_digit).collect();
    Some((line.trim().parse().ok()?, column.parse().unwrap_or(0)))
}

/// What the ups so far have built: table -> column -> declared type (lowercase SQL text).
#[derive(Default)]
struct Schema {
    tables: BTreeMap<String, BTreeMap<String, String>>,
}

fn last_name(name: &ObjectName) -> String {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .map(|i| i.value.to_lowercase())
        .unwrap_or_else(|| name.to_string().to_lowercase())
}

fn table_of(t: &TableWithJoins) -> Option<String> {
    match &t.relation {
        TableFactor::Table { name, .. } => Some(last_name(name)),
        _ => None,
    }
}

fn lint_script(
    m: &Migration,
    down: bool,
    dialect: Dialect,
    schema: &mut Schema,
    out: &mut Vec<Finding>,
) {
    let script = if down { &m.down } else { &m.up };
    let path = script.path.as_path();
    let statements = match parse(&script.sql, dialect) {
        Ok(s) => s,
        Err((message, line, column)) => {
            out.push(finding(
                path,
                line,
                Some(column),
                rules::PARSE_ERROR,
                format!("does not parse as {}: {message}", dialect_name(dialect)),
            ));
            return;
        }
    };
    if down && statements.is_empty() && m.reversibility == Reversibility::Reversible {
        out.push(finding(
            path,
            1,
            None,
            rules::EMPTY_DOWN,
            format!(
                "the down migration of {m} has no statements; write one that undoes {}, or mark the up `-- flotilla: irreversible`",
                m.up.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
            ),
        ));
    }
    let pg = dialect == Dialect::Postgres;
    let mut created: HashSet<String> = HashSet::new();
    for (s, line, column) in &statements {
        let (line, column) = (*line, Some(*column));
        let mut push = |rule: &'static str, message: String| {
            out.push(finding(path, line, column, rule, message));
        };
        match s {
            Statement::CreateTable(ct) => {
                let table = last_name(&ct.name);
                created.insert(table.clone());
                if !down {
                    let cols = ct
                        .columns
                        .iter()
                        .map(|c| {
                            (
                                c.name.value.to_lowercase(),
                                c.data_type.to_string().to_lowercase(),
                            )
                        })
                        .collect();
                    schema.tables.insert(table, cols);
                }
            }
            Statement::Drop {
                object_type: ObjectType::Table,
                names,
                ..
            } => {
                for n in names {
                    let table = last_name(n);
                    if !down && !created.contains(&table) {
                        push(rules::DROP_TABLE, format!("DROP TABLE {table} deletes every row of it; keep the table until no release reads it, and drop it in a later, reviewed migration"));
                    }
                    if !down {
                        schema.tables.remove(&table);
                    }
                }
            }
            Statement::Drop {
                object_type: ObjectType::Index,
                names,
                ..
            } if pg
                && script.mode != Mode::NoTransaction
                && words_at(&script.sql, line, column.unwrap_or(1), 3)
                    .eq_ignore_ascii_case("drop index concurrently") =>
            {
                let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
                push(rules::CONCURRENTLY_IN_TRANSACTION, format!("DROP INDEX CONCURRENTLY {} cannot run inside a transaction; put `-- flotilla: no-transaction` on line 1", names.join(", ")));
            }
            Statement::Truncate(t) => {
                for target in &t.table_names {
                    let table = last_name(&target.name);
                    if !down && !created.contains(&table) {
                        push(
                            rules::TRUNCATE,
                            format!("TRUNCATE {table} deletes every row of it"),
                        );
                    }
                }
            }
            Statement::Delete(d) if d.selection.is_none() => {
                let tables = match &d.from {
                    sqlparser::ast::FromTable::WithFromKeyword(t)
                    | sqlparser::ast::FromTable::WithoutKeyword(t) => t,
                };
                let table = tables.first().and_then(table_of).unwrap_or_default();
                if !down && !created.contains(&table) {
                    push(
                        rules::DELETE_WITHOUT_WHERE,
                        format!("DELETE FROM {table} without WHERE deletes every row"),
                    );
                }
            }
            Statement::Update(u) if u.selection.is_none() => {
                let table = table_of(&u.table).unwrap_or_default();
                if !down && !created.contains(&table) {
                    push(rules::UPDATE_WITHOUT_WHERE, format!("UPDATE {table} without WHERE rewrites every row in one transaction; update in LIMITed batches (`-- flotilla: batch`) with a WHERE"));
                }
            }
            Statement::CreateIndex(ci) => {
                let table = last_name(&ci.table_name);
                let name = ci.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
                if pg && !ci.concurrently && !created.contains(&table) {
                    push(rules::CREATE_INDEX_NOT_CONCURRENTLY, format!("CREATE INDEX {name} on existing table {table} blocks writes to it while it builds; use CREATE INDEX CONCURRENTLY in a `-- flotilla: no-transaction` migration"));
                }
                if pg && ci.concurrently && script.mode != Mode::NoTransaction {
                    push(rules::CONCURRENTLY_IN_TRANSACTION, format!("CREATE INDEX CONCURRENTLY {name} cannot run inside a transaction; put `-- flotilla: no-transaction` on line 1"));
                }
            }
            Statement::AlterTable(at) => {
                let table = last_name(&at.name);
                let existing = !created.contains(&table);
                let here = Here {
                    path,
                    line,
                    column: column.unwrap_or(0),
                };
                for op in &at.operations {
                    alter_table(op, &table, existing, down, dialect, schema, &here, out);
                }
            }
            _ => {}
        }
    }
}

/// The first `n` words of `sql` from 1-based `line` and `column` (a character column), joined
/// by single spaces.
fn words_at(sql: &str, line: u64, column: u64, n: usize) -> String {
    let Some(text) = sql.lines().nth(line.saturating_sub(1) as usize) else {
        return String::new();
    };
    let start: String = text
        .chars()
        .skip(column.saturating_sub(1) as usize)
        .collect();
    let rest_lines = sql.lines().skip(line as usize);
    let mut words = Vec::new();
    for l in std::iter::once(start.as_str()).chain(rest_lines) {
        for w in l.split_whitespace() {
            if words.len() == n {
                return words.join(" ");
            }
            words.push(w.to_string());
        }
    }
    words.join(" ")
}

fn dialect_name(d: Dialect) -> &'static str {
    match d {
        Dialect::Postgres => "PostgreSQL",
        Dialect::Sqlite => "SQLite",
    }
}

/// Where an ALTER TABLE statement starts, for findings about its operations.
struct Here<'a> {
    path: &'a Path,
    line: u64,
    column: u64,
}

impl Here<'_> {
    /// A finding at `ident` (the column an operation names) when its position is known, else
    /// at the statement.
    fn at(&self, ident: &sqlparser::ast::Ident, rule: &'static str, message: String) -> Finding {
        let start = ident.span.start;
        let (line, column) = if start.line > 0 {
            (start.line, start.column)
        } else {
            (self.line, self.column)
        };
        finding(self.path, line, Some(column), rule, message)
    }
}

#[allow(clippy::too_many_arguments)]
fn alter_table(
    op: &AlterTableOperation,
    table: &str,
    existing: bool,
    down: bool,
    dialect: Dialect,
    schema: &mut Schema,
    here: &Here,
    out: &mut Vec<Finding>,
) {
    let pg = dialect == Dialect::Postgres;
    match op {
        AlterTableOperation::AddColumn { column_def, .. } => {
            let col = column_def.name.value.to_lowercase();
            let opts: Vec<&ColumnOption> = column_def.options.iter().map(|o| &o.option).collect();
            let not_null = opts
                .iter()
                .any(|o| matches!(o, ColumnOption::NotNull | ColumnOption::PrimaryKey(_)));
            let has_default = opts.iter().any(|o| {
                matches!(
                    o,
                    ColumnOption::Default(_)
                        | ColumnOption::Generated { .. }
                        | ColumnOption::Identity(_)
                        | ColumnOption::Materialized(_)
                )
            });
            // Both PostgreSQL and SQLite add one to an empty (e.g. just created) table, and
            // refuse it on a table with rows.
            if not_null && !has_default && existing {
                out.push(here.at(&column_def.name, rules::ADD_NOT_NULL_WITHOUT_DEFAULT, format!("ADD COLUMN {table}.{col} NOT NULL without a DEFAULT fails on every trust whose {table} has rows; give it a DEFAULT, or add it nullable, backfill it in batches and make it NOT NULL in a later migration")).on_table(table));
            }
            if !down {
                schema
                    .tables
                    .entry(table.to_string())
                    .or_default()
                    .insert(col, column_def.data_type.to_string().to_lowercase());
            }
        }
        AlterTableOperation::DropColumn { column_names, .. } => {
            for c in column_names {
                let col = c.value.to_lowercase();
                if !down && existing {
                    out.push(here.at(c, rules::DROP_COLUMN, format!("DROP COLUMN {table}.{col} deletes its values; stop reading it in one release, drop it in a later one")));
                }
                if !down {
                    if let Some(t) = schema.tables.get_mut(table) {
                        t.remove(&col);
                    }
                }
            }
        }
        AlterTableOperation::AlterColumn {
            column_name,
            op: AlterColumnOperation::SetDataType { data_type, .. },
        } => {
            let col = column_name.value.to_lowercase();
            let new = data_type.to_string().to_lowercase();
            let old = schema.tables.get(table).and_then(|t| t.get(&col)).cloned();
            if !down {
                match &old {
                    Some(old) => {
                        if let Some(why) = narrowing(old, &new) {
                            out.push(here.at(column_name, rules::TYPE_NARROWING, format!("{table}.{col} changes from {old} to {new}: {why}; values that do not fit make it fail or are cut")));
                        }
                    }
                    None if existing => {
                        let mut f = here.at(column_name, rules::TYPE_NARROWING, format!("{table}.{col} changes to {new} and its current type is unknown to the migrations; check it does not narrow"));
                        f.severity = Severity::Warning;
                        out.push(f);
                    }
                    None => {}
                }
                schema
                    .tables
                    .entry(table.to_string())
                    .or_default()
                    .insert(col, new);
            }
        }
        AlterTableOperation::AddConstraint {
            constraint: TableConstraint::ForeignKey(fk),
            not_valid,
        } if pg && existing && !*not_valid => {
            out.push(finding(here.path, here.line, Some(here.column), rules::ADD_FOREIGN_KEY_VALIDATED, format!("adding a foreign key from {table} to {} checks every row while blocking writes to both tables; add it NOT VALID, then VALIDATE CONSTRAINT in a later statement", last_name(&fk.foreign_table))));
        }
        AlterTableOperation::RenameColumn {
            old_column_name,
            new_column_name,
        } if !down => {
            if let Some(t) = schema.tables.get_mut(table) {
                if let Some(ty) = t.remove(&old_column_name.value.to_lowercase()) {
                    t.insert(new_column_name.value.to_lowercase(), ty);
                }
            }
        }
        AlterTableOperation::RenameTable { table_name } if !down => {
            let new = match table_name {
                sqlparser::ast::RenameTableNameKind::As(n)
                | sqlparser::ast::RenameTableNameKind::To(n) => last_name(n),
            };
            if let Some(cols) = schema.tables.remove(table) {
                schema.tables.insert(new, cols);
            }
        }
        _ => {}
    }
}

/// Kinds of column type, for deciding whether a change narrows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
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
fn classify(ty: &str) -> (Kind, u32, Vec<u64>) {
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
        "smallint" | "int2" => (Kind::Integer, 1),
        "int" | "integer" | "int4" | "mediumint" => (Kind::Integer, 2),
        "bigint" | "int8" => (Kind::Integer, 3),
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
fn narrowing(old: &str, new: &str) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn mig(version: i64, up: &str, down: &str) -> Migration {
        Migration::new(
            version,
            format!("m{version}"),
            (PathBuf::from(format!("{version}_m.up.sql")), up.to_string()),
            (
                PathBuf::from(format!("{version}_m.down.sql")),
                down.to_string(),
            ),
        )
        .unwrap()
    }

    fn rules_of(f: &[Finding]) -> Vec<(&'static str, u64)> {
        f.iter().map(|f| (f.rule, f.line)).collect()
    }

    #[test]
    fn statement_lines_are_lines_in_the_file() {
        let ms = [
            mig(1, "CREATE TABLE t (id INT);", "DROP TABLE t;"),
            mig(
                2,
                "-- flotilla: irreversible\n-- comment\n\nALTER TABLE t\n  ADD COLUMN x INT NOT NULL;\nDROP TABLE t;",
                "",
            ),
        ];
        let f = lint(&ms, Dialect::Postgres);
        assert_eq!(
            rules_of(&f),
            vec![
                (rules::ADD_NOT_NULL_WITHOUT_DEFAULT, 5),
                (rules::DROP_TABLE, 6)
            ],
            "{f:#?}"
        );
        assert_eq!(f[0].column, Some(14), "{f:#?}");
    }

    #[test]
    fn each_operation_of_an_alter_table_is_reported_at_its_own_line() {
        let ms = [
            mig(1, "CREATE TABLE t (id INT, a TEXT, b BIGINT);", "DROP TABLE t;"),
            mig(
                2,
                "ALTER TABLE t\n    ADD COLUMN c TEXT NOT NULL,\n    DROP COLUMN a,\n    ALTER COLUMN b TYPE INT,\n    ALTER COLUMN z TYPE INT;",
                "SELECT 1;",
            ),
        ];
        let f = lint(&ms, Dialect::Postgres);
        assert_eq!(
            f.iter()
                .map(|f| (f.rule, f.line, f.severity))
                .collect::<Vec<_>>(),
            vec![
                (rules::ADD_NOT_NULL_WITHOUT_DEFAULT, 2, Severity::Error),
                (rules::DROP_COLUMN, 3, Severity::Error),
                (rules::TYPE_NARROWING, 4, Severity::Error),
                (rules::TYPE_NARROWING, 5, Severity::Warning),
            ],
            "{f:#?}"
        );
    }

    #[test]
    fn an_allow_silences_only_its_own_migration() {
        let ms = [
            mig(
                1,
                "CREATE TABLE t (id INT);\nCREATE TABLE u (id INT);",
                "DROP TABLE u;\nDROP TABLE t;",
            ),
            mig(
                2,
                "-- flotilla-lint: allow drop-table -- t was never used\nDROP TABLE t;",
                "CREATE TABLE t (id INT);",
            ),
            mig(3, "DROP TABLE u;", "CREATE TABLE u (id INT);"),
        ];
        let f = lint(&ms, Dialect::Sqlite);
        assert_eq!(
            f.iter()
                .map(|f| (f.rule, f.file.display().to_string()))
                .collect::<Vec<_>>(),
            vec![(rules::DROP_TABLE, "3_m.up.sql".to_string())],
            "{f:#?}"
        );
    }

    #[test]
    fn parse_errors_give_their_line() {
        let ms = [mig(1, "SELECT 1;\n\nCREATE TABLE (;", "SELECT 1;")];
        let f = lint(&ms, Dialect::Sqlite);
        assert_eq!(rules_of(&f), vec![(rules::PARSE_ERROR, 3)], "{f:#?}");
    }

    #[test]
    fn drop_index_concurrently_parses_and_keeps_its_line() {
        let sql = "-- x\nDROP INDEX CONCURRENTLY IF EXISTS a_idx;\n\nDROP INDEX CONCURRENTLY b_idx";
        let s = parse(sql, Dialect::Postgres).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].1, s[1].1), (2, 4));
        assert!(matches!(
            s[1].0,
            Statement::Drop {
                object_type: ObjectType::Index,
                ..
            }
        ));

        let in_tx = [mig(1, "SELECT 1;", sql)];
        let f = lint(&in_tx, Dialect::Postgres);
        assert_eq!(
            rules_of(&f),
            vec![
                (rules::CONCURRENTLY_IN_TRANSACTION, 2),
                (rules::CONCURRENTLY_IN_TRANSACTION, 4)
            ],
            "{f:#?}"
        );
    }

    #[test]
    fn narrowing_knows_sizes_and_kinds() {
        assert!(narrowing("bigint", "integer").is_some());
        assert!(narrowing("integer", "bigint").is_none());
        assert!(narrowing("text", "varchar(10)").is_some());
        assert!(narrowing("varchar(10)", "varchar(20)").is_none());
        assert!(narrowing("varchar(20)", "varchar(10)").is_some());
        assert!(narrowing("numeric(10,2)", "numeric(12,2)").is_none());
        assert!(narrowing("numeric(10,2)", "numeric(10,1)").is_some());
        assert!(narrowing("text", "integer").is_some());
        assert!(narrowing("integer", "text").is_none());
        assert!(narrowing("timestamp", "date").is_some());
        assert!(narrowing("date", "timestamp").is_none());
    }

    #[test]
    fn allow_needs_a_known_rule_and_a_reason() {
        let (a, bad) = allow_comments(
            Path::new("x.sql"),
            "-- flotilla-lint: allow drop-table -- gone since 4.2\n-- flotilla-lint: allow drop-tabel -- typo\n-- flotilla-lint: allow truncate\nSELECT '-- flotilla-lint: allow nothing';",
        );
        assert_eq!(a.into_iter().collect::<Vec<_>>(), vec!["drop-table"]);
        assert_eq!(
            bad.iter().map(|f| (f.rule, f.line)).collect::<Vec<_>>(),
            vec![(rules::INVALID_ALLOW, 2), (rules::INVALID_ALLOW, 3)],
            "{bad:#?}"
        );
    }
}
