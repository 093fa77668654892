//! The copy machinery of `rollout --rehearse`: disposable copies of the plan's trust databases
//! (SQLite `VACUUM INTO`, PostgreSQL `pg_dump | pg_restore` into a scratch database on the same
//! server), the downs rehearsed on Postgres, and the sweep of scratch databases a killed
//! rehearsal left.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use futures::stream::{self, StreamExt};

use crate::config::inventory::{DatabaseTarget, PasswordSource, UrlSource};
use crate::config::{Inventory, Plan, Trust};
use crate::db::port::{pg_target, PgTarget};
use crate::db::sql::{quote_ident, quote_literal};
use crate::db::{Access, DbError, TrustDb};
use crate::exit_codes::ExitCode;
use crate::migrations::lint::check::{LintError, LintReport};
use crate::migrations::Catalogs;
use crate::printable::print_line;

/// Copies made at once.
const COPY_CONCURRENCY: usize = 4;
/// Prefix of every scratch database.
const SCRATCH_PREFIX: &str = "flotilla_rehearsal_";

/// Why the copies could not be made (nothing was run), or dropped; each says its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A trust database: the same code as the same fault in a rollout (unreachable: 4).
    #[error(transparent)]
    Db(#[from] DbError),
    /// The inventory or the client tools cannot make the copy.
    #[error("{0}")]
    Config(String),
    /// A down does not undo its up, rehearsed on PostgreSQL.
    #[error(transparent)]
    Lint(#[from] LintError),
    /// Some copies failed (the first one's exit code).
    #[error("rehearsal: cannot copy {} trust database(s); nothing was run:\n  {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Copies(Vec<CopyError>),
    /// Scratch databases left behind.
    #[error("could not drop scratch database(s); drop them by hand:\n  {}", .0.join("\n  "))]
    Leftovers(Vec<String>),
}

impl CopyError {
    /// The documented exit code.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CopyError::Db(e) => e.exit_code(),
            CopyError::Config(_) => ExitCode::Config,
            CopyError::Lint(e) => e.exit_code(),
            CopyError::Copies(all) => all.first().map_or(ExitCode::Config, CopyError::exit_code),
            CopyError::Leftovers(_) => ExitCode::Internal,
        }
    }
}

/// The scratch databases created so far, to drop at the end.
#[derive(Default)]
pub struct Scratch {
    /// (the source trust, whose server holds the scratch database; the scratch's name).
    postgres: Vec<(Trust, String)>,
}

impl Scratch {
    /// Drop every scratch database made so far; the ones that could not be dropped.
    pub async fn drop_all(&mut self) -> Result<(), CopyError> {
        let mut left = Vec::new();
        for (source, name) in self.postgres.drain(..) {
            if let Err(e) = drop_database(&source, &name).await {
                left.push(format!("{name} (server of trust '{}'): {e}", source.id));
            }
        }
        if left.is_empty() {
            Ok(())
        } else {
            Err(CopyError::Leftovers(left))
        }
    }
}

/// The plan's trusts, each once, in plan order.
fn plan_trusts(plan: &Plan) -> Vec<String> {
    let mut seen = BTreeSet::new();
    plan.waves
        .iter()
        .flat_map(|w| w.trusts.iter())
        .filter(|id| seen.insert(id.as_str()))
        .cloned()
        .collect()
}

