//! The end of a request as a web framework adapter applies it: the headers to add to the
//! handler's response, or the response that replaces it when the save failed. Every adapter
//! (the tower layer, the actix-web middleware) calls [`LazySession::finish`] and only copies
//! what it returns into its own response type, so the rules stay here.

use std::future::Future;
use std::pin::Pin;

use http::header::{HeaderName, HeaderValue, SET_COOKIE, VARY};
use time::OffsetDateTime;

use crate::error::Error;

use crate::config::Settings;
use crate::cookies;
use crate::manager::LazySession;
use crate::plan::{CookieAction, Outcome};
use crate::transport::Transport;

/// What the end of a request adds to the handler's response, in the order the headers go out:
/// `Vary` for each request header the response depends on (`Cookie`, the key header), the
/// session's `Set-Cookie`, and the key header (empty to make the client forget its key; see
/// [`crate::transport`]). Iterate it for the (name, value) pairs; it allocates nothing beyond
/// the header values themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseHeaders {
    headers: [Option<(HeaderName, HeaderValue)>; 4],
}

impl ResponseHeaders {
    /// Whether there is nothing to add.
    pub fn is_empty(&self) -> bool {
        self.headers.iter().all(Option::is_none)
    }
}

impl IntoIterator for ResponseHeaders {
    type Item = (HeaderName, HeaderValue);
    type IntoIter = std::iter::Flatten<std::array::IntoIter<Option<Self::Item>, 4>>;

    fn into_iter(self) -> Self::IntoIter {
        self.headers.into_iter().flatten()
    }
}

impl Outcome {
    /// The response headers this outcome asks for (see [`ResponseHeaders`]), for an adapter
    /// that calls [`LazySession::commit`] itself rather than [`LazySession::finish`].
    ///
    /// # Examples
    /// ```
    /// # async fn demo(lazy: cloakroom_core::LazySession, sessions: cloakroom_core::Sessions) -> Result<(), cloakroom_core::Error> {
    /// let outcome = lazy.commit(200).await?;
    /// for (name, value) in outcome.response_headers(sessions.settings(), sessions.clock().now()) {
    ///     // response.headers_mut().append(name, value) in your framework
    ///     println!("{name}: {value:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn response_headers(&self, settings: &Settings, now: OffsetDateTime) -> ResponseHeaders {
        // The key header's name is parsed only on routes that use it; `Settings::validate`
        // checked that it parses.
        let key_header = || HeaderName::from_bytes(settings.session.header_name.as_bytes()).ok();
        let vary_cookie = (self.vary && self.transport != Transport::Header)
            .then(|| (VARY, HeaderValue::from_static("Cookie")));
        let vary_key = if self.vary && self.transport != Transport::Cookie {
            key_header().and_then(|name| {
                let value = HeaderValue::from_str(name.as_str()).ok()?;
                Some((VARY, value))
            })
        } else {
            None
        };
        let set_cookie =
            cookies::set_cookie_value(&self.cookie, settings, now).map(|value| (SET_COOKIE, value));
        let key = match &self.header {
            CookieAction::Keep => None,
            CookieAction::Set { value, .. } => HeaderValue::from_str(value).ok(),
            CookieAction::Delete => Some(HeaderValue::from_static("")),
        }
        .and_then(|value| Some((key_header()?, value)));
        ResponseHeaders {
            headers: [vary_cookie, vary_key, set_cookie, key],
        }
    }
}

/// The end of a request as [`LazySession::finishing`] starts it: over already, or a save to
/// await. Either way the answer is the one [`LazySession::finish`] gives.
// `Ready` is large and `Saving` a pointer: boxing `Ready` would put back the allocation that
// this type exists to spare every read-only request.
#[allow(clippy::large_enum_variant)]
pub enum Finishing {
    /// Nothing to ask of the store (the session was not used, only read, or travels in the
    /// cookie): the headers to append, or the replacement response.
    Ready(Result<ResponseHeaders, http::Response<String>>),
    /// The store's part (a save, a touch, a deletion), boxed with what it needs: await it.
    Saving(Pin<Box<dyn Future<Output = Result<ResponseHeaders, http::Response<String>>> + Send>>),
}

impl std::fmt::Debug for Finishing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ready(result) => f.debug_tuple("Ready").field(result).finish(),
            Self::Saving(_) => f.write_str("Saving(..)"),
        }
    }
}

impl LazySession {
    /// Ends the request's session after the handler ran ([`commit`](Self::commit)) and says
    /// what the response gets: `Ok` with the headers to append to the handler's response, or
    /// `Err` with the response to send instead when the save failed (the app's error handler's,
    /// else [`error_response`](crate::response::error_response)'s; the failure is logged).
    ///
    /// `status` is the handler's response status (nothing is saved on a 5xx). Call it when the
    /// handler has returned its response, before the body streams: the cookie goes out in the
    /// headers.
    ///
    /// # Errors
    /// The replacement response, as above.
    pub async fn finish(&self, status: u16) -> Result<ResponseHeaders, http::Response<String>> {
        let committed = self.commit(status).await;
        self.respond(committed)
    }

    /// [`finish`](Self::finish) for an adapter's own future: the answer at once when the end
    /// of the request asks nothing of the store, which is every request that only read its
    /// session, else the save to await. The tower layer uses it so that such a request costs
    /// no allocation and no future at its end.
    pub fn finishing(&self, status: u16) -> Finishing {
        let inner = self.context();
        if let Some(outcome) = self.end_if_unused() {
            return Finishing::Ready(self.respond(Ok(outcome)));
        }
        if !self.is_loaded() {
            let this = self.clone();
            return Finishing::Saving(Box::pin(async move { this.finish(status).await }));
        }
        match crate::runner::begin(inner, status) {
            crate::runner::Begun::Done(result) => Finishing::Ready(self.respond(result)),
            crate::runner::Begun::Store(mut rest) => {
                let this = self.clone();
                Finishing::Saving(Box::pin(async move {
                    let result = rest.run(this.context()).await;
                    this.respond(result)
                }))
            }
        }
    }

    /// What the response gets for a committed (or failed) end of the request.
    // The error is the response itself, as `finish` returns it.
    #[allow(clippy::result_large_err)]
    fn respond(
        &self,
        committed: Result<Outcome, Error>,
    ) -> Result<ResponseHeaders, http::Response<String>> {
        match committed {
            Ok(outcome) => {
                let shared = self.shared();
                // The instant the request's end was planned at, which dated the expiry: the
                // cookie's `Expires` says the same, and the clock is read once.
                let planned = self.planned_at();
                let now = match (planned, &outcome.cookie) {
                    (Some(at), _) => at,
                    // Nothing planned (the session was not used): no cookie to date.
                    (None, CookieAction::Keep) => OffsetDateTime::UNIX_EPOCH,
                    (None, _) => shared.clock.now(),
                };
                Ok(outcome.response_headers(&shared.settings, now))
            }
            Err(error) => {
                crate::observe::warn_store_failure(
                    self.shared().engine(),
                    &error,
                    "session save failed",
                );
                Err(self.error_response(&error))
            }
        }
    }
}
