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
    match begin(ctx, status) {
        Begun::Done(result) => result,
        Begun::Store(mut rest) => rest.run(ctx).await,
    }
}

/// A request's end once planned: done, when the plan asks nothing of the store (a session
/// only read, or kept in the cookie), or the store's part still to run.
// Both variants live on the stack for an instant; boxing `Rest` would cost every save an
// allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Begun {
    /// What [`end`] answers.
    Done(Result<Outcome, Error>),
    /// The closed session and its plan: [`Rest::run`] executes it.
    Store(Rest),
}

/// The state and plan of a request's end that waits for the store.
pub(crate) struct Rest {
    st: Recorded,
    plan: Plan,
    now: OffsetDateTime,
}

/// Closes the session to changes and plans its end; executes the plan at once when it makes no
/// store call, so a request that only read its session ends without a future.
pub(crate) fn begin(ctx: &Arc<Context>, status: u16) -> Begun {
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
    let shared = &ctx.shared;
    let now = shared.clock.now();
    st.planned_at = Some(now);
    let plan = plan(&st, status, ctx.key().is_some(), &shared.settings, now);
    if matches!(shared.travel, Travel::Server(_)) && calls_store(&plan) {
        return Begun::Store(Rest { st, plan, now });
    }
    let result = prepare(ctx, &st, &plan).and_then(|()| {
        let written = match &shared.travel {
            Travel::Server(_) => None,
            Travel::Cookie(cookies) => cookie::write(shared, cookies, &mut st, plan.write, now)?,
        };
        Ok(conclude(ctx, &mut st, &plan, written))
    });
    Begun::Done(settle(ctx, st, result))
}

impl Rest {
    /// Executes the plan, store calls included. By reference: the future then holds the
    /// state once, where a `self` moved into it would be held twice (a future keeps room for
    /// its arguments beside the futures they move into).
    pub(crate) async fn run(&mut self, ctx: &Arc<Context>) -> Result<Outcome, Error> {
        let result = execute(ctx, &mut self.st, self.plan, self.now).await;
        settle(ctx, std::mem::take(&mut self.st), result)
    }
}

/// Whether `plan` (on a server store) calls the store.
fn calls_store(plan: &Plan) -> bool {
    plan.delete
        || plan.snapshot
        || plan.index == Index::Unlink
        || !matches!(plan.write, Write::Nothing | Write::Refuse)
}

/// Under the fail-open policy a store failure becomes an unsaved response; the state goes back
/// for a handler that kept a clone, and the exclusive turn ends.
fn settle(
    ctx: &Context,
    mut st: Recorded,
    result: Result<Outcome, Error>,
) -> Result<Outcome, Error> {
    let result = match result {
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
    prepare(ctx, st, &plan)?;
    let written = match &shared.travel {
        Travel::Server(server) => on_server(ctx, server, st, &plan, now).await?,
        Travel::Cookie(cookies) => cookie::write(shared, cookies, st, plan.write, now)?,
    };
    Ok(conclude(ctx, st, &plan, written))
}

/// The plan's checks before anything is written: a refused write, a session too large.
fn prepare(ctx: &Context, st: &Recorded, plan: &Plan) -> Result<(), Error> {
    if plan.write == Write::Refuse {
        return Err(Error::Rotated);
    }
    if plan.check_size {
        ctx.shared.encode_bounded(&st.data)?;
    }
    Ok(())
}

/// The outcome after the write: the cookie the plan asked for, given what was written.
fn conclude(ctx: &Context, st: &mut Recorded, plan: &Plan, written: Option<Written>) -> Outcome {
    let cookie = match (plan.write, &written) {
        (Write::Touch { otherwise, .. }, None) => otherwise,
        _ => plan.cookie,
    };
    let action = cookie_action(st, cookie, written);
    outcome(ctx, action, st.accessed)
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
    // Boxed, and only for a session that is or was a user's: the index has nothing to do
    // for an anonymous one (most saves), whose future then carries no room for it.
    match (plan.index, &written) {
        (Index::Unlink, _) => Box::pin(index::relink(ctx, st, None, now)).await?,
        (Index::Relink, Some(w)) if index::concerns_a_user(st) => {
            let saved = (w.key.as_str(), w.record.expires_at);
            Box::pin(index::relink(ctx, st, Some(saved), now)).await?;
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
