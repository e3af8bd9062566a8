"""SPEC §9 deployment modes and the §10 client-IP rule through the real binary:
trusted_proxies and X-Forwarded-For, shadow mode, self-service key routes on
the proxy listener, forward-auth answers (the real nginx and Caddy in front of
keygate are in test_forward_auth.py)."""
import http.client
import json
import os
import re
import unittest

from harness import ADMIN_TOKEN, EXAMPLES, HERE, GatewayTest, wait_until


def request_from(g, source, method, path, headers):
    """A request from another loopback address (127.0.0.2 is not 127.0.0.1)."""
    c = http.client.HTTPConnection("127.0.0.1", g.port, timeout=10, source_address=(source, 0))
    try:
        return g.request(method, path, headers=headers, conn=c)
    finally:
        c.close()


def access_lines(g):
    with open(os.path.join(g.tmp, "stdout.log"), errors="replace") as f:
        return [json.loads(line) for line in f if line.startswith("{")]


def logged(g, responses):
    """The access-log lines of these responses, in their order (worker threads
    may write lines in another order than the requests were answered)."""
    ids = [r.header("x-request-id") for r in responses]
    by_id = {}

    def all_there():
        by_id.update({line["request_id"]: line for line in access_lines(g)})
        return all(i in by_id for i in ids)

    assert wait_until(all_there), f"not every request was logged: {ids}"
    return [by_id[i] for i in ids]


class ClientIp(GatewayTest):
    """127.0.0.1 is the trusted proxy; a client connecting from 127.0.0.2 is not."""

    def setUp(self):
        self.g = self.gateway({"trusted_proxies": ["127.0.0.1/32"]})
        self.key = self.g.create_key("--name", "office", "--allow-ip", "203.0.113.0/24")["key"]

    def get(self, xff=None, source="127.0.0.1"):
        headers = {"X-Api-Key": self.key}
        if xff is not None:
            headers["X-Forwarded-For"] = xff
        return request_from(self.g, source, "GET", "/v1/x", headers)

    def test_allow_listed_key_works_only_from_the_right_forwarded_address(self):
        seen = [self.get()]
        self.assertEqual(seen[-1].status, 403)  # the trusted peer itself is not allowed
        seen.append(self.get("203.0.113.7"))
        self.assertEqual(seen[-1].status, 200, seen[-1].body)
        # The upstream sees the client appended, as keygate resolved it.
        self.assertEqual(seen[-1].json()["headers"]["x-forwarded-for"],
                         ["203.0.113.7, 203.0.113.7"])
        seen.append(self.get("198.51.100.1"))
        self.assertEqual(seen[-1].status, 403)
        # An allowed address written left of what the trusted hop appended is the client's own.
        seen.append(self.get("203.0.113.7, 198.51.100.1"))
        self.assertEqual(seen[-1].status, 403)
        seen.append(self.get("198.51.100.1, 203.0.113.9, 127.0.0.1"))
        self.assertEqual(seen[-1].status, 200)
        seen.append(self.get("203.0.113.7, garbage"))
        self.assertEqual(seen[-1].status, 403)  # stops at the trusted peer
        self.assertEqual([line["client_ip"] for line in logged(self.g, seen)],
                         ["127.0.0.1", "203.0.113.7", "198.51.100.1", "198.51.100.1",
                          "203.0.113.9", "127.0.0.1"])

    def test_untrusted_peers_forwarded_for_is_ignored(self):
        r = self.get("203.0.113.7", source="127.0.0.2")
        self.assertEnvelope(r, 403, "FORBIDDEN", "ip")
        ok = self.g.create_key("--name", "open")["key"]
        r = request_from(self.g, "127.0.0.2", "GET", "/v1/x",
                         {"X-Api-Key": ok, "X-Forwarded-For": "203.0.113.7"})
        self.assertEqual(r.json()["headers"]["x-forwarded-for"], ["203.0.113.7, 127.0.0.2"])

    def test_last_used_ip_is_the_resolved_client(self):
        k = self.g.create_key("--name", "tracked")
        self.assertEqual(self.g.request("GET", "/v1/x", headers={
            "X-Api-Key": k["key"], "X-Forwarded-For": "192.0.2.55"}).status, 200)
        seen = lambda: self.g.admin("GET", f"/v1/api-keys/{k['id']}").json()["data"]["last_used_ip"]
        self.assertTrue(wait_until(lambda: seen() is not None, timeout=10))
        self.assertEqual(seen(), "192.0.2.55")


