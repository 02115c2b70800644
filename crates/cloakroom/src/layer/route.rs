//! Per-route options, set on the request's session before its handler runs: the store-error
//! policy ([`OnStoreErrorLayer`]), exclusive mode ([`ExclusiveLayer`]) and where the key travels
//! ([`TransportLayer`]). Each is a layer to put inside the [`SessionLayer`](super::SessionLayer)
//! (in axum, `route_layer` on the routes concerned); all three make one service,
//! [`RouteService`], which sets its option and calls the route. The actix-web adapter has the
//! same three under the same names.

use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use crate::config::OnStoreError;
use crate::transport::Transport;
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

/// What a per-route layer sets on the request's session.
#[derive(Debug, Clone, Copy)]
enum RouteOption {
    Policy(OnStoreError),
    Exclusive(Option<Duration>),
    Transport(Transport),
}

/// The service made by [`OnStoreErrorLayer`], [`ExclusiveLayer`] and [`TransportLayer`]: sets
/// its option on the request's session (when a [`SessionLayer`](super::SessionLayer) started
/// one) and calls the route.
#[derive(Debug, Clone)]
pub struct RouteService<S> {
    inner: S,
    option: RouteOption,
}

impl<S, B> Service<Request<B>> for RouteService<S>
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
            match self.option {
                RouteOption::Policy(policy) => session.set_on_store_error(policy),
                RouteOption::Exclusive(wait) => session.set_exclusive(wait),
                RouteOption::Transport(transport) => session.set_transport(transport),
            }
        }
        self.inner.call(request)
    }
}

macro_rules! route_layer {
    ($layer:ty, |$this:ident| $option:expr) => {
        impl<S> Layer<S> for $layer {
            type Service = RouteService<S>;
            fn layer(&self, inner: S) -> Self::Service {
                let $this = self;
                RouteService {
                    inner,
                    option: $option,
                }
            }
        }
    };
}

route_layer!(OnStoreErrorLayer, |this| RouteOption::Policy(this.policy));
route_layer!(ExclusiveLayer, |this| RouteOption::Exclusive(this.wait));
route_layer!(TransportLayer, |this| RouteOption::Transport(
    this.transport
));

/// The service [`OnStoreErrorLayer`] made before the three per-route layers shared one.
#[deprecated(note = "use `RouteService`, the one service of the per-route layers")]
pub type OnStoreErrorService<S> = RouteService<S>;
/// The service [`ExclusiveLayer`] made before the three per-route layers shared one.
#[deprecated(note = "use `RouteService`, the one service of the per-route layers")]
pub type ExclusiveService<S> = RouteService<S>;
/// The service [`TransportLayer`] made before the three per-route layers shared one.
#[deprecated(note = "use `RouteService`, the one service of the per-route layers")]
pub type TransportService<S> = RouteService<S>;
