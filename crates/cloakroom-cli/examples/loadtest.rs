//! A load and fault run against the demo (`scripts/loadtest.sh` wraps it).
//!
//! N visitors, each with its own cookie and C requests in flight at once, alternate
//! `POST /api/cart` (a distinct item) and `GET /api/visits` for a bounded time against
//! `cloakroom demo` on the chosen engine. Optionally the store (a PostgreSQL, MariaDB or
//! redis-server this program started itself) is killed with SIGKILL mid-run and started again;
//! on `redis-sentinel` (a primary, a replica and three sentinels of its own) the primary is
//! killed and not started again: the sentinels promote the replica.
//!
//! At the end each visitor's cart and counter are read back and compared with the requests the
//! demo confirmed with a 200: anything missing is a lost update. Printed: requests, errors by
//! kind (status code or transport), lost updates, p50/p99 latency.
//!
//! ```text
//! cargo run -p cloakroom-cli --example loadtest -- --bin target/debug/cloakroom \
//!     --engine postgres --visitors 50 --concurrency 4 --seconds 10 --restart-store
//! ```

use cloakroom_testkit::servers;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use servers::redis_sentinel::RedisSentinel;
use servers::{free_port, Mariadb, Postgres, Redis, Scratch, Server};

struct Options {
    bin: String,
    engine: String,
    visitors: usize,
    concurrency: usize,
    seconds: u64,
    restart_store: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: loadtest --bin PATH --engine sqlite|cache|postgres|mysql|redis|redis-sentinel|file|cached_db \
         [--visitors N] [--concurrency C] [--seconds S] [--restart-store]\n\
         postgres, mysql (MariaDB), redis and cached_db start a server of their own (on a free \
         loopback port), which --restart-store kills and starts again; redis-sentinel starts a \
         primary, a replica and three sentinels, and --restart-store kills the primary."
    );
    std::process::exit(2)
}

fn options() -> Options {
    let mut o = Options {
        bin: "target/debug/cloakroom".into(),
        engine: "sqlite".into(),
        visitors: 50,
        concurrency: 4,
        seconds: 10,
        restart_store: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--bin" => o.bin = value(),
            "--engine" => o.engine = value(),
            "--visitors" => o.visitors = value().parse().unwrap_or_else(|_| usage()),
            "--concurrency" => o.concurrency = value().parse().unwrap_or_else(|_| usage()),
            "--seconds" => o.seconds = value().parse().unwrap_or_else(|_| usage()),
            "--restart-store" => o.restart_store = true,
            _ => usage(),
        }
    }
    // The demo runs in a folder of its own: make the path absolute first.
    if let Ok(path) = std::fs::canonicalize(&o.bin) {
        o.bin = path.display().to_string();
    }
    o
}

/// The store the run uses, and the demo arguments that reach it.
enum Store {
    Plain,
    Postgres(Postgres),
    Mariadb(Mariadb),
    Redis(Redis),
    Sentinel(RedisSentinel),
}

impl Store {
    fn server(&mut self) -> Option<&mut dyn Server> {
        match self {
            Store::Plain => None,
            Store::Postgres(pg) => Some(pg),
            Store::Mariadb(db) => Some(db),
            Store::Redis(r) => Some(r),
            Store::Sentinel(_) => None,
        }
    }
}

fn unique_table() -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).unwrap();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("t_load_{hex}")
}

fn migrate(bin: &str, url: &str, table: &str) {
    let ok = Command::new(bin)
        .args(["migrate", "--database-url", url, "--table", table])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "cloakroom migrate on {url} failed (is the server running?)"
    );
}

