//! Group commit: concurrent submissions share transactions, every caller gets its own answer.

use lapse_store::{GrantFilter, GrantInserter, Idempotency, Inserted, StoreError};

use crate::fixture::{GrantBuilder, TestDb, backends};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_inserts_are_all_stored_and_answered() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        let inserter = GrantInserter::spawn(db.store.clone());
        let mut tasks = Vec::new();
        for n in 0..300u128 {
            let ins = inserter.clone();
            let g = GrantBuilder::new(n + 1).build();
            tasks.push(tokio::spawn(async move {
                (g.id, ins.insert(g, None, "admin").await)
            }));
        }
        for t in tasks {
            let (id, result) = t.await.expect("task");
            match result.expect("stored") {
                Inserted::Created(g) => assert_eq!(g.id, id),
                Inserted::Existing(_) => panic!("a fresh grant came back as existing"),
            }
        }
        let stored = db
            .store
            .list_grants(&GrantFilter {
                limit: Some(1000),
                ..GrantFilter::default()
            })
            .await
            .expect("list");
        assert_eq!(stored.len(), 300);
        // Every insert wrote its history row, chained.
        let report = db.store.verify_history().await.expect("verify");
        assert!(report.is_ok());
        assert_eq!(report.rows_checked, 300);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_item_does_not_sink_its_batch() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        let inserter = GrantInserter::spawn(db.store.clone());
        let idem = |hash: &str| {
            Some(Idempotency {
                key: "k".into(),
                request_hash: hash.into(),
            })
        };
        let first = GrantBuilder::new(1).build();
        inserter
            .insert(first.clone(), idem("a"), "admin")
            .await
            .expect("first");
        let (same, other, fresh) = tokio::join!(
            inserter.insert(GrantBuilder::new(2).build(), idem("a"), "admin"),
            inserter.insert(GrantBuilder::new(3).build(), idem("b"), "admin"),
            inserter.insert(GrantBuilder::new(4).build(), None, "admin"),
        );
        assert_eq!(
            same.expect("replay").grant().id,
            first.id,
            "same key and body: the first grant"
        );
        assert!(matches!(other, Err(StoreError::IdempotencyConflict { .. })));
        assert!(fresh.expect("fresh").is_created());
    }
}
