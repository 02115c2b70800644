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
/// Redis Sentinel of the test kit (a primary, a replica and three sentinels of our own).
#[allow(unused_imports)]
pub use cloakroom_testkit::servers::redis_sentinel;

/// The client side of the test kit's HTTP suite: visitors, replies, parsed `Set-Cookie`s.
#[allow(unused_imports)]
pub use cloakroom_testkit::http::{bare, is_key, send, session, visitor, Reply, SetCookie};

// The temp folders and ports of servers.rs (which stands alone for the loadtest example); not
// every test binary uses all three.
#[allow(unused_imports)]
pub use servers::{free_port, temp_dir, Scratch};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::SqlitePool;

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
