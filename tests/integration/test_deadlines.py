"""Connection deadlines across a request: the client connection's header
deadline covers reading the head, not the wait for the upstream's answer."""
import unittest

from harness import GatewayTest

OPEN = {"routes": [{"path_prefix": "/", "auth": "none"}]}


class Deadlines(GatewayTest):
    def test_slow_upstream_outlasting_header_timeout_still_answers(self):
        # header_timeout 300 ms, upstream answering after 1.5 s (well inside
        # upstream.timeout): the head was read in time, so the client gets the
        # answer. The head's deadline used to stay armed and close the client
        # connection while the upstream worked.
        g = self.gateway({**OPEN, "limits": {"header_timeout": "300ms"}})
        r = g.request("GET", "/slow?ms=1500")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json(), {"slow": True})
        self.assertEqual(g.request("GET", "/live").status, 200)


if __name__ == "__main__":
    unittest.main()
