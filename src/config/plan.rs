//! `plans/*.yaml`: a rollout in waves. Resolved against the estate and the migration catalog
//! into a typed [`Plan`]: every trust named exactly once, every wave non-empty, the target a
//! real version.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::error::ConfigError;
use super::health::{Health, OnRegression, Soak};
use super::inventory::Inventory;
use super::positions::PlanPositions;
use super::probe_safety::{self, ProbeDialect};
use super::yaml;
use crate::migrations::Catalog;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    name: String,
    release: Option<Spanned<String>>,
    /// The version as the migrations write it (`0130`, `2014-11-27-000000`, `1.10`), or its
    /// 64-bit key.
    target_version: Option<Spanned<String>>,
    concurrency: Option<Spanned<usize>>,
    waves: Spanned<Vec<WaveFile>>,
    health: Option<Spanned<Health>>,
    #[serde(default)]
    on_regression: OnRegression,
    #[serde(default)]
    max_failed_trusts: usize,
    timeouts: Option<Spanned<Timeouts>>,
}

/// Timeouts for the statements of a migration (Postgres `lock_timeout` and
/// `statement_timeout`; SQLite `busy_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// How long a statement may wait for a lock before it fails (the migration then rolls
    /// back instead of queueing clinicians' queries behind it).
    #[serde(default = "default_lock_timeout", with = "humantime_serde")]
    pub lock: std::time::Duration,
    /// How long one statement may run; none by default.
    #[serde(default, with = "humantime_serde")]
    pub statement: Option<std::time::Duration>,
}

fn default_lock_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(10)
}

impl Timeouts {
    /// A value that would switch a protection off. Postgres reads a `lock_timeout` (and a
    /// `statement_timeout`) of 0 as "no limit", and both are set in whole milliseconds, so
    /// anything under 1 ms is 0: a migration would then wait behind a table lock forever,
    /// queueing every clinician's query on that table behind it.
    pub fn problem(&self) -> Option<String> {
        if self.lock < std::time::Duration::from_millis(1) {
            return Some(format!(
                "lock: {} would turn the lock timeout off (a migration would wait behind a table lock forever, and every query on that table behind it); give at least 1ms (default 10s)",
                humantime::format_duration(self.lock)
            ));
        }
        if let Some(st) = self
            .statement
            .filter(|d| *d < std::time::Duration::from_millis(1))
        {
            return Some(format!(
                "statement: {} would mean no limit at all; leave `statement` out for no limit, or give at least 1ms",
                humantime::format_duration(st)
            ));
        }
        None
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            lock: default_lock_timeout(),
            statement: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WaveFile {
    name: Spanned<String>,
    trusts: Option<Vec<Spanned<String>>>,
    select: Option<SelectFile>,
    concurrency: Option<Spanned<usize>>,
    #[serde(default)]
    approval: Approval,
    soak: Option<Soak>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SelectFile {
    region: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

/// Whether a wave waits for an operator before it starts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Approval {
    /// Starts as soon as the previous wave is done.
    #[default]
    None,
    /// Needs `--yes` or an operator's "y".
    Required,
}

/// The default number of trusts migrated at once in a wave.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// A resolved rollout plan.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The plan's name, e.g. `rio-5.1`.
    pub name: String,
    /// The file it was read from.
    pub path: PathBuf,
    /// The version every trust of the plan should end at.
    pub target: Target,
    /// Waves, in order.
    pub waves: Vec<Wave>,
    /// What to measure on each trust, and the thresholds.
    pub health: Health,
    /// What a failed verdict leads to.
    pub on_regression: OnRegression,
    /// Failed trusts a wave tolerates (rolled back per policy) before the run halts.
    pub max_failed_trusts: usize,
    /// Migration statement timeouts.
    pub timeouts: Timeouts,
}

/// The version a plan rolls out to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Target {
    /// Last migration version to apply.
    pub version: i64,
    /// The release name, when the plan named one (or the version is a release's last).
    pub release: Option<String>,
}

/// One resolved wave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wave {
    /// Name, unique in the plan.
    pub name: String,
    /// Trust ids, in inventory order for selections, in the written order for explicit lists.
    pub trusts: Vec<String>,
    /// Trusts migrated at once.
    pub concurrency: usize,
    /// Whether an operator must approve the wave before it starts.
    pub approval: Approval,
    /// Checks repeated after the wave before the next starts.
    pub soak: Option<Soak>,
}

