//! The statements of a SQL store, written once; each dialect gives its quoting, its parameters
//! and the few clauses where the databases differ ([`Syntax`]).

use super::{Table, CLEAR_BATCH};

/// How a dialect writes a statement's parameters; the statements below are written with
/// PostgreSQL's `$1`, `$2`, … and rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Params {
    /// `$1`, `$2` (PostgreSQL).
    Dollar,
    /// `?1`, `?2` (SQLite).
    Numbered,
    /// `?` in binding order (MySQL): every statement binds its parameters in the order
    /// they appear.
    #[cfg_attr(not(feature = "mysql"), allow(dead_code))]
    Positional,
}

/// Where the dialects' statements differ; the rest is written once in [`Queries::new`].
#[derive(Debug)]
pub struct Syntax {
    /// The identifier quote: `"` or `` ` ``.
    pub quote: char,
    /// How parameters are written.
    pub params: Params,
    /// The compare-and-swap's test that the stored data is `$4`, byte for byte.
    pub same_data: &'static str,
    /// `touch`'s test that the stored data is what the caller holds (`$3`).
    pub same_digest: &'static str,
    /// One batch of `clearsessions` (`{t}` the table; `$1` now).
    pub clear: &'static str,
    /// `SELECT` of the live (`$1`) and expired (`$2`) counts from `{t}`.
    pub count_both: &'static str,
    /// MySQL's upsert (`ON DUPLICATE KEY UPDATE`, `FROM DUAL`) rather than `ON CONFLICT`.
    pub on_duplicate_key: bool,
}

/// The statements of a SQL store on one table, in its dialect.
#[derive(Debug, Clone)]
pub struct Queries {
    pub load: String,
    pub create: String,
    pub update: String,
    pub touch: String,
    pub delete: String,
    pub exists: String,
    pub clear: String,
    pub count: String,
    pub count_both: String,
    pub scan: String,
    /// Inserts an index entry only while the session row exists (a concurrent logout may
    /// have deleted it); an existing entry keeps its `created`.
    pub link: String,
    pub unlink: String,
    /// The session's own expiry decides (Django may have saved it since our last link).
    pub sessions_of: String,
    /// Deletes the session only if the index says it is this user's.
    pub revoke: String,
}

impl Queries {
    /// The statements on `table` in the dialect `syntax` describes.
    pub fn new(table: &Table, syntax: &Syntax) -> Self {
        let q = syntax.quote;
        let (t, u) = (format!("{q}{}{q}", table.name()), format!("{q}{}{q}", table.user_table()));
        let columns = ["user_id", "last_seen", "expire_date", "user_agent", "ip"];
        let (dual, upsert) = if syntax.on_duplicate_key {
            let set = columns.map(|c| format!("{c} = VALUES({c})"));
            (" FROM DUAL", format!("ON DUPLICATE KEY UPDATE {}", set.join(", ")))
        } else {
            let set = columns.map(|c| format!("{c} = excluded.{c}"));
            ("", format!("ON CONFLICT (session_key) DO UPDATE SET {}", set.join(", ")))
        };
        let (same_data, same_digest) = (syntax.same_data, syntax.same_digest);
        let sql = |text: String| params(&text.replace("{t}", &t), syntax.params);
        Self {
            load: sql(format!("SELECT session_data, expire_date FROM {t} WHERE session_key = $1 AND expire_date > $2")),
            create: sql(format!("INSERT INTO {t} (session_key, session_data, expire_date) VALUES ($1, $2, $3)")),
            update: sql(format!("UPDATE {t} SET session_data = $1, expire_date = $2 WHERE session_key = $3 AND {same_data} AND expire_date > $5")),
            touch: sql(format!("UPDATE {t} SET expire_date = $1 WHERE session_key = $2 AND {same_digest} AND expire_date > $4")),
            delete: sql(format!("DELETE FROM {t} WHERE session_key = $1")),
            exists: sql(format!("SELECT 1 FROM {t} WHERE session_key = $1")),
            clear: sql(syntax.clear.replace("{batch}", &CLEAR_BATCH.to_string())),
            count: sql(format!("SELECT COUNT(*) FROM {t} WHERE expire_date > $1")),
            count_both: sql(syntax.count_both.to_owned()),
            scan: sql(format!("SELECT session_data, expire_date, session_key FROM {t} WHERE session_key > $1 AND expire_date > $2 ORDER BY session_key LIMIT $3")),
            link: sql(format!("INSERT INTO {u} (session_key, user_id, created, last_seen, expire_date, user_agent, ip) SELECT $1, $2, $3, $4, $5, $6, $7{dual} WHERE EXISTS (SELECT 1 FROM {t} WHERE session_key = $8) {upsert}")),
            unlink: sql(format!("DELETE FROM {u} WHERE user_id = $1 AND session_key = $2")),
            sessions_of: sql(format!("SELECT u.session_key, u.user_id, u.created, u.last_seen, s.expire_date, u.user_agent, u.ip FROM {u} u JOIN {t} s ON s.session_key = u.session_key WHERE u.user_id = $1 AND s.expire_date > $2 ORDER BY u.created DESC, u.session_key")),
            revoke: sql(format!("DELETE FROM {t} WHERE session_key IN (SELECT session_key FROM {u} WHERE user_id = $1 AND session_key = $2)")),
        }
    }
}

/// `sql` with its `$N` parameters written as `style` wants them.
fn params(sql: &str, style: Params) -> String {
    if style == Params::Dollar {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' || !chars.peek().is_some_and(char::is_ascii_digit) {
            out.push(c);
            continue;
        }
        out.push('?');
        while let Some(digit) = chars.next_if(char::is_ascii_digit) {
            if style == Params::Numbered {
                out.push(digit);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_written_in_each_dialects_style() {
        let sql = "a = $1 AND b = $2 AND c = $12 AND d = '$'";
        assert_eq!(params(sql, Params::Dollar), sql);
        assert_eq!(
            params(sql, Params::Numbered),
            "a = ?1 AND b = ?2 AND c = ?12 AND d = '$'"
        );
        assert_eq!(
            params(sql, Params::Positional),
            "a = ? AND b = ? AND c = ? AND d = '$'"
        );
    }
}
