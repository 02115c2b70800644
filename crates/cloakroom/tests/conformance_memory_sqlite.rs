//! The store contract on the in-process cache and on SQLite.

mod memory {
    use std::sync::Arc;

    use cloakroom::engines::memory::MemoryStore;

    fn store() -> Arc<MemoryStore> {
        Arc::new(MemoryStore::new(10_000))
    }

    cloakroom::conformance_tests!(async { store() }, clear);
}

mod sqlite {
    use std::sync::Arc;

    use cloakroom::engines::sqlite::SqliteStore;

    async fn store() -> Arc<SqliteStore> {
        let dir = std::env::temp_dir().join(format!("cloakroom-conf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}/sessions.sqlite3", dir.display());
        let store = SqliteStore::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        Arc::new(store)
    }

    cloakroom::conformance_tests!(store(), clear);
}
