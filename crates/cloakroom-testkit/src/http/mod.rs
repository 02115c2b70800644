//! # The HTTP suite
//!
//! What a visitor sees over HTTP, written once and run against any web framework adapter of
//! cloakroom (feature `http`). The suite talks HTTP to a base URL on loopback, so it depends on
//! no framework: an adapter passes it by serving the routes below under its session layer.
//!
//! ## The contract an app under test serves
//!
//! The session cookie keeps Django's default name, [`sessionid`](COOKIE_NAME), and the app runs
//! with Django's default settings except where the [`Setup`] of a test says otherwise.
//! Requests carry JSON bodies; every `/api/*` route uses the session, `/health` never does.
//!
//! | route | what the handler does with the session | answer |
//! |---|---|---|
//! | `GET /api/visits` | adds one to `visits` | `{"visits": n}` |
//! | `POST /api/flash` `{"message": m}` | stores `flash` | `204`, empty body |
//! | `GET /api/flash` | pops `flash` | `{"message": m}` or `{"message": null}` |
//! | `POST /api/cart` `{"item": i}` | appends `i` to `cart` | `{"count": n, "items": [...]}` |
//! | `GET /api/cart` | reads `cart` | `{"count": n, "items": [...]}` |
//! | `POST /api/checkout` | removes `cart` | `{"count": 0, "items": []}` |
//! | `POST /api/login` `{"username": u}` | a new key (`cycle_key`, as Django's `login`), then stores `username` | `{"username": u}` |
//! | `GET /api/whoami` | reads `username` | `{"username": u}` or `{"username": null}` |
//! | `POST /api/logout` | `flush` (as Django's `logout`) | `204` |
//! | `POST /api/expiry` `{"seconds": s}` | `set_expiry(s)`; `0` ends the session at browser close | `{"expiry_age": a, "expire_at_browser_close": b}` |
//! | `GET /health` | nothing: the session is never extracted | `200` |
//!
//! `cloakroom demo` serves exactly this (its JSON API); `crates/cloakroom-cli/tests/http_suite.rs`
//! runs the suite on it for every engine.
//!
//! ## Running it
//!
//! [`http_suite!`](crate::http_suite) takes a function or closure from a [`Setup`] to a future
//! of [`AppUnderTest`]: it starts the app with those settings on a free loopback port and
//! returns the base URL together with whatever keeps the app running (a child process, a
//! server task's guard), dropped when the test ends. Every test starts its own app.
//!
//! ```no_run
//! use cloakroom_testkit::http::{AppUnderTest, Setup};
//!
//! /// Stops the app's process when the test is over.
//! struct Running(std::process::Child);
//!
//! impl Drop for Running {
//!     fn drop(&mut self) {
//!         let _ = self.0.kill();
//!         let _ = self.0.wait();
//!     }
//! }
//!
//! async fn start(setup: Setup) -> AppUnderTest {
//!     let port = std::net::TcpListener::bind("127.0.0.1:0")
//!         .and_then(|l| l.local_addr())
//!         .expect("a free loopback port")
//!         .port();
//!     let mut app = std::process::Command::new("my-app");
//!     app.arg("--port").arg(port.to_string());
//!     if setup.save_every_request {
//!         app.arg("--save-every-request");
//!     }
//!     if let Some(age) = setup.cookie_age {
//!         app.arg("--cookie-age").arg(age.to_string());
//!     }
//!     if setup.expire_at_browser_close {
//!         app.arg("--expire-at-browser-close");
//!     }
//!     app.arg("--transport").arg(setup.transport.to_string());
//!     let child = app.spawn().expect("the app starts");
//!     // (wait here until the port accepts connections)
//!     AppUnderTest::new(format!("http://127.0.0.1:{port}"), Running(child))
//! }
//!
//! // One `#[tokio::test]` per behaviour (the crate using it needs tokio with `macros` and `rt`).
//! cloakroom_testkit::http_suite!(start);
//! # // The generated tests exist only under `--test`; this checks `start` fits all the same.
//! # fn main() { let _ = cloakroom_testkit::http::Start::new(start); }
//! ```
//!
//! The key header tests (`header_*`, `both_*`) run the app with [`Setup::header`] or
//! [`Setup::both`] and expect the key in [`KEY_HEADER`], `header_name`'s default.
//!
//! An app that keeps the session in the cookie itself (signed cookies) has no key on the
//! server to revoke or keep, nor one to send in a header: it declares so with `http_suite!(start, without(server_side))`,
//! and the tests that need one are still generated, marked `#[ignore]` with the reason, so a
//! test run lists them as skipped rather than leaving them out.

mod client;
mod contract;
mod header;
mod rules;
mod server_side;

pub use client::{bare, is_key, send, session, visitor, Reply, SetCookie, COOKIE_NAME};
pub use contract::*;
pub use header::*;
pub use rules::*;
pub use server_side::*;

use std::any::Any;

pub use cloakroom_core::Transport;
use std::future::Future;
use std::pin::Pin;

/// The settings one test needs the app to run with; everything not named here keeps Django's
/// default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Setup {
    /// `SESSION_SAVE_EVERY_REQUEST`: save (and resend the cookie) on every request that used
    /// the session, not only on a change.
    pub save_every_request: bool,
    /// `SESSION_COOKIE_AGE` in seconds; `None` keeps Django's two weeks (1 209 600).
    pub cookie_age: Option<u64>,
    /// `SESSION_EXPIRE_AT_BROWSER_CLOSE`: cookies without `Max-Age` or `Expires`.
    pub expire_at_browser_close: bool,
    /// cloakroom's `transport` setting: where the session key travels (the cookie by default;
    /// the header is [`KEY_HEADER`], `header_name`'s default).
    pub transport: Transport,
}

