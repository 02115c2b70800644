//! Logging in and out: `cycle_key` at login (a new session key, so a key planted in the
//! visitor's browser before login is worth nothing after it), `flush` at logout (the stored
//! session is deleted and the cookie removed).
//!
//! ```text
//! cargo run -p cloakroom --example login
//! curl -c jar -b jar -X POST -d 'user=alice' http://127.0.0.1:3000/login
//! curl -c jar -b jar http://127.0.0.1:3000/
//! curl -c jar -b jar -X POST http://127.0.0.1:3000/logout
//! ```

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Form, Router};
use cloakroom::engines::memory::MemoryStore;
use cloakroom::{Session, SessionLayer, Sessions, Settings};
use serde::Deserialize;

/// The app: `/` greets the logged-in user, `/login` and `/logout` change who that is.
pub fn app() -> Result<Router, cloakroom::ConfigError> {
    let sessions = Sessions::new(MemoryStore::default(), Settings::default())?;
    Ok(Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .layer(SessionLayer::new(sessions)))
}

async fn home(session: Session) -> Result<(StatusCode, String), cloakroom::Error> {
    Ok(match session.get::<String>("user")? {
        Some(user) => (StatusCode::OK, format!("Hello, {user}.\n")),
        None => (StatusCode::UNAUTHORIZED, "Not logged in.\n".to_owned()),
    })
}

#[derive(Deserialize)]
struct Credentials {
    user: String,
}

async fn login(
    session: Session,
    Form(form): Form<Credentials>,
) -> Result<String, cloakroom::Error> {
    // A real app checks a password here. Then: a new key for the same data, before storing
    // who logged in.
    session.cycle_key()?;
    session.insert("user", &form.user)?;
    Ok(format!("Logged in as {}.\n", form.user))
}

async fn logout(session: Session) -> Result<&'static str, cloakroom::Error> {
    // Everything goes: the data, the stored record, the key. The next visit starts anew.
    session.flush()?;
    Ok("Logged out.\n")
}

#[tokio::main]
async fn main() -> Result<(), cloakroom::BoxError> {
    serve("login", "/", app()?).await
}

include!("support/serve.rs");
