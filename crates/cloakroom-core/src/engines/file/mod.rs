//! The `file` engine: one file per session in a folder, laid out as Django's file backend lays
//! them out, so a Django app pointed at the same folder shares the sessions (with
//! [`Codec::Django`](crate::codec::Codec::Django), whose text is what Django writes there).
//!
//! - **Names**: `<cookie_name><session_key>`, e.g. `sessionidby69nuk5kk5jgr551yo27njie0fffa9c`.
//!   A key is checked against `[a-z0-9]` (and the length of a key) before any path is built,
//!   so no cookie value can name a file outside the folder.
//! - **Content**: the record's data, as is, with no trailing newline.
//! - **Expiry**: as in Django, the file's modification time plus `cookie_age`. The store sets
//!   the mtime to `expires_at - cookie_age` when it writes, and checks it when it reads; a
//!   rolling session's refresh (`touch`) sets only the mtime.
//! - **Writes are atomic**: the data goes to a temp file in the same folder (mode 0600), which
//!   is then renamed over the session file, so a reader sees the old data or the new, never a
//!   mix. `create` first makes the file with `O_CREAT | O_EXCL` semantics, so it never
//!   overwrites.
//!
//! # Concurrency
//!
//! `update` (the compare-and-swap), `touch` and `delete` take an exclusive lock on the session file
//! (`File::lock`, an `flock` on Unix) around read-compare-write, so they are race-free between
//! threads and between processes. Since a write renames a new file into place, a writer that
//! waited for the lock checks afterwards that its handle is still the file under the name, and
//! starts again with the new one if not. Readers take no lock: they always see one complete
//! version. Django's own file backend takes no locks, so a Django process writing the same
//! session at the same moment can still overwrite a change. Network file systems may emulate
//! `flock` with per-process locks; keep the folder on a local disk.
//!
//! # Where to keep the folder
//!
//! The default is the system temp folder, as in Django. Anyone on the machine can create files
//! there, so the store ignores (treats as absent) anything under a session name that is not a
//! regular file owned by the user the app runs as: a symlink or a file planted by another user
//! can neither inject a session nor hang a read. A private folder (`file_path`) is still best.
//!
//! # Sessions of a user
//!
//! The user index ([`UserIndex`](crate::UserIndex)) is a hidden folder beside the sessions,
//! `.<cookie_name>.users/`, with one folder per user (named by a hash of the user id, so any
//! id makes a safe name) holding one small JSON file per linked session, named by its key:
//! login time, last write, client. A session's expiry is read from its own file, so an entry
//! never shows once its session is gone or expired; such entries are removed by the listing
//! that meets them and by `clear_expired`. Django ignores the folder (its name does not start
//! with the cookie name).
//!
//! A Django-written file is judged here by its mtime plus `cookie_age` (the store does not
//! decode data); the core then also ends a session whose `_session_expiry` instant has passed,
//! as Django does. Files this store writes carry their real expiry in the mtime, so Django and
//! cloakroom agree on them. (A Django file with an integer `_session_expiry`, which Django
//! never expires server-side, ends here at mtime plus `cookie_age`.)

mod disk;
mod folder;
mod users;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;

use self::disk::{create_new_private, random_suffix};
use super::listed::ListAll;
use crate::error::{ConfigError, StoreError};
use crate::exclusive::{Exclusive, FileLock, LockGuard};
use crate::store::{ClearExpired, ClearedSession, Created, Record, SessionStore, Updated};

const ENGINE: &str = "file";
/// Room for the key (40) within the usual 255-byte limit on file names.
const MAX_PREFIX_LEN: usize = 200;

/// A file operation that failed, with the folder (never the file name: it holds the key).
#[derive(Debug, thiserror::Error)]
#[error("could not {action} a session file in {dir}: {source}")]
pub struct FileError {
    /// What was being done.
    pub action: &'static str,
    /// The session folder.
    pub dir: PathBuf,
    /// The operating system's error.
    #[source]
    pub source: io::Error,
}

/// Sessions as files in one folder, named and expired as Django's file backend does.
#[derive(Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("dir", &self.inner.dir)
            .field("prefix", &self.inner.prefix)
            .field("cookie_age", &self.inner.cookie_age)
            .finish()
    }
}

struct Inner {
    dir: PathBuf,
    prefix: String,
    cookie_age: time::Duration,
    /// The user this process writes files as: only their files are trusted.
    #[cfg(unix)]
    owner: u32,
}

