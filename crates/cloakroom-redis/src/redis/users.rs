//! Sessions of a user ([`UserIndex`]): a sorted set per user of the user's session keys,
//! scored by their expiry (ms), and one hash per session beside it (login, last write,
//! client), kept by the scripts `lua/link.lua`, `unlink.lua`, `list.lua` and `owns.lua`. Both
//! carry the user's hash tag, so each script touches one cluster slot.

use async_trait::async_trait;
use fred::types::Value;
use time::OffsetDateTime;

use super::script::{self, status};
use super::store::NO_EXPIRY;
use super::RedisStore;
use crate::error::StoreError;
use crate::store::{SessionStore as _, UserIndex, UserSession};

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
impl UserIndex for RedisStore {
    async fn link(&self, entry: &UserSession) -> Result<(), StoreError> {
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

    async fn unlink(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        let args = || [Value::from(id)];
        self.run(&script::UNLINK, &self.user_set_key(user_id), args)
            .await
            .map(drop)
    }

    async fn sessions_of(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<UserSession>, StoreError> {
        let args = || [Value::Integer(unix_ms(now))];
        let set = self.user_set_key(user_id);
        let reply = self.run(&script::LIST, &set, args).await?;
        let mut listed = Vec::with_capacity(reply.len());
        let mut dead = Vec::new();
        for member in &reply {
            match listed_entry(user_id, member) {
                Some(entry) => listed.push(entry),
                None => dead.extend(match member {
                    Value::Array(fields) => fields.first().and_then(Value::as_string),
                    _ => None,
                }),
            }
        }
        // A session deleted without its entry (by Django, or a failed unlink): its key is
        // gone. The checks go out together (each to its own slot's node).
        let present = futures_util::future::join_all(listed.iter().map(|s| self.exists(&s.id)))
            .await
            .into_iter()
            .collect::<Result<Vec<bool>, StoreError>>()?;
        let mut live = Vec::with_capacity(listed.len());
        for (entry, present) in listed.into_iter().zip(present) {
            if present {
                live.push(entry);
            } else {
                dead.push(entry.id);
            }
        }
        for id in dead {
            self.unlink(user_id, &id).await?;
        }
        live.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        Ok(live)
    }

    async fn revoke(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        let args = || [Value::from(id)];
        let owns = self
            .run(&script::OWNS, &self.user_set_key(user_id), args)
            .await?;
        if status(&owns) == Some(1) {
            self.delete(id).await?;
        }
        self.unlink(user_id, id).await
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
