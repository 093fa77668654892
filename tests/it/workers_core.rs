//! The core of rollouts on workers, end to end on a small Postgres estate: two `flotilla
//! worker` processes and a coordinator (`rollout --workers`) run the gated plan to the end;
//! every trust's `trust_finished` names the worker that ran it, every job ended, and
//! `status` shows the workers; and a regression found on a worker halts the run, the trust
//! rolled back by a worker. (The 56-trust run, labels and the crash harness are in
//! workers.rs.)

use std::time::Duration;

use crate::common::*;

const PLAN: &str = "plans/rio-5.1.yaml";

/// camden, islington (pilot) and barnet, brent (rest) on Postgres, seeded at 5.0, with a
/// short soak; `inject` plants a fault in one trust (`demo --inject-regression`).
fn small_estate(test: &str, inject: Option<&str>) -> PgEstate {
    let ws = Workspace::new();
    ws.write(
        PLAN,
        ws.read(PLAN)
            .replace(
                "soak: { rounds: 2, interval: 1s }",
                "soak: { rounds: 1, interval: 100ms }",
            )
            .replace("samples: 40", "samples: 10"),
    );
    let ids = ["camden", "islington", "barnet", "brent"];
    let estate = PgEstate::seeded(test, ws, Some(&ids), "20");
    if let Some(fault) = inject {
        // The fault is planted as a trust-local migration.
        estate.ws.edit_inventory(|inv| {
            inv["defaults"] = serde_json::json!({ "local_migrations": "estate/local/{id}" });
        });
        estate
            .ws
            .run(&[
                "demo",
                "--seed-only",
                "--patients",
                "20",
                "--inject-regression",
                fault,
            ])
            .success();
    }
    // The pilot wave as the demo plan has it, the rest after it.
    estate.ws.edit(PLAN, |s| {
        let health = &s[s.find("health:").expect("the plan has a health section")..];
        format!(
            "name: rio-5.1\nrelease: \"5.1\"\nconcurrency: 2\nwaves:\n  \
             - name: pilot\n    trusts: [camden, islington]\n    soak: {{ rounds: 1, interval: 100ms }}\n  \
             - name: rest\n    trusts: [barnet, brent]\n{health}"
        )
    });
    estate
}

