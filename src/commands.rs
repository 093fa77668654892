//! One function per subcommand: resolve arguments into typed configuration, call the library,
//! print, and return the documented exit code.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures::stream::{self, StreamExt};
use serde_json::json;

use crate::cli::Format;
use crate::config::{ConfigError, Inventory, Plan, Wave};
use crate::db::sql;
use crate::engine::events::Fanout;
use crate::engine::run::{read_state, READ_CONCURRENCY};
use crate::engine::{preflight, Approver, EventSink, RunOutcome, TrustOutcome};
use crate::exit_codes::ExitCode;
use crate::migrations::{Catalog, CatalogError, Catalogs};
use crate::plan::{Action, RolloutPlan};
use crate::report::{Human, JsonLines};

/// `println!` that never panics: a closed pipe (`flotilla status | head`) is not an error.
/// Text for people: secrets scrubbed, control characters from the user's files escaped.
macro_rules! outln {
    () => {{
        let _ = writeln!(std::io::stdout().lock());
    }};
    ($($arg:tt)*) => {{
        let text = crate::printable::for_output(&format!($($arg)*));
        let _ = writeln!(std::io::stdout().lock(), "{text}");
    }};
}

/// JSON for programs: every password flotilla read is masked where it appears; serde_json
/// already escapes control characters (the terminal escaping of [`outln`] would make it
/// invalid JSON), and SQL in it stays exact.
macro_rules! jsonln {
    ($value:expr) => {{
        let text = $value.to_string();
        let _ = writeln!(
            std::io::stdout().lock(),
            "{}",
            crate::secrets::scrub_registered(&text)
        );
    }};
}

/// Print one line on stdout (a closed pipe is not an error).
pub(crate) fn print_line(line: &str) {
    outln!("{line}");
}

/// A command that could not do its job: the exit code and the message for stderr.
#[derive(Debug)]
pub struct Failure {
    /// Documented exit code.
    pub code: ExitCode,
    /// What went wrong, naming the file, trust or migration.
    pub message: String,
}

impl Failure {
    pub(crate) fn new(code: ExitCode, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::new(ExitCode::Config, e.to_string())
    }
}

impl From<crate::journal::StateError> for Failure {
    fn from(e: crate::journal::StateError) -> Self {
        Failure::new(e.exit_code(), e.to_string())
    }
}

impl From<CatalogError> for Failure {
    fn from(e: CatalogError) -> Self {
        Failure::new(ExitCode::Config, e.to_string())
    }
}

/// `trust 'id': message`, without saying the trust twice when the message already names it.
fn about_trust(id: &str, message: &str) -> String {
    if message.starts_with(&format!("trust '{id}'")) {
        message.to_string()
    } else {
        format!("trust '{id}': {message}")
    }
}

/// The result of a command.
pub type Outcome = Result<(), Failure>;

/// Options shared by every command.
#[derive(Debug, Clone)]
pub struct Globals {
    /// The estate file.
    pub inventory: PathBuf,
    /// The migrations directory.
    pub migrations: PathBuf,
    /// flotilla's state database: a file path or a Postgres URL.
    pub state: String,
    /// How long the estate lease lives without a heartbeat.
    pub lease_ttl: std::time::Duration,
    /// Progress bars allowed (stdout is a terminal and `--no-progress` was not given).
    pub progress: bool,
    /// Colour allowed (`NO_COLOR` is unset or empty, as no-color.org defines it).
    pub color: bool,
}

impl Globals {
    pub(crate) fn load(&self) -> Result<(Inventory, Catalogs), Failure> {
        let inventory = Inventory::load(&self.inventory)?;
        let catalogs = Catalogs::load(Catalog::load(&self.migrations)?, &inventory)?;
        Ok((inventory, catalogs))
    }

    pub(crate) fn load_plan(&self, plan: &Path) -> Result<(Inventory, Catalogs, Plan), Failure> {
        let (inventory, catalogs) = self.load()?;
        let plan = Plan::load(plan, &inventory, catalogs.base())?;
        Ok((inventory, catalogs, plan))
    }
}

