//! Sessions shared with REAL Django (installed from PyPI by `scripts/django-env.sh` into a
//! virtual environment): Django writes a session that the demo reads and changes over HTTP,
//! and Django reads the change back; a session the demo creates is read by Django; a tampered
//! or expired session is refused by both. The Django side is `interop/django_app`
//! (`manage.py session write|read|update`, which uses the engine's `SessionStore` exactly as
//! Django's session middleware does).
//!
//! If Django cannot be installed, these tests fail: they never skip.

mod support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::{json, Value};
use support::{bare, send, Demo, Scratch};

const SECRET: &str = "interop-secret-key-0123456789-abcdefghij";
const OLD_SECRET: &str = "interop-OLD-secret-key-9876543210";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The venv's python, made once per test binary by the script (reused when present).
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = Command::new("sh")
            .arg(repo_root().join("scripts/django-env.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("sh runs scripts/django-env.sh");
        assert!(
            out.status.success(),
            "scripts/django-env.sh could not install Django from PyPI (python3 -m venv + pip): \
             the Django interop tests need it"
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

/// One Django configuration: `DJANGO_*` variables for `interop/django_app/settings.py`.
struct Django {
    env: Vec<(String, String)>,
}

impl Django {
    fn new(engine: &str, secret: &str) -> Self {
        Self {
            env: vec![
                ("DJANGO_SESSION_ENGINE".into(), engine.into()),
                ("DJANGO_SECRET_KEY".into(), secret.into()),
            ],
        }
    }

    fn with(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    fn manage(&self, args: &[&str], stdin: Option<Value>) -> Value {
        let mut cmd = Command::new(python());
        cmd.arg(repo_root().join("interop/django_app/manage.py"))
            .args(args)
            .env_remove("DJANGO_SETTINGS_MODULE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("the venv's python starts");
        let input = stdin.map(|v| v.to_string()).unwrap_or_default();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "Django `manage.py {args:?}` failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if stdout.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&stdout).unwrap()
        }
    }

    fn migrate(&self) {
        self.manage(&["migrate", "sessions", "--verbosity", "0"], None);
    }

    /// Django saves a new session holding `data` (and `expiry`, for `set_expiry`); its cookie value.
    fn write(&self, data: &Value, expiry: Value) -> String {
        let out = self.manage(
            &["session", "write"],
            Some(json!({ "data": data, "expiry": expiry })),
        );
        out["key"].as_str().unwrap().to_owned()
    }

    /// What Django loads for the cookie value `key`: `{"key", "data", "expiry_age"}`.
    fn read(&self, key: &str) -> Value {
        self.manage(&["session", "read", key], None)
    }

    fn update(&self, key: &str, set: &Value) -> String {
        let out = self.manage(&["session", "update", key], Some(json!({ "set": set })));
        out["key"].as_str().unwrap().to_owned()
    }
}

/// Session data that exercises the format: non-ASCII and emoji (JSON escapes and surrogate
/// pairs), nesting, a large value that compresses, and a floating-point number.
fn rich() -> Value {
    json!({
        "cart": ["café ☕", "😀 grin", "日本語", "quote \" and \\ slash </script>"],
        "prefs": {"nested": [1, 2.5, -0.25, {"deep": [true, null, "ü"]}], "ключ": "значение"},
        "big": "the same sentence again and again; ".repeat(400),
    })
}

fn cookie(key: &str) -> String {
    format!("sessionid={key}")
}

async fn demo_cart(demo: &Demo, key: &str) -> (Value, Option<String>) {
    let reply = send(
        bare()
            .get(demo.url("/api/cart"))
            .header("cookie", cookie(key)),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let set = reply.cookie("sessionid").map(|c| c.value);
    (reply.json(), set)
}

async fn demo_add(demo: &Demo, key: Option<&str>, item: &str) -> String {
    let mut req = bare()
        .post(demo.url("/api/cart"))
        .json(&json!({ "item": item }));
    if let Some(key) = key {
        req = req.header("cookie", cookie(key));
    }
    let reply = send(req).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    match reply.cookie("sessionid") {
        Some(c) => c.value,
        None => key.unwrap().to_owned(),
    }
}

/// Changes one character inside the signed payload, keeping the value well-formed.
fn tamper(value: &str) -> String {
    let mut chars: Vec<char> = value.chars().collect();
    let i = 4;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

/// The whole exchange for one engine; returns the cookie value of a session both sides wrote.
async fn both_ways(django: &Django, demo: &Demo) -> String {
    // Django writes; the demo reads and changes it over HTTP; Django reads the change back.
    let data = rich();
    let key = django.write(&data, json!(3600));
    let (cart, _) = demo_cart(demo, &key).await;
    assert_eq!(
        cart["items"], data["cart"],
        "the demo did not read Django's session"
    );
    let key2 = demo_add(demo, Some(&key), "🍩 donut").await;
    let back = django.read(&key2);
    let mut want = data["cart"].as_array().unwrap().clone();
    want.push(json!("🍩 donut"));
    assert_eq!(back["data"]["cart"], Value::Array(want), "{back}");
    for k in ["prefs", "big"] {
        assert_eq!(
            back["data"][k], data[k],
            "{k} changed on its way through the demo"
        );
    }
    assert_eq!(
        back["data"]["_session_expiry"],
        json!(3600),
        "the per-session expiry"
    );
    let age = back["expiry_age"].as_i64().unwrap();
    assert!((3500..=3600).contains(&age), "expiry age {age}");

    // The demo creates a session (small: not compressed); Django reads it and changes it; the
    // demo reads Django's change.
    let mine = demo_add(demo, None, "ü").await;
    assert_eq!(django.read(&mine)["data"], json!({ "cart": ["ü"] }));
    let changed = django.update(&mine, &json!({ "cart": ["ü", "from Django ✓"] }));
    assert_eq!(
        demo_cart(demo, &changed).await.0["items"],
        json!(["ü", "from Django ✓"])
    );

    changed
}

/// A session whose signed text was changed is refused by both. `stored` reads the stored text
/// of a session and `restore` writes it back; for signed_cookies the cookie is the store.
async fn tampered_refused(
    django: &Django,
    demo: &Demo,
    changed: &str,
    stored: &dyn Fn(&str) -> String,
    restore: &dyn Fn(&str, &str),
) {
    let changed = changed.to_owned();
    let text = stored(&changed);
    let bad = tamper(&text);
    restore(&changed, &bad);
    let target = if text == changed {
        bad.clone()
    } else {
        changed.clone()
    };
    assert_eq!(
        django.read(&target)["data"],
        json!({}),
        "Django accepted a tampered session"
    );
    assert_eq!(
        demo_cart(demo, &target).await.0["count"],
        0,
        "the demo accepted a tampered session"
    );
}

/// A session Django wrote with an expiry in the past is refused by both.
async fn expired_refused(django: &Django, demo: &Demo) {
    let key = django.write(
        &json!({ "cart": ["old"] }),
        json!("2020-01-01T00:00:00+00:00"),
    );
    // The demo first: Django's file backend deletes an expired file when it loads it.
    assert_eq!(demo_cart(demo, &key).await.0["count"], 0);
    assert_eq!(django.read(&key)["data"], json!({}));
}

fn sqlite_text(db: &Path, key: &str) -> String {
    let out = python_sql(
        db,
        &format!("SELECT session_data FROM django_session WHERE session_key = '{key}'"),
    );
    out.trim().to_owned()
}

/// Runs one statement on a SQLite file through the venv's python (its sqlite3 module).
fn python_sql(db: &Path, sql: &str) -> String {
    let code = "import sqlite3,sys\nc=sqlite3.connect(sys.argv[1])\nr=c.execute(sys.argv[2]).fetchall()\nc.commit()\nprint(r[0][0] if r else '')";
    let out = Command::new(python())
        .args(["-c", code])
        .arg(db)
        .arg(sql)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The demo on Django's table; `--migrate` adds cloakroom's user index beside it (Django's
/// own migrations make only `django_session`).
fn db_demo(url: &str, extra: &[&str]) -> Demo {
    let mut args = vec![
        "--migrate",
        "--database-url",
        url,
        "--table",
        "django_session",
        "--secret-key",
        SECRET,
        "--data-format",
        "django",
    ];
    args.extend_from_slice(extra);
    Demo::start(&args)
}

#[tokio::test]
async fn db_on_sqlite_is_shared_with_django_both_ways() {
    let dir = Scratch::new("django-db");
    let db = dir.join("django.sqlite3");
    let url = format!("sqlite://{}", db.display());
    let django = Django::new("db", SECRET).with("DJANGO_DATABASE_URL", &url);
    django.migrate();
    let demo = db_demo(&url, &[]);
    let key = both_ways(&django, &demo).await;
    let db2 = db.clone();
    let db3 = db.clone();
    tampered_refused(
        &django,
        &demo,
        &key,
        &move |key| sqlite_text(&db2, key),
        &move |key, text| {
            python_sql(
                &db3,
                &format!(
                    "UPDATE django_session SET session_data = '{text}' WHERE session_key = '{key}'"
                ),
            );
        },
    )
    .await;
    expired_refused(&django, &demo).await;
}

#[tokio::test]
async fn an_empty_session_keeps_its_key_on_both_sides() {
    let dir = Scratch::new("django-empty");
    let url = format!("sqlite://{}", dir.join("django.sqlite3").display());
    let django = Django::new("db", SECRET).with("DJANGO_DATABASE_URL", &url);
    django.migrate();
    let demo = db_demo(&url, &[]);

    // Django stores `{}` sessions (after `pop` of the last key, or `save()` of a fresh one);
    // a page that only reads one leaves its cookie alone.
    let key = django.write(&json!({}), Value::Null);
    let read = send(
        bare()
            .get(demo.url("/api/cart"))
            .header("cookie", cookie(&key)),
    )
    .await;
    assert_eq!(read.status, 200);
    assert!(read.set_cookies().is_empty(), "{:?}", read.headers);
    assert_eq!(
        django.read(&key)["key"],
        json!(key),
        "the record is still there"
    );

    // The demo removes the last key: `{}` stays under the same key, as Django does.
    let key = django.write(&json!({ "cart": ["apple"] }), Value::Null);
    let checkout = send(
        bare()
            .post(demo.url("/api/checkout"))
            .header("cookie", cookie(&key)),
    )
    .await;
    assert_eq!(
        checkout.session_cookie().value,
        key,
        "{:?}",
        checkout.headers
    );
    let back = django.read(&key);
    assert_eq!((&back["key"], &back["data"]), (&json!(key), &json!({})));
}

#[tokio::test]
async fn django_works_on_a_table_cloakroom_migrate_made() {
    let dir = Scratch::new("django-migrated");
    let url = format!(
        "sqlite://{}",
        dir.join("made-by-cloakroom.sqlite3").display()
    );
    let (ok, out, err) = support::cli(
        &dir,
        &[
            "migrate",
            "--database-url",
            &url,
            "--table",
            "django_session",
        ],
    );
    assert!(ok, "{out}{err}");
    let django = Django::new("db", SECRET).with("DJANGO_DATABASE_URL", &url);
    let demo = db_demo(&url, &[]);
    let key = django.write(&json!({ "cart": ["a"] }), Value::Null);
    assert_eq!(demo_cart(&demo, &key).await.0["items"], json!(["a"]));
    let key = demo_add(&demo, Some(&key), "b").await;
    assert_eq!(django.read(&key)["data"]["cart"], json!(["a", "b"]));
}

#[tokio::test]
async fn data_signed_with_a_fallback_key_is_read_and_rewritten_with_the_current_key() {
    let dir = Scratch::new("django-rotate");
    let url = format!("sqlite://{}", dir.join("rotate.sqlite3").display());
    let old = Django::new("db", OLD_SECRET).with("DJANGO_DATABASE_URL", &url);
    old.migrate();
    let key = old.write(&json!({ "cart": ["kept"] }), Value::Null);
    let demo = db_demo(&url, &["--secret-key-fallbacks", OLD_SECRET]);
    assert_eq!(demo_cart(&demo, &key).await.0["items"], json!(["kept"]));
    let new_only = Django::new("db", SECRET).with("DJANGO_DATABASE_URL", &url);
    assert_eq!(
        new_only.read(&key)["data"],
        json!({}),
        "not rewritten by a read-only request"
    );
    demo_add(&demo, Some(&key), "more").await;
    assert_eq!(
        new_only.read(&key)["data"]["cart"],
        json!(["kept", "more"]),
        "rewritten on save"
    );
}

#[tokio::test]
async fn the_logged_in_django_user_is_readable_from_rust() {
    let dir = Scratch::new("django-auth");
    let url = format!("sqlite://{}", dir.join("auth.sqlite3").display());
    let django = Django::new("db", SECRET).with("DJANGO_DATABASE_URL", &url);
    django.migrate();
    let demo = db_demo(&url, &[]);
    let key = django.write(
        &json!({
            "_auth_user_id": "42",
            "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
            "_auth_user_hash": "c6aeee1fbff984d3e3b47b6d233458c7c9a45c2a704b748c3dfdc5da25db6c7a",
        }),
        Value::Null,
    );
    let reply = send(
        bare()
            .get(demo.url("/api/django-user"))
            .header("cookie", cookie(&key)),
    )
    .await;
    assert_eq!(
        reply.json(),
        json!({ "user_id": "42", "backend": "django.contrib.auth.backends.ModelBackend" })
    );
}

#[tokio::test]
async fn signed_cookies_are_shared_with_django_both_ways() {
    let django = Django::new("signed_cookies", SECRET);
    let demo = Demo::start(&["--engine", "signed_cookies", "--secret-key", SECRET]);
    let key = both_ways(&django, &demo).await;
    tampered_refused(&django, &demo, &key, &|key| key.to_owned(), &|_, _| {}).await;

    // Expired: older than the cookie age on both sides.
    let short = Django::new("signed_cookies", SECRET).with("SESSION_COOKIE_AGE", "1");
    let short_demo = Demo::start(&[
        "--engine",
        "signed_cookies",
        "--secret-key",
        SECRET,
        "--cookie-age",
        "1",
    ]);
    let key = short.write(&json!({ "cart": ["old"] }), Value::Null);
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    assert_eq!(short.read(&key)["data"], json!({}));
    assert_eq!(demo_cart(&short_demo, &key).await.0["count"], 0);
}

#[tokio::test]
async fn file_sessions_are_shared_with_django_both_ways() {
    let dir = Scratch::new("django-file");
    let path = dir.to_str().unwrap().to_owned();
    let django = Django::new("file", SECRET).with("SESSION_FILE_PATH", &path);
    let demo = Demo::start(&[
        "--engine",
        "file",
        "--file-path",
        &path,
        "--secret-key",
        SECRET,
        "--data-format",
        "django",
    ]);
    let file = |key: &str| dir.join(format!("sessionid{key}"));
    let key = both_ways(&django, &demo).await;
    tampered_refused(
        &django,
        &demo,
        &key,
        &|key| std::fs::read_to_string(file(key)).unwrap(),
        &|key, text| std::fs::write(file(key), text).unwrap(),
    )
    .await;
    expired_refused(&django, &demo).await;
}

/// Runs python code with the venv's `redis` client; `r` is the connection.
fn python_redis(code: &str, args: &[&str]) -> String {
    let prelude = format!(
        "import redis,sys\nr=redis.Redis.from_url({:?})\n",
        support::redis_url()
    );
    let out = Command::new(python())
        .arg("-c")
        .arg(prelude + code)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python redis client (is Redis running at {}?): {}",
        support::redis_url(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn cache_key(session_key: &str) -> String {
    format!(":1:django.contrib.sessions.cache{session_key}")
}

#[tokio::test]
async fn cache_sessions_on_redis_are_shared_with_django_both_ways() {
    let url = support::redis_url();
    let django = Django::new("cache", SECRET).with("DJANGO_CACHE_URL", &url);
    let demo = Demo::start(&[
        "--engine",
        "cache",
        "--cache-url",
        &url,
        "--secret-key",
        SECRET,
        "--data-format",
        "django",
    ]);
    // Django stores pickle protocol 5 (with memo references for repeated strings).
    let key = django.write(&rich(), json!(3600));
    let raw = python_redis("print(r.get(sys.argv[1])[:2].hex())", &[&cache_key(&key)]);
    assert_eq!(
        raw.trim(),
        "8005",
        "Django's RedisCache wrote pickle protocol 5"
    );
    both_ways(&django, &demo).await;

    // The session the demo wrote is a pickle too, and not JSON text.
    let mine = demo_add(&demo, None, "x").await;
    let raw = python_redis("print(r.get(sys.argv[1])[:2].hex())", &[&cache_key(&mine)]);
    assert_eq!(raw.trim(), "8002");

    // A pickle that would build a Python object (here `builtins.list` via GLOBAL + REDUCE) is
    // never unpickled by cloakroom: the visitor gets a fresh session.
    python_redis(
        "r.set(sys.argv[1], b'\\x80\\x02cbuiltins\\nlist\\n)R.', ex=60)",
        &[&cache_key(&mine)],
    );
    assert_eq!(demo_cart(&demo, &mine).await.0["count"], 0);

    // Expired: the TTL ran out (an integer expiry is the TTL, as in Django).
    let key = django.write(&json!({ "cart": ["old"] }), json!(1));
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(demo_cart(&demo, &key).await.0["count"], 0);
    assert_eq!(django.read(&key)["data"], json!({}));
}

#[tokio::test]
async fn djangos_writes_reach_a_demo_with_the_redis_client_cache() {
    // With the client-side cache on, the demo answers loads from memory: Django's writes to
    // the same keys must still be seen (Redis's client tracking tells the demo).
    let url = support::redis_url();
    let django = Django::new("cache", SECRET).with("DJANGO_CACHE_URL", &url);
    let dir = support::temp_dir("demo-client-cache");
    let config = dir.join("settings.toml");
    std::fs::write(&config, "redis_client_cache_ms = 60000\n").unwrap();
    let demo = Demo::start_in(
        &dir,
        &[
            "--config",
            config.to_str().unwrap(),
            "--engine",
            "cache",
            "--cache-url",
            &url,
            "--secret-key",
            SECRET,
            "--data-format",
            "django",
        ],
    );
    let key = both_ways(&django, &demo).await;
    // Read once more (kept now), then Django changes it again: the next read shows it.
    demo_cart(&demo, &key).await;
    let changed = django.update(&key, &json!({ "cart": ["again"] }));
    assert_eq!(
        demo_cart(&demo, &changed).await.0["items"],
        json!(["again"])
    );
    // And Django's delete ends the session.
    python_redis("r.delete(sys.argv[1])", &[&cache_key(&changed)]);
    assert_eq!(demo_cart(&demo, &changed).await.0["count"], 0);
}

#[tokio::test]
async fn cached_db_on_redis_and_sqlite_is_shared_with_django_both_ways() {
    let dir = Scratch::new("django-cached-db");
    let db = dir.join("django.sqlite3");
    let url = format!("sqlite://{}", db.display());
    let redis = support::redis_url();
    let django = Django::new("cached_db", SECRET)
        .with("DJANGO_DATABASE_URL", &url)
        .with("DJANGO_CACHE_URL", &redis);
    django.migrate();
    let demo = db_demo(&url, &["--engine", "cached_db", "--cache-url", &redis]);
    let key = both_ways(&django, &demo).await;
    let cached = |k: &str| format!(":1:django.contrib.sessions.cached_db{k}");
    // Whatever the cache holds now is a pickle of what the table holds (Django's read above
    // went through the cache).
    let raw = python_redis(
        "v=r.get(sys.argv[1]); print(v[:1].hex() if v else '')",
        &[&cached(&key)],
    );
    assert!(matches!(raw.trim(), "" | "80"), "{raw}");
    let (db2, db3) = (db.clone(), db.clone());
    tampered_refused(
        &django,
        &demo,
        &key,
        &move |key| sqlite_text(&db2, key),
        &move |key, text| {
            python_sql(
                &db3,
                &format!(
                    "UPDATE django_session SET session_data = '{text}' WHERE session_key = '{key}'"
                ),
            );
            // Django trusts its cache; the tampering is in the table, so drop the copy.
            python_redis("r.delete(sys.argv[1])", &[&cached(key)]);
        },
    )
    .await;
    expired_refused(&django, &demo).await;
}

#[tokio::test]
async fn django_never_reads_a_stale_cache_copy_after_the_demo_wrote_with_the_cache_down() {
    // Django reads its cache first: a copy the demo could not replace or drop would be served.
    let mut redis = support::servers::Redis::persistent();
    let dir = Scratch::new("django-cache-copy");
    let url = format!("sqlite://{}", dir.join("django.sqlite3").display());
    let django = Django::new("cached_db", SECRET)
        .with("DJANGO_DATABASE_URL", &url)
        .with("DJANGO_CACHE_URL", &redis.url());
    // Django's `db` engine on the same table reads the truth, past the cache.
    let table = Django::new("db", SECRET).with("DJANGO_DATABASE_URL", &url);
    django.migrate();
    let key = django.write(&json!({ "visits": 41, "cart": ["apple"] }), Value::Null);
    assert_eq!(django.read(&key)["data"]["cart"], json!(["apple"]));

    support::servers::Server::kill(&mut redis);
    // The demo starts while the cache is down, then changes the session.
    let demo = db_demo(
        &url,
        &["--engine", "cached_db", "--cache-url", &redis.url()],
    );
    let status = send(
        bare()
            .post(demo.url("/api/cart"))
            .header("cookie", cookie(&key))
            .json(&json!({ "item": "pear" })),
    )
    .await
    .status;
    assert!(status == 200 || status == 503, "{status}");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    support::servers::Server::start(&mut redis);

    let truth = table.read(&key)["data"].clone();
    if status == 200 {
        assert_eq!(
            truth["cart"],
            json!(["apple", "pear"]),
            "a 200 saved the change"
        );
    }
    assert_eq!(
        django.read(&key)["data"],
        truth,
        "Django served a cache copy older than the table (the demo's write answered {status})"
    );
}

/// A database of its own on the server at `admin_url` for one test (Django's table name is
/// fixed, so tests cannot share a database); its URL.
fn fresh_database(admin_url: &str, engine: &str) -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).unwrap();
    let name: String = format!(
        "dj_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let code = match engine {
        "postgres" => "import psycopg,sys\nc=psycopg.connect(sys.argv[1],autocommit=True)\nc.execute('CREATE DATABASE '+sys.argv[2])",
        _ => "import pymysql,sys\nfrom urllib.parse import urlsplit\nu=urlsplit(sys.argv[1])\nc=pymysql.connect(host=u.hostname,port=u.port or 3306,user=u.username,password=u.password or '')\nc.cursor().execute('CREATE DATABASE '+sys.argv[2])",
    };
    let out = Command::new(python())
        .args(["-c", code, admin_url, &name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cannot create a database on {admin_url} (is the server running?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let base = admin_url.rsplit_once('/').unwrap().0;
    format!("{base}/{name}")
}

async fn db_server_both_ways(url: &str) {
    let django = Django::new("db", SECRET).with("DJANGO_DATABASE_URL", url);
    django.migrate();
    let demo = db_demo(url, &[]);
    both_ways(&django, &demo).await;
    expired_refused(&django, &demo).await;
    // (Tampered data is covered on SQLite: the format and the code path are the same.)
}

/// Drops the database `fresh_database` made (its clients must be gone).
fn drop_database(admin_url: &str, url: &str, engine: &str) {
    let name = url.rsplit_once('/').unwrap().1;
    let code = match engine {
        "postgres" => "import psycopg,sys\nc=psycopg.connect(sys.argv[1],autocommit=True)\nc.execute('DROP DATABASE IF EXISTS '+sys.argv[2]+' WITH (FORCE)')",
        _ => "import pymysql,sys\nfrom urllib.parse import urlsplit\nu=urlsplit(sys.argv[1])\nc=pymysql.connect(host=u.hostname,port=u.port or 3306,user=u.username,password=u.password or '')\nc.cursor().execute('DROP DATABASE IF EXISTS '+sys.argv[2])",
    };
    let _ = Command::new(python())
        .args(["-c", code, admin_url, name])
        .output();
}

#[tokio::test]
async fn db_on_postgres_is_shared_with_django_both_ways() {
    let admin = support::postgres_url();
    let url = fresh_database(&admin, "postgres");
    db_server_both_ways(&url).await;
    drop_database(&admin, &url, "postgres");
}

#[tokio::test]
async fn db_on_mariadb_is_shared_with_django_both_ways() {
    let admin = support::mysql_url();
    let url = fresh_database(&admin, "mysql");
    db_server_both_ways(&url).await;
    drop_database(&admin, &url, "mysql");
}
