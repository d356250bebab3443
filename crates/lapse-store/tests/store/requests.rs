//! An approved request and the grant it becomes are stored together, or not at all.

use chrono::Duration;
use lapse_core::Grant;
use lapse_store::{
    ApprovalRecord, HistoryFilter, Idempotency, NewHistory, NewOutbox, RequestChange, RequestRecord,
};
use serde_json::json;

use crate::fixture::{GrantBuilder, TestDb, backends, t0};

fn pending(id: &str) -> RequestRecord {
    RequestRecord {
        id: id.to_owned(),
        list: "oncall".into(),
        requester: "alice@example.com".into(),
        token_name: "alice".into(),
        reason: "INC-1".into(),
        duration_secs: 3600,
        break_glass: false,
        extends_grant: None,
        state: "pending".into(),
        approvals_needed: 1,
        created_at: t0(),
        wait_until: t0() + Duration::hours(1),
        decided_at: None,
        decided_by: None,
        decision_reason: None,
        grant_id: None,
        warned_expiry: None,
    }
}

fn approval(approver: &str) -> ApprovalRecord {
    ApprovalRecord {
        approver: approver.into(),
        token_name: "bob".into(),
        at: t0(),
        reason: String::new(),
    }
}

fn idem(request: &str) -> Idempotency {
    Idempotency {
        key: format!("request:{request}"),
        request_hash: request.to_owned(),
    }
}

/// The change the approval path commits with the grant: the request approved and naming it.
fn approved(request: &str, approver: &str) -> impl FnOnce(&Grant) -> RequestChange {
    let request = request.to_owned();
    let approver = approver.to_owned();
    move |g: &Grant| {
        let mut r = pending(&request);
        r.state = "approved".into();
        r.decided_at = Some(t0());
        r.grant_id = Some(g.id.to_string());
        RequestChange {
            request: Some(r),
            approval: Some((request.clone(), approval(&approver))),
            history: vec![NewHistory {
                at: t0(),
                grant_id: Some(g.id),
                actor: "bob".into(),
                event: "request-approved".into(),
                detail: json!({ "request": request }),
            }],
            outbox: vec![NewOutbox {
                sink: "hook".into(),
                event: "request-approved".into(),
                payload: json!({ "request": request }),
            }],
            ..RequestChange::default()
        }
    }
}

#[tokio::test]
async fn the_grant_and_the_approved_request_commit_together() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        db.store
            .commit_requests(RequestChange {
                request: Some(pending("R1")),
                ..RequestChange::default()
            })
            .await
            .unwrap();
        let g = GrantBuilder::new(1).build();
        let stored = db
            .store
            .insert_grant_for_request(&g, idem("R1"), "list:db", approved("R1", "bob@example.com"))
            .await
            .unwrap();
        assert!(stored.is_created());
        assert!(db.store.get_grant(g.id).await.unwrap().is_some());
        let r = db.store.get_request("R1").await.unwrap().unwrap();
        assert_eq!(r.state, "approved");
        assert_eq!(r.grant_id, Some(g.id.to_string()));
        assert_eq!(db.store.approvals("R1").await.unwrap().len(), 1);
        let events: Vec<String> = db
            .store
            .history(&HistoryFilter {
                grant: Some(g.id),
                ..HistoryFilter::default()
            })
            .await
            .unwrap()
            .into_iter()
            .map(|h| h.event)
            .collect();
        assert_eq!(events, ["created", "request-approved"]);
        let outbox = db
            .store
            .outbox_due(t0() + Duration::days(3650), 10)
            .await
            .unwrap();
        assert_eq!(outbox.len(), 1);
        assert_eq!(outbox[0].event, "request-approved");
        assert!(
            db.store
                .verify_history()
                .await
                .unwrap()
                .first_broken
                .is_none()
        );
    }
}

