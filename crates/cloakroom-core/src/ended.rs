//! [`Session::ended`](crate::Session::ended): waiting until a request's session ends, here or
//! on another app server (see [`crate::live`]).
//!
//! The wait ends at once when this process ends the session or the store's channel says
//! another server did. Besides, it checks the store (one load) when the session's known
//! expiry passes (a request elsewhere may have kept it alive: the wait then goes on until the
//! new expiry), when the listener connects or loses its connection (an end may have gone
//! unheard), and at the poll interval whenever no channel is connected.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use crate::keys::user_id as user_of;
use crate::live::{Ended, EventKind};
use crate::recorded::{Context, Recorded};
use crate::shared::{Shared, Travel};

/// After a failed check (the store is down), the next one waits at least this long.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// How long a wait that finds its session missing listens for the reason, while the channel
/// between servers is connected. The server that ends a session deletes it first and then
/// announces why, so a check can fall between the two (the first check of a wait that began a
/// moment before a revoke, say, or one slowed by an outage): the notice, a millisecond or two
/// later, says "revoked" or "logged out" where the store alone could only say "gone". A
/// session removed without a notice (by Django, or `clearsessions`) ends this much later.
const REASON_GRACE: Duration = Duration::from_millis(250);

/// How long from `now` until `at`; zero once it passed.
fn until(at: OffsetDateTime, now: OffsetDateTime) -> Duration {
    Duration::try_from(at - now).unwrap_or(Duration::ZERO)
}

/// Sleeps `wait`, or forever when `None`.
async fn sleep_for(wait: Option<Duration>) {
    match wait {
        Some(wait) => tokio::time::sleep(wait).await,
        None => std::future::pending().await,
    }
}

/// Waits until the session of `ctx` ends. A session that has no key (never stored) has
/// nothing to end: the wait never ends. A session whose data travels in the cookie cannot be
/// revoked: the wait ends at its expiry.
///
/// The wait is registered when this is called, not when the future is first polled, so an
/// end between the call and the first poll is not missed; and its first step checks the
/// store, for an end between the request's load and the call.
pub(crate) fn wait(ctx: Arc<Context>) -> impl Future<Output = Ended> + Send + 'static {
    let shared = &ctx.shared;
    let (key, expires_at, user) = {
        let st = ctx.state();
        (st.key.clone(), st.expires_at, user_of(&st.data))
    };
    let watched = match (&key, &shared.travel) {
        (Some(key), Travel::Server(_)) => {
            let id = shared.stored_id(key);
            let watching = shared.live.watch(&id);
            Some((id, watching, shared.live.turns()))
        }
        _ => None,
    };
    async move {
        let shared = &ctx.shared;
        let (Some(key), Travel::Server(server)) = (key, &shared.travel) else {
            return match (&ctx.shared.travel, expires_at) {
                (Travel::Cookie(_), Some(at)) => {
                    tokio::time::sleep(until(at, shared.clock.now())).await;
                    Ended::Expired
                }
                _ => std::future::pending().await,
            };
        };
        let Some((id, watching, mut turns)) = watched else {
            return std::future::pending().await;
        };
        let live = &shared.live;
        let mut expires_at = expires_at;
        let mut failed = false;
        let mut first = true;
        loop {
            let notified = watching.watch.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(why) = watching.watch.ended.get() {
                return *why;
            }
            if !first {
                let now = shared.clock.now();
                let to_expiry = expires_at.map(|at| until(at, now));
                let mut wait = match (to_expiry, live.poll_every()) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                if failed {
                    wait = wait.map(|w| w.max(RETRY_AFTER_FAILURE));
                }
                tokio::select! {
                    () = &mut notified => continue,
                    changed = turns.changed() => {
                        if changed.is_err() {
                            // The hub outlives every session; were it gone, only the timers
                            // would be left.
                            turns = tokio::sync::watch::channel(0).1;
                        }
                    }
                    () = sleep_for(wait) => {}
                }
            }
            first = false;
            let now = shared.clock.now();
            match server.store.load(&key, now).await {
                Ok(Some(record)) => {
                    failed = false;
                    expires_at = Some(record.expires_at);
                }
                Ok(None) => {
                    if live.hears_others() && watching.watch.ended.get().is_none() {
                        tokio::select! {
                            () = &mut notified => {}
                            () = tokio::time::sleep(REASON_GRACE) => {}
                        }
                    }
                    if let Some(why) = watching.watch.ended.get() {
                        return *why;
                    }
                    let expired = expires_at.is_some_and(|at| at <= now);
                    // Every waiter here learns it now; other servers check on their own.
                    if expired {
                        // The event once, though the sweep or Redis may report it too.
                        live.expired(&id, user.as_deref(), now);
                        return Ended::Expired;
                    }
                    live.ended_here(&id, Ended::Gone);
                    return Ended::Gone;
                }
                // The store is down: no news is not an end. The next check waits a while.
                Err(_) => failed = true,
            }
        }
    }
}

/// Session `id` (an index id) of `user_id` was revoked here: the event, and the end of the
/// waits on it, here and (once live revocation is started) on the other servers.
pub(crate) async fn revoked(shared: &Shared, user_id: &str, id: &str) {
    let live = &shared.live;
    live.emit(EventKind::Revoked, id, Some(user_id), shared.clock.now());
    live.ended(id, Ended::Revoked, shared.settings.store_timeout())
        .await;
}

/// Record `key` was deleted at the end of a request: a flush (a logout) ends the waits on
/// it as [`Ended::LoggedOut`], here and on the other servers; a key `cycle_key` rotated away
/// as [`Ended::Gone`] (the session goes on under its new key, which those waits never held).
pub(crate) async fn deleted(shared: &Shared, st: &Recorded, key: &str, now: OffsetDateTime) {
    let live = &shared.live;
    if !live.wants_ends() {
        return;
    }
    let user = st
        .linked
        .as_ref()
        .filter(|(_, linked)| linked == key)
        .map(|(user, _)| user.as_str());
    let id = shared.stored_id(key);
    if st.flushed {
        live.emit(EventKind::LoggedOut, &id, user, now);
    }
    let why = if st.flushed {
        Ended::LoggedOut
    } else {
        Ended::Gone
    };
    live.ended(&id, why, shared.settings.store_timeout()).await;
}
