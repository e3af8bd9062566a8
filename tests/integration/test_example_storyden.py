"""Storyden (shared/seeds/002) fronted by config/examples/storyden.yaml."""
import os
import unittest

from harness import EXAMPLES, GatewayTest, wait_until

CONFIG = os.path.join(EXAMPLES, "storyden.yaml")


class Storyden(GatewayTest):
    def setUp(self):
        self.g = self.gateway(example=CONFIG)

    def bearer(self, k):
        return {"Authorization": f"Bearer {k}"}

    def test_key_acts_for_its_creator(self):
        k = self.g.create_key("--name", "Discord Bot", "--owner", "member-7", "--scopes", "CREATE_POST,READ")
        self.assertRegex(k["key"], r"^sdak_[0-9A-Za-z]{38}$")
        r = self.g.request("GET", "/api/threads", headers={**self.bearer(k["key"]), "X-Keygate-Owner": "admin-1"})
        self.assertEqual(r.status, 200)
        h = r.json()["headers"]
        self.assertEqual(h["x-keygate-owner"], ["member-7"])  # not the forged value
        self.assertEqual(h["x-keygate-scopes"], ["CREATE_POST,READ"])
        self.assertEqual(self.g.request("GET", "/api/threads", headers={"X-Api-Key": k["key"]}).status, 401)

    def test_access_keys_cannot_create_access_keys(self):
        k = self.g.create_key("--name", "n8n Agent", "--owner", "member-7")["key"]
        r = self.g.request("POST", "/api/auth/access-keys", headers=self.bearer(k), body=b'{"name":"x"}')
        self.assertEnvelope(r, 403, "FORBIDDEN", "scope")
        self.assertEqual(self.g.request("GET", "/api/auth/access-keys", headers=self.bearer(k)).status, 200)

    def test_optional_expiry_enabled_and_revoked(self):
        temp = self.g.create_key("--name", "temp", "--expires-in", "1s")
        forever = self.g.create_key("--name", "forever")
        self.assertIsNone(forever["expires_at"])
        self.assertTrue(wait_until(lambda: self.g.admin("GET", f"/v1/api-keys/{temp['id']}")
                                   .json()["data"]["status"] == "expired", 30))
        self.assertEnvelope(self.g.request("GET", "/api/threads", headers=self.bearer(temp["key"])),
                            401, "AUTH_ERROR", "expired")
        self.g.admin("PATCH", f"/v1/api-keys/{forever['id']}", {"enabled": False})
        self.assertEnvelope(self.g.request("GET", "/api/threads", headers=self.bearer(forever["key"])),
                            401, "AUTH_ERROR", "disabled")
        self.g.admin("PATCH", f"/v1/api-keys/{forever['id']}", {"enabled": True})
        self.assertEqual(self.g.request("GET", "/api/threads", headers=self.bearer(forever["key"])).status, 200)

    def test_admins_see_every_key_with_creator_and_revoke_any(self):
        a = self.g.create_key("--name", "a", "--owner", "member-1")
        b = self.g.create_key("--name", "b", "--owner", "member-2")
        listed = self.g.admin("GET", "/v1/api-keys").json()["data"]
        self.assertEqual({(k["name"], k["owner"]) for k in listed}, {("a", "member-1"), ("b", "member-2")})
        mine = self.g.admin("GET", "/v1/api-keys?owner=member-2").json()["data"]
        self.assertEqual([k["id"] for k in mine], [b["id"]])
        self.g.admin("DELETE", f"/v1/api-keys/{a['id']}")
        self.assertEqual(self.g.request("GET", "/api/threads", headers=self.bearer(a["key"])).status, 401)
        # keys are refused by the admin API: no key_scope here
        self.assertEqual(self.g.admin("GET", "/v1/api-keys", token=b["key"]).status, 401)


if __name__ == "__main__":
    unittest.main()
