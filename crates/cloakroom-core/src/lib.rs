//! # cloakroom-core
//!
//! The framework-free core of [cloakroom](https://docs.rs/cloakroom): the session handle, one
//! request life cycle, the store contract, the codecs (JSON and Django's formats), settings, and
//! the engines that need no driver (in-process cache, files, signed cookies) with the
//! compositions of two stores (`cached_db`, live migration). No tower, sqlx or fred here: the
//! `cloakroom` crate adds the tower layer and axum extractor, `cloakroom-sql` and
//! `cloakroom-redis` the engines on those servers. Apps depend on `cloakroom`, which re-exports
//! this crate.
// Feature badges on docs.rs (which builds with `--cfg docsrs`, see Cargo.toml).
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "actix")]
#[doc(hidden)]
pub mod actix;
pub mod backend;
pub mod backing;
mod breaker;
pub mod cleanup;
pub mod clock;
pub mod codec;
pub mod config;
pub mod cookies;
mod data;
pub mod decorate;
#[doc(hidden)]
pub mod digits;
mod ended;
mod ending;
pub mod engines;
mod error;
pub mod exclusive;
pub mod expiry;
#[cfg(any(feature = "axum", feature = "actix"))]
mod extract;
mod finish;
mod guard;
pub mod hashed;
pub mod key;
pub mod keys;
pub mod live;
mod load;
mod locks;
mod manager;
pub mod observe;
pub mod pickle;
mod plan;
mod recorded;
pub mod response;
mod runner;
mod seal;
mod session;
mod shared;
pub mod signing;
pub mod store;
pub mod transport;
pub mod users;

pub use backend::{Backend, Migrate};
pub use backing::{Backing, ClientSide};
pub use cleanup::{CleanupHandle, CleanupRun};
pub use config::{DataFormat, Engine, OnStoreError, SameSite, Secret, Settings};
pub use ending::{Ending, HttpResponses, Respond};
pub use error::{BoxError, ConfigError, Error, FileError, OpenError, StoreError};
pub use exclusive::{Exclusive, LockGuard};
pub use expiry::Expiry;
#[cfg(any(feature = "axum", feature = "actix"))]
pub use extract::SessionRejection;
pub use finish::{Finishing, ResponseHeaders};
pub use live::{Announce, Announcements, Ended, Event, EventKind, LiveHandle, LiveMode};
pub use manager::{CookieAction, LazySession, Outcome, Sessions};
pub use session::{Session, TypedKey};
pub use store::{
    ClearExpired, ClearedSession, Created, MovesOnLoad, Record, SessionStore, Updated, UserIndex,
    UserSession,
};
pub use transport::Transport;
pub use users::{IndexEntries, IndexEntry};

#[cfg(feature = "axum")]
impl axum_core::response::IntoResponse for Error {
    fn into_response(self) -> axum_core::response::Response {
        response::error_response::<axum_core::body::Body>(&self)
    }
}
