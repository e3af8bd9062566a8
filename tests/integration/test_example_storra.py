"""Storra Cloud (shared/seeds/003) fronted by config/examples/storra.yaml."""
import json
import os
import sqlite3
import unittest

from harness import EXAMPLES, GatewayTest, wait_until

CONFIG = os.path.join(EXAMPLES, "storra.yaml")


class Storra(GatewayTest):
    def setUp(self):
        self.g = self.gateway(example=CONFIG)

    def test_pro_key_shape_and_client_api(self):
        k = self.g.create_key("--name", "Production API Key", "--plan", "pro")
        self.assertRegex(k["key"], r"^sk_[0-9A-Za-z]{38}$")
        self.assertEqual(k["prefix"], k["key"][:11])  # "the first 11 characters (e.g. sk_abc12345)"
        self.assertEqual(len(k["prefix"]), 11)
        r = self.g.request("GET", "/api/v1/client/users/me", headers={"X-API-Key": k["key"]})
        self.assertEqual(r.status, 200)

    def test_missing_key_body(self):
        r = self.g.request("GET", "/api/v1/client/users/me")
        self.assertEqual(r.status, 401)
        self.assertEqual(r.json(), {"detail": [{"type": "missing", "loc": ["header", "X-API-Key"],
                                                "msg": "Field required", "input": None}]})

    def test_invalid_or_revoked_by_prefix(self):
        r = self.g.request("GET", "/api/v1/client/users/me", headers={"X-API-Key": "sk_your_api_key_here"})
        self.assertEqual((r.status, r.json()), (401, {"detail": "User not found."}))
        k = self.g.create_key("--name", "p", "--plan", "pro")
        self.g.cli("keys", "revoke", k["prefix"])  # revoke by the 11-character prefix
        ok = wait_until(lambda: self.g.request("GET", "/api/v1/client/users/me",
                                               headers={"X-API-Key": k["key"]}).status == 401, 2)
        self.assertTrue(ok)
        r = self.g.request("GET", "/api/v1/client/users/me", headers={"X-API-Key": k["key"]})
        self.assertEqual(r.json(), {"detail": "User not found."})
        k2 = self.g.create_key("--name", "q", "--plan", "pro")
        r = self.g.admin("DELETE", f"/v1/api-keys/{k2['prefix']}")
        self.assertEqual(r.json()["data"]["revoked"], True)

    def test_non_pro_accounts_get_403(self):
        k = self.g.create_key("--name", "free account")["key"]  # default plan: free
        r = self.g.request("GET", "/api/v1/client/users/me", headers={"X-API-Key": k})
        self.assertEqual(r.status, 403)
        self.assertEqual(r.body, b'{"detail":"API access requires Cloud Pro plan. Upgrade to use the API."}')

    def test_dashboard_routes_pass_through_without_a_key(self):
        r = self.g.request("POST", "/api/v1/dashboard/users/me/api-keys", body=b'{"label": "x"}',
                           headers={"Cookie": "session=abc"})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["headers"]["cookie"], ["session=abc"])

    def test_sha256_at_rest_only(self):
        k = self.g.create_key("--name", "p", "--plan", "pro")
        self.g.stop()
        db = sqlite3.connect(self.g.db)
        (h, prefix) = db.execute("SELECT hash, prefix FROM api_keys WHERE id = ?", (k["id"],)).fetchone()
        import hashlib
        self.assertEqual(h, hashlib.sha256(k["key"].encode()).digest())
        self.assertEqual(prefix, k["key"][:11])


if __name__ == "__main__":
    unittest.main()
