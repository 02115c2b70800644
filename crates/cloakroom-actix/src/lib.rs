//! # cloakroom-actix
//!
//! The actix-web adapter of [cloakroom](https://docs.rs/cloakroom), Django's sessions for Rust:
//! a middleware that gives every request a session, and [`Session`] as a handler argument. The
//! rules (lazy load, Django's cookie and expiry rules, compare-and-swap saves that never lose
//! an update, the store-outage policy, exclusive routes) live in cloakroom's core, which the
//! tower layer calls too: both adapters pass the same HTTP suite on every engine.
//!
//! ## Quick start
//!
//! Open an engine from settings with `cloakroom` (its engine features), build [`Sessions`]
//! once, and wrap the app in [`SessionMiddleware`]:
//!
//! ```toml
//! [dependencies]
//! cloakroom = { version = "0.1", default-features = false, features = ["redis"] }
//! cloakroom-actix = "0.1"
//! ```
//!
//! ```no_run
//! use actix_web::{web, App, HttpServer};
//! use cloakroom::{Session, Sessions, Settings};
//! use cloakroom_actix::SessionMiddleware;
//!
//! async fn visits(session: Session) -> Result<String, cloakroom::Error> {
//!     // Read, add one and save, safe against the same visitor's concurrent requests.
//!     let n = session.update("visits", |n: &mut u64| *n += 1)?;
//!     Ok(format!("visit number {n}"))
//! }
//!
//! #[actix_web::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let settings = Settings::from_toml_str(r#"
//!         engine = "cache"
//!         cache_url = "redis://127.0.0.1:6379/0"
//!     "#)?;
//!     let sessions = Sessions::from_backing(cloakroom::engines::open(&settings).await?, settings)?;
//!     HttpServer::new(move || {
//!         App::new()
//!             .wrap(SessionMiddleware::new(sessions.clone()))
//!             .route("/visits", web::get().to(visits))
//!     })
//!     .bind(("127.0.0.1", 8080))?
//!     .run()
//!     .await?;
//!     Ok(())
//! }
//! ```
//!
//! ## What it gives a handler
//!
//! | argument | what it is |
//! |---|---|
//! | [`Session`] | the session, loaded on first use (one store round trip); a route without the middleware answers 500 naming what to add ([`SessionRejection::MissingMiddleware`]), a store outage on a fail-closed route 503 |
//! | `Option<Session>` | as actix-web does for every `Option` extractor: `None` when the middleware is missing, and also when the load failed |
//! | `Result<Session, SessionRejection>` | the failure itself, to answer it yourself |
//!
//! A handler that returns `Result<_, cloakroom::Error>` answers a session error as
//! [`error_response`] maps it (503 with `Retry-After` for a store failure, 400 for a session
//! another request deleted, 409 for an exclusive route's timeout, 413 for a session too large).
//!
//! ## Per route
//!
//! | middleware | what it does |
//! |---|---|
//! | [`OnStoreErrorLayer`] | the store-outage policy of the routes it wraps: `FailOpen` (an empty session that is never saved) or `FailClosed` (503) |
//! | [`ExclusiveLayer`] | one request at a time per visitor on the routes it wraps (a payment step) |
//! | [`SessionMiddleware::with_error_handler`] | the app's own response for every session error |
//!
//! Wrap the resource or scope with them, inside the [`SessionMiddleware`] (actix-web runs a
//! resource's middleware after the app's).
//!
//! ## Streaming responses
//!
//! The session is saved when the handler returns its response, before the body streams, so
//! the cookie goes out in the headers. Change the session in the handler, not in the stream:
//! a change after the save fails as `Error::AlreadySaved`.
//!
//! Guides (engines, settings, expiry, outages, concurrency) are cloakroom's:
//! <https://docs.rs/cloakroom>.
// Feature badges on docs.rs (which builds with `--cfg docsrs`, see Cargo.toml).
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod middleware;
mod route;

/// The guide, as in the repository's `docs/actix.md`: read it here or on docs.rs. Its Rust
/// examples are compiled as doc tests, so they keep up with the API.
#[doc = include_str!("../docs/actix.md")]
pub mod guide {}

pub use cloakroom_core::response::{error_response, ErrorHandler};
pub use cloakroom_core::{
    Error, LazySession, OnStoreError, Session, SessionRejection, Sessions, Transport,
};

pub use self::middleware::{ActixResponses, SessionMiddleware, SessionService};
pub use self::route::{ExclusiveLayer, OnStoreErrorLayer, RouteService, TransportLayer};
