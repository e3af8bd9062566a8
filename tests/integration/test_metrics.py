"""Metrics (SPEC §10, issue 15): /metrics parsed by the rules of the Prometheus
text exposition format, the names and types SPEC asks for, metrics.listen, the
reload and certificate metrics, and the Grafana dashboard and alert rules in
deploy/ checked against the names the real binary exports."""
import datetime
import http.client
import json
import math
import os
import re
import shutil
import signal
import ssl
import subprocess
import tempfile
import unittest

import yaml

from harness import ADMIN_TOKEN, KEYGATE, GatewayTest, free_port, wait_until

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
DASHBOARD = os.path.join(ROOT, "deploy", "grafana-dashboard.json")
ALERTS = os.path.join(ROOT, "deploy", "prometheus-alerts.yaml")

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"


# --- the text exposition format (0.0.4) ----------------------------------------------------

class Family:
    def __init__(self, name):
        self.name, self.type, self.help, self.samples = name, None, None, []


def parse_labels(text, where):
    """`a="x",b="y\\"z"` -> dict; escapes \\\\, \\" and \\n only."""
    labels, i = {}, 0
    while i < len(text):
        m = re.compile(LABEL + r'="').match(text, i)
        if not m:
            raise AssertionError(f"{where}: bad label at {text[i:]!r}")
        name, i, value = m.group(0)[:-2], m.end(), ""
        while True:
            if i >= len(text):
                raise AssertionError(f"{where}: unterminated label value")
            c = text[i]
            if c == "\\":
                esc = text[i + 1:i + 2]
                if esc not in ('\\', '"', 'n'):
                    raise AssertionError(f"{where}: bad escape \\{esc}")
                value += "\n" if esc == "n" else esc
                i += 2
            elif c == '"':
                i += 1
                break
            elif c == "\n":
                raise AssertionError(f"{where}: raw newline in a label value")
            else:
                value += c
                i += 1
        if name in labels:
            raise AssertionError(f"{where}: label {name} twice")
        labels[name] = value
        if i < len(text):
            if text[i] != ",":
                raise AssertionError(f"{where}: expected ',' at {text[i:]!r}")
            i += 1
    return labels


def split_labels(text, where):
    """The text between the braces of a sample line (quotes may hold '}')."""
    i, quoted = 0, False
    while i < len(text):
        if quoted and text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            quoted = not quoted
        elif text[i] == "}" and not quoted:
            return text[:i], text[i + 1:]
        i += 1
    raise AssertionError(f"{where}: no closing brace")


