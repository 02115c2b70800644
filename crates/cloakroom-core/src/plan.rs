//! The end of a request, decided: from what the request recorded, the response status and the
//! settings, [`plan`] says what must be deleted, written and sent, with Django's rules. It does
//! no I/O; the runner executes the [`Plan`]. Each rule is one row of the table in the tests.

use std::time::Duration;

use time::OffsetDateTime;

use crate::config::Settings;
use crate::expiry::Lifetime;
use crate::keys::DEADLINE_KEY;
use crate::recorded::Recorded;
use crate::transport::{Transport, Via};

/// What the response must do with the session cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CookieAction {
    /// Leave the cookie alone.
    Keep,
    /// Set it.
    Set {
        /// The cookie value (the session key, or the signed data).
        value: String,
        /// `Max-Age` in seconds; `None` for a browser-session cookie.
        max_age: Option<i64>,
    },
    /// Delete it.
    Delete,
}

/// The end of a request's session: what to put in the response. An adapter writes
/// [`response_headers`](Self::response_headers); the fields say the same for one that needs
/// them apart.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Outcome {
    /// What to do with the session cookie (always `Keep` when the key travels in the header).
    pub cookie: CookieAction,
    /// What to do with the key header (`header_name`): `Set` sends the key, `Delete` sends the
    /// header empty ("forget the key"), `Keep` sends nothing. Always `Keep` under the cookie
    /// transport. See [`crate::transport`].
    pub header: CookieAction,
    /// Whether the response depends on the session: it varies on the request headers of its
    /// transport (`Cookie`, the key header, or both).
    pub vary: bool,
    /// The request's transport.
    pub transport: Transport,
}

impl Outcome {
    /// Nothing to send: the session was not used.
    pub(crate) fn untouched(transport: Transport) -> Self {
        Self {
            cookie: CookieAction::Keep,
            header: CookieAction::Keep,
            vary: false,
            transport,
        }
    }

    /// The key decision `action` sent the way the key came (`via`) under `transport`; a
    /// request that came with no key under `Both` gets it both ways, since nothing says which
    /// kind of client it is.
    pub(crate) fn deliver(
        action: CookieAction,
        vary: bool,
        transport: Transport,
        via: Option<Via>,
    ) -> Self {
        let keep = CookieAction::Keep;
        let (cookie, header) = match (transport, via) {
            (Transport::Cookie, _) | (Transport::Both, Some(Via::Cookie)) => (action, keep),
            (Transport::Header, _) | (Transport::Both, Some(Via::Header)) => (keep, action),
            (Transport::Both, None) => (action.clone(), action),
        };
        Self {
            cookie,
            header,
            vary,
            transport,
        }
    }
}

/// What the end of one request must do, in order: check the size, delete, write, park the
/// rotation snapshot, update the user index, send the cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Encode the data before deleting anything: a login (`cycle_key`) deletes the old record
    /// before it stores the new one, and a session too large to store must fail first, so the
    /// visitor keeps the session they had.
    pub check_size: bool,
    /// Delete the doomed records (`flush`, or `cycle_key` without a grace window).
    pub delete: bool,
    /// The write to the store.
    pub write: Write,
    /// Leave the session as it was before `cycle_key` under the old key, read-only, for the
    /// `rotation_grace` window.
    pub snapshot: bool,
    /// What to do with the user index once the write is done.
    pub index: Index,
    /// What to do with the cookie once the write is done.
    pub cookie: Cookie,
}

