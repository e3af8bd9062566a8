"""SpecStory Cloud (shared/seeds/000) fronted by config/examples/specstory.yaml."""
import json
import os
import unittest

from harness import EXAMPLES, GatewayTest, wait_until, wellformed_key

CONFIG = os.path.join(EXAMPLES, "specstory.yaml")
INVALID = b'{"success":false,"error":"Invalid session token"}'
FORBIDDEN = b'{"success":false,"error":"Insufficient permissions"}'


class SpecStory(GatewayTest):
    def setUp(self):
        self.g = self.gateway(example=CONFIG)
        self.key = self.g.create_key("--name", "app")["key"]

    def bearer(self, k):
        return {"Authorization": f"Bearer {k}", "Content-Type": "application/json",
                "Accept": "application/json"}

    def test_bearer_key_lists_projects_and_graphql(self):
        r = self.g.request("GET", "/api/v1/projects", headers=self.bearer(self.key))
        self.assertEqual(r.status, 200)
        self.assertNotIn("authorization", r.json()["headers"])  # the key stays at the gateway
        r = self.g.request("POST", "/api/v1/graphql", headers=self.bearer(self.key),
                           body=b'{"query": "{ projects { id name } }"}')
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["method"], "POST")

    def test_401_for_missing_malformed_invalid_expired_revoked(self):
        expired = self.g.create_key("--name", "old", "--expires-in", "1s")
        revoked = self.g.create_key("--name", "gone")
        self.g.admin("DELETE", f"/v1/api-keys/{revoked['id']}")
        self.assertTrue(wait_until(lambda: self.g.admin("GET", f"/v1/api-keys/{expired['id']}")
                                   .json()["data"]["status"] == "expired", 30))
        cases = {"missing": {}, "malformed": {"Authorization": "Bearer"},
                 "malformed key": self.bearer("sp_" + "A" * 38),   # fails the checksum
                 "invalid": self.bearer(wellformed_key("sp_")),     # well-formed, unknown
                 "expired": self.bearer(expired["key"]), "revoked": self.bearer(revoked["key"]),
                 "not bearer": {"X-Api-Key": self.key}}
        for name, headers in cases.items():
            with self.subTest(name):
                r = self.g.request("GET", "/api/v1/projects", headers=headers)
                self.assertEqual(r.status, 401)
                self.assertEqual(r.body, INVALID)
                self.assertEqual(r.header("www-authenticate"), 'Bearer realm="keygate"')
        # The same body for every case, yet each was refused for its own reason.
        seen = lambda: {e["reason"] for e in self.g.access_log()}
        self.assertTrue(wait_until(lambda: {"missing", "malformed", "invalid", "expired", "revoked"} <= seen(),
                                   30), seen())

    def test_403_insufficient_permissions(self):
        r = self.g.request("GET", "/api/v1/admin/users", headers=self.bearer(self.key))
        self.assertEqual(r.status, 403)
        self.assertEqual(r.body, FORBIDDEN)
        admin = self.g.create_key("--name", "ops", "--scopes", "admin")["key"]
        self.assertEqual(self.g.request("GET", "/api/v1/admin/users", headers=self.bearer(admin)).status, 200)

    def test_upstream_answers_pass_through(self):
        r = self.g.request("GET", "/status/403", headers=self.bearer(self.key))
        self.assertEqual(r.status, 403)  # the API's own "another user's project" 403
        self.assertEqual(r.json(), {"upstream_status": 403})

    def test_rotate_before_revoke_avoids_interruption(self):
        k = self.g.admin("POST", "/v1/api-keys", {"name": "svc"}).json()["data"]
        new = self.g.admin("POST", f"/v1/api-keys/{k['id']}/rotate", {"grace": "1h"}).json()["data"]
        for key in (k["key"], new["key"]):
            self.assertEqual(self.g.request("GET", "/api/v1/projects", headers=self.bearer(key)).status, 200)


if __name__ == "__main__":
    unittest.main()
