//! The engines that need no driver (in-process cache, files, signed and private cookies) and the two
//! compositions of stores (`cached_db`, `migrating`); the SQL engines live in `cloakroom-sql`,
//! Redis in `cloakroom-redis`, and `cloakroom::engines::open` picks one from settings. Each
//! only moves records: the core does keys, encoding, expiry rules and merging.

pub mod cached_db;
pub mod cookie;
#[cfg(feature = "file")]
pub mod file;
#[cfg(any(feature = "file", feature = "memory"))]
mod listed;
#[cfg(feature = "memory")]
pub mod memory;
pub mod migrating;
pub mod private_cookie;

pub use crate::backend::Migrate;
pub use crate::error::OpenError;
