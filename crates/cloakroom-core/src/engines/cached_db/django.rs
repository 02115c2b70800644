//! The `cached_db` cache's copy in Django's own layout (the pickled dict), for a store shared
//! with Django.

use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::codec::Codec;
use crate::error::StoreError;
use crate::store::{Created, Record, SessionStore, Updated};

/// The cache of a `cached_db` store shared with Django: it keeps each session as Django's
/// `RedisCache` does (the dict pickled, [`Codec::DjangoCache`]), while the database keeps
/// Django's signed text.
///
/// Writes translate the database's text into the pickle, so Django's cache stays coherent with
/// the table (a copy Django wrote differently is dropped, never left stale). Reads always go
/// to the database: the pickle cannot be turned back into the exact signed text the table
/// holds, which the compare-and-swap on the table needs.
#[derive(Clone)]
pub struct DjangoCacheCopy {
    inner: Arc<dyn SessionStore>,
    codec: Codec,
}

impl std::fmt::Debug for DjangoCacheCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The codec holds the secret key: leave it out.
        f.debug_struct("DjangoCacheCopy")
            .field("inner", &self.inner.engine())
            .finish()
    }
}

impl DjangoCacheCopy {
    /// Pickled copies in `inner` (a Redis store, which keeps the pickle bytes as its values) of
    /// the records `codec` (Django's signed format) encoded.
    pub fn new(inner: Arc<dyn SessionStore>, codec: Codec) -> Self {
        Self { inner, codec }
    }

    fn pickled(&self, stored: &[u8]) -> Option<bytes::Bytes> {
        self.codec
            .decode(stored)
            .ok()
            // Pickling never fails (only `encrypt_data`'s encryption can).
            .and_then(|data| Codec::DjangoCache.encode(&data).ok())
    }

    /// The pickled copy of `record`, same expiry.
    fn copy_of(&self, record: &Record) -> Option<Record> {
        Some(Record {
            data: self.pickled(&record.data)?,
            expires_at: record.expires_at,
        })
    }
}

#[async_trait]
impl SessionStore for DjangoCacheCopy {
    fn engine(&self) -> &'static str {
        self.inner.engine()
    }

    async fn load(&self, _key: &str, _now: OffsetDateTime) -> Result<Option<Record>, StoreError> {
        Ok(None)
    }

    async fn create(&self, key: &str, record: &Record) -> Result<Created, StoreError> {
        match self.copy_of(record) {
            Some(copy) => self.inner.create(key, &copy).await,
            // Not ours to copy; an existing entry under the key is dropped by the caller.
            None => Ok(Created::Taken),
        }
    }

    async fn update(
        &self,
        key: &str,
        expected: &[u8],
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        let (Some(expected), Some(copy)) = (self.pickled(expected), self.copy_of(record)) else {
            return Ok(Updated::Conflict(record.clone()));
        };
        self.inner.update(key, &expected, &copy, now).await
    }

    async fn touch(
        &self,
        key: &str,
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        match self.copy_of(record) {
            Some(copy) => self.inner.touch(key, &copy, now).await,
            None => Ok(Updated::Conflict(record.clone())),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
}
