//! Reports end to end: `--events` parsed back line by line against docs/events.md, `--junit`
//! parsed back with an XML parser and checked for JUnit's required elements and attributes,
//! `--report-dir` checked for one section per trust and well-formed SVG; a halted run's
//! reports name the failing trust and why; `flotilla report RUN` renders the same files from
//! the journal.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::Workspace;
use serde_json::Value;

const PLAN: &str = "plans/rio-5.1.yaml";
const PATIENTS: &str = "300";

/// Three trusts in two waves, one quick soak round: a few seconds per rollout.
fn small_workspace() -> Workspace {
    let ws = Workspace::new();
    ws.keep_trusts(&["camden", "islington", "barnet"]);
    ws.edit(PLAN, |s| {
        let start = s.find("waves:\n").expect("plan has waves");
        let end = s.find("\nhealth:").expect("plan has a health section");
        format!(
            "{}waves:\n  - name: pilot\n    trusts: [camden, islington]\n  - name: rest\n    trusts: [barnet]\n{}",
            &s[..start],
            &s[end..]
        )
    });
    ws.replace(
        PLAN,
        "soak: { rounds: 2, interval: 1s }",
        "soak: { rounds: 1, interval: 200ms }",
    );
    ws
}

/// Event names documented in docs/events.md (its `### \`name\`` headings).
fn documented_events() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(crate::common::repo_root().join("docs/events.md"))
        .expect("docs/events.md exists");
    doc.lines()
        .filter_map(|l| l.strip_prefix("### `"))
        .filter_map(|l| l.strip_suffix('`'))
        .map(str::to_string)
        .collect()
}

/// The variants of `enum Event` in src/engine/events.rs, in snake_case (their serde names).
fn event_variants() -> BTreeSet<String> {
    let src =
        std::fs::read_to_string(crate::common::repo_root().join("src/engine/events.rs")).unwrap();
    let body = &src[src.find("pub enum Event {").expect("enum Event")..];
    let body = &body[..body.find("\n}\n").unwrap()];
    body.lines()
        .filter(|l| l.starts_with("    ") && !l.starts_with("     "))
        .filter_map(|l| {
            let name: String = l
                .trim()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            name.starts_with(|c: char| c.is_ascii_uppercase())
                .then_some(name)
        })
        .map(|name| {
            let mut snake = String::new();
            for (i, c) in name.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    snake.push('_');
                }
                snake.push(c.to_ascii_lowercase());
            }
            snake
        })
        .collect()
}

#[test]
fn docs_events_md_documents_every_event_and_nothing_else() {
    let documented = documented_events();
    let variants = event_variants();
    assert!(variants.len() > 20, "parsed the enum: {variants:?}");
    assert_eq!(
        documented, variants,
        "docs/events.md headings must match the Event variants of src/engine/events.rs"
    );
}

/// Parse an events file line by line; check names, order and pairing.
fn check_events(text: &str) -> Vec<Value> {
    let documented = documented_events();
    let events: Vec<Value> = text
        .lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("events line {}: {e}: {line}", i + 1))
        })
        .collect();
    assert!(events.len() > 10, "a run has many events: {text}");
    for (i, e) in events.iter().enumerate() {
        let name = e["event"]
            .as_str()
            .unwrap_or_else(|| panic!("line {} has no `event` field: {e}", i + 1));
        assert!(
            documented.contains(name),
            "line {}: event '{name}' is not in docs/events.md",
            i + 1
        );
    }
    let name = |e: &Value| e["event"].as_str().unwrap().to_string();
    assert_eq!(name(&events[0]), "run_started");
    assert_eq!(name(events.last().unwrap()), "run_finished");
    // Every wave and trust that starts, finishes, after it started; migrations likewise.
    let mut open: BTreeMap<String, usize> = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        let key = |kind: &str, field: &str| format!("{kind} {}", e[field].as_str().unwrap_or(""));
        let mig = || format!("migration {} {}", e["trust"], e["version"]);
        match name(e).as_str() {
            "wave_started" => assert!(open.insert(key("wave", "wave"), i).is_none()),
            "wave_finished" => assert!(
                open.remove(&key("wave", "wave")).is_some(),
                "line {}: wave_finished without wave_started",
                i + 1
            ),
            "trust_started" => assert!(open.insert(key("trust", "trust"), i).is_none()),
            "trust_finished" => assert!(
                open.remove(&key("trust", "trust")).is_some(),
                "line {}: trust_finished without trust_started",
                i + 1
            ),
            "migration_started" => assert!(open.insert(mig(), i).is_none()),
            "migration_applied" | "migration_failed" => assert!(
                open.remove(&mig()).is_some(),
                "line {}: {} without migration_started",
                i + 1,
                name(e)
            ),
            _ => {}
        }
    }
    assert!(open.is_empty(), "started and never finished: {open:?}");
    events
}

