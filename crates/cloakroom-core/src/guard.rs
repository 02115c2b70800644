//! The breaker and the timeout around every store call, as a decorator: the outermost one of
//! the store the core (and the app, through [`Sessions::store`](crate::Sessions::store)) calls.
//!
//! A call the breaker refuses, or one that fails, is counted in
//! [`ERRORS`](crate::observe::ERRORS) here, where the refusal and the timeout are decided.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::breaker::Breaker;
use crate::decorate::{CallOutcome, Decorator, Operation, StoreCall};
use crate::error::StoreError;
use crate::observe::record_error;

/// The breaker and the time limit of one store's calls.
pub(crate) struct Guard {
    engine: &'static str,
    breaker: Arc<Breaker>,
    after: Duration,
}

impl Guard {
    /// Calls of `engine` go through `breaker` and end after `after`.
    pub(crate) fn new(engine: &'static str, breaker: Arc<Breaker>, after: Duration) -> Self {
        Self {
            engine,
            breaker,
            after,
        }
    }
}

impl Decorator for Guard {
    fn wrap<T: CallOutcome>(&self, _: Operation, call: impl StoreCall<T>) -> impl StoreCall<T> {
        async move {
            let engine = self.engine;
            if let Err(e) = self.breaker.admit(engine) {
                record_error(engine, &e);
                return Err(e);
            }
            let bounded = Bounded {
                fut: call,
                sleep: None,
                after: self.after,
            };
            let result = match bounded.await {
                Some(result) => result,
                None => Err(StoreError::Timeout {
                    engine,
                    after: self.after,
                }),
            };
            // A session too large for its store is the app's problem, not the store's health.
            let healthy = !matches!(
                result,
                Err(StoreError::Timeout { .. }
                    | StoreError::Backend { .. }
                    | StoreError::MissingTable { .. })
            );
            self.breaker.record(healthy);
            if let Err(e) = &result {
                record_error(engine, e);
            }
            result
        }
    }
}

pin_project_lite::pin_project! {
    /// A store call with a time limit whose timer is armed only if the call does not finish at
    /// once: an in-process store never pays for one, a remote one pays once. `None` when the
    /// limit passed.
    struct Bounded<F> {
        #[pin]
        fut: F,
        sleep: Option<Pin<Box<tokio::time::Sleep>>>,
        after: Duration,
    }
}

impl<F: Future> Future for Bounded<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.fut.poll(cx) {
            return Poll::Ready(Some(out));
        }
        let after = *this.after;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
