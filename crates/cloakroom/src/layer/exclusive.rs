use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use crate::LazySession;

/// Runs the routes it wraps one at a time per visitor (Laravel's `->block()`): an exclusive
/// request waits until the same session's other exclusive requests in this process have
/// saved, then loads what they saved. Requests on routes without it never wait, for anything.
///
/// Off by default, because nothing needs it for correctness: concurrent saves of one session
/// merge (see the concurrency guide). Use it for the rare handler whose side effects outside
/// the session must not interleave with the same visitor's (a payment step that reads and
/// then spends a balance kept in the session, say). The wait is bounded (`lock_timeout_ms`,
/// or [`with_wait`](Self::with_wait)); when it runs out the request fails with
/// [`Error::ExclusiveTimeout`](crate::Error::ExclusiveTimeout), answered by the session
/// layer's error handler (409 by default), never run without its turn.
///
/// Put it inside the [`SessionLayer`](super::SessionLayer): in axum, `route_layer` on the
/// exclusive routes. The turn is per process: with several app servers, requests that reach
/// different servers still run at once (and their saves still merge).
///
/// # Examples
/// ```no_run
/// # use std::time::Duration;
/// use axum::{routing::post, Router};
/// use cloakroom::layer::ExclusiveLayer;
/// # async fn checkout() {}
/// let app: Router = Router::new()
///     .route("/checkout", post(checkout))
///     .route_layer(ExclusiveLayer::new().with_wait(Duration::from_secs(5)));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ExclusiveLayer {
    wait: Option<Duration>,
}

impl ExclusiveLayer {
    /// Exclusive routes that wait at most the `lock_timeout_ms` setting for their turn.
    pub fn new() -> Self {
        Self::default()
    }

    /// Waits at most `wait` for the turn instead of the `lock_timeout_ms` setting.
    #[must_use]
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = Some(wait);
        self
    }
}

impl<S> Layer<S> for ExclusiveLayer {
    type Service = ExclusiveService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ExclusiveService {
            inner,
            wait: self.wait,
        }
    }
}

/// The service made by [`ExclusiveLayer`].
#[derive(Debug, Clone)]
pub struct ExclusiveService<S> {
    inner: S,
    wait: Option<Duration>,
}

impl<S, B> Service<Request<B>> for ExclusiveService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if let Some(session) = request.extensions().get::<LazySession>() {
            session.set_exclusive(self.wait);
        }
        self.inner.call(request)
    }
}
