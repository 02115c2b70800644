//! What the generic store asks of a server SQL database: its dialect ([`Dialect`]: statements,
//! how instants and digests travel, errors by code, `migrate`), and the sqlx operations it runs,
//! written once for every database that has them ([`Driver`]).

use std::future::Future;

use sqlx::error::DatabaseError;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row as _, Type};
use time::OffsetDateTime;

use super::pool::ServerOptions;
use super::{Flavor, Table};

/// A statement with its arguments, on database `DB`.
pub type SqlQuery<'q, DB> = sqlx::query::Query<'q, DB, <DB as Database>::Arguments<'q>>;

/// A value a statement binds. Instants and digests go through the dialect, which knows how its
/// database holds them.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    /// Text (a key, session data, a user id).
    Text(&'a str),
    /// Text or `NULL`.
    MaybeText(Option<&'a str>),
    /// A whole number (a `LIMIT`).
    Int(i64),
    /// An instant, as the dialect binds it ([`Dialect::bind_at`]).
    At(OffsetDateTime),
    /// The SHA-256 of session data, as the dialect binds it ([`Dialect::bind_digest`]).
    Digest(&'a [u8; 32]),
}

/// Which failure a database error is, told by the driver's error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The table does not exist (PostgreSQL `42P01`, MySQL 1146).
    MissingTable,
    /// A primary key is taken (PostgreSQL `23505`, MySQL 1062).
    Duplicate,
    /// A row refers to one that is not there (PostgreSQL `23503`, MySQL 1452).
    ForeignKey,
    /// Anything else.
    Other,
}

/// What a server SQL database differs in; implemented by the dialects of `postgres.rs` and
/// `mysql.rs`, unnameable outside the crate.
pub trait Dialect: Clone + std::fmt::Debug + Send + Sync + 'static {
    /// The sqlx database.
    type Db: Driver;
    /// The engine's name, in errors and metrics.
    const ENGINE: &'static str;
    /// The statements' flavor of SQL.
    const FLAVOR: Flavor;
    /// The connection options `url` names, with the dialect's own defaults and `options`'s
    /// statement cache.
    fn connect_options(
        url: &str,
        options: &ServerOptions,
    ) -> Result<<<Self::Db as Database>::Connection as sqlx::Connection>::Options, sqlx::Error>;
    /// Binds an instant as the database holds `expire_date`.
    fn bind_at(q: SqlQuery<'_, Self::Db>, at: OffsetDateTime) -> SqlQuery<'_, Self::Db>;
    /// Binds a digest as the touch statement compares it.
    fn bind_digest<'q>(q: SqlQuery<'q, Self::Db>, digest: &'q [u8; 32]) -> SqlQuery<'q, Self::Db>;
    /// Reads column `i` of `row` as an instant.
    fn read_at(row: &<Self::Db as Database>::Row, i: usize) -> Result<OffsetDateTime, sqlx::Error>;
    /// How many rows a statement matched.
    fn rows_affected(done: &<Self::Db as Database>::QueryResult) -> u64;
    /// Which failure `e` is, by its code.
    fn failure(e: &dyn DatabaseError) -> Failure;
    /// Takes the lock `name` (see [`Table::lock_name`]) for `conn`'s session if no other
    /// session holds it, without waiting: `true` when taken. The lock lasts until
    /// [`unlock`](Self::unlock) or the end of the connection.
    fn try_lock<'c>(
        conn: &'c mut <Self::Db as Database>::Connection,
        name: &'c str,
    ) -> impl Future<Output = Result<bool, sqlx::Error>> + Send + 'c;
    /// Lets go of the lock `name` that `conn`'s session holds.
    fn unlock<'c>(
        conn: &'c mut <Self::Db as Database>::Connection,
        name: &'c str,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send + 'c;
    /// One batch of the sweep of expired sessions that names what it deletes: each key, and
    /// the user the index linked it to ([`Queries::clear_named`](super::Queries)).
    fn clear_named<'a>(
        conn: &'a mut <Self::Db as Database>::Connection,
        q: &'a super::Queries,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<Vec<(String, Option<String>)>, sqlx::Error>> + Send + 'a {
        async move {
            let rows = Self::Db::fetch_all(
                conn,
                Self::Db::query::<Self>(&q.clear_named, [Arg::At(now)]),
            )
            .await?;
            rows.iter()
                .map(|row| Ok((Self::Db::text(row, 0)?, Self::Db::maybe_text(row, 1)?)))
                .collect()
        }
    }
    /// Creates the tables and indexes of `table` unless they exist.
    fn migrate<'a>(
        conn: &'a mut <Self::Db as Database>::Connection,
        table: &'a Table,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send + 'a;
}

