//! YAML in and out: the repo's files read as JSON values, and written back as block YAML.

use std::fmt::Write as _;

use serde_json::Value;

/// Parse YAML into JSON values (the harness only reads the repo's own, simple files).
pub fn parse_yaml(text: &str, what: &str) -> Value {
    serde_saphyr::from_str::<Value>(text).unwrap_or_else(|e| panic!("parse {what}: {e}"))
}

/// Emit `v` as block-style YAML; every scalar is JSON-encoded (a JSON string is a valid YAML
/// double-quoted scalar), so nothing is re-typed on the way back in.
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    emit_yaml(v, 0, &mut out);
    out
}

fn yaml_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        serde_json::to_string(k).unwrap()
    }
}

fn is_inline(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => true,
    }
}

fn inline(v: &Value) -> String {
    match v {
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
        other => serde_json::to_string(other).unwrap(),
    }
}

fn emit_yaml(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(map) => {
            for (k, val) in map {
                if is_inline(val) {
                    let _ = writeln!(out, "{pad}{}: {}", yaml_key(k), inline(val));
                } else {
                    let _ = writeln!(out, "{pad}{}:", yaml_key(k));
                    emit_yaml(val, indent + 2, out);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                if is_inline(item) {
                    let _ = writeln!(out, "{pad}- {}", inline(item));
                } else {
                    // emit the item two deeper, then put the dash on its first line
                    let mut sub = String::new();
                    emit_yaml(item, indent + 2, &mut sub);
                    out.push_str(&pad);
                    out.push_str("- ");
                    out.push_str(&sub[indent + 2..]);
                }
            }
        }
        scalar => {
            let _ = writeln!(out, "{pad}{}", inline(scalar));
        }
    }
}
