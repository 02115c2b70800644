//! The handle a handler holds: a typed dictionary with Django's verbs, which records what the
//! request changed so that a save can be merged with what other requests saved meanwhile.

use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::codec::{lookup, lookup_mut, Data};

/// Django's `BACKEND_SESSION_KEY`: the dotted path of the backend that authenticated the user.
const AUTH_USER_BACKEND: &str = "_auth_user_backend";
/// Django's `HASH_SESSION_KEY`: the session auth hash derived from the user's password.
const AUTH_USER_HASH: &str = "_auth_user_hash";
/// Where [`Session::record_client`] keeps the client's `User-Agent` and address, so that every
/// write of the session (on any app server) carries them to the user index. Not one of
/// Django's keys; a Django app sharing the store just sees one more key.
pub(crate) const CLIENT_KEY: &str = "_cloakroom_client";
/// The longest `User-Agent` kept: real ones are a few hundred bytes; a client cannot make the
/// session (or the index) carry more.
const MAX_USER_AGENT: usize = 512;
/// The longest client address kept (an IPv6 address with a zone fits).
const MAX_IP: usize = 64;

use crate::keys::{user_id as user_of, AUTH_USER_ID};

/// The `User-Agent` and address [`Session::record_client`] stored in the data.
pub(crate) fn client_of(data: &Data) -> (Option<String>, Option<String>) {
    let Some(client) = lookup(data, CLIENT_KEY) else {
        return (None, None);
    };
    let field = |name| client.get(name).and_then(Value::as_str).map(str::to_owned);
    (field("user_agent"), field("ip"))
}

impl crate::store::UserSession {
    /// The user index entry of session `id` holding `data`, or `None` when the data holds no
    /// user (`_auth_user_id`): linked and last seen `now`, expiring at `expires_at`, with the
    /// client [`Session::record_client`] stored. The core links this at every write of a
    /// session; a tool that writes sessions behind the core's back (`cloakroom copy`) links
    /// the same, so the user's key is read in one place.
    pub fn from_data(
        id: &str,
        data: &Data,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Option<Self> {
        let (user_agent, ip) = client_of(data);
        Some(Self {
            id: id.to_owned(),
            user_id: user_of(data)?,
            created_at: now,
            last_seen: now,
            expires_at,
            user_agent,
            ip,
        })
    }
}

/// `text` cut to at most `max` bytes on a character boundary.
fn truncated(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
use crate::error::Error;
use crate::expiry::{Expiry, Lifetime};
use crate::keys::{DEADLINE_KEY, EXPIRY_KEY, IDLE_KEY};
use crate::recorded::{Change, Context, Op, Recorded};

/// A loaded session: read and change it like a dictionary; the layer saves it after the
/// response if it changed.
///
/// Values go through serde, so anything `Serialize + DeserializeOwned` can be stored. Clones
/// share one session.
///
/// # Examples
/// ```
/// # fn demo(session: cloakroom_core::Session) -> Result<(), cloakroom_core::Error> {
/// let visits: u64 = session.get_or("visits", 0)?;
/// session.insert("visits", visits + 1)?;
/// // One-time data: read and remove in one step.
/// let flash: Option<String> = session.remove("flash")?;
/// // Change a stored list in place; the session knows it changed.
/// session.update("cart", |cart: &mut Vec<String>| cart.push("apple".into()))?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Session {
    pub(crate) inner: Arc<Context>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Neither the key nor the data belongs in a log.
        let st = self.state();
        f.debug_struct("Session")
            .field("key", &st.key.as_ref().map(|_| "<redacted>"))
            .field("len", &st.data.len())
            .field("accessed", &st.accessed)
            .field("modified", &st.modified)
            .finish()
    }
}

fn decode<T: DeserializeOwned>(key: &str, value: &Value) -> Result<T, Error> {
    T::deserialize(value).map_err(|source| Error::Type {
        key: key.to_owned(),
        source,
    })
}

fn encode<T: Serialize>(key: &str, value: &T) -> Result<Value, Error> {
    serde_json::to_value(value).map_err(|source| Error::Encode {
        key: key.to_owned(),
        source,
    })
}

