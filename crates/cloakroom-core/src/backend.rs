//! A store on the server and the optional abilities it has beside the store contract. Each
//! ability is a small trait a store implements only if it can (after scs's optional
//! interfaces); a command or call that needs one it lacks says so by name.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::exclusive::Exclusive;
use crate::live::Announce;
use crate::store::{ClearExpired, MovesOnLoad, Scan, SessionStore, UserIndex};

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
    /// The index of sessions by user the store keeps (every server-side engine keeps one):
    /// the core links a session to its user (`_auth_user_id`) whenever it writes it, so the
    /// app can list and revoke a user's sessions ([`crate::Sessions::sessions_of`]).
    pub users: Option<Arc<dyn UserIndex>>,
    /// A lock one app server at a time holds, where the store is shared between servers: the
    /// scheduled cleanup takes it so that one server clears at a time.
    pub exclusive: Option<Arc<dyn Exclusive>>,
    /// A channel between app servers the store's server carries (PostgreSQL
    /// `LISTEN`/`NOTIFY`, Redis pub/sub), where it has one: live revocation
    /// ([`crate::Session::ended`]) tells the other servers through it at once, instead of
    /// their checking the store at an interval.
    pub announce: Option<Arc<dyn Announce>>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("engine", &self.store.engine())
            .field("clear", &self.clear.is_some())
            .field("migrate", &self.migrate.is_some())
            .field("scan", &self.scan.is_some())
            .field("moves", &self.moves.is_some())
            .field("users", &self.users.is_some())
            .field("exclusive", &self.exclusive.is_some())
            .field("announce", &self.announce.is_some())
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
            users: None,
            exclusive: None,
            announce: None,
        }
    }

    /// A store with its index of sessions by user, and no other ability.
    pub fn indexed<S: SessionStore + UserIndex>(store: Arc<S>) -> Self {
        Self {
            users: Some(store.clone()),
            ..Self::new(store)
        }
    }

    /// A server-side store with the abilities every one of them has: clearing, scanning and
    /// an index of sessions by user.
    pub fn server<S: SessionStore + ClearExpired + Scan + UserIndex>(store: Arc<S>) -> Self {
        Self {
            scan: Some(store.clone()),
            clear: Some(store.clone()),
            ..Self::indexed(store)
        }
    }

    /// A SQL store: a server-side store with a table to create.
    pub fn sql<S: SessionStore + ClearExpired + Scan + UserIndex + Migrate>(store: Arc<S>) -> Self {
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

    /// Sets the index of sessions by user (`None`: the store keeps none).
    #[must_use]
    pub fn with_users(self, users: Option<Arc<dyn UserIndex>>) -> Self {
        Self { users, ..self }
    }

    /// The index of sessions by user, or [`StoreError::NoUserIndex`] naming the engine.
    ///
    /// # Errors
    /// [`StoreError::NoUserIndex`] when the store keeps no index.
    pub fn user_index(&self) -> Result<&dyn UserIndex, StoreError> {
        crate::store::user_index(self.users.as_ref(), self.store.engine())
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

    /// Adds the channel between app servers (the [`Announce`] ability) that live revocation
    /// rides on.
    #[must_use]
    pub fn with_announce(self, announce: Arc<dyn Announce>) -> Self {
        Self {
            announce: Some(announce),
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
