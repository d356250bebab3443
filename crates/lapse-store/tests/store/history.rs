//! The history: append-only, hash-chained, filterable, and verification that names the broken row.

use chrono::Duration;
use lapse_core::GrantKind;
use lapse_store::{Batch, GENESIS_HASH, HistoryFilter, NewHistory, Role, history_hash};
use serde_json::json;
use sqlx::Connection;

use crate::fixture::{GrantBuilder, TestDb, raw, resource, t0, user};

/// A store with a real mixed history: grants, engine events and a token. Returns the row count.
async fn populate(db: &TestDb) -> i64 {
    for n in 0..4u32 {
        let g = GrantBuilder::new(u128::from(n))
            .created_plus(i64::from(n) * 60)
            .kind(
                GrantKind::EphemeralGroup,
                vec![user(n)],
                vec![resource(&format!("res{n}"))],
            )
            .build();
        db.store
            .insert_grant(&g, None)
            .await
            .expect("populating the history");
        db.store
            .commit(Batch {
                history: vec![NewHistory {
                    at: g.created_at + Duration::seconds(1),
                    grant_id: Some(g.id),
                    actor: "lapse".into(),
                    event: "active".into(),
                    detail: json!({ "note": "applied" }),
                }],
                ..Default::default()
            })
            .await
            .expect("populating the history");
    }
    db.store
        .create_token("auditor-1", Role::Auditor)
        .await
        .expect("populating the history");
    9
}

#[tokio::test]
async fn the_chain_links_every_row_and_verifies() {
    let db = TestDb::new().await;
    let n = populate(&db).await;
    let rows = db.store.history(&HistoryFilter::default()).await.unwrap();
    assert_eq!(rows.len() as i64, n);
    assert_eq!(rows[0].prev_hash, GENESIS_HASH);
    for (i, pair) in rows.windows(2).enumerate() {
        assert_eq!(pair[0].seq, i as i64 + 1);
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
    let report = db.store.verify_history().await.unwrap();
    assert_eq!(report.rows_checked, n as u64);
    assert_eq!(report.first_broken, None);
}

#[tokio::test]
async fn an_empty_history_verifies() {
    let db = TestDb::new().await;
    let report = db.store.verify_history().await.unwrap();
    assert_eq!(report.rows_checked, 0);
    assert!(report.is_ok());
}

#[tokio::test]
async fn triggers_refuse_update_and_delete() {
    let db = TestDb::new().await;
    populate(&db).await;
    let mut conn = raw(&db.path()).await;
    let err = sqlx::query("UPDATE history SET actor = 'someone-else' WHERE seq = 2")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("history is append-only"), "{err}");
    let err = sqlx::query("DELETE FROM history WHERE seq = 2")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("history is append-only"), "{err}");
    conn.close().await.unwrap();
    assert!(db.store.verify_history().await.unwrap().is_ok());
}

#[tokio::test]
async fn verify_names_the_row_altered_behind_the_triggers() {
    let db = TestDb::new().await;
    let n = populate(&db).await;
    let mut conn = raw(&db.path()).await;
    sqlx::query("DROP TRIGGER history_no_update")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("UPDATE history SET detail = '{\"note\":\"nothing happened\"}' WHERE seq = 4")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    let report = db.store.verify_history().await.unwrap();
    assert_eq!(report.rows_checked, n as u64);
    let broken = report.first_broken.unwrap();
    assert_eq!(broken.seq, 4);
    assert!(broken.reason.contains("altered"), "{}", broken.reason);
}

#[tokio::test]
async fn verify_names_the_row_after_a_rehashed_edit() {
    // Someone who edits a row and recomputes its hash still breaks the next row's link.
    let db = TestDb::new().await;
    populate(&db).await;
    let rows = db.store.history(&HistoryFilter::default()).await.unwrap();
    let r = &rows[2];
    let at = lapse_store::format_ts(r.at);
    let grant = r.grant_id.map(|g| g.to_string());
    let forged = history_hash(
        &r.prev_hash,
        r.seq,
        &at,
        grant.as_deref(),
        "mallory",
        &r.event,
        "{}",
    );
    let mut conn = raw(&db.path()).await;
    sqlx::query("DROP TRIGGER history_no_update")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("UPDATE history SET actor = 'mallory', detail = '{}', hash = ? WHERE seq = ?")
        .bind(&forged)
        .bind(r.seq)
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    let broken = db
        .store
        .verify_history()
        .await
        .unwrap()
        .first_broken
        .unwrap();
    assert_eq!(broken.seq, r.seq + 1);
    assert!(broken.reason.contains("prev_hash"), "{}", broken.reason);
}

