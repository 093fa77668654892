//! The crash harness: SIGKILL `flotilla rollout` at seeded-random moments, recover with
//! `flotilla resume --yes` (or a fresh `rollout --yes` when the kill came before the run was
//! recorded), and check that every trust ends exactly where an uninterrupted rollout leaves it:
//! same tracking rows, same schema, same data (no write-probe row left behind), and a journal
//! that agrees with the databases.
//!
//! The Postgres test keeps flotilla's state database on Postgres too (`--state postgres://`),
//! so both state stores are crashed.
//!
//! `FLOTILLA_CRASH_POINTS` (default 10 per dialect) and `FLOTILLA_CRASH_SEED` (default: from
//! the time; always printed) control the kill points, e.g.
//! `FLOTILLA_CRASH_SEED=1234 scripts/test --test it -- crash:: --nocapture`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::*;

const PLAN: &str = "plans/rio-5.1.yaml";
/// Every wave of the plan has work: pilot (camden, islington), first-twelve (barnet, bexley),
/// london (brent, greenwich), south (kent-community).
const ESTATE: &[&str] = &[
    "camden",
    "islington",
    "barnet",
    "bexley",
    "brent",
    "greenwich",
    "kent-community",
];
const PATIENTS: &str = "100";
const DEFAULT_POINTS: usize = 10;
/// Aimed points kill up to this long after a trust's intent is recorded: about as long as its
/// migrations take.
const AIMED_DELAY_MS: u64 = 40;
/// How many times recovery may meet "locked" (6) or "interrupted" (8) before it is a failure.
const RECOVERY_ATTEMPTS: usize = 4;

/// Keep each point short: one quick soak round, fewer latency samples and 10 writes per window
/// instead of the 90 the plan's max_loss_rate asks for after each upgrade (the gate still runs
/// in full, a window's writes are still a range of records a kill can leave behind; this
/// harness is about crashes, not latency or loss rates).
fn quicken(ws: &Workspace) {
    ws.replace(
        PLAN,
        "soak: { rounds: 2, interval: 1s }",
        "soak: { rounds: 1, interval: 100ms }",
    );
    ws.edit(PLAN, |s| s.replace("samples: 40", "samples: 10"));
    ws.replace(PLAN, "    max_loss_rate: 5%\n", "    samples: 10\n");
}

enum Backend {
    Sqlite,
    Postgres {
        dbs: PgDatabases,
        /// The state database (Postgres too: `--state postgres://...`).
        state_name: String,
        /// Its URL for flotilla (no password: that goes in FLOTILLA_STATE_PASSWORD).
        state_url: String,
    },
}

struct Harness {
    dialect: &'static str,
    ws: Workspace,
    backend: Backend,
    ids: Vec<String>,
}

/// What a kill left behind, seen before recovery (from copies for SQLite, so the harness
/// never touches what flotilla will open).
#[derive(Debug, Default)]
struct AfterKill {
    run_recorded: bool,
    /// A recorded run did not complete: `resume` must find it.
    run_unfinished: bool,
    open_migrate: usize,
    open_probe: usize,
    journals_left: usize,
    probe_rows: i64,
    dirty_rows: i64,
}

#[derive(Debug, Default)]
struct Recovery {
    fresh_rollout: bool,
    retries: usize,
}

impl Harness {
    fn sqlite() -> Harness {
        let ws = Workspace::new();
        ws.keep_trusts(ESTATE);
        quicken(&ws);
        ws.run(&["demo", "--seed-only", "--patients", PATIENTS])
            .success();
        copy_tree(&ws.path("estate"), &ws.path("seed-estate"));
        Harness {
            dialect: "sqlite",
            ids: ws.trust_ids(),
            ws,
            backend: Backend::Sqlite,
        }
    }

