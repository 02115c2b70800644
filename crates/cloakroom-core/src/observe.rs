//! Observability: a tracing span and metrics for every store call.
//!
//! [`Sessions`](crate::Sessions) observes every call it makes to its store, so every load and save of
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

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use metrics::{Key, Label};
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
    users: Option<Arc<dyn UserIndex>>,
    observer: Observer,
}

impl Instrumented {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn SessionStore>) -> Self {
        let observer = Observer::new(inner.engine());
        Self {
            inner,
            users: None,
            observer,
        }
    }

    /// Observes the calls to `users`, `inner`'s index of sessions by user, too.
    #[must_use]
    pub fn with_users(self, users: Option<Arc<dyn UserIndex>>) -> Self {
        Self { users, ..self }
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

/// How often a burst of store failures writes a log line: the first failure at once, then at
/// most one line per window, carrying the count of those not logged. An outage fails every
/// request, and one WARN line each (40,000 in 15 s in a review) buries everything else.
pub const WARN_WINDOW: Duration = Duration::from_secs(10);

/// Lets one log line through per [`WARN_WINDOW`] and counts the others.
pub(crate) struct WarnLimiter {
    /// When the last line went out, and how many were held back since.
    state: Mutex<Option<(Instant, u64)>>,
}

impl WarnLimiter {
    pub(crate) const fn new() -> Self {
        Self {
            state: Mutex::new(None),
        }
    }

    /// `Some(held back since the last line)` when a line may go out now, else `None` (and
    /// this one is counted).
    pub(crate) fn admit(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        match &mut *state {
            Some((last, held)) if now.duration_since(*last) < WARN_WINDOW => {
                *held = held.saturating_add(1);
                None
            }
            Some((last, held)) => {
                let count = std::mem::take(held);
                *last = now;
                Some(count)
            }
            None => {
                *state = Some((now, 0));
                Some(0)
            }
        }
    }
}

/// The one window all store-failure warnings share (see [`warn_store_failure`]).
pub(crate) static STORE_FAILURES: WarnLimiter = WarnLimiter::new();

/// Logs a store failure at WARN (`what` happened, `error` why), rate-limited across the
/// process by [`WARN_WINDOW`]: every store-failure warning of the core and the layer goes
/// through here. The metrics ([`ERRORS`]) still count each failure.
#[doc(hidden)]
pub fn warn_store_failure(engine: &'static str, error: &dyn std::fmt::Display, what: &'static str) {
    match STORE_FAILURES.admit() {
        None => {}
        Some(0) => tracing::warn!(engine, %error, "{what}"),
        Some(held) => tracing::warn!(
            engine,
            %error,
            not_logged = held,
            "{what} ({held} more session store failures since the last such line were not \
             logged; at most one line per {} s)",
            WARN_WINDOW.as_secs()
        ),
    }
}

/// Counts a failed store call of `engine` in [`ERRORS`].
pub fn record_error(engine: &'static str, error: &StoreError) {
    metrics::counter!(ERRORS, "engine" => engine, "kind" => error_kind(error)).increment(1);
}

/// A store operation, as the `operation` label names it.
#[derive(Clone, Copy)]
pub(crate) enum Operation {
    Load,
    Create,
    Update,
    Touch,
    Delete,
    /// The user index's calls: timed, with no outcome counter.
    Link,
    Unlink,
    SessionsOf,
    Revoke,
}

impl Operation {
    const ALL: [Self; 9] = [
        Self::Load,
        Self::Create,
        Self::Update,
        Self::Touch,
        Self::Delete,
        Self::Link,
        Self::Unlink,
        Self::SessionsOf,
        Self::Revoke,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Load => "load",
            Self::Create => "create",
            Self::Update => "update",
            Self::Touch => "touch",
            Self::Delete => "delete",
            Self::Link => "link",
            Self::Unlink => "unlink",
            Self::SessionsOf => "sessions_of",
            Self::Revoke => "revoke",
        }
    }

    /// The counter of this operation's calls and its outcomes (the user index's have none).
    fn counter(self) -> Option<(&'static str, &'static [&'static str])> {
        const SAVED: &[&str] = &["stored", "conflict", "missing", "error", "cancelled"];
        match self {
            Self::Load => Some((LOADS, &["hit", "miss", "error", "cancelled"])),
            Self::Create => Some((CREATES, &["stored", "taken", "error", "cancelled"])),
            Self::Update | Self::Touch => Some((SAVES, SAVED)),
            Self::Delete => Some((DELETES, &["ok", "error", "cancelled"])),
            Self::Link | Self::Unlink | Self::SessionsOf | Self::Revoke => None,
        }
    }
}

/// Where the metrics macros would say they come from.
static METADATA: metrics::Metadata<'static> =
    metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// The metric keys of one engine, labels included, built once: a store call then records
/// through the installed recorder without building (allocating, hashing) a label set, which
/// cost about 1,500 instructions per call, more than an in-process store's load itself.
struct Meters {
    /// Per operation (in [`Operation::ALL`] order): its duration histogram, and its counter
    /// for each outcome.
    operations: Vec<(Key, Vec<(&'static str, Key)>)>,
    conflicts: Key,
}

impl Meters {
    fn new(engine: &'static str) -> Self {
        let operations = Operation::ALL
            .iter()
            .map(|&op| {
                let name = op.name();
                let duration = Key::from_parts(
                    DURATION,
                    vec![Label::new("engine", engine), Label::new("operation", name)],
                );
                let outcomes = op.counter().map_or_else(Vec::new, |(metric, outcomes)| {
                    outcomes
                        .iter()
                        .map(|&outcome| {
                            let mut labels = vec![Label::new("engine", engine)];
                            if metric == SAVES {
                                labels.push(Label::new("kind", name));
                            }
                            labels.push(Label::new("outcome", outcome));
                            (outcome, Key::from_parts(metric, labels))
                        })
                        .collect()
                });
                (duration, outcomes)
            })
            .collect();
        Self {
            operations,
            conflicts: Key::from_parts(CONFLICTS, vec![Label::new("engine", engine)]),
        }
    }

    fn record(&self, op: Operation, outcome: &'static str, elapsed: Duration) {
        let (duration, outcomes) = &self.operations[op as usize];
        metrics::with_recorder(|recorder| {
            recorder
                .register_histogram(duration, &METADATA)
                .record(elapsed.as_secs_f64());
            if let Some((_, key)) = outcomes.iter().find(|(o, _)| *o == outcome) {
                recorder.register_counter(key, &METADATA).increment(1);
            }
            if matches!(op, Operation::Update) && outcome == "conflict" {
                recorder
                    .register_counter(&self.conflicts, &METADATA)
                    .increment(1);
            }
        });
    }
}

/// One store call in flight: its span, and the metrics it records when it ends (or, dropped
/// unfinished, as `cancelled`).
struct Call<'a> {
    meters: &'a Meters,
    operation: Operation,
    span: tracing::Span,
    started: Instant,
    done: bool,
}

impl<'a> Call<'a> {
    fn start(meters: &'a Meters, engine: &'static str, operation: Operation) -> Self {
        // A disabled span (no subscriber wants it: tracing caches that per call site) costs
        // a branch; everything span-related below is skipped for it.
        let span = tracing::debug_span!(
            "session_store",
            engine,
            operation = operation.name(),
            outcome = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        Self {
            meters,
            operation,
            span,
            started: Instant::now(),
            done: false,
        }
    }

    /// Runs the store call inside the span, when there is one.
    async fn run<T>(&self, fut: impl Future<Output = T>) -> T {
        if self.span.is_disabled() {
            fut.await
        } else {
            fut.instrument(self.span.clone()).await
        }
    }

    fn finish(&mut self, outcome: &'static str) {
        self.done = true;
        let elapsed = self.started.elapsed();
        if !self.span.is_disabled() {
            #[allow(clippy::cast_precision_loss)]
            let duration_ms = elapsed.as_micros() as f64 / 1000.0;
            self.span.record("outcome", outcome);
            self.span.record("duration_ms", duration_ms);
            tracing::debug!(parent: &self.span, outcome, duration_ms, "session store call");
        }
        self.meters.record(self.operation, outcome, elapsed);
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.finish("cancelled");
        }
    }
}

/// What a store call's result says, as the `outcome` label names it.
pub(crate) trait Outcome {
    /// The label of a successful call.
    fn outcome(&self) -> &'static str;
}

impl Outcome for () {
    fn outcome(&self) -> &'static str {
        "ok"
    }
}

impl Outcome for bool {
    fn outcome(&self) -> &'static str {
        "ok"
    }
}

