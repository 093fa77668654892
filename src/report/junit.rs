//! `--junit FILE`: the run as a JUnit XML report, for CI dashboards.
//!
//! One `<testsuite>` per wave (named `PLAN / WAVE`); in it one `<testcase>` per trust (named
//! after the trust, failing with the reason when its part failed, skipped when it never
//! started) and one per verdict of the health gate on it (`TRUST / gate post-upgrade`,
//! `TRUST / gate soak 1/2`, ...), failing with the gate's reasons.

use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use super::model::{GateReport, RunReport, TrustReport, TrustResult};

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn trust_case(classname: &str, t: &TrustReport) -> TestCase {
    let (status, out) = match t.result() {
        // A success carries no message in JUnit: its summary goes to system-out.
        TrustResult::Passed { summary } => (TestCaseStatus::success(), Some(summary)),
        TrustResult::Skipped { message } => {
            let mut s = TestCaseStatus::skipped();
            s.set_message(message);
            (s, None)
        }
        TrustResult::Failed { kind, message } => {
            let mut s = TestCaseStatus::non_success(if kind == "interrupted" {
                NonSuccessKind::Error
            } else {
                NonSuccessKind::Failure
            });
            s.set_message(message.as_str())
                .set_type(kind.as_str())
                .set_description(details(t));
            (s, None)
        }
    };
    let mut case = TestCase::new(t.id.as_str(), status);
    if let Some(out) = out {
        case.set_system_out(out);
    }
    finish_trust_case(case, classname, t)
}

fn finish_trust_case(mut case: TestCase, classname: &str, t: &TrustReport) -> TestCase {
    case.set_classname(classname);
    if let Some(d) = t.duration_ms {
        case.set_time(ms(d));
    }
    for (k, v) in [
        ("from", t.from.clone()),
        ("to", t.to.clone()),
        ("status", Some(t.status.clone())),
        ("release", t.release.clone()),
        ("version", t.version.map(|v| v.to_string())),
        (
            "workload",
            t.workload_unavailable
                .as_ref()
                .map(|why| format!("not judged: {why}")),
        ),
    ] {
        if let Some(v) = v {
            case.add_property(Property::new(k, v));
        }
    }
    case
}

/// The trust's story, for the failure's text: migrations, verdicts, rollback.
fn details(t: &TrustReport) -> String {
    let mut lines = Vec::new();
    for m in &t.migrations {
        let mut line = format!("{} {}", m.direction, m.version);
        if !m.description.is_empty() {
            line.push_str(&format!(" {}", m.description));
        }
        line.push_str(&format!(": {}", m.state));
        if let Some(d) = m.duration_ms {
            line.push_str(&format!(" ({d} ms)"));
        }
        if let Some(e) = &m.error {
            line.push_str(&format!(": {e}"));
        }
        lines.push(line);
    }
    for g in &t.gates {
        lines.push(format!("gate {}: {}", g.label, g.verdict));
        for r in &g.reasons {
            lines.push(format!("  {r}"));
        }
    }
    if let Some(r) = &t.rollback {
        lines.push(format!("rollback {} → {}: {}", r.from, r.to, r.state));
    }
    for e in &t.retries {
        lines.push(format!("retried after: {e}"));
    }
    lines.join("\n")
}

fn gate_case(classname: &str, t: &TrustReport, g: &GateReport) -> TestCase {
    let status = if g.passed() {
        TestCaseStatus::success()
    } else {
        let mut s = TestCaseStatus::non_success(if g.verdict == "error" {
            NonSuccessKind::Error
        } else {
            NonSuccessKind::Failure
        });
        s.set_message(format!("{}: {}", g.verdict, g.reasons.join("; ")))
            .set_type(format!("health-gate-{}", g.verdict))
            .set_description(g.reasons.join("\n"));
        s
    };
    let mut case = TestCase::new(format!("{} / gate {}", t.id, g.label), status);
    case.set_classname(classname);
    if let Some(w) = &g.workload {
        for st in &w.statements {
            case.add_property(Property::new(
                format!("workload.statement.{}", st.queryid),
                format!(
                    "{}: mean {:.3} → {:.3} ms over {} → {} calls, p = {:.3e}{}",
                    st.query,
                    st.baseline_mean_ms,
                    st.mean_ms,
                    st.baseline_calls,
                    st.calls,
                    st.p_value,
                    if st.regressed { ", regressed" } else { "" }
                ),
            ));
        }
        if let Some(d) = &w.database {
            case.add_property(Property::new(
                "workload.database",
                format!(
                    "rollbacks {}/{} → {}/{}, deadlocks {} → {}, conflicts {} → {}, temp files {} → {}",
                    d.baseline.rollbacks,
                    d.baseline.commits + d.baseline.rollbacks,
                    d.window.rollbacks,
                    d.window.commits + d.window.rollbacks,
                    d.baseline.deadlocks,
                    d.window.deadlocks,
                    d.baseline.conflicts,
                    d.window.conflicts,
                    d.baseline.temp_files,
                    d.window.temp_files
                ),
            ));
        }
        if w.new_count > 0 {
            case.add_property(Property::new(
                "workload.new_statements",
                w.new_count.to_string(),
            ));
        }
    }
    if let Some(w) = &g.writes {
        case.add_property(Property::new("writes", w.describe()));
    }
    for l in &g.latency {
        case.add_property(Property::new(
            format!("latency.{}", l.probe),
            format!(
                "median {:.3} → {:.3} ms, p95 {:.3} → {:.3} ms, p = {:.3e}{}",
                l.baseline_median_ms,
                l.median_ms,
                l.baseline_p95_ms,
                l.p95_ms,
                l.p_value,
                if l.regressed { ", regressed" } else { "" }
            ),
        ));
    }
    case
}

