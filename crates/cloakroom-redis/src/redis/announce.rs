//! Redis's channel between app servers ([`Announce`]), for live revocation
//! ([`cloakroom_core::live`]): `PUBLISH` on `<prefix>:<version>:cloakroom.ended` and a
//! connection of its own that `SUBSCRIBE`s to it; on a Redis Cluster, sharded pub/sub
//! (`SPUBLISH`/`SSUBSCRIBE`, Redis 7.0 and later), whose messages stay on the shard that owns
//! the channel's slot instead of crossing the whole cluster bus.
//!
//! The subscribing connection does not reconnect by itself: a lost connection is reported to
//! the core, which counts the gap (waits check the store once) and subscribes again after a
//! pause, so an outage never leaves a second connection or task behind.
//!
//! **Expired sessions.** On one server (and the primary Sentinel names) the same connection
//! also subscribes to Redis's keyspace notifications of expired keys,
//! `__keyevent@<db>__:expired`, and hands the core each of this store's session keys among
//! them (the key after the store's head is the index id: the session key, or its hash under
//! `hash_keys`) as an expiry: an `Expired` event and the end of the waits on it. Redis
//! publishes them only when `notify-keyspace-events` holds `E` and `x` (or `A`): each time it
//! subscribes, the listener adds them with `CONFIG SET` if they are missing, and where that is
//! refused (a managed Redis) logs one warning naming the setting and goes on without. Redis
//! sends the notice when it deletes the key: on access, or by its active expiry cycle (10 times
//! a second by default, `hz`), so within about a second of the expiry on an idle server.
//!
//! A Redis Cluster's nodes publish their keyspace notifications to their own clients only
//! (not sharded, not across the bus); the listener does not subscribe to each primary, so on
//! a cluster no expiry is heard from Redis: a waiting `Session::ended` still resolves as
//! `Expired` by its own timer at the session's expiry.

use std::time::Duration;

use async_trait::async_trait;
use fred::clients::Client;
use fred::interfaces::{ClientLike as _, EventInterface as _, PubsubInterface as _};
use fred::prelude::Builder;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

use fred::error::ErrorKind;
use fred::types::{ClusterHash, CustomCommand, Value};
use tokio::sync::broadcast::error::RecvError;

use super::{RedisStore, ENGINE};
use crate::error::StoreError;
use cloakroom_core::live::{self, Announce, Announcements, Ended};

/// How often the subscriber checks that its connection is still up, besides the errors
/// fred reports: a connection closed without an error is found within this.
const CONNECTED_CHECK: Duration = Duration::from_secs(1);

impl RedisStore {
    /// The channel of ended sessions: `<prefix>:<version>:cloakroom.ended`, beside the
    /// sessions' keys, so two apps with two key prefixes never hear each other.
    pub fn ended_channel(&self) -> String {
        format!("{}:{}:cloakroom.ended", self.key_prefix, self.version)
    }

    /// The channel Redis publishes the names of this store's database's expired keys on
    /// (keyevent notifications): `__keyevent@<db>__:expired`.
    pub fn expired_channel(&self) -> String {
        let db = self.client.client_config().database.unwrap_or(0);
        format!("__keyevent@{db}__:expired")
    }

    /// Makes sure Redis publishes expired keys (`notify-keyspace-events` with `E` and `x`),
    /// adding what is missing with `CONFIG SET` over `client` (the subscriber's connection,
    /// before it subscribes): `false` when Redis refuses, after one warning per store that
    /// names the setting to change. A lost connection is an error (the listener tries again),
    /// not a refusal: an outage logs no warning about the setting.
    async fn publish_expiries(&self, client: &Client) -> Result<bool, StoreError> {
        let config = CustomCommand::new_static("CONFIG", ClusterHash::Random, false);
        let current = client
            .custom::<HashMap<String, String>, _>(config.clone(), vec!["GET", NOTIFY_SETTING])
            .await
            .map(|mut got| got.remove(NOTIFY_SETTING).unwrap_or_default());
        let set = match current {
            Ok(flags) => match missing_flags(&flags) {
                None => return Ok(true),
                Some(wanted) => client
                    .custom::<Value, _>(config, vec!["SET", NOTIFY_SETTING, &wanted])
                    .await
                    .map(drop),
            },
            Err(e) => Err(e),
        };
        match set {
            Ok(()) => Ok(true),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::IO | ErrorKind::Timeout | ErrorKind::Canceled
                ) =>
            {
                Err(self.error(e))
            }
            Err(e) => {
                if !self.expiry_warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        error = %e,
                        "Redis does not publish expired keys and refused to be told to: set \
                         `notify-keyspace-events` to include `Ex` (e.g. `notify-keyspace-events Ex` \
                         in redis.conf, or your provider's parameter group) for Expired session \
                         events; sessions still end at their expiry"
                    );
                }
                Ok(false)
            }
        }
    }

    /// The index id of the session Redis key `key` holds, if it is one of this store's
    /// sessions: what follows the store's head, shaped as a session key (or its hash).
    fn session_of<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(&self.head)
            .filter(|id| cloakroom_core::key::is_well_formed(id))
    }
}

/// The server setting that turns keyspace notifications on.
const NOTIFY_SETTING: &str = "notify-keyspace-events";

/// The `notify-keyspace-events` value to set so that `flags` also publishes expired keys
/// (`E`: keyevent notifications, `x`: expired events, which `A` includes); `None` when it
/// already does.
fn missing_flags(flags: &str) -> Option<String> {
    let keyevent = flags.contains('E');
    let expired = flags.contains('x') || flags.contains('A');
    if keyevent && expired {
        return None;
    }
    let mut wanted = flags.to_owned();
    if !keyevent {
        wanted.push('E');
    }
    if !expired {
        wanted.push('x');
    }
    Some(wanted)
}