/// Copy every trust of the plan; return an inventory that points those trusts at their copies
/// and holds no other trust (nothing outside the plan can be reached).
pub async fn copy_estate(
    inventory: &Inventory,
    catalogs: &Catalogs,
    plan: &Plan,
    dir: &Path,
    scratch: &mut Scratch,
) -> Result<Inventory, CopyError> {
    let ids = plan_trusts(plan);
    let host = host_tag();
    let scratch_name = |n: usize| format!("{SCRATCH_PREFIX}{host}_{}_{n}", std::process::id());
    let mut swept = BTreeSet::new();
    let mut jobs = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        let trust = inventory.get(id).ok_or_else(|| {
            CopyError::Config(format!("trust '{id}' of the plan is not in the inventory"))
        })?;
        let name = scratch_name(n);
        if matches!(trust.database, DatabaseTarget::Postgres { .. }) {
            // One sweep per server (told apart by the resolved URL's host and port).
            if let Ok(t) = pg_target(trust) {
                if swept.insert(server_of(&t.url)) {
                    sweep_leftovers(trust, &host).await;
                }
            }
            scratch.postgres.push((trust.clone(), name.clone()));
        }
        jobs.push((trust.clone(), name));
    }
    // Every down, rehearsed on Postgres itself before any copy is made (validate does it on
    // SQLite): up, down, the schema must be as before.
    if let Some((source, _)) = scratch.postgres.first() {
        let source = source.clone();
        let name = scratch_name(ids.len());
        scratch.postgres.push((source.clone(), name.clone()));
        rehearse_downs(&source, catalogs, &name, dir).await?;
    }
    let results: Vec<Result<Trust, CopyError>> = stream::iter(jobs)
        .map(|(trust, name)| async move { copy_trust(&trust, &name, dir).await })
        .buffered(COPY_CONCURRENCY)
        .collect()
        .await;
    let mut copies = Vec::with_capacity(results.len());
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(t) => copies.push(t),
            Err(f) => errors.push(f),
        }
    }
    if !errors.is_empty() {
        return Err(CopyError::Copies(errors));
    }
    Ok(inventory.with_trusts(copies))
}

/// Run every migration of `source`'s catalog up, down and up again on an empty scratch
/// database `name` on its server; a down that does not restore the schema is a lint error and
/// stops the rehearsal (exit 2) before anything is copied or run.
async fn rehearse_downs(
    source: &Trust,
    catalogs: &Catalogs,
    name: &str,
    dir: &Path,
) -> Result<(), CopyError> {
    create_database(source, name).await?;
    let target = pg_target(source)?;
    let empty = Trust {
        database: scratch_target(source, &target, name, dir)?,
        ..source.clone()
    };
    let mut db = TrustDb::connect(&empty, Access::ReadWrite).await?;
    // Accepted history is applied to build the schema, its downs not rehearsed: no one will
    // roll back to it.
    let catalog = catalogs.for_trust(&source.id);
    let found = crate::migrations::roundtrip::round_trip_since(
        &mut db,
        catalog.migrations(),
        catalog.accepted(),
    )
    .await;
    db.close().await;
    let report = LintReport {
        findings: found?,
        dialects: vec![crate::db::Dialect::Postgres],
        rehearsed: true,
        accepted: catalog.accepted().map(|_| catalog.accepted_count()),
    };
    if report.findings.is_empty() {
        return Ok(());
    }
    report.print_text();
    Ok(report.errors()?)
}

/// Copy one trust's database; the trust as it points at the copy.
async fn copy_trust(trust: &Trust, name: &str, dir: &Path) -> Result<Trust, CopyError> {
    let database = match &trust.database {
        DatabaseTarget::Sqlite { .. } => {
            let dest = dir.join(format!("{}.db", trust.id));
            let mut db = TrustDb::connect(trust, Access::ReadOnly).await?;
            let copied = db
                .execute_script(
                    &format!("VACUUM INTO {}", quote_literal(&dest.display().to_string())),
                    "copying the database for the rehearsal (VACUUM INTO)",
                )
                .await;
            db.close().await;
            copied?;
            DatabaseTarget::Sqlite { path: dest }
        }
        DatabaseTarget::Postgres { .. } => {
            let target = pg_target(trust)?;
            create_database(trust, name).await?;
            dump_and_restore(trust, &target, name).await?;
            scratch_target(trust, &target, name, dir)?
        }
    };
    Ok(Trust {
        database,
        ..trust.clone()
    })
}

