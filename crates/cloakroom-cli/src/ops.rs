//! The operator's commands: `copy` between engines, `inspect` one session, `stats`, and the
//! batched `clearsessions`.
//!
//! `copy` names each side by one URL, its engine told by the scheme:
//!
//! | URL | engine |
//! | --- | --- |
//! | `sqlite://FILE?table=NAME` | `db` on SQLite |
//! | `postgres://USER@HOST:PORT/DB?table=NAME` (or `postgresql://`) | `db` on PostgreSQL |
//! | `mysql://USER@HOST:PORT/DB?table=NAME` (or `mariadb://`) | `db` on MySQL / MariaDB |
//! | `redis://HOST:PORT/DB`, `rediss://…`, `redis-cluster://HOST:PORT,…`, `redis-sentinel://HOST:PORT,…/DB?sentinelServiceName=NAME` (`valkey…` too) | `cache` on Redis |
//! | `file:///FOLDER` | `file` |
//!
//! `?table=` picks the session table (default: the `--table` setting, `django_session`
//! unless set); any other query parameters go to the database driver unchanged. A `cached_db`
//! store keeps every session in its database: copy to or from that database's URL (its cache
//! fills itself on first use). When the destination keeps an index of sessions by user (every
//! server-side engine does), each copied session that holds a user is linked there, keeping
//! what the source's index knew of it (login time, last seen, client), so the user's list and
//! revoking work on the copy at once. Every other setting (cookie name and age for the file engine,
//! the store timeout …) comes from the usual flags, variables and `--config` file.

use std::collections::HashMap;

use cloakroom::codec::{Codec, Data};
use cloakroom::config::Backend as UrlFamily;
use cloakroom::engines::sql::CreateMany;
use cloakroom::engines::{mysql, postgres, sqlite, OpenError, DEFAULT_DATABASE_URL};
use cloakroom::store::{Created, Record, Scan, UserIndex, UserSession};
use cloakroom::{Backend, Backing, Engine, Settings, StoreError};
use time::OffsetDateTime;

use crate::progress::bar;
use crate::CliError;

/// How many sessions `copy` reads and writes per batch (one `INSERT` each into PostgreSQL
/// and MySQL: see [`batch_writer`]).
pub const COPY_BATCH: usize = 500;

/// The settings that open the engine `url` names, on top of `base`: the library's one table
/// of URL schemes ([`cloakroom::config::SCHEMES`]) picks the engine.
///
/// # Errors
/// [`CliError::Config`] when the scheme names no engine or the result cannot work.
pub fn settings_for(url: &str, base: &Settings) -> Result<Settings, CliError> {
    Ok(base.for_url(url)?)
}

/// Whether a command may bring a SQLite database file into being.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// `migrate` and the demo: a missing file is created (and then migrated).
    MayCreate,
    /// Every other command: a missing file is a mistyped path, refused before the store
    /// would create it empty.
    Existing,
}

/// Opens the engine the settings name, as [`cloakroom::engines::open`], with the errors an
/// operator can act on: a missing SQLite file named (and not created, under
/// [`Open::Existing`]), a server that cannot be reached named by host and port.
///
/// # Errors
/// [`CliError::NoDatabaseFile`], [`CliError::Unreachable`], or the library's error.
pub async fn open(settings: &Settings, mode: Open) -> Result<Backing, CliError> {
    let database_url = || {
        settings
            .store
            .database_url
            .as_deref()
            .unwrap_or(DEFAULT_DATABASE_URL)
    };
    let uses_database = matches!(settings.store.engine, Engine::Db | Engine::CachedDb);
    if mode == Open::Existing && uses_database {
        if let Some(path) = sqlite::database_file(database_url()) {
            if !path.exists() {
                return Err(CliError::NoDatabaseFile(path));
            }
        }
    }
    cloakroom::engines::open(settings).await.map_err(|e| {
        let engine = match &e {
            OpenError::Store(StoreError::Backend { engine, .. }) => *engine,
            _ => return e.into(),
        };
        let (url, flag, port) = match engine {
            "postgres" => (Some(database_url()), "--database-url", 5432),
            "mysql" => (Some(database_url()), "--database-url", 3306),
            "redis" => {
                let url = settings.store.cache_url.as_deref();
                (url, "--cache-url", url.map_or(6379, redis_port))
            }
            _ => (None, "", 0),
        };
        match url {
            Some(url) => CliError::Unreachable {
                engine,
                at: server_of(url, port),
                flag,
                source: e,
            },
            None => e.into(),
        }
    })
}

