"""The command line and the store as SPEC §1-§2 promise them, through the real
binary: check-config, $KEYGATE_CONFIG, keys list/create/update flags, the HMAC
pepper end to end, WAL mode (issue 18)."""
import json
import os
import re
import sqlite3
import subprocess
import unittest

from harness import KEYGATE, GatewayTest, key_hash, wait_until


def ids(p):
    return [k["id"] for k in json.loads(p.stdout)]


class CheckConfig(GatewayTest):
    def test_every_problem_as_path_line_and_exit_2(self):
        g = self.gateway(start=False)
        bad = os.path.join(g.tmp, "bad.yaml")
        with open(bad, "w") as f:
            f.write("listen: nope\nthreads: 300\nbogus: 1\nupstream:\n  timeout: 5x\n")
        p = g.cli("check-config", config=bad, check=False)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        out = p.stdout + p.stderr
        self.assertNotIn("config OK", out)
        lines = {int(m.group(1)) for m in re.finditer(r"(?m)^" + re.escape(bad) + r":(\d+): \S", out)}
        self.assertEqual(lines, {1, 2, 3, 5}, out)
        p = g.cli("check-config", check=False)
        self.assertEqual((p.returncode, p.stdout.strip()), (0, "config OK"))
        p = g.cli("check-config", config=os.path.join(g.tmp, "missing.yaml"), check=False)
        self.assertEqual(p.returncode, 2)

    def test_keygate_config_environment_variable(self):
        g = self.gateway(start=False)
        bad = os.path.join(g.tmp, "bad.yaml")
        with open(bad, "w") as f:
            f.write("threads: many\n")

        def run(*args, config):
            # In a folder without config/keygate.yaml: only $KEYGATE_CONFIG can name the file.
            return subprocess.run([KEYGATE, *args], capture_output=True, text=True, timeout=120,
                                  cwd=g.tmp, env={**g.env, "KEYGATE_CONFIG": config})
        p = run("check-config", config=g.config_path)
        self.assertEqual((p.returncode, p.stdout.strip()), (0, "config OK"), p.stderr)
        p = run("check-config", config=bad)
        self.assertEqual(p.returncode, 2)
        self.assertIn(bad + ":1:", p.stdout + p.stderr)
        p = run("keys", "create", "--name", "from-env", "--json", config=g.config_path)
        self.assertEqual(p.returncode, 0, p.stderr)
        made = json.loads(p.stdout)
        self.assertEqual(ids(g.cli("keys", "list", "--json")), [made["id"]])  # the env's store
        # --config wins over the environment
        p = run("check-config", "--config", g.config_path, config=bad)
        self.assertEqual((p.returncode, p.stdout.strip()), (0, "config OK"), p.stderr)


