#!/usr/bin/env bash
# Makes sure the servers the test suite needs are installed and running on loopback:
# PostgreSQL 127.0.0.1:5432 (database `test`, user postgres, no password),
# MariaDB 127.0.0.1:3306 (root, empty password, database `test`), Redis 127.0.0.1:6379.
# Installs what is missing from Debian's packages and starts what is stopped; a server that
# already runs is left alone. Idempotent.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

need_pkgs=()
command -v pg_ctlcluster >/dev/null 2>&1 || need_pkgs+=(postgresql postgresql-client)
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need_pkgs+=(mariadb-server mariadb-client)
command -v redis-server >/dev/null 2>&1 || need_pkgs+=(redis-server redis-tools)
# The Sentinel tests run three sentinels of their own (testkit's servers/redis_sentinel.rs).
command -v redis-sentinel >/dev/null 2>&1 || need_pkgs+=(redis-sentinel)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3 python3-venv)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_pkgs+=(python3-venv)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "services: installing ${need_pkgs[*]}"
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

wait_for() { # name, command...
  local name=$1; shift
  for _ in $(seq 1 60); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "services: $name did not come up" >&2; return 1
}

# PostgreSQL
pg_ok() { PGCONNECT_TIMEOUT=2 psql "postgres://postgres@127.0.0.1:5432/test" -c 'select 1'; }
if ! pg_ok >/dev/null 2>&1; then
  ver=$(ls /etc/postgresql | sort -V | tail -n1)
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main start 2>/dev/null || true
  wait_for "PostgreSQL" $SUDO -u postgres psql -c 'select 1'
  hba=/etc/postgresql/$ver/main/pg_hba.conf
  if ! $SUDO grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    # A test-only server: loopback connections need no password, as on the dev machines.
    $SUDO sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    $SUDO -u postgres psql -qc 'select pg_reload_conf()' >/dev/null
  fi
  $SUDO -u postgres psql -qtc "select 1 from pg_database where datname='test'" | grep -q 1 \
    || $SUDO -u postgres createdb test
  wait_for "PostgreSQL on 127.0.0.1:5432" pg_ok
fi

# MariaDB
my_ok() { mariadb -h 127.0.0.1 -P 3306 -u root --connect-timeout=2 -e 'select 1' test; }
if ! my_ok >/dev/null 2>&1; then
  if ! mariadb-admin ping >/dev/null 2>&1; then
    $SUDO mkdir -p /run/mysqld && $SUDO chown mysql:mysql /run/mysqld 2>/dev/null || true
    $SUDO start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
    wait_for "MariaDB" $SUDO mariadb-admin ping
  fi
  # Debian's root uses socket auth; the tests connect over TCP as root without a password.
  $SUDO mariadb -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD(''); CREATE DATABASE IF NOT EXISTS test;" 2>/dev/null \
    || $SUDO mariadb -e "CREATE DATABASE IF NOT EXISTS test;"
  wait_for "MariaDB on 127.0.0.1:3306" my_ok
fi

# Redis (nothing on disk)
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  $SUDO mkdir -p /var/lib/redis /var/log/redis
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for "Redis on 127.0.0.1:6379" redis-cli -h 127.0.0.1 -p 6379 ping
fi
echo "services: PostgreSQL, MariaDB and Redis are up on loopback"
