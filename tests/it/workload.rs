//! The real workload on PostgreSQL (`pg_stat_statements`, `pg_stat_database`): the readings
//! against a real cluster, and whole rollouts where a regression only the workload can see
//! halts the pilot, a clean run passes, and a trust without the extension is said once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{
    block_on, create_databases, pg_admin_url, run_unlocked, serial, url_with_db, Db, Workspace,
};
use flotilla::config::health::{Health, LatencyProbe, WriteProbe};
use flotilla::config::inventory::{PasswordSource, UrlSource};
use flotilla::config::{DatabaseTarget, Trust};
use flotilla::health::probes::CONTROL_SQL;
use flotilla::health::workload::{Tracker, WorkloadWindow};
use serde_json::{json, Value};
use sqlx::{Connection, Executor, PgConnection};

// ---------------------------------------------------------------------------------------------
// Readings against a real cluster
// ---------------------------------------------------------------------------------------------

fn trust(id: &str, db: &str) -> Trust {
    Trust {
        id: id.into(),
        name: id.into(),
        region: "test".into(),
        tags: Default::default(),
        database: DatabaseTarget::Postgres {
            url: UrlSource::Inline(url_with_db(&pg_admin_url(), db)),
            password: PasswordSource::None,
        },
        local_migrations: None,
        maintenance_window: None,
        runner: Default::default(),
    }
}

async fn conn(db: &str) -> PgConnection {
    PgConnection::connect(&url_with_db(&pg_admin_url(), db))
        .await
        .unwrap()
}

/// A small "records" table, and the health section of a plan probing it.
async fn records(db: &str, extension: bool) -> Health {
    let mut c = conn(db).await;
    if extension {
        c.execute("CREATE EXTENSION pg_stat_statements")
            .await
            .unwrap();
    }
    c.execute(
        "CREATE TABLE record (id BIGINT PRIMARY KEY, kind TEXT NOT NULL, body TEXT NOT NULL);
         INSERT INTO record SELECT g, 'kind-' || (g % 7), 'body ' || g FROM generate_series(1, 2000) g;",
    )
    .await
    .unwrap();
    c.close().await.unwrap();
    let mut health = Health {
        latency_probes: vec![LatencyProbe {
            name: "open".into(),
            sql: "SELECT body FROM record WHERE id = $1".into(),
            params: Some("SELECT id FROM record ORDER BY id LIMIT 5".into()),
            samples: 10,
            concurrency: 1,
        }],
        write_probe: Some(WriteProbe {
            insert: "INSERT INTO record (id, kind, body) VALUES ($1, 'probe', $2)".into(),
            read_back: "SELECT body FROM record WHERE id = $1".into(),
            cleanup: "DELETE FROM record WHERE id = $1".into(),
            samples: None,
            max_loss_rate: None,
            confidence: None,
            concurrency: 1,
            regression: Default::default(),
        }),
        ..Health::default()
    };
    health.workload.min_window = Duration::from_millis(700);
    health
}

fn window(w: Option<Result<WorkloadWindow, String>>) -> WorkloadWindow {
    match w {
        Some(Ok(w)) => w,
        other => panic!("expected a workload window, got {other:?}"),
    }
}

