//! The `cloakroom` command: `migrate`, `clearsessions`, a missing table (from the command and
//! from the running demo), and settings that are refused with a message naming the setting.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{cli, count_rows, free_port, send, visitor, Demo, Scratch};

fn assert_no_panic(stderr: &str) {
    assert!(
        !stderr.contains("panicked"),
        "the command panicked: {stderr}"
    );
}

#[tokio::test]
async fn migrate_twice_is_fine() {
    let dir = Scratch::new("migrate");
    for table in ["cloakroom_session", "my_sessions"] {
        for run in 1..=2 {
            let (ok, out, err) = cli(
                &dir,
                &[
                    "migrate",
                    "--database-url",
                    "sqlite://x.sqlite3",
                    "--table",
                    table,
                ],
            );
            assert!(ok, "migrate run {run} of {table} failed: {err}");
            assert!(out.contains(table), "{out}");
        }
    }
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.join("x.sqlite3").display()))
        .await
        .unwrap();
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .fetch_all(&db)
            .await
            .unwrap();
    // Each session table with its user index beside it.
    assert_eq!(
        tables,
        [
            "cloakroom_session",
            "cloakroom_session_user",
            "my_sessions",
            "my_sessions_user"
        ]
    );
    let (ok, out, err) = cli(
        &dir,
        &["clearsessions", "--database-url", "sqlite://x.sqlite3"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("deleted 0 expired sessions"), "{out}");
}

#[test]
fn clearsessions_without_the_table_names_cloakroom_migrate() {
    let dir = Scratch::new("no-table");
    let (ok, out, err) = cli(
        &dir,
        &["clearsessions", "--database-url", "sqlite://x.sqlite3"],
    );
    assert!(!ok, "clearsessions succeeded without a table: {out}");
    assert!(
        err.contains("cloakroom migrate"),
        "the message names the fix: {err}"
    );
    assert!(err.contains("cloakroom_session"), "and the table: {err}");
    assert_no_panic(&err);
}

#[tokio::test]
async fn clearsessions_deletes_expired_sessions_and_says_how_many() {
    let demo = Demo::start(&[]);
    let db = demo.db().await;
    for _ in 0..3 {
        let short = visitor();
        send(
            short
                .post(demo.url("/api/expiry"))
                .json(&json!({ "seconds": 1 })),
        )
        .await
        .new_key();
    }
    let stays = visitor();
    send(stays.get(demo.url("/api/visits"))).await.new_key();
    assert_eq!(count_rows(&db).await, 4);
    tokio::time::sleep(Duration::from_millis(1_100)).await;

    let url = demo.db_url();
    let (ok, out, err) = cli(&demo.dir, &["clearsessions", "--database-url", &url]);
    assert!(ok, "{err}");
    assert!(out.contains("deleted 3 expired sessions"), "{out}");
    assert_eq!(count_rows(&db).await, 1, "the live session stays");
    let (ok, out, err) = cli(&demo.dir, &["clearsessions", "--database-url", &url]);
    assert!(ok, "{err}");
    assert!(out.contains("deleted 0 expired sessions"), "{out}");
    assert_eq!(
        send(stays.get(demo.url("/api/visits"))).await.json(),
        json!({ "visits": 2 })
    );
}

#[tokio::test]
async fn demo_answers_503_naming_migrate_when_the_table_is_missing() {
    let demo = Demo::start(&[]);
    let ana = visitor();
    send(ana.get(demo.url("/api/visits"))).await.new_key();
    sqlx::query("DROP TABLE cloakroom_session")
        .execute(&demo.db().await)
        .await
        .unwrap();

    let new_visitor = send(visitor().get(demo.url("/api/visits"))).await;
    let with_session = send(ana.get(demo.url("/api/whoami"))).await;
    for (what, reply) in [
        ("new visitor", new_visitor),
        ("with a session", with_session),
    ] {
        assert_eq!(reply.status, 503, "{what}: {reply:?}");
        assert!(
            reply.body.contains("cloakroom migrate"),
            "{what}: the body names the fix: {:?}",
            reply.body
        );
        let retry: u64 = reply
            .headers
            .get("retry-after")
            .unwrap_or_else(|| panic!("{what}: no Retry-After"))
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(retry >= 1, "{what}");
        assert!(
            reply.set_cookies().is_empty(),
            "{what}: {:?}",
            reply.headers
        );
    }

    // Following the message fixes the running demo.
    let (ok, _, err) = cli(&demo.dir, &["migrate", "--database-url", &demo.db_url()]);
    assert!(ok, "{err}");
    let reply = send(visitor().get(demo.url("/api/visits"))).await;
    assert_eq!(reply.json(), json!({ "visits": 1 }));
}

#[test]
fn migrate_on_an_engine_without_a_table_says_so() {
    let (ok, _, err) = cli(&Scratch::new("cache"), &["--engine", "cache", "migrate"]);
    assert!(!ok);
    assert!(err.contains("no table to create"), "{err}");
}