impl FileStore {
    /// Sessions in `dir` (which must exist and be writable), in files named
    /// `<cookie_name><key>`, living `cookie_age` seconds after their mtime.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming `file_path` when the folder is missing or not writable,
    /// `cookie_name` when it cannot start a file name, `cookie_age` when it is out of range.
    ///
    /// # Examples
    /// ```no_run
    /// use cloakroom_core::engines::file::FileStore;
    /// let store = FileStore::new("/var/lib/myapp/sessions", "sessionid", 1_209_600)?;
    /// # Ok::<(), cloakroom_core::ConfigError>(())
    /// ```
    pub fn new(
        dir: impl Into<PathBuf>,
        cookie_name: &str,
        cookie_age: u64,
    ) -> Result<Self, ConfigError> {
        let dir = dir.into();
        let invalid = |setting, reason: String| ConfigError::Invalid { setting, reason };
        // Cookie names are RFC 7230 tokens: no `/`, `\`, NUL or `:`, so the name cannot leave
        // the folder either.
        if cookie_name.is_empty()
            || cookie_name.len() > MAX_PREFIX_LEN
            || !cookie_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            return Err(invalid(
                "cookie_name",
                format!(
                    "the file engine names files after it, so it must be 1 to {MAX_PREFIX_LEN} token characters (letters, digits and !#$%&'*+-.^_`|~)"
                ),
            ));
        }
        let cookie_age = i64::try_from(cookie_age)
            .map(time::Duration::seconds)
            .map_err(|_| invalid("cookie_age", "is out of range".into()))?;
        if !dir.is_dir() {
            return Err(invalid(
                "file_path",
                format!("{} is not an existing folder", dir.display()),
            ));
        }
        #[cfg(unix)]
        let owner = probe_owner(&dir).map_err(|e| {
            invalid(
                "file_path",
                format!("cannot write session files in {}: {e}", dir.display()),
            )
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                dir,
                prefix: cookie_name.to_owned(),
                cookie_age,
                #[cfg(unix)]
                owner,
            }),
        })
    }

    /// Sessions in the system temp folder, Django's default `SESSION_FILE_PATH`.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn in_temp_dir(cookie_name: &str, cookie_age: u64) -> Result<Self, ConfigError> {
        Self::new(std::env::temp_dir(), cookie_name, cookie_age)
    }

    /// The folder the sessions are in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The path of the file for `key`, or `None` when `key` is not a session key.
    pub fn path_of(&self, key: &str) -> Option<PathBuf> {
        self.inner.path(key)
    }

    /// Runs blocking file work off the async threads (a lock wait can be long).
    async fn run<T: Send + 'static>(
        &self,
        action: &'static str,
        work: impl FnOnce(&Inner) -> io::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = Arc::clone(&self.inner);
        match tokio::task::spawn_blocking(move || work(&inner)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(source)) => Err(StoreError::backend(
                ENGINE,
                FileError {
                    action,
                    dir: self.inner.dir.clone(),
                    source,
                },
            )),
            Err(join) => Err(StoreError::backend(ENGINE, join)),
        }
    }
}

/// Finds the user this process creates files as, by creating one.
#[cfg(unix)]
fn probe_owner(dir: &Path) -> io::Result<u32> {
    use std::os::unix::fs::MetadataExt;
    let probe = dir.join(format!(".cloakroom-probe-{}", random_suffix()?));
    let owner = create_new_private(&probe).and_then(|f| f.metadata());
    let _ = std::fs::remove_file(&probe);
    Ok(owner?.uid())
}

#[async_trait]
impl SessionStore for FileStore {
    fn engine(&self) -> &'static str {
        ENGINE
    }

    async fn load(&self, key: &str, now: OffsetDateTime) -> Result<Option<Record>, StoreError> {
        let key = key.to_owned();
        self.run("read", move |s| s.load(&key, now)).await
    }

    async fn create(&self, key: &str, record: &Record) -> Result<Created, StoreError> {
        let (key, record) = (key.to_owned(), record.clone());
        self.run("create", move |s| s.create(&key, &record)).await
    }

    async fn update(
        &self,
        key: &str,
        expected: &[u8],
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        let (key, expected, record) = (key.to_owned(), expected.to_owned(), record.clone());
        self.run("update", move |s| s.update(&key, &expected, &record, now))
            .await
    }

    async fn touch(
        &self,
        key: &str,
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        let (key, record) = (key.to_owned(), record.clone());
        self.run("refresh", move |s| s.touch(&key, &record, now))
            .await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.run("delete", move |s| s.delete(&key)).await
    }
}

#[async_trait]
impl ClearExpired for FileStore {
    async fn clear_expired(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        self.run("clear expired", move |s| {
            let cleared = s.clear_expired(now, None)?;
            s.sweep_users(now)?;
            Ok(cleared)
        })
        .await
    }

    /// The file names of the sessions removed, as keys; no user (the index names its
    /// folders by a hash of the user id).
    async fn clear_expired_named(
        &self,
        now: OffsetDateTime,
    ) -> Result<Option<Vec<ClearedSession>>, StoreError> {
        let names = self
            .run("clear expired", move |s| {
                let mut names = Vec::new();
                s.clear_expired(now, Some(&mut names))?;
                s.sweep_users(now)?;
                Ok(names)
            })
            .await?;
        let gone = names
            .into_iter()
            .map(|id| ClearedSession { id, user_id: None })
            .collect();
        Ok(Some(gone))
    }
}

/// One holder at a time across the processes sharing the folder: an `flock` on
/// `.<cookie_name>.<name>.lock` in it (hidden, and not starting with the cookie name, so
/// neither this store nor Django takes it for a session), let go of by the operating system
/// when its holder dies. Keep the folder on a local disk (see the module docs).
#[async_trait]
impl Exclusive for FileStore {
    async fn try_lock(&self, name: &str) -> Result<Option<LockGuard>, StoreError> {
        let name = FileLock::file_safe(name);
        let path = self
            .inner
            .dir
            .join(format!(".{}.{name}.lock", self.inner.prefix));
        FileLock::take_guard(ENGINE, path).await
    }
}

/// Every session file, for [`Scan`](crate::store::Scan) (see [`ListAll`]).
#[async_trait]
impl ListAll for FileStore {
    async fn all(&self) -> Result<Vec<(String, Record)>, StoreError> {
        self.run("list", Inner::all).await
    }
}

impl FileStore {
    /// Whether any record (live or expired) holds `key`: for tests and tools that look at
    /// the store itself (the core never asks).
    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let key = key.to_owned();
        self.run("look for", move |s| s.exists(&key)).await
    }
}
