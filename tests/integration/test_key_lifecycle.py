"""Key lifecycle (SPEC §11, issue 17) through the real binary: credits spent to
zero, refilled, priced by route cost, kept across a restart and a crash;
Deprecation/Sunset during a rotation's grace; usage counts per outcome from the
admin API and the CLI. With KEYGATE_TEST_STORE=postgres the same tests run on a
real PostgreSQL (ctest: integration_key_lifecycle_postgres)."""
import calendar
import email.utils
import signal
import time
import unittest
from datetime import datetime

from harness import GatewayTest, wait_until


def parse_rfc3339(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Credits(GatewayTest):
    def get(self, g, key, path="/"):
        return g.request("GET", path, headers={"X-Api-Key": key})

    def stored_remaining(self, g, key_id):
        """The balance as the store holds it, read by the CLI (its own process)."""
        import json
        shown = json.loads(g.cli("keys", "show", key_id, "--json").stdout)
        return shown["credits"]["remaining"]

    def test_spend_to_zero_then_429_credits(self):
        g = self.gateway()
        k = g.create_key("--name", "metered", "--credits", "3")
        self.assertEqual(k["credits"], {"remaining": 3, "refill": None, "next_refill_at": None})
        for left in (2, 1, 0):
            r = self.get(g, k["key"])
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual(r.header("x-credits-remaining"), str(left))
        r = self.get(g, k["key"])
        body = self.assertEnvelope(r, 429, "RATE_LIMIT_ERROR", "credits")
        self.assertEqual(r.header("x-credits-remaining"), "0")
        self.assertIsNone(r.header("retry-after"))  # no refill: nothing to wait for
        self.assertEqual(body["error"]["details"]["credits_remaining"], 0)
        # The refusal took no rate-limit token (60/1m: 3 taken by the 3 requests).
        self.assertEqual(r.header("x-ratelimit-remaining"), "57")
        # The admin API shows the balance as of now.
        shown = g.admin("GET", f"/v1/api-keys/{k['id']}").json()["data"]
        self.assertEqual(shown["credits"]["remaining"], 0)
        # A key without credits is not metered and carries no credits header.
        plain = g.create_key("--name", "plain")
        r = self.get(g, plain["key"])
        self.assertEqual(r.status, 200)
        self.assertIsNone(r.header("x-credits-remaining"))
        # The operator tops the key up (admin PATCH): served at once.
        r = g.admin("PATCH", f"/v1/api-keys/{k['id']}", {"credits": {"remaining": 2}})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["data"]["credits"]["remaining"], 2)
        self.assertTrue(wait_until(lambda: self.get(g, k["key"]).status == 200, 10))

    def test_route_cost_spends_credits_and_tokens(self):
        g = self.gateway({"plans": {"default": {"rate": {"requests": 10, "period": "1h"}}},
                          "routes": [{"path_prefix": "/search", "cost": 3}]})
        k = g.create_key("--name", "priced", "--credits", "7")
        r = self.get(g, k["key"], "/search")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.header("x-credits-remaining"), "4")
        self.assertEqual(r.header("x-ratelimit-remaining"), "7")  # 10 - 3
        r = self.get(g, k["key"], "/search")
        self.assertEqual(r.header("x-credits-remaining"), "1")
        r = self.get(g, k["key"], "/search")  # costs 3, 1 left
        body = self.assertEnvelope(r, 429, "RATE_LIMIT_ERROR", "credits")
        self.assertEqual(body["error"]["details"]["cost"], 3)
        self.assertEqual(r.header("x-credits-remaining"), "1")
        self.assertEqual(r.header("x-ratelimit-remaining"), "4")  # no tokens taken
        r = self.get(g, k["key"], "/other")  # default cost 1
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.header("x-credits-remaining"), "0")
        self.assertEqual(r.header("x-ratelimit-remaining"), "3")

    def test_cost_takes_tokens_without_credits(self):
        g = self.gateway({"plans": {"default": {"rate": {"requests": 5, "period": "1h"}}},
                          "routes": [{"path_prefix": "/bulk", "cost": 2}]})
        k = g.create_key("--name", "tokens")
        self.assertEqual(self.get(g, k["key"], "/bulk").header("x-ratelimit-remaining"), "3")
        self.assertEqual(self.get(g, k["key"], "/bulk").header("x-ratelimit-remaining"), "1")
        self.assertEnvelope(self.get(g, k["key"], "/bulk"), 429, "RATE_LIMIT_ERROR", "rate_limit")
        self.assertEqual(self.get(g, k["key"], "/one").status, 200)

    def test_refill_on_its_grid(self):
        g = self.gateway()
        r = g.admin("POST", "/v1/api-keys", {
            "name": "refilled", "credits": {"remaining": 1, "refill": {"amount": 2, "interval": "2s"}}})
        self.assertEqual(r.status, 201, r.body)
        k = r.json()["data"]
        self.assertEqual(k["credits"]["refill"], {"amount": 2, "interval": "2s"})
        first_refill = parse_rfc3339(k["credits"]["next_refill_at"])
        self.assertAlmostEqual(first_refill - parse_rfc3339(k["created_at"]), 2.0, delta=0.01)
        self.assertEqual(self.get(g, k["key"]).header("x-credits-remaining"), "0")
        r = self.get(g, k["key"])
        if time.time() < first_refill - 0.05:  # (a slow runner may be past the refill already)
            body = self.assertEnvelope(r, 429, "RATE_LIMIT_ERROR", "credits")
            retry = int(r.header("retry-after"))
            self.assertTrue(1 <= retry <= 2, retry)
            self.assertEqual(body["error"]["details"]["retry_after_seconds"], retry)
        # Polled, never slept: the first request admitted again comes at the refill.
        got = {}

        def admitted():
            resp = self.get(g, k["key"])
            got["r"], got["at"] = resp, time.time()
            return resp.status == 200
        self.assertTrue(wait_until(admitted, 15, step=0.05))
        self.assertGreaterEqual(got["at"], first_refill - 0.05)
        self.assertEqual(got["r"].header("x-credits-remaining"), "1")  # topped up to 2, 1 spent

    def test_restart_keeps_the_balance_and_a_crash_loses_at_most_one_flush(self):
        g = self.gateway()
        k = g.create_key("--name", "durable", "--credits", "10")
        for _ in range(3):
            self.assertEqual(self.get(g, k["key"]).status, 200)
        self.assertEqual(g.stop(), 0)  # SIGTERM: pending spending is flushed on the way out
        self.assertEqual(self.stored_remaining(g, k["id"]), 7)
        g.start()
        r = self.get(g, k["key"])
        self.assertEqual(r.header("x-credits-remaining"), "6")
        # Without any admin read, the store worker writes the spending within
        # its flush interval (1 s): the bound on what a SIGKILL can lose.
        self.assertTrue(wait_until(lambda: self.stored_remaining(g, k["id"]) == 6, 5),
                        "spending did not reach the store within 5 s")
        g.stop(sig=signal.SIGKILL)
        g.start()
        self.assertEqual(self.get(g, k["key"]).header("x-credits-remaining"), "5")

    def test_credit_flags_are_validated(self):
        g = self.gateway(start=False)
        p = g.cli("keys", "create", "--name", "x", "--refill", "10", check=False)
        self.assertEqual(p.returncode, 2, p.stderr)
        p = g.cli("keys", "create", "--name", "x", "--credits", "-1", check=False)
        self.assertEqual(p.returncode, 2, p.stderr)
        g.start()
        r = g.admin("POST", "/v1/api-keys", {"name": "x", "credits": {"remaining": "lots"}})
        self.assertEnvelope(r, 400, "VALIDATION_ERROR")
        r = g.admin("POST", "/v1/api-keys", {"name": "x", "credits": {"refill": {"amount": 5}}})
        self.assertEnvelope(r, 400, "VALIDATION_ERROR")


