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
//! The user index ([`UserIndex`]) is a hidden folder beside the sessions,
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

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::error::{ConfigError, OpenError, StoreError};
use crate::key;
use crate::store::{
    Batch, ClearExpired, Counts, Created, Record, Scan, SessionStore, Updated, UserIndex,
    UserSession,
};

const ENGINE: &str = "file";
/// Room for the key (40) within the usual 255-byte limit on file names.
const MAX_PREFIX_LEN: usize = 200;
/// How many times `update`/`delete` chase a file that another writer keeps replacing.
const MAX_CHASES: u32 = 64;
/// Temp files are named `<session file name>_out_<random>`, as Django's `mkstemp` names them.
const TEMP_MARKER: &str = "_out_";
/// A temp file untouched this long (in seconds) was left by a crash; `clear_expired` removes it.
#[cfg(unix)]
const STALE_TEMP_SECS: i64 = 3600;
/// The latest mtime written (2400-01-01): far-future expiries are clamped to what every file
/// system can store.
const LATEST_MTIME: i64 = 13_569_465_600;

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

/// Whether a handle still is the file under its name.
enum Current {
    Same,
    Replaced,
    Gone,
}

impl FileStore {
    /// Sessions in `dir` (which must exist and be writable), in files named
    /// `<cookie_name><key>`, living `cookie_age` seconds after their mtime.
    ///
    /// # Errors
    /// [`OpenError::Config`] naming `file_path` when the folder is missing or not writable,
    /// `cookie_name` when it cannot start a file name, `cookie_age` when it is out of range.
    ///
    /// # Examples
    /// ```no_run
    /// use cloakroom::engines::file::FileStore;
    /// let store = FileStore::new("/var/lib/myapp/sessions", "sessionid", 1_209_600)?;
    /// # Ok::<(), cloakroom::OpenError>(())
    /// ```
    pub fn new(
        dir: impl Into<PathBuf>,
        cookie_name: &str,
        cookie_age: u64,
    ) -> Result<Self, OpenError> {
        let dir = dir.into();
        let invalid =
            |setting, reason: String| OpenError::Config(ConfigError::Invalid { setting, reason });
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
    pub fn in_temp_dir(cookie_name: &str, cookie_age: u64) -> Result<Self, OpenError> {
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
    let _ = fs::remove_file(&probe);
    Ok(owner?.uid())
}

fn random_suffix() -> io::Result<String> {
    let mut suffix = key::generate().map_err(io::Error::other)?;
    suffix.truncate(12);
    Ok(suffix)
}

/// Opens a new file for writing that nobody else can read (Django's `mkstemp` mode, 0600),
/// failing if the name is taken (`O_CREAT | O_EXCL`, which does not follow symlinks either).
fn create_new_private(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

fn chased() -> io::Error {
    io::Error::other(format!(
        "the session file was replaced {MAX_CHASES} times in a row while this store tried to open it"
    ))
}

fn not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

fn to_offset(t: SystemTime) -> Option<OffsetDateTime> {
    let nanos = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_nanos()).ok()?,
        Err(before) => -i128::try_from(before.duration().as_nanos()).ok()?,
    };
    OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
}

impl Inner {
    fn path(&self, key: &str) -> Option<PathBuf> {
        // Only `[a-z0-9]`, 8 to 40 long: no separator, `..`, NUL or drive letter can get in.
        key::is_well_formed(key).then(|| self.dir.join(format!("{}{key}", self.prefix)))
    }

    /// The mtime that makes `mtime + cookie_age == expires_at`, clamped to what file systems
    /// can hold (a far-future expiry stays far in the future, a past one stays past).
    fn mtime_for(&self, expires_at: OffsetDateTime) -> SystemTime {
        let mtime = expires_at
            .checked_sub(self.cookie_age)
            .map_or(0, OffsetDateTime::unix_timestamp)
            .clamp(0, LATEST_MTIME);
        let whole = u64::try_from(mtime).unwrap_or(0);
        let nanos = if mtime == 0 || mtime == LATEST_MTIME {
            0
        } else {
            expires_at.nanosecond()
        };
        SystemTime::UNIX_EPOCH
            .checked_add(Duration::new(whole, nanos))
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }

