//! Printing for people: [`outln`]/[`jsonln`]/[`print_line`] on stdout, [`about_trust`] naming a
//! trust once, and the escaping below. Text from the user's files is shown as text, never as
//! terminal commands: control characters
//! (an ESC starting a colour or cursor sequence, a carriage return that overwrites a line, a
//! bell) and the Unicode controls that reorder what is displayed (bidirectional overrides,
//! zero-width characters) are written as `\u{..}` escapes. Newlines and tabs stay: messages
//! span lines on purpose.

use std::borrow::Cow;
use std::fmt::Write as _;

fn must_escape(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c,
            '\u{200B}'..='\u{200F}'   // zero-width space/joiners, LRM, RLM
            | '\u{2028}'..='\u{202E}' // line/paragraph separators, bidi embeddings and overrides
            | '\u{2060}'..='\u{2069}' // word joiner, invisible operators, bidi isolates
            | '\u{FEFF}')
}

/// `text` safe to print on a terminal.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(must_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if must_escape(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// What flotilla prints: secrets scrubbed ([`crate::secrets::scrub`]) and control characters
/// escaped.
pub fn for_output(text: &str) -> String {
    printable(&crate::secrets::scrub(text)).into_owned()
}

/// `println!` that never panics: a closed pipe (`flotilla status | head`) is not an error.
/// Text for people: secrets scrubbed, control characters from the user's files escaped.
macro_rules! outln {
    () => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock());
    }};
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let text = $crate::printable::for_output(&format!($($arg)*));
        let _ = writeln!(std::io::stdout().lock(), "{text}");
    }};
}
pub(crate) use outln;

/// JSON for programs: every password flotilla read is masked where it appears; serde_json
/// already escapes control characters (the terminal escaping of [`outln`] would make it
/// invalid JSON), and SQL in it stays exact.
macro_rules! jsonln {
    ($value:expr) => {{
        use std::io::Write as _;
        let text = $value.to_string();
        let _ = writeln!(
            std::io::stdout().lock(),
            "{}",
            $crate::secrets::scrub_registered(&text)
        );
    }};
}
pub(crate) use jsonln;

/// Print one line on stdout for people (a closed pipe is not an error).
pub fn print_line(line: &str) {
    outln!("{line}");
}

/// `trust 'id': message`, without saying the trust twice when the message already names it.
pub fn about_trust(id: &str, message: &str) -> String {
    if message.starts_with(&format!("trust '{id}'")) {
        message.to_string()
    } else {
        format!("trust '{id}': {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_and_bidi_overrides_are_escaped_but_lines_kept() {
        assert_eq!(
            printable("wave \u{1b}[2Jpilot\r\nnext\tcol\u{7}"),
            "wave \\u{1b}[2Jpilot\\u{d}\nnext\tcol\\u{7}"
        );
        assert_eq!(printable("a\u{202e}b"), "a\\u{202e}b");
        assert!(matches!(printable("camden → 5.1 ✓"), Cow::Borrowed(_)));
    }
}
