"""keygate keys import (SPEC §10, issue 15): keys an API already issued, shaped
like each reference API's (shared/seeds, config/examples), imported as plaintext
and as SHA-256, then used and revoked through the real gateway run with that
API's example config, unchanged."""
import hashlib
import json
import os
import random
import sqlite3
import string
import tempfile
import unittest

from harness import EXAMPLES, GatewayTest, wait_until

ALNUM = string.ascii_letters + string.digits


def rand(n, alphabet=ALNUM):
    return "".join(random.choice(alphabet) for _ in range(n))


def sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


# Per API: the example config, how a client sends the key, a path the config
# lets through with a key, extra fields every imported key needs there, and two
# keys in the API's own shape (the first imported as plaintext, the second as
# its SHA-256 with the display prefix the API itself keeps).
APIS = {
    "funcspec": dict(send=lambda k: {"X-Api-Key": k}, path="/api/v1/projects", extra={},
                     keys=lambda: ["fs_live_" + rand(32), "fs_test_" + rand(32)], prefix_len=12),
    "specstory": dict(send=lambda k: {"Authorization": "Bearer " + k}, path="/api/v1/graphql",
                      extra={},
                      # SpecStory calls its keys JWT Bearer tokens: any opaque string works
                      keys=lambda: ["sp_" + rand(40),
                                    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1XzEyMyJ9." +
                                    rand(43, ALNUM + "-_")], prefix_len=10),
    "storyden": dict(send=lambda k: {"Authorization": "Bearer " + k}, path="/api/threads",
                     extra={"owner": "member_42", "scopes": ["read"]},
                     keys=lambda: ["sdak_" + rand(32), "sdak_" + rand(32)], prefix_len=12),
    "storra": dict(send=lambda k: {"X-API-Key": k}, path="/api/v1/client/users/me",
                   extra={"plan": "pro"},  # the default plan (free) has no API access
                   keys=lambda: ["sk_" + rand(40), "sk_" + rand(40)], prefix_len=11),
    "stevora": dict(send=lambda k: {"x-api-key": k}, path="/v1/workflows",
                    extra={"owner": "ws_1"},
                    keys=lambda: ["stv_" + rand(32, string.ascii_lowercase + string.digits)
                                  for _ in range(2)], prefix_len=10),
}


class ImportTest(GatewayTest):
    def write(self, g, lines):
        path = os.path.join(g.tmp, "import.jsonl")
        with open(path, "w") as f:
            for line in lines:
                f.write((line if isinstance(line, str) else json.dumps(line)) + "\n")
        return path

    def call(self, g, api, key):
        return g.request("GET", api["path"], headers=api["send"](key))

    def key_id_seen_upstream(self, g, api, key):
        r = self.call(g, api, key)
        if r.status != 200:
            return None
        return r.json()["headers"].get("x-keygate-key-id", [None])[0]


@unittest.skipIf(os.environ.get("KEYGATE_TEST_STORE") == "postgres",
                 "the example configs name a SQLite file: this suite runs on SQLite only")
