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

    python3 bench/callgrind.py --server cloakroom-memory --path /visits
    python3 bench/callgrind.py --server cloakroom-redis --path /read --requests 3000

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
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="cloakroom-callgrind-")
    redis = None
    extra = []
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
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
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
        subprocess.run(["callgrind_control", "-z", str(server.pid)], check=True, stdout=subprocess.DEVNULL)
        n = load(port, args.path, cookies, args.requests, args.connections)
        subprocess.run(["callgrind_control", "-d", str(server.pid)], check=True, stdout=subprocess.DEVNULL)
        after = redis_commandstats(rport) if redis else {}
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
        if args.keep:
            print(f"  callgrind output: {dumps[-1]}")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait()
        if redis:
            redis.send_signal(signal.SIGTERM)
            redis.wait()


if __name__ == "__main__":
    sys.exit(main())
