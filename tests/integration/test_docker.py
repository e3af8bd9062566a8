"""The image recipe (issue 7). No Docker engine runs on the build machines, so
the Dockerfile's build stage is one script that CI runs natively; this checks
the Dockerfile calls exactly that script and keeps the runtime image's promises."""
import os
import re
import subprocess
import tempfile
import unittest

from harness import KEYGATE, GatewayTest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def instructions(path):
    """Dockerfile instructions as (KEYWORD, argument) with continuations joined."""
    out, cur = [], ""
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not cur and (not line.strip() or line.lstrip().startswith("#")):
                continue
            cur += line.rstrip("\\").strip() + " "
            if not line.endswith("\\"):
                kw, _, arg = cur.strip().partition(" ")
                out.append((kw.upper(), arg.strip()))
                cur = ""
    return out


class Dockerfile(unittest.TestCase):
    def setUp(self):
        self.ins = instructions(os.path.join(ROOT, "docker", "Dockerfile"))
        stages = [i for i, (k, _) in enumerate(self.ins) if k == "FROM"]
        self.assertEqual(len(stages), 2, "multi-stage: build and runtime")
        self.build = self.ins[stages[0]:stages[1]]
        self.runtime = self.ins[stages[1]:]

    def test_build_stage_runs_exactly_the_native_build_script(self):
        self.assertEqual(self.build[0], ("FROM", "debian:bookworm-slim AS build"))
        runs = [a for k, a in self.build if k == "RUN"]
        self.assertEqual(runs, ["bash docker/build.sh /out"])
        script = os.path.join(ROOT, "docker", "build.sh")
        self.assertTrue(os.access(script, os.X_OK))
        with open(script) as f:
            text = f.read()
        self.assertIn('bash "$SRC/scripts/install-deps.sh"', text)  # the project's own installer
        self.assertIn("cmake --build", text)
        for k, a in self.ins:  # no compile step hides in the Dockerfile itself
            self.assertNotRegex(a, r"\b(cmake|g\+\+|ninja|make)\b", (k, a))

    def test_runtime_stage(self):
        self.assertEqual(self.runtime[0], ("FROM", "debian:bookworm-slim"))
        d = {}
        for k, a in self.runtime:
            d.setdefault(k, []).append(a)
        self.assertIn("bash /tmp/install-deps.sh --runtime", d["RUN"][0])
        self.assertIn("--from=build /out/ /", d["COPY"])
        user = d["USER"][-1]
        self.assertNotIn(user.split(":")[0], ("root", "0"))
        self.assertEqual(d["VOLUME"], ['["/data"]'])
        self.assertIn("/live", d["HEALTHCHECK"][0])
        self.assertEqual(d["ENTRYPOINT"], ['["keygate"]'])
        self.assertEqual(d["CMD"], ['["serve"]'])
        env = " ".join(d["ENV"])
        self.assertIn("KEYGATE_CONFIG=/etc/keygate/keygate.yaml", env)
        self.assertIn("KEYGATE_DB=/data/keygate.db", env)

    def test_runtime_packages_are_libraries_only(self):
        with open(os.path.join(ROOT, "scripts", "install-deps.sh")) as f:
            text = f.read()
        runtime = re.search(r"runtime_pkgs=\(([^)]*)\)", text).group(1).split()
        self.assertFalse([p for p in runtime if p.endswith("-dev") or p in ("g++", "cmake")])

    def test_compose_publishes_only_keygate(self):
        with open(os.path.join(ROOT, "docker", "compose.yaml")) as f:
            text = f.read()
        api = text.split("keygate:")[0]
        self.assertNotIn("ports:", api)
        self.assertIn('"127.0.0.1:8081:8081"', text)
        self.assertIn("env_file:", text)


class SidecarConfig(GatewayTest):
    """The image's baked-in config takes the admin address from the environment;
    the Kubernetes example binds admin where Prometheus can scrape /metrics."""

    def test_image_config_admin_listen_comes_from_the_environment(self):
        path = os.path.join(ROOT, "docker", "keygate.sidecar.yaml")
        with open(path) as f:
            text = f.read()
        # Default: every interface of the container (its loopback is unreachable from outside).
        self.assertIn('listen: "${KEYGATE_ADMIN_LISTEN:-0.0.0.0:8081}"', text)
        self.assertIn('token: "${KEYGATE_ADMIN_TOKEN:-}"', text)
        # Run the image's config unchanged, its addresses set through the environment.
        g = self.gateway(example=path)
        r = g.request("GET", "/metrics", admin=True)
        self.assertEqual(r.status, 200)
        self.assertIn("keygate_", r.body.decode())
        self.assertEqual(g.request("GET", "/v1/api-keys", admin=True).status, 401)  # token needed
        self.assertEqual(g.admin("GET", "/v1/api-keys").status, 200)

    def test_image_config_without_a_token_has_no_admin_listener(self):
        path = os.path.join(ROOT, "docker", "keygate.sidecar.yaml")
        g = self.gateway(example=path, start=False)
        g.env["KEYGATE_ADMIN_TOKEN"] = ""
        g.start()
        with self.assertRaises(OSError):
            g.request("GET", "/metrics", admin=True, timeout=2)

    def test_k8s_example_is_scrapeable_and_its_config_valid(self):
        with open(os.path.join(ROOT, "docker", "k8s-sidecar.yaml")) as f:
            text = f.read()
        block = re.search(r"keygate\.yaml: \|\n((?:    .*\n|\n)+)", text).group(1)
        config = "".join(line[4:] + "\n" for line in block.splitlines())
        self.assertRegex(config, r'admin: \{listen: "0\.0\.0\.0:8081"')
        self.assertIn("- {name: admin, containerPort: 8081}", text)
        self.assertIn('prometheus.io/port: "8081"', text)
        self.assertIn("prometheus.io/path: /metrics", text)
        service = text.split("kind: Service")[1].split("---")[0]
        self.assertNotIn("8081", service)  # clients never reach the admin port
        with tempfile.TemporaryDirectory() as tmp:
            cfg = os.path.join(tmp, "keygate.yaml")
            with open(cfg, "w") as f:
                f.write(config)
            p = subprocess.run([KEYGATE, "check-config", "-c", cfg], capture_output=True,
                               text=True, timeout=60)
        self.assertEqual((p.returncode, p.stdout), (0, "config OK\n"), p.stderr)


if __name__ == "__main__":
    unittest.main()