class Deprecation(GatewayTest):
    def test_rotated_key_in_grace_carries_deprecation_and_sunset(self):
        g = self.gateway()
        old = g.create_key("--name", "rotating", "--credits", "10")
        r = g.request("GET", "/", headers={"X-Api-Key": old["key"]})
        self.assertEqual(r.status, 200)
        self.assertIsNone(r.header("deprecation"))
        before_rotation = r.header("x-request-id")
        before = time.time()
        r = g.admin("POST", f"/v1/api-keys/{old['id']}/rotate", {"grace": "1h"})
        self.assertEqual(r.status, 201, r.body)
        new = r.json()["data"]
        self.assertEqual(new["credits"]["remaining"], 9)  # the balance moved with the rotation
        old_now = g.admin("GET", f"/v1/api-keys/{old['id']}").json()["data"]
        grace_end = parse_rfc3339(old_now["expires_at"])
        self.assertAlmostEqual(grace_end - before, 3600, delta=30)
        rotated_at = parse_rfc3339(old_now["rotated_at"])

        def deprecated_answer():
            resp = g.request("GET", "/", headers={"X-Api-Key": old["key"]})
            return resp if resp.header("sunset") else None
        self.assertTrue(wait_until(deprecated_answer, 10))
        r = g.request("GET", "/", headers={"X-Api-Key": old["key"]})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.header("deprecation"), f"@{int(rotated_at)}")  # RFC 9745
        sunset = email.utils.parsedate_to_datetime(r.header("sunset"))  # RFC 8594 HTTP-date
        self.assertEqual(calendar.timegm(sunset.utctimetuple()), int(grace_end))
        # The old key spends the replacement's credits: one balance, not two.
        remaining_after_old = int(r.header("x-credits-remaining"))
        r = g.request("GET", "/", headers={"X-Api-Key": new["key"]})
        self.assertEqual(r.status, 200)
        self.assertIsNone(r.header("deprecation"))
        self.assertIsNone(r.header("sunset"))
        self.assertEqual(int(r.header("x-credits-remaining")), remaining_after_old - 1)
        # The access log marks the deprecated key's requests, and only those.
        def marked():
            lines = [e for e in g.access_log() if e.get("key_id") in (old["id"], new["id"])]
            return lines if len(lines) >= 4 else None
        self.assertTrue(wait_until(marked, 10))
        for e in marked():
            deprecated = e["key_id"] == old["id"] and e["request_id"] != before_rotation
            self.assertEqual(e.get("deprecated", False), deprecated, e)


