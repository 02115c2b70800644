//! Scanning for engines that list all their sessions at once (a folder, the in-process cache):
//! each implements [`ListAll`], and [`Scan`] follows, sorted by key with the key as the cursor.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::error::StoreError;
use crate::store::{Batch, Counts, Record, Scan};

/// An engine that can list every session it holds, live or expired, in one go.
#[async_trait]
pub(crate) trait ListAll: Send + Sync {
    /// Every session's key and record, live or expired.
    async fn all(&self) -> Result<Vec<(String, Record)>, StoreError>;

    /// How many records are live and how many expired at `now`. The default lists them all;
    /// an engine that can count without copying the data overrides it.
    async fn counts(&self, now: OffsetDateTime) -> Result<Counts, StoreError> {
        let all = self.all().await?;
        let live = all.iter().filter(|(_, r)| r.expires_at > now).count();
        Ok(Counts {
            live: live as u64,
            expired: (all.len() - live) as u64,
        })
    }
}

#[async_trait]
impl<T: ListAll> Scan for T {
    async fn scan(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: OffsetDateTime,
    ) -> Result<Batch, StoreError> {
        let mut live = self.all().await?;
        live.retain(|(_, record)| record.expires_at > now);
        Ok(batch_after(live, cursor, limit))
    }

    async fn count(&self, now: OffsetDateTime) -> Result<Counts, StoreError> {
        self.counts(now).await
    }
}

/// The batch of up to `limit` sessions with keys after `cursor`: sorted by key, so the key is
/// the cursor.
fn batch_after(mut all: Vec<(String, Record)>, cursor: Option<&str>, limit: usize) -> Batch {
    all.retain(|(key, _)| cursor.is_none_or(|after| key.as_str() > after));
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let more = all.len() > limit.max(1);
    all.truncate(limit.max(1));
    let next = if more {
        all.last().map(|(key, _)| key.clone())
    } else {
        None
    };
    Batch {
        sessions: all,
        next,
    }
}
