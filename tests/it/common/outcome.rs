//! [`Outcome`]: what one flotilla invocation did, with assertion helpers that print the whole
//! command, exit code, stdout and stderr when they fail.

use serde_json::Value;

use super::{repo_root, version_prefix};

/// What one flotilla invocation did. Assertion helpers return `&Self` to chain; each panics
/// with the full command, exit code, stdout and stderr.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub command: String,
    /// None when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn describe(&self) -> String {
        format!(
            "command: {}\nexit code: {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--------------",
            self.command,
            self.code
                .map_or("none (killed by a signal)".to_string(), |c| c.to_string()),
            self.stdout,
            self.stderr
        )
    }

    #[track_caller]
    fn fail(&self, what: &str) -> ! {
        panic!("{what}\n{}", self.describe())
    }

    /// Exit code 0 (and no panic).
    #[track_caller]
    pub fn success(&self) -> &Self {
        self.no_panic();
        if self.code != Some(0) {
            self.fail("expected success (exit code 0)");
        }
        self
    }

    /// Exit code `n` (and no panic).
    #[track_caller]
    pub fn code(&self, n: i32) -> &Self {
        self.no_panic();
        if self.code != Some(n) {
            self.fail(&format!("expected exit code {n}"));
        }
        self
    }

    /// Neither output shows a Rust panic.
    #[track_caller]
    pub fn no_panic(&self) -> &Self {
        if self.stderr.contains("panicked at") || self.stdout.contains("panicked at") {
            self.fail("flotilla panicked");
        }
        self
    }

    #[track_caller]
    pub fn stdout_contains(&self, s: &str) -> &Self {
        if !self.stdout.contains(s) {
            self.fail(&format!("expected stdout to contain {s:?}"));
        }
        self
    }

    #[track_caller]
    pub fn stderr_contains(&self, s: &str) -> &Self {
        if !self.stderr.contains(s) {
            self.fail(&format!("expected stderr to contain {s:?}"));
        }
        self
    }

    /// stderr contains at least one of `alternatives`.
    #[track_caller]
    pub fn stderr_contains_any(&self, alternatives: &[&str]) -> &Self {
        if !alternatives.iter().any(|s| self.stderr.contains(s)) {
            self.fail(&format!(
                "expected stderr to contain one of {alternatives:?}"
            ));
        }
        self
    }

    /// stderr names migration `version`: its file stem (e.g. "0010_create_staff"), its
    /// padded prefix ("0010"), or "migration 10" / "version 10".
    #[track_caller]
    pub fn stderr_names_migration(&self, version: i64) -> &Self {
        let stem = std::fs::read_dir(repo_root().join("migrations"))
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                let stem = name.strip_suffix(".up.sql")?.to_string();
                (stem.split('_').next()?.parse::<i64>().ok()? == version).then_some(stem)
            })
            .next();
        let mut names = vec![
            format!("migration {version}"),
            format!("version {version}"),
            version_prefix(version),
        ];
        names.extend(stem);
        if !names.iter().any(|n| self.stderr.contains(n.as_str())) {
            self.fail(&format!(
                "expected stderr to name migration {version} (one of {names:?})"
            ));
        }
        self
    }

    /// stderr contains `s`, ignoring ASCII case.
    #[track_caller]
    pub fn stderr_contains_nocase(&self, s: &str) -> &Self {
        if !self
            .stderr
            .to_ascii_lowercase()
            .contains(&s.to_ascii_lowercase())
        {
            self.fail(&format!("expected stderr to contain {s:?} (any case)"));
        }
        self
    }

    /// Neither stdout nor stderr contains `s`.
    #[track_caller]
    pub fn output_lacks(&self, s: &str) -> &Self {
        if self.stdout.contains(s) || self.stderr.contains(s) {
            self.fail(&format!(
                "expected neither stdout nor stderr to contain {s:?}"
            ));
        }
        self
    }

    /// stdout parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        match serde_json::from_str(&self.stdout) {
            Ok(v) => v,
            Err(e) => self.fail(&format!("stdout is not JSON: {e}")),
        }
    }
}