def parse_value(s, where):
    if s in ("+Inf", "-Inf", "NaN"):
        return float(s.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", s):
        raise AssertionError(f"{where}: bad value {s!r}")
    return float(s)


def family_of(sample_name, families):
    if sample_name in families:
        return families[sample_name]
    for suffix in ("_bucket", "_sum", "_count"):
        base = sample_name[: -len(suffix)]
        if sample_name.endswith(suffix) and base in families and \
                families[base].type in ("histogram", "summary"):
            if suffix == "_bucket" and families[base].type != "histogram":
                break
            return families[base]
    return None


def parse_exposition(text):
    """Families by name, checked line by line against the format's rules."""
    assert text.endswith("\n"), "the exposition ends with a newline"
    families, order, seen_series = {}, [], set()
    current = None
    for n, line in enumerate(text.split("\n")[:-1], 1):
        where = f"line {n}: {line!r}"
        if line.startswith("#"):
            m = re.fullmatch(r"# (HELP|TYPE) (" + NAME + r") (.*)", line)
            if not m:
                continue  # a plain comment
            kind, name, rest = m.groups()
            fam = families.get(name)
            if fam is None:
                fam = families[name] = Family(name)
                order.append(name)
            if fam.samples:
                raise AssertionError(f"{where}: {kind} after the family's samples")
            if kind == "TYPE":
                if fam.type is not None:
                    raise AssertionError(f"{where}: second TYPE")
                if rest not in ("counter", "gauge", "histogram", "summary", "untyped"):
                    raise AssertionError(f"{where}: unknown type")
                fam.type = rest
            else:
                if fam.help is not None:
                    raise AssertionError(f"{where}: second HELP")
                fam.help = rest
            current = fam
            continue
        if not line.strip():
            raise AssertionError(f"{where}: blank line")
        m = re.match(r"(" + NAME + r")", line)
        if not m:
            raise AssertionError(f"{where}: no metric name")
        name, rest = m.group(1), line[m.end():]
        labels = {}
        if rest.startswith("{"):
            inner, rest = split_labels(rest[1:], where)
            labels = parse_labels(inner, where)
        parts = rest.split()
        if not rest.startswith(" ") or len(parts) not in (1, 2):
            raise AssertionError(f"{where}: expected ' value [timestamp]'")
        value = parse_value(parts[0], where)
        fam = family_of(name, families)
        if fam is None or fam.type is None:
            raise AssertionError(f"{where}: sample of an untyped family (no TYPE line before it)")
        if fam is not current:
            raise AssertionError(f"{where}: family {fam.name} is not contiguous")
        key = (name, tuple(sorted(labels.items())))
        if key in seen_series:
            raise AssertionError(f"{where}: duplicate series")
        seen_series.add(key)
        fam.samples.append((name, labels, value))
    for fam in families.values():
        check_family(fam)
    return families


def check_family(fam):
    if fam.type is None:
        raise AssertionError(f"{fam.name}: HELP without TYPE")
    names = {s[0] for s in fam.samples}
    if fam.type == "counter":
        assert fam.name.endswith("_total"), f"counter {fam.name} must end in _total"
        assert names <= {fam.name}, (fam.name, names)
        assert all(v >= 0 for _, _, v in fam.samples), fam.name
    elif fam.type == "gauge":
        assert not fam.name.endswith("_total"), f"gauge {fam.name} must not end in _total"
        assert names <= {fam.name}, (fam.name, names)
    elif fam.type == "histogram":
        assert not fam.name.endswith("_total"), fam.name
        series = {}
        for name, labels, value in fam.samples:
            rest = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
            s = series.setdefault(rest, {"buckets": [], "sum": None, "count": None})
            if name == fam.name + "_bucket":
                assert "le" in labels, f"{fam.name}_bucket without le"
                s["buckets"].append((parse_value(labels["le"], fam.name), value))
            elif name == fam.name + "_sum":
                s["sum"] = value
            elif name == fam.name + "_count":
                s["count"] = value
            else:
                raise AssertionError(f"{name} in histogram {fam.name}")
        for rest, s in series.items():
            les = [le for le, _ in s["buckets"]]
            counts = [c for _, c in s["buckets"]]
            assert les == sorted(les) and len(set(les)) == len(les), f"{fam.name}: le not ascending"
            assert les and math.isinf(les[-1]), f"{fam.name}: buckets must end in +Inf"
            assert counts == sorted(counts), f"{fam.name}: buckets are not cumulative"
            assert s["count"] == counts[-1], f"{fam.name}: _count != +Inf bucket"
            assert s["sum"] is not None and s["sum"] >= 0, f"{fam.name}: _sum missing"
    assert fam.help, f"{fam.name}: HELP missing"


class ParserSelfTest(unittest.TestCase):
    """The parser above rejects what the format forbids (it would pass anything otherwise)."""

    def test_rejects_violations(self):
        ok = "# HELP a_total x\n# TYPE a_total counter\na_total{l=\"q\\\"}\\\\\"} 1\n"
        self.assertEqual(parse_exposition(ok)["a_total"].samples[0][1], {"l": 'q"}\\'})
        bad = {
            "untyped sample": "a 1\n",
            "counter without _total": "# HELP a x\n# TYPE a counter\na 1\n",
            "gauge with _total": "# HELP a_total x\n# TYPE a_total gauge\na_total 1\n",
            "duplicate": "# HELP a x\n# TYPE a gauge\na 1\na 2\n",
            "TYPE after samples": "# HELP a x\na 1\n# TYPE a gauge\n",
            "bad escape": "# HELP a x\n# TYPE a gauge\na{l=\"\\x\"} 1\n",
            "not cumulative": "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\n"
                              "h_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
            "no +Inf": "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
            "le descending": "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"1\"} 1\n"
                             "h_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
            "interleaved": "# HELP a x\n# TYPE a gauge\n# HELP b x\n# TYPE b gauge\nb 1\na 1\n",
        }
        for what, text in bad.items():
            with self.subTest(what):
                with self.assertRaises(AssertionError):
                    parse_exposition(text)


# --- names in PromQL -------------------------------------------------------------------------

PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
                "group_right", "bool", "offset", "inf", "nan"}
