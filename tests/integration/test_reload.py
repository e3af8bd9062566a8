"""Reload never kills (SPEC §7): through the real binary, every kind of bad
config sent with SIGHUP is logged and counted, and the running config (routes,
limits, admin token) stays in force; a good config is then adopted."""
import copy
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import unittest

from harness import ADMIN_TOKEN, KEYGATE, Gateway, GatewayTest, wait_until
import rogue_upstream

NEW_TOKEN = "another-admin-token-9876543210"


class ReloadMovesTheUpstream(GatewayTest):
    def test_after_a_reload_to_another_upstream_no_request_reaches_the_old_one(self):
        """Found reading the pool (2026-12-03): a reload that changed
        upstream.url for a plain-HTTP upstream kept the pooled connections to
        the old one, and requests went on reaching it over them (under steady
        traffic a pooled connection never idles out)."""
        old, new = rogue_upstream.RogueUpstream(), rogue_upstream.RogueUpstream()
        for u in (old, new):
            self.addCleanup(u.close)
        g = Gateway(old.port, {"threads": 1, "routes": [{"path_prefix": "/", "auth": "none"}]})
        self.addCleanup(g.cleanup)
        g.start()
        conn = g.connection()
        self.addCleanup(conn.close)
        for i in range(3):  # the pool now holds a connection to `old`
            self.assertEqual(g.request("GET", f"/id/before{i}", conn=conn).body, f"before{i}".encode())
        cfg = copy.deepcopy(g.config)
        cfg["upstream"]["url"] = f"http://127.0.0.1:{new.port}"
        g.write_config(cfg)
        g.proc.send_signal(signal.SIGHUP)
        self.assertTrue(wait_until(lambda: "config reloaded" in g.logs(), 10), g.logs()[-2000:])
        for i in range(3):
            self.assertEqual(g.request("GET", f"/id/after{i}", conn=conn).body, f"after{i}".encode())
        self.assertEqual([t for t in old.targets() if "after" in t], [], "the old upstream was asked")
        self.assertEqual(new.targets(), [f"/id/after{i}" for i in range(3)])


