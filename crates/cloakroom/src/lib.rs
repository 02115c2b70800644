//! # cloakroom
//!
//! Django's sessions framework for Rust web apps: server-side storage that remembers data about
//! one visitor across requests, keyed by an opaque random key that the browser keeps in a cookie
//! (the coat stays in the cloakroom; the visitor holds the ticket).
//!
//! - [`Session`]: a typed dictionary with Django's verbs (`get`, `insert`, `remove` = pop,
//!   `update` in place, `flush`, `cycle_key`, `set_expiry`), usable as an axum extractor.
//! - [`SessionLayer`]: a tower middleware that loads lazily and saves only what changed, with
//!   Django's cookie and expiry rules.
//! - [`SessionStore`]: the small contract every engine meets; [`engines`] has the built-in ones.
//! - Sessions of a user: every server-side engine indexes sessions by their logged-in user
//!   (`_auth_user_id`), so [`Sessions::sessions_of`] lists a user's devices and
//!   [`Sessions::revoke_user`] logs them out everywhere (see [`UserIndex`]).
//!
//! Concurrent requests of one visitor never lose each other's changes: a session records what
//! the request changed, and a save is a compare-and-swap that re-applies those changes to the
//! newer record when another request saved first.
//!
//! ## Quick start
//! ```no_run
//! use axum::{routing::get, Json, Router};
//! use cloakroom::{engines::sqlite::SqliteStore, Session, SessionLayer, Sessions, Settings};
//!
//! async fn visits(session: Session) -> Result<Json<u64>, cloakroom::Error> {
//!     Ok(Json(session.update("visits", |n: &mut u64| *n += 1)?))
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = SqliteStore::connect("sqlite://sessions.sqlite3").await?;
//! store.migrate().await?;
//! let sessions = Sessions::new(store, Settings::default())?;
//! let app: Router = Router::new()
//!     .route("/visits", get(visits))
//!     .layer(SessionLayer::new(sessions));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! ## Engines
//!
//! One module each in [`engines`], behind cargo features; [`engines::open`] picks one from
//! [`Settings::with_engine`] and its URL. Every server-side engine passes the same conformance suite
//! (the `testing` feature), keeps the [`UserIndex`], moves only the expiry on an idle-timeout
//! refresh (a TTL-only touch), and can be walked by `cloakroom copy` and `stats`.
//!
//! | Engine | Feature | Store |
//! |---|---|---|
//! | `db` on SQLite | `sqlite` (default) | `engines::sqlite::SqliteStore` |
//! | `db` on PostgreSQL | `postgres` | `engines::postgres::PostgresStore` |
//! | `db` on MySQL / MariaDB | `mysql` | `engines::mysql::MySqlStore` |
//! | `cache` in-process | `memory` (default) | `engines::memory::MemoryStore` |
//! | `cache` on Redis / Redis Cluster | `redis` (`redis-tls` for `rediss://`) | `engines::redis::RedisStore` |
//! | `cached_db` | a database's and a cache's | `engines::cached_db::CachedDbStore` |
//! | `file` | `file` (default) | `engines::file::FileStore` |
//! | `signed_cookies` | none | `engines::cookie::SignedCookies`: no store at all (the data travels in the cookie, [`Backing::Cookie`]), so no user index and no revocation |
//! | `private_cookies` | none | `engines::private_cookie::PrivateCookies`: as `signed_cookies`, encrypted so the visitor cannot read the data (a cloakroom format) |
//!
//! The `axum` feature (default) makes [`Session`] an extractor. The guides (settings, expiry,
//! Django, outages, concurrency, engines, operations …) are in [`guide`].
// Feature badges on docs.rs (which builds with `--cfg docsrs`, see Cargo.toml).
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

// The core, whole: `cloakroom::Session`, `cloakroom::store`, `cloakroom::config` … are the
// core's. Items defined below (the `engines` module, the hidden modules) take precedence over
// the glob.
pub use cloakroom_core::*;

// The core's modules that an app does not need, still at their old paths (the `cloakroom`
// command, the bench and existing code use them) but out of the docs: documented under
// `django` and `advanced` below, where CHANGELOG.md sends their readers.
#[doc(hidden)]
pub use cloakroom_core::{
    backend, codec, cookies, expiry, hashed, key, keys, pickle, response, signing,
};

pub mod csrf;
pub mod engines;
pub mod layer;
#[cfg(feature = "test-helpers")]
pub mod test;

pub use layer::SessionLayer;

/// The `time` crate, whose `OffsetDateTime` [`Expiry::At`] and the expiry getters use: write
/// `cloakroom::time::OffsetDateTime` without adding the crate (and without matching its version).
///
/// ```
/// use cloakroom::time::{Duration, OffsetDateTime};
/// use cloakroom::Expiry;
///
/// let at_noon = Expiry::At(OffsetDateTime::UNIX_EPOCH + Duration::hours(12));
/// # let _ = at_noon;
/// ```
pub use time;

/// Django's formats, for code that reads or writes what a Django app stores: its signed data
/// ([`signing`]), the codecs over it ([`codec`]),
/// the pickles of its cache backend ([`pickle`]) and the reserved data
/// keys of its auth framework ([`keys`]). The session layer uses them for
/// you; see [`guide::django`].
pub mod django {
    pub use cloakroom_core::{codec, keys, pickle, signing};
}

/// The machinery under the layer, for tools and custom integrations: how a store is bundled
/// with its abilities ([`backend`]), the cookie on the wire
/// ([`cookies`]), session keys ([`key`]) and
/// their hashing ([`hashed`]), the expiry arithmetic
/// ([`expiry`]), the default error responses
/// ([`response`]).
pub mod advanced {
    pub use cloakroom_core::{backend, cookies, expiry, hashed, key, response};
}

/// The store conformance suite for engines written outside cloakroom (feature `testing`).
#[cfg(feature = "testing")]
pub use cloakroom_testkit as testing;
#[cfg(feature = "testing")]
pub use cloakroom_testkit::{conformance_tests, cookie_conformance_tests};

/// The guides, as in the repository's `docs/`: read them here or on docs.rs. Their Rust
/// examples are compiled as doc tests, so they keep up with the API.
pub mod guide {
    #[doc = include_str!("../docs/settings.md")]
    pub mod settings {}
    #[doc = include_str!("../docs/expiry.md")]
    pub mod expiry {}
    #[doc = include_str!("../docs/django.md")]
    pub mod django {}
    #[doc = include_str!("../docs/outages.md")]
    pub mod outages {}
    #[doc = include_str!("../docs/concurrency.md")]
    pub mod concurrency {}
    #[doc = include_str!("../docs/engines.md")]
    pub mod engines {}
    #[doc = include_str!("../docs/users.md")]
    pub mod users {}
    #[doc = include_str!("../docs/operations.md")]
    pub mod operations {}
    #[doc = include_str!("../docs/security.md")]
    pub mod security {}
    #[doc = include_str!("../docs/format.md")]
    pub mod format {}
    #[doc = include_str!("../docs/performance.md")]
    pub mod performance {}
    #[doc = include_str!("../docs/demo.md")]
    pub mod demo {}
}
