//! Grants: round trips of every kind, idempotency, filters.

use chrono::Duration;
use lapse_core::{GrantKind, GrantState, RetryState};
use lapse_store::{GrantFilter, HistoryFilter, Idempotency, Inserted, StoreError};

use crate::fixture::{GrantBuilder, TestDb, backends, resource, t0, user};

fn idem(key: &str, hash: &str) -> Option<Idempotency> {
    Some(Idempotency {
        key: key.into(),
        request_hash: hash.into(),
    })
}

#[tokio::test]
async fn every_kind_round_trips() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        for (n, kind) in GrantKind::ALL.into_iter().enumerate() {
            let mut grant = GrantBuilder::new(n as u128)
                .kind(
                    kind,
                    vec![user(1), user(2)],
                    vec![resource("prod-db"), resource("grafana")],
                )
                .build();
            // Optional fields filled, so that each column is exercised.
            grant.revoked_at = Some(t0() + Duration::minutes(30));
            grant.revoke_reason = Some("done early".into());
            grant.retry = RetryState {
                attempts: 3,
                next_attempt_at: Some(t0() + Duration::seconds(9)),
                last_error: Some("503 from upstream".into()),
            };
            let inserted = db.store.insert_grant(&grant, None).await.unwrap();
            assert_eq!(inserted, Inserted::Created(grant.clone()));
            assert_eq!(
                db.store.get_grant(grant.id).await.unwrap(),
                Some(grant),
                "{kind}"
            );
        }
        let all = db.store.list_grants(&GrantFilter::default()).await.unwrap();
        assert_eq!(all.len(), GrantKind::ALL.len());
    }
}

#[tokio::test]
async fn unknown_id_is_none() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        let g = GrantBuilder::new(1).build();
        assert_eq!(db.store.get_grant(g.id).await.unwrap(), None);
    }
}

#[tokio::test]
async fn same_key_and_body_give_back_the_stored_grant() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        let first = GrantBuilder::new(1).build();
        let retry = GrantBuilder::new(2).created_plus(5).build();
        assert!(
            db.store
                .insert_grant(&first, idem("k1", "h1"))
                .await
                .unwrap()
                .is_created()
        );
        match db
            .store
            .insert_grant(&retry, idem("k1", "h1"))
            .await
            .unwrap()
        {
            Inserted::Existing(g) => assert_eq!(g, first),
            other => panic!("expected Existing, got {other:?}"),
        }
        assert_eq!(db.store.get_grant(retry.id).await.unwrap(), None);
        // One grant, one `created` row.
        let rows = db.store.history(&HistoryFilter::default()).await.unwrap();
        assert_eq!(rows.len(), 1);
    }
}

#[tokio::test]
async fn same_key_with_another_body_is_a_conflict_and_writes_nothing() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        let first = GrantBuilder::new(1).build();
        let other = GrantBuilder::new(2).created_plus(5).build();
        db.store
            .insert_grant(&first, idem("k1", "h1"))
            .await
            .unwrap();
        let err = db
            .store
            .insert_grant(&other, idem("k1", "h2"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::IdempotencyConflict { key } if key == "k1"),
            "{err:?}"
        );
        assert_eq!(db.store.get_grant(other.id).await.unwrap(), None);
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
async fn a_batch_of_inserts_reports_each_item_and_keeps_the_good_ones() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        let a = GrantBuilder::new(1).build();
        let b = GrantBuilder::new(2).build();
        let c = GrantBuilder::new(3).build();
        let d = GrantBuilder::new(4).build();
        let results = db
            .store
            .insert_grants(vec![
                (a.clone(), idem("ka", "ha")),
                (b.clone(), idem("ka", "ha")), // same key, same body: the first grant
                (c.clone(), idem("ka", "other")), // same key, other body: refused
                (a.clone(), None),             // duplicate id: refused alone
                (d.clone(), None),
            ])
            .await
            .unwrap();
        assert_eq!(results.len(), 5);
        assert!(matches!(&results[0], Ok(Inserted::Created(g)) if *g == a));
        assert!(matches!(&results[1], Ok(Inserted::Existing(g)) if *g == a));
        assert!(matches!(
            &results[2],
            Err(StoreError::IdempotencyConflict { .. })
        ));
        assert!(
            matches!(&results[3], Err(StoreError::Db { .. })),
            "{:?}",
            results[3]
        );
        assert!(matches!(&results[4], Ok(Inserted::Created(g)) if *g == d));

        let ids: Vec<_> = db
            .store
            .list_grants(&GrantFilter::default())
            .await
            .unwrap()
            .into_iter()
            .map(|g| g.id)
            .collect();
        assert_eq!(ids, vec![d.id, a.id]);
        // The refused items left no history behind and the chain is whole.
        let history = db.store.history(&HistoryFilter::default()).await.unwrap();
        assert_eq!(
            history.iter().map(|h| h.grant_id).collect::<Vec<_>>(),
            vec![Some(a.id), Some(d.id)]
        );
        assert!(db.store.verify_history().await.unwrap().is_ok());
    }
}

