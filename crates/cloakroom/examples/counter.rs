//! The smallest app: a visit counter, kept in the in-process cache (no database to set up).
//!
//! ```text
//! cargo run -p cloakroom --example counter
//! ```
//! Open the URL it prints and reload: the count goes up. Another browser starts at 1.

use axum::{routing::get, Router};
use cloakroom::engines::memory::MemoryStore;
use cloakroom::{Session, SessionLayer, Sessions, Settings};

/// The app: one page, and the session layer around it.
pub fn app() -> Result<Router, cloakroom::ConfigError> {
    // The in-process cache loses every session when the process stops: fine for a demo or a
    // single server; use SQLite, PostgreSQL or Redis to keep them (see the other examples).
    let sessions = Sessions::new(MemoryStore::default(), Settings::default())?;
    Ok(Router::new()
        .route("/", get(count))
        .layer(SessionLayer::new(sessions)))
}

/// `Session` is an extractor: the layer loads the visitor's session the first time a handler
/// uses it, and saves it after the response if it changed.
async fn count(session: Session) -> Result<String, cloakroom::Error> {
    // `update` reads the value (0 when absent), changes it in place and stores it back.
    let visits = session.update("visits", |n: &mut u64| *n += 1)?;
    Ok(format!("You have been here {visits} time(s).\n"))
}

#[tokio::main]
async fn main() -> Result<(), cloakroom::BoxError> {
    serve("counter", "/", app()?).await
}

include!("support/serve.rs");
