//! Each way a call fails (twingate-api.md §2) arrives as the error class that tells the engine what to do.

mod common;

use std::time::{Duration, Instant};

use chrono::TimeDelta;
use common::{ClientBuilder, group_id, start_sim, user_id};
use lapse_core::provider::{
    AccessProvider, ErrorClass, Priority, ProviderError, RemoteId, WriteTerms,
};
use twingate_sim::{CommitThenLose, Faults, Outcome, SimHandle};

fn rid(s: String) -> RemoteId {
    RemoteId(s)
}

const FAULT_SEED: u64 = 3;

fn storm(sim: &SimHandle, seconds: i64) {
    sim.set_faults(Faults {
        rate_limit_storm_until: Some(sim.clock().now() + TimeDelta::seconds(seconds)),
        ..Faults::none()
    })
    .expect("faults the sim accepts");
}

#[tokio::test]
async fn a_refusal_is_rejected_and_a_missing_object_is_already_gone() {
    let sim = start_sim().await;
    let client = ClientBuilder::new(&sim).build();

    // Only MANUAL groups can be changed; Everyone is SYSTEM.
    let refused = client
        .update_group_users(
            &rid(group_id(203)),
            &[rid(user_id(101))],
            &[],
            Priority::Apply,
        )
        .await;
    match refused {
        Err(ProviderError::Rejected(message)) => assert!(message.contains("MANUAL"), "{message}"),
        other => panic!("expected Rejected, got {other:?}"),
    }

    let gone = client
        .delete_group(&rid(group_id(987_654)), Priority::Revoke)
        .await;
    let Err(error) = gone else {
        panic!("deleting a missing group succeeded")
    };
    assert!(
        matches!(error, ProviderError::AlreadyGone(ref m) if m.contains("does not exist")),
        "{error:?}"
    );
    assert_eq!(error.class(), ErrorClass::Gone);
}

