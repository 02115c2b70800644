//! Typed errors: what went wrong, with the source kept, and a message that names the fix.

use std::time::Duration;

/// A boxed error from a driver or the operating system, kept as the source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failure of a store: the session could not be loaded, saved or deleted.
///
/// The application can handle it (the layer turns it into a 503 by default); it never means a
/// session was silently lost.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store did not answer within the configured timeout.
    #[error("the {engine} session store did not answer within {after:?}; check that it is running, or raise the `store_timeout_ms` setting (`--store-timeout-ms`, `CLOAKROOM_STORE_TIMEOUT_MS`)")]
    Timeout {
        /// The engine that timed out.
        engine: &'static str,
        /// The configured bound.
        after: Duration,
    },
    /// A table of the store (the session table, or the user index beside it) does not exist
    /// yet: the database was not migrated, or was migrated by an older release or by Django.
    #[error("the table `{table}` does not exist; create the session tables with `cloakroom migrate --database-url URL` (add `--table NAME` when the session table is not the default)")]
    MissingTable {
        /// The table that was looked for.
        table: String,
    },
    /// The store could not be reached or failed while answering.
    #[error("the {engine} session store failed: {source}")]
    Backend {
        /// The engine that failed.
        engine: &'static str,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
    /// A recent run of failures opened the circuit breaker: the store is not called for a while.
    #[error("the {engine} session store is failing; calls are paused for {retry_after:?} (circuit breaker open)")]
    CircuitOpen {
        /// The engine whose circuit is open.
        engine: &'static str,
        /// How long until the next attempt.
        retry_after: Duration,
    },
    /// The session would not fit where it must go (a cookie over 4 KB, for one).
    #[error("the session is too large for the {engine} store: {detail}")]
    TooLarge {
        /// The engine that refused it.
        engine: &'static str,
        /// What the limit is and how far over it the session is.
        detail: String,
    },
    /// The store keeps no index of sessions by user, so they cannot be listed or revoked.
    #[error("the {engine} session store keeps no index of sessions by user (signed cookies live in browsers); use a server-side engine (db, cache, cached_db, file) to list or revoke a user's sessions")]
    NoUserIndex {
        /// The engine without an index.
        engine: &'static str,
    },
}

impl StoreError {
    /// Wraps a driver error as a backend failure of `engine`.
    pub fn backend(engine: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Backend {
            engine,
            source: source.into(),
        }
    }

    /// How long a client should wait before retrying, for a `Retry-After` header.
    pub fn retry_after(&self) -> Duration {
        match self {
            Self::CircuitOpen { retry_after, .. } => *retry_after,
            _ => Duration::from_secs(1),
        }
    }
}

