//! The examples in `examples/`, each one's app served on a free loopback port and driven over
//! real HTTP by a client that keeps cookies as a browser does; the ones that need a server use
//! the machine's PostgreSQL and Redis (`CLOAKROOM_TEST_POSTGRES_URL`, `CLOAKROOM_TEST_REDIS_URL`)
//! or, to stop one, a Redis of the test's own.

// Each example is a module here for its `app` (its `main` and `serve` go unused).
#[allow(dead_code)]
#[path = "../examples/counter.rs"]
mod counter;
#[allow(dead_code)]
#[path = "../examples/fail_open.rs"]
mod fail_open;
#[allow(dead_code)]
#[path = "../examples/login.rs"]
mod login;
#[allow(dead_code)]
#[path = "../examples/postgres.rs"]
mod postgres;
#[allow(dead_code)]
#[path = "../examples/redis.rs"]
mod redis;
#[allow(dead_code)]
#[path = "../examples/remember_me.rs"]
mod remember_me;
#[allow(dead_code)]
#[path = "../examples/settings_file.rs"]
mod settings_file;
#[allow(dead_code)]
#[path = "../examples/sqlite.rs"]
mod sqlite;
#[allow(dead_code)]
#[path = "../examples/streaming.rs"]
mod streaming;
#[allow(dead_code)]
#[path = "../examples/typed.rs"]
mod typed;

use std::time::Duration;