impl Setup {
    /// Django's defaults.
    pub fn django() -> Self {
        Self::default()
    }

    /// As Django's defaults with `SESSION_SAVE_EVERY_REQUEST = True`.
    pub fn save_every_request() -> Self {
        Self {
            save_every_request: true,
            ..Self::default()
        }
    }

    /// As Django's defaults with `SESSION_COOKIE_AGE = seconds`.
    pub fn cookie_age(seconds: u64) -> Self {
        Self {
            cookie_age: Some(seconds),
            ..Self::default()
        }
    }

    /// The key in the [`KEY_HEADER`] header only (`transport = "header"`).
    pub fn header() -> Self {
        Self {
            transport: Transport::Header,
            ..Self::default()
        }
    }

    /// The key in the cookie or the [`KEY_HEADER`] header (`transport = "both"`).
    pub fn both() -> Self {
        Self {
            transport: Transport::Both,
            ..Self::default()
        }
    }

    /// As Django's defaults with `SESSION_EXPIRE_AT_BROWSER_CLOSE = True`.
    pub fn expire_at_browser_close() -> Self {
        Self {
            expire_at_browser_close: true,
            ..Self::default()
        }
    }
}

/// A running app: its base URL, and what keeps it running until the test drops it.
pub struct AppUnderTest {
    base_url: String,
    _running: Box<dyn Any>,
}

impl AppUnderTest {
    /// An app serving at `base_url` (`http://127.0.0.1:PORT`, no trailing slash), kept running
    /// while `running` lives: a guard that stops the app when dropped.
    pub fn new(base_url: impl Into<String>, running: impl Any) -> Self {
        let base_url = base_url.into().trim_end_matches('/').to_owned();
        Self {
            base_url,
            _running: Box::new(running),
        }
    }

    /// The base URL + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }
}

impl std::fmt::Debug for AppUnderTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppUnderTest")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

type Starting = Pin<Box<dyn Future<Output = AppUnderTest>>>;

/// How the suite starts the app under test: the function given to
/// [`http_suite!`](crate::http_suite), boxed so that the suite's functions are compiled once
/// in this crate rather than once per test.
pub struct Start(Box<dyn Fn(Setup) -> Starting>);

impl Start {
    /// Wraps `start`, which starts the app with a [`Setup`] applied.
    pub fn new<F, Fut>(start: F) -> Self
    where
        F: Fn(Setup) -> Fut + 'static,
        Fut: Future<Output = AppUnderTest> + 'static,
    {
        Self(Box::new(move |setup| Box::pin(start(setup))))
    }

    /// Starts an app with `setup`.
    pub async fn app(&self, setup: Setup) -> AppUnderTest {
        (self.0)(setup).await
    }
}

/// Expands to one `#[tokio::test]` per behaviour of the [HTTP suite](crate::http), run against
/// the app that `$start` starts (a function or closure `Fn(Setup) -> impl Future<Output =
/// AppUnderTest>`).
///
/// `without(server_side)` declares an app that keeps the session in the cookie itself (signed
/// cookies): the tests of server-side keys (revocation after login and logout, a key kept
/// when the session empties, the key in a header) are generated as `#[ignore]`d tests that
/// say why. The crate
/// expanding it needs `tokio` (features `macros`, `rt`) among its dev-dependencies.
///
/// See [the module](crate::http) for the routes the app must serve and an example.
#[macro_export]
macro_rules! http_suite {
    ($start:expr) => {
        $crate::http_suite!(@all $start; {});
    };
    ($start:expr, without(server_side)) => {
        $crate::http_suite!(@all $start; {
            #[ignore = "declared without(server_side): the session travels in the cookie, so \
                        there is no key on the server to revoke or keep"]
        });
    };
    (@all $start:expr; $server_side:tt) => {
        $crate::http_suite!(@group $start; {};
            visits_count_per_visitor, flash_is_shown_once, cart_adds_lists_and_checks_out,
            login_keeps_the_data_and_sends_a_new_cookie, logout_deletes_the_cookie_and_the_data,
            per_session_expiry_sets_the_cookie_lifetime, an_expired_session_starts_fresh,
            the_session_cookie_has_djangos_attributes, cookie_age_sets_max_age_and_expires,
            expire_at_browser_close_drops_max_age_and_expires,
            a_session_never_written_sends_no_cookie, read_only_requests_send_no_cookie,
            save_every_request_resends_the_cookie, responses_that_used_the_session_vary_on_cookie,
            a_route_that_never_uses_the_session_sends_no_cookie_and_no_vary,
            a_malformed_or_unknown_cookie_starts_a_fresh_session,
            an_unknown_cookie_on_a_read_only_request_is_deleted);
        $crate::http_suite!(@group $start; $server_side;
            the_cookie_from_before_login_no_longer_works, a_logged_out_cookie_no_longer_works,
            an_emptied_session_keeps_its_key,
            header_transport_hands_out_the_key_in_the_header_not_a_cookie,
            header_transport_ignores_the_session_cookie,
            header_login_hands_out_a_new_key_and_the_old_one_stops_working,
            header_logout_sends_an_empty_header_and_the_key_stops_working,
            header_an_unknown_or_malformed_key_starts_afresh,
            header_an_expired_session_starts_fresh, header_concurrent_requests_all_land,
            both_transports_prefer_the_header_and_answer_the_way_the_key_came);
    };
    (@group $start:expr; $attrs:tt; $($name:ident),*) => {
        $( $crate::http_suite!(@one $start; $attrs; $name); )*
    };
    (@one $start:expr; { $(#[$attr:meta])* }; $name:ident) => {
        #[tokio::test]
        $(#[$attr])*
        async fn $name() {
            $crate::http::$name($crate::http::Start::new($start)).await;
        }
    };
}
