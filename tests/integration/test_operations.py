"""Operations (SPEC §10, issue 15) through the real binary: the Date header on
every local reply, audit events in the log stream, and `keygate audit list`
with its filters. Metrics are in test_metrics.py."""
import datetime
import email.utils
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from harness import GatewayTest, exchange, wait_until

IMF_FIXDATE = r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$"


def audit_lines(text):
    out = []
    for line in text.splitlines():
        if '"audit"' not in line:
            continue
        j = json.loads(line)  # an audit line is always one JSON object
        if j.get("audit") is True:
            out.append(j)
    return out


class DateHeader(GatewayTest):
    def assertDate(self, r, what):
        date = r.header("date")
        self.assertIsNotNone(date, f"{what}: no Date")
        self.assertRegex(date, IMF_FIXDATE, what)
        t = email.utils.parsedate_to_datetime(date).timestamp()
        self.assertLess(abs(t - time.time()), 5, what)
        self.assertEqual(len(r.headers), len({k.lower() for k in r.headers}))  # one Date, no repeats

    def test_every_local_reply_of_the_proxy_and_the_admin_api(self):
        g = self.gateway({"plans": {"default": {"rate": {"requests": 1, "period": "1h"}}},
                          "routes": [{"path_prefix": "/private/", "require_scopes": ["secret"]}]})
        k = g.create_key("--name", "d")
        ok = g.request("GET", "/x", headers={"X-Api-Key": k["key"]})
        self.assertEqual(ok.status, 200)
        replies = {
            "401 missing": g.request("GET", "/x"),
            "401 malformed": g.request("GET", "/x", headers={"X-Api-Key": "nope"}),
            "403 scope": g.request("GET", "/private/x", headers={"X-Api-Key": k["key"]}),
            "429": g.request("GET", "/x", headers={"X-Api-Key": k["key"]}),
            "200 live": g.request("GET", "/live"),
            "200 ready": g.request("GET", "/ready"),
            "400 bad target": g.request("GET", "/a/../../b"),
            "admin 200": g.admin("GET", "/v1/api-keys"),
            "admin 401": g.admin("GET", "/v1/api-keys", token=None),
            "admin 404": g.admin("GET", "/nothing"),
            "admin metrics": g.request("GET", "/metrics", admin=True),
        }
        statuses = {what: r.status for what, r in replies.items()}
        self.assertEqual(statuses, {"401 missing": 401, "401 malformed": 401, "403 scope": 403, "429": 429,
                                    "200 live": 200, "200 ready": 200, "400 bad target": 400,
                                    "admin 200": 200, "admin 401": 401, "admin 404": 404, "admin metrics": 200})
        for what, r in replies.items():
            with self.subTest(what):
                self.assertDate(r, what)

    def test_malformed_request_head(self):
        g = self.gateway()
        data, _ = exchange(g.port, b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", until_close=False)
        head = data.split(b"\r\n\r\n")[0].decode()
        self.assertTrue(head.startswith("HTTP/1.1 400"), head)
        dates = [l.split(":", 1)[1].strip() for l in head.split("\r\n") if l.lower().startswith("date:")]
        self.assertEqual(len(dates), 1, head)
        self.assertRegex(dates[0], IMF_FIXDATE)

    def test_plain_http_on_the_tls_port(self):
        d = tempfile.mkdtemp(prefix="kg-date-")
        self.addCleanup(shutil.rmtree, d, True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", "k.pem", "-out", "c.pem", "-days", "2", "-subj", "/CN=localhost"],
                       cwd=d, check=True, capture_output=True, timeout=60)
        g = self.gateway({"tls": {"cert": os.path.join(d, "c.pem"), "key": os.path.join(d, "k.pem")}})
        r = g.request("GET", "/x")  # plain HTTP to the HTTPS listener
        self.assertEqual(r.status, 400)
        self.assertRegex(r.header("date"), IMF_FIXDATE)


class AuditLog(GatewayTest):
    def test_admin_changes_are_logged_once_each_without_secrets(self):
        g = self.gateway()
        r = g.admin("POST", "/v1/api-keys", {"name": "logged", "owner": "acme"})
        k = r.json()["data"]
        g.admin("PATCH", f"/v1/api-keys/{k['id']}", {"name": "renamed"})
        rot = g.admin("POST", f"/v1/api-keys/{k['id']}/rotate", {"grace": "1h"}).json()["data"]
        g.admin("DELETE", f"/v1/api-keys/{rot['id']}")
        self.assertTrue(wait_until(lambda: len(audit_lines(g.logs())) >= 4))
        lines = audit_lines(g.logs())
        got = [(l["action"], l["key_id"], l["actor"]) for l in lines]
        self.assertEqual(got, [("create", k["id"], "admin"), ("update", k["id"], "admin"),
                               ("rotate", k["id"], "admin"), ("revoke", rot["id"], "admin")])
        for l in lines:
            self.assertRegex(l["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
            self.assertIs(l["audit"], True)
        self.assertEqual(lines[0]["details"]["prefix"], k["prefix"])
        self.assertEqual(lines[2]["details"]["new_key_id"], rot["id"])
        # the same events as the admin API shows, and no secret in any log
        api = g.admin("GET", "/v1/audit-events").json()["data"]
        self.assertEqual([(e["action"], e["key_id"], e["actor"]) for e in reversed(api)], got)
        logs = g.logs()
        for secret in (k["key"], rot["key"], k["key"][len(k["prefix"]):]):
            self.assertNotIn(secret, logs)

    def test_logged_at_any_level_and_as_json_in_text_format(self):
        g = self.gateway()
        # (the harness waits for the JSON "listening" line: switch by reload)
        g.config["logging"] = {"level": "error", "format": "text"}
        g.write_config()
        g.proc.send_signal(signal.SIGHUP)
        self.assertTrue(wait_until(lambda: g.metric("keygate_config_generation") == 2))
        k = g.admin("POST", "/v1/api-keys", {"name": "quiet"}).json()["data"]
        self.assertTrue(wait_until(lambda: audit_lines(g.logs())))
        (line,) = audit_lines(g.logs())
        self.assertEqual((line["action"], line["key_id"], line["actor"]), ("create", k["id"], "admin"))
        self.assertNotIn("admin request", g.logs())  # info lines are off at level error

    def test_cli_changes_go_to_the_cli_log_stream(self):
        g = self.gateway(start=False)
        p = g.cli("keys", "create", "--json", "--name", "from-cli")
        k = json.loads(p.stdout)
        (line,) = audit_lines(p.stderr)
        self.assertEqual((line["action"], line["key_id"], line["actor"]), ("create", k["id"], "cli"))
        self.assertNotIn(k["key"], p.stderr)
        p = g.cli("keys", "revoke", k["id"])
        self.assertEqual([(l["action"], l["key_id"]) for l in audit_lines(p.stderr)], [("revoke", k["id"])])


class AuditList(GatewayTest):
    def test_filters(self):
        g = self.gateway(start=False)
        a = json.loads(g.cli("keys", "create", "--json", "--name", "a").stdout)
        b = json.loads(g.cli("keys", "create", "--json", "--name", "b").stdout)
        g.cli("keys", "update", a["id"], "--name", "a2")
        g.cli("keys", "revoke", b["id"])

        def listed(*args):
            return [(e["action"], e["key_id"]) for e in json.loads(g.cli("audit", "list", "--json", *args).stdout)]

        every = json.loads(g.cli("audit", "list", "--json").stdout)
        self.assertEqual(len(every), 4)
        self.assertEqual(listed("--key-id", a["id"]), [("update", a["id"]), ("create", a["id"])])
        self.assertEqual(listed("--action", "revoke"), [("revoke", b["id"])])
        self.assertEqual(listed("--key-id", b["id"], "--action", "create"), [("create", b["id"])])
        pivot = every[1]["time"]  # the update of a
        self.assertEqual(listed("--since", pivot), [(e["action"], e["key_id"]) for e in every if e["time"] >= pivot])
        future = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)).isoformat()
        self.assertEqual(listed("--since", future), [])
        self.assertEqual(listed("--limit", "1"), [("revoke", b["id"])])
        table = g.cli("audit", "list", "--key-id", a["id"]).stdout
        self.assertIn("ACTION", table)
        self.assertIn(a["id"], table)
        self.assertNotIn(b["id"], table)
        for bad in (["--action", "delete"], ["--since", "yesterday"]):
            with self.subTest(bad=bad):
                p = g.cli("audit", "list", *bad, check=False)
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertTrue(p.stderr.startswith("error: "), p.stderr)


if __name__ == "__main__":
    unittest.main()
