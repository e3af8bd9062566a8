#!/usr/bin/env python3
"""`make soak`: mixed traffic through keygate at ~80% of the maximum rate
measured first, for SOAK_SECONDS (default 600), with a key write through the
admin API every second and a SIGHUP every 30 s. Prints a table per 30 s
segment (rate, p99, unexpected statuses and socket errors, RSS, fds) and
exits 1 when a promise broke: an unexpected status, a socket error, a failed
admin write or reload, or keygate exiting.

Traffic (wrk + Lua, loopback, an nginx upstream): valid GETs; 10% unknown keys
(401); 5% a key limited to 1/1h (429 after its first); 1% 1 MB uploads; 2%
1 MB streamed downloads. Needs nginx and wrk (scripts/install-deps.sh --bench).
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from harness import Gateway, free_port, wait_until, wellformed_key  # noqa: E402
import reliability  # noqa: E402

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  keepalive_requests 1000000;
  client_max_body_size 2m;
  server {{
    listen 127.0.0.1:{port};
    location /stream/ {{ alias {tmp}/files/; }}
    location / {{ default_type application/json; return 200 '{{"ok":true}}'; }}
  }}
}}
"""

WRK_SCRIPT = """
local valid, unknown, limited = "{valid}", "{unknown}", "{limited}"
local delay_ms = {delay_ms}
local reqs = {{}}
function init(args)
  local big = string.rep("u", 1048576)
  for i = 1, 100 do
    local r
    if i <= 10 then r = wrk.format("GET", "/v1/items", {{["Authorization"] = "Bearer " .. unknown}})
    elseif i <= 15 then r = wrk.format("GET", "/v1/items", {{["X-Api-Key"] = limited}})
    elseif i == 16 then r = wrk.format("POST", "/v1/upload", {{["X-Api-Key"] = valid,
        ["Content-Type"] = "application/octet-stream"}}, big)
    elseif i <= 18 then r = wrk.format("GET", "/stream/1m", {{["X-Api-Key"] = valid}})
    else r = wrk.format("GET", "/v1/items?i=" .. i, {{["Authorization"] = "Bearer " .. valid}}) end
    reqs[i] = r
  end
  c200, c401, c429, cother, last_other = 0, 0, 0, 0, 0
  math.randomseed({seed} + os.time())
end
function request() return reqs[math.random(100)] end
function delay() return delay_ms end
function response(status, headers, body)
  if status == 200 then c200 = c200 + 1
  elseif status == 401 then c401 = c401 + 1
  elseif status == 429 then c429 = c429 + 1
  else cother = cother + 1; last_other = status end
end
local threads = {{}}
function setup(thread) table.insert(threads, thread) end
function done(summary, latency, requests)
  local t = {{[200] = 0, [401] = 0, [429] = 0, other = 0}}
  for _, th in ipairs(threads) do
    t[200] = t[200] + th:get("c200"); t[401] = t[401] + th:get("c401")
    t[429] = t[429] + th:get("c429"); t.other = t.other + th:get("cother")
    if th:get("last_other") ~= 0 then t.last = th:get("last_other") end
  end
  local e = summary.errors
  io.write(string.format("RESULT requests=%d p50=%d p99=%d s200=%d s401=%d s429=%d other=%d " ..
    "connect=%d read=%d write=%d timeout=%d us=%d last_other=%d\\n", summary.requests,
    latency:percentile(50), latency:percentile(99), t[200], t[401], t[429], t.other,
    e.connect, e.read, e.write, e.timeout, summary.duration, t.last or 0))
end
"""


def wrk(port, script, seconds, connections):
    p = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
                        "-s", script, f"http://127.0.0.1:{port}/"],
                       capture_output=True, text=True, timeout=seconds + 120)
    m = re.search(r"^RESULT (.*)$", p.stdout, re.M)
    if not m:
        raise RuntimeError(f"wrk failed: {p.stdout}\n{p.stderr}")
    return {k: int(v) for k, v in (f.split("=") for f in m.group(1).split())}


class AdminWriter(threading.Thread):
    """A key write every second: create, then every third tick a revoke or a PATCH."""

    def __init__(self, g):
        super().__init__(daemon=True)
        self.g, self.stop, self.done, self.failed, self.ids = g, threading.Event(), 0, [], []

    def run(self):
        for tick in range(1_000_000):
            if self.stop.wait(1.0):
                return
            try:
                if tick % 3 == 2 and self.ids:
                    kid = self.ids.pop(0)
                    if tick % 2:
                        r, want = self.g.admin("DELETE", f"/v1/api-keys/{kid}"), 200
                    else:
                        r, want = self.g.admin("PATCH", f"/v1/api-keys/{kid}",
                                               {"name": f"soak-{tick}"}), 200
                else:
                    r, want = self.g.admin("POST", "/v1/api-keys",
                                           {"name": f"soak-{tick}", "owner": "soak"}), 201
                    if r.status == 201:
                        self.ids.append(r.json()["data"]["id"])
                if r.status != want:
                    self.failed.append((tick, r.status))
                self.done += 1
            except OSError as e:
                self.failed.append((tick, repr(e)))