#[tokio::test]
async fn a_failing_request_write_leaves_no_grant_behind() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        // The approval row already exists, so writing it again breaks the approvals' primary key
        // after the grant's rows were written in the same transaction: the stand-in for a crash
        // between the grant and the request.
        db.store
            .commit_requests(RequestChange {
                request: Some(pending("R2")),
                approval: Some(("R2".into(), approval("bob@example.com"))),
                ..RequestChange::default()
            })
            .await
            .unwrap();
        let g = GrantBuilder::new(2).build();
        let failed = db
            .store
            .insert_grant_for_request(&g, idem("R2"), "list:db", approved("R2", "bob@example.com"))
            .await;
        assert!(failed.is_err(), "{failed:?}");
        assert!(
            db.store.get_grant(g.id).await.unwrap().is_none(),
            "no grant without its approved request"
        );
        assert_eq!(
            db.store.get_request("R2").await.unwrap().unwrap().state,
            "pending"
        );
        assert!(
            db.store
                .outbox_due(t0() + Duration::days(3650), 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            db.store
                .verify_history()
                .await
                .unwrap()
                .first_broken
                .is_none()
        );

        // The retry stores both, and a replay of the same key names the first grant.
        db.store
            .commit_requests(RequestChange {
                request: Some(pending("R3")),
                ..RequestChange::default()
            })
            .await
            .unwrap();
        let first = GrantBuilder::new(3).build();
        db.store
            .insert_grant_for_request(
                &first,
                idem("R3"),
                "list:db",
                approved("R3", "carol@example.com"),
            )
            .await
            .unwrap();
        let again = GrantBuilder::new(4).build();
        let replay = db
            .store
            .insert_grant_for_request(&again, idem("R3"), "list:db", |g| {
                let mut r = pending("R3");
                r.state = "approved".into();
                r.grant_id = Some(g.id.to_string());
                RequestChange {
                    request: Some(r),
                    ..RequestChange::default()
                }
            })
            .await
            .unwrap();
        assert!(!replay.is_created());
        assert_eq!(replay.grant().id, first.id);
        assert_eq!(
            db.store.get_request("R3").await.unwrap().unwrap().grant_id,
            Some(first.id.to_string())
        );
        assert!(db.store.get_grant(again.id).await.unwrap().is_none());
    }
}

#[tokio::test]
async fn due_pending_requests_are_found_however_many_are_pending() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        // 1,001 due (more than the newest 1,000 a scan of pending requests would see), the oldest
        // first; one not yet due and one decided are left out.
        let mut rows = Vec::new();
        for i in 0..1001 {
            let mut r = pending(&format!("D{i:04}"));
            r.wait_until = t0() + Duration::seconds(i);
            rows.push(r);
        }
        let mut later = pending("LATER");
        later.wait_until = t0() + Duration::hours(5);
        let mut done = pending("DONE");
        done.state = "denied".into();
        done.wait_until = t0();
        rows.push(later);
        rows.push(done);
        for r in rows {
            db.store
                .commit_requests(RequestChange {
                    request: Some(r),
                    ..RequestChange::default()
                })
                .await
                .unwrap();
        }
        let now = t0() + Duration::hours(1);
        let due = db.store.due_pending_requests(now, 5000).await.unwrap();
        assert_eq!(due.len(), 1001);
        assert_eq!(due[0].id, "D0000", "the longest overdue first");
        assert!(
            due.iter()
                .all(|r| r.state == "pending" && r.wait_until <= now)
        );
        assert_eq!(
            db.store.due_pending_requests(now, 10).await.unwrap().len(),
            10
        );
        assert_eq!(db.store.next_pending_wait().await.unwrap(), Some(t0()));
    }
}

#[tokio::test]
async fn an_unknown_request_state_is_refused_on_read() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        let mut r = pending("ODD");
        r.state = "approving".into();
        db.store
            .commit_requests(RequestChange {
                request: Some(r),
                ..RequestChange::default()
            })
            .await
            .unwrap();
        let err = db.store.get_request("ODD").await.unwrap_err().to_string();
        assert!(
            err.contains("requests.state") && err.contains("approving"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn approved_grants_ending_before_a_time_are_found_once_per_end() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        db.store
            .commit_requests(RequestChange {
                request: Some(pending("E1")),
                ..RequestChange::default()
            })
            .await
            .unwrap();
        let mut g = GrantBuilder::new(7).build();
        g.state = lapse_core::GrantState::Active;
        let end = g.expires_at;
        db.store
            .insert_grant_for_request(&g, idem("E1"), "list:db", approved("E1", "bob@example.com"))
            .await
            .unwrap();
        assert_eq!(
            db.store
                .next_approved_end(t0() - Duration::days(1))
                .await
                .unwrap(),
            Some(end)
        );
        let before = end - Duration::seconds(1);
        assert!(
            db.store
                .approved_ending_between(t0() - Duration::days(1), before, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let found = db
            .store
            .approved_ending_between(t0() - Duration::days(1), end + Duration::seconds(1), 10)
            .await
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].0.id.as_str(), found[0].1), ("E1", end));
        // Warned for this end: no longer due, until the end moves.
        let mut r = found[0].0.clone();
        r.warned_expiry = Some(end);
        db.store
            .commit_requests(RequestChange {
                request: Some(r),
                ..RequestChange::default()
            })
            .await
            .unwrap();
        assert!(
            db.store
                .approved_ending_between(t0() - Duration::days(1), end + Duration::seconds(1), 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            db.store
                .next_approved_end(t0() - Duration::days(1))
                .await
                .unwrap(),
            None
        );
    }
}