class Shadow(GatewayTest):
    def test_would_be_429s_are_exact_and_all_reach_the_upstream(self):
        g = self.gateway({"shadow": True,
                          "plans": {"default": {"rate": {"requests": 3, "period": "1h"}}}})
        key = g.create_key("--name", "rolling-out")
        statuses, forwarded, seen = [], 0, []
        for _ in range(10):
            r = g.request("GET", "/v1/x", headers={"X-Api-Key": key["key"]})
            seen.append(r)
            statuses.append(r.status)
            body = r.json()
            forwarded += body.get("path") == "/v1/x"  # the upstream's echo
            self.assertEqual(body["headers"]["x-keygate-key-id"], [key["id"]])
            self.assertNotIn("x-api-key", body["headers"])  # shadow or not, keys stay here
            self.assertIsNone(r.header("retry-after"))
        self.assertEqual(statuses, [200] * 10)
        self.assertEqual(forwarded, 10)
        self.assertEqual(g.metric_reaching("keygate_shadow_denied_total", 'reason="rate_limit"', 7), 7)
        self.assertEqual(g.metric("keygate_rate_limited_total"), 0)  # nothing was refused
        reasons = [line["shadow_reason"] for line in logged(g, seen)]
        self.assertEqual(reasons, [None] * 3 + ["rate_limit"] * 7)

    def test_would_be_credit_429s_are_forwarded_counted_and_spend_nothing(self):
        g = self.gateway({"shadow": True,
                          "plans": {"default": {"rate": {"requests": 4, "period": "1h"}}},
                          "routes": [{"path_prefix": "/search", "cost": 2}]})
        metered = g.create_key("--name", "metered", "--credits", "3")
        flush = g.create_key("--name", "flush", "--credits", "10")
        seen = []

        def get(key, path):
            r = g.request("GET", path, headers={"X-Api-Key": key["key"]})
            seen.append(r)
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual(r.json()["path"], path)  # the upstream's echo: forwarded
            self.assertIsNone(r.header("retry-after"))
            return (r.header("x-credits-remaining"), r.header("x-ratelimit-remaining"))

        # cost 2 of 3 credits; then cost 2 of 1: would be a credits 429, takes
        # neither credits nor tokens; then the last credit; then none left.
        self.assertEqual([get(metered, "/search"), get(metered, "/search"),
                          get(metered, "/v1/x"), get(metered, "/v1/x")],
                         [("1", "2"), ("1", "2"), ("0", "1"), ("0", "1")])
        # A would-be rate-limit 429 spends no credits either.
        self.assertEqual([get(flush, "/v1/x")[0] for _ in range(5)], ["9", "8", "7", "6", "6"])
        self.assertEqual(g.metric_reaching("keygate_shadow_denied_total", 'reason="credits"', 2), 2)
        self.assertEqual(g.metric_reaching("keygate_shadow_denied_total", 'reason="rate_limit"', 1), 1)
        self.assertEqual(g.metric("keygate_rate_limited_total"), 0)  # nothing was refused
        self.assertEqual([line["shadow_reason"] for line in logged(g, seen)],
                         [None, "credits", None, "credits"] + [None] * 4 + ["rate_limit"])
        remaining = lambda k: g.admin("GET", f"/v1/api-keys/{k['id']}").json()["data"][
            "credits"]["remaining"]
        self.assertEqual((remaining(metered), remaining(flush)), (0, 6))

    def test_unknown_keys_are_forwarded_without_identity(self):
        g = self.gateway({"shadow": True})
        r = g.request("GET", "/v1/x", headers={"X-Keygate-Owner": "spoofed"})
        self.assertEqual(r.status, 200)
        self.assertFalse([h for h in r.json()["headers"] if h.startswith("x-keygate-")])
        r = g.request("GET", "/v1/x", headers={"Authorization": "Bearer kg_live_" + "A" * 38})
        self.assertEqual(r.status, 200)
        self.assertNotIn("authorization", r.json()["headers"])
        self.assertEqual(g.metric_reaching("keygate_shadow_denied_total", 'reason="missing"', 1), 1)
        self.assertEqual(g.metric_reaching("keygate_shadow_denied_total", 'reason="malformed"', 1), 1)

    def test_per_route_shadow(self):
        g = self.gateway({"routes": [{"path_prefix": "/beta/", "shadow": True}]})
        seen = [g.request("GET", "/beta/x"), g.request("GET", "/v1/x")]
        self.assertEqual(seen[0].status, 200)
        self.assertEnvelope(seen[1], 401, "AUTH_ERROR", "missing")
        lines = logged(g, seen)
        self.assertEqual([(l["path"], l["status"], l["shadow_reason"], l["reason"]) for l in lines],
                         [("/beta/x", 200, "missing", None), ("/v1/x", 401, None, "missing")])