impl Plan {
    /// Read and resolve a plan against the estate and the migration catalog.
    pub fn load(
        path: &Path,
        inventory: &Inventory,
        catalog: &Catalog,
    ) -> Result<Plan, ConfigError> {
        let text = crate::files::read_regular(path, crate::files::YAML_CAP).map_err(|source| {
            ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }
        })?;
        Self::parse(path, &text, inventory, catalog)
    }

    /// Parse and resolve a plan from text, as if read from `path`.
    pub fn parse(
        path: &Path,
        text: &str,
        inventory: &Inventory,
        catalog: &Catalog,
    ) -> Result<Plan, ConfigError> {
        let file: PlanFile = yaml::parse(path, text)?;
        // Where the entries of `health` are written, for messages that cite their line: a
        // second, lenient read of the same text (the typed model keeps plain values). The file
        // parsed above, so this only fails on something already accepted.
        let positions: PlanPositions = yaml::parse(path, text).unwrap_or_default();
        resolve(path, file, &positions, inventory, catalog)
    }

    /// `line:column` in the plan file of the health entry a problem is about (an integrity
    /// table or column, a latency probe, a regression threshold), when it can be found.
    pub fn locate_health(&self, problem: &str) -> Option<(u64, u64)> {
        let text = crate::files::read_regular(&self.path, crate::files::YAML_CAP).ok()?;
        let positions: PlanPositions = serde_saphyr::from_str(&text).ok()?;
        positions.locate(problem).map(|l| (l.line(), l.column()))
    }

    /// Every trust of the plan, wave by wave.
    pub fn trusts(&self) -> impl Iterator<Item = &str> {
        self.waves
            .iter()
            .flat_map(|w| w.trusts.iter().map(String::as_str))
    }
}

fn resolve(
    path: &Path,
    file: PlanFile,
    positions: &PlanPositions,
    inventory: &Inventory,
    catalog: &Catalog,
) -> Result<Plan, ConfigError> {
    let err = |at: Option<serde_saphyr::Location>, msg: String| ConfigError::invalid(path, at, msg);
    let target = match (&file.release, &file.target_version) {
        (Some(_), Some(t)) => {
            return Err(err(
                Some(t.referenced),
                "give either release or target_version, not both".into(),
            ))
        }
        (None, None) => {
            return Err(err(
                None,
                "the plan needs a release or a target_version".into(),
            ))
        }
        (Some(r), None) => {
            let version = catalog.release_version(&r.value).ok_or_else(|| {
                let known: Vec<&str> = catalog.releases().map(|(n, _)| n).collect();
                err(
                    Some(r.referenced),
                    format!(
                        "release '{}' is not in {} (known: {})",
                        r.value,
                        catalog.releases_path().display(),
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        }
                    ),
                )
            })?;
            Target {
                version,
                release: Some(r.value.clone()),
            }
        }
        (None, Some(v)) => {
            let text = v.value.trim();
            let version = catalog
                .resolve(text)
                .or_else(|| {
                    text.parse::<i64>()
                        .ok()
                        .filter(|k| catalog.get(*k).is_some())
                })
                .ok_or_else(|| {
                    err(
                        Some(v.referenced),
                        format!(
                            "target_version {text} is not a migration in {}",
                            catalog.dir().display()
                        ),
                    )
                })?;
            Target {
                version,
                release: catalog.release_at(version).map(str::to_string),
            }
        }
    };
    let default_concurrency = match &file.concurrency {
        Some(c) => positive(path, c)?,
        None => DEFAULT_CONCURRENCY,
    };
    if file.waves.value.is_empty() {
        return Err(err(
            Some(file.waves.referenced),
            "the plan has no waves".into(),
        ));
    }

    // Which wave each trust went to, and where that was written.
    let mut placed: HashMap<String, String> = HashMap::new();
    let mut wave_names = BTreeSet::new();
    let mut waves = Vec::with_capacity(file.waves.value.len());
    let mut wave_lines = Vec::with_capacity(file.waves.value.len());
    for w in &file.waves.value {
        wave_lines.push(w.name.referenced);
        let name = w.name.value.clone();
        if !wave_names.insert(name.clone()) {
            return Err(err(
                Some(w.name.referenced),
                format!("duplicate wave name '{name}'"),
            ));
        }
        let trusts: Vec<String> = match (&w.trusts, &w.select) {
            (Some(_), Some(_)) => {
                return Err(err(
                    Some(w.name.referenced),
                    format!("wave '{name}' has both trusts and select; give one"),
                ))
            }
            (None, None) => {
                return Err(err(
                    Some(w.name.referenced),
                    format!("wave '{name}' names no trusts: give trusts or select"),
                ))
            }
            (Some(list), None) => {
                let mut out = Vec::with_capacity(list.len());
                for id in list {
                    if inventory.get(&id.value).is_none() {
                        return Err(err(
                            Some(id.referenced),
                            format!(
                                "wave '{name}': unknown trust '{}' (not in {})",
                                id.value,
                                inventory.path.display()
                            ),
                        ));
                    }
                    if let Some(other) = placed.get(&id.value) {
                        return Err(err(
                            Some(id.referenced),
                            format!(
                                "wave '{name}': trust '{}' is already in wave '{other}'; a trust is rolled out once",
                                id.value
                            ),
                        ));
                    }
                    placed.insert(id.value.clone(), name.clone());
                    out.push(id.value.clone());
                }
                out
            }
            (None, Some(sel)) => {
                if sel.region.is_none() && sel.tags.is_empty() {
                    return Err(err(
                        Some(w.name.referenced),
                        format!("wave '{name}': select needs a region or at least one tag (an empty selection would take every remaining trust)"),
                    ));
                }
                let picked: Vec<String> = inventory
                    .trusts
                    .iter()
                    .filter(|t| sel.region.as_ref().is_none_or(|r| &t.region == r))
                    .filter(|t| sel.tags.iter().all(|tag| t.tags.contains(tag)))
                    .filter(|t| !placed.contains_key(&t.id))
                    .map(|t| t.id.clone())
                    .collect();
                for id in &picked {
                    placed.insert(id.clone(), name.clone());
                }
                picked
            }
        };
        if trusts.is_empty() {
            return Err(err(
                Some(w.name.referenced),
                format!(
                    "wave '{name}' resolves to no trusts (an empty wave is a mistake in the plan)"
                ),
            ));
        }
        let concurrency = match &w.concurrency {
            Some(c) => positive(path, c)?,
            None => default_concurrency,
        };
        let soak = w.soak.or(file.health.as_ref().and_then(|h| h.value.soak));
        waves.push(Wave {
            name,
            trusts,
            concurrency,
            approval: w.approval,
            soak,
        });
    }
    let timeouts = match &file.timeouts {
        Some(t) => {
            if let Some(problem) = t.value.problem() {
                return Err(err(Some(t.referenced), format!("timeouts: {problem}")));
            }
            t.value
        }
        None => Timeouts::default(),
    };
    let health = match file.health {
        Some(h) => {
            if let Some(problem) = h.value.static_problems().into_iter().next() {
                // The model keeps no positions: find where the offending entry is written.
                let at = positions.locate(&problem).unwrap_or(h.referenced);
                return Err(err(Some(at), format!("health: {problem}")));
            }
            h.value
        }
        None => Health::default(),
    };
    refuse_unsafe_probes(path, &health, positions, inventory, &waves)?;
    for (w, at) in waves.iter().zip(wave_lines) {
        if let Some(Err(problem)) = health.write_sizing(w.soak) {
            return Err(err(Some(at), format!("wave '{}': {problem}", w.name)));
        }
    }
    Ok(Plan {
        name: file.name,
        path: path.to_path_buf(),
        target,
        waves,
        health,
        on_regression: file.on_regression,
        max_failed_trusts: file.max_failed_trusts,
        timeouts,
    })
}

