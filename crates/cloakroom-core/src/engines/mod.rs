//! The engines that need no driver (in-process cache, files, signed cookies) and the two
//! compositions of stores (`cached_db`, `migrating`); the SQL engines live in `cloakroom-sql`,
//! Redis in `cloakroom-redis`, and `cloakroom::engines::open` picks one from settings. Each
//! only moves records: the core does keys, encoding, expiry rules and merging.

pub mod cached_db;
pub mod cookie;
#[cfg(feature = "file")]
pub mod file;
#[cfg(any(feature = "file", feature = "memory"))]
mod listed;
#[cfg(feature = "memory")]
pub mod memory;
pub mod migrating;

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::store::{ClearExpired, Scan, SessionStore};

/// An optional ability: creating the session table (`cloakroom migrate`).
#[async_trait]
pub trait Migrate: Send + Sync {
    /// Creates the table and its index unless they exist; running it twice is harmless.
    async fn migrate(&self) -> Result<(), StoreError>;
}

/// An engine opened from settings, with the optional abilities it has.
#[derive(Clone)]
pub struct Opened {
    /// The store itself.
    pub store: Arc<dyn SessionStore>,
    /// Deleting expired sessions, where the engine needs it.
    pub clear: Option<Arc<dyn ClearExpired>>,
    /// Creating the table, where the engine has one.
    pub migrate: Option<Arc<dyn Migrate>>,
    /// Walking every session in batches, where the engine can (all but `signed_cookies`).
    pub scan: Option<Arc<dyn Scan>>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("engine", &self.store.engine())
            .finish()
    }
}

pub use crate::error::OpenError;

impl Opened {
    /// A server-side store with the abilities every one of them has: clearing and scanning.
    pub fn server_side<S: SessionStore + ClearExpired + Scan>(store: Arc<S>) -> Self {
        Self {
            store: store.clone(),
            scan: Some(store.clone()),
            clear: Some(store),
            migrate: None,
        }
    }

    /// A SQL store: a server-side store with a table to create.
    pub fn sql<S: SessionStore + ClearExpired + Scan + Migrate>(store: Arc<S>) -> Self {
        Self {
            migrate: Some(store.clone()),
            ..Self::server_side(store)
        }
    }
}
