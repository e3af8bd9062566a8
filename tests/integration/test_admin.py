"""Admin API, audit log, metrics and the OpenAPI document (issue 5)."""
import json
import os
import re
import time
import unittest

from harness import ADMIN_TOKEN, GatewayTest, wait_until

OPENAPI = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "openapi.json")


class AdminApi(GatewayTest):
    def setUp(self):
        self.g = self.gateway({"plans": {"default": {"rate": {"requests": 100, "period": "1m"}},
                                         "pro": {"rate": {"requests": 1000, "period": "1m"}}}})

    def create(self, **body):
        r = self.g.admin("POST", "/v1/api-keys", {"name": "k", **body})
        self.assertEqual(r.status, 201, r.body)
        return r.json()["data"]

    def test_admin_off_without_token(self):
        g = self.gateway({"admin": {"token": ""}})
        self.assertIsNone(g.admin_port)
        self.assertIn("admin API off", g.logs())
        # The process listens on the proxy port only (every thread's acceptor).
        self.assertEqual(g.listening_ports(), {g.port})
        self.assertEqual(self.g.listening_ports(), {self.g.port, self.g.admin_port})

    def test_token_required_and_constant_time_compare(self):
        self.assertEnvelope(self.g.admin("GET", "/v1/api-keys", token=None), 401, "AUTH_ERROR", "missing")
        self.assertEnvelope(self.g.admin("GET", "/v1/api-keys", token="wrong-token-wrong-token1"),
                            401, "AUTH_ERROR", "invalid")
        self.assertEqual(self.g.request("GET", "/v1/api-keys", admin=True,
                                        headers={"X-Api-Key": ADMIN_TOKEN}).status, 200)
        # Nothing but the whole token: not a prefix, not a longer string starting with it.
        for near in (ADMIN_TOKEN[:-1], ADMIN_TOKEN[:8], ADMIN_TOKEN + "x", ADMIN_TOKEN.upper()):
            with self.subTest(token=near):
                self.assertEnvelope(self.g.admin("GET", "/v1/api-keys", token=near), 401, "AUTH_ERROR", "invalid")
        k = self.create()
        # API keys are refused unless admin.key_scope is set
        self.assertEqual(self.g.admin("GET", "/v1/api-keys", token=k["key"]).status, 401)

    def test_create_shows_key_once_and_it_works_at_once(self):
        k = self.create(owner="acme", scopes=["read"], plan="pro", metadata={"team": "x"},
                        allowed_ips=["127.0.0.0/8"], expires_in="30d", rate={"requests": 5, "period": "1s", "burst": 2})
        for field in ("id", "key", "prefix", "last4", "name", "owner", "scopes", "plan", "rate", "allowed_ips",
                      "metadata", "enabled", "status", "created_at", "expires_at", "revoked_at",
                      "last_used_at", "last_used_ip", "rotated_from"):
            self.assertIn(field, k)
        self.assertEqual(k["rate"], {"requests": 5, "period": "1s", "burst": 2})
        self.assertEqual(k["status"], "active")
        r = self.g.request("GET", "/x", headers={"X-Api-Key": k["key"]})
        self.assertEqual(r.status, 200)  # the very next request, no waiting
        got = self.g.admin("GET", f"/v1/api-keys/{k['id']}").json()["data"]
        self.assertNotIn("key", got)
        self.assertNotIn("hash", got)
        self.assertEqual(self.g.admin("GET", f"/v1/api-keys/{k['prefix']}").json()["data"]["id"], k["id"])

    def test_list_pagination_filters_and_no_secrets(self):
        for i in range(5):
            self.create(name=f"k{i}", owner="acme" if i < 3 else "umbrella")
        r = self.g.admin("GET", "/v1/api-keys?page=2&pageSize=2").json()
        self.assertEqual(r["meta"], {"page": 2, "pageSize": 2, "total": 5, "totalPages": 3})
        self.assertEqual([k["name"] for k in r["data"]], ["k2", "k3"])
        self.assertEqual(self.g.admin("GET", "/v1/api-keys?owner=umbrella").json()["meta"]["total"], 2)
        for k in self.g.admin("GET", "/v1/api-keys?pageSize=100").json()["data"]:
            self.assertNotIn("key", k)
            self.assertNotIn("hash", k)
        self.assertEnvelope(self.g.admin("GET", "/v1/api-keys?pageSize=101"), 400, "VALIDATION_ERROR")
        self.assertEnvelope(self.g.admin("GET", "/v1/api-keys?status=gone"), 400, "VALIDATION_ERROR")
        self.assertEnvelope(self.g.admin("GET", "/v1/api-keys?page=0"), 400, "VALIDATION_ERROR")

    def test_patch_and_delete_take_effect_on_the_next_request(self):
        k = self.create()
        hdr = {"X-Api-Key": k["key"]}
        self.assertEqual(self.g.request("GET", "/x", headers=hdr).status, 200)
        r = self.g.admin("PATCH", f"/v1/api-keys/{k['id']}", {"enabled": False, "name": "renamed",
                                                              "scopes": ["a"], "plan": "pro"})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["data"]["status"], "disabled")
        self.assertEnvelope(self.g.request("GET", "/x", headers=hdr), 401, "AUTH_ERROR", "disabled")
        self.g.admin("PATCH", f"/v1/api-keys/{k['id']}", {"enabled": True})
        self.assertEqual(self.g.request("GET", "/x", headers=hdr).status, 200)
        r = self.g.admin("DELETE", f"/v1/api-keys/{k['id']}")
        self.assertEqual(r.json(), {"success": True, "data": {"id": k["id"], "revoked": True}})
        self.assertEnvelope(self.g.request("GET", "/x", headers=hdr), 401, "AUTH_ERROR", "revoked")

    def test_patch_rate_allowed_ips_metadata_and_expires_at(self):
        k = self.create(metadata={"team": "a"})
        hdr = {"X-Api-Key": k["key"]}
        path = f"/v1/api-keys/{k['id']}"
        # allowed_ips: a range without the client refuses it (403 ip), one with it admits it
        r = self.g.admin("PATCH", path, {"allowed_ips": ["10.0.0.0/8"]})
        self.assertEqual(r.json()["data"]["allowed_ips"], ["10.0.0.0/8"])
        self.assertEnvelope(self.g.request("GET", "/x", headers=hdr), 403, "FORBIDDEN", "ip")
        self.g.admin("PATCH", path, {"allowed_ips": ["10.0.0.0/8", "127.0.0.1/32"]})
        self.assertEqual(self.g.request("GET", "/x", headers=hdr).status, 200)
        # metadata: replaced whole, and kept in the store
        r = self.g.admin("PATCH", path, {"metadata": {"team": "b", "tier": "gold"}})
        self.assertEqual(r.json()["data"]["metadata"], {"team": "b", "tier": "gold"})
        self.assertEqual(self.g.admin("GET", path).json()["data"]["metadata"], {"team": "b", "tier": "gold"})
        # expires_at: set, read back, and effective once it passes
        r = self.g.admin("PATCH", path, {"expires_at": "2999-01-02T03:04:05Z"})
        self.assertEqual(r.json()["data"]["expires_at"], "2999-01-02T03:04:05.000Z")
        self.assertEqual(self.g.request("GET", "/x", headers=hdr).status, 200)
        soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2))
        r = self.g.admin("PATCH", path, {"expires_at": soon})
        self.assertEqual(r.status, 200, r.body)
        self.assertTrue(wait_until(lambda: self.g.request("GET", "/x", headers=hdr).status == 401, 30))
        self.assertEnvelope(self.g.request("GET", "/x", headers=hdr), 401, "AUTH_ERROR", "expired")
        self.assertEqual(self.g.admin("GET", path).json()["data"]["status"], "expired")
        self.assertEnvelope(self.g.admin("PATCH", path, {"expires_at": "2001-01-01T00:00:00Z"}),
                            400, "VALIDATION_ERROR")

    def test_patch_rate_applies_to_the_next_request(self):
        k = self.create()
        hdr = {"X-Api-Key": k["key"]}
        path = f"/v1/api-keys/{k['id']}"
        self.assertEqual(self.g.request("GET", "/x", headers=hdr).header("x-ratelimit-limit"), "100")
        r = self.g.admin("PATCH", path, {"rate": {"requests": 3, "period": "1h"}})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["data"]["rate"], {"requests": 3, "period": "1h", "burst": 3})
        got = [self.g.request("GET", "/x", headers=hdr) for _ in range(4)]
        self.assertEqual([x.status for x in got], [200, 200, 200, 429])  # 99 tokens held, clamped to 3
        self.assertEqual(got[0].header("x-ratelimit-limit"), "3")
        r = self.g.admin("PATCH", path, {"rate": None})  # back to the plan's rate
        self.assertIsNone(r.json()["data"]["rate"])
        self.assertEqual(self.g.request("GET", "/x", headers=hdr).header("x-ratelimit-limit"), "100")

    def test_admin_401_carries_www_authenticate(self):
        for token in (None, "wrong-token-wrong-token1"):
            with self.subTest(token=token):
                r = self.g.admin("GET", "/v1/api-keys", token=token)
                self.assertEnvelope(r, 401, "AUTH_ERROR")
                self.assertEqual(r.header("www-authenticate"), 'Bearer realm="keygate"')
        self.assertIsNone(self.g.admin("GET", "/v1/api-keys").header("www-authenticate"))

    def test_client_request_id_is_echoed_on_admin_replies(self):
        cases = [("GET", "/v1/api-keys", ADMIN_TOKEN, 200), ("GET", "/v1/api-keys", None, 401),
                 ("GET", "/v1/api-keys/key_nosuchkey000000000000", ADMIN_TOKEN, 404),
                 ("GET", "/metrics", None, 200)]
        for method, path, token, status in cases:
            with self.subTest(path=path, status=status):
                rid = f"admin-rid-{status}"
                r = self.g.admin(method, path, token=token, headers={"X-Request-Id": rid})
                self.assertEqual(r.status, status)
                self.assertEqual(r.header("x-request-id"), rid)
                if status >= 400:
                    self.assertEqual(r.json()["error"]["request_id"], rid)

    def test_rotate_with_grace(self):
        k = self.create(scopes=["s"])
        r = self.g.admin("POST", f"/v1/api-keys/{k['id']}/rotate", {"grace": "1h"})
        self.assertEqual(r.status, 201, r.body)
        new = r.json()["data"]
        self.assertEqual(new["rotated_from"], k["id"])
        self.assertEqual(new["scopes"], ["s"])
        for key in (k["key"], new["key"]):
            self.assertEqual(self.g.request("GET", "/x", headers={"X-Api-Key": key}).status, 200)
        old = self.g.admin("GET", f"/v1/api-keys/{k['id']}").json()["data"]
        self.assertIsNotNone(old["expires_at"])

    def test_validation_errors_name_the_field(self):
        cases = [
            ("POST", "/v1/api-keys", "{not json", "body"),
            ("POST", "/v1/api-keys", "[1]", "body"),
            ("POST", "/v1/api-keys", {"owner": "x"}, "name"),
            ("POST", "/v1/api-keys", {"name": 5}, "name"),
            ("POST", "/v1/api-keys", {"name": "a", "colour": "red"}, "colour"),
            ("POST", "/v1/api-keys", {"name": "a", "scopes": "read"}, "scopes"),
            ("POST", "/v1/api-keys", {"name": "a", "rate": {"requests": 0, "period": "1m"}}, "rate.requests"),
            ("POST", "/v1/api-keys", {"name": "a", "rate": {"requests": 5, "period": "soon"}}, "rate.period"),
            ("POST", "/v1/api-keys", {"name": "a", "expires_at": "tomorrow"}, "expires_at"),
            ("POST", "/v1/api-keys", {"name": "a", "expires_in": "-1d"}, "expires_in"),
            ("POST", "/v1/api-keys", {"name": "a", "allowed_ips": ["10.0.0.0/99"]}, "allowed_ips"),
            ("POST", "/v1/api-keys", {"name": "a", "metadata": {"a": 1}}, "metadata"),
            ("POST", "/v1/api-keys", {"name": "a", "plan": "gold"}, "plan"),
        ]
        for method, path, body, field in cases:
            with self.subTest(field=field, body=body):
                b = self.assertEnvelope(self.g.admin(method, path, body), 400, "VALIDATION_ERROR")
                self.assertEqual(b["error"]["details"]["field"], field)
        k = self.create()
        b = self.assertEnvelope(self.g.admin("PATCH", f"/v1/api-keys/{k['id']}", {"enabled": "yes"}),
                                400, "VALIDATION_ERROR")
        self.assertEqual(b["error"]["details"]["field"], "enabled")
        b = self.assertEnvelope(self.g.admin("POST", f"/v1/api-keys/{k['id']}/rotate", {"grace": 3}),
                                400, "VALIDATION_ERROR")
        self.assertEqual(b["error"]["details"]["field"], "grace")

    def test_not_found_method_not_allowed_conflict(self):
        self.assertEnvelope(self.g.admin("GET", "/v1/api-keys/key_nosuchkey000000000000"), 404, "NOT_FOUND")
        self.assertEnvelope(self.g.admin("DELETE", "/v1/api-keys/kg_live_none"), 404, "NOT_FOUND")
        self.assertEnvelope(self.g.admin("GET", "/v1/nothing-here"), 404, "NOT_FOUND")
        r = self.g.admin("PUT", "/v1/api-keys")
        self.assertEnvelope(r, 405, "METHOD_NOT_ALLOWED")
        self.assertEqual(r.header("allow"), "GET, POST")
        k = self.create()
        self.g.admin("DELETE", f"/v1/api-keys/{k['id']}")
        self.assertEnvelope(self.g.admin("PATCH", f"/v1/api-keys/{k['id']}", {"name": "x"}), 409, "CONFLICT")
        self.assertEnvelope(self.g.admin("POST", f"/v1/api-keys/{k['id']}/rotate"), 409, "CONFLICT")

    def test_audit_events_from_admin_and_cli(self):
        k = self.create()
        self.g.admin("PATCH", f"/v1/api-keys/{k['id']}", {"name": "n"})
        self.g.admin("POST", f"/v1/api-keys/{k['id']}/rotate")
        c = self.g.create_key("--name", "from-cli")
        self.g.cli("keys", "revoke", c["id"])
        r = self.g.admin("GET", "/v1/audit-events?pageSize=10").json()
        self.assertEqual(r["meta"]["total"], 5)
        got = [(e["action"], e["key_id"], e["actor"]) for e in r["data"]]
        self.assertEqual(got, [("revoke", c["id"], "cli"), ("create", c["id"], "cli"),
                               ("rotate", k["id"], "admin"), ("update", k["id"], "admin"),
                               ("create", k["id"], "admin")])
        self.assertRegex(r["data"][0]["time"], r"^\d{4}-\d\d-\d\dT")

    def test_audit_event_filters(self):
        a = self.create(name="a")
        b = self.create(name="b")
        self.g.admin("PATCH", f"/v1/api-keys/{a['id']}", {"name": "a2"})
        self.g.admin("DELETE", f"/v1/api-keys/{b['id']}")
        self.g.admin("PATCH", f"/v1/api-keys/{a['id']}", {"scopes": ["read"]})
        every = self.g.admin("GET", "/v1/audit-events?pageSize=100").json()["data"]
        self.assertEqual(len(every), 5)

        def ids(query):
            r = self.g.admin("GET", "/v1/audit-events?" + query)
            self.assertEqual(r.status, 200, r.body)
            body = r.json()
            return [(e["action"], e["key_id"]) for e in body["data"]], body["meta"]

        got, meta = ids(f"key_id={a['id']}")
        self.assertEqual(got, [("update", a["id"]), ("update", a["id"]), ("create", a["id"])])
        self.assertEqual(meta["total"], 3)
        self.assertEqual(ids("action=revoke")[0], [("revoke", b["id"])])
        self.assertEqual(ids(f"key_id={a['id']}&action=create")[0], [("create", a["id"])])
        # pagination counts the filtered events
        got, meta = ids(f"key_id={a['id']}&pageSize=2&page=2")
        self.assertEqual((got, meta), ([("create", a["id"])],
                                       {"page": 2, "pageSize": 2, "total": 3, "totalPages": 2}))
        # since: at or after, in any zone offset (a '+' in a query is a space: %2B)
        pivot = every[2]["time"]  # the revoke of b, as the server wrote it (ms precision)
        want = [(e["action"], e["key_id"]) for e in every if e["time"] >= pivot]
        self.assertEqual(ids("since=" + pivot)[0], want)
        import datetime
        t = datetime.datetime.fromisoformat(pivot.replace("Z", "+00:00"))
        plus2 = t.astimezone(datetime.timezone(datetime.timedelta(hours=2))).isoformat(timespec="milliseconds")
        self.assertEqual(ids("since=" + plus2.replace("+", "%2B"))[0], want)
        self.assertEqual(ids("since=2100-01-01T00:00:00Z")[0], [])
        self.assertEqual(ids(f"key_id={a['id']}&since=2000-01-01T00:00:00Z")[1]["total"], 3)
        for bad, field in (("since=yesterday", "since"), ("since=" + plus2, "since"),  # raw '+': a space
                           ("action=delete", "action"), ("actor=admin", "actor"), ("pageSize=101", "pageSize")):
            with self.subTest(bad=bad):
                r = self.g.admin("GET", "/v1/audit-events?" + bad)
                body = self.assertEnvelope(r, 400, "VALIDATION_ERROR")
                self.assertIn(field, json.dumps(body))

    def test_key_scope_limits_keys_to_their_owner(self):
        g = self.gateway({"admin": {"key_scope": "keys:admin"}})
        boss = g.create_key("--name", "boss", "--owner", "acme", "--scopes", "keys:admin,read")
        other = g.create_key("--name", "o", "--owner", "umbrella")
        r = g.admin("POST", "/v1/api-keys", {"name": "child", "scopes": ["read"]}, token=boss["key"])
        self.assertEqual(r.status, 201, r.body)
        child = r.json()["data"]
        self.assertEqual(child["owner"], "acme")
        self.assertEqual(g.admin("GET", "/v1/audit-events").json()["data"][0]["actor"], boss["id"])
        # a key caller sees only the audit events of its owner's keys
        seen = g.admin("GET", "/v1/audit-events", token=boss["key"]).json()
        self.assertEqual({e["key_id"] for e in seen["data"]}, {boss["id"], child["id"]})
        self.assertEqual(seen["meta"]["total"], 2)
        self.assertEqual(g.admin("GET", f"/v1/audit-events?key_id={other['id']}", token=boss["key"])
                         .json()["data"], [])
        self.assertEnvelope(g.admin("POST", "/v1/api-keys", {"name": "x", "scopes": ["write"]}, token=boss["key"]),
                            403, "FORBIDDEN", "scope")
        self.assertEnvelope(g.admin("GET", f"/v1/api-keys/{other['id']}", token=boss["key"]), 404, "NOT_FOUND")
        listed = g.admin("GET", "/v1/api-keys", token=boss["key"]).json()["data"]
        self.assertEqual(sorted(k["owner"] for k in listed), ["acme", "acme"])
        plain = g.admin("POST", "/v1/api-keys", {"name": "p"}).json()["data"]  # admin token still works
        self.assertEnvelope(g.admin("POST", "/v1/api-keys", {"name": "x"}, token=child["key"]),
                            403, "FORBIDDEN", "scope")  # a key without the scope cannot create keys
        self.assertTrue(plain["id"])
        # a disabled key loses the admin API too
        g.admin("PATCH", f"/v1/api-keys/{boss['id']}", {"enabled": False})
        self.assertEnvelope(g.admin("GET", "/v1/api-keys", token=boss["key"]), 401, "AUTH_ERROR", "invalid")

    def test_metrics_move_with_traffic(self):
        g = self.g
        k = self.create()
        base_ok = g.metric("keygate_requests_total", 'class="2xx",reason="none"')
        base_missing = g.metric("keygate_auth_failures_total", 'reason="missing"')
        base_hist = g.metric("keygate_request_duration_seconds_count")
        for _ in range(3):
            g.request("GET", "/x", headers={"X-Api-Key": k["key"]})
        for _ in range(2):
            g.request("GET", "/x")
        self.assertEqual(g.metric_reaching("keygate_requests_total", 'class="2xx",reason="none"', base_ok + 3)
                         - base_ok, 3)
        self.assertEqual(g.metric_reaching("keygate_requests_total", 'class="4xx",reason="missing"', 2), 2)
        self.assertEqual(g.metric_reaching("keygate_auth_failures_total", 'reason="missing"', base_missing + 2)
                         - base_missing, 2)
        self.assertEqual(g.metric_reaching("keygate_request_duration_seconds_count", "", base_hist + 5)
                         - base_hist, 5)
        self.assertGreaterEqual(g.metric("keygate_upstream_duration_seconds_count"), 3)
        self.assertEqual(g.metric("keygate_keys_active"), 1)
        g.admin("PATCH", f"/v1/api-keys/{k['id']}", {"enabled": False})  # disabled: not active
        self.assertEqual(g.metric("keygate_keys_active"), 0)
        g.admin("PATCH", f"/v1/api-keys/{k['id']}", {"enabled": True})
        self.assertEqual(g.metric("keygate_keys_active"), 1)
        g.admin("DELETE", f"/v1/api-keys/{k['id']}")
        self.assertEqual(g.metric("keygate_keys_active"), 0)
        self.assertEqual(g.metric("keygate_keys_loaded"), 1)
        c = g.connection()
        g.request("GET", "/live", conn=c)
        self.assertGreaterEqual(g.metric("keygate_open_connections"), 1)
        c.close()
        text = g.request("GET", "/metrics", admin=True)
        self.assertTrue(text.header("content-type").startswith("text/plain"))


