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
    // An empty file is an empty SQLite database: the table is what is missing.
    std::fs::write(dir.join("x.sqlite3"), b"").unwrap();
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
        let full: Vec<&str> = ["demo", "--addr", addr.as_str()]
            .iter()
            .chain(args.iter())
            .copied()
            .collect();
        let (ok, out, err) = cli(&dir, &full);
        assert!(!ok, "`cloakroom {full:?}` was accepted: {out}");
        assert!(
            err.contains(setting),
            "`cloakroom {full:?}` must name `{setting}`: {err}"
        );
        assert_no_panic(&err);
        // `migrate` has no cookie flags; the same setting in the config file is checked too.
        let file = dir.join("cloakroom.toml");
        let toml: String = args
            .chunks(2)
            .map(|pair| {
                let name = pair[0].trim_start_matches("--").replace('-', "_");
                let value = pair.get(1).map_or("true".to_owned(), |v| format!("{v:?}"));
                format!("{name} = {value}\n")
            })
            .collect();
        std::fs::write(&file, toml).unwrap();
        let (ok, out, err) = cli(&dir, &["migrate", "--config", file.to_str().unwrap()]);
        assert!(
            !ok,
            "`migrate` with {args:?} in its config was accepted: {out}"
        );
        assert!(
            err.contains(setting),
            "`migrate` must name `{setting}`: {err}"
        );
        assert_no_panic(&err);
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

#[test]
fn top_level_help_lists_every_subcommand_on_one_line() {
    let (ok, out, err) = cli(&Scratch::new("help"), &["--help"]);
    assert!(ok, "{err}");
    for command in [
        "migrate",
        "clearsessions",
        "copy",
        "inspect",
        "stats",
        "demo",
    ] {
        let lines: Vec<&str> = out
            .lines()
            .filter(|line| line.trim_start().starts_with(&format!("{command} ")))
            .collect();
        assert_eq!(lines.len(), 1, "`{command}` on one line of:\n{out}");
    }
    assert!(
        !out.contains("--cookie"),
        "no cookie flags at the top:\n{out}"
    );
    // The one-line summary names what the tool does, not only migrate and the demo.
    let about = out.lines().next().unwrap_or_default();
    assert!(about.contains("copy") && about.contains("stats"), "{about}");
}

/// Issue 17: every subcommand's help was 63+ lines, with the cookie flags on `migrate`.
#[test]
fn migrate_help_is_short_and_has_no_cookie_flags() {
    let dir = Scratch::new("help-migrate");
    let (ok, out, err) = cli(&dir, &["migrate", "--help"]);
    assert!(ok, "{err}");
    assert!(
        out.lines().count() <= 20,
        "{} lines:\n{out}",
        out.lines().count()
    );
    assert!(out.contains("--database-url"), "{out}");
    for absent in ["--cookie", "--secret-key", "--idle-timeout", "--hash-keys"] {
        assert!(
            !out.contains(absent),
            "`{absent}` in migrate's help:\n{out}"
        );
    }
    for command in ["clearsessions", "stats", "copy"] {
        let (ok, out, err) = cli(&dir, &[command, "--help"]);
        assert!(ok, "{err}");
        for absent in ["--cookie-samesite", "--idle-timeout", "--hash-keys"] {
            assert!(
                !out.contains(absent),
                "`{absent}` in {command}'s help:\n{out}"
            );
        }
    }
    let (ok, out, err) = cli(&dir, &["demo", "--help"]);
    assert!(ok, "{err}");
    for flag in [
        "--cookie-age",
        "--cookie-samesite",
        "--secret-key",
        "--database-url",
    ] {
        assert!(
            out.contains(flag),
            "`{flag}` missing from demo's help:\n{out}"
        );
    }
    let (ok, _, err) = cli(&dir, &["migrate", "--cookie-age", "60"]);
    assert!(!ok && err.contains("--cookie-age"), "{err}");
}

/// Issue 17: "Address already in use" named neither the address nor `--addr`.
#[test]
fn a_busy_port_names_the_address_and_addr() {
    let dir = Scratch::new("busy");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (ok, _, err) = cli(&dir, &["demo", "--addr", &addr]);
    assert!(!ok, "the demo started on a busy port");
    assert!(err.contains(&addr) && err.contains("--addr"), "{err}");
    assert!(err.contains("in use"), "and why: {err}");
    assert_no_panic(&err);
}