#[tokio::test]
async fn filters_by_user_resource_state_kind_and_limit_newest_first() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        let alice = user(1);
        let bob = user(2);
        let g1 = GrantBuilder::new(1)
            .kind(
                GrantKind::EphemeralGroup,
                vec![alice.clone()],
                vec![resource("prod-db")],
            )
            .build();
        let g2 = GrantBuilder::new(2)
            .created_plus(10)
            .kind(
                GrantKind::GroupMembership,
                vec![alice.clone(), bob.clone()],
                vec![],
            )
            .state(GrantState::Active)
            .build();
        let g3 = GrantBuilder::new(3)
            .created_plus(20)
            .kind(
                GrantKind::GroupAccess,
                vec![],
                vec![resource("prod-db"), resource("grafana")],
            )
            .state(GrantState::Expired)
            .build();
        let g4 = GrantBuilder::new(4)
            .created_plus(30)
            .kind(GrantKind::ServiceKey, vec![], vec![])
            .state(GrantState::Active)
            .build();
        for g in [&g1, &g2, &g3, &g4] {
            db.store.insert_grant(g, None).await.unwrap();
        }
        let ids = |gs: Vec<lapse_core::Grant>| gs.into_iter().map(|g| g.id).collect::<Vec<_>>();
        let list = |f: GrantFilter| {
            let store = db.store.clone();
            async move { ids(store.list_grants(&f).await.unwrap()) }
        };

        assert_eq!(
            list(GrantFilter::default()).await,
            vec![g4.id, g3.id, g2.id, g1.id]
        );
        // Emails match regardless of case; remote ids match too.
        let by_alice = GrantFilter {
            user: Some("USER1@example.com".into()),
            ..Default::default()
        };
        assert_eq!(list(by_alice).await, vec![g2.id, g1.id]);
        let by_bob_id = GrantFilter {
            user: Some(bob.id.to_string()),
            ..Default::default()
        };
        assert_eq!(list(by_bob_id).await, vec![g2.id]);
        let by_db = GrantFilter {
            resource: Some("prod-db".into()),
            ..Default::default()
        };
        assert_eq!(list(by_db).await, vec![g3.id, g1.id]);
        let active = GrantFilter {
            states: vec![GrantState::Active],
            ..Default::default()
        };
        assert_eq!(list(active).await, vec![g4.id, g2.id]);
        let two_states = GrantFilter {
            states: vec![GrantState::Scheduled, GrantState::Expired],
            ..Default::default()
        };
        assert_eq!(list(two_states).await, vec![g3.id, g1.id]);
        let kind = GrantFilter {
            kind: Some(GrantKind::GroupAccess),
            ..Default::default()
        };
        assert_eq!(list(kind).await, vec![g3.id]);
        let combined = GrantFilter {
            user: Some("user1@example.com".into()),
            states: vec![GrantState::Active],
            ..Default::default()
        };
        assert_eq!(list(combined).await, vec![g2.id]);
        let limited = GrantFilter {
            limit: Some(2),
            ..Default::default()
        };
        assert_eq!(list(limited).await, vec![g4.id, g3.id]);
        // The next page starts after the last id of the one before; a grant inserted meanwhile
        // (a later id) does not shift it.
        let g5 = GrantBuilder::new(5)
            .created_plus(40)
            .state(GrantState::Active)
            .build();
        db.store.insert_grant(&g5, None).await.unwrap();
        let next = GrantFilter {
            limit: Some(2),
            before: Some(g3.id),
            ..Default::default()
        };
        assert_eq!(list(next).await, vec![g2.id, g1.id]);
        let last = GrantFilter {
            limit: Some(2),
            before: Some(g1.id),
            ..Default::default()
        };
        assert!(list(last).await.is_empty());
        let nobody = GrantFilter {
            user: Some("mallory@example.com".into()),
            ..Default::default()
        };
        assert!(list(nobody).await.is_empty());

        let open = ids(db.store.load_open_grants().await.unwrap());
        assert_eq!(open, vec![g1.id, g2.id, g4.id, g5.id]);
    }
}

