//! The per-trust database port: the narrow set of operations flotilla performs on a trust
//! database (connect, lock, tracking table, applied history, apply, revert, query), on SQLite and
//! PostgreSQL through sqlx.

pub mod dialect;
pub mod port;
pub mod reuse;
pub mod sql;

pub use dialect::Dialect;
pub use port::{Access, AppliedMigration, DbError, TrustDb};
