//! A streaming response: the session is saved when the handler returns its response, before
//! the body streams, so the cookie goes out in the headers. Change the session in the handler,
//! not in the stream (a change there fails as `Error::AlreadySaved`).
//!
//! ```text
//! cargo run -p cloakroom --example streaming
//! curl -N -c jar -b jar http://127.0.0.1:3000/countdown
//! ```

use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use cloakroom::engines::memory::MemoryStore;
use cloakroom::{Session, SessionLayer, Sessions, Settings};
use futures_util::stream;

/// The app: `/countdown` streams a few lines, a quarter second apart.
pub fn app() -> Result<Router, cloakroom::ConfigError> {
    let sessions = Sessions::new(MemoryStore::default(), Settings::default())?;
    Ok(Router::new()
        .route("/countdown", get(countdown))
        .layer(SessionLayer::new(sessions)))
}

async fn countdown(session: Session) -> Result<Body, cloakroom::Error> {
    // All session work first: this is saved as soon as the response is returned.
    let run = session.update("runs", |n: &mut u64| *n += 1)?;
    let lines = stream::unfold(3u32, move |left| async move {
        if left == 0 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        let line = format!("run {run}: {left}\n");
        Some((Ok::<_, std::convert::Infallible>(line), left - 1))
    });
    Ok(Body::from_stream(lines))
}

#[tokio::main]
async fn main() -> Result<(), cloakroom::BoxError> {
    serve("streaming", "/countdown", app()?).await
}

include!("support/serve.rs");
