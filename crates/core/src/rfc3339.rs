//! RFC 3339 timestamps as Kubernetes writes them: `metav1.Time` (seconds),
//! `metav1.MicroTime` (microseconds) and the CRI log's nanoseconds, all in UTC. Calendar
//! arithmetic is `jiff`'s (the crate `k8s-openapi` uses for `metav1.Time`).

use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::jiff::civil::DateTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// The UTC civil time `since` after the epoch, clamped to years -9999..=9999.
fn utc(since: SignedDuration) -> DateTime {
    DateTime::constant(1970, 1, 1, 0, 0, 0, 0)
        .checked_add(since)
        .unwrap_or(if since.is_negative() {
            DateTime::MIN
        } else {
            DateTime::MAX
        })
}

/// `2024-05-01T12:00:00Z`: second precision, like `metav1.Time`.
pub fn seconds(millis: i64) -> String {
    format!("{:.0}Z", utc(SignedDuration::from_secs(millis.div_euclid(1000))))
}

/// `2024-05-01T12:00:00.123000Z`: microseconds, like `metav1.MicroTime`.
pub fn micros(millis: i64) -> String {
    format!("{:.6}Z", utc(SignedDuration::from_millis(millis)))
}

/// `2024-05-01T12:00:00.123456789Z`: nanoseconds, like a CRI log record (a time before the
/// epoch is the epoch).
pub fn nanos(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!(
        "{:.9}Z",
        utc(SignedDuration::try_from(since).unwrap_or(SignedDuration::MAX))
    )
}

/// Milliseconds since the epoch of an RFC 3339 timestamp with `Z` or an offset (fractions
/// below a millisecond are cut); `None` if it is not one.
pub fn parse(s: &str) -> Option<i64> {
    s.parse::<Timestamp>().ok().map(|t| t.as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    #[test]
    fn formats() {
        assert_eq!(seconds(0), "1970-01-01T00:00:00Z");
        assert_eq!(seconds(1_709_251_199_999), "2024-02-29T23:59:59Z");
        assert_eq!(seconds(-1), "1969-12-31T23:59:59Z");
        assert_eq!(seconds(i64::MAX), "9999-12-31T23:59:59Z");
        assert_eq!(micros(1_500), "1970-01-01T00:00:01.500000Z");
        assert_eq!(
            nanos(UNIX_EPOCH + Duration::new(1_700_000_000, 5)),
            "2023-11-14T22:13:20.000000005Z"
        );
        assert_eq!(nanos(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
    }

    #[test]
    fn parses() {
        assert_eq!(parse("2024-02-29T23:59:59Z"), Some(1_709_251_199_000));
        assert_eq!(parse("2024-02-29T23:59:59.5Z"), Some(1_709_251_199_500));
        assert_eq!(parse("2024-03-01T01:59:59+02:00"), Some(1_709_251_199_000));
        assert_eq!(parse("2024-02-30T00:00:00Z"), None, "no such day");
        assert_eq!(parse("2024-02-29T23:59:59"), None, "an offset is required");
        assert_eq!(parse("garbage"), None);
    }

    proptest! {
        #[test]
        fn round_trips(secs in -62_135_596_800i64..253_402_300_799, ms in 0i64..1000) {
            let millis = secs * 1000 + ms;
            prop_assert_eq!(parse(&seconds(millis)), Some(secs * 1000));
            prop_assert_eq!(parse(&micros(millis)), Some(millis));
            prop_assert_eq!(seconds(millis).len(), 20);
        }

        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = parse(&s);
        }
    }
}
