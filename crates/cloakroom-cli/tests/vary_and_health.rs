//! The demo beyond the HTTP suite's contract: its HTML page varies on `Cookie` as the JSON
//! routes do, a page it does not have touches no session, and `/health` costs no store access.

mod support;

use support::{bare, send, session, visitor, Demo};

#[tokio::test]
async fn the_html_page_varies_on_cookie() {
    // The JSON routes are the HTTP suite's `responses_that_used_the_session_vary_on_cookie`.
    let demo = Demo::start(&[]);
    let ana = visitor();
    for _ in 0..2 {
        let reply = send(ana.get(demo.url("/"))).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert!(reply.varies_on_cookie(), "{:?}", reply.headers);
    }
}

#[tokio::test]
async fn health_never_touches_the_store() {
    let demo = Demo::start(&[]);
    let ana = visitor();
    let key = send(ana.get(demo.url("/api/visits"))).await.new_key();

    let missing = send(ana.get(demo.url("/no-such-page"))).await;
    assert_eq!(missing.status, 404);
    assert!(!missing.varies_on_cookie() && missing.set_cookies().is_empty());

    // Proof that /health makes no store access: take the store away.
    let db = demo.db().await;
    sqlx::query("DROP TABLE cloakroom_session")
        .execute(&db)
        .await
        .unwrap();
    let broken = send(
        bare()
            .get(demo.url("/api/whoami"))
            .header("cookie", session(&key)),
    )
    .await;
    assert_eq!(broken.status, 503, "the store is really gone: {broken:?}");
    // Without its store, /health still answers as the HTTP suite's
    // `a_route_that_never_uses_the_session_sends_no_cookie_and_no_vary` says.
    let health = send(
        bare()
            .get(demo.url("/health"))
            .header("cookie", session(&key)),
    )
    .await;
    assert_eq!(
        (health.status, health.body.as_str()),
        (200, "ok"),
        "{health:?}"
    );
    assert!(!health.varies_on_cookie() && health.set_cookies().is_empty());
}