/// `flotilla validate [PLAN]`.
pub async fn validate(g: &Globals, plan: Option<&Path>) -> Outcome {
    let (inventory, catalogs) = crate::commands_lint::load_linted(g)?;
    let catalog = catalogs.base();
    let mut regions: Vec<(String, usize)> = Vec::new();
    for t in &inventory.trusts {
        match regions.iter_mut().find(|(r, _)| *r == t.region) {
            Some((_, n)) => *n += 1,
            None => regions.push((t.region.clone(), 1)),
        }
    }
    let regions: Vec<String> = regions.iter().map(|(r, n)| format!("{n} {r}")).collect();
    outln!(
        "{}: {} trusts ({})",
        inventory.path.display(),
        inventory.trusts.len(),
        regions.join(", ")
    );
    let releases: Vec<String> = catalog
        .releases()
        .map(|(n, v)| format!("{n} (to {v})"))
        .collect();
    outln!(
        "{}: {} migrations, releases: {}",
        catalog.dir().display(),
        catalog.migrations().len(),
        if releases.is_empty() {
            "none".into()
        } else {
            releases.join(", ")
        }
    );
    let lint = crate::commands_lint::check_migrations(&inventory, &catalogs, None).await?;
    crate::commands_lint::print_text(&lint);
    crate::commands_lint::failure_of(&lint)?;
    if let Some(path) = plan {
        let plan = Plan::load(path, &inventory, catalog)?;
        outln!(
            "{}: plan {}, {} waves, {} trusts, target {}",
            path.display(),
            plan.name,
            plan.waves.len(),
            plan.trusts().count(),
            describe_target(&plan)
        );
        for w in &plan.waves {
            outln!(
                "  wave {}: {} trusts, {} at a time{}",
                w.name,
                w.trusts.len(),
                w.concurrency,
                approval_note(w)
            );
        }
        if !plan.health.is_empty() {
            crate::health::probes::check_against_schema(&plan.health, catalog, plan.target.version)
                .await
                .map_err(|e| {
                    // The statements are compiled on a scratch database, not a trust: its
                    // name means nothing to the reader.
                    let e = e.strip_prefix("trust 'schema-check': ").unwrap_or(&e);
                    let at = plan
                        .locate_health(e)
                        .map(|(line, column)| format!(":{line}:{column}"))
                        .unwrap_or_default();
                    Failure::new(
                        ExitCode::Config,
                        format!("{}{at}: health: {e}", path.display()),
                    )
                })?;
            let h = &plan.health;
            outln!(
                "  health: {} latency probes, {}write probe, {} integrity tables, {} invariants; checked against the schema at version {}; every probe statement parsed and read-only (the write probe: one-row insert, cleanup by id)",
                h.latency_probes.len(),
                if h.write_probe.is_some() { "a " } else { "no " },
                h.integrity.len(),
                h.invariants.len(),
                plan.target.version
            );
            let w = &h.workload;
            if w.enabled {
                outln!(
                    "  real workload: on PostgreSQL trusts with pg_stat_statements, the top {} statements by total time with at least {} calls in the baseline and the window are judged; a window with traffic lasts at least {}",
                    w.statements,
                    w.min_calls,
                    humantime::format_duration(w.min_window)
                );
            } else {
                outln!("  real workload: not judged (workload.enabled: false)");
            }
            print_write_sizing(&plan);
        }
    }
    outln!("ok: valid");
    Ok(())
}

/// The write probe's sizing per wave (`validate`, `plan`): how many writes each window makes
/// and the loss rate they catch.
fn print_write_sizing(plan: &Plan) {
    let mut lines: Vec<(String, Vec<&str>)> = Vec::new();
    for w in &plan.waves {
        let Some(Ok(sizing)) = plan.health.write_sizing(w.soak) else {
            continue;
        };
        let text = sizing.describe();
        match lines.iter_mut().find(|(t, _)| *t == text) {
            Some((_, waves)) => waves.push(&w.name),
            None => lines.push((text, vec![&w.name])),
        }
    }
    for (text, waves) in lines {
        outln!("  write probe ({}): {text}", waves.join(", "));
    }
}

fn write_sizing_json(plan: &Plan) -> serde_json::Value {
    let waves: serde_json::Map<String, serde_json::Value> = plan
        .waves
        .iter()
        .filter_map(|w| match plan.health.write_sizing(w.soak)? {
            Ok(s) => Some((w.name.clone(), json!(s))),
            Err(_) => None,
        })
        .collect();
    json!(waves)
}

fn describe_target(plan: &Plan) -> String {
    match &plan.target.release {
        Some(r) => format!("release {r} (version {})", plan.target.version),
        None => format!("version {}", plan.target.version),
    }
}

fn approval_note(w: &Wave) -> &'static str {
    match w.approval {
        crate::config::plan::Approval::Required => ", needs approval",
        crate::config::plan::Approval::None => "",
    }
}

/// `flotilla plan PLAN`.
pub async fn plan(g: &Globals, path: &Path, format: Format, with_sql: bool) -> Outcome {
    let (inventory, catalogs, plan) = g.load_plan(path)?;
    let planned = preflight(&inventory, &catalogs, &plan).await.plan;
    match (format, with_sql) {
        (Format::Json, _) => {
            let mut v = plan_json(&planned, &catalogs, with_sql, &inventory);
            if plan.health.write_probe.is_some() {
                v["write_probe"] = write_sizing_json(&plan);
            }
            jsonln!(v)
        }
        (Format::Text, false) => {
            print_plan_text(&planned, catalogs.base());
            print_write_sizing(&plan);
        }
        (Format::Text, true) => print_plan_sql(&planned, &catalogs, &inventory),
    }
    blocked_failure(&planned)
}

fn blocked_failure(planned: &RolloutPlan) -> Outcome {
    let blocked: Vec<_> = planned.blocked().collect();
    match planned.blocked_exit_code() {
        None => Ok(()),
        Some(code) => {
            let lines: Vec<String> = blocked
                .iter()
                .map(|(id, b)| format!("  {}", about_trust(id, &b.to_string())))
                .collect();
            Err(Failure::new(
                code,
                format!(
                    "nothing was changed: {} trust(s) cannot be migrated:\n{}",
                    blocked.len(),
                    lines.join("\n")
                ),
            ))
        }
    }
}

