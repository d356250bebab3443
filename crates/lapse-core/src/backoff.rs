//! The one retry schedule: capped exponential backoff with full jitter.

use std::time::Duration;

/// The wait before retry number `attempts` (1 for the first retry).
///
/// A point picked by `jitter` (in `[0, 1)`, drawn by the caller, so this stays pure) below
/// `base · 2^attempts`, capped at `cap`. Full jitter keeps clients that failed together from
/// retrying together; the floor of a tenth of `base` keeps a zero draw from retrying at once.
/// Used by the engine for writes, by the Twingate client for reads, and meant for any other
/// retry loop (notifications) so that there is one schedule to reason about.
pub fn backoff(attempts: u32, base: Duration, cap: Duration, jitter: f64) -> Duration {
    let ceiling = base
        .saturating_mul(1u32 << attempts.min(20))
        .min(cap)
        .max(Duration::from_millis(1));
    ceiling.mul_f64(jitter.clamp(0.0, 1.0)).max(base / 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(200);
    const CAP: Duration = Duration::from_secs(5);

    #[test]
    fn doubles_up_to_the_cap_and_jitter_picks_below_it() {
        assert_eq!(backoff(1, BASE, CAP, 0.999_999).as_millis(), 399);
        assert_eq!(backoff(2, BASE, CAP, 0.5), Duration::from_millis(400));
        for attempts in [5, 20, 40, u32::MAX] {
            assert!(backoff(attempts, BASE, CAP, 0.999_999) <= CAP);
        }
        assert_eq!(backoff(40, BASE, CAP, 0.5), CAP / 2);
    }

    #[test]
    fn a_zero_draw_still_waits_a_tenth_of_the_base() {
        assert_eq!(backoff(3, BASE, CAP, 0.0), BASE / 10);
        assert_eq!(
            backoff(3, BASE, CAP, -1.0),
            BASE / 10,
            "out-of-range jitter is clamped"
        );
    }
}
