//! Tests of the schedule dialect: fields, descriptors, the day-field rule, zones, rejections.

use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// The next `n` firing times after `from`, in UTC RFC 3339.
fn next_n(spec: &str, zone: Option<&str>, from: &str, n: usize) -> Vec<String> {
    let s = parse(spec, zone).unwrap();
    let mut t = ts(from);
    let mut out = Vec::new();
    for _ in 0..n {
        t = s.next_after(t).unwrap();
        out.push(t.to_string());
    }
    out
}

#[test]
fn fields_ranges_steps_lists_and_names() {
    assert_eq!(
        next_n("*/15 9-10 * * *", None, "2024-01-01T09:20:00Z", 4),
        [
            "2024-01-01T09:30:00Z",
            "2024-01-01T09:45:00Z",
            "2024-01-01T10:00:00Z",
            "2024-01-01T10:15:00Z"
        ]
    );
    // Month and weekday names; 2024-01-01 is a Monday.
    assert_eq!(
        next_n("0 12 * jan,FEB mon-wed", None, "2024-01-01T12:00:00Z", 3),
        [
            "2024-01-02T12:00:00Z",
            "2024-01-03T12:00:00Z",
            "2024-01-08T12:00:00Z"
        ]
    );
    // N/step is N-max/step.
    assert_eq!(
        next_n("50/5 0 1 1 *", None, "2024-01-01T00:00:00Z", 2),
        ["2024-01-01T00:50:00Z", "2024-01-01T00:55:00Z"]
    );
    // Strictly after: a time on the schedule gives the next one, sub-seconds included.
    assert_eq!(
        next_n("* * * * *", None, "2024-01-01T00:00:00.5Z", 1),
        ["2024-01-01T00:01:00Z"]
    );
}

#[test]
fn descriptors_are_robfigs() {
    let from = "2024-01-03T10:30:00Z"; // a Wednesday
    assert_eq!(next_n("@hourly", None, from, 1), ["2024-01-03T11:00:00Z"]);
    assert_eq!(next_n("@daily", None, from, 1), ["2024-01-04T00:00:00Z"]);
    assert_eq!(next_n("@midnight", None, from, 1), ["2024-01-04T00:00:00Z"]);
    assert_eq!(next_n("@weekly", None, from, 1), ["2024-01-07T00:00:00Z"]);
    assert_eq!(next_n("@monthly", None, from, 1), ["2024-02-01T00:00:00Z"]);
    assert_eq!(next_n("@yearly", None, from, 1), ["2025-01-01T00:00:00Z"]);
    assert_eq!(next_n("@annually", None, from, 1), ["2025-01-01T00:00:00Z"]);
    assert_eq!(
        next_n("@every 1h30m", None, "2024-01-03T10:30:00.7Z", 2),
        ["2024-01-03T12:00:00Z", "2024-01-03T13:30:00Z"]
    );
    // Below a second is one second.
    assert_eq!(
        next_n("@every 10ms", None, "2024-01-03T10:30:00Z", 1),
        ["2024-01-03T10:30:01Z"]
    );
    assert!(matches!(
        parse("@reboot", None),
        Err(ScheduleError::UnknownDescriptor { .. })
    ));
    assert!(matches!(
        parse("@every 5x", None),
        Err(ScheduleError::BadDuration { .. })
    ));
}

#[test]
fn day_fields_or_when_both_are_restricted() {
    // 1st of the month OR Sundays: 2024-09-01 is a Sunday, 09-08 too, then 10-01.
    assert_eq!(
        next_n("0 0 1 * 0", None, "2024-08-31T00:00:00Z", 3),
        [
            "2024-09-01T00:00:00Z",
            "2024-09-08T00:00:00Z",
            "2024-09-15T00:00:00Z"
        ]
    );
    // A `*` day field means the other alone decides, `?` as well.
    assert_eq!(
        next_n("0 0 ? * 0", None, "2024-08-31T00:00:00Z", 2),
        ["2024-09-01T00:00:00Z", "2024-09-08T00:00:00Z"]
    );
    // robfig: `*,10` is unrestricted (so Tuesdays only), unlike Vixie cron's first-character
    // rule; and `*/2` is restricted (so odd days OR weekends).
    assert_eq!(
        next_n("0 12 10,* * 2", None, "2024-09-24T13:00:00Z", 1),
        ["2024-10-01T12:00:00Z"]
    );
    assert_eq!(
        next_n("0 12 */2 * 0,6", None, "2024-09-24T13:06:52Z", 3),
        [
            "2024-09-25T12:00:00Z",
            "2024-09-27T12:00:00Z",
            "2024-09-28T12:00:00Z"
        ]
    );
}

#[test]
fn time_zones_from_the_field_or_the_prefix() {
    // 09:00 in Tokyo is 00:00 UTC.
    assert_eq!(
        next_n("0 9 * * *", Some("Asia/Tokyo"), "2024-01-01T01:00:00Z", 1),
        ["2024-01-02T00:00:00Z"]
    );
    assert_eq!(
        next_n("CRON_TZ=Asia/Tokyo 0 9 * * *", None, "2024-01-01T01:00:00Z", 1),
        ["2024-01-02T00:00:00Z"]
    );
    assert_eq!(
        next_n("TZ=America/New_York 0 9 * * *", None, "2024-07-01T00:00:00Z", 1),
        ["2024-07-01T13:00:00Z"]
    );
    assert!(matches!(
        parse("0 9 * * *", Some("Mars/Olympus")),
        Err(ScheduleError::BadLocation { .. })
    ));
    assert!(load_zone("Local").is_err());
    assert!(load_zone("../../etc/passwd").is_err());
    assert_eq!(load_zone("").unwrap(), TimeZone::UTC);
}

#[test]
fn rejects_what_robfig_rejects() {
    for bad in [
        "",
        "* * * *",
        "* * * * * *",
        "0 0 L * *",
        "0 0 15W * *",
        "0 0 * * 5#3",
        "0 0 * * 5L",
        "0 0 * * 7",
        "61 * * * *",
        "* * * * MOON",
        "TZ=Asia/Tokyo",
    ] {
        assert!(parse(bad, None).is_err(), "{bad:?} parsed");
    }
    assert_eq!(
        parse(&"* ".repeat(600), None).unwrap_err(),
        ScheduleError::TooLong
    );
}

#[test]
fn impossible_dates_never_fire() {
    let s = parse("59 23 31 2 *", None).unwrap();
    assert_eq!(s.next_after(ts("2024-01-01T00:00:00Z")), None);
}

#[test]
fn go_durations() {
    assert_eq!(go_duration_nanos("1.5h"), Some(5_400_000_000_000));
    assert_eq!(go_duration_nanos("-2m3s"), Some(-123_000_000_000));
    assert_eq!(go_duration_nanos("0"), Some(0));
    assert_eq!(go_duration_nanos("300µs"), Some(300_000));
    for bad in ["", "1", "h", "1.2.3s", "5d", "."] {
        assert_eq!(go_duration_nanos(bad), None, "{bad:?}");
    }
}
