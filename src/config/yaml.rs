//! Loading a YAML file into a serde model, with errors that name the file, line and column.

use std::path::Path;

use serde::de::DeserializeOwned;

use super::error::ConfigError;

/// Read and parse `path`. Unknown fields are rejected by the models (`deny_unknown_fields`).
pub(crate) fn load<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = crate::files::read_regular(path, crate::files::YAML_CAP).map_err(|source| {
        ConfigError::Read {
            path: path.to_path_buf(),
            source,
        }
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
            // The parser quotes the values it rejects: a connection string among them must
            // not carry its password into the message.
            message: crate::secrets::scrub(&plain_message(&err)).into_owned(),
        }
    })
}

/// The parser's message in plain words: what is wrong with the file, not which library option
/// would allow it ("set DuplicateKeyPolicy in Options") or a debug dump of its limits.
fn plain_message(err: &serde_saphyr::Error) -> String {
    use serde_saphyr::budget::BudgetBreach as B;
    use serde_saphyr::Error as E;
    let mut inner = err.without_snippet();
    while let E::AliasError { error, .. } | E::WithSnippet { error, .. } = inner {
        inner = error;
    }
    match inner {
        E::DuplicateMappingKey { key: Some(k), .. } => {
            format!("the key '{k}' appears twice in the same mapping; give it once")
        }
        E::DuplicateMappingKey { key: None, .. } => {
            "a key appears twice in the same mapping; give it once".into()
        }
        E::Budget { breach, .. } => {
            let what = match breach {
                B::Nodes { .. } | B::Events { .. } => "too many values",
                B::Depth { .. } => "nesting too deep",
                B::Aliases { .. } | B::Anchors { .. } | B::AliasAnchorRatio { .. } => {
                    "too many anchors or aliases (alias expansion is limited)"
                }
                B::ScalarBytes { .. } | B::InputBytes { .. } => "too much text",
                B::Documents { .. } => "too many YAML documents",
                _ => "too large or too complex",
            };
            format!("the file is {what} for a configuration file; flotilla refuses it rather than read it")
        }
        _ => first_line(&err.to_string()),
    }
}

/// serde-saphyr renders a snippet of the source under its message, and may start it with
/// `error: line L column C: `; the bare message is what belongs after our own `file:line:col:`.
fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or(message).trim();
    let line = line.strip_prefix("error: ").unwrap_or(line);
    let line = match line
        .strip_prefix("line ")
        .and_then(|rest| rest.split_once(": "))
    {
        Some((position, rest)) if position.contains("column") => rest,
        _ => line,
    };
    line.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_error_names_file_line_and_column_once() {
        let err = parse::<serde_json::Value>(Path::new("bad.yaml"), "a: 1\nb: [1, 2\nc: d: e\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("bad.yaml:"), "{err}");
        assert!(!err.contains("error:"), "{err}");
        assert_eq!(err.matches("line").count(), 0, "{err}");
    }

    #[test]
    fn library_internals_are_not_in_the_messages() {
        let err = parse::<serde_json::Value>(Path::new("dup.yaml"), "a: 1\na: 2\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("'a' appears twice"), "{err}");
        assert!(!err.contains("DuplicateKeyPolicy"), "{err}");
        let huge = format!("[{}]", vec!["1"; 260_000].join(","));
        let err = parse::<serde_json::Value>(Path::new("big.yaml"), &huge)
            .unwrap_err()
            .to_string();
        assert!(err.contains("too many values"), "{err}");
        assert!(!err.contains("Nodes"), "{err}");
    }
}
