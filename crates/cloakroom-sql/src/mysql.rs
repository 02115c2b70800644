//! The `db` engine on MySQL and MariaDB, in Django's `django_session` layout so that a Django
//! app and a cloakroom app can share one table.
//!
//! `expire_date` is `datetime(6)` holding the naive UTC wall clock, as Django writes it; the
//! engine binds and reads UTC `PrimitiveDateTime`s, so the connection's `time_zone` does not
//! matter.
//!
//! Two MySQL habits the compare-and-swap must not fall for:
//! - Django sets no collation, so `session_data` usually gets the database default, which is
//!   case-insensitive and often `PAD SPACE`: with a plain `=`, a stale `{"a":"X"}` would match
//!   a stored `{"a":"x"}` and overwrite it. The update compares the data as bytes instead.
//! - MySQL counts *changed* rows as "affected" unless the client sets `CLIENT_FOUND_ROWS`; then
//!   an update writing the very same data and expiry would look like a lost race. sqlx always
//!   sets that flag, so `rows_affected` counts matched rows (pinned by a test).
//!
//! The store is [`SqlStore`] with this dialect; its pool follows [`ServerOptions`] (pass your
//! own to [`SqlStore::connect_with`]), with sqlx's session settings: `utf8mb4` names and
//! `time_zone = '+00:00'`.
use std::str::FromStr;

use sqlx::error::DatabaseError;
use sqlx::mysql::{MySqlConnectOptions, MySqlDatabaseError, MySqlQueryResult, MySqlRow};
use sqlx::{MySqlConnection, Row as _};
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use super::sql::{Dialect, Failure, Flavor, Queries, ServerOptions, SqlStore, Table};

/// `ER_DUP_KEYNAME`: the index already exists (another server migrated at the same time).
const ER_DUP_KEYNAME: u16 = 1061;

/// `ER_PARSE_ERROR`: MySQL proper meeting MariaDB's `DELETE … RETURNING`.
const ER_PARSE_ERROR: u16 = 1064;

/// Sessions in a MySQL or MariaDB table.
pub type MySqlStore = SqlStore<MySql>;

/// MySQL's and MariaDB's dialect of [`SqlStore`].
#[derive(Clone, Copy, Debug)]
pub struct MySql;

/// An instant as `expire_date` holds it: the naive UTC wall clock.
fn utc_wall_clock(at: OffsetDateTime) -> PrimitiveDateTime {
    let at = at.to_offset(UtcOffset::UTC);
    PrimitiveDateTime::new(at.date(), at.time())
}

/// The server's error number of `e`, if it is a MySQL error.
fn error_number(e: &dyn DatabaseError) -> Option<u16> {
    e.try_downcast_ref::<MySqlDatabaseError>()
        .map(MySqlDatabaseError::number)
}

impl Dialect for MySql {
    type Db = sqlx::MySql;
    const ENGINE: &'static str = "mysql";
    const FLAVOR: Flavor = Flavor::MySql;

    fn connect_options(
        url: &str,
        options: &ServerOptions,
    ) -> Result<MySqlConnectOptions, sqlx::Error> {
        // sqlx reads host, user and options from the URL and ignores its scheme, so
        // `mariadb://` works too.
        let connect = MySqlConnectOptions::from_str(url)?;
        Ok(match options.statement_cache_capacity {
            Some(n) => connect.statement_cache_capacity(n),
            None => connect,
        })
    }

    fn bind_at(q: SqlQuery<'_>, at: OffsetDateTime) -> SqlQuery<'_> {
        q.bind(utc_wall_clock(at))
    }

    fn bind_digest<'q>(q: SqlQuery<'q>, digest: &'q [u8; 32]) -> SqlQuery<'q> {
        q.bind(
            digest
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
        )
    }

    fn read_at(row: &MySqlRow, i: usize) -> Result<OffsetDateTime, sqlx::Error> {
        row.try_get(i).map(PrimitiveDateTime::assume_utc)
    }

    fn rows_affected(done: &MySqlQueryResult) -> u64 {
        // Matched rows, not changed rows: sqlx connects with CLIENT_FOUND_ROWS.
        done.rows_affected()
    }

    fn failure(e: &dyn DatabaseError) -> Failure {
        match error_number(e) {
            // ER_NO_SUCH_TABLE: "Table 'db.t' doesn't exist" (SQLSTATE 42S02).
            Some(1146) => Failure::MissingTable,
            // ER_DUP_ENTRY, ER_DUP_ENTRY_WITH_KEY_NAME.
            Some(1062 | 1586) => Failure::Duplicate,
            // ER_NO_REFERENCED_ROW, ER_NO_REFERENCED_ROW_2.
            Some(1216 | 1452) => Failure::ForeignKey,
            _ => Failure::Other,
        }
    }

    /// MariaDB (10.5+) deletes and names in one `DELETE … RETURNING`; MySQL, which has no
    /// `RETURNING` (`ER_PARSE_ERROR`), picks the batch `FOR UPDATE` and deletes those keys
    /// in one transaction.
    async fn clear_named(
        conn: &mut MySqlConnection,
        q: &Queries,
        now: OffsetDateTime,
    ) -> Result<Vec<(String, Option<String>)>, sqlx::Error> {
        let rows = sqlx::query(&q.clear_named)
            .bind(utc_wall_clock(now))
            .fetch_all(&mut *conn)
            .await;
        let rows = match rows {
            Err(sqlx::Error::Database(e)) if error_number(e.as_ref()) == Some(ER_PARSE_ERROR) => {
                return pick_then_delete(conn, q, now).await
            }
            rows => rows?,
        };
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }

    /// A named lock (`GET_LOCK(name, 0)`: no wait), held by the connection until
    /// `RELEASE_LOCK` or its end. It answers 1 when taken, 0 when another session has it.
    async fn try_lock(conn: &mut MySqlConnection, name: &str) -> Result<bool, sqlx::Error> {
        let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 0)")
            .bind(name)
            .fetch_one(conn)
            .await?;
        Ok(got == Some(1))
    }

