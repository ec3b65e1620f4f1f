//! CronJob schedules and time zones, checked the way kube-apiserver checks them.
//!
//! The schedule grammar is robfig/cron v3's `ParseStandard` (what kube-apiserver and the
//! CronJob controller use): five fields (minute, hour, day of month, month, day of week) of
//! comma-separated `*`/`?`, numbers, `JAN`–`DEC` and `SUN`–`SAT` names, ranges and steps; the
//! descriptors `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`
//! and `@every <Go duration>`; and an optional `TZ=`/`CRON_TZ=` prefix. Errors carry robfig's
//! (and Go's `time`/`strconv`) messages. This is a checker only: it computes no fire times.
//!
//! Time zones are looked up by path in the system's zoneinfo directories (as Go's
//! `time.LoadLocation` does without embedded tzdata); a name is valid when its file starts with
//! the TZif magic.

use std::io::Read;

use super::field::go_quote;

/// The zoneinfo directories Go's `time.LoadLocation` reads on Linux, in order.
const ZONEINFO_DIRS: &[&str] = &[
    "/usr/share/zoneinfo/",
    "/usr/share/lib/zoneinfo/",
    "/usr/lib/locale/TZ/",
    "/etc/zoneinfo/",
];

/// One field's bounds and names.
struct Bounds {
    min: u64,
    max: u64,
    names: &'static [(&'static str, u64)],
}

const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        ("jan", 1),
        ("feb", 2),
        ("mar", 3),
        ("apr", 4),
        ("may", 5),
        ("jun", 6),
        ("jul", 7),
        ("aug", 8),
        ("sep", 9),
        ("oct", 10),
        ("nov", 11),
        ("dec", 12),
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &[
        ("sun", 0),
        ("mon", 1),
        ("tue", 2),
        ("wed", 3),
        ("thu", 4),
        ("fri", 5),
        ("sat", 6),
    ],
};

/// Parses `schedule` like kube-apiserver's `ParseCronScheduleWithPanicRecovery`; the error is
/// the text kube-apiserver puts after `Invalid value: "<schedule>": `.
pub(super) fn parse_schedule(schedule: &str) -> Result<(), String> {
    if schedule.is_empty() {
        return Err("empty spec string".to_owned());
    }
    let mut spec = schedule;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let eq = spec.find('=').unwrap_or(0);
        let Some(space) = spec.find(' ') else {
            // robfig slices spec[eq+1:-1] and panics; kube-apiserver recovers.
            return Err(format!(
                "unparseable schedule: {schedule} : runtime error: slice bounds out of range [:-1]"
            ));
        };
        let name = spec.get(eq + 1..space).unwrap_or("");
        if let Err(e) = load_location(name) {
            return Err(format!("provided bad location {name}: {e}"));
        }
        spec = spec.get(space..).unwrap_or("").trim_matches(is_go_space);
    }
    if spec.starts_with('@') {
        return parse_descriptor(spec);
    }
    let fields: Vec<&str> = spec.split(is_go_space).filter(|f| !f.is_empty()).collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    for (field, bounds) in fields.iter().zip([&MINUTES, &HOURS, &DOM, &MONTHS, &DOW]) {
        for expr in field.split(',').filter(|e| !e.is_empty()) {
            parse_range(expr, bounds)?;
        }
    }
    Ok(())
}

/// Go's `unicode.IsSpace`, which `strings.Fields` and `strings.TrimSpace` use.
fn is_go_space(c: char) -> bool {
    c.is_whitespace()
}

fn parse_descriptor(spec: &str) -> Result<(), String> {
    match spec {
        "@yearly" | "@annually" | "@monthly" | "@weekly" | "@daily" | "@midnight" | "@hourly" => Ok(()),
        _ => match spec.strip_prefix("@every ") {
            Some(duration) => {
                parse_go_duration(duration).map_err(|e| format!("failed to parse duration {spec}: {e}"))
            }
            None => Err(format!("unrecognized descriptor: {spec}")),
        },
    }
}