def main():
    total = int(os.environ.get("SOAK_SECONDS", "600"))
    segment = min(30, total)
    connections = int(os.environ.get("SOAK_CONNECTIONS", "32"))
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            sys.exit(f"{tool} is not installed (scripts/install-deps.sh --bench)")
    tmp = tempfile.mkdtemp(prefix="kg-soak-")
    os.chmod(tmp, 0o755)  # nginx's workers may run as another user
    os.makedirs(os.path.join(tmp, "files"))
    with open(os.path.join(tmp, "files", "1m"), "wb") as f:
        f.write(b"d" * (1 << 20))
    nport = free_port()
    with open(os.path.join(tmp, "nginx.conf"), "w") as f:
        f.write(NGINX_CONF.format(tmp=tmp, port=nport))
    nginx = subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-p", tmp, "-e",
                              os.path.join(tmp, "error.log"), "-c",
                              os.path.join(tmp, "nginx.conf")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    g = Gateway(nport, {"threads": 2, "logging": {"access_log": False},
                        "limits": {"max_body_bytes": 2097152}})
    problems = []
    writer = None
    try:
        g.start()
        valid = g.create_key("--name", "soak", "--rate", "1000000000/s")["key"]
        limited = g.create_key("--name", "limited", "--rate", "1/1h")["key"]
        unknown = wellformed_key()

        def script(delay_ms):
            path = os.path.join(tmp, f"mix-{delay_ms}.lua")
            with open(path, "w") as f:
                f.write(WRK_SCRIPT.format(valid=valid, unknown=unknown, limited=limited,
                                          delay_ms=delay_ms, seed=14))
            return path

        # The maximum rate of this mix on this machine, then ~80% of it by pacing
        # every connection (wrk's delay() after each response).
        peak = wrk(g.port, script(0), 10, connections)
        max_rate = peak["requests"] / (peak["us"] / 1e6)
        delay_ms = max(1, round(connections * 1000 / (0.8 * max_rate) - peak["p50"] / 1000))
        print(f"max rate {max_rate:.0f} req/s (10 s, {connections} connections, p99 "
              f"{peak['p99'] / 1000:.1f} ms); target ~{0.8 * max_rate:.0f} req/s "
              f"(delay {delay_ms} ms per connection)", flush=True)
        pace = script(delay_ms)
        writer = AdminWriter(g)
        writer.start()
        pid = g.proc.pid
        print(f"{'t (s)':>6} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'200':>7} {'401':>6} "
              f"{'429':>6} {'other':>5} {'sockerr':>7} {'RSS MiB':>8} {'fds':>5} {'gen':>4}",
              flush=True)
        rows = []
        t0 = time.monotonic()
        for seg in range(total // segment):
            r = wrk(g.port, pace, segment, connections)
            if not g.running():
                problems.append(f"keygate exited ({g.proc.returncode})")
                break
            sockerr = r["connect"] + r["read"] + r["write"] + r["timeout"]
            gen = g.reload_and_wait()  # SIGHUP every segment (30 s)
            row = (round(time.monotonic() - t0), r["requests"] / (r["us"] / 1e6), r["p50"] / 1000,
                   r["p99"] / 1000, r["s200"], r["s401"], r["s429"], r["other"], sockerr,
                   reliability.rss_kib(pid) / 1024, reliability.fd_count(pid), int(gen))
            rows.append(row)
            print("{:>6} {:>7.0f} {:>7.2f} {:>7.2f} {:>7} {:>6} {:>6} {:>5} {:>7} {:>8.1f} {:>5} "
                  "{:>4}".format(*row), flush=True)
            if r["other"] or sockerr:
                problems.append(f"segment {seg}: {r['other']} unexpected statuses "
                                f"(e.g. {r['last_other']}), "
                                f"{sockerr} socket errors")
        writer.stop.set()
        writer.join(timeout=10)
        if writer.failed:
            problems.append(f"admin writes failed: {writer.failed[:5]}")
        if rows:
            warm = rows[1:] or rows
            rss = [r[9] for r in warm]
            fds = [r[10] for r in warm]
            p99 = [r[3] for r in rows]
            print(f"summary: {sum(r[4] + r[5] + r[6] + r[7] for r in rows)} requests, "
                  f"{sum(r[7] for r in rows)} unexpected statuses, "
                  f"{sum(r[8] for r in rows)} socket errors, {writer.done} admin writes "
                  f"({len(writer.failed)} failed), {len(rows)} SIGHUP reloads; "
                  f"RSS after warm-up {min(rss):.1f}-{max(rss):.1f} MiB; fds {min(fds)}-{max(fds)}; "
                  f"p99 first/last/max {p99[0]:.2f}/{p99[-1]:.2f}/{max(p99):.2f} ms")
    finally:
        if writer:
            writer.stop.set()
        g.cleanup()
        nginx.send_signal(signal.SIGQUIT)
        try:
            nginx.wait(timeout=10)
        except subprocess.TimeoutExpired:
            nginx.kill()
            nginx.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    for p in problems:
        print("PROBLEM:", p)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
