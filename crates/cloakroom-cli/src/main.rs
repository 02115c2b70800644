//! The `cloakroom` command: create the session table, clear expired sessions, run the demo.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use cloakroom::{DataFormat, Engine, OnStoreError, SameSite, Secret, Settings};
use demo::DemoSettings;

mod admin;
mod demo;
mod ops;
mod user_sessions;

/// Django's sessions for Rust: manage session stores and run the demo app.
#[derive(Parser, Debug)]
#[command(name = "cloakroom", version, about)]
struct Cli {
    #[command(flatten)]
    settings: SettingsArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create the session table, its expiry index and the user index table `<table>_user`
    /// beside it (idempotent; run it again after an upgrade).
    Migrate,
    /// Delete expired sessions in batches (with a progress bar) and say how many went.
    Clearsessions,
    /// Copy every live session between engines, keeping keys, data and expiry (idempotent).
    ///
    /// Engines are URLs: sqlite://FILE, postgres://…, mysql://…, redis://…,
    /// redis-cluster://…, file:///FOLDER, with `?table=NAME` for the SQL table.
    Copy {
        /// The engine to read from.
        #[arg(long)]
        from: String,
        /// The engine to write to (its table must exist: `cloakroom migrate`).
        #[arg(long)]
        to: String,
    },
    /// Print one session's decoded data and expiry as JSON.
    Inspect {
        /// The session key (the session cookie's value).
        key: String,
    },
    /// Print how many sessions are live and how many expired.
    Stats,
    /// Run the demo app (the lesson's examples) on the chosen engine.
    Demo {
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1:8000", env = "CLOAKROOM_ADDR")]
        addr: String,
        /// Live migration: also read sessions from this engine URL (as `copy --from`), moving
        /// each to the configured engine on first use; writes go to the configured engine only.
        #[arg(long, env = "CLOAKROOM_MIGRATE_FROM")]
        migrate_from: Option<String>,
        /// Create the tables that are missing (as `cloakroom migrate`) before serving, on a
        /// server database too; without it the demo refuses to start on a database that lacks
        /// them (an embedded SQLite file is always migrated).
        #[arg(long)]
        migrate: bool,
        /// Turns on the demo's admin page (`/admin/sessions`): the token that opens it (16+
        /// chars). Also `admin_token` in the `--config` file.
        #[arg(long, env = "CLOAKROOM_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: Option<String>,
        /// On SIGTERM or Ctrl-C the demo stops accepting and lets the requests in flight finish
        /// (and save their sessions) for at most this many seconds, then exits anyway, saying so.
        #[arg(long, env = "CLOAKROOM_SHUTDOWN_TIMEOUT", default_value_t = 10)]
        shutdown_timeout: u64,
    },
}

