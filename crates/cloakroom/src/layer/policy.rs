use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use crate::config::OnStoreError;
use crate::LazySession;

/// Sets the store-error policy for the routes it wraps, overriding the settings: put it inside
/// the [`SessionLayer`](super::SessionLayer) (in axum, `route_layer` on the routes that should
/// fail open, such as a public landing page).
#[derive(Debug, Clone, Copy)]
pub struct OnStoreErrorLayer {
    policy: OnStoreError,
}

impl OnStoreErrorLayer {
    /// A layer that applies `policy` to the requests it sees.
    pub fn new(policy: OnStoreError) -> Self {
        Self { policy }
    }
}

impl<S> Layer<S> for OnStoreErrorLayer {
    type Service = OnStoreErrorService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        OnStoreErrorService {
            inner,
            policy: self.policy,
        }
    }
}

/// The service made by [`OnStoreErrorLayer`].
#[derive(Debug, Clone)]
pub struct OnStoreErrorService<S> {
    inner: S,
    policy: OnStoreError,
}

impl<S, B> Service<Request<B>> for OnStoreErrorService<S>
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
            session.set_on_store_error(self.policy);
        }
        self.inner.call(request)
    }
}
