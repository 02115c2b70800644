//! # cloakroom-redis
//!
//! cloakroom's `cache` engine on Redis, Valkey and Redis Cluster: sessions as keys with TTLs,
//! compare-and-swap saves in Lua, the user index in sorted sets, and Django's cache-backend
//! layout so that a Django app can share the store. Apps use it through the `cloakroom` crate
//! (`cloakroom::engines::redis`, feature `redis`).
// Feature badges on docs.rs (which builds with `--cfg docsrs`, see Cargo.toml).
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

// The core's modules under the names the engine uses (`crate::store`, `crate::error` …).
use cloakroom_core::{config, exclusive, store, users};

/// The core's errors under the path the engines use.
mod error {
    pub(crate) use cloakroom_core::{ConfigError, OpenError, StoreError};
}

mod redis;
pub use redis::*;
