//! The session data type and its lookups, beneath every other module: the codec, the signing
//! and pickle formats, the reserved keys and the expiry rules all read it, and it reads none
//! of them.

use serde_json::{Map, Value};

/// The session data: a JSON object whose keys keep their insertion order (as Python dicts do).
pub type Data = Map<String, Value>;

/// The value under `key`. A session holds a handful of keys, and comparing that many short
/// strings is several times cheaper than hashing `key` with the map's SipHash, which the core
/// would otherwise pay for each of the special keys it checks on every request.
pub(crate) fn lookup<'a>(data: &'a Data, key: &str) -> Option<&'a Value> {
    if data.len() <= 8 {
        data.iter().find_map(|(k, v)| (k == key).then_some(v))
    } else {
        data.get(key)
    }
}

/// The value under `key`, to change in place (see [`lookup`]).
pub(crate) fn lookup_mut<'a>(data: &'a mut Data, key: &str) -> Option<&'a mut Value> {
    if data.len() <= 8 {
        data.iter_mut().find_map(|(k, v)| (k == key).then_some(v))
    } else {
        data.get_mut(key)
    }
}