/// The JUnit report of a run.
pub fn report(r: &RunReport) -> Report {
    let mut report = Report::new(format!("flotilla {} run {}", r.run.plan, r.run.run_id));
    report.set_time(ms(r.duration_ms));
    for w in &r.waves {
        let classname = format!("{}.{}", r.run.plan, w.name);
        let mut suite = TestSuite::new(format!("{} / {}", r.run.plan, w.name));
        if let Some(d) = w.duration_ms {
            suite.set_time(ms(d));
        }
        suite.add_property(Property::new("run", r.run.run_id.as_str()));
        suite.add_property(Property::new("wave.status", w.status.as_str()));
        if let Some(by) = &w.approved_by {
            suite.add_property(Property::new("wave.approved_by", by.as_str()));
        }
        for id in &w.trusts {
            let Some(t) = r.trust(id) else { continue };
            suite.add_test_case(trust_case(&classname, t));
            for g in &t.gates {
                suite.add_test_case(gate_case(&classname, t, g));
            }
        }
        let halts: Vec<&str> = r
            .halts
            .iter()
            .filter(|h| h.wave == w.name)
            .map(|h| h.reason.as_str())
            .collect();
        if !halts.is_empty() {
            suite.set_system_err(format!("halted by the health gate:\n{}", halts.join("\n")));
        }
        report.add_test_suite(suite);
    }
    // Trusts no wave names: those of an operator action (`rollback --trust`).
    let loose: Vec<&TrustReport> = r
        .trusts
        .iter()
        .filter(|t| !r.waves.iter().any(|w| w.name == t.wave))
        .collect();
    if !loose.is_empty() {
        let classname = format!("{}.{}", r.run.plan, r.run.kind);
        let mut suite = TestSuite::new(format!("{} / {}", r.run.plan, r.run.kind));
        suite.add_property(Property::new("run", r.run.run_id.as_str()));
        for t in loose {
            suite.add_test_case(trust_case(&classname, t));
            for g in &t.gates {
                suite.add_test_case(gate_case(&classname, t, g));
            }
        }
        report.add_test_suite(suite);
    }
    report
}

/// The JUnit XML text of a run.
pub fn render(r: &RunReport) -> Result<String, quick_junit::SerializeError> {
    report(r).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::model::tests::{halted_run, record};

    #[test]
    fn the_failing_trust_and_its_gate_fail_with_the_reason() {
        let xml = render(&RunReport::build(record(), &halted_run())).unwrap();
        assert!(
            xml.contains(r#"<testsuite name="rio-5.1 / pilot" tests="5""#),
            "{xml}"
        );
        assert!(xml.contains(r#"failures="2""#), "{xml}");
        assert!(
            xml.contains(r#"<failure message="health gate post-upgrade: fail: latency probe &apos;open-record&apos; regressed; rolled back to 5.0" type="health-gate">"#),
            "{xml}"
        );
        assert!(
            xml.contains(
                r#"<testcase name="camden / gate post-upgrade" classname="rio-5.1.pilot">"#
            ),
            "{xml}"
        );
    }

    #[test]
    fn workload_figures_are_properties_of_the_gate_and_the_trust() {
        let xml = render(&RunReport::build(
            record(),
            &crate::report::model::tests::workload_run(),
        ))
        .unwrap();
        assert!(
            xml.contains(r#"<property name="workload.statement.42" value="SELECT at FROM audit_log WHERE entity_id &lt; $1: mean 0.120 → 5.000 ms over 140 → 90 calls, p = 1.000e-30, regressed"/>"#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<property name="workload.database" value="rollbacks 0/300 → 1/281, deadlocks 0 → 0, conflicts 0 → 0, temp files 0 → 2"/>"#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<property name="workload" value="not judged: the pg_stat_statements extension is not created in this database"/>"#),
            "{xml}"
        );
    }

    #[test]
    fn trusts_of_an_operator_action_get_a_suite_of_their_own() {
        let mut run = record();
        run.kind = "rollback".into();
        let events: Vec<_> = halted_run()
            .into_iter()
            .filter(|e| {
                e.body["event"].as_str().unwrap().starts_with("rollback")
                    || e.body["event"] == "migration_reverting"
                    || e.body["event"] == "migration_reverted"
            })
            .collect();
        let xml = render(&RunReport::build(run, &events)).unwrap();
        assert!(
            xml.contains(r#"<testsuite name="rio-5.1 / rollback" tests="1""#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<testcase name="camden" classname="rio-5.1.rollback""#),
            "{xml}"
        );
    }
}
