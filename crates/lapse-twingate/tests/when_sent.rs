//! A group update built when the write permit is handed out: the change is decided after the
//! wait for the budget, not before it.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ClientBuilder, start_sim, user_id};
use lapse_core::provider::{AccessProvider, MembershipChange, Priority, RemoteId};

#[tokio::test]
async fn the_change_is_built_after_the_wait_and_sent_as_built() {
    let sim = start_sim().await;
    let client = ClientBuilder::new(&sim).build();
    let alice = RemoteId::new(user_id(101));
    let bob = RemoteId::new(user_id(102));
    let group = client
        .create_group(
            "lapse-when-sent",
            &[alice.clone(), bob.clone()],
            &[],
            Priority::Apply,
        )
        .await
        .expect("create");

    // The budget is held back for a moment (as after a 429's Retry-After).
    let hold = Duration::from_millis(600);
    client.write_budget().hold_off(hold);
    let started = Instant::now();
    let built_at = Arc::new(Mutex::new(None));
    let seen = built_at.clone();
    let sent = client
        .update_group_users_when_sent(&group, Priority::Revoke.into(), move || {
            *seen.lock().expect("lock") = Some(started.elapsed());
            // Decided now: both members, as if the second fell due during the wait.
            Some((
                "both",
                MembershipChange {
                    add: Vec::new(),
                    remove: vec![alice.clone(), bob.clone()],
                },
            ))
        })
        .await;
    let (value, result) = sent.expect("built and sent");
    assert_eq!(value, "both");
    result.expect("accepted");
    let built = built_at.lock().expect("lock").expect("built");
    assert!(built >= hold, "built after the wait, at {built:?}");
    let info = client.group(&group).await.expect("read").expect("exists");
    assert!(
        info.users.is_empty(),
        "one call removed both: {:?}",
        info.users
    );
    let updates = sim
        .journal()
        .iter()
        .filter(|j| j.is_mutation && j.root_fields.iter().any(|f| f == "groupUpdate"))
        .count();
    assert_eq!(updates, 1);

    // Nothing left to send: the permit goes back and nothing reaches the server.
    let before = sim.journal().len();
    let declined = client
        .update_group_users_when_sent::<(), _>(&group, Priority::Revoke.into(), || None)
        .await;
    assert!(declined.is_none());
    assert_eq!(sim.journal().len(), before);
}

/// A failure before any permit is handed out (here: nothing listens at the API's address) is
/// answered with the caller's value and the error, not taken for "nothing left to send", so the
/// engine backs off and alarms on it like any failed write.
#[tokio::test]
async fn a_failure_before_the_permit_comes_back_with_the_callers_value() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let client = ClientBuilder::for_url(&url)
        .timeout(Duration::from_secs(2))
        .build();
    let group = RemoteId::new(common::group_id(1));
    let sent = client
        .update_group_users_when_sent(&group, Priority::Revoke.into(), || {
            Some((
                "removal",
                MembershipChange {
                    add: Vec::new(),
                    remove: vec![RemoteId::new(user_id(101))],
                },
            ))
        })
        .await;
    let (value, result) = sent.expect("the failure is answered, with the caller's value");
    assert_eq!(value, "removal");
    assert!(result.is_err(), "{result:?}");
}
