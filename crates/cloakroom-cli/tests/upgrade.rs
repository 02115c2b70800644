//! The upgrade path (issue 16, point 8): sessions written by the code of commit 3884aea, as a
//! rolling deploy leaves them in the store, are read and updated by this build, on every engine
//! and both data formats.
//!
//! Each fixture under `tests/fixtures/upgrade-3884aea/` is the raw store the old demo left
//! (SQL schema and rows, Redis keys with values and TTLs, the file engine's folder, signed
//! cookies), the cookies it handed out and its secret key; `scripts/make-upgrade-fixtures.py`
//! remakes them. A test loads one into a store of its own (a table of its own name, a
//! redis-server of its own, a temp folder), moves every stored instant forward by the time
//! since the dump (the store as the old servers left it a moment before the new ones took
//! over), starts the new demo on it with the same secret key and checks, over HTTP with the old
//! cookies, that the counter goes on and its save lands, that the user's sessions are listed
//! and revocable, that a per-session expiry is kept, and that a key rotated by the old code
//! never leads to the new session (3884aea's pointer is treated as gone, see `manager.rs`).
//!
//! In-process `cache` is not here: it keeps nothing across a restart, so no deploy hands its
//! sessions over.

mod support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use sqlx::SqlitePool;
use support::servers::Redis;
use support::{bare, send, unique_table, Demo, Reply, Scratch};

/// Where the fixtures are.
fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upgrade-3884aea")
}

/// One fixture: what the old demo left behind.
struct Fixture {
    name: String,
    json: Value,
}

impl Fixture {
    fn load(name: &str) -> Self {
        let path = fixture_dir().join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        Self {
            name: name.to_owned(),
            json,
        }
    }

    fn str(&self, pointer: &str) -> &str {
        self.json
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{}: no string at {pointer}", self.name))
    }

    fn int(&self, pointer: &str) -> i64 {
        self.json
            .pointer(pointer)
            .and_then(Value::as_i64)
            .unwrap_or_else(|| panic!("{}: no integer at {pointer}", self.name))
    }

    /// The cookie the old demo handed to `visitor`.
    fn cookie(&self, visitor: &str) -> &str {
        self.str(&format!("/cookies/{visitor}"))
    }

    /// Whole seconds from the dump to now, rounded up: how far every stored instant moves.
    fn age(&self) -> i64 {
        let made_at = self
            .json
            .pointer("/made_at")
            .and_then(Value::as_f64)
            .expect("made_at");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_secs_f64();
        (now - made_at).ceil() as i64
    }

    /// The demo's flags the old servers ran with (the store's place comes from [`Loaded`]).
    fn settings_args(&self) -> Vec<String> {
        let mut args = vec![
            "--engine".to_owned(),
            self.str("/settings/engine").to_owned(),
            "--data-format".to_owned(),
            self.str("/settings/data_format").to_owned(),
            "--rotation-grace".to_owned(),
            self.int("/settings/rotation_grace").to_string(),
            "--secret-key".to_owned(),
            self.str("/secret_key").to_owned(),
        ];
        if let Some(age) = self.json.pointer("/settings/cookie_age") {
            args.extend(["--cookie-age".to_owned(), age.to_string()]);
        }
        args
    }
}

