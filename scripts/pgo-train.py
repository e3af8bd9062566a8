#!/usr/bin/env python3
"""The training run of the profile-guided build (scripts/pgo-build.sh).

    pgo-train.py KEYGATE_BIN

Runs an instrumented `keygate serve` (threads: 1) in front of a small HTTP/1.1
upstream, both on free loopback ports in a temp dir, and sends it the traffic
a gateway lives on, over several keep-alive connections at once: valid keys in
either credential header, with wrk's fields and with a browser's, GETs and
POSTs with a body, answered with and without Content-Length; unknown,
malformed and missing keys (401); a key over its limit (429); a route's 403.
Once with the access log off (as `make bench` runs) and once on (the default).
The profile follows what a run executes, not how long it runs: a few thousand
requests of each kind are enough. Exits non-zero when an answer is not the
expected one, so a broken build does not train silently.
"""
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

REQUESTS_PER_KIND = 3000
CONNECTIONS = 8

BODY = b'{"ok":true,"service":"upstream","items":[1,2,3],"pad":"0123456789abcdef0123456789ab"}\n'
BROWSER = (b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
           b"Chrome/120.0 Safari/537.36\r\n"
           b"Accept: application/json, text/plain, */*\r\n"
           b"Accept-Encoding: gzip, deflate, br\r\n"
           b"Accept-Language: en-US,en;q=0.9\r\n"
           b"Referer: https://app.example.com/dashboard\r\n"
           b"Cookie: session=abcdef0123456789; theme=dark\r\n")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def read_message(reader):
    """One HTTP/1.1 message with a Content-Length or chunked body (or none)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length, chunked = 0, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.readexactly(length)
    return head


async def upstream(reader, writer):
    """nginx's answer to every request (Server, Date, Content-Length,
    Connection: keep-alive); every fourth one chunked instead."""
    n = 0
    try:
        while True:
            await read_message(reader)
            n += 1
            date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()).encode()
            head = (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: " + date +
                    b"\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n")
            if n % 4:
                writer.write(head + b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)
            else:
                writer.write(head + b"Transfer-Encoding: chunked\r\n\r\n" +
                             f"{len(BODY):x}\r\n".encode() + BODY + b"\r\n0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
        pass  # keygate closed the connection, or the run is over
    finally:
        writer.close()


async def client(port, requests):
    """Sends (request bytes, expected status) pairs over one keep-alive connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for raw, status in requests:
            writer.write(raw)
            head = await read_message(reader)
            got = int(head.split(b" ", 2)[1])
            if got != status:
                raise SystemExit(f"pgo-train: expected {status}, got {head[:200]!r}")
    finally:
        writer.close()


def kinds(port, good, limited):
    host = f"Host: 127.0.0.1:{port}\r\n".encode()

    def get(path, fields=b""):
        return b"GET " + path + b" HTTP/1.1\r\n" + host + fields + b"\r\n"

    body = b'{"name":"widget","count":3}'
    over_limit = get(b"/", b"X-Api-Key: " + limited + b"\r\n")
    post = (b"POST /v1/items HTTP/1.1\r\n" + host + b"Authorization: Bearer " + good +
            b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() +
            b"\r\n\r\n" + body)
    return over_limit, [
        (get(b"/", b"X-Api-Key: " + good + b"\r\n"), 200),
        (get(b"/v1/items?page=2&sort=name", b"Authorization: Bearer " + good + b"\r\n" + BROWSER), 200),
        (post, 200),
        (get(b"/", b"X-Api-Key: bk_" + b"0" * 32 + b"\r\n"), 401),
        (get(b"/v1/items", b"Authorization: Bearer kg_live_" + b"A" * 38 + b"\r\n" + BROWSER), 401),
        (get(b"/"), 401),
        (over_limit, 429),
        (get(b"/v1/admin/users", b"X-Api-Key: " + good + b"\r\n"), 403),
    ]


async def traffic(port, good, limited):
    over_limit, mix = kinds(port, good, limited)
    # One request of the limited key is admitted (burst 1); the rest are 429s.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(over_limit)
    await read_message(reader)
    writer.close()
    per_conn = REQUESTS_PER_KIND * len(mix) // CONNECTIONS
    await asyncio.gather(*(client(port, [mix[(i + c) % len(mix)] for i in range(per_conn)])
                           for c in range(CONNECTIONS)))
    return per_conn * CONNECTIONS


def wait_for(port, proc, deadline=10.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:  # bounded
        if proc.poll() is not None:
            raise SystemExit(f"pgo-train: keygate exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("pgo-train: keygate did not listen")


async def main(binary):
    up = await asyncio.start_server(upstream, "127.0.0.1", 0)
    up_port = up.sockets[0].getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="keygate-pgo-") as tmp:
        conf = os.path.join(tmp, "keygate.yaml")
        port = free_port()

        def write_config(access_log):
            with open(conf, "w") as f:
                json.dump({
                    "listen": f"127.0.0.1:{port}", "threads": 1,
                    "upstream": {"url": f"http://127.0.0.1:{up_port}"},
                    "store": {"sqlite": os.path.join(tmp, "keys.db")},
                    "plans": {"default": {"rate": {"requests": 1000000000, "period": "1s"}},
                              "tiny": {"rate": {"requests": 1, "period": "1h"}}},
                    "routes": [{"path_prefix": "/v1/admin/", "require_scopes": ["admin"]}],
                    "logging": {"level": "warn", "access_log": access_log},
                }, f)

        def create(*args):
            out = subprocess.run([binary, "keys", "create", "--config", conf, "--json", *args],
                                 check=True, capture_output=True, text=True).stdout
            return json.loads(out)["key"].encode()

        write_config(False)
        good = create("--name", "pgo", "--scopes", "read,write")
        limited = create("--name", "pgo-limited", "--plan", "tiny")
        for access_log in (False, True):
            write_config(access_log)
            log = open(os.path.join(tmp, "access.log"), "ab")  # the access log is stdout
            proc = subprocess.Popen([binary, "serve", "--config", conf], stdout=log)
            try:
                wait_for(port, proc)
                sent = await traffic(port, good, limited)
                print(f"pgo-train: {sent} requests answered as expected "
                      f"(access log {'on' if access_log else 'off'})", flush=True)
            finally:
                proc.terminate()  # a clean exit writes the profile
                code = proc.wait(timeout=30)
                log.close()
                if code != 0:
                    raise SystemExit(f"pgo-train: keygate exited with {code}")
    up.close()
    await up.wait_closed()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: pgo-train.py KEYGATE_BIN")
    asyncio.run(main(os.path.abspath(sys.argv[1])))
