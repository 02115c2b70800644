//! The settings as flags, in groups, so each subcommand shows only the flags it uses: every
//! command names its store ([`StoreArgs`], global); the commands that read the file engine's
//! files take its naming ([`FileArgs`]); those that decode session data take the keys
//! ([`CodecArgs`]); only the demo serves requests, so only it takes the cookie and session
//! rules ([`SessionArgs`]). The `--config` file and the `CLOAKROOM_*` variables still set any
//! setting for any command; a flag beats the variable, which beats the file, which beats the
//! default.

use std::fmt::Display;
use std::path::PathBuf;
use std::str::FromStr;

use clap::Args;
use cloakroom::{DataFormat, Engine, OnStoreError, SameSite, Secret, Settings, Transport};

use crate::demo::DemoSettings;

/// Where sessions live: what every command needs.
#[derive(Args, Debug)]
#[command(next_help_heading = "Store")]
pub struct StoreArgs {
    /// A TOML file of settings (same names as the flags, with `_`).
    #[arg(long, global = true, env = "CLOAKROOM_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where sessions live: db, cache, cached_db, file, signed_cookies, private_cookies.
    #[arg(long, global = true, env = "CLOAKROOM_ENGINE")]
    engine: Option<Engine>,
    /// sqlite://FILE, postgres://…, mysql://… (db and cached_db; default sqlite://cloakroom.sqlite3).
    #[arg(
        long,
        global = true,
        env = "CLOAKROOM_DATABASE_URL",
        value_name = "URL"
    )]
    database_url: Option<String>,
    /// The session table.
    #[arg(long, global = true, env = "CLOAKROOM_TABLE", value_name = "NAME")]
    table: Option<String>,
    /// redis://HOST:PORT[/DB], redis-cluster://HOST:PORT,… or
    /// redis-sentinel://HOST:PORT,…[/DB]?sentinelServiceName=NAME (cache, cached_db).
    #[arg(long, global = true, env = "CLOAKROOM_CACHE_URL", value_name = "URL")]
    cache_url: Option<String>,
    /// The folder of the file engine.
    #[arg(
        long,
        global = true,
        env = "CLOAKROOM_FILE_PATH",
        value_name = "FOLDER"
    )]
    file_path: Option<PathBuf>,
    /// The bound on every store call, in milliseconds.
    #[arg(long, global = true, env = "CLOAKROOM_STORE_TIMEOUT_MS", value_name = "MS",
          allow_negative_numbers = true, value_parser = non_negative::<u64>)]
    store_timeout_ms: Option<u64>,
}

/// How the file engine names and ages its files (Django's file backend uses the cookie's name
/// as the files' prefix and the cookie's age as their lifetime).
#[derive(Args, Debug)]
#[command(next_help_heading = "File engine")]
pub struct FileArgs {
    /// The session cookie's name, the prefix of the file engine's file names.
    #[arg(long, env = "CLOAKROOM_COOKIE_NAME", value_name = "NAME")]
    cookie_name: Option<String>,
    /// Session lifetime in seconds: a file's modification time plus this is its expiry.
    #[arg(long, env = "CLOAKROOM_COOKIE_AGE", value_name = "SECONDS",
          allow_negative_numbers = true, value_parser = non_negative::<u64>)]
    cookie_age: Option<u64>,
}

/// What reading session data takes: its format and the keys that sign it.
#[derive(Args, Debug)]
#[command(next_help_heading = "Session data")]
pub struct CodecArgs {
    /// The secret key that signs cookies and Django-format data.
    #[arg(long, env = "CLOAKROOM_SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,
    /// Older secret keys still accepted when reading, comma-separated.
    #[arg(
        long,
        env = "CLOAKROOM_SECRET_KEY_FALLBACKS",
        value_delimiter = ',',
        hide_env_values = true,
        value_name = "KEYS"
    )]
    secret_key_fallbacks: Option<Vec<String>>,
    /// json (default) or django: Django's signed session_data in db, cached_db and file.
    #[arg(long, env = "CLOAKROOM_DATA_FORMAT", value_name = "FORMAT")]
    data_format: Option<DataFormat>,
    /// The store keeps the session data encrypted with a key from --secret-key (not with django).
    #[arg(long, env = "CLOAKROOM_ENCRYPT_DATA", num_args = 0..=1, default_missing_value = "true")]
    encrypt_data: Option<bool>,
}