fn setup(o: &Options, dir: &Scratch) -> (Store, Vec<String>) {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    match o.engine.as_str() {
        "sqlite" => (Store::Plain, vec![]),
        "cache" => (Store::Plain, s(&["--engine", "cache"])),
        "file" => {
            let path = dir.join("sessions");
            std::fs::create_dir_all(&path).unwrap();
            let path = path.display().to_string();
            (Store::Plain, s(&["--engine", "file", "--file-path", &path]))
        }
        "postgres" => {
            let pg = Postgres::new();
            let (url, table) = (pg.url(), unique_table());
            migrate(&o.bin, &url, &table);
            (
                Store::Postgres(pg),
                s(&["--database-url", &url, "--table", &table]),
            )
        }
        "mysql" => {
            let db = Mariadb::new();
            let (url, table) = (db.url(), unique_table());
            migrate(&o.bin, &url, &table);
            (
                Store::Mariadb(db),
                s(&["--database-url", &url, "--table", &table]),
            )
        }
        "redis" => {
            let r = Redis::new();
            let url = r.url();
            (
                Store::Redis(r),
                s(&["--engine", "cache", "--cache-url", &url]),
            )
        }
        "redis-sentinel" => {
            let setup = RedisSentinel::start();
            let url = setup.url();
            (
                Store::Sentinel(setup),
                s(&["--engine", "cache", "--cache-url", &url]),
            )
        }
        "cached_db" => {
            let r = Redis::new();
            let url = r.url();
            (
                Store::Redis(r),
                s(&["--engine", "cached_db", "--cache-url", &url]),
            )
        }
        _ => usage(),
    }
}

fn start_demo(o: &Options, dir: &Scratch, args: &[String]) -> (Child, String) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(&o.bin)
        .args(["demo", "--addr", &addr])
        .args(args)
        .current_dir(&**dir)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", o.bin));
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&addr).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the demo exited: {status}");
        }
        assert!(Instant::now() < deadline, "the demo did not start");
        std::thread::sleep(Duration::from_millis(25));
    }
    (child, format!("http://{addr}"))
}

/// What the visitors saw.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    /// "200", "503", "transport: timeout" …
    outcomes: BTreeMap<String, u64>,
    /// When a restarted store was answering again (set by the restart).
    back: Option<Instant>,
    /// The first 200 and the last 503 that came back after `back`.
    first_ok_after_back: Option<Instant>,
    last_refusal_after_back: Option<Instant>,
}

impl Tally {
    fn record(&mut self, outcome: String, latency_us: u64) {
        if let Some(back) = self.back {
            let now = Instant::now();
            if now >= back {
                match outcome.as_str() {
                    "200" => {
                        self.first_ok_after_back.get_or_insert(now);
                    }
                    "503" => self.last_refusal_after_back = Some(now),
                    _ => {}
                }
            }
        }
        self.latencies_us.push(latency_us);
        *self.outcomes.entry(outcome).or_default() += 1;
    }
}

/// One visitor's confirmed writes.
#[derive(Default)]
struct Confirmed {
    carts: u64,
    visits: u64,
}

fn kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "transport: timeout"
    } else if e.is_connect() {
        "transport: connect"
    } else if e.is_body() || e.is_decode() {
        "transport: body"
    } else {
        "transport: other"
    }
}

async fn worker(
    client: reqwest::Client,
    base: String,
    name: String,
    until: Instant,
    tally: Arc<Mutex<Tally>>,
    confirmed: Arc<Mutex<Confirmed>>,
) {
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let cart = n.is_multiple_of(2);
        let request = if cart {
            client
                .post(format!("{base}/api/cart"))
                .json(&json!({ "item": format!("{name}-{n}") }))
        } else {
            client.get(format!("{base}/api/visits"))
        };
        let started = Instant::now();
        let result = request.timeout(Duration::from_secs(10)).send().await;
        let outcome = match result {
            Ok(r) => {
                let status = r.status().as_u16();
                match r.bytes().await {
                    Ok(_) => {
                        if status == 200 {
                            let mut c = confirmed.lock().unwrap();
                            if cart {
                                c.carts += 1;
                            } else {
                                c.visits += 1;
                            }
                        }
                        status.to_string()
                    }
                    Err(e) => kind(&e).to_owned(),
                }
            }
            Err(e) => kind(&e).to_owned(),
        };
        let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        tally.lock().unwrap().record(outcome, us);
    }
}

