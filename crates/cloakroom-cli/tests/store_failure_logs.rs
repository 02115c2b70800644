//! Issue 14, point 9: during a Redis outage every request logged a WARN line (about 40,000
//! lines in 15 s). Repeated store failures now log the first one, then at most one summary
//! line per window with a count.

mod support;

use std::time::Duration;

use support::servers::{Redis, Scratch, Server as _};
use support::{bare, send, Demo};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_store_failures_logs_a_few_lines_not_one_per_request() {
    let mut redis = Redis::new();
    let url = redis.url();
    let dir = Scratch::new("store-failure-logs");
    let log = dir.join("demo.log");
    let demo = Demo::start_logged(
        &dir,
        &["--engine", "cache", "--cache-url", url.as_str()],
        &[],
        Some(&log),
    );
    let client = bare();
    assert_eq!(send(client.get(demo.url("/api/visits"))).await.status, 200);
    // Our own redis-server, stopped by its pid: never the machine's one on 6379.
    redis.kill();
    let requests = 400;
    let mut failed = 0;
    for _ in 0..requests {
        let reply = send(client.get(demo.url("/api/visits"))).await;
        if reply.status >= 500 {
            failed += 1;
        }
    }
    assert!(
        failed >= requests / 2,
        "the outage shows: {failed} of {requests} failed"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let warns: Vec<&str> = text.lines().filter(|l| l.contains("WARN")).collect();
    eprintln!("{} WARN lines for {failed} failed requests:", warns.len());
    for line in warns.iter().take(12) {
        eprintln!("  {line}");
    }
    assert!(
        warns.len() <= 10,
        "{} WARN lines for {failed} failed requests (the first, then one summary per window)",
        warns.len()
    );
    drop(demo);
}
