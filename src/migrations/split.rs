//! Splitting a script into its statements with a real SQL tokenizer (sqlparser), so that
//! semicolons inside strings, comments, quoted identifiers and `$$` bodies do not split.
//! A `no-transaction` script must run one statement at a time on Postgres: several statements
//! sent together run in one implicit transaction, where `CREATE INDEX CONCURRENTLY` fails.

use sqlparser::dialect::{Dialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::tokenizer::{Token, Tokenizer};

use crate::db::dialect::Dialect as Db;

/// The statements of `sql`, each as written (comments and spacing kept), empty ones dropped.
pub fn statements(sql: &str, dialect: Db) -> Result<Vec<String>, String> {
    let d: &dyn Dialect = match dialect {
        Db::Postgres => &PostgreSqlDialect {},
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
}