/// The cookie and the rules of a session's life: what serving requests needs.
#[derive(Args, Debug)]
#[command(next_help_heading = "Cookie and sessions")]
pub struct SessionArgs {
    /// The session cookie's name.
    #[arg(long, env = "CLOAKROOM_COOKIE_NAME", value_name = "NAME")]
    cookie_name: Option<String>,
    /// Where the session key travels: cookie (default), header (--header-name) or both.
    #[arg(long, env = "CLOAKROOM_TRANSPORT")]
    transport: Option<Transport>,
    /// The request and response header that carries the key (X-Session-Token).
    #[arg(long, env = "CLOAKROOM_HEADER_NAME", value_name = "NAME")]
    header_name: Option<String>,
    /// Session lifetime in seconds.
    #[arg(long, env = "CLOAKROOM_COOKIE_AGE", value_name = "SECONDS",
          allow_negative_numbers = true, value_parser = non_negative::<u64>)]
    cookie_age: Option<u64>,
    /// The cookie's Domain attribute.
    #[arg(long, env = "CLOAKROOM_COOKIE_DOMAIN", value_name = "DOMAIN")]
    cookie_domain: Option<String>,
    /// The cookie's Path attribute.
    #[arg(long, env = "CLOAKROOM_COOKIE_PATH", value_name = "PATH")]
    cookie_path: Option<String>,
    /// Send the cookie over HTTPS only.
    #[arg(long, env = "CLOAKROOM_COOKIE_SECURE", num_args = 0..=1, default_missing_value = "true")]
    cookie_secure: Option<bool>,
    /// Hide the cookie from JavaScript.
    #[arg(long, env = "CLOAKROOM_COOKIE_HTTPONLY", num_args = 0..=1, default_missing_value = "true")]
    cookie_httponly: Option<bool>,
    /// Strict, Lax or None.
    #[arg(long, env = "CLOAKROOM_COOKIE_SAMESITE")]
    cookie_samesite: Option<SameSite>,
    /// Add the CHIPS Partitioned attribute.
    #[arg(long, env = "CLOAKROOM_COOKIE_PARTITIONED", num_args = 0..=1, default_missing_value = "true")]
    cookie_partitioned: Option<bool>,
    /// Sessions end when the browser closes.
    #[arg(long, env = "CLOAKROOM_EXPIRE_AT_BROWSER_CLOSE", num_args = 0..=1, default_missing_value = "true")]
    expire_at_browser_close: Option<bool>,
    /// Save non-empty sessions on every request.
    #[arg(long, env = "CLOAKROOM_SAVE_EVERY_REQUEST", num_args = 0..=1, default_missing_value = "true")]
    save_every_request: Option<bool>,
    /// End a session after this many seconds without a request (rolling).
    #[arg(long, env = "CLOAKROOM_IDLE_TIMEOUT", value_name = "SECONDS",
          allow_negative_numbers = true, value_parser = non_negative::<u64>)]
    idle_timeout: Option<u64>,
    /// End a session this many seconds after creation or login, however active.
    #[arg(long, env = "CLOAKROOM_ABSOLUTE_LIFETIME", value_name = "SECONDS",
          allow_negative_numbers = true, value_parser = non_negative::<u64>)]
    absolute_lifetime: Option<u64>,
    /// With an idle timeout, refresh the store once this fraction of it has passed (0.2).
    #[arg(long, env = "CLOAKROOM_REFRESH_THRESHOLD", value_name = "FRACTION",
          allow_negative_numbers = true, value_parser = non_negative::<f64>)]
    refresh_threshold: Option<f64>,
    /// A save keeps the stored expiry until refresh_threshold of the age has passed (HOT updates on PostgreSQL).
    #[arg(long, env = "CLOAKROOM_SAVE_KEEPS_EXPIRY", num_args = 0..=1, default_missing_value = "true")]
    save_keeps_expiry: Option<bool>,
    /// Seconds the old key stays readable (pre-rotation, read-only) after cycle_key (0: off; max 60).
    #[arg(long, env = "CLOAKROOM_ROTATION_GRACE", value_name = "SECONDS",
          allow_negative_numbers = true, value_parser = non_negative::<u64>)]
    rotation_grace: Option<u64>,
    /// fail_closed (503) or fail_open (anonymous session) when the store fails.
    #[arg(long, env = "CLOAKROOM_ON_STORE_ERROR", value_parser = parse_policy, value_name = "POLICY")]
    on_store_error: Option<OnStoreError>,
    /// Keep only a SHA-256 of each session key in the store (not shareable with Django).
    #[arg(long, env = "CLOAKROOM_HASH_KEYS", num_args = 0..=1, default_missing_value = "true")]
    hash_keys: Option<bool>,
    /// The largest session in bytes, encoded (64 KiB); a larger save fails with 413.
    #[arg(long, env = "CLOAKROOM_MAX_SESSION_BYTES", value_name = "BYTES",
          allow_negative_numbers = true, value_parser = non_negative::<usize>)]
    max_session_bytes: Option<usize>,
    /// The most bytes the in-process cache holds (256 MiB).
    #[arg(long, env = "CLOAKROOM_CACHE_MAX_BYTES", value_name = "BYTES",
          allow_negative_numbers = true, value_parser = non_negative::<u64>)]
    cache_max_bytes: Option<u64>,
    /// The most live sessions one user may have; a login over it revokes the oldest.
    #[arg(long, env = "CLOAKROOM_MAX_SESSIONS_PER_USER", value_name = "N",
          allow_negative_numbers = true, value_parser = non_negative::<u32>)]
    max_sessions_per_user: Option<u32>,
    /// Clear expired sessions every this many seconds inside the demo (0: never; one server
    /// at a time, under a lock in the store).
    #[arg(long, env = "CLOAKROOM_CLEANUP_INTERVAL_SECS", value_name = "SECONDS",
          allow_negative_numbers = true, value_parser = non_negative::<u64>)]
    cleanup_interval_secs: Option<u64>,
}

