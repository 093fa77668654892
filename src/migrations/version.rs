//! How other tools write migration versions, and the 64-bit key flotilla orders and records
//! them by.
//!
//! flotilla's tracking table and journal key every migration by an `i64`. Most tools already
//! use integers: sqlx and golang-migrate (`20240101120000_x.up.sql`), dbmate (timestamps).
//! diesel's timestamps (`2014-11-27-000000_x/`, `2026-07-30-140000-0000_x/`) get a key that
//! keeps diesel's text order ([`diesel_key`]). Flyway's versions
//! are dotted (`V1.2.3__x.sql`, or `V1_2_3__x.sql`), compared part by part as numbers, a
//! missing part counting as 0 (`1` = `1.0`).
//!
//! Flyway versions get a key that keeps Flyway's order and never changes when later versions
//! are added: up to three parts `a.b.c` become `a * 10^12 + b * 10^6 + c` (`a` at most
//! 9,223,371, `b` and `c` below 1,000,000), so `1` < `1.1` < `1.10` < `2` and `1` = `1.0`.
//! Timestamp versions (one part of 13 digits or more, `V20240101120000__x.sql`) keep the
//! timestamp as the key. The two kinds cannot be ordered together by one key, so a catalog
//! that mixes them is refused by the loader (see [`FlywayKey::kind`]).

use std::fmt;

/// The largest first part of a dotted Flyway version.
pub const FLYWAY_MAX_MAJOR: i64 = i64::MAX / 1_000_000_000_000 - 1;

/// Why a version text has no key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionError {
    /// Not digits (with the separators the tool allows).
    Shape(String),
    /// Digits, but too many for 64 bits, or a Flyway part out of range.
    TooLarge(String),
}

impl fmt::Display for VersionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionError::Shape(v) => write!(f, "'{v}' is not a version"),
            VersionError::TooLarge(v) => write!(
                f,
                "version '{v}' does not fit flotilla's 64-bit version key (Flyway versions: at \
                 most three parts, the first at most {FLYWAY_MAX_MAJOR}, the others below \
                 1000000; or one timestamp part)"
            ),
        }
    }
}

impl std::error::Error for VersionError {}

/// The key of a version written as digits, ignoring `-` separators: sqlx, golang-migrate,
/// dbmate and diesel (`2014-11-27-000000` and `2026-07-30-140000-0000` → their digits; a diesel
/// catalog orders by [`diesel_key`]).
pub fn digits_key(text: &str) -> Result<i64, VersionError> {
    let digits: String = text.chars().filter(|&c| c != '-').collect();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VersionError::Shape(text.to_string()));
    }
    digits
        .parse()
        .map_err(|_| VersionError::TooLarge(text.to_string()))
}

/// The key of a diesel version. diesel writes a timestamp, `2014-11-27-000000`, and newer diesel
/// adds a 4-digit suffix, `2026-07-30-140000-0000`; it orders versions as text (dashes
/// removed), so a suffixed version comes right after the same second without one (crates.io
/// has both `2026-05-27-120000` and `2026-05-27-120000-0000`) and before the next second.
/// Keyed by all their digits ([`digits_key`]), the 18-digit suffixed versions would sort after
/// every 14-digit one whatever their dates. So the key is the 14-digit timestamp followed by 5
/// digits: `00000` without a suffix, 1 + the suffix with one (`2026-07-30-140000-0000` →
/// `2026073014000000001`, `2014-11-27-000000` → `2014112700000000000`). Other shapes fall back
/// to [`digits_key`] (the loader then checks that the keys keep diesel's order).
/// `__diesel_schema_migrations.version` (`202607301400000000`) has the same key.
pub fn diesel_key(text: &str) -> Result<i64, VersionError> {
    let digits: String = text.chars().filter(|&c| c != '-').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !matches!(digits.len(), 14 | 18) {
        return digits_key(text);
    }
    let too_large = || VersionError::TooLarge(text.to_string());
    let timestamp: i64 = digits[..14].parse().map_err(|_| too_large())?;
    let suffix: i64 = match &digits[14..] {
        "" => 0,
        s => 1 + s.parse::<i64>().map_err(|_| too_large())?,
    };
    timestamp
        .checked_mul(100_000)
        .and_then(|k| k.checked_add(suffix))
        .ok_or_else(too_large)
}

/// Which kind of Flyway version a key came from: they order among themselves only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlywayKind {
    /// `1`, `1.2`, `1.2.3` (also written `1_2_3` in file names).
    Dotted,
    /// One part of 13 digits or more: a timestamp.
    Timestamp,
}

/// A Flyway version's key and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlywayKey {
    /// The 64-bit key.
    pub key: i64,
    /// Dotted or timestamp.
    pub kind: FlywayKind,
}

