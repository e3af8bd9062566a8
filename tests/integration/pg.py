"""A real PostgreSQL server for the tests: initdb + postgres from the Debian
packages, in a temp dir, on a free loopback port, with fsync off. PostgreSQL
refuses to run as root, so as root it runs as the `postgres` system user
(runuser). Every wait is bounded (pg_ctl -w -t)."""
import atexit
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile

TIMEOUT = 60


def bindir():
    """The server's programs (initdb, pg_ctl, psql): not on PATH on Debian."""
    try:
        p = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, timeout=10)
        if p.returncode == 0 and os.path.exists(os.path.join(p.stdout.strip(), "initdb")):
            return p.stdout.strip()
    except OSError:
        pass
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL server not installed: run scripts/install-deps.sh")
    return os.path.dirname(found[-1])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tool(name):
    return os.path.join(bindir(), name)


def psql(url, sql):
    """Runs SQL against a database URL; returns psql's unaligned output."""
    p = subprocess.run([_tool("psql"), "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", url,
                        "-c", sql], capture_output=True, text=True, timeout=TIMEOUT)
    if p.returncode != 0:
        raise AssertionError(f"psql failed: {p.stderr}")
    return p.stdout


def dump(url):
    """Everything in the database as SQL text (schema and rows)."""
    p = subprocess.run([_tool("pg_dump"), "--no-owner", url], capture_output=True, text=True,
                       timeout=TIMEOUT)
    if p.returncode != 0:
        raise AssertionError(f"pg_dump failed: {p.stderr}")
    return p.stdout


class Server:
    """One PostgreSQL cluster. stop()/start() keep its data and port."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="kg-pg-")
        self.data = os.path.join(self.tmp, "data")
        self.port = _free_port()
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(self.tmp, pw.pw_uid, pw.pw_gid)
        self._names = itertools.count(1)
        self._databases = {}
        self._run("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--no-sync")
        self.start()

    def _run(self, tool, *args):
        cmd = [_tool(tool), *args]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT + 10)
        if p.returncode != 0:
            raise AssertionError(f"{tool} failed ({p.returncode}): {p.stderr}{self.log()}")
        return p

    def start(self):
        opts = (f"-p {self.port} -k {self.tmp} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off")
        self._run("pg_ctl", "-D", self.data, "-l", os.path.join(self.tmp, "postgres.log"),
                  "-o", opts, "-w", "-t", str(TIMEOUT), "start")

    def stop(self, mode="fast"):
        """fast: disconnects every client at once (what a restart or failover does)."""
        self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", str(TIMEOUT), "stop")

    def running(self):
        p = subprocess.run([_tool("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                           capture_output=True, timeout=TIMEOUT)
        return p.returncode == 0

    def url(self, database):
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name=None):
        """A fresh, empty database; returns its URL."""
        name = name or f"kg_{next(self._names)}"
        psql(self.url("postgres"), f'CREATE DATABASE "{name}"')
        return self.url(name)

    def database_for(self, owner):
        """One database per owner (e.g. a gateway's temp dir), created on first use."""
        if owner not in self._databases:
            self._databases[owner] = self.create_database()
        return self._databases[owner]

    def log(self):
        try:
            with open(os.path.join(self.tmp, "postgres.log"), errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def destroy(self):
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            try:
                self.stop("immediate")
            except AssertionError:
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)


_shared = None


def shared():
    """One server per test process, for suites that only need a fresh database."""
    global _shared
    if _shared is None:
        _shared = Server()
        atexit.register(_shared.destroy)
    return _shared
