//! The estate lease: one active run per estate (per state database). The holder heartbeats;
//! a lease whose heartbeat stopped longer than its time-to-live ago may be taken, and so may
//! one whose holder process is gone from this very host (a killed run need not be waited for).

use std::time::Duration;

use serde::Serialize;

use super::store::{on_pool, StateDb, StateError};

/// The single lease row's key: one state database describes one estate.
pub const ESTATE: &str = "estate";

/// Who holds (or held) the lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holder {
    /// The run holding it.
    pub run_id: String,
    /// User name of the process.
    pub user: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: i64,
    /// When the lease was taken (RFC 3339).
    pub since: String,
    /// Last heartbeat, Unix milliseconds.
    pub heartbeat_ms: i64,
    /// When it expires without another heartbeat, Unix milliseconds.
    pub expires_ms: i64,
}

impl Holder {
    /// "run R (user@host, pid N, since T)".
    pub fn describe(&self) -> String {
        format!(
            "run {} ({}@{}, pid {}, since {})",
            self.run_id, self.user, self.host, self.pid, self.since
        )
    }

    /// Whether the lease has expired at `now_ms`.
    pub fn expired(&self, now_ms: i64) -> bool {
        self.expires_ms < now_ms
    }

    /// Whether the holder is a process of this host that no longer exists.
    pub fn holder_is_gone(&self) -> bool {
        self.host == host_name() && !process_alive(self.pid)
    }
}

/// A lease this process holds.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The run it is held for.
    pub run_id: String,
    token: String,
    ttl: Duration,
}

/// Why the lease could not be taken or kept.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("the estate is locked by {}; the lease expires {} unless renewed", .0.describe(), expires_at(.0.expires_ms))]
    Held(Holder),
    #[error("this run's lease was taken over (the estate is now held by {})", .0.as_ref().map_or("nobody".to_string(), Holder::describe))]
    Lost(Option<Holder>),
    #[error(transparent)]
    State(#[from] StateError),
}

impl LeaseError {
    /// The documented exit code: another run holds (or took over) the estate (6), or the state
    /// database failed (its own code).
    pub fn exit_code(&self) -> crate::exit_codes::ExitCode {
        match self {
            LeaseError::Held(_) | LeaseError::Lost(_) => crate::exit_codes::ExitCode::Locked,
            LeaseError::State(e) => e.exit_code(),
        }
    }
}

/// How long a lease lives without a heartbeat unless `--lease-ttl` says otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// [`DEFAULT_TTL`] as `--lease-ttl` writes it (its default in `--help`).
pub const DEFAULT_TTL_TEXT: &str = "30s";

fn expires_at(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// Now, RFC 3339.
pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(i64::MAX)
}

/// This host's name.
pub fn host_name() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// The user running flotilla: the name of the process's effective uid (what the system says,
/// not what `$USER` claims; `$USER` is unset under cron, systemd and `env -i`), then
/// `$USER`/`$LOGNAME`, then `uid N`.
pub fn user_name() -> String {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let uid = unsafe { libc::geteuid() };
        uid_name(uid)
            .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
            .or_else(|| std::env::var("LOGNAME").ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| format!("uid {uid}"))
    })
    .clone()
}

/// The login name of `uid` from the system's user database (files, LDAP: whatever NSS has).
fn uid_name(uid: libc::uid_t) -> Option<String> {
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: `passwd` is plain data that getpwuid_r fills in; `buf` outlives every pointer
        // it stores into `passwd` (we copy the name out before `buf` is dropped or reused), and
        // its length is passed with it.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe {
            libc::getpwuid_r(
                uid,
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        // SAFETY: on success pw_name points to a NUL-terminated string inside `buf`.
        let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
        return name
            .to_str()
            .ok()
            .filter(|n| !n.is_empty())
            .map(str::to_string);
    }
}

