//! The clinicians' experience in the reports (`demo --traffic`): a text summary, the HTML
//! section beside the gate's verdicts (the blast radius and a table of trusts), and each trust's
//! own figures per phase with a plot of its traffic over time.

use std::fmt::Write as _;

use html_escape::{encode_double_quoted_attribute as attr, encode_text as esc};

use crate::traffic::experience::{
    Hurt, KindFigures, Phase, PhaseFigures, TrafficReport, TrustExperience,
};
use crate::traffic::record::ActionKind;

fn ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0} ms"),
        Some(v) => format!("{v:.1} ms"),
        None => "–".into(),
    }
}

fn kind_in(p: Option<&PhaseFigures>, kind: ActionKind) -> Option<&KindFigures> {
    p?.kinds.iter().find(|k| k.kind == kind)
}

impl TrustExperience {
    /// Its figures in `phase`, if it had any.
    pub fn phase(&self, phase: Phase) -> Option<&PhaseFigures> {
        self.phases.iter().find(|p| p.phase == phase)
    }
}

/// `p95 before → p95 upgraded` of one kind.
fn p95_change(t: &TrustExperience, kind: ActionKind) -> String {
    let before = kind_in(t.phase(Phase::Before), kind).and_then(|k| k.p95_ms);
    match kind_in(t.phase(Phase::Upgraded), kind).and_then(|k| k.p95_ms) {
        Some(after) => format!("{} → {}", ms(before), ms(Some(after))),
        None => ms(before),
    }
}

fn hurt_words(h: &Hurt) -> String {
    format!(
        "{} failed, {} slow, {} saves vanished",
        h.failed, h.slow, h.vanished
    )
}

/// One paragraph: the blast radius.
pub fn blast_sentence(r: &TrafficReport) -> String {
    let b = &r.blast;
    let mut s = format!(
        "{} of {} upgraded trust(s) hurt{}: {} clinician action(s) hurt ({} of {} actions on the new version failed on trusts that failed more often than before their upgrade, {} were slow; {} saved note(s) vanished)",
        b.trusts_hurt.len(),
        b.trusts_upgraded,
        if b.trusts_hurt.is_empty() {
            String::new()
        } else {
            format!(" ({})", b.trusts_hurt.join(", "))
        },
        b.hurt.actions,
        b.hurt.failed,
        b.exposed,
        b.hurt.slow,
        b.hurt.vanished,
    );
    if let (Some(at), Some(n)) = (b.halted_at_ms, b.hurt_before_halt) {
        let _ = write!(
            s,
            "; {n} of them before the gate halted the run ({:.1} s into the traffic)",
            at / 1000.0
        );
    }
    s
}

/// The text summary (`demo --traffic`, `flotilla traffic`, `flotilla report RUN`).
pub fn text(r: &TrafficReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "clinicians (simulated, {} actions/s per trust, {} sessions each): {} actions on {} trusts over {:.1} s",
        r.rate,
        r.sessions,
        r.actions,
        r.trusts.len(),
        r.duration_ms / 1000.0
    );
    let _ = writeln!(
        s,
        "  {:<24} {:>7} {:>6} {:>22} {:>22} {:>22} {:>6} {:>8} {:>5}",
        "trust",
        "actions",
        "failed",
        "p95 open-record",
        "p95 caseload",
        "p95 save-note",
        "saved",
        "vanished",
        "hurt"
    );
    for t in &r.trusts {
        let _ = writeln!(
            s,
            "  {:<24} {:>7} {:>6} {:>22} {:>22} {:>22} {:>6} {:>8} {:>5}",
            t.trust,
            t.actions,
            t.failed,
            p95_change(t, ActionKind::OpenRecord),
            p95_change(t, ActionKind::Caseload),
            p95_change(t, ActionKind::SaveNote),
            t.saves,
            t.vanished,
            t.hurt.actions
        );
    }
    for p in &r.problems {
        let _ = writeln!(s, "  problem: {p}");
    }
    let _ = writeln!(s, "blast radius: {}", blast_sentence(r));
    s
}

