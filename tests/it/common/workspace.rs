//! [`Workspace`]: a temporary copy of the repository's configuration that tests edit and run
//! the real `flotilla` binary in ([`Workspace::run`], [`Spawned`] for a run in the background),
//! capturing each run as an [`Outcome`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{
    catalog_versions, migration_name, next_version, parse_yaml, repo_root, serial, split_password,
    to_yaml, url_with_db, with_password, Db, Outcome, PgDatabases, BIN, PG_PASSWORD_ENV,
};

/// How long one flotilla invocation may take before the test fails (it is killed).
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

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
        copy_tree(&root.join("plans"), &dir.path().join("plans"));
        copy_tree(&root.join("migrations"), &dir.path().join("migrations"));
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
        run_unlocked(self, args)
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

/// Copy a directory tree (`to` is created).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display())) {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
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
