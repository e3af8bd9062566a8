"""Starts the real keygate binary against a real upstream and a real SQLite
file in a temp folder, and speaks HTTP to it. Every wait is bounded."""
import hashlib
import hmac
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import zlib

import upstream

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, "..", "..", "config", "examples")
KEYGATE = os.path.abspath(os.environ.get("KEYGATE_BIN") or os.path.join(HERE, "..", "..", "build", "keygate"))
ADMIN_TOKEN = "test-admin-token-0123456789"



NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)


def nginx_conf(tmp, http_body):
    """A main nginx config that runs unprivileged in `tmp` (no master process,
    every log and temp path inside it) with `http_body` in its http {} block."""
    return f"""daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log {tmp}/access.log;
  client_body_temp_path {tmp}/client_body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
{http_body}
}}
"""


def nginx_command(tmp, conf):
    """How to start nginx on `conf` (from nginx_conf) in `tmp`."""
    return [NGINX, "-p", tmp, "-e", os.path.join(tmp, "error.log"), "-c", conf]


def free_port():
    """A port that was free a moment ago. Racy (another test may take it before
    it is used): prefer `listen: 127.0.0.1:0` (Gateway does that) or a socket
    you keep (ClosedPort, Blackhole, RawUpstream)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ClosedPort:
    """A loopback port bound but not listening, held for the test: connecting
    to it is refused (RST), and no other process can take it meanwhile."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def close(self):
        self.sock.close()


class Blackhole:
    """A loopback port whose accept queue is full and never drained: the
    kernel drops further SYNs, so a connect to it hangs until the caller's
    own timeout (the TCP handshake never completes). Still loopback only."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.fillers = []
        for _ in range(8):  # listen(0) queues one connection; fill until a connect hangs
            c = socket.socket()
            c.settimeout(0.5)
            try:
                c.connect(("127.0.0.1", self.port))
                self.fillers.append(c)
            except OSError:
                c.close()
                return
        raise AssertionError("could not fill the accept queue of the blackhole port")

    def close(self):
        for c in self.fillers:
            c.close()
        self.sock.close()


def read_head(conn):
    """Reads from a socket until the end of an HTTP head; returns (head, rest)."""
    data = b""
    while b"\r\n\r\n" not in data:
        part = conn.recv(65536)
        if not part:
            break
        data += part
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def read_response(sock, pending=b""):
    """One response with a Content-Length body from `sock`, after the bytes
    already read (`pending`): (status line, body, the bytes that followed).
    Raises AssertionError when the peer closes first; bounded by the socket's
    timeout."""
    while b"\r\n\r\n" not in pending:
        part = sock.recv(65536)
        if not part:
            raise AssertionError(f"closed before a response (after {pending[:200]!r})")
        pending += part
    head, _, rest = pending.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))
    while len(rest) < length:
        part = sock.recv(65536)
        if not part:
            raise AssertionError("closed inside a body")
        rest += part
    return head.split(b"\r\n")[0], rest[:length], rest[length:]


class RawUpstream:
    """A scripted upstream on 127.0.0.1:<port 0>: every accepted connection
    is handed to `handler(upstream, conn, head)` in its own thread once a
    request head has arrived. `requests` counts heads received; `arrived` is set at each.
    `release` is an Event handlers may wait on (see hold())."""

    def __init__(self, handler):
        self.handler = handler
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.conns = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                if self.closed:
                    conn.close()
                    return
                self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            head, _ = read_head(conn)
            if not head:
                return
            with self.lock:
                self.requests += 1
            self.arrived.set()
            self.handler(self, conn, head)
        except OSError:
            pass

    def close(self):
        self.release.set()
        with self.lock:
            self.closed = True
            conns, self.conns = self.conns, []
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() thread
        except OSError:
            pass
        self.sock.close()
        for c in conns:
            try:
                c.close()
            except OSError:
                pass

    # Handlers.
    @staticmethod
    def reset(up, conn, head):
        """Closes with a TCP RST, before sending a byte."""
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        conn.close()

    @staticmethod
    def malformed(up, conn, head):
        conn.sendall(b"HTTP/1.1 two hundred OK\r\nContent-Length: 2\r\n\r\nhi")
        up.release.wait(30)

    @staticmethod
    def hold(up, conn, head):
        """Answers 200 only once `release` is set (or never, if the test ends first)."""
        if up.release.wait(120):
            body = b'{"held": true}'
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


def exchange(port, data, timeout=10.0, until_close=True):
    """Sends raw bytes; returns (everything read, closed) where `closed` is
    True when the peer closed (EOF or reset) and False when `timeout` passed
    first. A gateway that accepts and hangs therefore shows as closed=False."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return b"", True
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                part = s.recv(65536)
            except socket.timeout:
                return out, False
            except ConnectionResetError:
                return out, True
            if not part:
                return out, True
            out += part
            if not until_close and b"\r\n\r\n" in out:
                return out, False
        return out, False