/// Parse every probe statement in each dialect of the plan's trusts and refuse any that could
/// change data ([`super::probe_safety`]), naming the file, line and statement.
fn refuse_unsafe_probes(
    path: &Path,
    health: &Health,
    positions: &PlanPositions,
    inventory: &Inventory,
    waves: &[Wave],
) -> Result<(), ConfigError> {
    let mut dialects: Vec<ProbeDialect> = waves
        .iter()
        .flat_map(|w| &w.trusts)
        .filter_map(|id| inventory.get(id))
        .map(|t| match t.database {
            super::inventory::DatabaseTarget::Sqlite { .. } => ProbeDialect::Sqlite,
            super::inventory::DatabaseTarget::Postgres { .. } => ProbeDialect::Postgres,
        })
        .collect();
    dialects.sort();
    dialects.dedup();
    let refusals = probe_safety::check(health, &dialects);
    let Some(first) = refusals.first() else {
        return Ok(());
    };
    let mut message = first.to_string();
    for r in &refusals[1..] {
        let at = positions
            .statement(r.at)
            .map(|l| format!(":{}:{}", l.line(), l.column()))
            .unwrap_or_default();
        message.push_str(&format!("\n  {}{at}: {r}", path.display()));
    }
    Err(ConfigError::invalid(
        path,
        positions.statement(first.at),
        message,
    ))
}

fn positive(path: &Path, c: &Spanned<usize>) -> Result<usize, ConfigError> {
    if c.value == 0 {
        Err(ConfigError::invalid(
            path,
            Some(c.referenced),
            "concurrency must be at least 1",
        ))
    } else {
        Ok(c.value)
    }
}
