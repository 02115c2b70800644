//! The user index after a write: unlink the entry the session was linked under when its user
//! or key changed, link the current one, and enforce `max_sessions_per_user` at a login. Index
//! failures follow the store-error policy (fail-open logs them: the session itself is saved).

use time::OffsetDateTime;

use crate::codec::Data;
use crate::config::OnStoreError;
use crate::error::{Error, StoreError};
use crate::keys::user_id as user_of;
use crate::live::EventKind;
use crate::plan::index_steps;
use crate::recorded::{Context, Recorded};
use crate::shared::CoreStore;
use crate::store::{Record, UserSession};

/// Whether the user index may have anything to do for this session: it is linked under a
/// user, or its data names one. Without either, [`relink`] would do nothing.
pub(super) fn concerns_a_user(st: &Recorded) -> bool {
    st.linked.is_some() || crate::data::lookup(&st.data, crate::keys::AUTH_USER_ID).is_some()
}

/// Keeps the store's user index in step with what this request wrote: `saved` is the key and
/// expiry the session was just written under (`None`: it ended). See [`index_steps`].
pub(super) async fn relink(
    ctx: &Context,
    st: &mut Recorded,
    saved: Option<(&str, OffsetDateTime)>,
    now: OffsetDateTime,
) -> Result<(), Error> {
    let shared = &ctx.shared;
    let next = saved.and_then(|(key, _)| Some((user_of(&st.data)?, key.to_owned())));
    let steps = index_steps(st.linked.as_ref(), next.as_ref());
    if !(steps.unlink || steps.link) {
        return Ok(());
    }
    let Some(index) = shared.users() else {
        return Ok(());
    };
    if let Some((user, key)) = st.linked.as_ref().filter(|_| steps.unlink) {
        under_policy(ctx, Box::pin(index.unlink(user, key)).await)?;
    }
    let entry = saved
        .filter(|_| steps.link)
        .and_then(|(key, expires_at)| UserSession::from_data(key, &st.data, expires_at, now));
    if let Some(entry) = entry {
        under_policy(ctx, Box::pin(index.link(&entry)).await)?;
        let before = st.linked.as_ref().map(|(user, _)| user.as_str());
        if before != Some(entry.user_id.as_str()) && shared.live.wants_events() {
            let id = shared.stored_id(&entry.id);
            let user = Some(entry.user_id.as_str());
            shared.live.emit(EventKind::LoggedIn, &id, user, now);
        }
        if steps.cap {
            let capped = Box::pin(enforce_cap(ctx, index, &entry.user_id, &entry.id, now)).await;
            under_policy(ctx, capped)?;
        }
    }
    st.linked = next;
    Ok(())
}

/// `max_sessions_per_user`: after a login linked session `key`, revokes the user's oldest
/// other sessions until the user has at most the cap.
async fn enforce_cap(
    ctx: &Context,
    index: &CoreStore,
    user: &str,
    key: &str,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let shared = &ctx.shared;
    let Some(cap) = shared.settings.session.max_sessions_per_user else {
        return Ok(());
    };
    let me = shared.stored_id(key);
    let mut others = index.sessions_of(user, now).await?;
    others.retain(|s| s.id != me);
    others.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    let keep = usize::try_from(cap).unwrap_or(usize::MAX).saturating_sub(1);
    for old in others.iter().skip(keep) {
        index.revoke(user, &old.id).await?;
        crate::ended::revoked(shared, user, &old.id).await;
    }
    Ok(())
}

/// Links a session the store just moved in from another (a live migration's first use),
/// which no write of the core's linked: the read alone makes it listed and revocable.
pub(crate) async fn link_moved(
    ctx: &Context,
    key: &str,
    record: &Record,
    data: &Data,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let shared = &ctx.shared;
    let (Some(index), Some(entry)) = (
        shared.users(),
        UserSession::from_data(key, data, record.expires_at, now),
    ) else {
        return Ok(());
    };
    under_policy(ctx, index.link(&entry).await)
}

/// The result of a user index call, under the store-error policy: fail-open logs the failure
/// and goes on (the session itself was saved; only its entry is missing or stale, and a
/// listing shows live sessions only), fail-closed reports it.
fn under_policy(ctx: &Context, result: Result<(), StoreError>) -> Result<(), StoreError> {
    match result {
        Ok(()) => Ok(()),
        Err(e) if ctx.policy() == OnStoreError::FailOpen => {
            crate::observe::warn_store_failure(
                ctx.shared.engine(),
                &e,
                "the user index failed; the session is saved but its entry may be stale (fail-open)",
            );
            Ok(())
        }
        Err(e) => Err(e),
    }
}