NOT_EXPORTED = {"up"}  # made by Prometheus for every scrape target


def promql_metric_names(expr):
    """Metric names in a PromQL expression: identifiers followed by `{`, `[`,
    whitespace, an operator, `)` or the end, not by `(` (functions); label
    names, strings, durations and grouping clauses are removed first."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)   # strings
    e = re.sub(r"\{[^}]*\}", "{}", e)                                      # label matchers
    e = re.sub(r"\[[^\]]*\]", "[]", e)                                     # ranges, subqueries
    # grouping clauses go whole: `sum by (le) (…)` reads as the function call `sum (…)`
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w:.$])(" + NAME + r")(?=\s*(?:[{\[)+\-*/%^<>=!,]|\s|$))", e):
        word = m.group(1)
        if word.lower() in PROMQL_WORDS:
            continue
        if re.match(r"\s*\(", e[m.end():]):
            continue
        names.add(word)
    return names


def exported(name, families):
    if name in families:
        return True
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and families.get(name[: -len(suffix)]) and \
                families[name[: -len(suffix)]].type == "histogram":
            return True
    return False


def dashboard_exprs():
    with open(DASHBOARD) as f:
        dash = json.load(f)
    exprs = []
    for panel in dash["panels"]:
        for t in panel.get("targets", []):
            exprs.append((panel["title"], t["expr"]))
    for a in dash.get("annotations", {}).get("list", []):
        if "expr" in a:
            exprs.append(("annotation " + a["name"], a["expr"]))
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("definition", "")
        m = re.match(r"label_values\((.*),\s*\w+\)$", q)
        if m:
            exprs.append(("variable " + v["name"], m.group(1)))
    return dash, exprs


def alert_exprs():
    with open(ALERTS) as f:
        doc = yaml.safe_load(f)
    return doc, [(r["alert"], r["expr"]) for g in doc["groups"] for r in g["rules"]]


class PromqlNames(unittest.TestCase):
    def test_extractor(self):
        self.assertEqual(promql_metric_names(
            'histogram_quantile(0.99, sum by (le, instance) (rate(a_bucket{job=~"$job",x="y{z"}[5m])))'
            ' / on (instance) group_left b_total - c offset 5m > 2 * d and bool e'),
            {"a_bucket", "b_total", "c", "d", "e"})
        self.assertEqual(promql_metric_names("up{job=\"k\"} == 0 or absent(up)"), {"up"})
        self.assertEqual(promql_metric_names("x - time() < 14 * 86400"), {"x"})


# --- the real binary --------------------------------------------------------------------------

def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_cert(d, name, days):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", str(days), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1", cwd=d)
    out = subprocess.run(["openssl", "x509", "-in", f"{name}.pem", "-noout", "-enddate"], cwd=d,
                         check=True, capture_output=True, text=True).stdout
    end = datetime.datetime.strptime(out.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y %Z")
    return int(end.replace(tzinfo=datetime.timezone.utc).timestamp())


class Metrics(GatewayTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.dir = tempfile.mkdtemp(prefix="kg-metrics-")
        cls.expiry = make_cert(cls.dir, "cert", 40)
        cls.renewed_expiry = make_cert(cls.dir, "renewed", 90)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)
        super().tearDownClass()

    def tls_gateway(self, extra=None):
        self.metrics_port = free_port()
        cfg = {"tls": {"cert": os.path.join(self.dir, "cert.pem"), "key": os.path.join(self.dir, "cert.key")},
               "metrics": {"listen": f"127.0.0.1:{self.metrics_port}"},
               "plans": {"default": {"rate": {"requests": 2, "period": "1h"}}}}
        cfg.update(extra or {})
        return self.gateway(cfg)

    def https(self, g, path, headers=None, cert="cert.pem"):
        ctx = ssl.create_default_context(cafile=os.path.join(self.dir, cert))
        c = http.client.HTTPSConnection("127.0.0.1", g.port, context=ctx, timeout=10)
        try:
            c.request("GET", path, headers=headers or {})
            r = c.getresponse()
            r.read()
            return r.status
        finally:
            c.close()

    def scrape(self, port=None, path="/metrics", method="GET", headers=None):
        c = http.client.HTTPConnection("127.0.0.1", port or self.metrics_port, timeout=10)
        try:
            c.request(method, path, headers=headers or {})
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode()
        finally:
            c.close()

    def families(self, g):
        r = g.request("GET", "/metrics", admin=True)
        self.assertEqual(r.status, 200)
        return parse_exposition(r.body.decode())

    def value(self, fams, name, **labels):
        fam = family_of(name, fams)
        self.assertIsNotNone(fam, name)
        for n, l, v in fam.samples:
            if n == name and l == labels:
                return v
        self.fail(f"no sample {name}{labels}")

    def test_exposition_follows_the_format_and_spec_names(self):
        g = self.tls_gateway()
        before = self.families(g)
        series_before = {(n, tuple(sorted(l.items()))) for f in before.values() for n, l, _ in f.samples}
        k = g.create_key("--name", "m")
        self.assertEqual(self.https(g, "/x", {"X-Api-Key": k["key"]}), 200)
        self.assertEqual(self.https(g, "/x"), 401)
        for _ in range(2):
            self.https(g, "/x", {"X-Api-Key": k["key"]})  # the third request of 2/1h: 429
        fams = self.families(g)

        # Series of known label values exist from the start: traffic adds none.
        series_after = {(n, tuple(sorted(l.items()))) for f in fams.values() for n, l, _ in f.samples}
        self.assertEqual(series_after - series_before, set())
        self.assertEqual(self.value(before, "keygate_requests_total", **{"class": "4xx", "reason": "rate_limit"}), 0)
        self.assertEqual(self.value(fams, "keygate_requests_total", **{"class": "4xx", "reason": "rate_limit"}), 1)
        self.assertEqual(self.value(fams, "keygate_requests_total", **{"class": "2xx", "reason": "none"}), 2)
        self.assertEqual(self.value(fams, "keygate_auth_failures_total", reason="missing"), 1)
        self.assertEqual(self.value(fams, "keygate_rate_limited_total"), 1)

        types = {name: f.type for name, f in fams.items()}
        for name, t in {
            "keygate_requests_total": "counter", "keygate_auth_failures_total": "counter",
            "keygate_rate_limited_total": "counter", "keygate_upstream_errors_total": "counter",
            "keygate_request_duration_seconds": "histogram", "keygate_upstream_duration_seconds": "histogram",
            "keygate_keys_active": "gauge", "keygate_keys_loaded": "gauge", "keygate_open_connections": "gauge",
            "keygate_store_queries_total": "counter", "keygate_store_up": "gauge",
            "keygate_build_info": "gauge", "keygate_config_generation": "gauge",
            "keygate_config_last_reload_successful": "gauge",
            "keygate_config_last_reload_success_timestamp_seconds": "gauge",
            "keygate_config_reloads_total": "counter",
            "keygate_tls_certificate_expiry_timestamp_seconds": "gauge",
            "process_cpu_seconds_total": "counter", "process_resident_memory_bytes": "gauge",
            "process_virtual_memory_bytes": "gauge", "process_open_fds": "gauge", "process_max_fds": "gauge",
            "process_start_time_seconds": "gauge",
        }.items():
            self.assertEqual(types.get(name), t, name)
        self.assertNotIn("keygate_keys_total", fams)  # a gauge: renamed keygate_keys_loaded
        self.assertEqual(self.value(fams, "keygate_keys_loaded"), 1)

        version = subprocess.run([KEYGATE, "version"], capture_output=True, text=True,
                                 timeout=30).stdout.split()[-1]
        (name, labels, v), = fams["keygate_build_info"].samples
        self.assertEqual((labels, v), ({"version": version}, 1))

        # Latency buckets reach the default upstream timeout (30 s) and beyond.
        les = [l["le"] for n, l, _ in fams["keygate_upstream_duration_seconds"].samples if n.endswith("_bucket")]
        self.assertIn("30", les)
        self.assertIn("60", les)

        # Process metrics are this process's.
        with open(f"/proc/{g.proc.pid}/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as f:
            btime = next(int(l.split()[1]) for l in f if l.startswith("btime"))
        start = btime + start_ticks / os.sysconf("SC_CLK_TCK")
        self.assertAlmostEqual(self.value(fams, "process_start_time_seconds"), start, delta=0.02)
        # (connections come and go between the scrape and this listing)
        self.assertAlmostEqual(self.value(fams, "process_open_fds"), len(os.listdir(f"/proc/{g.proc.pid}/fd")),
                               delta=4)
        self.assertGreater(self.value(fams, "process_resident_memory_bytes"), 1 << 20)
        self.assertGreater(self.value(fams, "process_max_fds"), 0)

        self.assertEqual(self.value(fams, "keygate_tls_certificate_expiry_timestamp_seconds"), self.expiry)

    def test_metrics_listener_serves_metrics_only_without_a_token(self):
        g = self.tls_gateway({"admin": {"token": ""}})  # no admin listener at all
        status, headers, body = self.scrape()
        self.assertEqual(status, 200)
        self.assertTrue(headers["content-type"].startswith("text/plain; version=0.0.4"))
        self.assertRegex(headers["date"], r"^\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT$")
        self.assertIn("keygate_build_info", parse_exposition(body))
        for path in ("/v1/api-keys", "/openapi.json", "/v1/audit-events", "/", "/metrics/x"):
            with self.subTest(path=path):
                s, _, b = self.scrape(path=path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
                self.assertEqual(s, 404, b)
                self.assertEqual(json.loads(b)["error"]["code"], "NOT_FOUND")
        s, h, _ = self.scrape(method="POST")
        self.assertEqual((s, h.get("allow")), (405, "GET"))
        with self.assertRaises(OSError):
            g.request("GET", "/metrics", admin=True, timeout=2)

    def test_reload_and_certificate_metrics(self):
        g = self.tls_gateway()
        fams = self.families(g)
        self.assertEqual(self.value(fams, "keygate_config_reloads_total", result="success"), 0)
        self.assertEqual(self.value(fams, "keygate_config_last_reload_successful"), 1)
        started = self.value(fams, "keygate_config_last_reload_success_timestamp_seconds")

        # A renewed certificate: SIGHUP re-reads it and the expiry follows.
        g.config["tls"] = {"cert": os.path.join(self.dir, "renewed.pem"), "key": os.path.join(self.dir, "renewed.key")}
        g.write_config()
        g.proc.send_signal(signal.SIGHUP)
        self.assertTrue(wait_until(lambda: g.metric("keygate_config_generation") == 2))
        fams = self.families(g)
        self.assertEqual(self.value(fams, "keygate_config_reloads_total", result="success"), 1)
        self.assertEqual(self.value(fams, "keygate_tls_certificate_expiry_timestamp_seconds"), self.renewed_expiry)
        self.assertGreaterEqual(self.value(fams, "keygate_config_last_reload_success_timestamp_seconds"), started)

        # A file that does not validate: counted as a failure, the config stays.
        with open(g.config_path, "w") as f:
            f.write("listen: [not, a, string]\n")
        g.proc.send_signal(signal.SIGHUP)
        self.assertTrue(wait_until(lambda: g.metric("keygate_config_reloads_total", 'result="failure"') == 1))
        self.assertEqual(g.metric("keygate_config_last_reload_successful"), 0)
        self.assertEqual(g.metric("keygate_config_generation"), 2)

        # A valid file whose certificate does not load: the whole reload is
        # rejected (the generation stays), counted as failed, and the running
        # certificate (and its expiry) stays.
        bad = os.path.join(self.dir, "garbage.pem")
        with open(bad, "w") as f:
            f.write("not a certificate\n")
        g.config["tls"] = {"cert": bad, "key": os.path.join(self.dir, "renewed.key")}
        g.write_config()
        g.proc.send_signal(signal.SIGHUP)
        self.assertTrue(wait_until(lambda: g.metric("keygate_config_reloads_total", 'result="failure"') == 2))
        self.assertEqual(g.metric("keygate_config_generation"), 2)
        self.assertEqual(g.metric("keygate_config_last_reload_successful"), 0)
        self.assertEqual(g.metric("keygate_tls_certificate_expiry_timestamp_seconds"), self.renewed_expiry)
        self.assertEqual(self.https(g, "/live", cert="renewed.pem"), 200)  # the renewed one serves

    def test_dashboard_and_alert_rules_use_exported_names(self):
        g = self.tls_gateway()
        fams = self.families(g)
        dash, dexprs = dashboard_exprs()
        rules, aexprs = alert_exprs()
        self.assertGreaterEqual(len(dexprs), 15)
        self.assertGreaterEqual(len(aexprs), 6)
        used = set()
        for where, expr in dexprs + aexprs:
            names = promql_metric_names(expr)
            self.assertTrue(names, f"{where}: no metric in {expr!r}")
            for name in names:
                used.add(name)
                if name in NOT_EXPORTED:
                    continue
                with self.subTest(where=where, name=name):
                    self.assertTrue(exported(name, fams), f"{where}: {name} is not exported")
        # What the dashboard and the alerts were asked to cover.
        for name in ("keygate_requests_total", "keygate_auth_failures_total", "keygate_rate_limited_total",
                     "keygate_request_duration_seconds_bucket", "keygate_upstream_duration_seconds_bucket",
                     "keygate_upstream_errors_total", "keygate_keys_active", "keygate_open_connections",
                     "keygate_config_reloads_total", "keygate_config_last_reload_successful",
                     "keygate_tls_certificate_expiry_timestamp_seconds", "process_cpu_seconds_total",
                     "process_resident_memory_bytes", "keygate_store_up", "up"):
            self.assertIn(name, used)
        alerts = {a for a, _ in aexprs}
        self.assertTrue({"KeygateDown", "KeygateHigh5xxRate", "KeygateUpstreamErrors", "KeygateConfigReloadFailed",
                         "KeygateTLSCertificateExpiringSoon", "KeygateStoreUnavailable"} <= alerts, alerts)
        for panel in dash["panels"]:
            if panel["type"] != "row":
                self.assertEqual(panel["datasource"]["uid"], "${datasource}", panel["title"])
        promtool = shutil.which("promtool")
        if promtool:  # Debian's prometheus package; not installed by install-deps (see README)
            p = subprocess.run([promtool, "check", "rules", ALERTS], capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)


if __name__ == "__main__":
    unittest.main()
