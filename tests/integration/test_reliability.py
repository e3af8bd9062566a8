"""Short versions of the reliability workloads (tests/integration/reliability.py);
`make chaos` and `make soak` run the long ones. Each prints its figures."""
import os
import shutil
import signal
import subprocess
import tempfile
import unittest

from harness import GatewayTest, wait_until
import reliability

SEED = int(os.environ.get("KEYGATE_RELIABILITY_SEED", "14"))


class CrashSafety(GatewayTest):
    def test_acknowledged_key_writes_survive_kill_9(self):
        figures, problems = reliability.crash_safety(self.upstream.server_port, SEED,
                                                     total_writes=60, kill_points=5)
        print("crash safety:", figures)
        self.assertEqual(problems, [])
        self.assertGreater(figures["acknowledged_writes"], 0)


class UpstreamChaos(GatewayTest):
    def test_every_client_gets_its_own_answer_or_a_clean_close(self):
        figures, problems = reliability.upstream_chaos(SEED, clients=8, requests_per_client=60,
                                                       seconds=30)
        print("upstream chaos:", figures)
        self.assertEqual(problems[:10], [])
        self.assertTrue(figures["alive"])
        self.assertGreater(figures["outcomes"]["ok"], 0)


class Floods(GatewayTest):
    def test_valid_requests_are_served_through_floods(self):
        figures, problems = reliability.floods(self.upstream.server_port, idle=1000,
                                               slowloris=100, unknown=3000, nofile=64)
        print("floods:", figures)
        self.assertEqual(problems, [])


@unittest.skipIf(shutil.which("strace") is None, "strace is not installed (scripts/install-deps.sh)")
class RelayReads(GatewayTest):
    """Found by make soak: the relay read bodies 512 bytes at a time (Beast reads
    at most the buffer's spare capacity), so a 1 MB download cost 2,048 reads
    and 2,048 writes and ran ~17x slower than direct. Counted, not timed."""

    def test_a_4_mb_download_takes_few_reads(self):
        g = self.gateway({"logging": {"access_log": False}})
        key = g.create_key("--name", "reads")["key"]
        tmp = tempfile.mkdtemp(prefix="kg-strace-")
        self.addCleanup(shutil.rmtree, tmp, True)
        trace, err = os.path.join(tmp, "trace"), open(os.path.join(tmp, "err"), "w+")
        self.addCleanup(err.close)
        st = subprocess.Popen(["strace", "-f", "-e", "trace=read,readv,recvfrom,recvmsg", "-o",
                               trace, "-p", str(g.proc.pid)], stdout=subprocess.DEVNULL,
                              stderr=err)
        self.addCleanup(st.wait)
        self.addCleanup(st.send_signal, signal.SIGINT)
        if not wait_until(lambda: open(err.name).read().count("attached") >= 1 or
                          st.poll() is not None, timeout=10) or st.poll() is not None:
            self.skipTest("strace cannot attach here: " + open(err.name).read()[-300:])
        r = g.request("GET", "/stream?bytes=4194304", headers={"X-Api-Key": key}, timeout=60)
        self.assertEqual((r.status, len(r.body)), (200, 4194304))
        st.send_signal(signal.SIGINT)
        st.wait(timeout=30)
        with open(trace) as f:
            reads = sum(1 for line in f if "recv" in line or " read" in line)
        print(f"{reads} read calls for 4 MB")
        # 64 KiB reads: ~64 for 4 MB (more when the upstream writes slower than we read).
        self.assertLess(reads, 1024, f"{reads} read calls for a 4 MB body")


if __name__ == "__main__":
    unittest.main()