/// A test case: its name and its failure message, if it failed.
type Case = (String, Option<String>);

/// A parsed JUnit report: totals, and each suite's name with its test cases.
struct Junit {
    tests: usize,
    failures: usize,
    suites: Vec<(String, Vec<Case>)>,
}

/// Parse a JUnit file and check the elements and attributes the JUnit schema requires.
fn parse_junit(xml: &str) -> Junit {
    let doc = roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("JUnit XML: {e}\n{xml}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    let num = |n: roxmltree::Node, a: &str| -> usize {
        n.attribute(a)
            .unwrap_or_else(|| panic!("<{}> lacks {a}", n.tag_name().name()))
            .parse()
            .unwrap_or_else(|e| panic!("<{}> {a}: {e}", n.tag_name().name()))
    };
    let mut junit = Junit {
        tests: num(root, "tests"),
        failures: num(root, "failures"),
        suites: Vec::new(),
    };
    let (mut tests, mut failures) = (0, 0);
    for suite in root.children().filter(|n| n.is_element()) {
        assert_eq!(suite.tag_name().name(), "testsuite");
        let name = suite.attribute("name").expect("testsuite name").to_string();
        let mut cases = Vec::new();
        let mut suite_failures = 0;
        for case in suite.children().filter(|n| n.has_tag_name("testcase")) {
            let cname = case.attribute("name").expect("testcase name").to_string();
            assert!(
                !case.attribute("classname").unwrap_or("").is_empty(),
                "testcase {cname} has a classname"
            );
            let failure = case.children().find(|n| n.has_tag_name("failure"));
            if failure.is_some() {
                suite_failures += 1;
            }
            let message = failure.map(|f| {
                f.attribute("message")
                    .expect("failure has a message")
                    .to_string()
            });
            cases.push((cname, message));
        }
        assert_eq!(num(suite, "tests"), cases.len(), "suite {name}: tests");
        assert_eq!(num(suite, "failures"), suite_failures, "suite {name}");
        num(suite, "errors");
        tests += cases.len();
        failures += suite_failures;
        junit.suites.push((name, cases));
    }
    assert_eq!(junit.tests, tests, "testsuites tests = sum of the suites'");
    assert_eq!(junit.failures, failures);
    junit
}

/// Check the HTML report: one section per trust, every SVG well-formed; returns the class of
/// each trust's section.
fn check_html(html: &str, trusts: &[&str]) -> BTreeMap<String, String> {
    assert!(html.starts_with("<!DOCTYPE html>"));
    let without_ns = html.replace("http://www.w3.org/2000/svg", "");
    assert!(
        !without_ns.contains("http") && !html.contains("<script") && !html.contains("<link"),
        "the report is self-contained: no script, nothing fetched"
    );
    let mut classes = BTreeMap::new();
    for t in trusts {
        let marker = format!("<section id=\"trust-{t}\" class=\"");
        assert_eq!(
            html.matches(&marker).count(),
            1,
            "one section for trust {t}"
        );
        let at = html.find(&marker).unwrap() + marker.len();
        let class = &html[at..at + html[at..].find('"').unwrap()];
        classes.insert(t.to_string(), class.to_string());
    }
    assert_eq!(
        html.matches("<section ").count(),
        trusts.len(),
        "a section per trust and no more"
    );
    let mut svgs = 0;
    let mut rest = html;
    while let Some(start) = rest.find("<svg") {
        let end = rest[start..].find("</svg>").expect("svg closed") + start + "</svg>".len();
        let svg = &rest[start..end];
        let doc = roxmltree::Document::parse(svg)
            .unwrap_or_else(|e| panic!("SVG is not well-formed XML: {e}\n{svg}"));
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        assert_eq!(
            root.tag_name().namespace(),
            Some("http://www.w3.org/2000/svg")
        );
        assert!(
            root.descendants()
                .filter(|n| n.has_tag_name("circle"))
                .count()
                > 10,
            "the plot shows the samples"
        );
        svgs += 1;
        rest = &rest[end..];
    }
    assert!(svgs >= 1, "at least one latency plot");
    classes
}

