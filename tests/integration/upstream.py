#!/usr/bin/env python3
"""A real HTTP/1.1 upstream for keygate's integration tests (and `make run`'s demo).

Endpoints (any method):
  /stream?bytes=N[&chunked=1]   N bytes of body, Content-Length or chunked
  /eof?bytes=N                  N bytes, no length: the body ends when the connection closes
  /slow?ms=N                    answers after N ms
  /status/N                     answers with status N
  /__conns                      {"connections": accepted TCP connections so far}
  /ws                           101 Switching Protocols, then echoes raw bytes
  anything else                 200 JSON echo: method, path, query, headers (and their
                                names in arrival order), body length + sha256
Request bodies may be Content-Length or chunked.
"""
import hashlib
import json
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

CHUNK = 1 << 16


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # head and body are two writes: no 40 ms delayed-ACK stall

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def read_body(self):
        """Returns (length, sha256 hex) reading Content-Length or chunked bodies in chunks."""
        h = hashlib.sha256()
        n = 0
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                left = size
                while left:
                    part = self.rfile.read(min(left, CHUNK))
                    h.update(part)
                    n += len(part)
                    left -= len(part)
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left:
                part = self.rfile.read(min(left, CHUNK))
                if not part:
                    break
                h.update(part)
                n += len(part)
                left -= len(part)
        return n, h.hexdigest()

    def send_json(self, status, obj, extra=()):
        body = b"" if status in (204, 304) else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if status not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        length, digest = self.read_body()
        if url.path == "/stream":
            total = int(q.get("bytes", "0"))
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            chunked = q.get("chunked") == "1"
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(total))
            self.end_headers()
            block = b"x" * CHUNK
            left = total
            while left:
                part = block[: min(left, CHUNK)]
                if chunked:
                    self.wfile.write(b"%x\r\n" % len(part) + part + b"\r\n")
                else:
                    self.wfile.write(part)
                left -= len(part)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
            return
        if url.path == "/eof":
            total = int(q.get("bytes", "0"))
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"e" * total)
            self.close_connection = True
            return
        if url.path == "/slow":
            time.sleep(int(q.get("ms", "1000")) / 1000)
            self.send_json(200, {"slow": True})
            return
        if url.path.startswith("/status/"):
            code = int(url.path.split("/")[2])
            self.send_json(code, {"upstream_status": code})
            return
        if url.path == "/__conns":
            with self.server.lock:
                self.send_json(200, {"connections": self.server.connections})
            return
        if url.path == "/ws":
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            self.wfile.flush()
            while True:
                data = self.connection.recv(4096)
                if not data:
                    break
                self.connection.sendall(data)
            self.close_connection = True
            return
        headers = {}
        for k, v in self.headers.items():
            headers.setdefault(k.lower(), []).append(v)
        self.send_json(200, {"method": self.command, "path": url.path, "query": url.query,
                             "target": self.path, "headers": headers,
                             "header_order": [k.lower() for k in self.headers.keys()],
                             "body_length": length, "body_sha256": digest})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog is 5: a burst of new upstream connections
    # (8 clients, several gateway threads) overflowed it, the SYNs were dropped
    # and connects waited for a retransmit (a spurious 504 under load).
    request_queue_size = 128

    def __init__(self, addr):
        super().__init__(addr, Handler)
        self.lock = threading.Lock()
        self.connections = 0


def start(port=0):
    """Starts in a background thread; returns the server (server.server_port)."""
    srv = Server(("127.0.0.1", port))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    srv = Server(("127.0.0.1", port))
    print(f"demo upstream on http://127.0.0.1:{port}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
