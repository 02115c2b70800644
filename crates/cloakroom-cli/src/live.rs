//! The demo's live connections: a WebSocket and a server-sent events stream, each open as long
//! as the visitor's session lives, closed at once when it ends on any app server ("log out
//! everywhere" on another, the admin page's revoke, a logout in another tab, the expiry); the
//! live page (`/live`) that shows one; and the log of the session events.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cloakroom::{Ended, Session, Sessions};
use futures_util::StreamExt as _;
use serde_json::json;

/// The close code of a WebSocket whose session ended (an application code, 4000-4999).
pub const SESSION_ENDED: u16 = 4001;

/// The routes, for [`crate::demo::app`] to merge under its session layer.
pub fn routes() -> Router {
    Router::new()
        .route("/live", get(page))
        .route("/api/live/ws", get(websocket))
        .route("/api/live/events", get(event_stream))
}

/// How an end is named in the stream, the close frame and the page.
pub fn why(ended: Ended) -> &'static str {
    match ended {
        Ended::Revoked => "revoked",
        Ended::LoggedOut => "logged_out",
        Ended::Expired => "expired",
        _ => "gone",
    }
}

fn not_logged_in() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({ "error": "not logged in: POST /api/login first" })),
    )
        .into_response()
}

/// `GET /api/live/ws`: a WebSocket for a logged-in visitor. It says `{"open": user}`, echoes
/// what it is sent, and closes with code 4001 and the reason (`revoked`, `logged_out`,
/// `expired`, `gone`) as soon as the session ends.
async fn websocket(session: Session, headers: HeaderMap, upgrade: WebSocketUpgrade) -> Response {
    // A WebSocket is a GET that carries the cookie: refuse another site's page (the browser
    // sends its Origin), which could otherwise hold a visitor's connection open.
    if let Some(why) = cloakroom::csrf::cross_site(&headers, &[]) {
        let error = json!({ "error": format!("cross-site WebSocket refused: {why}") });
        return (StatusCode::FORBIDDEN, Json(error)).into_response();
    }
    let Some(user) = session.user_id() else {
        return not_logged_in();
    };
    // snippet live
    // GET /api/live/ws: open while the session lives
    let ended = session.ended();
    upgrade.on_upgrade(move |socket| serve_socket(socket, user, ended))
    // end snippet
}

async fn serve_socket(
    mut socket: WebSocket,
    user: String,
    ended: impl std::future::Future<Output = Ended>,
) {
    let hello = json!({ "open": user }).to_string();
    if socket.send(Message::Text(hello.into())).await.is_err() {
        return;
    }
    tokio::pin!(ended);
    loop {
        tokio::select! {
            ended = &mut ended => {
                let frame = CloseFrame { code: SESSION_ENDED, reason: why(ended).into() };
                let _ = socket.send(Message::Close(Some(frame))).await;
                return;
            }
            received = socket.recv() => match received {
                Some(Ok(Message::Text(text))) => {
                    if socket.send(Message::Text(text)).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// `GET /api/live/events`: a server-sent events stream for a logged-in visitor: an `open`
/// event naming the user, keep-alive comments, and an `ended` event with the reason as soon
/// as the session ends, after which the stream closes.
async fn event_stream(session: Session) -> Response {
    let Some(user) = session.user_id() else {
        return not_logged_in();
    };
    let ended = session.ended();
    let open = SseEvent::default().event("open").data(user);
    let stream = futures_util::stream::once(async move { Ok::<_, Infallible>(open) }).chain(
        futures_util::stream::once(async move {
            let ended = ended.await;
            Ok(SseEvent::default().event("ended").data(why(ended)))
        }),
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// `GET /live`: a page that stays connected while the session lives and says when it ended.
async fn page(session: Session) -> Html<String> {
    let user = session.user_id();
    let body = match user {
        Some(user) => format!(
            "<p>Connected as <b id=\"user\">{}</b>: this page stays open while your session \
             lives. Log out everywhere, or revoke this session from the admin page, on any app \
             server, and it ends at once.</p><p id=\"state\">connecting…</p>",
            crate::demo::escape(&user)
        ),
        None => "<p id=\"state\">Not logged in: log in on <a href=\"/\">the demo page</a> \
                 first.</p>"
            .to_owned(),
    };
    Html(format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>cloakroom live</title></head>
<body><h1>Live session</h1>{body}
<script>
const state = document.getElementById('state');
if (document.getElementById('user')) {{
  const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/api/live/ws');
  ws.onopen = () => {{ state.textContent = 'live'; }};
  ws.onclose = (e) => {{
    state.textContent = e.code === {SESSION_ENDED} ? 'session ended: ' + e.reason : 'disconnected';
    state.dataset.ended = e.code === {SESSION_ENDED} ? e.reason : '';
  }};
}}
</script></body></html>"#
    ))
}

/// How many recent events the admin page's feed keeps.
pub const FEED_LEN: usize = 50;

/// The recent session events, newest last, for the admin page's live feed.
#[derive(Clone, Default)]
pub struct Feed(Arc<Mutex<VecDeque<cloakroom::Event>>>);

impl Feed {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<cloakroom::Event>> {
        // A deque of plain values: a panic elsewhere leaves it usable.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn push(&self, event: cloakroom::Event) {
        let mut feed = self.lock();
        if feed.len() == FEED_LEN {
            feed.pop_front();
        }
        feed.push_back(event);
    }

    /// The recent events, newest first.
    pub fn recent(&self) -> Vec<cloakroom::Event> {
        self.lock().iter().rev().cloned().collect()
    }
}

/// The demo's subscriber to the session events: logs each (kind, a prefix of the index id,
/// user) and keeps the latest [`FEED_LEN`] in `feed` for the admin page. Started by
/// [`crate::demo::run`], aborted at shutdown.
pub fn record_events(sessions: &Sessions, feed: Feed) -> tokio::task::JoinHandle<()> {
    // snippet live
    // Subscribed once at start-up: every session event of this server
    let mut events = sessions.events();
    // end snippet
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(e) => {
                    tracing::info!(
                        kind = %e.kind,
                        id = e.short_id(),
                        user = e.user_id.as_deref().unwrap_or("-"),
                        "session event"
                    );
                    feed.push(e);
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "the event log fell behind");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    })
}
