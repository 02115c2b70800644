//! Redis's channel between app servers ([`Announce`]), for live revocation
//! ([`cloakroom_core::live`]): `PUBLISH` on `<prefix>:<version>:cloakroom.ended` and a
//! connection of its own that `SUBSCRIBE`s to it; on a Redis Cluster, sharded pub/sub
//! (`SPUBLISH`/`SSUBSCRIBE`, Redis 7.0 and later), whose messages stay on the shard that owns
//! the channel's slot instead of crossing the whole cluster bus.
//!
//! The subscribing connection does not reconnect by itself: a lost connection is reported to
//! the core, which counts the gap (waits check the store once) and subscribes again after a
//! pause, so an outage never leaves a second connection or task behind.

use std::time::Duration;

use async_trait::async_trait;
use fred::clients::Client;
use fred::interfaces::{ClientLike as _, EventInterface as _, PubsubInterface as _};
use fred::prelude::Builder;
use fred::types::Value;
use tokio::sync::broadcast::error::RecvError;

use super::{RedisStore, ENGINE};
use crate::error::StoreError;
use cloakroom_core::live::{Announce, Announcements};

/// How often the subscriber checks that its connection is still up, besides the errors
/// fred reports: a connection closed without an error is found within this.
const CONNECTED_CHECK: Duration = Duration::from_secs(1);

impl RedisStore {
    /// The channel of ended sessions: `<prefix>:<version>:cloakroom.ended`, beside the
    /// sessions' keys, so two apps with two key prefixes never hear each other.
    pub fn ended_channel(&self) -> String {
        format!("{}:{}:cloakroom.ended", self.key_prefix, self.version)
    }
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
        let subscriber = Subscriber {
            client,
            errors,
            messages,
        };
        subscriber.client.init().await.map_err(|e| self.error(e))?;
        let channel = self.ended_channel();
        let subscribed = if self.client.is_clustered() {
            subscriber.client.ssubscribe(channel).await
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
