//! The operator's commands against the real servers: `copy` between engines (twice, to show
//! it is idempotent), `inspect`, `stats` and the batched `clearsessions`.

mod support;

use serde_json::{json, Value};
use support::{
    cli, migrate, postgres_url, redis_url, send, session, unique_table, visitor, Demo, Scratch,
};

/// Logs `client` in as `user` on `demo`, sending `user_agent`.
async fn log_in(client: &reqwest::Client, demo: &Demo, user: &str, user_agent: &str) {
    let r = send(
        client
            .post(demo.url("/api/login"))
            .header("user-agent", user_agent)
            .json(&json!({ "username": user })),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// `GET /api/sessions` for `client` on `demo`: the user's sessions as the demo lists them,
/// without the `current` mark (which depends on who asks).
async fn listed(client: &reqwest::Client, demo: &Demo) -> Vec<Value> {
    let r = send(client.get(demo.url("/api/sessions"))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut sessions = r.json()["sessions"].as_array().unwrap().clone();
    for s in &mut sessions {
        s.as_object_mut().unwrap().remove("current");
    }
    sessions
}

/// Two browsers log a user in on the `source` demo (and an anonymous visitor comes by); after
/// `copy` from `from` to `to` (twice), a demo on the destination (`dest_args`) lists both
/// sessions as the source did (login time, client), and logging out everywhere there ends
/// both. Without the copy's links the listing would be empty: reading a session writes nothing.
async fn copy_links_the_users_sessions(source: &Demo, from: &str, to: &str, dest_args: &[&str]) {
    let user = unique_table("user");
    let (phone, laptop) = (visitor(), visitor());
    log_in(&phone, source, &user, "Phone/1.0").await;
    log_in(&laptop, source, &user, "Laptop/2.0").await;
    sessions(source, 1).await;
    let before = listed(&phone, source).await;
    assert_eq!(before.len(), 2, "{before:?}");
    // The listing counts whole seconds: let the copy run in a later one than the logins, so an
    // entry that took the copy's time as its login would show.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    copy_twice_linking(&source.dir, from, to, 3, 2);

    let dest = Demo::start_in(&source.dir, dest_args);
    assert_eq!(
        listed(&phone, &dest).await,
        before,
        "listed as at the source"
    );
    let out = send(laptop.post(dest.url("/api/logout-everywhere"))).await;
    assert_eq!(out.json(), json!({ "revoked": 2 }));
    let whoami = send(phone.get(dest.url("/api/whoami"))).await.json();
    assert_eq!(whoami["username"], Value::Null, "the phone is logged out");
}

#[tokio::test]
async fn copy_sqlite_to_redis_links_the_users_sessions() {
    let source = Demo::start(&[]);
    let to = redis_url();
    copy_links_the_users_sessions(
        &source,
        &source.db_url(),
        &to,
        &["--engine", "cache", "--cache-url", &to],
    )
    .await;
}

#[tokio::test]
async fn copy_file_to_postgres_links_the_users_sessions() {
    let folder = Scratch::new("copy-file-users");
    let folder_arg = folder.display().to_string();
    let source = Demo::start(&["--engine", "file", "--file-path", &folder_arg]);
    let table = unique_table("copyusers");
    migrate(&postgres_url(), &table);
    let to = format!("{}?table={table}", postgres_url());
    copy_links_the_users_sessions(
        &source,
        &format!("file://{folder_arg}"),
        &to,
        &["--database-url", &postgres_url(), "--table", &table],
    )
    .await;
}

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

/// Copies twice from `from` to `to`: the first run copies `n`, the second none; each links
/// `linked` (linking again only refreshes the entries).
fn copy_twice_linking(dir: &std::path::Path, from: &str, to: &str, n: usize, linked: usize) {
    let out = run(dir, &["copy", "--from", from, "--to", to]);
    assert!(
        out.contains(&format!(
            "copied {n} sessions (0 already there, 0 kept: other data in the destination); \
             {linked} linked to their users"
        )),
        "{out}"
    );
    let out = run(dir, &["copy", "--from", from, "--to", to]);
    assert!(
        out.contains(&format!(
            "copied 0 sessions ({n} already there, 0 kept: other data in the destination); \
             {linked} linked to their users"
        )),
        "the second run changes nothing: {out}"
    );
}

/// Copies twice from `from` to `to`: anonymous sessions only.
fn copy_twice(dir: &std::path::Path, from: &str, to: &str, n: usize) {
    copy_twice_linking(dir, from, to, n, 0);
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

/// Issue 17: `stats` on a mistyped SQLite path created an empty database there. Only `migrate`
/// and the demo may create one; every other command names the missing file and the fix.
#[test]
fn commands_that_need_a_database_never_create_a_sqlite_file() {
    let dir = Scratch::new("typo");
    let path = dir.join("typo.sqlite3");
    let url = format!("sqlite://{}", path.display());
    let redis = redis_url();
    let commands: [&[&str]; 5] = [
        &["stats", "--database-url", &url],
        &[
            "inspect",
            "0123456789abcdefghijklmnopqrstuv",
            "--database-url",
            &url,
        ],
        &["clearsessions", "--database-url", &url],
        &["copy", "--from", &url, "--to", &redis],
        &["stats", "--engine", "cached_db", "--database-url", &url],
    ];
    for args in commands {
        let (ok, out, err) = cli(&dir, args);
        assert!(!ok, "{args:?} succeeded: {out}");
        assert!(
            err.contains(&format!("no such database file: {}", path.display()))
                && err.contains("cloakroom migrate"),
            "{args:?}: {err}"
        );
        assert!(!path.exists(), "{args:?} created {}", path.display());
    }
    // The destination of a copy too: its table must come from `migrate`.
    let source = dir.join("source.sqlite3");
    run(
        &dir,
        &[
            "migrate",
            "--database-url",
            &format!("sqlite://{}", source.display()),
        ],
    );
    let (ok, _, err) = cli(
        &dir,
        &[
            "copy",
            "--from",
            &format!("sqlite://{}", source.display()),
            "--to",
            &url,
        ],
    );
    assert!(!ok && err.contains("no such database file"), "{err}");
    assert!(!path.exists());
    // `migrate` is what creates it.
    run(&dir, &["migrate", "--database-url", &url]);
    assert!(path.exists());
    assert!(run(&dir, &["stats", "--database-url", &url]).contains("0 live, 0 expired"));
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

#[tokio::test]
async fn copy_names_the_secret_key_when_it_cannot_read_the_users() {
    let args = ["--data-format", "django", "--secret-key", "the-apps-secret"];
    let source = Demo::start(&args);
    log_in(&visitor(), &source, &unique_table("user"), "Phone/1.0").await;
    let to = format!("sqlite://{}", source.dir.join("copy.sqlite3").display());
    run(&source.dir, &["migrate", "--database-url", &to]);
    let from = source.db_url();
    let copy = ["copy", "--from", &from, "--to", &to];

    let (ok, out, err) = cli(
        &source.dir,
        &[&copy[..], &["--secret-key", "another-secret"]].concat(),
    );
    assert!(ok, "the sessions are copied all the same: {out}{err}");
    assert!(
        out.contains("copied 1 sessions") && out.contains("0 linked"),
        "{out}"
    );
    assert!(
        err.contains("1 sessions could not be decoded") && err.contains("set --secret-key"),
        "and the fix is named: {err}"
    );

    let out = run(&source.dir, &[&copy[..], &args[..]].concat());
    assert!(
        out.contains("1 already there") && out.contains("1 linked"),
        "{out}"
    );
}

#[tokio::test]
async fn live_migration_lists_a_moved_session_under_its_user_from_its_first_read() {
    let old_dir = Scratch::new("migrate-users");
    let demo = Demo::start_in(&old_dir, &[]);
    let (user, phone) = (unique_table("user"), visitor());
    log_in(&phone, &demo, &user, "Phone/1.0").await;
    let from = demo.db_url();
    drop(demo);
    let folder = Scratch::new("migrate-users-to-file");
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
    // The listing is the session's first use on the new store: a read that moves it.
    let sessions = listed(&phone, &switched).await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["user_agent"], "Phone/1.0");
    let out = send(phone.post(switched.url("/api/logout-everywhere"))).await;
    assert_eq!(out.json(), json!({ "revoked": 1 }));
    let db = sqlx::SqlitePool::connect(&from).await.unwrap();
    assert_eq!(
        support::count_rows(&db).await,
        0,
        "nothing left in the old store"
    );
}

/// A SQLite session table in `dir` holding `n` live sessions without a user, written directly
/// (a demo would take minutes to make thousands): the source of the copies at scale.
async fn sqlite_with_sessions(dir: &std::path::Path, n: usize) -> String {
    let url = format!("sqlite://{}", dir.join("source.sqlite3").display());
    run(dir, &["migrate", "--database-url", &url]);
    let db = sqlx::SqlitePool::connect(&url).await.unwrap();
    let mut tx = db.begin().await.unwrap();
    for i in 0..n {
        sqlx::query("INSERT INTO cloakroom_session VALUES (?1, ?2, ?3)")
            .bind(format!("bulk{i:028}"))
            .bind(format!("{{\"n\":{i}}}"))
            .bind("2099-01-01 00:00:00")
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    url
}

/// Issue 17: `copy` inserted one row per round trip (100,000 sessions into PostgreSQL took 5
/// minutes). 20,000 now go in well under 10 s even in a debug build; one at a time they took
/// about a minute.
#[tokio::test]
async fn copy_into_postgres_is_batched() {
    let dir = Scratch::new("copy-batched");
    let from = sqlite_with_sessions(&dir, 20_000).await;
    let table = unique_table("bulk");
    migrate(&postgres_url(), &table);
    let to = format!("{}?table={table}", postgres_url());
    let started = std::time::Instant::now();
    let out = run(&dir, &["copy", "--from", &from, "--to", &to]);
    let took = started.elapsed();
    assert!(
        out.contains("copied 20000 sessions (0 already there"),
        "{out}"
    );
    assert!(
        took < std::time::Duration::from_secs(10),
        "20,000 took {took:?}"
    );
    let stats = run(
        &dir,
        &[
            "stats",
            "--database-url",
            &postgres_url(),
            "--table",
            &table,
        ],
    );
    assert!(stats.contains("20000 live, 0 expired"), "{stats}");
    let view = inspect(
        &dir,
        &format!("bulk{:028}", 12_345),
        &["--database-url", &postgres_url(), "--table", &table],
    );
    assert_eq!(view["data"], json!({ "n": 12_345 }));
}

/// What a terminal shows after `raw` is written to it: enough of a VT100 for what indicatif
/// and the log writer send (carriage return, newline, cursor up and down, clear line and
/// screen; colours ignored), on a screen wide enough that nothing wraps.
fn screen(raw: &str) -> Vec<String> {
    let mut rows: Vec<Vec<char>> = vec![Vec::new()];
    let (mut row, mut col) = (0usize, 0usize);
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => col = 0,
            '\n' => {
                row += 1;
                col = 0;
            }
            '\x1b' if chars.peek() == Some(&'[') => {
                chars.next();
                let mut params = String::new();
                let mut last = ' ';
                for p in chars.by_ref() {
                    if p.is_ascii_alphabetic() || p == '~' {
                        last = p;
                        break;
                    }
                    params.push(p);
                }
                let n: usize = params.trim_start_matches('?').parse().unwrap_or(1).max(1);
                match last {
                    'A' => row = row.saturating_sub(n),
                    'B' => row += n,
                    'K' if params == "2" => rows[row].clear(),
                    'K' => rows[row].truncate(col),
                    'J' => {
                        rows[row].truncate(col);
                        rows.truncate(row + 1);
                    }
                    _ => {}
                }
            }
            '\x1b' => {}
            c => {
                let line = &mut rows[row];
                while line.len() < col {
                    line.push(' ');
                }
                if col < line.len() {
                    line[col] = c;
                } else {
                    line.push(c);
                }
                col += 1;
            }
        }
        while rows.len() <= row {
            rows.push(Vec::new());
        }
    }
    rows.into_iter().map(|r| r.into_iter().collect()).collect()
}

/// Issue 17: a library's log line broke `copy`'s progress bar. On a real terminal (a pty from
/// `script`), with the SQL driver logging every statement, each log line ends on a line of its
/// own and none is erased by a redraw of the bar.
#[tokio::test]
async fn library_log_lines_leave_the_progress_bar_intact() {
    let dir = Scratch::new("bar-logs");
    let from = sqlite_with_sessions(&dir, 5_000).await;
    let table = unique_table("bar");
    migrate(&postgres_url(), &table);
    let to = format!("{}?table={table}", postgres_url());
    let command = format!(
        "stty cols 400 rows 50; exec '{}' copy --from '{from}' --to '{to}'",
        env!("CARGO_BIN_EXE_cloakroom")
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(&*dir)
        .env("RUST_LOG", "sqlx::query=debug")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("`script` (util-linux) runs");
    let raw = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{raw}");
    assert!(raw.contains("copied 5000 sessions"), "{raw}");
    let logged = raw.matches("sqlx::query").count();
    assert!(
        raw.contains("copying sessions") && logged >= 10,
        "the bar was drawn and the driver logged {logged} lines: {raw}"
    );
    let shown = screen(&raw);
    let log_lines: Vec<&String> = shown.iter().filter(|l| l.contains("sqlx::query")).collect();
    for line in &log_lines {
        assert!(
            !line.contains("copying sessions"),
            "a log line ran into the bar: {line}"
        );
    }
    assert_eq!(
        log_lines.len(),
        logged,
        "log lines were erased:\n{}",
        shown.join("\n")
    );
}