B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def wellformed_key(head="kg_live_"):
    """A key of the right shape and checksum that no store holds (SPEC §2)."""
    body = "".join(random.choice(B62) for _ in range(32))
    v = zlib.crc32((head + body).encode())
    check = ""
    for _ in range(6):
        check = B62[v % 62] + check
        v //= 62
    return head + body + check


def key_hash(key, pepper=None):
    """What the store must hold for `key`: SHA-256, or HMAC-SHA-256 with the pepper."""
    if pepper is None:
        return hashlib.sha256(key.encode()).digest()
    return hmac.new(pepper.encode(), key.encode(), hashlib.sha256).digest()


def wait_until(pred, timeout=10.0, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return False


def bound_ports(log_text):
    """(proxy port, admin port, admin off) as keygate logs them at start-up
    ("listening" and "admin API listening" carry the bound port, so a config
    can say port 0); None where not logged yet. JSON or text log format."""
    proxy = admin = None
    admin_off = False
    for line in log_text.splitlines():
        e = None
        if line.startswith("{"):
            try:
                e = json.loads(line)
            except ValueError:
                continue  # a line still being written
        if e is not None:
            msg = str(e.get("msg", ""))
            if msg == "listening":
                proxy = e.get("port")
            elif msg == "admin API listening":
                admin = e.get("port")
            elif msg.startswith("admin API off"):
                admin_off = True
            continue
        m = re.search(r" (admin API )?listening .*?port=(\d+)", line)
        if m:
            if m.group(1):
                admin = int(m.group(2))
            else:
                proxy = int(m.group(2))
        elif " admin API off" in line:
            admin_off = True
    return proxy, admin, admin_off


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-case name -> value
        self.body = body

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        return self.headers.get(name.lower())


class Gateway:
    """One keygate process. `config` is merged over a minimal test config and
    written as JSON (valid YAML). Both listeners bind port 0; the ports the
    kernel picked are read from the "listening" and "admin API listening" log
    lines at start (so `port` and `admin_port` are set once started)."""

    def __init__(self, upstream_port, config=None, tmp=None, env=None, example=None):
        self.tmp = tmp or tempfile.mkdtemp(prefix="kg-test-")
        self.port = None
        self.admin_port = None
        self.db = os.path.join(self.tmp, "keygate.db")
        self.config = {
            "listen": "127.0.0.1:0",
            "threads": 2,
            "upstream": {"url": f"http://127.0.0.1:{upstream_port}", "timeout": "5s",
                         "connect_timeout": "1s"},
            "store": {"sqlite": self.db},
            "admin": {"listen": "127.0.0.1:0", "token": ADMIN_TOKEN},
            "shutdown_timeout": "5s",
        }
        if os.environ.get("KEYGATE_TEST_STORE") == "postgres":  # the same tests on PostgreSQL
            import pg
            self.config["store"] = {"postgres": pg.shared().database_for(self.tmp)}
        for k, v in (config or {}).items():
            if isinstance(v, dict) and isinstance(self.config.get(k), dict):
                self.config[k] = {**self.config[k], **v}
            else:
                self.config[k] = v
        self.config_path = os.path.join(self.tmp, "keygate.yaml")
        self.env = {**os.environ, **(env or {})}
        self.proc = None
        if example:
            # An example file is used exactly as shipped; only what it reads from
            # the environment (addresses, store, token) is set.
            self.config_path = example
            self.env.update({"KEYGATE_LISTEN": "127.0.0.1:0",
                             "KEYGATE_UPSTREAM": f"http://127.0.0.1:{upstream_port}",
                             "KEYGATE_ADMIN_LISTEN": "127.0.0.1:0",
                             "KEYGATE_ADMIN_TOKEN": ADMIN_TOKEN, "KEYGATE_DB": self.db})
            for k, v in (env or {}).items():
                self.env[k] = v
        else:
            self.write_config()

    def write_config(self, config=None):
        with open(self.config_path, "w") as f:
            json.dump(config or self.config, f, indent=2)

    def cli(self, *args, check=True, config=None, env=None):
        """Runs `keygate ARGS --config <this gateway's file>` (or `config`)."""
        p = subprocess.run([KEYGATE, *args, "--config", config or self.config_path],
                           capture_output=True, text=True, timeout=120,
                           env={**self.env, **(env or {})})
        if check and p.returncode != 0:
            raise AssertionError(f"keygate {' '.join(args)} failed ({p.returncode}): {p.stderr}")
        return p

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def create_key(self, *args):
        """Creates a key with the CLI; while serving, waits until the gateway has
        picked it up (SPEC: within 1 s; bounded generously here for slow
        sanitizer runs) so tests do not race the refresh."""
        before = self.metric("keygate_keys_loaded") if self.running() and self.admin_port else None
        key = json.loads(self.cli("keys", "create", "--json", *args).stdout)
        if before is not None:
            assert wait_until(lambda: self.metric("keygate_keys_loaded") > before, timeout=15), \
                "the running gateway did not pick up the new key within 15 s"
        return key

    def start(self, timeout=60):
        self.out = open(os.path.join(self.tmp, "stdout.log"), "wb")
        self.err = open(os.path.join(self.tmp, "stderr.log"), "wb")
        self.port = self.admin_port = None
        self.proc = subprocess.Popen([KEYGATE, "serve", "--config", self.config_path],
                                     stdout=self.out, stderr=self.err, env=self.env)
        ok = wait_until(self._live, timeout=timeout)
        if not ok:
            self.stop()
            raise AssertionError("keygate did not start:\n" + self.logs())
        return self

    def log_events(self, stream="stderr"):
        """The JSON lines of stderr (application log) or stdout (access log)."""
        out = []
        p = os.path.join(self.tmp, f"{stream}.log")
        if not os.path.exists(p):
            return out
        with open(p, errors="replace") as f:
            for line in f:
                if line.startswith("{"):
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        pass  # a line still being written
        return out

    def access_log(self):
        return [e for e in self.log_events("stdout") if e.get("type") == "access"]

    def _bound_ports(self):
        """(proxy port, admin port or None, admin off) from the start-up log."""
        return bound_ports(self.logs())

    def _live(self):
        if self.proc.poll() is not None:
            return False
        proxy, admin, admin_off = self._bound_ports()
        if proxy is None or (admin is None and not admin_off):
            return False
        self.port, self.admin_port = proxy, admin
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def cleanup(self):
        self.stop()
        for f in ("out", "err"):
            if hasattr(self, f):
                getattr(self, f).close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def logs(self):
        text = ""
        for name in ("stderr.log", "stdout.log"):
            p = os.path.join(self.tmp, name)
            if os.path.exists(p):
                with open(p, errors="replace") as f:
                    text += f.read()
        return text

    def connection(self, admin=False, timeout=10):
        return http.client.HTTPConnection("127.0.0.1", self.admin_port if admin else self.port,
                                          timeout=timeout)

    def request(self, method, path, headers=None, body=None, admin=False, conn=None, timeout=10):
        own = conn is None
        c = conn or self.connection(admin, timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
        finally:
            if own:
                c.close()

    def admin(self, method, path, body=None, token=ADMIN_TOKEN, headers=None):
        h = {"Authorization": f"Bearer {token}"} if token else {}
        h.update(headers or {})
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            h["Content-Type"] = "application/json"
        return self.request(method, path, headers=h, body=data, admin=True)

    def metric(self, name, labels="", required=False):
        """A sample of the admin /metrics page; 0.0 when absent, unless `required`
        (then an absent metric fails the test instead of reading as zero)."""
        text = self.request("GET", "/metrics", admin=True).body.decode()
        want = name + ("{" + labels + "}" if labels else "")
        for line in text.splitlines():
            if line.startswith(want + " "):
                return float(line.split()[-1])
        if required:
            raise AssertionError(f"metric {want} is not exposed")
        return 0.0

    def metric_reaching(self, name, labels="", value=1, timeout=10):
        """The sample once it reaches `value` (or after `timeout`): a request is
        counted when its response has been written, so a client can read the
        response before the count moves. Compare the result exactly: a count
        above `value`, or one that never got there, still fails the test."""
        wait_until(lambda: self.metric(name, labels) >= value, timeout=timeout)
        return self.metric(name, labels)

    def generation(self):
        return self.metric("keygate_config_generation", required=True)

    def reload_and_wait(self, config=None, timeout=30):
        """Writes `config` (if given), sends SIGHUP and waits until
        keygate_config_generation moves: only then is the new config in force
        on every thread. Returns the new generation."""
        if config is not None:
            self.config = config
            self.write_config()
        before = self.generation()
        self.proc.send_signal(signal.SIGHUP)
        if not wait_until(lambda: self.generation() > before, timeout=timeout):
            raise AssertionError("the reload was not adopted:\n" + self.logs()[-3000:])
        return self.generation()

    def reload_rejected(self, timeout=30):
        """Sends SIGHUP for a file that must fail validation; waits until the
        gateway reports the failed reload and checks the generation kept."""
        before = self.generation()
        assert self.metric("keygate_config_last_reload_successful", required=True) == 1, \
            "the previous reload failed already: this wait would prove nothing"
        self.proc.send_signal(signal.SIGHUP)
        if not wait_until(lambda: self.metric("keygate_config_last_reload_successful") == 0,
                          timeout=timeout):
            raise AssertionError("the bad reload was not reported")
        assert self.generation() == before, "a rejected config was adopted"

    def listening_ports(self):
        """TCP ports this process listens on (from /proc: inodes of its sockets)."""
        inodes = set()
        fd_dir = f"/proc/{self.proc.pid}/fd"
        for fd in os.listdir(fd_dir):
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        ports = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            if not os.path.exists(table):
                continue
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                        ports.add(int(cols[1].rsplit(":", 1)[1], 16))
        return ports


class GatewayTest(unittest.TestCase):
    """Base: one upstream per class, a fresh gateway per test via self.gateway(...)."""

    @classmethod
    def setUpClass(cls):
        cls.upstream = upstream.start()

    @classmethod
    def tearDownClass(cls):
        cls.upstream.shutdown()
        cls.upstream.server_close()

    def gateway(self, config=None, start=True, env=None, example=None):
        g = Gateway(self.upstream.server_port, config, env=env, example=example)
        self.addCleanup(g.cleanup)
        if start:
            g.start()
        return g

    # Loopback peers that live as long as the test.
    def closed_port(self):
        p = ClosedPort()
        self.addCleanup(p.close)
        return p

    def blackhole(self):
        b = Blackhole()
        self.addCleanup(b.close)
        return b

    def raw_upstream(self, handler):
        u = RawUpstream(handler)
        self.addCleanup(u.close)
        return u

    def assertEnvelope(self, resp, status, code, reason=None):
        self.assertEqual(resp.status, status, resp.body)
        self.assertEqual(resp.header("content-type"), "application/json")
        body = resp.json()
        self.assertIs(body["success"], False)
        self.assertEqual(body["error"]["code"], code)
        self.assertTrue(body["error"]["message"])
        self.assertEqual(body["error"]["request_id"], resp.header("x-request-id"))
        if reason is not None:
            self.assertEqual(body["error"]["details"].get("reason"), reason, body)
        return body
