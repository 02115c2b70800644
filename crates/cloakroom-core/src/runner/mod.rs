//! Executes the end of a request that [`crate::plan`] decided: the deletions, the write
//! (a fresh-key create, a rolling touch, or the compare-and-swap loop that merges with
//! concurrent saves), the rotation snapshot, the user index and the cookie; or, when the data
//! travels in the cookie, the signed cookie value that carries it.

mod cookie;
mod index;
mod write;

use std::sync::Arc;

use time::OffsetDateTime;

use crate::error::Error;
use crate::plan::{plan, Cookie, CookieAction, Index, Outcome, Plan, Write};
use crate::recorded::{Context, Recorded};
use crate::shared::{Server, Travel};
use crate::store::Record;

pub(crate) use self::index::link_moved;
pub(crate) use self::write::ROTATED_KEY;

/// What a write stored: the key (the cookie value), the record, and the cookie's `Max-Age`.
struct Written {
    key: String,
    record: Record,
    max_age: Option<i64>,
}

/// Ends a loaded request's session after the handler ran (see
/// [`LazySession::commit`](crate::LazySession::commit)): closes it to changes, runs the plan
/// and, under the fail-open policy, turns a store failure into an unsaved response.
pub(crate) async fn end(ctx: &Arc<Context>, status: u16) -> Result<Outcome, Error> {
    let mut st = {
        let mut current = ctx.state();
        // A handler that kept a clone (a streaming body) may read while the save runs: it
        // sees the data as saved. Nobody else holds one on the usual path, so no copy.
        let data = if Arc::strong_count(ctx) > 1 {
            current.data.clone()
        } else {
            crate::codec::Data::new()
        };
        let closed = Recorded {
            data,
            closed: true,
            ..Recorded::default()
        };
        std::mem::replace(&mut *current, closed)
    };
    st.closed = true;
    let result = match finish(ctx, &mut st, status).await {
        Err(Error::Store(e)) if ctx.policy() == crate::OnStoreError::FailOpen => {
            crate::observe::warn_store_failure(
                ctx.shared.engine(),
                &e,
                "session store failed; the response goes out unsaved (fail-open)",
            );
            Ok(outcome(ctx, CookieAction::Keep, st.accessed))
        }
        other => other,
    };
    // Put back what a handler that kept a clone may still look at; the exclusive turn ends.
    let exclusive = st.exclusive.take();
    *ctx.state() = st;
    drop(exclusive);
    result
}

/// [`Session::save`](crate::Session::save): the save the end of the request would make, made
/// now and forced (an empty session gets a key, as Django's `create()` gives one). The saved
/// text becomes the compare-and-swap token and the changes so far are in it, so the end of the
/// request writes again only if the session changes after this; it re-sends the cookie, which
/// carries the key.
pub(crate) async fn save_now(ctx: &Context) -> Result<String, Error> {
    let mut st = std::mem::take(&mut *ctx.state());
    if st.detached || st.closed {
        let error = if st.closed {
            Error::AlreadySaved
        } else {
            Error::Unsaved
        };
        *ctx.state() = st;
        return Err(error);
    }
    st.accessed = true;
    st.modified = true;
    st.must_persist = true;
    let token = st.token.clone();
    let result = finish(ctx, &mut st, 200).await;
    if result.is_ok() {
        st.ops.clear();
        st.modified = false;
        st.must_persist = false;
        st.resend = true;
    } else if st.token.is_none() {
        // The save took the token and failed: the end of the request tries again from it,
        // rather than take the session for a new one.
        st.token = token;
    }
    let key = st.key.clone();
    *ctx.state() = st;
    result?;
    key.ok_or(Error::Interrupted)
}

/// Decides the end of the request and executes the decision, in the plan's order.
///
/// One `async fn` for both: each level of `async fn` moves the whole future of the level below
/// into its own, and the decision awaits nothing.
async fn finish(ctx: &Context, st: &mut Recorded, status: u16) -> Result<Outcome, Error> {
    let shared = &ctx.shared;
    let now = shared.clock.now();
    st.planned_at = Some(now);
    let plan = plan(st, status, ctx.key().is_some(), &shared.settings, now);
    execute(ctx, st, plan, now).await
}

