"""FuncSpec (shared/seeds/001) fronted by config/examples/funcspec.yaml, checked
against its documentation text."""
import calendar
import json
import os
import re
import time
import unittest

from harness import EXAMPLES, GatewayTest

CONFIG = os.path.join(EXAMPLES, "funcspec.yaml")


class FuncSpec(GatewayTest):
    def setUp(self):
        self.g = self.gateway(example=CONFIG)

    def test_key_shape_and_listing_fields(self):
        k = self.g.create_key("--name", "GitHub Actions", "--owner", "user-42")
        self.assertRegex(k["key"], r"^fs_live_[0-9A-Za-z]{38}$")  # "fs_live_ Production key"
        self.assertEqual(k["last4"], k["key"][-4:])
        self.assertEqual(self.g.request("GET", "/api/v1/projects", headers={"X-Api-Key": k["key"]}).status, 200)
        self.g.stop()  # flushes last-used
        shown = json.loads(self.g.cli("keys", "show", k["id"], "--json").stdout)
        # "Key name, last four characters, created date, last used date and IP, created by"
        self.assertEqual(shown["name"], "GitHub Actions")
        self.assertEqual(shown["last4"], k["key"][-4:])
        self.assertIsNotNone(shown["created_at"])
        self.assertIsNotNone(shown["last_used_at"])
        self.assertEqual(shown["last_used_ip"], "127.0.0.1")
        self.assertEqual(shown["created_by"], "cli")
        self.assertNotIn("key", shown)
        test_env = self.gateway(example=CONFIG, env={"KEYGATE_KEY_ENV": "test"}, start=False)
        self.assertRegex(test_env.create_key("--name", "t")["key"], r"^fs_test_[0-9A-Za-z]{38}$")

    def test_documented_401_bodies(self):
        r = self.g.request("GET", "/api/v1/projects")
        self.assertEqual(r.status, 401)
        self.assertEqual(r.body, b'{"error":{"code":"unauthorized","message":"API key required. Pass your key in the X-Api-Key header."}}')
        r = self.g.request("GET", "/api/v1/projects", headers={"X-Api-Key": "fs_live_abc123"})
        self.assertEqual(r.status, 401)
        self.assertEqual(r.json(), {"error": {"code": "unauthorized", "message": "Invalid API key."}})
        # Bearer is not a FuncSpec credential: the header is X-Api-Key
        k = self.g.create_key("--name", "x")["key"]
        r = self.g.request("GET", "/api/v1/projects", headers={"Authorization": f"Bearer {k}"})
        self.assertEqual(r.status, 401)

    def test_revocation_is_immediate(self):
        k = self.g.admin("POST", "/v1/api-keys", {"name": "ci"}).json()["data"]
        self.assertEqual(self.g.request("GET", "/api/v1/projects", headers={"X-Api-Key": k["key"]}).status, 200)
        self.g.admin("DELETE", f"/v1/api-keys/{k['id']}")
        r = self.g.request("GET", "/api/v1/projects", headers={"X-Api-Key": k["key"]})
        self.assertEqual(r.status, 401)
        self.assertEqual(r.json(), {"error": {"code": "unauthorized", "message": "Invalid API key."}})

    def test_documented_403_body(self):
        k = self.g.create_key("--name", "read-only")["key"]
        r = self.g.request("POST", "/api/v1/projects", headers={"X-Api-Key": k}, body=b"{}")
        self.assertEqual(r.status, 403)
        self.assertEqual(r.json(), {"error": {"code": "forbidden",
                                              "message": "You do not have permission to perform this action."}})

    def test_rate_limit_headers_on_every_response_with_epoch_reset(self):
        k = self.g.create_key("--name", "x")["key"]
        for path in ("/api/v1/projects", "/status/404", "/status/500"):
            r = self.g.request("GET", path, headers={"X-Api-Key": k})
            self.assertEqual(r.header("x-ratelimit-limit"), "10000")
            self.assertTrue(r.header("x-ratelimit-remaining").isdigit())
            reset = int(r.header("x-ratelimit-reset"))
            self.assertGreater(reset, time.time())          # Unix time, like 1743100800
            self.assertLess(reset, time.time() + 3600 + 5)

    def test_429_names_the_reset_time(self):
        k = self.g.create_key("--name", "x", "--rate", "2/h")["key"]
        for _ in range(2):
            self.g.request("GET", "/api/v1/projects", headers={"X-Api-Key": k})
        r = self.g.request("GET", "/api/v1/projects", headers={"X-Api-Key": k})
        self.assertEqual(r.status, 429)
        body = r.json()
        self.assertEqual(list(body), ["error"])
        self.assertEqual(body["error"]["code"], "rate_limit_exceeded")
        m = re.fullmatch(r"Rate limit exceeded\. Try again after (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)",
                         body["error"]["message"])
        self.assertIsNotNone(m, body)
        named = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%SZ"))
        self.assertLessEqual(abs(named - int(r.header("x-ratelimit-reset"))), 1)


if __name__ == "__main__":
    unittest.main()
