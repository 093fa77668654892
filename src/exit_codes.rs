//! Every exit code flotilla can return, in one place, so scripts and CI can rely on them.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done: every step the command set out to do was done |
//! | 1 | internal error (a bug in flotilla) |
//! | 2 | usage, configuration or validation error; nothing was changed |
//! | 3 | halted by the health gate |
//! | 4 | a migration failed, or a trust database could not be reached |
//! | 5 | a rollback failed: an operator is needed |
//! | 6 | the estate (or a trust database) is locked by another run |
//! | 7 | checksum drift: applied history differs from the migration files |
//! | 8 | interrupted by the operator (Ctrl-C, SIGTERM); `flotilla resume` continues |
//! | 9 | the environment failed flotilla: its state database cannot be written (disk full, read-only file system, I/O error) |

use std::process::ExitCode as StdExitCode;

/// A documented process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExitCode {
    /// 0: done.
    Success,
    /// 1: internal error.
    Internal,
    /// 2: usage, configuration or validation error.
    Config,
    /// 3: halted by the health gate.
    HealthGate,
    /// 4: a migration failed or a trust was unreachable.
    MigrationFailed,
    /// 5: a rollback failed; an operator is needed.
    RollbackFailed,
    /// 6: locked by another run.
    Locked,
    /// 7: applied history does not match the migration files.
    ChecksumDrift,
    /// 8: interrupted by the operator; resume continues.
    Interrupted,
    /// 9: the environment failed: the state database (flotilla's own record) cannot be
    /// written or read (disk full, read-only file system, I/O error). Not a bug, and not the
    /// user's configuration: free space or fix the storage, then `flotilla resume`.
    Environment,
}

impl ExitCode {
    /// The numeric value returned to the shell.
    pub fn code(self) -> u8 {
        match self {
            ExitCode::Success => 0,
            ExitCode::Internal => 1,
            ExitCode::Config => 2,
            ExitCode::HealthGate => 3,
            ExitCode::MigrationFailed => 4,
            ExitCode::RollbackFailed => 5,
            ExitCode::Locked => 6,
            ExitCode::ChecksumDrift => 7,
            ExitCode::Interrupted => 8,
            ExitCode::Environment => 9,
        }
    }

    /// Every documented exit code, in numeric order.
    pub const ALL: [ExitCode; 10] = [
        ExitCode::Success,
        ExitCode::Internal,
        ExitCode::Config,
        ExitCode::HealthGate,
        ExitCode::MigrationFailed,
        ExitCode::RollbackFailed,
        ExitCode::Locked,
        ExitCode::ChecksumDrift,
        ExitCode::Interrupted,
        ExitCode::Environment,
    ];

    /// A documented exit code from its number (an unknown one is an internal error): how a
    /// code travels between processes (a worker's job result).
    pub fn of(code: u8) -> ExitCode {
        ExitCode::ALL
            .into_iter()
            .find(|c| c.code() == code)
            .unwrap_or(ExitCode::Internal)
    }
}

impl From<ExitCode> for StdExitCode {
    fn from(code: ExitCode) -> Self {
        StdExitCode::from(code.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_match_the_documented_table() {
        let all = ExitCode::ALL;
        let codes: Vec<u8> = all.iter().map(|c| c.code()).collect();
        assert_eq!(codes, vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    }
}
