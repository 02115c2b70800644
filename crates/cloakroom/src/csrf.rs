//! An opt-in CSRF check that keeps its token in the session, as Django does with
//! `CSRF_USE_SESSIONS = True` (the token under the session key `_csrftoken`).
//!
//! [`CsrfLayer`] goes inside [`SessionLayer`](crate::SessionLayer). Safe methods (`GET`,
//! `HEAD`, `OPTIONS`, `TRACE`) pass untouched. Any other request is refused with 403 unless:
//! 1. it is not cross-site (see [`cross_site`]): a `Sec-Fetch-Site` of `cross-site` or
//!    `same-site` is refused; without that header an `Origin` must be the request's own host
//!    (over http or https); an origin given to [`CsrfLayer::with_trusted_origin`] (Django's
//!    `CSRF_TRUSTED_ORIGINS`) always passes; and
//! 2. it carries the session's token, compared in constant time: in the `X-CSRFToken` header
//!    (Django's JavaScript recipe), or, for an `application/x-www-form-urlencoded` body, in
//!    the form field `csrfmiddlewaretoken` (Django's `{% csrf_token %}`). A form body is read
//!    at most 1 MiB (over it: 413) and handed on unchanged.
//!
//! The page that makes such requests gets the token from [`token`], which creates it on first
//! use.
//!
//! # Examples
//! ```no_run
//! # async fn demo(sessions: cloakroom::Sessions) {
//! use axum::{routing::{get, post}, Router};
//! use cloakroom::{csrf::CsrfLayer, Session, SessionLayer};
//! let app: Router = Router::new()
//!     .route("/token", get(|s: Session| async move { cloakroom::csrf::token(&s).unwrap_or_default() }))
//!     .route("/change", post(|| async { "changed" }))
//!     .layer(CsrfLayer::new())
//!     .layer(SessionLayer::new(sessions));
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{HeaderValue, HOST, ORIGIN};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use subtle::ConstantTimeEq as _;
use tower_layer::Layer;
use tower_service::Service;

use crate::keys::CSRF_SESSION_KEY;
use crate::Error;
use crate::LazySession;
use crate::Session;

/// The request header that carries the token: Django's default `CSRF_HEADER_NAME`
/// (`HTTP_X_CSRFTOKEN`).
pub const CSRF_HEADER: &str = "x-csrftoken";
/// The form field that carries the token: Django's `csrfmiddlewaretoken`.
pub const CSRF_FIELD: &str = "csrfmiddlewaretoken";
/// The largest form body the layer reads to find the field.
const MAX_FORM_BYTES: usize = 1024 * 1024;
/// Django's `CSRF_SECRET_LENGTH`, and its alphabet: a token Django can read as its own.
const TOKEN_LEN: usize = 32;
const TOKEN_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// The session's CSRF token, created (and stored in the session) on first use.
///
/// # Errors
/// [`Error::Random`] when the OS has no randomness for a new token; [`Error::AlreadySaved`]
/// when a new token is needed after the request's save began.
pub fn token(session: &Session) -> Result<String, Error> {
    if let Some(existing) = session
        .get_value(CSRF_SESSION_KEY)
        .and_then(|v| v.as_str().map(str::to_owned))
        .filter(|t| well_formed(t))
    {
        return Ok(existing);
    }
    let mut bytes = [0u8; TOKEN_LEN];
    getrandom::fill(&mut bytes)?;
    // 62 characters: the modulo bias (256 % 62 = 8) leaves each character at least 5.9 bits.
    let fresh: String = bytes
        .iter()
        .map(|b| char::from(TOKEN_CHARS[usize::from(*b) % TOKEN_CHARS.len()]))
        .collect();
    session.insert_value(CSRF_SESSION_KEY, serde_json::Value::from(fresh.clone()))?;
    Ok(fresh)
}

fn well_formed(token: &str) -> bool {
    token.len() == TOKEN_LEN && token.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Why a state-changing request looks cross-site, or `None` when nothing says it is.
///
/// The rule of Go's `net/http.CrossOriginProtection`: an `Origin` in `trusted` (full origins
/// such as `https://app.example`) passes. Then `Sec-Fetch-Site`, which browsers set and pages
/// cannot, decides when present: `same-origin` and `none` (typed in, a bookmark) pass,
/// `cross-site` and `same-site` (another subdomain) are refused. Without it (older browsers),
/// an `Origin` must name the request's `Host` (over http or https); `Origin: null` is refused.
/// A request with neither header is not a browser's cross-site request (browsers send `Origin`
/// on every cross-origin POST), so it passes; [`CsrfLayer`] then still asks for the token.
///
/// `Sec-Fetch-Site` goes first because a same-origin form on a page with
/// `Referrer-Policy: no-referrer` is sent with `Origin: null`.
pub fn cross_site(headers: &HeaderMap, trusted: &[String]) -> Option<&'static str> {
    let origin = headers.get(ORIGIN).map(HeaderValue::as_bytes);
    if let Some(origin) = origin {
        if trusted.iter().any(|t| t.as_bytes() == origin) {
            return None;
        }
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        return if site == "same-origin" || site == "none" {
            None
        } else {
            Some("the browser says this request comes from another site (Sec-Fetch-Site)")
        };
    }
    let origin = origin?;
    let host = headers.get(HOST).map(HeaderValue::as_bytes);
    let own = host.is_some_and(|host| {
        [&b"http://"[..], b"https://"].iter().any(|scheme| {
            origin.len() == scheme.len() + host.len()
                && origin.starts_with(scheme)
                && origin.ends_with(host)
        })
    });
    if own {
        None
    } else {
        Some("the request's Origin is not this site (add it with CsrfLayer::with_trusted_origin if it should be)")
    }
}