    fn postgres() -> Harness {
        let mut ws = Workspace::new();
        ws.keep_trusts(ESTATE);
        quicken(&ws);
        let ids: Vec<String> = ESTATE.iter().map(|s| s.to_string()).collect();
        let dbs = create_databases("crash", &ids);
        ws.write_pg_inventory(&dbs);
        let state_name = format!("{}_state", dbs.prefix);
        let (admin_no_pw, pw) = split_password(&dbs.admin_url);
        if let Some(pw) = pw {
            ws.set_env("FLOTILLA_STATE_PASSWORD", &pw);
        }
        let state_url = url_with_db(&admin_no_pw, &state_name);
        ws.run(&["demo", "--seed-only", "--patients", PATIENTS])
            .success();
        // The seeded databases become templates: each point starts from an exact copy.
        let _serial = serial();
        pg_admin_exec(
            &dbs.names
                .values()
                .map(|n| format!("CREATE DATABASE \"{n}_seed\" TEMPLATE \"{n}\""))
                .collect::<Vec<_>>(),
        );
        Harness {
            dialect: "postgres",
            ids: ws.trust_ids(),
            ws,
            backend: Backend::Postgres {
                dbs,
                state_name,
                state_url,
            },
        }
    }

    /// `args` with `--state URL` first for Postgres.
    fn args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut v = Vec::new();
        if let Backend::Postgres { state_url, .. } = &self.backend {
            v.extend(["--state", state_url.as_str()]);
        }
        v.extend_from_slice(args);
        v
    }

    /// The seeded estate again, and no state database.
    fn restore(&self) {
        let flotilla = self.ws.path(".flotilla");
        if flotilla.exists() {
            std::fs::remove_dir_all(&flotilla).unwrap();
        }
        match &self.backend {
            Backend::Sqlite => {
                std::fs::remove_dir_all(self.ws.path("estate")).unwrap();
                copy_tree(&self.ws.path("seed-estate"), &self.ws.path("estate"));
            }
            Backend::Postgres {
                dbs, state_name, ..
            } => {
                let mut statements = Vec::new();
                for n in dbs.names.values() {
                    statements.push(format!("DROP DATABASE IF EXISTS \"{n}\" WITH (FORCE)"));
                    statements.push(format!("CREATE DATABASE \"{n}\" TEMPLATE \"{n}_seed\""));
                }
                statements.push(format!(
                    "DROP DATABASE IF EXISTS \"{state_name}\" WITH (FORCE)"
                ));
                statements.push(format!("CREATE DATABASE \"{state_name}\""));
                pg_admin_exec(&statements);
            }
        }
    }

    /// flotilla's state database, for checks.
    fn state_db(&self) -> Db {
        match &self.backend {
            Backend::Sqlite => Db::Sqlite(self.ws.path(".flotilla/state.db")),
            Backend::Postgres {
                dbs, state_name, ..
            } => Db::Postgres(url_with_db(&dbs.admin_url, state_name)),
        }
    }

    /// Read the state database and the trusts as the kill left them. SQLite files are copied
    /// first and the copies opened (read-write, so a hot journal is rolled back in the copy):
    /// the originals stay exactly as the killed process left them for `resume`.
    fn after_kill(&self) -> AfterKill {
        let mut seen = AfterKill::default();
        let scratch = tempfile::tempdir().unwrap();
        let copy = |stem: &str, dir: PathBuf| -> Option<Db> {
            let mut main = None;
            for e in std::fs::read_dir(&dir).ok()? {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                if name.starts_with(stem) && !name.ends_with(".flotilla-lock") {
                    std::fs::copy(dir.join(&name), scratch.path().join(&name)).unwrap();
                    if name == stem {
                        main = Some(Db::Sqlite(scratch.path().join(&name)));
                    }
                }
            }
            main
        };
        let state = match &self.backend {
            Backend::Sqlite => copy("state.db", self.ws.path(".flotilla")),
            Backend::Postgres { .. } => Some(self.state_db()),
        };
        if let Some(state) = state {
            if let Ok(r) = state.try_query_rw(&[
                "SELECT status FROM flotilla_runs",
                "SELECT kind FROM flotilla_steps WHERE state = 'started'",
            ]) {
                seen.run_recorded = !r[0].is_empty();
                seen.run_unfinished = r[0].iter().any(|s| s != "completed");
                // A trust's intent ('upgrade') or, from older journals, one migration.
                seen.open_migrate = r[1]
                    .iter()
                    .filter(|k| *k == "migrate" || *k == "upgrade")
                    .count();
                seen.open_probe = r[1].iter().filter(|k| *k == "write-probe").count();
            }
        }
        for id in &self.ids {
            let db = match &self.backend {
                Backend::Sqlite => {
                    let journal = self.ws.path(format!("estate/{id}.db-journal"));
                    if std::fs::metadata(&journal).is_ok_and(|m| m.len() > 0) {
                        seen.journals_left += 1;
                    }
                    copy(&format!("{id}.db"), self.ws.path("estate"))
                }
                Backend::Postgres { dbs, .. } => Some(dbs.db(id)),
            };
            let Some(db) = db else { continue };
            if let Ok(r) = db.try_query_rw(&[
                "SELECT CAST(count(*) AS TEXT) FROM clinical_note WHERE id < 0",
                "SELECT CAST(count(*) AS TEXT) FROM _flotilla_migrations WHERE dirty",
            ]) {
                seen.probe_rows += r[0][0].parse::<i64>().unwrap_or(0);
                seen.dirty_rows += r[1][0].parse::<i64>().unwrap_or(0);
            }
        }
        seen
    }

    /// `resume --yes` until it completes; `rollout --yes` when there is no run to resume (the
    /// kill came before the run was recorded, or after it completed: never when `seen` shows
    /// an unfinished run). Locked (6) and interrupted (8) are retried a few times.
    fn recover(&self, seen: &AfterKill) -> Result<Recovery, String> {
        let mut r = Recovery::default();
        let mut log = String::new();
        for _ in 0..RECOVERY_ATTEMPTS {
            let resume = run_unlocked(&self.ws, &self.args(&["resume", "--yes"]));
            let out = if resume.code == Some(2) && resume.stderr.contains("no run to resume") {
                if seen.run_unfinished && !r.fresh_rollout {
                    return Err(format!(
                        "the killed run was recorded unfinished, but resume found no run to resume\n{}",
                        resume.describe()
                    ));
                }
                r.fresh_rollout = true;
                run_unlocked(&self.ws, &self.args(&["rollout", PLAN, "--yes"]))
            } else {
                resume
            };
            if out.stderr.contains("panicked at") {
                return Err(format!("flotilla panicked\n{log}{}", out.describe()));
            }
            match out.code {
                Some(0) => return Ok(r),
                Some(6) | Some(8) => {
                    r.retries += 1;
                    log.push_str(&out.describe());
                    log.push('\n');
                    std::thread::sleep(Duration::from_millis(300));
                }
                _ => return Err(format!("recovery failed\n{log}{}", out.describe())),
            }
        }
        Err(format!(
            "recovery did not complete after {RECOVERY_ATTEMPTS} attempts\n{log}"
        ))
    }

    /// Every trust's check, by id.
    fn check_trusts(&self) -> Result<BTreeMap<String, TrustCheck>, String> {
        let mut out = BTreeMap::new();
        for id in &self.ids {
            let check = self
                .ws
                .db(id)
                .crash_check()
                .map_err(|e| format!("{id}: {e}"))?;
            out.insert(id.clone(), check);
        }
        Ok(out)
    }

    /// The estate and the journal after recovery, against the reference.
    fn verify(&self, reference: &BTreeMap<String, Fingerprint>) -> Result<(), String> {
        let target = release_version("5.1");
        let seeded = release_version("5.0");
        let expected_versions = versions_through(target);
        let mut problems = Vec::new();
        let checks = self.check_trusts()?;
        for (id, c) in &checks {
            if c.versions != expected_versions {
                problems.push(format!(
                    "{id}: tracking table has versions {:?}, expected {expected_versions:?}",
                    c.versions
                ));
            }
            if c.distinct_versions != c.versions.len() {
                problems.push(format!("{id}: duplicate tracking rows {:?}", c.versions));
            }
            if c.dirty != 0 {
                problems.push(format!("{id}: {} dirty tracking rows", c.dirty));
            }
            if c.negative_notes != 0 {
                problems.push(format!(
                    "{id}: {} write-probe rows (clinical_note id < 0) left behind",
                    c.negative_notes
                ));
            }
            let diff = reference[id].diff(&c.fingerprint);
            if !diff.is_empty() {
                problems.push(format!(
                    "{id}: schema or data differ from the uninterrupted rollout:\n{diff}"
                ));
            }
        }

        // The journal agrees with the databases.
        let state = self.state_db();
        let r = state.try_query_rw(&[
            "SELECT trust || '|' || kind || '|' || COALESCE(CAST(version AS TEXT), '') || '|' || state \
             || '|' || COALESCE(detail, '') FROM flotilla_steps ORDER BY run_id, seq",
            "SELECT run_id || '|' || status FROM flotilla_runs",
            "SELECT run_id || '|' || host || '|' || CAST(pid AS TEXT) FROM flotilla_lease",
        ])?;
        let (steps, runs, lease) = (&r[0], &r[1], &r[2]);
        if runs.is_empty() || runs.iter().any(|r| !r.ends_with("|completed")) {
            problems.push(format!("runs are not all completed: {runs:?}"));
        }
        if !lease.is_empty() {
            problems.push(format!("the lease was not released: {lease:?}"));
        }
        let mut done: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        for s in steps {
            let f: Vec<&str> = s.splitn(5, '|').collect();
            let (trust, kind, version, state) = (f[0], f[1], f[2], f[3]);
            if state == "started" {
                problems.push(format!("journal step left 'started': {s}"));
            }
            if kind == "revert" || kind == "rollback" {
                problems.push(format!(
                    "unexpected {kind} step (no fault was injected): {s}"
                ));
            }
            if kind == "migrate" && state == "done" {
                done.entry(trust)
                    .or_default()
                    .push(version.parse().unwrap());
            }
        }
        for (id, c) in &checks {
            let done = done.get(id.as_str()).cloned().unwrap_or_default();
            let set: BTreeSet<i64> = done.iter().copied().collect();
            if set.len() != done.len() {
                let mine: Vec<&String> = steps
                    .iter()
                    .filter(|s| s.starts_with(&format!("{id}|migrate|")))
                    .collect();
                problems.push(format!(
                    "{id}: a migration has more than one 'done' step: {done:?}; its migrate steps (trust|kind|version|state|detail): {mine:#?}"
                ));
            }
            let mut journal: BTreeSet<i64> = versions_through(seeded).into_iter().collect();
            if let Some(v) = set.iter().find(|v| journal.contains(v)) {
                problems.push(format!(
                    "{id}: 'done' step for version {v}, applied before the run"
                ));
            }
            journal.extend(set);
            let applied: BTreeSet<i64> = c.versions.iter().copied().collect();
            if journal != applied {
                problems.push(format!(
                    "{id}: journal says {journal:?} (seed + 'done' migrate steps), tracking table says {applied:?}"
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }
}

fn crash_points(h: Harness) {
    let start = Instant::now();
    let points: usize = env_or("FLOTILLA_CRASH_POINTS", DEFAULT_POINTS);
    let seed = crash_seed();
    let mut rng = SplitMix64::new(
        seed ^ h
            .dialect
            .bytes()
            .fold(0u64, |a, b| a.rotate_left(8) ^ u64::from(b)),
    );
    let tag = format!("[crash {}]", h.dialect);
    println!(
        "{tag} seed {seed}, {points} points (replay: FLOTILLA_CRASH_SEED={seed} FLOTILLA_CRASH_POINTS={points})"
    );

    // The reference: an uninterrupted rollout of the seeded estate.
    let (reference, duration_ms, migrations) = {
        let _serial = serial();
        h.restore();
        let run = Spawned::start(&h.ws, &h.args(&["rollout", PLAN, "--yes"]));
        let started = run.started;
        let out = run.wait(Duration::from_secs(300));
        let duration_ms = started.elapsed().as_millis() as u64;
        out.success();
        let checks = h
            .check_trusts()
            .unwrap_or_else(|e| panic!("{tag} reference: {e}"));
        let target = versions_through(release_version("5.1"));
        for (id, c) in &checks {
            assert_eq!(c.versions, target, "{tag} reference rollout: {id}");
            assert_eq!(c.negative_notes, 0, "{tag} reference rollout: {id}");
            assert!(
                c.fingerprint
                    .data
                    .get("patient")
                    .is_some_and(|p| !p.is_empty()),
                "{tag} reference: {id} has no patients: the comparison would prove nothing"
            );
        }
        let steps = h
            .state_db()
            .try_query_rw(&[
                "SELECT run_id FROM flotilla_steps WHERE kind = 'migrate'",
                "SELECT run_id FROM flotilla_steps WHERE kind = 'upgrade'",
            ])
            .unwrap_or_else(|e| panic!("{tag} reference journal: {e}"));
        let migrations = steps[0].len() as u64;
        assert_eq!(
            steps[1].len(),
            ESTATE.len(),
            "{tag} reference journal: one intent ('upgrade' step) per trust"
        );
        assert_eq!(
            migrations,
            (ESTATE.len()
                * (versions_through(release_version("5.1")).len()
                    - versions_through(release_version("5.0")).len())) as u64,
            "{tag} reference journal: migrate steps"
        );
        let reference: BTreeMap<String, Fingerprint> = checks
            .into_iter()
            .map(|(id, c)| (id, c.fingerprint))
            .collect();
        (reference, duration_ms, migrations)
    };
    println!("{tag} reference rollout: {duration_ms} ms, {migrations} migrations");

    let mut delays = Vec::new();
    let mut failures = Vec::new();
    let (mut resumed, mut fresh, mut before_kill, mut retries) = (0, 0, 0, 0);
    let (mut open_migrate, mut open_probe, mut probe_rows, mut journals_left, mut dirty) =
        (0, 0, 0, 0, 0);
    for i in 1..=points {
        // Odd points: a delay drawn uniformly from [0, reference duration]. Even points: aimed
        // at a trust's migrations (most of a rollout is health checks; a trust's migrations
        // take milliseconds): kill a few milliseconds after the journal shows the k-th trust's
        // intent (its planned migrations, recorded before the first runs), k drawn at random:
        // before its first migration, between two, or after its outcome.
        let aimed = i % 2 == 0;
        let intents = ESTATE.len() as u64;
        let (delay, k) = if aimed {
            (rng.up_to(AIMED_DELAY_MS), 1 + rng.up_to(intents - 1))
        } else {
            (rng.up_to(duration_ms), 0)
        };
        let point_start = Instant::now();
        let _serial = serial();
        h.restore();
        let mut run = Spawned::start(&h.ws, &h.args(&["rollout", PLAN, "--yes"]));
        let started = run.started;
        if aimed {
            h.state_db().wait_for_count(
                "SELECT CAST(count(*) AS TEXT) FROM flotilla_steps WHERE kind = 'upgrade'",
                k as i64,
                started + Duration::from_millis(duration_ms * 3),
                || run.exited(),
            );
        }
        let deadline = Instant::now() + Duration::from_millis(delay);
        while Instant::now() < deadline && !run.exited() {
            std::thread::sleep(
                deadline
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(1)),
            );
        }
        let delay = started.elapsed().as_millis() as u64;
        delays.push(delay);
        let (first, killed) = run.kill();
        let aim = if aimed {
            format!(" (aimed at trust {k} of {intents})")
        } else {
            String::new()
        };
        let context = format!("point {i}/{points} (kill at {delay} ms{aim}, seed {seed})");
        let line = if !killed {
            before_kill += 1;
            if first.code == Some(0) {
                match h.verify(&reference) {
                    Ok(()) => "finished before the kill; ok".to_string(),
                    Err(e) => {
                        failures.push(format!("{context}: {e}"));
                        "finished before the kill; FAILED".to_string()
                    }
                }
            } else {
                failures.push(format!(
                    "{context}: the rollout exited by itself, not with success\n{}",
                    first.describe()
                ));
                "exited by itself; FAILED".to_string()
            }
        } else {
            let seen = h.after_kill();
            open_migrate += usize::from(seen.open_migrate > 0);
            open_probe += usize::from(seen.open_probe > 0);
            probe_rows += usize::from(seen.probe_rows > 0);
            journals_left += usize::from(seen.journals_left > 0);
            dirty += usize::from(seen.dirty_rows > 0);
            let recovered = h.recover(&seen);
            let how = match &recovered {
                Ok(r) if r.fresh_rollout => {
                    fresh += 1;
                    "fresh rollout"
                }
                Ok(_) => {
                    resumed += 1;
                    "resume"
                }
                Err(_) => "recovery",
            };
            if let Ok(r) = &recovered {
                retries += r.retries;
            }
            let result = recovered.and_then(|_| h.verify(&reference));
            let status = match &result {
                Ok(()) => "ok".to_string(),
                Err(e) => {
                    failures.push(format!(
                        "{context}: after the kill: {seen:?}\n{e}\n--- the killed rollout ---\n{}",
                        first.describe()
                    ));
                    "FAILED".to_string()
                }
            };
            format!(
                "run recorded: {}, open steps: {} migrate / {} write-probe, rollback journals left {}, probe rows {}, dirty rows {} -> {how}: {status}",
                if seen.run_recorded { "yes" } else { "no" },
                seen.open_migrate,
                seen.open_probe,
                seen.journals_left,
                seen.probe_rows,
                seen.dirty_rows,
            )
        };
        println!(
            "{tag} point {i}/{points}: kill at {delay} ms{aim}: {line} ({:.1} s)",
            point_start.elapsed().as_secs_f64()
        );
    }

    // Written to the process's stderr directly, not through `println!`, so that the harness's
    // count, seed and outcome show in CI output even when the test passes (the test harness
    // captures only the print macros).
    let _ = writeln!(
        std::io::stderr(),
        "{tag} SUMMARY dialect={} points={points} seed={seed} reference={duration_ms}ms \
         kill_delays_ms={delays:?} resumed={resumed} fresh_rollout={fresh} finished_before_kill={before_kill} \
         retries={retries} killed_with_open_migrate_step={open_migrate} killed_with_open_write_probe={open_probe} \
         probe_rows_left={probe_rows} journals_left={journals_left} dirty_rows={dirty} failures={} total={:.1}s",
        h.dialect,
        failures.len(),
        start.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{tag} {} of {points} crash points failed (replay: FLOTILLA_CRASH_SEED={seed} FLOTILLA_CRASH_POINTS={points}):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn sqlite_rollout_killed_at_random_points_resumes_to_the_same_estate() {
    crash_points(Harness::sqlite());
}

#[test]
fn postgres_rollout_killed_at_random_points_resumes_to_the_same_estate() {
    crash_points(Harness::postgres());
}

// The crash windows of a trust's journal intent, hit on purpose. A trust's planned migrations
// are recorded (`trust_started`, an open `upgrade` step) before the first runs, and the
// migrations' own events only with its outcome: a kill in between leaves the intent alone, and
// the tracking table says what was applied. A slow migration holds flotilla in the window
// while the test kills it; `resume` and `abandon` must settle the intent from the tracking
// table, recording each applied migration once.

const WINDOW_TRUST: &str = "camden";
const WINDOW_PLAN: &str = "plans/window.yaml";

/// How the window test recovers from the kill.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Settle {
    Resume,
    Abandon,
}

/// One trust at 5.1 and three migrations after it (`added`); the `slow`-th of them (0-based)
/// takes seconds. Postgres when `pg`.
fn window_estate(pg: bool, slow: usize) -> (Workspace, Vec<i64>) {
    let mut ws = Workspace::new();
    ws.keep_trusts(&[WINDOW_TRUST]);
    if pg {
        let dbs = create_databases("window", &[WINDOW_TRUST.to_string()]);
        ws.write_pg_inventory(&dbs);
    }
    ws.run(&["demo", "--seed-only", "--patients", "20"])
        .success();
    let trusts = vec![WINDOW_TRUST.to_string()];
    ws.write_target_plan(
        "to-5.1.yaml",
        release_version("5.1"),
        &[("all", trusts.clone())],
    );
    ws.run(&["rollout", "plans/to-5.1.yaml", "--yes"]).success();
    let slow_sql = if pg {
        "SELECT pg_sleep(4);"
    } else {
        // No sleep in SQLite: a few seconds of counting.
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 8000000) SELECT count(*) FROM c;"
    };
    let (first, _) = next_version();
    let mut added = Vec::new();
    for i in 0..3 {
        let v = first + i as i64;
        let stem = format!("{}_window_{i}", version_prefix(v));
        let mut up = format!("CREATE TABLE window_{i} (id INTEGER PRIMARY KEY);\n");
        if i == slow {
            up.push_str(slow_sql);
            up.push('\n');
        }
        ws.write(format!("migrations/{stem}.up.sql"), up);
        ws.write(
            format!("migrations/{stem}.down.sql"),
            format!("DROP TABLE window_{i};\n"),
        );
        added.push(v);
    }
    ws.write_target_plan("window.yaml", *added.last().unwrap(), &[("all", trusts)]);
    (ws, added)
}

/// Roll out `WINDOW_PLAN`, kill flotilla once the journal holds the trust's intent and
/// `committed` of the added migrations are in its tracking table (the next one is the slow
/// one), check what the kill left, recover with `how`, and check that the intent was settled
/// from the tracking table.
fn crash_in_window(pg: bool, committed: usize, how: Settle) {
    let (ws, added) = window_estate(pg, committed);
    let state = Db::Sqlite(ws.path(".flotilla/state.db"));
    let trust = ws.db(WINDOW_TRUST);
    let before = trust.applied_versions();
    let context = format!("pg={pg} committed={committed} {how:?}");
    let _serial = serial();
    let mut run = Spawned::start(&ws, &["rollout", WINDOW_PLAN, "--yes"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    assert!(
        state.wait_for_count(
            "SELECT CAST(count(*) AS TEXT) FROM flotilla_steps WHERE kind = 'upgrade' AND state = 'started'",
            1,
            deadline,
            || run.exited()
        ),
        "{context}: the intent was never recorded"
    );
    assert!(
        trust.wait_for_count(
            "SELECT CAST(count(*) AS TEXT) FROM _flotilla_migrations",
            (before.len() + committed) as i64,
            deadline,
            || run.exited()
        ),
        "{context}: the migrations before the slow one were never committed"
    );
    let (first, killed) = run.kill();
    assert!(
        killed,
        "{context}: the rollout ended before the kill\n{}",
        first.describe()
    );

    // What the kill left: the intent, and nothing of the migrations in the journal.
    let r = state
        .try_query_rw(&[
            "SELECT run_id FROM flotilla_runs WHERE status = 'running'",
            "SELECT kind || '|' || COALESCE(CAST(version AS TEXT), '') FROM flotilla_steps WHERE state = 'started'",
            "SELECT body FROM flotilla_events WHERE event = 'trust_started' ORDER BY run_id DESC, seq DESC LIMIT 1",
        ])
        .unwrap();
    assert_eq!(r[0].len(), 1, "{context}: one crashed run: {r:?}");
    let run_id = r[0][0].clone();
    assert_eq!(
        r[1],
        vec![format!("upgrade|{}", added.last().unwrap())],
        "{context}: the intent is the only open step"
    );
    let intent: serde_json::Value = serde_json::from_str(&r[2][0]).unwrap();
    assert_eq!(
        intent["planned"],
        serde_json::json!(added),
        "{context}: {intent}"
    );
    let runs_events = |event: &str| {
        state
            .try_query_rw(&[&format!(
                "SELECT CAST(json_extract(body, '$.version') AS TEXT) FROM flotilla_events \
                 WHERE run_id = '{run_id}' AND event = '{event}' ORDER BY seq"
            )])
            .unwrap()
            .remove(0)
    };
    assert!(
        runs_events("migration_started").is_empty(),
        "{context}: a migration's start was journalled before the outcome"
    );

    let out = match how {
        Settle::Resume => run_unlocked(&ws, &["resume", "--yes"]),
        Settle::Abandon => {
            run_unlocked(&ws, &["abandon", &run_id, "--reason", "crash window test"])
        }
    };
    out.success();
    let applied = trust.applied_versions();
    let expect_applied: Vec<i64> = match how {
        Settle::Resume => before.iter().chain(&added).copied().collect(),
        Settle::Abandon => before.iter().chain(&added[..committed]).copied().collect(),
    };
    assert_eq!(applied, expect_applied, "{context}\n{}", out.describe());

    // The journal agrees: every added migration the tracking table holds has exactly one
    // `migration_applied` and one 'done' migrate step in the run, and nothing is left open.
    let steps = state
        .try_query_rw(&[&format!(
            "SELECT kind || '|' || COALESCE(CAST(version AS TEXT), '') || '|' || state || '|' || COALESCE(detail, '') \
             FROM flotilla_steps WHERE run_id = '{run_id}' ORDER BY seq"
        )])
        .unwrap()
        .remove(0);
    assert!(
        !steps.iter().any(|s| s.contains("|started|")),
        "{context}: steps left open: {steps:#?}"
    );
    let in_tracking: Vec<i64> = added
        .iter()
        .copied()
        .filter(|v| applied.contains(v))
        .collect();
    let done: Vec<i64> = steps
        .iter()
        .filter(|s| s.starts_with("migrate|") && s.contains("|done|"))
        .map(|s| s.split('|').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        done, in_tracking,
        "{context}: 'done' migrate steps: {steps:#?}"
    );
    let applied_events: Vec<i64> = runs_events("migration_applied")
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(
        applied_events, in_tracking,
        "{context}: migration_applied events"
    );
    let settled = format!(
        "upgrade|{}|{}|settled from the trust's tracking table: {committed} of 3 planned migration(s) applied",
        added.last().unwrap(),
        if committed == 3 { "done" } else { "interrupted" }
    );
    assert!(
        steps.contains(&settled),
        "{context}: the intent settled as {settled:?}: {steps:#?}"
    );
    let status = state
        .try_query_rw(&[&format!(
            "SELECT status FROM flotilla_runs WHERE run_id = '{run_id}'"
        )])
        .unwrap()
        .remove(0);
    let expect_status = match how {
        Settle::Resume => "completed",
        Settle::Abandon => "abandoned",
    };
    assert_eq!(status, vec![expect_status.to_string()], "{context}");
}

#[test]
fn sqlite_kill_after_the_intent_before_any_migration_resumes_from_the_tracking_table() {
    crash_in_window(false, 0, Settle::Resume);
}

#[test]
fn sqlite_kill_after_some_migrations_committed_resumes_recording_each_once() {
    crash_in_window(false, 2, Settle::Resume);
}

#[test]
fn sqlite_kill_after_some_migrations_committed_is_abandoned_with_them_settled() {
    crash_in_window(false, 2, Settle::Abandon);
}

#[test]
fn postgres_kill_after_the_intent_before_any_migration_is_abandoned_cleanly() {
    crash_in_window(true, 0, Settle::Abandon);
}

#[test]
fn postgres_kill_after_some_migrations_committed_resumes_recording_each_once() {
    crash_in_window(true, 2, Settle::Resume);
}
