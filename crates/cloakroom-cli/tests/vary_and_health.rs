//! `Vary: Cookie` marks every response that depends on the session (so shared caches never
//! serve one visitor's page to another), and `/health`, which never touches the session, costs
//! no store access.

mod support;

use serde_json::{json, Value};
use support::{bare, send, session, visitor, Demo};

#[tokio::test]
async fn every_response_that_used_the_session_varies_on_cookie() {
    let demo = Demo::start(&[]);
    let ana = visitor();
    let calls: &[(&str, &str, Option<Value>)] = &[
        ("GET", "/api/whoami", None),
        ("GET", "/api/cart", None),
        ("GET", "/api/flash", None),
        ("GET", "/api/visits", None),
        ("POST", "/api/flash", Some(json!({ "message": "Saved!" }))),
        ("GET", "/api/flash", None),
        ("POST", "/api/cart", Some(json!({ "item": "apple" }))),
        ("GET", "/api/cart", None),
        ("POST", "/api/checkout", None),
        ("POST", "/api/login", Some(json!({ "username": "ana" }))),
        ("GET", "/api/whoami", None),
        ("POST", "/api/expiry", Some(json!({ "seconds": 300 }))),
        ("GET", "/", None),
        ("POST", "/api/logout", None),
        ("GET", "/api/whoami", None),
    ];
    for (method, path, body) in calls {
        let mut request = match *method {
            "GET" => ana.get(demo.url(path)),
            _ => ana.post(demo.url(path)),
        };
        if let Some(body) = body {
            request = request.json(body);
        }
        let reply = send(request).await;
        assert!(reply.status < 400, "{method} {path}: {reply:?}");
        assert!(
            reply.varies_on_cookie(),
            "{method} {path} used the session but has no Vary: Cookie: {:?}",
            reply.headers
        );
    }
    // Also when the answer is to delete a stale cookie.
    let stale = send(
        bare()
            .get(demo.url("/api/cart"))
            .header("cookie", session(&"a".repeat(32))),
    )
    .await;
    assert!(stale.session_cookie().is_deletion());
    assert!(stale.varies_on_cookie(), "{:?}", stale.headers);
}

#[tokio::test]
async fn health_never_touches_the_session() {
    let demo = Demo::start(&[]);
    let ana = visitor();
    let key = send(ana.get(demo.url("/api/visits"))).await.new_key();

    let check = |reply: &support::Reply, what: &str| {
        assert_eq!(reply.status, 200, "{what}: {reply:?}");
        assert_eq!(reply.body, "ok", "{what}");
        assert!(!reply.varies_on_cookie(), "{what}: {:?}", reply.headers);
        assert!(
            reply.set_cookies().is_empty(),
            "{what}: {:?}",
            reply.headers
        );
    };
    check(&send(bare().get(demo.url("/health"))).await, "no cookie");
    check(&send(ana.get(demo.url("/health"))).await, "with a session");
    check(
        &send(
            bare()
                .get(demo.url("/health"))
                .header("cookie", session(&"b".repeat(32))),
        )
        .await,
        "with an unknown key",
    );
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
    check(
        &send(
            bare()
                .get(demo.url("/health"))
                .header("cookie", session(&key)),
        )
        .await,
        "with a session while the table is missing",
    );
}
