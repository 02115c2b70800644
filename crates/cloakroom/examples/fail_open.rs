//! When the session store is down: public pages still answer (as to a visitor without a
//! session), pages that need the session answer 503. The policy is the `on_store_error`
//! setting (fail-closed by default), and `OnStoreErrorLayer` changes it per route.
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379/0 cargo run -p cloakroom --example fail_open --features redis
//! ```
//! Stop Redis: `/` still answers, `/account` answers 503 until Redis is back.

use axum::routing::{get, post};
use axum::Router;
use cloakroom::engines::redis::RedisStore;
use cloakroom::layer::OnStoreErrorLayer;
use cloakroom::{BoxError, OnStoreError, Session, SessionLayer, Sessions, Settings};

/// The app, keeping its sessions in the Redis server at `url`.
pub async fn app(url: &str) -> Result<Router, BoxError> {
    let store = RedisStore::connect(url).await?;
    // A store that does not answer within 300 ms is down, for this request.
    let settings = Settings::default().with_store_timeout_ms(300);
    let sessions = Sessions::new(store, settings)?;
    Ok(Router::new()
        // Public: under fail-open a failed load gives an empty session that is never saved.
        .route(
            "/",
            get(home).layer(OnStoreErrorLayer::new(OnStoreError::FailOpen)),
        )
        // Private (the default, fail-closed): a failed load is a 503, never a logged-out page
        // that would overwrite the visitor's session when the store comes back.
        .route("/account", get(account))
        .route("/login", post(login))
        .layer(SessionLayer::new(sessions)))
}

async fn home(session: Session) -> Result<String, cloakroom::Error> {
    Ok(match session.get::<String>("user")? {
        Some(user) => format!("Welcome back, {user}.\n"),
        None => "Welcome, visitor.\n".to_owned(),
    })
}

async fn account(session: Session) -> Result<String, cloakroom::Error> {
    let user: Option<String> = session.get("user")?;
    Ok(format!(
        "Account of {}\n",
        user.as_deref().unwrap_or("nobody")
    ))
}

async fn login(session: Session, user: String) -> Result<&'static str, cloakroom::Error> {
    session.cycle_key()?;
    session.insert("user", user)?;
    Ok("Logged in.\n")
}

#[tokio::main]
async fn main() -> Result<(), cloakroom::BoxError> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    serve("fail_open", "/", app(&url).await?).await
}

include!("support/serve.rs");
