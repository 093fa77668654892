//! Rollouts on workers (`flotilla worker` processes and a coordinator, `rollout --workers`,
//! sharing a Postgres state database): the demo plan on 56 Postgres trusts spread over three
//! workers, runner labels (a trust only one worker can reach; a wave no live worker can reach),
//! and a crash harness that kills workers (and sometimes the coordinator) at seeded-random
//! moments.
//!
//! `FLOTILLA_WORKER_CRASH_POINTS` (default 2) and `FLOTILLA_WORKER_CRASH_SEED` (default: from
//! the time; always printed) control the harness, e.g.
//! `FLOTILLA_WORKER_CRASH_SEED=1234 FLOTILLA_WORKER_CRASH_POINTS=10 scripts/test --test it -- workers::crash --nocapture`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

const PLAN: &str = "plans/rio-5.1.yaml";
/// How long a coordinator may take (it is killed and the test fails after this).
const COORDINATOR_TIMEOUT: Duration = Duration::from_secs(300);

/// One short soak round instead of two a second apart, and workload windows held open 200 ms
/// instead of 2 s: the gate still runs in full, in a fraction of the time.
fn short_soak(ws: &Workspace) {
    ws.replace(
        PLAN,
        "soak: { rounds: 2, interval: 1s }",
        "soak: { rounds: 1, interval: 100ms }",
    );
    ws.replace(
        PLAN,
        "\nhealth:\n",
        "\nhealth:\n  workload: { min_window: 200ms }\n",
    );
}

/// The worker named in an event's body (`"worker": NAME`).
fn worker_of(body: &Value) -> Option<&str> {
    body["worker"].as_str()
}

/// trust -> the worker named by its `trust_finished` events (one each expected).
fn finished_by(estate: &PgEstate) -> BTreeMap<String, Vec<(String, String)>> {
    let mut by: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (trust, body) in estate.trust_finished() {
        by.entry(trust).or_default().push((
            body["status"].as_str().unwrap_or("?").to_string(),
            worker_of(&body).unwrap_or("").to_string(),
        ));
    }
    by
}

#[test]
fn workers_need_a_shared_postgres_state_database() {
    let ws = Workspace::new();
    let message = "workers need a shared PostgreSQL state database: pass --state postgres://";
    ws.run(&["worker", "--name", "w1"])
        .code(2)
        .stderr_contains(message);
    ws.run(&["rollout", PLAN, "--workers", "--yes"])
        .code(2)
        .stderr_contains(message);
    assert!(
        !ws.exists(".flotilla/state.db"),
        "an SQLite state database was created"
    );
}