/// The key of a Flyway version as it appears in a file name (`1_2`, `1.2`) or in
/// `flyway_schema_history.version` (`1.2`). Leading zeros do not matter (`1.01` = `1.1`), as
/// in Flyway.
pub fn flyway_key(text: &str) -> Result<FlywayKey, VersionError> {
    let parts: Vec<&str> = text.split(['.', '_']).collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(VersionError::Shape(text.to_string()));
    }
    let too_large = || VersionError::TooLarge(text.to_string());
    if parts.len() == 1 && parts[0].trim_start_matches('0').len() >= 13 {
        let key = parts[0].parse().map_err(|_| too_large())?;
        return Ok(FlywayKey {
            key,
            kind: FlywayKind::Timestamp,
        });
    }
    // Trailing zero parts do not change a Flyway version (1.0 = 1), so they may exceed three.
    let mut significant = parts.as_slice();
    while significant.len() > 1
        && significant[significant.len() - 1]
            .bytes()
            .all(|b| b == b'0')
    {
        significant = &significant[..significant.len() - 1];
    }
    if significant.len() > 3 {
        return Err(too_large());
    }
    let mut key: i64 = 0;
    for (i, scale) in [1_000_000_000_000i64, 1_000_000, 1].into_iter().enumerate() {
        let part: i64 = match significant.get(i) {
            Some(p) => p.parse().map_err(|_| too_large())?,
            None => 0,
        };
        let limit = if i == 0 { FLYWAY_MAX_MAJOR } else { 999_999 };
        if part > limit {
            return Err(too_large());
        }
        key += part * scale;
    }
    Ok(FlywayKey {
        key,
        kind: FlywayKind::Dotted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(v: &str) -> i64 {
        flyway_key(v).unwrap().key
    }

    #[test]
    fn digits_keys_read_every_integer_tool() {
        assert_eq!(digits_key("20141127000000"), Ok(20141127000000));
        assert_eq!(digits_key("2014-11-27-000000"), Ok(20141127000000));
        assert_eq!(digits_key("2026-07-30-140000-0000"), Ok(202607301400000000));
        assert_eq!(digits_key("00000000000000"), Ok(0));
        assert_eq!(digits_key("0010"), Ok(10));
        assert!(matches!(digits_key("1.2"), Err(VersionError::Shape(_))));
        assert!(matches!(digits_key(""), Err(VersionError::Shape(_))));
        assert!(matches!(
            digits_key("99999999999999999999"),
            Err(VersionError::TooLarge(_))
        ));
    }

    #[test]
    fn diesel_keys_keep_diesels_order() {
        assert_eq!(diesel_key("2014-11-27-000000"), Ok(2014112700000000000));
        assert_eq!(diesel_key("20141127000000"), Ok(2014112700000000000));
        assert_eq!(
            diesel_key("2026-07-30-140000-0000"),
            Ok(2026073014000000001)
        );
        assert_eq!(diesel_key("202607301400000000"), Ok(2026073014000000001));
        assert_eq!(diesel_key("00000000000000"), Ok(0));
        let ordered = [
            "00000000000000",
            "2025-12-29-110242-0000",
            "2026-01-20-162913",
            "2026-05-27-120000",
            "2026-05-27-120000-0000",
            "2026-05-27-120000-0001",
            "2026-05-27-120001",
        ];
        let keys: Vec<i64> = ordered.iter().map(|v| diesel_key(v).unwrap()).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        assert_eq!(diesel_key("0001"), Ok(1));
        assert!(matches!(
            diesel_key("2014-11-x"),
            Err(VersionError::Shape(_))
        ));
        assert!(matches!(
            diesel_key("99991231235959"),
            Err(VersionError::TooLarge(_))
        ));
    }

    #[test]
    fn flyway_keys_keep_flyways_order() {
        let ordered = ["1", "1.1", "1.2", "1.10", "2", "2.0.1", "10", "10.5.3"];
        let keys: Vec<i64> = ordered.iter().map(|v| key(v)).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        assert_eq!(key("1"), key("1.0"));
        assert_eq!(key("1.0.0.0"), key("1"));
        assert_eq!(key("1_2_3"), key("1.2.3"));
        assert_eq!(key("1.01"), key("1.1"));
        assert_eq!(key("1.2.3"), 1_000_002_000_003);
    }

    #[test]
    fn flyway_timestamps_keep_their_value_and_kind() {
        let k = flyway_key("20240101120000").unwrap();
        assert_eq!(k.key, 20240101120000);
        assert_eq!(k.kind, FlywayKind::Timestamp);
        assert_eq!(flyway_key("3").unwrap().kind, FlywayKind::Dotted);
    }

    #[test]
    fn flyway_versions_out_of_range_are_refused() {
        assert!(matches!(
            flyway_key("1.2.3.4"),
            Err(VersionError::TooLarge(_))
        ));
        assert!(matches!(
            flyway_key("1.1000000"),
            Err(VersionError::TooLarge(_))
        ));
        assert!(matches!(
            flyway_key("9223372"),
            Err(VersionError::TooLarge(_))
        ));
        assert!(flyway_key(&FLYWAY_MAX_MAJOR.to_string()).is_ok());
        assert!(matches!(flyway_key("1..2"), Err(VersionError::Shape(_))));
        assert!(matches!(flyway_key("v1"), Err(VersionError::Shape(_))));
    }
}
