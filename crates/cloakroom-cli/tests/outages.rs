//! Store outages through the demo: a PostgreSQL, a MariaDB and a redis-server of the test's own,
//! on free loopback ports, killed (SIGKILL by pid) under load and started again on the same port
//! and data folder. The machine's own servers are never touched.
//!
//! While the store is down, requests that touch the session answer 503 with `Retry-After`
//! (fail closed) or 200 as an anonymous visitor (fail open): never a panic, never a dropped
//! connection, and `/health` keeps answering. Once the store is back the demo recovers by itself,
//! and on PostgreSQL and MariaDB the sessions written before the kill are still there. A second
//! restart, while the demo is idle with its connections open, costs at most one failed request.
//!
//! On Redis behind Sentinel the primary is killed and not started again: the sentinels promote
//! the replica, and the demo, which knows only the sentinels, follows by itself.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::redis_sentinel::RedisSentinel;
use support::servers::{Mariadb, Postgres, Redis, Server};
use support::{visitor, Demo};

/// What the load saw, by kind.
#[derive(Debug, Default)]
struct Seen {
    /// (path, status, had Retry-After)
    replies: Vec<(&'static str, u16, bool)>,
    /// Transport errors: a dropped connection or a timeout.
    transport: Vec<String>,
    /// (when it came back, how long it took, status) of every reply, in order of arrival.
    timeline: Vec<(Instant, Duration, u16)>,
}

/// Eight workers of one visitor hit `/api/visits` and `/health` until `stop`.
fn load(
    demo: &Demo,
    client: &reqwest::Client,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<Seen>>, Vec<tokio::task::JoinHandle<()>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let tasks = (0..8)
        .map(|i| {
            let (client, seen, stop) = (client.clone(), seen.clone(), stop.clone());
            let path: &'static str = if i % 4 == 3 { "/health" } else { "/api/visits" };
            let url = demo.url(path);
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let sent = client.get(&url).timeout(Duration::from_secs(10)).send();
                    match sent.await {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let retry = r.headers().contains_key("retry-after");
                            let body = r.text().await;
                            let mut seen = seen.lock().unwrap();
                            let now = Instant::now();
                            seen.timeline.push((now, now - started, status));
                            match body {
                                Ok(_) => seen.replies.push((path, status, retry)),
                                Err(e) => seen.transport.push(format!("{path}: body: {e}")),
                            }
                        }
                        Err(e) => seen.lock().unwrap().transport.push(format!("{path}: {e}")),
                    }
                }
            })
        })
        .collect();
    (seen, tasks)
}