#[test]
fn a_window_counts_the_real_statements_and_leaves_flotillas_own_out() {
    let _alone = crate::common::alone();
    let dbs = create_databases("workload_reading", &["t".to_string()]);
    let db = dbs.names["t"].clone();
    block_on(async {
        let mut health = records(&db, true).await;
        // Long enough that a window held open for it and one that is not cannot be confused,
        // however slowly a loaded machine reads the counters.
        health.workload.min_window = Duration::from_secs(3);
        let trust = trust("t", &db);
        let tracker = Tracker::default();
        assert_eq!(
            tracker.mark(&trust, &health).await,
            None,
            "the extension is there"
        );

        let mut app = conn(&db).await;
        // What flotilla itself runs, bound as its probes bind (an integer $1, a text $2) ...
        for id in 1..=15_i64 {
            sqlx::query(&health.latency_probes[0].sql)
                .bind(id)
                .fetch_all(&mut app)
                .await
                .unwrap();
            sqlx::query(CONTROL_SQL).fetch_all(&mut app).await.unwrap();
        }
        let wp = health.write_probe.as_ref().unwrap();
        sqlx::query(&wp.insert)
            .bind(-1_i64)
            .bind("token")
            .execute(&mut app)
            .await
            .unwrap();
        sqlx::query(&wp.read_back)
            .bind(-1_i64)
            .fetch_all(&mut app)
            .await
            .unwrap();
        sqlx::query(&wp.cleanup)
            .bind(-1_i64)
            .execute(&mut app)
            .await
            .unwrap();
        // ... and what the trust's users run: a search the probes never make, 30 times.
        for i in 0..30 {
            sqlx::query("SELECT id FROM record WHERE kind = $1 ORDER BY id LIMIT 10")
                .bind(format!("kind-{}", i % 7))
                .fetch_all(&mut app)
                .await
                .unwrap();
        }
        app.close().await.unwrap();

        let w = window(tracker.close(&trust, &health).await);
        let texts: Vec<String> = w
            .statements
            .iter()
            .filter_map(|s| s.query.clone())
            .collect();
        let search = w
            .statements
            .iter()
            .find(|s| {
                s.query
                    .as_deref()
                    .is_some_and(|q| q.contains("WHERE kind = $1"))
            })
            .unwrap_or_else(|| panic!("the users' search is in the window: {w:#?}"));
        assert_eq!(search.calls, 30, "{w:#?}");
        assert!(search.mean_ms > 0.0 && search.total_ms >= search.mean_ms * 29.0);
        for own in [
            "WHERE id = $1",
            "WITH RECURSIVE",
            "INSERT INTO record",
            "DELETE FROM record",
            "flotilla",
            "pg_stat",
        ] {
            assert!(
                !texts.iter().any(|t| t.contains(own)),
                "flotilla's own statement '{own}' must not be counted as workload: {texts:#?}"
            );
        }
        assert!(
            w.statements.iter().all(|s| s.calls != 15),
            "no trace of the probe's 15 executions: {w:#?}"
        );
        let database = w.database.expect("pg_stat_database figures");
        assert!(database.commits >= 30, "{database:?}");
        assert!(
            w.seconds >= 3.0,
            "a window with traffic lasts at least min_window: {}",
            w.seconds
        );

        // The next window starts where this one ended: nothing ran in between.
        let next = window(tracker.close(&trust, &health).await);
        assert!(
            next.statements
                .iter()
                .all(|s| !s.query.as_deref().is_some_and(|q| q.contains("WHERE kind"))),
            "{next:#?}"
        );
        assert!(
            next.seconds < 3.0,
            "no traffic, no waiting: {}",
            next.seconds
        );
    });
}

#[test]
fn a_database_without_the_extension_is_said_once_and_never_read() {
    let _alone = crate::common::alone();
    let dbs = create_databases("workload_missing", &["t".to_string()]);
    let db = dbs.names["t"].clone();
    block_on(async {
        let health = records(&db, false).await;
        let trust = trust("t", &db);
        let tracker = Tracker::default();
        let said = tracker
            .mark(&trust, &health)
            .await
            .expect("said the first time");
        assert!(
            said.contains("CREATE EXTENSION pg_stat_statements"),
            "{said}"
        );
        assert_eq!(tracker.mark(&trust, &health).await, None, "said once");
        assert_eq!(tracker.open(&trust, &health).await, None);
        assert!(tracker.close(&trust, &health).await.is_none());
    });
}

#[test]
fn deadlocks_and_rollbacks_show_in_the_window() {
    let _alone = crate::common::alone();
    let dbs = create_databases("workload_deadlock", &["t".to_string()]);
    let db = dbs.names["t"].clone();
    block_on(async {
        let health = records(&db, true).await;
        let trust = trust("t", &db);
        let tracker = Tracker::default();
        assert_eq!(tracker.mark(&trust, &health).await, None);
        deadlock(&db).await;
        let w = window(tracker.close(&trust, &health).await);
        let d = w.database.expect("pg_stat_database figures");
        assert_eq!(d.deadlocks, 1, "{d:?}");
        assert!(d.rollbacks >= 1, "the deadlock's victim rolled back: {d:?}");
    });
}