class OpenApi(GatewayTest):
    def test_document_and_routes_agree(self):
        with open(OPENAPI) as f:
            doc = json.load(f)
        self.assertTrue(doc["openapi"].startswith("3."))
        g = self.gateway()
        k = g.admin("POST", "/v1/api-keys", {"name": "probe"}).json()["data"]
        methods = ["get", "post", "put", "patch", "delete"]
        documented = set()
        for path, item in doc["paths"].items():
            for m in methods:
                concrete = path.replace("{id}", k["id"])
                body = {"name": "x"} if (m, path) == ("post", "/v1/api-keys") else ({} if m in ("post", "patch") else None)
                r = g.admin(m.upper(), concrete, body)
                not_a_route = r.status == 405 or (r.status == 404 and "No such route" in r.body.decode())
                if m in item:
                    documented.add((m, path))
                    self.assertFalse(not_a_route, f"documented {m.upper()} {path} is not served: {r.status}")
                    self.assertIn(str(r.status), item[m]["responses"], f"{m.upper()} {path} answered {r.status}")
                else:
                    self.assertTrue(not_a_route, f"{m.upper()} {path} is served but not documented")
        # Every documented query parameter is accepted; an undocumented one is refused.
        # (A recent time: usage reports span at most 744 hours.)
        recent = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
        for path, item in doc["paths"].items():
            params = [p for p in item.get("get", {}).get("parameters", []) if p["in"] == "query"]
            if not params:
                continue
            for p in params:
                schema = p["schema"]
                value = (schema["enum"][0] if "enum" in schema else "1" if schema["type"] == "integer"
                         else recent if schema.get("format") == "date-time" else "x")
                r = g.admin("GET", f"{path.replace('{id}', k['id'])}?{p['name']}={value}")
                self.assertEqual(r.status, 200, f"GET {path}?{p['name']}={value}: {r.body}")
            r = g.admin("GET", f"{path}?not_documented=1")
            self.assertEqual(r.status, 400, f"GET {path} took an undocumented parameter")
        # The document is served, to the token holder only (SPEC §4), exactly as in docs/.
        self.assertEqual(g.admin("GET", "/openapi.json", token=None).status, 401)
        r = g.admin("GET", "/openapi.json")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("content-type"), "application/json")
        with open(OPENAPI, "rb") as f:
            self.assertEqual(r.body, f.read())
        # Paths the server might grow without documenting them:
        for path in ("/v1/keys", "/v1/api-keys/x/y", "/v1/audit-events/1", "/v1/api-keys/x/revoke", "/"):
            r = g.admin("GET", path)
            self.assertEqual(r.status, 404, path)
        self.assertGreaterEqual(len(documented), 8)


if __name__ == "__main__":
    unittest.main()
