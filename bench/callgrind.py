#!/usr/bin/env python3
"""Instructions per request of one benchmark server, counted by callgrind.

Wall time on a shared machine moves with everybody else's load; callgrind counts the
instructions the server process executes, which do not. The server runs under
`valgrind --tool=callgrind`; after a cookie pool and a warm-up, the counters are zeroed, a fixed
number of requests is sent over a few keep-alive connections, and the counters are dumped:
instructions / requests is the cost of one request in the whole server process (HTTP parsing,
routing, the handler, the session layer and the store client).

For servers on Redis, a private redis-server is started on a free loopback port, so that its
`INFO commandstats` deltas count this server's commands only: commands per request (the round
trips) and Redis CPU per request.

For servers on PostgreSQL, a private PostgreSQL (initdb in a temporary folder, run as the
`postgres` user when this runs as root; `--pg-bin` names the folder of initdb and pg_ctl) is
started on a free loopback port with pg_stat_statements loaded, and its deltas count this
server's statements only: statements per request, the buffers each touches and the WAL it
writes, and PostgreSQL's CPU per request (its backends' user + system time).

    python3 bench/callgrind.py --server cloakroom-memory --path /visits
    python3 bench/callgrind.py --server cloakroom-redis --path /read --requests 3000
    python3 bench/callgrind.py --server cloakroom-postgres --path /visits

Needs the release binary (`cargo build --release -p cloakroom-bench`) and valgrind.
"""

import argparse
import asyncio
import glob
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("CLOAKROOM_BENCH_BIN", os.path.join(ROOT, "target", "release", "cloakroom-bench"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path, cookie=None):
    """One request on its own connection; returns (status, set-cookie pair or None)."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        extra = f"Cookie: {cookie}\r\n" if cookie else ""
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n".encode())
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    lines = head.split("\r\n")
    status = int(lines[0].split()[1])
    pair = None
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if k.lower() == "set-cookie" and pair is None:
            pair = v.strip().split(";", 1)[0]
    return status, pair


async def one_connection(port, path, cookies, start, count, stride, failures):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = start
    for _ in range(count):
        cookie = cookies[i % len(cookies)] if cookies else None
        i += stride
        extra = f"Cookie: {cookie}\r\n" if cookie else ""
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 2"):
            failures.append(head.split(b"\r\n", 1)[0])
        m = re.search(rb"(?i)content-length:\s*(\d+)", head)
        await reader.readexactly(int(m.group(1)) if m else 0)
    writer.close()


def load(port, path, cookies, requests, connections):
    failures = []
    per = requests // connections

    async def run():
        await asyncio.gather(
            *(one_connection(port, path, cookies, c, per, connections, failures) for c in range(connections))
        )

    asyncio.run(run())
    if failures:
        raise SystemExit(f"{len(failures)} non-2xx responses, first: {failures[0]!r}")
    return per * connections


def redis_commandstats(port):
    """{command: (calls, usec)} from INFO commandstats."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n")
        raw = b""
        while True:
            raw += s.recv(65536)
            first, _, rest = raw.partition(b"\r\n")
            if first.startswith(b"$") and len(rest) >= int(first[1:]):
                break
    stats = {}
    for m in re.finditer(r"cmdstat_(\S+?):calls=(\d+),usec=(\d+)", raw.decode()):
        stats[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return stats


class PrivatePostgres:
    """A throwaway PostgreSQL cluster with pg_stat_statements, on a free loopback port."""

    def __init__(self, work, bindir):
        self.bindir = bindir or self.find_bindir()
        self.port = free_port()
        self.data = os.path.join(work, "pgdata")
        self.as_user = []
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root.
            subprocess.run(["chown", "postgres", work], check=True)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.run("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync")
        with open(os.path.join(self.data, "postgresql.conf"), "a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{work}'\n"
                "shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = all\n"
                # As the machine's own server is run here (see bench/README.md): no autovacuum.
                "autovacuum = off\nTimeZone = 'Etc/UTC'\n"
            )
        self.run("pg_ctl", "-D", self.data, "-l", os.path.join(work, "postgres.log"), "-w", "start")
        self.sql("CREATE DATABASE test", db="postgres")
        self.sql("CREATE EXTENSION pg_stat_statements")
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/test"

    @staticmethod
    def find_bindir():
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not found:
            raise SystemExit("no PostgreSQL server binaries found: pass --pg-bin")
        return os.path.dirname(found[-1])

    def run(self, tool, *args):
        subprocess.run([*self.as_user, os.path.join(self.bindir, tool), *args], check=True,
                       stdout=subprocess.DEVNULL)

    def sql(self, query, db="test"):
        out = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db,
                              "-AtqX", "-F", "\t", "-c", query], check=True, capture_output=True, text=True)
        return [line.split("\t") for line in out.stdout.splitlines() if line]

    def cpu_ticks(self):
        """User + system clock ticks of the postmaster, its live children and its reaped ones."""
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            pm = int(f.readline())
        pids = [pm]
        for task in glob.glob(f"/proc/{pm}/task/*/children"):
            pids += [int(p) for p in open(task).read().split()]
        total = 0
        for pid in pids:
            try:
                fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += sum(int(x) for x in fields[11:13])
            if pid == pm:
                total += sum(int(x) for x in fields[13:15])
        return total

    def snapshot(self, first):
        """Statement counters and CPU ticks; the CPU of the psql session reading the counters
        is left out of the interval (read after it ends on the first snapshot, before it starts
        on the second)."""
        cpu = None if first else self.cpu_ticks()
        rows = self.sql(
            "SELECT regexp_replace(query, '\\s+', ' ', 'g'), calls, shared_blks_hit + shared_blks_read, wal_bytes FROM pg_stat_statements "
            "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'test')"
        )
        stats = {r[0]: (int(r[1]), int(r[2]), int(float(r[3]))) for r in rows}
        if first:
            time.sleep(0.3)
            cpu = self.cpu_ticks()
        return stats, cpu

    def report(self, before, after, n):
        (b, b_cpu), (a, a_cpu) = before, after
        total = 0
        for query in sorted(a, key=lambda q: -a[q][0]):
            calls, blks, wal = (a[query][i] - b.get(query, (0, 0, 0))[i] for i in range(3))
            if calls <= 0 or "pg_stat_statements" in query:
                continue
            total += calls
            print(f"  postgres {calls / n:.2f}/request, {blks / calls:.1f} buffers, {wal / calls:.0f} WAL bytes: "
                  f"{' '.join(query.split())[:110]}")
        ticks = os.sysconf("SC_CLK_TCK")
        print(f"  postgres total: {total / n:.2f} statements/request, "
              f"{(a_cpu - b_cpu) / ticks / n * 1e6:.1f} us CPU/request")

    def stop(self):
        self.run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")