/// The one write of a request's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Write {
    /// Write nothing.
    Nothing,
    /// Write nothing and fail as [`Error::Rotated`](crate::Error::Rotated): a change under a
    /// key that `cycle_key` rotated away must not reach the new session.
    Refuse,
    /// A rolling session's refresh: move the expiry of the loaded record, nothing else. When
    /// the record changed or went meanwhile, nothing is written and the cookie is `otherwise`.
    Touch {
        /// The new expiry.
        expires_at: OffsetDateTime,
        /// The cookie's `Max-Age` after the refresh.
        max_age: Option<i64>,
        /// The cookie when the touch found the record changed or gone.
        otherwise: Cookie,
    },
    /// Store the session under a fresh key, never overwriting.
    Create {
        /// The absolute lifetime's end, which starts with a new session (or a cycled key).
        deadline: Option<OffsetDateTime>,
    },
    /// Compare-and-swap the loaded record, merging with concurrent saves.
    Update,
}

/// The user index after the write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Index {
    /// No index call.
    Untouched,
    /// The session ended empty: forget the entry it was linked under.
    Unlink,
    /// The session was written (if the write stored): link it under its user and key,
    /// unlinking the old entry when either changed.
    Relink,
}

/// The cookie after the write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cookie {
    /// Leave it alone.
    Keep,
    /// Delete it.
    Delete,
    /// Send the cookie of the record as loaded (or as `Session::save` wrote it), unchanged.
    Resend {
        /// The cookie's `Max-Age`: what is left of the record's expiry (`None`: a browser-session
        /// cookie).
        max_age: Option<i64>,
    },
    /// Set the cookie of what the write stored.
    Written,
}

impl Plan {
    /// Nothing written, the cookie as given.
    const fn leave(cookie: Cookie) -> Self {
        Self {
            check_size: false,
            delete: false,
            write: Write::Nothing,
            snapshot: false,
            index: Index::Untouched,
            cookie,
        }
    }
}

/// Decides the end of a request whose session recorded `st`, answered with `status`, that
/// came with a session cookie (`had_cookie`) or not.
pub(crate) fn plan(
    st: &Recorded,
    status: u16,
    had_cookie: bool,
    settings: &Settings,
    now: OffsetDateTime,
) -> Plan {
    let failed = status >= 500;
    if let Some(plan) = read_only(st, failed) {
        return plan;
    }
    let delete = !st.doomed.is_empty();
    let base = Plan {
        check_size: !failed && delete && !st.data.is_empty(),
        delete,
        ..Plan::leave(Cookie::Keep)
    };
    // Django's `is_empty()`: no key and no data. A session that has a key stays a session when
    // emptied (`{}` is saved under its key and the cookie kept); only `flush` drops the key.
    let empty = st.data.is_empty() && st.key.is_none() && !st.must_persist;
    if failed && !empty {
        return base;
    }
    if empty {
        // Django's middleware deletes the cookie of a request that came with one and ends
        // empty: a flush, or a key the store does not know.
        let cookie = if had_cookie {
            Cookie::Delete
        } else {
            Cookie::Keep
        };
        return Plan {
            index: Index::Unlink,
            cookie,
            ..base
        };
    }
    if !(st.modified || settings.session.save_every_request) {
        return unmodified(st, settings, now, base);
    }
    let write = match (&st.key, &st.token) {
        (Some(_), Some(_)) => Write::Update,
        (key, _) => Write::Create {
            deadline: key.is_none().then(|| deadline(st, settings, now)).flatten(),
        },
    };
    Plan {
        write,
        snapshot: st.cycled_from.is_some(),
        index: Index::Relink,
        cookie: Cookie::Written,
        ..base
    }
}

/// The ends that write nothing whatever the session holds: a 5xx without a flush, a session
/// whose load failed under fail-open, and a key `cycle_key` rotated away.
fn read_only(st: &Recorded, failed: bool) -> Option<Plan> {
    // Django skips the save on a 5xx, but its `flush()` has already deleted the record: a
    // logout whose page then fails still logs out, so a flush's deletions go through, and an
    // emptied session's cookie is deleted as Django's middleware does whatever the status.
    // Nothing else is written: a login that failed after `cycle_key` must not delete the old
    // record without storing its replacement.
    if st.detached || (failed && !st.flushed) {
        return Some(Plan::leave(Cookie::Keep));
    }
    // A rotated-away key is read-only: no save, touch or delete, and no cookie (the browser
    // may hold the new key by now); a change fails rather than reach the new session.
    st.rotated.then(|| Plan {
        write: if st.modified {
            Write::Refuse
        } else {
            Write::Nothing
        },
        ..Plan::leave(Cookie::Keep)
    })
}

