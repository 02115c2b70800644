//! The benchmark run: starts each server as its own process pinned to one core, drives it with
//! wrk pinned to another, interleaves the rounds (A B C A B C …) and reports medians.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::http;
use crate::servers::{self, Spec, SERVERS};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The benchmark's options.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Store families to compare (the bare servers always run as the limit).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "memory,sqlite,postgres,redis,cookie"
    )]
    pub engines: Vec<String>,
    /// Only these servers (names as in the tables); default: all of the chosen engines.
    #[arg(long, value_delimiter = ',')]
    pub servers: Vec<String>,
    /// Rounds; each runs every server once, in turn. Medians are reported.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Length of one timed wrk run (whole seconds).
    #[arg(long, default_value = "5s", value_parser = parse_secs)]
    pub duration: u64,
    /// Open connections of the load generator.
    #[arg(long, default_value_t = 64)]
    pub connections: u32,
    /// Returning visitors: how many session cookies are made before the timed runs.
    #[arg(long, default_value_t = 1000)]
    pub pool: usize,
    /// Which loads to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "visits-returning,read-returning,visits-new"
    )]
    pub workloads: Vec<String>,
    /// Which parts of the benchmark to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "throughput,readonly,scale,memory"
    )]
    pub phases: Vec<String>,
    /// The session count of the "many stored sessions" and memory measurements.
    #[arg(long, default_value_t = 1_000_000)]
    pub big: u64,
    /// The core the server runs on.
    #[arg(long, default_value_t = 0)]
    pub server_cpu: usize,
    /// The core the load generator runs on.
    #[arg(long, default_value_t = 1)]
    pub load_cpu: usize,
    /// Also write the report (Markdown) to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also run cloakroom's servers from this binary (a build of an earlier commit), named
    /// `NAME@base`, in the same interleaved rounds: the before/after comparison of a change.
    #[arg(long)]
    pub baseline_exe: Option<PathBuf>,
    /// The latency phase: visitors holding long-polls while 1,000 others send fast requests.
    #[arg(long, default_value_t = 500)]
    pub long_polls: usize,
    /// The latency phase: how long the long-polls last, and the slow handler that a fast
    /// request of the same visitor runs behind (milliseconds).
    #[arg(long, default_value_t = 10_000)]
    pub slow_ms: u64,
}

fn parse_secs(s: &str) -> std::result::Result<u64, String> {
    let n = s.strip_suffix('s').unwrap_or(s);
    n.parse::<u64>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("`{s}` is not a whole number of seconds such as 5s"))
}

/// One load: a route, with or without returning visitors' cookies.
#[derive(Debug, Clone, Copy)]
struct Workload {
    name: &'static str,
    path: &'static str,
    returning: bool,
}

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "visits-returning",
        path: "/visits",
        returning: true,
    },
    Workload {
        name: "read-returning",
        path: "/read",
        returning: true,
    },
    Workload {
        name: "visits-new",
        path: "/visits",
        returning: false,
    },
    Workload {
        name: "read-new",
        path: "/read",
        returning: false,
    },
];

/// One timed run's figures.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    cpu_us: f64,
    store_cpu_us: f64,
    errors: u64,
}

/// Where a run keeps its files and names its tables.
pub(crate) struct Env {
    pub(crate) args: RunArgs,
    exe: PathBuf,
    dir: PathBuf,
    tag: String,
    clk_tck: f64,
    report: String,
    serial: u32,
}