/// Two sessions update the same two rows in opposite orders: the server detects the deadlock
/// (after `deadlock_timeout`) and aborts one of them. Both sessions are closed before this
/// returns, so their statistics have reached `pg_stat_database`.
async fn deadlock(db: &str) {
    let (mut a, mut b) = (conn(db).await, conn(db).await);
    a.execute("BEGIN; UPDATE record SET body = body WHERE id = 1")
        .await
        .unwrap();
    b.execute("BEGIN; UPDATE record SET body = body WHERE id = 2")
        .await
        .unwrap();
    let (ra, rb) = tokio::join!(
        a.execute("UPDATE record SET body = body WHERE id = 2"),
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            b.execute("UPDATE record SET body = body WHERE id = 1")
                .await
        }
    );
    assert!(
        ra.is_err() != rb.is_err(),
        "exactly one session is the deadlock's victim"
    );
    let _ = a.execute("ROLLBACK").await;
    let _ = b.execute("ROLLBACK").await;
    a.close().await.unwrap();
    b.close().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Whole rollouts with users at work
// ---------------------------------------------------------------------------------------------

const PLAN: &str = "plans/rio-5.1.yaml";
const PATIENTS: &str = "600";
/// The "who accessed this record" screen: an audit-trail query the plan's probes never run.
const AUDIT_TRAIL: &str = "SELECT at, action, staff_id FROM audit_log WHERE entity = 'patient' AND entity_id = $1 ORDER BY at DESC LIMIT 20";
/// Each view of a record writes an audit row (every third is a print).
const AUDIT_WRITE: &str = "INSERT INTO audit_log (id, at, staff_id, action, entity, entity_id) VALUES ($1, CURRENT_TIMESTAMP, NULL, $2, 'patient', $3)";

/// A small Postgres estate seeded at 5.0, with the audit trail of a busy trust (30,000 access
/// records) and `pg_stat_statements` created by the demo seeding.
fn estate(test: &str, ids: &[&str]) -> Workspace {
    let mut ws = Workspace::new();
    ws.keep_trusts(ids);
    // The sample plan's health section, with a pilot of camden and islington and one more wave
    // for the rest; a quick soak.
    ws.edit(PLAN, |plan| {
        let (head, rest) = plan.split_once("waves:").expect("waves");
        let health = &rest[rest.find("\nhealth:").expect("health")..];
        let later: Vec<&str> = ids
            .iter()
            .copied()
            .filter(|id| !["camden", "islington"].contains(id))
            .collect();
        let mut waves = String::from("waves:\n  - name: pilot\n    trusts: [camden, islington]\n");
        if !later.is_empty() {
            waves.push_str(&format!(
                "  - name: rest\n    trusts: [{}]\n",
                later.join(", ")
            ));
        }
        format!("{head}{waves}{health}").replace(
            "soak: { rounds: 2, interval: 1s }",
            "soak: { rounds: 1, interval: 200ms }",
        )
    });
    let names: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    ws.write_pg_inventory(&create_databases(test, &names));
    ws.edit_inventory(|inv| {
        inv["defaults"] = json!({ "local_migrations": "estate/local/{id}" });
    });
    ws.run(&["demo", "--seed-only", "--patients", PATIENTS])
        .success();
    for id in ids {
        let db = ws.db(id);
        db.exec(
            "INSERT INTO audit_log (id, at, staff_id, action, entity, entity_id) \
             SELECT 1000000 + g, TIMESTAMP '2024-01-01' + g * INTERVAL '1 minute', NULL, 'view', 'patient', 1 + g % 600 \
             FROM generate_series(1, 30000) g; ANALYZE audit_log;",
        );
        assert_eq!(
            db.query_i64("SELECT COUNT(*) FROM pg_extension WHERE extname = 'pg_stat_statements'"),
            1,
            "the demo seeding creates pg_stat_statements where the server has it loaded"
        );
    }
    ws
}

/// A local migration of one trust, run inside the 5.1 upgrade (like `demo --inject-regression`).
fn plant(ws: &Workspace, trust: &str, name: &str, up: &str, down: &str) {
    ws.write(format!("estate/local/{trust}/0125_{name}.up.sql"), up);
    ws.write(format!("estate/local/{trust}/0125_{name}.down.sql"), down);
}

