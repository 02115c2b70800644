//! Lifecycle events and live revocation.
//!
//! **Events.** What happens to sessions in this process (created, key rotated, logged in,
//! logged out, revoked, expired, merged after a conflict) is sent to the app's subscribers
//! ([`Sessions::events`](crate::Sessions::events)), each [`Event`] naming the session by the
//! digest of its index id ([`wire_id`] of [`UserSession::id`](crate::UserSession::id)), never
//! by its key, with the user and the time. Nobody subscribed: nothing is built, nothing is
//! allocated.
//!
//! **Live revocation.** A handler that holds a connection open (a WebSocket, a server-sent
//! events stream) awaits [`Session::ended`](crate::Session::ended), which resolves when the
//! session is revoked, logged out or expires, here or on any other app server. In this
//! process the end is handed over directly; across servers it rides on the store, through
//! the optional [`Announce`] ability (PostgreSQL `LISTEN`/`NOTIFY`, Redis pub/sub), or, where
//! the store has none (MySQL, files, SQLite), by checking the session in the store at a
//! bounded interval. [`Sessions::start_live`](crate::Sessions::start_live) starts the one
//! background task that listens, explicitly, as the scheduled cleanup is started.
//!
//! What travels between servers is a kind and a digest of the index id
//! ([`wire_id`]), never the key: a database or Redis user who listens on the channel learns
//! nothing that opens a session.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::{broadcast, oneshot, watch, Notify};
use tokio::task::JoinHandle;

use crate::error::StoreError;

/// How many events a slow subscriber may fall behind before it misses some (it then gets
/// [`broadcast::error::RecvError::Lagged`] with the number missed).
pub const EVENT_BUFFER: usize = 1024;

/// The first pause before the listener connects again after losing its connection; it
/// doubles up to [`MAX_RECONNECT_DELAY`], so an outage costs a handful of attempts, not a storm.
pub const MIN_RECONNECT_DELAY: Duration = Duration::from_millis(100);

/// The longest pause between two reconnection attempts of the listener.
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);

/// How many sessions the hub remembers having reported expired: a session's expiry may be
/// seen twice (by a wait at its expiry, then by the sweep that deletes it or by Redis's
/// notice), and is reported once.
const REMEMBERED_EXPIRIES: usize = 4096;

/// What happened to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// A new session was stored (its first save).
    Created,
    /// The session's key was rotated (`cycle_key`, which a login does); the event names the
    /// new id.
    Rotated,
    /// The session was linked to a user (a login's save).
    LoggedIn,
    /// The session was flushed (Django's `logout()`); `user_id` is who was logged in, if
    /// anyone.
    LoggedOut,
    /// The session was revoked: one of a user's ([`Sessions::revoke`](crate::Sessions::revoke)),
    /// all of them ("log out everywhere"), or the oldest over `max_sessions_per_user`.
    Revoked,
    /// The session expired: deleted by the sweep of expired sessions (SQL and files:
    /// [`Sessions::start_cleanup`](crate::Sessions::start_cleanup) or
    /// [`clear_expired_now`](crate::Sessions::clear_expired_now), on the server that ran
    /// it), dropped by Redis (its keyspace notification, heard by every server that started
    /// [`Sessions::start_live`](crate::Sessions::start_live)), or seen by a
    /// [`Session::ended`](crate::Session::ended) waiting on it. Reported once per session and
    /// process.
    Expired,
    /// A save met a newer record (another request saved first) and merged its changes into it.
    Merged,
}

impl EventKind {
    /// The kind's name in logs and JSON (`"created"`, `"logged_in"` …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Rotated => "rotated",
            Self::LoggedIn => "logged_in",
            Self::LoggedOut => "logged_out",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::Merged => "merged",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing that happened to a session, as subscribers get it.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The session's public id: [`wire_id`] of its index id (the name
    /// [`UserSession::id`](crate::UserSession::id) lists and
    /// [`Sessions::revoke`](crate::Sessions::revoke) takes), the same on every app server.
    /// Without `hash_keys` the index id is the cookie's key, so an event never carries the index
    /// id itself: logging events leaks no working key. Match a listed session with
    /// `wire_id(&user_session.id) == event.id`.
    pub id: String,
    /// The user the session belongs (or, logged out, belonged) to, if known.
    pub user_id: Option<String>,
    /// When it happened.
    pub at: OffsetDateTime,
}

