//! The `db` engine on PostgreSQL, in Django's `django_session` layout so that a Django app and
//! a cloakroom app can share one table.
//!
//! `expire_date` is `timestamp with time zone`, so instants round-trip whatever the server's or
//! the connection's `TimeZone` is. The compare-and-swap compares `session_data` with `=`, which
//! is byte-for-byte under PostgreSQL's (deterministic) collations.
//!
//! The store is [`SqlStore`] with this dialect; its pool follows [`ServerOptions`] (pass your
//! own to [`SqlStore::connect_with`]), and its connections set `application_name = cloakroom`
//! unless the URL or `PGAPPNAME` names one, so they are recognisable in `pg_stat_activity`.

use std::str::FromStr;

use sqlx::error::DatabaseError;
use sqlx::postgres::{PgConnectOptions, PgQueryResult, PgRow};
use sqlx::{PgConnection, Row as _};
use time::OffsetDateTime;

use super::sql::{Dialect, Failure, Flavor, ServerOptions, SqlStore, Table};

/// The advisory lock `migrate` holds, so that app servers migrating at once do not race on
/// `CREATE TABLE IF NOT EXISTS` (which is not safe under concurrency in PostgreSQL).
/// The bytes spell "cloakroo".
const MIGRATE_LOCK: i64 = 0x636c_6f61_6b72_6f6f;

/// Sessions in a PostgreSQL table.
pub type PostgresStore = SqlStore<Postgres>;

/// PostgreSQL's dialect of [`SqlStore`].
#[derive(Clone, Copy, Debug)]
pub struct Postgres;

/// The name of the `varchar_pattern_ops` index PostgreSQL gets for a varchar primary key:
/// Django's own for `django_session` (so both `migrate`s make the same table), a readable one
/// otherwise.
pub fn like_index(table: &Table) -> String {
    if table.name() == "django_session" {
        "django_session_session_key_c0390e0f_like".to_owned()
    } else {
        format!("{}_session_key_like", table.name())
    }
}

impl Dialect for Postgres {
    type Db = sqlx::Postgres;
    const ENGINE: &'static str = "postgres";
    const FLAVOR: Flavor = Flavor::Postgres;

    fn connect_options(
        url: &str,
        options: &ServerOptions,
    ) -> Result<PgConnectOptions, sqlx::Error> {
        let mut connect = PgConnectOptions::from_str(url)?;
        if connect.get_application_name().is_none() {
            connect = connect.application_name("cloakroom");
        }
        Ok(match options.statement_cache_capacity {
            Some(n) => connect.statement_cache_capacity(n),
            None => connect,
        })
    }

    fn bind_at(q: SqlQuery<'_>, at: OffsetDateTime) -> SqlQuery<'_> {
        // `timestamp with time zone`: the instant round-trips whatever the `TimeZone`.
        q.bind(at)
    }

    fn bind_digest<'q>(q: SqlQuery<'q>, digest: &'q [u8; 32]) -> SqlQuery<'q> {
        q.bind(&digest[..])
    }

    fn read_at(row: &PgRow, i: usize) -> Result<OffsetDateTime, sqlx::Error> {
        row.try_get(i)
    }

    fn rows_affected(done: &PgQueryResult) -> u64 {
        done.rows_affected()
    }

    fn failure(e: &dyn DatabaseError) -> Failure {
        match e.code().as_deref() {
            Some("42P01") => Failure::MissingTable,
            Some("23505") => Failure::Duplicate,
            Some("23503") => Failure::ForeignKey,
            _ => Failure::Other,
        }
    }

    /// A session-level advisory lock (`pg_try_advisory_lock`), keyed by the first 8 bytes of
    /// the name's SHA-256: it lives as long as the connection's session, so a server that
    /// dies lets go of it with its connection.
    async fn try_lock(conn: &mut PgConnection, name: &str) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(advisory_key(name))
            .fetch_one(conn)
            .await
    }

    async fn unlock(conn: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
        sqlx::query_scalar::<_, bool>("SELECT pg_advisory_unlock($1)")
            .bind(advisory_key(name))
            .fetch_one(conn)
            .await
            .map(drop)
    }

    async fn migrate(conn: &mut PgConnection, table: &Table) -> Result<(), sqlx::Error> {
        let t = table.name();
        let like = like_index(table);
        let expiry = table.expiry_index();
        let users = table.user_table();
        let user_index = table.user_id_index();
        let ddl = format!(
            r#"SELECT pg_advisory_xact_lock({MIGRATE_LOCK});
CREATE TABLE IF NOT EXISTS "{t}" ("session_key" varchar(40) NOT NULL PRIMARY KEY, "session_data" text NOT NULL, "expire_date" timestamp with time zone NOT NULL);
CREATE INDEX IF NOT EXISTS "{like}" ON "{t}" ("session_key" varchar_pattern_ops);
CREATE INDEX IF NOT EXISTS "{expiry}" ON "{t}" ("expire_date");
CREATE TABLE IF NOT EXISTS "{users}" ("session_key" varchar(40) NOT NULL PRIMARY KEY REFERENCES "{t}" ("session_key") ON DELETE CASCADE, "user_id" varchar(255) NOT NULL, "created" timestamp with time zone NOT NULL, "last_seen" timestamp with time zone NOT NULL, "expire_date" timestamp with time zone NOT NULL, "user_agent" varchar(512) NULL, "ip" varchar(64) NULL);
CREATE INDEX IF NOT EXISTS "{user_index}" ON "{users}" ("user_id");"#
        );
        // One simple-query string runs as one implicit transaction: the advisory lock is held
        // until all of it has committed, and a failure leaves nothing half made.
        sqlx::Executor::execute(conn, sqlx::raw_sql(&ddl))
            .await
            .map(drop)
    }
}

type SqlQuery<'q> = super::sql::SqlQuery<'q, sqlx::Postgres>;

/// The advisory lock key of lock `name`: PostgreSQL's advisory locks take a number.
fn advisory_key(name: &str) -> i64 {
    let digest = super::sql::data_digest(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}