class ReloadNeverKills(GatewayTest):
    def setUp(self):
        self.g = self.gateway({
            "routes": [{"path_prefix": "/public/", "auth": "none"}],
            "plans": {"default": {"rate": {"requests": 20, "period": "1h"}}},
        })
        self.good = copy.deepcopy(self.g.config)
        self.key = self.g.create_key("--name", "reload")["key"]
        self.requests_made = 0

    def reload_failures(self):
        return self.g.logs().count("reload failed; keeping the running config")

    def sighup_and_expect_rejection(self, what):
        before = self.reload_failures()
        self.g.proc.send_signal(signal.SIGHUP)
        self.assertTrue(wait_until(lambda: self.reload_failures() == before + 1, 10),
                        f"{what}: no 'reload failed' logged\n" + self.g.logs()[-3000:])
        self.assertIsNone(self.g.proc.poll(), f"{what}: keygate exited\n" + self.g.logs()[-3000:])
        self.assertEqual(self.g.metric("keygate_config_last_reload_successful"), 0, what)
        self.assertEqual(self.g.metric("keygate_config_generation"), 1, what)
        self.assert_running_config_is_the_first(what)

    def assert_running_config_is_the_first(self, what):
        g = self.g
        self.assertEqual(g.request("GET", "/public/x").status, 200, what)  # route kept
        r = g.request("GET", "/private", headers={"X-Api-Key": self.key})
        self.requests_made += 1
        self.assertEqual(r.status, 200, what)
        self.assertEqual(r.header("x-ratelimit-limit"), "20", what)  # limits kept
        self.assertEqual(r.header("x-ratelimit-remaining"), str(20 - self.requests_made), what)
        self.assertEqual(g.admin("GET", "/v1/api-keys").status, 200, what)  # token kept
        self.assertEqual(g.admin("GET", "/v1/api-keys", token=NEW_TOKEN).status, 401, what)

    def write_text(self, text):
        with open(self.g.config_path, "w") as f:
            f.write(text)

    def test_bad_configs_are_rejected_and_a_good_one_is_adopted(self):
        g = self.g
        self.assertEqual(g.metric("keygate_config_last_reload_successful"), 1)
        self.assertEqual(g.metric("keygate_config_generation"), 1)
        self.assert_running_config_is_the_first("before any reload")

        # (i) plans without `default` and no rate_limit section: aborted the process
        # ("terminate called…", exit 134) before the fix.
        cfg = copy.deepcopy(self.good)
        cfg["plans"] = {"pro": {"rate": {"requests": 1000, "period": "1m"}}}
        cfg["routes"] = []
        cfg["admin"]["token"] = NEW_TOKEN
        g.write_config(cfg)
        self.sighup_and_expect_rejection("plans without default")
        self.assertIn("rate_limit.default_plan 'default' is not defined", g.logs())

        # (ii) a directory where the file was: read as an empty file (every
        # default: no routes, 60/1m, admin token off) before the fix.
        os.remove(g.config_path)
        os.mkdir(g.config_path)
        self.sighup_and_expect_rejection("a directory")
        self.assertIn("it is a directory", g.logs())
        p = subprocess.run([KEYGATE, "check-config", "--config", g.config_path],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn(f"{g.config_path}:0: cannot read the config file: it is a directory",
                      p.stderr)
        os.rmdir(g.config_path)

        # (iii) bad YAML.
        self.write_text("listen: [broken\nplans: 3\n")
        self.sighup_and_expect_rejection("bad YAML")

        # (iv) a duplicate key: yaml-cpp would read the first `admin` (the new token).
        text = json.dumps(self.good, indent=1)
        dup = json.dumps({"token": NEW_TOKEN, "listen": self.good["admin"]["listen"]})
        self.write_text(text.replace("{\n", '{\n "admin": ' + dup + ",\n", 1))
        self.sighup_and_expect_rejection("duplicate key")
        self.assertIn("duplicate key 'admin'", g.logs())

        # (v) TLS material that does not load: the whole reload is refused (it used to
        # keep the old certificate but adopt the rest).
        bad_pem = os.path.join(g.tmp, "bad.pem")
        with open(bad_pem, "w") as f:
            f.write("not a certificate\n")
        cfg = copy.deepcopy(self.good)
        cfg["tls"] = {"cert": bad_pem, "key": bad_pem}
        cfg["admin"]["token"] = NEW_TOKEN
        g.write_config(cfg)
        self.sighup_and_expect_rejection("bad TLS material")

        # A good config is adopted: new route, new limit, new admin token.
        cfg = copy.deepcopy(self.good)
        cfg["routes"] = [{"path_prefix": "/public/", "auth": "none"},
                         {"path_prefix": "/open/", "auth": "none"}]
        cfg["plans"] = {"default": {"rate": {"requests": 30, "period": "1h"}}}
        cfg["admin"]["token"] = NEW_TOKEN
        g.write_config(cfg)
        self.assertEqual(g.request("GET", "/open/x").status, 401)
        g.proc.send_signal(signal.SIGHUP)
        self.assertTrue(wait_until(
            lambda: g.metric("keygate_config_generation") == 2, 10), g.logs()[-3000:])
        self.assertEqual(g.metric("keygate_config_last_reload_successful"), 1)
        self.assertEqual(g.request("GET", "/open/x").status, 200)
        r = g.request("GET", "/private", headers={"X-Api-Key": self.key})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("x-ratelimit-limit"), "30")
        self.assertEqual(g.admin("GET", "/v1/api-keys", token=NEW_TOKEN).status, 200)
        self.assertEqual(g.admin("GET", "/v1/api-keys", token=ADMIN_TOKEN).status, 401)
        self.assertEqual(self.reload_failures(), 5)
        self.assertIsNone(g.proc.poll())
        self.assertEqual(g.stop(), 0)


