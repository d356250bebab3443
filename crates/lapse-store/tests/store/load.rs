//! Start-up load: 100,000 open grants read back in one call.

use std::time::Instant;

use lapse_core::{GrantKind, GrantState};
use lapse_store::Batch;

use crate::fixture::{GrantBuilder, TestDb, backends, resource, user};

const OPEN: u32 = 100_000;
const BATCH: u32 = 2_000;

#[tokio::test]
async fn loads_a_hundred_thousand_open_grants() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        let started = Instant::now();
        for chunk in 0..OPEN / BATCH {
            let items = (0..BATCH)
                .map(|i| {
                    let n = chunk * BATCH + i;
                    let g = GrantBuilder::new(u128::from(n))
                        .created_plus(i64::from(n))
                        .kind(
                            GrantKind::EphemeralGroup,
                            vec![user(n % 500)],
                            vec![resource("prod-db")],
                        )
                        .build();
                    (g, None)
                })
                .collect();
            let results = db.store.insert_grants(items).await.unwrap();
            assert!(results.iter().all(|r| r.is_ok()));
        }
        println!("inserted {OPEN} grants in {:?}", started.elapsed());

        // A few finished grants that must not be loaded.
        let mut done = GrantBuilder::new(u128::from(OPEN) + 1)
            .created_plus(-10)
            .build();
        db.store.insert_grant(&done, None).await.unwrap();
        done.state = GrantState::Expired;
        db.store
            .commit(Batch {
                grants: vec![done.clone()],
                ..Default::default()
            })
            .await
            .unwrap();

        let started = Instant::now();
        let open = db.store.load_open_grants().await.unwrap();
        let took = started.elapsed();
        println!("load_open_grants: {} grants in {took:?}", open.len());
        assert_eq!(open.len(), OPEN as usize);
        assert!(open.iter().all(|g| g.id != done.id));
        assert!(open.windows(2).all(|w| w[0].id < w[1].id));
    }
}