#[test]
fn three_workers_roll_out_the_demo_plan_to_56_postgres_trusts_and_every_trust_names_its_worker() {
    let ws = Workspace::new();
    short_soak(&ws);
    let estate = PgEstate::seeded("workers_56", ws, None, "50");
    let ids = estate.ws.trust_ids();
    assert_eq!(ids.len(), 56);
    let target = release_version("5.1");
    let names = ["worker-a", "worker-b", "worker-c"];

    let _serial = serial();
    let workers = estate.start_workers(&[(names[0], &[]), (names[1], &[]), (names[2], &[])]);
    let started = Instant::now();
    let coordinator = Spawned::start(
        &estate.ws,
        &estate.args(&["rollout", PLAN, "--workers", "--yes"]),
    )
    .wait(COORDINATOR_TIMEOUT);
    let took = started.elapsed();
    if coordinator.code != Some(0) {
        let outs: Vec<String> = workers.into_iter().map(|w| w.kill().0.describe()).collect();
        panic!(
            "the coordinator failed\n{}\n--- workers ---\n{}",
            coordinator.describe(),
            outs.join("\n")
        );
    }
    println!(
        "[workers 56] rollout on 3 workers: {:.1} s",
        took.as_secs_f64()
    );

    // `status` lists the three workers, live, with nothing in flight.
    let status = run_unlocked(&estate.ws, &estate.args(&["status", "--format", "json"]));
    status.success();
    let listed = status.json()["workers"].clone();
    for name in names {
        let w = listed
            .as_array()
            .and_then(|a| a.iter().find(|w| w["name"] == name))
            .unwrap_or_else(|| panic!("status lists no worker {name}\n{}", status.describe()));
        assert_eq!(w["state"], "live", "{w}");
        assert_eq!(w["jobs_in_flight"], 0, "{w}");
    }

    let outs = stop_workers(workers);

    // Every trust finished once, upgraded, by one of the three workers; the work was spread.
    let by = finished_by(&estate);
    assert_eq!(
        by.keys().cloned().collect::<Vec<_>>(),
        ids.iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>(),
        "trusts with a trust_finished event"
    );
    let mut per_worker: BTreeMap<&str, usize> = BTreeMap::new();
    for (id, finished) in &by {
        assert_eq!(finished.len(), 1, "{id}: {finished:?}");
        let (status, worker) = &finished[0];
        assert_eq!(status, "upgraded", "{id}: {finished:?}");
        let name = names
            .iter()
            .find(|n| **n == worker.as_str())
            .unwrap_or_else(|| panic!("{id}: trust_finished names worker {worker:?}"));
        *per_worker.entry(name).or_default() += 1;
    }
    println!("[workers 56] trusts per worker: {per_worker:?}");
    assert!(
        per_worker.len() >= 2,
        "the work was not spread: trusts per worker {per_worker:?}"
    );
    // Each worker that ran trusts logged its jobs.
    for name in per_worker.keys() {
        outs[*name].stderr_contains(&format!("worker {name}: migrate "));
    }
    // The run completed and left no job behind.
    let jobs = estate.jobs_by_state();
    assert!(
        jobs.keys().all(|s| s == "done"),
        "jobs not done after a completed run: {jobs:?}"
    );
    let runs = estate
        .state_db()
        .query_strings("SELECT status FROM flotilla_runs");
    assert_eq!(runs, vec!["completed".to_string()]);
    let stopped = estate
        .state_db()
        .query_i64("SELECT count(*)::bigint FROM flotilla_workers WHERE stopped_at IS NOT NULL");
    assert_eq!(stopped, 3, "workers that recorded their stop after SIGTERM");

    // Every trust is at the target, each migration recorded once.
    for id in &ids {
        let rows = estate.dbs.db(id).tracking_rows();
        let versions = estate.dbs.db(id).applied_versions();
        assert_eq!(versions, versions_through(target), "{id}");
        assert_eq!(rows.len(), versions.len(), "{id}: tracking rows {rows:?}");
    }

    // The report names the workers that ran the trusts.
    let report = run_unlocked(&estate.ws, &estate.args(&["report", "latest"]));
    report.success();
    for name in per_worker.keys() {
        report.stdout_contains(name);
    }
}

/// camden and islington only a worker at site x can reach, barnet only one at site y; the
/// other two any worker.
const LABELLED: &[(&str, Option<&str>)] = &[
    ("camden", Some("x")),
    ("islington", Some("x")),
    ("barnet", Some("y")),
    ("bexley", None),
    ("brent", None),
];

fn labelled_estate(test: &str, labels: &[(&str, Option<&str>)]) -> PgEstate {
    let ws = Workspace::new();
    let ids: Vec<&str> = labels.iter().map(|(id, _)| *id).collect();
    let estate = PgEstate::seeded(test, ws, Some(&ids), "10");
    estate.ws.edit_inventory(|inv| {
        for t in inv["trusts"].as_array_mut().unwrap() {
            let site = labels.iter().find(|(id, _)| t["id"] == *id).unwrap().1;
            if let Some(site) = site {
                t["runner"] = serde_json::json!({ "site": site });
            }
        }
    });
    estate
}

