//! PostgreSQL's channel between app servers ([`Announce`]): `NOTIFY` through the pool, and
//! one connection of its own that `LISTEN`s, for live revocation ([`cloakroom_core::live`]).
//! MySQL has no such channel: waits there check the store at an interval instead.

use async_trait::async_trait;
use sqlx::postgres::PgListener;

use super::super::Table;
use super::SqlStore;
use crate::error::StoreError;
use crate::postgres::Postgres;
use cloakroom_core::live::{Announce, Announcements};

/// The most bytes of a PostgreSQL identifier (`NAMEDATALEN - 1`): a longer channel name is
/// cut by the server, so a long one is shortened to a hash of itself here.
const MAX_CHANNEL: usize = 63;

/// The channel of the sessions in `table`: `cloakroom:<table>:ended`, so two apps on two
/// tables of one database never hear each other.
pub(crate) fn channel(table: &Table) -> String {
    let full = format!("cloakroom:{}:ended", table.name());
    if full.len() <= MAX_CHANNEL {
        return full;
    }
    let digest = cloakroom_core::hashed::stored_key(&full);
    format!("cloakroom:{digest}")
}

#[async_trait]
impl Announce for SqlStore<Postgres> {
    async fn announce(&self, message: &str) -> Result<(), StoreError> {
        let mut conn = self.pool.get().await.map_err(|e| self.error(e))?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel(&self.table))
            .bind(message)
            .execute(conn.raw())
            .await
            .map_err(|e| self.error(e))?;
        conn.release();
        Ok(())
    }

    async fn listen(&self) -> Result<Box<dyn Announcements>, StoreError> {
        // A connection of its own, beside the store's pool and not one of its
        // `max_connections`: sqlx's listener takes (and would retake) its connection from a
        // sqlx pool, here one of a single connection opened with the store's options.
        let one = sqlx::pool::PoolOptions::<sqlx::Postgres>::new()
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(self.pool.acquire_timeout())
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy_with(self.pool.connect_options().clone());
        let mut listener = PgListener::connect_with(&one)
            .await
            .map_err(|e| self.error(e))?;
        listener.ignore_pool_close_event(true);
        // A lost connection is reported, not mended behind our back: the core counts the gap
        // (waits check the store once) and opens another listener after a pause.
        listener.eager_reconnect(false);
        listener
            .listen(&channel(&self.table))
            .await
            .map_err(|e| self.error(e))?;
        Ok(Box::new(Listening {
            listener,
            store: self.clone(),
        }))
    }
}

/// A `LISTEN`ing connection.
struct Listening {
    listener: PgListener,
    store: SqlStore<Postgres>,
}

/// The listening connection closed (the server went away or restarted).
#[derive(Debug, thiserror::Error)]
#[error("the PostgreSQL connection listening for ended sessions closed")]
struct Closed;

#[async_trait]
impl Announcements for Listening {
    async fn next(&mut self) -> Result<String, StoreError> {
        match self.listener.try_recv().await {
            Ok(Some(notification)) => Ok(notification.payload().to_owned()),
            Ok(None) => {
                // The server dropped this connection, and perhaps the pool's idle ones with
                // it (a restart): those are pinged before their next use.
                self.store.breakage.note();
                Err(StoreError::backend("postgres", Closed))
            }
            Err(e) => Err(self.store.error(e)),
        }
    }
}
