//! The SQLite engine's own connections, on rusqlite: where a `sqlite:` URL points, one writer
//! and a few readers, and how a statement runs on them without blocking the runtime (see
//! [`Conns`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use rusqlite::OpenFlags;

use super::ENGINE;
use crate::error::StoreError;

/// How long a call waits for another connection's or process's lock before failing.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a `sqlite:` URL points, by our own reading of it (the forms sqlx accepts):
/// `sqlite::memory:` or `sqlite://:memory:` (a new in-memory database), `sqlite://path`,
/// `sqlite:path` or `sqlite:///absolute/path` (a file; `%XX` escapes decoded), with the
/// query parameters `mode` (`ro`, `rw`, `rwc` or `memory`: an in-memory database named by the
/// path, shared by the process's stores) and `cache`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Location {
    /// A database file.
    File(PathBuf),
    /// A named in-memory database, shared by the process's connections to that name.
    Memory(String),
}

/// A `sqlite:` URL that does not say where a database is.
#[derive(Debug, thiserror::Error)]
#[error("`{url}` is not a SQLite URL: {reason}")]
pub(super) struct BadUrl {
    url: String,
    reason: String,
}

impl Location {
    /// Reads `url`.
    pub(super) fn parse(url: &str) -> Result<Self, BadUrl> {
        let bad = |reason: String| BadUrl {
            url: crate::config::redact_url(url).into_owned(),
            reason,
        };
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| bad("it does not start with `sqlite:`".into()))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut memory = path == ":memory:";
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            match pair.split_once('=').unwrap_or((pair, "")) {
                ("mode", "memory") => memory = true,
                ("mode", "ro" | "rw" | "rwc") | ("cache", "shared" | "private") => {}
                (key, value) => {
                    return Err(bad(format!("unknown query parameter `{key}={value}`")));
                }
            }
        }
        let path = percent_encoding::percent_decode_str(path)
            .decode_utf8()
            .map_err(|e| bad(e.to_string()))?;
        if path == ":memory:" {
            // Like sqlx, each `sqlite::memory:` store gets a database of its own.
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            return Ok(Self::Memory(format!("file:cloakroom-in-memory-{n}")));
        }
        if path.is_empty() {
            return Err(bad("it names no file".into()));
        }
        Ok(if memory {
            Self::Memory(path.into_owned())
        } else {
            Self::File(PathBuf::from(path.into_owned()))
        })
    }
}