#[test]
fn cookie_settings_that_cannot_work_are_refused_naming_the_setting() {
    let dir = Scratch::new("invalid");
    let cases: &[(&[&str], &str)] = &[
        (&["--cookie-name", "__Host-sid"], "cookie_name"),
        (&["--cookie-name", "__Secure-sid"], "cookie_secure"),
        (&["--cookie-samesite", "None"], "cookie_samesite"),
        (&["--cookie-samesite", "Sideways"], "cookie_samesite"),
        (&["--cookie-partitioned"], "cookie_partitioned"),
        (&["--cookie-name", "two words"], "cookie_name"),
        (&["--cookie-path", "api"], "cookie_path"),
    ];
    for (args, setting) in cases {
        let addr = format!("127.0.0.1:{}", free_port());
        for command in [vec!["demo", "--addr", addr.as_str()], vec!["migrate"]] {
            let full: Vec<&str> = command.iter().chain(args.iter()).copied().collect();
            let (ok, out, err) = cli(&dir, &full);
            assert!(!ok, "`cloakroom {full:?}` was accepted: {out}");
            assert!(
                err.contains(setting),
                "`cloakroom {full:?}` must name `{setting}`: {err}"
            );
            assert_no_panic(&err);
        }
    }
    assert!(
        !dir.join("cloakroom.sqlite3").exists(),
        "refused settings are checked before anything is created"
    );
}

#[test]
fn an_unknown_engine_is_refused_clearly() {
    let dir = Scratch::new("engine");
    let addr = format!("127.0.0.1:{}", free_port());
    for args in [
        vec!["--engine", "nonsense", "demo", "--addr", addr.as_str()],
        vec!["--engine", "nonsense", "migrate"],
    ] {
        let (ok, _, err) = cli(&dir, &args);
        assert!(!ok, "{args:?} was accepted");
        assert!(err.contains("nonsense"), "{err}");
        assert!(
            err.contains("db") && err.contains("signed_cookies"),
            "the message lists the engines: {err}"
        );
        assert_no_panic(&err);
    }
}

#[test]
fn a_config_file_with_an_unknown_setting_is_refused_naming_it() {
    let dir = Scratch::new("bad-config");
    let file = dir.join("cloakroom.toml");
    std::fs::write(&file, "cookie_nam = \"sid\"\n").unwrap();
    let (ok, _, err) = cli(&dir, &["--config", file.to_str().unwrap(), "migrate"]);
    assert!(!ok);
    assert!(err.contains("cookie_nam"), "{err}");
    assert!(err.contains("cloakroom.toml"), "and the file: {err}");
}

/// The demo on a server database that was never migrated, or whose session table Django made
/// without cloakroom's user index beside it, refuses to start naming `cloakroom migrate`,
/// instead of starting and answering every request that needs the table with 503.
#[tokio::test]
async fn demo_on_a_server_database_without_cloakrooms_tables_refuses_to_start() {
    let dir = Scratch::new("unmigrated");
    let start = |url: &str, table: &str| {
        let addr = format!("127.0.0.1:{}", free_port());
        cli(
            &dir,
            &[
                "demo",
                "--addr",
                &addr,
                "--database-url",
                url,
                "--table",
                table,
            ],
        )
    };
    for url in [support::postgres_url(), support::mysql_url()] {
        let table = support::unique_table("unmigrated");
        let (ok, _, err) = start(&url, &table);
        assert!(!ok, "{url}: the demo started on a missing table");
        assert!(
            err.contains(&format!("`{table}` does not exist")) && err.contains("cloakroom migrate"),
            "{url}: {err}"
        );
    }

    // PostgreSQL with Django's table only: the user index is what is missing.
    let url = support::postgres_url();
    let table = support::unique_table("djangoonly");
    support::migrate(&url, &table);
    let dropped = std::process::Command::new("psql")
        .args([&url, "-c", &format!("DROP TABLE \"{table}_user\"")])
        .output()
        .expect("psql runs");
    assert!(dropped.status.success(), "{dropped:?}");
    let (ok, _, err) = start(&url, &table);
    assert!(!ok, "the demo started without the user index");
    assert!(
        err.contains(&format!("`{table}_user` does not exist"))
            && err.contains("cloakroom migrate"),
        "{err}"
    );

    // Where the operator asks for it, the demo creates what is missing and serves logins.
    let demo = Demo::start(&["--migrate", "--database-url", &url, "--table", &table]);
    let ana = visitor();
    let login = send(
        ana.post(demo.url("/api/login"))
            .json(&json!({ "username": "ana" })),
    )
    .await;
    assert_eq!(login.status, 200, "{login:?}");
    assert_eq!(send(ana.get(demo.url("/api/sessions"))).await.status, 200);
}
