//! The SQLite store's index entries ([`IndexEntries`]); the rules of the index are the core's
//! (`cloakroom_core::users`).

use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;

use super::datetime::{django_datetime, parse_django_datetime};
use super::SqliteStore;
use crate::error::StoreError;
use crate::sql::Queries;
use crate::store::UserSession;
use crate::users::{IndexEntries, IndexEntry};

/// The entries in `<table>_user` (see [`Table::user_table`](crate::sql::Table::user_table)),
/// kept as the server engines' (`SqlStore`'s) are, by the same statements: the connections
/// turn SQLite's foreign keys on, so deleting a session deletes its entry.
#[async_trait]
impl IndexEntries for SqliteStore {
    async fn put(&self, entry: &UserSession) -> Result<(), StoreError> {
        let q = Arc::clone(&self.q);
        let (id, user) = (entry.id.clone(), entry.user_id.clone());
        let (agent, ip) = (entry.user_agent.clone(), entry.ip.clone());
        let [created, seen, expires] =
            [entry.created_at, entry.last_seen, entry.expires_at].map(django_datetime);
        let done = self
            .conns
            .write(move |c| {
                let args = (&id, &user, &created, &seen, &expires, &agent, &ip, &id);
                c.prepare_cached(&q.link)?.execute(args)
            })
            .await?;
        match done {
            // The session was deleted meanwhile: it is simply not linked.
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
            {
                Ok(())
            }
            done => self.check(done, true).await.map(drop),
        }
    }

    async fn remove(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        self.write_entry(|q| &q.unlink, user_id, id).await
    }

    async fn entries(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        let (q, user, now) = (
            Arc::clone(&self.q),
            user_id.to_owned(),
            django_datetime(now),
        );
        let found = self
            .conns
            .read(move |c| {
                let mut statement = c.prepare_cached(&q.sessions_of)?;
                let rows = statement.query_map([&user, &now], |row| {
                    Ok(IndexEntry::Found(UserSession {
                        id: row.get(0)?,
                        user_id: row.get(1)?,
                        created_at: read_at(row, 2)?,
                        last_seen: read_at(row, 3)?,
                        expires_at: read_at(row, 4)?,
                        user_agent: row.get(5)?,
                        ip: row.get(6)?,
                    }))
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        self.check(found, true).await
    }

    async fn holds(&self, user_id: &str, id: &str) -> Result<bool, StoreError> {
        let (q, user, id) = (Arc::clone(&self.q), user_id.to_owned(), id.to_owned());
        let found = self
            .conns
            .read(move |c| c.prepare_cached(&q.holds)?.exists([&user, &id]))
            .await?;
        self.check(found, true).await
    }

    async fn delete_held(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        self.write_entry(|q| &q.revoke, user_id, id).await
    }
}

impl SqliteStore {
    /// Runs the index statement `pick` names, bound to a user and a session id.
    async fn write_entry(
        &self,
        pick: fn(&Queries) -> &String,
        user_id: &str,
        id: &str,
    ) -> Result<(), StoreError> {
        let (q, user, id) = (Arc::clone(&self.q), user_id.to_owned(), id.to_owned());
        let done = self
            .conns
            .write(move |c| c.prepare_cached(pick(&q))?.execute([&user, &id]))
            .await?;
        self.check(done, true).await.map(drop)
    }
}

/// Reads column `i` as a Django datetime.
fn read_at(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<OffsetDateTime> {
    let text: String = row.get(i)?;
    parse_django_datetime(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("unreadable datetime `{text}`").into(),
        )
    })
}
