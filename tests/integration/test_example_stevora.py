"""Stevora (shared/seeds/004) fronted by config/examples/stevora.yaml."""
import os
import time
import unittest

from harness import ADMIN_TOKEN, EXAMPLES, GatewayTest

CONFIG = os.path.join(EXAMPLES, "stevora.yaml")


class Stevora(GatewayTest):
    def setUp(self):
        self.g = self.gateway(example=CONFIG)

    def test_key_shape_and_header(self):
        k = self.g.create_key("--name", "production-key", "--owner", "ws_1")
        self.assertRegex(k["key"], r"^stv_[0-9A-Za-z]{38}$")
        for name in ("x-api-key", "X-Api-Key"):
            self.assertEqual(self.g.request("GET", "/v1/workflow-definitions", headers={name: k["key"]}).status, 200)

    def test_documented_error_bodies(self):
        r = self.g.request("GET", "/v1/workflow-definitions")
        self.assertEqual(r.status, 401)
        self.assertEqual(r.json(), {"success": False, "error": {"code": "AUTH_ERROR", "message": "Missing x-api-key header",
                                                                "details": {"reason": "missing"}}})
        self.assertEqual(list(r.json()), ["success", "error"])
        r = self.g.request("GET", "/v1/workflow-definitions", headers={"x-api-key": "stv_a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6"})
        self.assertEqual(r.status, 401)
        self.assertEqual(r.json()["error"]["code"], "AUTH_ERROR")
        self.assertEqual(r.json()["error"]["message"], "Invalid or revoked API key")

    def test_per_workspace_429(self):
        ks = [self.g.create_key("--name", f"k{i}", "--owner", "ws_busy")["key"] for i in range(2)]
        other = self.g.create_key("--name", "calm", "--owner", "ws_calm")["key"]
        # 100 per minute for the whole workspace, shared by both keys (plus what
        # refills while the loop runs: one token per 0.6 s).
        start = time.monotonic()
        allowed = 0
        for i in range(300):
            r = self.g.request("GET", "/v1/x", headers={"x-api-key": ks[i % 2]})
            if r.status != 200:
                break
            allowed += 1
        refill = int((time.monotonic() - start) / 0.6) + 1
        self.assertGreaterEqual(allowed, 100)
        self.assertLessEqual(allowed, 100 + refill)
        self.assertEqual(r.status, 429)
        self.assertEqual(r.json()["success"], False)
        self.assertEqual(r.json()["error"]["code"], "RATE_LIMIT_ERROR")
        self.assertEqual(r.json()["error"]["message"], "Too many requests")
        self.assertEqual(self.g.request("GET", "/v1/x", headers={"x-api-key": other}).status, 200)

    def test_public_health_endpoints(self):
        for path in ("/health", "/ready", "/live"):
            r = self.g.request("GET", path)
            self.assertEqual((r.status, r.json()["success"]), (200, True), path)

    def test_create_keys_with_an_existing_key_or_admin_token(self):
        first = self.g.admin("POST", "/v1/api-keys", {"name": "first", "owner": "ws_1",
                                                       "scopes": ["keys:admin"]})  # admin token
        self.assertEqual(first.status, 201)
        first = first.json()["data"]
        r = self.g.request("POST", "/v1/api-keys", admin=True, body=b'{"name": "production-key"}',
                           headers={"x-api-key": first["key"], "Content-Type": "application/json"})
        self.assertEqual(r.status, 201, r.body)
        made = r.json()["data"]
        self.assertEqual(made["owner"], "ws_1")       # scoped to the creator's workspace
        self.assertTrue(made["key"].startswith("stv_"))  # shown once
        listed = self.g.request("GET", "/v1/api-keys?page=1&pageSize=20", admin=True,
                                headers={"x-api-key": first["key"]}).json()
        self.assertEqual(listed["meta"], {"page": 1, "pageSize": 20, "total": 2, "totalPages": 1})
        self.assertEqual(self.g.request("GET", "/v1/x", headers={"x-api-key": made["key"]}).status, 200)

    def test_create_a_key_with_a_key_at_the_api_host(self):
        # The documented call, as written, at the proxy port (self_service).
        first = self.g.admin("POST", "/v1/api-keys", {"name": "first", "owner": "ws_1",
                                                       "scopes": ["keys:admin", "workflows:read"]})
        first = first.json()["data"]
        r = self.g.request("POST", "/v1/api-keys", body=b'{"name": "production-key"}',
                           headers={"x-api-key": first["key"], "Content-Type": "application/json"})
        self.assertEqual(r.status, 201, r.body)
        made = r.json()["data"]
        self.assertEqual(list(r.json()), ["success", "data"])
        self.assertEqual(made["owner"], "ws_1")
        self.assertRegex(made["key"], r"^stv_[0-9A-Za-z]{38}$")
        self.assertEqual(self.g.request("GET", "/v1/x", headers={"x-api-key": made["key"]}).status, 200)
        listed = self.g.request("GET", "/v1/api-keys?page=1&pageSize=20",
                                headers={"x-api-key": first["key"]}).json()
        self.assertEqual(listed["meta"], {"page": 1, "pageSize": 20, "total": 2, "totalPages": 1})

        # Another workspace's key: "does not exist or belongs to another workspace" (404).
        other = self.g.create_key("--name", "theirs", "--owner", "ws_2")
        r = self.g.request("GET", f"/v1/api-keys/{other['id']}", headers={"x-api-key": first["key"]})
        self.assertEqual((r.status, r.json()["error"]["code"]), (404, "NOT_FOUND"))
        r = self.g.request("POST", "/v1/api-keys", body=b'{"name": "x", "owner": "ws_2"}',
                           headers={"x-api-key": first["key"]})
        self.assertEqual(r.status, 403)
        # No scope wider than the caller's.
        r = self.g.request("POST", "/v1/api-keys", body=b'{"name": "x", "scopes": ["billing:admin"]}',
                           headers={"x-api-key": first["key"]})
        self.assertEqual((r.status, r.json()["success"]), (403, False))
        r = self.g.request("PATCH", f"/v1/api-keys/{made['id']}", body=b'{"scopes": ["keys:admin", "x"]}',
                           headers={"x-api-key": first["key"]})
        self.assertEqual(r.status, 403)
        # A key without keys:admin cannot manage keys; the admin token is not taken here.
        r = self.g.request("POST", "/v1/api-keys", body=b'{"name": "y"}',
                           headers={"x-api-key": made["key"]})
        self.assertEqual(r.status, 403)
        r = self.g.request("GET", "/v1/api-keys", headers={"x-api-key": ADMIN_TOKEN})
        self.assertEqual(r.status, 401)
        r = self.g.request("GET", "/v1/api-keys", headers={"x-api-key": "stv_" + "a" * 38})
        self.assertEqual((r.status, r.json()["error"]["message"]), (401, "Invalid or revoked API key"))


if __name__ == "__main__":
    unittest.main()
