//! The limit: no session layer, a counter in process memory keyed by a cookie the handler sets
//! itself. Shared by bare axum and bare actix-web.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

static COUNTERS: Mutex<Option<HashMap<u64, u64>>> = Mutex::new(None);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The visitor id in a `Cookie` header (`bare=<id>`).
pub fn visitor(cookie_header: Option<&[u8]>) -> Option<u64> {
    let text = std::str::from_utf8(cookie_header?).ok()?;
    text.split(';')
        .find_map(|pair| pair.trim().strip_prefix("bare="))
        .and_then(|v| v.parse().ok())
}

/// `/visits`: the new count, and the `Set-Cookie` value for a new visitor.
pub fn visit(id: Option<u64>) -> (u64, Option<String>) {
    let mut guard = COUNTERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let map = guard.get_or_insert_with(HashMap::new);
    if let Some(n) = id.and_then(|id| map.get_mut(&id)) {
        *n += 1;
        return (*n, None);
    }
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    map.insert(id, 1);
    (1, Some(format!("bare={id}; Path=/; HttpOnly")))
}

/// `/read`: the count, unchanged.
pub fn read(id: Option<u64>) -> u64 {
    let guard = COUNTERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    id.and_then(|id| guard.as_ref()?.get(&id).copied())
        .unwrap_or(0)
}

fn id_of(headers: &HeaderMap) -> Option<u64> {
    visitor(headers.get(COOKIE).map(|v| v.as_bytes()))
}

async fn visits(headers: HeaderMap) -> Response {
    let (n, cookie) = visit(id_of(&headers));
    match cookie {
        Some(c) => ([(SET_COOKIE, c)], n.to_string()).into_response(),
        None => n.to_string().into_response(),
    }
}

async fn read_route(headers: HeaderMap) -> String {
    read(id_of(&headers)).to_string()
}

/// The bare axum app.
pub fn axum_app() -> Router {
    Router::new()
        .route("/visits", get(visits))
        .route("/read", get(read_route))
        .route("/__stats", get(|| async { super::stats_json() }))
}
