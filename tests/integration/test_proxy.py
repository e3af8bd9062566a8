"""Foundation: forwarding, streaming, limits, timeouts, lifecycle (issue 2)."""
import hashlib
import os
import signal
import socket
import threading
import time
import unittest

from harness import GatewayTest, free_port, wait_until

OPEN = {"routes": [{"path_prefix": "/", "auth": "none"}]}


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def raw(port, data, timeout=5.0, read_until_close=True):
    """Sends raw bytes, returns everything read until close or timeout."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                part = s.recv(65536)
            except socket.timeout:
                break
            if not part:
                break
            out += part
            if not read_until_close and b"\r\n\r\n" in out:
                break
        return out


class Forwarding(GatewayTest):
    def test_method_path_query_body_pass_through(self):
        g = self.gateway(OPEN)
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
            body = b"" if method in ("GET", "OPTIONS") else b'{"hello":"world"}'
            r = g.request(method, "/a/b%20c?x=1&y=%2F", headers={"X-Custom": "v"}, body=body)
            self.assertEqual(r.status, 200)
            e = r.json()
            self.assertEqual(e["method"], method)
            self.assertEqual(e["target"], "/a/b%20c?x=1&y=%2F")
            self.assertEqual(e["headers"]["x-custom"], ["v"])
            self.assertEqual(e["body_length"], len(body))
            self.assertEqual(e["body_sha256"], hashlib.sha256(body).hexdigest())

    def test_head_has_no_body(self):
        g = self.gateway(OPEN)
        r = g.request("HEAD", "/x")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"")

    def test_upstream_statuses_pass_through_untouched(self):
        g = self.gateway(OPEN)
        for code in (201, 204, 400, 404, 418, 500, 503):
            r = g.request("GET", f"/status/{code}")
            self.assertEqual(r.status, code)
            if code != 204:
                self.assertEqual(r.json(), {"upstream_status": code})

    def test_forwarded_headers_and_request_id(self):
        g = self.gateway(OPEN)
        r = g.request("GET", "/h", headers={"X-Forwarded-For": "10.1.2.3", "Host": "api.example",
                                            "X-Request-Id": "client-id-1"})
        h = r.json()["headers"]
        self.assertEqual(h["x-forwarded-for"], ["10.1.2.3, 127.0.0.1"])
        self.assertEqual(h["x-forwarded-proto"], ["http"])
        self.assertEqual(h["x-forwarded-host"], ["api.example"])
        self.assertEqual(h["x-request-id"], ["client-id-1"])
        self.assertEqual(r.header("x-request-id"), "client-id-1")
        # Invalid client ids (too long / not visible ASCII) are replaced.
        r = g.request("GET", "/h", headers={"X-Request-Id": "a" * 129})
        rid = r.header("x-request-id")
        self.assertNotEqual(rid, "a" * 129)
        self.assertEqual(r.json()["headers"]["x-request-id"], [rid])
        self.assertEqual(len(rid), 32)

    def test_hop_by_hop_headers_removed(self):
        g = self.gateway(OPEN)
        r = g.request("GET", "/h", headers={"Connection": "keep-alive, X-Secret-Hop",
                                            "X-Secret-Hop": "1", "Keep-Alive": "timeout=5",
                                            "Proxy-Authorization": "Basic Zm9v", "TE": "trailers"})
        h = r.json()["headers"]
        for name in ("x-secret-hop", "keep-alive", "proxy-authorization", "te"):
            self.assertNotIn(name, h)

    def test_streams_200mb_response_with_flat_memory(self):
        g = self.gateway(OPEN)
        base = rss_kb(g.proc.pid)
        peak = base
        c = g.connection(timeout=60)
        c.request("GET", f"/stream?bytes={200 << 20}")
        r = c.getresponse()
        total = 0
        while True:
            part = r.read(1 << 20)
            if not part:
                break
            total += len(part)
            peak = max(peak, rss_kb(g.proc.pid))
        c.close()
        self.assertEqual(total, 200 << 20)
        # Fixed 64 KiB relay buffers: memory must not follow the body size.
        self.assertLess(peak - base, 32 * 1024, f"RSS grew {peak - base} KiB")

    def test_chunked_response_and_eof_delimited_response(self):
        g = self.gateway(OPEN)
        r = g.request("GET", f"/stream?bytes={5 << 20}&chunked=1")
        self.assertEqual(len(r.body), 5 << 20)
        r = g.request("GET", "/eof?bytes=100000")
        self.assertEqual(len(r.body), 100000)

    def test_streams_20mb_request_content_length_and_chunked(self):
        g = self.gateway({**OPEN, "limits": {"max_body_bytes": 64 << 20}})
        payload = os.urandom(1 << 20) * 20
        r = g.request("POST", "/upload", body=payload, timeout=60)
        self.assertEqual(r.json()["body_length"], len(payload))
        self.assertEqual(r.json()["body_sha256"], hashlib.sha256(payload).hexdigest())

        def chunks():
            for i in range(0, len(payload), 1 << 20):
                yield payload[i:i + (1 << 20)]
        c = g.connection(timeout=60)
        c.request("POST", "/upload", body=chunks(), encode_chunked=True,
                  headers={"Transfer-Encoding": "chunked"})
        e = __import__("json").loads(c.getresponse().read())
        c.close()
        self.assertEqual(e["body_length"], len(payload))
        self.assertEqual(e["body_sha256"], hashlib.sha256(payload).hexdigest())
        self.assertEqual(e["headers"]["transfer-encoding"], ["chunked"])

    def test_expect_100_continue(self):
        g = self.gateway(OPEN)
        with socket.create_connection(("127.0.0.1", g.port), timeout=5) as s:
            s.sendall(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            first = s.recv(1024)
            self.assertTrue(first.startswith(b"HTTP/1.1 100 Continue"), first)
            s.sendall(b"hello")
            rest = b""
            while b'"body_length": 5' not in rest:
                part = s.recv(65536)
                if not part:
                    break
                rest += part
            self.assertIn(b"HTTP/1.1 200", rest)
            self.assertIn(b'"body_length": 5', rest)

    def test_keep_alive_reuses_upstream_connections(self):
        g = self.gateway({**OPEN, "threads": 1})
        conns = lambda: g.request("GET", "/__conns").json()["connections"]
        g.request("GET", "/warm")
        before = conns()
        for i in range(50):  # a new client connection each time
            self.assertEqual(g.request("GET", f"/r{i}").status, 200)
        c = g.connection()
        for i in range(50):  # and many requests on one client connection
            self.assertEqual(g.request("GET", f"/k{i}", conn=c).status, 200)
        c.close()
        self.assertLessEqual(conns() - before, 1, "upstream connections were not reused")

    def test_websocket_upgrade_is_tunnelled(self):
        g = self.gateway(OPEN)
        with socket.create_connection(("127.0.0.1", g.port), timeout=5) as s:
            s.sendall(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(1024)
            self.assertTrue(head.startswith(b"HTTP/1.1 101"), head)
            s.sendall(b"ping-frame-bytes")
            echoed = b""
            while len(echoed) < 16:
                echoed += s.recv(1024)
            self.assertEqual(echoed, b"ping-frame-bytes")


class Failures(GatewayTest):
    def test_502_when_upstream_refuses(self):
        g = self.gateway({**OPEN, "upstream": {"url": f"http://127.0.0.1:{free_port()}"}})
        self.assertEnvelope(g.request("GET", "/x"), 502, "UPSTREAM_ERROR")
        self.assertGreaterEqual(g.metric("keygate_upstream_errors_total", 'kind="connect"'), 1)

    def test_504_when_upstream_is_slow(self):
        g = self.gateway({**OPEN, "upstream": {"timeout": "300ms"}})
        self.assertEnvelope(g.request("GET", "/slow?ms=2000"), 504, "UPSTREAM_TIMEOUT")
        self.assertEqual(g.request("GET", "/x").status, 200)

    def test_413_body_too_large(self):
        g = self.gateway({**OPEN, "limits": {"max_body_bytes": 1000}})
        self.assertEnvelope(g.request("POST", "/x", body=b"a" * 1001), 413, "PAYLOAD_TOO_LARGE")
        # chunked bodies are cut at the limit too
        c = g.connection()
        c.request("POST", "/x", body=iter([b"a" * 800, b"b" * 800]), encode_chunked=True,
                  headers={"Transfer-Encoding": "chunked"})
        r = c.getresponse()
        self.assertEqual(r.status, 413)
        c.close()
        self.assertEqual(g.request("POST", "/x", body=b"a" * 1000).status, 200)

    def test_431_headers_too_large(self):
        g = self.gateway({**OPEN, "limits": {"max_header_bytes": 2048}})
        self.assertEnvelope(g.request("GET", "/x", headers={"X-Big": "a" * 4000}), 431,
                            "HEADERS_TOO_LARGE")
        self.assertEqual(g.request("GET", "/x").status, 200)

    def test_slow_header_is_cut_off(self):
        g = self.gateway({**OPEN, "limits": {"header_timeout": "500ms"}})
        start = time.monotonic()
        out = raw(g.port, b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ", timeout=5)
        self.assertEqual(out, b"")
        self.assertLess(time.monotonic() - start, 4.5, "connection was not cut off")
        self.assertEqual(g.request("GET", "/x").status, 200)

    def test_max_connections_refuses_extra_connections(self):
        g = self.gateway({**OPEN, "threads": 1, "limits": {"max_connections": 2}})
        held = [g.connection() for _ in range(2)]
        for c in held:
            self.assertEqual(g.request("GET", "/x", conn=c).status, 200)
        # A third connection is accepted by the kernel and closed at once (a FIN,
        # or a RST when our request was still unread): never an HTTP answer.
        try:
            got = raw(g.port, b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n", timeout=3)
        except (ConnectionResetError, BrokenPipeError):
            got = b""
        self.assertEqual(got, b"")
        held[0].close()

        def served():
            try:
                return g.request("GET", "/x").status == 200
            except OSError:  # still refused until the gateway sees the close
                return False
        self.assertTrue(wait_until(served, 3))
        held[1].close()

    def test_garbage_and_smuggling_attempts_rejected_while_serving(self):
        g = self.gateway(OPEN)
        out = raw(g.port, b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 400"), out)
        self.assertIn(b'"VALIDATION_ERROR"', out)
        out = raw(g.port, b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 400"), out)
        out = raw(g.port, b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab")
        self.assertTrue(out.startswith(b"HTTP/1.1 400"), out)
        self.assertEqual(g.request("GET", "/still-alive").status, 200)
        self.assertIsNone(g.proc.poll())


class Lifecycle(GatewayTest):
    def test_health_endpoints(self):
        g = self.gateway({"health": {"path": "/healthz", "ready": "/ready", "live": None}})
        ok = {"success": True, "data": {"status": "ok"}}
        self.assertEqual(g.request("GET", "/healthz").json(), ok)
        self.assertEqual(g.request("GET", "/ready").json(), ok)
        # /live disabled: it is an ordinary (keyed) path now
        self.assertEqual(g.request("GET", "/live").status, 401)

    def test_graceful_drain_finishes_in_flight_request(self):
        g = self.gateway(OPEN)
        idle = g.connection()
        self.assertEqual(g.request("GET", "/ready", conn=idle).status, 200)
        result = {}

        def slow():
            result["r"] = g.request("GET", "/slow?ms=1500", timeout=10)
        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.3)
        g.proc.send_signal(signal.SIGTERM)
        # new connections are refused once the listener closes
        self.assertTrue(wait_until(lambda: not _connects(g.port), timeout=3))
        t.join(10)
        self.assertEqual(result["r"].status, 200, "in-flight request did not finish")
        g.proc.wait(10)
        self.assertEqual(g.proc.returncode, 0)
        self.assertIn("draining", g.logs())

    def test_sighup_reload_good_and_bad(self):
        g = self.gateway()
        self.assertEqual(g.request("GET", "/public/x").status, 401)
        g.config["routes"] = [{"path_prefix": "/public/", "auth": "none"}]
        g.write_config()
        g.proc.send_signal(signal.SIGHUP)
        self.assertTrue(wait_until(lambda: g.request("GET", "/public/x").status == 200, 5))
        with open(g.config_path, "w") as f:
            f.write("listen: [broken\nplans: 3\n")
        g.proc.send_signal(signal.SIGHUP)
        self.assertTrue(wait_until(lambda: "reload failed" in g.logs(), 5))
        self.assertEqual(g.request("GET", "/public/x").status, 200)  # old config kept
        self.assertIsNone(g.proc.poll())


def _connects(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


if __name__ == "__main__":
    unittest.main()
