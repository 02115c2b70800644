//! Store servers of a test's own (a PostgreSQL cluster or a MariaDB data folder in a temp
//! folder, a redis-server), on free loopback ports, that can be killed with SIGKILL and started
//! again on the same port and data folder. They never touch the machine's own services (nor
//! read its configuration files). Used by the HTTP suites (`tests/outages.rs` …) and the `loadtest` example.

#![allow(dead_code)]
// `new()` starts a server process: not something `Default` should do implicitly.
#![allow(clippy::new_without_default)]

// A Redis Cluster of our own (its module docs say more; an outer doc here would make rustdoc
// resolve that module's links from this one).
pub mod redis_cluster;
// A primary, a replica and three sentinels of our own (its module docs say more).
pub mod redis_sentinel;

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A fresh empty folder under the system temp dir, named after `tag`.
pub fn temp_dir(tag: &str) -> PathBuf {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).unwrap();
    let suffix: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let dir = std::env::temp_dir().join(format!("cloakroom-{tag}-{suffix}"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A fresh folder under the system temp dir, removed when dropped.
pub struct Scratch(PathBuf);

impl Scratch {
    /// A new folder named after `tag`.
    pub fn new(tag: &str) -> Self {
        Self(temp_dir(tag))
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A store server of the test's own.
pub trait Server {
    /// Starts the server (again) on its port and data folder, and waits until it answers.
    fn start(&mut self);
    /// Kills the server with SIGKILL (its whole process group, so no child outlives it).
    fn kill(&mut self);
    /// How many client connections the server holds now, not counting the one that asks.
    fn clients(&self) -> usize;
}

fn is_root() -> bool {
    let uid = Command::new("id").arg("-u").output().expect("`id` runs");
    String::from_utf8_lossy(&uid.stdout).trim() == "0"
}

/// Runs a client tool and parses its output as a number, failing loudly if it cannot.
fn count(cmd: &mut Command) -> usize {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .expect("the client tool runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().unwrap_or_else(|_| {
        panic!(
            "{cmd:?} printed {text:?}, not a number: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Runs `cmd` as the `postgres` user when we are root (PostgreSQL refuses to run as root).
fn as_postgres(cmd: &mut Command) -> &mut Command {
    if is_root() {
        let id = |flag: &str| -> u32 {
            let out = Command::new("id")
                .args([flag, "postgres"])
                .output()
                .expect("`id` runs");
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .expect("running as root needs a `postgres` user to run PostgreSQL")
        };
        cmd.gid(id("-g")).uid(id("-u"));
    }
    cmd
}

fn postgres_bin(name: &str) -> String {
    let mut found: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed under /usr/lib/postgresql")
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found
        .pop()
        .unwrap_or_else(|| panic!("no {name} under /usr/lib/postgresql/*/bin"))
        .display()
        .to_string()
}

/// Kills a process group with SIGKILL, reaps its leader, and waits (up to 10 s) until the rest
/// of the group is gone too: a PostgreSQL started again while a killed backend still holds the
/// old shared memory refuses to start.
fn kill_group(child: &mut Child) {
    let group = format!("-{}", child.id());
    let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let alive = Command::new("kill")
            .args(["-0", "--", &group])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !alive {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} on port {port} exited at start: {status}");
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on port {port}");
}

/// Runs `probe` (a client command) every 50 ms until it succeeds: a server that listens may
/// still be recovering. Panics with `never` after 30 s.
fn wait_until_answers(never: &str, mut probe: impl FnMut() -> Command) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answered = probe()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if answered {
            return;
        }
        assert!(Instant::now() < deadline, "{never}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A PostgreSQL cluster of our own in a temp folder.
pub struct Postgres {
    dir: Scratch,
    port: u16,
    child: Option<Child>,
}

impl Postgres {
    pub fn new() -> Self {
        let dir = Scratch::new("pg");
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        for path in [&dir as &Path, &data] {
            let _ = Command::new("chown")
                .arg("postgres:postgres")
                .arg(path)
                .status();
        }
        let out = as_postgres(Command::new(postgres_bin("initdb")).args([
            "--auth=trust",
            "--username=postgres",
            "--no-sync",
            "--encoding=UTF8",
            "-D",
        ]))
        .arg(&data)
        .stdin(Stdio::null())
        .output()
        .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb of the test's own PostgreSQL failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = Self {
            dir,
            port: free_port(),
            child: None,
        };
        pg.start();
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Server for Postgres {
    fn start(&mut self) {
        let log = std::fs::File::create(self.dir.join("log")).unwrap();
        let mut child = as_postgres(Command::new(postgres_bin("postgres")).arg("-D"))
            .arg(self.dir.join("data"))
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.dir.display()))
            .args(["-c", "max_connections=50"])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("postgres starts");
        wait_for_port(self.port, &mut child, "the test's PostgreSQL");
        // Listening is not yet accepting queries while it recovers: wait for a real query.
        let port = self.port.to_string();
        wait_until_answers("the test's PostgreSQL never got ready", || {
            let mut probe = Command::new(postgres_bin("pg_isready"));
            probe.args(["-h", "127.0.0.1", "-p", &port]);
            probe
        });
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(&mut child);
        }
    }

    fn clients(&self) -> usize {
        count(Command::new("psql").arg(self.url()).args([
            "-Atc",
            "SELECT count(*) FROM pg_stat_activity \
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
        ]))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A redis-server of our own, in memory only (a restart loses its data, as Redis without
/// persistence does), or persistent (an append-only file synced at every write).
pub struct Redis {
    dir: Scratch,
    port: u16,
    child: Option<Child>,
    persistent: bool,
    /// `CONFIG` renamed away, as managed Redis services refuse it.
    no_config: bool,
}

impl Redis {
    pub fn new() -> Self {
        let mut redis = Self {
            dir: Scratch::new("redis"),
            port: free_port(),
            child: None,
            persistent: false,
            no_config: false,
        };
        redis.start();
        redis
    }

    /// A server that refuses `CONFIG` (renamed away), as a managed Redis does: the app cannot
    /// turn on keyspace notifications itself.
    pub fn without_config() -> Self {
        let mut redis = Self {
            dir: Scratch::new("redis"),
            port: free_port(),
            child: None,
            persistent: false,
            no_config: true,
        };
        redis.start();
        redis
    }

    /// A server whose data survives a SIGKILL and restart: a cache that was only unreachable
    /// for a while comes back with the copies it held.
    pub fn persistent() -> Self {
        let mut redis = Self {
            dir: Scratch::new("redis"),
            port: free_port(),
            child: None,
            persistent: true,
            no_config: false,
        };
        redis.start();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Server for Redis {
    fn start(&mut self) {
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--daemonize", "no"])
            .args(if self.persistent {
                ["--appendonly", "yes", "--appendfsync", "always"]
            } else {
                ["--appendonly", "no", "--appendfsync", "everysec"]
            })
            .args(if self.no_config {
                &["--rename-command", "CONFIG", ""][..]
            } else {
                &[]
            })
            .arg("--dir")
            .arg(&*self.dir)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (is it installed?)");
        wait_for_port(self.port, &mut child, "the test's redis-server");
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(&mut child);
        }
    }

    fn clients(&self) -> usize {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "INFO", "clients"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let connected: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("connected_clients:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no connected_clients in {text:?}"));
        connected - 1
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A MariaDB server of our own: `mariadb-install-db` into a temp folder (root without a
/// password, loopback only), a database `test`, and its socket and pid file in that folder.
/// `--no-defaults` everywhere, so the machine's `my.cnf` (its data folder, port, socket) is
/// never read.
pub struct Mariadb {
    dir: Scratch,
    port: u16,
    child: Option<Child>,
}

impl Mariadb {
    pub fn new() -> Self {
        let dir = Scratch::new("mariadb");
        let mut install = Command::new("mariadb-install-db");
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .args([
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ])
            .args(Self::TUNING)
            // The bootstrap ends with a clean shutdown, which writes everything out anyway.
            .arg("--innodb-flush-log-at-trx-commit=0");
        if is_root() {
            install.arg("--user=root");
        }
        let out = install
            .stdin(Stdio::null())
            .output()
            .expect("mariadb-install-db runs (is mariadb-server installed?)");
        assert!(
            out.status.success(),
            "mariadb-install-db for the test's own MariaDB failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut db = Self {
            dir,
            port: free_port(),
            child: None,
        };
        db.start();
        let out = db
            .client()
            .args(["-e", "CREATE DATABASE IF NOT EXISTS test"])
            .output()
            .expect("the mariadb client runs");
        assert!(
            out.status.success(),
            "CREATE DATABASE test failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        db
    }

    /// Small InnoDB files, so the data folder is made and recovered quickly; commits are
    /// flushed to disk as by default, so what survives a SIGKILL is what MariaDB promises.
    const TUNING: [&'static str; 2] = [
        "--innodb-buffer-pool-size=32M",
        "--innodb-log-file-size=16M",
    ];

    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/test", self.port)
    }

    fn client(&self) -> Command {
        let mut cmd = Command::new("mariadb");
        cmd.args(["--no-defaults", "-h", "127.0.0.1", "-u", "root", "-P"])
            .arg(self.port.to_string())
            .stdin(Stdio::null());
        cmd
    }
}

impl Server for Mariadb {
    fn start(&mut self) {
        let log = std::fs::File::create(self.dir.join("log")).unwrap();
        let mut cmd = Command::new("mariadbd");
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", self.dir.join("data").display()))
            .arg(format!("--socket={}", self.dir.join("sock").display()))
            .arg(format!("--pid-file={}", self.dir.join("pid").display()))
            .arg(format!("--port={}", self.port))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--max-connections=50",
            ])
            .args(Self::TUNING);
        if is_root() {
            cmd.arg("--user=root");
        }
        let mut child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("mariadbd starts (is mariadb-server installed? it lives in /usr/sbin)");
        wait_for_port(self.port, &mut child, "the test's MariaDB");
        // It listens once crash recovery is done; a real query says it answers.
        let never = format!(
            "the test's MariaDB never answered: see {}",
            self.dir.join("log").display()
        );
        wait_until_answers(&never, || {
            let mut probe = self.client();
            probe.args(["-e", "SELECT 1"]);
            probe
        });
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(&mut child);
        }
    }

    fn clients(&self) -> usize {
        count(self.client().args([
            "-N",
            "-e",
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
             WHERE COMMAND <> 'Daemon' AND ID <> CONNECTION_ID()",
        ]))
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A name no other test (or test process) uses: `what`, this process's id and 48 random bits.
pub fn unique(what: &str) -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{what}-{}-{hex}", std::process::id())
}
