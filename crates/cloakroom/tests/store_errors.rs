//! What a request gets when the store fails: fail-closed 503 with Retry-After (the default),
//! fail-open anonymous sessions, per-route policy, the circuit breaker, and recovery without a
//! restart. The failure is real: the SQLite session table is dropped under the running app.

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use cloakroom::engines::sqlite::SqliteStore;
use cloakroom::layer::OnStoreErrorLayer;
use cloakroom::{OnStoreError, Session, SessionLayer, Sessions, Settings};

async fn visits(session: Session) -> Result<String, cloakroom::Error> {
    Ok(session.update("visits", |n: &mut u64| *n += 1)?.to_string())
}

struct App {
    addr: SocketAddr,
    store: SqliteStore,
    /// The store's database, for the tests' own statements.
    db: String,
}

async fn start(settings: Settings) -> App {
    let dir = std::env::temp_dir().join(format!(
        "cloakroom-errors-{}-{}",
        std::process::id(),
        cloakroom::key::generate().unwrap()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite://{}/s.sqlite3", dir.display());
    let store = SqliteStore::connect(&db).await.unwrap();
    store.migrate().await.unwrap();
    let sessions = Sessions::new(store.clone(), settings).unwrap();
    let app = Router::new()
        .route("/visits", get(visits))
        .route(
            "/public",
            get(visits).route_layer(OnStoreErrorLayer::new(OnStoreError::FailOpen)),
        )
        .route("/health", get(|| async { "ok" }))
        .layer(SessionLayer::new(sessions));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    App { addr, store, db }
}

impl App {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
    async fn break_store(&self) {
        self.execute("DROP TABLE cloakroom_session").await;
    }
    async fn execute(&self, sql: &str) {
        let db = sqlx::SqlitePool::connect(&self.db).await.unwrap();
        sqlx::query(sql).execute(&db).await.unwrap();
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap()
}

#[tokio::test]
async fn fail_closed_answers_503_with_retry_after_and_a_clear_body() {
    let app = start(Settings::default()).await;
    let c = client();
    assert_eq!(
        c.get(app.url("/visits"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "1"
    );
    app.break_store().await;
    let r = c.get(app.url("/visits")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let body = r.text().await.unwrap();
    assert!(body.contains("cloakroom migrate"), "{body}");
    // Routes that never touch the session keep being served.
    let r = c.get(app.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn fail_open_serves_an_anonymous_unsaved_session() {
    let app = start(Settings::default().with_on_store_error(OnStoreError::FailOpen)).await;
    let c = client();
    c.get(app.url("/visits")).send().await.unwrap();
    app.break_store().await;
    for _ in 0..2 {
        let r = c.get(app.url("/visits")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.headers().get("set-cookie").is_none(),
            "an anonymous session was saved"
        );
        assert_eq!(r.text().await.unwrap(), "1", "not an empty session");
    }
}

#[tokio::test]
async fn a_route_can_fail_open_while_the_rest_fails_closed() {
    let app = start(Settings::default()).await;
    app.break_store().await;
    let c = client();
    assert_eq!(
        c.get(app.url("/visits")).send().await.unwrap().status(),
        503
    );
    assert_eq!(
        c.get(app.url("/public")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn the_breaker_fails_fast_then_recovers_without_a_restart() {
    let app = start(
        Settings::default()
            .with_breaker_threshold(3_u32)
            .with_breaker_cooldown_ms(300_u64),
    )
    .await;
    let c = client();
    c.get(app.url("/visits")).send().await.unwrap();
    app.break_store().await;
    for _ in 0..3 {
        assert_eq!(
            c.get(app.url("/visits")).send().await.unwrap().status(),
            503
        );
    }
    let r = c.get(app.url("/visits")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("circuit breaker"),
        "breaker did not open: {body}"
    );

    app.store.migrate().await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = c.get(app.url("/visits")).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(
        c.get(app.url("/visits")).send().await.unwrap().status(),
        200
    );
}

/// A database migrated before the user index existed (or by Django) lacks `<table>_user`: a
/// login's save names that table and `cloakroom migrate`, and a second `migrate` mends it.
#[tokio::test]
async fn a_missing_user_index_table_is_named_with_its_fix() {
    let app = start(Settings::default()).await;
    app.execute("DROP TABLE cloakroom_session_user").await;
    let sessions = Sessions::new(app.store.clone(), Settings::default()).unwrap();
    let login = || async {
        let lazy = sessions.start(None);
        lazy.load()
            .await
            .unwrap()
            .login_as("42", "app.Backend", "")
            .unwrap();
        lazy.commit(200).await
    };
    let err = login().await.expect_err("the index table is missing");
    let msg = err.to_string();
    assert!(msg.contains("`cloakroom_session_user`"), "{msg}");
    assert!(msg.contains("cloakroom migrate"), "{msg}");
    app.store.migrate().await.unwrap();
    login().await.expect("migrate made the index table");
    assert_eq!(sessions.sessions_of("42").await.unwrap().len(), 1);
}
