//! The database file and its directories are private whatever the umask (a test binary of its own: the umask is per process).

use std::os::unix::fs::PermissionsExt;

use lapse_store::Store;
use rustix::fs::Mode;

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p)
        .expect("the file exists")
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn a_new_database_is_0600_in_0700_directories_under_a_permissive_umask() {
    rustix::process::umask(Mode::empty());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("var").join("lapse");
    let db = state.join("lapse.db");
    let store = Store::open(&db).await.unwrap();
    store
        .create_token("ci", lapse_store::Role::Operator)
        .await
        .unwrap();

    assert_eq!(mode(&db), 0o600);
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&dir.path().join("var")), 0o700);
    // SQLite gives the WAL and shared-memory files the database file's mode.
    for side in ["lapse.db-wal", "lapse.db-shm"] {
        let p = state.join(side);
        assert!(p.exists(), "{side} exists while the store is open");
        assert_eq!(mode(&p), 0o600, "{side}");
    }
    store.close().await;

    // A directory that already existed keeps its mode: it is not lapse's to change.
    let other = dir.path().join("shared");
    std::fs::create_dir(&other).unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o755)).unwrap();
    Store::open(&other.join("lapse.db"))
        .await
        .unwrap()
        .close()
        .await;
    assert_eq!(mode(&other), 0o755);
    assert_eq!(mode(&other.join("lapse.db")), 0o600);
}
