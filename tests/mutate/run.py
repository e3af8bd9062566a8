#!/usr/bin/env python3
"""Mutation check of the test suite (`make mutate`).

Seeds each fault of tests/mutate/faults.txt, one at a time, into a COPY of the
source tree (never the working tree), rebuilds that copy incrementally (one
build directory, ccache), runs the whole suite with `ctest -j2
--stop-on-failure`, and reports per fault whether the suite caught it
(killed) or not (survived), then the score = killed / (killed + survived).

A fault whose search text is not in the file (any more) is "not applicable";
one that does not compile is "build error"; neither is counted. Not run by
CI: it takes a while (a rebuild and a suite run per fault).

    python3 tests/mutate/run.py                 # every fault
    python3 tests/mutate/run.py --only a,b      # some faults
    python3 tests/mutate/run.py --check         # applicability only, no builds
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FAULTS = os.path.join(ROOT, "tests", "mutate", "faults.txt")


class Fault:
    def __init__(self, ident, area, path, occurrence, description, search, replace):
        self.id, self.area, self.path, self.occurrence = ident, area, path, occurrence
        self.description, self.search, self.replace = description, search, replace


def parse_faults(path):
    faults, cur, lineno = [], None, 0
    header = re.compile(r"^\[([\w.-]+)\]\s+(\S+)\s+(\S+)(?:\s+#(\d+))?\s*$")

    def fail(msg):
        sys.exit(f"{path}:{lineno}: {msg}")
    with open(path) as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            m = header.match(line)
            if m:
                if cur and (cur["search"] is None or cur["replace"] is None):
                    fail(f"fault {cur['id']} lacks its - or + line")
                cur = {"id": m.group(1), "area": m.group(2), "path": m.group(3),
                       "occurrence": int(m.group(4) or 0), "description": "", "search": None,
                       "replace": None}
                if any(x["id"] == cur["id"] for x in faults):
                    fail(f"duplicate fault id {cur['id']}")
                faults.append(cur)
            elif cur is None:
                fail("text before the first [id] header")
            elif line.startswith("- "):
                cur["search"] = line[2:]
            elif line.startswith("+ "):
                cur["replace"] = line[2:]
            else:
                cur["description"] = (cur["description"] + " " + line.strip()).strip()
    if cur and (cur["search"] is None or cur["replace"] is None):
        fail(f"fault {cur['id']} lacks its - or + line")
    return [Fault(f["id"], f["area"], f["path"], f["occurrence"], f["description"], f["search"],
                  f["replace"]) for f in faults]


def locate(fault, text):
    """Index of the line the fault changes, or a reason it cannot apply."""
    lines = text.split("\n")
    hits = [i for i, l in enumerate(lines) if fault.search in l]
    if not hits:
        return None, "search text not found"
    if fault.occurrence:
        if fault.occurrence > len(hits):
            return None, f"occurrence #{fault.occurrence} not found ({len(hits)} found)"
        return hits[fault.occurrence - 1], None
    if len(hits) > 1:
        return None, f"search text is on {len(hits)} lines: give #N"
    return hits[0], None


def mutated(fault, text):
    i, why = locate(fault, text)
    if why:
        return None, why
    lines = text.split("\n")
    lines[i] = lines[i].replace(fault.search, fault.replace, 1)
    return "\n".join(lines), None


def tracked_files():
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, check=True, capture_output=True).stdout
    return [p for p in out.decode().split("\0") if p and os.path.isfile(os.path.join(ROOT, p))]


def sync_copy(dest, keep):
    """Makes `dest` a copy of the working tree (its subfolder `keep`, the
    build, excepted). Changed files get a fresh mtime (so the incremental
    build sees them); unchanged ones keep theirs."""
    wanted = set(tracked_files())
    for rel in wanted:
        src, dst = os.path.join(ROOT, rel), os.path.join(dest, rel)
        with open(src, "rb") as f:
            data = f.read()
        if os.path.exists(dst):
            with open(dst, "rb") as f:
                if f.read() == data:
                    continue
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(dst, "wb") as f:
            f.write(data)
        shutil.copymode(src, dst)
    for dirpath, dirnames, filenames in os.walk(dest):
        dirnames[:] = [d for d in dirnames if d != "__pycache__" and os.path.join(dirpath, d) != keep]
        for name in filenames:
            rel = os.path.relpath(os.path.join(dirpath, name), dest)
            if rel not in wanted:
                os.remove(os.path.join(dirpath, name))


def run(cmd, cwd, env, log, timeout):
    with open(log, "wb") as out:
        try:
            return subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            return "timeout"


def first_failure(log):
    with open(log, errors="replace") as f:
        text = f.read()
    m = re.search(r"(?m)^\s*\d+ - (\S+) \(", text) or re.search(r"Test\s+#\d+: (\S+) \.+\*+\S+", text)
    return m.group(1) if m else "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="comma-separated fault ids")
    ap.add_argument("--check", action="store_true", help="only report which faults apply")
    ap.add_argument("--work", default=os.path.join(ROOT, "build-mutate"),
                    help="folder for the source copy and its build (default: build-mutate/)")
    ap.add_argument("--jobs", default="2", help="build and ctest parallelism (default 2)")
    ap.add_argument("--test-timeout", default="300", help="ctest --timeout per test, seconds")
    args = ap.parse_args()

    faults = parse_faults(FAULTS)
    if args.only:
        wanted = args.only.split(",")
        unknown = set(wanted) - {f.id for f in faults}
        if unknown:
            sys.exit(f"unknown fault id(s): {', '.join(sorted(unknown))}")
        faults = [f for f in faults if f.id in wanted]

    if args.check:
        bad = 0
        for f in faults:
            with open(os.path.join(ROOT, f.path)) as fh:
                _, why = mutated(f, fh.read())
            print(f"{f.id:36} {f.area:12} {'applies' if not why else 'not applicable: ' + why}")
            bad += bool(why)
        print(f"{len(faults) - bad} of {len(faults)} faults apply")
        return 0

    # The copy's build folder sits where `make build` puts it in the real tree,
    # so with CCACHE_BASEDIR the compile commands match and ccache hits.
    src = os.path.join(args.work, "tree")
    build = os.path.join(src, "build")
    logs = os.path.join(args.work, "logs")
    for d in (src, build, logs):
        os.makedirs(d, exist_ok=True)
    sync_copy(src, build)
    env = {**os.environ, "CCACHE_BASEDIR": src}
    ctest = ["ctest", "-j", args.jobs, "--stop-on-failure", "--timeout", args.test_timeout,
             "--output-on-failure"]

    def build_copy(log):
        if not os.path.exists(os.path.join(build, "build.ninja")):
            rc = run(["cmake", "-S", src, "-B", build, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release"],
                     ROOT, env, log, 600)
            if rc != 0:
                return rc
        return run(["cmake", "--build", build, "-j", args.jobs], ROOT, env, log, 3600)

    t0 = time.monotonic()
    print(f"source copy: {src}\nbaseline: building and running the unmutated suite ...", flush=True)
    if build_copy(os.path.join(logs, "baseline-build.log")) != 0:
        sys.exit(f"baseline build failed: see {logs}/baseline-build.log")
    if run(ctest, build, env, os.path.join(logs, "baseline-test.log"), 7200) != 0:
        sys.exit(f"the unmutated suite fails: see {logs}/baseline-test.log (fix that first)")
    print(f"baseline green ({time.monotonic() - t0:.0f} s)\n", flush=True)

    results = []
    print(f"{'fault':36} {'area':12} {'result':16} {'secs':>5}  first failing test")
    for f in faults:
        path = os.path.join(src, f.path)
        with open(path) as fh:
            original = fh.read()
        text, why = mutated(f, original)
        started = time.monotonic()
        detail = ""
        if why:
            result, detail = "not applicable", why
        else:
            with open(path, "w") as fh:
                fh.write(text)
            try:
                blog = os.path.join(logs, f"{f.id}-build.log")
                if build_copy(blog) != 0:
                    result, detail = "build error", blog
                else:
                    tlog = os.path.join(logs, f"{f.id}-test.log")
                    rc = run(ctest, build, env, tlog, 7200)
                    if rc == 0:
                        result = "SURVIVED"
                    else:
                        result, detail = "killed", first_failure(tlog) if rc != "timeout" else "timeout"
            finally:
                with open(path, "w") as fh:
                    fh.write(original)
        secs = time.monotonic() - started
        results.append((f, result, detail))
        print(f"{f.id:36} {f.area:12} {result:16} {secs:5.0f}  {detail}", flush=True)

    # Leave the copy's build matching the unmutated sources.
    build_copy(os.path.join(logs, "final-build.log"))
    killed = sum(r == "killed" for _, r, _ in results)
    survived = [f for f, r, _ in results if r == "SURVIVED"]
    skipped = [(f, r, d) for f, r, d in results if r in ("not applicable", "build error")]
    counted = killed + len(survived)
    print()
    for f in survived:
        print(f"survived: {f.id} ({f.path}): {f.description}")
    for f, r, d in skipped:
        print(f"{r}: {f.id} ({f.path}): {d}")
    score = 100.0 * killed / counted if counted else 0.0
    print(f"\nmutation score: {killed}/{counted} killed = {score:.1f}% "
          f"({len(skipped)} not counted; {time.monotonic() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
