//! The demo's JSON API answers the foundation issue's contract over real HTTP, with the
//! session kept in the demo's own SQLite file.

mod support;

use serde_json::json;
use support::{bare, count_rows, row, send, session, visitor, Demo};

#[tokio::test]
async fn visits_count_per_visitor_and_a_second_visitor_starts_at_one() {
    let demo = Demo::start(&[]);
    let ana = visitor();
    let ben = visitor();
    for n in 1..=3 {
        let reply = send(ana.get(demo.url("/api/visits"))).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json(), json!({ "visits": n }));
    }
    for n in 1..=2 {
        let reply = send(ben.get(demo.url("/api/visits"))).await;
        assert_eq!(
            reply.json(),
            json!({ "visits": n }),
            "a second visitor has own count"
        );
    }
    let reply = send(ana.get(demo.url("/api/visits"))).await;
    assert_eq!(
        reply.json(),
        json!({ "visits": 4 }),
        "the first visitor's count is intact"
    );
    assert_eq!(
        count_rows(&demo.db().await).await,
        2,
        "one record per visitor"
    );
}

#[tokio::test]
async fn flash_message_is_shown_once() {
    let demo = Demo::start(&[]);
    let ana = visitor();
    let posted = send(
        ana.post(demo.url("/api/flash"))
            .json(&json!({ "message": "Saved!" })),
    )
    .await;
    assert_eq!(posted.status, 204);
    assert!(posted.body.is_empty());
    let first = send(ana.get(demo.url("/api/flash"))).await;
    assert_eq!(first.json(), json!({ "message": "Saved!" }));
    let second = send(ana.get(demo.url("/api/flash"))).await;
    assert_eq!(second.json(), json!({ "message": null }));
    let other = send(visitor().get(demo.url("/api/flash"))).await;
    assert_eq!(
        other.json(),
        json!({ "message": null }),
        "another visitor never sees it"
    );
}

#[tokio::test]
async fn cart_adds_lists_and_checks_out() {
    let demo = Demo::start(&[]);
    let ana = visitor();
    let add = |item: &str| {
        ana.post(demo.url("/api/cart"))
            .json(&json!({ "item": item }))
    };
    assert_eq!(
        send(add("apple")).await.json(),
        json!({ "count": 1, "items": ["apple"] })
    );
    assert_eq!(
        send(add("pear")).await.json(),
        json!({ "count": 2, "items": ["apple", "pear"] })
    );
    for _ in 0..2 {
        assert_eq!(
            send(ana.get(demo.url("/api/cart"))).await.json(),
            json!({ "count": 2, "items": ["apple", "pear"] }),
            "reading the cart leaves it unchanged"
        );
    }
    assert_eq!(
        send(ana.post(demo.url("/api/checkout"))).await.json(),
        json!({ "count": 0, "items": [] })
    );
    assert_eq!(
        send(ana.get(demo.url("/api/cart"))).await.json(),
        json!({ "count": 0, "items": [] })
    );
}

#[tokio::test]
async fn login_cycles_the_key_and_keeps_the_cart() {
    let demo = Demo::start(&[]);
    let db = demo.db().await;
    let ana = visitor();
    let added = send(
        ana.post(demo.url("/api/cart"))
            .json(&json!({ "item": "apple" })),
    )
    .await;
    let before = added.new_key();

    let login = send(
        ana.post(demo.url("/api/login"))
            .json(&json!({ "username": "ana" })),
    )
    .await;
    assert_eq!(login.status, 200);
    assert_eq!(login.json(), json!({ "username": "ana" }));
    let after = login.new_key();
    assert_ne!(
        after, before,
        "login hands out a new key (session fixation)"
    );

    assert_eq!(
        send(ana.get(demo.url("/api/whoami"))).await.json(),
        json!({ "username": "ana" })
    );
    assert_eq!(
        send(ana.get(demo.url("/api/cart"))).await.json(),
        json!({ "count": 1, "items": ["apple"] }),
        "the cart survives login"
    );

    // Whoever held the pre-login key (a fixation attacker) gets nothing.
    let replay = bare();
    let whoami = send(
        replay
            .get(demo.url("/api/whoami"))
            .header("cookie", session(&before)),
    )
    .await;
    assert_eq!(whoami.json(), json!({ "username": null }));
    assert_eq!(row(&db, &before).await, None, "the old record is deleted");
    assert!(row(&db, &after).await.is_some());
    assert_eq!(count_rows(&db).await, 1);
}

#[tokio::test]
async fn whoami_is_null_for_a_new_visitor() {
    let demo = Demo::start(&[]);
    let reply = send(visitor().get(demo.url("/api/whoami"))).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!({ "username": null }));
}

#[tokio::test]
async fn logout_flushes_and_the_old_key_is_useless() {
    let demo = Demo::start(&[]);
    let db = demo.db().await;
    let ana = visitor();
    send(ana.get(demo.url("/api/visits"))).await;
    let key = send(
        ana.post(demo.url("/api/login"))
            .json(&json!({ "username": "ana" })),
    )
    .await
    .new_key();

    let logout = send(ana.post(demo.url("/api/logout"))).await;
    assert_eq!(logout.status, 204);
    let deleted = logout.session_cookie();
    assert!(
        deleted.is_deletion(),
        "logout deletes the cookie: {deleted:?}"
    );
    assert_eq!(row(&db, &key).await, None, "logout deletes the record");
    assert_eq!(
        send(ana.get(demo.url("/api/whoami"))).await.json(),
        json!({ "username": null })
    );

    // Replaying the old cookie value (a stolen cookie) reaches nothing.
    let thief = bare();
    let whoami = send(
        thief
            .get(demo.url("/api/whoami"))
            .header("cookie", session(&key)),
    )
    .await;
    assert_eq!(whoami.json(), json!({ "username": null }));
    let visits = send(
        thief
            .get(demo.url("/api/visits"))
            .header("cookie", session(&key)),
    )
    .await;
    assert_eq!(visits.json(), json!({ "visits": 1 }), "visits restart");
    assert_ne!(visits.new_key(), key, "the old key is never reused");
    assert_eq!(row(&db, &key).await, None);
}

#[tokio::test]
async fn expiry_reports_the_sessions_lifetime() {
    let demo = Demo::start(&[]);
    let ana = visitor();
    let set = |seconds: u64| {
        ana.post(demo.url("/api/expiry"))
            .json(&json!({ "seconds": seconds }))
    };
    assert_eq!(
        send(set(300)).await.json(),
        json!({ "expiry_age": 300, "expire_at_browser_close": false })
    );
    let browser = send(set(0)).await.json();
    assert_eq!(browser["expire_at_browser_close"], json!(true));
    // Django: a browser-session cookie's record still lives SESSION_COOKIE_AGE.
    assert_eq!(browser["expiry_age"], json!(1_209_600));
}
