//! End-to-end against stand-in settings that provoke what the real Twingate API may do: writes
//! answered `ok` without their entity, failing clean-up writes, and expiries stored coarsely.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use twingate_sim::{ExpiryPrecision, Faults, ServiceAccountKeyStatus};

const WITHIN: Duration = Duration::from_secs(30);

/// Calls of `operation` the stand-in answered, applied or not.
fn calls(env: &Env, operation: &str) -> Vec<twingate_sim::JournalEntry> {
    env.sim
        .journal()
        .into_iter()
        .filter(|j| j.operation_name.as_deref() == Some(operation))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_without_entities_are_success_and_keys_end_revoked_and_deleted() {
    let mut env = Env::new("").await;
    env.sim
        .set_faults(Faults {
            null_entities: true,
            ..Faults::none()
        })
        .expect("faults the sim accepts");
    env.start().await;
    let (s, m) = env
        .grant(membership("oncall", &["alice@example.com"], "3s"))
        .await;
    assert_eq!(s, 201, "{m}");
    let (s, e) = env
        .grant(json!({"kind": "ephemeral-group", "users": ["bob@example.com"], "resources": ["prod-db"], "duration": "3s", "reason": "INC-5"}))
        .await;
    assert_eq!(s, 201, "{e}");
    let (s, a) = env
        .grant(json!({"kind": "group-access", "group": "platform", "resources": ["billing-api"], "duration": "3s", "reason": "INC-6"}))
        .await;
    assert_eq!(s, 201, "{a}");
    let (s, key) = env
        .post(
            "/v1/grants?wait=true",
            json!({"kind": "service-key", "service_account": "ci-deployer", "duration": "3s", "reason": "INC-7"}),
        )
        .await;
    assert_eq!(s, 201, "{key}");
    assert_eq!(key["state"], "active", "{key}");
    assert!(key["token"].as_str().is_some_and(|t| t.len() > 10), "{key}");
    for g in [&m, &e, &a] {
        env.wait_state(&id_of(g), "active", WITHIN).await;
    }
    for g in [&m, &e, &a, &key] {
        env.wait_state(&id_of(g), "expired", WITHIN).await;
    }
    let key_name = format!("lapse-{}", id_of(&key).to_lowercase());
    let snap = env.snapshot();
    let keys: Vec<_> = snap
        .service_account_named("ci-deployer")
        .expect("ci-deployer")
        .keys
        .iter()
        .filter(|k| k.name == key_name)
        .collect();
    assert!(keys.is_empty(), "the key was revoked and deleted: {keys:?}");
    assert!(!env.group_has("oncall", "alice@example.com"));
    assert_eq!(env.lapse_groups(), 0);
    // Each write went out once: none was taken for a failure and repeated.
    for op in [
        "GroupUpdateUsers",
        "GroupCreate",
        "ServiceAccountKeyCreate",
        "ServiceAccountKeyRevoke",
    ] {
        let n = calls(&env, op).len();
        assert!(n <= 2, "{op} sent {n} times; log:\n{}", tail(&env.log()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_key_create_leaves_no_active_key_behind() {
    let mut env = Env::new("").await;
    env.sim
        .set_faults(Faults {
            commit_then_lose: twingate_sim::CommitThenLose::Drop,
            commit_then_lose_operations: vec!["ServiceAccountKeyCreate".into()],
            ..Faults::none()
        })
        .expect("faults the sim accepts");
    env.start().await;
    let (s, key) = env
        .grant(json!({"kind": "service-key", "service_account": "ci-deployer", "duration": "1h", "reason": "INC-8"}))
        .await;
    assert_eq!(s, 201, "{key}");
    let key_name = format!("lapse-{}", id_of(&key).to_lowercase());
    // Every key the lost answers made has a token nobody holds: each is revoked and deleted.
    let active = |env: &Env| {
        env.snapshot()
            .service_account_named("ci-deployer")
            .map(|s| {
                s.keys
                    .iter()
                    .filter(|k| k.name == key_name && k.status == ServiceAccountKeyStatus::Active)
                    .count()
            })
            .unwrap_or(0)
    };
    assert!(
        eventually(WITHIN, || async {
            calls(&env, "ServiceAccountKeyCreate").len() >= 2
                && calls(&env, "ServiceAccountKeyDelete")
                    .iter()
                    .any(|j| j.mutation_applied)
        })
        .await,
        "the orphaned key was cleaned up; log:\n{}",
        tail(&env.log())
    );
    // Whatever remains active is at most the one key a live grant may hold, never an orphan
    // of a lost answer: revoke the grant and none is left.
    assert!(active(&env) <= 1);
    let (s, r) = env
        .post(
            &format!("/v1/grants/{}/revoke", id_of(&key)),
            json!({"reason": "done"}),
        )
        .await;
    assert!(s < 300, "{s} {r}");
    env.wait_state(&id_of(&key), "revoked", WITHIN).await;
    assert!(
        eventually(WITHIN, || async { active(&env) == 0 }).await,
        "no active key left; log:\n{}",
        tail(&env.log())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_up_writes_of_a_failed_grant_back_off() {
    let mut env = Env::new("").await;
    // The add is refused (the grant fails, its claimed edge is left to clean up) and every
    // removal fails: the clean-up belongs to no live grant and must still back off.
    env.sim
        .set_faults(Faults {
            refuse_operations: vec!["ResourceAccessAdd".into()],
            fail_operations: vec!["ResourceAccessRemove".into()],
            ..Faults::none()
        })
        .expect("faults the sim accepts");
    env.start().await;
    let (s, a) = env
        .grant(json!({"kind": "group-access", "group": "platform", "resources": ["billing-api"], "duration": "1h", "reason": "INC-9"}))
        .await;
    assert_eq!(s, 201, "{a}");
    env.wait_state(&id_of(&a), "failed", WITHIN).await;
    assert!(
        eventually(WITHIN, || async {
            calls(&env, "ResourceAccessRemove").len() >= 12
        })
        .await,
        "the clean-up is retried; log:\n{}",
        tail(&env.log())
    );
    let removals = calls(&env, "ResourceAccessRemove");
    let spread = removals[11].at - removals[0].at;
    // Without backoff the twelve go out one a pass (a 200 ms tick here: about 2.2 s); with a
    // 200 ms base doubling to a 2 s cap and full jitter they take about 9 s.
    assert!(
        spread >= chrono::Duration::seconds(4),
        "twelve identical removals within {spread}"
    );
    // Once the removal goes through, the edge is cleaned up and retries stop.
    env.sim
        .set_faults(Faults::none())
        .expect("faults the sim accepts");
    assert!(
        eventually(WITHIN, || async {
            env.snapshot()
                .resource_named("billing-api")
                .is_some_and(|r| {
                    r.access.iter().all(|x| {
                        Some(&x.principal_id)
                            != env.snapshot().group_named("platform").map(|g| &g.id)
                    })
                })
        })
        .await,
        "the failed grant's edge is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiry_stored_to_the_minute_is_written_once_not_every_sweep() {
    let mut env = Env::new("").await;
    env.sim
        .set_faults(Faults {
            expiry_precision: ExpiryPrecision::Minutes,
            ..Faults::none()
        })
        .expect("faults the sim accepts");
    env.start().await;
    let (s, a) = env
        .grant(json!({"kind": "group-access", "group": "platform", "resources": ["billing-api"], "duration": "1h", "reason": "INC-10"}))
        .await;
    assert_eq!(s, 201, "{a}");
    env.wait_state(&id_of(&a), "active", WITHIN).await;
    let stored = env
        .snapshot()
        .resource_named("billing-api")
        .and_then(|r| r.access.iter().find_map(|x| x.expires_at))
        .expect("an expiry");
    assert_eq!(stored.timestamp() % 60, 0, "stored to the minute: {stored}");
    // Several sweeps read the edge (every 2 s in tests) and find it short of what was wanted.
    let reads_before = calls(&env, "Resource").len();
    assert!(
        eventually(WITHIN, || async {
            calls(&env, "Resource").len() >= reads_before + 3
        })
        .await,
        "sweeps read the resource"
    );
    let adds = calls(&env, "ResourceAccessAdd")
        .into_iter()
        .filter(|j| j.mutation_applied)
        .count();
    assert_eq!(adds, 1, "written once; log:\n{}", tail(&env.log()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_made_for_a_grant_that_failed_is_revoked_and_deleted() {
    let mut env = Env::new("").await;
    // The key is created, but the answer is an error: the grant fails with a key under its name
    // whose token nobody holds.
    env.sim
        .set_faults(Faults {
            error_after_commit_operations: vec!["ServiceAccountKeyCreate".into()],
            ..Faults::none()
        })
        .expect("faults the sim accepts");
    env.start().await;
    let (s, key) = env
        .grant(json!({"kind": "service-key", "service_account": "ci-deployer", "duration": "1h", "reason": "INC-11"}))
        .await;
    assert_eq!(s, 201, "{key}");
    env.wait_state(&id_of(&key), "failed", WITHIN).await;
    let key_name = format!("lapse-{}", id_of(&key).to_lowercase());
    let named = |env: &Env| {
        env.snapshot()
            .service_account_named("ci-deployer")
            .map(|s| s.keys.iter().filter(|k| k.name == key_name).count())
            .unwrap_or(0)
    };
    assert!(
        calls(&env, "ServiceAccountKeyCreate")
            .iter()
            .any(|j| j.mutation_applied),
        "the key was made"
    );
    assert!(
        eventually(WITHIN, || async { named(&env) == 0 }).await,
        "the failed grant's key was revoked and deleted; log:\n{}",
        tail(&env.log())
    );
    assert!(
        calls(&env, "ServiceAccountKeyRevoke")
            .iter()
            .any(|j| j.mutation_applied)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_grants_key_is_still_removed_after_a_restart() {
    let mut env = Env::new("").await;
    // The key is made but its answer is an error, and the service account cannot be read, so the
    // daemon cannot find the key to remove it before it is killed.
    env.sim
        .set_faults(Faults {
            error_after_commit_operations: vec!["ServiceAccountKeyCreate".into()],
            fail_operations: vec!["ServiceAccount".into(), "ServiceAccountKeysPage".into()],
            ..Faults::none()
        })
        .expect("faults the sim accepts");
    env.start().await;
    let (s, key) = env
        .grant(json!({"kind": "service-key", "service_account": "ci-deployer", "duration": "1h", "reason": "INC-12"}))
        .await;
    assert_eq!(s, 201, "{key}");
    env.wait_state(&id_of(&key), "failed", WITHIN).await;
    let key_name = format!("lapse-{}", id_of(&key).to_lowercase());
    let named = |env: &Env| {
        env.snapshot()
            .service_account_named("ci-deployer")
            .map(|s| s.keys.iter().filter(|k| k.name == key_name).count())
            .unwrap_or(0)
    };
    assert!(
        calls(&env, "ServiceAccountKeyCreate")
            .iter()
            .any(|j| j.mutation_applied),
        "the key was made"
    );
    // The daemon tried to look the key up, and could not.
    assert!(
        eventually(WITHIN, || async {
            calls(&env, "ServiceAccount")
                .iter()
                .chain(calls(&env, "ServiceAccountKeysPage").iter())
                .any(|j| j.http_status == 503)
        })
        .await,
        "a clean-up read was attempted; log:\n{}",
        tail(&env.log())
    );
    assert_eq!(named(&env), 1, "the key is still there before the restart");
    env.kill9();
    env.sim
        .set_faults(Faults::none())
        .expect("faults the sim accepts");
    env.start().await;
    assert!(
        eventually(WITHIN, || async { named(&env) == 0 }).await,
        "after the restart the failed grant's key was revoked and deleted; log:\n{}",
        tail(&env.log())
    );
}
