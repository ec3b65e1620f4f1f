//! CrashLoopBackOff as arithmetic: when may an exited container start again.

use std::time::Duration;

use crate::Time;

/// The first back-off after a restart.
pub const INITIAL: Duration = Duration::from_secs(10);
/// The longest back-off.
pub const CAP: Duration = Duration::from_secs(300);
/// A container that ran this long before failing starts over with no back-off.
pub const RESET_AFTER: Duration = Duration::from_secs(600);

/// One container definition's back-off entry (keyed by name and image, rule 7.7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Backoff {
    pub(crate) duration: Duration,
    pub(crate) last_update: Time,
}

/// The answer to "may this container restart now?".
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Start it now.
    Start,
    /// Wait until the given time; `duration` is the current back-off for the message.
    Wait { until: Time, duration: Duration },
}

/// Decides per rule 7.9 whether a container whose last instance finished at `finished_at` may
/// restart at `now`, updating `entry` when it may.
pub(crate) fn check(entry: &mut Option<Backoff>, finished_at: Time, now: Time) -> Verdict {
    match entry {
        Some(e) if finished_at.since(e.last_update) <= RESET_AFTER => {
            if now.since(finished_at) < e.duration {
                Verdict::Wait {
                    until: finished_at + e.duration,
                    duration: e.duration,
                }
            } else {
                e.duration = (e.duration * 2).min(CAP);
                e.last_update = now;
                Verdict::Start
            }
        }
        _ => {
            *entry = Some(Backoff {
                duration: INITIAL,
                last_update: now,
            });
            Verdict::Start
        }
    }
}

/// Formats a duration the way Go's `time.Duration.String` does for whole seconds
/// (`10s`, `1m20s`, `5m0s`), as the kubelet's back-off message shows it.
pub fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else {
        format!("{}h{}m{}s", secs / 3600, (secs % 3600) / 60, secs % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rule 7.10: a container that crashes instantly restarts at once, then after 10, 20, 40,
    /// 80, 160, 300, 300 seconds.
    #[test]
    fn rule_7_10_backoff_schedule() {
        let mut entry = None;
        let mut now = Time::from_secs(1000);
        let mut waits = Vec::new();
        for _ in 0..8 {
            // The container crashes at `now`; find when it may start again.
            let finished = now;
            loop {
                match check(&mut entry, finished, now) {
                    Verdict::Start => break,
                    Verdict::Wait { until, .. } => now = until,
                }
            }
            waits.push(now.since(finished).as_secs());
        }
        assert_eq!(waits, [0, 10, 20, 40, 80, 160, 300, 300]);
    }

    /// Rule 7.8: ten minutes of clean running resets the back-off.
    #[test]
    fn rule_7_8_backoff_resets_after_ten_minutes() {
        let mut entry = None;
        let t0 = Time::from_secs(0);
        assert_eq!(check(&mut entry, t0, t0), Verdict::Start);
        // Crash 5 s later: back-off of 10 s.
        let t1 = Time::from_secs(5);
        assert!(matches!(check(&mut entry, t1, t1), Verdict::Wait { .. }));
        // Crash 601 s after the last update: start immediately.
        let t2 = Time::from_secs(601);
        assert_eq!(check(&mut entry, t2, t2), Verdict::Start);
        assert_eq!(entry.map(|e| e.duration), Some(INITIAL));
    }

    #[test]
    fn go_duration_formats_like_go() {
        assert_eq!(go_duration(Duration::from_secs(20)), "20s");
        assert_eq!(go_duration(Duration::from_secs(80)), "1m20s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
    }
}
