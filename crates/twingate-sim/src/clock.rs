//! The simulated clock that expiries and rate limits follow, movable by tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Duration, Utc};

/// Wall-clock time plus an offset that tests can move forward (or back), so an edge with
/// `expiresAt` in an hour can be expired without waiting an hour.
#[derive(Clone, Debug, Default)]
pub struct SimClock {
    offset_micros: Arc<AtomicI64>,
}

impl SimClock {
    /// The simulated now, truncated to microseconds because that is what the API shows.
    pub fn now(&self) -> DateTime<Utc> {
        let micros = Utc::now().timestamp_micros() + self.offset_micros.load(Ordering::SeqCst);
        DateTime::from_timestamp_micros(micros).unwrap_or_else(Utc::now)
    }

    /// Moves the clock forward by `by` (backwards when negative).
    pub fn advance(&self, by: Duration) {
        let micros = by.num_microseconds().unwrap_or(i64::MAX);
        self.offset_micros.fetch_add(micros, Ordering::SeqCst);
    }

    /// Sets the offset from wall-clock time outright.
    pub fn set_offset(&self, offset: Duration) {
        let micros = offset.num_microseconds().unwrap_or(i64::MAX);
        self.offset_micros.store(micros, Ordering::SeqCst);
    }

    pub fn offset(&self) -> Duration {
        Duration::microseconds(self.offset_micros.load(Ordering::SeqCst))
    }
}

/// Truncates to microseconds, the precision Twingate's timestamps carry.
pub(crate) fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// RFC 3339 with exactly six fractional digits and a numeric offset, as Twingate prints it.
pub(crate) fn format_ts(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_moves_now() {
        let c = SimClock::default();
        let before = c.now();
        c.advance(Duration::hours(2));
        assert!(c.now() - before >= Duration::hours(2));
        c.set_offset(Duration::zero());
        assert!(c.now() - before < Duration::hours(1));
    }

    #[test]
    fn formats_with_microseconds() {
        let t = DateTime::from_timestamp_micros(1_654_361_303_907_380).expect("valid");
        assert_eq!(format_ts(&t), "2022-06-04T16:48:23.907380+00:00");
    }
}
