"""Starts the real keygate binary against a real upstream and a real SQLite
file in a temp folder, and speaks HTTP to it. Every wait is bounded."""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import upstream

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, "..", "..", "config", "examples")
KEYGATE = os.environ.get("KEYGATE_BIN") or os.path.join(HERE, "..", "..", "build", "keygate")
ADMIN_TOKEN = "test-admin-token-0123456789"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout=10.0, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return False


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
    written as JSON (valid YAML)."""

    def __init__(self, upstream_port, config=None, tmp=None, env=None, example=None):
        self.tmp = tmp or tempfile.mkdtemp(prefix="kg-test-")
        self.port = free_port()
        self.admin_port = free_port()
        self.db = os.path.join(self.tmp, "keygate.db")
        self.config = {
            "listen": f"127.0.0.1:{self.port}",
            "threads": 2,
            "upstream": {"url": f"http://127.0.0.1:{upstream_port}", "timeout": "5s",
                         "connect_timeout": "1s"},
            "store": {"sqlite": self.db},
            "admin": {"listen": f"127.0.0.1:{self.admin_port}", "token": ADMIN_TOKEN},
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
            self.env.update({"KEYGATE_LISTEN": f"127.0.0.1:{self.port}",
                             "KEYGATE_UPSTREAM": f"http://127.0.0.1:{upstream_port}",
                             "KEYGATE_ADMIN_LISTEN": f"127.0.0.1:{self.admin_port}",
                             "KEYGATE_ADMIN_TOKEN": ADMIN_TOKEN, "KEYGATE_DB": self.db})
        else:
            self.write_config()

    def write_config(self, config=None):
        with open(self.config_path, "w") as f:
            json.dump(config or self.config, f, indent=2)

    def cli(self, *args, check=True):
        p = subprocess.run([KEYGATE, *args, "--config", self.config_path], capture_output=True,
                           text=True, timeout=60, env=self.env)
        if check and p.returncode != 0:
            raise AssertionError(f"keygate {' '.join(args)} failed ({p.returncode}): {p.stderr}")
        return p

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def create_key(self, *args):
        """Creates a key with the CLI; while serving, waits until the gateway has
        picked it up (SPEC: within 1 s) so tests do not race the refresh."""
        before = self.metric("keygate_keys_total") if self.running() else None
        key = json.loads(self.cli("keys", "create", "--json", *args).stdout)
        if before is not None:
            assert wait_until(lambda: self.metric("keygate_keys_total") > before, timeout=2), \
                "the running gateway did not pick up the new key within 2 s"
        return key

    def start(self):
        self.out = open(os.path.join(self.tmp, "stdout.log"), "wb")
        self.err = open(os.path.join(self.tmp, "stderr.log"), "wb")
        self.proc = subprocess.Popen([KEYGATE, "serve", "--config", self.config_path],
                                     stdout=self.out, stderr=self.err, env=self.env)
        ok = wait_until(self._live, timeout=15)
        if not ok:
            self.stop()
            raise AssertionError("keygate did not start:\n" + self.logs())
        return self

    def _live(self):
        if self.proc.poll() is not None:
            return False
        if '"listening"' not in self.logs():
            return False
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self, sig=signal.SIGTERM, timeout=20):
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

    def metric(self, name, labels=""):
        text = self.request("GET", "/metrics", admin=True).body.decode()
        want = name + ("{" + labels + "}" if labels else "")
        for line in text.splitlines():
            if line.startswith(want + " "):
                return float(line.split()[-1])
        return 0.0


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
