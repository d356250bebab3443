//! A per-minute request budget as Twingate states it (at most N in any sliding minute), behind a
//! priority gate that serves revocations first.

use std::collections::{BTreeSet, VecDeque};
use std::num::NonZeroU32;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use lapse_core::provider::Priority;
use tokio::sync::watch;
use tokio::time::Instant;

/// The window the limit is stated over.
const MINUTE: Duration = Duration::from_secs(60);

/// A budget of `per_minute` requests in any sliding minute, handed out in priority order.
///
/// The limit is kept as it is stated: a log of when each of the last `per_minute` requests
/// finished, so an idle budget serves a burst of `per_minute` at once and the next request waits
/// until the oldest of them is a minute old. (governor's GCRA, used before, either spaces requests
/// evenly, which made a burst of revocations wait 3 s each, or with a burst allowance lets twice
/// the budget through within one sliding minute; a sliding log needs no crate.) A request counts
/// from its permit until it finished, and then a minute from when it finished, never from when
/// it was granted: the server sees it later than the permit, and a minute measured from the
/// answer is a minute on the server's side too, whatever the latency.
///
/// Among waiters the next permit goes to the best [`Priority`] (revocations), then to the one
/// waiting longest. A server's `Retry-After` can hold the whole budget back ([`Budget::hold_off`]).
pub struct Budget {
    name: &'static str,
    per_minute: usize,
    state: Mutex<GateState>,
    /// Bumped whenever the head of the queue, the hold-off or the spent log changes, to wake
    /// waiters.
    changed: watch::Sender<u64>,
}

#[derive(Default)]
struct GateState {
    queue: BTreeSet<Ticket>,
    next_seq: u64,
    hold_until: Option<Instant>,
    /// When each finished request of the last minute finished, oldest first.
    spent: VecDeque<Instant>,
    /// Permits handed out whose request has not finished.
    in_flight: usize,
}

/// Ordered by priority first (Revoke < Apply), then by arrival.
type Ticket = (Priority, u64);

/// One request's share of the budget: it counts as in flight until dropped, then for a minute.
#[must_use = "the request counts against the budget until the permit is dropped"]
pub struct Permit<'a> {
    budget: &'a Budget,
    sent: bool,
}

impl Permit<'_> {
    /// Gives the permit back unused: the request was not sent, so it does not count.
    pub fn forgo(mut self) {
        self.sent = false;
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        {
            let mut state = self.budget.lock();
            state.in_flight = state.in_flight.saturating_sub(1);
            if self.sent {
                state.spent.push_back(Instant::now());
            }
        }
        self.budget.changed.send_modify(|v| *v = v.wrapping_add(1));
    }
}

impl Budget {
    /// `name` only labels log lines ("reads", "writes").
    pub fn per_minute(name: &'static str, per_minute: NonZeroU32) -> Self {
        let (changed, _) = watch::channel(0);
        Self {
            name,
            per_minute: usize::try_from(per_minute.get()).unwrap_or(usize::MAX),
            state: Mutex::new(GateState::default()),
            changed,
        }
    }

    /// Waits for a permit, held while the request is made. Dropping the future gives up the
    /// place in the queue.
    pub async fn acquire(&self, priority: Priority) -> Permit<'_> {
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
                let mut state = self.lock();
                let now = Instant::now();
                while state
                    .spent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= MINUTE)
                {
                    state.spent.pop_front();
                }
                if state.queue.first() != Some(&ticket) {
                    None
                } else if let Some(until) = state.hold_until.filter(|until| *until > now) {
                    Some(until - now)
                } else if state.spent.len() + state.in_flight < self.per_minute {
                    state.in_flight += 1;
                    drop(state);
                    drop(guard);
                    tracing::trace!(budget = self.name, ?priority, "permit granted");
                    return Permit {
                        budget: self,
                        sent: true,
                    };
                } else {
                    // Full: the oldest finished request leaves the window first; with only
                    // requests in flight, the next to finish wakes us.
                    state.spent.front().map(|t| (*t + MINUTE) - now)
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
    async fn an_idle_budget_serves_a_burst_at_once_and_then_waits_for_the_minute() {
        let b = budget(20);
        let start = Instant::now();
        for _ in 0..20 {
            drop(b.acquire(Priority::Revoke).await);
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "20 at once");
        drop(b.acquire(Priority::Revoke).await);
        assert_eq!(
            start.elapsed(),
            MINUTE,
            "the 21st waits for the first to be a minute old"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_counts_from_when_it_finished() {
        let b = budget(1);
        let start = Instant::now();
        let permit = b.acquire(Priority::Apply).await;
        tokio::time::advance(Duration::from_secs(5)).await;
        drop(permit);
        drop(b.acquire(Priority::Apply).await);
        assert_eq!(start.elapsed(), Duration::from_secs(65));
    }

    #[tokio::test(start_paused = true)]
    async fn hold_off_delays_the_next_permit() {
        let b = budget(60);
        let start = Instant::now();
        b.hold_off(Duration::from_secs(7));
        drop(b.acquire(Priority::Revoke).await);
        assert_eq!(start.elapsed(), Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_waiter_leaves_the_queue() {
        let b = budget(1);
        drop(b.acquire(Priority::Apply).await);
        let timed_out =
            tokio::time::timeout(Duration::from_secs(5), b.acquire(Priority::Revoke)).await;
        assert!(timed_out.is_err());
        assert_eq!(b.waiting(), 0);
        // The abandoned waiter must not block the next one.
        let start = Instant::now();
        drop(b.acquire(Priority::Apply).await);
        assert_eq!(start.elapsed(), Duration::from_secs(55));
    }
}
