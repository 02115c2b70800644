//! Hostile or broken input never reaches a 5xx or a panic: any `Cookie` header just gets a
//! fresh session, and out-of-range values are handled.

mod support;

use std::time::Duration;

use reqwest::header::HeaderValue;
use serde_json::json;
use support::{bare, is_key, send, visitor, Demo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `Cookie` headers a browser would never send, as raw bytes.
fn hostile_cookie_headers() -> Vec<(&'static str, Vec<u8>)> {
    let long_junk: String = (0..10_240)
        .map(|i| char::from(b"abc=;, \"xyz"[i % 11]))
        .collect();
    vec![
        ("garbage", b"garbage".to_vec()),
        ("no pairs", b";;;===;;".to_vec()),
        (
            "10 KB session value",
            format!("sessionid={}", "a".repeat(10_240)).into_bytes(),
        ),
        ("10 KB of junk", long_junk.into_bytes()),
        ("10 KB of pairs", "x=y; ".repeat(2_048).into_bytes()),
        (
            "repeated session cookie",
            b"sessionid=aaaa; sessionid=bbbb; sessionid=".to_vec(),
        ),
        (
            "repeated, key-sized",
            format!("sessionid={0}; sessionid={0}", "z".repeat(32)).into_bytes(),
        ),
        ("path", b"sessionid=../../../../etc/passwd".to_vec()),
        ("encoded path", b"sessionid=..%2F..%2Fetc%2Fpasswd".to_vec()),
        (
            "SQL",
            b"sessionid=x' OR '1'='1'; DROP TABLE cloakroom_session; --".to_vec(),
        ),
        ("empty value", b"sessionid=".to_vec()),
        ("only a name", b"sessionid".to_vec()),
        ("quotes", b"sessionid=\"\"".to_vec()),
        ("open quote", b"sessionid=\"abcdefghij".to_vec()),
        ("quoted junk", b"sessionid=\"'\\\"\"".to_vec()),
        ("UTF-8", "sessionid=é😀ü; a=ß".as_bytes().to_vec()),
        (
            "not UTF-8",
            b"sessionid=\xff\xfe\x80abc; b=\xc3\x28".to_vec(),
        ),
        (
            "not UTF-8, key-sized",
            [&b"sessionid="[..], &[0xe9_u8; 32][..]].concat(),
        ),
    ]
}

#[tokio::test]
async fn any_cookie_header_gets_a_fresh_session() {
    let demo = Demo::start(&[]);
    let client = bare();
    for (what, bytes) in hostile_cookie_headers() {
        let header = HeaderValue::from_bytes(&bytes).unwrap();
        let reply = send(
            client
                .get(demo.url("/api/visits"))
                .header("cookie", header.clone()),
        )
        .await;
        assert_eq!(reply.status, 200, "{what}: {reply:?}");
        assert_eq!(reply.json(), json!({ "visits": 1 }), "{what}");
        assert!(is_key(&reply.new_key()), "{what}");

        let read = send(client.get(demo.url("/api/cart")).header("cookie", header)).await;
        assert_eq!(read.status, 200, "{what}: {read:?}");
        assert_eq!(read.json(), json!({ "count": 0, "items": [] }), "{what}");
    }
    let health = send(client.get(demo.url("/health"))).await;
    assert_eq!(health.status, 200, "the server is still up");
}

/// Sends raw bytes as one HTTP/1.1 request and returns the response's head.
async fn raw_request(demo: &Demo, request: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(demo.addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("the server answers")
        .unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    assert!(
        text.starts_with("HTTP/1.1 "),
        "no HTTP response (a panic drops the connection): {text:?}"
    );
    text
}

fn status_of(head: &str) -> u16 {
    head[9..12].parse().unwrap()
}

#[tokio::test]
async fn raw_non_utf8_and_control_bytes_never_cause_a_5xx() {
    let demo = Demo::start(&[]);
    let fresh = raw_request(
        &demo,
        b"GET /api/visits HTTP/1.1\r\nHost: x\r\nCookie: sessionid=\xff\xfe\xfd; x=\x80\x81\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&fresh), 200, "{fresh}");
    assert!(
        fresh
            .to_ascii_lowercase()
            .contains("set-cookie: sessionid="),
        "a fresh session: {fresh}"
    );
    assert!(fresh.contains("{\"visits\":1}"), "{fresh}");

    // Bytes that HTTP forbids in a header: the server may refuse them, but not with a 5xx.
    for bytes in [&b"\x00\x00"[..], b"\x7f", b"a\x0bb", b"\x1b[31m"] {
        let request = [
            &b"GET /api/visits HTTP/1.1\r\nHost: x\r\nCookie: sessionid="[..],
            bytes,
            b"\r\nConnection: close\r\n\r\n",
        ]
        .concat();
        let head = raw_request(&demo, &request).await;
        assert!(status_of(&head) < 500, "{bytes:?}: {head}");
    }
    let health = send(bare().get(demo.url("/health"))).await;
    assert_eq!(health.status, 200, "the server is still up");
}

#[tokio::test]
async fn huge_expiry_values_never_panic() {
    let demo = Demo::start(&[]);
    for seconds in [i64::MAX as u64, u64::MAX, 10_u64.pow(15)] {
        let ana = visitor();
        let reply = send(
            ana.post(demo.url("/api/expiry"))
                .json(&json!({ "seconds": seconds })),
        )
        .await;
        assert_eq!(reply.status, 200, "seconds={seconds}: {reply:?}");
        let cookie = reply.session_cookie();
        assert!(is_key(&cookie.value), "{cookie:?}");
        let age = cookie.max_age().expect("a long-lived cookie has Max-Age");
        assert!(age > 0, "seconds={seconds}: {}", cookie.raw);
        let visits = send(ana.get(demo.url("/api/visits"))).await;
        assert_eq!(visits.json(), json!({ "visits": 1 }), "seconds={seconds}");
        assert_eq!(visits.session_cookie().value, cookie.value);
    }
}

/// Issue 14, point 7: a tracker cookie with a Latin-1 byte (`caf\xe9`) anywhere in the header
/// made the whole header unreadable, so a signed-in visitor silently got a new session. Django
/// reads the header as Latin-1 and keeps the session; so does cloakroom, per cookie.
#[tokio::test]
async fn a_non_utf8_tracker_cookie_keeps_the_session_cookie() {
    let demo = Demo::start(&[]);
    let first = send(bare().get(demo.url("/api/visits"))).await;
    let key = first.new_key();
    let mut visits = 1;
    for header in [
        format!("track=caf\u{e9}; sessionid={key}"),
        format!("sessionid={key}; track=caf\u{e9}"),
        format!("caf\u{e9}; sessionid={key}; \u{ff}=\u{80}"),
    ] {
        // Each char below U+0100 as the one byte it is in Latin-1: `\xe9`, not UTF-8's C3 A9.
        let bytes: Vec<u8> = header.chars().map(|c| c as u8).collect();
        assert!(std::str::from_utf8(&bytes).is_err());
        visits += 1;
        let reply = send(
            bare()
                .get(demo.url("/api/visits"))
                .header("cookie", HeaderValue::from_bytes(&bytes).unwrap()),
        )
        .await;
        assert_eq!(reply.status, 200, "{header:?}: {reply:?}");
        assert_eq!(reply.json(), json!({ "visits": visits }), "{header:?}");
        assert!(
            reply.cookie("sessionid").is_none_or(|c| c.value == key),
            "{header:?}: the session was replaced: {:?}",
            reply.headers
        );
        // The same bytes on a raw connection, as a browser's request would carry them.
        visits += 1;
        let request = [
            &b"GET /api/visits HTTP/1.1\r\nHost: x\r\nCookie: "[..],
            &bytes,
            b"\r\nConnection: close\r\n\r\n",
        ]
        .concat();
        let head = raw_request(&demo, &request).await;
        assert_eq!(status_of(&head), 200, "{head}");
        assert!(
            head.contains(&format!("{{\"visits\":{visits}}}")),
            "{header:?}: {head}"
        );
    }
}

/// Issue 14, point 9: a signed-cookie session over the browser's 4 KB answered 503 with
/// `Retry-After: 1`, though retrying cannot make it smaller. It is a 413 naming the size.
#[tokio::test]
async fn an_oversized_signed_cookie_session_is_413_with_the_size_not_503() {
    let demo = Demo::start(&["--engine", "signed_cookies"]);
    // Random letters (xorshift) do not compress: 5 KB of them cannot fit in a 4 KB cookie.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let item: String = (0..5_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + u8::try_from(x % 26).unwrap_or(0))
        })
        .collect();
    let reply = send(
        visitor()
            .post(demo.url("/api/cart"))
            .json(&json!({ "item": item })),
    )
    .await;
    assert_eq!(reply.status, 413, "{reply:?}");
    assert!(
        !reply.headers.contains_key("retry-after"),
        "retrying cannot help: {:?}",
        reply.headers
    );
    assert!(
        reply.body.contains("bytes") && reply.body.contains("4096"),
        "the body names the size and the limit: {}",
        reply.body
    );
}

/// Issue 17: `--cookie-age -5` said "unexpected argument" (clap took `-5` for a flag).
#[test]
fn negative_numbers_are_refused_as_invalid_saying_why() {
    let dir = support::Scratch::new("negative");
    for (command, flag) in [
        ("demo", "--cookie-age"),
        ("demo", "--idle-timeout"),
        ("demo", "--max-session-bytes"),
        ("demo", "--refresh-threshold"),
        ("stats", "--cookie-age"),
        ("migrate", "--store-timeout-ms"),
    ] {
        let (ok, out, err) = support::cli(&dir, &[command, flag, "-5"]);
        assert!(!ok, "`{command} {flag} -5` was accepted: {out}");
        assert!(
            err.contains("invalid value '-5'") && err.contains(flag) && err.contains("negative"),
            "`{command} {flag} -5`: {err}"
        );
        assert!(!err.contains("unexpected argument"), "{err}");
    }
    assert!(
        !dir.join("cloakroom.sqlite3").exists(),
        "nothing was opened"
    );
}