async fn visits(client: &reqwest::Client, demo: &Demo) -> (u16, bool, Value) {
    let r = client
        .get(demo.url("/api/visits"))
        .send()
        .await
        .expect("the demo answers (a dropped connection means it panicked)");
    let status = r.status().as_u16();
    let retry = r.headers().contains_key("retry-after");
    let body = r.text().await.unwrap();
    (
        status,
        retry,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

async fn health(demo: &Demo) -> u16 {
    reqwest::get(demo.url("/health"))
        .await
        .expect("/health answers")
        .status()
        .as_u16()
}

/// The store restarts while the demo is idle, with `pooled` connections to it open (and now
/// dead). The demo must be back at once: only the request that meets the first dead
/// connection need fail.
///
/// Regression: the SQL pools handed out idle connections untested, so after such a restart
/// each pooled connection failed one request; the circuit breaker opened after five, and then
/// one trial per cooldown drained the rest: seconds of 503 with the store back.
async fn quick_restart(
    server: &mut impl Server,
    demo: &Demo,
    client: &reqwest::Client,
    pooled: usize,
) {
    // Bursts of new visitors (each a session write) until the demo holds `pooled` connections.
    let mut held = 0;
    for _ in 0..10 {
        let mut burst = tokio::task::JoinSet::new();
        for _ in 0..40 {
            let url = demo.url("/api/visits");
            burst.spawn(async move { visitor().get(url).send().await.map(|r| r.status()) });
        }
        while let Some(sent) = burst.join_next().await {
            let status = sent.unwrap().expect("the demo answers");
            assert_eq!(status, 200, "a new visitor before the restart");
        }
        held = server.clients();
        if held >= pooled {
            break;
        }
    }
    assert!(
        held >= pooled,
        "the demo opened only {held} connections, not {pooled}"
    );

    server.kill();
    server.start();
    let back = Instant::now();
    let mut refused = 0;
    loop {
        let (status, retry, body) = visits(client, demo).await;
        if status == 200 {
            break;
        }
        assert_eq!((status, retry), (503, true), "after the restart: {body}");
        refused += 1;
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "the demo did not recover within 30 s of a restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = back.elapsed();
    eprintln!("restart with {held} idle connections: {refused} refused, first 200 after {took:?}");
    // Typically 1 refused and ~100 ms. The slack is for a loaded 2-core machine, where the
    // fresh connections that replace the dead ones can outlast the 500 ms store timeout. The
    // old behaviour took one breaker cooldown (1 s) per dead connection beyond the fifth and
    // refused every request meanwhile: 100+ refused and 5-6 s with 10 connections.
    assert!(
        refused <= 3 && took < Duration::from_secs(3),
        "{refused} requests refused and {took:?} to the first 200 after a restart with \
         {held} idle connections"
    );
}

/// The whole scenario on one store: a session before the outage, load while it is killed,
/// fail-closed answers while it is down (and fail-open ones on a second demo), recovery, and a
/// second restart while idle with `pooled` connections open.
async fn outage(server: &mut impl Server, args: &[&str], durable: bool, pooled: usize) {
    let closed = Demo::start(&[args, &["--store-timeout-ms", "500"]].concat());
    let open = Demo::start(
        &[
            args,
            &["--store-timeout-ms", "500", "--on-store-error", "fail_open"],
        ]
        .concat(),
    );
    let client = visitor();
    let (status, _, body) = visits(&client, &closed).await;
    assert_eq!((status, body), (200, json!({ "visits": 1 })));
    let r = client
        .post(closed.url("/api/cart"))
        .json(&json!({ "item": "before-the-kill" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Load, then the kill in the middle of it.
    let stop = Arc::new(AtomicBool::new(false));
    let (seen, tasks) = load(&closed, &client, stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("a load worker panicked");
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(
        seen.transport.is_empty(),
        "dropped connections or timeouts under the outage: {:?}",
        &seen.transport[..seen.transport.len().min(5)]
    );
    for &(path, status, retry) in &seen.replies {
        match (path, status) {
            ("/health", 200) | ("/api/visits", 200) => {}
            ("/api/visits", 503) => assert!(retry, "a 503 without Retry-After"),
            _ => panic!("{path} answered {status} under the outage"),
        }
    }
    let refused = seen.replies.iter().filter(|r| r.1 == 503).count();
    assert!(refused > 0, "no 503 while the store was down: {seen:?}");
    let healthy = seen.replies.iter().filter(|r| r.0 == "/health").count();
    assert!(healthy > 0, "/health was never asked");

    // Down: fail closed is a 503 with Retry-After and a clear body; fail open is an anonymous
    // visitor with an empty session.
    let (status, retry, body) = visits(&client, &closed).await;
    assert_eq!(status, 503, "fail closed while down: {body}");
    assert!(retry, "a 503 without Retry-After");
    assert_eq!(health(&closed).await, 200);
    let stranger = visitor();
    for _ in 0..3 {
        let (status, _, body) = visits(&stranger, &open).await;
        assert_eq!(
            (status, body),
            (200, json!({ "visits": 1 })),
            "fail open while down"
        );
    }
    assert_eq!(health(&open).await, 200);

    // Back: the same demo process recovers by itself.
    server.start();
    let back = Instant::now();
    let deadline = back + Duration::from_secs(30);
    let body = loop {
        let (status, _, body) = visits(&client, &closed).await;
        if status == 200 {
            eprintln!("first 200 {:?} after the store was back", back.elapsed());
            break body;
        }
        assert_eq!(status, 503, "while recovering: {body}");
        assert!(
            Instant::now() < deadline,
            "the demo did not recover within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let count = body["visits"].as_u64().expect("a count");
    if durable {
        assert!(count > 1, "the session was lost in the outage: {body}");
        let cart: Value = client
            .get(closed.url("/api/cart"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            cart["items"]
                .as_array()
                .is_some_and(|items| items.contains(&json!("before-the-kill"))),
            "the cart written before the kill is gone: {cart}"
        );
    }
    // And new sessions work again on both demos.
    for demo in [&closed, &open] {
        let (status, _, body) = visits(&visitor(), demo).await;
        assert_eq!((status, body), (200, json!({ "visits": 1 })));
    }
    drop(open);
    quick_restart(server, &closed, &client, pooled).await;
}

/// Connections the SQL demo must hold before the idle restart: more than the breaker's
/// threshold (5), so that draining them one by one would show (the pool's limit is 10).
const POOLED: usize = 7;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_killed_under_load() {
    let mut pg = Postgres::new();
    let (url, table) = (pg.url(), support::unique_table("outage"));
    support::migrate(&url, &table);
    outage(
        &mut pg,
        &["--database-url", url.as_str(), "--table", table.as_str()],
        true,
        POOLED,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_killed_under_load() {
    let mut db = Mariadb::new();
    let (url, table) = (db.url(), support::unique_table("outage"));
    support::migrate(&url, &table);
    outage(
        &mut db,
        &["--database-url", url.as_str(), "--table", table.as_str()],
        true,
        POOLED,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load() {
    let mut redis = Redis::new();
    let url = redis.url();
    outage(
        &mut redis,
        &["--engine", "cache", "--cache-url", url.as_str()],
        false,
        // One multiplexed connection.
        1,
    )
    .await;
}

/// Redis behind Sentinel (a primary, a replica, three sentinels of the test's own): the primary
/// is killed by pid under load and never comes back. Visitors get 503 with `Retry-After`
/// (fail closed), each within the store timeout rather than hanging, while the sentinels
/// notice (`down-after-milliseconds` 1000) and promote the replica; then the same demo process
/// answers 200 again by itself, and a session that had reached the replica before the kill
/// is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sentinel_primary_killed_under_load() {
    let mut setup = tokio::task::spawn_blocking(RedisSentinel::start)
        .await
        .unwrap();
    let url = setup.url();
    let demo = Demo::start(&[
        "--engine",
        "cache",
        "--cache-url",
        url.as_str(),
        "--store-timeout-ms",
        "500",
    ]);
    let client = visitor();
    let (status, _, body) = visits(&client, &demo).await;
    assert_eq!((status, body), (200, json!({ "visits": 1 })));
    let r = client
        .post(demo.url("/api/cart"))
        .json(&json!({ "item": "before-the-kill" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // What the replica holds survives the failover; what it had not received yet would not
    // (asynchronous replication: see docs/engines.md).
    assert!(
        tokio::task::block_in_place(|| setup.wait_replicated()),
        "the replica never caught up"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let (seen, tasks) = load(&demo, &client, stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = Instant::now();
    let old = tokio::task::block_in_place(|| setup.kill_primary());
    // The sentinels' view, watched beside the visitors'.
    let promoted = tokio::task::spawn_blocking(move || {
        let new = setup.wait_promoted(old, Duration::from_secs(30));
        (setup, new, killed.elapsed())
    });

    // A probe on its own session: 503s first, then the first 200 is the recovery.
    let probe = visitor();
    let mut refused = 0;
    let recovered = loop {
        let (status, retry, body) = visits(&probe, &demo).await;
        match status {
            200 if refused > 0 => break killed.elapsed(),
            200 => {}
            503 => {
                assert!(retry, "a 503 without Retry-After: {body}");
                refused += 1;
            }
            _ => panic!("the probe got {status} during the failover: {body}"),
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "the demo did not recover within 30 s of the primary's kill ({refused} refused)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (_setup, new, promoted_after) = promoted.await.unwrap();
    let new = new.expect("the sentinels promoted the replica within 30 s");
    assert_ne!(new, old);
    // The load goes on a second after the recovery: nothing but 200 by then.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("a load worker panicked");
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(
        seen.transport.is_empty(),
        "dropped connections or timeouts during the failover: {:?}",
        &seen.transport[..seen.transport.len().min(5)]
    );
    for &(path, status, retry) in &seen.replies {
        match (path, status) {
            ("/health", 200) | ("/api/visits", 200) => {}
            ("/api/visits", 503) => assert!(retry, "a 503 without Retry-After"),
            _ => panic!("{path} answered {status} during the failover"),
        }
    }
    let count = |status: u16| seen.replies.iter().filter(|r| r.1 == status).count();
    assert!(count(503) > 0, "no 503 while there was no primary");
    let slowest = seen.timeline.iter().map(|t| t.1).max().unwrap_or_default();
    // The store timeout is 500 ms: a request waits for the reconnection that long at most,
    // then fails into the outage policy (the slack is for a loaded 2-core machine).
    assert!(
        slowest < Duration::from_secs(3),
        "a request took {slowest:?} during the failover: it hung instead of failing"
    );
    let settled = killed + recovered + Duration::from_millis(500);
    let late: Vec<_> = seen
        .timeline
        .iter()
        .filter(|t| t.0 > settled && t.2 != 200)
        .collect();
    assert!(
        late.is_empty(),
        "{} replies other than 200 more than 500 ms after the recovery",
        late.len()
    );
    eprintln!(
        "sentinel failover under load: primary killed; sentinels named the new primary after \
         {promoted_after:?}; first 200 after {recovered:?} ({refused} refused probes); load: \
         {} x 200, {} x 503, slowest reply {slowest:?}",
        count(200),
        count(503)
    );
    // The bound the docs state (docs/outages.md): down-after 1 s, the election and promotion,
    // the client's reconnection backoff (1 s at most) and the breaker's cooldown.
    assert!(
        recovered < Duration::from_secs(10),
        "{recovered:?} from the kill to the first 200"
    );

    // The session written (and replicated) before the kill is still there.
    let (status, _, body) = visits(&client, &demo).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["visits"].as_u64().is_some_and(|n| n > 1),
        "the session was lost in the failover: {body}"
    );
    let cart: Value = client
        .get(demo.url("/api/cart"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        cart["items"]
            .as_array()
            .is_some_and(|items| items.contains(&json!("before-the-kill"))),
        "the cart written before the kill is gone: {cart}"
    );
}

/// Redis behind Sentinel, the primary frozen (SIGSTOP) rather than killed: as when a network
/// partition cuts it off, its connections stay open and nothing comes back on them, so no
/// connection error tells the client to move. The sentinels promote the replica; the demo
/// must give up on the silent connection, ask the sentinels again and answer 200 without the
/// old primary ever coming back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sentinel_primary_frozen_is_left_for_the_promoted_replica() {
    let mut setup = tokio::task::spawn_blocking(RedisSentinel::start)
        .await
        .unwrap();
    let url = setup.url();
    let demo = Demo::start(&[
        "--engine",
        "cache",
        "--cache-url",
        url.as_str(),
        "--store-timeout-ms",
        "500",
    ]);
    let client = visitor();
    let (status, _, body) = visits(&client, &demo).await;
    assert_eq!((status, body), (200, json!({ "visits": 1 })));
    assert!(
        tokio::task::block_in_place(|| setup.wait_replicated()),
        "the replica never caught up"
    );

    let frozen = Instant::now();
    let old = tokio::task::block_in_place(|| setup.freeze_primary());
    let promoted = tokio::task::spawn_blocking(move || {
        let new = setup.wait_promoted(old, Duration::from_secs(30));
        (setup, new, frozen.elapsed())
    });
    let mut refused = 0;
    let recovered = loop {
        let (status, retry, body) = visits(&client, &demo).await;
        match status {
            200 if refused > 0 => break frozen.elapsed(),
            200 => {}
            503 => {
                assert!(retry, "a 503 without Retry-After: {body}");
                refused += 1;
            }
            _ => panic!("{status} while the primary was frozen: {body}"),
        }
        assert!(
            frozen.elapsed() < Duration::from_secs(30),
            "the demo still had no answer 30 s after the primary froze ({refused} refused): \
             it waits on the frozen primary's open connection"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (_setup, new, promoted_after) = promoted.await.unwrap();
    assert_ne!(new.expect("the sentinels promoted the replica"), old);
    eprintln!(
        "sentinel failover from a frozen primary: new primary named after {promoted_after:?}; \
         first 200 after {recovered:?} ({refused} refused)"
    );
    // The sentinels' 2.5-3.5 s, then the silent connection given up (0.5 s without a reply
    // once the breaker stops the commands) and a reconnection that may first meet the frozen
    // primary again (its port still accepts, its handshake times out after 5 s).
    assert!(
        recovered < Duration::from_secs(15),
        "{recovered:?} from the freeze to the first 200"
    );
    let (status, _, body) = visits(&client, &demo).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["visits"].as_u64().is_some_and(|n| n > 1),
        "the session was lost in the failover: {body}"
    );
}