#[tokio::test]
async fn a_garbage_id_is_invalid_for_reads_and_writes() {
    let sim = start_sim().await;
    let client = ClientBuilder::new(&sim).read_retries(3).build();

    let read = client.group(&RemoteId::new("not-a-global-id")).await;
    match read {
        Err(ProviderError::Invalid(message)) => {
            assert!(message.contains("Unable to parse global ID"), "{message}")
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    let write = client
        .delete_group(&RemoteId::new("not-a-global-id"), Priority::Revoke)
        .await;
    assert!(matches!(write, Err(ProviderError::Invalid(_))), "{write:?}");
    // Invalid requests are not retried.
    assert_eq!(sim.journal().len(), 2);
}

#[tokio::test]
async fn a_429_is_waited_out_for_its_retry_after_and_then_succeeds() {
    let sim = start_sim().await;
    let client = ClientBuilder::new(&sim).build();
    storm(&sim, 2);

    let started = Instant::now();
    let alice = client
        .user_by_email("alice@example.com")
        .await
        .expect("succeeds after the wait");
    assert!(alice.is_some());
    let journal = sim.journal();
    assert_eq!(journal[0].http_status, 429);
    assert_eq!(journal.last().map(|e| e.http_status), Some(200));
    // The server said "2": the client did not come back sooner.
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(journal.iter().filter(|e| e.http_status == 429).count(), 1);
}

#[tokio::test]
async fn a_rate_limited_write_is_repeated_because_it_was_not_processed() {
    let sim = start_sim().await;
    let client = ClientBuilder::new(&sim).build();
    storm(&sim, 1);

    let id = client
        .create_group("lapse-after-429", &[], &[], Priority::Apply)
        .await
        .expect("created after the wait");
    let applied: Vec<_> = sim
        .journal()
        .into_iter()
        .filter(|e| e.mutation_applied)
        .collect();
    assert_eq!(applied.len(), 1);
    let named = client
        .groups_by_name("lapse-after-429")
        .await
        .expect("lookup");
    assert_eq!(named.len(), 1);
    assert_eq!(named[0].id, id);
}

#[tokio::test]
async fn a_write_whose_deadline_passes_while_it_waits_out_a_429_is_not_sent() {
    let sim = start_sim().await;
    let client = ClientBuilder::new(&sim).build();
    storm(&sim, 2);
    let terms = WriteTerms {
        priority: Priority::Apply,
        not_after: Some(chrono::Utc::now() + TimeDelta::milliseconds(500)),
    };
    let error = client
        .create_group("lapse-too-late", &[], &[], terms)
        .await
        .expect_err("not sent after its deadline");
    assert!(matches!(error, ProviderError::NotSent(_)), "{error:?}");
    assert_eq!(error.class(), ErrorClass::NotSent);
    let journal = sim.journal();
    assert_eq!(
        journal.len(),
        1,
        "only the refused first attempt reached the server"
    );
    assert_eq!(journal[0].http_status, 429);
    assert!(!journal[0].mutation_applied);
    // Past its deadline already: nothing is sent at all.
    let late = WriteTerms {
        priority: Priority::Apply,
        not_after: Some(chrono::Utc::now()),
    };
    let error = client
        .create_group("lapse-too-late", &[], &[], late)
        .await
        .expect_err("not sent");
    assert!(matches!(error, ProviderError::NotSent(_)), "{error:?}");
    assert_eq!(sim.journal().len(), 1);
}

#[tokio::test]
async fn a_429_longer_than_the_patience_is_reported_with_its_wait() {
    let sim = start_sim().await;
    let client = ClientBuilder::new(&sim)
        .rate_limit_patience(Duration::from_secs(1))
        .build();
    storm(&sim, 30);

    let result = client.group(&rid(group_id(201))).await;
    let Err(error) = result else {
        panic!("succeeded during a storm")
    };
    let wait = error.retry_after().expect("RateLimited carries the wait");
    assert!(wait >= Duration::from_secs(29), "{wait:?}");
    assert_eq!(error.class(), ErrorClass::Retry);
    assert_eq!(sim.journal().len(), 1);
}

#[tokio::test]
async fn a_5xx_is_transient_reads_are_retried_and_writes_are_not() {
    let sim = start_sim().await;
    let client = ClientBuilder::new(&sim).read_retries(2).build();
    sim.set_faults(Faults {
        error_5xx_rate: 1.0,
        ..Faults::none()
    })
    .expect("faults the sim accepts");

    let read = client.group(&rid(group_id(201))).await;
    assert!(matches!(read, Err(ProviderError::Transient(_))), "{read:?}");
    assert_eq!(sim.journal().len(), 3, "one attempt and two retries");

    sim.clear_journal();
    let write = client
        .create_group("lapse-5xx", &[], &[], Priority::Apply)
        .await;
    assert!(
        matches!(write, Err(ProviderError::Transient(_))),
        "{write:?}"
    );
    assert_eq!(sim.journal().len(), 1, "a write is sent once");
    assert!(sim.state().group_named("lapse-5xx").is_none());
}

#[tokio::test]
async fn a_read_that_succeeds_on_retry_is_returned() {
    // This fault seed fails the first draw, so the read really is retried.
    let sim = common::start_sim_with(twingate_sim::SimConfig {
        fault_seed: FAULT_SEED,
        ..Default::default()
    })
    .await;
    let client = ClientBuilder::new(&sim).read_retries(50).build();
    // Half the answers fail; with fifty retries a read still comes through.
    sim.set_faults(Faults {
        error_5xx_rate: 0.5,
        ..Faults::none()
    })
    .expect("faults the sim accepts");
    let group = client
        .group(&rid(group_id(201)))
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(group.name, "oncall");
    let journal = sim.journal();
    assert!(
        journal.iter().any(|e| e.http_status >= 500),
        "the fault seed gave no failure to retry"
    );
    assert_eq!(journal.last().map(|e| e.http_status), Some(200));
}

#[tokio::test]
async fn a_reset_connection_is_transient_for_a_read_and_unknown_for_a_write() {
    let sim = start_sim().await;
    let client = ClientBuilder::new(&sim).read_retries(1).build();
    sim.set_faults(Faults {
        reset_rate: 1.0,
        ..Faults::none()
    })
    .expect("faults the sim accepts");

    let read = client.group(&rid(group_id(201))).await;
    assert!(matches!(read, Err(ProviderError::Transient(_))), "{read:?}");
    assert_eq!(sim.journal().len(), 2);

    sim.clear_journal();
    let write = client
        .delete_group(&rid(group_id(202)), Priority::Revoke)
        .await;
    assert!(
        matches!(write, Err(ProviderError::UnknownOutcome(_))),
        "{write:?}"
    );
    assert_eq!(sim.journal().len(), 1);
}

#[tokio::test]
async fn a_write_committed_then_dropped_is_an_unknown_outcome_never_a_failure() {
    let sim = start_sim().await;
    let client = ClientBuilder::new(&sim).build();
    sim.set_faults(Faults {
        commit_then_lose: CommitThenLose::Drop,
        ..Faults::none()
    })
    .expect("faults the sim accepts");

    let result = client
        .create_group(
            "lapse-lost-answer",
            &[rid(user_id(101))],
            &[],
            Priority::Apply,
        )
        .await;
    let Err(error) = result else {
        panic!("the answer was dropped, yet the call succeeded")
    };
    assert!(
        matches!(error, ProviderError::UnknownOutcome(_)),
        "{error:?}"
    );
    assert_eq!(error.class(), ErrorClass::Unknown);

    let journal = sim.journal();
    assert_eq!(journal.len(), 1, "never retried blindly");
    assert!(journal[0].mutation_applied);
    // Looking before acting again finds exactly the one group.
    sim.set_faults(Faults::none())
        .expect("faults the sim accepts");
    let found = client
        .groups_by_name("lapse-lost-answer")
        .await
        .expect("lookup");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].users, vec![rid(user_id(101))]);
}

