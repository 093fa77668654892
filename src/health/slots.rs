//! How many gate windows measure one database server at once.
//!
//! A window is a few hundred statements and several sessions in a fraction of a second. Windows
//! of trusts whose databases share a server measure each other when they run together: on the
//! 2-core bench server, eight windows at once (the wave's concurrency) moved the raw medians of
//! clean windows by ×2 to ×8 against the same trust measured alone (open-record 0.67 ms beside
//! the others, 0.12 ms alone; baseline 0.08 ms), so a third of them needed a second look alone
//! and the machine-load discount did the rest. Each Postgres server (host and port) therefore
//! takes at most the plan's `health.windows_per_server` windows at a time (default 2; a server
//! with many cores can take more), whatever the wave's concurrency: migrations still run the
//! wave's concurrency at once, and trusts on different servers are measured side by side as
//! before.
//!
//! SQLite trusts are not limited. Their write judgement credits a disk that flushes faster
//! than at the baseline (see `stats::disk_factor`), and that needs baselines and later windows
//! measured under the same mix of concurrent commits: with windows two at a time, baselines
//! waited while other trusts' migrations flushed and later windows did not, and a clean
//! trust's writes were judged ×3.7 slower after crediting a ×5.4 faster disk (one false halt
//! in four clean rollouts of the sample estate).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::{DatabaseTarget, Trust};
use crate::db::port::pg_options;
use crate::db::Access;

/// Each server's slots, per limit (runs of plans with different limits in one worker process
/// each keep to their own).
static SERVERS: Mutex<Option<Slots>> = Mutex::new(None);

/// (`host:port`, limit) → that server's window slots.
type Slots = HashMap<(String, usize), Arc<Semaphore>>;

/// The Postgres server a trust's database lives on (`host:port`); `None` for SQLite and for a
/// URL that cannot be read (connecting reports that).
pub fn server_of(trust: &Trust) -> Option<String> {
    match &trust.database {
        DatabaseTarget::Sqlite { .. } => None,
        DatabaseTarget::Postgres { .. } => pg_options(trust, Access::ReadOnly)
            .ok()
            .map(|o| format!("{}:{}", o.get_host(), o.get_port())),
    }
}

/// Wait for one of the `per_server` window slots of the trust's Postgres server; the slot is
/// freed when the permit drops. SQLite trusts get none and do not wait.
pub async fn window_slot(trust: &Trust, per_server: usize) -> Option<OwnedSemaphorePermit> {
    let server = server_of(trust)?;
    let per_server = per_server.max(1);
    let semaphore = {
        let mut servers = SERVERS.lock().unwrap_or_else(|p| p.into_inner());
        servers
            .get_or_insert_with(HashMap::new)
            .entry((server, per_server))
            .or_insert_with(|| Arc::new(Semaphore::new(per_server)))
            .clone()
    };
    // The semaphore is never closed, so acquiring cannot fail.
    semaphore.acquire_owned().await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::inventory::{PasswordSource, UrlSource};

    fn trust(id: &str, database: DatabaseTarget) -> Trust {
        Trust {
            id: id.into(),
            name: id.into(),
            region: "r".into(),
            tags: Default::default(),
            database,
            local_migrations: None,
            maintenance_window: None,
            runner: Default::default(),
        }
    }

    fn pg(id: &str, url: &str) -> Trust {
        trust(
            id,
            DatabaseTarget::Postgres {
                url: UrlSource::Inline(url.into()),
                password: PasswordSource::None,
            },
        )
    }

    #[test]
    fn trusts_on_one_server_share_it_whatever_their_database() {
        let a = pg("a", "postgres://u@db1.example:5433/trust_a");
        let b = pg("b", "postgres://v@db1.example:5433/trust_b");
        let c = pg("c", "postgres://u@db2.example:5433/trust_a");
        assert_eq!(server_of(&a).as_deref(), Some("db1.example:5433"));
        assert_eq!(server_of(&a), server_of(&b));
        assert_ne!(server_of(&a), server_of(&c));
        let s = trust(
            "s",
            DatabaseTarget::Sqlite {
                path: "estate/s.db".into(),
            },
        );
        assert_eq!(server_of(&s), None);
    }

    const LIMIT: usize = 3;

    #[tokio::test]
    async fn a_server_takes_at_most_its_share_of_windows_and_others_are_not_held_up() {
        let a = pg("a", "postgres://u@slots-test-1.example:5432/a");
        let b = pg("b", "postgres://u@slots-test-1.example:5432/b");
        let other = pg("o", "postgres://u@slots-test-2.example:5432/o");
        let mut held = Vec::new();
        for _ in 0..LIMIT {
            held.push(window_slot(&a, LIMIT).await);
        }
        let wait = std::time::Duration::from_millis(100);
        assert!(held.iter().all(Option::is_some));
        // The server is full: another of its trusts waits ...
        assert!(tokio::time::timeout(wait, window_slot(&b, LIMIT))
            .await
            .is_err());
        // ... a trust on another server does not ...
        assert!(tokio::time::timeout(wait, window_slot(&other, LIMIT))
            .await
            .is_ok());
        // ... and a freed slot is taken.
        held.pop();
        assert!(tokio::time::timeout(wait, window_slot(&b, LIMIT))
            .await
            .is_ok());
        // SQLite trusts never wait.
        let s = trust(
            "s",
            DatabaseTarget::Sqlite {
                path: "estate/s.db".into(),
            },
        );
        for _ in 0..LIMIT + 2 {
            held.push(
                tokio::time::timeout(wait, window_slot(&s, LIMIT))
                    .await
                    .unwrap(),
            );
        }
    }
}