fn dialect_of(inventory: &Inventory, id: &str) -> crate::db::Dialect {
    match inventory.get(id).map(|t| &t.database) {
        Some(crate::config::DatabaseTarget::Postgres { .. }) => crate::db::Dialect::Postgres,
        _ => crate::db::Dialect::Sqlite,
    }
}

/// The statements a trust's upgrade runs, in order, including flotilla's own.
fn trust_sql(catalogs: &Catalogs, inventory: &Inventory, id: &str, action: &Action) -> Vec<String> {
    let Action::Upgrade { steps } = action else {
        return Vec::new();
    };
    let catalog = catalogs.for_trust(id);
    let dialect = dialect_of(inventory, id);
    let mut out = vec![
        sql::lock_statement(dialect),
        format!("{};", sql::CREATE_TRACKING_TABLE),
    ];
    for step in steps {
        if let Some(m) = catalog.get(step.version) {
            out.extend(sql::render_apply(m));
        }
    }
    out.push(sql::unlock_statement(dialect));
    out
}

fn plan_json(
    planned: &RolloutPlan,
    catalogs: &Catalogs,
    with_sql: bool,
    inventory: &Inventory,
) -> serde_json::Value {
    let catalog = catalogs.base();
    let waves: Vec<serde_json::Value> = planned
        .waves
        .iter()
        .map(|w| {
            let trusts: Vec<serde_json::Value> = w
                .trusts
                .iter()
                .map(|t| {
                    let (action, migrations, reason) = match &t.action {
                        Action::UpToDate => ("up-to-date", vec![], None),
                        Action::Upgrade { steps } => ("upgrade", steps.iter().map(|s| s.version).collect(), None),
                        Action::Blocked { blocker } => ("blocked", vec![], Some(blocker.to_string())),
                    };
                    let mut v = json!({
                        "id": t.id,
                        "current_version": t.current_version,
                        "current_release": catalog.describe(t.current_version),
                        "action": action,
                        "migrations": migrations,
                        "reason": reason,
                    });
                    if with_sql {
                        v["sql"] = json!(trust_sql(catalogs, inventory, &t.id, &t.action));
                    }
                    v
                })
                .collect();
            json!({ "name": w.name, "concurrency": w.concurrency, "approval": w.approval, "trusts": trusts })
        })
        .collect();
    json!({
        "plan": planned.plan,
        "target_version": planned.target.version,
        "target_release": planned.target.release,
        "migrations": planned.migration_count(),
        "waves": waves,
    })
}

pub(crate) fn print_plan_text(planned: &RolloutPlan, catalog: &Catalog) {
    outln!(
        "plan {}: target {} (version {}), {} migrations to apply",
        planned.plan,
        planned.target.release.as_deref().unwrap_or("-"),
        planned.target.version,
        planned.migration_count()
    );
    for (i, w) in planned.waves.iter().enumerate() {
        outln!(
            "wave {} {}: {} trusts, {} at a time{}",
            i + 1,
            w.name,
            w.trusts.len(),
            w.concurrency,
            if w.approval { ", needs approval" } else { "" }
        );
        for t in &w.trusts {
            let from = catalog.describe(t.current_version);
            match &t.action {
                Action::UpToDate => outln!("  {:<22} {from}: up to date", t.id),
                Action::Upgrade { steps } => {
                    let versions: Vec<String> =
                        steps.iter().map(|s| s.version.to_string()).collect();
                    outln!(
                        "  {:<22} {from} → {}: apply {}",
                        t.id,
                        catalog.describe(Some(planned.target.version)),
                        versions.join(", ")
                    );
                }
                Action::Blocked { blocker } => outln!("  {:<22} BLOCKED: {blocker}", t.id),
            }
        }
    }
}

fn print_plan_sql(planned: &RolloutPlan, catalogs: &Catalogs, inventory: &Inventory) {
    outln!(
        "-- flotilla plan {} → version {}",
        planned.plan,
        planned.target.version
    );
    for w in &planned.waves {
        outln!(
            "\n-- ===== wave {} ({} at a time) =====",
            w.name,
            w.concurrency
        );
        for t in &w.trusts {
            let target = inventory
                .get(&t.id)
                .map(|t| t.database.redacted())
                .unwrap_or_default();
            match &t.action {
                Action::Upgrade { .. } => {
                    outln!("\n-- ----- trust {} ({target}) -----", t.id);
                    for stmt in trust_sql(catalogs, inventory, &t.id, &t.action) {
                        outln!("{stmt}");
                    }
                }
                Action::UpToDate => outln!("\n-- trust {}: up to date, nothing runs", t.id),
                Action::Blocked { blocker } => {
                    outln!("\n-- trust {}: BLOCKED, nothing runs: {blocker}", t.id)
                }
            }
        }
    }
}

/// Who approves approval waves: `--yes` (all of them), `--approve WAVE` (those named), or the
/// operator at the terminal. Without a terminal nothing is asked.
pub struct Prompt {
    /// Every wave is approved, by this (`--yes`, or `rehearsal`).
    all: Option<String>,
    /// Waves approved with `--approve`.
    approved: Vec<String>,
}

