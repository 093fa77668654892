//! The PostgreSQL dialect's lint, on the parse tree of the PostgreSQL server's own parser
//! (libpg_query, through `pg_query`): every statement a PostgreSQL server accepts parses,
//! `DO` blocks, PL/pgSQL functions and `ALTER COLUMN ... TYPE ... USING` included. The rules,
//! their names and their messages are those of the sqlparser path (SQLite) in [`super`]; the
//! few that only PostgreSQL has are here only. Bodies of functions and `DO` blocks are strings
//! to the parser and are not linted.

use std::collections::HashSet;
use std::path::Path;

use pg_query::protobuf::{self as pb, AlterTableType, ConstrType, ObjectType, TransactionStmtKind};
use pg_query::{NodeEnum, NodeRef};

use super::findings::{
    finding, is_serial, keeps_storage, msg, narrowing, rules, Finding, Schema, Severity,
};
use crate::migrations::{Migration, Mode, Reversibility};

/// One statement of a script: its parse tree and where it starts (the byte offset of its first
/// token, and the line and character column there, 1-based).
#[derive(Debug)]
pub struct Statement {
    pub node: NodeEnum,
    pub offset: usize,
    /// The statement's text (from its first token, without the `;`).
    pub len: usize,
    pub line: u64,
    pub column: u64,
}

/// Why a script does not parse: the server parser's message and where (1-based line and
/// column; column 0 when the parser gave no position).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub message: String,
    pub line: u64,
    pub column: u64,
}

/// Parse `sql` with PostgreSQL's parser into its statements.
pub fn parse(sql: &str) -> Result<Vec<Statement>, ParseError> {
    let text = Text::new(sql);
    let result = match pg_query::parse(sql, 0) {
        Ok(r) => r,
        Err(e) => return Err(parse_error(sql, &text, e)),
    };
    let mut out = Vec::new();
    for raw in result.protobuf.stmts {
        let Some(node) = raw.stmt.and_then(|n| n.node) else {
            continue;
        };
        let from = usize::try_from(raw.stmt_location)
            .unwrap_or(0)
            .min(sql.len());
        let end = match usize::try_from(raw.stmt_len) {
            Ok(0) | Err(_) => sql.len(),
            Ok(n) => (from + n).min(sql.len()),
        };
        let offset = skip_blank(sql, from).min(end);
        let (line, column) = text.position(offset);
        out.push(Statement {
            node,
            offset,
            len: end - offset,
            line,
            column,
        });
    }
    Ok(out)
}

/// The parser's message with its position: pg_query's error carries only the message, so the
/// cursor position is read from libpg_query's own result.
fn parse_error(sql: &str, text: &Text, e: pg_query::Error) -> ParseError {
    let message = match e {
        pg_query::Error::Parse(m) => m,
        other => other.to_string(),
    };
    let (line, column) = match error_cursor(sql) {
        Some(chars) if chars > 0 => {
            let byte = sql
                .char_indices()
                .nth(chars - 1)
                .map_or(sql.len(), |(i, _)| i);
            text.position(byte)
        }
        _ => (1, 0),
    };
    ParseError {
        message,
        line,
        column,
    }
}

/// libpg_query's C API for the error position (`cursorpos`: 1-based character offset).
mod ffi {
    use std::os::raw::{c_char, c_int};

    #[repr(C)]
    pub struct PgQueryError {
        pub message: *mut c_char,
        pub funcname: *mut c_char,
        pub filename: *mut c_char,
        pub lineno: c_int,
        pub cursorpos: c_int,
        pub context: *mut c_char,
    }

    #[repr(C)]
    pub struct PgQueryParseResult {
        pub parse_tree: *mut c_char,
        pub stderr_buffer: *mut c_char,
        pub error: *mut PgQueryError,
    }

    extern "C" {
        pub fn pg_query_parse(input: *const c_char) -> PgQueryParseResult;
        pub fn pg_query_free_parse_result(result: PgQueryParseResult);
    }
}

/// Where PostgreSQL's parser stops on `sql` (1-based characters), if it fails and says.
fn error_cursor(sql: &str) -> Option<usize> {
    let input = std::ffi::CString::new(sql).ok()?;
    // SAFETY: `input` is a valid NUL-terminated string that outlives the call; the result is
    // read (the error pointer checked for null) before it is freed, exactly once, by the
    // library's own free function. The struct layouts are those bindgen generated from
    // pg_query.h (vendor/bindgen-pregenerated/bindings.rs).
    unsafe {
        let result = ffi::pg_query_parse(input.as_ptr());
        let cursor = if result.error.is_null() {
            None
        } else {
            usize::try_from((*result.error).cursorpos).ok()
        };
        ffi::pg_query_free_parse_result(result);
        cursor
    }
}

/// Byte offset to line and character column (1-based).
struct Text<'a> {
    sql: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Text<'a> {
    fn new(sql: &'a str) -> Text<'a> {
        let mut line_starts = vec![0];
        line_starts.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
        Text { sql, line_starts }
    }

    fn position(&self, byte: usize) -> (u64, u64) {
        let byte = byte.min(self.sql.len());
        let line = self.line_starts.partition_point(|s| *s <= byte).max(1);
        let start = self.line_starts[line - 1];
        let column = self.sql.get(start..byte).map_or(0, |s| s.chars().count()) + 1;
        (line as u64, column as u64)
    }
}

/// The first byte at or after `from` that is not whitespace or a comment.
fn skip_blank(sql: &str, mut from: usize) -> usize {
    let b = sql.as_bytes();
    loop {
        while from < b.len() && b[from].is_ascii_whitespace() {
            from += 1;
        }
        if b[from..].starts_with(b"--") {
            from = sql[from..].find('\n').map_or(b.len(), |i| from + i + 1);
        } else if b[from..].starts_with(b"/*") {
            let mut depth = 0usize;
            let mut i = from;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            from = i;
        } else {
            return from;
        }
    }
}