class KeysFlags(GatewayTest):
    def test_list_owner_filter(self):
        g = self.gateway(start=False)
        a = g.create_key("--name", "a", "--owner", "acme")
        b = g.create_key("--name", "b", "--owner", "umbrella")
        c = g.create_key("--name", "c")
        self.assertEqual(ids(g.cli("keys", "list", "--owner", "acme", "--json")), [a["id"]])
        self.assertEqual(ids(g.cli("keys", "list", "--owner", "umbrella", "--json")), [b["id"]])
        self.assertEqual(ids(g.cli("keys", "list", "--owner", "nobody", "--json")), [])
        self.assertEqual(sorted(ids(g.cli("keys", "list", "--json"))), sorted([a["id"], b["id"], c["id"]]))
        text = g.cli("keys", "list", "--owner", "acme").stdout
        self.assertIn(a["id"], text)
        self.assertNotIn(b["id"], text)

    def test_status_filters_with_an_expired_and_a_revoked_key(self):
        g = self.gateway(start=False)
        live = g.create_key("--name", "live")
        gone = g.create_key("--name", "gone", "--expires-in", "1s")
        revoked = g.create_key("--name", "revoked")
        g.cli("keys", "revoke", revoked["id"])
        self.assertTrue(wait_until(lambda: json.loads(g.cli("keys", "show", gone["id"], "--json").stdout)
                                   ["status"] == "expired", 30))
        self.assertEqual(ids(g.cli("keys", "list", "--json")), [live["id"]])
        self.assertEqual(ids(g.cli("keys", "list", "--status", "active", "--json")), [live["id"]])
        self.assertEqual(ids(g.cli("keys", "list", "--status", "expired", "--json")), [gone["id"]])
        self.assertEqual(ids(g.cli("keys", "list", "--status", "revoked", "--json")), [revoked["id"]])
        self.assertEqual(len(ids(g.cli("keys", "list", "--status", "all", "--json"))), 3)
        g.start()
        listed = lambda q: [k["id"] for k in g.admin("GET", "/v1/api-keys" + q).json()["data"]]
        self.assertEqual(listed(""), [live["id"]])
        self.assertEqual(listed("?status=expired"), [gone["id"]])
        self.assertEqual(listed("?status=revoked"), [revoked["id"]])

    def test_expires_at_on_create_and_update(self):
        g = self.gateway(start=False)
        k = g.create_key("--name", "e", "--expires-at", "2999-01-02T03:04:05Z")
        self.assertEqual(k["expires_at"], "2999-01-02T03:04:05.000Z")
        shown = json.loads(g.cli("keys", "show", k["id"], "--json").stdout)
        self.assertEqual(shown["expires_at"], "2999-01-02T03:04:05.000Z")
        upd = json.loads(g.cli("keys", "update", k["id"], "--expires-at", "2998-06-07T08:09:10Z",
                               "--json").stdout)
        self.assertEqual(upd["expires_at"], "2998-06-07T08:09:10.000Z")
        for bad in ("tomorrow", "2001-01-01T00:00:00Z"):  # not RFC 3339 / in the past
            with self.subTest(bad=bad):
                self.assertEqual(g.cli("keys", "create", "--name", "x", "--expires-at", bad,
                                       check=False).returncode, 2)
        self.assertEqual(g.cli("keys", "create", "--name", "x", "--expires-at", "2999-01-01T00:00:00Z",
                               "--expires-in", "1d", check=False).returncode, 2)

    def test_disable_and_enable_while_serving(self):
        g = self.gateway()
        k = g.create_key("--name", "toggle")
        hdr = {"X-Api-Key": k["key"]}
        self.assertEqual(g.request("GET", "/x", headers=hdr).status, 200)
        upd = json.loads(g.cli("keys", "update", k["id"], "--disable", "--json").stdout)
        self.assertEqual((upd["enabled"], upd["status"]), (False, "disabled"))
        self.assertTrue(wait_until(lambda: g.request("GET", "/x", headers=hdr).status == 401, 30))
        self.assertEnvelope(g.request("GET", "/x", headers=hdr), 401, "AUTH_ERROR", "disabled")
        upd = json.loads(g.cli("keys", "update", k["prefix"], "--enable", "--json").stdout)
        self.assertEqual((upd["enabled"], upd["status"]), (True, "active"))
        self.assertTrue(wait_until(lambda: g.request("GET", "/x", headers=hdr).status == 200, 30))
        self.assertEqual(g.cli("keys", "update", k["id"], "--enable", "--disable", check=False).returncode, 2)


class Store(GatewayTest):
    def test_hmac_pepper_end_to_end(self):
        pepper = "pepper-for-tests-0123456789"
        g = self.gateway({"keys": {"pepper": pepper}}, start=False)
        # The same store, configured without the pepper: keys issued there are plain SHA-256.
        plain = os.path.join(g.tmp, "plain.yaml")
        with open(plain, "w") as f:
            json.dump({k: v for k, v in g.config.items() if k != "keys"}, f)
        before = json.loads(g.cli("keys", "create", "--name", "unpeppered", "--json", config=plain).stdout)
        cli_key = g.create_key("--name", "peppered")
        g.start()
        admin_key = g.admin("POST", "/v1/api-keys", {"name": "via-admin"}).json()["data"]
        db = sqlite3.connect(g.db)
        self.addCleanup(db.close)
        stored = dict(db.execute("SELECT id, hash FROM api_keys").fetchall())
        for k in (cli_key, admin_key):
            with self.subTest(key=k["name"]):
                self.assertEqual(stored[k["id"]], key_hash(k["key"], pepper))  # the HMAC
                self.assertNotEqual(stored[k["id"]], key_hash(k["key"]))      # not SHA-256
                self.assertEqual(g.request("GET", "/x", headers={"X-Api-Key": k["key"]}).status, 200)
        self.assertEqual(stored[before["id"]], key_hash(before["key"]))
        # A key hashed without the pepper is unknown to a peppered gateway.
        self.assertEnvelope(g.request("GET", "/x", headers={"X-Api-Key": before["key"]}),
                            401, "AUTH_ERROR", "invalid")

    def test_sqlite_store_uses_wal(self):
        g = self.gateway()
        g.create_key("--name", "w")
        db = sqlite3.connect(g.db)
        self.addCleanup(db.close)
        self.assertEqual(db.execute("PRAGMA journal_mode").fetchone()[0], "wal")
        self.assertTrue(os.path.exists(g.db + "-wal"))
        self.assertTrue(os.path.exists(g.db + "-shm"))


if __name__ == "__main__":
    unittest.main()
