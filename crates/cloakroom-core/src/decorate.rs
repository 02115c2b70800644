//! Decorators: what sits between the core and a store without being a store itself (key
//! hashing, metrics, the breaker and timeout, a test's counting), written as two hooks and
//! composed one way.
//!
//! A [`Decorator`] says how the key the inner store sees is derived from the core's
//! ([`Decorator::key`]: `hash_keys` stores a digest) and what happens around each call
//! ([`Decorator::wrap`]: a span and metrics, a time limit, a count). [`Decorated`] is the one
//! store that forwards every [`SessionStore`] and [`UserIndex`] method to an inner store
//! through those hooks, so a new decorator is its hooks and nothing else. Two decorators
//! compose as a pair, `(outer, inner)`; `Option<D>` is a decorator that may be off.
//!
//! The core itself calls its store through one `Decorated` (breaker and timeout, then metrics,
//! then key hashing when `hash_keys` is on), by that type's own methods, whose futures are not
//! boxed: the hooks add no allocation to a call beyond the inner store's own boxed future, and
//! [`Sessions::store`](crate::Sessions::store) hands the app the very same store.
//!
//! # Examples
//! A decorator that sees every call the core makes, in a few lines:
//! ```
//! use std::sync::{Arc, Mutex};
//! use cloakroom_core::decorate::{CallOutcome, Decorator, Operation, StoreCall};
//! use cloakroom_core::engines::memory::MemoryStore;
//! use cloakroom_core::{Sessions, Settings};
//!
//! #[derive(Default)]
//! struct Log(Mutex<Vec<&'static str>>);
//!
//! impl Decorator for Log {
//!     fn wrap<T: CallOutcome>(&self, op: Operation, call: impl StoreCall<T>) -> impl StoreCall<T> {
//!         self.0.lock().unwrap().push(op.name());
//!         call
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let log = Arc::new(Log::default());
//! let sessions = Sessions::new(log.clone().around(MemoryStore::default()), Settings::default())?;
//! let lazy = sessions.start(None);
//! lazy.load().await?.insert("user", "ana")?;
//! lazy.commit(200).await?;
//! assert_eq!(*log.0.lock().unwrap(), ["create"]);
//! # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
//! ```

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::future::Either;
use time::OffsetDateTime;

use crate::error::StoreError;
use crate::store::{Created, Record, SessionStore, Updated, UserIndex, UserSession};

/// One call of a store, as a decorator sees it (and the `operation` label names it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operation {
    /// [`SessionStore::load`] (and a live migration's `load_moved`).
    Load,
    /// [`SessionStore::create`].
    Create,
    /// [`SessionStore::update`].
    Update,
    /// [`SessionStore::touch`].
    Touch,
    /// [`SessionStore::delete`].
    Delete,
    /// [`UserIndex::link`].
    Link,
    /// [`UserIndex::unlink`].
    Unlink,
    /// [`UserIndex::sessions_of`].
    SessionsOf,
    /// [`UserIndex::revoke`].
    Revoke,
}

impl Operation {
    /// Every operation, in declaration order (`op as usize` indexes it).
    pub const ALL: [Self; 9] = [
        Self::Load,
        Self::Create,
        Self::Update,
        Self::Touch,
        Self::Delete,
        Self::Link,
        Self::Unlink,
        Self::SessionsOf,
        Self::Revoke,
    ];

    /// Its name: `load`, `create`, `update`, `touch`, `delete`, `link`, `unlink`,
    /// `sessions_of`, `revoke`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Load => "load",
            Self::Create => "create",
            Self::Update => "update",
            Self::Touch => "touch",
            Self::Delete => "delete",
            Self::Link => "link",
            Self::Unlink => "unlink",
            Self::SessionsOf => "sessions_of",
            Self::Revoke => "revoke",
        }
    }

    /// Whether it is a call of the user index rather than of the store contract.
    pub fn is_index(self) -> bool {
        matches!(
            self,
            Self::Link | Self::Unlink | Self::SessionsOf | Self::Revoke
        )
    }
}

/// What a successful store call's answer says, as the `outcome` metric label names it.
pub trait CallOutcome: Send {
    /// `hit` / `miss` for a load, `stored` / `taken` for a create, `stored` / `conflict` /
    /// `missing` for an update or touch, `ok` for the others.
    fn outcome(&self) -> &'static str;
}

impl CallOutcome for () {
    fn outcome(&self) -> &'static str {
        "ok"
    }
}

impl CallOutcome for Vec<UserSession> {
    fn outcome(&self) -> &'static str {
        "ok"
    }
}

impl CallOutcome for Option<Record> {
    fn outcome(&self) -> &'static str {
        if self.is_some() {
            "hit"
        } else {
            "miss"
        }
    }
}

/// Measured as a `load`: a move is the migrating store's business, not another operation.
impl CallOutcome for Option<(Record, bool)> {
    fn outcome(&self) -> &'static str {
        if self.is_some() {
            "hit"
        } else {
            "miss"
        }
    }
}

impl CallOutcome for Created {
    fn outcome(&self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::Taken => "taken",
        }
    }
}