/// Executes `plan` on the session's state, in the plan's order.
async fn execute(
    ctx: &Context,
    st: &mut Recorded,
    plan: Plan,
    now: OffsetDateTime,
) -> Result<Outcome, Error> {
    let shared = &ctx.shared;
    if plan.write == Write::Refuse {
        return Err(Error::Rotated);
    }
    if plan.check_size {
        shared.encode_bounded(&st.data)?;
    }
    let written = match &shared.travel {
        Travel::Server(server) => on_server(ctx, server, st, &plan, now).await?,
        Travel::Cookie(cookies) => cookie::write(shared, cookies, st, plan.write, now)?,
    };
    let cookie = match (plan.write, &written) {
        (Write::Touch { otherwise, .. }, None) => otherwise,
        _ => plan.cookie,
    };
    let action = cookie_action(st, cookie, written);
    Ok(outcome(ctx, action, st.accessed))
}

/// The store's part of `plan`: the deletions, the write, the rotation snapshot and the user
/// index.
async fn on_server(
    ctx: &Context,
    server: &Server,
    st: &mut Recorded,
    plan: &Plan,
    now: OffsetDateTime,
) -> Result<Option<Written>, Error> {
    let shared = &ctx.shared;
    let store = &*server.store;
    if plan.delete {
        for doomed in std::mem::take(&mut st.doomed) {
            // Boxed, as every call off the usual path is in the runner: its future would
            // make every request's end a larger future, moved whole between layers.
            Box::pin(store.delete(&doomed)).await?;
            Box::pin(crate::ended::deleted(shared, st, &doomed, now)).await;
        }
    }
    let written = match plan.write {
        Write::Nothing | Write::Refuse => None,
        Write::Touch {
            expires_at,
            max_age,
            ..
        } => write::touch(store, st, expires_at, max_age, now).await?,
        Write::Create { deadline } => Some(write::create(shared, store, st, deadline, now).await?),
        Write::Update => Some(write::update(shared, store, st, now).await?),
    };
    if let (Write::Create { .. }, Some(w), true) =
        (plan.write, &written, shared.live.wants_events())
    {
        let kind = if st.cycled {
            crate::live::EventKind::Rotated
        } else {
            crate::live::EventKind::Created
        };
        let user = crate::keys::user_id(&st.data);
        shared
            .live
            .emit(kind, &shared.stored_id(&w.key), user.as_deref(), now);
    }
    if plan.snapshot {
        if let Some((old, text)) = st.cycled_from.take() {
            Box::pin(write::park_snapshot(shared, store, &old, text, now)).await?;
        }
    }
    match (plan.index, &written) {
        (Index::Unlink, _) => index::relink(ctx, st, None, now).await?,
        (Index::Relink, Some(w)) => {
            let saved = (w.key.as_str(), w.record.expires_at);
            index::relink(ctx, st, Some(saved), now).await?;
        }
        _ => {}
    }
    Ok(written)
}

/// The cookie the plan asked for, and the state after a write: the written record is the
/// session's key, compare-and-swap token and expiry from now on.
fn cookie_action(st: &mut Recorded, cookie: Cookie, written: Option<Written>) -> CookieAction {
    match (cookie, written) {
        (Cookie::Written, Some(w)) => {
            st.expires_at = Some(w.record.expires_at);
            st.token = Some(w.record.data);
            // An update or a touch wrote under the key the session has: no second copy of it
            // (an allocation and a free on every save).
            if st.key.as_deref() != Some(w.key.as_str()) {
                st.key = Some(w.key.clone());
            }
            CookieAction::Set {
                value: w.key,
                max_age: w.max_age,
            }
        }
        // The cookie as the request brought it, or as `Session::save` wrote it.
        (Cookie::Resend { max_age }, _) => match (&st.key, &st.token) {
            (Some(key), Some(_)) => CookieAction::Set {
                value: key.clone(),
                max_age,
            },
            _ => CookieAction::Keep,
        },
        (Cookie::Delete, _) => CookieAction::Delete,
        (Cookie::Keep | Cookie::Written, _) => CookieAction::Keep,
    }
}

/// The response's side: the key sent the way the request's transport says, and `Vary`
/// whenever the session was accessed or the key moves.
fn outcome(ctx: &Context, action: CookieAction, accessed: bool) -> Outcome {
    let vary = accessed || action != CookieAction::Keep;
    let via = ctx.presented().map(|(_, via)| via);
    Outcome::deliver(action, vary, ctx.transport(), via)
}