/// The subscribing connection was closed or failed.
#[derive(Debug, thiserror::Error)]
#[error("the Redis connection subscribed to ended sessions {what}")]
struct Lost {
    what: &'static str,
    #[source]
    source: Option<fred::error::Error>,
}

fn lost(what: &'static str, source: Option<fred::error::Error>) -> StoreError {
    StoreError::backend(ENGINE, Lost { what, source })
}

#[async_trait]
impl Announce for RedisStore {
    async fn announce(&self, message: &str) -> Result<(), StoreError> {
        let client = self.client.with_options(&self.options);
        let channel = self.ended_channel();
        let sent = if self.client.is_clustered() {
            client.spublish::<Value, _, _>(channel, message).await
        } else {
            client.publish::<Value, _, _>(channel, message).await
        };
        sent.map(drop).map_err(|e| self.error(e))
    }

    async fn listen(&self) -> Result<Box<dyn Announcements>, StoreError> {
        let mut config = self.client.client_config();
        config.fail_fast = true;
        // No reconnect policy: see the module docs.
        let client = Builder::from_config(config)
            .set_connection_config(self.client.connection_config().clone())
            .build()
            .map_err(|e| StoreError::backend(ENGINE, e))?;
        let errors = client.error_rx();
        let messages = client.message_rx();
        // fred hands keyspace notifications to their own receiver, not `message_rx`.
        let keyspace = client.keyspace_event_rx();
        let clustered = self.client.is_clustered();
        let mut subscriber = Subscriber {
            client,
            errors,
            messages,
            expired: None,
        };
        subscriber.client.init().await.map_err(|e| self.error(e))?;
        // Expiries from Redis: one server only (see the module docs for a cluster).
        if !clustered && self.publish_expiries(&subscriber.client).await? {
            subscriber.expired = Some((keyspace, self.clone()));
        }
        let channel = self.ended_channel();
        let subscribed = if clustered {
            subscriber.client.ssubscribe(channel).await
        } else if subscriber.expired.is_some() {
            let expired = self.expired_channel();
            subscriber.client.subscribe(vec![channel, expired]).await
        } else {
            subscriber.client.subscribe(channel).await
        };
        subscribed.map_err(|e| self.error(e))?;
        Ok(Box::new(subscriber))
    }
}

/// A connection subscribed to the channel.
struct Subscriber {
    client: Client,
    errors:
        tokio::sync::broadcast::Receiver<(fred::error::Error, Option<fred::types::config::Server>)>,
    messages: tokio::sync::broadcast::Receiver<fred::types::Message>,
    /// The keyspace notifications it also listens to (expired keys), and the store whose
    /// sessions count among them.
    expired: Expiries,
}

/// The keyspace notifications a [`Subscriber`] listens to, and the store whose sessions count.
type Expiries = Option<(
    tokio::sync::broadcast::Receiver<fred::types::KeyspaceEvent>,
    RedisStore,
)>;

/// The next expired session of the store's among `expired`, as the core's message; pending
/// forever when the subscriber does not listen to expiries.
async fn next_expired(expired: &mut Expiries) -> Result<String, StoreError> {
    let Some((events, store)) = expired else {
        return std::future::pending().await;
    };
    loop {
        match events.recv().await {
            Ok(event) if event.operation == "expired" => {
                let Some(key) = event.key.as_str() else {
                    continue;
                };
                if let Some(id) = store.session_of(key) {
                    return Ok(live::message(id, Ended::Expired));
                }
            }
            Ok(_) => {}
            // Missed notices: as good as a gap in the connection.
            Err(RecvError::Lagged(_)) => return Err(lost("fell behind", None)),
            Err(RecvError::Closed) => return Err(lost("closed", None)),
        }
    }
}

#[async_trait]
impl Announcements for Subscriber {
    async fn next(&mut self) -> Result<String, StoreError> {
        loop {
            tokio::select! {
                message = self.messages.recv() => match message {
                    Ok(message) => match message.value.as_string() {
                        Some(text) => return Ok(text),
                        None => continue,
                    },
                    // Missed messages: as good as a gap in the connection.
                    Err(RecvError::Lagged(_)) => return Err(lost("fell behind", None)),
                    Err(RecvError::Closed) => return Err(lost("closed", None)),
                },
                expired = next_expired(&mut self.expired) => return expired,
                error = self.errors.recv() => match error {
                    Ok((e, _)) => return Err(lost("failed", Some(e))),
                    Err(_) => return Err(lost("closed", None)),
                },
                () = tokio::time::sleep(CONNECTED_CHECK) => {
                    if !self.client.is_connected() {
                        return Err(lost("closed", None));
                    }
                }
            }
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        // Close the connection now rather than leave it to fred's task; a client that never
        // connected (the attempt failed during an outage) has nothing to close, and quitting it
        // would log a WARN line per attempt.
        if !self.client.is_connected() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            runtime.spawn(async move {
                let _ = client.quit().await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::missing_flags;

    #[test]
    fn expired_key_notices_are_added_to_what_the_server_publishes() {
        assert_eq!(missing_flags("").as_deref(), Some("Ex"));
        assert_eq!(missing_flags("Kg").as_deref(), Some("KgEx"));
        assert_eq!(missing_flags("Ex"), None);
        assert_eq!(missing_flags("xE"), None);
        assert_eq!(missing_flags("AKE"), None, "A includes x");
        assert_eq!(missing_flags("KA").as_deref(), Some("KAE"));
        assert_eq!(missing_flags("Kx").as_deref(), Some("KxE"));
    }
}