impl Event {
    /// The first 8 characters of the id: enough to tell sessions apart in a log.
    pub fn short_id(&self) -> &str {
        self.id.get(..8).unwrap_or(&self.id)
    }
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("kind", &self.kind)
            .field("id", &format_args!("{}…", self.short_id()))
            .field("user_id", &self.user_id)
            .field("at", &self.at)
            .finish()
    }
}

/// Why [`Session::ended`](crate::Session::ended) resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ended {
    /// Revoked (one session, or "log out everywhere"), on this server or another.
    Revoked,
    /// Logged out (flushed), on this server or another.
    LoggedOut,
    /// Its expiry passed without a request that kept it alive.
    Expired,
    /// It is no longer in the store, and nothing said why (deleted by another program, or
    /// found gone after the listener lost its connection).
    Gone,
}

impl Ended {
    fn code(self) -> char {
        match self {
            Self::Revoked => 'r',
            Self::LoggedOut => 'o',
            Self::Expired => 'e',
            Self::Gone => 'g',
        }
    }

    fn from_code(code: char) -> Option<Self> {
        Some(match code {
            'r' => Self::Revoked,
            'o' => Self::LoggedOut,
            'e' => Self::Expired,
            'g' => Self::Gone,
            _ => return None,
        })
    }
}

/// The digest of index id `id` that travels between app servers: the first 40 hex characters
/// of its SHA-256 (as [`crate::hashed::stored_key`]), so a listener on the store's channel
/// never sees a live key.
pub fn wire_id(id: &str) -> String {
    crate::hashed::stored_key(id)
}

/// The message that tells other app servers session `id` (an index id) ended: `<code>:<digest>`.
pub fn message(id: &str, why: Ended) -> String {
    format!("{}:{}", why.code(), wire_id(id))
}

/// The end and the digest a message names; `None` for anything else (ignored).
fn parse(message: &str) -> Option<(Ended, &str)> {
    let (code, digest) = message.split_once(':')?;
    let mut chars = code.chars();
    let why = Ended::from_code(chars.next()?)?;
    let well_formed = chars.next().is_none()
        && digest.len() == crate::hashed::STORED_KEY_LEN
        && digest.bytes().all(|b| b.is_ascii_hexdigit());
    well_formed.then_some((why, digest))
}

/// An optional ability of a store shared by several app servers: telling the others at once
/// that a session ended, over a channel the store's server carries (PostgreSQL
/// `LISTEN`/`NOTIFY`, Redis pub/sub, Redis Cluster's sharded pub/sub). A store without it
/// still ends live connections on other servers: [`Session::ended`](crate::Session::ended)
/// then checks the store at an interval.
#[async_trait]
pub trait Announce: Send + Sync {
    /// Sends `message` (at most 45 ASCII bytes, see [`message`]) to every listener of the
    /// store's channel, this server's included.
    async fn announce(&self, message: &str) -> Result<(), StoreError>;

    /// Opens a connection that listens on the store's channel. The core keeps one open (see
    /// [`Sessions::start_live`](crate::Sessions::start_live)) and opens another, after a
    /// pause, when [`Announcements::next`] fails.
    ///
    /// A store whose server drops expired sessions by itself and says so (Redis's keyspace
    /// notifications) hands each such expiry over as `message(id, Ended::Expired)`: the
    /// listener turns it into an [`EventKind::Expired`] event and ends the waits on it.
    async fn listen(&self) -> Result<Box<dyn Announcements>, StoreError>;
}

/// The messages on a store's channel, as [`Announce::listen`] receives them.
#[async_trait]
pub trait Announcements: Send {
    /// The next message. An error means the connection is lost (messages may have been missed
    /// meanwhile): the listener is dropped and another opened.
    async fn next(&mut self) -> Result<String, StoreError>;
}