    async fn unlock(conn: &mut MySqlConnection, name: &str) -> Result<(), sqlx::Error> {
        sqlx::query_scalar::<_, Option<i64>>("SELECT RELEASE_LOCK(?)")
            .bind(name)
            .fetch_one(conn)
            .await
            .map(drop)
    }

    /// The table takes the database's default charset and collation, as Django's does.
    async fn migrate(conn: &mut MySqlConnection, table: &Table) -> Result<(), sqlx::Error> {
        let t = table.name();
        let index = table.expiry_index();
        let create_table = format!(
            "CREATE TABLE IF NOT EXISTS `{t}` (`session_key` varchar(40) NOT NULL PRIMARY KEY, `session_data` longtext NOT NULL, `expire_date` datetime(6) NOT NULL)"
        );
        sqlx::query(&create_table).execute(&mut *conn).await?;
        // MySQL 8 has no CREATE INDEX IF NOT EXISTS (MariaDB does): look first.
        let has_index: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.statistics \
             WHERE table_schema = DATABASE() AND table_name = ? AND index_name = ?",
        )
        .bind(t)
        .bind(&index)
        .fetch_one(&mut *conn)
        .await?;
        if has_index == 0 {
            let create_index = format!("CREATE INDEX `{index}` ON `{t}` (`expire_date`)");
            match sqlx::query(&create_index).execute(&mut *conn).await {
                Ok(_) => {}
                // Another server created it between our look and our CREATE.
                Err(sqlx::Error::Database(e))
                    if error_number(e.as_ref()) == Some(ER_DUP_KEYNAME) => {}
                Err(e) => return Err(e),
            }
        }
        // The user index, its `user_id` index inline (no look-first needed); InnoDB enforces
        // its foreign key.
        let users = table.user_table();
        let user_index = table.user_id_index();
        let create_users = format!(
            "CREATE TABLE IF NOT EXISTS `{users}` (`session_key` varchar(40) NOT NULL PRIMARY KEY, \
             `user_id` varchar(255) NOT NULL, `created` datetime(6) NOT NULL, \
             `last_seen` datetime(6) NOT NULL, `expire_date` datetime(6) NOT NULL, \
             `user_agent` varchar(512) NULL, `ip` varchar(64) NULL, \
             KEY `{user_index}` (`user_id`), \
             CONSTRAINT `{users}_session_fk` FOREIGN KEY (`session_key`) REFERENCES `{t}` (`session_key`) ON DELETE CASCADE)"
        );
        sqlx::query(&create_users).execute(conn).await.map(drop)
    }
}

type SqlQuery<'q> = super::sql::SqlQuery<'q, sqlx::MySql>;

/// The sweep's named batch on MySQL proper: the expired keys and their users, locked, then
/// deleted, in one transaction (so what is named is what went).
async fn pick_then_delete(
    conn: &mut MySqlConnection,
    q: &Queries,
    now: OffsetDateTime,
) -> Result<Vec<(String, Option<String>)>, sqlx::Error> {
    let mut tx = sqlx::Connection::begin(conn).await?;
    let rows = sqlx::query(&q.clear_pick)
        .bind(utc_wall_clock(now))
        .fetch_all(&mut *tx)
        .await?;
    let picked = rows
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<Result<Vec<(String, Option<String>)>, sqlx::Error>>()?;
    for keys in picked.chunks(1000) {
        let marks = vec!["?"; keys.len()].join(", ");
        let delete = format!("{} IN ({marks})", q.delete.trim_end_matches(" = ?"));
        let delete = keys
            .iter()
            .fold(sqlx::query(&delete), |d, (key, _)| d.bind(key.as_str()));
        delete.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(picked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{datetime, offset};

    #[test]
    fn expiry_is_the_utc_wall_clock() {
        assert_eq!(
            utc_wall_clock(datetime!(2025-01-15 02:00:00.25 +02:00)),
            time::macros::datetime!(2025-01-15 00:00:00.25)
        );
        assert_eq!(
            utc_wall_clock(datetime!(2025-01-15 00:00:00 UTC).to_offset(offset!(-05:00))),
            time::macros::datetime!(2025-01-15 00:00:00)
        );
    }
}