class SelfService(GatewayTest):
    def setUp(self):
        self.g = self.gateway({"admin": {"key_scope": "keys:admin"},
                               "self_service": {"path_prefix": "/v1/api-keys"}})
        self.mine = self.g.create_key("--name", "manager", "--owner", "acme",
                                      "--scopes", "keys:admin,read")
        self.theirs = self.g.create_key("--name", "other", "--owner", "globex")

    def call(self, method, path, body=None, key=None):
        h = {"X-Api-Key": key or self.mine["key"]}
        data = None
        if body is not None:
            data = json.dumps(body)
            h["Content-Type"] = "application/json"
        return self.g.request(method, path, headers=h, body=data)

    def test_key_routes_at_the_proxy_port_for_the_own_owner(self):
        r = self.call("POST", "/v1/api-keys", {"name": "ci", "scopes": ["read"]})
        self.assertEqual(r.status, 201, r.body)
        made = r.json()["data"]
        self.assertEqual(made["owner"], "acme")
        self.assertIsNotNone(r.header("x-ratelimit-remaining"))  # rate-limited like any request
        self.assertEqual(self.g.request("GET", "/v1/x", headers={"X-Api-Key": made["key"]}).status, 200)
        listed = self.call("GET", "/v1/api-keys?pageSize=10").json()
        self.assertEqual({k["owner"] for k in listed["data"]}, {"acme"})
        self.assertEqual(listed["meta"]["total"], 2)
        self.assertEqual(self.call("PATCH", f"/v1/api-keys/{made['id']}", {"name": "ci-2"})
                         .json()["data"]["name"], "ci-2")
        rotated = self.call("POST", f"/v1/api-keys/{made['id']}/rotate", {"grace": "0s"})
        self.assertEqual(rotated.status, 201)
        new_id = rotated.json()["data"]["id"]
        self.assertEqual(self.call("DELETE", f"/v1/api-keys/{new_id}").json()["data"],
                         {"id": new_id, "revoked": True})
        # The audit log names the key that acted.
        events = self.g.admin("GET", "/v1/audit-events?pageSize=100").json()["data"]
        self.assertIn(self.mine["id"], {e.get("actor") for e in events})

    def test_other_owners_and_wider_scopes_are_refused(self):
        self.assertEnvelope(self.call("GET", f"/v1/api-keys/{self.theirs['id']}"), 404, "NOT_FOUND")
        self.assertEnvelope(self.call("DELETE", f"/v1/api-keys/{self.theirs['id']}"), 404,
                            "NOT_FOUND")
        self.assertEnvelope(self.call("POST", "/v1/api-keys", {"name": "x", "owner": "globex"}),
                            403, "FORBIDDEN")
        self.assertEnvelope(self.call("POST", "/v1/api-keys", {"name": "x", "scopes": ["admin"]}),
                            403, "FORBIDDEN")
        # A key without the scope, the admin token, or no key at all: refused.
        self.assertEnvelope(self.call("GET", "/v1/api-keys", key=self.theirs["key"]), 403,
                            "FORBIDDEN", "scope")
        r = self.g.request("GET", "/v1/api-keys", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        self.assertEqual(r.status, 401)
        self.assertEnvelope(self.g.request("GET", "/v1/api-keys"), 401, "AUTH_ERROR", "missing")
        self.assertEnvelope(self.call("GET", "/v1/api-keys/x/usage"), 404, "NOT_FOUND")
        r = self.call("PUT", "/v1/api-keys")
        self.assertEqual((r.status, r.header("allow")), (405, "GET, POST"))
        # Nothing of this reached the upstream, which echoes every request.
        self.assertEqual(self.g.admin("GET", f"/v1/api-keys/{self.theirs['id']}").json()["data"]
                         ["status"], "active")

    def test_bad_bodies_get_the_admin_api_answers(self):
        self.assertEnvelope(self.g.request("POST", "/v1/api-keys", body=b"{not json",
                                           headers={"X-Api-Key": self.mine["key"]}),
                            400, "VALIDATION_ERROR")
        big = json.dumps({"name": "x" * (1 << 20)})  # just over 1 MiB, sent whole
        r = self.g.request("POST", "/v1/api-keys", body=big, headers={"X-Api-Key": self.mine["key"]})
        self.assertEqual(r.status, 413)


class ForwardAuthAnswers(GatewayTest):
    def test_checks_answer_200_with_identity_or_the_envelope(self):
        g = self.gateway({"forward_auth": {"path": "/_keygate/auth"},
                          "plans": {"default": {"rate": {"requests": 1, "period": "1h"}}}})
        k = g.create_key("--name", "fa", "--owner", "acme")
        r = g.request("GET", "/_keygate/auth", headers={
            "X-Api-Key": k["key"], "X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/v1/x"})
        self.assertEqual((r.status, r.body), (200, b""))
        self.assertEqual(r.header("x-keygate-key-id"), k["id"])
        self.assertEqual(r.header("x-keygate-owner"), "acme")
        self.assertEqual(r.header("x-ratelimit-remaining"), "0")
        r = g.request("GET", "/_keygate/auth", headers={"X-Api-Key": k["key"],
                                                         "X-Original-URI": "/v1/y"})
        self.assertEnvelope(r, 429, "RATE_LIMIT_ERROR", "rate_limit")
        self.assertIsNotNone(r.header("retry-after"))
        r = g.request("GET", "/_keygate/auth", headers={"X-Forwarded-Uri": "/v1/x"})
        self.assertEnvelope(r, 401, "AUTH_ERROR", "missing")
        self.assertEqual(r.header("www-authenticate"), 'Bearer realm="keygate"')

    def test_a_check_is_logged_as_the_request_it_was_about(self):
        # Was logged as the check itself (GET, or HEAD from the shipped nginx
        # config, on /_keygate/auth): every line alike, whatever was asked.
        g = self.gateway({"forward_auth": {"path": "/_keygate/auth"}})
        k = g.create_key("--name", "fa-log")
        for method, uri, key in (("POST", "/v1/orders?token=secret", k["key"]),
                                 ("DELETE", "/v1/orders/7", None)):
            headers = {"X-Forwarded-Method": method, "X-Forwarded-Uri": uri}
            if key:
                headers["X-Api-Key"] = key
            g.request("HEAD", "/_keygate/auth", headers=headers)
        self.assertTrue(wait_until(lambda: len(g.access_log()) >= 2, timeout=10), g.logs())
        lines = [(e["method"], e["path"], e["status"]) for e in g.access_log()]
        self.assertEqual(lines, [("POST", "/v1/orders", 200), ("DELETE", "/v1/orders/7", 401)])

    def test_credits_are_spent_and_the_credits_429_answered(self):
        g = self.gateway({"forward_auth": {"path": "/_keygate/auth"}})
        k = g.create_key("--name", "fa-credits", "--credits", "1")
        check = {"X-Api-Key": k["key"], "X-Forwarded-Uri": "/v1/x"}
        r = g.request("GET", "/_keygate/auth", headers=check)
        self.assertEqual((r.status, r.body), (200, b""))
        self.assertEqual(r.header("x-credits-remaining"), "0")
        r = g.request("GET", "/_keygate/auth", headers=check)
        body = self.assertEnvelope(r, 429, "RATE_LIMIT_ERROR", "credits")
        self.assertEqual(body["error"]["details"]["credits_remaining"], 0)
        self.assertEqual(r.header("x-credits-remaining"), "0")
        self.assertIsNone(r.header("x-keygate-key-id"))
        shown = g.admin("GET", f"/v1/api-keys/{k['id']}").json()["data"]
        self.assertEqual(shown["credits"]["remaining"], 0)


class DocumentedConfigs(GatewayTest):
    """The configs the README and config/ show for these modes pass
    `keygate check-config`; their mistakes are named with the line."""

    def check(self, g, path):
        return g.cli("check-config", config=path, check=False)

    def test_shipped_and_readme_configs_are_accepted(self):
        g = self.gateway(start=False)
        with open(os.path.join(HERE, "..", "..", "README.md")) as f:
            readme = f.read()
        section = readme[readme.index("## Deployment modes"):]
        snippet = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
        self.assertIn("forward_auth:", snippet)
        readme_yaml = os.path.join(g.tmp, "readme.yaml")
        with open(readme_yaml, "w") as f:
            f.write(snippet)
        for path in (readme_yaml, os.path.join(HERE, "..", "..", "config", "keygate.yaml"),
                     os.path.join(EXAMPLES, "forward-auth.yaml"),
                     os.path.join(EXAMPLES, "stevora.yaml")):
            p = self.check(g, path)
            self.assertEqual((p.returncode, p.stdout), (0, "config OK\n"), f"{path}: {p.stderr}")

    def test_mistakes_are_named_with_their_line(self):
        g = self.gateway(start=False)
        bad = os.path.join(g.tmp, "bad.yaml")
        with open(bad, "w") as f:
            f.write("self_service: {path_prefix: /v1/api-keys}\n"
                    "trusted_proxies: [10.0.0.0/33]\n"
                    "shadow: maybe\n"
                    "forward_auth: {path: /health}\n")
        p = self.check(g, bad)
        self.assertEqual(p.returncode, 2, p.stderr)
        for line, words in ((1, "admin.key_scope"), (2, "10.0.0.0/33"), (3, "shadow"),
                            (4, "health endpoint")):
            self.assertIn(f"bad.yaml:{line}: ", p.stderr)
            self.assertRegex(p.stderr, rf"bad\.yaml:{line}: [^\n]*{re.escape(words)}")


if __name__ == "__main__":
    unittest.main()
