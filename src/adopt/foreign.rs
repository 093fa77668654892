//! Each tool's tracking table, read exactly as the tool creates it, into one shape: the
//! versions it says were applied (with the checksum it kept, if any), or, for golang-migrate,
//! the one version the database is at.

use std::collections::BTreeMap;

use crate::db::{DbError, Dialect, TrustDb};
use crate::migrations::version::{diesel_key, digits_key, flyway_key};

/// The tool that migrated the trusts until now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tool {
    /// sqlx-cli: `_sqlx_migrations`, with SHA-384 checksums.
    Sqlx,
    /// Flyway: `flyway_schema_history`, with CRC-32 checksums.
    Flyway,
    /// golang-migrate: `schema_migrations(version, dirty)`, one row.
    #[value(name = "golang-migrate")]
    GolangMigrate,
    /// diesel: `__diesel_schema_migrations`.
    Diesel,
    /// dbmate: `schema_migrations(version)`.
    Dbmate,
}

impl Tool {
    /// As on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Sqlx => "sqlx",
            Tool::Flyway => "flyway",
            Tool::GolangMigrate => "golang-migrate",
            Tool::Diesel => "diesel",
            Tool::Dbmate => "dbmate",
        }
    }

    /// The tool's tracking table.
    pub fn table(self) -> &'static str {
        match self {
            Tool::Sqlx => "_sqlx_migrations",
            Tool::Flyway => "flyway_schema_history",
            Tool::GolangMigrate | Tool::Dbmate => "schema_migrations",
            Tool::Diesel => "__diesel_schema_migrations",
        }
    }

    /// The key of a version as this tool writes it.
    pub fn key(self, text: &str) -> Result<i64, String> {
        match self {
            Tool::Flyway => flyway_key(text).map(|k| k.key),
            Tool::Diesel => diesel_key(text.trim()),
            _ => digits_key(text.trim()),
        }
        .map_err(|e| e.to_string())
    }
}

/// The checksum a tool recorded for a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// sqlx: SHA-384, lower-case hex.
    Sha384(String),
    /// Flyway: CRC-32 as a signed integer; `None` when the row holds NULL.
    Crc32(Option<i32>),
}

/// One version a tool lists as applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The version as the tool wrote it.
    pub text: String,
    /// Its key.
    pub key: i64,
    /// The checksum the tool kept, if it keeps any.
    pub checksum: Option<Recorded>,
    /// What the tool names it by (Flyway's script), for messages.
    pub label: Option<String>,
}

/// What a tool's tracking table says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum History {
    /// The table does not exist.
    Missing,
    /// The versions applied, ascending by key; for Flyway, the baseline (everything up to it
    /// counts as applied) if one was recorded.
    Rows {
        listed: Vec<Listed>,
        baseline: Option<(String, i64)>,
    },
    /// golang-migrate: the version the database is at (`None`: none).
    Current(Option<(String, i64)>),
}

/// Why a tool's history cannot be taken over, whatever the files say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// A migration failed or is half-applied under the other tool.
    Failed(String),
    /// The table holds something flotilla cannot match to a file.
    Disagrees(String),
}

/// A tool's history, with notes on rows that were deliberately left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// The history.
    pub history: History,
    /// Rows skipped, and why (Flyway's repeatable migrations, deleted or undone versions).
    pub notes: Vec<String>,
}

/// Whether `table` exists in the connection's schema (SQLite: the main database; Postgres:
/// `current_schema()`). Never creates anything.
pub async fn table_exists(db: &mut TrustDb, table: &str) -> Result<bool, DbError> {
    let query = crate::db::sql::table_exists(db.dialect(), table);
    Ok(db
        .query_i64(&query, &format!("looking for {table}"))
        .await?
        > 0)
}

