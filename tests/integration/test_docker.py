"""The image recipe (issue 7). No Docker engine runs on the build machines, so
the Dockerfile's build stage is one script that CI runs natively; this checks
the Dockerfile calls exactly that script and keeps the runtime image's promises."""
import http.client
import os
import re
import subprocess
import tempfile
import unittest

from harness import KEYGATE, GatewayTest, free_port

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
        # The profile-guided build: both passes and the training in between.
        self.assertIn('bash "$SRC/scripts/pgo-build.sh"', text)
        with open(os.path.join(ROOT, "scripts", "pgo-build.sh")) as f:
            pgo = f.read()
        self.assertEqual(pgo.count("cmake --build"), 2)
        self.assertIn("scripts/pgo-train.py", pgo)
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
    """The image's baked-in config takes the admin and metrics addresses from the
    environment; the Kubernetes example gives Prometheus a metrics port of its own."""

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

    def test_image_config_metrics_listener_from_the_environment(self):
        path = os.path.join(ROOT, "docker", "keygate.sidecar.yaml")
        port = free_port()
        g = self.gateway(example=path, env={"KEYGATE_METRICS_LISTEN": f"127.0.0.1:{port}"})
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            c.request("GET", "/metrics")  # no token
            r = c.getresponse()
            self.assertEqual(r.status, 200)
            self.assertIn("keygate_build_info", r.read().decode())
        finally:
            c.close()
        self.assertEqual(g.admin("GET", "/v1/api-keys").status, 200)

    def test_k8s_example_is_scrapeable_and_its_config_valid(self):
        with open(os.path.join(ROOT, "docker", "k8s-sidecar.yaml")) as f:
            text = f.read()
        block = re.search(r"keygate\.yaml: \|\n((?:    .*\n|\n)+)", text).group(1)
        config = "".join(line[4:] + "\n" for line in block.splitlines())
        # Prometheus scrapes metrics.listen (no token, nothing else there); admin stays on loopback.
        self.assertRegex(config, r'admin: \{listen: "127\.0\.0\.1:8081"')
        self.assertIn('metrics: {listen: "0.0.0.0:9090"}', config)
        self.assertIn("- {name: metrics, containerPort: 9090}", text)
        self.assertIn('prometheus.io/port: "9090"', text)
        self.assertIn("prometheus.io/path: /metrics", text)
        service = text.split("kind: Service")[1].split("---")[0]
        self.assertNotIn("9090", service)  # clients never reach the metrics port
        self.assertNotIn("8081", service)
        with tempfile.TemporaryDirectory() as tmp:
            cfg = os.path.join(tmp, "keygate.yaml")
            with open(cfg, "w") as f:
                f.write(config)
            p = subprocess.run([KEYGATE, "check-config", "-c", cfg], capture_output=True,
                               text=True, timeout=60)
        self.assertEqual((p.returncode, p.stdout), (0, "config OK\n"), p.stderr)


