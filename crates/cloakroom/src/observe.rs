//! Observability: a tracing span and metrics for every store call.
//!
//! [`Sessions`](crate::Sessions) wraps its store in [`Instrumented`], so every load and save of
//! a request shows up as a `session_store` span (fields `engine`, `operation`, `outcome`,
//! `duration_ms`; never the session key) and moves the metrics below through the [`metrics`]
//! crate. Nothing is recorded until the application installs a metrics recorder (the demo
//! installs the Prometheus one and serves it at `/metrics`).
//!
//! | metric | kind | labels |
//! | --- | --- | --- |
//! | [`LOADS`] | counter | `engine`, `outcome` = `hit`, `miss`, `error`, `cancelled` |
//! | [`SAVES`] | counter | `engine`, `kind` = `update`, `touch`; `outcome` = `stored`, `conflict`, `missing`, `error`, `cancelled` |
//! | [`CREATES`] | counter | `engine`, `outcome` = `stored`, `taken`, `error`, `cancelled` |
//! | [`DELETES`] | counter | `engine`, `outcome` = `ok`, `error`, `cancelled` |
//! | [`CONFLICTS`] | counter | `engine`: saves that found another request's data and merged |
//! | [`ERRORS`] | counter | `engine`, `kind` = `timeout`, `backend`, `missing_table`, `circuit_open`, `too_large`, `no_user_index` |
//! | [`DURATION`] | histogram (seconds) | `engine`, `operation` = `load`, `create`, `update`, `touch`, `delete`, `exists`, and the user index's `link`, `unlink`, `sessions_of`, `revoke` |
//!
//! `cancelled` means the call was abandoned before the store answered: the store timeout fired
//! (the same call is then counted in [`ERRORS`] as `timeout`) or the request went away.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use time::OffsetDateTime;
use tracing::Instrument as _;

use crate::error::StoreError;
use crate::store::{user_index, Created, Record, SessionStore, Updated, UserIndex, UserSession};

/// Counter of session loads.
pub const LOADS: &str = "cloakroom_session_loads_total";
/// Counter of saves of an existing session (a data update or an expiry-only touch).
pub const SAVES: &str = "cloakroom_session_saves_total";
/// Counter of new sessions stored.
pub const CREATES: &str = "cloakroom_session_creates_total";
/// Counter of sessions deleted.
pub const DELETES: &str = "cloakroom_session_deletes_total";
/// Counter of saves that met another request's data (the core then merges and retries).
pub const CONFLICTS: &str = "cloakroom_session_conflicts_total";
/// Counter of failed store calls, by kind.
pub const ERRORS: &str = "cloakroom_store_errors_total";
/// Histogram of store call latency in seconds, by operation.
pub const DURATION: &str = "cloakroom_store_duration_seconds";

/// A store that records a span and metrics around every call of the store it wraps.
///
/// [`Sessions`](crate::Sessions) applies it to every store; wrap a store yourself only to
/// observe calls made outside the session layer.
pub struct Instrumented {
    inner: Arc<dyn SessionStore>,
}

impl Instrumented {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn SessionStore>) -> Self {
        Self { inner }
    }
}

/// The label value of a store error's kind in [`ERRORS`].
pub fn error_kind(error: &StoreError) -> &'static str {
    match error {
        StoreError::Timeout { .. } => "timeout",
        StoreError::MissingTable { .. } => "missing_table",
        StoreError::Backend { .. } => "backend",
        StoreError::CircuitOpen { .. } => "circuit_open",
        StoreError::TooLarge { .. } => "too_large",
        StoreError::NoUserIndex { .. } => "no_user_index",
    }
}

/// Counts a failed store call of `engine` in [`ERRORS`].
pub fn record_error(engine: &'static str, error: &StoreError) {
    metrics::counter!(ERRORS, "engine" => engine, "kind" => error_kind(error)).increment(1);
}

/// One store call in flight: its span, and the metrics it records when it ends (or, dropped
/// unfinished, as `cancelled`).
struct Call {
    engine: &'static str,
    operation: &'static str,
    span: tracing::Span,
    started: Instant,
    done: bool,
}

