//! Sessions in Redis: each one a key with a TTL, so Redis itself drops expired sessions.
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379/0 cargo run -p cloakroom --example redis --features redis
//! curl -c jar -b jar http://127.0.0.1:3000/items/7
//! curl -c jar -b jar http://127.0.0.1:3000/recent
//! ```

use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use cloakroom::engines::redis::RedisStore;
use cloakroom::{BoxError, Session, SessionLayer, Sessions, Settings};

/// How many recently viewed items a session keeps.
const RECENT: usize = 3;

/// The app, keeping its sessions in the Redis server (or cluster) at `url`.
pub async fn app(url: &str) -> Result<Router, BoxError> {
    // Waits until the server answers: a wrong URL shows now, not at the first request.
    let store = RedisStore::connect(url).await?;
    let sessions = Sessions::new(store, Settings::default())?;
    Ok(Router::new()
        .route("/items/{id}", get(view))
        .route("/recent", get(recent))
        .layer(SessionLayer::new(sessions)))
}

async fn view(session: Session, Path(id): Path<u32>) -> Result<String, cloakroom::Error> {
    session.update("recent", move |seen: &mut Vec<u32>| {
        seen.retain(|&other| other != id);
        seen.insert(0, id);
        seen.truncate(RECENT);
    })?;
    Ok(format!("Item {id}\n"))
}

async fn recent(session: Session) -> Result<Json<Vec<u32>>, cloakroom::Error> {
    Ok(Json(session.get_or("recent", Vec::new())?))
}

#[tokio::main]
async fn main() -> Result<(), cloakroom::BoxError> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    serve("redis", "/recent", app(&url).await?).await
}

include!("support/serve.rs");
