//! How a session error becomes an HTTP response: the default mapping and the type of the
//! app's own handler. Both belong to the core, which answers with them in
//! [`LazySession::error_response`](crate::LazySession::error_response); the layer re-exports
//! them as [`crate::response::error_response`] and [`crate::response::ErrorHandler`].

use std::sync::Arc;

use http::header::{HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};

use crate::error::{Error, StoreError};

/// Turns a session error into the response the client gets (see
/// `SessionLayer::with_error_handler` (the `cloakroom` crate)). The body is
/// text; the layer converts it into the service's body type.
pub type ErrorHandler = Arc<dyn Fn(&Error) -> Response<String> + Send + Sync>;

/// The response for a session error, as the layer writes it.
///
/// A store failure is a 503 with `Retry-After` (the fail-closed policy); a session deleted by
/// another request is a 400, as Django's `SessionInterrupted`; an exclusive route that waited
/// out its bound is a 409 with `Retry-After`; a change under a key a login rotated away
/// ([`Error::Rotated`]) is a 409; a session over `max_session_bytes` ([`Error::TooLarge`]) is
/// a 413; anything else is a 500. The body says what happened, never the session key.
pub fn error_response<B: From<String>>(error: &Error) -> Response<B> {
    let (status, retry) = match error {
        // Retrying cannot make a session smaller: 413, and the body gives the size and limit.
        Error::Store(StoreError::TooLarge { .. }) => (StatusCode::PAYLOAD_TOO_LARGE, None),
        Error::Store(e) => (StatusCode::SERVICE_UNAVAILABLE, Some(e.retry_after())),
        Error::Interrupted => (StatusCode::BAD_REQUEST, None),
        Error::Contended { .. } | Error::Unsaved => (StatusCode::SERVICE_UNAVAILABLE, None),
        Error::ExclusiveTimeout { .. } => (
            StatusCode::CONFLICT,
            Some(std::time::Duration::from_secs(1)),
        ),
        Error::Rotated => (StatusCode::CONFLICT, None),
        Error::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, None),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, None),
    };
    let mut response = Response::new(B::from(format!("{error}\n")));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(after) = retry {
        headers.insert(RETRY_AFTER, HeaderValue::from(after.as_secs().max(1)));
    }
    response
}