impl Prompt {
    /// `--yes` and the `--approve` waves, which must be waves of `plan`.
    pub(crate) fn new(yes: bool, approve: &[String], plan: &Plan) -> Result<Prompt, Failure> {
        let unknown: Vec<&String> = approve
            .iter()
            .filter(|a| !plan.waves.iter().any(|w| &w.name == *a))
            .collect();
        if !unknown.is_empty() {
            let names: Vec<&str> = plan.waves.iter().map(|w| w.name.as_str()).collect();
            return Err(Failure::new(
                ExitCode::Config,
                format!(
                    "--approve names no wave of {}: {} (its waves: {})",
                    plan.path.display(),
                    unknown
                        .iter()
                        .map(|s| format!("'{s}'"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    names.join(", ")
                ),
            ));
        }
        Ok(Prompt {
            all: yes.then(|| "--yes".to_string()),
            approved: approve.to_vec(),
        })
    }

    /// Approves every wave (rehearsals: nothing real is changed).
    pub(crate) fn all(by: &str) -> Prompt {
        Prompt {
            all: Some(by.to_string()),
            approved: Vec::new(),
        }
    }

    /// Whether the operator may be asked (stdin is a terminal and --yes was not given).
    pub(crate) fn may_ask(&self) -> bool {
        self.all.is_none() && std::io::stdin().is_terminal()
    }

    fn approved_in_advance(&self, wave: &str) -> Option<String> {
        if let Some(by) = &self.all {
            Some(by.clone())
        } else if self.approved.iter().any(|a| a == wave) {
            Some("--approve".into())
        } else {
            None
        }
    }

    /// Without a terminal, every approval wave among `waves` that will run must have been
    /// approved in advance: exit 2 naming the others, before anything is changed.
    pub(crate) fn require_in_advance<'w>(
        &self,
        waves: impl IntoIterator<Item = &'w str>,
    ) -> Outcome {
        if self.all.is_some() || std::io::stdin().is_terminal() {
            return Ok(());
        }
        let missing: Vec<&str> = waves
            .into_iter()
            .filter(|w| self.approved_in_advance(w).is_none())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(Failure::new(
            ExitCode::Config,
            format!(
                "wave(s) {} need approval and stdin is not a terminal, so flotilla cannot ask: pass {} (or --yes); nothing was changed",
                missing
                    .iter()
                    .map(|w| format!("'{w}'"))
                    .collect::<Vec<_>>()
                    .join(", "),
                missing
                    .iter()
                    .map(|w| format!("--approve {w}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        ))
    }
}

pub(crate) fn ask(question: &str) -> bool {
    tokio::task::block_in_place(|| {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "{question} [y/N] ");
        let _ = err.flush();
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).is_ok()
            && matches!(line.trim(), "y" | "Y" | "yes")
    })
}

impl Approver for Prompt {
    fn approve(&self, wave: &Wave) -> Option<String> {
        if let Some(by) = self.approved_in_advance(&wave.name) {
            return Some(by);
        }
        if self.may_ask()
            && ask(&format!(
                "Start wave {} ({} trusts, approval required)?",
                wave.name,
                wave.trusts.len()
            ))
        {
            return Some("operator".into());
        }
        None
    }
}

/// `flotilla completions SHELL`.
pub fn completions(shell: clap_complete::Shell) -> Outcome {
    let mut cmd = <crate::cli::Cli as clap::CommandFactory>::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut cmd, "flotilla", &mut out);
    Ok(())
}

/// `flotilla man`.
pub fn man_page() -> Outcome {
    let cmd = <crate::cli::Cli as clap::CommandFactory>::command();
    let mut out = std::io::stdout().lock();
    clap_mangen::Man::new(cmd)
        .render(&mut out)
        .or_else(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => Ok(()),
            _ => Err(Failure::new(
                ExitCode::Internal,
                format!("cannot write the man page: {e}"),
            )),
        })
}

pub(crate) fn event_sinks(g: &Globals, events: Option<&Path>) -> Result<Fanout, Failure> {
    let events_on_stdout = events.is_some_and(|p| p == Path::new("-"));
    let human = if events_on_stdout {
        Human::on_stderr(g.progress, g.color)
    } else {
        Human::new(g.progress, g.color)
    };
    let mut sinks: Vec<Box<dyn EventSink>> = vec![Box::new(human)];
    match events {
        None => {}
        Some(_) if events_on_stdout => sinks.push(Box::new(JsonLines::new(std::io::stdout()))),
        Some(p) => {
            let file = std::fs::File::create(p).map_err(|e| {
                Failure::new(
                    ExitCode::Config,
                    format!("cannot create events file {}: {e}", p.display()),
                )
            })?;
            sinks.push(Box::new(JsonLines::new(std::io::BufWriter::new(file))));
        }
    }
    Ok(Fanout(sinks))
}

/// How `rollout` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutMode {
    /// On the estate.
    Real,
    /// Print the statements; touch nothing.
    DryRun,
    /// On disposable copies of the plan's trust databases.
    Rehearse,
}

/// `flotilla rollout PLAN`.
pub async fn rollout(
    g: &Globals,
    path: &Path,
    how: RolloutMode,
    yes: bool,
    approve: &[String],
    events: Option<&Path>,
    reports: &crate::report::ReportOptions,
) -> Outcome {
    let (inventory, catalogs, plan) = g.load_plan(path)?;
    match how {
        RolloutMode::DryRun => {
            // The rendered plan, never a flag threaded through execution: the same read-only
            // preflight as `plan --sql`, so nothing is written anywhere.
            let planned = preflight(&inventory, &catalogs, &plan).await.plan;
            print_plan_sql(&planned, &catalogs, &inventory);
            blocked_failure(&planned)
        }
        RolloutMode::Rehearse => {
            crate::rehearse::rehearse(g, &inventory, &catalogs, &plan, events, reports).await
        }
        RolloutMode::Real => {
            let prompt = Prompt::new(yes, approve, &plan)?;
            crate::operate::execute(crate::operate::Request {
                g,
                inventory: &inventory,
                catalogs: &catalogs,
                plan: &plan,
                prompt: &prompt,
                events,
                reports,
                start: crate::operate::Start::New,
                lease_ttl: g.lease_ttl,
                rehearsal: false,
                history: None,
            })
            .await
        }
    }
}

/// The documented failure (exit code and message) for how a run ended.
pub(crate) fn outcome_failure(
    plan: &Plan,
    planned: &RolloutPlan,
    summary: &crate::engine::RunSummary,
) -> Outcome {
    match summary.outcome.clone() {
        RunOutcome::Completed => Ok(()),
        RunOutcome::Blocked { .. } => blocked_failure(planned),
        RunOutcome::Halted { wave, trusts, reasons } => Err(Failure::new(
            ExitCode::HealthGate,
            format!(
                "rollout {} halted by the health gate in wave '{wave}' (trusts: {}); no later wave was started:\n  {}",
                plan.name,
                trusts.join(", "),
                reasons.join("\n  ")
            ),
        )),
        RunOutcome::Paused { wave, trusts, reasons } => Err(Failure::new(
            ExitCode::HealthGate,
            format!(
                "rollout {} paused in wave '{wave}': the health gate could not decide for {}; an operator must look:\n  {}",
                plan.name,
                trusts.join(", "),
                reasons.join("\n  ")
            ),
        )),
        RunOutcome::RollbackFailed { trusts, reasons } => Err(Failure::new(
            ExitCode::RollbackFailed,
            format!(
                "rollback failed for {}: operator needed:\n  {}",
                trusts.join(", "),
                reasons.join("\n  ")
            ),
        )),
        RunOutcome::Failed { wave, trusts, exit } => {
            let reasons: Vec<String> = summary
                .trusts
                .iter()
                .filter(|r| trusts.contains(&r.trust))
                .map(|r| (&r.trust, &r.outcome))
                .map(|(id, o)| match o {
                    TrustOutcome::Failed { error, .. } => format!("  {}", about_trust(id, error)),
                    _ => format!("  trust '{id}'"),
                })
                .collect();
            Err(Failure::new(
                exit,
                format!(
                    "rollout {} stopped in wave '{wave}': {} trust(s) failed and were left at their last committed version; later waves were not started:\n{}",
                    plan.name,
                    trusts.len(),
                    reasons.join("\n")
                ),
            ))
        }
        RunOutcome::NotApproved { wave } => Err(Failure::new(
            ExitCode::Config,
            format!("wave '{wave}' was not approved; the rollout stopped before it (resume to continue)"),
        )),
        RunOutcome::Interrupted => Err(Failure::new(
            ExitCode::Interrupted,
            format!("rollout {} interrupted: the migrations in flight finished, nothing new was started; continue with `flotilla resume`", plan.name),
        )),
        RunOutcome::LeaseLost { holder } => Err(Failure::new(
            ExitCode::Locked,
            format!("rollout {} stopped: its lease was taken over by {holder}", plan.name),
        )),
        RunOutcome::JournalFailed { error, exit } => Err(Failure::new(
            exit,
            format!("rollout {} stopped: the state database could not be written ({error}); nothing further was started", plan.name),
        )),
    }
}

/// `flotilla status`.
pub async fn status(g: &Globals, format: Format) -> Outcome {
    let (inventory, catalogs) = g.load()?;
    let catalog = catalogs.base();
    let states: HashMap<String, crate::plan::TrustState> = stream::iter(&inventory.trusts)
        .map(|t| async move { (t.id.clone(), read_state(t).await) })
        .buffer_unordered(READ_CONCURRENCY)
        .collect()
        .await;
    let mut first_error = None;
    let rows: Vec<serde_json::Value> = inventory
        .trusts
        .iter()
        .map(|t| {
            let (version, error) = match states.get(&t.id) {
                Some(Ok(applied)) => (applied.iter().map(|a| a.version).max(), None),
                Some(Err(b)) => {
                    first_error.get_or_insert(b.exit_code());
                    (None, Some(b.to_string()))
                }
                None => (None, Some("not read".to_string())),
            };
            let own = catalogs.for_trust(&t.id);
            let pending = match (&error, own.latest()) {
                (None, Some(l)) => Some(own.range(version, l).count()),
                (None, None) => Some(0),
                (Some(_), _) => None,
            };
            json!({
                "id": t.id,
                "name": t.name,
                "region": t.region,
                "version": version,
                "release": if error.is_some() { None } else { Some(catalog.describe(version)) },
                "pending": pending,
                "error": error,
            })
        })
        .collect();
    let runs = crate::operate::overview(g, 10).await?;
    match format {
        Format::Json => jsonln!(json!({
            "latest_version": catalog.latest(),
            "trusts": rows,
            "runs": runs["runs"],
            "lease": runs["lease"],
        })),
        Format::Text => {
            outln!(
                "{:<24} {:<8} {:>7}  {:<8} {:>7}",
                "TRUST",
                "REGION",
                "VERSION",
                "RELEASE",
                "PENDING"
            );
            for r in &rows {
                let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
                match r["error"].as_str() {
                    Some(e) => outln!("{:<24} {:<8} {e}", s("id"), s("region")),
                    None => outln!(
                        "{:<24} {:<8} {:>7}  {:<8} {:>7}",
                        s("id"),
                        s("region"),
                        r["version"]
                            .as_i64()
                            .map(|v| v.to_string())
                            .unwrap_or("-".into()),
                        s("release"),
                        r["pending"]
                    ),
                }
            }
            print_runs(&runs);
        }
    }
    match first_error {
        None => Ok(()),
        Some(code) => Err(Failure::new(
            code,
            "some trusts could not be read (see above)",
        )),
    }
}

fn print_runs(overview: &serde_json::Value) {
    let s = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or("-").to_string();
    let runs = overview["runs"].as_array().cloned().unwrap_or_default();
    outln!();
    if runs.is_empty() {
        outln!("RUNS: none recorded");
    } else {
        outln!("RUNS (newest first)");
    }
    for r in &runs {
        let wave = r["current_wave"]
            .as_str()
            .map(|w| format!(", last wave {w}"))
            .unwrap_or_default();
        outln!(
            "  {}  {}  {}  (attempts {}, started {} by {}{wave})",
            s(r, "run_id"),
            s(r, "plan"),
            s(r, "status").to_uppercase(),
            r["attempts"],
            s(r, "started_at"),
            s(r, "started_by"),
        );
        if s(r, "status") == "abandoned" {
            outln!("      {}", s(r, "reason"));
        }
        for f in r["failed_trusts"].as_array().into_iter().flatten() {
            outln!("      ✗ {}: {}", s(f, "trust"), s(f, "reason"));
        }
        let next: Vec<&str> = r["next"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n.as_str())
            .collect();
        if !next.is_empty() {
            outln!("      waiting for a decision: {}", next.join("  |  "));
        }
    }
    match overview["lease"].as_object() {
        None => outln!("LEASE: free"),
        Some(l) => {
            let l = serde_json::Value::Object(l.clone());
            outln!(
                "LEASE: held by run {} ({}@{}, pid {}, since {}){}",
                s(&l, "run_id"),
                s(&l, "user"),
                s(&l, "host"),
                l["pid"],
                s(&l, "since"),
                if l["expired"].as_bool() == Some(true) {
                    " — expired: the next run may take it"
                } else {
                    ""
                }
            );
        }
    }
}

/// `flotilla demo` options.
pub struct DemoOptions<'a> {
    /// Stop after seeding.
    pub seed_only: bool,
    /// Synthetic patients per trust.
    pub patients: usize,
    /// The plan to roll out.
    pub plan: &'a Path,
    /// The release to seed at.
    pub seed_release: &'a str,
    /// `TRUST:KIND` faults to plant.
    pub inject: &'a [String],
    /// Simulated clinicians during the rollout.
    pub traffic: Option<crate::commands_traffic::DemoTraffic>,
    /// Reports to write when the run ends.
    pub reports: crate::report::ReportOptions,
}

