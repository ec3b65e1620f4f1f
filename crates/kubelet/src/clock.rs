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
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        Clock::starting_at(Time::from_millis(i64::try_from(millis).unwrap_or(i64::MAX)))
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
