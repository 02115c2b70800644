//! The tower middleware: starts a lazy session per request and saves it after the response.
//!
//! It works with axum and with plain hyper: a handler finds a [`LazySession`](crate::LazySession)
//! in the request extensions (or uses the axum extractor [`Session`](crate::Session)).

#[allow(clippy::module_inception)]
mod layer;
mod route;
mod service;

pub use self::layer::{ErrorHandler, SessionLayer};
pub use self::route::{ExclusiveLayer, OnStoreErrorLayer, RouteService, TransportLayer};
#[allow(deprecated)]
pub use self::route::{ExclusiveService, OnStoreErrorService, TransportService};
pub use self::service::{SessionFuture, SessionService};
pub use crate::response::error_response;
