//! Loading a YAML file into a serde model, with errors that name the file, line and column.

use std::path::Path;

use serde::de::DeserializeOwned;

use super::ConfigError;

/// Read and parse `path`. Unknown fields are rejected by the models (`deny_unknown_fields`).
pub(crate) fn load<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Parse `text` as if read from `path`.
pub(crate) fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    serde_saphyr::from_str(text).map_err(|err| {
        let (line, column) = err
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        ConfigError::Syntax {
            path: path.to_path_buf(),
            line,
            column,
            message: first_line(&err.to_string()),
        }
    })
}

/// serde-saphyr renders a snippet of the source under its message; the message line is what
/// belongs in a one-line error (the location is reported separately).
fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).trim().to_string()
}