/// Issue 17: a refused PostgreSQL connection named neither host nor port, an unreachable Redis
/// gave no reason.
#[test]
fn an_unreachable_server_is_named_by_host_and_port_with_the_reason() {
    let dir = Scratch::new("refused");
    let port = free_port();
    let at = format!("127.0.0.1:{port}");
    for (args, flag) in [
        (
            vec![
                "migrate",
                "--database-url",
                &*format!("postgres://postgres@{at}/test"),
            ],
            "--database-url",
        ),
        (
            vec![
                "migrate",
                "--database-url",
                &*format!("mysql://root@{at}/test"),
            ],
            "--database-url",
        ),
        (
            vec![
                "stats",
                "--engine",
                "cache",
                "--cache-url",
                &*format!("redis://{at}/0"),
            ],
            "--cache-url",
        ),
    ] {
        let (ok, _, err) = cli(&dir, &args);
        assert!(!ok, "{args:?} succeeded");
        assert!(err.contains(&at), "{args:?}: names host and port: {err}");
        assert!(err.contains(flag), "{args:?}: names the flag: {err}");
        assert!(
            err.to_lowercase().contains("refused"),
            "{args:?}: gives the reason: {err}"
        );
        assert_no_panic(&err);
    }
}

/// Issue 17: SQLite's "unable to open database file" did not say which file.
#[test]
fn a_sqlite_file_in_a_missing_folder_is_named() {
    let dir = Scratch::new("no-folder");
    let path = dir.join("missing").join("x.sqlite3");
    let url = format!("sqlite://{}", path.display());
    for command in [&["migrate"][..], &["demo", "--addr", "127.0.0.1:0"]] {
        let args = [command, &["--database-url", &url]].concat();
        let (ok, _, err) = cli(&dir, &args);
        assert!(!ok, "{args:?} succeeded");
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert_no_panic(&err);
    }
}

/// Issue 17: the demo made `cloakroom.sqlite3` while the README's commands named
/// `sessions.sqlite3`, and `.gitignore` missed the demo's secret-key file. The files the demo
/// really creates are the ones the README's commands name and `.gitignore` ignores.
#[tokio::test]
async fn the_readme_and_gitignore_name_the_files_the_demo_creates() {
    let demo = Demo::start(&[]);
    send(visitor().get(demo.url("/api/visits"))).await.new_key();
    let created: Vec<String> = std::fs::read_dir(&demo.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let database = created
        .iter()
        .find(|name| name.ends_with(".sqlite3"))
        .unwrap_or_else(|| panic!("no database among {created:?}"));
    let secret = created
        .iter()
        .find(|name| name.ends_with(".key"))
        .unwrap_or_else(|| panic!("no secret key file among {created:?}"));

    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    for doc in ["README.md", "docs/operations.md", "docs/demo.md"] {
        let text = std::fs::read_to_string(format!("{root}/{doc}")).unwrap();
        let named: Vec<&str> = text
            .split("sqlite://")
            .skip(1)
            .map(|rest| {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || "._-/".contains(c)))
                    .unwrap_or(rest.len());
                &rest[..end]
            })
            // Relative names are files in the current folder, as the demo's.
            .filter(|name| !name.starts_with('/') && name.ends_with(".sqlite3"))
            .collect();
        assert!(
            !named.is_empty() || doc != "README.md",
            "{doc} names no SQLite file"
        );
        for name in named {
            assert_eq!(
                name, database,
                "{doc} names `{name}`, the demo makes `{database}`"
            );
        }
    }
    let ignored = std::fs::read_to_string(format!("{root}/.gitignore")).unwrap();
    for file in [database, secret] {
        assert!(
            ignored.lines().any(|line| line.trim() == file
                || line.trim() == "*.sqlite3" && file.ends_with(".sqlite3")),
            ".gitignore misses `{file}`"
        );
    }
    assert!(
        ignored.lines().any(|line| line.trim() == secret),
        ".gitignore names the secret key file `{secret}` itself"
    );
}
