//! How long a session lives: per session. Here sessions end when the browser closes, unless
//! the visitor ticks "remember me" at login (30 days, the `remember_me_age` setting); a
//! visitor can also be given a session that ends at a fixed instant.
//!
//! ```text
//! cargo run -p cloakroom --example remember_me
//! curl -i -X POST -d 'user=alice&remember=on' http://127.0.0.1:3000/login  # Max-Age=2592000
//! curl -i -X POST -d 'user=bob' http://127.0.0.1:3000/login                # no Max-Age
//! ```

use std::time::Duration;

use axum::routing::{get, post};
use axum::{Form, Router};
use cloakroom::engines::memory::MemoryStore;
use cloakroom::time::{OffsetDateTime, Time};
use cloakroom::{Expiry, Session, SessionLayer, Sessions, Settings};
use serde::Deserialize;

/// The app: `/login` (with or without `remember`), `/trial` (a session until midnight UTC),
/// `/` (how long this session has left).
pub fn app() -> Result<Router, cloakroom::ConfigError> {
    let settings = Settings::default()
        // By default a session lasts as long as the browser runs…
        .with_expire_at_browser_close(true)
        // …and the store drops it after 8 hours in any case (plain integers: seconds).
        .with_cookie_age(8 * 3600)
        // "Remember me" keeps it 30 days (the default, written out here).
        .with_remember_me_age(30 * 86_400);
    let sessions = Sessions::new(MemoryStore::default(), settings)?;
    Ok(Router::new()
        .route("/", get(status))
        .route("/login", post(login))
        .route("/trial", post(trial))
        .layer(SessionLayer::new(sessions)))
}

#[derive(Deserialize)]
struct Login {
    user: String,
    // An unticked checkbox is not sent at all.
    remember: Option<String>,
}

async fn login(session: Session, Form(form): Form<Login>) -> Result<String, cloakroom::Error> {
    session.cycle_key()?;
    session.insert("user", &form.user)?;
    // Ticked: a cookie that outlives the browser, for `remember_me_age`. Not ticked: the
    // settings' browser-close cookie.
    session.remember_me(form.remember.is_some())?;
    Ok(status_of(&session))
}

async fn trial(session: Session) -> Result<String, cloakroom::Error> {
    // `Expiry::At` takes a `time::OffsetDateTime`, re-exported as `cloakroom::time`.
    let now = OffsetDateTime::now_utc();
    let midnight = now.replace_time(Time::MIDNIGHT) + Duration::from_secs(86_400);
    session.set_expiry(Expiry::At(midnight))?;
    session.insert("trial", true)?;
    Ok(status_of(&session))
}

async fn status(session: Session) -> String {
    status_of(&session)
}

fn status_of(session: &Session) -> String {
    if session.expire_at_browser_close() {
        "ends when the browser closes\n".to_owned()
    } else {
        format!("ends in {} s\n", session.expiry_age())
    }
}

#[tokio::main]
async fn main() -> Result<(), cloakroom::BoxError> {
    serve("remember_me", "/", app()?).await
}

include!("support/serve.rs");
