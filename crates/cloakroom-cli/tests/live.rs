//! Live revocation across app servers, over real HTTP: two demo servers on one store; a
//! visitor's WebSocket (axum's `ws`) and server-sent events stream are open on server B;
//! "log out everywhere" on server A closes both within the stated delay, and leaves another
//! user's connection open. Each test prints the delay it measured:
//!
//! ```text
//! cargo nextest run -p cloakroom-cli --all-features --test live --success-output immediate
//! ```

mod support;

use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use support::{bare, logged_in, send, session, Demo};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The close code the demo sends when the session ended.
const SESSION_ENDED: u16 = 4001;

/// Opens the demo's live WebSocket with session `key`, and reads its greeting.
async fn open_socket(demo: &Demo, key: &str) -> Socket {
    let url = demo.url("/api/live/ws").replace("http://", "ws://");
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("cookie", session(key).parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let hello = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("the socket greets within 5 s")
        .unwrap()
        .unwrap();
    assert!(hello.to_text().unwrap().contains("open"), "{hello:?}");
    socket
}

/// Waits (at most `limit`) for the socket to close: its close code and reason.
async fn closed(socket: &mut Socket, limit: Duration) -> Option<(u16, String)> {
    let wait = async {
        while let Some(message) = socket.next().await {
            match message {
                Ok(Message::Close(frame)) => {
                    return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                }
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    };
    tokio::time::timeout(limit, wait).await.ok().flatten()
}

/// An open event stream, read as text.
struct Stream {
    response: reqwest::Response,
    text: String,
}

impl Stream {
    async fn open(demo: &Demo, key: &str) -> Self {
        let response = bare()
            .get(demo.url("/api/live/events"))
            .header("cookie", session(key))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let mut stream = Self {
            response,
            text: String::new(),
        };
        assert!(stream.until("event: open", Duration::from_secs(5)).await);
        stream
    }

    /// Reads until the text holds `needle` (at most `limit`): whether it came.
    async fn until(&mut self, needle: &str, limit: Duration) -> bool {
        let read = async {
            while !self.text.contains(needle) {
                match self.response.chunk().await {
                    Ok(Some(chunk)) => self.text.push_str(&String::from_utf8_lossy(&chunk)),
                    _ => return false,
                }
            }
            true
        };
        tokio::time::timeout(limit, read).await.unwrap_or(false)
    }
}

/// Two app servers on one store: ana's WebSocket and event stream on B end when she logs out
/// everywhere on A, within `bound` of the revocation's answer, saying `why` (`revoked` where the store's channel tells;
/// `gone` where B finds the session missing by polling); bob's WebSocket on B stays open.
async fn revoked_on_the_other_server(engine: &str, args: &[&str], bound: Duration, why: &str) {
    let (a, b) = (Demo::start(args), Demo::start(args));
    let ana = logged_in(&a, "ana").await;
    let ana_elsewhere = logged_in(&a, "ana").await;
    let bob = logged_in(&b, "bob").await;
    let mut ana_socket = open_socket(&b, &ana).await;
    let mut ana_stream = Stream::open(&b, &ana_elsewhere).await;
    let mut bob_socket = open_socket(&b, &bob).await;
    // Let the listeners of both servers settle (they connect at start).
    tokio::time::sleep(Duration::from_millis(300)).await;

    let start = Instant::now();
    let reply = send(
        bare()
            .post(a.url("/api/logout-everywhere"))
            .header("cookie", session(&ana)),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["revoked"], 2);
    let revoked_at = start.elapsed();

    let close = closed(&mut ana_socket, bound + Duration::from_secs(2)).await;
    let socket_delay = start.elapsed();
    assert_eq!(close, Some((SESSION_ENDED, why.to_owned())));
    let ended = format!("event: ended\ndata: {why}");
    assert!(
        ana_stream
            .until(&ended, bound + Duration::from_secs(2))
            .await,
        "the event stream said: {:?}",
        ana_stream.text
    );
    let stream_delay = start.elapsed();
    // What the store's channel (or the poll) adds is counted from the revocation's answer:
    // the revocation itself (listing and deleting the user's sessions) is the store's speed,
    // and on a busy machine it varies more than the delivery does.
    let (socket_after, stream_after) = (
        socket_delay.saturating_sub(revoked_at),
        stream_delay.saturating_sub(revoked_at),
    );
    println!(
        "{engine}: log out everywhere answered in {revoked_at:?}; after the answer the \
         WebSocket closed in {socket_after:?}, the event stream ended in {stream_after:?} \
         (bound {bound:?})"
    );
    assert!(
        socket_after <= bound,
        "{engine}: {socket_after:?} > {bound:?}"
    );
    assert!(
        stream_after <= bound,
        "{engine}: {stream_after:?} > {bound:?}"
    );

    // Bob's connection is untouched: it still echoes.
    bob_socket.send(Message::text("still here")).await.unwrap();
    let echo = tokio::time::timeout(Duration::from_secs(2), bob_socket.next())
        .await
        .expect("bob's socket answers")
        .unwrap()
        .unwrap();
    assert_eq!(echo.to_text().unwrap(), "still here");
    bob_socket.close(None).await.unwrap();
}

#[tokio::test]
async fn postgres_two_servers_close_a_revoked_sessions_websocket_and_stream() {
    let (url, table) = (support::postgres_url(), support::unique_table("live"));
    support::migrate(&url, &table);
    let args = ["--database-url", url.as_str(), "--table", table.as_str()];
    revoked_on_the_other_server("postgres", &args, Duration::from_millis(100), "revoked").await;
}

#[tokio::test]
async fn redis_two_servers_close_a_revoked_sessions_websocket_and_stream() {
    let redis = support::servers::Redis::new();
    let url = redis.url();
    let args = ["--engine", "cache", "--cache-url", url.as_str()];
    revoked_on_the_other_server("redis", &args, Duration::from_millis(100), "revoked").await;
}

#[tokio::test]
async fn redis_cluster_two_servers_close_a_revoked_sessions_websocket_and_stream() {
    let cluster = support::redis_cluster::RedisCluster::start();
    let url = cluster.url();
    let args = ["--engine", "cache", "--cache-url", url.as_str()];
    revoked_on_the_other_server(
        "redis-cluster",
        &args,
        Duration::from_millis(100),
        "revoked",
    )
    .await;
}

#[tokio::test]
async fn mysql_two_servers_close_a_revoked_sessions_websocket_and_stream_by_polling() {
    let (url, table) = (support::mysql_url(), support::unique_table("live"));
    support::migrate(&url, &table);
    let args = [
        "--database-url",
        url.as_str(),
        "--table",
        table.as_str(),
        "--live-poll-ms",
        "500",
    ];
    // One poll interval, plus the check's round trip and the scheduling of a loaded machine.
    revoked_on_the_other_server("mysql", &args, Duration::from_millis(900), "gone").await;
}

#[tokio::test]
async fn files_two_servers_close_a_revoked_sessions_websocket_and_stream_by_polling() {
    let dir = support::Scratch::new("live-files");
    let path = dir.to_string_lossy().into_owned();
    let args = [
        "--engine",
        "file",
        "--file-path",
        path.as_str(),
        "--live-poll-ms",
        "500",
    ];
    revoked_on_the_other_server("files", &args, Duration::from_millis(900), "gone").await;
}

#[tokio::test]
async fn sqlite_two_servers_on_one_file_close_a_revoked_sessions_websocket_and_stream_by_polling() {
    let dir = support::Scratch::new("live-sqlite");
    let url = format!("sqlite://{}", dir.join("shared.sqlite3").display());
    let table = support::unique_table("live");
    support::migrate(&url, &table);
    let args = [
        "--database-url",
        url.as_str(),
        "--table",
        table.as_str(),
        "--live-poll-ms",
        "500",
    ];
    revoked_on_the_other_server("sqlite", &args, Duration::from_millis(900), "gone").await;
}

#[tokio::test]
async fn a_visitor_not_logged_in_gets_no_live_connection() {
    let demo = Demo::start(&[]);
    let reply = send(bare().get(demo.url("/api/live/events"))).await;
    assert_eq!(reply.status, 401);
    let url = demo.url("/api/live/ws").replace("http://", "ws://");
    let refused = tokio_tungstenite::connect_async(url).await;
    assert!(refused.is_err(), "the upgrade is refused");
}

#[tokio::test]
async fn another_sites_page_cannot_open_the_websocket() {
    let demo = Demo::start(&[]);
    let key = logged_in(&demo, "ana").await;
    let url = demo.url("/api/live/ws").replace("http://", "ws://");
    let mut request = url.into_client_request().unwrap();
    let headers = request.headers_mut();
    headers.insert("cookie", session(&key).parse().unwrap());
    headers.insert("origin", "https://evil.example".parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403);
        }
        other => panic!("expected a 403, got {other:?}"),
    }
}

/// How many connections of PostgreSQL at `url` are `LISTEN`ing (what each demo server's one
/// listener runs last).
fn pg_listeners(url: &str) -> usize {
    let out = std::process::Command::new("psql")
        .arg(url)
        .args([
            "-Atc",
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN %'",
        ])
        .output()
        .expect("psql runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(usize::MAX)
}

/// How many connections of the Redis at `url` are subscribed to channels (each listener: to
/// the ended sessions' channel and to the expired keys').
fn redis_subscribers(url: &str) -> usize {
    let port = url
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .unwrap();
    let out = std::process::Command::new("redis-cli")
        .args(["-p", port, "CLIENT", "LIST"])
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(" sub=") && !l.contains(" sub=0 "))
        .count()
}

/// Whether `check` holds within `limit` (checked every 100 ms).
async fn eventually(limit: Duration, check: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check()
}

/// Logs `user` in on `demo`, trying again while the store comes back after an outage.
async fn log_in_when_back(demo: &Demo, user: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = send(
            bare()
                .post(demo.url("/api/login"))
                .json(&serde_json::json!({ "username": user })),
        )
        .await;
        if reply.status == 200 {
            return reply.new_key();
        }
        assert!(
            Instant::now() < deadline,
            "no login after the outage: {reply:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The store is killed for 3 s and started again: each of the two servers ends up with one
/// listening connection (never a second), and the channel carries a revocation again, within
/// a second while the poll interval is 10 s (so only the channel can have closed the socket).
async fn outage_then_revocation(
    server: &mut impl support::servers::Server,
    args: &[&str],
    listeners: impl Fn() -> usize,
) {
    let mut args = args.to_vec();
    args.extend(["--live-poll-ms", "10000"]);
    let (a, b) = (Demo::start(&args), Demo::start(&args));
    assert!(
        eventually(Duration::from_secs(10), || listeners() == 2).await,
        "one listener per server before the outage: {}",
        listeners()
    );
    server.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    server.start();
    assert!(
        eventually(Duration::from_secs(15), || listeners() == 2).await,
        "one listener per server after the outage: {}",
        listeners()
    );
    // Reconnection attempts while it was down left nothing behind.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(listeners(), 2, "still one listener per server");

    let ana = log_in_when_back(&a, "ana").await;
    let mut socket = open_socket(&b, &ana).await;
    let start = Instant::now();
    let reply = send(
        bare()
            .post(a.url("/api/logout-everywhere"))
            .header("cookie", session(&ana)),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let close = closed(&mut socket, Duration::from_secs(1)).await;
    // Within a second with a 10 s poll: only the channel can have closed it, and with the
    // reason it announced, though a wait's check may find the session deleted before the
    // notice arrives (it listens for the reason a moment: see `ended.rs`).
    assert!(
        matches!(&close, Some((SESSION_ENDED, why)) if why == "revoked"),
        "{close:?}"
    );
    println!(
        "after the outage: closed {:?} after the request began",
        start.elapsed()
    );
}

#[tokio::test]
async fn postgres_outage_leaves_one_listener_per_server_and_revocation_works_again() {
    let mut pg = support::servers::Postgres::new();
    let (url, table) = (pg.url(), support::unique_table("live_outage"));
    support::migrate(&url, &table);
    let args = ["--database-url", url.as_str(), "--table", table.as_str()];
    let probe = url.clone();
    outage_then_revocation(&mut pg, &args, move || pg_listeners(&probe)).await;
}

#[tokio::test]
async fn redis_outage_leaves_one_subscriber_per_server_and_revocation_works_again() {
    let mut redis = support::servers::Redis::new();
    let url = redis.url();
    let args = ["--engine", "cache", "--cache-url", url.as_str()];
    let probe = url.clone();
    outage_then_revocation(&mut redis, &args, move || redis_subscribers(&probe)).await;
}

/// A managed Redis refuses `CONFIG`: the listener cannot turn on the keyspace notifications
/// of expired keys, logs one warning that names `notify-keyspace-events` (one, across a
/// reconnection too), and carries on: it listens on the ended sessions' channel, and a
/// revocation still ends a stream.
#[tokio::test]
async fn redis_refusing_config_logs_one_warning_and_live_revocation_goes_on() {
    use support::servers::Server as _;
    let mut redis = support::servers::Redis::without_config();
    let url = redis.url();
    let dir = support::Scratch::new("live-no-config");
    let log = dir.join("demo.log");
    let args = ["--engine", "cache", "--cache-url", url.as_str()];
    let demo = Demo::start_logged(&dir, &args, &[], Some(&log));
    assert!(
        eventually(Duration::from_secs(10), || redis_subscribers(&url) == 1).await,
        "the listener subscribes"
    );
    redis.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis.start();
    assert!(
        eventually(Duration::from_secs(15), || redis_subscribers(&url) == 1).await,
        "the listener subscribes again after the outage"
    );
    let ana = log_in_when_back(&demo, "ana").await;
    let mut stream = Stream::open(&demo, &ana).await;
    let reply = send(
        bare()
            .post(demo.url("/api/logout-everywhere"))
            .header("cookie", session(&ana)),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        stream
            .until("event: ended\ndata: revoked", Duration::from_secs(2))
            .await,
        "{:?}",
        stream.text
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let warned: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("notify-keyspace-events"))
        .collect();
    assert_eq!(warned.len(), 1, "one warning: {warned:#?}");
    assert!(warned[0].contains("WARN"), "{}", warned[0]);
}
