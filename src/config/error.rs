//! [`ConfigError`]: a problem with a file the user writes, with its file, line and column.

use std::path::PathBuf;

/// A problem with a configuration file. Every variant names the file; where the YAML parser or a
/// spanned value knows it, the line and column too.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        path: PathBuf,
        line: u64,
        column: u64,
        message: String,
    },
    #[error("{path}{}: {message}", location_suffix(*line, *column))]
    Invalid {
        path: PathBuf,
        line: u64,
        column: u64,
        message: String,
    },
}

fn location_suffix(line: u64, column: u64) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(":{line}:{column}")
    }
}

impl ConfigError {
    /// The documented exit code: the user's configuration (2).
    pub fn exit_code(&self) -> crate::exit_codes::ExitCode {
        crate::exit_codes::ExitCode::Config
    }

    pub(crate) fn invalid(
        path: &std::path::Path,
        at: Option<serde_saphyr::Location>,
        message: impl Into<String>,
    ) -> Self {
        let (line, column) = at.map(|l| (l.line(), l.column())).unwrap_or((0, 0));
        // Messages quote the values they refuse: never a password among them.
        let message: String = message.into();
        ConfigError::Invalid {
            path: path.to_path_buf(),
            line,
            column,
            message: crate::secrets::scrub(&message).into_owned(),
        }
    }
}