const PHASE_COLOURS: [(Phase, &str); 4] = [
    (Phase::Migrating, "#ffe0b2"),
    (Phase::Upgraded, "#e8f5e9"),
    (Phase::RollingBack, "#ffccbc"),
    (Phase::RolledBack, "#eceff1"),
];

/// The trust's name, linked to its section when it has one (it took part in the run).
fn trust_link(id: &str, has_section: bool) -> String {
    if has_section {
        format!("<a href=\"#trust-{}\">{}</a>", attr(id), esc(id))
    } else {
        esc(id).into_owned()
    }
}

/// The section of the run's page: definitions, the blast radius, one row per trust.
pub fn section(o: &mut String, r: &TrafficReport, gate_result: impl Fn(&str) -> Option<String>) {
    o.push_str("<h2 id=\"clinicians\">Clinicians' experience (simulated traffic)</h2>\n");
    let _ = writeln!(
        o,
        "<p>{} actions per second per trust from {} staff sessions each (opening records, caseloads, saving notes), in a process of their own, for {:.1} s: {} actions. Every saved note was read back.</p>",
        r.rate,
        r.sessions,
        r.duration_ms / 1000.0,
        r.actions
    );
    let _ = writeln!(
        o,
        "<p><b>Blast radius:</b> {}.</p>",
        esc(&blast_sentence(r))
    );
    let _ = writeln!(
        o,
        "<p class=\"note\">An action is <i>hurt</i> when it started while its trust was on the new version and failed, on a trust that failed actions more often than before its upgrade (one-sided Fisher exact test p &lt; {alpha}, rate at least {ratio}× the pre-upgrade one; every failure counts when fewer than {min} actions ran before), or was slower than that trust's own pre-upgrade p95 for that kind of action while that kind regressed there (one-sided Mann–Whitney U p &lt; {alpha}, median at least {ratio}× and {floor} ms slower); and every saved note found missing or changed after the trust's upgrade began. Actions while a trust was being migrated or rolled back are shown per phase but not counted as hurt.</p>",
        alpha = r.rule.alpha,
        ratio = r.rule.median_ratio,
        floor = r.rule.floor_ms,
        min = r.rule.min_samples,
    );
    for p in &r.problems {
        let _ = writeln!(o, "<p class=\"reason\">{}</p>", esc(p));
    }
    o.push_str("<table>\n<tr><th>trust</th><th>gate</th><th>actions</th><th>failed</th><th>p95 open-record</th><th>p95 caseload</th><th>p95 save-note</th><th>notes saved</th><th>vanished</th><th>missing at end</th><th>on new version</th><th>hurt</th></tr>\n");
    for t in &r.trusts {
        let gate = gate_result(&t.trust);
        let upgraded = t.phase(Phase::Upgraded).map(|p| p.actions).unwrap_or(0);
        let hurt_class = if t.hurt.actions > 0 {
            " class=\"num reason\""
        } else {
            " class=\"num\""
        };
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{upgraded}</td><td{hurt_class} title=\"{}\">{}</td></tr>",
            trust_link(&t.trust, gate.is_some()),
            esc(gate.as_deref().unwrap_or("not started")),
            t.actions,
            t.failed,
            esc(&p95_change(t, ActionKind::OpenRecord)),
            esc(&p95_change(t, ActionKind::Caseload)),
            esc(&p95_change(t, ActionKind::SaveNote)),
            t.saves,
            t.vanished,
            t.missing_at_end.map_or("–".into(), |m| m.to_string()),
            attr(&hurt_words(&t.hurt)),
            t.hurt.actions,
        );
    }
    o.push_str("</table>\n");
}

