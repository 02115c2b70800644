//! The write of a request's end when the data travels in the cookie (signed or private
//! cookies). Nothing is stored, so there is nothing to delete, compare-and-swap, park or index:
//! the write the plan asks for becomes a cookie value sealed now, which is the session's key from then on,
//! as a Django `signed_cookies` session's key is its cookie value. Two overlapping requests
//! each send their whole session, and the browser keeps the last: no merge is possible.

use time::OffsetDateTime;

use super::write::{max_age, record_of, start_new};
use super::Written;
use crate::backing::ClientSide;
use crate::error::Error;
use crate::plan::Write;
use crate::recorded::Recorded;
use crate::shared::Shared;
use crate::store::Record;

/// The cookie that carries what `write` asks for, sealed at `now`; `None` when it asks for
/// nothing (or a refresh of a session that has no data loaded).
pub(super) fn write(
    shared: &Shared,
    cookies: &ClientSide,
    st: &mut Recorded,
    write: Write,
    now: OffsetDateTime,
) -> Result<Option<Written>, Error> {
    let (key, record, max_age) = match write {
        Write::Nothing | Write::Refuse => return Ok(None),
        // A rolling refresh re-seals the data as loaded: only the issue time moves.
        Write::Touch {
            expires_at,
            max_age,
            ..
        } => {
            let Some(data) = st.token.clone() else {
                return Ok(None);
            };
            let Ok(loaded) = shared.codec.decode(&data) else {
                return Ok(None);
            };
            let key = cookies.encode(&loaded, now)?;
            (key, Record { data, expires_at }, max_age)
        }
        Write::Create { deadline } => {
            start_new(st, deadline);
            let (record, lifetime) = record_of(shared, &st.data, now)?;
            (cookies.encode(&st.data, now)?, record, max_age(&lifetime))
        }
        Write::Update => {
            let (record, lifetime) = record_of(shared, &st.data, now)?;
            (cookies.encode(&st.data, now)?, record, max_age(&lifetime))
        }
    };
    Ok(Some(Written {
        key,
        record,
        max_age,
    }))
}
