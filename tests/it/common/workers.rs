//! Rollouts on workers: [`PgEstate`], trusts on Postgres databases of the test cluster with a
//! Postgres state database shared by a coordinator (`rollout --workers`) and `flotilla worker`
//! processes ([`Worker`]) started in the same workspace (the same checkout: trusts.yaml,
//! plans/, migrations/), and what the state database says about them afterwards.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{
    create_databases, pg_admin_exec, split_password, url_with_db, Db, Outcome, PgDatabases,
    Spawned, Workspace,
};

/// The workers' TTL in tests: a worker killed with -9 has its jobs re-queued this long after
/// its last heartbeat (default 10 s), with three heartbeats (one a second) of slack on a busy
/// machine.
pub const WORKER_TTL: &str = "3s";

/// How long a worker may take to stop after SIGTERM (it finishes its jobs in flight first).
pub const WORKER_STOP_GRACE: Duration = Duration::from_secs(60);

/// Trusts on Postgres databases of the test cluster and a Postgres state database for the
/// coordinator and its workers.
pub struct PgEstate {
    pub ws: Workspace,
    pub dbs: PgDatabases,
    /// The state database's name on the test cluster.
    pub state_name: String,
    /// Its URL for flotilla (no password: that goes in FLOTILLA_STATE_PASSWORD).
    pub state_url: String,
}

impl PgEstate {
    /// The trusts of the repo's inventory (only `ids` when given), each on a fresh database
    /// (`test` names them), seeded at release 5.0 with `patients` synthetic patients, and an
    /// empty state database. `ws` is a workspace whose plan the caller may already have edited.
    pub fn seeded(test: &str, mut ws: Workspace, ids: Option<&[&str]>, patients: &str) -> PgEstate {
        if let Some(ids) = ids {
            ws.keep_trusts(ids);
        }
        let ids = ws.trust_ids();
        let dbs = create_databases(test, &ids);
        ws.write_pg_inventory(&dbs);
        let state_name = format!("{}_state", dbs.prefix);
        let (admin_no_pw, pw) = split_password(&dbs.admin_url);
        if let Some(pw) = pw {
            ws.set_env("FLOTILLA_STATE_PASSWORD", &pw);
        }
        let state_url = url_with_db(&admin_no_pw, &state_name);
        ws.run(&["demo", "--seed-only", "--patients", patients])
            .success();
        let estate = PgEstate {
            ws,
            dbs,
            state_name,
            state_url,
        };
        pg_admin_exec(&[format!("CREATE DATABASE \"{}\"", estate.state_name)]);
        estate
    }

    /// Keep the seeded databases as templates for [`PgEstate::restore`].
    pub fn keep_seed(&self) {
        pg_admin_exec(
            &self
                .dbs
                .names
                .values()
                .map(|n| format!("CREATE DATABASE \"{n}_seed\" TEMPLATE \"{n}\""))
                .collect::<Vec<_>>(),
        );
    }

