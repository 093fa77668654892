//! [`Dialect`]: which SQL a trust speaks, worked out once from its inventory entry.

use crate::config::DatabaseTarget;

/// Which SQL dialect a trust speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// SQLite (the embedded default).
    Sqlite,
    /// PostgreSQL (production).
    Postgres,
}

impl Dialect {
    /// The dialect of a trust's database.
    pub fn of(database: &DatabaseTarget) -> Dialect {
        match database {
            DatabaseTarget::Postgres { .. } => Dialect::Postgres,
            DatabaseTarget::Sqlite { .. } => Dialect::Sqlite,
        }
    }

    /// Its name for people: `SQLite`, `PostgreSQL`.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "SQLite",
            Dialect::Postgres => "PostgreSQL",
        }
    }
}
