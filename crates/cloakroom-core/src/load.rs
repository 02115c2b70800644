//! The load: the first use of a request's session reads its record, at most once per request.
//! Corrupt, expired and rotated-away data comes back as a fresh session; a store failure under
//! the fail-open policy as an empty session that is never saved.

use std::time::Duration;

use time::OffsetDateTime;

use crate::codec::Data;
use crate::config::OnStoreError;
use crate::error::{Error, StoreError};
use crate::key;
use crate::keys::user_id as user_of;
use crate::keys::MOVED_KEY;
use crate::locks::KeyGuard;
use crate::recorded::Context;
use crate::runner::ROTATED_KEY;
use crate::shared::Travel;
use crate::store::Record;

/// Reads the session the request's cookie names into the recorded state.
pub(crate) async fn fetch(ctx: &Context) -> Result<(), Error> {
    let shared = &ctx.shared;
    let Some(candidate) = ctx.key() else {
        return Ok(());
    };
    if shared.server().is_some() && !key::is_well_formed(candidate) {
        return Ok(());
    }
    let exclusive = if ctx.exclusive.get().is_some() {
        // Boxed: only exclusive routes wait, and the lock's future would make every load's
        // future larger.
        Box::pin(exclusive_turn(ctx, candidate)).await?
    } else {
        None
    };
    let found = match read_record(ctx, candidate).await {
        Ok(found) => found,
        Err(e) if ctx.policy() == OnStoreError::FailOpen => {
            crate::observe::warn_store_failure(
                shared.engine(),
                &e,
                "session store failed; continuing with an anonymous session (fail-open)",
            );
            ctx.state().detached = true;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let mut st = ctx.state();
    if let Some((key, record, mut data)) = found {
        // A key the store does not hold keeps no lock.
        st.exclusive = exclusive;
        st.resend = key != candidate;
        st.rotated = data.shift_remove(ROTATED_KEY).is_some();
        st.linked = user_of(&data)
            .filter(|_| !st.rotated)
            .map(|user| (user, key.clone()));
        st.data = data;
        st.key = Some(key);
        st.expires_at = Some(record.expires_at);
        st.token = Some(record.data);
    }
    Ok(())
}

/// Only an exclusive route waits, and only for the same visitor's exclusive requests: taken
/// before the load, so that the load sees what the previous one saved.
async fn exclusive_turn(ctx: &Context, candidate: &str) -> Result<Option<KeyGuard>, Error> {
    let shared = &ctx.shared;
    let (Some(&wait), Some(_)) = (ctx.exclusive.get(), shared.server()) else {
        return Ok(None);
    };
    let wait = wait.unwrap_or(Duration::from_millis(
        shared.settings.resilience.lock_timeout_ms,
    ));
    let turn = shared.exclusive_locks.lock(candidate, wait).await;
    turn.map(Some)
        .ok_or(Error::ExclusiveTimeout { waited: wait })
}

/// Loads and decodes the live record under `key` (for signed cookies, `key` is the cookie
/// value). A record that `cycle_key` left behind under a rotation grace window comes back
/// with its `_cloakroom_rotated` marker (the caller serves it read-only); one from an older
/// release, which held only the new key, is treated as gone. Corrupt data is never adopted.
async fn read_record(
    ctx: &Context,
    key: &str,
) -> Result<Option<(String, Record, Data)>, StoreError> {
    let shared = &ctx.shared;
    let now = shared.clock.now();
    let (record, moved) = match &shared.travel {
        Travel::Server(server) => match shared.load(server, key, now).await? {
            Some(found) => found,
            None => return Ok(None),
        },
        // The token of a cookie session is its data as the codec writes it, as for a record.
        Travel::Cookie(cookies) => match cookies.decode(key, now) {
            Some((data, expires_at)) => {
                let data = shared.encode(&data)?;
                (Record { data, expires_at }, false)
            }
            None => return Ok(None),
        },
    };
    let data = match shared.codec.decode(&record.data) {
        Ok(data) => data,
        Err(e) => {
            // Never adopted and never overwritten: the visitor gets a new key.
            tracing::warn!(engine = shared.engine(), error = %e,
                "stored session data is corrupt; starting a fresh session");
            return Ok(None);
        }
    };
    if shared.server().is_some() && expiry_passed(&data, now) {
        // Django's file backend ends a session whose `_session_expiry` instant has passed,
        // whatever the file's mtime says; the other stores already agree (their expiry is
        // that instant). Signed cookies keep Django's rule: the cookie age only.
        return Ok(None);
    }
    if data.contains_key(MOVED_KEY)
        || (data.contains_key(ROTATED_KEY) && shared.settings.session.rotation_grace == 0)
    {
        return Ok(None);
    }
    if moved {
        Box::pin(crate::runner::link_moved(ctx, key, &record, &data, now)).await?;
    }
    Ok(Some((key.to_owned(), record, data)))
}

/// Whether the data's `_session_expiry` is an instant at or before `now`.
fn expiry_passed(data: &Data, now: OffsetDateTime) -> bool {
    crate::codec::lookup(data, crate::keys::EXPIRY_KEY)
        .and_then(serde_json::Value::as_str)
        .and_then(crate::expiry::parse_iso)
        .is_some_and(|at| at <= now)
}
