//! What the core does when the store is slow or down: the bound on each call, the circuit
//! breaker, the outage policy, and how long an exclusive route waits (see `docs/reliability.md`).

use std::time::Duration;

use serde::Deserialize;

use crate::error::ConfigError;

/// What a request gets when the store fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnStoreError {
    /// Answer 503 with `Retry-After` and a clear body (the default).
    #[default]
    FailClosed,
    /// Go on as an anonymous visitor with an empty session that is not saved.
    FailOpen,
}

/// Timeouts, the circuit breaker and the outage policy: how the core treats a store that is
/// slow or down. None of them is a Django setting.
///
/// `Debug` is derived: none of these is secret, and a derived `Debug` cannot leave a field out.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ResilienceSettings {
    /// The bound on every store call, in milliseconds.
    pub store_timeout_ms: u64,
    /// What a request gets when the store fails.
    pub on_store_error: OnStoreError,
    /// How long a request on an exclusive route (`ExclusiveLayer` in the `cloakroom` crate) waits, in
    /// milliseconds, for the same visitor's other exclusive requests before it fails with
    /// [`Error::ExclusiveTimeout`](crate::Error::ExclusiveTimeout). Other routes never wait.
    pub lock_timeout_ms: u64,
    /// After this many store failures in a row the circuit breaker opens: the store is not
    /// called for `breaker_cooldown_ms`, and requests fail fast under the store-error policy.
    pub breaker_threshold: u32,
    /// How long an open circuit breaker waits before letting one trial call through.
    pub breaker_cooldown_ms: u64,
}

impl Default for ResilienceSettings {
    fn default() -> Self {
        Self {
            store_timeout_ms: 3_000,
            on_store_error: OnStoreError::FailClosed,
            lock_timeout_ms: 10_000,
            breaker_threshold: 5,
            breaker_cooldown_ms: 1_000,
        }
    }
}

impl ResilienceSettings {
    /// The bound on every store call.
    pub fn store_timeout(&self) -> Duration {
        Duration::from_millis(self.store_timeout_ms)
    }

    /// Checks these settings on their own, naming the setting to change.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for the first setting found wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.store_timeout_ms == 0 {
            return Err(ConfigError::Invalid {
                setting: "store_timeout_ms",
                reason: "must be above 0 (the default is 3000, 3 seconds)".into(),
            });
        }
        Ok(())
    }
}
