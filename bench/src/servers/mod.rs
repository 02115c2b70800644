//! The servers under test. Each runs as its own process (`cloakroom-bench serve --server NAME`)
//! so the runner can pin it to a core and read its CPU time from `/proc/<pid>/stat`.
//!
//! Every server answers the same routes:
//! - `GET /visits`: read the counter, add one, save (sets a cookie for a new visitor);
//! - `GET /read`: read the counter, change nothing;
//! - `GET /slow?ms=N`: read the counter, then take N ms (the latency phase's slow handler);
//! - `GET /__stats`: how many store writes the server made (with `--count-writes`).

mod actix;
mod bare;
mod cloak;
mod towers;

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Every session a prefill stores holds this much: a counter, like the benchmark's own.
pub const PREFILL_DATA: &str = r#"{"visits":1}"#;
/// The PostgreSQL database of the benchmark; tables are named per run and dropped after it.
pub const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The PostgreSQL database the benchmark uses: `CLOAKROOM_BENCH_POSTGRES_URL` when set (so
/// `bench/callgrind.py` can point a server at a private PostgreSQL whose statements it
/// counts), [`POSTGRES_URL`] otherwise.
pub fn postgres_url() -> String {
    std::env::var("CLOAKROOM_BENCH_POSTGRES_URL").unwrap_or_else(|_| POSTGRES_URL.to_owned())
}
/// How long every server keeps a session (the same for all, so expiry work is equal).
pub const SESSION_SECONDS: u64 = 3600;

/// One server: its name, the store family it is compared within, and what it is.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// The name on the command line and in the tables.
    pub name: &'static str,
    /// The store it keeps sessions in: `memory`, `sqlite`, `postgres`, `redis`, `cookie` (the
    /// data signed into the cookie; `bare` for the limit with no session layer).
    pub engine: &'static str,
    /// Whether this is cloakroom (the others are its peers).
    pub ours: bool,
}

const fn spec(name: &'static str, engine: &'static str, ours: bool) -> Spec {
    Spec { name, engine, ours }
}

/// Every server, in the order each round runs them. Adding a server is one line here plus its
/// arm in [`serve`] (a cloakroom engine only needs its settings in `cloak::settings`; its
/// actix-web twin, `cloakroom-actix-…`, takes the settings of the axum server of that name).
pub const SERVERS: &[Spec] = &[
    spec("bare-axum", "bare", false),
    spec("bare-actix", "bare", false),
    spec("tower-sessions-memory", "memory", false),
    spec("cloakroom-memory", "memory", true),
    spec("cloakroom-actix-memory", "memory", true),
    spec("actix-session-cookie", "cookie", false),
    spec("cloakroom-cookies", "cookie", true),
    spec("cloakroom-actix-cookies", "cookie", true),
    spec("tower-sessions-sqlite", "sqlite", false),
    spec("tower-sessions-sqlite-wal", "sqlite", false),
    spec("cloakroom-sqlite", "sqlite", true),
    spec("cloakroom-actix-sqlite", "sqlite", true),
    spec("tower-sessions-postgres", "postgres", false),
    spec("cloakroom-postgres", "postgres", true),
    spec("cloakroom-postgres-hot", "postgres", true),
    spec("cloakroom-actix-postgres", "postgres", true),
    spec("tower-sessions-redis", "redis", false),
    spec("actix-session-redis", "redis", false),
    spec("cloakroom-redis", "redis", true),
    spec("cloakroom-actix-redis", "redis", true),
    spec("cloakroom-redis-cached", "redis", true),
];

/// What `serve` was asked to do.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Which server (see `SERVERS`).
    #[arg(long)]
    pub server: String,
    /// The loopback port to listen on.
    #[arg(long)]
    pub port: u16,
    /// A folder for files (SQLite databases).
    #[arg(long)]
    pub dir: PathBuf,
    /// A name unique to this run, for tables.
    #[arg(long)]
    pub tag: String,
    /// Store this many sessions directly before serving.
    #[arg(long, default_value_t = 0)]
    pub prefill: u64,
    /// The Redis database to keep sessions in: the benchmark's own (11, or 12 for a second
    /// copy running at the same time), flushed before and after a run, so it never touches keys
    /// of anything else that shares the server.
    #[arg(long, default_value_t = 11)]
    pub redis_db: u8,
    /// The loopback port of the Redis server: the shared one by default; `bench/callgrind.py`
    /// starts a private one, so that its command statistics count this server's commands only.
    #[arg(long, default_value_t = 6379)]
    pub redis_port: u16,
    /// Count store writes (served at `/__stats`).
    #[arg(long)]
    pub count_writes: bool,
}

impl ServeArgs {
    /// The Redis URL of this server's database.
    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}/{}", self.redis_port, self.redis_db)
    }
}

/// How long `GET /slow?ms=N` takes: N milliseconds (0 when absent or unreadable).
pub fn slow_for(query: Option<&str>) -> std::time::Duration {
    let ms = query
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("ms="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    std::time::Duration::from_millis(ms)
}

/// Store writes seen by the counting wrappers.
pub static WRITES: AtomicU64 = AtomicU64::new(0);
/// Store loads seen by the counting wrappers.
pub static LOADS: AtomicU64 = AtomicU64::new(0);

/// The `/__stats` body.
pub fn stats_json() -> String {
    format!(
        r#"{{"writes":{},"loads":{}}}"#,
        WRITES.load(Ordering::Relaxed),
        LOADS.load(Ordering::Relaxed)
    )
}

/// This process's resident memory in bytes.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Measures a prefill: resident memory before and after, and how long it took.
pub struct Prefill {
    rss_before: u64,
    started: Instant,
}

impl Prefill {
    /// Starts measuring.
    pub fn start() -> Self {
        Self {
            rss_before: rss_bytes(),
            started: Instant::now(),
        }
    }

    /// Tells the runner the server is up (one `READY {json}` line on stdout).
    pub fn ready(self, stored: u64) {
        let line = format!(
            r#"READY {{"rss_before":{},"rss_after":{},"prefill_ms":{},"prefilled":{}}}"#,
            self.rss_before,
            rss_bytes(),
            self.started.elapsed().as_millis(),
            stored
        );
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// The result of a server's set-up or run.
pub type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Runs the named server until it is killed.
pub fn serve(args: ServeArgs) -> Result {
    match args.server.as_str() {
        "bare-actix" | "actix-session-cookie" | "actix-session-redis" => actix::serve(args),
        name if name.starts_with("cloakroom-actix-") => actix::serve(args),
        _ => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(serve_axum(args))
        }
    }
}

async fn serve_axum(args: ServeArgs) -> Result {
    let prefill = Prefill::start();
    let (app, stored) = match args.server.as_str() {
        "bare-axum" => (bare::axum_app(), 0),
        name if name.starts_with("cloakroom-") => cloak::app(&args).await?,
        name if name.starts_with("tower-sessions-") => towers::app(&args).await?,
        other => return Err(format!("no server named `{other}`").into()),
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    prefill.ready(stored);
    axum::serve(listener, app).await?;
    Ok(())
}
