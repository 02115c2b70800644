//! Settings from a TOML file, where one URL says where the sessions live.
//!
//! ```text
//! cargo run -p cloakroom --example settings_file -- crates/cloakroom/examples/settings.toml
//! ```
//! Change `url` in the file to `redis://127.0.0.1:6379/0` (with `--features redis`) or a
//! PostgreSQL URL (with `--features postgres`): the code stays the same.

use std::path::Path;

use axum::routing::get;
use axum::Router;
use cloakroom::{engines, BoxError, Session, SessionLayer, Sessions, Settings};
use serde::Deserialize;

/// The app's own keys in the settings file, beside cloakroom's.
#[derive(Deserialize)]
struct AppSettings {
    /// Where the sessions live.
    url: String,
}

/// The app, with its settings read from the TOML file at `path`.
pub async fn app(path: impl AsRef<Path>) -> Result<Router, BoxError> {
    // cloakroom reads its keys, `AppSettings` the others; a key neither knows is an error
    // naming it, so a typo does not pass silently.
    let (settings, own): (Settings, AppSettings) = Settings::from_toml_file_with(path)?;
    // The URL's scheme picks the engine and fills in its URL setting.
    let settings = settings.for_url(&own.url)?;
    // Connects to whatever engine the settings name (each needs its cargo feature).
    let backing = engines::open(&settings).await?;
    if let Some(migrate) = backing.server().and_then(|server| server.migrate.as_ref()) {
        migrate.migrate().await?; // a database engine: create the table unless it exists
    }
    let sessions = Sessions::from_backing(backing, settings)?;
    Ok(Router::new()
        .route("/", get(visits))
        .layer(SessionLayer::new(sessions)))
}

async fn visits(session: Session) -> Result<String, cloakroom::Error> {
    let n = session.update("visits", |n: &mut u64| *n += 1)?;
    let left = session.expiry_age();
    Ok(format!(
        "visit {n}; this session ends in {left} s without another request\n"
    ))
}

#[tokio::main]
async fn main() -> Result<(), cloakroom::BoxError> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "settings.toml".into());
    serve("settings_file", "/", app(&path).await?).await
}

include!("support/serve.rs");
