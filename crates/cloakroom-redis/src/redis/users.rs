//! The Redis store's index entries ([`IndexEntries`]): a sorted set per user of the user's
//! session keys, scored by their expiry (ms), and one hash per session beside it (login, last
//! write, client), kept by the scripts `lua/link.lua`, `unlink.lua`, `list.lua` and
//! `owns.lua`. Both carry the user's hash tag, so each script touches one cluster slot. The
//! rules of the index are the core's (`cloakroom_core::users`).

use async_trait::async_trait;
use fred::types::Value;
use time::OffsetDateTime;

use super::script::{self, status};
use super::store::NO_EXPIRY;
use super::RedisStore;
use crate::error::StoreError;
use crate::store::UserSession;
use crate::users::{IndexEntries, IndexEntry};

/// Milliseconds since the Unix epoch, as the index scores and stamps instants.
fn unix_ms(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn from_unix_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(NO_EXPIRY)
}

/// One member of a `list.lua` reply, or `None` when its entry is gone.
fn listed_entry(user_id: &str, member: &Value) -> Option<UserSession> {
    let Value::Array(fields) = member else {
        return None;
    };
    let text = |i: usize| {
        fields
            .get(i)
            .and_then(Value::as_string)
            .filter(|s| !s.is_empty())
    };
    let at = |i: usize| fields.get(i).and_then(Value::as_i64).map(from_unix_ms);
    Some(UserSession {
        id: text(0)?,
        user_id: user_id.to_owned(),
        expires_at: at(1)?,
        created_at: at(2)?,
        last_seen: at(3)?,
        user_agent: text(4),
        ip: text(5),
    })
}

impl RedisStore {
    /// The sorted set of `user_id`'s sessions in the user index (see the module docs).
    pub fn user_set_key(&self, user_id: &str) -> String {
        // `u:` keeps the hash tag non-empty for an empty id (an empty tag would not count).
        format!(
            "{}:{}:cloakroom.users{{u:{user_id}}}",
            self.key_prefix, self.version
        )
    }

    /// The hash holding session `id`'s entry in `user_id`'s index.
    pub fn user_entry_key(&self, user_id: &str, id: &str) -> String {
        format!("{}:{id}", self.user_set_key(user_id))
    }
}

#[async_trait]
impl IndexEntries for RedisStore {
    async fn put(&self, entry: &UserSession) -> Result<(), StoreError> {
        let wall = unix_ms(OffsetDateTime::now_utc());
        let args = || {
            [
                Value::from(entry.id.as_str()),
                Value::Integer(unix_ms(entry.expires_at)),
                Value::Integer(unix_ms(entry.created_at)),
                Value::Integer(unix_ms(entry.last_seen)),
                Value::from(entry.user_agent.as_deref().unwrap_or_default()),
                Value::from(entry.ip.as_deref().unwrap_or_default()),
                Value::Integer(wall),
            ]
        };
        self.run(&script::LINK, &self.user_set_key(&entry.user_id), args)
            .await
            .map(drop)
    }

    async fn remove(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        let args = || [Value::from(id)];
        self.run(&script::UNLINK, &self.user_set_key(user_id), args)
            .await
            .map(drop)
    }

    /// `list.lua` prunes the entries expired at `now` by their score; a session deleted
    /// without its entry (by Django, or a failed unlink) is found by its key being gone, the
    /// checks sent together (each to its own slot's node).
    async fn entries(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        let args = || [Value::Integer(unix_ms(now))];
        let reply = self
            .run(&script::LIST, &self.user_set_key(user_id), args)
            .await?;
        let mut entries = Vec::with_capacity(reply.len());
        let mut read = Vec::with_capacity(reply.len());
        for member in &reply {
            match listed_entry(user_id, member) {
                Some(entry) => read.push(entry),
                None => entries.extend(
                    match member {
                        Value::Array(fields) => fields.first().and_then(Value::as_string),
                        _ => None,
                    }
                    .map(IndexEntry::Stale),
                ),
            }
        }
        let present = futures_util::future::join_all(read.iter().map(|s| self.exists(&s.id)))
            .await
            .into_iter()
            .collect::<Result<Vec<bool>, StoreError>>()?;
        entries.extend(read.into_iter().zip(present).map(|(entry, present)| {
            if present {
                IndexEntry::Found(entry)
            } else {
                IndexEntry::Stale(entry.id)
            }
        }));
        Ok(entries)
    }

    async fn holds(&self, user_id: &str, id: &str) -> Result<bool, StoreError> {
        let args = || [Value::from(id)];
        let owns = self
            .run(&script::OWNS, &self.user_set_key(user_id), args)
            .await?;
        Ok(status(&owns) == Some(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_members_without_an_entry_are_dead() {
        let full = Value::Array(vec![
            Value::from("abc"),
            Value::Integer(2_000),
            Value::Integer(1_000),
            Value::Integer(1_500),
            Value::from(""),
            Value::from("10.0.0.1"),
        ]);
        let entry = listed_entry("u", &full).expect("listed");
        assert_eq!(entry.id, "abc");
        assert_eq!(entry.expires_at, from_unix_ms(2_000));
        assert_eq!(entry.user_agent, None);
        assert_eq!(entry.ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(
            listed_entry("u", &Value::Array(vec![Value::from("abc")])),
            None
        );
        assert_eq!(unix_ms(from_unix_ms(1_234)), 1_234);
    }
}