/// robfig's `getRange` for one comma-separated part of a field.
fn parse_range(expr: &str, r: &Bounds) -> Result<(), String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_and_high: Vec<&str> = range_and_step.first().copied().unwrap_or("").split('-').collect();
    let single = low_and_high.len() == 1;
    let first = low_and_high.first().copied().unwrap_or("");
    let (start, mut end) = if first == "*" || first == "?" {
        (r.min, r.max)
    } else {
        let start = parse_int_or_name(first, r)?;
        match low_and_high.get(1..).unwrap_or(&[]) {
            [] => (start, start),
            [high] => (start, parse_int_or_name(high, r)?),
            _ => return Err(format!("too many hyphens: {expr}")),
        }
    };
    let step = match range_and_step.get(1..).unwrap_or(&[]) {
        [] => 1,
        [step] => {
            let step = must_parse_int(step)?;
            if single {
                end = r.max;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < r.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            r.min
        ));
    }
    if end > r.max {
        return Err(format!("end of range ({end}) above maximum ({}): {expr}", r.max));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok(())
}

fn parse_int_or_name(expr: &str, r: &Bounds) -> Result<u64, String> {
    let lower = expr.to_lowercase();
    if let Some((_, n)) = r.names.iter().find(|(name, _)| *name == lower) {
        return Ok(*n);
    }
    must_parse_int(expr)
}

/// robfig's `mustParseInt`, with Go's `strconv.Atoi` errors.
fn must_parse_int(expr: &str) -> Result<u64, String> {
    let num = go_atoi(expr).map_err(|e| format!("failed to parse int from {expr}: {e}"))?;
    u64::try_from(num).map_err(|_| format!("negative number ({num}) not allowed: {expr}"))
}

/// Go's `strconv.Atoi` (64-bit `int`).
fn go_atoi(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.Atoi: parsing {}: invalid syntax", go_quote(s)));
    }
    s.parse::<i64>()
        .map_err(|_| format!("strconv.Atoi: parsing {}: value out of range", go_quote(s)))
}

/// Go's `time.ParseDuration`, for validity and its error messages only.
pub(super) fn parse_go_duration(orig: &str) -> Result<(), String> {
    let invalid = || format!("time: invalid duration {}", time_quote(orig));
    let mut s = orig;
    if let Some(rest) = s.strip_prefix(['-', '+']) {
        s = rest;
    }
    if s == "0" {
        return Ok(());
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        let first = s.as_bytes().first().copied().unwrap_or(0);
        if !(first == b'.' || first.is_ascii_digit()) {
            return Err(invalid());
        }
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, rest) = s.split_at(int_len);
        let mut value: u128 = 0;
        for b in int_part.bytes() {
            value = value * 10 + u128::from(b - b'0');
            if value > 1 << 63 {
                return Err(invalid());
            }
        }
        s = rest;
        let mut fraction = 0.0f64;
        let mut post = false;
        if let Some(rest) = s.strip_prefix('.') {
            let frac_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            let (frac, rest) = rest.split_at(frac_len);
            post = frac_len > 0;
            fraction = format!("0.{frac}").parse().unwrap_or(0.0);
            s = rest;
        }
        if int_len == 0 && !post {
            return Err(invalid());
        }
        let unit_len = s
            .bytes()
            .take_while(|b| !(*b == b'.' || b.is_ascii_digit()))
            .count();
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {}", time_quote(orig)));
        }
        let (unit, rest) = s.split_at(unit_len);
        s = rest;
        let nanos: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    time_quote(unit),
                    time_quote(orig)
                ));
            }
        };
        if value > (1 << 63) / nanos {
            return Err(invalid());
        }
        // The fraction's contribution is below one unit, so it fits in the float.
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let extra = (fraction * nanos as f64) as u128;
        total = total.saturating_add(value * nanos + extra);
        if total > 1 << 63 {
            return Err(invalid());
        }
    }
    if !orig.starts_with('-') && total > (1 << 63) - 1 {
        return Err(invalid());
    }
    Ok(())
}

/// The `time` package's `quote`: non-ASCII and control bytes as `\xHH`.
fn time_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if !c.is_ascii() || c < ' ' {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\x{b:02x}"));
            }
        } else {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out.push('"');
    out
}

