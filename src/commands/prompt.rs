//! How the operator approves: `--yes`, `--approve WAVE`, or a question at the terminal
//! ([`Prompt`], the [`Operator`] the session asks), and [`ask`] for a yes/no.

use std::io::{BufRead, IsTerminal, Write};

use super::Failure;
use crate::config::{Plan, Wave};
use crate::engine::Approver;
use crate::session::Operator;

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
            return Err(Failure::config(format!(
                "--approve names no wave of {}: {} (its waves: {})",
                plan.path.display(),
                unknown
                    .iter()
                    .map(|s| format!("'{s}'"))
                    .collect::<Vec<_>>()
                    .join(", "),
                names.join(", ")
            )));
        }
        Ok(Prompt {
            all: yes.then(|| "--yes".to_string()),
            approved: approve.to_vec(),
        })
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
}

impl Operator for Prompt {
    /// Whether the operator may be asked (stdin is a terminal and --yes was not given).
    fn may_ask(&self) -> bool {
        self.all.is_none() && std::io::stdin().is_terminal()
    }

    fn confirm(&self, question: &str) -> bool {
        ask(question)
    }

    /// Without a terminal, every approval wave among `waves` that will run must have been
    /// approved in advance: exit 2 naming the others, before anything is changed.
    fn require_in_advance(&self, waves: &mut dyn Iterator<Item = &str>) -> Result<(), String> {
        if self.all.is_some() || std::io::stdin().is_terminal() {
            return Ok(());
        }
        let missing: Vec<&str> = waves
            .filter(|w| self.approved_in_advance(w).is_none())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(format!(
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
        ))
    }
}

/// Ask the operator a yes/no question on stderr; only `y`, `Y` or `yes` is a yes.
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
