//! What the core is built from: where the session data travels. To a store on the server,
//! with its abilities ([`Backend`]), or in the cookie itself, signed ([`SignedCookies`]); the
//! core picks its end-of-request steps by it.

use std::sync::Arc;

use crate::backend::Backend;
use crate::engines::cookie::SignedCookies;
use crate::store::SessionStore;

/// Where the session data travels, which decides what the end of a request does: what
/// [`Sessions::from_backing`] takes and `cloakroom::engines::open` returns.
///
/// On the server, the cookie carries a key and the core loads, creates, compare-and-swaps,
/// touches and deletes records in the store. In the cookie, the cookie carries the data
/// itself, signed: nothing is stored, so there is no key to lock, hash or index, nothing to
/// delete, and no record to merge concurrent requests on (see
/// [`engines::cookie`](crate::engines::cookie)).
///
/// [`Sessions::from_backing`]: crate::Sessions::from_backing
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Backing {
    /// A store on the server, with its abilities.
    Server(Backend),
    /// The data in the cookie, signed with Django's `signed_cookies` format.
    Cookie(SignedCookies),
}

impl Backing {
    /// The engine's name for logs and errors (`"sqlite"`, `"signed_cookies"` …).
    pub fn engine(&self) -> &'static str {
        match self {
            Self::Server(backend) => backend.store.engine(),
            Self::Cookie(cookies) => cookies.engine(),
        }
    }

    /// The store and its abilities, when the data is kept on the server.
    pub fn server(&self) -> Option<&Backend> {
        match self {
            Self::Server(backend) => Some(backend),
            Self::Cookie(_) => None,
        }
    }

    /// As [`server`](Self::server), by value.
    pub fn into_server(self) -> Option<Backend> {
        match self {
            Self::Server(backend) => Some(backend),
            Self::Cookie(_) => None,
        }
    }
}

impl From<Backend> for Backing {
    fn from(backend: Backend) -> Self {
        Self::Server(backend)
    }
}

impl From<SignedCookies> for Backing {
    fn from(cookies: SignedCookies) -> Self {
        Self::Cookie(cookies)
    }
}

/// A store with no optional ability, on the server.
impl From<Arc<dyn SessionStore>> for Backing {
    fn from(store: Arc<dyn SessionStore>) -> Self {
        Self::Server(Backend::new(store))
    }
}