async fn read(client: &reqwest::Client, url: String) -> Option<Value> {
    let r = client.get(url).send().await.ok()?;
    if r.status() != 200 {
        return None;
    }
    r.json().await.ok()
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)] as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let o = options();
    let dir = Scratch::new("loadtest");
    let (mut store, args) = setup(&o, &dir);
    if o.restart_store && store.server().is_none() && !matches!(store, Store::Sentinel(_)) {
        eprintln!(
            "--restart-store needs a store this program starts: postgres, mysql, redis, \
             redis-sentinel or cached_db"
        );
        std::process::exit(2);
    }
    let (mut demo, base) = start_demo(&o, &dir, &args);

    // Every visitor gets its session first: visits = 1.
    let mut visitors = Vec::new();
    for i in 0..o.visitors {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .unwrap();
        let first = read(&client, format!("{base}/api/visits")).await;
        assert_eq!(
            first,
            Some(json!({ "visits": 1 })),
            "visitor {i} could not start a session"
        );
        visitors.push((client, Arc::new(Mutex::new(Confirmed::default()))));
    }

    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let until = started + Duration::from_secs(o.seconds);
    let mut tasks = Vec::new();
    for (i, (client, confirmed)) in visitors.iter().enumerate() {
        for c in 0..o.concurrency {
            tasks.push(tokio::spawn(worker(
                client.clone(),
                base.clone(),
                format!("v{i}w{c}"),
                until,
                tally.clone(),
                confirmed.clone(),
            )));
        }
    }
    if o.restart_store {
        tokio::time::sleep(Duration::from_secs(o.seconds) / 3).await;
        if let Store::Sentinel(setup) = &mut store {
            eprintln!("killing the primary (SIGKILL) …");
            let killed = Instant::now();
            let old = tokio::task::block_in_place(|| setup.kill_primary());
            let new =
                tokio::task::block_in_place(|| setup.wait_promoted(old, Duration::from_secs(30)));
            eprintln!(
                "the sentinels named the new primary ({new:?}) {} ms after the kill",
                killed.elapsed().as_millis()
            );
            tally.lock().unwrap().back = Some(Instant::now());
        } else if let Some(server) = store.server() {
            eprintln!("killing the store (SIGKILL) …");
            server.kill();
            tokio::time::sleep(Duration::from_secs(2)).await;
            eprintln!("starting the store again …");
            server.start();
            tally.lock().unwrap().back = Some(Instant::now());
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed();

    // Read back what each visitor has; wait out a breaker that may still be open.
    let mut lost_carts = 0i64;
    let mut lost_visits = 0i64;
    let mut unreadable = 0;
    for (client, confirmed) in &visitors {
        let (expected_carts, expected_visits) = {
            let c = confirmed.lock().unwrap();
            (c.carts, c.visits)
        };
        let mut cart = None;
        for _ in 0..50 {
            cart = read(client, format!("{base}/api/cart")).await;
            if cart.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let visits = read(client, format!("{base}/api/visits")).await;
        match (cart, visits) {
            (Some(cart), Some(visits)) => {
                let items = cart["count"].as_i64().unwrap_or(0);
                // The first visit, the confirmed ones, and this read.
                let seen = visits["visits"].as_i64().unwrap_or(0);
                lost_carts += i64::try_from(expected_carts).unwrap_or(0) - items;
                lost_visits += i64::try_from(expected_visits).unwrap_or(0) + 2 - seen;
            }
            _ => unreadable += 1,
        }
    }
    let _ = demo.kill();
    let _ = demo.wait();

    let mut t = std::mem::take(&mut *tally.lock().unwrap());
    t.latencies_us.sort_unstable();
    let total: u64 = t.outcomes.values().sum();
    println!(
        "engine={} visitors={} concurrency={} seconds={:.1} restart_store={}",
        o.engine,
        o.visitors,
        o.concurrency,
        elapsed.as_secs_f64(),
        o.restart_store
    );
    println!(
        "requests={total} ({:.0}/s)",
        total as f64 / elapsed.as_secs_f64()
    );
    let outcomes: Vec<String> = t
        .outcomes
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    println!("outcomes: {}", outcomes.join(", "));
    println!(
        "lost updates: cart items {lost_carts}, visits {lost_visits} (expected minus observed, all visitors){}",
        if unreadable > 0 {
            format!("; {unreadable} visitors unreadable at the end")
        } else {
            String::new()
        }
    );
    println!(
        "latency: p50 {:.2} ms, p99 {:.2} ms",
        percentile(&t.latencies_us, 0.50),
        percentile(&t.latencies_us, 0.99)
    );
    if let Some(back) = t.back {
        let after = |at: Option<Instant>| match at {
            Some(at) => format!("{} ms after", at.duration_since(back).as_millis()),
            None => "none after".to_owned(),
        };
        println!(
            "recovery: the store was back (on Sentinel: the new primary named); first 200 {}, \
             last 503 {}",
            after(t.first_ok_after_back),
            after(t.last_refusal_after_back)
        );
    }
}