/// Whether process `pid` exists on this host. Only Linux can tell (`/proc`); elsewhere a
/// process is assumed alive and its lease must expire.
pub(crate) fn process_alive(pid: i64) -> bool {
    if cfg!(target_os = "linux") {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl StateDb {
    /// The current holder, if any (expired or not).
    pub async fn lease_holder(&self) -> Result<Option<Holder>, StateError> {
        let row: Option<(String, String, String, i64, String, i64, i64)> = on_pool!(&self.pool, p =>
            sqlx::query_as("SELECT run_id, holder_user, host, pid, since, heartbeat_ms, expires_ms FROM flotilla_lease WHERE estate = $1")
                .bind(ESTATE)
                .fetch_optional(p)
                .await)
        .map_err(|e| self.err(e))?;
        Ok(row.map(
            |(run_id, user, host, pid, since, heartbeat_ms, expires_ms)| Holder {
                run_id,
                user,
                host,
                pid,
                since,
                heartbeat_ms,
                expires_ms,
            },
        ))
    }

    /// Take the estate lease for `run_id`: when nobody holds it, when it expired, or when its
    /// holder process is gone from this host. Otherwise [`LeaseError::Held`] names the holder.
    pub async fn acquire_lease(&self, run_id: &str, ttl: Duration) -> Result<Lease, LeaseError> {
        let token = format!("{}-{}-{}", host_name(), std::process::id(), now_ms());
        let since = now();
        let now = now_ms();
        let current = self.lease_holder().await?;
        // Compare-and-swap on the row we saw, so two runs starting together cannot both win.
        let taken = match &current {
            None => on_pool!(&self.pool, p =>
                sqlx::query("INSERT INTO flotilla_lease (estate, run_id, token, holder_user, host, pid, since, heartbeat_ms, expires_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (estate) DO NOTHING")
                    .bind(ESTATE).bind(run_id).bind(&token).bind(user_name()).bind(host_name())
                    .bind(i64::from(std::process::id())).bind(&since).bind(now).bind(now + ms(ttl))
                    .execute(p).await.map(|r| r.rows_affected()))
            .map_err(|e| self.err(e))?,
            Some(h) if h.expired(now) || h.holder_is_gone() => {
                tracing::warn!(holder = %h.describe(), "taking over a lease whose holder stopped");
                on_pool!(&self.pool, p =>
                sqlx::query("UPDATE flotilla_lease SET run_id = $2, token = $3, holder_user = $4, host = $5, pid = $6, since = $7, heartbeat_ms = $8, expires_ms = $9 WHERE estate = $1 AND run_id = $10 AND heartbeat_ms = $11 AND pid = $12")
                    .bind(ESTATE).bind(run_id).bind(&token).bind(user_name()).bind(host_name())
                    .bind(i64::from(std::process::id())).bind(&since).bind(now).bind(now + ms(ttl))
                    .bind(&h.run_id).bind(h.heartbeat_ms).bind(h.pid)
                    .execute(p).await.map(|r| r.rows_affected()))
                .map_err(|e| self.err(e))?
            }
            Some(h) => return Err(LeaseError::Held(h.clone())),
        };
        if taken == 1 {
            Ok(Lease {
                run_id: run_id.to_string(),
                token,
                ttl,
            })
        } else {
            match self.lease_holder().await? {
                Some(h) => Err(LeaseError::Held(h)),
                None => Err(LeaseError::State(self.invalid(
                    "the lease changed hands while it was being taken; try again",
                ))),
            }
        }
    }

    /// Renew the lease; [`LeaseError::Lost`] when another run took it meanwhile.
    pub async fn heartbeat(&self, lease: &Lease) -> Result<(), LeaseError> {
        let now = now_ms();
        let renewed = on_pool!(&self.pool, p =>
            sqlx::query("UPDATE flotilla_lease SET heartbeat_ms = $3, expires_ms = $4 WHERE estate = $1 AND token = $2")
                .bind(ESTATE).bind(&lease.token).bind(now).bind(now + ms(lease.ttl))
                .execute(p).await.map(|r| r.rows_affected()))
        .map_err(|e| self.err(e))?;
        if renewed == 1 {
            Ok(())
        } else {
            Err(LeaseError::Lost(self.lease_holder().await?))
        }
    }

    /// Give the lease up (only if still ours).
    pub async fn release_lease(&self, lease: &Lease) -> Result<(), StateError> {
        on_pool!(&self.pool, p =>
            sqlx::query("DELETE FROM flotilla_lease WHERE estate = $1 AND token = $2")
                .bind(ESTATE).bind(&lease.token).execute(p).await.map(|_| ()))
        .map_err(|e| self.err(e))
    }
}

impl Lease {
    /// How often to heartbeat: a third of the time-to-live.
    pub fn heartbeat_interval(&self) -> Duration {
        (self.ttl / 3).max(Duration::from_millis(100))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_is_named_from_the_uid_not_from_the_environment() {
        assert_eq!(uid_name(0).as_deref(), Some("root"));
        // SAFETY: geteuid cannot fail.
        let me = uid_name(unsafe { libc::geteuid() });
        assert!(me.is_some(), "this process's uid has a name");
        assert_eq!(user_name(), me.unwrap());
    }
}
