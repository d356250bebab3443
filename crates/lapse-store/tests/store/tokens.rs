//! API tokens: shown once, stored as a hash only.

use chrono::{DateTime, Duration, Utc};
use lapse_core::Role as CoreRole;
use lapse_store::{
    AuthRefusal, GENESIS_HASH, HistoryFilter, NewToken, Role, Store, StoreError, TokenInfo,
    history_hash,
};
use sha2::{Digest, Sha256};
use sqlx::Connection;

use crate::fixture::{Kind, TestDb, V, backends};

#[tokio::test]
async fn a_token_authenticates_and_only_its_hash_is_stored() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
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
}

#[tokio::test]
async fn names_are_unique_and_tokens_can_be_listed_and_revoked() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
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
}

async fn events(store: &Store) -> Vec<String> {
    store
        .history(&HistoryFilter::default())
        .await
        .expect("reading the history")
        .into_iter()
        .map(|h| h.event)
        .collect()
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn new_token(name: &str, role: CoreRole, expires_at: DateTime<Utc>) -> NewToken {
    NewToken {
        name: name.into(),
        role,
        identity: Some(" Alice@Example.com ".into()),
        expires_at,
        actor: "root".into(),
    }
}

#[tokio::test]
async fn check_token_refuses_unknown_revoked_and_expired_tokens_by_type() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        let now = Utc::now();
        let token = db
            .store
            .create_token_with(
                &new_token("alice", CoreRole::Requester, now + Duration::hours(1)),
                now,
            )
            .await
            .unwrap();

        let valid = db.store.check_token(&token, now).await.unwrap().unwrap();
        assert_eq!(valid.name, "alice");
        assert_eq!(valid.role, CoreRole::Requester);
        assert_eq!(valid.identity.as_deref(), Some("alice@example.com"));
        // One role type: the plain lookup reads a requester as a requester.
        assert_eq!(
            db.store.authenticate(&token).await.unwrap().map(|t| t.role),
            Some(CoreRole::Requester)
        );

        assert_eq!(
            db.store.check_token("lapse_nope", now).await.unwrap(),
            Err(AuthRefusal::Unknown)
        );
        let later = now + Duration::hours(2);
        assert!(matches!(
            db.store.check_token(&token, later).await.unwrap(),
            Err(AuthRefusal::Expired { name, .. }) if name == "alice"
        ));

        assert!(db.store.revoke_token("alice", "root").await.unwrap());
        let refusal = db
            .store
            .check_token(&token, now)
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(&refusal, AuthRefusal::Revoked { name, .. } if name == "alice"),
            "{refusal:?}"
        );
        assert!(!refusal.to_string().contains(&token));

        let events: Vec<(String, String)> = db
            .store
            .history(&HistoryFilter::default())
            .await
            .unwrap()
            .into_iter()
            .map(|h| (h.event, h.actor))
            .collect();
        assert_eq!(
            events,
            [
                ("token-created".to_owned(), "root".to_owned()),
                ("token-revoked".to_owned(), "root".to_owned())
            ]
        );
    }
}

#[tokio::test]
async fn creation_refuses_a_past_expiry_and_bad_names() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        let now = Utc::now();
        let err = db
            .store
            .create_token_with(&new_token("ci", CoreRole::Operator, now), now)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::TokenExpiry { .. }), "{err:?}");
        assert!(err.to_string().starts_with("expires_at:"), "{err}");

        let mut bad = new_token("ci\nadmin", CoreRole::Operator, now + Duration::days(1));
        let err = db.store.create_token_with(&bad, now).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("name: contains the control character U+000A"),
            "{err}"
        );
        bad.name = "ci".into();
        bad.identity = Some("x".repeat(129));
        let err = db.store.create_token_with(&bad, now).await.unwrap_err();
        assert!(
            err.to_string().starts_with("identity: is 129 characters"),
            "{err}"
        );
        // Nothing was written.
        assert!(db.store.list_tokens().await.unwrap().is_empty());
        assert!(
            db.store
                .history(&HistoryFilter::default())
                .await
                .unwrap()
                .is_empty()
        );
    }
}