    /// The seeded databases again (from [`PgEstate::keep_seed`]'s templates) and an empty state
    /// database. Nothing may be connected to them (stop the workers first).
    pub fn restore(&self) {
        let mut statements = Vec::new();
        for n in self.dbs.names.values() {
            statements.push(format!("DROP DATABASE IF EXISTS \"{n}\" WITH (FORCE)"));
            statements.push(format!("CREATE DATABASE \"{n}\" TEMPLATE \"{n}_seed\""));
        }
        statements.push(format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.state_name
        ));
        statements.push(format!("CREATE DATABASE \"{}\"", self.state_name));
        pg_admin_exec(&statements);
    }

    /// The state database, for checks.
    pub fn state_db(&self) -> Db {
        Db::Postgres(url_with_db(&self.dbs.admin_url, &self.state_name))
    }

    /// `--state URL` and `args`.
    pub fn args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec!["--state", self.state_url.as_str()];
        v.extend_from_slice(args);
        v
    }

    /// Start `flotilla --state URL worker --name NAME --label L... --ttl WORKER_TTL` in the
    /// workspace (the caller holds [`super::serial`]).
    pub fn start_worker(&self, name: &str, labels: &[&str]) -> Worker {
        let mut args = vec!["worker", "--name", name, "--ttl", WORKER_TTL];
        for l in labels {
            args.extend(["--label", l]);
        }
        Worker {
            name: name.to_string(),
            proc: Spawned::start(&self.ws, &self.args(&args)),
        }
    }

    /// Start one worker per (name, labels) and wait until each shows live in the state
    /// database; panics (with what each worker printed) if they do not within 30 s.
    pub fn start_workers(&self, specs: &[(&str, &[&str])]) -> Vec<Worker> {
        let mut workers: Vec<Worker> = specs
            .iter()
            .map(|(name, labels)| self.start_worker(name, labels))
            .collect();
        let names: Vec<&str> = specs.iter().map(|(n, _)| *n).collect();
        if !self.wait_live(
            &names,
            Instant::now() + Duration::from_secs(30),
            &mut workers,
        ) {
            let live = self.live_workers();
            let outs: Vec<String> = workers.into_iter().map(|w| w.kill().0.describe()).collect();
            panic!(
                "workers {names:?} did not all show live within 30 s (live: {live:?})\n{}",
                outs.join("\n")
            );
        }
        workers
    }

    /// Wait until every one of `names` is a live worker in the state database (true), or
    /// `deadline` passes or one of `watch` exits (false).
    pub fn wait_live(&self, names: &[&str], deadline: Instant, watch: &mut [Worker]) -> bool {
        let list = names
            .iter()
            .map(|n| format!("'{n}'"))
            .collect::<Vec<_>>()
            .join(", ");
        self.state_db().wait_for_count(
            &format!(
                "SELECT CAST(count(*) AS TEXT) FROM flotilla_workers WHERE name IN ({list}) \
                 AND stopped_at IS NULL AND expires_ms > {NOW_MS}"
            ),
            names.len() as i64,
            deadline,
            || watch.iter_mut().any(|w| w.exited()),
        )
    }

    /// Names of the live workers (`stopped_at IS NULL AND expires_ms > now`).
    pub fn live_workers(&self) -> Vec<String> {
        self.state_db()
            .try_query_rw(&[&format!(
                "SELECT name FROM flotilla_workers WHERE stopped_at IS NULL \
                 AND expires_ms > {NOW_MS} ORDER BY name"
            )])
            .map(|mut r| r.remove(0))
            .unwrap_or_default()
    }

    /// Every `trust_finished` event of the journal, in order: (trust, body).
    pub fn trust_finished(&self) -> Vec<(String, Value)> {
        self.events("trust_finished")
    }

    /// Every `event` of the journal, in (run, seq) order: (trust or "", body).
    pub fn events(&self, event: &str) -> Vec<(String, Value)> {
        let rows = self
            .state_db()
            .try_query_rw(&[&format!(
                "SELECT COALESCE(trust, '') || '|' || body FROM flotilla_events \
                 WHERE event = '{event}' ORDER BY run_id, seq"
            )])
            .unwrap_or_else(|e| panic!("reading {event} events: {e}"))
            .remove(0);
        rows.iter()
            .map(|r| {
                let (trust, body) = r.split_once('|').unwrap();
                let body: Value = serde_json::from_str(body)
                    .unwrap_or_else(|e| panic!("{event} body is not JSON ({e}): {body}"));
                (trust.to_string(), body)
            })
            .collect()
    }

    /// flotilla_jobs: how many jobs in each state.
    pub fn jobs_by_state(&self) -> BTreeMap<String, i64> {
        self.state_db()
            .try_query_rw(&[
                "SELECT state || '|' || CAST(count(*) AS TEXT) FROM flotilla_jobs GROUP BY state",
            ])
            .unwrap_or_else(|e| panic!("reading flotilla_jobs: {e}"))
            .remove(0)
            .iter()
            .map(|r| {
                let (s, n) = r.split_once('|').unwrap();
                (s.to_string(), n.parse().unwrap())
            })
            .collect()
    }

    /// flotilla_jobs rows as `kind|trust|state|worker`, in job order.
    pub fn jobs(&self) -> Vec<String> {
        self.state_db()
            .try_query_rw(&[
                "SELECT kind || '|' || COALESCE(trust, '') || '|' || state || '|' || COALESCE(worker, '') \
                 FROM flotilla_jobs ORDER BY job_id",
            ])
            .unwrap_or_else(|e| panic!("reading flotilla_jobs: {e}"))
            .remove(0)
    }
}

/// Milliseconds since the Unix epoch, in Postgres.
pub const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// A `flotilla worker` running in the background.
pub struct Worker {
    pub name: String,
    proc: Spawned,
}

impl Worker {
    /// Start `flotilla ARGS...` (a `worker` command line) in `ws`, as worker `name`.
    pub fn spawn(ws: &Workspace, name: &str, args: &[&str]) -> Worker {
        Worker {
            name: name.to_string(),
            proc: Spawned::start(ws, args),
        }
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> bool {
        self.proc.exited()
    }

    /// kill -9 (if still running): its outcome, and whether it was running.
    pub fn kill(self) -> (Outcome, bool) {
        self.proc.kill()
    }

    /// Wait for it to exit; killed, and the test failed, after [`WORKER_STOP_GRACE`].
    pub fn wait_stopped(self) -> Outcome {
        let timeout = self.proc.started.elapsed() + WORKER_STOP_GRACE;
        self.proc.wait(timeout)
    }
}

/// Wait for `run` to exit: its outcome, or (killed with -9) an error after `timeout` from
/// its start. Never panics, so a harness can report its seed with the failure.
pub fn finish(mut run: Spawned, timeout: Duration) -> Result<Outcome, Outcome> {
    loop {
        if run.exited() {
            return Ok(run.kill().0);
        }
        if run.started.elapsed() > timeout {
            return Err(run.kill().0);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Send `sig` (e.g. "TERM") to `pid` with kill(1).
pub fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// SIGTERM every worker and check each exits 0; their outcomes by name.
pub fn stop_workers(mut workers: Vec<Worker>) -> BTreeMap<String, Outcome> {
    let names: Vec<String> = workers.iter().map(|w| w.name.clone()).collect();
    for w in workers.iter_mut() {
        if !w.exited() {
            signal(w.pid(), "TERM");
        }
    }
    let outs: BTreeMap<String, Outcome> = workers
        .into_iter()
        .map(|w| (w.name.clone(), w.wait_stopped()))
        .collect();
    for name in names {
        outs[&name].success();
    }
    outs
}