/// One session some handler waits on: set once, when it ends.
#[derive(Default)]
pub(crate) struct Watch {
    pub ended: OnceLock<Ended>,
    pub notify: Notify,
}

impl Watch {
    fn end(&self, why: Ended) {
        let _ = self.ended.set(why);
        self.notify.notify_waiters();
    }
}

/// A place in the watch list, held by a waiting [`Session::ended`](crate::Session::ended):
/// dropping the last one for a session removes its entry.
pub(crate) struct Watching {
    hub: Arc<Live>,
    digest: String,
    pub watch: Arc<Watch>,
}

impl Drop for Watching {
    fn drop(&mut self) {
        let mut watches = self.hub.lock_watches();
        // Ours is the last: nobody else waits on this session here (unless the entry is
        // already another waiter's, which a later `watch` put in place of a dead one).
        let ours = watches
            .get(&self.digest)
            .is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(&self.watch)));
        if ours && Arc::strong_count(&self.watch) == 1 {
            watches.remove(&self.digest);
        }
    }
}

/// The live side of one app's sessions: the event channel, the sessions handlers wait on,
/// and the state of the listener across servers. Shared by every clone of a `Sessions`.
pub(crate) struct Live {
    events: broadcast::Sender<Event>,
    /// Waiting sessions by [`wire_id`] of their index id.
    watches: Mutex<HashMap<String, Weak<Watch>>>,
    /// The store's channel between servers, if it has one.
    announce: Option<Arc<dyn Announce>>,
    /// Set once [`Sessions::start_live`](crate::Sessions::start_live) ran: ends are
    /// announced to the other servers, and waiters check the store at this interval unless
    /// the listener is connected.
    started: OnceLock<Duration>,
    /// Whether the listener is connected now: waiters then need not check the store.
    listening: AtomicBool,
    /// Bumped when the listener connects or loses its connection: waiters check the store
    /// once (an end may have gone unheard) and choose again whether to poll.
    turns: watch::Sender<u64>,
    /// The digests of the sessions last reported expired (see [`REMEMBERED_EXPIRIES`]).
    expiries: Mutex<Remembered>,
}

/// A bounded set of digests, the oldest forgotten first.
#[derive(Default)]
struct Remembered {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl Remembered {
    /// `false` when `digest` is already in; otherwise puts it in (forgetting the oldest
    /// beyond [`REMEMBERED_EXPIRIES`]) and answers `true`.
    fn first(&mut self, digest: &str) -> bool {
        if self.set.contains(digest) {
            return false;
        }
        if self.order.len() >= REMEMBERED_EXPIRIES {
            if let Some(oldest) = self.order.pop_front() {
                self.set.remove(&oldest);
            }
        }
        self.set.insert(digest.to_owned());
        self.order.push_back(digest.to_owned());
        true
    }
}

impl Live {
    pub fn new(announce: Option<Arc<dyn Announce>>) -> Self {
        Self {
            events: broadcast::Sender::new(EVENT_BUFFER),
            watches: Mutex::new(HashMap::new()),
            announce,
            started: OnceLock::new(),
            listening: AtomicBool::new(false),
            turns: watch::Sender::new(0),
            expiries: Mutex::new(Remembered::default()),
        }
    }

    fn lock_watches(&self) -> std::sync::MutexGuard<'_, HashMap<String, Weak<Watch>>> {
        // Every change is one insert or remove: a poisoned map is still consistent.
        self.watches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A receiver of every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Whether anybody listens for events: the callers build an event only then, so the
    /// request path costs nothing more when nobody subscribed.
    pub fn wants_events(&self) -> bool {
        self.events.receiver_count() > 0
    }

    /// Sends an event to the subscribers, if any (and allocates nothing otherwise).
    pub fn emit(&self, kind: EventKind, id: &str, user_id: Option<&str>, at: OffsetDateTime) {
        if self.wants_events() {
            // No receiver left meanwhile: nothing to do.
            let _ = self.events.send(Event {
                kind,
                id: wire_id(id),
                user_id: user_id.map(str::to_owned),
                at,
            });
        }
    }

