//! The thread a store's connection lives on: fred's connection task (which writes the
//! commands, reads the replies and reconnects) runs on a runtime of its own, one thread per
//! store, not among the app's tasks.
//!
//! Why: on the app's runtime each command woke the connection task in the worker's LIFO slot,
//! right after the request that sent it, so it found one command queued and flushed it alone.
//! Measured on the benchmark's read-only page (server on one core, 64 connections, one worker),
//! the server made 0.85 socket writes to Redis per command and Redis read about two commands per
//! `read`; Redis spent 6.4 µs per request and the server 22.4 µs. With the task on a thread of its
//! own, commands queue while the app's worker runs and go out together: Redis reads about 30
//! commands at a time (bench/results-redis-read.md). This is where redis-rs's connection task
//! runs under actix-web too (on the system thread, apart from the workers).
//!
//! The thread ends with the last copy of the store: its runtime is dropped, which cancels the
//! connection task and closes its socket.

use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// A current-thread runtime on a thread of its own, alive while this is.
#[derive(Debug)]
pub(super) struct IoThread {
    handle: Handle,
    /// Dropped with the last copy of the store: the thread's `block_on` returns and drops the
    /// runtime.
    _stop: oneshot::Sender<()>,
}

impl IoThread {
    /// Starts the thread.
    ///
    /// # Errors
    /// The runtime or the thread could not be made (out of file descriptors or threads).
    pub(super) fn start() -> std::io::Result<Arc<Self>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("cloakroom-redis".to_owned())
            .spawn(move || {
                runtime.block_on(async {
                    // Ends when the sender is dropped (nothing is ever sent).
                    let _ = stopped.await;
                });
                // Dropping the runtime here, outside any async context, cancels the
                // connection task and closes its socket.
                drop(runtime);
            })?;
        Ok(Arc::new(Self {
            handle,
            _stop: stop,
        }))
    }

    /// Where the connection task is spawned.
    pub(super) fn handle(&self) -> &Handle {
        &self.handle
    }
}
