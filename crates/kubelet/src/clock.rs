//! Wall-clock time for the lifecycle model, driven by tokio's clock so tests can pause it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use podvisor_lifecycle::Time;
use tokio::time::Instant;

/// Maps tokio's monotonic clock onto wall-clock [`Time`].
///
/// The wall clock is read once, at construction; after that, time advances with
/// [`tokio::time::Instant`], so a test that pauses tokio's clock controls the model's time too,
/// and a wall-clock jump never makes the model's time go backwards.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base_wall: Time,
    base: Instant,
}

impl Clock {
    /// A clock that starts at the current wall-clock time.
    pub fn system() -> Clock {
        Clock::starting_at(Clock::wall(SystemTime::now()))
    }

    /// A wall-clock time the runtime reported (when a process started or ended) as a [`Time`],
    /// in the same milliseconds since the Unix epoch [`system`](Self::system) starts from.
    pub fn wall(t: SystemTime) -> Time {
        let millis = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        match t.duration_since(UNIX_EPOCH) {
            Ok(after) => Time::from_millis(millis(after)),
            Err(before) => Time::from_millis(-millis(before.duration())),
        }
    }

    /// A clock that reads `start` now (for tests).
    pub fn starting_at(start: Time) -> Clock {
        Clock {
            base_wall: start,
            base: Instant::now(),
        }
    }

    /// The current time.
    pub fn now(&self) -> Time {
        self.base_wall + Instant::now().saturating_duration_since(self.base)
    }

    /// The tokio instant at which it will be `t` (now, if `t` has passed).
    pub fn instant_at(&self, t: Time) -> Instant {
        let offset = t.since(self.base_wall);
        self.base
            .checked_add(offset)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_times_are_milliseconds_since_the_epoch() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        assert_eq!(Clock::wall(t), Time::from_millis(1_700_000_000_250));
        let before = UNIX_EPOCH - Duration::from_secs(2);
        assert_eq!(Clock::wall(before), Time::from_secs(-2));
    }
}
