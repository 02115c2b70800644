//! What the sessions of one app share: the store, the settings, the codec, the clock and the
//! per-key locks. The store is the app's store seen through the core's decorators (breaker and
//! timeout, metrics and span, key hashing: see [`CoreStore`]), the one way the core calls it.
//!
//! The store's abilities beside the store contract (`MovesOnLoad`) and its methods that are
//! not about storing bytes (`cookie_value`, `keeps_data_in_cookie`, `users`) are called here
//! and nowhere else in the core, so that narrowing the store trait edits one place.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use time::OffsetDateTime;

use crate::backend::Backend;
use crate::breaker::Breaker;
use crate::clock::{Clock, SystemClock};
use crate::codec::{Codec, Data};
use crate::config::Settings;
use crate::decorate::{Decorated, Decorator, Operation};
use crate::error::{ConfigError, Error, StoreError};
use crate::guard::Guard;
use crate::hashed::HashKeys;
use crate::locks::KeyLocks;
use crate::observe::Observer;
use crate::store::{MovesOnLoad, Record, SessionStore};

/// The store as the core calls it: the breaker and timeout outermost (a call they refuse or
/// abandon is not observed as a store call, but counted in `ERRORS`; one the timeout abandons
/// is observed as `cancelled`), then the span and metrics, then key hashing when `hash_keys`
/// is on.
///
/// Breaker, timeout and metrics are decorators like any other rather than code of their own
/// here: the core calls this store's unboxed methods, so they cost what their own work costs
/// and no allocation, and the app's calls through
/// [`Sessions::store`](crate::Sessions::store) go through the very same store (before, they
/// skipped the breaker and the timeout).
pub(crate) type CoreStore = Decorated<(Guard, (Observer, Option<HashKeys>))>;

/// Everything the sessions of one app share.
#[derive(Clone)]
pub(crate) struct Shared {
    /// The store the core calls (see [`CoreStore`]).
    pub store: Arc<CoreStore>,
    /// The same store, as [`Sessions::store`](crate::Sessions::store) hands it to the app.
    pub as_dyn: Arc<dyn SessionStore>,
    pub settings: Settings,
    pub codec: Codec,
    pub clock: Arc<dyn Clock>,
    /// Savers of one key that met a conflict queue here before merging (store calls only).
    pub save_locks: KeyLocks,
    /// Exclusive routes of one visitor run one at a time (opt-in, held from load to save).
    pub exclusive_locks: KeyLocks,
    /// The store's live migration, if it is one: loads go through it (see `load`).
    moves: Option<Arc<dyn MovesOnLoad>>,
    /// The store keeps the data in the cookie (signed cookies): asked once, at construction.
    in_cookie: bool,
}

impl Shared {
    /// The machinery for `store` under `settings`: keys hashed when `hash_keys` asks for it,
    /// a breaker with the configured threshold, and the system clock.
    ///
    /// # Errors
    /// [`ConfigError`] when the settings cannot work, or ask to hash the keys of a store that
    /// has none (signed cookies).
    pub fn new(backend: Backend, settings: Settings) -> Result<Self, ConfigError> {
        settings.validate()?;
        let Backend { store, moves, .. } = backend;
        let in_cookie = store.keeps_data_in_cookie();
        let engine = store.engine();
        if settings.session.hash_keys && in_cookie {
            return Err(ConfigError::Invalid {
                setting: "hash_keys",
                reason: format!(
                    "the {engine} engine keeps the data in the cookie: there is no key to hash"
                ),
            });
        }
        let breaker = Arc::new(Breaker::new(
            settings.resilience.breaker_threshold,
            Duration::from_millis(settings.resilience.breaker_cooldown_ms),
        ));
        let guard = Guard::new(engine, breaker, settings.store_timeout());
        let hashing = settings.session.hash_keys.then_some(HashKeys);
        let store = Arc::new(Decorated::new(
            (guard, (Observer::new(engine), hashing)),
            store,
        ));
        Ok(Self {
            as_dyn: Arc::clone(&store) as Arc<dyn SessionStore>,
            store,
            codec: settings.codec(),
            settings,
            clock: Arc::new(SystemClock),
            save_locks: KeyLocks::default(),
            exclusive_locks: KeyLocks::default(),
            moves,
            in_cookie,
        })
    }

    /// Encodes `data` for the store, refusing it over `max_session_bytes`. Every record the
    /// core creates or updates, and so every cookie it sets (signed or not), is encoded here:
    /// the one place the size bound is enforced, before anything is written.
    pub fn encode_bounded(&self, data: &Data) -> Result<Bytes, Error> {
        let text = self.codec.encode(data);
        let limit = self.settings.session.max_session_bytes;
        if text.len() > limit {
            return Err(Error::TooLarge {
                size: text.len(),
                limit,
            });
        }
        Ok(text)
    }

    /// The name the store (and so its user index) knows session `key` by: the core's
    /// decorators' mapping, so it cannot differ from what the store is asked.
    pub fn stored_id(&self, key: &str) -> String {
        self.store.decorator().key(key).into_owned()
    }

    /// Whether the data travels in the cookie (signed cookies): then any cookie value may be
    /// a session, and there is no key to lock, expire or index.
    pub fn in_cookie(&self) -> bool {
        self.in_cookie
    }

    /// Loads the live record under `key`, and whether this very load moved it in from another
    /// store (a live migration's first use).
    pub async fn load(
        &self,
        key: &str,
        now: OffsetDateTime,
    ) -> Result<Option<(Record, bool)>, StoreError> {
        match &self.moves {
            // The migrating store sits below the core's decorators, as the store does: the
            // same hooks, around an ability's call instead of the store's.
            Some(moves) => {
                let decorators = self.store.decorator();
                let stored = decorators.key(key);
                let call = moves.load_moved(&stored, now);
                decorators.wrap(Operation::Load, call).await
            }
            None => Ok(self
                .store
                .load(key, now)
                .await?
                .map(|record| (record, false))),
        }
    }

    /// The value the cookie carries for `record`, saved under `key`.
    pub fn cookie_value(
        &self,
        key: &str,
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<String, StoreError> {
        self.store
            .inner()
            .cookie_value(key, record, now)
            .map(Cow::into_owned)
    }

    /// The store (its user index calls decorated as every call is), if it keeps an index of
    /// sessions by user.
    pub fn users(&self) -> Option<&CoreStore> {
        self.store.inner().users().map(|_| &*self.store)
    }
}
