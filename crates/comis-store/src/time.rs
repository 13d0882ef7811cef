//! Timestamps: milliseconds since the Unix epoch in the database, RFC 3339 UTC on the way out.
//!
//! Guarantees: [`format_ms`] and [`format_secs`] are total (any `i64` formats, no panic); [`parse_duration`]
//! accepts only `<digits><unit>` with unit `ms`, `s`, `m`, `h`, `d` or `w` and refuses
//! overflow.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::{Result, StoreError};

/// Now, in milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `ms` since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (proleptic Gregorian, UTC).
pub fn format_ms(ms: i64) -> String {
    let (date, time) = civil(ms.div_euclid(1000));
    format!("{date}T{time}.{:03}Z", ms.rem_euclid(1000))
}

/// `secs` since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC).
pub fn format_secs(secs: i64) -> String {
    let (date, time) = civil(secs);
    format!("{date}T{time}Z")
}

/// Date and time of day for `secs` since the epoch, via Howard Hinnant's civil_from_days.
fn civil(secs: i64) -> (String, String) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60),
    )
}

/// Parses a duration such as `90s`, `15m`, `1h`, `7d` into milliseconds.
///
/// # Errors
/// [`StoreError::Invalid`] for anything else.
pub fn parse_duration(s: &str) -> Result<i64> {
    let bad = |reason: &str| StoreError::Invalid {
        what: "duration",
        reason: format!("{s:?}: {reason} (examples: 30s, 15m, 1h, 7d)"),
    };
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| bad("missing unit"))?;
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return Err(bad("missing number"));
    }
    let n: i64 = digits.parse().map_err(|_| bad("number too large"))?;
    let factor: i64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 604_800_000,
        _ => return Err(bad("unknown unit")),
    };
    n.checked_mul(factor).ok_or_else(|| bad("number too large"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn format_secs_known_dates() {
        assert_eq!(format_secs(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_secs(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_secs(1_767_225_599), "2025-12-31T23:59:59Z");
        assert_eq!(format_secs(4_102_444_800), "2100-01-01T00:00:00Z");
        assert!(format_secs(i64::MAX).ends_with('Z'));
        assert_eq!(format_secs(-1), "1969-12-31T23:59:59Z");
        assert_eq!(format_ms(1_500), "1970-01-01T00:00:01.500Z");
    }

    #[test]
    fn formats_utc() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(format_ms(-1), "1969-12-31T23:59:59.999Z");
        // Total: extreme values format without panicking.
        let _ = format_ms(i64::MAX);
        let _ = format_ms(i64::MIN);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h").unwrap(), 3_600_000);
        assert_eq!(parse_duration("15m").unwrap(), 900_000);
        assert_eq!(parse_duration("250ms").unwrap(), 250);
        assert_eq!(parse_duration("2w").unwrap(), 1_209_600_000);
        for bad in [
            "",
            "h",
            "1",
            "1y",
            "-1h",
            "1 h",
            "99999999999999999999h",
            "9999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