#[test]
fn a_clean_rollout_writes_events_junit_and_html_and_report_renders_them_again() {
    let ws = small_workspace();
    ws.run(&["demo", "--seed-only", "--patients", PATIENTS])
        .success();
    let out = ws.run(&[
        "rollout",
        PLAN,
        "--yes",
        "--events",
        "events.jsonl",
        "--junit",
        "out.xml",
        "--report-dir",
        "report",
    ]);
    out.success().no_panic();

    let events = check_events(&ws.read("events.jsonl"));
    assert_eq!(events.last().unwrap()["outcome"], "completed");

    let xml = ws.read("out.xml");
    let junit = parse_junit(&xml);
    assert_eq!(junit.failures, 0, "{xml}");
    let names: Vec<&str> = junit.suites.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["rio-5.1 / pilot", "rio-5.1 / rest"]);
    let cases: BTreeSet<&str> = junit
        .suites
        .iter()
        .flat_map(|(_, c)| c.iter().map(|(n, _)| n.as_str()))
        .collect();
    for t in ["camden", "islington", "barnet"] {
        assert!(cases.contains(t), "a test case per trust: {cases:?}");
        assert!(
            cases.contains(format!("{t} / gate post-upgrade").as_str()),
            "a test case per gate verdict: {cases:?}"
        );
    }
    assert!(cases.contains("barnet / gate soak 1/1"), "{cases:?}");

    let html = ws.read("report/index.html");
    let classes = check_html(&html, &["camden", "islington", "barnet"]);
    assert!(classes.values().all(|c| c == "trust passed"), "{classes:?}");

    // The same run rendered later from the journal gives the same files.
    let run_id = events_run_id(&ws);
    let again = ws.run(&[
        "report",
        &run_id,
        "--junit",
        "again.xml",
        "--report-dir",
        "again",
    ]);
    again.success().stdout_contains("camden");
    assert_eq!(ws.read("again.xml"), xml);
    assert_eq!(ws.read("again/index.html"), html);
    ws.run(&["report", "latest", "--junit", "latest.xml"])
        .success();
    assert_eq!(ws.read("latest.xml"), xml);
    ws.run(&["report", "20000101T000000.000-1"])
        .code(2)
        .stderr_contains("no run '20000101T000000.000-1'");
}

/// The id of the only run of the workspace, from `status`.
fn events_run_id(ws: &Workspace) -> String {
    let out = ws.run(&["status", "--format", "json"]);
    out.success();
    out.json()["runs"][0]["run_id"]
        .as_str()
        .expect("a run id")
        .to_string()
}

#[test]
fn a_halted_rollout_exits_3_and_its_reports_name_the_failing_trust_and_why() {
    let ws = small_workspace();
    ws.run(&[
        "demo",
        "--seed-only",
        "--patients",
        PATIENTS,
        "--inject-regression",
        "camden:data-loss",
    ])
    .success();
    let out = ws.run(&[
        "rollout",
        PLAN,
        "--yes",
        "--events",
        "events.jsonl",
        "--junit",
        "out.xml",
        "--report-dir",
        "report",
    ]);
    out.code(3).no_panic().stderr_contains("camden");
    let events = check_events(&ws.read("events.jsonl"));
    assert_eq!(events.last().unwrap()["outcome"], "halted");

    let xml = ws.read("out.xml");
    let junit = parse_junit(&xml);
    assert_eq!(junit.suites.len(), 1, "no later wave started: {xml}");
    let cases: BTreeMap<&str, Option<&str>> = junit.suites[0]
        .1
        .iter()
        .map(|(n, m)| (n.as_str(), m.as_deref()))
        .collect();
    let camden = cases["camden"].expect("camden's test case fails");
    assert!(
        camden.contains("integrity of 'clinical_note'") && camden.contains("rolled back to 5.0"),
        "the failure says why and what was done: {camden}"
    );
    let gate = cases["camden / gate post-upgrade"].expect("the gate's test case fails");
    assert!(gate.contains("integrity of 'clinical_note'"), "{gate}");
    assert_eq!(cases["islington"], None, "islington passed: {xml}");
    assert_eq!(cases["islington / gate post-upgrade"], None);
    assert_eq!(junit.failures, 2, "{xml}");

    let html = ws.read("report/index.html");
    let classes = check_html(&html, &["camden", "islington"]);
    assert_eq!(classes["camden"], "trust failed");
    assert_eq!(classes["islington"], "trust passed");
    assert!(html.contains("integrity of 'clinical_note'"));

    // Resumed without camden, the run completes; its report covers every attempt: camden's
    // failure stays on record, the later wave is there and passed.
    ws.run(&[
        "resume",
        "--yes",
        "--skip",
        "camden",
        "--junit",
        "resumed.xml",
        "--report-dir",
        "resumed",
    ])
    .success();
    let xml = ws.read("resumed.xml");
    let junit = parse_junit(&xml);
    let names: Vec<&str> = junit.suites.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["rio-5.1 / pilot", "rio-5.1 / rest"], "{xml}");
    let rest: BTreeMap<&str, Option<&str>> = junit.suites[1]
        .1
        .iter()
        .map(|(n, m)| (n.as_str(), m.as_deref()))
        .collect();
    assert_eq!(rest.get("barnet"), Some(&None), "barnet passed: {xml}");
    assert!(junit.suites[0]
        .1
        .iter()
        .any(|(n, m)| n == "camden" && m.is_some()));
    let classes = check_html(
        &ws.read("resumed/index.html"),
        &["camden", "islington", "barnet"],
    );
    assert_eq!(classes["barnet"], "trust passed");
}

