//! The demo's graceful shutdown and its scheduled cleanup, over real HTTP against the real
//! binary: on SIGTERM it stops accepting, the request in flight finishes with its session
//! saved, and it exits 0; a request past `--shutdown-timeout` is cut off and the exit says so;
//! `--cleanup-interval-secs` clears expired sessions while the demo serves.

mod support;

use std::time::{Duration, Instant};

use support::{send, temp_dir, visitor, Demo};

/// The stored data of session `key` in the demo's SQLite table, if the row is there.
async fn stored(demo: &Demo, key: &str) -> Option<String> {
    sqlx::query_scalar("SELECT session_data FROM cloakroom_session WHERE session_key = ?1")
        .bind(key)
        .fetch_optional(&demo.db().await)
        .await
        .unwrap()
}

/// Waits until nothing accepts connections on the demo's port (`within` at most).
fn refuses_connections(demo: &Demo, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&demo.addr, Duration::from_millis(100)).is_err() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[tokio::test]
async fn sigterm_lets_the_request_in_flight_finish_and_save_then_exits_zero() {
    let mut demo = Demo::start(&["--shutdown-timeout", "10"]);
    let slow = tokio::spawn(send(visitor().get(demo.url("/api/slow?ms=2000"))));
    // Let the request reach its handler.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let signalled = Instant::now();
    demo.terminate();

    // The listener is closed at once, while the slow request still runs.
    assert!(
        refuses_connections(&demo, Duration::from_millis(1000)),
        "new connections are refused after SIGTERM"
    );
    assert!(!slow.is_finished(), "the slow request is still running");

    let reply = slow.await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply.body.contains(r#""slow_requests":1"#),
        "{}",
        reply.body
    );
    let key = reply.new_key();

    let status = demo
        .wait_exit(Duration::from_secs(5))
        .expect("the demo exits once its requests are done");
    assert!(status.success(), "a graceful stop exits 0: {status}");
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "within the shutdown bound: {:?}",
        signalled.elapsed()
    );
    // The request's save landed before its response went out.
    let data = stored(&demo, &key).await.expect("the session was saved");
    assert!(data.contains("slow_requests"), "{data}");
}

#[tokio::test]
async fn a_request_past_the_shutdown_timeout_is_cut_off_and_the_exit_says_so() {
    let dir = temp_dir("shutdown-timeout");
    let log = dir.join("demo.log");
    let mut demo = Demo::start_logged(&dir, &["--shutdown-timeout", "1"], &[], Some(&log));
    let slow = tokio::spawn(visitor().get(demo.url("/api/slow?ms=30000")).send());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let signalled = Instant::now();
    demo.terminate();

    let status = demo
        .wait_exit(Duration::from_secs(5))
        .expect("the demo exits at the bound, not when the request would end");
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "exits about 1 s after the signal: {took:?}"
    );
    assert!(!status.success(), "a cut-off stop is a failure: {status}");
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(
        said.contains("still running 1 s after the stop signal")
            && said.contains("--shutdown-timeout"),
        "{said}"
    );
    assert!(
        slow.await.unwrap().is_err(),
        "the cut-off request gets no response"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_demo_clears_expired_sessions_on_its_schedule_and_stops_cleanly() {
    let mut demo = Demo::start(&["--cleanup-interval-secs", "1"]);
    let live = send(visitor().get(demo.url("/api/visits"))).await.new_key();
    let expired = "0expired0session0key000000000000";
    sqlx::query("INSERT INTO cloakroom_session VALUES (?1, '{}', '2001-01-01 00:00:00')")
        .bind(expired)
        .execute(&demo.db().await)
        .await
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(5);
    while stored(&demo, expired).await.is_some() {
        assert!(
            Instant::now() < deadline,
            "the expired session is cleared within a few intervals"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        stored(&demo, &live).await.is_some(),
        "the live session stays"
    );

    // The cleanup task stops with the demo.
    demo.terminate();
    let status = demo.wait_exit(Duration::from_secs(5)).expect("exits");
    assert!(status.success(), "{status}");
}