/// A trust's own block: per phase, the comparison, errors, the plot.
pub fn trust_block(o: &mut String, t: &TrustExperience, duration_ms: f64) {
    let _ = writeln!(
        o,
        "<h3>Clinicians</h3>\n<p>{} actions ({:.1}/s), {} failed; {} notes saved, {} failed to save, {} vanished ({} came back), {} missing at the end{}. Hurt: <b>{}</b> ({}).</p>",
        t.actions,
        t.rate,
        t.failed,
        t.saves,
        t.failed_saves,
        t.vanished,
        t.restored,
        t.missing_at_end.map_or("?".into(), |m| m.to_string()),
        t.verify_error
            .as_deref()
            .map(|e| format!(" (final read-back failed: {})", esc(e)))
            .unwrap_or_default(),
        t.hurt.actions,
        esc(&hurt_words(&t.hurt)),
    );
    o.push_str("<table class=\"traffic\">\n<tr><th>phase</th><th>time</th><th>action</th><th>count</th><th>failed</th><th>p50</th><th>p95</th><th>p99</th><th>max</th></tr>\n");
    for p in &t.phases {
        let rows = p.kinds.len().max(1);
        for (i, k) in p.kinds.iter().enumerate() {
            let head = if i == 0 {
                format!(
                    "<td rowspan=\"{rows}\">{}</td><td rowspan=\"{rows}\" class=\"num\">{:.1} s</td>",
                    p.phase.name(),
                    p.duration_ms / 1000.0
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                o,
                "<tr>{head}<td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                k.kind.name(),
                k.actions,
                k.failed,
                ms(k.p50_ms),
                ms(k.p95_ms),
                ms(k.p99_ms),
                ms(k.max_ms)
            );
        }
        if p.kinds.is_empty() {
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td class=\"num\">{:.1} s</td><td colspan=\"7\">no actions</td></tr>",
                p.phase.name(),
                p.duration_ms / 1000.0
            );
        }
    }
    o.push_str("</table>\n");
    if !t.comparisons.is_empty() {
        o.push_str("<table>\n<tr><th>action</th><th>median before</th><th>median upgraded</th><th>p95 before</th><th>p95 upgraded</th><th>machine ×</th><th>p-value</th><th>regressed</th></tr>\n");
        for c in &t.comparisons {
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.2}</td><td class=\"num\">{:.2e}</td><td>{}</td></tr>",
                c.kind.name(),
                ms(Some(c.before_median_ms)),
                ms(Some(c.upgraded_median_ms)),
                ms(Some(c.before_p95_ms)),
                ms(Some(c.upgraded_p95_ms)),
                c.machine_factor,
                c.p_value,
                if c.regressed { "<b class=\"reason\">yes</b>" } else { "no" }
            );
        }
        o.push_str("</table>\n");
    }
    if !t.errors.is_empty() {
        o.push_str("<ul>\n");
        for e in &t.errors {
            let _ = writeln!(
                o,
                "<li>{} × while {}: <span class=\"reason\">{}</span></li>",
                e.count,
                e.phase.name(),
                esc(&e.message)
            );
        }
        o.push_str("</ul>\n");
    }
    o.push_str(&timeline_svg(t, duration_ms));
}

