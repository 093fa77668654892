//! Secrets never reach output. Two layers:
//!
//! * Structured: connection strings are shown only through [`redact_url`] (scheme, user, host,
//!   port and database; never a password or a query parameter), and a libpq key/value string is
//!   never shown at all ([`is_conninfo`]).
//! * Defence in depth: every password flotilla reads (from `password_env`, `password_file`, a
//!   URL taken from the environment, `FLOTILLA_STATE_PASSWORD`) is [`register`]ed, and
//!   [`scrub`] removes registered secrets, `password=...` pairs and `scheme://user:secret@`
//!   user-info from any text before it is printed, logged or journalled: an error text a
//!   library builds from its input cannot carry a password out.

use std::borrow::Cow;
use std::sync::RwLock;

/// What replaces a secret.
pub const MASK: &str = "********";

/// Secrets shorter than this are not scrubbed by value (masking every `a` in a message would
/// garble it and reveal the secret anyway); the structured layer still never shows them.
const MIN_SCRUBBED_LEN: usize = 4;

static REGISTERED: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Remember a secret so that [`scrub`] removes it from every text printed or recorded later.
pub fn register(secret: &str) {
    let secret = secret.trim();
    if secret.len() < MIN_SCRUBBED_LEN {
        return;
    }
    let mut all = REGISTERED.write().unwrap_or_else(|p| p.into_inner());
    if !all.iter().any(|s| s == secret) {
        all.push(secret.to_string());
        // Longest first: a secret that contains another is masked whole.
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// Register the password a URL carries (a URL from the environment may hold one), and every
/// `password`/`sslpassword` parameter.
pub fn register_url(url: &str) {
    if let Ok(parsed) = url::Url::parse(url) {
        if let Some(pw) = parsed.password() {
            register(pw);
            if let Ok(decoded) = percent_encoding::percent_decode_str(pw).decode_utf8() {
                register(&decoded);
            }
        }
        for (k, v) in parsed.query_pairs() {
            if is_secret_key(&k) {
                register(&v);
            }
        }
    }
}

fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k == "password" || k == "sslpassword" || k == "pass" || k == "pwd"
}

/// Whether `s` looks like a libpq key/value connection string (`host=db user=rio ...`)
/// rather than a URL or a path: it has `key=` pairs and no `scheme://`.
pub fn is_conninfo(s: &str) -> bool {
    !s.contains("://")
        && s.split_whitespace().any(|word| {
            word.split_once('=').is_some_and(|(k, _)| {
                !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            })
        })
}

/// `scheme://user@host:port/database`, and nothing else: no password, no query parameters.
/// Something that is not a URL is not shown at all.
pub fn redact_url(u: &str) -> String {
    match url::Url::parse(u) {
        Ok(p) if p.has_host() || p.path().starts_with('/') => {
            let user = if p.username().is_empty() {
                String::new()
            } else {
                format!("{}@", p.username())
            };
            let port = p.port().map(|n| format!(":{n}")).unwrap_or_default();
            format!(
                "{}://{user}{}{port}{}",
                p.scheme(),
                p.host_str().unwrap_or_default(),
                p.path()
            )
        }
        _ => "(a connection string that is not a URL; not shown)".into(),
    }
}

/// `text` with every registered secret masked, and nothing else changed (for output that must
/// stay exact otherwise, such as SQL in JSON).
pub fn scrub_registered(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    let all = REGISTERED.read().unwrap_or_else(|p| p.into_inner());
    for secret in all.iter() {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(out.replace(secret.as_str(), MASK));
        }
    }
    out
}

/// `text` with every registered secret, every `password=VALUE` (libpq key/value strings and
/// URL query parameters) and every `://user:secret@` masked.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let mut out = scrub_registered(text);
    if let Some(masked) = mask_userinfo(&out) {
        out = Cow::Owned(masked);
    }
    if let Some(masked) = mask_password_pairs(&out) {
        out = Cow::Owned(masked);
    }
    out
}

/// [`scrub`] every string of a JSON value (keys stay): the value stays valid JSON, which
/// masking its serialised text could break.
pub fn scrub_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => {
            if let Cow::Owned(masked) = scrub(s) {
                *s = masked;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(scrub_json),
        serde_json::Value::Object(map) => map.values_mut().for_each(scrub_json),
        _ => {}
    }
}

