//! actix-web's side of the core (feature `actix`; the `cloakroom-actix` crate turns it on):
//! [`Session`] as an extractor, [`Error`] and [`SessionRejection`] as responses. The orphan
//! rule puts these impls beside the types, as it does the axum ones (`extract.rs`).
//!
//! actix-web 4 speaks `http` 0.2 and the core `http` 1, so responses cross over by status
//! code and header bytes ([`into_actix`]).

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpMessage as _, HttpRequest, HttpResponse, ResponseError};

use crate::error::Error;
use crate::extract::{load, SessionRejection};
use crate::manager::LazySession;
use crate::session::Session;

/// `Session` as a handler argument; the `SessionMiddleware` of `cloakroom-actix` must wrap the
/// route, else the request fails with [`SessionRejection::MissingMiddleware`] (a 500 naming
/// what to add).
///
/// `Option<Session>` follows actix-web's rule for every `Option` extractor: `None` when the
/// middleware is missing and also when the session could not be loaded (a store outage on a
/// fail-closed route). Take `Result<Session, SessionRejection>` to tell the two apart.
impl FromRequest for Session {
    type Error = SessionRejection;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let lazy = req.extensions().get::<LazySession>().cloned();
        Box::pin(async move {
            let lazy = lazy.ok_or(SessionRejection::MissingMiddleware)?;
            load(&lazy).await
        })
    }
}

/// A handler's session error answers as the default
/// [`error_response`](crate::response::error_response) maps it (503 for a store failure, 409
/// for an exclusive route's timeout …).
impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        status_of(crate::response::error_response::<String>(self).status())
    }

    fn error_response(&self) -> HttpResponse {
        into_actix(crate::response::error_response(self))
    }
}

impl ResponseError for SessionRejection {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::MissingLayer | Self::MissingMiddleware => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Load(error) => error.status_code(),
            Self::Handled { response, .. } => status_of(response.status()),
        }
    }

    fn error_response(&self) -> HttpResponse {
        into_actix(self.response())
    }
}

fn status_of(status: http::StatusCode) -> StatusCode {
    StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// The core's response (an error handler's, the default error response) as an actix-web
/// response: the same status, headers and body.
#[doc(hidden)]
pub fn into_actix(response: http::Response<String>) -> HttpResponse {
    let (parts, body) = response.into_parts();
    let mut builder = HttpResponse::build(status_of(parts.status));
    for (name, value) in &parts.headers {
        // Both sides accept the same header bytes; a pair one of them refuses cannot occur.
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            builder.append_header((name, value));
        }
    }
    builder.body(body)
}