use axum::Router;
use cloakroom_testkit::servers::{Redis, Scratch, Server};
use reqwest::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// Sending a request as a test does: any failure to get an answer fails the test.
trait Fetch {
    /// The response.
    async fn fetch(self) -> Response;
    /// The response's body, read as JSON.
    async fn fetch_json<T: DeserializeOwned>(self) -> T;
    /// With an HTML form's body, as a browser posts it.
    fn with_form(self, body: &'static str) -> Self;
}

impl Fetch for RequestBuilder {
    async fn fetch(self) -> Response {
        self.send().await.expect("the app answers")
    }
    async fn fetch_json<T: DeserializeOwned>(self) -> T {
        self.fetch().await.json().await.expect("a JSON body")
    }
    fn with_form(self, body: &'static str) -> Self {
        self.header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
    }
}

/// Serves `app` on a free loopback port; the base URL.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// A client that keeps cookies, as a browser does.
fn browser() -> Client {
    Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The session cookie the response sets (`sessionid=…; …`), if any.
fn session_cookie(response: &Response) -> Option<String> {
    let all = response.headers().get_all(SET_COOKIE).iter();
    all.filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("sessionid="))
        .map(str::to_owned)
}

/// The `Cookie` header that sends back the session a response set.
fn cookie_header(response: &Response) -> String {
    let set = session_cookie(response).expect("a session cookie");
    set.split(';').next().unwrap().to_owned()
}

/// A `Set-Cookie`'s `Max-Age`, in seconds.
fn max_age(set_cookie: &str) -> i64 {
    let after = set_cookie.split("Max-Age=").nth(1).expect("a Max-Age");
    after.split(';').next().unwrap().parse().unwrap()
}

async fn text(response: Response) -> (StatusCode, String) {
    (response.status(), response.text().await.unwrap())
}

fn redis_url() -> String {
    std::env::var("CLOAKROOM_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

#[tokio::test]
async fn counter_counts_each_visitors_visits_apart() {
    let base = serve(counter::app().unwrap()).await;
    let (alice, bob) = (browser(), browser());
    for n in 1..=2 {
        let (status, body) = text(alice.get(&base).fetch().await).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, format!("You have been here {n} time(s).\n"));
    }
    let (_, body) = text(bob.get(&base).fetch().await).await;
    assert_eq!(body, "You have been here 1 time(s).\n");
}

#[tokio::test]
async fn typed_cart_keeps_its_items_in_order() {
    let base = serve(typed::app().unwrap()).await;
    let shopper = browser();
    for item in ["apple", "pear"] {
        let response = shopper
            .post(format!("{base}/cart?item={item}"))
            .send()
            .await;
        assert_eq!(response.unwrap().status(), StatusCode::OK);
    }
    let cart: Value = shopper.get(format!("{base}/cart")).fetch_json().await;
    assert_eq!(cart, json!({"items": ["apple", "pear"], "updated": 2}));
    let fresh: Value = browser().get(format!("{base}/cart")).fetch_json().await;
    assert_eq!(fresh, json!({"items": [], "updated": 0}));
}

#[tokio::test]
async fn login_gives_a_new_key_and_logout_removes_the_cookie() {
    let base = serve(login::app().unwrap()).await;
    let user = browser();
    let (status, _) = text(user.get(&base).fetch().await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let log_in = |form| user.post(format!("{base}/login")).with_form(form).fetch();
    let alice_key = cookie_header(&log_in("user=alice").await);
    let (_, body) = text(user.get(&base).fetch().await).await;
    assert_eq!(body, "Hello, alice.\n");

    // Logging in again (as someone else) cycles the key: the old one is worth nothing.
    let bob_key = cookie_header(&log_in("user=bob").await);
    assert_ne!(alice_key, bob_key);
    let old = browser()
        .get(&base)
        .header(COOKIE, &alice_key)
        .fetch()
        .await;
    assert_eq!(
        old.status(),
        StatusCode::UNAUTHORIZED,
        "the key before the login is dead"
    );

    let out = user.post(format!("{base}/logout")).fetch().await;
    let removal = session_cookie(&out).expect("logout removes the cookie");
    assert!(
        removal.starts_with("sessionid=\"\";") || removal.starts_with("sessionid=;"),
        "{removal}"
    );
    assert!(removal.contains("Max-Age=0"), "{removal}");
    let (status, _) = text(user.get(&base).fetch().await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let stolen = browser().get(&base).header(COOKIE, &bob_key).fetch().await;
    assert_eq!(
        stolen.status(),
        StatusCode::UNAUTHORIZED,
        "the flushed key is dead"
    );
}

#[tokio::test]
async fn sqlite_notes_survive_a_restart_of_the_app() {
    let dir = Scratch::new("example-sqlite");
    let url = format!("sqlite://{}", dir.join("sessions.sqlite3").display());
    let base = serve(sqlite::app(&url).await.unwrap()).await;
    let user = browser();
    let saved = user
        .post(format!("{base}/notes"))
        .body("milk")
        .fetch()
        .await;
    let cookie = cookie_header(&saved);
    user.post(format!("{base}/notes"))
        .body("eggs")
        .fetch()
        .await;

    // Another instance of the app, on the same file: the visitor's notes are there.
    let restarted = serve(sqlite::app(&url).await.unwrap()).await;
    let notes: Vec<String> = browser()
        .get(format!("{restarted}/notes"))
        .header(COOKIE, cookie)
        .fetch_json()
        .await;
    assert_eq!(notes, ["milk", "eggs"]);
}

#[tokio::test]
async fn postgres_keeps_the_theme_a_visitor_chose() {
    let url = std::env::var("CLOAKROOM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let table = format!("example_pg_{}", std::process::id());
    let app = postgres::app(&url, &table).await.unwrap_or_else(|e| {
        panic!("PostgreSQL at {url} (CLOAKROOM_TEST_POSTGRES_URL) is unreachable: {e}")
    });
    let base = serve(app).await;
    let user = browser();
    let (_, before) = text(user.get(format!("{base}/theme")).fetch().await).await;
    assert_eq!(before, "light");
    let set = user.put(format!("{base}/theme?name=dark")).fetch().await;
    assert_eq!(set.status(), StatusCode::OK);
    let (_, after) = text(user.get(format!("{base}/theme")).fetch().await).await;
    assert_eq!(after, "dark");
    let (_, other) = text(browser().get(format!("{base}/theme")).fetch().await).await;
    assert_eq!(other, "light");

    // The table (and the user index beside it) are this test's own: drop them.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let names: Vec<(String,)> = sqlx::query_as(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_name LIKE $1",
    )
    .bind(format!("{table}%"))
    .fetch_all(&pool)
    .await
    .unwrap();
    for (name,) in names {
        sqlx::query(&format!("DROP TABLE IF EXISTS \"{name}\" CASCADE"))
            .execute(&pool)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn redis_keeps_the_last_three_items_viewed() {
    let url = redis_url();
    let app = redis::app(&url).await.unwrap_or_else(|e| {
        panic!("Redis at {url} (CLOAKROOM_TEST_REDIS_URL) is unreachable: {e}")
    });
    let base = serve(app).await;
    let user = browser();
    for id in [1, 2, 3, 1, 4] {
        let (_, body) = text(user.get(format!("{base}/items/{id}")).fetch().await).await;
        assert_eq!(body, format!("Item {id}\n"));
    }
    let recent: Vec<u32> = user.get(format!("{base}/recent")).fetch_json().await;
    assert_eq!(recent, [4, 1, 3]);
}

#[tokio::test]
async fn settings_file_url_picks_the_engine_and_the_file_sets_the_lifetime() {
    let dir = Scratch::new("example-settings");
    let path = dir.join("settings.toml");
    let toml = format!(
        "url = \"{}\"\ncookie_age = 3600\nidle_timeout = 900\n",
        redis_url()
    );
    std::fs::write(&path, toml).unwrap();
    let base = serve(settings_file::app(&path).await.unwrap()).await;
    let user = browser();
    let first = user.get(&base).fetch().await;
    let cookie = session_cookie(&first).expect("a session cookie");
    assert!(
        cookie.contains("Max-Age=900"),
        "the idle timeout from the file: {cookie}"
    );
    let (_, body) = text(user.get(&base).fetch().await).await;
    assert_eq!(
        body,
        "visit 2; this session ends in 900 s without another request\n"
    );

    // The shipped file works as it is (SQLite, in a scratch folder here).
    let shipped = include_str!("../examples/settings.toml").replace(
        "sqlite://settings-example.sqlite3",
        &format!("sqlite://{}/s.db", dir.display()),
    );
    std::fs::write(&path, shipped).unwrap();
    let base = serve(settings_file::app(&path).await.unwrap()).await;
    let (status, body) = text(browser().get(&base).fetch().await).await;
    assert_eq!(
        (status, body.starts_with("visit 1;")),
        (StatusCode::OK, true),
        "{body}"
    );

    // A typo in the file is refused, naming the key.
    std::fs::write(&path, "url = \"sqlite::memory:\"\ncookie_ag = 5\n").unwrap();
    let error = settings_file::app(&path)
        .await
        .expect_err("refused")
        .to_string();
    assert!(error.contains("cookie_ag"), "{error}");
}

#[tokio::test]
async fn remember_me_outlives_the_browser_and_a_trial_ends_by_midnight() {
    let base = serve(remember_me::app().unwrap()).await;
    let login = |form: &'static str| {
        let request = browser().post(format!("{base}/login"));
        async move { request.with_form(form).fetch().await }
    };
    let plain = login("user=bob").await;
    let cookie = session_cookie(&plain).unwrap();
    assert!(
        !cookie.contains("Max-Age"),
        "a browser-session cookie: {cookie}"
    );
    assert_eq!(
        plain.text().await.unwrap(),
        "ends when the browser closes\n"
    );

    let remembered = login("user=alice&remember=on").await;
    let cookie = session_cookie(&remembered).unwrap();
    let thirty_days = 30 * 86_400;
    assert!(
        (thirty_days - 5..=thirty_days).contains(&max_age(&cookie)),
        "30 days: {cookie}"
    );

    let trial = browser().post(format!("{base}/trial")).fetch().await;
    let cookie = session_cookie(&trial).unwrap();
    assert!(
        (0..=86_400).contains(&max_age(&cookie)),
        "until midnight UTC: {cookie}"
    );
}

#[tokio::test]
async fn fail_open_keeps_the_public_page_up_while_the_store_is_down() {
    let mut server = Redis::new();
    let base = serve(fail_open::app(&server.url()).await.unwrap()).await;
    let user = browser();
    let login = user
        .post(format!("{base}/login"))
        .body("alice")
        .fetch()
        .await;
    assert_eq!(login.status(), StatusCode::OK);
    let (_, body) = text(user.get(&base).fetch().await).await;
    assert_eq!(body, "Welcome back, alice.\n");

    server.kill();
    let (status, body) = text(user.get(&base).fetch().await).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "Welcome, visitor.\n")
    );
    let (status, _) = text(user.get(format!("{base}/account")).fetch().await).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn streaming_sets_the_cookie_before_the_body_streams() {
    let base = serve(streaming::app().unwrap()).await;
    let user = browser();
    for run in 1..=2 {
        let response = user.get(format!("{base}/countdown")).fetch().await;
        if run == 1 {
            assert!(
                session_cookie(&response).is_some(),
                "the cookie is in the headers"
            );
        }
        let body = response.text().await.unwrap();
        assert_eq!(body, format!("run {run}: 3\nrun {run}: 2\nrun {run}: 1\n"));
    }
}