def wait_ready(proc, what, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"{what} exited before it was ready")
        if line.startswith("READY"):
            return
    raise SystemExit(f"{what} was not ready after {timeout} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", required=True, help="a server name of the benchmark, e.g. cloakroom-memory")
    ap.add_argument("--path", default="/visits", help="/visits (the counter) or /read")
    ap.add_argument("--new", action="store_true", help="new visitors: no cookie")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--pool", type=int, default=200, help="returning visitors' sessions")
    ap.add_argument("--keep", action="store_true", help="keep the callgrind output (for callgrind_annotate)")
    ap.add_argument("--pg-bin", help="folder of PostgreSQL's initdb and pg_ctl (found under /usr/lib/postgresql)")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="cloakroom-callgrind-")
    redis = None
    postgres = None
    extra = []
    env = dict(os.environ)
    if "postgres" in args.server:
        postgres = PrivatePostgres(work, args.pg_bin)
        env["CLOAKROOM_BENCH_POSTGRES_URL"] = postgres.url
    if "redis" in args.server:
        rport = free_port()
        redis = subprocess.Popen(
            ["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", work],
            stdout=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                redis_commandstats(rport)
                break
            except OSError:
                time.sleep(0.05)
        extra = ["--redis-port", str(rport)]
    port = free_port()
    out = os.path.join(work, "callgrind.out")
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", BIN, "serve", "--server", args.server,
         "--port", str(port), "--dir", work, "--tag", f"cg{os.getpid()}", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )
    try:
        wait_ready(server, args.server)
        cookies = []
        if not args.new:
            for _ in range(args.pool):
                status, pair = http_get(port, "/visits")
                if status != 200 or not pair:
                    raise SystemExit(f"no session cookie from /visits ({status})")
                cookies.append(pair)
        load(port, args.path, cookies, max(200, args.requests // 10), args.connections)
        before = redis_commandstats(rport) if redis else {}
        pg_before = postgres.snapshot(True) if postgres else None
        subprocess.run(["callgrind_control", "-z", str(server.pid)], check=True, stdout=subprocess.DEVNULL)
        n = load(port, args.path, cookies, args.requests, args.connections)
        subprocess.run(["callgrind_control", "-d", str(server.pid)], check=True, stdout=subprocess.DEVNULL)
        after = redis_commandstats(rport) if redis else {}
        pg_after = postgres.snapshot(False) if postgres else None
        time.sleep(0.5)
        dumps = sorted(glob.glob(out + "*"), key=os.path.getmtime)
        text = open(dumps[-1]).read()
        m = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.M)
        ir = int(m.group(1))
        visitors = "new visitors" if args.new else f"{args.pool} returning visitors"
        print(f"{args.server} GET {args.path} ({visitors}, {args.connections} connections): "
              f"{ir / n / 1000:.1f}k instructions/request over {n} requests")
        calls = usec = 0
        for cmd in sorted(after):
            c = after[cmd][0] - before.get(cmd, (0, 0))[0]
            u = after[cmd][1] - before.get(cmd, (0, 0))[1]
            if c and cmd != "info":
                calls += c
                usec += u
                print(f"  redis {cmd}: {c / n:.2f} calls/request, {u / c:.2f} usec/call")
        if redis:
            print(f"  redis total: {calls / n:.2f} commands/request, {usec / n:.2f} usec/request")
        if postgres:
            postgres.report(pg_before, pg_after, n)
        if args.keep:
            print(f"  callgrind output: {dumps[-1]}")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait()
        if redis:
            redis.send_signal(signal.SIGTERM)
            redis.wait()
        if postgres:
            postgres.stop()


if __name__ == "__main__":
    sys.exit(main())