#[tokio::test]
async fn verify_names_the_row_after_a_deleted_one() {
    let db = TestDb::new().await;
    populate(&db).await;
    let mut conn = raw(&db.path()).await;
    sqlx::query("DROP TRIGGER history_no_delete")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("DELETE FROM history WHERE seq = 5")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    let broken = db
        .store
        .verify_history()
        .await
        .unwrap()
        .first_broken
        .unwrap();
    assert_eq!(broken.seq, 6);
    assert!(broken.reason.contains("missing"), "{}", broken.reason);
}

#[tokio::test]
async fn concurrent_writers_never_fork_the_chain() {
    let db = TestDb::new().await;
    let mut tasks = Vec::new();
    for n in 0..40u128 {
        let store = db.store.clone();
        tasks.push(tokio::spawn(async move {
            let g = GrantBuilder::new(n).build();
            store.insert_grant(&g, None).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rows = db.store.history(&HistoryFilter::default()).await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=40).collect::<Vec<_>>()
    );
    assert!(db.store.verify_history().await.unwrap().is_ok());
}

#[tokio::test]
async fn filters_by_grant_user_resource_and_time() {
    let db = TestDb::new().await;
    populate(&db).await;
    let all = db.store.history(&HistoryFilter::default()).await.unwrap();
    let seqs =
        |rows: Vec<lapse_store::HistoryRow>| rows.into_iter().map(|r| r.seq).collect::<Vec<_>>();

    let by_user = HistoryFilter {
        user: Some("USER2@example.com".into()),
        ..Default::default()
    };
    assert_eq!(seqs(db.store.history(&by_user).await.unwrap()), vec![5, 6]);
    let by_resource = HistoryFilter {
        resource: Some("res3".into()),
        ..Default::default()
    };
    assert_eq!(
        seqs(db.store.history(&by_resource).await.unwrap()),
        vec![7, 8]
    );
    let by_grant = HistoryFilter {
        grant: all[0].grant_id,
        ..Default::default()
    };
    assert_eq!(seqs(db.store.history(&by_grant).await.unwrap()), vec![1, 2]);

    // Grants were created a minute apart: [since, until) picks the second grant's rows.
    let window = HistoryFilter {
        since: Some(t0() + Duration::seconds(60)),
        until: Some(t0() + Duration::seconds(120)),
        ..Default::default()
    };
    assert_eq!(seqs(db.store.history(&window).await.unwrap()), vec![3, 4]);
    let limited = HistoryFilter {
        limit: Some(3),
        ..Default::default()
    };
    assert_eq!(
        seqs(db.store.history(&limited).await.unwrap()),
        vec![1, 2, 3]
    );
}

#[test]
fn the_hash_encoding_has_no_ambiguous_boundaries() {
    let base = history_hash(
        GENESIS_HASH,
        1,
        "2030-01-01T00:00:00.000000Z",
        None,
        "ab",
        "c",
        "{}",
    );
    assert_eq!(base.len(), 64);
    let shifted = history_hash(
        GENESIS_HASH,
        1,
        "2030-01-01T00:00:00.000000Z",
        None,
        "a",
        "bc",
        "{}",
    );
    assert_ne!(base, shifted);
    let empty_grant = history_hash(
        GENESIS_HASH,
        1,
        "2030-01-01T00:00:00.000000Z",
        Some(""),
        "ab",
        "c",
        "{}",
    );
    assert_ne!(base, empty_grant);
    let other_seq = history_hash(
        GENESIS_HASH,
        2,
        "2030-01-01T00:00:00.000000Z",
        None,
        "ab",
        "c",
        "{}",
    );
    assert_ne!(base, other_seq);
    // Stable across builds: a chain written by one release verifies in the next.
    assert_eq!(
        base,
        history_hash(
            GENESIS_HASH,
            1,
            "2030-01-01T00:00:00.000000Z",
            None,
            "ab",
            "c",
            "{}"
        )
    );
}

#[tokio::test]
async fn an_unknown_event_is_refused_on_write_and_on_read() {
    let db = TestDb::new().await;
    let n = populate(&db).await;
    let refused = db
        .store
        .commit(Batch {
            history: vec![NewHistory {
                at: t0(),
                grant_id: None,
                actor: "lapse".into(),
                event: "activated".into(),
                detail: json!({}),
            }],
            ..Default::default()
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("unknown history event `activated`"),
        "{refused}"
    );
    assert_eq!(
        db.store.last_history_seq().await.unwrap(),
        n,
        "nothing was written"
    );

    // A row renamed behind the triggers is refused when read, naming the row.
    let mut conn = raw(&db.path()).await;
    sqlx::query("DROP TRIGGER history_no_update")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("UPDATE history SET event = 'activated' WHERE seq = 2")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let err = db
        .store
        .history(&HistoryFilter::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("history.event") && err.contains("(row 2) activated"),
        "{err}"
    );
}