/// Runs the benchmark and prints the report.
pub fn run(args: RunArgs) -> Result {
    for tool in ["wrk", "taskset"] {
        if Command::new("which")
            .arg(tool)
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            return Err(
                format!("`{tool}` is not installed (apt-get install wrk util-linux)").into(),
            );
        }
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let tag = format!("bench_{}_{stamp}", std::process::id());
    let dir = std::env::temp_dir().join(&tag);
    std::fs::create_dir_all(&dir)?;
    write_scripts(&dir)?;
    let clk_tck = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0);
    let mut env = Env {
        exe: std::env::current_exe()?,
        args,
        dir,
        tag,
        clk_tck,
        report: String::new(),
        serial: 0,
    };
    env.header();
    flush_redis();
    let phases = env.args.phases.clone();
    let result = (|| -> Result {
        if phases.iter().any(|p| p == "throughput") {
            env.throughput()?;
        }
        if phases.iter().any(|p| p == "readonly") {
            env.readonly()?;
        }
        if phases.iter().any(|p| p == "scale") {
            env.scale()?;
        }
        if phases.iter().any(|p| p == "memory") {
            env.memory()?;
        }
        if phases.iter().any(|p| p == "latency") {
            env.latency()?;
        }
        Ok(())
    })();
    env.cleanup();
    if let Some(out) = &env.args.out {
        std::fs::write(out, &env.report)?;
    }
    result
}

/// A server process; killed when dropped.
pub(crate) struct Server {
    pub(crate) name: &'static str,
    child: Child,
    pub(crate) port: u16,
    ready: serde_json::Value,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How to start a server.
#[derive(Default, Clone, Copy)]
pub(crate) struct Start {
    prefill: u64,
    count_writes: bool,
    /// Keep its files and tables apart from another copy running at the same time.
    variant: Option<&'static str>,
}

impl Env {
    pub(crate) fn out(&mut self, text: &str) {
        print!("{text}");
        self.report.push_str(text);
    }

    fn header(&mut self) {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let cores = std::thread::available_parallelism().map_or(0, usize::from);
        let a = &self.args;
        let text = format!(
            "# cloakroom benchmark\n\nMachine: {cpu}, {cores} cores. Server on core {}, wrk on core {} \
             (`wrk -t1 -c{} -d{}s`), {} rounds interleaved, medians. Returning visitors: a pool of {} \
             session cookies made before the timed runs, reused round-robin.\n\n",
            a.server_cpu, a.load_cpu, a.connections, a.duration, a.rounds, a.pool
        );
        self.out(&text);
    }

    pub(crate) fn selected(&self) -> Vec<Spec> {
        let chosen: Vec<Spec> = SERVERS
            .iter()
            .copied()
            .filter(|s| {
                if self.args.servers.is_empty() {
                    s.engine == "bare" || self.args.engines.iter().any(|e| e == s.engine)
                } else {
                    self.args.servers.iter().any(|n| n == s.name)
                }
            })
            .collect();
        if self.args.baseline_exe.is_none() {
            return chosen;
        }
        // Each of ours again, from the baseline binary, right after itself.
        let mut with_base = Vec::new();
        for spec in chosen {
            with_base.push(spec);
            if spec.ours {
                let name: &'static str = Box::leak(format!("{}@base", spec.name).into_boxed_str());
                with_base.push(Spec { name, ..spec });
            }
        }
        with_base
    }

