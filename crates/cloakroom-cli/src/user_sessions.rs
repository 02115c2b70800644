//! The demo's "sessions of a user": the logged-in user's sessions as JSON, "log out
//! everywhere", and the login that links a session to its user and records its client.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::http::{header, Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use cloakroom::{Session, Sessions};
use serde_json::json;

/// The `_auth_user_backend` the demo's logins record: the one a Django app beside it would
/// list in `AUTHENTICATION_BACKENDS`.
const BACKEND: &str = "django.contrib.auth.backends.ModelBackend";

/// The routes, for [`crate::demo::app`] to merge under its session layer.
pub fn routes(sessions: Sessions) -> Router {
    Router::new()
        .route("/api/sessions", get(list))
        .route("/api/logout-everywhere", post(logout_everywhere))
        .layer(Extension(sessions))
}

/// Logs `username` in as Django's `login()` does (the demo has no user table: the name is the
/// user id), and records the client's `User-Agent` and address for the sessions list.
///
/// # Errors
/// [`cloakroom::Error::AlreadySaved`] if the session was already saved.
pub fn log_in(
    session: &Session,
    username: &str,
    headers: &HeaderMap,
    extensions: &Extensions,
) -> Result<(), cloakroom::Error> {
    session.login_as(username, BACKEND, "")?;
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let ip = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string());
    session.record_client(user_agent, ip.as_deref())
}

fn not_logged_in() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({ "error": "not logged in: POST /api/login first" })),
    )
        .into_response()
}

/// `GET /api/sessions`: the logged-in user's live sessions, newest login first.
async fn list(
    Extension(sessions): Extension<Sessions>,
    session: Session,
) -> Result<Response, cloakroom::Error> {
    let Some(user) = session.user_id() else {
        return Ok(not_logged_in());
    };
    let current = session
        .session_key()
        .map(|key| cloakroom::hashed::stored_id(sessions.settings(), &key));
    let listed: Vec<_> = sessions
        .sessions_of(&user)
        .await?
        .into_iter()
        .map(|s| {
            json!({
                "id": crate::demo::key_prefix(&s.id),
                "current": current.as_deref() == Some(s.id.as_str()),
                "created_at": s.created_at.unix_timestamp(),
                "last_seen": s.last_seen.unix_timestamp(),
                "expires_at": s.expires_at.unix_timestamp(),
                "user_agent": s.user_agent,
                "ip": s.ip,
            })
        })
        .collect();
    Ok(Json(json!({ "user": user, "sessions": listed })).into_response())
}

/// `POST /api/logout-everywhere`: ends every session of the logged-in user, this one too.
async fn logout_everywhere(
    Extension(sessions): Extension<Sessions>,
    session: Session,
) -> Result<Response, cloakroom::Error> {
    let Some(user) = session.user_id() else {
        return Ok(not_logged_in());
    };
    let revoked = sessions.revoke_user(&user).await?;
    // This session is gone from the store already; flushing deletes its cookie too.
    session.flush()?;
    Ok(Json(json!({ "revoked": revoked })).into_response())
}
