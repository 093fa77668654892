//! The migration linter: parses every migration with a real SQL parser (PostgreSQL's own,
//! through pg_query, for the Postgres dialect: [`postgres`]; sqlparser for SQLite) and reports,
//! with file and line, what would lose data, take long locks on PostgreSQL, fail to undo, or not
//! parse. Pure: it reads the catalog's scripts and never touches a database (the rehearsal that
//! checks a down undoes its up is in [`super::roundtrip`]).
//!
//! A migration may allow a rule with a comment in either of its files:
//! `-- flotilla-lint: allow add-not-null-without-default -- the table is empty on every trust`.
//! An allow without a reason, or naming an unknown rule, is itself an error.

use std::collections::{BTreeSet, HashSet};
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
mod findings;
pub mod postgres;

pub use findings::{find_rule, rules, Finding, Rule, Severity, RULES};
use findings::{finding, msg, narrowing, Schema};

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
    if dialect == Dialect::Postgres {
        postgres::lint_script(m, down, schema, out);
        return;
    }
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
            msg::empty_down(m),
        ));
    }
    let pg = dialect == Dialect::Postgres;
    let mut created: HashSet<String> = HashSet::new();
    for (s, line, column) in &statements {
        let (line, column) = (*line, Some(*column));
        let mut push = |rule: &'static str, message: String, table: Option<&str>| {
            let f = finding(path, line, column, rule, message);
            out.push(match table {
                Some(t) if !t.is_empty() => f.on_table(t),
                _ => f,
            });
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
                        push(rules::DROP_TABLE, msg::drop_table(&table), Some(&table));
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
                push(
                    rules::CONCURRENTLY_IN_TRANSACTION,
                    msg::drop_index_concurrently_in_transaction(&names),
                    None,
                );
            }
            Statement::Truncate(t) => {
                for target in &t.table_names {
                    let table = last_name(&target.name);
                    if !down && !created.contains(&table) {
                        push(rules::TRUNCATE, msg::truncate(&table), Some(&table));
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
                        msg::delete_without_where(&table),
                        Some(&table),
                    );
                }
            }
            Statement::Update(u) if u.selection.is_none() => {
                let table = table_of(&u.table).unwrap_or_default();
                if !down && !created.contains(&table) {
                    push(
                        rules::UPDATE_WITHOUT_WHERE,
                        msg::update_without_where(&table),
                        Some(&table),
                    );
                }
            }
            Statement::CreateIndex(ci) => {
                let table = last_name(&ci.table_name);
                let name = ci.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
                if pg && !down && !ci.concurrently && !created.contains(&table) {
                    push(
                        rules::CREATE_INDEX_NOT_CONCURRENTLY,
                        msg::create_index_not_concurrently(&name, &table),
                        Some(&table),
                    );
                }
                if pg && ci.concurrently && script.mode != Mode::NoTransaction {
                    push(
                        rules::CONCURRENTLY_IN_TRANSACTION,
                        msg::create_index_concurrently_in_transaction(&name),
                        Some(&table),
                    );
                }
            }
            Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback {
                savepoint: None, ..
            } if script.mode != Mode::NoTransaction => {
                let word = match s {
                    Statement::StartTransaction { .. } => "BEGIN",
                    Statement::Commit { .. } => "COMMIT",
                    _ => "ROLLBACK",
                };
                push(
                    rules::TRANSACTION_CONTROL,
                    msg::transaction_control(word),
                    None,
                );
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
            let serial = findings::is_serial(&column_def.data_type.to_string().to_lowercase());
            let has_default = serial
                || opts.iter().any(|o| {
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
            if not_null && !has_default && existing && !down {
                out.push(
                    here.at(
                        &column_def.name,
                        rules::ADD_NOT_NULL_WITHOUT_DEFAULT,
                        msg::add_not_null_without_default(table, &col),
                    )
                    .on_table(table),
                );
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
                    out.push(
                        here.at(c, rules::DROP_COLUMN, msg::drop_column(table, &col))
                            .on_table(table),
                    );
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
                            out.push(
                                here.at(
                                    column_name,
                                    rules::TYPE_NARROWING,
                                    msg::type_narrowing(table, &col, old, &new, &why),
                                )
                                .on_table(table),
                            );
                        }
                    }
                    None if existing => {
                        let mut f = here
                            .at(
                                column_name,
                                rules::TYPE_NARROWING,
                                msg::type_unknown(table, &col, &new),
                            )
                            .on_table(table);
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
        } if pg && existing && !down && !*not_valid => {
            out.push(
                finding(
                    here.path,
                    here.line,
                    Some(here.column),
                    rules::ADD_FOREIGN_KEY_VALIDATED,
                    msg::add_foreign_key_validated(table, &last_name(&fk.foreign_table)),
                )
                .on_table(table),
            );
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