#[tokio::test]
async fn the_creation_event_binds_the_row_without_revealing_the_token() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        let now = Utc::now();
        let expires = now + Duration::days(30);
        let token = db
            .store
            .create_token_with(&new_token("ci", CoreRole::Operator, expires), now)
            .await
            .unwrap();
        let row = &db.store.history(&HistoryFilter::default()).await.unwrap()[0];
        assert_eq!(row.detail["name"], "ci");
        assert_eq!(row.detail["role"], "operator");
        assert_eq!(row.detail["identity"], "alice@example.com");
        assert_eq!(row.detail["expires_at"], lapse_store::format_ts(expires));
        // The SHA-256 of the stored hash: neither the token nor its lookup key.
        assert_eq!(row.detail["token_sha256"], sha256_hex(&sha256_hex(&token)));
        let text = row.detail.to_string();
        assert!(!text.contains(&token) && !text.contains(&sha256_hex(&token)));

        let listed = &db.store.list_tokens().await.unwrap()[0];
        assert_eq!(
            listed.expires_at,
            lapse_store::parse_ts("t", &lapse_store::format_ts(expires)).unwrap()
        );
        assert_eq!(listed.identity.as_deref(), Some("alice@example.com"));
        assert_eq!(listed.last_used_at, None);
    }
}

#[tokio::test]
async fn rows_inserted_or_altered_by_hand_are_refused() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        let now = Utc::now();
        let genuine = db
            .store
            .create_token_with(
                &new_token("ci", CoreRole::Operator, now + Duration::days(1)),
                now,
            )
            .await
            .unwrap();
        let mut conn = db.raw().await;
        let far = "2099-01-01T00:00:00.000000Z";
        // A row with no creation event, and one that borrows the genuine token's event.
        for (name, token, seq) in [
            ("forged", "lapse_forged", None),
            ("borrow", "lapse_borrow", Some(1)),
        ] {
            conn.exec(
            "INSERT INTO api_tokens (name, role, token_hash, created_at, expires_at, created_seq) \
             VALUES (?, 'admin', ?, ?, ?, ?)",
            &[
                V::S(name),
                V::S(&sha256_hex(token)),
                V::S(far),
                V::S(far),
                V::OptI(seq),
            ],
        )
        .await
        .unwrap();
        }
        conn.close().await;
        for (name, token) in [("forged", "lapse_forged"), ("borrow", "lapse_borrow")] {
            assert_eq!(
                db.store.check_token(token, now).await.unwrap(),
                Err(AuthRefusal::Unrecorded { name: name.into() })
            );
            assert_eq!(db.store.authenticate(token).await.unwrap(), None);
        }
        assert!(db.store.check_token(&genuine, now).await.unwrap().is_ok());

        // The same through the sqlite3 shell: raising the genuine token's role, or its expiry.
        for edit in [
            "UPDATE api_tokens SET role = 'admin' WHERE name = 'ci';",
            "UPDATE api_tokens SET role = 'operator', expires_at = '2099-01-01T00:00:00.000000Z' WHERE name = 'ci';",
        ] {
            if db.kind == Kind::Postgres {
                let mut conn = db.raw().await;
                conn.exec(edit.trim_end_matches(';'), &[]).await.unwrap();
                conn.close().await;
            } else {
                let out = std::process::Command::new("sqlite3")
                    .arg(db.path())
                    .arg(edit)
                    .output()
                    .expect("the sqlite3 shell runs");
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            assert_eq!(
                db.store.check_token(&genuine, now).await.unwrap(),
                Err(AuthRefusal::Unrecorded { name: "ci".into() })
            );
        }
    }
}

