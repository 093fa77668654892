//! What a window of the real workload holds (journalled with the snapshot) and how a
//! statement's text is shown: the types the readings (tracker.rs), the snapshot (probes.rs) and
//! the comparison (mod.rs) share, with no dependency on any of them.

use serde::{Deserialize, Serialize};

/// Most statements a window keeps (by total execution time); the rest are only counted.
pub const MAX_KEPT: usize = 500;
/// Longest statement text kept, in characters.
pub const MAX_TEXT: usize = 200;

/// One statement's figures over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatementWindow {
    /// `pg_stat_statements.queryid`.
    pub queryid: i64,
    /// The normalised text as shown (see [`display_text`]); kept for statements with at least
    /// `min_calls` calls in the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Calls in the window.
    pub calls: u64,
    /// Total execution time in the window, ms.
    pub total_ms: f64,
    /// Mean execution time in the window, ms.
    pub mean_ms: f64,
    /// Standard deviation of the execution time in the window, ms.
    pub stddev_ms: f64,
    /// Rows returned or affected in the window.
    pub rows: u64,
}

/// The database's counters over a window (`pg_stat_database`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseWindow {
    /// Transactions committed.
    pub commits: i64,
    /// Transactions rolled back.
    pub rollbacks: i64,
    /// Deadlocks detected.
    pub deadlocks: i64,
    /// Queries cancelled by recovery conflicts (standbys only).
    pub conflicts: i64,
    /// Temporary files written by queries.
    pub temp_files: i64,
    /// Bytes written to temporary files.
    pub temp_bytes: i64,
}

/// The real workload over one window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkloadWindow {
    /// How long the window lasted, s.
    pub seconds: f64,
    /// Statements that ran in the window (not flotilla's own), by total time, at most
    /// [`MAX_KEPT`].
    pub statements: Vec<StatementWindow>,
    /// Statements beyond [`MAX_KEPT`], only counted.
    #[serde(default)]
    pub omitted: usize,
    /// The database's counters; `None` when they were reset during the window.
    pub database: Option<DatabaseWindow>,
    /// Anything that limits the figures (counters reset, statements evicted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A statement's text as flotilla shows and stores it. `pg_stat_statements` has already
/// replaced constants by `$n` in optimisable statements; on top of that comments are removed
/// (applications put trace ids and user names there), any quoted literal left is masked,
/// whitespace is collapsed, and the text is cut at [`MAX_TEXT`] characters. A utility
/// statement (`CALL`, `DO`, `COPY`, DDL, ...) keeps its constants in `pg_stat_statements`, so
/// only its command word is shown.
pub fn display_text(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len().min(4 * MAX_TEXT));
    let mut chars = raw.chars().peekable();
    let mut space = false;
    let push = |out: &mut String, c: char, space: &mut bool| {
        if *space && !out.is_empty() {
            out.push(' ');
        }
        *space = false;
        out.push(c);
    };
    while let Some(c) = chars.next() {
        match c {
            '-' if chars.peek() == Some(&'-') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                space = true;
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
                space = true;
            }
            '\'' => {
                // A literal left in the text: mask it whole (doubled quotes stay inside).
                loop {
                    match chars.next() {
                        None => break,
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                        }
                        Some('\'') => break,
                        Some(_) => {}
                    }
                }
                push(&mut out, '\'', &mut space);
                out.push_str("?'");
            }
            c if c.is_whitespace() => space = true,
            c => push(&mut out, c, &mut space),
        }
    }
    let first: String = out
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase();
    let optimisable = matches!(
        first.as_str(),
        "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "WITH" | "VALUES" | "TABLE"
    ) || out.starts_with('(');
    if !optimisable {
        let word = if first.is_empty() { "?" } else { &first };
        return format!(
            "{word} … (utility statement: text withheld, PostgreSQL keeps its constants)"
        );
    }
    if out.chars().count() > MAX_TEXT {
        let cut: String = out.chars().take(MAX_TEXT).collect();
        return format!("{}…", cut.trim_end());
    }
    out
}

/// Session housekeeping (transaction control, settings, pings): not what clinicians do, so it
/// does not count as traffic when deciding whether a window is worth holding open.
pub(super) fn housekeeping(shown: &str) -> bool {
    let first: String = shown
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase();
    matches!(
        first.as_str(),
        "BEGIN"
            | "START"
            | "COMMIT"
            | "END"
            | "ROLLBACK"
            | "SAVEPOINT"
            | "RELEASE"
            | "SET"
            | "SHOW"
            | "RESET"
            | "DISCARD"
            | "DEALLOCATE"
            | "LISTEN"
            | "UNLISTEN"
    ) || shown.eq_ignore_ascii_case("SELECT $1")
}

/// Whether a raw `pg_stat_statements` text is flotilla's own (its tracking table, these
/// readings) or a reading of the server's statistics and lock views (flotilla's, or a
/// monitoring agent's): never clinicians' work.
pub(super) fn own_text(raw: &str) -> bool {
    let lower = raw.to_ascii_lowercase();
    lower.contains("flotilla") || lower.contains("pg_stat_") || lower.contains("pg_locks")
}
