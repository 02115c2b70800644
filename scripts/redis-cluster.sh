#!/usr/bin/env bash
# A throwaway Redis Cluster of three masters on loopback, for demos and manual tests.
#
#   scripts/redis-cluster.sh start DIR   starts it, keeping its files in DIR, and prints the
#                                        cache_url (also written to DIR/url)
#   scripts/redis-cluster.sh stop DIR    stops the servers started in DIR (by their PIDs)
#
# Ports are drawn from 20000-29999 (a node also uses its port + 10000 for the cluster bus),
# so the machine's own Redis on 6379 is never touched. Nothing is persisted.
set -euo pipefail

usage() {
    echo "usage: $0 start|stop DIR" >&2
    exit 2
}

[ $# -eq 2 ] || usage
cmd=$1
dir=$2

# Whether something answers on a loopback port.
listening() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start_node() {
    local port=$1
    redis-server --port "$port" \
        --cluster-enabled yes --cluster-config-file "$dir/nodes-$port.conf" \
        --dir "$dir" --save "" --appendonly no \
        --bind 127.0.0.1 --daemonize yes \
        --pidfile "$dir/redis-$port.pid" --logfile "$dir/redis-$port.log"
    for _ in $(seq 50); do
        if [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ]; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

case $cmd in
start)
    command -v redis-server >/dev/null || { echo "redis-server is not installed" >&2; exit 1; }
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if ls "$dir"/redis-*.pid >/dev/null 2>&1; then
        echo "$dir already has a running cluster; stop it first" >&2
        exit 1
    fi
    ports=()
    tries=0
    while [ ${#ports[@]} -lt 3 ]; do
        tries=$((tries + 1))
        [ $tries -le 50 ] || { echo "no free ports found" >&2; exit 1; }
        port=$((20000 + RANDOM % 10000))
        if listening "$port" || listening $((port + 10000)); then
            continue
        fi
        if start_node "$port"; then
            ports+=("$port")
        fi
    done
    nodes=()
    for port in "${ports[@]}"; do
        nodes+=("127.0.0.1:$port")
    done
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >"$dir/create.log"
    for port in "${ports[@]}"; do
        for _ in $(seq 300); do
            if redis-cli -p "$port" cluster info | grep -q '^cluster_state:ok'; then
                break
            fi
            sleep 0.1
        done
        redis-cli -p "$port" cluster info | grep -q '^cluster_state:ok' ||
            { echo "node $port never reported cluster_state:ok" >&2; exit 1; }
    done
    url="redis-cluster://$(IFS=,; echo "${nodes[*]}")"
    echo "$url" >"$dir/url"
    echo "$url"
    ;;
stop)
    shopt -s nullglob
    for pidfile in "$dir"/redis-*.pid; do
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        rm -f "$pidfile"
    done
    # A node's cluster state would make the next `start` on the same port refuse to join.
    rm -f "$dir"/nodes-*.conf "$dir"/url
    ;;
*)
    usage
    ;;
esac
