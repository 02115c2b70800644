//! `cloakroom-bench clients`: what one `GET` costs through each Redis client, without HTTP.
//!
//! Issue 20 asks whether the client library is where the Redis engine's instructions go (fred,
//! which the engine uses, against redis-rs's multiplexed connection, which actix-session
//! uses). This runs `--requests` loads of one small session, `--concurrency` at a time, on
//! one tokio worker as the bench's servers do, through one of:
//!
//! - `store`: the engine's own load (`RedisStore::load`: fred, its connection on a thread of
//!   its own, the value's header read);
//! - `fred`: fred's `GET` with fred's defaults (its connection task among the app's tasks);
//! - `redis-rs`: redis-rs's `GET` on a `MultiplexedConnection`.
//!
//! `bench/clients.py` runs each under callgrind twice (few and many requests) and divides the
//! difference by the difference in requests: instructions per `GET`, set-up excluded.

use std::sync::Arc;

use clap::{Args, ValueEnum};
use cloakroom::engines::redis::RedisStore;
use cloakroom::SessionStore as _;
use fred::interfaces::{ClientLike as _, KeysInterface as _};
use redis::AsyncCommands as _;

/// The client a run goes through.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Client {
    /// The engine's load (`RedisStore::load`).
    Store,
    /// fred's `GET`, its connection task on the app's runtime.
    Fred,
    /// redis-rs's `GET` on a multiplexed connection.
    RedisRs,
}

/// `cloakroom-bench clients`.
#[derive(Args, Debug)]
pub struct ClientArgs {
    /// Which client.
    #[arg(long, value_enum)]
    client: Client,
    /// How many loads in all.
    #[arg(long, default_value_t = 10_000)]
    requests: usize,
    /// How many run at once (as many requests in flight on one worker).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// The Redis to load from (a private one: the run writes one key in database 13).
    #[arg(long, default_value_t = 6390)]
    redis_port: u16,
}

/// The session key the runs load (written once at the start).
const KEY: &str = "clientcostsession00000000000000";

/// Runs `args` and prints how many loads found the session.
pub fn run(args: &ClientArgs) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let url = format!("redis://127.0.0.1:{}/13", args.redis_port);
    let found = runtime.block_on(async {
        // Written through the engine, so that every client reads the same value.
        let store = RedisStore::connect(&url).await?;
        let now = time::OffsetDateTime::now_utc();
        let record = cloakroom::Record {
            data: bytes::Bytes::from_static(br#"{"visits":41}"#),
            expires_at: now + time::Duration::hours(1),
        };
        store.delete(KEY).await?;
        store.create(KEY, &record).await?;
        let per_task = args.requests / args.concurrency.max(1);
        let found: usize = match args.client {
            Client::Store => {
                let store = Arc::new(store);
                spread(args.concurrency, per_task, move || {
                    let store = store.clone();
                    async move {
                        let now = time::OffsetDateTime::now_utc();
                        store.load(KEY, now).await.ok().flatten().is_some()
                    }
                })
                .await
            }
            Client::Fred => {
                let config = fred::types::config::Config::from_url(&url)?;
                let client = fred::clients::Client::new(config, None, None, None);
                client.init().await?;
                let redis_key = store.redis_key(KEY);
                spread(args.concurrency, per_task, move || {
                    let (client, key) = (client.clone(), redis_key.clone());
                    async move {
                        let got: Option<bytes::Bytes> = client.get(key).await.ok().flatten();
                        got.is_some()
                    }
                })
                .await
            }
            Client::RedisRs => {
                let client = redis::Client::open(url.as_str())?;
                let connection = client.get_multiplexed_async_connection().await?;
                let redis_key = store.redis_key(KEY);
                spread(args.concurrency, per_task, move || {
                    let (mut connection, key) = (connection.clone(), redis_key.clone());
                    async move {
                        let got: Option<Vec<u8>> = connection.get(key).await.ok().flatten();
                        got.is_some()
                    }
                })
                .await
            }
        };
        Ok::<_, Box<dyn std::error::Error>>(found)
    })?;
    println!("{found} of {} loads found the session", args.requests);
    Ok(())
}

/// Runs `load` `per_task` times in each of `tasks` tasks; counts the loads that found the
/// session.
async fn spread<F, Fut>(tasks: usize, per_task: usize, load: F) -> usize
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let load = Arc::new(load);
    let handles: Vec<_> = (0..tasks.max(1))
        .map(|_| {
            let load = load.clone();
            tokio::spawn(async move {
                let mut found = 0;
                for _ in 0..per_task {
                    found += usize::from(load().await);
                }
                found
            })
        })
        .collect();
    let mut found = 0;
    for handle in handles {
        found += handle.await.unwrap_or(0);
    }
    found
}
