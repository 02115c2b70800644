//! # cloakroom-sql
//!
//! cloakroom's `db` engines on Django's session table (`django_session` or any name):
//! SQLite (embedded, on its own connections), PostgreSQL and MySQL/MariaDB, each behind its
//! cargo feature. Apps use them through the `cloakroom` crate (`cloakroom::engines::sqlite`
//! …); this crate exists so that the SQL drivers are compiled only by apps that use them.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

// The core's modules under the names the engines use (`crate::store`, `crate::error` …).
use cloakroom_core::{config, digits, engines, store};

/// The core's errors under the path the engines use.
mod error {
    pub(crate) use cloakroom_core::{ConfigError, OpenError, StoreError};
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