async fn columns(db: &mut TrustDb, table: &str) -> Result<Vec<String>, DbError> {
    let query = match db.dialect() {
        Dialect::Sqlite => format!(
            "SELECT name FROM pragma_table_info({})",
            crate::db::sql::quote_literal(table)
        ),
        Dialect::Postgres => format!(
            "SELECT CAST(column_name AS TEXT) FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = {}",
            crate::db::sql::quote_literal(table)
        ),
    };
    let rows = db
        .text_rows(&query, 1, &format!("reading the columns of {table}"))
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|mut r| r.pop().flatten())
        .map(|c| c.to_lowercase())
        .collect())
}

/// `CASE WHEN column THEN '1' ELSE '0' END`: a boolean as text on both dialects.
fn flag(column: &str) -> String {
    format!("CASE WHEN {column} THEN '1' ELSE '0' END")
}

/// Read `tool`'s tracking table on `db`. `Err(Unusable)` when the table says the database
/// is half-migrated or holds what no file can match; database errors are returned as such.
pub async fn read(db: &mut TrustDb, tool: Tool) -> Result<Result<Read, Unusable>, DbError> {
    let table = tool.table();
    if !table_exists(db, table).await? {
        return Ok(Ok(Read {
            history: History::Missing,
            notes: Vec::new(),
        }));
    }
    let cols = columns(db, table).await?;
    // golang-migrate and dbmate both call their table schema_migrations: say which it is.
    if tool == Tool::Dbmate && cols.iter().any(|c| c == "dirty") {
        return Ok(Err(Unusable::Disagrees(format!(
            "{table} has a `dirty` column: it is golang-migrate's table, not dbmate's (use --from golang-migrate)"
        ))));
    }
    if tool == Tool::GolangMigrate && !cols.iter().any(|c| c == "dirty") {
        return Ok(Err(Unusable::Disagrees(format!(
            "{table} has no `dirty` column: it is not golang-migrate's table (dbmate's has only `version`: use --from dbmate)"
        ))));
    }
    let context = format!("reading {table}");
    let version_of = |text: &str| -> Result<i64, Unusable> {
        tool.key(text).map_err(|e| {
            Unusable::Disagrees(format!(
                "{table} lists version '{text}', which flotilla cannot read: {e}"
            ))
        })
    };
    let mut notes = Vec::new();
    match tool {
        Tool::Sqlx => {
            let hex = match db.dialect() {
                Dialect::Sqlite => "lower(hex(checksum))",
                Dialect::Postgres => "encode(checksum, 'hex')",
            };
            let query = format!(
                "SELECT CAST(version AS TEXT), {}, {hex} FROM {table} ORDER BY version",
                flag("success")
            );
            let mut listed = Vec::new();
            for row in db.text_rows(&query, 3, &context).await? {
                let text = row[0].clone().unwrap_or_default();
                if row[1].as_deref() != Some("1") {
                    return Ok(Err(Unusable::Failed(format!(
                        "{table} records migration {text} as failed (success = false): sqlx-cli stopped half-way through it; fix the database and that row first"
                    ))));
                }
                let key = match version_of(&text) {
                    Ok(k) => k,
                    Err(u) => return Ok(Err(u)),
                };
                listed.push(Listed {
                    text,
                    key,
                    checksum: Some(Recorded::Sha384(row[2].clone().unwrap_or_default())),
                    label: None,
                });
            }
            Ok(Ok(Read {
                history: History::Rows {
                    listed,
                    baseline: None,
                },
                notes,
            }))
        }
        Tool::Diesel | Tool::Dbmate => {
            let query = format!("SELECT CAST(version AS TEXT) FROM {table} ORDER BY version");
            let mut listed = Vec::new();
            for row in db.text_rows(&query, 1, &context).await? {
                let text = row[0].clone().unwrap_or_default();
                let key = match version_of(&text) {
                    Ok(k) => k,
                    Err(u) => return Ok(Err(u)),
                };
                listed.push(Listed {
                    text,
                    key,
                    checksum: None,
                    label: None,
                });
            }
            listed.sort_by_key(|l| l.key);
            Ok(Ok(Read {
                history: History::Rows {
                    listed,
                    baseline: None,
                },
                notes,
            }))
        }
        Tool::GolangMigrate => {
            let query = format!(
                "SELECT CAST(version AS TEXT), {} FROM {table}",
                flag("dirty")
            );
            let rows = db.text_rows(&query, 2, &context).await?;
            if rows.len() > 1 {
                return Ok(Err(Unusable::Disagrees(format!(
                    "{table} has {} rows; golang-migrate keeps exactly one (the current version)",
                    rows.len()
                ))));
            }
            let Some(row) = rows.into_iter().next() else {
                return Ok(Ok(Read {
                    history: History::Current(None),
                    notes,
                }));
            };
            let text = row[0].clone().unwrap_or_default();
            if row[1].as_deref() == Some("1") {
                return Ok(Err(Unusable::Failed(format!(
                    "{table} is dirty at version {text}: golang-migrate stopped half-way through that migration; fix the database, then `migrate force` the right version"
                ))));
            }
            // golang-migrate's "no version" (after migrating all the way down).
            if text.trim() == "-1" {
                return Ok(Ok(Read {
                    history: History::Current(None),
                    notes,
                }));
            }
            match version_of(&text) {
                Ok(key) => Ok(Ok(Read {
                    history: History::Current(Some((text, key))),
                    notes,
                })),
                Err(u) => Ok(Err(u)),
            }
        }
        Tool::Flyway => {
            let query = format!(
                "SELECT CAST(installed_rank AS TEXT), version, type, script, CAST(checksum AS TEXT), {} FROM {table} ORDER BY installed_rank",
                flag("success")
            );
            let mut applied: BTreeMap<i64, Listed> = BTreeMap::new();
            let mut baseline = None;
            for row in db.text_rows(&query, 6, &context).await? {
                let rank = row[0].clone().unwrap_or_default();
                let kind = row[2].clone().unwrap_or_default();
                let script = row[3].clone().unwrap_or_default();
                let what = format!("{table} row {rank} ({kind} {script})");
                if kind == "SCHEMA" {
                    continue;
                }
                if row[5].as_deref() != Some("1") {
                    return Ok(Err(Unusable::Failed(format!(
                        "{what} is a failed migration (success = false): fix the database, then `flyway repair` to remove the row"
                    ))));
                }
                let Some(text) = row[1].clone() else {
                    notes.push(format!(
                        "{what}: a repeatable migration has no version; flotilla does not track it"
                    ));
                    continue;
                };
                let key = match version_of(&text) {
                    Ok(k) => k,
                    Err(u) => return Ok(Err(u)),
                };
                match kind.as_str() {
                    "SQL" => {
                        let checksum = row[4].as_deref().and_then(|c| c.trim().parse::<i32>().ok());
                        applied.insert(
                            key,
                            Listed {
                                text,
                                key,
                                checksum: Some(Recorded::Crc32(checksum)),
                                label: Some(script),
                            },
                        );
                    }
                    "BASELINE" | "SQL_BASELINE" | "JDBC_BASELINE" => {
                        // As Flyway: the newest baseline counts.
                        if baseline.as_ref().is_none_or(|(_, b)| key > *b) {
                            baseline = Some((text, key));
                        }
                    }
                    "UNDO_SQL" | "UNDO_SCRIPT" | "UNDO_JDBC" => {
                        applied.remove(&key);
                        notes.push(format!("{what}: version {text} was undone; it counts as not applied"));
                    }
                    "DELETE" => {
                        applied.remove(&key);
                        notes.push(format!("{what}: version {text} was marked deleted by `flyway repair`; left out"));
                    }
                    _ => {
                        return Ok(Err(Unusable::Disagrees(format!(
                            "{what}: version {text} is a {kind} migration; flotilla runs SQL files only, so no file can stand for it"
                        ))))
                    }
                }
            }
            Ok(Ok(Read {
                history: History::Rows {
                    listed: applied.into_values().collect(),
                    baseline,
                },
                notes,
            }))
        }
    }
}
