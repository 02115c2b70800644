//! What the core is built from: where the session data travels. To a store on the server,
//! with its abilities ([`Backend`]), or in the cookie itself, signed ([`SignedCookies`]) or
//! encrypted ([`PrivateCookies`]) as [`ClientSide`] says; the core picks its end-of-request
//! steps by it.

use std::sync::Arc;

use time::OffsetDateTime;

use crate::backend::Backend;
use crate::codec::Data;
use crate::engines::cookie::SignedCookies;
use crate::engines::private_cookie::PrivateCookies;
use crate::error::StoreError;
use crate::store::SessionStore;

/// Where the session data travels, which decides what the end of a request does: what
/// [`Sessions::from_backing`] takes and `cloakroom::engines::open` returns.
///
/// On the server, the cookie carries a key and the core loads, creates, compare-and-swaps,
/// touches and deletes records in the store. In the cookie, the cookie carries the data
/// itself, signed or encrypted: nothing is stored, so there is no key to lock, hash or index,
/// nothing to delete, and no record to merge concurrent requests on (see
/// [`engines::cookie`](crate::engines::cookie)).
///
/// [`Sessions::from_backing`]: crate::Sessions::from_backing
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Backing {
    /// A store on the server, with its abilities.
    Server(Backend),
    /// The data in the cookie, signed or encrypted.
    Cookie(ClientSide),
}

/// How the data is sealed into the cookie when it travels there ([`Backing::Cookie`]): the
/// one place that tells the client-side engines apart; the core only decodes and encodes.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ClientSide {
    /// Signed with Django's `signed_cookies` format: readable by the visitor and by Django.
    Signed(SignedCookies),
    /// Encrypted and authenticated (`private_cookies`): neither readable nor changeable by
    /// the visitor; a cloakroom format.
    Private(PrivateCookies),
}

impl ClientSide {
    /// The engine's name (`"signed_cookies"` or `"private_cookies"`).
    pub fn engine(&self) -> &'static str {
        match self {
            Self::Signed(cookies) => cookies.engine(),
            Self::Private(cookies) => cookies.engine(),
        }
    }

    /// The data a cookie value carries and the instant it stops being accepted; `None` for
    /// anything that does not verify or is no longer live at `now` (a fresh session).
    pub fn decode(&self, value: &str, now: OffsetDateTime) -> Option<(Data, OffsetDateTime)> {
        match self {
            Self::Signed(cookies) => cookies.decode(value, now),
            Self::Private(cookies) => cookies.decode(value, now),
        }
    }

    /// The cookie value that carries `data`, issued at `now`.
    ///
    /// # Errors
    /// [`StoreError::TooLarge`] when the cookie would be over the 4 KB browsers keep.
    pub fn encode(&self, data: &Data, now: OffsetDateTime) -> Result<String, StoreError> {
        match self {
            Self::Signed(cookies) => cookies.encode(data, now),
            Self::Private(cookies) => cookies.encode(data, now),
        }
    }
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

impl From<SignedCookies> for ClientSide {
    fn from(cookies: SignedCookies) -> Self {
        Self::Signed(cookies)
    }
}

impl From<PrivateCookies> for ClientSide {
    fn from(cookies: PrivateCookies) -> Self {
        Self::Private(cookies)
    }
}

impl From<ClientSide> for Backing {
    fn from(cookies: ClientSide) -> Self {
        Self::Cookie(cookies)
    }
}

impl From<SignedCookies> for Backing {
    fn from(cookies: SignedCookies) -> Self {
        Self::Cookie(cookies.into())
    }
}

impl From<PrivateCookies> for Backing {
    fn from(cookies: PrivateCookies) -> Self {
        Self::Cookie(cookies.into())
    }
}

/// A store with no optional ability, on the server.
impl From<Arc<dyn SessionStore>> for Backing {
    fn from(store: Arc<dyn SessionStore>) -> Self {
        Self::Server(Backend::new(store))
    }
}
