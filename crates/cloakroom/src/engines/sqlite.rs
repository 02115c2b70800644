//! The `db` engine on embedded SQLite, the default: a file beside the app, no server.
//!
//! Tuned for many concurrent readers and one writer: WAL journal, `synchronous = NORMAL`
//! (durable across app crashes; a power cut can lose the last commits, never corrupt), a busy
//! timeout instead of "database is locked" errors.
//!
//! The statements of a request (load, create, update, touch, delete, exists) run inline on the
//! calling task, on the store's own connections with cached prepared statements ([`Direct`]):
//! on a free database each takes microseconds, far less than handing it to a driver thread and
//! back. They never wait inline: when another connection or process (Django, `cloakroom
//! clearsessions`) holds the lock, the call moves to a blocking thread and waits there, up to
//! the busy timeout. The rest (migrate, the user index, clearsessions, scans) is rarer and goes
//! through sqlx.

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rusqlite::{OpenFlags, OptionalExtension as _};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use time::OffsetDateTime;

use super::sql::{clear_in_batches, guarded_write, scan_batch, scan_limit, Table, CLEAR_BATCH};
use crate::digits::{push_padded, push_two};
use crate::error::{ConfigError, OpenError, StoreError};
use crate::store::{
    Batch, ClearExpired, Counts, Created, Record, Scan, SessionStore, Updated, UserIndex,
};

const ENGINE: &str = "sqlite";

/// How long a call waits for another connection's or process's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Sessions in a SQLite table.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    /// The reads that are not a request's (scans, counts, the user index's listing), and the
    /// application's own queries; for a pool handed in by the app, those writes too.
    pool: SqlitePool,
    /// The writes that are not a request's (migrate, the user index, clearsessions), on one
    /// connection.
    writer: SqlitePool,
    /// The connections the hot statements run on, inline.
    direct: Arc<Direct>,
    table: Table,
    q: Arc<Queries>,
}

#[derive(Clone, Debug)]
struct Queries {
    load: String,
    create: String,
    update: String,
    touch: String,
    delete: String,
    exists: String,
    clear: String,
    count: String,
    link: String,
    unlink: String,
    sessions_of: String,
    revoke: String,
}

