//! Test harness for flotilla's integration tests (in the style of ripgrep's `tests/util.rs`).
//!
//! * [`Workspace`]: a temporary directory holding copies of the repository's `trusts.yaml`,
//!   `plans/` and `migrations/`; tests edit files in it and run the real `flotilla` binary
//!   there with [`Workspace::run`], which returns an [`Outcome`] with assertion helpers that
//!   print the whole command, exit code, stdout and stderr when they fail.
//! * [`Db`]: direct access to a trust's database (SQLite file or Postgres database), to check
//!   what flotilla did (or did not do) independently of flotilla's own reporting.
//! * Postgres: [`pg_admin_url`] (from `FLOTILLA_TEST_PG_URL`, set by `scripts/test`),
//!   [`create_databases`] and [`Workspace::write_pg_inventory`].
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::{Connection, Row};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_flotilla");

/// The repository root (where trusts.yaml, plans/ and migrations/ live).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One flotilla process at a time per test binary (cargo runs the binaries one after the
/// other). Rollouts pass a health gate that compares query latencies before and after each
/// wave; two rollouts of parallel tests competing for the CPU make those latencies noisy enough
/// to trip the gate, so concurrent runs would make the suite flaky.
static RUN_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Hold [`RUN_LOCK`]: flotilla runs, and heavy set-up such as creating 56 Postgres databases,
/// do not overlap within a test binary, so one test's load does not disturb another test's
/// latency measurements.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    RUN_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How long one flotilla invocation may take before the test fails (it is killed).
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// Name of the env var that receives the admin password, when `FLOTILLA_TEST_PG_URL` has one
/// (an inventory may never hold an inline password).
pub const PG_PASSWORD_ENV: &str = "FLOTILLA_TEST_DB_PASSWORD";

// ---------------------------------------------------------------------------------------------
// Workspace
// ---------------------------------------------------------------------------------------------

/// A temporary copy of the repository's configuration to run flotilla in.
pub struct Workspace {
    dir: tempfile::TempDir,
    env: BTreeMap<String, String>,
}

impl Workspace {
    /// A fresh temporary directory with copies of the repo's trusts.yaml, plans/ and
    /// migrations/ (and no estate: `flotilla demo` creates it).
    pub fn new() -> Workspace {
        let dir = tempfile::Builder::new()
            .prefix("flotilla-test-")
            .tempdir()
            .expect("create temporary workspace");
        let root = repo_root();
        std::fs::copy(root.join("trusts.yaml"), dir.path().join("trusts.yaml"))
            .expect("copy trusts.yaml into the workspace");
        copy_dir(&root.join("plans"), &dir.path().join("plans"));
        copy_dir(&root.join("migrations"), &dir.path().join("migrations"));
        Workspace {
            dir,
            env: BTreeMap::new(),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// `rel` resolved against the workspace root.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Write (create or overwrite) a file, creating parent directories.
    pub fn write(&self, rel: impl AsRef<Path>, contents: impl AsRef<[u8]>) {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, contents).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    }

    pub fn read(&self, rel: impl AsRef<Path>) -> String {
        let p = self.path(rel);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
    }

    pub fn exists(&self, rel: impl AsRef<Path>) -> bool {
        self.path(rel).exists()
    }

    pub fn remove(&self, rel: impl AsRef<Path>) {
        let p = self.path(rel);
        std::fs::remove_file(&p).unwrap_or_else(|e| panic!("remove {}: {e}", p.display()));
    }

    /// Rewrite a file with `f`; panics if `f` leaves it unchanged (an edit that silently
    /// did nothing would make the test vacuous).
    pub fn edit(&self, rel: impl AsRef<Path>, f: impl FnOnce(&str) -> String) {
        let rel = rel.as_ref();
        let before = self.read(rel);
        let after = f(&before);
        assert_ne!(before, after, "edit of {} changed nothing", rel.display());
        self.write(rel, after);
    }

    /// Replace the first occurrence of `from` (which must occur) by `to` in a file.
    pub fn replace(&self, rel: impl AsRef<Path>, from: &str, to: &str) {
        let rel = rel.as_ref();
        self.edit(rel, |s| {
            assert!(
                s.contains(from),
                "{} does not contain {from:?}",
                rel.display()
            );
            s.replacen(from, to, 1)
        });
    }

    /// The one migration file of `version` ending with `suffix` (".up.sql" / ".down.sql"),
    /// as a path relative to the workspace.
    pub fn migration_file(&self, version: i64, suffix: &str) -> PathBuf {
        let prefix = format!("{}_", migration_name(version).split('_').next().unwrap());
        let mut found: Vec<PathBuf> = std::fs::read_dir(self.path("migrations"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&prefix) && n.ends_with(suffix))
            .map(|n| PathBuf::from("migrations").join(n))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "expected one migrations/{prefix}*{suffix}, found {found:?}"
        );
        found.pop().unwrap()
    }

    /// The shared body of the checksum-drift tests: after seeding, edit the first (applied)
    /// migration's up file, roll out, and check the run exits 7 naming that migration with no
    /// tracking row changed and no trust upgraded.
    pub fn roll_out_after_editing_an_applied_migration(&self) {
        let before = self.tracking_snapshot();
        let first = catalog_versions()[0];
        let up = self.migration_file(first, ".up.sql");
        self.edit(&up, |s| {
            format!("{s}\n-- edited after it was applied\nCREATE INDEX edited_idx ON staff (id);\n")
        });
        let out = self.run(&["rollout", "plans/rio-5.1.yaml", "--yes"]);
        out.code(7).stderr_names_migration(first);
        assert_eq!(
            before,
            self.tracking_snapshot(),
            "rollout changed tracking rows despite drift"
        );
        for id in self.trust_ids() {
            assert!(
                !self.db(&id).table_exists("staff_smartcard"),
                "{id} was upgraded despite drift"
            );
        }
    }

