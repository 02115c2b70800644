//! # cloakroom-sql
//!
//! cloakroom's `db` engines on Django's session table (`django_session` or any name):
//! SQLite (embedded, on its own connections), PostgreSQL and MySQL/MariaDB, each behind its
//! cargo feature. Apps use them through the `cloakroom` crate (`cloakroom::engines::sqlite`
//! …); this crate exists so that the SQL drivers are compiled only by apps that use them.
// Feature badges on docs.rs (which builds with `--cfg docsrs`, see Cargo.toml).
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

// The core's modules under the names the engines use (`crate::store`, `crate::error` …).
use cloakroom_core::{config, digits, engines, exclusive, store, users};

/// The core's errors under the path the engines use.
mod error {
    pub(crate) use cloakroom_core::{ConfigError, OpenError, StoreError};
}

/// Session data that is not UTF-8 text: Django's `session_data` is a text column, and the
/// text codecs (JSON, Django's signed format) never produce anything else, so only a codec
/// meant for a cache (Django's pickles) can get here.
#[derive(Debug, thiserror::Error)]
#[error(
    "session data is not UTF-8 text, which the session_data column holds; use the json or \
     django data format with a SQL engine"
)]
struct NotText(#[source] std::str::Utf8Error);

/// `data` as the text a SQL engine writes into `session_data`.
///
/// # Errors
/// [`StoreError::Backend`](error::StoreError::Backend) naming `engine` when `data` is not
/// UTF-8 (see [`NotText`]); nothing is written then.
pub(crate) fn text_of<'a>(
    engine: &'static str,
    data: &'a [u8],
) -> Result<&'a str, error::StoreError> {
    std::str::from_utf8(data).map_err(|e| error::StoreError::backend(engine, NotText(e)))
}

#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod sql;
#[cfg(feature = "sqlite")]
pub mod sqlite;

/// Creating the session table is the SQL engines' optional ability (`cloakroom migrate`).
macro_rules! migrate_ability {
    ($($feature:literal => $store:ty),* $(,)?) => {$(
        #[cfg(feature = $feature)]
        #[async_trait::async_trait]
        impl engines::Migrate for $store {
            async fn migrate(&self) -> Result<(), error::StoreError> {
                <$store>::migrate(self).await
            }
        }
    )*};
}

migrate_ability!(
    "sqlite" => sqlite::SqliteStore,
    "postgres" => postgres::PostgresStore,
    "mysql" => mysql::MySqlStore,
);
