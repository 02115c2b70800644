//! The Lua scripts (`lua/*.lua`, one file each, its KEYS and ARGV in its header) and how they
//! run: by SHA-1 (`EVALSHA`), sending the source only when a server does not know it yet.

use std::sync::LazyLock;

use bytes::Bytes;
use fred::error::Error as FredError;
use fred::interfaces::ClientLike as _;
use fred::types::{ClusterHash, CustomCommand, Value};
use sha1::{Digest, Sha1};

use super::{RedisStore, ENGINE};
use crate::error::StoreError;

/// `prune(set, now)`, which the index scripts that call it carry at their head.
const PRUNE_LUA: &str = include_str!("lua/prune.lua");

/// The checks the compare-and-swap scripts share (`check_whole`, `check_framed`), carried at
/// their head.
const CHECK_LUA: &str = include_str!("lua/check.lua");

/// A Lua script and its SHA-1, the name `EVALSHA` knows it by.
pub(super) struct Script {
    /// The source, sent once per server (`EVAL`) when it does not know the script yet.
    lua: Value,
    /// Shared bytes, so that sending it is a refcount and not a copy.
    sha1: Bytes,
}

impl Script {
    fn new(lua: &'static str) -> Self {
        Self {
            lua: Value::from_static_str(lua),
            sha1: Bytes::from(sha1_hex(lua.as_bytes())),
        }
    }

    /// A script that calls the functions `prelude` defines (`lua/prune.lua`, `lua/check.lua`),
    /// sent as one source: Redis scripts cannot load one another.
    fn with(prelude: &'static str, lua: &'static str) -> Self {
        let source = format!("{prelude}{lua}");
        let sha1 = Bytes::from(sha1_hex(source.as_bytes()));
        Self {
            lua: Value::from(source),
            sha1,
        }
    }
}

/// SHA-1 in lower-case hex, as Redis names scripts and as its Lua `redis.sha1hex` answers.
pub(super) fn sha1_hex(bytes: &[u8]) -> String {
    Sha1::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(super) static UPDATE: LazyLock<Script> =
    LazyLock::new(|| Script::with(CHECK_LUA, include_str!("lua/update.lua")));
pub(super) static TOUCH: LazyLock<Script> =
    LazyLock::new(|| Script::with(CHECK_LUA, include_str!("lua/touch.lua")));
pub(super) static UPDATE_FRAMED: LazyLock<Script> =
    LazyLock::new(|| Script::with(CHECK_LUA, include_str!("lua/update_framed.lua")));
pub(super) static TOUCH_FRAMED: LazyLock<Script> =
    LazyLock::new(|| Script::with(CHECK_LUA, include_str!("lua/touch_framed.lua")));
pub(super) static LINK: LazyLock<Script> =
    LazyLock::new(|| Script::with(PRUNE_LUA, include_str!("lua/link.lua")));
pub(super) static UNLINK: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/unlink.lua")));
pub(super) static LIST: LazyLock<Script> =
    LazyLock::new(|| Script::with(PRUNE_LUA, include_str!("lua/list.lua")));
pub(super) static OWNS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/owns.lua")));
pub(super) static RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/release.lua")));

/// The Redis error code: the first word of an error reply (`NOSCRIPT`, `WRONGTYPE` …).
pub(super) fn error_code(e: &FredError) -> &str {
    e.details().split_whitespace().next().unwrap_or_default()
}

/// A reply this engine cannot read, named by what it answered.
pub(super) fn unexpected(what: &str, reply: &[Value]) -> StoreError {
    StoreError::backend(ENGINE, format!("unexpected reply to {what}: {reply:?}"))
}

/// The status a script answers first (`{0}`, `{1}` …).
pub(super) fn status(reply: &[Value]) -> Option<i64> {
    reply.first().and_then(Value::as_i64)
}

impl RedisStore {
    /// Runs a script by its SHA-1, sending the source only when the server does not have it
    /// yet (after a restart, or on a node that never ran it); `EVAL` then caches it there.
    ///
    /// Sent as custom commands routed by the key's slot: fred 10.1's own `evalsha`/`eval`
    /// ignore the command timeout and fail-fast while the connection is down, and would hang.
    pub(super) async fn run<const N: usize>(
        &self,
        script: &Script,
        redis_key: &str,
        args: impl Fn() -> [Value; N],
    ) -> Result<Vec<Value>, StoreError> {
        let client = self.client.with_options(&self.options);
        // Route by the key (the third argument), so a cluster sends it to its slot's node.
        // The arguments are built for each try rather than cloned for a retry that almost
        // never comes.
        let send = |name, script: Value| {
            let mut values = Vec::with_capacity(3 + N);
            values.extend([script, Value::Integer(1), Value::from(redis_key)]);
            values.extend(args());
            let command = CustomCommand::new_static(name, ClusterHash::Offset(2), false);
            client.custom::<Value, Value>(command, values)
        };
        let reply = match send("EVALSHA", Value::Bytes(script.sha1.clone())).await {
            Err(e) if error_code(&e) == "NOSCRIPT" => send("EVAL", script.lua.clone()).await,
            other => other,
        };
        Ok(reply.map_err(|e| self.error(e))?.into_array())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_names_are_their_sha1() {
        // SHA-1 of "return 1", as `SCRIPT LOAD` answers it.
        assert_eq!(
            Script::new("return 1").sha1,
            &b"e0e1f9fabfc9d4800c877a703b823ac0578ff8db"[..]
        );
    }

    #[test]
    fn index_scripts_carry_prune() {
        for script in [&*LINK, &*LIST] {
            let source = script.lua.as_str().unwrap_or_default().into_owned();
            assert!(source.starts_with(PRUNE_LUA), "{source}");
        }
    }
}
