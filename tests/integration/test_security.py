"""Request hygiene (issue 11, SPEC §7) through the real binary:
- route bypass by path, method and encoding tricks, with a real nginx upstream;
- stray upstream bytes never reach another client (a raw-socket rogue upstream);
- streaming (server-sent events) flows, a reset after the head is a 502;
- smuggling-prone framing is refused and the body never becomes a request;
- identity headers and keys never reach the upstream;
- the admin listener backs off when out of descriptors."""
import json
import os
import resource
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from harness import (NGINX, Gateway, GatewayTest, exchange, free_port, nginx_command, nginx_conf,
                     read_response, wait_until)
import rogue_upstream

RATE = {"default": {"rate": {"requests": 1000, "period": "1h"}}}


def parse_responses(data, to_head=False):
    """Splits raw bytes into [(status, {lower name: value}, body)] (Content-Length
    and chunked bodies; none after HEAD); trailing bytes that are no complete
    response are ignored."""
    out = []
    while b"\r\n\r\n" in data:
        top, rest = data.split(b"\r\n\r\n", 1)
        lines = top.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if to_head:
            body = b""
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                body, rest = body + rest[:size], rest[size + 2:]
                if size == 0:
                    break
        else:
            n = int(headers.get("content-length", "0"))
            if len(rest) < n:
                break
            body, rest = rest[:n], rest[n:]
        out.append((status, headers, body))
        data = rest
    return out


