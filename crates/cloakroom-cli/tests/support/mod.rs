//! Starts the real `cloakroom demo` binary on a free loopback port, in its own temporary
//! folder, and stops it (by pid) when dropped.

#![allow(dead_code)]

/// Chromium over WebDriver, for the browser tests.
pub mod browser;
/// Servers of our own on free loopback ports (the test kit's, shared with the core's tests).
#[allow(unused_imports)]
pub use cloakroom_testkit::servers;
/// The Redis Cluster of the test kit (three masters of our own on free ports).
#[allow(unused_imports)]
pub use cloakroom_testkit::servers::redis_cluster;

// The temp folders and ports of servers.rs (which stands alone for the loadtest example); not
// every test binary uses all three.
#[allow(unused_imports)]
pub use servers::{free_port, temp_dir, Scratch};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, SET_COOKIE, VARY};
use serde_json::Value;
use sqlx::SqlitePool;
use time::OffsetDateTime;

/// A running demo server.
pub struct Demo {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    child: Child,
    /// Whether `dir` was made by [`Demo::start`] and goes with the server.
    owns_dir: bool,
}

impl Demo {
    /// Starts `cloakroom demo` with `args` in a new temporary folder.
    pub fn start(args: &[&str]) -> Self {
        let mut demo = Self::start_in(&temp_dir("demo"), args);
        demo.owns_dir = true;
        demo
    }

    /// Starts `cloakroom demo` with `args` in `dir` (the working folder, where the default
    /// SQLite file and the generated secret key go).
    pub fn start_in(dir: &Path, args: &[&str]) -> Self {
        Self::start_with_env(dir, args, &[])
    }

