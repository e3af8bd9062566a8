"""The access log under load (SPEC §6): many keep-alive connections at once on
two I/O threads, valid keys and refusals mixed. Every request gets exactly one
line, whole and valid JSON, with the fields of its own response; a
connection's lines keep its order; a SIGTERM right after the last response
loses none of them (shutdown writes what is pending)."""
import http.client
import json
import os
import threading
import unittest

from harness import GatewayTest

CONNECTIONS = 8
PER_CONNECTION = 150


class AccessLogUnderLoad(GatewayTest):
    def test_one_correct_line_per_request_on_keep_alive_connections(self):
        g = self.gateway({"threads": 2,
                          "plans": {"default": {"rate": {"requests": 1000000, "period": "1s"}}}})
        k = g.create_key("--name", "load", "--owner", "acme")
        sent = {}  # request id -> what the line must say
        errors = []

        def client(c):
            conn = http.client.HTTPConnection("127.0.0.1", g.port, timeout=30)
            try:
                for i in range(PER_CONNECTION):
                    rid = f"c{c}-r{i}"
                    valid = i % 3 != 2
                    headers = {"X-Request-Id": rid}
                    if valid:
                        headers["X-Api-Key"] = k["key"]
                    # A query string (holding a secret) never reaches the log; an
                    # encoded quote stays as sent.
                    path = f"/v1/items/{c}/%22{i}%22"
                    conn.request("GET", f"{path}?token=s3cret&i={i}", headers=headers)
                    r = conn.getresponse()
                    body = r.read()
                    sent[rid] = {"status": r.status, "path": path, "bytes_out": len(body),
                                 "key_id": k["id"] if valid else None,
                                 "owner": "acme" if valid else None,
                                 "reason": None if valid else "missing"}
            except Exception as e:  # reported below, on the test's thread
                errors.append(repr(e))
            finally:
                conn.close()

        threads = [threading.Thread(target=client, args=(c,)) for c in range(CONNECTIONS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])
        self.assertEqual(len(sent), CONNECTIONS * PER_CONNECTION)
        self.assertEqual({v["status"] for v in sent.values()}, {200, 401})

        # Stopped at once: the lines still pending must be written on the way out.
        self.assertEqual(g.stop(), 0)
        with open(os.path.join(g.tmp, "stdout.log"), "rb") as f:
            raw = f.read()
        self.assertTrue(raw.endswith(b"\n"))
        lines = [json.loads(line) for line in raw.split(b"\n")[:-1]]  # each one whole JSON
        access = [e for e in lines if e.get("type") == "access"]
        self.assertEqual(len(access), len(lines))  # nothing else on stdout

        seen = {}
        order = {}
        for e in access:
            rid = e["request_id"]
            self.assertNotIn(rid, seen, f"two lines for {rid}")
            seen[rid] = e
            c, i = rid[1:].split("-r")
            order.setdefault(c, []).append(int(i))
        self.assertEqual(set(seen), set(sent))  # one line per request, no other
        for c, indices in order.items():
            self.assertEqual(indices, sorted(indices), f"connection {c}'s lines out of order")

        for rid, want in sent.items():
            e = seen[rid]
            got = {name: e[name] for name in want}
            self.assertEqual(got, want, rid)
            self.assertEqual((e["method"], e["client_ip"]), ("GET", "127.0.0.1"))
            self.assertRegex(e["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            self.assertGreaterEqual(e["duration_ms"], 0)
            if want["status"] == 200:
                self.assertGreaterEqual(e["duration_ms"], e["upstream_ms"])
            else:
                self.assertIsNone(e["upstream_ms"])
        self.assertNotIn(b"s3cret", raw)
        self.assertNotIn(k["key"].encode(), raw)


if __name__ == "__main__":
    unittest.main()