/// `flotilla demo`.
pub async fn demo(g: &Globals, o: &DemoOptions<'_>) -> Outcome {
    let &DemoOptions {
        seed_only,
        patients,
        plan: plan_path,
        seed_release,
        inject,
        ..
    } = o;
    let (inventory, catalogs) = g.load()?;
    let mut faults = Vec::new();
    for spec in inject {
        let (trust, kind) = spec.split_once(':').ok_or_else(|| {
            Failure::new(
                ExitCode::Config,
                format!("--inject-regression '{spec}': expected TRUST:KIND"),
            )
        })?;
        let fault: crate::demo::Fault = kind
            .parse()
            .map_err(|e: String| Failure::new(ExitCode::Config, e))?;
        let trust = inventory.get(trust).ok_or_else(|| {
            Failure::new(
                ExitCode::Config,
                format!("--inject-regression: unknown trust '{trust}'"),
            )
        })?;
        faults.push((trust, fault));
    }
    crate::demo::clear_faults(&inventory.trusts).map_err(|e| {
        Failure::new(
            ExitCode::Config,
            format!("cannot clear earlier injected faults: {e}"),
        )
    })?;
    // Reload: the catalogs read above may hold faults planted by an earlier run.
    let catalogs = Catalogs::load(catalogs.base().clone(), &inventory)?;
    let catalog = catalogs.base();
    let version = catalog.release_version(seed_release).ok_or_else(|| {
        Failure::new(
            ExitCode::Config,
            format!(
                "release '{seed_release}' is not in {}",
                catalog.releases_path().display()
            ),
        )
    })?;
    // Resolve the plan before seeding, so a broken plan fails before anything is written.
    let plan = if seed_only {
        None
    } else {
        Some(Plan::load(plan_path, &inventory, catalog)?)
    };
    // Runs left unfinished on the estate being replaced are abandoned, on the record.
    crate::unfinished::abandon_before_reseeding(g).await?;
    let started = Instant::now();
    let results: Vec<(String, Result<crate::demo::Seeded, crate::demo::DemoError>)> =
        stream::iter(&inventory.trusts)
            .map(|t| {
                let catalog = catalogs.for_trust(&t.id);
                async move {
                    (
                        t.id.clone(),
                        crate::demo::seed_trust(t, catalog, version, patients).await,
                    )
                }
            })
            .buffer_unordered(4)
            .collect()
            .await;
    let failures: Vec<String> = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().err().map(|e| format!("  {e}")))
        .collect();
    if !failures.is_empty() {
        return Err(Failure::new(
            ExitCode::Config,
            format!(
                "could not seed {} trust(s):\n{}",
                failures.len(),
                failures.join("\n")
            ),
        ));
    }
    let notes: usize = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .map(|s| s.notes)
        .sum();
    outln!(
        "seeded {} trusts at release {seed_release} (version {version}): {patients} patients and {} clinical notes each, in {:.1} s",
        inventory.trusts.len(),
        notes / inventory.trusts.len().max(1),
        started.elapsed().as_secs_f64()
    );
    for (trust, fault) in &faults {
        let path = crate::demo::plant_fault(trust, *fault)
            .map_err(|e| Failure::new(ExitCode::Config, e))?;
        outln!("planted fault in trust {}: {}", trust.id, path.display());
    }
    let catalogs = if faults.is_empty() {
        catalogs
    } else {
        Catalogs::load(catalogs.base().clone(), &inventory)?
    };
    let Some(plan) = plan else {
        return Ok(());
    };
    let prompt = Prompt::all("demo");
    let request = |reports| crate::operate::Request {
        g,
        inventory: &inventory,
        catalogs: &catalogs,
        plan: &plan,
        prompt: &prompt,
        events: None,
        reports,
        start: crate::operate::Start::New,
        lease_ttl: g.lease_ttl,
        rehearsal: false,
        history: None,
    };
    let Some(traffic) = o.traffic else {
        return crate::operate::execute(request(&o.reports)).await;
    };
    // The clinicians run through the whole rollout; the reports wait until their record is
    // kept under the run.
    let running =
        crate::commands_traffic::start(g, plan_path, traffic, plan.trusts().count(), &o.reports)
            .await?;
    let run_id = crate::journal::new_run_id();
    let no_reports = crate::report::ReportOptions::default();
    let result = crate::operate::execute_as(request(&no_reports), &run_id).await;
    let result = match (
        crate::commands_traffic::finish(g, running, &run_id).await,
        result,
    ) {
        (Ok(()), result) => result,
        (Err(e), Ok(())) => Err(Failure::new(
            ExitCode::Internal,
            format!("the rollout completed, but the clinicians' traffic failed: {e}"),
        )),
        (Err(e), Err(run)) => {
            eprintln!("error: the clinicians' traffic: {e}");
            Err(run)
        }
    };
    if !o.reports.any() {
        return result;
    }
    let state = crate::operate::open_state(g).await?;
    let result = crate::operate::write_run_reports(&state, &run_id, &o.reports, result).await;
    state.close().await;
    result
}

