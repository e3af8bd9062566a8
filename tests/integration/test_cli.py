"""The command line (SPEC §1, §10; issue 15) through the real binary: help at
every level without touching the config or the store, -c/--config before or
after the subcommand, usage errors naming the command, audit list, export."""
import hashlib
import json
import os
import signal
import subprocess
import tempfile
import unittest

from harness import KEYGATE, GatewayTest, bound_ports, wait_until

COMMANDS = [[], ["serve"], ["check-config"], ["migrate"], ["version"], ["keys"],
            ["keys", "create"], ["keys", "list"], ["keys", "show"], ["keys", "update"],
            ["keys", "revoke"], ["keys", "rotate"], ["keys", "import"], ["keys", "export"],
            ["audit"], ["audit", "list"]]


def run(*args, env=None):
    return subprocess.run([KEYGATE, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


class Cli(GatewayTest):
    def setUp(self):
        # A valid config whose store would be created in a folder that does not exist yet.
        self.g = self.gateway(start=False)
        self.store_dir = os.path.join(self.g.tmp, "store")
        self.g.config["store"]["sqlite"] = os.path.join(self.store_dir, "keygate.db")
        self.g.write_config()

    def assertUntouched(self):
        self.assertFalse(os.path.exists(self.store_dir), "the store was touched")

    def test_help_at_every_level_exits_0_without_config_or_store(self):
        for cmd in COMMANDS:
            for flag in ("--help", "-h"):
                with self.subTest(cmd=cmd, flag=flag):
                    p = run(*cmd, flag, "-c", self.g.config_path)
                    self.assertEqual(p.returncode, 0, p.stderr)
                    self.assertIn("Usage: " + " ".join(["keygate", *cmd]), p.stdout)
                    self.assertIn("--config", p.stdout)
                    self.assertEqual(p.stderr, "")
            # help never reads the config: a missing file is no problem
            p = run(*cmd, "--help", "--config", os.path.join(self.g.tmp, "missing.yaml"))
            self.assertEqual(p.returncode, 0, p.stderr)
        self.assertUntouched()
        # every flag of SPEC §1 is in its command's help
        spec_flags = {
            "create": ["--name", "--owner", "--scopes", "--plan", "--rate", "--burst",
                       "--expires-in", "--expires-at", "--allow-ip", "--meta", "--json"],
            "list": ["--owner", "--status", "--json"], "show": ["--json"],
            "update": ["--name", "--scopes", "--plan", "--rate", "--burst", "--enable",
                       "--disable", "--expires-at"],
            "rotate": ["--grace", "--json"], "import": ["--file", "--json"], "export": ["--json"]}
        for sub, flags in spec_flags.items():
            text = run("keys", sub, "--help").stdout
            for flag in flags:
                self.assertRegex(text, rf"\s{flag}\b", f"keys {sub}: {flag}")

    def test_usage_errors_exit_2_with_one_line_naming_the_command(self):
        cases = [
            (["keys", "create", "--name", "x", "--bogus"], "keys create", "--bogus"),
            (["keys", "create", "--bogus"], "keys create", "--bogus"),  # not "--name is required"
            (["keys", "create"], "keys create", "--name"),
            (["keys", "create", "--name", "x", "--expires-in", "1d",
              "--expires-at", "2030-01-01T00:00:00Z"], "keys create", "excludes"),
            (["keys", "create", "--name", "x", "--rate", "5/fortnight"], "keys create", "--rate"),
            (["keys", "create", "--name", "x", "--burst", "5"], "keys create", "--rate"),
            (["keys", "create", "--name", "x", "--allow-ip", "300.1.1.1"], "keys create",
             "--allow-ip"),
            (["keys", "create", "--name", "x", "--meta", "novalue"], "keys create", "--meta"),
            (["keys", "list", "--status", "weird"], "keys list", "--status"),
            (["keys", "update", "key_x", "--enable", "--disable"], "keys update", "excludes"),
            (["keys", "rotate"], "keys rotate", "ID"),
            (["keys", "rotate", "key_x", "--grace", "soon"], "keys rotate", "--grace"),
            (["keys", "show", "a", "b"], "keys show", "'b'"),
            (["keys", "import"], "keys import", "--file"),
            (["keys", "import", "--file", "/nonexistent/keys.jsonl"], "keys import", "--file"),
            (["keys", "frobnicate"], "keys", "unknown command 'frobnicate'"),
            (["keys"], "keys", "command is required"),
            (["audit", "list", "--limit", "0"], "audit list", "--limit"),
            (["serve", "extra"], "serve", "'extra'"),
            (["check-config", "--verbose"], "check-config", "--verbose"),
            (["frobnicate"], None, "unknown command 'frobnicate'"),
            ([], None, "command is required"),
        ]
        for args, command, detail in cases:
            with self.subTest(args=args):
                p = run(*args, "-c", self.g.config_path) if args else run()
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertEqual(p.stdout, "")
                lines = p.stderr.splitlines()
                self.assertEqual(len(lines), 1, p.stderr)
                self.assertTrue(lines[0].startswith("error: "), lines[0])
                if command:
                    self.assertTrue(lines[0].startswith(f"error: {command}: "), lines[0])
                    self.assertIn(f"keygate {command} --help", lines[0])
                self.assertIn(detail, lines[0])
        self.assertUntouched()

    def test_runtime_failures_exit_1_config_errors_2(self):
        p = run("keys", "show", "key_00000000000000000000", "-c", self.g.config_path)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(len(p.stderr.splitlines()), 1)
        self.assertTrue(p.stderr.startswith("error: "), p.stderr)
        bad = os.path.join(self.g.tmp, "bad.yaml")
        with open(bad, "w") as f:
            f.write("listen: [not, an, address]\n")
        p = run("keys", "list", "-c", bad)
        self.assertEqual(p.returncode, 2)
        self.assertTrue(p.stderr.splitlines()[-1].startswith("error: "), p.stderr)
        p = run("check-config", "-c", bad)
        self.assertEqual(p.returncode, 2)
        self.assertIn("bad.yaml:1:", p.stderr)
        self.assertEqual(run("check-config", "-c", self.g.config_path).stdout, "config OK\n")

    def test_config_flag_before_or_after_the_subcommand_and_from_the_environment(self):
        cfg = self.g.config_path
        a = json.loads(run("-c", cfg, "keys", "create", "--name", "a", "--json").stdout)
        b = json.loads(run("--config", cfg, "keys", "create", "--json", "--name", "b").stdout)
        c = json.loads(run("keys", "create", "--name", "c", "--json", "-c", cfg).stdout)
        d = json.loads(run("keys", "create", "--name", "d", "--json", f"--config={cfg}").stdout)
        e = json.loads(run("keys", "-c", cfg, "create", "--name", "e", "--json").stdout)
        want = sorted(k["id"] for k in (a, b, c, d, e))
        for args, env in ((["keys", "list", "--json", "-c", cfg], None),
                          (["-c", cfg, "keys", "list", "--json"], None),
                          (["keys", "list", "--json"], {"KEYGATE_CONFIG": cfg})):
            with self.subTest(args=args):
                p = run(*args, env=env)
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertEqual(sorted(k["id"] for k in json.loads(p.stdout)), want)
        # the flag beats the environment
        p = run("keys", "list", "-c", cfg, env={"KEYGATE_CONFIG": "/nonexistent.yaml"})
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(run("-c", cfg, "version").stdout, run("--version").stdout)
        self.assertRegex(run("version").stdout, r"^keygate \d+\.\d+\.\d+\n$")

    def test_serve_with_config_before_the_subcommand(self):
        out = open(os.path.join(self.g.tmp, "serve.log"), "wb")
        self.addCleanup(out.close)
        proc = subprocess.Popen([KEYGATE, "--config", self.g.config_path, "serve"], stdout=out,
                                stderr=subprocess.STDOUT)
        try:
            def live():
                with open(os.path.join(self.g.tmp, "serve.log"), errors="replace") as f:
                    self.g.port = bound_ports(f.read())[0]  # the config listens on port 0
                if self.g.port is None:
                    return False
                try:
                    return proc.poll() is None and self.g.request("GET", "/live").status == 200
                except OSError:
                    return False
            ok = wait_until(live, timeout=15)
            self.assertTrue(ok, "serve did not come up with --config before the subcommand")
            self.assertTrue(os.path.exists(self.g.config["store"]["sqlite"]))
        finally:
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=20), 0)

    def test_audit_list(self):
        g = self.g
        k = g.create_key("--name", "first")
        g.cli("keys", "update", k["id"], "--name", "renamed")
        rotated = json.loads(g.cli("keys", "rotate", k["id"], "--json").stdout)
        g.cli("keys", "revoke", rotated["id"])
        events = json.loads(g.cli("audit", "list", "--json").stdout)
        self.assertEqual([(e["action"], e["key_id"]) for e in events],
                         [("revoke", rotated["id"]), ("rotate", k["id"]), ("update", k["id"]),
                          ("create", k["id"])])
        for e in events:
            self.assertEqual(e["actor"], "cli")
            self.assertRegex(e["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
            self.assertIsInstance(e["details"], dict)
            self.assertIsInstance(e["id"], int)
        self.assertEqual(events[1]["details"]["new_key_id"], rotated["id"])
        self.assertEqual(events[2]["details"]["fields"], ["name"])
        self.assertEqual(json.loads(g.cli("audit", "list", "--json", "--limit", "2").stdout),
                         events[:2])
        text = g.cli("audit", "list").stdout
        self.assertIn("ACTION", text.splitlines()[0])
        self.assertEqual(len(text.strip().splitlines()), 5)
        self.assertNotIn(k["key"], text)

    def test_export(self):
        g = self.g
        a = g.create_key("--name", "a", "--owner", "acme", "--scopes", "read,write",
                         "--rate", "5/1m", "--meta", "team=core")
        b = g.create_key("--name", "b")
        g.cli("keys", "revoke", b["id"])
        lines = [json.loads(x) for x in g.cli("keys", "export").stdout.splitlines()]
        self.assertEqual(sorted(x["id"] for x in lines), sorted([a["id"], b["id"]]))  # default: all
        self.assertEqual(json.loads(g.cli("keys", "export", "--json").stdout), lines)
        active = json.loads(g.cli("keys", "export", "--json", "--status", "active").stdout)
        self.assertEqual([x["id"] for x in active], [a["id"]])
        x = next(x for x in lines if x["id"] == a["id"])
        shown = json.loads(g.cli("keys", "show", a["id"], "--json").stdout)
        self.assertEqual(x, shown)  # the key object of SPEC §4
        text = g.cli("keys", "export").stdout
        for k in (a, b):
            self.assertNotIn(k["key"], text)
            self.assertNotIn(hashlib.sha256(k["key"].encode()).hexdigest(), text.lower())
        self.assertNotIn('"key"', text)
        self.assertNotIn("hash", text)


if __name__ == "__main__":
    unittest.main()
