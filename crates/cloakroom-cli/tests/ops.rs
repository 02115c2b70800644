//! The operator's commands against the real servers: `copy` between engines (twice, to show
//! it is idempotent), `inspect`, `stats` and the batched `clearsessions`.

mod support;

use serde_json::{json, Value};
use support::{
    cli, migrate, postgres_url, redis_url, send, session, unique_table, visitor, Demo, Scratch,
};

/// Makes `n` sessions on the demo, session `i` with `i + 1` visits; returns their keys.
async fn sessions(demo: &Demo, n: usize) -> Vec<String> {
    let mut keys = Vec::new();
    for i in 0..n {
        let client = visitor();
        let key = send(client.get(demo.url("/api/visits"))).await.new_key();
        for _ in 0..i {
            send(client.get(demo.url("/api/visits"))).await;
        }
        keys.push(key);
    }
    keys
}

/// Stores a record that expired a minute ago in the demo's SQLite table.
async fn expired_row(demo: &Demo, key: &str) {
    sqlx::query("INSERT INTO cloakroom_session VALUES (?1, '{\"visits\": 99}', ?2)")
        .bind(key)
        .bind("2001-01-01 00:00:00")
        .execute(&demo.db().await)
        .await
        .unwrap();
}

/// Runs `cloakroom ARGS` and returns its stdout, failing with its stderr.
fn run(dir: &std::path::Path, args: &[&str]) -> String {
    let (ok, out, err) = cli(dir, args);
    assert!(ok, "cloakroom {args:?} failed: {out}{err}");
    out
}

/// `cloakroom inspect KEY` on the engine `args` name, parsed.
fn inspect(dir: &std::path::Path, key: &str, args: &[&str]) -> Value {
    let mut all = vec!["inspect", key];
    all.extend_from_slice(args);
    serde_json::from_str(&run(dir, &all)).unwrap()
}

/// Copies twice from `from` to `to`: the first run copies `n`, the second none.
fn copy_twice(dir: &std::path::Path, from: &str, to: &str, n: usize) {
    let out = run(dir, &["copy", "--from", from, "--to", to]);
    assert!(
        out.contains(&format!("copied {n} sessions (0 already there, 0 kept")),
        "{out}"
    );
    let out = run(dir, &["copy", "--from", from, "--to", to]);
    assert!(
        out.contains(&format!("copied 0 sessions ({n} already there, 0 kept")),
        "the second run changes nothing: {out}"
    );
}

/// After a copy, each session goes on in a demo on the destination: same key, same data.
async fn sessions_go_on(demo: &Demo, keys: &[String]) {
    for (i, key) in keys.iter().enumerate() {
        let reply = send(
            support::bare()
                .get(demo.url("/api/visits"))
                .header("cookie", session(key)),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.json(), json!({ "visits": i + 2 }), "session {i}");
        assert!(
            reply.cookie("sessionid").is_none_or(|c| c.value == *key),
            "the key is kept"
        );
    }
}

#[tokio::test]
async fn copy_sqlite_to_redis_keeps_keys_data_and_expiry() {
    let demo = Demo::start(&[]);
    let keys = sessions(&demo, 3).await;
    expired_row(&demo, "expiredexpiredexpiredexpired0001").await;
    let from = demo.db_url();
    let to = redis_url();
    copy_twice(&demo.dir, &from, &to, 3);

    for key in &keys {
        let there = inspect(&demo.dir, key, &["--database-url", &from]);
        let here = inspect(&demo.dir, key, &["--engine", "cache", "--cache-url", &to]);
        assert_eq!(there["data"], here["data"]);
        assert_eq!(here["engine"], "redis");
        let (a, b) = (
            there["expires_in_seconds"].as_i64().unwrap(),
            here["expires_in_seconds"].as_i64().unwrap(),
        );
        assert!((a - b).abs() <= 2, "expiry kept: {a} vs {b}");
    }
    let (ok, _, err) = cli(
        &demo.dir,
        &[
            "inspect",
            "expiredexpiredexpiredexpired0001",
            "--engine",
            "cache",
            "--cache-url",
            &to,
        ],
    );
    assert!(
        !ok && err.contains("no live session"),
        "expired ones stay behind: {err}"
    );

    let on_redis = Demo::start(&["--engine", "cache", "--cache-url", &to]);
    sessions_go_on(&on_redis, &keys).await;
}