/// The scratch database as an inventory target: the source's URL with the scratch's name and
/// no password in it; the password comes from the source's own `password_env`/`password_file`,
/// or, when the source's URL carried it, from a private file in the rehearsal's directory.
pub(super) fn scratch_target(
    trust: &Trust,
    target: &PgTarget,
    name: &str,
    dir: &Path,
) -> Result<DatabaseTarget, CopyError> {
    let bad = |what: &str| {
        CopyError::Config(format!(
            "trust '{}': {what} in {}",
            trust.id, target.url_from
        ))
    };
    let mut url = url::Url::parse(&target.url).map_err(|_| bad("invalid database URL"))?;
    let embedded = url.password().map(percent_decode);
    url.set_password(None)
        .map_err(|()| bad("a URL without a host"))?;
    url.set_path(&format!("/{name}"));
    let DatabaseTarget::Postgres { password, .. } = &trust.database else {
        unreachable!("scratch_target is only called for Postgres trusts")
    };
    let password = match (password, embedded) {
        (PasswordSource::None, Some(pw)) => {
            let file = dir.join(format!("{name}.password"));
            write_private(&file, &pw)
                .map_err(|e| CopyError::Config(format!("cannot write {}: {e}", file.display())))?;
            PasswordSource::File(file)
        }
        (p, _) => p.clone(),
    };
    Ok(DatabaseTarget::Postgres {
        url: UrlSource::Inline(url.to_string()),
        password,
    })
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

/// libpq's environment for a Postgres target (`pg_dump`/`pg_restore` read it): nothing on the
/// command line, so the password never shows in `ps`.
fn libpq_env(target: &PgTarget, database: &str) -> Result<Vec<(&'static str, String)>, String> {
    let url = url::Url::parse(&target.url).map_err(|_| "invalid database URL".to_string())?;
    let mut env = vec![("PGDATABASE", database.to_string())];
    let query: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    match (url.host_str(), query.get("host")) {
        (_, Some(h)) => env.push(("PGHOST", h.clone())),
        (Some(h), None) if !h.is_empty() => env.push(("PGHOST", h.to_string())),
        _ => {}
    }
    if let Some(p) = url
        .port()
        .map(|p| p.to_string())
        .or(query.get("port").cloned())
    {
        env.push(("PGPORT", p));
    }
    if !url.username().is_empty() {
        env.push(("PGUSER", percent_decode(url.username())));
    } else if let Some(u) = query.get("user") {
        env.push(("PGUSER", u.clone()));
    }
    if let Some(m) = query.get("sslmode") {
        env.push(("PGSSLMODE", m.clone()));
    }
    if let Some(pw) = target
        .password
        .clone()
        .or_else(|| url.password().map(percent_decode))
    {
        env.push(("PGPASSWORD", pw));
    }
    Ok(env)
}

/// A Postgres client program: on PATH, else the newest under /usr/lib/postgresql/*/bin (where
/// Debian's packages put them).
fn pg_tool(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()));
    if on_path {
        return PathBuf::from(name);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.is_file())
        .collect();
    found.sort_by_key(|p| {
        p.components()
            .nth(4)
            .and_then(|c| c.as_os_str().to_str()?.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop().unwrap_or_else(|| PathBuf::from(name))
}

/// `pg_dump -Fc` of the trust piped into `pg_restore` into the scratch database.
async fn dump_and_restore(
    trust: &Trust,
    target: &PgTarget,
    scratch: &str,
) -> Result<(), CopyError> {
    use std::process::Stdio;
    let fail =
        |what: String| CopyError::Config(format!("trust '{}': rehearsal copy: {what}", trust.id));
    let source_db = url::Url::parse(&target.url)
        .map(|u| u.path().trim_start_matches('/').to_string())
        .unwrap_or_default();
    let dump_env = libpq_env(target, &source_db).map_err(&fail)?;
    let restore_env = libpq_env(target, scratch).map_err(&fail)?;
    let (dump_bin, restore_bin) = (pg_tool("pg_dump"), pg_tool("pg_restore"));
    let mut dump = tokio::process::Command::new(&dump_bin)
        .args(["--format=custom", "--no-owner", "--no-privileges"])
        .envs(dump_env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            fail(format!(
                "cannot run {} (install the PostgreSQL client tools): {e}",
                dump_bin.display()
            ))
        })?;
    let dump_out: Stdio = dump
        .stdout
        .take()
        .and_then(|o| o.try_into().ok())
        .ok_or_else(|| fail("cannot pipe pg_dump into pg_restore".into()))?;
    let restore = tokio::process::Command::new(&restore_bin)
        .args([
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--single-transaction",
        ])
        // The scratch database's name only: host, port, user and password come from libpq's
        // environment. Without --dbname, pg_restore would print SQL instead of restoring.
        .arg(format!("--dbname={scratch}"))
        .envs(restore_env)
        .stdin(dump_out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("cannot run {}: {e}", restore_bin.display())))?;
    let (dumped, restored) = tokio::join!(dump.wait_with_output(), restore.wait_with_output());
    let dumped = dumped.map_err(|e| fail(format!("pg_dump: {e}")))?;
    let restored = restored.map_err(|e| fail(format!("pg_restore: {e}")))?;
    // pg_restore first: when it fails, pg_dump only sees a broken pipe.
    for (tool, out) in [("pg_restore", &restored), ("pg_dump", &dumped)] {
        if !out.status.success() {
            return Err(fail(format!(
                "{tool} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    Ok(())
}

/// Run one statement (CREATE or DROP DATABASE) in a session on `source`'s database, i.e. on
/// its server.
async fn on_server_of(source: &Trust, statement: &str, context: &str) -> Result<(), DbError> {
    let mut admin = TrustDb::connect(source, Access::ReadWrite).await?;
    let done = admin.execute_script(statement, context).await;
    admin.close().await;
    done.map(|_| ())
}

/// Create an empty scratch database on `source`'s server.
pub(super) async fn create_database(source: &Trust, name: &str) -> Result<(), DbError> {
    on_server_of(
        source,
        &format!("CREATE DATABASE {}", quote_ident(name)),
        &format!("creating the scratch database {name} (needs CREATEDB)"),
    )
    .await
}

/// Drop a scratch database, from a session on its source trust's server.
pub(super) async fn drop_database(source: &Trust, name: &str) -> Result<(), DbError> {
    on_server_of(
        source,
        &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name)),
        &format!("dropping the scratch database {name}"),
    )
    .await
}

/// Drop the scratch databases a killed rehearsal from this host left on `source`'s server:
/// those whose process is gone. Best effort: a failure is logged, not fatal.
async fn sweep_leftovers(source: &Trust, host: &str) {
    sweep_leftovers_named(source, SCRATCH_PREFIX, host, "rehearsal").await
}

/// [`sweep_leftovers`] for scratch databases named `<prefix><host>_<pid>_...`, made by `what`
/// (e.g. "rehearsal").
pub(super) async fn sweep_leftovers_named(source: &Trust, prefix: &str, host: &str, what: &str) {
    let found = async {
        let mut db = TrustDb::connect(source, Access::ReadOnly).await?;
        let names = db
            .text_rows(
                &format!(
                    "SELECT datname::text FROM pg_database WHERE datname LIKE '{}%'",
                    format!("{prefix}{host}_").replace('_', "\\_")
                ),
                1,
                "listing scratch databases",
            )
            .await;
        db.close().await;
        names
    }
    .await;
    let names = match found {
        Ok(rows) => rows.into_iter().flatten().flatten().collect::<Vec<_>>(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list leftover rehearsal databases");
            return;
        }
    };
    for name in names {
        let pid = name
            .strip_prefix(&format!("{prefix}{host}_"))
            .and_then(|rest| rest.split('_').next())
            .and_then(|p| p.parse::<u32>().ok());
        let Some(pid) = pid else { continue };
        if crate::journal::lease::process_alive(i64::from(pid)) {
            continue;
        }
        match drop_database(source, &name).await {
            Ok(()) => print_line(&format!(
                "{what}: dropped {name}, left by a {what} that was killed"
            )),
            Err(e) => {
                tracing::warn!(error = %e, database = name, "cannot drop a leftover rehearsal database")
            }
        }
    }
}

/// A short, stable tag of this host for scratch names (lower-case hex).
pub(super) fn host_tag() -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(crate::journal::lease::host_name().as_bytes());
    hex::encode(&digest[..4])
}

/// host:port of a URL, to tell servers apart.
pub(super) fn server_of(url: &str) -> String {
    url::Url::parse(url)
        .map(|u| {
            format!(
                "{}:{}",
                u.host_str().unwrap_or(""),
                u.port().unwrap_or(5432)
            )
        })
        .unwrap_or_default()
}
