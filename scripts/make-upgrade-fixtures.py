#!/usr/bin/env python3
"""Remakes the upgrade fixtures of crates/cloakroom-cli/tests/upgrade.rs.

Runs the demo of an OLD build of cloakroom (commit 3884aea) on every engine, plays the
visitors a rolling deploy would leave behind (an anonymous counter, one user logged in on two
browsers, a key rotated inside the grace window, a session with its own expiry), and dumps the
raw store (SQL schema and rows of the session table and `<table>_user`, Redis keys with their
values and TTLs, the file engine's folder, the signed cookies) with the cookies handed out, the
secret key and the instant of the dump, one JSON file per engine and data format.

Usage (the python of scripts/django-env.sh has redis, psycopg and PyMySQL):

    git -C /work/main worktree add /work/wt-old 3884aea
    (cd /work/wt-old && nice -n 19 cargo build -j1 -p cloakroom-cli --all-features)
    "$(sh scripts/django-env.sh)" scripts/make-upgrade-fixtures.py \
        /work/wt-old/target/debug/cloakroom crates/cloakroom-cli/tests/fixtures/upgrade-3884aea

Needs the local PostgreSQL (127.0.0.1:5432, db `test`), MariaDB (127.0.0.1:3306, db `test`)
and `redis-server` on the PATH (each Redis scenario starts its own, on a free port).
"""

import http.client
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

import psycopg
import pymysql
import redis

