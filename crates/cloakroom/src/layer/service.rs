use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::header::{HeaderName, HeaderValue, COOKIE};
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::ErrorHandler;
use crate::{Finishing, LazySession, ResponseHeaders, Sessions};

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
        SessionFuture {
            state: State::Handler {
                handler: inner.call(request),
                session: Some(session),
            },
        }
    }
}

pin_project! {
    /// The future of [`SessionService`]: the handler's future, then the end of the session.
    ///
    /// Not boxed: the handler's future runs in place, and a request whose end asks nothing of
    /// the store (its session unused or only read) finishes in the same poll, without another
    /// future; only a save is boxed (see [`LazySession::finishing`]).
    pub struct SessionFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Handler {
            #[pin]
            handler: F,
            session: Option<LazySession>,
        },
        Saving {
            saving: Pin<Box<dyn Future<Output = Result<ResponseHeaders, Response<String>>> + Send>>,
            response: Option<Response<B>>,
        },
        Done,
    }
}

impl<F, B, E> Future for SessionFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: From<String>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Handler { handler, session } => {
                    let response = std::task::ready!(handler.poll(cx))?;
                    let Some(session) = session.take() else {
                        state.set(State::Done);
                        return Poll::Ready(Ok(response));
                    };
                    match session.finishing(response.status().as_u16()) {
                        Finishing::Ready(ended) => {
                            state.set(State::Done);
                            return Poll::Ready(Ok(respond(response, ended)));
                        }
                        Finishing::Saving(saving) => state.set(State::Saving {
                            saving,
                            response: Some(response),
                        }),
                    }
                }
                StateProj::Saving { saving, response } => {
                    let ended = std::task::ready!(saving.as_mut().poll(cx));
                    let response = response.take();
                    state.set(State::Done);
                    // Taken once, here: the state is `Done` from now on.
                    return match response {
                        Some(response) => Poll::Ready(Ok(respond(response, ended))),
                        None => Poll::Pending,
                    };
                }
                StateProj::Done => return Poll::Pending,
            }
        }
    }
}

/// The handler's response with the session's headers added, or the response that replaces it.
fn respond<B: From<String>>(
    mut response: Response<B>,
    ended: Result<ResponseHeaders, Response<String>>,
) -> Response<B> {
    match ended {
        Ok(added) => {
            let headers = response.headers_mut();
            for (name, value) in added {
                headers.append(name, value);
            }
            response
        }
        Err(replacement) => replacement.map(B::from),
    }
}
