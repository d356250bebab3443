//! One database, two handles (two daemons): the chain, idempotency and group commit hold
//! across them; on PostgreSQL, the leader lease, its epochs and the fence on engine batches.

use std::time::Duration;

use chrono::Utc;
use lapse_core::{GrantState, Role};
use lapse_store::{
    Backend, Batch, GrantChange, GrantFilter, GrantInserter, HistoryFilter, Idempotency, Inserted,
    NewHistory, StoreError,
};

use crate::fixture::{GrantBuilder, Kind, TestDb, V, backends};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_daemons_writing_at_once_keep_one_gapless_chain() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        let other = db.second_handle().await;
        let inserters = [
            GrantInserter::spawn(db.store.clone()),
            GrantInserter::spawn(other.clone()),
        ];
        let mut tasks = Vec::new();
        // 16 submitters per daemon through group commit, and token writes on both.
        for n in 0..32u128 {
            let ins = inserters[(n % 2) as usize].clone();
            tasks.push(tokio::spawn(async move {
                for k in 0..5u128 {
                    let g = GrantBuilder::new(n * 100 + k + 1).build();
                    let id = g.id;
                    match ins.insert(g, None, "admin").await.expect("stored") {
                        Inserted::Created(g) => assert_eq!(g.id, id),
                        Inserted::Existing(_) => panic!("a fresh grant came back as existing"),
                    }
                }
            }));
        }
        for n in 0..6 {
            let store = if n % 2 == 0 {
                db.store.clone()
            } else {
                other.clone()
            };
            tasks.push(tokio::spawn(async move {
                store
                    .create_token(&format!("t{n}"), Role::Operator)
                    .await
                    .expect("token");
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        let total = 32 * 5 + 6;
        let rows = other.history(&HistoryFilter::default()).await.unwrap();
        assert_eq!(
            rows.iter().map(|r| r.seq).collect::<Vec<_>>(),
            (1..=total).collect::<Vec<i64>>(),
            "one sequence, no gap, no reuse"
        );
        for store in [&db.store, &other] {
            let report = store.verify_history().await.unwrap();
            assert!(report.is_ok(), "{report:?}");
            assert_eq!(report.rows_checked, total as u64);
        }
        let grants = db
            .store
            .list_grants(&GrantFilter {
                limit: Some(1000),
                ..GrantFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(grants.len(), 160);
        other.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_idempotency_key_from_two_daemons_makes_one_grant() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        let other = db.second_handle().await;
        let idem = || {
            Some(Idempotency {
                key: "k-shared".into(),
                request_hash: "h".into(),
            })
        };
        let mut tasks = Vec::new();
        for n in 0..16u128 {
            let store = if n % 2 == 0 {
                db.store.clone()
            } else {
                other.clone()
            };
            let g = GrantBuilder::new(n + 1).build();
            let i = idem();
            tasks.push(tokio::spawn(async move {
                store.insert_grant(&g, i).await.expect("stored")
            }));
        }
        let mut created = Vec::new();
        let mut ids = Vec::new();
        for t in tasks {
            let inserted = t.await.expect("task");
            if inserted.is_created() {
                created.push(inserted.grant().id);
            }
            ids.push(inserted.grant().id);
        }
        assert_eq!(created.len(), 1, "exactly one submission creates the grant");
        assert!(ids.iter().all(|id| *id == created[0]), "{ids:?}");
        assert_eq!(db.store.verify_history().await.unwrap().rows_checked, 1);
        other.close().await;
    }
}

#[tokio::test]
async fn sqlite_always_leads_and_never_fences() {
    let db = TestDb::new().await;
    let status = db
        .store
        .try_lead("node-a", Duration::from_secs(10))
        .await
        .unwrap();
    assert!(status.leader);
    assert_eq!(status.epoch, 0);
    assert_eq!(db.store.lease().await.unwrap(), None);
    db.store.set_fence(None);
    let g = GrantBuilder::new(1).build();
    db.store.insert_grant(&g, None).await.unwrap();
    let mut done = g.clone();
    done.state = GrantState::Expired;
    db.store
        .commit(Batch {
            grants: vec![done],
            ..Batch::default()
        })
        .await
        .unwrap();
}

/// A fresh PostgreSQL store, or `None` (reported) where the server is absent outside CI.
async fn postgres() -> Option<TestDb> {
    let db = TestDb::open(Kind::Postgres).await;
    (db.store.backend() == Backend::Postgres).then_some(db)
}

fn note(n: u32) -> Batch {
    Batch {
        history: vec![NewHistory {
            at: Utc::now(),
            grant_id: None,
            actor: "lapse".into(),
            event: "drift".into(),
            detail: serde_json::json!({ "n": n }),
        }],
        ..Batch::default()
    }
}

#[tokio::test]
async fn the_lease_changes_hands_only_when_it_runs_out_and_each_change_is_a_new_epoch() {
    let Some(db) = postgres().await else { return };
    let a = db.store.clone();
    let b = db.second_handle().await;
    let lease = Duration::from_millis(600);

    let first = a.try_lead("node-a", lease).await.unwrap();
    assert!(first.leader && first.elected);
    assert_eq!(first.epoch, 1);
    let seen = b.try_lead("node-b", lease).await.unwrap();
    assert!(!seen.leader);
    assert_eq!((seen.holder.as_str(), seen.epoch), ("node-a", 1));
    // A renewal keeps the epoch and moves the expiry on.
    let renewed = a.try_lead("node-a", lease).await.unwrap();
    assert!(renewed.leader && !renewed.elected);
    assert_eq!(renewed.epoch, 1);
    assert!(renewed.expires_at > first.expires_at);

    tokio::time::sleep(lease + Duration::from_millis(300)).await;
    let taken = b.try_lead("node-b", lease).await.unwrap();
    assert!(taken.leader && taken.elected);
    assert_eq!(taken.epoch, 2);
    let lost = a.try_lead("node-a", lease).await.unwrap();
    assert!(!lost.leader);
    assert_eq!((lost.holder.as_str(), lost.epoch), ("node-b", 2));

    // A clean shutdown hands the lease over at once.
    b.release_lead("node-b").await.unwrap();
    let back = a.try_lead("node-a", lease).await.unwrap();
    assert!(back.leader && back.elected);
    assert_eq!(back.epoch, 3);

    let elections: Vec<_> = a
        .history(&HistoryFilter::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.event == "leader-elected")
        .map(|r| (r.detail["holder"].clone(), r.detail["epoch"].clone()))
        .collect();
    assert_eq!(
        elections,
        vec![
            (serde_json::json!("node-a"), serde_json::json!(1)),
            (serde_json::json!("node-b"), serde_json::json!(2)),
            (serde_json::json!("node-a"), serde_json::json!(3)),
        ]
    );
    assert!(a.verify_history().await.unwrap().is_ok());
    b.close().await;
}

#[tokio::test]
async fn a_leader_whose_epoch_ended_records_no_batch() {
    let Some(db) = postgres().await else { return };
    let a = db.store.clone();
    let b = db.second_handle().await;
    let lease = Duration::from_millis(500);

    let led = a.try_lead("node-a", lease).await.unwrap();
    a.set_fence(Some(("node-a".into(), led.epoch)));
    a.commit(note(1))
        .await
        .expect("the leader records its batch");

    // Paused past its lease: the batch is refused even before anyone else takes over.
    tokio::time::sleep(lease + Duration::from_millis(200)).await;
    let err = a.commit(note(2)).await.unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
    assert!(err.to_string().contains("run out"), "{err}");

    let took = b.try_lead("node-b", lease).await.unwrap();
    assert_eq!(took.epoch, led.epoch + 1);
    let err = a.commit(note(3)).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Fenced { holder, epoch, .. } if holder == "node-b" && *epoch == took.epoch),
        "{err}"
    );
    // A standby records no batch either.
    b.set_fence(None);
    assert!(matches!(
        b.commit(note(4)).await,
        Err(StoreError::Fenced { .. })
    ));
    b.set_fence(Some(("node-b".into(), took.epoch)));
    b.commit(note(5))
        .await
        .expect("the new leader records its batch");

    let notes: Vec<_> = a
        .history(&HistoryFilter::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.event == "drift")
        .map(|r| r.detail["n"].clone())
        .collect();
    assert_eq!(notes, vec![serde_json::json!(1), serde_json::json!(5)]);
    b.close().await;
}

#[tokio::test]
async fn a_grant_stored_by_one_daemon_wakes_the_others() {
    let Some(db) = postgres().await else { return };
    let standby = db.second_handle().await;
    let mut listener = db.store.listen_for_work().await.unwrap();
    standby
        .insert_grant(&GrantBuilder::new(1).build(), None)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), listener.next())
        .await
        .expect("woken within 5 s")
        .unwrap();
    standby.close().await;
}