/// The sqlx operations the store runs on a pooled connection, written once for every database that has them (the
/// bounds sqlx needs live here, not on each `impl` of the store).
pub trait Driver: Database {
    /// `sql` with `args` bound, instants and digests by the dialect `D`.
    fn query<'q, D: Dialect<Db = Self>>(
        sql: &'q str,
        args: impl IntoIterator<Item = Arg<'q>>,
    ) -> SqlQuery<'q, Self>;
    /// Runs a statement.
    fn execute<'c, 'q: 'c>(
        conn: &'c mut Self::Connection,
        q: SqlQuery<'q, Self>,
    ) -> impl Future<Output = Result<Self::QueryResult, sqlx::Error>> + Send + 'c;
    /// Runs a query for at most one row.
    fn fetch_optional<'c, 'q: 'c>(
        conn: &'c mut Self::Connection,
        q: SqlQuery<'q, Self>,
    ) -> impl Future<Output = Result<Option<Self::Row>, sqlx::Error>> + Send + 'c;
    /// Runs a query for all its rows.
    fn fetch_all<'c, 'q: 'c>(
        conn: &'c mut Self::Connection,
        q: SqlQuery<'q, Self>,
    ) -> impl Future<Output = Result<Vec<Self::Row>, sqlx::Error>> + Send + 'c;
    /// Column `i` as text.
    fn text(row: &Self::Row, i: usize) -> Result<String, sqlx::Error>;
    /// Column `i` as text or `NULL`.
    fn maybe_text(row: &Self::Row, i: usize) -> Result<Option<String>, sqlx::Error>;
    /// Column `i` as a whole number.
    fn int(row: &Self::Row, i: usize) -> Result<i64, sqlx::Error>;
}

impl<DB: Database> Driver for DB
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    fn query<'q, D: Dialect<Db = Self>>(
        sql: &'q str,
        args: impl IntoIterator<Item = Arg<'q>>,
    ) -> SqlQuery<'q, Self> {
        args.into_iter().fold(sqlx::query(sql), |q, arg| match arg {
            Arg::Text(text) => q.bind(text),
            Arg::MaybeText(text) => q.bind(text),
            Arg::Int(n) => q.bind(n),
            Arg::At(at) => D::bind_at(q, at),
            Arg::Digest(digest) => D::bind_digest(q, digest),
        })
    }

    fn execute<'c, 'q: 'c>(
        conn: &'c mut Self::Connection,
        q: SqlQuery<'q, Self>,
    ) -> impl Future<Output = Result<Self::QueryResult, sqlx::Error>> + Send + 'c {
        conn.execute(q)
    }

    fn fetch_optional<'c, 'q: 'c>(
        conn: &'c mut Self::Connection,
        q: SqlQuery<'q, Self>,
    ) -> impl Future<Output = Result<Option<Self::Row>, sqlx::Error>> + Send + 'c {
        conn.fetch_optional(q)
    }

    fn fetch_all<'c, 'q: 'c>(
        conn: &'c mut Self::Connection,
        q: SqlQuery<'q, Self>,
    ) -> impl Future<Output = Result<Vec<Self::Row>, sqlx::Error>> + Send + 'c {
        conn.fetch_all(q)
    }

    fn text(row: &Self::Row, i: usize) -> Result<String, sqlx::Error> {
        row.try_get(i)
    }

    fn maybe_text(row: &Self::Row, i: usize) -> Result<Option<String>, sqlx::Error> {
        row.try_get(i)
    }

    fn int(row: &Self::Row, i: usize) -> Result<i64, sqlx::Error> {
        row.try_get(i)
    }
}
