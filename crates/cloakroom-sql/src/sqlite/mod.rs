//! The `db` engine on embedded SQLite, the default: a file beside the app, no server.
//!
//! Tuned for many concurrent readers and one writer: WAL journal, `synchronous = NORMAL`
//! (durable across app crashes; a power cut can lose the last commits, never corrupt), a busy
//! timeout instead of "database is locked" errors.
//!
//! Every statement runs on the store's own rusqlite connections (`conns.rs`), with cached
//! prepared statements. Those of a request (load, create, update, touch, delete, exists, the
//! user index) run inline on the calling task: on a free database each takes microseconds, far
//! less than handing it to a driver thread and back. They never wait inline: when another
//! connection or process (Django, `cloakroom clearsessions`) holds the lock, the call moves to
//! a blocking thread and waits there, up to the busy timeout. The long ones (migrate,
//! clearsessions, scans and counts) always run on a blocking thread.

mod conns;
mod datetime;
mod users;
mod walk;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{ErrorCode, OptionalExtension as _};
use time::OffsetDateTime;

use self::conns::{is_busy, Conns, Location, BUSY_TIMEOUT};
pub use self::datetime::django_datetime;
use self::datetime::parse_django_datetime;
use super::sql::{guarded_write, Flavor, Queries, Table};
use crate::error::{ConfigError, OpenError, StoreError};
use crate::exclusive::{Exclusive, FileLock, InProcessLocks, LockGuard};
use crate::store::{Created, Record, SessionStore, Updated};

const ENGINE: &str = "sqlite";

/// The database file a `sqlite:` URL names; `None` for an in-memory database or a URL that is
/// not a SQLite URL. Lets a tool that only reads (`cloakroom stats`) check that the file exists
/// first: opening a store creates a missing file, empty.
pub fn database_file(url: &str) -> Option<std::path::PathBuf> {
    match Location::parse(url).ok()? {
        Location::File(path) => Some(path),
        Location::Memory(_) => None,
    }
}

/// Sessions in a SQLite table.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    /// The connections every statement runs on.
    conns: Arc<Conns>,
    table: Table,
    q: Arc<Queries>,
    /// Where the database is, for its lock across processes ([`Exclusive`]).
    location: Arc<Location>,
}

/// The locks of in-memory databases: they live in this process only, and so do their locks.
static IN_MEMORY_LOCKS: std::sync::LazyLock<InProcessLocks> =
    std::sync::LazyLock::new(InProcessLocks::default);

/// One holder at a time across the processes of the machine (SQLite is one machine's): an
/// `flock` on a lock file beside the database, `<database>.<table>.<name>.lock`, which the
/// operating system lets go of when its holder dies. An in-memory database is one process's,
/// and its lock too.
#[async_trait]
impl Exclusive for SqliteStore {
    async fn try_lock(&self, name: &str) -> Result<Option<LockGuard>, StoreError> {
        let name = FileLock::file_safe(name);
        match &*self.location {
            Location::File(path) => {
                let mut lock = path.clone().into_os_string();
                lock.push(format!(".{}.{name}.lock", self.table.name()));
                FileLock::take_guard(ENGINE, lock.into()).await
            }
            Location::Memory(db) => {
                Ok(IN_MEMORY_LOCKS.try_take(&format!("{db}:{}:{name}", self.table.name())))
            }
        }
    }
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

/// Whether `table` exists, asked after a statement failed with SQLite's generic error
/// (`SQLITE_ERROR`, which is also what a missing table gives).
fn table_exists(c: &rusqlite::Connection, table: &str) -> rusqlite::Result<bool> {
    c.prepare_cached("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1")?
        .exists([table])
}

/// A session row's record: its data and its Django `expire_date`.
fn record(data: String, expire: &str) -> Result<Record, StoreError> {
    let expires_at = parse_django_datetime(expire)
        .ok_or_else(|| StoreError::backend(ENGINE, format!("unreadable expire_date `{expire}`")))?;
    Ok(Record {
        data: data.into(),
        expires_at,
    })
}

impl SqliteStore {
    /// Opens (creating if needed) the SQLite database at `url` (`sqlite://path` or
    /// `sqlite::memory:`; `sqlite:path`, `sqlite:///absolute/path`, `%XX` escapes, `?mode=memory`), with WAL,
    /// `synchronous = NORMAL` and a 5 s busy timeout, and keeps sessions in the default table.
    /// A new database file (and so its `-wal` and `-shm`) is created readable by its owner
    /// only (0600): it holds live session keys.
    ///
    /// # Errors
    /// [`OpenError::Config`] naming `database_url` when the URL is malformed,
    /// [`OpenError::Store`] when the file cannot be opened.
    pub async fn connect(url: &str) -> Result<Self, OpenError> {
        let location = Location::parse(url).map_err(|e| ConfigError::Rejected {
            setting: "database_url",
            source: e.into(),
        })?;
        let location = Arc::new(location);
        let opening = Arc::clone(&location);
        // Opening may wait up to the busy timeout for the lock that switches a file to WAL.
        let conns = tokio::task::spawn_blocking(move || Conns::open(&opening))
            .await
            .map_err(|e| StoreError::backend(ENGINE, e))??;
        let table = Table::new(crate::config::DEFAULT_TABLE)?;
        Ok(Self {
            q: Arc::new(Queries::new(&table, Flavor::Sqlite)),
            conns: Arc::new(conns),
            table,
            location,
        })
    }

