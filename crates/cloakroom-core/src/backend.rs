//! What the core is built from: a store and the optional abilities it has beside the store
//! contract. Each ability is a small trait a store implements only if it can (after scs's
//! optional interfaces); a command or call that needs one it lacks says so by name.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::exclusive::Exclusive;
use crate::store::{ClearExpired, MovesOnLoad, Scan, SessionStore};

/// An optional ability: creating the session table (`cloakroom migrate`).
#[async_trait]
pub trait Migrate: Send + Sync {
    /// Creates the table and its index unless they exist; running it twice is harmless.
    async fn migrate(&self) -> Result<(), StoreError>;
}

/// A store with the optional abilities it has: what [`Sessions::from_backend`] takes and
/// `cloakroom::engines::open` returns.
///
/// [`Sessions::from_backend`]: crate::Sessions::from_backend
#[derive(Clone)]
#[non_exhaustive]
pub struct Backend {
    /// The store itself.
    pub store: Arc<dyn SessionStore>,
    /// Deleting expired sessions, where the engine needs it.
    pub clear: Option<Arc<dyn ClearExpired>>,
    /// Creating the table, where the engine has one.
    pub migrate: Option<Arc<dyn Migrate>>,
    /// Walking every session in batches, where the engine can.
    pub scan: Option<Arc<dyn Scan>>,
    /// Moving records in from another store as they are read (a live migration).
    pub moves: Option<Arc<dyn MovesOnLoad>>,
    /// A lock one app server at a time holds, where the store is shared between servers: the
    /// scheduled cleanup takes it so that one server clears at a time.
    pub exclusive: Option<Arc<dyn Exclusive>>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("engine", &self.store.engine())
            .field("clear", &self.clear.is_some())
            .field("migrate", &self.migrate.is_some())
            .field("scan", &self.scan.is_some())
            .field("moves", &self.moves.is_some())
            .field("exclusive", &self.exclusive.is_some())
            .finish()
    }
}

impl Backend {
    /// A store with no optional ability.
    pub fn new(store: Arc<dyn SessionStore>) -> Self {
        Self {
            store,
            clear: None,
            migrate: None,
            scan: None,
            moves: None,
            exclusive: None,
        }
    }

    /// A server-side store with the abilities every one of them has: clearing and scanning.
    pub fn server<S: SessionStore + ClearExpired + Scan>(store: Arc<S>) -> Self {
        Self {
            scan: Some(store.clone()),
            clear: Some(store.clone()),
            ..Self::new(store)
        }
    }

    /// A SQL store: a server-side store with a table to create.
    pub fn sql<S: SessionStore + ClearExpired + Scan + Migrate>(store: Arc<S>) -> Self {
        Self {
            migrate: Some(store.clone()),
            ..Self::server(store)
        }
    }

    /// A store that moves records in from another one as it reads them
    /// ([`MigratingStore`](crate::engines::migrating::MigratingStore)).
    pub fn moving<S: SessionStore + MovesOnLoad>(store: Arc<S>) -> Self {
        Self {
            moves: Some(store.clone()),
            ..Self::new(store)
        }
    }

    /// Adds the lock across app servers (the [`Exclusive`] ability) that the scheduled cleanup
    /// takes.
    #[must_use]
    pub fn with_exclusive(self, exclusive: Arc<dyn Exclusive>) -> Self {
        Self {
            exclusive: Some(exclusive),
            ..self
        }
    }

    /// Replaces the store the core calls, keeping the abilities: for a decorated store
    /// ([`crate::decorate`]) whose decorator changes nothing the abilities see (counting or
    /// logging in tests). Not for key hashing: the `hash_keys` setting hashes the keys the
    /// abilities see as well.
    #[must_use]
    pub fn with_store(self, store: Arc<dyn SessionStore>) -> Self {
        Self { store, ..self }
    }
}
