//! The demo's admin page over real HTTP, against the real `cloakroom demo` binary: off without
//! a token, locked by the token, every form CSRF-protected, the list, the detail page and
//! revoking. The browser walk-through is in `admin_browser.rs`.

mod support;

use reqwest::Client;
use serde_json::json;
use support::{bare, logged_in, send, session, visitor, whoami, Demo, Reply};

const TOKEN: &str = "test-admin-token-0123456789";

fn admin_demo() -> Demo {
    Demo::start(&["--admin-token", TOKEN])
}

/// The value of the first hidden `csrf` field on a page.
fn csrf_of(html: &str) -> String {
    let start = html
        .find(r#"name="csrf" value=""#)
        .unwrap_or_else(|| panic!("no CSRF field on the page: {html}"))
        + r#"name="csrf" value=""#.len();
    let len = html[start..].find('"').unwrap();
    html[start..start + len].to_owned()
}

/// HTML text back to plain text (the few entities the demo writes).
fn unescape(html: &str) -> String {
    html.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The `data-prefix` of each listed session, in page order.
fn listed(html: &str) -> Vec<String> {
    html.split(r#"<tr class="session" data-prefix=""#)
        .skip(1)
        .map(|rest| rest[..rest.find('"').unwrap()].to_owned())
        .collect()
}

fn prefix(key: &str) -> String {
    key[..8].to_owned()
}

/// Logs `client` (a cookie jar) in with `token`, returning the login answer.
async fn submit_token(demo: &Demo, client: &Client, token: &str) -> Reply {
    let form = send(client.get(demo.url("/admin/login"))).await;
    assert_eq!(form.status, 200);
    let csrf = csrf_of(&form.body);
    send(
        client
            .post(demo.url("/admin/login"))
            .form(&[("token", token), ("csrf", &csrf)]),
    )
    .await
}

/// An admin logged in with the right token: its client and the CSRF token of its forms.
async fn admin(demo: &Demo) -> (Client, String) {
    let client = visitor();
    let login = submit_token(demo, &client, TOKEN).await;
    assert_eq!(login.status, 303, "{}", login.body);
    let page = send(client.get(demo.url("/admin/sessions"))).await;
    assert_eq!(page.status, 200);
    let csrf = csrf_of(&page.body);
    (client, csrf)
}

async fn post(demo: &Demo, client: &Client, path: &str, form: &[(&str, &str)]) -> Reply {
    send(client.post(demo.url(path)).form(form)).await
}

/// The View form: one session's page.
async fn view(demo: &Demo, client: &Client, csrf: &str, key: &str) -> Reply {
    let form = [("key", key), ("csrf", csrf)];
    post(demo, client, "/admin/sessions/view", &form).await
}

/// The Revoke button of one session.
async fn revoke(demo: &Demo, client: &Client, csrf: &str, key: &str) -> Reply {
    let form = [("key", key), ("csrf", csrf)];
    post(demo, client, "/admin/sessions/revoke", &form).await
}

/// The "Revoke all sessions of USER" button.
async fn revoke_user(demo: &Demo, client: &Client, csrf: &str, user: &str) -> Reply {
    let form = [("user", user), ("csrf", csrf)];
    post(demo, client, "/admin/users/revoke", &form).await
}

/// The admin's list page (`query` after `?`).
async fn list(demo: &Demo, client: &Client, query: &str) -> Reply {
    let page = send(client.get(demo.url(&format!("/admin/sessions?{query}")))).await;
    assert_eq!(page.status, 200, "{}", page.body);
    page
}

#[tokio::test]
async fn admin_routes_answer_404_without_an_admin_token() {
    let demo = Demo::start(&[]);
    let key = logged_in(&demo, "ana").await;
    for path in ["/admin", "/admin/login", "/admin/sessions"] {
        let reply = send(bare().get(demo.url(path))).await;
        assert_eq!(reply.status, 404, "GET {path}");
    }
    let reply = send(
        bare()
            .post(demo.url("/admin/sessions/revoke"))
            .form(&[("key", key.as_str())]),
    )
    .await;
    assert_eq!(reply.status, 404);
    assert_eq!(whoami(&demo, &key).await.as_deref(), Some("ana"));
}

#[tokio::test]
async fn the_page_needs_the_right_token_and_its_cookie_is_httponly_and_strict() {
    let demo = admin_demo();
    let key = logged_in(&demo, "ana").await;

    // No admin cookie: pages lead to the login form, actions are refused.
    let page = send(bare().get(demo.url("/admin/sessions"))).await;
    assert_eq!(page.status, 303);
    assert_eq!(page.headers["location"], "/admin/login");
    assert!(!page.body.contains(&prefix(&key)));
    let revoke = send(
        bare()
            .post(demo.url("/admin/sessions/revoke"))
            .form(&[("key", key.as_str()), ("csrf", "x")]),
    )
    .await;
    assert_eq!(revoke.status, 403);
    assert_eq!(whoami(&demo, &key).await.as_deref(), Some("ana"));

    // A wrong token: 403, no admin cookie, still no list.
    let client = visitor();
    let wrong = submit_token(&demo, &client, "test-admin-token-0123456780").await;
    assert_eq!(wrong.status, 403);
    assert!(wrong.body.contains("Wrong admin token."));
    assert!(wrong.cookie("cloakroom_admin").is_none());
    let page = send(client.get(demo.url("/admin/sessions"))).await;
    assert_eq!(page.status, 303, "a wrong token opens nothing");

    // The right token without the login form's CSRF token: refused too.
    let no_csrf = post(&demo, &visitor(), "/admin/login", &[("token", TOKEN)]).await;
    assert_eq!(no_csrf.status, 403);
    assert!(no_csrf.cookie("cloakroom_admin").is_none());

    // The right token: an HttpOnly, SameSite=Strict cookie for /admin, and the list.
    let login = submit_token(&demo, &client, TOKEN).await;
    assert_eq!(login.status, 303);
    assert_eq!(login.headers["location"], "/admin/sessions");
    let cookie = login.cookie("cloakroom_admin").expect("an admin cookie");
    assert!(cookie.has("httponly"), "{}", cookie.raw);
    assert_eq!(cookie.get("samesite"), Some("Strict"), "{}", cookie.raw);
    assert_eq!(cookie.get("path"), Some("/admin"), "{}", cookie.raw);
    let page = list(&demo, &client, "").await;
    assert_eq!(listed(&page.body), [prefix(&key)]);
    assert!(
        !page.body.contains(&format!(">{key}")),
        "the list shows only a prefix of a key"
    );

    // A forged or tampered cookie is no login.
    let mut tampered = cookie.value.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == '0' { '1' } else { '0' });
    for forged in [tampered.as_str(), "1.2.3", "anything"] {
        let page = send(
            bare()
                .get(demo.url("/admin/sessions"))
                .header("cookie", format!("cloakroom_admin={forged}")),
        )
        .await;
        assert_eq!(page.status, 303, "cookie {forged:?}");
    }

    // Logging out deletes the cookie.
    let csrf = csrf_of(&page.body);
    let out = post(&demo, &client, "/admin/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, 303);
    assert!(out.cookie("cloakroom_admin").unwrap().value.is_empty());
    assert_eq!(
        send(client.get(demo.url("/admin/sessions"))).await.status,
        303
    );
}

#[tokio::test]
async fn a_post_without_its_csrf_token_is_refused_and_revokes_nothing() {
    let demo = admin_demo();
    let key = logged_in(&demo, "ana").await;
    let (client, csrf) = admin(&demo).await;
    let (_, other_login) = admin(&demo).await;
    assert_ne!(csrf, other_login, "each login has its own CSRF token");

    for bad in [
        None,
        Some(""),
        Some("0".repeat(64).as_str()),
        Some(other_login.as_str()),
    ] {
        let mut form = vec![("key", key.as_str())];
        if let Some(token) = bad {
            form.push(("csrf", token));
        }
        for path in ["/admin/sessions/revoke", "/admin/sessions/view"] {
            let reply = post(&demo, &client, path, &form).await;
            assert_eq!(reply.status, 403, "{path} with CSRF {bad:?}");
            assert!(reply.body.contains("CSRF"), "{}", reply.body);
        }
        let mut form = vec![("user", "ana")];
        if let Some(token) = bad {
            form.push(("csrf", token));
        }
        let reply = post(&demo, &client, "/admin/users/revoke", &form).await;
        assert_eq!(reply.status, 403, "revoke-user with CSRF {bad:?}");
    }
    assert_eq!(
        whoami(&demo, &key).await.as_deref(),
        Some("ana"),
        "nothing was revoked"
    );

    // The page's own token works.
    let reply = revoke(&demo, &client, &csrf, &key).await;
    assert_eq!(reply.status, 303);
    assert_eq!(whoami(&demo, &key).await, None);
}

/// A session of `user` (or an anonymous one) that expires `seconds` from now.
async fn session_expiring_in(demo: &Demo, user: Option<&str>, seconds: u64) -> String {
    let key = match user {
        Some(user) => logged_in(demo, user).await,
        None => send(bare().get(demo.url("/api/visits"))).await.new_key(),
    };
    let reply = send(
        bare()
            .post(demo.url("/api/expiry"))
            .header("cookie", session(&key))
            .json(&json!({ "seconds": seconds })),
    )
    .await;
    assert_eq!(reply.status, 200);
    key
}

#[tokio::test]
async fn the_list_is_newest_first_twenty_a_page_and_filters_by_user() {
    let demo = admin_demo();
    // 23 sessions, each expiring later than the one before; every fifth is alice's.
    let mut keys = Vec::new();
    for i in 0..23u64 {
        let user = (i % 5 == 0).then_some("alice");
        keys.push(session_expiring_in(&demo, user, 100_000 + i * 60).await);
    }
    let newest_first: Vec<String> = keys.iter().rev().map(|k| prefix(k)).collect();
    let (client, _) = admin(&demo).await;

    let first = list(&demo, &client, "").await;
    assert_eq!(listed(&first.body), newest_first[..20]);
    assert!(first.body.contains("23 live sessions"), "{}", first.body);
    assert!(first.body.contains(r#"Page <span id="page">1</span> of 2"#));
    assert!(first.body.contains(r#"href="/admin/sessions?page=2""#));
    let second = list(&demo, &client, "page=2").await;
    assert_eq!(listed(&second.body), newest_first[20..]);

    let alice = list(&demo, &client, "user=alice").await;
    let alices: Vec<String> = [20, 15, 10, 5, 0]
        .iter()
        .map(|&i| prefix(&keys[i]))
        .collect();
    assert_eq!(listed(&alice.body), alices);
    assert!(alice.body.contains("5 live sessions of user <b>alice</b>"));
    assert!(alice.body.contains("Revoke all 5 sessions of alice"));
    let nobody = list(&demo, &client, "user=nobody").await;
    assert!(listed(&nobody.body).is_empty());
    assert!(nobody.body.contains("No live sessions."));
}

#[tokio::test]
async fn the_detail_page_shows_the_decoded_data_and_revoke_ends_the_session() {
    let demo = admin_demo();
    let key = logged_in(&demo, "ana").await;
    send(
        bare()
            .post(demo.url("/api/cart"))
            .header("cookie", session(&key))
            .json(&json!({ "item": "pear" })),
    )
    .await;
    let (client, csrf) = admin(&demo).await;

    let detail = view(&demo, &client, &csrf, &key).await;
    assert_eq!(detail.status, 200);
    let text = unescape(&detail.body);
    assert!(text.contains(r#"<dd id="user">ana</dd>"#), "{text}");
    for shown in [
        r#""_auth_user_id": "ana""#,
        r#""username": "ana""#,
        r#""cart": ["#,
        r#""pear""#,
    ] {
        assert!(text.contains(shown), "the data shows {shown}: {text}");
    }
    assert!(text.contains(&format!(
        "Session <code id=\"key-prefix\">{}…",
        prefix(&key)
    )));

    let revoked = revoke(&demo, &client, &csrf, &key).await;
    assert_eq!(revoked.status, 303);
    assert_eq!(revoked.headers["location"], "/admin/sessions?revoked=1");
    assert_eq!(
        whoami(&demo, &key).await,
        None,
        "the next request is anonymous"
    );
    let page = list(&demo, &client, "revoked=1").await;
    assert!(page.body.contains("Revoked 1 session."));
    assert!(listed(&page.body).is_empty());

    // Gone is gone: viewing or revoking it again says so.
    let again = revoke(&demo, &client, &csrf, &key).await;
    assert_eq!(again.headers["location"], "/admin/sessions?revoked=0");
    let view = view(&demo, &client, &csrf, &key).await;
    assert_eq!(view.status, 404);
}

/// A session whose data names a user that the index does not hold (written by Django on a
/// shared store, or before the index table existed) is still a live session: revoking it from
/// the admin page ends it, rather than asking the index and leaving it alone.
#[tokio::test]
async fn revoking_a_session_the_user_index_does_not_hold_still_ends_it() {
    let demo = admin_demo();
    let key = logged_in(&demo, "ana").await;
    sqlx::query("DELETE FROM cloakroom_session_user WHERE session_key = ?1")
        .bind(&key)
        .execute(&demo.db().await)
        .await
        .unwrap();
    let (client, csrf) = admin(&demo).await;
    let reply = revoke(&demo, &client, &csrf, &key).await;
    assert_eq!(reply.headers["location"], "/admin/sessions?revoked=1");
    assert_eq!(
        whoami(&demo, &key).await,
        None,
        "the page said revoked: the next request is anonymous"
    );
}

#[tokio::test]
async fn revoking_a_user_ends_all_their_sessions_and_no_one_elses() {
    let demo = admin_demo();
    let mut anas = Vec::new();
    for _ in 0..3 {
        anas.push(logged_in(&demo, "ana").await);
    }
    let bob = logged_in(&demo, "bob").await;
    let anonymous = send(bare().get(demo.url("/api/visits"))).await.new_key();
    let (client, csrf) = admin(&demo).await;

    let reply = revoke_user(&demo, &client, &csrf, "ana").await;
    assert_eq!(reply.status, 303);
    assert_eq!(
        reply.headers["location"],
        "/admin/sessions?user=ana&revoked=3"
    );
    for key in &anas {
        assert_eq!(whoami(&demo, key).await, None);
    }
    assert_eq!(whoami(&demo, &bob).await.as_deref(), Some("bob"));
    let page = list(&demo, &client, "").await;
    let mut left = listed(&page.body);
    left.sort();
    let mut expected = vec![prefix(&bob), prefix(&anonymous)];
    expected.sort();
    assert_eq!(left, expected);
}

#[tokio::test]
async fn full_session_keys_stay_out_of_urls_and_the_server_log() {
    let dir = support::Scratch::new("admin-log");
    let log = dir.join("server.log");
    let demo = Demo::start_logged(
        &dir,
        &["--admin-token", TOKEN],
        &[("RUST_LOG", "debug")],
        Some(&log),
    );
    let key = logged_in(&demo, "ana").await;
    let (client, csrf) = admin(&demo).await;
    let page = list(&demo, &client, "").await;
    for href in page.body.split("href=\"").skip(1) {
        assert!(!href[..href.find('"').unwrap()].contains(&key));
    }
    let view = view(&demo, &client, &csrf, &key).await;
    assert_eq!(view.status, 200);
    let revoke = revoke(&demo, &client, &csrf, &key).await;
    assert!(!revoke.headers["location"].to_str().unwrap().contains(&key));
    drop(demo);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        !logged.is_empty(),
        "the demo logs at debug (else this test proves nothing)"
    );
    assert!(
        !logged.contains(&key),
        "the server log holds the full key: {logged}"
    );
}

#[tokio::test]
async fn under_hash_keys_sessions_are_listed_and_revoked_by_their_hash() {
    let demo = Demo::start(&["--admin-token", TOKEN, "--hash-keys"]);
    let key = logged_in(&demo, "ana").await;
    let (client, csrf) = admin(&demo).await;
    let page = list(&demo, &client, "").await;
    let names = listed(&page.body);
    assert_eq!(names.len(), 1);
    assert_ne!(
        names[0],
        prefix(&key),
        "the store holds the key's hash, not the key"
    );
    assert!(!page.body.contains(&key), "no live key on the page");
    let name_start =
        page.body.find(r#"name="key" value=""#).unwrap() + r#"name="key" value=""#.len();
    let name = &page.body[name_start..name_start + 40];
    let reply = revoke(&demo, &client, &csrf, name).await;
    assert_eq!(reply.headers["location"], "/admin/sessions?revoked=1");
    assert_eq!(whoami(&demo, &key).await, None);
}

#[tokio::test]
async fn on_signed_cookies_the_page_says_there_is_nothing_to_list() {
    let demo = Demo::start(&["--admin-token", TOKEN, "--engine", "signed_cookies"]);
    let client = visitor();
    assert_eq!(submit_token(&demo, &client, TOKEN).await.status, 303);
    for path in ["/admin/sessions", "/admin/sessions?user=ana"] {
        let page = send(client.get(demo.url(path))).await;
        assert_eq!(page.status, 501, "GET {path}");
        assert!(
            page.body.contains("signed cookies live in browsers"),
            "GET {path}: {}",
            page.body
        );
    }
}

#[tokio::test]
async fn a_user_name_is_shown_as_text_and_filters_and_revokes_like_any_other() {
    let demo = admin_demo();
    let name = r#"<img src=x onerror="alert(1)"> & co"#;
    let key = logged_in(&demo, name).await;
    let (client, csrf) = admin(&demo).await;
    let page = list(&demo, &client, "").await;
    assert!(!page.body.contains("<img"), "markup from data is escaped");
    assert!(page
        .body
        .contains("&lt;img src=x onerror=&quot;alert(1)&quot;&gt; &amp; co"));

    let encoded = "%3Cimg%20src%3Dx%20onerror%3D%22alert%281%29%22%3E%20%26%20co";
    let filtered = list(&demo, &client, &format!("user={encoded}")).await;
    assert_eq!(listed(&filtered.body), [prefix(&key)]);
    let reply = revoke_user(&demo, &client, &csrf, name).await;
    assert_eq!(
        reply.headers["location"],
        format!("/admin/sessions?user={encoded}&revoked=1").as_str()
    );
    assert_eq!(whoami(&demo, &key).await, None);
}

/// Issue 14, point 8: admin tokens could be guessed as fast as the server answered. After 5
/// wrong tokens in a minute every attempt is refused with 429, the right token included.
#[tokio::test]
async fn admin_token_guessing_is_rate_limited() {
    let demo = admin_demo();
    for attempt in 0..5 {
        let wrong = submit_token(&demo, &visitor(), &format!("guess-{attempt:020}")).await;
        assert_eq!(wrong.status, 403, "attempt {attempt}: {}", wrong.body);
    }
    let client = visitor();
    let limited = submit_token(&demo, &client, TOKEN).await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert!(limited.headers.contains_key("retry-after"));
    assert!(limited.cookie("cloakroom_admin").is_none());
    let page = send(client.get(demo.url("/admin/sessions"))).await;
    assert_eq!(page.status, 303, "a refused login opens nothing");
}

/// Reads `response` (an event stream) until its text holds `needle`, at most `limit`: the
/// text read so far, and whether the needle came.
async fn read_until(
    response: &mut reqwest::Response,
    text: &mut String,
    needle: &str,
    limit: std::time::Duration,
) -> bool {
    let read = async {
        while !text.contains(needle) {
            match response.chunk().await {
                Ok(Some(chunk)) => text.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return false,
            }
        }
        true
    };
    tokio::time::timeout(limit, read).await.unwrap_or(false)
}

/// Opens the demo's live event stream under session `key` and reads its greeting.
async fn open_stream(demo: &Demo, key: &str) -> (reqwest::Response, String) {
    let mut response = bare()
        .get(demo.url("/api/live/events"))
        .header("cookie", session(key))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut text = String::new();
    let open = read_until(
        &mut response,
        &mut text,
        "event: open",
        std::time::Duration::from_secs(5),
    )
    .await;
    assert!(open, "the stream opens: {text:?}");
    (response, text)
}

/// Two app servers on one PostgreSQL: the admin page's Revoke button on server A ends the
/// live event stream that session holds open on server B (the revocation rides on the
/// store's channel), within a second; ana's other session's stream on B stays open.
#[tokio::test]
async fn revoking_one_session_on_the_admin_page_ends_its_live_stream_on_another_server() {
    let (url, table) = (support::postgres_url(), support::unique_table("admin_live"));
    support::migrate(&url, &table);
    let args = [
        "--admin-token",
        TOKEN,
        "--database-url",
        url.as_str(),
        "--table",
        table.as_str(),
    ];
    let (a, b) = (Demo::start(&args), Demo::start(&args));
    let ana = logged_in(&a, "ana").await;
    let ana_phone = logged_in(&a, "ana").await;
    let (mut stream, mut text) = open_stream(&b, &ana).await;
    let (mut phone_stream, mut phone_text) = open_stream(&b, &ana_phone).await;
    // Let both servers' listeners settle (they connect at start).
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let (client, csrf) = admin(&a).await;
    let start = std::time::Instant::now();
    let revoked = revoke(&a, &client, &csrf, &ana).await;
    assert_eq!(revoked.status, 303);
    assert_eq!(revoked.headers["location"], "/admin/sessions?revoked=1");
    let ended = read_until(
        &mut stream,
        &mut text,
        "event: ended\ndata: revoked",
        std::time::Duration::from_secs(1),
    )
    .await;
    assert!(ended, "B's stream of the revoked session ended: {text:?}");
    println!(
        "postgres: the admin page's revoke on A ended the stream on B in {:?}",
        start.elapsed()
    );
    let other_ended = read_until(
        &mut phone_stream,
        &mut phone_text,
        "event: ended",
        std::time::Duration::from_millis(500),
    )
    .await;
    assert!(!other_ended, "ana's other session goes on: {phone_text:?}");
    assert_eq!(whoami(&b, &ana_phone).await.as_deref(), Some("ana"));
}