class OneConnection(GatewayTest):
    """keygate keeps one request context per client connection and clears it
    between requests: nothing of one request's key (identity, credits,
    deprecation, usage meter) may reach the next request on that connection."""

    def test_keep_alive_requests_carry_nothing_of_the_previous_key(self):
        g = self.gateway({"routes": [{"path_prefix": "/public/", "auth": "none"}]})
        old = g.create_key("--name", "rotating", "--credits", "10")
        r = g.admin("POST", f"/v1/api-keys/{old['id']}/rotate", {"grace": "1h"})
        self.assertEqual(r.status, 201, r.body)
        plain = g.create_key("--name", "plain")
        # The old key's requests before the connection below, each counted in its usage
        # (a request is counted just after its response is written: no baseline is read
        # while the last one may still be on its way).
        old_before = 0

        def in_grace():
            nonlocal old_before
            r = g.request("GET", "/", headers={"X-Api-Key": old["key"]})
            old_before += r.status == 200
            return r.header("sunset")
        self.assertTrue(wait_until(in_grace, 10))

        def usage_total(key_id):
            r = g.admin("GET", f"/v1/api-keys/{key_id}/usage")  # (flushes the counts)
            self.assertEqual(r.status, 200, r.body)
            return r.json()["data"]["totals"]["total"]

        c = g.connection()
        self.addCleanup(c.close)
        sock = None

        def send(path, key=None):
            nonlocal sock
            r = g.request("GET", path, headers={"X-Api-Key": key} if key else {}, conn=c)
            if sock is None:
                sock = c.sock
            self.assertIs(c.sock, sock, "the connection was not kept alive")
            return r

        def seen_upstream(r, name):
            return r.json()["headers"].get(name, [None])[0]

        lifecycle = ("x-credits-remaining", "deprecation", "sunset", "retry-after")
        # 1: the rotated key, in its grace period, spending the replacement's credits.
        r = send("/", old["key"])
        self.assertEqual(r.status, 200, r.body)
        for name in ("x-credits-remaining", "deprecation", "sunset"):
            self.assertIsNotNone(r.header(name), name)
        self.assertEqual(seen_upstream(r, "x-keygate-key-id"), old["id"])
        # 2: a plain key on the same connection: its own identity, no lifecycle headers.
        r = send("/", plain["key"])
        self.assertEqual(r.status, 200, r.body)
        for name in lifecycle:
            self.assertIsNone(r.header(name), name)
        self.assertEqual(seen_upstream(r, "x-keygate-key-id"), plain["id"])
        self.assertEqual(seen_upstream(r, "x-keygate-key-name"), "plain")
        # 3, 4: an unknown key and no key: 401s with nothing of either key.
        send("/", old["key"])
        for key in ("kg_live_" + "0" * 38, None):
            r = send("/", key)
            self.assertEnvelope(r, 401, "AUTH_ERROR")
            for name in lifecycle + ("x-ratelimit-remaining",):
                self.assertIsNone(r.header(name), name)
        # 5: an auth: none route: no identity goes upstream.
        send("/", old["key"])
        r = send("/public/x")
        self.assertEqual(r.status, 200, r.body)
        for name in lifecycle + ("x-ratelimit-remaining",):
            self.assertIsNone(r.header(name), name)
        self.assertFalse([h for h in r.json()["headers"] if h.startswith("x-keygate-")])
        # The old key's usage counts its own three requests, none of the others'
        # (waited for: the last one is counted just after its response).
        wanted = old_before + 3
        self.assertTrue(wait_until(lambda: usage_total(old["id"]) >= wanted, 10))
        self.assertEqual(usage_total(old["id"]), wanted)