impl Outcome for Vec<UserSession> {
    fn outcome(&self) -> &'static str {
        "ok"
    }
}

impl Outcome for Option<Record> {
    fn outcome(&self) -> &'static str {
        if self.is_some() {
            "hit"
        } else {
            "miss"
        }
    }
}

/// Measured as a `load`: a move is the migrating store's business, not another operation.
impl Outcome for Option<(Record, bool)> {
    fn outcome(&self) -> &'static str {
        if self.is_some() {
            "hit"
        } else {
            "miss"
        }
    }
}

impl Outcome for Created {
    fn outcome(&self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::Taken => "taken",
        }
    }
}

impl Outcome for Updated {
    fn outcome(&self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::Conflict(_) => "conflict",
            Self::Missing => "missing",
        }
    }
}

/// Records the span and metrics of one engine's store calls. The core runs its own calls
/// through one directly (no wrapper store: a wrapper costs every call a boxed future);
/// [`Instrumented`] uses one for calls made outside the session layer.
pub(crate) struct Observer {
    engine: &'static str,
    meters: Meters,
}

impl Observer {
    /// An observer of `engine`'s calls, its metric keys built once.
    pub(crate) fn new(engine: &'static str) -> Self {
        Self {
            engine,
            meters: Meters::new(engine),
        }
    }

