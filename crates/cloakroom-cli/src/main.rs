//! The `cloakroom` command: manage a session store (create its tables, clear expired
//! sessions, copy between stores, look inside) and run the demo app.

use std::process::ExitCode;

use args::{CodecArgs, Extra, FileArgs, SessionArgs, StoreArgs};
use clap::{Parser, Subcommand};
use cloakroom::Secret;
use demo::DemoSettings;

mod admin;
mod args;
mod demo;
mod live;
mod ops;
mod page;
mod progress;
mod user_sessions;

/// Django's sessions for Rust: manage a session store and run the demo app.
#[derive(Parser, Debug)]
#[command(name = "cloakroom", version, about)]
struct Cli {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
// Parsed once at start-up: the demo's many flags in its variant cost nothing worth a box.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Create the session table, its expiry index and the user index `<table>_user` (idempotent).
    Migrate,
    /// Delete expired sessions in batches and say how many went.
    Clearsessions {
        #[command(flatten)]
        file: FileArgs,
    },
    /// Copy every live session to another store, keeping keys, data and expiry (idempotent).
    ///
    /// Engines are URLs: sqlite://FILE, postgres://…, mysql://…, redis://…,
    /// redis-cluster://…, redis-sentinel://…, file:///FOLDER, with `?table=NAME` for the SQL
    /// table.
    Copy {
        /// The engine to read from.
        #[arg(long, value_name = "URL")]
        from: String,
        /// The engine to write to (its table must exist: `cloakroom migrate`).
        #[arg(long, value_name = "URL")]
        to: String,
        #[command(flatten)]
        file: FileArgs,
        #[command(flatten)]
        codec: CodecArgs,
    },
    /// Print one session's decoded data and expiry as JSON.
    Inspect {
        /// The session key (the session cookie's value).
        key: String,
        #[command(flatten)]
        file: FileArgs,
        #[command(flatten)]
        codec: CodecArgs,
    },
    /// Print how many sessions are live and how many expired.
    Stats {
        #[command(flatten)]
        file: FileArgs,
    },
    /// Run the demo app (visits, cart, login, admin page) on the chosen store.
    Demo {
        /// The address to listen on.
        #[arg(
            long,
            default_value = "127.0.0.1:8000",
            env = "CLOAKROOM_ADDR",
            value_name = "HOST:PORT"
        )]
        addr: String,
        /// Live migration: also read sessions from this engine URL (as `copy --from`), moving
        /// each to the configured engine on first use; writes go to the configured engine only.
        #[arg(long, env = "CLOAKROOM_MIGRATE_FROM", value_name = "URL")]
        migrate_from: Option<String>,
        /// Create the tables that are missing (as `cloakroom migrate`) before serving, on a
        /// server database too; without it the demo refuses to start on a database that lacks
        /// them (an embedded SQLite file is always migrated).
        #[arg(long)]
        migrate: bool,
        /// Turns on the demo's admin page (`/admin/sessions`): the token that opens it (16+
        /// chars). Also `admin_token` in the `--config` file.
        #[arg(
            long,
            env = "CLOAKROOM_ADMIN_TOKEN",
            hide_env_values = true,
            value_name = "TOKEN"
        )]
        admin_token: Option<String>,
        /// On SIGTERM or Ctrl-C the demo stops accepting and lets the requests in flight finish
        /// (and save their sessions) for at most this many seconds, then exits anyway, saying so.
        #[arg(long, env = "CLOAKROOM_SHUTDOWN_TIMEOUT", default_value_t = 10, value_name = "SECONDS",
              allow_negative_numbers = true, value_parser = args::non_negative::<u64>)]
        shutdown_timeout: u64,
        /// How often a live page (`/live`, its WebSocket and event stream) checks its session
        /// in the store, on engines that cannot tell other app servers at once (MySQL, files,
        /// SQLite), and on PostgreSQL and Redis while their channel is down.
        #[arg(long, env = "CLOAKROOM_LIVE_POLL_MS", default_value_t = 500, value_name = "MS",
              value_parser = clap::value_parser!(u64).range(1..))]
        live_poll_ms: u64,
        #[command(flatten)]
        codec: CodecArgs,
        #[command(flatten)]
        session: SessionArgs,
    },
}

impl Command {
    /// The flags of this subcommand beyond the store's.
    fn extra(&self) -> Extra<'_> {
        match self {
            Self::Migrate => Extra::default(),
            Self::Clearsessions { file } | Self::Stats { file } => Extra {
                file: Some(file),
                ..Extra::default()
            },
            Self::Copy { file, codec, .. } | Self::Inspect { file, codec, .. } => Extra {
                file: Some(file),
                codec: Some(codec),
                session: None,
            },
            Self::Demo { codec, session, .. } => Extra {
                file: None,
                codec: Some(codec),
                session: Some(session),
            },
        }
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
    #[error("cannot listen on {addr}: {source}; stop what is using it, or choose another address with `--addr HOST:PORT`")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot reach the {engine} server at {at}: {}; check that it runs there, or fix `{flag}`", full_message(.source))]
    Unreachable {
        engine: &'static str,
        /// Host and port (or the hosts of a cluster), never the credentials.
        at: String,
        flag: &'static str,
        #[source]
        source: cloakroom::engines::OpenError,
    },
    #[error("no such database file: {} (run `cloakroom migrate` first?)", .0.display())]
    NoDatabaseFile(std::path::PathBuf),
    #[error("the `{0}` engine cannot list its sessions (signed cookies live in browsers)")]
    NoScan(String),
    #[error("the `{0}` engine keeps no sessions on the server (signed cookies live in browsers): name a db, cache or file engine")]
    NothingStored(String),
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

/// The message of `e` and of each error under it that adds something, as one line: a driver's
/// reason ("Connection refused") is often only in the source.
fn full_message(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(source) = next {
        let more = source.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        next = source.source();
    }
    text
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let (settings, file_demo) = cli.store.resolve(&cli.command.extra())?;
    match cli.command {
        Command::Migrate => {
            let opened = ops::open(&settings, ops::Open::MayCreate).await?;
            let migrate = opened
                .server()
                .and_then(|server| server.migrate.clone())
                .ok_or_else(|| CliError::NothingToMigrate(settings.store.engine.to_string()))?;
            migrate.migrate().await?;
            println!(
                "the session table `{}` is ready ({})",
                settings.store.table,
                opened.engine()
            );
        }
        Command::Clearsessions { .. } => {
            let opened = ops::open(&settings, ops::Open::Existing).await?;
            let cleared = ops::clear(&opened).await?;
            println!("deleted {cleared} expired sessions");
        }
        Command::Copy { from, to, .. } => {
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
        Command::Inspect { key, .. } => {
            let opened = ops::open(&settings, ops::Open::Existing).await?;
            let view = ops::inspect(&opened, &settings, &key)
                .await?
                .ok_or(CliError::NoSuchSession)?;
            println!("{view}");
        }
        Command::Stats { .. } => {
            let opened = ops::open(&settings, ops::Open::Existing).await?;
            println!("{}", ops::stats(&opened, &settings).await?);
        }
        Command::Demo {
            addr,
            migrate_from,
            migrate,
            admin_token,
            shutdown_timeout,
            live_poll_ms,
            ..
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
                live_poll: std::time::Duration::from_millis(live_poll_ms),
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
        .with_writer(progress::LogWriter)
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
            eprintln!("error: {}", full_message(&e));
            ExitCode::FAILURE
        }
    }
}