#[test]
fn a_trust_only_one_worker_can_reach_is_run_by_that_worker() {
    let estate = labelled_estate("workers_labels", LABELLED);
    let ids: Vec<String> = LABELLED.iter().map(|(id, _)| id.to_string()).collect();
    let target = release_version("5.1");
    estate.ws.write_target_plan(
        "labels.yaml",
        target,
        &[("pilot", ids[..2].to_vec()), ("rest", ids[2..].to_vec())],
    );
    estate
        .ws
        .replace("plans/labels.yaml", "concurrency: 1", "concurrency: 3");

    let _serial = serial();
    let workers = estate.start_workers(&[
        ("at-x", &["site=x"]),
        ("at-y", &["site=y", "zone=2"]),
        ("anywhere", &[]),
    ]);
    // A second live worker with a name already taken is refused.
    let twin = finish(
        Spawned::start(
            &estate.ws,
            &estate.args(&["worker", "--name", "at-x", "--ttl", WORKER_TTL]),
        ),
        Duration::from_secs(30),
    );
    let twin = twin
        .unwrap_or_else(|o| panic!("a second worker named at-x kept running\n{}", o.describe()));
    twin.code(2).stderr_contains("at-x");
    let out = run_unlocked(
        &estate.ws,
        &estate.args(&["rollout", "plans/labels.yaml", "--workers", "--yes"]),
    );
    let outs = stop_workers(workers);
    if out.code != Some(0) {
        panic!(
            "{}\n--- workers ---\n{}",
            out.describe(),
            outs.values()
                .map(Outcome::describe)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    let by = finished_by(&estate);
    for (id, site) in LABELLED {
        let finished = by
            .get(*id)
            .unwrap_or_else(|| panic!("{id} has no trust_finished"));
        assert_eq!(finished.len(), 1, "{id}: {finished:?}");
        let (status, worker) = &finished[0];
        assert_eq!(status, "upgraded", "{id}");
        match site {
            Some("x") => assert_eq!(worker, "at-x", "{id} needs site=x"),
            Some(_) => assert_eq!(worker, "at-y", "{id} needs site=y"),
            None => assert!(
                ["at-x", "at-y", "anywhere"].contains(&worker.as_str()),
                "{id}: {worker}"
            ),
        }
        assert_eq!(
            estate.dbs.db(id).applied_versions(),
            versions_through(target),
            "{id}"
        );
    }
    // Not only its outcome: every job of a labelled trust went to the worker carrying its
    // label.
    let jobs = estate.jobs();
    for job in &jobs {
        let f: Vec<&str> = job.split('|').collect();
        let (kind, trust, state, worker) = (f[0], f[1], f[2], f[3]);
        assert_eq!(state, "done", "{job}");
        match LABELLED
            .iter()
            .find(|(id, _)| *id == trust)
            .and_then(|t| t.1)
        {
            Some("x") => assert_eq!(worker, "at-x", "{kind} job of {trust}: {jobs:#?}"),
            Some(_) => assert_eq!(worker, "at-y", "{kind} job of {trust}: {jobs:#?}"),
            None => {}
        }
    }
    assert!(
        jobs.iter().any(|j| j.starts_with("migrate|camden|")),
        "no migrate job for camden: {jobs:#?}"
    );
}

#[test]
fn a_wave_with_a_trust_no_live_worker_can_reach_is_refused_before_anything_is_migrated() {
    let labels: &[(&str, Option<&str>)] = &[
        ("islington", None),
        ("barnet", None),
        ("camden", Some("camden-dc")),
    ];
    let estate = labelled_estate("workers_reach", labels);
    let target = release_version("5.1");
    // camden is in the second wave: the refusal must come before the first wave starts.
    estate.ws.write_target_plan(
        "reach.yaml",
        target,
        &[
            ("pilot", vec!["islington".into(), "barnet".into()]),
            ("london-2", vec!["camden".into()]),
        ],
    );
    let before = estate.ws.tracking_snapshot();

    let _serial = serial();
    let workers = estate.start_workers(&[("w1", &["site=dc1"]), ("w2", &[])]);
    let started = Instant::now();
    let out = run_unlocked(
        &estate.ws,
        &estate.args(&["rollout", "plans/reach.yaml", "--workers", "--yes"]),
    );
    let took = started.elapsed();
    stop_workers(workers);

    out.code(2)
        .stderr_contains("trust camden needs a worker with site=camden-dc")
        .stderr_contains("live workers: ")
        .stderr_contains("w1 {site=dc1}")
        .stderr_contains("w2 {}");
    assert!(
        took < Duration::from_secs(20),
        "refused after {took:?}: it must be reported up front, not after a timeout\n{}",
        out.describe()
    );
    assert_eq!(
        before,
        estate.ws.tracking_snapshot(),
        "a trust was migrated although the plan was refused\n{}",
        out.describe()
    );
    let jobs = estate.jobs();
    assert!(
        !jobs.iter().any(|j| j.starts_with("migrate|")
            || j.starts_with("baseline|")
            || j.starts_with("window|")),
        "work was queued for a refused plan: {jobs:#?}"
    );
}

#[test]
fn a_worker_whose_checkout_differs_from_the_run_runs_none_of_its_jobs() {
    let labels: &[(&str, Option<&str>)] = &[("camden", None), ("islington", None)];
    let estate = labelled_estate("workers_stale", labels);
    let target = release_version("5.1");
    let ids: Vec<String> = labels.iter().map(|(id, _)| id.to_string()).collect();
    estate
        .ws
        .write_target_plan("stale.yaml", target, &[("all", ids.clone())]);
    // The worker's checkout: the same estate and plan, one migration edited.
    let mut stale = Workspace::new();
    stale.write("trusts.yaml", estate.ws.read("trusts.yaml"));
    stale.write("plans/stale.yaml", estate.ws.read("plans/stale.yaml"));
    let (_, pw) = split_password(&estate.dbs.admin_url);
    if let Some(pw) = pw {
        stale.set_env(PG_PASSWORD_ENV, &pw);
        stale.set_env("FLOTILLA_STATE_PASSWORD", &pw);
    }
    let last = stale.migration_file(target, ".up.sql");
    stale.edit(&last, |s| {
        format!("{s}\n-- edited on the worker's machine\n")
    });
    let before = estate.ws.tracking_snapshot();

    let _serial = serial();
    let mut worker = Worker::spawn(
        &stale,
        "stale",
        &estate.args(&["worker", "--name", "stale", "--ttl", WORKER_TTL]),
    );
    assert!(
        estate.wait_live(
            &["stale"],
            Instant::now() + Duration::from_secs(30),
            std::slice::from_mut(&mut worker)
        ),
        "the worker did not show live"
    );
    let out = finish(
        Spawned::start(
            &estate.ws,
            &estate.args(&["rollout", "plans/stale.yaml", "--workers", "--yes"]),
        ),
        Duration::from_secs(120),
    );
    let said = stop_workers(vec![worker]);
    let out = out.unwrap_or_else(|o| panic!("the coordinator did not end\n{}", o.describe()));
    assert_ne!(out.code, Some(0), "{}", out.describe());
    out.no_panic()
        .stderr_contains("worker stale")
        .stderr_contains("migrations sha256");
    said["stale"].stderr_contains("migrations sha256");
    assert_eq!(
        before,
        estate.ws.tracking_snapshot(),
        "a worker with another checkout migrated a trust\n{}",
        out.describe()
    );
}

// ---------------------------------------------------------------------------------------------
// The worker crash harness
// ---------------------------------------------------------------------------------------------

/// Every wave of the plan has work (as in the crash harness).
const CRASH_ESTATE: &[&str] = &[
    "camden",
    "islington",
    "barnet",
    "bexley",
    "brent",
    "greenwich",
    "kent-community",
];
const CRASH_WORKERS: usize = 3;
/// Aimed points kill up to this long after the victim was seen holding a job.
const AIMED_DELAY_MS: u64 = 40;
/// How many times recovery may meet "locked" (6) or "interrupted" (8) before it is a failure.
const RECOVERY_ATTEMPTS: usize = 4;

/// `FLOTILLA_WORKER_CRASH_SEED`, or one derived from the time (printed, so any run can be
/// replayed).
fn worker_crash_seed() -> u64 {
    let derived = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ u64::from(std::process::id()).rotate_left(32);
    env_or("FLOTILLA_WORKER_CRASH_SEED", derived % 1_000_000_000)
}

/// [`short_soak`], 10 latency samples and 10 writes per window (the gate still runs in full;
/// this harness is about crashes, not latency or loss rates).
fn quicken(ws: &Workspace) {
    short_soak(ws);
    ws.edit(PLAN, |s| s.replace("samples: 40", "samples: 10"));
    ws.replace(PLAN, "    max_loss_rate: 5%\n", "    samples: 10\n");
}

struct CrashHarness {
    estate: PgEstate,
    /// Workers started so far (names are never reused).
    started: usize,
}

impl CrashHarness {
    fn new() -> CrashHarness {
        let ws = Workspace::new();
        quicken(&ws);
        let estate = PgEstate::seeded("workers_crash", ws, Some(CRASH_ESTATE), "100");
        estate.keep_seed();
        CrashHarness { estate, started: 0 }
    }

    fn next_worker(&mut self) -> Worker {
        self.started += 1;
        self.estate.start_worker(&format!("w{}", self.started), &[])
    }

    /// The first `CRASH_WORKERS` workers of a point, live.
    fn start_workers(&mut self) -> Vec<Worker> {
        let mut workers: Vec<Worker> = (0..CRASH_WORKERS).map(|_| self.next_worker()).collect();
        let names: Vec<String> = workers.iter().map(|w| w.name.clone()).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let live = self.estate.wait_live(
            &names,
            Instant::now() + Duration::from_secs(30),
            &mut workers,
        );
        assert!(live, "workers {names:?} did not show live");
        workers
    }

    fn coordinator(&self) -> Spawned {
        Spawned::start(
            &self.estate.ws,
            &self.estate.args(&["rollout", PLAN, "--workers", "--yes"]),
        )
    }

    /// `resume --yes` until it completes; `rollout --workers --yes` when there is no run to
    /// resume (the kill came before the run was recorded). Locked (6) and interrupted (8) are
    /// retried a few times. Whether a fresh rollout was needed.
    fn recover(&self) -> Result<bool, String> {
        let ws = &self.estate.ws;
        let mut fresh = false;
        let mut log = String::new();
        for _ in 0..RECOVERY_ATTEMPTS {
            let resume = run_unlocked(ws, &self.estate.args(&["resume", "--yes"]));
            let out = if resume.code == Some(2) && resume.stderr.contains("no run to resume") {
                let recorded = self
                    .estate
                    .state_db()
                    .try_query_rw(&["SELECT status FROM flotilla_runs"])
                    .map(|r| r[0].iter().any(|s| s != "completed"))
                    .unwrap_or(false);
                if recorded {
                    return Err(format!(
                        "the killed run was recorded unfinished, but resume found no run to resume\n{}",
                        resume.describe()
                    ));
                }
                fresh = true;
                run_unlocked(
                    ws,
                    &self.estate.args(&["rollout", PLAN, "--workers", "--yes"]),
                )
            } else {
                resume
            };
            if out.stderr.contains("panicked at") {
                return Err(format!("flotilla panicked\n{log}{}", out.describe()));
            }
            match out.code {
                Some(0) => return Ok(fresh),
                Some(6) | Some(8) => {
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
        for id in CRASH_ESTATE {
            let check = self
                .estate
                .dbs
                .db(id)
                .crash_check()
                .map_err(|e| format!("{id}: {e}"))?;
            out.insert(id.to_string(), check);
        }
        Ok(out)
    }

    /// The estate, the queue and the journal after a point, against the reference.
    fn verify(&self, reference: &BTreeMap<String, Fingerprint>) -> Result<(), String> {
        let target = release_version("5.1");
        let seeded = release_version("5.0");
        let expected = versions_through(target);
        let mut problems = Vec::new();
        let checks = self.check_trusts()?;
        for (id, c) in &checks {
            if c.versions != expected {
                problems.push(format!(
                    "{id}: tracking table has versions {:?}, expected {expected:?}",
                    c.versions
                ));
            }
            if c.distinct_versions != c.versions.len() {
                problems.push(format!(
                    "{id}: a migration applied twice: tracking rows {:?}",
                    c.versions
                ));
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

        // Nothing left queued or claimed.
        let state = self.estate.state_db();
        let r = state.try_query_rw(&[
            "SELECT CAST(job_id AS TEXT) || '|' || kind || '|' || COALESCE(trust, '') || '|' || state \
             || '|' || COALESCE(worker, '') FROM flotilla_jobs WHERE state IN ('queued', 'claimed') ORDER BY job_id",
            "SELECT trust || '|' || kind || '|' || COALESCE(CAST(version AS TEXT), '') || '|' || state \
             || '|' || COALESCE(detail, '') FROM flotilla_steps ORDER BY run_id, seq",
            "SELECT run_id || '|' || status FROM flotilla_runs",
            "SELECT run_id FROM flotilla_lease",
            "SELECT event || '|' || COALESCE(trust, '') FROM flotilla_events WHERE event LIKE 'rollback%'",
        ])?;
        let (open_jobs, steps, runs, lease, rollbacks) = (&r[0], &r[1], &r[2], &r[3], &r[4]);
        if !open_jobs.is_empty() {
            problems.push(format!("jobs left queued or claimed: {open_jobs:?}"));
        }
        if runs.is_empty() || runs.iter().any(|r| !r.ends_with("|completed")) {
            problems.push(format!("runs are not all completed: {runs:?}"));
        }
        if !lease.is_empty() {
            problems.push(format!("the lease was not released: {lease:?}"));
        }
        if !rollbacks.is_empty() {
            problems.push(format!(
                "rollbacks although no migration failed: {rollbacks:?}"
            ));
        }

        // The journal agrees with the databases: no step left open, every migration 'done'
        // once, and those are exactly what the tracking tables added to the seed.
        let mut done: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        for s in steps {
            let f: Vec<&str> = s.splitn(5, '|').collect();
            let (trust, kind, version, state) = (f[0], f[1], f[2], f[3]);
            if state == "started" {
                problems.push(format!("journal step left 'started': {s}"));
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
                problems.push(format!(
                    "{id}: a migration has more than one 'done' step: {done:?}"
                ));
            }
            let mut journal: BTreeSet<i64> = versions_through(seeded).into_iter().collect();
            journal.extend(set);
            let applied: BTreeSet<i64> = c.versions.iter().copied().collect();
            if journal != applied {
                problems.push(format!(
                    "{id}: journal says {journal:?} (seed + 'done' migrate steps), tracking table says {applied:?}"
                ));
            }
        }

        // Every trust has one final outcome: its last trust_finished upgraded it (or found it
        // up to date after a resume) to the target; none failed; each names the worker that
        // ran the trust (or, up to date, read it).
        let mut last: BTreeMap<String, Value> = BTreeMap::new();
        for (trust, body) in self.estate.trust_finished() {
            if worker_of(&body).is_none() {
                problems.push(format!("{trust}: trust_finished names no worker: {body}"));
            }
            if body["status"] == "failed" {
                problems.push(format!("{trust}: failed: {body}"));
            }
            last.insert(trust, body);
        }
        for id in CRASH_ESTATE {
            match last.get(*id) {
                None => problems.push(format!("{id}: no trust_finished event")),
                Some(b) => {
                    if !(b["status"] == "upgraded" || b["status"] == "up-to-date")
                        || b["version"] != target
                    {
                        problems.push(format!("{id}: its final outcome is {b}"));
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }
}

/// Stop (SIGTERM) the workers still running: whether each exited 0, and their stderr (for a
/// failure's report).
fn stop_all(workers: Vec<Worker>) -> (Result<(), String>, String) {
    let mut workers = workers;
    for w in workers.iter_mut() {
        if !w.exited() {
            signal(w.pid(), "TERM");
        }
    }
    let named: Vec<(String, Outcome)> = workers
        .into_iter()
        .map(|w| (w.name.clone(), w.wait_stopped()))
        .collect();
    let said = named
        .iter()
        .map(|(name, o)| format!("{name} (exit {:?}):\n{}", o.code, o.stderr))
        .collect::<Vec<_>>()
        .join("\n");
    let bad: Vec<String> = named
        .iter()
        .filter(|(_, o)| o.code != Some(0))
        .map(|(_, o)| o.describe())
        .collect();
    if bad.is_empty() {
        (Ok(()), said)
    } else {
        (
            Err(format!("workers did not stop cleanly:\n{}", bad.join("\n"))),
            said,
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Victim {
    Worker(usize),
    Coordinator,
}

#[test]
fn workers_killed_at_random_points_leave_every_trust_at_its_target() {
    let start = Instant::now();
    let points: usize = env_or("FLOTILLA_WORKER_CRASH_POINTS", 2);
    let seed = worker_crash_seed();
    let mut rng = SplitMix64::new(seed);
    let tag = "[worker crash]";
    let replay = format!("FLOTILLA_WORKER_CRASH_SEED={seed} FLOTILLA_WORKER_CRASH_POINTS={points}");
    println!("{tag} seed {seed}, {points} points (replay: {replay})");
    let mut h = CrashHarness::new();

    // The reference: an uninterrupted rollout on the workers.
    let (reference, duration_ms) = {
        let _serial = serial();
        h.estate.restore();
        let workers = h.start_workers();
        let run = h.coordinator();
        let started = run.started;
        let out = finish(run, COORDINATOR_TIMEOUT);
        let duration_ms = started.elapsed().as_millis() as u64;
        let (stopped, said) = stop_all(workers);
        match out {
            Ok(out) if out.code == Some(0) => {}
            Ok(out) | Err(out) => panic!(
                "{tag} reference rollout failed\n{}\n--- workers ---\n{said}",
                out.describe()
            ),
        }
        stopped.unwrap_or_else(|e| panic!("{tag} reference: {e}"));
        let checks = h
            .check_trusts()
            .unwrap_or_else(|e| panic!("{tag} reference: {e}"));
        for (id, c) in &checks {
            assert_eq!(
                c.versions,
                versions_through(release_version("5.1")),
                "{tag} reference: {id}"
            );
            assert!(
                c.fingerprint
                    .data
                    .get("patient")
                    .is_some_and(|p| !p.is_empty()),
                "{tag} reference: {id} has no patients: the comparison would prove nothing"
            );
        }
        let reference: BTreeMap<String, Fingerprint> = checks
            .into_iter()
            .map(|(id, c)| (id, c.fingerprint))
            .collect();
        h.verify(&reference)
            .unwrap_or_else(|e| panic!("{tag} reference: {e}"));
        (reference, duration_ms)
    };
    println!("{tag} reference rollout on {CRASH_WORKERS} workers: {duration_ms} ms");

    let mut failures = Vec::new();
    let mut lines = Vec::new();
    for i in 1..=points {
        // Every third point (the 2nd, 5th, ...) kills the coordinator, the others a worker.
        // Odd points are aimed: a few milliseconds after the k-th trust's migrate job is
        // claimed, its worker (a trust's migrations take milliseconds; most of a rollout is
        // health checks), or the coordinator after the k-th trust's intent; k drawn at random.
        // Even points kill at a delay drawn uniformly from [0, reference duration], a worker
        // drawn at random. With the default two points: a worker killed among its
        // migrations, and the coordinator killed at a random moment.
        let coordinator = i % 3 == 2;
        let aimed = i % 2 == 1;
        let drawn = rng.up_to(CRASH_WORKERS as u64 - 1) as usize;
        let k = 1 + rng.up_to(CRASH_ESTATE.len() as u64 - 1);
        let delay = if aimed {
            rng.up_to(AIMED_DELAY_MS)
        } else {
            rng.up_to(duration_ms)
        };
        let point_start = Instant::now();
        let _serial = serial();
        h.estate.restore();
        let mut workers = h.start_workers();
        let mut run = h.coordinator();
        let started = run.started;
        let deadline = started + Duration::from_millis(duration_ms * 3);
        let mut aim = String::new();
        let mut victim = if coordinator {
            Victim::Coordinator
        } else {
            Victim::Worker(drawn)
        };
        if aimed {
            let state = h.estate.state_db();
            if coordinator {
                state.wait_for_count(
                    "SELECT CAST(count(*) AS TEXT) FROM flotilla_steps WHERE kind = 'upgrade'",
                    k as i64,
                    deadline,
                    || run.exited(),
                );
                aim = format!(" (aimed at trust {k} of {})", CRASH_ESTATE.len());
            } else {
                let claimed = state.wait_for_count(
                    "SELECT CAST(count(*) AS TEXT) FROM flotilla_jobs \
                     WHERE kind = 'migrate' AND state <> 'queued'",
                    k as i64,
                    deadline,
                    || run.exited(),
                );
                let holder = state
                    .try_query_rw(&[
                        "SELECT worker FROM flotilla_jobs WHERE kind = 'migrate' \
                         AND state = 'claimed' AND worker IS NOT NULL ORDER BY job_id DESC LIMIT 1",
                    ])
                    .ok()
                    .and_then(|mut r| r.remove(0).pop());
                match holder.and_then(|h| workers.iter().position(|w| w.name == h)) {
                    Some(n) if claimed => {
                        victim = Victim::Worker(n);
                        aim = format!(
                            " (aimed: {} migrating, trust {k} of {})",
                            workers[n].name,
                            CRASH_ESTATE.len()
                        );
                    }
                    _ => {
                        aim = format!(
                            " (aimed at trust {k} of {}: no migration in flight, a drawn worker)",
                            CRASH_ESTATE.len()
                        )
                    }
                }
            }
        }
        let wait_until = Instant::now() + Duration::from_millis(delay);
        while Instant::now() < wait_until && !run.exited() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let at = started.elapsed().as_millis();
        let (who, killed, result) = match victim {
            Victim::Worker(n) => {
                let w = workers.remove(n);
                let who = w.name.clone();
                let (_, killed) = w.kill();
                // A replacement, as an operator would start.
                let mut replacement = h.next_worker();
                let name = replacement.name.clone();
                if !h.estate.wait_live(
                    &[&name],
                    Instant::now() + Duration::from_secs(30),
                    std::slice::from_mut(&mut replacement),
                ) {
                    failures.push(format!("point {i}: replacement worker {name} not live"));
                }
                workers.push(replacement);
                let result = match finish(run, COORDINATOR_TIMEOUT) {
                    Ok(out) if out.code == Some(0) => Ok("coordinator completed".to_string()),
                    Ok(out) => Err(format!(
                        "the coordinator did not complete after {who} was killed\n{}",
                        out.describe()
                    )),
                    Err(out) => Err(format!(
                        "the coordinator was still running after {COORDINATOR_TIMEOUT:?}\n{}",
                        out.describe()
                    )),
                };
                (who, killed, result)
            }
            Victim::Coordinator => {
                let (first, killed) = run.kill();
                let result = if killed {
                    match h.recover() {
                        Ok(true) => Ok("fresh rollout".to_string()),
                        Ok(false) => Ok("resume".to_string()),
                        Err(e) => Err(e),
                    }
                } else if first.code == Some(0) {
                    Ok("finished before the kill".to_string())
                } else {
                    Err(format!(
                        "the coordinator exited by itself, not with success\n{}",
                        first.describe()
                    ))
                };
                ("coordinator".to_string(), killed, result)
            }
        };
        let (stopped, workers_said) = stop_all(workers);
        let context = format!(
            "point {i}/{points}: kill -9 {who} at {at} ms{aim}{} (seed {seed})",
            if killed { "" } else { " (it had exited)" }
        );
        let result = result
            .and_then(|how| stopped.map(|()| how))
            .and_then(|how| h.verify(&reference).map(|()| how));
        let line = match &result {
            Ok(how) => format!("{context}: {how}: ok"),
            Err(e) => {
                failures.push(format!(
                    "{context}:\n{e}\n--- what the workers said ---\n{workers_said}"
                ));
                format!("{context}: FAILED")
            }
        };
        println!("{line} ({:.1} s)", point_start.elapsed().as_secs_f64());
        lines.push(line);
    }

    // Written to stderr directly so that the count, seed and outcome show in CI output even
    // when the test passes.
    let _ = writeln!(
        std::io::stderr(),
        "{tag} SUMMARY points={points} seed={seed} reference={duration_ms}ms failures={} total={:.1}s (replay: {replay})\n{}",
        failures.len(),
        start.elapsed().as_secs_f64(),
        lines.join("\n")
    );
    assert!(
        failures.is_empty(),
        "{tag} {} of {points} points failed (replay: {replay}):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