#[tokio::test]
async fn created_history_row_describes_the_grant() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        let g = GrantBuilder::new(7)
            .kind(GrantKind::GroupAccess, vec![], vec![resource("prod-db")])
            .build();
        db.store.insert_grant(&g, None).await.unwrap();
        let rows = db
            .store
            .history(&HistoryFilter {
                grant: Some(g.id),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!(row.seq, 1);
        assert_eq!(row.event, "created");
        assert_eq!(row.actor, g.requester);
        assert_eq!(row.at, g.created_at);
        assert_eq!(row.detail["kind"], "group-access");
        assert_eq!(row.detail["reason"], g.reason);
        assert_eq!(row.detail["subjects"][0]["name"], "oncall");
        assert_eq!(row.detail["targets"][0]["name"], "prod-db");
        assert_eq!(
            row.detail["expires_at"],
            lapse_store::format_ts(g.expires_at)
        );
    }
}

#[tokio::test]
async fn the_same_key_from_two_callers_never_meets() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        let a = GrantBuilder::new(1).build();
        let b = GrantBuilder::new(2).build();
        let key = |caller: &str| Some(Idempotency::for_caller(caller, "k1", "body").unwrap());
        assert!(matches!(
            db.store.insert_grant(&a, key("op-a")).await.unwrap(),
            Inserted::Created(_)
        ));
        // Operator B replays A's key and body: B gets a grant of its own, never A's.
        let got = db.store.insert_grant(&b, key("op-b")).await.unwrap();
        assert_eq!(got, Inserted::Created(b.clone()));
        // A's own retry still finds A's grant.
        let retry = GrantBuilder::new(3).build();
        assert_eq!(
            db.store.insert_grant(&retry, key("op-a")).await.unwrap(),
            Inserted::Existing(a)
        );
        // A conflict names the key as the caller sent it.
        let other_body = Some(Idempotency::for_caller("op-b", "k1", "another body").unwrap());
        let err = db
            .store
            .insert_grant(&GrantBuilder::new(4).build(), other_body)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::IdempotencyConflict { key } if key == "k1"),
            "{err:?}"
        );
        // Callers whose names differ only in where a separator falls stay apart.
        let x = Idempotency::for_caller("a:b", "c", "h").unwrap();
        let y = Idempotency::for_caller("a", "b:c", "h").unwrap();
        assert_ne!(x.key, y.key);
        assert_eq!((x.shown_key(), y.shown_key()), ("c", "b:c"));
    }
}

#[tokio::test]
async fn the_request_namespace_is_lapses_own() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        let err =
            Idempotency::for_caller("op", "request:01J0000000000000000000000", "h").unwrap_err();
        assert!(matches!(err, StoreError::IdempotencyKey { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("Idempotency-Key: starts with `request:`"),
            "{err}"
        );
        for bad in ["", "k\n1", &"k".repeat(201)] {
            assert!(Idempotency::for_caller("op", bad, "h").is_err(), "{bad:?}");
        }
        // lapse's own key for a request is stored as is, and a caller's key cannot equal it.
        let own = Idempotency::for_request("01J0000000000000000000000");
        assert_eq!(own.key, "request:01J0000000000000000000000");
        assert_eq!(own.shown_key(), own.key);
        let g = GrantBuilder::new(1).build();
        assert!(matches!(
            db.store.insert_grant(&g, Some(own)).await.unwrap(),
            Inserted::Created(_)
        ));
    }
}