class ReferenceApis(ImportTest):
    def check_api(self, name):
        api = APIS[name]
        g = self.gateway(example=os.path.join(EXAMPLES, name + ".yaml"))
        plain, hashed = api["keys"]()
        n = api["prefix_len"]
        path = self.write(g, [
            {"name": f"{name} plaintext", "key": plain, **api["extra"]},
            {"name": f"{name} by hash", "sha256": sha256(hashed), "prefix": hashed[:n],
             "last4": hashed[-4:], **api["extra"]},
        ])
        before = self.call(g, api, plain)
        self.assertEqual(before.status, 401)  # not a keygate key, nothing imported yet

        out = json.loads(g.cli("keys", "import", "--file", path, "--json").stdout)
        self.assertEqual(len(out), 2)
        by_name = {k["name"]: k for k in out}
        p, h = by_name[f"{name} plaintext"], by_name[f"{name} by hash"]
        # Foreign keys keep their own format: display prefix and last4 from the plaintext.
        self.assertEqual((p["prefix"], p["last4"]), (plain[:n], plain[-4:]))
        self.assertEqual((h["prefix"], h["last4"]), (hashed[:n], hashed[-4:]))
        for k in out:
            self.assertNotIn("key", k)
            for field, value in api["extra"].items():
                self.assertEqual(k[field], value)

        # The running gateway picks the imports up (SPEC: within 1 s) and accepts both.
        for key, rec in ((plain, p), (hashed, h)):
            self.assertTrue(wait_until(lambda: self.key_id_seen_upstream(g, api, key) == rec["id"],
                                       timeout=2), f"{name}: imported key not accepted")
        self.assertEqual(self.call(g, api, plain[:-1] + ("x" if plain[-1] != "x" else "y")).status,
                         401)

        # Revoke (by display prefix, as Storra does, or by id) works on imported keys.
        g.cli("keys", "revoke", p["prefix"] if name == "storra" else p["id"])
        self.assertTrue(wait_until(lambda: self.call(g, api, plain).status == 401, timeout=2))
        self.assertEqual(self.key_id_seen_upstream(g, api, hashed), h["id"])  # the other still works
        g.cli("keys", "revoke", h["id"])
        self.assertTrue(wait_until(lambda: self.call(g, api, hashed).status == 401, timeout=2))

        # Never the plaintext at rest: the store holds the SHA-256 the gateway matched.
        g.stop()
        db = sqlite3.connect(g.db)
        rows = dict(db.execute("SELECT id, hash FROM api_keys").fetchall())
        db.close()
        self.assertEqual(rows[p["id"]].hex(), sha256(plain))
        self.assertEqual(rows[h["id"]].hex(), sha256(hashed))
        for suffix in ("", "-wal"):
            if os.path.exists(g.db + suffix):
                with open(g.db + suffix, "rb") as f:
                    self.assertNotIn(plain.encode(), f.read())

    def test_funcspec(self):
        self.check_api("funcspec")

    def test_specstory(self):
        self.check_api("specstory")

    def test_storyden(self):
        self.check_api("storyden")

    def test_storra(self):
        self.check_api("storra")

    def test_stevora(self):
        self.check_api("stevora")