    /// The shared set-up of the failing-migration tests: plant a migration after the last one
    /// that fails only on camden (it already has a `tripwire` table), put camden then islington
    /// in a pilot wave and every other trust in a later wave, roll it out, and check it stopped
    /// with exit 4 naming camden and the migration.
    pub fn roll_out_a_migration_failing_on_camden(&self) -> Outcome {
        self.db("camden")
            .exec("CREATE TABLE tripwire (id INTEGER PRIMARY KEY)");
        let (version, stem) = self.add_tripwire_migration();
        let rest: Vec<String> = self
            .trust_ids()
            .into_iter()
            .filter(|id| id != "camden" && id != "islington")
            .collect();
        self.write_target_plan(
            "break.yaml",
            version,
            &[
                ("pilot", vec!["camden".into(), "islington".into()]),
                ("everyone-else", rest),
            ],
        );
        let out = self.run(&["rollout", "plans/break.yaml", "--yes"]);
        out.code(4).stderr_contains("camden").stderr_contains_any(&[
            &stem,
            &format!("migration {version}"),
            &format!("version {version}"),
        ]);
        out
    }

    /// Add a migration after the repo's last one whose first statement is valid and whose
    /// second fails only on a database that already has a `tripwire` table (portable SQL).
    /// Returns (version, file stem), e.g. (131, "0131_break_halfway").
    pub fn add_tripwire_migration(&self) -> (i64, String) {
        let (version, prefix) = next_version();
        let stem = format!("{prefix}_break_halfway");
        self.write(
            format!("migrations/{stem}.up.sql"),
            "CREATE TABLE flotilla_probe (id INTEGER PRIMARY KEY);\n\
             CREATE TABLE tripwire (id INTEGER PRIMARY KEY);\n",
        );
        self.write(
            format!("migrations/{stem}.down.sql"),
            "DROP TABLE tripwire;\nDROP TABLE flotilla_probe;\n",
        );
        (version, stem)
    }

    /// Write `plans/<file>` targeting `target_version`, default concurrency 1, one wave per
    /// (name, trust ids) in order.
    pub fn write_target_plan(
        &self,
        file: &str,
        target_version: i64,
        waves: &[(&str, Vec<String>)],
    ) {
        let mut text = format!(
            "name: {}\ntarget_version: {target_version}\nconcurrency: 1\nwaves:\n",
            file.trim_end_matches(".yaml")
        );
        for (name, ids) in waves {
            let _ = writeln!(text, "  - name: {name}\n    trusts: [{}]", ids.join(", "));
        }
        self.write(format!("plans/{file}"), text);
    }