/// A number of seconds, bytes or sessions: clap would call `-5` an unexpected argument (it
/// looks like a flag), so negative numbers are let through to here and refused saying why.
pub fn non_negative<T>(s: &str) -> Result<T, String>
where
    T: FromStr + PartialOrd + Default,
    T::Err: Display,
{
    let negative = || format!("`{s}` is negative; give a number of 0 or more");
    match s.trim().parse::<T>() {
        Ok(v) if v < T::default() => Err(negative()),
        Ok(v) => Ok(v),
        Err(_) if s.trim_start().starts_with('-') => Err(negative()),
        Err(e) => Err(format!("`{s}` is not a number of 0 or more: {e}")),
    }
}

fn parse_policy(s: &str) -> Result<OnStoreError, String> {
    match s.replace('-', "_").as_str() {
        "fail_closed" => Ok(OnStoreError::FailClosed),
        "fail_open" => Ok(OnStoreError::FailOpen),
        _ => Err(format!("`{s}` is not fail_closed or fail_open")),
    }
}

/// Sets each given flag's setting, naming the group it belongs to.
macro_rules! set {
    ($args:expr, $s:expr, $($group:ident.$field:ident),*) => {
        $( if let Some(v) = &$args.$field { $s.$group.$field = v.clone().into(); } )*
    };
}

/// The flags a subcommand has, beyond the store's.
#[derive(Debug, Default)]
pub struct Extra<'a> {
    pub file: Option<&'a FileArgs>,
    pub codec: Option<&'a CodecArgs>,
    pub session: Option<&'a SessionArgs>,
}

impl StoreArgs {
    /// The settings (and the demo's own, which share the `--config` file), each flag or
    /// variable over the file's value, checked.
    pub fn resolve(
        &self,
        extra: &Extra<'_>,
    ) -> Result<(Settings, DemoSettings), cloakroom::ConfigError> {
        let (mut s, demo) = match &self.config {
            Some(path) => Settings::from_toml_file_with::<DemoSettings>(path)?,
            None => (Settings::default(), DemoSettings::default()),
        };
        set!(
            self,
            s,
            store.engine,
            store.database_url,
            store.table,
            store.cache_url,
            store.file_path,
            resilience.store_timeout_ms
        );
        if let Some(file) = extra.file {
            set!(file, s, session.cookie_name, session.cookie_age);
        }
        if let Some(codec) = extra.codec {
            set!(codec, s, session.data_format, session.encrypt_data);
            if let Some(v) = &codec.secret_key {
                s.session.secret_key = Some(Secret::new(v.clone()));
            }
            if let Some(v) = &codec.secret_key_fallbacks {
                s.session.secret_key_fallbacks = v.iter().cloned().map(Secret::new).collect();
            }
        }
        if let Some(a) = extra.session {
            set!(
                a,
                s,
                session.cookie_name,
                session.transport,
                session.header_name,
                session.cookie_age,
                session.cookie_domain,
                session.cookie_path,
                session.cookie_secure,
                session.cookie_httponly,
                session.cookie_samesite,
                session.cookie_partitioned,
                session.expire_at_browser_close,
                session.save_every_request,
                session.idle_timeout,
                session.absolute_lifetime,
                session.refresh_threshold,
                session.save_keeps_expiry,
                session.rotation_grace,
                resilience.on_store_error,
                session.hash_keys,
                session.max_session_bytes,
                store.cache_max_bytes,
                session.max_sessions_per_user,
                store.cleanup_interval_secs
            );
        }
        s.validate()?;
        Ok((s, demo))
    }
}

#[cfg(test)]
mod tests {
    use super::non_negative;

    #[test]
    fn negative_numbers_are_refused_saying_so() {
        for s in ["-5", "-0.5", " -1"] {
            let err = non_negative::<f64>(s).unwrap_err();
            assert!(err.contains("negative"), "{s}: {err}");
        }
        assert!(non_negative::<u64>("-5").unwrap_err().contains("negative"));
        assert!(non_negative::<u64>("five")
            .unwrap_err()
            .contains("not a number"));
        assert_eq!(non_negative::<u64>("5"), Ok(5));
        assert_eq!(non_negative::<f64>("0.2"), Ok(0.2));
    }
}
