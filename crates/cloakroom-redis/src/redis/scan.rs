//! Walking the sessions ([`Scan`]): `SCAN` over the store's key prefix (never `KEYS`, which
//! blocks the server); on a cluster, every primary in turn, with `node:cursor` as the cursor.

use async_trait::async_trait;
use fred::interfaces::{ClientLike as _, ClusterInterface as _, KeysInterface as _};
use fred::types::config::Server;
use time::OffsetDateTime;

use super::{RedisStore, ENGINE};
use crate::error::StoreError;
use crate::store::{Batch, Counts, Scan, SessionStore as _};

/// `pattern` with Redis glob characters escaped, so a key prefix holding `*`, `?`, `[` or `\\`
/// matches only itself.
fn glob_escape(pattern: &str) -> String {
    let mut escaped = String::with_capacity(pattern.len());
    for c in pattern.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Where a walk stands: the index of the cluster primary (0 on one server) and its `SCAN`
/// cursor.
fn parse_cursor(cursor: Option<&str>) -> Result<(usize, String), StoreError> {
    let Some(c) = cursor else {
        return Ok((0, "0".to_owned()));
    };
    let (node, rest) = c.split_once(':').unwrap_or(("0", c));
    let node = node
        .parse()
        .map_err(|_| StoreError::backend(ENGINE, format!("bad scan cursor `{c}`")))?;
    Ok((node, rest.to_owned()))
}

impl RedisStore {
    /// The primary nodes of a cluster, in a stable order (empty for one server).
    fn primaries(&self) -> Vec<Server> {
        if !self.client.is_clustered() {
            return Vec::new();
        }
        let mut nodes = self
            .client
            .cached_cluster_state()
            .map(|state| state.unique_primary_nodes())
            .unwrap_or_default();
        nodes.sort_by_key(ToString::to_string);
        nodes
    }
}

#[async_trait]
impl Scan for RedisStore {
    async fn scan(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: OffsetDateTime,
    ) -> Result<Batch, StoreError> {
        let primaries = self.primaries();
        let (node, redis_cursor) = parse_cursor(cursor)?;
        let mut options = self.options.clone();
        if let Some(server) = primaries.get(node) {
            options.cluster_node = Some(server.clone());
        } else if !primaries.is_empty() {
            return Ok(Batch::default());
        }
        let client = self.client.with_options(&options);
        let pattern = format!("{}*", glob_escape(&self.head));
        let count = u32::try_from(limit.max(1)).unwrap_or(u32::MAX);
        let (next, keys): (String, Vec<String>) = client
            .scan_page(redis_cursor, pattern, Some(count), None)
            .await
            .map_err(|e| self.error(e))?;
        let mut sessions = Vec::with_capacity(keys.len());
        for redis_key in keys {
            let Some(key) = redis_key.strip_prefix(&self.head) else {
                continue;
            };
            if let Some(record) = self.load(key, now).await? {
                sessions.push((key.to_owned(), record));
            }
        }
        let next = match (next.as_str(), primaries.len()) {
            ("0", 0) => None,
            ("0", n) if node + 1 >= n => None,
            ("0", _) => Some(format!("{}:0", node + 1)),
            (more, _) => Some(format!("{node}:{more}")),
        };
        Ok(Batch { sessions, next })
    }

    async fn count(&self, now: OffsetDateTime) -> Result<Counts, StoreError> {
        let mut live = 0;
        let mut cursor: Option<String> = None;
        loop {
            let batch = self.scan(cursor.as_deref(), 1_000, now).await?;
            live += batch.sessions.len() as u64;
            match batch.next {
                Some(next) => cursor = Some(next),
                // The server drops expired keys by itself.
                None => return Ok(Counts { live, expired: 0 }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_match_only_themselves() {
        assert_eq!(glob_escape(r"a*b?c[d]e\f"), r"a\*b\?c\[d\]e\\f");
    }

    #[test]
    fn cursors_name_a_node_and_its_scan_cursor() {
        assert_eq!(parse_cursor(None).unwrap(), (0, "0".to_owned()));
        assert_eq!(parse_cursor(Some("2:17")).unwrap(), (2, "17".to_owned()));
        assert_eq!(parse_cursor(Some("17")).unwrap(), (0, "17".to_owned()));
        assert!(parse_cursor(Some("x:1")).is_err());
    }
}
