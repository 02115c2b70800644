#!/usr/bin/env python3
"""Instructions per Redis GET through each client (`cloakroom-bench clients`), by callgrind.

Each client runs twice under callgrind on a private redis-server (started here on a free
loopback port, stopped by pid): once with --few loads and once with --many. The difference in
instructions over the difference in loads is the cost of one load, start-up and connection
set-up excluded. Every thread of the process is counted (fred's and redis-rs's connection
tasks included).

    CLOAKROOM_BENCH_BIN=target/release/cloakroom-bench python3 bench/clients.py
"""

import argparse
import os
import re
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("CLOAKROOM_BENCH_BIN", os.path.join(ROOT, "target/release/cloakroom-bench"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def instructions(work, client, port, loads, concurrency):
    out = os.path.join(work, f"callgrind.{client}.{loads}")
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", BIN, "clients",
         "--client", client, "--requests", str(loads), "--concurrency", str(concurrency),
         "--redis-port", str(port)],
        check=True, capture_output=True)
    with open(out) as f:
        for line in f:
            m = re.match(r"(?:summary|totals): (\d+)", line)
            if m:
                return int(m.group(1))
    raise RuntimeError(f"no totals in {out}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", default="store,fred,redis-rs")
    ap.add_argument("--few", type=int, default=1000)
    ap.add_argument("--many", type=int, default=11000)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="cloakroom-clients-")
    port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", work],
                             stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        print(f"instructions per GET ({args.concurrency} at a time, one tokio worker):")
        for client in args.clients.split(","):
            few = instructions(work, client, port, args.few, args.concurrency)
            many = instructions(work, client, port, args.many, args.concurrency)
            per = (many - few) / (args.many - args.few)
            print(f"  {client:10} {per / 1000:6.2f}k")
    finally:
        redis.terminate()
        redis.wait()


if __name__ == "__main__":
    main()