impl Session {
    pub(crate) fn state(&self) -> MutexGuard<'_, Recorded> {
        self.inner.state()
    }

    fn read(&self) -> MutexGuard<'_, Recorded> {
        let mut st = self.state();
        st.accessed = true;
        st
    }

    /// The state, for a change: refused once the request's save has begun, since nothing
    /// would save the change.
    fn writable(&self) -> Result<MutexGuard<'_, Recorded>, Error> {
        let st = self.read();
        if st.closed {
            return Err(Error::AlreadySaved);
        }
        Ok(st)
    }

    fn write(&self, op: Op) -> Result<(), Error> {
        let mut st = self.writable()?;
        op.replay(&mut st.data)?;
        st.ops.push(op);
        st.modified = true;
        Ok(())
    }

    /// The value under `key`, or `None` when it is absent.
    ///
    /// # Errors
    /// [`Error::Type`] when the stored value is not a `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        let st = self.read();
        lookup(&st.data, key).map(|v| decode(key, v)).transpose()
    }

    /// The value under `key`, or `default` when it is absent (Django's `get(key, default)`).
    ///
    /// # Errors
    /// [`Error::Type`] when the stored value is not a `T`.
    pub fn get_or<T: DeserializeOwned>(&self, key: &str, default: T) -> Result<T, Error> {
        Ok(self.get(key)?.unwrap_or(default))
    }

    /// The raw JSON value under `key`.
    pub fn get_value(&self, key: &str) -> Option<Value> {
        lookup(&self.read().data, key).cloned()
    }

    /// Stores `value` under `key`, replacing what was there.
    ///
    /// # Errors
    /// [`Error::Encode`] when the value cannot be written as JSON.
    pub fn insert<T: Serialize>(&self, key: impl Into<String>, value: T) -> Result<(), Error> {
        let key = key.into();
        let value = encode(&key, &value)?;
        self.write(Op::Set(key, value))
    }

    /// Stores a raw JSON value under `key`.
    ///
    /// # Errors
    /// [`Error::AlreadySaved`] after the request's save began (a streaming body).
    pub fn insert_value(&self, key: impl Into<String>, value: Value) -> Result<(), Error> {
        self.write(Op::Set(key.into(), value))
    }

    /// Removes `key` and returns what it held (Django's `pop`): one-time data such as a flash
    /// message is read and gone in one step.
    ///
    /// # Errors
    /// [`Error::Type`] when the stored value is not a `T`; the key is removed all the same.
    /// [`Error::AlreadySaved`] after the request's save began (a streaming body).
    pub fn remove<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        self.remove_value(key)?.map(|v| decode(key, &v)).transpose()
    }

    /// Removes `key` and returns its raw JSON value.
    ///
    /// # Errors
    /// [`Error::AlreadySaved`] after the request's save began (a streaming body).
    pub fn remove_value(&self, key: &str) -> Result<Option<Value>, Error> {
        let mut st = self.writable()?;
        let Some(old) = st.data.shift_remove(key) else {
            return Ok(None);
        };
        st.ops.push(Op::Remove(key.to_owned()));
        st.modified = true;
        Ok(Some(old))
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.read().data.contains_key(key)
    }

    /// The keys, in insertion order.
    pub fn keys(&self) -> Vec<String> {
        self.read().data.keys().cloned().collect()
    }

    /// How many keys the session holds.
    pub fn len(&self) -> usize {
        self.read().data.len()
    }

    /// Whether the session holds nothing.
    pub fn is_empty(&self) -> bool {
        self.read().data.is_empty()
    }

    /// A copy of all the data.
    pub fn data(&self) -> Data {
        self.read().data.clone()
    }

    /// Removes every key but keeps the session key: as in Django, an emptied session that has a
    /// key is saved as `{}` under that key and keeps its cookie. Only [`flush`](Self::flush)
    /// drops the key and deletes the record.
    ///
    /// # Errors
    /// [`Error::AlreadySaved`] after the request's save began (a streaming body).
    pub fn clear(&self) -> Result<(), Error> {
        self.write(Op::Clear)
    }

    /// Stores many pairs at once (Django's `update(dict)`).
    ///
    /// # Errors
    /// [`Error::Encode`] for the first value that cannot be written as JSON; earlier pairs stay.
    pub fn extend<K, V, I>(&self, pairs: I) -> Result<(), Error>
    where
        K: Into<String>,
        V: Serialize,
        I: IntoIterator<Item = (K, V)>,
    {
        for (k, v) in pairs {
            self.insert(k, v)?;
        }
        Ok(())
    }

    /// The value under `key`; when absent, stores `default` first (Django's `setdefault`).
    ///
    /// # Errors
    /// [`Error::Type`] / [`Error::Encode`] as for [`get`](Self::get) and [`insert`](Self::insert).
    pub fn setdefault<T: Serialize + DeserializeOwned>(
        &self,
        key: &str,
        default: T,
    ) -> Result<T, Error> {
        if let Some(v) = self.get(key)? {
            return Ok(v);
        }
        self.insert(key, &default)?;
        Ok(default)
    }

    /// Changes the value under `key` in place (starting from `T::default()` when absent) and
    /// returns the new value. The session knows it changed, so the change is always saved.
    ///
    /// If another request of the same visitor saved first, `change` runs again on the value
    /// that request stored, so neither request's change is lost: keep it free of side effects
    /// and clone what it needs (`|cart: &mut Vec<String>| cart.push(item.clone())`).
    ///
    /// # Errors
    /// [`Error::Type`] when the stored value is not a `T`, [`Error::Encode`] when the new value
    /// cannot be written as JSON.
    pub fn update<T, F>(&self, key: &str, change: F) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned + Default,
        F: Fn(&mut T) + Send + Sync + 'static,
    {
        let owned = key.to_owned();
        let apply: Change = Arc::new(move |data: &mut Data| {
            let slot = lookup_mut(data, &owned);
            let mut value: T = match &slot {
                Some(v) => decode(&owned, v)?,
                None => T::default(),
            };
            change(&mut value);
            let value = encode(&owned, &value)?;
            // In place when the key is there: no new copy of the key.
            match slot {
                Some(slot) => *slot = value,
                None => {
                    data.insert(owned.clone(), value);
                }
            }
            Ok(())
        });
        self.write(Op::Apply(apply))?;
        match lookup(&self.state().data, key) {
            Some(v) => decode(key, v),
            None => Ok(T::default()),
        }
    }

    /// Changes the raw data in place with a closure that may run again on a newer copy (see
    /// [`update`](Self::update)); marks the session modified.
    ///
    /// # Errors
    /// Whatever `change` returns.
    pub fn update_data<F>(&self, change: F) -> Result<(), Error>
    where
        F: Fn(&mut Data) -> Result<(), Error> + Send + Sync + 'static,
    {
        self.write(Op::Apply(Arc::new(change)))
    }

    /// Whether the data changed in this request (and so will be saved).
    pub fn is_modified(&self) -> bool {
        self.state().modified
    }

    /// Forces a save at the end of the request, as Django's `session.modified = True` does
    /// (for example to renew the expiry).
    ///
    /// # Errors
    /// [`Error::AlreadySaved`] after the request's save began (a streaming body).
    pub fn set_modified(&self) -> Result<(), Error> {
        self.writable()?.modified = true;
        Ok(())
    }

    /// Whether the request read or wrote the data (the response then varies on `Cookie`).
    pub fn is_accessed(&self) -> bool {
        self.state().accessed
    }

    /// The session key; `None` until the session is first saved (at the end of a request that
    /// stored something, or by [`save`](Self::save)).
    pub fn session_key(&self) -> Option<String> {
        self.state().key.clone()
    }

    /// Stores the session now, empty or not, and returns its key: Django's
    /// `request.session.save()` (or `create()`), for an app that needs a key for an anonymous
    /// visitor before it stores anything (to key a cart kept in another table, say).
    ///
    /// A session without a key is created under a fresh key, never overwriting another
    /// session; one that has a key is saved by compare-and-swap, as the end of the request
    /// would save it (changes another request saved meanwhile are merged). When this returns,
    /// the record is in the store. The end of the request then sends the cookie carrying the
    /// key, and writes again only if the session changes after this call. Changes made through
    /// a clone of this session while the save runs are not saved: await it before going on.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn demo(session: cloakroom_core::Session) -> Result<(), cloakroom_core::Error> {
    /// let key = session.save().await?;
    /// // `key` can now key rows in the app's own tables.
    /// # let _ = key;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Store`] when the store fails (whatever the `on_store_error` policy: the caller
    /// decides), [`Error::Interrupted`] when another request deleted the session meanwhile,
    /// [`Error::Contended`] when it kept changing, and [`Error::Unsaved`] when the session's
    /// load already failed under fail-open.
    pub async fn save(&self) -> Result<String, Error> {
        crate::runner::save_now(&self.inner).await
    }

    /// Resolves when this session ends: revoked (one session, or "log out everywhere"),
    /// logged out or flushed, on this app server or any other, or expired. A WebSocket or
    /// server-sent events handler selects on it to close at once instead of running until it
    /// next touches the store. The future owns what it needs (`'static`), so it can move into
    /// the task that serves the connection.
    ///
    /// In this process an end is seen at once. Other servers' ends are seen once
    /// [`Sessions::start_live`](crate::Sessions::start_live) runs on this one: at once through
    /// the store's channel (PostgreSQL, Redis), else at the poll interval given there (MySQL,
    /// files, SQLite). The expiry is checked in the store when it passes, so a session another
    /// request keeps alive is waited on until its new expiry. Call it once the session is
    /// stored (after the request's save: in a WebSocket's upgrade callback, or in a streaming
    /// body); a session never stored has nothing to end and the future never resolves; a
    /// signed-cookie session resolves at its expiry only. The wait counts from the call (an
    /// end before the future is first polled is not missed), and its first step checks the
    /// store once, for an end since the request loaded the session
    /// ([`Ended::Gone`](crate::Ended::Gone) then).
    ///
    /// # Examples
    /// ```no_run
    /// # async fn demo(session: cloakroom_core::Session, mut messages: tokio::sync::mpsc::Receiver<String>) {
    /// let ended = session.ended();
    /// tokio::pin!(ended);
    /// loop {
    ///     tokio::select! {
    ///         why = &mut ended => { println!("session ended: {why:?}"); break; }
    ///         Some(message) = messages.recv() => println!("{message}"),
    ///     }
    /// }
    /// # }
    /// ```
    pub fn ended(&self) -> impl std::future::Future<Output = crate::live::Ended> + Send + 'static {
        crate::ended::wait(Arc::clone(&self.inner))
    }

    /// Logs out: the data goes, the stored record is deleted and the key is dropped, so the old
    /// key is useless. Anything stored afterwards goes under a new key.
    ///
    /// The deletion happens at the end of the request even when the response is a 5xx (which
    /// saves nothing), as Django's `flush()` deletes at once: a logout whose page then fails
    /// still logs out.
    ///
    /// # Errors
    /// [`Error::AlreadySaved`] after the request's save began (a streaming body).
    pub fn flush(&self) -> Result<(), Error> {
        let mut st = self.writable()?;
        if let Some(old) = st.key.take() {
            st.doomed.push(old);
        }
        // Logout has no grace window: a key rotated earlier in this request goes too.
        if let Some((old, _)) = st.cycled_from.take() {
            st.doomed.push(old);
        }
        st.data.clear();
        st.ops.clear();
        st.token = None;
        st.modified = true;
        st.flushed = true;
        st.must_persist = false;
        Ok(())
    }

    /// Keeps the data under a new key and deletes the old record. Call it on login, against
    /// session fixation.
    ///
    /// With an `absolute_lifetime`, the lifetime starts again here: it counts from login.
    /// With a `rotation_grace`, the old key keeps working for that many seconds, read-only:
    /// requests that carry it are served the session as it was before the rotation (without a
    /// logged-in user), get no cookie, and fail as [`Error::Rotated`] if they change anything.
    /// Parallel requests of the same page load that only read do not break, and the new key
    /// never reaches whoever else holds the old one.
    ///
    /// # Errors
    /// [`Error::AlreadySaved`] after the request's save began (a streaming body).
    pub fn cycle_key(&self) -> Result<(), Error> {
        let shared = &self.inner.shared;
        {
            let mut st = self.writable()?;
            let token = st.token.take();
            if let Some(old) = st.key.take() {
                match token {
                    Some(data) if shared.settings.session.rotation_grace > 0 => {
                        st.cycled_from = Some((old, data));
                    }
                    _ => st.doomed.push(old),
                }
            }
            st.modified = true;
            st.cycled = true;
            // Django's `cycle_key()` stores the session under its new key at once, empty or not.
            st.must_persist = true;
        }
        if let Some(life) = shared.settings.session.absolute_lifetime {
            self.set_absolute_lifetime(Duration::from_secs(life))?;
        }
        Ok(())
    }

    /// The logged-in user's id as Django's `django.contrib.auth` keeps it: the
    /// `_auth_user_id` key, the user's primary key as a string (`"42"`, or a UUID's text).
    /// A number there (not what Django writes) is read as its decimal text.
    ///
    /// This does not check `_auth_user_hash` against the user's password: an app that must
    /// log out sessions after a password change compares [`auth_user_hash`](Self::auth_user_hash)
    /// with [`crate::signing::session_auth_hash`] of the user's stored password.
    pub fn user_id(&self) -> Option<String> {
        user_of(&self.read().data)
    }

    /// Records the client of this session (its `User-Agent` header and address), for the list
    /// of a user's sessions ([`crate::Sessions::sessions_of`]): call it at login, or on every
    /// request to follow a roaming client.
    ///
    /// They are kept in the session data (under `_cloakroom_client`), so every later save or
    /// refresh of the session, on any app server, carries them to the user index. Writing the
    /// same values again changes nothing and costs no write. A `User-Agent` is cut to 512
    /// bytes, an address to 64. It stores data, so call it for a session worth keeping (a
    /// login), not on every anonymous request.
    ///
    /// # Examples
    /// ```
    /// # fn demo(session: cloakroom_core::Session) -> Result<(), cloakroom_core::Error> {
    /// session.record_client(Some("Mozilla/5.0 (X11; Linux x86_64)"), Some("203.0.113.7"))?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::AlreadySaved`] after the request's save began (a streaming body).
    pub fn record_client(&self, user_agent: Option<&str>, ip: Option<&str>) -> Result<(), Error> {
        let user_agent = user_agent.map(|ua| truncated(ua, MAX_USER_AGENT).to_owned());
        let ip = ip.map(|ip| truncated(ip, MAX_IP).to_owned());
        if client_of(&self.read().data) == (user_agent.clone(), ip.clone()) {
            return Ok(());
        }
        self.insert_value(
            CLIENT_KEY,
            serde_json::json!({ "user_agent": user_agent, "ip": ip }),
        )
    }

    /// The authentication backend that logged the user in (`_auth_user_backend`).
    pub fn auth_user_backend(&self) -> Option<String> {
        self.get_value(AUTH_USER_BACKEND)?
            .as_str()
            .map(str::to_owned)
    }

    /// The session auth hash stored at login (`_auth_user_hash`).
    pub fn auth_user_hash(&self) -> Option<String> {
        self.get_value(AUTH_USER_HASH)?.as_str().map(str::to_owned)
    }

    /// Logs `user_id` in as Django's `login()` does, so a Django app beside this one sees the
    /// same user: a session holding another user (or the same user with another `hash`) is
    /// flushed; otherwise the key is cycled and the data kept. Then `_auth_user_id`,
    /// `_auth_user_backend` (a dotted path in the Django app's `AUTHENTICATION_BACKENDS`) and
    /// `_auth_user_hash` (see [`crate::signing::session_auth_hash`]) are stored.
    ///
    /// # Errors
    /// [`Error::AlreadySaved`] after the request's save began (a streaming body).
    pub fn login_as(&self, user_id: &str, backend: &str, hash: &str) -> Result<(), Error> {
        let same_user = self.user_id().as_deref() == Some(user_id)
            && self.auth_user_hash().as_deref().is_none_or(|h| h == hash);
        if self.user_id().is_some() && !same_user {
            self.flush()?;
        } else {
            self.cycle_key()?;
        }
        self.insert_value(AUTH_USER_ID, Value::from(user_id))?;
        self.insert_value(AUTH_USER_BACKEND, Value::from(backend))?;
        self.insert_value(AUTH_USER_HASH, Value::from(hash))
    }

    /// Logs out as Django's `logout()` does: [`flush`](Self::flush).
    ///
    /// # Errors
    /// [`Error::AlreadySaved`] after the request's save began (a streaming body).
    pub fn logout(&self) -> Result<(), Error> {
        self.flush()
    }

    /// Ends this session `lifetime` from now however active it is (per session; the
    /// `absolute_lifetime` setting does this on creation and on `cycle_key`).
    ///
    /// # Errors
    /// [`Error::AlreadySaved`] after the request's save began (a streaming body).
    pub fn set_absolute_lifetime(&self, lifetime: Duration) -> Result<(), Error> {
        let deadline = self.inner.shared.clock.now() + lifetime;
        self.insert_value(
            DEADLINE_KEY,
            Value::from(crate::expiry::format_iso(deadline)),
        )
    }

    /// Sets this session's idle timeout (per session, overriding the `idle_timeout` setting):
    /// it ends after `timeout` without a request, clamped to 1 s ..= `MAX_COOKIE_AGE` (a stored
    /// value out of that range is read as corrupt data). `None` goes back to the setting.
    ///
    /// # Errors
    /// [`Error::AlreadySaved`] after the request's save began (a streaming body).
    pub fn set_idle_timeout(&self, timeout: Option<Duration>) -> Result<(), Error> {
        match timeout {
            Some(t) => self.insert_value(
                IDLE_KEY,
                Value::from(t.as_secs().clamp(1, crate::config::MAX_COOKIE_AGE)),
            ),
            None => self.remove_value(IDLE_KEY).map(drop),
        }
    }

    /// "Remember me": `true` keeps the session for `remember_me_age` (30 days by default) from
    /// now, whatever the browser does; `false` makes it end when the browser closes.
    ///
    /// # Errors
    /// [`Error::AlreadySaved`] after the request's save began (a streaming body).
    pub fn remember_me(&self, remember: bool) -> Result<(), Error> {
        if remember {
            let age = self.inner.shared.settings.session.remember_me_age;
            self.set_expiry(Expiry::In(Duration::from_secs(age)))
        } else {
            self.set_expiry(Expiry::BrowserClose)
        }
    }

    /// Sets this session's expiry (Django's `set_expiry`); see [`Expiry`].
    ///
    /// # Errors
    /// [`Error::AlreadySaved`] after the request's save began (a streaming body).
    pub fn set_expiry(&self, expiry: Expiry) -> Result<(), Error> {
        let now = self.inner.shared.clock.now();
        match expiry.to_value(now) {
            Some(v) => self.write(Op::Set(EXPIRY_KEY.to_owned(), v)),
            None => self.remove_value(EXPIRY_KEY).map(drop),
        }
    }

    fn lifetime(&self) -> Lifetime {
        let st = self.state();
        Lifetime::of(
            &st.data,
            &self.inner.shared.settings.session,
            self.inner.shared.clock.now(),
        )
    }

    /// Seconds until the session expires (Django's `get_expiry_age`).
    pub fn expiry_age(&self) -> i64 {
        self.lifetime().age
    }

    /// When the session expires if saved now (Django's `get_expiry_date`).
    pub fn expiry_date(&self) -> OffsetDateTime {
        self.lifetime().expires_at
    }

    /// Whether the cookie ends with the browser session (Django's
    /// `get_expire_at_browser_close`).
    pub fn expire_at_browser_close(&self) -> bool {
        self.lifetime().browser_close
    }
}

