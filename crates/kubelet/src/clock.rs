//! Wall-clock time for the lifecycle model, driven by tokio's clock so tests can pause it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use podvisor_lifecycle::Time;
use tokio::time::Instant;

/// Wake-ups more than this far away are moved onto the [`WAKE_GRID`] (see [`Clock::wake_instant`]).
const COALESCE_FROM: Duration = Duration::from_secs(1);

/// The grid far wake-ups are moved onto: the longest a far wake-up is delayed.
const WAKE_GRID: Duration = Duration::from_millis(250);

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

    /// The tokio instant a pod worker sleeps until to wake at `t`.
    ///
    /// A wake-up more than 1 s away (nearly always a probe's next period, which is whole
    /// seconds) is moved later, onto the next multiple of 250 ms since this clock started.
    /// Every worker shares the node's clock, so the workers whose probes fall due in the same
    /// 250 ms wake together, and the runtime's threads wake for them once instead of once per
    /// pod: each such wake-up costs the node a halted CPU's wake and a few context switches.
    /// At 1,000 pods with two 10 s probes each, two nodes side by side took 1.8% of a core on
    /// this grid against 3.3% on a 50 ms one (context switches 850 against 2,650 per 10 s); a
    /// 500 ms grid took 0.07% less than 250 ms (`docs/performance-history.md`). A probe then
    /// runs up to 250 ms after its ticker's time (2.5% of the default period; a grace period's
    /// end, SIGKILL, up to 250 ms after it too); the gap between its attempts stays its period
    /// (the ticker is anchored, rule 3.4), and a near wake-up (a probe of period 1 s, a
    /// back-off of a second or less) is not moved.
    pub fn wake_instant(&self, t: Time) -> Instant {
        let at = self.instant_at(t);
        if at.saturating_duration_since(Instant::now()) <= COALESCE_FROM {
            return at;
        }
        let grid = WAKE_GRID.as_nanos();
        let since = at.saturating_duration_since(self.base).as_nanos();
        let on_grid = since.div_ceil(grid).saturating_mul(grid);
        let later = u64::try_from(on_grid - since).unwrap_or(0);
        at + Duration::from_nanos(later)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn far_wake_ups_wait_for_the_grid_near_ones_do_not() {
        let clock = Clock::starting_at(Time::from_secs(1_000));
        let start = Instant::now();
        // 10.020 s away: on to 10.250 s.
        let far = clock.wake_instant(Time::from_millis(1_010_020));
        assert_eq!(far - start, Duration::from_millis(10_250));
        // Already on the grid: kept.
        let on = clock.wake_instant(Time::from_millis(1_010_500));
        assert_eq!(on - start, Duration::from_millis(10_500));
        // 0.99 s away: exact.
        let near = clock.wake_instant(Time::from_millis(1_000_990));
        assert_eq!(near - start, Duration::from_millis(990));
        // Later, the grid is still counted from the clock's start.
        tokio::time::advance(Duration::from_millis(7)).await;
        let later = clock.wake_instant(Time::from_millis(1_005_001));
        assert_eq!(later - start, Duration::from_millis(5_250));
        // Exactly 1 s away (a probe of period 1 s, stepped when it fell due): exact.
        let second = clock.wake_instant(Time::from_millis(1_001_007));
        assert_eq!(second - start, Duration::from_millis(1_007));
        // The past is now.
        let past = clock.wake_instant(Time::from_secs(999));
        assert!(past <= Instant::now());
    }

    #[test]
    fn wall_times_are_milliseconds_since_the_epoch() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        assert_eq!(Clock::wall(t), Time::from_millis(1_700_000_000_250));
        let before = UNIX_EPOCH - Duration::from_secs(2);
        assert_eq!(Clock::wall(before), Time::from_secs(-2));
    }
}
