//! CronJob schedules as kube-controller-manager reads them (rule 7.2): robfig/cron v3's
//! "standard" parser, evaluated in an IANA time zone (rule 7.3).
//!
//! The five fields are parsed and evaluated by the `cronexpr` crate (on `jiff`, the zone from
//! the system's zoneinfo). This module only brings robfig's dialect to it: the `TZ=`/`CRON_TZ=`
//! prefix, the descriptors (`@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`,
//! `@midnight`, `@hourly`, `@every <duration>`), `?` as `*`, robfig's day-of-month/day-of-week
//! rule (both must match when either field is unrestricted, else either may), and the
//! rejection of syntax robfig does not know (`L`, `W`, `#`, day-of-week 7).
//!
//! What it is not: no validation messages of the API server, no seconds field.

use std::time::Duration;

use podvisor_core::k8s_openapi::jiff::Timestamp;
use podvisor_core::k8s_openapi::jiff::tz::TimeZone;

/// The longest schedule accepted (the API has no limit; ours bounds the work).
pub const MAX_SCHEDULE_LEN: usize = 1024;

/// Why a schedule was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The schedule is empty.
    #[error("empty spec string")]
    Empty,
    /// Longer than [`MAX_SCHEDULE_LEN`].
    #[error("schedule longer than {MAX_SCHEDULE_LEN} characters")]
    TooLong,
    /// A `TZ=`/`CRON_TZ=` prefix or `timeZone` naming no known zone.
    #[error("provided bad location {zone}: unknown time zone {zone}")]
    BadLocation {
        /// The zone as written.
        zone: String,
    },
    /// An `@` word robfig does not know.
    #[error("unrecognized descriptor: {descriptor}")]
    UnknownDescriptor {
        /// The descriptor as written.
        descriptor: String,
    },
    /// `@every` with a bad Go duration.
    #[error("failed to parse duration {spec}: time: invalid duration {duration:?}")]
    BadDuration {
        /// The whole descriptor.
        spec: String,
        /// The duration as written.
        duration: String,
    },
    /// Not five fields.
    #[error("expected exactly 5 fields, found {found}: {spec}")]
    FieldCount {
        /// How many there were.
        found: usize,
        /// The fields as written.
        spec: String,
    },
    /// A field robfig's standard parser rejects (cronexpr extensions, day-of-week 7).
    #[error("unsupported syntax in {field} field: {value}")]
    Unsupported {
        /// `day-of-month`, `day-of-week`.
        field: &'static str,
        /// The field as written.
        value: String,
    },
    /// A field the cron parser rejects.
    #[error("{message}")]
    Invalid {
        /// The parser's message.
        message: String,
    },
}

/// A parsed schedule: when it fires next.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Five cron fields in a time zone.
    Cron(Box<cronexpr::Crontab>),
    /// `@every <duration>`: whole seconds, at least one.
    Every(Duration),
}

impl Schedule {
    /// The first time the schedule fires strictly after `t` (robfig's `Next`), or `None` when it
    /// never fires again within four years (an impossible date such as `31 2`).
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        match self {
            Schedule::Cron(c) => c.find_next(t).ok().map(|z| z.timestamp()),
            Schedule::Every(d) => {
                let whole = Timestamp::from_second(t.as_second()).ok()?;
                let d = podvisor_core::k8s_openapi::jiff::SignedDuration::try_from(*d).ok()?;
                whole.checked_add(d).ok()
            }
        }
    }
}

/// Looks up an IANA zone (Go's `time.LoadLocation`: `""` and `UTC` are UTC; `Local` is refused,
/// as the API server refuses it in `timeZone`).
pub fn load_zone(name: &str) -> Result<TimeZone, ScheduleError> {
    let bad = || ScheduleError::BadLocation {
        zone: name.to_string(),
    };
    match name {
        "" | "UTC" => Ok(TimeZone::UTC),
        "Local" => Err(bad()),
        n if n.len() > 255 || n.starts_with('/') || n.contains("..") => Err(bad()),
        n => TimeZone::get(n).map_err(|_| bad()),
    }
}

