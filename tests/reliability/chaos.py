#!/usr/bin/env python3
"""`make chaos`: the long versions of the reliability workloads whose short
versions run in ctest (tests/integration/test_reliability.py):
  1. crash safety: 1,000 key writes (admin API and CLI) with kill -9 at 25
     seeded points; every acknowledged write present after restart,
     PRAGMA integrity_check ok after every kill;
  2. upstream chaos: 16 clients x 1,000 tagged requests against an upstream
     that resets, stalls, sends garbage, cuts bodies, answers slowly;
  3. floods: 5,000 idle connections, 500 slowloris heads, 100,000 unknown-key
     requests (wrk when installed), RLIMIT_NOFILE 64.
CHAOS_SEED picks the seed (default 14); CHAOS_ONLY=crash|upstream|floods one part.
Exits 1 when a promise broke. Loopback only; every loop bounded."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from harness import wellformed_key  # noqa: E402
import reliability  # noqa: E402
import upstream  # noqa: E402

WRK_UNKNOWN = """
local keys = {{{keys}}}
n, s401, other = 0, 0, 0  -- globals: done() reads them with thread:get
function request()
  n = n + 1
  return wrk.format("GET", "/v1/x", {{["Authorization"] = "Bearer " .. keys[n % #keys + 1]}})
end
function response(status) if status == 401 then s401 = s401 + 1 else other = other + 1 end end
local threads = {{}}
function setup(t) table.insert(threads, t) end
function done(summary)
  local a, b = 0, 0
  for _, t in ipairs(threads) do a = a + t:get("s401"); b = b + t:get("other") end
  local e = summary.errors
  io.write(string.format("RESULT s401=%d other=%d sockerr=%d\\n", a, b,
    e.connect + e.read + e.write + e.timeout))
end
"""


def wrk_unknown(port, count):
    """100k unknown-key requests with wrk: 4 connections, stopped once `count` are done
    (wrk runs for a duration: we give it one long enough and stop at the count via -d)."""
    tmp = tempfile.mkdtemp(prefix="kg-chaos-")
    try:
        script = os.path.join(tmp, "unknown.lua")
        keys = ",".join(f'"{wellformed_key()}"' for _ in range(1000))
        with open(script, "w") as f:
            f.write(WRK_UNKNOWN.format(keys=keys))
        statuses = {}
        done, t0 = 0, time.monotonic()
        for _ in range(100):  # 2 s runs until `count` requests were answered
            if done >= count:
                break
            p = subprocess.run(["wrk", "-t2", "-c8", "-d2s", "-s", script,
                                f"http://127.0.0.1:{port}/"], capture_output=True, text=True,
                               timeout=120)
            m = re.search(r"RESULT s401=(\d+) other=(\d+) sockerr=(\d+)", p.stdout)
            if not m:
                raise RuntimeError(p.stdout + p.stderr)
            for k, v in zip((401, "other", "socket errors"), map(int, m.groups())):
                if v:
                    statuses[k] = statuses.get(k, 0) + v
            done += int(m.group(1)) + int(m.group(2))
        return statuses
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    seed = int(os.environ.get("CHAOS_SEED", "14"))
    only = os.environ.get("CHAOS_ONLY")
    problems = []
    up = upstream.start()
    try:
        if only in (None, "crash"):
            print("== crash safety: 1,000 key writes, kill -9 at 25 points", flush=True)
            f, p = reliability.crash_safety(up.server_port, seed, total_writes=1000,
                                            kill_points=25)
            print(json.dumps(f), flush=True)
            problems += p
        if only in (None, "upstream"):
            print("== upstream chaos: 16 clients x 1,000 tagged requests", flush=True)
            samples = []
            f, p = reliability.upstream_chaos(seed, clients=16, requests_per_client=1000,
                                              seconds=900, samples=samples)
            step = max(1, len(samples) // 12)
            print(" t (s)  fds  RSS KiB")
            for t, fds, rss in samples[::step]:
                print(f"{t:>6} {fds:>4} {rss:>8}")
            print(json.dumps(f), flush=True)
            problems += p
        if only in (None, "floods"):
            print("== floods: 5,000 idle, 500 slowloris, 100,000 unknown keys, nofile 64",
                  flush=True)
            runner = wrk_unknown if shutil.which("wrk") else None
            f, p = reliability.floods(up.server_port, idle=5000, slowloris=500, unknown=100_000,
                                      nofile=64, unknown_runner=runner)
            for name, figures in f.items():
                print(f"{name}: {json.dumps(figures)}", flush=True)
            problems += p
    finally:
        up.shutdown()
        up.server_close()
    for p in problems:
        print("PROBLEM:", p)
    print("chaos:", "FAILED" if problems else "all promises held")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