impl CallOutcome for Updated {
    fn outcome(&self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::Conflict(_) => "conflict",
            Self::Missing => "missing",
        }
    }
}

/// A store call in flight: a future of its answer, which a decorator may await, bound or
/// replace. Every such future is one (a blanket impl); the name only shortens the hooks.
pub trait StoreCall<T>: Future<Output = Result<T, StoreError>> + Send {}

impl<T, F: Future<Output = Result<T, StoreError>> + Send> StoreCall<T> for F {}

/// What a decorator adds to the store it wraps: override only the hooks it needs.
pub trait Decorator: Send + Sync + 'static {
    /// The name the inner store knows session `key` by. It maps the key of `load`, `create`,
    /// `update`, `touch` and `delete` and the id of an entry the core links or unlinks; not
    /// the ids the index lists, which are already the inner store's names and which
    /// [`UserIndex::revoke`] takes as listed. The default is the key itself.
    fn key<'k>(&self, key: &'k str) -> Cow<'k, str> {
        Cow::Borrowed(key)
    }

    /// Runs `call`, one `op` of the inner store, and returns its answer: count it, time it,
    /// bound it, or fail it without running it. The default runs it as it is.
    ///
    /// It is a plain generic future (no box), so a decorator costs a call only what its own
    /// work costs.
    fn wrap<T: CallOutcome>(&self, op: Operation, call: impl StoreCall<T>) -> impl StoreCall<T> {
        let _ = op;
        call
    }

    /// `inner` seen through this decorator, its index of sessions by user too.
    fn around<S: SessionStore + UserIndex>(self, inner: S) -> Decorated<Self, S>
    where
        Self: Sized,
    {
        let inner = Arc::new(inner);
        let users: Arc<dyn UserIndex> = inner.clone();
        Decorated::new(self, inner).with_users(Some(users))
    }
}

/// A decorator the caller keeps a handle on (to read a count, to make it fail in a test).
impl<D: Decorator> Decorator for Arc<D> {
    fn key<'k>(&self, key: &'k str) -> Cow<'k, str> {
        (**self).key(key)
    }

    fn wrap<T: CallOutcome>(&self, op: Operation, call: impl StoreCall<T>) -> impl StoreCall<T> {
        (**self).wrap(op, call)
    }
}

/// Two decorators, the first outside the second: the first wraps the second's wrapping of
/// the call, and the inner store sees the second's mapping of the first's key.
impl<A: Decorator, B: Decorator> Decorator for (A, B) {
    fn key<'k>(&self, key: &'k str) -> Cow<'k, str> {
        match self.0.key(key) {
            Cow::Borrowed(key) => self.1.key(key),
            Cow::Owned(key) => Cow::Owned(self.1.key(&key).into_owned()),
        }
    }

    fn wrap<T: CallOutcome>(&self, op: Operation, call: impl StoreCall<T>) -> impl StoreCall<T> {
        self.0.wrap(op, self.1.wrap(op, call))
    }
}

/// A decorator that is on or off, as a setting says (`hash_keys`).
impl<D: Decorator> Decorator for Option<D> {
    fn key<'k>(&self, key: &'k str) -> Cow<'k, str> {
        match self {
            Some(d) => d.key(key),
            None => Cow::Borrowed(key),
        }
    }

    fn wrap<T: CallOutcome>(&self, op: Operation, call: impl StoreCall<T>) -> impl StoreCall<T> {
        // An `Either`, not an `async` block: off, the call is polled as it is, with no state
        // machine of its own around it (the core's stack has `Option<HashKeys>` on every call).
        match self {
            Some(d) => Either::Left(d.wrap(op, call)),
            None => Either::Right(call),
        }
    }
}

/// A store seen through a [`Decorator`]: every [`SessionStore`] and [`UserIndex`] call goes to
/// `inner` with its key mapped by [`Decorator::key`] and run by [`Decorator::wrap`].
///
/// Its own methods (`load`, `create` … `revoke`) are the same calls without the boxed future
/// `async_trait` gives a trait call: the core calls those.
pub struct Decorated<D, S: ?Sized = dyn SessionStore> {
    decorator: D,
    inner: Arc<S>,
    /// The index of sessions by user beside the inner store (a [`Backend`]'s), if any: its
    /// calls go through the same hooks.
    ///
    /// [`Backend`]: crate::Backend
    users: Option<Arc<dyn UserIndex>>,
}

impl<D, S: SessionStore + ?Sized> std::fmt::Debug for Decorated<D, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decorated")
            .field("decorator", &std::any::type_name::<D>())
            .field("engine", &self.inner.engine())
            .finish()
    }
}

impl<D: Decorator, S: SessionStore + ?Sized> Decorated<D, S> {
    /// `inner` seen through `decorator`.
    pub fn new(decorator: D, inner: Arc<S>) -> Self {
        Self {
            decorator,
            inner,
            users: None,
        }
    }

    /// Also decorates `users`, the index of sessions by user kept beside the inner store
    /// (`None`: there is none, and index calls answer [`StoreError::NoUserIndex`]).
    #[must_use]
    pub fn with_users(self, users: Option<Arc<dyn UserIndex>>) -> Self {
        Self { users, ..self }
    }