#[tokio::test]
async fn last_use_is_noted_at_most_once_a_minute() {
    for kind in backends() {
        let db = TestDb::open(kind).await;
        let now = Utc::now();
        let token = db
            .store
            .create_token_with(
                &new_token("ci", CoreRole::Operator, now + Duration::days(1)),
                now,
            )
            .await
            .unwrap();
        let last_used = || async { db.store.list_tokens().await.unwrap()[0].last_used_at };
        let t1 = now + Duration::seconds(5);
        db.store.check_token(&token, t1).await.unwrap().unwrap();
        let stored = |t| lapse_store::parse_ts("t", &lapse_store::format_ts(t)).unwrap();
        assert_eq!(last_used().await, Some(stored(t1)));
        db.store
            .check_token(&token, t1 + Duration::seconds(59))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(last_used().await, Some(stored(t1)));
        let t2 = t1 + Duration::seconds(60);
        db.store.check_token(&token, t2).await.unwrap().unwrap();
        assert_eq!(last_used().await, Some(stored(t2)));
        // A refused token is not noted.
        db.store.revoke_token("ci", "root").await.unwrap();
        let t3 = t2 + Duration::minutes(5);
        assert!(db.store.check_token(&token, t3).await.unwrap().is_err());
        assert_eq!(last_used().await, Some(stored(t2)));
    }
}

#[tokio::test]
async fn tokens_from_before_the_expiry_migration_still_work_and_are_bound_once() {
    // A database as 0001 and 0002 left it, with one token made then and one inserted by hand.
    let dir = tempfile::tempdir().unwrap();
    let migrations = dir.path().join("migrations");
    std::fs::create_dir(&migrations).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    for f in ["0001_init.sql", "0002_requests.sql"] {
        std::fs::copy(root.join(f), migrations.join(f)).unwrap();
    }
    let path = dir.path().join("lapse.db");
    let mut conn = sqlx::sqlite::SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal),
    )
    .await
    .unwrap();
    sqlx::migrate::Migrator::new(migrations.as_path())
        .await
        .unwrap()
        .run(&mut conn)
        .await
        .unwrap();
    let at = "2026-01-01T00:00:00.000000Z";
    let detail = r#"{"name":"old-admin","role":"admin"}"#;
    let hash = history_hash(
        GENESIS_HASH,
        1,
        at,
        None,
        "local-admin",
        "token-created",
        detail,
    );
    sqlx::query(
        "INSERT INTO history (seq, at, grant_id, actor, event, detail, prev_hash, hash) \
         VALUES (1, ?, NULL, 'local-admin', 'token-created', ?, ?, ?)",
    )
    .bind(at)
    .bind(detail)
    .bind(GENESIS_HASH)
    .bind(&hash)
    .execute(&mut conn)
    .await
    .unwrap();
    for (name, token) in [("old-admin", "lapse_old"), ("sneaky", "lapse_sneaky")] {
        sqlx::query(
            "INSERT INTO api_tokens (name, role, token_hash, created_at) VALUES (?, 'admin', ?, ?)",
        )
        .bind(name)
        .bind(sha256_hex(token))
        .bind(at)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    conn.close().await.unwrap();

    let store = Store::open(&path).await.unwrap();
    assert_eq!(
        store.authenticate("lapse_old").await.unwrap(),
        Some(TokenInfo {
            name: "old-admin".into(),
            role: Role::Admin
        })
    );
    assert_eq!(
        store.check_token("lapse_sneaky", Utc::now()).await.unwrap(),
        Err(AuthRefusal::Unrecorded {
            name: "sneaky".into()
        })
    );
    let listed = store.list_tokens().await.unwrap();
    let days = (listed[0].expires_at - Utc::now()).num_days();
    assert!((89..=90).contains(&days), "{days}");
    assert_eq!(events(&store).await, ["token-created", "token-bound"]);
    assert!(store.verify_history().await.unwrap().is_ok());
    store.close().await;

    // Binding happens once: a second open adds nothing, and the token still works.
    let store = Store::open(&path).await.unwrap();
    assert_eq!(events(&store).await, ["token-created", "token-bound"]);
    assert!(store.authenticate("lapse_old").await.unwrap().is_some());
}