    fn expires_at(&self, meta: &fs::Metadata) -> io::Result<OffsetDateTime> {
        let mtime = to_offset(meta.modified()?)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "mtime out of range"))?;
        Ok(mtime
            .checked_add(self.cookie_age)
            .unwrap_or(time::PrimitiveDateTime::MAX.assume_utc()))
    }

    /// Whether a file under a session name is one this store may read: a regular file (not a
    /// symlink, FIFO or device, which could hang a read) owned by this process's user.
    #[cfg(unix)]
    fn trusted(&self, meta: &fs::Metadata) -> bool {
        use std::os::unix::fs::MetadataExt;
        meta.file_type().is_file() && meta.uid() == self.owner
    }

    #[cfg(not(unix))]
    fn trusted(&self, meta: &fs::Metadata) -> bool {
        meta.file_type().is_file()
    }

    /// Opens the session file at `path`, or `None` when there is none this store may read.
    fn open(&self, path: &Path) -> io::Result<Option<File>> {
        for _ in 0..MAX_CHASES {
            // Checked before opening: opening a FIFO would block.
            let checked = match fs::symlink_metadata(path) {
                Ok(meta) => meta,
                Err(e) if not_found(&e) => return Ok(None),
                Err(e) => return Err(e),
            };
            if !self.trusted(&checked) {
                tracing::warn!(dir = %self.dir.display(),
                    "ignoring a session file that is not a regular file owned by this user");
                return Ok(None);
            }
            let file = match File::open(path) {
                Ok(file) => file,
                Err(e) if not_found(&e) => return Ok(None),
                Err(e) => return Err(e),
            };
            if same_file(&checked, &file.metadata()?) {
                return Ok(Some(file));
            }
            // A write renamed a new version in between the check and the open: check that one.
        }
        Err(chased())
    }

    /// Whether `file` is still the file named `path` (a writer may have renamed a new one over
    /// it, or deleted it, while this handle waited).
    fn is_current(&self, path: &Path, file: &File) -> io::Result<Current> {
        let named = match fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if not_found(&e) => return Ok(Current::Gone),
            Err(e) => return Err(e),
        };
        let held = file.metadata()?;
        Ok(if same_file(&named, &held) {
            Current::Same
        } else {
            Current::Replaced
        })
    }

    /// The record in an open session file; `None` for the empty placeholder of a create in
    /// progress, or content that is not text.
    fn read(&self, mut file: &File) -> io::Result<Option<Record>> {
        let expires_at = self.expires_at(&file.metadata()?)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        if bytes.is_empty() {
            return Ok(None);
        }
        let Ok(data) = String::from_utf8(bytes) else {
            tracing::warn!(dir = %self.dir.display(), "ignoring a session file that is not UTF-8");
            return Ok(None);
        };
        Ok(Some(Record { data, expires_at }))
    }

    /// Writes `record` to a temp file beside `path` and renames it over `path`.
    fn replace(&self, path: &Path, key: &str, record: &Record) -> io::Result<()> {
        let temp = self.dir.join(format!(
            "{}{key}{TEMP_MARKER}{}",
            self.prefix,
            random_suffix()?
        ));
        let written = create_new_private(&temp).and_then(|mut file| {
            file.write_all(record.data.as_bytes())?;
            file.set_modified(self.mtime_for(record.expires_at))
        });
        let result = written.and_then(|()| fs::rename(&temp, path));
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }

    fn load(&self, key: &str, now: OffsetDateTime) -> io::Result<Option<Record>> {
        let Some(path) = self.path(key) else {
            return Ok(None);
        };
        let Some(file) = self.open(&path)? else {
            return Ok(None);
        };
        Ok(self.read(&file)?.filter(|r| r.expires_at > now))
    }

    fn create(&self, key: &str, record: &Record) -> io::Result<Created> {
        let path = self
            .path(key)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a session key"))?;
        match create_new_private(&path) {
            Ok(_placeholder) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(Created::Taken),
            Err(e) => return Err(e),
        }
        // Nobody else knows the new key yet, so nothing can race this write.
        self.replace(&path, key, record).inspect_err(|_| {
            let _ = fs::remove_file(&path);
        })?;
        Ok(Created::Stored)
    }

    /// Opens and locks the current session file, chasing renames; `None` when it is gone.
    fn lock_current(&self, path: &Path) -> io::Result<Option<File>> {
        for _ in 0..MAX_CHASES {
            let Some(file) = self.open(path)? else {
                return Ok(None);
            };
            // Released when `file` is dropped, after the caller's rename or unlink.
            file.lock()?;
            match self.is_current(path, &file)? {
                Current::Same => return Ok(Some(file)),
                Current::Gone => return Ok(None),
                Current::Replaced => continue,
            }
        }
        Err(chased())
    }

    /// The compare-and-swap `update` and `touch` share: under the file's lock, `write` runs only
    /// when the file is live and still holds `expected`.
    fn swap(
        &self,
        key: &str,
        expected: &str,
        now: OffsetDateTime,
        write: impl FnOnce(&Path, &File) -> io::Result<()>,
    ) -> io::Result<Updated> {
        let Some(path) = self.path(key) else {
            return Ok(Updated::Missing);
        };
        let Some(locked) = self.lock_current(&path)? else {
            return Ok(Updated::Missing);
        };
        let current = match self.read(&locked)? {
            Some(current) if current.expires_at > now => current,
            _ => return Ok(Updated::Missing),
        };
        if current.data != expected {
            return Ok(Updated::Conflict(current));
        }
        write(&path, &locked)?;
        drop(locked);
        Ok(Updated::Stored)
    }

    fn update(
        &self,
        key: &str,
        expected: &str,
        record: &Record,
        now: OffsetDateTime,
    ) -> io::Result<Updated> {
        self.swap(key, expected, now, |path, _| {
            self.replace(path, key, record)
        })
    }

    /// Moves the expiry by setting the mtime of the file in place, as Django's file backend
    /// reads it: nothing is written to the file or renamed. The lock keeps it ordered with
    /// `update` and `delete`.
    fn touch(&self, key: &str, record: &Record, now: OffsetDateTime) -> io::Result<Updated> {
        self.swap(key, &record.data, now, |_, file| {
            file.set_modified(self.mtime_for(record.expires_at))
        })
    }

    fn delete(&self, key: &str) -> io::Result<()> {
        let Some(path) = self.path(key) else {
            return Ok(());
        };
        // Locked, so that an update holding the lock cannot rename its write over the deletion.
        let Some(locked) = self.lock_current(&path)? else {
            return Ok(());
        };
        match fs::remove_file(&path) {
            Err(e) if !not_found(&e) => return Err(e),
            _ => {}
        }
        drop(locked);
        Ok(())
    }

    fn exists(&self, key: &str) -> io::Result<bool> {
        let Some(path) = self.path(key) else {
            return Ok(false);
        };
        match fs::symlink_metadata(path) {
            Ok(_) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn clear_expired(&self, now: OffsetDateTime) -> io::Result<u64> {
        let mut cleared = 0;
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&self.prefix)) else {
                continue;
            };
            match rest.split_once(TEMP_MARKER) {
                None if key::is_well_formed(rest) => {
                    let path = entry.path();
                    let Some(locked) = self.lock_current(&path)? else {
                        continue;
                    };
                    if self.expires_at(&locked.metadata()?)? <= now {
                        match fs::remove_file(&path) {
                            Ok(()) => cleared += 1,
                            Err(e) if not_found(&e) => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
                Some((key, _)) if key::is_well_formed(key) => self.remove_if_stale(&entry)?,
                _ => {}
            }
        }
        Ok(cleared)
    }

    /// Removes a temp file a crash left behind. Its mtime is set on purpose, so its age is told
    /// by its change time.
    #[cfg(unix)]
    fn remove_if_stale(&self, entry: &fs::DirEntry) -> io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let meta = entry.metadata()?;
        let changed = OffsetDateTime::from_unix_timestamp(meta.ctime()).ok();
        let stale = OffsetDateTime::now_utc() - time::Duration::seconds(STALE_TEMP_SECS);
        if self.trusted(&meta) && changed.is_some_and(|c| c < stale) {
            match fs::remove_file(entry.path()) {
                Err(e) if !not_found(&e) => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    #[cfg(not(unix))]
    fn remove_if_stale(&self, _entry: &fs::DirEntry) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(unix)]
fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

/// Without inode numbers in stable std, the next best sign of a replaced file: every write
/// here sets a new mtime and usually a new length.
#[cfg(not(unix))]
fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    a.len() == b.len() && a.modified().ok() == b.modified().ok()
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
        expected: &str,
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

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let key = key.to_owned();
        self.run("look for", move |s| s.exists(&key)).await
    }

    fn users(&self) -> Option<&dyn UserIndex> {
        Some(self)
    }
}

#[async_trait]
impl ClearExpired for FileStore {
    async fn clear_expired(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        self.run("clear expired", move |s| {
            let cleared = s.clear_expired(now)?;
            s.sweep_users(now)?;
            Ok(cleared)
        })
        .await
    }
}

/// What an index entry file holds (instants in ms since the Unix epoch).
#[derive(serde::Serialize, serde::Deserialize)]
struct EntryFile {
    created: i64,
    last_seen: i64,
    user_agent: Option<String>,
    ip: Option<String>,
}

fn unix_ms(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn from_unix_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl Inner {
    fn users_dir(&self) -> PathBuf {
        self.dir.join(format!(".{}.users", self.prefix))
    }

    fn user_dir(&self, user_id: &str) -> PathBuf {
        self.users_dir().join(crate::hashed::stored_key(user_id))
    }

    /// Makes a folder of the index (mode 0700) unless it exists; one that is not a folder
    /// owned by this user (planted in a shared temp folder) is refused.
    fn private_dir(&self, path: &Path) -> io::Result<()> {
        let mut builder = fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        match builder.create(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let meta = fs::symlink_metadata(path)?;
                #[cfg(unix)]
                let owned = std::os::unix::fs::MetadataExt::uid(&meta) == self.owner;
                #[cfg(not(unix))]
                let owned = true;
                if meta.is_dir() && owned {
                    Ok(())
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!(
                            "{} is not a folder owned by this user; remove it",
                            path.display()
                        ),
                    ))
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The expiry of session `key`'s file when it is live at `now`.
    fn live_until(&self, key: &str, now: OffsetDateTime) -> io::Result<Option<OffsetDateTime>> {
        let Some(path) = self.path(key) else {
            return Ok(None);
        };
        let meta = match fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        if !self.trusted(&meta) {
            return Ok(None);
        }
        Ok(Some(self.expires_at(&meta)?).filter(|at| *at > now))
    }

    fn read_entry(&self, path: &Path) -> io::Result<Option<EntryFile>> {
        let Some(mut file) = self.open(path)? else {
            return Ok(None);
        };
        let mut text = String::new();
        if file.read_to_string(&mut text).is_err() {
            return Ok(None);
        }
        Ok(serde_json::from_str(&text).ok())
    }

    fn link(&self, entry: &UserSession) -> io::Result<()> {
        if self
            .live_until(&entry.id, OffsetDateTime::UNIX_EPOCH)?
            .is_none()
        {
            // The session went meanwhile (or the id is not a key): nothing to link.
            return Ok(());
        }
        let dir = self.user_dir(&entry.user_id);
        let path = dir.join(&entry.id);
        let created = match self.read_entry(&path)? {
            Some(old) => old.created,
            None => unix_ms(entry.created_at),
        };
        let text = serde_json::to_vec(&EntryFile {
            created,
            last_seen: unix_ms(entry.last_seen),
            user_agent: entry.user_agent.clone(),
            ip: entry.ip.clone(),
        })
        .map_err(io::Error::other)?;
        // A concurrent unlink may remove the emptied user folder between its creation and the
        // rename: make it again once.
        let mut result = Ok(());
        for _ in 0..2 {
            self.private_dir(&self.users_dir())?;
            self.private_dir(&dir)?;
            let temp = dir.join(format!("{}{TEMP_MARKER}{}", entry.id, random_suffix()?));
            result = create_new_private(&temp)
                .and_then(|mut file| file.write_all(&text))
                .and_then(|()| fs::rename(&temp, &path));
            if result.is_err() {
                let _ = fs::remove_file(&temp);
            }
            match &result {
                Err(e) if not_found(e) => continue,
                _ => break,
            }
        }
        result
    }

    fn unlink(&self, user_id: &str, id: &str) -> io::Result<()> {
        if !key::is_well_formed(id) {
            return Ok(());
        }
        let dir = self.user_dir(user_id);
        match fs::remove_file(dir.join(id)) {
            Err(e) if !not_found(&e) => return Err(e),
            _ => {}
        }
        // Gone once empty; a folder still holding entries refuses, which is fine.
        let _ = fs::remove_dir(&dir);
        Ok(())
    }

    fn sessions_of(&self, user_id: &str, now: OffsetDateTime) -> io::Result<Vec<UserSession>> {
        let dir = self.user_dir(user_id);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if not_found(&e) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut listed = Vec::new();
        for entry in entries {
            let name = entry?.file_name();
            let Some(id) = name.to_str().filter(|n| key::is_well_formed(n)) else {
                continue;
            };
            let live = self.live_until(id, now)?;
            match (live, self.read_entry(&dir.join(id))?) {
                (Some(expires_at), Some(e)) => listed.push(UserSession {
                    id: id.to_owned(),
                    user_id: user_id.to_owned(),
                    created_at: from_unix_ms(e.created),
                    last_seen: from_unix_ms(e.last_seen),
                    expires_at,
                    user_agent: e.user_agent,
                    ip: e.ip,
                }),
                _ => self.unlink(user_id, id)?,
            }
        }
        listed.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        Ok(listed)
    }

    fn revoke(&self, user_id: &str, id: &str) -> io::Result<()> {
        if !key::is_well_formed(id) {
            return Ok(());
        }
        if fs::symlink_metadata(self.user_dir(user_id).join(id)).is_ok() {
            self.delete(id)?;
        }
        self.unlink(user_id, id)
    }

    /// Removes the entries of sessions that are gone or expired at `now` (and temp files a
    /// crash left), and the user folders that end up empty.
    fn sweep_users(&self, now: OffsetDateTime) -> io::Result<()> {
        let users = match fs::read_dir(self.users_dir()) {
            Ok(users) => users,
            Err(e) if not_found(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        for user in users {
            let dir = user?.path();
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name();
                match name.to_str() {
                    Some(id) if key::is_well_formed(id) => {
                        if self.live_until(id, now)?.is_none() {
                            match fs::remove_file(entry.path()) {
                                Err(e) if !not_found(&e) => return Err(e),
                                _ => {}
                            }
                        }
                    }
                    _ => self.remove_if_stale(&entry)?,
                }
            }
            let _ = fs::remove_dir(&dir);
        }
        Ok(())
    }
}

#[async_trait]
impl UserIndex for FileStore {
    async fn link(&self, entry: &UserSession) -> Result<(), StoreError> {
        let entry = entry.clone();
        self.run("link", move |s| s.link(&entry)).await
    }

    async fn unlink(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        let (user_id, id) = (user_id.to_owned(), id.to_owned());
        self.run("unlink", move |s| s.unlink(&user_id, &id)).await
    }

    async fn sessions_of(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<UserSession>, StoreError> {
        let user_id = user_id.to_owned();
        self.run("list", move |s| s.sessions_of(&user_id, now))
            .await
    }

    async fn revoke(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        let (user_id, id) = (user_id.to_owned(), id.to_owned());
        self.run("revoke", move |s| s.revoke(&user_id, &id)).await
    }
}

impl Inner {
    /// Every session file's key and record (live or not), skipping temp files and files this
    /// store may not read.
    fn all(&self) -> io::Result<Vec<(String, Record)>> {
        let mut all = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(key) = name.to_str().and_then(|n| n.strip_prefix(&self.prefix)) else {
                continue;
            };
            if !key::is_well_formed(key) {
                continue;
            }
            let Some(file) = self.open(&entry.path())? else {
                continue;
            };
            if let Some(record) = self.read(&file)? {
                all.push((key.to_owned(), record));
            }
        }
        Ok(all)
    }
}

#[async_trait]
impl Scan for FileStore {
    async fn scan(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: OffsetDateTime,
    ) -> Result<Batch, StoreError> {
        let cursor = cursor.map(str::to_owned);
        self.run("list", move |s| {
            let mut live = s.all()?;
            live.retain(|(_, record)| record.expires_at > now);
            Ok(super::batch_after(live, cursor.as_deref(), limit))
        })
        .await
    }

    async fn count(&self, now: OffsetDateTime) -> Result<Counts, StoreError> {
        self.run("count", move |s| {
            let all = s.all()?;
            let live = all.iter().filter(|(_, r)| r.expires_at > now).count();
            Ok(Counts {
                live: live as u64,
                expired: (all.len() - live) as u64,
            })
        })
        .await
    }
}