    pub(crate) fn start(&mut self, spec: Spec, how: Start) -> Result<Server> {
        self.serial += 1;
        let port = free_port()?;
        let variant = how.variant.unwrap_or("main");
        let dir = self.dir.join(format!("{}-{variant}", spec.name));
        std::fs::create_dir_all(&dir)?;
        // A fresh SQLite file per start; PostgreSQL tables and Redis keys are per run.
        for f in std::fs::read_dir(&dir)? {
            std::fs::remove_file(f?.path())?;
        }
        let tag = format!("{}_{variant}", self.tag);
        let redis_db = if how.variant.is_some() { "12" } else { "11" };
        let log = std::fs::File::create(dir.join("server.log"))?;
        // A baseline server runs the same server of the baseline binary.
        let (exe, server) = match spec.name.strip_suffix("@base") {
            Some(name) => (self.args.baseline_exe.clone().unwrap_or_default(), name),
            None => (self.exe.clone(), spec.name),
        };
        let mut cmd = Command::new("taskset");
        cmd.arg("-c")
            .arg(self.args.server_cpu.to_string())
            .arg(&exe)
            .args(["serve", "--server", server, "--port", &port.to_string()])
            .arg("--dir")
            .arg(&dir)
            .args([
                "--tag",
                &tag,
                "--prefill",
                &how.prefill.to_string(),
                "--redis-db",
                redis_db,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        if how.count_writes {
            cmd.arg("--count-writes");
        }
        let mut child = cmd.spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout)
                .lines()
                .map_while(std::result::Result::ok)
            {
                if let Some(json) = line.strip_prefix("READY ") {
                    let _ = tx.send(json.to_owned());
                }
            }
        });
        let mut server = Server {
            name: spec.name,
            child,
            port,
            ready: serde_json::Value::Null,
        };
        let deadline = Instant::now() + Duration::from_secs(900);
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(json) => {
                    server.ready = serde_json::from_str(&json)?;
                    return Ok(server);
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if let Some(status) = server.child.try_wait()? {
                        let log =
                            std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
                        return Err(format!(
                            "{} exited ({status}): {}",
                            spec.name,
                            last_lines(&log, 5)
                        )
                        .into());
                    }
                }
                Err(_) => return Err(format!("{} did not start", spec.name).into()),
            }
        }
    }

    /// Makes `n` returning visitors: each request without a cookie gets a new session.
    fn cookie_pool(&self, server: &Server, n: usize) -> Result<PathBuf> {
        let mut cookies = String::new();
        for _ in 0..n {
            let reply = http::get(server.port, "/visits", None)?;
            let pair = reply
                .cookie_pair()
                .filter(|_| reply.status == 200)
                .ok_or_else(|| {
                    format!(
                        "{}: no session cookie from /visits ({})",
                        server.name, reply.status
                    )
                })?;
            cookies.push_str(&pair);
            cookies.push('\n');
        }
        let path = self
            .dir
            .join(format!("{}-{}.cookies", server.name, server.port));
        std::fs::write(&path, cookies)?;
        Ok(path)
    }

    fn wrk(
        &self,
        server: &Server,
        w: Workload,
        cookies: &Path,
        secs: u64,
        store_comm: &[&str],
    ) -> Result<Sample> {
        let script = self.dir.join(if w.returning {
            "returning.lua"
        } else {
            "new.lua"
        });
        let cpu_before = proc_cpu_ticks(server.child.id());
        let store_before = comm_cpu_ticks(store_comm);
        let output = Command::new("taskset")
            .arg("-c")
            .arg(self.args.load_cpu.to_string())
            .args([
                "wrk",
                "-t1",
                &format!("-c{}", self.args.connections),
                &format!("-d{secs}s"),
                "--timeout",
                "10s",
                "-s",
            ])
            .arg(&script)
            .arg(format!("http://127.0.0.1:{}{}", server.port, w.path))
            .arg("--")
            .arg(cookies)
            .output()?;
        let cpu_after = proc_cpu_ticks(server.child.id());
        let store_after = comm_cpu_ticks(store_comm);
        let text = String::from_utf8_lossy(&output.stdout);
        let json = text
            .lines()
            .find_map(|l| l.strip_prefix("WRK "))
            .ok_or_else(|| {
                format!(
                    "wrk said: {text}{}",
                    String::from_utf8_lossy(&output.stderr)
                )
            })?;
        let v: serde_json::Value = serde_json::from_str(json)?;
        let num = |k: &str| v[k].as_f64().unwrap_or(0.0);
        let requests = num("requests").max(1.0);
        let tick_us = 1e6 / self.clk_tck;
        Ok(Sample {
            rps: requests / (num("duration_us") / 1e6),
            p50_us: num("p50_us"),
            p99_us: num("p99_us"),
            cpu_us: (cpu_after - cpu_before) * tick_us / requests,
            store_cpu_us: (store_after - store_before) * tick_us / requests,
            errors: ["connect", "read", "write", "status", "timeout"]
                .iter()
                .map(|k| num(k) as u64)
                .sum(),
        })
    }

    fn workloads(&self) -> Vec<Workload> {
        WORKLOADS
            .iter()
            .copied()
            .filter(|w| self.args.workloads.iter().any(|n| n == w.name))
            .collect()
    }

    /// The main comparison: every server, every workload, interleaved rounds.
    fn throughput(&mut self) -> Result {
        let specs = self.selected();
        let workloads = self.workloads();
        let mut samples: BTreeMap<(&'static str, &'static str), Vec<Sample>> = BTreeMap::new();
        let mut failed: BTreeMap<&'static str, String> = BTreeMap::new();
        let empty = self.dir.join("empty.cookies");
        std::fs::write(&empty, "")?;
        for round in 1..=self.args.rounds {
            for &spec in &specs {
                if failed.contains_key(spec.name) {
                    continue;
                }
                eprint!("round {round}/{}: {:<28}", self.args.rounds, spec.name);
                let measured = (|| -> Result<Vec<Sample>> {
                    let server = self.start(spec, Start::default())?;
                    let pool = self.cookie_pool(&server, self.args.pool)?;
                    // Warm up: connections, caches, the pool's statements.
                    self.wrk(&server, WORKLOADS[0], &pool, 1, &[])?;
                    let mut out = Vec::new();
                    for &w in &workloads {
                        let cookies = if w.returning { &pool } else { &empty };
                        out.push(self.wrk(
                            &server,
                            w,
                            cookies,
                            self.args.duration,
                            store_comm(spec),
                        )?);
                    }
                    Ok(out)
                })();
                match measured {
                    Ok(out) => {
                        for (w, s) in workloads.iter().zip(out) {
                            eprint!(" {}={:.0}/s", w.name, s.rps);
                            samples.entry((spec.name, w.name)).or_default().push(s);
                        }
                        eprintln!();
                    }
                    Err(e) => {
                        eprintln!(" unavailable: {e}");
                        failed.insert(spec.name, e.to_string());
                    }
                }
            }
        }
        let medians: BTreeMap<_, _> = samples.iter().map(|(k, v)| (*k, median(v))).collect();
        self.throughput_report(&specs, &workloads, &medians, &failed);
        Ok(())
    }

    fn throughput_report(
        &mut self,
        specs: &[Spec],
        workloads: &[Workload],
        medians: &BTreeMap<(&'static str, &'static str), Sample>,
        failed: &BTreeMap<&'static str, String>,
    ) {
        let mut t = String::new();
        for w in workloads {
            let _ = writeln!(
                t,
                "## {} (GET {}, {} visitors)\n",
                w.name,
                w.path,
                if w.returning { "returning" } else { "new" }
            );
            let _ = writeln!(t, "| server | store | req/s | p50 ms | p99 ms | server CPU µs/req | store CPU µs/req | errors |");
            let _ = writeln!(t, "|---|---|---:|---:|---:|---:|---:|---:|");
            for s in specs {
                let Some(m) = medians.get(&(s.name, w.name)) else {
                    continue;
                };
                let store_cpu = if store_comm(*s).is_empty() {
                    "–".to_owned()
                } else {
                    format!("{:.1}", m.store_cpu_us)
                };
                let name = if s.ours {
                    format!("**{}**", s.name)
                } else {
                    s.name.to_owned()
                };
                let _ = writeln!(
                    t,
                    "| {name} | {} | {:.0} | {:.2} | {:.2} | {:.1} | {store_cpu} | {} |",
                    s.engine,
                    m.rps,
                    m.p50_us / 1000.0,
                    m.p99_us / 1000.0,
                    m.cpu_us,
                    m.errors
                );
            }
            t.push('\n');
        }
        // Ratios: cloakroom against each peer with the same store, and against bare.
        let _ = writeln!(t, "## Ratios\n");
        let _ = writeln!(t, "req/s of cloakroom ÷ req/s of the other (higher is better for cloakroom); in brackets, server CPU per request of cloakroom ÷ the other's (lower is better).\n");
        let mut head = "| cloakroom | against |".to_owned();
        let mut rule = "|---|---|".to_owned();
        for w in workloads {
            let _ = write!(head, " {} |", w.name);
            rule.push_str("---:|");
        }
        let _ = writeln!(t, "{head}\n{rule}");
        for ours in specs.iter().filter(|s| s.ours) {
            let others = specs
                .iter()
                .filter(|s| !s.ours && (s.engine == ours.engine || s.engine == "bare"));
            for other in others {
                let mut row = format!("| {} | {} |", ours.name, other.name);
                let mut any = false;
                for w in workloads {
                    match (
                        medians.get(&(ours.name, w.name)),
                        medians.get(&(other.name, w.name)),
                    ) {
                        (Some(a), Some(b)) if b.rps > 0.0 && b.cpu_us > 0.0 => {
                            any = true;
                            let _ = write!(
                                row,
                                " **{:.2}×** ({:.2}×) |",
                                a.rps / b.rps,
                                a.cpu_us / b.cpu_us
                            );
                        }
                        _ => row.push_str(" – |"),
                    }
                }
                if any {
                    let _ = writeln!(t, "{row}");
                }
            }
        }
        t.push('\n');
        if !failed.is_empty() {
            let _ = writeln!(t, "Not measured:\n");
            for (name, why) in failed {
                let _ = writeln!(t, "- {name}: {}", why.lines().next().unwrap_or_default());
            }
            t.push('\n');
        }
        self.out(&t);
    }

    /// Store writes and `Set-Cookie` headers for 1,000 read-only requests of returning visitors.
    fn readonly(&mut self) -> Result {
        let specs = self.selected();
        let n = 1000;
        let mut t = format!("## Read-only requests\n\n{n} requests to GET /read, each with a returning visitor's cookie.\n\n| server | store writes | store loads | Set-Cookie | non-2xx |\n|---|---:|---:|---:|---:|\n");
        for spec in specs {
            let row = (|| -> Result<String> {
                let server = self.start(
                    spec,
                    Start {
                        count_writes: true,
                        ..Start::default()
                    },
                )?;
                let pool = std::fs::read_to_string(self.cookie_pool(&server, n)?)?;
                let before = stats(server.port)?;
                let (mut set_cookie, mut bad) = (0, 0);
                for cookie in pool.lines() {
                    let reply = http::get(server.port, "/read", Some(cookie))?;
                    set_cookie += reply.set_cookies.len();
                    bad += usize::from(!(200..300).contains(&reply.status));
                }
                let after = stats(server.port)?;
                let counted = !spec.name.starts_with("bare") && !spec.name.starts_with("actix");
                let delta = |k: &str| {
                    if counted {
                        (after[k].as_u64().unwrap_or(0) - before[k].as_u64().unwrap_or(0))
                            .to_string()
                    } else {
                        "–".to_owned()
                    }
                };
                Ok(format!(
                    "| {} | {} | {} | {set_cookie} | {bad} |\n",
                    spec.name,
                    delta("writes"),
                    delta("loads")
                ))
            })();
            match row {
                Ok(row) => t.push_str(&row),
                Err(e) => eprintln!("readonly: {}: {e}", spec.name),
            }
        }
        t.push('\n');
        self.out(&t);
        Ok(())
    }

    /// Throughput with `big` stored sessions against a store holding only the cookie pool.
    fn scale(&mut self) -> Result {
        // A store's scale is the same under either adapter (the actix-web servers run the same
        // core on the same store), and the cookie engines store nothing: the axum servers only.
        let specs: Vec<Spec> = self
            .selected()
            .into_iter()
            .filter(|s| s.ours && s.engine != "cookie" && !s.name.starts_with("cloakroom-actix-"))
            .collect();
        let big = self.args.big;
        let pool_n = self.args.pool;
        let mut t = format!(
            "## Many stored sessions\n\nGET /visits and /read by returning visitors, with the store holding {pool_n} sessions against {big}; rounds interleaved.\n\n\
             | server | workload | req/s ({pool_n}) | req/s ({big}) | ratio | p99 ms ({pool_n}) | p99 ms ({big}) |\n|---|---|---:|---:|---:|---:|---:|\n"
        );
        let workloads: Vec<Workload> = self
            .workloads()
            .into_iter()
            .filter(|w| w.returning)
            .collect();
        for spec in specs {
            eprintln!("scale: {} (prefilling {big})", spec.name);
            let measured = (|| -> Result<Vec<(Workload, Sample, Sample)>> {
                let small = self.start(spec, Start::default())?;
                let large = self.start(
                    spec,
                    Start {
                        prefill: big.saturating_sub(pool_n as u64),
                        variant: Some("big"),
                        ..Start::default()
                    },
                )?;
                let small_pool = self.cookie_pool(&small, pool_n)?;
                let large_pool = self.cookie_pool(&large, pool_n)?;
                self.wrk(&small, WORKLOADS[0], &small_pool, 1, &[])?;
                self.wrk(&large, WORKLOADS[0], &large_pool, 1, &[])?;
                let mut out = Vec::new();
                for &w in &workloads {
                    let (mut a, mut b) = (Vec::new(), Vec::new());
                    for _ in 0..self.args.rounds {
                        a.push(self.wrk(&small, w, &small_pool, self.args.duration, &[])?);
                        b.push(self.wrk(&large, w, &large_pool, self.args.duration, &[])?);
                    }
                    out.push((w, median(&a), median(&b)));
                }
                Ok(out)
            })();
            match measured {
                Ok(rows) => {
                    for (w, a, b) in rows {
                        let _ = writeln!(
                            t,
                            "| {} | {} | {:.0} | {:.0} | **{:.2}×** | {:.2} | {:.2} |",
                            spec.name,
                            w.name,
                            a.rps,
                            b.rps,
                            b.rps / a.rps,
                            a.p99_us / 1000.0,
                            b.p99_us / 1000.0
                        );
                    }
                }
                Err(e) => eprintln!("scale: {}: {e}", spec.name),
            }
        }
        t.push('\n');
        self.out(&t);
        Ok(())
    }

    /// Resident memory of the in-process stores holding `big` small sessions.
    fn memory(&mut self) -> Result {
        let big = self.args.big;
        let mut t = format!(
            "## In-process store memory\n\n{big} sessions of `{}` stored directly; resident memory of the server before and after.\n\n\
             | server | RSS delta MiB | bytes per session | prefill s |\n|---|---:|---:|---:|\n",
            servers::PREFILL_DATA
        );
        for spec in SERVERS
            .iter()
            .copied()
            .filter(|s| s.name == "cloakroom-memory" || s.name == "tower-sessions-memory")
        {
            if !self.selected().iter().any(|s| s.name == spec.name) {
                continue;
            }
            eprintln!("memory: {} (prefilling {big})", spec.name);
            match self.start(
                spec,
                Start {
                    prefill: big,
                    ..Start::default()
                },
            ) {
                Ok(server) => {
                    let r = &server.ready;
                    let delta = r["rss_after"].as_f64().unwrap_or(0.0)
                        - r["rss_before"].as_f64().unwrap_or(0.0);
                    let _ = writeln!(
                        t,
                        "| {} | {:.0} | {:.0} | {:.1} |",
                        spec.name,
                        delta / 1048576.0,
                        delta / big as f64,
                        r["prefill_ms"].as_f64().unwrap_or(0.0) / 1000.0
                    );
                }
                Err(e) => eprintln!("memory: {}: {e}", spec.name),
            }
        }
        t.push('\n');
        self.out(&t);
        Ok(())
    }

    fn cleanup(&self) {
        flush_redis();
        let tag = self.tag.clone();
        let drop_tables = async move {
            let pool = sqlx::PgPool::connect(&servers::postgres_url()).await?;
            for variant in ["main", "big"] {
                // The user index beside cloakroom's table refers to it: it goes first.
                sqlx::query(&format!(
                    r#"DROP TABLE IF EXISTS "{tag}_{variant}_cr_user""#
                ))
                .execute(&pool)
                .await?;
                sqlx::query(&format!(r#"DROP TABLE IF EXISTS "{tag}_{variant}_cr""#))
                    .execute(&pool)
                    .await?;
                sqlx::query(&format!(
                    r#"DROP TABLE IF EXISTS "tower_sessions"."{tag}_{variant}_ts""#
                ))
                .execute(&pool)
                .await?;
            }
            Ok::<_, sqlx::Error>(())
        };
        if self.args.engines.iter().any(|e| e == "postgres") {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                if let Err(e) = rt.block_on(drop_tables) {
                    eprintln!("could not drop the benchmark's PostgreSQL tables: {e}");
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The processes of the store server an engine talks to (their CPU is reported too).
fn store_comm(spec: Spec) -> &'static [&'static str] {
    match spec.engine {
        "redis" => &["redis-server"],
        "postgres" => &["postgres"],
        _ => &[],
    }
}

fn stats(port: u16) -> Result<serde_json::Value> {
    let reply = http::get(port, "/__stats", None)?;
    Ok(serde_json::from_str(reply.body.trim()).unwrap_or(serde_json::Value::Null))
}

fn median(samples: &[Sample]) -> Sample {
    fn mid(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => 0.0,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }
    let pick = |f: fn(&Sample) -> f64| mid(samples.iter().map(f).collect());
    Sample {
        rps: pick(|s| s.rps),
        p50_us: pick(|s| s.p50_us),
        p99_us: pick(|s| s.p99_us),
        cpu_us: pick(|s| s.cpu_us),
        store_cpu_us: pick(|s| s.store_cpu_us),
        errors: samples.iter().map(|s| s.errors).sum(),
    }
}

/// utime + stime of a process, all its threads, in clock ticks.
fn proc_cpu_ticks(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| {
        fields
            .get(n - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    field(14) + field(15)
}

/// The CPU ticks of every process whose command name is one of `names`.
fn comm_cpu_ticks(names: &[&str]) -> f64 {
    if names.is_empty() {
        return 0.0;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .filter_map(std::result::Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            names.contains(&comm.trim())
        })
        .map(proc_cpu_ticks)
        .sum()
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" / ")
}

/// Empties the benchmark's own Redis databases (never database 0, where other users live).
fn flush_redis() {
    use std::io::{Read as _, Write as _};
    for db in ["11", "12"] {
        if let Ok(mut s) = std::net::TcpStream::connect("127.0.0.1:6379") {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = write!(
                s,
                "*2\r\n$6\r\nSELECT\r\n$2\r\n{db}\r\n*1\r\n$7\r\nFLUSHDB\r\n"
            );
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf);
        }
    }
}

const DONE_LUA: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK {"requests":%d,"duration_us":%d,"p50_us":%.0f,"p99_us":%.0f,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"#;

const RETURNING_LUA: &str = r#"
-- Returning visitors: one prepared request per pool cookie, sent round-robin.
local reqs = {}
local i = 0
init = function(args)
  for line in io.lines(args[1]) do
    reqs[#reqs + 1] = wrk.format(nil, nil, { ["Cookie"] = line })
  end
end
request = function()
  i = i + 1
  if i > #reqs then i = 1 end
  return reqs[i]
end
"#;

fn write_scripts(dir: &Path) -> Result {
    std::fs::write(
        dir.join("returning.lua"),
        format!("{RETURNING_LUA}{DONE_LUA}"),
    )?;
    std::fs::write(dir.join("new.lua"), DONE_LUA)?;
    Ok(())
}
