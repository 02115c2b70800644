//! Issue 14, point 1, end to end: a pickle bomb stored under a visitor's key (as another app
//! writing the shared cache could leave it) is corrupt data, so the visitor gets a fresh
//! session, at once, and the bomb is never adopted or overwritten under its key.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use cloakroom::codec::Codec;
use cloakroom::engines::memory::MemoryStore;
use cloakroom::{Record, Session, SessionLayer, SessionStore, Sessions, Settings};
use time::OffsetDateTime;
use tower::ServiceExt as _;

async fn visits(session: Session) -> Result<String, cloakroom::Error> {
    Ok(session.update("visits", |n: &mut u64| *n += 1)?.to_string())
}

/// `{'k': v30}`: `v0` a 1000-byte string, `v(i+1)` a list of two memo references to `vi`.
fn memo_bomb() -> Vec<u8> {
    let mut out = b"\x80\x02}X\x01\x00\x00\x00kX\xe8\x03\x00\x00".to_vec();
    out.extend(std::iter::repeat_n(b'x', 1000));
    out.extend_from_slice(b"q\x000");
    for level in 0..30u8 {
        out.extend_from_slice(&[b'(', b'h', level, b'h', level, b'l', b'q', level + 1, b'0']);
    }
    out.extend_from_slice(&[b'h', 30, b's', b'.']);
    out
}

#[tokio::test]
async fn a_pickle_bomb_in_the_cache_gives_the_visitor_a_fresh_session() {
    let store = MemoryStore::default();
    let sessions = Sessions::new(store.clone(), Settings::default())
        .unwrap()
        .with_codec(Codec::DjangoCache);
    let app = Router::new()
        .route("/visits", get(visits))
        .layer(SessionLayer::new(sessions));
    let key = cloakroom::key::generate().unwrap();
    let bomb = bytes::Bytes::from(memo_bomb());
    let record = Record {
        data: bomb.clone(),
        expires_at: OffsetDateTime::now_utc() + Duration::from_secs(3600),
    };
    store.create(&key, &record).await.unwrap();

    let started = Instant::now();
    let response = app
        .oneshot(
            Request::get("/visits")
                .header(header::COOKIE, format!("sessionid={key}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(response.status(), StatusCode::OK);
    let set_cookie = response.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!set_cookie.contains(&key), "a new key: {set_cookie}");
    let body = axum::body::to_bytes(response.into_body(), 1 << 10)
        .await
        .unwrap();
    assert_eq!(&body[..], b"1", "a fresh session");
    assert!(took < Duration::from_millis(100), "took {took:?}");
    let left = store.load(&key, OffsetDateTime::now_utc()).await.unwrap();
    assert_eq!(left.map(|r| r.data), Some(bomb), "never overwritten");
}
