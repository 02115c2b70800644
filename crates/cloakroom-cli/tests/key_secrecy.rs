//! The session key stays secret: with `hash_keys` the store holds only a hash of it (a dump of
//! the table yields no cookie that works), and the key never shows in the server's log or in
//! an error body, even when the data is corrupt or the store fails.

mod support;

use serde_json::json;
use support::{bare, send, session, Demo, Scratch};

#[tokio::test]
async fn with_hash_keys_the_store_holds_no_live_key() {
    let dir = Scratch::new("hashed");
    let demo = Demo::start_in(&dir, &["--hash-keys"]);
    let client = bare();
    let first = send(client.get(demo.url("/api/visits"))).await;
    assert_eq!(first.json(), json!({ "visits": 1 }));
    let key = first.new_key();
    let again = send(
        client
            .get(demo.url("/api/visits"))
            .header("cookie", session(&key)),
    )
    .await;
    assert_eq!(
        again.json(),
        json!({ "visits": 2 }),
        "the cookie still works"
    );

    let db = demo.db().await;
    let dumped: Vec<String> = sqlx::query_scalar("SELECT session_key FROM cloakroom_session")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(dumped, vec![cloakroom::hashed::stored_key(&key)]);
    assert!(!dumped.contains(&key), "the raw key is in the store");
    // Every key in the dump, presented as a cookie, is a stranger's: a fresh session.
    for stolen in &dumped {
        let r = send(
            client
                .get(demo.url("/api/visits"))
                .header("cookie", session(stolen)),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.json(),
            json!({ "visits": 1 }),
            "a dumped key opened a session"
        );
        assert_ne!(&r.new_key(), stolen);
    }
}

#[test]
fn hash_keys_refuses_rotation_grace() {
    let dir = Scratch::new("hashed-grace");
    let (ok, out, err) = support::cli(
        &dir,
        &[
            "demo",
            "--addr",
            "127.0.0.1:0",
            "--hash-keys",
            "--rotation-grace",
            "5",
        ],
    );
    assert!(
        !ok,
        "the demo started with hash_keys and rotation_grace: {out}"
    );
    assert!(
        err.contains("hash_keys"),
        "the error names the setting: {err}"
    );
}

#[tokio::test]
async fn the_key_is_never_in_logs_or_error_bodies() {
    let dir = Scratch::new("secrecy");
    let log = dir.join("server.log");
    let demo = Demo::start_logged(
        &dir,
        &[],
        &[(
            "RUST_LOG",
            "trace,hyper=info,hyper_util=info,h2=info,tokio=info,runtime=info,mio=info",
        )],
        Some(&log),
    );
    let client = bare();
    let mut keys = Vec::new();
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let r = send(client.get(demo.url("/api/visits"))).await;
        keys.push(r.new_key());
    }
    let db = demo.db().await;

    // Corrupt data under the first key: a fresh session and a warning.
    sqlx::query(
        "UPDATE cloakroom_session SET session_data = 'not base64 {' WHERE session_key = ?1",
    )
    .bind(&keys[0])
    .execute(&db)
    .await
    .unwrap();
    let r = send(
        client
            .get(demo.url("/api/visits"))
            .header("cookie", session(&keys[0])),
    )
    .await;
    assert_eq!(r.status, 200);
    bodies.push(r.body);
    // A login, which cycles the key.
    let r = send(
        client
            .post(demo.url("/api/login"))
            .header("cookie", session(&keys[1]))
            .json(&json!({ "username": "ana" })),
    )
    .await;
    assert_eq!(r.status, 200);
    keys.push(r.new_key());
    bodies.push(r.body);

    // The store fails (its table is gone): 503s whose bodies must not name the key.
    sqlx::query("DROP TABLE cloakroom_session")
        .execute(&db)
        .await
        .unwrap();
    for key in &keys {
        for path in ["/api/visits", "/api/cart"] {
            let r = send(client.get(demo.url(path)).header("cookie", session(key))).await;
            assert_eq!(r.status, 503, "{}", r.body);
            bodies.push(r.body);
        }
    }
    drop(demo);

    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("WARN") && logged.contains("cloakroom"),
        "the log was not captured: {logged}"
    );
    for key in &keys {
        assert!(
            !logged.contains(key.as_str()),
            "the key {key} is in the log"
        );
        for body in &bodies {
            assert!(!body.contains(key.as_str()), "the key is in a body: {body}");
        }
    }
}