#[tokio::test]
async fn a_write_committed_then_answered_too_late_is_an_unknown_outcome() {
    let sim = start_sim().await;
    let client = ClientBuilder::new(&sim)
        .timeout(Duration::from_millis(500))
        .build();
    sim.set_faults(Faults {
        commit_then_lose: CommitThenLose::DelaySecs(60),
        commit_then_lose_operations: vec!["GroupUpdateUsers".to_owned()],
        ..Faults::none()
    })
    .expect("faults the sim accepts");

    let result = client
        .update_group_users(
            &rid(group_id(202)),
            &[rid(user_id(102))],
            &[],
            Priority::Apply,
        )
        .await;
    assert!(
        matches!(result, Err(ProviderError::UnknownOutcome(_))),
        "{result:?}"
    );
    let journal = sim.journal();
    assert_eq!(journal.len(), 1);
    assert!(journal[0].mutation_applied);
    assert!(matches!(&journal[0].outcome, Outcome::Fault(f) if f.contains("commit_then_lose")));
}

#[tokio::test]
async fn a_read_timing_out_is_transient() {
    let sim = start_sim().await;
    let client = ClientBuilder::new(&sim)
        .timeout(Duration::from_millis(300))
        .build();
    sim.set_faults(Faults {
        latency: Duration::from_secs(5),
        ..Faults::none()
    })
    .expect("faults the sim accepts");
    let read = client.group(&rid(group_id(201))).await;
    assert!(
        matches!(read, Err(ProviderError::Transient(ref m)) if m.contains("timed out")),
        "{read:?}"
    );
}

#[tokio::test]
async fn an_html_page_with_http_200_is_misconfigured_and_names_the_base_url() {
    let sim = start_sim().await;
    let client = ClientBuilder::new(&sim).read_retries(3).build();
    sim.set_faults(Faults {
        html_200: true,
        ..Faults::none()
    })
    .expect("faults the sim accepts");

    let read = client.user_by_email("alice@example.com").await;
    match read {
        Err(ProviderError::Misconfigured(message)) => {
            assert!(message.contains(&sim.base_url()), "{message}")
        }
        other => panic!("expected Misconfigured, got {other:?}"),
    }
    let write = client
        .delete_group(&rid(group_id(202)), Priority::Revoke)
        .await;
    assert!(
        matches!(write, Err(ProviderError::Misconfigured(_))),
        "{write:?}"
    );
    assert_eq!(sim.journal().len(), 2, "a misconfiguration is not retried");
}

#[tokio::test]
async fn a_wrong_path_is_misconfigured() {
    let sim = start_sim().await;
    let base = format!("{}/not-the-api", sim.base_url());
    let client = ClientBuilder::for_url(&base).build();
    let read = client.group(&rid(group_id(201))).await;
    match read {
        Err(ProviderError::Misconfigured(message)) => assert!(message.contains(&base), "{message}"),
        other => panic!("expected Misconfigured, got {other:?}"),
    }
}

#[tokio::test]
async fn a_bad_key_is_unauthorized_without_retrying_or_echoing_it() {
    let sim = start_sim().await;
    let wrong = "tg-wrong-key-0123456789abcdef";
    let client = ClientBuilder::new(&sim).key(wrong).read_retries(3).build();

    let read = client.group(&rid(group_id(201))).await;
    let Err(error) = read else {
        panic!("a wrong key was accepted")
    };
    assert!(matches!(error, ProviderError::Unauthorized(_)), "{error:?}");
    assert_eq!(error.class(), ErrorClass::Permanent);
    assert!(!error.to_string().contains(wrong));
    assert!(!format!("{error:?}").contains(wrong));
    assert!(error.to_string().contains(&sim.base_url()));
    assert_eq!(sim.journal().len(), 1);
}

#[tokio::test]
async fn a_key_without_provision_is_unauthorized_for_service_keys() {
    let sim = start_sim().await;
    let client = ClientBuilder::new(&sim)
        .key(twingate_sim::DEMO_RW_KEY)
        .build();
    let sa = RemoteId(common::ci_deployer_id());
    let result = client.create_key(&sa, "lapse-k", 1, Priority::Apply).await;
    assert!(
        matches!(result, Err(ProviderError::Unauthorized(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn nothing_listening_is_transient_for_reads_and_writes() {
    // A port that was just free: nothing reached any server, so even a write is safe to repeat.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let client = ClientBuilder::for_url(&format!("http://127.0.0.1:{port}")).build();
    let read = client.group(&rid(group_id(201))).await;
    assert!(matches!(read, Err(ProviderError::Transient(_))), "{read:?}");
    let write = client
        .delete_group(&rid(group_id(201)), Priority::Revoke)
        .await;
    assert!(
        matches!(write, Err(ProviderError::Transient(_))),
        "{write:?}"
    );
}