/// What can go wrong when a handler uses its session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed; see the source.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored value does not have the type the handler asked for.
    #[error("session value `{key}` does not have the requested type: {source}")]
    Type {
        /// The session key (the dictionary key, never the session id).
        key: String,
        /// serde's explanation.
        #[source]
        source: serde_json::Error,
    },
    /// A value could not be turned into JSON (a map with non-string keys, for one).
    #[error("session value `{key}` cannot be stored as JSON: {source}")]
    Encode {
        /// The session key.
        key: String,
        /// serde's explanation.
        #[source]
        source: serde_json::Error,
    },
    /// Another request deleted this session (a logout in another tab) while this one ran.
    ///
    /// As Django's `SessionInterrupted`, the layer answers 400 rather than resurrect it.
    #[error("the session was deleted by another request while this one ran (for example a logout in another tab); sign in again")]
    Interrupted,
    /// The request came with a session key that a login (`cycle_key`) replaced, inside the
    /// `rotation_grace` window: the old key is read-only, so this request's changes were not
    /// saved (neither under the old key nor in the new session).
    ///
    /// The layer answers 409. A browser that made the login holds the new cookie by now and
    /// can simply retry.
    #[error("the session key this request carried was replaced by a login while it ran; the old key is read-only during `rotation_grace`, so nothing was saved; retry the request with the new session cookie")]
    Rotated,
    /// The session, encoded, is over `max_session_bytes`: nothing was written, and the stored
    /// session (if any) stays as it was. The layer answers 413.
    #[error("the session is {size} bytes encoded, over the limit of {limit} bytes (setting `max_session_bytes`); keep large data out of the session (store it elsewhere and keep its id), or raise `max_session_bytes`")]
    TooLarge {
        /// The encoded session's size in bytes.
        size: usize,
        /// The `max_session_bytes` in force.
        limit: usize,
    },
    /// Another request kept changing the session and this one's changes could not be merged
    /// within the retry budget.
    #[error("the session changed under this request {attempts} times in a row; retry the request")]
    Contended {
        /// How many times the save was retried.
        attempts: u32,
    },
    /// An exclusive route (`ExclusiveLayer` in the `cloakroom` crate) waited its whole bound for the same
    /// visitor's other exclusive requests to finish.
    #[error("another exclusive request of this session ran for longer than this one may wait ({waited:?}); retry the request, or raise the route's wait (`ExclusiveLayer::with_wait`)")]
    ExclusiveTimeout {
        /// How long it waited.
        waited: Duration,
    },
    /// The session was already saved (the response head went out) when the handler changed
    /// it: a handler that keeps the session inside a streaming body can still read it, but
    /// its writes would be lost, so they fail.
    #[error("the session was already saved when the response started; change it before returning the response (a streaming body can read the session, not write it)")]
    AlreadySaved,
    /// [`Session::save`](crate::Session::save) was called on a session whose load failed
    /// under the fail-open policy: the request runs with a stand-in that is never stored.
    #[error("the session store failed when this request loaded the session (fail-open), so the session cannot be saved; retry once the store answers")]
    Unsaved,
    /// The operating system could not supply randomness for a new key.
    #[error("no randomness for a new session key: {0}")]
    Random(#[from] getrandom::Error),
}

/// A setting that cannot be used, named so the message says which one to fix.
///
/// Its own type, apart from [`StoreError`]: a configuration problem is the operator's to fix
/// before the app starts, never an outage to retry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A setting has a value that cannot work.
    #[error("setting `{setting}`: {reason}")]
    Invalid {
        /// The setting's name, as in the TOML file.
        setting: &'static str,
        /// What is wrong and what would work.
        reason: String,
    },
    /// A settings file could not be read, is not TOML, names a setting that does not exist or
    /// gives one a value of the wrong type.
    #[error("config file {path}: {source}")]
    File {
        /// The file (`<toml>` for text given directly).
        path: String,
        /// What went wrong, from the operating system or the TOML reader.
        #[source]
        source: FileError,
    },
    /// A setting's value was refused by the library that reads it (a database URL the driver
    /// cannot parse, a Redis URL its client cannot use).
    #[error("setting `{setting}`: {source}")]
    Rejected {
        /// The setting's name, as in the TOML file.
        setting: &'static str,
        /// The driver's explanation.
        #[source]
        source: BoxError,
    },
    /// An engine URL (`cloakroom copy --from`, a live migration's source) names no engine.
    #[error("`{url}`: {reason}")]
    Url {
        /// The URL, its credentials redacted.
        url: String,
        /// What is wrong and what would work.
        reason: &'static str,
    },
}

/// Why a store could not be opened: the one error type of every engine constructor and of
/// `cloakroom::engines::open`.
///
/// The two cases want different fixes: a [`Config`](Self::Config) problem is the operator's
/// (change the setting it names), a [`Store`](Self::Store) failure is the server's (start it,
/// or retry).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The settings (or constructor arguments) cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not be reached or refused to open.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a settings file could not be used: the source of [`ConfigError::File`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The file could not be read.
    #[error("cannot read it ({0}); check the path and its permissions")]
    Read(#[source] std::io::Error),
    /// The text is not TOML, or not settings: an unknown name or a value of the wrong type.
    /// The source is the TOML reader's error (a `toml::de::Error`), boxed so that the TOML
    /// crate's releases are not ours.
    #[error("{0}")]
    Toml(#[source] BoxError),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hint once named `store_timeout`, a setting no file or flag knows.
    #[test]
    fn timeout_names_the_setting_to_raise() {
        let error = StoreError::Timeout {
            engine: "redis",
            after: std::time::Duration::from_millis(300),
        };
        let text = error.to_string();
        assert!(text.contains("`store_timeout_ms`"), "{text}");
        assert!(text.contains("--store-timeout-ms"), "{text}");
    }
}