    /// The same database, another table.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when `table` is not a plain identifier.
    pub fn with_table(self, table: &str) -> Result<Self, ConfigError> {
        let table = Table::new(table)?;
        Ok(Self {
            q: Arc::new(Queries::new(&table, Flavor::Sqlite)),
            table,
            ..self
        })
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
            r#"BEGIN;
CREATE TABLE IF NOT EXISTS "{t}" ("session_key" varchar(40) NOT NULL PRIMARY KEY, "session_data" text NOT NULL, "expire_date" datetime NOT NULL);
CREATE INDEX IF NOT EXISTS "{index}" ON "{t}" ("expire_date");
CREATE TABLE IF NOT EXISTS "{users}" ("session_key" varchar(40) NOT NULL PRIMARY KEY REFERENCES "{t}" ("session_key") ON DELETE CASCADE, "user_id" varchar(255) NOT NULL, "created" datetime NOT NULL, "last_seen" datetime NOT NULL, "expire_date" datetime NOT NULL, "user_agent" varchar(512) NULL, "ip" varchar(64) NULL);
CREATE INDEX IF NOT EXISTS "{user_index}" ON "{users}" ("user_id");
COMMIT;"#
        );
        let done = self
            .conns
            .off_runtime(true, move |c| {
                c.execute_batch(&ddl).inspect_err(|_| {
                    // Leaves no transaction open on the writer after a failure.
                    let _ = c.execute_batch("ROLLBACK");
                })
            })
            .await?;
        done.map_err(|e| StoreError::backend(ENGINE, e))
    }

    /// How many live sessions the table holds.
    ///
    /// # Errors
    /// [`StoreError`] when the query fails.
    pub async fn count_live(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let (q, now) = (Arc::clone(&self.q), django_datetime(now));
        let n = self
            .conns
            .off_runtime(false, move |c| {
                c.prepare_cached(&q.count)?
                    .query_row([&now], |row| row.get::<_, i64>(0))
            })
            .await?;
        Ok(u64::try_from(self.check(n, false).await?).unwrap_or(0))
    }