/// Whether `name` is a time zone `time.LoadLocation` would load: `UTC`, or a TZif file in one
/// of the zoneinfo directories. The error is Go's (`unknown time zone <name>`). Callers check
/// the name's characters first (no `..`, no empty component), so it cannot leave the
/// directories.
pub(super) fn load_location(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "UTC" {
        return Ok(());
    }
    let safe = name
        .split('/')
        .all(|part| !part.is_empty() && part != "." && part != "..");
    if safe {
        for dir in ZONEINFO_DIRS {
            let mut magic = [0u8; 4];
            let read = std::fs::File::open(format!("{dir}{name}")).and_then(|mut f| f.read_exact(&mut magic));
            if read.is_ok() && &magic == b"TZif" {
                return Ok(());
            }
        }
    }
    Err(format!("unknown time zone {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_schedules_and_descriptors_parse() {
        for ok in [
            "* * * * *",
            "*/5 * * * *",
            "0 0 1 1 *",
            "0 9-17/2 * * MON-FRI",
            "30 4 1,15 jan,Jul sun",
            "? ? ? ? ?",
            "5 4 * * 0-6",
            "0 0 * * 1/2",
            "@hourly",
            "@yearly",
            "@annually",
            "@monthly",
            "@weekly",
            "@daily",
            "@midnight",
            "@every 1h30m",
            "@every 1.5s",
            "TZ=UTC 0 * * * *",
            "0 0 1,,2 * *",
        ] {
            assert_eq!(parse_schedule(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn bad_schedules_carry_robfigs_messages() {
        let cases = [
            ("", "empty spec string"),
            ("foo", "expected exactly 5 fields, found 1: [foo]"),
            (
                "* * * *  * *",
                "expected exactly 5 fields, found 6: [* * * * * *]",
            ),
            ("60 * * * *", "end of range (60) above maximum (59): 60"),
            ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
            (
                "5-2 * * * *",
                "beginning of range (5) beyond end of range (2): 5-2",
            ),
            ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
            ("*/2/3 * * * *", "too many slashes: */2/3"),
            ("*/0 * * * *", "step of range should be a positive number: */0"),
            (
                "x * * * *",
                "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax",
            ),
            ("* * * * 7", "end of range (7) above maximum (6): 7"),
            (
                "* * * foo *",
                "failed to parse int from foo: strconv.Atoi: parsing \"foo\": invalid syntax",
            ),
            (
                "-1 * * * *",
                "failed to parse int from : strconv.Atoi: parsing \"\": invalid syntax",
            ),
            ("@fortnightly", "unrecognized descriptor: @fortnightly"),
            ("@daily ", "unrecognized descriptor: @daily "),
            (
                "@every 1x",
                "failed to parse duration @every 1x: time: unknown unit \"x\" in duration \"1x\"",
            ),
            (
                "@every 5",
                "failed to parse duration @every 5: time: missing unit in duration \"5\"",
            ),
            (
                "@every soon",
                "failed to parse duration @every soon: time: invalid duration \"soon\"",
            ),
            (
                "TZ=Nowhere/Land 0 * * * *",
                "provided bad location Nowhere/Land: unknown time zone Nowhere/Land",
            ),
            (
                "TZ=UTC",
                "unparseable schedule: TZ=UTC : runtime error: slice bounds out of range [:-1]",
            ),
        ];
        for (schedule, want) in cases {
            assert_eq!(parse_schedule(schedule), Err(want.to_owned()), "{schedule:?}");
        }
    }

    #[test]
    fn durations_follow_go() {
        for ok in [
            "0",
            "1h",
            "-1m",
            "+2s",
            "1h2m3s4ms5us6ns",
            ".5s",
            "1.s",
            "3\u{b5}s",
        ] {
            assert_eq!(parse_go_duration(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            parse_go_duration("9999999999h"),
            Err("time: invalid duration \"9999999999h\"".to_owned())
        );
        assert_eq!(
            parse_go_duration("1é"),
            Err("time: unknown unit \"\\xc3\\xa9\" in duration \"1\\xc3\\xa9\"".to_owned())
        );
        assert_eq!(
            parse_go_duration("."),
            Err("time: invalid duration \".\"".to_owned())
        );
    }

    #[test]
    fn time_zones_load_from_zoneinfo() {
        assert_eq!(load_location("UTC"), Ok(()));
        assert_eq!(
            load_location("Mars/Olympus"),
            Err("unknown time zone Mars/Olympus".to_owned())
        );
        assert_eq!(
            load_location("../etc"),
            Err("unknown time zone ../etc".to_owned())
        );
        assert_eq!(load_location("Europe/Berlin"), Ok(()));
        // A directory is not a zone.
        assert_eq!(
            load_location("Europe"),
            Err("unknown time zone Europe".to_owned())
        );
    }
}
