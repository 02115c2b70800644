use std::task::{Context, Poll};

use http::header::{HeaderName, HeaderValue, COOKIE};
use http::{Request, Response};
use tower_service::Service;

use super::ErrorHandler;
use crate::{Ending, HttpResponses, LazySession, Sessions};

/// The service made by [`SessionLayer`](super::SessionLayer).
#[derive(Clone)]
pub struct SessionService<S> {
    inner: S,
    sessions: Sessions,
    on_error: Option<ErrorHandler>,
    /// The key header (`header_name`), parsed once; the settings checked that it parses.
    key_header: Option<HeaderName>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for SessionService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionService")
            .field("inner", &self.inner)
            .field("sessions", &self.sessions)
            .field("custom_error_handler", &self.on_error.is_some())
            .finish()
    }
}

impl<S> SessionService<S> {
    pub(crate) fn new(inner: S, sessions: Sessions, on_error: Option<ErrorHandler>) -> Self {
        let key_header =
            HeaderName::from_bytes(sessions.settings().session.header_name.as_bytes()).ok();
        Self {
            inner,
            sessions,
            on_error,
            key_header,
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = SessionFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let headers = request.headers();
        let key_values = self
            .key_header
            .as_ref()
            .map(|name| headers.get_all(name).iter().map(HeaderValue::as_bytes));
        let session: LazySession = self.sessions.start_request(
            headers.get_all(COOKIE).iter().map(HeaderValue::as_bytes),
            key_values.into_iter().flatten(),
        );
        if let Some(handler) = &self.on_error {
            session.set_error_handler(handler);
        }
        request.extensions_mut().insert(session.clone());

        // The service that was polled ready is the one that must be called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Ending::new(inner.call(request), session)
    }
}

/// The future of [`SessionService`]: the handler's future, then the end of the session
/// ([`Ending`], the one the actix-web middleware returns too).
///
/// Not boxed: the handler's future runs in place, and a request whose end asks nothing of the
/// store (its session unused or only read) finishes in the same poll, without another future;
/// only a save is boxed (see [`LazySession::finishing`]).
pub type SessionFuture<F, B> = Ending<F, HttpResponses<B>>;