/// Whether SQLite refused for a lock another connection holds: `SQLITE_BUSY` (another
/// connection or process writes, or a WAL snapshot moved on) or `SQLITE_LOCKED` (the table lock
/// of a shared-cache in-memory database). The statement did nothing and can be run again.
pub(super) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// A statement to run on a connection: it owns what it binds, so that it can move to a
/// blocking thread when it has to wait.
pub(super) trait Statement<T>:
    Fn(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static
{
}
impl<T, F: Fn(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static> Statement<T> for F {}

/// One of the store's connections.
#[derive(Debug)]
struct Conn {
    conn: Mutex<rusqlite::Connection>,
    /// Calls on blocking threads that hold or wait for `conn`; while there are any, a call on
    /// the runtime does not wait for it either.
    off_runtime: AtomicUsize,
}

impl Conn {
    fn open(path: &Path, memory: bool) -> rusqlite::Result<Self> {
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        if memory {
            // One named in-memory database, shared by the process's connections to that name.
            flags |= OpenFlags::SQLITE_OPEN_MEMORY | OpenFlags::SQLITE_OPEN_SHARED_CACHE;
        }
        let conn = rusqlite::Connection::open_with_flags(path, flags)?;
        // Never wait on the runtime: a busy database moves the call off it (see `Conns`).
        conn.busy_timeout(Duration::ZERO)?;
        // Deleting a session deletes its user index entry (`ON DELETE CASCADE`).
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Per connection: a commit waits for the WAL write, not for its fsync.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(Self {
            conn: Mutex::new(conn),
            off_runtime: AtomicUsize::new(0),
        })
    }

    /// Runs `statement` here and now if the connection is free or only briefly taken (by a
    /// call on another runtime thread, for microseconds) and SQLite answers without waiting
    /// for a lock; `None` when it would have to wait.
    /// With `spin` false, a connection taken at all is `None`.
    fn try_inline<T>(
        &self,
        statement: &impl Statement<T>,
        spin: bool,
    ) -> Option<rusqlite::Result<T>> {
        loop {
            let conn = match self.conn.try_lock() {
                Ok(conn) => conn,
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => {
                    if !spin || self.off_runtime.load(Ordering::Acquire) > 0 {
                        return None;
                    }
                    std::thread::yield_now();
                    continue;
                }
            };
            return match statement(&conn) {
                Err(e) if is_busy(&e) => None,
                done => Some(done),
            };
        }
    }

    /// Runs `statement` on a blocking thread, waiting for the connection and then up to
    /// [`BUSY_TIMEOUT`] for the database's lock.
    fn wait_and_run<T>(&self, statement: &impl Statement<T>) -> rusqlite::Result<T> {
        self.off_runtime.fetch_add(1, Ordering::AcqRel);
        let conn = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let done = Self::retry_while_busy(&conn, statement);
        drop(conn);
        self.off_runtime.fetch_sub(1, Ordering::AcqRel);
        done
    }

    fn retry_while_busy<T>(
        conn: &MutexGuard<'_, rusqlite::Connection>,
        statement: &impl Statement<T>,
    ) -> rusqlite::Result<T> {
        let deadline = Instant::now() + BUSY_TIMEOUT;
        loop {
            // SQLite's busy handler waits for a writer's lock; a moved WAL snapshot or a
            // shared-cache table lock answers at once, and is retried here.
            let left = deadline.saturating_duration_since(Instant::now());
            conn.busy_timeout(left)?;
            let done = statement(conn);
            conn.busy_timeout(Duration::ZERO)?;
            match done {
                Err(e) if is_busy(&e) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                done => return done,
            }
        }
    }
}

/// The store's own connections for the statements of a request: one writer (SQLite lets one
/// in at a time, and one connection queues them in microseconds where SQLite's busy handler
/// sleeps milliseconds) and a few readers (WAL readers never block each other or the writer).
///
/// A statement runs inline on the calling task, without waiting: when the database is locked
/// by another connection or process, or the connection is held by a call that waits for such
/// a lock, it moves to `spawn_blocking` and waits there up to [`BUSY_TIMEOUT`], so the runtime
/// keeps serving other requests meanwhile.
#[derive(Debug)]
pub(super) struct Conns {
    writer: Conn,
    /// Empty for an in-memory database: reads go to the writer.
    readers: Vec<Conn>,
    next_reader: AtomicUsize,
}

impl Conns {
    /// Connections to the database at `location`, made ready: a new file is created readable
    /// by its owner only and switched to WAL before the readers open.
    pub(super) fn open(location: &Location) -> Result<Self, StoreError> {
        let fail = |e: rusqlite::Error| StoreError::backend(ENGINE, e);
        let (path, memory, readers) = match location {
            Location::File(path) => {
                create_private(path).map_err(|e| StoreError::backend(ENGINE, e))?;
                (path.as_path(), false, readers())
            }
            // An in-memory database lives as long as its connections: the writer alone.
            Location::Memory(name) => (Path::new(name.as_str()), true, 0),
        };
        let writer = Conn::open(path, memory).map_err(fail)?;
        if !memory {
            // Switching a new file to WAL needs an exclusive lock, and SQLite answers "database
            // is locked" at once when two new connections race to do it; so the writer does
            // it, waiting for the lock, before the readers open.
            let conn = writer
                .conn
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Conn::retry_while_busy(&conn, &|c: &rusqlite::Connection| {
                c.pragma_update_and_check(None, "journal_mode", "WAL", |row| {
                    row.get::<_, String>(0)
                })
            })
            .map_err(fail)?;
        }
        Ok(Self {
            writer,
            readers: (0..readers)
                .map(|_| Conn::open(path, memory))
                .collect::<rusqlite::Result<_>>()
                .map_err(fail)?,
            next_reader: AtomicUsize::new(0),
        })
    }

    /// Runs a write.
    pub(super) async fn write<T: Send + 'static>(
        self: &Arc<Self>,
        statement: impl Statement<T>,
    ) -> Result<rusqlite::Result<T>, StoreError> {
        if let Some(done) = self.writer.try_inline(&statement, true) {
            return Ok(done);
        }
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || this.writer.wait_and_run(&statement))
            .await
            .map_err(|e| StoreError::backend(ENGINE, e))
    }

    /// Runs a read, on the first free reader.
    pub(super) async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        statement: impl Statement<T>,
    ) -> Result<rusqlite::Result<T>, StoreError> {
        let n = self.readers.len();
        if n == 0 {
            return self.write(statement).await;
        }
        // The writer first, when it is free: its page cache survives its own writes, where a
        // reader's is dropped after each of them and its pages read from the file again.
        if let Some(done) = self.writer.try_inline(&statement, false) {
            return Ok(done);
        }
        let first = self.next_reader.fetch_add(1, Ordering::Relaxed) % n;
        for i in 0..n {
            if let Some(done) = self.readers[(first + i) % n].try_inline(&statement, false) {
                return Ok(done);
            }
        }
        // All taken, by calls on other runtime threads (then for microseconds) or waiting.
        if let Some(done) = self.readers[first].try_inline(&statement, true) {
            return Ok(done);
        }
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || this.readers[first].wait_and_run(&statement))
            .await
            .map_err(|e| StoreError::backend(ENGINE, e))
    }

    /// Runs a long statement (a scan, a purge batch, `migrate`) on a blocking thread, on the
    /// writer or on a reader, so that the runtime never runs it inline.
    pub(super) async fn off_runtime<T: Send + 'static>(
        self: &Arc<Self>,
        write: bool,
        statement: impl Statement<T>,
    ) -> Result<rusqlite::Result<T>, StoreError> {
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let n = this.readers.len();
            let conn = if write || n == 0 {
                &this.writer
            } else {
                &this.readers[this.next_reader.fetch_add(1, Ordering::Relaxed) % n]
            };
            conn.wait_and_run(&statement)
        })
        .await
        .map_err(|e| StoreError::backend(ENGINE, e))
    }
}