    /// The decorator.
    pub fn decorator(&self) -> &D {
        &self.decorator
    }

    /// The store inside.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The inner store's engine name ([`SessionStore::engine`]).
    pub fn engine(&self) -> &'static str {
        self.inner.engine()
    }

    /// The user index beside the inner store, or [`StoreError::NoUserIndex`] naming its
    /// engine (not a call: it is not wrapped).
    fn index(&self) -> Result<&dyn UserIndex, StoreError> {
        self.users.as_deref().ok_or(StoreError::NoUserIndex {
            engine: self.inner.engine(),
        })
    }

    /// [`SessionStore::load`], unboxed.
    pub async fn load(&self, key: &str, now: OffsetDateTime) -> Result<Option<Record>, StoreError> {
        let key = self.decorator.key(key);
        let call = self.inner.load(&key, now);
        self.decorator.wrap(Operation::Load, call).await
    }

    /// [`SessionStore::create`], unboxed.
    pub async fn create(&self, key: &str, record: &Record) -> Result<Created, StoreError> {
        let key = self.decorator.key(key);
        let call = self.inner.create(&key, record);
        self.decorator.wrap(Operation::Create, call).await
    }

    /// [`SessionStore::update`], unboxed.
    pub async fn update(
        &self,
        key: &str,
        expected: &[u8],
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        let key = self.decorator.key(key);
        let call = self.inner.update(&key, expected, record, now);
        self.decorator.wrap(Operation::Update, call).await
    }

    /// [`SessionStore::touch`], unboxed.
    pub async fn touch(
        &self,
        key: &str,
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        let key = self.decorator.key(key);
        let call = self.inner.touch(&key, record, now);
        self.decorator.wrap(Operation::Touch, call).await
    }

    /// [`SessionStore::delete`], unboxed.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let key = self.decorator.key(key);
        let call = self.inner.delete(&key);
        self.decorator.wrap(Operation::Delete, call).await
    }

    /// [`UserIndex::link`], unboxed: the entry's id is mapped as a key is.
    ///
    /// # Errors
    /// [`StoreError::NoUserIndex`] when the inner store keeps no index.
    pub async fn link(&self, entry: &UserSession) -> Result<(), StoreError> {
        let index = self.index()?;
        let entry = match self.decorator.key(&entry.id) {
            Cow::Borrowed(_) => Cow::Borrowed(entry),
            Cow::Owned(id) => Cow::Owned(UserSession {
                id,
                ..entry.clone()
            }),
        };
        self.decorator
            .wrap(Operation::Link, index.link(&entry))
            .await
    }

    /// [`UserIndex::unlink`], unboxed: `id` is mapped as a key is.
    ///
    /// # Errors
    /// [`StoreError::NoUserIndex`] when the inner store keeps no index.
    pub async fn unlink(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        let index = self.index()?;
        let id = self.decorator.key(id);
        let call = index.unlink(user_id, &id);
        self.decorator.wrap(Operation::Unlink, call).await
    }

    /// [`UserIndex::sessions_of`], unboxed: the ids listed are the inner store's.
    ///
    /// # Errors
    /// [`StoreError::NoUserIndex`] when the inner store keeps no index.
    pub async fn sessions_of(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<UserSession>, StoreError> {
        let call = self.index()?.sessions_of(user_id, now);
        self.decorator.wrap(Operation::SessionsOf, call).await
    }

    /// [`UserIndex::revoke`], unboxed: `id` is taken as listed, not mapped again.
    ///
    /// # Errors
    /// [`StoreError::NoUserIndex`] when the inner store keeps no index.
    pub async fn revoke(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        let call = self.index()?.revoke(user_id, id);
        self.decorator.wrap(Operation::Revoke, call).await
    }
}

// Each trait method is the unboxed method of the same name (an inherent method wins over a
// trait's in method resolution), so the two paths cannot drift apart.
#[async_trait]
impl<D: Decorator, S: SessionStore + ?Sized> SessionStore for Decorated<D, S> {
    fn engine(&self) -> &'static str {
        self.inner.engine()
    }

    async fn load(&self, key: &str, now: OffsetDateTime) -> Result<Option<Record>, StoreError> {
        self.load(key, now).await
    }

    async fn create(&self, key: &str, record: &Record) -> Result<Created, StoreError> {
        self.create(key, record).await
    }

    async fn update(
        &self,
        key: &str,
        expected: &[u8],
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        self.update(key, expected, record, now).await
    }

    async fn touch(
        &self,
        key: &str,
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        self.touch(key, record, now).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.delete(key).await
    }
}

#[async_trait]
impl<D: Decorator, S: SessionStore + ?Sized> UserIndex for Decorated<D, S> {
    async fn link(&self, entry: &UserSession) -> Result<(), StoreError> {
        self.link(entry).await
    }

    async fn unlink(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        self.unlink(user_id, id).await
    }

    async fn sessions_of(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<UserSession>, StoreError> {
        self.sessions_of(user_id, now).await
    }

    async fn revoke(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        self.revoke(user_id, id).await
    }
}
