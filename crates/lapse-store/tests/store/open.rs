//! Opening: settings read back and enforced, migrations run once and never silently changed.

use lapse_store::{OpenMode, Pragmas, Store, StoreError};
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};

use crate::fixture::{GrantBuilder, TestDb, raw};

#[tokio::test]
async fn open_creates_the_file_and_reads_back_its_settings() {
    let db = TestDb::new().await;
    assert!(db.path().exists());
    assert_eq!(db.store.path(), Some(db.path().as_path()));
    let p = db.store.pragmas().expect("SQLite settings");
    assert_eq!(p.journal_mode, "wal");
    assert_eq!(p.synchronous, 2);
    assert_eq!(p.foreign_keys, 1);
    assert_eq!(p.busy_timeout_ms, 5000);
    assert_eq!(p.cache_kib, lapse_store::PAGE_CACHE_KIB);
    db.store.check_writable().await.unwrap();
}

#[tokio::test]
async fn readback_reports_a_delete_mode_database_and_open_switches_it_to_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let mut conn = SqliteConnection::connect_with(
        &SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Delete)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(false),
    )
    .await
    .unwrap();
    let found = Pragmas::read(&mut conn).await.unwrap();
    assert_eq!(found.journal_mode, "delete");
    assert_eq!(found.synchronous, 1);
    assert_eq!(found.foreign_keys, 0);
    match found.check() {
        Err(StoreError::UntrustedDatabase {
            what,
            found,
            expected,
        }) => {
            assert_eq!(what, "journal_mode");
            assert_eq!(found, "delete");
            assert_eq!(expected, "wal");
        }
        other => panic!("expected UntrustedDatabase, got {other:?}"),
    }
    conn.close().await.unwrap();

    let store = Store::open(&path).await.unwrap();
    assert_eq!(
        store.pragmas().expect("SQLite settings").journal_mode,
        "wal"
    );
    store.close().await;

    // The mode is now recorded in the file itself.
    let mut conn = raw(&path).await;
    assert_eq!(Pragmas::read(&mut conn).await.unwrap().journal_mode, "wal");
}

#[tokio::test]
async fn check_names_each_setting_it_refuses() {
    let good = Pragmas {
        journal_mode: "wal".into(),
        synchronous: 2,
        foreign_keys: 1,
        busy_timeout_ms: 5000,
        cache_kib: lapse_store::PAGE_CACHE_KIB,
    };
    good.check().unwrap();
    let sync = Pragmas {
        synchronous: 1,
        ..good.clone()
    };
    assert!(matches!(
        sync.check(),
        Err(StoreError::UntrustedDatabase {
            what: "synchronous",
            ..
        })
    ));
    let fk = Pragmas {
        foreign_keys: 0,
        ..good
    };
    assert!(matches!(
        fk.check(),
        Err(StoreError::UntrustedDatabase {
            what: "foreign_keys",
            ..
        })
    ));
}

async fn migration_rows(path: &std::path::Path) -> Vec<(i64, String)> {
    let mut conn = raw(path).await;
    sqlx::query_as("SELECT version, installed_on FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&mut conn)
        .await
        .expect("reading _sqlx_migrations")
}

#[tokio::test]
async fn reopening_runs_no_migration_twice_and_keeps_data() {
    let db = TestDb::new().await;
    let grant = GrantBuilder::new(1).build();
    db.store.insert_grant(&grant, None).await.unwrap();
    db.store.close().await;
    let before = migration_rows(&db.path()).await;
    assert!(!before.is_empty());

    let store = Store::open(&db.path()).await.unwrap();
    assert_eq!(store.get_grant(grant.id).await.unwrap(), Some(grant));
    store.close().await;
    assert_eq!(migration_rows(&db.path()).await, before);
}

#[tokio::test]
async fn a_changed_migration_checksum_is_refused() {
    let db = TestDb::new().await;
    db.store
        .insert_grant(&GrantBuilder::new(1).build(), None)
        .await
        .unwrap();
    db.store.close().await;
    let copy = db.dir.path().join("edited.db");
    std::fs::copy(db.path(), &copy).unwrap();

    let mut conn = raw(&copy).await;
    sqlx::query("UPDATE _sqlx_migrations SET checksum = X'00' WHERE version = 1")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    let err = Store::open(&copy).await.unwrap_err();
    assert!(
        matches!(err, StoreError::MigrationChanged { version: 1, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("different build") && msg.contains("must not be edited"),
        "{msg}"
    );

    // The untouched original still opens.
    Store::open(&db.path()).await.unwrap().close().await;
}

#[tokio::test]
async fn an_applied_migration_unknown_to_this_build_is_refused() {
    let db = TestDb::new().await;
    db.store.close().await;
    let mut conn = raw(&db.path()).await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from the future', 1, X'01', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();

    let err = Store::open(&db.path()).await.unwrap_err();
    assert!(
        matches!(err, StoreError::MigrationChanged { version: 9999, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn opening_an_existing_database_never_creates_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state").join("lapse.db");
    let err = Store::open_with(&path, OpenMode::Existing)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Missing { path: p } if *p == path),
        "{err:?}"
    );
    assert!(err.to_string().contains("database.path"), "{err}");
    assert!(!path.exists() && !path.parent().unwrap().exists());

    Store::open(&path).await.unwrap().close().await;
    let store = Store::open_with(&path, OpenMode::Existing).await.unwrap();
    assert_eq!(
        store.pragmas().expect("SQLite settings").journal_mode,
        "wal"
    );
    store.check_writable().await.unwrap();
}
