//! The end of a request as a web framework adapter applies it: the headers to add to the
//! handler's response, or the response that replaces it when the save failed. Every adapter
//! (the tower layer, the actix-web middleware) calls [`LazySession::finish`] and only copies
//! what it returns into its own response type, so the rules stay here.

use http::header::{HeaderName, HeaderValue, SET_COOKIE, VARY};

use crate::cookies;
use crate::manager::LazySession;

/// What the end of a request adds to the handler's response: `Vary: Cookie` when the session
/// was used, and the session's `Set-Cookie` when the cookie must change. Iterate it for the
/// headers, in the order they go out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseHeaders {
    vary: bool,
    set_cookie: Option<HeaderValue>,
}

impl ResponseHeaders {
    /// Whether there is nothing to add.
    pub fn is_empty(&self) -> bool {
        !self.vary && self.set_cookie.is_none()
    }
}

impl IntoIterator for ResponseHeaders {
    type Item = (HeaderName, HeaderValue);
    type IntoIter = std::iter::Chain<
        std::option::IntoIter<(HeaderName, HeaderValue)>,
        std::option::IntoIter<(HeaderName, HeaderValue)>,
    >;

    fn into_iter(self) -> Self::IntoIter {
        let vary = self
            .vary
            .then(|| (VARY, HeaderValue::from_static("Cookie")));
        vary.into_iter()
            .chain(self.set_cookie.map(|value| (SET_COOKIE, value)))
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
        match self.commit(status).await {
            Ok(outcome) => {
                let shared = self.shared();
                let now = shared.clock.now();
                let set_cookie = cookies::set_cookie_header(&outcome.cookie, &shared.settings, now)
                    .and_then(|value| HeaderValue::try_from(value).ok());
                Ok(ResponseHeaders {
                    vary: outcome.vary,
                    set_cookie,
                })
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