#[test]
fn a_regression_found_on_a_worker_halts_the_run_and_a_worker_rolls_the_trust_back() {
    let estate = small_estate("workers_halt", Some("camden:data-loss"));
    let _serial = serial();
    let workers = estate.start_workers(&[("w1", &[]), ("w2", &[])]);
    let coordinator = Spawned::start(
        &estate.ws,
        &estate.args(&["rollout", PLAN, "--workers", "--yes"]),
    );
    let outcome = match finish(coordinator, Duration::from_secs(180)) {
        Ok(o) | Err(o) => o,
    };
    if outcome.code != Some(3) {
        let workers: Vec<String> = workers.into_iter().map(|w| w.kill().0.describe()).collect();
        panic!(
            "expected the gate to halt the run (exit 3):\n{}\n--- workers ---\n{}",
            outcome.describe(),
            workers.join("\n")
        );
    }
    stop_workers(workers);
    assert!(
        outcome.stderr.contains("camden") && outcome.stderr.contains("clinical_note"),
        "{}",
        outcome.describe()
    );
    let rolled_back = estate.events("rollback_finished");
    assert_eq!(rolled_back.len(), 1, "{rolled_back:?}");
    assert_eq!(rolled_back[0].0, "camden");
    assert!(
        rolled_back[0].1["worker"].is_string(),
        "the rollback names no worker: {:?}",
        rolled_back[0].1
    );
    let status = run_unlocked(&estate.ws, &estate.args(&["status", "--format", "json"]));
    let release = |id: &str| {
        status.json()["trusts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .map(|t| t["release"].as_str().unwrap_or("").to_string())
            .unwrap()
    };
    assert_eq!(release("camden"), "5.0", "camden rolled back");
    assert_eq!(
        release("islington"),
        "5.1",
        "the pilot's other trust passed"
    );
    assert_eq!(release("barnet"), "5.0", "no later wave started");
    assert_eq!(release("brent"), "5.0", "no later wave started");
    let jobs = estate.jobs();
    assert!(
        jobs.iter().any(|j| j.starts_with("rollback|camden|done|")),
        "{jobs:?}"
    );
    assert!(
        !jobs
            .iter()
            .any(|j| j.contains("|barnet|") && !j.starts_with("survey|")),
        "a later wave's trust got a job: {jobs:?}"
    );
}

#[test]
fn two_workers_and_a_coordinator_roll_out_a_gated_plan_and_every_trust_names_its_worker() {
    let estate = small_estate("workers_core", None);
    let _serial = serial();
    let workers = estate.start_workers(&[("w1", &[]), ("w2", &[])]);

    let status = run_unlocked(&estate.ws, &estate.args(&["status", "--format", "json"])).json();
    let names: Vec<&str> = status["workers"]
        .as_array()
        .unwrap_or_else(|| panic!("status --format json has no workers array: {status}"))
        .iter()
        .filter(|w| w["state"] == "live")
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["w1", "w2"], "{status}");

    let started = std::time::Instant::now();
    let coordinator = Spawned::start(
        &estate.ws,
        &estate.args(&["rollout", PLAN, "--workers", "--yes"]),
    );
    let outcome = match finish(coordinator, Duration::from_secs(180)) {
        Ok(o) | Err(o) => o,
    };
    println!(
        "[workers core] 4 trusts on 2 workers: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if outcome.code != Some(0) {
        let workers: Vec<String> = workers.into_iter().map(|w| w.kill().0.describe()).collect();
        panic!(
            "the coordinator failed:\n{}\n--- workers ---\n{}",
            outcome.describe(),
            workers.join("\n")
        );
    }

    stop_workers(workers);
    // The coordinator shows what the workers did as it reads it back from the journal.
    for trust in ["camden", "islington", "barnet", "brent"] {
        assert!(
            outcome.stdout.contains(&format!("✓ {trust} at 5.1")),
            "the coordinator did not show {trust}'s upgrade:\n{}",
            outcome.describe()
        );
    }
    let finished = estate.trust_finished();
    let mut trusts: Vec<&str> = finished.iter().map(|(t, _)| t.as_str()).collect();
    trusts.sort_unstable();
    assert_eq!(trusts, ["barnet", "brent", "camden", "islington"]);
    for (trust, body) in &finished {
        assert_eq!(body["status"], "upgraded", "{trust}: {body}");
        let worker = body["worker"].as_str().unwrap_or("");
        assert!(
            worker == "w1" || worker == "w2",
            "{trust}: trust_finished names no worker: {body}"
        );
    }
    // Baselines and measurements are the workers' too; the verdicts all passed.
    for (trust, body) in estate.events("baseline_recorded") {
        assert!(body["worker"].is_string(), "{trust}: {body}");
    }
    assert!(!estate.events("health_measured").is_empty());
    for (trust, body) in estate.events("health_verdict") {
        assert_eq!(body["verdict"], "pass", "{trust}: {body}");
    }
    // Sequence numbers stay unique and consecutive across the three processes.
    let seqs = estate
        .state_db()
        .try_query_rw(&["SELECT CAST(seq AS TEXT) FROM flotilla_events ORDER BY seq"])
        .unwrap()
        .remove(0);
    let mut seqs: Vec<i64> = seqs.iter().map(|s| s.parse().unwrap()).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..seqs.len() as i64).collect::<Vec<_>>());
    // Every job ended, and the kinds the contract names were all used.
    let jobs = estate.jobs_by_state();
    assert_eq!(jobs.keys().collect::<Vec<_>>(), ["done"], "{jobs:?}");
    let kinds: std::collections::BTreeSet<String> = estate
        .jobs()
        .iter()
        .map(|j| j.split('|').next().unwrap().to_string())
        .collect();
    for kind in ["survey", "baseline", "migrate", "window"] {
        assert!(kinds.contains(kind), "no {kind} job: {kinds:?}");
    }
    let status = run_unlocked(&estate.ws, &estate.args(&["status", "--format", "json"]));
    for t in status.json()["trusts"].as_array().unwrap() {
        assert_eq!(t["release"], "5.1", "{t}");
    }
    let run_id = status.json()["runs"][0]["run_id"]
        .as_str()
        .expect("status lists the run")
        .to_string();
    let report = run_unlocked(&estate.ws, &estate.args(&["report", &run_id]));
    report.success();
    assert!(
        report.stdout.contains("w1") || report.stdout.contains("w2"),
        "the report names no worker:\n{}",
        report.describe()
    );
}