    /// The result of a statement, its error as a [`StoreError`]: a missing table (SQLite's
    /// generic `SQLITE_ERROR`, and no such table in `sqlite_master`) is named with its fix,
    /// the user index table for the index's statements (`index`), and a lock held too long
    /// says so.
    async fn check<T>(&self, done: rusqlite::Result<T>, index: bool) -> Result<T, StoreError> {
        let e = match done {
            Ok(done) => return Ok(done),
            Err(e) => e,
        };
        if e.sqlite_error_code() == Some(ErrorCode::Unknown) {
            let names = [self.table.name().to_owned(), self.table.user_table()];
            let tables = if index { &names[..] } else { &names[..1] }.to_vec();
            let missing = self
                .conns
                .read(move |c| {
                    for table in &tables {
                        if !table_exists(c, table)? {
                            return Ok(true);
                        }
                    }
                    Ok(false)
                })
                .await;
            if let Ok(Ok(true)) = missing {
                let table = if index { &names[1] } else { &names[0] };
                return Err(StoreError::MissingTable {
                    table: table.clone(),
                });
            }
        }
        if is_busy(&e) {
            let after = BUSY_TIMEOUT;
            return Err(StoreError::backend(
                ENGINE,
                LockedTooLong { after, source: e },
            ));
        }
        Err(StoreError::backend(ENGINE, e))
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    fn engine(&self) -> &'static str {
        ENGINE
    }

    async fn load(&self, key: &str, now: OffsetDateTime) -> Result<Option<Record>, StoreError> {
        let (q, key, now) = (Arc::clone(&self.q), key.to_owned(), django_datetime(now));
        let row = self
            .conns
            .read(move |c| {
                c.prepare_cached(&q.load)?
                    .query_row((&key, &now), |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                    })
                    .optional()
            })
            .await?;
        let row = self.check(row, false).await?;
        row.map(|(data, expire)| record(data, &expire)).transpose()
    }

    async fn create(&self, key: &str, record: &Record) -> Result<Created, StoreError> {
        let data = crate::text_of(ENGINE, &record.data)?.to_owned();
        let (q, key) = (Arc::clone(&self.q), key.to_owned());
        let expire = django_datetime(record.expires_at);
        let result = self
            .conns
            .write(move |c| c.prepare_cached(&q.create)?.execute((&key, &data, &expire)))
            .await?;
        match result {
            Err(e) if is_unique_violation(&e) => Ok(Created::Taken),
            result => self.check(result, false).await.map(|_| Created::Stored),
        }
    }

    async fn update(
        &self,
        key: &str,
        expected: &[u8],
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        let (q, owned_key) = (Arc::clone(&self.q), key.to_owned());
        let data = crate::text_of(ENGINE, &record.data)?.to_owned();
        let expected = crate::text_of(ENGINE, expected)?.to_owned();
        let (expire, at) = (django_datetime(record.expires_at), django_datetime(now));
        let rows = self
            .conns
            .write(move |c| {
                c.prepare_cached(&q.update)?
                    .execute((&data, &expire, &owned_key, &expected, &at))
            })
            .await?;
        let rows = self.check(rows, false).await?;
        guarded_write(rows as u64, self.load(key, now)).await
    }

    async fn touch(
        &self,
        key: &str,
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        let data = crate::text_of(ENGINE, &record.data)?.to_owned();
        let (q, owned_key) = (Arc::clone(&self.q), key.to_owned());
        let (expire, at) = (django_datetime(record.expires_at), django_datetime(now));
        let rows = self
            .conns
            .write(move |c| {
                c.prepare_cached(&q.touch)?
                    .execute((&expire, &owned_key, &data, &at))
            })
            .await?;
        let rows = self.check(rows, false).await?;
        guarded_write(rows as u64, self.load(key, now)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let (q, key) = (Arc::clone(&self.q), key.to_owned());
        let done = self
            .conns
            .write(move |c| c.prepare_cached(&q.delete)?.execute([&key]))
            .await?;
        self.check(done, false).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_file_names_the_file_and_not_memory() {
        assert_eq!(
            super::database_file("sqlite:///srv/a%20b.sqlite3?mode=rwc"),
            Some("/srv/a b.sqlite3".into())
        );
        assert_eq!(
            super::database_file("sqlite://x.sqlite3"),
            Some("x.sqlite3".into())
        );
        for none in [
            "sqlite::memory:",
            "sqlite://x?mode=memory",
            "postgres://h/db",
        ] {
            assert_eq!(super::database_file(none), None, "{none}");
        }
    }
}
