use std::fmt;
use std::sync::Arc;

use http::Response;
use tower_layer::Layer;

use super::SessionService;
use crate::Error;
use crate::Sessions;

pub use crate::response::ErrorHandler;

/// Adds sessions to every request of the wrapped service.
///
/// # Examples
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use cloakroom::{engines::sqlite::SqliteStore, Sessions, SessionLayer, Settings};
/// let store = SqliteStore::connect("sqlite://sessions.sqlite3?mode=rwc").await?;
/// store.migrate().await?;
/// let layer = SessionLayer::new(Sessions::new(store, Settings::default())?);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SessionLayer {
    sessions: Sessions,
    on_error: Option<ErrorHandler>,
}

impl fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLayer")
            .field("sessions", &self.sessions)
            .field("custom_error_handler", &self.on_error.is_some())
            .finish()
    }
}

impl SessionLayer {
    /// A layer over the given session machinery.
    pub fn new(sessions: Sessions) -> Self {
        Self {
            sessions,
            on_error: None,
        }
    }

    /// Answers every session error with `handler`'s response instead of the default
    /// [`error_response`](super::error_response): a store failure, a session deleted by
    /// another request, a save that could not merge, a session too large, an exclusive route's
    /// wait running out. It answers both a failed load (the axum extractor's rejection) and a
    /// failed save after the handler ran. Match on [`Error`] and fall back to
    /// `error_response` for the rest.
    ///
    /// # Examples
    /// ```
    /// use cloakroom::{layer::error_response, Error, SessionLayer};
    /// # fn demo(sessions: cloakroom::Sessions) -> SessionLayer {
    /// SessionLayer::new(sessions).with_error_handler(|error: &Error| match error {
    ///     Error::ExclusiveTimeout { .. } => http::Response::builder()
    ///         .status(429)
    ///         .body("busy, try again\n".to_owned())
    ///         .unwrap_or_default(),
    ///     other => error_response(other),
    /// })
    /// # }
    /// ```
    #[must_use]
    pub fn with_error_handler(
        mut self,
        handler: impl Fn(&Error) -> Response<String> + Send + Sync + 'static,
    ) -> Self {
        self.on_error = Some(Arc::new(handler));
        self
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService::new(inner, self.sessions.clone(), self.on_error.clone())
    }
}