SECRET = "upgrade-fixture-secret-3884aea-never-used-in-production"
POSTGRES = "postgres://postgres@127.0.0.1:5432/test"
MYSQL = "mysql://root@127.0.0.1:3306/test"
# The table every SQL fixture is made in; the test loads it under a name of its own by
# replacing this text in the schema.
TABLE = "upgrade_fixture"
# The grace window the old demo ran with (its maximum): the rotated key's pointer lives this
# long, so the dump comes right after the rotation.
GRACE = 60
EXPIRY = 300
# Signed cookies carry their signing time, which the test cannot move: the old and the new demo
# both run with a ten-year cookie age, so the committed cookies stay readable.
COOKIE_AGE_SIGNED = 315_360_000
# Likewise their per-session expiry counts from the signing time (a browser drops the cookie
# then): nine years, still shorter than the cookie age so the two stay apart.
EXPIRY_SIGNED = 283_824_000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what):
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited early ({proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on {port}")


def enc(data):
    """Bytes as readable text when they are UTF-8, else as hex: {"text": …} or {"hex": …}."""
    try:
        return {"text": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"hex": data.hex()}


class Demo:
    """The old `cloakroom demo` in its own folder, with a tiny cookie-aware JSON client."""

    def __init__(self, exe, cwd, args):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [exe, "demo", "--addr", f"127.0.0.1:{self.port}", *args],
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            env={**os.environ, "RUST_LOG": "warn"},
        )
        wait_port(self.port, self.proc, "the old demo")

    def call(self, method, path, cookie=None, body=None, user_agent="Upgrade/1.0"):
        """Sends one request; returns (status, JSON body or None, the sessionid it set)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {"User-Agent": user_agent}
        if cookie:
            headers["Cookie"] = f"sessionid={cookie}"
        payload = None
        if body is not None:
            payload = json.dumps(body)
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=payload, headers=headers)
        resp = conn.getresponse()
        text = resp.read().decode()
        set_cookie = None
        for name, value in resp.getheaders():
            if name.lower() == "set-cookie" and value.startswith("sessionid="):
                set_cookie = value.split(";", 1)[0][len("sessionid="):]
        conn.close()
        data = json.loads(text) if text else None
        if resp.status >= 400:
            raise SystemExit(f"{method} {path}: {resp.status} {text}")
        return resp.status, data, set_cookie

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def play(demo, expiry):
    """The visitors, as a rolling deploy leaves them. Returns (cookies, what they saw)."""
    cookies, seen = {}, {}

    def visit(name, method, path, body=None, user_agent="Upgrade/1.0"):
        status, data, set_cookie = demo.call(method, path, cookies.get(name), body, user_agent)
        if set_cookie:
            cookies[name] = set_cookie
        return data

    for _ in range(3):
        seen["anonymous_visits"] = visit("anonymous", "GET", "/api/visits")["visits"]

    visit("ana_phone", "POST", "/api/login", {"username": "ana"}, "Phone/1.0")
    for _ in range(2):
        seen["ana_phone_visits"] = visit("ana_phone", "GET", "/api/visits", user_agent="Phone/1.0")[
            "visits"
        ]
    visit("ana_laptop", "POST", "/api/login", {"username": "ana"}, "Laptop/2.0")

    seen["expiry"] = visit("expiry", "POST", "/api/expiry", {"seconds": expiry})["expiry_age"]
    seen["expiry_visits"] = visit("expiry", "GET", "/api/visits")["visits"]

    # Last, so the dump lands well inside the grace window: a cart, then a login that rotates
    # the key; the old key's record now points to the new one (3884aea's rotation pointer).
    visit("rotated_old", "POST", "/api/cart", {"item": "socks"})
    cookies["rotated_new"] = cookies["rotated_old"]
    visit("rotated_new", "POST", "/api/login", {"username": "bob"}, "Tablet/3.0")
    if cookies["rotated_new"] == cookies["rotated_old"]:
        raise SystemExit("the login did not rotate the key")
    return cookies, seen


def dump_sqlite(path):
    db = sqlite3.connect(path)
    schema = [
        row[0]
        for row in db.execute(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type DESC, name"
        )
    ]
    rows = {}
    for table in (TABLE, f"{TABLE}_user"):
        cur = db.execute(f'SELECT * FROM "{table}" ORDER BY session_key')
        names = [d[0] for d in cur.description]
        rows[table] = [dict(zip(names, r)) for r in cur.fetchall()]
    db.close()
    return {"schema": schema, "rows": rows}


def dump_postgres():
    out = subprocess.run(
        ["pg_dump", "--schema-only", "--no-owner", "--no-privileges", "-t", TABLE, "-t",
         f"{TABLE}_user", POSTGRES],
        check=True, capture_output=True, text=True,
    ).stdout
    # The CREATE and ALTER statements only: pg_dump's SET lines (an empty search_path) are
    # for restoring a whole dump, not for loading these two tables beside others.
    text = "\n".join(line for line in out.splitlines() if not line.startswith("--"))
    schema = [
        stmt.strip()
        for stmt in text.split(";\n")
        if stmt.strip().startswith(("CREATE", "ALTER"))
    ]
    rows = {}
    with psycopg.connect(POSTGRES) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        for table in (TABLE, f"{TABLE}_user"):
            cur = conn.execute(f'SELECT * FROM "{table}" WHERE false')
            names = [d.name for d in cur.description]
            cols = ", ".join(f'"{n}"::text' for n in names)
            cur = conn.execute(f'SELECT {cols} FROM "{table}" ORDER BY session_key')
            rows[table] = [dict(zip(names, r)) for r in cur.fetchall()]
    return {"schema": schema, "rows": rows}


def mysql_conn():
    return pymysql.connect(host="127.0.0.1", port=3306, user="root", database="test")


def dump_mysql():
    schema, rows = [], {}
    conn = mysql_conn()
    with conn.cursor() as cur:
        for table in (TABLE, f"{TABLE}_user"):
            cur.execute(f"SHOW CREATE TABLE `{table}`")
            schema.append(cur.fetchone()[1])
            cur.execute(f"SELECT * FROM `{table}` WHERE false")
            names = [d[0] for d in cur.description]
            cols = ", ".join(f"CAST(`{n}` AS CHAR)" for n in names)
            cur.execute(f"SELECT {cols} FROM `{table}` ORDER BY session_key")
            rows[table] = [dict(zip(names, r)) for r in cur.fetchall()]
    conn.close()
    return {"schema": schema, "rows": rows}


def drop_sql(url):
    if url.startswith("postgres"):
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(f'DROP TABLE IF EXISTS "{TABLE}_user", "{TABLE}"')
    else:
        conn = mysql_conn()
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS `{TABLE}_user`, `{TABLE}`")
        conn.commit()
        conn.close()


def dump_redis(port):
    r = redis.Redis(host="127.0.0.1", port=port)
    keys = []
    for key in sorted(r.scan_iter(count=1000)):
        kind = r.type(key).decode()
        entry = {"key": enc(key), "type": kind, "pttl": r.pttl(key)}
        if kind == "string":
            entry["value"] = enc(r.get(key))
        elif kind == "hash":
            entry["fields"] = {k.decode(): enc(v) for k, v in sorted(r.hgetall(key).items())}
        elif kind == "zset":
            entry["members"] = [[enc(m), s] for m, s in r.zrange(key, 0, -1, withscores=True)]
        else:
            raise SystemExit(f"unexpected Redis type {kind} under {key!r}")
        keys.append(entry)
    return {"keys": keys}


def dump_files(folder):
    files = []
    for root, _dirs, names in os.walk(folder):
        for name in sorted(names):
            path = os.path.join(root, name)
            st = os.stat(path)
            files.append({
                "path": os.path.relpath(path, folder),
                "content": enc(open(path, "rb").read()),
                "mtime_ns": st.st_mtime_ns,
                "mode": st.st_mode & 0o777,
            })
    files.sort(key=lambda f: f["path"])
    return {"files": files}


def start_redis(tmp):
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", tmp],
        stdout=subprocess.DEVNULL,
    )
    wait_port(port, proc, "redis-server")
    return port, proc


def scenario(exe, engine, fmt, where, out_dir):
    name = f"{engine}-{where}-{fmt}" if where else f"{engine}-{fmt}"
    tmp = tempfile.mkdtemp(prefix=f"upgrade-{name}-")
    common = ["--secret-key", SECRET, "--data-format", fmt, "--rotation-grace", str(GRACE)]
    settings = {"engine": engine, "data_format": fmt, "rotation_grace": GRACE}
    redis_proc = None
    args = ["--engine", engine]
    sql_url = None
    if engine in ("db", "cached_db"):
        sql_url = {
            "sqlite": f"sqlite://{tmp}/cloakroom.sqlite3",
            "postgres": POSTGRES,
            "mysql": MYSQL,
        }[where]
        args += ["--database-url", sql_url, "--table", TABLE]
        if where != "sqlite":
            drop_sql(sql_url)
            subprocess.run([exe, "migrate", *args], cwd=tmp, check=True)
    if engine in ("cache", "cached_db"):
        port, redis_proc = start_redis(tmp)
        args += ["--cache-url", f"redis://127.0.0.1:{port}/0"]
    if engine == "file":
        os.mkdir(f"{tmp}/sessions", 0o700)
        args += ["--file-path", f"{tmp}/sessions"]
    if engine == "signed_cookies":
        args += ["--cookie-age", str(COOKIE_AGE_SIGNED)]
        settings["cookie_age"] = COOKIE_AGE_SIGNED
    demo = Demo(exe, tmp, args + common)
    if engine == "cached_db":
        # 3884aea's cached_db connects its cache after the port opens; requests before that
        # go to the database only, and the fixture would hold no cache copies.
        time.sleep(2)
    try:
        cookies, seen = play(demo, EXPIRY_SIGNED if engine == "signed_cookies" else EXPIRY)
        made_at = time.time()
        store = {}
        if sql_url:
            store["sql"] = {"sqlite": lambda: dump_sqlite(f"{tmp}/cloakroom.sqlite3"),
                            "postgres": dump_postgres, "mysql": dump_mysql}[where]()
            store["sql"]["table"] = TABLE
            store["sql"]["dialect"] = where
        if redis_proc:
            store["redis"] = dump_redis(port)
        if engine == "file":
            store["file"] = dump_files(f"{tmp}/sessions")
    finally:
        demo.stop()
        if redis_proc:
            redis_proc.kill()
            redis_proc.wait()
        if sql_url and where != "sqlite":
            drop_sql(sql_url)
    fixture = {
        "made_by": "scripts/make-upgrade-fixtures.py with the demo of commit 3884aea",
        "made_at": made_at,
        "secret_key": SECRET,
        "settings": settings,
        "cookies": cookies,
        "seen": seen,
        "store": store,
    }
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
        json.dump(fixture, f, indent=1, sort_keys=True)
        f.write("\n")
    subprocess.run(["rm", "-rf", tmp], check=True)
    print(f"{name}: {len(cookies)} cookies")


def main():
    exe, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    for fmt in ("json", "django"):
        for where in ("sqlite", "postgres", "mysql"):
            scenario(exe, "db", fmt, where, out_dir)
        scenario(exe, "cache", fmt, "redis", out_dir)
        scenario(exe, "cached_db", fmt, "sqlite", out_dir)
        scenario(exe, "file", fmt, None, out_dir)
    # Signed cookies are always Django's signed format (data_format does not apply).
    scenario(exe, "signed_cookies", "json", None, out_dir)


if __name__ == "__main__":
    main()