/// A new session (or a cycled key) starts its absolute lifetime now, unless the handler set
/// its own deadline.
fn deadline(st: &Recorded, settings: &Settings, now: OffsetDateTime) -> Option<OffsetDateTime> {
    let life = settings.session.absolute_lifetime?;
    (!st.data.contains_key(DEADLINE_KEY)).then(|| now + Duration::from_secs(life))
}

/// The end of a request that changed nothing: a rolling refresh when one is due, else the
/// cookie again when it must be re-sent, else nothing.
fn unmodified(st: &Recorded, settings: &Settings, now: OffsetDateTime, base: Plan) -> Plan {
    let otherwise = if st.resend {
        resend(st, settings, now)
    } else {
        Cookie::Keep
    };
    match refresh(st, settings, now) {
        Some(lifetime) => Plan {
            write: Write::Touch {
                expires_at: lifetime.expires_at,
                max_age: (!lifetime.browser_close).then_some(lifetime.age),
                otherwise,
            },
            index: Index::Relink,
            cookie: Cookie::Written,
            ..base
        },
        None => Plan {
            cookie: otherwise,
            ..base
        },
    }
}

/// A rolling session's new lifetime, when a refresh is due: only once `refresh_threshold` of
/// the idle timeout has passed since the last write, so 1,000 reads do not make 1,000 writes.
fn refresh(st: &Recorded, settings: &Settings, now: OffsetDateTime) -> Option<Lifetime> {
    let (Some(_), Some(_), Some(stored)) = (&st.key, &st.token, st.expires_at) else {
        return None;
    };
    Lifetime::idle(&st.data, &settings.session)?;
    let lifetime = Lifetime::of(&st.data, &settings.session, now);
    let idle = lifetime.idle?;
    let remaining = (stored - now).as_seconds_f64();
    #[allow(clippy::cast_precision_loss)]
    let fresh_enough = remaining > idle as f64 * (1.0 - settings.session.refresh_threshold);
    (!fresh_enough && lifetime.expires_at > stored).then_some(lifetime)
}

/// The cookie of the session as it stands, without writing: nothing when it has no key.
fn resend(st: &Recorded, settings: &Settings, now: OffsetDateTime) -> Cookie {
    if st.key.is_none() || st.token.is_none() {
        return Cookie::Keep;
    }
    let lifetime = Lifetime::of(&st.data, &settings.session, now);
    let expires_at = st.expires_at.unwrap_or(lifetime.expires_at);
    let age = (expires_at - now).whole_seconds();
    Cookie::Resend {
        max_age: (!lifetime.browser_close).then_some(age),
    }
}

/// The user index calls of a write, from the entry the session was linked under and the one
/// it now belongs under (`None`: no user, or the session ended).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexSteps {
    /// Forget the old entry (logout, another user, a new key).
    pub unlink: bool,
    /// Link (or refresh) the current entry.
    pub link: bool,
    /// Enforce `max_sessions_per_user` (a new entry: a login).
    pub cap: bool,
}

/// The index calls that keep `linked` in step with `next`. A session without a user, before
/// and after, costs no index call.
pub(crate) fn index_steps(
    linked: Option<&(String, String)>,
    next: Option<&(String, String)>,
) -> IndexSteps {
    let fresh = linked != next;
    IndexSteps {
        unlink: fresh && linked.is_some(),
        link: next.is_some(),
        cap: fresh && next.is_some(),
    }
}

#[cfg(test)]
mod tests;