/// How many reader connections a store opens: WAL readers never block each other or the
/// writer, and more of them than the cores run at once only wait.
fn readers() -> usize {
    std::thread::available_parallelism()
        .map_or(2, usize::from)
        .clamp(2, 8)
}

/// Creates the database file readable by its owner only (0600), before SQLite opens it: it
/// holds live session keys, and SQLite creates its `-wal` and `-shm` files with the database
/// file's permissions. An empty file is an empty database to SQLite; an existing file is left
/// as it is.
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(std::io::Error::new(
            e.kind(),
            format!("cannot create the SQLite database {}: {e}", path.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_memory_databases_are_told_from_files() {
        for (url, memory) in [
            ("sqlite::memory:", true),
            ("sqlite://:memory:", true),
            ("sqlite://x.sqlite3?mode=memory", true),
            ("sqlite://x.sqlite3", false),
            ("sqlite://x.sqlite3?mode=rwc", false),
            ("sqlite:x.sqlite3?cache=shared&mode=rw", false),
        ] {
            let location = Location::parse(url).unwrap();
            assert_eq!(matches!(location, Location::Memory(_)), memory, "{url}");
        }
        assert_ne!(
            Location::parse("sqlite::memory:").unwrap(),
            Location::parse("sqlite::memory:").unwrap(),
            "each store has a database of its own"
        );
        assert_eq!(
            Location::parse("sqlite:///tmp/a%20b.sqlite3").unwrap(),
            Location::File("/tmp/a b.sqlite3".into())
        );
        for bad in ["postgres://x", "sqlite://", "sqlite://x?journal=wal"] {
            assert!(Location::parse(bad).is_err(), "{bad}");
        }
    }
}