class Behaviour(ImportTest):
    def test_garbage_line_names_its_line_and_nothing_is_imported(self):
        g = self.gateway(start=False)
        path = self.write(g, [
            {"name": "good", "key": "fs_live_" + rand(32)},
            "",
            "this is not json",
            {"name": "bad plan", "key": "fs_live_" + rand(32), "plan": "nope"},
            {"name": "both", "key": "fs_live_" + rand(32), "sha256": sha256("x")},
        ])
        p = g.cli("keys", "import", "--file", path, check=False)
        self.assertEqual(p.returncode, 2, p.stderr)
        lines = p.stderr.strip().splitlines()
        self.assertTrue(all(line.startswith("error: ") for line in lines), lines)
        self.assertIn(f"{path}:3: not valid JSON", p.stderr)
        self.assertIn(f"{path}:4: unknown plan 'nope'", p.stderr)
        self.assertRegex(p.stderr, rf"{path}:5: .*either key .* or sha256")
        self.assertNotIn(f"{path}:1:", p.stderr)
        self.assertIn("nothing imported", lines[-1])
        self.assertEqual(json.loads(g.cli("keys", "list", "--status", "all", "--json").stdout), [])

    def test_a_file_name_too_long_is_a_usage_error_not_a_crash(self):
        # std::filesystem::is_regular_file threw (File name too long) out of
        # the option's check: the process died on an uncaught exception.
        g = self.gateway(start=False)
        path = "/" + "x" * 300
        p = g.cli("keys", "import", "--file", path, check=False)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn(f"--file: no such file: {path}", p.stderr)

    def test_duplicates_in_the_file_or_the_store_are_refused(self):
        g = self.gateway(start=False)
        key = "sk_" + rand(40)
        g.cli("keys", "import", "--file", self.write(g, [{"name": "a", "key": key}]))
        p = g.cli("keys", "import", "--file",
                  self.write(g, [{"name": "b", "sha256": sha256(key)},
                                 {"name": "c", "key": "sk_" + rand(40)},
                                 {"name": "c2", "key": "sk_" + "Q" * 40},
                                 {"name": "c3", "key": "sk_" + "Q" * 40}]), check=False)
        self.assertEqual(p.returncode, 2)
        self.assertRegex(p.stderr, r":1: .*already in the store")
        self.assertRegex(p.stderr, r":4: .*already in the store, or earlier")
        self.assertNotRegex(p.stderr, r":[23]: ")
        self.assertEqual(len(json.loads(g.cli("keys", "list", "--json").stdout)), 1)

    def test_sha256_with_a_pepper_is_refused_plaintext_works(self):
        g = self.gateway(config={"keys": {"pepper": "a-pepper-value-0123456789"}})
        key = "stv_" + rand(32)
        p = g.cli("keys", "import", "--file",
                  self.write(g, [{"name": "h", "sha256": sha256(key)}]), check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn(":1: ", p.stderr)
        self.assertIn("keys.pepper", p.stderr)
        self.assertIn("import the plaintext", p.stderr)
        rec = json.loads(g.cli("keys", "import", "--json", "--file",
                               self.write(g, [{"name": "p", "key": key}])).stdout)[0]
        self.assertTrue(wait_until(lambda: g.request(
            "GET", "/x", headers={"X-Api-Key": key}).status == 200, timeout=2))
        self.assertEqual(g.request("GET", "/x", headers={"X-Api-Key": key}).json()["headers"]
                         ["x-keygate-key-id"], [rec["id"]])

    def test_off_format_credentials_are_hashed_only_once_foreign_keys_exist(self):
        g = self.gateway()
        stranger = {"Authorization": "Bearer not-a-keygate-key-" + rand(20)}
        r = g.request("GET", "/x", headers=stranger)
        self.assertEnvelope(r, 401, "AUTH_ERROR", "malformed")  # the cheap rejection
        # Importing keygate-format keys (issued by another keygate) keeps it.
        other = self.gateway(start=False)
        native = other.create_key("--name", "elsewhere")["key"]
        g.cli("keys", "import", "--file", self.write(g, [{"name": "moved", "key": native}]))
        self.assertTrue(wait_until(lambda: g.request(
            "GET", "/x", headers={"Authorization": "Bearer " + native}).status == 200, timeout=2))
        self.assertEnvelope(g.request("GET", "/x", headers=stranger), 401, "AUTH_ERROR", "malformed")
        # One foreign key in the index: off-format credentials are looked up.
        foreign = "sk_" + rand(40)
        g.cli("keys", "import", "--file", self.write(g, [{"name": "foreign", "key": foreign}]))
        self.assertTrue(wait_until(lambda: g.request(
            "GET", "/x", headers={"X-Api-Key": foreign}).status == 200, timeout=2))
        self.assertEnvelope(g.request("GET", "/x", headers=stranger), 401, "AUTH_ERROR", "invalid")
        # The foreign format is kept in the store: a restarted gateway still accepts the key.
        g.stop()
        self.assertNotIn(foreign, g.logs())
        g.out.close()
        g.err.close()
        g.start()
        self.assertEqual(g.request("GET", "/x", headers={"X-Api-Key": foreign}).status, 200)
        self.assertEnvelope(g.request("GET", "/x", headers=stranger), 401, "AUTH_ERROR", "invalid")
        self.assertNotIn(foreign, g.logs())

    def test_exported_lines_with_sha256_import_elsewhere(self):
        a = self.gateway(start=False)
        key = "fs_live_" + rand(32)
        a.cli("keys", "import", "--file", self.write(a, [{
            "name": "ci", "key": key, "owner": "alice", "scopes": ["read", "write"],
            "rate": {"requests": 5, "period": "1m", "burst": 7}, "allowed_ips": ["127.0.0.0/8"],
            "metadata": {"team": "core"}, "created_at": "2025-01-02T03:04:05Z"}]))
        exported = [json.loads(line) for line in a.cli("keys", "export").stdout.splitlines()]
        self.assertEqual(len(exported), 1)
        line = exported[0]
        self.assertNotIn("key", line)
        self.assertNotIn(sha256(key), json.dumps(line))
        b = self.gateway()
        line["sha256"] = sha256(key)
        rec = json.loads(b.cli("keys", "import", "--json", "--file", self.write(b, [line])).stdout)[0]
        for field in ("name", "owner", "scopes", "rate", "allowed_ips", "metadata", "prefix",
                      "last4", "created_at"):
            self.assertEqual(rec[field], line[field], field)
        self.assertNotEqual(rec["id"], line["id"])
        self.assertTrue(wait_until(lambda: b.request(
            "GET", "/x", headers={"X-Api-Key": key}).status == 200, timeout=2))


if __name__ == "__main__":
    unittest.main()
