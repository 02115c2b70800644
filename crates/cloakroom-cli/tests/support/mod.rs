//! Starts the real `cloakroom demo` binary on a free loopback port, in its own temporary
//! folder, and stops it (by pid) when dropped.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running demo server.
pub struct Demo {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    child: Child,
}

/// A fresh empty folder under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).unwrap();
    let suffix: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let dir = std::env::temp_dir().join(format!("cloakroom-{tag}-{suffix}"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Demo {
    /// Starts `cloakroom demo` with `args` in a new temporary folder.
    pub fn start(args: &[&str]) -> Self {
        Self::start_in(&temp_dir("demo"), args)
    }

    /// Starts `cloakroom demo` with `args` in `dir` (the working folder, where the default
    /// SQLite file and the generated secret key go).
    pub fn start_in(dir: &Path, args: &[&str]) -> Self {
        Self::start_with_env(dir, args, &[])
    }

    /// As [`start_in`](Self::start_in), with extra environment variables.
    pub fn start_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
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
                .stderr(Stdio::inherit());
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

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the `cloakroom` binary with `args` in `dir`, returning (exit success, stdout, stderr).
pub fn cli(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the cloakroom binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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
