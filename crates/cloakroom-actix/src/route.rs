//! Per-route options, set on the request's session before its handler runs: the store-error
//! policy ([`OnStoreErrorLayer`]), exclusive mode ([`ExclusiveLayer`]) and where the key
//! travels ([`TransportLayer`]). Same names and
//! behaviour as the tower layers; wrap a resource or scope inside the
//! [`SessionMiddleware`](crate::SessionMiddleware) with them.

use std::future::{ready, Ready};
use std::time::Duration;

use actix_web::dev::{forward_ready, Service, ServiceRequest, Transform};
use actix_web::HttpMessage as _;
use cloakroom_core::transport::Transport;
use cloakroom_core::{LazySession, OnStoreError};

/// Sets the store-error policy for the routes it wraps, overriding the settings: wrap the
/// resources or scopes that should fail open (a public landing page) or closed.
///
/// # Examples
/// ```no_run
/// use actix_web::{web, App};
/// use cloakroom::{OnStoreError, Session};
/// use cloakroom_actix::{OnStoreErrorLayer, SessionMiddleware};
/// # async fn landing(_session: Session) -> &'static str { "welcome" }
/// # fn demo(sessions: cloakroom::Sessions) {
/// let app = App::new()
///     .wrap(SessionMiddleware::new(sessions))
///     .service(
///         web::resource("/")
///             .wrap(OnStoreErrorLayer::new(OnStoreError::FailOpen))
///             .route(web::get().to(landing)),
///     );
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct OnStoreErrorLayer {
    policy: OnStoreError,
}

impl OnStoreErrorLayer {
    /// A middleware that applies `policy` to the requests it sees.
    pub fn new(policy: OnStoreError) -> Self {
        Self { policy }
    }
}

/// Runs the routes it wraps one at a time per visitor: an exclusive request waits until the
/// same session's other exclusive requests in this process have saved, then loads what they
/// saved. Requests on routes without it never wait. As the tower `ExclusiveLayer`: off by
/// default (concurrent saves merge anyway), the wait bounded by `lock_timeout_ms` or
/// [`with_wait`](Self::with_wait), and a wait that runs out fails the request with
/// `Error::ExclusiveTimeout` (409 by default), never runs it without its turn. The turn is
/// per process.
///
/// # Examples
/// ```no_run
/// # use std::time::Duration;
/// use actix_web::{web, App};
/// use cloakroom::Session;
/// use cloakroom_actix::{ExclusiveLayer, SessionMiddleware};
/// # async fn checkout(_session: Session) -> &'static str { "paid" }
/// # fn demo(sessions: cloakroom::Sessions) {
/// let app = App::new()
///     .wrap(SessionMiddleware::new(sessions))
///     .service(
///         web::resource("/checkout")
///             .wrap(ExclusiveLayer::new().with_wait(Duration::from_secs(5)))
///             .route(web::post().to(checkout)),
///     );
/// # }
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

/// Sets where the session key travels on the routes it wraps, overriding the `transport`
/// setting: the session cookie, the key header (`header_name`, `X-Session-Token` by default),
/// or both, as the tower `TransportLayer`. The rules, and the CSRF trade-off between the two:
/// [`cloakroom_core::transport`].
///
/// # Examples
/// ```no_run
/// use actix_web::{web, App};
/// use cloakroom::{Session, Transport};
/// use cloakroom_actix::{SessionMiddleware, TransportLayer};
/// # async fn profile(_session: Session) -> &'static str { "me" }
/// # fn demo(sessions: cloakroom::Sessions) {
/// let app = App::new()
///     .wrap(SessionMiddleware::new(sessions))
///     .service(
///         web::scope("/api")
///             .wrap(TransportLayer::new(Transport::Header))
///             .route("/profile", web::get().to(profile)),
///     );
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TransportLayer {
    transport: Transport,
}

impl TransportLayer {
    /// A middleware that makes the requests it sees use `transport`.
    pub fn new(transport: Transport) -> Self {
        Self { transport }
    }
}

/// What a per-route middleware sets on the request's session.
#[derive(Debug, Clone, Copy)]
enum RouteOption {
    Policy(OnStoreError),
    Exclusive(Option<Duration>),
    Transport(Transport),
}

/// The service made by [`OnStoreErrorLayer`], [`ExclusiveLayer`] and [`TransportLayer`]: sets its option on the
/// request's session (when a [`SessionMiddleware`](crate::SessionMiddleware) started one) and
/// calls the route.
#[derive(Debug)]
pub struct RouteService<S> {
    inner: S,
    option: RouteOption,
}

impl<S> Service<ServiceRequest> for RouteService<S>
where
    S: Service<ServiceRequest>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    forward_ready!(inner);

    fn call(&self, request: ServiceRequest) -> Self::Future {
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

macro_rules! route_transform {
    ($layer:ty, |$this:ident| $option:expr) => {
        impl<S> Transform<S, ServiceRequest> for $layer
        where
            S: Service<ServiceRequest>,
        {
            type Response = S::Response;
            type Error = S::Error;
            type Transform = RouteService<S>;
            type InitError = ();
            type Future = Ready<Result<Self::Transform, Self::InitError>>;

            fn new_transform(&self, inner: S) -> Self::Future {
                let $this = self;
                ready(Ok(RouteService {
                    inner,
                    option: $option,
                }))
            }
        }
    };
}

route_transform!(OnStoreErrorLayer, |this| RouteOption::Policy(this.policy));
route_transform!(ExclusiveLayer, |this| RouteOption::Exclusive(this.wait));
route_transform!(TransportLayer, |this| RouteOption::Transport(
    this.transport
));
