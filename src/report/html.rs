//! `--report-dir DIR`: a self-contained HTML report of a run (`DIR/index.html`): inline CSS,
//! inline SVG plots, no script and nothing fetched, so it reads the same offline or attached
//! to a ticket. Every piece of text from the journal is escaped.

use std::fmt::Write as _;

use html_escape::{encode_double_quoted_attribute as attr, encode_text as esc};

use super::model::{GateReport, RunReport, TrustReport, TrustResult};
use crate::engine::events::Phases;
use crate::health::gate::LatencyComparison;
use crate::health::workload::WorkloadComparison;

const STYLE: &str = r#"
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px; padding: 0 1em; color: #1d1d1f; }
h1 { font-size: 1.6em; margin-bottom: .2em; }
h2 { font-size: 1.25em; margin: 0 0 .4em; }
h3 { font-size: 1em; margin: 1em 0 .3em; }
table { border-collapse: collapse; margin: .4em 0 1em; }
th, td { border: 1px solid #d0d0d5; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f3f3f6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
dl { display: grid; grid-template-columns: max-content auto; gap: .15em 1em; margin: .5em 0 1em; }
dt { color: #555; }
dd { margin: 0; }
section.trust { border: 1px solid #d0d0d5; border-left: 6px solid #999; border-radius: 4px; padding: .8em 1em; margin: 1.2em 0; }
section.passed { border-left-color: #2e7d32; }
section.failed { border-left-color: #c62828; }
section.skipped { border-left-color: #9e9e9e; }
.badge { display: inline-block; padding: 0 .5em; border-radius: 3px; color: #fff; font-size: .85em; font-weight: 600; }
.passed .badge, .badge.passed, .badge.pass, .badge.completed { background: #2e7d32; }
.failed .badge, .badge.failed, .badge.fail, .badge.error, .badge.halted { background: #c62828; }
.skipped .badge, .badge.skipped, .badge.inconclusive, .badge.paused { background: #8d6e00; }
.badge { background: #555; }
.reason { color: #b71c1c; }
pre { white-space: pre-wrap; margin: 0; }
svg { display: block; margin: .4em 0 1em; }
footer { color: #777; margin-top: 2em; font-size: .9em; }
"#;

fn badge(out: &mut String, class: &str, text: &str) {
    let _ = write!(
        out,
        r#"<span class="badge {}">{}</span>"#,
        attr(class),
        esc(text)
    );
}

fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{}m {:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

fn opt(s: Option<&str>) -> String {
    esc(s.unwrap_or("–")).into_owned()
}

/// The report page.
pub fn render(r: &RunReport) -> String {
    let mut o = String::new();
    let run = &r.run;
    let title = format!("flotilla {} — run {}", run.plan, run.run_id);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<header>\n<h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    );
    o.push_str("<dl>\n");
    let mut row = |k: &str, v: String| {
        let _ = writeln!(o, "<dt>{}</dt><dd>{v}</dd>", esc(k));
    };
    let mut status = String::new();
    badge(&mut status, &run.status, &run.status);
    row("status", status);
    row(
        "exit code",
        run.exit_code.map_or("–".into(), |c| c.to_string()),
    );
    row(
        "plan",
        format!("{} ({})", esc(&run.plan), esc(&run.plan_path)),
    );
    row(
        "target",
        match &r.target_release {
            Some(rel) => format!("release {} (version {})", esc(rel), run.target_version),
            None => format!("version {}", run.target_version),
        },
    );
    row("kind", esc(&run.kind).into_owned());
    row("started by", esc(&run.started_by).into_owned());
    row("started at", esc(&run.started_at).into_owned());
    row("last change", esc(&run.updated_at).into_owned());
    row("attempts", run.attempts.to_string());
    row("time running", duration(r.duration_ms));
    if let (Some(w), Some(t)) = (r.planned_waves, r.planned_trusts) {
        row(
            "plan size",
            format!(
                "{w} waves, {t} trusts; {} wave(s) and {} trust(s) took part",
                r.waves.len(),
                r.trusts.len()
            ),
        );
    }
    if let Some(reason) = &run.reason {
        row(
            "why it stopped",
            format!("<pre class=\"reason\">{}</pre>", esc(reason)),
        );
    }
    o.push_str("</dl>\n</header>\n");

    if let Some(p) = &r.phases {
        phases_table(&mut o, p);
    }

    if !r.halts.is_empty() {
        o.push_str("<h2>Halted by the health gate</h2>\n<ul>\n");
        for h in &r.halts {
            let _ = writeln!(
                o,
                "<li>wave <b>{}</b>: <span class=\"reason\">{}</span></li>",
                esc(&h.wave),
                esc(&h.reason)
            );
        }
        o.push_str("</ul>\n");
    }

    if let Some(traffic) = &r.traffic {
        super::traffic::section(&mut o, traffic, |id| {
            r.trust(id).map(|t| t.result().label().to_string())
        });
    }

    o.push_str("<h2>Waves</h2>\n<table>\n<tr><th>#</th><th>wave</th><th>status</th><th>trusts</th><th>approved by</th><th>soak</th><th>started</th><th>took</th></tr>\n");
    for w in &r.waves {
        let mut st = String::new();
        badge(&mut st, &w.status, &w.status);
        let trusts: Vec<String> = w
            .trusts
            .iter()
            .map(|t| format!("<a href=\"#trust-{}\">{}</a>", attr(t), esc(t)))
            .collect();
        let _ = writeln!(
            o,
            "<tr><td class=\"num\">{}</td><td>{}</td><td>{st}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
            w.index + 1,
            esc(&w.name),
            trusts.join(", "),
            opt(w.approved_by.as_deref()),
            w.soak_rounds.map_or("–".into(), |(n, of)| format!("{n}/{of} rounds")),
            opt(w.started_at.as_deref()),
            w.duration_ms.map_or("–".into(), duration),
        );
    }
    o.push_str("</table>\n");

    o.push_str("<h2>Trusts</h2>\n<table>\n<tr><th>trust</th><th>wave</th><th>from</th><th>to</th><th>now at</th><th>result</th><th>took</th></tr>\n");
    for t in &r.trusts {
        let result = t.result();
        let mut b = String::new();
        badge(&mut b, result.label(), result.label());
        let _ = writeln!(
            o,
            "<tr><td><a href=\"#trust-{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{b}</td><td class=\"num\">{}</td></tr>",
            attr(&t.id),
            esc(&t.id),
            esc(&t.wave),
            opt(t.from.as_deref()),
            opt(t.to.as_deref()),
            opt(t.release.as_deref()),
            t.duration_ms.map_or("–".into(), duration),
        );
    }
    o.push_str("</table>\n");

    for t in &r.trusts {
        let traffic = r.traffic.as_ref().and_then(|x| {
            x.trusts
                .iter()
                .find(|e| e.trust == t.id)
                .map(|e| (e, x.duration_ms))
        });
        trust_section(&mut o, t, traffic);
    }
    let _ = write!(
        o,
        "<footer>Written by flotilla {} from the journal of run {} ({} events).</footer>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION"),
        esc(&run.run_id),
        r.events
    );
    o
}

/// Where the run's time went: each sequential phase with its share of the wall time, what
/// none of them covers, then the busy times that overlap them.
fn phases_table(o: &mut String, p: &Phases) {
    let share = |ms: u64| {
        if p.wall_ms == 0 {
            "–".to_string()
        } else {
            format!("{:.1} %", ms as f64 * 100.0 / p.wall_ms as f64)
        }
    };
    o.push_str("<h2>Where the time went</h2>\n<table>\n<tr><th>phase</th><th>time</th><th>share of the wall</th></tr>\n");
    let mut row = |name: &str, ms: u64| {
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(name),
            duration(ms),
            share(ms)
        );
    };
    for (name, ms) in p.sequential() {
        row(name, ms);
    }
    row(
        "other (approvals, bookkeeping)",
        p.wall_ms.saturating_sub(p.sequential_ms()),
    );
    row("wall", p.wall_ms);
    for (name, ms) in p.overlapping() {
        row(&format!("{name} (overlaps the above)"), ms);
    }
    o.push_str("</table>\n");
}

fn trust_section(
    o: &mut String,
    t: &TrustReport,
    traffic: Option<(&crate::traffic::experience::TrustExperience, f64)>,
) {
    let result = t.result();
    let _ = write!(
        o,
        "<section id=\"trust-{}\" class=\"trust {}\">\n<h2>{} ",
        attr(&t.id),
        result.label(),
        esc(&t.id)
    );
    badge(o, result.label(), result.label());
    o.push_str("</h2>\n");
    match &result {
        TrustResult::Passed { summary } => {
            let _ = writeln!(o, "<p>{}</p>", esc(summary));
        }
        TrustResult::Failed { kind, message } => {
            let _ = writeln!(
                o,
                "<p class=\"reason\"><b>{}</b>: {}</p>",
                esc(kind),
                esc(message)
            );
        }
        TrustResult::Skipped { message } => {
            let _ = writeln!(o, "<p>{}</p>", esc(message));
        }
    }
    let _ = writeln!(
        o,
        "<dl><dt>wave</dt><dd>{}</dd><dt>from</dt><dd>{}</dd><dt>to</dt><dd>{}</dd><dt>now at</dt><dd>{} (version {})</dd><dt>status</dt><dd>{}</dd><dt>took</dt><dd>{}</dd></dl>",
        esc(&t.wave),
        opt(t.from.as_deref()),
        opt(t.to.as_deref()),
        opt(t.release.as_deref()),
        t.version.map_or("–".into(), |v| v.to_string()),
        esc(&t.status),
        t.duration_ms.map_or("–".into(), duration),
    );
    if let Some(w) = &t.worker {
        let _ = writeln!(o, "<p>run by worker <code>{}</code></p>", esc(w));
    }
    if !t.migrations.is_empty() {
        o.push_str("<h3>Migrations</h3>\n<table>\n<tr><th>version</th><th>description</th><th>direction</th><th>state</th><th>took</th><th>error</th></tr>\n");
        for m in &t.migrations {
            let _ = writeln!(
                o,
                "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"reason\">{}</td></tr>",
                m.version,
                esc(&m.description),
                esc(&m.direction),
                esc(&m.state),
                m.duration_ms.map_or("–".into(), |d| format!("{d} ms")),
                esc(m.error.as_deref().unwrap_or("")),
            );
        }
        o.push_str("</table>\n");
    }
    if let Some(rb) = &t.rollback {
        let _ = writeln!(
            o,
            "<p>Rolled back {} → {}: <b>{}</b>{}{}</p>",
            esc(&rb.from),
            esc(&rb.to),
            esc(&rb.state),
            rb.error
                .as_deref()
                .map(|e| format!(" <span class=\"reason\">{}</span>", esc(e)))
                .unwrap_or_default(),
            rb.worker
                .as_deref()
                .map(|w| format!(" (by worker <code>{}</code>)", esc(w)))
                .unwrap_or_default()
        );
    }
    for e in &t.retries {
        let _ = writeln!(o, "<p>Retried after: {}</p>", esc(e));
    }
    if !t.gates.is_empty() {
        o.push_str("<h3>Health gate</h3>\n<table>\n<tr><th>window</th><th>attempt</th><th>verdict</th><th>reasons</th></tr>\n");
        for g in &t.gates {
            let mut b = String::new();
            badge(&mut b, &g.verdict, &g.verdict);
            let mut reasons: Vec<String> = g.reasons.iter().map(|r| esc(r).into_owned()).collect();
            if let Some(w) = &g.writes {
                reasons.push(esc(&w.describe()).into_owned());
            }
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td class=\"num\">{}</td><td>{b}</td><td class=\"reason\">{}</td></tr>",
                esc(&g.label),
                g.attempt,
                reasons.join("<br/>")
            );
        }
        o.push_str("</table>\n");
        for g in t.gates.iter().filter(|g| !g.latency.is_empty()) {
            latency_table(o, g);
        }
        for g in &t.gates {
            if let Some(w) = &g.workload {
                workload_tables(o, &g.label, w);
            }
        }
    }
    if let Some(why) = &t.workload_unavailable {
        let _ = writeln!(
            o,
            "<p>Real workload not judged: {}. The probes are this trust's only signal.</p>",
            esc(why)
        );
    }
    match t.post_upgrade() {
        Some(g) => {
            let _ = writeln!(
                o,
                "<h3>Latency before and after the upgrade</h3>\n<p>Each dot is one execution of the probe as measured (before any discount for a machine slowdown); the bar is the median.</p>"
            );
            o.push_str(&latency_svg(&t.id, g));
        }
        None => o.push_str("<p>No post-upgrade latency figures were recorded.</p>\n"),
    }
    if let Some((e, duration_ms)) = traffic {
        super::traffic::trust_block(o, e, duration_ms);
    }
    o.push_str("</section>\n");
}

fn latency_table(o: &mut String, g: &GateReport) {
    let _ = writeln!(
        o,
        "<table>\n<caption>latency, {}</caption>\n<tr><th>probe</th><th>median before</th><th>median after</th><th>p95 before</th><th>p95 after</th><th>p99 before</th><th>p99 after</th><th>shift</th><th>p-value</th><th>machine ×</th><th>samples</th><th>regressed</th></tr>",
        esc(&g.label)
    );
    for l in &g.latency {
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td class=\"num\">{:.3} ms</td><td class=\"num\">{:.3} ms</td><td class=\"num\">{:.3} ms</td><td class=\"num\">{:.3} ms</td><td class=\"num\">{:.3} ms</td><td class=\"num\">{:.3} ms</td><td class=\"num\">{:+.3} ms</td><td class=\"num\">{:.2e}</td><td class=\"num\">{:.2}</td><td>{}</td><td>{}</td></tr>",
            esc(&l.probe),
            l.baseline_median_ms,
            l.median_ms,
            l.baseline_p95_ms,
            l.p95_ms,
            l.baseline_p99_ms,
            l.p99_ms,
            l.shift_ms,
            l.p_value,
            l.machine_factor,
            esc(&samples_taken(l)),
            if l.regressed { "<b class=\"reason\">yes</b>" } else { "no" }
        );
    }
    o.push_str("</table>\n");
}

/// How many samples a window's probe took: "15 of 40, pass early" when the sequential rule
/// stopped it, "40 of 40" at the cap, "-" for verdicts journalled before sampling was recorded.
fn samples_taken(l: &crate::health::gate::LatencyComparison) -> String {
    match &l.sampling {
        Some(s) if s.stopped_early() => {
            format!("{} of {}, {} early", s.samples, s.cap, s.decision_label())
        }
        Some(s) => format!("{} of {}", s.samples, s.cap),
        None => "-".to_string(),
    }
}

/// The real workload of one verdict (PostgreSQL with `pg_stat_statements`): the statements
/// compared, the new ones, and the database's error signals.
fn workload_tables(o: &mut String, label: &str, w: &WorkloadComparison) {
    let _ = writeln!(
        o,
        "<table>\n<caption>real workload, {} (baseline window {:.1} s, this window {:.1} s, machine ×{:.2})</caption>\n<tr><th>statement (normalised)</th><th>calls before</th><th>calls after</th><th>mean before</th><th>mean after</th><th>ratio</th><th>p-value</th><th>regressed</th></tr>",
        esc(label),
        w.baseline_seconds,
        w.seconds,
        w.machine_factor
    );
    for s in &w.statements {
        let _ = writeln!(
            o,
            "<tr><td><code>{}</code></td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.3} ms</td><td class=\"num\">{:.3} ms</td><td class=\"num\">×{:.2}</td><td class=\"num\">{:.2e}</td><td>{}</td></tr>",
            esc(&s.query),
            s.baseline_calls,
            s.calls,
            s.baseline_mean_ms,
            s.mean_ms,
            s.ratio,
            s.p_value,
            if s.regressed { "<b class=\"reason\">yes</b>" } else { "no" }
        );
    }
    for s in &w.new_statements {
        let _ = writeln!(
            o,
            "<tr><td><code>{}</code></td><td class=\"num\">–</td><td class=\"num\">{}</td><td class=\"num\">–</td><td class=\"num\">{:.3} ms</td><td colspan=\"3\">new since the baseline (not judged)</td></tr>",
            esc(&s.query),
            s.calls,
            s.mean_ms
        );
    }
    o.push_str("</table>\n");
    let _ = writeln!(
        o,
        "<p>{} statements compared; {} more beyond the top ones; {} with too few calls in a window; {} new (only after the upgrade); {} not seen again.</p>",
        w.statements.len(),
        w.beyond_top,
        w.too_few_calls,
        w.new_count,
        w.gone
    );
    if let Some(d) = &w.database {
        let _ = writeln!(
            o,
            "<table>\n<caption>database signals, {}</caption>\n<tr><th></th><th>baseline</th><th>this window</th></tr>\n<tr><td>transactions rolled back</td><td class=\"num\">{} of {} ({:.1}%)</td><td class=\"num\">{} of {} ({:.1}%){}</td></tr>\n<tr><td>deadlocks</td><td class=\"num\">{}</td><td class=\"num\">{}{}</td></tr>\n<tr><td>recovery conflicts</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n<tr><td>temporary files</td><td class=\"num\">{} ({} bytes)</td><td class=\"num\">{} ({} bytes)</td></tr>\n</table>",
            esc(label),
            d.baseline.rollbacks,
            d.baseline.commits + d.baseline.rollbacks,
            d.baseline_rollback_rate * 100.0,
            d.window.rollbacks,
            d.window.commits + d.window.rollbacks,
            d.rollback_rate * 100.0,
            if d.rollbacks_regressed { " <b class=\"reason\">regressed</b>" } else { "" },
            d.baseline.deadlocks,
            d.window.deadlocks,
            if d.deadlocks_regressed { " <b class=\"reason\">regressed</b>" } else { "" },
            d.baseline.conflicts,
            d.window.conflicts,
            d.baseline.temp_files,
            d.baseline.temp_bytes,
            d.window.temp_files,
            d.window.temp_bytes,
        );
    }
    for n in &w.notes {
        let _ = writeln!(o, "<p>{}</p>", esc(n));
    }
}

/// A step of 1, 2 or 5 × 10^k giving about `n` ticks up to `max`.
fn tick_step(max: f64, n: f64) -> f64 {
    let raw = max / n;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn median(xs: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// One SVG: per probe, a strip of the baseline samples above a strip of the post-upgrade ones,
/// on a shared millisecond axis.
pub fn latency_svg(trust: &str, g: &GateReport) -> String {
    const W: f64 = 760.0;
    const LEFT: f64 = 150.0;
    const RIGHT: f64 = 30.0;
    const ROW: f64 = 24.0;
    const BLOCK: f64 = 18.0 + 2.0 * ROW + 30.0;
    let height = 10.0 + BLOCK * g.latency.len() as f64;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" role="img" aria-label="{}"><title>{}</title>"#,
        attr(&format!("latency of {trust}, baseline against {}", g.label)),
        esc(&format!(
            "{trust}: latency per probe, baseline against {}",
            g.label
        )),
    );
    s.push_str(r##"<rect x="0" y="0" width="100%" height="100%" fill="#fff"/>"##);
    for (i, l) in g.latency.iter().enumerate() {
        probe_block(
            &mut s,
            l,
            &g.label,
            10.0 + BLOCK * i as f64,
            W,
            LEFT,
            RIGHT,
            ROW,
        );
    }
    s.push_str("</svg>\n");
    s
}

#[allow(clippy::too_many_arguments)]
fn probe_block(
    s: &mut String,
    l: &LatencyComparison,
    window: &str,
    top: f64,
    w: f64,
    left: f64,
    right: f64,
    row: f64,
) {
    let finite = |v: &[f64]| -> Vec<f64> { v.iter().copied().filter(|x| x.is_finite()).collect() };
    let before = finite(&l.baseline_ms);
    let after = finite(&l.samples_ms);
    let max = before
        .iter()
        .chain(&after)
        .copied()
        .fold(0.0f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let step = tick_step(max, 5.0);
    let axis_max = (max / step).ceil() * step;
    let plot_w = w - left - right;
    let x = |v: f64| left + (v / axis_max).clamp(0.0, 1.0) * plot_w;
    let _ = write!(
        s,
        r##"<text x="4" y="{:.1}" font-size="13" font-weight="bold" fill="#1d1d1f">{}{}</text>"##,
        top + 13.0,
        esc(&l.probe),
        if l.regressed { " — regressed" } else { "" }
    );
    let rows = [
        ("baseline", &before, "#1565c0"),
        (
            window,
            &after,
            if l.regressed { "#c62828" } else { "#2e7d32" },
        ),
    ];
    for (k, (label, samples, colour)) in rows.iter().enumerate() {
        let y = top + 18.0 + row * k as f64 + row / 2.0;
        let _ = write!(
            s,
            r##"<text x="4" y="{:.1}" font-size="12" fill="#444">{} (n={})</text><line x1="{left:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/>"##,
            y + 4.0,
            esc(label),
            samples.len(),
            w - right
        );
        for v in samples.iter() {
            let _ = write!(
                s,
                r#"<circle cx="{:.1}" cy="{y:.1}" r="3" fill="{colour}" fill-opacity="0.45"/>"#,
                x(*v)
            );
        }
        if let Some(m) = median(samples) {
            let _ = write!(
                s,
                r#"<line x1="{mx:.1}" y1="{:.1}" x2="{mx:.1}" y2="{:.1}" stroke="{colour}" stroke-width="2.5"><title>median {m:.3} ms</title></line>"#,
                y - row / 2.0 + 3.0,
                y + row / 2.0 - 3.0,
                mx = x(m)
            );
        }
    }
    let axis_y = top + 18.0 + 2.0 * row + 4.0;
    let _ = write!(
        s,
        r##"<line x1="{left:.1}" y1="{axis_y:.1}" x2="{:.1}" y2="{axis_y:.1}" stroke="#888"/>"##,
        w - right
    );
    let ticks = (axis_max / step).round() as usize;
    for i in 0..=ticks.min(20) {
        let v = step * i as f64;
        let tx = x(v);
        let _ = write!(
            s,
            r##"<line x1="{tx:.1}" y1="{axis_y:.1}" x2="{tx:.1}" y2="{:.1}" stroke="#888"/><text x="{tx:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="#555">{}</text>"##,
            axis_y + 4.0,
            axis_y + 16.0,
            format_tick(v, step)
        );
    }
    let _ = write!(
        s,
        r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="#555">ms</text>"##,
        w - 2.0,
        axis_y + 16.0
    );
}

fn format_tick(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    format!("{v:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::model::tests::{halted_run, phased_run, record};

    #[test]
    fn journal_text_is_escaped_and_each_trust_has_a_section() {
        let html = render(&RunReport::build(record(), &halted_run()));
        assert!(html.contains("add &lt;smartcard&gt; &amp; co"), "{html}");
        assert!(!html.contains("<smartcard>"));
        assert!(html.contains(r#"<section id="trust-camden" class="trust failed">"#));
        assert!(html.contains(r#"<section id="trust-islington" class="trust passed">"#));
        assert_eq!(
            html.matches("<svg ").count(),
            1,
            "only camden has latency figures"
        );
    }

    #[test]
    fn workload_figures_are_shown_escaped_with_the_regressed_statement() {
        let html = render(&RunReport::build(
            record(),
            &crate::report::model::tests::workload_run(),
        ));
        assert!(html.contains("real workload, post-upgrade"), "{html}");
        assert!(
            html.contains("SELECT at FROM audit_log WHERE entity_id &lt; $1"),
            "{html}"
        );
        assert!(html.contains("new since the baseline"), "{html}");
        assert!(html.contains("1 of 281 (0.4%)"), "{html}");
        assert!(
            html.contains("Real workload not judged: the pg_stat_statements extension is not created in this database."),
            "{html}"
        );
    }

    #[test]
    fn each_probe_says_how_many_samples_its_window_took() {
        let old = render(&RunReport::build(record(), &halted_run()));
        assert!(old.contains("<th>samples</th>"), "{old}");
        assert!(
            !old.contains(" early</td>"),
            "a journal from before sequential sampling says nothing about it"
        );
        let mut events = halted_run();
        let verdict = events
            .iter_mut()
            .find(|e| {
                e.body["event"] == "health_verdict"
                    && e.body["latency"].as_array().is_some_and(|l| !l.is_empty())
            })
            .expect("the halted run has a verdict with latency figures");
        verdict.body["latency"][0]["sampling"] = serde_json::json!({
            "samples": 15, "cap": 40, "decision": "fail", "confidence": 0.99
        });
        verdict.event = crate::engine::Event::from_json(&verdict.body);
        let html = render(&RunReport::build(record(), &events));
        assert!(html.contains("<td>15 of 40, fail early</td>"), "{html}");
    }

    #[test]
    fn the_phase_breakdown_is_shown_when_the_journal_has_it_and_left_out_when_not() {
        let old = render(&RunReport::build(record(), &halted_run()));
        assert!(
            !old.contains("Where the time went"),
            "an older journal has none"
        );
        let r = RunReport::build(record(), &phased_run());
        assert_eq!(r.phases.map(|p| p.migrate_ms), Some(3000));
        let html = render(&r);
        assert!(html.contains("<h2>Where the time went</h2>"), "{html}");
        assert!(html.contains("<tr><td>migrate</td><td class=\"num\">3.0 s</td><td class=\"num\">30.0 %</td></tr>"), "{html}");
        assert!(
            html.contains(
                "<tr><td>other (approvals, bookkeeping)</td><td class=\"num\">100 ms</td>"
            ),
            "{html}"
        );
    }

    #[test]
    fn ticks_are_round_numbers() {
        assert_eq!(tick_step(4.3, 5.0), 1.0);
        assert_eq!(tick_step(0.27, 5.0), 0.1);
        assert_eq!(tick_step(37.0, 5.0), 10.0);
        assert_eq!(format_tick(0.2, 0.1), "0.2");
        assert_eq!(format_tick(20.0, 10.0), "20");
    }

    #[test]
    fn median_ignores_non_finite_samples() {
        assert_eq!(median(&[3.0, f64::NAN, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[]), None);
    }
}