/// Staff of one trust at work in a thread of their own: opening records' audit trails (and,
/// with `writes`, recording each view in the audit log), until stopped.
struct Users {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Users {
    fn start(db: Db, writes: bool) -> Users {
        let Db::Postgres(url) = db else {
            panic!("users work on Postgres trusts")
        };
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let (s, d) = (stop.clone(), done.clone());
        let thread = std::thread::spawn(move || {
            block_on(async move {
                let mut n: i64 = 0;
                while !s.load(Ordering::SeqCst) {
                    let Ok(mut c) = PgConnection::connect(&url).await else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    };
                    while !s.load(Ordering::SeqCst) {
                        n += 1;
                        let read = sqlx::query(AUDIT_TRAIL)
                            .bind(1 + n % 600)
                            .fetch_all(&mut c)
                            .await;
                        if let Err(e) = read {
                            if matches!(e, sqlx::Error::Io(_) | sqlx::Error::Protocol(_)) {
                                break;
                            }
                        }
                        if writes {
                            // A failed save is what the users would see; the loop goes on.
                            let action = if n % 3 == 0 { "print" } else { "view" };
                            let _ = sqlx::query(AUDIT_WRITE)
                                .bind(5_000_000 + n)
                                .bind(action)
                                .bind(1 + n % 600)
                                .execute(&mut c)
                                .await;
                        }
                        d.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(15)).await;
                    }
                    let _ = c.close().await;
                }
            })
        });
        Users {
            stop,
            done,
            thread: Some(thread),
        }
    }

    /// Stop and return how many actions were done.
    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("the users' thread");
        }
        self.done.load(Ordering::SeqCst)
    }
}

impl Drop for Users {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn versions(ws: &Workspace) -> BTreeMap<String, i64> {
    ws.status()
        .into_iter()
        .map(|(id, t)| (id, t["version"].as_i64().unwrap_or(-1)))
        .collect()
}

fn events(ws: &Workspace) -> Vec<Value> {
    ws.read("events.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn verdicts<'a>(events: &'a [Value], trust: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| {
            e["event"] == "health_verdict" && e["trust"] == trust && e["window"] != "after-rollback"
        })
        .collect()
}

/// The audit-trail statement in a verdict's workload figures, if it was compared.
fn audit_trail(verdict: &Value) -> Option<&Value> {
    verdict["workload"]["statements"]
        .as_array()?
        .iter()
        .find(|s| {
            s["query"]
                .as_str()
                .is_some_and(|q| q.contains("FROM audit_log WHERE entity"))
        })
}

#[test]
fn faults_only_the_real_workload_shows_halt_the_pilot_and_are_rolled_back() {
    let _alone = crate::common::alone();
    let ws = estate("wl_faults", &["camden", "islington", "barnet"]);
    // Camden's own "audit retention" step drops the index the audit-trail screen relies on:
    // the screen becomes slow.
    plant(
        &ws,
        "camden",
        "audit_log_retention",
        "DROP INDEX audit_log_entity_idx;\n",
        "CREATE INDEX audit_log_entity_idx ON audit_log (entity, entity_id, at);\n",
    );
    // Islington's own step restricts the audit actions: every print of a record now fails to
    // be recorded, and those transactions roll back.
    plant(
        &ws,
        "islington",
        "audit_actions",
        "ALTER TABLE audit_log ADD CONSTRAINT audit_log_action_known CHECK (action IN ('view', 'create', 'update')) NOT VALID;\n",
        "ALTER TABLE audit_log DROP CONSTRAINT audit_log_action_known;\n",
    );
    // No probe of the plan reads or writes the audit log: only the real workload shows these.
    // The users work only while this test's rollout holds the run lock: their load is for this
    // rollout's gate, not for another test's.
    let run_lock = serial();
    let users: Vec<Users> = ["camden", "islington", "barnet"]
        .iter()
        .map(|id| Users::start(ws.db(id), true))
        .collect();
    let out = run_unlocked(&ws, &["rollout", PLAN, "--yes", "--events", "events.jsonl"]);
    let actions: Vec<u64> = users.into_iter().map(Users::stop).collect();
    drop(run_lock);
    out.code(3)
        .no_panic()
        .stderr_contains("camden: statement regressed (pg_stat_statements queryid")
        .stderr_contains("FROM audit_log WHERE entity")
        .stderr_contains("islington: rollbacks:")
        .stderr_contains("transactions are failing");
    let v = versions(&ws);
    assert_eq!(v["camden"], 80, "camden is back on 5.0\n{}", out.describe());
    assert_eq!(
        v["islington"],
        80,
        "islington is back on 5.0\n{}",
        out.describe()
    );
    assert_eq!(
        v["barnet"],
        80,
        "a later wave is never touched\n{}",
        out.describe()
    );
    assert_eq!(
        ws.db("camden")
            .query_i64("SELECT COUNT(*) FROM pg_indexes WHERE indexname = 'audit_log_entity_idx'"),
        1,
        "camden's index is back"
    );

    let events = events(&ws);
    let failed = |trust: &str| {
        verdicts(&events, trust)
            .into_iter()
            .find(|e| e["verdict"] == "fail")
            .unwrap_or_else(|| panic!("{trust} failed\n{}", out.describe()))
            .clone()
    };
    let camden = failed("camden");
    let audit = audit_trail(&camden).expect("camden's audit trail was compared");
    assert_eq!(audit["regressed"], true, "{audit}");
    let (before, after) = (
        audit["baseline_mean_ms"].as_f64().unwrap(),
        audit["mean_ms"].as_f64().unwrap(),
    );
    assert!(after > 1.5 * before && after - before > 1.0, "{audit}");
    let islington = failed("islington");
    let db = &islington["workload"]["database"];
    assert_eq!(db["rollbacks_regressed"], true, "{db}");
    assert!(db["window"]["rollbacks"].as_i64().unwrap() >= 10, "{db}");
    // Each trust failed on its own fault only: the figures of the other signal are clean.
    assert_eq!(
        camden["workload"]["database"]["rollbacks_regressed"], false,
        "{camden}"
    );
    if let Some(a) = audit_trail(&islington) {
        assert_eq!(a["regressed"], false, "{a}");
    }
    println!(
        "camden's audit trail: {before:.3} ms -> {after:.3} ms; islington's rollbacks: {} of {}; actions per trust {actions:?}",
        db["window"]["rollbacks"],
        db["window"]["rollbacks"].as_i64().unwrap() + db["window"]["commits"].as_i64().unwrap()
    );
}

