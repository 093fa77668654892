//! One empty scratch database on a PostgreSQL trust's own server, for a check that must run in
//! the trust's dialect and on its server's version (e.g. `rollback`'s check that the plan's
//! patient-data tables still exist at the target): created as the rehearsal creates its
//! scratch databases (`CREATE DATABASE` from a session on the trust's database, so the trust's
//! user needs `CREATEDB`), named `<prefix><host>_<pid>_<n>` so that it is never mistaken for a
//! real one, and dropped by [`ServerScratch::drop`] whatever the check found. One that a killed
//! process left is dropped by the next one made from the same host with the same prefix.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::copy::{
    create_database, drop_database, host_tag, scratch_target, sweep_leftovers_named, CopyError,
};
use crate::config::Trust;
use crate::db::port::pg_target;

/// Prefix of the scratch databases `rollback` builds its schema check on.
pub const ROLLBACK_CHECK_PREFIX: &str = "flotilla_rollback_check_";

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A scratch database created on a trust's server; [`ServerScratch::drop`] must be called.
pub struct ServerScratch {
    source: Trust,
    name: String,
    /// Holds the scratch's password file when the trust's URL carried its password.
    _dir: tempfile::TempDir,
}

impl ServerScratch {
    /// Create an empty database `<prefix><host>_<pid>_<n>` on `source`'s server (after
    /// dropping those a killed process of this host left there); the scratch, and `source` as
    /// it points at the scratch (same server, user and password source). `what` names the
    /// purpose in messages.
    pub async fn create(
        source: &Trust,
        prefix: &str,
        what: &str,
    ) -> Result<(ServerScratch, Trust), CopyError> {
        let target = pg_target(source)?;
        let host = host_tag();
        sweep_leftovers_named(source, prefix, &host, what).await;
        let name = format!(
            "{prefix}{host}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let dir = tempfile::Builder::new()
            .prefix("flotilla-scratch-")
            .tempdir()
            .map_err(|e| {
                CopyError::Config(format!(
                    "cannot create a temporary directory for the {what}: {e}"
                ))
            })?;
        let database = scratch_target(source, &target, &name, dir.path())?;
        create_database(source, &name).await?;
        let scratch = ServerScratch {
            source: source.clone(),
            name,
            _dir: dir,
        };
        let on_scratch = Trust {
            database,
            ..source.clone()
        };
        Ok((scratch, on_scratch))
    }

    /// The scratch database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drop the scratch database (from a session on the source trust's database).
    pub async fn drop(self) -> Result<(), CopyError> {
        drop_database(&self.source, &self.name).await.map_err(|e| {
            CopyError::Leftovers(vec![format!(
                "{} (server of trust '{}'): {e}",
                self.name, self.source.id
            )])
        })
    }
}