/// Refuses cross-site and tokenless state-changing requests; see the [module docs](self).
#[derive(Clone, Debug, Default)]
pub struct CsrfLayer {
    trusted: Arc<[String]>,
}

impl CsrfLayer {
    /// A check that trusts only the request's own host.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also accepts requests whose `Origin` is `origin` (scheme, host and port, as
    /// `https://app.example:8443`), as Django's `CSRF_TRUSTED_ORIGINS`.
    #[must_use]
    pub fn with_trusted_origin(self, origin: impl Into<String>) -> Self {
        let mut trusted = self.trusted.to_vec();
        trusted.push(origin.into());
        Self {
            trusted: trusted.into(),
        }
    }
}

impl<S> Layer<S> for CsrfLayer {
    type Service = CsrfService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CsrfService {
            inner,
            trusted: Arc::clone(&self.trusted),
        }
    }
}

/// The service made by [`CsrfLayer`].
#[derive(Clone, Debug)]
pub struct CsrfService<S> {
    inner: S,
    trusted: Arc<[String]>,
}

fn forbidden<B: From<String>>(status: StatusCode, why: &str) -> Response<B> {
    let mut response = Response::new(B::from(format!("CSRF check failed: {why}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Whether the request's body is an urlencoded form (which may carry the field).
fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// The `csrfmiddlewaretoken` field of an urlencoded body. The token's alphabet needs no
/// percent-decoding, so a value that would is simply not a token.
fn form_field(body: &[u8]) -> Option<Vec<u8>> {
    body.split(|b| *b == b'&').find_map(|pair| {
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &b""[..]),
        };
        (name == CSRF_FIELD.as_bytes()).then(|| value.to_vec())
    })
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CsrfService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: http_body::Body<Data = bytes::Bytes> + From<bytes::Bytes> + Send + 'static,
    ReqBody::Error: Into<crate::BoxError>,
    ResBody: From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let safe = matches!(
            *request.method(),
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
        );
        if safe {
            return Box::pin(inner.call(request));
        }
        if let Some(why) = cross_site(request.headers(), &self.trusted) {
            return Box::pin(async move { Ok(forbidden(StatusCode::FORBIDDEN, why)) });
        }
        let Some(lazy) = request.extensions().get::<LazySession>().cloned() else {
            return Box::pin(async move {
                Ok(forbidden(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "CsrfLayer found no session: add SessionLayer outside it \
                     (`.layer(CsrfLayer::new()).layer(SessionLayer::new(..))`)",
                ))
            });
        };
        let mut given = request
            .headers()
            .get(CSRF_HEADER)
            .map(|v| v.as_bytes().to_vec());
        let read_form = given.is_none() && is_form(request.headers());
        Box::pin(async move {
            let mut request = request;
            if read_form {
                use http_body_util::BodyExt as _;
                let (parts, body) = request.into_parts();
                let bytes = match http_body_util::Limited::new(body, MAX_FORM_BYTES)
                    .collect()
                    .await
                {
                    Ok(collected) => collected.to_bytes(),
                    Err(_) => {
                        return Ok(forbidden(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "the form body is over 1 MiB or could not be read",
                        ))
                    }
                };
                given = form_field(&bytes);
                request = Request::from_parts(parts, ReqBody::from(bytes));
            }
            let session = match lazy.load().await {
                Ok(session) => session,
                Err(e) => return Ok(crate::layer::error_response(&e)),
            };
            let expected = session
                .get_value(CSRF_SESSION_KEY)
                .and_then(|v| v.as_str().map(str::to_owned))
                .filter(|t| well_formed(t));
            let ok = match (expected, given) {
                (Some(expected), Some(given)) => expected.as_bytes().ct_eq(&given).into(),
                _ => false,
            };
            if !ok {
                return Ok(forbidden(
                    StatusCode::FORBIDDEN,
                    "the X-CSRFToken header (or csrfmiddlewaretoken form field) is missing or is \
                     not this session's token; send the token `cloakroom::csrf::token` gives \
                     the page",
                ));
            }
            inner.call(request).await
        })
    }
}