#[test]
fn report_on_a_missing_run_or_state_database_is_exit_2_and_creates_nothing() {
    let ws = small_workspace();
    ws.run(&["report", "latest"])
        .code(2)
        .stderr_contains("no state database");
    assert!(!ws.exists(".flotilla/state.db"), "report never creates one");
    ws.run(&["demo", "--seed-only", "--patients", "50"])
        .success();
    let out = ws.run(&["rollout", PLAN, "--yes", "--junit", "missing-dir/out.xml"]);
    out.code(2).stderr_contains("missing-dir");
    assert!(
        ws.status().values().all(|t| t["version"] == 80),
        "an unwritable report is refused before anything runs"
    );
}

/// The phases of a run from its `run_finished` event: every figure of the contract present
/// (a whole number of milliseconds, so never negative), the wall time the run's duration,
/// and the sequential phases summing to it within what bookkeeping between them takes.
fn checked_phases(events: &[Value]) -> BTreeMap<String, u64> {
    let last = events.last().expect("events");
    assert_eq!(last["event"], "run_finished");
    let p = &last["phases"];
    let mut out = BTreeMap::new();
    for key in [
        "preflight_ms",
        "baseline_ms",
        "migrate_ms",
        "post_upgrade_ms",
        "confirm_ms",
        "soak_wait_ms",
        "soak_checks_ms",
        "background_ms",
        "journal_ms",
        "rollback_ms",
        "wall_ms",
    ] {
        let ms = p[key]
            .as_u64()
            .unwrap_or_else(|| panic!("phases.{key} is a whole number of ms: {last}"));
        out.insert(key.to_string(), ms);
    }
    let wall = out["wall_ms"];
    assert_eq!(Some(wall), last["duration_ms"].as_u64(), "{last}");
    let sequential: u64 = out
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "wall_ms" | "background_ms" | "journal_ms"))
        .map(|(_, ms)| ms)
        .sum();
    assert!(
        sequential <= wall + 8 && sequential + wall / 10 + 250 >= wall,
        "the sequential phases ({sequential} ms) sum to about the wall time: {last}"
    );
    assert!(out["journal_ms"] <= wall, "{last}");
    out
}

/// Seed the workspace's estate, roll the plan out, and check the phases it journalled.
fn rolled_out_phases(ws: &Workspace) -> BTreeMap<String, u64> {
    ws.run(&["demo", "--seed-only", "--patients", PATIENTS])
        .success();
    ws.run(&["rollout", PLAN, "--yes", "--events", "events.jsonl"])
        .success()
        .no_panic();
    checked_phases(&check_events(&ws.read("events.jsonl")))
}

#[test]
fn run_finished_breaks_the_run_down_by_phase_with_gates_and_without() {
    let ws = small_workspace();
    let p = rolled_out_phases(&ws);
    for key in [
        "baseline_ms",
        "migrate_ms",
        "post_upgrade_ms",
        "soak_checks_ms",
        "journal_ms",
    ] {
        assert!(p[key] > 0, "a gated run spends time in {key}: {p:?}");
    }
    // Two waves, one soak round of 200 ms each.
    assert!(p["soak_wait_ms"] >= 400, "{p:?}");
    assert_eq!(p["rollback_ms"], 0, "{p:?}");
    let summary = ws.run(&["report", "latest"]);
    summary
        .success()
        .stdout_contains("time ")
        .stdout_contains("baseline ");

    let ws = small_workspace();
    ws.edit(PLAN, |s| s[..s.find("\nhealth:").unwrap() + 1].to_string());
    let p = rolled_out_phases(&ws);
    assert!(p["migrate_ms"] > 0, "{p:?}");
    for key in [
        "baseline_ms",
        "post_upgrade_ms",
        "confirm_ms",
        "soak_wait_ms",
        "soak_checks_ms",
        "background_ms",
        "rollback_ms",
    ] {
        assert_eq!(p[key], 0, "an ungated run spends no time in {key}: {p:?}");
    }
}
