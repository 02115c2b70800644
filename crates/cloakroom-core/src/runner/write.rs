//! The writes of a request's end: a create under a fresh key, a rolling touch, the
//! compare-and-swap update that merges with concurrent saves, and the rotation snapshot.

use std::time::Duration;

use time::OffsetDateTime;

use super::Written;
use crate::codec::Data;
use crate::error::Error;
use crate::expiry::Lifetime;
use crate::key;
use crate::keys::{DEADLINE_KEY, MOVED_KEY};
use crate::live::EventKind;
use crate::locks::KeyGuard;
use crate::recorded::Recorded;
use crate::shared::{CoreStore, Shared};
use crate::store::{Created, Record, Updated};

/// In the record `cycle_key` leaves under the old key for the grace window: when the key was
/// rotated. The rest of the record is the session as it was then, read-only.
pub(crate) const ROTATED_KEY: &str = "_cloakroom_rotated";
/// Django's `django.contrib.auth` keys, which a rotated key's snapshot does not keep: an old
/// key is never logged in.
const AUTH_KEYS: [&str; 3] = [
    crate::keys::AUTH_USER_ID,
    "_auth_user_backend",
    "_auth_user_hash",
];
/// How many times a save re-applies its changes to a newer record before giving up.
const MAX_MERGES: u32 = 64;
/// How many fresh keys a create draws before giving up (Django's cache backend uses 10,000;
/// with 165 bits per key a second draw is already astronomically unlikely).
const MAX_KEY_DRAWS: u32 = 16;

/// Whether this record is what `cycle_key` left under a rotated key (or, from an older
/// release, a pointer to the new key).
pub(crate) fn is_rotated(data: &Data) -> bool {
    data.contains_key(ROTATED_KEY) || data.contains_key(MOVED_KEY)
}

/// The `Max-Age` of a cookie for `lifetime`: none for a browser-session cookie.
pub(super) fn max_age(lifetime: &Lifetime) -> Option<i64> {
    (!lifetime.browser_close).then_some(lifetime.age)
}

/// What a write of `data` at `now` stores: the data encoded (within `max_session_bytes`),
/// expiring when its lifetime ends.
pub(super) fn record_of(
    shared: &Shared,
    data: &Data,
    now: OffsetDateTime,
) -> Result<(Record, Lifetime), Error> {
    let lifetime = Lifetime::of(data, &shared.settings.session, now);
    let record = Record {
        data: shared.encode_bounded(data)?,
        expires_at: lifetime.expires_at,
    };
    Ok((record, lifetime))
}

/// Under `save_keeps_expiry`, a save keeps the `stored` expiry while the new one would move it
/// later by no more than `refresh_threshold` of the session's age (the rolling refresh's rule
/// for reads, applied to saves): the record and the cookie keep the stored instant. A new
/// expiry that is earlier (a shorter `set_expiry`) or much later (remember-me) applies at once.
fn keep_expiry(
    shared: &Shared,
    stored: Option<OffsetDateTime>,
    record: &mut Record,
    lifetime: &mut Lifetime,
    now: OffsetDateTime,
) {
    let settings = &shared.settings.session;
    let Some(stored) = stored.filter(|_| settings.save_keeps_expiry) else {
        return;
    };
    let later_by = (lifetime.expires_at - stored).as_seconds_f64();
    #[allow(clippy::cast_precision_loss)]
    let within = later_by <= lifetime.age as f64 * settings.refresh_threshold;
    if stored > now && later_by >= 0.0 && within {
        record.expires_at = stored;
        lifetime.expires_at = stored;
        lifetime.age = (stored - now).whole_seconds();
    }
}

/// A new session (or a cycled key): starts its absolute lifetime at `deadline`, when the plan
/// set one, and forgets the token of the data it was loaded from.
pub(super) fn start_new(st: &mut Recorded, deadline: Option<OffsetDateTime>) {
    if let Some(deadline) = deadline {
        st.data.insert(
            DEADLINE_KEY.to_owned(),
            serde_json::Value::from(crate::expiry::format_iso(deadline)),
        );
    }
    st.token = None;
}