/// `scheme://user:secret@host/db?k=v` → `scheme://user:********@host/db?k=********`: the
/// user-info password and every query value of a URL (a misspelt `pasword=` is still a
/// password); `None` when there is nothing to mask.
fn mask_userinfo(text: &str) -> Option<String> {
    if !text.contains("://") {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        // The authority ends at the first '/', '?', '#' or whitespace.
        let end = tail
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(a) => {
                let userinfo = &authority[..a];
                match userinfo.split_once(':') {
                    Some((user, _secret)) => {
                        out.push_str(user);
                        out.push(':');
                        out.push_str(MASK);
                        out.push_str(&authority[a..]);
                        changed = true;
                    }
                    None => out.push_str(authority),
                }
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
        // Path and query, up to the end of the URL.
        let url_end = rest
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>'))
            .unwrap_or(rest.len());
        let (url_rest, after) = rest.split_at(url_end);
        match url_rest.split_once('?') {
            Some((path, query)) => {
                out.push_str(path);
                out.push('?');
                let masked: Vec<String> = query
                    .split('&')
                    .map(|pair| match pair.split_once('=') {
                        Some((k, v)) if !v.is_empty() => {
                            changed = true;
                            format!("{k}={MASK}")
                        }
                        _ => pair.to_string(),
                    })
                    .collect();
                out.push_str(&masked.join("&"));
            }
            None => out.push_str(url_rest),
        }
        rest = after;
    }
    out.push_str(rest);
    changed.then_some(out)
}

/// `password=VALUE` / `password = 'VALUE'` (any case, also `sslpassword`), as in libpq
/// key/value strings and URL query parameters → `password=********`; `None` when there is none.
fn mask_password_pairs(text: &str) -> Option<String> {
    let has = |needle: &[u8]| {
        text.as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
    };
    if !has(b"password") && !has(b"pwd") {
        return None;
    }
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut copied = 0;
    let mut changed = false;
    while i < bytes.len() {
        let key_len = ["sslpassword", "password", "pwd"]
            .iter()
            .find(|k| lower.as_bytes()[i..].starts_with(k.as_bytes()))
            .map(|k| k.len());
        let Some(key_len) = key_len else {
            i += 1;
            continue;
        };
        // Not only whole words: `xpassword=` is no key we know, but masking it is safer.
        let mut j = i + key_len;
        while j < bytes.len() && bytes[j] == b' ' {
            j += 1;
        }
        if j >= bytes.len() || bytes[j] != b'=' {
            i += key_len;
            continue;
        }
        j += 1;
        while j < bytes.len() && bytes[j] == b' ' {
            j += 1;
        }
        let value_end = if j < bytes.len() && (bytes[j] == b'\'' || bytes[j] == b'"') {
            let quote = bytes[j];
            let mut k = j + 1;
            while k < bytes.len() && bytes[k] != quote {
                if bytes[k] == b'\\' {
                    k += 1;
                }
                k += 1;
            }
            (k + 1).min(bytes.len())
        } else {
            let mut k = j;
            while k < bytes.len()
                && !bytes[k].is_ascii_whitespace()
                && !matches!(bytes[k], b'&' | b';' | b',' | b')' | b'"' | b'\'')
            {
                k += 1;
            }
            k
        };
        if value_end > j {
            out.push_str(&text[copied..j]);
            out.push_str(MASK);
            copied = value_end;
            changed = true;
        }
        i = value_end.max(i + key_len);
    }
    out.push_str(&text[copied..]);
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_passwords_are_masked_in_any_quoting() {
        let s = scrub("cannot parse host=db user=rio password=hunter2 dbname=x");
        assert!(!s.contains("hunter2"), "{s}");
        assert!(s.contains("host=db"), "{s}");
        let s = scrub("host=db password = 'hunter 2' dbname=x");
        assert!(!s.contains("hunter"), "{s}");
        let s = scrub("postgres://u@h/db?sslmode=require&password=hunter2&x=1");
        assert!(!s.contains("hunter2"), "{s}");
        assert_eq!(
            s,
            "postgres://u@h/db?sslmode=********&password=********&x=********"
        );
        let s = scrub("value \"postgres://u@h/db?pasword=hunter2\", expected a duration");
        assert!(!s.contains("hunter2"), "{s}");
        assert!(s.ends_with("\", expected a duration"), "{s}");
    }

    #[test]
    fn url_user_info_is_masked_and_the_rest_kept() {
        let s = scrub("connect postgres://rio:s3cr%40t@db.example:5432/camden failed");
        assert_eq!(
            s,
            "connect postgres://rio:********@db.example:5432/camden failed"
        );
        assert_eq!(scrub("plain text, no url"), "plain text, no url");
        assert_eq!(
            scrub("see https://x.example/a@b"),
            "see https://x.example/a@b"
        );
    }

    #[test]
    fn registered_secrets_are_masked_wherever_they_appear() {
        register("Tr0ub4dor&3");
        let s = scrub("error: role \"x\" said Tr0ub4dor&3 is wrong");
        assert!(!s.contains("Tr0ub4dor&3"), "{s}");
        register("ab");
        assert_eq!(scrub("a b ab"), "a b ab", "too short to scrub by value");
    }

    #[test]
    fn json_stays_json_when_its_strings_are_scrubbed() {
        let mut v = serde_json::json!({
            "error": "cannot parse \"postgres://u:pw1234@h/db?x=1\" or host=h password=pw1234",
            "n": 1,
        });
        scrub_json(&mut v);
        let text = v.to_string();
        assert!(!text.contains("pw1234"), "{text}");
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["n"], 1);
    }

    #[test]
    fn conninfo_strings_are_recognised_and_urls_are_not() {
        assert!(is_conninfo("host=db user=rio password=x dbname=c"));
        assert!(is_conninfo("dbname=camden"));
        assert!(!is_conninfo("postgres://u@h/db?sslmode=require"));
        assert!(!is_conninfo("estate/state.db"));
    }

    #[test]
    fn redacted_url_keeps_only_user_host_port_and_database() {
        assert_eq!(
            redact_url("postgres://rio:pw@db.example:5433/camden?sslmode=require&password=x"),
            "postgres://rio@db.example:5433/camden"
        );
        assert!(!redact_url("host=db password=hunter2").contains("hunter2"));
    }
}
