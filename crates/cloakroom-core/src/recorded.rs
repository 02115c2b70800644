//! What one request recorded about its session: the change log ([`Op`]), the flags the
//! handle sets, and what the load found. The handle ([`crate::Session`]) writes it, the load
//! fills it, [`crate::plan`] reads it to decide the end of the request and the runner
//! executes that decision on it.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use time::OffsetDateTime;

use crate::codec::Data;
use crate::config::OnStoreError;
use crate::error::Error;
use crate::locks::KeyGuard;
use crate::response::ErrorHandler;
use crate::shared::Shared;
use crate::transport::{Presented, Transport, Via};

/// A change that re-runs against whatever the store holds now.
pub(crate) type Change = Arc<dyn Fn(&mut Data) -> Result<(), Error> + Send + Sync>;

/// One thing a request did to the data, replayed in order when its save meets a newer record.
#[derive(Clone)]
pub(crate) enum Op {
    Set(String, serde_json::Value),
    Remove(String),
    Clear,
    Apply(Change),
}

impl Op {
    /// Applies this change to `data`.
    pub(crate) fn replay(&self, data: &mut Data) -> Result<(), Error> {
        match self {
            Self::Set(k, v) => {
                data.insert(k.clone(), v.clone());
            }
            Self::Remove(k) => {
                data.shift_remove(k);
            }
            Self::Clear => data.clear(),
            Self::Apply(f) => f(data)?,
        }
        Ok(())
    }
}

/// The state of one request's session: what the load found and what the handler changed.
#[derive(Default)]
pub(crate) struct Recorded {
    /// The live key this session was loaded (or last saved) under, if any.
    pub key: Option<String>,
    /// The stored text as loaded (or last saved): the compare-and-swap token of the save.
    pub token: Option<bytes::Bytes>,
    pub data: Data,
    pub ops: Vec<Op>,
    /// Keys whose records go at the end of the request (flush, cycle_key).
    pub doomed: Vec<String>,
    /// `flush` was called: the doomed records go even if the response is a 5xx (a logout must
    /// log out), where a `cycle_key` alone deletes nothing.
    pub flushed: bool,
    pub accessed: bool,
    pub modified: bool,
    /// The store failed and the policy is fail-open: nothing is saved.
    pub detached: bool,
    /// When the loaded record expires (for rolling idle timeouts).
    pub expires_at: Option<OffsetDateTime>,
    /// The key and stored text this session had before `cycle_key()`, when a rotation grace
    /// window keeps the old key readable for a few seconds.
    pub cycled_from: Option<(String, bytes::Bytes)>,
    /// The cookie must be sent again even if nothing changed (the store answered under
    /// another key, or `Session::save` already wrote the session).
    pub resend: bool,
    /// An exclusive route's place in its visitor's queue; dropped after the save.
    pub exclusive: Option<KeyGuard>,
    /// The request's save has begun: changes from now on would be lost, so they fail.
    pub closed: bool,
    /// The session is stored at the end of the request even when it holds nothing, and so gets
    /// a key: Django's `cycle_key()` and `create()` store an empty session under a new key.
    pub must_persist: bool,
    /// The request came with a key `cycle_key` rotated away, inside the grace window: it was
    /// served the session as it was before the rotation, read-only (see [`crate::plan`]).
    pub rotated: bool,
    /// The user and key this session was linked under in the store's user index when it was
    /// loaded (or last saved): what the save unlinks when the user or the key changes.
    pub linked: Option<(String, String)>,
    /// `cycle_key` was called: the create at the end of the request is a rotation, not a new
    /// session (which the events tell apart).
    pub cycled: bool,
    /// The instant the end of the request was planned at: the `now` of its expiry and of the
    /// cookie's `Expires`, read once per request (a clock read costs more than the rest of a
    /// read-only request's end).
    pub planned_at: Option<OffsetDateTime>,
}

/// One request's session: the app's machinery, the keys the request carried, the
/// per-request options the route layers set, and the [`Recorded`] state.
pub(crate) struct Context {
    pub shared: Arc<Shared>,
    /// The session cookie as the request carried it.
    cookie: Option<String>,
    /// The key header as the request carried it.
    header: Option<String>,
    /// This route's transport, fixed at its first use (the route's, or the settings').
    transport: OnceLock<Transport>,
    /// Set once the store was read for this request (at most once: later loads wait for it).
    pub load_done: tokio::sync::OnceCell<()>,
    pub state: Mutex<Recorded>,
    /// This route's store-error policy, when it overrides the settings.
    pub policy: OnceLock<OnStoreError>,
    /// Set on an exclusive route: how long its load may wait for the visitor's other
    /// exclusive requests.
    pub exclusive: OnceLock<Option<Duration>>,
    /// The layer's error handler, when the app set one.
    pub on_error: OnceLock<ErrorHandler>,
}

impl Context {
    /// A request's session that carried the `presented` keys, not loaded yet.
    pub(crate) fn new(shared: Arc<Shared>, presented: Presented<'_>) -> Self {
        Self {
            shared,
            cookie: presented.cookie.map(str::to_owned),
            header: presented.header.map(str::to_owned),
            transport: OnceLock::new(),
            load_done: tokio::sync::OnceCell::new(),
            state: Mutex::new(Recorded::default()),
            policy: OnceLock::new(),
            exclusive: OnceLock::new(),
            on_error: OnceLock::new(),
        }
    }

    /// The recorded state.
    pub(crate) fn state(&self) -> MutexGuard<'_, Recorded> {
        // A panic elsewhere while holding the lock leaves data that is still consistent (every
        // change is a single insert or remove), so a poisoned lock is taken over.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sets this route's transport, unless one was already set or used.
    pub(crate) fn set_transport(&self, transport: Transport) {
        let _ = self.transport.set(transport);
    }

    /// This request's transport: the route's, or the settings'. Fixed by its first use, so the
    /// load and the end of the request agree on it.
    pub(crate) fn transport(&self) -> Transport {
        *self
            .transport
            .get_or_init(|| self.shared.settings.session.transport)
    }

    /// The key this request is served by (under its transport), and which transport carried
    /// it.
    pub(crate) fn presented(&self) -> Option<(&str, Via)> {
        Presented {
            cookie: self.cookie.as_deref(),
            header: self.header.as_deref(),
        }
        .pick(self.transport())
    }

    /// The key this request is served by, if any.
    pub(crate) fn key(&self) -> Option<&str> {
        self.presented().map(|(key, _)| key)
    }

    /// The store-error policy of this request: the route's, or the settings'.
    pub(crate) fn policy(&self) -> OnStoreError {
        self.policy
            .get()
            .copied()
            .unwrap_or(self.shared.settings.resilience.on_store_error)
    }
}
