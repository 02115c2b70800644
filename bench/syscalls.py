#!/usr/bin/env python3
"""Where a bench server's time goes beside its instructions: syscalls, context switches and
Redis's CPU per request, for one server under wrk.

The server (`cloakroom-bench serve`) runs pinned to core 0 on a Redis of your own (`--redis-port`,
default 6390, database 13: start one with `redis-server --port 6390 --save '' --daemonize yes`),
1,000 returning visitors are made, then `wrk -t1 -c64` runs pinned to core 1 with the bench's
returning-visitor script. Before and after each run it reads `/proc/<pid>/stat` (CPU),
`/proc/<pid>/io` (`syscr`/`syscw`: read and write syscalls) and `/proc/<pid>/task/*/status`
(context switches) of the server and of Redis. Redis's `read` calls per request show how many
commands reach it in one read (0.5: two; 0.03: about thirty).

    python3 bench/syscalls.py --bin target/release/cloakroom-bench --server cloakroom-redis --path /read
    python3 bench/syscalls.py --bin ... --server cloakroom-redis --perf "perf trace -s -p PID"

`--perf` runs a command beside wrk (PID is replaced by the server's); its stderr goes to
`<dir>/perf.txt`.
"""
import argparse, glob, http.client, json, os, subprocess, tempfile

p = argparse.ArgumentParser()
p.add_argument('--bin', required=True)
p.add_argument('--server', required=True)
p.add_argument('--path', default='/read')
p.add_argument('--secs', type=int, default=5)
p.add_argument('--rounds', type=int, default=1)
p.add_argument('--conns', type=int, default=64)
p.add_argument('--redis-port', type=int, default=6390)
p.add_argument('--env', action='append', default=[])
p.add_argument('--perf', default='')  # e.g. "perf stat -e ..." prefix run while wrk runs
a = p.parse_args()

CLK = os.sysconf('SC_CLK_TCK')
def cpu_ticks(pid):
    f = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
    return int(f[11]) + int(f[12])
def io(pid):
    d = {}
    for l in open(f'/proc/{pid}/io'):
        k, v = l.split(':'); d[k] = int(v)
    return d
def ctx(pid):
    v = n = 0
    for t in glob.glob(f'/proc/{pid}/task/*/status'):
        try:
            for l in open(t):
                if l.startswith('voluntary_ctxt_switches'): v += int(l.split()[1])
                if l.startswith('nonvoluntary_ctxt_switches'): n += int(l.split()[1])
        except FileNotFoundError: pass
    return v, n
def redis_pid(port):
    out = subprocess.run(['redis-cli', '-p', str(port), 'info', 'server'], capture_output=True, text=True).stdout
    for l in out.splitlines():
        if l.startswith('process_id:'): return int(l.split(':')[1])

rpid = redis_pid(a.redis_port)
port = 18000 + os.getpid() % 1000
d = os.path.join(tempfile.gettempdir(), f'syscalls-{a.server}')
os.makedirs(d, exist_ok=True)
env = dict(os.environ)
for e in a.env:
    k, v = e.split('=', 1); env[k] = v
srv = subprocess.Popen(['taskset', '-c', '0', a.bin, 'serve', '--server', a.server, '--port', str(port), '--dir', d,
                        '--tag', 'rr', '--prefill', '0', '--redis-db', '13', '--redis-port', str(a.redis_port)],
                       stdout=subprocess.PIPE, stderr=open(d + '/log', 'w'), env=env)
for line in srv.stdout:
    if line.startswith(b'READY'): break
try:
    cookies = []
    c = http.client.HTTPConnection('127.0.0.1', port)
    for i in range(1000):
        c.request('GET', '/visits'); r = c.getresponse(); r.read()
        sc = r.getheader('Set-Cookie')
        cookies.append(sc.split(';')[0])
    open(d + '/cookies', 'w').write('\n'.join(cookies) + '\n')
    lua = d + '/returning.lua'
    open(lua, 'w').write('''
local reqs = {}
local i = 0
init = function(args)
  for line in io.lines(args[1]) do reqs[#reqs + 1] = wrk.format(nil, nil, { ["Cookie"] = line }) end
end
request = function() i = i + 1 if i > #reqs then i = 1 end return reqs[i] end
done = function(summary, latency, requests)
  io.write(string.format('WRK {"requests":%d,"duration_us":%d,"p50_us":%.0f,"p99_us":%.0f,"errors":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
end
''')
    subprocess.run(['taskset', '-c', '1', 'wrk', '-t1', f'-c{a.conns}', '-d1s', '-s', lua, f'http://127.0.0.1:{port}{a.path}', '--', d + '/cookies'], capture_output=True)
    for r in range(a.rounds):
        c0, r0, i0, x0 = cpu_ticks(srv.pid), cpu_ticks(rpid), io(srv.pid), ctx(srv.pid)
        ri0 = io(rpid)
        perf = None
        if a.perf:
            perf = subprocess.Popen(a.perf.replace('PID', str(srv.pid)).split(), stderr=open(d + '/perf.txt', 'w'))
        out = subprocess.run(['taskset', '-c', '1', 'wrk', '-t1', f'-c{a.conns}', f'-d{a.secs}s', '-s', lua, f'http://127.0.0.1:{port}{a.path}', '--', d + '/cookies'], capture_output=True, text=True).stdout
        if perf:
            perf.send_signal(2); perf.wait()
        c1, r1, i1, x1 = cpu_ticks(srv.pid), cpu_ticks(rpid), io(srv.pid), ctx(srv.pid)
        ri1 = io(rpid)
        w = json.loads([l for l in out.splitlines() if l.startswith('WRK ')][0][4:])
        n = w['requests']
        us = 1e6 / CLK
        print(f"{a.server:28} {a.path:7} rps {n/(w['duration_us']/1e6):8.0f} p50 {w['p50_us']/1000:.2f} p99 {w['p99_us']/1000:.2f} "
              f"cpu {(c1-c0)*us/n:5.1f} redis {(r1-r0)*us/n:4.1f} us/req | srv rd {(i1['syscr']-i0['syscr'])/n:.2f} wr {(i1['syscw']-i0['syscw'])/n:.2f} "
              f"| redis rd {(ri1['syscr']-ri0['syscr'])/n:.2f} wr {(ri1['syscw']-ri0['syscw'])/n:.2f} | cs vol {(x1[0]-x0[0])/n:.3f} inv {(x1[1]-x0[1])/n:.3f} err {w['errors']}", flush=True)
finally:
    srv.terminate(); srv.wait()