/// `flotilla health --plan PLAN [TRUST...]`: measure now and print the figures.
pub async fn health(g: &Globals, plan_path: &Path, trusts: &[String], format: Format) -> Outcome {
    use crate::health::gate::loss_statement;
    use crate::health::probes::{draw_params, measure, Rows, Scope};
    use crate::health::stats::percentile;
    let (inventory, _catalogs, plan) = g.load_plan(plan_path)?;
    if plan.health.is_empty() {
        return Err(Failure::new(
            ExitCode::Config,
            format!("{} has no health section", plan_path.display()),
        ));
    }
    let ids: Vec<String> = if trusts.is_empty() {
        plan.trusts().map(str::to_string).collect()
    } else {
        trusts.to_vec()
    };
    let mut selected = Vec::new();
    for id in &ids {
        selected.push(inventory.get(id).ok_or_else(|| {
            Failure::new(
                ExitCode::Config,
                format!("unknown trust '{id}' (not in {})", inventory.path.display()),
            )
        })?);
    }
    let mut problems = Vec::new();
    let mut reports = Vec::new();
    for trust in selected {
        let params = match draw_params(trust, &plan.health).await {
            Ok(p) => p,
            Err(e) => {
                problems.push(format!("trust '{}': {e}", trust.id));
                Default::default()
            }
        };
        let snap = measure(
            trust,
            &plan.health,
            &params,
            &Default::default(),
            Rows::Fresh,
            Scope::Full,
            None,
        )
        .await;
        for (name, r) in &snap.latency {
            if let Err(e) = r {
                problems.push(format!("trust '{}': latency probe '{name}': {e}", trust.id));
            }
        }
        let confidence = plan
            .health
            .write_probe
            .as_ref()
            .map_or(0.99, |w| w.confidence(&plan.health.regression));
        match &snap.write {
            Some(Ok(w)) if w.lost > 0 => problems.push(format!(
                "trust '{}': write probe: data not reliably saved: {}: {}",
                trust.id,
                loss_statement(w.writes, w.lost, confidence),
                w.failures.join("; ")
            )),
            Some(Err(e)) => problems.push(format!("trust '{}': write probe: {e}", trust.id)),
            _ => {}
        }
        for (name, r) in &snap.integrity {
            if let Err(e) = r {
                problems.push(format!("trust '{}': integrity of '{name}': {e}", trust.id));
            }
        }
        for inv in &plan.health.invariants {
            match snap.invariants.get(&inv.name) {
                Some(Ok(v)) if *v == inv.expect => {}
                Some(Ok(v)) => problems.push(format!(
                    "trust '{}': invariant '{}' returned {v}, expected {}",
                    trust.id, inv.name, inv.expect
                )),
                Some(Err(e)) => problems.push(format!(
                    "trust '{}': invariant '{}': {e}",
                    trust.id, inv.name
                )),
                None => {}
            }
        }
        if format == Format::Text {
            outln!("{} ({})", trust.id, trust.database.redacted());
            for (name, r) in &snap.latency {
                match r {
                    Ok(s) => {
                        let mut sorted = s.ms.clone();
                        sorted.sort_by(f64::total_cmp);
                        let p = |q| percentile(&sorted, q).unwrap_or(f64::NAN);
                        outln!(
                            "  latency {name}: median {:.3} ms, p95 {:.3} ms, p99 {:.3} ms over {} samples ({} rows)",
                            p(0.5),
                            p(0.95),
                            p(0.99),
                            s.ms.len(),
                            s.rows
                        );
                    }
                    Err(e) => outln!("  latency {name}: ERROR {e}"),
                }
            }
            match &snap.write {
                Some(Ok(w)) => {
                    let mut sorted = w.ms.clone();
                    sorted.sort_by(f64::total_cmp);
                    let p = |q| percentile(&sorted, q).unwrap_or(f64::NAN);
                    outln!(
                        "  write probe: {} writes from {} session{}, median {:.3} ms, p95 {:.3} ms; {}{}; every record removed",
                        w.writes,
                        w.sessions,
                        if w.sessions == 1 { "" } else { "s" },
                        p(0.5),
                        p(0.95),
                        loss_statement(w.writes, w.lost, confidence),
                        if w.lost == 0 { ", read back by another session" } else { "" }
                    );
                    for f in &w.failures {
                        outln!("    LOST: {f}");
                    }
                }
                Some(Err(e)) => outln!("  write probe: ERROR {e}"),
                None => {}
            }
            if let Some(l) = &snap.lock_waits {
                outln!("  {}", l.describe());
            }
            for (name, r) in &snap.integrity {
                match r {
                    Ok(f) => outln!(
                        "  integrity {name}: {} rows ({}), key hash {}",
                        f.rows,
                        snap.coverage
                            .get(name)
                            .map_or_else(|| "every row".to_string(), |c| c.describe()),
                        &f.hash[..16]
                    ),
                    Err(e) => outln!("  integrity {name}: ERROR {e}"),
                }
            }
            for (name, r) in &snap.invariants {
                match r {
                    Ok(v) => outln!("  invariant {name}: {v}"),
                    Err(e) => outln!("  invariant {name}: ERROR {e}"),
                }
            }
        }
        reports.push(json!({ "trust": trust.id, "snapshot": snap }));
    }
    if format == Format::Json {
        jsonln!(json!({ "plan": plan.name, "trusts": reports }));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(
            ExitCode::HealthGate,
            format!("health checks found problems:\n  {}", problems.join("\n  ")),
        ))
    }
}

