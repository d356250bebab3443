//! API tokens: shown once, stored as a hash only.

use lapse_store::{HistoryFilter, Role, StoreError, TokenInfo};

use crate::fixture::TestDb;

#[tokio::test]
async fn a_token_authenticates_and_only_its_hash_is_stored() {
    let db = TestDb::new().await;
    let token = db.store.create_token("ci", Role::Operator).await.unwrap();
    let random = token.strip_prefix("lapse_").unwrap();
    assert_eq!(random.len(), 40);
    assert!(random.chars().all(|c| c.is_ascii_alphanumeric()));

    assert_eq!(
        db.store.authenticate(&token).await.unwrap(),
        Some(TokenInfo {
            name: "ci".into(),
            role: Role::Operator
        })
    );
    assert_eq!(db.store.authenticate("lapse_wrong").await.unwrap(), None);
    assert_eq!(db.store.authenticate("").await.unwrap(), None);

    let history = db.store.history(&HistoryFilter::default()).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].actor, "local-admin");
    assert_eq!(history[0].event, "token-created");
    assert_eq!(history[0].grant_id, None);
    assert_eq!(history[0].detail["name"], "ci");

    // Look in every file SQLite may have written, with the store still open and after close.
    let needle = token.as_bytes();
    let scan = |dir: &std::path::Path| {
        for entry in std::fs::read_dir(dir).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "token found on disk"
            );
        }
    };
    scan(db.dir.path());
    db.store.close().await;
    scan(db.dir.path());
}

#[tokio::test]
async fn names_are_unique_and_tokens_can_be_listed_and_revoked() {
    let db = TestDb::new().await;
    let admin = db.store.create_token("root", Role::Admin).await.unwrap();
    let auditor = db.store.create_token("audit", Role::Auditor).await.unwrap();
    assert_ne!(admin, auditor);
    let err = db
        .store
        .create_token("root", Role::Auditor)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::TokenNameTaken { name } if name == "root"),
        "{err:?}"
    );

    let list = db.store.list_tokens().await.unwrap();
    assert_eq!(
        list.iter()
            .map(|t| (t.name.as_str(), t.role))
            .collect::<Vec<_>>(),
        [
            ("root", lapse_core::Role::Admin),
            ("audit", lapse_core::Role::Auditor)
        ]
    );
    assert!(list.iter().all(|t| t.revoked_at.is_none()));

    assert!(db.store.revoke_token("audit", "root").await.unwrap());
    assert!(!db.store.revoke_token("audit", "root").await.unwrap());
    assert_eq!(db.store.authenticate(&auditor).await.unwrap(), None);
    assert!(db.store.authenticate(&admin).await.unwrap().is_some());
    let events: Vec<String> = db
        .store
        .history(&HistoryFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.event)
        .collect();
    assert_eq!(events, ["token-created", "token-created", "token-revoked"]);
    assert!(db.store.verify_history().await.unwrap().is_ok());
}
