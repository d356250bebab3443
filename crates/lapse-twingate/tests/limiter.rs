//! The client-side budget on tokio's paused clock: never over the limit, revocations first.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapse_core::provider::Priority;
use lapse_twingate::Budget;
use tokio::time::Instant;

fn budget(per_minute: u32) -> Arc<Budget> {
    Arc::new(Budget::per_minute(
        "writes",
        NonZeroU32::new(per_minute).expect("non-zero"),
    ))
}

/// Waits (on the paused clock, without advancing it) until `n` callers are queued.
async fn until_waiting(budget: &Budget, n: usize) {
    // A bound instead of a deadline: time does not move here, only other tasks do.
    for _ in 0..10_000 {
        if budget.waiting() >= n {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("{n} callers never queued (only {})", budget.waiting());
}

/// The most grants inside any window of `window` starting at a grant.
fn busiest_window(times: &[Duration], window: Duration) -> usize {
    times
        .iter()
        .map(|start| {
            times
                .iter()
                .filter(|t| **t >= *start && **t < *start + window)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(start_paused = true)]
async fn writes_stay_within_the_budget_over_every_simulated_minute() {
    let writes = budget(20);
    let start = Instant::now();
    let tasks: Vec<_> = (0..50)
        .map(|n| {
            let writes = writes.clone();
            let priority = if n % 3 == 0 {
                Priority::Revoke
            } else {
                Priority::Apply
            };
            tokio::spawn(async move {
                drop(writes.acquire(priority).await);
                start.elapsed()
            })
        })
        .collect();
    let mut times = Vec::new();
    for task in tasks {
        times.push(task.await.expect("task"));
    }
    times.sort();

    let minute = Duration::from_secs(60);
    assert_eq!(busiest_window(&times, minute), 20);
    // The budget is used as stated, not merely respected: 20 at once, then 20 a minute later.
    assert_eq!(times.iter().filter(|t| t.is_zero()).count(), 20);
    assert_eq!(times.iter().filter(|t| **t == minute).count(), 20);
    assert_eq!(times.last().copied(), Some(minute * 2));
}

#[tokio::test(start_paused = true)]
async fn a_budget_of_sixty_allows_sixty_in_any_minute() {
    let reads = Arc::new(Budget::per_minute(
        "reads",
        NonZeroU32::new(60).expect("non-zero"),
    ));
    let start = Instant::now();
    let mut times = Vec::new();
    for _ in 0..90 {
        drop(reads.acquire(Priority::Apply).await);
        times.push(start.elapsed());
    }
    assert_eq!(busiest_window(&times, Duration::from_secs(60)), 60);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_revocation_goes_before_waiting_grants() {
    let writes = budget(20);
    // Spend the permits that are free now, so everyone below has to wait.
    for _ in 0..20 {
        drop(writes.acquire(Priority::Apply).await);
    }

    let order = Arc::new(Mutex::new(Vec::new()));
    let spawn = |label: &'static str, priority: Priority| {
        let writes = writes.clone();
        let order = order.clone();
        tokio::spawn(async move {
            drop(writes.acquire(priority).await);
            order.lock().expect("order").push(label);
        })
    };
    let mut tasks = Vec::new();
    for (n, label) in ["grant-1", "grant-2", "grant-3", "grant-4"]
        .into_iter()
        .enumerate()
    {
        tasks.push(spawn(label, Priority::Apply));
        until_waiting(&writes, n + 1).await;
    }
    // The revocations arrive last, while grant-1 is already waiting at the head for the next permit.
    tasks.push(spawn("revoke-1", Priority::Revoke));
    until_waiting(&writes, 5).await;
    tasks.push(spawn("revoke-2", Priority::Revoke));
    until_waiting(&writes, 6).await;

    for task in tasks {
        task.await.expect("task");
    }
    let order = order.lock().expect("order").clone();
    assert_eq!(
        order,
        [
            "revoke-1", "revoke-2", "grant-1", "grant-2", "grant-3", "grant-4"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_revocation_arriving_mid_queue_takes_the_next_permit() {
    let writes = budget(1);
    let start = Instant::now();
    drop(writes.acquire(Priority::Apply).await);
    let grant = {
        let writes = writes.clone();
        tokio::spawn(async move {
            drop(writes.acquire(Priority::Apply).await);
            start.elapsed()
        })
    };
    until_waiting(&writes, 1).await;
    tokio::time::advance(Duration::from_secs(58)).await;
    // Two seconds before the next permit, a revocation arrives: it gets that permit.
    drop(writes.acquire(Priority::Revoke).await);
    assert_eq!(start.elapsed(), Duration::from_secs(60));
    assert_eq!(grant.await.expect("task"), Duration::from_secs(120));
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_revocations_on_an_idle_budget_goes_at_once() {
    let writes = budget(20);
    let start = Instant::now();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let writes = writes.clone();
            tokio::spawn(async move {
                let permit = writes.acquire(Priority::Revoke).await;
                // A request takes a while; the others do not wait for it.
                tokio::time::sleep(Duration::from_millis(5)).await;
                drop(permit);
                start.elapsed()
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.expect("task"), Duration::from_millis(5));
    }
}
