//! An optional ability: a lock one holder at a time takes across every app server that shares
//! the store, without waiting. The scheduled cleanup ([`Sessions::start_cleanup`]) takes it so
//! that one server clears expired sessions while the others skip their turn.
//!
//! Each engine takes it where its servers meet: PostgreSQL an advisory lock, MySQL/MariaDB
//! `GET_LOCK`, Redis a key set with `NX` and a TTL, the file engine and SQLite an `flock` on a
//! lock file beside the data (one machine: the lock covers its processes). This module holds
//! the parts every engine shares: the guard, and the file and in-process locks.
//!
//! [`Sessions::start_cleanup`]: crate::Sessions::start_cleanup

use std::collections::HashSet;
use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::error::StoreError;

/// An optional ability: a named lock, held by one holder at a time across every app server
/// sharing the store, taken without waiting.
///
/// A lock is scoped to the store (its table, folder or key prefix): two apps on two tables of
/// one database never meet. A holder that dies lets go of it: the database ends its connection,
/// the operating system closes its file, Redis expires its key.
#[async_trait]
pub trait Exclusive: Send + Sync {
    /// Takes lock `name` if no one holds it: `Some` guard, held until it is released or
    /// dropped, or `None` when another holder (this process or another server) has it.
    async fn try_lock(&self, name: &str) -> Result<Option<LockGuard>, StoreError>;
}

/// What an engine does to let go of a lock it took: the inside of a [`LockGuard`].
///
/// Dropping it without [`release`](Self::release) must let go too, as far as a drop can
/// (close the connection or the file; a Redis key waits for its TTL).
#[async_trait]
pub trait Release: Send {
    /// Lets go of the lock.
    async fn release(self: Box<Self>) -> Result<(), StoreError>;
}

/// A lock taken by [`Exclusive::try_lock`]: held until [`release`](Self::release)d or dropped.
#[must_use = "the lock is let go when the guard is dropped"]
pub struct LockGuard {
    held: Box<dyn Release>,
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard").finish_non_exhaustive()
    }
}

impl LockGuard {
    /// A guard over an engine's held lock.
    pub fn new(held: impl Release + 'static) -> Self {
        Self {
            held: Box::new(held),
        }
    }

    /// Lets go of the lock now (dropping the guard does too, less promptly on Redis).
    ///
    /// # Errors
    /// The store's error when it could not be told; the lock then ends as a drop ends it.
    pub async fn release(self) -> Result<(), StoreError> {
        self.held.release().await
    }
}

/// An exclusive `flock` on a lock file: one holder per file across the machine's processes,
/// and across stores within one process (a lock belongs to the open file, not the process).
/// The operating system lets go when the holder's process dies, so a crash leaves no stale
/// lock behind; the file itself stays, empty, and is reused.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Takes the lock on `path` (creating the file, readable by its owner only) if no one
    /// holds it.
    ///
    /// # Errors
    /// The operating system's error when the file cannot be created or locked.
    pub fn try_take(path: &Path) -> io::Result<Option<Self>> {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Self { _file: file })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    /// `name` as a part of a file name: its letters, digits, `_` and `-` only.
    pub fn file_safe(name: &str) -> String {
        name.chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect()
    }

    /// [`try_take`](Self::try_take) off the async threads, as a guard, errors named as
    /// `engine`'s.
    ///
    /// # Errors
    /// [`StoreError::Backend`] naming the lock file when it cannot be created or locked.
    pub async fn take_guard(
        engine: &'static str,
        path: PathBuf,
    ) -> Result<Option<LockGuard>, StoreError> {
        let shown = path.display().to_string();
        let taken = tokio::task::spawn_blocking(move || Self::try_take(&path))
            .await
            .map_err(|e| StoreError::backend(engine, e))?;
        match taken {
            Ok(lock) => Ok(lock.map(LockGuard::new)),
            Err(e) => Err(StoreError::backend(
                engine,
                format!("cannot take the lock file {shown}: {e}"),
            )),
        }
    }
}

#[async_trait]
impl Release for FileLock {
    async fn release(self: Box<Self>) -> Result<(), StoreError> {
        // Closing the file lets go of the `flock`; the file stays for the next holder
        // (removing it would let two holders lock two different files under one name).
        Ok(())
    }
}

/// Locks within one process, for a store no other process can reach (an in-memory SQLite
/// database). Cheap to clone; clones share the locks.
#[derive(Debug, Clone, Default)]
pub struct InProcessLocks {
    held: Arc<Mutex<HashSet<String>>>,
}

impl InProcessLocks {
    /// Takes lock `name` if no one in this process holds it.
    pub fn try_take(&self, name: &str) -> Option<LockGuard> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.insert(name.to_owned()).then(|| {
            LockGuard::new(InProcessLock {
                locks: self.clone(),
                name: name.to_owned(),
            })
        })
    }
}

#[async_trait]
impl Exclusive for InProcessLocks {
    async fn try_lock(&self, name: &str) -> Result<Option<LockGuard>, StoreError> {
        Ok(self.try_take(name))
    }
}

struct InProcessLock {
    locks: InProcessLocks,
    name: String,
}

impl Drop for InProcessLock {
    fn drop(&mut self) {
        let mut held = self.locks.held.lock().unwrap_or_else(|e| e.into_inner());
        held.remove(&self.name);
    }
}

#[async_trait]
impl Release for InProcessLock {
    async fn release(self: Box<Self>) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_lock_has_one_holder_until_it_is_released() {
        let dir = std::env::temp_dir().join(format!("cloakroom-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.lock");
        let first = FileLock::take_guard("file", path.clone()).await.unwrap();
        assert!(first.is_some());
        // Another open of the same file is another holder, even in this process.
        assert!(FileLock::take_guard("file", path.clone())
            .await
            .unwrap()
            .is_none());
        first.unwrap().release().await.unwrap();
        let again = FileLock::take_guard("file", path.clone()).await.unwrap();
        assert!(again.is_some(), "released, the lock can be taken again");
        drop(again);
        assert!(FileLock::take_guard("file", path).await.unwrap().is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn in_process_locks_are_per_name_and_end_on_drop() {
        let locks = InProcessLocks::default();
        let a = locks.try_lock("cleanup").await.unwrap();
        assert!(a.is_some());
        assert!(locks.try_lock("cleanup").await.unwrap().is_none());
        assert!(locks.try_lock("other").await.unwrap().is_some());
        drop(a);
        assert!(locks.try_lock("cleanup").await.unwrap().is_some());
    }
}
