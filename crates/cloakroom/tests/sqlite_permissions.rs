//! Issue 14, point 5: the SQLite database and its `-wal`/`-shm` files hold live session keys;
//! they were created 0644 (world-readable), now 0600 like the secret-key file and the file
//! engine's sessions.
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use cloakroom::engines::sqlite::SqliteStore;
use cloakroom::{Record, SessionStore};
use time::OffsetDateTime;

#[tokio::test]
async fn sqlite_database_wal_and_shm_are_created_owner_only() {
    let dir = std::env::temp_dir().join(format!(
        "cloakroom-perms-{}-{}",
        std::process::id(),
        cloakroom::key::generate().unwrap()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("sessions.sqlite3");
    let store = SqliteStore::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let record = Record {
        data: r#"{"visits":1}"#.into(),
        expires_at: OffsetDateTime::now_utc() + Duration::from_secs(60),
    };
    let key = cloakroom::key::generate().unwrap();
    store.create(&key, &record).await.unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let path = dir.join(format!("sessions.sqlite3{suffix}"));
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "{}: {:o}",
            path.display(),
            mode & 0o777
        );
    }
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