    /// As [`start_in`](Self::start_in), with extra environment variables.
    pub fn start_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_logged(dir, args, env, None)
    }

    /// As [`start_with_env`](Self::start_with_env), appending the server's log (stderr) to
    /// `log` when given.
    pub fn start_logged(
        dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        log: Option<&Path>,
    ) -> Self {
        for _ in 0..5 {
            let port = free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_cloakroom"));
            cmd.arg("demo")
                .arg("--addr")
                .arg(addr.to_string())
                .args(args)
                .current_dir(dir)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(match log {
                    Some(path) => Stdio::from(
                        std::fs::OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(path)
                            .unwrap(),
                    ),
                    None => Stdio::inherit(),
                });
            for (k, v) in env {
                cmd.env(k, v);
            }
            let mut child = cmd.spawn().expect("the cloakroom binary starts");
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = child.try_wait() {
                    // Lost the port to another process, or a real failure: retry, then fail.
                    eprintln!("cloakroom demo exited early: {status}");
                    break;
                }
                if std::net::TcpStream::connect(addr).is_ok() {
                    return Self {
                        addr,
                        dir: dir.to_owned(),
                        child,
                        owns_dir: false,
                    };
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("cloakroom demo {args:?} did not start listening");
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The demo's SQLite file (the default `db` engine, in its working folder).
    pub fn db_url(&self) -> String {
        format!("sqlite://{}", self.dir.join("cloakroom.sqlite3").display())
    }

    /// A connection pool on the demo's SQLite file, to look at the session table directly.
    pub async fn db(&self) -> SqlitePool {
        SqlitePool::connect(&self.db_url())
            .await
            .expect("the demo's SQLite file opens")
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends the server SIGTERM, as a service manager stops it.
    pub fn terminate(&self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -TERM {}", self.pid());
    }

    /// The server's exit status once it has exited, waiting `within` at most (`None`: still
    /// running).
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Runs the `cloakroom` binary with `args` in `dir`, returning (exit success, stdout, stderr).
///
/// A command that is still running after 30 s is killed and the test fails, so a command that
/// should have refused to start (a demo with bad settings) cannot hang the suite.
pub fn cli(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out_dir = temp_dir("cli-out");
    let stdout = std::fs::File::create(out_dir.join("stdout")).unwrap();
    let stderr = std::fs::File::create(out_dir.join("stderr")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("the cloakroom binary runs");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`cloakroom {args:?}` was still running after 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let read = |name| std::fs::read_to_string(out_dir.join(name)).unwrap_or_default();
    let result = (status.success(), read("stdout"), read("stderr"));
    let _ = std::fs::remove_dir_all(&out_dir);
    result
}

/// A client with its own cookie jar: one visitor.
pub fn visitor() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The PostgreSQL the tests use (the machine's, unless `CLOAKROOM_TEST_POSTGRES_URL` says).
pub fn postgres_url() -> String {
    std::env::var("CLOAKROOM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// The MariaDB/MySQL the tests use (`CLOAKROOM_TEST_MYSQL_URL`).
pub fn mysql_url() -> String {
    std::env::var("CLOAKROOM_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned())
}

/// The Redis the tests use (`CLOAKROOM_TEST_REDIS_URL`).
pub fn redis_url() -> String {
    std::env::var("CLOAKROOM_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned())
}

/// A table name of its own for one test, so parallel tests never share rows.
pub fn unique_table(tag: &str) -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).unwrap();
    let suffix: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("t_{tag}_{suffix}")
}

/// Migrates `table` on `url` with the real CLI, failing loudly (naming the server) if it
/// cannot be reached.
pub fn migrate(url: &str, table: &str) {
    let dir = temp_dir("migrate");
    let (ok, out, err) = cli(&dir, &["migrate", "--database-url", url, "--table", table]);
    assert!(
        ok,
        "cloakroom migrate on {url} failed (is the server running?): {out}{err}"
    );
}

/// A client without a cookie jar: every cookie it sends is set by hand.
pub fn bare() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A finished response: status, headers and body, read in one go.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

/// Sends a request and reads the whole response; a transport error (the server dropped the
/// connection, as it does when a handler panics) fails the test.
pub async fn send(request: reqwest::RequestBuilder) -> Reply {
    let response = request
        .send()
        .await
        .expect("the server answers (a dropped connection means it panicked)");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.expect("the body reads");
    Reply {
        status,
        headers,
        body,
    }
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?} (status {})",
                self.body, self.status
            )
        })
    }

    /// Every `Set-Cookie` header, parsed.
    pub fn set_cookies(&self) -> Vec<SetCookie> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| SetCookie::parse(v.to_str().expect("Set-Cookie is ASCII")))
            .collect()
    }

    /// The one `Set-Cookie` for cookie `name`, if any (two would be a bug).
    pub fn cookie(&self, name: &str) -> Option<SetCookie> {
        let mut found: Vec<SetCookie> = self
            .set_cookies()
            .into_iter()
            .filter(|c| c.name == name)
            .collect();
        assert!(found.len() <= 1, "several Set-Cookie for {name}: {found:?}");
        found.pop()
    }

    /// The `sessionid` cookie the response sets, which must be there.
    pub fn session_cookie(&self) -> SetCookie {
        self.cookie("sessionid").unwrap_or_else(|| {
            panic!(
                "expected a Set-Cookie for sessionid, got headers {:?}",
                self.headers
            )
        })
    }

    /// The new session key the response hands out (checked to be a well-formed key).
    pub fn new_key(&self) -> String {
        let cookie = self.session_cookie();
        assert!(is_key(&cookie.value), "not a session key: {cookie:?}");
        cookie.value
    }

    /// Whether `Vary` names `Cookie`.
    pub fn varies_on_cookie(&self) -> bool {
        self.headers.get_all(VARY).iter().any(|v| {
            v.to_str()
                .unwrap_or_default()
                .split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("cookie"))
        })
    }
}