/// Every setting as a flag and a `CLOAKROOM_*` variable; a flag beats the variable, which beats
/// the `--config` file, which beats the default.
#[derive(Args, Debug)]
struct SettingsArgs {
    /// A TOML file of settings (same names as the flags, with `_`).
    #[arg(long, global = true, env = "CLOAKROOM_CONFIG")]
    config: Option<PathBuf>,
    /// Where sessions live: db, cache, cached_db, file, signed_cookies.
    #[arg(long, global = true, env = "CLOAKROOM_ENGINE")]
    engine: Option<Engine>,
    /// sqlite://FILE, postgres://…, mysql://… (db and cached_db).
    #[arg(long, global = true, env = "CLOAKROOM_DATABASE_URL")]
    database_url: Option<String>,
    /// The session table.
    #[arg(long, global = true, env = "CLOAKROOM_TABLE")]
    table: Option<String>,
    /// redis://HOST:PORT[/DB] or redis-cluster://HOST:PORT,… (cache, cached_db).
    #[arg(long, global = true, env = "CLOAKROOM_CACHE_URL")]
    cache_url: Option<String>,
    /// The folder of the file engine.
    #[arg(long, global = true, env = "CLOAKROOM_FILE_PATH")]
    file_path: Option<PathBuf>,
    /// The secret key that signs cookies and Django-format data.
    #[arg(
        long,
        global = true,
        env = "CLOAKROOM_SECRET_KEY",
        hide_env_values = true
    )]
    secret_key: Option<String>,
    /// Older secret keys still accepted when reading, comma-separated.
    #[arg(
        long,
        global = true,
        env = "CLOAKROOM_SECRET_KEY_FALLBACKS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    secret_key_fallbacks: Option<Vec<String>>,
    /// json (default) or django: Django's signed session_data in db, cached_db and file.
    #[arg(long, global = true, env = "CLOAKROOM_DATA_FORMAT")]
    data_format: Option<DataFormat>,
    /// The session cookie's name.
    #[arg(long, global = true, env = "CLOAKROOM_COOKIE_NAME")]
    cookie_name: Option<String>,
    /// Session lifetime in seconds.
    #[arg(long, global = true, env = "CLOAKROOM_COOKIE_AGE")]
    cookie_age: Option<u64>,
    /// The cookie's Domain attribute.
    #[arg(long, global = true, env = "CLOAKROOM_COOKIE_DOMAIN")]
    cookie_domain: Option<String>,
    /// The cookie's Path attribute.
    #[arg(long, global = true, env = "CLOAKROOM_COOKIE_PATH")]
    cookie_path: Option<String>,
    /// Send the cookie over HTTPS only.
    #[arg(long, global = true, env = "CLOAKROOM_COOKIE_SECURE", num_args = 0..=1, default_missing_value = "true")]
    cookie_secure: Option<bool>,
    /// Hide the cookie from JavaScript.
    #[arg(long, global = true, env = "CLOAKROOM_COOKIE_HTTPONLY", num_args = 0..=1, default_missing_value = "true")]
    cookie_httponly: Option<bool>,
    /// Strict, Lax or None.
    #[arg(long, global = true, env = "CLOAKROOM_COOKIE_SAMESITE")]
    cookie_samesite: Option<SameSite>,
    /// Add the CHIPS Partitioned attribute.
    #[arg(long, global = true, env = "CLOAKROOM_COOKIE_PARTITIONED", num_args = 0..=1, default_missing_value = "true")]
    cookie_partitioned: Option<bool>,
    /// Sessions end when the browser closes.
    #[arg(long, global = true, env = "CLOAKROOM_EXPIRE_AT_BROWSER_CLOSE", num_args = 0..=1, default_missing_value = "true")]
    expire_at_browser_close: Option<bool>,
    /// Save non-empty sessions on every request.
    #[arg(long, global = true, env = "CLOAKROOM_SAVE_EVERY_REQUEST", num_args = 0..=1, default_missing_value = "true")]
    save_every_request: Option<bool>,
    /// The bound on every store call, in milliseconds.
    #[arg(long, global = true, env = "CLOAKROOM_STORE_TIMEOUT_MS")]
    store_timeout_ms: Option<u64>,
    /// End a session after this many seconds without a request (rolling).
    #[arg(long, global = true, env = "CLOAKROOM_IDLE_TIMEOUT")]
    idle_timeout: Option<u64>,
    /// End a session this many seconds after creation or login, however active.
    #[arg(long, global = true, env = "CLOAKROOM_ABSOLUTE_LIFETIME")]
    absolute_lifetime: Option<u64>,
    /// With an idle timeout, refresh the store once this fraction of it has passed (0.2).
    #[arg(long, global = true, env = "CLOAKROOM_REFRESH_THRESHOLD")]
    refresh_threshold: Option<f64>,
    /// Seconds the old key stays readable (pre-rotation, read-only) after cycle_key (0: off; max 60).
    #[arg(long, global = true, env = "CLOAKROOM_ROTATION_GRACE")]
    rotation_grace: Option<u64>,
    /// fail_closed (503) or fail_open (anonymous session) when the store fails.
    #[arg(long, global = true, env = "CLOAKROOM_ON_STORE_ERROR", value_parser = parse_policy)]
    on_store_error: Option<OnStoreError>,
    /// Keep only a SHA-256 of each session key in the store (not shareable with Django).
    #[arg(long, global = true, env = "CLOAKROOM_HASH_KEYS", num_args = 0..=1, default_missing_value = "true")]
    hash_keys: Option<bool>,
    /// The largest session in bytes, encoded (64 KiB); a larger save fails with 413.
    #[arg(long, global = true, env = "CLOAKROOM_MAX_SESSION_BYTES")]
    max_session_bytes: Option<usize>,
    /// The most bytes the in-process cache holds (256 MiB).
    #[arg(long, global = true, env = "CLOAKROOM_CACHE_MAX_BYTES")]
    cache_max_bytes: Option<u64>,
    /// The most live sessions one user may have; a login over it revokes the oldest.
    #[arg(long, global = true, env = "CLOAKROOM_MAX_SESSIONS_PER_USER")]
    max_sessions_per_user: Option<u32>,
    /// Clear expired sessions every this many seconds inside the demo (0: never; one server
    /// at a time, under a lock in the store).
    #[arg(long, global = true, env = "CLOAKROOM_CLEANUP_INTERVAL_SECS")]
    cleanup_interval_secs: Option<u64>,
}

fn parse_policy(s: &str) -> Result<OnStoreError, String> {
    match s.replace('-', "_").as_str() {
        "fail_closed" => Ok(OnStoreError::FailClosed),
        "fail_open" => Ok(OnStoreError::FailOpen),
        _ => Err(format!("`{s}` is not fail_closed or fail_open")),
    }
}