class ScaleDeployment(unittest.TestCase):
    """docker/compose.scale.yaml and docker/k8s-scale.yaml (no Docker engine or
    cluster here: their keygate configs go through check-config with the
    environment they get, and the manifests are checked against each other)."""

    SECRETS = {"KEYGATE_ADMIN_TOKEN": "t" * 32, "POSTGRES_PASSWORD": "pg-pw",
               "REDIS_PASSWORD": "redis-pw"}

    def load(self, name):
        import yaml  # python3-yaml (scripts/install-deps.sh)
        with open(os.path.join(ROOT, "docker", name)) as f:
            return [d for d in yaml.safe_load_all(f) if d]

    def check_config(self, path, env):
        clean = {k: v for k, v in os.environ.items() if not k.startswith("KEYGATE_")}
        return subprocess.run([KEYGATE, "check-config", "-c", path], capture_output=True,
                               text=True, timeout=60, env={**clean, **env})

    @staticmethod
    def variables(text):
        """${VAR} (required) and ${VAR:-default} (optional) names in a config."""
        found = re.findall(r"\$\{(\w+)(:-)?", text)
        return ({n for n, d in found if not d}, {n for n, d in found if d})

    def test_compose_scale(self):
        (compose,) = self.load("compose.scale.yaml")
        services = compose["services"]
        keygates = {n: s for n, s in services.items() if n.startswith("keygate-")}
        apis = {n for n in services if n.startswith("api-")}
        self.assertEqual((len(keygates), len(apis)), (3, 3))
        self.assertIn("postgres", services["db"]["image"])
        self.assertIn("redis", services["redis"]["image"])
        path = os.path.join(ROOT, "docker", "keygate.scale.yaml")
        with open(path) as f:
            text = f.read()
        required, _ = self.variables(text)
        self.assertEqual(required, set(self.SECRETS))  # secrets only; everything else defaults
        self.assertIn("${KEYGATE_PG_HOST:-db}", text)  # the compose services' names
        self.assertIn("${KEYGATE_REDIS_HOST:-redis}", text)
        # The secrets come from the env file the database and Redis read too.
        self.assertIn("$REDIS_PASSWORD", " ".join(services["redis"]["command"]))
        self.assertEqual(services["redis"]["env_file"], services["db"]["env_file"])
        upstreams = set()
        for name, s in keygates.items():
            self.assertEqual(s["image"], "keygate:latest")
            self.assertEqual(s["env_file"], services["db"]["env_file"])
            # Mounted where the image's KEYGATE_CONFIG points.
            self.assertIn("./keygate.scale.yaml:/etc/keygate/keygate.yaml:ro", s["volumes"])
            upstream = s["environment"]["KEYGATE_UPSTREAM"]
            self.assertRegex(upstream, r"^http://api-\d:9000$")
            self.assertIn(upstream[7:-5], apis)
            upstreams.add(upstream)
            self.assertNotIn("KEYGATE_ADMIN_LISTEN", s["environment"])  # default: 0.0.0.0:8081
            admin = [p for p in s["ports"] if p.endswith(":8081")]
            self.assertEqual(len(admin), 1)
            self.assertTrue(admin[0].startswith("127.0.0.1:"), admin)  # this host only
        self.assertEqual(len(upstreams), 3)  # each keygate in front of its own API
        p = self.check_config(path, self.SECRETS)
        self.assertEqual((p.returncode, p.stdout), (0, "config OK\n"), p.stderr)
        # Without its secrets a replica refuses to start (never without a token or limits).
        for missing in self.SECRETS:
            env = {k: v for k, v in self.SECRETS.items() if k != missing}
            p = self.check_config(path, env)
            self.assertEqual(p.returncode, 2, missing)
            self.assertIn(missing, p.stderr)

    def test_k8s_scale(self):
        docs = {d["kind"]: d for d in self.load("k8s-scale.yaml")}
        config = docs["ConfigMap"]["data"]["keygate.yaml"]
        deploy = docs["Deployment"]
        self.assertEqual(deploy["spec"]["replicas"], 3)
        pod = deploy["spec"]["template"]
        containers = {c["name"]: c for c in pod["spec"]["containers"]}
        self.assertEqual(set(containers), {"api", "keygate"})
        kg = containers["keygate"]
        (compose,) = self.load("compose.scale.yaml")
        self.assertEqual(kg["image"], compose["services"]["keygate-1"]["image"])
        # Every required ${VAR} of the config is set from the Secret, and nothing else is.
        required, _ = self.variables(config)
        env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in kg["env"]}
        self.assertEqual(set(env), required)
        self.assertEqual(required, {"KEYGATE_PG_URL", "KEYGATE_REDIS_URL", "KEYGATE_ADMIN_TOKEN"})
        self.assertEqual({r["name"] for r in env.values()}, {"keygate-scale"})
        # The config is mounted where the image looks for it.
        (mount,) = kg["volumeMounts"]
        (volume,) = pod["spec"]["volumes"]
        self.assertEqual((mount["mountPath"], mount["name"]), ("/etc/keygate", volume["name"]))
        self.assertEqual(volume["configMap"]["name"], docs["ConfigMap"]["metadata"]["name"])
        ports = {p["name"]: p["containerPort"] for p in kg["ports"]}
        self.assertEqual(ports, {"http": 8080, "admin": 8081})
        self.assertEqual(kg["readinessProbe"]["httpGet"], {"path": "/ready", "port": "http"})
        self.assertEqual(kg["livenessProbe"]["httpGet"], {"path": "/live", "port": "http"})
        ann = pod["metadata"]["annotations"]
        self.assertEqual((ann["prometheus.io/port"], ann["prometheus.io/path"]), ("8081", "/metrics"))
        service = docs["Service"]["spec"]
        self.assertEqual(service["selector"], pod["metadata"]["labels"])
        self.assertEqual([p["targetPort"] for p in service["ports"]], ["http"])
        # The config as the pod gets it: check-config with the Secret's values.
        with tempfile.TemporaryDirectory() as tmp:
            cfg = os.path.join(tmp, "keygate.yaml")
            with open(cfg, "w") as f:
                f.write(config)
            secrets = {"KEYGATE_PG_URL": "postgresql://keygate:pw@postgres:5432/keygate",
                       "KEYGATE_REDIS_URL": "redis://:pw@redis:6379/0",
                       "KEYGATE_ADMIN_TOKEN": "t" * 32}
            p = self.check_config(cfg, secrets)
            self.assertEqual((p.returncode, p.stdout), (0, "config OK\n"), p.stderr)
            self.assertIn(":8080", config)
            self.assertIn("0.0.0.0:8081", config)
            p = self.check_config(cfg, {**secrets, "KEYGATE_REDIS_URL": "redis://:pw@redis:6379/x"})
            self.assertEqual(p.returncode, 2)
            self.assertNotIn(":pw@", p.stdout + p.stderr)  # a bad URL is reported without its password


if __name__ == "__main__":
    unittest.main()
