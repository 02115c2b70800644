//! Sessions in SQLite: one file, no server, and they survive a restart.
//!
//! ```text
//! cargo run -p cloakroom --example sqlite            # sessions.sqlite3 in this folder
//! DATABASE_URL=sqlite:///tmp/s.db cargo run -p cloakroom --example sqlite
//! curl -c jar -b jar -X POST -d 'remember the milk' http://127.0.0.1:3000/notes
//! curl -c jar -b jar http://127.0.0.1:3000/notes
//! ```
//! Stop the app and start it again: the notes are still there for the same cookie.

use axum::routing::get;
use axum::{Json, Router};
use cloakroom::engines::sqlite::SqliteStore;
use cloakroom::{BoxError, Session, SessionLayer, Sessions, Settings};

/// The app, keeping its sessions in the SQLite database at `url` (created if missing).
pub async fn app(url: &str) -> Result<Router, BoxError> {
    let store = SqliteStore::connect(url).await?;
    // Creates the session table unless it exists (`cloakroom migrate` does the same).
    store.migrate().await?;
    let sessions = Sessions::new(store, Settings::default())?;
    Ok(Router::new()
        .route("/notes", get(list).post(add))
        .layer(SessionLayer::new(sessions)))
}

async fn list(session: Session) -> Result<Json<Vec<String>>, cloakroom::Error> {
    Ok(Json(session.get_or("notes", Vec::new())?))
}

async fn add(session: Session, note: String) -> Result<Json<Vec<String>>, cloakroom::Error> {
    let notes = session.update("notes", move |notes: &mut Vec<String>| {
        notes.push(note.clone())
    })?;
    Ok(Json(notes))
}

#[tokio::main]
async fn main() -> Result<(), cloakroom::BoxError> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite://sessions.sqlite3".into());
    serve("sqlite", "/notes", app(&url).await?).await
}

include!("support/serve.rs");