/// Stores the session under a fresh key (never overwriting), starting its absolute lifetime
/// at `deadline` when the plan set one.
pub(super) async fn create(
    shared: &Shared,
    store: &CoreStore,
    st: &mut Recorded,
    deadline: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Result<Written, Error> {
    start_new(st, deadline);
    let (record, lifetime) = record_of(shared, &st.data, now)?;
    for _ in 0..MAX_KEY_DRAWS {
        let key = key::generate()?;
        match store.create(&key, &record).await? {
            Created::Stored => {
                let max_age = max_age(&lifetime);
                return Ok(Written {
                    key,
                    record,
                    max_age,
                });
            }
            Created::Taken => continue,
        }
    }
    Err(Error::Contended {
        attempts: MAX_KEY_DRAWS,
    })
}

/// A rolling session's refresh: moves the expiry of the loaded record to `expires_at`.
/// `None` when another request saved meanwhile (and so moved the expiry itself) or the
/// session is gone, which the next request will find out.
pub(super) async fn touch(
    store: &CoreStore,
    st: &Recorded,
    expires_at: OffsetDateTime,
    max_age: Option<i64>,
    now: OffsetDateTime,
) -> Result<Option<Written>, Error> {
    let (Some(key), Some(token)) = (&st.key, &st.token) else {
        return Ok(None);
    };
    let record = Record {
        data: token.clone(),
        expires_at,
    };
    match store.touch(key, &record, now).await? {
        Updated::Stored => Ok(Some(Written {
            key: key.clone(),
            record,
            max_age,
        })),
        Updated::Conflict(_) | Updated::Missing => Ok(None),
    }
}

/// Saves the session under its key by compare-and-swap against the loaded text. On a
/// conflict it waits for the key's other savers in this process, replays this request's
/// changes on the newer record and tries again, at most [`MAX_MERGES`] times.
pub(super) async fn update(
    shared: &Shared,
    store: &CoreStore,
    st: &mut Recorded,
    now: OffsetDateTime,
) -> Result<Written, Error> {
    let (Some(key), Some(mut expected)) = (st.key.clone(), st.token.take()) else {
        return Err(Error::Interrupted);
    };
    // Computed once, and again only when a merge changes the data.
    let (mut record, mut lifetime) = record_of(shared, &st.data, now)?;
    keep_expiry(shared, st.expires_at, &mut record, &mut lifetime, now);
    let mut merges = 0;
    // Taken once a save has met another: the others' saves of this key in this process then
    // go one at a time, so each merges about once. A save that finds the queue there joins
    // it before its first try, so that a stream of new saves cannot overtake (and starve)
    // the queued ones.
    let mut queued = None;
    let mut wait = shared.save_locks.busy(&key);
    loop {
        if wait {
            // Boxed, and one await point for both waits: a conflict is rare, and its lock and
            // timer futures would make every save's future larger.
            Box::pin(wait_turn(shared, &key, &mut queued, merges)).await;
        }
        match store.update(&key, &expected, &record, now).await? {
            Updated::Stored => break,
            Updated::Missing => return Err(Error::Interrupted),
            Updated::Conflict(current) => {
                merges += 1;
                if merges > MAX_MERGES {
                    return Err(Error::Contended { attempts: merges });
                }
                let data = merge(shared, st, &current)?;
                (record, lifetime) = record_of(shared, &data, now)?;
                keep_expiry(
                    shared,
                    Some(current.expires_at),
                    &mut record,
                    &mut lifetime,
                    now,
                );
                st.data = data;
                expected = current.data;
                wait = true;
            }
        }
    }
    if merges > 0 && shared.live.wants_events() {
        let user = crate::keys::user_id(&st.data);
        let id = shared.stored_id(&key);
        shared
            .live
            .emit(EventKind::Merged, &id, user.as_deref(), now);
    }
    let max_age = max_age(&lifetime);
    Ok(Written {
        key,
        record,
        max_age,
    })
}

/// Before a try: the first wait (a first conflict, or a queue found before the first try)
/// queues behind the key's other savers (bounded like a store call; past it the save goes on
/// unqueued, and the compare-and-swap still loses nothing); later ones back off.
async fn wait_turn(shared: &Shared, key: &str, queued: &mut Option<KeyGuard>, merges: u32) {
    if queued.is_none() {
        let wait = shared.settings.store_timeout();
        *queued = shared.save_locks.lock(key, wait).await;
    } else {
        backoff(merges).await;
    }
}

/// This request's changes replayed on the record another request saved.
fn merge(shared: &Shared, st: &Recorded, current: &Record) -> Result<Data, Error> {
    let mut data = shared.codec.decode(&current.data).map_err(|e| {
        tracing::warn!(error = %e, "a concurrent save left corrupt data");
        Error::Interrupted
    })?;
    if is_rotated(&data) {
        // A login rotated the key while this request ran: its changes stay out of the new
        // session (they may be an attacker's who held the old key).
        return Err(Error::Rotated);
    }
    for op in &st.ops {
        op.replay(&mut data)?;
    }
    Ok(data)
}

/// Leaves, under a rotated key, the session as it was before the rotation, marked read-only,
/// for the grace window (see [`crate::plan`]). It holds nothing that leads to the new key,
/// and no logged-in user.
pub(super) async fn park_snapshot(
    shared: &Shared,
    store: &CoreStore,
    old: &str,
    mut expected: bytes::Bytes,
    now: OffsetDateTime,
) -> Result<(), Error> {
    let grace = Duration::from_secs(shared.settings.session.rotation_grace);
    for _ in 0..MAX_MERGES {
        // The snapshot is what the store held under the old key (a concurrent save under it
        // included), never this request's changes.
        let Ok(mut snapshot) = shared.codec.decode(&expected) else {
            break;
        };
        for auth in AUTH_KEYS {
            snapshot.shift_remove(auth);
        }
        let rotated_at = serde_json::Value::from(crate::expiry::format_iso(now));
        snapshot.insert(ROTATED_KEY.to_owned(), rotated_at);
        let record = Record {
            data: shared.encode(&snapshot)?,
            expires_at: now + grace,
        };
        match store.update(old, &expected, &record, now).await? {
            Updated::Stored | Updated::Missing => return Ok(()),
            Updated::Conflict(current) => expected = current.data,
        }
    }
    // Could not park the snapshot: fall back to no grace rather than leave the old key live.
    store.delete(old).await?;
    Ok(())
}

/// A short random pause before the next merge attempt, growing with each conflict, so that
/// many requests racing for one record (several app servers, or a lock wait that timed out)
/// spread out instead of colliding again in lockstep.
async fn backoff(attempt: u32) {
    let ceiling_us = 500u64 << attempt.min(6); // 0.5 ms … 32 ms
    let mut bytes = [0u8; 8];
    let jitter = match getrandom::fill(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes) % ceiling_us,
        Err(_) => ceiling_us / 2,
    };
    tokio::time::sleep(Duration::from_micros(jitter)).await;
}