    /// Set an environment variable for every later `run`.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.insert(key.to_string(), value.to_string());
    }

    /// The command that `run` would execute (cwd = workspace, `--no-progress` first,
    /// stdin = /dev/null, no FLOTILLA_* variables from the test's environment).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(self.root()).arg("--no-progress").args(args);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("FLOTILLA_") {
                cmd.env_remove(&k);
            }
        }
        cmd.env_remove("RUST_LOG").env("NO_COLOR", "1");
        cmd.envs(&self.env);
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Run `flotilla --no-progress ARGS...` in the workspace and capture everything.
    ///
    /// Runs are serialised within a test binary (see [`RUN_LOCK`]).
    pub fn run(&self, args: &[&str]) -> Outcome {
        let _serial = serial();
        let mut cmd = self.command(args);
        let described = format!(
            "(cd {} && {} --no-progress {})",
            self.root().display(),
            BIN,
            args.iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" ")
        );
        run_captured(&mut cmd, described)
    }

    // --- the inventory ------------------------------------------------------------------------

    /// The workspace's trusts.yaml, parsed (as JSON values).
    pub fn inventory(&self) -> Value {
        parse_yaml(&self.read("trusts.yaml"), "trusts.yaml")
    }

    /// Replace trusts.yaml by `inventory` (emitted as YAML).
    pub fn write_inventory(&self, inventory: &Value) {
        self.write("trusts.yaml", to_yaml(inventory));
    }

    /// Parse trusts.yaml, let `f` change it, write it back.
    pub fn edit_inventory(&self, f: impl FnOnce(&mut Value)) {
        let mut inv = self.inventory();
        f(&mut inv);
        self.write_inventory(&inv);
    }

    /// Ids of the trusts in the workspace's inventory, in file order.
    pub fn trust_ids(&self) -> Vec<String> {
        trusts_of(&self.inventory())
            .iter()
            .map(|t| t["id"].as_str().expect("trust id is a string").to_string())
            .collect()
    }

    /// The database of trust `id`, as the workspace's inventory describes it.
    pub fn db(&self, id: &str) -> Db {
        let inv = self.inventory();
        let trust = trusts_of(&inv)
            .iter()
            .find(|t| t["id"] == id)
            .unwrap_or_else(|| panic!("no trust {id:?} in the workspace's trusts.yaml"));
        let database = if trust.get("database").is_some() {
            &trust["database"]
        } else {
            &inv["defaults"]["database"]
        };
        let url = if let Some(url) = database["url"].as_str() {
            url.replace("{id}", id)
        } else if let Some(var) = database["url_env"].as_str() {
            self.env
                .get(var)
                .cloned()
                .unwrap_or_else(|| panic!("{var} not set in the workspace"))
        } else {
            panic!("trust {id}: no database url in {database}")
        };
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let rest = rest.strip_prefix("//").unwrap_or(rest);
            let rest = rest.split('?').next().unwrap();
            Db::Sqlite(self.root().join(rest))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let url = match database["password_env"].as_str() {
                Some(var) => {
                    let pw = self.env.get(var).unwrap_or_else(|| panic!("{var} not set"));
                    with_password(&url, pw)
                }
                None => url,
            };
            Db::Postgres(url)
        } else {
            panic!("trust {id}: unsupported url {url}")
        }
    }

    /// Every trust's tracking rows (see [`Db::tracking_rows`]), by trust id.
    pub fn tracking_snapshot(&self) -> BTreeMap<String, Vec<String>> {
        self.trust_ids()
            .into_iter()
            .map(|id| (id.clone(), self.db(&id).tracking_rows()))
            .collect()
    }

    /// Every trust's applied versions, by trust id.
    pub fn applied_by_trust(&self) -> BTreeMap<String, Vec<i64>> {
        self.trust_ids()
            .into_iter()
            .map(|id| (id.clone(), self.db(&id).applied_versions()))
            .collect()
    }

    /// Name and bytes of every file under `rel` (recursively), to prove nothing was written.
    pub fn file_bytes(&self, rel: &str) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut out = BTreeMap::new();
        collect_files(&self.path(rel), Path::new(rel), &mut out);
        out
    }

    /// Point this workspace at Postgres: rewrite trusts.yaml so that it holds only the trusts
    /// of `dbs` (keeping their name/region/tags from the current inventory), each with its own
    /// `database: { url: postgres://.../<db> }`, and no defaults. If the admin URL carries a
    /// password it goes to [`PG_PASSWORD_ENV`] (`password_env`), never into the file.
    pub fn write_pg_inventory(&mut self, dbs: &PgDatabases) {
        let inv = self.inventory();
        let (admin_no_pw, pw) = split_password(&dbs.admin_url);
        let mut trusts = Vec::new();
        for t in trusts_of(&inv) {
            let id = t["id"].as_str().unwrap();
            let Some(db) = dbs.names.get(id) else {
                continue;
            };
            let mut t = t.clone();
            let mut database = json!({ "url": url_with_db(&admin_no_pw, db) });
            if pw.is_some() {
                database["password_env"] = json!(PG_PASSWORD_ENV);
            }
            t["database"] = database;
            trusts.push(t);
        }
        assert_eq!(
            trusts.len(),
            dbs.names.len(),
            "some databases are for trusts not in trusts.yaml"
        );
        if let Some(pw) = pw {
            self.set_env(PG_PASSWORD_ENV, &pw);
        }
        self.write_inventory(&json!({ "trusts": trusts }));
    }

    /// Keep only the trusts in `ids` in trusts.yaml.
    pub fn keep_trusts(&self, ids: &[&str]) {
        self.edit_inventory(|inv| {
            let trusts = inv["trusts"].as_array_mut().unwrap();
            trusts.retain(|t| ids.iter().any(|id| t["id"] == *id));
            assert_eq!(
                trusts.len(),
                ids.len(),
                "some of {ids:?} are not in trusts.yaml"
            );
        });
    }

    // --- flotilla shortcuts --------------------------------------------------------------------

    /// `status --format json`, which must succeed; the `trusts` array by id.
    pub fn status(&self) -> BTreeMap<String, Value> {
        let out = self.run(&["status", "--format", "json"]);
        out.success();
        let v = out.json();
        let trusts = v["trusts"]
            .as_array()
            .unwrap_or_else(|| panic!("status json has no `trusts` array\n{}", out.describe()));
        let mut map = BTreeMap::new();
        for t in trusts {
            let id = t["id"]
                .as_str()
                .unwrap_or_else(|| panic!("trust without id: {t}"))
                .to_string();
            assert!(
                map.insert(id.clone(), t.clone()).is_none(),
                "status lists {id} twice"
            );
        }
        map
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display())) {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn collect_files(abs: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(abs) else {
        return;
    };
    for e in entries {
        let e = e.unwrap();
        let (a, r) = (e.path(), rel.join(e.file_name()));
        if e.file_type().unwrap().is_dir() {
            collect_files(&a, &r, out);
        } else {
            out.insert(r, std::fs::read(&a).unwrap());
        }
    }
}

fn trusts_of(inv: &Value) -> &Vec<Value> {
    inv["trusts"]
        .as_array()
        .expect("trusts.yaml has a `trusts` list")
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Run `cmd` to completion (killing it after RUN_TIMEOUT), capturing stdout and stderr.
pub fn run_captured(cmd: &mut Command, described: String) -> Outcome {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {described}: {e}"));
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        so.read_to_end(&mut b).ok();
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        se.read_to_end(&mut b).ok();
        b
    });
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > RUN_TIMEOUT {
            timed_out = true;
            child.kill().ok();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let outcome = Outcome {
        command: described,
        code: status.code(),
        stdout: String::from_utf8_lossy(&t_out.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&t_err.join().unwrap()).into_owned(),
    };
    if timed_out {
        panic!("timed out after {RUN_TIMEOUT:?}\n{}", outcome.describe());
    }
    outcome
}

// ---------------------------------------------------------------------------------------------
// Outcome
// ---------------------------------------------------------------------------------------------

/// What one flotilla invocation did. Assertion helpers return `&Self` to chain; each panics
/// with the full command, exit code, stdout and stderr.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub command: String,
    /// None when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn describe(&self) -> String {
        format!(
            "command: {}\nexit code: {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--------------",
            self.command,
            self.code
                .map_or("none (killed by a signal)".to_string(), |c| c.to_string()),
            self.stdout,
            self.stderr
        )
    }

    #[track_caller]
    fn fail(&self, what: &str) -> ! {
        panic!("{what}\n{}", self.describe())
    }

    /// Exit code 0 (and no panic).
    #[track_caller]
    pub fn success(&self) -> &Self {
        self.no_panic();
        if self.code != Some(0) {
            self.fail("expected success (exit code 0)");
        }
        self
    }

    /// Exit code `n` (and no panic).
    #[track_caller]
    pub fn code(&self, n: i32) -> &Self {
        self.no_panic();
        if self.code != Some(n) {
            self.fail(&format!("expected exit code {n}"));
        }
        self
    }

    /// Neither output shows a Rust panic.
    #[track_caller]
    pub fn no_panic(&self) -> &Self {
        if self.stderr.contains("panicked at") || self.stdout.contains("panicked at") {
            self.fail("flotilla panicked");
        }
        self
    }

    #[track_caller]
    pub fn stdout_contains(&self, s: &str) -> &Self {
        if !self.stdout.contains(s) {
            self.fail(&format!("expected stdout to contain {s:?}"));
        }
        self
    }

    #[track_caller]
    pub fn stderr_contains(&self, s: &str) -> &Self {
        if !self.stderr.contains(s) {
            self.fail(&format!("expected stderr to contain {s:?}"));
        }
        self
    }

    /// stderr contains at least one of `alternatives`.
    #[track_caller]
    pub fn stderr_contains_any(&self, alternatives: &[&str]) -> &Self {
        if !alternatives.iter().any(|s| self.stderr.contains(s)) {
            self.fail(&format!(
                "expected stderr to contain one of {alternatives:?}"
            ));
        }
        self
    }

    /// stderr names migration `version`: its file stem (e.g. "0010_create_staff"), its
    /// padded prefix ("0010"), or "migration 10" / "version 10".
    #[track_caller]
    pub fn stderr_names_migration(&self, version: i64) -> &Self {
        let stem = std::fs::read_dir(repo_root().join("migrations"))
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                let stem = name.strip_suffix(".up.sql")?.to_string();
                (stem.split('_').next()?.parse::<i64>().ok()? == version).then_some(stem)
            })
            .next();
        let mut names = vec![
            format!("migration {version}"),
            format!("version {version}"),
            version_prefix(version),
        ];
        names.extend(stem);
        if !names.iter().any(|n| self.stderr.contains(n.as_str())) {
            self.fail(&format!(
                "expected stderr to name migration {version} (one of {names:?})"
            ));
        }
        self
    }

    /// stderr contains `s`, ignoring ASCII case.
    #[track_caller]
    pub fn stderr_contains_nocase(&self, s: &str) -> &Self {
        if !self
            .stderr
            .to_ascii_lowercase()
            .contains(&s.to_ascii_lowercase())
        {
            self.fail(&format!("expected stderr to contain {s:?} (any case)"));
        }
        self
    }

    /// Neither stdout nor stderr contains `s`.
    #[track_caller]
    pub fn output_lacks(&self, s: &str) -> &Self {
        if self.stdout.contains(s) || self.stderr.contains(s) {
            self.fail(&format!(
                "expected neither stdout nor stderr to contain {s:?}"
            ));
        }
        self
    }

    /// stdout parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        match serde_json::from_str(&self.stdout) {
            Ok(v) => v,
            Err(e) => self.fail(&format!("stdout is not JSON: {e}")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// YAML in and out
// ---------------------------------------------------------------------------------------------

/// Parse YAML into JSON values (the harness only reads the repo's own, simple files).
pub fn parse_yaml(text: &str, what: &str) -> Value {
    serde_saphyr::from_str::<Value>(text).unwrap_or_else(|e| panic!("parse {what}: {e}"))
}

/// Emit `v` as block-style YAML; every scalar is JSON-encoded (a JSON string is a valid YAML
/// double-quoted scalar), so nothing is re-typed on the way back in.
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    emit_yaml(v, 0, &mut out);
    out
}

