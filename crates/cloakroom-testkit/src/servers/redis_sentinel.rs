//! Redis Sentinel of our own for tests: a primary and one replica (`redis-server`) and three
//! sentinels (`redis-sentinel`, Debian's package of the same binary), each a child process on
//! a free loopback port, in memory only. It never touches the machine's Redis.
//!
//! The sentinels declare the primary down after [`DOWN_AFTER_MS`] without an answer and may
//! retry a failover after [`FAILOVER_TIMEOUT_MS`], so a test that kills the primary sees the
//! replica promoted within a few seconds rather than Sentinel's default 30 s + 3 min.
//!
//! Dropping a [`RedisSentinel`] kills its processes by pid. The one a test binary shares
//! ([`shared`]) lives in a static, which Rust never drops, so a small watchdog process kills
//! those by pid once the test process has exited.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use super::redis_cluster::{cli, wait_until};

/// The name the sentinels know the primary by (`sentinelServiceName` in the URL).
pub const SERVICE: &str = "cloakroom";
/// Sentinel's `down-after-milliseconds`: how long the primary may not answer before a
/// sentinel thinks it down.
pub const DOWN_AFTER_MS: u64 = 1_000;
/// Sentinel's `failover-timeout`: how long before a stalled failover is tried again.
pub const FAILOVER_TIMEOUT_MS: u64 = 5_000;
const SENTINELS: usize = 3;
/// Two sentinels of three must agree the primary is down.
const QUORUM: usize = 2;

/// A running primary, replica and three sentinels.
pub struct RedisSentinel {
    dir: PathBuf,
    /// The data servers' ports: the primary's first, as started.
    data_ports: Vec<u16>,
    sentinel_ports: Vec<u16>,
    /// By port, the data servers still running (a killed one is removed).
    data: Vec<(u16, Child)>,
    sentinels: Vec<Child>,
    watchdog: Option<Child>,
    /// The data servers' password and the sentinels' own, when they ask for one.
    passwords: Option<(String, String)>,
}

impl RedisSentinel {
    /// Starts the servers and waits until the replica is in sync and every sentinel knows the
    /// replica and the two other sentinels (so a failover can be authorized at once).
    ///
    /// # Panics
    /// When `redis-server`/`redis-sentinel`/`redis-cli` are missing or the setup does not
    /// form: a test that needs it must fail loudly.
    pub fn start() -> Self {
        Self::start_secured(None)
    }

    /// As [`start`](Self::start), with `requirepass data` on the data servers (and
    /// `masterauth`, whichever is primary) and `requirepass sentinel` on the sentinels, which
    /// know the data servers' password (`sentinel auth-pass`). [`url`](Self::url) carries both.
    pub fn start_with_passwords(data: &str, sentinel: &str) -> Self {
        Self::start_secured(Some((data.to_owned(), sentinel.to_owned())))
    }

    fn start_secured(passwords: Option<(String, String)>) -> Self {
        let mut last_error = String::new();
        // A port found free can be taken before the server binds it: try again elsewhere.
        for _ in 0..5 {
            let dir = std::env::temp_dir().join(super::unique("cloakroom-sentinel"));
            std::fs::create_dir_all(&dir).unwrap();
            match Self::start_in(&dir, passwords.clone()) {
                Ok(setup) => return setup,
                Err(e) => last_error = e,
            }
        }
        panic!("could not start Redis Sentinel for the tests: {last_error}");
    }