    /// Whether an expiry the store reports is wanted: somebody subscribes or waits. The
    /// sweep of expired sessions names what it deletes only then (a dearer statement than
    /// counting).
    pub fn wants_expiries(&self) -> bool {
        self.wants_events() || self.anyone_waits()
    }

    /// Session `id` (an index id) of `user_id` expired (a wait saw it, or the store's sweep
    /// deleted it): the waits on it here end as [`Ended::Expired`], and the subscribers get
    /// one [`EventKind::Expired`] for it, however many times it is reported. Nothing is
    /// built when nobody subscribes or waits.
    pub fn expired(&self, id: &str, user_id: Option<&str>, at: OffsetDateTime) {
        if self.wants_expiries() {
            self.expired_digest(&wire_id(id), user_id, at);
        }
    }

    /// As [`expired`](Self::expired), for the session whose [`wire_id`] is `digest`.
    fn expired_digest(&self, digest: &str, user_id: Option<&str>, at: OffsetDateTime) {
        self.end_local(digest, Ended::Expired);
        if !self.wants_events() {
            return;
        }
        let first = self
            .expiries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .first(digest);
        if first {
            let _ = self.events.send(Event {
                kind: EventKind::Expired,
                id: digest.to_owned(),
                user_id: user_id.map(str::to_owned),
                at,
            });
        }
    }

    /// Starts waiting on session `id` (an index id).
    pub fn watch(self: &Arc<Self>, id: &str) -> Watching {
        let digest = wire_id(id);
        let mut watches = self.lock_watches();
        let watch = match watches.get(&digest).and_then(Weak::upgrade) {
            Some(watch) => watch,
            None => {
                let watch = Arc::new(Watch::default());
                watches.insert(digest.clone(), Arc::downgrade(&watch));
                watch
            }
        };
        drop(watches);
        Watching {
            hub: Arc::clone(self),
            digest,
            watch,
        }
    }

    /// Whether an end must be reported at all: somebody subscribes, waits, or live
    /// revocation announces to other servers. The request path checks this before it builds
    /// an id, so a logout or a login costs nothing more when none of them is on.
    pub fn wants_ends(&self) -> bool {
        self.wants_events()
            || (self.started.get().is_some() && self.announce.is_some())
            || self.anyone_waits()
    }

    /// Whether any handler here waits on a session (the cheap check before hashing an id).
    fn anyone_waits(&self) -> bool {
        !self.lock_watches().is_empty()
    }

    /// Ends the waits on the session whose [`wire_id`] is `digest`, in this process.
    fn end_local(&self, digest: &str, why: Ended) {
        let watch = self.lock_watches().get(digest).and_then(Weak::upgrade);
        if let Some(watch) = watch {
            watch.end(why);
        }
    }

    /// Ends the waits on session `id` (an index id) in this process only.
    pub fn ended_here(&self, id: &str, why: Ended) {
        if self.anyone_waits() {
            self.end_local(&wire_id(id), why);
        }
    }

    /// Session `id` (an index id) ended here: the waits on it in this process end at once,
    /// and, once live revocation is started, the other servers are told through the store.
    pub async fn ended(&self, id: &str, why: Ended, timeout: Duration) {
        let announcing = self.started.get().is_some() && self.announce.is_some();
        if !(announcing || self.anyone_waits()) {
            return;
        }
        self.end_local(&wire_id(id), why);
        if let (Some(announce), true) = (&self.announce, announcing) {
            let sent = tokio::time::timeout(timeout, announce.announce(&message(id, why))).await;
            let failure = match sent {
                Ok(Ok(())) => return,
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {timeout:?}"),
            };
            // The session is gone from the store all the same; the other servers' waits find
            // that out at their next check (after the listener reconnects, or at expiry).
            tracing::warn!(error = %failure, "could not tell the other app servers a session ended");
        }
    }

    /// How often a waiter checks the store now: never while the listener is connected (the
    /// store tells), at the interval given to `start_live` otherwise; `None` before
    /// `start_live`, when only this process's ends and the expiry are seen.
    pub fn poll_every(&self) -> Option<Duration> {
        let every = *self.started.get()?;
        (!self.listening.load(Ordering::Acquire)).then_some(every)
    }

