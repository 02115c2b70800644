//! The lock across app servers ([`Exclusive`]) of the server SQL stores: a lock of the
//! database session (PostgreSQL's advisory lock, MySQL's `GET_LOCK`; see each dialect's
//! `try_lock`) on a pooled connection held for as long as the lock is.

use async_trait::async_trait;

use super::super::driver::Dialect;
use super::super::pool::Conn;
use super::SqlStore;
use crate::error::StoreError;
use crate::exclusive::{Exclusive, LockGuard, Release};

#[async_trait]
impl<D: Dialect> Exclusive for SqlStore<D> {
    async fn try_lock(&self, name: &str) -> Result<Option<LockGuard>, StoreError> {
        let name = self.table.lock_name(name);
        let mut conn = self.pool.get().await.map_err(|e| self.error(e))?;
        let taken = D::try_lock(conn.raw(), &name)
            .await
            .map_err(|e| self.error(e))?;
        if !taken {
            // The connection goes back to the pool holding nothing.
            conn.release();
            return Ok(None);
        }
        Ok(Some(LockGuard::new(SqlLock {
            conn: Some(conn),
            name,
            store: self.clone(),
        })))
    }
}

/// A held lock and the connection whose session holds it.
struct SqlLock<D: Dialect> {
    conn: Option<Conn<D::Db>>,
    name: String,
    store: SqlStore<D>,
}

#[async_trait]
impl<D: Dialect> Release for SqlLock<D> {
    async fn release(mut self: Box<Self>) -> Result<(), StoreError> {
        let Some(mut conn) = self.conn.take() else {
            return Ok(());
        };
        match D::unlock(conn.raw(), &self.name).await {
            // The connection goes back to the pool free of the lock.
            Ok(()) => {
                conn.release();
                Ok(())
            }
            Err(e) => {
                // Closed instead, so that its session's end lets go of the lock.
                conn.discard();
                Err(self.store.error(e))
            }
        }
    }
}

impl<D: Dialect> Drop for SqlLock<D> {
    fn drop(&mut self) {
        // Dropped while held (its task was cancelled): back in the pool the connection would
        // keep the lock for good, so it is closed, and the server ends its session's locks.
        if let Some(conn) = self.conn.take() {
            conn.discard();
        }
    }
}
