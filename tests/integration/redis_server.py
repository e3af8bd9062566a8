"""A real redis-server for the tests, as tests/support/redis_server.hpp does it
in C++: the Debian package's binary on a free loopback port, in a temp dir, no
persistence (--save '' --appendonly no); SIGKILLed and removed after, and
never outliving the test process (PR_SET_PDEATHSIG). stop()/start() keep the
port. The tests' own checks go through redis-cli. Every wait is bounded."""
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

TIMEOUT = 10


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class RedisServer:
    def __init__(self, *extra_args, password=None):
        self.port = _free_port()
        self.tmp = tempfile.mkdtemp(prefix="kg-redis-")
        self.password = password
        self.extra = list(extra_args) + (["--requirepass", password] if password else [])
        self.proc = None
        self.start()

    def url(self, db=0):
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    def start(self):
        """Starts (again, on the same port, empty) and waits until it answers PING."""
        if self.proc and self.proc.poll() is None:
            return
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.tmp,
                "--logfile", os.path.join(self.tmp, "redis.log"), *self.extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=_die_with_parent)
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited at start ({self.proc.returncode})")
            try:
                if self.cli("PING") == "PONG":
                    return
            except (subprocess.SubprocessError, OSError):
                pass
            time.sleep(0.02)
        raise AssertionError("redis-server did not answer PING within 10 s")

    def stop(self):
        """Kills it: every connection to it is reset at once."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a paused server cannot exit
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT)

    def pause(self):
        """Connections stay open; nothing is answered (a hung server)."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def cli(self, *args):
        """One command through redis-cli; its output without the trailing newline."""
        cmd = ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port)]
        if self.password:
            cmd += ["--no-auth-warning", "-a", self.password]
        p = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=TIMEOUT)
        if p.returncode != 0:
            raise subprocess.SubprocessError(p.stderr)
        return p.stdout.rstrip("\n")

    def calls(self, command):
        """calls=N of one command in INFO commandstats (0 if never called)."""
        tag = f"cmdstat_{command}:calls="
        for line in self.cli("INFO", "commandstats").splitlines():
            if line.startswith(tag):
                return int(line[len(tag):].split(",")[0])
        return 0

    def destroy(self):
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
