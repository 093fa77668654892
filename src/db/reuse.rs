//! Postgres sessions kept from a rollout's preflight for the same trust's migration.
//!
//! A new Postgres session costs the server a backend process and cold catalog caches: about
//! 3.3 ms of server CPU on the 2-core bench machine (`pgbench -C`), against 0.05 ms for a
//! statement on an open one. Preflight reads every trust before anything runs, and the trust's
//! migration used to open a second session moments later: the second session was most of
//! flotilla's cost beyond the SQL's on the demo history (56 trusts, 0.35 s of server CPU more
//! than sqlx-cli, which opens one). Preflight now parks the read-only session of each Postgres
//! trust its first wave upgrades, and the migration takes it ([`take`]) instead of connecting:
//! its first message turns the session read-write (`SET default_transaction_read_only = off`)
//! together with the lock and the plan's timeouts, so no round trip is added.
//!
//! Bounded: at most [`CAP`] sessions are parked at once (preflight's own concurrency is 16),
//! one that waited longer than [`MAX_AGE`] is closed rather than reused, and a parked session
//! is only ever handed to the same trust on the same server, database and user (a rehearsal's
//! copies, on other databases, never get the original's). A parked session the server has
//! closed meanwhile fails the lock message; the migration then connects afresh, which is what
//! it always did (`engine::migrate`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::port::{endpoint_of, pg_options, Access, TrustDb};
use crate::config::{DatabaseTarget, Trust};

/// The most sessions parked at once.
pub const CAP: usize = 64;

/// A parked session older than this is closed, not reused.
pub const MAX_AGE: Duration = Duration::from_secs(120);

struct Parked {
    since: Instant,
    db: TrustDb,
}

static PARKED: Mutex<Option<HashMap<(String, String), Parked>>> = Mutex::new(None);

/// Where a Postgres trust's sessions go (server, port, database, user); `None` for SQLite or a
/// trust whose URL cannot be resolved (connecting reports that).
pub(crate) fn endpoint(trust: &Trust) -> Option<String> {
    if !matches!(trust.database, DatabaseTarget::Postgres { .. }) {
        return None;
    }
    pg_options(trust, Access::ReadWrite)
        .ok()
        .map(|o| endpoint_of(&o))
}

/// Keep `db` (a session preflight opened) for its trust's migration. Returns it back when it
/// cannot be kept (not Postgres, or [`CAP`] reached): the caller closes it.
pub(crate) fn park(db: TrustDb) -> Option<TrustDb> {
    let Some(endpoint) = db.endpoint().map(str::to_string) else {
        return Some(db);
    };
    let mut parked = PARKED.lock().unwrap_or_else(|p| p.into_inner());
    let map = parked.get_or_insert_with(HashMap::new);
    if map.len() >= CAP {
        return Some(db);
    }
    let key = (db.trust().to_string(), endpoint);
    map.insert(
        key,
        Parked {
            since: Instant::now(),
            db,
        },
    )
    .map(|old| old.db)
}

/// The session parked for `trust`, made ready to migrate (see the module documentation), if
/// one is parked for the same trust and endpoint and is fresh enough.
pub(crate) fn take(trust: &Trust) -> Option<TrustDb> {
    let endpoint = endpoint(trust)?;
    let found = {
        let mut parked = PARKED.lock().unwrap_or_else(|p| p.into_inner());
        parked
            .as_mut()
            .and_then(|map| map.remove(&(trust.id.clone(), endpoint)))
    }?;
    if found.since.elapsed() > MAX_AGE {
        // Dropping it closes the socket; the server ends the idle session.
        return None;
    }
    let mut db = found.db;
    db.reuse_for_migration();
    Some(db)
}

/// How many sessions are parked now.
pub fn parked() -> usize {
    PARKED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map_or(0, HashMap::len)
}