/// Bytes the script wrote as `{"text": …}` (UTF-8) or `{"hex": …}`.
fn bytes(value: &Value) -> Vec<u8> {
    if let Some(text) = value["text"].as_str() {
        return text.as_bytes().to_vec();
    }
    let hex = value["hex"].as_str().expect("text or hex bytes");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

/// `YYYY-MM-DD HH:MM:SS` followed by anything (a fraction, an offset), moved `seconds`
/// forward, the rest kept as written: the three databases' text for an instant.
fn shift_sql_time(text: &str, seconds: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let (head, rest) = text.split_at(19);
    let at = time::PrimitiveDateTime::parse(head, format)
        .unwrap_or_else(|e| panic!("{text:?} is not a SQL instant: {e}"))
        + time::Duration::seconds(seconds);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}{rest}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// The column that decides whether a row is live, in the session table and in `<table>_user`:
/// moved by the fixture's age. The login times (`created`, `last_seen`) stay as the old code
/// wrote them, as in Redis and in the file engine's index.
const SQL_EXPIRY: &str = "expire_date";

/// A SQL database the fixture's tables were loaded into, under a table name of their own.
enum Sql {
    Sqlite { pool: SqlitePool, url: String },
    Postgres { url: String },
    Mysql { url: String },
}

impl Sql {
    /// Runs `script` (statements separated by `;`) on a server database through its client.
    fn run(&self, script: &str) -> String {
        let mut cmd = match self {
            Sql::Sqlite { .. } => unreachable!("SQLite goes through sqlx"),
            Sql::Postgres { url } => {
                let mut cmd = Command::new("psql");
                cmd.arg(url)
                    .args(["-v", "ON_ERROR_STOP=1", "-X", "-q", "-A", "-t", "-f", "-"]);
                cmd
            }
            Sql::Mysql { url } => {
                let rest = url.strip_prefix("mysql://").expect("a mysql:// URL");
                let (auth, rest) = rest.split_once('@').expect("user@host");
                let (host, db) = rest.split_once('/').expect("host/db");
                let (host, port) = host.split_once(':').unwrap_or((host, "3306"));
                let (user, password) = auth.split_once(':').unwrap_or((auth, ""));
                let mut cmd = Command::new("mariadb");
                cmd.args(["--no-defaults", "-N", "-B", "--raw", "-h", host, "-P", port])
                    .args(["-u", user, db]);
                if !password.is_empty() {
                    cmd.arg(format!("-p{password}"));
                }
                cmd
            }
        };
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the database client runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(script.as_bytes())
            .expect("the client reads the script");
        let out = child.wait_with_output().expect("the client finishes");
        assert!(
            out.status.success(),
            "{script}\nfailed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }

    /// `text` as a literal of the column's type: PostgreSQL's standard strings know no
    /// escapes but `''` (and an untyped literal takes the column's type, a timestamp too);
    /// MySQL's strings do, so its text goes as hex.
    fn literal(&self, text: &str) -> String {
        match self {
            Sql::Postgres { .. } => format!("'{}'", text.replace('\'', "''")),
            _ => {
                let hex: String = text.bytes().map(|b| format!("{b:02x}")).collect();
                format!("CONVERT(X'{hex}' USING utf8mb4)")
            }
        }
    }

    /// Creates the old schema under `table` and inserts the old rows, instants moved by `age`.
    async fn load(&self, sql: &Value, table: &str, age: i64) {
        let old = sql["table"].as_str().expect("table");
        let schema: Vec<String> = sql["schema"]
            .as_array()
            .expect("schema")
            .iter()
            .map(|s| s.as_str().expect("DDL").replace(old, table))
            .collect();
        let mut script = schema.join(";\n") + ";\n";
        if let Sql::Sqlite { pool, .. } = self {
            sqlx::raw_sql(&script)
                .execute(pool)
                .await
                .expect("the old schema");
            script.clear();
        }
        for suffix in ["", "_user"] {
            let rows = sql["rows"][format!("{old}{suffix}")]
                .as_array()
                .expect("rows");
            for row in rows {
                let row = row.as_object().expect("a row");
                let names: Vec<&str> = row.keys().map(String::as_str).collect();
                let values: Vec<Option<String>> = row
                    .iter()
                    .map(|(name, v)| {
                        let text = v.as_str()?;
                        Some(if name == SQL_EXPIRY {
                            shift_sql_time(text, age)
                        } else {
                            text.to_owned()
                        })
                    })
                    .collect();
                if let Sql::Sqlite { pool, .. } = self {
                    let insert = format!(
                        "INSERT INTO \"{table}{suffix}\" (\"{}\") VALUES ({})",
                        names.join("\", \""),
                        vec!["?"; names.len()].join(", ")
                    );
                    let mut query = sqlx::query(&insert);
                    for v in values {
                        query = query.bind(v);
                    }
                    query.execute(pool).await.expect("insert an old row");
                } else {
                    let q = self.quote();
                    let cols: Vec<String> = names.iter().map(|n| format!("{q}{n}{q}")).collect();
                    let vals: Vec<String> = values
                        .iter()
                        .map(|v| v.as_deref().map_or("NULL".to_owned(), |t| self.literal(t)))
                        .collect();
                    script += &format!(
                        "INSERT INTO {q}{table}{suffix}{q} ({}) VALUES ({});\n",
                        cols.join(", "),
                        vals.join(", ")
                    );
                }
            }
        }
        if !script.is_empty() {
            self.run(&script);
        }
    }

    /// How the dialect quotes a name.
    fn quote(&self) -> char {
        match self {
            Sql::Mysql { .. } => '`',
            _ => '"',
        }
    }

    /// The stored `session_data` under `key`, live or not.
    async fn data(&self, table: &str, key: &str) -> Option<String> {
        match self {
            Sql::Sqlite { pool, .. } => sqlx::query_scalar(&format!(
                "SELECT session_data FROM \"{table}\" WHERE session_key = ?1"
            ))
            .bind(key)
            .fetch_optional(pool)
            .await
            .expect("select"),
            Sql::Postgres { .. } => self.one(&format!(
                "SELECT session_data FROM \"{table}\" WHERE session_key = '{key}'"
            )),
            Sql::Mysql { .. } => self.one(&format!(
                "SELECT session_data FROM `{table}` WHERE session_key = '{key}'"
            )),
        }
    }

    fn one(&self, query: &str) -> Option<String> {
        let out = self.run(query);
        let out = out.strip_suffix('\n').unwrap_or(&out);
        (!out.is_empty()).then(|| out.to_owned())
    }

    /// Seconds from now to the stored `expire_date` of `key`.
    async fn seconds_left(&self, table: &str, key: &str) -> Option<f64> {
        let text = match self {
            Sql::Sqlite { pool, .. } => sqlx::query_scalar::<_, f64>(&format!(
                "SELECT (julianday(expire_date) - julianday('now')) * 86400.0 FROM \"{table}\" \
                 WHERE session_key = ?1"
            ))
            .bind(key)
            .fetch_optional(pool)
            .await
            .expect("select")
            .map(|s| s.to_string()),
            Sql::Postgres { .. } => self.one(&format!(
                "SELECT extract(epoch FROM expire_date - now()) FROM \"{table}\" \
                 WHERE session_key = '{key}'"
            )),
            Sql::Mysql { .. } => self.one(&format!(
                "SELECT TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(6), expire_date) / 1e6 \
                 FROM `{table}` WHERE session_key = '{key}'"
            )),
        };
        text.map(|t| t.trim().parse().expect("a number of seconds"))
    }

    /// How many rows of the user index `<table>_user` link `key`.
    async fn index_rows(&self, table: &str, key: &str) -> i64 {
        let text = match self {
            Sql::Sqlite { pool, .. } => {
                let n: i64 = sqlx::query_scalar(&format!(
                    "SELECT COUNT(*) FROM \"{table}_user\" WHERE session_key = ?1"
                ))
                .bind(key)
                .fetch_one(pool)
                .await
                .expect("count");
                return n;
            }
            Sql::Postgres { .. } => self.one(&format!(
                "SELECT COUNT(*) FROM \"{table}_user\" WHERE session_key = '{key}'"
            )),
            Sql::Mysql { .. } => self.one(&format!(
                "SELECT COUNT(*) FROM `{table}_user` WHERE session_key = '{key}'"
            )),
        };
        text.expect("a count").trim().parse().expect("a count")
    }

    fn url(&self) -> &str {
        match self {
            Sql::Sqlite { url, .. } | Sql::Postgres { url } | Sql::Mysql { url } => url,
        }
    }
}

/// One Redis command in the protocol's own framing (binary-safe, for `redis-cli --pipe`).
fn resp(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// A redis-server of the test's own, with the fixture's keys.
struct OwnRedis {
    server: Redis,
    port: String,
}

impl OwnRedis {
    fn start() -> Self {
        let server = Redis::new();
        let port = server
            .url()
            .rsplit_once(':')
            .and_then(|(_, rest)| rest.split('/').next().map(str::to_owned))
            .expect("a port in the URL");
        Self { server, port }
    }

    fn cli(&self, args: &[&str], stdin: &[u8]) -> Vec<u8> {
        let mut child = Command::new("redis-cli")
            .args(["-p", &self.port])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("redis-cli runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin)
            .expect("redis-cli reads");
        let out = child.wait_with_output().expect("redis-cli finishes");
        assert!(
            out.status.success(),
            "redis-cli {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Writes the old keys: TTLs as they were at the dump (Redis counts them down itself), and
    /// the user index's scores (each session's expiry, in ms) moved by `age`.
    fn load(&self, redis: &Value, age: i64) {
        let mut script = Vec::new();
        for entry in redis["keys"].as_array().expect("keys") {
            let key = bytes(&entry["key"]);
            match entry["type"].as_str().expect("type") {
                "string" => {
                    let value = bytes(&entry["value"]);
                    resp(&mut script, &[b"SET", &key, &value]);
                }
                "hash" => {
                    for (field, value) in entry["fields"].as_object().expect("fields") {
                        let value = bytes(value);
                        resp(&mut script, &[b"HSET", &key, field.as_bytes(), &value]);
                    }
                }
                "zset" => {
                    for member in entry["members"].as_array().expect("members") {
                        let id = bytes(&member[0]);
                        let score = member[1].as_f64().expect("score") + (age * 1000) as f64;
                        let score = format!("{score:.0}");
                        resp(&mut script, &[b"ZADD", &key, score.as_bytes(), &id]);
                    }
                }
                other => panic!("a Redis {other} in the fixture"),
            }
            let ttl = entry["pttl"].as_i64().expect("pttl");
            if ttl > 0 {
                resp(&mut script, &[b"PEXPIRE", &key, ttl.to_string().as_bytes()]);
            }
        }
        let out = self.cli(&["--pipe"], &script);
        let out = String::from_utf8_lossy(&out);
        assert!(
            out.contains("errors: 0"),
            "loading the Redis fixture: {out}"
        );
    }

    /// The value under `key`, if any.
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        let exists = self.cli(&["EXISTS", key], b"");
        if exists.starts_with(b"0") {
            return None;
        }
        let mut value = self.cli(&["--raw", "GET", key], b"");
        value.pop(); // redis-cli's newline
        Some(value)
    }

    fn seconds_left(&self, key: &str) -> Option<f64> {
        let ms: i64 = String::from_utf8_lossy(&self.cli(&["PTTL", key], b""))
            .trim()
            .parse()
            .expect("PTTL answers a number");
        (ms >= 0).then(|| ms as f64 / 1000.0)
    }
}

/// The new demo's store, loaded from a fixture: its flags and a way to read it raw.
struct Loaded {
    scratch: Scratch,
    sql: Option<(Sql, String)>,
    redis: Option<OwnRedis>,
    files: Option<PathBuf>,
    /// The Redis key prefix of the engine's sessions (Django's cache key, version 1).
    redis_prefix: &'static str,
}

impl Loaded {
    async fn new(fx: &Fixture, age: i64) -> Self {
        let scratch = Scratch::new("upgrade");
        let store = &fx.json["store"];
        let mut loaded = Self {
            scratch,
            sql: None,
            redis: None,
            files: None,
            redis_prefix: match fx.str("/settings/engine") {
                "cached_db" => ":1:django.contrib.sessions.cached_db",
                _ => ":1:django.contrib.sessions.cache",
            },
        };
        if let Some(sql) = store.get("sql") {
            let table = unique_table("upgrade");
            let db = match sql["dialect"].as_str().expect("dialect") {
                "sqlite" => {
                    let path = loaded.scratch.join("cloakroom.sqlite3");
                    let url = format!("sqlite://{}", path.display());
                    let pool = SqlitePool::connect(&format!("{url}?mode=rwc"))
                        .await
                        .expect("a new SQLite file");
                    Sql::Sqlite { pool, url }
                }
                "postgres" => Sql::Postgres {
                    url: support::postgres_url(),
                },
                "mysql" => Sql::Mysql {
                    url: support::mysql_url(),
                },
                other => panic!("unknown dialect {other}"),
            };
            db.load(sql, &table, age).await;
            loaded.sql = Some((db, table));
        }
        if let Some(redis) = store.get("redis") {
            let own = OwnRedis::start();
            own.load(redis, age);
            loaded.redis = Some(own);
        }
        if let Some(file) = store.get("file") {
            let folder = loaded.scratch.join("sessions");
            load_files(&folder, file, age);
            loaded.files = Some(folder);
        }
        loaded
    }

    /// The flags that put the new demo on this store.
    fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some((db, table)) = &self.sql {
            args.extend([
                "--database-url".to_owned(),
                db.url().to_owned(),
                "--table".to_owned(),
                table.clone(),
            ]);
        }
        if let Some(redis) = &self.redis {
            args.extend(["--cache-url".to_owned(), redis.server.url()]);
        }
        if let Some(folder) = &self.files {
            args.extend(["--file-path".to_owned(), folder.display().to_string()]);
        }
        args
    }

    /// The raw stored session under `key`, from the store of record (the database under
    /// `cached_db`), as bytes; `None` with signed cookies (no store).
    async fn data(&self, key: &str) -> Option<Vec<u8>> {
        if let Some((db, table)) = &self.sql {
            return db.data(table, key).await.map(String::into_bytes);
        }
        if let Some(redis) = &self.redis {
            return redis.get(&format!("{}{key}", self.redis_prefix));
        }
        if let Some(folder) = &self.files {
            return match std::fs::read(folder.join(format!("sessionid{key}"))) {
                Ok(bytes) => Some(bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => panic!("reading the session file: {e}"),
            };
        }
        None
    }

    /// Seconds from now to the stored expiry of `key`.
    async fn seconds_left(&self, key: &str, cookie_age: i64) -> Option<f64> {
        if let Some((db, table)) = &self.sql {
            return db.seconds_left(table, key).await;
        }
        if let Some(redis) = &self.redis {
            return redis.seconds_left(&format!("{}{key}", self.redis_prefix));
        }
        if let Some(folder) = &self.files {
            // Django's file backend: the file's mtime plus the cookie age.
            let meta = std::fs::metadata(folder.join(format!("sessionid{key}"))).ok()?;
            let mtime = meta.modified().expect("mtime");
            let now = SystemTime::now();
            let since = now.duration_since(mtime).unwrap_or_default().as_secs_f64();
            return Some(cookie_age as f64 - since);
        }
        None
    }

    /// Whether the user index still links `key` (SQL: a `<table>_user` row).
    async fn indexed(&self, key: &str) -> Option<bool> {
        let (db, table) = self.sql.as_ref()?;
        Some(db.index_rows(table, key).await > 0)
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        if let Some((db @ (Sql::Postgres { .. } | Sql::Mysql { .. }), table)) = &self.sql {
            let q = db.quote();
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                db.run(&format!(
                    "DROP TABLE IF EXISTS {q}{table}_user{q}; DROP TABLE IF EXISTS {q}{table}{q};"
                ))
            }));
        }
    }
}

/// Writes the old folder: contents and modes as they were, mtimes moved by `age`.
fn load_files(folder: &Path, file: &Value, age: i64) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(folder).expect("the sessions folder");
    std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    for f in file["files"].as_array().expect("files") {
        let path = folder.join(f["path"].as_str().expect("path"));
        let parent = path.parent().expect("a parent");
        std::fs::create_dir_all(parent).expect("the index folders");
        std::fs::write(&path, bytes(&f["content"])).expect("write");
        let mode = u32::try_from(f["mode"].as_u64().expect("mode")).expect("a mode");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let mtime_ns = f["mtime_ns"].as_u64().expect("mtime_ns");
        let mtime = UNIX_EPOCH
            + Duration::from_nanos(mtime_ns)
            + Duration::from_secs(u64::try_from(age).expect("a positive age"));
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(mtime))
            .expect("set the mtime");
    }
}

/// A request with the old cookie `key`.
async fn with(request: reqwest::RequestBuilder, key: &str) -> Reply {
    send(request.header("cookie", support::session(key))).await
}

/// Runs the whole check on one fixture.
async fn upgrade(name: &str) {
    let fx = Fixture::load(name);
    let age = fx.age();
    assert!(age >= 0, "{name} was made in the future");
    let store = Loaded::new(&fx, age).await;
    let mut args = store.args();
    args.extend(fx.settings_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if matches!(
        &store.sql,
        Some((Sql::Postgres { .. } | Sql::Mysql { .. }, _))
    ) {
        // The documented upgrade step: `migrate` again, on the old tables (migrate takes the
        // store's flags only).
        let store_args = store.args();
        let store_args: Vec<&str> = store_args.iter().map(String::as_str).collect();
        let (ok, out, err) =
            support::cli(&store.scratch, &[&["migrate"], &store_args[..]].concat());
        assert!(ok, "cloakroom migrate on the old tables: {out}{err}");
    }
    let engine = fx.str("/settings/engine").to_owned();
    let cookies_only = engine == "signed_cookies";
    let cookie_age = fx
        .json
        .pointer("/settings/cookie_age")
        .and_then(Value::as_i64)
        .unwrap_or(1_209_600);
    let demo = Demo::start_in(&store.scratch, &args);
    let http = bare();

    // The rotated key first: its grace window is counting down since the dump.
    let (k, k2) = (fx.cookie("rotated_old"), fx.cookie("rotated_new"));
    if !cookies_only {
        assert!(
            store.data(k).await.is_some(),
            "{name}: the old rotation pointer is live in the store, inside its window"
        );
        let whoami = with(http.get(demo.url("/api/whoami")), k).await;
        assert_eq!(whoami.json(), json!({ "username": null }), "{name}");
        let cart = with(http.get(demo.url("/api/cart")), k).await;
        assert_eq!(
            cart.json(),
            json!({ "count": 0, "items": [] }),
            "{name}: 3884aea's rotation pointer is treated as gone, never followed"
        );
        for reply in [&whoami, &cart] {
            let headers = format!("{:?}", reply.headers);
            assert!(
                !reply.body.contains(k2) && !headers.contains(k2),
                "{name}: the old key was led to the new one: {reply:?}"
            );
        }
    }
    let whoami = with(http.get(demo.url("/api/whoami")), k2).await;
    assert_eq!(whoami.json(), json!({ "username": "bob" }), "{name}");
    let cart = with(http.get(demo.url("/api/cart")), k2).await;
    assert_eq!(
        cart.json(),
        json!({ "count": 1, "items": ["socks"] }),
        "{name}: the cart survived the old login"
    );

    // The anonymous counter goes on from the stored value, and the save lands.
    let a = fx.cookie("anonymous");
    let before = store.data(a).await;
    assert!(
        cookies_only || before.is_some(),
        "{name}: the fixture holds the counter"
    );
    let visits = fx.int("/seen/anonymous_visits");
    let reply = with(http.get(demo.url("/api/visits")), a).await;
    assert_eq!(reply.status, 200, "{name}: {}", reply.body);
    assert_eq!(
        reply.json(),
        json!({ "visits": visits + 1 }),
        "{name}: the counter went on from the old record"
    );
    let mut a_now = a.to_owned();
    if cookies_only {
        a_now = reply.session_cookie().value;
        assert_ne!(a_now, a, "{name}: a new signed cookie carries the count");
    } else {
        let after = store.data(a).await.expect("the session is still stored");
        assert_ne!(
            Some(&after),
            before.as_ref(),
            "{name}: the save did not land"
        );
        if fx.str("/settings/data_format") == "json" {
            let text = String::from_utf8_lossy(&after);
            assert!(
                text.contains(&format!("\"visits\":{}", visits + 1)),
                "{name}: the stored data {text}"
            );
        }
        if store.redis.is_some() && store.sql.is_none() {
            // On Redis (the store of record) the old value had no header; the save wrote our format's (its expiry
            // beside the data: one GET per load), and Django's format stays Django's pickle.
            let header = fx.str("/settings/data_format") == "json";
            assert_eq!(
                after.first() == Some(&0xFF),
                header,
                "{name}: the stored value {after:?}"
            );
        }
        let left = store.seconds_left(a, cookie_age).await.expect("an expiry");
        assert!(
            left > (cookie_age - 10) as f64,
            "{name}: the save refreshed the expiry ({left} s left)"
        );
    }

    // The per-session expiry is kept.
    let e = fx.cookie("expiry");
    let expiry = fx.int("/seen/expiry");
    let reply = with(http.get(demo.url("/api/visits")), e).await;
    assert_eq!(
        reply.json(),
        json!({ "visits": fx.int("/seen/expiry_visits") + 1 }),
        "{name}"
    );
    reply.session_cookie().assert_lifetime(expiry);
    if !cookies_only {
        let left = store.seconds_left(e, cookie_age).await.expect("an expiry");
        assert!(
            (expiry - 10) as f64 <= left && left <= (expiry + 1) as f64,
            "{name}: the stored expiry is {left} s away, not {expiry}"
        );
    }

    // The logged-in user: the old logins are hers, listed, and revocable everywhere.
    let (phone, laptop) = (fx.cookie("ana_phone"), fx.cookie("ana_laptop"));
    for key in [phone, laptop] {
        let reply = with(http.get(demo.url("/api/whoami")), key).await;
        assert_eq!(reply.json(), json!({ "username": "ana" }), "{name}");
    }
    let reply = with(http.get(demo.url("/api/visits")), phone).await;
    assert_eq!(
        reply.json(),
        json!({ "visits": fx.int("/seen/ana_phone_visits") + 1 }),
        "{name}"
    );
    if !cookies_only {
        let listed = with(http.get(demo.url("/api/sessions")), phone).await;
        assert_eq!(listed.status, 200, "{name}: {}", listed.body);
        let listed = listed.json();
        assert_eq!(listed["user"], "ana", "{name}");
        let sessions = listed["sessions"].as_array().expect("sessions");
        let agents: Vec<&Value> = sessions.iter().map(|s| &s["user_agent"]).collect();
        assert_eq!(agents, ["Laptop/2.0", "Phone/1.0"], "{name}: {listed}");
        assert_eq!(sessions[1]["current"], true, "{name}: {listed}");
        for s in sessions {
            assert!(s["expires_at"].as_i64() > s["created_at"].as_i64(), "{s}");
        }
        assert!(store.indexed(phone).await.unwrap_or(true), "{name}");

        let out = with(http.post(demo.url("/api/logout-everywhere")), phone).await;
        assert_eq!(out.json(), json!({ "revoked": 2 }), "{name}: {}", out.body);
        for key in [phone, laptop] {
            let reply = with(http.get(demo.url("/api/whoami")), key).await;
            assert_eq!(reply.json(), json!({ "username": null }), "{name}");
            assert_eq!(
                store.data(key).await,
                None,
                "{name}: a revoked session stayed"
            );
            assert!(
                !store.indexed(key).await.unwrap_or(false),
                "{name}: the user index kept a revoked session"
            );
        }
        // Bob's session (the rotated login) is another user's: untouched.
        let whoami = with(http.get(demo.url("/api/whoami")), k2).await;
        assert_eq!(whoami.json(), json!({ "username": "bob" }), "{name}");
    }

    // A new process reads what this one wrote: the save is in the store, not in memory.
    drop(demo);
    let demo = Demo::start_in(&store.scratch, &args);
    let reply = with(http.get(demo.url("/api/visits")), &a_now).await;
    assert_eq!(
        reply.json(),
        json!({ "visits": visits + 2 }),
        "{name}: after a restart"
    );
}

macro_rules! upgrade_tests {
    ($($test:ident => $fixture:literal),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $test() {
                upgrade($fixture).await;
            }
        )*
    };
}

upgrade_tests! {
    upgrade_from_3884aea_db_sqlite_json => "db-sqlite-json",
    upgrade_from_3884aea_db_sqlite_django => "db-sqlite-django",
    upgrade_from_3884aea_db_postgres_json => "db-postgres-json",
    upgrade_from_3884aea_db_postgres_django => "db-postgres-django",
    upgrade_from_3884aea_db_mysql_json => "db-mysql-json",
    upgrade_from_3884aea_db_mysql_django => "db-mysql-django",
    upgrade_from_3884aea_cache_redis_json => "cache-redis-json",
    upgrade_from_3884aea_cache_redis_django => "cache-redis-django",
    upgrade_from_3884aea_cached_db_json => "cached_db-sqlite-json",
    upgrade_from_3884aea_cached_db_django => "cached_db-sqlite-django",
    upgrade_from_3884aea_file_json => "file-json",
    upgrade_from_3884aea_file_django => "file-django",
    upgrade_from_3884aea_signed_cookies => "signed_cookies-json",
}
