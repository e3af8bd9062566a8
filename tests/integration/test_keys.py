"""Keys: CLI, every 401/403 row of the SPEC through the real binary, freshness,
rotation, expiry, secrets never at rest or in logs (issue 3)."""
import json
import os
import random
import re
import string
import threading
import time
import unittest

from harness import GatewayTest, wait_until

B62 = string.digits + string.ascii_uppercase + string.ascii_letters[:26]


def crc_b62(text):
    import zlib
    v = zlib.crc32(text.encode())
    out = ""
    for _ in range(6):
        out = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"[v % 62] + out
        v //= 62
    return out


def random_wellformed_key(head="kg_live_"):
    body = "".join(random.choice("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
                   for _ in range(32))
    return head + body + crc_b62(head + body)


class Cli(GatewayTest):
    def test_create_json_shape_and_list_never_shows_secrets(self):
        g = self.gateway(start=False)
        k = g.create_key("--name", "ci", "--owner", "acme", "--scopes", "read,write",
                         "--expires-in", "30d", "--meta", "team=core", "--allow-ip", "10.0.0.0/8")
        self.assertRegex(k["key"], r"^kg_live_[0-9A-Za-z]{38}$")
        self.assertRegex(k["id"], r"^key_[0-9A-Za-z]{20}$")
        self.assertEqual(k["prefix"], k["key"][:12])
        self.assertEqual(k["last4"], k["key"][-4:])
        self.assertEqual(k["name"], "ci")
        self.assertEqual(k["owner"], "acme")
        self.assertEqual(k["scopes"], ["read", "write"])
        self.assertRegex(k["created_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
        self.assertRegex(k["expires_at"], r"^\d{4}-")
        self.assertEqual(k["metadata"], {"team": "core"})
        listed = json.loads(g.cli("keys", "list", "--json").stdout)
        self.assertEqual([x["id"] for x in listed], [k["id"]])
        self.assertNotIn("key", listed[0])
        self.assertNotIn("hash", listed[0])
        text = g.cli("keys", "list").stdout
        self.assertIn(k["id"], text)
        self.assertNotIn(k["key"], text)
        shown = json.loads(g.cli("keys", "show", k["prefix"], "--json").stdout)
        self.assertEqual(shown["id"], k["id"])
        self.assertNotIn("key", shown)

    def test_update_revoke_and_status_filters(self):
        g = self.gateway(start=False)
        k = g.create_key("--name", "a")
        upd = json.loads(g.cli("keys", "update", k["id"], "--name", "b", "--scopes", "x",
                               "--rate", "10/s", "--burst", "3", "--disable", "--json").stdout)
        self.assertEqual((upd["name"], upd["scopes"], upd["enabled"]), ("b", ["x"], False))
        self.assertEqual(upd["rate"], {"requests": 10, "period": "1s", "burst": 3})
        self.assertEqual(upd["status"], "disabled")
        g.cli("keys", "revoke", k["prefix"])
        self.assertEqual(json.loads(g.cli("keys", "list", "--json").stdout), [])
        revoked = json.loads(g.cli("keys", "list", "--status", "revoked", "--json").stdout)
        self.assertEqual(revoked[0]["status"], "revoked")
        self.assertEqual(len(json.loads(g.cli("keys", "list", "--status", "all", "--json").stdout)), 1)

    def test_exit_codes_and_errors(self):
        g = self.gateway(start=False)
        p = g.cli("keys", "show", "key_doesnotexist0000000", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertTrue(p.stderr.startswith("error: "), p.stderr)
        p = g.cli("keys", "create", check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("--name", p.stderr)
        p = g.cli("keys", "create", "--name", "x", "--bogus", check=False)
        self.assertEqual(p.returncode, 2)
        p = g.cli("keys", "create", "--name", "x", "--rate", "fast", check=False)
        self.assertEqual(p.returncode, 2)
        p = g.cli("keys", "create", "--name", "x", "--plan", "gold", check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("unknown plan", p.stderr)
        p = g.cli("frobnicate", check=False)
        self.assertEqual(p.returncode, 2)
        self.assertEqual(g.cli("version").stdout.split()[0], "keygate")
        self.assertEqual(g.cli("check-config").stdout.strip(), "config OK")
        self.assertIn("up to date", g.cli("migrate").stdout)

    def test_ambiguous_prefix_is_refused(self):
        g = self.gateway({"keys": {"display_prefix_length": 12}}, start=False)
        # Two keys sharing a display prefix are astronomically rare; make them by
        # giving both the same prefix in the store.
        a = g.create_key("--name", "a")
        b = g.create_key("--name", "b")
        if "postgres" in g.config["store"]:
            import pg
            pg.psql(g.config["store"]["postgres"],
                    f"UPDATE api_keys SET prefix = '{a['prefix']}' WHERE id = '{b['id']}'")
        else:
            import sqlite3
            db = sqlite3.connect(g.db)
            db.execute("UPDATE api_keys SET prefix = ? WHERE id = ?", (a["prefix"], b["id"]))
            db.commit()
            db.close()
        p = g.cli("keys", "revoke", a["prefix"], check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("matches 2 keys", p.stderr)


class Authentication(GatewayTest):
    CONFIG = {
        "plans": {"default": {"rate": {"requests": 1000, "period": "1m"}},
                  "free": {"allow": False, "message": "API access requires the Pro plan."}},
        "routes": [{"path_prefix": "/admin/", "require_scopes": ["admin"]},
                   {"path_prefix": "/public/", "auth": "none"}],
    }

    def test_every_401_and_403_row(self):
        g = self.gateway(self.CONFIG, start=False)
        ok = g.create_key("--name", "ok", "--scopes", "read")["key"]
        revoked = g.create_key("--name", "r")
        g.cli("keys", "revoke", revoked["id"])
        disabled = g.create_key("--name", "d")
        g.cli("keys", "update", disabled["id"], "--disable")
        expired = g.create_key("--name", "e", "--expires-in", "1s")
        ip = g.create_key("--name", "ip", "--allow-ip", "10.0.0.0/8")["key"]
        free = g.create_key("--name", "f", "--plan", "free")["key"]
        g.start()
        # Wait (bounded) until the 1 s key has expired as the store sees it.
        self.assertTrue(wait_until(lambda: json.loads(g.cli("keys", "show", expired["id"], "--json").stdout)
                                   ["status"] == "expired", 30))
        bearer = lambda k: {"Authorization": f"Bearer {k}"}
        cases = [
            ({}, 401, "AUTH_ERROR", "missing"),
            ({"Authorization": "Bearer"}, 401, "AUTH_ERROR", "malformed"),
            (bearer("kg_live_tooshort"), 401, "AUTH_ERROR", "malformed"),
            (bearer(ok[:-1] + ("A" if ok[-1] != "A" else "B")), 401, "AUTH_ERROR", "malformed"),
            (bearer(random_wellformed_key()), 401, "AUTH_ERROR", "invalid"),
            (bearer(revoked["key"]), 401, "AUTH_ERROR", "revoked"),
            (bearer(disabled["key"]), 401, "AUTH_ERROR", "disabled"),
            (bearer(expired["key"]), 401, "AUTH_ERROR", "expired"),
            ({**bearer(ok), "X-Api-Key": ip}, 401, "AUTH_ERROR", "conflict"),
            (bearer(ip), 403, "FORBIDDEN", "ip"),
            (bearer(free), 403, "FORBIDDEN", "plan"),
        ]
        for headers, status, code, reason in cases:
            with self.subTest(reason=reason):
                r = g.request("GET", "/v1/x", headers=headers)
                body = self.assertEnvelope(r, status, code, reason)
                if status == 401:
                    self.assertEqual(r.header("www-authenticate"), 'Bearer realm="keygate"')
        r = g.request("GET", "/admin/x", headers=bearer(ok))
        body = self.assertEnvelope(r, 403, "FORBIDDEN", "scope")
        self.assertEqual(body["error"]["details"]["required_scopes"], ["admin"])
        r = g.request("GET", "/v1/x", headers=bearer(free))
        self.assertEqual(r.json()["error"]["message"], "API access requires the Pro plan.")
        self.assertIn("X-Api-Key", g.request("GET", "/v1/x").json()["error"]["message"])
        self.assertEqual(g.request("GET", "/public/x").status, 200)
        self.assertEqual(g.request("GET", "/v1/x", headers=bearer(ok)).status, 200)
        # metrics count the failures by reason
        self.assertEqual(g.metric_reaching("keygate_auth_failures_total", 'reason="revoked"', 1), 1)

    def test_header_names_and_scheme_case_insensitive(self):
        g = self.gateway()
        k = g.create_key("--name", "x")["key"]
        for headers in ({"authorization": f"bearer {k}"}, {"AUTHORIZATION": f"BEARER {k}"},
                        {"X-Api-Key": k}, {"x-api-key": k}, {"X-API-KEY": k},
                        {"Authorization": f"Bearer {k}", "X-Api-Key": k}):
            with self.subTest(headers=list(headers)):
                self.assertEqual(g.request("GET", "/x", headers=headers).status, 200)

    def test_credential_stripped_identity_added_spoofing_removed(self):
        g = self.gateway()
        k = g.create_key("--name", "svc", "--owner", "acme", "--scopes", "a,b")
        r = g.request("GET", "/x", headers={"Authorization": f"Bearer {k['key']}",
                                            "X-Keygate-Owner": "evil", "x-keygate-admin": "1"})
        h = r.json()["headers"]
        self.assertNotIn("authorization", h)
        self.assertNotIn("x-api-key", h)
        self.assertNotIn("x-keygate-admin", h)
        self.assertEqual(h["x-keygate-owner"], ["acme"])
        self.assertEqual(h["x-keygate-key-id"], [k["id"]])
        self.assertEqual(h["x-keygate-key-name"], ["svc"])
        self.assertEqual(h["x-keygate-scopes"], ["a,b"])
        self.assertEqual(h["x-keygate-plan"], ["default"])
        r = g.request("GET", "/x", headers={"X-Api-Key": k["key"]})
        self.assertNotIn("x-api-key", r.json()["headers"])

    def test_forward_credential_and_query_source(self):
        g = self.gateway({"auth": {"sources": ["bearer", {"header": "X-Api-Key"}, {"query": "api_key"}],
                                   "forward_credential": False}})
        k = g.create_key("--name", "q")["key"]
        r = g.request("GET", f"/x?a=1&api_key={k}")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["target"], "/x?a=1")
        g2 = self.gateway({"auth": {"forward_credential": True}})
        k2 = g2.create_key("--name", "f")["key"]
        self.assertEqual(g2.request("GET", "/x", headers={"X-Api-Key": k2}).json()["headers"]["x-api-key"], [k2])

    def test_cli_revoke_while_serving_applies_within_one_second(self):
        g = self.gateway()
        k = g.create_key("--name", "live")
        c = g.connection()
        self.assertEqual(g.request("GET", "/x", headers={"X-Api-Key": k["key"]}, conn=c).status, 200)
        g.cli("keys", "revoke", k["id"])
        t0 = time.monotonic()
        ok = wait_until(lambda: g.request("GET", "/x", headers={"X-Api-Key": k["key"]}, conn=c).status == 401,
                        timeout=30, step=0.01)
        elapsed = time.monotonic() - t0
        c.close()
        # SPEC: within 1 s. Measured, not asserted against the wall clock
        # (sanitizer runs are slow); the wait itself is bounded generously.
        print(f"\n  CLI revoke took effect after {elapsed * 1000:.0f} ms", flush=True)
        self.assertTrue(ok)
        r = g.request("GET", "/x", headers={"X-Api-Key": k["key"]})
        self.assertEnvelope(r, 401, "AUTH_ERROR", "revoked")
        # and a key created by the CLI while serving starts working as well
        n = g.create_key("--name", "new")
        self.assertTrue(wait_until(lambda: g.request("GET", "/x", headers={"X-Api-Key": n["key"]}).status == 200,
                                   timeout=30, step=0.01))

    def test_rotation_with_grace_then_expired(self):
        g = self.gateway()
        hdr = lambda k: {"X-Api-Key": k}
        old = g.create_key("--name", "rot", "--scopes", "s")
        # A grace that cannot lapse during the test: both keys work.
        new = json.loads(g.cli("keys", "rotate", old["id"], "--grace", "1h", "--json").stdout)
        self.assertEqual(new["rotated_from"], old["id"])
        self.assertEqual(new["scopes"], ["s"])
        self.assertNotEqual(new["key"], old["key"])
        self.assertTrue(wait_until(lambda: g.request("GET", "/x", headers=hdr(new["key"])).status == 200, 30))
        self.assertEqual(g.request("GET", "/x", headers=hdr(old["key"])).status, 200)
        # A short grace ends: the old key then answers 401 expired.
        short = g.create_key("--name", "short")
        repl = json.loads(g.cli("keys", "rotate", short["id"], "--grace", "1s", "--json").stdout)
        self.assertTrue(wait_until(lambda: g.request("GET", "/x", headers=hdr(short["key"])).status == 401, 30))
        self.assertEnvelope(g.request("GET", "/x", headers=hdr(short["key"])), 401, "AUTH_ERROR", "expired")
        self.assertTrue(wait_until(lambda: g.request("GET", "/x", headers=hdr(repl["key"])).status == 200, 30))
        # grace 0 (the default) revokes at once
        newer = json.loads(g.cli("keys", "rotate", new["id"], "--json").stdout)
        self.assertTrue(wait_until(lambda: g.request("GET", "/x", headers=hdr(new["key"])).status == 401, 30))
        self.assertEnvelope(g.request("GET", "/x", headers=hdr(new["key"])), 401, "AUTH_ERROR", "revoked")
        self.assertTrue(wait_until(lambda: g.request("GET", "/x", headers=hdr(newer["key"])).status == 200, 30))

    def test_last_used_recorded_in_background_and_flushed_on_shutdown(self):
        g = self.gateway()
        k = g.create_key("--name", "u")
        for _ in range(5):
            self.assertEqual(g.request("GET", "/x", headers={"X-Api-Key": k["key"]}).status, 200)
        self.assertEqual(g.stop(), 0)
        shown = json.loads(g.cli("keys", "show", k["id"], "--json").stdout)
        self.assertIsNotNone(shown["last_used_at"])
        self.assertEqual(shown["last_used_ip"], "127.0.0.1")

    def test_secrets_never_on_disk_or_in_logs(self):
        g = self.gateway({"admin": {"token": "a-very-secret-admin-token-xyz"}})
        k = g.create_key("--name", "s")
        for _ in range(3):
            g.request("GET", "/x", headers={"X-Api-Key": k["key"]})
        g.request("GET", "/x", headers={"X-Api-Key": k["key"][:-1] + "0"})
        g.request("GET", "/v1/api-keys", headers={"Authorization": "Bearer a-very-secret-admin-token-xyz"},
                  admin=True)
        made = g.admin("POST", "/v1/api-keys", {"name": "by-admin"},
                       token="a-very-secret-admin-token-xyz").json()["data"]
        rot = json.loads(g.cli("keys", "rotate", k["id"], "--json").stdout)
        secrets = (k["key"], k["key"][12:], rot["key"], rot["key"][12:], made["key"], made["key"][12:],
                   "a-very-secret-admin-token-xyz")

        def store_files():
            out = {}
            for f in os.listdir(g.tmp):
                if f.startswith("keygate.db"):
                    with open(os.path.join(g.tmp, f), "rb") as fh:
                        out[f] = fh.read()
            return out
        if "postgres" in g.config["store"]:
            import pg
            live = {"pg_dump": pg.dump(g.config["store"]["postgres"]).encode()}
            self.assertIn(k["id"].encode(), live["pg_dump"])  # the dump does hold the keys
        else:
            # While serving, the gateway holds the store open, so SQLite keeps
            # the WAL: the CLI's and the admin API's writes are in it now, not
            # yet checkpointed. Read it before it goes away.
            live = store_files()
            self.assertGreater(len(live.get("keygate.db-wal", b"")), 0, "no WAL to inspect")
        g.stop()
        logs = g.logs()
        self.assertIn(k["id"], logs)  # the access log names the key by id
        for when, files in (("serving", live), ("stopped", store_files())):
            for secret in secrets:
                self.assertNotIn(secret, logs)
                for name, data in files.items():
                    self.assertNotIn(secret.encode(), data, f"{name} ({when})")

    def test_unknown_key_flood_makes_no_store_queries(self):
        g = self.gateway()
        queries = lambda: g.metric("keygate_store_queries_total", required=True)
        # The observation point is live: key-row reads from the store move it.
        q0 = queries()
        good = g.create_key("--name", "good")["key"]  # the refresh reads the new row
        self.assertTrue(wait_until(lambda: queries() > q0, 30))
        q1 = queries()
        self.assertEqual(g.admin("GET", "/v1/api-keys").status, 200)
        self.assertGreater(queries(), q1)
        before = queries()
        errors = []

        def flood(n):
            c = g.connection()
            try:
                for i in range(n):
                    r = g.request("GET", "/x", headers={"X-Api-Key": random_wellformed_key()}, conn=c)
                    if r.status != 401 or r.json()["error"]["details"]["reason"] != "invalid":
                        errors.append(r.status)
                    if i % 500 == 0:
                        r = g.request("GET", "/x", headers={"X-Api-Key": good}, conn=c)
                        if r.status != 200:
                            errors.append(("good", r.status))
            finally:
                c.close()
        threads = [threading.Thread(target=flood, args=(2500,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        after = queries()
        self.assertEqual(errors, [])
        self.assertEqual(after - before, 0, "unknown keys caused store queries")
        self.assertGreaterEqual(g.metric_reaching("keygate_auth_failures_total", 'reason="invalid"', 10000), 10000)

    def test_cli_and_admin_writes_interleaved_are_all_applied(self):
        # A write through the admin API is applied at once; it must not make the
        # gateway skip a CLI change committed just before it and not read yet.
        g = self.gateway()
        for i in range(5):
            cli = json.loads(g.cli("keys", "create", "--json", "--name", f"cli{i}").stdout)
            self.assertEqual(g.admin("POST", "/v1/api-keys", {"name": f"admin{i}"}).status, 201)
            self.assertTrue(wait_until(
                lambda: g.request("GET", "/x", headers={"X-Api-Key": cli["key"]}).status == 200,
                timeout=30), f"CLI key {i} never applied")


if __name__ == "__main__":
    unittest.main()
