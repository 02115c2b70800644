//! The extractors: `Session` (and `Option<Session>`) as a handler argument, in axum (feature
//! `axum`, here) and in actix-web (feature `actix`, `actix.rs`). Both find the request's
//! [`LazySession`] that the adapter put in the request's extensions and load it here.

use crate::error::Error;
use crate::manager::LazySession;
use crate::session::Session;

/// Why a [`Session`] could not be extracted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionRejection {
    /// The router has no `SessionLayer` (the `cloakroom` crate).
    #[error(
        "no session layer: add `.layer(cloakroom::SessionLayer::new(sessions))` to the router"
    )]
    MissingLayer,
    /// The actix-web app has no `SessionMiddleware` (the `cloakroom-actix` crate).
    #[error(
        "no session middleware: add `.wrap(cloakroom_actix::SessionMiddleware::new(sessions))` \
         to the App (or to the scope or resource of this route)"
    )]
    MissingMiddleware,
    /// The session could not be loaded: the store failed (fail-closed policy), or an
    /// exclusive route waited out its bound.
    #[error(transparent)]
    Load(#[from] Error),
    /// As `Load`, answered with the response of the layer's
    /// error handler (`SessionLayer::with_error_handler`).
    #[error("{error}")]
    Handled {
        /// What went wrong.
        error: Error,
        /// The handler's response.
        response: http::Response<String>,
    },
}

impl SessionRejection {
    /// The response this rejection answers with, in the `http` crate's types: a 500 naming
    /// the missing layer or middleware (logged as an error: it is the app's bug), else the
    /// error handler's or the default [`error_response`](crate::response::error_response).
    pub fn response(&self) -> http::Response<String> {
        match self {
            Self::MissingLayer | Self::MissingMiddleware => {
                tracing::error!("{self}");
                let mut response = http::Response::new(self.to_string());
                *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                response
            }
            Self::Load(e) => crate::response::error_response(e),
            Self::Handled { response, .. } => {
                let mut copy = http::Response::new(response.body().clone());
                *copy.status_mut() = response.status();
                *copy.headers_mut() = response.headers().clone();
                copy
            }
        }
    }
}

/// Loads the request's session, answering a failure with the app's error handler when it set
/// one.
pub(crate) async fn load(lazy: &LazySession) -> Result<Session, SessionRejection> {
    lazy.load().await.map_err(|error| {
        if lazy.has_error_handler() {
            let response = lazy.error_response(&error);
            SessionRejection::Handled { error, response }
        } else {
            SessionRejection::Load(error)
        }
    })
}

#[cfg(feature = "axum")]
mod axum_impls {
    use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
    use axum_core::response::{IntoResponse, Response};
    use http::request::Parts;

    use super::{load, SessionRejection};
    use crate::manager::LazySession;
    use crate::session::Session;

    impl IntoResponse for SessionRejection {
        fn into_response(self) -> Response {
            self.response().map(axum_core::body::Body::from)
        }
    }

    impl<S: Send + Sync> FromRequestParts<S> for Session {
        type Rejection = SessionRejection;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Self, Self::Rejection> {
            let lazy = parts
                .extensions
                .get::<LazySession>()
                .cloned()
                .ok_or(SessionRejection::MissingLayer)?;
            load(&lazy).await
        }
    }

    /// `Option<Session>` is `None` when the router has no session layer.
    impl<S: Send + Sync> OptionalFromRequestParts<S> for Session {
        type Rejection = SessionRejection;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Option<Self>, Self::Rejection> {
            match parts.extensions.get::<LazySession>().cloned() {
                Some(lazy) => load(&lazy).await.map(Some),
                None => Ok(None),
            }
        }
    }
}
