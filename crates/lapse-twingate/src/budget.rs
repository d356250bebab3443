//! A per-minute request budget (governor's GCRA) behind a priority gate that serves revocations first.

use std::collections::BTreeSet;
use std::num::NonZeroU32;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use lapse_core::provider::Priority;
use tokio::sync::watch;
use tokio::time::Instant;

/// Governor's clock on tokio's time, so that a paused test clock drives the limiter too.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TokioClock;

impl Clock for TokioClock {
    type Instant = std::time::Instant;

    fn now(&self) -> Self::Instant {
        Instant::now().into_std()
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<std::time::Instant>>;

/// A budget of `per_minute` requests, spent evenly and handed out in priority order.
///
/// The burst is one request: a GCRA with a larger burst would let up to twice the budget
/// through within one sliding minute, and Twingate answers that with 429s. Among waiters the
/// next permit goes to the best [`Priority`] (revocations), then to the one waiting longest.
/// A server's `Retry-After` can hold the whole budget back ([`Budget::hold_off`]).
pub struct Budget {
    name: &'static str,
    limiter: Limiter,
    state: Mutex<GateState>,
    /// Bumped whenever the head of the queue or the hold-off changes, to wake waiters.
    changed: watch::Sender<u64>,
}

#[derive(Default)]
struct GateState {
    queue: BTreeSet<Ticket>,
    next_seq: u64,
    hold_until: Option<Instant>,
}

/// Ordered by priority first (Revoke < Apply), then by arrival.
type Ticket = (Priority, u64);

impl Budget {
    /// `name` only labels log lines ("reads", "writes").
    pub fn per_minute(name: &'static str, per_minute: NonZeroU32) -> Self {
        let period = Duration::from_secs(60) / per_minute.get();
        // `with_period` refuses only a zero period, which 60 s / u32 cannot produce; the
        // fallback keeps that unreachable case on the safe (slower) side.
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_minute(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::MIN);
        let (changed, _) = watch::channel(0);
        Self {
            name,
            limiter: RateLimiter::direct_with_clock(quota, TokioClock),
            state: Mutex::new(GateState::default()),
            changed,
        }
    }

    /// Waits for a permit. Dropping the future gives up the place in the queue.
    pub async fn acquire(&self, priority: Priority) {
        let ticket = self.enqueue(priority);
        let guard = TicketGuard {
            budget: self,
            ticket,
        };
        let mut wake = self.changed.subscribe();
        loop {
            // Mark the current version seen before looking, so a change after the look wakes us.
            wake.borrow_and_update();
            let wait = {
                let state = self.lock();
                if state.queue.first() != Some(&ticket) {
                    None
                } else if let Some(until) = state.hold_until.filter(|until| *until > Instant::now())
                {
                    Some(until - Instant::now())
                } else {
                    match self.limiter.check() {
                        Ok(()) => {
                            drop(state);
                            drop(guard);
                            tracing::trace!(budget = self.name, ?priority, "permit granted");
                            return;
                        }
                        Err(not_until) => Some(not_until.wait_time_from(TokioClock.now())),
                    }
                }
            };
            match wait {
                // The sender lives as long as `self`, so `changed` cannot fail here.
                None => {
                    let _ = wake.changed().await;
                }
                Some(wait) => {
                    tracing::trace!(budget = self.name, ?priority, ?wait, "waiting for budget");
                    metrics::counter!("lapse_rate_limit_waits_total", "budget" => self.name)
                        .increment(1);
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        _ = wake.changed() => {}
                    }
                }
            }
        }
    }

    /// Holds every waiter back for `wait` (a server's `Retry-After`), on top of the budget.
    pub fn hold_off(&self, wait: Duration) {
        let until = Instant::now() + wait;
        {
            let mut state = self.lock();
            if state.hold_until.is_none_or(|current| current < until) {
                state.hold_until = Some(until);
            }
        }
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// How many callers are waiting for a permit.
    pub fn waiting(&self) -> usize {
        self.lock().queue.len()
    }

    fn enqueue(&self, priority: Priority) -> Ticket {
        let (ticket, new_head) = {
            let mut state = self.lock();
            let ticket = (priority, state.next_seq);
            state.next_seq += 1;
            state.queue.insert(ticket);
            (ticket, state.queue.first() == Some(&ticket))
        };
        if new_head {
            self.changed.send_modify(|v| *v = v.wrapping_add(1));
        }
        ticket
    }

    fn dequeue(&self, ticket: Ticket) {
        let was_head = {
            let mut state = self.lock();
            let was_head = state.queue.first() == Some(&ticket);
            state.queue.remove(&ticket);
            was_head
        };
        if was_head {
            self.changed.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        // The state is a queue of plain values; a panic elsewhere cannot leave it half-updated.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Leaves the queue when the waiter is granted or gives up (its future is dropped).
struct TicketGuard<'a> {
    budget: &'a Budget,
    ticket: Ticket,
}

impl Drop for TicketGuard<'_> {
    fn drop(&mut self) {
        self.budget.dequeue(self.ticket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(per_minute: u32) -> Budget {
        Budget::per_minute("test", NonZeroU32::new(per_minute).expect("non-zero"))
    }

    #[tokio::test(start_paused = true)]
    async fn first_permit_is_immediate_and_the_next_waits_one_period() {
        let b = budget(20);
        let start = Instant::now();
        b.acquire(Priority::Apply).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        b.acquire(Priority::Apply).await;
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn hold_off_delays_the_next_permit() {
        let b = budget(60);
        let start = Instant::now();
        b.hold_off(Duration::from_secs(7));
        b.acquire(Priority::Revoke).await;
        assert_eq!(start.elapsed(), Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_waiter_leaves_the_queue() {
        let b = budget(1);
        b.acquire(Priority::Apply).await;
        let timed_out =
            tokio::time::timeout(Duration::from_secs(5), b.acquire(Priority::Revoke)).await;
        assert!(timed_out.is_err());
        assert_eq!(b.waiting(), 0);
        // The abandoned waiter must not block the next one.
        let start = Instant::now();
        b.acquire(Priority::Apply).await;
        assert_eq!(start.elapsed(), Duration::from_secs(55));
    }
}
