//! Time as a value: the model never reads a clock, every input carries `now`.

use std::time::Duration;

use podvisor_core::k8s_openapi::jiff;
use podvisor_core::metav1;

/// A point in wall-clock time, in milliseconds since the Unix epoch.
///
/// The lifecycle model is given `now` with every input and never reads a clock, so the same
/// inputs always give the same outputs. Status timestamps are derived from these values at
/// second precision, as the kubelet reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(i64);

impl Time {
    /// The Unix epoch.
    pub const EPOCH: Time = Time(0);

    /// A time `millis` milliseconds after the epoch.
    pub const fn from_millis(millis: i64) -> Time {
        Time(millis)
    }

    /// A time `secs` seconds after the epoch.
    pub const fn from_secs(secs: i64) -> Time {
        Time(secs.saturating_mul(1000))
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch (truncated towards negative infinity).
    pub const fn as_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// This time plus `d` (saturating).
    pub fn plus(self, d: Duration) -> Time {
        Time(
            self.0
                .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    /// How long after `earlier` this is; zero if it is not after.
    pub fn since(self, earlier: Time) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }

    /// The Kubernetes `metav1.Time`, truncated to whole seconds as the kubelet reports it.
    pub fn to_k8s(self) -> metav1::Time {
        let ts = jiff::Timestamp::from_second(self.as_secs()).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        metav1::Time(ts)
    }

    /// Converts a Kubernetes `metav1.Time` (millisecond precision is kept).
    pub fn from_k8s(t: &metav1::Time) -> Time {
        Time(t.0.as_millisecond())
    }
}

impl std::ops::Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        self.plus(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k8s_round_trip_truncates_to_seconds() {
        let t = Time::from_millis(1_700_000_000_999);
        assert_eq!(Time::from_k8s(&t.to_k8s()), Time::from_secs(1_700_000_000));
    }

    #[test]
    fn since_is_never_negative() {
        assert_eq!(Time::from_secs(1).since(Time::from_secs(5)), Duration::ZERO);
        assert_eq!(
            Time::from_secs(5).since(Time::from_secs(1)),
            Duration::from_secs(4)
        );
    }
}