class SignalsDuringStartUp(GatewayTest):
    """Once keygate has written a line, a signal is handled, not fatal: a SIGHUP
    sent while it still opens its store is a reload once it serves; a SIGTERM
    stops it at once. The handler was installed only after the "listening"
    line, so an orchestrator's early SIGHUP killed it (the harness's reload
    tests saw it under ASan).

    The test holds start-up where it wants it: its own exclusive lock on the
    store's (new) SQLite file makes keygate wait in its busy handler (5 s)
    after its first line (the short admin token's warning). The signal is
    sent there, and the lock released. (Waiting for a migration's line and
    signalling then raced a fast start: ~1 run in 4 under ctest -j2 was
    already listening, and a SIGTERM was then a clean stop, exit 0.)"""

    def start_and_signal_while_starting(self, sig):
        g = self.gateway(start=False, config={"admin": {"token": "short-token"}})
        lock = sqlite3.connect(g.db, isolation_level=None)
        self.addCleanup(lock.close)
        lock.execute("BEGIN EXCLUSIVE")
        g.out = open(os.path.join(g.tmp, "stdout.log"), "wb")
        g.err = open(os.path.join(g.tmp, "stderr.log"), "wb")
        g.proc = subprocess.Popen([KEYGATE, "serve", "--config", g.config_path],
                                  stdout=g.out, stderr=g.err, env=g.env)
        first_line = lambda: os.path.getsize(os.path.join(g.tmp, "stderr.log")) > 0
        self.assertTrue(wait_until(first_line, timeout=30, step=0.001), g.logs())
        self.assertIn("admin.token is shorter", g.logs())
        g.proc.send_signal(sig)
        lock.execute("COMMIT")
        return g

    def test_sighup_while_starting_is_a_reload(self):
        g = self.start_and_signal_while_starting(signal.SIGHUP)
        self.assertTrue(wait_until(g._live, timeout=30), "keygate died:\n" + g.logs())
        self.assertTrue(wait_until(lambda: g.metric("keygate_config_generation") == 2, 10),
                        g.logs())
        self.assertIsNone(g.proc.poll())
        self.assertEqual(g.request("GET", "/health").status, 200)

    def test_sigterm_while_starting_stops_at_once(self):
        # Nothing to drain yet: the start is abandoned, not finished first.
        g = self.start_and_signal_while_starting(signal.SIGTERM)
        self.assertEqual(g.proc.wait(30), -signal.SIGTERM, g.logs())
        self.assertNotIn("applied migration", g.logs())
        self.assertNotIn('"msg":"listening"', g.logs())


class CheckConfig(unittest.TestCase):
    def test_directory_and_duplicate_keys_exit_2_with_a_line(self):
        tmp = tempfile.mkdtemp(prefix="kg-check-")
        self.addCleanup(shutil.rmtree, tmp, True)

        def check(path):
            return subprocess.run([KEYGATE, "check-config", "--config", path],
                                  capture_output=True, text=True, timeout=30)

        p = check(tmp)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertEqual(p.stderr, f"{tmp}:0: cannot read the config file: it is a directory\n")
        self.assertEqual(p.stdout, "")
        path = os.path.join(tmp, "dup.yaml")
        with open(path, "w") as f:
            f.write("threads: 1\nlisten: 127.0.0.1:1\nthreads: 2\n")
        p = check(path)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertEqual(p.stderr, f"{path}:3: duplicate key 'threads' (first on line 1)\n")
        with open(path, "w") as f:
            f.write("plans:\n  pro: {rate: {requests: 5, period: 1m}}\n")
        p = check(path)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn(f"{path}:1: rate_limit.default_plan 'default' is not defined", p.stderr)


if __name__ == "__main__":
    unittest.main()
