//! Sessions of a user over real HTTP: the demo lists the logged-in user's sessions with the
//! client each one recorded at login, and "log out everywhere" ends them all, on this app
//! server and on any other sharing the store.

mod support;

use serde_json::{json, Value};
use support::{send, visitor, Demo};

/// Logs `client` in as `username` on `demo`, sending `user_agent`.
async fn log_in(client: &reqwest::Client, demo: &Demo, username: &str, user_agent: &str) {
    let r = send(
        client
            .post(demo.url("/api/login"))
            .header("user-agent", user_agent)
            .json(&json!({ "username": username })),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

async fn whoami(client: &reqwest::Client, demo: &Demo) -> Value {
    send(client.get(demo.url("/api/whoami"))).await.json()["username"].clone()
}

/// Two browsers (two cookie jars) log in as one user, the first on `a` and the second on `b`;
/// the first logs out everywhere on `a`; the second's next request on `b` is anonymous.
async fn logout_everywhere_across(a: &Demo, b: &Demo) {
    let (phone, laptop, other) = (visitor(), visitor(), visitor());
    log_in(&phone, a, "ana", "Phone/1.0").await;
    log_in(&laptop, b, "ana", "Laptop/2.0").await;
    log_in(&other, b, "bob", "Bob/1.0").await;

    let listed = send(phone.get(a.url("/api/sessions"))).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let listed = listed.json();
    assert_eq!(listed["user"], "ana");
    let sessions = listed["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{listed}");
    // Newest login first; this browser's own session is marked.
    assert_eq!(sessions[0]["user_agent"], "Laptop/2.0");
    assert_eq!(sessions[1]["user_agent"], "Phone/1.0");
    assert_eq!(sessions[0]["current"], false);
    assert_eq!(sessions[1]["current"], true);
    for s in sessions {
        assert_eq!(s["ip"], "127.0.0.1", "{s}");
        assert_eq!(
            s["id"].as_str().unwrap().len(),
            8,
            "a whole key is shown: {s}"
        );
        assert!(s["expires_at"].as_i64() > s["created_at"].as_i64(), "{s}");
    }

    let out = send(phone.post(a.url("/api/logout-everywhere"))).await;
    assert_eq!(out.json(), json!({ "revoked": 2 }));
    assert!(
        out.session_cookie().is_deletion(),
        "the browser that logged out everywhere keeps its cookie"
    );
    assert_eq!(
        whoami(&laptop, b).await,
        Value::Null,
        "the other browser is still logged in"
    );
    assert_eq!(whoami(&phone, a).await, Value::Null);
    assert_eq!(send(laptop.get(b.url("/api/sessions"))).await.status, 401);
    assert_eq!(
        whoami(&other, b).await,
        "bob",
        "another user was logged out"
    );
}

#[tokio::test]
async fn log_out_everywhere_ends_the_other_browsers_session() {
    let demo = Demo::start(&[]);
    logout_everywhere_across(&demo, &demo).await;
}

#[tokio::test]
async fn log_out_everywhere_reaches_another_app_server_on_postgres() {
    let (url, table) = (support::postgres_url(), support::unique_table("users"));
    support::migrate(&url, &table);
    let args = ["--database-url", url.as_str(), "--table", table.as_str()];
    let (a, b) = (Demo::start(&args), Demo::start(&args));
    logout_everywhere_across(&a, &b).await;
}

#[tokio::test]
async fn log_out_everywhere_reaches_another_app_server_on_a_redis_cluster() {
    let cluster = support::redis_cluster::RedisCluster::start();
    let url = cluster.url();
    let args = ["--engine", "cache", "--cache-url", url.as_str()];
    let (a, b) = (Demo::start(&args), Demo::start(&args));
    logout_everywhere_across(&a, &b).await;
}

#[tokio::test]
async fn the_sessions_list_needs_a_login() {
    let demo = Demo::start(&[]);
    let anonymous = visitor();
    let r = send(anonymous.get(demo.url("/api/sessions"))).await;
    assert_eq!(r.status, 401);
    assert!(r.json()["error"].as_str().unwrap().contains("/api/login"));
    let r = send(anonymous.post(demo.url("/api/logout-everywhere"))).await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn with_a_cap_of_one_a_new_login_logs_the_previous_browser_out() {
    let demo = Demo::start(&["--max-sessions-per-user", "1"]);
    let (first, second, other) = (visitor(), visitor(), visitor());
    log_in(&other, &demo, "bob", "Bob/1.0").await;
    log_in(&first, &demo, "ana", "Phone/1.0").await;
    log_in(&second, &demo, "ana", "Laptop/2.0").await;
    assert_eq!(
        whoami(&first, &demo).await,
        Value::Null,
        "the cap let two sessions live"
    );
    assert_eq!(whoami(&second, &demo).await, "ana");
    assert_eq!(whoami(&other, &demo).await, "bob");
}
