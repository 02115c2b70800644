//! A Redis Cluster of our own for tests: three masters on free loopback ports, each a
//! `redis-server` child process, joined with `redis-cli --cluster create`. It never touches the
//! machine's Redis.
//!
//! Dropping a [`RedisCluster`] kills its servers by PID. The one a test binary shares
//! ([`shared`]) lives in a static, which Rust never drops, so a small watchdog process kills
//! those servers by PID once the test process has exited.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The ports are drawn from here; a node also uses its port + 10000 for the cluster bus.
const PORTS: std::ops::Range<u16> = 20_000..30_000;
const NODES: usize = 3;

/// A running cluster of three masters.
pub struct RedisCluster {
    dir: PathBuf,
    ports: Vec<u16>,
    servers: Vec<Child>,
    watchdog: Option<Child>,
}

impl RedisCluster {
    /// Starts a cluster and waits until it reports `cluster_state:ok`.
    ///
    /// # Panics
    /// When `redis-server`/`redis-cli` are missing or the cluster does not form: a test that
    /// needs it must fail loudly.
    pub fn start() -> Self {
        let mut last_error = String::new();
        // A port found free can be taken before the server binds it: try again elsewhere.
        for _ in 0..10 {
            let dir = std::env::temp_dir().join(super::unique("cloakroom-cluster"));
            std::fs::create_dir_all(&dir).unwrap();
            match Self::start_on(&dir, &free_ports()) {
                Ok(cluster) => return cluster,
                Err(e) => last_error = e,
            }
        }
        panic!("could not start a Redis Cluster for the tests: {last_error}");
    }

    /// Starts the nodes in `dir`; on failure the partly started cluster is dropped (killed).
    fn start_on(dir: &Path, ports: &[u16]) -> Result<Self, String> {
        let mut cluster = Self {
            dir: dir.to_owned(),
            ports: ports.to_vec(),
            servers: Vec::new(),
            watchdog: None,
        };
        for &port in ports {
            let log =
                File::create(dir.join(format!("redis-{port}.log"))).map_err(|e| e.to_string())?;
            let server = Command::new("redis-server")
                .args(["--port", &port.to_string()])
                .args(["--cluster-enabled", "yes"])
                .arg("--cluster-config-file")
                .arg(dir.join(format!("nodes-{port}.conf")))
                .arg("--dir")
                .arg(dir)
                .args(["--save", "", "--appendonly", "no"])
                .args(["--bind", "127.0.0.1", "--daemonize", "no"])
                .stdin(Stdio::null())
                .stdout(log.try_clone().map_err(|e| e.to_string())?)
                .stderr(log)
                .spawn()
                .map_err(|e| format!("cannot run redis-server (is it installed?): {e}"))?;
            cluster.servers.push(server);
        }
        cluster.watchdog = Some(watchdog(&cluster)?);
        for (i, &port) in ports.iter().enumerate() {
            wait_until(Duration::from_secs(10), || {
                if let Ok(Some(status)) = cluster.servers[i].try_wait() {
                    return Err(format!("redis-server on port {port} exited: {status}"));
                }
                Ok(cli(port, &["ping"]).is_ok_and(|out| out.trim() == "PONG"))
            })?;
        }
        let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run redis-cli: {e}"))?;
        if !created.status.success() {
            return Err(format!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&created.stdout),
                String::from_utf8_lossy(&created.stderr)
            ));
        }
        for &port in ports {
            wait_until(Duration::from_secs(30), || {
                Ok(cli(port, &["cluster", "info"])
                    .is_ok_and(|out| out.contains("cluster_state:ok")))
            })?;
        }
        Ok(cluster)
    }

    /// The `cache_url` of the whole cluster.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis-cluster://{}", nodes.join(","))
    }

    /// The nodes' ports.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// The keys one node holds that match `pattern`.
    pub fn keys_on(&self, port: u16, pattern: &str) -> Vec<String> {
        cli(port, &["--scan", "--pattern", pattern])
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for server in &mut self.servers {
            let _ = server.kill();
            let _ = server.wait();
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The cluster this test binary shares, started on first use.
pub fn shared() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(RedisCluster::start)
}

/// Kills the servers by PID (and removes their folder) once this test process is gone.
fn watchdog(cluster: &RedisCluster) -> Result<Child, String> {
    let pids: Vec<String> = cluster.servers.iter().map(|s| s.id().to_string()).collect();
    let script = format!(
        "while kill -0 {me} 2>/dev/null; do sleep 1; done; kill -9 {pids} 2>/dev/null; rm -rf '{dir}'",
        me = std::process::id(),
        pids = pids.join(" "),
        dir = cluster.dir.display(),
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the watchdog: {e}"))
}

/// Three ports in [`PORTS`] whose cluster-bus ports are free too.
fn free_ports() -> Vec<u16> {
    let mut ports = Vec::new();
    while ports.len() < NODES {
        let mut bytes = [0u8; 2];
        getrandom::fill(&mut bytes).unwrap();
        let port = PORTS.start + u16::from_le_bytes(bytes) % (PORTS.end - PORTS.start);
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        if !ports.contains(&port) && free(port) && free(port + 10_000) {
            ports.push(port);
        }
    }
    ports
}

/// Runs `redis-cli` against the loopback server on `port`; its output, or its error text.
pub(super) fn cli(port: u16, args: &[&str]) -> Result<String, String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run redis-cli: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Polls `ready` every 100 ms until it says yes (`Ok(true)`), fails (`Err`) or `limit` passes.
pub(super) fn wait_until(
    limit: Duration,
    mut ready: impl FnMut() -> Result<bool, String>,
) -> Result<(), String> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ready()? {
            return Ok(());
        }
        sleep(Duration::from_millis(100));
    }
    Err(format!("not ready after {limit:?}"))
}