    fn start_in(dir: &Path, passwords: Option<(String, String)>) -> Result<Self, String> {
        let mut ports = Vec::new();
        while ports.len() < 2 + SENTINELS {
            let port = super::free_port();
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
        let mut setup = Self {
            dir: dir.to_owned(),
            data_ports: ports[..2].to_vec(),
            sentinel_ports: ports[2..].to_vec(),
            data: Vec::new(),
            sentinels: Vec::new(),
            watchdog: None,
            passwords,
        };
        let (primary, replica) = (ports[0], ports[1]);
        setup
            .data
            .push((primary, setup.data_server(primary, None)?));
        setup
            .data
            .push((replica, setup.data_server(replica, Some(primary))?));
        for &port in &ports[..2] {
            wait_until(Duration::from_secs(10), || {
                Ok(setup
                    .ask(port, &["ping"])
                    .is_ok_and(|out| out.trim() == "PONG"))
            })?;
        }
        // In sync before the sentinels start: a sentinel lists the replicas from the primary's
        // INFO, which it asks for every 10 s; a replica still connecting at its first look
        // would be missed for that long.
        wait_until(Duration::from_secs(30), || {
            Ok(setup
                .ask(replica, &["info", "replication"])
                .is_ok_and(|out| out.contains("master_link_status:up")))
        })
        .map_err(|e| format!("the replica never synced with the primary: {e}"))?;
        for &port in &setup.sentinel_ports.clone() {
            let sentinel = setup.sentinel(port, primary)?;
            setup.sentinels.push(sentinel);
        }
        setup.watchdog = Some(setup.watchdog()?);
        for &port in &setup.sentinel_ports {
            wait_until(Duration::from_secs(10), || {
                Ok(setup
                    .ask(port, &["ping"])
                    .is_ok_and(|out| out.trim() == "PONG"))
            })?;
        }
        // Sentinels find the replica through the primary's INFO and each other through hello
        // messages on the primary, every 2 s: until then a failover could not be agreed on.
        for &port in &setup.sentinel_ports {
            wait_until(Duration::from_secs(30), || {
                let master = setup.ask(port, &["sentinel", "master", SERVICE])?;
                let field = |name: &str| -> Option<usize> {
                    let mut lines = master.lines();
                    lines.find(|l| l.trim() == name)?;
                    lines.next()?.trim().parse().ok()
                };
                Ok(field("num-other-sentinels") == Some(SENTINELS - 1)
                    && field("num-slaves") == Some(1))
            })
            .map_err(|e| format!("sentinel {port} never knew the others and the replica: {e}"))?;
        }
        Ok(setup)
    }

    /// A `redis-server` on `port`, a replica of `primary` when given.
    fn data_server(&self, port: u16, primary: Option<u16>) -> Result<Child, String> {
        let log =
            File::create(self.dir.join(format!("redis-{port}.log"))).map_err(|e| e.to_string())?;
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            // The first sync at once (Redis 7 waits 5 s for more replicas by default).
            .args([
                "--repl-diskless-sync",
                "yes",
                "--repl-diskless-sync-delay",
                "0",
            ])
            .arg("--dir")
            .arg(self.dir.join(format!("data-{port}")));
        std::fs::create_dir_all(self.dir.join(format!("data-{port}")))
            .map_err(|e| e.to_string())?;
        if let Some(primary) = primary {
            cmd.args(["--replicaof", "127.0.0.1", &primary.to_string()]);
        }
        if let Some((data, _)) = &self.passwords {
            // `masterauth` on both: after a failover the primary is the replica.
            cmd.args(["--requirepass", data, "--masterauth", data]);
        }
        spawn(&mut cmd, log, "redis-server")
    }

    /// A sentinel on `port` watching `primary`, its configuration file in the folder (a
    /// sentinel rewrites it as it learns the topology).
    fn sentinel(&self, port: u16, primary: u16) -> Result<Child, String> {
        let conf = self.dir.join(format!("sentinel-{port}.conf"));
        let text = format!(
            "port {port}\n\
             bind 127.0.0.1\n\
             daemonize no\n\
             dir {dir}\n\
             sentinel monitor {SERVICE} 127.0.0.1 {primary} {QUORUM}\n\
             sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n\
             sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n\
             sentinel parallel-syncs {SERVICE} 1\n",
            dir = self.dir.display(),
        );
        let text = match &self.passwords {
            // The sentinels authenticate to each other with their own `requirepass`.
            Some((data, sentinel)) => {
                format!("{text}requirepass {sentinel}\nsentinel auth-pass {SERVICE} {data}\n")
            }
            None => text,
        };
        std::fs::write(&conf, text).map_err(|e| e.to_string())?;
        let log = File::create(self.dir.join(format!("sentinel-{port}.log")))
            .map_err(|e| e.to_string())?;
        spawn(
            Command::new("redis-sentinel").arg(&conf),
            log,
            "redis-sentinel (Debian's `redis-sentinel` package)",
        )
    }

    /// The `cache_url` of the setup: the three sentinels and the service name, database 0,
    /// and the passwords when the servers have them (the data servers' as the URL's password,
    /// the sentinels' as `sentinelPassword`).
    pub fn url(&self) -> String {
        let sentinels: Vec<String> = self
            .sentinel_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let (auth, sentinel_auth) = match &self.passwords {
            Some((data, sentinel)) => {
                (format!(":{data}@"), format!("&sentinelPassword={sentinel}"))
            }
            None => (String::new(), String::new()),
        };
        format!(
            "redis-sentinel://{auth}{}/0?sentinelServiceName={SERVICE}{sentinel_auth}",
            sentinels.join(",")
        )
    }

    /// The port of the primary as the sentinels see it now (the first sentinel that answers).
    pub fn primary_port(&self) -> Option<u16> {
        self.sentinel_ports.iter().find_map(|&port| {
            let out = self
                .ask(port, &["sentinel", "get-master-addr-by-name", SERVICE])
                .ok()?;
            out.lines().nth(1)?.trim().parse().ok()
        })
    }

    /// The sentinels' ports.
    pub fn sentinel_ports(&self) -> &[u16] {
        &self.sentinel_ports
    }

    /// The data servers' ports, the first started as the primary.
    pub fn data_ports(&self) -> &[u16] {
        &self.data_ports
    }

    /// Waits until the replica has received every write the primary has (their replication
    /// offsets agree), up to 10 s; whether it did. What was written before is on both.
    pub fn wait_replicated(&self) -> bool {
        let Some(primary) = self.primary_port() else {
            return false;
        };
        let offset = |port: u16, field: &str| -> Option<u64> {
            let info = self.ask(port, &["info", "replication"]).ok()?;
            info.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().parse().ok())
        };
        let replicas: Vec<u16> = self
            .data
            .iter()
            .map(|(p, _)| *p)
            .filter(|&p| p != primary)
            .collect();
        wait_until(Duration::from_secs(10), || {
            let Some(target) = offset(primary, "master_repl_offset:") else {
                return Ok(false);
            };
            Ok(replicas
                .iter()
                .all(|&r| offset(r, "slave_repl_offset:").is_some_and(|o| o >= target)))
        })
        .is_ok()
    }