#[test]
fn a_clean_rollout_under_real_workload_passes_and_a_trust_without_the_extension_is_said_once() {
    let _alone = crate::common::alone();
    let ws = estate("wl_clean", &["camden", "islington", "barnet"]);
    ws.db("barnet").exec("DROP EXTENSION pg_stat_statements");
    // The users work only while this test's rollout holds the run lock: their load is for this
    // rollout's gate, not for another test's.
    let run_lock = serial();
    let users: Vec<Users> = ["camden", "islington", "barnet"]
        .iter()
        .map(|id| Users::start(ws.db(id), true))
        .collect();
    let out = run_unlocked(&ws, &["rollout", PLAN, "--yes", "--events", "events.jsonl"]);
    let actions: Vec<u64> = users.into_iter().map(Users::stop).collect();
    drop(run_lock);
    out.success();
    assert!(
        versions(&ws).values().all(|v| *v == 130),
        "every trust reached 5.1\n{}",
        out.describe()
    );
    let events = events(&ws);
    let unavailable: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "workload_unavailable")
        .collect();
    assert_eq!(
        unavailable.len(),
        1,
        "said once, for barnet only: {unavailable:#?}"
    );
    assert_eq!(unavailable[0]["trust"], "barnet");
    assert!(
        unavailable[0]["reason"]
            .as_str()
            .unwrap()
            .contains("not created in this database"),
        "{unavailable:#?}"
    );
    assert_eq!(
        out.stdout.matches("real workload not judged").count(),
        1,
        "{}",
        out.describe()
    );
    for id in ["camden", "islington"] {
        let judged = verdicts(&events, id);
        assert!(judged.iter().all(|e| e["verdict"] == "pass"), "{judged:#?}");
        let compared: Vec<&Value> = judged.iter().filter_map(|e| audit_trail(e)).collect();
        assert!(
            !compared.is_empty(),
            "{id}'s audit trail was compared, so the pass means something: {judged:#?}"
        );
        for a in compared {
            assert_eq!(a["regressed"], false, "{a}");
            assert!(
                a["baseline_calls"].as_u64().unwrap() >= 20 && a["calls"].as_u64().unwrap() >= 20,
                "{a}"
            );
        }
    }
    let barnet = verdicts(&events, "barnet");
    assert!(
        !barnet.is_empty()
            && barnet
                .iter()
                .all(|e| e["verdict"] == "pass" && e.get("workload").is_none()),
        "{barnet:#?}"
    );
    println!("clean rollout under users' work: actions per trust {actions:?}");
}