def request(port, method, target, headers=(), body=b"", timeout=5.0):
    """One request with exactly the given (possibly repeated) headers, on its own
    connection; returns (status, headers, body)."""
    lines = [f"{method} {target} HTTP/1.1", "Host: gateway.test", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    data, _ = exchange(port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body, timeout)
    responses = parse_responses(data, to_head=method.upper() == "HEAD")
    if not responses:
        raise AssertionError(f"no response to {method} {target}: {data!r}")
    return responses[0]


def reason(body):
    try:
        return json.loads(body)["error"]["details"].get("reason")
    except (ValueError, KeyError, TypeError):
        return None


class SecurityTest(GatewayTest):
    def gateway_to(self, port, config):
        g = Gateway(port, {"threads": 1, "plans": RATE, **config})
        self.addCleanup(g.cleanup)
        return g.start()


# ---------------------------------------------------------------------------
# 1. Route bypass, with nginx as the upstream.

NGINX_SERVER = """  default_type text/plain;
  server {{
    listen 127.0.0.1:{port};
    location /docs {{ return 200 "public docs\\n"; }}
    location /v1/secret {{ return 200 "PROTECTED-SECRET\\n"; }}
    location /v1/admin/ {{ return 200 "PROTECTED-ADMIN $request_method\\n"; }}
    location / {{ return 200 "other $uri\\n"; }}
  }}"""

ROUTES = [{"path_prefix": "/docs", "auth": "none"},
          {"path_prefix": "/v1/admin/", "methods": ["POST"], "require_scopes": ["admin"]}]

# Without a key: nothing but /docs may be reached. (method, target, status, reason)
NO_KEY_TRICKS = [
    ("GET", "/v1/secret", 401, "missing"),
    ("GET", "/docs/../v1/secret", 401, "missing"),
    ("GET", "/docs/%2e%2e/v1/secret", 401, "missing"),
    ("GET", "/docs/%2E%2e/v1/secret", 401, "missing"),
    ("GET", "/docs/.%2e/v1/secret", 401, "missing"),
    ("GET", "/docs/%2e./v1/secret", 401, "missing"),
    ("GET", "/docs/./../v1/secret", 401, "missing"),
    ("GET", "/docs//../v1/secret", 401, "missing"),
    ("GET", "//docs/../v1/secret", 401, "missing"),
    ("GET", "/./docs/../v1/secret", 401, "missing"),
    ("GET", "/docs;/../v1/secret", 401, "missing"),
    ("GET", "/docs/%2E%2e/", 401, "missing"),
    ("GET", "http://h/docs/../v1/secret", 401, "missing"),
    ("GET", "HTTP://h/docs/%2e%2e/v1/secret", 401, "missing"),
    ("POST", "/docs/../v1/secret", 401, "missing"),
    ("GET", "/docs/%2e%2e%2fv1/secret", 400, "bad_path"),
    ("GET", "/docs/..%2fv1/secret", 400, "bad_path"),
    ("GET", "/docs/..%2Fv1/secret", 400, "bad_path"),
    ("GET", "/docs%2f..%2fv1/secret", 400, "bad_path"),
    ("GET", "/docs/..%5cv1/secret", 400, "bad_path"),
    ("GET", "/docs/..\\v1/secret", 400, "bad_path"),
    ("GET", "/docs/..;/v1/secret", 400, "bad_path"),
    ("GET", "/docs/../../v1/secret", 400, "bad_path"),
    ("GET", "/docs/%00/../v1/secret", 400, "bad_path"),
    ("GET", "/docs#/../v1/secret", 400, "bad_path"),
    ("GET", "*", 400, "bad_path"),
    ("GET", "h:80", 400, "bad_path"),
    # Reach nginx, which resolves them under /docs: public, never protected.
    ("GET", "/docs", 200, None),
    ("GET", "/docs/%252e%252e/v1/secret", 200, None),
    ("GET", "/docs/%c0%ae%c0%ae/v1/secret", 200, None),
    ("GET", "/docs/x?/../../v1/secret", 200, None),
]

# With a key that lacks the admin scope: POST under /v1/admin/ is refused.
SCOPE_TRICKS = [
    ("POST", "/v1/admin/x", 403, "scope"),
    ("POST", "/v1//admin/x", 403, "scope"),
    ("POST", "//v1/admin/x", 403, "scope"),
    ("POST", "/v1/%61dmin/x", 403, "scope"),
    ("POST", "/v1/adm%69n/x", 403, "scope"),
    ("POST", "/v1/admin/./x", 403, "scope"),
    ("POST", "/./v1/admin/x", 403, "scope"),
    ("POST", "/v1/./admin/x", 403, "scope"),
    ("POST", "/v1/x/../admin/x", 403, "scope"),
    ("POST", "/v1/admin/%2e/x", 403, "scope"),
    ("POST", "http://h/v1/admin/x", 403, "scope"),
    ("POST", "HTTP://h//v1/admin/x", 403, "scope"),
    ("post", "/v1/admin/x", 403, "scope"),
    ("Post", "/v1//admin/x", 403, "scope"),
    ("POST", "/v1/admin%2fx", 400, "bad_path"),
    ("POST", "/v1%2Fadmin/x", 400, "bad_path"),
    ("POST", "/v1/admin;x/y", 400, "bad_path"),
    # Other paths to nginx (case-sensitive, decoded once): not the admin location.
    ("POST", "/v1/Admin/x", 200, None),
    ("POST", "/v1/%2561dmin/x", 200, None),
]


@unittest.skipIf(NGINX is None, "nginx is not installed (scripts/install-deps.sh installs it)")
class NginxUpstreamBypass(SecurityTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.nginx_tmp = tempfile.mkdtemp(prefix="kg-nginx-")
        cls.nginx_port = free_port()
        conf = os.path.join(cls.nginx_tmp, "nginx.conf")
        with open(conf, "w") as f:
            f.write(nginx_conf(cls.nginx_tmp, NGINX_SERVER.format(port=cls.nginx_port)))
        cls.nginx = subprocess.Popen(nginx_command(cls.nginx_tmp, conf),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up():
            try:
                socket.create_connection(("127.0.0.1", cls.nginx_port), timeout=1).close()
                return True
            except OSError:
                return False
        if not wait_until(lambda: cls.nginx.poll() is not None or up(), timeout=10) or not up():
            cls.tearDownClass()
            raise AssertionError("nginx did not start")

    @classmethod
    def tearDownClass(cls):
        cls.nginx.terminate()
        try:
            cls.nginx.wait(timeout=10)
        except subprocess.TimeoutExpired:
            cls.nginx.kill()
            cls.nginx.wait()
        shutil.rmtree(cls.nginx_tmp, ignore_errors=True)
        super().tearDownClass()

    def setUp(self):
        self.g = self.gateway_to(self.nginx_port, {"routes": ROUTES})
        self.reader = self.g.create_key("--name", "reader", "--scopes", "read")["key"]
        self.admin = self.g.create_key("--name", "admin", "--scopes", "admin")["key"]

    def check(self, tricks, headers):
        for method, target, status, why in tricks:
            with self.subTest(method=method, target=target):
                got, _, body = request(self.g.port, method, target, headers)
                self.assertNotIn(b"PROTECTED", body)
                self.assertEqual(got, status, body)
                if why:
                    self.assertEqual(reason(body), why, body)
                else:
                    self.assertTrue(body.startswith((b"public docs", b"other ")), body)

    def test_tricks_without_a_key_reach_only_the_public_location(self):
        self.check(NO_KEY_TRICKS, [])

    def test_tricks_without_the_scope_never_reach_the_admin_location(self):
        self.check(SCOPE_TRICKS, [("X-Api-Key", self.reader)])

    def test_a_method_override_cannot_dodge_a_method_rule(self):
        # Upstreams on Rails, Laravel, Express's method-override... run these as POST.
        for name in ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"):
            for value in ("POST", "post"):
                with self.subTest(name=name, value=value):
                    got, _, body = request(self.g.port, "GET", "/v1/admin/x",
                                           [("X-Api-Key", self.reader), (name, value)])
                    self.assertNotIn(b"PROTECTED", body)
                    self.assertEqual(got, 400, body)
                    self.assertEqual(reason(body), "method_override", body)
        # An override that routes the same way passes, header and all.
        got, _, body = request(self.g.port, "GET", "/v1/secret",
                               [("X-Api-Key", self.reader), ("X-HTTP-Method-Override", "PUT")])
        self.assertEqual((got, body), (200, b"PROTECTED-SECRET\n"))
        got, _, body = request(self.g.port, "POST", "/v1/admin/x",
                               [("X-Api-Key", self.admin), ("X-HTTP-Method-Override", "post")])
        self.assertEqual((got, body), (200, b"PROTECTED-ADMIN POST\n"))

    def test_key_and_scope_do_reach_the_protected_locations_normalised(self):
        key = [("X-Api-Key", self.reader)]
        admin = [("Authorization", "Bearer " + self.admin)]
        self.assertEqual(request(self.g.port, "GET", "/v1/secret", key)[2], b"PROTECTED-SECRET\n")
        # Forwarded as normalised: nginx gets /v1/secret, not a path to resolve again.
        self.assertEqual(request(self.g.port, "GET", "/docs/%2e%2e/v1/secret", key)[2],
                         b"PROTECTED-SECRET\n")
        self.assertEqual(request(self.g.port, "POST", "/v1//admin/x", admin)[2],
                         b"PROTECTED-ADMIN POST\n")
        self.assertEqual(request(self.g.port, "GET", "/v1/%61dmin/x", key)[2],
                         b"PROTECTED-ADMIN GET\n")  # the rule is for POST only


# ---------------------------------------------------------------------------
# 2, 3, 6. A misbehaving upstream: stray bytes, streaming, reset after the head.

class RogueUpstreamTests(SecurityTest):
    def setUp(self):
        self.rogue = rogue_upstream.RogueUpstream(events=6, interval=0.5)
        self.addCleanup(self.rogue.close)
        # One I/O thread, one pool: every request may reuse the same connection.
        self.g = self.gateway_to(self.rogue.port, {
            "routes": [{"path_prefix": "/", "auth": "none"}],
            "upstream": {"timeout": "1s"},
            "limits": {"idle_timeout": "5s"}})

    def test_stray_upstream_bytes_never_reach_another_client(self):
        cases = [("HEAD", "/head-body?late=1"), ("HEAD", "/head-body"),
                 ("GET", "/extra?late=1"), ("GET", "/extra")]
        for n, (method, target) in enumerate(cases):
            with self.subTest(method=method, target=target):
                self.rogue.poison_sent.clear()
                status, _, body = request(self.g.port, method, target)
                self.assertEqual(status, 200)
                self.assertEqual(body, b"" if method == "HEAD" else b"hello")
                self.assertTrue(self.rogue.poison_sent.wait(5), "the rogue sent nothing more")
                for i in range(4):  # later clients each get exactly their own answer
                    mine = f"client-{n}-{i}"
                    status, _, body = request(self.g.port, "GET", "/id/" + mine)
                    self.assertEqual((status, body), (200, mine.encode()))

    def test_after_stray_bytes_no_upstream_connection_is_reused_for_a_while(self):
        """Found by an attack with clients in parallel (2026-12-03): stray bytes
        still on their way when the connection was reused (no check can see
        them) became the next client's answer, and that client's real answer
        the one after, on and on: ~40% of answers wrong under load (below).
        Once keygate has seen stray bytes it keeps no upstream connection for
        30 s, so each request gets a fresh one."""
        status, _, body = request(self.g.port, "GET", "/extra")  # stray bytes with the body
        self.assertEqual((status, body), (200, b"hello"))
        before = self.rogue.connections
        for i in range(3):
            mine = f"fresh-{i}"
            self.assertEqual(request(self.g.port, "GET", "/id/" + mine)[2], mine.encode())
        self.assertEqual(self.rogue.connections - before, 3, "a connection was reused")
        self.assertTrue(wait_until(lambda: "upstream sent bytes outside a response" in self.g.logs()))

    def test_stray_bytes_under_load_do_not_shift_every_later_answer(self):
        """Eight clients in parallel, every third request to an upstream that
        sends stray bytes ~2 ms after its answer: a reused connection may take
        them before anyone can see them (the first wrong answers), but not for
        long. Before the quarantine ~40% of the answers were wrong."""
        wrong, total, stop = [0], [0], time.monotonic() + 3
        lock = threading.Lock()

        def client(c):
            with socket.create_connection(("127.0.0.1", self.g.port), timeout=10) as s:
                pending, n = b"", 0
                while time.monotonic() < stop and n < 5000:
                    n += 1
                    path = "/extra?soon=1" if (n + c) % 3 == 0 else f"/id/c{c}n{n}"
                    s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
                    _, body, pending = read_response(s, pending)
                    expected = b"hello" if path.startswith("/extra") else path[4:].encode()
                    with lock:
                        total[0] += 1
                        wrong[0] += body != expected

        threads = [threading.Thread(target=client, args=(c,)) for c in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        print(f"{wrong[0]} wrong answers of {total[0]}")
        self.assertGreater(total[0], 100)
        self.assertLess(wrong[0], total[0] * 0.1, f"{wrong[0]} wrong answers of {total[0]}")

    def test_reset_after_the_head_is_a_502(self):
        status, headers, body = request(self.g.port, "GET", "/reset")
        self.assertEqual(status, 502, body)
        self.assertEqual(headers.get("content-type"), "application/json")
        self.assertEqual(json.loads(body)["error"]["code"], "UPSTREAM_ERROR")
        self.assertEqual(request(self.g.port, "GET", "/id/after")[2], b"after")

    def test_event_stream_flows_event_by_event_past_the_upstream_timeout(self):
        # upstream.timeout is 1 s; the stream lasts over 3 s. The rogue sends each
        # event only after this client acknowledged the previous one (and the
        # head), so anything held back in the gateway stalls the test.
        with socket.create_connection(("127.0.0.1", self.g.port), timeout=5) as s:
            s.sendall(b"GET /sse HTTP/1.1\r\nHost: gateway.test\r\n\r\n")
            got = b""

            def until(marker):
                nonlocal got
                while marker not in got:
                    part = s.recv(65536)  # socket timeout bounds the wait
                    if not part:
                        raise AssertionError(f"closed before {marker!r}: {got!r}")
                    got += part

            until(b"\r\n\r\n")
            head = got.split(b"\r\n\r\n")[0].decode().lower()
            self.assertIn("200 ok", head.split("\r\n")[0])
            self.assertIn("text/event-stream", head)
            self.rogue.ack("head")
            for i in range(6):
                until(b"data: event %d\n\n" % i)
                self.assertNotIn(b"data: event %d" % (i + 1), got)
                self.rogue.ack(i)
            until(b"\r\n0\r\n\r\n")
        events = [line for line in got.split(b"\n") if line.startswith(b"data: ")]
        self.assertEqual(len(events), 6)


# ---------------------------------------------------------------------------
# 5. Framing: refused, the connection closed, the body never read as a request.

SMUGGLED = b"GET /id/smuggled HTTP/1.1\r\nHost: gateway.test\r\n\r\n"


class Smuggling(SecurityTest):
    def setUp(self):
        self.rogue = rogue_upstream.RogueUpstream()
        self.addCleanup(self.rogue.close)
        self.g = self.gateway_to(self.rogue.port,
                                 {"routes": [{"path_prefix": "/", "auth": "none"}]})

    def refused(self, data):
        raw, closed = exchange(self.g.port, data, timeout=3)
        responses = parse_responses(raw)
        self.assertEqual(len(responses), 1, raw)
        status, headers, body = responses[0]
        self.assertEqual(status, 400, body)
        self.assertEqual(json.loads(body)["error"]["code"], "VALIDATION_ERROR")
        self.assertTrue(closed, "the connection must close after a framing error")
        self.assertNotIn("/id/smuggled", self.rogue.targets())

    def test_transfer_encoding_other_than_chunked(self):
        for te in ("chunked, gzip", "identity", "xchunked", "gzip, chunked", "gzip"):
            with self.subTest(te=te):
                self.refused(b"POST /id/1 HTTP/1.1\r\nHost: gateway.test\r\n"
                             b"Transfer-Encoding: " + te.encode() + b"\r\n\r\n" + SMUGGLED)

    def test_host_missing_or_repeated(self):
        self.refused(b"GET /id/1 HTTP/1.1\r\n\r\n" + SMUGGLED)
        self.refused(b"GET /id/1 HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n" + SMUGGLED)

    def test_a_connection_field_of_thousands_of_options(self):
        # Every option names a field to drop, and every field going upstream was
        # looked up among them: 3000 options over 2400 empty fields (15.6 KiB,
        # under max_header_bytes) kept the gateway's core busy ~55 ms a request,
        # unauthenticated on an auth: none route. More than 16 is refused.
        head = (b"GET /id/1 HTTP/1.1\r\nHost: gateway.test\r\nConnection: " +
                b",".join([b"x"] * 3000) + b"\r\n" + b"y:\r\n" * 2400 + b"\r\n")
        self.assertLess(len(head), 16384)
        self.refused(head + SMUGGLED)
        self.assertNotIn("/id/1", self.rogue.targets())

    def test_content_lengths_that_disagree(self):
        self.refused(b"POST /id/1 HTTP/1.1\r\nHost: gateway.test\r\nContent-Length: 0\r\n"
                     b"Content-Length: " + str(len(SMUGGLED)).encode() + b"\r\n\r\n" + SMUGGLED)

    def test_plain_chunked_still_works(self):
        raw, _ = exchange(self.g.port, b"POST /id/ok HTTP/1.1\r\nHost: gateway.test\r\n"
                          b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                          b"3\r\nabc\r\n0\r\n\r\n", timeout=5.0)
        self.assertEqual(parse_responses(raw)[0][2], b"ok")


# ---------------------------------------------------------------------------
# Identity headers and keys never reach the upstream (the echo upstream).

class IdentityAndSecrets(SecurityTest):
    def setUp(self):
        self.g = self.gateway_to(self.upstream.server_port,
                                 {"routes": [{"path_prefix": "/docs", "auth": "none"}]})
        self.key = self.g.create_key("--name", "a", "--owner", "acme")["key"]
        self.other = self.g.create_key("--name", "b", "--owner", "acme")["key"]

    def echo(self, target, headers, status=200):
        got, _, body = request(self.g.port, "GET", target, headers)
        self.assertEqual(got, status, body)
        return json.loads(body)

    def test_underscore_identity_header_never_reaches_the_upstream(self):
        for target, extra in (("/docs/x", []), ("/v1/x", [("X-Api-Key", self.key)])):
            e = self.echo(target, [("X_Keygate_Owner", "root"), ("X_Other", "1")] + extra)
            self.assertNotIn("x_keygate_owner", e["headers"])
            self.assertNotIn("x_other", e["headers"])
            self.assertNotIn("root", json.dumps(e["headers"]))
        self.assertEqual(e["headers"]["x-keygate-owner"], ["acme"])

    def test_underscores_allowed_still_never_as_identity(self):
        g = self.gateway_to(self.upstream.server_port, {
            "routes": [{"path_prefix": "/", "auth": "none"}],
            "limits": {"allow_underscores_in_headers": True}})
        got, _, body = request(g.port, "GET", "/x", [("X_Keygate_Owner", "root"), ("X_Other", "1")])
        e = json.loads(body)
        self.assertEqual(e["headers"].get("x_other"), ["1"])
        self.assertNotIn("x_keygate_owner", e["headers"])

    def test_a_key_sent_to_an_auth_none_route_does_not_reach_it(self):
        for headers in ([("X-Api-Key", self.key)], [("Authorization", "Bearer " + self.key)],
                        [("authorization", "bearer " + self.key), ("X-Api-Key", self.key)]):
            e = self.echo("/docs/x", headers)
            self.assertNotIn(self.key, json.dumps(e))
        # Other credentials on auth: none routes pass untouched.
        e = self.echo("/docs/x", [("Authorization", "Basic dXNlcjpwYXNz"), ("X-Api-Key", "theirs")])
        self.assertEqual(e["headers"]["authorization"], ["Basic dXNlcjpwYXNz"])
        self.assertEqual(e["headers"]["x-api-key"], ["theirs"])

    def test_a_key_in_a_second_authorization_header_does_not_reach_it(self):
        e = self.echo("/v1/x", [("X-Api-Key", self.key), ("Authorization", "Basic dXNlcjpwYXNz"),
                                ("Authorization", "Bearer " + self.key)])
        self.assertNotIn(self.key, json.dumps(e))
        self.assertEqual(e["headers"]["authorization"], ["Basic dXNlcjpwYXNz"])  # Basic kept

    def test_two_different_keys_are_a_conflict(self):
        for headers in ([("X-Api-Key", self.key), ("X-Api-Key", self.other)],
                        [("Authorization", "Bearer " + self.key),
                         ("Authorization", "Bearer " + self.other)]):
            got, _, body = request(self.g.port, "GET", "/v1/x", headers)
            self.assertEqual((got, reason(body)), (401, "conflict"), body)


# ---------------------------------------------------------------------------
# 7. The admin accept loop backs off when out of descriptors (EMFILE).

class AdminAcceptBackoff(SecurityTest):
    def test_out_of_descriptors_does_not_spin(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))  # inherited by keygate
        try:
            g = self.gateway_to(self.upstream.server_port, {})
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        with open(f"/proc/{g.proc.pid}/maps") as f:
            maps = f.read()
        if "libasan" in maps or "libubsan" in maps:
            # UBSan's vptr check opens a pipe to probe memory: out of
            # descriptors it reports a false error and aborts the process.
            self.skipTest("the sanitizers themselves need free descriptors")
        clients = []
        self.addCleanup(lambda: [c.close() for c in clients])
        for _ in range(120):  # more than keygate can accept: the rest wait in the backlog
            clients.append(socket.create_connection(("127.0.0.1", g.admin_port), timeout=5))
        fds = f"/proc/{g.proc.pid}/fd"
        self.assertTrue(wait_until(lambda: len(os.listdir(fds)) >= 63, timeout=10),
                        f"keygate never ran out of descriptors ({len(os.listdir(fds))} open)")

        def cpu_seconds():
            with open(f"/proc/{g.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        before, t0 = cpu_seconds(), time.monotonic()
        time.sleep(2.0)  # a measuring window, not a wait for state
        used = cpu_seconds() - before
        window = time.monotonic() - t0
        self.assertLess(used, 0.1 * window, f"{used:.2f} s of CPU in {window:.2f} s: spinning")
        self.assertIn("admin accept failed", g.logs())
        for c in clients:
            c.close()
        clients.clear()
        # Descriptors free again: the admin API answers.
        self.assertEqual(g.request("GET", "/metrics", admin=True, timeout=15).status, 200)


if __name__ == "__main__":
    unittest.main()