/// The trust's traffic over time: p95 latency per slice (line), failed actions (red bars),
/// vanished notes (purple marks), on the phases (shaded).
pub fn timeline_svg(t: &TrustExperience, duration_ms: f64) -> String {
    const W: f64 = 760.0;
    const H: f64 = 150.0;
    const LEFT: f64 = 50.0;
    const RIGHT: f64 = 10.0;
    const TOP: f64 = 10.0;
    const BOTTOM: f64 = 28.0;
    let span = duration_ms.max(1.0);
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let x = |t_ms: f64| LEFT + (t_ms / span).clamp(0.0, 1.0) * plot_w;
    let max_p95 = t
        .bins
        .iter()
        .filter_map(|b| b.p95_ms)
        .fold(1.0f64, f64::max);
    let y = |v: f64| TOP + plot_h - (v / max_p95).clamp(0.0, 1.0) * plot_h;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" aria-label="{}"><title>{}</title>"#,
        attr(&format!("clinicians' traffic on {} over time", t.trust)),
        esc(&format!(
            "{}: p95 latency per time slice, failed actions and vanished notes, over the phases of its upgrade",
            t.trust
        ))
    );
    s.push_str(r##"<rect x="0" y="0" width="100%" height="100%" fill="#fff"/>"##);
    let mut edges: Vec<(f64, Phase)> = vec![(0.0, Phase::Before)];
    edges.extend(t.phase_changes.iter().copied());
    for (i, (from, phase)) in edges.iter().enumerate() {
        let to = edges.get(i + 1).map_or(span, |(t, _)| *t);
        if let Some((_, colour)) = PHASE_COLOURS.iter().find(|(p, _)| p == phase) {
            let (a, b) = (x(*from), x(to));
            if b > a {
                let _ = write!(
                    s,
                    r#"<rect x="{a:.1}" y="{TOP}" width="{:.1}" height="{plot_h}" fill="{colour}"><title>{}</title></rect>"#,
                    b - a,
                    phase.name()
                );
            }
        }
    }
    let width = t
        .bins
        .get(1)
        .map_or(span, |b| b.t_ms - t.bins[0].t_ms)
        .max(1.0);
    let mut points = Vec::new();
    for b in &t.bins {
        let mid = b.t_ms + width / 2.0;
        if let Some(p) = b.p95_ms {
            points.push(format!("{:.1},{:.1}", x(mid), y(p)));
        }
        if b.failed > 0 {
            let h = ((b.failed as f64 / b.actions.max(1) as f64) * plot_h).max(2.0);
            let _ = write!(
                s,
                r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="#c62828" fill-opacity="0.7"><title>{} of {} actions failed</title></rect>"##,
                x(b.t_ms),
                TOP + plot_h - h,
                (x(b.t_ms + width) - x(b.t_ms)).max(1.0),
                b.failed,
                b.actions
            );
        }
        if b.vanished > 0 {
            let _ = write!(
                s,
                r##"<circle cx="{:.1}" cy="{:.1}" r="4" fill="#6a1b9a"><title>{} saved note(s) found vanished</title></circle>"##,
                x(mid),
                TOP + 6.0,
                b.vanished
            );
        }
    }
    if !points.is_empty() {
        let _ = write!(
            s,
            r##"<polyline points="{}" fill="none" stroke="#1565c0" stroke-width="1.5"/>"##,
            points.join(" ")
        );
    }
    let axis = TOP + plot_h;
    let _ = write!(
        s,
        r##"<line x1="{LEFT}" y1="{axis}" x2="{:.1}" y2="{axis}" stroke="#888"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{axis}" stroke="#888"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="#555">{}</text><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="#555">0</text>"##,
        W - RIGHT,
        LEFT - 4.0,
        TOP + 10.0,
        esc(&format!("{max_p95:.0} ms")),
        LEFT - 4.0,
        axis
    );
    let secs = span / 1000.0;
    let step = [1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0]
        .into_iter()
        .find(|s| secs / s <= 10.0)
        .unwrap_or(1200.0);
    let mut tick = 0.0;
    while tick <= secs + 1e-9 {
        let tx = x(tick * 1000.0);
        let _ = write!(
            s,
            r##"<line x1="{tx:.1}" y1="{axis}" x2="{tx:.1}" y2="{:.1}" stroke="#888"/><text x="{tx:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="#555">{tick:.0}</text>"##,
            axis + 4.0,
            axis + 16.0
        );
        tick += step;
    }
    let _ = write!(
        s,
        r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="#555">s (p95 per slice; shaded: migrating, upgraded, rolling back, rolled back)</text></svg>"##,
        W - RIGHT,
        H - 2.0
    );
    s.push('\n');
    s
}
