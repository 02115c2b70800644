//! Clearing expired sessions and walking all of them (`clearsessions`, `copy`, `stats`): the
//! SQL store's optional abilities, beside the request path in the parent module.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::super::driver::{Arg, Dialect, Driver as _};
use super::super::{clear_in_batches, scan_batch, scan_limit};
use super::SqlStore;
use crate::error::StoreError;
use crate::store::{Batch, ClearExpired, ClearedSession, Counts, Scan};

#[async_trait]
impl<D: Dialect> ClearExpired for SqlStore<D> {
    async fn clear_expired(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        clear_in_batches(|| self.clear_expired_batch(now)).await
    }

    async fn clear_expired_batch(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        self.run(&self.q.clear, [Arg::At(now)])
            .await
            .map_err(|e| self.error(e))
    }

    async fn clear_expired_named(
        &self,
        now: OffsetDateTime,
    ) -> Result<Option<Vec<ClearedSession>>, StoreError> {
        let mut conn = self.pool.get().await.map_err(|e| self.error(e))?;
        let gone = D::clear_named(conn.raw(), &self.q, now)
            .await
            .map_err(|e| self.error(e))?;
        conn.release();
        let gone = gone
            .into_iter()
            .map(|(id, user_id)| ClearedSession { id, user_id })
            .collect();
        Ok(Some(gone))
    }
}

#[async_trait]
impl<D: Dialect> Scan for SqlStore<D> {
    async fn scan(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: OffsetDateTime,
    ) -> Result<Batch, StoreError> {
        let limit = scan_limit(limit);
        let args = [
            Arg::Text(cursor.unwrap_or("")),
            Arg::At(now),
            Arg::Int(limit),
        ];
        let rows = self
            .all(&self.q.scan, args)
            .await
            .map_err(|e| self.error(e))?;
        scan_batch(&rows, limit, |row| {
            let key = D::Db::text(row, 2).map_err(|e| self.error(e))?;
            Ok((key, self.record(row, 0)?))
        })
    }

    async fn count(&self, now: OffsetDateTime) -> Result<Counts, StoreError> {
        let row = self
            .one(&self.q.count_both, [Arg::At(now), Arg::At(now)])
            .await?;
        let count = |i| D::Db::int(&row, i).map_err(|e| self.error(e));
        Ok(Counts {
            live: u64::try_from(count(0)?).unwrap_or(0),
            expired: u64::try_from(count(1)?).unwrap_or(0),
        })
    }
}

impl<D: Dialect> SqlStore<D> {
    /// Whether any record (live or expired) holds `key`: for tests and tools that look at
    /// the store itself (the core never asks).
    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let row = self
            .optional(&self.q.exists, [Arg::Text(key)])
            .await
            .map_err(|e| self.error(e))?;
        Ok(row.is_some())
    }
}
