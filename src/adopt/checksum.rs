//! The checksums other tools keep of a migration's up file, computed the way each tool computes
//! them, so `adopt` can tell whether the files it reads are the ones that ran.

use sha2::{Digest, Sha384};

/// sqlx-cli: SHA-384 of the up file's bytes, stored as `BYTEA`/`BLOB` (here in lower-case hex).
pub fn sqlx(bytes: &[u8]) -> String {
    hex::encode(Sha384::digest(bytes))
}

/// Flyway: CRC-32 (java.util.zip.CRC32, the IEEE polynomial) over the file read line by line
/// as `BufferedReader.readLine` reads it: every line's UTF-8 bytes without its terminator
/// (`\n`, `\r` or `\r\n`), a byte-order mark at the start of the first line removed, stored as
/// a signed 32-bit `INT`. So the checksum does not change with line endings, and an empty file
/// has checksum 0.
pub fn flyway(bytes: &[u8]) -> i32 {
    let text = String::from_utf8_lossy(bytes);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut crc = crc32fast::Hasher::new();
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest.find(['\n', '\r']).unwrap_or(rest.len());
        crc.update(&rest.as_bytes()[..end]);
        let after = &rest[end..];
        rest = if let Some(r) = after.strip_prefix("\r\n") {
            r
        } else if after.is_empty() {
            after
        } else {
            &after[1..]
        };
    }
    // Java stores the unsigned value cast to int: the same 32 bits, read as signed.
    crc.finalize() as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `V3__Couple.sql` and the checksum Flyway recorded for it, from Flyway's own dry-run
    /// tutorial (documentation/Reference/Tutorials, "Tutorial - Dry Runs"). Two lines end in a
    /// space, which counts.
    const COUPLE: &str = "create table COUPLE (\n    ID int not null,\n    PERSON1 int not null references PERSON(ID), \n    PERSON2 int not null references PERSON(ID) \n);\n";

    #[test]
    fn flyway_checksum_matches_flyways_own_value() {
        assert_eq!(flyway(COUPLE.as_bytes()), -722_651_034);
    }

    #[test]
    fn flyway_checksum_ignores_line_endings_and_a_bom() {
        let crlf = COUPLE.replace('\n', "\r\n");
        let cr = COUPLE.replace('\n', "\r");
        let bom = format!("\u{feff}{COUPLE}");
        let no_final_newline = COUPLE.trim_end_matches('\n');
        for variant in [crlf.as_str(), cr.as_str(), bom.as_str(), no_final_newline] {
            assert_eq!(flyway(variant.as_bytes()), -722_651_034, "{variant:?}");
        }
        // A blank line is a line with no bytes: it does not change the checksum either.
        assert_eq!(
            flyway(COUPLE.replace(",\n", ",\n\n").as_bytes()),
            -722_651_034
        );
        assert_eq!(flyway(b""), 0);
        // But a change of content does.
        assert_ne!(
            flyway(COUPLE.replace("ID int", "ID bigint").as_bytes()),
            -722_651_034
        );
    }

    #[test]
    fn sqlx_checksum_is_sha384_of_the_bytes() {
        // FIPS 180-2's SHA-384 test vector for "abc".
        assert_eq!(
            sqlx(b"abc"),
            "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7"
        );
    }
}