fn yaml_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        serde_json::to_string(k).unwrap()
    }
}

fn is_inline(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => true,
    }
}

fn inline(v: &Value) -> String {
    match v {
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
        other => serde_json::to_string(other).unwrap(),
    }
}

fn emit_yaml(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(map) => {
            for (k, val) in map {
                if is_inline(val) {
                    let _ = writeln!(out, "{pad}{}: {}", yaml_key(k), inline(val));
                } else {
                    let _ = writeln!(out, "{pad}{}:", yaml_key(k));
                    emit_yaml(val, indent + 2, out);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                if is_inline(item) {
                    let _ = writeln!(out, "{pad}- {}", inline(item));
                } else {
                    // emit the item two deeper, then put the dash on its first line
                    let mut sub = String::new();
                    emit_yaml(item, indent + 2, &mut sub);
                    out.push_str(&pad);
                    out.push_str("- ");
                    out.push_str(&sub[indent + 2..]);
                }
            }
        }
        scalar => {
            let _ = writeln!(out, "{pad}{}", inline(scalar));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Catalog facts (read from the repo's files, so the tests follow them)
// ---------------------------------------------------------------------------------------------

/// Last version of `release` per migrations/releases.yaml of the repo.
pub fn release_version(release: &str) -> i64 {
    let text = std::fs::read_to_string(repo_root().join("migrations/releases.yaml")).unwrap();
    parse_yaml(&text, "releases.yaml")[release]
        .as_i64()
        .unwrap_or_else(|| panic!("release {release} not in migrations/releases.yaml"))
}

/// Every migration version of the repo's migrations/, ascending.
pub fn catalog_versions() -> Vec<i64> {
    let mut v: Vec<i64> = std::fs::read_dir(repo_root().join("migrations"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".up.sql")?;
            stem.split('_').next()?.parse().ok()
        })
        .collect();
    v.sort();
    v
}

/// File stem of the repo's migration `version`, e.g. "0010_create_staff".
pub fn migration_name(version: i64) -> String {
    std::fs::read_dir(repo_root().join("migrations"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".up.sql")?.to_string();
            (stem.split('_').next()?.parse::<i64>().ok()? == version).then_some(stem)
        })
        .next()
        .unwrap_or_else(|| panic!("no migration {version} in the repo's migrations/"))
}

/// The version prefix of `version` as the repo's files write it (zero-padded like them).
pub fn version_prefix(version: i64) -> String {
    let width = migration_name(catalog_versions()[0])
        .split('_')
        .next()
        .unwrap()
        .len();
    format!("{version:0width$}")
}

/// A version after every migration of the repo, with its file prefix (e.g. (131, "0131")).
pub fn next_version() -> (i64, String) {
    let v = catalog_versions().last().unwrap() + 1;
    (v, version_prefix(v))
}

/// The catalog versions up to and including `last`.
pub fn versions_through(last: i64) -> Vec<i64> {
    catalog_versions()
        .into_iter()
        .filter(|v| *v <= last)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Direct database access
// ---------------------------------------------------------------------------------------------

/// Run a future to completion on a private runtime (tests are synchronous).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// One trust's database, for checking state behind flotilla's back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Db {
    Sqlite(PathBuf),
    /// A full connection URL (with password, if any).
    Postgres(String),
}

enum Conn {
    Sqlite(sqlx::SqliteConnection),
    Pg(sqlx::PgConnection),
}

impl Db {
    async fn connect(&self, read_only: bool) -> Conn {
        match self {
            Db::Sqlite(path) => {
                assert!(
                    path.exists(),
                    "sqlite database {} does not exist",
                    path.display()
                );
                let opts = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(path)
                    .read_only(read_only)
                    .create_if_missing(false);
                Conn::Sqlite(
                    sqlx::SqliteConnection::connect_with(&opts)
                        .await
                        .unwrap_or_else(|e| panic!("open {}: {e}", path.display())),
                )
            }
            Db::Postgres(url) => Conn::Pg(
                sqlx::PgConnection::connect(url)
                    .await
                    .unwrap_or_else(|e| panic!("connect {url}: {e}")),
            ),
        }
    }

    /// Execute `sql` (one script, may hold several statements) in autocommit mode.
    pub fn exec(&self, sql: &str) {
        block_on(async {
            match self.connect(false).await {
                Conn::Sqlite(mut c) => {
                    sqlx::raw_sql(sql)
                        .execute(&mut c)
                        .await
                        .unwrap_or_else(|e| panic!("{sql}: {e}"));
                    c.close().await.ok();
                }
                Conn::Pg(mut c) => {
                    sqlx::raw_sql(sql)
                        .execute(&mut c)
                        .await
                        .unwrap_or_else(|e| panic!("{sql}: {e}"));
                    c.close().await.ok();
                }
            }
        })
    }

    /// First column of every row of `sql`, which must be a text value (cast it).
    pub fn query_strings(&self, sql: &str) -> Vec<String> {
        block_on(async {
            match self.connect(true).await {
                Conn::Sqlite(mut c) => {
                    let rows = sqlx::query(sql)
                        .fetch_all(&mut c)
                        .await
                        .unwrap_or_else(|e| panic!("{self:?}: {sql}: {e}"));
                    c.close().await.ok();
                    rows.iter().map(|r| r.get::<String, _>(0)).collect()
                }
                Conn::Pg(mut c) => {
                    let rows = sqlx::query(sql)
                        .fetch_all(&mut c)
                        .await
                        .unwrap_or_else(|e| panic!("{self:?}: {sql}: {e}"));
                    c.close().await.ok();
                    rows.iter().map(|r| r.get::<String, _>(0)).collect()
                }
            }
        })
    }

    /// A single integer (e.g. `SELECT count(*) ...`; cast to bigint on Postgres if needed).
    pub fn query_i64(&self, sql: &str) -> i64 {
        block_on(async {
            match self.connect(true).await {
                Conn::Sqlite(mut c) => {
                    let v: i64 = sqlx::query_scalar::<_, i64>(sql)
                        .fetch_one(&mut c)
                        .await
                        .unwrap_or_else(|e| panic!("{self:?}: {sql}: {e}"));
                    c.close().await.ok();
                    v
                }
                Conn::Pg(mut c) => {
                    let v: i64 = sqlx::query_scalar::<_, i64>(sql)
                        .fetch_one(&mut c)
                        .await
                        .unwrap_or_else(|e| panic!("{self:?}: {sql}: {e}"));
                    c.close().await.ok();
                    v
                }
            }
        })
    }

    pub fn table_exists(&self, table: &str) -> bool {
        let sql = match self {
            Db::Sqlite(_) => format!(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '{table}'"
            ),
            Db::Postgres(_) => format!(
                "SELECT count(*)::bigint FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = '{table}'"
            ),
        };
        self.query_i64(&sql) > 0
    }

    /// Number of rows of `table`.
    pub fn count(&self, table: &str) -> i64 {
        self.query_i64(&format!("SELECT count(*) FROM {table}"))
    }

    /// Versions recorded in `_flotilla_migrations`, ascending (empty if there is no table).
    pub fn applied_versions(&self) -> Vec<i64> {
        if !self.table_exists("_flotilla_migrations") {
            return Vec::new();
        }
        let sql = match self {
            Db::Sqlite(_) => {
                "SELECT CAST(version AS TEXT) FROM _flotilla_migrations ORDER BY version"
            }
            Db::Postgres(_) => {
                "SELECT t.version::text FROM _flotilla_migrations t ORDER BY t.version"
            }
        };
        let mut v: Vec<i64> = self
            .query_strings(sql)
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        v.sort();
        v
    }

    /// Every tracking row rendered as one string (all columns), ordered by version: two
    /// snapshots are equal iff no tracking row was added, removed or changed.
    pub fn tracking_rows(&self) -> Vec<String> {
        if !self.table_exists("_flotilla_migrations") {
            return Vec::new();
        }
        let sql = match self {
            Db::Sqlite(_) => {
                "SELECT quote(version) || '|' || quote(description) || '|' || quote(checksum) \
                 || '|' || quote(applied_at) || '|' || quote(duration_ms) \
                 FROM _flotilla_migrations ORDER BY version"
            }
            Db::Postgres(_) => {
                "SELECT row_to_json(t)::text FROM _flotilla_migrations t ORDER BY t.version"
            }
        };
        self.query_strings(sql)
    }
}

/// Versions recorded in the SQLite database `path` (read-only), ascending.
pub fn applied_versions(path: impl AsRef<Path>) -> Vec<i64> {
    Db::Sqlite(path.as_ref().to_path_buf()).applied_versions()
}

/// Whether the SQLite database `path` has table `table`.
pub fn table_exists(path: impl AsRef<Path>, table: &str) -> bool {
    Db::Sqlite(path.as_ref().to_path_buf()).table_exists(table)
}

/// Number of rows of `table` in the SQLite database `path`.
pub fn count(path: impl AsRef<Path>, table: &str) -> i64 {
    Db::Sqlite(path.as_ref().to_path_buf()).count(table)
}

// ---------------------------------------------------------------------------------------------
// Postgres
// ---------------------------------------------------------------------------------------------

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

/// Create one fresh, empty database per trust id, named `<prefix>_<id with - as _>`.
/// They are left behind: the cluster is thrown away after the run.
pub fn create_databases(test: &str, ids: &[String]) -> PgDatabases {
    let admin_url = pg_admin_url();
    let prefix = unique_prefix(test);
    let names: BTreeMap<String, String> = ids
        .iter()
        .map(|id| (id.clone(), format!("{prefix}_{}", id.replace('-', "_"))))
        .collect();
    let _serial = serial();
    block_on(async {
        let mut conn = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("connect to FLOTILLA_TEST_PG_URL ({admin_url}): {e}"));
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

// ---------------------------------------------------------------------------------------------
// Crash harness helpers
// ---------------------------------------------------------------------------------------------

/// A small seedable pseudo-random generator (SplitMix64): the crash harness's kill points are
/// reproducible from the seed it prints.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=max`.
    pub fn up_to(&mut self, max: u64) -> u64 {
        match max.checked_add(1) {
            Some(n) => self.next_u64() % n,
            None => self.next_u64(),
        }
    }
}

/// `name` from the test's environment parsed as `T`, or `default` when unset or empty; a value
/// that does not parse fails the test (a typo must not silently change what is tested).
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a valid value")),
        _ => default,
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `FLOTILLA_CRASH_SEED`, or one derived from the time (printed by the harness, so any run can
/// be replayed).
pub fn crash_seed() -> u64 {
    let derived = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ u64::from(std::process::id()).rotate_left(32);
    env_or("FLOTILLA_CRASH_SEED", derived % 1_000_000_000)
}

/// This host's name, as flotilla records it in the lease.
pub fn this_host() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// Copy a directory tree (`to` is created).
pub fn copy_tree(from: &Path, to: &Path) {
    copy_dir(from, to);
}

fn describe_command(ws: &Workspace, args: &[&str]) -> String {
    format!(
        "(cd {} && {} --no-progress {})",
        ws.root().display(),
        BIN,
        args.iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// Like [`Workspace::run`] but without taking [`serial`]: for a caller that already holds it.
pub fn run_unlocked(ws: &Workspace, args: &[&str]) -> Outcome {
    run_captured(&mut ws.command(args), describe_command(ws, args))
}

/// A flotilla process started in the background, its output captured.
pub struct Spawned {
    child: std::process::Child,
    out: Option<std::thread::JoinHandle<Vec<u8>>>,
    err: Option<std::thread::JoinHandle<Vec<u8>>>,
    described: String,
    /// When it was started.
    pub started: Instant,
}

impl Spawned {
    /// Start `flotilla --no-progress ARGS...` in the workspace (the caller serialises).
    pub fn start(ws: &Workspace, args: &[&str]) -> Spawned {
        let described = describe_command(ws, args);
        let mut cmd = ws.command(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {described}: {e}"));
        let mut so = child.stdout.take().unwrap();
        let mut se = child.stderr.take().unwrap();
        let out = std::thread::spawn(move || {
            let mut b = Vec::new();
            so.read_to_end(&mut b).ok();
            b
        });
        let err = std::thread::spawn(move || {
            let mut b = Vec::new();
            se.read_to_end(&mut b).ok();
            b
        });
        Spawned {
            child,
            out: Some(out),
            err: Some(err),
            described,
            started,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    fn collect(mut self, status: std::process::ExitStatus) -> Outcome {
        let out = self.out.take().unwrap().join().unwrap();
        let err = self.err.take().unwrap().join().unwrap();
        Outcome {
            command: self.described.clone(),
            code: status.code(),
            stdout: String::from_utf8_lossy(&out).into_owned(),
            stderr: String::from_utf8_lossy(&err).into_owned(),
        }
    }

    /// SIGKILL it if it is still running; its outcome, and whether it was still running.
    pub fn kill(mut self) -> (Outcome, bool) {
        let running = self.child.try_wait().unwrap().is_none();
        if running {
            self.child.kill().ok();
        }
        let status = self.child.wait().unwrap();
        (self.collect(status), running)
    }

    /// Wait for it to exit (killed and the test failed after `timeout`).
    pub fn wait(mut self, timeout: Duration) -> Outcome {
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return self.collect(status);
            }
            if self.started.elapsed() > timeout {
                self.child.kill().ok();
                let status = self.child.wait().unwrap();
                let outcome = self.collect(status);
                panic!("timed out after {timeout:?}\n{}", outcome.describe());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
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

/// What the crash harness compares between a crashed-and-resumed trust and the reference: the
/// schema, and every row of every table except the tracking table, all columns as text, sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// SQLite: sqlite_master (type, name, table, sql). Postgres: information_schema.columns of
    /// the current schema and pg_indexes (name and definition).
    pub schema: Vec<String>,
    /// Table name -> its rows, sorted.
    pub data: BTreeMap<String, Vec<String>>,
}

impl Fingerprint {
    /// What differs between `self` (expected) and `actual`, briefly; empty when equal.
    pub fn diff(&self, actual: &Fingerprint) -> String {
        fn lines_diff(what: &str, expected: &[String], actual: &[String], out: &mut String) {
            let e: std::collections::BTreeSet<&String> = expected.iter().collect();
            let a: std::collections::BTreeSet<&String> = actual.iter().collect();
            let missing: Vec<&&String> = e.difference(&a).take(3).collect();
            let extra: Vec<&&String> = a.difference(&e).take(3).collect();
            if expected != actual {
                let _ = writeln!(
                    out,
                    "  {what}: expected {} rows, found {}; missing e.g. {missing:?}; unexpected e.g. {extra:?}",
                    expected.len(),
                    actual.len()
                );
            }
        }
        let mut out = String::new();
        lines_diff("schema", &self.schema, &actual.schema, &mut out);
        let tables: std::collections::BTreeSet<&String> =
            self.data.keys().chain(actual.data.keys()).collect();
        for t in tables {
            let none = Vec::new();
            lines_diff(
                &format!("table {t}"),
                self.data.get(t).unwrap_or(&none),
                actual.data.get(t).unwrap_or(&none),
                &mut out,
            );
        }
        out
    }
}

/// A trust database as the crash harness checks it after a crash and a resume.
#[derive(Debug, Clone)]
pub struct TrustCheck {
    /// `_flotilla_migrations` versions, ascending.
    pub versions: Vec<i64>,
    /// Distinct versions among them.
    pub distinct_versions: usize,
    /// Tracking rows marked dirty.
    pub dirty: i64,
    /// clinical_note rows with a negative id (the write probe's).
    pub negative_notes: i64,
    /// Schema and data.
    pub fingerprint: Fingerprint,
}

async fn conn_strings(conn: &mut Conn, sql: &str) -> Result<Vec<String>, String> {
    let rows = match conn {
        Conn::Sqlite(c) => sqlx::query(sql)
            .fetch_all(&mut *c)
            .await
            .map(|rows| rows.iter().map(|r| r.try_get::<String, _>(0)).collect()),
        Conn::Pg(c) => sqlx::query(sql)
            .fetch_all(&mut *c)
            .await
            .map(|rows| rows.iter().map(|r| r.try_get::<String, _>(0)).collect()),
    };
    match rows {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) | Err(e) => Err(format!("{sql}: {e}")),
    }
}

async fn conn_close(conn: Conn) {
    match conn {
        Conn::Sqlite(c) => {
            c.close().await.ok();
        }
        Conn::Pg(c) => {
            c.close().await.ok();
        }
    }
}

impl Db {
    async fn try_connect(&self, read_only: bool) -> Result<Conn, String> {
        match self {
            Db::Sqlite(path) => {
                let opts = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(path)
                    .read_only(read_only)
                    .busy_timeout(Duration::from_secs(10))
                    .create_if_missing(false);
                sqlx::SqliteConnection::connect_with(&opts)
                    .await
                    .map(Conn::Sqlite)
                    .map_err(|e| format!("open {}: {e}", path.display()))
            }
            Db::Postgres(url) => sqlx::PgConnection::connect(url)
                .await
                .map(Conn::Pg)
                .map_err(|e| format!("connect {url}: {e}")),
        }
    }

    /// First column (text) of every row of each query, on one read-write connection (SQLite:
    /// opening it rolls a hot journal back, like any writer would); an error instead of a
    /// panic.
    pub fn try_query_rw(&self, sqls: &[&str]) -> Result<Vec<Vec<String>>, String> {
        block_on(async {
            let mut conn = self.try_connect(false).await?;
            let mut out = Vec::new();
            for sql in sqls {
                match conn_strings(&mut conn, sql).await {
                    Ok(v) => out.push(v),
                    Err(e) => {
                        conn_close(conn).await;
                        return Err(e);
                    }
                }
            }
            conn_close(conn).await;
            Ok(out)
        })
    }

    /// Everything the crash harness checks on a trust, read on one read-only connection.
    pub fn crash_check(&self) -> Result<TrustCheck, String> {
        let sqlite = matches!(self, Db::Sqlite(_));
        block_on(async {
            let mut conn = self.try_connect(true).await?;
            let result = async {
                let mut versions: Vec<i64> = conn_strings(
                    &mut conn,
                    "SELECT CAST(version AS TEXT) FROM _flotilla_migrations",
                )
                .await?
                .iter()
                .map(|v| v.parse().unwrap())
                .collect();
                versions.sort();
                let distinct_versions = versions
                    .iter()
                    .collect::<std::collections::BTreeSet<_>>()
                    .len();
                let one = |v: Vec<String>| v.first().map_or(-1, |s| s.parse().unwrap_or(-1));
                let dirty = one(conn_strings(
                    &mut conn,
                    "SELECT CAST(count(*) AS TEXT) FROM _flotilla_migrations WHERE dirty",
                )
                .await?);
                let negative_notes = one(conn_strings(
                    &mut conn,
                    "SELECT CAST(count(*) AS TEXT) FROM clinical_note WHERE id < 0",
                )
                .await?);
                let (schema_sql, tables_sql) = if sqlite {
                    (
                        vec![
                            "SELECT type || '|' || name || '|' || tbl_name || '|' || COALESCE(sql, '') \
                             FROM sqlite_master",
                        ],
                        "SELECT name FROM sqlite_master WHERE type = 'table' \
                         AND name NOT LIKE 'sqlite%' AND name <> '_flotilla_migrations'",
                    )
                } else {
                    (
                        vec![
                            "SELECT 'column|' || table_name || '|' || column_name || '|' \
                             || ordinal_position::text || '|' || data_type || '|' || is_nullable \
                             || '|' || COALESCE(column_default, '') \
                             FROM information_schema.columns WHERE table_schema = current_schema()",
                            "SELECT 'index|' || tablename || '|' || indexname || '|' || indexdef \
                             FROM pg_indexes WHERE schemaname = current_schema()",
                        ],
                        "SELECT table_name::text FROM information_schema.tables \
                         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
                         AND table_name <> '_flotilla_migrations'",
                    )
                };
                let mut schema = Vec::new();
                for q in schema_sql {
                    schema.extend(conn_strings(&mut conn, q).await?);
                }
                schema.sort();
                let mut data = BTreeMap::new();
                for table in conn_strings(&mut conn, tables_sql).await? {
                    let select = if sqlite {
                        let columns = conn_strings(
                            &mut conn,
                            &format!("SELECT name FROM pragma_table_info('{table}') ORDER BY cid"),
                        )
                        .await?;
                        let cols: Vec<String> =
                            columns.iter().map(|c| format!("quote(\"{c}\")")).collect();
                        format!("SELECT {} FROM \"{table}\"", cols.join(" || '|' || "))
                    } else {
                        format!("SELECT t::text FROM \"{table}\" t")
                    };
                    let mut rows = conn_strings(&mut conn, &select).await?;
                    rows.sort();
                    data.insert(table, rows);
                }
                Ok::<_, String>(TrustCheck {
                    versions,
                    distinct_versions,
                    dirty,
                    negative_notes,
                    fingerprint: Fingerprint { schema, data },
                })
            }
            .await;
            conn_close(conn).await;
            result
        })
    }
}

impl Db {
    /// Run `sql` (one integer, as text) over and over on one connection, opened read-write as
    /// soon as the database exists, until it returns at least `at_least` (true), or `stop`
    /// says to give up or `deadline` passes (false). For watching a running flotilla's state
    /// database.
    pub fn wait_for_count(
        &self,
        sql: &str,
        at_least: i64,
        deadline: Instant,
        mut stop: impl FnMut() -> bool,
    ) -> bool {
        block_on(async {
            let mut conn = None;
            let mut reached = false;
            while !stop() && Instant::now() < deadline {
                if conn.is_none() {
                    conn = self.try_connect(false).await.ok();
                }
                if let Some(c) = conn.as_mut() {
                    if let Ok(v) = conn_strings(c, sql).await {
                        if v.first().and_then(|s| s.parse::<i64>().ok()) >= Some(at_least) {
                            reached = true;
                            break;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            if let Some(c) = conn {
                conn_close(c).await;
            }
            reached
        })
    }
}
