//! The latency phase: what a session layer's race safety costs other requests, not only
//! throughput. Three scenarios per server, on the `GET /slow?ms=N` route every session server
//! has (it reads the session, then takes N ms):
//!
//! 1. one visitor's 20 parallel slow reads of 100 ms: the wall time of all twenty (100 ms if
//!    they run at once, 2 s if they queue);
//! 2. a fast request behind the same visitor's slow handler (`--slow-ms`): its own latency;
//! 3. `--long-polls` visitors each holding a slow request while 1,000 other visitors send one
//!    fast read each (50 at a time): the others' latency, and how many waited over 1 s.
//!
//! The client is this process on the load core, on plain HTTP/1.1 connections.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::runner::{Env, Start};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// What one server did in the three scenarios.
struct Measured {
    parallel_reads: Duration,
    behind_slow: Duration,
    others: Vec<Duration>,
}

impl Env {
    /// Runs the three scenarios on every selected session server with a `/slow` route.
    pub(crate) fn latency(&mut self) -> Result {
        pin_self(self.args.load_cpu);
        let specs: Vec<_> = self
            .selected()
            .into_iter()
            .filter(|s| s.name.starts_with("cloakroom-") || s.name.starts_with("tower-sessions-"))
            .collect();
        let (long_polls, slow) = (
            self.args.long_polls,
            Duration::from_millis(self.args.slow_ms),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut rows = Vec::new();
        for spec in specs {
            eprintln!("latency: {}", spec.name);
            let measured = (|| -> Result<Measured> {
                let server = self.start(spec, Start::default())?;
                runtime.block_on(scenarios(server.port, long_polls, slow))
            })();
            match measured {
                Ok(m) => rows.push((spec.name, m)),
                Err(e) => eprintln!("latency: {}: {e}", spec.name),
            }
        }
        let mut text = format!(
            "\n## Latency under concurrency\n\n`--phases latency`: (1) one visitor's 20 parallel \
             reads that each take 100 ms, wall time of all 20; (2) a fast read of a visitor \
             whose other request is in a {} ms handler; (3) 1,000 visitors' fast reads (50 at a \
             time) while {long_polls} other visitors hold {} ms long-polls.\n\n\
             | server | (1) 20 × 100 ms reads | (2) fast behind slow | (3) p50 | (3) p99 | (3) max | (3) over 1 s |\n\
             |---|---:|---:|---:|---:|---:|---:|\n",
            slow.as_millis(),
            slow.as_millis()
        );
        for (name, m) in &rows {
            let mut others = m.others.clone();
            others.sort();
            let over = others
                .iter()
                .filter(|d| **d > Duration::from_secs(1))
                .count();
            let _ = writeln!(
                text,
                "| {name} | {} | {} | {} | {} | {} | {over} of {} |",
                ms(m.parallel_reads),
                ms(m.behind_slow),
                ms(percentile(&others, 0.5)),
                ms(percentile(&others, 0.99)),
                ms(others.last().copied().unwrap_or_default()),
                others.len()
            );
        }
        self.out(&text);
        Ok(())
    }
}

async fn scenarios(port: u16, long_polls: usize, slow: Duration) -> Result<Measured> {
    // (1) twenty parallel slow reads of one visitor.
    let visitor = new_visitor(port).await?;
    let started = Instant::now();
    let reads: Vec<_> = (0..20)
        .map(|_| tokio::spawn(get(port, "/slow?ms=100".into(), Some(visitor.clone()))))
        .collect();
    for r in reads {
        r.await??;
    }
    let parallel_reads = started.elapsed();

    // (2) a fast read behind the same visitor's slow handler.
    let slow_path = format!("/slow?ms={}", slow.as_millis());
    let held = tokio::spawn(get(port, slow_path.clone(), Some(visitor.clone())));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    get(port, "/read".into(), Some(visitor)).await?;
    let behind_slow = started.elapsed();
    held.await??;

    // (3) long-polls of some visitors, fast reads of the others.
    let mut pollers = Vec::with_capacity(long_polls);
    for _ in 0..long_polls {
        pollers.push(new_visitor(port).await?);
    }
    let mut others = Vec::with_capacity(1000);
    for _ in 0..1000 {
        others.push(new_visitor(port).await?);
    }
    let polls: Vec<_> = pollers
        .into_iter()
        .map(|c| tokio::spawn(get(port, slow_path.clone(), Some(c))))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let gate = Arc::new(tokio::sync::Semaphore::new(50));
    let fast: Vec<_> = others
        .into_iter()
        .map(|c| {
            let gate = Arc::clone(&gate);
            tokio::spawn(async move {
                let _turn = gate.acquire().await;
                let started = Instant::now();
                get(port, "/read".into(), Some(c)).await?;
                Ok::<_, std::io::Error>(started.elapsed())
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(fast.len());
    for f in fast {
        latencies.push(f.await??);
    }
    for p in polls {
        p.await??;
    }
    Ok(Measured {
        parallel_reads,
        behind_slow,
        others: latencies,
    })
}

/// A returning visitor: the cookie of a session that holds a counter.
async fn new_visitor(port: u16) -> Result<String> {
    let (status, cookie) = get(port, "/visits".into(), None).await?;
    match (status, cookie) {
        (200, Some(cookie)) => Ok(cookie),
        (status, _) => Err(format!("GET /visits answered {status} without a cookie").into()),
    }
}

/// `GET path` on its own connection: the status and the first cookie set, as `name=value`.
async fn get(
    port: u16,
    path: String,
    cookie: Option<String>,
) -> std::io::Result<(u16, Option<String>)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{cookie}Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let reply = crate::http::parse(&raw)?;
    let cookie = reply.cookie_pair();
    Ok((reply.status, cookie))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Runs this process (the client) on the load core, away from the server's.
fn pin_self(cpu: usize) {
    let _ = std::process::Command::new("taskset")
        .args(["-pc", &cpu.to_string(), &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .status();
}