/// `flotilla report RUN`: a past run from the journal. Never creates a state database.
pub async fn report(g: &Globals, run: &str, reports: &crate::report::ReportOptions) -> Outcome {
    // Read-only: nothing is created or written (an empty file, a read-only mount).
    let Some(state) = crate::operate::open_state_read_only(g).await? else {
        return Err(Failure::new(
            ExitCode::Config,
            format!(
                "no state database at {}: no run has been recorded there (see --state)",
                crate::operate::state_location(g)?.display()
            ),
        ));
    };
    let result = match reports.prepare() {
        Ok(()) => report_from(&state, run, reports).await,
        Err(e) => Err(Failure::new(ExitCode::Config, e.to_string())),
    };
    state.close().await;
    result
}

async fn report_from(
    state: &crate::journal::StateDb,
    run: &str,
    reports: &crate::report::ReportOptions,
) -> Outcome {
    let run_id = if run == "latest" {
        match state.runs().await?.first() {
            Some(r) => r.run_id.clone(),
            None => {
                return Err(Failure::new(
                    ExitCode::Config,
                    format!("no run recorded in the state database {}", state.location()),
                ))
            }
        }
    } else {
        run.to_string()
    };
    let model = crate::report::RunReport::load(state, &run_id)
        .await
        .map_err(|e| match e {
            crate::report::ModelError::NoRun { .. } => Failure::new(
                ExitCode::Config,
                format!("{e} (`flotilla status` lists the recent runs)"),
            ),
            other => Failure::new(ExitCode::Config, other.to_string()),
        })?;
    outln!("{}", crate::report::summary(&model).trim_end());
    let written = crate::report::write(&model, reports)
        .map_err(|e| Failure::new(ExitCode::Config, e.to_string()))?;
    for path in written {
        outln!("wrote {}", path.display());
    }
    Ok(())
}
