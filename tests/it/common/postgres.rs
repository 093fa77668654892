//! The Postgres test cluster: [`pg_admin_url`] (from `FLOTILLA_TEST_PG_URL`, set by
//! `scripts/test`), [`create_databases`] with names unique across the test binary, and URL
//! helpers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::Connection;

use super::{block_on, serial, Db};

/// Name of the env var that receives the admin password, when `FLOTILLA_TEST_PG_URL` has one
/// (an inventory may never hold an inline password).
pub const PG_PASSWORD_ENV: &str = "FLOTILLA_TEST_DB_PASSWORD";

/// Admin URL of the throwaway test cluster. Never skips: without a server the test fails.
pub fn pg_admin_url() -> String {
    match std::env::var("FLOTILLA_TEST_PG_URL") {
        Ok(url) if !url.trim().is_empty() => url.trim().to_string(),
        _ => panic!(
            "Postgres tests need a server: run scripts/test (it installs PostgreSQL and starts \
             a throwaway cluster), or set FLOTILLA_TEST_PG_URL to an admin URL"
        ),
    }
}

/// `url` with its database (path) replaced by `db`; the query string is kept.
pub fn url_with_db(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).expect("url has a scheme");
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{}", &base[..authority_end], db);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// (`url` without its password, the password).
pub fn split_password(url: &str) -> (String, Option<String>) {
    let scheme_end = url.find("://").map(|i| i + 3).expect("url has a scheme");
    let rest = &url[scheme_end..];
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    if let Some(at) = authority.rfind('@') {
        let userinfo = &authority[..at];
        if let Some((user, pw)) = userinfo.split_once(':') {
            let stripped = format!("{}{}{}", &url[..scheme_end], user, &rest[at..]);
            return (stripped, Some(pw.to_string()));
        }
    }
    (url.to_string(), None)
}

/// `url` (which has a user but no password) with password `pw`.
pub fn with_password(url: &str, pw: &str) -> String {
    let scheme_end = url.find("://").map(|i| i + 3).unwrap();
    let rest = &url[scheme_end..];
    let at = rest.find('@').expect("url has a user");
    format!(
        "{}{}:{}{}",
        &url[..scheme_end],
        &rest[..at],
        pw,
        &rest[at..]
    )
}

/// Databases created for one test: trust id -> database name.
#[derive(Debug, Clone)]
pub struct PgDatabases {
    pub admin_url: String,
    pub prefix: String,
    pub names: BTreeMap<String, String>,
}

impl PgDatabases {
    /// Connection URL of trust `id`'s database (with the admin's password, if any).
    pub fn url(&self, id: &str) -> String {
        url_with_db(&self.admin_url, &self.names[id])
    }

    pub fn db(&self, id: &str) -> Db {
        Db::Postgres(self.url(id))
    }
}

static PREFIX_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A database-name prefix unique to this process and call: `<test>_<pid>_<n>` (lowercase,
/// [a-z0-9_], short enough that `<prefix>_<trust id>` stays within Postgres' 63 bytes).
pub fn unique_prefix(test: &str) -> String {
    let n = PREFIX_COUNTER.fetch_add(1, Ordering::SeqCst);
    let mut name: String = test
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    name.truncate(16);
    format!("t_{name}_{}_{n}", std::process::id())
}

/// Admin URL of the spare cluster `scripts/test` starts for the test that stops and restarts
/// its server (`FLOTILLA_TEST_PG_RESTART_URL`): the other tests, running concurrently in this
/// process, keep the main cluster.
pub fn pg_restart_url() -> String {
    match std::env::var("FLOTILLA_TEST_PG_RESTART_URL") {
        Ok(url) if !url.trim().is_empty() => url.trim().to_string(),
        _ => panic!(
            "this test stops and restarts its Postgres server: run scripts/test (it starts a \
             spare cluster for it), or set FLOTILLA_TEST_PG_RESTART_URL to the admin URL of a \
             cluster no other test uses and FLOTILLA_TEST_PG_RESTART_CTL to a command that \
             takes stop|start|restart for it"
        ),
    }
}

/// Create one fresh, empty database per trust id, named `<prefix>_<id with - as _>`, on the
/// test cluster. They are left behind: the cluster is thrown away after the run.
pub fn create_databases(test: &str, ids: &[String]) -> PgDatabases {
    create_databases_on(&pg_admin_url(), test, ids)
}

/// [`create_databases`] on the cluster of `admin_url`.
pub fn create_databases_on(admin_url: &str, test: &str, ids: &[String]) -> PgDatabases {
    let admin_url = admin_url.to_string();
    let prefix = unique_prefix(test);
    let names: BTreeMap<String, String> = ids
        .iter()
        .map(|id| (id.clone(), format!("{prefix}_{}", id.replace('-', "_"))))
        .collect();
    let _serial = serial();
    block_on(async {
        let mut conn = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("connect to {admin_url}: {e}"));
        for name in names.values() {
            assert!(
                name.len() <= 63,
                "database name {name} is longer than 63 bytes"
            );
            sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        }
        conn.close().await.ok();
    });
    PgDatabases {
        admin_url,
        prefix,
        names,
    }
}

/// A TCP port on 127.0.0.1 where nothing listens (bound then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    port
}

/// Run statements, one after the other, on the admin database of the test cluster.
pub fn pg_admin_exec(statements: &[String]) {
    let admin_url = pg_admin_url();
    block_on(async {
        let mut conn = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("connect to FLOTILLA_TEST_PG_URL ({admin_url}): {e}"));
        for s in statements {
            sqlx::raw_sql(s)
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{s}: {e}"));
        }
        conn.close().await.ok();
    });
}
