//! Starting the client-side cache, and the task that keeps it coherent: it applies Redis's
//! invalidation notices and reconnections to the cache's memory (`client_cache.rs`) as they
//! arrive, and does nothing in between.

use std::sync::{Arc, Weak};

use fred::clients::Client;
use fred::error::Error as FredError;
use fred::interfaces::{EventInterface as _, TrackingInterface as _};
use fred::types::client::Invalidation;
use fred::types::config::Server;
use tokio::sync::broadcast::{error::RecvError, Receiver};
use tokio::sync::{oneshot, Notify};

use super::client_cache::{Local, LocalState};
use super::connect::CONNECT_TIMEOUT;
use super::{RedisStore, ENGINE};
use crate::error::StoreError;

/// Client tracking could not be turned on when the cache was started.
#[derive(Debug, thiserror::Error)]
#[error(
    "{target} did not turn on client tracking (Redis 6 or later is needed for \
     redis_client_cache_ms; set it to 0 on older servers)"
)]
struct NoTracking {
    target: String,
    /// The server's refusal; `None` when it did not answer in time.
    #[source]
    source: Option<FredError>,
}

impl RedisStore {
    /// Starts the client-side cache chosen with
    /// [`RedisOptions::with_client_cache`](super::RedisOptions::with_client_cache): turns on
    /// Redis's client tracking for the store's key prefix on the current connection (`BCAST`,
    /// so Redis keeps no per-key table for us; `NOLOOP`, so a plain command of ours does not
    /// notify us), waiting for the reply, so the cache answers from the next load on and a
    /// refusal shows now; then starts the task that applies invalidations and reconnections.
    ///
    /// The task's handle is kept with the cache: it ends when the last clone of the store is
    /// dropped. Does nothing without a client-side cache, or when it is already started.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the server refuses client tracking (before Redis 6) or does
    /// not answer within 5 s; the cache then stays off, and loads go to Redis.
    pub async fn start_client_cache(&self) -> Result<(), StoreError> {
        let Some(local) = &self.local else {
            return Ok(());
        };
        if local.task.get().is_some() {
            return Ok(());
        }
        // Taken before tracking goes on, so no notice after that is missed.
        let watch = Watch {
            client: self.client.clone(),
            local: Arc::downgrade(local),
            retrack: local.retrack.clone(),
            invalidations: self.client.invalidation_rx(),
            reconnections: self.client.reconnect_rx(),
        };
        let refused = |source| {
            let target = self.target.clone();
            StoreError::backend(ENGINE, NoTracking { target, source })
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, track(&self.client, local)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(refused(Some(e))),
            Err(_) => return Err(refused(None)),
        }
        let (handle, stop) = oneshot::channel();
        if local.task.set(handle).is_ok() {
            tokio::spawn(watch.run(stop));
        }
        Ok(())
    }
}

/// Empties the cache and turns tracking on for the connection in use and the cache's prefix;
/// the cache answers again once the server has said yes.
async fn track(client: &Client, local: &Local) -> Result<(), FredError> {
    local.reset();
    let head = local.state().head.clone();
    // Off first: a connection whose tracking is already on (a notice seen twice) refuses the
    // same prefix again.
    let _ = client.stop_tracking().await;
    client
        .start_tracking(head.as_str(), true, false, false, true)
        .await?;
    local.turn_on(&head);
    Ok(())
}

/// What the task listens to. It holds the cache weakly: the store owns it, and the task's
/// handle with it.
struct Watch {
    client: Client,
    local: Weak<Local>,
    retrack: Arc<Notify>,
    invalidations: Receiver<Invalidation>,
    reconnections: Receiver<Server>,
}

impl Watch {
    /// Applies notices until `stop` ends (the cache was dropped) or the client closes.
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        loop {
            let retrack = tokio::select! {
                _ = &mut stop => return,
                () = self.retrack.notified() => true,
                event = self.reconnections.recv() => match event {
                    // A new connection has no tracking: turn it on there.
                    Ok(_) | Err(RecvError::Lagged(_)) => true,
                    Err(RecvError::Closed) => return,
                },
                event = self.invalidations.recv() => {
                    let Some(cache) = self.local.upgrade() else { return };
                    if !invalidate(&cache, event) {
                        return;
                    }
                    false
                }
            };
            if retrack {
                let Some(cache) = self.local.upgrade() else {
                    return;
                };
                if let Err(e) = track(&self.client, &cache).await {
                    tracing::warn!(engine = ENGINE, error = %e,
                        "cannot turn on client tracking; the client-side cache stays off until the next reconnection");
                }
            }
        }
    }
}

/// Applies one invalidation notice; `false` when the client is gone (the cache is then off).
fn invalidate(cache: &Local, event: Result<Invalidation, RecvError>) -> bool {
    match event {
        Ok(invalidation) if invalidation.keys.is_empty() => cache.clear(),
        Ok(invalidation) => {
            let mut st = cache.state();
            let LocalState { head, entries, .. } = &mut *st;
            for key in &invalidation.keys {
                let session_key = key
                    .as_bytes()
                    .strip_prefix(head.as_bytes())
                    .and_then(|k| std::str::from_utf8(k).ok());
                // A key under another prefix was tracked before a change of prefix: nothing
                // kept now is under it (the change emptied the cache).
                if let Some(session_key) = session_key {
                    entries.remove(session_key);
                }
            }
        }
        // Missed notices: anything may be stale.
        Err(RecvError::Lagged(_)) => cache.clear(),
        Err(RecvError::Closed) => {
            cache.reset();
            return false;
        }
    }
    true
}
