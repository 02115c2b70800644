#!/usr/bin/env bash
# Load and fault run against the demo: N visitors (each with C requests in flight) for a
# bounded time on one engine, optionally killing and restarting the store mid-run.
#
#   scripts/loadtest.sh ENGINE [--visitors N] [--concurrency C] [--seconds S] [--restart-store]
#
# ENGINE: sqlite | cache | postgres | mysql | redis | redis-sentinel | file | cached_db
# postgres, mysql (a MariaDB), redis and cached_db (SQLite + Redis) start a store of their own on
# a free loopback port (never the machine's services), which --restart-store kills with SIGKILL
# and starts again; redis-sentinel starts a primary, a replica and three sentinels, and
# --restart-store kills the primary for good (the sentinels promote the replica). Prints
# requests, outcomes by kind, lost updates, p50/p99 latency and, with --restart-store, how soon
# after the store was back (on Sentinel: the new primary named) the first 200 came.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
  sed -n '2,13p' "$0"
  exit 2
fi
engine=$1
shift
cargo build --quiet -p cloakroom-cli --bin cloakroom --example loadtest
exec target/debug/examples/loadtest --bin target/debug/cloakroom --engine "$engine" "$@"
