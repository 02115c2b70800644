//! The session middleware: starts a lazy session per request and saves it once the handler has
//! returned its response, as the tower layer does, through the same core calls.

use std::fmt;
use std::future::{ready, Ready};
use std::marker::PhantomData;
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, COOKIE};
use actix_web::HttpMessage as _;
use cloakroom_core::actix::into_actix;
use cloakroom_core::response::ErrorHandler;
use cloakroom_core::{Ending, Error, LazySession, Respond, ResponseHeaders, Sessions};

/// Adds sessions to every request of the app, scope or resource it wraps: the actix-web
/// counterpart of the tower `SessionLayer`, with the same rules (lazy load, Django's cookie
/// rules, compare-and-swap saves, the outage policy), which live in the core.
///
/// The session is saved when the handler has returned its response, before the body streams,
/// so the cookie goes out in the headers; a handler's 5xx saves nothing.
///
/// # Examples
/// ```no_run
/// use actix_web::{web, App, HttpServer};
/// use cloakroom::{engines::memory::MemoryStore, Session, Sessions, Settings};
/// use cloakroom_actix::SessionMiddleware;
///
/// async fn visits(session: Session) -> Result<String, cloakroom::Error> {
///     Ok(session.update("visits", |n: &mut u64| *n += 1)?.to_string())
/// }
///
/// # async fn demo() -> std::io::Result<()> {
/// let sessions = Sessions::new(MemoryStore::default(), Settings::default())
///     .map_err(std::io::Error::other)?;
/// HttpServer::new(move || {
///     App::new()
///         .wrap(SessionMiddleware::new(sessions.clone()))
///         .route("/visits", web::get().to(visits))
/// })
/// .bind(("127.0.0.1", 8080))?
/// .run()
/// .await
/// # }
/// ```
#[derive(Clone)]
pub struct SessionMiddleware {
    sessions: Sessions,
    on_error: Option<ErrorHandler>,
}

impl fmt::Debug for SessionMiddleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionMiddleware")
            .field("sessions", &self.sessions)
            .field("custom_error_handler", &self.on_error.is_some())
            .finish()
    }
}

impl SessionMiddleware {
    /// A middleware over the given session machinery.
    pub fn new(sessions: Sessions) -> Self {
        Self {
            sessions,
            on_error: None,
        }
    }

    /// Answers every session error with `handler`'s response instead of the default
    /// [`error_response`](crate::error_response): a store failure, a session deleted by another
    /// request, a save that could not merge, a session too large, an exclusive route's wait
    /// running out. It answers both a failed load (the [`Session`](crate::Session) extractor's
    /// rejection) and a failed save after the handler ran. The handler is the tower layer's
    /// (it returns an `http` 1 response), so an app serving both frameworks writes it once.
    ///
    /// # Examples
    /// ```
    /// use cloakroom_actix::{error_response, Error, SessionMiddleware};
    /// # fn demo(sessions: cloakroom::Sessions) -> SessionMiddleware {
    /// SessionMiddleware::new(sessions).with_error_handler(|error: &Error| match error {
    ///     Error::ExclusiveTimeout { .. } => {
    ///         let mut busy = http::Response::new("busy, try again\n".to_owned());
    ///         *busy.status_mut() = http::StatusCode::TOO_MANY_REQUESTS;
    ///         busy
    ///     }
    ///     other => error_response(other),
    /// })
    /// # }
    /// ```
    #[must_use]
    pub fn with_error_handler(
        mut self,
        handler: impl Fn(&Error) -> http::Response<String> + Send + Sync + 'static,
    ) -> Self {
        self.on_error = Some(Arc::new(handler));
        self
    }
}

impl<S, B> Transform<S, ServiceRequest> for SessionMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = SessionService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, inner: S) -> Self::Future {
        ready(Ok(SessionService {
            inner,
            sessions: self.sessions.clone(),
            on_error: self.on_error.clone(),
        }))
    }
}

/// The service made by [`SessionMiddleware`].
pub struct SessionService<S> {
    inner: S,
    sessions: Sessions,
    on_error: Option<ErrorHandler>,
}

impl<S> fmt::Debug for SessionService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionService")
            .field("sessions", &self.sessions)
            .field("custom_error_handler", &self.on_error.is_some())
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<ServiceRequest> for SessionService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    /// The handler's future, then the end of the session: the tower layer's future, not boxed.
    type Future = Ending<S::Future, ActixResponses<B>>;

    forward_ready!(inner);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let session = start(&self.sessions, request.headers());
        if let Some(handler) = &self.on_error {
            session.set_error_handler(handler);
        }
        request.extensions_mut().insert(session.clone());
        Ending::new(self.inner.call(request), session)
    }
}

/// How actix-web's responses take the end of the session ([`Respond`]): the headers are
/// appended (the left body), or the replacement response goes out instead (the right body).
#[derive(Debug)]
pub struct ActixResponses<B>(PhantomData<fn() -> B>);

impl<B> Respond for ActixResponses<B> {
    type Response = ServiceResponse<B>;
    type Output = ServiceResponse<EitherBody<B>>;

    fn status(response: &Self::Response) -> u16 {
        response.status().as_u16()
    }

    fn respond(
        mut response: Self::Response,
        ended: Result<ResponseHeaders, http::Response<String>>,
    ) -> Self::Output {
        match ended {
            Ok(added) => {
                write(response.headers_mut(), added);
                response.map_into_left_body()
            }
            Err(replacement) => response
                .into_response(into_actix(replacement))
                .map_into_right_body(),
        }
    }
}

/// The request's session, from the keys its session cookie and its key header (`header_name`)
/// present; the route's transport picks one at the first use (the one place this adapter reads
/// the key). Nothing touches the store until a handler uses the session.
fn start(sessions: &Sessions, headers: &HeaderMap) -> LazySession {
    let key_header = sessions.settings().session.header_name.as_str();
    sessions.start_request(
        headers.get_all(COOKIE).map(HeaderValue::as_bytes),
        headers.get_all(key_header).map(HeaderValue::as_bytes),
    )
}

/// Appends what the end of the request adds (`Vary`, `Set-Cookie`, the key header) to the handler's
/// response (the one place this adapter writes the key). actix-web 4 speaks `http` 0.2, the
/// core `http` 1: the headers cross over as bytes, which both accept alike.
fn write(headers: &mut HeaderMap, added: ResponseHeaders) {
    for (name, value) in added {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            headers.append(name, value);
        }
    }
}