#[tokio::test]
async fn a_postgres_url_without_a_server_or_schema_is_named() {
    // An unreachable server: the error names the URL without its password.
    let err = lapse_store::Store::open_postgres(
        "postgres://lapse:s3cret@127.0.0.1:1/lapse",
        None,
        lapse_store::OpenMode::Create,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("postgres://lapse@127.0.0.1:1/lapse"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    assert!(err.contains("database.url"), "{err}");

    // A reachable database without lapse's schema is not created by a check.
    let Some(scratch) = lapse_store::scratch::ScratchDb::create().await else {
        return;
    };
    let err =
        lapse_store::Store::open_postgres(scratch.url(), None, lapse_store::OpenMode::Existing)
            .await
            .unwrap_err();
    assert!(matches!(err, StoreError::NoSchema { .. }), "{err}");
}

#[tokio::test]
async fn a_standbys_revocation_and_extension_survive_the_leaders_older_copy() {
    let Some(db) = postgres().await else { return };
    let leader = &db.store;
    let standby = db.second_handle().await;
    leader.set_fence(None);
    let lease = leader.try_lead("a", Duration::from_secs(30)).await.unwrap();
    leader.set_fence(Some(("a".into(), lease.epoch)));
    let g = GrantBuilder::new(1).build();
    let id = g.id;
    leader.insert_grant(&g, None).await.unwrap();
    let held = leader.get_grant(id).await.unwrap().unwrap();
    let mut listener = leader.listen_for_work().await.unwrap();

    // The standby ends it early and moves its end, each with its history row.
    let now = Utc::now();
    let later = held.expires_at + chrono::Duration::hours(1);
    let changed = standby
        .change_grant(id, |stored| {
            let mut s = stored.expect("stored");
            s.expires_at = later;
            let row = NewHistory {
                at: now,
                grant_id: Some(id),
                actor: "ann".into(),
                event: "extended".into(),
                detail: serde_json::json!({}),
            };
            Ok::<_, ()>(GrantChange::Changed(s, row))
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(changed.expires_at, later);
    standby
        .change_grant(id, |stored| {
            let mut s = stored.expect("stored");
            s.revoked_at = Some(now);
            s.revoke_reason = Some("done".into());
            let row = NewHistory {
                at: now,
                grant_id: Some(id),
                actor: "ann".into(),
                event: "revoke-requested".into(),
                detail: serde_json::json!({}),
            };
            Ok::<_, ()>(GrantChange::Changed(s, row))
        })
        .await
        .unwrap()
        .unwrap();
    // A refusal writes nothing.
    let refused = standby
        .change_grant(id, |_| Err::<GrantChange, _>("no"))
        .await
        .unwrap();
    assert_eq!(refused.unwrap_err(), "no");
    tokio::time::timeout(Duration::from_secs(5), listener.next())
        .await
        .expect("the leader is woken")
        .unwrap();

    // The leader, still holding its older copy, records a state change: the standby's
    // revocation and later end stand.
    let mut stale = held.clone();
    stale.state = GrantState::Active;
    leader
        .commit(Batch {
            grants: vec![stale],
            ..Batch::default()
        })
        .await
        .unwrap();
    let now_stored = leader.get_grant(id).await.unwrap().unwrap();
    assert_eq!(now_stored.state, GrantState::Active);
    assert_eq!(now_stored.revoke_reason.as_deref(), Some("done"));
    assert!(now_stored.revoked_at.is_some());
    assert_eq!(now_stored.expires_at, later);

    // And the leader finds both changes in the history.
    let seen: Vec<_> = leader
        .grants_changed_after(0, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, g)| g)
        .collect();
    assert_eq!(
        seen,
        vec![Some(id), Some(id), Some(id)],
        "created, extended, revoke-requested"
    );
    assert!(leader.verify_history().await.unwrap().is_ok());
    standby.close().await;
}

#[tokio::test]
async fn a_history_row_naming_no_readable_grant_is_returned_so_the_leader_can_move_past_it() {
    let Some(db) = postgres().await else { return };
    let g = GrantBuilder::new(1).build();
    db.store.insert_grant(&g, None).await.unwrap();
    let head = db.store.history_head_seq().await.unwrap();
    let mut raw = db.raw().await;
    for (seq, grant) in [(head + 100, "'not-a-grant'"), (head + 101, "NULL")] {
        raw.exec(
            &format!(
                "INSERT INTO history (seq, at, grant_id, actor, event, detail, prev_hash, hash) \
                 VALUES (?, '2026-01-01T00:00:00Z', {grant}, 'x', 'created', '{{}}', '', '')"
            ),
            &[V::I(seq)],
        )
        .await
        .unwrap();
    }
    raw.close().await;
    let rows = db.store.grants_changed_after(0, 10).await.unwrap();
    assert_eq!(
        rows,
        vec![(head, Some(g.id)), (head + 100, None), (head + 101, None)]
    );
    // A page is as long as the rows read, so that a reader asks for the next one.
    assert_eq!(
        db.store.grants_changed_after(head, 1).await.unwrap().len(),
        1
    );
}
