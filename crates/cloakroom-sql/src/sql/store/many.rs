//! Many sessions created in one statement: what moving a whole store (`cloakroom copy`) needs.
//! One `INSERT` per session cost a round trip each (about 330 sessions a second into
//! PostgreSQL, issue 17); one multi-row `INSERT` per batch costs one round trip per batch.

use async_trait::async_trait;

use super::super::driver::{Arg, Dialect, Failure};
use super::super::Queries;
use super::SqlStore;
use crate::error::StoreError;
use crate::store::{Created, Record, SessionStore as _};

/// The most sessions one statement inserts: 3 parameters each stays far under PostgreSQL's
/// 65,535 and MySQL's limits, and a statement stays a few hundred KB for ordinary sessions.
const ROWS_PER_STATEMENT: usize = 500;

/// Creates many sessions at once, for bulk moves between stores; an optional ability beside
/// the store contract, implemented by the server SQL stores.
#[async_trait]
pub trait CreateMany: Send + Sync {
    /// Creates each `(key, record)` whose key no row holds, returning each one's outcome in
    /// order. As [`SessionStore::create`](crate::store::SessionStore::create), it never
    /// overwrites: a key already taken (by a live or an expired row) is [`Created::Taken`]
    /// and its row is left as it was.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails; sessions of earlier statements stay created.
    async fn create_many(&self, sessions: &[(String, Record)]) -> Result<Vec<Created>, StoreError>;
}

#[async_trait]
impl<D: Dialect> CreateMany for SqlStore<D> {
    async fn create_many(&self, sessions: &[(String, Record)]) -> Result<Vec<Created>, StoreError> {
        let mut outcomes = Vec::with_capacity(sessions.len());
        for chunk in sessions.chunks(ROWS_PER_STATEMENT) {
            let sql = Queries::create_rows(&self.table, D::FLAVOR, chunk.len());
            let mut args = Vec::with_capacity(3 * chunk.len());
            for (key, record) in chunk {
                args.push(Arg::Text(key));
                args.push(Arg::Text(crate::text_of(D::ENGINE, &record.data)?));
                args.push(Arg::At(record.expires_at));
            }
            match self.run(&sql, args).await {
                Ok(_) => outcomes.extend(chunk.iter().map(|_| Created::Stored)),
                // One statement is atomic: a taken key undid the whole of it, so the chunk is
                // created one by one to learn which keys were taken.
                Err(sqlx::Error::Database(e)) if D::failure(e.as_ref()) == Failure::Duplicate => {
                    for (key, record) in chunk {
                        outcomes.push(self.create(key, record).await?);
                    }
                }
                Err(e) => return Err(self.error(e)),
            }
        }
        Ok(outcomes)
    }
}
