"""A misbehaving HTTP/1.1 upstream on raw sockets, for keygate's security tests.

Keep-alive on every connection; each request line is recorded in `requests`.
Paths (any method):
  /id/N          200, body N: a well-behaved answer naming its request
  /head-body     a HEAD reply that carries a body anyway: a whole second
                 response whose body is POISON (sent `late`: ~0.2 s after the
                 head, else in the same write)
  /extra         Content-Length: 5 "hello", then POISON's response after it
                 (`late` as above; `soon`: ~2 ms after, while a busy gateway
                 may already have given the connection to another request)
  /reset         a head promising 100 bytes, then a TCP reset (SO_LINGER 0)
  /bye/N         200, body N, then the connection closed (FIN) without a
                 `Connection: close` (`late`: ~0.2 s after the answer, else at
                 once, so the FIN arrives with the body)
  /sse           text/event-stream, chunked: the head, then `events` events
                 every `interval` s; each next step waits (bounded) until the
                 test acknowledges the previous one via `ack()`, so delivery
                 is proven incremental without timing assumptions
`poison_sent` is set once the stray bytes of /head-body or /extra went out;
`connections` counts the connections accepted, `closed` those it closed.
"""
import queue
import random
import socket
import struct
import threading
import time
from urllib.parse import parse_qs, urlsplit

POISON = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nContent-Type: text/plain\r\n\r\nPOISON"


class RogueUpstream:
    def __init__(self, events=6, interval=0.5):
        self.events = events
        self.interval = interval
        self.requests = []  # (method, target, {lower-case name: [values]})
        self.poison_sent = threading.Event()
        self._acks = queue.Queue()
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._closing = False
        self.connections = 0
        self.closed = 0  # connections this side closed
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self._closing = True
        self._sock.close()

    def ack(self, what):
        self._acks.put(what)

    def targets(self):
        with self._lock:
            return [t for _, t, _ in self.requests]

    def _accept(self):
        while not self._closing:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _read_request(conn, pending):
        while b"\r\n\r\n" not in pending:
            data = conn.recv(65536)
            if not data:
                return None, b""
            pending += data
        head, rest = pending.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        def fill(n):
            nonlocal rest
            while len(rest) < n:
                data = conn.recv(65536)
                if not data:
                    raise OSError("closed mid-body")
                rest += data

        if "chunked" in headers.get("transfer-encoding", [""])[0].lower():
            while True:
                while b"\r\n" not in rest:
                    fill(len(rest) + 1)
                size_line, rest = rest.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                fill(size + 2)
                rest = rest[size + 2:]
                if size == 0:
                    return (method, target, headers), rest
        length = int(headers.get("content-length", ["0"])[0])
        fill(length)
        return (method, target, headers), rest[length:]

    def _serve(self, conn):
        pending = b""
        try:
            while True:
                req, pending = self._read_request(conn, pending)
                if req is None:
                    return
                with self._lock:
                    self.requests.append(req)
                if not self._answer(conn, *req):
                    return
        except OSError:
            pass
        finally:
            conn.close()
            with self._lock:
                self.closed += 1

    def _stray(self, conn, head, late, soon=False):
        if late or soon:
            conn.sendall(head)
            time.sleep(0.2 if late else 0.002)
            conn.sendall(POISON)
        else:
            conn.sendall(head + POISON)
        self.poison_sent.set()

    def _answer(self, conn, method, target, headers):
        url = urlsplit(target)
        late = parse_qs(url.query).get("late") == ["1"]
        soon = parse_qs(url.query).get("soon") == ["1"]
        path = url.path
        if path.startswith("/id/"):
            body = path[len("/id/"):].encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            return True
        if path.startswith("/bye/"):
            body = path[len("/bye/"):].encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            if late:
                time.sleep(0.2)
            return False  # _serve closes it
        if path == "/head-body":
            head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(POISON)
            self._stray(conn, head, late)
            return True
        if path == "/extra":
            self._stray(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", late, soon)
            return True
        if path == "/reset":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()  # RST, not FIN
            return False
        if path == "/sse":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")
            if not self._wait_ack("head"):
                return False
            for i in range(self.events):
                time.sleep(self.interval)
                event = b"data: event %d\n\n" % i
                conn.sendall(b"%x\r\n%s\r\n" % (len(event), event))
                if not self._wait_ack(i):
                    return False
            conn.sendall(b"0\r\n\r\n")
            return True
        conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        return True

    def _wait_ack(self, what, timeout=10):
        try:
            return self._acks.get(timeout=timeout) == what
        except queue.Empty:
            return False


class ChaosUpstream:
    """An upstream that misbehaves at random (seeded), for the reliability
    workloads. A request for /tag/T is answered by one of BEHAVIOURS:
      ok        200, body body_for(T), keep-alive
      slow      the same after 50-300 ms
      reset     TCP reset before a byte is sent
      stall     nothing until the gateway gives up (its upstream.timeout)
      garbage   random bytes that are not HTTP, then close
      cut       the head and half the body, then close (FIN)
      cut_reset the head and half the body, then a TCP reset
    `seen[T]` lists the behaviours used for T (more than one if the gateway
    retried it). Handler threads are bounded by `hold_limit` seconds."""

    BEHAVIOURS = ("ok", "slow", "reset", "stall", "garbage", "cut", "cut_reset")

    def __init__(self, seed, weights=(40, 15, 10, 5, 10, 10, 10), hold_limit=30):
        self.rng = random.Random(seed)
        self.weights = weights
        self.hold_limit = hold_limit
        self.seen = {}
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.port = self.sock.getsockname()[1]
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    @staticmethod
    def body_for(tag):
        return (tag + ";").encode() * 40

    def close(self):
        self.closing = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def _accept(self):
        while not self.closing:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _pick(self, tag):
        with self.lock:
            b = self.rng.choices(self.BEHAVIOURS, self.weights)[0]
            self.seen.setdefault(tag, []).append(b)
            garbage = bytes(self.rng.getrandbits(8) for _ in range(64))
            delay = 0.05 + self.rng.random() * 0.25
        return b, garbage, delay

    def _serve(self, conn):
        conn.settimeout(self.hold_limit)
        pending = b""
        try:
            while not self.closing:
                req, pending = RogueUpstream._read_request(conn, pending)
                if req is None:
                    return
                target = req[1]
                tag = target[len("/tag/"):] if target.startswith("/tag/") else target
                b, garbage, delay = self._pick(tag)
                body = self.body_for(tag)
                head = b"HTTP/1.1 200 OK\r\nX-Tag: %s\r\nContent-Length: %d\r\n\r\n" % (
                    tag.encode(), len(body))
                if b == "slow":
                    time.sleep(delay)
                if b in ("ok", "slow"):
                    conn.sendall(head + body)
                    continue
                if b == "reset":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                elif b == "stall":
                    while conn.recv(65536):  # until the gateway closes (or hold_limit)
                        pass
                elif b == "garbage":
                    conn.sendall(garbage)
                else:
                    conn.sendall(head + body[: len(body) // 2])
                    if b == "cut_reset":
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                return
        except OSError:
            pass
        finally:
            conn.close()