#[tokio::test]
async fn copy_sqlite_to_postgres_twice() {
    let demo = Demo::start(&[]);
    let keys = sessions(&demo, 4).await;
    expired_row(&demo, "expiredexpiredexpiredexpired0002").await;
    let table = unique_table("copy");
    migrate(&postgres_url(), &table);
    let to = format!("{}?table={table}", postgres_url());
    copy_twice(&demo.dir, &demo.db_url(), &to, 4);
    let out = run(
        &demo.dir,
        &[
            "stats",
            "--database-url",
            &postgres_url(),
            "--table",
            &table,
        ],
    );
    assert!(out.contains("4 live, 0 expired"), "{out}");

    let on_pg = Demo::start(&["--database-url", &postgres_url(), "--table", &table]);
    sessions_go_on(&on_pg, &keys).await;
}

#[tokio::test]
async fn copy_file_to_postgres_twice() {
    let folder = Scratch::new("copy-file");
    let folder_arg = folder.display().to_string();
    let demo = Demo::start(&["--engine", "file", "--file-path", &folder_arg]);
    let keys = sessions(&demo, 3).await;
    let table = unique_table("copyfile");
    migrate(&postgres_url(), &table);
    let from = format!("file://{folder_arg}");
    let to = format!("{}?table={table}", postgres_url());
    copy_twice(&demo.dir, &from, &to, 3);
    let on_pg = Demo::start(&["--database-url", &postgres_url(), "--table", &table]);
    sessions_go_on(&on_pg, &keys).await;
}

#[tokio::test]
async fn copy_names_a_bad_url_and_a_missing_table() {
    let dir = Scratch::new("copy-bad");
    let (ok, _, err) = cli(&dir, &["copy", "--from", "ftp://x", "--to", &redis_url()]);
    assert!(!ok && err.contains("ftp://x"), "{err}");
    let missing = unique_table("missing");
    let to = format!("{}?table={missing}", postgres_url());
    let from = format!("sqlite://{}", dir.join("empty.sqlite3").display());
    run(&dir, &["migrate", "--database-url", &from]);
    let demo = Demo::start_in(&dir, &["--database-url", &from]);
    sessions(&demo, 1).await;
    let (ok, _, err) = cli(&dir, &["copy", "--from", &from, "--to", &to]);
    assert!(!ok, "copying into a missing table fails");
    assert!(
        err.contains("cloakroom migrate"),
        "and names the fix: {err}"
    );
}

#[tokio::test]
async fn stats_inspect_and_clearsessions_on_sqlite() {
    let demo = Demo::start(&[]);
    let keys = sessions(&demo, 2).await;
    for i in 0..3 {
        expired_row(&demo, &format!("expiredexpiredexpiredexpired{i:04}")).await;
    }
    let url = demo.db_url();
    let out = run(&demo.dir, &["stats", "--database-url", &url]);
    assert!(out.contains("db (sqlite): 2 live, 3 expired"), "{out}");

    let view = inspect(&demo.dir, &keys[1], &["--database-url", &url]);
    assert_eq!(view["data"], json!({ "visits": 2 }));
    assert!(view["expires_in_seconds"].as_i64().unwrap() > 1_209_000);

    let out = run(&demo.dir, &["clearsessions", "--database-url", &url]);
    assert!(out.contains("deleted 3 expired sessions"), "{out}");
    let out = run(&demo.dir, &["stats", "--database-url", &url]);
    assert!(out.contains("2 live, 0 expired"), "{out}");
}

#[tokio::test]
async fn live_migration_moves_sessions_on_first_use() {
    let old_dir = Scratch::new("migrate-from");
    let demo = Demo::start_in(&old_dir, &[]);
    let keys = sessions(&demo, 2).await;
    let from = demo.db_url();
    drop(demo);
    let folder = Scratch::new("migrate-to-file");
    let folder_arg = folder.display().to_string();
    let switched = Demo::start_in(
        &old_dir,
        &[
            "--engine",
            "file",
            "--file-path",
            &folder_arg,
            "--migrate-from",
            &from,
        ],
    );
    // The first session is used: it moves to the file store and leaves SQLite.
    sessions_go_on(&switched, &keys[..1]).await;
    assert!(folder.join(format!("sessionid{}", keys[0])).exists());
    let db = sqlx::SqlitePool::connect(&from).await.unwrap();
    assert_eq!(
        support::row(&db, &keys[0]).await,
        None,
        "moved out of SQLite"
    );
    assert!(
        support::row(&db, &keys[1]).await.is_some(),
        "unused: still there"
    );
    // New sessions go to the new store only.
    let newcomer = visitor();
    let key = send(newcomer.get(switched.url("/api/visits")))
        .await
        .new_key();
    assert!(folder.join(format!("sessionid{key}")).exists());
    assert_eq!(support::row(&db, &key).await, None);
}
