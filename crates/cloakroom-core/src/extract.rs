//! The axum extractor: `Session` (and `Option<Session>`) as a handler argument.

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;

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

impl IntoResponse for SessionRejection {
    fn into_response(self) -> Response {
        match self {
            Self::MissingLayer => {
                tracing::error!("{self}");
                (http::StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
            }
            Self::Load(e) => crate::response::error_response::<axum_core::body::Body>(&e),
            Self::Handled { response, .. } => response.map(axum_core::body::Body::from),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
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

async fn load(lazy: &LazySession) -> Result<Session, SessionRejection> {
    lazy.load().await.map_err(|error| {
        if lazy.has_error_handler() {
            let response = lazy.error_response(&error);
            SessionRejection::Handled { error, response }
        } else {
            SessionRejection::Load(error)
        }
    })
}