/// The port a Redis URL's hosts are on unless they say: a Sentinel URL lists sentinels (26379).
fn redis_port(url: &str) -> u16 {
    let scheme = url.split("://").next().unwrap_or_default();
    if scheme.to_ascii_lowercase().ends_with("-sentinel") {
        26379
    } else {
        6379
    }
}

/// The `host:port` (or the list of a cluster) a server URL names, the port defaulted, without
/// the credentials: what an operator checks when the server cannot be reached.
fn server_of(url: &str, default_port: u16) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let hosts = rest.split(['/', '?']).next().unwrap_or_default();
    let hosts = hosts.rsplit_once('@').map_or(hosts, |(_, hosts)| hosts);
    hosts
        .split(',')
        .map(|host| {
            let host = if host.is_empty() { "localhost" } else { host };
            let has_port = host.rsplit_once(':').is_some_and(|(_, port)| {
                !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
            });
            if has_port {
                host.to_owned()
            } else {
                format!("{host}:{default_port}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn scan_of(opened: &Backing, settings: &Settings) -> Result<std::sync::Arc<dyn Scan>, CliError> {
    opened
        .server()
        .and_then(|server| server.scan.clone())
        .ok_or_else(|| CliError::NoScan(settings.store.engine.to_string()))
}

/// What `copy` did with each session.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// Written to the destination.
    pub copied: u64,
    /// Already there with the same data and expiry (a second run).
    pub same: u64,
    /// Already there with other data, kept: the destination's is newer (live traffic wrote it).
    pub kept: u64,
    /// Copied or already there, holding a user, and linked in the destination's user index.
    pub linked: u64,
    /// Copied or already there, but with data these settings cannot decode (another secret
    /// key, say), so not linked to any user.
    pub undecodable: u64,
}

/// Copies every live session from `from` to `to`, keeping keys, data and expiry.
///
/// Idempotent: a session already in the destination is left alone, so a second run copies
/// nothing and an interrupted run can be started again. A copied session (or one already
/// there with the same data) that holds a user is linked in the destination's user index, if
/// it keeps one; linking again only refreshes the entry.
///
/// # Errors
/// [`CliError`] when either engine cannot be opened or fails.
pub async fn copy(from: &Settings, to: &Settings) -> Result<Copied, CliError> {
    let source = open(from, Open::Existing).await?;
    let writer = batch_writer(to).await?;
    let scan = scan_of(&source, from)?;
    let dest = open(to, Open::Existing).await?;
    let engine = dest.engine();
    let dest = dest
        .into_server()
        .ok_or_else(|| CliError::NothingStored(engine.to_owned()))?;
    let source_index = source.server().and_then(|server| server.users.clone());
    let now = OffsetDateTime::now_utc();
    let total = scan.count(now).await?.live;
    let progress = bar(total, "copying sessions");
    let mut done = Copied::default();
    let mut cursor: Option<String> = None;
    loop {
        let batch = scan.scan(cursor.as_deref(), COPY_BATCH, now).await?;
        let created = match &writer {
            Some(writer) => writer.create_many(&batch.sessions).await?,
            None => Vec::new(),
        };
        let mut landed = Vec::new();
        for (i, (key, record)) in batch.sessions.iter().enumerate() {
            let first = created.get(i).cloned();
            if copy_one(&dest, key, record, first, &mut done).await? {
                landed.push((key.as_str(), record));
            }
            progress.inc(1);
        }
        if let Some(index) = &dest.users {
            link_users(
                from,
                source_index.as_deref(),
                &**index,
                &landed,
                now,
                &mut done,
            )
            .await?;
        }
        match batch.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    progress.finish_and_clear();
    Ok(done)
}

/// The destination's batch insert, when it has one: a second handle on a PostgreSQL or MySQL
/// table (the store behind [`Backend`] is not nameable as one), so a batch costs one round
/// trip rather than one per session. `None` for the other engines, which create one by one.
async fn batch_writer(settings: &Settings) -> Result<Option<Box<dyn CreateMany>>, CliError> {
    if settings.store.engine != Engine::Db {
        return Ok(None);
    }
    let url = settings
        .store
        .database_url
        .as_deref()
        .unwrap_or(DEFAULT_DATABASE_URL);
    let table = &settings.store.table;
    Ok(match UrlFamily::of_url(url) {
        Some(UrlFamily::Postgres) => Some(Box::new(
            postgres::PostgresStore::connect(url)
                .await?
                .with_table(table)?,
        )),
        Some(UrlFamily::MySql) => Some(Box::new(
            mysql::MySqlStore::connect(url).await?.with_table(table)?,
        )),
        _ => None,
    })
}

/// Copies one session, returning whether the destination now holds the source's record.
/// `created` is the outcome of its batch insert, when there was one.
async fn copy_one(
    dest: &Backend,
    key: &str,
    record: &Record,
    mut created: Option<Created>,
    done: &mut Copied,
) -> Result<bool, CliError> {
    let store = &dest.store;
    for _ in 0..3 {
        let outcome = match created.take() {
            Some(outcome) => outcome,
            None => store.create(key, record).await?,
        };
        match outcome {
            Created::Stored => {
                done.copied += 1;
                return Ok(true);
            }
            Created::Taken => {}
        }
        match store.load(key, OffsetDateTime::now_utc()).await? {
            // Engines keep expiry at different precisions (Redis: milliseconds, a file's
            // mtime: what the file system holds): the same second is the same expiry.
            Some(there)
                if there.data == record.data
                    && (there.expires_at - record.expires_at).abs() < time::Duration::SECOND =>
            {
                done.same += 1;
                return Ok(true);
            }
            // Live traffic wrote it in the destination, and the core linked it then.
            Some(_) => {
                done.kept += 1;
                return Ok(false);
            }
            // An expired record still holds the key: clear it and create again.
            None => store.delete(key).await?,
        }
    }
    Err(CliError::Contended)
}

/// Links the sessions of one batch that `landed` in the destination and hold a user in its
/// index `dest`. An entry the source's index holds keeps its login time, last seen and client;
/// otherwise the entry starts `now` with the client the data recorded. The source's index is
/// read once per user per batch.
async fn link_users(
    settings: &Settings,
    source: Option<&dyn UserIndex>,
    dest: &dyn UserIndex,
    landed: &[(&str, &Record)],
    now: OffsetDateTime,
    done: &mut Copied,
) -> Result<(), CliError> {
    let mut known: HashMap<String, Vec<UserSession>> = HashMap::new();
    for &(key, record) in landed {
        let Ok(data) = decode(settings, &record.data) else {
            done.undecodable += 1;
            continue;
        };
        let Some(mut entry) = UserSession::from_data(key, &data, record.expires_at, now) else {
            continue;
        };
        if let Some(source) = source {
            if !known.contains_key(&entry.user_id) {
                let listed = source.sessions_of(&entry.user_id, now).await?;
                known.insert(entry.user_id.clone(), listed);
            }
            let listed = known.get(&entry.user_id).map_or(&[][..], Vec::as_slice);
            if let Some(was) = listed.iter().find(|s| s.id == entry.id) {
                entry.created_at = was.created_at;
                entry.last_seen = was.last_seen;
                entry.user_agent.clone_from(&was.user_agent);
                entry.ip.clone_from(&was.ip);
            }
        }
        dest.link(&entry).await?;
        done.linked += 1;
    }
    Ok(())
}

/// Deletes expired sessions in batches with a progress bar, returning how many went.
///
/// # Errors
/// [`CliError`] when the engine fails.
pub async fn clear(opened: &Backing) -> Result<u64, CliError> {
    // Signed cookies keep nothing on the server, so nothing expires there.
    let Some(opened) = opened.server() else {
        return Ok(0);
    };
    let Some(clear) = &opened.clear else {
        return Ok(0);
    };
    let now = OffsetDateTime::now_utc();
    let expected = match &opened.scan {
        Some(scan) => scan.count(now).await?.expired,
        None => 0,
    };
    let progress = bar(expected, "deleting expired sessions");
    let mut total = 0;
    loop {
        let went = clear.clear_expired_batch(now).await?;
        if went == 0 {
            break;
        }
        total += went;
        progress.inc(went);
    }
    progress.finish_and_clear();
    Ok(total)
}

/// One session's decoded data and expiry, as pretty JSON; `None` when no live session has
/// `key` (for signed cookies, `key` is the cookie value, verified as a request's would be).
/// The stored data is read as [`decode`] reads it.
///
/// # Errors
/// [`CliError`] when the engine fails or the data cannot be decoded.
pub async fn inspect(
    opened: &Backing,
    settings: &Settings,
    key: &str,
) -> Result<Option<String>, CliError> {
    let now = OffsetDateTime::now_utc();
    let found = match opened {
        Backing::Server(server) => match server.store.load(key, now).await? {
            Some(record) => Some((decode(settings, &record.data)?, record.expires_at)),
            None => None,
        },
        Backing::Cookie(cookies) => cookies.decode(key, now),
        _ => None,
    };
    let Some((data, expires_at)) = found else {
        return Ok(None);
    };
    let expires = expires_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| expires_at.to_string());
    let view = serde_json::json!({
        "engine": opened.engine(),
        "expires_at": expires,
        "expires_in_seconds": (expires_at - now).whole_seconds(),
        "data": data,
    });
    Ok(Some(
        serde_json::to_string_pretty(&view).unwrap_or_else(|_| view.to_string()),
    ))
}

/// A stored session's data, read with the codec the settings name, else as JSON, else in
/// Django's signed format with the secret key and its fallbacks from the settings (so a store
/// written under another `data_format` still reads).
///
/// # Errors
/// [`CliError::Undecodable`] when it is none of these.
pub fn decode(settings: &Settings, text: &[u8]) -> Result<Data, CliError> {
    if let Ok(data) = settings.codec().decode(text) {
        return Ok(data);
    }
    match Codec::Json.decode(text) {
        Ok(data) => Ok(data),
        Err(json) => match &settings.session.secret_key {
            Some(secret) => Codec::django(
                secret.clone(),
                settings.session.secret_key_fallbacks.clone(),
            )
            .decode(text)
            .map_err(|e| CliError::Undecodable(e.to_string())),
            None => Err(CliError::Undecodable(json.to_string())),
        },
    }
}

/// The live and expired counts of the engine, as one line.
///
/// # Errors
/// [`CliError`] when the engine cannot count or fails.
pub async fn stats(opened: &Backing, settings: &Settings) -> Result<String, CliError> {
    let scan = scan_of(opened, settings)?;
    let counts = scan.count(OffsetDateTime::now_utc()).await?;
    Ok(format!(
        "{} ({}): {} live, {} expired",
        settings.store.engine,
        opened.engine(),
        counts.live,
        counts.expired
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloakroom::Engine;

    #[test]
    fn url_errors_do_not_print_passwords() {
        for url in [
            "ftp://u:hunter2@h/db",
            "postgres:/u:hunter2@h",
            "file://u:hunter2@",
        ] {
            let err = settings_for(url, &Settings::default())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(!err.contains("hunter2"), "{url}: {err}");
        }
    }

    #[test]
    fn servers_are_named_by_host_and_port_without_credentials() {
        for (url, port, at) in [
            (
                "postgres://u:hunter2@db.example:6543/app",
                5432,
                "db.example:6543",
            ),
            (
                "postgres://u@db.example/app?sslmode=require",
                5432,
                "db.example:5432",
            ),
            ("postgres:///app", 5432, "localhost:5432"),
            ("mysql://root@[::1]/test", 3306, "[::1]:3306"),
            ("redis-cluster://a:7000,b:7001", 6379, "a:7000,b:7001"),
            ("redis://:pw@cache/0", 6379, "cache:6379"),
        ] {
            assert_eq!(server_of(url, port), at, "{url}");
        }
        let sentinel = "Redis-Sentinel://u:pw@s1,s2:26380/0?sentinelServiceName=m";
        assert_eq!(
            server_of(sentinel, redis_port(sentinel)),
            "s1:26379,s2:26380"
        );
        assert_eq!(redis_port("rediss://cache:6380"), 6379);
    }

    #[test]
    fn schemes_pick_engines() {
        let base = Settings::default();
        let s = settings_for("file:///tmp/x", &base).unwrap();
        assert_eq!(s.store.engine, Engine::File);
        assert_eq!(
            s.store.file_path.as_deref(),
            Some(std::path::Path::new("/tmp/x"))
        );
        let s = settings_for("redis-cluster://127.0.0.1:7000", &base).unwrap();
        assert_eq!(s.store.engine, Engine::Cache);
        let s = settings_for(
            "redis-sentinel://127.0.0.1:26379?sentinelServiceName=m",
            &base,
        )
        .unwrap();
        assert_eq!(s.store.engine, Engine::Cache);
        let s = settings_for("mysql://root@127.0.0.1/test?table=abc", &base).unwrap();
        assert_eq!(s.store.engine, Engine::Db);
        assert_eq!(s.store.table, "abc");
        assert!(settings_for("ftp://x", &base).is_err());
        assert!(settings_for("nothing", &base).is_err());
    }
}