class Usage(GatewayTest):
    def test_usage_counts_equal_the_requests_sent(self):
        g = self.gateway({"routes": [{"path_prefix": "/admin-only", "require_scopes": ["admin"]}]})
        k = g.create_key("--name", "counted", "--rate", "4/1h")
        other = g.create_key("--name", "other")
        send = lambda path, key=k["key"]: g.request("GET", path, headers={"X-Api-Key": key}).status
        statuses = [send("/a"), send("/b"), send("/c"), send("/status/503"),  # 4 tokens
                    send("/d"), send("/e"),                                   # 429 rate_limit
                    send("/admin-only")]                                      # 403 scope
        self.assertEqual(statuses, [200, 200, 200, 503, 429, 429, 403])
        self.assertEqual(send("/x", other["key"]), 200)
        want = {"ok": 3, "rate_limited": 2, "denied": 1, "upstream_error": 1, "total": 7}

        r = g.admin("GET", f"/v1/api-keys/{k['id']}/usage")
        self.assertEqual(r.status, 200, r.body)
        data = r.json()["data"]
        self.assertEqual(data["granularity"], "hour")
        self.assertEqual(data["totals"], want)
        self.assertEqual(sum(p["total"] for p in data["periods"]), 7)
        day = g.admin("GET", f"/v1/api-keys/{k['id']}/usage?granularity=day").json()["data"]
        self.assertEqual(day["totals"], want)
        # The CLI reads the store itself (the admin read above flushed the counts).
        import json
        cli = json.loads(g.cli("keys", "usage", k["id"], "--json").stdout)
        self.assertEqual(cli["totals"], want)
        self.assertIn("counted", g.cli("keys", "usage", k["prefix"]).stdout)
        # Bad queries are 400s; unknown keys 404.
        self.assertEnvelope(g.admin("GET", f"/v1/api-keys/{k['id']}/usage?granularity=week"),
                            400, "VALIDATION_ERROR")
        self.assertEnvelope(g.admin("GET", f"/v1/api-keys/{k['id']}/usage?from=yesterday"),
                            400, "VALIDATION_ERROR")
        self.assertEnvelope(g.admin("GET", "/v1/api-keys/key_nope/usage"), 404, "NOT_FOUND")

    def test_usage_is_written_by_the_store_worker_without_an_admin_read(self):
        import json
        g = self.gateway()
        k = g.create_key("--name", "rolled-up")
        for _ in range(5):
            self.assertEqual(g.request("GET", "/", headers={"X-Api-Key": k["key"]}).status, 200)

        def total():
            out = json.loads(g.cli("keys", "usage", k["id"], "--json").stdout)
            return out["totals"]["ok"]
        self.assertTrue(wait_until(lambda: total() == 5, 10))
        self.assertEqual(g.stop(), 0)
        g.start()
        self.assertEqual(g.request("GET", "/", headers={"X-Api-Key": k["key"]}).status, 200)
        self.assertEqual(g.stop(), 0)  # flushed on the way out
        self.assertEqual(total(), 6)


if __name__ == "__main__":
    unittest.main()
