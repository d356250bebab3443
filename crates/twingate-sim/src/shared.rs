//! State shared by the transport, the schema and the control surface.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::clock::SimClock;
use crate::faults::Faults;
use crate::journal::Journal;
use crate::store::Store;

/// Per-key request budgets, per minute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    pub reads_per_minute: u32,
    pub writes_per_minute: u32,
    /// How "per minute" is enforced (Twingate states the limit, not the algorithm).
    #[serde(default)]
    pub window: LimitWindow,
}

impl RateLimit {
    /// Twingate's documented limits.
    pub const TWINGATE: RateLimit = RateLimit {
        reads_per_minute: 60,
        writes_per_minute: 20,
        window: LimitWindow::TokenBucket,
    };
}

/// How a per-minute limit is enforced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LimitWindow {
    /// A bucket of `limit` tokens refilled continuously at `limit` a minute (starts full).
    #[default]
    TokenBucket,
    /// At most `limit` requests accepted in any sliding minute: the limit read literally.
    SlidingMinute,
}

impl std::str::FromStr for LimitWindow {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "token-bucket" => Ok(Self::TokenBucket),
            "sliding-minute" => Ok(Self::SlidingMinute),
            other => Err(format!(
                "unknown rate-limit window {other:?}: use token-bucket or sliding-minute"
            )),
        }
    }
}

/// Accepted requests of the last minute, oldest first.
#[derive(Debug, Default)]
pub(crate) struct SlidingLog {
    accepted: std::collections::VecDeque<DateTime<Utc>>,
}

impl SlidingLog {
    /// Accepts one request, or says how many whole seconds until the oldest leaves the minute.
    fn take(&mut self, capacity: u32, now: DateTime<Utc>) -> Result<(), u64> {
        let minute = chrono::Duration::seconds(60);
        while self.accepted.front().is_some_and(|t| now - *t >= minute) {
            self.accepted.pop_front();
        }
        if self.accepted.len() < capacity as usize {
            self.accepted.push_back(now);
            return Ok(());
        }
        let Some(oldest) = self.accepted.front() else {
            return Err(60);
        };
        let wait_ms = (*oldest + minute - now).num_milliseconds().max(0) as u64;
        Err(wait_ms.div_ceil(1000).max(1))
    }
}

/// One key's budget for reads or writes.
#[derive(Debug)]
pub(crate) enum Limiter {
    Bucket(Bucket),
    Log(SlidingLog),
}

/// A token bucket refilled continuously at `capacity` per minute of simulated time.
#[derive(Debug)]
pub(crate) struct Bucket {
    tokens: f64,
    at: DateTime<Utc>,
}

impl Bucket {
    /// Takes one token, or says how many whole seconds until one is available.
    fn take(&mut self, capacity: u32, now: DateTime<Utc>) -> Result<(), u64> {
        let per_sec = f64::from(capacity) / 60.0;
        let elapsed = (now - self.at).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6;
        self.tokens = (self.tokens + elapsed * per_sec).min(f64::from(capacity));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else if per_sec <= 0.0 {
            Err(60)
        } else {
            Err((((1.0 - self.tokens) / per_sec).ceil() as u64).max(1))
        }
    }
}

pub(crate) struct Shared {
    store: Mutex<Store>,
    pub clock: SimClock,
    journal: Mutex<Journal>,
    faults: RwLock<Arc<Faults>>,
    fault_rng: Mutex<StdRng>,
    buckets: Mutex<HashMap<(String, bool), Limiter>>,
    pub rate_limit: Option<RateLimit>,
}

/// A poisoned lock only means another request panicked mid-way; the data is still usable and a
/// test server must keep answering.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn new(
        store: Store,
        clock: SimClock,
        fault_rng: StdRng,
        rate_limit: Option<RateLimit>,
    ) -> Shared {
        Shared {
            store: Mutex::new(store),
            clock,
            journal: Mutex::new(Journal::default()),
            faults: RwLock::new(Arc::new(Faults::default())),
            fault_rng: Mutex::new(fault_rng),
            buckets: Mutex::new(HashMap::new()),
            rate_limit,
        }
    }

    /// Runs `f` on the store after removing what has expired by the simulated now.
    pub fn with_store<R>(&self, f: impl FnOnce(&mut Store, DateTime<Utc>) -> R) -> R {
        let now = self.clock.now();
        let mut store = lock(&self.store);
        store.sweep(now);
        f(&mut store, now)
    }

    pub fn journal(&self) -> MutexGuard<'_, Journal> {
        lock(&self.journal)
    }

    pub fn faults(&self) -> Arc<Faults> {
        self.faults
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        *self.faults.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(faults);
    }

    pub fn fault_rng(&self) -> MutexGuard<'_, StdRng> {
        lock(&self.fault_rng)
    }

    /// Spends one read or write from `key`'s budget; `Err(seconds)` when it is exhausted.
    pub fn spend(&self, key: &str, write: bool) -> Result<(), u64> {
        let Some(limit) = self.rate_limit else {
            return Ok(());
        };
        let capacity = if write {
            limit.writes_per_minute
        } else {
            limit.reads_per_minute
        };
        let now = self.clock.now();
        let mut buckets = lock(&self.buckets);
        let limiter =
            buckets
                .entry((key.to_string(), write))
                .or_insert_with(|| match limit.window {
                    LimitWindow::TokenBucket => Limiter::Bucket(Bucket {
                        tokens: f64::from(capacity),
                        at: now,
                    }),
                    LimitWindow::SlidingMinute => Limiter::Log(SlidingLog::default()),
                });
        match limiter {
            Limiter::Bucket(b) => b.take(capacity, now),
            Limiter::Log(l) => l.take(capacity, now),
        }
    }
}

/// Set by a mutation resolver once it changed the state, so the journal can say so.
#[derive(Clone, Default)]
pub(crate) struct Applied(Arc<AtomicBool>);

impl Applied {
    pub fn mark(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_over_time() {
        let t0 = Utc::now();
        let mut b = Bucket {
            tokens: 2.0,
            at: t0,
        };
        assert!(b.take(2, t0).is_ok());
        assert!(b.take(2, t0).is_ok());
        assert_eq!(b.take(2, t0), Err(30));
        assert!(b.take(2, t0 + chrono::Duration::seconds(30)).is_ok());
    }

    #[test]
    fn a_sliding_minute_accepts_the_limit_at_once_then_none_until_the_oldest_is_a_minute_old() {
        let t0 = Utc::now();
        let mut log = SlidingLog::default();
        for _ in 0..3 {
            assert!(log.take(3, t0).is_ok());
        }
        let later = t0 + chrono::Duration::seconds(59);
        assert_eq!(log.take(3, later), Err(1));
        // A token bucket would have refilled most of its tokens by now; a sliding minute has not.
        assert!(log.take(3, t0 + chrono::Duration::seconds(60)).is_ok());
    }
}