/// A session key with its value type, so that a misspelt key or a wrong type is a compile
/// error rather than a silent `None`.
///
/// # Examples
/// ```
/// use cloakroom_core::TypedKey;
/// const VISITS: TypedKey<u64> = TypedKey::new("visits");
/// # fn demo(session: cloakroom_core::Session) -> Result<(), cloakroom_core::Error> {
/// let n = VISITS.update(&session, |n| *n += 1)?;
/// # Ok(()) }
/// ```
pub struct TypedKey<T> {
    name: &'static str,
    _type: PhantomData<fn() -> T>,
}

impl<T> TypedKey<T> {
    /// Names a key whose values are `T`s.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            _type: PhantomData,
        }
    }

    /// The key's name in the session data.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<T: Serialize + DeserializeOwned> TypedKey<T> {
    /// See [`Session::get`].
    ///
    /// # Errors
    /// [`Error::Type`] when the stored value is not a `T` (written by other code or by Django).
    pub fn get(&self, session: &Session) -> Result<Option<T>, Error> {
        session.get(self.name)
    }
    /// See [`Session::insert`].
    ///
    /// # Errors
    /// [`Error::Encode`] when the value cannot be written as JSON.
    pub fn insert(&self, session: &Session, value: T) -> Result<(), Error> {
        session.insert(self.name, value)
    }
    /// See [`Session::remove`].
    ///
    /// # Errors
    /// [`Error::Type`] when the stored value is not a `T`.
    pub fn remove(&self, session: &Session) -> Result<Option<T>, Error> {
        session.remove(self.name)
    }
}

impl<T: Serialize + DeserializeOwned + Default> TypedKey<T> {
    /// See [`Session::update`].
    ///
    /// # Errors
    /// As [`Session::update`].
    pub fn update<F>(&self, session: &Session, change: F) -> Result<T, Error>
    where
        F: Fn(&mut T) + Send + Sync + 'static,
    {
        session.update(self.name, change)
    }
}
