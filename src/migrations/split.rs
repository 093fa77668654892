//! Splitting a script into its statements with a real SQL parser, so that semicolons inside
//! strings, comments, quoted identifiers, `$$` bodies and `BEGIN ATOMIC ... END` bodies do not
//! split: PostgreSQL's own (pg_query), sqlparser's tokenizer for SQLite.
//! A `no-transaction` script must run one statement at a time on Postgres: several statements
//! sent together run in one implicit transaction, where `CREATE INDEX CONCURRENTLY` fails.

use sqlparser::dialect::{Dialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::tokenizer::{Token, Tokenizer};

use crate::db::dialect::Dialect as Db;

/// The statements of `sql`, each as written (comments and spacing kept; on PostgreSQL the
/// comments before a statement are left out), empty ones dropped.
pub fn statements(sql: &str, dialect: Db) -> Result<Vec<String>, String> {
    let d: &dyn Dialect = match dialect {
        Db::Postgres => match pg_query::split_with_parser(sql) {
            Ok(parts) => {
                return Ok(parts
                    .into_iter()
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect())
            }
            // Not valid SQL: split by sqlparser's tokenizer as before, for the server to
            // report the error when it runs the statement.
            Err(_) => &PostgreSqlDialect {},
        },
        Db::Sqlite => &SQLiteDialect {},
    };
    let tokens = Tokenizer::new(d, sql)
        .with_unescape(false)
        .tokenize()
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut current = String::new();
    let mut meaningful = false;
    for t in tokens {
        match t {
            Token::SemiColon => {
                if meaningful {
                    out.push(std::mem::take(&mut current).trim().to_string());
                }
                current.clear();
                meaningful = false;
            }
            Token::Whitespace(_) => current.push_str(&t.to_string()),
            other => {
                meaningful = true;
                current.push_str(&other.to_string());
            }
        }
    }
    if meaningful {
        out.push(current.trim().to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semicolons_in_strings_comments_and_dollar_bodies_do_not_split() {
        let sql = "-- a; comment\nCREATE INDEX CONCURRENTLY a ON t (x);\n\
                   INSERT INTO t VALUES ('a;b');\n\
                   CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\n;\n";
        let s = statements(sql, Db::Postgres).unwrap();
        assert_eq!(s.len(), 3, "{s:?}");
        assert!(
            s[0].ends_with("CREATE INDEX CONCURRENTLY a ON t (x)"),
            "{s:?}"
        );
        assert_eq!(s[1], "INSERT INTO t VALUES ('a;b')");
        assert!(s[2].contains("$$ SELECT 1; $$"), "{s:?}");
    }

    #[test]
    fn a_script_of_comments_only_has_no_statements() {
        assert!(statements("-- nothing\n/* here */", Db::Sqlite)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn postgres_splits_with_the_servers_parser() {
        let sql = "-- lead\nCREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;\n\
                   DO $$ BEGIN PERFORM 1; END $$;\n-- trailing comment only\n";
        let s = statements(sql, Db::Postgres).unwrap();
        assert_eq!(s.len(), 2, "{s:?}");
        assert!(s[0].starts_with("CREATE FUNCTION"), "{s:?}");
        assert!(s[0].ends_with("END"), "{s:?}");
        assert_eq!(s[1], "DO $$ BEGIN PERFORM 1; END $$");
        // Not valid SQL: still split (by sqlparser's tokenizer), for the server to report.
        let s = statements("SELECT 1; SELEC 2; SELECT 'a;b'", Db::Postgres).unwrap();
        assert_eq!(s, vec!["SELECT 1", "SELEC 2", "SELECT 'a;b'"]);
    }
}
