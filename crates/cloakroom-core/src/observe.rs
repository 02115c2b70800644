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
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use metrics::{Key, Label};

use crate::decorate::{CallOutcome, Decorated, Decorator, Operation, StoreCall};
use crate::error::StoreError;

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

/// A store that records a span and metrics around every call of the store it wraps:
/// `Decorated::new(Observer::new(inner.engine()), inner)`.
///
/// [`Sessions`](crate::Sessions) observes every call it makes, its own and the app's through
/// [`Sessions::store`](crate::Sessions::store); wrap a store yourself only to observe calls
/// made outside the session layer.
pub type Instrumented = Decorated<Observer>;

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

/// The counter of `op`'s calls and its outcomes (the user index's calls have none).
fn counter(op: Operation) -> Option<(&'static str, &'static [&'static str])> {
    const SAVED: &[&str] = &["stored", "conflict", "missing", "error", "cancelled"];
    match op {
        Operation::Load => Some((LOADS, &["hit", "miss", "error", "cancelled"])),
        Operation::Create => Some((CREATES, &["stored", "taken", "error", "cancelled"])),
        Operation::Update | Operation::Touch => Some((SAVES, SAVED)),
        Operation::Delete => Some((DELETES, &["ok", "error", "cancelled"])),
        Operation::Link | Operation::Unlink | Operation::SessionsOf | Operation::Revoke => None,
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
                let outcomes = counter(op).map_or_else(Vec::new, |(metric, outcomes)| {
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
        // A disabled span is skipped below. The level is checked first: with no tracing
        // subscriber set and tracing's `log` feature on (any dependency may turn it on),
        // `debug_span!` still records the span's fields for the `log` crate, about 135
        // instructions per call that nobody reads; `Span::none` costs one load.
        let span = if tracing::level_enabled!(tracing::Level::DEBUG) {
            tracing::debug_span!(
                "session_store",
                engine,
                operation = operation.name(),
                outcome = tracing::field::Empty,
                duration_ms = tracing::field::Empty,
            )
        } else {
            tracing::Span::none()
        };
        Self {
            meters,
            operation,
            span,
            started: Instant::now(),
            done: false,
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

/// The decorator that records the span and metrics of one engine's store calls (see the
/// module docs). The core's store has one inside its breaker and timeout, so a call the
/// timeout abandons is counted as `cancelled`; [`Instrumented`] is one around any store.
pub struct Observer {
    engine: &'static str,
    meters: Meters,
}

impl Observer {
    /// An observer of `engine`'s calls, its metric keys built once.
    pub fn new(engine: &'static str) -> Self {
        Self {
            engine,
            meters: Meters::new(engine),
        }
    }
}

impl Decorator for Observer {
    /// Runs `call`, one `op` of the store, inside its span, and records its duration and
    /// outcome (`cancelled` if it is dropped unfinished).
    fn wrap<T: CallOutcome>(&self, op: Operation, call: impl StoreCall<T>) -> impl StoreCall<T> {
        Observed {
            observer: self,
            op,
            call,
            observed: None,
        }
    }
}

pin_project_lite::pin_project! {
    /// One store call observed: a hand-written future rather than an `async` block, which held
    /// the call twice (captured, then inside the future that ran it in its span) and so made
    /// every layer above it move more (see `guard::Guarded`).
    ///
    /// The span and the clock start at the first poll, as they would in an `async` block: a
    /// call dropped before it ran is not observed at all.
    struct Observed<'o, F> {
        observer: &'o Observer,
        op: Operation,
        #[pin]
        call: F,
        observed: Option<Call<'o>>,
    }
}

impl<T: CallOutcome, F: Future<Output = Result<T, StoreError>>> Future for Observed<'_, F> {
    type Output = Result<T, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let observer = *this.observer;
        let op = *this.op;
        let observed = this
            .observed
            .get_or_insert_with(|| Call::start(&observer.meters, observer.engine, op));
        let result = if observed.span.is_disabled() {
            ready!(this.call.poll(cx))
        } else {
            // As `tracing::Instrument` does: the call runs inside the span at each poll.
            let _entered = observed.span.enter();
            ready!(this.call.poll(cx))
        };
        observed.finish(match &result {
            Ok(done) => done.outcome(),
            Err(_) => "error",
        });
        Poll::Ready(result)
    }
}
