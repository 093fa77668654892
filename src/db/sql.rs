//! The SQL flotilla itself runs on a trust database. One source for both execution and the
//! `plan --sql` / dry-run rendering, so what is shown is what runs.

use super::dialect::Dialect;
use crate::migrations::Migration;

/// The tracking table's name as a literal, for `concat!` in the statements that name it.
macro_rules! tracking_table {
    () => {
        "_flotilla_migrations"
    };
}
pub(crate) use tracking_table;

/// The tracking table, like sqlx's `_sqlx_migrations`.
pub const TRACKING_TABLE: &str = tracking_table!();

/// Advisory lock key on Postgres: "flotilla" in ASCII.
pub const PG_LOCK_KEY: i64 = 0x666c_6f74_696c_6c61;

/// Creates the tracking table when missing.
pub const CREATE_TRACKING_TABLE: &str = concat!(
    "CREATE TABLE IF NOT EXISTS ",
    tracking_table!(),
    " (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at TEXT NOT NULL,
    duration_ms BIGINT NOT NULL,
    dirty BOOLEAN NOT NULL DEFAULT FALSE
)"
);

/// Reads the applied history.
pub const SELECT_APPLIED: &str = concat!(
    "SELECT version, description, checksum, dirty FROM ",
    tracking_table!(),
    " ORDER BY version"
);

/// Reads each applied migration's recorded duration.
pub const SELECT_DURATIONS: &str = concat!("SELECT version, duration_ms FROM ", tracking_table!());

/// Records a migration. `dirty` is TRUE for a row written before a non-transactional or batch
/// script runs, FALSE for one committed with its script.
pub const INSERT_APPLIED: &str = concat!(
    "INSERT INTO ",
    tracking_table!(),
    " \
     (version, description, checksum, applied_at, duration_ms, dirty) \
     VALUES ($1, $2, $3, CAST(CURRENT_TIMESTAMP AS TEXT), $4, $5)"
);

/// Marks a dirty row clean once its script has finished.
pub const MARK_CLEAN: &str = concat!(
    "UPDATE ",
    tracking_table!(),
    " \
     SET dirty = FALSE, duration_ms = $2, applied_at = CAST(CURRENT_TIMESTAMP AS TEXT) \
     WHERE version = $1"
);

/// Marks a row dirty before a non-transactional or batch down script runs.
pub const MARK_DIRTY: &str = concat!(
    "UPDATE ",
    tracking_table!(),
    " SET dirty = TRUE WHERE version = $1"
);

/// Forgets a reverted migration.
pub const DELETE_APPLIED: &str = concat!("DELETE FROM ", tracking_table!(), " WHERE version = $1");

/// Does `table` exist (SQLite: in the main database; Postgres: in `current_schema()`)?
/// Read-only: `SELECT COUNT(*)`, never creates anything.
pub fn table_exists(dialect: Dialect, table: &str) -> String {
    match dialect {
        Dialect::Sqlite => format!(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = {}",
            quote_literal(table)
        ),
        Dialect::Postgres => format!(
            "SELECT COUNT(*) FROM pg_catalog.pg_tables WHERE tablename = {} AND schemaname = current_schema()",
            quote_literal(table)
        ),
    }
}

/// Does the tracking table exist? (read-only; never creates it)
///
/// On Postgres this is the first statement of a preflight session, and a query over the
/// `pg_tables` view (a three-catalog join) cost a fresh session about 1.5 ms of server CPU to
/// plan against cold caches: `to_regclass` on the name in `current_schema()` is one catalog
/// lookup (about 0.5 ms), and answers for the same schema.
pub fn tracking_table_exists(dialect: Dialect) -> String {
    match dialect {
        Dialect::Sqlite => table_exists(dialect, tracking_table!()),
        Dialect::Postgres => concat!(
            "SELECT CAST(CASE WHEN pg_catalog.to_regclass(pg_catalog.quote_ident(pg_catalog.current_schema()) || '.",
            tracking_table!(),
            "') IS NULL THEN 0 ELSE 1 END AS BIGINT)"
        )
        .to_string(),
    }
}

/// The statement that takes the per-trust lock, as shown to users.
pub fn lock_statement(dialect: Dialect) -> String {
    match dialect {
        Dialect::Sqlite => {
            "-- lock: exclusive advisory lock (flock) on <database file>.flotilla-lock".into()
        }
        Dialect::Postgres => format!("SELECT pg_try_advisory_lock({PG_LOCK_KEY});"),
    }
}

/// The statement that releases the per-trust lock, as shown to users.
pub fn unlock_statement(dialect: Dialect) -> String {
    match dialect {
        Dialect::Sqlite => "-- unlock: release the lock file".into(),
        Dialect::Postgres => format!("SELECT pg_advisory_unlock({PG_LOCK_KEY});"),
    }
}