/// The `String` nodes of a list, e.g. a qualified name.
fn strings(list: &[pb::Node]) -> Vec<String> {
    list.iter()
        .filter_map(|n| match &n.node {
            Some(NodeEnum::String(s)) => Some(s.sval.clone()),
            _ => None,
        })
        .collect()
}

/// The unqualified object name of a `DROP` target (a list of names).
fn object_name(n: &pb::Node) -> Option<String> {
    match &n.node {
        Some(NodeEnum::List(l)) => strings(&l.items).pop().map(|s| s.to_lowercase()),
        Some(NodeEnum::String(s)) => Some(s.sval.to_lowercase()),
        _ => None,
    }
}

fn relation(r: &Option<pb::RangeVar>) -> String {
    r.as_ref()
        .map(|r| r.relname.to_lowercase())
        .unwrap_or_default()
}

/// A type as the migrations would write it, for deciding whether a change narrows:
/// `varchar(35)`, `integer`, `numeric(10,2)`, `text[]`.
pub fn type_text(t: &pb::TypeName) -> String {
    let names = strings(&t.names);
    let base = names.last().map(|s| s.to_lowercase()).unwrap_or_default();
    let base = match base.as_str() {
        "int4" => "integer",
        "int8" => "bigint",
        "int2" => "smallint",
        "bpchar" => "char",
        "float4" => "real",
        "float8" => "double precision",
        "bool" => "boolean",
        "timestamptz" => "timestamp with time zone",
        "timetz" => "time with time zone",
        other => other,
    }
    .to_string();
    let args: Vec<String> = t
        .typmods
        .iter()
        .filter_map(|m| match &m.node {
            Some(NodeEnum::AConst(c)) => match &c.val {
                Some(pb::a_const::Val::Ival(i)) => Some(i.ival.to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    let mut out = if args.is_empty() {
        base
    } else {
        format!("{base}({})", args.join(","))
    };
    for _ in &t.array_bounds {
        out.push_str("[]");
    }
    out
}

/// The constraints of a column definition.
fn column_constraints(c: &pb::ColumnDef) -> Vec<&pb::Constraint> {
    c.constraints
        .iter()
        .filter_map(|n| match &n.node {
            Some(NodeEnum::Constraint(k)) => Some(k.as_ref()),
            _ => None,
        })
        .collect()
}

/// Functions whose every call gives another value (PostgreSQL's VOLATILE ones a migration
/// would use as a default): a default calling one is computed for every existing row.
const VOLATILE: &[&str] = &[
    "random",
    "gen_random_uuid",
    "uuid_generate_v1",
    "uuid_generate_v1mc",
    "uuid_generate_v4",
    "uuidv4",
    "uuidv7",
    "clock_timestamp",
    "timeofday",
    "nextval",
    "txid_current",
];

/// The first volatile function `expr` calls, if any.
fn volatile_call(expr: &pb::Node) -> Option<String> {
    let node = expr.node.as_ref()?;
    node.nodes().into_iter().find_map(|(n, ..)| match n {
        NodeRef::FuncCall(f) => strings(&f.funcname)
            .pop()
            .map(|s| s.to_lowercase())
            .filter(|name| VOLATILE.contains(&name.as_str())),
        _ => None,
    })
}

/// What adding column `c` means: (NOT NULL, has a default, why it rewrites the table).
fn added_column(c: &pb::ColumnDef) -> (bool, bool, Option<String>) {
    let ty = c.type_name.as_ref().map(type_text).unwrap_or_default();
    let cons = column_constraints(c);
    let kind = |k: &pb::Constraint| k.contype();
    let not_null = c.is_not_null
        || cons.iter().any(|k| {
            matches!(
                kind(k),
                ConstrType::ConstrNotnull | ConstrType::ConstrPrimary
            )
        });
    let identity = cons
        .iter()
        .any(|k| kind(k) == ConstrType::ConstrIdentity || !c.identity.is_empty());
    let generated = cons.iter().any(|k| kind(k) == ConstrType::ConstrGenerated);
    let default = cons.iter().find(|k| kind(k) == ConstrType::ConstrDefault);
    let has_default =
        c.raw_default.is_some() || default.is_some() || identity || generated || is_serial(&ty);
    let volatile = default
        .and_then(|k| k.raw_expr.as_deref())
        .or(c.raw_default.as_deref())
        .and_then(volatile_call);
    let rewrite = if is_serial(&ty) {
        Some(format!(
            "a {ty} column takes a value from a sequence for every row"
        ))
    } else if identity {
        Some("an identity column takes a value from a sequence for every row".to_string())
    } else if generated {
        Some("a stored generated column is computed for every row".to_string())
    } else {
        volatile.map(|f| format!("its DEFAULT calls {f}(), computed for every row"))
    };
    (not_null, has_default, rewrite)
}

/// The tokens of a statement (byte ranges in the script), for finding where an operation of an
/// ALTER TABLE is written.
struct Tokens {
    /// (start, end, text lower-cased, or as written when quoted)
    tokens: Vec<(usize, usize, String)>,
}

impl Tokens {
    fn of(sql: &str, s: &Statement) -> Tokens {
        let text = sql.get(s.offset..s.offset + s.len).unwrap_or_default();
        let tokens = pg_query::scan(text)
            .map(|r| {
                r.tokens
                    .iter()
                    .filter_map(|t| {
                        let (a, b) = (usize::try_from(t.start).ok()?, usize::try_from(t.end).ok()?);
                        let word = text.get(a..b)?;
                        let word = match word.strip_prefix('"').and_then(|w| w.strip_suffix('"')) {
                            Some(q) => q.replace("\"\"", "\""),
                            None => word.to_lowercase(),
                        };
                        let comment = word.starts_with("--") || word.starts_with("/*");
                        (!comment).then_some((s.offset + a, s.offset + b, word))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Tokens { tokens }
    }

    /// Where each operation of an ALTER TABLE starts: after the table name, split at commas
    /// outside parentheses.
    fn operations(&self) -> Vec<usize> {
        let mut starts = Vec::new();
        let mut depth = 0i32;
        let mut after_comma = false;
        // Skip `ALTER TABLE [IF EXISTS] [ONLY] name [*]`: the first operation starts at the
        // first operation keyword at depth 0.
        const STARTS: &[&str] = &[
            "add", "drop", "alter", "validate", "rename", "set", "reset", "enable", "disable",
            "cluster", "inherit", "no", "of", "not", "owner", "replica", "force", "attach",
            "detach",
        ];
        for (i, (_, _, w)) in self.tokens.iter().enumerate() {
            match w.as_str() {
                "(" => depth += 1,
                ")" => depth -= 1,
                "," if depth == 0 => {
                    after_comma = true;
                    continue;
                }
                _ => {}
            }
            if depth == 0
                && i >= 3
                && (after_comma || (starts.is_empty() && STARTS.contains(&w.as_str())))
            {
                starts.push(i);
            }
            after_comma = false;
        }
        starts
    }

    /// The byte offset of identifier `name` in tokens `from..to`, or of token `from`.
    fn find(&self, from: usize, to: usize, name: &str) -> Option<usize> {
        let slice = self.tokens.get(from..to.min(self.tokens.len()))?;
        slice
            .iter()
            .skip(1)
            .find(|(_, _, w)| w.eq_ignore_ascii_case(name))
            .or(slice.first())
            .map(|(a, _, _)| *a)
    }
}

/// A definition of a constraint: `ADD CONSTRAINT`'s.
fn constraint_of(cmd: &pb::AlterTableCmd) -> Option<&pb::Constraint> {
    match cmd.def.as_deref().and_then(|d| d.node.as_ref()) {
        Some(NodeEnum::Constraint(c)) => Some(c),
        _ => None,
    }
}

fn column_def_of(cmd: &pb::AlterTableCmd) -> Option<&pb::ColumnDef> {
    match cmd.def.as_deref().and_then(|d| d.node.as_ref()) {
        Some(NodeEnum::ColumnDef(c)) => Some(c),
        _ => None,
    }
}

fn has_option(options: &[pb::Node], name: &str) -> bool {
    options.iter().any(|o| match &o.node {
        Some(NodeEnum::DefElem(d)) => d.defname.eq_ignore_ascii_case(name),
        _ => false,
    })
}

/// Lint one script (`m`'s up, or its down) for PostgreSQL.
pub(super) fn lint_script(m: &Migration, down: bool, schema: &mut Schema, out: &mut Vec<Finding>) {
    let script = if down { &m.down } else { &m.up };
    let path = script.path.as_path();
    let sql = script.sql.as_str();
    let statements = match parse(sql) {
        Ok(s) => s,
        Err(e) => {
            out.push(finding(
                path,
                e.line,
                Some(e.column),
                rules::PARSE_ERROR,
                format!("does not parse as PostgreSQL: {}", e.message),
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
    let text = Text::new(sql);
    let in_transaction = script.mode != Mode::NoTransaction;
    let up = !down;
    let mut created: HashSet<String> = HashSet::new();
    let mut created_indexes: HashSet<String> = HashSet::new();
    for s in &statements {
        let at = |rule: &'static str, message: String| {
            finding(path, s.line, Some(s.column), rule, message)
        };
        match &s.node {
            NodeEnum::CreateStmt(c) => {
                let table = relation(&c.relation);
                created.insert(table.clone());
                if up {
                    let cols = c
                        .table_elts
                        .iter()
                        .filter_map(|e| match &e.node {
                            Some(NodeEnum::ColumnDef(d)) => Some((
                                d.colname.to_lowercase(),
                                d.type_name.as_ref().map(type_text).unwrap_or_default(),
                            )),
                            _ => None,
                        })
                        .collect();
                    schema.tables.insert(table, cols);
                }
            }
            NodeEnum::CreateTableAsStmt(c) => {
                if let Some(into) = &c.into {
                    created.insert(relation(&into.rel));
                }
            }
            NodeEnum::DropStmt(d) => match d.remove_type() {
                ObjectType::ObjectTable => {
                    for table in d.objects.iter().filter_map(object_name) {
                        if up && !created.contains(&table) {
                            out.push(
                                at(rules::DROP_TABLE, msg::drop_table(&table)).on_table(&table),
                            );
                        }
                        if up {
                            schema.tables.remove(&table);
                        }
                    }
                }
                ObjectType::ObjectIndex => {
                    let names: Vec<String> = d.objects.iter().filter_map(object_name).collect();
                    if d.concurrent && in_transaction {
                        out.push(at(
                            rules::CONCURRENTLY_IN_TRANSACTION,
                            msg::drop_index_concurrently_in_transaction(&names),
                        ));
                    }
                    let existing: Vec<String> = names
                        .into_iter()
                        .filter(|n| !created_indexes.contains(n))
                        .collect();
                    if !d.concurrent && up && !existing.is_empty() {
                        out.push(at(
                            rules::DROP_INDEX_NOT_CONCURRENTLY,
                            format!("DROP INDEX {} waits for and then blocks every read and write of its table; use DROP INDEX CONCURRENTLY in a `-- flotilla: no-transaction` migration", existing.join(", ")),
                        ));
                    }
                }
                _ => {}
            },
            NodeEnum::DropdbStmt(d) => {
                out.push(at(
                    rules::DROP_DATABASE,
                    format!(
                        "DROP DATABASE {} deletes a whole database; no migration should",
                        d.dbname
                    ),
                ));
            }
            NodeEnum::TruncateStmt(t) => {
                for r in &t.relations {
                    if let Some(NodeEnum::RangeVar(r)) = &r.node {
                        let table = r.relname.to_lowercase();
                        if up && !created.contains(&table) {
                            out.push(at(rules::TRUNCATE, msg::truncate(&table)).on_table(&table));
                        }
                    }
                }
            }
            NodeEnum::DeleteStmt(d) if d.where_clause.is_none() => {
                let table = relation(&d.relation);
                if up && !created.contains(&table) {
                    out.push(
                        at(
                            rules::DELETE_WITHOUT_WHERE,
                            msg::delete_without_where(&table),
                        )
                        .on_table(&table),
                    );
                }
            }
            NodeEnum::UpdateStmt(u) if u.where_clause.is_none() => {
                let table = relation(&u.relation);
                if up && !created.contains(&table) {
                    out.push(
                        at(
                            rules::UPDATE_WITHOUT_WHERE,
                            msg::update_without_where(&table),
                        )
                        .on_table(&table),
                    );
                }
            }
            NodeEnum::IndexStmt(i) => {
                let table = relation(&i.relation);
                if !i.idxname.is_empty() {
                    created_indexes.insert(i.idxname.to_lowercase());
                }
                if up && !i.concurrent && !created.contains(&table) {
                    out.push(
                        at(
                            rules::CREATE_INDEX_NOT_CONCURRENTLY,
                            msg::create_index_not_concurrently(&i.idxname, &table),
                        )
                        .on_table(&table),
                    );
                }
                if i.concurrent && in_transaction {
                    out.push(
                        at(
                            rules::CONCURRENTLY_IN_TRANSACTION,
                            msg::create_index_concurrently_in_transaction(&i.idxname),
                        )
                        .on_table(&table),
                    );
                }
            }
            NodeEnum::ReindexStmt(r) => {
                let concurrently = has_option(&r.params, "concurrently");
                let what = if r.relation.is_some() {
                    relation(&r.relation)
                } else {
                    r.name.to_lowercase()
                };
                if concurrently && in_transaction {
                    out.push(at(rules::CONCURRENTLY_IN_TRANSACTION, format!("REINDEX CONCURRENTLY {what} cannot run inside a transaction; put `-- flotilla: no-transaction` on line 1")));
                }
                if !concurrently && up {
                    out.push(at(rules::MAINTENANCE_LOCKS_TABLE, format!("REINDEX {what} blocks writes to the table (and reads that use the index) while it rebuilds; use REINDEX CONCURRENTLY in a `-- flotilla: no-transaction` migration")));
                }
            }
            NodeEnum::VacuumStmt(v) if v.is_vacuumcmd => {
                if in_transaction {
                    out.push(at(rules::CONCURRENTLY_IN_TRANSACTION, "VACUUM cannot run inside a transaction; put `-- flotilla: no-transaction` on line 1".into()));
                }
                if up && has_option(&v.options, "full") {
                    out.push(at(rules::MAINTENANCE_LOCKS_TABLE, "VACUUM FULL rewrites the table while blocking every read and write of it; plain VACUUM (or pg_repack) does not".into()));
                }
            }
            NodeEnum::ClusterStmt(c) if up => {
                let table = relation(&c.relation);
                let f = at(rules::MAINTENANCE_LOCKS_TABLE, format!("CLUSTER {table} rewrites the table while blocking every read and write of it"));
                out.push(if table.is_empty() {
                    f
                } else {
                    f.on_table(&table)
                });
            }
            NodeEnum::TransactionStmt(t) if in_transaction => {
                let word = match t.kind() {
                    TransactionStmtKind::TransStmtBegin => Some("BEGIN"),
                    TransactionStmtKind::TransStmtStart => Some("START TRANSACTION"),
                    TransactionStmtKind::TransStmtCommit => Some("COMMIT"),
                    TransactionStmtKind::TransStmtRollback => Some("ROLLBACK"),
                    TransactionStmtKind::TransStmtPrepare => Some("PREPARE TRANSACTION"),
                    _ => None,
                };
                if let Some(word) = word {
                    out.push(at(
                        rules::TRANSACTION_CONTROL,
                        msg::transaction_control(word),
                    ));
                }
            }
            NodeEnum::RenameStmt(r) if up => {
                let table = relation(&r.relation);
                if created.contains(&table) || table.is_empty() {
                    continue;
                }
                match (r.rename_type(), r.relation_type()) {
                    (ObjectType::ObjectTable, _) => {
                        let new = r.newname.to_lowercase();
                        out.push(
                            at(rules::RENAME_TABLE, msg::rename_table(&table, &new))
                                .on_table(&table),
                        );
                        if let Some(cols) = schema.tables.remove(&table) {
                            schema.tables.insert(new, cols);
                        }
                    }
                    (ObjectType::ObjectColumn, ObjectType::ObjectTable) => {
                        let (old, new) = (r.subname.to_lowercase(), r.newname.to_lowercase());
                        out.push(
                            at(rules::RENAME_COLUMN, msg::rename_column(&table, &old, &new))
                                .on_table(&table),
                        );
                        if let Some(t) = schema.tables.get_mut(&table) {
                            if let Some(ty) = t.remove(&old) {
                                t.insert(new, ty);
                            }
                        }
                    }
                    _ => {}
                }
            }
            NodeEnum::AlterTableStmt(a) if a.objtype() == ObjectType::ObjectTable => {
                let table = relation(&a.relation);
                let existing = !created.contains(&table);
                let tokens = Tokens::of(sql, s);
                let starts = tokens.operations();
                for (i, cmd) in a.cmds.iter().enumerate() {
                    let Some(NodeEnum::AlterTableCmd(cmd)) = &cmd.node else {
                        continue;
                    };
                    let from = starts.get(i).copied();
                    let to = starts.get(i + 1).copied().unwrap_or(usize::MAX);
                    // Where the operation names `name` (else where it starts, else the
                    // statement).
                    let place = |name: &str| -> (u64, u64) {
                        from.and_then(|f| tokens.find(f, to, name))
                            .map_or((s.line, s.column), |b| text.position(b))
                    };
                    let op = Op {
                        path,
                        table: &table,
                        existing,
                        down,
                        statement: (s.line, s.column),
                    };
                    alter_table(cmd, &op, &place, &text, schema, out);
                }
            }
            _ => {}
        }
    }
}

/// An ALTER TABLE operation's context.
struct Op<'a> {
    path: &'a Path,
    table: &'a str,
    existing: bool,
    down: bool,
    statement: (u64, u64),
}

impl Op<'_> {
    fn at(&self, (line, column): (u64, u64), rule: &'static str, message: String) -> Finding {
        finding(self.path, line, Some(column), rule, message).on_table(self.table)
    }
}

fn alter_table(
    cmd: &pb::AlterTableCmd,
    op: &Op,
    place: &dyn Fn(&str) -> (u64, u64),
    text: &Text,
    schema: &mut Schema,
    out: &mut Vec<Finding>,
) {
    let table = op.table;
    let (up, existing) = (!op.down, op.existing);
    match cmd.subtype() {
        AlterTableType::AtAddColumn => {
            let Some(c) = column_def_of(cmd) else { return };
            let col = c.colname.to_lowercase();
            let here = if c.location >= 0 {
                text.position(c.location as usize)
            } else {
                place(&col)
            };
            let (not_null, has_default, rewrite) = added_column(c);
            if up && existing && not_null && !has_default {
                out.push(op.at(
                    here,
                    rules::ADD_NOT_NULL_WITHOUT_DEFAULT,
                    msg::add_not_null_without_default(table, &col),
                ));
            }
            if let (true, true, Some(why)) = (up, existing, rewrite) {
                out.push(op.at(
                    here,
                    rules::ADD_COLUMN_REWRITES_TABLE,
                    msg::add_column_rewrites_table(table, &col, &why),
                ));
            }
            if up {
                let ty = c.type_name.as_ref().map(type_text).unwrap_or_default();
                schema
                    .tables
                    .entry(table.to_string())
                    .or_default()
                    .insert(col, ty);
            }
        }
        AlterTableType::AtDropColumn => {
            let col = cmd.name.to_lowercase();
            if up && existing {
                out.push(op.at(
                    place(&col),
                    rules::DROP_COLUMN,
                    msg::drop_column(table, &col),
                ));
            }
            if up {
                if let Some(t) = schema.tables.get_mut(table) {
                    t.remove(&col);
                }
            }
        }
        AlterTableType::AtAlterColumnType => {
            let col = cmd.name.to_lowercase();
            let Some(new) = column_def_of(cmd)
                .and_then(|c| c.type_name.as_ref())
                .map(type_text)
            else {
                return;
            };
            let here = place(&col);
            if up {
                let old = schema.tables.get(table).and_then(|t| t.get(&col)).cloned();
                let narrowed = match &old {
                    Some(old) => narrowing(old, &new).map(|why| {
                        out.push(op.at(
                            here,
                            rules::TYPE_NARROWING,
                            msg::type_narrowing(table, &col, old, &new, &why),
                        ));
                    }),
                    None if existing => {
                        let mut f = op.at(
                            here,
                            rules::TYPE_NARROWING,
                            msg::type_unknown(table, &col, &new),
                        );
                        f.severity = Severity::Warning;
                        out.push(f);
                        Some(())
                    }
                    None => Some(()),
                };
                if existing && narrowed.is_none() && !keeps_storage(old.as_deref(), &new) {
                    out.push(op.at(
                        here,
                        rules::COLUMN_TYPE_REWRITE,
                        msg::column_type_rewrite(table, &col, &new),
                    ));
                }
                schema
                    .tables
                    .entry(table.to_string())
                    .or_default()
                    .insert(col, new);
            }
        }
        AlterTableType::AtSetNotNull if up && existing => {
            let col = cmd.name.to_lowercase();
            out.push(op.at(
                place(&col),
                rules::SET_NOT_NULL,
                msg::set_not_null(table, &col),
            ));
        }
        AlterTableType::AtAddConstraint if up && existing => {
            let Some(k) = constraint_of(cmd) else { return };
            let name = if k.conname.is_empty() {
                String::new()
            } else {
                format!(" {}", k.conname)
            };
            let here = place(&k.conname);
            match k.contype() {
                ConstrType::ConstrForeign if !k.skip_validation => {
                    let to = relation(&k.pktable);
                    out.push(op.at(
                        op.statement,
                        rules::ADD_FOREIGN_KEY_VALIDATED,
                        msg::add_foreign_key_validated(table, &to),
                    ));
                }
                ConstrType::ConstrCheck if !k.skip_validation => {
                    out.push(op.at(here, rules::ADD_CHECK_VALIDATED, format!("ADD CONSTRAINT{name} CHECK on {table} checks every row while blocking reads and writes of it; add it NOT VALID, then VALIDATE CONSTRAINT in a later statement")));
                }
                ConstrType::ConstrPrimary | ConstrType::ConstrUnique if k.indexname.is_empty() => {
                    let kind = if k.contype() == ConstrType::ConstrPrimary {
                        "PRIMARY KEY"
                    } else {
                        "UNIQUE"
                    };
                    out.push(op.at(here, rules::ADD_UNIQUE_WITHOUT_INDEX, format!("ADD CONSTRAINT{name} {kind} on {table} builds its index while blocking reads and writes of it; CREATE UNIQUE INDEX CONCURRENTLY first, then ADD CONSTRAINT ... {kind} USING INDEX")));
                }
                _ => {}
            }
        }
        AlterTableType::AtDetachPartition => {
            let concurrent = match cmd.def.as_deref().and_then(|d| d.node.as_ref()) {
                Some(NodeEnum::PartitionCmd(p)) => p.concurrent,
                _ => false,
            };
            if up && existing && !concurrent {
                out.push(op.at(op.statement, rules::MAINTENANCE_LOCKS_TABLE, format!("DETACH PARTITION blocks every read and write of {table}; use DETACH PARTITION ... CONCURRENTLY in a `-- flotilla: no-transaction` migration")));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// The Postgres lint of `migrations` in order, sorted as the lint sorts (an up's findings
    /// before its down's, then line, column, rule); allows are the lint's, not tested here.
    fn lint(migrations: &[Migration]) -> Vec<Finding> {
        let mut schema = Schema::default();
        let mut out = Vec::new();
        for m in migrations {
            lint_script(m, false, &mut schema, &mut out);
            lint_script(m, true, &mut schema, &mut out);
        }
        out.sort_by_key(|f| {
            let down = f.file.to_string_lossy().ends_with(".down.sql");
            (
                f.file
                    .to_string_lossy()
                    .split('_')
                    .next()
                    .map(str::to_string),
                down,
                f.line,
                f.column,
                f.rule,
            )
        });
        out
    }

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

    /// The findings (rule, file's direction, line) of `up` then `down` linted after a
    /// migration that creates `t (id int, a text, b bigint, v varchar(20))` and `u (id int)`.
    fn lint_after_setup(up: &str, down: &str) -> Vec<Finding> {
        let ms = [
            mig(
                1,
                "CREATE TABLE t (id int PRIMARY KEY, a text, b bigint, v varchar(20));\nCREATE TABLE u (id int PRIMARY KEY);",
                "DROP TABLE u; DROP TABLE t;",
            ),
            mig(2, up, down),
        ];
        lint(&ms)
            .into_iter()
            .filter(|f| f.file.to_string_lossy().starts_with('2'))
            .collect()
    }

    fn fired(up: &str) -> Vec<&'static str> {
        lint_after_setup(up, "SELECT 1;")
            .iter()
            .map(|f| f.rule)
            .collect()
    }

    #[test]
    fn valid_postgres_that_sqlparser_refused_parses() {
        let sql = r#"
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'x') THEN
    CREATE TYPE x AS ENUM ('a', 'b');
  END IF;
END $$;
CREATE FUNCTION f(a int) RETURNS int LANGUAGE plpgsql COST 10 AS $$
BEGIN RETURN a + 1; END;
$$;
CREATE OR REPLACE FUNCTION g() RETURNS trigger AS $$ BEGIN NEW.updated_at = now(); RETURN NEW; END $$ LANGUAGE plpgsql;
CREATE TRIGGER tg BEFORE UPDATE ON t FOR EACH ROW EXECUTE PROCEDURE g();
ALTER TABLE t ALTER COLUMN a TYPE integer USING a::integer, ALTER COLUMN b SET NOT NULL;
CREATE OR REPLACE VIEW v AS SELECT id FROM t WHERE a IS NOT NULL;
CREATE INDEX CONCURRENTLY IF NOT EXISTS t_a ON t USING gin (to_tsvector('english', a));
CREATE FUNCTION h() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END;
ALTER TABLE t ADD COLUMN c int NOT NULL DEFAULT 0 CHECK (c >= 0);
COMMENT ON COLUMN t.a IS 'x';
"#;
        let s = parse(sql).unwrap();
        assert_eq!(s.len(), 10);
        assert_eq!((s[0].line, s[0].column), (2, 1));
        assert_eq!(s[1].line, 8);
        assert_eq!(s[5].line, 14);
    }

    #[test]
    fn a_parse_error_has_the_servers_message_and_its_line() {
        let e = parse("SELECT 1;\n\n-- é\nCREATE TABLE (id int);").unwrap_err();
        assert_eq!(e.message, "syntax error at or near \"(\"");
        assert_eq!((e.line, e.column), (4, 14));
        let f = lint(&[mig(1, "SELECT 1;\nSELEC 2;", "SELECT 1;")]);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!((f[0].rule, f[0].line), (rules::PARSE_ERROR, 2));
        assert_eq!(
            f[0].message,
            "does not parse as PostgreSQL: syntax error at or near \"SELEC\""
        );
    }

    #[test]
    fn statements_start_at_their_first_token() {
        let s = parse("/* a /* nested */ b */ -- c\n  SELECT 1; -- d\n\n\tSELECT 2").unwrap();
        assert_eq!(
            s.iter().map(|s| (s.line, s.column)).collect::<Vec<_>>(),
            vec![(2, 3), (4, 2)]
        );
    }

    #[test]
    fn drop_table() {
        assert_eq!(fired("DROP TABLE t;"), vec![rules::DROP_TABLE]);
        assert!(fired("CREATE TABLE n (id int); DROP TABLE n;").is_empty());
        let f = lint_after_setup("SELECT 1;", "DROP TABLE IF EXISTS public.t CASCADE;");
        assert!(f.is_empty(), "{f:#?}");
        let f = lint_after_setup("DROP TABLE public.T;", "SELECT 1;");
        assert_eq!(f[0].table.as_deref(), Some("t"));
    }

    #[test]
    fn drop_column_at_its_own_line() {
        let f = lint_after_setup(
            "ALTER TABLE t\n  ADD COLUMN z int,\n  DROP COLUMN a;",
            "SELECT 1;",
        );
        assert_eq!(
            f.iter()
                .map(|f| (f.rule, f.line, f.column))
                .collect::<Vec<_>>(),
            vec![(rules::DROP_COLUMN, 3, Some(15))],
            "{f:#?}"
        );
        assert_eq!(f[0].table.as_deref(), Some("t"));
        assert!(lint_after_setup("SELECT 1;", "ALTER TABLE t DROP COLUMN a;").is_empty());
    }

    #[test]
    fn type_narrowing_and_rewrite() {
        assert_eq!(
            fired("ALTER TABLE t ALTER COLUMN v TYPE varchar(10);"),
            vec![rules::TYPE_NARROWING]
        );
        assert!(fired("ALTER TABLE t ALTER COLUMN v TYPE varchar(40);").is_empty());
        assert!(fired("ALTER TABLE t ALTER COLUMN v TYPE text;").is_empty());
        assert_eq!(
            fired("ALTER TABLE t ALTER COLUMN id TYPE bigint;"),
            vec![rules::COLUMN_TYPE_REWRITE]
        );
        assert_eq!(
            fired("ALTER TABLE t ALTER COLUMN a TYPE integer USING a::integer;"),
            vec![rules::TYPE_NARROWING]
        );
        let f = lint_after_setup("ALTER TABLE t ALTER COLUMN zz TYPE int;", "SELECT 1;");
        assert_eq!(f[0].severity, Severity::Warning);
        // A table created in the same file is empty: nothing to rewrite.
        assert!(
            !fired("CREATE TABLE n (id int); ALTER TABLE n ALTER COLUMN id TYPE bigint;")
                .contains(&rules::COLUMN_TYPE_REWRITE)
        );
    }

    #[test]
    fn truncate_delete_update() {
        assert_eq!(
            fired("TRUNCATE t, u;"),
            vec![rules::TRUNCATE, rules::TRUNCATE]
        );
        assert_eq!(fired("DELETE FROM t;"), vec![rules::DELETE_WITHOUT_WHERE]);
        assert!(fired("DELETE FROM t WHERE id = 1;").is_empty());
        assert_eq!(
            fired("UPDATE t SET a = 'x';"),
            vec![rules::UPDATE_WITHOUT_WHERE]
        );
        assert!(fired("UPDATE t SET a = 'x' WHERE a IS NULL;").is_empty());
        let f = lint_after_setup("UPDATE t SET a = 'x';", "DELETE FROM t;");
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].table.as_deref(), Some("t"));
    }

    #[test]
    fn create_index() {
        assert_eq!(
            fired("CREATE INDEX t_a ON t (a);"),
            vec![rules::CREATE_INDEX_NOT_CONCURRENTLY]
        );
        assert!(fired("CREATE TABLE n (a int); CREATE INDEX ON n (a);").is_empty());
        assert_eq!(
            fired("CREATE INDEX CONCURRENTLY t_a ON t (a);"),
            vec![rules::CONCURRENTLY_IN_TRANSACTION]
        );
        assert!(
            fired("-- flotilla: no-transaction\nCREATE INDEX CONCURRENTLY t_a ON t (a);")
                .is_empty()
        );
        // A down recreating an index: not a blocking finding; CONCURRENTLY would still fail.
        let f = lint_after_setup("DROP INDEX CONCURRENTLY x;", "CREATE INDEX x ON t (a);");
        assert_eq!(
            f.iter().map(|f| f.rule).collect::<Vec<_>>(),
            vec![rules::CONCURRENTLY_IN_TRANSACTION]
        );
    }

    #[test]
    fn drop_index() {
        assert_eq!(
            fired("DROP INDEX t_a;"),
            vec![rules::DROP_INDEX_NOT_CONCURRENTLY]
        );
        assert!(fired("CREATE INDEX CONCURRENTLY x ON t (a); DROP INDEX x;")
            .iter()
            .all(|r| *r != rules::DROP_INDEX_NOT_CONCURRENTLY));
        assert!(fired("-- flotilla: no-transaction\nDROP INDEX CONCURRENTLY t_a;").is_empty());
    }

    #[test]
    fn add_not_null_without_default() {
        assert_eq!(
            fired("ALTER TABLE t ADD COLUMN x int NOT NULL;"),
            vec![rules::ADD_NOT_NULL_WITHOUT_DEFAULT]
        );
        assert!(fired("ALTER TABLE t ADD COLUMN x int NOT NULL DEFAULT 0;").is_empty());
        assert!(fired("ALTER TABLE t ADD COLUMN x int;").is_empty());
        assert!(
            fired("CREATE TABLE n (a int); ALTER TABLE n ADD COLUMN x int NOT NULL;").is_empty()
        );
        // Not on downs (README: destructive and blocking rules look at ups).
        assert!(lint_after_setup(
            "ALTER TABLE t DROP COLUMN a;",
            "ALTER TABLE t ADD COLUMN a text NOT NULL;"
        )
        .iter()
        .all(|f| f.rule != rules::ADD_NOT_NULL_WITHOUT_DEFAULT));
        // Serial, identity and generated columns have a value for every row (and rewrite it).
        for col in [
            "id2 SERIAL NOT NULL",
            "id2 bigserial NOT NULL",
            "id2 smallserial PRIMARY KEY",
            "id2 int GENERATED ALWAYS AS IDENTITY NOT NULL",
            "id2 bigint NOT NULL GENERATED BY DEFAULT AS IDENTITY",
            "id2 int NOT NULL GENERATED ALWAYS AS (id * 2) STORED",
        ] {
            let rules = fired(&format!("ALTER TABLE t ADD COLUMN {col};"));
            assert!(
                !rules.contains(&rules::ADD_NOT_NULL_WITHOUT_DEFAULT),
                "{col}: {rules:?}"
            );
            assert!(
                rules.contains(&rules::ADD_COLUMN_REWRITES_TABLE),
                "{col}: {rules:?}"
            );
        }
    }

    #[test]
    fn add_column_rewrites_table() {
        assert_eq!(
            fired("ALTER TABLE t ADD COLUMN k uuid NOT NULL DEFAULT gen_random_uuid();"),
            vec![rules::ADD_COLUMN_REWRITES_TABLE]
        );
        assert!(fired("ALTER TABLE t ADD COLUMN k timestamptz NOT NULL DEFAULT now();").is_empty());
        assert!(fired("CREATE TABLE n (a int); ALTER TABLE n ADD COLUMN id serial;").is_empty());
    }

    #[test]
    fn constraints() {
        assert_eq!(
            fired("ALTER TABLE t ADD CONSTRAINT t_u FOREIGN KEY (id) REFERENCES u (id);"),
            vec![rules::ADD_FOREIGN_KEY_VALIDATED]
        );
        assert!(fired(
            "ALTER TABLE t ADD CONSTRAINT t_u FOREIGN KEY (id) REFERENCES u (id) NOT VALID;"
        )
        .is_empty());
        assert_eq!(
            fired("ALTER TABLE t ADD CONSTRAINT c CHECK (id > 0);"),
            vec![rules::ADD_CHECK_VALIDATED]
        );
        assert!(fired("ALTER TABLE t ADD CONSTRAINT c CHECK (id > 0) NOT VALID;").is_empty());
        assert!(fired("ALTER TABLE t VALIDATE CONSTRAINT c;").is_empty());
        assert_eq!(
            fired("ALTER TABLE t ADD CONSTRAINT a_u UNIQUE (a);"),
            vec![rules::ADD_UNIQUE_WITHOUT_INDEX]
        );
        assert_eq!(
            fired("ALTER TABLE u ADD PRIMARY KEY (id);"),
            vec![rules::ADD_UNIQUE_WITHOUT_INDEX]
        );
        assert!(fired("ALTER TABLE t ADD CONSTRAINT a_u UNIQUE USING INDEX a_idx;").is_empty());
        assert!(
            fired("CREATE TABLE n (a int); ALTER TABLE n ADD UNIQUE (a), ADD CHECK (a > 0);")
                .is_empty()
        );
        assert_eq!(
            fired("ALTER TABLE t ALTER COLUMN a SET NOT NULL;"),
            vec![rules::SET_NOT_NULL]
        );
        assert!(fired("ALTER TABLE t ALTER COLUMN a DROP NOT NULL;").is_empty());
    }

    #[test]
    fn renames() {
        assert_eq!(
            fired("ALTER TABLE t RENAME TO t2;"),
            vec![rules::RENAME_TABLE]
        );
        assert_eq!(
            fired("ALTER TABLE t RENAME COLUMN a TO a2;"),
            vec![rules::RENAME_COLUMN]
        );
        assert!(fired("ALTER INDEX t_pkey RENAME TO t_pk;").is_empty());
        assert!(fired("CREATE TABLE n (a int); ALTER TABLE n RENAME a TO b;").is_empty());
        // The schema follows the rename: v is still varchar(20) under its new name.
        assert_eq!(
            fired("ALTER TABLE t RENAME COLUMN v TO w;\nALTER TABLE t ALTER COLUMN w TYPE varchar(5);"),
            vec![rules::RENAME_COLUMN, rules::TYPE_NARROWING]
        );
    }

    #[test]
    fn transactions_and_maintenance() {
        assert_eq!(
            fired("BEGIN; DROP INDEX CONCURRENTLY x; COMMIT;"),
            vec![
                rules::TRANSACTION_CONTROL,
                rules::CONCURRENTLY_IN_TRANSACTION,
                rules::TRANSACTION_CONTROL
            ]
        );
        assert!(fired(
            "-- flotilla: no-transaction\nBEGIN; UPDATE t SET a = 'x' WHERE id = 1; COMMIT;"
        )
        .is_empty());
        assert!(fired("SAVEPOINT a; RELEASE SAVEPOINT a;").is_empty());
        assert_eq!(fired("DROP DATABASE x;"), vec![rules::DROP_DATABASE]);
        assert_eq!(
            lint_after_setup("SELECT 1;", "DROP DATABASE x;")
                .iter()
                .map(|f| f.rule)
                .collect::<Vec<_>>(),
            vec![rules::DROP_DATABASE]
        );
        assert_eq!(
            fired("VACUUM FULL t;"),
            vec![
                rules::CONCURRENTLY_IN_TRANSACTION,
                rules::MAINTENANCE_LOCKS_TABLE
            ]
        );
        assert!(fired("-- flotilla: no-transaction\nVACUUM ANALYZE t;").is_empty());
        assert_eq!(
            fired("CLUSTER t USING t_pkey;"),
            vec![rules::MAINTENANCE_LOCKS_TABLE]
        );
        assert_eq!(
            fired("REINDEX TABLE t;"),
            vec![rules::MAINTENANCE_LOCKS_TABLE]
        );
        assert!(fired("-- flotilla: no-transaction\nREINDEX TABLE CONCURRENTLY t;").is_empty());
        assert_eq!(
            fired("REINDEX TABLE CONCURRENTLY t;"),
            vec![rules::CONCURRENTLY_IN_TRANSACTION]
        );
    }

    #[test]
    fn empty_down() {
        let f = lint_after_setup("SELECT 1;", "-- nothing\n");
        assert_eq!(
            f.iter().map(|f| f.rule).collect::<Vec<_>>(),
            vec![rules::EMPTY_DOWN]
        );
    }
}