    /// Whether the listener is connected now, so that another server's end reaches this one
    /// as a message with its reason.
    pub fn hears_others(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }

    /// A receiver that changes whenever the listener connects or disconnects.
    pub fn turns(&self) -> watch::Receiver<u64> {
        self.turns.subscribe()
    }

    fn turn(&self, listening: bool) {
        self.listening.store(listening, Ordering::Release);
        self.turns.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Delivers a message from the store's channel. An expiry (which only the store's
    /// server reports: Redis's keyspace notifications, see [`Announce::listen`]) is also an
    /// [`EventKind::Expired`] event here, with no user (the notice names only the key).
    fn deliver(&self, message: &str) {
        match parse(message) {
            Some((Ended::Expired, digest)) => {
                if self.wants_expiries() {
                    self.expired_digest(digest, None, OffsetDateTime::now_utc());
                }
            }
            Some((why, digest)) => self.end_local(digest, why),
            None => tracing::debug!("ignored a malformed message on the session channel"),
        }
    }

    /// Marks live revocation started, with `poll` as the interval of the store checks.
    /// `false` if it already was.
    pub fn start(&self, poll: Duration) -> bool {
        self.started.set(poll).is_ok()
    }

    /// The store's channel, if it has one.
    pub fn announce(&self) -> Option<&Arc<dyn Announce>> {
        self.announce.as_ref()
    }
}

/// The running side of [`Sessions::start_live`](crate::Sessions::start_live): stops the
/// listener when stopped or dropped.
#[derive(Debug)]
#[must_use = "live revocation stops when the handle is dropped"]
pub struct LiveHandle {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    listening: watch::Receiver<bool>,
    mode: LiveMode,
}

/// How other app servers' ends reach this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LiveMode {
    /// Through the store's channel (PostgreSQL `LISTEN`/`NOTIFY`, Redis pub/sub); while the
    /// listener is disconnected, waiters check the store every `poll` instead.
    Channel {
        /// The interval of the checks while the channel is down.
        poll: Duration,
    },
    /// By checking each waited-on session in the store every `poll` (MySQL, files, SQLite,
    /// the in-process cache).
    Poll {
        /// The interval.
        poll: Duration,
    },
}

impl LiveHandle {
    /// How other servers' ends reach this one.
    pub fn mode(&self) -> LiveMode {
        self.mode
    }

    /// Whether the listener is connected to the store's channel now (always `false` when
    /// the mode is [`LiveMode::Poll`]).
    pub fn is_listening(&self) -> bool {
        *self.listening.borrow()
    }

