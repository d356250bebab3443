//! Grant submission's one typed path: the per-kind field rules, name resolution and the
//! group-name cache, against a fake directory.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::{Duration, Utc};
use lapse_core::policy::Limits;
use lapse_core::{GrantSpec, GrantState, RemoteId};
use lapse_requests::wire::GrantRequest;
use lapse_requests::{FlowError, Submitter};

mod common;
use common::Directory;

fn submitter() -> (Arc<Directory>, Submitter<Directory>) {
    let dir = Arc::new(Directory::new());
    (dir.clone(), Submitter::new(dir, Limits::default()))
}

fn membership(group: &str, users: &[&str]) -> GrantRequest {
    GrantRequest {
        kind: "group-membership".into(),
        users: users.iter().map(|u| u.to_string()).collect(),
        group: Some(group.into()),
        duration: Some("1h".into()),
        reason: "INC-1".into(),
        ..GrantRequest::default()
    }
}

/// The field a refused submission names.
async fn refused_field(s: &Submitter<Directory>, req: &GrantRequest) -> String {
    match s.build(req, "ops", Utc::now()).await {
        Err(FlowError::Field(e)) => {
            assert!(!e.fix.is_empty(), "a refusal names the fix: {e:?}");
            e.field
        }
        other => panic!("expected a field error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_valid_submission_resolves_every_name() {
    let (_, s) = submitter();
    let now = Utc::now();
    let g = s
        .build(
            &membership(" db-admins ", &["MIA@x.io", "mia@x.io"]),
            "ops",
            now,
        )
        .await
        .expect("built");
    assert_eq!(g.state, GrantState::Applying);
    assert_eq!(g.expires_at - g.starts_at, Duration::hours(1));
    assert_eq!(g.requester, "ops");
    match g.spec {
        GrantSpec::GroupMembership { group, users } => {
            assert_eq!(group.id, RemoteId::new("G1"));
            assert_eq!(users.len(), 1, "the same user twice is one user");
            assert_eq!(users[0].name, "mia@x.io");
        }
        other => panic!("unexpected spec {other:?}"),
    }
    let mut later = membership("db-admins", &["mia@x.io"]);
    later.starts_at = Some(now + Duration::hours(2));
    let g = s.build(&later, "ops", now).await.expect("built");
    assert_eq!(g.state, GrantState::Scheduled);
}

#[tokio::test]
async fn each_kind_requires_its_fields_and_forbids_the_others() {
    let (_, s) = submitter();
    let mut no_group = membership("db-admins", &["mia@x.io"]);
    no_group.group = None;
    assert_eq!(refused_field(&s, &no_group).await, "group");
    let mut with_resources = membership("db-admins", &["mia@x.io"]);
    with_resources.resources = vec!["prod-db".into()];
    assert_eq!(refused_field(&s, &with_resources).await, "resources");
    let key = GrantRequest {
        kind: "service-key".into(),
        users: vec!["mia@x.io".into()],
        service_account: Some("ci".into()),
        duration: Some("1h".into()),
        reason: "deploy".into(),
        ..GrantRequest::default()
    };
    assert_eq!(refused_field(&s, &key).await, "users");
    let ephemeral = GrantRequest {
        kind: "ephemeral-group".into(),
        users: vec!["mia@x.io".into()],
        duration: Some("1h".into()),
        reason: "x".into(),
        ..GrantRequest::default()
    };
    assert_eq!(refused_field(&s, &ephemeral).await, "resources");
    let mut bad_kind = membership("db-admins", &["mia@x.io"]);
    bad_kind.kind = "group-ownership".into();
    assert_eq!(refused_field(&s, &bad_kind).await, "kind");
    let mut no_reason = membership("db-admins", &["mia@x.io"]);
    no_reason.reason = " ".into();
    assert_eq!(refused_field(&s, &no_reason).await, "reason");
    let mut forever = membership("db-admins", &["mia@x.io"]);
    forever.duration = Some("400h".into());
    assert_eq!(refused_field(&s, &forever).await, "duration");
    let crowd: Vec<String> = (0..101).map(|i| format!("u{i}@x.io")).collect();
    let mut many = membership("db-admins", &[]);
    many.users = crowd;
    assert_eq!(refused_field(&s, &many).await, "users");
}

#[tokio::test]
async fn names_that_do_not_resolve_to_one_changeable_object_are_refused() {
    let (_, s) = submitter();
    assert_eq!(
        refused_field(&s, &membership("db-admins", &["eve@x.io"])).await,
        "users"
    );
    assert_eq!(
        refused_field(&s, &membership("db-admins", &["not-an-email"])).await,
        "users"
    );
    for group in ["nobody", "everyone", "lapse-01jabc", "twins"] {
        assert_eq!(
            refused_field(&s, &membership(group, &["mia@x.io"])).await,
            "group",
            "{group}"
        );
    }
    let access = GrantRequest {
        kind: "service-access".into(),
        service_account: Some("ci".into()),
        resources: vec!["staging-db".into()],
        duration: Some("1h".into()),
        reason: "x".into(),
        ..GrantRequest::default()
    };
    assert_eq!(refused_field(&s, &access).await, "resources");
}

#[tokio::test]
async fn group_names_are_kept_for_a_minute_and_an_unreachable_twingate_is_said_so() {
    let (dir, s) = submitter();
    for _ in 0..3 {
        s.build(&membership("db-admins", &["mia@x.io"]), "ops", Utc::now())
            .await
            .expect("built");
    }
    assert_eq!(dir.group_lookups.load(Ordering::Relaxed), 1);
    dir.down.store(true, Ordering::Relaxed);
    assert!(matches!(
        s.build(&membership("db-admins", &["mia@x.io"]), "ops", Utc::now())
            .await,
        Err(FlowError::Unavailable(_))
    ));
}
