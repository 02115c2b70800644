//! `Session::save`, Django's `request.session.save()` / `create()`: the record is in the store
//! when it returns (seen through a second store handle while the handler is still parked), the
//! end of the request creates no second record, and the cookie carries the key.

mod support;

use std::sync::Arc;

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use cloakroom::engines::sqlite::SqliteStore;
use cloakroom::{Session, SessionLayer, SessionStore, Sessions, Settings};
use support::{bare, send, session, Scratch};
use time::OffsetDateTime;
use tokio::sync::{mpsc, Mutex, Notify};

/// Where a parked handler reports the key `save` returned, and waits to be let go.
#[derive(Clone)]
struct Park {
    saved: mpsc::UnboundedSender<String>,
    go: Arc<Notify>,
}

/// An anonymous visitor gets a key before anything is stored (to key a cart in another table);
/// then the handler adds to the session after the save.
async fn key_then_cart(
    State(park): State<Park>,
    session: Session,
) -> Result<String, cloakroom::Error> {
    let key = session.save().await?;
    assert_eq!(session.session_key().as_deref(), Some(key.as_str()));
    park.saved.send(key.clone()).ok();
    park.go.notified().await;
    session.insert("cart_id", format!("cart-{key}"))?;
    Ok(key)
}

/// Saves a session that already has a key: compare-and-swap, same key.
async fn save_existing(
    State(park): State<Park>,
    session: Session,
) -> Result<String, cloakroom::Error> {
    session.insert("seen", true)?;
    let key = session.save().await?;
    park.saved.send(key.clone()).ok();
    park.go.notified().await;
    Ok(key)
}

async fn rows(path: &std::path::Path) -> i64 {
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let n = sqlx::query_scalar("SELECT COUNT(*) FROM cloakroom_session")
        .fetch_one(&db)
        .await
        .unwrap();
    db.close().await;
    n
}

#[tokio::test]
async fn save_stores_the_session_before_the_handler_returns_and_the_cookie_carries_its_key() {
    let dir = Scratch::new("explicit-save");
    let path = dir.join("s.sqlite3");
    let url = format!("sqlite://{}", path.display());
    let store = SqliteStore::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let sessions = Sessions::new(store, Settings::default()).unwrap();
    let (saved, reports) = mpsc::unbounded_channel();
    let reports = Arc::new(Mutex::new(reports));
    let park = Park {
        saved,
        go: Arc::new(Notify::new()),
    };
    let app = Router::new()
        .route("/key", post(key_then_cart))
        .route("/save", post(save_existing))
        .with_state(park.clone())
        .layer(SessionLayer::new(sessions));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // A separate handle on the same database: what another app server would see.
    let other = SqliteStore::connect(&url).await.unwrap();

    let request = tokio::spawn(send(bare().post(format!("http://{addr}/key"))));
    let key = reports.lock().await.recv().await.unwrap();
    let record = other
        .load(&key, OffsetDateTime::now_utc())
        .await
        .unwrap()
        .expect("the empty session is stored while the handler still runs");
    assert_eq!(record.data, "{}");
    assert_eq!(rows(&path).await, 1);
    park.go.notify_one();
    let reply = request.await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.session_cookie().value, key, "{:?}", reply.headers);
    assert_eq!(
        rows(&path).await,
        1,
        "the end of the request made no second record"
    );
    let after = other
        .load(&key, OffsetDateTime::now_utc())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.data, format!(r#"{{"cart_id":"cart-{key}"}}"#));

    // A session that has a key is saved under it, by compare-and-swap.
    let request = tokio::spawn(send(
        bare()
            .post(format!("http://{addr}/save"))
            .header("cookie", session(&key)),
    ));
    let same = reports.lock().await.recv().await.unwrap();
    assert_eq!(same, key);
    let record = other
        .load(&key, OffsetDateTime::now_utc())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        record.data,
        format!(r#"{{"cart_id":"cart-{key}","seen":true}}"#)
    );
    park.go.notify_one();
    let reply = request.await.unwrap();
    assert_eq!(reply.session_cookie().value, key);
    assert_eq!(rows(&path).await, 1);
}
