//! The store contract on the in-process cache and on SQLite.

mod memory {
    use std::sync::Arc;

    use cloakroom::engines::memory::MemoryStore;

    fn store() -> Arc<MemoryStore> {
        Arc::new(MemoryStore::new(10_000))
    }

    cloakroom::conformance_tests!(async { store() }, clear);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn index_entries_are_held_by_their_user() {
        cloakroom::testing::index_entries_are_held_by_their_user(&*store()).await;
    }
}

mod sqlite {
    use std::sync::Arc;

    use cloakroom::engines::sqlite::SqliteStore;

    fn url() -> String {
        let dir = std::env::temp_dir().join(format!("cloakroom-conf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        format!("sqlite://{}/sessions.sqlite3", dir.display())
    }

    async fn store() -> Arc<SqliteStore> {
        let store = SqliteStore::connect(&url()).await.unwrap();
        store.migrate().await.unwrap();
        Arc::new(store)
    }

    cloakroom::conformance_tests!(store(), clear);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn index_entries_are_held_by_their_user() {
        cloakroom::testing::index_entries_are_held_by_their_user(&*store().await).await;
    }

    /// A touch moves `expire_date` alone: a trigger that refuses any write of `session_data`
    /// lets it through, and stops a full update.
    #[tokio::test]
    async fn touch_never_writes_the_session_data() {
        use cloakroom::{Record, SessionStore, Updated};
        let store = store().await;
        let table = format!("touch_only_{}", std::process::id());
        let store = Arc::new(store.as_ref().clone().with_table(&table).unwrap());
        store.migrate().await.unwrap();
        let db = sqlx::SqlitePool::connect(&url()).await.unwrap();
        sqlx::raw_sql(&format!(
            r#"CREATE TRIGGER IF NOT EXISTS "{table}_data_frozen" BEFORE UPDATE OF session_data ON "{table}"
               BEGIN SELECT RAISE(ABORT, 'session_data written'); END;"#
        ))
        .execute(&db)
        .await
        .unwrap();
        let key = cloakroom::key::generate().unwrap();
        let t = time::OffsetDateTime::now_utc();
        let record = |secs: u64| Record {
            data: r#"{"a":1}"#.into(),
            expires_at: t + std::time::Duration::from_secs(secs),
        };
        store.create(&key, &record(60)).await.unwrap();
        assert_eq!(
            store.touch(&key, &record(3600), t).await.unwrap(),
            Updated::Stored
        );
        let loaded = store.load(&key, t).await.unwrap().unwrap();
        // SQLite keeps microseconds.
        assert!(
            (loaded.expires_at - record(3600).expires_at).abs() < time::Duration::milliseconds(1)
        );
        assert!(
            store
                .update(&key, br#"{"a":1}"#, &record(7200), t)
                .await
                .is_err(),
            "the trigger does not see a write of session_data"
        );
    }
}