impl Queries {
    fn new(t: &str) -> Self {
        Self {
            load: format!(
                r#"SELECT session_data, expire_date FROM "{t}" WHERE session_key = ?1 AND expire_date > ?2"#
            ),
            create: format!(
                r#"INSERT INTO "{t}" (session_key, session_data, expire_date) VALUES (?1, ?2, ?3)"#
            ),
            update: format!(
                r#"UPDATE "{t}" SET session_data = ?1, expire_date = ?2 WHERE session_key = ?3 AND session_data = ?4 AND expire_date > ?5"#
            ),
            // The data is compared, never rewritten; binding it costs nothing in-process.
            touch: format!(
                r#"UPDATE "{t}" SET expire_date = ?1 WHERE session_key = ?2 AND session_data = ?3 AND expire_date > ?4"#
            ),
            delete: format!(r#"DELETE FROM "{t}" WHERE session_key = ?1"#),
            exists: format!(r#"SELECT 1 FROM "{t}" WHERE session_key = ?1"#),
            clear: format!(
                r#"DELETE FROM "{t}" WHERE session_key IN (SELECT session_key FROM "{t}" WHERE expire_date < ?1 LIMIT {CLEAR_BATCH})"#
            ),
            count: format!(r#"SELECT COUNT(*) FROM "{t}" WHERE expire_date > ?1"#),
            // Only while the session is there (a concurrent logout may have deleted it); an
            // existing entry keeps its `created`.
            link: format!(
                r#"INSERT INTO "{t}_user" (session_key, user_id, created, last_seen, expire_date, user_agent, ip)
SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE EXISTS (SELECT 1 FROM "{t}" WHERE session_key = ?8)
ON CONFLICT (session_key) DO UPDATE SET user_id = excluded.user_id, last_seen = excluded.last_seen, expire_date = excluded.expire_date, user_agent = excluded.user_agent, ip = excluded.ip"#
            ),
            unlink: format!(r#"DELETE FROM "{t}_user" WHERE user_id = ?1 AND session_key = ?2"#),
            // The session's own expiry decides (Django may have saved it since our last link).
            sessions_of: format!(
                r#"SELECT u.session_key, u.user_id, u.created, u.last_seen, s.expire_date, u.user_agent, u.ip FROM "{t}_user" u JOIN "{t}" s ON s.session_key = u.session_key WHERE u.user_id = ?1 AND s.expire_date > ?2 ORDER BY u.created DESC, u.session_key"#
            ),
            revoke: format!(
                r#"DELETE FROM "{t}" WHERE session_key IN (SELECT session_key FROM "{t}_user" WHERE user_id = ?1 AND session_key = ?2)"#
            ),
        }
    }
}

/// Formats an instant as Django stores `expire_date` in SQLite: the UTC wall clock as text,
/// `YYYY-MM-DD HH:MM:SS[.ffffff]`, fraction omitted when zero. Expiry filters compare this text.
pub fn django_datetime(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let mut out = String::with_capacity(26);
    // Written by hand: three of these per counter request cost 12k instructions via format!.
    let year = at.year();
    if year < 0 {
        out.push('-');
        push_padded(&mut out, u64::from(year.unsigned_abs()), 3);
    } else {
        push_padded(&mut out, u64::from(year.unsigned_abs()), 4);
    }
    for (sep, n) in [
        ('-', u8::from(at.month())),
        ('-', at.day()),
        (' ', at.hour()),
        (':', at.minute()),
        (':', at.second()),
    ] {
        out.push(sep);
        push_two(&mut out, n);
    }
    if let us @ 1.. = at.microsecond() {
        out.push('.');
        push_padded(&mut out, u64::from(us), 6);
    }
    out
}

fn parse_django_datetime(text: &str) -> Option<OffsetDateTime> {
    let format = time::macros::format_description!(
        version = 2,
        "[year]-[month]-[day] [hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    time::PrimitiveDateTime::parse(text, format)
        .ok()
        .map(time::PrimitiveDateTime::assume_utc)
}

fn store_error(table: &Table, e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        // SQLite reports a missing table only as a generic error with this message.
        if db.message().starts_with("no such table") {
            return StoreError::MissingTable {
                table: table.name().to_owned(),
            };
        }
    }
    StoreError::backend(ENGINE, e)
}

/// Whether SQLite refused for a lock another connection holds: `SQLITE_BUSY` (another
/// connection or process writes, or a WAL snapshot moved on) or `SQLITE_LOCKED` (the table lock
/// of a shared-cache in-memory database). The statement did nothing and can be run again.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Whether an insert failed because the key is taken.
fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    )
}

/// A lock held elsewhere for longer than [`BUSY_TIMEOUT`].
#[derive(Debug, thiserror::Error)]
#[error("the database stayed locked by another connection for more than {after:?} ({source}); look for a long write elsewhere (a transaction left open, a large purge not run with `cloakroom clearsessions`, which deletes in short batches) and end it")]
struct LockedTooLong {
    after: Duration,
    source: rusqlite::Error,
}

/// The [`StoreError`] of a failed direct statement; a missing table is named with its fix.
fn direct_error(table: &Table, e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(_, Some(message)) = &e {
        if message.starts_with("no such table") {
            return StoreError::MissingTable {
                table: table.name().to_owned(),
            };
        }
    }
    if is_busy(&e) {
        return StoreError::backend(
            ENGINE,
            LockedTooLong {
                after: BUSY_TIMEOUT,
                source: e,
            },
        );
    }
    StoreError::backend(ENGINE, e)
}

/// A statement to run on a connection: it owns what it binds, so that it can move to a
/// blocking thread when it has to wait.
trait Statement<T>: Fn(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static {}
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
    fn open(path: &std::path::Path, memory: bool) -> rusqlite::Result<Self> {
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        if memory {
            // As sqlx opens it: one named in-memory database shared by the process's connections.
            flags |= OpenFlags::SQLITE_OPEN_MEMORY | OpenFlags::SQLITE_OPEN_SHARED_CACHE;
        }
        let conn = rusqlite::Connection::open_with_flags(path, flags)?;
        // Never wait on the runtime: a busy database moves the call off it (see `Direct`).
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

/// Whether sqlx opens `options` as a named in-memory database (`sqlite::memory:`,
/// `mode=memory`). sqlx keeps this private and its URL rendering panics on such names; its
/// derived `Debug` shows the field (a unit test pins this).
fn is_in_memory(options: &SqliteConnectOptions) -> bool {
    format!("{options:?}").contains("in_memory: true")
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
struct Direct {
    writer: Conn,
    /// Empty for an in-memory database: reads go to the writer.
    readers: Vec<Conn>,
    next_reader: AtomicUsize,
}

impl Direct {
    /// Connections to the database `options` name (a file, or sqlx's named in-memory one).
    fn open(options: &SqliteConnectOptions, readers: usize) -> rusqlite::Result<Self> {
        let memory = is_in_memory(options);
        let path = options.get_filename();
        let readers = if memory { 0 } else { readers };
        Ok(Self {
            writer: Conn::open(path, memory)?,
            readers: (0..readers)
                .map(|_| Conn::open(path, memory))
                .collect::<rusqlite::Result<_>>()?,
            next_reader: AtomicUsize::new(0),
        })
    }

    /// Runs a write.
    async fn write<T: Send + 'static>(
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
    async fn read<T: Send + 'static>(
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
fn create_private(path: &std::path::Path) -> std::io::Result<()> {
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

impl SqliteStore {
    /// Opens (creating if needed) the SQLite database at `url` (`sqlite://path` or
    /// `sqlite::memory:`), with WAL, `synchronous = NORMAL` and a 5 s busy timeout, and keeps
    /// sessions in the default table. A new database file (and so its `-wal` and `-shm`) is
    /// created readable by its owner only (0600): it holds live session keys.
    ///
    /// # Errors
    /// [`OpenError::Config`] naming `database_url` when sqlx cannot read the URL,
    /// [`OpenError::Store`] when the file cannot be opened.
    pub async fn connect(url: &str) -> Result<Self, OpenError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| ConfigError::Rejected {
                setting: "database_url",
                source: e.into(),
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .statement_cache_capacity(32);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if !in_memory {
            create_private(options.get_filename()).map_err(|e| StoreError::backend(ENGINE, e))?;
            // Switching a new file to WAL needs an exclusive lock, and SQLite answers "database
            // is locked" at once (without the busy timeout) when two new connections race to do
            // it; so one connection does it before the pool opens the others.
            use sqlx::Connection as _;
            let conn = sqlx::SqliteConnection::connect_with(&options)
                .await
                .map_err(|e| StoreError::backend(ENGINE, e))?;
            conn.close()
                .await
                .map_err(|e| StoreError::backend(ENGINE, e))?;
        }
        let open = |max: u32| {
            SqlitePoolOptions::new()
                .max_connections(max)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                // sqlx pings a connection before every use by default: for SQLite that is a
                // hand-off to the connection's thread and back before each query, two per
                // counter request, for a connection to a local file that cannot go away.
                .test_before_acquire(false)
                .connect_with(options.clone())
        };
        if in_memory {
            // An in-memory database lives as long as one connection: keep exactly one.
            let pool = open(1).await.map_err(|e| StoreError::backend(ENGINE, e))?;
            return Self::new(pool, crate::config::DEFAULT_TABLE);
        }
        let pool = open(u32::try_from(readers()).unwrap_or(8))
            .await
            .map_err(|e| StoreError::backend(ENGINE, e))?;
        let writer = open(1).await.map_err(|e| StoreError::backend(ENGINE, e))?;
        let mut store = Self::new(pool, crate::config::DEFAULT_TABLE)?;
        store.writer = writer;
        Ok(store)
    }

    /// Sessions in `table` of the database an existing pool opens. The store runs the
    /// statements of a request on connections of its own to the same database (with
    /// `synchronous = NORMAL` and foreign keys on); the pool serves the rest.
    ///
    /// # Errors
    /// [`OpenError::Config`] when `table` is not a plain identifier, [`OpenError::Store`] when
    /// the database cannot be opened.
    pub fn new(pool: SqlitePool, table: &str) -> Result<Self, OpenError> {
        let table = Table::new(table)?;
        let direct = Direct::open(&pool.connect_options(), readers())
            .map_err(|e| StoreError::backend(ENGINE, e))?;
        Ok(Self {
            q: Arc::new(Queries::new(table.name())),
            writer: pool.clone(),
            direct: Arc::new(direct),
            pool,
            table,
        })
    }

    /// The same database, another table.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when `table` is not a plain identifier.
    pub fn with_table(self, table: &str) -> Result<Self, ConfigError> {
        let table = Table::new(table)?;
        Ok(Self {
            q: Arc::new(Queries::new(table.name())),
            table,
            ..self
        })
    }

    /// The pool, for the application's own queries.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Creates the table and its expiry index, and the user index table beside it
    /// ([`Table::user_table`]), unless they exist (idempotent).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the database refuses.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let t = self.table.name();
        let index = self.table.expiry_index();
        let users = self.table.user_table();
        let user_index = self.table.user_id_index();
        let ddl = format!(
            r#"CREATE TABLE IF NOT EXISTS "{t}" ("session_key" varchar(40) NOT NULL PRIMARY KEY, "session_data" text NOT NULL, "expire_date" datetime NOT NULL);
CREATE INDEX IF NOT EXISTS "{index}" ON "{t}" ("expire_date");
CREATE TABLE IF NOT EXISTS "{users}" ("session_key" varchar(40) NOT NULL PRIMARY KEY REFERENCES "{t}" ("session_key") ON DELETE CASCADE, "user_id" varchar(255) NOT NULL, "created" datetime NOT NULL, "last_seen" datetime NOT NULL, "expire_date" datetime NOT NULL, "user_agent" varchar(512) NULL, "ip" varchar(64) NULL);
CREATE INDEX IF NOT EXISTS "{user_index}" ON "{users}" ("user_id");"#
        );
        sqlx::raw_sql(&ddl)
            .execute(&self.writer)
            .await
            .map_err(|e| store_error(&self.table, e))?;
        Ok(())
    }

    /// How many live sessions the table holds.
    ///
    /// # Errors
    /// [`StoreError`] when the query fails.
    pub async fn count_live(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(&self.q.count)
            .bind(django_datetime(now))
            .fetch_one(&self.pool)
            .await
            .map_err(|e| store_error(&self.table, e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn record(&self, row: &sqlx::sqlite::SqliteRow) -> Result<Record, StoreError> {
        let data: String = row.try_get(0).map_err(|e| store_error(&self.table, e))?;
        let expire: String = row.try_get(1).map_err(|e| store_error(&self.table, e))?;
        record(data, &expire)
    }
}

/// A session row's record: its data and its Django `expire_date`.
fn record(data: String, expire: &str) -> Result<Record, StoreError> {
    let expires_at = parse_django_datetime(expire)
        .ok_or_else(|| StoreError::backend(ENGINE, format!("unreadable expire_date `{expire}`")))?;
    Ok(Record { data, expires_at })
}

#[async_trait]
impl SessionStore for SqliteStore {
    fn engine(&self) -> &'static str {
        ENGINE
    }

    async fn load(&self, key: &str, now: OffsetDateTime) -> Result<Option<Record>, StoreError> {
        let (q, key, now) = (Arc::clone(&self.q), key.to_owned(), django_datetime(now));
        let row = self
            .direct
            .read(move |c| {
                c.prepare_cached(&q.load)?
                    .query_row((&key, &now), |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                    })
                    .optional()
            })
            .await?
            .map_err(|e| direct_error(&self.table, e))?;
        row.map(|(data, expire)| record(data, &expire)).transpose()
    }

    async fn create(&self, key: &str, record: &Record) -> Result<Created, StoreError> {
        let (q, key, data) = (Arc::clone(&self.q), key.to_owned(), record.data.clone());
        let expire = django_datetime(record.expires_at);
        let result = self
            .direct
            .write(move |c| c.prepare_cached(&q.create)?.execute((&key, &data, &expire)))
            .await?;
        match result {
            Ok(_) => Ok(Created::Stored),
            Err(e) if is_unique_violation(&e) => Ok(Created::Taken),
            Err(e) => Err(direct_error(&self.table, e)),
        }
    }

    async fn update(
        &self,
        key: &str,
        expected: &str,
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        let (q, owned_key) = (Arc::clone(&self.q), key.to_owned());
        let (data, expected) = (record.data.clone(), expected.to_owned());
        let (expire, at) = (django_datetime(record.expires_at), django_datetime(now));
        let rows = self
            .direct
            .write(move |c| {
                c.prepare_cached(&q.update)?
                    .execute((&data, &expire, &owned_key, &expected, &at))
            })
            .await?
            .map_err(|e| direct_error(&self.table, e))?;
        guarded_write(rows as u64, self.load(key, now)).await
    }

    async fn touch(
        &self,
        key: &str,
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        let (q, owned_key, data) = (Arc::clone(&self.q), key.to_owned(), record.data.clone());
        let (expire, at) = (django_datetime(record.expires_at), django_datetime(now));
        let rows = self
            .direct
            .write(move |c| {
                c.prepare_cached(&q.touch)?
                    .execute((&expire, &owned_key, &data, &at))
            })
            .await?
            .map_err(|e| direct_error(&self.table, e))?;
        guarded_write(rows as u64, self.load(key, now)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let (q, key) = (Arc::clone(&self.q), key.to_owned());
        self.direct
            .write(move |c| c.prepare_cached(&q.delete)?.execute([&key]))
            .await?
            .map_err(|e| direct_error(&self.table, e))?;
        Ok(())
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let (q, key) = (Arc::clone(&self.q), key.to_owned());
        self.direct
            .read(move |c| c.prepare_cached(&q.exists)?.exists([&key]))
            .await?
            .map_err(|e| direct_error(&self.table, e))
    }

    fn users(&self) -> Option<&dyn UserIndex> {
        Some(self)
    }
}

// In `<table>_user` (see `Table::user_table`). sqlx turns SQLite's foreign keys on for its
// connections, so deleting a session deletes its entry.
super::sql::sql_user_index!(
    SqliteStore,
    writer: writer,
    bind: django_datetime,
    read: |row: &sqlx::sqlite::SqliteRow, i: usize| -> Result<OffsetDateTime, sqlx::Error> {
        let text: String = row.try_get(i)?;
        parse_django_datetime(&text)
            .ok_or_else(|| sqlx::Error::Decode(format!("unreadable datetime `{text}`").into()))
    }
);

#[async_trait]
impl ClearExpired for SqliteStore {
    async fn clear_expired(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        clear_in_batches(|| self.clear_expired_batch(now)).await
    }

    async fn clear_expired_batch(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let done = sqlx::query(&self.q.clear)
            .bind(django_datetime(now))
            .execute(&self.writer)
            .await
            .map_err(|e| store_error(&self.table, e))?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl Scan for SqliteStore {
    async fn scan(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: OffsetDateTime,
    ) -> Result<Batch, StoreError> {
        let t = self.table.name();
        let limit = scan_limit(limit);
        let rows = sqlx::query(&format!(
            r#"SELECT session_data, expire_date, session_key FROM "{t}" WHERE session_key > ?1 AND expire_date > ?2 ORDER BY session_key LIMIT ?3"#
        ))
        .bind(cursor.unwrap_or(""))
        .bind(django_datetime(now))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| store_error(&self.table, e))?;
        scan_batch(&rows, limit, |row| {
            let key: String = row.try_get(2).map_err(|e| store_error(&self.table, e))?;
            Ok((key, self.record(row)?))
        })
    }

    async fn count(&self, now: OffsetDateTime) -> Result<Counts, StoreError> {
        let t = self.table.name();
        let (live, expired): (i64, i64) = sqlx::query_as(&format!(
            r#"SELECT COALESCE(SUM(expire_date > ?1), 0), COALESCE(SUM(expire_date <= ?1), 0) FROM "{t}""#
        ))
        .bind(django_datetime(now))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| store_error(&self.table, e))?;
        Ok(Counts {
            live: u64::try_from(live).unwrap_or(0),
            expired: u64::try_from(expired).unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn in_memory_databases_are_told_from_files() {
        for (url, memory) in [
            ("sqlite::memory:", true),
            ("sqlite://x.sqlite3?mode=memory", true),
            ("sqlite://x.sqlite3", false),
            ("sqlite://x.sqlite3?mode=rwc", false),
        ] {
            let options = SqliteConnectOptions::from_str(url).unwrap();
            assert_eq!(is_in_memory(&options), memory, "{url}");
        }
    }

    #[test]
    fn datetimes_are_djangos_sqlite_text() {
        assert_eq!(
            django_datetime(datetime!(2025-01-15 00:00:00.25 UTC)),
            "2025-01-15 00:00:00.250000"
        );
        assert_eq!(
            django_datetime(datetime!(2099-01-01 00:00:00 UTC)),
            "2099-01-01 00:00:00"
        );
        assert_eq!(
            django_datetime(datetime!(0987-12-31 23:59:09.000001 +01:00)),
            "0987-12-31 22:59:09.000001"
        );
        assert_eq!(
            parse_django_datetime("2025-01-15 00:00:00.250000"),
            Some(datetime!(2025-01-15 00:00:00.25 UTC))
        );
    }
}