impl Call {
    fn start(engine: &'static str, operation: &'static str) -> Self {
        let span = tracing::debug_span!(
            "session_store",
            engine,
            operation,
            outcome = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        Self {
            engine,
            operation,
            span,
            started: Instant::now(),
            done: false,
        }
    }

    fn finish(&mut self, outcome: &'static str) {
        self.done = true;
        let elapsed = self.started.elapsed();
        let (engine, operation) = (self.engine, self.operation);
        #[allow(clippy::cast_precision_loss)]
        let duration_ms = elapsed.as_micros() as f64 / 1000.0;
        self.span.record("outcome", outcome);
        self.span.record("duration_ms", duration_ms);
        tracing::debug!(parent: &self.span, outcome, duration_ms, "session store call");
        metrics::histogram!(DURATION, "engine" => engine, "operation" => operation)
            .record(elapsed.as_secs_f64());
        match operation {
            "load" => metrics::counter!(LOADS, "engine" => engine, "outcome" => outcome),
            "update" | "touch" => metrics::counter!(
                SAVES, "engine" => engine, "kind" => operation, "outcome" => outcome
            ),
            "create" => metrics::counter!(CREATES, "engine" => engine, "outcome" => outcome),
            "delete" => metrics::counter!(DELETES, "engine" => engine, "outcome" => outcome),
            _ => return,
        }
        .increment(1);
        if operation == "update" && outcome == "conflict" {
            metrics::counter!(CONFLICTS, "engine" => engine).increment(1);
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.done {
            self.finish("cancelled");
        }
    }
}

fn updated_outcome(result: &Result<Updated, StoreError>) -> &'static str {
    match result {
        Ok(Updated::Stored) => "stored",
        Ok(Updated::Conflict(_)) => "conflict",
        Ok(Updated::Missing) => "missing",
        Err(_) => "error",
    }
}

#[async_trait]
impl SessionStore for Instrumented {
    fn engine(&self) -> &'static str {
        self.inner.engine()
    }

    async fn load(&self, key: &str, now: OffsetDateTime) -> Result<Option<Record>, StoreError> {
        Ok(self.load_moved(key, now).await?.map(|(record, _)| record))
    }

    /// Measured as a `load`: a move is the migrating store's business, not another operation.
    async fn load_moved(
        &self,
        key: &str,
        now: OffsetDateTime,
    ) -> Result<Option<(Record, bool)>, StoreError> {
        let mut call = Call::start(self.engine(), "load");
        let result = self
            .inner
            .load_moved(key, now)
            .instrument(call.span.clone())
            .await;
        call.finish(match &result {
            Ok(Some(_)) => "hit",
            Ok(None) => "miss",
            Err(_) => "error",
        });
        result
    }

    async fn create(&self, key: &str, record: &Record) -> Result<Created, StoreError> {
        let mut call = Call::start(self.engine(), "create");
        let result = self
            .inner
            .create(key, record)
            .instrument(call.span.clone())
            .await;
        call.finish(match &result {
            Ok(Created::Stored) => "stored",
            Ok(Created::Taken) => "taken",
            Err(_) => "error",
        });
        result
    }

    async fn update(
        &self,
        key: &str,
        expected: &str,
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        let mut call = Call::start(self.engine(), "update");
        let result = self
            .inner
            .update(key, expected, record, now)
            .instrument(call.span.clone())
            .await;
        call.finish(updated_outcome(&result));
        result
    }

    async fn touch(
        &self,
        key: &str,
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        let mut call = Call::start(self.engine(), "touch");
        let result = self
            .inner
            .touch(key, record, now)
            .instrument(call.span.clone())
            .await;
        call.finish(updated_outcome(&result));
        result
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let mut call = Call::start(self.engine(), "delete");
        let result = self.inner.delete(key).instrument(call.span.clone()).await;
        call.finish(if result.is_ok() { "ok" } else { "error" });
        result
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let mut call = Call::start(self.engine(), "exists");
        let result = self.inner.exists(key).instrument(call.span.clone()).await;
        call.finish(if result.is_ok() { "ok" } else { "error" });
        result
    }

    fn cookie_value<'a>(
        &self,
        key: &'a str,
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Cow<'a, str>, StoreError> {
        self.inner.cookie_value(key, record, now)
    }

    fn keeps_data_in_cookie(&self) -> bool {
        self.inner.keeps_data_in_cookie()
    }

    fn users(&self) -> Option<&dyn UserIndex> {
        self.inner.users().map(|_| self as &dyn UserIndex)
    }
}

impl Instrumented {
    /// Runs one call of the user index inside its span, recording its duration and outcome.
    async fn indexed<T>(
        &self,
        operation: &'static str,
        fut: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let mut call = Call::start(self.engine(), operation);
        let result = fut.instrument(call.span.clone()).await;
        call.finish(if result.is_ok() { "ok" } else { "error" });
        result
    }
}

/// The index calls get spans and the [`DURATION`] histogram too (`operation` = `link`,
/// `unlink`, `sessions_of`, `revoke`).
#[async_trait]
impl UserIndex for Instrumented {
    async fn link(&self, entry: &UserSession) -> Result<(), StoreError> {
        let index = user_index(&*self.inner)?;
        self.indexed("link", index.link(entry)).await
    }

    async fn unlink(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        let index = user_index(&*self.inner)?;
        self.indexed("unlink", index.unlink(user_id, id)).await
    }

    async fn sessions_of(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<UserSession>, StoreError> {
        let index = user_index(&*self.inner)?;
        self.indexed("sessions_of", index.sessions_of(user_id, now))
            .await
    }

    async fn revoke(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        let index = user_index(&*self.inner)?;
        self.indexed("revoke", index.revoke(user_id, id)).await
    }
}