    /// Kills the current primary with SIGKILL, by pid; its port.
    ///
    /// # Panics
    /// When no sentinel names a primary this setup runs.
    pub fn kill_primary(&mut self) -> u16 {
        let port = self.primary_port().expect("a sentinel names the primary");
        let i = self
            .data
            .iter()
            .position(|(p, _)| *p == port)
            .unwrap_or_else(|| panic!("the primary {port} is not one of ours (or already dead)"));
        let (_, mut child) = self.data.remove(i);
        let _ = child.kill();
        let _ = child.wait();
        port
    }

    /// Stops the current primary with SIGSTOP, by pid, without closing anything: its port
    /// still accepts connections and its clients' connections stay open, but nothing is
    /// answered, as when a network partition cuts it off. Its port. Dropping the setup still
    /// kills it.
    ///
    /// # Panics
    /// When no sentinel names a primary this setup runs.
    pub fn freeze_primary(&mut self) -> u16 {
        let port = self.primary_port().expect("a sentinel names the primary");
        let (_, child) = self
            .data
            .iter()
            .find(|(p, _)| *p == port)
            .unwrap_or_else(|| panic!("the primary {port} is not one of ours (or already dead)"));
        let stopped = Command::new("kill")
            .args(["-STOP", &child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(stopped, "kill -STOP {} failed", child.id());
        port
    }

    /// Waits up to `limit` until every sentinel names a primary other than `old`; the new
    /// primary's port.
    pub fn wait_promoted(&self, old: u16, limit: Duration) -> Option<u16> {
        let mut promoted = None;
        wait_until(limit, || {
            let ports: Vec<Option<u16>> = self
                .sentinel_ports
                .iter()
                .map(|&port| {
                    let out = self
                        .ask(port, &["sentinel", "get-master-addr-by-name", SERVICE])
                        .ok()?;
                    out.lines().nth(1)?.trim().parse().ok()
                })
                .collect();
            promoted = ports[0].filter(|&p| p != old);
            Ok(promoted.is_some() && ports.iter().all(|&p| p == promoted))
        })
        .ok()?;
        promoted
    }

    /// Runs `redis-cli` against one of the servers (a data server or a sentinel), with its
    /// password when it has one; its output.
    pub fn cli(&self, port: u16, args: &[&str]) -> Result<String, String> {
        self.ask(port, args)
    }

    fn ask(&self, port: u16, args: &[&str]) -> Result<String, String> {
        let Some((data, sentinel)) = &self.passwords else {
            return cli(port, args);
        };
        let password = if self.sentinel_ports.contains(&port) {
            sentinel
        } else {
            data
        };
        let with: Vec<&str> = ["--no-auth-warning", "-a", password.as_str()]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        cli(port, &with)
    }

    /// Kills the processes by pid once this test process is gone.
    fn watchdog(&self) -> Result<Child, String> {
        let pids: Vec<String> = self
            .data
            .iter()
            .map(|(_, c)| c)
            .chain(&self.sentinels)
            .map(|c| c.id().to_string())
            .collect();
        let script = format!(
            "while kill -0 {me} 2>/dev/null; do sleep 1; done; kill -9 {pids} 2>/dev/null; rm -rf '{dir}'",
            me = std::process::id(),
            pids = pids.join(" "),
            dir = self.dir.display(),
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the watchdog: {e}"))
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        for child in self
            .data
            .iter_mut()
            .map(|(_, c)| c)
            .chain(&mut self.sentinels)
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The setup this test binary shares, started on first use. Tests that kill a server start
/// their own.
pub fn shared() -> &'static RedisSentinel {
    static SETUP: OnceLock<RedisSentinel> = OnceLock::new();
    SETUP.get_or_init(RedisSentinel::start)
}

fn spawn(cmd: &mut Command, log: File, what: &str) -> Result<Child, String> {
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot run {what} (is it installed?): {e}"))
}
