"""Reliability workloads (README "Reliability"), parameterised so that
test_reliability.py runs short versions in CI and tests/reliability/chaos.py
and soak.py run the long ones. Loopback only; every loop is bounded by a
count or a deadline. Each workload returns a dict of figures and a list of
problems (empty when every promise held)."""
import http.client
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import threading
import time

from harness import ADMIN_TOKEN, KEYGATE, Gateway, wait_until, wellformed_key
import rogue_upstream


# ---------------------------------------------------------------------------
# Process figures from /proc.

def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sanitized(pid):
    """True when keygate runs with ASan/UBSan (quarantined memory, probes needing fds)."""
    with open(f"/proc/{pid}/maps") as f:
        maps = f.read()
    return "libasan" in maps or "libubsan" in maps


def percentile(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def integrity(db):
    """PRAGMA integrity_check of a SQLite file (recovers a hot WAL first)."""
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


# ---------------------------------------------------------------------------
# 1. Crash safety: key writes through the admin API and the CLI, kill -9 at
# seeded points; every acknowledged write must be there after a restart.

class _Writes:
    """What was acknowledged: created keys (id -> secret) and revoked ids."""

    def __init__(self):
        self.lock = threading.Lock()
        self.created = {}
        self.revoked = set()
        self.count = 0  # acknowledged writes of this round
        self.attempted = 0
        self.tried_revoke = set()  # revocations sent: done or not when unacknowledged
        self.by_cli = 0  # acknowledged writes made by `keygate keys ...`

    def attempt(self, quota):
        with self.lock:
            self.attempted += 1
            return self.attempted <= quota

    def ack_create(self, kid, key):
        with self.lock:
            self.created[kid] = key
            self.count += 1

    def ack_revoke(self, kid):
        with self.lock:
            self.revoked.add(kid)
            self.count += 1

    def pick_live(self, rng):
        with self.lock:
            live = [k for k in self.created if k not in self.tried_revoke]
            victim = rng.choice(live) if live else None
            if victim:
                self.tried_revoke.add(victim)
            return victim


def _admin_writer(g, writes, rng, stop, killed, quota):
    conn = None
    while not stop.is_set() and writes.attempt(quota):
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", g.admin_port, timeout=10)
            victim = writes.pick_live(rng) if rng.random() < 0.25 else None
            h = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
            if victim:
                conn.request("DELETE", f"/v1/api-keys/{victim}", headers=h)
                r = conn.getresponse()
                r.read()
                if r.status == 200:
                    writes.ack_revoke(victim)
            else:
                body = json.dumps({"name": f"crash-{rng.getrandbits(32)}", "owner": "crash"})
                conn.request("POST", "/v1/api-keys", body=body, headers=h)
                r = conn.getresponse()
                data = r.read()
                if r.status == 201:
                    d = json.loads(data)["data"]
                    writes.ack_create(d["id"], d["key"])
        except (OSError, http.client.HTTPException, ValueError):
            if conn is not None:
                conn.close()
            conn = None
            if killed.is_set():
                return
    if conn is not None:
        conn.close()


def _cli_writer(g, writes, rng, stop, quota, procs):
    while not stop.is_set() and writes.attempt(quota):
        victim = writes.pick_live(rng) if rng.random() < 0.25 else None
        args = ["keys", "revoke", victim] if victim else \
            ["keys", "create", "--name", f"cli-{rng.getrandbits(32)}", "--owner", "crash", "--json"]
        p = subprocess.Popen([KEYGATE, *args, "--config", g.config_path], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=g.env)
        with writes.lock:
            procs.append(p)
        try:
            out, _ = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
        if p.returncode != 0:
            continue  # killed or failed: not acknowledged
        with writes.lock:
            writes.by_cli += 1
        if victim:
            writes.ack_revoke(victim)
        else:
            try:
                d = json.loads(out)
            except ValueError:
                continue
            writes.ack_create(d["id"], d["key"])


def crash_safety(upstream_port, seed, total_writes, kill_points, log=print):
    """Returns (figures, problems)."""
    rng = random.Random(seed)
    g = Gateway(upstream_port, {"logging": {"access_log": False}})
    problems = []
    all_writes = _Writes()
    per_round = max(2, total_writes // kill_points)
    t0 = time.monotonic()
    acked = by_cli = 0
    try:
        for rnd in range(kill_points):
            for f in ("out", "err"):  # the logs of the killed run
                if hasattr(g, f):
                    getattr(g, f).close()
            g.start()
            writes = _Writes()
            writes.created, writes.revoked = all_writes.created, all_writes.revoked
            writes.tried_revoke, writes.lock = all_writes.tried_revoke, all_writes.lock
            # Acknowledged writes before the kill: per_round on average.
            kill_after = rng.randint(max(1, per_round // 2), per_round * 3 // 2)
            stop, killed = threading.Event(), threading.Event()
            procs = []
            threads = [threading.Thread(target=_admin_writer,
                                        args=(g, writes, random.Random(rng.random()), stop,
                                              killed, per_round * 2)),
                       threading.Thread(target=_admin_writer,
                                        args=(g, writes, random.Random(rng.random()), stop,
                                              killed, per_round * 2)),
                       threading.Thread(target=_cli_writer,
                                        args=(g, writes, random.Random(rng.random()), stop,
                                              per_round * 2, procs))]
            for t in threads:
                t.start()
            wait_until(lambda: writes.count >= kill_after or not any(t.is_alive() for t in threads),
                       timeout=120, step=0.002)
            time.sleep(rng.random() * 0.02)  # land inside a write, not between two
            killed.set()
            g.proc.send_signal(signal.SIGKILL)
            with writes.lock:
                for p in procs:
                    if p.poll() is None:
                        p.send_signal(signal.SIGKILL)
            g.proc.wait()
            stop.set()
            for t in threads:
                t.join(timeout=120)
            acked += writes.count
            by_cli += writes.by_cli
            result = integrity(g.db)
            if result != "ok":
                problems.append(f"round {rnd}: integrity_check: {result}")
            log(f"  kill {rnd + 1}/{kill_points}: after {writes.count} acknowledged writes "
                f"(attempted {writes.attempted}), integrity {result}")
        # Restart once more and check every acknowledged write through the CLI and the proxy.
        g.out.close()
        g.err.close()
        g.start()
        listed = {k["id"]: k for k in json.loads(g.cli("keys", "list", "--status", "all",
                                                       "--json").stdout)}
        missing = [k for k in all_writes.created if k not in listed]
        if missing:
            problems.append(f"{len(missing)} acknowledged keys missing after restart: {missing[:5]}")
        not_revoked = [k for k in all_writes.revoked
                       if k in listed and not listed[k].get("revoked_at")]
        if not_revoked:
            problems.append(f"{len(not_revoked)} acknowledged revocations lost: {not_revoked[:5]}")
        sample = list(all_writes.created.items())
        rng.shuffle(sample)
        for kid, key in sample[:20]:
            if kid in all_writes.tried_revoke and kid not in all_writes.revoked:
                continue  # revoked or not: the revocation was never acknowledged
            want = 401 if kid in all_writes.revoked else 200
            got = g.request("GET", "/crash", headers={"Authorization": f"Bearer {key}"}).status
            if got != want:
                problems.append(f"key {kid}: {got} through the proxy, expected {want}")
        g.stop()
        result = integrity(g.db)
        if result != "ok":
            problems.append(f"final integrity_check: {result}")
        figures = {"kills": kill_points, "acknowledged_writes": acked, "by_cli": by_cli,
                   "keys_created": len(all_writes.created), "keys_revoked": len(all_writes.revoked),
                   "lost": len(missing) + len(not_revoked), "integrity": result,
                   "seconds": round(time.monotonic() - t0, 1)}
        return figures, problems
    finally:
        g.cleanup()


# ---------------------------------------------------------------------------
# 2. Upstream chaos under load: every client gets a response or a clean close,
# never another client's bytes; no fd or memory growth; keygate never exits.

UPSTREAM_CHAOS_CONFIG = {
    "upstream": {"timeout": "1s", "connect_timeout": "1s", "max_idle_connections": 8},
    "logging": {"access_log": False},
}


def _chaos_client(g, key, name, count, chaos, out, deadline):
    tally = {"ok": 0, "502": 0, "504": 0, "cut": 0, "closed": 0}
    problems = []
    conn = None
    for n in range(count):
        if time.monotonic() > deadline:
            break
        tag = f"{name}-{n}"
        want = chaos.body_for(tag)
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", g.port, timeout=15)
            conn.request("GET", f"/tag/{tag}", headers={"Authorization": f"Bearer {key}"})
            r = conn.getresponse()
            body = r.read()
            if r.status == 200:
                if r.getheader("X-Tag") != tag or body != want:
                    problems.append(f"{tag}: 200 carrying {r.getheader('X-Tag')!r} {body[:60]!r}")
                tally["ok"] += 1
            elif r.status in (502, 504):
                if json.loads(body)["error"]["code"] not in ("UPSTREAM_ERROR", "UPSTREAM_TIMEOUT"):
                    problems.append(f"{tag}: {r.status} {body[:100]!r}")
                tally[str(r.status)] += 1
            else:
                problems.append(f"{tag}: unexpected {r.status} {body[:100]!r}")
            if r.will_close:
                conn.close()
                conn = None
            continue
        except http.client.IncompleteRead as e:
            if not want.startswith(e.partial):
                problems.append(f"{tag}: cut body is not its own: {e.partial[:60]!r}")
            tally["cut"] += 1
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            tally["closed"] += 1
        except socket.timeout:
            problems.append(f"{tag}: no answer and no close within 15 s")
        except (http.client.HTTPException, OSError, ValueError) as e:
            problems.append(f"{tag}: {e!r}")
        if conn is not None:
            conn.close()
            conn = None
    if conn is not None:
        conn.close()
    out.append((tally, problems))


def upstream_chaos(seed, clients, requests_per_client, seconds=600, log=print, samples=None):
    """Returns (figures, problems). `samples` (a list) receives (t, fds, rss KiB) rows."""
    chaos = rogue_upstream.ChaosUpstream(seed)
    g = Gateway(chaos.port, UPSTREAM_CHAOS_CONFIG)
    problems = []
    try:
        g.start()
        key = g.create_key("--name", "chaos", "--rate", "1000000/s")["key"]
        pid = g.proc.pid
        base_fds = fd_count(pid)
        t0 = time.monotonic()
        deadline = t0 + seconds
        rows = []
        halves = []
        for half in range(2):
            out = []
            threads = [threading.Thread(target=_chaos_client,
                                        args=(g, key, f"h{half}c{i}", requests_per_client // 2,
                                              chaos, out, deadline))
                       for i in range(clients)]
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads) and time.monotonic() < deadline + 60:
                rows.append((round(time.monotonic() - t0, 1), fd_count(pid), rss_kib(pid)))
                time.sleep(1.0)  # the sampling interval
            for t in threads:
                t.join(timeout=60)
            if not g.running():
                problems.append(f"keygate exited ({g.proc.returncode}):\n" + g.logs()[-2000:])
                break
            # Clients gone, stalled upstream connections timed out: back to the pool's size.
            settled = wait_until(lambda: fd_count(pid) <= base_fds + 8 + 2, timeout=20, step=0.1)
            halves.append((fd_count(pid), rss_kib(pid)))
            if not settled:
                problems.append(f"after half {half + 1}: {fd_count(pid)} fds open, "
                                f"{base_fds} at start (+8 pooled allowed)")
            for tally, p in out:
                problems.extend(p)
            tallies = {}
            for tally, _ in out:
                for k, v in tally.items():
                    tallies[k] = tallies.get(k, 0) + v
            halves[-1] += (tallies,)
        if samples is not None:
            samples.extend(rows)
        total = {}
        for h in halves:
            for k, v in h[2].items():
                total[k] = total.get(k, 0) + v
        behaviours = {}
        for bs in chaos.seen.values():
            for b in bs:
                behaviours[b] = behaviours.get(b, 0) + 1
        # (ASan's quarantine holds freed memory: RSS says nothing under sanitizers.)
        if len(halves) == 2 and halves[1][1] > halves[0][1] * 1.25 + 4096 and not sanitized(pid):
            problems.append(f"RSS grew from {halves[0][1]} KiB to {halves[1][1]} KiB")
        figures = {"requests": sum(total.values()), "outcomes": total,
                   "upstream_behaviours": behaviours, "fds_start": base_fds,
                   "fds_after_halves": [h[0] for h in halves],
                   "rss_kib_after_halves": [h[1] for h in halves],
                   "peak_fds": max((r[1] for r in rows), default=0),
                   "seconds": round(time.monotonic() - t0, 1), "alive": g.running()}
        return figures, problems
    finally:
        g.cleanup()
        chaos.close()


# ---------------------------------------------------------------------------
# 3. Floods: idle connections, slowloris heads, unknown keys, too few
# descriptors. A probe keeps sending valid requests; they must keep being
# served, and keygate's CPU time while a flood merely sits there stays small
# (an accept or read loop that spins would burn a core).

FLOOD_CONFIG = {
    "limits": {"header_timeout": "4s"},
    "logging": {"access_log": False},
}


class Probe:
    """Valid requests one after another on a keep-alive connection."""

    def __init__(self, g, key, timeout=20):
        self.g, self.key, self.timeout = g, key, timeout
        self.latencies, self.failures = [], []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        conn = None
        for _ in range(1_000_000):
            if self.stop.is_set():
                break
            t = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.g.port, timeout=self.timeout)
                conn.request("GET", "/probe", headers={"Authorization": f"Bearer {self.key}"})
                r = conn.getresponse()
                r.read()
                if r.status == 200:
                    self.latencies.append(time.monotonic() - t)
                else:
                    self.failures.append(r.status)
            except (OSError, http.client.HTTPException) as e:
                self.failures.append(repr(e))
                if conn is not None:
                    conn.close()
                conn = None
            time.sleep(0.005)
        if conn is not None:
            conn.close()

    def finish(self):
        self.stop.set()
        self.thread.join(timeout=60)
        return {"served": len(self.latencies), "failed": len(self.failures),
                "p99_ms": round(percentile(self.latencies, 99) * 1000, 1),
                "p50_ms": round(percentile(self.latencies, 50) * 1000, 1),
                **({"errors": self.failures[:3]} if self.failures else {})}


def _cpu_window(pid, seconds=1.0):
    before, t = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)  # a measuring window, not a wait for state
    return (cpu_seconds(pid) - before) / (time.monotonic() - t)


def _open_idle(port, n):
    socks = []
    for _ in range(n):
        try:
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        except OSError:
            break
    return socks


def _unknown_key_client(port, count, out):
    statuses = {}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    keys = [wellformed_key() for _ in range(64)]
    for i in range(count):
        try:
            conn.request("GET", "/x", headers={"Authorization": f"Bearer {keys[i % 64]}{''}"})
            r = conn.getresponse()
            r.read()
            statuses[r.status] = statuses.get(r.status, 0) + 1
        except (OSError, http.client.HTTPException) as e:
            statuses[repr(e)[:40]] = statuses.get(repr(e)[:40], 0) + 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    conn.close()
    out.append(statuses)


def floods(upstream_port, idle=1000, slowloris=200, unknown=4000, nofile=64, log=print,
           unknown_runner=None):
    """Returns (figures, problems). `unknown_runner(port, count)` may replace the
    python client for the unknown-key flood (chaos.py uses wrk); it returns
    {status: count}."""
    import resource
    problems = []
    figures = {}
    own_soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft = own_soft
    want = idle + slowloris + 1024  # for this process and keygate (which inherits it)
    if soft < want and (hard == resource.RLIM_INFINITY or hard > soft):
        resource.setrlimit(resource.RLIMIT_NOFILE,
                           (want if hard == resource.RLIM_INFINITY else min(want, hard), hard))
    g = Gateway(upstream_port, FLOOD_CONFIG)
    try:
        g.start()
        key = g.create_key("--name", "probe", "--rate", "1000000/s")["key"]
        pid = g.proc.pid

        # Idle connections.
        socks = _open_idle(g.port, idle)
        opened = len(socks)
        wait_until(lambda: fd_count(pid) >= opened, timeout=10)
        cpu = _cpu_window(pid)
        probe = Probe(g, key)
        wait_until(lambda: len(probe.latencies) >= 200, timeout=5)
        r = probe.finish()
        for s in socks:
            s.close()
        figures["idle"] = {"connections": opened, "cpu_share": round(cpu, 3), **r}
        if opened < idle:
            problems.append(f"idle: only {opened} of {idle} connections opened")

        # Slowloris: heads that never end, a byte every 0.5 s.
        probe = Probe(g, key)
        socks = _open_idle(g.port, slowloris)
        for s in socks:
            s.sendall(b"GET /slow HTTP/1.1\r\nHost: a\r\n")
            s.setblocking(False)
        t0 = time.monotonic()
        open_socks = list(socks)
        cpu_samples = []
        cut_after = None
        for step in range(60):  # 60 x 0.5 s at most
            c0 = cpu_seconds(pid)
            time.sleep(0.5)
            cpu_samples.append((cpu_seconds(pid) - c0) / 0.5)
            still = []
            for s in open_socks:
                try:
                    s.send(b"X")
                    data = s.recv(65536)
                    if data == b"":
                        continue  # closed by keygate
                    still.append(s)  # an answer (e.g. 408): keygate closes next
                except BlockingIOError:
                    still.append(s)
                except OSError:
                    pass  # reset or closed
            open_socks = still
            if not open_socks:
                cut_after = time.monotonic() - t0
                break
        r = probe.finish()
        for s in socks:
            s.close()
        figures["slowloris"] = {"connections": len(socks), "all_cut_after_s":
                                round(cut_after, 1) if cut_after else None,
                                "cpu_share_max": round(max(cpu_samples), 3), **r}
        if cut_after is None:
            problems.append(f"slowloris: {len(open_socks)} heads still open after 30 s")

        # Unknown keys.
        probe = Probe(g, key)
        c0, t0 = cpu_seconds(pid), time.monotonic()
        if unknown_runner:
            statuses = unknown_runner(g.port, unknown)
        else:
            outs = []
            ts = [threading.Thread(target=_unknown_key_client, args=(g.port, unknown // 4, outs))
                  for _ in range(4)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(timeout=600)
            statuses = {}
            for o in outs:
                for k, v in o.items():
                    statuses[k] = statuses.get(k, 0) + v
        took = time.monotonic() - t0
        cpu = cpu_seconds(pid) - c0
        r = probe.finish()
        figures["unknown_keys"] = {"requests": sum(statuses.values()), "statuses": statuses,
                                   "per_second": round(sum(statuses.values()) / took),
                                   "cpu_s": round(cpu, 1), **r}
        if set(statuses) != {401}:
            problems.append(f"unknown keys: statuses {statuses}")
        for name in ("idle", "slowloris", "unknown_keys"):
            if figures[name]["failed"] or not figures[name]["served"]:
                problems.append(f"{name}: probe {figures[name]}")
        if figures["idle"]["cpu_share"] > 0.2 or figures["slowloris"]["cpu_share_max"] > 0.5:
            problems.append(f"CPU while flooded: {figures['idle']}, {figures['slowloris']}")
        if not g.running():
            problems.append("keygate exited")
    finally:
        g.cleanup()

    # Too few descriptors: keygate started with RLIMIT_NOFILE = nofile.
    g = Gateway(upstream_port, FLOOD_CONFIG)
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))  # inherited by keygate
        try:
            g.start()
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        pid = g.proc.pid
        if sanitized(pid):
            # UBSan's vptr check opens a pipe to probe memory: out of descriptors
            # it reports a false error and aborts (see test_security's EMFILE test).
            figures["fd_exhaustion"] = {"skipped": "sanitizers need free descriptors"}
            return figures, problems
        key = g.create_key("--name", "probe", "--rate", "1000000/s")["key"]
        flood_start = time.monotonic()
        socks = _open_idle(g.port, nofile * 2)  # the rest wait in the backlog
        exhausted = wait_until(lambda: fd_count(pid) >= nofile - 1, timeout=10)
        cpu = _cpu_window(pid)
        t0 = time.monotonic()
        probe = Probe(g, key, timeout=30)
        # (A probe accepted while no descriptor is left for its upstream socket gets a 502.)
        wait_until(lambda: len(probe.latencies) >= 1, timeout=30)
        first = time.monotonic() - t0
        wait_until(lambda: len(probe.latencies) >= 100, timeout=10)
        r = probe.finish()
        for s in socks:
            s.close()
        # Each failing accept used to log a line (every 50 ms back-off, per thread):
        # now the first, then one per 5 s per acceptor.
        flood_seconds = time.monotonic() - flood_start
        lines = sum(1 for e in g.log_events() if e.get("msg") == "accept failed")
        most = g.config.get("threads", 2) * (1 + flood_seconds / 5) + 1
        if lines > most:
            problems.append(f"fd exhaustion: {lines} 'accept failed' lines in "
                            f"{flood_seconds:.0f} s (at most {most:.0f} expected)")
        figures["fd_exhaustion"] = {"nofile": nofile, "connections": len(socks),
                                    "accept_failed_lines": lines,
                                    "answered_502_503": sum(f in (502, 503) for f in probe.failures),
                                    "exhausted": exhausted, "cpu_share": round(cpu, 3),
                                    "first_valid_served_after_s": round(first, 1), **r}
        if not exhausted:
            problems.append("fd exhaustion: keygate never ran out of descriptors")
        if cpu > 0.2:
            problems.append(f"fd exhaustion: accept loop spins ({cpu:.2f} of a core)")
        # Out of descriptors for an upstream socket, a 502/503 answer is a clean refusal.
        unclean = [f for f in probe.failures if f not in (502, 503)]
        if not r["served"] or unclean:
            problems.append(f"fd exhaustion: probe {r}, {unclean[:3]}")
        if not g.running():
            problems.append("keygate exited under fd exhaustion")
    finally:
        g.cleanup()
        resource.setrlimit(resource.RLIMIT_NOFILE, (own_soft, hard))
    return figures, problems
