//! The session files themselves: names, expiry as mtime, trusted opening, atomic writes, and
//! the locked compare-and-swap.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use time::OffsetDateTime;

use super::Inner;
use crate::key;
use crate::store::{Created, Record, Updated};

/// How many times `update`/`delete` chase a file that another writer keeps replacing.
const MAX_CHASES: u32 = 64;
/// Temp files are named `<session file name>_out_<random>`, as Django's `mkstemp` names them.
pub(super) const TEMP_MARKER: &str = "_out_";
/// The latest mtime written (2400-01-01): far-future expiries are clamped to what every file
/// system can store.
const LATEST_MTIME: i64 = 13_569_465_600;

/// Whether a handle still is the file under its name.
enum Current {
    Same,
    Replaced,
    Gone,
}

pub(super) fn random_suffix() -> io::Result<String> {
    let mut suffix = key::generate().map_err(io::Error::other)?;
    suffix.truncate(12);
    Ok(suffix)
}

/// Opens a new file for writing that nobody else can read (Django's `mkstemp` mode, 0600),
/// failing if the name is taken (`O_CREAT | O_EXCL`, which does not follow symlinks either).
pub(super) fn create_new_private(path: &Path) -> io::Result<File> {
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

pub(super) fn not_found(e: &io::Error) -> bool {
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
    pub(super) fn path(&self, key: &str) -> Option<PathBuf> {
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

    pub(super) fn expires_at(&self, meta: &fs::Metadata) -> io::Result<OffsetDateTime> {
        let mtime = to_offset(meta.modified()?)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "mtime out of range"))?;
        Ok(mtime
            .checked_add(self.cookie_age)
            .unwrap_or(time::PrimitiveDateTime::MAX.assume_utc()))
    }

    /// Whether a file under a session name is one this store may read: a regular file (not a
    /// symlink, FIFO or device, which could hang a read) owned by this process's user.
    #[cfg(unix)]
    pub(super) fn trusted(&self, meta: &fs::Metadata) -> bool {
        use std::os::unix::fs::MetadataExt;
        meta.file_type().is_file() && meta.uid() == self.owner
    }

    #[cfg(not(unix))]
    pub(super) fn trusted(&self, meta: &fs::Metadata) -> bool {
        meta.file_type().is_file()
    }

    /// Opens the session file at `path`, or `None` when there is none this store may read.
    pub(super) fn open(&self, path: &Path) -> io::Result<Option<File>> {
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
    /// progress.
    pub(super) fn read(&self, mut file: &File) -> io::Result<Option<Record>> {
        let expires_at = self.expires_at(&file.metadata()?)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        if bytes.is_empty() {
            return Ok(None);
        }
        Ok(Some(Record {
            data: bytes.into(),
            expires_at,
        }))
    }

    /// Writes `record` to a temp file beside `path` and renames it over `path`.
    fn replace(&self, path: &Path, key: &str, record: &Record) -> io::Result<()> {
        let temp = self.dir.join(format!(
            "{}{key}{TEMP_MARKER}{}",
            self.prefix,
            random_suffix()?
        ));
        let written = create_new_private(&temp).and_then(|mut file| {
            file.write_all(&record.data)?;
            file.set_modified(self.mtime_for(record.expires_at))
        });
        let result = written.and_then(|()| fs::rename(&temp, path));
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }

    pub(super) fn load(&self, key: &str, now: OffsetDateTime) -> io::Result<Option<Record>> {
        let Some(path) = self.path(key) else {
            return Ok(None);
        };
        let Some(file) = self.open(&path)? else {
            return Ok(None);
        };
        Ok(self.read(&file)?.filter(|r| r.expires_at > now))
    }

    pub(super) fn create(&self, key: &str, record: &Record) -> io::Result<Created> {
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
    pub(super) fn lock_current(&self, path: &Path) -> io::Result<Option<File>> {
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
        expected: &[u8],
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

    pub(super) fn update(
        &self,
        key: &str,
        expected: &[u8],
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
    pub(super) fn touch(
        &self,
        key: &str,
        record: &Record,
        now: OffsetDateTime,
    ) -> io::Result<Updated> {
        self.swap(key, &record.data, now, |_, file| {
            file.set_modified(self.mtime_for(record.expires_at))
        })
    }

    pub(super) fn delete(&self, key: &str) -> io::Result<()> {
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

    pub(super) fn exists(&self, key: &str) -> io::Result<bool> {
        let Some(path) = self.path(key) else {
            return Ok(false);
        };
        match fs::symlink_metadata(path) {
            Ok(_) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(e),
        }
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
