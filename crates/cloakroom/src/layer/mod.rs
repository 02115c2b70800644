//! The tower middleware: starts a lazy session per request and saves it after the response.
//!
//! It works with axum and with plain hyper: a handler finds a [`LazySession`](crate::LazySession)
//! in the request extensions (or uses the axum extractor [`Session`](crate::Session)).

mod exclusive;
#[allow(clippy::module_inception)]
mod layer;
mod policy;
mod service;
mod transport;

pub use self::exclusive::{ExclusiveLayer, ExclusiveService};
pub use self::layer::{ErrorHandler, SessionLayer};
pub use self::policy::{OnStoreErrorLayer, OnStoreErrorService};
pub use self::service::SessionService;
pub use self::transport::{TransportLayer, TransportService};
pub use crate::response::error_response;
