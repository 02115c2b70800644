use tower_layer::Layer;

use super::SessionService;
use crate::manager::Sessions;

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
#[derive(Clone, Debug)]
pub struct SessionLayer {
    sessions: Sessions,
}

impl SessionLayer {
    /// A layer over the given session machinery.
    pub fn new(sessions: Sessions) -> Self {
        Self { sessions }
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService::new(inner, self.sessions.clone())
    }
}
