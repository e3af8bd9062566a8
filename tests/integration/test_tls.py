"""TLS both ways (issue 7): HTTPS listener (TLS 1.2+, plain HTTP refused with a
clear 400, certificate reload on SIGHUP) and https:// upstreams (verification of
the chain and the host name, SNI). Certificates are made here with openssl."""
import http.client
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import unittest

import upstream
from harness import GatewayTest, wait_until


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}", cwd=d)


def make_cert(d, name, ca, san):
    with open(os.path.join(d, f"{name}.ext"), "w") as f:
        f.write(f"subjectAltName={san}\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)


class Tls(GatewayTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.dir = tempfile.mkdtemp(prefix="kg-tls-")
        make_ca(cls.dir, "ca")
        make_ca(cls.dir, "otherca")
        make_cert(cls.dir, "gateway", "ca", "DNS:localhost,IP:127.0.0.1")
        make_cert(cls.dir, "gateway2", "ca", "DNS:localhost,IP:127.0.0.1")
        make_cert(cls.dir, "upstream", "ca", "DNS:localhost")  # not valid for 127.0.0.1
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(cls.dir, "upstream.pem"), os.path.join(cls.dir, "upstream.key"))
        cls.tls_upstream = upstream.Server(("127.0.0.1", 0))
        cls.tls_upstream.socket = ctx.wrap_socket(cls.tls_upstream.socket, server_side=True)
        threading.Thread(target=cls.tls_upstream.serve_forever, daemon=True).start()

    @classmethod
    def tearDownClass(cls):
        cls.tls_upstream.shutdown()
        cls.tls_upstream.server_close()
        shutil.rmtree(cls.dir, ignore_errors=True)
        super().tearDownClass()

    def path(self, name):
        return os.path.join(self.dir, name)

    def client_ctx(self, ca="ca.pem"):
        ctx = ssl.create_default_context(cafile=self.path(ca))
        return ctx

    def https(self, g, method, path, headers=None, ctx=None, host="localhost"):
        c = http.client.HTTPSConnection(host, g.port, context=ctx or self.client_ctx(), timeout=10)
        try:
            c.request(method, path, headers=headers or {})
            r = c.getresponse()
            return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
        finally:
            c.close()

    def tls_gateway(self, extra=None):
        cfg = {"tls": {"cert": self.path("gateway.pem"), "key": self.path("gateway.key")}}
        cfg.update(extra or {})
        g = self.gateway(cfg, start=False)
        g.start()
        return g

    def test_https_listener_serves_and_forwards(self):
        g = self.tls_gateway()
        k = g.create_key("--name", "t")["key"]
        status, headers, body = self.https(g, "GET", "/live")
        self.assertEqual(status, 200)
        status, headers, body = self.https(g, "GET", "/x", {"X-Api-Key": k})
        self.assertEqual(status, 200, body)
        import json
        self.assertEqual(json.loads(body)["headers"]["x-forwarded-proto"], ["https"])
        status, _, _ = self.https(g, "GET", "/x", host="127.0.0.1")  # IP SAN
        self.assertEqual(status, 401)

    def test_tls_versions_below_1_2_are_refused(self):
        g = self.tls_gateway()
        ctx = self.client_ctx()
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        try:
            ctx.set_ciphers("ALL:@SECLEVEL=0")
        except ssl.SSLError:
            pass
        with self.assertRaises((ssl.SSLError, ConnectionError, OSError)):
            self.https(g, "GET", "/live", ctx=ctx)
        ctx12 = self.client_ctx()
        ctx12.maximum_version = ssl.TLSVersion.TLSv1_2
        self.assertEqual(self.https(g, "GET", "/live", ctx=ctx12)[0], 200)

    def test_plain_http_to_the_tls_port_gets_a_clear_400(self):
        g = self.tls_gateway()
        with socket.create_connection(("127.0.0.1", g.port), timeout=5) as s:
            s.sendall(b"GET /live HTTP/1.1\r\nHost: a\r\n\r\n")
            data = b""
            while True:
                part = s.recv(4096)
                if not part:
                    break
                data += part
        self.assertTrue(data.startswith(b"HTTP/1.1 400"), data)
        self.assertIn(b"plain HTTP", data)
        self.assertEqual(self.https(g, "GET", "/live")[0], 200)  # still serving

    def test_certificate_reloads_on_sighup(self):
        g = self.tls_gateway()
        serial = lambda: self._peer_cert_serial(g)
        first = serial()
        shutil.copy(self.path("gateway2.pem"), self.path("reload.pem"))
        shutil.copy(self.path("gateway2.key"), self.path("reload.key"))
        g.config["tls"] = {"cert": self.path("reload.pem"), "key": self.path("reload.key")}
        g.reload_and_wait(g.config)
        self.assertNotEqual(serial(), first)

    def _peer_cert_serial(self, g):
        with socket.create_connection(("127.0.0.1", g.port), timeout=5) as raw:
            with self.client_ctx().wrap_socket(raw, server_hostname="localhost") as s:
                return s.getpeercert()["serialNumber"]

    def upstream_gateway(self, host="localhost", **tls):
        port = self.tls_upstream.server_port
        cfg = {"routes": [{"path_prefix": "/", "auth": "none"}],
               "upstream": {"url": f"https://{host}:{port}", **tls}}
        return self.gateway(cfg)

    def test_https_upstream_verified_with_sni(self):
        g = self.upstream_gateway(ca_file=self.path("ca.pem"))
        r = g.request("GET", "/x")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["path"], "/x")
        self.assertEqual(g.request("GET", "/y").status, 200)  # pooled TLS connection

    def test_https_upstream_wrong_host_name_is_refused(self):
        g = self.upstream_gateway(host="127.0.0.1", ca_file=self.path("ca.pem"))
        self.assertEnvelope(g.request("GET", "/x"), 502, "UPSTREAM_ERROR")
        self.assertEqual(g.metric("keygate_upstream_errors_total", 'kind="tls"'), 1)

    def test_https_upstream_untrusted_ca_is_refused_unless_verification_is_off(self):
        g = self.upstream_gateway(ca_file=self.path("otherca.pem"))
        body = self.assertEnvelope(g.request("GET", "/x"), 502, "UPSTREAM_ERROR")
        self.assertIn("TLS", body["error"]["message"])
        g2 = self.upstream_gateway(ca_file=self.path("otherca.pem"), tls_verify=False)
        self.assertEqual(g2.request("GET", "/x").status, 200)


if __name__ == "__main__":
    unittest.main()
