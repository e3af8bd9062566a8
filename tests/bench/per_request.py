#!/usr/bin/env python3
"""Per-request costs of `keygate serve` that do not depend on how busy the
machine is: heap allocations per request (LD_PRELOAD counting shim) and
instructions per request (valgrind callgrind) and system calls per request
(strace -c attached after the warm-up), for the valid-key path and the 401
path, with the access log off and on (JSON, to a file).

    per_request.py BUILD_DIR [--bin KEYGATE] [--mode alloc|instr|both|trace|syscalls] [--requests N]
                   [--headers wrk|browser] [--path TARGET]

--mode trace shows where the allocations come from: the shim records the call
stack of each allocation made while the N requests run, and the stacks are
printed per request, most frequent first, resolved by addr2line (inlined
frames too).

Starts its own upstream (nginx with $PEERS_DIR (../shared/bench)'s fixed 100-byte JSON
when present, else tests/integration/upstream.py) and keygate (threads: 1) on
free loopback ports in a temp dir, warms up, takes a snapshot, sends N
keep-alive requests over 8 connections, takes another snapshot and prints
(after - before) / N. Stops everything it started.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
# ../shared/bench beside the repository (or beside a worktree's parent).
PEERS_DIR = os.environ.get("PEERS_DIR") or next(
    (d for d in (os.path.join(ROOT, "..", "shared", "bench"),
                 os.path.join(ROOT, "..", "..", "shared", "bench")) if os.path.isdir(d)),
    os.path.join(ROOT, "..", "shared", "bench"))
TEMPLATE = os.path.join(PEERS_DIR, "templates", "upstream.nginx.conf")
UNKNOWN = "bk_" + "0" * 32  # what peers.sh sends on its 401 runs (not a keygate key)
# --headers browser: the fields a browser's fetch() sends besides Host and the
# key (wrk and peers.sh send only those two; the per-field costs show here).
BROWSER_FIELDS = (
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0 Safari/537.36\r\n"
    "Accept: application/json, text/plain, */*\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Accept-Language: en-US,en;q=0.9\r\n"
    "Cache-Control: no-cache\r\n"
    "Connection: keep-alive\r\n"
    "Referer: https://app.example.com/dashboard\r\n"
    "Cookie: session=abcdef0123456789; theme=dark\r\n")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class Client:
    """Keep-alive connections sending identical requests, one at a time."""

    def __init__(self, port, key, conns=8, path="/", extra=""):
        self.req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}"
                    f"X-Api-Key: {key}\r\n\r\n").encode()
        self.socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(conns)]
        for s in self.socks:
            s.settimeout(30)
        self.statuses = {}

    def one(self, s):
        s.sendall(self.req)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed")
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed mid-body")
            body += chunk
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def run(self, n):
        for i in range(n):
            self.one(self.socks[i % len(self.socks)])

    def close(self):
        for s in self.socks:
            s.close()


class World:
    def __init__(self, build, binary=None):
        self.build = build  # its tests/ has the allocation counter
        self.bin = binary or os.path.join(build, "keygate")
        self.tmp = tempfile.mkdtemp(prefix="kg-per-request.")
        self.procs = []
        self.up_port = free_port()
        os.makedirs(os.path.join(self.tmp, "tmp"))
        if shutil.which("nginx") and os.path.exists(TEMPLATE):
            with open(TEMPLATE) as f:
                conf = f.read().replace("@DIR@", self.tmp).replace("@UPSTREAM_PORT@",
                                                                    str(self.up_port))
            path = os.path.join(self.tmp, "up.conf")
            with open(path, "w") as f:
                f.write(conf)
            cmd = ["nginx", "-p", self.tmp, "-e", os.path.join(self.tmp, "up.err"), "-c", path]
        else:
            cmd = [sys.executable, os.path.join(ROOT, "tests", "integration", "upstream.py"),
                   str(self.up_port)]
        self.start(cmd, self.up_port)
        self.db = os.path.join(self.tmp, "kg.db")
        self.key = None
        self.path = "/"
        self.extra = ""  # request fields between Host and the key (--headers)

    def start(self, cmd, port, env=None, stdout=subprocess.DEVNULL):
        p = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.DEVNULL,
                             env={**os.environ, **(env or {})})
        self.procs.append(p)
        wait_port(port, p)
        return p

    def config(self, access_log):
        port = free_port()
        path = os.path.join(self.tmp, f"kg-{port}.yaml")
        cfg = {"listen": f"127.0.0.1:{port}", "threads": 1,
               "upstream": {"url": f"http://127.0.0.1:{self.up_port}"},
               "store": {"sqlite": self.db},
               "plans": {"default": {"rate": {"requests": 1000000000, "period": "1s"}}},
               "logging": {"access_log": access_log, "level": "warn"}}
        with open(path, "w") as f:
            json.dump(cfg, f)
        if self.key is None:
            # A key as users make them: a name, an owner, scopes and an allowed
            # range, each a buffer the request copies (an empty one costs nothing).
            out = subprocess.run([self.bin, "keys", "create", "--config", path,
                                  "--name", "orders-service production", "--owner", "acme-corp",
                                  "--scopes", "orders:read,orders:write",
                                  "--allow-ip", "127.0.0.0/8", "--json"],
                                 check=True, capture_output=True, text=True).stdout
            self.key = json.loads(out)["key"]
        return path, port

    def stop(self, p):
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        self.procs.remove(p)

    def close(self):
        for p in list(self.procs):
            self.stop(p)
        shutil.rmtree(self.tmp, ignore_errors=True)


def log_file(w, access_log, tag):
    return open(os.path.join(w.tmp, f"access-{tag}.log"), "w") if access_log else \
        subprocess.DEVNULL


def measure_alloc(w, access_log, key, n, trace=None):
    shim = os.path.join(w.build, "tests", "libkeygate_alloc_count.so")
    report = os.path.join(w.tmp, "allocs.txt")
    path, port = w.config(access_log)
    out = log_file(w, access_log, "alloc")
    env = {"LD_PRELOAD": shim, "KG_ALLOC_REPORT": report}
    if trace:
        env["KG_ALLOC_TRACE"] = trace
    p = w.start([w.bin, "serve", "--config", path], port, env=env, stdout=out)

    def snapshot():
        os.kill(p.pid, signal.SIGUSR2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with open(report) as f:
                    text = f.read()
                if text.endswith("\n"):
                    os.unlink(report)
                    allocs, nbytes = text.split()
                    return int(allocs), int(nbytes)
            except FileNotFoundError:
                pass
            time.sleep(0.01)
        raise RuntimeError("no allocation report")

    c = Client(port, key, path=w.path, extra=w.extra)
    c.run(2000)  # warm-up: pools, buckets, caches, connections
    time.sleep(0.2)
    a = snapshot()
    c.run(n)
    time.sleep(0.2)
    b = snapshot()
    c.close()
    w.stop(p)
    return (b[0] - a[0]) / n, (b[1] - a[1]) / n, c.statuses


def symbolize(trace_file):
    """{address: [frame text, innermost first]} for every address in the trace."""
    maps, addrs = [], set()
    with open(trace_file) as f:
        for line in f:
            if line.startswith("M "):
                parts = line.split()
                if len(parts) >= 7 and parts[6].startswith("/"):
                    lo, hi = (int(x, 16) for x in parts[1].split("-"))
                    maps.append((lo, hi, int(parts[3], 16), parts[6]))
            elif line.startswith("A "):
                addrs.update(int(a, 16) for a in line.split()[2:])
    base = {}  # each file's load address: its mapping at file offset 0
    for lo, hi, off, path in maps:
        if off == 0:
            base[path] = min(base.get(path, lo), lo)
    by_file = {}
    for a in addrs:
        for lo, hi, off, path in maps:
            if lo <= a < hi and path in base:
                by_file.setdefault(path, []).append(a)
                break
    names = {}
    for path, lst in by_file.items():
        rel = [hex(a - base[path] - 1) for a in lst]  # a return address: the call is before it
        out = subprocess.run(["addr2line", "-a", "-f", "-i", "-C", "-e", path, *rel],
                             capture_output=True, text=True).stdout.splitlines()
        frames, cur = {}, None
        i = 0
        while i < len(out):
            if out[i].startswith("0x"):
                cur = int(out[i], 16)
                frames[cur] = []
                i += 1
                continue
            func = out[i]
            loc = out[i + 1] if i + 1 < len(out) else "??"
            if len(func) > 110:
                func = func[:107] + "..."
            frames[cur].append(f"{func}  {os.path.basename(loc)}"
                               if func != "??" else f"?? {os.path.basename(path)}")
            i += 2
        for a, r in zip(lst, rel):
            names[a] = frames.get(int(r, 16), [f"?? {os.path.basename(path)}"])
    return names


def print_trace(trace_file, n, depth=14):
    stacks = {}
    with open(trace_file) as f:
        for line in f:
            if line.startswith("A "):
                parts = line.split()
                key = tuple(int(a, 16) for a in parts[2:])
                count, size = stacks.get(key, (0, 0))
                stacks[key] = (count + 1, size + int(parts[1]))
    names = symbolize(trace_file)
    skip = ("malloc", "operator new", "__libc_", "aligned_new")
    for key, (count, size) in sorted(stacks.items(), key=lambda kv: -kv[1][0]):
        print(f"  {count / n:.2f} per request, {size // count} bytes each:")
        shown = 0
        for a in key:
            for frame in names.get(a, [hex(a)]):
                if shown == 0 and frame.startswith(skip):
                    continue
                if shown < depth:
                    print(f"      {frame}")
                shown += 1


def measure_instr(w, access_log, key, n):
    if not shutil.which("valgrind"):
        return None, {}
    path, port = w.config(access_log)
    out_file = os.path.join(w.tmp, f"callgrind.{port}")
    out = log_file(w, access_log, "instr")
    p = w.start(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                 f"--callgrind-out-file={out_file}", w.bin, "serve", "--config", path], port,
                stdout=out)
    c = Client(port, key, path=w.path, extra=w.extra)
    c.run(300)
    subprocess.run(["callgrind_control", "-i", "on", str(p.pid)], check=True,
                   capture_output=True)
    c.run(200)  # instrumented warm-up
    subprocess.run(["callgrind_control", "-z", str(p.pid)], check=True, capture_output=True)
    c.run(n)
    subprocess.run(["callgrind_control", "-d", str(p.pid)], check=True, capture_output=True)
    c.close()
    w.stop(p)
    total = 0
    for name in os.listdir(w.tmp):
        if name.startswith(f"callgrind.{port}"):
            with open(os.path.join(w.tmp, name)) as f:
                for line in f:
                    if line.startswith("summary:") or line.startswith("totals:"):
                        total = max(total, int(line.split()[1]))
            if os.environ.get("KEEP_CALLGRIND"):
                shutil.copy(os.path.join(w.tmp, name), os.environ["KEEP_CALLGRIND"])
    return total / n, c.statuses


def measure_syscalls(w, access_log, key, n):
    """(system calls per request, {name: calls per request}) of every gateway thread."""
    if not shutil.which("strace"):
        return None, {}, {}
    path, port = w.config(access_log)
    out = log_file(w, access_log, "syscalls")
    p = w.start([w.bin, "serve", "--config", path], port, stdout=out)
    c = Client(port, key, path=w.path, extra=w.extra)
    c.run(2000)
    table = os.path.join(w.tmp, "strace.txt")
    # -f with -p attaches to every thread of the process; the requests start
    # once each thread names strace as its tracer.
    s = subprocess.Popen(["strace", "-f", "-c", "-o", table, "-p", str(p.pid)],
                         stderr=subprocess.DEVNULL)

    def traced(tid):
        with open(f"/proc/{p.pid}/task/{tid}/status") as f:
            return any(line.split() == ["TracerPid:", str(s.pid)] for line in f)

    deadline = time.monotonic() + 10
    while not all(traced(t) for t in os.listdir(f"/proc/{p.pid}/task")):
        if time.monotonic() > deadline:
            raise RuntimeError("strace did not attach")
        time.sleep(0.05)
    c.run(n)
    s.send_signal(signal.SIGINT)
    s.wait(timeout=30)
    c.close()
    w.stop(p)
    per = {}
    with open(table) as f:
        for line in f:
            cols = line.split()
            # % time, seconds, usecs/call, calls, [errors,] syscall
            if len(cols) >= 5 and cols[3].isdigit() and cols[-1] != "total":
                per[cols[-1]] = int(cols[3]) / n
    return sum(per.values()), per, c.statuses


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--bin", default="",
                    help="the keygate binary (default: BUILD/keygate), e.g. the profile-guided one")
    ap.add_argument("--mode", default="both",
                    choices=["alloc", "instr", "both", "trace", "syscalls"])
    ap.add_argument("--requests", type=int, default=0)
    ap.add_argument("--only", default="", help="valid or 401 (default: both)")
    ap.add_argument("--access-log", default="both", choices=["on", "off", "both"])
    ap.add_argument("--path", default="/",
                    help="request target (one longer than a short string shows per-request copies)")
    ap.add_argument("--headers", default="wrk", choices=["wrk", "browser"],
                    help="wrk: Host and the key only; browser: 8 more fields, as fetch() sends")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop what we started
    w = World(os.path.abspath(args.build), args.bin and os.path.abspath(args.bin))
    w.path = args.path
    w.extra = BROWSER_FIELDS if args.headers == "browser" else ""
    try:
        w.config(False)
        cases = [("valid key", w.key), ("401 unknown key", UNKNOWN)]
        if args.only == "valid":
            cases = cases[:1]
        elif args.only == "401":
            cases = cases[1:]
        logs = {"on": [True], "off": [False], "both": [False, True]}[args.access_log]
        print(f"{'path':<16} {'access log':<10} {'allocs/req':>10} {'bytes/req':>10} "
              f"{'instr/req':>10}  statuses")
        for name, key in cases:
            for access_log in logs:
                allocs = nbytes = instr = None
                statuses = {}
                if args.mode == "trace":
                    n = args.requests or 500
                    trace = os.path.join(w.tmp, "trace.txt")
                    allocs, nbytes, statuses = measure_alloc(w, access_log, key, n, trace)
                    print(f"{name}, access log {'on' if access_log else 'off'}: {allocs:.2f} "
                          f"allocations per request {statuses}")
                    print_trace(trace, n)
                    continue
                if args.mode == "syscalls":
                    total, per, statuses = measure_syscalls(w, access_log, key,
                                                            args.requests or 5000)
                    if total is None:
                        print("strace not found")
                        return
                    calls = ", ".join(f"{k} {v:.2f}" for k, v in
                                      sorted(per.items(), key=lambda kv: -kv[1]) if v >= 0.01)
                    print(f"{name}, access log {'on' if access_log else 'off'}: {total:.2f} "
                          f"system calls per request ({calls}) {statuses}", flush=True)
                    continue
                if args.mode in ("alloc", "both"):
                    allocs, nbytes, statuses = measure_alloc(w, access_log, key,
                                                             args.requests or 20000)
                if args.mode in ("instr", "both"):
                    instr, s2 = measure_instr(w, access_log, key, args.requests or 2000)
                    statuses = statuses or s2
                fmt = lambda v, f: "-" if v is None else format(v, f)
                print(f"{name:<16} {'on' if access_log else 'off':<10} {fmt(allocs, '.2f'):>10} "
                      f"{fmt(nbytes, '.0f'):>10} {fmt(instr, '.0f'):>10}  {statuses}", flush=True)
    finally:
        w.close()


if __name__ == "__main__":
    main()