/// Parses `spec` as robfig's standard parser does, evaluated in `zone` (an IANA name; `None`
/// is UTC) unless the spec starts with `TZ=<zone> ` or `CRON_TZ=<zone> `.
pub fn parse(spec: &str, zone: Option<&str>) -> Result<Schedule, ScheduleError> {
    if spec.len() > MAX_SCHEDULE_LEN {
        return Err(ScheduleError::TooLong);
    }
    if spec.is_empty() {
        return Err(ScheduleError::Empty);
    }
    let (zone, rest) = match spec.strip_prefix("TZ=").or_else(|| spec.strip_prefix("CRON_TZ=")) {
        Some(tail) => {
            let (z, rest) = tail.split_once(' ').ok_or_else(|| ScheduleError::BadLocation {
                zone: tail.to_string(),
            })?;
            (z, rest.trim())
        }
        None => (zone.unwrap_or("UTC"), spec),
    };
    let zone = if zone.is_empty() { "UTC" } else { zone };
    load_zone(zone)?;

    if let Some(desc) = rest.strip_prefix('@') {
        let fields = match desc {
            "yearly" | "annually" => "0 0 1 1 *",
            "monthly" => "0 0 1 * *",
            "weekly" => "0 0 * * 0",
            "daily" | "midnight" => "0 0 * * *",
            "hourly" => "0 * * * *",
            _ => match desc.strip_prefix("every ") {
                Some(d) => {
                    return every(d)
                        .map(Schedule::Every)
                        .ok_or_else(|| ScheduleError::BadDuration {
                            spec: rest.to_string(),
                            duration: d.to_string(),
                        });
                }
                None => {
                    return Err(ScheduleError::UnknownDescriptor {
                        descriptor: rest.to_string(),
                    });
                }
            },
        };
        return crontab(fields, zone);
    }

    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(ScheduleError::FieldCount {
            found: fields.len(),
            spec: format!("[{}]", fields.join(" ")),
        });
    }
    let mut out = Vec::with_capacity(5);
    for (i, f) in fields.iter().enumerate() {
        let f = f.replace('?', "*");
        out.push(match i {
            2 => day_field(&f, "day-of-month", 1, 31)?,
            4 => day_field(&f, "day-of-week", 0, 6)?,
            _ => f,
        });
    }
    crontab(&out.join(" "), zone)
}

fn crontab(fields: &str, zone: &str) -> Result<Schedule, ScheduleError> {
    cronexpr::parse_crontab(&format!("{fields} {zone}"))
        .map(|c| Schedule::Cron(Box::new(c)))
        .map_err(|e| ScheduleError::Invalid {
            message: e.to_string(),
        })
}

/// A day field in robfig's terms, written so that cronexpr's "starts with `*`" test gives
/// robfig's answer: robfig treats a field as unrestricted when any item is `*` (or `?`) with no
/// step above 1, and `*/n` with n > 1 as restricted.
fn day_field(f: &str, name: &'static str, min: u8, max: u8) -> Result<String, ScheduleError> {
    let unsupported = || ScheduleError::Unsupported {
        field: name,
        value: f.to_string(),
    };
    // robfig knows digits, names (day of week only), `*`, `-`, `/` and `,`.
    let names_ok = name == "day-of-week";
    if !f.chars().all(|c| {
        c.is_ascii_digit() || matches!(c, '*' | '-' | '/' | ',') || (names_ok && c.is_ascii_alphabetic())
    }) || (names_ok && f.to_ascii_uppercase().contains('L'))
    {
        return Err(unsupported());
    }
    let mut star = false;
    let mut items = Vec::new();
    for item in f.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        // Day of week 7 is Sunday in cronexpr, out of range in robfig.
        if names_ok && range.split('-').any(|v| v.parse::<u32>().is_ok_and(|n| n > 6)) {
            return Err(unsupported());
        }
        if range == "*" {
            match step {
                None => star = true,
                Some(s) if s.parse::<u32>().is_ok_and(|n| n <= 1) => star = true,
                Some(s) => items.push(format!("{min}-{max}/{s}")),
            }
        } else {
            items.push(item.to_string());
        }
    }
    if star {
        // Every value, unrestricted: the whole field is `*`.
        return Ok("*".to_string());
    }
    Ok(items.join(","))
}

/// `@every <d>`: Go's `time.ParseDuration`, then robfig's `Every`: at least one second,
/// truncated to whole seconds.
fn every(d: &str) -> Option<Duration> {
    let nanos = go_duration_nanos(d)?;
    let secs = (nanos / 1_000_000_000).max(1);
    Some(Duration::from_secs(u64::try_from(secs).ok()?))
}

/// Go's `time.ParseDuration` in nanoseconds: `[-+]?(\d*(\.\d*)?unit)+` or `0`.
fn go_duration_nanos(s: &str) -> Option<i128> {
    if s.len() > 64 {
        return None;
    }
    let (neg, mut rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return None;
        }
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        let int: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
        let mut part = int.checked_mul(scale)?;
        let mut div = 1i128;
        for c in frac.chars().take(18) {
            div *= 10;
            part += i128::from(c.to_digit(10)?) * scale / div;
        }
        total = total.checked_add(part)?;
        rest = tail;
    }
    // Go's limit is the int64 range.
    (total <= i128::from(i64::MAX)).then_some(if neg { -total } else { total })
}

#[cfg(test)]
mod tests;
