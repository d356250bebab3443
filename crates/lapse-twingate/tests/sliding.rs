//! The write budget against the stand-in enforcing 20 writes a minute, as a sliding minute and
//! as a token bucket: an idle budget serves a burst at once, and the client never goes over.

mod common;

use std::time::{Duration, Instant};

use common::{ClientBuilder, start_sim_with};
use lapse_core::provider::{AccessProvider, Priority};
use twingate_sim::{LimitWindow, RateLimit, SimConfig};

async fn burst_then_wait(window: LimitWindow) {
    let sim = start_sim_with(SimConfig {
        rate_limit: Some(RateLimit {
            reads_per_minute: 60,
            writes_per_minute: 20,
            window,
        }),
        ..SimConfig::default()
    })
    .await;
    let client = ClientBuilder::new(&sim).writes_per_minute(20).build();
    let started = Instant::now();
    let writes: Vec<_> = (0..20)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .create_group(&format!("lapse-burst-{n}"), &[], &[], Priority::Revoke)
                    .await
            })
        })
        .collect();
    for write in writes {
        write.await.expect("task").expect("accepted");
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "20 writes on an idle budget took {took:?}"
    );
    // The 21st waits in the client for the minute, not in a 429.
    let next = tokio::time::timeout(
        Duration::from_secs(2),
        client.create_group("lapse-burst-20", &[], &[], Priority::Revoke),
    )
    .await;
    assert!(next.is_err(), "the 21st write within the minute waits");
    let journal = sim.journal();
    assert_eq!(journal.iter().filter(|j| j.is_mutation).count(), 20);
    assert_eq!(
        journal.iter().filter(|j| j.http_status == 429).count(),
        0,
        "{window:?}: no write refused"
    );
}

#[tokio::test]
async fn twenty_writes_at_once_under_a_sliding_minute() {
    burst_then_wait(LimitWindow::SlidingMinute).await;
}

#[tokio::test]
async fn twenty_writes_at_once_under_a_token_bucket() {
    burst_then_wait(LimitWindow::TokenBucket).await;
}
