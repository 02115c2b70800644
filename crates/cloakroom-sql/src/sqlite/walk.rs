//! The SQLite store's walks over the whole table, all on a blocking thread: clearing expired
//! sessions in batches (`clearsessions`, the scheduled cleanup), scanning and counting (`copy`,
//! `stats`), and the `exists` check tools use.

use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{django_datetime, record, SqliteStore};
use crate::error::StoreError;
use crate::sql::{clear_in_batches, scan_batch, scan_limit};
use crate::store::{Batch, ClearExpired, ClearedSession, Counts, Scan};

#[async_trait]
impl ClearExpired for SqliteStore {
    async fn clear_expired(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        clear_in_batches(|| self.clear_expired_batch(now)).await
    }

    async fn clear_expired_batch(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let (q, now) = (Arc::clone(&self.q), django_datetime(now));
        let done = self
            .conns
            .off_runtime(true, move |c| c.prepare_cached(&q.clear)?.execute([&now]))
            .await?;
        Ok(self.check(done, false).await? as u64)
    }

    /// Picks the batch with its users and deletes it, in one transaction on the writer.
    /// Not `DELETE … RETURNING`: SQLite evaluates `RETURNING` after the `ON DELETE CASCADE`
    /// has taken the index entry, so the user would always be `NULL`.
    async fn clear_expired_named(
        &self,
        now: OffsetDateTime,
    ) -> Result<Option<Vec<ClearedSession>>, StoreError> {
        let (q, now) = (Arc::clone(&self.q), django_datetime(now));
        let done = self
            .conns
            .off_runtime(true, move |c| {
                let tx = rusqlite::Transaction::new_unchecked(
                    c,
                    rusqlite::TransactionBehavior::Immediate,
                )?;
                let picked = tx
                    .prepare_cached(&q.clear_named)?
                    .query_map([&now], |row| {
                        Ok(ClearedSession {
                            id: row.get(0)?,
                            user_id: row.get(1)?,
                        })
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                {
                    let mut delete = tx.prepare_cached(&q.delete)?;
                    for session in &picked {
                        delete.execute([&session.id])?;
                    }
                }
                tx.commit()?;
                Ok(picked)
            })
            .await?;
        Ok(Some(self.check(done, true).await?))
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
        let limit = scan_limit(limit);
        let (q, now) = (Arc::clone(&self.q), django_datetime(now));
        let cursor = cursor.unwrap_or("").to_owned();
        let rows = self
            .conns
            .off_runtime(false, move |c| {
                let mut statement = c.prepare_cached(&q.scan)?;
                let rows = statement.query_map((&cursor, &now, limit), |row| {
                    Ok((
                        row.get::<_, String>(2)?,
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                    ))
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        let rows = self.check(rows, false).await?;
        scan_batch(&rows, limit, |(key, data, expire)| {
            Ok((key.clone(), record(data.clone(), expire)?))
        })
    }

    async fn count(&self, now: OffsetDateTime) -> Result<Counts, StoreError> {
        let (q, now) = (Arc::clone(&self.q), django_datetime(now));
        let counts = self
            .conns
            .off_runtime(false, move |c| {
                c.prepare_cached(&q.count_both)?
                    .query_row([&now, &now], |row| {
                        Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
                    })
            })
            .await?;
        let (live, expired) = self.check(counts, false).await?;
        Ok(Counts {
            live: u64::try_from(live).unwrap_or(0),
            expired: u64::try_from(expired).unwrap_or(0),
        })
    }
}

impl SqliteStore {
    /// Whether any record (live or expired) holds `key`: for tests and tools that look at
    /// the store itself (the core never asks).
    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let (q, key) = (Arc::clone(&self.q), key.to_owned());
        let found = self
            .conns
            .read(move |c| c.prepare_cached(&q.exists)?.exists([&key]))
            .await?;
        self.check(found, false).await
    }
}