/// `s` as an SQL string literal: `'it''s'`.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `s` as a Postgres escape string literal, `E'...'` with `\\` and `''` doubled: read the same
/// whether `standard_conforming_strings` is on or off.
pub fn quote_e_literal(s: &str) -> String {
    format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// Postgres: a transactional migration and its clean tracking row as one simple-query message
/// (see `TrustDb::apply_in_one_message`). The duration is the server's, from the message's
/// arrival to the INSERT.
pub fn one_message_apply(m: &Migration) -> String {
    format!(
        "BEGIN;\n{}\n;\nINSERT INTO {} (version, description, checksum, applied_at, duration_ms, dirty) \
         VALUES ({}, {}, {}, CAST(CURRENT_TIMESTAMP AS TEXT), \
         CAST(ROUND(EXTRACT(EPOCH FROM clock_timestamp() - statement_timestamp()) * 1000) AS BIGINT), FALSE);\n\
         COMMIT;",
        m.up.sql,
        TRACKING_TABLE,
        m.version,
        quote_e_literal(&m.description),
        quote_e_literal(&m.checksum),
    )
}

/// `s` as a quoted SQL identifier: `"my ""table"""`.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn bind(sql: &str, values: &[String]) -> String {
    // Replace from the highest index down so $1 does not clobber $10.
    let mut out = sql.to_string();
    for (i, v) in values.iter().enumerate().rev() {
        out = out.replace(&format!("${}", i + 1), v);
    }
    out
}

/// Render, in execution order, the statements that apply `m`.
pub fn render_apply(m: &Migration) -> Vec<String> {
    use crate::migrations::Mode;
    let insert = |dirty: bool| {
        bind(
            INSERT_APPLIED,
            &[
                m.version.to_string(),
                quote_literal(&m.description),
                quote_literal(&m.checksum),
                "0 /* duration, measured at run time */".into(),
                if dirty { "TRUE" } else { "FALSE" }.into(),
            ],
        ) + ";"
    };
    let clean = bind(
        MARK_CLEAN,
        &[m.version.to_string(), "0 /* duration */".into()],
    ) + ";";
    let header = format!("-- migration {} ({})", m, m.up.path.display());
    match m.up.mode {
        Mode::Transaction => vec![
            header,
            "BEGIN;".into(),
            m.up.sql.trim_end().to_string(),
            insert(false),
            "COMMIT;".into(),
        ],
        Mode::NoTransaction => vec![
            header + " [no-transaction: marked dirty while it runs]",
            insert(true),
            m.up.sql.trim_end().to_string(),
            clean,
        ],
        Mode::Batch => vec![
            header + " [batch: repeated, one transaction per batch, until a batch changes no rows]",
            "BEGIN;".into(),
            insert(true) + " -- first batch only: recorded dirty with it",
            m.up.sql.trim_end().to_string(),
            clean + " -- only in the batch that changes no rows",
            "COMMIT; -- repeated while rows change".into(),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e_literals_read_the_same_whatever_standard_conforming_strings_says() {
        assert_eq!(quote_e_literal("plain"), "E'plain'");
        assert_eq!(quote_e_literal("it's"), "E'it''s'");
        assert_eq!(quote_e_literal(r"C:\new\'x"), r"E'C:\\new\\''x'");
    }

    #[test]
    fn a_migration_and_its_tracking_row_go_in_one_message_the_script_on_lines_of_its_own() {
        let m = Migration::new(
            42,
            "o'brien's \\ table".into(),
            (
                "42_x.up.sql".into(),
                "CREATE TABLE t (id INT) -- no newline".into(),
            ),
            ("42_x.down.sql".into(), "DROP TABLE t;".into()),
        )
        .unwrap();
        let message = one_message_apply(&m);
        let lines: Vec<&str> = message.lines().collect();
        assert_eq!(lines[0], "BEGIN;");
        // A final `--` comment cannot swallow the tracking row.
        assert_eq!(lines[1], "CREATE TABLE t (id INT) -- no newline");
        assert_eq!(lines[2], ";");
        assert!(lines[3].starts_with("INSERT INTO _flotilla_migrations "));
        assert!(
            lines[3].contains(&format!(
                "VALUES (42, E'o''brien''s \\\\ table', E'{}', ",
                m.checksum
            )),
            "{message}"
        );
        assert!(lines[3].ends_with(", FALSE);"), "{message}");
        assert_eq!(lines[4], "COMMIT;");
        assert_eq!(lines.len(), 5);
    }
}