/// A request decided meanwhile (here: cancelled) keeps its decision: an approval racing it,
/// as from another daemon that read the request while it was pending, stores no grant and
/// does not overwrite the cancellation; a later write that keeps the state is still taken.
#[tokio::test]
async fn a_decided_request_is_not_overwritten_by_a_racing_decision() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        db.store
            .commit_requests(RequestChange {
                request: Some(pending("R9")),
                ..RequestChange::default()
            })
            .await
            .unwrap();
        let mut cancelled = pending("R9");
        cancelled.state = "cancelled".into();
        cancelled.decided_by = Some("alice@example.com".into());
        db.store
            .commit_requests(RequestChange {
                request: Some(cancelled.clone()),
                decides: true,
                ..RequestChange::default()
            })
            .await
            .unwrap();
        let g = GrantBuilder::new(9).build();
        let refused = db
            .store
            .insert_grant_for_request(&g, idem("R9"), "list:db", approved("R9", "bob@example.com"))
            .await
            .expect_err("an approval of a cancelled request must be refused");
        assert!(
            matches!(&refused, lapse_store::StoreError::RequestDecided { id, state } if id == "R9" && state == "cancelled"),
            "{kind:?}: {refused:?}"
        );
        assert!(
            db.store.get_grant(g.id).await.unwrap().is_none(),
            "{kind:?}"
        );
        assert!(
            db.store.approvals("R9").await.unwrap().is_empty(),
            "{kind:?}"
        );
        let mut denied = pending("R9");
        denied.state = "denied".into();
        assert!(
            db.store
                .commit_requests(RequestChange {
                    request: Some(denied),
                    ..RequestChange::default()
                })
                .await
                .is_err(),
            "{kind:?}: a denial must not replace the cancellation"
        );
        assert_eq!(
            db.store.get_request("R9").await.unwrap().unwrap().state,
            "cancelled"
        );
        // Nor is an approval that does not reach the quorum recorded on it.
        let late = db
            .store
            .commit_requests(RequestChange {
                approval: Some(("R9".into(), approval("carol@example.com"))),
                ..RequestChange::default()
            })
            .await
            .expect_err("an approval of a cancelled request must be refused");
        assert!(
            matches!(late, lapse_store::StoreError::RequestDecided { .. }),
            "{kind:?}: {late:?}"
        );
        assert!(
            db.store.approvals("R9").await.unwrap().is_empty(),
            "{kind:?}"
        );
        // A second decision of the same kind (the cancel sent to both daemons) is refused too.
        let again = db
            .store
            .commit_requests(RequestChange {
                request: Some(cancelled.clone()),
                decides: true,
                ..RequestChange::default()
            })
            .await
            .expect_err("a second cancellation must be refused");
        assert!(
            matches!(again, lapse_store::StoreError::RequestDecided { .. }),
            "{kind:?}: {again:?}"
        );
        cancelled.decision_reason = Some("not needed".into());
        db.store
            .commit_requests(RequestChange {
                request: Some(cancelled),
                ..RequestChange::default()
            })
            .await
            .unwrap();
        let r = db.store.get_request("R9").await.unwrap().unwrap();
        assert_eq!(
            (r.state.as_str(), r.decision_reason.as_deref()),
            ("cancelled", Some("not needed"))
        );
    }
}

/// One approver counts once, even when the same approval reaches two daemons at once.
#[tokio::test]
async fn the_same_approver_is_recorded_once() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        db.store
            .commit_requests(RequestChange {
                request: Some(pending("R8")),
                ..RequestChange::default()
            })
            .await
            .unwrap();
        let approve = || RequestChange {
            approval: Some(("R8".into(), approval("carol@example.com"))),
            ..RequestChange::default()
        };
        db.store.commit_requests(approve()).await.unwrap();
        let twice = db
            .store
            .commit_requests(approve())
            .await
            .expect_err("a second approval by the same approver must be refused");
        assert!(
            matches!(twice, lapse_store::StoreError::AlreadyApproved { .. }),
            "{kind:?}: {twice:?}"
        );
        assert_eq!(db.store.approvals("R8").await.unwrap().len(), 1, "{kind:?}");
    }
}