    /// Runs `fut`, one `operation` of the store, inside its span, and records its duration and
    /// outcome (`cancelled` if it is dropped unfinished).
    pub(crate) async fn observe<T: Outcome>(
        &self,
        operation: Operation,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let mut call = Call::start(&self.meters, self.engine, operation);
        let result = call.run(fut).await;
        call.finish(match &result {
            Ok(done) => done.outcome(),
            Err(_) => "error",
        });
        result
    }
}

#[async_trait]
impl SessionStore for Instrumented {
    fn engine(&self) -> &'static str {
        self.inner.engine()
    }

    async fn load(&self, key: &str, now: OffsetDateTime) -> Result<Option<Record>, StoreError> {
        let load = self.inner.load(key, now);
        self.observer.observe(Operation::Load, load).await
    }

    async fn create(&self, key: &str, record: &Record) -> Result<Created, StoreError> {
        let create = self.inner.create(key, record);
        self.observer.observe(Operation::Create, create).await
    }

    async fn update(
        &self,
        key: &str,
        expected: &[u8],
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        let update = self.inner.update(key, expected, record, now);
        self.observer.observe(Operation::Update, update).await
    }

    async fn touch(
        &self,
        key: &str,
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        let touch = self.inner.touch(key, record, now);
        self.observer.observe(Operation::Touch, touch).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let delete = self.inner.delete(key);
        self.observer.observe(Operation::Delete, delete).await
    }
}

/// The index calls get spans and the [`DURATION`] histogram too (`operation` = `link`,
/// `unlink`, `sessions_of`, `revoke`).
#[async_trait]
impl UserIndex for Instrumented {
    async fn link(&self, entry: &UserSession) -> Result<(), StoreError> {
        let index = user_index(self.users.as_ref(), self.inner.engine())?;
        self.observer
            .observe(Operation::Link, index.link(entry))
            .await
    }

    async fn unlink(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        let index = user_index(self.users.as_ref(), self.inner.engine())?;
        self.observer
            .observe(Operation::Unlink, index.unlink(user_id, id))
            .await
    }

    async fn sessions_of(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<UserSession>, StoreError> {
        let index = user_index(self.users.as_ref(), self.inner.engine())?;
        self.observer
            .observe(Operation::SessionsOf, index.sessions_of(user_id, now))
            .await
    }

    async fn revoke(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        let index = user_index(self.users.as_ref(), self.inner.engine())?;
        self.observer
            .observe(Operation::Revoke, index.revoke(user_id, id))
            .await
    }
}
