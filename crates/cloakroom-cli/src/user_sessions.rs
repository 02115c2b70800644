//! The demo's "sessions of a user": the logged-in user's sessions as JSON, "log out
//! everywhere", and the login that links a session to its user and records its client.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::http::{header, Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use cloakroom::{Session, Sessions, UserSession};
use serde_json::json;

/// The `_auth_user_backend` the demo's logins record: the one a Django app beside it would
/// list in `AUTHENTICATION_BACKENDS`.
const BACKEND: &str = "django.contrib.auth.backends.ModelBackend";

/// The JSON routes, for [`crate::demo::app`] to merge under its session layer (which also
/// adds the `Sessions` extension they read).
pub fn routes() -> Router {
    Router::new()
        .route("/api/sessions", get(list))
        .route("/api/logout-everywhere", post(logout_everywhere))
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

/// The logged-in user and their live sessions, newest login first, as the demo shows them
/// (the JSON list and the page); `None` when this visitor is not logged in.
pub(crate) async fn of_current_user(
    sessions: &Sessions,
    session: &Session,
) -> Result<Option<(String, Vec<Listed>)>, cloakroom::Error> {
    let Some(user) = session.user_id() else {
        return Ok(None);
    };
    let current = session
        .session_key()
        .map(|key| cloakroom::hashed::stored_id(sessions.settings(), &key));
    // snippet sessions
    // GET /: the user's sessions, from the user index
    let listed = sessions.sessions_of(&user).await?;
    // end snippet
    let listed = listed
        .into_iter()
        .map(|mut session| {
            let current = current.as_deref() == Some(session.id.as_str());
            session.id = crate::demo::key_prefix(&session.id).to_owned();
            Listed { current, session }
        })
        .collect();
    Ok(Some((user, listed)))
}

/// One of a user's sessions as the demo lists it: its `id` cut to the first 8 characters (a
/// whole stored name is a live cookie without `hash_keys`).
pub(crate) struct Listed {
    /// Whether it is the session of the request that lists it.
    pub current: bool,
    /// The session, its `id` cut.
    pub session: UserSession,
}

/// Ends every session of the logged-in user, this one too, returning how many the store
/// ended; `None` when this visitor is not logged in.
pub(crate) async fn end_everywhere(
    sessions: &Sessions,
    session: &Session,
) -> Result<Option<u64>, cloakroom::Error> {
    let Some(user) = session.user_id() else {
        return Ok(None);
    };
    // snippet sessions
    // POST /logout-everywhere: all of them, this one too
    let revoked = sessions.revoke_user(&user).await?;
    session.flush()?;
    // end snippet
    Ok(Some(revoked))
}

/// `GET /api/sessions`: the logged-in user's live sessions, newest login first.
async fn list(
    Extension(sessions): Extension<Sessions>,
    session: Session,
) -> Result<Response, cloakroom::Error> {
    let Some((user, listed)) = of_current_user(&sessions, &session).await? else {
        return Ok(not_logged_in());
    };
    let listed: Vec<_> = listed
        .into_iter()
        .map(
            |Listed {
                 current,
                 session: s,
             }| {
                json!({
                    "id": s.id,
                    "current": current,
                    "created_at": s.created_at.unix_timestamp(),
                    "last_seen": s.last_seen.unix_timestamp(),
                    "expires_at": s.expires_at.unix_timestamp(),
                    "user_agent": s.user_agent,
                    "ip": s.ip,
                })
            },
        )
        .collect();
    Ok(Json(json!({ "user": user, "sessions": listed })).into_response())
}

/// `POST /api/logout-everywhere`: ends every session of the logged-in user, this one too.
async fn logout_everywhere(
    Extension(sessions): Extension<Sessions>,
    session: Session,
) -> Result<Response, cloakroom::Error> {
    match end_everywhere(&sessions, &session).await? {
        Some(revoked) => Ok(Json(json!({ "revoked": revoked })).into_response()),
        None => Ok(not_logged_in()),
    }
}
