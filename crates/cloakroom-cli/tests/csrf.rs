//! Cross-site requests against the demo (issue 14, point 8): a state-changing request that a
//! browser sends from another site is refused with 403 and changes nothing; the same request
//! from the demo's own pages, or from a script without `Origin`, still works.

mod support;

use reqwest::header::{CONTENT_TYPE, COOKIE, ORIGIN};
use serde_json::json;
use support::{bare, logged_in, send, session, whoami, Demo};

/// How many live sessions the demo lists for the user of `key`.
async fn sessions_of(demo: &Demo, key: &str) -> usize {
    let reply = send(
        bare()
            .get(demo.url("/api/sessions"))
            .header(COOKIE, session(key)),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["sessions"].as_array().map_or(0, Vec::len)
}

/// Today `POST /api/logout-everywhere` with `Origin: https://evil.example` and
/// `Content-Type: text/plain` revoked every session of the user.
#[tokio::test]
async fn csrf_cross_site_logout_everywhere_is_refused() {
    let demo = Demo::start(&[]);
    let laptop = logged_in(&demo, "ana").await;
    let phone = logged_in(&demo, "ana").await;
    assert_eq!(sessions_of(&demo, &laptop).await, 2);

    for (header, value) in [
        (ORIGIN.as_str(), "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
        (ORIGIN.as_str(), "null"),
    ] {
        let reply = send(
            bare()
                .post(demo.url("/api/logout-everywhere"))
                .header(COOKIE, session(&laptop))
                .header(CONTENT_TYPE, "text/plain")
                .header(header, value)
                .body("x"),
        )
        .await;
        assert_eq!(reply.status, 403, "{header}: {value}: {}", reply.body);
        assert!(reply.set_cookies().is_empty());
    }
    assert_eq!(sessions_of(&demo, &phone).await, 2, "nothing was revoked");

    // Login CSRF: a cross-site form cannot sign the visitor in under the attacker's name.
    let reply = send(
        bare()
            .post(demo.url("/login"))
            .header(ORIGIN, "https://evil.example")
            .form(&[("username", "mallory")]),
    )
    .await;
    assert_eq!(reply.status, 403);
    assert!(reply.set_cookies().is_empty());

    // The demo's own page (same origin) and scripts without Origin still work.
    let own = format!("http://{}", demo.addr);
    let reply = send(
        bare()
            .post(demo.url("/api/cart"))
            .header(COOKIE, session(&laptop))
            .header(ORIGIN, own.as_str())
            .header("sec-fetch-site", "same-origin")
            .json(&json!({ "item": "apple" })),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    // A same-origin form on a `Referrer-Policy: no-referrer` page (the admin page) is sent
    // with `Origin: null`; the browser's Sec-Fetch-Site says it is our own.
    let reply = send(
        bare()
            .post(demo.url("/api/cart"))
            .header(COOKIE, session(&laptop))
            .header(ORIGIN, "null")
            .header("sec-fetch-site", "same-origin")
            .json(&json!({ "item": "pear" })),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = send(
        bare()
            .post(demo.url("/api/logout-everywhere"))
            .header(COOKIE, session(&laptop))
            .header(ORIGIN, own.as_str()),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(whoami(&demo, &phone).await, None);
}

/// The page says the demo's login is passwordless and must not be exposed.
#[tokio::test]
async fn csrf_demo_page_warns_that_its_login_is_passwordless() {
    let demo = Demo::start(&[]);
    let page = send(bare().get(demo.url("/"))).await;
    assert!(page.body.contains("passwordless"), "{}", page.body);
}