    /// Waits until the listener is connected (at most `limit`): `true` when it is. A test or
    /// a readiness check calls it after [`Sessions::start_live`](crate::Sessions::start_live).
    pub async fn wait_listening(&self, limit: Duration) -> bool {
        let mut listening = self.listening.clone();
        tokio::time::timeout(limit, listening.wait_for(|on| *on))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Stops the listener and waits for its task to end.
    pub async fn stop(mut self) {
        self.stop.take();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for LiveHandle {
    fn drop(&mut self) {
        // Dropping the sender is the stop signal.
        self.stop.take();
    }
}

/// Starts the listener of `hub`'s store channel, or nothing when the store has none.
pub(crate) fn spawn(hub: Arc<Live>, poll: Duration, timeout: Duration) -> LiveHandle {
    let (stop_tx, stop_rx) = oneshot::channel();
    let (listening_tx, listening) = watch::channel(false);
    let Some(announce) = hub.announce().cloned() else {
        return LiveHandle {
            stop: Some(stop_tx),
            task: None,
            listening,
            mode: LiveMode::Poll { poll },
        };
    };
    let task = tokio::spawn(listen(hub, announce, timeout, stop_rx, listening_tx));
    LiveHandle {
        stop: Some(stop_tx),
        task: Some(task),
        listening,
        mode: LiveMode::Channel { poll },
    }
}

/// The listener's life: connect, deliver every message, and after a lost connection connect
/// again after a pause that doubles up to [`MAX_RECONNECT_DELAY`]. One connection at a time,
/// one task; it ends when the handle is stopped or dropped.
async fn listen(
    hub: Arc<Live>,
    announce: Arc<dyn Announce>,
    timeout: Duration,
    mut stop: oneshot::Receiver<()>,
    listening: watch::Sender<bool>,
) {
    let mut delay = MIN_RECONNECT_DELAY;
    // An outage is one WARN line (the loss, or the first failed attempt), not one per attempt:
    // the retries of one outage go to DEBUG, and the channel's return to INFO.
    let mut down = false;
    loop {
        let opened = tokio::select! {
            _ = &mut stop => break,
            opened = tokio::time::timeout(timeout, announce.listen()) => opened,
        };
        match opened {
            Ok(Ok(mut channel)) => {
                delay = MIN_RECONNECT_DELAY;
                if std::mem::take(&mut down) {
                    tracing::info!("the session channel is back");
                }
                hub.turn(true);
                let _ = listening.send(true);
                let lost = loop {
                    tokio::select! {
                        _ = &mut stop => break None,
                        next = channel.next() => match next {
                            Ok(message) => hub.deliver(&message),
                            Err(e) => break Some(e),
                        },
                    }
                };
                hub.turn(false);
                let _ = listening.send(false);
                match lost {
                    None => break,
                    Some(e) => {
                        down = true;
                        tracing::warn!(error = %e, "lost the session channel; waiters check the store until it is back")
                    }
                }
            }
            Ok(Err(e)) if down => {
                tracing::debug!(error = %e, retry_in = ?delay, "could not listen on the session channel")
            }
            Ok(Err(e)) => {
                down = true;
                tracing::warn!(error = %e, retry_in = ?delay, "could not listen on the session channel; waiters check the store until it opens")
            }
            Err(_) if down => {
                tracing::debug!(retry_in = ?delay, "the session channel did not open within the store timeout")
            }
            Err(_) => {
                down = true;
                tracing::warn!(retry_in = ?delay, "the session channel did not open within the store timeout; waiters check the store until it opens")
            }
        }
        tokio::select! {
            _ = &mut stop => break,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(MAX_RECONNECT_DELAY);
    }
    hub.turn(false);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_a_digest_never_the_id() {
        let id = "abcdefghijklmnopqrstuvwxyz012345";
        let m = message(id, Ended::Revoked);
        assert!(!m.contains(id));
        assert_eq!(parse(&m), Some((Ended::Revoked, wire_id(id).as_str())));
        assert!(m.len() <= 45);
    }

    #[test]
    fn malformed_messages_are_ignored() {
        for bad in [
            "",
            "r",
            "r:",
            "x:0123456789012345678901234567890123456789",
            "rr:0123456789012345678901234567890123456789",
            "r:01234",
            "r:zz23456789012345678901234567890123456789",
            "é:0123456789012345678901234567890123456789",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn an_end_reaches_every_waiter_of_that_session_only() {
        let hub = Arc::new(Live::new(None));
        let (a1, a2, b) = (hub.watch("a"), hub.watch("a"), hub.watch("b"));
        hub.ended("a", Ended::Revoked, Duration::from_secs(1)).await;
        assert_eq!(a1.watch.ended.get(), Some(&Ended::Revoked));
        assert_eq!(a2.watch.ended.get(), Some(&Ended::Revoked));
        assert_eq!(b.watch.ended.get(), None);
        drop((a1, a2));
        assert_eq!(
            hub.lock_watches().len(),
            1,
            "a's entry went with its last waiter"
        );
        drop(b);
        assert!(!hub.anyone_waits());
    }

    #[test]
    fn no_event_is_built_without_a_subscriber() {
        let hub = Live::new(None);
        assert!(!hub.wants_events());
        let mut rx = hub.subscribe();
        assert!(hub.wants_events());
        hub.emit(EventKind::Created, "id", None, OffsetDateTime::UNIX_EPOCH);
        assert_eq!(rx.try_recv().map(|e| e.kind), Ok(EventKind::Created));
    }
}