impl SettingsArgs {
    /// The settings (and the demo's own, which share the `--config` file), each flag or
    /// variable over the file's value.
    fn resolve(&self) -> Result<(Settings, DemoSettings), cloakroom::ConfigError> {
        let (mut s, demo) = match &self.config {
            Some(path) => Settings::from_toml_file_with::<DemoSettings>(path)?,
            None => (Settings::default(), DemoSettings::default()),
        };
        // Each flag names the group its setting belongs to.
        macro_rules! set {
            ($($group:ident.$field:ident),*) => {
                $( if let Some(v) = &self.$field { s.$group.$field = v.clone().into(); } )*
            };
        }
        set!(
            store.engine,
            session.cookie_name,
            session.cookie_age,
            session.cookie_path,
            session.cookie_secure,
            session.cookie_httponly,
            session.cookie_samesite,
            session.cookie_partitioned,
            session.expire_at_browser_close,
            session.save_every_request,
            store.table,
            session.data_format,
            resilience.store_timeout_ms,
            resilience.on_store_error,
            session.refresh_threshold,
            session.rotation_grace,
            session.hash_keys,
            session.max_session_bytes,
            store.cache_max_bytes,
            session.idle_timeout,
            session.max_sessions_per_user,
            session.absolute_lifetime,
            store.database_url,
            store.cache_url,
            session.cookie_domain,
            store.file_path,
            store.cleanup_interval_secs
        );
        if let Some(v) = &self.secret_key {
            s.session.secret_key = Some(Secret::new(v.clone()));
        }
        if let Some(v) = &self.secret_key_fallbacks {
            s.session.secret_key_fallbacks = v.iter().cloned().map(Secret::new).collect();
        }
        s.validate()?;
        Ok((s, demo))
    }
}

/// A failure of a command, printed as one line that names the fix.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Config(#[from] cloakroom::ConfigError),
    #[error(transparent)]
    Open(#[from] cloakroom::engines::OpenError),
    #[error(transparent)]
    Store(#[from] cloakroom::StoreError),
    #[error(
        "the `{0}` engine has no table to create; `migrate` is for the db and cached_db engines"
    )]
    NothingToMigrate(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the `{0}` engine cannot list its sessions (signed cookies live in browsers)")]
    NoScan(String),
    #[error("a session kept changing in the destination while it was copied; run copy again")]
    Contended,
    #[error("the session data cannot be decoded (set --secret-key for Django's format): {0}")]
    Undecodable(String),
    #[error("no live session has that key")]
    NoSuchSession,
    #[error(
        "requests were still running {0} s after the stop signal and were cut off (their \
         sessions unsaved); raise --shutdown-timeout if they need longer"
    )]
    ShutdownTimeout(u64),
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let (settings, file_demo) = cli.settings.resolve()?;
    match cli.command {
        Command::Migrate => {
            let opened = cloakroom::engines::open(&settings).await?;
            let migrate = opened
                .migrate
                .ok_or_else(|| CliError::NothingToMigrate(settings.store.engine.to_string()))?;
            migrate.migrate().await?;
            println!(
                "the session table `{}` is ready ({})",
                settings.store.table,
                opened.store.engine()
            );
        }
        Command::Clearsessions => {
            let opened = cloakroom::engines::open(&settings).await?;
            let cleared = ops::clear(&opened).await?;
            println!("deleted {cleared} expired sessions");
        }
        Command::Copy { from, to } => {
            let source = ops::settings_for(&from, &settings)?;
            let dest = ops::settings_for(&to, &settings)?;
            let done = ops::copy(&source, &dest).await?;
            println!(
                "copied {} sessions ({} already there, {} kept: other data in the destination); \
                 {} linked to their users",
                done.copied, done.same, done.kept, done.linked
            );
            if done.undecodable > 0 {
                eprintln!(
                    "{} sessions could not be decoded with these settings and were not linked to \
                     a user: set --secret-key (and its fallbacks) as the app has them, and copy again",
                    done.undecodable
                );
            }
        }
        Command::Inspect { key } => {
            let opened = cloakroom::engines::open(&settings).await?;
            let view = ops::inspect(&opened, &settings, &key)
                .await?
                .ok_or(CliError::NoSuchSession)?;
            println!("{view}");
        }
        Command::Stats => {
            let opened = cloakroom::engines::open(&settings).await?;
            println!("{}", ops::stats(&opened, &settings).await?);
        }
        Command::Demo {
            addr,
            migrate_from,
            migrate,
            admin_token,
            shutdown_timeout,
        } => {
            let old = match migrate_from {
                Some(url) => Some(ops::settings_for(&url, &settings)?),
                None => None,
            };
            let demo = DemoSettings {
                admin_token: admin_token.map(Secret::new).or(file_demo.admin_token),
            };
            demo.validate()?;
            let wiring = demo::Wiring {
                addr,
                migrate_from: old,
                migrate,
                shutdown_timeout,
            };
            demo::run(settings, demo, wiring).await?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // Tasks still running (requests cut off by the shutdown timeout) end with the runtime;
    // a blocking call among them (a SQLite write waiting for its lock) is not waited for long.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
