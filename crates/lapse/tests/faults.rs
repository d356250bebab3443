//! End-to-end: crashes at any instant, sim faults and drift end with the right remote state,
//! exactly one group per ephemeral grant, and nothing lapse gave left behind.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use twingate_sim::{CommitThenLose, Faults};

const WITHIN: Duration = Duration::from_secs(30);

fn ephemeral(user: &str, ttl: &str) -> serde_json::Value {
    json!({"kind": "ephemeral-group", "users": [user], "resources": ["prod-db"], "duration": ttl, "reason": "INC-9"})
}

/// Applied `groupCreate` calls per group name.
fn creates_named(env: &Env, name: &str) -> usize {
    env.sim
        .journal()
        .iter()
        .filter(|j| j.mutation_applied && j.root_fields.iter().any(|f| f == "groupCreate"))
        .filter(|j| j.variables.to_string().contains(name))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_any_point_is_repaired_on_restart() {
    let mut env = Env::new("").await;
    // Slow calls so that kills land before, during and after remote calls and commits.
    env.sim
        .set_faults(Faults {
            latency: Duration::from_millis(120),
            ..Faults::none()
        })
        .expect("faults the sim accepts");
    env.start().await;
    let mut grants = Vec::new();
    for (i, delay_ms) in [0u64, 40, 130, 260, 400, 700, 1100, 1600]
        .into_iter()
        .enumerate()
    {
        let user = ["alice@example.com", "bob@example.com"][i % 2];
        let (s, e) = env.grant(ephemeral(user, "3s")).await;
        assert_eq!(s, 201, "{e}");
        let (s, m) = env
            .grant(membership("platform", &["dave@example.com"], "3s"))
            .await;
        assert_eq!(s, 201, "{m}");
        grants.push((id_of(&e), id_of(&m)));
        let deadline = tokio::time::Instant::now() + Duration::from_millis(delay_ms);
        tokio::time::sleep_until(deadline).await;
        env.kill9();
        env.start().await;
    }
    for (e, m) in &grants {
        env.wait_state(e, "expired", WITHIN).await;
        env.wait_state(m, "expired", WITHIN).await;
        let name = format!("lapse-{}", e.to_lowercase());
        assert!(
            creates_named(&env, &name) <= 1,
            "grant {e}: {} groups created",
            creates_named(&env, &name)
        );
    }
    assert_eq!(
        env.lapse_groups(),
        0,
        "no ephemeral group outlives its grant"
    );
    assert!(!env.group_has("platform", "dave@example.com"));
    let prod = env
        .snapshot()
        .resource_named("prod-db")
        .expect("prod-db")
        .clone();
    let lapse_group_ids: Vec<String> = env.snapshot().groups.iter().map(|g| g.id.clone()).collect();
    assert!(
        prod.access
            .iter()
            .all(|a| lapse_group_ids.contains(&a.principal_id)),
        "no edge to a deleted group"
    );
    assert!(env.group_has("oncall", "carol@example.com"), "untouched");
}

/// The daemon aborts (as if SIGKILLed) at each step of a grant's life: after intent is committed,
/// before a remote call, after it returned but before its outcome is committed, and after that
/// commit. Restarted, it converges: I1-I3 hold and each ephemeral grant made exactly one group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_each_step_is_repaired_on_restart() {
    let mut env = Env::new("").await;
    env.start().await;
    let points = [
        "intent-committed:1",
        "intent-committed:2",
        "before-call:1",
        "before-call:3",
        "after-call:1",
        "after-call:3",
        "outcome-committed:1",
        "outcome-committed:3",
    ];
    for point in points {
        env.terminate();
        env.start_with(&[("LAPSE_CRASH_AT", point)]).await;
        // Starting a second from now, so both answers are out before the first crash point.
        let start = (chrono::Utc::now() + chrono::Duration::seconds(1)).to_rfc3339();
        let mut eb = ephemeral("alice@example.com", "2s");
        eb["starts_at"] = json!(start);
        let mut mb = membership("platform", &["dave@example.com"], "2s");
        mb["starts_at"] = json!(start);
        let (s, e) = env.grant(eb).await;
        assert_eq!(s, 201, "{e}");
        let (s, m) = env.grant(mb).await;
        assert_eq!(s, 201, "{m}");
        let status = env.wait_exit(Duration::from_secs(20)).await;
        assert!(status.is_some_and(|s| !s.success()), "no crash at {point}");
        env.start().await;
        env.wait_state(&id_of(&e), "expired", WITHIN).await;
        env.wait_state(&id_of(&m), "expired", WITHIN).await;
        let name = format!("lapse-{}", id_of(&e).to_lowercase());
        assert_eq!(
            creates_named(&env, &name),
            1,
            "{point}: exactly one group created for the grant"
        );
        assert_eq!(
            env.groups_named(&name),
            0,
            "{point}: the group outlived its grant"
        );
        assert!(
            !env.group_has("platform", "dave@example.com"),
            "{point}: membership outlived its grant"
        );
    }
    assert_eq!(env.lapse_groups(), 0);
    assert!(env.group_has("oncall", "carol@example.com"), "untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_create_answers_leave_exactly_one_group() {
    let mut env = Env::new("[twingate]\ntimeout = \"1s\"\n").await;
    env.start().await;
    env.sim
        .set_faults(Faults {
            commit_then_lose: CommitThenLose::Drop,
            commit_then_lose_operations: vec!["GroupCreate".into()],
            ..Faults::none()
        })
        .expect("faults the sim accepts");
    let (_, e) = env.grant(ephemeral("alice@example.com", "5s")).await;
    let name = format!("lapse-{}", id_of(&e).to_lowercase());
    env.wait_state(&id_of(&e), "active", WITHIN).await;
    assert_eq!(
        env.groups_named(&name),
        1,
        "adopted after the lost answer, no duplicate"
    );
    assert_eq!(creates_named(&env, &name), 1);
    env.sim
        .set_faults(Faults::none())
        .expect("faults the sim accepts");
    env.wait_state(&id_of(&e), "expired", WITHIN).await;
    assert_eq!(env.groups_named(&name), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storms_of_5xx_and_429_end_in_the_right_state() {
    let mut env = Env::new("").await;
    env.start().await;
    env.sim
        .set_faults(Faults {
            error_5xx_rate: 0.5,
            ..Faults::none()
        })
        .expect("faults the sim accepts");
    let (_, a) = env
        .grant(membership("oncall", &["alice@example.com"], "12s"))
        .await;
    let (_, e) = env.grant(ephemeral("bob@example.com", "12s")).await;
    env.wait_state(&id_of(&a), "active", WITHIN).await;
    env.wait_state(&id_of(&e), "active", WITHIN).await;
    let until = env.sim.clock().now() + chrono::Duration::seconds(3);
    env.sim
        .set_faults(Faults {
            rate_limit_storm_until: Some(until),
            ..Faults::none()
        })
        .expect("faults the sim accepts");
    env.wait_state(&id_of(&a), "expired", WITHIN).await;
    env.wait_state(&id_of(&e), "expired", WITHIN).await;
    assert!(!env.group_has("oncall", "alice@example.com"));
    assert_eq!(env.lapse_groups(), 0);
    assert!(env.group_has("oncall", "carol@example.com"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_repaired_or_reported_within_a_sweep() {
    let mut env = Env::new("").await;
    env.start().await;
    let (_, m) = env
        .grant(membership("oncall", &["alice@example.com"], "1h"))
        .await;
    let (_, e) = env.grant(ephemeral("bob@example.com", "1h")).await;
    env.wait_state(&id_of(&m), "active", WITHIN).await;
    env.wait_state(&id_of(&e), "active", WITHIN).await;
    let name = format!("lapse-{}", id_of(&e).to_lowercase());
    let admin = env.sim.admin();
    let oncall = env
        .snapshot()
        .group_named("oncall")
        .expect("oncall")
        .id
        .clone();
    let lg = env
        .snapshot()
        .group_named(&name)
        .expect("lapse group")
        .id
        .clone();
    // A member removed by hand comes back; a stranger in lapse's group is removed.
    admin
        .remove_group_users(&oncall, &[env.user_id("alice@example.com")])
        .expect("remove");
    admin
        .add_group_users(&lg, &[env.user_id("frank@example.com")])
        .expect("add");
    assert!(
        eventually(Duration::from_secs(15), || async {
            env.group_has("oncall", "alice@example.com")
        })
        .await,
        "member re-added"
    );
    assert!(
        eventually(Duration::from_secs(15), || async {
            !env.group_has(&name, "frank@example.com")
        })
        .await,
        "stranger removed"
    );
    // A lapse group deleted by hand is recreated for the live grant.
    admin.delete_group(&lg).expect("delete");
    assert!(
        eventually(Duration::from_secs(15), || async {
            env.groups_named(&name) == 1 && env.group_has(&name, "bob@example.com")
        })
        .await,
        "group recreated; log tail:\n{}",
        tail(&env.log())
    );
    let hist = env.get("/v1/history").await;
    assert!(
        hist["history"]
            .as_array()
            .expect("h")
            .iter()
            .any(|h| h["event"] == "drift"),
        "drift is in the history"
    );
}

/// Whether a journal entry is a write that gives access (creates, adds).
fn gives_access(j: &twingate_sim::JournalEntry) -> bool {
    let non_empty = |k: &str| {
        j.variables
            .get(k)
            .and_then(|v| v.as_array())
            .is_some_and(|a| !a.is_empty())
    };
    j.root_fields.iter().any(|f| match f.as_str() {
        "groupCreate" | "resourceAccessAdd" | "serviceAccountKeyCreate" => true,
        "groupUpdate" => non_empty("addedUserIds"),
        "serviceAccountUpdate" => non_empty("addedResourceIds"),
        _ => false,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_add_is_sent_after_the_end_when_a_storm_holds_it_back() {
    let mut env = Env::new("").await;
    env.start().await;
    // The same names once before, so that submitting them again needs no read (the storm
    // would hold the submission back, not the apply).
    let (_, e0) = env.grant(ephemeral("bob@example.com", "5s")).await;
    let (_, m0) = env
        .grant(membership("oncall", &["dave@example.com"], "5s"))
        .await;
    env.wait_state(&id_of(&e0), "expired", WITHIN).await;
    env.wait_state(&id_of(&m0), "expired", WITHIN).await;
    env.sim.clear_journal();
    // Every call is refused (429, Retry-After) until well after the grants end: the creates
    // planned at once wait out the storm in the client, and must then not be sent.
    let until = env.sim.clock().now() + chrono::Duration::seconds(6);
    env.sim
        .set_faults(Faults {
            rate_limit_storm_until: Some(until),
            ..Faults::none()
        })
        .expect("faults the sim accepts");
    let (_, e) = env.grant(ephemeral("bob@example.com", "3s")).await;
    let (_, m) = env
        .grant(membership("oncall", &["dave@example.com"], "3s"))
        .await;
    let end = |g: &serde_json::Value| {
        g["expires_at"]
            .as_str()
            .expect("expires_at")
            .parse::<chrono::DateTime<chrono::Utc>>()
            .expect("timestamp")
    };
    let (e_end, m_end) = (end(&e), end(&m));
    env.wait_state(&id_of(&e), "expired", WITHIN).await;
    env.wait_state(&id_of(&m), "expired", WITHIN).await;
    let journal = env.sim.journal();
    assert!(
        journal
            .iter()
            .any(|j| j.root_fields.iter().any(|f| f == "groupCreate") && j.http_status == 429),
        "the create was held back by the storm"
    );
    let first_end = e_end.min(m_end);
    let late: Vec<_> = journal
        .iter()
        .filter(|j| j.is_mutation && gives_access(j) && j.at >= first_end)
        .map(|j| (j.at, j.operation_name.clone(), j.http_status))
        .collect();
    assert!(
        late.is_empty(),
        "adds sent at or after the end ({first_end}): {late:?}\nlog tail:\n{}",
        tail(&env.log())
    );
    let name = format!("lapse-{}", id_of(&e).to_lowercase());
    assert_eq!(env.groups_named(&name), 0);
    assert!(!env.group_has("oncall", "dave@example.com"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_sweep_reads_nothing_that_has_ended() {
    let mut env = Env::new("").await;
    env.start().await;
    let mut ids = Vec::new();
    for n in 0..12 {
        let user = ["alice", "bob", "dave", "frank"][n % 4];
        let (status, g) = env
            .grant(ephemeral(&format!("{user}@example.com"), "3s"))
            .await;
        assert_eq!(status, 201, "{g}");
        ids.push(id_of(&g));
    }
    let (_, m) = env
        .grant(membership("oncall", &["dave@example.com"], "3s"))
        .await;
    ids.push(id_of(&m));
    for id in &ids {
        env.wait_state(id, "expired", WITHIN).await;
    }
    assert_eq!(env.lapse_groups(), 0);
    // Let the passes that follow the last revocation settle, then watch three sweep intervals
    // (2 s in these tests) with nothing live.
    tokio::time::sleep(Duration::from_secs(1)).await;
    env.sim.clear_journal();
    tokio::time::sleep(Duration::from_secs(7)).await;
    let reads: Vec<_> = env
        .sim
        .journal()
        .iter()
        .filter(|j| !j.is_mutation)
        .map(|j| (j.operation_name.clone(), j.variables.to_string()))
        .collect();
    assert!(
        reads.is_empty(),
        "an idle sweep after every grant ended read: {reads:?}"
    );
}
