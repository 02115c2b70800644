use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use crate::transport::Transport;
use crate::LazySession;

/// Sets where the session key travels on the routes it wraps, overriding the `transport`
/// setting: the session cookie, the key header (`header_name`, `X-Session-Token` by default),
/// or both. Put it inside the [`SessionLayer`](super::SessionLayer) (in axum, `route_layer` on
/// the routes of an API that mobile apps call with the header, say). The rules, and the CSRF
/// trade-off between the two: [`crate::transport`].
///
/// # Examples
/// ```no_run
/// use axum::{routing::get, Router};
/// use cloakroom::{layer::TransportLayer, Transport};
/// # async fn profile() {}
/// let api: Router = Router::new()
///     .route("/api/profile", get(profile))
///     .route_layer(TransportLayer::new(Transport::Header));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TransportLayer {
    transport: Transport,
}

impl TransportLayer {
    /// A layer that makes the requests it sees use `transport`.
    pub fn new(transport: Transport) -> Self {
        Self { transport }
    }
}

impl<S> Layer<S> for TransportLayer {
    type Service = TransportService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TransportService {
            inner,
            transport: self.transport,
        }
    }
}

/// The service made by [`TransportLayer`].
#[derive(Debug, Clone)]
pub struct TransportService<S> {
    inner: S,
    transport: Transport,
}

impl<S, B> Service<Request<B>> for TransportService<S>
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
            session.set_transport(self.transport);
        }
        self.inner.call(request)
    }
}
