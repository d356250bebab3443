//! The engine's batches: applied all together, or not at all.

use chrono::Duration;
use lapse_core::{Edge, EdgeKind, GrantState, ObjectKind, OwnedEdge, OwnedObject, RemoteId};
use lapse_store::{Batch, HistoryFilter, NewHistory, StoreError};
use serde_json::json;

use crate::fixture::{GrantBuilder, TestDb, backends, t0};

fn edge(container: &str, member: &str) -> Edge {
    Edge::new(
        EdgeKind::Membership,
        &RemoteId::from(container),
        &RemoteId::from(member),
    )
}

#[tokio::test]
async fn empty_batch_is_empty_and_commits() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        assert!(Batch::default().is_empty());
        db.store.commit(Batch::default()).await.unwrap();
    }
}

#[tokio::test]
async fn a_batch_is_visible_as_a_whole_after_commit() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        let mut g = GrantBuilder::new(1).build();
        db.store.insert_grant(&g, None).await.unwrap();

        g.state = GrantState::Applying;
        g.retry.attempts = 1;
        g.retry.next_attempt_at = Some(t0() + Duration::seconds(4));
        g.retry.last_error = Some("timeout".into());
        g.expires_at += Duration::minutes(5);
        let claims = vec![
            OwnedEdge {
                edge: edge("G1", "U1"),
                added_by: g.id,
                expires_at: None,
                confirmed: false,
            },
            OwnedEdge {
                edge: Edge::new(EdgeKind::Access, &"R1".into(), &"G1".into()),
                added_by: g.id,
                expires_at: Some(g.expires_at),
                confirmed: false,
            },
        ];
        let object = OwnedObject {
            grant: g.id,
            kind: ObjectKind::Group,
            name: g.id.remote_name(),
            remote_id: None,
            revoked: false,
        };
        db.store
            .commit(Batch {
                grants: vec![g.clone()],
                claim_edges: claims.clone(),
                put_objects: vec![object.clone()],
                history: vec![NewHistory {
                    at: t0() + Duration::seconds(60),
                    grant_id: Some(g.id),
                    actor: "lapse".into(),
                    event: "applying".into(),
                    detail: json!({ "edges": 2 }),
                }],
                ..Default::default()
            })
            .await
            .unwrap();

        assert_eq!(db.store.get_grant(g.id).await.unwrap(), Some(g.clone()));
        let mut edges = db.store.load_edges().await.unwrap();
        edges.sort_by(|a, b| a.edge.cmp(&b.edge));
        let mut expected = claims.clone();
        expected.sort_by(|a, b| a.edge.cmp(&b.edge));
        assert_eq!(edges, expected);
        assert_eq!(db.store.load_objects().await.unwrap(), vec![object.clone()]);
        let history = db
            .store
            .history(&HistoryFilter {
                grant: Some(g.id),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            history.iter().map(|h| h.event.as_str()).collect::<Vec<_>>(),
            ["created", "applying"]
        );

        // Confirm one edge, record the object's id, then release and remove.
        let backstop = g.expires_at + Duration::minutes(10);
        let created = OwnedObject {
            remote_id: Some("GRP-9".into()),
            ..object.clone()
        };
        db.store
            .commit(Batch {
                confirm_edges: vec![(claims[1].edge.clone(), Some(backstop))],
                put_objects: vec![created.clone()],
                ..Default::default()
            })
            .await
            .unwrap();
        let confirmed = db.store.load_edges().await.unwrap();
        let access = confirmed
            .iter()
            .find(|e| e.edge.kind == EdgeKind::Access)
            .unwrap();
        assert!(access.confirmed);
        assert_eq!(access.expires_at, Some(backstop));
        assert!(
            !confirmed
                .iter()
                .find(|e| e.edge.kind == EdgeKind::Membership)
                .unwrap()
                .confirmed
        );
        assert_eq!(db.store.load_objects().await.unwrap(), vec![created]);

        db.store
            .commit(Batch {
                release_edges: vec![claims[0].edge.clone(), edge("G404", "U404")],
                remove_objects: vec![(g.id, ObjectKind::Group)],
                ..Default::default()
            })
            .await
            .unwrap();
        let left = db.store.load_edges().await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].edge, claims[1].edge);
        assert!(db.store.load_objects().await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn a_failing_batch_leaves_nothing_behind() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        let mut g = GrantBuilder::new(1).build();
        db.store.insert_grant(&g, None).await.unwrap();
        g.state = GrantState::Active;

        // Everything valid except a confirmation of an edge that was never claimed.
        let err = db
            .store
            .commit(Batch {
                grants: vec![g.clone()],
                claim_edges: vec![OwnedEdge {
                    edge: edge("G1", "U1"),
                    added_by: g.id,
                    expires_at: None,
                    confirmed: false,
                }],
                confirm_edges: vec![(edge("G2", "U2"), None)],
                history: vec![NewHistory {
                    at: t0(),
                    grant_id: Some(g.id),
                    actor: "lapse".into(),
                    event: "active".into(),
                    detail: json!({}),
                }],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::NotFound {
                    what: "claimed edge",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            db.store.get_grant(g.id).await.unwrap().unwrap().state,
            GrantState::Scheduled
        );
        assert!(db.store.load_edges().await.unwrap().is_empty());
        assert_eq!(
            db.store
                .history(&HistoryFilter::default())
                .await
                .unwrap()
                .len(),
            1
        );
    }
}

#[tokio::test]
async fn ownership_must_name_a_stored_grant() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        let ghost = GrantBuilder::new(99).build();
        let err = db
            .store
            .commit(Batch {
                claim_edges: vec![OwnedEdge {
                    edge: edge("G1", "U1"),
                    added_by: ghost.id,
                    expires_at: None,
                    confirmed: false,
                }],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Db {
                    step: "claiming an edge",
                    ..
                }
            ),
            "{err:?}"
        );

        let err = db
            .store
            .commit(Batch {
                grants: vec![ghost],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound { what: "grant", .. }),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn a_claim_hands_an_edge_to_another_grant() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        let a = GrantBuilder::new(1).build();
        let b = GrantBuilder::new(2).build();
        db.store
            .insert_grants(vec![(a.clone(), None), (b.clone(), None)])
            .await
            .unwrap();
        let claim = |by| OwnedEdge {
            edge: edge("G1", "U1"),
            added_by: by,
            expires_at: None,
            confirmed: true,
        };
        db.store
            .commit(Batch {
                claim_edges: vec![claim(a.id)],
                ..Default::default()
            })
            .await
            .unwrap();
        db.store
            .commit(Batch {
                release_edges: vec![edge("G1", "U1")],
                claim_edges: vec![claim(b.id)],
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(db.store.load_edges().await.unwrap(), vec![claim(b.id)]);
    }
}

#[tokio::test]
async fn a_late_copy_never_brings_an_ended_grant_back() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        let mut g = GrantBuilder::new(1).build();
        db.store.insert_grant(&g, None).await.unwrap();
        g.state = GrantState::Failed;
        g.retry.last_error = Some("refused".into());
        let ended = Batch {
            grants: vec![g.clone()],
            ..Batch::default()
        };
        db.store.commit(ended).await.unwrap();

        // A copy from before the end, written after it: the grant stays ended.
        let mut late = g.clone();
        late.state = GrantState::Applying;
        late.retry.last_error = None;
        let batch = Batch {
            grants: vec![late],
            ..Batch::default()
        };
        db.store.commit(batch).await.unwrap();
        let stored = db.store.get_grant(g.id).await.unwrap().unwrap();
        assert_eq!(stored.state, GrantState::Failed, "{kind:?}");
        assert_eq!(
            stored.retry.last_error.as_deref(),
            Some("refused"),
            "{kind:?}"
        );

        // A grant that does not exist still fails the batch.
        let missing = GrantBuilder::new(2).build();
        let batch = Batch {
            grants: vec![missing],
            ..Batch::default()
        };
        assert!(db.store.commit(batch).await.is_err(), "{kind:?}");
    }
}
