//! `encrypt_data` on the demo, over real HTTP, against the real stores: what a dump of the
//! SQLite table or of Redis holds (no session data; with `hash_keys`, no key that works),
//! rotation through `secret_key_fallbacks` (old records read, rewritten under the new key at
//! their next save), and a tampered record, which starts a fresh session and is logged rather
//! than a 500. The HTTP suite also runs on encrypted SQLite and Redis (`http_suite.rs`).

mod support;

use std::path::Path;

use serde_json::{json, Value};
use support::servers::Redis;
use support::{bare, send, session, temp_dir, Demo};

/// What the visitor leaves in the session: none of it may appear in a dump.
const MARKERS: [&str; 2] = ["ana-marker", "apple-marker"];

/// Logs a visitor in as `ana-marker` with `apple-marker` in the cart; their key.
async fn leave_secrets(demo: &Demo) -> String {
    let key = send(
        bare()
            .post(demo.url("/api/cart"))
            .json(&json!({ "item": MARKERS[1] })),
    )
    .await
    .new_key();
    send(
        bare()
            .post(demo.url("/api/login"))
            .header("cookie", session(&key))
            .json(&json!({ "username": MARKERS[0] })),
    )
    .await
    .new_key()
}

async fn cart(demo: &Demo, key: &str) -> Value {
    let reply = send(
        bare()
            .get(demo.url("/api/cart"))
            .header("cookie", session(key)),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.json()["items"].clone()
}

async fn add(demo: &Demo, key: &str, item: &str) {
    let reply = send(
        bare()
            .post(demo.url("/api/cart"))
            .header("cookie", session(key))
            .json(&json!({ "item": item })),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
}

/// Every (session_key, session_data) row of the demo's session table.
async fn table_dump(demo: &Demo) -> Vec<(String, String)> {
    sqlx::query_as("SELECT session_key, session_data FROM cloakroom_session")
        .fetch_all(&demo.db().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_dump_of_the_sqlite_table_holds_no_data_and_with_hash_keys_no_working_key() {
    let demo = Demo::start(&["--encrypt-data", "--secret-key", "k1", "--hash-keys"]);
    let key = leave_secrets(&demo).await;
    assert_eq!(
        cart(&demo, &key).await,
        json!([MARKERS[1]]),
        "the app reads it back"
    );

    let dump = table_dump(&demo).await;
    assert!(!dump.is_empty());
    for (stored_key, data) in &dump {
        for marker in MARKERS.iter().chain([&"cart", &"username", &key.as_str()]) {
            assert!(
                !data.contains(marker) && !stored_key.contains(marker),
                "{marker} in the dump: {stored_key} {data}"
            );
        }
        assert!(
            data.is_ascii() && !data.starts_with('{'),
            "not ciphertext: {data}"
        );
        // The stored name is a hash: presented as a cookie, it reaches nothing.
        assert_eq!(
            cart(&demo, stored_key).await,
            json!([]),
            "a stored key works"
        );
    }
}

#[tokio::test]
async fn a_dump_of_redis_holds_no_data_and_with_hash_keys_no_working_key() {
    let redis = Redis::new();
    let url = redis.url();
    let demo = Demo::start(&[
        "--engine",
        "cache",
        "--cache-url",
        &url,
        "--encrypt-data",
        "--secret-key",
        "k1",
        "--hash-keys",
    ]);
    let key = leave_secrets(&demo).await;
    assert_eq!(cart(&demo, &key).await, json!([MARKERS[1]]));

    let cli = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .args(["-u", &url, "--raw"])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let names = cli(&["--scan"]);
    let mut records = 0;
    for name in names.lines().filter(|n| !n.is_empty()) {
        assert!(
            !name.contains(&key),
            "a live key in a Redis key name: {name}"
        );
        if cli(&["TYPE", name]).trim() != "string" {
            continue; // the user index (see docs/security.md: it keeps user ids)
        }
        let value = cli(&["GET", name]);
        for marker in MARKERS.iter().chain([&"cart", &key.as_str()]) {
            assert!(!value.contains(marker), "{marker} in {name}: {value}");
        }
        records += 1;
        let stored = name.rsplit(':').next().unwrap_or(name);
        assert_eq!(cart(&demo, stored).await, json!([]), "a stored key works");
    }
    assert!(records >= 1, "no session record in Redis: {names}");
}

/// Starts a demo on the SQLite file in `dir` with these keys.
fn demo_in(dir: &Path, secret: &str, fallbacks: Option<&str>) -> Demo {
    let mut args = vec!["--encrypt-data", "--secret-key", secret];
    if let Some(fallbacks) = fallbacks {
        args.extend(["--secret-key-fallbacks", fallbacks]);
    }
    Demo::start_in(dir, &args)
}

#[tokio::test]
async fn rotation_reads_through_a_fallback_and_rewrites_under_the_new_key_at_the_next_save() {
    let dir = temp_dir("encrypt-rotation");
    let (saved, only_read) = {
        let old = demo_in(&dir, "old-key", None);
        let saved = send(
            bare()
                .post(old.url("/api/cart"))
                .json(&json!({ "item": "apple" })),
        )
        .await
        .new_key();
        let only_read = send(
            bare()
                .post(old.url("/api/cart"))
                .json(&json!({ "item": "pear" })),
        )
        .await
        .new_key();
        (saved, only_read)
    };
    {
        let rotated = demo_in(&dir, "new-key", Some("old-key"));
        assert_eq!(
            cart(&rotated, &saved).await,
            json!(["apple"]),
            "the fallback reads"
        );
        assert_eq!(cart(&rotated, &only_read).await, json!(["pear"]));
        add(&rotated, &saved, "fig").await;
    }
    // Without the fallback: the saved session was rewritten under the new key, the one only
    // read was not (a read leaves the stored bytes as they are).
    let new_only = demo_in(&dir, "new-key", None);
    assert_eq!(cart(&new_only, &saved).await, json!(["apple", "fig"]));
    assert_eq!(
        cart(&new_only, &only_read).await,
        json!([]),
        "a record under the old key decrypted without its fallback"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_tampered_record_starts_a_fresh_session_and_is_logged() {
    let dir = temp_dir("encrypt-tamper");
    let log = dir.join("demo.log");
    let demo = Demo::start_logged(
        &dir,
        &["--encrypt-data", "--secret-key", "k1"],
        &[],
        Some(&log),
    );
    let key = send(
        bare()
            .post(demo.url("/api/cart"))
            .json(&json!({ "item": "apple" })),
    )
    .await
    .new_key();
    let db = demo.db().await;
    let (data,): (String,) =
        sqlx::query_as("SELECT session_data FROM cloakroom_session WHERE session_key = ?1")
            .bind(&key)
            .fetch_one(&db)
            .await
            .unwrap();
    // One character of the ciphertext changed, as someone with write access to the table
    // might; and a plain JSON record slipped in under another key.
    let mut tampered = data.into_bytes();
    let at = tampered.len() / 2;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    sqlx::query("UPDATE cloakroom_session SET session_data = ?1 WHERE session_key = ?2")
        .bind(String::from_utf8(tampered).unwrap())
        .bind(&key)
        .execute(&db)
        .await
        .unwrap();

    let reply = send(
        bare()
            .get(demo.url("/api/cart"))
            .header("cookie", session(&key)),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.json()["items"],
        json!([]),
        "tampered data was adopted"
    );
    let visits = send(
        bare()
            .get(demo.url("/api/visits"))
            .header("cookie", session(&key)),
    )
    .await;
    assert_eq!(visits.json(), json!({ "visits": 1 }));
    assert_ne!(
        visits.new_key(),
        key,
        "the tampered record's key was reused"
    );
    drop(demo);
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        logged.contains("corrupt") && logged.contains("does not decrypt"),
        "no warning logged: {logged}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `cloakroom inspect` reads an encrypted session with the key, and cannot without it.
#[tokio::test]
async fn inspect_decrypts_with_the_secret_key_only() {
    let dir = temp_dir("encrypt-inspect");
    let demo = demo_in(&dir, "k1", None);
    let key = send(
        bare()
            .post(demo.url("/api/cart"))
            .json(&json!({ "item": "apple" })),
    )
    .await
    .new_key();
    let (ok, out, err) = support::cli(
        &dir,
        &["inspect", &key, "--encrypt-data", "--secret-key", "k1"],
    );
    assert!(ok && out.contains("apple"), "{out}{err}");
    let (ok, out, err) = support::cli(
        &dir,
        &["inspect", &key, "--encrypt-data", "--secret-key", "k2"],
    );
    assert!(
        !ok && !out.contains("apple"),
        "read with another key: {out}{err}"
    );
    drop(demo);
    let _ = std::fs::remove_dir_all(&dir);
}
