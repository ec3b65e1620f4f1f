//! What the harness reads of other processes in `/proc`: their state and counters
//! (`/proc/<pid>/stat`), read with one parser for the floor's wait and node-footprint's window.

/// A process's `/proc/<pid>/stat`, split after its command name.
#[derive(Debug)]
pub(crate) struct Stat {
    /// The state letter (`R`, `S`, `Z`, ...).
    pub(crate) state: char,
    /// The fields after the state, from the parent pid on: ppid(0) pgrp session tty tpgid
    /// flags minflt cminflt majflt(8) cmajflt(9) utime(10) stime(11) cutime(12) cstime(13) ...
    pub(crate) fields: Vec<String>,
}

impl Stat {
    /// The sum of the numeric fields in `range` (indices into [`Stat::fields`]), if all are there.
    pub(crate) fn sum(&self, range: std::ops::Range<usize>) -> Option<f64> {
        Some(
            self.fields
                .get(range)?
                .iter()
                .filter_map(|v| v.parse::<f64>().ok())
                .sum(),
        )
    }

    /// The parent's pid.
    pub(crate) fn ppid(&self) -> Option<u32> {
        self.fields.first()?.parse().ok()
    }
}

/// Process `pid`'s stat, if it lives (a zombie has one too).
pub(crate) fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the state follows the last ')'.
    let mut rest = text[text.rfind(')')? + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    Some(Stat {
        state,
        fields: rest.map(str::to_owned).collect(),
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    #[allow(clippy::disallowed_methods)] // a plain test thread
    fn a_sleeping_child_reads_as_asleep_with_this_process_as_its_parent() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = stat(child.id()).unwrap();
        while seen.state != 'S' && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            seen = stat(child.id()).unwrap();
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(seen.state, 'S', "{seen:?}");
        assert_eq!(seen.ppid(), Some(std::process::id()));
        // utime, stime, cutime and cstime are numbers.
        assert!(seen.sum(10..14).is_some_and(|t| t >= 0.0), "{seen:?}");
        assert!(stat(u32::MAX).is_none());
    }
}