/// Whether `value` looks like a key cloakroom issues: 32 characters of `[a-z0-9]`.
pub fn is_key(value: &str) -> bool {
    value.len() == 32
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// One `Set-Cookie` header, split into its name, value and attributes.
#[derive(Debug, Clone)]
pub struct SetCookie {
    pub raw: String,
    pub name: String,
    pub value: String,
    /// Attribute names in lower case, with their values (`None` for a flag such as `Secure`).
    pub attrs: Vec<(String, Option<String>)>,
}

impl SetCookie {
    /// Splits a header value; panics on a header without `name=value`.
    pub fn parse(raw: &str) -> Self {
        let mut parts = raw.split(';').map(str::trim);
        let (name, value) = parts
            .next()
            .and_then(|p| p.split_once('='))
            .unwrap_or_else(|| panic!("malformed Set-Cookie {raw:?}"));
        let attrs = parts
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim().to_owned())),
                None => (p.to_ascii_lowercase(), None),
            })
            .collect();
        Self {
            raw: raw.to_owned(),
            name: name.to_owned(),
            value: value.to_owned(),
            attrs,
        }
    }

    /// Whether the attribute is there (with or without a value).
    pub fn has(&self, attr: &str) -> bool {
        self.attrs.iter().any(|(k, _)| k.eq_ignore_ascii_case(attr))
    }

    /// The attribute's value.
    pub fn get(&self, attr: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(attr))
            .and_then(|(_, v)| v.as_deref())
    }

    /// The attribute names, lower case, sorted.
    pub fn attr_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.attrs.iter().map(|(k, _)| k.clone()).collect();
        names.sort();
        names
    }

    /// `Max-Age` in seconds.
    pub fn max_age(&self) -> Option<i64> {
        self.get("max-age")
            .map(|v| v.parse().expect("Max-Age is a number"))
    }

    /// `Expires`, parsed from the HTTP date.
    pub fn expires(&self) -> Option<OffsetDateTime> {
        let format = time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        );
        self.get("expires").map(|v| {
            time::PrimitiveDateTime::parse(v, format)
                .unwrap_or_else(|e| panic!("Expires {v:?} is not an HTTP date: {e}"))
                .assume_utc()
        })
    }

    /// Whether this header deletes the cookie: empty value, `Max-Age=0`, `Expires` in 1970.
    pub fn is_deletion(&self) -> bool {
        self.value.is_empty()
            && self.max_age() == Some(0)
            && self.expires().is_some_and(|at| at.year() == 1970)
    }

    /// Asserts that the cookie lives `seconds` from now: `Max-Age` and `Expires` agree.
    pub fn assert_lifetime(&self, seconds: i64) {
        assert_eq!(self.max_age(), Some(seconds), "Max-Age in {}", self.raw);
        let expires = self
            .expires()
            .unwrap_or_else(|| panic!("no Expires in {}", self.raw));
        let expected = OffsetDateTime::now_utc() + time::Duration::seconds(seconds);
        let off = (expires - expected).whole_seconds().abs();
        assert!(
            off <= 5,
            "Expires {expires} is {off}s away from now+{seconds}s: {}",
            self.raw
        );
    }

    /// Asserts a browser-session cookie: neither `Max-Age` nor `Expires`.
    pub fn assert_browser_session(&self) {
        assert!(
            !self.has("max-age") && !self.has("expires"),
            "a browser-session cookie has neither Max-Age nor Expires: {}",
            self.raw
        );
    }
}

/// How many rows the demo's session table holds (live or not).
pub async fn count_rows(db: &SqlitePool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM cloakroom_session")
        .fetch_one(db)
        .await
        .unwrap()
}

/// The stored (data, expire_date) under `key`, if any.
pub async fn row(db: &SqlitePool, key: &str) -> Option<(String, String)> {
    sqlx::query_as("SELECT session_data, expire_date FROM cloakroom_session WHERE session_key = ?1")
        .bind(key)
        .fetch_optional(db)
        .await
        .unwrap()
}

/// The `Cookie` header a browser would send for the session `key`.
pub fn session(key: &str) -> String {
    format!("sessionid={key}")
}

/// A name no other test run uses: `<what>-<pid>-<random>` (the cluster helper names its folder
/// with it).
pub fn unique(what: &str) -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).unwrap();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{what}-{}-{hex}", std::process::id())
}

/// Logs a new visitor in as `username` through the demo's JSON API, returning their session key.
pub async fn logged_in(demo: &Demo, username: &str) -> String {
    send(
        bare()
            .post(demo.url("/api/login"))
            .json(&serde_json::json!({ "username": username })),
    )
    .await
    .new_key()
}

/// The user the demo sees for a request with session `key` (`None`: anonymous).
pub async fn whoami(demo: &Demo, key: &str) -> Option<String> {
    let reply = send(
        bare()
            .get(demo.url("/api/whoami"))
            .header("cookie", session(key)),
    )
    .await;
    reply.json()["username"].as_str().map(str::to_owned)
}
