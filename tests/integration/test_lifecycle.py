"""SIGHUP reloads of logging and the error style (README: "plans, routes, rate
limits, logging, error style"), each waited for on keygate_config_generation,
which moves only once every thread uses the new config (issue 18)."""
import unittest

from harness import ADMIN_TOKEN, GatewayTest, wait_until


class Reload(GatewayTest):
    def access_ids(self, g):
        return {e["request_id"] for e in g.access_log()}

    def proxied_then_probe(self, g, request_id):
        """One request with `request_id`, then a probe on the same connection:
        once the probe is answered, the first request's access line has been
        written or skipped (a session logs a request before reading the next)."""
        c = g.connection()
        try:
            self.assertEqual(g.request("GET", "/live", headers={"X-Request-Id": request_id}, conn=c).status, 200)
            self.assertEqual(g.request("GET", "/live", conn=c).status, 200)
        finally:
            c.close()

    def test_sighup_reloads_logging(self):
        g = self.gateway({"logging": {"level": "info", "format": "json", "access_log": True}})
        self.proxied_then_probe(g, "log-json")
        self.assertTrue(wait_until(lambda: "log-json" in self.access_ids(g), 30))

        # format: text (the access line is no longer JSON)
        g.config["logging"] = {"format": "text"}
        g.reload_and_wait(g.config)
        self.proxied_then_probe(g, "log-text")
        text_lines = lambda: [l for l in g.logs().splitlines() if "log-text" in l]
        self.assertTrue(wait_until(lambda: text_lines(), 30))
        self.assertFalse(text_lines()[0].startswith("{"), text_lines())
        self.assertIn(" GET /live 200 ", text_lines()[0])

        # access_log: false, then true again. The access log is one ordered
        # queue, so once "log-on" is written, "log-off" would be written already.
        g.config["logging"] = {"access_log": False}
        g.reload_and_wait(g.config)
        self.proxied_then_probe(g, "log-off")
        g.config["logging"] = {"access_log": True}
        g.reload_and_wait(g.config)
        self.proxied_then_probe(g, "log-on")
        self.assertTrue(wait_until(lambda: "log-on" in self.access_ids(g), 30))
        self.assertNotIn("log-off", g.logs())

        # level: warn hides the admin API's info lines; info shows them again.
        def admin_then_probe(request_id):
            c = g.connection(admin=True)
            try:
                r = g.request("GET", "/v1/api-keys", conn=c, headers={
                    "Authorization": f"Bearer {ADMIN_TOKEN}", "X-Request-Id": request_id})
                self.assertEqual(r.status, 200)
                self.assertEqual(g.request("GET", "/metrics", conn=c).status, 200)
            finally:
                c.close()
        admin_then_probe("admin-at-info")
        self.assertIn("admin-at-info", g.logs())
        g.config["logging"] = {"level": "warn"}
        g.reload_and_wait(g.config)
        admin_then_probe("admin-at-warn")
        g.config["logging"] = {"level": "info"}
        g.reload_and_wait(g.config)
        admin_then_probe("admin-back-at-info")
        self.assertIn("admin-back-at-info", g.logs())
        self.assertNotIn("admin-at-warn", g.logs())

    def test_sighup_reloads_the_error_style(self):
        g = self.gateway()
        self.assertEnvelope(g.request("GET", "/x"), 401, "AUTH_ERROR", "missing")
        g.config["errors"] = {"template": {"error": {"code": "{code}", "message": "{message}"}},
                              "codes": {"AUTH_ERROR": "unauthorized"},
                              "messages": {"missing": "Key required."}}
        g.reload_and_wait(g.config)
        r = g.request("GET", "/x")
        self.assertEqual(r.status, 401)
        self.assertEqual(r.json(), {"error": {"code": "unauthorized", "message": "Key required."}})
        # the admin API keeps the SPEC envelope whatever the proxy's style
        self.assertEnvelope(g.admin("GET", "/v1/api-keys", token=None), 401, "AUTH_ERROR", "missing")
        g.config["errors"] = None
        g.reload_and_wait(g.config)
        self.assertEnvelope(g.request("GET", "/x"), 401, "AUTH_ERROR", "missing")


if __name__ == "__main__":
    unittest.main()
