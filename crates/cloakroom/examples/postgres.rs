//! Sessions in PostgreSQL, shared by every instance of the app behind a load balancer.
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo run -p cloakroom --example postgres --features postgres
//! curl -c jar -b jar -X PUT 'http://127.0.0.1:3000/theme?name=dark'
//! curl -c jar -b jar http://127.0.0.1:3000/theme
//! ```

use axum::extract::Query;
use axum::routing::get;
use axum::Router;
use cloakroom::engines::postgres::PostgresStore;
use cloakroom::{BoxError, Session, SessionLayer, Sessions, Settings};
use serde::Deserialize;

/// The app, keeping its sessions in `table` of the PostgreSQL database at `url`.
pub async fn app(url: &str, table: &str) -> Result<Router, BoxError> {
    // A pool of connections; the URL's credentials never show in logs or errors.
    let store = PostgresStore::connect(url).await?.with_table(table)?;
    store.migrate().await?;
    let sessions = Sessions::new(store, Settings::default())?;
    Ok(Router::new()
        .route("/theme", get(theme).put(set_theme))
        .layer(SessionLayer::new(sessions)))
}

async fn theme(session: Session) -> Result<String, cloakroom::Error> {
    session.get_or("theme", "light".to_owned())
}

#[derive(Deserialize)]
struct Theme {
    name: String,
}

async fn set_theme(
    session: Session,
    Query(theme): Query<Theme>,
) -> Result<String, cloakroom::Error> {
    session.insert("theme", &theme.name)?;
    Ok(theme.name)
}

#[tokio::main]
async fn main() -> Result<(), cloakroom::BoxError> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    serve("postgres", "/theme", app(&url, "cloakroom_session").await?).await
}

include!("support/serve.rs");
